//! The control plane: the subset of AWS IoT's REST API (and of the iot-data plane and
//! Cognito Identity) that apps and operators use, with AWS's paths, methods, JSON shapes,
//! status codes and error shapes, so boto3 and the AWS CLI work with `--endpoint-url`.
//!
//! One entry point, `answer`: an [`ApiRequest`] in, an [`Answer`] out, whatever carried
//! it (the `http` listener, HTTPS on the TLS port, `RunningBroker::control` in process) —
//! and [`answer_local`], the same
//! operations on a data directory without a running broker (`pubsub iot` offline). Every
//! request over the network must be SigV4-signed: by the `[admin]` credentials (an IAM
//! administrator: everything), or, for the iot-data operations (Publish and the shadow
//! API), by any access key the broker knows, whose principal's policies then decide
//! ([`Caller`]). The iot-data operations are also served to a device that proved itself
//! by its client certificate (HTTPS on ALPN `x-amzn-http-ca`, [`answer_for_certificate`]):
//! no signature then, the certificate's policies decide.
//!
//! Operations are answered by resource family: `certificates`, `policies` (and
//! test-authorization), `authorizers`, `things` (the registry's things and their
//! principals), `data` (iot-data), `shadows` (iot-data's shadow API), `cognito`,
//! `user_pools` (Cognito user pools, `cognito-idp`, and their JWKS), and
//! `views` (PubSub's own read-only views of the running broker, for the console). They
//! work on a `Plane`: the identity plane always, the data plane only while the broker
//! runs.

mod authorizers;
mod certificates;
mod cognito;
mod data;
mod policies;
mod shadows;
mod things;
mod user_pools;
mod views;

use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::SystemTime;

use axum::http::StatusCode;
use iot::sigv4::{self, SignedRequest};
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::auth::{Denied, IdentityPlane};
use crate::broker::{Broker, Started};
use crate::config::{CertificateStatus, Config};
use crate::registry::{
    status_name, AuthorizerRecord, CertificateIdentity, CertificateRecord, RegistryError,
};
use crate::router::Router;
use crate::shadow::ShadowService;

/// An AWS-shaped error: HTTP status, `x-amzn-ErrorType`, `{"message": …}` (or a
/// service's own error document carrying the same message, as the shadow API's).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    document: Option<Value>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        kind: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            document: None,
        }
    }

    /// The body is `document` (which should carry `message`, as boto3 reads it) instead
    /// of `{"message", "__type"}`; the exception name still goes in `x-amzn-ErrorType`.
    pub(super) fn with_document(mut self, document: Value) -> ApiError {
        self.document = Some(document);
        self
    }

    /// 403 for a caller whose policies do not allow what it asked (logged with the
    /// decision's reason).
    pub(super) fn forbidden(principal: &str, denied: &Denied) -> ApiError {
        warn!(
            principal,
            action = %denied.action,
            resource = %denied.resource,
            reason = %denied.decision.reason,
            "iot-data request refused: HTTP 403"
        );
        ApiError::new(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden")
    }

    pub(super) fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequestException", message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }
}

impl ApiError {
    fn into_answer(self) -> Answer {
        let body = self
            .document
            .unwrap_or_else(|| json!({ "message": self.message, "__type": self.kind }));
        Answer {
            status: self.status.as_u16(),
            error_kind: Some(self.kind),
            body: body.to_string(),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> ApiError {
        let message = error.to_string();
        match error {
            RegistryError::NotFound(_) => ApiError::not_found(message),
            RegistryError::AlreadyExists(_) => ApiError::new(
                StatusCode::CONFLICT,
                "ResourceAlreadyExistsException",
                message,
            ),
            RegistryError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "DeleteConflictException", message)
            }
            RegistryError::WrongState(_) => ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "CertificateStateException",
                message,
            ),
            RegistryError::Invalid(_) => ApiError::invalid(message),
            RegistryError::VersionConflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "VersionConflictException", message)
            }
            RegistryError::BadCertificate(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "CertificateValidationException",
                message,
            ),
            _ => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailureException",
                message,
            ),
        }
    }
}

