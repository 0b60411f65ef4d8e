//! Wire formats: the SigV4 presigned URL (against aws-sigv4 itself and an independent
//! computation) and what the WebSocket upgrade actually carries.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pubsub::auth::{presign_websocket_url, PRESIGN_EXPIRES, SIGV4_SERVICE};
use pubsub::{
    Credentials, CustomAuth, DataManager, Endpoint, Error, MqttConnectOptions, QoS, ReasonCode,
    ServiceConfiguration, Status,
};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_795_757_760; // 2026-11-27T05:36:00Z

fn creds(token: Option<&str>) -> Credentials {
    Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        token.map(str::to_owned),
        None,
        "test",
    )
}

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

/// What aws-sigv4 produces when asked directly to presign the same request.
fn aws_sigv4_direct(authority: &str, c: &Credentials) -> String {
    use aws_sigv4::http_request::{
        sign, SessionTokenMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    };
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.session_token_mode = SessionTokenMode::Exclude;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let identity = c.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("iotdevicegateway")
        .time(at())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let url = format!("wss://{authority}/mqtt");
    let req = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::once(("host", authority)),
        SignableBody::Bytes(&[]),
    )
    .unwrap();
    let (instructions, _) = sign(req, &params).unwrap().into_parts();
    let mut http_req = http::Request::builder().uri(url.as_str()).body(()).unwrap();
    instructions.apply_to_request_http1x(&mut http_req);
    http_req.uri().to_string()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Verify the signature in `url` from first principles (IOT-FACTS: host is the only signed
/// header, the session token is not signed).
fn independent_signature(url: &str, authority: &str, secret: &str) -> (String, String) {
    let query = url.split_once('?').unwrap().1;
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let sig = pairs
        .iter()
        .find(|(k, _)| *k == "X-Amz-Signature")
        .unwrap()
        .1
        .to_owned();
    pairs.retain(|(k, _)| *k != "X-Amz-Signature" && *k != "X-Amz-Security-Token");
    pairs.sort();
    let canonical_query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let creq = format!(
        "GET\n/mqtt\n{canonical_query}\nhost:{authority}\n\nhost\n{}",
        hex::encode(Sha256::digest(b""))
    );
    let date = "20261127T053600Z";
    let scope = "20261127/us-east-1/iotdevicegateway/aws4_request";
    let sts = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), b"20261127");
    let k = hmac(&k, b"us-east-1");
    let k = hmac(&k, b"iotdevicegateway");
    let k = hmac(&k, b"aws4_request");
    (hex::encode(hmac(&k, sts.as_bytes())), sig)
}

#[test]
fn presigned_url_equals_aws_sigv4_and_verifies() {
    for authority in ["localhost:8443", "abc-ats.iot.us-east-1.amazonaws.com"] {
        for token in [None, Some("TOKEN/abc+=")] {
            let c = creds(token);
            let ours = presign_websocket_url(
                authority,
                "us-east-1",
                SIGV4_SERVICE,
                &c,
                at(),
                PRESIGN_EXPIRES,
            )
            .unwrap();
            assert_eq!(
                ours,
                aws_sigv4_direct(authority, &c),
                "{authority} {token:?}"
            );
            assert!(ours.starts_with(&format!(
                "wss://{authority}/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&"
            )));
            assert!(ours.contains(
                "X-Amz-Credential=AKIDEXAMPLE%2F20261127%2Fus-east-1%2Fiotdevicegateway%2Faws4_request"
            ));
            assert!(ours.contains("X-Amz-Date=20261127T053600Z"));
            assert!(ours.contains("X-Amz-SignedHeaders=host"));
            assert!(ours.contains("X-Amz-Expires=86400"));
            match token {
                Some(_) => assert!(
                    ours.ends_with("&X-Amz-Security-Token=TOKEN%2Fabc%2B%3D"),
                    "{ours}"
                ),
                None => assert!(!ours.contains("X-Amz-Security-Token")),
            }
            let (expected, got) =
                independent_signature(&ours, authority, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
            assert_eq!(expected, got, "signature must verify independently");
        }
    }
    // The token does not change the signature (it is not signed).
    let a = presign_websocket_url(
        "h",
        "us-east-1",
        SIGV4_SERVICE,
        &creds(None),
        at(),
        PRESIGN_EXPIRES,
    )
    .unwrap();
    let b = presign_websocket_url(
        "h",
        "us-east-1",
        SIGV4_SERVICE,
        &creds(Some("t")),
        at(),
        PRESIGN_EXPIRES,
    )
    .unwrap();
    assert_eq!(b, format!("{a}&X-Amz-Security-Token=t"));
}

/// A one-shot TLS server that records the first HTTP request head it receives.
async fn capture_upgrade(pki: &common::Pki) -> (u16, tokio::sync::oneshot::Receiver<String>) {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::AsyncReadExt;
    let certs =
        vec![rustls_pki_types::CertificateDer::from_pem_slice(pki.server_pem.as_bytes()).unwrap()];
    let key =
        rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tls.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        // Dropping the stream ends the connection: the client reports an error.
    });
    (port, rx)
}

