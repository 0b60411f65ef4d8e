//! The SDK's shadow API end to end: the iOS-style calls and the async client against our
//! broker's Device Shadow service (in process, loopback), and against mosquitto, where
//! shadow topics are plain topics and nothing answers (timeouts).

mod broker_support;
mod common;

use std::time::{Duration, Instant};

use broker_support::*;
use pubsub::shadow::{
    ShadowDocument, ShadowError, ShadowId, ShadowOperation, ShadowOperationStatus, ShadowOptions,
};
use pubsub::{
    DataManager, Endpoint, Error, MqttConfiguration, MqttConnectOptions, ProtocolVersion, QoS,
    ServiceConfiguration,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::timeout;

use ShadowOperation::{Delete, Get, Update};
use ShadowOperationStatus::{Accepted, Delta, Documents, ForeignUpdate, Rejected, Timeout};

/// `f`'s output, or a panic after `T`.
async fn within<R>(f: impl std::future::Future<Output = R>) -> R {
    timeout(T, f).await.expect("timed out")
}

/// One callback invocation.
#[derive(Debug, Clone)]
struct Ev {
    name: String,
    operation: ShadowOperation,
    status: ShadowOperationStatus,
    token: Option<String>,
    payload: Vec<u8>,
}

impl Ev {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{self:?}: payload not JSON: {e}"))
    }
}

/// A registered shadow's callback events, in arrival order.
struct Events {
    rx: mpsc::UnboundedReceiver<Ev>,
    seen: Vec<Ev>,
}

impl Events {
    /// The first event (already seen or next to come) with this operation and status;
    /// the others stay in `seen`.
    async fn wait(&mut self, operation: ShadowOperation, status: ShadowOperationStatus) -> Ev {
        let wanted = |e: &Ev| e.operation == operation && e.status == status;
        if let Some(i) = self.seen.iter().position(wanted) {
            return self.seen.remove(i);
        }
        loop {
            let e = timeout(T, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("no {operation:?}/{status:?} event; saw {:?}", self.seen)
                })
                .expect("callback dropped");
            if wanted(&e) {
                return e;
            }
            self.seen.push(e);
        }
    }

    /// Everything received so far, without waiting.
    fn drain(&mut self) -> Vec<Ev> {
        while let Ok(e) = self.rx.try_recv() {
            self.seen.push(e);
        }
        std::mem::take(&mut self.seen)
    }
}

fn register(
    m: &DataManager,
    shadow: impl pubsub::shadow::IntoShadowId,
    options: ShadowOptions,
) -> Events {
    let (tx, rx) = mpsc::unbounded_channel();
    assert!(m.register_with_shadow(
        shadow,
        options,
        move |name, operation, status, token, payload| {
            let _ = tx.send(Ev {
                name: name.to_owned(),
                operation,
                status,
                token: token.map(str::to_owned),
                payload: payload.to_vec(),
            });
        }
    ));
    Events {
        rx,
        seen: Vec::new(),
    }
}

struct Broker {
    _setup: Setup,
    _running: broker::RunningBroker,
    config: ServiceConfiguration,
}

async fn broker(tag: &str) -> Broker {
    broker_with(tag, |_| {}).await
}

async fn broker_with(tag: &str, adjust: impl FnOnce(&mut broker::Config)) -> Broker {
    let mut setup = setup(tag, true).await;
    adjust(&mut setup.config);
    let running = broker::start(setup.config.clone()).await.unwrap();
    let config = service(&setup, ports(&running), no_reconnect());
    Broker {
        _setup: setup,
        _running: running,
        config,
    }
}

