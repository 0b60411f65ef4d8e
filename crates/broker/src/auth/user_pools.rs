//! Cognito user pools' side of identity: signing users in (SRP, password, refresh), the
//! tokens a pool issues (RS256 JWTs as Cognito shapes them), and their verification — for
//! the pool's own API (GetUser, GlobalSignOut) and for identity pools' `Logins`
//! ([`IdentityPlane::verify_user_pool_id_token`]). The API itself is in
//! `control::user_pools`; the records in `registry::user_pools`.
//!
//! The SRP challenges in flight and the `NEW_PASSWORD_REQUIRED` sessions live in memory
//! (5 minutes): a restart ends a sign-in half done, as a lost connection would.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use iot::cognito::{jwt, srp};
use parking_lot::Mutex;
use rand::RngCore;
use serde_json::{json, Map, Value};

use super::IdentityPlane;
use crate::registry::{
    now_secs, refresh_token_digest, RegistryError, SignInSession, UserPoolClientRecord,
    UserPoolRecord, UserRecord, UserStatus,
};
use crate::secrets::{random_alphanumeric, uuid_shaped};

/// How long an SRP challenge or a NEW_PASSWORD_REQUIRED session may be answered.
pub const CHALLENGE_TTL_SECS: u64 = 300;

/// A Cognito-shaped refusal: the exception name and its message (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpError {
    pub kind: &'static str,
    pub message: String,
}

pub fn idp_error(kind: &'static str, message: impl Into<String>) -> IdpError {
    IdpError {
        kind,
        message: message.into(),
    }
}

fn not_authorized(message: &str) -> IdpError {
    idp_error("NotAuthorizedException", message)
}

pub const INCORRECT_PASSWORD: &str = "Incorrect username or password.";

impl From<RegistryError> for IdpError {
    fn from(error: RegistryError) -> IdpError {
        match error {
            RegistryError::NotFound(what) => idp_error(
                "ResourceNotFoundException",
                format!("{} does not exist.", capitalized(&what)),
            ),
            RegistryError::AlreadyExists(what) => idp_error(
                "InvalidParameterException",
                format!("{} already exists.", capitalized(&what)),
            ),
            RegistryError::Invalid(message) => idp_error("InvalidParameterException", message),
            other => idp_error("InternalErrorException", other.to_string()),
        }
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A verified user pool ID token: who signed in, for identity pools' `Logins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLogin {
    /// `cognito-idp.<region>.amazonaws.com/<userPoolId>`.
    pub provider: String,
    /// The user's `sub`.
    pub subject: String,
}

/// An SRP sign-in waiting for its PASSWORD_VERIFIER answer.
#[derive(Clone)]
struct SrpChallenge {
    pool_id: String,
    client_id: String,
    username: String,
    a_public_hex: String,
    b_random: [u8; 32],
    created: u64,
}

/// A sign-in waiting for NEW_PASSWORD_REQUIRED's answer.
#[derive(Clone)]
struct NewPasswordSession {
    pool_id: String,
    client_id: String,
    username: String,
    created: u64,
}

/// Challenges by key, each answerable for [`CHALLENGE_TTL_SECS`].
struct Pending<T> {
    by_key: Mutex<HashMap<String, (u64, T)>>,
}

impl<T: Clone> Pending<T> {
    fn new() -> Self {
        Pending {
            by_key: Mutex::new(HashMap::new()),
        }
    }

    fn put(&self, key: String, created: u64, value: T) {
        let mut map = self.by_key.lock();
        map.retain(|_, (at, _)| *at + CHALLENGE_TTL_SECS > created);
        map.insert(key, (created, value));
    }

