//! Credentials from an Amazon Cognito identity pool — the Rust `AWSCognitoCredentialsProvider`.
//!
//! [`CognitoCredentialsProvider`] speaks the Cognito Identity service's AWS JSON 1.1 protocol:
//! `GetId` turns the identity pool id (and optional logins) into an identity id, then
//! `GetCredentialsForIdentity` turns the identity id into temporary AWS credentials. Both
//! calls are unsigned, as in AWS. The identity id is cached for the life of the provider;
//! the credentials until shortly before they expire.
//!
//! ```no_run
//! use pubsub::cognito::CognitoCredentialsProvider;
//! use pubsub::{DataManager, Endpoint, ServiceConfiguration};
//!
//! # fn main() -> Result<(), pubsub::Error> {
//! let credentials = CognitoCredentialsProvider::builder(
//!     "us-east-1:11111111-2222-3333-4444-555555555555",
//!     "us-east-1",
//! )
//! .build()?;
//! let config = ServiceConfiguration::new(
//!     "us-east-1",
//!     Endpoint::parse("wss://xxxx-ats.iot.us-east-1.amazonaws.com/mqtt")?,
//! )
//! .credentials_provider(credentials);
//! let iot = DataManager::new(config);
//! iot.connect_using_websocket("client-1", true, |status| println!("{status:?}"))?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;
use serde_json::{json, Map, Value};

use crate::error::Error;

/// `Content-Type` of the AWS JSON 1.1 protocol.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// `X-Amz-Target` of the `GetId` operation.
pub const TARGET_GET_ID: &str = "AWSCognitoIdentityService.GetId";

/// `X-Amz-Target` of the `GetCredentialsForIdentity` operation.
pub const TARGET_GET_CREDENTIALS_FOR_IDENTITY: &str =
    "AWSCognitoIdentityService.GetCredentialsForIdentity";

/// Credentials are refreshed this long before they expire (or at half their lifetime, when
/// that comes first).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The provider name written into the [`Credentials`] this provider returns.
const PROVIDER_NAME: &str = "cognito-identity";

/// The Cognito Identity endpoint of `region`: `https://cognito-identity.<region>.amazonaws.com/`.
///
/// ```
/// assert_eq!(
///     pubsub::cognito::default_endpoint("eu-west-1"),
///     "https://cognito-identity.eu-west-1.amazonaws.com/"
/// );
/// ```
pub fn default_endpoint(region: &str) -> String {
    format!("https://cognito-identity.{region}.amazonaws.com/")
}

/// An error answer of the Cognito Identity service (HTTP status other than 2xx), or a
/// response this provider could not understand.
///
/// It is the source of the [`CredentialsError::provider_error`] the provider returns, so it
/// can be reached with `std::error::Error::source` and downcast:
///
/// ```no_run
/// use pubsub::cognito::{CognitoCredentialsProvider, CognitoError};
/// use pubsub::ProvideCredentials;
///
/// # async fn f() -> Result<(), pubsub::Error> {
/// let provider = CognitoCredentialsProvider::builder("us-east-1:bad", "us-east-1").build()?;
/// if let Err(e) = provider.provide_credentials().await {
///     let cognito = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<CognitoError>());
///     if let Some(c) = cognito {
///         println!("{} failed: {} ({})", c.operation(), c.error_type(), c.message());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoError {
    operation: &'static str,
    status: Option<u16>,
    error_type: String,
    message: String,
}

