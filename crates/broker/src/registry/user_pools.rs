//! Cognito user pools, as `registry.json` keeps them: the pool (its id, name, signing key,
//! password policy and confirmation settings), its app clients, and its users. Secrets are
//! never kept in clear: a password only as its SRP salt and verifier, a refresh token only
//! as its SHA-256 digest. The rules that need no I/O are functions here (unit-tested in
//! `tests.rs`); `Registry::change_user_pool` runs a change on one pool and saves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{unix_now, Registry, RegistryError, RegistryState};
use crate::config::PasswordPolicyConfig;
pub use crate::config::{DEFAULT_AUTH_FLOWS, KNOWN_AUTH_FLOWS};

/// A user's status, with Cognito's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserStatus {
    /// Signed up, not yet confirmed (ConfirmSignUp, AdminConfirmSignUp).
    Unconfirmed,
    Confirmed,
    /// Made by AdminCreateUser with a temporary password: the first sign-in must set a
    /// new one (the `NEW_PASSWORD_REQUIRED` challenge).
    ForceChangePassword,
}

impl UserStatus {
    pub fn name(self) -> &'static str {
        match self {
            UserStatus::Unconfirmed => "UNCONFIRMED",
            UserStatus::Confirmed => "CONFIRMED",
            UserStatus::ForceChangePassword => "FORCE_CHANGE_PASSWORD",
        }
    }
}

/// Cognito's password policy (`Policies.PasswordPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordPolicy {
    pub minimum_length: u32,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_numbers: bool,
    pub require_symbols: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy::from(&PasswordPolicyConfig::default())
    }
}

impl From<&PasswordPolicyConfig> for PasswordPolicy {
    fn from(config: &PasswordPolicyConfig) -> Self {
        PasswordPolicy {
            minimum_length: config.minimum_length,
            require_uppercase: config.require_uppercase,
            require_lowercase: config.require_lowercase,
            require_numbers: config.require_numbers,
            require_symbols: config.require_symbols,
        }
    }
}

/// The symbols Cognito counts for `RequireSymbols`.
const SYMBOLS: &str = "^$*.[]{}()?\"!@#%&/\\,><':;|_~`=+- ";

impl PasswordPolicy {
    /// `Err` is Cognito's InvalidPasswordException message.
    pub fn check(&self, password: &str) -> Result<(), String> {
        let why = |what: &str| Err(format!("Password did not conform with policy: {what}"));
        if password.chars().count() < self.minimum_length as usize {
            return why("Password not long enough");
        }
        if self.require_lowercase && !password.chars().any(|c| c.is_lowercase()) {
            return why("Password must have lowercase characters");
        }
        if self.require_uppercase && !password.chars().any(|c| c.is_uppercase()) {
            return why("Password must have uppercase characters");
        }
        if self.require_numbers && !password.chars().any(|c| c.is_ascii_digit()) {
            return why("Password must have numeric characters");
        }
        if self.require_symbols && !password.chars().any(|c| SYMBOLS.contains(c)) {
            return why("Password must have symbol characters");
        }
        Ok(())
    }
}

/// A user pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPoolRecord {
    /// `<region>_<9 alphanumerics>`.
    pub id: String,
    pub name: String,
    pub creation_date: u64,
    pub last_modified_date: u64,
    /// The RSA key the pool signs its tokens with (PKCS#8 PEM), made with the pool; its
    /// public half is the pool's JWKS.
    pub signing_key_pem: String,
    pub kid: String,
    #[serde(default)]
    pub password_policy: PasswordPolicy,
    /// SignUp confirms at once.
    #[serde(default)]
    pub auto_confirm: bool,
    /// The code ConfirmSignUp accepts.
    pub confirmation_code: String,
    /// App clients, by client id.
    #[serde(default)]
    pub clients: BTreeMap<String, UserPoolClientRecord>,
    /// Users, by username.
    #[serde(default)]
    pub users: BTreeMap<String, UserRecord>,
}

impl UserPoolRecord {
    /// The region part of the id.
    pub fn region(&self) -> &str {
        self.id.split_once('_').map_or("", |(region, _)| region)
    }

    /// The part of the id after `_`: SRP's "pool name".
    pub fn srp_pool_name(&self) -> &str {
        iot::cognito::pool_name(&self.id)
    }

    /// The tokens' `iss`.
    pub fn issuer(&self) -> String {
        format!(
            "https://cognito-idp.{}.amazonaws.com/{}",
            self.region(),
            self.id
        )
    }

    /// The `Logins` key Cognito Identity and the SDKs use for this pool.
    pub fn provider_name(&self) -> String {
        format!("cognito-idp.{}.amazonaws.com/{}", self.region(), self.id)
    }

    pub fn user_by_sub(&self, sub: &str) -> Option<&UserRecord> {
        self.users.values().find(|user| user.sub == sub)
    }
}

/// An app client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPoolClientRecord {
    pub client_id: String,
    pub client_name: String,
    pub creation_date: u64,
    pub last_modified_date: u64,
    /// `ALLOW_USER_SRP_AUTH`, `ALLOW_USER_PASSWORD_AUTH`, `ALLOW_REFRESH_TOKEN_AUTH`, …
    pub explicit_auth_flows: Vec<String>,
    pub access_token_validity_secs: u64,
    pub id_token_validity_secs: u64,
    pub refresh_token_validity_secs: u64,
    /// `LEGACY` (an unknown user is `UserNotFoundException`) or `ENABLED` (it is
    /// indistinguishable from a wrong password).
    pub prevent_user_existence_errors: String,
}

