//! IoT Core's rule for Cognito identities: a guest (unauthenticated) identity may do
//! exactly what its identity pool's unauthenticated role policy allows — IoT policies
//! attached to it are not consulted; an authenticated identity needs both its pool's
//! authenticated role policy AND an IoT policy attached to its identity id to allow an
//! action. An explicit deny in either wins. Pure: the policies are handed in.
//!
//! Roles are IAM roles reduced to what IoT Core reads of them: a name and a permissions
//! policy (the `iot:` actions, in the IoT policy grammar). A pool names its two roles by
//! ARN (`arn:aws:iam::<account>:role/<name>`), which [`role_name_of_arn`] maps to the
//! `[[roles]]` entry (or the role a config pool's `<kind>_role_policy` defines).

use std::sync::Arc;

use iot::{decide, evaluate, Action, AuthDecision, Decision, Policy, RequestContext};

/// What temporary credentials from an identity pool stand for besides their identity id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoPrincipal {
    pub pool_id: String,
    /// Whether the credentials were issued for a verified login.
    pub authenticated: bool,
}

/// The role policy a Cognito identity's decisions go through, or why there is none (then
/// nothing is allowed).
#[derive(Debug, Clone)]
pub(crate) struct RoleRule {
    pub(crate) authenticated: bool,
    pub(crate) role: Result<Arc<Policy>, String>,
}

impl RoleRule {
    fn kind(&self) -> &'static str {
        if self.authenticated {
            "authenticated"
        } else {
            "unauthenticated"
        }
    }
}

/// The role name an IAM role ARN names (`arn:aws:iam::<account>:role/<path/>name`), if it
/// is one.
pub fn role_name_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (arn_, partition, service, region, _account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if arn_ != "arn" || partition.is_empty() || service != "iam" || !region.is_empty() {
        return None;
    }
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    (!name.is_empty()).then_some(name)
}

/// The ARN of a role of this account.
pub fn role_arn(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role/{name}")
}

/// The hot path: whether the rule allows, without any reason text.
pub(crate) fn allowed(
    rule: &RoleRule,
    attached: &[Arc<Policy>],
    action: Action,
    resource: &str,
    context: &RequestContext,
) -> bool {
    let Ok(role) = &rule.role else {
        return false;
    };
    decide(std::slice::from_ref(role), action, resource, context).is_allowed()
        && (!rule.authenticated || decide(attached, action, resource, context).is_allowed())
}

/// Both sides' decisions as TestAuthorization reports them: the role's (`None` when the
/// pool has no usable role) and the IoT policies' (`None` for a guest: not consulted).
pub(crate) struct Sides {
    pub(crate) role: Option<Decision>,
    pub(crate) iot: Option<Decision>,
}

pub(crate) fn sides(
    rule: &RoleRule,
    attached: &[Arc<Policy>],
    action: Action,
    resource: &str,
    context: &RequestContext,
) -> Sides {
    Sides {
        role: rule
            .role
            .as_ref()
            .ok()
            .map(|role| evaluate(std::slice::from_ref(role), action, resource, context)),
        iot: rule
            .authenticated
            .then(|| evaluate(attached, action, resource, context)),
    }
}

/// What an implicit deny's reason adds to "does not allow <action> on <resource>": its
/// parenthesis (how many policies were checked, which statement was skipped), not the
/// words already said.
fn details(decision: &Decision, action: Action, resource: &str) -> String {
    let said = format!("no statement allowed {} on {resource} ", action.as_str());
    match decision.reason.strip_prefix(&said) {
        Some(rest) => format!(" {rest}"),
        None => format!(": {}", decision.reason),
    }
}

