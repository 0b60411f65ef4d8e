//! The iot-data HTTP client ([`pubsub::IotDataClient`]) against the broker in process: its
//! `http` listener (plain HTTP) and its TLS port (HTTPS, the broker's CA) serve the
//! iot-data API, SigV4-signed by the `[admin]` key (every operation) or by a
//! `[[credentials]]` key (Publish and the shadow API, authorized by its chat policy).

mod broker_support;

use std::time::{Duration, SystemTime};

use broker_support::*;
use pubsub::data::IotDataClient;
use pubsub::{
    Credentials, DataError, DataManager, MqttConnectOptions, PayloadFormat, ProtocolVersion,
    PublishOptions, PublishProperties, QoS,
};
use serde_json::json;

const ADMIN_KEY: &str = "AKIADATAHTTPADMIN001";
const ADMIN_SECRET: &str = "data-http-admin-secret-0123456789abcdef";

struct Broker {
    setup: Setup,
    running: broker::RunningBroker,
}

impl Broker {
    async fn start(tag: &str) -> Broker {
        Broker::start_with(tag, |_| {}).await
    }

    async fn start_with(tag: &str, adjust: impl FnOnce(&mut broker::Config)) -> Broker {
        let mut setup = setup(tag, true).await;
        adjust(&mut setup.config);
        setup.config.listeners.http = "127.0.0.1:0".into();
        setup.config.admin = Some(broker::config::Admin {
            access_key_id: ADMIN_KEY.into(),
            secret_access_key: ADMIN_SECRET.into(),
            metrics_auth: false,
        });
        let running = broker::start(setup.config.clone()).await.unwrap();
        Broker { setup, running }
    }

    /// A client of the `http` listener signing with `key`/`secret`.
    fn client(&self, key: &str, secret: &str, token: Option<&str>) -> IotDataClient {
        let url = format!("http://{}", self.running.address("http").unwrap());
        IotDataClient::new(
            &url,
            "us-east-1",
            Credentials::new(key, secret, token.map(str::to_owned), None, "test"),
        )
        .unwrap()
    }

    fn admin(&self) -> IotDataClient {
        self.client(ADMIN_KEY, ADMIN_SECRET, None)
    }

    /// A manager connected anonymously over plain MQTT (the dev-allow-all policy).
    async fn subscriber(&self, client_id: &str, version: ProtocolVersion) -> DataManager {
        let mqtt = no_reconnect().protocol(version);
        let m = DataManager::new(service(&self.setup, ports(&self.running), mqtt));
        m.connect_mqtt(client_id, true, &MqttConnectOptions::default(), |_| {})
            .unwrap();
        wait_connected(&m).await;
        m
    }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timed out")
}

