//! Cognito Identity's side of authentication: the temporary credentials that the SigV4
//! WebSocket verifier accepts for their identity, and the configured identity pools. The
//! Cognito API itself (GetId, GetCredentialsForIdentity…) is in `control::cognito`.
//!
//! Temporary credentials live in memory (a restart invalidates them, as an expiry would).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use super::logins::oidc_provider_arn;
use super::roles::{role_arn, CognitoPrincipal};
use super::IdentityPlane;
use crate::config::UserPoolProviderConfig;
use crate::registry::{CognitoProviderRecord, IdentityPoolRecord, AUTHENTICATED, UNAUTHENTICATED};
use crate::secrets::{access_key_pair, random_alphanumeric, uuid_shaped};

/// Temporary credentials handed out by GetCredentialsForIdentity.
#[derive(Debug, Clone)]
pub struct TemporaryCredential {
    pub secret_access_key: String,
    pub session_token: String,
    pub identity_id: String,
    /// The pool, and whether a verified login got them: which role decides.
    pub cognito: CognitoPrincipal,
    pub expires_at: SystemTime,
}

#[derive(Default)]
pub struct TemporaryCredentials {
    by_access_key: Mutex<HashMap<String, TemporaryCredential>>,
}

impl TemporaryCredentials {
    pub fn get(&self, access_key_id: &str) -> Option<TemporaryCredential> {
        let mut credentials = self.by_access_key.lock();
        let now = SystemTime::now();
        // Forget long-expired ones so the map does not grow without bound; recently
        // expired ones are kept so their refusal can say "expired".
        credentials.retain(|_, credential| credential.expires_at + Duration::from_secs(3600) > now);
        credentials.get(access_key_id).cloned()
    }

    pub(crate) fn issue(
        &self,
        identity_id: &str,
        cognito: CognitoPrincipal,
        ttl: Duration,
    ) -> (String, TemporaryCredential) {
        let (access_key_id, secret_access_key) = access_key_pair("ASIA");
        let credential = TemporaryCredential {
            secret_access_key,
            session_token: format!("pubsub-session/{}", random_alphanumeric(64)),
            identity_id: identity_id.to_owned(),
            cognito,
            expires_at: SystemTime::now() + ttl,
        };
        let mut credentials = self.by_access_key.lock();
        let now = SystemTime::now();
        credentials.retain(|_, kept| kept.expires_at + Duration::from_secs(3600) > now);
        credentials.insert(access_key_id.clone(), credential.clone());
        (access_key_id, credential)
    }
}

/// A pool's user pool provider as the registry keeps it: a `[[user_pools]]` entry named
/// resolves to its provider name and client id (made at its first start).
fn user_pool_provider(
    broker: &IdentityPlane,
    declared: &UserPoolProviderConfig,
) -> Option<CognitoProviderRecord> {
    let Some(name) = &declared.user_pool else {
        return Some(CognitoProviderRecord {
            provider_name: declared.provider_name.clone()?,
            client_id: declared.client_id.clone(),
        });
    };
    let Some(pool) = broker.registry.user_pool_named(name) else {
        tracing::error!(user_pool = %name, "the identity pool's user pool does not exist");
        return None;
    };
    let client_id = match &declared.client {
        Some(client) => pool
            .clients
            .values()
            .find(|c| &c.client_name == client)
            .map(|c| c.client_id.clone()),
        None => declared.client_id.clone(),
    };
    Some(CognitoProviderRecord {
        provider_name: pool.provider_name(),
        client_id,
    })
}

/// Makes sure every `[[identity_pools]]` entry exists in the registry (keeping the id a
/// previous start gave it), with the roles its role policies define and its providers.
pub(crate) fn apply_config_pools(broker: &IdentityPlane) {
    let config = &broker.config;
    for declared in &config.identity_pools {
        let mut roles = std::collections::BTreeMap::new();
        for (authenticated, key) in [(false, UNAUTHENTICATED), (true, AUTHENTICATED)] {
            if declared.role_policy(authenticated) != (None, None) {
                let name = declared.role_name(authenticated);
                roles.insert(key.to_owned(), role_arn(&config.account_id, &name));
            }
        }
        let record = IdentityPoolRecord {
            identity_pool_id: format!("{}:{}", config.region, uuid_shaped()),
            identity_pool_name: declared.name.clone(),
            allow_unauthenticated: declared.allow_unauthenticated,
            credentials_ttl_secs: declared.credentials_ttl.as_secs().max(1),
            roles,
            developer_provider_name: declared.developer_provider_name.clone(),
            cognito_identity_providers: declared
                .user_pools
                .iter()
                .filter_map(|user_pool| user_pool_provider(broker, user_pool))
                .collect(),
            open_id_connect_provider_arns: declared
                .openid_providers
                .iter()
                .filter_map(|issuer| {
                    config
                        .openid_providers
                        .iter()
                        .find(|provider| &provider.issuer == issuer)
                })
                .map(|provider| oidc_provider_arn(&config.account_id, provider.provider_name()))
                .collect(),
        };
        if record.developer_provider_name.is_some() {
            super::logins::prepare_open_id_key(&broker.registry);
        }
        if let Err(error) = broker.registry.ensure_identity_pool(record) {
            tracing::error!(%error, pool = %declared.name, "cannot record the identity pool");
        }
    }
}
