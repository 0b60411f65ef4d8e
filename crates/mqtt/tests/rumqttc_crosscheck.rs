//! Cross-check against an independent implementation: rumqttc 0.25's v4 codec must read
//! what we write and we must read what it writes, to the same packet.
//!
//! Generated packets stay within what both models can express: MQTT 3.1.1 only, UTF-8
//! non-empty passwords (rumqttc keeps them as `String`), a username whenever there is a
//! login (rumqttc drops empty credentials), no DUP on QoS 0, CONNACK codes that have a
//! 3.1.1 return code, SUBACK failure 0x80 only. The MQTT 5 counterpart is
//! `rumqttc_crosscheck_v5.rs`.

use bytes::{Bytes, BytesMut};
use mqtt::*;
use proptest::collection::vec;
use proptest::prelude::*;
use rumqttc::mqttbytes::v4 as r;
use rumqttc::mqttbytes::{Protocol as RProtocol, QoS as RQoS};

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

fn code_to_r(code: ReasonCode) -> r::ConnectReturnCode {
    match code {
        ReasonCode::SUCCESS => r::ConnectReturnCode::Success,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => r::ConnectReturnCode::RefusedProtocolVersion,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => r::ConnectReturnCode::BadClientId,
        ReasonCode::SERVER_UNAVAILABLE => r::ConnectReturnCode::ServiceUnavailable,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD => r::ConnectReturnCode::BadUserNamePassword,
        ReasonCode::NOT_AUTHORIZED => r::ConnectReturnCode::NotAuthorized,
        other => panic!("no 3.1.1 return code for {other}"),
    }
}

fn code_from_r(code: r::ConnectReturnCode) -> ReasonCode {
    match code {
        r::ConnectReturnCode::Success => ReasonCode::SUCCESS,
        r::ConnectReturnCode::RefusedProtocolVersion => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        r::ConnectReturnCode::BadClientId => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        r::ConnectReturnCode::ServiceUnavailable => ReasonCode::SERVER_UNAVAILABLE,
        r::ConnectReturnCode::BadUserNamePassword => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        r::ConnectReturnCode::NotAuthorized => ReasonCode::NOT_AUTHORIZED,
    }
}

fn to_r(packet: &Packet) -> r::Packet {
    match packet {
        Packet::Connect(c) => {
            assert_eq!(
                c.protocol,
                Protocol::V311,
                "rumqttc v4 writes MQTT 3.1.1 only"
            );
            r::Packet::Connect(r::Connect {
                protocol: RProtocol::V4,
                keep_alive: c.keep_alive,
                client_id: c.client_id.clone(),
                clean_session: c.clean_session,
                last_will: c.will.as_ref().map(|w| r::LastWill {
                    topic: w.topic.clone(),
                    message: w.message.clone(),
                    qos: qos_to_r(w.qos),
                    retain: w.retain,
                }),
                login: c.username.as_ref().map(|username| r::Login {
                    username: username.clone(),
                    password: c
                        .password
                        .as_ref()
                        .map(|p| String::from_utf8(p.to_vec()).expect("UTF-8 password"))
                        .unwrap_or_default(),
                }),
            })
        }
        Packet::ConnAck(a) => r::Packet::ConnAck(r::ConnAck {
            session_present: a.session_present,
            code: code_to_r(a.code),
        }),
        Packet::Publish(p) => r::Packet::Publish(r::Publish {
            dup: p.dup,
            qos: qos_to_r(p.qos),
            retain: p.retain,
            topic: p.topic.clone(),
            pkid: p.pkid,
            payload: p.payload.clone(),
        }),
        Packet::PubAck(a) => r::Packet::PubAck(r::PubAck { pkid: a.pkid }),
        Packet::PubRec(a) => r::Packet::PubRec(r::PubRec { pkid: a.pkid }),
        Packet::PubRel(a) => r::Packet::PubRel(r::PubRel { pkid: a.pkid }),
        Packet::PubComp(a) => r::Packet::PubComp(r::PubComp { pkid: a.pkid }),
        Packet::Subscribe(s) => r::Packet::Subscribe(r::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .iter()
                .map(|f| r::SubscribeFilter {
                    path: f.filter.clone(),
                    qos: qos_to_r(f.qos),
                })
                .collect(),
        }),
        Packet::SubAck(s) => r::Packet::SubAck(r::SubAck {
            pkid: s.pkid,
            return_codes: s
                .return_codes
                .iter()
                .map(|c| match QoS::from_u8(c.0) {
                    Some(qos) => r::SubscribeReasonCode::Success(qos_to_r(qos)),
                    None => r::SubscribeReasonCode::Failure,
                })
                .collect(),
        }),
        Packet::Unsubscribe(u) => r::Packet::Unsubscribe(r::Unsubscribe {
            pkid: u.pkid,
            topics: u.filters.clone(),
        }),
        Packet::UnsubAck(u) => r::Packet::UnsubAck(r::UnsubAck { pkid: u.pkid }),
        Packet::PingReq => r::Packet::PingReq,
        Packet::PingResp => r::Packet::PingResp,
        Packet::Disconnect(_) => r::Packet::Disconnect,
        Packet::Auth(_) => panic!("AUTH is MQTT 5 only"),
    }
}