pub(super) type ApiResult = Result<Value, ApiError>;

pub use crate::auth::admin_credentials;

/// A control-plane answer, whatever carried the request (the `http` listener, or HTTPS on
/// the TLS port's HTTP branch).
pub struct Answer {
    pub status: u16,
    pub error_kind: Option<&'static str>,
    pub body: String,
}

impl axum::response::IntoResponse for Answer {
    /// The HTTP response: the status, `x-amzn-ErrorType` on errors, the JSON body.
    fn into_response(self) -> axum::response::Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match self.error_kind {
            Some(kind) => (
                status,
                [
                    ("x-amzn-ErrorType", kind),
                    ("content-type", "application/json"),
                ],
                self.body,
            )
                .into_response(),
            None => (status, [("content-type", "application/json")], self.body).into_response(),
        }
    }
}

/// One control-plane request, as received.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    pub method: &'a str,
    /// As received (percent-encoded), as SigV4 signed it.
    pub path: &'a str,
    /// Without the `?`.
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// What the control plane works on: the identity plane, and the data plane while the
/// broker runs (disconnects, publish, retained messages).
pub(crate) struct Plane<'a> {
    auth: &'a IdentityPlane,
    router: Option<&'a Router>,
    shadows: Option<&'a ShadowService>,
    started: Option<&'a Started>,
}

impl Deref for Plane<'_> {
    type Target = IdentityPlane;

    fn deref(&self) -> &IdentityPlane {
        self.auth
    }
}

impl Plane<'_> {
    /// Closes a principal's connections (none when the broker is not running).
    pub(super) fn disconnect_principal(&self, principal: &str, why: &str) -> usize {
        self.router
            .map_or(0, |router| router.live.disconnect_principal(principal, why))
    }

    pub(super) fn disconnect_authorizer(&self, authorizer: &str, why: &str) -> usize {
        self.router.map_or(0, |router| {
            router.live.disconnect_authorizer(authorizer, why)
        })
    }

    /// The data plane, for operations that exist only while the broker runs.
    pub(super) fn data_plane(&self) -> Result<&Router, ApiError> {
        self.router.ok_or_else(needs_running_broker)
    }

    /// The Device Shadow service, which exists only while the broker runs.
    pub(super) fn shadows(&self) -> Result<&ShadowService, ApiError> {
        self.shadows.ok_or_else(needs_running_broker)
    }
}

/// What an operation of the running broker answers offline (`pubsub iot` on a data
/// directory).
pub(super) fn needs_running_broker() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailableException",
        "this operation needs a running broker",
    )
}

/// Who made a request, once its signature is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The `[admin]` key, or the program that runs the broker (in process, offline): an
    /// IAM administrator, allowed every operation.
    Admin,
    /// Another access key the broker knows (`[[credentials]]`, `create-access-key`,
    /// Cognito temporary credentials), for iot-data operations only: its principal's
    /// policies decide each one (for an identity pool's credentials, the role rule too).
    Principal(String, Option<crate::auth::CognitoPrincipal>),
    /// A client certificate verified in the TLS handshake (ALPN `x-amzn-http-ca`), for
    /// iot-data operations only: the certificate's policies decide, as for MQTT.
    Certificate(CertificateIdentity),
}

impl Caller {
    /// Who the caller stands for, unless it is the admin.
    fn principal(&self) -> Option<&str> {
        match self {
            Caller::Admin => None,
            Caller::Principal(principal, _) => Some(principal),
            Caller::Certificate(certificate) => Some(&certificate.certificate_id),
        }
    }

    /// `Ok` when the caller may do `action` on the resource: always for the admin, by its
    /// policies for a principal (403 `ForbiddenException` with a log line otherwise).
    pub(super) fn authorize(
        &self,
        plane: &Plane<'_>,
        action: iot::Action,
        kind: iot::ResourceKind,
        name: &str,
    ) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Principal(principal, cognito) => plane
                .authorize(principal, cognito.as_ref(), action, kind, name)
                .map_err(|denied| ApiError::forbidden(principal, &denied)),
            Caller::Certificate(certificate) => plane
                .authorize_certificate(certificate, action, kind, name)
                .map_err(|denied| ApiError::forbidden(&certificate.certificate_id, &denied)),
        }
    }
}

