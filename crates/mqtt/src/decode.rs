//! Strict MQTT 3.1.1 and MQTT 5 decoder.
//!
//! Everything the specifications say a receiver MUST treat as malformed (or, in MQTT 5,
//! as a protocol error detectable from one packet) is rejected here, so the broker never
//! has to re-validate a decoded packet's syntax.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{ConnectFlagsViolation, DecodeError};
use crate::packet::*;
use crate::properties::{read_properties, UnsubscribeProperties};
use crate::wire::*;

/// Decodes the packet at the front of `buf`, for a connection speaking `protocol` (the
/// version its CONNECT chose; a CONNECT itself is decoded by the level it carries).
///
/// Returns `Ok(None)` without touching `buf` while the packet is incomplete, and
/// `Ok(Some(packet))` after removing exactly that packet's bytes. PUBLISH payloads, will
/// messages, passwords and binary properties are slices of the buffer, not copies.
///
/// `max_packet_size` bounds the whole packet (fixed header included); a larger declared
/// length is refused as soon as the remaining-length field is complete, before any of the
/// body has to be buffered.
pub fn decode(
    buf: &mut BytesMut,
    max_packet_size: usize,
    protocol: Protocol,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    let v5 = protocol.is_v5();
    let packet_type = byte1 >> 4;
    let flags = byte1 & 0x0F;
    check_fixed_header_flags(packet_type, flags, v5)?;

    let Some((length_len, remaining)) = read_remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let header_len = 1 + length_len;
    let size = header_len + remaining;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if let Some(expected) = fixed_remaining_length(packet_type, v5) {
        if remaining != expected {
            return Err(DecodeError::InvalidRemainingLength {
                packet_type,
                expected,
                actual: remaining,
            });
        }
    }
    if buf.len() < size {
        return Ok(None);
    }

    let mut body = buf.split_to(size).freeze();
    body.advance(header_len);
    let mut reader = Reader(body);
    let r = &mut reader;
    let packet = match packet_type {
        CONNECT => Packet::Connect(connect(r)?),
        CONNACK => Packet::ConnAck(connack(r, v5)?),
        PUBLISH => Packet::Publish(publish(flags, r, v5)?),
        PUBACK => Packet::PubAck(ack(PUBACK, r, v5)?),
        PUBREC => Packet::PubRec(ack(PUBREC, r, v5)?),
        PUBREL => Packet::PubRel(ack(PUBREL, r, v5)?),
        PUBCOMP => Packet::PubComp(ack(PUBCOMP, r, v5)?),
        SUBSCRIBE => Packet::Subscribe(subscribe(r, v5)?),
        SUBACK => Packet::SubAck(suback(r, v5)?),
        UNSUBSCRIBE => Packet::Unsubscribe(unsubscribe(r, v5)?),
        UNSUBACK => Packet::UnsubAck(unsuback(r, v5)?),
        PINGREQ => Packet::PingReq,
        PINGRESP => Packet::PingResp,
        DISCONNECT => Packet::Disconnect(disconnect(r, v5)?),
        AUTH => Packet::Auth(auth(r)?),
        _ => unreachable!("packet type validated by check_fixed_header_flags"),
    };
    reader.finish()?;
    Ok(Some(packet))
}

/// The protocol a CONNECT at the front of `bytes` asks for, read from its first bytes
/// without decoding it: lets a server answer a CONNECT it cannot decode in the form the
/// client reads (an MQTT 5 CONNACK with a reason code, or a 3.1.1 return code).
pub fn peek_connect_protocol(bytes: &[u8]) -> Option<Protocol> {
    if bytes.first()? >> 4 != CONNECT {
        return None;
    }
    let (length_len, _) = read_remaining_length(bytes.get(1..)?).ok()??;
    let body = bytes.get(1 + length_len..)?;
    match body {
        [0, 4, b'M', b'Q', b'T', b'T', 5, ..] => Some(Protocol::V5),
        [0, 4, b'M', b'Q', b'T', b'T', ..] => Some(Protocol::V311),
        [0, 6, b'M', b'Q', b'I', b's', b'd', b'p', ..] => Some(Protocol::V31),
        _ => None,
    }
}

fn check_fixed_header_flags(packet_type: u8, flags: u8, v5: bool) -> Result<(), DecodeError> {
    let invalid = || DecodeError::InvalidFixedHeaderFlags { packet_type, flags };
    match packet_type {
        0 => Err(DecodeError::InvalidPacketType(packet_type)),
        AUTH if !v5 => Err(DecodeError::InvalidPacketType(packet_type)),
        PUBLISH => {
            let qos = (flags >> PUBLISH_QOS_SHIFT) & 0b11;
            if qos == 3 {
                Err(DecodeError::InvalidQoS(qos))
            } else if qos == 0 && flags & PUBLISH_DUP != 0 {
                Err(invalid())
            } else {
                Ok(())
            }
        }
        PUBREL | SUBSCRIBE | UNSUBSCRIBE if flags != 0b0010 => Err(invalid()),
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => Ok(()),
        _ if flags != 0 => Err(invalid()),
        _ => Ok(()),
    }
}

