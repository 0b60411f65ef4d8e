//! The SDK against a real mosquitto broker on loopback.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, no_reconnect, Mosquitto, Pki, TempDir};
use pubsub::backoff::BackoffConfig;
use pubsub::{
    DataManager, Endpoint, Error, IdentityStore, Message, MqttConfiguration, MqttConnectOptions,
    PublishOutcome, QoS, Reason, ReasonCode, RejectReason, ServiceConfiguration, Status,
    StatusEvent,
};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

fn manager(port: u16, mqtt: MqttConfiguration) -> DataManager {
    DataManager::new(
        ServiceConfiguration::new("us-east-1", Endpoint::parse("127.0.0.1").unwrap())
            .mqtt_port(port)
            .mqtt_configuration(mqtt),
    )
}

fn plain() -> MqttConnectOptions {
    MqttConnectOptions::default()
}

type Log<T> = Arc<Mutex<Vec<T>>>;

fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn recorder(l: &Log<Status>) -> impl FnMut(StatusEvent) + Send + 'static {
    let l = l.clone();
    move |e| l.lock().unwrap().push(e.status)
}

/// The connection attempt's end (it must not connect).
async fn ended(m: &DataManager) -> StatusEvent {
    timeout(T, m.wait_for_connection())
        .await
        .unwrap()
        .expect_err("connected")
}

async fn connected(port: u16, id: &str) -> DataManager {
    let m = manager(port, MqttConfiguration::default());
    m.connect_mqtt(id, true, &plain(), |_| {}).unwrap();
    timeout(T, m.wait_for_connection()).await.unwrap().unwrap();
    m
}

/// Where an ack callback's results arrive.
type Acks<T> = tokio::sync::mpsc::UnboundedReceiver<Result<T, Error>>;

/// An ack callback and the channel it reports its result on.
fn ack_channel<T: Send + 'static>() -> (impl FnOnce(Result<T, Error>) + Send + 'static, Acks<T>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (
        move |r| {
            let _ = tx.send(r);
        },
        rx,
    )
}

#[tokio::test]
async fn plain_pubsub_callback_extended_and_stream() {
    let broker = Mosquitto::start("allow_anonymous true");
    let m = connected(broker.port, "sdk-plain").await;

    let payloads: Log<Vec<u8>> = log();
    let p2 = payloads.clone();
    let (ack, mut acks) = ack_channel();
    m.subscribe_with_ack(
        "t/a",
        QoS::AtMostOnce,
        move |m: &Message| p2.lock().unwrap().push(m.payload.to_vec()),
        ack,
    )
    .unwrap();
    let extended: Log<(String, Vec<u8>)> = log();
    let e2 = extended.clone();
    let (ack, mut acks2) = ack_channel();
    m.subscribe_with_ack(
        "t/+",
        QoS::AtLeastOnce,
        move |m: &Message| {
            e2.lock()
                .unwrap()
                .push((m.topic.clone(), m.payload.to_vec()))
        },
        ack,
    )
    .unwrap();
    let mut stream = timeout(T, m.subscribe_stream("t/#", QoS::AtLeastOnce))
        .await
        .unwrap()
        .unwrap();
    timeout(T, acks.recv()).await.unwrap().unwrap().unwrap();
    timeout(T, acks2.recv()).await.unwrap().unwrap().unwrap();

    assert_eq!(
        m.try_publish("t/a", "hello", QoS::AtMostOnce).unwrap(),
        PublishOutcome::Submitted
    );
    let msg = timeout(T, stream.recv()).await.unwrap().unwrap();
    assert_eq!(
        (msg.topic.as_str(), &msg.payload[..]),
        ("t/a", &b"hello"[..])
    );
    assert!(eventually(T, || payloads.lock().unwrap().len() == 1).await);
    assert!(eventually(T, || extended.lock().unwrap().len() == 1).await);
    assert_eq!(
        extended.lock().unwrap()[0],
        ("t/a".to_string(), b"hello".to_vec())
    );

    // Wildcard dispatch: t/b matches t/+ and t/# but not t/a.
    assert_eq!(
        m.publish("t/b", &b"bee"[..], QoS::AtMostOnce)
            .await
            .unwrap(),
        PublishOutcome::Sent
    );
    let msg = timeout(T, stream.recv()).await.unwrap().unwrap();
    assert_eq!(msg.topic, "t/b");
    assert!(eventually(T, || extended.lock().unwrap().len() == 2).await);
    assert_eq!(payloads.lock().unwrap().len(), 1);

    // Streams are real streams.
    use tokio_stream::StreamExt;
    m.try_publish("t/x/y", &b"deep"[..], QoS::AtMostOnce)
        .unwrap();
    let msg = timeout(T, stream.next()).await.unwrap().unwrap();
    assert_eq!(msg.topic, "t/x/y");

    timeout(T, m.disconnect_and_wait()).await.unwrap();
}

