//! Authorization: the policies the broker knows, which principal has which, and a
//! per-connection authorizer that caches decisions (policy evaluation itself is the pure
//! [`iot::policy`] module).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use iot::{
    decide, evaluate, resource_arn, write_resource_arn, Action, AuthDecision, Decision, Policy,
    RequestContext, ResourceKind,
};
use parking_lot::RwLock;

use crate::config::{Config, ConfigError, DEV_ALLOW_ALL};

/// The anonymous principal: clients of the plain listener.
pub const ANONYMOUS: &str = "anonymous";

const DEV_ALLOW_ALL_DOCUMENT: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#;

/// The built-in `dev-allow-all` document.
pub fn dev_allow_all_document() -> &'static str {
    DEV_ALLOW_ALL_DOCUMENT
}

/// Past this many cached resource names a connection starts its cache afresh, so a client
/// publishing to endless distinct topics cannot grow it without bound.
const MAX_CACHED_DECISIONS: usize = 4096;

/// Every policy the broker knows, by name, and which principal has which. Two layers: what
/// the config file declares (fixed for the broker's life) and what the registry holds
/// (policies and attachments made through the API or `pubsub iot`, replaced wholesale
/// when the registry changes). The generation changes with every change, which
/// invalidates every connection's cached decisions.
pub struct PolicyStore {
    /// Where resource ARNs point: the config's region and account.
    region: String,
    account: String,
    config_policies: HashMap<String, Arc<Policy>>,
    config_attachments: HashMap<String, Vec<String>>,
    dynamic: RwLock<DynamicPolicies>,
    generation: AtomicU64,
}

#[derive(Default)]
struct DynamicPolicies {
    policies: HashMap<String, Arc<Policy>>,
    attachments: HashMap<String, Vec<String>>,
}

