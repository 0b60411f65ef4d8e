//! Custom authentication as IoT Core does it: where the authorizer fields arrive, the token
//! signature, the event the authorizer function receives and the answer it must give.
//!
//! Pure: no I/O, no clock. The broker finds the fields ([`parse_username`] for a CONNECT
//! username, [`from_http`] for a WebSocket upgrade), checks the token signature
//! ([`verify_token_signature`]) when the authorizer has signing enabled, calls the function
//! with [`AuthorizerEvent::to_json`] and validates its answer
//! ([`parse_authorizer_response`]).

use crate::sigv4::{percent_decode, split_query};
use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Parameter or header naming the authorizer.
pub const AUTHORIZER_NAME_KEY: &str = "x-amz-customauthorizer-name";
/// Parameter or header carrying the token signature.
pub const SIGNATURE_KEY: &str = "x-amz-customauthorizer-signature";
/// Smallest token-signing key IoT Core accepts.
pub const MIN_KEY_BITS: usize = 2048;

/// Standard WebSocket-upgrade and HTTP headers that [`from_http`] does not offer as token
/// candidates (so a bare upgrade gives [`AuthorizerFields::is_empty`]).
const ORDINARY_HEADERS: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "origin",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "pragma",
    "content-length",
    "content-type",
    "transfer-encoding",
    "te",
    "keep-alive",
];

/// Authorizer fields from wherever they arrived (CONNECT username, WebSocket headers,
/// WebSocket query).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizerFields {
    /// The username before `?` (CONNECT username only).
    pub user: Option<String>,
    pub authorizer_name: Option<String>,
    /// As sent, percent-decoded (from a username or query) or raw (from a header).
    pub signature: Option<String>,
    /// Every other key/value (token candidates, SDK metrics), percent-decoded when they came
    /// from a username or query; header names lowercased. Header entries come first.
    pub params: Vec<(String, String)>,
}

impl AuthorizerFields {
    /// The value of the authorizer's token key: the first parameter named exactly
    /// `token_key_name`, else the first whose name matches ignoring ASCII case (header
    /// names arrive lowercased).
    pub fn token(&self, token_key_name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == token_key_name)
            .or_else(|| {
                self.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(token_key_name))
            })
            .map(|(_, v)| v.as_str())
    }

    /// No authorizer name, no signature and no parameters.
    pub fn is_empty(&self) -> bool {
        self.authorizer_name.is_none() && self.signature.is_none() && self.params.is_empty()
    }

    fn add(&mut self, key: String, value: String) {
        if key.eq_ignore_ascii_case(AUTHORIZER_NAME_KEY) {
            self.authorizer_name.get_or_insert(value);
        } else if key.eq_ignore_ascii_case(SIGNATURE_KEY) {
            self.signature.get_or_insert(value);
        } else {
            self.params.push((key, value));
        }
    }

    fn add_query(&mut self, query: &str) {
        for (key, value) in split_query(query) {
            self.add(decoded_text(key), decoded_text(value));
        }
    }
}

/// Decoded bytes as text; if they are not UTF-8 (a stray `%FF`), the piece is kept as sent.
fn decoded_text(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            // Re-encode the undecodable bytes so nothing is lost or invented.
            let bytes = e.into_bytes();
            let mut out = String::new();
            for chunk in bytes.utf8_chunks() {
                out.push_str(chunk.valid());
                for b in chunk.invalid() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        }
    }
}

/// Reads a CONNECT username:
/// `user?x-amz-customauthorizer-name=…&x-amz-customauthorizer-signature=…&<tokenKeyName>=…&SDK=…&Platform=…&Metadata=(…)`.
///
/// `user` is everything before the first `?` (the whole username when there is none).
/// Values are percent-decoded without turning `+` into a space (a raw base64 signature
/// keeps its `+`); malformed escapes are kept literally. The two authorizer keys are
/// matched ignoring ASCII case, the first occurrence wins. SDK metrics (`SDK`, `Version`,
/// `Platform`, `Metadata`) are ordinary params. Never fails.
pub fn parse_username(username: &str) -> AuthorizerFields {
    let (user, query) = username.split_once('?').unwrap_or((username, ""));
    let mut fields = AuthorizerFields {
        user: Some(user.to_owned()),
        ..AuthorizerFields::default()
    };
    fields.add_query(query);
    fields
}

