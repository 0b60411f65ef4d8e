//! The broker's TOML configuration (DESIGN.md §4). The key names are a contract: unknown
//! keys are an error naming the key, and every section is parsed and validated from the
//! start even when the feature behind it arrives later.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use iot::Limits;
use serde::Deserialize;

/// The built-in policy that allows everything; cannot be redefined.
pub const DEV_ALLOW_ALL: &str = "dev-allow-all";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub region: String,
    pub account_id: String,
    pub endpoint: String,
    pub data_dir: PathBuf,
    pub in_memory: bool,
    #[serde(with = "humantime_serde")]
    pub session_expiry: Duration,
    pub retained_on_wildcard: bool,
    pub subscribe_denied: SubscribeDenied,
    pub default_authorizer: String,
    pub listeners: Listeners,
    pub limits: Limits,
    pub tls: Option<TlsFiles>,
    pub anonymous: Option<Anonymous>,
    pub admin: Option<Admin>,
    pub policies: Vec<PolicyConfig>,
    pub ca_certificates: Vec<CaCertificateConfig>,
    pub certificates: Vec<CertificateConfig>,
    pub things: Vec<ThingConfig>,
    pub credentials: Vec<CredentialConfig>,
    pub authorizers: Vec<AuthorizerConfig>,
    pub identity_pools: Vec<IdentityPoolConfig>,
    pub user_pools: Vec<UserPoolConfig>,
    /// IAM roles an identity pool's roles may name (SetIdentityPoolRoles takes role ARNs:
    /// `arn:aws:iam::<account>:role/<name>` names the entry `name`).
    pub roles: Vec<RoleConfig>,
    /// OpenID Connect providers whose ID tokens identity pools may accept as logins.
    pub openid_providers: Vec<OpenIdProviderConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            endpoint: "localhost".into(),
            data_dir: PathBuf::from(".pubsub"),
            in_memory: false,
            session_expiry: Duration::from_secs(3600),
            retained_on_wildcard: false,
            subscribe_denied: SubscribeDenied::Disconnect,
            default_authorizer: String::new(),
            listeners: Listeners::default(),
            limits: Limits::default(),
            tls: None,
            anonymous: None,
            admin: None,
            policies: Vec::new(),
            ca_certificates: Vec::new(),
            certificates: Vec::new(),
            things: Vec::new(),
            credentials: Vec::new(),
            authorizers: Vec::new(),
            identity_pools: Vec::new(),
            user_pools: Vec::new(),
            roles: Vec::new(),
            openid_providers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscribeDenied {
    Disconnect,
    Suback,
}

/// Listener addresses as strings: `""` disables a listener, port 0 asks the OS for one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    pub mqtt: String,
    pub mqtts: String,
    pub tls: String,
    pub ws: String,
    pub http: String,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            mqtt: "127.0.0.1:1883".into(),
            mqtts: "127.0.0.1:8883".into(),
            tls: "127.0.0.1:8443".into(),
            ws: String::new(),
            http: "127.0.0.1:8088".into(),
        }
    }
}

