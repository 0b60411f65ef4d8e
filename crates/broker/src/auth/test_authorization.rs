//! TestAuthorization: what AWS answers for an action on some resources, plus our reason
//! (which policy and statement decided, or why nothing did).

use iot::{evaluate, Action, AuthDecision, RequestContext};

use super::policy::PolicyStore;
use super::roles::{self, role_arn, CognitoPrincipal};
use crate::config::Config;

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
    /// A Cognito identity of an identity pool: IoT Core's rule for Cognito identities
    /// decides (`roles`), and the answer names which side denied.
    pub cognito: Option<&'a CognitoPrincipal>,
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
        cognito,
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
    let rule = cognito.map(|cognito| store.role_rule(cognito));
    let role_ref = |name: &str| serde_json::json!({"policyName": name, "policyArn": role_arn(&config.account_id, name)});
    let mut decision = AuthDecision::Allowed;
    let (mut allowed_by, mut explicit, mut reasons) = (Vec::new(), Vec::new(), Vec::new());
    let mut implicit_sides = (false, false);
    for resource in resources {
        let outcome = match &rule {
            None => evaluate(&policies, action, resource, context),
            Some(rule) => roles::decision(
                rule,
                principal,
                &policies,
                !rule.authenticated && !policies.is_empty(),
                action,
                resource,
                context,
            ),
        };
        // Which policies allowed or denied: for a Cognito identity, each side's own.
        let sides = rule
            .as_ref()
            .map(|rule| roles::sides(rule, &policies, action, resource, context));
        match outcome.decision {
            AuthDecision::Allowed => match &sides {
                None => allowed_by.extend(outcome.policy.clone().map(|name| policy_ref(&name))),
                Some(sides) => {
                    let role = sides.role.as_ref().and_then(|role| role.policy.clone());
                    allowed_by.extend(role.map(|name| role_ref(&name)));
                    let iot = sides.iot.as_ref().and_then(|iot| iot.policy.clone());
                    allowed_by.extend(iot.map(|name| policy_ref(&name)));
                }
            },
            AuthDecision::ExplicitDeny => {
                let by_role = sides.as_ref().is_some_and(|sides| {
                    sides
                        .role
                        .as_ref()
                        .is_some_and(|role| role.decision == AuthDecision::ExplicitDeny)
                });
                explicit.extend(outcome.policy.clone().map(|name| {
                    if by_role {
                        role_ref(&name)
                    } else {
                        policy_ref(&name)
                    }
                }));
                decision = AuthDecision::ExplicitDeny;
            }
            AuthDecision::ImplicitDeny => {
                if decision == AuthDecision::Allowed {
                    decision = AuthDecision::ImplicitDeny;
                }
                match &sides {
                    None => implicit_sides.1 = true,
                    Some(sides) => {
                        let role_denied =
                            !sides.role.as_ref().is_some_and(|role| role.is_allowed());
                        implicit_sides.0 |= role_denied;
                        implicit_sides.1 |= !role_denied;
                    }
                }
            }
        }
        reasons.push(serde_json::json!({"resource": resource, "reason": outcome.reason}));
    }
    let mut implicit: Vec<_> = Vec::new();
    if decision == AuthDecision::ImplicitDeny {
        if implicit_sides.0 {
            let role = rule.as_ref().and_then(|rule| rule.role.as_ref().ok());
            implicit.extend(role.map(|role| role_ref(role.name())));
        }
        if implicit_sides.1 {
            implicit.extend(policies.iter().map(|policy| policy_ref(policy.name())));
        }
    }
    allowed_by.dedup();
    explicit.dedup();
    Ok(serde_json::json!({
        "authResults": [{
            "authInfo": {"actionType": action_type(action), "resources": resources},
            "allowed": {"policies": allowed_by},
            "denied": {
                "implicitDeny": {"policies": implicit},
                "explicitDeny": {"policies": explicit},
            },
            "authDecision": decision.as_str(),
            "missingContextValues": [],
            "reason": reasons.iter().map(|r| r["reason"].as_str().unwrap_or_default()).collect::<Vec<_>>().join("; "),
            "reasons": reasons,
        }]
    }))
}