/// How the sender of a request is known.
enum Sender {
    /// By its SigV4 signature, to be verified.
    Signature,
    /// By the program it runs in (in process, or offline on the data directory): the admin.
    Trusted,
    /// By the client certificate the TLS handshake verified.
    Certificate(CertificateIdentity),
}

/// Authenticates (SigV4, the `[admin]` key) and answers one request.
pub(crate) async fn answer(broker: &Broker, request: &ApiRequest<'_>) -> Answer {
    answer_on(&running(broker), request, Sender::Signature).await
}

/// The API's answer without the signature check, for the program that runs the broker.
pub(crate) async fn answer_in_process(broker: &Broker, request: &ApiRequest<'_>) -> Answer {
    answer_on(&running(broker), request, Sender::Trusted).await
}

/// Answers one request from the holder of `certificate` (verified in the TLS handshake):
/// iot-data operations, authorized by the certificate's policies; the rest 403.
pub(crate) async fn answer_for_certificate(
    broker: &Broker,
    request: &ApiRequest<'_>,
    certificate: CertificateIdentity,
) -> Answer {
    answer_on(&running(broker), request, Sender::Certificate(certificate)).await
}

fn running(broker: &Broker) -> Plane<'_> {
    Plane {
        auth: &broker.auth,
        router: Some(&broker.router),
        shadows: Some(&broker.shadows),
        started: Some(&broker.started),
    }
}

/// Answers one request on a data directory, for `pubsub iot` while no broker runs: the
/// same operations as the API, with no signature to check (whoever can read the data
/// directory holds its secrets anyway). Operations of the data plane answer 503.
pub async fn answer_local(config: Config, request: &ApiRequest<'_>) -> Answer {
    let auth = match IdentityPlane::open_existing(std::sync::Arc::new(config)) {
        Ok(auth) => auth,
        Err(error) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailureException",
                error.to_string(),
            )
            .into_answer()
        }
    };
    let plane = Plane {
        auth: &auth,
        router: None,
        shadows: None,
        started: None,
    };
    answer_on(&plane, request, Sender::Trusted).await
}

/// Whether a request is one of the unsigned reads the control plane serves to anyone (a
/// user pool's JWKS), so that the TLS port hands it to the control plane.
pub(crate) fn serves_unsigned(method: &str, path: &str) -> bool {
    method == "GET" && user_pools::jwks_pool_id(path).is_some()
}

