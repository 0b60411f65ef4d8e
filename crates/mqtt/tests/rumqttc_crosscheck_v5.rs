//! Cross-check against an independent implementation: rumqttc 0.25's MQTT 5 codec
//! (`rumqttc::v5::mqttbytes::v5`) must read what we write and we must read what it writes,
//! to the same packet. Covered: CONNECT (properties, will properties), CONNACK, PUBLISH,
//! PUBACK/PUBREC/PUBREL/PUBCOMP with reasons, SUBSCRIBE (options, properties), SUBACK,
//! UNSUBSCRIBE, UNSUBACK, DISCONNECT (reason, properties), PINGREQ, PINGRESP.
//!
//! Generated packets stay within what both models express and both decoders accept (see
//! `roundtrip_v5.rs` for our canonical forms). Differences found, pinned by
//! `known_differences` below:
//!
//! * rumqttc cannot read our shortest DISCONNECTs: `E0 00` (Normal disconnection, which
//!   rumqttc itself writes) fails in `Packet::read` with `PayloadRequired`, and `E0 01 rc`
//!   (reason code only, MQTT 5 §3.14.2.1 allows it) fails with `InsufficientBytes` since
//!   it always expects a property length. So "rumqttc reads what we write" only covers
//!   DISCONNECTs that carry properties.
//! * Nor can rumqttc write a DISCONNECT with a reason code other than Normal and no
//!   properties: with `properties: None` it declares remaining length 1 and writes two
//!   bytes (reason code, property length 0), one past the frame, which we (rightly) read
//!   as a stray packet of type 0; with `Some(empty)` it mistakes the packet for its own
//!   short form and writes `E0 00`, Normal disconnection, losing the reason. So "we read
//!   what rumqttc writes" only covers such DISCONNECTs with properties.
//! * rumqttc miscounts the bytes of a Subscription Identifier in PUBLISH properties (one
//!   too many per identifier), so with three identifiers followed by an empty Content
//!   Type it stops reading properties early and the Content Type lands in the payload.
//!   Generated PUBLISHes carry at most two identifiers.
//! * AUTH is not in rumqttc's `Packet` (`Packet::read` gives `InvalidPacketType(15)`;
//!   the `Auth` struct's reason code type is private), so AUTH is not cross-checked.
//! * A PUBACK/PUBREC/PUBREL/PUBCOMP with a reason and no properties: we write remaining
//!   length 3, rumqttc 4 (an empty property list). Both forms are valid and each side
//!   reads the other's, so only the byte-for-byte comparison leaves them out.
//! * rumqttc is laxer than MQTT 5 where we are strict: it accepts duplicate properties
//!   (the last wins), out-of-range values (Receive Maximum 0, Payload Format Indicator 2,
//!   Maximum QoS 2, Subscription Identifier 0), wildcards or an empty topic without Topic
//!   Alias in PUBLISH, a Response Topic with wildcards, Authentication Data without
//!   Authentication Method, U+0000 in strings, and the CONNECT reserved flag.
//! * Model differences: rumqttc's login drops empty credentials and keeps the password
//!   as a `String` (so passwords are non-empty UTF-8 here, user names non-empty);
//!   `Option<…Properties>` where `Some(empty)` and `None` are the same bytes (rumqttc
//!   reads back `None`); its SUBACK `Failure` and `Unspecified` are both 0x80 (read back
//!   as `Unspecified`); its CONNACK code enum also has 3.1.1-only variants its v5 writer
//!   cannot write (`unreachable!`); flags are `u8`, not `bool`; topics are `Bytes`.

use bytes::{Bytes, BytesMut};
use mqtt::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use rumqttc::v5::mqttbytes::v5 as r;
use rumqttc::v5::mqttbytes::QoS as RQoS;

const MAX: usize = 1 << 20;

fn qos_to_r(qos: QoS) -> RQoS {
    match qos {
        QoS::AtMostOnce => RQoS::AtMostOnce,
        QoS::AtLeastOnce => RQoS::AtLeastOnce,
        QoS::ExactlyOnce => RQoS::ExactlyOnce,
    }
}

