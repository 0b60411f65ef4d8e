//! Credentials for a signed-in Cognito user pool user — what Amplify's `signIn` followed by
//! `fetchAuthSession` does, for Rust.
//!
//! [`UserPoolCredentialsProvider`] signs the user in with `USER_SRP_AUTH` (the password never
//! leaves the process: `InitiateAuth` sends SRP_A, `RespondToAuthChallenge` answers the
//! PASSWORD_VERIFIER challenge with a claim computed by [`iot::cognito::srp`]), then trades
//! the ID token for an identity id (`GetId`) and temporary AWS credentials
//! (`GetCredentialsForIdentity`), both with `Logins = {"cognito-idp.<region>.amazonaws.com/<pool id>": <ID token>}`.
//! Tokens are renewed with `REFRESH_TOKEN_AUTH` before they expire (a fresh SRP sign-in when
//! the refresh token is refused), credentials before their `Expiration`.
//!
//! ```no_run
//! use pubsub::user_pool::UserPoolCredentialsProvider;
//! use pubsub::{DataManager, Endpoint, ServiceConfiguration};
//!
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let credentials = UserPoolCredentialsProvider::builder(
//!     "us-east-1_AbCdEf123",                                 // user pool id
//!     "3n4b5urk1ft4fl3mg5e62d9ado",                          // app client id
//!     "us-east-1:11111111-2222-3333-4444-555555555555",     // identity pool id
//!     "alice",
//!     "Correct-Horse-1",
//! )
//! .build()?;
//! let identity_id = credentials.identity_id().await?; // for attach-policy
//! let config = ServiceConfiguration::new(
//!     "us-east-1",
//!     Endpoint::parse("wss://xxxx-ats.iot.us-east-1.amazonaws.com/mqtt")?,
//! )
//! .credentials_provider(credentials);
//! let iot = DataManager::new(config);
//! iot.connect_using_websocket("alice-phone", true, |status| println!("{status:?}"))?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;
use iot::cognito::jwt::rand_core::{OsRng, RngCore};
use iot::cognito::srp::{self, SrpError};
use serde_json::{json, Map, Value};

use crate::cognito::{self, CognitoError, DisplayChain};
use crate::error::Error;

/// `X-Amz-Target` of cognito-idp's `InitiateAuth`.
pub const TARGET_INITIATE_AUTH: &str = "AWSCognitoIdentityProviderService.InitiateAuth";

/// `X-Amz-Target` of cognito-idp's `RespondToAuthChallenge`.
pub const TARGET_RESPOND_TO_AUTH_CHALLENGE: &str =
    "AWSCognitoIdentityProviderService.RespondToAuthChallenge";

/// The user pool (cognito-idp) endpoint of `region`.
///
/// ```
/// assert_eq!(
///     pubsub::user_pool::default_endpoint("eu-west-1"),
///     "https://cognito-idp.eu-west-1.amazonaws.com/"
/// );
/// ```
pub fn default_endpoint(region: &str) -> String {
    format!("https://cognito-idp.{region}.amazonaws.com/")
}

/// The `Logins` key of a user pool's ID tokens: `cognito-idp.<region>.amazonaws.com/<pool id>`.
///
/// ```
/// assert_eq!(
///     pubsub::user_pool::login_provider("us-east-1", "us-east-1_AbCdEf123"),
///     "cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123"
/// );
/// ```
pub fn login_provider(region: &str, user_pool_id: &str) -> String {
    format!("cognito-idp.{region}.amazonaws.com/{user_pool_id}")
}

/// Why signing in (or getting the identity or credentials after it) failed.
///
/// ```no_run
/// # async fn f(p: pubsub::user_pool::UserPoolCredentialsProvider) {
/// if let Err(e) = p.sign_in().await {
///     match e.error_type() {
///         Some("NotAuthorizedException") => eprintln!("wrong user name or password"),
///         Some("UserNotConfirmedException") => eprintln!("confirm the account first"),
///         _ => eprintln!("{e}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SignInError {
    /// The service's answer (its `__type` and message: `NotAuthorizedException`,
    /// `UserNotFoundException`, `UserNotConfirmedException`, …), a network failure or an
    /// answer that could not be understood.
    #[error(transparent)]
    Service(#[from] CognitoError),
    /// Cognito asked for a challenge this provider does not answer (`NEW_PASSWORD_REQUIRED`,
    /// `SMS_MFA`, `SOFTWARE_TOKEN_MFA`, …).
    #[error("Cognito asks for the {0} challenge, which this provider does not answer")]
    UnsupportedChallenge(String),
    /// The challenge's SRP values were unusable.
    #[error("SRP: {0}")]
    Srp(#[from] SrpError),
}

impl SignInError {
    /// The service's error type (`NotAuthorizedException`, …), when the service answered one.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            SignInError::Service(e) => Some(e.error_type()),
            _ => None,
        }
    }
}

