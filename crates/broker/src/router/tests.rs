//! The router against an in-memory configuration: sessions, subscriptions, routing.

use super::*;
use std::time::Duration;

fn router() -> Router {
    let config = Arc::new(Config::parse("in_memory = true").unwrap());
    Router::new(config, None, Recovered::default())
}

fn live(name: &str) -> Arc<LiveConnection> {
    Arc::new(LiveConnection::new(name, None))
}

/// A 3.1.1 session: clean, or persistent for the configured expiry (1 h by default).
fn v311(clean: bool) -> SessionKind {
    SessionKind {
        expiry: if clean {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        },
        mqtt5: false,
    }
}

/// An MQTT 5 session with this Session Expiry Interval.
fn v5(expiry_secs: u64) -> SessionKind {
    SessionKind {
        expiry: Duration::from_secs(expiry_secs),
        mqtt5: true,
    }
}

fn drain(session: &Session) -> Vec<(String, QoS)> {
    session.with_state(|state| {
        std::iter::from_fn(|| state.next_outgoing())
            .map(|out| (out.delivery.topic.to_string(), out.delivery.qos))
            .collect()
    })
}

#[test]
fn overlapping_subscriptions_deliver_once_at_highest_qos() {
    let router = router();
    let opened = router.open_session("c", true, v311(true), 1, live("c"));
    router.subscribe(&opened.session, "a/+", QoS::AtMostOnce);
    router.subscribe(&opened.session, "a/#", QoS::AtLeastOnce);
    let routed = router.route("a/b", Bytes::from_static(b"m"), QoS::AtLeastOnce);
    assert_eq!(routed.sessions, 1);
    assert_eq!(
        drain(&opened.session),
        vec![("a/b".into(), QoS::AtLeastOnce)]
    );
}

#[test]
fn many_subscribers_on_overlapping_filters_each_get_one_copy() {
    let router = router();
    let sessions: Vec<_> = (0..100)
        .map(|i| {
            let opened = router.open_session(&format!("c{i}"), true, v311(true), i, live("c"));
            router.subscribe(&opened.session, "a/+", QoS::AtMostOnce);
            router.subscribe(&opened.session, "a/#", QoS::AtLeastOnce);
            router.subscribe(&opened.session, "a/b", QoS::AtMostOnce);
            opened.session
        })
        .collect();
    let routed = router.route("a/b", Bytes::from_static(b"m"), QoS::AtLeastOnce);
    assert_eq!(routed.sessions, 100);
    for session in &sessions {
        assert_eq!(drain(session), vec![("a/b".into(), QoS::AtLeastOnce)]);
    }
}

#[test]
fn targets_match_a_naive_deduplication_on_both_sides_of_the_linear_limit() {
    let router = router();
    let sessions: Vec<_> = (0..40)
        .map(|i| {
            router
                .open_session(&format!("s{i}"), true, v311(true), i, live("s"))
                .session
        })
        .collect();
    // A fixed pseudo-random sequence of (session, QoS) matches, with repeats.
    let mut seed = 7u64;
    let matches: Vec<(usize, QoS)> = (0..200)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let session = (seed >> 33) as usize % sessions.len();
            let qos = if seed >> 20 & 1 == 1 {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            };
            (session, qos)
        })
        .collect();
    for prefix in [5, 17, 30, 200] {
        let mut targets = Targets::default();
        let mut naive: Vec<(usize, QoS)> = Vec::new();
        for &(index, qos) in &matches[..prefix] {
            targets.add(&sessions[index], qos);
            match naive.iter_mut().find(|(known, _)| *known == index) {
                Some((_, granted)) => *granted = (*granted).max(qos),
                None => naive.push((index, qos)),
            }
        }
        let got: Vec<(usize, QoS)> = targets
            .list
            .iter()
            .map(|(session, qos)| {
                let index = sessions
                    .iter()
                    .position(|s| Arc::ptr_eq(s, session))
                    .unwrap();
                (index, *qos)
            })
            .collect();
        assert_eq!(got, naive, "after {prefix} matches");
    }
}

#[test]
fn persistent_session_resumes_and_clean_session_replaces() {
    let router = router();
    let first = router.open_session("c", false, v311(false), 1, live("c"));
    assert!(!first.session_present);
    router.subscribe(&first.session, "t", QoS::AtLeastOnce);
    router.close_session(&first.session, 1, Instant::now());
    router.route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce);
    let resumed = router.open_session("c", false, v311(false), 2, live("c"));
    assert!(resumed.session_present);
    assert_eq!(drain(&resumed.session).len(), 1);
    let replaced = router.open_session("c", true, v311(true), 3, live("c"));
    assert!(!replaced.session_present);
    assert_eq!(replaced.took_over, Some(2));
    let routed = router.route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce);
    assert_eq!(routed.sessions, 0);
}