async fn answer_on(plane: &Plane<'_>, request: &ApiRequest<'_>, sender: Sender) -> Answer {
    let ApiRequest { method, path, .. } = *request;
    if method == "GET" {
        if let Some(pool_id) = user_pools::jwks_pool_id(path) {
            plane.refresh_registry();
            return match user_pools::jwks(plane, pool_id) {
                Ok(keys) => Answer {
                    status: 200,
                    error_kind: None,
                    body: keys.to_string(),
                },
                Err(error) => {
                    info!(%path, kind = error.kind, message = %error.message, "JWKS request failed");
                    idp_failure(404, error.kind, error.message)
                }
            };
        }
    }
    let target = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-amz-target"))
        .map(|(_, target)| *target);
    if let Some(operation) =
        target.and_then(|target| target.strip_prefix(user_pools::TARGET_PREFIX))
    {
        if let Sender::Certificate(certificate) = sender {
            let reason = admin_only(&certificate.certificate_id);
            warn!(%method, %path, %reason, "cognito-idp request refused: HTTP 403");
            return idp_failure(403, "NotAuthorizedException", reason);
        }
        let signed = matches!(sender, Sender::Signature);
        return answer_user_pools(plane, operation, request, signed).await;
    }
    let cognito_operation = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-amz-target"))
        .and_then(|(_, target)| target.strip_prefix("AWSCognitoIdentityService."));
    let shadow_api = shadows::is_shadow_path(path);
    let caller = match (sender, cognito_operation) {
        // Cognito is another service, not served on the devices' certificate endpoint.
        (Sender::Certificate(certificate), Some(_)) => {
            let reason = admin_only(&certificate.certificate_id);
            warn!(%method, %path, %reason, "Cognito request refused: HTTP 403");
            return ApiError::new(StatusCode::FORBIDDEN, "NotAuthorizedException", reason)
                .into_answer();
        }
        (sender, Some(operation)) => {
            let signed = matches!(sender, Sender::Signature);
            return answer_cognito(plane, operation, request, signed);
        }
        (Sender::Certificate(certificate), None) => Caller::Certificate(certificate),
        (Sender::Trusted, None) => Caller::Admin,
        (Sender::Signature, None) => match authenticate(plane, request) {
            Ok(caller) => caller,
            // The shadow API answers as IoT Core documents it: 401 `Unauthorized`.
            Err(reason) if shadow_api => {
                warn!(%method, %path, %reason, "iot-data request refused: HTTP 401");
                return shadows::unauthorized().into_answer();
            }
            Err(reason) => {
                warn!(%method, %path, %reason, "control plane request refused: HTTP 403");
                return ApiError::new(StatusCode::FORBIDDEN, "UnauthorizedException", reason)
                    .into_answer();
            }
        },
    };
    // Keys other than the admin's, and certificates, only reach iot-data operations, which
    // authorize them.
    if let Some(principal) = caller.principal() {
        if !shadow_api && !data::authorizes_principals(path) {
            let reason = admin_only(principal);
            warn!(%method, %path, %reason, "control plane request refused: HTTP 403");
            return ApiError::new(StatusCode::FORBIDDEN, "UnauthorizedException", reason)
                .into_answer();
        }
    }
    plane.refresh_registry();
    match route(plane, request, &caller).await {
        Ok(value) => {
            let principal = caller.principal().unwrap_or("admin");
            info!(%method, %path, principal, "control plane request");
            Answer {
                status: 200,
                error_kind: None,
                body: value.to_string(),
            }
        }
        Err(error) => {
            info!(%method, %path, kind = error.kind, message = %error.message, "control plane request failed");
            error.into_answer()
        }
    }
}

/// `Ok` when the request is SigV4-signed by the admin key: what `GET /metrics` asks with
/// `[admin] metrics_auth = true`. `Err` is the refusal's reason.
pub(crate) fn authenticate_admin(broker: &Broker, request: &ApiRequest<'_>) -> Result<(), String> {
    let caller = authenticate(&broker.auth, request)?;
    match caller.principal() {
        None => Ok(()),
        Some(principal) => Err(admin_only(principal)),
    }
}

/// Why a key other than the admin's is refused an operation of the control plane.
fn admin_only(principal: &str) -> String {
    format!("principal {principal} made a request only the control plane's [admin] key may make")
}

/// Hands a request to its resource family.
async fn route(plane: &Plane<'_>, request: &ApiRequest<'_>, caller: &Caller) -> ApiResult {
    let parts = segments(request.path);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    if shadows::is_shadow_api(&parts) {
        return shadows::route(plane, request, &parts, caller).await;
    }
    match parts.first().copied().unwrap_or_default() {
        "keys-and-certificate"
        | "certificates"
        | "certificate"
        | "cacertificate"
        | "access-keys" => certificates::route(plane, request, &parts).await,
        "policies" | "target-policies" | "principal-policies" | "attached-policies"
        | "policy-targets" | "test-authorization" | "endpoint" => {
            policies::route(plane, request, &parts).await
        }
        "authorizer" | "authorizers" | "default-authorizer" => {
            authorizers::route(plane, request, &parts).await
        }
        // `/things/{name}/shadow…` is the iot-data shadow API, not the registry's.
        "things" | "principals" if parts.get(2) != Some(&"shadow") => {
            things::route(plane, request, &parts).await
        }
        "topics" | "retainedMessage" | "connections" => {
            data::route(plane, request, &parts, caller).await
        }
        "pubsub" => views::route(plane, request, &parts),
        _ => Err(unknown_operation(request)),
    }
}

