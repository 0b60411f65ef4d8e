//! The SDK against a real mosquitto broker on loopback.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, Mosquitto, Pki, TempDir};
use pubsub::backoff::BackoffConfig;
use pubsub::{
    DataManager, Endpoint, Error, IdentityStore, MqttConfiguration, MqttConnectOptions,
    PublishOutcome, QoS, RejectReason, ServiceConfiguration, Status,
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

fn recorder(l: &Log<Status>) -> impl Fn(Status) + Send + Sync + 'static {
    let l = l.clone();
    move |s| l.lock().unwrap().push(s)
}

async fn connected(port: u16, id: &str) -> DataManager {
    let m = manager(port, MqttConfiguration::default());
    m.connect_mqtt(id, true, &plain(), |_| {}).unwrap();
    timeout(T, m.wait_for_connection()).await.unwrap().unwrap();
    m
}

async fn subscribed_ack() -> (
    impl Fn() + Send + Sync + 'static,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (
        move || {
            let _ = tx.send(());
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
    let (ack, mut acks) = subscribed_ack().await;
    assert!(m.subscribe_with_ack(
        "t/a",
        QoS::AtMostOnce,
        move |p| p2.lock().unwrap().push(p.to_vec()),
        ack
    ));
    let extended: Log<(String, Vec<u8>)> = log();
    let e2 = extended.clone();
    let (ack, mut acks2) = subscribed_ack().await;
    assert!(m.subscribe_extended_with_ack(
        "t/+",
        QoS::AtLeastOnce,
        move |t, p| e2.lock().unwrap().push((t.to_owned(), p.to_vec())),
        ack
    ));
    let mut stream = timeout(T, m.subscribe_stream("t/#", QoS::AtLeastOnce))
        .await
        .unwrap()
        .unwrap();
    timeout(T, acks.recv()).await.unwrap().unwrap();
    timeout(T, acks2.recv()).await.unwrap().unwrap();

    assert!(m.publish_string("hello", "t/a", QoS::AtMostOnce));
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
    m.publish_data(b"deep", "t/x/y", QoS::AtMostOnce);
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
    let (ack, mut acks) = subscribed_ack().await;
    assert!(m.publish_string_with_ack("x", "q/1", QoS::AtLeastOnce, ack));
    timeout(T, acks.recv()).await.unwrap().unwrap();
    assert!(
        !m.publish_string_with_ack("x", "q/1", QoS::AtMostOnce, || {}),
        "ack needs QoS 1"
    );
    assert!(matches!(
        m.publish("bad/+", "x", QoS::AtLeastOnce).await,
        Err(Error::InvalidTopic(_))
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
    assert!(m.subscribe("u/a", QoS::AtLeastOnce, move |_| *c2.lock().unwrap() += 1));
    let mut marker = timeout(T, m.subscribe_stream("u/marker", QoS::AtLeastOnce))
        .await
        .unwrap()
        .unwrap();
    m.publish("u/a", "1", QoS::AtLeastOnce).await.unwrap();
    assert!(eventually(T, || *count.lock().unwrap() == 1).await);

    let (ack, mut acks) = subscribed_ack().await;
    assert!(m.unsubscribe_topic_with_ack("u/a", ack));
    timeout(T, acks.recv()).await.unwrap().unwrap();
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
    assert_eq!(*m.status().borrow(), Status::Unknown);
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
    assert!(m.disconnect());
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
    assert!(!m.disconnect());

    // The manager can connect again after a disconnect.
    m.connect_mqtt("sdk-status", true, &plain(), |_| {})
        .unwrap();
    timeout(T, m.wait_for_connection()).await.unwrap().unwrap();
    m.disconnect_and_wait().await;
    assert_eq!(*m.status().borrow(), Status::Disconnected);
}

#[tokio::test]
async fn connection_refused_by_broker() {
    let broker = Mosquitto::start("allow_anonymous false");
    let m = manager(
        broker.port,
        MqttConfiguration {
            auto_reconnect: false,
            ..Default::default()
        },
    );
    let statuses = log();
    m.connect_mqtt("sdk-refused", true, &plain(), recorder(&statuses))
        .unwrap();
    assert_eq!(
        timeout(T, m.wait_for_connection()).await.unwrap(),
        Err(Status::ConnectionRefused)
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
    let m = manager(
        port,
        MqttConfiguration {
            auto_reconnect: false,
            ..Default::default()
        },
    );
    m.connect_mqtt("sdk-nobody", true, &plain(), |_| {})
        .unwrap();
    assert_eq!(
        timeout(T, m.wait_for_connection()).await.unwrap(),
        Err(Status::ConnectionError)
    );
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
        .mqtt_configuration(MqttConfiguration {
            auto_reconnect: false,
            ..Default::default()
        });
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
        &MqttConnectOptions {
            tls: true,
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(
        timeout(T, anon.wait_for_connection()).await.unwrap(),
        Err(Status::ConnectionError)
    );
}

#[tokio::test]
async fn reconnects_resubscribes_and_sends_offline_queue() {
    let mut broker = Mosquitto::start("allow_anonymous true");
    let mqtt = MqttConfiguration {
        backoff: BackoffConfig {
            base: Duration::from_millis(200),
            ..Default::default()
        },
        ..Default::default()
    };
    let m = manager(broker.port, mqtt);
    let statuses = log();
    m.connect_mqtt("sdk-reconnect", true, &plain(), recorder(&statuses))
        .unwrap();
    timeout(T, m.wait_for_connection()).await.unwrap().unwrap();
    let got: Log<Vec<u8>> = log();
    let g2 = got.clone();
    let (ack, mut acks) = subscribed_ack().await;
    assert!(m.subscribe_with_ack(
        "r/t",
        QoS::AtLeastOnce,
        move |p| g2.lock().unwrap().push(p.to_vec()),
        ack
    ));
    timeout(T, acks.recv()).await.unwrap().unwrap();

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
    assert!(!m.publish_string("qos0-offline", "r/t", QoS::AtMostOnce));

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
