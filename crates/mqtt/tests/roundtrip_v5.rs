//! Property: every valid MQTT 5 packet, with arbitrary properties, survives encode →
//! decode unchanged, byte-exactly framed, and `encoded_len(Protocol::V5)` is what
//! `encode` writes. Also: the same packets toward 3.1.1 decode to their 3.1.1 projection.
//!
//! The generators produce the decoder's canonical forms only, i.e. what a strict
//! receiver accepts: a Response Topic is a non-empty topic name without wildcards;
//! Receive Maximum, Maximum Packet Size and Subscription Identifier are non-zero (and a
//! Subscription Identifier at most 268,435,455); Maximum QoS is 0 or 1; Authentication
//! Data comes with an Authentication Method; an empty PUBLISH topic has a Topic Alias;
//! an UNSUBACK has at least one reason code; every reason code is one its packet may carry.

use bytes::{Bytes, BytesMut};
use mqtt::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

const MAX: usize = 1 << 20;

// Reason codes each packet may carry (MQTT 5 §2.4 and the packets' tables).
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_CODES: &[u8] = &[0x00, 0x92];
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

fn reason(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    // Success (the short form) about half the time, any allowed code otherwise.
    prop_oneof![
        Just(ReasonCode::SUCCESS),
        proptest::sample::select(codes).prop_map(ReasonCode)
    ]
}

mod common;

use common::{binary, pkid, qos, topic_filter, topic_name};

/// Any string the codec accepts: arbitrary Unicode without U+0000.
fn text() -> impl Strategy<Value = String> {
    common::text_of(16)
}

fn users() -> impl Strategy<Value = UserProperties> {
    vec((text(), text()), 0..4)
}

fn nonzero_u16() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn nonzero_u32() -> impl Strategy<Value = u32> {
    1..=u32::MAX
}

fn subscription_identifier() -> impl Strategy<Value = u32> {
    prop_oneof![1..=127u32, 128..=16_383u32, 16_384..=268_435_455u32]
}

/// Authentication Method, and Authentication Data only with a method.
fn authentication() -> impl Strategy<Value = (Option<String>, Option<Bytes>)> {
    of((text(), of(binary(20)))).prop_map(|auth| match auth {
        Some((method, data)) => (Some(method), data),
        None => (None, None),
    })
}

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        of(any::<u32>()),
        of(nonzero_u16()),
        of(nonzero_u32()),
        of(any::<u16>()),
        of(any::<bool>()),
        of(any::<bool>()),
        users(),
        authentication(),
    )
        .prop_map(
            |(session, receive, packet_size, alias_max, response, problem, users, auth)| {
                ConnectProperties {
                    session_expiry_interval: session,
                    receive_maximum: receive,
                    maximum_packet_size: packet_size,
                    topic_alias_maximum: alias_max,
                    request_response_information: response,
                    request_problem_information: problem,
                    user_properties: users,
                    authentication_method: auth.0,
                    authentication_data: auth.1,
                }
            },
        )
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        of(any::<u32>()),
        of(any::<bool>()),
        of(any::<u32>()),
        of(text()),
        of(topic_name()),
        of(binary(20)),
        users(),
    )
        .prop_map(
            |(delay, format, expiry, content_type, response_topic, correlation, users)| {
                WillProperties {
                    will_delay_interval: delay,
                    payload_format_indicator: format,
                    message_expiry_interval: expiry,
                    content_type,
                    response_topic,
                    correlation_data: correlation,
                    user_properties: users,
                }
            },
        )
}