#[tokio::test]
async fn qos1_publish_resolves_on_puback() {
    let broker = Mosquitto::start("allow_anonymous true");
    let m = connected(broker.port, "sdk-qos1").await;
    for i in 0..150 {
        // More than the 100 in flight: packet ids wrap.
        let r = timeout(T, m.publish("q/1", format!("m{i}"), QoS::AtLeastOnce))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r, PublishOutcome::Acknowledged);
    }
    let (ack, mut acks) = ack_channel();
    assert_eq!(
        m.publish_with_ack("q/1", "x", QoS::AtLeastOnce, ack)
            .unwrap(),
        PublishOutcome::Submitted
    );
    assert_eq!(
        timeout(T, acks.recv()).await.unwrap().unwrap().unwrap(),
        PublishOutcome::Acknowledged
    );
    // QoS 0: the callback hears that it was written.
    let (ack, mut acks) = ack_channel();
    m.publish_with_ack("q/1", "x", QoS::AtMostOnce, ack)
        .unwrap();
    assert_eq!(
        timeout(T, acks.recv()).await.unwrap().unwrap().unwrap(),
        PublishOutcome::Sent
    );
    assert!(matches!(
        m.publish("bad/+", "x", QoS::AtLeastOnce).await,
        Err(Error::InvalidTopic { .. })
    ));
    timeout(T, m.disconnect_and_wait()).await.unwrap();
    assert!(matches!(
        m.publish("q/1", "x", QoS::AtLeastOnce).await,
        Err(Error::NotConnected)
    ));
}

#[tokio::test]
async fn many_concurrent_qos1_publishes_all_acknowledged() {
    let broker = Mosquitto::start("allow_anonymous true");
    let m = connected(broker.port, "sdk-qos1-many").await;
    let futs: Vec<_> = (0..300)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move { m.publish("q/many", format!("{i}"), QoS::AtLeastOnce).await })
        })
        .collect();
    for f in futs {
        assert_eq!(
            timeout(T, f).await.unwrap().unwrap().unwrap(),
            PublishOutcome::Acknowledged
        );
    }
    m.disconnect_and_wait().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let broker = Mosquitto::start("allow_anonymous true");
    let m = connected(broker.port, "sdk-unsub").await;
    let count = Arc::new(Mutex::new(0));
    let c2 = count.clone();
    m.subscribe("u/a", QoS::AtLeastOnce, move |_| *c2.lock().unwrap() += 1)
        .unwrap();
    let mut marker = timeout(T, m.subscribe_stream("u/marker", QoS::AtLeastOnce))
        .await
        .unwrap()
        .unwrap();
    m.publish("u/a", "1", QoS::AtLeastOnce).await.unwrap();
    assert!(eventually(T, || *count.lock().unwrap() == 1).await);

    let (ack, mut acks) = ack_channel();
    m.unsubscribe_topic_with_ack("u/a", ack).unwrap();
    timeout(T, acks.recv()).await.unwrap().unwrap().unwrap();
    m.publish("u/a", "2", QoS::AtLeastOnce).await.unwrap();
    m.publish("u/marker", "after", QoS::AtLeastOnce)
        .await
        .unwrap();
    timeout(T, marker.recv()).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*count.lock().unwrap(), 1);
    timeout(T, m.unsubscribe("u/marker"))
        .await
        .unwrap()
        .unwrap();
    m.disconnect_and_wait().await;
}

