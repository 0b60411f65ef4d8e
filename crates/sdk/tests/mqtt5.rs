//! MQTT 5 through the SDK: against our broker (every connection method with every publish
//! property, reason codes on refusals, request/response, persistent sessions, 3.1.1 as
//! the default) and against mosquitto as an independent MQTT 5 broker.

mod broker_support;
mod common;

use std::time::Duration;

use broker_support::*;
use bytes::Bytes;
use pubsub::{
    CustomAuth, DataManager, Endpoint, Error, Message, MqttConfiguration, MqttConnectOptions,
    PayloadFormat, ProtocolVersion, PublishOptions, PublishOutcome, PublishProperties, QoS,
    ReasonCode, ServiceConfiguration, Status,
};
use tokio::time::timeout;

fn v5() -> MqttConfiguration {
    no_reconnect().protocol(ProtocolVersion::V5)
}

/// Every property the SDK exposes, user properties with a repeated key (order matters).
fn all_properties(tag: &str) -> PublishProperties {
    PublishProperties::new()
        .user_property("b", "2")
        .user_property("a", "1")
        .user_property("b", "3")
        .user_property("tag", tag)
        .content_type("application/json")
        .payload_format(PayloadFormat::Utf8)
        .response_topic("chat/replies")
        .correlation_data(Bytes::from_static(b"\x00\x01corr"))
        .message_expiry_interval(120)
}

/// `got` carries `sent`'s properties; the expiry is the time remaining (≤ sent, and only
/// a few seconds less on loopback).
fn assert_same_properties(got: &Message, sent: &PublishProperties) {
    let mut got = got.properties.clone();
    let mut sent = sent.clone();
    let remaining = got.message_expiry_interval.take();
    let original = sent.message_expiry_interval.take();
    match (remaining, original) {
        (Some(r), Some(o)) => assert!(r <= o && r + 10 >= o, "expiry {r} of {o}"),
        (r, o) => assert_eq!(r, o, "message expiry"),
    }
    assert_eq!(got, sent);
}

/// Subscribe `chat/<name>`, publish QoS 1 and QoS 0 with every property, receive both
/// with their properties.
async fn round_trip(m: &DataManager, name: &str) {
    let topic = format!("chat/{name}");
    let mut stream = timeout(T, m.subscribe_stream(&topic, QoS::AtLeastOnce))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{name}: subscribe: {e}"));
    for qos in [QoS::AtLeastOnce, QoS::AtMostOnce] {
        let props = all_properties(name);
        let r = timeout(
            T,
            m.publish_with(
                &topic,
                format!("{qos:?} from {name}"),
                qos,
                PublishOptions::new().properties(props.clone()),
            ),
        )
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{name}: publish: {e}"));
        let want = if qos == QoS::AtLeastOnce {
            PublishOutcome::Acknowledged
        } else {
            PublishOutcome::Sent
        };
        assert_eq!(r, want, "{name}");
        let msg = timeout(T, stream.recv()).await.unwrap().unwrap();
        assert_eq!(
            (msg.topic.as_str(), &msg.payload[..]),
            (topic.as_str(), format!("{qos:?} from {name}").as_bytes()),
        );
        assert_same_properties(&msg, &props);
    }
    timeout(T, m.disconnect_and_wait()).await.unwrap();
    assert_eq!(m.status().borrow().status, Status::Disconnected);
}