fn ws_config(pki: &common::Pki, dir: &common::TempDir, port: u16) -> ServiceConfiguration {
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    ServiceConfiguration::new("us-east-1", Endpoint::parse("localhost").unwrap())
        .websocket_port(port)
        .ca_file(ca)
        .static_credentials(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("TOKEN/abc+=".into()),
        )
        .mqtt_configuration(common::no_reconnect())
}

#[tokio::test]
async fn sigv4_websocket_upgrade_on_the_wire() {
    let pki = common::Pki::new();
    let dir = common::TempDir::new("ws");
    let (port, head) = capture_upgrade(&pki).await;
    let m = DataManager::new(ws_config(&pki, &dir, port));
    m.connect_using_websocket("ws-client", true, |_| {})
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), head)
        .await
        .unwrap()
        .unwrap();
    let request_line = head.lines().next().unwrap();
    assert!(
        request_line.starts_with("GET /mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&"),
        "{request_line}"
    );
    assert!(
        request_line.contains("&X-Amz-Security-Token=TOKEN%2Fabc%2B%3D HTTP/1.1"),
        "{request_line}"
    );
    let lower = head.to_ascii_lowercase();
    // The signed host must be exactly the Host header sent.
    assert!(
        lower.contains(&format!("\r\nhost: localhost:{port}\r\n")),
        "{head}"
    );
    assert!(
        lower.contains("\r\nsec-websocket-protocol: mqtt\r\n"),
        "{head}"
    );
    let path = request_line.split(' ').nth(1).unwrap();
    let (expected, got) = independent_signature_now(
        path,
        &format!("localhost:{port}"),
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    );
    assert_eq!(expected, got);
    let ended = tokio::time::timeout(Duration::from_secs(10), m.wait_for_connection())
        .await
        .unwrap()
        .expect_err("connected");
    assert_eq!(ended.status, Status::ConnectionError, "{ended}");
}

/// As `independent_signature`, with the date taken from the URL.
fn independent_signature_now(path: &str, authority: &str, secret: &str) -> (String, String) {
    let query = path.split_once('?').unwrap().1;
    let date = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("X-Amz-Date="))
        .unwrap()
        .to_owned();
    let day = &date[..8];
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let sig = pairs
        .iter()
        .find(|(k, _)| *k == "X-Amz-Signature")
        .unwrap()
        .1
        .to_owned();
    pairs.retain(|(k, _)| *k != "X-Amz-Signature" && *k != "X-Amz-Security-Token");
    pairs.sort();
    let cq = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let creq = format!(
        "GET\n/mqtt\n{cq}\nhost:{authority}\n\nhost\n{}",
        hex::encode(Sha256::digest(b""))
    );
    let scope = format!("{day}/us-east-1/iotdevicegateway/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k = hmac(&k, b"us-east-1");
    let k = hmac(&k, b"iotdevicegateway");
    let k = hmac(&k, b"aws4_request");
    (hex::encode(hmac(&k, sts.as_bytes())), sig)
}

#[tokio::test]
async fn custom_auth_websocket_headers_on_the_wire() {
    let pki = common::Pki::new();
    let dir = common::TempDir::new("wsca");
    let (port, head) = capture_upgrade(&pki).await;
    let m = DataManager::new(ws_config(&pki, &dir, port));
    m.connect_using_websocket_custom_auth(
        "ca-client",
        true,
        &CustomAuth::new("MyAuthorizer", "x-token", "tokval").signature("sig/abc+=="),
        |_| {},
    )
    .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), head)
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("GET /mqtt HTTP/1.1\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nx-amz-customauthorizer-name: myauthorizer\r\n"),
        "{head}"
    );
    assert!(
        head.contains("MyAuthorizer") && head.contains("sig/abc+==") && head.contains("tokval")
    );
    assert!(
        lower.contains("\r\nx-amz-customauthorizer-signature: sig/abc+==\r\n"),
        "{head}"
    );
    assert!(lower.contains("\r\nx-token: tokval\r\n"), "{head}");
}

/// A one-shot TLS server offering `alpn`; reports the negotiated ALPN and the first bytes
/// the client sends (until `marker` appears or 2 s pass).
async fn capture_tls(
    pki: &common::Pki,
    alpn: &'static [&'static str],
    marker: &'static [u8],
) -> (
    u16,
    tokio::sync::oneshot::Receiver<(Option<String>, Vec<u8>)>,
) {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::AsyncReadExt;
    let certs =
        vec![rustls_pki_types::CertificateDer::from_pem_slice(pki.server_pem.as_bytes()).unwrap()];
    let key =
        rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let negotiated = tls
            .get_ref()
            .1
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !buf.windows(marker.len()).any(|w| w == marker) {
            match tokio::time::timeout_at(deadline, tls.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        let _ = tx.send((negotiated, buf));
    });
    (port, rx)
}