impl CognitoError {
    /// The operation that failed: `"GetId"` or `"GetCredentialsForIdentity"` (and, for a
    /// [`UserPoolCredentialsProvider`](crate::user_pool::UserPoolCredentialsProvider),
    /// `"InitiateAuth"` or `"RespondToAuthChallenge"`).
    ///
    /// ```
    /// # fn f(e: &pubsub::cognito::CognitoError) {
    /// println!("{} failed", e.operation());
    /// # }
    /// ```
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The HTTP status of the answer (`None` when there was no answer: network or TLS
    /// failure).
    ///
    /// ```
    /// # fn f(e: &pubsub::cognito::CognitoError) {
    /// if e.status() == Some(400) { println!("client error: {}", e.error_type()) }
    /// # }
    /// ```
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The error type without namespace or URI, e.g. `NotAuthorizedException` (from
    /// `__type` in the body or the `x-amzn-ErrorType` header). For failures without an
    /// answer: `NetworkError`; for an answer that could not be parsed: `InvalidResponse`.
    ///
    /// ```
    /// # fn f(e: &pubsub::cognito::CognitoError) {
    /// if e.error_type() == "NotAuthorizedException" { println!("log in again") }
    /// # }
    /// ```
    pub fn error_type(&self) -> &str {
        &self.error_type
    }

    /// The human-readable message (may be empty).
    ///
    /// ```
    /// # fn f(e: &pubsub::cognito::CognitoError) {
    /// eprintln!("{}", e.message());
    /// # }
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CognitoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cognito {}: {}", self.operation, self.error_type)?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for CognitoError {}

/// Builder of a [`CognitoCredentialsProvider`]; made by [`CognitoCredentialsProvider::builder`].
///
/// ```
/// use pubsub::cognito::CognitoCredentialsProvider;
/// # fn main() -> Result<(), pubsub::Error> {
/// let provider = CognitoCredentialsProvider::builder("us-east-1:pool-uuid", "us-east-1")
///     .login("accounts.google.com", "<id token>")
///     .endpoint("http://127.0.0.1:8088/")
///     .timeout(std::time::Duration::from_secs(5))
///     .build()?;
/// assert_eq!(provider.endpoint(), "http://127.0.0.1:8088/");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CognitoCredentialsProviderBuilder {
    identity_pool_id: String,
    region: String,
    logins: BTreeMap<String, String>,
    endpoint: Option<String>,
    identity_id: Option<String>,
    ca_file: Option<PathBuf>,
    timeout: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for CognitoCredentialsProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CognitoCredentialsProviderBuilder")
            .field("identity_pool_id", &self.identity_pool_id)
            .field("region", &self.region)
            .field("logins", &self.logins.keys().collect::<Vec<_>>())
            .field("endpoint", &self.endpoint)
            .field("identity_id", &self.identity_id)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl CognitoCredentialsProviderBuilder {
    /// Add one login: identity provider name (e.g. `accounts.google.com`,
    /// `cognito-idp.<region>.amazonaws.com/<user pool id>`, a developer provider name) →
    /// token. Without logins the identity is unauthenticated.
    ///
    /// ```
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// let b = CognitoCredentialsProvider::builder("us-east-1:pool", "us-east-1")
    ///     .login("graph.facebook.com", "<access token>");
    /// ```
    pub fn login(mut self, provider: impl Into<String>, token: impl Into<String>) -> Self {
        self.logins.insert(provider.into(), token.into());
        self
    }

    /// Replace the logins with `logins` (identity provider name → token).
    ///
    /// ```
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// let logins = [("accounts.google.com".to_string(), "<id token>".to_string())];
    /// let b = CognitoCredentialsProvider::builder("us-east-1:pool", "us-east-1").logins(logins);
    /// ```
    pub fn logins(mut self, logins: impl IntoIterator<Item = (String, String)>) -> Self {
        self.logins = logins.into_iter().collect();
        self
    }

    /// Send the requests to `url` instead of [`default_endpoint`]`(region)`; `http://` and
    /// `https://` URLs both work (e.g. the PubSub broker's emulation, `http://127.0.0.1:8088/`).
    ///
    /// ```
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// let b = CognitoCredentialsProvider::builder("us-east-1:pool", "us-east-1")
    ///     .endpoint("https://localhost:8443/");
    /// ```
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Use this identity id and skip `GetId` (e.g. one saved from an earlier run).
    ///
    /// ```
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// let b = CognitoCredentialsProvider::builder("us-east-1:pool", "us-east-1")
    ///     .identity_id("us-east-1:0f6c4a1e-8a43-4c54-9a3b-6b1f0d2b7e11");
    /// ```
    pub fn identity_id(mut self, identity_id: impl Into<String>) -> Self {
        self.identity_id = Some(identity_id.into());
        self
    }

    /// Trust only the CA certificates in this PEM file for `https://` endpoints (default:
    /// the webpki roots, which include Amazon's). For a local HTTPS endpoint, e.g. the
    /// broker's `tls/ca.pem`.
    ///
    /// ```
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// let b = CognitoCredentialsProvider::builder("us-east-1:pool", "us-east-1")
    ///     .endpoint("https://localhost:8443/")
    ///     .ca_file("data/tls/ca.pem");
    /// ```
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Time limit of one HTTP request, connection included (default 30 s).
    ///
    /// ```
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// let b = CognitoCredentialsProvider::builder("us-east-1:pool", "us-east-1")
    ///     .timeout(std::time::Duration::from_secs(10));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Build the provider. Nothing is sent yet: errors of the service come from
    /// [`CognitoCredentialsProvider::identity_id`] and `provide_credentials`.
    ///
    /// # Errors
    /// Only with [`ca_file`](Self::ca_file): [`Error::Io`] when the file cannot be read,
    /// [`Error::InvalidPem`] when it is not PEM or holds no CA certificate. Otherwise
    /// only if TLS or the HTTP client cannot be set up at all: [`Error::Tls`], or
    /// [`Error::Credentials`] with the HTTP client's error as source.
    ///
    /// ```
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// # fn main() -> Result<(), pubsub::Error> {
    /// let provider = CognitoCredentialsProvider::builder("us-east-1:pool", "us-east-1").build()?;
    /// assert_eq!(provider.endpoint(), "https://cognito-identity.us-east-1.amazonaws.com/");
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<CognitoCredentialsProvider, Error> {
        let client = http_client(self.ca_file.as_deref(), self.timeout, self.connect_timeout)?;
        let endpoint = self
            .endpoint
            .unwrap_or_else(|| default_endpoint(&self.region));
        Ok(CognitoCredentialsProvider {
            inner: Arc::new(Inner {
                identity_pool_id: self.identity_pool_id,
                region: self.region,
                logins: self.logins,
                endpoint,
                client,
                state: tokio::sync::Mutex::new(State {
                    identity_id: self.identity_id,
                    cached: None,
                }),
            }),
        })
    }
}

/// Temporary AWS credentials for a Cognito identity: implements [`ProvideCredentials`], so
/// it plugs into [`ServiceConfiguration::credentials_provider`](crate::ServiceConfiguration::credentials_provider).
///
/// The first call gets the identity id (`GetId`, unless one was given) and credentials
/// (`GetCredentialsForIdentity`). The identity id is kept for the life of the provider;
/// the credentials until [`REFRESH_MARGIN`] before their `Expiration` (or half their
/// lifetime, when that is shorter), after which the next call fetches new ones. Concurrent
/// callers share one fetch. Clones share the cache.
///
/// Errors are [`CredentialsError::provider_error`]s whose source is a [`CognitoError`]
/// (error type and message of the service's answer).
///
/// ```no_run
/// use pubsub::cognito::CognitoCredentialsProvider;
/// use pubsub::ProvideCredentials;
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let provider = CognitoCredentialsProvider::builder("us-east-1:pool-uuid", "us-east-1")
///     .endpoint("http://127.0.0.1:8088/")
///     .build()?;
/// let credentials = provider.provide_credentials().await?;
/// println!("{} for {}", credentials.access_key_id(), provider.identity_id().await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CognitoCredentialsProvider {
    inner: Arc<Inner>,
}

struct Inner {
    identity_pool_id: String,
    region: String,
    logins: BTreeMap<String, String>,
    endpoint: String,
    client: reqwest::Client,
    state: tokio::sync::Mutex<State>,
}

struct State {
    identity_id: Option<String>,
    cached: Option<Cached>,
}

struct Cached {
    credentials: Credentials,
    refresh_at: SystemTime,
    expires: SystemTime,
}

impl fmt::Debug for CognitoCredentialsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CognitoCredentialsProvider")
            .field("identity_pool_id", &self.inner.identity_pool_id)
            .field("region", &self.inner.region)
            .field("logins", &self.inner.logins.keys().collect::<Vec<_>>())
            .field("endpoint", &self.inner.endpoint)
            .finish_non_exhaustive()
    }
}

