//! MQTT 5: the protocol choice, publish properties, reason codes and CONNACK properties.
//!
//! MQTT 3.1.1 stays the default ([`ProtocolVersion::V311`]) because it is what the iOS SDK
//! speaks; set [`crate::MqttConfiguration::protocol`] to [`ProtocolVersion::V5`] for
//! properties on messages, reason codes on acknowledgements and
//! [`crate::DataManager::request`].
//!
//! The MQTT 5 connection is rumqttc's v5 client, on the same transports (TCP, TLS with or
//! without ALPN, WebSocket with SigV4 or custom-authorizer headers). What it cannot do that
//! IoT Core would allow, and what this SDK does about it:
//!
//! - A refused CONNACK reaches the SDK as its reason code only: rumqttc drops the CONNACK's
//!   properties (reason string) on refusal. The status is `ConnectionRefused`, the code is
//!   logged.
//! - Keep-alive must be at least 5 s (rumqttc panics below): shorter or zero intervals are
//!   raised to 5 s on MQTT 5 connections.
//! - Publishes larger than the broker's Maximum Packet Size end rumqttc's connection, so the
//!   SDK refuses them first ([`crate::Error::PayloadTooLarge`]).
//! - rumqttc sends no outbound topic aliases on its own; the SDK does not use them (IoT Core
//!   accepts them but they only save bytes).
//! - Enhanced authentication (AUTH packets) is not supported by rumqttc; IoT Core does not
//!   support it either.
//! - rumqttc v5 skips its packet-id collision handling when a PUBACK carries a failure
//!   code: a publish it held back because its packet id was still in flight stays held,
//!   and rumqttc ends the connection two pings later (`CollisionTimeout`). The SDK then
//!   reconnects and re-sends it. A collision needs a packet id still unacknowledged when
//!   rumqttc's ids wrap around (after 100), so this is rare; it is rumqttc's to fix.

use bytes::Bytes;

/// The MQTT protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1 (the default, as the iOS SDK).
    #[default]
    V311,
    /// MQTT 5.
    V5,
}

/// The Payload Format Indicator of an MQTT 5 publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// 0: unspecified bytes.
    Unspecified,
    /// 1: UTF-8 text.
    Utf8,
}

impl PayloadFormat {
    pub(crate) fn from_byte(b: u8) -> PayloadFormat {
        if b == 1 {
            PayloadFormat::Utf8
        } else {
            PayloadFormat::Unspecified
        }
    }

    pub(crate) fn byte(self) -> u8 {
        match self {
            PayloadFormat::Unspecified => 0,
            PayloadFormat::Utf8 => 1,
        }
    }
}

/// The MQTT 5 properties of a publish (sent with [`crate::DataManager::publish_with`], or
/// received in [`crate::Message::properties`]). Empty on MQTT 3.1.1 connections.
///
/// ```
/// use pubsub::mqtt5::{PayloadFormat, PublishProperties};
/// let p = PublishProperties::new()
///     .user_property("a", "1")
///     .content_type("application/json")
///     .payload_format(PayloadFormat::Utf8)
///     .message_expiry_interval(60);
/// assert_eq!(p.user_properties, vec![("a".to_owned(), "1".to_owned())]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishProperties {
    /// Payload Format Indicator.
    pub payload_format: Option<PayloadFormat>,
    /// Message Expiry Interval in seconds (received: the time remaining).
    pub message_expiry_interval: Option<u32>,
    /// Content Type (a MIME type, by convention).
    pub content_type: Option<String>,
    /// Response Topic: where the receiver should publish its answer.
    pub response_topic: Option<String>,
    /// Correlation Data: echoed in the answer so the requester can match it.
    pub correlation_data: Option<Bytes>,
    /// User properties, in order (a key may repeat).
    pub user_properties: Vec<(String, String)>,
}

impl PublishProperties {
    /// No properties.
    pub fn new() -> PublishProperties {
        PublishProperties::default()
    }

