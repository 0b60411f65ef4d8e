//! The service's decisions ([`Table`]) told the time, and the service against a real
//! router and a real store: what is published, when, in which order, and what survives
//! reopening the store.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::session::{LiveConnection, Session, SessionKind};
use crate::store::Recovered;
use shadow::document::DELETED_VERSION_KEPT_SECS;

fn limits(inflight: usize, per_sec: u32) -> ServiceLimits {
    ServiceLimits {
        document: shadow::Limits::default(),
        inflight_per_thing: inflight,
        requests_per_thing_per_sec: per_sec,
    }
}

fn topics(applied: &Applied) -> Vec<&str> {
    applied
        .answers
        .iter()
        .map(|(topic, _)| topic.as_str())
        .collect()
}

fn body(payload: &[u8]) -> Value {
    serde_json::from_slice(payload).unwrap()
}

const UPDATE: &[u8] = br#"{"state":{"desired":{"on":true}},"clientToken":"t1"}"#;

#[test]
fn bad_names_are_rejected_with_400_to_mqtt_and_not_published_for_http() {
    let mut table = Table::new(limits(10, 0), Vec::new(), 0).0;
    let now = Instant::now();
    let id = ShadowId::named("lamp", "bad name");
    let payload = br#"{"clientToken":"c-1"}"#;
    let applied = table.apply(&id, Operation::Get, payload, Origin::Mqtt, now, 100);
    let rejection = applied.result.as_ref().unwrap_err();
    assert_eq!(rejection.code, 400);
    assert!(
        rejection.message.contains("shadow name"),
        "{}",
        rejection.message
    );
    assert_eq!(rejection.client_token.as_deref(), Some("c-1"));
    assert_eq!(
        topics(&applied),
        ["$aws/things/lamp/shadow/name/bad name/get/rejected"]
    );
    assert_eq!(body(&applied.answers[0].1)["code"], 400);
    assert!(!applied.in_flight);
    let thing = ShadowId::classic("a/b");
    let applied = table.apply(&thing, Operation::Update, UPDATE, Origin::Http, now, 100);
    assert!(applied.result.unwrap_err().message.contains("thing name"));
    assert!(
        applied.answers.is_empty(),
        "an HTTP rejection publishes nothing"
    );
}

#[test]
fn requests_in_flight_are_limited_per_thing_with_429_echoing_the_client_token() {
    let mut table = Table::new(limits(2, 0), Vec::new(), 0).0;
    let now = Instant::now();
    let lamp = ShadowId::classic("lamp");
    let named = ShadowId::named("lamp", "cfg");
    for id in [&lamp, &named] {
        assert!(
            table
                .apply(id, Operation::Update, UPDATE, Origin::Mqtt, now, 1)
                .in_flight
        );
    }
    let refused = table.apply(&named, Operation::Update, UPDATE, Origin::Mqtt, now, 1);
    let rejection = refused.result.as_ref().unwrap_err();
    assert_eq!(
        (rejection.code, rejection.message.as_str()),
        (429, "Too Many Requests")
    );
    assert_eq!(rejection.client_token.as_deref(), Some("t1"));
    assert_eq!(refused.limit_hit, Some(LimitHit::InFlight));
    assert_eq!(
        topics(&refused),
        ["$aws/things/lamp/shadow/name/cfg/update/rejected"]
    );
    assert!(
        refused.change.is_none(),
        "a refused request changes nothing"
    );
    // Another thing has its own count; an answer frees a place.
    let other = ShadowId::classic("other");
    assert!(table
        .apply(&other, Operation::Update, UPDATE, Origin::Mqtt, now, 1)
        .result
        .is_ok());
    table.answered("lamp");
    assert!(table
        .apply(&lamp, Operation::Get, b"", Origin::Mqtt, now, 1)
        .result
        .is_ok());
}

#[test]
fn requests_per_second_are_limited_per_thing() {
    let mut table = Table::new(limits(1000, 5), Vec::new(), 0).0;
    let t0 = Instant::now();
    let lamp = ShadowId::classic("lamp");
    let results: Vec<u16> = (0..8)
        .map(|_| {
            match table
                .apply(&lamp, Operation::Get, b"", Origin::Http, t0, 1)
                .result
            {
                Ok(_) => 200,
                Err(rejection) => rejection.code,
            }
        })
        .collect();
    // The shadow does not exist: the admitted gets are 404s, the rest 429s.
    assert_eq!(results, [404, 404, 404, 404, 404, 429, 429, 429]);
    let other = ShadowId::named("other", "x");
    assert_eq!(
        table
            .apply(&other, Operation::Get, b"", Origin::Http, t0, 1)
            .result
            .unwrap_err()
            .code,
        404
    );
    let later = t0 + Duration::from_millis(200);
    let again = table.apply(&lamp, Operation::Get, b"", Origin::Http, later, 1);
    assert_eq!(again.result.unwrap_err().code, 404, "one more after 1/5 s");
    assert_eq!(again.limit_hit, None);
}