/// A manager connected anonymously over plain MQTT as `client_id`.
async fn connected(config: &ServiceConfiguration, client_id: &str) -> DataManager {
    let m = DataManager::new(config.clone());
    m.connect_mqtt(client_id, true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    wait_connected(&m).await;
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ios_style_update_get_delete_with_callbacks() {
    let b = broker("shadow-ios").await;
    // Before connect* (as iOS) and for a name the service would refuse: not registered.
    let idle = DataManager::new(b.config.clone());
    assert!(!idle.register_with_shadow("lamp-ios", ShadowOptions::default(), |_, _, _, _, _| {}));
    assert!(!idle.update_shadow("lamp-ios", r#"{"state":{}}"#, None));
    let m = connected(&b.config, "ios-app").await;
    assert!(!m.register_with_shadow("lamp ios", ShadowOptions::default(), |_, _, _, _, _| {}));
    let mut ev = register(&m, "lamp-ios", ShadowOptions::default());

    assert!(m.update_shadow("lamp-ios", r#"{"state":{"desired":{"on":true}}}"#, None));
    // One operation at a time: the get is refused while the update is in flight.
    assert!(!m.get_shadow("lamp-ios", None));
    let accepted = ev.wait(Update, Accepted).await;
    assert_eq!(accepted.name, "lamp-ios");
    assert_eq!(accepted.token.as_deref(), Some("ios-app-1"));
    let doc = accepted.json();
    assert_eq!(doc["state"]["desired"]["on"], true);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["clientToken"], "ios-app-1");
    let delta = ev.wait(Update, Delta).await;
    assert_eq!(delta.json()["state"], json!({"on": true}));
    assert_eq!(delta.token.as_deref(), Some("ios-app-1"));
    let documents = ev.wait(Update, Documents).await;
    assert_eq!(
        documents.json()["current"]["state"]["desired"],
        json!({"on": true})
    );

    assert!(m.get_shadow("lamp-ios", Some("my-get")));
    let got = ev.wait(Get, Accepted).await;
    assert_eq!(got.token.as_deref(), Some("my-get"));
    let doc = got.json();
    assert_eq!(doc["state"]["delta"], json!({"on": true}));
    assert_eq!(doc["version"], 1);

    assert!(m.delete_shadow("lamp-ios", None));
    let deleted = ev.wait(Delete, Accepted).await;
    assert_eq!(deleted.token.as_deref(), Some("ios-app-2"));
    assert_eq!(deleted.json()["version"], 1);

    assert!(m.get_shadow("lamp-ios", None));
    let rejected = ev.wait(Get, Rejected).await;
    assert_eq!(rejected.token.as_deref(), Some("ios-app-3"));
    let error = rejected.json();
    assert_eq!(error["code"], 404);
    assert_eq!(error["message"], "No shadow exists with name: 'lamp-ios'");

    // Refused locally: `version` is the helper's; unknown shadows.
    assert!(!m.update_shadow("lamp-ios", r#"{"state":{},"version":1}"#, None));
    assert!(!m.update_shadow("lamp-ios", "not json", None));
    assert!(!m.update_shadow("unregistered", r#"{"state":{}}"#, None));
    // No callback fired for our own operations beyond those answers.
    let rest = ev.drain();
    assert!(
        rest.iter().all(|e| matches!(e.status, Delta | Documents)),
        "{rest:?}"
    );

    // A named shadow (which iOS cannot reach): the callback's name is the shadow's.
    let named = ShadowId::named("lamp-ios", "config");
    let mut nev = register(&m, &named, ShadowOptions::default().ignore_deltas(true));
    assert!(m.update_shadow(&named, r#"{"state":{"desired":{"mode":"eco"}}}"#, None));
    let accepted = nev.wait(Update, Accepted).await;
    assert_eq!(accepted.name, "config");
    assert_eq!(accepted.token.as_deref(), Some("ios-app-4"));
    nev.wait(Update, Documents).await;
    assert!(m.get_shadow(&named, None));
    assert_eq!(
        nev.wait(Get, Accepted).await.json()["state"]["desired"]["mode"],
        "eco"
    );
    // ignore_deltas: no delta subscription, so no delta although desired ≠ reported.
    assert!(nev.drain().iter().all(|e| e.status != Delta));

    // Unregistered: the messages still reach the manager, the callback no more.
    assert!(m.unregister_from_shadow("lamp-ios"));
    assert!(!m.unregister_from_shadow("lamp-ios"));
    assert!(!m.get_shadow("lamp-ios", None));
    let mut accepted_topic = within(m.subscribe_stream(
        "$aws/things/lamp-ios/shadow/update/accepted",
        QoS::AtLeastOnce,
    ))
    .await
    .unwrap();
    let other = connected(&b.config, "ios-other").await;
    within(
        other
            .shadow("lamp-ios")
            .update(json!({"state": {"reported": {"on": true}}})),
    )
    .await
    .unwrap();
    within(accepted_topic.recv()).await.unwrap();
    assert!(ev.drain().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ios_style_versioning_gets_409_on_a_stale_version_then_recovers() {
    let b = broker("shadow-ver").await;
    let a = connected(&b.config, "ver-a").await;
    let mut ev = register(&a, "lamp-ver", ShadowOptions::default().versioning(true));
    assert!(a.update_shadow("lamp-ver", r#"{"state":{"desired":{"on":true}}}"#, None));
    assert_eq!(ev.wait(Update, Accepted).await.json()["version"], 1);

    // Another client updates while `a` is offline: `a` keeps version 1.
    within(a.disconnect_and_wait()).await;
    let other = connected(&b.config, "ver-b").await;
    let accepted = within(
        other
            .shadow("lamp-ver")
            .update_reported(&json!({"on": true})),
    )
    .await
    .unwrap();
    assert_eq!(accepted["version"], 2);
    a.connect_mqtt("ver-a", true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    wait_connected(&a).await;

    // The registration survived the reconnect; the update carries "version": 1.
    assert!(a.update_shadow("lamp-ver", r#"{"state":{"desired":{"on":false}}}"#, None));
    let rejected = ev.wait(Update, Rejected).await;
    assert_eq!(rejected.token.as_deref(), Some("ver-a-2"));
    let error = rejected.json();
    assert_eq!(
        (error["code"].clone(), error["message"].clone()),
        (json!(409), json!("Version conflict"))
    );

    // A get (its version is not checked) brings the version up to date; the retry works.
    assert!(a.get_shadow("lamp-ver", None));
    assert_eq!(ev.wait(Get, Accepted).await.json()["version"], 2);
    assert!(a.update_shadow("lamp-ver", r#"{"state":{"desired":{"on":false}}}"#, None));
    assert_eq!(ev.wait(Update, Accepted).await.json()["version"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_updates_reach_only_the_registrations_that_ask() {
    let b = broker("shadow-foreign").await;
    let a = connected(&b.config, "foreign-a").await;
    let c = connected(&b.config, "foreign-c").await;
    let mut aev = register(
        &a,
        "lamp-f",
        ShadowOptions::default().foreign_update_notifications(true),
    );
    let mut cev = register(&c, "lamp-f", ShadowOptions::default());

    let writer = connected(&b.config, "foreign-b").await;
    let lamp = writer.shadow("lamp-f");
    let accepted = within(lamp.update(json!({"state": {"reported": {"on": false}}})))
        .await
        .unwrap();
    let token = accepted["clientToken"].as_str().unwrap().to_owned();
    assert!(token.starts_with("foreign-b-"), "{token}");

    let foreign = aev.wait(Update, ForeignUpdate).await;
    assert_eq!(foreign.name, "lamp-f");
    assert_eq!(foreign.json()["clientToken"], token.as_str());
    assert_eq!(foreign.json()["state"]["reported"]["on"], false);
    // `a` has no operation of its own yet: no token of its own to report.
    assert_eq!(foreign.token, None);
    // `c` saw the same update's documents but, not asking, no foreign update.
    cev.wait(Update, Documents).await;
    assert!(cev.drain().iter().all(|e| e.status != ForeignUpdate));

    // Someone else's get is not an update: nothing for it, before the delete's event.
    within(lamp.get()).await.unwrap();
    within(lamp.delete()).await.unwrap();
    let foreign = aev.wait(Delete, ForeignUpdate).await;
    assert_eq!(foreign.json()["version"], 1);
    let rest = aev.drain();
    assert!(rest.iter().all(|e| e.operation == Update), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_client_on_classic_and_named_shadows() {
    let b = broker("shadow-async").await;
    let m = connected(&b.config, "async-1").await;
    let classic = m.shadow("lamp-async");
    let named = m.shadow(ShadowId::named("lamp-async", "config"));

    match within(named.get()).await {
        Err(ShadowError::Rejected(r)) => {
            assert_eq!(r.code, 404);
            assert_eq!(r.message, "No shadow exists with name: 'config'");
            assert!(r.client_token.is_some_and(|t| t.starts_with("async-1-")));
        }
        other => panic!("{other:?}"),
    }

    let mut deltas = within(named.deltas()).await.unwrap();
    let mut documents = within(named.documents()).await.unwrap();
    let accepted = within(named.update(json!({"state": {"desired": {"mode": "eco"}}})))
        .await
        .unwrap();
    assert_eq!(accepted["version"], 1);
    assert_eq!(accepted["state"]["desired"]["mode"], "eco");
    let delta = within(deltas.recv()).await.unwrap();
    assert_eq!(delta["state"], json!({"mode": "eco"}));
    assert_eq!(delta["clientToken"], accepted["clientToken"]);
    let docs = within(documents.recv()).await.unwrap();
    assert_eq!(docs["current"]["state"]["desired"]["mode"], "eco");
    assert_eq!(docs["current"]["version"], 1);

    // The classic shadow is another shadow: its own version.
    let accepted = within(classic.update(json!({"state": {"reported": {"on": true}}})))
        .await
        .unwrap();
    assert_eq!(accepted["version"], 1);
    let doc = within(named.get()).await.unwrap();
    assert_eq!(doc["state"]["desired"]["mode"], "eco");
    assert_eq!(doc["state"].get("reported"), None);

    // Optimistic locking: a wrong version is rejected with IoT Core's code and text, and
    // the caller's clientToken is used and echoed.
    let stale =
        json!({"state": {"desired": {"mode": "off"}}, "version": 7, "clientToken": "mine-1"});
    match within(named.update(stale)).await {
        Err(ShadowError::Rejected(r)) => {
            assert_eq!((r.code, r.message.as_str()), (409, "Version conflict"));
            assert_eq!(r.client_token.as_deref(), Some("mine-1"));
        }
        other => panic!("{other:?}"),
    }

    // Concurrent calls on one shadow: each gets its own answer.
    let (r1, r2, r3, r4) = tokio::join!(named.get(), named.get(), classic.get(), named.get());
    let tokens: std::collections::HashSet<String> = [r1, r2, r3, r4]
        .into_iter()
        .map(|r| r.unwrap()["clientToken"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), 4);

    let deleted = within(named.delete()).await.unwrap();
    assert_eq!(deleted["version"], 1);
    assert!(matches!(
        within(named.get()).await,
        Err(ShadowError::Rejected(r)) if r.code == 404
    ));
    // The classic shadow is untouched.
    assert_eq!(
        within(classic.get()).await.unwrap()["state"]["reported"]["on"],
        true
    );

    // Refused before anything is sent.
    assert!(matches!(
        m.shadow(ShadowId::named("lamp-async", "bad name"))
            .get()
            .await,
        Err(ShadowError::InvalidName(_))
    ));
    assert!(matches!(
        named.update(json!([1])).await,
        Err(ShadowError::Document(_))
    ));
    assert!(matches!(
        DataManager::new(b.config.clone()).shadow("x").get().await,
        Err(ShadowError::Connection(Error::NotConnected))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apis_over_mqtt5() {
    let b = broker("shadow-v5").await;
    let config = b
        .config
        .clone()
        .mqtt_configuration(no_reconnect().protocol(ProtocolVersion::V5));
    let m = connected(&config, "v5-app").await;
    let mut ev = register(
        &m,
        ShadowId::named("lamp-5", "cfg"),
        ShadowOptions::default(),
    );
    let named = m.shadow(ShadowId::named("lamp-5", "cfg"));
    let accepted = within(named.update(json!({"state": {"reported": {"on": true}}})))
        .await
        .unwrap();
    assert_eq!(accepted["version"], 1);
    // The async client's update is foreign to the registration: only documents arrive.
    ev.wait(Update, Documents).await;
    assert!(m.get_shadow(ShadowId::named("lamp-5", "cfg"), None));
    let got = ev.wait(Get, Accepted).await;
    assert_eq!(got.json()["state"]["reported"]["on"], true);
    assert_eq!(got.token.as_deref(), Some("v5-app-2"));
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Lamp {
    on: bool,
    brightness: u8,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_desired_and_reported() {
    let b = broker("shadow-typed").await;
    let m = connected(&b.config, "typed-1").await;
    let lamp = m.shadow(ShadowId::named("typed-lamp", "state"));
    let wanted = Lamp {
        on: true,
        brightness: 80,
    };
    let mut reported = Lamp {
        on: true,
        brightness: 20,
    };
    within(lamp.update_desired(&wanted)).await.unwrap();
    within(lamp.update_reported(&reported)).await.unwrap();
    let doc: ShadowDocument<Lamp, Lamp> = within(lamp.get_typed()).await.unwrap();
    assert_eq!(doc.desired.as_ref(), Some(&wanted));
    assert_eq!(doc.reported.as_ref(), Some(&reported));
    assert_eq!(doc.delta, Some(json!({"brightness": 80})));
    assert_eq!(doc.version, 2);
    assert!(doc.metadata["desired"]["brightness"]["timestamp"].is_u64());
    assert!(doc.client_token.is_some());

    reported.brightness = 80;
    within(lamp.update_reported(&reported)).await.unwrap();
    let doc: ShadowDocument<Lamp, Lamp> = within(lamp.get_typed()).await.unwrap();
    assert_eq!(
        (doc.reported, doc.delta, doc.version),
        (Some(reported), None, 3)
    );
    // A document that does not fit the type is an error, not a default.
    within(lamp.update_reported(&json!({"brightness": "dim"})))
        .await
        .unwrap();
    assert!(matches!(
        lamp.get_typed::<Lamp, Lamp>().await,
        Err(ShadowError::Document(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_where_nothing_answers() {
    let mosquitto = common::Mosquitto::start("allow_anonymous true");
    let config = ServiceConfiguration::new("us-east-1", Endpoint::parse("127.0.0.1").unwrap())
        .mqtt_port(mosquitto.port)
        .mqtt_configuration(MqttConfiguration::default());
    let m = connected(&config, "sdk-timeout").await;
    let observer = connected(&config, "observer").await;
    let mut requests =
        within(observer.subscribe_stream("$aws/things/lamp/shadow/+", QoS::AtLeastOnce))
            .await
            .unwrap();

    let options = ShadowOptions::default()
        .versioning(true)
        .qos(QoS::AtLeastOnce)
        .operation_timeout(Duration::from_millis(300));
    let mut ev = register(&m, "lamp", options);
    let started = Instant::now();
    assert!(m.update_shadow("lamp", r#"{"state":{"desired":{"on":true}}}"#, None));
    assert!(!m.update_shadow("lamp", r#"{"state":{}}"#, None));
    // What was sent: the caller's JSON with a generated token, no version (none known).
    let request = within(requests.recv()).await.unwrap();
    assert_eq!(request.topic, "$aws/things/lamp/shadow/update");
    assert_eq!(request.qos, QoS::AtLeastOnce, "the options' QoS");
    let body: Value = serde_json::from_slice(&request.payload).unwrap();
    assert_eq!(
        body,
        json!({"state": {"desired": {"on": true}}, "clientToken": "sdk-timeout-1"})
    );

    let timed_out = ev.wait(Update, Timeout).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(timed_out.token.as_deref(), Some("sdk-timeout-1"));
    assert_eq!(timed_out.payload, b"timeout");
    assert_eq!(timed_out.name, "lamp");

    // The shadow is free again.
    assert!(m.get_shadow("lamp", None));
    let request = within(requests.recv()).await.unwrap();
    assert_eq!(request.topic, "$aws/things/lamp/shadow/get");
    assert_eq!(
        serde_json::from_slice::<Value>(&request.payload).unwrap(),
        json!({"clientToken": "sdk-timeout-2"})
    );
    assert_eq!(
        ev.wait(Get, Timeout).await.token.as_deref(),
        Some("sdk-timeout-2")
    );
    assert!(ev.drain().is_empty());

    // The async client's timeout.
    let started = Instant::now();
    match m
        .shadow(ShadowId::named("lamp", "cfg"))
        .timeout(Duration::from_millis(300))
        .get()
        .await
    {
        Err(ShadowError::Timeout(after)) => assert_eq!(after, Duration::from_millis(300)),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// Request after request on one connection: each must not wait for the broker's delayed
/// ACK (the SDK sets TCP_NODELAY; without it every call took ~45 ms here, 40 calls 1.8 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_do_not_wait_for_delayed_acks() {
    let b = broker_with("shadow-nagle", |c| {
        c.limits.shadow_requests_per_thing_per_sec = 0;
    })
    .await;
    let m = connected(&b.config, "nagle-1").await;
    let mut ev = register(&m, "lamp-n", ShadowOptions::default().qos(QoS::AtLeastOnce));
    assert!(m.update_shadow("lamp-n", r#"{"state":{"reported":{"on":true}}}"#, None));
    ev.wait(Update, Accepted).await;
    let start = Instant::now();
    for _ in 0..40 {
        assert!(m.get_shadow("lamp-n", None));
        ev.wait(Get, Accepted).await;
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "40 sequential gets took {took:?}"
    );
}

/// What a shadow call costs, both APIs, sequentially on one connection (ignored by
/// default; `cargo test [--release] -p pubsub --test shadow -- --ignored --nocapture`).
/// The async client's figure includes its two SUBSCRIBEs and UNSUBSCRIBEs per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_shadow_round_trips() {
    const N: u32 = 500;
    let b = broker_with("shadow-measure", |c| {
        c.limits.shadow_requests_per_thing_per_sec = 0;
    })
    .await;
    let m = connected(&b.config, "measure-1").await;
    let lamp = m.shadow("lamp-m");
    lamp.update_reported(&json!({"on": true})).await.unwrap();

    let start = Instant::now();
    for _ in 0..N {
        within(lamp.get()).await.unwrap();
    }
    let async_get = start.elapsed() / N;

    let mut ev = register(&m, "lamp-m", ShadowOptions::default().qos(QoS::AtLeastOnce));
    // The registration's subscriptions are acknowledged once a first answer arrives.
    assert!(m.get_shadow("lamp-m", None));
    ev.wait(Get, Accepted).await;
    let start = Instant::now();
    for _ in 0..N {
        assert!(m.get_shadow("lamp-m", None));
        ev.wait(Get, Accepted).await;
    }
    let ios_get = start.elapsed() / N;

    let start = Instant::now();
    for i in 0..N {
        assert!(m.update_shadow(
            "lamp-m",
            &format!(r#"{{"state":{{"reported":{{"n":{i}}}}}}}"#),
            None
        ));
        ev.wait(Update, Accepted).await;
    }
    let ios_update = start.elapsed() / N;
    // With a registration holding the answer subscriptions, the async client's SUBSCRIBEs
    // still go out but its drops do not unsubscribe.
    let start = Instant::now();
    for _ in 0..N {
        within(lamp.get()).await.unwrap();
    }
    let async_get_registered = start.elapsed() / N;
    println!(
        "per call, {N} sequential: async get {async_get:?}, async get beside a registration {async_get_registered:?}, iOS-style get {ios_get:?}, iOS-style update {ios_update:?}"
    );
}
