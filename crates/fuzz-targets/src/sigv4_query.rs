//! Any query string must parse to `None`, a `PresignedQuery` or a `SigV4Error`, never panic;
//! whatever parses must be refused by `verify` without panicking (no input is signed with
//! the target's secret), and errors must render.

use std::time::{Duration, UNIX_EPOCH};

use iot::sigv4::{parse_presigned_query, verify, SignedRequest};

const SECRET: &str = "fuzz-secret-no-seed-is-signed-with";

pub fn run(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let presigned = match parse_presigned_query(query) {
        Ok(Some(p)) => p,
        Ok(None) => return,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let headers = [
        ("Host", "localhost"),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Protocol", "mqtt"),
    ];
    let request = SignedRequest {
        method: "GET",
        path: "/mqtt",
        query,
        headers: &headers,
    };
    // 2026-11-27T05:36:00Z, the CRT vector's time, and the epoch.
    for now in [UNIX_EPOCH + Duration::from_secs(1_795_757_760), UNIX_EPOCH] {
        match verify(&request, &presigned, SECRET, "us-east-1", now) {
            Ok(()) => panic!("no input is signed with {SECRET:?}"),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}
