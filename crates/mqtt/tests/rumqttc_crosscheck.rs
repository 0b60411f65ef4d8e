//! Cross-check against an independent implementation: rumqttc 0.25's v4 codec must read
//! what we write and we must read what it writes, to the same packet.
//!
//! Generated packets stay within what both models can express: MQTT 3.1.1 only, UTF-8
//! non-empty passwords (rumqttc keeps them as `String`), a username whenever there is a
//! login (rumqttc drops empty credentials), no DUP on QoS 0.

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

fn code_to_r(code: ConnectReturnCode) -> r::ConnectReturnCode {
    match code {
        ConnectReturnCode::Accepted => r::ConnectReturnCode::Success,
        ConnectReturnCode::UnacceptableProtocolVersion => {
            r::ConnectReturnCode::RefusedProtocolVersion
        }
        ConnectReturnCode::IdentifierRejected => r::ConnectReturnCode::BadClientId,
        ConnectReturnCode::ServerUnavailable => r::ConnectReturnCode::ServiceUnavailable,
        ConnectReturnCode::BadUserNameOrPassword => r::ConnectReturnCode::BadUserNamePassword,
        ConnectReturnCode::NotAuthorized => r::ConnectReturnCode::NotAuthorized,
    }
}

fn code_from_r(code: r::ConnectReturnCode) -> ConnectReturnCode {
    match code {
        r::ConnectReturnCode::Success => ConnectReturnCode::Accepted,
        r::ConnectReturnCode::RefusedProtocolVersion => {
            ConnectReturnCode::UnacceptableProtocolVersion
        }
        r::ConnectReturnCode::BadClientId => ConnectReturnCode::IdentifierRejected,
        r::ConnectReturnCode::ServiceUnavailable => ConnectReturnCode::ServerUnavailable,
        r::ConnectReturnCode::BadUserNamePassword => ConnectReturnCode::BadUserNameOrPassword,
        r::ConnectReturnCode::NotAuthorized => ConnectReturnCode::NotAuthorized,
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
        Packet::PubAck(pkid) => r::Packet::PubAck(r::PubAck { pkid: *pkid }),
        Packet::PubRec(pkid) => r::Packet::PubRec(r::PubRec { pkid: *pkid }),
        Packet::PubRel(pkid) => r::Packet::PubRel(r::PubRel { pkid: *pkid }),
        Packet::PubComp(pkid) => r::Packet::PubComp(r::PubComp { pkid: *pkid }),
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
                .map(|c| match c {
                    SubscribeReturnCode::Success(qos) => {
                        r::SubscribeReasonCode::Success(qos_to_r(*qos))
                    }
                    SubscribeReturnCode::Failure => r::SubscribeReasonCode::Failure,
                })
                .collect(),
        }),
        Packet::Unsubscribe(u) => r::Packet::Unsubscribe(r::Unsubscribe {
            pkid: u.pkid,
            topics: u.filters.clone(),
        }),
        Packet::UnsubAck(pkid) => r::Packet::UnsubAck(r::UnsubAck { pkid: *pkid }),
        Packet::PingReq => r::Packet::PingReq,
        Packet::PingResp => r::Packet::PingResp,
        Packet::Disconnect => r::Packet::Disconnect,
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
                }),
                username,
                password,
            })
        }
        r::Packet::ConnAck(a) => Packet::ConnAck(ConnAck {
            session_present: a.session_present,
            code: code_from_r(a.code),
        }),
        r::Packet::Publish(p) => Packet::Publish(Publish {
            dup: p.dup,
            qos: qos_from_r(p.qos),
            retain: p.retain,
            topic: p.topic,
            pkid: p.pkid,
            payload: p.payload,
        }),
        r::Packet::PubAck(a) => Packet::PubAck(a.pkid),
        r::Packet::PubRec(a) => Packet::PubRec(a.pkid),
        r::Packet::PubRel(a) => Packet::PubRel(a.pkid),
        r::Packet::PubComp(a) => Packet::PubComp(a.pkid),
        r::Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| SubscribeFilter {
                    filter: f.path,
                    qos: qos_from_r(f.qos),
                })
                .collect(),
        }),
        r::Packet::SubAck(s) => Packet::SubAck(SubAck {
            pkid: s.pkid,
            return_codes: s
                .return_codes
                .into_iter()
                .map(|c| match c {
                    r::SubscribeReasonCode::Success(qos) => {
                        SubscribeReturnCode::Success(qos_from_r(qos))
                    }
                    r::SubscribeReasonCode::Failure => SubscribeReturnCode::Failure,
                })
                .collect(),
        }),
        r::Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        }),
        r::Packet::UnsubAck(a) => Packet::UnsubAck(a.pkid),
        r::Packet::PingReq => Packet::PingReq,
        r::Packet::PingResp => Packet::PingResp,
        r::Packet::Disconnect => Packet::Disconnect,
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
            }
        })
}

fn packet() -> impl Strategy<Value = Packet> {
    let code = prop_oneof![
        Just(ConnectReturnCode::Accepted),
        Just(ConnectReturnCode::UnacceptableProtocolVersion),
        Just(ConnectReturnCode::IdentifierRejected),
        Just(ConnectReturnCode::ServerUnavailable),
        Just(ConnectReturnCode::BadUserNameOrPassword),
        Just(ConnectReturnCode::NotAuthorized),
    ];
    let return_code = prop_oneof![
        qos().prop_map(SubscribeReturnCode::Success),
        Just(SubscribeReturnCode::Failure)
    ];
    let subscribe_filter =
        (topic_filter(), qos()).prop_map(|(filter, qos)| SubscribeFilter { filter, qos });
    prop_oneof![
        connect().prop_map(Packet::Connect),
        (any::<bool>(), code).prop_map(|(session_present, code)| {
            Packet::ConnAck(ConnAck {
                session_present,
                code,
            })
        }),
        publish().prop_map(Packet::Publish),
        pkid().prop_map(Packet::PubAck),
        pkid().prop_map(Packet::PubRec),
        pkid().prop_map(Packet::PubRel),
        pkid().prop_map(Packet::PubComp),
        (pkid(), vec(subscribe_filter, 1..5))
            .prop_map(|(pkid, filters)| Packet::Subscribe(Subscribe { pkid, filters })),
        (pkid(), vec(return_code, 1..5))
            .prop_map(|(pkid, return_codes)| Packet::SubAck(SubAck { pkid, return_codes })),
        (pkid(), vec(topic_filter(), 1..5))
            .prop_map(|(pkid, filters)| Packet::Unsubscribe(Unsubscribe { pkid, filters })),
        pkid().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn rumqttc_reads_what_we_write(packet in packet()) {
        let mut buf = BytesMut::new();
        encode(&packet, &mut buf).unwrap();
        let theirs = r::Packet::read(&mut buf, MAX).unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(from_r(theirs), packet);
    }

    #[test]
    fn we_read_what_rumqttc_writes(packet in packet()) {
        let mut buf = BytesMut::new();
        to_r(&packet).write(&mut buf, MAX).unwrap();
        let ours = decode(&mut buf, MAX).unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(ours, Some(packet));
    }

    #[test]
    fn both_write_the_same_bytes(packet in packet()) {
        let mut ours = BytesMut::new();
        encode(&packet, &mut ours).unwrap();
        let mut theirs = BytesMut::new();
        to_r(&packet).write(&mut theirs, MAX).unwrap();
        prop_assert_eq!(ours, theirs);
    }
}
