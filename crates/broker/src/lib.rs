//! The PubSub broker: an embeddable MQTT 3.1.1 broker that behaves like AWS IoT Core.
//!
//! - [`config`]: the TOML configuration contract.
//! - [`auth`]: policies, principals, and the per-connection authorizer.
//! - [`session`]: the pure per-client session state machine.
//! - [`protocol`]: IoT Core's rules for client packets, as pure checks.
//! - [`broker`]: shared state (sessions, subscription index, retained messages) and routing.
//! - [`connection`]: the per-connection I/O task.
//! - [`server`]: listeners, start and shutdown.

pub mod auth;
pub mod authn;
pub mod authorizers;
pub mod broker;
pub mod cognito;
pub mod config;
pub mod connection;
pub mod control;
pub mod protocol;
pub mod registry;
pub mod secrets;
pub mod server;
pub mod session;
pub mod store;
pub mod tls;
pub mod tls_material;
pub mod websocket;

pub use broker::Broker;
pub use config::Config;
pub use server::{start, BrokerError, RunningBroker};