    /// Takes the challenge (each is answered once) if it has not expired at `now`.
    fn take(&self, key: &str, now: u64) -> Option<T> {
        let (created, value) = self.by_key.lock().remove(key)?;
        (created + CHALLENGE_TTL_SECS > now).then_some(value)
    }
}

/// What the identity plane keeps for user pools in memory.
pub struct UserPools {
    srp: Pending<SrpChallenge>,
    new_password: Pending<NewPasswordSession>,
    /// Parsed signing keys, by pool id (with the kid they were parsed for).
    keys: Mutex<HashMap<String, Arc<jwt::SigningKey>>>,
}

impl Default for UserPools {
    fn default() -> Self {
        UserPools {
            srp: Pending::new(),
            new_password: Pending::new(),
            keys: Mutex::new(HashMap::new()),
        }
    }
}

/// What InitiateAuth and RespondToAuthChallenge answer: tokens, or a challenge.
#[derive(Debug, Clone, PartialEq)]
pub enum SignIn {
    Tokens(Value),
    Challenge {
        name: &'static str,
        parameters: Value,
        session: Option<String>,
    },
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A new pool's id: `<region>_<9 alphanumerics>`.
pub fn new_pool_id(region: &str) -> String {
    format!("{region}_{}", random_alphanumeric(9))
}

/// A new app client's id: 26 lowercase alphanumerics, as Cognito's.
pub fn new_client_id() -> String {
    random_alphanumeric(26).to_ascii_lowercase()
}

/// A new signing key, PKCS#8 PEM, and its random kid.
pub fn new_signing_key() -> (String, String) {
    let kid = base64_standard(&random_bytes::<32>());
    let key = jwt::SigningKey::generate(&kid, &mut jwt::OsRng);
    (key.to_pkcs8_pem(), kid)
}

fn base64_standard(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A user with this password (kept as a fresh salt and its SRP verifier).
pub fn new_user(
    pool: &UserPoolRecord,
    username: &str,
    password: &str,
    attributes: BTreeMap<String, String>,
    status: UserStatus,
    now: u64,
) -> UserRecord {
    let mut user = UserRecord {
        username: username.to_owned(),
        sub: uuid_shaped(),
        attributes,
        status,
        enabled: true,
        salt: String::new(),
        salt_hex: String::new(),
        verifier_hex: String::new(),
        creation_date: now,
        last_modified_date: now,
        sessions: BTreeMap::new(),
    };
    set_password(pool, &mut user, password, random_bytes());
    user
}

/// Replaces the user's verifier by one of `password` with `salt`.
pub fn set_password(pool: &UserPoolRecord, user: &mut UserRecord, password: &str, salt: [u8; 16]) {
    let verifier = srp::make_verifier(pool.srp_pool_name(), &user.username, password, &salt);
    user.salt = hex::encode(salt);
    user.salt_hex = verifier.salt_hex;
    user.verifier_hex = verifier.verifier_hex;
}

/// Whether `password` is the user's: its verifier, recomputed with the user's salt, is the
/// stored one.
pub fn password_matches(pool: &UserPoolRecord, user: &UserRecord, password: &str) -> bool {
    let Ok(salt) = <[u8; 16]>::try_from(hex::decode(&user.salt).unwrap_or_default()) else {
        return false;
    };
    srp::make_verifier(pool.srp_pool_name(), &user.username, password, &salt).verifier_hex
        == user.verifier_hex
}

/// The user an InitiateAuth names, or Cognito's refusal: an unknown user is
/// `UserNotFoundException` unless the client prevents user existence errors (then it
/// looks like a wrong password).
pub fn user_for_sign_in<'a>(
    pool: &'a UserPoolRecord,
    client: &UserPoolClientRecord,
    username: &str,
) -> Result<&'a UserRecord, IdpError> {
    match pool.users.get(username) {
        Some(user) if !user.enabled => Err(not_authorized("User is disabled.")),
        Some(user) => Ok(user),
        None if client.prevent_user_existence_errors == "ENABLED" => {
            Err(not_authorized(INCORRECT_PASSWORD))
        }
        None => Err(idp_error("UserNotFoundException", "User does not exist.")),
    }
}

/// After the password was proved: an unconfirmed user is refused, one with a temporary
/// password must set a new one, a confirmed one gets tokens (`None`).
fn status_refusal(user: &UserRecord) -> Result<Option<()>, IdpError> {
    match user.status {
        UserStatus::Unconfirmed => Err(idp_error(
            "UserNotConfirmedException",
            "User is not confirmed.",
        )),
        UserStatus::ForceChangePassword => Ok(Some(())),
        UserStatus::Confirmed => Ok(None),
    }
}

/// The attribute list of the API (`[{Name, Value}]`), `sub` first.
pub fn attribute_list(user: &UserRecord) -> Value {
    let mut list = vec![json!({"Name": "sub", "Value": user.sub})];
    list.extend(
        user.attributes
            .iter()
            .map(|(name, value)| json!({"Name": name, "Value": value})),
    );
    Value::Array(list)
}

/// The claims of the ID and access tokens of one issuance, as Cognito puts them.
#[allow(clippy::too_many_arguments)]
pub fn token_claims(
    pool: &UserPoolRecord,
    client: &UserPoolClientRecord,
    user: &UserRecord,
    origin_jti: &str,
    auth_time: u64,
    now: u64,
    event_id: &str,
    jtis: (&str, &str),
) -> (Value, Value) {
    let mut id = Map::new();
    id.insert("sub".into(), json!(user.sub));
    for (name, value) in &user.attributes {
        // Cognito's booleans are booleans in the token.
        let value = match (name.as_str(), value.as_str()) {
            ("email_verified" | "phone_number_verified", "true") => json!(true),
            ("email_verified" | "phone_number_verified", "false") => json!(false),
            _ => json!(value),
        };
        id.insert(name.clone(), value);
    }
    let common = json!({
        "iss": pool.issuer(),
        "origin_jti": origin_jti,
        "event_id": event_id,
        "auth_time": auth_time,
        "iat": now,
    });
    for (name, value) in common.as_object().expect("object") {
        id.insert(name.clone(), value.clone());
    }
    id.insert("cognito:username".into(), json!(user.username));
    id.insert("aud".into(), json!(client.client_id));
    id.insert("token_use".into(), json!("id"));
    id.insert("exp".into(), json!(now + client.id_token_validity_secs));
    id.insert("jti".into(), json!(jtis.0));
    let mut access = json!({
        "sub": user.sub,
        "client_id": client.client_id,
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "exp": now + client.access_token_validity_secs,
        "jti": jtis.1,
        "username": user.username,
    });
    for (name, value) in common.as_object().expect("object") {
        access[name] = value.clone();
    }
    (Value::Object(id), access)
}

/// Why a token's sign-in no longer stands (GlobalSignOut), if it does not.
fn session_refusal(user: &UserRecord, origin_jti: &str) -> Option<&'static str> {
    match user.sessions.get(origin_jti) {
        Some(session) if !session.revoked => None,
        Some(_) => Some("revoked"),
        None => Some("unknown"),
    }
}

