//! Typed codec errors. Each decode variant names one rule of MQTT 3.1.1 so the broker can
//! log precisely why it dropped a connection (and answer CONNACK 1 for a wrong level).

use std::fmt;

use crate::packet::ReasonCode;

/// Name of a control packet type for error messages; the raw number is kept in the
/// variants so callers can match on it.
pub(crate) fn packet_type_name(packet_type: u8) -> &'static str {
    match packet_type {
        1 => "CONNECT",
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        8 => "SUBSCRIBE",
        9 => "SUBACK",
        10 => "UNSUBSCRIBE",
        11 => "UNSUBACK",
        12 => "PINGREQ",
        13 => "PINGRESP",
        14 => "DISCONNECT",
        15 => "AUTH",
        _ => "reserved",
    }
}

/// Which CONNECT flags rule was broken (MQTT 3.1.1 section 3.1.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFlagsViolation {
    /// Bit 0 is reserved and must be zero.
    ReservedBitSet,
    /// Will QoS is non-zero while the will flag is clear.
    WillQoSWithoutWill,
    /// Will retain is set while the will flag is clear.
    WillRetainWithoutWill,
    /// Will QoS is 3.
    InvalidWillQoS,
    /// The password flag is set while the username flag is clear.
    PasswordWithoutUsername,
}

impl fmt::Display for ConnectFlagsViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectFlagsViolation::ReservedBitSet => "reserved bit 0 is set",
            ConnectFlagsViolation::WillQoSWithoutWill => {
                "will QoS is non-zero without the will flag"
            }
            ConnectFlagsViolation::WillRetainWithoutWill => {
                "will retain is set without the will flag"
            }
            ConnectFlagsViolation::InvalidWillQoS => "will QoS is 3",
            ConnectFlagsViolation::PasswordWithoutUsername => {
                "password flag is set without the username flag"
            }
        })
    }
}

/// Why a byte sequence is not a valid MQTT 3.1.1 or MQTT 5 packet.
///
/// After an error the connection must be closed: the buffer may or may not still hold
/// the offending bytes.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("invalid packet type {0} (0 and 15 are reserved)")]
    InvalidPacketType(u8),
    #[error("invalid fixed header flags {flags:#06b} for {}", packet_type_name(*.packet_type))]
    InvalidFixedHeaderFlags { packet_type: u8, flags: u8 },
    #[error("malformed remaining length: continuation bit set on the 4th byte")]
    MalformedRemainingLength,
    #[error(
        "{} declares remaining length {actual}, it must be {expected}",
        packet_type_name(*.packet_type)
    )]
    InvalidRemainingLength {
        packet_type: u8,
        expected: usize,
        actual: usize,
    },
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: usize },
    #[error("invalid protocol name {0:?} (expected \"MQTT\" or \"MQIsdp\")")]
    InvalidProtocolName(String),
    #[error("unsupported protocol level {0} (expected 4 for \"MQTT\", 3 for \"MQIsdp\")")]
    UnsupportedProtocolLevel(u8),
    #[error("invalid CONNECT flags: {0}")]
    InvalidConnectFlags(ConnectFlagsViolation),
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("string contains the null character U+0000")]
    NullCharacter,
    #[error("invalid QoS {0}")]
    InvalidQoS(u8),
    #[error("packet identifier is 0")]
    ZeroPacketId,
    #[error("topic name {0:?} contains a wildcard")]
    WildcardInTopicName(String),
    #[error("topic name is empty")]
    EmptyTopic,
    #[error("invalid topic filter {0:?}")]
    InvalidTopicFilter(String),
    #[error("SUBSCRIBE carries no topic filter")]
    EmptySubscribe,
    #[error("UNSUBSCRIBE carries no topic filter")]
    EmptyUnsubscribe,
    #[error("SUBACK carries no return code")]
    EmptySubAck,
    #[error("SUBSCRIBE options byte {0:#04x} has reserved bits set")]
    InvalidSubscribeOptions(u8),
    #[error("invalid SUBACK return code {0:#04x}")]
    InvalidSubAckReturnCode(u8),
    #[error("CONNACK acknowledge flags {0:#04x} have reserved bits set")]
    InvalidConnAckFlags(u8),
    #[error("invalid CONNACK return code {0}")]
    InvalidConnectReturnCode(u8),
    #[error("packet content continues past the declared remaining length")]
    PayloadTooShort,
    #[error("{0} bytes left over after the packet content")]
    TrailingBytes(usize),
    #[error("malformed variable byte integer: continuation bit set on the 4th byte")]
    MalformedVariableInteger,
    #[error("unknown property identifier {0:#04x}")]
    UnknownProperty(u32),
    #[error(
        "{} (property {property:#04x}) is not allowed in {}",
        crate::properties::property_name(*.property),
        packet_type_name(*.packet_type)
    )]
    PropertyNotAllowed { property: u8, packet_type: u8 },
    #[error(
        "{} (property {property:#04x}) appears more than once",
        crate::properties::property_name(*.property)
    )]
    DuplicateProperty { property: u8 },
    #[error(
        "{} (property {property:#04x}) has the invalid value {value}",
        crate::properties::property_name(*.property)
    )]
    InvalidPropertyValue { property: u8, value: u32 },
    #[error("response topic {0:?} is empty or contains a wildcard")]
    InvalidResponseTopic(String),
    #[error("reason code {code:#04x} is not allowed in {}", packet_type_name(*.packet_type))]
    InvalidReasonCode { packet_type: u8, code: u8 },
    #[error("PUBLISH has an empty topic and no Topic Alias")]
    EmptyTopicWithoutAlias,
    #[error("UNSUBACK carries no reason code")]
    EmptyUnsubAck,
    #[error("CONNECT carries Authentication Data without an Authentication Method")]
    AuthenticationDataWithoutMethod,
}

