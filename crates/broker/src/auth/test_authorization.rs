//! TestAuthorization: what AWS answers for an action on some resources, plus our reason
//! (which policy and statement decided, or why nothing did).

use iot::{evaluate, Action, AuthDecision, RequestContext};

use super::policy::PolicyStore;
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
