//! `CognitoCredentialsProvider` against a fake Cognito Identity service served here (hyper 1,
//! HTTP/1.1, plain and TLS), and — ignored by default — against a real endpoint (the
//! broker's emulation): `PUBSUB_COGNITO_ENDPOINT=http://127.0.0.1:8088/
//! PUBSUB_IDENTITY_POOL_ID=us-east-1:… cargo test -p pubsub --test cognito -- --ignored`.

mod broker_support;
mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pubsub::cognito::{CognitoCredentialsProvider, CognitoError};
use pubsub::user_pool::{SignInError, UserPoolCredentialsProvider};
use pubsub::ProvideCredentials;
use serde_json::{json, Value};

const POOL: &str = "us-east-1:11111111-2222-3333-4444-555555555555";
const IDENTITY: &str = "us-east-1:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    content_type: Option<String>,
    target: Option<String>,
    authorization: Option<String>,
    body: Value,
}

/// What the fake answers: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);
type Handler = Arc<dyn Fn(&Seen, usize) -> Answer + Send + Sync>;

struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn targets(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .map(|s| s.target.unwrap_or_default())
            .collect()
    }
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    handler: Handler,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut s = Seen {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        content_type: header("content-type"),
        target: header("x-amz-target"),
        authorization: header("authorization"),
        body: Value::Null,
    };
    let body = req.into_body().collect().await.unwrap().to_bytes();
    s.body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut v = seen.lock().unwrap();
        v.push(s.clone());
        v.len() - 1
    };
    let (status, headers, body) = handler(&s, n);
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1");
    for (k, v) in headers {
        r = r.header(k, v);
    }
    Ok(r.body(Full::new(Bytes::from(body))).unwrap())
}

/// Serve `handler` on 127.0.0.1 (plain HTTP, or TLS with `tls`).
async fn serve(
    handler: impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler: Handler = Arc::new(handler);
    let seen2 = seen.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (seen, handler, tls) = (seen2.clone(), handler.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    handle(req, seen.clone(), handler.clone())
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    });
    Fake {
        url: format!("{scheme}://localhost:{port}/"),
        seen,
    }
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A well-behaved Cognito: GetId → IDENTITY; credentials numbered by request, expiring
/// `ttl` seconds from now.
fn cognito(ttl: u64) -> impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static {
    move |s, n| match s.target.as_deref() {
        Some("AWSCognitoIdentityService.GetId") => {
            (200, vec![], json!({ "IdentityId": IDENTITY }).to_string())
        }
        Some("AWSCognitoIdentityService.GetCredentialsForIdentity") => (
            200,
            vec![],
            json!({
                "IdentityId": s.body["IdentityId"],
                "Credentials": {
                    "AccessKeyId": format!("ASIAKEY{n}"),
                    "SecretKey": format!("secret{n}"),
                    "SessionToken": format!("token{n}"),
                    "Expiration": epoch_now() + ttl,
                }
            })
            .to_string(),
        ),
        _ => (
            400,
            vec![],
            json!({"__type": "UnknownOperationException"}).to_string(),
        ),
    }
}

/// The `CognitoError` behind a `CredentialsError`.
fn cognito_error(e: &(dyn std::error::Error + 'static)) -> CognitoError {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<CognitoError>() {
            return c.clone();
        }
        cur = err.source();
    }
    panic!("no CognitoError in {e:?}");
}

#[tokio::test]
async fn get_id_then_credentials_with_exact_requests() {
    let fake = serve(cognito(3600), None).await;
    let provider = CognitoCredentialsProvider::builder(POOL, "us-east-1")
        .endpoint(&fake.url)
        .login("accounts.google.com", "google-token")
        .login(
            "cognito-idp.us-east-1.amazonaws.com/us-east-1_Pool",
            "idp-token",
        )
        .build()
        .unwrap();
    let before = epoch_now();
    let c = provider.provide_credentials().await.unwrap();
    assert_eq!(c.access_key_id(), "ASIAKEY1");
    assert_eq!(c.secret_access_key(), "secret1");
    assert_eq!(c.session_token(), Some("token1"));
    let exp = c
        .expiry()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((before + 3600..=epoch_now() + 3600).contains(&exp), "{exp}");

    let logins = json!({
        "accounts.google.com": "google-token",
        "cognito-idp.us-east-1.amazonaws.com/us-east-1_Pool": "idp-token",
    });
    let seen = fake.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/");
        assert_eq!(
            s.content_type.as_deref(),
            Some("application/x-amz-json-1.1")
        );
        assert_eq!(s.authorization, None, "Cognito calls are unsigned");
    }
    assert_eq!(
        seen[0].target.as_deref(),
        Some("AWSCognitoIdentityService.GetId")
    );
    assert_eq!(
        seen[0].body,
        json!({ "IdentityPoolId": POOL, "Logins": logins })
    );
    assert_eq!(
        seen[1].target.as_deref(),
        Some("AWSCognitoIdentityService.GetCredentialsForIdentity")
    );
    assert_eq!(
        seen[1].body,
        json!({ "IdentityId": IDENTITY, "Logins": logins })
    );
    assert_eq!(provider.identity_id().await.unwrap(), IDENTITY);
    assert_eq!(fake.seen().len(), 2, "identity id is cached");
}