impl Listeners {
    /// `(name, address)` for every enabled listener, in a fixed order.
    pub fn enabled(&self) -> Result<Vec<(&'static str, SocketAddr)>, ConfigError> {
        let all = [
            ("mqtt", &self.mqtt),
            ("mqtts", &self.mqtts),
            ("tls", &self.tls),
            ("ws", &self.ws),
            ("http", &self.http),
        ];
        all.into_iter()
            .filter(|(_, address)| !address.is_empty())
            .map(|(name, address)| {
                address.parse().map(|addr| (name, addr)).map_err(|_| {
                    ConfigError::Invalid(format!(
                        "listeners.{name} = {address:?} is not an ip:port address"
                    ))
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Anonymous {
    pub policies: Vec<String>,
}

/// The control plane's administrator. Both keys or neither: without them a pair is
/// generated into `<data_dir>/admin-credentials` (so `[admin] metrics_auth = true` alone
/// protects `/metrics` with the generated key).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `GET /metrics` needs the admin's SigV4 signature (unsigned by default: the `http`
    /// listener is on loopback unless configured otherwise).
    pub metrics_auth: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    pub document: Option<String>,
    pub document_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    #[default]
    Active,
    Inactive,
    Revoked,
    PendingActivation,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaCertificateConfig {
    pub pem_file: PathBuf,
    #[serde(default)]
    pub status: CertificateStatus,
    #[serde(default)]
    pub auto_register: bool,
    /// Attached to each certificate this CA registers on first use.
    #[serde(default)]
    pub policies: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    pub pem_file: PathBuf,
    #[serde(default)]
    pub status: CertificateStatus,
    #[serde(default)]
    pub policies: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThingConfig {
    pub name: String,
    /// IoT Core's thing type (with one, a thing may have 50 attributes instead of 3).
    #[serde(default)]
    pub thing_type_name: Option<String>,
    /// Certificate ids or ARNs, Cognito identity ids, any principal string.
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub principal: String,
    #[serde(default)]
    pub policies: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizerConfig {
    pub name: String,
    pub function_url: String,
    #[serde(default)]
    pub token_key_name: String,
    #[serde(default)]
    pub signing_disabled: bool,
    #[serde(default)]
    pub token_signing_public_keys: BTreeMap<String, PathBuf>,
    #[serde(default = "active")]
    pub status: String,
}

fn active() -> String {
    "ACTIVE".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityPoolConfig {
    pub name: String,
    #[serde(default)]
    pub allow_unauthenticated: bool,
    #[serde(default = "one_hour", with = "humantime_serde")]
    pub credentials_ttl: Duration,
    /// The IAM policy of the pool's unauthenticated role (what a guest identity may do),
    /// inline or in a file: the role `Cognito_<name>Unauth_Role`, as the AWS console
    /// names the role it makes for a pool.
    #[serde(default)]
    pub unauthenticated_role_policy: Option<String>,
    #[serde(default)]
    pub unauthenticated_role_policy_file: Option<PathBuf>,
    /// The same for authenticated identities: `Cognito_<name>Auth_Role`.
    #[serde(default)]
    pub authenticated_role_policy: Option<String>,
    #[serde(default)]
    pub authenticated_role_policy_file: Option<PathBuf>,
    /// The developer provider name of developer-authenticated identities
    /// (GetOpenIdTokenForDeveloperIdentity's `Logins` key), e.g. `login.mycompany.myapp`.
    #[serde(default)]
    pub developer_provider_name: Option<String>,
    /// User pools whose ID tokens are logins of this pool.
    #[serde(default)]
    pub user_pools: Vec<UserPoolProviderConfig>,
    /// Issuers of `[[openid_providers]]` whose ID tokens are logins of this pool.
    #[serde(default)]
    pub openid_providers: Vec<String>,
}

impl Default for IdentityPoolConfig {
    fn default() -> Self {
        IdentityPoolConfig {
            name: String::new(),
            allow_unauthenticated: false,
            credentials_ttl: one_hour(),
            unauthenticated_role_policy: None,
            unauthenticated_role_policy_file: None,
            authenticated_role_policy: None,
            authenticated_role_policy_file: None,
            developer_provider_name: None,
            user_pools: Vec::new(),
            openid_providers: Vec::new(),
        }
    }
}

impl IdentityPoolConfig {
    /// The role a pool's `<kind>_role_policy` defines: `Cognito_<name>Unauth_Role` or
    /// `Cognito_<name>Auth_Role` (characters IAM refuses in role names become `_`).
    pub fn role_name(&self, authenticated: bool) -> String {
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let kind = if authenticated { "Auth" } else { "Unauth" };
        format!("Cognito_{name}{kind}_Role")
    }

    /// The inline document or the file of one of the two role policies.
    pub fn role_policy(&self, authenticated: bool) -> (Option<&String>, Option<&PathBuf>) {
        if authenticated {
            (
                self.authenticated_role_policy.as_ref(),
                self.authenticated_role_policy_file.as_ref(),
            )
        } else {
            (
                self.unauthenticated_role_policy.as_ref(),
                self.unauthenticated_role_policy_file.as_ref(),
            )
        }
    }
}

/// A user pool as a login provider of an identity pool (CognitoIdentityProviders): a
/// `[[user_pools]]` entry by name, or any pool by its provider name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPoolProviderConfig {
    /// The name of a `[[user_pools]]` entry (its id is made at its first start).
    #[serde(default)]
    pub user_pool: Option<String>,
    /// Or `cognito-idp.<region>.amazonaws.com/<userPoolId>`, the Logins key apps send.
    #[serde(default)]
    pub provider_name: Option<String>,
    /// The app client whose tokens are accepted, by name (of the `[[user_pools]]` entry)…
    #[serde(default)]
    pub client: Option<String>,
    /// …or by id; any client of the pool when neither is given.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// An IAM role: its name and its (permissions) policy document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    pub name: String,
    pub policy: Option<String>,
    pub policy_file: Option<PathBuf>,
}

/// An OpenID Connect provider (IAM's OIDC identity provider): tokens whose `iss` is
/// `issuer`, signed by a key of `jwks_file`, for one of `audiences`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenIdProviderConfig {
    /// `https://…`; the Logins key is the issuer without `https://`.
    pub issuer: String,
    pub jwks_file: PathBuf,
    pub audiences: Vec<String>,
}

impl OpenIdProviderConfig {
    /// The Logins key apps send for this provider: the issuer without `https://`.
    pub fn provider_name(&self) -> &str {
        self.issuer
            .strip_prefix("https://")
            .unwrap_or(&self.issuer)
            .trim_end_matches('/')
    }
}

fn one_hour() -> Duration {
    Duration::from_secs(3600)
}

/// A Cognito user pool (`[[user_pools]]`), made at start if missing (it keeps the id its
/// first start gave it), with its app clients and users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPoolConfig {
    pub name: String,
    /// `SignUp` confirms the user at once (no `ConfirmSignUp` needed), since no e-mail
    /// leaves the machine.
    #[serde(default)]
    pub auto_confirm: bool,
    /// The code `ConfirmSignUp` accepts (the one the e-mail would have carried).
    #[serde(default = "default_confirmation_code")]
    pub confirmation_code: String,
    #[serde(default)]
    pub password_policy: PasswordPolicyConfig,
    #[serde(default)]
    pub clients: Vec<UserPoolClientConfig>,
    #[serde(default)]
    pub users: Vec<UserPoolUserConfig>,
}

pub fn default_confirmation_code() -> String {
    "123456".into()
}

/// Cognito's password policy; the defaults are a new pool's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicyConfig {
    pub minimum_length: u32,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_numbers: bool,
    pub require_symbols: bool,
}

impl Default for PasswordPolicyConfig {
    fn default() -> Self {
        PasswordPolicyConfig {
            minimum_length: 8,
            require_uppercase: true,
            require_lowercase: true,
            require_numbers: true,
            require_symbols: true,
        }
    }
}

/// An app client of a `[[user_pools]]` pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPoolClientConfig {
    pub name: String,
    /// A fixed client id (so that apps and tests can name it); default: one is generated at
    /// the first start and kept.
    #[serde(default)]
    pub client_id: Option<String>,
    /// As CreateUserPoolClient's `ExplicitAuthFlows`; default AWS's: `ALLOW_USER_SRP_AUTH`,
    /// `ALLOW_CUSTOM_AUTH`, `ALLOW_REFRESH_TOKEN_AUTH`.
    #[serde(default)]
    pub explicit_auth_flows: Vec<String>,
    #[serde(default = "one_hour", with = "humantime_serde")]
    pub access_token_validity: Duration,
    #[serde(default = "one_hour", with = "humantime_serde")]
    pub id_token_validity: Duration,
    #[serde(default = "thirty_days", with = "humantime_serde")]
    pub refresh_token_validity: Duration,
}

/// What a client without `ExplicitAuthFlows` allows (as CreateUserPoolClient defaults).
pub const DEFAULT_AUTH_FLOWS: [&str; 3] = [
    "ALLOW_USER_SRP_AUTH",
    "ALLOW_CUSTOM_AUTH",
    "ALLOW_REFRESH_TOKEN_AUTH",
];

/// Every `ExplicitAuthFlows` value AWS knows (the legacy names too).
pub const KNOWN_AUTH_FLOWS: [&str; 9] = [
    "ADMIN_NO_SRP_AUTH",
    "CUSTOM_AUTH_FLOW_ONLY",
    "USER_PASSWORD_AUTH",
    "ALLOW_ADMIN_USER_PASSWORD_AUTH",
    "ALLOW_CUSTOM_AUTH",
    "ALLOW_USER_PASSWORD_AUTH",
    "ALLOW_USER_SRP_AUTH",
    "ALLOW_REFRESH_TOKEN_AUTH",
    "ALLOW_USER_AUTH",
];

fn thirty_days() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

/// A user of a `[[user_pools]]` pool, made at the first start (a user that exists is left
/// as it is: its password may have been changed since).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPoolUserConfig {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub confirmed: bool,
}

fn yes() -> bool {
    true
}

impl Config {
    /// The embedded default of `pubsub broker` without `--config`: anonymous clients on the
    /// plain listener may do anything.
    pub fn embedded_default() -> Config {
        Config {
            anonymous: Some(Anonymous {
                policies: vec![DEV_ALLOW_ALL.into()],
            }),
            ..Config::default()
        }
    }

    /// Reads and validates a config file; relative paths in it become relative to its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without touching the file system.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: PathBuf::new(),
            message: error.to_string().trim().replace('\n', " "),
        })?;
        Ok(config)
    }