fn connect() -> impl Strategy<Value = Connect> {
    let will = (
        topic_name(),
        binary(40),
        qos(),
        any::<bool>(),
        will_properties(),
    )
        .prop_map(|(topic, message, qos, retain, properties)| LastWill {
            topic,
            message,
            qos,
            retain,
            properties,
        });
    (
        any::<u16>(),
        text(),
        any::<bool>(),
        of(will),
        // MQTT 5 allows a password without a user name.
        of(text()),
        of(binary(40)),
        connect_properties(),
    )
        .prop_map(
            |(keep_alive, client_id, clean_session, will, username, password, properties)| {
                Connect {
                    protocol: Protocol::V5,
                    keep_alive,
                    client_id,
                    clean_session,
                    will,
                    username,
                    password,
                    properties,
                }
            },
        )
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    let first = (
        of(any::<u32>()),
        of(nonzero_u16()),
        of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        of(any::<bool>()),
        of(nonzero_u32()),
        of(text()),
        of(any::<u16>()),
        of(text()),
        users(),
    );
    let second = (
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<u16>()),
        of(text()),
        of(text()),
        authentication(),
    );
    (first, second).prop_map(
        |(
            (session, receive, max_qos, retain, packet_size, assigned, alias_max, reason, users),
            (wildcard, sub_ids, shared, keep_alive, response, reference, auth),
        )| ConnAckProperties {
            session_expiry_interval: session,
            receive_maximum: receive,
            maximum_qos: max_qos,
            retain_available: retain,
            maximum_packet_size: packet_size,
            assigned_client_identifier: assigned,
            topic_alias_maximum: alias_max,
            reason_string: reason,
            user_properties: users,
            wildcard_subscription_available: wildcard,
            subscription_identifiers_available: sub_ids,
            shared_subscription_available: shared,
            server_keep_alive: keep_alive,
            response_information: response,
            server_reference: reference,
            authentication_method: auth.0,
            authentication_data: auth.1,
        },
    )
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        of(any::<bool>()),
        of(any::<u32>()),
        of(any::<u16>()),
        of(topic_name()),
        of(binary(20)),
        users(),
        vec(subscription_identifier(), 0..4),
        of(text()),
    )
        .prop_map(
            |(format, expiry, alias, response_topic, correlation, users, sub_ids, content_type)| {
                PublishProperties {
                    payload_format_indicator: format,
                    message_expiry_interval: expiry,
                    topic_alias: alias,
                    response_topic,
                    correlation_data: correlation,
                    user_properties: users,
                    subscription_identifiers: sub_ids,
                    content_type,
                }
            },
        )
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        // An empty topic a fifth of the time (it then needs a Topic Alias).
        prop_oneof![4 => topic_name(), 1 => Just(String::new())],
        pkid(),
        // Up to 300 bytes so the remaining length takes one or two bytes.
        binary(300),
        publish_properties(),
        any::<u16>(),
    )
        .prop_map(
            |(qos, dup, retain, topic, pkid, payload, mut properties, alias)| {
                if topic.is_empty() && properties.topic_alias.is_none() {
                    properties.topic_alias = Some(alias);
                }
                let at_most_once = qos == QoS::AtMostOnce;
                Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    pkid: if at_most_once { 0 } else { pkid },
                    payload,
                    properties,
                }
            },
        )
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    prop_oneof![
        // The common case: none, so the short forms are exercised.
        Just(AckProperties::default()),
        (of(text()), users()).prop_map(|(reason_string, user_properties)| AckProperties {
            reason_string,
            user_properties,
        }),
    ]
}

fn ack(codes: &'static [u8]) -> impl Strategy<Value = Ack> {
    (pkid(), reason(codes), ack_properties()).prop_map(|(pkid, reason, properties)| Ack {
        pkid,
        reason,
        properties,
    })
}