/// Returns the value and the number of bytes it took, or `None` if more bytes are needed.
fn read_remaining_length(bytes: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = bytes.get(i) else {
            return Ok(None);
        };
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((i + 1, value)));
        }
    }
    Err(DecodeError::MalformedRemainingLength)
}

/// Packets whose size the spec fixes; checking early refuses e.g. a PINGREQ that claims
/// a body before that body is buffered. MQTT 5 lets acknowledgements and DISCONNECT
/// carry a reason code and properties, so only the pings stay fixed there.
fn fixed_remaining_length(packet_type: u8, v5: bool) -> Option<usize> {
    match packet_type {
        PINGREQ | PINGRESP => Some(0),
        _ if v5 => None,
        CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | UNSUBACK => Some(2),
        DISCONNECT => Some(0),
        _ => None,
    }
}

/// The reason codes each MQTT 5 packet may carry (MQTT 5 §2.4 and each packet's table).
fn reason_allowed(packet_type: u8, code: u8) -> bool {
    match packet_type {
        CONNACK => matches!(
            code,
            0x00 | 0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F
        ),
        PUBACK | PUBREC => matches!(
            code,
            0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
        ),
        PUBREL | PUBCOMP => matches!(code, 0x00 | 0x92),
        SUBACK => matches!(
            code,
            0x00..=0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
        ),
        UNSUBACK => matches!(code, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91),
        // 0x91 and 0x92 (packet identifier in use / not found) are not DISCONNECT codes.
        DISCONNECT => matches!(
            code,
            0x00 | 0x04 | 0x80..=0x83 | 0x87 | 0x89 | 0x8B | 0x8D..=0x90 | 0x93..=0xA2
        ),
        AUTH => matches!(code, 0x00 | 0x18 | 0x19),
        _ => false,
    }
}

/// Cursor over one packet's body; running past its end means the declared remaining
/// length was too short for the content.
pub(crate) struct Reader(Bytes);

impl Reader {
    pub(crate) fn new(bytes: Bytes) -> Reader {
        Reader(bytes)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.0.is_empty() {
            return Err(DecodeError::PayloadTooShort);
        }
        Ok(self.0.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.0.len() < 2 {
            return Err(DecodeError::PayloadTooShort);
        }
        Ok(self.0.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.0.len() < 4 {
            return Err(DecodeError::PayloadTooShort);
        }
        Ok(self.0.get_u32())
    }

    /// A variable byte integer (MQTT 5 §1.5.5), at most four bytes.
    pub(crate) fn var_int(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedVariableInteger)
    }

    /// The next `len` bytes as a reader of their own (a property list).
    pub(crate) fn sub_reader(&mut self, len: usize) -> Result<Reader, DecodeError> {
        if self.0.len() < len {
            return Err(DecodeError::PayloadTooShort);
        }
        Ok(Reader(self.0.split_to(len)))
    }

    fn pkid(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            pkid => Ok(pkid),
        }
    }

    /// Length-prefixed binary data, shared with the receive buffer.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        if self.0.len() < len {
            return Err(DecodeError::PayloadTooShort);
        }
        Ok(self.0.split_to(len))
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let s = std::str::from_utf8(&raw).map_err(|_| DecodeError::InvalidUtf8)?;
        if s.contains('\0') {
            return Err(DecodeError::NullCharacter);
        }
        Ok(s.to_owned())
    }

    /// A topic name; MQTT 5 allows an empty one when a Topic Alias stands for it, which
    /// the caller checks once the properties are read.
    fn topic_name(&mut self, allow_empty: bool) -> Result<String, DecodeError> {
        let topic = self.string()?;
        if topic.is_empty() && !allow_empty {
            Err(DecodeError::EmptyTopic)
        } else if topic.contains(['+', '#']) {
            Err(DecodeError::WildcardInTopicName(topic))
        } else {
            Ok(topic)
        }
    }

    /// A topic filter. MQTT 5 answers a bad filter per filter (SUBACK / UNSUBACK 0x8F
    /// Topic Filter invalid, as IoT Core lists), so its syntax is left to the receiver
    /// there; 3.1.1 has no such answer and a bad filter is a malformed packet.
    fn topic_filter(&mut self, v5: bool) -> Result<String, DecodeError> {
        let filter = self.string()?;
        if v5 || crate::topic::is_valid_topic_filter(&filter) {
            Ok(filter)
        } else {
            Err(DecodeError::InvalidTopicFilter(filter))
        }
    }

    pub(crate) fn has_remaining(&self) -> bool {
        !self.0.is_empty()
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.0)
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    /// A reason code the packet type may carry.
    fn reason(&mut self, packet_type: u8) -> Result<ReasonCode, DecodeError> {
        let code = self.u8()?;
        if reason_allowed(packet_type, code) {
            Ok(ReasonCode(code))
        } else {
            Err(DecodeError::InvalidReasonCode { packet_type, code })
        }
    }
}