/// The user pool tokens of a signed-in user.
#[derive(Clone)]
pub struct Tokens {
    /// The ID token: the `Logins` value for the identity pool.
    pub id_token: String,
    /// The access token (for cognito-idp's own user operations).
    pub access_token: String,
    /// Absent after a refresh that did not rotate it (the previous one stays in use).
    pub refresh_token: Option<String>,
    /// When the ID and access tokens expire (`ExpiresIn` after they were received).
    pub expires: SystemTime,
    refresh_at: SystemTime,
}

impl fmt::Debug for Tokens {
    /// No token values: they are bearer secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("expires", &self.expires)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// Builder of a [`UserPoolCredentialsProvider`]; made by
/// [`UserPoolCredentialsProvider::builder`].
///
/// ```
/// use pubsub::user_pool::UserPoolCredentialsProvider;
/// # fn main() -> Result<(), pubsub::Error> {
/// let p = UserPoolCredentialsProvider::builder(
///     "us-east-1_AbCdEf123", "client-id", "us-east-1:pool-uuid", "alice", "pw",
/// )
/// .endpoint("http://127.0.0.1:8088/") // the broker serves cognito-idp and cognito-identity
/// .build()?;
/// assert_eq!(p.region(), "us-east-1");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct UserPoolCredentialsProviderBuilder {
    user_pool_id: String,
    client_id: String,
    identity_pool_id: String,
    username: String,
    password: String,
    region: Option<String>,
    user_pool_endpoint: Option<String>,
    identity_endpoint: Option<String>,
    ca_file: Option<PathBuf>,
    timeout: Duration,
}

impl fmt::Debug for UserPoolCredentialsProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPoolCredentialsProviderBuilder")
            .field("user_pool_id", &self.user_pool_id)
            .field("client_id", &self.client_id)
            .field("identity_pool_id", &self.identity_pool_id)
            .field("username", &self.username)
            .field("region", &self.region)
            .field("user_pool_endpoint", &self.user_pool_endpoint)
            .field("identity_endpoint", &self.identity_endpoint)
            .finish_non_exhaustive()
    }
}

impl UserPoolCredentialsProviderBuilder {
    /// The region of both services (default: the user pool id's prefix, `us-east-1` of
    /// `us-east-1_AbCdEf123`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Send both services' requests to `url` (the PubSub broker serves both on its `http`
    /// listener, e.g. `http://127.0.0.1:8088/`).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.user_pool_endpoint = Some(url.clone());
        self.identity_endpoint = Some(url);
        self
    }

    /// The cognito-idp URL (default [`default_endpoint`]`(region)`).
    pub fn user_pool_endpoint(mut self, url: impl Into<String>) -> Self {
        self.user_pool_endpoint = Some(url.into());
        self
    }

    /// The cognito-identity URL (default [`cognito::default_endpoint`]`(region)`).
    pub fn identity_endpoint(mut self, url: impl Into<String>) -> Self {
        self.identity_endpoint = Some(url.into());
        self
    }

    /// Trust only the CA certificates in this PEM file for `https://` endpoints.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Time limit of one HTTP request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Build the provider. Nothing is sent yet: sign-in errors come from
    /// [`UserPoolCredentialsProvider::sign_in`], [`UserPoolCredentialsProvider::tokens`],
    /// [`UserPoolCredentialsProvider::identity_id`] and `provide_credentials`. Without
    /// [`region`](Self::region) the region is the user pool id's prefix (`us-east-1` of
    /// `us-east-1_AbCdEf123`).
    ///
    /// # Errors
    /// As [`CognitoCredentialsProviderBuilder::build`](crate::cognito::CognitoCredentialsProviderBuilder::build):
    /// [`Error::Io`] or [`Error::InvalidPem`] for a [`ca_file`](Self::ca_file) that cannot
    /// be read or holds no CA certificate; [`Error::Tls`] or [`Error::Credentials`] only
    /// if TLS or the HTTP client cannot be set up at all.
    pub fn build(self) -> Result<UserPoolCredentialsProvider, Error> {
        let client = cognito::http_client(
            self.ca_file.as_deref(),
            self.timeout,
            Duration::from_secs(10),
        )?;
        let region = self.region.unwrap_or_else(|| {
            self.user_pool_id
                .split_once('_')
                .map_or("us-east-1", |(region, _)| region)
                .to_owned()
        });
        Ok(UserPoolCredentialsProvider {
            inner: Arc::new(Inner {
                user_pool_endpoint: self
                    .user_pool_endpoint
                    .unwrap_or_else(|| default_endpoint(&region)),
                identity_endpoint: self
                    .identity_endpoint
                    .unwrap_or_else(|| cognito::default_endpoint(&region)),
                user_pool_id: self.user_pool_id,
                client_id: self.client_id,
                identity_pool_id: self.identity_pool_id,
                username: self.username,
                password: self.password,
                region,
                client,
                state: tokio::sync::Mutex::new(State::default()),
            }),
        })
    }
}

