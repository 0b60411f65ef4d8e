//! The policies the broker knows and which principal has which (policy evaluation itself
//! is the pure [`iot::policy`] module; a connection's cached decisions are in
//! `connection_policy`, TestAuthorization in `test_authorization`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use iot::{Policy, RequestContext};
use parking_lot::RwLock;

use super::roles::{role_name_of_arn, CognitoPrincipal, RoleRule};
use crate::config::{Config, ConfigError, DEV_ALLOW_ALL};
use crate::metrics::Metrics;
use crate::registry::{IdentityPoolRecord, ThingRecord, AUTHENTICATED, UNAUTHENTICATED};

/// The anonymous principal: clients of the plain listener.
pub const ANONYMOUS: &str = "anonymous";

/// The principal of a connection signed with the control plane's admin key.
pub const ADMINISTRATOR: &str = "admin";

const DEV_ALLOW_ALL_DOCUMENT: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#;

/// The name decisions for the admin's MQTT connection report (IAM's policy of that name
/// allows `iot:*`, as `dev-allow-all` does).
pub const ADMINISTRATOR_POLICY: &str = "AdministratorAccess";

/// A config document, inline or from its file (validated to be exactly one).
fn read_document(
    owner: &str,
    inline: Option<&String>,
    file: Option<&std::path::PathBuf>,
) -> Result<String, ConfigError> {
    match (inline, file) {
        (Some(document), _) => Ok(document.clone()),
        (None, Some(file)) => std::fs::read_to_string(file).map_err(|error| {
            ConfigError::Invalid(format!("{owner}: cannot read {}: {error}", file.display()))
        }),
        (None, None) => Err(ConfigError::Invalid(format!("{owner} has no document"))),
    }
}

/// A role's permissions policy, in the IoT policy grammar (actions of other services
/// parse and match nothing: a role for an app usually allows more than `iot:`).
fn parse_role(owner: &str, name: &str, document: &str) -> Result<Arc<Policy>, ConfigError> {
    Policy::parse(name, document)
        .map(Arc::new)
        .map_err(|error| ConfigError::Invalid(format!("{owner}: {error}")))
}

/// The built-in `dev-allow-all` document.
pub fn dev_allow_all_document() -> &'static str {
    DEV_ALLOW_ALL_DOCUMENT
}

/// Every policy the broker knows, by name, and which principal has which. Two layers: what
/// the config file declares (fixed for the broker's life) and what the registry holds
/// (policies and attachments made through the API or `pubsub iot`, replaced wholesale
/// when the registry changes). The generation changes with every change, which
/// invalidates every connection's cached decisions.
pub struct PolicyStore {
    /// Where resource ARNs point: the config's region and account.
    pub(super) region: String,
    pub(super) account: String,
    config_policies: HashMap<String, Arc<Policy>>,
    config_attachments: HashMap<String, Vec<String>>,
    /// IAM roles by name (`[[roles]]`, and those config pools' role policies define): the
    /// permissions policy of each, evaluated like an IoT policy.
    roles: HashMap<String, Arc<Policy>>,
    /// Identity pool id → the names of its unauthenticated and authenticated roles (from
    /// the registry, where SetIdentityPoolRoles keeps their ARNs).
    pool_roles: RwLock<HashMap<String, [Option<String>; 2]>>,
    dynamic: RwLock<DynamicPolicies>,
    /// The registry's things as the `${iot:Connection.Thing.*}` variables see them, by name.
    things: RwLock<HashMap<String, ThingFacts>>,
    generation: AtomicU64,
    /// What the control plane's admin is allowed over MQTT (the console's connection):
    /// `iot:*`, as IAM's AdministratorAccess allows an IAM user on IoT Core.
    pub(crate) administrator: Arc<Policy>,
    /// The broker's metrics: made here, the first part of a broker to exist, and shared
    /// by every connection's decisions (denials are counted where they are decided).
    pub(crate) metrics: Arc<Metrics>,
}