fn qos_from_r(qos: RQoS) -> QoS {
    match qos {
        RQoS::AtMostOnce => QoS::AtMostOnce,
        RQoS::AtLeastOnce => QoS::AtLeastOnce,
        RQoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn flag_to_r(v: Option<bool>) -> Option<u8> {
    v.map(u8::from)
}

fn flag_from_r(v: Option<u8>) -> Option<bool> {
    v.map(|v| {
        assert!(v <= 1, "flag {v}");
        v == 1
    })
}

/// Our properties as rumqttc's optional struct: empty is `None`.
fn some_unless<T, P: PartialEq + Default>(p: &P, f: impl FnOnce(&P) -> T) -> Option<T> {
    (*p != P::default()).then(|| f(p))
}

fn utf8(bytes: &Bytes) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

// ---------------------------------------------------------------- reason codes

const CONNACK_CODES: &[(u8, r::ConnectReturnCode)] = {
    use r::ConnectReturnCode as C;
    &[
        (0x00, C::Success),
        (0x80, C::UnspecifiedError),
        (0x81, C::MalformedPacket),
        (0x82, C::ProtocolError),
        (0x83, C::ImplementationSpecificError),
        (0x84, C::UnsupportedProtocolVersion),
        (0x85, C::ClientIdentifierNotValid),
        (0x86, C::BadUserNamePassword),
        (0x87, C::NotAuthorized),
        (0x88, C::ServerUnavailable),
        (0x89, C::ServerBusy),
        (0x8A, C::Banned),
        (0x8C, C::BadAuthenticationMethod),
        (0x90, C::TopicNameInvalid),
        (0x95, C::PacketTooLarge),
        (0x97, C::QuotaExceeded),
        (0x99, C::PayloadFormatInvalid),
        (0x9A, C::RetainNotSupported),
        (0x9B, C::QoSNotSupported),
        (0x9C, C::UseAnotherServer),
        (0x9D, C::ServerMoved),
        (0x9F, C::ConnectionRateExceeded),
    ]
};

const PUBACK_CODES: &[(u8, r::PubAckReason)] = {
    use r::PubAckReason as C;
    &[
        (0x00, C::Success),
        (0x10, C::NoMatchingSubscribers),
        (0x80, C::UnspecifiedError),
        (0x83, C::ImplementationSpecificError),
        (0x87, C::NotAuthorized),
        (0x90, C::TopicNameInvalid),
        (0x91, C::PacketIdentifierInUse),
        (0x97, C::QuotaExceeded),
        (0x99, C::PayloadFormatInvalid),
    ]
};

const PUBREC_CODES: &[(u8, r::PubRecReason)] = {
    use r::PubRecReason as C;
    &[
        (0x00, C::Success),
        (0x10, C::NoMatchingSubscribers),
        (0x80, C::UnspecifiedError),
        (0x83, C::ImplementationSpecificError),
        (0x87, C::NotAuthorized),
        (0x90, C::TopicNameInvalid),
        (0x91, C::PacketIdentifierInUse),
        (0x97, C::QuotaExceeded),
        (0x99, C::PayloadFormatInvalid),
    ]
};

const PUBREL_CODES: &[(u8, r::PubRelReason)] = &[
    (0x00, r::PubRelReason::Success),
    (0x92, r::PubRelReason::PacketIdentifierNotFound),
];

const PUBCOMP_CODES: &[(u8, r::PubCompReason)] = &[
    (0x00, r::PubCompReason::Success),
    (0x92, r::PubCompReason::PacketIdentifierNotFound),
];

const SUBACK_CODES: &[(u8, r::SubscribeReasonCode)] = {
    use r::SubscribeReasonCode as C;
    &[
        (0x00, C::Success(RQoS::AtMostOnce)),
        (0x01, C::Success(RQoS::AtLeastOnce)),
        (0x02, C::Success(RQoS::ExactlyOnce)),
        (0x80, C::Unspecified),
        (0x83, C::ImplementationSpecific),
        (0x87, C::NotAuthorized),
        (0x8F, C::TopicFilterInvalid),
        (0x91, C::PkidInUse),
        (0x97, C::QuotaExceeded),
        (0x9E, C::SharedSubscriptionsNotSupported),
        (0xA1, C::SubscriptionIdNotSupported),
        (0xA2, C::WildcardSubscriptionsNotSupported),
    ]
};

const UNSUBACK_CODES: &[(u8, r::UnsubAckReason)] = {
    use r::UnsubAckReason as C;
    &[
        (0x00, C::Success),
        (0x11, C::NoSubscriptionExisted),
        (0x80, C::UnspecifiedError),
        (0x83, C::ImplementationSpecificError),
        (0x87, C::NotAuthorized),
        (0x8F, C::TopicFilterInvalid),
        (0x91, C::PacketIdentifierInUse),
    ]
};

const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];

fn to_r_code<T: Copy>(table: &[(u8, T)], code: ReasonCode) -> T {
    table
        .iter()
        .find(|(c, _)| *c == code.0)
        .unwrap_or_else(|| panic!("no rumqttc code for {code}"))
        .1
}

fn from_r_code<T: Copy + PartialEq + std::fmt::Debug>(table: &[(u8, T)], code: T) -> ReasonCode {
    let found = table.iter().find(|(_, c)| *c == code);
    ReasonCode(found.unwrap_or_else(|| panic!("no code for {code:?}")).0)
}

fn codes(table: &'static [(u8, impl Copy + 'static)]) -> impl Strategy<Value = ReasonCode> {
    let all: Vec<u8> = table.iter().map(|(c, _)| *c).collect();
    prop_oneof![
        Just(ReasonCode::SUCCESS),
        proptest::sample::select(all).prop_map(ReasonCode)
    ]
}

// ---------------------------------------------------------------- ours → rumqttc

fn connect_properties_to_r(p: &ConnectProperties) -> Option<r::ConnectProperties> {
    some_unless(p, |p| r::ConnectProperties {
        session_expiry_interval: p.session_expiry_interval,
        receive_maximum: p.receive_maximum,
        max_packet_size: p.maximum_packet_size,
        topic_alias_max: p.topic_alias_maximum,
        request_response_info: flag_to_r(p.request_response_information),
        request_problem_info: flag_to_r(p.request_problem_information),
        user_properties: p.user_properties.clone(),
        authentication_method: p.authentication_method.clone(),
        authentication_data: p.authentication_data.clone(),
    })
}

