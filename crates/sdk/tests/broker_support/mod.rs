//! Test helpers: our broker (`pubsub-broker`) started in process on free loopback ports,
//! with a chat policy, two device certificates, SigV4 keys and a custom authorizer whose
//! function this module serves over HTTP.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use broker::config::{
    Anonymous, AuthorizerConfig, CertificateConfig, CertificateStatus, CredentialConfig, Listeners,
    PolicyConfig,
};
use pubsub::backoff::BackoffConfig;
use pubsub::{DataManager, Endpoint, IdentityStore, MqttConfiguration, ServiceConfiguration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const T: Duration = Duration::from_secs(10);
pub const POLICY: &str = "chatPolicy";
pub const POLICY_DOCUMENT: &str = r#"{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}"},
 {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:us-east-1:123456789012:topic/chat/*"},
 {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:123456789012:topicfilter/chat/*"}]}"#;
pub const AUTHORIZER: &str = "test-authorizer";
pub const TOKEN_KEY: &str = "x-test-token";
pub const GOOD_TOKEN: &str = "allow-me";
pub const ACCESS_KEY: &str = "AKIATESTBROKERSDK001";
pub const SECRET_KEY: &str = "broker-sdk-test-secret-key-0123456789abc";
pub const IDENTITY: &str = "us-east-1:6a3c1a8e-0000-4000-8000-000000000001";

/// A scratch directory (removed on drop).
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "pubsub-sdk-broker-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything a test needs to reach the broker.
pub struct Setup {
    pub dir: Dir,
    pub config: broker::Config,
    /// Certificate ids in the SDK identity store, by device name.
    pub certificates: BTreeMap<String, String>,
    pub identities: IdentityStore,
    pub authorizer: SocketAddr,
}

/// The broker's config (listeners on port 0), two certificates `dev1`/`dev2` with the chat
/// policy, `[[credentials]]` for IDENTITY, and the authorizer served here.
pub async fn setup(tag: &str, in_memory: bool) -> Setup {
    let dir = Dir::new(tag);
    let authorizer = serve_authorizer().await;
    let identities = IdentityStore::open(dir.0.join("identities")).unwrap();
    let mut certificates = BTreeMap::new();
    let mut certificate_configs = Vec::new();
    for name in ["dev1", "dev2"] {
        let issued = broker::pki::issue_device_certificate(&dir.0, name).unwrap();
        let pem_file = dir.0.join(format!("{name}.pem"));
        std::fs::write(&pem_file, &issued.certificate_pem).unwrap();
        certificate_configs.push(CertificateConfig {
            pem_file,
            status: CertificateStatus::Active,
            policies: vec![POLICY.into()],
        });
        let id = identities
            .import_pem(
                issued.certificate_pem.as_bytes(),
                issued.private_key_pem.as_bytes(),
            )
            .unwrap();
        certificates.insert(name.to_owned(), id);
    }
    let mut config = broker::Config {
        data_dir: dir.0.clone(),
        in_memory,
        listeners: Listeners {
            mqtt: "127.0.0.1:0".into(),
            mqtts: "127.0.0.1:0".into(),
            tls: "127.0.0.1:0".into(),
            ws: String::new(),
            http: String::new(),
        },
        anonymous: Some(Anonymous {
            policies: vec!["dev-allow-all".into()],
        }),
        policies: vec![PolicyConfig {
            name: POLICY.into(),
            document: Some(POLICY_DOCUMENT.into()),
            document_file: None,
        }],
        certificates: certificate_configs,
        credentials: vec![CredentialConfig {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
            principal: IDENTITY.into(),
            policies: vec![POLICY.into()],
        }],
        authorizers: vec![AuthorizerConfig {
            name: AUTHORIZER.into(),
            function_url: format!("http://{authorizer}/authorize"),
            token_key_name: TOKEN_KEY.into(),
            signing_disabled: true,
            token_signing_public_keys: BTreeMap::new(),
            status: "ACTIVE".into(),
        }],
        ..broker::Config::default()
    };
    config.limits.connects_per_client_id_per_sec = 0;
    Setup {
        dir,
        config,
        certificates,
        identities,
        authorizer,
    }
}

/// Ports of a running broker.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub mqtt: u16,
    pub mqtts: u16,
    pub tls: u16,
}

pub fn ports(running: &broker::RunningBroker) -> Ports {
    Ports {
        mqtt: running.address("mqtt").unwrap().port(),
        mqtts: running.address("mqtts").unwrap().port(),
        tls: running.address("tls").unwrap().port(),
    }
}

/// A ServiceConfiguration for this broker: endpoint localhost, its CA, per-method ports.
pub fn service(setup: &Setup, ports: Ports, mqtt: MqttConfiguration) -> ServiceConfiguration {
    service_in(&setup.dir.0, &setup.identities, ports, mqtt)
}

pub fn service_in(
    data_dir: &Path,
    identities: &IdentityStore,
    ports: Ports,
    mqtt: MqttConfiguration,
) -> ServiceConfiguration {
    ServiceConfiguration::new("us-east-1", Endpoint::parse("localhost").unwrap())
        .ca_file(data_dir.join("tls").join("ca.pem"))
        .identity_store(identities.clone())
        .certificate_port(ports.mqtts)
        .alpn_port(ports.tls)
        .websocket_port(ports.tls)
        .custom_auth_port(ports.tls)
        .mqtt_port(ports.mqtt)
        .static_credentials(ACCESS_KEY, SECRET_KEY, None)
        .mqtt_configuration(mqtt)
}

/// No reconnect (failures stay visible as the final status).
pub fn no_reconnect() -> MqttConfiguration {
    let mut m = MqttConfiguration::default();
    m.auto_reconnect = false;
    m
}

/// Reconnect quickly (base `base`).
pub fn fast_reconnect(base: Duration) -> MqttConfiguration {
    let mut m = MqttConfiguration::default();
    m.backoff = BackoffConfig::default().base(base);
    m
}

pub async fn wait_connected(m: &DataManager) {
    tokio::time::timeout(T, m.wait_for_connection())
        .await
        .expect("connect timed out")
        .expect("connection failed");
}

/// Wait (bounded) until the manager's status is `want`.
pub async fn wait_status(m: &DataManager, want: pubsub::Status) {
    let mut status = m.status();
    tokio::time::timeout(T, status.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| panic!("not {want} within {T:?}: {}", *m.status().borrow()))
        .unwrap();
}

/// Wait for the connection attempt to end refused (CONNACK failure code, or HTTP
/// 401/403 on the WebSocket upgrade).
pub async fn refused(m: &DataManager) -> pubsub::StatusEvent {
    let ended = tokio::time::timeout(T, m.wait_for_connection())
        .await
        .expect("connect timed out")
        .expect_err("connected");
    assert_eq!(ended.status, pubsub::Status::ConnectionRefused, "{ended}");
    ended
}

/// The authorizer function: the Lambda event JSON in, the Lambda response JSON out;
/// token GOOD_TOKEN is allowed with the chat policy, anything else refused. A minimal
/// HTTP/1.1 server (one request per connection, `Connection: close`).
pub async fn serve_authorizer() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        break buf[end + 4..end + 4 + length].to_vec();
                    }
                };
                let body = String::from_utf8_lossy(&body);
                let answer = if body.contains(&format!("\"token\":\"{GOOD_TOKEN}\"")) {
                    format!(
                        r#"{{"isAuthenticated":true,"principalId":"tokenUser","policyDocuments":[{}],"disconnectAfterInSeconds":3600,"refreshAfterInSeconds":300}}"#,
                        json_string(POLICY_DOCUMENT)
                    )
                } else {
                    r#"{"isAuthenticated":false}"#.to_owned()
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