/// What a thing gives the policy variables of a connection attached to it.
struct ThingFacts {
    type_name: Option<String>,
    attributes: Vec<(String, String)>,
    principals: Vec<String>,
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
            let owner = format!("policy {:?}", declared.name);
            let document = read_document(
                &owner,
                declared.document.as_ref(),
                declared.document_file.as_ref(),
            )?;
            let policy = Policy::parse(&declared.name, &document)
                .map_err(|error| ConfigError::Invalid(error.to_string()))?;
            policies.insert(declared.name.clone(), Arc::new(policy));
        }
        let mut roles = HashMap::new();
        for role in &config.roles {
            let owner = format!("role {:?}", role.name);
            let document = read_document(&owner, role.policy.as_ref(), role.policy_file.as_ref())?;
            roles.insert(
                role.name.clone(),
                parse_role(&owner, &role.name, &document)?,
            );
        }
        for pool in &config.identity_pools {
            for authenticated in [false, true] {
                let (inline, file) = pool.role_policy(authenticated);
                if inline.is_none() && file.is_none() {
                    continue;
                }
                let name = pool.role_name(authenticated);
                let owner = format!("identity pool {:?} role {name:?}", pool.name);
                let document = read_document(&owner, inline, file)?;
                roles.insert(name.clone(), parse_role(&owner, &name, &document)?);
            }
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
            roles,
            pool_roles: RwLock::new(HashMap::new()),
            dynamic: RwLock::new(DynamicPolicies::default()),
            things: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(1),
            administrator: Arc::new(
                Policy::parse(ADMINISTRATOR_POLICY, DEV_ALLOW_ALL_DOCUMENT)
                    .expect("the built-in policy parses"),
            ),
            metrics: Arc::new(Metrics::default()),
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

    /// Replaces the things with the registry's current ones; connections re-resolve their
    /// thing variables on their next decision (the generation moves).
    pub fn replace_things(&self, things: Vec<ThingRecord>) {
        let things = things
            .into_iter()
            .map(|thing| {
                let facts = ThingFacts {
                    type_name: thing.thing_type_name,
                    attributes: thing.attributes.into_iter().collect(),
                    principals: thing.principals,
                };
                (thing.thing_name, facts)
            })
            .collect();
        *self.things.write() = things;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Sets the `${iot:Connection.Thing.*}` facts of a request as IoT Core resolves them:
    /// the thing named like the client id, if `principal` is attached to it. Otherwise
    /// none of them (IsAttached is then `false`, and statements using the others do not
    /// match).
    pub fn resolve_thing(&self, context: &mut RequestContext, principal: &str) {
        let things = self.things.read();
        let attached = context.client_id.as_deref().and_then(|client_id| {
            things
                .get(client_id)
                .filter(|thing| thing.principals.iter().any(|p| p == principal))
                .map(|thing| (client_id.to_owned(), thing))
        });
        match attached {
            Some((name, thing)) => {
                let facts = context.facts_mut();
                facts.thing_name = Some(name);
                facts.thing_type_name = thing.type_name.clone();
                facts.thing_attributes = thing.attributes.clone();
            }
            None => {
                if let Some(facts) = context.principal.as_deref_mut() {
                    facts.thing_name = None;
                    facts.thing_type_name = None;
                    facts.thing_attributes = Vec::new();
                }
            }
        }
    }

    /// Replaces the identity pools' role names with the registry's (ARNs of roles not of the
    /// form `arn:aws:iam::<account>:role/<name>` name no role).
    pub fn replace_pool_roles(&self, pools: &[IdentityPoolRecord]) {
        let roles = pools
            .iter()
            .map(|pool| {
                let name = |kind: &str| {
                    pool.roles
                        .get(kind)
                        .and_then(|arn| role_name_of_arn(arn))
                        .map(str::to_owned)
                };
                (
                    pool.identity_pool_id.clone(),
                    [name(UNAUTHENTICATED), name(AUTHENTICATED)],
                )
            })
            .collect();
        *self.pool_roles.write() = roles;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a role of this name is declared.
    pub fn has_role(&self, name: &str) -> bool {
        self.roles.contains_key(name)
    }

    /// The rule a Cognito identity's decisions follow: its pool's role for its kind, or
    /// why it has none.
    pub(crate) fn role_rule(&self, cognito: &CognitoPrincipal) -> RoleRule {
        let kind = if cognito.authenticated {
            AUTHENTICATED
        } else {
            UNAUTHENTICATED
        };
        let pool_roles = self.pool_roles.read();
        let role = match pool_roles.get(&cognito.pool_id) {
            None => Err(format!("identity pool {} does not exist", cognito.pool_id)),
            Some(names) => match &names[usize::from(cognito.authenticated)] {
                None => Err(format!(
                    "identity pool {} has no {kind} role (SetIdentityPoolRoles, or {kind}_role_policy in [[identity_pools]])",
                    cognito.pool_id
                )),
                Some(name) => self.roles.get(name).cloned().ok_or_else(|| {
                    format!(
                        "the {kind} role {name:?} of identity pool {} is not declared in [[roles]]",
                        cognito.pool_id
                    )
                }),
            },
        };
        RoleRule {
            authenticated: cognito.authenticated,
            role,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::connection_policy::{cached_decision, with_decision, ConnectionPolicy};
    use crate::auth::test_authorization::*;
    use iot::{Action, RequestContext, ResourceKind};

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
                cognito: None,
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
                cognito: None,
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
                cognito: None,
            },
        )
        .is_err());
    }

    const THING_POLICY: &str = r#"
[[credentials]]
access_key_id = "AKIATHING"
secret_access_key = "s"
principal = "us-east-1:dev"
policies = ["things"]
[[policies]]
name = "things"
document = '''{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}},
 {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:123456789012:topic/${iot:Connection.Thing.ThingName}/${iot:Connection.Thing.Attributes[room]}"}]}'''
"#;

    fn thing(name: &str, principals: &[&str], room: &str) -> ThingRecord {
        ThingRecord {
            thing_name: name.into(),
            thing_id: "id".into(),
            thing_type_name: Some("lamp".into()),
            attributes: [("room".to_string(), room.to_string())].into(),
            version: 1,
            principals: principals.iter().map(|p| p.to_string()).collect(),
            creation_date: 0,
        }
    }

    fn thing_connection(store: &Arc<PolicyStore>, client_id: &str) -> ConnectionPolicy {
        let context = RequestContext {
            client_id: Some(client_id.into()),
            ..RequestContext::default()
        };
        ConnectionPolicy::new(store.clone(), "us-east-1:dev", context).with_thing_facts()
    }

    #[test]
    fn thing_variables_resolve_only_for_an_attached_principal_whose_client_id_is_the_thing() {
        let store = store(THING_POLICY);
        store.replace_things(vec![
            thing("lamp-1", &["us-east-1:dev"], "kitchen"),
            thing("lamp-2", &["us-east-1:other"], "hall"),
        ]);
        let mut attached = thing_connection(&store, "lamp-1");
        let facts = attached.context.facts();
        assert_eq!(facts.thing_name.as_deref(), Some("lamp-1"));
        assert_eq!(facts.thing_type_name.as_deref(), Some("lamp"));
        assert!(attached
            .check(Action::Connect, ResourceKind::Client, "lamp-1")
            .is_ok());
        assert!(attached
            .check(Action::Publish, ResourceKind::Topic, "lamp-1/kitchen")
            .is_ok());
        assert!(attached
            .check(Action::Publish, ResourceKind::Topic, "lamp-1/hall")
            .is_err());
        // The thing exists, but this principal is not attached to it.
        let mut not_attached = thing_connection(&store, "lamp-2");
        assert_eq!(not_attached.context.facts().thing_name, None);
        assert!(not_attached
            .check(Action::Connect, ResourceKind::Client, "lamp-2")
            .is_err());
        // No thing of that name.
        let mut no_thing = thing_connection(&store, "lamp-3");
        assert!(no_thing
            .check(Action::Connect, ResourceKind::Client, "lamp-3")
            .is_err());
        // Without thing facts (an anonymous or authorizer connection) nothing resolves.
        let context = RequestContext {
            client_id: Some("lamp-1".into()),
            ..RequestContext::default()
        };
        let plain = ConnectionPolicy::new(store.clone(), "us-east-1:dev", context);
        assert_eq!(plain.context.facts().thing_name, None);
    }

    #[test]
    fn a_changed_thing_is_seen_by_the_next_decision() {
        let store = store(THING_POLICY);
        store.replace_things(vec![thing("lamp-1", &["us-east-1:dev"], "kitchen")]);
        let mut connection = thing_connection(&store, "lamp-1");
        assert!(connection
            .check(Action::Publish, ResourceKind::Topic, "lamp-1/kitchen")
            .is_ok());
        store.replace_things(vec![thing("lamp-1", &["us-east-1:dev"], "attic")]);
        assert!(connection
            .check(Action::Publish, ResourceKind::Topic, "lamp-1/kitchen")
            .is_err());
        assert!(connection
            .check(Action::Publish, ResourceKind::Topic, "lamp-1/attic")
            .is_ok());
        store.replace_things(vec![thing("lamp-1", &[], "attic")]);
        assert!(
            connection
                .check(Action::Publish, ResourceKind::Topic, "lamp-1/attic")
                .is_err(),
            "detached: the thing variables no longer resolve"
        );
        assert_eq!(connection.context.facts().thing_name, None);
    }

    fn pool(id: &str, unauthenticated: Option<&str>) -> IdentityPoolRecord {
        IdentityPoolRecord {
            identity_pool_id: id.into(),
            identity_pool_name: id.into(),
            allow_unauthenticated: true,
            credentials_ttl_secs: 60,
            roles: unauthenticated
                .map(|name| {
                    let arn = format!("arn:aws:iam::123456789012:role/{name}");
                    (UNAUTHENTICATED.to_owned(), arn)
                })
                .into_iter()
                .collect(),
            developer_provider_name: None,
            cognito_identity_providers: Vec::new(),
            open_id_connect_provider_arns: Vec::new(),
        }
    }

    #[test]
    fn a_guest_connection_follows_its_pool_role_as_it_changes() {
        let store = store(&format!(
            "{SEED}\n[[roles]]\nname = \"guests\"\npolicy = '{DEV_ALLOW_ALL_DOCUMENT}'\n"
        ));
        // An IoT policy attached to the guest: not consulted.
        store.attach("us-east-1:guest", &[DEV_ALLOW_ALL.to_owned()]);
        store.replace_pool_roles(&[pool("us-east-1:pool", None)]);
        let guest = CognitoPrincipal {
            pool_id: "us-east-1:pool".into(),
            authenticated: false,
        };
        let context = RequestContext {
            client_id: Some("app".into()),
            ..RequestContext::default()
        };
        let mut connection =
            ConnectionPolicy::new(store.clone(), "us-east-1:guest", context).with_cognito(&guest);
        let denied = connection
            .check(Action::Publish, ResourceKind::Topic, "t")
            .unwrap_err();
        assert!(
            denied
                .decision
                .reason
                .contains("has no unauthenticated role"),
            "{}",
            denied.decision.reason
        );
        // SetIdentityPoolRoles reaches the open connection at its next decision…
        store.replace_pool_roles(&[pool("us-east-1:pool", Some("guests"))]);
        assert!(connection
            .check(Action::Publish, ResourceKind::Topic, "t")
            .is_ok());
        assert!(connection
            .check(Action::Publish, ResourceKind::Topic, "t")
            .is_ok());
        // …and so does a role the config does not declare (nothing allowed).
        store.replace_pool_roles(&[pool("us-east-1:pool", Some("gone"))]);
        let denied = connection
            .check(Action::Publish, ResourceKind::Topic, "t")
            .unwrap_err();
        assert!(
            denied.decision.reason.contains("not declared in [[roles]]"),
            "{}",
            denied.decision.reason
        );
    }

    #[test]
    fn unparsable_policy_is_a_startup_error_naming_it() {
        let config =
            Config::parse("[[policies]]\nname = \"broken\"\ndocument = \"{not json\"").unwrap();
        let error = PolicyStore::from_config(&config).err().unwrap().to_string();
        assert!(error.contains("broken"), "{error}");
    }
}
