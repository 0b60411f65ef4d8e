//! # pubsub — the client SDK of PubSub
//!
//! A Rust counterpart of the iOS SDK's `AWSIoTDataManager`, for AWS IoT Core, the PubSub
//! broker, and (with [`DataManager::connect_mqtt`]) any MQTT 3.1.1 or MQTT 5 broker.
//!
//! ```no_run
//! use pubsub::{DataManager, Endpoint, QoS, ServiceConfiguration};
//!
//! # async fn run() -> Result<(), pubsub::Error> {
//! let config = ServiceConfiguration::new(
//!     "us-east-1",
//!     Endpoint::parse("wss://xxxx-ats.iot.us-east-1.amazonaws.com/mqtt")?,
//! );
//! let iot = DataManager::register(config, "MyKey");
//! iot.connect("client-1", true, "<certificate id>", |status| println!("{status}"))?;
//! iot.subscribe("myTopic", QoS::AtMostOnce, |m| println!("{}", m.payload_str()))?;
//! // Made before the CONNACK: queued, sent once connected.
//! iot.try_publish("myTopic", "Hello to all subscribers!", QoS::AtMostOnce)?;
//! iot.wait_for_connection().await?;
//! iot.publish("myTopic", "acknowledged", QoS::AtLeastOnce).await?;
//! iot.unsubscribe("myTopic").await?;
//! iot.disconnect()?;
//! # Ok(()) }
//! ```
//!
//! Connection methods: [`DataManager::connect`] (mutual TLS, 8883),
//! [`DataManager::connect_using_alpn`] (443, ALPN `x-amzn-mqtt-ca`),
//! [`DataManager::connect_using_websocket`] (SigV4-presigned WSS, signed per attempt),
//! [`DataManager::connect_using_presigned_url`] (a URL the caller presigns, asked for per
//! attempt), [`DataManager::connect_using_websocket_custom_auth`] (WSS, authorizer
//! headers), [`DataManager::connect_using_custom_auth`] (TLS ALPN `mqtt`, authorizer in
//! the username), [`DataManager::connect_using_custom_auth_provider`] (a token refreshed
//! per attempt) and [`DataManager::connect_mqtt`] (plain TCP or TLS to any broker).
//!
//! ## Lifecycle
//!
//! A [`DataManager`] is a cheap handle. Dropping the last handle disconnects (a manager
//! kept by [`DataManager::register`] lives until [`DataManager::remove`]; registering
//! another under the same key disconnects the old one). [`DataManager::disconnect`] frees
//! the manager for a new `connect*` at once. Connection tasks run on the SDK's own tokio
//! runtime (or the one given with [`ServiceConfiguration::runtime`]), never on the
//! caller's, so a caller's runtime ending does not strand a connection.
//!
//! ## Where callbacks run
//!
//! Every callback — status, message, acknowledgement, shadow — runs on the manager's
//! callback thread (`pubsub-callbacks`), one at a time, in the order the events happened.
//! The connection's I/O never waits for user code: a slow callback delays only the
//! callbacks after it, never keep-alives. Callbacks need `Send`, not `Sync`; a callback
//! may call the manager (even `connect*` from the status callback after a failure: the
//! manager is already free when the status is reported). QoS 1 messages are acknowledged
//! to the broker only after every matching callback has returned or every matching
//! [`MessageStream`] has taken the message (a full stream applies back-pressure rather
//! than drop).
//!
//! ## Reconnects and the session
//!
//! After a lost connection the SDK reconnects with exponential back-off
//! ([`backoff::BackoffConfig`]: 1 s doubling to 128 s, jitter). The first CONNECT carries
//! the caller's `clean_session`; automatic reconnects ask to resume the session (as iOS,
//! and the CRT's MQTT 5 rejoin policy), so QoS 1 messages the broker queued during the
//! outage arrive; [`StatusEvent::session_present`] and [`ConnackProperties::session_present`]
//! say whether it did. (On MQTT 3.1.1 a session begun with `clean_session = true` lasts only
//! as long as that first connection, so the resumable session starts with the first
//! reconnect.) Unacknowledged QoS 1 publishes are re-sent with their packet id and DUP
//! set. When the broker did not keep the session, the SDK re-subscribes
//! (`auto_resubscribe`). An operation is written on at most `max_attempts` connections
//! (default 3) and waits at most `ack_timeout` (default 30 s) per attempt, then fails
//! with [`Error::GaveUp`] or [`Error::AckTimeout`]: a publish the broker answers by
//! closing the connection does not loop forever. Publishes made while the connection is
//! down wait in a bounded offline queue ([`OfflineQueuePolicy`]).
//!
//! ## Detecting a dead link
//!
//! With keep-alive `k` (default 300 s) and `ping_timeout` `p` (default 10 s), the SDK sends
//! PINGREQ after `k` without writing and declares the link dead when no PINGRESP comes
//! within `p`: a dead link is noticed at most `k + p` after the last write, reported as
//! `ConnectionError` with [`Reason::KeepAliveTimeout`].
//!
//! ## Errors and reasons
//!
//! Every status change is a [`StatusEvent`] with its [`Reason`] (CONNACK code, HTTP status
//! of a refused WebSocket upgrade, TLS alert, I/O error, keep-alive timeout, DISCONNECT
//! reason). On IoT Core's connection methods the SDK checks IoT Core's topic rules and its
//! 128 KiB payload limit before sending ([`config::ClientRules`]), so a bad topic is an
//! [`Error::InvalidTopic`], not a dropped connection.
//!
//! MQTT 3.1.1 is the default; `MqttConfiguration::default().protocol(ProtocolVersion::V5)`
//! connects with MQTT 5 on every method, for message properties ([`PublishProperties`],
//! [`DataManager::publish_with`], [`Message::properties`]), reason codes on refusals
//! ([`Error::PublishRefused`], [`Error::SubscribeRefused`]) and request/response
//! ([`DataManager::request`]). See [`mqtt5`].
//!
//! Device shadows ([`shadow`]): the iOS calls ([`DataManager::register_with_shadow`],
//! [`DataManager::update_shadow`], ...) with their callback, and an async client
//! ([`DataManager::shadow`]) resolving with the accepted document or the rejection, for
//! classic and named shadows.
#![warn(missing_docs)]

