//! MQTT 3.1.1 and MQTT 5 encoder: computes the exact size first, reserves once, then
//! writes.
//!
//! Only what would make the bytes unframeable or ambiguous is checked (field lengths,
//! packet identifiers, flag combinations); topic syntax is the caller's responsibility,
//! which keeps the per-subscriber PUBLISH encode free of any scan over the topic.
//!
//! Toward 3.1.1 (and 3.1) the MQTT 5 parts of a packet are left out: properties, and
//! reason codes beyond what 3.1.1 has (CONNACK's return code, SUBACK's 0x80).

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;
use crate::packet::*;
use crate::properties::{longest_field, properties_wire_len, write_properties, Visit};
use crate::wire::*;

/// Appends the wire form of `packet` to `buf`, as a connection speaking `protocol` sends
/// it (a CONNECT is written in its own `protocol`). On error nothing is written.
///
/// The packet identifier of a QoS 0 PUBLISH is not on the wire and is ignored.
pub fn encode(packet: &Packet, buf: &mut BytesMut, protocol: Protocol) -> Result<(), EncodeError> {
    let v5 = match packet {
        Packet::Connect(c) => c.protocol.is_v5(),
        _ => protocol.is_v5(),
    };
    validate(packet, v5)?;
    let remaining = packet.remaining_len(v5);
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    buf.reserve(1 + remaining_length_len(remaining) + remaining);
    buf.put_u8(first_byte(packet, v5)?);
    put_var_int(buf, remaining);
    match packet {
        Packet::Connect(c) => put_connect(buf, c),
        Packet::ConnAck(a) => {
            buf.put_u8(u8::from(a.session_present));
            if v5 {
                buf.put_u8(a.code.0);
                write_properties(buf, &a.properties);
            } else {
                buf.put_u8(connect_return_code(a.code));
            }
        }
        Packet::Publish(p) => put_publish_body(buf, &p.borrowed(), v5),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            buf.put_u16(a.pkid);
            if v5 && !(a.reason == ReasonCode::SUCCESS && a.properties.is_empty()) {
                buf.put_u8(a.reason.0);
                if !a.properties.is_empty() {
                    write_properties(buf, &a.properties);
                }
            }
        }
        Packet::Subscribe(s) => {
            buf.put_u16(s.pkid);
            if v5 {
                write_properties(buf, &s.properties);
            }
            for f in &s.filters {
                put_string(buf, &f.filter);
                buf.put_u8(subscribe_options(f, v5));
            }
        }
        Packet::SubAck(s) => {
            buf.put_u16(s.pkid);
            if v5 {
                write_properties(buf, &s.properties);
            }
            for code in &s.return_codes {
                buf.put_u8(if !v5 && code.is_failure() {
                    SUBACK_FAILURE
                } else {
                    code.0
                });
            }
        }
        Packet::Unsubscribe(u) => {
            buf.put_u16(u.pkid);
            if v5 {
                write_properties(buf, &u.user_properties);
            }
            for f in &u.filters {
                put_string(buf, f);
            }
        }
        Packet::UnsubAck(u) => {
            buf.put_u16(u.pkid);
            if v5 {
                write_properties(buf, &u.properties);
                for code in &u.reason_codes {
                    buf.put_u8(code.0);
                }
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            if v5 && !(d.reason == ReasonCode::SUCCESS && is_empty(&d.properties)) {
                buf.put_u8(d.reason.0);
                if !is_empty(&d.properties) {
                    write_properties(buf, &d.properties);
                }
            }
        }
        Packet::Auth(a) => {
            if !(a.reason == ReasonCode::SUCCESS && is_empty(&a.properties)) {
                buf.put_u8(a.reason.0);
                if !is_empty(&a.properties) {
                    write_properties(buf, &a.properties);
                }
            }
        }
    }
    Ok(())
}

