//! Property: every valid MQTT 3.1.1 (and 3.1) packet survives encode → decode unchanged,
//! byte-exactly framed. The MQTT 5 counterpart is `roundtrip_v5.rs`.

use bytes::BytesMut;
use mqtt::*;
use proptest::collection::vec;
use proptest::prelude::*;

const MAX: usize = 1 << 20;

mod common;

use common::{binary, pkid, qos, topic_filter, topic_name};

/// Any string the codec accepts: arbitrary Unicode without U+0000.
fn text() -> impl Strategy<Value = String> {
    common::text_of(24)
}

fn connect() -> impl Strategy<Value = Connect> {
    let will = (topic_name(), binary(40), qos(), any::<bool>()).prop_map(
        |(topic, message, qos, retain)| LastWill {
            topic,
            message,
            qos,
            retain,
            properties: WillProperties::default(),
        },
    );
    let login = proptest::option::of((text(), proptest::option::of(binary(40))));
    (
        prop_oneof![Just(Protocol::V311), Just(Protocol::V31)],
        any::<u16>(),
        text(),
        any::<bool>(),
        proptest::option::of(will),
        login,
    )
        .prop_map(
            |(protocol, keep_alive, client_id, clean_session, will, login)| {
                let (username, password) = match login {
                    Some((user, password)) => (Some(user), password),
                    None => (None, None),
                };
                Connect {
                    protocol,
                    keep_alive,
                    client_id,
                    clean_session,
                    will,
                    username,
                    password,
                    properties: ConnectProperties::default(),
                }
            },
        )
}

/// The reason codes that have a 3.1.1 CONNACK return code of their own (0 to 5).
fn connect_return_code() -> impl Strategy<Value = ReasonCode> {
    prop_oneof![
        Just(ReasonCode::SUCCESS),
        Just(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        Just(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        Just(ReasonCode::SERVER_UNAVAILABLE),
        Just(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        Just(ReasonCode::NOT_AUTHORIZED),
    ]
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        pkid(),
        // Up to 300 bytes so the remaining length takes one or two bytes.
        binary(300),
    )
        .prop_map(|(qos, dup, retain, topic, pkid, payload)| {
            let at_most_once = qos == QoS::AtMostOnce;
            Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic,
                pkid: if at_most_once { 0 } else { pkid },
                payload,
                properties: PublishProperties::default(),
            }
        })
}

fn packet() -> impl Strategy<Value = Packet> {
    // 3.1.1 has one failure code, 0x80.
    let return_code = prop_oneof![
        qos().prop_map(ReasonCode::granted),
        Just(ReasonCode::UNSPECIFIED_ERROR)
    ];
    let subscribe_filter =
        (topic_filter(), qos()).prop_map(|(f, qos)| SubscribeFilter::new(f, qos));
    prop_oneof![
        connect().prop_map(Packet::Connect),
        (any::<bool>(), connect_return_code()).prop_map(|(session_present, code)| Packet::ConnAck(
            ConnAck::new(session_present, code)
        )),
        publish().prop_map(Packet::Publish),
        pkid().prop_map(|pkid| Packet::PubAck(Ack::new(pkid))),
        pkid().prop_map(|pkid| Packet::PubRec(Ack::new(pkid))),
        pkid().prop_map(|pkid| Packet::PubRel(Ack::new(pkid))),
        pkid().prop_map(|pkid| Packet::PubComp(Ack::new(pkid))),
        (pkid(), vec(subscribe_filter, 1..5)).prop_map(|(pkid, filters)| {
            Packet::Subscribe(Subscribe {
                pkid,
                filters,
                properties: SubscribeProperties::default(),
            })
        }),
        (pkid(), vec(return_code, 1..5)).prop_map(|(pkid, return_codes)| {
            Packet::SubAck(SubAck {
                pkid,
                return_codes,
                properties: AckProperties::default(),
            })
        }),
        (pkid(), vec(topic_filter(), 1..5)).prop_map(|(pkid, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                pkid,
                filters,
                user_properties: UserProperties::new(),
            })
        }),
        pkid().prop_map(|pkid| Packet::UnsubAck(UnsubAck {
            pkid,
            reason_codes: vec![],
            properties: AckProperties::default(),
        })),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::disconnect()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_decode_is_identity(packet in packet()) {
        let mut buf = BytesMut::new();
        encode(&packet, &mut buf, Protocol::V311).unwrap();
        prop_assert_eq!(buf.len(), packet.encoded_len(Protocol::V311));
        let decoded = decode(&mut buf, MAX, Protocol::V311).unwrap();
        prop_assert_eq!(decoded, Some(packet));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn any_strict_prefix_is_incomplete(packet in packet(), cut in any::<prop::sample::Index>()) {
        let mut full = BytesMut::new();
        encode(&packet, &mut full, Protocol::V311).unwrap();
        let prefix = &full[..cut.index(full.len())];
        let mut buf = BytesMut::from(prefix);
        prop_assert_eq!(decode(&mut buf, MAX, Protocol::V311), Ok(None));
        prop_assert_eq!(&buf[..], prefix);
    }

    #[test]
    fn a_stream_of_packets_decodes_in_order(packets in vec(packet(), 1..8)) {
        let mut buf = BytesMut::new();
        for p in &packets {
            encode(p, &mut buf, Protocol::V311).unwrap();
        }
        let mut decoded = Vec::new();
        while let Some(p) = decode(&mut buf, MAX, Protocol::V311).unwrap() {
            decoded.push(p);
        }
        prop_assert_eq!(decoded, packets);
        prop_assert!(buf.is_empty());
    }
}