#[test]
fn expired_sessions_are_removed() {
    let router = router();
    let opened = router.open_session("c", false, v311(false), 1, live("c"));
    router.subscribe(&opened.session, "t", QoS::AtLeastOnce);
    let now = Instant::now();
    router.close_session(&opened.session, 1, now);
    assert_eq!(router.expire_sessions(now), 0);
    assert_eq!(router.expire_sessions(now + Duration::from_secs(3601)), 1);
    assert_eq!(router.session_count(), 0);
    let routed = router.route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce);
    assert_eq!(routed.sessions, 0);
}

#[test]
fn retained_follows_iot_rule() {
    let router = router();
    router.retain("a/b", Bytes::from_static(b"1"), QoS::AtMostOnce);
    router.retain("a/b", Bytes::from_static(b"2"), QoS::AtMostOnce);
    assert_eq!(&router.retained_for("a/b")[0].payload[..], b"2");
    assert!(router.retained_for("a/+").is_empty());
    router.retain("a/b", Bytes::new(), QoS::AtMostOnce);
    assert_eq!(router.retained_count(), 0);
}

#[test]
fn connect_throttle_counts_per_second() {
    let router = router();
    assert!(router.admit_connect("c", 10));
    assert!(!router.admit_connect("c", 10));
    assert!(router.admit_connect("other", 10));
    assert!(router.admit_connect("c", 11));
}

#[test]
fn a_session_is_resumed_only_by_the_mqtt_version_that_made_it() {
    let router = router();
    let first = router.open_session("c", false, v5(600), 1, live("c"));
    router.subscribe(&first.session, "t", QoS::AtLeastOnce);
    router.close_session(&first.session, 1, Instant::now());
    let v311_again = router.open_session("c", false, v311(false), 2, live("c"));
    assert!(!v311_again.session_present, "3.1.1 does not resume MQTT 5");
    assert_eq!(
        router
            .route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce)
            .sessions,
        0
    );
    router.close_session(&v311_again.session, 2, Instant::now());
    let v5_again = router.open_session("c", false, v5(600), 3, live("c"));
    assert!(!v5_again.session_present, "MQTT 5 does not resume 3.1.1");
}

#[test]
fn close_session_uses_the_sessions_own_expiry() {
    let router = router();
    let opened = router.open_session("c", false, v5(10), 1, live("c"));
    let now = Instant::now();
    router.close_session(&opened.session, 1, now);
    assert_eq!(router.expire_sessions(now + Duration::from_secs(9)), 0);
    assert_eq!(router.expire_sessions(now + Duration::from_secs(10)), 1);
    // Expiry set to zero (MQTT 5 DISCONNECT) ends the session with its connection.
    let opened = router.open_session("d", false, v5(10), 2, live("d"));
    opened.session.set_expiry(Duration::ZERO);
    router.close_session(&opened.session, 2, Instant::now());
    assert_eq!(router.session_count(), 0);
}

fn route_n(router: &Router, topic: &str, n: usize, qos: QoS) {
    for _ in 0..n {
        router.route(topic, Bytes::from_static(b"m"), qos);
    }
}

#[test]
fn a_shared_group_spreads_messages_over_its_members() {
    let router = router();
    let a = router.open_session("a", true, v5(0), 1, live("a")).session;
    let b = router.open_session("b", true, v5(0), 2, live("b")).session;
    router.subscribe(&a, "$share/g/t/#", QoS::AtLeastOnce);
    router.subscribe(&b, "$share/g/t/#", QoS::AtLeastOnce);
    for i in 0..10 {
        let routed = router.route(
            &format!("t/{i}"),
            Bytes::from_static(b"m"),
            QoS::AtLeastOnce,
        );
        assert_eq!(routed.sessions, 1, "one member per message");
    }
    let (got_a, got_b) = (drain(&a), drain(&b));
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "{got_a:?} {got_b:?}"
    );
    assert_eq!(got_a.len() + got_b.len(), 10);
    assert!(got_a
        .iter()
        .chain(&got_b)
        .all(|(_, qos)| *qos == QoS::AtLeastOnce));
    // Not matching the group's filter reaches nobody.
    assert_eq!(
        router
            .route("u/1", Bytes::from_static(b"m"), QoS::AtLeastOnce)
            .sessions,
        0
    );
}

