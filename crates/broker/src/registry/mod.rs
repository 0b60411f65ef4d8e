//! The certificate registry, with IoT Core's semantics: certificates and CA certificates
//! by id (lowercase hex SHA-256 of the DER), their status, and the policies attached to
//! them, plus access keys made by `create-access-key`, and things (`things.rs`) with the
//! principals attached to them, and Cognito user pools (`user_pools.rs`).
//!
//! Kept in `<data_dir>/registry.json`, not in the redb store, because `pubsub iot …`
//! changes it from another process while the broker runs and redb locks its file to one
//! process. Every change is written to a new file, fsync'd and renamed over the old one
//! (crash-safe), and the broker rereads the file when its modification time changes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls_pki_types::UnixTime;
use serde::{Deserialize, Serialize};

use crate::config::{CertificateStatus, Config, ConfigError};

mod cognito;
mod records;
mod things;
mod user_pools;
mod verify;
use verify::verifying_ca;
mod x509;
pub use cognito::SigningKeyRecord;
pub use records::*;
pub use things::{
    is_certificate_id, principal_of_target, validate_thing_name, AttributePayload, NewThing,
    ThingUpdate,
};
pub use user_pools::{
    now_secs, refresh_token_digest, PasswordPolicy, SignInSession, UserPoolClientRecord,
    UserPoolRecord, UserRecord, UserStatus, DEFAULT_AUTH_FLOWS, KNOWN_AUTH_FLOWS,
};
use x509::der_of_pem;
pub use x509::{certificate_id_of_pem, identity_of_der, CertificateIdentity};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistryState {
    certificates: BTreeMap<String, CertificateRecord>,
    ca_certificates: BTreeMap<String, CaRecord>,
    /// Principal (certificate id, identity id, …) → attached policy names.
    attachments: BTreeMap<String, Vec<String>>,
    /// Access keys made by `create-access-key`, by access key id.
    #[serde(default)]
    credentials: BTreeMap<String, CredentialRecord>,
    /// Policies made through the API, by name.
    #[serde(default)]
    policies: BTreeMap<String, PolicyRecord>,
    /// Custom authorizers made through the API, by name.
    #[serde(default)]
    authorizers: BTreeMap<String, AuthorizerRecord>,
    #[serde(default)]
    default_authorizer: Option<String>,
    /// Cognito identity pools, by id.
    #[serde(default)]
    identity_pools: BTreeMap<String, IdentityPoolRecord>,
    /// Cognito identity id → its pool's id.
    #[serde(default)]
    identities: BTreeMap<String, String>,
    /// Authenticated identities (`cognito.rs`): logins and the broker's token key.
    #[serde(default, flatten)]
    cognito_logins: cognito::CognitoLogins,
    /// Things, by name.
    #[serde(default)]
    things: BTreeMap<String, ThingRecord>,
    /// Cognito user pools, by id.
    #[serde(default)]
    user_pools: BTreeMap<String, UserPoolRecord>,
}

pub struct Registry {
    path: PathBuf,
    state: Mutex<(RegistryState, Option<SystemTime>)>,
    /// Certificates registered on first use (inside a TLS handshake) and not yet saved,
    /// with the policies their CA gave them: the saver merges them into the file.
    auto_registered: Mutex<Vec<(CertificateRecord, Vec<String>)>>,
    /// A save of `auto_registered` is asked for; a saver thread runs or is starting.
    save_requested: std::sync::atomic::AtomicBool,
}

impl Registry {
    /// Opens (or starts) `<data_dir>/registry.json`.
    pub fn open(data_dir: &Path) -> Result<Registry, RegistryError> {
        let path = data_dir.join("registry.json");
        let registry = Registry {
            path,
            state: Mutex::new((RegistryState::default(), None)),
            auto_registered: Mutex::new(Vec::new()),
            save_requested: std::sync::atomic::AtomicBool::new(false),
        };
        registry.reload_if_changed()?;
        Ok(registry)
    }