pub(super) fn unknown_operation(request: &ApiRequest<'_>) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        format!(
            "{} {} is not an operation of this API",
            request.method, request.path
        ),
    )
}

/// Cognito Identity's JSON 1.1 operations: GetId, GetCredentialsForIdentity and
/// GetOpenIdToken are unsigned, as in AWS; the others need the admin signature.
fn answer_cognito(
    broker: &IdentityPlane,
    operation: &str,
    request: &ApiRequest<'_>,
    signed: bool,
) -> Answer {
    let body = request.body;
    let failure = |status: u16, kind: &'static str, message: String| Answer {
        status,
        error_kind: Some(kind),
        body: json!({ "__type": kind, "message": message }).to_string(),
    };
    if signed && !cognito::is_unsigned_operation(operation) {
        let refused = match authenticate(broker, request) {
            Ok(caller) => caller.principal().map(admin_only),
            Err(reason) => Some(reason),
        };
        if let Some(reason) = refused {
            warn!(operation, %reason, "Cognito request refused: HTTP 403");
            return failure(403, "NotAuthorizedException", reason);
        }
    }
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(error) => {
                return failure(
                    400,
                    "InvalidParameterException",
                    format!("body is not JSON: {error}"),
                )
            }
        }
    };
    match cognito::answer(broker, operation, &request) {
        Ok(value) => {
            info!(operation, "Cognito request");
            Answer {
                status: 200,
                error_kind: None,
                body: value.to_string(),
            }
        }
        Err(error) => {
            info!(operation, kind = error.kind, message = %error.message, "Cognito request failed");
            failure(error.status, error.kind, error.message)
        }
    }
}

fn idp_failure(status: u16, kind: &'static str, message: String) -> Answer {
    Answer {
        status,
        error_kind: Some(kind),
        body: json!({ "__type": kind, "message": message }).to_string(),
    }
}

/// Cognito user pools' JSON 1.1 operations: the app's calls for its users are unsigned,
/// as in AWS; the pool's management and the Admin operations need the admin signature.
/// Every refusal is HTTP 400 with Cognito's exception name and message, and logged.
async fn answer_user_pools(
    plane: &Plane<'_>,
    operation: &str,
    request: &ApiRequest<'_>,
    signed: bool,
) -> Answer {
    if signed && !user_pools::is_unsigned_operation(operation) {
        let refused = match authenticate(plane, request) {
            Ok(caller) => caller.principal().map(admin_only),
            Err(reason) => Some(reason),
        };
        if let Some(reason) = refused {
            warn!(operation, %reason, "cognito-idp request refused: HTTP 403");
            return idp_failure(403, "NotAuthorizedException", reason);
        }
    }
    let body: Value = if request.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(request.body) {
            Ok(value) => value,
            Err(error) => {
                return idp_failure(
                    400,
                    "InvalidParameterException",
                    format!("body is not JSON: {error}"),
                )
            }
        }
    };
    plane.refresh_registry();
    match user_pools::answer(plane, operation, &body).await {
        Ok(value) => {
            info!(operation, "cognito-idp request");
            Answer {
                status: 200,
                error_kind: None,
                body: value.to_string(),
            }
        }
        Err(error) => {
            info!(operation, kind = error.kind, message = %error.message, "cognito-idp request refused");
            idp_failure(400, error.kind, error.message)
        }
    }
}