/// Appends a PUBLISH built from borrowed parts: the broker encodes one per subscriber
/// from a topic, payload and properties shared by all of them, without building an owned
/// [`Publish`].
pub fn encode_publish(
    publish: &PublishRef,
    buf: &mut BytesMut,
    protocol: Protocol,
) -> Result<(), EncodeError> {
    let v5 = protocol.is_v5();
    validate_publish(publish, v5)?;
    let remaining = publish_remaining_len(publish, v5);
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    buf.reserve(1 + remaining_length_len(remaining) + remaining);
    buf.put_u8(publish_first_byte(publish));
    put_var_int(buf, remaining);
    put_publish_body(buf, publish, v5);
    Ok(())
}

/// Bytes [`encode_publish`] writes for this PUBLISH (fixed header included): what the
/// broker compares with a client's Maximum Packet Size before sending.
pub fn publish_encoded_len(publish: &PublishRef, protocol: Protocol) -> usize {
    let remaining = publish_remaining_len(publish, protocol.is_v5());
    1 + remaining_length_len(remaining) + remaining
}

fn is_empty(p: &dyn Visit) -> bool {
    crate::properties::properties_len(p) == 0
}

/// The 3.1.1 CONNACK return code nearest to an MQTT 5 reason code.
fn connect_return_code(code: ReasonCode) -> u8 {
    match code {
        ReasonCode::SUCCESS => 0,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => 1,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => 2,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD | ReasonCode::BAD_AUTHENTICATION_METHOD => 4,
        ReasonCode::NOT_AUTHORIZED | ReasonCode::BANNED => 5,
        _ => 3,
    }
}

fn subscribe_options(f: &SubscribeFilter, v5: bool) -> u8 {
    let mut options = f.qos as u8;
    if v5 {
        if f.no_local {
            options |= 0b0100;
        }
        if f.retain_as_published {
            options |= 0b1000;
        }
        options |= (f.retain_handling as u8) << 4;
    }
    options
}

fn publish_properties<'a>(p: &PublishRef<'a>, v5: bool) -> Option<&'a PublishProperties> {
    if v5 {
        p.properties
    } else {
        None
    }
}

fn validate_publish(p: &PublishRef, v5: bool) -> Result<(), EncodeError> {
    check_len("topic", p.topic.len())?;
    if let Some(properties) = publish_properties(p, v5) {
        check_len("property", longest_field(properties))?;
        for id in &properties.subscription_identifiers {
            check_subscription_identifier(*id)?;
        }
    }
    match p.qos {
        QoS::AtMostOnce if p.dup => Err(EncodeError::DupWithQoS0),
        QoS::AtMostOnce => Ok(()),
        QoS::AtLeastOnce | QoS::ExactlyOnce => check_pkid(p.pkid),
    }
}

fn publish_remaining_len(p: &PublishRef, v5: bool) -> usize {
    let pkid_len = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
    let properties_len = if v5 {
        match p.properties {
            Some(properties) => properties_wire_len(properties),
            None => 1,
        }
    } else {
        0
    };
    2 + p.topic.len() + pkid_len + properties_len + p.payload.len()
}

fn publish_first_byte(p: &PublishRef) -> u8 {
    let mut flags = (p.qos as u8) << PUBLISH_QOS_SHIFT;
    if p.dup {
        flags |= PUBLISH_DUP;
    }
    if p.retain {
        flags |= PUBLISH_RETAIN;
    }
    PUBLISH << 4 | flags
}

fn put_publish_body(buf: &mut BytesMut, p: &PublishRef, v5: bool) {
    put_string(buf, p.topic);
    if p.qos != QoS::AtMostOnce {
        buf.put_u16(p.pkid);
    }
    if v5 {
        match p.properties {
            Some(properties) => write_properties(buf, properties),
            None => buf.put_u8(0),
        }
    }
    buf.put_slice(p.payload);
}

/// Bytes of an acknowledgement's reason code and properties in MQTT 5 (left off when
/// they say Success with no properties).
fn ack_tail_len(reason: ReasonCode, properties: &dyn Visit) -> usize {
    if is_empty(properties) {
        usize::from(reason != ReasonCode::SUCCESS)
    } else {
        1 + properties_wire_len(properties)
    }
}