#[tokio::test]
async fn unauthenticated_omits_logins_and_identity_id_alone() {
    let fake = serve(cognito(3600), None).await;
    let provider = CognitoCredentialsProvider::builder(POOL, "us-east-1")
        .endpoint(&fake.url)
        .build()
        .unwrap();
    assert_eq!(provider.identity_id().await.unwrap(), IDENTITY);
    assert_eq!(provider.identity_id().await.unwrap(), IDENTITY);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "GetId once");
    assert_eq!(seen[0].body, json!({ "IdentityPoolId": POOL }));
    provider.provide_credentials().await.unwrap();
    assert_eq!(
        fake.targets(),
        [
            "AWSCognitoIdentityService.GetId",
            "AWSCognitoIdentityService.GetCredentialsForIdentity"
        ]
    );
    assert_eq!(fake.seen()[1].body, json!({ "IdentityId": IDENTITY }));
}

#[tokio::test]
async fn fixed_identity_id_skips_get_id() {
    let fake = serve(cognito(3600), None).await;
    let provider = CognitoCredentialsProvider::builder(POOL, "us-east-1")
        .endpoint(&fake.url)
        .identity_id("us-east-1:fixed")
        .build()
        .unwrap();
    provider.provide_credentials().await.unwrap();
    assert_eq!(
        fake.targets(),
        ["AWSCognitoIdentityService.GetCredentialsForIdentity"]
    );
    assert_eq!(
        fake.seen()[0].body,
        json!({ "IdentityId": "us-east-1:fixed" })
    );
    assert_eq!(provider.identity_id().await.unwrap(), "us-east-1:fixed");
}

#[tokio::test]
async fn credentials_are_cached() {
    let fake = serve(cognito(3600), None).await;
    let provider = CognitoCredentialsProvider::builder(POOL, "us-east-1")
        .endpoint(&fake.url)
        .build()
        .unwrap();
    let a = provider.provide_credentials().await.unwrap();
    assert_eq!(fake.seen().len(), 2);
    let b = provider.provide_credentials().await.unwrap();
    // A clone shares the cache.
    let c = provider.clone().provide_credentials().await.unwrap();
    assert_eq!(
        fake.seen().len(),
        2,
        "no HTTP request for cached credentials"
    );
    assert_eq!(a.access_key_id(), b.access_key_id());
    assert_eq!(a.access_key_id(), c.access_key_id());

    // Concurrent callers share one fetch.
    provider.clear_credentials().await;
    let (x, y) = tokio::join!(
        provider.provide_credentials(),
        provider.provide_credentials()
    );
    assert_eq!(x.unwrap().access_key_id(), y.unwrap().access_key_id());
    assert_eq!(
        fake.targets()[2..],
        ["AWSCognitoIdentityService.GetCredentialsForIdentity"]
    );
}

#[tokio::test]
async fn refreshes_before_expiry() {
    // Credentials live 2 s: refresh at half their lifetime (1 s), long before the 5-minute margin.
    let fake = serve(cognito(2), None).await;
    let provider = CognitoCredentialsProvider::builder(POOL, "us-east-1")
        .endpoint(&fake.url)
        .build()
        .unwrap();
    let first = provider.provide_credentials().await.unwrap();
    let again = provider.provide_credentials().await.unwrap();
    assert_eq!(first.access_key_id(), again.access_key_id());
    assert_eq!(fake.seen().len(), 2);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = provider.provide_credentials().await.unwrap();
    assert_ne!(first.access_key_id(), second.access_key_id());
    assert_eq!(
        fake.targets(),
        [
            "AWSCognitoIdentityService.GetId",
            "AWSCognitoIdentityService.GetCredentialsForIdentity",
            "AWSCognitoIdentityService.GetCredentialsForIdentity",
        ],
        "refresh reuses the identity id"
    );
}

