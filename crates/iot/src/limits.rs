//! The broker's `[limits]` table: AWS IoT Core's message-broker quotas as defaults.
//!
//! Field names are a contract with the configuration file (DESIGN.md §4), so unknown keys
//! are rejected rather than silently ignored: a typo must not quietly fall back to a default.

use std::time::Duration;

/// Message-broker limits. Every field defaults to IoT Core's value (or, where IoT Core
/// throttles something a local broker should not, to "off" = 0).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest client id, in bytes of UTF-8.
    pub max_client_id_bytes: usize,
    /// Longest topic name or filter, in bytes of UTF-8.
    pub max_topic_bytes: usize,
    /// Most `/` in a topic name or filter, not counting a `$aws/rules/<rule>/` prefix.
    pub max_topic_slashes: usize,
    /// Largest PUBLISH payload; a larger PUBLISH (or CONNECT will) disconnects.
    pub max_payload_bytes: usize,
    /// Largest packet a client may send (fixed header included): MQTT 5's CONNACK Maximum
    /// Packet Size, and the decoder's bound for 3.1.1 too. IoT Core's quota "Maximum MQTT5
    /// packet size" is read as 146 KiB (a 128 KiB payload plus topic and properties).
    pub max_packet_bytes: usize,
    /// MQTT 5 topic aliases a client may set per connection (CONNACK Topic Alias Maximum).
    pub topic_alias_maximum: u16,
    /// Most topic filters in one SUBSCRIBE.
    pub max_filters_per_subscribe: usize,
    /// Most subscriptions one connection may hold.
    pub max_subscriptions_per_connection: usize,
    /// Unacknowledged QoS 1 messages, in each direction (MQTT 5 CONNACK Receive Maximum).
    pub max_inflight: usize,
    /// Offline QoS 1 queue of a persistent session; the oldest is dropped past it.
    pub max_queued_per_session: usize,
    /// A requested keep-alive between 1 s and this is raised to this.
    #[serde(with = "humantime_serde")]
    pub keepalive_min: Duration,
    /// A requested keep-alive of 0 or above this is set to this.
    #[serde(with = "humantime_serde")]
    pub keepalive_max: Duration,
    /// CONNECTs per client id per second; 0 = off.
    pub connects_per_client_id_per_sec: u32,
    /// PUBLISHes (in + out) per connection per second; 0 = off, unless
    /// `iot_core_rate_limits` (IoT Core: 100). See [`Limits::publishes_per_sec`].
    pub publishes_per_connection_per_sec: u32,
    /// Bytes of PUBLISH packets (in + out) per connection per second; 0 = off, unless
    /// `iot_core_rate_limits` (IoT Core: 524288). See [`Limits::bytes_per_sec`].
    pub bytes_per_connection_per_sec: u64,
    /// IoT Core's per-connection rates for the two keys above where they are 0; a
    /// non-zero key keeps its own value. Off by default: a local broker is also a
    /// benchmark target, and development should not be throttled.
    pub iot_core_rate_limits: bool,
    /// Concurrent connections; 0 = unlimited.
    pub max_connections: usize,
    /// Longest life of a WebSocket connection.
    #[serde(with = "humantime_serde")]
    pub websocket_ttl: Duration,
    /// How long a custom authorizer may take to answer.
    #[serde(with = "humantime_serde")]
    pub authorizer_timeout: Duration,
    /// How long each step of opening a connection may take before it is closed: the TLS
    /// handshake, the WebSocket upgrade's request head, the MQTT CONNECT. A client that
    /// stalls there holds a socket without having authenticated; IoT Core publishes no
    /// figure for this, so the default is the usual servers' 10 s.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Lower bound for an authorizer's `refreshAfterInSeconds` / `disconnectAfterInSeconds`.
    #[serde(with = "humantime_serde")]
    pub authorizer_ttl_min: Duration,
    /// Durable store: longest a PUBACK waits for its fsync group.
    #[serde(with = "humantime_serde")]
    pub group_commit_max_delay: Duration,
    /// Bytes of messages queued sessions may hold in memory, the durable store's page
    /// cache included (`"256MiB"`, `"1GiB"` or a number of bytes). Past it, queued QoS 1
    /// messages live only in the store (durable) or the oldest are dropped (`in_memory`).
    #[serde(with = "byte_size")]
    pub memory_budget: u64,
    /// Device Shadow: bytes of `state.desired` plus `state.reported` a shadow may hold
    /// (metadata not counted); an update over it is refused with 413.
    pub shadow_max_state_bytes: usize,
    /// Device Shadow: nesting levels inside `desired` or `reported`; deeper → 400. IoT
    /// Core's published figures disagree (5, 6 and 8 levels); 6 is its error text's.
    pub shadow_max_depth: usize,
    /// Device Shadow: requests of one thing (all its shadows, MQTT and HTTP) not yet
    /// answered, e.g. waiting for the disk; one more is refused with 429.
    pub shadow_inflight_per_thing: usize,
    /// Device Shadow: requests per thing per second (all its shadows, MQTT and HTTP); over
    /// it → 429. 0 = off.
    pub shadow_requests_per_thing_per_sec: u32,
}