async fn start() -> (Setup, broker::RunningBroker, Ports) {
    let setup = setup("mqtt5", true).await;
    let running = broker::start(setup.config.clone()).await.unwrap();
    let p = ports(&running);
    (setup, running, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_method_speaks_mqtt5_with_properties() {
    let (setup, running, p) = start().await;
    let cfg = service(&setup, p, v5());

    let m = DataManager::new(cfg.clone());
    m.connect_mqtt("v5-plain", true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    wait_connected(&m).await;
    // IoT Core's CONNACK properties (the broker emulates them) reach the user.
    let c = m.connack().expect("connack while connected");
    assert!(!c.session_present);
    assert_eq!(c.receive_maximum, Some(100), "{c:?}");
    assert_eq!(c.maximum_qos, Some(1), "{c:?}");
    assert_eq!(c.topic_alias_maximum, Some(8), "{c:?}");
    round_trip(&m, "v5-plain").await;
    assert_eq!(m.connack(), None, "no CONNACK once disconnected");

    let m = DataManager::new(cfg.clone());
    m.connect("dev1", true, &setup.certificates["dev1"], |_| {})
        .unwrap();
    wait_connected(&m).await;
    round_trip(&m, "dev1").await;

    let m = DataManager::new(cfg.clone());
    m.connect_using_alpn("dev2", true, &setup.certificates["dev2"], |_| {})
        .unwrap();
    wait_connected(&m).await;
    round_trip(&m, "dev2").await;

    let m = DataManager::new(cfg.clone());
    m.connect_using_websocket("v5-sigv4", true, |_| {}).unwrap();
    wait_connected(&m).await;
    round_trip(&m, "v5-sigv4").await;

    let m = DataManager::new(cfg.clone());
    m.connect_using_websocket_custom_auth(
        "v5-ws-token",
        true,
        &CustomAuth::new(AUTHORIZER, TOKEN_KEY, GOOD_TOKEN),
        |_| {},
    )
    .unwrap();
    wait_connected(&m).await;
    round_trip(&m, "v5-ws-token").await;

    let m = DataManager::new(cfg.clone());
    m.connect_using_custom_auth(
        "v5-direct-token",
        true,
        &CustomAuth::new(AUTHORIZER, TOKEN_KEY, GOOD_TOKEN),
        |_| {},
    )
    .unwrap();
    wait_connected(&m).await;
    round_trip(&m, "v5-direct-token").await;

    // A refused MQTT 5 CONNACK is still ConnectionRefused.
    let m = DataManager::new(cfg.clone());
    m.connect_using_custom_auth(
        "v5-direct-bad",
        true,
        &CustomAuth::new(AUTHORIZER, TOKEN_KEY, "wrong"),
        |_| {},
    )
    .unwrap();
    refused(&m).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_reason_codes_and_keep_the_connection() {
    let (setup, running, p) = start().await;
    let m = DataManager::new(service(&setup, p, v5()));
    m.connect("dev1", true, &setup.certificates["dev1"], |_| {})
        .unwrap();
    wait_connected(&m).await;

    // Outside the chat policy: PUBACK 0x87, where MQTT 3.1.1 would lose the connection.
    let r = timeout(T, m.publish("admin/x", "nope", QoS::AtLeastOnce))
        .await
        .unwrap();
    match &r {
        Err(Error::PublishRefused { reason, .. }) => {
            assert_eq!(*reason, ReasonCode::NOT_AUTHORIZED)
        }
        other => panic!("want PublishRefused 0x87, got {other:?}"),
    }
    let text = r.unwrap_err().to_string();
    assert!(text.contains("0x87 Not authorized"), "{text}");

    let r = timeout(T, m.subscribe_stream("admin/#", QoS::AtLeastOnce))
        .await
        .unwrap();
    match r {
        Err(Error::SubscribeRefused { filter, reason, .. }) => {
            assert_eq!((filter.as_str(), reason), ("admin/#", ReasonCode(0x87)))
        }
        other => panic!("want SubscribeRefused 0x87, got {other:?}"),
    }

    // Still connected, and allowed requests still work.
    assert_eq!(m.status().borrow().status, Status::Connected);
    assert_eq!(
        timeout(T, m.publish("chat/ok", "fine", QoS::AtLeastOnce))
            .await
            .unwrap()
            .unwrap(),
        PublishOutcome::Acknowledged
    );
    m.disconnect_and_wait().await;
    running.shutdown().await;
}

/// Answers every request on `filter` with `echo: <payload>`, copying the correlation data
/// to the response topic, as an MQTT 5 responder should.
async fn responder(m: &DataManager, filter: &str) {
    let mut requests = m.subscribe_stream(filter, QoS::AtLeastOnce).await.unwrap();
    let m = m.clone();
    tokio::spawn(async move {
        while let Some(req) = requests.recv().await {
            let Some(reply_to) = req.properties.response_topic.clone() else {
                continue;
            };
            let mut props = PublishProperties::new().user_property("answered-by", "responder");
            if let Some(c) = req.properties.correlation_data.clone() {
                props = props.correlation_data(c);
            }
            let payload = format!("echo: {}", String::from_utf8_lossy(&req.payload));
            let _ = m
                .publish_with(
                    &reply_to,
                    payload,
                    QoS::AtLeastOnce,
                    PublishOptions::new().properties(props),
                )
                .await;
        }
    });
}

async fn request_response(cfg: ServiceConfiguration, prefix: &str) {
    let server = DataManager::new(cfg.clone());
    server
        .connect_mqtt(
            &format!("{prefix}-server"),
            true,
            &MqttConnectOptions::default(),
            |_| {},
        )
        .unwrap();
    wait_connected(&server).await;
    responder(&server, &format!("{prefix}/echo")).await;

    let client = DataManager::new(cfg);
    client
        .connect_mqtt(
            &format!("{prefix}-client"),
            true,
            &MqttConnectOptions::default(),
            |_| {},
        )
        .unwrap();
    wait_connected(&client).await;
    let reply_to = format!("{prefix}/echo/reply/client");
    let reply = client
        .request(&format!("{prefix}/echo"), "hi", &reply_to, T)
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"echo: hi");
    assert_eq!(reply.topic, reply_to);
    assert_eq!(
        reply.properties.user_properties,
        vec![("answered-by".to_owned(), "responder".to_owned())]
    );
    // Two requests at once on one response topic: each gets its own answer.
    let echo = format!("{prefix}/echo");
    let (a, b) = tokio::join!(
        client.request(&echo, "a", &reply_to, T),
        client.request(&echo, "b", &reply_to, T),
    );
    assert_eq!(&a.unwrap().payload[..], b"echo: a");
    assert_eq!(&b.unwrap().payload[..], b"echo: b");
    // Nobody answers: a timeout, not a hang.
    let t0 = std::time::Instant::now();
    let r = client
        .request(
            &format!("{prefix}/nobody"),
            "?",
            &reply_to,
            Duration::from_millis(300),
        )
        .await;
    assert!(matches!(r, Err(Error::RequestTimedOut(_))), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    client.disconnect_and_wait().await;
    server.disconnect_and_wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_round_trip() {
    let (setup, running, p) = start().await;
    request_response(service(&setup, p, v5()), "svc").await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt311_stays_the_default_and_gets_no_properties() {
    assert_eq!(MqttConfiguration::default().protocol, ProtocolVersion::V311);
    let (setup, running, p) = start().await;
    let old = DataManager::new(service(&setup, p, no_reconnect()));
    old.connect_mqtt("v311", true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    wait_connected(&old).await;
    assert_eq!(old.connack().map(|c| c.receive_maximum), Some(None));
    // MQTT 5 features are refused, not silently dropped.
    let r = old
        .publish_with(
            "x/y",
            "p",
            QoS::AtLeastOnce,
            PublishOptions::new().properties(PublishProperties::new().user_property("a", "1")),
        )
        .await;
    assert!(matches!(r, Err(Error::NeedsMqtt5(_))), "{r:?}");
    let r = old.request("x/y", "p", "x/reply", T).await;
    assert!(matches!(r, Err(Error::NeedsMqtt5(_))), "{r:?}");
    // Options without properties are fine on 3.1.1.
    assert_eq!(
        old.publish_with(
            "x/y",
            "p",
            QoS::AtLeastOnce,
            PublishOptions::new().retain(false)
        )
        .await
        .unwrap(),
        PublishOutcome::Acknowledged
    );

    // Across versions: an MQTT 5 message reaches a 3.1.1 subscriber without properties.
    let mut at_old = old
        .subscribe_stream("cross/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let new = DataManager::new(service(&setup, p, v5()));
    new.connect_mqtt("v5-cross", true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    wait_connected(&new).await;
    let mut at_new = new
        .subscribe_stream("cross/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    new.publish_with(
        "cross/1",
        "from v5",
        QoS::AtLeastOnce,
        PublishOptions::new().properties(all_properties("cross")),
    )
    .await
    .unwrap();
    let got = timeout(T, at_old.recv()).await.unwrap().unwrap();
    assert_eq!(&got.payload[..], b"from v5");
    assert_eq!(got.properties, PublishProperties::new());
    let got = timeout(T, at_new.recv()).await.unwrap().unwrap();
    assert_same_properties(&got, &all_properties("cross"));
    old.disconnect_and_wait().await;
    new.disconnect_and_wait().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_mqtt5_session_is_resumed() {
    let (setup, running, p) = start().await;
    let cfg = service(&setup, p, v5());
    let m = DataManager::new(cfg.clone());
    m.connect_mqtt("v5-persist", false, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    wait_connected(&m).await;
    let _s = m
        .subscribe_stream("keep/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    m.disconnect_and_wait().await;
    // Something arrives while offline: the broker keeps it for the session.
    let other = DataManager::new(cfg.clone());
    other
        .connect_mqtt("v5-other", true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    wait_connected(&other).await;
    other
        .publish("keep/1", "while away", QoS::AtLeastOnce)
        .await
        .unwrap();
    other.disconnect_and_wait().await;

    let m = DataManager::new(cfg);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    m.connect_mqtt("v5-persist", false, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    // Registered before the CONNACK, so the message the broker kept finds a handler.
    m.subscribe("keep/#", QoS::AtLeastOnce, move |msg| {
        let _ = tx.send(msg.payload.to_vec());
    })
    .unwrap();
    wait_connected(&m).await;
    assert!(m.connack().unwrap().session_present);
    let got = timeout(T, rx.recv()).await.unwrap().unwrap();
    assert_eq!(&got[..], b"while away");
    m.disconnect_and_wait().await;
    running.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// mosquitto: an independent MQTT 5 broker.

fn mosquitto_config(port: u16) -> ServiceConfiguration {
    ServiceConfiguration::new("us-east-1", Endpoint::parse("127.0.0.1").unwrap())
        .mqtt_port(port)
        .mqtt_configuration(v5())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_carries_every_property_and_request_response() {
    let broker = common::Mosquitto::start("allow_anonymous true");
    let m = DataManager::new(mosquitto_config(broker.port));
    m.connect_mqtt("sdk-v5", true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    wait_connected(&m).await;
    round_trip(&m, "mosquitto").await;
    request_response(mosquitto_config(broker.port), "mosq").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_over_the_brokers_maximum_packet_size_is_refused_locally() {
    // mosquitto announces Maximum Packet Size 1000 in its MQTT 5 CONNACK.
    let broker = common::Mosquitto::start("allow_anonymous true\nmax_packet_size 1000");
    let m = DataManager::new(mosquitto_config(broker.port));
    m.connect_mqtt("sdk-v5-max", true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    wait_connected(&m).await;
    assert_eq!(m.connack().unwrap().maximum_packet_size, Some(1000));
    let r = timeout(T, m.publish("big/1", vec![b'x'; 2000], QoS::AtLeastOnce))
        .await
        .unwrap();
    assert!(
        matches!(r, Err(Error::PacketTooLarge { max: 1000, .. })),
        "{r:?}"
    );
    // The connection is untouched: a small one goes through.
    let mut s = m.subscribe_stream("big/#", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(
        m.publish("big/1", "small", QoS::AtLeastOnce).await.unwrap(),
        PublishOutcome::Acknowledged
    );
    assert_eq!(
        &timeout(T, s.recv()).await.unwrap().unwrap().payload[..],
        b"small"
    );
    assert_eq!(m.status().borrow().status, Status::Connected);
    m.disconnect_and_wait().await;
}
