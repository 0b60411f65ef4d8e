//! `pubsub demo`: the whole product on one screen. An embedded broker (in process, free
//! loopback ports, temporary data dir), an authorizer function served in process, and six
//! SDK clients — one per connection method — chatting live on `chat/...`; then a device
//! shadow: the web app sets `desired` over HTTP (iot-data, SigV4 with its Cognito
//! credentials), the device gets the delta and reports over MQTT (the SDK's shadow API),
//! the web app sees the documents; then one client publishes where its policy does not
//! allow it, the broker closes its connection, and the demo shows why (the broker's own
//! policy evaluation) and how the SDK reconnects.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use broker::config::{
    Admin, Anonymous, AuthorizerConfig, CertificateConfig, CertificateStatus, IdentityPoolConfig,
    Listeners, PolicyConfig,
};
use broker::control::ApiRequest;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use pubsub_sdk::backoff::BackoffConfig;
use pubsub_sdk::shadow::{ShadowDocument, ShadowStream};
use pubsub_sdk::{
    CognitoCredentialsProvider, CustomAuth, DataManager, Endpoint, IdentityStore,
    MqttConfiguration, MqttConnectOptions, ProvideCredentials, QoS, ServiceConfiguration, Status,
    StatusEvent,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{encode_segment, read_answer, ApiClient};

const POLICY: &str = "myIOTPolicy";
const POLICY_DOCUMENT: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    { "Effect": "Allow", "Action": "iot:Connect",
      "Resource": "arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}" },
    { "Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
      "Resource": "arn:aws:iot:us-east-1:123456789012:topic/chat/*" },
    { "Effect": "Allow", "Action": "iot:Subscribe",
      "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/chat/*" },
    { "Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
      "Resource": "arn:aws:iot:us-east-1:123456789012:topic/$aws/things/${iot:ClientId}/shadow/*" },
    { "Effect": "Allow", "Action": "iot:Subscribe",
      "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/things/${iot:ClientId}/shadow/*" },
    { "Effect": "Allow", "Action": ["iot:GetThingShadow", "iot:UpdateThingShadow"],
      "Resource": "arn:aws:iot:us-east-1:123456789012:thing/device" },
    { "Effect": "Allow", "Action": "iot:Receive",
      "Resource": "arn:aws:iot:us-east-1:123456789012:topic/$aws/things/device/shadow/update/documents" },
    { "Effect": "Allow", "Action": "iot:Subscribe",
      "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/things/device/shadow/update/documents" }
  ]
}"#;
/// The thing whose shadow the demo shows: the `device` client's (its client id is its
/// thing name, which the policy's `${iot:ClientId}` shadow statements rely on).
const THING: &str = "device";
/// How long any one step of the shadow scene may take before the demo gives up.
const SHADOW_TIMEOUT: Duration = Duration::from_secs(5);
const AUTHORIZER: &str = "demo-authorizer";
const TOKEN_KEY: &str = "x-demo-token";
const TOKEN: &str = "demo-token";