#[tokio::test]
async fn error_answer_surfaces_type_and_message() {
    let fake = serve(
        |_, _| {
            (
                400,
                vec![],
                json!({
                    "__type": "com.amazonaws.cognito.identity#ResourceNotFoundException",
                    "message": "IdentityPool 'us-east-1:nope' not found."
                })
                .to_string(),
            )
        },
        None,
    )
    .await;
    let provider = CognitoCredentialsProvider::builder("us-east-1:nope", "us-east-1")
        .endpoint(&fake.url)
        .build()
        .unwrap();
    let e = provider.provide_credentials().await.unwrap_err();
    assert!(
        matches!(
            e,
            aws_credential_types::provider::error::CredentialsError::ProviderError(_)
        ),
        "{e:?}"
    );
    let c = cognito_error(&e);
    assert_eq!(c.operation(), "GetId");
    assert_eq!(c.status(), Some(400));
    assert_eq!(c.error_type(), "ResourceNotFoundException");
    assert_eq!(c.message(), "IdentityPool 'us-east-1:nope' not found.");
    assert_eq!(
        c.to_string(),
        "Cognito GetId: ResourceNotFoundException (HTTP 400): IdentityPool 'us-east-1:nope' not found."
    );
    // identity_id() reports the same error.
    let e = provider.identity_id().await.unwrap_err();
    assert_eq!(cognito_error(&e).error_type(), "ResourceNotFoundException");
}

#[tokio::test]
async fn error_type_from_header() {
    // GetId works; GetCredentialsForIdentity answers with the type only in x-amzn-ErrorType.
    let fake = serve(
        |s, n| match s.target.as_deref() {
            Some("AWSCognitoIdentityService.GetId") => cognito(3600)(s, n),
            _ => (
                400,
                vec![(
                    "x-amzn-ErrorType",
                    "NotAuthorizedException:http://internal.amazon.com/coral/com.amazonaws.cognito.identity/".to_string(),
                )],
                json!({ "Message": "Unauthenticated access is not supported for this identity pool." })
                    .to_string(),
            ),
        },
        None,
    )
    .await;
    let provider = CognitoCredentialsProvider::builder(POOL, "us-east-1")
        .endpoint(&fake.url)
        .build()
        .unwrap();
    let e = provider.provide_credentials().await.unwrap_err();
    let c = cognito_error(&e);
    assert_eq!(c.operation(), "GetCredentialsForIdentity");
    assert_eq!(c.error_type(), "NotAuthorizedException");
    assert_eq!(
        c.message(),
        "Unauthenticated access is not supported for this identity pool."
    );
    // The identity id from GetId stays cached.
    assert_eq!(provider.identity_id().await.unwrap(), IDENTITY);
    assert_eq!(fake.seen().len(), 2);
}

#[tokio::test]
async fn connection_refused_is_a_provider_error() {
    let port = common::free_port();
    let provider = CognitoCredentialsProvider::builder(POOL, "us-east-1")
        .endpoint(format!("http://127.0.0.1:{port}/"))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let e = provider.provide_credentials().await.unwrap_err();
    let c = cognito_error(&e);
    assert_eq!((c.error_type(), c.status()), ("NetworkError", None));
}

#[tokio::test]
async fn https_endpoint_with_ca_file() {
    use rustls_pki_types::pem::PemObject;
    let pki = common::Pki::new();
    let dir = common::TempDir::new("cognito");
    let (ca, _, _) = pki.write_server_files(dir.path());
    let certs =
        vec![rustls_pki_types::CertificateDer::from_pem_slice(pki.server_pem.as_bytes()).unwrap()];
    let key =
        rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let fake = serve(
        cognito(3600),
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))),
    )
    .await;
    assert!(fake.url.starts_with("https://localhost:"));

    let provider = CognitoCredentialsProvider::builder(POOL, "us-east-1")
        .endpoint(&fake.url)
        .ca_file(&ca)
        .build()
        .unwrap();
    let c = provider.provide_credentials().await.unwrap();
    assert_eq!(c.access_key_id(), "ASIAKEY1");

    // Without the CA (webpki roots only) the local certificate is not trusted.
    let untrusting = CognitoCredentialsProvider::builder(POOL, "us-east-1")
        .endpoint(&fake.url)
        .build()
        .unwrap();
    let e = untrusting.provide_credentials().await.unwrap_err();
    assert_eq!(cognito_error(&e).error_type(), "NetworkError");

    // A CA file without certificates is refused at build time.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    assert!(CognitoCredentialsProvider::builder(POOL, "us-east-1")
        .ca_file(&empty)
        .build()
        .is_err());
}

