//! A custom authorizer function's answer (JSON from the function's HTTP endpoint) must be
//! accepted or refused with an `AuthorizerResponseError`, never panic; an accepted answer
//! must keep IoT Core's bounds, and its policy documents then go through `Policy::parse`
//! as the broker does.
//!
//! Read twice: with IoT Core's lower TTL bound (300 s, the default of `[limits]
//! authorizer_ttl_min`) and with a test's 1 s. A lower bound can only accept more, and an
//! answer both accept is the same answer.

use iot::custom_auth::{
    parse_authorizer_response, AuthorizerResponse, MAX_POLICY_DOCUMENTS, MAX_POLICY_DOCUMENT_CHARS,
    MAX_PRINCIPAL_ID_CHARS, TTL_RANGE_SECS,
};
use iot::Policy;

const IOT_CORE_TTL_MIN: u64 = *TTL_RANGE_SECS.start();
const TEST_TTL_MIN: u64 = 1;

pub fn run(data: &[u8]) {
    let strict = parse_authorizer_response(data, IOT_CORE_TTL_MIN);
    let lenient = parse_authorizer_response(data, TEST_TTL_MIN);
    match (&strict, &lenient) {
        (Ok(strict), Ok(lenient)) => assert_eq!(strict, lenient),
        (Ok(_), Err(error)) => panic!("accepted with {IOT_CORE_TTL_MIN} s, not 1 s: {error}"),
        _ => {}
    }
    for (answer, min_ttl) in [(strict, IOT_CORE_TTL_MIN), (lenient, TEST_TTL_MIN)] {
        match answer {
            Ok(answer) => check(&answer, min_ttl),
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
}

fn check(answer: &AuthorizerResponse, min_ttl: u64) {
    if !answer.is_authenticated {
        assert!(answer.policy_documents.is_empty());
        return;
    }
    let id = &answer.principal_id;
    assert!((1..=MAX_PRINCIPAL_ID_CHARS).contains(&id.len()));
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(answer.policy_documents.len() <= MAX_POLICY_DOCUMENTS);
    let ttls = min_ttl..=*TTL_RANGE_SECS.end();
    assert!(ttls.contains(&answer.disconnect_after_secs));
    assert!(ttls.contains(&answer.refresh_after_secs));
    for (index, document) in answer.policy_documents.iter().enumerate() {
        assert!(document.chars().count() <= MAX_POLICY_DOCUMENT_CHARS);
        if let Err(error) = Policy::parse(&format!("fuzz/{id}/{index}"), document) {
            let _ = error.to_string();
        }
    }
}