impl DecodeError {
    /// The MQTT 5 reason code a server sends in DISCONNECT (or CONNACK) for this error:
    /// 0x95 for a packet over the maximum size, 0x82 Protocol Error for a well-formed
    /// packet that breaks a rule, 0x81 Malformed Packet for bytes that do not parse.
    ///
    /// Where MQTT 5 names the kind, this follows it: PUBLISH QoS 3 is malformed
    /// (§3.3.1.2), a SUBSCRIBE or UNSUBSCRIBE without payload is a protocol error (§3.8.3,
    /// §3.10.3), and subscription options are malformed for reserved bits 6-7
    /// (MQTT-3.8.3-5) but a protocol error for Maximum QoS 3 or Retain Handling 3.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocolLevel(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::InvalidSubscribeOptions(options) if options & 0b1100_0000 != 0 => {
                ReasonCode::MALFORMED_PACKET
            }
            DecodeError::DuplicateProperty { .. }
            | DecodeError::InvalidPropertyValue { .. }
            | DecodeError::PropertyNotAllowed { .. }
            | DecodeError::InvalidResponseTopic(_)
            | DecodeError::EmptyTopicWithoutAlias
            | DecodeError::ZeroPacketId
            | DecodeError::EmptySubscribe
            | DecodeError::EmptyUnsubscribe
            | DecodeError::AuthenticationDataWithoutMethod
            | DecodeError::InvalidSubscribeOptions(_) => ReasonCode::PROTOCOL_ERROR,
            _ => ReasonCode::MALFORMED_PACKET,
        }
    }
}

/// Why a packet cannot be put on the wire.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    #[error("{field} is {len} bytes long, the maximum is 65535")]
    FieldTooLong { field: &'static str, len: usize },
    #[error("remaining length {0} exceeds the maximum of 268435455")]
    PacketTooLarge(usize),
    #[error("packet identifier is 0")]
    ZeroPacketId,
    #[error("PUBLISH with QoS 0 cannot have the DUP flag set")]
    DupWithQoS0,
    #[error("password without username")]
    PasswordWithoutUsername,
    #[error("SUBSCRIBE without topic filters")]
    EmptySubscribe,
    #[error("UNSUBSCRIBE without topic filters")]
    EmptyUnsubscribe,
    #[error("SUBACK without return codes")]
    EmptySubAck,
    #[error("MQTT 5 UNSUBACK without reason codes")]
    EmptyUnsubAck,
    #[error("AUTH exists only in MQTT 5")]
    AuthInMqtt311,
    #[error("subscription identifier {0} exceeds the maximum of 268435455")]
    SubscriptionIdentifierTooLarge(u32),
}