#[tokio::test]
async fn plugs_into_service_configuration() {
    let provider = CognitoCredentialsProvider::builder(POOL, "us-east-1")
        .build()
        .unwrap();
    assert_eq!(
        provider.endpoint(),
        "https://cognito-identity.us-east-1.amazonaws.com/"
    );
    let _config = pubsub::ServiceConfiguration::new(
        "us-east-1",
        pubsub::Endpoint::parse("wss://xxxx-ats.iot.us-east-1.amazonaws.com/mqtt").unwrap(),
    )
    .credentials_provider(provider);
}

/// End to end with the broker in process: its Cognito emulation (on the `http` listener;
/// the TLS port answers only signed control-plane requests) gives a guest identity
/// credentials, the pool's unauthenticated role allows the chat policy's actions (as IoT
/// Core grants a guest exactly its role's permissions), and a SigV4 WebSocket connection
/// made with those credentials publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_in_process_end_to_end() {
    use broker_support::*;
    let mut setup = setup("cognito", true).await;
    setup.config.identity_pools = vec![broker::config::IdentityPoolConfig {
        name: "app-pool".into(),
        allow_unauthenticated: true,
        credentials_ttl: Duration::from_secs(3600),
        unauthenticated_role_policy: Some(POLICY_DOCUMENT.into()),
        ..Default::default()
    }];
    setup.config.listeners.http = "127.0.0.1:0".into();
    let running = broker::start(setup.config.clone()).await.unwrap();
    let p = ports(&running);
    let pools = list(&running, "AWSCognitoIdentityService.ListIdentityPools").await;
    assert_eq!(pools["IdentityPools"].as_array().unwrap().len(), 1);
    let pool = pools["IdentityPools"][0]["IdentityPoolId"]
        .as_str()
        .unwrap()
        .to_owned();

    let cognito_url = format!("http://{}/", running.address("http").unwrap());
    let provider = CognitoCredentialsProvider::builder(&pool, "us-east-1")
        .endpoint(&cognito_url)
        .build()
        .unwrap();
    let identity = provider.identity_id().await.unwrap();
    assert!(identity.starts_with("us-east-1:"), "{identity}");
    let c = provider
        .provide_credentials()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(c.session_token().is_some());
    let left = c
        .expiry()
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(3500), "{left:?}");
    let config = service(&setup, p, no_reconnect()).credentials_provider(provider.clone());
    let m = pubsub::DataManager::new(config);
    m.connect_using_websocket("cognito-app", true, |_| {})
        .unwrap();
    wait_connected(&m).await;
    let outcome = tokio::time::timeout(
        T,
        m.publish("chat/cognito", "hello", pubsub::QoS::AtLeastOnce),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(outcome, pubsub::PublishOutcome::Acknowledged);
    m.disconnect_and_wait().await;

    // A pool the broker does not know: its error type and message come through.
    let unknown = CognitoCredentialsProvider::builder(
        "us-east-1:00000000-0000-0000-0000-000000000000",
        "us-east-1",
    )
    .endpoint(&cognito_url)
    .build()
    .unwrap();
    let e = unknown.provide_credentials().await.unwrap_err();
    let c = cognito_error(&e);
    assert_eq!((c.operation(), c.status()), ("GetId", Some(400)));
    assert_eq!(c.error_type(), "ResourceNotFoundException", "{c}");
    assert!(!c.message().is_empty());
}

