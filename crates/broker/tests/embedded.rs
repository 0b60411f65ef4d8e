//! The broker through its public surface, as a program that embeds it uses it: start on an
//! OS-assigned loopback port, MQTT over a plain TCP socket (our codec on the client side),
//! control-plane requests in process and offline on the same data directory, shutdown.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt::{Ack, Connect, Packet, Protocol, Publish, QoS, ReasonCode, Subscribe, SubscribeFilter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use broker::control::{answer_local, Answer, ApiRequest};
use broker::Config;

const POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/allowed/*"}]}"#;

fn config(dir: &std::path::Path) -> Config {
    let text = format!(
        "data_dir = {:?}\nin_memory = false\n[listeners]\nmqtt = \"127.0.0.1:0\"\nmqtts = \"\"\ntls = \"\"\nhttp = \"\"\n[limits]\nconnects_per_client_id_per_sec = 0\n[anonymous]\npolicies = [\"dev-allow-all\"]\n",
        dir.display().to_string()
    );
    Config::parse(&text).unwrap()
}

struct Client {
    stream: TcpStream,
    input: BytesMut,
}

impl Client {
    /// A connection that sent CONNECT (clean session) and read the CONNACK's code.
    async fn try_connect(address: std::net::SocketAddr, client_id: &str) -> (Client, ReasonCode) {
        let stream = TcpStream::connect(address).await.unwrap();
        let mut client = Client {
            stream,
            input: BytesMut::new(),
        };
        client
            .send(Packet::Connect(Connect {
                protocol: Protocol::V311,
                keep_alive: 30,
                client_id: client_id.into(),
                clean_session: true,
                will: None,
                username: None,
                password: None,
                properties: Default::default(),
            }))
            .await;
        match client.receive().await {
            Some(Packet::ConnAck(ack)) => (client, ack.code),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn connect(address: std::net::SocketAddr, client_id: &str) -> Client {
        let (client, code) = Client::try_connect(address, client_id).await;
        assert_eq!(code, ReasonCode::SUCCESS);
        client
    }

    async fn send(&mut self, packet: Packet) {
        let mut buf = BytesMut::new();
        mqtt::encode(&packet, &mut buf, Protocol::V311).unwrap();
        self.stream.write_all(&buf).await.unwrap();
    }

    /// The next packet; `None` once the broker closed the connection.
    async fn receive(&mut self) -> Option<Packet> {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(packet) =
                    mqtt::decode(&mut self.input, 1 << 20, Protocol::V311).unwrap()
                {
                    return Some(packet);
                }
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .expect("the broker answered within 5 s")
    }
}

fn request<'a>(method: &'a str, path: &'a str, body: &'a [u8]) -> ApiRequest<'a> {
    ApiRequest {
        method,
        path,
        query: "",
        headers: &[],
        body,
    }
}

fn json(answer: &Answer) -> serde_json::Value {
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_broker_routes_answers_its_control_plane_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let running = broker::start(config(dir.path())).await.unwrap();
    let address = running.address("mqtt").expect("mqtt listener bound");

    let mut subscriber = Client::connect(address, "sub").await;
    subscriber
        .send(Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![SubscribeFilter::new("t/+", QoS::AtLeastOnce)],
            properties: Default::default(),
        }))
        .await;
    assert!(matches!(
        subscriber.receive().await,
        Some(Packet::SubAck(_))
    ));
    let mut publisher = Client::connect(address, "pub").await;
    publisher
        .send(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t/1".into(),
            pkid: 7,
            payload: Bytes::from_static(b"hi"),
            properties: Default::default(),
        }))
        .await;
    assert_eq!(publisher.receive().await, Some(Packet::PubAck(Ack::new(7))));
    match subscriber.receive().await {
        Some(Packet::Publish(message)) => {
            assert_eq!(
                (message.topic.as_str(), &message.payload[..]),
                ("t/1", &b"hi"[..])
            );
        }
        other => panic!("expected the PUBLISH, got {other:?}"),
    }

    // The control plane in process: a policy made and asked about.
    let created = running
        .control(&request(
            "POST",
            "/policies/app",
            serde_json::json!({ "policyDocument": POLICY })
                .to_string()
                .as_bytes(),
        ))
        .await;
    assert_eq!(json(&created)["policyName"], "app");
    let question = serde_json::json!({
        "principal": "someone",
        "policyNamesToAdd": ["app"],
        "authInfos": [{"actionType": "PUBLISH", "resources": ["arn:aws:iot:us-east-1:123456789012:topic/allowed/x"]}],
    })
    .to_string();
    let asked = running
        .control(&request("POST", "/test-authorization", question.as_bytes()))
        .await;
    assert_eq!(json(&asked)["authResults"][0]["authDecision"], "ALLOWED");

    running.shutdown().await;
    assert_eq!(
        subscriber.receive().await,
        None,
        "shutdown closes connections"
    );

    // Offline, the same operations see the same data directory.
    let listed = answer_local(config(dir.path()), &request("GET", "/policies", b"")).await;
    let names: Vec<String> = json(&listed)["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|policy| policy["policyName"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"app".to_owned()), "{names:?}");
    let publish = answer_local(
        config(dir.path()),
        &request("POST", "/topics/t%2F1", b"offline"),
    )
    .await;
    assert_eq!(publish.status, 503, "publish needs a running broker");
}

/// A change another process makes to the registry (here `answer_local`, as `pubsub iot`
/// offline does) reaches the running broker through its file watcher: the anonymous
/// principal starts with no policy, is refused, and is admitted once a policy is attached
/// on disk — with no API call to the running broker, and long before the periodic look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_changes_by_another_process_are_picked_up_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = {:?}\nin_memory = true\nsession_expiry = \"1h\"\n[listeners]\nmqtt = \"127.0.0.1:0\"\nmqtts = \"\"\ntls = \"\"\nhttp = \"\"\n[limits]\nconnects_per_client_id_per_sec = 0\n[anonymous]\npolicies = []\n",
        dir.path().display().to_string()
    );
    let config = Config::parse(&text).unwrap();
    let running = broker::start(config.clone()).await.unwrap();
    let address = running.address("mqtt").unwrap();
    let connack =
        |client_id: &'static str| async move { Client::try_connect(address, client_id).await.1 };
    assert_eq!(connack("before").await, ReasonCode::NOT_AUTHORIZED);

    let document = serde_json::json!({
        "policyDocument": r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}"#
    })
    .to_string();
    let created = answer_local(
        config.clone(),
        &request("POST", "/policies/open", document.as_bytes()),
    )
    .await;
    json(&created);
    let attached = answer_local(
        config.clone(),
        &request(
            "PUT",
            "/target-policies/open",
            br#"{"target": "anonymous"}"#,
        ),
    )
    .await;
    json(&attached);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        if connack("after").await == ReasonCode::SUCCESS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the running broker did not see the attachment within 3 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await;
}
