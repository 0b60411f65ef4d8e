//! The web console at `/console/` (docs/CONSOLE.md): a sign-in with the control plane's
//! admin key, then one page (HTML, CSS and JavaScript embedded from `assets/`) that drives
//! the broker through the control-plane API as the admin and opens its own MQTT connection
//! over WebSocket.
//!
//! What the browser holds after signing in is a random token in an `HttpOnly`,
//! `SameSite=Strict` cookie ([`crate::sign_ins`]), never the admin secret. Every API call
//! also carries `X-PubSub-Console: 1`, which a page of another site cannot send without a
//! CORS preflight (never granted here): that, with `SameSite=Strict`, keeps other sites
//! from driving the API with the cookie. `/console/api/iot/{path}` is answered by the one
//! control plane ([`control::answer_in_process`]) exactly as a signed request to `/{path}`
//! is; `/console/api/mqtt` hands the page a WebSocket URL presigned with the admin key for
//! five minutes (the broker signs it; the secret stays here).

mod form;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::json;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::control::{self, ApiRequest};

const SIGN_IN_HTML: &str = include_str!("assets/sign-in.html");
const CONSOLE_HTML: &str = include_str!("assets/console.html");
const CONSOLE_CSS: &str = include_str!("assets/console.css");
const CONSOLE_JS: &str = include_str!("assets/console.js");

/// The cookie that carries a sign-in's token.
const COOKIE: &str = "pubsub_console";
/// The header every API call must carry (see the module doc).
const API_HEADER: &str = "x-pubsub-console";
/// How long the page's presigned MQTT URL is good for (it is used at once).
const MQTT_URL_LIFETIME: Duration = Duration::from_secs(300);
/// Where the sign-in page's error message goes.
const ERROR_PLACEHOLDER: &str = "<!--ERROR-->";
/// What the pages may load: their own files, and the console's WebSocket to this host.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// Whether `path` is the console's (the TLS port hands those to the control-plane app).
pub(crate) fn serves(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

#[derive(Clone)]
struct Console {
    broker: Arc<Broker>,
    /// Served over HTTPS (the TLS port): cookies are `Secure` and the MQTT URL is `wss://`.
    https: bool,
}

/// The console's routes, to merge into the control-plane app.
pub(crate) fn router(broker: Arc<Broker>, https: bool) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async {
                (
                    StatusCode::PERMANENT_REDIRECT,
                    [(header::LOCATION, "/console/")],
                )
            }),
        )
        .route("/console/", get(page))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", axum::routing::post(sign_out))
        .route("/console/assets/console.css", get(style))
        .route("/console/assets/console.js", get(script))
        .route("/console/api/mqtt", get(mqtt_url))
        .route("/console/api/iot/{*path}", any(api))
        .with_state(Console { broker, https })
}

/// The sign-in token the request's cookie carries, if it is a valid sign-in.
fn signed_in(console: &Console, headers: &HeaderMap) -> Option<String> {
    let token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|cookies| form::cookie(cookies, COOKIE))?;
    console
        .broker
        .sign_ins
        .is_valid(&token, Instant::now())
        .then_some(token)
}

/// The headers every console answer carries: no caching, no framing, only our own files.
fn page_headers(content_type: &'static str) -> [(header::HeaderName, HeaderValue); 4] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ]
}

fn see_other(location: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

fn unauthorized(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        page_headers("application/json"),
        json!({ "message": why }).to_string(),
    )
        .into_response()
}

/// `GET /console/`: the page, or the way to sign in.
async fn page(State(console): State<Console>, headers: HeaderMap) -> Response {
    match signed_in(&console, &headers) {
        Some(_) => (page_headers("text/html; charset=utf-8"), CONSOLE_HTML).into_response(),
        None => see_other("/console/sign-in"),
    }
}

fn sign_in_html(error: Option<&str>) -> String {
    SIGN_IN_HTML.replace(ERROR_PLACEHOLDER, &form::html_escape(error.unwrap_or("")))
}

async fn sign_in_page() -> Response {
    (page_headers("text/html; charset=utf-8"), sign_in_html(None)).into_response()
}