    /// Append a user property (order is kept; keys may repeat).
    pub fn user_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.user_properties.push((key.into(), value.into()));
        self
    }

    /// Set the Content Type.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Set the Payload Format Indicator.
    pub fn payload_format(mut self, format: PayloadFormat) -> Self {
        self.payload_format = Some(format);
        self
    }

    /// Set the Response Topic.
    pub fn response_topic(mut self, topic: impl Into<String>) -> Self {
        self.response_topic = Some(topic.into());
        self
    }

    /// Set the Correlation Data.
    pub fn correlation_data(mut self, data: impl Into<Bytes>) -> Self {
        self.correlation_data = Some(data.into());
        self
    }

    /// Set the Message Expiry Interval (seconds).
    pub fn message_expiry_interval(mut self, seconds: u32) -> Self {
        self.message_expiry_interval = Some(seconds);
        self
    }

    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        *self == PublishProperties::default()
    }
}

/// Options of [`crate::DataManager::publish_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishOptions {
    /// Retain flag.
    pub retain: bool,
    /// MQTT 5 properties (must be empty on an MQTT 3.1.1 connection).
    pub properties: PublishProperties,
}

impl PublishOptions {
    /// Not retained, no properties.
    pub fn new() -> PublishOptions {
        PublishOptions::default()
    }

    /// Set the retain flag.
    pub fn retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }

    /// Set the MQTT 5 properties.
    pub fn properties(mut self, properties: PublishProperties) -> Self {
        self.properties = properties;
        self
    }
}

/// An MQTT 5 reason code (PUBACK, SUBACK, UNSUBACK, CONNACK, DISCONNECT): the codec's
/// type, so the SDK and the broker name codes alike. Values below 0x80 are successes.
/// Displays as `0x87 Not authorized`.
pub use mqtt::ReasonCode;

/// What the broker said in its CONNACK (MQTT 5; on MQTT 3.1.1 only `session_present`).
/// See [`crate::DataManager::connack`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnackProperties {
    /// The broker resumed a stored session.
    pub session_present: bool,
    /// Session Expiry Interval the broker chose (seconds), if it differs from the request.
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum: QoS 1 publishes the broker accepts unacknowledged.
    pub receive_maximum: Option<u16>,
    /// Maximum QoS.
    pub maximum_qos: Option<u8>,
    /// Retain Available (0 or 1).
    pub retain_available: Option<u8>,
    /// Maximum Packet Size the broker accepts.
    pub maximum_packet_size: Option<u32>,
    /// Assigned Client Identifier (for an empty client id).
    pub assigned_client_identifier: Option<String>,
    /// Topic Alias Maximum.
    pub topic_alias_maximum: Option<u16>,
    /// Reason String.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// Wildcard Subscription Available.
    pub wildcard_subscription_available: Option<u8>,
    /// Subscription Identifiers Available.
    pub subscription_identifiers_available: Option<u8>,
    /// Shared Subscription Available.
    pub shared_subscription_available: Option<u8>,
    /// Server Keep Alive (seconds): the keep-alive the broker imposes.
    pub server_keep_alive: Option<u16>,
    /// Response Information.
    pub response_information: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_display_code_and_name() {
        assert_eq!(ReasonCode(0x87).to_string(), "0x87 Not authorized");
        assert_eq!(ReasonCode(0x10).to_string(), "0x10 No matching subscribers");
        assert_eq!(ReasonCode(0xFF).to_string(), "0xFF Unknown reason code");
        assert!(ReasonCode(0x11).is_success());
        assert!(!ReasonCode::NOT_AUTHORIZED.is_success());
    }

    #[test]
    fn builders_keep_user_property_order() {
        let p = PublishProperties::new()
            .user_property("b", "2")
            .user_property("a", "1")
            .user_property("b", "3");
        assert_eq!(
            p.user_properties,
            vec![
                ("b".to_owned(), "2".to_owned()),
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "3".to_owned())
            ]
        );
        assert!(!p.is_empty());
        assert!(PublishProperties::new().is_empty());
        let o = PublishOptions::new().retain(true).properties(p.clone());
        assert!(o.retain);
        assert_eq!(o.properties, p);
    }
}