/// The claims of a token, unverified (to find its pool).
fn unverified_claims(token: &str) -> Option<Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The pool id of an issuer URL of this kind of pool.
fn pool_id_of_issuer(issuer: &str) -> Option<&str> {
    let rest = issuer.strip_prefix("https://cognito-idp.")?;
    let (_, id) = rest.split_once(".amazonaws.com/")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// What an access token proved: its pool, user and sign-in.
pub struct AccessGrant {
    pub pool: UserPoolRecord,
    pub username: String,
    pub origin_jti: String,
}

impl UserPools {
    fn signing_key(&self, pool: &UserPoolRecord) -> Result<Arc<jwt::SigningKey>, IdpError> {
        let mut keys = self.keys.lock();
        if let Some(key) = keys.get(&pool.id).filter(|key| key.kid() == pool.kid) {
            return Ok(key.clone());
        }
        let key =
            jwt::SigningKey::from_pkcs8_pem(&pool.kid, &pool.signing_key_pem).map_err(|error| {
                idp_error(
                    "InternalErrorException",
                    format!(
                        "the signing key of user pool {} is unusable: {error}",
                        pool.id
                    ),
                )
            })?;
        let key = Arc::new(key);
        keys.insert(pool.id.clone(), key.clone());
        Ok(key)
    }

    /// The pool's JWKS (`{"keys": [...]}`).
    pub fn jwks(&self, pool: &UserPoolRecord) -> Result<Value, IdpError> {
        Ok(json!({ "keys": [self.signing_key(pool)?.jwk()] }))
    }
}

impl IdentityPlane {
    /// The pool an app client belongs to (ResourceNotFoundException, as Cognito, if none).
    pub(crate) fn pool_of_client(&self, client_id: &str) -> Result<UserPoolRecord, IdpError> {
        self.registry.user_pool_of_client(client_id).ok_or_else(|| {
            idp_error(
                "ResourceNotFoundException",
                format!("User pool client {client_id} does not exist."),
            )
        })
    }

    fn pool_and_client(
        &self,
        client_id: &str,
    ) -> Result<(UserPoolRecord, UserPoolClientRecord), IdpError> {
        let pool = self.pool_of_client(client_id)?;
        let client = pool.clients[client_id].clone();
        Ok((pool, client))
    }

    /// A new sign-in of `username` through `client`: its session recorded (the refresh
    /// token as a digest), its three tokens.
    fn issue_tokens(
        &self,
        pool: &UserPoolRecord,
        client: &UserPoolClientRecord,
        username: &str,
    ) -> Result<Value, IdpError> {
        let now = now_secs();
        let origin_jti = uuid_shaped();
        let refresh_token = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<96>())
        };
        let session = SignInSession {
            client_id: client.client_id.clone(),
            refresh_token_sha256: refresh_token_digest(&refresh_token),
            auth_time: now,
            expires_at: now + client.refresh_token_validity_secs,
            revoked: false,
        };
        let user = self.registry.change_user_pool(&pool.id, |pool| {
            let user = pool
                .users
                .get_mut(username)
                .ok_or_else(|| RegistryError::NotFound(format!("user {username}")))?;
            user.forget_expired_sessions(now);
            user.sessions.insert(origin_jti.clone(), session);
            Ok(user.clone())
        })?;
        let mut result = self.tokens(pool, client, &user, &origin_jti, now)?;
        result["RefreshToken"] = json!(refresh_token);
        tracing::info!(user_pool = %pool.id, client_id = %client.client_id, username, "user signed in: tokens issued");
        Ok(result)
    }

    /// The ID and access tokens of a sign-in, as AuthenticationResult carries them.
    fn tokens(
        &self,
        pool: &UserPoolRecord,
        client: &UserPoolClientRecord,
        user: &UserRecord,
        origin_jti: &str,
        auth_time: u64,
    ) -> Result<Value, IdpError> {
        let key = self.user_pools.signing_key(pool)?;
        let (id, access) = token_claims(
            pool,
            client,
            user,
            origin_jti,
            auth_time,
            now_secs(),
            &uuid_shaped(),
            (&uuid_shaped(), &uuid_shaped()),
        );
        Ok(json!({
            "AccessToken": key.sign(&access),
            "IdToken": key.sign(&id),
            "ExpiresIn": client.access_token_validity_secs,
            "TokenType": "Bearer",
        }))
    }

    /// Where a proved password leads: tokens, or NEW_PASSWORD_REQUIRED.
    fn after_password(
        &self,
        pool: &UserPoolRecord,
        client: &UserPoolClientRecord,
        user: &UserRecord,
    ) -> Result<SignIn, IdpError> {
        if status_refusal(user)?.is_none() {
            return Ok(SignIn::Tokens(self.issue_tokens(
                pool,
                client,
                &user.username,
            )?));
        }
        let session = random_alphanumeric(64);
        self.user_pools.new_password.put(
            session.clone(),
            now_secs(),
            NewPasswordSession {
                pool_id: pool.id.clone(),
                client_id: client.client_id.clone(),
                username: user.username.clone(),
                created: now_secs(),
            },
        );
        let attributes: Map<String, Value> = user
            .attributes
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        Ok(SignIn::Challenge {
            name: "NEW_PASSWORD_REQUIRED",
            parameters: json!({
                "USER_ID_FOR_SRP": user.username,
                "requiredAttributes": "[]",
                "userAttributes": Value::Object(attributes).to_string(),
            }),
            session: Some(session),
        })
    }

    /// InitiateAuth.
    pub fn initiate_auth(
        &self,
        client_id: &str,
        auth_flow: &str,
        parameters: &Value,
    ) -> Result<SignIn, IdpError> {
        let (pool, client) = self.pool_and_client(client_id)?;
        let parameter = |name: &str| {
            parameters[name].as_str().map(str::to_owned).ok_or_else(|| {
                idp_error(
                    "InvalidParameterException",
                    format!("Missing required parameter {name}"),
                )
            })
        };
        if !matches!(
            auth_flow,
            "USER_SRP_AUTH" | "USER_PASSWORD_AUTH" | "REFRESH_TOKEN_AUTH" | "REFRESH_TOKEN"
        ) {
            return Err(idp_error(
                "InvalidParameterException",
                format!("{auth_flow} is not an auth flow this emulation supports (USER_SRP_AUTH, USER_PASSWORD_AUTH, REFRESH_TOKEN_AUTH)"),
            ));
        }
        let flow = if auth_flow == "REFRESH_TOKEN" {
            "REFRESH_TOKEN_AUTH"
        } else {
            auth_flow
        };
        if !client.allows(flow) {
            return Err(idp_error(
                "InvalidParameterException",
                format!("{flow} flow not enabled for this client"),
            ));
        }
        match flow {
            "USER_PASSWORD_AUTH" => {
                let username = parameter("USERNAME")?;
                let password = parameter("PASSWORD")?;
                let user = user_for_sign_in(&pool, &client, &username)?;
                // Cognito reports an unconfirmed user before it checks the password.
                if user.status == UserStatus::Unconfirmed {
                    status_refusal(user)?;
                }
                if !password_matches(&pool, user, &password) {
                    return Err(not_authorized(INCORRECT_PASSWORD));
                }
                self.after_password(&pool, &client, user)
            }
            "USER_SRP_AUTH" => {
                let username = parameter("USERNAME")?;
                let a_public_hex = parameter("SRP_A")?;
                let user = user_for_sign_in(&pool, &client, &username)?;
                let b_random = random_bytes::<32>();
                let b_public = srp::server_public(&user.verifier_hex, &b_random);
                let secret_block = base64_standard(&random_bytes::<256>());
                let now = now_secs();
                self.user_pools.srp.put(
                    secret_block.clone(),
                    now,
                    SrpChallenge {
                        pool_id: pool.id.clone(),
                        client_id: client.client_id.clone(),
                        username: user.username.clone(),
                        a_public_hex,
                        b_random,
                        created: now,
                    },
                );
                Ok(SignIn::Challenge {
                    name: "PASSWORD_VERIFIER",
                    parameters: json!({
                        "SALT": user.salt_hex,
                        "SRP_B": b_public,
                        "SECRET_BLOCK": secret_block,
                        "USER_ID_FOR_SRP": user.username,
                        "USERNAME": user.username,
                    }),
                    session: None,
                })
            }
            _ => self.refresh(&pool, &client, &parameter("REFRESH_TOKEN")?),
        }
    }

    /// REFRESH_TOKEN_AUTH: new ID and access tokens in the refresh token's sign-in.
    fn refresh(
        &self,
        pool: &UserPoolRecord,
        client: &UserPoolClientRecord,
        refresh_token: &str,
    ) -> Result<SignIn, IdpError> {
        let digest = refresh_token_digest(refresh_token);
        let found = pool.users.values().find_map(|user| {
            user.sessions
                .iter()
                .find(|(_, session)| session.refresh_token_sha256 == digest)
                .map(|(origin_jti, session)| (user, origin_jti.clone(), session.clone()))
        });
        let Some((user, origin_jti, session)) = found else {
            return Err(not_authorized("Invalid Refresh Token"));
        };
        if session.client_id != client.client_id {
            return Err(not_authorized("Invalid Refresh Token"));
        }
        if session.revoked {
            return Err(not_authorized("Refresh Token has been revoked"));
        }
        if now_secs() >= session.expires_at {
            return Err(not_authorized("Refresh Token has expired"));
        }
        if !user.enabled {
            return Err(not_authorized("User is disabled."));
        }
        let tokens = self.tokens(pool, client, user, &origin_jti, session.auth_time)?;
        tracing::info!(user_pool = %pool.id, client_id = %client.client_id, username = %user.username, "tokens refreshed");
        Ok(SignIn::Tokens(tokens))
    }

    /// RespondToAuthChallenge.
    pub fn respond_to_auth_challenge(
        &self,
        client_id: &str,
        challenge_name: &str,
        responses: &Value,
        session: Option<&str>,
    ) -> Result<SignIn, IdpError> {
        let (pool, client) = self.pool_and_client(client_id)?;
        let response = |name: &str| {
            responses[name].as_str().map(str::to_owned).ok_or_else(|| {
                idp_error(
                    "InvalidParameterException",
                    format!("Missing required parameter {name}"),
                )
            })
        };
        let now = now_secs();
        let expired = || not_authorized("Invalid session for the user, session is expired.");
        match challenge_name {
            "PASSWORD_VERIFIER" => {
                let secret_block = response("PASSWORD_CLAIM_SECRET_BLOCK")?;
                let signature = response("PASSWORD_CLAIM_SIGNATURE")?;
                let timestamp = response("TIMESTAMP")?;
                let username = response("USERNAME")?;
                let challenge = self
                    .user_pools
                    .srp
                    .take(&secret_block, now)
                    .filter(|challenge| {
                        challenge.pool_id == pool.id && challenge.client_id == client.client_id
                    })
                    .ok_or_else(expired)?;
                if challenge.username != username {
                    return Err(not_authorized(INCORRECT_PASSWORD));
                }
                let user = user_for_sign_in(&pool, &client, &challenge.username)?;
                if let Err(error) = srp::verify_claim(
                    pool.srp_pool_name(),
                    &user.username,
                    &user.verifier_hex,
                    &challenge.a_public_hex,
                    &challenge.b_random,
                    &secret_block,
                    &timestamp,
                    &signature,
                ) {
                    tracing::info!(user_pool = %pool.id, username = %user.username, %error, created = challenge.created, "SRP sign-in refused");
                    return Err(not_authorized(INCORRECT_PASSWORD));
                }
                self.after_password(&pool, &client, user)
            }
            "NEW_PASSWORD_REQUIRED" => {
                let pending = session
                    .and_then(|session| self.user_pools.new_password.take(session, now))
                    .filter(|pending| {
                        pending.pool_id == pool.id && pending.client_id == client.client_id
                    })
                    .ok_or_else(expired)?;
                let new_password = response("NEW_PASSWORD")?;
                pool.password_policy
                    .check(&new_password)
                    .map_err(|message| idp_error("InvalidPasswordException", message))?;
                let attributes: BTreeMap<String, String> = responses
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(name, value)| {
                        let name = name.strip_prefix("userAttributes.")?;
                        Some((name.to_owned(), value.as_str()?.to_owned()))
                    })
                    .collect();
                let salt = random_bytes();
                let user = self.registry.change_user_pool(&pool.id, |stored| {
                    let snapshot = stored.clone();
                    let user = stored.users.get_mut(&pending.username).ok_or_else(|| {
                        RegistryError::NotFound(format!("user {}", pending.username))
                    })?;
                    set_password(&snapshot, user, &new_password, salt);
                    user.status = UserStatus::Confirmed;
                    user.attributes.extend(attributes);
                    user.last_modified_date = now;
                    Ok(user.clone())
                })?;
                tracing::info!(user_pool = %pool.id, username = %user.username, created = pending.created, "new password set (NEW_PASSWORD_REQUIRED)");
                Ok(SignIn::Tokens(self.issue_tokens(
                    &pool,
                    &client,
                    &user.username,
                )?))
            }
            other => Err(idp_error(
                "InvalidParameterException",
                format!("{other} is not a challenge this emulation issues"),
            )),
        }
    }

    /// Verifies an access token (GetUser, GlobalSignOut): signature, expiry, issuer (a
    /// pool of this broker), `token_use`, and that its sign-in was not signed out.
    pub fn verify_access_token(&self, token: &str) -> Result<AccessGrant, IdpError> {
        let invalid = || not_authorized("Invalid Access Token");
        let claims = unverified_claims(token).ok_or_else(invalid)?;
        let pool_id = claims["iss"]
            .as_str()
            .and_then(pool_id_of_issuer)
            .ok_or_else(invalid)?;
        let pool = self.registry.user_pool(pool_id).ok_or_else(invalid)?;
        let jwks = self.user_pools.jwks(&pool)?;
        let claims = jwt::verify(token, &jwks, now_secs()).map_err(|error| match error {
            jwt::JwtError::Expired { .. } => not_authorized("Access Token has expired"),
            error => {
                tracing::info!(%error, "access token refused");
                invalid()
            }
        })?;
        if claims["iss"] != json!(pool.issuer()) || claims["token_use"] != "access" {
            return Err(invalid());
        }
        let client_known = claims["client_id"]
            .as_str()
            .is_some_and(|client| pool.clients.contains_key(client));
        let user = claims["username"]
            .as_str()
            .and_then(|username| pool.users.get(username))
            .filter(|user| claims["sub"] == json!(user.sub));
        let (Some(user), true) = (user, client_known) else {
            return Err(invalid());
        };
        let origin_jti = claims["origin_jti"].as_str().unwrap_or_default().to_owned();
        match session_refusal(user, &origin_jti) {
            None => {}
            Some("revoked") => return Err(not_authorized("Access Token has been revoked")),
            Some(_) => return Err(invalid()),
        }
        if !user.enabled {
            return Err(not_authorized("User is disabled."));
        }
        Ok(AccessGrant {
            username: user.username.clone(),
            pool,
            origin_jti,
        })
    }

    /// GlobalSignOut: every sign-in of the user ends; its tokens are refused from now on.
    pub fn global_sign_out(&self, grant: &AccessGrant) -> Result<usize, IdpError> {
        let revoked = self.registry.change_user_pool(&grant.pool.id, |pool| {
            let user = pool
                .users
                .get_mut(&grant.username)
                .ok_or_else(|| RegistryError::NotFound(format!("user {}", grant.username)))?;
            let mut revoked = 0;
            for session in user.sessions.values_mut().filter(|s| !s.revoked) {
                session.revoked = true;
                revoked += 1;
            }
            Ok(revoked)
        })?;
        tracing::info!(user_pool = %grant.pool.id, username = %grant.username, revoked, origin_jti = %grant.origin_jti, "global sign-out: the user's sign-ins are revoked");
        Ok(revoked)
    }

    /// A verified user pool ID token (signature, exp, iss == the pool's issuer, aud == a
    /// client of the pool, token_use == "id", not signed out), for identity pools'
    /// `Logins` under `provider_name` (`cognito-idp.<region>.amazonaws.com/<poolId>`).
    /// `Err` is Cognito Identity's NotAuthorizedException message.
    pub fn verify_user_pool_id_token(
        &self,
        provider_name: &str,
        token: &str,
    ) -> Result<VerifiedLogin, String> {
        let refused = |why: &str| {
            tracing::info!(provider = provider_name, why, "user pool ID token refused");
            format!("Invalid login token. {why}")
        };
        let pool = provider_name
            .strip_prefix("cognito-idp.")
            .and_then(|rest| rest.split_once(".amazonaws.com/"))
            .and_then(|(_, id)| self.registry.user_pool(id))
            .filter(|pool| pool.provider_name() == provider_name)
            .ok_or_else(|| {
                tracing::info!(
                    provider = provider_name,
                    "Logins names no user pool of this broker"
                );
                "Invalid login token. Issuer doesn't match providerName".to_owned()
            })?;
        let jwks = self
            .user_pools
            .jwks(&pool)
            .map_err(|error| refused(&error.message))?;
        let now = now_secs();
        let claims = jwt::verify(token, &jwks, now).map_err(|error| match error {
            jwt::JwtError::Expired { expired_at } => {
                refused(&format!("Token expired: {now} >= {expired_at}"))
            }
            jwt::JwtError::Malformed(_) => refused("Not a valid OpenId Connect identity token."),
            _ => refused("Couldn't verify signed token."),
        })?;
        if claims["iss"] != json!(pool.issuer()) {
            return Err(refused("Issuer doesn't match providerName"));
        }
        if claims["token_use"] != "id" {
            return Err(refused("Not a valid OpenId Connect identity token."));
        }
        let audience_known = claims["aud"]
            .as_str()
            .is_some_and(|aud| pool.clients.contains_key(aud));
        if !audience_known {
            return Err(refused("Audience is not a client of the user pool."));
        }
        let sub = claims["sub"].as_str().unwrap_or_default();
        let user = pool
            .user_by_sub(sub)
            .ok_or_else(|| refused("The user does not exist."))?;
        let origin_jti = claims["origin_jti"].as_str().unwrap_or_default();
        if session_refusal(user, origin_jti).is_some() {
            return Err(refused("Token has been revoked."));
        }
        Ok(VerifiedLogin {
            provider: provider_name.to_owned(),
            subject: sub.to_owned(),
        })
    }
}