fn from_r(packet: r::Packet) -> Packet {
    match packet {
        r::Packet::Connect(c) => {
            assert_eq!(c.protocol, RProtocol::V4);
            let (username, password) = match c.login {
                Some(login) => (
                    Some(login.username),
                    (!login.password.is_empty()).then(|| Bytes::from(login.password)),
                ),
                None => (None, None),
            };
            Packet::Connect(Connect {
                protocol: Protocol::V311,
                keep_alive: c.keep_alive,
                client_id: c.client_id,
                clean_session: c.clean_session,
                will: c.last_will.map(|w| LastWill {
                    topic: w.topic,
                    message: w.message,
                    qos: qos_from_r(w.qos),
                    retain: w.retain,
                    properties: WillProperties::default(),
                }),
                username,
                password,
                properties: ConnectProperties::default(),
            })
        }
        r::Packet::ConnAck(a) => {
            Packet::ConnAck(ConnAck::new(a.session_present, code_from_r(a.code)))
        }
        r::Packet::Publish(p) => Packet::Publish(Publish {
            dup: p.dup,
            qos: qos_from_r(p.qos),
            retain: p.retain,
            topic: p.topic,
            pkid: p.pkid,
            payload: p.payload,
            properties: PublishProperties::default(),
        }),
        r::Packet::PubAck(a) => Packet::PubAck(Ack::new(a.pkid)),
        r::Packet::PubRec(a) => Packet::PubRec(Ack::new(a.pkid)),
        r::Packet::PubRel(a) => Packet::PubRel(Ack::new(a.pkid)),
        r::Packet::PubComp(a) => Packet::PubComp(Ack::new(a.pkid)),
        r::Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| SubscribeFilter::new(f.path, qos_from_r(f.qos)))
                .collect(),
            properties: SubscribeProperties::default(),
        }),
        r::Packet::SubAck(s) => Packet::SubAck(SubAck {
            pkid: s.pkid,
            return_codes: s
                .return_codes
                .into_iter()
                .map(|c| match c {
                    r::SubscribeReasonCode::Success(qos) => ReasonCode::granted(qos_from_r(qos)),
                    r::SubscribeReasonCode::Failure => ReasonCode::UNSPECIFIED_ERROR,
                })
                .collect(),
            properties: AckProperties::default(),
        }),
        r::Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
            user_properties: UserProperties::new(),
        }),
        r::Packet::UnsubAck(a) => Packet::UnsubAck(UnsubAck {
            pkid: a.pkid,
            reason_codes: vec![],
            properties: AckProperties::default(),
        }),
        r::Packet::PingReq => Packet::PingReq,
        r::Packet::PingResp => Packet::PingResp,
        r::Packet::Disconnect => Packet::disconnect(),
    }
}

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
    proptest::string::string_regex(&format!("[^\u{0}]{{{min},20}}")).unwrap()
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
    let login = proptest::option::of((text(1), proptest::option::of(text(1))));
    (
        any::<u16>(),
        text(0),
        any::<bool>(),
        proptest::option::of(will),
        login,
    )
        .prop_map(|(keep_alive, client_id, clean_session, will, login)| {
            let (username, password) = match login {
                Some((user, password)) => (Some(user), password.map(Bytes::from)),
                None => (None, None),
            };
            Connect {
                protocol: Protocol::V311,
                keep_alive,
                client_id,
                clean_session,
                will,
                username,
                password,
                properties: ConnectProperties::default(),
            }
        })
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        pkid(),
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
    let code = prop_oneof![
        Just(ReasonCode::SUCCESS),
        Just(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        Just(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        Just(ReasonCode::SERVER_UNAVAILABLE),
        Just(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        Just(ReasonCode::NOT_AUTHORIZED),
    ];
    let return_code = prop_oneof![
        qos().prop_map(ReasonCode::granted),
        Just(ReasonCode::UNSPECIFIED_ERROR)
    ];
    let subscribe_filter =
        (topic_filter(), qos()).prop_map(|(f, qos)| SubscribeFilter::new(f, qos));
    prop_oneof![
        connect().prop_map(Packet::Connect),
        (any::<bool>(), code).prop_map(|(session_present, code)| Packet::ConnAck(ConnAck::new(
            session_present,
            code
        ))),
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
    fn rumqttc_reads_what_we_write(packet in packet()) {
        let mut buf = BytesMut::new();
        encode(&packet, &mut buf, Protocol::V311).unwrap();
        let theirs = r::Packet::read(&mut buf, MAX).unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(from_r(theirs), packet);
    }

    #[test]
    fn we_read_what_rumqttc_writes(packet in packet()) {
        let mut buf = BytesMut::new();
        to_r(&packet).write(&mut buf, MAX).unwrap();
        let ours = decode(&mut buf, MAX, Protocol::V311).unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(ours, Some(packet));
    }

    #[test]
    fn both_write_the_same_bytes(packet in packet()) {
        let mut ours = BytesMut::new();
        encode(&packet, &mut ours, Protocol::V311).unwrap();
        let mut theirs = BytesMut::new();
        to_r(&packet).write(&mut theirs, MAX).unwrap();
        prop_assert_eq!(ours, theirs);
    }
}