fn will_properties_to_r(p: &WillProperties) -> Option<r::LastWillProperties> {
    some_unless(p, |p| r::LastWillProperties {
        delay_interval: p.will_delay_interval,
        payload_format_indicator: flag_to_r(p.payload_format_indicator),
        message_expiry_interval: p.message_expiry_interval,
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
    })
}

fn connack_properties_to_r(p: &ConnAckProperties) -> Option<r::ConnAckProperties> {
    some_unless(p, |p| r::ConnAckProperties {
        session_expiry_interval: p.session_expiry_interval,
        receive_max: p.receive_maximum,
        max_qos: p.maximum_qos.map(|q| q as u8),
        retain_available: flag_to_r(p.retain_available),
        max_packet_size: p.maximum_packet_size,
        assigned_client_identifier: p.assigned_client_identifier.clone(),
        topic_alias_max: p.topic_alias_maximum,
        reason_string: p.reason_string.clone(),
        user_properties: p.user_properties.clone(),
        wildcard_subscription_available: flag_to_r(p.wildcard_subscription_available),
        subscription_identifiers_available: flag_to_r(p.subscription_identifiers_available),
        shared_subscription_available: flag_to_r(p.shared_subscription_available),
        server_keep_alive: p.server_keep_alive,
        response_information: p.response_information.clone(),
        server_reference: p.server_reference.clone(),
        authentication_method: p.authentication_method.clone(),
        authentication_data: p.authentication_data.clone(),
    })
}

fn publish_properties_to_r(p: &PublishProperties) -> Option<r::PublishProperties> {
    some_unless(p, |p| r::PublishProperties {
        payload_format_indicator: flag_to_r(p.payload_format_indicator),
        message_expiry_interval: p.message_expiry_interval,
        topic_alias: p.topic_alias,
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        subscription_identifiers: p
            .subscription_identifiers
            .iter()
            .map(|id| *id as usize)
            .collect(),
        content_type: p.content_type.clone(),
    })
}

/// The two ack property fields as rumqttc's struct of the right type.
macro_rules! ack_properties_to_r {
    ($ty:ident, $p:expr) => {
        some_unless($p, |p: &AckProperties| r::$ty {
            reason_string: p.reason_string.clone(),
            user_properties: p.user_properties.clone(),
        })
    };
}

fn retain_handling_to_r(rh: RetainHandling) -> r::RetainForwardRule {
    match rh {
        RetainHandling::OnSubscribe => r::RetainForwardRule::OnEverySubscribe,
        RetainHandling::OnNewSubscribe => r::RetainForwardRule::OnNewSubscribe,
        RetainHandling::Never => r::RetainForwardRule::Never,
    }
}

fn retain_handling_from_r(rule: r::RetainForwardRule) -> RetainHandling {
    match rule {
        r::RetainForwardRule::OnEverySubscribe => RetainHandling::OnSubscribe,
        r::RetainForwardRule::OnNewSubscribe => RetainHandling::OnNewSubscribe,
        r::RetainForwardRule::Never => RetainHandling::Never,
    }
}