/// Against a real Cognito Identity endpoint, e.g. the broker's emulation:
/// `PUBSUB_COGNITO_ENDPOINT` (URL) and `PUBSUB_IDENTITY_POOL_ID`; `PUBSUB_COGNITO_CA`
/// (optional PEM file) for an HTTPS endpoint with a local CA.
#[tokio::test]
#[ignore = "needs PUBSUB_COGNITO_ENDPOINT and PUBSUB_IDENTITY_POOL_ID"]
async fn against_broker() {
    let endpoint = std::env::var("PUBSUB_COGNITO_ENDPOINT").expect("PUBSUB_COGNITO_ENDPOINT");
    let pool = std::env::var("PUBSUB_IDENTITY_POOL_ID").expect("PUBSUB_IDENTITY_POOL_ID");
    let region = pool.split(':').next().unwrap_or("us-east-1").to_owned();
    let mut builder = CognitoCredentialsProvider::builder(&pool, region).endpoint(endpoint);
    if let Ok(ca) = std::env::var("PUBSUB_COGNITO_CA") {
        builder = builder.ca_file(ca);
    }
    let provider = builder.build().unwrap();
    let id = provider.identity_id().await.unwrap();
    assert!(id.contains(':'), "identity id {id:?}");
    let c = provider
        .provide_credentials()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!c.access_key_id().is_empty());
    assert!(c.session_token().is_some());
    assert!(c.expiry().unwrap() > SystemTime::now());
    // Cached: the same credentials again.
    let again = provider.provide_credentials().await.unwrap();
    assert_eq!(c.access_key_id(), again.access_key_id());
    assert_eq!(provider.identity_id().await.unwrap(), id);
    println!("identity {id}, access key {}", c.access_key_id());
}

// ---- UserPoolCredentialsProvider against a user pool served here: the server side of
// USER_SRP_AUTH is iot::cognito::srp's (the broker's), the identity side `cognito(ttl)`.

const USER_POOL: &str = "us-east-1_AbCdEf123";
const USER_ID_FOR_SRP: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
const PASSWORD: &str = "Correct-Horse-1";
const LOGIN_KEY: &str = "cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123";

/// The fake user pool's knobs and what it handed out.
#[derive(Default)]
struct PoolState {
    /// Sessions of InitiateAuth: (SRP_A, b, secret block).
    sessions: Vec<(String, [u8; 32], String)>,
    sign_ins: usize,
    refuse_refresh: bool,
}

/// A user pool with one user (`alice`, internal id USER_ID_FOR_SRP) whose tokens live
/// `token_ttl` seconds, federated into an identity pool whose credentials live `cred_ttl`.
/// A Cognito list operation (`X-Amz-Target`), answered in process as the admin.
async fn list(running: &broker::RunningBroker, target: &str) -> serde_json::Value {
    let listed = running
        .control(&broker::control::ApiRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &[("x-amz-target", target)],
            body: br#"{"MaxResults": 60}"#,
        })
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    serde_json::from_str(&listed.body).unwrap()
}