#[tokio::test]
async fn direct_custom_auth_username_and_alpn_on_the_wire() {
    let pki = common::Pki::new();
    let dir = common::TempDir::new("direct-ca");
    let (port, got) = capture_tls(&pki, &["mqtt"], b"secret-pw").await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let m = DataManager::new(
        ServiceConfiguration::new("us-east-1", Endpoint::parse("localhost").unwrap())
            .custom_auth_port(port)
            .ca_file(ca)
            .mqtt_configuration(common::no_reconnect()),
    );
    let custom = CustomAuth::new("MyAuthorizer", "mytoken", "tokval")
        .signature("sig/abc+==")
        .username("devuser")
        .password("secret-pw");
    m.connect_using_custom_auth("crt-ca-direct", true, &custom, |_| {})
        .unwrap();
    let (alpn, bytes) = tokio::time::timeout(Duration::from_secs(10), got)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alpn.as_deref(), Some("mqtt"));
    let text = String::from_utf8_lossy(&bytes);
    // Not an AWS host: no metrics appended.
    let expected = "devuser?x-amz-customauthorizer-name=MyAuthorizer&x-amz-customauthorizer-signature=sig%2Fabc%2B%3D%3D&mytoken=tokval";
    let at = bytes
        .windows(expected.len())
        .position(|w| w == expected.as_bytes())
        .expect("username in CONNECT");
    // MQTT strings are length-prefixed: the username is exactly this string.
    assert_eq!(
        u16::from_be_bytes([bytes[at - 2], bytes[at - 1]]) as usize,
        expected.len()
    );
    assert!(text.contains("secret-pw"));
}

#[tokio::test]
async fn alpn_connect_offers_x_amzn_mqtt_ca() {
    let pki = common::Pki::new();
    let dir = common::TempDir::new("alpn");
    let (port, got) = capture_tls(&pki, &["x-amzn-mqtt-ca"], b"alpn-client").await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let store = pubsub::IdentityStore::open(dir.path().join("ids")).unwrap();
    let id = store
        .import_pem(pki.client_pem.as_bytes(), pki.client_key_pem.as_bytes())
        .unwrap();
    let m = DataManager::new(
        ServiceConfiguration::new("us-east-1", Endpoint::parse("localhost").unwrap())
            .alpn_port(port)
            .ca_file(ca)
            .identity_store(store)
            .mqtt_configuration(common::no_reconnect()),
    );
    m.connect_using_alpn("alpn-client", true, &id, |_| {})
        .unwrap();
    let (alpn, bytes) = tokio::time::timeout(Duration::from_secs(10), got)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alpn.as_deref(), Some("x-amzn-mqtt-ca"));
    assert!(String::from_utf8_lossy(&bytes).contains("alpn-client"));
}

/// On MQTT 3.1.1 a SUBACK return code 0x80 refuses the subscription without a reason; the
/// SDK reports it as on MQTT 5, and the connection stays. (mosquitto grants filters its
/// ACL denies, and IoT Core closes the connection instead, so a scripted peer says it.)
#[tokio::test]
async fn suback_failure_on_mqtt311_is_subscribe_refused() {
    use mqtt::{Packet, SubAck};
    const T: Duration = Duration::from_secs(10);
    let peer = common::peer::Peer::bind().await;
    let m = DataManager::new(
        ServiceConfiguration::new("us-east-1", Endpoint::parse("127.0.0.1").unwrap())
            .mqtt_port(peer.port())
            .mqtt_configuration(common::no_reconnect()),
    );
    m.connect_mqtt("refused-sub", true, &MqttConnectOptions::new(), |_| {})
        .unwrap();
    let mut conn = peer.accept().await;
    conn.handshake(false).await;
    tokio::time::timeout(T, m.wait_for_connection())
        .await
        .unwrap()
        .unwrap();
    let refuse = |pkid| {
        Packet::SubAck(SubAck {
            pkid,
            return_codes: vec![ReasonCode(0x80)],
            properties: Default::default(),
        })
    };

    let subscribing = {
        let m = m.clone();
        tokio::spawn(async move { m.subscribe_stream("secret/#", QoS::AtLeastOnce).await })
    };
    let s = conn.expect_subscribe().await;
    conn.send(refuse(s.pkid)).await;
    match tokio::time::timeout(T, subscribing).await.unwrap().unwrap() {
        Err(Error::SubscribeRefused { filter, reason, .. }) => {
            assert_eq!((filter.as_str(), reason), ("secret/#", ReasonCode(0x80)))
        }
        other => panic!("want SubscribeRefused 0x80, got {:?}", other.map(|_| ())),
    }

    // The callback form hears it in its acknowledgement.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    m.subscribe_with_ack(
        "secret/a",
        QoS::AtMostOnce,
        |_| {},
        move |r| {
            let _ = tx.send(r);
        },
    )
    .unwrap();
    let s = conn.expect_subscribe().await;
    conn.send(refuse(s.pkid)).await;
    let r = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
    assert!(matches!(r, Err(Error::SubscribeRefused { .. })), "{r:?}");
    assert_eq!(m.status().borrow().status, Status::Connected);
    m.disconnect().unwrap();
}
