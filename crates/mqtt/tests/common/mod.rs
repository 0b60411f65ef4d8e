//! Proptest strategies the round-trip tests of both versions share: values the codec
//! accepts for QoS, packet ids, strings, binary data, topic names and filters.

use bytes::Bytes;
use mqtt::{is_valid_topic_filter, QoS};
use proptest::collection::vec;
use proptest::prelude::*;

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

pub fn pkid() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

/// Any string the codec accepts, of at most `max` characters: arbitrary Unicode without
/// U+0000.
pub fn text_of(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[^\u{0}]{{0,{max}}}")).expect("valid regex")
}

pub fn binary(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

pub fn topic_name() -> impl Strategy<Value = String> {
    "[^\u{0}+#]{1,24}"
}

pub fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![Just("+".to_owned()), "[^\u{0}+#/]{0,6}"];
    (vec(level, 1..5), any::<bool>())
        .prop_map(|(levels, multi)| {
            let mut filter = levels.join("/");
            if multi {
                filter.push_str("/#");
            }
            filter
        })
        .prop_filter("valid filter", |f| is_valid_topic_filter(f))
}