fn subscribe_filter() -> impl Strategy<Value = SubscribeFilter> {
    let retain_handling = prop_oneof![
        Just(RetainHandling::OnSubscribe),
        Just(RetainHandling::OnNewSubscribe),
        Just(RetainHandling::Never),
    ];
    (
        topic_filter(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        retain_handling,
    )
        .prop_map(
            |(filter, qos, no_local, retain_as_published, retain_handling)| SubscribeFilter {
                filter,
                qos,
                no_local,
                retain_as_published,
                retain_handling,
            },
        )
}

fn disconnect() -> impl Strategy<Value = Disconnect> {
    let properties = (of(any::<u32>()), of(text()), users(), of(text())).prop_map(
        |(session, reason_string, user_properties, server_reference)| DisconnectProperties {
            session_expiry_interval: session,
            reason_string,
            user_properties,
            server_reference,
        },
    );
    let properties = prop_oneof![Just(DisconnectProperties::default()), properties];
    (reason(DISCONNECT_CODES), properties)
        .prop_map(|(reason, properties)| Disconnect { reason, properties })
}

fn auth() -> impl Strategy<Value = Auth> {
    let properties = (of(text()), of(binary(20)), of(text()), users()).prop_map(
        |(method, data, reason_string, user_properties)| AuthProperties {
            authentication_method: method,
            authentication_data: data,
            reason_string,
            user_properties,
        },
    );
    let properties = prop_oneof![Just(AuthProperties::default()), properties];
    (reason(AUTH_CODES), properties).prop_map(|(reason, properties)| Auth { reason, properties })
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect().prop_map(Packet::Connect),
        (any::<bool>(), reason(CONNACK_CODES), connack_properties()).prop_map(
            |(session_present, code, properties)| Packet::ConnAck(ConnAck {
                session_present,
                code,
                properties,
            })
        ),
        publish().prop_map(Packet::Publish),
        ack(PUBACK_CODES).prop_map(Packet::PubAck),
        ack(PUBACK_CODES).prop_map(Packet::PubRec),
        ack(PUBREL_CODES).prop_map(Packet::PubRel),
        ack(PUBREL_CODES).prop_map(Packet::PubComp),
        (
            pkid(),
            vec(subscribe_filter(), 1..5),
            of(subscription_identifier()),
            users()
        )
            .prop_map(|(pkid, filters, id, user_properties)| {
                Packet::Subscribe(Subscribe {
                    pkid,
                    filters,
                    properties: SubscribeProperties {
                        subscription_identifier: id,
                        user_properties,
                    },
                })
            }),
        (pkid(), vec(reason(SUBACK_CODES), 1..5), ack_properties()).prop_map(
            |(pkid, return_codes, properties)| {
                Packet::SubAck(SubAck {
                    pkid,
                    return_codes,
                    properties,
                })
            }
        ),
        (pkid(), vec(topic_filter(), 1..5), users()).prop_map(
            |(pkid, filters, user_properties)| {
                Packet::Unsubscribe(Unsubscribe {
                    pkid,
                    filters,
                    user_properties,
                })
            }
        ),
        (pkid(), vec(reason(UNSUBACK_CODES), 1..5), ack_properties()).prop_map(
            |(pkid, reason_codes, properties)| {
                Packet::UnsubAck(UnsubAck {
                    pkid,
                    reason_codes,
                    properties,
                })
            }
        ),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect().prop_map(Packet::Disconnect),
        auth().prop_map(Packet::Auth),
    ]
}

