//! MQTT topic names, topic filters and matching (MQTT 3.1.1 §4.7).
//!
//! The SDK uses this to hand each incoming PUBLISH to every subscription whose filter
//! matches its topic. It follows standard MQTT: `a/#` also matches `a`, and `+`/`#` in
//! the first level never match a topic starting with `$`; a shared subscription matches
//! what its filter after `$share/{ShareName}/` matches.

/// True when `topic` is a valid topic name to publish to: not empty, no wildcard, no NUL.
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// True when `filter` is a valid topic filter: not empty, no NUL, `+` only as a whole
/// level, `#` only as the whole last level.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| {
        if level.contains('#') {
            *level == "#" && i == last
        } else if level.contains('+') {
            *level == "+"
        } else {
            true
        }
    })
}

/// True when the topic name `topic` matches the topic filter `filter`.
///
/// ```
/// use pubsub::topic::matches;
/// assert!(matches("sensors/+/temp", "sensors/kitchen/temp"));
/// assert!(matches("sensors/#", "sensors/kitchen/temp"));
/// assert!(!matches("sensors/+", "sensors/kitchen/temp"));
/// assert!(!matches("#", "$aws/things"));
/// ```
///
/// A shared subscription `$share/{ShareName}/{filter}` matches what its `{filter}` matches:
/// the broker delivers the group's messages with their own topic.
///
/// ```
/// use pubsub::topic::matches;
/// assert!(matches("$share/workers/orders/#", "orders/42"));
/// assert!(!matches("$share/workers/orders/#", "$share/workers/orders/42"));
/// ```
pub fn matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or("", |(_, inner)| inner),
        None => filter,
    };
    if filter.is_empty() {
        return false;
    }
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_single_level() {
        assert!(matches("a/b/c", "a/b/c"));
        assert!(!matches("a/b/c", "a/b/d"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(matches("a/+/c", "a/x/c"));
        assert!(matches("a/+/c", "a//c"));
        assert!(matches("+", "a"));
        assert!(!matches("+", "a/b"));
        assert!(matches("+/+", "/a"));
        assert!(matches("a/+", "a/"));
        assert!(!matches("a/+", "a"));
    }

    #[test]
    fn multi_level() {
        assert!(matches("#", "a"));
        assert!(matches("#", "a/b/c"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/#", "a/"));
        assert!(matches("a/#", "a"), "MQTT: the parent level matches too");
        assert!(!matches("a/#", "b/c"));
        assert!(matches("a/+/#", "a/b/c/d"));
    }

    #[test]
    fn dollar_topics() {
        assert!(!matches("#", "$aws/events"));
        assert!(!matches("+/events", "$aws/events"));
        assert!(matches("$aws/#", "$aws/events/x"));
        assert!(matches("$aws/+/x", "$aws/events/x"));
    }

    #[test]
    fn validity() {
        assert!(is_valid_topic("a/b"));
        assert!(!is_valid_topic(""));
        assert!(!is_valid_topic("a/+"));
        assert!(!is_valid_topic("a/#"));
        assert!(is_valid_filter("a/+/c/#"));
        assert!(is_valid_filter("#"));
        assert!(!is_valid_filter("a/#/c"));
        assert!(!is_valid_filter("a/b#"));
        assert!(!is_valid_filter("a/b+/c"));
        assert!(!is_valid_filter(""));
    }
}
