//! Topic names, topic filters and matching as AWS IoT Core applies them.
//!
//! IoT Core differs from plain MQTT 3.1.1 in a few places that clients notice, so these are
//! deliberate:
//! - `sensor/#` does not match `sensor` (MQTT says it does); it does match `sensor/`.
//! - at most 7 `/` per topic, not counting a Basic Ingest prefix `$aws/rules/<rule>/`.
//! - clients may publish to some `$aws/…` topics but not to broker-generated ones.

use crate::limits::Limits;

/// Why a topic name or filter was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is {len} bytes long, more than the {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("topic has {count} '/' characters, more than the {max} allowed")]
    TooManySlashes { count: usize, max: usize },
    #[error("topic name contains a wildcard ('+' or '#'); only filters may")]
    Wildcard,
    #[error("invalid topic filter: {0}")]
    InvalidFilter(&'static str),
    #[error("topic contains the null character U+0000")]
    NulCharacter,
    #[error("clients may not publish to the reserved topic {0:?}")]
    ReservedTopic(String),
    /// A topic only the service behind it publishes to (a Device Shadow answer such as
    /// `…/shadow/update/accepted`): IoT Core treats a client's publish there as
    /// unauthorized, not as a malformed topic.
    #[error("{0:?} is published by the Device Shadow service; clients may only subscribe to it")]
    ServicePublished(String),
    #[error("invalid shared subscription: {0}")]
    InvalidShare(&'static str),
}

/// The prefix of a shared subscription, `$share/{ShareName}/{TopicFilter}`.
pub const SHARE_PREFIX: &str = "$share/";

/// Longest ShareName IoT Core accepts, in characters.
pub const MAX_SHARE_NAME_CHARS: usize = 128;

/// A shared subscription's parts: the group's name and the filter its members share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub share_name: &'a str,
    pub filter: &'a str,
}

/// Splits `$share/{ShareName}/{TopicFilter}`; `None` for an ordinary filter. The parts are
/// not validated here (see [`validate_topic_filter`]).
pub fn shared_filter(filter: &str) -> Option<SharedFilter<'_>> {
    let rest = filter.strip_prefix(SHARE_PREFIX)?;
    let (share_name, filter) = rest.split_once('/').unwrap_or((rest, ""));
    Some(SharedFilter { share_name, filter })
}

/// Prefixes under which IoT Core accepts a client's PUBLISH although they start with `$`.
///
/// Each names a service that consumes device messages; anything else under `$` is either
/// broker-generated (`$aws/events/…`, lifecycle events, which clients must not be able to
/// forge) or unknown, and is refused.
pub const CLIENT_PUBLISHABLE_RESERVED_PREFIXES: &[&str] = &[
    // Device shadow, jobs, Device Defender metrics, tunnels, streams: all per thing.
    "$aws/things/",
    // Basic Ingest straight into a rule.
    "$aws/rules/",
    // Fleet provisioning: CreateKeysAndCertificate / CreateCertificateFromCsr.
    "$aws/certificates/",
    // Fleet provisioning: RegisterThing.
    "$aws/provisioning-templates/",
    // IoT SiteWise ingestion.
    "$aws/sitewise/",
    // Device Defender (non-thing-scoped topics).
    "$aws/defender/",
    // Device Location: position estimates requested by the device.
    "$aws/device_location/",
    // IoT commands: the device publishes command execution responses.
    "$aws/commands/",
];

const BASIC_INGEST_PREFIX: &str = "$aws/rules/";

/// `true` when `topic` is reserved (starts with `$`).
pub fn is_reserved(topic: &str) -> bool {
    topic.starts_with('$')
}

/// Checks a topic name a client publishes to (or the broker routes): non-empty, no
/// wildcards, no U+0000, within `max_topic_bytes` and `max_topic_slashes`.
///
/// Does not check reserved topics: see [`validate_client_publish`].
pub fn validate_topic_name(topic: &str, limits: &Limits) -> Result<(), TopicError> {
    check_common(topic, limits)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::Wildcard);
    }
    check_slashes(topic, limits)
}