fn refusal(result: Result<impl std::fmt::Debug, DataError>) -> (u16, String, String) {
    match result {
        Err(DataError::Service {
            status,
            error_type,
            message,
            ..
        }) => (status, error_type, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Publish over HTTPS (the TLS port, from the same ServiceConfiguration the MQTT
/// connections use, signed by the `[[credentials]]` key) to a topic with `/`, a space and
/// non-ASCII characters: an MQTT subscriber gets it on exactly that topic. Over MQTT 5,
/// the properties the REST API carries arrive too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_mqtt_subscribers_with_its_properties() {
    let b = Broker::start("data-publish").await;
    let config = service(&b.setup, ports(&b.running), no_reconnect());
    let https = IotDataClient::from_config(&config).unwrap();
    assert!(
        https.endpoint().starts_with("https://localhost:"),
        "{}",
        https.endpoint()
    );

    let m = b.subscriber("data-sub-311", ProtocolVersion::V311).await;
    let topic = "chat/room 1/grüße";
    let mut stream = within(m.subscribe_stream("chat/#", QoS::AtLeastOnce))
        .await
        .unwrap();
    within(https.publish(
        topic,
        "hello over https",
        QoS::AtLeastOnce,
        PublishOptions::new(),
    ))
    .await
    .unwrap();
    let got = within(stream.recv()).await.unwrap();
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        (topic, &b"hello over https"[..])
    );
    assert_eq!(got.qos, QoS::AtLeastOnce);
    m.disconnect_and_wait().await;

    let m5 = b.subscriber("data-sub-5", ProtocolVersion::V5).await;
    let mut stream = within(m5.subscribe_stream("chat/props", QoS::AtLeastOnce))
        .await
        .unwrap();
    let properties = PublishProperties::new()
        .user_property("k", "v1")
        .user_property("k", "v2")
        .content_type("text/plain")
        .payload_format(PayloadFormat::Utf8)
        .response_topic("chat/reply")
        .correlation_data(&b"\x00id-1"[..])
        .message_expiry_interval(120);
    within(https.publish(
        "chat/props",
        "with properties",
        QoS::AtMostOnce,
        PublishOptions::new().properties(properties.clone()),
    ))
    .await
    .unwrap();
    let got = within(stream.recv()).await.unwrap();
    assert_eq!(&got.payload[..], b"with properties");
    let mut received = got.properties.clone();
    let remaining = received.message_expiry_interval.take().unwrap();
    assert!((110..=120).contains(&remaining), "{remaining}");
    let mut expected = properties;
    expected.message_expiry_interval = None;
    assert_eq!(received, expected);
    m5.disconnect_and_wait().await;
}

/// Retain over HTTP, read it back (payload, QoS, user properties), list with paging,
/// and a topic without one: 404 `ResourceNotFoundException`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_get_and_list_with_paging() {
    let b = Broker::start("data-retained").await;
    let admin = b.admin();
    let topics = ["retained/a", "retained/b/c", "retained/d", "retained/e f"];
    for (i, topic) in topics.iter().enumerate() {
        let options = PublishOptions::new()
            .retain(true)
            .properties(PublishProperties::new().user_property("n", i.to_string()));
        within(admin.publish(topic, format!("payload {i}"), QoS::AtLeastOnce, options))
            .await
            .unwrap();
    }
    let before = SystemTime::now() - Duration::from_secs(60);
    let got = within(admin.get_retained_message("retained/b/c"))
        .await
        .unwrap();
    assert_eq!(got.topic, "retained/b/c");
    assert_eq!(&got.payload[..], b"payload 1");
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert_eq!(got.user_properties, vec![("n".to_owned(), "1".to_owned())]);
    assert!(got.last_modified_time.unwrap() > before);

    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = within(admin.list_retained_messages(token.as_deref(), Some(3)))
            .await
            .unwrap();
        pages += 1;
        assert!(page.retained_topics.len() <= 3, "{page:?}");
        for summary in &page.retained_topics {
            assert_eq!(summary.qos, QoS::AtLeastOnce);
            assert_eq!(summary.payload_size, 9);
            seen.push(summary.topic.clone());
        }
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 2);
    let mut expected: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(seen, expected);
    let all = within(admin.list_retained_messages(None, None))
        .await
        .unwrap();
    assert_eq!((all.retained_topics.len(), all.next_token), (4, None));

    let (status, error_type, message) =
        refusal(within(admin.get_retained_message("retained/none")).await);
    assert_eq!(
        (status, error_type.as_str()),
        (404, "ResourceNotFoundException")
    );
    assert!(message.contains("retained/none"), "{message}");
    let (status, error_type, _) =
        refusal(within(admin.list_retained_messages(None, Some(0))).await);
    assert_eq!(
        (status, error_type.as_str()),
        (400, "InvalidRequestException")
    );
}

/// The `[[credentials]]` key's chat policy allows Publish on `chat/*` only: elsewhere,
/// and on the shadow API, 403 `ForbiddenException`. A wrong secret: 403
/// `UnauthorizedException` on Publish, 401 `UnauthorizedException` on the shadow API (as
/// IoT Core documents each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_status_and_exception_name() {
    let b = Broker::start("data-refusals").await;
    let device = b.client(ACCESS_KEY, SECRET_KEY, None);
    within(device.publish("chat/ok", "fine", QoS::AtMostOnce, PublishOptions::new()))
        .await
        .unwrap();
    let (status, error_type, _) = refusal(
        within(device.publish("private/x", "no", QoS::AtMostOnce, PublishOptions::new())).await,
    );
    assert_eq!((status, error_type.as_str()), (403, "ForbiddenException"));
    let (status, error_type, _) = refusal(within(device.get_thing_shadow("lamp", None)).await);
    assert_eq!((status, error_type.as_str()), (403, "ForbiddenException"));

    let forged = b.client(ACCESS_KEY, "not-the-secret", None);
    let (status, error_type, message) = refusal(
        within(forged.publish("chat/ok", "x", QoS::AtMostOnce, PublishOptions::new())).await,
    );
    assert_eq!(
        (status, error_type.as_str()),
        (403, "UnauthorizedException")
    );
    assert!(message.contains("signature"), "{message}");
    let (status, error_type, _) = refusal(within(forged.get_thing_shadow("lamp", None)).await);
    assert_eq!(
        (status, error_type.as_str()),
        (401, "UnauthorizedException")
    );

    // Nothing listens there: a transport error, its cause kept.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = IotDataClient::new(
        &format!("http://127.0.0.1:{port}"),
        "us-east-1",
        Credentials::new(ADMIN_KEY, ADMIN_SECRET, None, None, "test"),
    )
    .unwrap();
    let e = within(nowhere.publish("chat/x", "x", QoS::AtMostOnce, PublishOptions::new()))
        .await
        .unwrap_err();
    assert!(matches!(e, DataError::Transport { .. }), "{e:?}");
    assert!(std::error::Error::source(&e).is_some());
}