impl Packet {
    /// Bytes [`encode`] writes for this packet toward `protocol` (fixed header included).
    pub fn encoded_len(&self, protocol: Protocol) -> usize {
        let v5 = match self {
            Packet::Connect(c) => c.protocol.is_v5(),
            _ => protocol.is_v5(),
        };
        let remaining = self.remaining_len(v5);
        1 + remaining_length_len(remaining) + remaining
    }

    fn remaining_len(&self, v5: bool) -> usize {
        match self {
            Packet::Connect(c) => {
                let name_len = match c.protocol {
                    Protocol::V5 | Protocol::V311 => 4,
                    Protocol::V31 => 6,
                };
                // name, level, flags, keep alive, client id
                let mut len = 2 + name_len + 1 + 1 + 2 + 2 + c.client_id.len();
                if v5 {
                    len += properties_wire_len(&c.properties);
                }
                if let Some(w) = &c.will {
                    len += 2 + w.topic.len() + 2 + w.message.len();
                    if v5 {
                        len += properties_wire_len(&w.properties);
                    }
                }
                if let Some(u) = &c.username {
                    len += 2 + u.len();
                }
                if let Some(p) = &c.password {
                    len += 2 + p.len();
                }
                len
            }
            Packet::ConnAck(a) => {
                2 + if v5 {
                    properties_wire_len(&a.properties)
                } else {
                    0
                }
            }
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                2 + if v5 {
                    ack_tail_len(a.reason, &a.properties)
                } else {
                    0
                }
            }
            Packet::Publish(p) => publish_remaining_len(&p.borrowed(), v5),
            Packet::Subscribe(s) => {
                let properties = if v5 {
                    properties_wire_len(&s.properties)
                } else {
                    0
                };
                2 + properties
                    + s.filters
                        .iter()
                        .map(|f| 2 + f.filter.len() + 1)
                        .sum::<usize>()
            }
            Packet::SubAck(s) => {
                let properties = if v5 {
                    properties_wire_len(&s.properties)
                } else {
                    0
                };
                2 + properties + s.return_codes.len()
            }
            Packet::Unsubscribe(u) => {
                let properties = if v5 {
                    properties_wire_len(&u.user_properties)
                } else {
                    0
                };
                2 + properties + u.filters.iter().map(|f| 2 + f.len()).sum::<usize>()
            }
            Packet::UnsubAck(u) => {
                if v5 {
                    2 + properties_wire_len(&u.properties) + u.reason_codes.len()
                } else {
                    2
                }
            }
            Packet::PingReq | Packet::PingResp => 0,
            Packet::Disconnect(d) => {
                if v5 {
                    ack_tail_len(d.reason, &d.properties)
                } else {
                    0
                }
            }
            Packet::Auth(a) => ack_tail_len(a.reason, &a.properties),
        }
    }
}