fn to_r(packet: &Packet) -> r::Packet {
    match packet {
        Packet::Connect(c) => {
            assert_eq!(c.protocol, Protocol::V5, "rumqttc v5 writes MQTT 5 only");
            let login = match (&c.username, &c.password) {
                (None, None) => None,
                (username, password) => Some(r::Login {
                    username: username.clone().unwrap_or_default(),
                    password: password.as_ref().map(utf8).unwrap_or_default(),
                }),
            };
            r::Packet::Connect(
                r::Connect {
                    keep_alive: c.keep_alive,
                    client_id: c.client_id.clone(),
                    clean_start: c.clean_session,
                    properties: connect_properties_to_r(&c.properties),
                },
                c.will.as_ref().map(|w| r::LastWill {
                    topic: Bytes::from(w.topic.clone()),
                    message: w.message.clone(),
                    qos: qos_to_r(w.qos),
                    retain: w.retain,
                    properties: will_properties_to_r(&w.properties),
                }),
                login,
            )
        }
        Packet::ConnAck(a) => r::Packet::ConnAck(r::ConnAck {
            session_present: a.session_present,
            code: to_r_code(CONNACK_CODES, a.code),
            properties: connack_properties_to_r(&a.properties),
        }),
        Packet::Publish(p) => r::Packet::Publish(r::Publish {
            dup: p.dup,
            qos: qos_to_r(p.qos),
            retain: p.retain,
            topic: Bytes::from(p.topic.clone()),
            pkid: p.pkid,
            payload: p.payload.clone(),
            properties: publish_properties_to_r(&p.properties),
        }),
        Packet::PubAck(a) => r::Packet::PubAck(r::PubAck {
            pkid: a.pkid,
            reason: to_r_code(PUBACK_CODES, a.reason),
            properties: ack_properties_to_r!(PubAckProperties, &a.properties),
        }),
        Packet::PubRec(a) => r::Packet::PubRec(r::PubRec {
            pkid: a.pkid,
            reason: to_r_code(PUBREC_CODES, a.reason),
            properties: ack_properties_to_r!(PubRecProperties, &a.properties),
        }),
        Packet::PubRel(a) => r::Packet::PubRel(r::PubRel {
            pkid: a.pkid,
            reason: to_r_code(PUBREL_CODES, a.reason),
            properties: ack_properties_to_r!(PubRelProperties, &a.properties),
        }),
        Packet::PubComp(a) => r::Packet::PubComp(r::PubComp {
            pkid: a.pkid,
            reason: to_r_code(PUBCOMP_CODES, a.reason),
            properties: ack_properties_to_r!(PubCompProperties, &a.properties),
        }),
        Packet::Subscribe(s) => r::Packet::Subscribe(r::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .iter()
                .map(|f| r::Filter {
                    path: f.filter.clone(),
                    qos: qos_to_r(f.qos),
                    nolocal: f.no_local,
                    preserve_retain: f.retain_as_published,
                    retain_forward_rule: retain_handling_to_r(f.retain_handling),
                })
                .collect(),
            properties: some_unless(&s.properties, |p| r::SubscribeProperties {
                id: p.subscription_identifier.map(|id| id as usize),
                user_properties: p.user_properties.clone(),
            }),
        }),
        Packet::SubAck(s) => r::Packet::SubAck(r::SubAck {
            pkid: s.pkid,
            return_codes: s
                .return_codes
                .iter()
                .map(|c| to_r_code(SUBACK_CODES, *c))
                .collect(),
            properties: ack_properties_to_r!(SubAckProperties, &s.properties),
        }),
        Packet::Unsubscribe(u) => r::Packet::Unsubscribe(r::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters.clone(),
            properties: (!u.user_properties.is_empty()).then(|| r::UnsubscribeProperties {
                user_properties: u.user_properties.clone(),
            }),
        }),
        Packet::UnsubAck(u) => r::Packet::UnsubAck(r::UnsubAck {
            pkid: u.pkid,
            reasons: u
                .reason_codes
                .iter()
                .map(|c| to_r_code(UNSUBACK_CODES, *c))
                .collect(),
            properties: ack_properties_to_r!(UnsubAckProperties, &u.properties),
        }),
        Packet::PingReq => r::Packet::PingReq(r::PingReq),
        Packet::PingResp => r::Packet::PingResp(r::PingResp),
        Packet::Disconnect(d) => {
            let p = &d.properties;
            let properties = r::DisconnectProperties {
                session_expiry_interval: p.session_expiry_interval,
                reason_string: p.reason_string.clone(),
                user_properties: p.user_properties.clone(),
                server_reference: p.server_reference.clone(),
            };
            r::Packet::Disconnect(r::Disconnect {
                reason_code: r::DisconnectReasonCode::try_from(d.reason.0).unwrap(),
                properties: (*p != DisconnectProperties::default()).then_some(properties),
            })
        }
        Packet::Auth(_) => panic!("rumqttc's Packet has no AUTH"),
    }
}

// ---------------------------------------------------------------- rumqttc → ours

fn users_or_empty<T>(p: &Option<T>, f: impl Fn(&T) -> UserProperties) -> UserProperties {
    p.as_ref().map(f).unwrap_or_default()
}

macro_rules! ack_properties_from_r {
    ($p:expr) => {
        $p.map(|p| AckProperties {
            reason_string: p.reason_string,
            user_properties: p.user_properties,
        })
        .unwrap_or_default()
    };
}