/// Classic and named shadows: update, get, list named (paged), delete, then 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_round_trip() {
    let b = Broker::start("data-shadow").await;
    let admin = b.admin();
    let (status, error_type, _) = refusal(within(admin.get_thing_shadow("lamp", None)).await);
    assert_eq!(
        (status, error_type.as_str()),
        (404, "ResourceNotFoundException")
    );

    let accepted = within(admin.update_thing_shadow(
        "lamp",
        None,
        &json!({"state": {"desired": {"on": true}}}),
    ))
    .await
    .unwrap();
    assert_eq!(accepted["state"]["desired"]["on"], json!(true));
    assert_eq!(accepted["version"], json!(1));
    for name in ["cfg-a", "cfg-b", "cfg-c"] {
        within(admin.update_thing_shadow(
            "lamp",
            Some(name),
            &json!({"state": {"reported": {"name": name}}}),
        ))
        .await
        .unwrap();
    }
    let classic = within(admin.get_thing_shadow("lamp", None)).await.unwrap();
    assert_eq!(classic["state"]["delta"]["on"], json!(true));
    let named = within(admin.get_thing_shadow("lamp", Some("cfg-b")))
        .await
        .unwrap();
    assert_eq!(named["state"]["reported"]["name"], json!("cfg-b"));

    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = within(admin.list_named_shadows_for_thing("lamp", token.as_deref(), Some(2)))
            .await
            .unwrap();
        assert!(page.results.len() <= 2, "{page:?}");
        assert!(page.timestamp.is_some());
        names.extend(page.results);
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
        assert!(names.len() <= 3, "paging does not end");
    }
    names.sort();
    assert_eq!(names, ["cfg-a", "cfg-b", "cfg-c"]);

    let (status, error_type, _) = refusal(
        within(admin.update_thing_shadow(
            "lamp",
            None,
            &json!({"state": {"desired": {"on": false}}, "version": 99}),
        ))
        .await,
    );
    assert_eq!((status, error_type.as_str()), (409, "ConflictException"));

    let deleted = within(admin.delete_thing_shadow("lamp", Some("cfg-a")))
        .await
        .unwrap();
    assert!(deleted["version"].is_u64(), "{deleted}");
    within(admin.delete_thing_shadow("lamp", None))
        .await
        .unwrap();
    let (status, error_type, _) = refusal(within(admin.get_thing_shadow("lamp", None)).await);
    assert_eq!(
        (status, error_type.as_str()),
        (404, "ResourceNotFoundException")
    );
    let (status, _, _) = refusal(within(admin.delete_thing_shadow("lamp", Some("cfg-a"))).await);
    assert_eq!(status, 404);
    let left = within(admin.list_named_shadows_for_thing("lamp", None, None))
        .await
        .unwrap();
    assert_eq!(left.results, ["cfg-b", "cfg-c"]);
}

/// Cognito temporary credentials (the broker's identity pool, a guest identity whose role
/// allows the chat policy): the client sends and signs their session token, and the
/// broker checks it is the one issued with the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cognito_credentials_sign_with_their_session_token() {
    use pubsub::{CognitoCredentialsProvider, ProvideCredentials};
    let b = Broker::start_with("data-cognito", |config| {
        config.identity_pools = vec![broker::config::IdentityPoolConfig {
            name: "data-pool".into(),
            allow_unauthenticated: true,
            credentials_ttl: Duration::from_secs(3600),
            unauthenticated_role_policy: Some(POLICY_DOCUMENT.into()),
            ..Default::default()
        }];
    })
    .await;
    let http = format!("http://{}", b.running.address("http").unwrap());
    let pools = b
        .running
        .control(&broker::control::ApiRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &[(
                "x-amz-target",
                "AWSCognitoIdentityService.ListIdentityPools",
            )],
            body: br#"{"MaxResults": 10}"#,
        })
        .await;
    let pools: serde_json::Value = serde_json::from_str(&pools.body).unwrap();
    let pool = pools["IdentityPools"][0]["IdentityPoolId"]
        .as_str()
        .unwrap();
    let provider = CognitoCredentialsProvider::builder(pool, "us-east-1")
        .endpoint(format!("{http}/"))
        .build()
        .unwrap();
    let temporary = within(provider.provide_credentials()).await.unwrap();
    let token = temporary.session_token().unwrap().to_owned();

    let app = IotDataClient::new(&http, "us-east-1", provider).unwrap();
    within(app.publish("chat/guest", "hi", QoS::AtMostOnce, PublishOptions::new()))
        .await
        .unwrap();
    let (status, error_type, _) = refusal(
        within(app.publish(
            "private/guest",
            "no",
            QoS::AtMostOnce,
            PublishOptions::new(),
        ))
        .await,
    );
    assert_eq!((status, error_type.as_str()), (403, "ForbiddenException"));

    let key = temporary.access_key_id();
    let secret = temporary.secret_access_key();
    let no_token = b.client(key, secret, None);
    let wrong_token = b.client(key, secret, Some("not-the-issued-token"));
    for client in [no_token, wrong_token] {
        let (status, error_type, message) = refusal(
            within(client.publish("chat/guest", "x", QoS::AtMostOnce, PublishOptions::new())).await,
        );
        assert_eq!(
            (status, error_type.as_str()),
            (403, "UnauthorizedException")
        );
        assert!(message.contains("session token"), "{message}");
    }
    let again = b.client(key, secret, Some(&token));
    within(again.publish(
        "chat/guest",
        "again",
        QoS::AtMostOnce,
        PublishOptions::new(),
    ))
    .await
    .unwrap();
}
