//! The control plane on `listeners.http`: the subset of AWS IoT's REST API (and of the
//! iot-data plane) that apps and operators use, with AWS's paths, methods, JSON shapes,
//! status codes and error shapes, so boto3 and the AWS CLI work with `--endpoint-url`.
//! Every request must be SigV4-signed (service `iot`, or `iotdata` for the data plane) by
//! the `[admin]` credentials.
//!
//! One handler routes by method and path segments rather than a route table, because the
//! SigV4 check needs the path exactly as received and the raw body before anything else.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use iot::sigv4::{self, SignedRequest};
use iot::{Action, Policy, PrincipalFacts, RequestContext};
use mqtt::QoS;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::auth::{parse_action, test_authorization, AuthorizationQuestion};
use crate::broker::{unix_millis, Broker};
use crate::cognito;
use crate::config::{CertificateStatus, Config};
use crate::registry::{status_name, AuthorizerRecord, CertificateRecord, RegistryError};
use crate::secrets::{access_key_pair, write_private};
use crate::tls_material;

/// An AWS-shaped error: HTTP status, `x-amzn-ErrorType`, `{"message": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequestException", message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "message": self.message, "__type": self.kind });
        (
            self.status,
            [
                ("x-amzn-ErrorType", self.kind),
                ("content-type", "application/json"),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

type ApiResult = Result<Value, ApiError>;

/// The access key the control plane accepts: `[admin]`, or a pair generated on first
/// start into `<data_dir>/admin-credentials` (mode 0600), which `pubsub iot` reads.
pub fn admin_credentials(config: &Config) -> std::io::Result<(String, String)> {
    if let Some(admin) = &config.admin {
        return Ok((admin.access_key_id.clone(), admin.secret_access_key.clone()));
    }
    let path = config.data_dir.join("admin-credentials");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            if let (Some(id), Some(secret)) = (
                value["accessKeyId"].as_str(),
                value["secretAccessKey"].as_str(),
            ) {
                return Ok((id.to_owned(), secret.to_owned()));
            }
        }
    }
    let (id, secret) = access_key_pair("AKIA");
    write_private(
        &path,
        &json!({"accessKeyId": id, "secretAccessKey": secret}).to_string(),
    )?;
    Ok((id, secret))
}

/// Serves the control plane until shutdown.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Router::new().fallback(handle).with_state(broker);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(error) = result {
        warn!(%error, "control plane stopped");
    }
}

/// A control-plane answer, whatever carried the request (the `http` listener, or HTTPS on
/// the TLS port's HTTP branch).
pub struct Answer {
    pub status: u16,
    pub error_kind: Option<&'static str>,
    pub body: String,
}

async fn handle(
    State(broker): State<Arc<Broker>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(name, value)| value.to_str().ok().map(|value| (name.as_str(), value)))
        .collect();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let answer = answer(&broker, method.as_str(), &path, &query, &pairs, &body).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match answer.error_kind {
        Some(kind) => (
            status,
            [
                ("x-amzn-ErrorType", kind),
                ("content-type", "application/json"),
            ],
            answer.body,
        )
            .into_response(),
        None => (status, [("content-type", "application/json")], answer.body).into_response(),
    }
}

/// Authenticates and answers one request.
pub async fn answer(
    broker: &Arc<Broker>,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let into_answer = |error: ApiError| Answer {
        status: error.status.as_u16(),
        error_kind: Some(error.kind),
        body: json!({ "message": error.message, "__type": error.kind }).to_string(),
    };
    let cognito_operation = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-amz-target"))
        .and_then(|(_, target)| target.strip_prefix("AWSCognitoIdentityService."));
    if let Some(operation) = cognito_operation {
        return answer_cognito(broker, operation, method, path, query, headers, body);
    }
    if let Err(reason) = authenticate(broker, method, path, query, headers, body) {
        warn!(%method, %path, %reason, "control plane request refused: HTTP 403");
        return into_answer(ApiError::new(
            StatusCode::FORBIDDEN,
            "UnauthorizedException",
            reason,
        ));
    }
    broker.refresh_registry();
    match route(broker, method, path, query, headers, body).await {
        Ok(value) => {
            info!(%method, %path, "control plane request");
            Answer {
                status: 200,
                error_kind: None,
                body: value.to_string(),
            }
        }
        Err(error) => {
            info!(%method, %path, kind = error.kind, message = %error.message, "control plane request failed");
            into_answer(error)
        }
    }
}