/// `POST /console/sign-in` (form fields `accessKeyId`, `secretAccessKey`): the admin key
/// pair starts a sign-in; anything else is 401 with the page and its reason.
async fn sign_in(State(console): State<Console>, body: Bytes) -> Response {
    let fields = form::parse_urlencoded(&body);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or("")
    };
    let (access_key_id, secret) = (field("accessKeyId").trim(), field("secretAccessKey"));
    let refused = |why: &str, shown: &str| {
        warn!(
            access_key_id,
            reason = why,
            "console sign-in refused: HTTP 401"
        );
        (
            StatusCode::UNAUTHORIZED,
            page_headers("text/html; charset=utf-8"),
            sign_in_html(Some(shown)),
        )
            .into_response()
    };
    let admin = match console.broker.auth.admin_key() {
        Ok(admin) => admin,
        Err(error) => {
            return refused(
                &format!("admin credentials unavailable: {error}"),
                "The broker cannot read its admin credentials; see its log.",
            )
        }
    };
    if access_key_id.is_empty() || secret.is_empty() {
        return refused(
            "access key id or secret missing",
            "Enter the access key ID and the secret access key.",
        );
    }
    if !form::same_secret(access_key_id, &admin.0) || !form::same_secret(secret, &admin.1) {
        return refused(
            "not the admin key pair ([admin] or <data_dir>/admin-credentials)",
            "The access key ID or the secret access key is not the broker's admin key pair.",
        );
    }
    let token = console.broker.sign_ins.begin(Instant::now());
    info!(access_key_id, "console sign-in");
    let secure = if console.https { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}{secure}",
        crate::sign_ins::SIGN_IN_LIFETIME.as_secs()
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console/".to_owned()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response()
}

/// `POST /console/sign-out`: the token stops working and the cookie is cleared.
async fn sign_out(State(console): State<Console>, headers: HeaderMap) -> Response {
    if let Some(token) = signed_in(&console, &headers) {
        console.broker.sign_ins.end(&token);
        info!("console sign-out");
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console/sign-in".to_owned()),
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0"),
            ),
        ],
    )
        .into_response()
}

/// The style sheet: public, the sign-in page uses it.
async fn style() -> Response {
    (page_headers("text/css; charset=utf-8"), CONSOLE_CSS).into_response()
}

/// The page's script: only for a signed-in browser.
async fn script(State(console): State<Console>, headers: HeaderMap) -> Response {
    match signed_in(&console, &headers) {
        Some(_) => (page_headers("text/javascript; charset=utf-8"), CONSOLE_JS).into_response(),
        None => unauthorized("sign in first: /console/sign-in"),
    }
}

/// `Err` (a 401) unless the request is a signed-in console's API call.
fn api_caller(console: &Console, headers: &HeaderMap) -> Result<(), Box<Response>> {
    if headers.get(API_HEADER).and_then(|v| v.to_str().ok()) != Some("1") {
        return Err(Box::new(unauthorized(
            "console API calls carry the header X-PubSub-Console: 1",
        )));
    }
    match signed_in(console, headers) {
        Some(_) => Ok(()),
        None => Err(Box::new(unauthorized(
            "not signed in (or the sign-in expired)",
        ))),
    }
}

/// `GET /console/api/mqtt`: a WebSocket URL for this host, presigned with the admin key.
async fn mqtt_url(State(console): State<Console>, headers: HeaderMap) -> Response {
    if let Err(refusal) = api_caller(&console, &headers) {
        return *refusal;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return (StatusCode::BAD_REQUEST, "a Host header is needed").into_response();
    };
    let (access_key_id, secret) = match console.broker.auth.admin_key() {
        Ok(admin) => admin.clone(),
        Err(error) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    };
    let credentials =
        aws_credential_types::Credentials::new(access_key_id, secret, None, None, "pubsub-console");
    let scheme = if console.https { "wss" } else { "ws" };
    let url = iot::sigv4::presign_websocket_url(
        scheme,
        host,
        &console.broker.config.region,
        iot::sigv4::SERVICES[0],
        &credentials,
        SystemTime::now(),
        MQTT_URL_LIFETIME,
    );
    match url {
        Ok(url) => {
            let client_id = format!("console-{}", crate::secrets::random_alphanumeric(12));
            (
                page_headers("application/json"),
                json!({ "url": url, "clientId": client_id }).to_string(),
            )
                .into_response()
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    }
}

/// `/console/api/iot/{path}`: the control plane's answer to `/{path}`, as the admin.
async fn api(
    State(console): State<Console>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = api_caller(&console, &headers) {
        return *refusal;
    }
    // The path as received (still percent-encoded, as the control plane reads it).
    let path = uri
        .path()
        .strip_prefix("/console/api/iot")
        .unwrap_or("/")
        .to_owned();
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(name, _)| *name != header::COOKIE)
        .filter_map(|(name, value)| value.to_str().ok().map(|value| (name.as_str(), value)))
        .collect();
    let request = ApiRequest {
        method: method.as_str(),
        path: &path,
        query: uri.query().unwrap_or(""),
        headers: &pairs,
        body: &body,
    };
    let mut response = control::answer_in_process(&console.broker, &request)
        .await
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
