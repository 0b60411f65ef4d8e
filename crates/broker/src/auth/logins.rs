//! The logins of authenticated Cognito identities: a `Logins` entry (`provider → token`)
//! is verified (signature, issuer, audience, expiry) before an identity id or credentials
//! are given for it. Providers:
//!
//! - a user pool, `cognito-idp.<region>.amazonaws.com/<userPoolId>`: its ID token
//!   (`IdentityPlane::verify_user_pool_id_token`);
//! - an OpenID Connect provider of `[[openid_providers]]`, keyed by its issuer without
//!   `https://`: an ID token signed by a key of its JWKS file, for one of its audiences;
//! - `cognito-identity.amazonaws.com`: an OpenID token the broker signed itself
//!   (GetOpenIdToken, GetOpenIdTokenForDeveloperIdentity), which names its identity.
//!
//! Refusals are NotAuthorizedException messages as Cognito words them.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use iot::cognito::jwt::{self, JwtError, OsRng, SigningKey};
use serde_json::{json, Value};

use super::IdentityPlane;
use crate::registry::{IdentityPoolRecord, Registry, SigningKeyRecord};

/// The Logins key of the broker's own OpenID tokens, and their issuer.
pub const COGNITO_IDENTITY_PROVIDER: &str = "cognito-identity.amazonaws.com";
const COGNITO_IDENTITY_ISSUER: &str = "https://cognito-identity.amazonaws.com";

/// The IAM OIDC provider ARN of an issuer (what a pool's OpenIdConnectProviderARNs holds).
pub fn oidc_provider_arn(account: &str, provider_name: &str) -> String {
    format!("arn:aws:iam::{account}:oidc-provider/{provider_name}")
}

/// What a verified login stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub provider: String,
    pub subject: String,
    /// For the broker's own token: the identity it was issued for, and whether that one
    /// is authenticated (its `amr`).
    pub identity: Option<(String, bool)>,
}

/// The broker's OpenID token key, read from (or made into) the registry once.
#[derive(Default)]
pub struct OpenIdKey(OnceLock<SigningKey>);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

const INVALID: &str = "Invalid login token.";

/// Cognito's words for a token the signature check refused.
fn refusal(error: &JwtError, now: u64) -> String {
    match error {
        JwtError::Expired { expired_at } => {
            format!("{INVALID} Token expired: {now} >= {expired_at}")
        }
        JwtError::Malformed(_) => format!("{INVALID} Not a valid OpenId Connect identity token."),
        _ => format!("{INVALID} Couldn't verify signed token."),
    }
}

/// `aud` (a string or a list) names one of `audiences`.
fn audience_matches(claims: &Value, audiences: &[&str]) -> bool {
    match &claims["aud"] {
        Value::String(aud) => audiences.contains(&aud.as_str()),
        Value::Array(list) => list
            .iter()
            .any(|aud| aud.as_str().is_some_and(|aud| audiences.contains(&aud))),
        _ => false,
    }
}

/// The checks on an OpenID Connect token's claims once its signature and expiry hold:
/// issuer, audience, subject. Pure.
pub(crate) fn check_claims(
    claims: &Value,
    issuer: &str,
    audiences: &[&str],
) -> Result<String, String> {
    if claims["iss"].as_str() != Some(issuer) {
        return Err(format!("{INVALID} Issuer doesn't match providerName"));
    }
    if !audience_matches(claims, audiences) {
        return Err(format!("{INVALID} Incorrect token audience."));
    }
    claims["sub"]
        .as_str()
        .filter(|sub| !sub.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("{INVALID} The token has no sub claim."))
}

impl IdentityPlane {
    /// Verifies one `Logins` entry of a request to `pool`. `Err`: the
    /// NotAuthorizedException message.
    pub fn verify_login(
        &self,
        pool: &IdentityPoolRecord,
        provider: &str,
        token: &str,
    ) -> Result<Login, String> {
        let now = now_secs();
        if provider == COGNITO_IDENTITY_PROVIDER {
            let claims = jwt::verify(token, &self.open_id_jwks()?, now)
                .map_err(|error| refusal(&error, now))?;
            let subject = check_claims(
                &claims,
                COGNITO_IDENTITY_ISSUER,
                &[pool.identity_pool_id.as_str()],
            )?;
            let authenticated = claims["amr"]
                .as_array()
                .is_some_and(|amr| amr.iter().any(|v| v == "authenticated"));
            return Ok(Login {
                provider: provider.to_owned(),
                identity: Some((subject.clone(), authenticated)),
                subject,
            });
        }
        if provider.starts_with("cognito-idp.") {
            let Some(configured) = pool
                .cognito_identity_providers
                .iter()
                .find(|p| p.provider_name == provider)
            else {
                return Err(unsupported(provider));
            };
            let subject = self.verify_user_pool_id_token(provider, token)?.subject;
            if let Some(client_id) = &configured.client_id {
                // The token verified: its payload is the pool's own.
                let claims = unverified_claims(token);
                if !audience_matches(&claims, &[client_id.as_str()]) {
                    return Err(format!("{INVALID} Incorrect token audience."));
                }
            }
            return Ok(Login {
                provider: provider.to_owned(),
                subject,
                identity: None,
            });
        }
        if let Some(oidc) = self
            .config
            .openid_providers
            .iter()
            .find(|p| p.provider_name() == provider)
        {
            let arn = oidc_provider_arn(&self.config.account_id, provider);
            if !pool.open_id_connect_provider_arns.contains(&arn) {
                return Err(unsupported(provider));
            }
            let text = std::fs::read_to_string(&oidc.jwks_file).map_err(|error| {
                tracing::error!(%error, file = %oidc.jwks_file.display(), "openid provider's JWKS unreadable");
                format!("{INVALID} Couldn't verify signed token.")
            })?;
            let jwks: Value = serde_json::from_str(&text).map_err(|error| {
                tracing::error!(%error, file = %oidc.jwks_file.display(), "openid provider's JWKS is not JSON");
                format!("{INVALID} Couldn't verify signed token.")
            })?;
            let claims = jwt::verify(token, &jwks, now).map_err(|error| refusal(&error, now))?;
            let audiences: Vec<&str> = oidc.audiences.iter().map(String::as_str).collect();
            let subject = check_claims(&claims, &oidc.issuer, &audiences)?;
            return Ok(Login {
                provider: provider.to_owned(),
                subject,
                identity: None,
            });
        }
        if pool.developer_provider_name.as_deref() == Some(provider) {
            return Err(format!(
                "{INVALID} A developer provider's logins are given by GetOpenIdTokenForDeveloperIdentity; use its token as Logins {{\"{COGNITO_IDENTITY_PROVIDER}\": token}}."
            ));
        }
        Err(unsupported(provider))
    }

