//! The AWS IoT Device Shadow service's rules as pure functions: no sockets, no files, no
//! clock (the caller passes the time).
//!
//! Both halves of PubSub use this crate, so the broker and the SDK cannot disagree about
//! a topic or a document:
//!
//! - [`topic`]: the reserved topic grammar `$aws/things/{thing}/shadow[/name/{shadow}]/…`,
//!   parsing and building, thing and shadow name rules.
//! - [`document`]: a stored shadow and what `update`, `get` and `delete` do to it: nested
//!   merge, `null` deletes, per-leaf metadata, delta, optimistic versions, validation with
//!   IoT Core's error codes and texts, and the JSON answers IoT Core publishes.

pub mod document;
pub mod topic;

pub use document::{exception_name_for_status, Answers, Limits, Rejection, Shadow};
pub use topic::{Operation, Response, ShadowId, ShadowTopic};
