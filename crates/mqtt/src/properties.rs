//! MQTT 5 properties (§2.2.2): one table of identifiers and value types, and for each
//! packet's property struct the identifiers it accepts.
//!
//! Decoding is strict: an unknown identifier, an identifier the packet may not carry, a
//! repeated identifier that may appear once, or a value out of its range is an error
//! naming the property. Encoding walks each struct once through [`Visit`], and the same
//! walk computes the length, so length and bytes cannot disagree.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::packet::*;

pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub(crate) const CONTENT_TYPE: u8 = 0x03;
pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
pub(crate) const CORRELATION_DATA: u8 = 0x09;
pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
pub(crate) const REASON_STRING: u8 = 0x1F;
pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub(crate) const TOPIC_ALIAS: u8 = 0x23;
pub(crate) const MAXIMUM_QOS: u8 = 0x24;
pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
pub(crate) const USER_PROPERTY: u8 = 0x26;
pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// The specification's name of a property, for errors.
pub(crate) fn property_name(id: u8) -> &'static str {
    match id {
        PAYLOAD_FORMAT_INDICATOR => "Payload Format Indicator",
        MESSAGE_EXPIRY_INTERVAL => "Message Expiry Interval",
        CONTENT_TYPE => "Content Type",
        RESPONSE_TOPIC => "Response Topic",
        CORRELATION_DATA => "Correlation Data",
        SUBSCRIPTION_IDENTIFIER => "Subscription Identifier",
        SESSION_EXPIRY_INTERVAL => "Session Expiry Interval",
        ASSIGNED_CLIENT_IDENTIFIER => "Assigned Client Identifier",
        SERVER_KEEP_ALIVE => "Server Keep Alive",
        AUTHENTICATION_METHOD => "Authentication Method",
        AUTHENTICATION_DATA => "Authentication Data",
        REQUEST_PROBLEM_INFORMATION => "Request Problem Information",
        WILL_DELAY_INTERVAL => "Will Delay Interval",
        REQUEST_RESPONSE_INFORMATION => "Request Response Information",
        RESPONSE_INFORMATION => "Response Information",
        SERVER_REFERENCE => "Server Reference",
        REASON_STRING => "Reason String",
        RECEIVE_MAXIMUM => "Receive Maximum",
        TOPIC_ALIAS_MAXIMUM => "Topic Alias Maximum",
        TOPIC_ALIAS => "Topic Alias",
        MAXIMUM_QOS => "Maximum QoS",
        RETAIN_AVAILABLE => "Retain Available",
        USER_PROPERTY => "User Property",
        MAXIMUM_PACKET_SIZE => "Maximum Packet Size",
        WILDCARD_SUBSCRIPTION_AVAILABLE => "Wildcard Subscription Available",
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => "Subscription Identifier Available",
        SHARED_SUBSCRIPTION_AVAILABLE => "Shared Subscription Available",
        _ => "unknown property",
    }
}

/// A property value as it is on the wire, before the packet's struct takes it.
pub(crate) enum Value {
    Byte(u8),
    U16(u16),
    U32(u32),
    VarInt(u32),
    Str(String),
    Bin(Bytes),
    Pair(String, String),
}

/// Reads one property value of the type `id` has; `None` for an unknown identifier.
pub(crate) fn read_value(
    id: u8,
    r: &mut crate::decode::Reader,
) -> Result<Option<Value>, DecodeError> {
    Ok(Some(match id {
        PAYLOAD_FORMAT_INDICATOR
        | REQUEST_PROBLEM_INFORMATION
        | REQUEST_RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => Value::Byte(r.u8()?),
        SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => {
            Value::U16(r.u16()?)
        }
        MESSAGE_EXPIRY_INTERVAL
        | SESSION_EXPIRY_INTERVAL
        | WILL_DELAY_INTERVAL
        | MAXIMUM_PACKET_SIZE => Value::U32(r.u32()?),
        SUBSCRIPTION_IDENTIFIER => Value::VarInt(r.var_int()?),
        CONTENT_TYPE
        | RESPONSE_TOPIC
        | ASSIGNED_CLIENT_IDENTIFIER
        | AUTHENTICATION_METHOD
        | RESPONSE_INFORMATION
        | SERVER_REFERENCE
        | REASON_STRING => Value::Str(r.string()?),
        CORRELATION_DATA | AUTHENTICATION_DATA => Value::Bin(r.binary()?),
        USER_PROPERTY => Value::Pair(r.string()?, r.string()?),
        _ => return Ok(None),
    }))
}