impl CognitoCredentialsProvider {
    /// Start configuring a provider for `identity_pool_id` (`<region>:<uuid>`) in `region`.
    ///
    /// ```
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// # fn main() -> Result<(), pubsub::Error> {
    /// let provider = CognitoCredentialsProvider::builder("us-east-1:pool-uuid", "us-east-1").build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(
        identity_pool_id: impl Into<String>,
        region: impl Into<String>,
    ) -> CognitoCredentialsProviderBuilder {
        CognitoCredentialsProviderBuilder {
            identity_pool_id: identity_pool_id.into(),
            region: region.into(),
            logins: BTreeMap::new(),
            endpoint: None,
            identity_id: None,
            ca_file: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The identity pool id.
    ///
    /// ```
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// # fn main() -> Result<(), pubsub::Error> {
    /// let p = CognitoCredentialsProvider::builder("us-east-1:pool-uuid", "us-east-1").build()?;
    /// assert_eq!(p.identity_pool_id(), "us-east-1:pool-uuid");
    /// # Ok(()) }
    /// ```
    pub fn identity_pool_id(&self) -> &str {
        &self.inner.identity_pool_id
    }

    /// The region.
    ///
    /// ```
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// # fn main() -> Result<(), pubsub::Error> {
    /// let p = CognitoCredentialsProvider::builder("eu-west-1:pool-uuid", "eu-west-1").build()?;
    /// assert_eq!(p.region(), "eu-west-1");
    /// # Ok(()) }
    /// ```
    pub fn region(&self) -> &str {
        &self.inner.region
    }

    /// The URL the requests go to.
    ///
    /// ```
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// # fn main() -> Result<(), pubsub::Error> {
    /// let p = CognitoCredentialsProvider::builder("eu-west-1:pool-uuid", "eu-west-1").build()?;
    /// assert_eq!(p.endpoint(), "https://cognito-identity.eu-west-1.amazonaws.com/");
    /// # Ok(()) }
    /// ```
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The identity id: the cached one, or one fetched now with `GetId` (then cached for the
    /// life of the provider).
    ///
    /// # Errors
    /// Only when `GetId` is called (no identity id given with
    /// [`CognitoCredentialsProviderBuilder::identity_id`] and none fetched yet): a
    /// [`CredentialsError::provider_error`] whose source is a [`CognitoError`]: the
    /// service's answer (e.g. `ResourceNotFoundException` for an unknown pool,
    /// `NotAuthorizedException` for a bad login token, with its HTTP status),
    /// `NetworkError` when no answer came (connection, TLS, timeout), or
    /// `InvalidResponse` when the answer has no `IdentityId`. A failed call caches
    /// nothing: the next one tries again.
    ///
    /// ```no_run
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let p = CognitoCredentialsProvider::builder("us-east-1:pool-uuid", "us-east-1").build()?;
    /// let id = p.identity_id().await?; // "us-east-1:<uuid>"
    /// # Ok(()) }
    /// ```
    pub async fn identity_id(&self) -> Result<String, CredentialsError> {
        let mut state = self.inner.state.lock().await;
        self.inner.ensure_identity_id(&mut state).await
    }

    /// Forget the cached credentials (not the identity id): the next call fetches new ones.
    ///
    /// ```no_run
    /// # use pubsub::cognito::CognitoCredentialsProvider;
    /// # async fn f(p: CognitoCredentialsProvider) {
    /// p.clear_credentials().await;
    /// # }
    /// ```
    pub async fn clear_credentials(&self) {
        self.inner.state.lock().await.cached = None;
    }

    /// Cached credentials if still fresh, else new ones from `GetCredentialsForIdentity`.
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let mut state = self.inner.state.lock().await;
        let now = SystemTime::now();
        if let Some(c) = &state.cached {
            if now < c.refresh_at {
                return Ok(c.credentials.clone());
            }
        }
        let id = self.inner.ensure_identity_id(&mut state).await?;
        match self.inner.get_credentials_for_identity(&id).await {
            Ok((new_id, credentials, expires)) => {
                if new_id != id {
                    tracing::debug!(old = %id, new = %new_id, "Cognito identity id changed");
                    state.identity_id = Some(new_id);
                }
                state.cached = Some(Cached {
                    credentials: credentials.clone(),
                    refresh_at: refresh_at(SystemTime::now(), expires),
                    expires,
                });
                Ok(credentials)
            }
            Err(e) => match &state.cached {
                // A failed early refresh is not fatal while the old credentials still work.
                Some(c) if SystemTime::now() < c.expires => {
                    tracing::warn!(error = %DisplayChain(&e), "Cognito credentials refresh failed; using the cached ones until they expire");
                    Ok(c.credentials.clone())
                }
                _ => Err(e),
            },
        }
    }
}

impl ProvideCredentials for CognitoCredentialsProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.credentials())
    }
}

