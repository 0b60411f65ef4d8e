//! The records the registry keeps, as `registry.json` stores them, and its errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::CertificateStatus;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a readable registry ({message}); move it aside to start with an empty one"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error("not a PEM certificate: {0}")]
    BadCertificate(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    WrongState(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRecord {
    pub certificate_id: String,
    pub certificate_pem: String,
    pub status: CertificateStatus,
    /// The registered CA that issued it, if any (its status matters too).
    pub ca_certificate_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub creation_date: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaRecord {
    pub certificate_id: String,
    pub certificate_pem: String,
    pub status: CertificateStatus,
    pub auto_register: bool,
    /// Attached to the certificates this CA registers on first use.
    pub policies: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityPoolRecord {
    pub identity_pool_id: String,
    pub identity_pool_name: String,
    pub allow_unauthenticated: bool,
    pub credentials_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRecord {
    pub policy_name: String,
    pub policy_document: String,
    pub creation_date: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerRecord {
    pub authorizer_name: String,
    /// Our stand-in for the Lambda ARN: the authorizer function's HTTP URL.
    pub authorizer_function_arn: String,
    pub token_key_name: String,
    pub token_signing_public_keys: BTreeMap<String, String>,
    pub status: String,
    pub signing_disabled: bool,
    pub creation_date: u64,
    pub last_modified_date: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRecord {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub principal: String,
    pub creation_date: u64,
}

/// Why a client certificate was refused; the message names the certificate id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate {certificate_id} refused: {reason}")]
pub struct CertificateRefusal {
    pub certificate_id: String,
    pub reason: String,
}

/// How a client certificate was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Registered and ACTIVE (and so is its CA, if it has one).
    Registered,
    /// Signed by a registered CA with `auto_register`: registered ACTIVE now, in memory;
    /// the caller saves the registry and attaches the CA's policies.
    AutoRegistered {
        certificate_id: String,
        policies: Vec<String>,
    },
}