/// A property struct the decoder fills one identifier at a time.
pub(crate) trait Accept: Default {
    /// Takes one property; `Ok(false)` if this packet may not carry `id`.
    fn accept(&mut self, id: u8, value: Value) -> Result<bool, DecodeError>;
}

/// Decodes the property list at the reader (length, then properties) into `P`.
pub(crate) fn read_properties<P: Accept>(
    r: &mut crate::decode::Reader,
    packet_type: u8,
) -> Result<P, DecodeError> {
    let len = r.var_int()? as usize;
    let mut list = r.sub_reader(len)?;
    let mut properties = P::default();
    while list.has_remaining() {
        let id = list.var_int()?;
        let id = u8::try_from(id).map_err(|_| DecodeError::UnknownProperty(id))?;
        let Some(value) = read_value(id, &mut list)? else {
            return Err(DecodeError::UnknownProperty(u32::from(id)));
        };
        if !properties.accept(id, value)? {
            return Err(DecodeError::PropertyNotAllowed {
                property: id,
                packet_type,
            });
        }
    }
    Ok(properties)
}

fn once<T>(slot: &mut Option<T>, id: u8, value: T) -> Result<bool, DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty { property: id });
    }
    *slot = Some(value);
    Ok(true)
}

fn invalid(id: u8, value: u32) -> DecodeError {
    DecodeError::InvalidPropertyValue {
        property: id,
        value,
    }
}

/// The 0/1 properties; any other byte is a protocol error.
fn flag(id: u8, value: Value) -> Result<bool, DecodeError> {
    match value {
        Value::Byte(0) => Ok(false),
        Value::Byte(1) => Ok(true),
        Value::Byte(other) => Err(invalid(id, u32::from(other))),
        _ => unreachable!("read_value gives flags a byte"),
    }
}

fn nonzero_u16(id: u8, value: Value) -> Result<u16, DecodeError> {
    match value {
        Value::U16(0) => Err(invalid(id, 0)),
        Value::U16(v) => Ok(v),
        _ => unreachable!("read_value gives this property a u16"),
    }
}

fn u16_value(value: Value) -> u16 {
    match value {
        Value::U16(v) => v,
        _ => unreachable!("read_value gives this property a u16"),
    }
}

fn u32_value(value: Value) -> u32 {
    match value {
        Value::U32(v) => v,
        _ => unreachable!("read_value gives this property a u32"),
    }
}

fn nonzero_u32(id: u8, value: Value) -> Result<u32, DecodeError> {
    match u32_value(value) {
        0 => Err(invalid(id, 0)),
        v => Ok(v),
    }
}

fn string_value(value: Value) -> String {
    match value {
        Value::Str(s) => s,
        _ => unreachable!("read_value gives this property a string"),
    }
}

fn binary_value(value: Value) -> Bytes {
    match value {
        Value::Bin(b) => b,
        _ => unreachable!("read_value gives this property binary data"),
    }
}

fn push_user_property(list: &mut UserProperties, value: Value) -> Result<bool, DecodeError> {
    match value {
        Value::Pair(name, value) => list.push((name, value)),
        _ => unreachable!("read_value gives user properties a pair"),
    }
    Ok(true)
}

/// A Response Topic is a topic name: no wildcards, not empty (MQTT-3.3.2-14).
fn response_topic(value: Value) -> Result<String, DecodeError> {
    let topic = string_value(value);
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(DecodeError::InvalidResponseTopic(topic));
    }
    Ok(topic)
}

