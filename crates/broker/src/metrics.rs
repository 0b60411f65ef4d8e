//! The broker's Prometheus metrics (`GET /metrics` on the `http` listener): every metric's
//! name, help and labels is defined here, and nowhere else.
//!
//! Two kinds of value. What the broker counts anyway (the router's `Stats`, the sessions,
//! the retained messages) is read when scraped and handed to [`Metrics::render`] as a
//! [`Snapshot`]: nothing is counted twice. What only metrics want is counted here, at a cost
//! the hot path does not notice: per-message counters are [`Sharded`] (each worker thread
//! adds to its own cache line, relaxed), and callers add a batch at once (the packets of
//! one read, the messages of one write); rarer events (a refusal, a denial, a connection)
//! use prometheus-client's families directly.
//!
//! A utility: any layer may use it; it uses none of them.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::refusals::{RecentRefusals, Refusal};

/// The `Content-Type` of a scrape (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Shards per counter: more than the worker threads of the machines we run on, so two
/// threads rarely share one (a shared one is still correct, only slower).
const SHARDS: usize = 16;

/// One shard on its own cache line, so threads adding to neighbouring shards do not
/// contend for the line.
#[derive(Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// A counter written by many threads: each adds to its own shard; a scrape sums them.
pub struct Sharded {
    shards: [Shard; SHARDS],
}

impl Default for Sharded {
    fn default() -> Sharded {
        Sharded {
            shards: std::array::from_fn(|_| Shard::default()),
        }
    }
}

/// Hands each thread a shard index in turn, the first time it counts.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard_index() -> usize {
    SHARD.with(|shard| {
        let mut index = shard.get();
        if index == usize::MAX {
            index = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            shard.set(index);
        }
        index
    })
}

impl Sharded {
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.shards[shard_index()].0.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|shard| shard.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// The listener an MQTT connection came in on (its `listener` label). One byte: every
/// connection remembers it, to count itself out when it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Mqtt,
    Mqtts,
    /// The TLS port: ALPN MQTT, and WebSocket over HTTPS.
    Tls,
    Ws,
    /// The `http` listener's `/mqtt` (the console's connection).
    Http,
}

impl Listener {
    pub fn name(self) -> &'static str {
        match self {
            Listener::Mqtt => "mqtt",
            Listener::Mqtts => "mqtts",
            Listener::Tls => "tls",
            Listener::Ws => "ws",
            Listener::Http => "http",
        }
    }
}