    /// The `[admin]` key pair, when the config gives one (else it is generated).
    pub fn admin_key(&self) -> Option<(&str, &str)> {
        self.admin
            .as_ref()
            .filter(|admin| !admin.access_key_id.is_empty())
            .map(|admin| {
                (
                    admin.access_key_id.as_str(),
                    admin.secret_access_key.as_str(),
                )
            })
    }

    /// Whether `/metrics` requires the admin's signature (`[admin] metrics_auth`).
    pub fn metrics_auth(&self) -> bool {
        self.admin.as_ref().is_some_and(|admin| admin.metrics_auth)
    }

    /// Policies that anonymous clients on the plain listener get.
    pub fn anonymous_policies(&self) -> &[String] {
        self.anonymous
            .as_ref()
            .map(|anonymous| anonymous.policies.as_slice())
            .unwrap_or(&[])
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        join(&mut self.data_dir);
        if let Some(tls) = &mut self.tls {
            join(&mut tls.cert);
            join(&mut tls.key);
        }
        for policy in &mut self.policies {
            if let Some(file) = &mut policy.document_file {
                join(file);
            }
        }
        for ca in &mut self.ca_certificates {
            join(&mut ca.pem_file);
        }
        for pool in &mut self.identity_pools {
            for file in [
                &mut pool.unauthenticated_role_policy_file,
                &mut pool.authenticated_role_policy_file,
            ]
            .into_iter()
            .flatten()
            {
                join(file);
            }
        }
        for role in &mut self.roles {
            if let Some(file) = &mut role.policy_file {
                join(file);
            }
        }
        for provider in &mut self.openid_providers {
            join(&mut provider.jwks_file);
        }
        for certificate in &mut self.certificates {
            join(&mut certificate.pem_file);
        }
        for authorizer in &mut self.authorizers {
            for key in authorizer.token_signing_public_keys.values_mut() {
                join(key);
            }
        }
    }

