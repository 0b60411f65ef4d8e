//! AWS IoT policies: parsing documents and deciding requests, as IoT Core does.
//!
//! [`Policy::parse`] validates a document the way AWS would (rejecting with a
//! [`PolicyError`] that names the policy, the JSON path and the reason) and compiles it:
//! actions become a bit set, resource patterns and condition values become segments of
//! literals, variables and wildcards. [`evaluate`] then decides one (action, resource,
//! context) with IAM's logic: default deny, any matching Allow allows, any matching Deny
//! wins.
//!
//! Matching rules:
//! - actions: `*` and `?` wildcards, case-insensitive (`iot:pub*` names `iot:Publish`);
//! - resources: the full ARN, case-sensitive, `*` = any run of characters (`/` too),
//!   `?` = one character, MQTT `+` and `#` literal;
//! - variables (`${iot:ClientId}`, … in Resource and Condition values, version 2012-10-17
//!   only) compare literally: a client id `a*` is not a wildcard. `${*}`, `${?}`, `${$}`
//!   are a literal `*`, `?`, `$`;
//! - a Resource entry whose variable cannot be resolved matches nothing; a NotResource or
//!   Condition with one makes its statement not apply (so a Deny with an unresolvable
//!   variable denies nothing). Implicit-deny reasons say which variable was missing.
//!
//! Differences from AWS: `StringEqualsIgnoreCase` folds ASCII only; `Numeric*`, `Date*` and
//! `BinaryEquals` are rejected as unsupported; `Arn*` operators compare as `StringLike`.

mod condition;
mod parse;
mod pattern;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use condition::Condition;
use pattern::{Pattern, Resolver};

/// Longest policy document, in characters not counting whitespace. IoT Core applies it to
/// authorizer-returned policies; we apply it to every policy.
pub const MAX_POLICY_CHARS: usize = 2048;

/// Why a policy document was rejected.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy {policy:?}: invalid JSON at line {line}, column {column}: {message}")]
    Json {
        policy: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "policy {policy:?}: document has {length} characters (whitespace not counted), more than the {max} allowed"
    )]
    TooLong {
        policy: String,
        length: usize,
        max: usize,
    },
    /// `path` is a JSON path into the document, e.g. `Statement[1].Effect`.
    #[error("policy {policy:?}: {path}: {reason}")]
    Invalid {
        policy: String,
        path: String,
        reason: String,
    },
}

/// The IoT data-plane actions the broker authorizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Connect,
    Publish,
    Subscribe,
    Receive,
    RetainPublish,
    GetRetainedMessage,
    ListRetainedMessages,
    DeleteThingShadow,
    GetThingShadow,
    UpdateThingShadow,
    ListNamedShadowsForThing,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::Connect,
        Action::Publish,
        Action::Subscribe,
        Action::Receive,
        Action::RetainPublish,
        Action::GetRetainedMessage,
        Action::ListRetainedMessages,
        Action::DeleteThingShadow,
        Action::GetThingShadow,
        Action::UpdateThingShadow,
        Action::ListNamedShadowsForThing,
    ];
    const ALL_MASK: u16 = (1 << Action::ALL.len()) - 1;

    /// The IAM name, e.g. `"iot:Publish"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Connect => "iot:Connect",
            Action::Publish => "iot:Publish",
            Action::Subscribe => "iot:Subscribe",
            Action::Receive => "iot:Receive",
            Action::RetainPublish => "iot:RetainPublish",
            Action::GetRetainedMessage => "iot:GetRetainedMessage",
            Action::ListRetainedMessages => "iot:ListRetainedMessages",
            Action::DeleteThingShadow => "iot:DeleteThingShadow",
            Action::GetThingShadow => "iot:GetThingShadow",
            Action::UpdateThingShadow => "iot:UpdateThingShadow",
            Action::ListNamedShadowsForThing => "iot:ListNamedShadowsForThing",
        }
    }

    /// `"iot:Publish"`, `"publish"`, `"IOT:PUBLISH"` → `Publish`; case-insensitive, the
    /// `iot:` prefix optional. No wildcards.
    pub fn parse(s: &str) -> Option<Action> {
        let name = match s.split_once(':') {
            Some((service, name)) if service.eq_ignore_ascii_case("iot") => name,
            Some(_) => return None,
            None => s,
        };
        Action::ALL
            .into_iter()
            .find(|a| a.as_str()["iot:".len()..].eq_ignore_ascii_case(name))
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a decision may depend on besides action and resource. Borrowed so the broker
/// builds it once per connection, and kept small because every open connection holds one.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub client_id: Option<String>,
    pub source_ip: Option<IpAddr>,
    /// `iot:ConnectAttributes`: `"PersistentConnect"`, `"LastWill"`, …
    pub connect_attributes: Vec<String>,
    /// What is known of the principal beyond its client id; boxed, as many connections
    /// (anonymous, custom-authorizer) have none of it. Read through [`RequestContext::facts`].
    pub principal: Option<Box<PrincipalFacts>>,
}

