//! MQTT 5 encoding: the short forms of acknowledgements, what is dropped toward 3.1.1, and
//! what the encoder refuses.

use super::*;
use bytes::Bytes;

fn encoded(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, &mut buf, protocol).unwrap();
    assert_eq!(buf.len(), packet.encoded_len(protocol));
    buf.to_vec()
}

fn v5(packet: &Packet) -> Vec<u8> {
    encoded(packet, Protocol::V5)
}

fn v311(packet: &Packet) -> Vec<u8> {
    encoded(packet, Protocol::V311)
}

fn reason_string(text: &str) -> AckProperties {
    AckProperties {
        reason_string: Some(text.into()),
        user_properties: vec![],
    }
}

fn publish() -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "t".into(),
        pkid: 1,
        payload: Bytes::from_static(b"p"),
        properties: PublishProperties::default(),
    }
}

#[test]
fn ack_short_forms() {
    let mut ack = Ack::new(0x0102);
    assert_eq!(v5(&Packet::PubAck(ack.clone())), [0x40, 2, 1, 2]);
    ack.reason = ReasonCode::NO_MATCHING_SUBSCRIBERS;
    assert_eq!(v5(&Packet::PubAck(ack.clone())), [0x40, 3, 1, 2, 0x10]);
    // Toward 3.1.1 the reason is dropped.
    assert_eq!(v311(&Packet::PubAck(ack.clone())), [0x40, 2, 1, 2]);
    ack.properties = reason_string("r");
    assert_eq!(
        v5(&Packet::PubRec(ack.clone())),
        [0x50, 8, 1, 2, 0x10, 4, 0x1F, 0, 1, b'r']
    );
    assert_eq!(v311(&Packet::PubRec(ack.clone())), [0x50, 2, 1, 2]);
    // Success with properties keeps its reason byte.
    ack.reason = ReasonCode::SUCCESS;
    assert_eq!(
        v5(&Packet::PubComp(ack.clone())),
        [0x70, 8, 1, 2, 0, 4, 0x1F, 0, 1, b'r']
    );
    assert_eq!(
        v5(&Packet::PubRel(ack)),
        [0x62, 8, 1, 2, 0, 4, 0x1F, 0, 1, b'r']
    );
}

#[test]
fn disconnect_and_auth_short_forms() {
    assert_eq!(v5(&Packet::disconnect()), [0xE0, 0]);
    let taken = Packet::Disconnect(Disconnect::new(ReasonCode::SESSION_TAKEN_OVER));
    assert_eq!(v5(&taken), [0xE0, 1, 0x8E]);
    assert_eq!(v311(&taken), [0xE0, 0]);
    let with_text = Packet::Disconnect(Disconnect::with_reason_string(
        ReasonCode::NOT_AUTHORIZED,
        "no",
    ));
    assert_eq!(v5(&with_text), [0xE0, 7, 0x87, 5, 0x1F, 0, 2, b'n', b'o']);
    assert_eq!(v311(&with_text), [0xE0, 0]);

    let auth = |reason, properties| Packet::Auth(Auth { reason, properties });
    assert_eq!(
        v5(&auth(ReasonCode::SUCCESS, AuthProperties::default())),
        [0xF0, 0]
    );
    assert_eq!(
        v5(&auth(
            ReasonCode::CONTINUE_AUTHENTICATION,
            AuthProperties::default()
        )),
        [0xF0, 1, 0x18]
    );
    let method = AuthProperties {
        authentication_method: Some("m".into()),
        ..AuthProperties::default()
    };
    assert_eq!(
        v5(&auth(ReasonCode::SUCCESS, method)),
        [0xF0, 6, 0, 4, 0x15, 0, 1, b'm']
    );
}