impl Accept for ConnectProperties {
    fn accept(&mut self, id: u8, value: Value) -> Result<bool, DecodeError> {
        match id {
            SESSION_EXPIRY_INTERVAL => {
                once(&mut self.session_expiry_interval, id, u32_value(value))
            }
            RECEIVE_MAXIMUM => once(&mut self.receive_maximum, id, nonzero_u16(id, value)?),
            MAXIMUM_PACKET_SIZE => once(&mut self.maximum_packet_size, id, nonzero_u32(id, value)?),
            TOPIC_ALIAS_MAXIMUM => once(&mut self.topic_alias_maximum, id, u16_value(value)),
            REQUEST_RESPONSE_INFORMATION => {
                once(&mut self.request_response_information, id, flag(id, value)?)
            }
            REQUEST_PROBLEM_INFORMATION => {
                once(&mut self.request_problem_information, id, flag(id, value)?)
            }
            USER_PROPERTY => push_user_property(&mut self.user_properties, value),
            AUTHENTICATION_METHOD => once(&mut self.authentication_method, id, string_value(value)),
            AUTHENTICATION_DATA => once(&mut self.authentication_data, id, binary_value(value)),
            _ => Ok(false),
        }
    }
}

impl Accept for WillProperties {
    fn accept(&mut self, id: u8, value: Value) -> Result<bool, DecodeError> {
        match id {
            WILL_DELAY_INTERVAL => once(&mut self.will_delay_interval, id, u32_value(value)),
            PAYLOAD_FORMAT_INDICATOR => {
                once(&mut self.payload_format_indicator, id, flag(id, value)?)
            }
            MESSAGE_EXPIRY_INTERVAL => {
                once(&mut self.message_expiry_interval, id, u32_value(value))
            }
            CONTENT_TYPE => once(&mut self.content_type, id, string_value(value)),
            RESPONSE_TOPIC => once(&mut self.response_topic, id, response_topic(value)?),
            CORRELATION_DATA => once(&mut self.correlation_data, id, binary_value(value)),
            USER_PROPERTY => push_user_property(&mut self.user_properties, value),
            _ => Ok(false),
        }
    }
}

impl Accept for ConnAckProperties {
    fn accept(&mut self, id: u8, value: Value) -> Result<bool, DecodeError> {
        match id {
            SESSION_EXPIRY_INTERVAL => {
                once(&mut self.session_expiry_interval, id, u32_value(value))
            }
            RECEIVE_MAXIMUM => once(&mut self.receive_maximum, id, nonzero_u16(id, value)?),
            MAXIMUM_QOS => {
                let qos = match value {
                    Value::Byte(0) => QoS::AtMostOnce,
                    Value::Byte(1) => QoS::AtLeastOnce,
                    Value::Byte(other) => return Err(invalid(id, u32::from(other))),
                    _ => unreachable!("read_value gives Maximum QoS a byte"),
                };
                once(&mut self.maximum_qos, id, qos)
            }
            RETAIN_AVAILABLE => once(&mut self.retain_available, id, flag(id, value)?),
            MAXIMUM_PACKET_SIZE => once(&mut self.maximum_packet_size, id, nonzero_u32(id, value)?),
            ASSIGNED_CLIENT_IDENTIFIER => once(
                &mut self.assigned_client_identifier,
                id,
                string_value(value),
            ),
            TOPIC_ALIAS_MAXIMUM => once(&mut self.topic_alias_maximum, id, u16_value(value)),
            REASON_STRING => once(&mut self.reason_string, id, string_value(value)),
            USER_PROPERTY => push_user_property(&mut self.user_properties, value),
            WILDCARD_SUBSCRIPTION_AVAILABLE => once(
                &mut self.wildcard_subscription_available,
                id,
                flag(id, value)?,
            ),
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => once(
                &mut self.subscription_identifiers_available,
                id,
                flag(id, value)?,
            ),
            SHARED_SUBSCRIPTION_AVAILABLE => once(
                &mut self.shared_subscription_available,
                id,
                flag(id, value)?,
            ),
            SERVER_KEEP_ALIVE => once(&mut self.server_keep_alive, id, u16_value(value)),
            RESPONSE_INFORMATION => once(&mut self.response_information, id, string_value(value)),
            SERVER_REFERENCE => once(&mut self.server_reference, id, string_value(value)),
            AUTHENTICATION_METHOD => once(&mut self.authentication_method, id, string_value(value)),
            AUTHENTICATION_DATA => once(&mut self.authentication_data, id, binary_value(value)),
            _ => Ok(false),
        }
    }
}