fn user_pool(
    token_ttl: u64,
    cred_ttl: u64,
    state: Arc<Mutex<PoolState>>,
) -> impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static {
    use base64::Engine as _;
    use iot::cognito::srp;
    let verifier = srp::make_verifier(
        iot::cognito::pool_name(USER_POOL),
        USER_ID_FOR_SRP,
        PASSWORD,
        b"fixed test salt!",
    );
    let not_authorized = |m: &str| {
        (
            400,
            vec![],
            json!({"__type": "NotAuthorizedException", "message": m}).to_string(),
        )
    };
    let identity = cognito(cred_ttl);
    move |s, n| {
        let mut st = state.lock().unwrap();
        let ok = |v: Value| (200, vec![], v.to_string());
        match s.target.as_deref() {
            Some("AWSCognitoIdentityProviderService.InitiateAuth") => {
                let params = &s.body["AuthParameters"];
                match s.body["AuthFlow"].as_str() {
                    Some("USER_SRP_AUTH") if params["USERNAME"] == "alice" => {
                        let b = [n as u8 + 1; 32];
                        let block = base64::engine::general_purpose::STANDARD
                            .encode(format!("secret block {n}"));
                        st.sessions.push((
                            params["SRP_A"].as_str().unwrap().to_owned(),
                            b,
                            block.clone(),
                        ));
                        ok(json!({"ChallengeName": "PASSWORD_VERIFIER",
                            "Session": format!("session-{}", st.sessions.len() - 1),
                            "ChallengeParameters": {
                                "SALT": verifier.salt_hex, "SECRET_BLOCK": block,
                                "SRP_B": srp::server_public(&verifier.verifier_hex, &b),
                                "USER_ID_FOR_SRP": USER_ID_FOR_SRP, "USERNAME": USER_ID_FOR_SRP}}))
                    }
                    Some("USER_SRP_AUTH") => (
                        400,
                        vec![],
                        json!({"__type": "UserNotFoundException", "message": "User does not exist."})
                            .to_string(),
                    ),
                    Some("REFRESH_TOKEN_AUTH") if !st.refuse_refresh => {
                        let token = params["REFRESH_TOKEN"].as_str().unwrap();
                        ok(json!({"AuthenticationResult": {
                            "IdToken": format!("id-from-{token}"), "AccessToken": "access",
                            "ExpiresIn": token_ttl, "TokenType": "Bearer"}}))
                    }
                    _ => not_authorized("Refresh Token has expired"),
                }
            }
            Some("AWSCognitoIdentityProviderService.RespondToAuthChallenge") => {
                let r = &s.body["ChallengeResponses"];
                let session: usize = s.body["Session"].as_str().unwrap()["session-".len()..]
                    .parse()
                    .unwrap();
                let (a_pub, b, block) = st.sessions[session].clone();
                let ts = r["TIMESTAMP"].as_str().unwrap();
                assert_eq!(r["USERNAME"], USER_ID_FOR_SRP);
                assert_eq!(r["PASSWORD_CLAIM_SECRET_BLOCK"], block.as_str());
                let verified = srp::verify_claim(
                    iot::cognito::pool_name(USER_POOL),
                    USER_ID_FOR_SRP,
                    &verifier.verifier_hex,
                    &a_pub,
                    &b,
                    &block,
                    ts,
                    r["PASSWORD_CLAIM_SIGNATURE"].as_str().unwrap(),
                );
                if verified.is_err() {
                    return not_authorized("Incorrect username or password.");
                }
                st.sign_ins += 1;
                ok(json!({"AuthenticationResult": {
                    "IdToken": format!("id-{}", st.sign_ins), "AccessToken": "access",
                    "RefreshToken": format!("refresh-{}", st.sign_ins),
                    "ExpiresIn": token_ttl, "TokenType": "Bearer"}}))
            }
            _ => identity(s, n),
        }
    }
}

fn user_provider(url: &str, username: &str, password: &str) -> UserPoolCredentialsProvider {
    UserPoolCredentialsProvider::builder(USER_POOL, "client-1", POOL, username, password)
        .endpoint(url)
        .build()
        .unwrap()
}

fn sign_in_error(e: &(dyn std::error::Error + 'static)) -> SignInError {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<SignInError>() {
            return c.clone();
        }
        cur = err.source();
    }
    panic!("no SignInError in {e:?}");
}

#[tokio::test]
async fn user_pool_sign_in_then_identity_credentials() {
    let state = Arc::new(Mutex::new(PoolState::default()));
    let fake = serve(user_pool(3600, 3600, state.clone()), None).await;
    let provider = user_provider(&fake.url, "alice", PASSWORD);
    let c = provider.provide_credentials().await.unwrap();
    assert_eq!(c.access_key_id(), "ASIAKEY3");
    assert_eq!(
        fake.targets(),
        [
            "AWSCognitoIdentityProviderService.InitiateAuth",
            "AWSCognitoIdentityProviderService.RespondToAuthChallenge",
            "AWSCognitoIdentityService.GetId",
            "AWSCognitoIdentityService.GetCredentialsForIdentity",
        ]
    );
    let seen = fake.seen();
    assert_eq!(seen[0].body["AuthFlow"], "USER_SRP_AUTH");
    assert_eq!(seen[0].body["ClientId"], "client-1");
    let ts = seen[1].body["ChallengeResponses"]["TIMESTAMP"]
        .as_str()
        .unwrap();
    assert!(ts.contains(" UTC "), "{ts}");
    let logins = json!({ LOGIN_KEY: "id-1" });
    assert_eq!(
        seen[2].body,
        json!({"IdentityPoolId": POOL, "Logins": logins})
    );
    assert_eq!(
        seen[3].body,
        json!({"IdentityId": IDENTITY, "Logins": logins})
    );
    // Cached: no more requests.
    assert_eq!(provider.identity_id().await.unwrap(), IDENTITY);
    let again = provider.provide_credentials().await.unwrap();
    assert_eq!(again.access_key_id(), "ASIAKEY3");
    assert_eq!(fake.seen().len(), 4);
    assert_eq!(provider.tokens().await.unwrap().id_token, "id-1");
}