fn from_r(packet: r::Packet) -> Packet {
    match packet {
        r::Packet::Connect(c, will, login) => {
            let (username, password) = match login {
                Some(l) => (
                    (!l.username.is_empty()).then_some(l.username),
                    (!l.password.is_empty()).then(|| Bytes::from(l.password)),
                ),
                None => (None, None),
            };
            let properties = c
                .properties
                .map(|p| ConnectProperties {
                    session_expiry_interval: p.session_expiry_interval,
                    receive_maximum: p.receive_maximum,
                    maximum_packet_size: p.max_packet_size,
                    topic_alias_maximum: p.topic_alias_max,
                    request_response_information: flag_from_r(p.request_response_info),
                    request_problem_information: flag_from_r(p.request_problem_info),
                    user_properties: p.user_properties,
                    authentication_method: p.authentication_method,
                    authentication_data: p.authentication_data,
                })
                .unwrap_or_default();
            Packet::Connect(Connect {
                protocol: Protocol::V5,
                keep_alive: c.keep_alive,
                client_id: c.client_id,
                clean_session: c.clean_start,
                will: will.map(|w| LastWill {
                    topic: utf8(&w.topic),
                    message: w.message,
                    qos: qos_from_r(w.qos),
                    retain: w.retain,
                    properties: w
                        .properties
                        .map(|p| WillProperties {
                            will_delay_interval: p.delay_interval,
                            payload_format_indicator: flag_from_r(p.payload_format_indicator),
                            message_expiry_interval: p.message_expiry_interval,
                            content_type: p.content_type,
                            response_topic: p.response_topic,
                            correlation_data: p.correlation_data,
                            user_properties: p.user_properties,
                        })
                        .unwrap_or_default(),
                }),
                username,
                password,
                properties,
            })
        }
        r::Packet::ConnAck(a) => Packet::ConnAck(ConnAck {
            session_present: a.session_present,
            code: from_r_code(CONNACK_CODES, a.code),
            properties: a
                .properties
                .map(|p| ConnAckProperties {
                    session_expiry_interval: p.session_expiry_interval,
                    receive_maximum: p.receive_max,
                    maximum_qos: p.max_qos.map(|q| QoS::from_u8(q).expect("QoS")),
                    retain_available: flag_from_r(p.retain_available),
                    maximum_packet_size: p.max_packet_size,
                    assigned_client_identifier: p.assigned_client_identifier,
                    topic_alias_maximum: p.topic_alias_max,
                    reason_string: p.reason_string,
                    user_properties: p.user_properties,
                    wildcard_subscription_available: flag_from_r(p.wildcard_subscription_available),
                    subscription_identifiers_available: flag_from_r(
                        p.subscription_identifiers_available,
                    ),
                    shared_subscription_available: flag_from_r(p.shared_subscription_available),
                    server_keep_alive: p.server_keep_alive,
                    response_information: p.response_information,
                    server_reference: p.server_reference,
                    authentication_method: p.authentication_method,
                    authentication_data: p.authentication_data,
                })
                .unwrap_or_default(),
        }),
        r::Packet::Publish(p) => Packet::Publish(Publish {
            dup: p.dup,
            qos: qos_from_r(p.qos),
            retain: p.retain,
            topic: utf8(&p.topic),
            pkid: p.pkid,
            payload: p.payload,
            properties: p
                .properties
                .map(|p| PublishProperties {
                    payload_format_indicator: flag_from_r(p.payload_format_indicator),
                    message_expiry_interval: p.message_expiry_interval,
                    topic_alias: p.topic_alias,
                    response_topic: p.response_topic,
                    correlation_data: p.correlation_data,
                    user_properties: p.user_properties,
                    subscription_identifiers: p
                        .subscription_identifiers
                        .into_iter()
                        .map(|id| u32::try_from(id).unwrap())
                        .collect(),
                    content_type: p.content_type,
                })
                .unwrap_or_default(),
        }),
        r::Packet::PubAck(a) => Packet::PubAck(Ack {
            pkid: a.pkid,
            reason: from_r_code(PUBACK_CODES, a.reason),
            properties: ack_properties_from_r!(a.properties),
        }),
        r::Packet::PubRec(a) => Packet::PubRec(Ack {
            pkid: a.pkid,
            reason: from_r_code(PUBREC_CODES, a.reason),
            properties: ack_properties_from_r!(a.properties),
        }),
        r::Packet::PubRel(a) => Packet::PubRel(Ack {
            pkid: a.pkid,
            reason: from_r_code(PUBREL_CODES, a.reason),
            properties: ack_properties_from_r!(a.properties),
        }),
        r::Packet::PubComp(a) => Packet::PubComp(Ack {
            pkid: a.pkid,
            reason: from_r_code(PUBCOMP_CODES, a.reason),
            properties: ack_properties_from_r!(a.properties),
        }),
        r::Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| SubscribeFilter {
                    filter: f.path,
                    qos: qos_from_r(f.qos),
                    no_local: f.nolocal,
                    retain_as_published: f.preserve_retain,
                    retain_handling: retain_handling_from_r(f.retain_forward_rule),
                })
                .collect(),
            properties: SubscribeProperties {
                subscription_identifier: s
                    .properties
                    .as_ref()
                    .and_then(|p| p.id)
                    .map(|id| u32::try_from(id).unwrap()),
                user_properties: users_or_empty(&s.properties, |p| p.user_properties.clone()),
            },
        }),
        r::Packet::SubAck(s) => Packet::SubAck(SubAck {
            pkid: s.pkid,
            return_codes: s
                .return_codes
                .into_iter()
                .map(|c| from_r_code(SUBACK_CODES, c))
                .collect(),
            properties: ack_properties_from_r!(s.properties),
        }),
        r::Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
            user_properties: users_or_empty(&u.properties, |p| p.user_properties.clone()),
        }),
        r::Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck {
            pkid: u.pkid,
            reason_codes: u
                .reasons
                .into_iter()
                .map(|c| from_r_code(UNSUBACK_CODES, c))
                .collect(),
            properties: ack_properties_from_r!(u.properties),
        }),
        r::Packet::PingReq(_) => Packet::PingReq,
        r::Packet::PingResp(_) => Packet::PingResp,
        r::Packet::Disconnect(d) => Packet::Disconnect(Disconnect {
            reason: ReasonCode(d.reason_code as u8),
            properties: d
                .properties
                .map(|p| DisconnectProperties {
                    session_expiry_interval: p.session_expiry_interval,
                    reason_string: p.reason_string,
                    user_properties: p.user_properties,
                    server_reference: p.server_reference,
                })
                .unwrap_or_default(),
        }),
        r::Packet::Auth(_) => panic!("not generated"),
    }
}

// ---------------------------------------------------------------- generators

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn pkid() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn text(min: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[^\u{0}]{{{min},16}}")).unwrap()
}

fn binary(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn topic_name() -> impl Strategy<Value = String> {
    "[^\u{0}+#]{1,20}"
}

fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![Just("+".to_owned()), "[^\u{0}+#/]{0,6}"];
    (vec(level, 1..4), any::<bool>())
        .prop_map(|(levels, multi)| {
            let mut filter = levels.join("/");
            if multi {
                filter.push_str("/#");
            }
            filter
        })
        .prop_filter("valid filter", |f| is_valid_topic_filter(f))
}

