//! A connection's policy decisions, cached per resource name: the hot path of every
//! PUBLISH, SUBSCRIBE and delivery (`iot:Receive`).

use std::collections::HashMap;
use std::sync::Arc;

use iot::{
    decide, evaluate, resource_arn, write_resource_arn, Action, Decision, Policy, RequestContext,
    ResourceKind,
};

use super::policy::PolicyStore;
use super::roles::{self, CognitoPrincipal, RoleRule};
use crate::clock::unix_millis;
use crate::refusals::Refusal;

/// Past this many cached resource names a connection starts its cache afresh, so a client
/// publishing to endless distinct topics cannot grow it without bound.
const MAX_CACHED_DECISIONS: usize = 4096;

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
    /// The `${iot:Connection.Thing.*}` facts come from the registry's things (certificate
    /// and Cognito principals), re-resolved when the registry changes.
    thing_facts: bool,
    /// Resource name → the decisions known for it, two bits per action (see
    /// [`cached_decision`]). Boxed and made on the first cached decision: an idle
    /// connection has none.
    // Boxed on purpose: 8 bytes in every connection instead of a 48-byte empty map.
    #[allow(clippy::box_collection)]
    cache: Option<Box<HashMap<Box<str>, u32>>>,
    /// Credentials from an identity pool: IoT Core's rule for Cognito identities decides
    /// (the pool's role policy, and for an authenticated identity the attached IoT
    /// policies too). Boxed: most connections have none.
    cognito: Option<Box<(CognitoPrincipal, RoleRule)>>,
}

/// A refused action: the full decision (with its reason) and the resource it concerned.
#[derive(Debug)]
pub struct Denied {
    pub action: Action,
    pub resource: String,
    pub decision: Decision,
}

impl Denied {
    /// The refusal as the console's "why denied" keeps it.
    pub fn refusal(&self, client_id: Option<&str>, principal: &str) -> Refusal {
        Refusal {
            time_ms: unix_millis(),
            client_id: client_id.map(str::to_owned),
            principal: principal.to_owned(),
            action: self.action.as_str(),
            resource: self.resource.clone(),
            policy: self.decision.policy.clone(),
            statement: self.decision.statement,
            sid: self.decision.sid.clone(),
            reason: self.decision.reason.clone(),
        }
    }
}

// Two bits per action in a u32.
const _: () = assert!(Action::ALL.len() <= 16);

/// What the cache bits say about `action`: `Some(allowed)` once decided.
pub(super) fn cached_decision(bits: u32, action: Action) -> Option<bool> {
    let shift = 2 * action as u32;
    (bits >> shift & 0b01 != 0).then_some(bits >> shift & 0b10 != 0)
}

pub(super) fn with_decision(bits: u32, action: Action, allowed: bool) -> u32 {
    let shift = 2 * action as u32;
    bits & !(0b11 << shift) | (0b01 | u32::from(allowed) << 1) << shift
}

impl ConnectionPolicy {
    pub fn new(
        store: Arc<PolicyStore>,
        principal: &str,
        context: RequestContext,
    ) -> ConnectionPolicy {
        ConnectionPolicy {
            policies: store.policies_of(principal),
            generation: store.generation(),
            store,
            principal: principal.to_owned(),
            context,
            fixed_policies: false,
            thing_facts: false,
            cache: None,
            cognito: None,
        }
    }

    /// Decides as IoT Core does for an identity pool's credentials (`roles`).
    pub fn with_cognito(mut self, cognito: &CognitoPrincipal) -> ConnectionPolicy {
        let rule = self.store.role_rule(cognito);
        self.cognito = Some(Box::new((cognito.clone(), rule)));
        self
    }

    /// Resolves the thing variables as IoT Core does for a certificate or a Cognito
    /// identity: from the thing named like the client id, when the principal is attached.
    pub fn with_thing_facts(mut self) -> ConnectionPolicy {
        self.thing_facts = true;
        self.store.resolve_thing(&mut self.context, &self.principal);
        self
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
        let decision = match &self.cognito {
            None => evaluate(&self.policies, action, &resource, &self.context),
            Some(cognito) => roles::decision(
                &cognito.1,
                &self.principal,
                &self.policies,
                !cognito.0.authenticated && !self.policies.is_empty(),
                action,
                &resource,
                &self.context,
            ),
        };
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
        let allowed = match &self.cognito {
            None => decide(&self.policies, action, &arn, &self.context).is_allowed(),
            Some(cognito) => {
                roles::allowed(&cognito.1, &self.policies, action, &arn, &self.context)
            }
        };
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
            let denied = self.decide(action, kind, name);
            self.store
                .metrics
                .policy_refused(denied.refusal(self.context.client_id.as_deref(), &self.principal));
            Err(Box::new(denied))
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
            if !allowed {
                self.store.metrics.policy_denied(action.as_str());
            }
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
            if self.thing_facts {
                self.store.resolve_thing(&mut self.context, &self.principal);
            }
            if let Some(cognito) = &mut self.cognito {
                cognito.1 = self.store.role_rule(&cognito.0);
            }
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