/// Formats an error with its sources, `a: b: c`.
pub(crate) struct DisplayChain<'a>(pub(crate) &'a dyn std::error::Error);

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}

impl Inner {
    async fn ensure_identity_id(&self, state: &mut State) -> Result<String, CredentialsError> {
        if let Some(id) = &state.identity_id {
            return Ok(id.clone());
        }
        let id = get_id(
            &self.client,
            &self.endpoint,
            &self.identity_pool_id,
            &self.logins,
        )
        .await
        .map_err(CredentialsError::provider_error)?;
        state.identity_id = Some(id.clone());
        Ok(id)
    }

    async fn get_credentials_for_identity(
        &self,
        identity_id: &str,
    ) -> Result<(String, Credentials, SystemTime), CredentialsError> {
        get_credentials_for_identity(&self.client, &self.endpoint, identity_id, &self.logins)
            .await
            .map_err(CredentialsError::provider_error)
    }
}

/// The HTTP client of the Cognito providers: the SDK's TLS roots (or `ca_file`'s), time
/// limits, the SDK's user agent.
pub(crate) fn http_client(
    ca_file: Option<&Path>,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<reqwest::Client, Error> {
    let tls = crate::tls::client_config(ca_file, None, &[])?;
    crate::tls::http_client(&tls, timeout, connect_timeout)
        .map_err(|e| Error::Credentials(Box::new(e)))
}

/// When something obtained at `now` and valid until `expires` should be renewed:
/// [`REFRESH_MARGIN`] before `expires`, or half-way when the lifetime is shorter than twice that.
pub(crate) fn refresh_at(now: SystemTime, expires: SystemTime) -> SystemTime {
    let lifetime = expires.duration_since(now).unwrap_or_default();
    expires - REFRESH_MARGIN.min(lifetime / 2)
}

/// `GetId`: the identity id of `logins` (none: a new unauthenticated identity) in the pool.
pub(crate) async fn get_id(
    client: &reqwest::Client,
    endpoint: &str,
    identity_pool_id: &str,
    logins: &BTreeMap<String, String>,
) -> Result<String, CognitoError> {
    let mut body = Map::new();
    body.insert("IdentityPoolId".into(), json!(identity_pool_id));
    add_logins(&mut body, logins);
    let answer = call(client, endpoint, "GetId", TARGET_GET_ID, body).await?;
    answer
        .get("IdentityId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| invalid("GetId", "no IdentityId in the answer"))
}

/// `GetCredentialsForIdentity`: (identity id as answered, credentials, their expiry).
pub(crate) async fn get_credentials_for_identity(
    client: &reqwest::Client,
    endpoint: &str,
    identity_id: &str,
    logins: &BTreeMap<String, String>,
) -> Result<(String, Credentials, SystemTime), CognitoError> {
    const OP: &str = "GetCredentialsForIdentity";
    let mut body = Map::new();
    body.insert("IdentityId".into(), json!(identity_id));
    add_logins(&mut body, logins);
    let answer = call(
        client,
        endpoint,
        OP,
        TARGET_GET_CREDENTIALS_FOR_IDENTITY,
        body,
    )
    .await?;
    let new_id = answer
        .get("IdentityId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(identity_id)
        .to_owned();
    let c = answer
        .get("Credentials")
        .ok_or_else(|| invalid(OP, "no Credentials in the answer"))?;
    let field = |name: &str| {
        c.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(OP, &format!("no Credentials.{name} in the answer")))
    };
    let access_key_id = field("AccessKeyId")?;
    let secret_key = field("SecretKey")?;
    let session_token = field("SessionToken")?;
    let expires = c
        .get("Expiration")
        .and_then(epoch_seconds)
        .ok_or_else(|| invalid(OP, "no valid Credentials.Expiration in the answer"))?;
    let credentials = Credentials::new(
        access_key_id,
        secret_key,
        Some(session_token.to_owned()),
        Some(expires),
        PROVIDER_NAME,
    );
    Ok((new_id, credentials, expires))
}

fn add_logins(body: &mut Map<String, Value>, logins: &BTreeMap<String, String>) {
    if !logins.is_empty() {
        body.insert("Logins".into(), json!(logins));
    }
}

/// POST one AWS JSON 1.1 request (`X-Amz-Target: target`); the parsed answer, or the
/// service's error.
pub(crate) async fn call(
    client: &reqwest::Client,
    endpoint: &str,
    operation: &'static str,
    target: &str,
    body: Map<String, Value>,
) -> Result<Value, CognitoError> {
    let body = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| invalid(operation, &format!("encoding the request: {e}")))?;
    let response = client
        .post(endpoint)
        .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
        .header("X-Amz-Target", target)
        .body(body)
        .send()
        .await
        .map_err(|e| CognitoError {
            operation,
            status: None,
            error_type: "NetworkError".into(),
            message: DisplayChain(&e).to_string(),
        })?;
    let status = response.status();
    let header_type = response
        .headers()
        .get("x-amzn-ErrorType")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response.bytes().await.map_err(|e| CognitoError {
        operation,
        status: Some(status.as_u16()),
        error_type: "NetworkError".into(),
        message: DisplayChain(&e).to_string(),
    })?;
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    if !status.is_success() {
        let body_field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let error_type = body_field("__type")
            .or(header_type)
            .map(|t| short_error_type(&t))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("UnknownError")
                    .replace(' ', "")
            });
        let message = body_field("message")
            .or_else(|| body_field("Message"))
            .unwrap_or_else(|| {
                if parsed.is_some() {
                    String::new()
                } else {
                    String::from_utf8_lossy(&bytes).chars().take(200).collect()
                }
            });
        return Err(CognitoError {
            operation,
            status: Some(status.as_u16()),
            error_type,
            message,
        });
    }
    match parsed {
        Some(v @ Value::Object(_)) => Ok(v),
        _ => Err(invalid(operation, "the answer is not a JSON object")),
    }
}

