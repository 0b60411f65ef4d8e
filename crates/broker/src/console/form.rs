//! The small pieces of HTTP the console reads and writes itself: an
//! `application/x-www-form-urlencoded` body (the sign-in form), one cookie out of a
//! `Cookie` header, text escaped for HTML, and a comparison of secrets that does not leak
//! where they differ.

use percent_encoding::percent_decode;
use sha2::{Digest, Sha256};

/// The `name=value` pairs of a form body, decoded (`+` is a space, `%XX` a byte; invalid
/// UTF-8 is replaced).
pub(super) fn parse_urlencoded(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(raw: &[u8]) -> String {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&spaced).decode_utf8_lossy().into_owned()
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`).
pub(super) fn cookie(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name && !value.is_empty()).then(|| value.to_owned())
    })
}

/// `text` safe inside HTML text and attribute values.
pub(super) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether two secrets are equal, compared as SHA-256 digests: how long the comparison
/// takes tells nothing about how much of a guess was right.
pub(super) fn same_secret(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_plus_and_percent() {
        let fields =
            parse_urlencoded(b"accessKeyId=AKIA123&secretAccessKey=a%2Bb+c%2F%3D&empty=&flag");
        assert_eq!(
            fields,
            [
                ("accessKeyId".into(), "AKIA123".into()),
                ("secretAccessKey".into(), "a+b c/=".into()),
                ("empty".into(), String::new()),
                ("flag".into(), String::new()),
            ]
        );
        assert!(parse_urlencoded(b"").is_empty());
    }

    #[test]
    fn the_named_cookie_is_found_among_others() {
        let header = "theme=dark; pubsub_console=abc123;other=x";
        assert_eq!(cookie(header, "pubsub_console").as_deref(), Some("abc123"));
        assert_eq!(cookie(header, "other").as_deref(), Some("x"));
        assert_eq!(cookie(header, "pubsub"), None);
        assert_eq!(cookie("pubsub_console=", "pubsub_console"), None);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape(r#"<b a="1">Tom & 'Jerry'</b>"#),
            "&lt;b a=&quot;1&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cre", "s3cret"));
        assert!(!same_secret("", "s3cret"));
    }
}