pub mod auth;
pub mod backoff;
pub mod cognito;
pub mod config;
pub mod data;
mod dispatch;
pub mod error;
pub mod identity;
mod manager;
pub mod mqtt5;
mod session;
pub mod shadow;
pub mod status;
mod task;
mod tls;
pub mod topic;
mod transport;
pub mod user_pool;

pub use aws_credential_types::provider::ProvideCredentials;
pub use aws_credential_types::Credentials;
pub use backoff::BackoffConfig;
pub use bytes::Bytes;
pub use cognito::CognitoCredentialsProvider;
pub use config::{
    ClientRules, Endpoint, EnvironmentCredentialsProvider, LastWill, MqttConfiguration,
    OfflineQueuePolicy, Ports, ServiceConfiguration, WhenFull,
};
pub use data::{DataError, IotDataClient};
pub use error::Error;
pub use identity::IdentityStore;
/// Why IoT Core's rules refuse a topic (the source of [`Error::InvalidTopic`]).
pub use iot::topic::TopicError;
pub use manager::{
    CustomAuth, CustomAuthTransport, DataManager, Message, MessageStream, MqttConnectOptions,
    PublishOutcome, RejectReason,
};
pub use mqtt5::{
    ConnackProperties, PayloadFormat, ProtocolVersion, PublishOptions, PublishProperties,
    ReasonCode,
};
pub use status::{Reason, Status, StatusEvent};
pub use user_pool::UserPoolCredentialsProvider;

/// MQTT quality of service. IoT Core supports QoS 0 and 1 only, and so does this SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[non_exhaustive]
pub enum QoS {
    /// At most once: no acknowledgement.
    #[default]
    AtMostOnce,
    /// At least once: acknowledged by PUBACK, re-sent until then.
    AtLeastOnce,
}