/// The thing, certificate and Cognito identity behind a connection, when known.
#[derive(Debug, Clone, Default)]
pub struct PrincipalFacts {
    pub thing_name: Option<String>,
    pub thing_type_name: Option<String>,
    pub thing_attributes: Fields,
    /// Certificate subject fields by name: `("CommonName", "dev1")`.
    pub certificate_subject: Fields,
    pub certificate_issuer: Fields,
    pub cognito_identity_id: Option<String>,
}

static NO_FACTS: PrincipalFacts = PrincipalFacts {
    thing_name: None,
    thing_type_name: None,
    thing_attributes: Vec::new(),
    certificate_subject: Vec::new(),
    certificate_issuer: Vec::new(),
    cognito_identity_id: None,
};

impl RequestContext {
    /// The principal's facts (all empty when none are known).
    pub fn facts(&self) -> &PrincipalFacts {
        self.principal.as_deref().unwrap_or(&NO_FACTS)
    }

    pub fn facts_mut(&mut self) -> &mut PrincipalFacts {
        self.principal.get_or_insert_default()
    }
}

/// Named values (certificate subject fields, thing attributes): a handful per context, so
/// a list looked up by name, which an open connection holds in a fraction of a map's space.
pub type Fields = Vec<(String, String)>;

/// The value of `name` in `fields`.
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The outcome, named as AWS's test-authorization reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDecision {
    Allowed,
    ExplicitDeny,
    ImplicitDeny,
}

impl AuthDecision {
    pub fn is_allowed(self) -> bool {
        self == AuthDecision::Allowed
    }

    /// `"ALLOWED"`, `"EXPLICIT_DENY"`, `"IMPLICIT_DENY"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthDecision::Allowed => "ALLOWED",
            AuthDecision::ExplicitDeny => "EXPLICIT_DENY",
            AuthDecision::ImplicitDeny => "IMPLICIT_DENY",
        }
    }
}

impl fmt::Display for AuthDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision and what decided it. `policy` / `statement` (0-based) / `sid` name the
/// deciding statement; all are `None` for an implicit deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub decision: AuthDecision,
    pub policy: Option<String>,
    pub statement: Option<usize>,
    pub sid: Option<String>,
    /// One line for a log.
    pub reason: String,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.decision.is_allowed()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
enum Resources {
    Resource(Vec<Pattern>),
    NotResource(Vec<Pattern>),
}

#[derive(Debug, Clone)]
struct Statement {
    sid: Option<String>,
    effect: Effect,
    /// Bit per [`Action`] this statement covers (NotAction already inverted).
    actions: u16,
    resources: Resources,
    /// All must hold.
    conditions: Vec<Condition>,
}

/// Whether a statement applies to a request.
enum Applies<'p> {
    Yes,
    No,
    /// Not applied because this variable (as written) could not be resolved.
    Unresolved(&'p str),
}

impl Statement {
    fn applies<'p>(&'p self, resource: &str, r: &Resolver<'_>) -> Applies<'p> {
        match &self.resources {
            Resources::Resource(patterns) => {
                let mut unresolved = None;
                let mut matched = false;
                for p in patterns {
                    match p.matches(resource, r, false) {
                        Ok(true) => {
                            matched = true;
                            break;
                        }
                        Ok(false) => {}
                        Err(var) => {
                            unresolved.get_or_insert(var);
                        }
                    }
                }
                if !matched {
                    return unresolved.map_or(Applies::No, Applies::Unresolved);
                }
            }
            Resources::NotResource(patterns) => {
                for p in patterns {
                    match p.matches(resource, r, false) {
                        Ok(true) => return Applies::No,
                        Ok(false) => {}
                        Err(var) => return Applies::Unresolved(var),
                    }
                }
            }
        }
        for c in &self.conditions {
            match c.eval(r) {
                Ok(true) => {}
                Ok(false) => return Applies::No,
                Err(var) => return Applies::Unresolved(var),
            }
        }
        Applies::Yes
    }
}

/// A parsed, compiled IoT policy.
#[derive(Debug, Clone)]
pub struct Policy {
    name: String,
    statements: Vec<Statement>,
}

impl Policy {
    /// Parses and validates `document` as AWS IoT's CreatePolicy would.
    pub fn parse(name: &str, document: &str) -> Result<Policy, PolicyError> {
        parse::parse(name, document)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of statements in the document.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }
}

/// What decided a request, borrowed from the policies: no strings are built until a
/// caller asks for the reason.
struct Outcome<'p> {
    decision: AuthDecision,
    /// The allowing or explicitly denying statement.
    decided_by: Option<(&'p Policy, usize, &'p Statement)>,
    /// The first statement skipped for an unresolved variable, and how many were.
    skipped: Option<(&'p Policy, usize, &'p str)>,
    skipped_count: usize,
}