/// A byte count written with a unit (`"64MiB"`, `"500 MB"`) or as a plain number.
mod byte_size {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(*bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(bytes) => Ok(bytes),
            Written::Text(text) => text
                .parse::<bytesize::ByteSize>()
                .map(|size| size.as_u64())
                .map_err(|error| {
                    serde::de::Error::custom(format!(
                        "{text:?} is not a size in bytes (e.g. \"256MiB\"): {error}"
                    ))
                }),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_client_id_bytes: 128,
            max_topic_bytes: 256,
            max_topic_slashes: 7,
            max_payload_bytes: 128 * 1024,
            max_packet_bytes: 146 * 1024,
            topic_alias_maximum: 8,
            max_filters_per_subscribe: 8,
            max_subscriptions_per_connection: 50,
            max_inflight: 100,
            max_queued_per_session: 100_000,
            keepalive_min: Duration::from_secs(30),
            keepalive_max: Duration::from_secs(1200),
            connects_per_client_id_per_sec: 1,
            publishes_per_connection_per_sec: 0,
            bytes_per_connection_per_sec: 0,
            iot_core_rate_limits: false,
            max_connections: 0,
            websocket_ttl: Duration::from_secs(24 * 60 * 60),
            authorizer_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            authorizer_ttl_min: Duration::from_secs(300),
            group_commit_max_delay: Duration::from_millis(2),
            memory_budget: 256 << 20,
            shadow_max_state_bytes: 8 * 1024,
            shadow_max_depth: 6,
            shadow_inflight_per_thing: 10,
            shadow_requests_per_thing_per_sec: 20,
        }
    }
}

/// IoT Core's "Publish requests per connection" (inbound and outbound, per second).
pub const IOT_CORE_PUBLISHES_PER_SEC: u32 = 100;
/// IoT Core's "Throughput per connection" (bytes per second, inbound and outbound).
pub const IOT_CORE_BYTES_PER_SEC: u64 = 512 * 1024;

impl Limits {
    /// The PUBLISH rate a connection is held to; 0 = unlimited. An explicit non-zero
    /// `publishes_per_connection_per_sec` wins over the `iot_core_rate_limits` preset, so
    /// the preset can be taken with one rate changed.
    pub fn publishes_per_sec(&self) -> u32 {
        match self.publishes_per_connection_per_sec {
            0 if self.iot_core_rate_limits => IOT_CORE_PUBLISHES_PER_SEC,
            configured => configured,
        }
    }

    /// The byte rate a connection is held to; 0 = unlimited. Precedence as
    /// [`Limits::publishes_per_sec`].
    pub fn bytes_per_sec(&self) -> u64 {
        match self.bytes_per_connection_per_sec {
            0 if self.iot_core_rate_limits => IOT_CORE_BYTES_PER_SEC,
            configured => configured,
        }
    }

    /// The keep-alive IoT Core actually applies to a CONNECT's requested one.
    ///
    /// 0 ("no keep-alive" in MQTT) is not honoured: IoT Core uses the maximum instead, so an
    /// idle dead client is still detected eventually.
    pub fn effective_keep_alive(&self, requested_secs: u16) -> Duration {
        let requested = Duration::from_secs(u64::from(requested_secs));
        if requested_secs == 0 || requested > self.keepalive_max {
            self.keepalive_max
        } else if requested < self.keepalive_min {
            self.keepalive_min
        } else {
            requested
        }
    }

