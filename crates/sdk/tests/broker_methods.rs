//! The SDK against our own broker (in process, free loopback ports): every connection
//! method connects, subscribes, publishes and receives its own message back; refusals
//! surface as status changes.

mod broker_support;
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use broker_support::*;
use pubsub::auth::{presign_websocket_url, PRESIGN_EXPIRES, SIGV4_SERVICE};
use pubsub::{
    Credentials, CustomAuth, CustomAuthTransport, DataManager, MqttConnectOptions, PublishOutcome,
    QoS, Reason, ReasonCode, Status, StatusEvent,
};
use tokio::time::timeout;

/// Subscribe `chat/<name>`, publish QoS 1 and QoS 0 there, receive both.
async fn round_trip(m: &DataManager, name: &str) {
    let topic = format!("chat/{name}");
    let mut stream = timeout(T, m.subscribe_stream(&topic, QoS::AtLeastOnce))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{name}: subscribe: {e}"));
    let r = timeout(
        T,
        m.publish(&topic, format!("q1 from {name}"), QoS::AtLeastOnce),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r, PublishOutcome::Acknowledged, "{name}");
    let msg = timeout(T, stream.recv()).await.unwrap().unwrap();
    assert_eq!(
        (msg.topic.as_str(), &msg.payload[..]),
        (topic.as_str(), format!("q1 from {name}").as_bytes())
    );
    assert_eq!(
        m.try_publish(&topic, format!("q0 from {name}"), QoS::AtMostOnce)
            .unwrap(),
        PublishOutcome::Submitted
    );
    let msg = timeout(T, stream.recv()).await.unwrap().unwrap();
    assert_eq!(&msg.payload[..], format!("q0 from {name}").as_bytes());
    timeout(T, m.disconnect_and_wait()).await.unwrap();
    assert_eq!(m.status().borrow().status, Status::Disconnected);
}

type Log = Arc<Mutex<Vec<Status>>>;

fn recorder(l: &Log) -> impl FnMut(StatusEvent) + Send + 'static {
    let l = l.clone();
    move |e| l.lock().unwrap().push(e.status)
}