#[test]
fn connack_reason_codes_toward_311() {
    for (code, return_code) in [
        (ReasonCode::SUCCESS, 0),
        (ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, 1),
        (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, 2),
        (ReasonCode::SERVER_UNAVAILABLE, 3),
        (ReasonCode::BAD_USER_NAME_OR_PASSWORD, 4),
        (ReasonCode::NOT_AUTHORIZED, 5),
        (ReasonCode::BAD_AUTHENTICATION_METHOD, 4),
        (ReasonCode::BANNED, 5),
        (ReasonCode::SERVER_BUSY, 3),
        (ReasonCode::UNSPECIFIED_ERROR, 3),
        (ReasonCode::QUOTA_EXCEEDED, 3),
    ] {
        let mut connack = ConnAck::new(false, code);
        connack.properties.reason_string = Some("dropped".into());
        assert_eq!(
            v311(&Packet::ConnAck(connack.clone())),
            [0x20, 2, 0, return_code]
        );
        // v5 keeps the code itself, and always has a property length.
        connack.properties = ConnAckProperties::default();
        assert_eq!(v5(&Packet::ConnAck(connack)), [0x20, 3, 0, code.0, 0]);
    }
}

#[test]
fn suback_and_unsuback_toward_each_version() {
    let suback = Packet::SubAck(SubAck {
        pkid: 1,
        return_codes: vec![
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::QUOTA_EXCEEDED,
        ],
        properties: reason_string("r"),
    });
    // 3.1.1 has one failure code and no properties.
    assert_eq!(v311(&suback), [0x90, 5, 0, 1, 1, 0x80, 0x80]);
    assert_eq!(
        v5(&suback),
        [0x90, 10, 0, 1, 4, 0x1F, 0, 1, b'r', 1, 0x87, 0x97]
    );
    let unsuback = Packet::UnsubAck(UnsubAck {
        pkid: 1,
        reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
        properties: AckProperties::default(),
    });
    assert_eq!(v311(&unsuback), [0xB0, 2, 0, 1]);
    assert_eq!(v5(&unsuback), [0xB0, 5, 0, 1, 0, 0, 0x11]);
}

#[test]
fn subscribe_options_and_properties() {
    let subscribe = Packet::Subscribe(Subscribe {
        pkid: 2,
        filters: vec![SubscribeFilter {
            filter: "a".into(),
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::Never,
        }],
        properties: SubscribeProperties {
            subscription_identifier: Some(128),
            user_properties: vec![],
        },
    });
    assert_eq!(
        v5(&subscribe),
        [0x82, 10, 0, 2, 3, 0x0B, 0x80, 0x01, 0, 1, b'a', 0b0010_1101]
    );
    // 3.1.1 keeps only the QoS bits.
    assert_eq!(v311(&subscribe), [0x82, 6, 0, 2, 0, 1, b'a', 1]);
}

#[test]
fn publish_properties_only_in_v5() {
    let mut p = publish();
    p.properties.topic_alias = Some(2);
    p.properties.subscription_identifiers = vec![1, 16_384];
    assert_eq!(
        v5(&Packet::Publish(p.clone())),
        [0x32, 16, 0, 1, b't', 0, 1, 9, 0x23, 0, 2, 0x0B, 1, 0x0B, 0x80, 0x80, 0x01, b'p']
    );
    assert_eq!(
        v311(&Packet::Publish(p.clone())),
        [0x32, 6, 0, 1, b't', 0, 1, b'p']
    );
    // encode_publish writes what encode writes, and publish_encoded_len says how much.
    for protocol in [Protocol::V5, Protocol::V311] {
        let mut borrowed = BytesMut::new();
        encode_publish(&p.borrowed(), &mut borrowed, protocol).unwrap();
        assert_eq!(
            &borrowed[..],
            &encoded(&Packet::Publish(p.clone()), protocol)[..]
        );
        assert_eq!(borrowed.len(), publish_encoded_len(&p.borrowed(), protocol));
    }
    // No properties: one zero byte, the same whether `properties` is None or empty.
    let plain = publish();
    let mut none = BytesMut::new();
    let mut without = plain.borrowed();
    without.properties = None;
    encode_publish(&without, &mut none, Protocol::V5).unwrap();
    assert_eq!(&none[..], [0x32, 7, 0, 1, b't', 0, 1, 0, b'p']);
    assert_eq!(&none[..], &v5(&Packet::Publish(plain.clone()))[..]);
    assert_eq!(none.len(), publish_encoded_len(&without, Protocol::V5));
}