/// Checks a SUBSCRIBE topic filter: MQTT wildcard placement plus the same length and
/// slash limits as topic names.
///
/// A shared subscription `$share/{ShareName}/{TopicFilter}` is checked as IoT Core does:
/// ShareName non-empty, at most 128 characters, without `/`, `+` or `#`; TopicFilter a
/// valid filter of at most `max_topic_bytes`, whose slashes are counted without the two
/// of the `$share/{ShareName}/` prefix.
pub fn validate_topic_filter(filter: &str, limits: &Limits) -> Result<(), TopicError> {
    if let Some(shared) = shared_filter(filter) {
        if shared.share_name.is_empty() {
            return Err(TopicError::InvalidShare("ShareName is empty"));
        }
        if shared.share_name.contains(['+', '#']) {
            return Err(TopicError::InvalidShare(
                "ShareName may not contain '+' or '#'",
            ));
        }
        if shared.share_name.chars().count() > MAX_SHARE_NAME_CHARS {
            return Err(TopicError::InvalidShare(
                "ShareName is longer than 128 characters",
            ));
        }
        if shared.filter.is_empty() {
            return Err(TopicError::InvalidShare(
                "no topic filter after the ShareName",
            ));
        }
        return validate_plain_filter(shared.filter, limits);
    }
    validate_plain_filter(filter, limits)
}

fn validate_plain_filter(filter: &str, limits: &Limits) -> Result<(), TopicError> {
    check_common(filter, limits)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') {
            if level != "#" {
                return Err(TopicError::InvalidFilter("'#' must occupy a whole level"));
            }
            if levels.peek().is_some() {
                return Err(TopicError::InvalidFilter("'#' must be the last level"));
            }
        } else if level.contains('+') && level != "+" {
            return Err(TopicError::InvalidFilter("'+' must occupy a whole level"));
        }
    }
    check_slashes(filter, limits)
}

/// The reserved-topic rule for a topic a *client* publishes to (the broker itself may
/// publish anywhere, e.g. lifecycle events under `$aws/events/`).
///
/// Non-`$` topics are always fine; `$` topics only under
/// [`CLIENT_PUBLISHABLE_RESERVED_PREFIXES`], and there not the Device Shadow service's
/// answer topics (`…/accepted`, `/rejected`, `/delta`, `/documents`: the reserved-topics
/// table lists them as Subscribe only), so that no client can forge a shadow's answer.
pub fn validate_client_publish(topic: &str) -> Result<(), TopicError> {
    if !is_reserved(topic) {
        return Ok(());
    }
    if !CLIENT_PUBLISHABLE_RESERVED_PREFIXES
        .iter()
        .any(|p| topic.starts_with(p))
    {
        return Err(TopicError::ReservedTopic(topic.to_owned()));
    }
    match shadow::ShadowTopic::parse(topic) {
        Some(answer) if !answer.is_request() => Err(TopicError::ServicePublished(topic.to_owned())),
        _ => Ok(()),
    }
}

