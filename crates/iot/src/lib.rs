//! AWS IoT Core's rules as pure functions: no sockets, no files, no clock.
//!
//! The broker asks this crate what IoT Core would do (is this topic allowed, which
//! subscriptions does it reach, what keep-alive applies) and performs the answer itself,
//! so the rules can be tested exhaustively without a network.
//!
//! - [`client_rules`]: IoT Core's checks on what a client sends (CONNECT, PUBLISH,
//!   SUBSCRIBE), each refusal with its reason.
//! - [`limits`]: the `[limits]` configuration table with IoT Core's quotas as defaults.
//! - [`topic`]: topic-name and filter validation, reserved topics, IoT Core matching.
//! - [`trie`]: the subscription index, matching exactly as [`topic_matches`].
//! - [`policy`]: IoT policy documents: parsing, validation and authorization decisions.
//! - [`cognito`]: Cognito user pools' SRP sign-in and RS256 tokens (both sides).
//! - [`lifecycle`]: lifecycle event topics, payloads and disconnect reasons.

pub mod client_rules;
pub mod cognito;
pub mod custom_auth;
pub mod lifecycle;
pub mod limits;
pub mod policy;
pub mod sigv4;
pub mod topic;
pub mod trie;

pub use limits::Limits;
pub use policy::{
    decide, evaluate, resource_arn, write_resource_arn, Action, AuthDecision, Decision, Policy,
    PolicyError, PrincipalFacts, RequestContext, ResourceKind,
};
pub use topic::{
    filter_is_exact, is_reserved, shared_filter, topic_matches, validate_client_publish,
    validate_topic_filter, validate_topic_name, SharedFilter, TopicError,
    CLIENT_PUBLISHABLE_RESERVED_PREFIXES,
};
pub use trie::TopicTrie;