#[test]
fn connect_v5_password_without_username() {
    let connect = Connect {
        protocol: Protocol::V5,
        keep_alive: 0,
        client_id: String::new(),
        clean_session: true,
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"pw")),
        properties: ConnectProperties::default(),
    };
    assert_eq!(
        v5(&Packet::Connect(connect.clone())),
        [0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x42, 0, 0, 0, 0, 0, 0, 2, b'p', b'w']
    );
    // A CONNECT is written in its own protocol, whatever the connection's.
    assert_eq!(
        encoded(&Packet::Connect(connect.clone()), Protocol::V311),
        v5(&Packet::Connect(connect.clone()))
    );
    let mut v311_connect = connect;
    v311_connect.protocol = Protocol::V311;
    assert_eq!(
        encode(
            &Packet::Connect(v311_connect),
            &mut BytesMut::new(),
            Protocol::V5
        ),
        Err(EncodeError::PasswordWithoutUsername)
    );
}

#[test]
fn subscription_identifier_range() {
    // 268,435,455 is the largest four-byte variable byte integer.
    let mut p = publish();
    p.properties.subscription_identifiers = vec![268_435_455];
    let bytes = v5(&Packet::Publish(p.clone()));
    assert_eq!(&bytes[7..13], [5, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F]);

    p.properties.subscription_identifiers = vec![1, 268_435_456];
    let mut buf = BytesMut::new();
    assert_eq!(
        encode(&Packet::Publish(p.clone()), &mut buf, Protocol::V5),
        Err(EncodeError::SubscriptionIdentifierTooLarge(268_435_456))
    );
    assert_eq!(
        encode_publish(&p.borrowed(), &mut buf, Protocol::V5),
        Err(EncodeError::SubscriptionIdentifierTooLarge(268_435_456))
    );
    assert!(buf.is_empty());
    // Toward 3.1.1 properties are not written, so they are not checked.
    assert!(encode(&Packet::Publish(p), &mut buf, Protocol::V311).is_ok());

    let subscribe = Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: vec![SubscribeFilter::new("a", QoS::AtMostOnce)],
        properties: SubscribeProperties {
            subscription_identifier: Some(u32::MAX),
            user_properties: vec![],
        },
    });
    let mut buf = BytesMut::new();
    assert_eq!(
        encode(&subscribe, &mut buf, Protocol::V5),
        Err(EncodeError::SubscriptionIdentifierTooLarge(u32::MAX))
    );
    assert!(buf.is_empty());
}

#[test]
fn v5_rejections_write_nothing() {
    let too_long = "x".repeat(65_536);
    let mut long_property = publish();
    long_property.properties.user_properties = vec![("k".into(), too_long.clone())];
    let cases = [
        (
            Packet::Auth(Auth {
                reason: ReasonCode::SUCCESS,
                properties: AuthProperties::default(),
            }),
            Protocol::V311,
            EncodeError::AuthInMqtt311,
        ),
        (
            Packet::UnsubAck(UnsubAck {
                pkid: 1,
                reason_codes: vec![],
                properties: AckProperties::default(),
            }),
            Protocol::V5,
            EncodeError::EmptyUnsubAck,
        ),
        (
            Packet::Publish(long_property),
            Protocol::V5,
            EncodeError::FieldTooLong {
                field: "property",
                len: 65_536,
            },
        ),
        (
            Packet::Disconnect(Disconnect::with_reason_string(
                ReasonCode::UNSPECIFIED_ERROR,
                too_long,
            )),
            Protocol::V5,
            EncodeError::FieldTooLong {
                field: "property",
                len: 65_536,
            },
        ),
    ];
    for (packet, protocol, expected) in cases {
        let mut buf = BytesMut::new();
        assert_eq!(encode(&packet, &mut buf, protocol), Err(expected));
        assert!(buf.is_empty());
    }
}