#[tokio::test]
async fn user_pool_refusals_carry_type_and_message() {
    let state = Arc::new(Mutex::new(PoolState::default()));
    let fake = serve(user_pool(3600, 3600, state), None).await;
    let wrong = user_provider(&fake.url, "alice", "not-the-password");
    let e = wrong.sign_in().await.unwrap_err();
    assert_eq!(e.error_type(), Some("NotAuthorizedException"));
    assert!(
        e.to_string().contains("Incorrect username or password."),
        "{e}"
    );
    // Through ProvideCredentials, the same error is the source.
    let e = wrong.provide_credentials().await.unwrap_err();
    let e = sign_in_error(&e);
    assert_eq!(e.error_type(), Some("NotAuthorizedException"));
    let SignInError::Service(c) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(c.operation(), "RespondToAuthChallenge");

    let nobody = user_provider(&fake.url, "bob", PASSWORD);
    let e = nobody.identity_id().await.unwrap_err();
    assert_eq!(e.error_type(), Some("UserNotFoundException"));
    assert!(fake
        .targets()
        .iter()
        .all(|t| t.starts_with("AWSCognitoIdentityProviderService.")));
}

#[tokio::test]
async fn user_pool_refreshes_tokens_then_signs_in_again() {
    let state = Arc::new(Mutex::new(PoolState::default()));
    // Tokens and credentials of 2 s: renewed after 1 s (half their lifetime).
    let fake = serve(user_pool(2, 2, state.clone()), None).await;
    let provider = user_provider(&fake.url, "alice", PASSWORD);
    provider.provide_credentials().await.unwrap();
    assert_eq!(fake.seen().len(), 4);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    provider.provide_credentials().await.unwrap();
    let seen = fake.seen();
    assert_eq!(seen.len(), 6, "{:#?}", fake.targets());
    assert_eq!(seen[4].body["AuthFlow"], "REFRESH_TOKEN_AUTH");
    assert_eq!(seen[4].body["AuthParameters"]["REFRESH_TOKEN"], "refresh-1");
    assert_eq!(
        seen[5].body,
        json!({"IdentityId": IDENTITY, "Logins": {LOGIN_KEY: "id-from-refresh-1"}}),
        "identity id kept, refreshed ID token sent"
    );

    // The refresh token is refused: a fresh SRP sign-in follows.
    state.lock().unwrap().refuse_refresh = true;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    provider.provide_credentials().await.unwrap();
    assert_eq!(
        fake.targets()[6..],
        [
            "AWSCognitoIdentityProviderService.InitiateAuth",
            "AWSCognitoIdentityProviderService.InitiateAuth",
            "AWSCognitoIdentityProviderService.RespondToAuthChallenge",
            "AWSCognitoIdentityService.GetCredentialsForIdentity",
        ]
    );
    assert_eq!(state.lock().unwrap().sign_ins, 2);
    assert_eq!(provider.tokens().await.unwrap().id_token, "id-2");
}