/// The decision with its reason, naming which of the two policies denied. `identity_id`
/// names the identity; `guest_has_attached`: IoT policies are attached to a guest, which
/// the reason points out (they work on no AWS account).
pub(crate) fn decision(
    rule: &RoleRule,
    identity_id: &str,
    attached: &[Arc<Policy>],
    guest_has_attached: bool,
    action: Action,
    resource: &str,
    context: &RequestContext,
) -> Decision {
    let kind = rule.kind();
    let Sides { role, iot } = sides(rule, attached, action, resource, context);
    let role_denial = |decision: &Decision| match decision.decision {
        AuthDecision::ExplicitDeny => format!(
            "the identity pool's {kind} role policy explicitly denies {} on {resource}: {}",
            action.as_str(),
            decision.reason
        ),
        _ => format!(
            "the identity pool's {kind} role policy does not allow {} on {resource}{}",
            action.as_str(),
            details(decision, action, resource)
        ),
    };
    let iot_denial = |decision: &Decision| {
        match decision.decision {
        AuthDecision::ExplicitDeny => format!(
            "an IoT policy attached to identity {identity_id} explicitly denies {} on {resource}: {}",
            action.as_str(),
            decision.reason
        ),
        _ => format!(
            "no IoT policy attached to identity {identity_id} allows {} on {resource}{}",
            action.as_str(),
            details(decision, action, resource)
        ),
    }
    };
    let with_reason = |decision: &Decision, reason: String| Decision {
        reason,
        ..decision.clone()
    };
    let explicit = |decision: &Option<Decision>| {
        decision
            .as_ref()
            .filter(|d| d.decision == AuthDecision::ExplicitDeny)
            .cloned()
    };
    // An explicit deny on either side decides; then a missing role; then the role's
    // implicit deny; then the IoT policies'.
    if let Some(denied) = explicit(&role) {
        return with_reason(&denied, role_denial(&denied));
    }
    if let Some(denied) = explicit(&iot) {
        return with_reason(&denied, iot_denial(&denied));
    }
    let Some(role) = role else {
        let why = rule.role.as_ref().err().cloned().unwrap_or_default();
        return Decision {
            decision: AuthDecision::ImplicitDeny,
            policy: None,
            statement: None,
            sid: None,
            reason: format!(
                "the identity pool's {kind} role policy does not allow {} on {resource}: {why}",
                action.as_str()
            ),
        };
    };
    if !role.is_allowed() {
        let mut reason = role_denial(&role);
        if guest_has_attached {
            reason.push_str(&format!(
                " (IoT policies attached to the guest identity {identity_id} are not consulted: IoT Core grants an unauthenticated identity only its role's permissions)"
            ));
        }
        return with_reason(&role, reason);
    }
    match iot {
        Some(iot) if !iot.is_allowed() => with_reason(&iot, iot_denial(&iot)),
        Some(iot) => with_reason(
            &iot,
            format!(
                "allowed by the identity pool's {kind} role policy ({}) and {}",
                role.reason, iot.reason
            ),
        ),
        None => role,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:iot:us-east-1:123456789012";

    fn policy(name: &str, statements: &str) -> Arc<Policy> {
        let document = format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#);
        Arc::new(Policy::parse(name, &document).unwrap())
    }

    fn allow_publish(name: &str) -> Arc<Policy> {
        policy(
            name,
            &format!(r#"{{"Effect":"Allow","Action":"iot:Publish","Resource":"{ARN}:topic/t/*"}}"#),
        )
    }

    fn deny_publish(name: &str) -> Arc<Policy> {
        policy(
            name,
            &format!(
                r#"{{"Effect":"Allow","Action":"iot:*","Resource":"*"}},{{"Sid":"no","Effect":"Deny","Action":"iot:Publish","Resource":"{ARN}:topic/t/secret"}}"#
            ),
        )
    }

    fn rule(authenticated: bool, role: Option<Arc<Policy>>) -> RoleRule {
        RoleRule {
            authenticated,
            role: role.ok_or_else(|| "the identity pool has no role".to_owned()),
        }
    }

    fn ask(rule: &RoleRule, attached: &[Arc<Policy>], topic: &str) -> Decision {
        let resource = format!("{ARN}:topic/{topic}");
        let context = RequestContext::default();
        let decided = decision(
            rule,
            "us-east-1:id",
            attached,
            !attached.is_empty(),
            Action::Publish,
            &resource,
            &context,
        );
        assert_eq!(
            allowed(rule, attached, Action::Publish, &resource, &context),
            decided.is_allowed(),
            "the hot path and the reasoned decision must agree: {decided:?}"
        );
        decided
    }

    #[test]
    fn authenticated_needs_both_the_role_and_an_attached_iot_policy() {
        let role = allow_publish("Cognito_appAuth_Role");
        let iot = allow_publish("iotPolicy");
        let role_only = ask(&rule(true, Some(role.clone())), &[], "t/1");
        assert!(!role_only.is_allowed());
        assert_eq!(
            role_only.reason,
            format!("no IoT policy attached to identity us-east-1:id allows iot:Publish on {ARN}:topic/t/1 (0 policies checked)")
        );
        assert!(
            role_only
                .reason
                .starts_with("no IoT policy attached to identity us-east-1:id allows iot:Publish"),
            "{}",
            role_only.reason
        );
        let iot_only = ask(
            &rule(true, Some(allow_publish("narrow-role"))),
            std::slice::from_ref(&iot),
            "u/1",
        );
        assert!(!iot_only.is_allowed());
        assert!(
            iot_only
                .reason
                .starts_with("the identity pool's authenticated role policy does not allow"),
            "{}",
            iot_only.reason
        );
        let no_role = ask(&rule(true, None), std::slice::from_ref(&iot), "t/1");
        assert!(!no_role.is_allowed());
        assert!(no_role.reason.contains("has no role"), "{}", no_role.reason);
        let both = ask(&rule(true, Some(role)), &[iot], "t/1");
        assert!(both.is_allowed(), "{}", both.reason);
        assert!(
            both.reason.contains("Cognito_appAuth_Role"),
            "{}",
            both.reason
        );
        assert!(both.reason.contains("iotPolicy"), "{}", both.reason);
    }

    #[test]
    fn an_explicit_deny_on_either_side_wins() {
        let allow_all = policy(
            "all",
            r#"{"Effect":"Allow","Action":"iot:*","Resource":"*"}"#,
        );
        let denied_by_role = ask(
            &rule(true, Some(deny_publish("role"))),
            std::slice::from_ref(&allow_all),
            "t/secret",
        );
        assert_eq!(denied_by_role.decision, AuthDecision::ExplicitDeny);
        assert_eq!(denied_by_role.policy.as_deref(), Some("role"));
        assert!(
            denied_by_role
                .reason
                .starts_with("the identity pool's authenticated role policy explicitly denies"),
            "{}",
            denied_by_role.reason
        );
        let denied_by_iot = ask(
            &rule(true, Some(allow_all.clone())),
            &[deny_publish("iot")],
            "t/secret",
        );
        assert_eq!(denied_by_iot.decision, AuthDecision::ExplicitDeny);
        assert_eq!(denied_by_iot.sid.as_deref(), Some("no"));
        assert!(
            denied_by_iot
                .reason
                .starts_with("an IoT policy attached to identity us-east-1:id explicitly denies"),
            "{}",
            denied_by_iot.reason
        );
        // A guest's role deny wins too; the allowed neighbour stays allowed.
        let guest = rule(false, Some(deny_publish("guest-role")));
        assert_eq!(
            ask(&guest, &[], "t/secret").decision,
            AuthDecision::ExplicitDeny
        );
        assert!(ask(&guest, &[], "t/open").is_allowed());
    }

    #[test]
    fn a_guest_gets_its_role_and_never_its_attached_iot_policies() {
        let iot = allow_publish("myIOTPolicy");
        let refused = ask(&rule(false, None), std::slice::from_ref(&iot), "t/1");
        assert!(!refused.is_allowed());
        assert!(
            refused
                .reason
                .starts_with("the identity pool's unauthenticated role policy does not allow"),
            "{}",
            refused.reason
        );
        let narrow = ask(
            &rule(false, Some(allow_publish("Cognito_appUnauth_Role"))),
            std::slice::from_ref(&iot),
            "u/1",
        );
        assert!(!narrow.is_allowed());
        assert!(
            narrow.reason.contains("are not consulted"),
            "a guest with an IoT policy attached is told why it does not count: {}",
            narrow.reason
        );
        let role_only = ask(
            &rule(false, Some(allow_publish("Cognito_appUnauth_Role"))),
            &[],
            "t/1",
        );
        assert!(role_only.is_allowed(), "{}", role_only.reason);
        assert_eq!(role_only.policy.as_deref(), Some("Cognito_appUnauth_Role"));
    }

    #[test]
    fn role_arns_name_their_role() {
        assert_eq!(
            role_name_of_arn("arn:aws:iam::123456789012:role/Cognito_appUnauth_Role"),
            Some("Cognito_appUnauth_Role")
        );
        assert_eq!(
            role_name_of_arn("arn:aws:iam::123456789012:role/service-role/app"),
            Some("app")
        );
        for not_a_role in [
            "arn:aws:iam::123456789012:user/alice",
            "arn:aws:iot:us-east-1:123456789012:role/x",
            "Cognito_appUnauth_Role",
            "arn:aws:iam::123456789012:role/",
        ] {
            assert_eq!(role_name_of_arn(not_a_role), None, "{not_a_role}");
        }
        assert_eq!(
            role_arn("123456789012", "r"),
            "arn:aws:iam::123456789012:role/r"
        );
    }
}