fn users() -> impl Strategy<Value = UserProperties> {
    vec((text(0), text(0)), 0..3)
}

fn subscription_identifier() -> impl Strategy<Value = u32> {
    prop_oneof![1..=127u32, 128..=16_383u32, 16_384..=268_435_455u32]
}

fn authentication() -> impl Strategy<Value = (Option<String>, Option<Bytes>)> {
    of((text(0), of(binary(16)))).prop_map(|auth| match auth {
        Some((method, data)) => (Some(method), data),
        None => (None, None),
    })
}

fn connect() -> impl Strategy<Value = Connect> {
    let properties = (
        of(any::<u32>()),
        of(1..=u16::MAX),
        of(1..=u32::MAX),
        of(any::<u16>()),
        of(any::<bool>()),
        of(any::<bool>()),
        users(),
        authentication(),
    )
        .prop_map(
            |(session, receive, size, alias, response, problem, users, auth)| ConnectProperties {
                session_expiry_interval: session,
                receive_maximum: receive,
                maximum_packet_size: size,
                topic_alias_maximum: alias,
                request_response_information: response,
                request_problem_information: problem,
                user_properties: users,
                authentication_method: auth.0,
                authentication_data: auth.1,
            },
        );
    let will_properties = (
        of(any::<u32>()),
        of(any::<bool>()),
        of(any::<u32>()),
        of(text(0)),
        of(topic_name()),
        of(binary(16)),
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
        );
    let will = (
        topic_name(),
        binary(40),
        qos(),
        any::<bool>(),
        will_properties,
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
        text(0),
        any::<bool>(),
        of(will),
        of(text(1)),
        of(text(1).prop_map(Bytes::from)),
        properties,
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

fn connack() -> impl Strategy<Value = ConnAck> {
    let first = (
        of(any::<u32>()),
        of(1..=u16::MAX),
        of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        of(any::<bool>()),
        of(1..=u32::MAX),
        of(text(0)),
        of(any::<u16>()),
        of(text(0)),
        users(),
    );
    let second = (
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<u16>()),
        of(text(0)),
        of(text(0)),
        authentication(),
    );
    let properties = (first, second).prop_map(
        |(
            (session, receive, max_qos, retain, size, assigned, alias, reason, users),
            (wildcard, sub_ids, shared, keep_alive, response, reference, auth),
        )| ConnAckProperties {
            session_expiry_interval: session,
            receive_maximum: receive,
            maximum_qos: max_qos,
            retain_available: retain,
            maximum_packet_size: size,
            assigned_client_identifier: assigned,
            topic_alias_maximum: alias,
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
    );
    let properties = prop_oneof![Just(ConnAckProperties::default()), properties];
    (any::<bool>(), codes(CONNACK_CODES), properties).prop_map(
        |(session_present, code, properties)| ConnAck {
            session_present,
            code,
            properties,
        },
    )
}

fn publish() -> impl Strategy<Value = Publish> {
    let properties = (
        of(any::<bool>()),
        of(any::<u32>()),
        of(any::<u16>()),
        of(topic_name()),
        of(binary(16)),
        users(),
        // At most two: rumqttc miscounts more (see the module doc).
        vec(subscription_identifier(), 0..=2),
        of(text(0)),
    )
        .prop_map(
            |(format, expiry, alias, response_topic, correlation, users, ids, content_type)| {
                PublishProperties {
                    payload_format_indicator: format,
                    message_expiry_interval: expiry,
                    topic_alias: alias,
                    response_topic,
                    correlation_data: correlation,
                    user_properties: users,
                    subscription_identifiers: ids,
                    content_type,
                }
            },
        );
    let properties = prop_oneof![Just(PublishProperties::default()), properties];
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![4 => topic_name(), 1 => Just(String::new())],
        pkid(),
        binary(300),
        properties,
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
        Just(AckProperties::default()),
        (of(text(0)), users()).prop_map(|(reason_string, user_properties)| AckProperties {
            reason_string,
            user_properties,
        }),
    ]
}

fn ack<T: Copy + 'static>(table: &'static [(u8, T)]) -> impl Strategy<Value = Ack> {
    (pkid(), codes(table), ack_properties()).prop_map(|(pkid, reason, properties)| Ack {
        pkid,
        reason,
        properties,
    })
}

fn subscribe() -> impl Strategy<Value = Subscribe> {
    let retain_handling = prop_oneof![
        Just(RetainHandling::OnSubscribe),
        Just(RetainHandling::OnNewSubscribe),
        Just(RetainHandling::Never),
    ];
    let filter = (
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
        );
    (
        pkid(),
        vec(filter, 1..5),
        of(subscription_identifier()),
        users(),
    )
        .prop_map(|(pkid, filters, id, user_properties)| Subscribe {
            pkid,
            filters,
            properties: SubscribeProperties {
                subscription_identifier: id,
                user_properties,
            },
        })
}