/// Temporary AWS credentials of a signed-in user pool user: implements
/// [`ProvideCredentials`], so it plugs into
/// [`ServiceConfiguration::credentials_provider`](crate::ServiceConfiguration::credentials_provider).
///
/// The first call signs in, gets the identity id and credentials; later calls answer from
/// the cache until [`cognito::REFRESH_MARGIN`] before expiry (or half the lifetime, when
/// shorter). Concurrent callers share one fetch; clones share the cache. A failed early
/// refresh keeps the cached credentials while they are valid. Errors given to the SDK are
/// [`CredentialsError::provider_error`]s whose source is a [`SignInError`].
#[derive(Clone)]
pub struct UserPoolCredentialsProvider {
    inner: Arc<Inner>,
}

struct Inner {
    user_pool_id: String,
    client_id: String,
    identity_pool_id: String,
    username: String,
    password: String,
    region: String,
    user_pool_endpoint: String,
    identity_endpoint: String,
    client: reqwest::Client,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    tokens: Option<Tokens>,
    identity_id: Option<String>,
    cached: Option<Cached>,
}

struct Cached {
    credentials: Credentials,
    refresh_at: SystemTime,
    expires: SystemTime,
}

impl fmt::Debug for UserPoolCredentialsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPoolCredentialsProvider")
            .field("user_pool_id", &self.inner.user_pool_id)
            .field("client_id", &self.inner.client_id)
            .field("identity_pool_id", &self.inner.identity_pool_id)
            .field("username", &self.inner.username)
            .field("user_pool_endpoint", &self.inner.user_pool_endpoint)
            .field("identity_endpoint", &self.inner.identity_endpoint)
            .finish_non_exhaustive()
    }
}

/// What to do about the user pool tokens at a given time.
#[derive(Debug, PartialEq, Eq)]
enum TokenStep<'a> {
    /// They are good for now.
    Use,
    /// Renew them with this refresh token.
    Refresh(&'a str),
    /// None, or expiring with no refresh token: sign in with the password.
    SignIn,
}

fn token_step(tokens: Option<&Tokens>, now: SystemTime) -> TokenStep<'_> {
    match tokens {
        Some(t) if now < t.refresh_at => TokenStep::Use,
        Some(Tokens {
            refresh_token: Some(r),
            ..
        }) => TokenStep::Refresh(r),
        _ => TokenStep::SignIn,
    }
}

/// The cached credentials, when not yet due for renewal at `now`.
fn fresh(cached: Option<&Cached>, now: SystemTime) -> Option<&Credentials> {
    cached
        .filter(|c| now < c.refresh_at)
        .map(|c| &c.credentials)
}