#[test]
fn limit_hits_are_logged_at_most_once_a_second_with_the_count() {
    let mut table = Table::new(limits(1, 0), Vec::new(), 0).0;
    let t0 = Instant::now();
    assert_eq!(table.log_limit_hit(t0), Some(1));
    assert_eq!(table.log_limit_hit(t0 + Duration::from_millis(10)), None);
    assert_eq!(table.log_limit_hit(t0 + Duration::from_millis(500)), None);
    assert_eq!(table.log_limit_hit(t0 + Duration::from_secs(1)), Some(3));
}

#[test]
fn named_shadows_are_listed_sorted_and_paged_without_classic_or_deleted_ones() {
    let shadow = |deleted_at| Shadow {
        version: 1,
        deleted_at,
        ..Shadow::default()
    };
    let recovered = vec![
        (ShadowId::classic("lamp"), shadow(None)),
        (ShadowId::named("lamp", "c"), shadow(None)),
        (ShadowId::named("lamp", "a"), shadow(None)),
        (ShadowId::named("lamp", "b"), shadow(Some(5))),
        (ShadowId::named("lamp", "$d"), shadow(None)),
        (ShadowId::named("lamp-2", "z"), shadow(None)),
        (ShadowId::named("lam", "y"), shadow(None)),
        (ShadowId::named("lamp", "e"), shadow(Some(1))),
    ];
    let now = DELETED_VERSION_KEPT_SECS + 5; // "b" was deleted 48 h ago, "e" earlier
    let (table, forgotten) = Table::new(limits(10, 0), recovered, now);
    assert_eq!(
        forgotten,
        [ShadowId::named("lamp", "e")],
        "a tombstone past 48 h is not kept"
    );
    assert!(table.get(&ShadowId::named("lamp", "b")).is_some());
    assert_eq!(
        table.list_named("lamp", 100, None),
        (vec!["$d".to_owned(), "a".into(), "c".into()], None)
    );
    let (first, next) = table.list_named("lamp", 2, None);
    assert_eq!(first, ["$d", "a"]);
    assert_eq!(next.as_deref(), Some("a"));
    assert_eq!(
        table.list_named("lamp", 2, next.as_deref()),
        (vec!["c".into()], None)
    );
    assert_eq!(table.list_named("nothing", 10, None), (vec![], None));
}

#[test]
fn an_update_keeps_its_shadow_and_answers_accepted_delta_and_documents() {
    let mut table = Table::new(limits(10, 0), Vec::new(), 0).0;
    let now = Instant::now();
    let id = ShadowId::named("lamp", "cfg");
    let applied = table.apply(&id, Operation::Update, UPDATE, Origin::Mqtt, now, 1000);
    let prefix = "$aws/things/lamp/shadow/name/cfg/update";
    assert_eq!(
        topics(&applied),
        [
            format!("{prefix}/accepted"),
            format!("{prefix}/delta"),
            format!("{prefix}/documents")
        ]
    );
    let accepted = body(&applied.answers[0].1);
    assert_eq!(accepted, applied.result.unwrap());
    assert_eq!(
        (accepted["version"].clone(), accepted["clientToken"].clone()),
        (json!(1), json!("t1"))
    );
    assert_eq!(table.get(&id).unwrap().version, 1);
    assert_eq!(applied.change.unwrap().version, 1);
    // An HTTP update publishes the same three; an HTTP get publishes nothing.
    let applied = table.apply(&id, Operation::Update, UPDATE, Origin::Http, now, 1001);
    assert_eq!(applied.answers.len(), 3);
    let got = table.apply(&id, Operation::Get, b"", Origin::Http, now, 1002);
    assert!(got.answers.is_empty());
    assert_eq!(got.result.unwrap()["version"], 2);
    let deleted = table.apply(&id, Operation::Delete, b"", Origin::Http, now, 1003);
    assert_eq!(
        topics(&deleted),
        ["$aws/things/lamp/shadow/name/cfg/delete/accepted"]
    );
    assert!(!table.get(&id).unwrap().exists(), "kept as a tombstone");
    assert_eq!(table.list_named("lamp", 10, None), (vec![], None));
}

// The service: a router with one subscriber to every shadow topic of `lamp`.