fn disconnect() -> impl Strategy<Value = Disconnect> {
    let properties = (of(any::<u32>()), of(text(0)), users(), of(text(0))).prop_map(
        |(session, reason_string, user_properties, server_reference)| DisconnectProperties {
            session_expiry_interval: session,
            reason_string,
            user_properties,
            server_reference,
        },
    );
    let properties = prop_oneof![Just(DisconnectProperties::default()), properties];
    let reason = prop_oneof![
        Just(ReasonCode::NORMAL_DISCONNECTION),
        proptest::sample::select(DISCONNECT_CODES).prop_map(ReasonCode)
    ];
    (reason, properties).prop_map(|(reason, properties)| Disconnect { reason, properties })
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect().prop_map(Packet::Connect),
        connack().prop_map(Packet::ConnAck),
        publish().prop_map(Packet::Publish),
        ack(PUBACK_CODES).prop_map(Packet::PubAck),
        ack(PUBREC_CODES).prop_map(Packet::PubRec),
        ack(PUBREL_CODES).prop_map(Packet::PubRel),
        ack(PUBCOMP_CODES).prop_map(Packet::PubComp),
        subscribe().prop_map(Packet::Subscribe),
        (pkid(), vec(codes(SUBACK_CODES), 1..5), ack_properties()).prop_map(
            |(pkid, return_codes, properties)| Packet::SubAck(SubAck {
                pkid,
                return_codes,
                properties,
            })
        ),
        (pkid(), vec(topic_filter(), 1..5), users()).prop_map(
            |(pkid, filters, user_properties)| Packet::Unsubscribe(Unsubscribe {
                pkid,
                filters,
                user_properties,
            })
        ),
        (pkid(), vec(codes(UNSUBACK_CODES), 1..5), ack_properties()).prop_map(
            |(pkid, reason_codes, properties)| Packet::UnsubAck(UnsubAck {
                pkid,
                reason_codes,
                properties,
            })
        ),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect().prop_map(Packet::Disconnect),
    ]
}

/// Our short DISCONNECT forms, which rumqttc cannot read.
fn is_short_disconnect(packet: &Packet) -> bool {
    matches!(packet, Packet::Disconnect(d) if d.properties == DisconnectProperties::default())
}

/// A DISCONNECT with a reason code but no properties, which rumqttc cannot write.
fn is_reason_only_disconnect(packet: &Packet) -> bool {
    is_short_disconnect(packet)
        && !matches!(packet, Packet::Disconnect(d) if d.reason == ReasonCode::NORMAL_DISCONNECTION)
}

/// Packets both sides write with the same bytes: all but the two short forms where
/// rumqttc adds an empty property list.
fn same_bytes_expected(packet: &Packet) -> bool {
    match packet {
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.reason == ReasonCode::SUCCESS || !a.properties.is_empty()
        }
        Packet::Disconnect(d) => {
            d.reason == ReasonCode::NORMAL_DISCONNECTION
                || d.properties != DisconnectProperties::default()
        }
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn rumqttc_reads_what_we_write(packet in packet()) {
        prop_assume!(!is_short_disconnect(&packet));
        let mut buf = BytesMut::new();
        encode(&packet, &mut buf, Protocol::V5).unwrap();
        let theirs = r::Packet::read(&mut buf, None).unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(from_r(theirs), packet);
    }

    #[test]
    fn we_read_what_rumqttc_writes(packet in packet()) {
        prop_assume!(!is_reason_only_disconnect(&packet));
        let mut buf = BytesMut::new();
        let theirs = to_r(&packet);
        let written = theirs.write(&mut buf, None).unwrap();
        prop_assert_eq!(written, buf.len());
        let ours = decode(&mut buf, MAX, Protocol::V5).unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(ours, Some(packet));
    }

    #[test]
    fn both_write_the_same_bytes(packet in packet()) {
        prop_assume!(same_bytes_expected(&packet) && !is_reason_only_disconnect(&packet));
        let mut ours = BytesMut::new();
        encode(&packet, &mut ours, Protocol::V5).unwrap();
        let mut theirs = BytesMut::new();
        to_r(&packet).write(&mut theirs, None).unwrap();
        prop_assert_eq!(ours, theirs);
    }
}

