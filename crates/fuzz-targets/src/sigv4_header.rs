//! The header form of SigV4 (`Authorization: AWS4-HMAC-SHA256 Credential=…,
//! SignedHeaders=…, Signature=…`, the control plane's HTTP API): any text must parse to
//! `None`, an `AuthorizationHeader` or a `SigV4Error`, never panic, and what parses must be
//! refused by `verify_header_signed` (no input is signed with the target's secret).
//!
//! The input's first line is the `Authorization` value; each further line is a header
//! `name: value` (a line without `:` a header with an empty value), so the fuzzer also
//! reaches the date, payload-hash and signed-header checks.

use std::time::{Duration, UNIX_EPOCH};

use iot::sigv4::{parse_authorization, verify_header_signed, SignedRequest};

const SECRET: &str = "fuzz-secret-no-seed-is-signed-with";

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let authorization = lines.next().unwrap_or_default();
    let mut headers = vec![("Authorization", authorization)];
    headers.extend(lines.map(|line| line.split_once(':').unwrap_or((line, ""))));

    let auth = match parse_authorization(&headers) {
        Ok(Some(auth)) => auth,
        Ok(None) => unreachable!("an Authorization header is always sent"),
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    // What a parsed header promises the verifier.
    assert!(!auth.access_key_id.is_empty() && !auth.region.is_empty());
    assert!(!auth.service.is_empty());
    assert!(auth
        .signed_headers
        .iter()
        .all(|h| !h.is_empty() && *h == h.to_ascii_lowercase()));
    assert_eq!(auth.signature.len(), 64);

    let request = SignedRequest {
        method: "POST",
        path: "/things",
        query: "",
        headers: &headers,
    };
    // 2026-11-27T05:36:00Z, the CRT vector's time, and the epoch.
    for now in [UNIX_EPOCH + Duration::from_secs(1_795_757_760), UNIX_EPOCH] {
        let services = ["iot", "execute-api"];
        match verify_header_signed(&request, b"{}", &auth, SECRET, "us-east-1", &services, now) {
            Ok(()) => panic!("no input is signed with {SECRET:?}"),
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
}