    /// Applies the config's `[[certificates]]`, `[[ca_certificates]]` and `[[things]]`
    /// (idempotently) and saves.
    pub fn apply_config(&self, config: &Config) -> Result<(), ConfigError> {
        let invalid = |error: RegistryError| ConfigError::Invalid(error.to_string());
        let mut guard = self.state.lock();
        let state = &mut guard.0;
        for ca in &config.ca_certificates {
            let pem = read_pem(&ca.pem_file).map_err(invalid)?;
            let id = certificate_id_of_pem(&pem).map_err(invalid)?;
            state.ca_certificates.insert(
                id.clone(),
                CaRecord {
                    certificate_id: id,
                    certificate_pem: pem,
                    status: ca.status,
                    auto_register: ca.auto_register,
                    policies: ca.policies.clone(),
                },
            );
        }
        for certificate in &config.certificates {
            let pem = read_pem(&certificate.pem_file).map_err(invalid)?;
            let id = certificate_id_of_pem(&pem).map_err(invalid)?;
            let ca = issuing_ca(state, &pem);
            let record =
                state
                    .certificates
                    .entry(id.clone())
                    .or_insert_with(|| CertificateRecord {
                        certificate_id: id.clone(),
                        certificate_pem: pem.clone(),
                        status: certificate.status,
                        ca_certificate_id: ca,
                        creation_date: unix_now(),
                    });
            record.status = certificate.status;
            attach_names(state, &id, &certificate.policies);
        }
        for thing in &config.things {
            things::declare(state, thing, crate::secrets::uuid_shaped).map_err(|error| {
                ConfigError::Invalid(format!("[[things]] {:?}: {error}", thing.name))
            })?;
        }
        if config.ca_certificates.is_empty()
            && config.certificates.is_empty()
            && config.things.is_empty()
        {
            return Ok(());
        }
        self.save_locked(&mut guard).map_err(invalid)
    }

    /// The policies made through the API (parsed; one that no longer parses is logged and
    /// left out) and every attachment, for the policy store's registry layer.
    #[allow(clippy::type_complexity)]
    pub fn dynamic_policies(
        &self,
    ) -> (
        HashMap<String, Arc<iot::Policy>>,
        HashMap<String, Vec<String>>,
    ) {
        let guard = self.state.lock();
        let policies = guard
            .0
            .policies
            .values()
            .filter_map(|record| {
                match iot::Policy::parse(&record.policy_name, &record.policy_document) {
                    Ok(policy) => Some((record.policy_name.clone(), Arc::new(policy))),
                    Err(error) => {
                        tracing::error!(%error, "stored policy no longer parses; ignored");
                        None
                    }
                }
            })
            .collect();
        let attachments = guard
            .0
            .attachments
            .iter()
            .map(|(principal, names)| (principal.clone(), names.clone()))
            .collect();
        (policies, attachments)
    }

    /// Runs `change` on the registry's state and saves it (atomically, fsync'd).
    fn change<R>(
        &self,
        change: impl FnOnce(&mut RegistryState) -> Result<R, RegistryError>,
    ) -> Result<R, RegistryError> {
        self.reload_if_changed()?;
        let mut guard = self.state.lock();
        let result = change(&mut guard.0)?;
        self.save_locked(&mut guard)?;
        Ok(result)
    }

    pub fn create_policy(&self, name: &str, document: &str) -> Result<PolicyRecord, RegistryError> {
        self.change(|state| {
            if state.policies.contains_key(name) {
                return Err(RegistryError::AlreadyExists(format!("policy {name}")));
            }
            let record = PolicyRecord {
                policy_name: name.to_owned(),
                policy_document: document.to_owned(),
                creation_date: unix_now(),
            };
            state.policies.insert(name.to_owned(), record.clone());
            Ok(record)
        })
    }

    pub fn policy(&self, name: &str) -> Option<PolicyRecord> {
        let _ = self.reload_if_changed();
        self.state.lock().0.policies.get(name).cloned()
    }

    pub fn policies(&self) -> Vec<PolicyRecord> {
        let _ = self.reload_if_changed();
        self.state.lock().0.policies.values().cloned().collect()
    }

    /// Deletes an API-made policy; refused while it is attached anywhere.
    pub fn delete_policy(&self, name: &str) -> Result<(), RegistryError> {
        self.change(|state| {
            if !state.policies.contains_key(name) {
                return Err(RegistryError::NotFound(format!("policy {name}")));
            }
            if state
                .attachments
                .values()
                .any(|names| names.iter().any(|n| n == name))
            {
                return Err(RegistryError::Conflict(format!(
                    "policy {name} is attached to a target; detach it first"
                )));
            }
            state.policies.remove(name);
            Ok(())
        })
    }

