//! Topic name and topic filter syntax (MQTT 3.1.1 section 4.7). Only protocol-level
//! rules live here; AWS IoT's extra limits (length, `$aws/` reservations) belong to `iot`.

/// Longest string an MQTT length prefix can describe.
const MAX_STRING_LEN: usize = u16::MAX as usize;

/// A topic name as carried by PUBLISH or a will: non-empty, no wildcards.
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_STRING_LEN && !topic.contains(['+', '#', '\0'])
}

/// A topic filter as carried by SUBSCRIBE / UNSUBSCRIBE: non-empty, `+` only as a whole
/// level, `#` only as the whole last level.
pub fn is_valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_STRING_LEN || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && !(level == "#" && is_last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "/", "a/b", "//", "$SYS/x", "a b/ü", " "] {
            assert!(is_valid_topic_name(ok), "{ok:?}");
        }
        for bad in ["", "a/+", "#", "a/#", "a+b", "a\0b"] {
            assert!(!is_valid_topic_name(bad), "{bad:?}");
        }
        assert!(is_valid_topic_name(&"a".repeat(65535)));
        assert!(!is_valid_topic_name(&"a".repeat(65536)));
    }

    #[test]
    fn topic_filters() {
        for ok in [
            "a", "#", "+", "/", "a/#", "+/+", "/+", "+/", "a/+/b", "a/+/#", "//#", "$SYS/#",
        ] {
            assert!(is_valid_topic_filter(ok), "{ok:?}");
        }
        for bad in [
            "", "a#", "a/#/b", "#/a", "a/b#", "a+", "+a/b", "a/++", "##", "a\0", "a/#/",
        ] {
            assert!(!is_valid_topic_filter(bad), "{bad:?}");
        }
    }
}