fn subscriber(router: &Router) -> Arc<Session> {
    let kind = SessionKind {
        expiry: Duration::ZERO,
        mqtt5: false,
    };
    let live = Arc::new(LiveConnection::new("sub", None));
    let opened = router.open_session("sub", true, kind, 1, live);
    router.subscribe(
        &opened.session,
        "$aws/things/lamp/shadow/#",
        QoS::AtLeastOnce,
    );
    opened.session
}

fn received(session: &Session) -> Vec<(String, Value)> {
    session.with_state(|state| {
        std::iter::from_fn(|| state.next_outgoing())
            .map(|out| (out.delivery.topic.to_string(), body(&out.delivery.payload)))
            .collect()
    })
}

fn durable_service(
    path: &std::path::Path,
    delay: Duration,
) -> (ShadowService, Arc<Router>, Arc<Store>) {
    let config = Config::parse("").unwrap();
    let (store, recovered) = Store::open(path, delay, 1 << 20).unwrap();
    let router = Arc::new(Router::new(
        Arc::new(config.clone()),
        Some(store.clone()),
        Recovered::default(),
    ));
    let service = ShadowService::new(
        &config,
        Some(store.clone()),
        router.clone(),
        recovered.shadows,
    );
    (service, router, store)
}

#[tokio::test]
async fn answers_wait_for_the_store_and_keep_the_order_of_the_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (service, router, store) =
        durable_service(&dir.path().join("store.redb"), Duration::from_millis(300));
    let sub = subscriber(&router);
    let classic = ShadowId::classic("lamp");
    service.submit_mqtt(
        classic.clone(),
        Operation::Update,
        Bytes::from_static(UPDATE),
    );
    service.submit_mqtt(classic.clone(), Operation::Get, Bytes::from_static(b""));
    service.submit_mqtt(
        ShadowId::named("lamp", "x"),
        Operation::Get,
        Bytes::from_static(b""),
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        received(&sub).is_empty(),
        "nothing announced before the fsync"
    );
    assert_eq!(store.durable(), 0);
    // The HTTP caller waits behind them, and gets its own answer.
    let got = service
        .request(classic.clone(), Operation::Get, Bytes::new(), Origin::Http)
        .await
        .unwrap();
    assert_eq!(got["version"], 1);
    assert!(store.durable() >= 1);
    let seen: Vec<String> = received(&sub).into_iter().map(|(topic, _)| topic).collect();
    assert_eq!(
        seen,
        [
            "$aws/things/lamp/shadow/update/accepted",
            "$aws/things/lamp/shadow/update/delta",
            "$aws/things/lamp/shadow/update/documents",
            "$aws/things/lamp/shadow/get/accepted",
            "$aws/things/lamp/shadow/name/x/get/rejected",
        ]
    );
}

#[tokio::test]
async fn http_rejections_reach_the_caller_only() {
    let config = Config::parse("in_memory = true").unwrap();
    let router = Arc::new(Router::new(
        Arc::new(config.clone()),
        None,
        Recovered::default(),
    ));
    let service = ShadowService::new(&config, None, router.clone(), Vec::new());
    let sub = subscriber(&router);
    let id = ShadowId::named("lamp", "missing");
    let rejection = service
        .request(id.clone(), Operation::Delete, Bytes::new(), Origin::Http)
        .await
        .unwrap_err();
    assert_eq!(
        (rejection.code, rejection.message.as_str()),
        (404, "No shadow exists with name: 'missing'")
    );
    let bad = service
        .request(
            id,
            Operation::Update,
            Bytes::from_static(b"not json"),
            Origin::Http,
        )
        .await
        .unwrap_err();
    assert_eq!(bad.code, 400);
    assert!(received(&sub).is_empty());
}

#[tokio::test]
async fn shadows_and_their_versions_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let named = ShadowId::named("lamp", "cfg");
    {
        let (service, _router, store) = durable_service(&path, Duration::from_millis(1));
        for _ in 0..3 {
            service
                .request(
                    named.clone(),
                    Operation::Update,
                    Bytes::from_static(UPDATE),
                    Origin::Mqtt,
                )
                .await
                .unwrap();
        }
        let gone = service
            .request(named.clone(), Operation::Delete, Bytes::new(), Origin::Mqtt)
            .await
            .unwrap();
        assert_eq!(gone["version"], 3);
        store.close();
    }
    let (service, _router, _store) = durable_service(&path, Duration::from_millis(1));
    let missing = service
        .request(named.clone(), Operation::Get, Bytes::new(), Origin::Http)
        .await
        .unwrap_err();
    assert_eq!(missing.code, 404, "still deleted");
    let again = service
        .request(
            named,
            Operation::Update,
            Bytes::from_static(UPDATE),
            Origin::Http,
        )
        .await
        .unwrap();
    assert_eq!(
        again["version"], 4,
        "the version continues after the delete and the restart"
    );
}
