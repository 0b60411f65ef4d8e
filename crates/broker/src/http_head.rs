//! An HTTP/1.1 request head, parsed (pure): what the WebSocket upgrade, its authentication
//! and the control plane on the TLS port read from a request before its body.

/// An HTTP request head as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// Parses a complete head (up to and including its blank line); `None` if malformed.
    pub fn parse(head: &[u8]) -> Option<RequestHead> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return None,
        }
        let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
            return None;
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let headers = parsed
            .headers
            .iter()
            .filter_map(|header| {
                std::str::from_utf8(header.value)
                    .ok()
                    .map(|value| (header.name.to_owned(), value.trim().to_owned()))
            })
            .collect();
        Some(RequestHead {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The headers as `(name, value)` pairs, as the verifiers take them.
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }

    /// Whether a comma-separated header lists `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.header(name).is_some_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_headers_and_tokens() {
        let head = RequestHead::parse(
            b"GET /mqtt?X-Amz-Date=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n\r\n",
        )
        .unwrap();
        assert_eq!((head.method.as_str(), head.path.as_str()), ("GET", "/mqtt"));
        assert_eq!(head.query, "X-Amz-Date=1");
        assert_eq!(head.header("host"), Some("h"));
        assert!(head.header_has_token("connection", "upgrade"));
        assert!(RequestHead::parse(b"GET /mqtt HTTP/1.1\r\nHost").is_none());
    }
}
