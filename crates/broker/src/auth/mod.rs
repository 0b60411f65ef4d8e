//! The identity plane: who a client is and what it may do.
//!
//! - [`policy`]: the policy store (config + registry layers); [`connection_policy`]: a
//!   connection's cached decisions; [`test_authorization`]: TestAuthorization.
//! - [`authenticate`]: WebSocket upgrades (SigV4, custom authorizer headers) and CONNECTs
//!   that carry authorizer fields; what a transport hands a connection ([`Admission`]).
//! - [`certificate`]: the TLS client-certificate verifier (registry and CA checks, from
//!   memory: no file I/O inside a handshake).
//! - [`custom`]: custom authorizer functions and their answer cache.
//! - [`cognito`]: temporary credentials from the Cognito emulation; [`logins`]: the logins
//!   of authenticated identities, verified; [`roles`]: IoT Core's rule for Cognito
//!   identities (the pool's role policy, and for authenticated ones an IoT policy too).
//! - [`user_pools`]: Cognito user pools' sign-ins and tokens, and their verification.
//!
//! Imports `registry`, `config`, `secrets` and `clock`; never the data plane.

pub(crate) mod authenticate;
pub(crate) mod certificate;
pub(crate) mod cognito;
pub(crate) mod connection_policy;
pub(crate) mod custom;
pub(crate) mod logins;
pub(crate) mod policy;
pub(crate) mod roles;
pub(crate) mod test_authorization;
pub(crate) mod user_pools;

use std::sync::Arc;
use std::time::SystemTime;

pub(crate) use authenticate::{Admission, Identity, Transport};
pub(crate) use connection_policy::{ConnectionPolicy, Denied};
pub(crate) use policy::PolicyStore;
pub use roles::CognitoPrincipal;

use iot::{Action, RequestContext, ResourceKind};

use serde_json::{json, Value};

use crate::config::{Config, ConfigError};
use crate::registry::{CertificateIdentity, Registry};
use crate::secrets::{access_key_pair, write_private};
use cognito::TemporaryCredentials;
use custom::CustomAuthorizers;

/// An access key's secret and who it stands for.
#[derive(Debug, Clone)]
pub struct Credential {
    pub secret: String,
    pub principal: String,
    /// Temporary credentials are valid only with their own session token…
    pub session_token: Option<String>,
    /// …and until they expire.
    pub expires_at: Option<SystemTime>,
    /// Credentials from an identity pool: the role rule decides (`roles`).
    pub cognito: Option<CognitoPrincipal>,
}

