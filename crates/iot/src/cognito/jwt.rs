//! RS256 JSON Web Tokens as Cognito user pools issue them, and their JWKS.
//!
//! A pool signs its ID and access tokens with an RSA key named by `kid`; anyone verifies
//! them with the pool's published key set (`/.well-known/jwks.json`). The header is
//! Cognito's `{"kid":…,"alg":"RS256"}` (no `typ`). Pure: the clock reading is an argument,
//! and key generation takes the caller's random source.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::pkcs1v15;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::Sha256;

/// The random source [`SigningKey::generate`] takes (`rand_core` 0.6, the `rsa` crate's).
pub use rsa::rand_core;
pub use rsa::rand_core::{CryptoRngCore, OsRng};

/// Size of the keys [`SigningKey::generate`] makes; smaller PEM keys are refused.
pub const KEY_BITS: usize = 2048;

/// Why a key or token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not a JWT (or not a usable key): names what is wrong.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The header names an algorithm other than RS256 (`none` and HMAC are never accepted).
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// No key of the JWKS has this `kid`.
    #[error("no key with kid {0:?}")]
    UnknownKey(String),
    #[error("bad signature")]
    BadSignature,
    #[error("expired at {expired_at}")]
    Expired { expired_at: u64 },
    #[error("not valid before {not_before}")]
    NotYetValid { not_before: u64 },
    #[error("issued in the future ({issued_at})")]
    IssuedInFuture { issued_at: u64 },
}

/// An RSA private key with its `kid`, signing RS256.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key: RsaPrivateKey,
    signer: pkcs1v15::SigningKey<Sha256>,
}

impl std::fmt::Debug for SigningKey {
    /// The kid only: the private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn new(kid: &str, key: RsaPrivateKey) -> SigningKey {
        SigningKey {
            kid: kid.to_string(),
            signer: pkcs1v15::SigningKey::<Sha256>::new(key.clone()),
            key,
        }
    }

    /// A PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), at least [`KEY_BITS`].
    pub fn from_pkcs8_pem(kid: &str, pem: &str) -> Result<SigningKey, JwtError> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| JwtError::Malformed(format!("PKCS#8 RSA private key: {e}")))?;
        let bits = key.n().bits();
        if bits < KEY_BITS {
            return Err(JwtError::Malformed(format!(
                "RSA key of {bits} bits, {KEY_BITS} required"
            )));
        }
        Ok(SigningKey::new(kid, key))
    }

    pub fn to_pkcs8_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("a valid RSA key always encodes as PKCS#8")
            .to_string()
    }

    /// A new [`KEY_BITS`] key. Slow in unoptimised builds (seconds): made once per pool.
    pub fn generate(kid: &str, rng: &mut impl CryptoRngCore) -> SigningKey {
        let key = RsaPrivateKey::new(rng, KEY_BITS).expect("2048-bit RSA generation succeeds");
        SigningKey::new(kid, key)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `header.payload.signature` with Cognito's header `{"kid":…,"alg":"RS256"}`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"kid": self.kid, "alg": "RS256"});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.signer.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// The public key as a JWKS entry, the form Cognito publishes.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(self.key.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(self.key.e().to_bytes_be()),
        })
    }
}

fn b64_part(part: &str, what: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed(format!("{what} is not base64url")))
}

fn json_object(bytes: &[u8], what: &str) -> Result<Value, JwtError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(JwtError::Malformed(format!("{what} is not a JSON object"))),
    }
}

/// The RS256 verifying key of the JWKS entry named `kid`.
fn find_key(jwks: &Value, kid: &str) -> Result<pkcs1v15::VerifyingKey<Sha256>, JwtError> {
    let jwk = jwks
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        .ok_or_else(|| JwtError::UnknownKey(kid.to_string()))?;
    let field = |name: &str| -> Result<BigUint, JwtError> {
        let text = jwk
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| JwtError::Malformed(format!("JWK {kid:?} has no {name:?}")))?;
        Ok(BigUint::from_bytes_be(&b64_part(
            text,
            &format!("JWK {name:?}"),
        )?))
    };
    let usable = jwk.get("kty").and_then(Value::as_str) == Some("RSA")
        && jwk.get("alg").and_then(Value::as_str).unwrap_or("RS256") == "RS256"
        && jwk.get("use").and_then(Value::as_str).unwrap_or("sig") == "sig";
    if !usable {
        return Err(JwtError::Malformed(format!(
            "JWK {kid:?} is not an RS256 signing key"
        )));
    }
    let public = RsaPublicKey::new(field("n")?, field("e")?)
        .map_err(|e| JwtError::Malformed(format!("JWK {kid:?}: {e}")))?;
    Ok(pkcs1v15::VerifyingKey::<Sha256>::new(public))
}

fn time_claim(claims: &Value, name: &str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| JwtError::Malformed(format!("{name:?} is not a NumericDate"))),
    }
}