pub(crate) fn invalid(operation: &'static str, message: &str) -> CognitoError {
    CognitoError {
        operation,
        status: None,
        error_type: "InvalidResponse".into(),
        message: message.to_owned(),
    }
}

/// `com.amazonaws.cognito.identity#NotAuthorizedException` or
/// `NotAuthorizedException:http://internal.amazon.com/…` → `NotAuthorizedException`.
fn short_error_type(t: &str) -> String {
    let t = t.split(':').next().unwrap_or(t);
    let t = t.rsplit('#').next().unwrap_or(t);
    t.trim().to_owned()
}

/// An AWS JSON timestamp: epoch seconds as a number (possibly fractional), or as a string.
fn epoch_seconds(v: &Value) -> Option<SystemTime> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_type_forms() {
        assert_eq!(
            short_error_type("com.amazonaws.cognito.identity#NotAuthorizedException"),
            "NotAuthorizedException"
        );
        assert_eq!(
            short_error_type("ResourceNotFoundException:http://internal.amazon.com/coral/x/"),
            "ResourceNotFoundException"
        );
        assert_eq!(
            short_error_type("TooManyRequestsException"),
            "TooManyRequestsException"
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            epoch_seconds(&json!(1_700_000_000)),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            epoch_seconds(&json!(1.5)),
            Some(UNIX_EPOCH + Duration::from_millis(1500))
        );
        assert_eq!(
            epoch_seconds(&json!("10")),
            Some(UNIX_EPOCH + Duration::from_secs(10))
        );
        assert_eq!(epoch_seconds(&json!(-1)), None);
        assert_eq!(epoch_seconds(&json!(null)), None);
    }
}