/// The broker's user pool and identity pool in process: the SDK's SRP sign-in is accepted, its
/// ID token verifies with the pool's JWKS and refreshes with REFRESH_TOKEN_AUTH, refusals carry
/// Cognito's type; the identity id is stable across sign-ins, and the credentials connect over
/// a SigV4 WebSocket once an IoT policy is attached to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_pool_sign_in_against_the_broker() {
    use broker::config::{UserPoolClientConfig, UserPoolConfig, UserPoolUserConfig};
    use broker_support::*;
    const CLIENT: &str = "sdkappclient0001";
    let mut setup = setup("user-pool", true).await;
    let user = |username: &str, confirmed: bool| UserPoolUserConfig {
        username: username.into(),
        password: "Passw0rd!".into(),
        attributes: Default::default(),
        confirmed,
    };
    setup.config.user_pools = vec![UserPoolConfig {
        name: "app-users".into(),
        auto_confirm: false,
        confirmation_code: broker::config::default_confirmation_code(),
        password_policy: Default::default(),
        clients: vec![UserPoolClientConfig {
            name: "app".into(),
            client_id: Some(CLIENT.into()),
            explicit_auth_flows: vec![
                "ALLOW_USER_SRP_AUTH".into(),
                "ALLOW_REFRESH_TOKEN_AUTH".into(),
            ],
            // Short-lived tokens: the provider refreshes them after 1 s.
            access_token_validity: Duration::from_secs(2),
            id_token_validity: Duration::from_secs(2),
            refresh_token_validity: Duration::from_secs(3600),
        }],
        users: vec![user("alice", true), user("carol", false)],
    }];
    // Signed-in users of the pool get the chat policy as their role (the IoT policy attached
    // to the identity must allow too: IoT Core's two-policy rule).
    setup.config.identity_pools = vec![broker::config::IdentityPoolConfig {
        name: "app-pool".into(),
        authenticated_role_policy: Some(POLICY_DOCUMENT.into()),
        user_pools: vec![broker::config::UserPoolProviderConfig {
            user_pool: Some("app-users".into()),
            provider_name: None,
            client: Some("app".into()),
            client_id: None,
        }],
        ..Default::default()
    }];
    setup.config.listeners.http = "127.0.0.1:0".into();
    let running = broker::start(setup.config.clone()).await.unwrap();
    let identity_pool = {
        let pools = list(&running, "AWSCognitoIdentityService.ListIdentityPools").await;
        pools["IdentityPools"][0]["IdentityPoolId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let pools = list(&running, "AWSCognitoIdentityProviderService.ListUserPools").await;
    let pool_id = pools["UserPools"][0]["Id"].as_str().unwrap().to_owned();
    let url = format!("http://{}/", running.address("http").unwrap());
    let provider = |username: &str, password: &str| {
        UserPoolCredentialsProvider::builder(&pool_id, CLIENT, &identity_pool, username, password)
            .endpoint(&url)
            .build()
            .unwrap()
    };
    let jwks: Value = reqwest::get(format!("{url}{pool_id}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let now = || epoch_now();

    let alice = provider("alice", "Passw0rd!");
    let tokens = alice.sign_in().await.unwrap_or_else(|e| panic!("{e}"));
    let claims = iot::cognito::jwt::verify(&tokens.id_token, &jwks, now()).unwrap();
    assert_eq!(
        claims["iss"],
        format!("https://cognito-idp.us-east-1.amazonaws.com/{pool_id}")
    );
    assert_eq!(claims["token_use"], "id");
    assert_eq!(claims["aud"], CLIENT);
    assert_eq!(claims["cognito:username"], "alice");
    assert!(tokens.refresh_token.is_some());
    assert_eq!(alice.tokens().await.unwrap().id_token, tokens.id_token);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refreshed = alice.tokens().await.unwrap();
    assert_ne!(refreshed.id_token, tokens.id_token);
    assert_eq!(refreshed.refresh_token, tokens.refresh_token);
    let again = iot::cognito::jwt::verify(&refreshed.id_token, &jwks, now()).unwrap();
    assert_eq!(again["sub"], claims["sub"]);

    for (username, password, error_type) in [
        ("alice", "Wrong-passw0rd!", "NotAuthorizedException"),
        ("bob", "Passw0rd!", "UserNotFoundException"),
        ("carol", "Passw0rd!", "UserNotConfirmedException"),
    ] {
        let e = provider(username, password).sign_in().await.unwrap_err();
        assert_eq!(e.error_type(), Some(error_type), "{username}: {e}");
    }

    // The identity: one per user, the same for a second sign-in.
    let identity = alice.identity_id().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(identity.starts_with("us-east-1:"), "{identity}");
    let alice_again = provider("alice", "Passw0rd!");
    assert_eq!(alice_again.identity_id().await.unwrap(), identity);
    let c = alice
        .provide_credentials()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(c.session_token().is_some());

    // attach-policy, then the credentials connect over a SigV4 WebSocket and publish.
    let body = json!({ "target": identity }).to_string();
    let attached = running
        .control(&broker::control::ApiRequest {
            method: "PUT",
            path: &format!("/target-policies/{POLICY}"),
            query: "",
            headers: &[],
            body: body.as_bytes(),
        })
        .await;
    assert_eq!(attached.status, 200, "{}", attached.body);
    let config = service(&setup, ports(&running), no_reconnect()).credentials_provider(alice);
    let m = pubsub::DataManager::new(config);
    m.connect_using_websocket("alice-phone", true, |_| {})
        .unwrap();
    wait_connected(&m).await;
    let outcome = tokio::time::timeout(
        T,
        m.publish("chat/alice", "hello", pubsub::QoS::AtLeastOnce),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(outcome, pubsub::PublishOutcome::Acknowledged);
    m.disconnect_and_wait().await;
}
