//! The README's SDK code is compiled: every block between `// README: <name>` and
//! `// README: end` in `examples/shadow.rs` (the "SDK shadow API" examples) and
//! `examples/iot_data.rs` ("iot-data over HTTPS"), both also run against a broker by
//! hand, and in this file (the "The SDK", "MQTT 5 in the SDK and the
//! CLI" and "SDK: signing a user in" snippets, in the functions below) must appear
//! verbatim in the README, less the block's common indentation. The functions are only
//! compiled: they need AWS or a broker with certificates to run.
#![allow(dead_code)]

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

async fn the_sdk() -> Result {
    // README: sdk
    use pubsub::{DataManager, Endpoint, IdentityStore, QoS, ServiceConfiguration};

    let store = IdentityStore::open(IdentityStore::default_location())?;
    let certificate_id =
        store.import_pem(&std::fs::read("device.pem")?, &std::fs::read("device.key")?)?;
    let endpoint = Endpoint::parse("xxxx-ats.iot.us-east-1.amazonaws.com")?;
    // Local broker: .ca_file(".pubsub/tls/ca.pem").certificate_port(8883)
    let config = ServiceConfiguration::new("us-east-1", endpoint).identity_store(store);
    DataManager::register(config, "MyKey");
    let iot = DataManager::get("MyKey")?;

    // 8883, mutual TLS. Every status change comes with why (StatusEvent: status, reason,
    // session_present), e.g. "connection refused: CONNACK 0x87 Not authorized".
    iot.connect("client-1", true, &certificate_id, |e| println!("{e}"))?;
    // iot.connect_using_alpn(…)                       443, ALPN x-amzn-mqtt-ca
    // iot.connect_using_websocket(id, clean, cb)      SigV4, URL signed afresh on every attempt
    // iot.connect_using_websocket_custom_auth(id, clean, &CustomAuth::new(authorizer, key, token), cb)
    // iot.connect_using_custom_auth(id, clean, &CustomAuth::new(…).signature(sig), cb)  ALPN mqtt
    // iot.connect_using_custom_auth_provider(…)       a fresh token for every (re)connect
    // iot.connect_using_presigned_url(…)              a URL your backend signs, per attempt
    // iot.connect_mqtt(id, clean, &MqttConnectOptions::new().tls(true), cb)  any MQTT broker

    // Callbacks run on the manager's callback thread, in order, never on the connection.
    iot.subscribe("myTopic", QoS::AtMostOnce, |m| {
        println!("{}: {}", m.topic, m.payload_str())
    })?;
    // Submitted, or while offline Queued / Rejected(why); a bad topic is an Err.
    iot.try_publish("myTopic", "Hello to all subscribers!", QoS::AtMostOnce)?;
    iot.unsubscribe_topic("myTopic")?;
    iot.disconnect()?;
    // README: end
    Ok(())
}

async fn the_sdk_async(iot: pubsub::DataManager) -> Result {
    use pubsub::QoS;
    // README: sdk-async
    let connack = iot.wait_for_connection().await?; // Err(StatusEvent): why the attempt failed
    let mut messages = iot
        .subscribe_stream("sensors/+/temp", QoS::AtLeastOnce)
        .await?;
    // QoS 1: Acknowledged on PUBACK (Queued / Rejected(why) while offline).
    let outcome = iot
        .publish("myTopic", b"bytes".to_vec(), QoS::AtLeastOnce)
        .await?;
    let mut status = iot.status(); // watch::Receiver<StatusEvent>
    iot.disconnect_and_wait().await;
    // README: end
    println!("{connack:?} {outcome:?} {:?}", status.borrow_and_update());
    let _ = messages.recv().await;
    Ok(())
}