    /// Detaches a policy from a principal; `false` when it was not attached.
    pub fn detach(&self, principal: &str, policy: &str) -> Result<bool, RegistryError> {
        self.change(|state| {
            let Some(names) = state.attachments.get_mut(principal) else {
                return Ok(false);
            };
            let before = names.len();
            names.retain(|name| name != policy);
            let detached = names.len() != before;
            if names.is_empty() {
                state.attachments.remove(principal);
            }
            Ok(detached)
        })
    }

    /// Deletes a certificate, which must not be ACTIVE (as IoT Core requires).
    pub fn delete_certificate(&self, id: &str) -> Result<(), RegistryError> {
        self.change(|state| {
            let record = state
                .certificates
                .get(id)
                .ok_or_else(|| RegistryError::NotFound(format!("certificate {id}")))?;
            if record.status == CertificateStatus::Active {
                return Err(RegistryError::WrongState(format!(
                    "certificate {id} is ACTIVE; deactivate it first"
                )));
            }
            if state
                .attachments
                .get(id)
                .is_some_and(|names| !names.is_empty())
            {
                return Err(RegistryError::Conflict(format!(
                    "certificate {id} has policies attached; detach them first"
                )));
            }
            if state
                .things
                .values()
                .any(|thing| thing.principals.iter().any(|p| p == id))
            {
                return Err(RegistryError::Conflict(format!(
                    "Things must be detached before deletion: certificate {id} is attached to a thing"
                )));
            }
            state.certificates.remove(id);
            state.attachments.remove(id);
            Ok(())
        })
    }

    pub fn put_authorizer(&self, record: AuthorizerRecord) -> Result<(), RegistryError> {
        self.change(|state| {
            state
                .authorizers
                .insert(record.authorizer_name.clone(), record);
            Ok(())
        })
    }

    pub fn authorizer(&self, name: &str) -> Option<AuthorizerRecord> {
        let _ = self.reload_if_changed();
        self.state.lock().0.authorizers.get(name).cloned()
    }

    pub fn authorizers(&self) -> Vec<AuthorizerRecord> {
        let _ = self.reload_if_changed();
        self.state.lock().0.authorizers.values().cloned().collect()
    }