/// Makes sure every `[[user_pools]]` entry exists (keeping the id, key and client ids a
/// previous start gave it), with its clients and users; settings follow the config. Fails
/// on an entry that cannot be applied (a user's password against the pool's policy).
pub(crate) fn apply_config_pools(plane: &IdentityPlane) -> Result<(), crate::config::ConfigError> {
    for declared in &plane.config.user_pools {
        apply_config_pool(plane, declared).map_err(|error| {
            crate::config::ConfigError::Invalid(format!(
                "[[user_pools]] {:?}: {}",
                declared.name, error.message
            ))
        })?;
    }
    Ok(())
}

fn apply_config_pool(
    plane: &IdentityPlane,
    declared: &crate::config::UserPoolConfig,
) -> Result<(), IdpError> {
    let now = now_secs();
    let id = match plane.registry.user_pool_named(&declared.name) {
        Some(pool) => pool.id,
        None => {
            let (pem, kid) = new_signing_key();
            let record = UserPoolRecord {
                id: new_pool_id(&plane.config.region),
                name: declared.name.clone(),
                creation_date: now,
                last_modified_date: now,
                signing_key_pem: pem,
                kid,
                password_policy: (&declared.password_policy).into(),
                auto_confirm: declared.auto_confirm,
                confirmation_code: declared.confirmation_code.clone(),
                clients: BTreeMap::new(),
                users: BTreeMap::new(),
            };
            let id = record.id.clone();
            plane.registry.create_user_pool(record)?;
            tracing::info!(user_pool = %id, name = %declared.name, "user pool created from the config");
            id
        }
    };
    plane.registry.change_user_pool(&id, |pool| {
        pool.password_policy = (&declared.password_policy).into();
        pool.auto_confirm = declared.auto_confirm;
        pool.confirmation_code = declared.confirmation_code.clone();
        for client in &declared.clients {
            let existing = pool
                .clients
                .values()
                .find(|known| known.client_name == client.name)
                .map(|known| known.client_id.clone());
            let client_id = match (&client.client_id, existing) {
                (Some(fixed), existing) => {
                    if let Some(old) = existing.filter(|old| old != fixed) {
                        pool.clients.remove(&old);
                    }
                    fixed.clone()
                }
                (None, Some(existing)) => existing,
                (None, None) => new_client_id(),
            };
            let flows = if client.explicit_auth_flows.is_empty() {
                crate::registry::DEFAULT_AUTH_FLOWS
                    .iter()
                    .map(|flow| (*flow).to_owned())
                    .collect()
            } else {
                client.explicit_auth_flows.clone()
            };
            let creation_date = pool
                .clients
                .get(&client_id)
                .map_or(now, |known| known.creation_date);
            pool.clients.insert(
                client_id.clone(),
                UserPoolClientRecord {
                    client_id,
                    client_name: client.name.clone(),
                    creation_date,
                    last_modified_date: now,
                    explicit_auth_flows: flows,
                    access_token_validity_secs: client.access_token_validity.as_secs().max(1),
                    id_token_validity_secs: client.id_token_validity.as_secs().max(1),
                    refresh_token_validity_secs: client.refresh_token_validity.as_secs().max(1),
                    prevent_user_existence_errors: "LEGACY".into(),
                },
            );
        }
        for user in &declared.users {
            if pool.users.contains_key(&user.username) {
                continue;
            }
            pool.password_policy.check(&user.password).map_err(|why| {
                RegistryError::Invalid(format!("user {:?}: {why}", user.username))
            })?;
            let status = if user.confirmed {
                UserStatus::Confirmed
            } else {
                UserStatus::Unconfirmed
            };
            let record = new_user(
                pool,
                &user.username,
                &user.password,
                user.attributes.clone(),
                status,
                now,
            );
            pool.users.insert(user.username.clone(), record);
        }
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