    /// An OpenID token for an identity, signed by the broker (RS256) as Cognito Identity
    /// signs its own: `iss` https://cognito-identity.amazonaws.com, `aud` the pool id,
    /// `sub` the identity id, `amr` how it signed in.
    pub fn open_id_token(
        &self,
        identity_id: &str,
        pool_id: &str,
        amr: &[String],
        ttl_secs: u64,
    ) -> Result<String, String> {
        let now = now_secs();
        let claims = json!({
            "iss": COGNITO_IDENTITY_ISSUER,
            "sub": identity_id,
            "aud": pool_id,
            "amr": amr,
            "iat": now,
            "exp": now + ttl_secs,
        });
        Ok(self.open_id_key()?.sign(&claims))
    }

    /// The broker's OpenID token keys as a JWKS.
    pub fn open_id_jwks(&self) -> Result<Value, String> {
        Ok(json!({"keys": [self.open_id_key()?.jwk()]}))
    }

    fn open_id_key(&self) -> Result<&SigningKey, String> {
        if let Some(key) = self.open_id_key.0.get() {
            return Ok(key);
        }
        let record = self
            .registry
            .open_id_signing_key(new_key)
            .map_err(|error| format!("the OpenID token key cannot be kept: {error}"))?;
        let key = SigningKey::from_pkcs8_pem(&record.kid, &record.private_key_pem)
            .map_err(|error| format!("the registry's OpenID token key is unusable: {error}"))?;
        Ok(self.open_id_key.0.get_or_init(|| key))
    }
}

/// A new OpenID token key.
fn new_key() -> SigningKeyRecord {
    let kid = crate::secrets::random_alphanumeric(20);
    let key = SigningKey::generate(&kid, &mut OsRng);
    SigningKeyRecord {
        kid,
        private_key_pem: key.to_pkcs8_pem(),
    }
}

/// Makes the OpenID token key now, off the request path (an RSA key takes seconds in an
/// unoptimised build), when a pool will need it (one with a developer provider).
pub(crate) fn prepare_open_id_key(registry: &Arc<Registry>) {
    let registry = registry.clone();
    std::thread::spawn(move || {
        if let Err(error) = registry.open_id_signing_key(new_key) {
            tracing::error!(%error, "the OpenID token key cannot be kept");
        }
    });
}

fn unsupported(provider: &str) -> String {
    format!("{INVALID} {provider} is not a login provider of this identity pool.")
}

/// The claims of a JWT whose signature was verified elsewhere.
fn unverified_claims(token: &str) -> Value {
    use base64::Engine;
    token
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_checked_as_cognito_words_it() {
        let claims = json!({"iss": "https://id.example", "aud": ["other", "app"], "sub": "u1"});
        assert_eq!(
            check_claims(&claims, "https://id.example", &["app"]),
            Ok("u1".to_owned())
        );
        assert_eq!(
            check_claims(&claims, "https://elsewhere.example", &["app"]).unwrap_err(),
            "Invalid login token. Issuer doesn't match providerName"
        );
        assert_eq!(
            check_claims(&claims, "https://id.example", &["stranger"]).unwrap_err(),
            "Invalid login token. Incorrect token audience."
        );
        let no_sub = json!({"iss": "https://id.example", "aud": "app"});
        assert!(check_claims(&no_sub, "https://id.example", &["app"]).is_err());
        assert_eq!(
            refusal(&JwtError::Expired { expired_at: 10 }, 20),
            "Invalid login token. Token expired: 20 >= 10"
        );
        assert_eq!(
            refusal(&JwtError::BadSignature, 20),
            "Invalid login token. Couldn't verify signed token."
        );
    }
}
