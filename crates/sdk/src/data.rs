//! The iot-data plane over HTTPS: the iOS SDK's `AWSIoTData` (`AWSIoTDataService`).
//!
//! [`IotDataClient`] calls IoT Core's REST data API, SigV4-signed for service `iotdata`
//! (with `X-Amz-Security-Token` when the credentials carry a session token, as Cognito's
//! do), at the paths and in the shapes of the AWS SDKs (botocore's `iot-data` model):
//!
//! | method | request |
//! |---|---|
//! | [`publish`](IotDataClient::publish) | `POST /topics/{topic}?qos=&retain=&…` |
//! | [`get_retained_message`](IotDataClient::get_retained_message) | `GET /retainedMessage/{topic}` |
//! | [`list_retained_messages`](IotDataClient::list_retained_messages) | `GET /retainedMessage?nextToken=&maxResults=` |
//! | [`get_thing_shadow`](IotDataClient::get_thing_shadow) | `GET /things/{thingName}/shadow[?name=]` |
//! | [`update_thing_shadow`](IotDataClient::update_thing_shadow) | `POST /things/{thingName}/shadow[?name=]` |
//! | [`delete_thing_shadow`](IotDataClient::delete_thing_shadow) | `DELETE /things/{thingName}/shadow[?name=]` |
//! | [`list_named_shadows_for_thing`](IotDataClient::list_named_shadows_for_thing) | `GET /api/things/shadow/ListNamedShadowsForThing/{thingName}?nextToken=&pageSize=` |
//!
//! Path labels are percent-encoded as botocore encodes them: everything but RFC 3986's
//! unreserved characters, so a topic's `/` travels as `%2F` (and is signed as `%252F`,
//! SigV4 encoding the path once more).
//!
//! A refusal is [`DataError::Service`]: the HTTP status, the exception name
//! (`x-amzn-ErrorType`, e.g. `ResourceNotFoundException`) and the message of the body.
//!
//! ```no_run
//! use pubsub::data::IotDataClient;
//! use pubsub::{Credentials, PublishOptions, QoS};
//!
//! # async fn f() -> Result<(), pubsub::data::DataError> {
//! let iot = IotDataClient::new(
//!     "https://xxxx-ats.iot.us-east-1.amazonaws.com",
//!     "us-east-1",
//!     Credentials::new("AKIA…", "secret", None, None, "example"),
//! )?;
//! iot.publish("sensors/1", "21.5", QoS::AtLeastOnce, PublishOptions::new().retain(true))
//!     .await?;
//! let retained = iot.get_retained_message("sensors/1").await?;
//! assert_eq!(&retained.payload[..], b"21.5");
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::{
    error::CredentialsError, ProvideCredentials, SharedCredentialsProvider,
};
use aws_credential_types::Credentials;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::auth::percent_encode;
use crate::config::ServiceConfiguration;
use crate::mqtt5::{PayloadFormat, PublishOptions};
use crate::QoS;

/// The SigV4 service name of the iot-data plane (botocore's `signingName`).
pub const SIGNING_NAME: &str = "iotdata";

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const H_USER_PROPERTIES: &str = "x-amz-mqtt5-user-properties";
const H_PAYLOAD_FORMAT: &str = "x-amz-mqtt5-payload-format-indicator";
const H_CORRELATION_DATA: &str = "x-amz-mqtt5-correlation-data";