#[test]
fn each_group_and_each_plain_subscriber_get_their_own_copy() {
    let router = router();
    let g1 = router
        .open_session("g1", true, v5(0), 1, live("g1"))
        .session;
    let g2 = router
        .open_session("g2", true, v5(0), 2, live("g2"))
        .session;
    let plain = router
        .open_session("plain", true, v5(0), 3, live("p"))
        .session;
    router.subscribe(&g1, "$share/one/t", QoS::AtLeastOnce);
    router.subscribe(&g2, "$share/two/t", QoS::AtLeastOnce);
    router.subscribe(&plain, "t", QoS::AtLeastOnce);
    // A member's own plain subscription is a copy of its own, not merged with the group's.
    router.subscribe(&g1, "t", QoS::AtMostOnce);
    let routed = router.route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce);
    assert_eq!(routed.sessions, 4);
    assert_eq!(drain(&g2), vec![("t".into(), QoS::AtLeastOnce)]);
    assert_eq!(drain(&plain), vec![("t".into(), QoS::AtLeastOnce)]);
    let mut got_g1 = drain(&g1);
    got_g1.sort_by_key(|(_, qos)| *qos);
    assert_eq!(
        got_g1,
        vec![
            ("t".into(), QoS::AtMostOnce),
            ("t".into(), QoS::AtLeastOnce)
        ]
    );
}

#[test]
fn an_offline_persistent_member_gets_qos1_when_no_member_is_online() {
    let router = router();
    let persistent = router.open_session("p", false, v5(600), 1, live("p"));
    router.subscribe(&persistent.session, "$share/g/t", QoS::AtLeastOnce);
    let clean = router.open_session("c", true, v5(0), 2, live("c")).session;
    router.subscribe(&clean, "$share/g/t", QoS::AtLeastOnce);
    router.close_session(&persistent.session, 1, Instant::now());
    assert!(!persistent.session.is_online());
    // Online member first.
    route_n(&router, "t", 3, QoS::AtLeastOnce);
    assert_eq!(drain(&clean).len(), 3);
    assert_eq!(persistent.session.with_state(|s| s.queued_len()), 0);
    // The clean member leaves (its session ends): only the offline persistent one is left.
    router.close_session(&clean, 2, Instant::now());
    let routed = router.route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce);
    assert_eq!(routed.sessions, 1);
    let resumed = router.open_session("p", false, v5(600), 3, live("p"));
    assert!(resumed.session_present);
    assert_eq!(
        drain(&resumed.session),
        vec![("t".into(), QoS::AtLeastOnce)]
    );
}

#[test]
fn qos0_to_a_group_with_no_member_online_is_dropped() {
    let router = router();
    let persistent = router.open_session("p", false, v5(600), 1, live("p"));
    router.subscribe(&persistent.session, "$share/g/t", QoS::AtLeastOnce);
    router.close_session(&persistent.session, 1, Instant::now());
    let routed = router.route("t", Bytes::from_static(b"m"), QoS::AtMostOnce);
    assert_eq!(routed.sessions, 0);
    // A member subscribed at QoS 0 gets no QoS 1 message offline either.
    let zero = router.open_session("z", false, v5(600), 2, live("z"));
    router.subscribe(&zero.session, "$share/h/t", QoS::AtMostOnce);
    router.close_session(&zero.session, 2, Instant::now());
    let routed = router.route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce);
    assert_eq!(routed.sessions, 1, "only the QoS 1 member of group g");
    assert_eq!(zero.session.with_state(|s| s.queued_len()), 0);
}

#[test]
fn unsubscribing_leaves_the_group() {
    let router = router();
    let a = router.open_session("a", true, v5(0), 1, live("a")).session;
    let b = router.open_session("b", true, v5(0), 2, live("b")).session;
    router.subscribe(&a, "$share/g/t", QoS::AtLeastOnce);
    router.subscribe(&b, "$share/g/t", QoS::AtLeastOnce);
    assert!(router.unsubscribe(&a, "$share/g/t"));
    assert!(!router.unsubscribe(&a, "$share/g/t"), "already gone");
    route_n(&router, "t", 4, QoS::AtLeastOnce);
    assert!(drain(&a).is_empty());
    assert_eq!(drain(&b).len(), 4);
    assert!(router.unsubscribe(&b, "$share/g/t"));
    assert_eq!(
        router
            .route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce)
            .sessions,
        0
    );
}

#[test]
fn a_replaced_session_leaves_its_groups() {
    let router = router();
    let old = router
        .open_session("a", false, v5(600), 1, live("a"))
        .session;
    router.subscribe(&old, "$share/g/t", QoS::AtLeastOnce);
    let new = router.open_session("a", true, v5(0), 2, live("a")).session;
    assert_eq!(
        router
            .route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce)
            .sessions,
        0
    );
    assert!(drain(&old).is_empty() && drain(&new).is_empty());
}