    /// Cross-references: every named policy exists, every named file exists.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listeners.enabled()?;
        if let Some(admin) = &self.admin {
            if admin.access_key_id.is_empty() != admin.secret_access_key.is_empty() {
                return Err(ConfigError::Invalid(
                    "[admin] needs both access_key_id and secret_access_key, or neither (a pair is then generated)".into(),
                ));
            }
        }
        let mut policy_names = vec![DEV_ALLOW_ALL];
        for policy in &self.policies {
            if policy.name == DEV_ALLOW_ALL {
                return Err(ConfigError::Invalid(format!(
                    "policy {DEV_ALLOW_ALL:?} is built in and cannot be redefined"
                )));
            }
            match (&policy.document, &policy.document_file) {
                (Some(_), None) => {}
                (None, Some(file)) => require_file(file, &format!("policy {:?}", policy.name))?,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "policy {:?} needs exactly one of document or document_file",
                        policy.name
                    )))
                }
            }
            policy_names.push(&policy.name);
        }
        let require_policies = |owner: &str, names: &[String]| {
            for name in names {
                if !policy_names.contains(&name.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "{owner} refers to unknown policy {name:?}"
                    )));
                }
            }
            Ok(())
        };
        require_policies("[anonymous]", self.anonymous_policies())?;
        validate_user_pools(&self.user_pools)?;
        for certificate in &self.certificates {
            require_file(&certificate.pem_file, "[[certificates]]")?;
            require_policies("[[certificates]]", &certificate.policies)?;
        }
        for ca in &self.ca_certificates {
            require_file(&ca.pem_file, "[[ca_certificates]]")?;
            require_policies("[[ca_certificates]]", &ca.policies)?;
        }
        for credential in &self.credentials {
            require_policies(
                &format!("[[credentials]] {}", credential.access_key_id),
                &credential.policies,
            )?;
        }
        for authorizer in &self.authorizers {
            for key in authorizer.token_signing_public_keys.values() {
                require_file(key, &format!("authorizer {:?}", authorizer.name))?;
            }
        }
        self.validate_identity_pools()?;
        if let Some(tls) = &self.tls {
            require_file(&tls.cert, "[tls] cert")?;
            require_file(&tls.key, "[tls] key")?;
        }
        if self.limits.memory_budget < 1 << 20 {
            return Err(ConfigError::Invalid(format!(
                "limits.memory_budget = {} bytes is too small: at least 1MiB",
                self.limits.memory_budget
            )));
        }
        if self.limits.max_inflight == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_inflight must be at least 1".into(),
            ));
        }
        if self.limits.shadow_inflight_per_thing == 0 {
            return Err(ConfigError::Invalid(
                "limits.shadow_inflight_per_thing must be at least 1 (0 would refuse every shadow request)".into(),
            ));
        }
        let ttl_min = self.limits.authorizer_ttl_min;
        if !(1..=*iot::custom_auth::TTL_RANGE_SECS.end()).contains(&ttl_min.as_secs()) {
            return Err(ConfigError::Invalid(format!(
                "limits.authorizer_ttl_min = {ttl_min:?} must be between 1s and {}s (the most an authorizer may return)",
                iot::custom_auth::TTL_RANGE_SECS.end()
            )));
        }
        if self.limits.handshake_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "limits.handshake_timeout must be more than 0 (it would close every new connection)".into(),
            ));
        }
        Ok(())
    }

    /// The durable store's page cache: a quarter of the memory budget, between 1 MiB and
    /// 64 MiB (redb's own default is far larger and not counted anywhere).
    pub fn store_cache_bytes(&self) -> usize {
        let budget = usize::try_from(self.limits.memory_budget).unwrap_or(usize::MAX);
        (budget / 4).clamp(1 << 20, 64 << 20)
    }

    /// What queued messages may hold in memory: the budget less the store's cache.
    pub fn queue_memory_budget(&self) -> usize {
        let budget = usize::try_from(self.limits.memory_budget).unwrap_or(usize::MAX);
        if self.in_memory {
            budget
        } else {
            budget.saturating_sub(self.store_cache_bytes())
        }
    }
}