type Labels2 = [(&'static str, String); 2];
type Labels1 = [(&'static str, String); 1];

/// What the broker's layers count for metrics alone. One per broker (no global registry:
/// brokers in one process, as in tests, count apart).
pub struct Metrics {
    pub messages_in: Sharded,
    pub messages_out: Sharded,
    pub bytes_in: Sharded,
    pub bytes_out: Sharded,
    /// Accepted connections open now, by listener and MQTT protocol version.
    connections: Family<Labels2, Gauge>,
    auth_refusals: Family<Labels2, Counter>,
    policy_denials: Family<Labels1, Counter>,
    store_commit_seconds: Histogram,
    connect_seconds: Histogram,
    /// The latest of the denials `pubsub_policy_denials_total` counts, with their reasons
    /// (the console's "why denied").
    pub refusals: RecentRefusals,
}

/// The `(method, reason)` pairs of `pubsub_auth_refusals_total`, shown at 0 from the start
/// (a series that appears only at its first refusal hides that first one from `rate()`).
pub const AUTH_REFUSALS: [(&str, &str); 13] = [
    ("certificate", "unknown"),
    ("certificate", "inactive"),
    ("certificate", "revoked"),
    ("certificate", "pending_activation"),
    ("certificate", "validity"),
    ("certificate", "malformed"),
    ("certificate", "ca_not_active"),
    ("certificate", "not_registered"),
    ("sigv4", "malformed"),
    ("sigv4", "credentials"),
    ("sigv4", "signature"),
    ("custom_authorizer", "refused"),
    ("custom_authorizer", "no_credentials"),
];

/// The MQTT actions whose denials are shown at 0 from the start (the iot-data ones appear
/// with their first denial).
const MQTT_ACTIONS: [&str; 5] = [
    "iot:Connect",
    "iot:Publish",
    "iot:Subscribe",
    "iot:Receive",
    "iot:RetainPublish",
];

impl Default for Metrics {
    fn default() -> Metrics {
        let metrics = Metrics {
            messages_in: Sharded::default(),
            messages_out: Sharded::default(),
            bytes_in: Sharded::default(),
            bytes_out: Sharded::default(),
            connections: Family::default(),
            auth_refusals: Family::default(),
            policy_denials: Family::default(),
            // 100 µs to about 6.5 s: an fsync on a fast disk up to a sick one.
            store_commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 17)),
            // 100 µs to about 3.3 s: a plain CONNECT up to a slow custom authorizer.
            connect_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            refusals: RecentRefusals::default(),
        };
        for listener in [
            Listener::Mqtt,
            Listener::Mqtts,
            Listener::Tls,
            Listener::Ws,
            Listener::Http,
        ] {
            for protocol in ["3.1.1", "5"] {
                metrics.connection(listener, protocol, 0);
            }
        }
        for (method, reason) in AUTH_REFUSALS {
            let _ = metrics.auth_refusals.get_or_create(&labels(method, reason));
        }
        for action in MQTT_ACTIONS {
            let _ = metrics
                .policy_denials
                .get_or_create(&[("action", action.to_owned())]);
        }
        metrics
    }
}

fn labels(method: &str, reason: &str) -> Labels2 {
    [("method", method.to_owned()), ("reason", reason.to_owned())]
}

/// What the broker already knows, read at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub sessions_online: u64,
    pub sessions_offline: u64,
    /// Messages waiting in sessions' queues (sent but unacknowledged QoS 1 included).
    pub queued_messages: u64,
    pub retained_messages: u64,
    /// `(reason, count)`: the router's drop counters.
    pub dropped: Vec<(&'static str, u64)>,
}

impl Metrics {
    /// A connection was accepted (`+1`) or closed (`-1`) on `listener` with `protocol`.
    pub fn connection(&self, listener: Listener, protocol: &'static str, change: i64) {
        self.connections
            .get_or_create(&[
                ("listener", listener.name().to_owned()),
                ("protocol", protocol.to_owned()),
            ])
            .inc_by(change);
    }

    /// A client was refused before MQTT began or at CONNECT: `method` is how it tried to
    /// authenticate (`certificate`, `sigv4`, `custom_authorizer`), `reason` a short label.
    pub fn auth_refused(&self, method: &'static str, reason: &str) {
        self.auth_refusals
            .get_or_create(&labels(method, reason))
            .inc();
    }

    /// A policy refused an action: counted, and kept among the latest refusals.
    pub fn policy_refused(&self, refusal: Refusal) {
        self.policy_denied(refusal.action);
        self.refusals.record(refusal);
    }

    /// A policy refused `action` (`iot:Publish`, …) again, for a resource already among the
    /// latest refusals (a cached, silent denial): counted only.
    pub fn policy_denied(&self, action: &str) {
        self.policy_denials
            .get_or_create(&[("action", action.to_owned())])
            .inc();
    }

    pub fn store_committed(&self, took: Duration) {
        self.store_commit_seconds.observe(took.as_secs_f64());
    }

    pub fn connect_handled(&self, took: Duration) {
        self.connect_seconds.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition of everything, with `snapshot` for what the broker
    /// already counts.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut registry = Registry::default();
        registry.register(
            "pubsub_connections",
            "MQTT connections open now (past CONNECT), by listener and protocol version",
            self.connections.clone(),
        );
        let sessions = Family::<Labels1, Gauge>::default();
        for (state, count) in [
            ("online", snapshot.sessions_online),
            ("offline", snapshot.sessions_offline),
        ] {
            sessions
                .get_or_create(&[("state", state.to_owned())])
                .set(gauge_value(count));
        }
        registry.register(
            "pubsub_sessions",
            "Sessions the broker holds, by state (offline: persistent sessions waiting for their client)",
            sessions,
        );
        for (name, help, counter) in [
            (
                "pubsub_messages_in",
                "PUBLISH packets received from MQTT clients",
                &self.messages_in,
            ),
            (
                "pubsub_messages_out",
                "PUBLISH packets sent to MQTT clients (deliveries, redeliveries included)",
                &self.messages_out,
            ),
            (
                "pubsub_bytes_in",
                "Bytes read from MQTT connections (MQTT packets, after TLS and WebSocket framing)",
                &self.bytes_in,
            ),
            (
                "pubsub_bytes_out",
                "Bytes written to MQTT connections (MQTT packets, before TLS and WebSocket framing)",
                &self.bytes_out,
            ),
        ] {
            registry.register(name, help, ConstCounter::new(counter.get()));
        }
        let dropped = Family::<Labels1, Counter>::default();
        for (reason, count) in &snapshot.dropped {
            dropped
                .get_or_create(&[("reason", (*reason).to_owned())])
                .inc_by(*count);
        }
        registry.register(
            "pubsub_messages_dropped",
            "Messages not delivered, by reason",
            dropped,
        );
        registry.register(
            "pubsub_auth_refusals",
            "Clients refused at authentication, by method and reason",
            self.auth_refusals.clone(),
        );
        registry.register(
            "pubsub_policy_denials",
            "Actions refused by policy, by action",
            self.policy_denials.clone(),
        );
        registry.register(
            "pubsub_queued_messages",
            "Messages waiting in session queues",
            ConstGauge::new(gauge_value(snapshot.queued_messages)),
        );
        registry.register(
            "pubsub_retained_messages",
            "Retained messages held",
            ConstGauge::new(gauge_value(snapshot.retained_messages)),
        );
        registry.register(
            "pubsub_store_commit_seconds",
            "Time one group commit of the durable store took (write and fsync)",
            self.store_commit_seconds.clone(),
        );
        registry.register(
            "pubsub_connect_seconds",
            "Time from a complete CONNECT to its CONNACK being queued (authentication, policy, session)",
            self.connect_seconds.clone(),
        );
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut text, &registry);
        text
    }
}

fn gauge_value(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name` (with exactly these labels, `{…}` as written).
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                (key == name).then(|| value.parse().unwrap())
            })
    }

    #[test]
    fn a_fresh_broker_renders_every_metric_at_zero() {
        let snapshot = Snapshot {
            dropped: vec![("queue_full", 0)],
            ..Snapshot::default()
        };
        let text = Metrics::default().render(&snapshot);
        for name in [
            "pubsub_connections",
            "pubsub_sessions",
            "pubsub_messages_in_total",
            "pubsub_messages_out_total",
            "pubsub_bytes_in_total",
            "pubsub_bytes_out_total",
            "pubsub_messages_dropped_total",
            "pubsub_auth_refusals_total",
            "pubsub_policy_denials_total",
            "pubsub_queued_messages",
            "pubsub_retained_messages",
            "pubsub_store_commit_seconds",
            "pubsub_connect_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} in:\n{text}"
            );
        }
        assert_eq!(sample(&text, "pubsub_messages_in_total"), Some(0.0));
        assert_eq!(
            sample(&text, "pubsub_connections{listener=\"ws\",protocol=\"5\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "pubsub_auth_refusals_total{method=\"sigv4\",reason=\"signature\"}"
            ),
            Some(0.0)
        );
        assert_eq!(sample(&text, "pubsub_connect_seconds_count"), Some(0.0));
    }

    #[test]
    fn counts_and_snapshot_values_are_rendered_with_their_labels() {
        let metrics = Metrics::default();
        metrics.messages_in.add(3);
        metrics.messages_in.add(4);
        metrics.bytes_out.add(1000);
        metrics.connection(Listener::Mqtt, "3.1.1", 1);
        metrics.connection(Listener::Mqtt, "3.1.1", 1);
        metrics.connection(Listener::Mqtt, "3.1.1", -1);
        metrics.connection(Listener::Mqtts, "5", 1);
        metrics.auth_refused("certificate", "revoked");
        metrics.policy_denied("iot:Publish");
        metrics.policy_denied("iot:Publish");
        metrics.connect_handled(Duration::from_millis(3));
        metrics.store_committed(Duration::from_micros(150));
        let snapshot = Snapshot {
            sessions_online: 2,
            sessions_offline: 5,
            queued_messages: 9,
            retained_messages: 4,
            dropped: vec![("queue_full", 6), ("memory", 0)],
        };
        let text = metrics.render(&snapshot);
        for (name, value) in [
            ("pubsub_messages_in_total", 7.0),
            ("pubsub_bytes_out_total", 1000.0),
            (
                "pubsub_connections{listener=\"mqtt\",protocol=\"3.1.1\"}",
                1.0,
            ),
            ("pubsub_connections{listener=\"mqtts\",protocol=\"5\"}", 1.0),
            ("pubsub_sessions{state=\"online\"}", 2.0),
            ("pubsub_sessions{state=\"offline\"}", 5.0),
            ("pubsub_queued_messages", 9.0),
            ("pubsub_retained_messages", 4.0),
            ("pubsub_messages_dropped_total{reason=\"queue_full\"}", 6.0),
            ("pubsub_messages_dropped_total{reason=\"memory\"}", 0.0),
            (
                "pubsub_auth_refusals_total{method=\"certificate\",reason=\"revoked\"}",
                1.0,
            ),
            ("pubsub_policy_denials_total{action=\"iot:Publish\"}", 2.0),
            ("pubsub_connect_seconds_count", 1.0),
            ("pubsub_connect_seconds_bucket{le=\"0.0001\"}", 0.0),
            ("pubsub_connect_seconds_bucket{le=\"+Inf\"}", 1.0),
            ("pubsub_store_commit_seconds_count", 1.0),
        ] {
            assert_eq!(sample(&text, name), Some(value), "{name} in:\n{text}");
        }
    }

    #[test]
    fn sharded_counts_from_many_threads_add_up() {
        let counter = std::sync::Arc::new(Sharded::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counter.add(1);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(counter.get(), 8000);
    }
}