impl PolicyStore {
    /// The built-in `dev-allow-all`, the config's `[[policies]]` and its attachments.
    pub fn from_config(config: &Config) -> Result<PolicyStore, ConfigError> {
        let mut policies = HashMap::new();
        let builtin = Policy::parse(DEV_ALLOW_ALL, DEV_ALLOW_ALL_DOCUMENT)
            .expect("the built-in policy parses");
        policies.insert(DEV_ALLOW_ALL.to_owned(), Arc::new(builtin));
        for declared in &config.policies {
            let document = match (&declared.document, &declared.document_file) {
                (Some(document), _) => document.clone(),
                (None, Some(file)) => std::fs::read_to_string(file).map_err(|error| {
                    ConfigError::Invalid(format!(
                        "policy {:?}: cannot read {}: {error}",
                        declared.name,
                        file.display()
                    ))
                })?,
                (None, None) => {
                    return Err(ConfigError::Invalid(format!(
                        "policy {:?} has no document",
                        declared.name
                    )))
                }
            };
            let policy = Policy::parse(&declared.name, &document)
                .map_err(|error| ConfigError::Invalid(error.to_string()))?;
            policies.insert(declared.name.clone(), Arc::new(policy));
        }
        let mut attachments: HashMap<String, Vec<String>> = HashMap::new();
        attachments.insert(ANONYMOUS.to_owned(), config.anonymous_policies().to_vec());
        for credential in &config.credentials {
            for key in [&credential.principal, &credential.access_key_id] {
                attachments
                    .entry(key.clone())
                    .or_default()
                    .extend(credential.policies.iter().cloned());
            }
        }
        Ok(PolicyStore {
            region: config.region.clone(),
            account: config.account_id.clone(),
            config_policies: policies,
            config_attachments: attachments,
            dynamic: RwLock::new(DynamicPolicies::default()),
            generation: AtomicU64::new(1),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Policy>> {
        self.config_policies
            .get(name)
            .cloned()
            .or_else(|| self.dynamic.read().policies.get(name).cloned())
    }

    /// Whether a policy comes from the config file (and cannot be changed by the API).
    pub fn is_declared_in_config(&self, name: &str) -> bool {
        self.config_policies.contains_key(name)
    }

    /// Names of the policies attached to a principal (`None`: principal unknown).
    pub fn attached(&self, principal: &str) -> Option<Vec<String>> {
        let dynamic = self.dynamic.read();
        let from_config = self.config_attachments.get(principal);
        let from_registry = dynamic.attachments.get(principal);
        if from_config.is_none() && from_registry.is_none() {
            return None;
        }
        let mut names: Vec<String> = from_config.cloned().unwrap_or_default();
        for name in from_registry.into_iter().flatten() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        Some(names)
    }

    /// Attaches policies to a principal (e.g. a certificate registered on first use).
    pub fn attach(&self, principal: &str, names: &[String]) {
        let mut dynamic = self.dynamic.write();
        let attached = dynamic.attachments.entry(principal.to_owned()).or_default();
        for name in names {
            if !attached.contains(name) {
                attached.push(name.clone());
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Replaces the registry layer (policies made through the API, every attachment the
    /// registry holds) with the registry's current state.
    pub fn replace_dynamic(
        &self,
        policies: HashMap<String, Arc<Policy>>,
        attachments: HashMap<String, Vec<String>>,
    ) {
        *self.dynamic.write() = DynamicPolicies {
            policies,
            attachments,
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Principals a policy is attached to (both layers).
    pub fn targets_of(&self, policy: &str) -> Vec<String> {
        let dynamic = self.dynamic.read();
        let mut targets: Vec<String> = self
            .config_attachments
            .iter()
            .chain(dynamic.attachments.iter())
            .filter(|(_, names)| names.iter().any(|name| name == policy))
            .map(|(principal, _)| principal.clone())
            .collect();
        targets.sort();
        targets.dedup();
        targets
    }

    /// The policies a principal has now, in attachment order.
    pub fn policies_of(&self, principal: &str) -> Vec<Arc<Policy>> {
        self.attached(principal)
            .unwrap_or_default()
            .iter()
            .filter_map(|name| self.get(name))
            .collect()
    }
}

/// Decides what one connection may do, remembering its decisions per resource name. Owned
/// by the connection task: no locks on the hot path. Kept small: every open connection
/// carries one.
pub struct ConnectionPolicy {
    store: Arc<PolicyStore>,
    principal: String,
    policies: Vec<Arc<Policy>>,
    generation: u64,
    pub context: RequestContext,
    /// Policies given with the connection, not looked up by principal.
    fixed_policies: bool,
    /// Resource name → the decisions known for it, two bits per action (see
    /// [`cached_decision`]). Boxed and made on the first cached decision: an idle
    /// connection has none.
    // Boxed on purpose: 8 bytes in every connection instead of a 48-byte empty map.
    #[allow(clippy::box_collection)]
    cache: Option<Box<HashMap<Box<str>, u32>>>,
}

/// A refused action: the full decision (with its reason) and the resource it concerned.
#[derive(Debug)]
pub struct Denied {
    pub action: Action,
    pub resource: String,
    pub decision: Decision,
}

// Two bits per action in a u32.
const _: () = assert!(Action::ALL.len() <= 16);

/// What the cache bits say about `action`: `Some(allowed)` once decided.
fn cached_decision(bits: u32, action: Action) -> Option<bool> {
    let shift = 2 * action as u32;
    (bits >> shift & 0b01 != 0).then_some(bits >> shift & 0b10 != 0)
}

fn with_decision(bits: u32, action: Action, allowed: bool) -> u32 {
    let shift = 2 * action as u32;
    bits & !(0b11 << shift) | (0b01 | u32::from(allowed) << 1) << shift
}

impl ConnectionPolicy {
    pub fn new(store: Arc<PolicyStore>, principal: &str, context: RequestContext) -> ConnectionPolicy {
        ConnectionPolicy {
            policies: store.policies_of(principal),
            generation: store.generation(),
            store,
            principal: principal.to_owned(),
            context,
            fixed_policies: false,
            cache: None,
        }
    }

    /// An authorizer whose policies came with the connection (a custom authorizer's
    /// answer) rather than from attachments: policy changes in the store do not touch it.
    pub fn with_policies(
        store: Arc<PolicyStore>,
        principal: &str,
        policies: Vec<Arc<Policy>>,
        context: RequestContext,
    ) -> ConnectionPolicy {
        let mut authorizer = ConnectionPolicy::new(store, principal, context);
        authorizer.policies = policies;
        authorizer.fixed_policies = true;
        authorizer
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Evaluates (without the cache) and returns the decision with its reason.
    pub fn decide(&self, action: Action, kind: ResourceKind, name: &str) -> Denied {
        let resource = resource_arn(&self.store.region, &self.store.account, kind, name);
        let decision = evaluate(&self.policies, action, &resource, &self.context);
        Denied {
            action,
            resource,
            decision,
        }
    }

    /// `Ok` when allowed. A cached allow costs one hash lookup, an uncached one a
    /// decision without any reason text; only a denial is evaluated again, with its reason.
    /// `iot:Connect` is decided once per connection and not cached.
    pub fn check(
        &mut self,
        action: Action,
        kind: ResourceKind,
        name: &str,
    ) -> Result<(), Box<Denied>> {
        self.refresh();
        let cached = self.cached(name);
        if cached_decision(cached, action) == Some(true) {
            return Ok(());
        }
        let mut arn = String::new();
        write_resource_arn(
            &mut arn,
            &self.store.region,
            &self.store.account,
            kind,
            name,
        );
        let allowed = decide(&self.policies, action, &arn, &self.context).is_allowed();
        if action != Action::Connect {
            let cache = self.cache.get_or_insert_default();
            if cache.len() >= MAX_CACHED_DECISIONS {
                cache.clear();
            }
            let bits = with_decision(cached, action, allowed);
            match cache.get_mut(name) {
                Some(known) => *known = bits,
                None => {
                    cache.insert(name.into(), bits);
                }
            }
        }
        if allowed {
            Ok(())
        } else {
            Err(Box::new(self.decide(action, kind, name)))
        }
    }

    /// Like [`ConnectionPolicy::check`], for decisions whose denial is silent (iot:Receive):
    /// returns `Some(denied)` only the first time a resource is refused, for one log line.
    pub fn check_quietly(
        &mut self,
        action: Action,
        kind: ResourceKind,
        name: &str,
    ) -> (bool, Option<Box<Denied>>) {
        self.refresh();
        if let Some(allowed) = cached_decision(self.cached(name), action) {
            return (allowed, None);
        }
        match self.check(action, kind, name) {
            Ok(()) => (true, None),
            Err(denied) => (false, Some(denied)),
        }
    }

    /// Picks up policy changes made since the cache was filled.
    fn refresh(&mut self) {
        let generation = self.store.generation();
        if generation != self.generation && !self.fixed_policies {
            self.policies = self.store.policies_of(&self.principal);
            self.generation = generation;
            self.cache = None;
        }
    }

    /// The cache bits for a resource name (0: nothing known).
    fn cached(&self, name: &str) -> u32 {
        self.cache
            .as_ref()
            .and_then(|cache| cache.get(name).copied())
            .unwrap_or(0)
    }
}

/// AWS's `actionType` names for the actions test-authorization accepts.
pub fn action_type(action: Action) -> &'static str {
    match action {
        Action::Connect => "CONNECT",
        Action::Publish => "PUBLISH",
        Action::Subscribe => "SUBSCRIBE",
        Action::Receive => "RECEIVE",
        other => other.as_str(),
    }
}

/// Parses an AWS `actionType` (`PUBLISH`) or an action name (`iot:Publish`).
pub fn parse_action(text: &str) -> Option<Action> {
    match text.to_ascii_uppercase().as_str() {
        "CONNECT" => Some(Action::Connect),
        "PUBLISH" => Some(Action::Publish),
        "SUBSCRIBE" => Some(Action::Subscribe),
        "RECEIVE" => Some(Action::Receive),
        _ => Action::parse(text),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TestAuthorizationError {
    #[error("principal {0:?} is unknown and no policies to add were given")]
    UnknownPrincipal(String),
    #[error("policy {0:?} does not exist")]
    UnknownPolicy(String),
}

/// What AWS's TestAuthorization answers for one action on some resources, plus our
/// `reason` for every resource: which policy and statement decided, or why nothing did.
/// One TestAuthorization question: may `principal` do `action` on `resources`?
#[derive(Clone, Copy)]
pub struct AuthorizationQuestion<'a> {
    pub principal: &'a str,
    /// A principal the registry knows (a certificate) even with nothing attached.
    pub known_principal: bool,
    pub policy_names_to_add: &'a [String],
    pub context: &'a RequestContext,
    pub action: Action,
    pub resources: &'a [String],
}

pub fn test_authorization(
    store: &PolicyStore,
    config: &Config,
    question: &AuthorizationQuestion<'_>,
) -> Result<serde_json::Value, TestAuthorizationError> {
    let AuthorizationQuestion {
        principal,
        known_principal,
        policy_names_to_add,
        context,
        action,
        resources,
    } = *question;
    let attached = store.attached(principal);
    if attached.is_none() && !known_principal && policy_names_to_add.is_empty() {
        return Err(TestAuthorizationError::UnknownPrincipal(
            principal.to_owned(),
        ));
    }
    let mut policies = store.policies_of(principal);
    for name in policy_names_to_add {
        let policy = store
            .get(name)
            .ok_or_else(|| TestAuthorizationError::UnknownPolicy(name.clone()))?;
        policies.push(policy);
    }
    let policy_ref = |name: &str| {
        serde_json::json!({
            "policyName": name,
            "policyArn": format!("arn:aws:iot:{}:{}:policy/{name}", config.region, config.account_id),
        })
    };
    let mut decision = AuthDecision::Allowed;
    let (mut allowed_by, mut explicit, mut reasons) = (Vec::new(), Vec::new(), Vec::new());
    for resource in resources {
        let outcome = evaluate(&policies, action, resource, context);
        match outcome.decision {
            AuthDecision::Allowed => allowed_by.extend(outcome.policy.clone()),
            AuthDecision::ExplicitDeny => {
                explicit.extend(outcome.policy.clone());
                decision = AuthDecision::ExplicitDeny;
            }
            AuthDecision::ImplicitDeny => {
                if decision == AuthDecision::Allowed {
                    decision = AuthDecision::ImplicitDeny;
                }
            }
        }
        reasons.push(serde_json::json!({"resource": resource, "reason": outcome.reason}));
    }
    let implicit: Vec<_> = if decision == AuthDecision::ImplicitDeny {
        policies
            .iter()
            .map(|policy| policy_ref(policy.name()))
            .collect()
    } else {
        Vec::new()
    };
    Ok(serde_json::json!({
        "authResults": [{
            "authInfo": {"actionType": action_type(action), "resources": resources},
            "allowed": {"policies": allowed_by.iter().map(|name| policy_ref(name)).collect::<Vec<_>>()},
            "denied": {
                "implicitDeny": {"policies": implicit},
                "explicitDeny": {"policies": explicit.iter().map(|name| policy_ref(name)).collect::<Vec<_>>()},
            },
            "authDecision": decision.as_str(),
            "missingContextValues": [],
            "reason": reasons.iter().map(|r| r["reason"].as_str().unwrap_or_default()).collect::<Vec<_>>().join("; "),
            "reasons": reasons,
        }]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(text: &str) -> Arc<PolicyStore> {
        let config = Config::parse(text).unwrap();
        Arc::new(PolicyStore::from_config(&config).unwrap())
    }

    const SEED: &str = r#"
[anonymous]
policies = ["seed"]
[[policies]]
name = "seed"
document = '''{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}"},
 {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:us-east-1:123456789012:topic/sensors/${iot:ClientId}/*"},
 {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:123456789012:topicfilter/sensors/*"}]}'''
"#;

    fn authorizer(store: Arc<PolicyStore>, client_id: &str) -> ConnectionPolicy {
        let context = RequestContext {
            client_id: Some(client_id.into()),
            ..RequestContext::default()
        };
        ConnectionPolicy::new(store, ANONYMOUS, context)
    }

    #[test]
    fn decisions_on_one_name_are_cached_per_action() {
        let mut auth = authorizer(store(SEED), "dev1");
        // Same name, different actions: Receive allowed on the topic, Subscribe only on
        // `sensors/*` filters, so the first must not answer for the second.
        let topic = "sensors/dev1/t";
        assert!(auth
            .check(Action::Receive, ResourceKind::Topic, topic)
            .is_ok());
        assert!(auth
            .check(Action::RetainPublish, ResourceKind::Topic, topic)
            .is_err());
        assert!(
            auth.check_quietly(Action::Receive, ResourceKind::Topic, topic)
                .0
        );
        let (allowed, denied) =
            auth.check_quietly(Action::RetainPublish, ResourceKind::Topic, topic);
        assert!(!allowed && denied.is_none(), "denial known from the cache");
        let bits = with_decision(
            with_decision(0, Action::Publish, true),
            Action::Publish,
            false,
        );
        assert_eq!(cached_decision(bits, Action::Publish), Some(false));
        assert_eq!(cached_decision(bits, Action::Subscribe), None);
    }

    #[test]
    fn seed_policy_allows_exactly_its_topics() {
        let mut auth = authorizer(store(SEED), "dev1");
        assert!(auth
            .check(Action::Connect, ResourceKind::Client, "dev1")
            .is_ok());
        assert!(auth
            .check(Action::Publish, ResourceKind::Topic, "sensors/dev1/temp")
            .is_ok());
        let denied = auth
            .check(Action::Publish, ResourceKind::Topic, "sensors/dev2/temp")
            .unwrap_err();
        assert!(denied.decision.reason.contains("no statement allowed"));
        assert!(denied.resource.ends_with("topic/sensors/dev2/temp"));
        assert!(auth
            .check(Action::Subscribe, ResourceKind::TopicFilter, "sensors/#")
            .is_ok());
    }

    #[test]
    fn denial_is_reported_once_when_quiet() {
        let mut auth = authorizer(store(SEED), "dev1");
        let (allowed, first) = auth.check_quietly(Action::Receive, ResourceKind::Topic, "x");
        assert!(!allowed && first.is_some());
        let (allowed, again) = auth.check_quietly(Action::Receive, ResourceKind::Topic, "x");
        assert!(!allowed && again.is_none());
    }

    #[test]
    fn no_policies_is_a_default_deny() {
        let mut auth = authorizer(store(""), "c");
        assert!(auth
            .check(Action::Connect, ResourceKind::Client, "c")
            .is_err());
    }

    #[test]
    fn attaching_a_policy_invalidates_cached_denials() {
        let store = store("");
        let mut auth = authorizer(store.clone(), "c");
        assert!(auth
            .check(Action::Publish, ResourceKind::Topic, "t")
            .is_err());
        store.attach(ANONYMOUS, &[DEV_ALLOW_ALL.to_owned()]);
        assert!(auth
            .check(Action::Publish, ResourceKind::Topic, "t")
            .is_ok());
    }

    #[test]
    fn test_authorization_answers_like_aws_with_reasons() {
        let config = Config::parse(SEED).unwrap();
        let store = PolicyStore::from_config(&config).unwrap();
        let context = RequestContext {
            client_id: Some("dev1".into()),
            ..RequestContext::default()
        };
        let arn = "arn:aws:iot:us-east-1:123456789012:topic/sensors/dev1/t".to_owned();
        let answer = test_authorization(
            &store,
            &config,
            &AuthorizationQuestion {
                principal: ANONYMOUS,
                known_principal: false,
                policy_names_to_add: &[],
                context: &context,
                action: Action::Publish,
                resources: &[arn],
            },
        )
        .unwrap();
        let result = &answer["authResults"][0];
        assert_eq!(result["authDecision"], "ALLOWED");
        assert_eq!(result["allowed"]["policies"][0]["policyName"], "seed");
        assert_eq!(result["authInfo"]["actionType"], "PUBLISH");
        let other = "arn:aws:iot:us-east-1:123456789012:topic/sensors/dev2/t".to_owned();
        let answer = test_authorization(
            &store,
            &config,
            &AuthorizationQuestion {
                principal: ANONYMOUS,
                known_principal: false,
                policy_names_to_add: &[],
                context: &context,
                action: Action::Publish,
                resources: &[other],
            },
        )
        .unwrap();
        let result = &answer["authResults"][0];
        assert_eq!(result["authDecision"], "IMPLICIT_DENY");
        assert!(result["reasons"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no statement allowed"));
        assert!(test_authorization(
            &store,
            &config,
            &AuthorizationQuestion {
                principal: "stranger",
                known_principal: false,
                policy_names_to_add: &[],
                context: &context,
                action: Action::Publish,
                resources: &[],
            },
        )
        .is_err());
    }

    #[test]
    fn unparsable_policy_is_a_startup_error_naming_it() {
        let config =
            Config::parse("[[policies]]\nname = \"broken\"\ndocument = \"{not json\"").unwrap();
        let error = PolicyStore::from_config(&config).err().unwrap().to_string();
        assert!(error.contains("broken"), "{error}");
    }
}