/// `[[user_pools]]`: names unique (pools, their clients, their users), client ids of
/// Cognito's grammar and unique, auth flows of AWS's names.
fn validate_user_pools(pools: &[UserPoolConfig]) -> Result<(), ConfigError> {
    let invalid = |message: String| Err(ConfigError::Invalid(message));
    let mut client_ids = Vec::new();
    for (index, pool) in pools.iter().enumerate() {
        let owner = format!("[[user_pools]] {:?}", pool.name);
        if pool.name.is_empty() || pool.name.len() > 128 {
            return invalid(format!("{owner}: name must be 1 to 128 characters"));
        }
        if pools[..index].iter().any(|other| other.name == pool.name) {
            return invalid(format!("{owner}: two user pools have this name"));
        }
        for (at, client) in pool.clients.iter().enumerate() {
            if pool.clients[..at]
                .iter()
                .any(|other| other.name == client.name)
            {
                return invalid(format!("{owner}: two clients are named {:?}", client.name));
            }
            if let Some(id) = &client.client_id {
                let grammar = !id.is_empty()
                    && id.len() <= 128
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'+');
                if !grammar {
                    return invalid(format!(
                        "{owner}: client_id {id:?} must be 1 to 128 characters of a-z, A-Z, 0-9, '_' and '+'"
                    ));
                }
                if client_ids.contains(&id) {
                    return invalid(format!("{owner}: client_id {id:?} is used twice"));
                }
                client_ids.push(id);
            }
            for flow in &client.explicit_auth_flows {
                if !KNOWN_AUTH_FLOWS.contains(&flow.as_str()) {
                    return invalid(format!(
                        "{owner}: client {:?}: unknown explicit_auth_flows value {flow:?}",
                        client.name
                    ));
                }
            }
        }
        for (at, user) in pool.users.iter().enumerate() {
            if pool.users[..at]
                .iter()
                .any(|other| other.username == user.username)
            {
                return invalid(format!("{owner}: two users are named {:?}", user.username));
            }
            if user.attributes.contains_key("sub") {
                return invalid(format!(
                    "{owner}: user {:?}: `sub` is the pool's to give",
                    user.username
                ));
            }
        }
    }
    Ok(())
}

