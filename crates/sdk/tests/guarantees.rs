//! The guarantees of issue 16, one test per defect (`dNN_…` = defect NN of the issue).
//!
//! Each is observed from outside the SDK: mosquitto where no broker rule is involved, our
//! broker for IoT Core's rules, and the scripted peer (`common::peer`) for what only the
//! wire shows. The SDK is reached only through the small helpers below, so that an API
//! change touches them and not the tests. Every wait is bounded: a broken guarantee fails,
//! it does not hang.

mod broker_support;
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use common::peer::Peer;
use common::Mosquitto;
use pubsub::backoff::BackoffConfig;
use pubsub::{
    ClientRules, DataManager, Endpoint, Error, Message, MessageStream, MqttConfiguration,
    MqttConnectOptions, PublishOutcome, QoS, Reason, ServiceConfiguration, Status, StatusEvent,
};
use tokio::time::timeout;

/// Bound for anything that should take well under a second on loopback.
const T: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// The SDK, through the few calls the tests make (adapt these to the new API).

type Log<T> = Arc<Mutex<Vec<T>>>;

fn status_log() -> Log<Status> {
    Arc::default()
}

fn recorder(log: &Log<Status>) -> impl FnMut(StatusEvent) + Send + 'static {
    let log = log.clone();
    move |e| log.lock().unwrap().push(e.status)
}

/// A manager for a plain-MQTT broker on 127.0.0.1:`port`.
fn manager(port: u16, mqtt: MqttConfiguration) -> DataManager {
    DataManager::new(
        ServiceConfiguration::new("us-east-1", Endpoint::parse("127.0.0.1").unwrap())
            .mqtt_port(port)
            .mqtt_configuration(mqtt),
    )
}

fn connect_mqtt(
    m: &DataManager,
    client_id: &str,
    clean_session: bool,
    on_status: impl FnMut(StatusEvent) + Send + 'static,
) -> Result<(), Error> {
    m.connect_mqtt(
        client_id,
        clean_session,
        &MqttConnectOptions::default(),
        on_status,
    )
}

/// Wait (bounded) until the manager reports `Connected`.
async fn connected(m: &DataManager) {
    broker_support::wait_status(m, Status::Connected).await;
}

/// Topic first, any payload; resolves on PUBACK for QoS 1.
async fn publish(
    m: &DataManager,
    topic: &str,
    payload: impl Into<Bytes>,
    qos: QoS,
) -> Result<PublishOutcome, Error> {
    m.publish(topic, payload, qos).await
}