fn connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    // The name is judged before the level is read so a foreign protocol is reported as
    // such rather than as a truncated packet.
    let name = r.binary()?;
    let level = match &name[..] {
        b"MQTT" | b"MQIsdp" => r.u8()?,
        _ => {
            return Err(DecodeError::InvalidProtocolName(
                String::from_utf8_lossy(&name).into_owned(),
            ))
        }
    };
    let protocol = match (&name[..], level) {
        (b"MQTT", 5) => Protocol::V5,
        (b"MQTT", 4) => Protocol::V311,
        (b"MQIsdp", 3) => Protocol::V31,
        _ => return Err(DecodeError::UnsupportedProtocolLevel(level)),
    };
    let v5 = protocol.is_v5();

    let flags = r.u8()?;
    let violation = |v| Err(DecodeError::InvalidConnectFlags(v));
    let will_flag = flags & CONNECT_WILL != 0;
    let will_qos = (flags >> CONNECT_WILL_QOS_SHIFT) & 0b11;
    let will_retain = flags & CONNECT_WILL_RETAIN != 0;
    let has_password = flags & CONNECT_PASSWORD != 0;
    let has_username = flags & CONNECT_USERNAME != 0;
    if flags & CONNECT_RESERVED != 0 {
        return violation(ConnectFlagsViolation::ReservedBitSet);
    }
    if !will_flag && will_qos != 0 {
        return violation(ConnectFlagsViolation::WillQoSWithoutWill);
    }
    if !will_flag && will_retain {
        return violation(ConnectFlagsViolation::WillRetainWithoutWill);
    }
    let Some(will_qos) = QoS::from_u8(will_qos) else {
        return violation(ConnectFlagsViolation::InvalidWillQoS);
    };
    // MQTT 5 allows a password without a user name (§3.1.2.9); 3.1.1 does not.
    if has_password && !has_username && !v5 {
        return violation(ConnectFlagsViolation::PasswordWithoutUsername);
    }

    let keep_alive = r.u16()?;
    let properties: ConnectProperties = if v5 {
        read_properties(r, CONNECT)?
    } else {
        ConnectProperties::default()
    };
    // MQTT 5 §3.1.2.11.10: Authentication Data without Authentication Method.
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::AuthenticationDataWithoutMethod);
    }
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = if v5 {
            read_properties(r, CONNECT)?
        } else {
            WillProperties::default()
        };
        Some(LastWill {
            topic: r.topic_name(false)?,
            message: r.binary()?,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };

    Ok(Connect {
        protocol,
        keep_alive,
        client_id,
        clean_session: flags & CONNECT_CLEAN_SESSION != 0,
        will,
        username,
        password,
        properties,
    })
}

fn connack(r: &mut Reader, v5: bool) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & !0x01 != 0 {
        return Err(DecodeError::InvalidConnAckFlags(flags));
    }
    let session_present = flags & 0x01 != 0;
    if v5 {
        let code = r.reason(CONNACK)?;
        let properties = read_properties(r, CONNACK)?;
        return Ok(ConnAck {
            session_present,
            code,
            properties,
        });
    }
    let code = match r.u8()? {
        0 => ReasonCode::SUCCESS,
        1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        3 => ReasonCode::SERVER_UNAVAILABLE,
        4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        5 => ReasonCode::NOT_AUTHORIZED,
        other => return Err(DecodeError::InvalidConnectReturnCode(other)),
    };
    Ok(ConnAck::new(session_present, code))
}