/// Reads a WebSocket upgrade: headers `x-amz-customauthorizer-name`,
/// `x-amz-customauthorizer-signature` and any other header as a candidate token (name
/// lowercased, value trimmed, not decoded), then the query (`name=value&…`, decoded as in
/// [`parse_username`]). Headers win over the query: the name and signature from a header
/// replace the query's, header params come first. Standard HTTP and WebSocket headers
/// (`Host`, `Connection`, `Upgrade`, `Sec-WebSocket-*`, `User-Agent`, `Origin`, …) are not
/// token candidates. SigV4 `X-Amz-*` query parameters, if any, do land in params.
pub fn from_http(headers: &[(&str, &str)], query: &str) -> AuthorizerFields {
    let mut fields = AuthorizerFields::default();
    for (name, value) in headers {
        let name = name.trim().to_ascii_lowercase();
        if ORDINARY_HEADERS.contains(&name.as_str()) || name.starts_with("sec-websocket-") {
            continue;
        }
        fields.add(name, value.trim().to_owned());
    }
    fields.add_query(query.strip_prefix('?').unwrap_or(query));
    fields
}

/// Why a token signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenSignatureError {
    #[error("token signature is not base64: {0}")]
    NotBase64(String),
    #[error("the authorizer has no token-signing public key")]
    NoKeys,
    #[error("token-signing public key {index} is not a PEM RSA public key: {reason}")]
    InvalidKey { index: usize, reason: String },
    #[error("token-signing public key {index} has {bits} bits, fewer than 2048")]
    KeyTooSmall { index: usize, bits: usize },
    #[error("token signature does not match any token-signing public key")]
    Mismatch,
}

/// Checks `signature` = base64(RSA PKCS#1 v1.5 SHA-256(token)) against each PEM public key
/// (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`) until one matches. Keys under 2048 bits
/// and unreadable keys are skipped; if none is usable the error says why. The signature is
/// standard base64 (padding optional), possibly still percent-encoded (`%2B`), and a space
/// is read as `+` (a `+` that went through form decoding).
pub fn verify_token_signature(
    token: &str,
    signature: &str,
    public_keys_pem: &[&str],
) -> Result<(), TokenSignatureError> {
    let sig = decode_signature(signature)?;
    let hashed = Sha256::digest(token.as_bytes());

    let mut first_problem = None;
    let mut usable = false;
    for (index, pem) in public_keys_pem.iter().enumerate() {
        let key = match parse_public_key(pem) {
            Ok(key) => key,
            Err(reason) => {
                first_problem.get_or_insert(TokenSignatureError::InvalidKey { index, reason });
                continue;
            }
        };
        let bits = key.n().bits();
        if bits < MIN_KEY_BITS {
            first_problem.get_or_insert(TokenSignatureError::KeyTooSmall { index, bits });
            continue;
        }
        usable = true;
        if key
            .verify(Pkcs1v15Sign::new::<Sha256>(), &hashed, &sig)
            .is_ok()
        {
            return Ok(());
        }
    }
    if usable {
        Err(TokenSignatureError::Mismatch)
    } else {
        Err(first_problem.unwrap_or(TokenSignatureError::NoKeys))
    }
}

fn decode_signature(signature: &str) -> Result<Vec<u8>, TokenSignatureError> {
    let mut text = signature.trim().to_owned();
    if text.contains('%') {
        text = String::from_utf8(percent_decode(&text))
            .map_err(|_| TokenSignatureError::NotBase64("not UTF-8 once decoded".into()))?;
    }
    let text = text.replace(' ', "+");
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(text.as_bytes())
        .map_err(|e| TokenSignatureError::NotBase64(e.to_string()))
}

fn parse_public_key(pem: &str) -> Result<RsaPublicKey, String> {
    let pem = pem.trim();
    if pem.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
        RsaPublicKey::from_pkcs1_pem(pem).map_err(|e| e.to_string())
    } else if pem.starts_with("-----BEGIN PUBLIC KEY-----") {
        RsaPublicKey::from_public_key_pem(pem).map_err(|e| e.to_string())
    } else {
        Err("expected -----BEGIN PUBLIC KEY----- or -----BEGIN RSA PUBLIC KEY-----".into())
    }
}

