//! The SDK across a broker restart: our broker with its durable store (`in_memory =
//! false`) is shut down and a new one started on the same port with the same data dir; the
//! SDK reconnects by itself, the broker reports the persistent session as present, and a
//! QoS 1 message queued for the offline session is delivered exactly once.

mod broker_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker_support::*;
use pubsub::{DataManager, MqttConnectOptions, PublishOutcome, QoS, Status, StatusEvent};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_survives_a_broker_restart_on_the_same_port() {
    let setup = setup("restart", false).await;
    let running = broker::start(setup.config.clone()).await.unwrap();
    let p = ports(&running);

    // Back-off of 2 s (±20 %): the restarted broker is up, and the message queued, well
    // before the SDK's first reconnect attempt.
    let cfg = service(&setup, p, {
        let mut m = fast_reconnect(Duration::from_secs(2));
        m.auto_resubscribe = false; // what arrives after the restart comes from the broker's session
        m
    });
    let statuses: Arc<Mutex<Vec<StatusEvent>>> = Arc::default();
    let log = statuses.clone();
    let m = DataManager::new(cfg.clone());
    m.connect("dev1", false, &setup.certificates["dev1"], move |s| {
        log.lock().unwrap().push(s)
    })
    .unwrap();
    wait_connected(&m).await;
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let r2 = received.clone();
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
    m.subscribe_with_ack(
        "chat/inbox",
        QoS::AtLeastOnce,
        move |msg| r2.lock().unwrap().push(msg.payload_str().into_owned()),
        move |r| {
            let _ = ack_tx.send(r);
        },
    )
    .unwrap();
    timeout(T, ack_rx.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(
        m.publish("chat/inbox", "before", QoS::AtLeastOnce)
            .await
            .unwrap(),
        PublishOutcome::Acknowledged
    );
    assert!(wait_until(|| received.lock().unwrap().len() == 1).await);

    // Stop the broker: the SDK sees the connection drop and starts backing off.
    let mut status = m.status();
    running.shutdown().await;
    timeout(T, status.wait_for(|s| *s != Status::Connected))
        .await
        .unwrap()
        .unwrap();

    // Same data dir, same ports.
    let mut config = setup.config.clone();
    config.listeners.mqtt = format!("127.0.0.1:{}", p.mqtt);
    config.listeners.mqtts = format!("127.0.0.1:{}", p.mqtts);
    config.listeners.tls = format!("127.0.0.1:{}", p.tls);
    let running = broker::start(config).await.unwrap();

    // Queue a QoS 1 message for the offline session.
    let publisher = DataManager::new(cfg.clone());
    publisher
        .connect_mqtt("publisher", true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    wait_connected(&publisher).await;
    assert_eq!(
        publisher
            .publish("chat/inbox", "while you were away", QoS::AtLeastOnce)
            .await
            .unwrap(),
        PublishOutcome::Acknowledged
    );
    assert_ne!(
        m.status().borrow().status,
        Status::Connected,
        "the SDK reconnected before the message was queued: the test's timing assumption failed"
    );

    // The SDK comes back by itself; the broker kept the session.
    timeout(
        Duration::from_secs(15),
        status.wait_for(|s| *s == Status::Connected),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(wait_until(|| received.lock().unwrap().len() >= 2).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        *received.lock().unwrap(),
        vec!["before".to_owned(), "while you were away".to_owned()],
        "queued message delivered exactly once"
    );
    let session_present: Vec<bool> = statuses
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.status == Status::Connected)
        .map(|e| e.session_present)
        .collect();
    assert_eq!(
        session_present.first(),
        Some(&false),
        "first connect: new session"
    );
    assert_eq!(
        session_present.last(),
        Some(&true),
        "session_present after restart"
    );
    // And the subscription is live on the new broker.
    publisher
        .publish("chat/inbox", "after", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(wait_until(|| received.lock().unwrap().len() == 3).await);
    let s: Vec<Status> = statuses.lock().unwrap().iter().map(|e| e.status).collect();
    assert_eq!(s.first(), Some(&Status::Connecting));
    assert!(s.contains(&Status::ConnectionError), "{s:?}");
    assert_eq!(s.last(), Some(&Status::Connected), "{s:?}");

    m.disconnect_and_wait().await;
    publisher.disconnect_and_wait().await;
    running.shutdown().await;
}

async fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + T;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
