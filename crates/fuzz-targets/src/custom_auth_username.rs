//! Any username parses (`parse_username` never fails), and the same text as WebSocket
//! headers or query never panics `from_http`.

use iot::custom_auth::{from_http, parse_username};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fields = parse_username(text);
    assert!(fields.user.is_some());
    let _ = fields.token("mytoken");
    let _ = fields.is_empty();

    // First line as a header value and name, the rest as the query.
    let (line, query) = text.split_once('\n').unwrap_or((text, ""));
    let headers = [
        ("Host", "localhost"),
        ("x-amz-customauthorizer-signature", line),
        (line, "value"),
    ];
    let fields = from_http(&headers, query);
    let _ = fields.token(line);
    let _ = fields.is_empty();
}