/// Publish without waiting: `Ok` when the SDK took the message (sent or queued).
fn try_publish(
    m: &DataManager,
    topic: &str,
    payload: impl Into<Bytes>,
    qos: QoS,
) -> Result<(), String> {
    match m.try_publish(topic, payload, qos) {
        Ok(PublishOutcome::Submitted | PublishOutcome::Queued) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// A callback subscription; `Ok` once the broker acknowledged it.
async fn subscribe(
    m: &DataManager,
    filter: &str,
    qos: QoS,
    on_message: impl Fn(&str, &[u8]) + Send + 'static,
) -> Result<(), String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    m.subscribe_with_ack(
        filter,
        qos,
        move |msg: &Message| on_message(&msg.topic, &msg.payload),
        move |r| {
            let _ = tx.send(r);
        },
    )
    .map_err(|e| format!("subscribe: {e}"))?;
    match timeout(T, rx.recv()).await {
        Ok(Some(Ok(()))) => Ok(()),
        Ok(Some(Err(e))) => Err(format!("subscription failed: {e}")),
        Ok(None) => Err("the acknowledgement callback was dropped".into()),
        Err(_) => Err(format!("no SUBACK within {T:?}")),
    }
}

/// A callback subscription handed to the SDK without waiting for the SUBACK: `Ok` when
/// the SDK took it.
fn subscribe_nowait(
    m: &DataManager,
    filter: &str,
    qos: QoS,
    on_message: impl Fn(&str, &[u8]) + Send + 'static,
) -> Result<(), String> {
    m.subscribe(filter, qos, move |msg: &Message| {
        on_message(&msg.topic, &msg.payload)
    })
    .map_err(|e| format!("subscribe: {e}"))
}

async fn stream(m: &DataManager, filter: &str, qos: QoS) -> Result<MessageStream, Error> {
    m.subscribe_stream(filter, qos).await
}

/// Unsubscribe without waiting: `Ok` when the SDK took the request.
fn unsubscribe(m: &DataManager, filter: &str) -> Result<(), String> {
    m.unsubscribe_topic(filter)
        .map_err(|e| format!("unsubscribe_topic: {e}"))
}

async fn disconnect(m: &DataManager) {
    let _ = timeout(T, m.disconnect_and_wait()).await;
}

/// A mosquitto client connected and ready.
async fn mosquitto_client(port: u16, client_id: &str) -> DataManager {
    let m = manager(port, MqttConfiguration::default());
    connect_mqtt(&m, client_id, true, |_| {}).unwrap();
    connected(&m).await;
    m
}

/// Reconnect after about `base` (for tests that cause outages).
fn fast_reconnect(base: Duration) -> MqttConfiguration {
    let mut m = MqttConfiguration::default();
    m.backoff = BackoffConfig::default().base(base).max(base * 4);
    m
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// 1. Lifecycle: the last handle's drop ends the connection.

#[tokio::test]
async fn d01_dropping_the_last_handle_disconnects() {
    let peer = Peer::bind().await;
    let m = manager(peer.port(), MqttConfiguration::default());
    connect_mqtt(&m, "d01", true, |_| {}).unwrap();
    let mut conn = peer.accept().await;
    conn.handshake(false).await;
    connected(&m).await;

    drop(m);
    assert!(
        conn.closed_within(Duration::from_secs(3)).await,
        "the last DataManager handle was dropped without disconnect(), and its connection is still open after 3 s"
    );
}

#[tokio::test]
async fn d01_register_over_a_key_ends_the_old_connection() {
    const KEY: &str = "guarantees-d01-register";
    let peer = Peer::bind().await;
    let config = || {
        ServiceConfiguration::new("us-east-1", Endpoint::parse("127.0.0.1").unwrap())
            .mqtt_port(peer.port())
    };
    let old = DataManager::register(config(), KEY);
    connect_mqtt(&old, "d01-old", true, |_| {}).unwrap();
    let mut conn = peer.accept().await;
    conn.handshake(false).await;
    connected(&old).await;
    drop(old);

    let _new = DataManager::register(config(), KEY);
    let closed = conn.closed_within(Duration::from_secs(3)).await;
    DataManager::remove(KEY);
    assert!(
        closed,
        "register() replaced the manager under its key, and the old manager's connection is still open after 3 s"
    );
}

// ---------------------------------------------------------------------------------------
// 2. State is consistent when a status is reported: connect from the status callback.

#[tokio::test]
async fn d02_connect_from_the_status_callback() {
    let peer = Peer::bind().await;
    let m = manager(peer.port(), common::no_reconnect());
    // The iOS pattern: on ConnectionError, the status callback connects again.
    let me: Arc<OnceLock<DataManager>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let once = AtomicBool::new(false);
    let slot = me.clone();
    connect_mqtt(&m, "d02", true, move |s| {
        if s == Status::ConnectionError && !once.swap(true, Ordering::SeqCst) {
            let m = slot.get().expect("manager set before the first connection");
            let _ = tx.send(connect_mqtt(m, "d02", true, |_| {}));
        }
    })
    .unwrap();
    me.set(m.clone()).unwrap();
    let mut first = peer.accept().await;
    first.handshake(false).await;
    connected(&m).await;

    drop(first); // the link is lost
    let again = timeout(T, rx.recv())
        .await
        .expect("no ConnectionError reported after the peer closed the connection")
        .unwrap();
    assert!(
        again.is_ok(),
        "connect from the status callback on ConnectionError was refused: {again:?}"
    );
    let mut second = peer.accept().await;
    second.handshake(false).await;
    connected(&m).await;
    disconnect(&m).await;
}

#[tokio::test]
async fn d02_disconnect_then_connect_in_sequence() {
    let peer = Peer::bind().await;
    let m = manager(peer.port(), MqttConfiguration::default());
    connect_mqtt(&m, "d02-seq", true, |_| {}).unwrap();
    let mut first = peer.accept().await;
    first.handshake(false).await;
    connected(&m).await;

    m.disconnect().unwrap();
    let again = connect_mqtt(&m, "d02-seq", true, |_| {});
    assert!(
        again.is_ok(),
        "connect right after disconnect() was refused: {again:?}"
    );
    let mut second = peer.accept().await;
    second.handshake(false).await;
    connected(&m).await;
    disconnect(&m).await;
}

// ---------------------------------------------------------------------------------------
// 3. The session does not depend on the runtime `connect` was called on.

#[test]
fn d03_survives_the_callers_runtime_shutting_down() {
    let broker = Mosquitto::start("allow_anonymous true");
    let caller = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let m = caller.block_on(async {
        let m = manager(broker.port, MqttConfiguration::default());
        connect_mqtt(&m, "d03", true, |_| {}).unwrap();
        connected(&m).await;
        m
    });
    caller.shutdown_timeout(Duration::from_secs(1));

    current_thread().block_on(async {
        let observer = mosquitto_client(broker.port, "d03-observer").await;
        let mut seen = stream(&observer, "d03/t", QoS::AtLeastOnce).await.unwrap();
        let sent = timeout(
            T,
            publish(&m, "d03/t", "after the caller's runtime", QoS::AtLeastOnce),
        )
        .await;
        assert!(
            matches!(sent, Ok(Ok(PublishOutcome::Acknowledged))),
            "QoS 1 publish after the runtime that called connect() shut down: {sent:?} (status {})",
            *m.status().borrow()
        );
        let got = timeout(T, seen.recv()).await.unwrap().unwrap();
        assert_eq!(got.payload, "after the caller's runtime");
        disconnect(&m).await;
        disconnect(&observer).await;
    });
}

// ---------------------------------------------------------------------------------------
// 4. Poison operations end with an error instead of looping over reconnects.

/// How long a poison operation may take to fail: it includes reconnects.
const POISON: Duration = Duration::from_secs(10);

/// Quick reconnects, so that a re-send loop shows within POISON. (Set the operation
/// timeout / retry cap here if its defaults do not fit in POISON.)
fn poison_config() -> MqttConfiguration {
    fast_reconnect(Duration::from_millis(100))
}

/// Our broker (IoT Core's rules; `dev1` holds the chat policy: `chat/*` only).
async fn our_broker(
    tag: &str,
    mqtt: MqttConfiguration,
) -> (
    broker_support::Setup,
    broker::RunningBroker,
    ServiceConfiguration,
) {
    let setup = broker_support::setup(tag, true).await;
    let running = broker::start(setup.config.clone()).await.unwrap();
    let ports = broker_support::ports(&running);
    let config = broker_support::service(&setup, ports, mqtt);
    (setup, running, config)
}

/// `dev1` connected to our broker with its certificate (the IoT Core connection method).
async fn dev1(
    setup: &broker_support::Setup,
    config: &ServiceConfiguration,
) -> (DataManager, Log<Status>) {
    let log = status_log();
    let m = DataManager::new(config.clone());
    m.connect("dev1", true, &setup.certificates["dev1"], recorder(&log))
        .unwrap();
    connected(&m).await;
    (m, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d04_poison_publish_resolves_with_an_error() {
    let (setup, running, config) = our_broker("d04-publish", poison_config()).await;
    let (m, log) = dev1(&setup, &config).await;

    // The policy denies it: our broker (as IoT Core) closes a 3.1.1 connection for it.
    let r = timeout(
        POISON,
        publish(&m, "denied/d04", "poison", QoS::AtLeastOnce),
    )
    .await;
    match r {
        Ok(Err(e)) => eprintln!("poison publish failed as it should: {e}"),
        Ok(Ok(outcome)) => panic!("a publish the broker never acknowledged resolved {outcome:?}"),
        Err(_) => panic!(
            "QoS 1 publish the broker answers by closing the connection did not resolve within {POISON:?}; statuses {:?}",
            log.lock().unwrap()
        ),
    }
    // It is not re-sent any more: the connection comes back and stays usable.
    connected(&m).await;
    let fine = timeout(T, publish(&m, "chat/d04", "fine", QoS::AtLeastOnce)).await;
    assert!(
        matches!(fine, Ok(Ok(PublishOutcome::Acknowledged))),
        "after the poison publish failed: {fine:?}"
    );
    disconnect(&m).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d04_poison_subscription_resolves_with_an_error() {
    let (setup, running, config) = our_broker("d04-subscribe", poison_config()).await;
    let (m, log) = dev1(&setup, &config).await;

    // Denied by the policy: our broker (as IoT Core) closes a 3.1.1 connection for it.
    let r = timeout(POISON, stream(&m, "denied/d04/#", QoS::AtLeastOnce)).await;
    match r {
        Ok(Err(e)) => eprintln!("poison subscription failed as it should: {e}"),
        Ok(Ok(_)) => panic!("a subscription the broker never acknowledged succeeded"),
        Err(_) => panic!(
            "a subscription the broker answers by closing the connection did not resolve within {POISON:?}; statuses {:?}",
            log.lock().unwrap()
        ),
    }
    connected(&m).await;
    let fine = timeout(T, stream(&m, "chat/d04", QoS::AtLeastOnce)).await;
    assert!(
        matches!(fine, Ok(Ok(_))),
        "after the poison subscription failed: {:?}",
        fine.map(|r| r.map(|_| ()))
    );
    disconnect(&m).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d04_payload_over_128_kib_is_refused_locally() {
    let (setup, running, config) =
        our_broker("d04-payload", fast_reconnect(Duration::from_millis(100))).await;
    let (m, log) = dev1(&setup, &config).await;

    // IoT Core's limit itself is fine.
    let at_limit = timeout(
        T,
        publish(&m, "chat/d04", vec![b'x'; 128 * 1024], QoS::AtLeastOnce),
    )
    .await;
    assert!(
        matches!(at_limit, Ok(Ok(PublishOutcome::Acknowledged))),
        "a 128 KiB payload: {at_limit:?}"
    );
    // One byte more is the SDK's own error, at once, and the connection stays up.
    let over = timeout(
        Duration::from_secs(2),
        publish(&m, "chat/d04", vec![b'x'; 128 * 1024 + 1], QoS::AtLeastOnce),
    )
    .await;
    assert!(
        matches!(over, Ok(Err(Error::PayloadTooLarge { .. }))),
        "a 128 KiB + 1 payload to IoT Core rules was not refused locally within 2 s: {over:?}; statuses {:?}",
        log.lock().unwrap()
    );
    assert!(
        !log.lock().unwrap().contains(&Status::ConnectionError),
        "the connection dropped: {:?}",
        log.lock().unwrap()
    );
    disconnect(&m).await;
    running.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 5. At least once through a stream; a dropped stream unsubscribes.

#[tokio::test]
async fn d05_full_stream_does_not_lose_qos1() {
    let broker = Mosquitto::start("allow_anonymous true");
    let subscriber = manager(broker.port, {
        let mut m = MqttConfiguration::default();
        m.stream_buffer = 1;
        m
    });
    connect_mqtt(&subscriber, "d05-sub", true, |_| {}).unwrap();
    connected(&subscriber).await;
    let mut messages = stream(&subscriber, "d05/t", QoS::AtLeastOnce)
        .await
        .unwrap();
    let publisher = mosquitto_client(broker.port, "d05-pub").await;
    let sent: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    for s in &sent {
        let r = timeout(T, publish(&publisher, "d05/t", s.clone(), QoS::AtLeastOnce)).await;
        assert!(
            matches!(r, Ok(Ok(PublishOutcome::Acknowledged))),
            "{s}: {r:?}"
        );
    }
    // The stream holds one; the rest reach the SDK while nobody reads.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = Vec::new();
    while got.len() < sent.len() {
        match timeout(Duration::from_secs(3), messages.recv()).await {
            Ok(Some(m)) => got.push(String::from_utf8_lossy(&m.payload).into_owned()),
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(
        got, sent,
        "QoS 1 messages lost by a full stream (stream_buffer = 1)"
    );
    disconnect(&subscriber).await;
    disconnect(&publisher).await;
}

#[tokio::test]
async fn d05_dropping_a_stream_unsubscribes_promptly() {
    let peer = Peer::bind().await;
    let m = manager(peer.port(), MqttConfiguration::default());
    connect_mqtt(&m, "d05-drop", true, |_| {}).unwrap();
    let mut conn = peer.accept().await;
    conn.handshake(false).await;
    connected(&m).await;

    let subscribing = {
        let m = m.clone();
        tokio::spawn(async move { stream(&m, "d05/drop", QoS::AtLeastOnce).await })
    };
    let s = conn.expect_subscribe().await;
    assert_eq!(s.filters[0].filter, "d05/drop");
    conn.suback(&s).await;
    let messages = timeout(T, subscribing).await.unwrap().unwrap().unwrap();

    drop(messages); // no message arrives after this
    let u = timeout(Duration::from_secs(2), conn.expect_unsubscribe())
        .await
        .expect("no UNSUBSCRIBE within 2 s of dropping the stream");
    assert_eq!(u.filters, vec!["d05/drop".to_owned()]);
    conn.unsuback(&u).await;
    disconnect(&m).await;
}

// ---------------------------------------------------------------------------------------
// 6. Automatic reconnects rejoin the session; resends keep their packet id and set DUP.

#[tokio::test]
async fn d06_reconnect_rejoins_the_session() {
    let peer = Peer::bind().await;
    let m = manager(peer.port(), fast_reconnect(Duration::from_millis(100)));
    connect_mqtt(&m, "d06", true, |_| {}).unwrap();
    let mut first = peer.accept().await;
    let connect = first.handshake(false).await;
    assert!(
        connect.clean_session,
        "the first connect uses the caller's flag"
    );
    connected(&m).await;

    drop(first); // outage: the SDK reconnects by itself
    let mut second = peer.accept().await;
    let reconnect = second.expect_connect().await;
    assert!(
        !reconnect.clean_session,
        "the automatic reconnect asked for a clean session: the broker discards what it kept for the client during the outage"
    );
    second.connack(true).await;
    connected(&m).await;
    let connack = m.connack();
    assert!(
        connack.as_ref().is_some_and(|c| c.session_present),
        "session_present not visible to the user: {connack:?}"
    );
    disconnect(&m).await;
}

#[tokio::test]
async fn d06_resend_keeps_packet_id_and_sets_dup() {
    let peer = Peer::bind().await;
    let m = manager(peer.port(), fast_reconnect(Duration::from_millis(100)));
    connect_mqtt(&m, "d06-resend", false, |_| {}).unwrap();
    let mut first = peer.accept().await;
    first.handshake(false).await;
    connected(&m).await;

    // Two acknowledged publishes first, so that a fresh packet-id counter would differ.
    for payload in ["one", "two"] {
        let sending = {
            let m = m.clone();
            tokio::spawn(async move { publish(&m, "d06/t", payload, QoS::AtLeastOnce).await })
        };
        let p = first.expect_publish().await;
        first.puback(p.pkid).await;
        let r = timeout(T, sending).await.unwrap().unwrap();
        assert!(matches!(r, Ok(PublishOutcome::Acknowledged)), "{r:?}");
    }
    let pending = {
        let m = m.clone();
        tokio::spawn(async move { publish(&m, "d06/t", "three", QoS::AtLeastOnce).await })
    };
    let original = first.expect_publish().await;
    assert!(!original.dup);
    drop(first); // PUBACK withheld, connection lost

    let mut second = peer.accept().await;
    second.handshake(true).await;
    let resent = second.expect_publish().await;
    assert_eq!(resent.payload, "three");
    assert_eq!(
        (resent.pkid, resent.dup),
        (original.pkid, true),
        "resend after a resumed session: (packet id, DUP) expected ({}, true)",
        original.pkid
    );
    second.puback(resent.pkid).await;
    let r = timeout(T, pending).await.unwrap().unwrap();
    assert!(matches!(r, Ok(PublishOutcome::Acknowledged)), "{r:?}");
    disconnect(&m).await;
}

// ---------------------------------------------------------------------------------------
// 7. QoS 0 before CONNACK is queued and written after it.

#[tokio::test]
async fn d07_qos0_before_connack_is_queued() {
    let peer = Peer::bind().await;
    let m = manager(peer.port(), MqttConfiguration::default());
    connect_mqtt(&m, "d07", true, |_| {}).unwrap();
    // As the iOS samples: connect, then publish at once.
    let early = try_publish(&m, "d07/t", "first", QoS::AtMostOnce);
    assert!(
        early.is_ok(),
        "QoS 0 publish right after connect (before CONNACK) was not taken: {early:?}"
    );
    let mut conn = peer.accept().await;
    conn.expect_connect().await;
    let before = conn.quiet_for(Duration::from_millis(300)).await;
    assert!(before.is_ok(), "written before CONNACK: {before:?}");
    conn.connack(false).await;
    let p = conn.expect_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("d07/t", &b"first"[..]));
    disconnect(&m).await;
}

// ---------------------------------------------------------------------------------------
// 8. A slow callback does not stall the connection.

/// No runtime of the caller: the SDK runs the connection on its own. The peer measures
/// the keep-alive on the wire (mosquitto checks it only every few seconds).
#[test]
fn d08_slow_callback_does_not_stall_keepalive() {
    let rt = current_thread();
    let peer = rt.block_on(Peer::bind());
    let log = status_log();
    let m = manager(peer.port(), {
        let mut m = MqttConfiguration::default();
        m.keep_alive = Duration::from_secs(1);
        m
    });
    connect_mqtt(&m, "d08", true, recorder(&log)).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let gaps = rt.block_on(async {
        let mut conn = peer.accept().await;
        conn.handshake(false).await;
        connected(&m).await;
        subscribe_nowait(&m, "d08/t", QoS::AtMostOnce, move |_, _| {
            c2.fetch_add(1, Ordering::SeqCst);
            // A callback that blocks (a user's synchronous I/O, say) for 3 keep-alives.
            std::thread::sleep(Duration::from_secs(3));
        })
        .unwrap();
        let s = conn.expect_subscribe().await;
        conn.suback(&s).await;
        conn.send(mqtt::Packet::Publish(mqtt::Publish {
            dup: false,
            qos: mqtt::QoS::AtMostOnce,
            retain: false,
            topic: "d08/t".into(),
            pkid: 0,
            payload: Bytes::from_static(b"slow"),
            properties: Default::default(),
        }))
        .await;
        // Read for 4 s, noting when the client speaks (PINGREQs, answered by the peer).
        let start = tokio::time::Instant::now();
        let end = start + Duration::from_secs(4);
        let mut last = start;
        let mut gaps = Vec::new();
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            match conn.next_within(left).await {
                Ok(Some(_)) => {
                    let now = tokio::time::Instant::now();
                    gaps.push(now - last);
                    last = now;
                }
                Ok(None) => panic!("the client closed the connection"),
                Err(()) => break,
            }
        }
        gaps.push(end - last);
        gaps
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1, "callback not called");
    let longest = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        longest <= Duration::from_secs(2),
        "with keep-alive 1 s the client was silent for {longest:?} while a callback blocked for 3 s (gaps {gaps:?}); a broker may drop it after 1.5 s"
    );
    let seen = log.lock().unwrap().clone();
    assert!(
        !seen.contains(&Status::ConnectionError),
        "statuses {seen:?}"
    );
    rt.block_on(disconnect(&m));
}

// ---------------------------------------------------------------------------------------
// 9. A user's disconnect() clears callback subscriptions (as iOS).

#[tokio::test]
async fn d09_callback_subscriptions_after_disconnect() {
    let broker = Mosquitto::start("allow_anonymous true");
    let m = mosquitto_client(broker.port, "d09").await;
    let stale = Arc::new(AtomicUsize::new(0));
    let s2 = stale.clone();
    subscribe(&m, "d09/old", QoS::AtLeastOnce, move |_, _| {
        s2.fetch_add(1, Ordering::SeqCst);
    })
    .await
    .unwrap();
    disconnect(&m).await;

    // While disconnected there is nothing to unsubscribe, whichever way it is asked.
    let plain = unsubscribe(&m, "d09/old");
    let waited = timeout(T, m.unsubscribe("d09/old")).await.unwrap();
    assert!(
        plain.is_err() && waited.is_err(),
        "unsubscribe while disconnected: unsubscribe_topic {plain:?}, unsubscribe {waited:?}"
    );

    connect_mqtt(&m, "d09", true, |_| {}).unwrap();
    connected(&m).await;
    let (marker_tx, mut marker_rx) = tokio::sync::mpsc::unbounded_channel();
    subscribe(&m, "d09/marker", QoS::AtLeastOnce, move |_, _| {
        let _ = marker_tx.send(());
    })
    .await
    .unwrap();
    // One publisher, two topics: mosquitto delivers them in this order.
    let publisher = mosquitto_client(broker.port, "d09-pub").await;
    publish(&publisher, "d09/old", "stale", QoS::AtLeastOnce)
        .await
        .unwrap();
    publish(&publisher, "d09/marker", "marker", QoS::AtLeastOnce)
        .await
        .unwrap();
    timeout(T, marker_rx.recv())
        .await
        .expect("marker not delivered")
        .unwrap();
    assert_eq!(
        stale.load(Ordering::SeqCst),
        0,
        "a callback subscribed before disconnect() was re-subscribed by the next connect and called"
    );
    disconnect(&m).await;
    disconnect(&publisher).await;
}

// ---------------------------------------------------------------------------------------
// 10. IoT Core's topic rules are checked by the SDK: an Err, not a dropped connection.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d10_invalid_topic_is_an_error_not_a_dropped_connection() {
    let (setup, running, config) =
        our_broker("d10", fast_reconnect(Duration::from_millis(100))).await;
    let long = format!("chat/{}", "x".repeat(252)); // 257 bytes
    let deep = "chat/1/2/3/4/5/6/7/8"; // 8 slashes: 9 levels
    let reserved = "$aws/events/presence/connected/dev1"; // only the broker publishes there
    assert_eq!(long.len(), 257);

    // The certificate method (IoT Core's own: the rules apply by default), then plain
    // MQTT to our broker, where nothing in a 3.1.1 CONNACK tells the SDK it talks to an
    // IoT Core-compatible broker: the application opts in with `ClientRules::IotCore`.
    let (cert, cert_log) = dev1(&setup, &config).await;
    let plain_log = status_log();
    let mut rules = config.mqtt().clone();
    rules.rules = ClientRules::IotCore;
    let plain = DataManager::new(config.clone().mqtt_configuration(rules));
    connect_mqtt(&plain, "d10-plain", true, recorder(&plain_log)).unwrap();
    connected(&plain).await;

    for (m, log, method) in [
        (&cert, &cert_log, "connect (certificate)"),
        (&plain, &plain_log, "connect_mqtt to our broker"),
    ] {
        for topic in [long.as_str(), deep, reserved] {
            let r = try_publish(m, topic, "x", QoS::AtMostOnce);
            assert!(
                r.is_err(),
                "{method}: publish to {topic:?} (against IoT Core's rules) was taken by the SDK"
            );
        }
        let long_filter = format!("chat/{}/#", "x".repeat(250));
        for filter in [long_filter.as_str(), "chat/1/2/3/4/5/6/7/#"] {
            let r = subscribe_nowait(m, filter, QoS::AtLeastOnce, |_, _| {});
            assert!(
                r.is_err(),
                "{method}: subscribe to {filter:?} (against IoT Core's rules) was taken by the SDK"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let statuses = log.lock().unwrap().clone();
        assert!(
            !statuses.contains(&Status::ConnectionError),
            "{method}: the connection dropped: {statuses:?}"
        );
        // Within the rules: 7 slashes, 256 bytes, a reserved topic devices publish to
        // (last: dev1's policy denies the shadow topic, and the broker may then close).
        let seven = "chat/1/2/3/4/5/6/7";
        let at_limit = format!("chat/{}", "x".repeat(251));
        let shadow = "$aws/things/dev1/shadow/get";
        for topic in [seven, at_limit.as_str(), shadow] {
            assert!(
                try_publish(m, topic, "x", QoS::AtMostOnce).is_ok(),
                "{method}: publish to {topic:?} is within IoT Core's rules"
            );
        }
    }
    disconnect(&cert).await;
    disconnect(&plain).await;
    running.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// A dead link (no PINGRESP) is a ConnectionError that says so, not a ProtocolError.

#[tokio::test]
async fn a_dead_link_is_a_connection_error_with_its_reason() {
    let peer = Peer::bind().await;
    let mut cfg = MqttConfiguration::default();
    cfg.keep_alive = Duration::from_secs(1);
    cfg.ping_timeout = Duration::from_secs(1);
    cfg.auto_reconnect = false;
    let m = manager(peer.port(), cfg);
    connect_mqtt(&m, "dead-link", true, |_| {}).unwrap();
    let mut conn = peer.accept().await;
    conn.handshake(false).await;
    connected(&m).await;
    // From here the peer reads nothing: the SDK's PINGREQ goes unanswered.
    let mut status = m.status();
    let ended = timeout(T, status.wait_for(|s| s.status != Status::Connected))
        .await
        .expect("a dead link was not noticed within 5 s (keep-alive 1 s + ping timeout 1 s)")
        .unwrap()
        .clone();
    assert_eq!(ended.status, Status::ConnectionError, "{ended}");
    assert!(
        matches!(ended.reason, Some(Reason::KeepAliveTimeout(_))),
        "{ended:?}"
    );
    drop(conn);
}