impl UserPoolCredentialsProvider {
    /// Start configuring a provider for `username`/`password` in the user pool
    /// `user_pool_id` through its app client `client_id` (one without a secret, allowing
    /// `ALLOW_USER_SRP_AUTH` and `ALLOW_REFRESH_TOKEN_AUTH`), federated into
    /// `identity_pool_id`.
    pub fn builder(
        user_pool_id: impl Into<String>,
        client_id: impl Into<String>,
        identity_pool_id: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> UserPoolCredentialsProviderBuilder {
        UserPoolCredentialsProviderBuilder {
            user_pool_id: user_pool_id.into(),
            client_id: client_id.into(),
            identity_pool_id: identity_pool_id.into(),
            username: username.into(),
            password: password.into(),
            region: None,
            user_pool_endpoint: None,
            identity_endpoint: None,
            ca_file: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// The user pool id.
    pub fn user_pool_id(&self) -> &str {
        &self.inner.user_pool_id
    }

    /// The identity pool id.
    pub fn identity_pool_id(&self) -> &str {
        &self.inner.identity_pool_id
    }

    /// The user name signing in.
    pub fn username(&self) -> &str {
        &self.inner.username
    }

    /// The region of both services.
    pub fn region(&self) -> &str {
        &self.inner.region
    }

    /// The `Logins` key this provider sends ([`login_provider`]).
    pub fn login_provider(&self) -> String {
        login_provider(&self.inner.region, &self.inner.user_pool_id)
    }

    /// Sign in now with the password (SRP), replacing any tokens held, and return them.
    ///
    /// # Errors
    /// [`SignInError::Service`] with the [`CognitoError`] of `InitiateAuth` or
    /// `RespondToAuthChallenge`: the service's answer (`NotAuthorizedException` for a
    /// wrong password or an app client that does not allow SRP, `UserNotFoundException`,
    /// `UserNotConfirmedException`, `PasswordResetRequiredException`, …),
    /// `NetworkError` when no answer came, `InvalidResponse` for an answer without the
    /// expected fields; [`SignInError::UnsupportedChallenge`] when Cognito asks for
    /// another challenge than `PASSWORD_VERIFIER` (`NEW_PASSWORD_REQUIRED`, MFA, …);
    /// [`SignInError::Srp`] when the challenge's SRP values are unusable.
    /// The tokens held before are kept on error.
    ///
    /// ```no_run
    /// # async fn f(p: pubsub::user_pool::UserPoolCredentialsProvider) -> Result<(), pubsub::user_pool::SignInError> {
    /// let tokens = p.sign_in().await?;
    /// println!("signed in until {:?}", tokens.expires);
    /// # Ok(()) }
    /// ```
    pub async fn sign_in(&self) -> Result<Tokens, SignInError> {
        let mut state = self.inner.state.lock().await;
        let tokens = self.inner.srp_sign_in(SystemTime::now()).await?;
        state.tokens = Some(tokens.clone());
        Ok(tokens)
    }

    /// The user pool tokens: the held ones while fresh, else refreshed or signed in anew.
    ///
    /// # Errors
    /// None while the held tokens are fresh. A refused refresh (e.g. a revoked or expired
    /// refresh token) is not an error: it falls back to signing in with the password,
    /// whose errors are [`UserPoolCredentialsProvider::sign_in`]'s.
    pub async fn tokens(&self) -> Result<Tokens, SignInError> {
        let mut state = self.inner.state.lock().await;
        self.inner.ensure_tokens(&mut state).await
    }

    /// The user's identity id in the identity pool (signing in first if needed); kept for
    /// the life of the provider. The id to attach IoT policies to.
    ///
    /// # Errors
    /// Those of [`UserPoolCredentialsProvider::tokens`]; then, only while no identity id
    /// is held, [`SignInError::Service`] with the [`CognitoError`] of `GetId` (the
    /// identity pool's answer, e.g. `NotAuthorizedException` when the pool does not
    /// accept this user pool as a provider, `ResourceNotFoundException` for an unknown
    /// pool; or `NetworkError`, `InvalidResponse`).
    ///
    /// ```no_run
    /// # async fn f(p: pubsub::user_pool::UserPoolCredentialsProvider) -> Result<(), pubsub::user_pool::SignInError> {
    /// // aws iot attach-policy --policy-name <policy> --target <identity id>
    /// println!("{}", p.identity_id().await?);
    /// # Ok(()) }
    /// ```
    pub async fn identity_id(&self) -> Result<String, SignInError> {
        let mut state = self.inner.state.lock().await;
        let tokens = self.inner.ensure_tokens(&mut state).await?;
        self.inner.ensure_identity_id(&mut state, &tokens).await
    }

    /// Forget the cached credentials (not the tokens nor the identity id).
    pub async fn clear_credentials(&self) {
        self.inner.state.lock().await.cached = None;
    }

    async fn credentials(&self) -> Result<Credentials, SignInError> {
        let mut state = self.inner.state.lock().await;
        if let Some(c) = fresh(state.cached.as_ref(), SystemTime::now()) {
            return Ok(c.clone());
        }
        match self.inner.fetch_credentials(&mut state).await {
            Ok((credentials, expires)) => {
                state.cached = Some(Cached {
                    credentials: credentials.clone(),
                    refresh_at: cognito::refresh_at(SystemTime::now(), expires),
                    expires,
                });
                Ok(credentials)
            }
            Err(e) => match &state.cached {
                // A failed early refresh is not fatal while the old credentials still work.
                Some(c) if SystemTime::now() < c.expires => {
                    tracing::warn!(error = %DisplayChain(&e), "Cognito user credentials refresh failed; using the cached ones until they expire");
                    Ok(c.credentials.clone())
                }
                _ => Err(e),
            },
        }
    }
}

impl ProvideCredentials for UserPoolCredentialsProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.credentials()
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

impl Inner {
    fn logins(&self, tokens: &Tokens) -> BTreeMap<String, String> {
        BTreeMap::from([(
            login_provider(&self.region, &self.user_pool_id),
            tokens.id_token.clone(),
        )])
    }

    async fn idp_call(
        &self,
        operation: &'static str,
        target: &str,
        body: Map<String, Value>,
    ) -> Result<Value, CognitoError> {
        cognito::call(
            &self.client,
            &self.user_pool_endpoint,
            operation,
            target,
            body,
        )
        .await
    }

    async fn ensure_tokens(&self, state: &mut State) -> Result<Tokens, SignInError> {
        let now = SystemTime::now();
        let tokens = match token_step(state.tokens.as_ref(), now) {
            TokenStep::Use => return Ok(state.tokens.clone().expect("Use implies tokens")),
            TokenStep::Refresh(refresh_token) => {
                let refresh_token = refresh_token.to_owned();
                match self.refresh(&refresh_token, now).await {
                    Ok(mut t) => {
                        t.refresh_token.get_or_insert(refresh_token);
                        t
                    }
                    Err(e) => {
                        tracing::info!(error = %e, username = %self.username, "token refresh refused; signing in with the password");
                        self.srp_sign_in(now).await?
                    }
                }
            }
            TokenStep::SignIn => self.srp_sign_in(now).await?,
        };
        state.tokens = Some(tokens.clone());
        Ok(tokens)
    }

    /// USER_SRP_AUTH: InitiateAuth with SRP_A, then the PASSWORD_VERIFIER answer.
    async fn srp_sign_in(&self, now: SystemTime) -> Result<Tokens, SignInError> {
        let mut a = [0u8; 32];
        OsRng.fill_bytes(&mut a);
        let answer = self
            .idp_call(
                "InitiateAuth",
                TARGET_INITIATE_AUTH,
                initiate_srp_body(&self.client_id, &self.username, &srp::client_public(&a)),
            )
            .await?;
        let challenge = parse_challenge(&answer)?;
        let timestamp = srp::timestamp(unix_secs(now));
        let signature = srp::client_claim(
            iot::cognito::pool_name(&self.user_pool_id),
            &challenge.user_id_for_srp,
            &self.password,
            &a,
            &challenge.salt,
            &challenge.srp_b,
            &challenge.secret_block,
            &timestamp,
        )?;
        let answer = self
            .idp_call(
                "RespondToAuthChallenge",
                TARGET_RESPOND_TO_AUTH_CHALLENGE,
                challenge_response_body(&self.client_id, &challenge, &timestamp, &signature),
            )
            .await?;
        let tokens = parse_authentication("RespondToAuthChallenge", &answer, now)?;
        tracing::debug!(username = %self.username, user_pool_id = %self.user_pool_id, "signed in with SRP");
        Ok(tokens)
    }

    async fn refresh(&self, refresh_token: &str, now: SystemTime) -> Result<Tokens, SignInError> {
        let answer = self
            .idp_call(
                "InitiateAuth",
                TARGET_INITIATE_AUTH,
                refresh_body(&self.client_id, refresh_token),
            )
            .await?;
        parse_authentication("InitiateAuth", &answer, now)
    }

    async fn ensure_identity_id(
        &self,
        state: &mut State,
        tokens: &Tokens,
    ) -> Result<String, SignInError> {
        if let Some(id) = &state.identity_id {
            return Ok(id.clone());
        }
        let id = cognito::get_id(
            &self.client,
            &self.identity_endpoint,
            &self.identity_pool_id,
            &self.logins(tokens),
        )
        .await?;
        state.identity_id = Some(id.clone());
        Ok(id)
    }

    async fn fetch_credentials(
        &self,
        state: &mut State,
    ) -> Result<(Credentials, SystemTime), SignInError> {
        let tokens = self.ensure_tokens(state).await?;
        let id = self.ensure_identity_id(state, &tokens).await?;
        let (new_id, credentials, expires) = cognito::get_credentials_for_identity(
            &self.client,
            &self.identity_endpoint,
            &id,
            &self.logins(&tokens),
        )
        .await?;
        if new_id != id {
            tracing::debug!(old = %id, new = %new_id, "Cognito identity id changed");
            state.identity_id = Some(new_id);
        }
        Ok((credentials, expires))
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// The PASSWORD_VERIFIER challenge's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    salt: String,
    srp_b: String,
    secret_block: String,
    user_id_for_srp: String,
    session: Option<String>,
}

fn initiate_srp_body(client_id: &str, username: &str, srp_a: &str) -> Map<String, Value> {
    let body = json!({
        "AuthFlow": "USER_SRP_AUTH",
        "ClientId": client_id,
        "AuthParameters": {"USERNAME": username, "SRP_A": srp_a},
    });
    body.as_object().cloned().expect("an object")
}

fn refresh_body(client_id: &str, refresh_token: &str) -> Map<String, Value> {
    let body = json!({
        "AuthFlow": "REFRESH_TOKEN_AUTH",
        "ClientId": client_id,
        "AuthParameters": {"REFRESH_TOKEN": refresh_token},
    });
    body.as_object().cloned().expect("an object")
}

/// The answer to PASSWORD_VERIFIER. USERNAME is the challenge's USER_ID_FOR_SRP, as
/// amazon-cognito-identity-js sends it (the user's internal name when signing in by alias).
fn challenge_response_body(
    client_id: &str,
    challenge: &Challenge,
    timestamp: &str,
    signature: &str,
) -> Map<String, Value> {
    let mut body = json!({
        "ChallengeName": "PASSWORD_VERIFIER",
        "ClientId": client_id,
        "ChallengeResponses": {
            "USERNAME": challenge.user_id_for_srp,
            "PASSWORD_CLAIM_SECRET_BLOCK": challenge.secret_block,
            "PASSWORD_CLAIM_SIGNATURE": signature,
            "TIMESTAMP": timestamp,
        },
    });
    if let Some(session) = &challenge.session {
        body["Session"] = json!(session);
    }
    body.as_object().cloned().expect("an object")
}

fn parse_challenge(answer: &Value) -> Result<Challenge, SignInError> {
    const OP: &str = "InitiateAuth";
    match answer.get("ChallengeName").and_then(Value::as_str) {
        Some("PASSWORD_VERIFIER") => {}
        Some(other) => return Err(SignInError::UnsupportedChallenge(other.to_owned())),
        None => {
            return Err(cognito::invalid(OP, "no PASSWORD_VERIFIER challenge in the answer").into())
        }
    }
    let params = &answer["ChallengeParameters"];
    let param = |name: &str| {
        params
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| cognito::invalid(OP, &format!("no ChallengeParameters.{name}")))
    };
    Ok(Challenge {
        salt: param("SALT")?,
        srp_b: param("SRP_B")?,
        secret_block: param("SECRET_BLOCK")?,
        user_id_for_srp: param("USER_ID_FOR_SRP")?,
        session: answer
            .get("Session")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// `AuthenticationResult` of a sign-in or refresh received at `now`.
fn parse_authentication(
    operation: &'static str,
    answer: &Value,
    now: SystemTime,
) -> Result<Tokens, SignInError> {
    if let Some(name) = answer.get("ChallengeName").and_then(Value::as_str) {
        return Err(SignInError::UnsupportedChallenge(name.to_owned()));
    }
    let result = answer
        .get("AuthenticationResult")
        .ok_or_else(|| cognito::invalid(operation, "no AuthenticationResult in the answer"))?;
    let token = |name: &str| {
        result
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let required = |name: &str| {
        token(name)
            .ok_or_else(|| cognito::invalid(operation, &format!("no AuthenticationResult.{name}")))
    };
    let expires_in = result
        .get("ExpiresIn")
        .and_then(Value::as_u64)
        .ok_or_else(|| cognito::invalid(operation, "no AuthenticationResult.ExpiresIn"))?;
    let expires = now + Duration::from_secs(expires_in);
    Ok(Tokens {
        id_token: required("IdToken")?,
        access_token: required("AccessToken")?,
        refresh_token: token("RefreshToken"),
        expires,
        refresh_at: cognito::refresh_at(now, expires),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_796_157_727;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn auth_result(refresh: bool) -> Value {
        let mut r = json!({"AuthenticationResult": {
            "IdToken": "id.token.x", "AccessToken": "access.token.x",
            "ExpiresIn": 3600, "TokenType": "Bearer"}});
        if refresh {
            r["AuthenticationResult"]["RefreshToken"] = json!("refresh-1");
        }
        r
    }

    #[test]
    fn initiate_and_refresh_bodies() {
        assert_eq!(
            Value::Object(initiate_srp_body("client-1", "alice", "abc123")),
            json!({"AuthFlow": "USER_SRP_AUTH", "ClientId": "client-1",
                   "AuthParameters": {"USERNAME": "alice", "SRP_A": "abc123"}})
        );
        assert_eq!(
            Value::Object(refresh_body("client-1", "r-token")),
            json!({"AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": "client-1",
                   "AuthParameters": {"REFRESH_TOKEN": "r-token"}})
        );
    }

    #[test]
    fn challenge_parsed_and_answered_as_user_id_for_srp() {
        let answer = json!({"ChallengeName": "PASSWORD_VERIFIER", "Session": "s-1",
            "ChallengeParameters": {"SALT": "0a", "SRP_B": "0b", "SECRET_BLOCK": "AAAA",
                "USER_ID_FOR_SRP": "7d8ca528-4931", "USERNAME": "7d8ca528-4931"}});
        let challenge = parse_challenge(&answer).unwrap();
        assert_eq!(
            challenge,
            Challenge {
                salt: "0a".into(),
                srp_b: "0b".into(),
                secret_block: "AAAA".into(),
                user_id_for_srp: "7d8ca528-4931".into(),
                session: Some("s-1".into()),
            }
        );
        let ts = srp::timestamp(T0);
        assert_eq!(
            Value::Object(challenge_response_body(
                "client-1", &challenge, &ts, "sig=="
            )),
            json!({"ChallengeName": "PASSWORD_VERIFIER", "ClientId": "client-1", "Session": "s-1",
                "ChallengeResponses": {"USERNAME": "7d8ca528-4931",
                    "PASSWORD_CLAIM_SECRET_BLOCK": "AAAA", "PASSWORD_CLAIM_SIGNATURE": "sig==",
                    "TIMESTAMP": "Tue Dec 1 20:42:07 UTC 2026"}})
        );
        let without_session = Challenge {
            session: None,
            ..challenge
        };
        assert!(challenge_response_body("c", &without_session, &ts, "s")
            .get("Session")
            .is_none());
    }

    #[test]
    fn other_challenges_and_gaps_are_errors() {
        let mfa = json!({"ChallengeName": "SMS_MFA", "ChallengeParameters": {}});
        assert!(matches!(
            parse_challenge(&mfa),
            Err(SignInError::UnsupportedChallenge(n)) if n == "SMS_MFA"
        ));
        let incomplete = json!({"ChallengeName": "PASSWORD_VERIFIER",
            "ChallengeParameters": {"SALT": "0a", "SRP_B": "0b", "USER_ID_FOR_SRP": "u"}});
        let e = parse_challenge(&incomplete).unwrap_err();
        assert_eq!(e.error_type(), Some("InvalidResponse"));
        assert!(e.to_string().contains("SECRET_BLOCK"), "{e}");
        let new_password = json!({"ChallengeName": "NEW_PASSWORD_REQUIRED", "Session": "s"});
        assert!(matches!(
            parse_authentication("RespondToAuthChallenge", &new_password, at(T0)),
            Err(SignInError::UnsupportedChallenge(n)) if n == "NEW_PASSWORD_REQUIRED"
        ));
    }

    #[test]
    fn authentication_result_parsed() {
        let t = parse_authentication("RespondToAuthChallenge", &auth_result(true), at(T0)).unwrap();
        assert_eq!(t.id_token, "id.token.x");
        assert_eq!(t.access_token, "access.token.x");
        assert_eq!(t.refresh_token.as_deref(), Some("refresh-1"));
        assert_eq!(t.expires, at(T0 + 3600));
        assert_eq!(t.refresh_at, at(T0 + 3600 - 300));
        // A refresh answer carries no new refresh token.
        let t = parse_authentication("InitiateAuth", &auth_result(false), at(T0)).unwrap();
        assert_eq!(t.refresh_token, None);
        let mut no_id = auth_result(true);
        no_id["AuthenticationResult"]
            .as_object_mut()
            .unwrap()
            .remove("IdToken");
        let e = parse_authentication("InitiateAuth", &no_id, at(T0)).unwrap_err();
        assert!(e.to_string().contains("IdToken"), "{e}");
        // The Debug form shows no token.
        let debug = format!("{t:?}");
        assert!(!debug.contains("token.x"), "{debug}");
    }

    #[test]
    fn token_steps_follow_the_clock() {
        let signed_in =
            parse_authentication("RespondToAuthChallenge", &auth_result(true), at(T0)).unwrap();
        assert_eq!(token_step(None, at(T0)), TokenStep::SignIn);
        assert_eq!(token_step(Some(&signed_in), at(T0)), TokenStep::Use);
        assert_eq!(token_step(Some(&signed_in), at(T0 + 3299)), TokenStep::Use);
        // From REFRESH_MARGIN before expiry on, and after it, the refresh token is used.
        assert_eq!(
            token_step(Some(&signed_in), at(T0 + 3300)),
            TokenStep::Refresh("refresh-1")
        );
        assert_eq!(
            token_step(Some(&signed_in), at(T0 + 7200)),
            TokenStep::Refresh("refresh-1")
        );
        let no_refresh = Tokens {
            refresh_token: None,
            ..signed_in
        };
        assert_eq!(
            token_step(Some(&no_refresh), at(T0 + 3300)),
            TokenStep::SignIn
        );
    }

    #[test]
    fn short_lived_tokens_refresh_half_way() {
        let mut short = auth_result(true);
        short["AuthenticationResult"]["ExpiresIn"] = json!(120);
        let t = parse_authentication("InitiateAuth", &short, at(T0)).unwrap();
        assert_eq!(token_step(Some(&t), at(T0 + 59)), TokenStep::Use);
        assert_eq!(
            token_step(Some(&t), at(T0 + 60)),
            TokenStep::Refresh("refresh-1")
        );
    }

    #[test]
    fn cached_credentials_are_fresh_until_refresh_at() {
        let expires = at(T0 + 3600);
        let cached = Cached {
            credentials: Credentials::new("AK", "SK", Some("ST".into()), Some(expires), "t"),
            refresh_at: cognito::refresh_at(at(T0), expires),
            expires,
        };
        assert!(fresh(Some(&cached), at(T0 + 3299)).is_some());
        assert!(fresh(Some(&cached), at(T0 + 3300)).is_none());
        assert!(fresh(None, at(T0)).is_none());
    }

    #[test]
    fn region_comes_from_the_pool_id() {
        let p = UserPoolCredentialsProvider::builder(
            "eu-west-1_Zz9Yy8Xx7",
            "c",
            "eu-west-1:p",
            "u",
            "pw",
        )
        .build()
        .unwrap();
        assert_eq!(p.region(), "eu-west-1");
        assert_eq!(
            p.login_provider(),
            "cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Zz9Yy8Xx7"
        );
        assert_eq!(
            p.inner.user_pool_endpoint,
            "https://cognito-idp.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            p.inner.identity_endpoint,
            "https://cognito-identity.eu-west-1.amazonaws.com/"
        );
    }
}