fn validate(packet: &Packet, v5: bool) -> Result<(), EncodeError> {
    let check_properties = |p: &dyn Visit| {
        if v5 {
            check_len("property", longest_field(p))
        } else {
            Ok(())
        }
    };
    match packet {
        Packet::Connect(c) => {
            check_len("client id", c.client_id.len())?;
            check_properties(&c.properties)?;
            if let Some(w) = &c.will {
                check_len("will topic", w.topic.len())?;
                check_len("will message", w.message.len())?;
                check_properties(&w.properties)?;
            }
            if let Some(u) = &c.username {
                check_len("username", u.len())?;
            }
            if let Some(p) = &c.password {
                check_len("password", p.len())?;
                if c.username.is_none() && !v5 {
                    return Err(EncodeError::PasswordWithoutUsername);
                }
            }
        }
        Packet::ConnAck(a) => check_properties(&a.properties)?,
        Packet::Publish(p) => validate_publish(&p.borrowed(), v5)?,
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            check_pkid(a.pkid)?;
            check_properties(&a.properties)?;
        }
        Packet::Subscribe(s) => {
            check_pkid(s.pkid)?;
            check_properties(&s.properties)?;
            if let (true, Some(id)) = (v5, s.properties.subscription_identifier) {
                check_subscription_identifier(id)?;
            }
            if s.filters.is_empty() {
                return Err(EncodeError::EmptySubscribe);
            }
            for f in &s.filters {
                check_len("topic filter", f.filter.len())?;
            }
        }
        Packet::SubAck(s) => {
            check_pkid(s.pkid)?;
            check_properties(&s.properties)?;
            if s.return_codes.is_empty() {
                return Err(EncodeError::EmptySubAck);
            }
        }
        Packet::Unsubscribe(u) => {
            check_pkid(u.pkid)?;
            check_properties(&u.user_properties)?;
            if u.filters.is_empty() {
                return Err(EncodeError::EmptyUnsubscribe);
            }
            for f in &u.filters {
                check_len("topic filter", f.len())?;
            }
        }
        Packet::UnsubAck(u) => {
            check_pkid(u.pkid)?;
            check_properties(&u.properties)?;
            if v5 && u.reason_codes.is_empty() {
                return Err(EncodeError::EmptyUnsubAck);
            }
        }
        Packet::Disconnect(d) => check_properties(&d.properties)?,
        Packet::Auth(a) => {
            if !v5 {
                return Err(EncodeError::AuthInMqtt311);
            }
            check_properties(&a.properties)?;
        }
        Packet::PingReq | Packet::PingResp => {}
    }
    Ok(())
}

fn check_len(field: &'static str, len: usize) -> Result<(), EncodeError> {
    if len > MAX_FIELD_LEN {
        Err(EncodeError::FieldTooLong { field, len })
    } else {
        Ok(())
    }
}

/// A variable byte integer holds at most 268,435,455 (four bytes); a larger identifier
/// would need a fifth byte no receiver accepts, and would not match the computed length.
fn check_subscription_identifier(id: u32) -> Result<(), EncodeError> {
    if id as usize > MAX_REMAINING_LENGTH {
        Err(EncodeError::SubscriptionIdentifierTooLarge(id))
    } else {
        Ok(())
    }
}

fn check_pkid(pkid: u16) -> Result<(), EncodeError> {
    if pkid == 0 {
        Err(EncodeError::ZeroPacketId)
    } else {
        Ok(())
    }
}

fn first_byte(packet: &Packet, v5: bool) -> Result<u8, EncodeError> {
    let (packet_type, flags) = match packet {
        Packet::Connect(_) => (CONNECT, 0),
        Packet::ConnAck(_) => (CONNACK, 0),
        Packet::Publish(p) => return Ok(publish_first_byte(&p.borrowed())),
        Packet::PubAck(_) => (PUBACK, 0),
        Packet::PubRec(_) => (PUBREC, 0),
        Packet::PubRel(_) => (PUBREL, 0b0010),
        Packet::PubComp(_) => (PUBCOMP, 0),
        Packet::Subscribe(_) => (SUBSCRIBE, 0b0010),
        Packet::SubAck(_) => (SUBACK, 0),
        Packet::Unsubscribe(_) => (UNSUBSCRIBE, 0b0010),
        Packet::UnsubAck(_) => (UNSUBACK, 0),
        Packet::PingReq => (PINGREQ, 0),
        Packet::PingResp => (PINGRESP, 0),
        Packet::Disconnect(_) => (DISCONNECT, 0),
        Packet::Auth(_) if v5 => (AUTH, 0),
        Packet::Auth(_) => return Err(EncodeError::AuthInMqtt311),
    };
    Ok(packet_type << 4 | flags)
}

/// The remaining-length field, also MQTT 5's variable byte integer.
pub(crate) fn put_var_int(buf: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if len == 0 {
            return;
        }
    }
}

/// Caller has checked the length fits in the u16 prefix.
pub(crate) fn put_binary(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_u16(bytes.len() as u16);
    buf.put_slice(bytes);
}

fn put_string(buf: &mut BytesMut, s: &str) {
    put_binary(buf, s.as_bytes());
}