/// Cognito Identity's JSON 1.1 operations: GetId, GetCredentialsForIdentity and
/// GetOpenIdToken are unsigned, as in AWS; the others need the admin signature.
fn answer_cognito(
    broker: &Broker,
    operation: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let failure = |status: u16, kind: &'static str, message: String| Answer {
        status,
        error_kind: Some(kind),
        body: json!({ "__type": kind, "message": message }).to_string(),
    };
    if !cognito::is_unsigned_operation(operation) {
        if let Err(reason) = authenticate(broker, method, path, query, headers, body) {
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

/// SigV4 in the Authorization header, by the admin key, for service `iot` / `iotdata`.
fn authenticate(
    broker: &Broker,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), String> {
    let authorization = sigv4::parse_authorization(headers)
        .map_err(|error| format!("malformed Authorization header: {error}"))?
        .ok_or("request is not signed (SigV4 Authorization header missing)")?;
    let (admin_key, admin_secret) = admin_credentials(&broker.config)
        .map_err(|error| format!("admin credentials unavailable: {error}"))?;
    if authorization.access_key_id != admin_key {
        return Err(format!(
            "access key {} is not the control plane's [admin] key",
            authorization.access_key_id
        ));
    }
    let request = SignedRequest {
        method,
        path,
        query,
        headers,
    };
    sigv4::verify_header_signed(
        &request,
        body,
        &authorization,
        &admin_secret,
        &broker.config.region,
        &["iot", "iotdata", "execute-api", "cognito-identity"],
        SystemTime::now(),
    )
    .map_err(|error| format!("SigV4: {error}"))
}

fn segments(path: &str) -> Vec<String> {
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

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid(format!("body is not JSON: {error}")))
}

fn string_field(body: &Value, name: &str) -> Result<String, ApiError> {
    body[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid(format!("{name} is required")))
}

fn parse_status(text: &str) -> Result<CertificateStatus, ApiError> {
    match text {
        "ACTIVE" => Ok(CertificateStatus::Active),
        "INACTIVE" => Ok(CertificateStatus::Inactive),
        "REVOKED" => Ok(CertificateStatus::Revoked),
        "PENDING_ACTIVATION" => Ok(CertificateStatus::PendingActivation),
        other => Err(ApiError::invalid(format!("unknown status {other:?}"))),
    }
}

fn arn(broker: &Broker, kind: &str, name: &str) -> String {
    resource_arn(&broker.config, kind, name)
}

/// `arn:aws:iot:<region>:<account>:<kind>/<name>` for this broker.
pub fn resource_arn(config: &Config, kind: &str, name: &str) -> String {
    format!(
        "arn:aws:iot:{}:{}:{kind}/{name}",
        config.region, config.account_id
    )
}

/// A certificate ARN names its certificate id; anything else (an identity id) is the
/// principal itself.
pub fn principal_of_target(target: &str) -> &str {
    match target.split_once(":cert/") {
        Some((_, id)) if target.starts_with("arn:") => id,
        _ => target,
    }
}

/// The ARN form a principal is reported in.
fn target_of_principal(broker: &Broker, principal: &str) -> String {
    let is_certificate = principal.len() == 64 && principal.bytes().all(|b| b.is_ascii_hexdigit());
    if is_certificate {
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
fn policy_document(broker: &Broker, name: &str) -> Option<String> {
    if let Some(record) = broker.registry.policy(name) {
        return Some(record.policy_document);
    }
    if name == crate::config::DEV_ALLOW_ALL {
        return Some(crate::auth::dev_allow_all_document().to_owned());
    }
    let declared = broker.config.policies.iter().find(|p| p.name == name)?;
    match (&declared.document, &declared.document_file) {
        (Some(document), _) => Some(document.clone()),
        (None, Some(file)) => std::fs::read_to_string(file).ok(),
        _ => None,
    }
}

fn require_policy(broker: &Broker, name: &str) -> Result<(), ApiError> {
    if broker.policies.get(name).is_none() {
        return Err(ApiError::not_found(format!("policy {name} does not exist")));
    }
    Ok(())
}

fn attach(broker: &Broker, policy: &str, target: &str) -> ApiResult {
    require_policy(broker, policy)?;
    let principal = principal_of_target(target);
    broker.registry.attach(principal, policy)?;
    broker.sync_registry();
    Ok(json!({}))
}

fn detach(broker: &Broker, policy: &str, target: &str) -> ApiResult {
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

fn set_certificate_status(broker: &Broker, id: &str, status: CertificateStatus) -> ApiResult {
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

fn describe_authorizer(broker: &Broker, record: &AuthorizerRecord) -> Value {
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

fn public_keys(body: &Value) -> BTreeMap<String, String> {
    body["tokenSigningPublicKeys"]
        .as_object()
        .map(|keys| {
            keys.iter()
                .filter_map(|(name, pem)| pem.as_str().map(|pem| (name.clone(), pem.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

async fn route(
    broker: &Arc<Broker>,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> ApiResult {
    let parts = segments(path);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let set_as_active = query_param(query, "setAsActive").as_deref() == Some("true");
    match (method, parts.as_slice()) {
        // Certificates
        ("POST", ["keys-and-certificate"]) => {
            let issued =
                tls_material::issue_device_certificate(&broker.config.data_dir, "pubsub device")
                    .map_err(|error| ApiError::invalid(error.to_string()))?;
            let status = if set_as_active {
                CertificateStatus::Active
            } else {
                CertificateStatus::Inactive
            };
            let record = broker.registry.register(&issued.certificate_pem, status)?;
            Ok(json!({
                "certificateArn": arn(broker, "cert", &record.certificate_id),
                "certificateId": record.certificate_id,
                "certificatePem": issued.certificate_pem,
                "keyPair": {"PublicKey": issued.public_key_pem, "PrivateKey": issued.private_key_pem},
            }))
        }
        ("POST", ["certificates"]) => {
            let body = json_body(body)?;
            let csr = string_field(&body, "certificateSigningRequest")?;
            let pem =
                tls_material::issue_from_csr(&broker.config.data_dir, &csr).map_err(|error| {
                    ApiError::invalid(format!("certificateSigningRequest: {error}"))
                })?;
            let status = if set_as_active {
                CertificateStatus::Active
            } else {
                CertificateStatus::Inactive
            };
            let record = broker.registry.register(&pem, status)?;
            Ok(json!({
                "certificateArn": arn(broker, "cert", &record.certificate_id),
                "certificateId": record.certificate_id,
                "certificatePem": pem,
            }))
        }
        ("POST", ["certificate", "register"]) | ("POST", ["certificate", "register-no-ca"]) => {
            let body = json_body(body)?;
            let pem = string_field(&body, "certificatePem")?;
            let active = set_as_active
                || body["setAsActive"].as_bool() == Some(true)
                || body["status"].as_str() == Some("ACTIVE");
            let status = match body["status"].as_str() {
                Some(status) => parse_status(status)?,
                None if active => CertificateStatus::Active,
                None => CertificateStatus::Inactive,
            };
            let record = broker.registry.register(&pem, status)?;
            Ok(json!({
                "certificateArn": arn(broker, "cert", &record.certificate_id),
                "certificateId": record.certificate_id,
            }))
        }
        ("POST", ["cacertificate"]) => {
            let body = json_body(body)?;
            let pem = string_field(&body, "caCertificate")?;
            let status = if set_as_active || body["setAsActive"].as_bool() == Some(true) {
                CertificateStatus::Active
            } else {
                CertificateStatus::Inactive
            };
            let auto = query_param(query, "allowAutoRegistration").as_deref() == Some("true")
                || body["allowAutoRegistration"].as_bool() == Some(true);
            let record = broker.registry.register_ca(&pem, status, auto)?;
            Ok(json!({
                "certificateArn": arn(broker, "cacert", &record.certificate_id),
                "certificateId": record.certificate_id,
            }))
        }
        ("PUT", ["cacertificate", id]) => {
            let status = query_param(query, "newStatus")
                .map(|s| parse_status(&s))
                .transpose()?;
            let auto = query_param(query, "newAutoRegistrationStatus").map(|s| s == "ENABLE");
            broker.registry.update_ca(id, status, auto)?;
            Ok(json!({}))
        }
        ("PUT", ["certificates", id]) => {
            let status = query_param(query, "newStatus")
                .ok_or_else(|| ApiError::invalid("newStatus is required"))?;
            set_certificate_status(broker, id, parse_status(&status)?)
        }
        ("GET", ["certificates", id]) => {
            let record = broker.registry.describe(id)?;
            Ok(json!({ "certificateDescription": describe_certificate(&broker.config, &record) }))
        }
        ("GET", ["certificates"]) => {
            let certificates: Vec<Value> = broker
                .registry
                .list()
                .iter()
                .map(|record| certificate_summary(&broker.config, record))
                .collect();
            Ok(json!({ "certificates": certificates }))
        }
        ("DELETE", ["certificates", id]) => {
            broker.registry.delete_certificate(id)?;
            broker.sync_registry();
            Ok(json!({}))
        }
        // Policies
        ("POST", ["policies", name]) => {
            let body = json_body(body)?;
            let document = string_field(&body, "policyDocument")?;
            if broker.policies.get(name).is_some() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "ResourceAlreadyExistsException",
                    format!("policy {name} already exists"),
                ));
            }
            Policy::parse(name, &document).map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MalformedPolicyException",
                    error.to_string(),
                )
            })?;
            broker.registry.create_policy(name, &document)?;
            broker.sync_registry();
            Ok(json!({
                "policyName": name,
                "policyArn": arn(broker, "policy", name),
                "policyDocument": document,
                "policyVersionId": "1",
            }))
        }
        ("GET", ["policies", name]) => {
            let document = policy_document(broker, name)
                .ok_or_else(|| ApiError::not_found(format!("policy {name} does not exist")))?;
            let created = broker
                .registry
                .policy(name)
                .map(|r| r.creation_date)
                .unwrap_or_default();
            Ok(json!({
                "policyName": name,
                "policyArn": arn(broker, "policy", name),
                "policyDocument": document,
                "defaultVersionId": "1",
                "creationDate": created,
                "lastModifiedDate": created,
                "generationId": "1",
            }))
        }
        ("GET", ["policies"]) => {
            let mut names: Vec<String> = broker
                .config
                .policies
                .iter()
                .map(|p| p.name.clone())
                .collect();
            names.push(crate::config::DEV_ALLOW_ALL.to_owned());
            names.extend(
                broker
                    .registry
                    .policies()
                    .into_iter()
                    .map(|r| r.policy_name),
            );
            names.sort();
            names.dedup();
            let policies: Vec<Value> = names
                .iter()
                .map(|name| json!({"policyName": name, "policyArn": arn(broker, "policy", name)}))
                .collect();
            Ok(json!({ "policies": policies }))
        }
        ("DELETE", ["policies", name]) => {
            if broker.policies.is_declared_in_config(name) {
                return Err(ApiError::invalid(format!(
                    "policy {name} is declared in the broker's configuration file and cannot be deleted through the API"
                )));
            }
            broker.registry.delete_policy(name)?;
            broker.sync_registry();
            Ok(json!({}))
        }
        ("PUT", ["target-policies", policy]) => {
            let body = json_body(body)?;
            attach(broker, policy, &string_field(&body, "target")?)
        }
        ("POST", ["target-policies", policy]) => {
            let body = json_body(body)?;
            detach(broker, policy, &string_field(&body, "target")?)
        }
        ("PUT", ["principal-policies", policy]) | ("DELETE", ["principal-policies", policy]) => {
            let principal = headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("x-amzn-iot-principal"))
                .map(|(_, value)| value.to_string())
                .ok_or_else(|| ApiError::invalid("x-amzn-iot-principal header is required"))?;
            if method == "PUT" {
                attach(broker, policy, &principal)
            } else {
                detach(broker, policy, &principal)
            }
        }
        ("POST", ["attached-policies", target]) => {
            let principal = principal_of_target(target);
            let policies: Vec<Value> = broker
                .policies
                .attached(principal)
                .unwrap_or_default()
                .iter()
                .map(|name| json!({"policyName": name, "policyArn": arn(broker, "policy", name)}))
                .collect();
            Ok(json!({ "policies": policies }))
        }
        ("POST", ["policy-targets", policy]) => {
            require_policy(broker, policy)?;
            let targets: Vec<String> = broker
                .policies
                .targets_of(policy)
                .iter()
                .map(|principal| target_of_principal(broker, principal))
                .collect();
            Ok(json!({ "targets": targets }))
        }
        // Authorizers
        ("POST", ["authorizer", name]) => {
            let body = json_body(body)?;
            if broker.authorizers.exists(name) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "ResourceAlreadyExistsException",
                    format!("authorizer {name} already exists"),
                ));
            }
            let now = unix_millis() / 1000;
            let record = AuthorizerRecord {
                authorizer_name: name.to_string(),
                authorizer_function_arn: string_field(&body, "authorizerFunctionArn")?,
                token_key_name: body["tokenKeyName"].as_str().unwrap_or_default().to_owned(),
                token_signing_public_keys: public_keys(&body),
                status: body["status"].as_str().unwrap_or("ACTIVE").to_owned(),
                signing_disabled: body["signingDisabled"].as_bool().unwrap_or(false),
                creation_date: now,
                last_modified_date: now,
            };
            if !record.signing_disabled && record.token_signing_public_keys.is_empty() {
                return Err(ApiError::invalid(
                    "tokenSigningPublicKeys are required unless signingDisabled is true",
                ));
            }
            broker.registry.put_authorizer(record)?;
            broker.sync_registry();
            Ok(json!({"authorizerName": name, "authorizerArn": arn(broker, "authorizer", name)}))
        }
        ("GET", ["authorizer", name]) => {
            let record = broker
                .registry
                .authorizer(name)
                .ok_or_else(|| ApiError::not_found(format!("authorizer {name} does not exist")))?;
            Ok(json!({ "authorizerDescription": describe_authorizer(broker, &record) }))
        }
        ("GET", ["authorizers"]) => {
            let authorizers: Vec<Value> = broker
                .registry
                .authorizers()
                .iter()
                .map(|r| json!({"authorizerName": r.authorizer_name, "authorizerArn": arn(broker, "authorizer", &r.authorizer_name)}))
                .collect();
            Ok(json!({ "authorizers": authorizers }))
        }
        ("PUT", ["authorizer", name]) => {
            let body = json_body(body)?;
            let mut record = broker
                .registry
                .authorizer(name)
                .ok_or_else(|| ApiError::not_found(format!("authorizer {name} does not exist")))?;
            if let Some(url) = body["authorizerFunctionArn"].as_str() {
                record.authorizer_function_arn = url.to_owned();
            }
            if let Some(key) = body["tokenKeyName"].as_str() {
                record.token_key_name = key.to_owned();
            }
            if body["tokenSigningPublicKeys"].is_object() {
                record.token_signing_public_keys = public_keys(&body);
            }
            if let Some(status) = body["status"].as_str() {
                record.status = status.to_owned();
            }
            record.last_modified_date = unix_millis() / 1000;
            let inactive = !record.status.eq_ignore_ascii_case("ACTIVE");
            broker.registry.put_authorizer(record)?;
            broker.sync_registry();
            if inactive {
                let closed = broker
                    .disconnect_authorizer(name, &format!("authorizer {name} is now INACTIVE"));
                info!(authorizer = %name, closed, "authorizer deactivated; its connections are closed");
            }
            Ok(json!({"authorizerName": name, "authorizerArn": arn(broker, "authorizer", name)}))
        }
        ("DELETE", ["authorizer", name]) => {
            let record = broker
                .registry
                .authorizer(name)
                .ok_or_else(|| ApiError::not_found(format!("authorizer {name} does not exist")))?;
            if record.status.eq_ignore_ascii_case("ACTIVE") {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "DeleteConflictException",
                    format!("authorizer {name} is ACTIVE; set it INACTIVE first"),
                ));
            }
            broker.registry.delete_authorizer(name)?;
            broker.sync_registry();
            Ok(json!({}))
        }
        ("POST", ["default-authorizer"]) => {
            let body = json_body(body)?;
            let name = string_field(&body, "authorizerName")?;
            if !broker.authorizers.exists(&name) {
                return Err(ApiError::not_found(format!(
                    "authorizer {name} does not exist"
                )));
            }
            broker.registry.set_default_authorizer(&name)?;
            broker.sync_registry();
            Ok(json!({"authorizerName": name, "authorizerArn": arn(broker, "authorizer", &name)}))
        }
        ("POST", ["authorizer", name, "test"]) => {
            let body = json_body(body)?;
            let fields = iot::custom_auth::AuthorizerFields {
                user: None,
                authorizer_name: Some(name.to_string()),
                signature: body["tokenSignature"].as_str().map(str::to_owned),
                params: Vec::new(),
            };
            let token = body["token"].as_str().unwrap_or_default().to_owned();
            let mut fields = fields;
            if let Some(entry_key) = broker.registry.authorizer(name).map(|r| r.token_key_name) {
                fields.params.push((entry_key, token));
            }
            let connection_id = format!("test-invoke-{}", unix_millis());
            match broker
                .authorizers
                .authorize(
                    &fields,
                    crate::authorizers::ConnectionFacts {
                        protocols: &["http"],
                        server_name: None,
                        http_headers: None,
                        http_query: None,
                        mqtt_username: None,
                        mqtt_password: None,
                        mqtt_client_id: None,
                        connection_id: &connection_id,
                    },
                )
                .await
            {
                Ok(identity) => Ok(json!({
                    "isAuthenticated": true,
                    "principalId": identity.principal_id,
                    "policyDocuments": identity.policy_documents,
                    "disconnectAfterInSeconds": identity.disconnect_after.as_secs(),
                    "refreshAfterInSeconds": identity.refresh_after.as_secs(),
                })),
                Err(reason) => Err(ApiError::invalid(reason)),
            }
        }
        // Authorization test and endpoint
        ("POST", ["test-authorization"]) => {
            let body = json_body(body)?;
            let principal = principal_of_target(&string_field(&body, "principal")?).to_owned();
            let add: Vec<String> = body["policyNamesToAdd"]
                .as_array()
                .map(|names| {
                    names
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let context = RequestContext {
                client_id: query_param(query, "clientId")
                    .or_else(|| body["clientId"].as_str().map(str::to_owned)),
                principal: principal.contains(':').then(|| {
                    Box::new(PrincipalFacts {
                        cognito_identity_id: Some(principal.clone()),
                        ..PrincipalFacts::default()
                    })
                }),
                ..RequestContext::default()
            };
            let mut results = Vec::new();
            for info in body["authInfos"].as_array().cloned().unwrap_or_default() {
                let action_text = info["actionType"].as_str().unwrap_or_default();
                let action: Action = parse_action(action_text).ok_or_else(|| {
                    ApiError::invalid(format!("unknown actionType {action_text:?}"))
                })?;
                let resources: Vec<String> = info["resources"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                // A registered certificate with nothing attached is known: IMPLICIT_DENY.
                let known = broker.registry.describe(&principal).is_ok();
                let answer = test_authorization(
                    &broker.policies,
                    &broker.config,
                    &AuthorizationQuestion {
                        principal: &principal,
                        known_principal: known,
                        policy_names_to_add: &add,
                        context: &context,
                        action,
                        resources: &resources,
                    },
                )
                .map_err(|error| ApiError::not_found(error.to_string()))?;
                results.extend(
                    answer["authResults"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            Ok(json!({ "authResults": results }))
        }
        ("GET", ["endpoint"]) => Ok(json!({ "endpointAddress": broker.config.endpoint })),
        // The iot-data plane
        ("POST", ["topics", ..]) => {
            let topic = data_topic(path, "/topics/")?;
            let qos = match query_param(query, "qos").as_deref() {
                None | Some("0") => QoS::AtMostOnce,
                Some("1") => QoS::AtLeastOnce,
                Some(other) => {
                    return Err(ApiError::invalid(format!("qos {other} is not supported")))
                }
            };
            iot::validate_topic_name(&topic, &broker.config.limits)
                .and_then(|()| iot::validate_client_publish(&topic))
                .map_err(|error| ApiError::invalid(format!("topic {topic:?}: {error}")))?;
            if body.len() > broker.config.limits.max_payload_bytes {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLargeException",
                    format!(
                        "payload is {} bytes, limit is {}",
                        body.len(),
                        broker.config.limits.max_payload_bytes
                    ),
                ));
            }
            let payload = bytes::Bytes::copy_from_slice(body);
            if query_param(query, "retain").as_deref() == Some("true") && !iot::is_reserved(&topic)
            {
                broker.retain(&topic, payload.clone(), qos);
            }
            broker.route(&topic, payload, qos);
            Ok(json!({}))
        }
        ("GET", ["retainedMessage", ..]) if path.len() > "/retainedMessage/".len() => {
            let topic = data_topic(path, "/retainedMessage/")?;
            let message = broker
                .retained_for(&topic)
                .into_iter()
                .find(|message| *message.topic == *topic)
                .ok_or_else(|| ApiError::not_found(format!("no retained message on {topic}")))?;
            Ok(json!({
                "topic": topic,
                "payload": base64::engine::general_purpose::STANDARD.encode(&message.payload),
                "qos": message.qos as u8,
                "lastModifiedTime": unix_millis(),
            }))
        }
        ("GET", ["retainedMessage"]) => {
            let topics: Vec<Value> = broker
                .retained_messages()
                .iter()
                .map(|m| json!({"topic": &*m.topic, "payloadSize": m.payload.len(), "qos": m.qos as u8, "lastModifiedTime": unix_millis()}))
                .collect();
            Ok(json!({ "retainedTopics": topics }))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            format!("{method} {path} is not an operation of this API"),
        )),
    }
}

/// The topic in a data-plane path (everything after the prefix, percent-decoded: boto3
/// sends `a/b` as `a%2Fb`).
fn data_topic(path: &str, prefix: &str) -> Result<String, ApiError> {
    let raw = path
        .strip_prefix(prefix)
        .ok_or_else(|| ApiError::invalid("topic missing"))?;
    Ok(percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned())
}