#[test]
fn known_differences() {
    // rumqttc cannot read our short DISCONNECTs.
    let read = |bytes: &[u8]| r::Packet::read(&mut BytesMut::from(bytes), None);
    assert!(matches!(
        read(&[0xE0, 0]),
        Err(rumqttc::v5::mqttbytes::Error::PayloadRequired)
    ));
    assert!(matches!(
        read(&[0xE0, 1, 0x8E]),
        Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_))
    ));
    // What we write for them is what MQTT 5 says, and what rumqttc writes for Normal.
    let mut buf = BytesMut::new();
    encode(&Packet::disconnect(), &mut buf, Protocol::V5).unwrap();
    let mut theirs = BytesMut::new();
    r::Packet::Disconnect(r::Disconnect::new(
        r::DisconnectReasonCode::NormalDisconnection,
    ))
    .write(&mut theirs, None)
    .unwrap();
    assert_eq!(buf, theirs);

    // rumqttc frames a reason code without properties one byte short, or, given empty
    // properties, writes Normal disconnection instead.
    let mut empty = r::Disconnect::new(r::DisconnectReasonCode::SessionTakenOver);
    empty.properties = Some(r::DisconnectProperties {
        session_expiry_interval: None,
        reason_string: None,
        user_properties: vec![],
        server_reference: None,
    });
    let mut theirs = BytesMut::new();
    r::Packet::Disconnect(empty)
        .write(&mut theirs, None)
        .unwrap();
    assert_eq!(&theirs[..], [0xE0, 0]);
    let mut theirs = BytesMut::new();
    r::Packet::Disconnect(r::Disconnect::new(
        r::DisconnectReasonCode::SessionTakenOver,
    ))
    .write(&mut theirs, None)
    .unwrap();
    assert_eq!(&theirs[..], [0xE0, 1, 0x8E, 0]);
    assert_eq!(
        decode(&mut theirs, MAX, Protocol::V5),
        Ok(Some(Packet::Disconnect(Disconnect::new(
            ReasonCode::SESSION_TAKEN_OVER
        ))))
    );
    assert_eq!(
        decode(&mut theirs, MAX, Protocol::V5),
        Err(DecodeError::InvalidPacketType(0))
    );

    // rumqttc miscounts Subscription Identifiers: with three and an empty Content Type,
    // the Content Type is read as payload.
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t".into(),
        pkid: 0,
        payload: Bytes::from_static(b"p"),
        properties: PublishProperties {
            subscription_identifiers: vec![1, 2, 3],
            content_type: Some(String::new()),
            ..PublishProperties::default()
        },
    };
    let mut buf = BytesMut::new();
    encode(&Packet::Publish(publish.clone()), &mut buf, Protocol::V5).unwrap();
    let Ok(r::Packet::Publish(theirs)) = r::Packet::read(&mut buf.clone(), None) else {
        panic!("rumqttc did not read the PUBLISH")
    };
    let properties = theirs.properties.unwrap();
    assert_eq!(properties.subscription_identifiers, [1, 2, 3]);
    assert_eq!(properties.content_type, None);
    assert_eq!(&theirs.payload[..], [0x03, 0, 0, b'p']);
    // We read it as written.
    assert_eq!(
        decode(&mut buf, MAX, Protocol::V5),
        Ok(Some(Packet::Publish(publish)))
    );

    // AUTH is not in rumqttc's Packet.
    assert!(matches!(
        read(&[0xF0, 0x02, 0x18, 0x00]),
        Err(rumqttc::v5::mqttbytes::Error::InvalidPacketType(15))
    ));

    // rumqttc is laxer: two Topic Aliases and a wildcard topic.
    let lax = [0x30, 11, 0, 1, b'#', 6, 0x23, 0, 1, 0x23, 0, 2, b'p'];
    assert!(matches!(read(&lax), Ok(r::Packet::Publish(_))));
    assert_eq!(
        decode(&mut BytesMut::from(&lax[..]), MAX, Protocol::V5),
        Err(DecodeError::WildcardInTopicName("#".into()))
    );
    let mut duplicate = lax;
    duplicate[4] = b't';
    assert_eq!(
        decode(&mut BytesMut::from(&duplicate[..]), MAX, Protocol::V5),
        Err(DecodeError::DuplicateProperty { property: 0x23 })
    );
    // Receive Maximum 0 in CONNECT.
    let connect = [
        0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 0, 3, 0x21, 0, 0, 0, 0,
    ];
    assert!(matches!(read(&connect), Ok(r::Packet::Connect(..))));
    assert_eq!(
        decode(&mut BytesMut::from(&connect[..]), MAX, Protocol::V5),
        Err(DecodeError::InvalidPropertyValue {
            property: 0x21,
            value: 0
        })
    );

    // A PUBACK with a reason and no properties: 3 bytes from us, 4 from rumqttc, and each
    // reads the other's.
    let mut ack = Ack::new(1);
    ack.reason = ReasonCode::NO_MATCHING_SUBSCRIBERS;
    let mut ours = BytesMut::new();
    encode(&Packet::PubAck(ack.clone()), &mut ours, Protocol::V5).unwrap();
    assert_eq!(&ours[..], [0x40, 3, 0, 1, 0x10]);
    let mut theirs = BytesMut::new();
    to_r(&Packet::PubAck(ack.clone()))
        .write(&mut theirs, None)
        .unwrap();
    assert_eq!(&theirs[..], [0x40, 4, 0, 1, 0x10, 0]);
    assert_eq!(
        from_r(r::Packet::read(&mut ours, None).unwrap()),
        Packet::PubAck(ack.clone())
    );
    assert_eq!(
        decode(&mut theirs, MAX, Protocol::V5),
        Ok(Some(Packet::PubAck(ack)))
    );
}

#[test]
fn password_without_username_both_ways() {
    let connect = Packet::Connect(Connect {
        protocol: Protocol::V5,
        keep_alive: 30,
        client_id: "c".into(),
        clean_session: true,
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"secret")),
        properties: ConnectProperties::default(),
    });
    let mut ours = BytesMut::new();
    encode(&connect, &mut ours, Protocol::V5).unwrap();
    let mut theirs = BytesMut::new();
    to_r(&connect).write(&mut theirs, None).unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(from_r(r::Packet::read(&mut ours, None).unwrap()), connect);
    assert_eq!(decode(&mut theirs, MAX, Protocol::V5), Ok(Some(connect)));
}