pub fn run() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let dir = std::env::temp_dir().join(format!(
        "pubsub-demo-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let result = runtime.block_on(demo(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// One request to the embedded broker's control plane (in process, no signature): its
/// JSON answer, or the error `"<kind> (HTTP <status>): <message>"`.
async fn control(
    running: &broker::RunningBroker,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let body = body.to_string();
    let answer = running
        .control(&ApiRequest {
            method,
            path,
            query: "",
            headers,
            body: body.as_bytes(),
        })
        .await;
    let value: serde_json::Value = if answer.body.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(&answer.body)
            .with_context(|| format!("answer is not JSON: {}", answer.body))?
    };
    if !(200..300).contains(&answer.status) {
        bail!(
            "{} (HTTP {}): {}",
            answer.error_kind.unwrap_or("error"),
            answer.status,
            value["message"].as_str().unwrap_or(&answer.body)
        );
    }
    Ok(value)
}

/// Seconds since the demo started, for the left column.
fn stamp(t0: Instant) -> String {
    format!("{:6.2}s", t0.elapsed().as_secs_f64())
}

struct Client {
    name: &'static str,
    method: &'static str,
    port: u16,
    iot: DataManager,
    sent: AtomicU64,
    /// Payloads received, in order.
    received: Arc<Mutex<Vec<String>>>,
}

impl Client {
    fn has(&self, payload: &str) -> bool {
        self.received.lock().unwrap().iter().any(|p| p == payload)
    }
}

async fn demo(dir: &Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    println!(
        "PubSub demo: an embedded AWS-IoT-Core-style broker and the SDK, every connection method\n"
    );

    // --- the authorizer function (IoT Core's Lambda, here a local HTTP endpoint) ---
    let authorizer_addr = serve_authorizer().await?;

    // --- device certificates, issued by the broker's device CA before it starts ---
    let mut certificates = Vec::new();
    let identities = IdentityStore::open(dir.join("identities"))?;
    let mut cert_ids = BTreeMap::new();
    for name in ["backend", "device"] {
        let issued = broker::pki::issue_device_certificate(dir, name)
            .map_err(|e| anyhow!("issuing a device certificate: {e}"))?;
        let pem_file = dir.join(format!("{name}.pem"));
        std::fs::write(&pem_file, &issued.certificate_pem)?;
        certificates.push(CertificateConfig {
            pem_file,
            status: CertificateStatus::Active,
            policies: vec![POLICY.into()],
        });
        let id = identities.import_pem(
            issued.certificate_pem.as_bytes(),
            issued.private_key_pem.as_bytes(),
        )?;
        cert_ids.insert(name, id);
    }

    // The control plane's admin key (Cognito's GetId / GetCredentialsForIdentity are
    // unsigned; the admin key is what an operator would attach policies with).
    let admin = Admin {
        access_key_id: format!("AKIADEMO{:012X}", fastrand::u64(..1 << 48)),
        secret_access_key: (0..40).map(|_| fastrand::alphanumeric()).collect(),
        metrics_auth: false,
    };

    // --- the broker ---
    let mut config = broker::Config {
        region: "us-east-1".into(),
        data_dir: dir.to_path_buf(),
        in_memory: true,
        listeners: Listeners {
            mqtt: "127.0.0.1:0".into(),
            mqtts: "127.0.0.1:0".into(),
            tls: "127.0.0.1:0".into(),
            ws: String::new(),
            http: "127.0.0.1:0".into(),
        },
        admin: Some(admin),
        // The web app's guest identity may do what the pool's unauthenticated role allows,
        // as on AWS (an IoT policy attached to a guest identity is not consulted): the
        // role's policy is the same document as the devices' IoT policy.
        identity_pools: vec![IdentityPoolConfig {
            name: "app-pool".into(),
            allow_unauthenticated: true,
            credentials_ttl: Duration::from_secs(3600),
            unauthenticated_role_policy: Some(POLICY_DOCUMENT.into()),
            ..IdentityPoolConfig::default()
        }],
        anonymous: Some(Anonymous {
            policies: vec![POLICY.into()],
        }),
        policies: vec![PolicyConfig {
            name: POLICY.into(),
            document: Some(POLICY_DOCUMENT.into()),
            document_file: None,
        }],
        certificates,
        authorizers: vec![AuthorizerConfig {
            name: AUTHORIZER.into(),
            function_url: format!("http://{authorizer_addr}/authorize"),
            token_key_name: TOKEN_KEY.into(),
            signing_disabled: true,
            token_signing_public_keys: BTreeMap::new(),
            status: "ACTIVE".into(),
        }],
        ..broker::Config::default()
    };
    config.limits.connects_per_client_id_per_sec = 0;
    let account_id = config.account_id.clone();
    let running = broker::start(config)
        .await
        .map_err(|e| anyhow!("broker: {e}"))?;
    let port = |name: &str| -> anyhow::Result<u16> {
        Ok(running
            .address(name)
            .ok_or_else(|| anyhow!("listener {name} did not start"))?
            .port())
    };
    let (mqtt_port, mqtts_port, tls_port) = (port("mqtt")?, port("mqtts")?, port("tls")?);
    let http_port = port("http")?;

    // --- the seed's Cognito flow: the app gets an identity id and temporary credentials
    // from the identity pool, whose unauthenticated role decides what it may do ---
    let pools = control(
        &running,
        "POST",
        "/",
        &[(
            "x-amz-target",
            "AWSCognitoIdentityService.ListIdentityPools",
        )],
        serde_json::json!({ "MaxResults": 60 }),
    )
    .await?;
    let pool_id = pools["IdentityPools"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|pool| pool["IdentityPoolName"] == "app-pool")
        .and_then(|pool| pool["IdentityPoolId"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the identity pool was not created"))?;
    let cognito = CognitoCredentialsProvider::builder(pool_id.clone(), "us-east-1")
        .endpoint(format!("http://127.0.0.1:{http_port}/"))
        .build()?;
    let identity_id = cognito.identity_id().await?;
    // The web app's own temporary credentials sign its iot-data calls (the session token
    // included), so its policy decides them as it decides its MQTT connection.
    let app_credentials = cognito
        .provide_credentials()
        .await
        .context("the web app's Cognito credentials")?;
    let app_http = ApiClient::with_credentials(
        &format!("http://127.0.0.1:{http_port}"),
        "us-east-1",
        app_credentials,
    );
    println!("broker      mqtt :{mqtt_port}   mqtts :{mqtts_port}   tls :{tls_port} (plays IoT Core's 443)   http :{http_port} (Cognito, iot-data)");
    println!("policy      {POLICY}: connect as client/${{iot:ClientId}}, publish/receive topic chat/*, subscribe chat/*;");
    println!("            publish/receive/subscribe $aws/things/${{iot:ClientId}}/shadow/*; Get/UpdateThingShadow");
    println!("            on thing/{THING} and receive/subscribe its shadow's update/documents");
    println!("identities  certificates backend + device; Cognito pool {pool_id} gave the web app");
    println!("            guest identity {identity_id} and temporary credentials (SigV4), allowed");
    println!(
        "            what the pool's unauthenticated role allows (the same document as {POLICY});"
    );
    println!("            authorizer {AUTHORIZER} at http://{authorizer_addr}/authorize (token {TOKEN:?}, signing disabled)");
    println!();

    // --- the SDK side ---
    let base = ServiceConfiguration::new("us-east-1", Endpoint::parse("localhost")?)
        .ca_file(dir.join("tls").join("ca.pem"))
        .identity_store(identities)
        .certificate_port(mqtts_port)
        .alpn_port(tls_port)
        .websocket_port(tls_port)
        .custom_auth_port(tls_port)
        .mqtt_port(mqtt_port)
        .credentials_provider(cognito.clone())
        .mqtt_configuration({
            let mut m = MqttConfiguration::default();
            m.backoff = BackoffConfig::default().base(Duration::from_millis(500));
            m
        });

    let specs: [(&str, &str, u16); 6] = [
        ("backend", "certificate, mutual TLS (mqtts)", mqtts_port),
        ("device", "certificate, ALPN x-amzn-mqtt-ca", tls_port),
        ("web-app", "SigV4 WebSocket (Cognito id)", tls_port),
        ("token-app", "custom authorizer, WebSocket", tls_port),
        ("token-dev", "custom authorizer, ALPN mqtt", tls_port),
        ("monitor", "plain MQTT (anonymous)", mqtt_port),
    ];
    println!("connecting (status changes as the SDK reports them)");
    let mut clients = Vec::new();
    for (name, method, port) in specs {
        let iot = DataManager::new(base.clone());
        let callback = move |s: StatusEvent| println!("{}  {name:<10} {:?}", stamp(t0), s.status);
        match name {
            "backend" => iot.connect(name, true, &cert_ids["backend"], callback)?,
            "device" => iot.connect_using_alpn(name, true, &cert_ids["device"], callback)?,
            "web-app" => iot.connect_using_websocket(name, true, callback)?,
            "token-app" => iot.connect_using_websocket_custom_auth(
                name,
                true,
                &CustomAuth::new(AUTHORIZER, TOKEN_KEY, TOKEN),
                callback,
            )?,
            "token-dev" => iot.connect_using_custom_auth(
                name,
                true,
                &CustomAuth::new(AUTHORIZER, TOKEN_KEY, TOKEN),
                callback,
            )?,
            _ => iot.connect_mqtt(name, true, &MqttConnectOptions::default(), callback)?,
        }
        match tokio::time::timeout(Duration::from_secs(10), iot.wait_for_connection()).await {
            Ok(Ok(_)) => {}
            Ok(Err(event)) => {
                running.shutdown().await;
                return Err(anyhow!("{name} ({method}) could not connect: {event}"));
            }
            Err(_) => {
                running.shutdown().await;
                return Err(anyhow!("{name} ({method}) could not connect within 10 s"));
            }
        }
        clients.push(Arc::new(Client {
            name,
            method,
            port,
            iot,
            sent: AtomicU64::new(0),
            received: Arc::new(Mutex::new(Vec::new())),
        }));
    }

    // Subscriptions: the backend and the monitor see everything under chat/, every app the
    // room and its own inbox chat/<name>.
    for c in &clients {
        let filters: Vec<String> = match c.name {
            "backend" | "monitor" => vec!["chat/#".into()],
            n => vec!["chat/room".into(), format!("chat/{n}")],
        };
        for f in filters {
            let mut stream = c
                .iot
                .subscribe_stream(&f, QoS::AtLeastOnce)
                .await
                .map_err(|e| anyhow!("{} subscribe {f}: {e}", c.name))?;
            let log = c.received.clone();
            tokio::spawn(async move {
                while let Some(m) = stream.recv().await {
                    log.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&m.payload).into_owned());
                }
            });
        }
    }
    println!(
        "{}  all six subscribed (backend, monitor: chat/#; apps: chat/room + chat/<own name>)\n",
        stamp(t0)
    );

    println!("chat (QoS 1; \"got it\" lists who received the message)");
    let apps = ["device", "web-app", "token-app", "token-dev"];
    for &app in &apps {
        let text = format!("hi, {app} here");
        say(&clients, t0, app, "chat/room", &text).await?;
    }
    for &app in &apps {
        let text = format!("welcome {app}, {} in the room", apps.len());
        say(&clients, t0, "backend", &format!("chat/{app}"), &text).await?;
    }
    println!();

    // --- a device shadow: the app over HTTP, the device over MQTT ---
    println!("device shadow (thing {THING:?}: web-app calls iot-data over HTTP, SigV4-signed with its Cognito");
    println!("               credentials; {THING} uses $aws/things/{THING}/shadow/… over MQTT, the SDK's shadow API)");
    if let Err(error) = shadow_scene(&clients, t0, &app_http).await {
        for c in &clients {
            c.iot.disconnect_and_wait().await;
        }
        running.shutdown().await;
        return Err(error.context("device shadow"));
    }
    println!();

    // --- a publish the policy does not allow ---
    println!("refused (web-app publishes to admin/x, outside chat/*)");
    let web = clients
        .iter()
        .find(|c| c.name == "web-app")
        .expect("web-app");
    let mut status = web.iot.status();
    status.borrow_and_update();
    println!(
        "{}  web-app    → admin/x    \"let me in\" (QoS 0)",
        stamp(t0)
    );
    web.iot
        .publish("admin/x", "let me in", QoS::AtMostOnce)
        .await
        .map_err(|e| anyhow!("web-app publish: {e}"))?;
    web.sent.fetch_add(1, Ordering::Relaxed);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if status.changed().await.is_err() {
                return None;
            }
            let s = status.borrow_and_update().status;
            if s != Status::Connected {
                return Some(s);
            }
        }
    })
    .await
    .ok()
    .flatten();
    if closed.is_none() {
        println!(
            "{}  web-app    (unexpected: the connection stayed open)",
            stamp(t0)
        );
    }
    let resource = iot::resource_arn(
        "us-east-1",
        &account_id,
        iot::ResourceKind::Topic,
        "admin/x",
    );
    let answer = control(
        &running,
        "POST",
        "/test-authorization",
        &[],
        serde_json::json!({
            "principal": identity_id,
            "clientId": "web-app",
            "authInfos": [{ "actionType": "iot:Publish", "resources": [resource] }],
        }),
    )
    .await
    .context("test-authorization")?;
    let result = &answer["authResults"][0];
    println!(
        "          the broker closed the connection. Why, from its policy evaluation:\n          {} — {}",
        result["authDecision"].as_str().unwrap_or("?"),
        result["reason"].as_str().unwrap_or("?")
    );
    // The SDK reconnects on its own (back-off), re-subscribes, and the app carries on.
    let back = tokio::time::timeout(Duration::from_secs(8), async {
        while *status.borrow_and_update() != Status::Connected {
            if status.changed().await.is_err() {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    if back {
        // The session was clean: the SDK re-subscribes; wait for that before talking again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        say(&clients, t0, "web-app", "chat/room", "web-app is back").await?;
    } else {
        println!("{}  web-app    did not reconnect", stamp(t0));
    }
    println!();

    for c in &clients {
        c.iot.disconnect_and_wait().await;
    }
    running.shutdown().await;
    println!();

    // --- summary ---
    println!("summary");
    println!(
        "  {:<34} {:<10} {:>6} {:>5} {:>9}",
        "method", "client", "port", "sent", "received"
    );
    for c in &clients {
        println!(
            "  {:<34} {:<10} {:>6} {:>5} {:>9}",
            c.method,
            c.name,
            c.port,
            c.sent.load(Ordering::Relaxed),
            c.received.lock().unwrap().len()
        );
    }
    println!(
        "\ndone in {:.1} s: six connection methods, a device shadow over HTTP and MQTT, one refused\npublish explained, broker stopped.",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What the device's shadow holds in `desired` and `reported`: the SDK's typed helpers
/// (de)serialize it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Light {
    color: String,
}

/// The shadow scene, one line per step: web-app sets `desired` over HTTP, the device gets
/// the delta and reports over MQTT, web-app sees the documents and reads the shadow back
/// over HTTP, then is refused another thing's shadow by its policy. Every wait is bounded
/// by [`SHADOW_TIMEOUT`], and a step that does not give what it should is an error.
async fn shadow_scene(
    clients: &[Arc<Client>],
    t0: Instant,
    http: &ApiClient,
) -> anyhow::Result<()> {
    let client = |name: &str| {
        clients
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| anyhow!("no client {name}"))
    };
    let (device, web) = (client(THING)?, client("web-app")?);
    let device_shadow = device.iot.shadow(THING).timeout(SHADOW_TIMEOUT);
    // Both subscriptions are in place (SUBACK) before the update, so nothing is missed.
    let mut deltas = within(device_shadow.deltas(), "device: subscribing to its deltas").await?;
    let mut documents = within(
        web.iot.shadow(THING).documents(),
        "web-app: subscribing to the device's documents",
    )
    .await?;
    let agent = reqwest::Client::builder()
        .timeout(SHADOW_TIMEOUT)
        .build()
        .context("HTTP client")?;
    let path = format!("/things/{}/shadow", encode_segment(THING));
    let call = |method: &'static str, path: String, body: Option<Value>| {
        let agent = agent.clone();
        async move {
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let started = Instant::now();
            let (status, kind, text) = http
                .send_async(&agent, method, &path, "", &[], body.as_bytes())
                .await?;
            anyhow::Ok((status, kind, text, started.elapsed()))
        }
    };

    let wanted = Light {
        color: "green".into(),
    };
    let (status, kind, text, took) = call(
        "POST",
        path.clone(),
        Some(json!({ "state": { "desired": &wanted } })),
    )
    .await?;
    let accepted =
        read_answer(status, kind.as_deref(), &text).context("web-app: UpdateThingShadow")?;
    println!(
        "{}  web-app    → {:<32} {:<36} {status}, version {} ({:.1} ms)",
        stamp(t0),
        format!("HTTP POST {path}"),
        format!("desired {}", json!(&wanted)),
        accepted["version"],
        ms(took)
    );

    let delta = next(&mut deltas, "device: no delta").await?;
    let asked: Light = serde_json::from_value(delta["state"].clone())
        .with_context(|| format!("device: the delta's state is not a light: {delta}"))?;
    println!(
        "{}  device     ← {:<32} {:<36} version {}",
        stamp(t0),
        "MQTT …/shadow/update/delta",
        json!(&asked).to_string(),
        delta["version"]
    );

    let started = Instant::now();
    let reported = device_shadow
        .update_reported(&asked)
        .await
        .with_context(|| format!("device: reporting {}", json!(&asked)))?;
    println!(
        "{}  device     → {:<32} {:<36} accepted, version {} ({:.1} ms)",
        stamp(t0),
        "MQTT …/shadow/update",
        format!("reported {}", json!(&asked)),
        reported["version"],
        ms(started.elapsed())
    );

    // The web app's own HTTP update made a documents message too (version 1); the one
    // that says the device reported carries the reported version.
    let document = loop {
        let document = next(&mut documents, "web-app: no documents message").await?;
        if document["current"]["version"] == reported["version"] {
            break document;
        }
    };
    println!(
        "{}  web-app    ← {:<32} {:<36} version {} → {}",
        stamp(t0),
        "MQTT …/shadow/update/documents",
        format!("reported {}", document["current"]["state"]["reported"]),
        document["previous"]["version"],
        document["current"]["version"]
    );

    let (status, kind, text, took) = call("GET", path.clone(), None).await?;
    let got = read_answer(status, kind.as_deref(), &text).context("web-app: GetThingShadow")?;
    let shadow = ShadowDocument::<Light, Light>::from_json(got)
        .context("web-app: the shadow document does not hold a light")?;
    let delta = match &shadow.delta {
        None => "no delta".to_owned(),
        Some(delta) => format!("delta {delta}"),
    };
    let state = match (&shadow.desired, &shadow.reported) {
        (Some(desired), Some(reported)) if desired == reported => {
            format!("desired = reported {}", json!(reported))
        }
        (desired, reported) => format!("desired {} reported {}", json!(desired), json!(reported)),
    };
    println!(
        "{}  web-app    → {:<32} {:<36} {status}, version {}, {delta} ({:.1} ms)",
        stamp(t0),
        format!("HTTP GET {path}"),
        state,
        shadow.version,
        ms(took)
    );
    if shadow.delta.is_some() || shadow.reported.as_ref() != Some(&wanted) {
        bail!("the device's report did not settle the shadow: {text}");
    }

    // The same credentials, a thing the policy does not name.
    let other = format!("/things/{}/shadow", encode_segment("backend"));
    let (status, kind, _, _) = call("GET", other.clone(), None).await?;
    let kind = kind.unwrap_or_default();
    println!(
        "{}  web-app    → {:<32} {:<36} its policy allows thing/{THING} only",
        stamp(t0),
        format!("HTTP GET {other}"),
        format!("{status} {kind}"),
    );
    if status != 403 {
        bail!("GetThingShadow of thing/backend answered {status} {kind}, not 403");
    }
    Ok(())
}

/// `future`'s output within [`SHADOW_TIMEOUT`], or the error `"<what>: …"`.
async fn within<T, E: std::error::Error + Send + Sync + 'static>(
    future: impl std::future::Future<Output = Result<T, E>>,
    what: &str,
) -> anyhow::Result<T> {
    match tokio::time::timeout(SHADOW_TIMEOUT, future).await {
        Ok(result) => result.with_context(|| what.to_owned()),
        Err(_) => bail!("{what}: no answer within {SHADOW_TIMEOUT:?}"),
    }
}

/// The next message of `stream` within [`SHADOW_TIMEOUT`].
async fn next(stream: &mut ShadowStream, what: &str) -> anyhow::Result<Value> {
    match tokio::time::timeout(SHADOW_TIMEOUT, stream.recv()).await {
        Ok(Some(message)) => Ok(message),
        Ok(None) => bail!("{what}: the connection closed"),
        Err(_) => bail!("{what} within {SHADOW_TIMEOUT:?}"),
    }
}

fn ms(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e3
}

/// `from` publishes `text` on `topic` (QoS 1) and the line says who received it.
async fn say(
    clients: &[Arc<Client>],
    t0: Instant,
    from: &str,
    topic: &str,
    text: &str,
) -> anyhow::Result<()> {
    let sender = clients
        .iter()
        .find(|c| c.name == from)
        .ok_or_else(|| anyhow!("no client {from}"))?;
    let sent_at = Instant::now();
    sender
        .iot
        .publish(topic, text.to_owned(), QoS::AtLeastOnce)
        .await
        .map_err(|e| anyhow!("{from} publish {topic}: {e}"))?;
    let acked = sent_at.elapsed();
    tokio::time::sleep(Duration::from_millis(120)).await;
    sender.sent.fetch_add(1, Ordering::Relaxed);
    // Who should get it: subscribers of chat/# and, for chat/room, every app; for an inbox,
    // its owner.
    let expected: Vec<&Arc<Client>> = clients
        .iter()
        .filter(|c| match c.name {
            "backend" | "monitor" => true,
            n => topic == "chat/room" || topic == format!("chat/{n}"),
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && !expected.iter().all(|c| c.has(text)) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got: Vec<&str> = clients
        .iter()
        .filter(|c| c.name != from && c.has(text))
        .map(|c| c.name)
        .collect();
    println!(
        "{}  {from:<10} → {topic:<16} {:<35} PUBACK {:>4.1} ms, got it: {}",
        stamp(t0),
        format!("{text:?}"),
        acked.as_secs_f64() * 1e3,
        if got.is_empty() {
            "nobody".to_owned()
        } else {
            got.join(", ")
        }
    );
    Ok(())
}

/// Serves the authorizer function on 127.0.0.1 (a free port): it reads the Lambda event
/// JSON the broker posts and answers the Lambda response JSON: token `demo-token` is
/// allowed with myIOTPolicy's document, anything else refused.
async fn serve_authorizer() -> anyhow::Result<SocketAddr> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("authorizer: cannot bind")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let event: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    let answer = authorizer_answer(&event);
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(answer.to_string())))
                            .expect("static response"),
                    )
                });
                let _ = http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn authorizer_answer(event: &serde_json::Value) -> serde_json::Value {
    if event["token"].as_str() == Some(TOKEN) {
        serde_json::json!({
            "isAuthenticated": true,
            "principalId": "demoTokenUser",
            "policyDocuments": [POLICY_DOCUMENT],
            "disconnectAfterInSeconds": 3600,
            "refreshAfterInSeconds": 300,
        })
    } else {
        serde_json::json!({ "isAuthenticated": false })
    }
}