    pub fn delete_authorizer(&self, name: &str) -> Result<(), RegistryError> {
        self.change(|state| {
            state
                .authorizers
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| RegistryError::NotFound(format!("authorizer {name}")))
        })
    }

    pub fn set_default_authorizer(&self, name: &str) -> Result<(), RegistryError> {
        self.change(|state| {
            state.default_authorizer = Some(name.to_owned());
            Ok(())
        })
    }

    pub fn default_authorizer(&self) -> Option<String> {
        self.state.lock().0.default_authorizer.clone()
    }

    /// Adds a pool, or updates the settings of the pool with the same name (config pools
    /// keep the id their first start gave them).
    pub fn ensure_identity_pool(&self, record: IdentityPoolRecord) -> Result<(), RegistryError> {
        self.change(|state| {
            let existing = state
                .identity_pools
                .values_mut()
                .find(|pool| pool.identity_pool_name == record.identity_pool_name);
            match existing {
                Some(pool) => {
                    pool.allow_unauthenticated = record.allow_unauthenticated;
                    pool.credentials_ttl_secs = record.credentials_ttl_secs;
                    // What the config declares wins; roles it leaves out stay as
                    // SetIdentityPoolRoles set them.
                    pool.roles.extend(record.roles);
                    if record.developer_provider_name.is_some() {
                        pool.developer_provider_name = record.developer_provider_name;
                    }
                    if !record.cognito_identity_providers.is_empty() {
                        pool.cognito_identity_providers = record.cognito_identity_providers;
                    }
                    if !record.open_id_connect_provider_arns.is_empty() {
                        pool.open_id_connect_provider_arns = record.open_id_connect_provider_arns;
                    }
                }
                None => {
                    state
                        .identity_pools
                        .insert(record.identity_pool_id.clone(), record);
                }
            }
            Ok(())
        })
    }

    pub fn identity_pool(&self, id: &str) -> Option<IdentityPoolRecord> {
        let _ = self.reload_if_changed();
        self.state.lock().0.identity_pools.get(id).cloned()
    }

    pub fn identity_pools(&self) -> Vec<IdentityPoolRecord> {
        let _ = self.reload_if_changed();
        self.state
            .lock()
            .0
            .identity_pools
            .values()
            .cloned()
            .collect()
    }

    pub fn add_identity(&self, identity_id: &str, pool_id: &str) -> Result<(), RegistryError> {
        self.change(|state| {
            state
                .identities
                .insert(identity_id.to_owned(), pool_id.to_owned());
            Ok(())
        })
    }

    /// The pool of an identity id.
    pub fn identity(&self, identity_id: &str) -> Option<String> {
        let _ = self.reload_if_changed();
        self.state.lock().0.identities.get(identity_id).cloned()
    }

    /// Registers a CA certificate (RegisterCACertificate).
    pub fn register_ca(
        &self,
        pem: &str,
        status: CertificateStatus,
        auto_register: bool,
    ) -> Result<CaRecord, RegistryError> {
        let id = certificate_id_of_pem(pem)?;
        self.change(|state| {
            if state.ca_certificates.contains_key(&id) {
                return Err(RegistryError::AlreadyExists(id.clone()));
            }
            let record = CaRecord {
                certificate_id: id.clone(),
                certificate_pem: pem.to_owned(),
                status,
                auto_register,
                policies: Vec::new(),
            };
            state.ca_certificates.insert(id.clone(), record.clone());
            Ok(record)
        })
    }

    pub fn update_ca(
        &self,
        id: &str,
        status: Option<CertificateStatus>,
        auto_register: Option<bool>,
    ) -> Result<(), RegistryError> {
        self.change(|state| {
            let record = state
                .ca_certificates
                .get_mut(id)
                .ok_or_else(|| RegistryError::NotFound(format!("certificate {id}")))?;
            if let Some(status) = status {
                record.status = status;
            }
            if let Some(auto_register) = auto_register {
                record.auto_register = auto_register;
            }
            Ok(())
        })
    }

    /// `<data_dir>/registry.json`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Saves the certificates registered on first use, on a thread of its own: the caller
    /// is a TLS handshake. One saver at a time; a request while it runs makes it go again.
    pub fn save_soon(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.save_requested.swap(true, Ordering::AcqRel) {
            return;
        }
        let registry = self.clone();
        std::thread::spawn(move || {
            while registry.save_requested.swap(false, Ordering::AcqRel) {
                if let Err(error) = registry.save_auto_registered() {
                    tracing::warn!(%error, "could not save certificates registered on first use; they stay registered in memory");
                }
            }
        });
    }

    /// Writes what `save_soon` was asked to save, now (shutdown).
    pub fn flush(&self) {
        if let Err(error) = self.save_auto_registered() {
            tracing::warn!(%error, "could not save certificates registered on first use");
        }
    }

    /// Merges the certificates registered on first use into the file. If another process
    /// changed the file since it was read, that version is read first (its change is kept)
    /// and the next look reloads it, so the policy store sees it too.
    fn save_auto_registered(&self) -> Result<(), RegistryError> {
        let pending = std::mem::take(&mut *self.auto_registered.lock());
        if pending.is_empty() {
            return Ok(());
        }
        let mut guard = self.state.lock();
        let on_disk = self.read_if_changed(guard.1)?;
        let merged = on_disk.is_some();
        if let Some((state, _)) = on_disk {
            guard.0 = state;
            for (record, policies) in pending {
                let id = record.certificate_id.clone();
                guard.0.certificates.entry(id.clone()).or_insert(record);
                attach_names(&mut guard.0, &id, &policies);
            }
        }
        self.save_locked(&mut guard)?;
        if merged {
            guard.1 = None;
        }
        Ok(())
    }

    /// Registers a certificate (register-certificate, create-keys-and-certificate).
    pub fn register(
        &self,
        pem: &str,
        status: CertificateStatus,
    ) -> Result<CertificateRecord, RegistryError> {
        let id = certificate_id_of_pem(pem)?;
        self.change(|state| {
            if state.certificates.contains_key(&id) {
                return Err(RegistryError::AlreadyExists(id.clone()));
            }
            let record = CertificateRecord {
                certificate_id: id.clone(),
                certificate_pem: pem.to_owned(),
                status,
                ca_certificate_id: issuing_ca(state, pem),
                creation_date: unix_now(),
            };
            state.certificates.insert(id.clone(), record.clone());
            Ok(record)
        })
    }

    pub fn update_status(&self, id: &str, status: CertificateStatus) -> Result<(), RegistryError> {
        self.change(|state| {
            let record = state
                .certificates
                .get_mut(id)
                .ok_or_else(|| RegistryError::NotFound(format!("certificate {id}")))?;
            record.status = status;
            Ok(())
        })
    }

    pub fn describe(&self, id: &str) -> Result<CertificateRecord, RegistryError> {
        self.reload_if_changed()?;
        self.state
            .lock()
            .0
            .certificates
            .get(id)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(format!("certificate {id}")))
    }

    pub fn list(&self) -> Vec<CertificateRecord> {
        let _ = self.reload_if_changed();
        self.state.lock().0.certificates.values().cloned().collect()
    }

    /// Attaches a policy by name to a principal and saves.
    pub fn attach(&self, principal: &str, policy: &str) -> Result<(), RegistryError> {
        self.change(|state| {
            attach_names(state, principal, &[policy.to_owned()]);
            Ok(())
        })
    }

    /// Stores a new access key pair for a principal (an identity id).
    pub fn create_access_key(&self, principal: &str) -> Result<CredentialRecord, RegistryError> {
        let (access_key_id, secret_access_key) = crate::secrets::access_key_pair("AKIA");
        let record = CredentialRecord {
            access_key_id,
            secret_access_key,
            principal: principal.to_owned(),
            creation_date: unix_now(),
        };
        self.change(|state| {
            state
                .credentials
                .insert(record.access_key_id.clone(), record.clone());
            Ok(record)
        })
    }

    /// `(secret, principal)` of a stored access key.
    pub fn credential(&self, access_key_id: &str) -> Option<(String, String)> {
        self.state
            .lock()
            .0
            .credentials
            .get(access_key_id)
            .map(|record| (record.secret_access_key.clone(), record.principal.clone()))
    }

    #[cfg(test)]
    pub fn attached(&self, principal: &str) -> Vec<String> {
        self.state
            .lock()
            .0
            .attachments
            .get(principal)
            .cloned()
            .unwrap_or_default()
    }

    /// Rereads the file when its modification time differs from the one last read;
    /// `true` when it did.
    pub fn reload_if_changed(&self) -> Result<bool, RegistryError> {
        let mut guard = self.state.lock();
        match self.read_if_changed(guard.1)? {
            Some(read) => {
                *guard = read;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The file's contents and modification time, if it changed since `known` (`None`:
    /// unchanged, or no file yet).
    fn read_if_changed(
        &self,
        known: Option<SystemTime>,
    ) -> Result<Option<(RegistryState, Option<SystemTime>)>, RegistryError> {
        let modified = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata.modified().ok(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RegistryError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        if modified.is_some() && known == modified {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&self.path).map_err(|source| RegistryError::Io {
            path: self.path.clone(),
            source,
        })?;
        let state = serde_json::from_str(&text).map_err(|error| RegistryError::Corrupt {
            path: self.path.clone(),
            message: error.to_string(),
        })?;
        Ok(Some((state, modified)))
    }

    fn save_locked(
        &self,
        guard: &mut (RegistryState, Option<SystemTime>),
    ) -> Result<(), RegistryError> {
        let io = |source| RegistryError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(&guard.0).expect("registry serializes");
        let temporary = self.path.with_extension("json.tmp");
        // Write, fsync, rename, fsync the directory: after a crash the registry is either
        // the old file or the new one, never a torn one, and a change that returned is kept.
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temporary).map_err(io)?;
            file.write_all(text.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&temporary, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(io)?;
        }
        guard.1 = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        Ok(())
    }
}

fn read_pem(path: &Path) -> Result<String, RegistryError> {
    let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    der_of_pem(&text)?;
    Ok(text)
}

fn attach_names(state: &mut RegistryState, principal: &str, policies: &[String]) {
    let attached = state.attachments.entry(principal.to_owned()).or_default();
    for policy in policies {
        if !attached.contains(policy) {
            attached.push(policy.clone());
        }
    }
}

/// The registered CA that signed a certificate being registered, for its status later.
fn issuing_ca(state: &RegistryState, pem: &str) -> Option<String> {
    let der = der_of_pem(pem).ok()?;
    verifying_ca(state, &der, &[], UnixTime::now()).map(|ca| ca.certificate_id.clone())
}

pub fn status_name(status: CertificateStatus) -> &'static str {
    match status {
        CertificateStatus::Active => "ACTIVE",
        CertificateStatus::Inactive => "INACTIVE",
        CertificateStatus::Revoked => "REVOKED",
        CertificateStatus::PendingActivation => "PENDING_ACTIVATION",
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
