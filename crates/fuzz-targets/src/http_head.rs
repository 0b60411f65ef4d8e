//! Any bytes read as an HTTP request head (what a WebSocket or control-plane client sends
//! before its body) must parse or be refused without panicking; what parses must be what
//! was sent (written back out, it parses to the same head), and everything the broker then
//! reads from a head — the upgrade's header checks, the SigV4 query and `Authorization`
//! forms, the custom-authorizer fields — must not panic on it either.

use std::time::{Duration, UNIX_EPOCH};

use broker::http_head::RequestHead;
use iot::custom_auth::from_http;
use iot::sigv4::{
    parse_authorization, parse_presigned_query, verify, verify_header_signed, SignedRequest,
};

/// No seed is signed with it, so no input may pass a signature check.
const SECRET: &str = "fuzz-secret-no-seed-is-signed-with";

pub fn run(data: &[u8]) {
    let Some(head) = RequestHead::parse(data) else {
        return;
    };
    check_round_trip(&head);

    for (name, value) in &head.headers {
        assert!(head.header(name).is_some());
        assert_eq!(value.trim(), value, "values are kept trimmed");
        for token in ["upgrade", "websocket", "mqtt", value.as_str()] {
            let _ = head.header_has_token(name, token);
        }
    }
    let headers = head.header_pairs();
    assert_eq!(headers.len(), head.headers.len());

    let request = SignedRequest {
        method: &head.method,
        path: &head.path,
        query: &head.query,
        headers: &headers,
    };
    // 2026-11-27T05:36:00Z, the CRT vector's time.
    let now = UNIX_EPOCH + Duration::from_secs(1_795_757_760);
    match parse_presigned_query(&head.query) {
        Ok(Some(presigned)) => {
            let refused = verify(&request, &presigned, SECRET, "us-east-1", now);
            assert!(refused.is_err(), "no input is signed with {SECRET:?}");
        }
        Ok(None) => {}
        Err(error) => {
            let _ = error.to_string();
        }
    }
    match parse_authorization(&headers) {
        Ok(Some(auth)) => {
            let services = ["iot", "execute-api"];
            let refused =
                verify_header_signed(&request, b"", &auth, SECRET, "us-east-1", &services, now);
            assert!(refused.is_err(), "no input is signed with {SECRET:?}");
        }
        Ok(None) => {}
        Err(error) => {
            let _ = error.to_string();
        }
    }
    let fields = from_http(&headers, &head.query);
    let _ = fields.token(&head.path);
    let _ = fields.is_empty();
}

/// The head written back out (HTTP/1.1, the kept headers in order) parses to the same head:
/// nothing the broker reads is lost or changed by parsing, only non-UTF-8 header values
/// are left out.
fn check_round_trip(head: &RequestHead) {
    let mut text = format!("{} {}", head.method, head.path);
    // An empty path came from a target starting with `?` (httparse takes any target).
    if !head.query.is_empty() || head.path.is_empty() {
        text.push('?');
        text.push_str(&head.query);
    }
    text.push_str(" HTTP/1.1\r\n");
    for (name, value) in &head.headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    let again = RequestHead::parse(text.as_bytes()).expect("a parsed head written out parses");
    assert_eq!(&again, head);
}