impl UserPoolClientRecord {
    /// Whether the client allows an `AuthFlow` of InitiateAuth (`USER_SRP_AUTH`, …): its
    /// `ALLOW_` name is among the explicit flows (or, for USER_PASSWORD_AUTH, the legacy
    /// name).
    pub fn allows(&self, auth_flow: &str) -> bool {
        let allowed = format!("ALLOW_{auth_flow}");
        self.explicit_auth_flows
            .iter()
            .any(|flow| *flow == allowed || (flow == "USER_PASSWORD_AUTH" && auth_flow == flow))
    }
}

/// A user. The password is kept only as SRP's salt and verifier (which USER_PASSWORD_AUTH
/// checks too, by recomputing the verifier).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub username: String,
    /// A UUID, the tokens' `sub`.
    pub sub: String,
    /// Attributes other than `sub` (email, …).
    pub attributes: BTreeMap<String, String>,
    pub status: UserStatus,
    pub enabled: bool,
    /// The 16 random bytes of the verifier's salt, hex.
    pub salt: String,
    /// The salt as the PASSWORD_VERIFIER challenge sends it (SRP's padded hex).
    pub salt_hex: String,
    pub verifier_hex: String,
    pub creation_date: u64,
    pub last_modified_date: u64,
    /// Sign-ins (one per authentication; refreshes stay in theirs), by `origin_jti`.
    #[serde(default)]
    pub sessions: BTreeMap<String, SignInSession>,
}

/// One sign-in: what its tokens carry as `origin_jti`, and its refresh token's digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInSession {
    pub client_id: String,
    /// Lowercase hex SHA-256 of the refresh token.
    pub refresh_token_sha256: String,
    pub auth_time: u64,
    /// The refresh token's expiry.
    pub expires_at: u64,
    /// GlobalSignOut: its tokens are refused from then on (kept until it expires, so that
    /// the refusal can say "revoked").
    #[serde(default)]
    pub revoked: bool,
}

/// The digest a refresh token is kept as.
pub fn refresh_token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl UserRecord {
    /// Forgets sign-ins whose refresh token expired before `now` (a day ago: a recent
    /// one still reports "expired").
    pub fn forget_expired_sessions(&mut self, now: u64) {
        self.sessions
            .retain(|_, session| session.expires_at + 24 * 3600 > now);
    }
}

impl Registry {
    /// Adds a pool; `AlreadyExists` if its id is taken.
    pub fn create_user_pool(&self, record: UserPoolRecord) -> Result<(), RegistryError> {
        self.change(|state| {
            if state.user_pools.contains_key(&record.id) {
                return Err(RegistryError::AlreadyExists(format!(
                    "user pool {}",
                    record.id
                )));
            }
            state.user_pools.insert(record.id.clone(), record);
            Ok(())
        })
    }

    pub fn user_pool(&self, id: &str) -> Option<UserPoolRecord> {
        let _ = self.reload_if_changed();
        self.state.lock().0.user_pools.get(id).cloned()
    }

    /// The first pool with this name (config pools are found by name).
    pub fn user_pool_named(&self, name: &str) -> Option<UserPoolRecord> {
        let _ = self.reload_if_changed();
        self.state
            .lock()
            .0
            .user_pools
            .values()
            .find(|pool| pool.name == name)
            .cloned()
    }

    pub fn user_pools(&self) -> Vec<UserPoolRecord> {
        let _ = self.reload_if_changed();
        self.state.lock().0.user_pools.values().cloned().collect()
    }

    /// The pool that has this app client.
    pub fn user_pool_of_client(&self, client_id: &str) -> Option<UserPoolRecord> {
        let _ = self.reload_if_changed();
        self.state
            .lock()
            .0
            .user_pools
            .values()
            .find(|pool| pool.clients.contains_key(client_id))
            .cloned()
    }

    /// Runs `change` on one pool and saves (nothing is saved when it fails).
    /// `NotFound("user pool <id>")` when there is no such pool.
    pub fn change_user_pool<R>(
        &self,
        id: &str,
        change: impl FnOnce(&mut UserPoolRecord) -> Result<R, RegistryError>,
    ) -> Result<R, RegistryError> {
        self.change(|state| change_pool(state, id, change))
    }
}

/// `change` on a copy of the pool, put back only when it succeeds: a failed change leaves
/// the pool as it was.
fn change_pool<R>(
    state: &mut RegistryState,
    id: &str,
    change: impl FnOnce(&mut UserPoolRecord) -> Result<R, RegistryError>,
) -> Result<R, RegistryError> {
    let pool = state
        .user_pools
        .get(id)
        .ok_or_else(|| RegistryError::NotFound(format!("user pool {id}")))?;
    let mut changed = pool.clone();
    let result = change(&mut changed)?;
    state.user_pools.insert(id.to_owned(), changed);
    Ok(result)
}

/// Seconds since the Unix epoch, for the records' dates.
pub fn now_secs() -> u64 {
    unix_now()
}