#[tokio::test]
async fn status_sequence_and_refusals() {
    let broker = Mosquitto::start("allow_anonymous true");
    let m = manager(broker.port, MqttConfiguration::default());
    let statuses = log();
    assert!(matches!(
        m.connect_mqtt("", true, &plain(), |_| {}),
        Err(Error::EmptyClientId)
    ));
    assert_eq!(m.status().borrow().status, Status::Unknown);
    m.connect_mqtt("sdk-status", true, &plain(), recorder(&statuses))
        .unwrap();
    assert!(matches!(
        m.connect_mqtt("sdk-status", true, &plain(), |_| {}),
        Err(Error::AlreadyConnected)
    ));
    timeout(T, m.wait_for_connection()).await.unwrap().unwrap();
    assert!(matches!(
        m.connect_mqtt("sdk-status", true, &plain(), |_| {}),
        Err(Error::AlreadyConnected)
    ));
    m.disconnect().unwrap();
    let mut rx = m.status();
    timeout(T, rx.wait_for(|s| *s == Status::Disconnected))
        .await
        .unwrap()
        .unwrap();
    assert!(eventually(T, || statuses.lock().unwrap().len() == 3).await);
    assert_eq!(
        *statuses.lock().unwrap(),
        vec![Status::Connecting, Status::Connected, Status::Disconnected]
    );
    assert!(matches!(m.disconnect(), Err(Error::NotConnected)));

    // The manager can connect again after a disconnect.
    m.connect_mqtt("sdk-status", true, &plain(), |_| {})
        .unwrap();
    timeout(T, m.wait_for_connection()).await.unwrap().unwrap();
    m.disconnect_and_wait().await;
    assert_eq!(m.status().borrow().status, Status::Disconnected);
}

#[tokio::test]
async fn connection_refused_by_broker() {
    let broker = Mosquitto::start("allow_anonymous false");
    let m = manager(broker.port, no_reconnect());
    let statuses = log();
    m.connect_mqtt("sdk-refused", true, &plain(), recorder(&statuses))
        .unwrap();
    let end = ended(&m).await;
    assert_eq!(end.status, Status::ConnectionRefused);
    // CONNACK return code 5 (not authorized), shown as its MQTT 5 equivalent.
    assert!(
        matches!(
            end.reason,
            Some(Reason::Refused {
                code: ReasonCode::NOT_AUTHORIZED,
                ..
            })
        ),
        "{end}"
    );
    assert!(eventually(T, || statuses.lock().unwrap().len() == 2).await);
    assert_eq!(
        *statuses.lock().unwrap(),
        vec![Status::Connecting, Status::ConnectionRefused]
    );
    // Without auto-reconnect the session ends: a new connect is allowed.
    assert!(
        eventually(T, || m
            .connect_mqtt("sdk-refused", true, &plain(), |_| {})
            .is_ok())
        .await
    );
    m.disconnect_and_wait().await;
}

#[tokio::test]
async fn nothing_listening_is_a_connection_error() {
    let port = common::free_port();
    let m = manager(port, no_reconnect());
    m.connect_mqtt("sdk-nobody", true, &plain(), |_| {})
        .unwrap();
    let end = ended(&m).await;
    assert_eq!(end.status, Status::ConnectionError);
    assert!(matches!(end.reason, Some(Reason::Io(_))), "{end}");
}