fn publish(flags: u8, r: &mut Reader, v5: bool) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((flags >> PUBLISH_QOS_SHIFT) & 0b11)
        .expect("QoS 3 rejected by check_fixed_header_flags");
    let topic = r.topic_name(v5)?;
    let pkid = match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce | QoS::ExactlyOnce => r.pkid()?,
    };
    let properties: PublishProperties = if v5 {
        read_properties(r, PUBLISH)?
    } else {
        PublishProperties::default()
    };
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::EmptyTopicWithoutAlias);
    }
    Ok(Publish {
        dup: flags & PUBLISH_DUP != 0,
        qos,
        retain: flags & PUBLISH_RETAIN != 0,
        topic,
        pkid,
        payload: r.rest(),
        properties,
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP. In MQTT 5 the reason code and properties may be left
/// off (remaining length 2 means Success, 3 means no properties).
fn ack(packet_type: u8, r: &mut Reader, v5: bool) -> Result<Ack, DecodeError> {
    let mut ack = Ack::new(r.pkid()?);
    if v5 && r.has_remaining() {
        ack.reason = r.reason(packet_type)?;
        if r.has_remaining() {
            ack.properties = read_properties(r, packet_type)?;
        }
    }
    Ok(ack)
}

fn subscribe(r: &mut Reader, v5: bool) -> Result<Subscribe, DecodeError> {
    let pkid = r.pkid()?;
    let properties = if v5 {
        read_properties(r, SUBSCRIBE)?
    } else {
        SubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while r.has_remaining() {
        let filter = r.topic_filter(v5)?;
        let options = r.u8()?;
        // 3.1.1 uses only the QoS bits; MQTT 5 adds No Local, Retain As Published and
        // Retain Handling (3 is reserved), and keeps bits 6 and 7 reserved.
        // In MQTT 5 a Maximum QoS of 3 is a protocol error like Retain Handling 3 (§3.8.3.1),
        // told apart from reserved bits (malformed) by `DecodeError::reason_code`.
        let reserved = if v5 { 0b1100_0000 } else { 0b1111_1100 };
        if options & reserved != 0 || (options >> 4) & 0b11 == 3 || (v5 && options & 0b11 == 3) {
            return Err(DecodeError::InvalidSubscribeOptions(options));
        }
        let qos = QoS::from_u8(options & 0b11).ok_or(DecodeError::InvalidQoS(options & 0b11))?;
        filters.push(SubscribeFilter {
            filter,
            qos,
            no_local: options & 0b0100 != 0,
            retain_as_published: options & 0b1000 != 0,
            retain_handling: match (options >> 4) & 0b11 {
                0 => RetainHandling::OnSubscribe,
                1 => RetainHandling::OnNewSubscribe,
                _ => RetainHandling::Never,
            },
        });
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptySubscribe);
    }
    Ok(Subscribe {
        pkid,
        filters,
        properties,
    })
}

fn suback(r: &mut Reader, v5: bool) -> Result<SubAck, DecodeError> {
    let pkid = r.pkid()?;
    let properties = if v5 {
        read_properties(r, SUBACK)?
    } else {
        AckProperties::default()
    };
    let mut return_codes = Vec::new();
    while r.has_remaining() {
        let code = r.u8()?;
        let valid = if v5 {
            reason_allowed(SUBACK, code)
        } else {
            matches!(code, 0..=2 | SUBACK_FAILURE)
        };
        if !valid {
            return Err(DecodeError::InvalidSubAckReturnCode(code));
        }
        return_codes.push(ReasonCode(code));
    }
    if return_codes.is_empty() {
        return Err(DecodeError::EmptySubAck);
    }
    Ok(SubAck {
        pkid,
        return_codes,
        properties,
    })
}

fn unsubscribe(r: &mut Reader, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let pkid = r.pkid()?;
    let user_properties = if v5 {
        read_properties::<UnsubscribeProperties>(r, UNSUBSCRIBE)?.0
    } else {
        UserProperties::new()
    };
    let mut filters = Vec::new();
    while r.has_remaining() {
        filters.push(r.topic_filter(v5)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptyUnsubscribe);
    }
    Ok(Unsubscribe {
        pkid,
        filters,
        user_properties,
    })
}

fn unsuback(r: &mut Reader, v5: bool) -> Result<UnsubAck, DecodeError> {
    let pkid = r.pkid()?;
    if !v5 {
        return Ok(UnsubAck {
            pkid,
            reason_codes: Vec::new(),
            properties: AckProperties::default(),
        });
    }
    let properties = read_properties(r, UNSUBACK)?;
    let mut reason_codes = Vec::new();
    while r.has_remaining() {
        reason_codes.push(r.reason(UNSUBACK)?);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::EmptyUnsubAck);
    }
    Ok(UnsubAck {
        pkid,
        reason_codes,
        properties,
    })
}

/// MQTT 5 DISCONNECT: an empty body means Normal disconnection.
fn disconnect(r: &mut Reader, v5: bool) -> Result<Disconnect, DecodeError> {
    let mut disconnect = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    if v5 && r.has_remaining() {
        disconnect.reason = r.reason(DISCONNECT)?;
        if r.has_remaining() {
            disconnect.properties = read_properties(r, DISCONNECT)?;
        }
    }
    Ok(disconnect)
}

fn auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let mut auth = Auth {
        reason: ReasonCode::SUCCESS,
        properties: AuthProperties::default(),
    };
    if r.has_remaining() {
        auth.reason = r.reason(AUTH)?;
        if r.has_remaining() {
            auth.properties = read_properties(r, AUTH)?;
        }
    }
    Ok(auth)
}