/// The event the authorizer function receives. Absent parts are left out of the JSON, as
/// IoT Core does.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizerEvent<'a> {
    pub token: &'a str,
    pub signature_verified: bool,
    /// Subset of `["tls", "http", "mqtt"]`.
    pub protocols: &'a [&'a str],
    /// TLS SNI host name.
    pub server_name: Option<&'a str>,
    /// WebSocket upgrade headers (`protocolData.http.headers`, an object; a repeated
    /// header's values are joined with `,`).
    pub http_headers: Option<&'a [(&'a str, &'a str)]>,
    /// WebSocket upgrade query, with or without its `?` (sent with a leading `?`).
    pub http_query: Option<&'a str>,
    pub mqtt_username: Option<&'a str>,
    /// Sent base64-encoded.
    pub mqtt_password: Option<&'a [u8]>,
    pub mqtt_client_id: Option<&'a str>,
    /// `connectionMetadata.id`.
    pub connection_id: &'a str,
}

impl AuthorizerEvent<'_> {
    /// The Lambda event: `token`, `signatureVerified`, `protocols`, `protocolData.{tls,http,mqtt}`,
    /// `connectionMetadata.id`.
    pub fn to_json(&self) -> Value {
        let mut protocol_data = Map::new();
        if let Some(server_name) = self.server_name {
            protocol_data.insert("tls".into(), json!({ "serverName": server_name }));
        }
        if self.http_headers.is_some() || self.http_query.is_some() {
            let mut headers = Map::new();
            for (name, value) in self.http_headers.unwrap_or_default() {
                match headers.get_mut(*name) {
                    Some(Value::String(existing)) => {
                        existing.push(',');
                        existing.push_str(value);
                    }
                    _ => {
                        headers.insert((*name).to_owned(), Value::String((*value).to_owned()));
                    }
                }
            }
            let query = match self.http_query.unwrap_or_default() {
                "" => String::new(),
                q if q.starts_with('?') => q.to_owned(),
                q => format!("?{q}"),
            };
            protocol_data.insert(
                "http".into(),
                json!({ "headers": headers, "queryString": query }),
            );
        }
        if self.mqtt_username.is_some()
            || self.mqtt_password.is_some()
            || self.mqtt_client_id.is_some()
        {
            let mut mqtt = Map::new();
            if let Some(username) = self.mqtt_username {
                mqtt.insert("username".into(), username.into());
            }
            if let Some(password) = self.mqtt_password {
                mqtt.insert(
                    "password".into(),
                    base64::engine::general_purpose::STANDARD
                        .encode(password)
                        .into(),
                );
            }
            if let Some(client_id) = self.mqtt_client_id {
                mqtt.insert("clientId".into(), client_id.into());
            }
            protocol_data.insert("mqtt".into(), Value::Object(mqtt));
        }
        json!({
            "token": self.token,
            "signatureVerified": self.signature_verified,
            "protocols": self.protocols,
            "protocolData": protocol_data,
            "connectionMetadata": { "id": self.connection_id },
        })
    }
}

/// The authorizer function's answer, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizerResponse {
    pub is_authenticated: bool,
    /// Empty when not authenticated and absent.
    pub principal_id: String,
    /// Each policy document as JSON text (objects are serialized).
    pub policy_documents: Vec<String>,
    /// 0 when not authenticated and absent.
    pub disconnect_after_secs: u64,
    /// 0 when not authenticated and absent.
    pub refresh_after_secs: u64,
}

/// Most policy documents an answer may carry.
pub const MAX_POLICY_DOCUMENTS: usize = 10;
/// Longest policy document, in characters.
pub const MAX_POLICY_DOCUMENT_CHARS: usize = 2048;
/// IoT Core's bounds of `disconnectAfterInSeconds` and `refreshAfterInSeconds` (the lower
/// one is configurable here: `[limits] authorizer_ttl_min`).
pub const TTL_RANGE_SECS: std::ops::RangeInclusive<u64> = 300..=86_400;
/// Longest principal id.
pub const MAX_PRINCIPAL_ID_CHARS: usize = 128;

