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
    /// A request the registry refuses as malformed (a name, an attribute, a limit).
    #[error("{0}")]
    Invalid(String),
    /// An `expectedVersion` that is not the record's version.
    #[error("{0}")]
    VersionConflict(String),
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
    /// SetIdentityPoolRoles' `Roles`: [`UNAUTHENTICATED`] / [`AUTHENTICATED`] → role ARN.
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
    /// Developer-authenticated identities' provider name (GetOpenIdTokenForDeveloperIdentity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub developer_provider_name: Option<String>,
    /// User pools whose ID tokens are logins (CognitoIdentityProviders).
    #[serde(default)]
    pub cognito_identity_providers: Vec<CognitoProviderRecord>,
    /// OpenID Connect providers whose ID tokens are logins, by IAM OIDC provider ARN
    /// (`arn:aws:iam::<account>:oidc-provider/<issuer without https://>`).
    #[serde(default)]
    pub open_id_connect_provider_arns: Vec<String>,
}

/// The keys of an identity pool's `Roles`.
pub const UNAUTHENTICATED: &str = "unauthenticated";
pub const AUTHENTICATED: &str = "authenticated";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CognitoProviderRecord {
    /// `cognito-idp.<region>.amazonaws.com/<userPoolId>`.
    pub provider_name: String,
    /// The app client whose tokens are accepted (any client of the pool when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
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

/// A thing (CreateThing): its attributes, optional type, version (1 at creation, one more
/// per UpdateThing) and the principals attached to it (certificate ids as the policy
/// attachments store them, identity ids, any other principal string as given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThingRecord {
    pub thing_name: String,
    pub thing_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_type_name: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub version: u64,
    #[serde(default)]
    pub principals: Vec<String>,
    pub creation_date: u64,
}

/// Why a client certificate was refused; the message names the certificate id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate {certificate_id} refused: {reason}")]
pub struct CertificateRefusal {
    pub certificate_id: String,
    /// A short label for the kind of refusal (`unknown`, `revoked`, …), for metrics.
    pub kind: &'static str,
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