#[cfg(test)]
mod v5_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ConnectFlagsViolation as V;
    use DecodeError as E;

    const MAX: usize = 1 << 20;

    /// Length-prefixed MQTT string/binary field.
    fn s(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    /// A frame with the given first byte and body; the body is shorter than 128 bytes.
    fn frame(byte1: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 128);
        let mut out = vec![byte1, body.len() as u8];
        out.extend_from_slice(body);
        out
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn connect_frame(flags: u8, payload: &[u8]) -> Vec<u8> {
        frame(0x10, &cat(&[&s(b"MQTT"), &[4, flags, 0, 60], payload]))
    }

    fn decode_all(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
        decode(&mut BytesMut::from(bytes), MAX, Protocol::V311)
    }

    fn ok(bytes: &[u8]) -> Packet {
        let mut buf = BytesMut::from(bytes);
        let packet = decode(&mut buf, MAX, Protocol::V311)
            .unwrap()
            .expect("complete packet");
        assert!(buf.is_empty(), "packet not fully consumed");
        packet
    }

    fn err(bytes: &[u8]) -> DecodeError {
        decode_all(bytes).expect_err("packet should be rejected")
    }

    #[test]
    fn reserved_packet_types() {
        assert_eq!(err(&[0x00, 0x00]), E::InvalidPacketType(0));
        assert_eq!(err(&[0xF0, 0x00]), E::InvalidPacketType(15));
        // Refused from the first byte alone.
        assert_eq!(err(&[0xF0]), E::InvalidPacketType(15));
    }

    #[test]
    fn fixed_header_flags() {
        let flags = |packet_type, flags| E::InvalidFixedHeaderFlags { packet_type, flags };
        assert_eq!(err(&[0x60, 2, 0, 1]), flags(6, 0));
        assert_eq!(err(&[0x80, 5, 0, 1, 0, 1, b'a']), flags(8, 0));
        assert_eq!(err(&[0xA0, 5, 0, 1, 0, 1, b'a']), flags(10, 0));
        assert_eq!(err(&[0x63, 2, 0, 1]), flags(6, 3));
        assert_eq!(err(&[0x41, 2, 0, 1]), flags(4, 1));
        assert_eq!(err(&[0xC8, 0]), flags(12, 8));
        assert_eq!(err(&[0xE2, 0]), flags(14, 2));
        assert_eq!(err(&[0x12]), flags(1, 2));
        assert_eq!(err(&[0x21, 2, 0, 0]), flags(2, 1));
    }

    #[test]
    fn publish_qos3() {
        assert_eq!(err(&[0x36, 5, 0, 1, b'a', 0, 1]), E::InvalidQoS(3));
    }

    #[test]
    fn publish_qos0_with_dup() {
        assert_eq!(
            err(&[0x38, 3, 0, 1, b'a']),
            E::InvalidFixedHeaderFlags {
                packet_type: 3,
                flags: 8
            }
        );
    }

    #[test]
    fn remaining_length_longer_than_four_bytes() {
        assert_eq!(
            err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            E::MalformedRemainingLength
        );
        // Known from the fourth byte already.
        assert_eq!(
            err(&[0x30, 0x80, 0x80, 0x80, 0x80]),
            E::MalformedRemainingLength
        );
    }

    #[test]
    fn oversize_declared_length_rejected_from_header_alone() {
        // 200_000_000 = 0x0BEBC200 -> 0x80|0x00, 0x80|0x04, 0x80|0x5F, 0x5F
        let mut len = 200_000_000usize;
        let mut header = vec![0x30];
        while len > 0 {
            let byte = (len % 128) as u8;
            len /= 128;
            header.push(if len > 0 { byte | 0x80 } else { byte });
        }
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(
            decode(&mut buf, MAX, Protocol::V311),
            Err(E::PacketTooLarge {
                size: 200_000_005,
                max: MAX
            })
        );
    }

    #[test]
    fn max_packet_size_counts_the_whole_packet() {
        let bytes = frame(0x30, &cat(&[&s(b"a/b"), b"hello"]));
        assert!(decode(&mut BytesMut::from(&bytes[..]), bytes.len(), Protocol::V311).is_ok());
        assert_eq!(
            decode(
                &mut BytesMut::from(&bytes[..]),
                bytes.len() - 1,
                Protocol::V311
            ),
            Err(E::PacketTooLarge {
                size: bytes.len(),
                max: bytes.len() - 1
            })
        );
    }

    #[test]
    fn fixed_size_packets_with_wrong_remaining_length() {
        let wrong = |packet_type, expected, actual| E::InvalidRemainingLength {
            packet_type,
            expected,
            actual,
        };
        assert_eq!(err(&[0xC0, 1, 0]), wrong(12, 0, 1));
        assert_eq!(err(&[0xD0, 1, 0]), wrong(13, 0, 1));
        assert_eq!(err(&[0xE0, 1, 0]), wrong(14, 0, 1));
        assert_eq!(err(&[0x40, 3, 0, 1, 0]), wrong(4, 2, 3));
        assert_eq!(err(&[0x50, 1, 0]), wrong(5, 2, 1));
        assert_eq!(err(&[0x62, 0]), wrong(6, 2, 0));
        assert_eq!(err(&[0x70, 4, 0, 1, 0, 1]), wrong(7, 2, 4));
        assert_eq!(err(&[0xB0, 3, 0, 1, 0]), wrong(11, 2, 3));
        assert_eq!(err(&[0x20, 3, 0, 0, 0]), wrong(2, 2, 3));
        // Refused before the body arrives.
        assert_eq!(err(&[0xC0, 100]), wrong(12, 0, 100));
    }

    #[test]
    fn invalid_protocol_name() {
        let bytes = frame(0x10, &cat(&[&s(b"MQTX"), &[4, 2, 0, 60], &s(b"id")]));
        assert_eq!(err(&bytes), E::InvalidProtocolName("MQTX".into()));
        // Name judged before the rest of the header is looked at.
        assert_eq!(
            err(&frame(0x10, &s(b"HTTP"))),
            E::InvalidProtocolName("HTTP".into())
        );
    }

    #[test]
    fn unsupported_protocol_level() {
        let with = |name: &[u8], level| {
            err(&frame(
                0x10,
                &cat(&[&s(name), &[level, 2, 0, 60], &s(b"id")]),
            ))
        };
        assert_eq!(with(b"MQTT", 3), E::UnsupportedProtocolLevel(3));
        assert_eq!(with(b"MQTT", 6), E::UnsupportedProtocolLevel(6));
        assert_eq!(with(b"MQIsdp", 5), E::UnsupportedProtocolLevel(5));
        assert_eq!(with(b"MQIsdp", 4), E::UnsupportedProtocolLevel(4));
    }

    #[test]
    fn connect_reserved_flag() {
        assert_eq!(
            err(&connect_frame(0x03, &s(b"id"))),
            E::InvalidConnectFlags(V::ReservedBitSet)
        );
    }

    #[test]
    fn connect_will_qos_without_will() {
        assert_eq!(
            err(&connect_frame(0x0A, &s(b"id"))),
            E::InvalidConnectFlags(V::WillQoSWithoutWill)
        );
    }

    #[test]
    fn connect_will_retain_without_will() {
        assert_eq!(
            err(&connect_frame(0x22, &s(b"id"))),
            E::InvalidConnectFlags(V::WillRetainWithoutWill)
        );
    }

    #[test]
    fn connect_will_qos3() {
        let payload = cat(&[&s(b"id"), &s(b"will"), &s(b"bye")]);
        assert_eq!(
            err(&connect_frame(0x1E, &payload)),
            E::InvalidConnectFlags(V::InvalidWillQoS)
        );
    }

    #[test]
    fn connect_password_without_username() {
        let payload = cat(&[&s(b"id"), &s(b"secret")]);
        assert_eq!(
            err(&connect_frame(0x42, &payload)),
            E::InvalidConnectFlags(V::PasswordWithoutUsername)
        );
    }

    #[test]
    fn invalid_utf8() {
        assert_eq!(err(&connect_frame(0x02, &s(&[0xC3, 0x28]))), E::InvalidUtf8);
        assert_eq!(err(&frame(0x30, &s(&[0xFF]))), E::InvalidUtf8);
        let mut sub = vec![0, 1];
        sub.extend(s(&[0xED, 0xA0, 0x80])); // encoded surrogate U+D800
        sub.push(0);
        assert_eq!(err(&frame(0x82, &sub)), E::InvalidUtf8);
    }

    #[test]
    fn null_character() {
        assert_eq!(err(&connect_frame(0x02, &s(b"a\0b"))), E::NullCharacter);
        assert_eq!(err(&frame(0x30, &s(b"a\0"))), E::NullCharacter);
        let payload = cat(&[&s(b"id"), &s(b"user\0")]);
        assert_eq!(err(&connect_frame(0x82, &payload)), E::NullCharacter);
    }

    #[test]
    fn zero_packet_ids() {
        assert_eq!(
            err(&frame(0x32, &cat(&[&s(b"a"), &[0, 0]]))),
            E::ZeroPacketId
        );
        assert_eq!(
            err(&frame(0x34, &cat(&[&s(b"a"), &[0, 0]]))),
            E::ZeroPacketId
        );
        for byte1 in [0x40, 0x50, 0x62, 0x70, 0xB0] {
            assert_eq!(err(&[byte1, 2, 0, 0]), E::ZeroPacketId, "{byte1:#x}");
        }
        assert_eq!(
            err(&frame(0x82, &cat(&[&[0, 0], &s(b"a"), &[0]]))),
            E::ZeroPacketId
        );
        assert_eq!(err(&frame(0x90, &[0, 0, 0])), E::ZeroPacketId);
        assert_eq!(
            err(&frame(0xA2, &cat(&[&[0, 0], &s(b"a")]))),
            E::ZeroPacketId
        );
    }

    #[test]
    fn wildcard_in_topic_name() {
        assert_eq!(
            err(&frame(0x30, &s(b"a/+"))),
            E::WildcardInTopicName("a/+".into())
        );
        assert_eq!(
            err(&frame(0x31, &s(b"#"))),
            E::WildcardInTopicName("#".into())
        );
        let payload = cat(&[&s(b"id"), &s(b"will/#"), &s(b"bye")]);
        assert_eq!(
            err(&connect_frame(0x06, &payload)),
            E::WildcardInTopicName("will/#".into())
        );
    }

    #[test]
    fn empty_topic() {
        assert_eq!(err(&frame(0x30, &s(b""))), E::EmptyTopic);
        let payload = cat(&[&s(b"id"), &s(b""), &s(b"bye")]);
        assert_eq!(err(&connect_frame(0x06, &payload)), E::EmptyTopic);
    }

    #[test]
    fn invalid_topic_filters() {
        for bad in [&b"a/#/b"[..], b"a+", b"", b"a#", b"#/"] {
            let name = String::from_utf8(bad.to_vec()).unwrap();
            let sub = frame(0x82, &cat(&[&[0, 1], &s(bad), &[1]]));
            assert_eq!(err(&sub), E::InvalidTopicFilter(name.clone()));
            let unsub = frame(0xA2, &cat(&[&[0, 1], &s(bad)]));
            assert_eq!(err(&unsub), E::InvalidTopicFilter(name));
        }
    }

    #[test]
    fn empty_subscribe_unsubscribe_suback() {
        assert_eq!(err(&[0x82, 2, 0, 1]), E::EmptySubscribe);
        assert_eq!(err(&[0xA2, 2, 0, 1]), E::EmptyUnsubscribe);
        assert_eq!(err(&[0x90, 2, 0, 1]), E::EmptySubAck);
    }

    #[test]
    fn subscribe_options() {
        let with = |options| err(&frame(0x82, &cat(&[&[0, 1], &s(b"a"), &[options]])));
        assert_eq!(with(0x04), E::InvalidSubscribeOptions(0x04));
        assert_eq!(with(0x81), E::InvalidSubscribeOptions(0x81));
        assert_eq!(with(0x03), E::InvalidQoS(3));
    }

    #[test]
    fn suback_return_codes() {
        assert_eq!(err(&[0x90, 3, 0, 1, 3]), E::InvalidSubAckReturnCode(3));
        assert_eq!(
            err(&[0x90, 4, 0, 1, 0, 0x81]),
            E::InvalidSubAckReturnCode(0x81)
        );
    }

    #[test]
    fn connack_flags_and_code() {
        assert_eq!(err(&[0x20, 2, 0x02, 0]), E::InvalidConnAckFlags(2));
        assert_eq!(err(&[0x20, 2, 0x80, 0]), E::InvalidConnAckFlags(0x80));
        assert_eq!(err(&[0x20, 2, 0, 6]), E::InvalidConnectReturnCode(6));
    }

    #[test]
    fn content_longer_than_declared() {
        // Topic claims 5 bytes, only 3 declared.
        assert_eq!(err(&[0x30, 3, 0, 5, b'a']), E::PayloadTooShort);
        // Packet id missing.
        assert_eq!(err(&frame(0x32, &s(b"a"))), E::PayloadTooShort);
        // Subscribe filter without options byte.
        assert_eq!(
            err(&frame(0x82, &cat(&[&[0, 1], &s(b"a")]))),
            E::PayloadTooShort
        );
        // CONNECT without client id.
        assert_eq!(
            err(&frame(0x10, &cat(&[&s(b"MQTT"), &[4, 2, 0, 60]]))),
            E::PayloadTooShort
        );
        // Username flag but no username.
        assert_eq!(err(&connect_frame(0x82, &s(b"id"))), E::PayloadTooShort);
        assert_eq!(err(&[0x10, 0]), E::PayloadTooShort);
    }

    #[test]
    fn trailing_bytes() {
        assert_eq!(
            err(&connect_frame(0x02, &cat(&[&s(b"id"), &[0xAA, 0xBB]]))),
            E::TrailingBytes(2)
        );
        // Password present on the wire but its flag is clear.
        let payload = cat(&[&s(b"id"), &s(b"user"), &s(b"pw")]);
        assert_eq!(err(&connect_frame(0x82, &payload)), E::TrailingBytes(4));
    }

    fn full_connect() -> Vec<u8> {
        // clean session, will QoS 1 retained, username, password
        connect_frame(
            0xEE,
            &cat(&[
                &s(b"client-1"),
                &s(b"last/will"),
                &s(b"gone"),
                &s(b"user"),
                &s(&[0, 1, 2, 0xFF]),
            ]),
        )
    }

    #[test]
    fn decodes_full_connect() {
        let Packet::Connect(c) = ok(&full_connect()) else {
            panic!("not a CONNECT")
        };
        assert_eq!(
            c,
            Connect {
                protocol: Protocol::V311,
                keep_alive: 60,
                client_id: "client-1".into(),
                clean_session: true,
                will: Some(LastWill {
                    topic: "last/will".into(),
                    message: Bytes::from_static(b"gone"),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: WillProperties::default(),
                }),
                username: Some("user".into()),
                password: Some(Bytes::from_static(&[0, 1, 2, 0xFF])),
                properties: ConnectProperties::default(),
            }
        );
    }

    #[test]
    fn decodes_mqtt31_connect_with_empty_client_id() {
        let bytes = frame(0x10, &cat(&[&s(b"MQIsdp"), &[3, 0, 0, 0], &s(b"")]));
        let Packet::Connect(c) = ok(&bytes) else {
            panic!("not a CONNECT")
        };
        assert_eq!(c.protocol, Protocol::V31);
        assert_eq!(c.client_id, "");
        assert!(!c.clean_session);
        assert_eq!((c.will, c.username, c.password), (None, None, None));
    }

    #[test]
    fn decodes_simple_packets() {
        assert_eq!(ok(&[0xC0, 0]), Packet::PingReq);
        assert_eq!(ok(&[0xD0, 0]), Packet::PingResp);
        assert_eq!(ok(&[0xE0, 0]), Packet::disconnect());
        assert_eq!(ok(&[0x40, 2, 0x12, 0x34]), Packet::PubAck(Ack::new(0x1234)));
        assert_eq!(ok(&[0x50, 2, 0, 1]), Packet::PubRec(Ack::new(1)));
        assert_eq!(ok(&[0x62, 2, 0, 2]), Packet::PubRel(Ack::new(2)));
        assert_eq!(ok(&[0x70, 2, 0, 3]), Packet::PubComp(Ack::new(3)));
        assert_eq!(
            ok(&[0xB0, 2, 0xFF, 0xFF]),
            Packet::UnsubAck(UnsubAck {
                pkid: 0xFFFF,
                reason_codes: vec![],
                properties: AckProperties::default(),
            })
        );
        assert_eq!(
            ok(&[0x20, 2, 1, 0]),
            Packet::ConnAck(ConnAck::new(true, ReasonCode::SUCCESS))
        );
        // Every 3.1.1 return code maps to the MQTT 5 reason code of the same meaning.
        for (code, reason) in [
            (0, ReasonCode::SUCCESS),
            (1, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
            (2, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
            (3, ReasonCode::SERVER_UNAVAILABLE),
            (4, ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            (5, ReasonCode::NOT_AUTHORIZED),
        ] {
            assert_eq!(
                ok(&[0x20, 2, 0, code]),
                Packet::ConnAck(ConnAck::new(false, reason))
            );
        }
        assert_eq!(
            ok(&[0x90, 6, 0, 7, 0, 1, 2, 0x80]),
            Packet::SubAck(SubAck {
                pkid: 7,
                return_codes: vec![
                    ReasonCode::GRANTED_QOS_0,
                    ReasonCode::GRANTED_QOS_1,
                    ReasonCode::GRANTED_QOS_2,
                    ReasonCode::UNSPECIFIED_ERROR,
                ],
                properties: AckProperties::default(),
            })
        );
        assert_eq!(
            ok(&frame(
                0x82,
                &cat(&[&[0, 9], &s(b"a/+"), &[1], &s(b"#"), &[2]])
            )),
            Packet::Subscribe(Subscribe {
                pkid: 9,
                filters: vec![
                    SubscribeFilter::new("a/+", QoS::AtLeastOnce),
                    SubscribeFilter::new("#", QoS::ExactlyOnce),
                ],
                properties: SubscribeProperties::default(),
            })
        );
        assert_eq!(
            ok(&frame(0xA2, &cat(&[&[0, 9], &s(b"a/+"), &s(b"b")]))),
            Packet::Unsubscribe(Unsubscribe {
                pkid: 9,
                filters: vec!["a/+".into(), "b".into()],
                user_properties: UserProperties::new(),
            })
        );
    }

    #[test]
    fn decodes_publish_with_zero_copy_payload() {
        let bytes = frame(0x3B, &cat(&[&s(b"a/b"), &[0, 5], b"payload"]));
        let mut buf = BytesMut::from(&bytes[..]);
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        let Some(Packet::Publish(p)) = decode(&mut buf, MAX, Protocol::V311).unwrap() else {
            panic!("not a PUBLISH")
        };
        assert_eq!(
            p,
            Publish {
                dup: true,
                qos: QoS::AtLeastOnce,
                retain: true,
                topic: "a/b".into(),
                pkid: 5,
                payload: Bytes::from_static(b"payload"),
                properties: PublishProperties::default(),
            }
        );
        assert!(range.contains(&(p.payload.as_ptr() as usize)));
    }

    #[test]
    fn publish_with_empty_payload() {
        assert_eq!(
            ok(&frame(0x30, &s(b"t"))),
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: "t".into(),
                pkid: 0,
                payload: Bytes::new(),
                properties: PublishProperties::default(),
            })
        );
    }

    #[test]
    fn incomplete_buffers_are_left_untouched() {
        let mut big_publish = vec![0x34, 0x87, 0x01]; // remaining length 135
        big_publish.extend(s(b"a/b"));
        big_publish.extend([0, 1]);
        big_publish.extend([0xAB; 128]);
        let packets = [
            full_connect(),
            frame(0x32, &cat(&[&s(b"a/b"), &[0, 5], b"xyz"])),
            big_publish,
            frame(0x82, &cat(&[&[0, 9], &s(b"a/+"), &[1]])),
            vec![0x40, 2, 0, 1],
            vec![0xC0, 0],
        ];
        for bytes in packets {
            for split in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..split]);
                assert_eq!(
                    decode(&mut buf, MAX, Protocol::V311),
                    Ok(None),
                    "split at {split}"
                );
                assert_eq!(&buf[..], &bytes[..split]);
            }
            ok(&bytes);
        }
    }

    #[test]
    fn two_packets_in_one_buffer_decode_in_order() {
        let mut buf =
            BytesMut::from(&cat(&[&frame(0x30, &cat(&[&s(b"t"), b"x"])), &[0xC0, 0]])[..]);
        buf.extend_from_slice(&[0x40, 2]); // start of a third one
        assert!(matches!(
            decode(&mut buf, MAX, Protocol::V311),
            Ok(Some(Packet::Publish(_)))
        ));
        assert_eq!(
            decode(&mut buf, MAX, Protocol::V311),
            Ok(Some(Packet::PingReq))
        );
        assert_eq!(decode(&mut buf, MAX, Protocol::V311), Ok(None));
        assert_eq!(&buf[..], &[0x40, 2]);
    }

    #[test]
    fn empty_buffer_is_incomplete() {
        assert_eq!(decode(&mut BytesMut::new(), MAX, Protocol::V311), Ok(None));
    }
}
