//! # pubsub — the client SDK of PubSub
//!
//! A Rust counterpart of the iOS SDK's `AWSIoTDataManager`, for AWS IoT Core, the PubSub
//! broker, and (in plain MQTT mode) any MQTT 3.1.1 or MQTT 5 broker.
//!
//! ```no_run
//! use pubsub::{DataManager, Endpoint, QoS, ServiceConfiguration};
//!
//! # fn main() -> Result<(), pubsub::Error> {
//! let config = ServiceConfiguration::new(
//!     "us-east-1",
//!     Endpoint::parse("wss://xxxx-ats.iot.us-east-1.amazonaws.com/mqtt")?,
//! );
//! DataManager::register(config, "MyKey");
//! let iot = DataManager::get("MyKey")?;
//! iot.connect("client-1", true, "<certificate id>", |status| println!("{status:?}"))?;
//! iot.subscribe("myTopic", QoS::AtMostOnce, |payload: &[u8]| {
//!     println!("{}", String::from_utf8_lossy(payload))
//! });
//! iot.publish_string("Hello to all subscribers!", "myTopic", QoS::AtMostOnce);
//! iot.unsubscribe_topic("myTopic");
//! iot.disconnect();
//! # Ok(()) }
//! ```
//!
//! Connection methods: [`DataManager::connect`] (mutual TLS, 8883),
//! [`DataManager::connect_using_alpn`] (443, ALPN `x-amzn-mqtt-ca`),
//! [`DataManager::connect_using_websocket`] (SigV4-presigned WSS),
//! [`DataManager::connect_using_websocket_custom_auth`] (WSS, authorizer headers),
//! [`DataManager::connect_using_custom_auth`] (TLS ALPN `mqtt`, authorizer in the username)
//! and [`DataManager::connect_mqtt`] (plain TCP or TLS to any broker).
//!
//! The SDK reconnects with exponential back-off ([`backoff`]), re-subscribes when the broker
//! did not keep the session, re-sends unacknowledged QoS 1 publishes, and keeps a bounded
//! offline queue ([`OfflineQueuePolicy`]). Certificates live in an [`IdentityStore`].
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