fn outcome<'p>(
    policies: &'p [Arc<Policy>],
    action: Action,
    resource: &str,
    context: &RequestContext,
) -> Outcome<'p> {
    let r = Resolver::new(context);
    let bit = action.bit();
    let mut allowed: Option<(&Policy, usize, &Statement)> = None;
    let mut skipped: Option<(&Policy, usize, &str)> = None;
    let mut skipped_count = 0usize;
    for policy in policies {
        for (i, st) in policy.statements.iter().enumerate() {
            if st.actions & bit == 0 || (st.effect == Effect::Allow && allowed.is_some()) {
                continue;
            }
            match st.applies(resource, &r) {
                Applies::Yes => match st.effect {
                    Effect::Deny => {
                        return Outcome {
                            decision: AuthDecision::ExplicitDeny,
                            decided_by: Some((policy, i, st)),
                            skipped,
                            skipped_count,
                        };
                    }
                    Effect::Allow => allowed = Some((policy, i, st)),
                },
                Applies::No => {}
                Applies::Unresolved(var) => {
                    skipped_count += 1;
                    skipped.get_or_insert((policy, i, var));
                }
            }
        }
    }
    Outcome {
        decision: if allowed.is_some() {
            AuthDecision::Allowed
        } else {
            AuthDecision::ImplicitDeny
        },
        decided_by: allowed,
        skipped,
        skipped_count,
    }
}

/// The decision alone, without its reason: what a broker needs on its hot path.
pub fn decide(
    policies: &[Arc<Policy>],
    action: Action,
    resource: &str,
    context: &RequestContext,
) -> AuthDecision {
    outcome(policies, action, resource, context).decision
}

/// Evaluates `action` on `resource` (a full ARN) against the principal's policies.
pub fn evaluate(
    policies: &[Arc<Policy>],
    action: Action,
    resource: &str,
    context: &RequestContext,
) -> Decision {
    let outcome = outcome(policies, action, resource, context);
    if let Some((policy, i, st)) = outcome.decided_by {
        return decided(outcome.decision, policy, i, st);
    }
    let mut reason = format!(
        "no statement allowed {} on {} ({} {} checked)",
        action.as_str(),
        resource,
        policies.len(),
        if policies.len() == 1 {
            "policy"
        } else {
            "policies"
        },
    );
    if let Some((policy, i, var)) = outcome.skipped {
        reason.truncate(reason.len() - 1);
        reason.push_str(&format!(
            "; statement {i} of {:?} skipped: {var} unresolved",
            policy.name
        ));
        if outcome.skipped_count > 1 {
            reason.push_str(&format!(", {} more skipped", outcome.skipped_count - 1));
        }
        reason.push(')');
    }
    Decision {
        decision: AuthDecision::ImplicitDeny,
        policy: None,
        statement: None,
        sid: None,
        reason,
    }
}

fn decided(decision: AuthDecision, policy: &Policy, i: usize, st: &Statement) -> Decision {
    let verb = match decision {
        AuthDecision::Allowed => "allowed",
        _ => "explicitly denied",
    };
    let reason = match &st.sid {
        Some(sid) => format!(
            "{verb} by policy {:?} statement {i} (Sid {sid:?})",
            policy.name
        ),
        None => format!("{verb} by policy {:?} statement {i}", policy.name),
    };
    Decision {
        decision,
        policy: Some(policy.name.clone()),
        statement: Some(i),
        sid: st.sid.clone(),
        reason,
    }
}

/// The kinds of IoT resource an ARN names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Client,
    Topic,
    TopicFilter,
    Thing,
    Cert,
}

impl ResourceKind {
    /// The ARN resource type: `"client"`, `"topic"`, `"topicfilter"`, `"thing"`, `"cert"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ResourceKind::Client => "client",
            ResourceKind::Topic => "topic",
            ResourceKind::TopicFilter => "topicfilter",
            ResourceKind::Thing => "thing",
            ResourceKind::Cert => "cert",
        }
    }
}

/// `resource_arn("us-east-1", "123", ResourceKind::Topic, "a/b")` →
/// `"arn:aws:iot:us-east-1:123:topic/a/b"`.
pub fn resource_arn(region: &str, account: &str, kind: ResourceKind, name: &str) -> String {
    let mut arn = String::new();
    write_resource_arn(&mut arn, region, account, kind, name);
    arn
}

/// [`resource_arn`] into a reused buffer (cleared first): no allocation per decision.
pub fn write_resource_arn(
    arn: &mut String,
    region: &str,
    account: &str,
    kind: ResourceKind,
    name: &str,
) {
    let kind = kind.as_str();
    arn.clear();
    arn.reserve(13 + region.len() + account.len() + kind.len() + 2 + name.len());
    arn.push_str("arn:aws:iot:");
    arn.push_str(region);
    arn.push(':');
    arn.push_str(account);
    arn.push(':');
    arn.push_str(kind);
    arn.push('/');
    arn.push_str(name);
}
