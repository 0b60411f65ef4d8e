//! MQTT 5: the protocol choice, publish properties, reason codes and CONNACK properties.
//!
//! MQTT 3.1.1 stays the default ([`ProtocolVersion::V311`]) because it is what the iOS SDK
//! speaks; set [`crate::MqttConfiguration::protocol`] to [`ProtocolVersion::V5`] for
//! properties on messages, reason codes on acknowledgements and
//! [`crate::DataManager::request`].
//!
//! Both versions run on the SDK's own session state machine over the workspace's codec
//! (the `mqtt` crate the broker uses too), on the same transports (TCP, TLS with or
//! without ALPN, WebSocket with SigV4 or custom-authorizer headers). On MQTT 5 the SDK:
//!
//! - sends Session Expiry Interval (`MqttConfiguration::session_expiry`) on every CONNECT,
//!   so an automatic reconnect has a session to rejoin;
//! - honours the broker's Receive Maximum (QoS 1 publishes in flight) and Maximum Packet
//!   Size (a larger publish fails with [`crate::Error::PacketTooLarge`] instead of ending
//!   the connection);
//! - reports a refused CONNACK or a server DISCONNECT with its reason code and Reason
//!   String ([`crate::Reason`]);
//! - uses no topic aliases and no enhanced authentication (AUTH), which IoT Core does not
//!   support either.

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

pub(crate) fn to_wire_properties(p: &PublishProperties) -> mqtt::PublishProperties {
    mqtt::PublishProperties {
        payload_format_indicator: p.payload_format.map(|f| f == PayloadFormat::Utf8),
        message_expiry_interval: p.message_expiry_interval,
        topic_alias: None,
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        subscription_identifiers: Vec::new(),
        content_type: p.content_type.clone(),
    }
}

pub(crate) fn from_wire_properties(p: mqtt::PublishProperties) -> PublishProperties {
    PublishProperties {
        payload_format: p
            .payload_format_indicator
            .map(|utf8| PayloadFormat::from_byte(u8::from(utf8))),
        message_expiry_interval: p.message_expiry_interval,
        content_type: p.content_type,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        user_properties: p.user_properties,
    }
}

pub(crate) fn connack_properties(ack: &mqtt::ConnAck) -> ConnackProperties {
    let p = &ack.properties;
    ConnackProperties {
        session_present: ack.session_present,
        session_expiry_interval: p.session_expiry_interval,
        receive_maximum: p.receive_maximum,
        maximum_qos: p.maximum_qos.map(|q| q as u8),
        retain_available: p.retain_available.map(u8::from),
        maximum_packet_size: p.maximum_packet_size,
        assigned_client_identifier: p.assigned_client_identifier.clone(),
        topic_alias_maximum: p.topic_alias_maximum,
        reason_string: p.reason_string.clone(),
        user_properties: p.user_properties.clone(),
        wildcard_subscription_available: p.wildcard_subscription_available.map(u8::from),
        subscription_identifiers_available: p.subscription_identifiers_available.map(u8::from),
        shared_subscription_available: p.shared_subscription_available.map(u8::from),
        server_keep_alive: p.server_keep_alive,
        response_information: p.response_information.clone(),
    }
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