/// SigV4 in the Authorization header, for service `iot` / `iotdata` /
/// `iotdevicegateway` (both names of iot-data are in circulation): by the admin key, or by
/// another key the broker knows (`IdentityPlane::signing_credential`, the rule WebSocket
/// upgrades follow), which stands for its principal.
fn authenticate(broker: &IdentityPlane, request: &ApiRequest<'_>) -> Result<Caller, String> {
    let ApiRequest {
        method,
        path,
        query,
        headers,
        body,
    } = *request;
    let authorization = sigv4::parse_authorization(headers)
        .map_err(|error| format!("malformed Authorization header: {error}"))?
        .ok_or("request is not signed (SigV4 Authorization header missing)")?;
    let (admin_key, admin_secret) = admin_credentials(&broker.config)
        .map_err(|error| format!("admin credentials unavailable: {error}"))?;
    let (secret, caller) = if authorization.access_key_id == admin_key {
        (admin_secret, Caller::Admin)
    } else {
        let session_token = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("x-amz-security-token"))
            .map(|(_, token)| *token);
        let credential = broker.signing_credential(&authorization.access_key_id, session_token)?;
        (
            credential.secret,
            Caller::Principal(credential.principal, credential.cognito),
        )
    };
    let signed = SignedRequest {
        method,
        path,
        query,
        headers,
    };
    sigv4::verify_header_signed(
        &signed,
        body,
        &authorization,
        &secret,
        &broker.config.region,
        &[
            "iot",
            "iotdata",
            "iotdevicegateway",
            "execute-api",
            "cognito-identity",
            "cognito-idp",
        ],
        SystemTime::now(),
    )
    .map_err(|error| {
        format!(
            "SigV4 (access key {}): {error}",
            authorization.access_key_id
        )
    })?;
    Ok(caller)
}

pub(super) fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

pub(super) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// A list request's `maxResults`: `default` when absent, else an integer from 1 to `max`;
/// `Err` is the 400's message.
pub(super) fn max_results(query: &str, default: usize, max: usize) -> Result<usize, String> {
    match query_param(query, "maxResults") {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| format!("maxResults {text:?}: must be 1 to {max}")),
    }
}

/// One page of `items` (sorted by `key`): those after `after`, at most `max`. The next
/// page's token is the key of the last item given, so a page is stable while items are
/// added or deleted between requests.
pub(super) fn page_after<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> &str,
    after: Option<&str>,
    max: usize,
) -> (Vec<T>, Option<String>) {
    if let Some(after) = after {
        items.retain(|item| key(item) > after);
    }
    let more = items.len() > max;
    items.truncate(max);
    let next = if more {
        items.last().map(|item| key(item).to_owned())
    } else {
        None
    };
    (items, next)
}

pub(super) fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid(format!("body is not JSON: {error}")))
}

pub(super) fn string_field(body: &Value, name: &str) -> Result<String, ApiError> {
    body[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid(format!("{name} is required")))
}

pub(super) fn parse_status(text: &str) -> Result<CertificateStatus, ApiError> {
    match text {
        "ACTIVE" => Ok(CertificateStatus::Active),
        "INACTIVE" => Ok(CertificateStatus::Inactive),
        "REVOKED" => Ok(CertificateStatus::Revoked),
        "PENDING_ACTIVATION" => Ok(CertificateStatus::PendingActivation),
        other => Err(ApiError::invalid(format!("unknown status {other:?}"))),
    }
}

pub(super) fn arn(broker: &Plane<'_>, kind: &str, name: &str) -> String {
    resource_arn(&broker.config, kind, name)
}

/// `arn:aws:iot:<region>:<account>:<kind>/<name>` for this broker.
pub fn resource_arn(config: &Config, kind: &str, name: &str) -> String {
    format!(
        "arn:aws:iot:{}:{}:{kind}/{name}",
        config.region, config.account_id
    )
}

pub use crate::registry::principal_of_target;

/// The ARN form a principal is reported in.
pub(super) fn target_of_principal(broker: &Plane<'_>, principal: &str) -> String {
    if crate::registry::is_certificate_id(principal) {
        arn(broker, "cert", principal)
    } else {
        principal.to_owned()
    }
}

/// DescribeCertificate's `certificateDescription`.
pub fn describe_certificate(config: &Config, record: &CertificateRecord) -> Value {
    json!({
        "certificateArn": resource_arn(config, "cert", &record.certificate_id),
        "certificateId": record.certificate_id,
        "caCertificateId": record.ca_certificate_id,
        "status": status_name(record.status),
        "certificatePem": record.certificate_pem,
        "creationDate": record.creation_date,
        "lastModifiedDate": record.creation_date,
        "certificateMode": if record.ca_certificate_id.is_some() { "DEFAULT" } else { "SNI_ONLY" },
    })
}