impl Accept for PublishProperties {
    fn accept(&mut self, id: u8, value: Value) -> Result<bool, DecodeError> {
        match id {
            PAYLOAD_FORMAT_INDICATOR => {
                once(&mut self.payload_format_indicator, id, flag(id, value)?)
            }
            MESSAGE_EXPIRY_INTERVAL => {
                once(&mut self.message_expiry_interval, id, u32_value(value))
            }
            // Alias 0 is a protocol error the broker answers with DISCONNECT 0x94, so the
            // codec lets it through for the broker to name.
            TOPIC_ALIAS => once(&mut self.topic_alias, id, u16_value(value)),
            RESPONSE_TOPIC => once(&mut self.response_topic, id, response_topic(value)?),
            CORRELATION_DATA => once(&mut self.correlation_data, id, binary_value(value)),
            USER_PROPERTY => push_user_property(&mut self.user_properties, value),
            // May repeat: a server sends one per matching subscription (MQTT-3.3.4-3).
            SUBSCRIPTION_IDENTIFIER => match value {
                Value::VarInt(0) => Err(invalid(id, 0)),
                Value::VarInt(v) => {
                    self.subscription_identifiers.push(v);
                    Ok(true)
                }
                _ => unreachable!("read_value gives Subscription Identifier a varint"),
            },
            CONTENT_TYPE => once(&mut self.content_type, id, string_value(value)),
            _ => Ok(false),
        }
    }
}

impl Accept for AckProperties {
    fn accept(&mut self, id: u8, value: Value) -> Result<bool, DecodeError> {
        match id {
            REASON_STRING => once(&mut self.reason_string, id, string_value(value)),
            USER_PROPERTY => push_user_property(&mut self.user_properties, value),
            _ => Ok(false),
        }
    }
}

impl Accept for SubscribeProperties {
    fn accept(&mut self, id: u8, value: Value) -> Result<bool, DecodeError> {
        match id {
            SUBSCRIPTION_IDENTIFIER => match value {
                Value::VarInt(0) => Err(invalid(id, 0)),
                Value::VarInt(v) => once(&mut self.subscription_identifier, id, v),
                _ => unreachable!("read_value gives Subscription Identifier a varint"),
            },
            USER_PROPERTY => push_user_property(&mut self.user_properties, value),
            _ => Ok(false),
        }
    }
}

/// UNSUBSCRIBE carries only user properties.
#[derive(Default)]
pub(crate) struct UnsubscribeProperties(pub(crate) UserProperties);

impl Accept for UnsubscribeProperties {
    fn accept(&mut self, id: u8, value: Value) -> Result<bool, DecodeError> {
        match id {
            USER_PROPERTY => push_user_property(&mut self.0, value),
            _ => Ok(false),
        }
    }
}

impl Accept for DisconnectProperties {
    fn accept(&mut self, id: u8, value: Value) -> Result<bool, DecodeError> {
        match id {
            SESSION_EXPIRY_INTERVAL => {
                once(&mut self.session_expiry_interval, id, u32_value(value))
            }
            REASON_STRING => once(&mut self.reason_string, id, string_value(value)),
            USER_PROPERTY => push_user_property(&mut self.user_properties, value),
            SERVER_REFERENCE => once(&mut self.server_reference, id, string_value(value)),
            _ => Ok(false),
        }
    }
}

impl Accept for AuthProperties {
    fn accept(&mut self, id: u8, value: Value) -> Result<bool, DecodeError> {
        match id {
            AUTHENTICATION_METHOD => once(&mut self.authentication_method, id, string_value(value)),
            AUTHENTICATION_DATA => once(&mut self.authentication_data, id, binary_value(value)),
            REASON_STRING => once(&mut self.reason_string, id, string_value(value)),
            USER_PROPERTY => push_user_property(&mut self.user_properties, value),
            _ => Ok(false),
        }
    }
}