async fn start() -> (Setup, broker::RunningBroker, Ports) {
    let setup = setup("methods", true).await;
    let running = broker::start(setup.config.clone()).await.unwrap();
    let p = ports(&running);
    (setup, running, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_method_round_trips() {
    let (setup, running, p) = start().await;
    let cfg = service(&setup, p, no_reconnect());

    // Plain MQTT (anonymous, dev-allow-all).
    let m = DataManager::new(cfg.clone());
    m.connect_mqtt("plain-1", true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    wait_connected(&m).await;
    round_trip(&m, "plain-1").await;

    // Mutual TLS on mqtts.
    let m = DataManager::new(cfg.clone());
    m.connect("dev1", true, &setup.certificates["dev1"], |_| {})
        .unwrap();
    wait_connected(&m).await;
    round_trip(&m, "dev1").await;

    // Mutual TLS, ALPN x-amzn-mqtt-ca, on the tls port.
    let m = DataManager::new(cfg.clone());
    m.connect_using_alpn("dev2", true, &setup.certificates["dev2"], |_| {})
        .unwrap();
    wait_connected(&m).await;
    round_trip(&m, "dev2").await;

    // SigV4 WebSocket, long-lived keys.
    let m = DataManager::new(cfg.clone());
    m.connect_using_websocket("sigv4-app", true, |_| {})
        .unwrap();
    wait_connected(&m).await;
    round_trip(&m, "sigv4-app").await;

    // SigV4 WebSocket with a session token: appended unsigned (X-Amz-Security-Token); the
    // signature must still verify.
    let m = DataManager::new(cfg.clone().static_credentials(
        ACCESS_KEY,
        SECRET_KEY,
        Some("FwoGZXIvYXdzEJr//////////session+token/with=chars".into()),
    ));
    m.connect_using_websocket("sigv4-token", true, |_| {})
        .unwrap();
    wait_connected(&m).await;
    round_trip(&m, "sigv4-token").await;

    // Custom authorizer over WebSocket (headers on the upgrade).
    let m = DataManager::new(cfg.clone());
    m.connect_using_websocket_custom_auth(
        "ws-token",
        true,
        &CustomAuth::new(AUTHORIZER, TOKEN_KEY, GOOD_TOKEN),
        |_| {},
    )
    .unwrap();
    wait_connected(&m).await;
    round_trip(&m, "ws-token").await;

    // Custom authorizer direct: TLS ALPN mqtt, fields in the username.
    let m = DataManager::new(cfg.clone());
    m.connect_using_custom_auth(
        "direct-token",
        true,
        &CustomAuth::new(AUTHORIZER, TOKEN_KEY, GOOD_TOKEN),
        |_| {},
    )
    .unwrap();
    wait_connected(&m).await;
    round_trip(&m, "direct-token").await;

    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_connection_methods() {
    let (setup, running, p) = start().await;
    let cfg = service(&setup, p, no_reconnect());
    let cert = DataManager::new(cfg.clone());
    cert.connect("dev1", true, &setup.certificates["dev1"], |_| {})
        .unwrap();
    let ws = DataManager::new(cfg.clone());
    ws.connect_using_websocket("app-1", true, |_| {}).unwrap();
    wait_connected(&cert).await;
    wait_connected(&ws).await;
    let mut at_ws = ws
        .subscribe_stream("chat/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut at_cert = cert
        .subscribe_stream("chat/room", QoS::AtMostOnce)
        .await
        .unwrap();
    cert.publish("chat/room", "from the device", QoS::AtLeastOnce)
        .await
        .unwrap();
    ws.publish("chat/room", "from the app", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut got_ws = Vec::new();
    for _ in 0..2 {
        got_ws.push(timeout(T, at_ws.recv()).await.unwrap().unwrap().payload);
    }
    let mut got_cert = Vec::new();
    for _ in 0..2 {
        got_cert.push(timeout(T, at_cert.recv()).await.unwrap().unwrap().payload);
    }
    for got in [got_ws, got_cert] {
        assert!(got.iter().any(|p| &p[..] == b"from the device"));
        assert!(got.iter().any(|p| &p[..] == b"from the app"));
    }
    cert.disconnect_and_wait().await;
    ws.disconnect_and_wait().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_publish_is_a_status_change() {
    let (setup, running, p) = start().await;
    let m = DataManager::new(service(&setup, p, no_reconnect()));
    let log: Log = Arc::default();
    m.connect("dev1", true, &setup.certificates["dev1"], recorder(&log))
        .unwrap();
    wait_connected(&m).await;
    // Allowed first, then outside the policy: IoT Core closes the connection.
    assert_eq!(
        m.publish("chat/ok", "fine", QoS::AtLeastOnce)
            .await
            .unwrap(),
        PublishOutcome::Acknowledged
    );
    let mut status = m.status();
    assert_eq!(
        m.publish("admin/x", "nope", QoS::AtMostOnce).await.unwrap(),
        PublishOutcome::Sent
    );
    timeout(T, status.wait_for(|s| *s == Status::ConnectionError))
        .await
        .unwrap()
        .unwrap();
    // The watch channel changes just before the callback runs.
    for _ in 0..100 {
        if log.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            Status::Connecting,
            Status::Connected,
            Status::ConnectionError
        ]
    );
    // No reconnect: the manager is free for a new connect.
    assert!(matches!(
        m.publish("chat/ok", "x", QoS::AtLeastOnce).await,
        Err(pubsub::Error::NotConnected)
    ));

    // QoS 1 to a denied topic: the pending publish fails instead of hanging.
    let m = DataManager::new(service(&setup, p, no_reconnect()));
    m.connect_using_websocket("app-2", true, |_| {}).unwrap();
    wait_connected(&m).await;
    let r = timeout(T, m.publish("admin/x", "nope", QoS::AtLeastOnce))
        .await
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    assert_eq!(
        m.status().borrow().status,
        Status::ConnectionError,
        "the publish ended with {r:?}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_connection_refused() {
    let (setup, running, p) = start().await;
    let cfg = service(&setup, p, no_reconnect());

    // Authorizer says no (direct custom auth): CONNACK 5.
    let m = DataManager::new(cfg.clone());
    m.connect_using_custom_auth(
        "direct-bad",
        true,
        &CustomAuth::new(AUTHORIZER, TOKEN_KEY, "wrong"),
        |_| {},
    )
    .unwrap();
    let ended = refused(&m).await;
    assert!(
        matches!(ended.reason, Some(Reason::Refused { code, .. }) if code == ReasonCode::NOT_AUTHORIZED),
        "the CONNACK's code (3.1.1 return code 5): {ended:?}"
    );

    // Authorizer says no over WebSocket.
    let m = DataManager::new(cfg.clone());
    m.connect_using_websocket_custom_auth(
        "ws-bad",
        true,
        &CustomAuth::new(AUTHORIZER, TOKEN_KEY, "wrong"),
        |_| {},
    )
    .unwrap();
    let ended = refused(&m).await;
    assert!(
        matches!(
            ended.reason,
            Some(Reason::HttpStatus {
                status: 401 | 403,
                ..
            })
        ),
        "the upgrade's HTTP status, read from the response: {ended:?}"
    );

    // Wrong SigV4 secret.
    let m = DataManager::new(
        cfg.clone()
            .static_credentials(ACCESS_KEY, "not-the-secret", None),
    );
    m.connect_using_websocket("sigv4-bad", true, |_| {})
        .unwrap();
    let ended = refused(&m).await;
    assert!(
        matches!(
            ended.reason,
            Some(Reason::HttpStatus {
                status: 401 | 403,
                ..
            })
        ),
        "{ended:?}"
    );

    running.shutdown().await;
}

/// A client certificate the broker does not know: the TLS handshake is refused, and the
/// status says so with rustls's error (the received alert), not with text to parse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_certificate_ends_with_a_tls_reason() {
    let (setup, running, p) = start().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["stranger".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let id = setup
        .identities
        .import_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .unwrap();
    let m = DataManager::new(service(&setup, p, no_reconnect()));
    m.connect("stranger", true, &id, |_| {}).unwrap();
    let ended = timeout(T, m.wait_for_connection())
        .await
        .expect("connect timed out")
        .expect_err("a certificate the broker never saw connected");
    assert_eq!(ended.status, Status::ConnectionError, "{ended}");
    // The broker refuses the chain with TLS 1.3's access_denied alert, which rustls
    // reports on the client's first read.
    match &ended.reason {
        Some(Reason::Tls(e)) => assert_eq!(
            **e,
            rustls::Error::AlertReceived(rustls::AlertDescription::AccessDenied),
            "{ended}"
        ),
        other => panic!("want the TLS alert, got {other:?}"),
    }
    running.shutdown().await;
}

/// Make our broker close the connection (as IoT Core does on MQTT 3.1.1): a QoS 0
/// publish outside the chat policy.
async fn provoke_close(m: &DataManager) {
    // Watching from before the publish: the ConnectionError lasts only until the reconnect.
    let mut status = m.status();
    m.try_publish("admin/x", "nope", QoS::AtMostOnce).unwrap();
    timeout(T, status.wait_for(|s| *s == Status::ConnectionError))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_url_provider_is_asked_on_every_attempt() {
    let (setup, running, p) = start().await;
    let m = DataManager::new(service(
        &setup,
        p,
        fast_reconnect(std::time::Duration::from_millis(100)),
    ));
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let authority = format!("localhost:{}", p.tls);
    m.connect_using_presigned_url(
        "presigned-app",
        true,
        move || {
            c2.fetch_add(1, Ordering::SeqCst);
            // As a backend would: a fresh URL, signed now.
            let url = presign_websocket_url(
                &authority,
                "us-east-1",
                SIGV4_SERVICE,
                &Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"),
                std::time::SystemTime::now(),
                PRESIGN_EXPIRES,
            );
            async move { url }
        },
        |_| {},
    )
    .unwrap();
    wait_connected(&m).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    provoke_close(&m).await;
    wait_status(&m, Status::Connected).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a new URL for the reconnect"
    );
    round_trip(&m, "presigned-app").await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_auth_provider_refreshes_the_token_per_attempt() {
    let (setup, running, p) = start().await;
    for transport in [CustomAuthTransport::Direct, CustomAuthTransport::WebSocket] {
        let m = DataManager::new(service(
            &setup,
            p,
            fast_reconnect(std::time::Duration::from_millis(100)),
        ));
        let events: Log = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        m.connect_using_custom_auth_provider(
            &format!("provider-{transport:?}"),
            true,
            transport,
            move || {
                // The first token has expired; the provider's next one is good.
                let token = match c2.fetch_add(1, Ordering::SeqCst) {
                    0 => "expired",
                    _ => GOOD_TOKEN,
                };
                async move { Ok(CustomAuth::new(AUTHORIZER, TOKEN_KEY, token)) }
            },
            recorder(&events),
        )
        .unwrap();
        wait_status(&m, Status::Connected).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{transport:?}");
        assert!(
            common::eventually(T, || events.lock().unwrap().len() >= 4).await,
            "{transport:?}: {:?}",
            events.lock().unwrap()
        );
        assert_eq!(
            events.lock().unwrap()[..4],
            [
                Status::Connecting,
                Status::ConnectionRefused,
                Status::Connecting,
                Status::Connected
            ],
            "{transport:?}"
        );
        round_trip(&m, &format!("provider-{transport:?}")).await;
    }
    running.shutdown().await;
}