/// Whether `filter` matches `topic` under IoT Core's rules.
///
/// - `+` matches exactly one level, possibly empty.
/// - `#` (only as the last level) matches one or more remaining levels: `a/#` matches `a/`
///   and `a/x/y` but not `a`.
/// - a `+` or `#` first level never matches a topic starting with `$`; a literal `$…` level
///   matches itself, so `$aws/events/#` sees lifecycle events.
///
/// Levels of `+`/`#` mixed with other characters (invalid filters) compare literally, and a
/// `#` that is not last matches nothing, so the result is defined for any input and equals
/// what [`crate::TopicTrie`] finds.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if is_reserved(topic) && matches!(first_level(filter), "+" | "#") {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), Some(_)) => return f.next().is_none(),
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) => {
                if fl != tl {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// `true` when `filter` has no wildcard level, i.e. names exactly one topic. IoT Core sends
/// retained messages only to such subscriptions.
pub fn filter_is_exact(filter: &str) -> bool {
    !filter.split('/').any(|l| l == "+" || l == "#")
}

fn first_level(s: &str) -> &str {
    s.split_once('/').map_or(s, |(first, _)| first)
}

fn check_common(topic: &str, limits: &Limits) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > limits.max_topic_bytes {
        return Err(TopicError::TooLong {
            len: topic.len(),
            max: limits.max_topic_bytes,
        });
    }
    if topic.contains('\0') {
        return Err(TopicError::NulCharacter);
    }
    Ok(())
}

fn check_slashes(topic: &str, limits: &Limits) -> Result<(), TopicError> {
    let count = without_basic_ingest_prefix(topic)
        .bytes()
        .filter(|&b| b == b'/')
        .count();
    if count > limits.max_topic_slashes {
        return Err(TopicError::TooManySlashes {
            count,
            max: limits.max_topic_slashes,
        });
    }
    Ok(())
}

/// Strips `$aws/rules/<rule>/` (rule name non-empty): IoT Core does not count those three
/// slashes, so a Basic Ingest topic can be as deep as the topic its rule selects on.
fn without_basic_ingest_prefix(topic: &str) -> &str {
    topic
        .strip_prefix(BASIC_INGEST_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .filter(|(rule, _)| !rule.is_empty())
        .map_or(topic, |(_, after)| after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn name(t: &str) -> Result<(), TopicError> {
        validate_topic_name(t, &limits())
    }

    fn filter(f: &str) -> Result<(), TopicError> {
        validate_topic_filter(f, &limits())
    }

    #[test]
    fn plain_names_are_valid() {
        for t in [
            "a",
            "sensor/1/temp",
            "/",
            "a//b",
            "/leading",
            "trailing/",
            "$aws/things/x",
        ] {
            assert_eq!(name(t), Ok(()), "{t}");
        }
    }

    #[test]
    fn empty_name_and_filter_refused() {
        assert_eq!(name(""), Err(TopicError::Empty));
        assert_eq!(filter(""), Err(TopicError::Empty));
    }

    #[test]
    fn wildcards_refused_in_names() {
        for t in ["a/+", "a/#", "+", "#", "a+b", "a/b#"] {
            assert_eq!(name(t), Err(TopicError::Wildcard), "{t}");
        }
    }

    #[test]
    fn nul_refused() {
        assert_eq!(name("a\0b"), Err(TopicError::NulCharacter));
        assert_eq!(filter("a/\0/#"), Err(TopicError::NulCharacter));
    }

    #[test]
    fn length_limit_256_bytes() {
        let ok = "a".repeat(256);
        let long = "a".repeat(257);
        assert_eq!(name(&ok), Ok(()));
        assert_eq!(name(&long), Err(TopicError::TooLong { len: 257, max: 256 }));
        assert_eq!(filter(&ok), Ok(()));
        assert_eq!(
            filter(&long),
            Err(TopicError::TooLong { len: 257, max: 256 })
        );
        // Bytes, not characters: 128 two-byte characters fill the limit exactly.
        assert_eq!(name(&"é".repeat(128)), Ok(()));
        assert!(matches!(
            name(&"é".repeat(129)),
            Err(TopicError::TooLong { len: 258, .. })
        ));
    }

    #[test]
    fn slash_limit_seven() {
        assert_eq!(name("a/b/c/d/e/f/g/h"), Ok(()));
        assert_eq!(
            name("a/b/c/d/e/f/g/h/i"),
            Err(TopicError::TooManySlashes { count: 8, max: 7 })
        );
        assert_eq!(filter("a/b/c/d/e/f/g/#"), Ok(()));
        assert_eq!(
            filter("a/b/c/d/e/f/g/h/#"),
            Err(TopicError::TooManySlashes { count: 8, max: 7 })
        );
        // Empty levels count too: it is '/' characters that are limited.
        assert_eq!(name("///////"), Ok(()));
        assert!(name("////////").is_err());
    }

    #[test]
    fn basic_ingest_prefix_not_counted() {
        assert_eq!(name("$aws/rules/r/a/b/c/d/e/f/g/h"), Ok(()));
        assert_eq!(
            name("$aws/rules/r/a/b/c/d/e/f/g/h/i"),
            Err(TopicError::TooManySlashes { count: 8, max: 7 })
        );
        // Without a rule name there is no prefix to discount.
        assert_eq!(
            name("$aws/rules//a/b/c/d/e/f/g"),
            Err(TopicError::TooManySlashes { count: 9, max: 7 })
        );
        // Other `$aws` topics get no discount.
        assert_eq!(
            name("$aws/things/t/a/b/c/d/e/f"),
            Err(TopicError::TooManySlashes { count: 8, max: 7 })
        );
        // The prefix is case-sensitive like every topic.
        assert!(name("$AWS/rules/r/a/b/c/d/e/f").is_err());
        assert_eq!(name("$aws/rules/r/a/b/c/d/e/f"), Ok(()));
    }

    #[test]
    fn limits_come_from_the_struct() {
        let l = Limits {
            max_topic_bytes: 4,
            max_topic_slashes: 1,
            ..Limits::default()
        };
        assert_eq!(validate_topic_name("a/b", &l), Ok(()));
        assert!(matches!(
            validate_topic_name("a/b/c", &l),
            Err(TopicError::TooLong { .. })
        ));
        assert!(matches!(
            validate_topic_name("a//", &l),
            Err(TopicError::TooManySlashes { count: 2, max: 1 })
        ));
    }

    #[test]
    fn valid_filters() {
        for f in [
            "#",
            "+",
            "a/#",
            "a/+",
            "+/+",
            "+/#",
            "a/+/b/#",
            "/#",
            "a//+",
            "$aws/events/#",
            "$SYS/+",
            "a/b",
        ] {
            assert_eq!(filter(f), Ok(()), "{f}");
        }
    }

    #[test]
    fn invalid_filters_say_why() {
        assert_eq!(
            filter("a/#/b"),
            Err(TopicError::InvalidFilter("'#' must be the last level"))
        );
        assert_eq!(
            filter("#/"),
            Err(TopicError::InvalidFilter("'#' must be the last level"))
        );
        for f in ["a#", "a/b#", "#a", "a/##"] {
            assert_eq!(
                filter(f),
                Err(TopicError::InvalidFilter("'#' must occupy a whole level")),
                "{f}"
            );
        }
        for f in ["a+", "a/+b", "++", "a/b+/c"] {
            assert_eq!(
                filter(f),
                Err(TopicError::InvalidFilter("'+' must occupy a whole level")),
                "{f}"
            );
        }
    }

    #[test]
    fn error_messages_say_what_was_wrong() {
        assert_eq!(
            TopicError::TooLong { len: 257, max: 256 }.to_string(),
            "topic is 257 bytes long, more than the 256 allowed"
        );
        assert_eq!(
            TopicError::InvalidFilter("'#' must be the last level").to_string(),
            "invalid topic filter: '#' must be the last level"
        );
        assert!(TopicError::ReservedTopic("$SYS/x".into())
            .to_string()
            .contains("$SYS/x"));
    }

    #[test]
    fn reserved() {
        assert!(is_reserved("$aws/things/x"));
        assert!(is_reserved("$SYS"));
        assert!(!is_reserved("aws/$x"));
        assert!(!is_reserved(""));
    }

    #[test]
    fn client_publish_reserved_rule() {
        for t in [
            "sensor/1",
            "a$b",
            "$aws/things/t1/shadow/update",
            "$aws/things/t1/shadow/name/s/get",
            "$aws/things/t1/jobs/get",
            "$aws/things/t1/defender/metrics/json",
            "$aws/rules/MyRule/sensor/1",
            "$aws/certificates/create/json",
            "$aws/certificates/create-from-csr/json",
            "$aws/provisioning-templates/tmpl/provision/json",
            "$aws/sitewise/asset-models/m/assets/a/properties/p",
            "$aws/defender/x",
            // Not exactly an answer topic: not the shadow service's to refuse.
            "$aws/things/t1/shadow/get/delta",
            "$aws/things/t1/shadow/update/accepted/x",
        ] {
            assert_eq!(validate_client_publish(t), Ok(()), "{t}");
        }
        for t in [
            "$aws/things/t1/shadow/get/accepted",
            "$aws/things/t1/shadow/update/rejected",
            "$aws/things/t1/shadow/update/delta",
            "$aws/things/t1/shadow/update/documents",
            "$aws/things/t1/shadow/name/s/delete/accepted",
            "$aws/things/t1/shadow/name/s/update/delta",
        ] {
            assert_eq!(
                validate_client_publish(t),
                Err(TopicError::ServicePublished(t.to_owned())),
                "{t}"
            );
        }
        for t in [
            "$aws/events/presence/connected/c1",
            "$aws/events/subscriptions/subscribed/c1",
            "$aws/events",
            "$aws/things",
            "$aws/other/x",
            "$aws",
            "$SYS/x",
            "$foo",
            "$",
        ] {
            assert_eq!(
                validate_client_publish(t),
                Err(TopicError::ReservedTopic(t.to_owned())),
                "{t}"
            );
        }
    }

    #[test]
    fn hash_needs_at_least_one_level_iot_core() {
        assert!(!topic_matches("sensor/#", "sensor"));
        assert!(topic_matches("sensor/#", "sensor/"));
        assert!(topic_matches("sensor/#", "sensor/x"));
        assert!(topic_matches("sensor/#", "sensor/x/y"));
        assert!(!topic_matches("sensor/#", "sensors/x"));
        assert!(!topic_matches("sensor/#", "other/x"));
    }

    #[test]
    fn lone_hash_matches_every_non_dollar_topic() {
        for t in ["a", "a/b", "/", "", "a/b/c/d/e/f/g/h", "x$"] {
            assert!(topic_matches("#", t), "{t}");
        }
        for t in ["$aws/things/x", "$SYS", "$"] {
            assert!(!topic_matches("#", t), "{t}");
        }
    }

    #[test]
    fn plus_matches_one_level_possibly_empty() {
        assert!(topic_matches("+", "a"));
        assert!(topic_matches("+", ""));
        assert!(!topic_matches("+", "a/b"));
        assert!(!topic_matches("+", "/"));
        assert!(topic_matches("a/+", "a/"));
        assert!(topic_matches("a/+", "a/b"));
        assert!(!topic_matches("a/+", "a"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(topic_matches("a/+/c", "a//c"));
        assert!(topic_matches("+/+", "/"));
        assert!(topic_matches("+/b/#", "a/b/c"));
        assert!(!topic_matches("+/b/#", "a/b"));
    }

    #[test]
    fn dollar_topics_and_wildcards() {
        assert!(!topic_matches("+/things/x", "$aws/things/x"));
        assert!(!topic_matches("+/#", "$aws/things/x"));
        assert!(!topic_matches("#", "$aws/events/presence/connected/c1"));
        assert!(topic_matches(
            "$aws/events/#",
            "$aws/events/presence/connected/c1"
        ));
        assert!(topic_matches(
            "$aws/events/presence/+/c1",
            "$aws/events/presence/connected/c1"
        ));
        assert!(topic_matches("$aws/+/x", "$aws/things/x"));
        assert!(topic_matches("$SYS", "$SYS"));
        // Only the first level is protected: `$` deeper down is an ordinary character.
        assert!(topic_matches("a/+", "a/$x"));
        assert!(topic_matches("a/#", "a/$x/y"));
    }

    #[test]
    fn literal_levels() {
        assert!(topic_matches("a/b", "a/b"));
        assert!(!topic_matches("a/b", "a/b/"));
        assert!(!topic_matches("a/b", "a"));
        assert!(!topic_matches("a", "a/b"));
        assert!(topic_matches("/", "/"));
        assert!(!topic_matches("a/b", "A/b"));
    }

    #[test]
    fn invalid_filters_defined_behaviour() {
        // A '#' that is not last matches nothing.
        assert!(!topic_matches("a/#/b", "a/x/b"));
        assert!(!topic_matches("#/b", "a/b"));
        // Mixed levels compare literally.
        assert!(topic_matches("a+", "a+"));
        assert!(!topic_matches("a+", "ab"));
    }

    #[test]
    fn exact_filters() {
        assert!(filter_is_exact("a/b"));
        assert!(filter_is_exact("$aws/things/x/shadow/update/accepted"));
        assert!(!filter_is_exact("a/+"));
        assert!(!filter_is_exact("#"));
        assert!(!filter_is_exact("a/+/b"));
    }
}