/// Why an authorizer's answer was refused (the connection is then refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizerResponseError {
    #[error("authorizer response is not a JSON object: {0}")]
    NotJson(String),
    #[error("authorizer response lacks {0}")]
    Missing(&'static str),
    #[error("authorizer response field {field} must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("principalId {0:?} must be 1 to 128 letters and digits")]
    InvalidPrincipalId(String),
    #[error("authorizer returned {0} policy documents, at most 10 are allowed")]
    TooManyPolicies(usize),
    #[error("policy document {index} has {chars} characters, at most 2048 are allowed")]
    PolicyTooLong { index: usize, chars: usize },
    #[error("{field} is {value}, it must be between {min} and 86400")]
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
    },
}

/// Validates the function's answer as IoT Core does: `isAuthenticated` (bool, required);
/// when authenticated: `principalId` matching `[a-zA-Z0-9]{1,128}`, `policyDocuments` (at
/// most 10, each a JSON string or an object, at most 2048 characters),
/// `disconnectAfterInSeconds` and `refreshAfterInSeconds` (integers, `min_ttl_secs`–86400;
/// IoT Core's lower bound is 300, a test may want less). An answer with
/// `isAuthenticated: false` is returned as is, other fields not required.
pub fn parse_authorizer_response(
    body: &[u8],
    min_ttl_secs: u64,
) -> Result<AuthorizerResponse, AuthorizerResponseError> {
    use AuthorizerResponseError as E;
    let value: Value = serde_json::from_slice(body).map_err(|e| E::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(E::NotJson("not an object".into()));
    };
    let is_authenticated = match obj.get("isAuthenticated") {
        None => return Err(E::Missing("isAuthenticated")),
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(E::WrongType {
                field: "isAuthenticated",
                expected: "a boolean",
            })
        }
    };
    if !is_authenticated {
        return Ok(AuthorizerResponse {
            is_authenticated,
            principal_id: obj
                .get("principalId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            policy_documents: Vec::new(),
            disconnect_after_secs: 0,
            refresh_after_secs: 0,
        });
    }

    let principal_id = match obj.get("principalId") {
        None => return Err(E::Missing("principalId")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(E::WrongType {
                field: "principalId",
                expected: "a string",
            })
        }
    };
    if principal_id.is_empty()
        || principal_id.len() > MAX_PRINCIPAL_ID_CHARS
        || !principal_id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(E::InvalidPrincipalId(principal_id));
    }

    let docs = match obj.get("policyDocuments") {
        None => return Err(E::Missing("policyDocuments")),
        Some(Value::Array(docs)) => docs,
        Some(_) => {
            return Err(E::WrongType {
                field: "policyDocuments",
                expected: "an array",
            })
        }
    };
    if docs.len() > MAX_POLICY_DOCUMENTS {
        return Err(E::TooManyPolicies(docs.len()));
    }
    let mut policy_documents = Vec::with_capacity(docs.len());
    for (index, doc) in docs.iter().enumerate() {
        let text = match doc {
            Value::String(s) => s.clone(),
            Value::Object(_) => doc.to_string(),
            _ => {
                return Err(E::WrongType {
                    field: "policyDocuments",
                    expected: "an array of JSON strings or objects",
                })
            }
        };
        let chars = text.chars().count();
        if chars > MAX_POLICY_DOCUMENT_CHARS {
            return Err(E::PolicyTooLong { index, chars });
        }
        policy_documents.push(text);
    }

    let ttl = |field: &'static str| -> Result<u64, AuthorizerResponseError> {
        let value = match obj.get(field) {
            None => return Err(E::Missing(field)),
            Some(v) => v.as_u64().ok_or(E::WrongType {
                field,
                expected: "a whole number of seconds",
            })?,
        };
        if (min_ttl_secs..=*TTL_RANGE_SECS.end()).contains(&value) {
            Ok(value)
        } else {
            Err(E::OutOfRange {
                field,
                value,
                min: min_ttl_secs,
            })
        }
    };
    let disconnect_after_secs = ttl("disconnectAfterInSeconds")?;
    let refresh_after_secs = ttl("refreshAfterInSeconds")?;

    Ok(AuthorizerResponse {
        is_authenticated,
        principal_id,
        policy_documents,
        disconnect_after_secs,
        refresh_after_secs,
    })
}