/// Verifies an RS256 token against `jwks` (`{"keys":[…]}`) at `now_secs`: the signature
/// by the key its `kid` names, then `exp` (required; expired at `exp` itself), `nbf` and
/// `iat` (when present, not after now). Returns the claims; issuer, audience/client_id and
/// token_use are the caller's to check.
pub fn verify(token: &str, jwks: &Value, now_secs: u64) -> Result<Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts".into()));
    };
    let header = json_object(&b64_part(header_b64, "header")?, "header")?;
    match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => {}
        Some(other) => return Err(JwtError::UnsupportedAlgorithm(other.to_string())),
        None => return Err(JwtError::Malformed("header has no \"alg\"".into())),
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| JwtError::Malformed("header has no \"kid\"".into()))?;
    let key = find_key(jwks, kid)?;
    let signature = pkcs1v15::Signature::try_from(b64_part(signature_b64, "signature")?.as_slice())
        .map_err(|_| JwtError::BadSignature)?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    key.verify(signing_input.as_bytes(), &signature)
        .map_err(|_| JwtError::BadSignature)?;

    let claims = json_object(&b64_part(payload_b64, "payload")?, "payload")?;
    let exp = time_claim(&claims, "exp")?
        .ok_or_else(|| JwtError::Malformed("payload has no \"exp\"".into()))?;
    if now_secs >= exp {
        return Err(JwtError::Expired { expired_at: exp });
    }
    if let Some(not_before) = time_claim(&claims, "nbf")?.filter(|&t| t > now_secs) {
        return Err(JwtError::NotYetValid { not_before });
    }
    if let Some(issued_at) = time_claim(&claims, "iat")?.filter(|&t| t > now_secs) {
        return Err(JwtError::IssuedInFuture { issued_at });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_157_727;

    fn key() -> SigningKey {
        let pem = include_str!("../../tests/fixtures/token-signing-2048.key.pem");
        SigningKey::from_pkcs8_pem("test-kid", pem).unwrap()
    }

    fn jwks(key: &SigningKey) -> Value {
        json!({"keys": [key.jwk()]})
    }

    fn claims() -> Value {
        json!({"sub": "7d8ca528-4931-4254-9273-ea5ee853f271", "token_use": "id",
               "iat": NOW - 10, "exp": NOW + 3600, "cognito:username": "alice"})
    }

    #[test]
    fn sign_then_verify() {
        let k = key();
        let token = k.sign(&claims());
        assert_eq!(verify(&token, &jwks(&k), NOW), Ok(claims()));
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header, json!({"kid": "test-kid", "alg": "RS256"}));
    }

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let k = key();
        let again = SigningKey::from_pkcs8_pem("test-kid", &k.to_pkcs8_pem()).unwrap();
        assert_eq!(again.jwk(), k.jwk());
        assert_eq!(again.kid(), "test-kid");
    }

    #[test]
    fn tampered_payload_is_refused() {
        let k = key();
        let token = k.sign(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims();
        forged["cognito:username"] = json!("mallory");
        let forged_payload = URL_SAFE_NO_PAD.encode(forged.to_string());
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            verify(&tampered, &jwks(&k), NOW),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn tampered_signature_is_refused() {
        let k = key();
        let token = k.sign(&claims());
        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
        bytes[10] ^= 1;
        let tampered = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(
            verify(&tampered, &jwks(&k), NOW),
            Err(JwtError::BadSignature)
        );
        let truncated = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&bytes[..100]));
        assert_eq!(
            verify(&truncated, &jwks(&k), NOW),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn expired_is_refused_from_exp_on() {
        let k = key();
        let token = k.sign(&claims());
        let exp = NOW + 3600;
        assert!(verify(&token, &jwks(&k), exp - 1).is_ok());
        assert_eq!(
            verify(&token, &jwks(&k), exp),
            Err(JwtError::Expired { expired_at: exp })
        );
    }

    #[test]
    fn not_yet_valid_and_future_iat_are_refused() {
        let k = key();
        let mut c = claims();
        c["nbf"] = json!(NOW + 5);
        assert_eq!(
            verify(&k.sign(&c), &jwks(&k), NOW),
            Err(JwtError::NotYetValid {
                not_before: NOW + 5
            })
        );
        let mut c = claims();
        c["iat"] = json!(NOW + 5);
        assert_eq!(
            verify(&k.sign(&c), &jwks(&k), NOW),
            Err(JwtError::IssuedInFuture { issued_at: NOW + 5 })
        );
    }

    #[test]
    fn missing_exp_is_refused() {
        let k = key();
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert!(matches!(
            verify(&k.sign(&c), &jwks(&k), NOW),
            Err(JwtError::Malformed(m)) if m.contains("exp")
        ));
    }

    #[test]
    fn unknown_kid_is_refused() {
        let k = key();
        let other = SigningKey::from_pkcs8_pem("other-kid", &k.to_pkcs8_pem()).unwrap();
        let token = other.sign(&claims());
        assert_eq!(
            verify(&token, &jwks(&k), NOW),
            Err(JwtError::UnknownKey("other-kid".into()))
        );
        assert_eq!(
            verify(&token, &json!({}), NOW),
            Err(JwtError::UnknownKey("other-kid".into()))
        );
    }

    #[test]
    fn other_algorithms_are_refused() {
        let k = key();
        let token = k.sign(&claims());
        let rest = token.split_once('.').unwrap().1;
        for alg in ["none", "HS256"] {
            let header = URL_SAFE_NO_PAD.encode(json!({"kid": "test-kid", "alg": alg}).to_string());
            assert_eq!(
                verify(&format!("{header}.{rest}"), &jwks(&k), NOW),
                Err(JwtError::UnsupportedAlgorithm(alg.into()))
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        let k = key();
        for token in ["", "a.b", "a.b.c.d", "!!.e30.AA"] {
            assert!(
                matches!(verify(token, &jwks(&k), NOW), Err(JwtError::Malformed(_))),
                "{token}"
            );
        }
    }

    #[test]
    fn weak_keys_are_refused() {
        let pem = include_str!("../../tests/fixtures/weak-1024.key.pem");
        assert!(matches!(
            SigningKey::from_pkcs8_pem("weak", pem),
            Err(JwtError::Malformed(m)) if m.contains("1024")
        ));
    }
}
