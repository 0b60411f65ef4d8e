//! A custom authorizer function's answer (JSON from the function's HTTP endpoint) must be
//! accepted or refused with an `AuthorizerResponseError`, never panic; an accepted answer
//! must keep IoT Core's bounds, and its policy documents then go through `Policy::parse`
//! as the broker does.

use iot::custom_auth::{
    parse_authorizer_response, MAX_POLICY_DOCUMENTS, MAX_POLICY_DOCUMENT_CHARS,
    MAX_PRINCIPAL_ID_CHARS, TTL_RANGE_SECS,
};
use iot::Policy;

pub fn run(data: &[u8]) {
    let answer = match parse_authorizer_response(data) {
        Ok(answer) => answer,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    if !answer.is_authenticated {
        assert!(answer.policy_documents.is_empty());
        return;
    }
    let id = &answer.principal_id;
    assert!((1..=MAX_PRINCIPAL_ID_CHARS).contains(&id.len()));
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(answer.policy_documents.len() <= MAX_POLICY_DOCUMENTS);
    assert!(TTL_RANGE_SECS.contains(&answer.disconnect_after_secs));
    assert!(TTL_RANGE_SECS.contains(&answer.refresh_after_secs));
    for (index, document) in answer.policy_documents.iter().enumerate() {
        assert!(document.chars().count() <= MAX_POLICY_DOCUMENT_CHARS);
        if let Err(error) = Policy::parse(&format!("fuzz/{id}/{index}"), document) {
            let _ = error.to_string();
        }
    }
}