/// One entry of ListCertificates.
pub fn certificate_summary(config: &Config, record: &CertificateRecord) -> Value {
    json!({
        "certificateArn": resource_arn(config, "cert", &record.certificate_id),
        "certificateId": record.certificate_id,
        "status": status_name(record.status),
        "creationDate": record.creation_date,
    })
}

/// A policy's document: the registry's, or the config file's.
pub(super) fn policy_document(broker: &Plane<'_>, name: &str) -> Option<String> {
    if let Some(record) = broker.registry.policy(name) {
        return Some(record.policy_document);
    }
    if name == crate::config::DEV_ALLOW_ALL {
        return Some(crate::auth::policy::dev_allow_all_document().to_owned());
    }
    let declared = broker.config.policies.iter().find(|p| p.name == name)?;
    match (&declared.document, &declared.document_file) {
        (Some(document), _) => Some(document.clone()),
        (None, Some(file)) => std::fs::read_to_string(file).ok(),
        _ => None,
    }
}

pub(super) fn require_policy(broker: &Plane<'_>, name: &str) -> Result<(), ApiError> {
    if broker.policies.get(name).is_none() {
        return Err(ApiError::not_found(format!("policy {name} does not exist")));
    }
    Ok(())
}

pub(super) fn attach(broker: &Plane<'_>, policy: &str, target: &str) -> ApiResult {
    require_policy(broker, policy)?;
    let principal = principal_of_target(target);
    broker.registry.attach(principal, policy)?;
    broker.sync_registry();
    Ok(json!({}))
}

pub(super) fn detach(broker: &Plane<'_>, policy: &str, target: &str) -> ApiResult {
    require_policy(broker, policy)?;
    let principal = principal_of_target(target);
    broker.registry.detach(principal, policy)?;
    broker.sync_registry();
    let closed = broker.disconnect_principal(
        principal,
        &format!("policy {policy} was detached from principal {principal}"),
    );
    info!(
        policy,
        principal, closed, "policy detached; the principal's connections are closed"
    );
    Ok(json!({}))
}

pub(super) fn set_certificate_status(
    broker: &Plane<'_>,
    id: &str,
    status: CertificateStatus,
) -> ApiResult {
    broker.registry.update_status(id, status)?;
    if status != CertificateStatus::Active {
        let closed = broker.disconnect_principal(
            id,
            &format!("certificate {id} is now {}", status_name(status)),
        );
        info!(
            certificate_id = id,
            closed, "certificate deactivated; its connections are closed"
        );
    }
    Ok(json!({}))
}

pub(super) fn describe_authorizer(broker: &Plane<'_>, record: &AuthorizerRecord) -> Value {
    json!({
        "authorizerName": record.authorizer_name,
        "authorizerArn": arn(broker, "authorizer", &record.authorizer_name),
        "authorizerFunctionArn": record.authorizer_function_arn,
        "tokenKeyName": record.token_key_name,
        "tokenSigningPublicKeys": record.token_signing_public_keys,
        "status": record.status,
        "signingDisabled": record.signing_disabled,
        "creationDate": record.creation_date,
        "lastModifiedDate": record.last_modified_date,
    })
}

pub(super) fn public_keys(body: &Value) -> BTreeMap<String, String> {
    body["tokenSigningPublicKeys"]
        .as_object()
        .map(|keys| {
            keys.iter()
                .filter_map(|(name, pem)| pem.as_str().map(|pem| (name.clone(), pem.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The topic in a data-plane path (everything after the prefix, percent-decoded: boto3
/// sends `a/b` as `a%2Fb`).
pub(super) fn data_topic(path: &str, prefix: &str) -> Result<String, ApiError> {
    let raw = path
        .strip_prefix(prefix)
        .ok_or_else(|| ApiError::invalid("topic missing"))?;
    Ok(percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned())
}

#[cfg(test)]
mod tests;