#[tokio::test]
async fn mutual_tls_with_identity_from_store() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("pubsub=debug")
        .with_test_writer()
        .try_init();
    let pki = Pki::new();
    let dir = TempDir::new("tls");
    let (ca, cert, key) = pki.write_server_files(dir.path());
    let broker = Mosquitto::start(&format!(
        "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        ca.display(),
        cert.display(),
        key.display()
    ));
    let store = IdentityStore::open(dir.path().join("identities")).unwrap();
    let id = store
        .import_pem(pki.client_pem.as_bytes(), pki.client_key_pem.as_bytes())
        .unwrap();
    let config = ServiceConfiguration::new("us-east-1", Endpoint::parse("localhost").unwrap())
        .certificate_port(broker.port)
        .mqtt_port(broker.port)
        .ca_file(&ca)
        .identity_store(store)
        .mqtt_configuration(no_reconnect());
    let m = DataManager::new(config.clone());
    assert!(matches!(
        m.connect("c", true, "0000", |_| {}),
        Err(Error::CertificateNotFound(_))
    ));
    m.connect("sdk-mtls", true, &id, |_| {}).unwrap();
    timeout(T, m.wait_for_connection()).await.unwrap().unwrap();
    let mut s = timeout(T, m.subscribe_stream("tls/t", QoS::AtLeastOnce))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m.publish("tls/t", "secure", QoS::AtLeastOnce)
            .await
            .unwrap(),
        PublishOutcome::Acknowledged
    );
    assert_eq!(
        &timeout(T, s.recv()).await.unwrap().unwrap().payload[..],
        b"secure"
    );
    m.disconnect_and_wait().await;

    // TLS without a client certificate is refused by this broker during the handshake.
    let anon = DataManager::new(config);
    anon.connect_mqtt(
        "sdk-anon",
        true,
        &MqttConnectOptions::new().tls(true),
        |_| {},
    )
    .unwrap();
    let end = ended(&anon).await;
    assert_eq!(end.status, Status::ConnectionError, "{end}");
}

#[tokio::test]
async fn reconnects_resubscribes_and_sends_offline_queue() {
    let mut broker = Mosquitto::start("allow_anonymous true");
    let mut mqtt = MqttConfiguration::default();
    mqtt.backoff = BackoffConfig::default().base(Duration::from_millis(200));
    // QoS 0 is queued offline by default; this test checks the policy that refuses it.
    mqtt.offline_queue.queue_qos0 = false;
    let m = manager(broker.port, mqtt);
    let statuses = log();
    m.connect_mqtt("sdk-reconnect", true, &plain(), recorder(&statuses))
        .unwrap();
    timeout(T, m.wait_for_connection()).await.unwrap().unwrap();
    let got: Log<Vec<u8>> = log();
    let g2 = got.clone();
    let (ack, mut acks) = ack_channel();
    m.subscribe_with_ack(
        "r/t",
        QoS::AtLeastOnce,
        move |m: &Message| g2.lock().unwrap().push(m.payload.to_vec()),
        ack,
    )
    .unwrap();
    timeout(T, acks.recv()).await.unwrap().unwrap().unwrap();

    broker.stop();
    let mut rx = m.status();
    timeout(T, rx.wait_for(|s| *s != Status::Connected))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m.publish("r/t", "while-offline", QoS::AtLeastOnce)
            .await
            .unwrap(),
        PublishOutcome::Queued
    );
    assert_eq!(
        m.publish("r/t", "qos0-offline", QoS::AtMostOnce)
            .await
            .unwrap(),
        PublishOutcome::Rejected(RejectReason::Qos0WhileOffline)
    );
    assert_eq!(
        m.try_publish("r/t", "qos0-offline", QoS::AtMostOnce)
            .unwrap(),
        PublishOutcome::Rejected(RejectReason::Qos0WhileOffline)
    );

    broker.restart();
    timeout(
        Duration::from_secs(20),
        rx.wait_for(|s| *s == Status::Connected),
    )
    .await
    .unwrap()
    .unwrap();
    // Subscription restored on the fresh (clean) session, then the queued message delivered.
    assert!(
        eventually(T, || got.lock().unwrap().len() == 1).await,
        "queued message not delivered"
    );
    m.publish("r/t", "after", QoS::AtLeastOnce).await.unwrap();
    assert!(eventually(T, || got.lock().unwrap().len() == 2).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        *got.lock().unwrap(),
        vec![b"while-offline".to_vec(), b"after".to_vec()]
    );

    m.disconnect_and_wait().await;
    let s = statuses.lock().unwrap().clone();
    assert_eq!(s.first(), Some(&Status::Connecting));
    assert_eq!(s.last(), Some(&Status::Disconnected));
    assert!(s.contains(&Status::ConnectionError), "{s:?}");
    assert!(
        s.windows(2).all(|w| w[0] != w[1]),
        "each change once: {s:?}"
    );
}