fn put_connect(buf: &mut BytesMut, c: &Connect) {
    let name: &[u8] = match c.protocol {
        Protocol::V5 | Protocol::V311 => b"MQTT",
        Protocol::V31 => b"MQIsdp",
    };
    let v5 = c.protocol.is_v5();
    put_binary(buf, name);
    buf.put_u8(c.protocol.level());

    let mut flags = 0;
    if c.clean_session {
        flags |= CONNECT_CLEAN_SESSION;
    }
    if let Some(w) = &c.will {
        flags |= CONNECT_WILL | (w.qos as u8) << CONNECT_WILL_QOS_SHIFT;
        if w.retain {
            flags |= CONNECT_WILL_RETAIN;
        }
    }
    if c.username.is_some() {
        flags |= CONNECT_USERNAME;
    }
    if c.password.is_some() {
        flags |= CONNECT_PASSWORD;
    }
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    if v5 {
        write_properties(buf, &c.properties);
    }

    put_string(buf, &c.client_id);
    if let Some(w) = &c.will {
        if v5 {
            write_properties(buf, &w.properties);
        }
        put_string(buf, &w.topic);
        put_binary(buf, &w.message);
    }
    if let Some(u) = &c.username {
        put_string(buf, u);
    }
    if let Some(p) = &c.password {
        put_binary(buf, p);
    }
}