#[test]
fn shared_subscriptions_get_no_retained_messages() {
    let router = router();
    router.retain("g/t", Bytes::from_static(b"r"), QoS::AtMostOnce);
    router.retain("t", Bytes::from_static(b"r"), QoS::AtMostOnce);
    assert!(router.retained_for("$share/g/t").is_empty());
    assert_eq!(router.retained_for("t").len(), 1);
}

/// Offline persistent sessions subscribed to `filter` at QoS 1.
fn offline_subscribers(router: &Router, count: usize, filter: &str) -> Vec<Arc<Session>> {
    (0..count)
        .map(|n| {
            let id = n as ConnectionId + 1000;
            let opened =
                router.open_session(&format!("{filter}-{n}"), false, v311(false), id, live("s"));
            router.subscribe(&opened.session, filter, QoS::AtLeastOnce);
            router.close_session(&opened.session, id, Instant::now());
            opened.session
        })
        .collect()
}

fn numbered(n: usize, size: usize) -> Bytes {
    let mut payload = format!("{n:08}").into_bytes();
    payload.resize(size, b'.');
    Bytes::from(payload)
}

#[test]
fn in_memory_past_the_budget_drops_the_oldest_qos1_of_the_largest_queue() {
    let config = Config::parse("in_memory = true\n[limits]\nmemory_budget = \"1MiB\"").unwrap();
    let router = Router::new(Arc::new(config), None, Recovered::default());
    let big = offline_subscribers(&router, 1, "big");
    let small = offline_subscribers(&router, 1, "small");
    for n in 0..3 {
        router.route("small", numbered(n, 1000), QoS::AtLeastOnce);
    }
    for n in 0..30 {
        router.route("big", numbered(n, 100_000), QoS::AtLeastOnce);
    }
    assert!(
        router.budget.used() <= router.budget.limit(),
        "{} bytes held",
        router.budget.used()
    );
    let dropped = router.stats.dropped_for_memory.load(Ordering::Relaxed);
    assert!(dropped >= 19, "{dropped} dropped");
    let queued = big[0].with_state(|state| state.queued_len());
    assert_eq!(queued as u64 + dropped, 30);
    // The newest survive, and the small queue lost nothing.
    let kept: Vec<String> = big[0].with_state(|state| {
        std::iter::from_fn(|| state.next_outgoing())
            .map(|out| String::from_utf8_lossy(&out.delivery.payload[..8]).into_owned())
            .collect()
    });
    assert_eq!(kept.last().unwrap(), "00000029");
    assert_eq!(small[0].with_state(|state| state.queued_len()), 3);
}

#[tokio::test]
async fn durable_past_the_budget_keeps_messages_in_the_store_and_delivers_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(&format!(
        "data_dir = {:?}\n[limits]\nmemory_budget = \"4MiB\"",
        dir.path()
    ))
    .unwrap();
    let (store, recovered) = Store::open(
        &dir.path().join("store.redb"),
        Duration::from_millis(1),
        config.store_cache_bytes(),
    )
    .unwrap();
    let router = Router::new(Arc::new(config), Some(store.clone()), recovered);
    let sessions = offline_subscribers(&router, 10, "big/t");
    let mut durable = 0;
    for n in 0..60 {
        let routed = router.route("big/t", numbered(n, 100_000), QoS::AtLeastOnce);
        durable = durable.max(routed.durable);
        // 10 sessions × 100 kB each time: far past the 3 MiB the queues may hold. Only
        // what the store has made durable can be evicted (as a publisher waiting for its
        // PUBACK would).
        store
            .committed()
            .wait_for(|done| *done >= durable)
            .await
            .unwrap();
        router.keep_within_budget();
        assert!(router.budget.used() <= router.budget.limit());
    }
    assert!(router.stats.evicted_bytes.load(Ordering::Relaxed) > 0);
    assert_eq!(router.stats.dropped_for_memory.load(Ordering::Relaxed), 0);
    store
        .committed()
        .wait_for(|done| *done >= durable)
        .await
        .unwrap();
    for (n, session) in sessions.iter().enumerate() {
        let id = 5000 + n as ConnectionId;
        let opened = router.open_session(&session.client_id, false, v311(false), id, live("s"));
        assert!(opened.session_present);
        let received: Vec<String> = opened
            .session
            .with_owned_state(id, |state, load| {
                std::iter::from_fn(|| {
                    let out = state.next_outgoing_where(|_| true, load)?;
                    state.acknowledge(out.pkid.unwrap());
                    Some(String::from_utf8_lossy(&out.delivery.payload[..8]).into_owned())
                })
                .collect()
            })
            .unwrap();
        let expected: Vec<String> = (0..60).map(|n| format!("{n:08}")).collect();
        assert_eq!(received, expected, "session {n}");
    }
    store.close();
}