/// A property as the encoder sees it: identifier and borrowed value.
pub(crate) enum Prop<'a> {
    Byte(u8, u8),
    U16(u8, u16),
    U32(u8, u32),
    VarInt(u8, u32),
    Str(u8, &'a str),
    Bin(u8, &'a [u8]),
    Pair(&'a str, &'a str),
}

impl Prop<'_> {
    fn len(&self) -> usize {
        // Every identifier used here is below 128: one byte.
        1 + match self {
            Prop::Byte(..) => 1,
            Prop::U16(..) => 2,
            Prop::U32(..) => 4,
            Prop::VarInt(_, v) => crate::wire::remaining_length_len(*v as usize),
            Prop::Str(_, s) => 2 + s.len(),
            Prop::Bin(_, b) => 2 + b.len(),
            Prop::Pair(k, v) => 4 + k.len() + v.len(),
        }
    }

    fn write(&self, buf: &mut BytesMut) {
        match self {
            Prop::Byte(id, v) => {
                buf.put_u8(*id);
                buf.put_u8(*v);
            }
            Prop::U16(id, v) => {
                buf.put_u8(*id);
                buf.put_u16(*v);
            }
            Prop::U32(id, v) => {
                buf.put_u8(*id);
                buf.put_u32(*v);
            }
            Prop::VarInt(id, v) => {
                buf.put_u8(*id);
                crate::encode::put_var_int(buf, *v as usize);
            }
            Prop::Str(id, s) => {
                buf.put_u8(*id);
                crate::encode::put_binary(buf, s.as_bytes());
            }
            Prop::Bin(id, b) => {
                buf.put_u8(*id);
                crate::encode::put_binary(buf, b);
            }
            Prop::Pair(k, v) => {
                buf.put_u8(USER_PROPERTY);
                crate::encode::put_binary(buf, k.as_bytes());
                crate::encode::put_binary(buf, v.as_bytes());
            }
        }
    }

    /// The length a string or binary value needs, for the encoder's 65535 check.
    pub(crate) fn field_len(&self) -> usize {
        match self {
            Prop::Str(_, s) => s.len(),
            Prop::Bin(_, b) => b.len(),
            Prop::Pair(k, v) => k.len().max(v.len()),
            _ => 0,
        }
    }
}

/// A property struct the encoder walks: every present property, in a fixed order.
pub(crate) trait Visit {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>));
}

/// Bytes of the property list's content (without its length prefix).
pub(crate) fn properties_len(p: &dyn Visit) -> usize {
    let mut len = 0;
    p.visit(&mut |prop| len += prop.len());
    len
}

/// Bytes of the property list including its variable-length prefix.
pub(crate) fn properties_wire_len(p: &dyn Visit) -> usize {
    let len = properties_len(p);
    crate::wire::remaining_length_len(len) + len
}

/// The longest string or binary value in the list.
pub(crate) fn longest_field(p: &dyn Visit) -> usize {
    let mut longest = 0;
    p.visit(&mut |prop| longest = longest.max(prop.field_len()));
    longest
}

pub(crate) fn write_properties(buf: &mut BytesMut, p: &dyn Visit) {
    crate::encode::put_var_int(buf, properties_len(p));
    p.visit(&mut |prop| prop.write(buf));
}

fn user<'a>(list: &'a UserProperties, f: &mut dyn FnMut(Prop<'a>)) {
    for (k, v) in list {
        f(Prop::Pair(k, v));
    }
}

fn opt_u32<'a>(id: u8, v: Option<u32>, f: &mut dyn FnMut(Prop<'a>)) {
    if let Some(v) = v {
        f(Prop::U32(id, v));
    }
}

fn opt_u16<'a>(id: u8, v: Option<u16>, f: &mut dyn FnMut(Prop<'a>)) {
    if let Some(v) = v {
        f(Prop::U16(id, v));
    }
}

fn opt_flag<'a>(id: u8, v: Option<bool>, f: &mut dyn FnMut(Prop<'a>)) {
    if let Some(v) = v {
        f(Prop::Byte(id, u8::from(v)));
    }
}

fn opt_str<'a>(id: u8, v: &'a Option<String>, f: &mut dyn FnMut(Prop<'a>)) {
    if let Some(v) = v {
        f(Prop::Str(id, v));
    }
}

fn opt_bin<'a>(id: u8, v: &'a Option<Bytes>, f: &mut dyn FnMut(Prop<'a>)) {
    if let Some(v) = v {
        f(Prop::Bin(id, v));
    }
}

impl Visit for ConnectProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        opt_u32(SESSION_EXPIRY_INTERVAL, self.session_expiry_interval, f);
        opt_u16(RECEIVE_MAXIMUM, self.receive_maximum, f);
        opt_u32(MAXIMUM_PACKET_SIZE, self.maximum_packet_size, f);
        opt_u16(TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum, f);
        opt_flag(
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
            f,
        );
        opt_flag(
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
            f,
        );
        user(&self.user_properties, f);
        opt_str(AUTHENTICATION_METHOD, &self.authentication_method, f);
        opt_bin(AUTHENTICATION_DATA, &self.authentication_data, f);
    }
}

