//! The PubSub broker: an embeddable MQTT 3.1.1 broker that behaves like AWS IoT Core.
//!
//! # The data path
//!
//! Folders follow a message from socket to socket. Each imports only from the ones below
//! it in this list (plus `config` and the small utilities at the bottom); nothing imports
//! upwards, so there are no module cycles (`scripts/check-layers` checks it in the test
//! command).
//!
//! | module | what it holds |
//! |---|---|
//! | `listener` | accept loops, TLS with ALPN dispatch, WebSocket upgrade, HTTP (control plane on `http` and on the TLS port), start and shutdown |
//! | `connection` | one task per client: an I/O shell around `PacketHandler`, the pure packet handling (CONNECT admission, PUBLISH, SUBSCRIBE, acks after durable, will, lifecycle events) |
//! | `control` | the AWS-shaped control plane: one `answer(request)`, by resource family; the same code answers offline ([`control::answer_local`]) |
//! | `broker` | `Broker`: the data plane and the identity plane side by side, shared by every connection |
//! | `shadow` | the Device Shadow service: shadows in memory and in the store, requests from MQTT and HTTP, answers published once durable |
//! | `router` | the data plane: sessions by client id, the subscription index, route and deliver, retained messages, recovery from the store |
//! | `session` | one session: the pure `SessionState`, its shared wrapper, live-connection wake-ups and kicks |
//! | `store` | the durable store (redb, group commit) |
//! | `auth` | the identity plane: authentication (certificates, SigV4, custom authorizers), policies and per-connection decisions, Cognito's temporary credentials |
//! | `registry` | the identity file `registry.json`: certificates, CAs, attachments, authorizers, identity pools, access keys, things, user pools |
//! | `config`, `pki`, `http_head`, `secrets`, `clock`, `token_bucket` | configuration; certificate material; HTTP request heads; random ids; time; rate counting |
//!
//! `router` and `auth` never see each other: the connection asks `auth` what a client may
//! do and `router` where a message goes.
//!
//! One PUBLISH (QoS 1, to a durable persistent subscriber) in order: `listener` accepts
//! and spawns `connection::serve`; the shell reads bytes into `PacketHandler::handle_input`,
//! which decodes, checks IoT Core's rules (`iot::client_rules`) and the policy
//! (`auth::ConnectionPolicy`), and calls `Router::route`; the router matches the index and
//! calls `Session::deliver` for each subscriber, which queues the message, submits it to
//! the `store` and wakes the subscriber's connection; the publisher's PUBACK waits in
//! `PacketHandler::pending_acks` until the store's commit reaches it; the subscriber's
//! shell, woken, has its handler fill the output from the session (checking `iot:Receive`)
//! and writes it. docs/ARCHITECTURE.md traces it hop by hop.
//!
//! # Public surface
//!
//! [`start`] a broker from a [`Config`]; the [`RunningBroker`] it returns gives its
//! listeners' addresses, answers control-plane requests in process
//! ([`RunningBroker::control`]) and shuts down. [`control::answer_local`] answers the same
//! requests on a data directory with no broker running. [`pki`] issues certificates.

pub(crate) mod auth;
pub(crate) mod broker;
pub(crate) mod clock;
pub mod config;
pub(crate) mod connection;
pub(crate) mod console;
pub mod control;
// Public only so the fuzz targets (`crates/fuzz-targets`) can reach the parser of what
// WebSocket and control-plane clients send; not part of the broker's API.
#[doc(hidden)]
pub mod http_head;
pub(crate) mod listener;
pub(crate) mod message;
pub(crate) mod metrics;
pub mod pki;
pub(crate) mod refusals;
pub(crate) mod registry;
pub(crate) mod router;
pub(crate) mod secrets;
pub(crate) mod session;
pub(crate) mod shadow;
pub(crate) mod sign_ins;
pub(crate) mod store;
pub(crate) mod token_bucket;

pub use config::Config;
pub use listener::{start, BrokerError, RunningBroker};
