//! Custom authorizers: the token signature check, the call to the authorizer function (an
//! HTTP endpoint standing in for IoT Core's Lambda), validation of its answer, and the
//! answer cache (`refreshAfterInSeconds`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iot::custom_auth::{
    parse_authorizer_response, verify_token_signature, AuthorizerEvent, AuthorizerFields,
};
use iot::Policy;
use parking_lot::{Mutex, RwLock};

use crate::config::{AuthorizerConfig, Config, ConfigError};
use crate::registry::AuthorizerRecord;

/// What a successful authorization gives a connection.
#[derive(Debug, Clone)]
pub struct AuthorizedIdentity {
    pub authorizer: String,
    pub principal_id: String,
    pub policies: Vec<Arc<Policy>>,
    /// The documents as the function returned them (TestInvokeAuthorizer shows them).
    pub policy_documents: Vec<String>,
    /// IoT Core closes the connection then (CUSTOMAUTH_TTL_EXPIRATION).
    pub disconnect_after: Duration,
    pub refresh_after: Duration,
}

/// The parts of a connection the authorizer function is told about.
pub struct ConnectionFacts<'a> {
    pub protocols: &'a [&'a str],
    pub server_name: Option<&'a str>,
    pub http_headers: Option<&'a [(&'a str, &'a str)]>,
    pub http_query: Option<&'a str>,
    pub mqtt_username: Option<&'a str>,
    pub mqtt_password: Option<&'a [u8]>,
    pub mqtt_client_id: Option<&'a str>,
    pub connection_id: &'a str,
}

#[derive(Clone)]
struct Entry {
    config: AuthorizerConfig,
    public_keys: Vec<String>,
}

/// Authorizers from the config file (fixed) and from the registry (made through the API,
/// replaced wholesale when the registry changes).
pub struct CustomAuthorizers {
    by_name: HashMap<String, Entry>,
    dynamic: RwLock<HashMap<String, Entry>>,
    default_authorizer: String,
    dynamic_default: RwLock<Option<String>>,
    timeout: Duration,
    /// The shortest `refreshAfterInSeconds` / `disconnectAfterInSeconds` accepted.
    ttl_min_secs: u64,
    client: reqwest::Client,
    cache: Mutex<HashMap<(String, String), (Instant, AuthorizedIdentity)>>,
}