impl Visit for WillProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        opt_u32(WILL_DELAY_INTERVAL, self.will_delay_interval, f);
        opt_flag(PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator, f);
        opt_u32(MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval, f);
        opt_str(CONTENT_TYPE, &self.content_type, f);
        opt_str(RESPONSE_TOPIC, &self.response_topic, f);
        opt_bin(CORRELATION_DATA, &self.correlation_data, f);
        user(&self.user_properties, f);
    }
}

impl Visit for ConnAckProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        opt_u32(SESSION_EXPIRY_INTERVAL, self.session_expiry_interval, f);
        opt_u16(RECEIVE_MAXIMUM, self.receive_maximum, f);
        if let Some(qos) = self.maximum_qos {
            f(Prop::Byte(MAXIMUM_QOS, qos as u8));
        }
        opt_flag(RETAIN_AVAILABLE, self.retain_available, f);
        opt_u32(MAXIMUM_PACKET_SIZE, self.maximum_packet_size, f);
        opt_str(
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
            f,
        );
        opt_u16(TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum, f);
        opt_str(REASON_STRING, &self.reason_string, f);
        user(&self.user_properties, f);
        opt_flag(
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
            f,
        );
        opt_flag(
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
            f,
        );
        opt_flag(
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
            f,
        );
        opt_u16(SERVER_KEEP_ALIVE, self.server_keep_alive, f);
        opt_str(RESPONSE_INFORMATION, &self.response_information, f);
        opt_str(SERVER_REFERENCE, &self.server_reference, f);
        opt_str(AUTHENTICATION_METHOD, &self.authentication_method, f);
        opt_bin(AUTHENTICATION_DATA, &self.authentication_data, f);
    }
}

impl Visit for PublishProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        opt_flag(PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator, f);
        opt_u32(MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval, f);
        opt_u16(TOPIC_ALIAS, self.topic_alias, f);
        opt_str(RESPONSE_TOPIC, &self.response_topic, f);
        opt_bin(CORRELATION_DATA, &self.correlation_data, f);
        user(&self.user_properties, f);
        for id in &self.subscription_identifiers {
            f(Prop::VarInt(SUBSCRIPTION_IDENTIFIER, *id));
        }
        opt_str(CONTENT_TYPE, &self.content_type, f);
    }
}

impl Visit for AckProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        opt_str(REASON_STRING, &self.reason_string, f);
        user(&self.user_properties, f);
    }
}

impl Visit for SubscribeProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        if let Some(id) = self.subscription_identifier {
            f(Prop::VarInt(SUBSCRIPTION_IDENTIFIER, id));
        }
        user(&self.user_properties, f);
    }
}

impl Visit for UserProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        user(self, f);
    }
}

impl Visit for DisconnectProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        opt_u32(SESSION_EXPIRY_INTERVAL, self.session_expiry_interval, f);
        opt_str(REASON_STRING, &self.reason_string, f);
        user(&self.user_properties, f);
        opt_str(SERVER_REFERENCE, &self.server_reference, f);
    }
}

impl Visit for AuthProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        opt_str(AUTHENTICATION_METHOD, &self.authentication_method, f);
        opt_bin(AUTHENTICATION_DATA, &self.authentication_data, f);
        opt_str(REASON_STRING, &self.reason_string, f);
        user(&self.user_properties, f);
    }
}

/// Writes PUBLISH properties as an MQTT 5 property list (length prefix included): the
/// form the broker's store keeps a message's properties in.
pub fn encode_publish_properties(properties: &PublishProperties, buf: &mut BytesMut) {
    write_properties(buf, properties);
}

/// Reads what [`encode_publish_properties`] wrote, with the decoder's strictness.
pub fn decode_publish_properties(bytes: Bytes) -> Result<PublishProperties, DecodeError> {
    let mut reader = crate::decode::Reader::new(bytes);
    read_properties(&mut reader, crate::wire::PUBLISH)
}