impl Config {
    /// Roles, OpenID Connect providers and what identity pools say of them.
    fn validate_identity_pools(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        let mut role_names: Vec<String> = Vec::new();
        for role in &self.roles {
            let owner = format!("role {:?}", role.name);
            if role.name.is_empty() || role.name.len() > 64 {
                return invalid(format!("{owner}: a role name has 1 to 64 characters"));
            }
            match (&role.policy, &role.policy_file) {
                (Some(_), None) => {}
                (None, Some(file)) => require_file(file, &owner)?,
                _ => {
                    return invalid(format!(
                        "{owner} needs exactly one of policy or policy_file"
                    ))
                }
            }
            if role_names.contains(&role.name) {
                return invalid(format!("{owner} is declared twice"));
            }
            role_names.push(role.name.clone());
        }
        for provider in &self.openid_providers {
            let owner = format!("openid provider {:?}", provider.issuer);
            if !provider.issuer.starts_with("https://") {
                return invalid(format!("{owner}: the issuer must be an https:// URL"));
            }
            if provider.audiences.is_empty() {
                return invalid(format!(
                    "{owner}: audiences must name at least one client id"
                ));
            }
            require_file(&provider.jwks_file, &owner)?;
        }
        for pool in &self.identity_pools {
            let owner = format!("identity pool {:?}", pool.name);
            for authenticated in [false, true] {
                let key = if authenticated {
                    "authenticated_role_policy"
                } else {
                    "unauthenticated_role_policy"
                };
                match pool.role_policy(authenticated) {
                    (Some(_), Some(_)) => {
                        return invalid(format!("{owner}: give {key} or {key}_file, not both"))
                    }
                    (None, Some(file)) => require_file(file, &format!("{owner} {key}_file"))?,
                    _ => {}
                }
                let implied = pool.role_name(authenticated);
                if pool.role_policy(authenticated) != (None, None) {
                    if role_names.contains(&implied) {
                        return invalid(format!(
                            "{owner}: its {key} defines role {implied:?}, which is declared again"
                        ));
                    }
                    role_names.push(implied);
                }
            }
            for user_pool in &pool.user_pools {
                match (&user_pool.user_pool, &user_pool.provider_name) {
                    (Some(name), None) => {
                        let Some(declared) = self.user_pools.iter().find(|p| &p.name == name)
                        else {
                            return invalid(format!(
                                "{owner} refers to unknown user pool {name:?} (declare it in [[user_pools]])"
                            ));
                        };
                        if let Some(client) = &user_pool.client {
                            if !declared.clients.iter().any(|c| &c.name == client) {
                                return invalid(format!(
                                    "{owner}: user pool {name:?} has no client {client:?}"
                                ));
                            }
                        }
                    }
                    (None, Some(provider)) => {
                        let valid = provider
                            .strip_prefix("cognito-idp.")
                            .and_then(|rest| rest.split_once(".amazonaws.com/"))
                            .is_some_and(|(region, id)| !region.is_empty() && !id.is_empty());
                        if !valid {
                            return invalid(format!(
                                "{owner}: user pool provider {provider:?} is not cognito-idp.<region>.amazonaws.com/<userPoolId>"
                            ));
                        }
                        if user_pool.client.is_some() {
                            return invalid(format!(
                                "{owner}: a user pool given by provider_name names its client by client_id"
                            ));
                        }
                    }
                    _ => {
                        return invalid(format!(
                            "{owner}: a user pool provider needs exactly one of user_pool (a [[user_pools]] name) or provider_name"
                        ))
                    }
                }
                if user_pool.client.is_some() && user_pool.client_id.is_some() {
                    return invalid(format!("{owner}: give client or client_id, not both"));
                }
            }
            for issuer in &pool.openid_providers {
                if !self.openid_providers.iter().any(|p| &p.issuer == issuer) {
                    return invalid(format!(
                        "{owner} refers to unknown openid provider {issuer:?} (declare it in [[openid_providers]])"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn require_file(path: &Path, owner: &str) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "{owner} refers to missing file {}",
            path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_iot_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.session_expiry, Duration::from_secs(3600));
        assert_eq!(config.limits.max_payload_bytes, 131072);
        assert_eq!(config.listeners.mqtt, "127.0.0.1:1883");
        assert!(config.anonymous_policies().is_empty());
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, key) in [
            ("bogus = 1", "bogus"),
            ("[limits]\nbogus_limit = 1", "bogus_limit"),
            ("[listeners]\nmqttx = \"\"", "mqttx"),
            (
                "[[policies]]\nname = \"p\"\ndocument = \"{}\"\nextra = 1",
                "extra",
            ),
        ] {
            let error = Config::parse(text).unwrap_err().to_string();
            assert!(error.contains(key), "{error} should name {key}");
        }
    }

    #[test]
    fn whole_design_example_parses() {
        let text = r#"
region = "eu-west-1"
account_id = "123456789012"
endpoint = "localhost"
data_dir = "d"
in_memory = true
session_expiry = "2s"
retained_on_wildcard = true
subscribe_denied = "suback"
default_authorizer = ""
[listeners]
mqtt = "127.0.0.1:0"
mqtts = ""
tls = ""
ws = ""
http = ""
[limits]
keepalive_min = "1s"
connects_per_client_id_per_sec = 0
group_commit_max_delay = "2ms"
[anonymous]
policies = ["dev-allow-all", "p"]
[admin]
access_key_id = "AKIA"
secret_access_key = "s"
metrics_auth = true
[[policies]]
name = "p"
document = '{"Version": "2012-10-17", "Statement": []}'
[[things]]
name = "sensor-1"
principals = ["abc"]
attributes = { room = "lab" }
[[credentials]]
access_key_id = "AKIA2"
secret_access_key = "s"
principal = "us-east-1:4a1b"
policies = ["p"]
[[authorizers]]
name = "a"
function_url = "http://127.0.0.1:9000/authorize"
token_key_name = "x-token"
signing_disabled = true
[[identity_pools]]
name = "app-pool"
allow_unauthenticated = true
credentials_ttl = "1h"
"#;
        let config = Config::parse(text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.session_expiry, Duration::from_secs(2));
        assert_eq!(config.subscribe_denied, SubscribeDenied::Suback);
        assert_eq!(config.limits.keepalive_min, Duration::from_secs(1));
        assert_eq!(config.listeners.enabled().unwrap().len(), 1);
    }

    #[test]
    fn admin_keys_come_in_pairs_and_metrics_auth_alone_uses_the_generated_one() {
        let config = Config::parse("[admin]\nmetrics_auth = true").unwrap();
        config.validate().unwrap();
        assert!(config.metrics_auth());
        assert_eq!(config.admin_key(), None);
        assert!(!Config::parse("").unwrap().metrics_auth());
        let half = Config::parse("[admin]\naccess_key_id = \"AKIA\"").unwrap();
        let error = half.validate().unwrap_err().to_string();
        assert!(error.contains("[admin]"), "{error}");
    }

    #[test]
    fn identity_pool_roles_and_providers_are_validated_at_start() {
        let ok = r#"
[[roles]]
name = "guests"
policy = "{}"
[[openid_providers]]
issuer = "https://id.example"
jwks_file = "Cargo.toml"
audiences = ["app"]
[[identity_pools]]
name = "app pool"
unauthenticated_role_policy = "{}"
developer_provider_name = "login.example"
openid_providers = ["https://id.example"]
user_pools = [{ provider_name = "cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC" }, { user_pool = "users", client = "app" }]
[[user_pools]]
name = "users"
[[user_pools.clients]]
name = "app"
"#;
        let config = Config::parse(ok).unwrap();
        config.validate().unwrap();
        let pool = &config.identity_pools[0];
        assert_eq!(pool.role_name(false), "Cognito_app_poolUnauth_Role");
        assert_eq!(pool.role_name(true), "Cognito_app_poolAuth_Role");
        assert_eq!(config.openid_providers[0].provider_name(), "id.example");
        for (broken, named) in [
            ("[[roles]]\nname = \"r\"", "policy_file"),
            (
                "[[roles]]\nname = \"r\"\npolicy = \"{}\"\n[[roles]]\nname = \"r\"\npolicy = \"{}\"",
                "twice",
            ),
            (
                "[[identity_pools]]\nname = \"p\"\nauthenticated_role_policy = \"{}\"\nauthenticated_role_policy_file = \"x\"",
                "not both",
            ),
            (
                "[[identity_pools]]\nname = \"p\"\nopenid_providers = [\"https://nobody\"]",
                "unknown openid provider",
            ),
            (
                "[[identity_pools]]\nname = \"p\"\nuser_pools = [{ provider_name = \"us-east-1_AbC\" }]",
                "cognito-idp.<region>",
            ),
            (
                "[[identity_pools]]\nname = \"p\"\nuser_pools = [{ user_pool = \"nobody\" }]",
                "unknown user pool",
            ),
            (
                "[[openid_providers]]\nissuer = \"http://id.example\"\njwks_file = \"Cargo.toml\"\naudiences = [\"a\"]",
                "https://",
            ),
        ] {
            let error = Config::parse(broken)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(error.contains(named), "{broken}: {error}");
        }
        // A role policy that does not parse names its role, at start.
        let config = Config::parse(
            "[[identity_pools]]\nname = \"p\"\nunauthenticated_role_policy = \"{not json\"",
        )
        .unwrap();
        let error = crate::auth::PolicyStore::from_config(&config)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("Cognito_pUnauth_Role"), "{error}");
    }

    #[test]
    fn unknown_policy_reference_is_an_error() {
        let config = Config::parse("[anonymous]\npolicies = [\"nope\"]").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("nope"), "{error}");
    }

    #[test]
    fn dev_allow_all_cannot_be_redefined() {
        let config =
            Config::parse("[[policies]]\nname = \"dev-allow-all\"\ndocument = \"{}\"").unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn authorizer_ttl_min_must_be_one_an_authorizer_can_return() {
        for (value, ok) in [
            ("1s", true),
            ("300s", true),
            ("24h", true),
            ("500ms", false),
            ("25h", false),
        ] {
            let config =
                Config::parse(&format!("[limits]\nauthorizer_ttl_min = {value:?}")).unwrap();
            let result = config.validate();
            assert_eq!(result.is_ok(), ok, "{value}: {result:?}");
            if let Err(error) = result {
                assert!(error.to_string().contains("authorizer_ttl_min"), "{error}");
            }
        }
    }

    #[test]
    fn user_pools_are_validated_and_named_in_the_error() {
        let pool = |body: &str| format!("[[user_pools]]\nname = \"p\"\n{body}");
        let ok = pool(
            "[[user_pools.clients]]\nname = \"app\"\nclient_id = \"abc123\"\nexplicit_auth_flows = [\"ALLOW_USER_SRP_AUTH\"]\n\
             [[user_pools.users]]\nusername = \"alice\"\npassword = \"Passw0rd!\"\n",
        );
        let config = Config::parse(&ok).unwrap();
        config.validate().unwrap();
        let pools = &config.user_pools;
        assert_eq!(pools[0].confirmation_code, "123456");
        assert!(pools[0].users[0].confirmed);
        assert_eq!(
            pools[0].clients[0].refresh_token_validity,
            Duration::from_secs(30 * 86400)
        );
        for (body, needle) in [
            (
                "[[user_pools.clients]]\nname = \"a\"\nclient_id = \"no spaces\"\n",
                "client_id",
            ),
            (
                "[[user_pools.clients]]\nname = \"a\"\nexplicit_auth_flows = [\"ALLOW_MAGIC\"]\n",
                "ALLOW_MAGIC",
            ),
            (
                "[[user_pools.users]]\nusername = \"u\"\npassword = \"x\"\n[[user_pools.users]]\nusername = \"u\"\npassword = \"y\"\n",
                "two users",
            ),
            (
                "[[user_pools.users]]\nusername = \"u\"\npassword = \"x\"\nattributes = { sub = \"s\" }\n",
                "sub",
            ),
        ] {
            let error = Config::parse(&pool(body))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(error.contains("[[user_pools]] \"p\"") && error.contains(needle), "{error}");
        }
    }

    #[test]
    fn bad_listener_address_is_named() {
        let config = Config::parse("[listeners]\nmqtt = \"nowhere\"").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("listeners.mqtt"), "{error}");
    }

    #[test]
    fn a_zero_shadow_inflight_limit_is_refused() {
        let config = Config::parse("[limits]\nshadow_inflight_per_thing = 0").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("limits.shadow_inflight_per_thing"),
            "{error}"
        );
    }

    #[test]
    fn a_zero_handshake_timeout_is_refused() {
        let config = Config::parse("[limits]\nhandshake_timeout = \"0s\"").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("limits.handshake_timeout"), "{error}");
    }
}