/// The access key the control plane accepts: `[admin]`, or a pair generated on first
/// start into `<data_dir>/admin-credentials` (mode 0600), which `pubsub iot` reads.
pub fn admin_credentials(config: &Config) -> std::io::Result<(String, String)> {
    if let Some((id, secret)) = config.admin_key() {
        return Ok((id.to_owned(), secret.to_owned()));
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

/// Everything that decides identity and rights: policies, the registry (certificates,
/// attachments, authorizers, identity pools, access keys), custom authorizer functions and
/// Cognito's temporary credentials. The control plane works on one of these whether the
/// broker runs or not (`pubsub iot` offline opens one on the data directory).
pub struct IdentityPlane {
    pub config: Arc<Config>,
    /// The admin key pair once read ([`admin_credentials`]): a WebSocket upgrade signed
    /// with it must not read a file.
    admin_key: std::sync::OnceLock<(String, String)>,
    pub policies: Arc<PolicyStore>,
    pub registry: Arc<Registry>,
    pub authorizers: CustomAuthorizers,
    pub temporary_credentials: TemporaryCredentials,
    /// User pools' challenges in flight and parsed signing keys.
    pub(crate) user_pools: user_pools::UserPools,
    /// The key of the broker's own OpenID tokens (Cognito Identity's), read once.
    open_id_key: logins::OpenIdKey,
}

impl IdentityPlane {
    /// Opens the registry in `config.data_dir` and applies the config's certificates,
    /// policies, authorizers and identity pools (what a starting broker does). Fails when
    /// one of them is unusable.
    pub fn open(config: Arc<Config>) -> Result<IdentityPlane, ConfigError> {
        let plane = IdentityPlane::load(config)?;
        plane.registry.apply_config(&plane.config)?;
        // User pools first: an identity pool may name one of them as a login provider.
        user_pools::apply_config_pools(&plane)?;
        cognito::apply_config_pools(&plane);
        plane.sync_registry();
        Ok(plane)
    }

    /// Opens the registry as it is, without applying the config's `[[certificates]]` and
    /// identity pools to it: for `pubsub iot` offline, which must change only what its
    /// command asks (a certificate revoked offline stays revoked).
    pub fn open_existing(config: Arc<Config>) -> Result<IdentityPlane, ConfigError> {
        let plane = IdentityPlane::load(config)?;
        plane.sync_registry();
        Ok(plane)
    }

    /// The registry file and the config's policies and authorizers, not yet synced.
    fn load(config: Arc<Config>) -> Result<IdentityPlane, ConfigError> {
        let policies = Arc::new(PolicyStore::from_config(&config)?);
        let registry = Arc::new(
            Registry::open(&config.data_dir)
                .map_err(|error| ConfigError::Invalid(error.to_string()))?,
        );
        let authorizers = CustomAuthorizers::from_config(&config)?;
        Ok(IdentityPlane {
            config,
            admin_key: std::sync::OnceLock::new(),
            policies,
            registry,
            authorizers,
            temporary_credentials: TemporaryCredentials::default(),
            user_pools: user_pools::UserPools::default(),
            open_id_key: logins::OpenIdKey::default(),
        })
    }

    /// The control plane's admin key pair ([`admin_credentials`], read once).
    pub fn admin_key(&self) -> std::io::Result<&(String, String)> {
        if let Some(key) = self.admin_key.get() {
            return Ok(key);
        }
        let key = admin_credentials(&self.config)?;
        Ok(self.admin_key.get_or_init(|| key))
    }

    /// Picks up what `pubsub iot` (another process) changed in the registry since the last
    /// look: policies, attachments, authorizers.
    pub fn refresh_registry(&self) {
        match self.registry.reload_if_changed() {
            Ok(true) => self.sync_registry(),
            Ok(false) => {}
            Err(error) => tracing::error!(%error, "registry unreadable"),
        }
    }

    /// Hands the registry's current state to the policy store and the authorizers.
    pub fn sync_registry(&self) {
        let (policies, attachments) = self.registry.dynamic_policies();
        self.policies.replace_dynamic(policies, attachments);
        self.policies.replace_things(self.registry.things());
        self.policies
            .replace_pool_roles(&self.registry.identity_pools());
        self.authorizers.sync(
            &self.registry.authorizers(),
            self.registry.default_authorizer(),
        );
    }

    /// What an access key stands for: `[[credentials]]` first, then keys made by
    /// `pubsub iot create-access-key`, then temporary credentials from the Cognito
    /// emulation (valid only with their session token and until they expire).
    pub fn credential(&self, access_key_id: &str) -> Option<Credential> {
        self.refresh_registry();
        let long_lived = |(secret, principal): (String, String)| Credential {
            secret,
            principal,
            session_token: None,
            expires_at: None,
            cognito: None,
        };
        self.config
            .credentials
            .iter()
            .find(|credential| credential.access_key_id == access_key_id)
            .map(|credential| {
                long_lived((
                    credential.secret_access_key.clone(),
                    credential.principal.clone(),
                ))
            })
            .or_else(|| self.registry.credential(access_key_id).map(long_lived))
            .or_else(|| {
                self.temporary_credentials
                    .get(access_key_id)
                    .map(|temporary| Credential {
                        secret: temporary.secret_access_key,
                        principal: temporary.identity_id,
                        session_token: Some(temporary.session_token),
                        expires_at: Some(temporary.expires_at),
                        cognito: Some(temporary.cognito),
                    })
            })
    }

    /// The credential a SigV4 signature by `access_key_id` must verify against, after the
    /// checks the signature cannot make: the key is known, and temporary credentials come
    /// with their own session token (which is not signed in a presigned URL) and have not
    /// expired. `Err` is the refusal's reason, naming the key. One rule for WebSocket
    /// upgrades and iot-data REST calls.
    pub fn signing_credential(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
    ) -> Result<Credential, String> {
        let Some(credential) = self.credential(access_key_id) else {
            return Err(format!("SigV4: unknown access key {access_key_id}"));
        };
        if let Some(expected) = &credential.session_token {
            if session_token != Some(expected.as_str()) {
                return Err(format!(
                    "SigV4 (access key {access_key_id}): the session token is missing or is not the one issued with these temporary credentials"
                ));
            }
        }
        if let Some(expires_at) = credential.expires_at {
            if SystemTime::now() >= expires_at {
                return Err(format!(
                    "SigV4 (access key {access_key_id}): the temporary credentials expired"
                ));
            }
        }
        Ok(credential)
    }

    /// One decision for a principal outside any connection (an iot-data REST call signed
    /// by its access key): its attached policies — or, for an identity pool's credentials,
    /// IoT Core's rule for Cognito identities (`roles`) — with the facts a SigV4 WebSocket
    /// connection of the same principal has (its identity id as the Cognito identity).
    /// `Err` carries the decision's reason for the log.
    pub fn authorize(
        &self,
        principal: &str,
        cognito: Option<&CognitoPrincipal>,
        action: Action,
        kind: ResourceKind,
        name: &str,
    ) -> Result<(), Box<Denied>> {
        let mut context = RequestContext::default();
        context.facts_mut().cognito_identity_id = Some(principal.to_owned());
        let mut policy = ConnectionPolicy::new(self.policies.clone(), principal, context);
        if let Some(cognito) = cognito {
            policy = policy.with_cognito(cognito);
        }
        self.decided(principal, policy.decide(action, kind, name))
    }

    /// The same for a request made over mutual TLS (iot-data on ALPN `x-amzn-http-ca`):
    /// the certificate's policies, with the facts an MQTT connection presenting it has
    /// (`${iot:Certificate.Subject.…}`, `…Issuer.…`).
    pub fn authorize_certificate(
        &self,
        certificate: &CertificateIdentity,
        action: Action,
        kind: ResourceKind,
        name: &str,
    ) -> Result<(), Box<Denied>> {
        let mut context = RequestContext::default();
        certificate.add_facts(&mut context);
        let principal = &certificate.certificate_id;
        let decided = ConnectionPolicy::new(self.policies.clone(), principal, context)
            .decide(action, kind, name);
        self.decided(principal, decided)
    }

    fn decided(&self, principal: &str, decided: Denied) -> Result<(), Box<Denied>> {
        if decided.decision.is_allowed() {
            Ok(())
        } else {
            self.policies
                .metrics
                .policy_refused(decided.refusal(None, principal));
            Err(Box::new(decided))
        }
    }
}