/// Why an iot-data call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The service refused the request (any status other than 2xx).
    #[error("{operation}: HTTP {status} {error_type}: {message}")]
    Service {
        /// The operation, e.g. `"GetRetainedMessage"`.
        operation: &'static str,
        /// The HTTP status, e.g. 404.
        status: u16,
        /// The exception name, e.g. `ResourceNotFoundException`: `x-amzn-ErrorType`
        /// (without its `:…` suffix), else the body's `__type`, else derived from the status.
        error_type: String,
        /// The body's `message` (empty when it has none).
        message: String,
    },
    /// The request did not get an answer (connection refused, TLS, time-out, …).
    #[error("{operation}: HTTP request failed")]
    Transport {
        /// The operation.
        operation: &'static str,
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
    /// The credentials provider gave no credentials.
    #[error("{operation}: no credentials to sign with")]
    Credentials {
        /// The operation.
        operation: &'static str,
        /// What the provider reported.
        #[source]
        source: CredentialsError,
    },
    /// The request could not be signed (e.g. a header value SigV4 cannot take).
    #[error("{operation}: SigV4 signing failed: {message}")]
    Signing {
        /// The operation.
        operation: &'static str,
        /// The signer's message.
        message: String,
    },
    /// A 2xx answer that is not what the operation returns.
    #[error("{operation}: unexpected answer: {message}")]
    InvalidResponse {
        /// The operation.
        operation: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The endpoint URL is not an `http` or `https` URL with a host.
    #[error("invalid iot-data endpoint URL {url:?}: {reason}")]
    InvalidEndpoint {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The HTTP client could not be built (e.g. the CA file cannot be read).
    #[error("iot-data HTTP client: {0}")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl DataError {
    /// The HTTP status of a refusal ([`DataError::Service`]).
    pub fn status(&self) -> Option<u16> {
        match self {
            DataError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The exception name of a refusal ([`DataError::Service`]), e.g.
    /// `ResourceNotFoundException`.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            DataError::Service { error_type, .. } => Some(error_type),
            _ => None,
        }
    }

    /// The service's message of a refusal ([`DataError::Service`]).
    pub fn message(&self) -> Option<&str> {
        match self {
            DataError::Service { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// A retained message ([`IotDataClient::get_retained_message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetainedMessage {
    /// Its topic.
    pub topic: String,
    /// Its payload (decoded from the answer's base64).
    pub payload: Bytes,
    /// Its QoS.
    pub qos: QoS,
    /// When it was last stored (the answer's `lastModifiedTime`, epoch milliseconds).
    pub last_modified_time: Option<SystemTime>,
    /// Its MQTT 5 user properties, in order (empty when it has none).
    pub user_properties: Vec<(String, String)>,
}

/// One entry of [`RetainedMessagePage`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetainedMessageSummary {
    /// Its topic.
    pub topic: String,
    /// The size of its payload in bytes.
    pub payload_size: u64,
    /// Its QoS.
    pub qos: QoS,
    /// When it was last stored.
    pub last_modified_time: Option<SystemTime>,
}

/// A page of [`IotDataClient::list_retained_messages`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RetainedMessagePage {
    /// The retained messages of this page.
    pub retained_topics: Vec<RetainedMessageSummary>,
    /// Pass it to the next call for the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// A page of [`IotDataClient::list_named_shadows_for_thing`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NamedShadowsPage {
    /// The named shadows' names.
    pub results: Vec<String>,
    /// Pass it to the next call for the next page; `None` on the last page.
    pub next_token: Option<String>,
    /// The answer's `timestamp` (epoch seconds), when it has one.
    pub timestamp: Option<u64>,
}

/// Configures an [`IotDataClient`]: [`IotDataClient::builder`].
#[derive(Clone)]
pub struct IotDataClientBuilder {
    endpoint: String,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
    ca_file: Option<PathBuf>,
    timeout: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for IotDataClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IotDataClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl IotDataClientBuilder {
    /// Sign with `provider` (default: [`crate::EnvironmentCredentialsProvider`]).
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.credentials = Some(SharedCredentialsProvider::new(provider));
        self
    }

    /// Trust only the CA certificates in this PEM file (default: the webpki roots).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Time allowed for a whole request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time allowed for TCP and TLS (default 10 s, at most the request's).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The client.
    ///
    /// # Errors
    ///
    /// [`DataError::InvalidEndpoint`] when the endpoint is not an `http`/`https` URL with
    /// a host (a path, query or fragment is refused too: the operations' paths are
    /// absolute); [`DataError::Client`] when the CA file cannot be used.
    pub fn build(self) -> Result<IotDataClient, DataError> {
        let base = base_url(&self.endpoint)?;
        let tls = crate::tls::client_config(self.ca_file.as_deref(), None, &[])
            .map_err(|e| DataError::Client(Box::new(e)))?;
        let http = crate::tls::http_client(&tls, self.timeout, self.connect_timeout)
            .map_err(|e| DataError::Client(Box::new(e)))?;
        let credentials = self.credentials.unwrap_or_else(|| {
            SharedCredentialsProvider::new(crate::config::EnvironmentCredentialsProvider)
        });
        Ok(IotDataClient {
            http,
            base,
            region: self.region,
            credentials,
        })
    }
}

/// A client of the iot-data HTTP API (see the [module documentation](self)). Cheap to
/// clone: clones share one connection pool.
#[derive(Clone)]
pub struct IotDataClient {
    http: reqwest::Client,
    /// `scheme://authority`, without a trailing `/`.
    base: String,
    region: String,
    credentials: SharedCredentialsProvider,
}

impl fmt::Debug for IotDataClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IotDataClient")
            .field("endpoint", &self.base)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl IotDataClient {
    /// A client of `endpoint_url` (`https://xxxx-ats.iot.<region>.amazonaws.com`, or
    /// `http://…` for a local broker) in `region`, signing with `credentials`, trusting
    /// the webpki roots.
    ///
    /// # Errors
    ///
    /// As [`IotDataClientBuilder::build`].
    pub fn new(
        endpoint_url: &str,
        region: impl Into<String>,
        credentials: impl ProvideCredentials + 'static,
    ) -> Result<IotDataClient, DataError> {
        IotDataClient::builder(endpoint_url, region)
            .credentials_provider(credentials)
            .build()
    }

    /// Start configuring a client of `endpoint_url` in `region`.
    pub fn builder(endpoint_url: &str, region: impl Into<String>) -> IotDataClientBuilder {
        IotDataClientBuilder {
            endpoint: endpoint_url.to_owned(),
            region: region.into(),
            credentials: None,
            ca_file: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The client for a [`ServiceConfiguration`]: its region, credentials provider and
    /// CA file, and `https://` its endpoint's host on the port SigV4 WebSocket connections
    /// use (IoT Core serves both on 443): the websocket port override, else the endpoint's
    /// port, else 443.
    ///
    /// # Errors
    ///
    /// As [`IotDataClientBuilder::build`].
    pub fn from_config(config: &ServiceConfiguration) -> Result<IotDataClient, DataError> {
        let host = config.endpoint.host();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let port = config.port(config.ports.websocket, 443);
        let mut builder = IotDataClient::builder(&format!("https://{host}:{port}"), &config.region);
        builder.credentials = Some(config.credentials.clone());
        builder.ca_file = config.ca_file.clone();
        builder.build()
    }

    /// The endpoint, `scheme://authority`.
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// Publish `payload` to `topic` (`Publish`), with the same arguments as
    /// [`crate::DataManager::publish_with`]: `options` carry the retain flag (query
    /// `retain=true`; needs `iot:RetainPublish` too) and the MQTT 5 properties IoT Core's
    /// Publish API takes — user properties (header `x-amz-mqtt5-user-properties`, base64
    /// of a JSON array of one-pair objects), payload format
    /// (`x-amz-mqtt5-payload-format-indicator`), correlation data
    /// (`x-amz-mqtt5-correlation-data`, base64), content type, response topic and message
    /// expiry (queries `contentType`, `responseTopic`, `messageExpiry`). MQTT 5
    /// subscribers receive them; IoT Core keeps a retained message's user properties.
    ///
    /// # Errors
    ///
    /// [`DataError::Service`]: e.g. 403 `ForbiddenException` when the caller's policy does
    /// not allow `iot:Publish` (or `iot:RetainPublish`) on the topic, 400
    /// `InvalidRequestException` for a topic with wildcards, 413 for a payload too large;
    /// [`DataError::Transport`], [`DataError::Credentials`], [`DataError::Signing`].
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        options: PublishOptions,
    ) -> Result<(), DataError> {
        const OP: &str = "Publish";
        let (query, headers) = publish_parameters(qos, &options);
        let call = Call {
            operation: OP,
            method: reqwest::Method::POST,
            path: topic_path("/topics/", topic),
            query,
            headers,
            body: payload.into(),
        };
        self.send(call).await.map(drop)
    }

    /// The retained message of `topic` (`GetRetainedMessage`).
    ///
    /// # Errors
    ///
    /// [`DataError::Service`]: 404 `ResourceNotFoundException` when the topic has none,
    /// 403 when the caller may not read it; [`DataError::InvalidResponse`] for an answer
    /// without a valid `topic` or `payload`; the transport and signing errors of
    /// [`publish`](Self::publish).
    pub async fn get_retained_message(&self, topic: &str) -> Result<RetainedMessage, DataError> {
        const OP: &str = "GetRetainedMessage";
        let answer = self
            .send_json(Call::get(
                OP,
                topic_path("/retainedMessage/", topic),
                vec![],
            ))
            .await?;
        parse_retained_message(&answer).map_err(|message| invalid(OP, message))
    }

    /// A page of the retained messages (`ListRetainedMessages`): pass `next_token` from
    /// the previous page (`None` for the first); `max_results` per page (IoT Core: 1 to
    /// 200; `None`: the service's default).
    ///
    /// # Errors
    ///
    /// [`DataError::Service`] (e.g. 400 for a bad `max_results`),
    /// [`DataError::InvalidResponse`] for an answer without `retainedTopics`; the transport
    /// and signing errors of [`publish`](Self::publish).
    pub async fn list_retained_messages(
        &self,
        next_token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<RetainedMessagePage, DataError> {
        const OP: &str = "ListRetainedMessages";
        let mut query = vec![];
        if let Some(token) = next_token {
            query.push(("nextToken", token.to_owned()));
        }
        if let Some(max) = max_results {
            query.push(("maxResults", max.to_string()));
        }
        let answer = self
            .send_json(Call::get(OP, "/retainedMessage".into(), query))
            .await?;
        parse_retained_page(&answer).map_err(|message| invalid(OP, message))
    }

    /// The shadow document of `thing` (`GetThingShadow`): its classic shadow, or the
    /// named shadow `shadow_name`.
    ///
    /// # Errors
    ///
    /// [`DataError::Service`]: 404 `ResourceNotFoundException` when there is no such
    /// shadow, 403 `ForbiddenException` without `iot:GetThingShadow`, 401
    /// `UnauthorizedException` for a bad signature; [`DataError::InvalidResponse`] when the
    /// answer is not JSON; the transport and signing errors of [`publish`](Self::publish).
    pub async fn get_thing_shadow(
        &self,
        thing: &str,
        shadow_name: Option<&str>,
    ) -> Result<Value, DataError> {
        const OP: &str = "GetThingShadow";
        self.send_json(Call::get(OP, shadow_path(thing), shadow_query(shadow_name)))
            .await
    }

    /// Update the shadow of `thing` (`UpdateThingShadow`) with the request state document
    /// `payload` (`{"state": {"desired": …}}`); the answer is the accepted document.
    ///
    /// # Errors
    ///
    /// [`DataError::Service`]: 400 `InvalidRequestException` for a document the shadow
    /// service refuses, 409 `ConflictException` for a version mismatch, 413 for a state too
    /// large, 403/401 as [`get_thing_shadow`](Self::get_thing_shadow);
    /// [`DataError::InvalidResponse`] when the answer is not JSON; the transport and
    /// signing errors of [`publish`](Self::publish).
    pub async fn update_thing_shadow(
        &self,
        thing: &str,
        shadow_name: Option<&str>,
        payload: &Value,
    ) -> Result<Value, DataError> {
        const OP: &str = "UpdateThingShadow";
        let call = Call {
            operation: OP,
            method: reqwest::Method::POST,
            path: shadow_path(thing),
            query: shadow_query(shadow_name),
            headers: vec![("content-type", "application/json".into())],
            body: Bytes::from(payload.to_string()),
        };
        self.send_json(call).await
    }

    /// Delete the shadow of `thing` (`DeleteThingShadow`); the answer is the service's
    /// (`{"version": …, "timestamp": …}`).
    ///
    /// # Errors
    ///
    /// As [`get_thing_shadow`](Self::get_thing_shadow) (404 when there is no such shadow).
    pub async fn delete_thing_shadow(
        &self,
        thing: &str,
        shadow_name: Option<&str>,
    ) -> Result<Value, DataError> {
        const OP: &str = "DeleteThingShadow";
        let mut call = Call::get(OP, shadow_path(thing), shadow_query(shadow_name));
        call.method = reqwest::Method::DELETE;
        self.send_json(call).await
    }

    /// A page of the names of `thing`'s named shadows (`ListNamedShadowsForThing`): pass
    /// `next_token` from the previous page (`None` for the first); `page_size` names per
    /// page (1 to 100; `None`: the service's default, 25).
    ///
    /// # Errors
    ///
    /// [`DataError::Service`] (400 for a bad page size, 403/401 as
    /// [`get_thing_shadow`](Self::get_thing_shadow)); [`DataError::InvalidResponse`] for an
    /// answer without `results`; the transport and signing errors of
    /// [`publish`](Self::publish).
    pub async fn list_named_shadows_for_thing(
        &self,
        thing: &str,
        next_token: Option<&str>,
        page_size: Option<u32>,
    ) -> Result<NamedShadowsPage, DataError> {
        const OP: &str = "ListNamedShadowsForThing";
        let mut query = vec![];
        if let Some(token) = next_token {
            query.push(("nextToken", token.to_owned()));
        }
        if let Some(size) = page_size {
            query.push(("pageSize", size.to_string()));
        }
        let path = topic_path("/api/things/shadow/ListNamedShadowsForThing/", thing);
        let answer = self.send_json(Call::get(OP, path, query)).await?;
        parse_named_shadows(&answer).map_err(|message| invalid(OP, message))
    }

    async fn send_json(&self, call: Call) -> Result<Value, DataError> {
        let operation = call.operation;
        let body = self.send(call).await?;
        serde_json::from_slice(&body)
            .map_err(|e| invalid(operation, format!("the answer is not JSON: {e}")))
    }

    /// Sign and send `call`; the body of a 2xx answer, else the refusal.
    async fn send(&self, call: Call) -> Result<Bytes, DataError> {
        let operation = call.operation;
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|source| DataError::Credentials { operation, source })?;
        let url = format!("{}{}{}", self.base, call.path, query_string(&call.query));
        let signed = sign(
            call.method.as_str(),
            &url,
            &call.headers,
            &call.body,
            &self.region,
            &credentials,
            SystemTime::now(),
        )
        .map_err(|message| DataError::Signing { operation, message })?;
        let mut request = self.http.request(call.method, &url).body(call.body);
        for (name, value) in &call.headers {
            request = request.header(*name, value);
        }
        for (name, value) in &signed {
            request = request.header(name, value);
        }
        tracing::debug!(operation, %url, "iot-data request");
        let response = request
            .send()
            .await
            .map_err(|source| DataError::Transport { operation, source })?;
        let status = response.status().as_u16();
        let error_type = response
            .headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|source| DataError::Transport { operation, source })?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(service_error(
                operation,
                status,
                error_type.as_deref(),
                &body,
            ))
        }
    }
}

/// One request, before signing.
struct Call {
    operation: &'static str,
    method: reqwest::Method,
    /// Absolute and already percent-encoded.
    path: String,
    /// Decoded names and values, encoded by [`query_string`].
    query: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl Call {
    fn get(operation: &'static str, path: String, query: Vec<(&'static str, String)>) -> Call {
        Call {
            operation,
            method: reqwest::Method::GET,
            path,
            query,
            headers: vec![],
            body: Bytes::new(),
        }
    }
}

fn invalid(operation: &'static str, message: impl Into<String>) -> DataError {
    DataError::InvalidResponse {
        operation,
        message: message.into(),
    }
}

/// `scheme://authority` of an endpoint URL, checked. Pure.
fn base_url(endpoint: &str) -> Result<String, DataError> {
    let bad = |reason: &str| DataError::InvalidEndpoint {
        url: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    let host = url.host_str().ok_or_else(|| bad("no host"))?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a path, query or fragment is not allowed"));
    }
    Ok(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

/// `prefix` followed by `label` percent-encoded as botocore encodes a URI label
/// (`{topic}`, `{thingName}`): all but RFC 3986 unreserved characters, `/` included. Pure.
pub(crate) fn topic_path(prefix: &str, label: &str) -> String {
    format!("{prefix}{}", percent_encode(label))
}

fn shadow_path(thing: &str) -> String {
    format!("{}/shadow", topic_path("/things/", thing))
}

fn shadow_query(shadow_name: Option<&str>) -> Vec<(&'static str, String)> {
    shadow_name
        .map(|name| vec![("name", name.to_owned())])
        .unwrap_or_default()
}

/// `?name=value&…`, each percent-encoded (a `+` as `%2B`, never a space); empty for no
/// parameter. Pure.
fn query_string(query: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (name, value) in query {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(&percent_encode(name));
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

/// The query parameters and headers of a Publish (botocore's `PublishRequest`). Pure.
#[allow(clippy::type_complexity)]
fn publish_parameters(
    qos: QoS,
    options: &PublishOptions,
) -> (Vec<(&'static str, String)>, Vec<(&'static str, String)>) {
    let p = &options.properties;
    let qos = match qos {
        QoS::AtMostOnce => "0",
        QoS::AtLeastOnce => "1",
    };
    let mut query = vec![("qos", qos.to_owned())];
    if options.retain {
        query.push(("retain", "true".to_owned()));
    }
    if let Some(content_type) = &p.content_type {
        query.push(("contentType", content_type.clone()));
    }
    if let Some(topic) = &p.response_topic {
        query.push(("responseTopic", topic.clone()));
    }
    if let Some(expiry) = p.message_expiry_interval {
        query.push(("messageExpiry", expiry.to_string()));
    }
    let mut headers = vec![("content-type", "application/octet-stream".to_owned())];
    if !p.user_properties.is_empty() {
        let list: Vec<Value> = p
            .user_properties
            .iter()
            .map(|(k, v)| json!({ k: v }))
            .collect();
        headers.push((
            H_USER_PROPERTIES,
            BASE64.encode(Value::Array(list).to_string()),
        ));
    }
    if let Some(format) = p.payload_format {
        let value = match format {
            PayloadFormat::Unspecified => "UNSPECIFIED_BYTES",
            PayloadFormat::Utf8 => "UTF8_DATA",
        };
        headers.push((H_PAYLOAD_FORMAT, value.to_owned()));
    }
    if let Some(data) = &p.correlation_data {
        headers.push((H_CORRELATION_DATA, BASE64.encode(data)));
    }
    (query, headers)
}

/// The SigV4 headers of a request ([`iot::sigv4::sign_headers`], for [`SIGNING_NAME`]),
/// with `host` — what hyper sends: the port only when it is not the scheme's default — and
/// `headers` signed.
fn sign(
    method: &str,
    url: &str,
    headers: &[(&'static str, String)],
    body: &[u8],
    region: &str,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().ok_or("no host")?;
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let signed: Vec<(&str, &str)> = std::iter::once(("host", authority.as_str()))
        .chain(headers.iter().map(|(name, value)| (*name, value.as_str())))
        .collect();
    iot::sigv4::sign_headers(
        method,
        url,
        &signed,
        body,
        region,
        SIGNING_NAME,
        credentials,
        time,
    )
}

/// The refusal of an answer with a non-2xx `status`: exception name from
/// `x-amzn-ErrorType` (botocore's first choice; `Name:namespace-url` gives `Name`), else
/// the body's `__type` or `code` (`prefix#Name` gives `Name`), else the status's usual
/// exception; message from the body's `message` (or `Message`). Pure.
pub(crate) fn service_error(
    operation: &'static str,
    status: u16,
    error_type_header: Option<&str>,
    body: &[u8],
) -> DataError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let short = |t: &str| {
        let t = t.split(':').next().unwrap_or(t);
        t.rsplit('#').next().unwrap_or(t).trim().to_owned()
    };
    let error_type = error_type_header
        .map(short)
        .filter(|t| !t.is_empty())
        .or_else(|| field("__type").map(|t| short(&t)).filter(|t| !t.is_empty()))
        .or_else(|| field("code").map(|t| short(&t)).filter(|t| !t.is_empty()))
        .unwrap_or_else(|| shadow::exception_name_for_status(status).to_owned());
    let message = field("message")
        .or_else(|| field("Message"))
        .unwrap_or_else(|| {
            if parsed.is_none() {
                String::from_utf8_lossy(body).trim().to_owned()
            } else {
                String::new()
            }
        });
    DataError::Service {
        operation,
        status,
        error_type,
        message,
    }
}

fn qos_of(value: Option<&Value>) -> Result<QoS, String> {
    match value.and_then(Value::as_u64) {
        None | Some(0) => Ok(QoS::AtMostOnce),
        Some(1) => Ok(QoS::AtLeastOnce),
        Some(other) => Err(format!("qos {other} is not 0 or 1")),
    }
}

fn millis_of(value: Option<&Value>) -> Option<SystemTime> {
    value
        .and_then(Value::as_u64)
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
}

fn next_token_of(answer: &Value) -> Option<String> {
    answer
        .get("nextToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// `GetRetainedMessage`'s answer. Pure.
fn parse_retained_message(answer: &Value) -> Result<RetainedMessage, String> {
    let topic = answer
        .get("topic")
        .and_then(Value::as_str)
        .ok_or("no topic")?
        .to_owned();
    let payload = match answer.get("payload") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(b64)) => Bytes::from(
            BASE64
                .decode(b64)
                .map_err(|e| format!("payload is not base64: {e}"))?,
        ),
        Some(_) => return Err("payload is not a string".into()),
    };
    let user_properties = match answer.get("userProperties") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(b64)) => parse_user_properties(
            &BASE64
                .decode(b64)
                .map_err(|e| format!("userProperties is not base64: {e}"))?,
        )?,
        Some(_) => return Err("userProperties is not a string".into()),
    };
    Ok(RetainedMessage {
        topic,
        payload,
        qos: qos_of(answer.get("qos"))?,
        last_modified_time: millis_of(answer.get("lastModifiedTime")),
        user_properties,
    })
}

/// User properties as IoT Core's HTTP API carries them: a JSON array of objects, each
/// `{"key": "value"}` (pairs in order; an object with several pairs gives them all). Pure.
fn parse_user_properties(json: &[u8]) -> Result<Vec<(String, String)>, String> {
    let list: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(json)
        .map_err(|e| format!("userProperties is not a JSON array of objects: {e}"))?;
    let mut out = vec![];
    for object in list {
        for (key, value) in object {
            let value = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.push((key, value));
        }
    }
    Ok(out)
}

/// `ListRetainedMessages`'s answer. Pure.
fn parse_retained_page(answer: &Value) -> Result<RetainedMessagePage, String> {
    let topics = answer
        .get("retainedTopics")
        .and_then(Value::as_array)
        .ok_or("no retainedTopics")?;
    let mut retained_topics = Vec::with_capacity(topics.len());
    for entry in topics {
        retained_topics.push(RetainedMessageSummary {
            topic: entry
                .get("topic")
                .and_then(Value::as_str)
                .ok_or("a retainedTopics entry has no topic")?
                .to_owned(),
            payload_size: entry
                .get("payloadSize")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            qos: qos_of(entry.get("qos"))?,
            last_modified_time: millis_of(entry.get("lastModifiedTime")),
        });
    }
    Ok(RetainedMessagePage {
        retained_topics,
        next_token: next_token_of(answer),
    })
}

/// `ListNamedShadowsForThing`'s answer. Pure.
fn parse_named_shadows(answer: &Value) -> Result<NamedShadowsPage, String> {
    let results = answer
        .get("results")
        .and_then(Value::as_array)
        .ok_or("no results")?
        .iter()
        .map(|name| {
            name.as_str()
                .map(str::to_owned)
                .ok_or("a result is not a string")
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NamedShadowsPage {
        results,
        next_token: next_token_of(answer),
        timestamp: answer.get("timestamp").and_then(Value::as_u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt5::PublishProperties;

    #[test]
    fn labels_are_encoded_as_botocore_encodes_them() {
        assert_eq!(topic_path("/topics/", "a/b"), "/topics/a%2Fb");
        assert_eq!(
            topic_path("/topics/", "$aws/things/t-1/shadow/update"),
            "/topics/%24aws%2Fthings%2Ft-1%2Fshadow%2Fupdate"
        );
        assert_eq!(
            topic_path("/topics/", "a b/ü+x=~._-"),
            "/topics/a%20b%2F%C3%BC%2Bx%3D~._-"
        );
        assert_eq!(shadow_path("thing:1"), "/things/thing%3A1/shadow");
        assert_eq!(
            query_string(&[("name", "a+b c".into()), ("pageSize", "5".into())]),
            "?name=a%2Bb%20c&pageSize=5"
        );
        assert_eq!(query_string(&[]), "");
    }

    #[test]
    fn endpoint_urls() {
        assert_eq!(
            base_url("https://abc-ats.iot.us-east-1.amazonaws.com").unwrap(),
            "https://abc-ats.iot.us-east-1.amazonaws.com"
        );
        assert_eq!(
            base_url("https://abc-ats.iot.us-east-1.amazonaws.com:443/").unwrap(),
            "https://abc-ats.iot.us-east-1.amazonaws.com"
        );
        assert_eq!(
            base_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "wss://host/mqtt",
            "host:443",
            "https://host/prefix",
            "https://h/?a=b",
        ] {
            assert!(
                matches!(base_url(bad), Err(DataError::InvalidEndpoint { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn publish_parameters_follow_the_rest_api() {
        let (query, headers) = publish_parameters(QoS::AtMostOnce, &PublishOptions::new());
        assert_eq!(query, vec![("qos", "0".to_owned())]);
        assert_eq!(
            headers,
            vec![("content-type", "application/octet-stream".to_owned())]
        );
        let options = PublishOptions::new().retain(true).properties(
            PublishProperties::new()
                .user_property("k1", "v1")
                .user_property("k1", "v2")
                .content_type("text/plain")
                .payload_format(PayloadFormat::Utf8)
                .response_topic("reply/to")
                .correlation_data(&b"id-1"[..])
                .message_expiry_interval(60),
        );
        let (query, headers) = publish_parameters(QoS::AtLeastOnce, &options);
        assert_eq!(
            query_string(&query),
            "?qos=1&retain=true&contentType=text%2Fplain&responseTopic=reply%2Fto&messageExpiry=60"
        );
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let users = BASE64.decode(header(H_USER_PROPERTIES)).unwrap();
        assert_eq!(
            String::from_utf8(users).unwrap(),
            r#"[{"k1":"v1"},{"k1":"v2"}]"#
        );
        assert_eq!(header(H_PAYLOAD_FORMAT), "UTF8_DATA");
        assert_eq!(header(H_CORRELATION_DATA), BASE64.encode("id-1"));
    }

    #[test]
    fn refusals_keep_status_type_and_message() {
        let e = service_error(
            "Publish",
            403,
            Some("ForbiddenException:http://internal.amazon.com/coral/com.amazonaws.iot.data/"),
            br#"{"message":"Forbidden"}"#,
        );
        assert_eq!(e.status(), Some(403));
        assert_eq!(e.error_type(), Some("ForbiddenException"));
        assert_eq!(e.message(), Some("Forbidden"));
        assert_eq!(
            e.to_string(),
            "Publish: HTTP 403 ForbiddenException: Forbidden"
        );
        // No header: the body's __type (with a namespace), then its status.
        let e = service_error(
            "GetRetainedMessage",
            404,
            None,
            br#"{"__type":"com.amazonaws.iot#ResourceNotFoundException","Message":"no such"}"#,
        );
        assert_eq!(e.error_type(), Some("ResourceNotFoundException"));
        assert_eq!(e.message(), Some("no such"));
        // The shadow service's error document: code and message.
        let e = service_error(
            "GetThingShadow",
            401,
            None,
            br#"{"code":401,"message":"Unauthorized","timestamp":1}"#,
        );
        assert_eq!(e.error_type(), Some("UnauthorizedException"));
        assert_eq!(e.message(), Some("Unauthorized"));
        // Not JSON at all (a proxy's page): the status names it, the text is the message.
        let e = service_error("Publish", 503, None, b"  Service Unavailable\n");
        assert_eq!(e.error_type(), Some("ServiceUnavailableException"));
        assert_eq!(e.message(), Some("Service Unavailable"));
        let e = service_error("Publish", 500, Some(""), b"{}");
        assert_eq!(
            (e.error_type(), e.message()),
            (Some("InternalFailureException"), Some(""))
        );
    }

    #[test]
    fn answers_are_read_in_the_models_shapes() {
        let message = parse_retained_message(&json!({
            "topic": "a/b",
            "payload": BASE64.encode("hi"),
            "qos": 1,
            "lastModifiedTime": 1_700_000_000_123u64,
            "userProperties": BASE64.encode(r#"[{"a":"1"},{"b":"2"}]"#),
        }))
        .unwrap();
        assert_eq!(
            message,
            RetainedMessage {
                topic: "a/b".into(),
                payload: Bytes::from_static(b"hi"),
                qos: QoS::AtLeastOnce,
                last_modified_time: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
                user_properties: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            }
        );
        assert!(parse_retained_message(&json!({"topic": "t", "payload": "!!"})).is_err());
        assert!(parse_retained_message(&json!({"topic": "t", "qos": 2})).is_err());
        assert!(parse_retained_message(&json!({"payload": ""})).is_err());

        let page = parse_retained_page(&json!({
            "retainedTopics": [{"topic": "x", "payloadSize": 3, "qos": 0, "lastModifiedTime": 5}],
            "nextToken": "abc",
        }))
        .unwrap();
        assert_eq!(page.retained_topics.len(), 1);
        assert_eq!(page.retained_topics[0].payload_size, 3);
        assert_eq!(page.next_token.as_deref(), Some("abc"));
        let last = parse_retained_page(&json!({"retainedTopics": [], "nextToken": ""})).unwrap();
        assert_eq!(last.next_token, None);
        assert!(parse_retained_page(&json!({})).is_err());

        let names = parse_named_shadows(&json!({"results": ["a", "b"], "timestamp": 9})).unwrap();
        assert_eq!(
            names,
            NamedShadowsPage {
                results: vec!["a".into(), "b".into()],
                next_token: None,
                timestamp: Some(9)
            }
        );
        assert!(parse_named_shadows(&json!({"results": [1]})).is_err());
    }

    /// Signed here by aws-sigv4, verified by the broker's own SigV4 verifier (written
    /// from AWS's rules, not with aws-sigv4): a topic's `%2F`, the query, the body and the
    /// session token all as the broker checks them.
    #[test]
    fn signatures_verify_as_the_broker_verifies_them() {
        use iot::sigv4::{parse_authorization, verify_header_signed, SigV4Error, SignedRequest};
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let verify = |credentials: &Credentials, secret: &str, body: &[u8]| {
            let url = "https://h.example:8443/topics/a%2Fb%20c?qos=1&contentType=text%2Fplain";
            let extra = vec![("content-type", "application/octet-stream".to_owned())];
            let signed = sign(
                "POST",
                url,
                &extra,
                b"payload",
                "us-east-1",
                credentials,
                time,
            )
            .unwrap();
            let mut headers: Vec<(&str, &str)> = vec![("host", "h.example:8443")];
            headers.extend(extra.iter().map(|(n, v)| (*n, v.as_str())));
            headers.extend(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            let request = SignedRequest {
                method: "POST",
                path: "/topics/a%2Fb%20c",
                query: "qos=1&contentType=text%2Fplain",
                headers: &headers,
            };
            let authorization = parse_authorization(&headers).unwrap().unwrap();
            assert_eq!(authorization.service, SIGNING_NAME);
            let token = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-security-token"))
                .map(|(_, v)| v.to_string());
            let verified = verify_header_signed(
                &request,
                body,
                &authorization,
                secret,
                "us-east-1",
                &[SIGNING_NAME],
                time,
            );
            (verified, token)
        };
        let temporary = Credentials::new("ASIA1", "secret", Some("tok/+=".into()), None, "t");
        assert_eq!(
            verify(&temporary, "secret", b"payload"),
            (Ok(()), Some("tok/+=".to_owned()))
        );
        let long_term = Credentials::new("AKIA1", "secret", None, None, "t");
        assert_eq!(verify(&long_term, "secret", b"payload"), (Ok(()), None));
        assert_eq!(
            verify(&long_term, "other", b"payload").0,
            Err(SigV4Error::BadSignature)
        );
        assert_eq!(
            verify(&long_term, "secret", b"tampered").0,
            Err(SigV4Error::BadSignature)
        );
    }
}