async fn mqtt5(config: pubsub::ServiceConfiguration, certificate_id: String) -> Result {
    use pubsub::DataManager;
    use std::time::Duration;
    // README: mqtt5
    use pubsub::{MqttConfiguration, ProtocolVersion, PublishOptions, PublishProperties, QoS};

    let config =
        config.mqtt_configuration(MqttConfiguration::default().protocol(ProtocolVersion::V5));
    let iot = DataManager::new(config);
    iot.connect("client-1", true, &certificate_id, |_| {})?;
    let connack = iot.wait_for_connection().await?;
    println!("{connack:?}"); // Receive Maximum, Assigned Client Identifier, …

    let props = PublishProperties::new()
        .user_property("source", "sensor-7") // order kept, keys may repeat
        .content_type("application/json")
        .message_expiry_interval(60);
    let options = PublishOptions::new().properties(props);
    match iot
        .publish_with("sensors/7", r#"{"t":21.5}"#, QoS::AtLeastOnce, options)
        .await
    {
        Err(pubsub::Error::PublishRefused { reason, .. }) => eprintln!("{reason}"), // "0x87 Not authorized"
        other => {
            other?;
        }
    }
    // SUBACK 0x87 → Error::SubscribeRefused
    let mut stream = iot.subscribe_stream("sensors/#", QoS::AtLeastOnce).await?;
    if let Some(m) = stream.recv().await {
        println!("{:?}", m.properties.user_properties);
    }

    // Request/response: subscribes to the response topic, publishes with Response Topic and
    // fresh Correlation Data, resolves with the reply carrying the same Correlation Data.
    let reply_to = "svc/time/reply/client-1";
    let reply = iot
        .request("svc/time", "now?", reply_to, Duration::from_secs(5))
        .await?;
    // README: end
    println!("{}", reply.payload_str());
    Ok(())
}

async fn signing_a_user_in() -> Result {
    // README: user-pool
    use pubsub::{DataManager, Endpoint, ServiceConfiguration, UserPoolCredentialsProvider};

    let credentials = UserPoolCredentialsProvider::builder(
        "us-east-1_AbCdEf123",                            // user pool id
        "3n4b5urk1ft4fl3mg5e62d9ado",                     // app client id (no secret)
        "us-east-1:11111111-2222-3333-4444-555555555555", // identity pool id
        "alice",
        "Correct-Horse-1",
    )
    .endpoint("http://127.0.0.1:8088/") // the broker's http listener serves both services; omit for AWS
    .build()?;
    // Attach IoT policies to this id.
    let identity_id = credentials.identity_id().await?;
    // `ws = "127.0.0.1:8083"` under [listeners]; on AWS, wss://<prefix>-ats.iot.<region>.amazonaws.com/mqtt
    let config =
        ServiceConfiguration::new("us-east-1", Endpoint::parse("ws://127.0.0.1:8083/mqtt")?)
            .credentials_provider(credentials);
    let iot = DataManager::new(config);
    iot.connect_using_websocket("alice-phone", true, |event| println!("{event}"))?;
    // README: end
    println!("{identity_id}");
    Ok(())
}

/// The marked blocks of `source`, each without its lines' common indentation.
fn blocks(source: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in source.lines() {
        match (line.trim(), current.as_mut()) {
            ("// README: end", Some(lines)) => {
                blocks.push(dedent(lines));
                current = None;
            }
            (marker, None) if marker.starts_with("// README: ") => current = Some(Vec::new()),
            (_, Some(lines)) => lines.push(line),
            _ => {}
        }
    }
    assert!(current.is_none(), "unterminated README block");
    blocks
}

fn dedent(lines: &[&str]) -> String {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn readme_shows_the_compiled_sdk_code_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    for (file, count) in [
        ("examples/shadow.rs", 2),
        ("examples/iot_data.rs", 1),
        ("tests/readme.rs", 4),
    ] {
        let source = std::fs::read_to_string(root.join(file)).unwrap();
        let blocks = blocks(&source);
        assert_eq!(blocks.len(), count, "README blocks in {file}");
        for block in blocks {
            assert!(
                readme.contains(&block),
                "README.md lacks this block of {file}:\n{block}"
            );
        }
    }
}