impl CustomAuthorizers {
    /// Reads the `[[authorizers]]` and their token-signing public keys.
    pub fn from_config(config: &Config) -> Result<CustomAuthorizers, ConfigError> {
        let mut by_name = HashMap::new();
        for authorizer in &config.authorizers {
            let mut public_keys = Vec::new();
            for (key_name, path) in &authorizer.token_signing_public_keys {
                let pem = std::fs::read_to_string(path).map_err(|error| {
                    ConfigError::Invalid(format!(
                        "authorizer {:?} key {key_name:?}: cannot read {}: {error}",
                        authorizer.name,
                        path.display()
                    ))
                })?;
                public_keys.push(pem);
            }
            if !authorizer.signing_disabled && public_keys.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "authorizer {:?} needs token_signing_public_keys unless signing_disabled = true",
                    authorizer.name
                )));
            }
            by_name.insert(
                authorizer.name.clone(),
                Entry {
                    config: authorizer.clone(),
                    public_keys,
                },
            );
        }
        if !config.default_authorizer.is_empty()
            && !by_name.contains_key(&config.default_authorizer)
        {
            return Err(ConfigError::Invalid(format!(
                "default_authorizer {:?} is not an [[authorizers]] entry",
                config.default_authorizer
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(config.limits.authorizer_timeout)
            .build()
            .map_err(|error| ConfigError::Invalid(format!("HTTP client: {error}")))?;
        Ok(CustomAuthorizers {
            by_name,
            dynamic: RwLock::new(HashMap::new()),
            default_authorizer: config.default_authorizer.clone(),
            dynamic_default: RwLock::new(None),
            timeout: config.limits.authorizer_timeout,
            ttl_min_secs: config.limits.authorizer_ttl_min.as_secs(),
            client,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces the registry's authorizers (and default) with its current state.
    pub fn sync(&self, records: &[AuthorizerRecord], default: Option<String>) {
        let entries = records
            .iter()
            .map(|record| {
                let entry = Entry {
                    config: AuthorizerConfig {
                        name: record.authorizer_name.clone(),
                        function_url: record.authorizer_function_arn.clone(),
                        token_key_name: record.token_key_name.clone(),
                        signing_disabled: record.signing_disabled,
                        token_signing_public_keys: Default::default(),
                        status: record.status.clone(),
                    },
                    public_keys: record.token_signing_public_keys.values().cloned().collect(),
                };
                (record.authorizer_name.clone(), entry)
            })
            .collect();
        *self.dynamic.write() = entries;
        *self.dynamic_default.write() = default;
        // A changed authorizer must not keep answering from its old cache.
        self.cache.lock().clear();
    }

    fn entry(&self, name: &str) -> Option<Entry> {
        self.by_name
            .get(name)
            .cloned()
            .or_else(|| self.dynamic.read().get(name).cloned())
    }

    /// The authorizer used when a connection names none (config first, then the API's).
    pub fn default_name(&self) -> Option<String> {
        if !self.default_authorizer.is_empty() {
            return Some(self.default_authorizer.clone());
        }
        self.dynamic_default.read().clone()
    }

    /// Whether an authorizer exists (config or registry).
    pub fn exists(&self, name: &str) -> bool {
        self.entry(name).is_some()
    }

    /// Whether these fields ask for custom authentication: an authorizer is named, a
    /// token signature is given, or the default authorizer's token is present.
    pub fn wants(&self, fields: &AuthorizerFields) -> bool {
        fields.authorizer_name.is_some()
            || fields.signature.is_some()
            || self
                .default_name()
                .and_then(|name| self.entry(&name))
                .is_some_and(|entry| fields.token(&entry.config.token_key_name).is_some())
    }

    /// Runs the whole custom-authentication flow; the error is the reason to log.
    pub async fn authorize(
        &self,
        fields: &AuthorizerFields,
        facts: ConnectionFacts<'_>,
    ) -> Result<AuthorizedIdentity, String> {
        let default = self.default_name();
        let name = match (&fields.authorizer_name, &default) {
            (Some(name), _) => name.as_str(),
            (None, Some(default)) => default.as_str(),
            (None, None) => {
                return Err("no authorizer named and no default_authorizer configured".into())
            }
        };
        let entry = self
            .entry(name)
            .ok_or_else(|| format!("authorizer {name:?} does not exist"))?;
        if !entry.config.status.eq_ignore_ascii_case("ACTIVE") {
            return Err(format!(
                "authorizer {name:?} is {}",
                entry.config.status.to_ascii_uppercase()
            ));
        }
        let token = fields.token(&entry.config.token_key_name);
        let signature_verified = if entry.config.signing_disabled {
            false
        } else {
            let token = token.ok_or_else(|| {
                format!(
                    "authorizer {name:?}: token {:?} missing",
                    entry.config.token_key_name
                )
            })?;
            let signature = fields
                .signature
                .as_deref()
                .ok_or_else(|| format!("authorizer {name:?}: token signature missing"))?;
            let keys: Vec<&str> = entry.public_keys.iter().map(String::as_str).collect();
            verify_token_signature(token, signature, &keys)
                .map_err(|error| format!("authorizer {name:?}: {error}"))?;
            true
        };
        let token = token.unwrap_or_default();
        // Only a token whose signature verified identifies the caller; without signing,
        // the answer may depend on the password or headers, so the function decides anew.
        let cache_key = signature_verified.then(|| (name.to_owned(), token.to_owned()));
        if let Some(key) = &cache_key {
            if let Some((expires, cached)) = self.cache.lock().get(key) {
                if Instant::now() < *expires {
                    return Ok(cached.clone());
                }
            }
        }
        let event = AuthorizerEvent {
            token,
            signature_verified,
            protocols: facts.protocols,
            server_name: facts.server_name,
            http_headers: facts.http_headers,
            http_query: facts.http_query,
            mqtt_username: facts.mqtt_username,
            mqtt_password: facts.mqtt_password,
            mqtt_client_id: facts.mqtt_client_id,
            connection_id: facts.connection_id,
        };
        let response = self
            .client
            .post(&entry.config.function_url)
            .json(&event.to_json())
            .send()
            .await
            .map_err(|error| {
                if error.is_timeout() {
                    format!(
                        "authorizer {name:?}: function did not answer within {:?}",
                        self.timeout
                    )
                } else {
                    format!("authorizer {name:?}: function unreachable: {error}")
                }
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| format!("authorizer {name:?}: reading the answer: {error}"))?;
        if !status.is_success() {
            return Err(format!(
                "authorizer {name:?}: function answered HTTP {status}"
            ));
        }
        let answer = parse_authorizer_response(&body, self.ttl_min_secs)
            .map_err(|error| format!("authorizer {name:?}: invalid answer: {error}"))?;
        if !answer.is_authenticated {
            return Err(format!(
                "authorizer {name:?}: function answered isAuthenticated: false"
            ));
        }
        let policies = answer
            .policy_documents
            .iter()
            .enumerate()
            .map(|(index, document)| {
                Policy::parse(&format!("{name}/{}/{index}", answer.principal_id), document)
                    .map(Arc::new)
                    .map_err(|error| format!("authorizer {name:?}: returned policy: {error}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let identity = AuthorizedIdentity {
            authorizer: name.to_owned(),
            principal_id: answer.principal_id.clone(),
            policies,
            policy_documents: answer.policy_documents.clone(),
            disconnect_after: Duration::from_secs(answer.disconnect_after_secs),
            refresh_after: Duration::from_secs(answer.refresh_after_secs),
        };
        if let Some(key) = cache_key {
            let mut cache = self.cache.lock();
            cache.retain(|_, (expires, _)| Instant::now() < *expires);
            cache.insert(
                key,
                (
                    Instant::now() + Duration::from_secs(answer.refresh_after_secs),
                    identity.clone(),
                ),
            );
        }
        Ok(identity)
    }
}