/// What a v5 packet becomes when written toward 3.1.1 and read back: no properties, no
/// MQTT 5 subscription options, reason codes as far as 3.1.1 has them.
fn toward_311(packet: &Packet) -> Packet {
    match packet.clone() {
        // A CONNECT is written in its own protocol.
        Packet::Connect(c) => Packet::Connect(c),
        Packet::ConnAck(a) => {
            let code = match a.code {
                ReasonCode::SUCCESS
                | ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
                | ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
                | ReasonCode::BAD_USER_NAME_OR_PASSWORD
                | ReasonCode::NOT_AUTHORIZED => a.code,
                ReasonCode::BAD_AUTHENTICATION_METHOD => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                ReasonCode::BANNED => ReasonCode::NOT_AUTHORIZED,
                _ => ReasonCode::SERVER_UNAVAILABLE,
            };
            Packet::ConnAck(ConnAck::new(a.session_present, code))
        }
        Packet::Publish(mut p) => {
            p.properties = PublishProperties::default();
            Packet::Publish(p)
        }
        Packet::PubAck(a) => Packet::PubAck(Ack::new(a.pkid)),
        Packet::PubRec(a) => Packet::PubRec(Ack::new(a.pkid)),
        Packet::PubRel(a) => Packet::PubRel(Ack::new(a.pkid)),
        Packet::PubComp(a) => Packet::PubComp(Ack::new(a.pkid)),
        Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| SubscribeFilter::new(f.filter, f.qos))
                .collect(),
            properties: SubscribeProperties::default(),
        }),
        Packet::SubAck(s) => Packet::SubAck(SubAck {
            pkid: s.pkid,
            return_codes: s
                .return_codes
                .into_iter()
                .map(|c| {
                    if c.is_failure() {
                        ReasonCode::UNSPECIFIED_ERROR
                    } else {
                        c
                    }
                })
                .collect(),
            properties: AckProperties::default(),
        }),
        Packet::Unsubscribe(mut u) => {
            u.user_properties.clear();
            Packet::Unsubscribe(u)
        }
        Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck {
            pkid: u.pkid,
            reason_codes: vec![],
            properties: AckProperties::default(),
        }),
        Packet::PingReq => Packet::PingReq,
        Packet::PingResp => Packet::PingResp,
        Packet::Disconnect(_) => Packet::disconnect(),
        Packet::Auth(_) => unreachable!("AUTH has no 3.1.1 form"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn encode_then_decode_is_identity(packet in packet()) {
        let mut buf = BytesMut::new();
        encode(&packet, &mut buf, Protocol::V5).unwrap();
        prop_assert_eq!(buf.len(), packet.encoded_len(Protocol::V5));
        let decoded = decode(&mut buf, MAX, Protocol::V5).unwrap();
        prop_assert_eq!(decoded, Some(packet));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn borrowed_publish_encodes_like_owned(p in publish()) {
        let mut owned = BytesMut::new();
        encode(&Packet::Publish(p.clone()), &mut owned, Protocol::V5).unwrap();
        let mut borrowed = BytesMut::new();
        encode_publish(&p.borrowed(), &mut borrowed, Protocol::V5).unwrap();
        prop_assert_eq!(&owned, &borrowed);
        prop_assert_eq!(borrowed.len(), publish_encoded_len(&p.borrowed(), Protocol::V5));
    }

    #[test]
    fn any_strict_prefix_is_incomplete(packet in packet(), cut in any::<prop::sample::Index>()) {
        let mut full = BytesMut::new();
        encode(&packet, &mut full, Protocol::V5).unwrap();
        let prefix = &full[..cut.index(full.len())];
        let mut buf = BytesMut::from(prefix);
        prop_assert_eq!(decode(&mut buf, MAX, Protocol::V5), Ok(None));
        prop_assert_eq!(&buf[..], prefix);
    }

    #[test]
    fn a_stream_of_packets_decodes_in_order(packets in vec(packet(), 1..8)) {
        let mut buf = BytesMut::new();
        for p in &packets {
            encode(p, &mut buf, Protocol::V5).unwrap();
        }
        let mut decoded = Vec::new();
        while let Some(p) = decode(&mut buf, MAX, Protocol::V5).unwrap() {
            decoded.push(p);
        }
        prop_assert_eq!(decoded, packets);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn toward_311_decodes_to_the_311_projection(packet in packet()) {
        let mut buf = BytesMut::new();
        let result = encode(&packet, &mut buf, Protocol::V311);
        if let Packet::Auth(_) = packet {
            prop_assert_eq!(result, Err(EncodeError::AuthInMqtt311));
            prop_assert!(buf.is_empty());
            return Ok(());
        }
        result.unwrap();
        prop_assert_eq!(buf.len(), packet.encoded_len(Protocol::V311));
        let decoded = decode(&mut buf, MAX, Protocol::V311);
        match &packet {
            // An alias stands for the topic only in MQTT 5: the broker must resolve it
            // before forwarding toward 3.1.1.
            Packet::Publish(p) if p.topic.is_empty() => {
                prop_assert_eq!(decoded, Err(DecodeError::EmptyTopic));
            }
            _ => {
                prop_assert_eq!(decoded, Ok(Some(toward_311(&packet))));
                prop_assert!(buf.is_empty());
            }
        }
    }
}