    /// How long the broker waits without hearing from a client before disconnecting it
    /// (`MQTT_KEEP_ALIVE_TIMEOUT`): 1.5 × the effective keep-alive, as MQTT 3.1.1 §3.1.2.10.
    pub fn keep_alive_deadline(&self, requested_secs: u16) -> Duration {
        let effective = self.effective_keep_alive(requested_secs);
        effective + effective / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_iot_core_values() {
        let l = Limits::default();
        assert_eq!(l.max_client_id_bytes, 128);
        assert_eq!(l.max_topic_bytes, 256);
        assert_eq!(l.max_topic_slashes, 7);
        assert_eq!(l.max_payload_bytes, 131_072);
        assert_eq!(l.max_filters_per_subscribe, 8);
        assert_eq!(l.max_subscriptions_per_connection, 50);
        assert_eq!(l.max_inflight, 100);
        assert_eq!(l.max_queued_per_session, 100_000);
        assert_eq!(l.keepalive_min, Duration::from_secs(30));
        assert_eq!(l.keepalive_max, Duration::from_secs(1200));
        assert_eq!(l.connects_per_client_id_per_sec, 1);
        assert_eq!(l.publishes_per_connection_per_sec, 0);
        assert_eq!(l.bytes_per_connection_per_sec, 0);
        assert!(!l.iot_core_rate_limits);
        assert_eq!((l.publishes_per_sec(), l.bytes_per_sec()), (0, 0));
        assert_eq!(l.max_connections, 0);
        assert_eq!(l.websocket_ttl, Duration::from_secs(86_400));
        assert_eq!(l.authorizer_timeout, Duration::from_secs(5));
        assert_eq!(l.handshake_timeout, Duration::from_secs(10));
        assert_eq!(l.authorizer_ttl_min, Duration::from_secs(300));
        assert_eq!(l.group_commit_max_delay, Duration::from_millis(2));
        assert_eq!(l.shadow_max_state_bytes, 8192);
        assert_eq!(l.shadow_max_depth, 6);
        assert_eq!(l.shadow_inflight_per_thing, 10);
        assert_eq!(l.shadow_requests_per_thing_per_sec, 20);
    }

    #[test]
    fn keep_alive_clamped_like_iot_core() {
        let l = Limits::default();
        let s = Duration::from_secs;
        assert_eq!(l.effective_keep_alive(0), s(1200));
        assert_eq!(l.effective_keep_alive(1), s(30));
        assert_eq!(l.effective_keep_alive(10), s(30));
        assert_eq!(l.effective_keep_alive(29), s(30));
        assert_eq!(l.effective_keep_alive(30), s(30));
        assert_eq!(l.effective_keep_alive(60), s(60));
        assert_eq!(l.effective_keep_alive(1200), s(1200));
        assert_eq!(l.effective_keep_alive(1201), s(1200));
        assert_eq!(l.effective_keep_alive(1300), s(1200));
        assert_eq!(l.effective_keep_alive(u16::MAX), s(1200));
    }

    #[test]
    fn keep_alive_deadline_is_one_and_a_half_times() {
        let l = Limits::default();
        assert_eq!(l.keep_alive_deadline(60), Duration::from_secs(90));
        assert_eq!(l.keep_alive_deadline(0), Duration::from_secs(1800));
        assert_eq!(l.keep_alive_deadline(10), Duration::from_secs(45));
    }

    #[test]
    fn keep_alive_bounds_come_from_the_struct() {
        let l = Limits {
            keepalive_min: Duration::from_secs(1),
            keepalive_max: Duration::from_secs(5),
            ..Limits::default()
        };
        assert_eq!(l.effective_keep_alive(1), Duration::from_secs(1));
        assert_eq!(l.effective_keep_alive(3), Duration::from_secs(3));
        assert_eq!(l.effective_keep_alive(6), Duration::from_secs(5));
        assert_eq!(l.effective_keep_alive(0), Duration::from_secs(5));
        assert_eq!(l.keep_alive_deadline(1), Duration::from_millis(1500));
    }

    #[test]
    fn empty_toml_table_gives_defaults() {
        let l: Limits = toml::from_str("").unwrap();
        assert_eq!(l, Limits::default());
    }

    #[test]
    fn toml_overrides_and_parses_durations() {
        let l: Limits = toml::from_str(
            r#"
            max_topic_bytes = 512
            keepalive_min = "1s"
            keepalive_max = "1h"
            websocket_ttl = "90m"
            group_commit_max_delay = "500us"
            handshake_timeout = "3s"
            bytes_per_connection_per_sec = 524288
            "#,
        )
        .unwrap();
        assert_eq!(l.max_topic_bytes, 512);
        assert_eq!(l.keepalive_min, Duration::from_secs(1));
        assert_eq!(l.keepalive_max, Duration::from_secs(3600));
        assert_eq!(l.websocket_ttl, Duration::from_secs(5400));
        assert_eq!(l.group_commit_max_delay, Duration::from_micros(500));
        assert_eq!(l.handshake_timeout, Duration::from_secs(3));
        assert_eq!(l.bytes_per_connection_per_sec, 524_288);
        // Untouched fields keep their defaults.
        assert_eq!(l.max_topic_slashes, 7);
        assert_eq!(l.authorizer_timeout, Duration::from_secs(5));
    }

    #[test]
    fn design_doc_limits_table_parses_to_defaults() {
        // The `[limits]` example of DESIGN.md §4, verbatim values.
        let l: Limits = toml::from_str(
            r#"
            max_client_id_bytes = 128
            max_topic_bytes = 256
            max_topic_slashes = 7
            max_payload_bytes = 131072
            max_filters_per_subscribe = 8
            max_subscriptions_per_connection = 50
            max_inflight = 100
            max_queued_per_session = 100000
            keepalive_min = "30s"
            keepalive_max = "1200s"
            connects_per_client_id_per_sec = 1
            publishes_per_connection_per_sec = 0
            bytes_per_connection_per_sec = 0
            iot_core_rate_limits = false
            max_connections = 0
            websocket_ttl = "24h"
            authorizer_timeout = "5s"
            handshake_timeout = "10s"
            authorizer_ttl_min = "300s"
            group_commit_max_delay = "2ms"
            "#,
        )
        .unwrap();
        assert_eq!(l, Limits::default());
    }

    #[test]
    fn iot_core_preset_fills_the_rates_left_at_zero() {
        let preset: Limits = toml::from_str("iot_core_rate_limits = true").unwrap();
        assert_eq!(preset.publishes_per_sec(), 100);
        assert_eq!(preset.bytes_per_sec(), 524_288);
        // The keys themselves stay as configured; only the effective rates change.
        assert_eq!(preset.publishes_per_connection_per_sec, 0);

        let one_changed: Limits =
            toml::from_str("iot_core_rate_limits = true\npublishes_per_connection_per_sec = 10")
                .unwrap();
        assert_eq!(one_changed.publishes_per_sec(), 10);
        assert_eq!(one_changed.bytes_per_sec(), 524_288);

        let explicit: Limits = toml::from_str(
            "publishes_per_connection_per_sec = 7\nbytes_per_connection_per_sec = 900",
        )
        .unwrap();
        assert_eq!(
            (explicit.publishes_per_sec(), explicit.bytes_per_sec()),
            (7, 900)
        );
    }

    #[test]
    fn unknown_key_rejected() {
        let err = toml::from_str::<Limits>("max_topic_byte = 3").unwrap_err();
        assert!(err.to_string().contains("max_topic_byte"), "{err}");
    }

    #[test]
    fn bad_duration_rejected() {
        assert!(toml::from_str::<Limits>("keepalive_min = \"soon\"").is_err());
        // A bare number is ambiguous (seconds? ms?), so it must carry a unit.
        assert!(toml::from_str::<Limits>("keepalive_min = 30").is_err());
    }

    #[test]
    fn json_works_too() {
        let l: Limits = serde_json::from_str(r#"{"authorizer_timeout":"2s"}"#).unwrap();
        assert_eq!(l.authorizer_timeout, Duration::from_secs(2));
        let round: Limits = serde_json::from_value(serde_json::to_value(&l).unwrap()).unwrap();
        assert_eq!(round, l);
    }
}
