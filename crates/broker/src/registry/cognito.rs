//! Cognito Identity's durable state beyond pools and identity ids: which login (provider
//! and subject) has which identity id — the same user always gets the same one — which
//! identities are authenticated, and the key the broker signs its OpenID tokens with.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Registry, RegistryError};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CognitoLogins {
    /// `<pool id> <provider> <subject>` → identity id.
    #[serde(default)]
    logins: BTreeMap<String, String>,
    /// Identity ids with at least one login.
    #[serde(default)]
    authenticated_identities: BTreeSet<String>,
    /// The broker's key for Cognito Identity's OpenID tokens (GetOpenIdToken,
    /// GetOpenIdTokenForDeveloperIdentity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open_id_signing_key: Option<SigningKeyRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyRecord {
    pub kid: String,
    /// PKCS#8 PEM.
    pub private_key_pem: String,
}

fn login_key(pool_id: &str, provider: &str, subject: &str) -> String {
    // Spaces are in none of the three (pool ids, provider names and subjects are URL-ish
    // or opaque ids; a subject with spaces still keys uniquely: it is last).
    format!("{pool_id} {provider} {subject}")
}

impl Registry {
    /// The identity id of a login in a pool: the one it got before, else `new_id`
    /// (recorded as an authenticated identity of the pool). `Ok((id, created))`.
    pub fn identity_of_login(
        &self,
        pool_id: &str,
        provider: &str,
        subject: &str,
        new_id: &str,
    ) -> Result<(String, bool), RegistryError> {
        let key = login_key(pool_id, provider, subject);
        if let Some(known) = self.login(&key) {
            return Ok((known, false));
        }
        self.change(|state| {
            if let Some(known) = state.cognito_logins.logins.get(&key) {
                return Ok((known.clone(), false));
            }
            state
                .cognito_logins
                .logins
                .insert(key.clone(), new_id.to_owned());
            state
                .cognito_logins
                .authenticated_identities
                .insert(new_id.to_owned());
            state
                .identities
                .insert(new_id.to_owned(), pool_id.to_owned());
            Ok((new_id.to_owned(), true))
        })
    }

    /// The identity id a login already has, if any.
    pub fn identity_of_known_login(
        &self,
        pool_id: &str,
        provider: &str,
        subject: &str,
    ) -> Option<String> {
        self.login(&login_key(pool_id, provider, subject))
    }

    /// Links a login to an existing identity (which becomes authenticated). Err when the
    /// login already belongs to another identity.
    pub fn link_login(
        &self,
        pool_id: &str,
        provider: &str,
        subject: &str,
        identity_id: &str,
    ) -> Result<(), RegistryError> {
        let key = login_key(pool_id, provider, subject);
        self.change(|state| {
            match state.cognito_logins.logins.get(&key) {
                Some(known) if known != identity_id => {
                    return Err(RegistryError::AlreadyExists(format!(
                        "login {provider} {subject} (identity {known})"
                    )))
                }
                _ => {}
            }
            state
                .cognito_logins
                .logins
                .insert(key, identity_id.to_owned());
            state
                .cognito_logins
                .authenticated_identities
                .insert(identity_id.to_owned());
            Ok(())
        })
    }

    fn login(&self, key: &str) -> Option<String> {
        let _ = self.reload_if_changed();
        self.state.lock().0.cognito_logins.logins.get(key).cloned()
    }

    /// Whether an identity has a login (its credentials are authenticated ones).
    pub fn is_authenticated_identity(&self, identity_id: &str) -> bool {
        let _ = self.reload_if_changed();
        self.state
            .lock()
            .0
            .cognito_logins
            .authenticated_identities
            .contains(identity_id)
    }

    /// Sets an identity pool's roles (SetIdentityPoolRoles): `roles` replaces them.
    pub fn set_identity_pool_roles(
        &self,
        pool_id: &str,
        roles: BTreeMap<String, String>,
    ) -> Result<(), RegistryError> {
        self.change(|state| {
            let pool = state
                .identity_pools
                .get_mut(pool_id)
                .ok_or_else(|| RegistryError::NotFound(format!("identity pool {pool_id}")))?;
            pool.roles = roles;
            Ok(())
        })
    }

    /// The broker's OpenID token key, made by `make` (and kept) on first use.
    pub fn open_id_signing_key(
        &self,
        make: impl FnOnce() -> SigningKeyRecord,
    ) -> Result<SigningKeyRecord, RegistryError> {
        let _ = self.reload_if_changed();
        if let Some(key) = &self.state.lock().0.cognito_logins.open_id_signing_key {
            return Ok(key.clone());
        }
        // Made outside the registry's lock (an RSA key takes a while); a key another
        // process made meanwhile wins.
        let made = make();
        self.change(|state| {
            Ok(state
                .cognito_logins
                .open_id_signing_key
                .get_or_insert(made)
                .clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_login_gets_the_same_identity_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let (first, created) = registry
            .identity_of_login("pool", "login.example", "alice", "id-1")
            .unwrap();
        assert_eq!((first.as_str(), created), ("id-1", true));
        let (again, created) = registry
            .identity_of_login("pool", "login.example", "alice", "id-2")
            .unwrap();
        assert_eq!((again.as_str(), created), ("id-1", false));
        // Another pool, another identity.
        let (other, _) = registry
            .identity_of_login("other-pool", "login.example", "alice", "id-3")
            .unwrap();
        assert_eq!(other, "id-3");
        assert!(registry.is_authenticated_identity("id-1"));
        assert_eq!(registry.identity("id-1").as_deref(), Some("pool"));
        // A second login links to the identity; it cannot be taken by another.
        registry
            .link_login("pool", "accounts.example", "a-1", "id-1")
            .unwrap();
        assert!(registry
            .link_login("pool", "accounts.example", "a-1", "id-9")
            .is_err());
        let key = registry
            .open_id_signing_key(|| SigningKeyRecord {
                kid: "k".into(),
                private_key_pem: "pem".into(),
            })
            .unwrap();
        drop(registry);

        let reopened = Registry::open(dir.path()).unwrap();
        assert_eq!(
            reopened.identity_of_known_login("pool", "login.example", "alice"),
            Some("id-1".into())
        );
        assert_eq!(
            reopened.identity_of_known_login("pool", "accounts.example", "a-1"),
            Some("id-1".into())
        );
        assert!(reopened.is_authenticated_identity("id-1"));
        assert!(!reopened.is_authenticated_identity("id-unknown"));
        let kept = reopened
            .open_id_signing_key(|| panic!("the key is kept"))
            .unwrap();
        assert_eq!(kept.kid, key.kid);
    }
}