#[cfg(test)]
mod v5_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn encoded(packet: &Packet) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode(packet, &mut buf, Protocol::V311).unwrap();
        assert_eq!(buf.len(), packet.encoded_len(Protocol::V311));
        buf.to_vec()
    }

    fn publish(qos: QoS, pkid: u16, payload_len: usize) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: "t".into(),
            pkid,
            payload: Bytes::from(vec![0xAB; payload_len]),
            properties: PublishProperties::default(),
        }
    }

    #[test]
    fn borrowed_publish_encodes_like_owned() {
        for (qos, pkid) in [(QoS::AtMostOnce, 0), (QoS::AtLeastOnce, 7)] {
            let mut owned = publish(qos, pkid, 300);
            owned.retain = true;
            owned.dup = qos != QoS::AtMostOnce;
            let mut borrowed = BytesMut::new();
            encode_publish(&owned.borrowed(), &mut borrowed, Protocol::V311).unwrap();
            assert_eq!(&borrowed[..], &encoded(&Packet::Publish(owned))[..]);
        }
    }

    #[test]
    fn known_encodings() {
        assert_eq!(encoded(&Packet::PingReq), [0xC0, 0]);
        assert_eq!(encoded(&Packet::PingResp), [0xD0, 0]);
        assert_eq!(encoded(&Packet::disconnect()), [0xE0, 0]);
        assert_eq!(encoded(&Packet::PubRel(Ack::new(0x0102))), [0x62, 2, 1, 2]);
        assert_eq!(
            encoded(&Packet::ConnAck(ConnAck::new(
                true,
                ReasonCode::NOT_AUTHORIZED
            ))),
            [0x20, 2, 1, 5]
        );
        let mut p = publish(QoS::AtLeastOnce, 7, 2);
        p.dup = true;
        p.retain = true;
        assert_eq!(
            encoded(&Packet::Publish(p)),
            [0x3B, 7, 0, 1, b't', 0, 7, 0xAB, 0xAB]
        );
        assert_eq!(
            encoded(&Packet::Subscribe(Subscribe {
                pkid: 1,
                filters: vec![SubscribeFilter::new("a/#", QoS::ExactlyOnce)],
                properties: SubscribeProperties::default(),
            })),
            [0x82, 8, 0, 1, 0, 3, b'a', b'/', b'#', 2]
        );
        assert_eq!(
            encoded(&Packet::Connect(Connect {
                protocol: Protocol::V31,
                keep_alive: 10,
                client_id: "c".into(),
                clean_session: true,
                will: Some(LastWill {
                    topic: "w".into(),
                    message: Bytes::from_static(b"m"),
                    qos: QoS::ExactlyOnce,
                    retain: true,
                    properties: WillProperties::default(),
                }),
                username: Some("u".into()),
                password: Some(Bytes::from_static(b"p")),
                properties: ConnectProperties::default(),
            })),
            [
                0x10, 27, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0xF6, 0, 10, 0, 1, b'c', 0,
                1, b'w', 0, 1, b'm', 0, 1, b'u', 0, 1, b'p'
            ]
        );
    }

    #[test]
    fn remaining_length_boundaries() {
        // Topic "t" plus its prefix take 3 bytes of the remaining length.
        for (remaining, header) in [
            (127, &[0x30, 0x7F][..]),
            (128, &[0x30, 0x80, 0x01]),
            (16_383, &[0x30, 0xFF, 0x7F]),
            (16_384, &[0x30, 0x80, 0x80, 0x01]),
            (2_097_151, &[0x30, 0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x30, 0x80, 0x80, 0x80, 0x01]),
        ] {
            let bytes = encoded(&Packet::Publish(publish(QoS::AtMostOnce, 0, remaining - 3)));
            assert_eq!(&bytes[..header.len()], header, "remaining {remaining}");
            assert_eq!(bytes.len(), header.len() + remaining);
        }
    }

    #[test]
    fn qos0_publish_ignores_pkid() {
        assert_eq!(
            encoded(&Packet::Publish(publish(QoS::AtMostOnce, 9, 0))),
            [0x30, 3, 0, 1, b't']
        );
    }

    #[test]
    fn rejections_write_nothing() {
        let too_long = "x".repeat(65_536);
        let mut dup0 = publish(QoS::AtMostOnce, 0, 0);
        dup0.dup = true;
        let mut long_topic = publish(QoS::AtMostOnce, 0, 0);
        long_topic.topic = too_long.clone();
        let connect = Connect {
            protocol: Protocol::V311,
            keep_alive: 0,
            client_id: String::new(),
            clean_session: true,
            will: None,
            username: None,
            password: Some(Bytes::from_static(b"pw")),
            properties: ConnectProperties::default(),
        };
        let cases = [
            (
                Packet::Publish(publish(QoS::AtLeastOnce, 0, 0)),
                EncodeError::ZeroPacketId,
            ),
            (Packet::Publish(dup0), EncodeError::DupWithQoS0),
            (
                Packet::Publish(long_topic),
                EncodeError::FieldTooLong {
                    field: "topic",
                    len: 65_536,
                },
            ),
            (Packet::PubAck(Ack::new(0)), EncodeError::ZeroPacketId),
            (
                Packet::UnsubAck(UnsubAck {
                    pkid: 0,
                    reason_codes: vec![],
                    properties: AckProperties::default(),
                }),
                EncodeError::ZeroPacketId,
            ),
            (
                Packet::Subscribe(Subscribe {
                    pkid: 1,
                    filters: vec![],
                    properties: SubscribeProperties::default(),
                }),
                EncodeError::EmptySubscribe,
            ),
            (
                Packet::Unsubscribe(Unsubscribe {
                    pkid: 1,
                    filters: vec![],
                    user_properties: UserProperties::new(),
                }),
                EncodeError::EmptyUnsubscribe,
            ),
            (
                Packet::Unsubscribe(Unsubscribe {
                    pkid: 1,
                    filters: vec![too_long],
                    user_properties: UserProperties::new(),
                }),
                EncodeError::FieldTooLong {
                    field: "topic filter",
                    len: 65_536,
                },
            ),
            (
                Packet::SubAck(SubAck {
                    pkid: 1,
                    return_codes: vec![],
                    properties: AckProperties::default(),
                }),
                EncodeError::EmptySubAck,
            ),
            (
                Packet::Connect(connect),
                EncodeError::PasswordWithoutUsername,
            ),
        ];
        for (packet, expected) in cases {
            let mut buf = BytesMut::new();
            assert_eq!(encode(&packet, &mut buf, Protocol::V311), Err(expected));
            assert!(buf.is_empty());
        }
    }
}
