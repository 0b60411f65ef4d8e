//! The packet handlers against a real broker (in memory, or durable on a temporary
//! directory), with no socket: bytes in, packets out.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use iot::lifecycle::DisconnectReason;
use mqtt::{
    Ack, AckProperties, ConnAck, Connect, LastWill, Packet, Protocol, Publish, QoS, ReasonCode,
    SubAck, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe,
};

use super::{Ending, Online, PacketHandler};
use crate::auth::Identity;
use crate::broker::Broker;
use crate::config::Config;

/// A policy that allows everything but publishing to `forbidden/…`.
const POLICY: &str = r#"
[anonymous]
policies = ["test"]
[[policies]]
name = "test"
document = '''{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
  {"Effect": "Deny", "Action": ["iot:Publish", "iot:Subscribe"], "Resource": ["arn:aws:iot:*:*:topic/forbidden/*", "arn:aws:iot:*:*:topicfilter/forbidden/*"]}
]}'''
"#;

fn broker_with(extra: &str) -> Arc<Broker> {
    let dir = tempfile::tempdir().unwrap().keep();
    let text = format!(
        "data_dir = {:?}\nin_memory = true\n{extra}\n{POLICY}",
        dir.display().to_string()
    );
    Broker::new(Config::parse(&text).unwrap()).unwrap()
}

fn broker() -> Arc<Broker> {
    broker_with("[limits]\nconnects_per_client_id_per_sec = 0")
}

fn durable_broker() -> Arc<Broker> {
    let dir = tempfile::tempdir().unwrap().keep();
    let text = format!(
        "data_dir = {:?}\nin_memory = false\n{POLICY}",
        dir.display().to_string()
    );
    Broker::new(Config::parse(&text).unwrap()).unwrap()
}

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn connect(client_id: &str, clean_session: bool) -> Connect {
    Connect {
        protocol: Protocol::V311,
        keep_alive: 60,
        client_id: client_id.into(),
        clean_session,
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    }
}

fn publish(topic: &str, qos: QoS, pkid: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        pkid,
        payload: Bytes::from_static(b"hello"),
        properties: Default::default(),
    })
}

fn subscribe(pkid: u16, filters: &[(&str, QoS)]) -> Packet {
    Packet::Subscribe(Subscribe {
        pkid,
        filters: filters
            .iter()
            .map(|(filter, qos)| SubscribeFilter::new(*filter, *qos))
            .collect(),
        properties: Default::default(),
    })
}

/// Everything the handler queued for the socket, decoded, and the output emptied.
fn written(handler: &mut PacketHandler) -> Vec<Packet> {
    let mut output = std::mem::take(&mut handler.output);
    let mut packets = Vec::new();
    while let Some(packet) = mqtt::decode(&mut output, 1 << 20, handler.protocol).unwrap() {
        packets.push(packet);
    }
    assert!(output.is_empty(), "a partial packet was queued");
    packets
}

/// A connected client: its handler and state, CONNACK taken out of the output.
fn connected(broker: &Arc<Broker>, client_id: &str, clean: bool) -> (PacketHandler, Online) {
    let mut handler = PacketHandler::new(broker.clone(), peer());
    let admitted = handler
        .admit(connect(client_id, clean), &Identity::Anonymous, None)
        .expect("admitted");
    handler.go_online(&admitted.online);
    let packets = written(&mut handler);
    assert!(matches!(
        packets[0],
        Packet::ConnAck(ConnAck {
            code: ReasonCode::SUCCESS,
            ..
        })
    ));
    (handler, admitted.online)
}

fn received_topics(handler: &mut PacketHandler, online: &mut Online) -> Vec<String> {
    handler.fill_output(online);
    written(handler)
        .into_iter()
        .filter_map(|packet| match packet {
            Packet::Publish(publish) => Some(publish.topic),
            _ => None,
        })
        .collect()
}

#[test]
fn connect_is_answered_with_connack_and_session_present_on_resume() {
    let broker = broker();
    let mut handler = PacketHandler::new(broker.clone(), peer());
    let admitted = handler
        .admit(connect("c", false), &Identity::Anonymous, None)
        .unwrap();
    assert_eq!(
        written(&mut handler),
        vec![Packet::ConnAck(ConnAck::new(false, ReasonCode::SUCCESS))]
    );
    handler.close(
        &admitted.online,
        Ending::abnormal(DisconnectReason::ConnectionLost),
    );
    let mut again = PacketHandler::new(broker, peer());
    again
        .admit(connect("c", false), &Identity::Anonymous, None)
        .unwrap();
    assert_eq!(
        written(&mut again),
        vec![Packet::ConnAck(ConnAck::new(true, ReasonCode::SUCCESS))]
    );
}

#[test]
fn connect_over_the_throttle_gets_server_unavailable() {
    let broker = broker_with("[limits]\nconnects_per_client_id_per_sec = 1");
    let (_first, _online) = connected(&broker, "c", true);
    let mut second = PacketHandler::new(broker, peer());
    assert!(second
        .admit(connect("c", true), &Identity::Anonymous, None)
        .is_none());
    assert_eq!(
        written(&mut second),
        vec![Packet::ConnAck(ConnAck::new(
            false,
            ReasonCode::SERVER_UNAVAILABLE
        ))]
    );
}

#[test]
fn connect_with_a_will_the_policy_forbids_is_not_authorized() {
    let broker = broker();
    let mut handler = PacketHandler::new(broker, peer());
    let mut with_will = connect("c", true);
    with_will.will = Some(LastWill {
        topic: "forbidden/will".into(),
        message: Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    assert!(handler
        .admit(with_will, &Identity::Anonymous, None)
        .is_none());
    assert_eq!(
        written(&mut handler),
        vec![Packet::ConnAck(ConnAck::new(
            false,
            ReasonCode::NOT_AUTHORIZED
        ))]
    );
}

#[test]
fn a_second_connect_takes_the_client_id_over() {
    let broker = broker();
    let (mut first, mut first_online) = connected(&broker, "c", false);
    let (_second, _second_online) = connected(&broker, "c", false);
    assert!(!first_online.session.is_owned_by(first.id));
    // Packets the old connection still had buffered must not touch the session.
    let ending = first
        .handle_packet(&mut first_online, subscribe(1, &[("t", QoS::AtMostOnce)]))
        .unwrap_err();
    assert_eq!(ending.reason, DisconnectReason::DuplicateClientId);
}

#[test]
fn publish_reaches_subscribers_and_qos1_is_acknowledged() {
    let broker = broker();
    let (mut subscriber, mut sub_online) = connected(&broker, "sub", true);
    subscriber
        .handle_packet(&mut sub_online, subscribe(7, &[("a/+", QoS::AtLeastOnce)]))
        .unwrap();
    assert_eq!(
        written(&mut subscriber),
        vec![Packet::SubAck(SubAck {
            pkid: 7,
            return_codes: vec![ReasonCode::GRANTED_QOS_1],
            properties: AckProperties::default(),
        })]
    );
    let (mut publisher, mut pub_online) = connected(&broker, "pub", true);
    publisher
        .handle_packet(&mut pub_online, publish("a/b", QoS::AtLeastOnce, 3))
        .unwrap();
    assert_eq!(written(&mut publisher), vec![Packet::PubAck(Ack::new(3))]);
    subscriber.fill_output(&mut sub_online);
    match &written(&mut subscriber)[..] {
        [Packet::Publish(delivered)] => {
            assert_eq!(delivered.topic, "a/b");
            assert_eq!(delivered.qos, QoS::AtLeastOnce);
            assert_eq!(&delivered.payload[..], b"hello");
            // The subscriber's PUBACK releases the in-flight slot.
            let pkid = delivered.pkid;
            subscriber
                .handle_packet(&mut sub_online, Packet::PubAck(Ack::new(pkid)))
                .unwrap();
            assert_eq!(sub_online.session.with_state(|s| s.inflight_len()), 0);
        }
        other => panic!("expected one PUBLISH, got {other:?}"),
    }
}

#[test]
fn publish_the_policy_denies_closes_with_forbidden_access() {
    let broker = broker();
    let (mut subscriber, mut sub_online) = connected(&broker, "sub", true);
    subscriber
        .handle_packet(&mut sub_online, subscribe(1, &[("#", QoS::AtMostOnce)]))
        .unwrap();
    let (mut publisher, mut pub_online) = connected(&broker, "pub", true);
    let ending = publisher
        .handle_packet(&mut pub_online, publish("forbidden/x", QoS::AtLeastOnce, 1))
        .unwrap_err();
    assert_eq!(ending.reason, DisconnectReason::ForbiddenAccess);
    assert!(
        written(&mut publisher).is_empty(),
        "no PUBACK for a denied publish"
    );
    let _ = written(&mut subscriber);
    assert!(received_topics(&mut subscriber, &mut sub_online).is_empty());
}

#[test]
fn publish_breaking_iot_rules_closes_as_client_error() {
    let broker = broker();
    let (mut handler, mut online) = connected(&broker, "c", true);
    let ending = handler
        .handle_packet(
            &mut online,
            publish("a/b/c/d/e/f/g/h/i", QoS::AtMostOnce, 0),
        )
        .unwrap_err();
    assert_eq!(ending.reason, DisconnectReason::ClientError);
    let ending = handler
        .handle_packet(&mut online, Packet::PubRel(Ack::new(1)))
        .unwrap_err();
    assert_eq!(ending.reason, DisconnectReason::ClientError);
}

#[test]
fn subscribe_answers_failure_for_a_denied_filter_and_retained_follows_the_suback() {
    let broker =
        broker_with("subscribe_denied = \"suback\"\n[limits]\nconnects_per_client_id_per_sec = 0");
    let (mut publisher, mut pub_online) = connected(&broker, "pub", true);
    let mut retained = publish("r/1", QoS::AtMostOnce, 0);
    if let Packet::Publish(p) = &mut retained {
        p.retain = true;
    }
    publisher.handle_packet(&mut pub_online, retained).unwrap();
    let (mut handler, mut online) = connected(&broker, "c", true);
    handler
        .handle_packet(
            &mut online,
            subscribe(
                5,
                &[("forbidden/x", QoS::AtLeastOnce), ("r/1", QoS::AtLeastOnce)],
            ),
        )
        .unwrap();
    handler.fill_output(&mut online);
    let packets = written(&mut handler);
    assert_eq!(
        packets[0],
        Packet::SubAck(SubAck {
            pkid: 5,
            return_codes: vec![ReasonCode::UNSPECIFIED_ERROR, ReasonCode::GRANTED_QOS_1],
            properties: AckProperties::default(),
        })
    );
    match &packets[1..] {
        [Packet::Publish(message)] => {
            assert_eq!(message.topic, "r/1");
            assert!(message.retain);
        }
        other => panic!("expected the retained message after SUBACK, got {other:?}"),
    }
}

#[test]
fn subscribe_denied_closes_the_connection_by_default_as_iot_core_does() {
    let broker = broker();
    let (mut handler, mut online) = connected(&broker, "c", true);
    let ending = handler
        .handle_packet(
            &mut online,
            subscribe(1, &[("forbidden/x", QoS::AtMostOnce)]),
        )
        .unwrap_err();
    assert_eq!(ending.reason, DisconnectReason::ForbiddenAccess);
    assert!(written(&mut handler).is_empty(), "no SUBACK");
}

#[test]
fn subscribing_past_the_limit_closes_the_connection() {
    let broker = broker_with(
        "[limits]\nconnects_per_client_id_per_sec = 0\nmax_subscriptions_per_connection = 2",
    );
    let (mut handler, mut online) = connected(&broker, "c", true);
    handler
        .handle_packet(
            &mut online,
            subscribe(1, &[("a", QoS::AtMostOnce), ("b", QoS::AtMostOnce)]),
        )
        .unwrap();
    let ending = handler
        .handle_packet(&mut online, subscribe(2, &[("c", QoS::AtMostOnce)]))
        .unwrap_err();
    assert_eq!(ending.reason, DisconnectReason::ClientError);
}

#[test]
fn unsubscribe_is_acknowledged_and_stops_deliveries() {
    let broker = broker();
    let (mut handler, mut online) = connected(&broker, "c", true);
    handler
        .handle_packet(&mut online, subscribe(1, &[("t", QoS::AtMostOnce)]))
        .unwrap();
    handler
        .handle_packet(
            &mut online,
            Packet::Unsubscribe(Unsubscribe {
                pkid: 2,
                filters: vec!["t".into()],
                user_properties: Vec::new(),
            }),
        )
        .unwrap();
    let packets = written(&mut handler);
    assert_eq!(
        packets.last(),
        Some(&Packet::UnsubAck(UnsubAck {
            pkid: 2,
            reason_codes: Vec::new(),
            properties: AckProperties::default(),
        }))
    );
    broker
        .router
        .route("t", Bytes::from_static(b"x"), QoS::AtMostOnce);
    assert!(received_topics(&mut handler, &mut online).is_empty());
}

#[test]
fn qos1_puback_waits_until_a_persistent_subscriber_has_it_on_disk() {
    let broker = durable_broker();
    let (mut subscriber, mut sub_online) = connected(&broker, "sub", false);
    subscriber
        .handle_packet(&mut sub_online, subscribe(1, &[("t", QoS::AtLeastOnce)]))
        .unwrap();
    subscriber.committed = u64::MAX;
    subscriber.release_acks();
    let (mut publisher, mut pub_online) = connected(&broker, "pub", true);
    // The store has committed nothing this handler knows of yet.
    publisher.committed = 0;
    publisher
        .handle_packet(&mut pub_online, publish("t", QoS::AtLeastOnce, 9))
        .unwrap();
    assert!(written(&mut publisher).is_empty(), "PUBACK before durable");
    let needed = publisher.pending_acks.front().expect("held").1;
    assert!(needed > 0);
    publisher.committed = needed - 1;
    publisher.release_acks();
    assert!(written(&mut publisher).is_empty());
    publisher.committed = needed;
    publisher.release_acks();
    assert_eq!(written(&mut publisher), vec![Packet::PubAck(Ack::new(9))]);
    broker.router.close_store();
}

#[test]
fn ping_is_answered() {
    let broker = broker();
    let (mut handler, mut online) = connected(&broker, "c", true);
    handler.input = BytesMut::from(&[0xC0u8, 0x00][..]);
    handler.handle_input(&mut online).unwrap();
    assert_eq!(written(&mut handler), vec![Packet::PingResp]);
    // A malformed packet ends the connection as a client error.
    handler.input = BytesMut::from(&[0xF0u8, 0x00][..]);
    let ending = handler.handle_input(&mut online).unwrap_err();
    assert_eq!(ending.reason, DisconnectReason::ClientError);
}

#[test]
fn the_will_is_published_on_abnormal_close_but_not_after_disconnect() {
    let broker = broker();
    let (mut watcher, mut watcher_online) = connected(&broker, "watcher", true);
    watcher
        .handle_packet(
            &mut watcher_online,
            subscribe(
                1,
                &[
                    ("will/+", QoS::AtMostOnce),
                    ("$aws/events/presence/disconnected/+", QoS::AtMostOnce),
                ],
            ),
        )
        .unwrap();
    let _ = written(&mut watcher);
    for (client, packet_ends) in [("polite", true), ("rude", false)] {
        let mut handler = PacketHandler::new(broker.clone(), peer());
        let mut with_will = connect(client, true);
        with_will.will = Some(LastWill {
            topic: format!("will/{client}"),
            message: Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
        let mut online = handler
            .admit(with_will, &Identity::Anonymous, None)
            .unwrap()
            .online;
        let ending = if packet_ends {
            handler
                .handle_packet(&mut online, Packet::disconnect())
                .unwrap_err()
        } else {
            Ending::abnormal(DisconnectReason::ConnectionLost)
        };
        handler.close(&online, ending);
    }
    assert_eq!(
        received_topics(&mut watcher, &mut watcher_online),
        vec![
            "$aws/events/presence/disconnected/polite".to_owned(),
            "will/rude".to_owned(),
            "$aws/events/presence/disconnected/rude".to_owned(),
        ]
    );
    assert_eq!(
        broker
            .router
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn the_connected_event_waits_until_the_connection_goes_online() {
    let broker = broker();
    let (mut watcher, mut watcher_online) = connected(&broker, "watcher", true);
    watcher
        .handle_packet(
            &mut watcher_online,
            subscribe(1, &[("$aws/events/presence/connected/+", QoS::AtMostOnce)]),
        )
        .unwrap();
    let _ = written(&mut watcher);
    let mut handler = PacketHandler::new(broker.clone(), peer());
    let admitted = handler
        .admit(connect("device", true), &Identity::Anonymous, None)
        .unwrap();
    // Admitted, CONNACK queued, but its session may not be durable yet: nothing announced.
    assert!(received_topics(&mut watcher, &mut watcher_online).is_empty());
    handler.go_online(&admitted.online);
    assert_eq!(
        received_topics(&mut watcher, &mut watcher_online),
        vec!["$aws/events/presence/connected/device".to_owned()]
    );
}

// ---------------------------------------------------------------------------------------
// MQTT 5
// ---------------------------------------------------------------------------------------

fn connect_v5(client_id: &str, clean_start: bool, session_expiry: Option<u32>) -> Connect {
    let mut connect = connect(client_id, clean_start);
    connect.protocol = Protocol::V5;
    connect.properties.session_expiry_interval = session_expiry;
    connect
}

/// A handler that read `connect` off the wire (so it speaks the CONNECT's version) and
/// tried to admit it.
fn admit_from_wire(broker: &Arc<Broker>, connect: Connect) -> (PacketHandler, Option<Online>) {
    let mut handler = PacketHandler::new(broker.clone(), peer());
    let protocol = connect.protocol;
    mqtt::encode(&Packet::Connect(connect), &mut handler.input, protocol).unwrap();
    let decoded = handler
        .decode_connect()
        .expect("CONNECT decodes")
        .expect("CONNECT complete");
    assert_eq!(handler.protocol, protocol);
    let online = handler
        .admit(decoded, &Identity::Anonymous, None)
        .map(|admitted| {
            handler.go_online(&admitted.online);
            admitted.online
        });
    (handler, online)
}

/// The CONNACK a handler queued (and nothing else before it).
fn connack_of(handler: &mut PacketHandler) -> ConnAck {
    match written(handler).into_iter().next() {
        Some(Packet::ConnAck(connack)) => connack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// An MQTT 5 client connected with `connect`: handler, state and its CONNACK.
fn connected_with(broker: &Arc<Broker>, connect: Connect) -> (PacketHandler, Online, ConnAck) {
    let (mut handler, online) = admit_from_wire(broker, connect);
    let connack = connack_of(&mut handler);
    assert_eq!(connack.code, ReasonCode::SUCCESS, "{connack:?}");
    (handler, online.expect("admitted"), connack)
}

fn connected_v5(broker: &Arc<Broker>, client_id: &str) -> (PacketHandler, Online) {
    let (handler, online, _) = connected_with(broker, connect_v5(client_id, true, None));
    (handler, online)
}

/// Sends `packet` as the client would: encoded in the connection's version, then decoded
/// and handled by the broker.
fn send(handler: &mut PacketHandler, online: &mut Online, packet: Packet) -> Result<(), Ending> {
    let protocol = handler.protocol;
    let mut input = std::mem::take(&mut handler.input);
    mqtt::encode(&packet, &mut input, protocol).unwrap();
    handler.input = input;
    handler.handle_input(online)
}

fn refused_v5(broker: &Arc<Broker>, connect: Connect) -> ConnAck {
    let (mut handler, online) = admit_from_wire(broker, connect);
    assert!(online.is_none(), "refused");
    let connack = connack_of(&mut handler);
    assert!(!connack.session_present);
    assert!(
        connack.properties.reason_string.is_some(),
        "MQTT 5 refusals say why"
    );
    connack
}

fn received(handler: &mut PacketHandler, online: &mut Online) -> Vec<Publish> {
    handler.fill_output(online);
    written(handler)
        .into_iter()
        .filter_map(|packet| match packet {
            Packet::Publish(publish) => Some(publish),
            _ => None,
        })
        .collect()
}

fn subscribe_v5(handler: &mut PacketHandler, online: &mut Online, filter: &str, qos: QoS) {
    send(handler, online, subscribe(1, &[(filter, qos)])).unwrap();
    match &written(handler)[..] {
        [Packet::SubAck(suback)] => assert!(!suback.return_codes[0].is_failure(), "{suback:?}"),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

fn publish_with(topic: &str, qos: QoS, pkid: u16, properties: mqtt::PublishProperties) -> Packet {
    let mut packet = publish(topic, qos, pkid);
    if let Packet::Publish(publish) = &mut packet {
        publish.properties = properties;
    }
    packet
}

fn ending_code(ending: &Ending) -> ReasonCode {
    ending.disconnect.as_ref().expect("a server DISCONNECT").0
}

#[test]
fn v5_connack_advertises_iot_core_limits_and_what_the_broker_changed() {
    let broker = broker();
    let mut asked = connect_v5("c", true, Some(u32::MAX));
    asked.keep_alive = 10;
    let (_handler, _online, connack) = connected_with(&broker, asked);
    let properties = &connack.properties;
    assert_eq!(properties.maximum_qos, Some(QoS::AtLeastOnce));
    assert_eq!(properties.topic_alias_maximum, Some(8));
    assert_eq!(properties.subscription_identifiers_available, Some(false));
    assert_eq!(properties.shared_subscription_available, Some(true));
    assert_eq!(properties.wildcard_subscription_available, Some(true));
    assert_eq!(properties.retain_available, Some(true));
    assert_eq!(properties.maximum_packet_size, Some(146 * 1024));
    assert_eq!(properties.receive_maximum, Some(100));
    assert_eq!(
        properties.server_keep_alive,
        Some(30),
        "keep-alive 10 raised to 30"
    );
    assert_eq!(
        properties.session_expiry_interval,
        Some(3600),
        "clamped to session_expiry"
    );
    assert_eq!(properties.assigned_client_identifier, None);
    assert!(!connack.session_present);
}

#[test]
fn v5_connack_repeats_nothing_the_broker_granted_as_asked() {
    let broker = broker();
    let mut asked = connect_v5("c", true, Some(600));
    asked.keep_alive = 60;
    let (_handler, online, connack) = connected_with(&broker, asked);
    assert_eq!(connack.properties.session_expiry_interval, None);
    assert_eq!(connack.properties.server_keep_alive, None);
    assert_eq!(online.session.expiry(), std::time::Duration::from_secs(600));
    assert!(!online.session.clean);
}

#[test]
fn v5_empty_client_id_is_assigned_one() {
    let broker = broker();
    let (_handler, online, connack) = connected_with(&broker, connect_v5("", true, None));
    let assigned = connack
        .properties
        .assigned_client_identifier
        .expect("Assigned Client Identifier");
    assert!(assigned.starts_with("$GEN/"), "{assigned}");
    assert_eq!(&*online.client_id, assigned.as_str());
}

#[test]
fn v5_connect_refusals_carry_reason_codes() {
    let broker = broker();
    assert_eq!(
        refused_v5(&broker, connect_v5("$bad", true, None)).code,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
    );
    let mut will_qos2 = connect_v5("c", true, None);
    will_qos2.will = Some(LastWill {
        topic: "will/c".into(),
        message: Bytes::from_static(b"bye"),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: Default::default(),
    });
    assert_eq!(
        refused_v5(&broker, will_qos2).code,
        ReasonCode::QOS_NOT_SUPPORTED
    );
    let mut enhanced = connect_v5("c", true, None);
    enhanced.properties.authentication_method = Some("SCRAM-SHA-1".into());
    assert_eq!(
        refused_v5(&broker, enhanced).code,
        ReasonCode::BAD_AUTHENTICATION_METHOD
    );
}

#[test]
fn v5_denied_publish_is_answered_with_puback_0x87_and_the_connection_continues() {
    let broker = broker();
    let (mut subscriber, mut sub_online) = connected_v5(&broker, "sub");
    subscribe_v5(&mut subscriber, &mut sub_online, "#", QoS::AtLeastOnce);
    let (mut publisher, mut pub_online) = connected_v5(&broker, "pub");
    send(
        &mut publisher,
        &mut pub_online,
        publish("forbidden/x", QoS::AtLeastOnce, 4),
    )
    .expect("the connection continues");
    match &written(&mut publisher)[..] {
        [Packet::PubAck(ack)] => {
            assert_eq!(ack.pkid, 4);
            assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
            assert!(ack.properties.reason_string.is_some());
        }
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }
    send(
        &mut publisher,
        &mut pub_online,
        publish("forbidden/y", QoS::AtMostOnce, 0),
    )
    .expect("QoS 0: nothing to answer, still connected");
    send(
        &mut publisher,
        &mut pub_online,
        publish("a/b", QoS::AtLeastOnce, 5),
    )
    .unwrap();
    assert_eq!(written(&mut publisher), vec![Packet::PubAck(Ack::new(5))]);
    let topics: Vec<String> = received(&mut subscriber, &mut sub_online)
        .into_iter()
        .map(|publish| publish.topic)
        .collect();
    assert_eq!(topics, vec!["a/b".to_owned()]);
}

#[test]
fn v5_subscribe_answers_per_filter_reason_codes() {
    let broker = broker();
    let (mut handler, mut online) = connected_v5(&broker, "c");
    send(
        &mut handler,
        &mut online,
        subscribe(
            3,
            &[
                ("forbidden/x", QoS::AtLeastOnce),
                ("$share/+/t", QoS::AtLeastOnce),
                ("q2", QoS::ExactlyOnce),
                ("$share/g/t", QoS::AtMostOnce),
            ],
        ),
    )
    .expect("a denied filter does not close an MQTT 5 connection");
    match &written(&mut handler)[..] {
        [Packet::SubAck(suback)] => {
            assert_eq!(suback.pkid, 3);
            assert_eq!(
                suback.return_codes,
                vec![
                    ReasonCode::NOT_AUTHORIZED,
                    ReasonCode::TOPIC_FILTER_INVALID,
                    ReasonCode::GRANTED_QOS_1,
                    ReasonCode::GRANTED_QOS_0,
                ]
            );
            assert!(suback.properties.reason_string.is_some());
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
    assert!(online.session.with_state(|state| state.is_subscribed("q2")
        && state.is_subscribed("$share/g/t")
        && !state.is_subscribed("forbidden/x")));
}

#[test]
fn v5_subscription_identifier_ends_the_connection_with_0xa1() {
    let broker = broker();
    let (mut handler, mut online) = connected_v5(&broker, "c");
    let mut packet = subscribe(1, &[("t", QoS::AtLeastOnce)]);
    if let Packet::Subscribe(subscribe) = &mut packet {
        subscribe.properties.subscription_identifier = Some(7);
    }
    let ending = send(&mut handler, &mut online, packet).unwrap_err();
    assert_eq!(
        ending_code(&ending),
        ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED
    );
    assert!(written(&mut handler).is_empty(), "no SUBACK");
    handler.queue_disconnect(&ending);
    match &written(&mut handler)[..] {
        [Packet::Disconnect(disconnect)] => {
            assert_eq!(
                disconnect.reason,
                ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED
            );
            assert!(disconnect.properties.reason_string.is_some());
        }
        other => panic!("expected a server DISCONNECT, got {other:?}"),
    }
}

#[test]
fn v5_qos2_publish_ends_the_connection_with_0x9b() {
    let broker = broker();
    let (mut handler, mut online) = connected_v5(&broker, "c");
    let ending = send(&mut handler, &mut online, publish("t", QoS::ExactlyOnce, 1)).unwrap_err();
    assert_eq!(ending_code(&ending), ReasonCode::QOS_NOT_SUPPORTED);
    assert_eq!(ending.reason, DisconnectReason::ClientError);
}

#[test]
fn v3_endings_send_no_server_disconnect() {
    let broker = broker();
    let (mut handler, mut online) = connected(&broker, "c", true);
    let ending = handler
        .handle_packet(
            &mut online,
            publish("a/b/c/d/e/f/g/h/i", QoS::AtMostOnce, 0),
        )
        .unwrap_err();
    handler.queue_disconnect(&ending);
    assert!(written(&mut handler).is_empty());
}

#[test]
fn v5_topic_alias_set_then_used_routes_to_its_topic() {
    let broker = broker();
    let (mut subscriber, mut sub_online) = connected_v5(&broker, "sub");
    subscribe_v5(&mut subscriber, &mut sub_online, "alias/#", QoS::AtMostOnce);
    let (mut publisher, mut pub_online) = connected_v5(&broker, "pub");
    let aliased = |topic: &str, alias| {
        publish_with(
            topic,
            QoS::AtMostOnce,
            0,
            mqtt::PublishProperties {
                topic_alias: Some(alias),
                ..Default::default()
            },
        )
    };
    send(&mut publisher, &mut pub_online, aliased("alias/one", 8)).unwrap();
    send(&mut publisher, &mut pub_online, aliased("", 8)).unwrap();
    send(&mut publisher, &mut pub_online, aliased("alias/two", 8)).unwrap();
    send(&mut publisher, &mut pub_online, aliased("", 8)).unwrap();
    let got: Vec<(String, Option<u16>)> = received(&mut subscriber, &mut sub_online)
        .into_iter()
        .map(|publish| (publish.topic, publish.properties.topic_alias))
        .collect();
    assert_eq!(
        got,
        vec![
            ("alias/one".to_owned(), None),
            ("alias/one".to_owned(), None),
            ("alias/two".to_owned(), None),
            ("alias/two".to_owned(), None),
        ],
        "the publisher's alias is not forwarded"
    );
    // Unknown, zero and above the maximum (8) end the connection with 0x94.
    for (topic, alias) in [("", 3), ("alias/x", 0), ("alias/x", 9), ("", 9)] {
        let (mut handler, mut online) = connected_v5(&broker, "bad");
        let ending = handler
            .handle_packet(&mut online, aliased(topic, alias))
            .unwrap_err();
        assert_eq!(
            ending_code(&ending),
            ReasonCode::TOPIC_ALIAS_INVALID,
            "alias {alias} topic {topic:?}"
        );
    }
    // Aliases belong to one connection.
    let (mut other, mut other_online) = connected_v5(&broker, "other");
    let ending = send(&mut other, &mut other_online, aliased("", 8)).unwrap_err();
    assert_eq!(ending_code(&ending), ReasonCode::TOPIC_ALIAS_INVALID);
}

#[test]
fn v5_unsuback_says_which_filters_existed() {
    let broker = broker();
    let (mut handler, mut online) = connected_v5(&broker, "c");
    subscribe_v5(&mut handler, &mut online, "t", QoS::AtMostOnce);
    send(
        &mut handler,
        &mut online,
        Packet::Unsubscribe(Unsubscribe {
            pkid: 2,
            filters: vec!["t".into(), "never".into()],
            user_properties: Vec::new(),
        }),
    )
    .unwrap();
    match &written(&mut handler)[..] {
        [Packet::UnsubAck(unsuback)] => {
            assert_eq!(unsuback.pkid, 2);
            assert_eq!(
                unsuback.reason_codes,
                vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
            );
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}

#[test]
fn v5_disconnect_may_not_raise_a_zero_session_expiry() {
    let broker = broker();
    let (mut handler, mut online) = connected_v5(&broker, "c");
    let mut disconnect = mqtt::Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    disconnect.properties.session_expiry_interval = Some(60);
    let ending = send(&mut handler, &mut online, Packet::Disconnect(disconnect)).unwrap_err();
    assert_eq!(ending_code(&ending), ReasonCode::PROTOCOL_ERROR);
    assert_eq!(ending.reason, DisconnectReason::ClientError);
    assert!(ending.publish_will);
}

#[test]
fn v5_disconnect_with_session_expiry_zero_ends_a_persistent_session() {
    let broker = broker();
    let (mut handler, mut online, _) = connected_with(&broker, connect_v5("c", true, Some(600)));
    let mut disconnect = mqtt::Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    disconnect.properties.session_expiry_interval = Some(0);
    let ending = send(&mut handler, &mut online, Packet::Disconnect(disconnect)).unwrap_err();
    assert_eq!(ending.reason, DisconnectReason::ClientInitiatedDisconnect);
    assert!(!ending.publish_will);
    handler.close(&online, ending);
    assert_eq!(broker.router.session_count(), 0);
}

#[test]
fn v5_disconnect_with_will_message_publishes_the_will_with_its_properties() {
    let broker = broker();
    let (mut watcher, mut watcher_online) = connected_v5(&broker, "watcher");
    subscribe_v5(&mut watcher, &mut watcher_online, "will/+", QoS::AtMostOnce);
    for (client, reason) in [
        ("polite", ReasonCode::NORMAL_DISCONNECTION),
        ("leaving", ReasonCode::DISCONNECT_WITH_WILL_MESSAGE),
    ] {
        let mut with_will = connect_v5(client, true, None);
        with_will.will = Some(LastWill {
            topic: format!("will/{client}"),
            message: Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: mqtt::WillProperties {
                content_type: Some("text/plain".into()),
                user_properties: vec![("who".into(), client.into())],
                ..Default::default()
            },
        });
        let (mut handler, mut online, _) = connected_with(&broker, with_will);
        let ending = send(
            &mut handler,
            &mut online,
            Packet::Disconnect(mqtt::Disconnect::new(reason)),
        )
        .unwrap_err();
        assert_eq!(
            ending.disconnect, None,
            "a client DISCONNECT is not answered"
        );
        handler.close(&online, ending);
    }
    match &received(&mut watcher, &mut watcher_online)[..] {
        [will] => {
            assert_eq!(will.topic, "will/leaving");
            assert_eq!(will.properties.content_type.as_deref(), Some("text/plain"));
            assert_eq!(
                will.properties.user_properties,
                vec![("who".to_owned(), "leaving".to_owned())]
            );
        }
        other => panic!("expected only the will of 'leaving', got {other:?}"),
    }
}

fn rich_properties() -> mqtt::PublishProperties {
    mqtt::PublishProperties {
        payload_format_indicator: Some(true),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("b".into(), "3".into()),
        ],
        content_type: Some("application/json".into()),
        ..Default::default()
    }
}

#[test]
fn v5_message_properties_reach_v5_subscribers_only() {
    let broker = broker();
    let (mut v5_sub, mut v5_online) = connected_v5(&broker, "v5-sub");
    subscribe_v5(&mut v5_sub, &mut v5_online, "p/#", QoS::AtLeastOnce);
    let (mut v3_sub, mut v3_online) = connected(&broker, "v3-sub", true);
    v3_sub
        .handle_packet(&mut v3_online, subscribe(1, &[("p/#", QoS::AtLeastOnce)]))
        .unwrap();
    let _ = written(&mut v3_sub);
    let (mut publisher, mut pub_online) = connected_v5(&broker, "pub");
    send(
        &mut publisher,
        &mut pub_online,
        publish_with("p/1", QoS::AtLeastOnce, 1, rich_properties()),
    )
    .unwrap();
    assert_eq!(written(&mut publisher), vec![Packet::PubAck(Ack::new(1))]);
    match &received(&mut v5_sub, &mut v5_online)[..] {
        [message] => {
            assert_eq!(message.topic, "p/1");
            assert_eq!(message.properties, rich_properties(), "in order, untouched");
        }
        other => panic!("expected one PUBLISH, got {other:?}"),
    }
    match &received(&mut v3_sub, &mut v3_online)[..] {
        [message] => {
            assert_eq!(message.topic, "p/1");
            assert!(message.properties.is_empty());
        }
        other => panic!("expected one PUBLISH, got {other:?}"),
    }
}

#[test]
fn v5_a_message_past_its_expiry_is_not_delivered() {
    use crate::message::MessageMeta;
    use crate::session::Delivery;
    let broker = broker();
    let (mut handler, mut online) = connected_v5(&broker, "c");
    let now = crate::clock::unix_millis();
    for (topic, expires_at_ms) in [("old", now - 1), ("fresh", now + 60_000)] {
        let meta = MessageMeta {
            properties: mqtt::PublishProperties {
                message_expiry_interval: Some(60),
                ..Default::default()
            },
            expires_at_ms: Some(expires_at_ms),
        };
        broker.router.deliver(
            &online.session,
            Delivery {
                topic: topic.into(),
                payload: Bytes::from_static(b"m"),
                qos: QoS::AtLeastOnce,
                retain: false,
                meta: Some(Arc::new(meta)),
            },
        );
    }
    match &received(&mut handler, &mut online)[..] {
        [message] => {
            assert_eq!(message.topic, "fresh");
            let left = message.properties.message_expiry_interval.unwrap();
            assert!((58..=60).contains(&left), "the time left, not 60: {left}");
        }
        other => panic!("expected only the fresh message, got {other:?}"),
    }
    // A publish with an expiry is forwarded with the time it has left.
    subscribe_v5(&mut handler, &mut online, "e", QoS::AtMostOnce);
    let (mut publisher, mut pub_online) = connected_v5(&broker, "pub");
    let expiring = mqtt::PublishProperties {
        message_expiry_interval: Some(120),
        ..Default::default()
    };
    send(
        &mut publisher,
        &mut pub_online,
        publish_with("e", QoS::AtMostOnce, 0, expiring),
    )
    .unwrap();
    match &received(&mut handler, &mut online)[..] {
        [message] => {
            let left = message.properties.message_expiry_interval.unwrap();
            assert!((118..=120).contains(&left), "{left}");
        }
        other => panic!("expected the expiring message, got {other:?}"),
    }
}

#[test]
fn v5_the_clients_maximum_packet_size_drops_what_it_could_not_take() {
    let broker = broker();
    let mut small = connect_v5("small", true, None);
    small.properties.maximum_packet_size = Some(128);
    let (mut handler, mut online, _) = connected_with(&broker, small);
    subscribe_v5(&mut handler, &mut online, "t/#", QoS::AtLeastOnce);
    broker
        .router
        .route("t/big", Bytes::from(vec![7u8; 200]), QoS::AtLeastOnce);
    broker
        .router
        .route("t/small", Bytes::from_static(b"ok"), QoS::AtLeastOnce);
    let topics: Vec<String> = received(&mut handler, &mut online)
        .into_iter()
        .map(|publish| publish.topic)
        .collect();
    assert_eq!(topics, vec!["t/small".to_owned()]);
    assert_eq!(
        broker
            .router
            .stats
            .dropped_too_large
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(online.session.with_state(|state| state.inflight_len()), 1);
}

#[test]
fn v5_the_clients_receive_maximum_limits_qos1_in_flight() {
    let broker = broker();
    let mut narrow = connect_v5("narrow", true, None);
    narrow.properties.receive_maximum = Some(2);
    let (mut handler, mut online, _) = connected_with(&broker, narrow);
    subscribe_v5(&mut handler, &mut online, "t", QoS::AtLeastOnce);
    for _ in 0..5 {
        broker
            .router
            .route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce);
    }
    let first = received(&mut handler, &mut online);
    assert_eq!(first.len(), 2, "only Receive Maximum in flight");
    assert!(
        received(&mut handler, &mut online).is_empty(),
        "until a PUBACK"
    );
    send(
        &mut handler,
        &mut online,
        Packet::PubAck(Ack::new(first[0].pkid)),
    )
    .unwrap();
    let next = received(&mut handler, &mut online);
    assert_eq!(next.len(), 1);
    for publish in first[1..].iter().chain(&next) {
        send(
            &mut handler,
            &mut online,
            Packet::PubAck(Ack::new(publish.pkid)),
        )
        .unwrap();
    }
    assert_eq!(received(&mut handler, &mut online).len(), 2);
}

#[test]
fn a_v311_reconnect_does_not_resume_an_mqtt5_session() {
    let broker = broker();
    let (mut handler, mut online, connack) =
        connected_with(&broker, connect_v5("c", false, Some(600)));
    assert!(!connack.session_present);
    subscribe_v5(&mut handler, &mut online, "t", QoS::AtLeastOnce);
    handler.close(&online, Ending::abnormal(DisconnectReason::ConnectionLost));
    broker
        .router
        .route("t", Bytes::from_static(b"queued"), QoS::AtLeastOnce);
    let mut v3 = PacketHandler::new(broker.clone(), peer());
    let admitted = v3
        .admit(connect("c", false), &Identity::Anonymous, None)
        .unwrap();
    assert_eq!(
        written(&mut v3),
        vec![Packet::ConnAck(ConnAck::new(false, ReasonCode::SUCCESS))]
    );
    let mut v3_online = admitted.online;
    assert!(received_topics(&mut v3, &mut v3_online).is_empty());
    v3.close(
        &v3_online,
        Ending::abnormal(DisconnectReason::ConnectionLost),
    );
    // The same MQTT 5 client resumes its own kind of session.
    let (_again, _again_online, connack) =
        connected_with(&broker, connect_v5("c", false, Some(600)));
    assert!(!connack.session_present, "the 3.1.1 session replaced it");
}

#[test]
fn v5_persistent_session_resumes_with_session_present() {
    let broker = broker();
    let (mut handler, mut online, _) = connected_with(&broker, connect_v5("c", false, Some(600)));
    subscribe_v5(&mut handler, &mut online, "t", QoS::AtLeastOnce);
    handler.close(&online, Ending::abnormal(DisconnectReason::ConnectionLost));
    broker
        .router
        .route("t", Bytes::from_static(b"queued"), QoS::AtLeastOnce);
    let (mut again, mut again_online, connack) =
        connected_with(&broker, connect_v5("c", false, Some(600)));
    assert!(connack.session_present);
    let topics: Vec<String> = received(&mut again, &mut again_online)
        .into_iter()
        .map(|publish| publish.topic)
        .collect();
    assert_eq!(topics, vec!["t".to_owned()]);
}

#[test]
fn v5_persistent_session_with_a_queued_message_survives_reopening() {
    let dir = tempfile::tempdir().unwrap().keep();
    let open = || {
        let text = format!(
            "data_dir = {:?}\nin_memory = false\n{POLICY}",
            dir.display().to_string()
        );
        Broker::new(Config::parse(&text).unwrap()).unwrap()
    };
    {
        let broker = open();
        let (mut handler, mut online, _) =
            connected_with(&broker, connect_v5("dur", false, Some(600)));
        send(
            &mut handler,
            &mut online,
            subscribe(1, &[("q/#", QoS::AtLeastOnce)]),
        )
        .unwrap();
        handler.committed = u64::MAX;
        handler.release_acks();
        let _ = written(&mut handler);
        handler.close(&online, Ending::abnormal(DisconnectReason::ConnectionLost));
        let (mut publisher, mut pub_online) = connected_v5(&broker, "pub");
        send(
            &mut publisher,
            &mut pub_online,
            publish_with("q/1", QoS::AtLeastOnce, 1, rich_properties()),
        )
        .unwrap();
        broker.router.close_store();
    }
    let broker = open();
    let (mut handler, mut online, connack) =
        connected_with(&broker, connect_v5("dur", false, Some(600)));
    assert!(connack.session_present);
    match &received(&mut handler, &mut online)[..] {
        [message] => {
            assert_eq!(message.topic, "q/1");
            assert_eq!(message.qos, QoS::AtLeastOnce);
            assert_eq!(message.properties, rich_properties());
        }
        other => panic!("expected the queued message, got {other:?}"),
    }
    broker.router.close_store();
}

#[test]
fn v5_request_problem_information_0_leaves_reason_strings_out() {
    let broker = broker();
    let mut quiet = connect_v5("quiet", true, None);
    quiet.properties.request_problem_information = Some(false);
    let (mut handler, mut online, _) = connected_with(&broker, quiet);
    send(
        &mut handler,
        &mut online,
        publish("forbidden/x", QoS::AtLeastOnce, 2),
    )
    .unwrap();
    match &written(&mut handler)[..] {
        [Packet::PubAck(ack)] => {
            assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
            assert_eq!(ack.properties, AckProperties::default());
        }
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }
}

#[test]
fn v5_retained_messages_keep_their_properties_and_follow_retain_handling() {
    let broker = broker();
    let (mut publisher, mut pub_online) = connected_v5(&broker, "pub");
    let mut retained = publish_with("r/1", QoS::AtLeastOnce, 1, rich_properties());
    if let Packet::Publish(publish) = &mut retained {
        publish.retain = true;
    }
    send(&mut publisher, &mut pub_online, retained).unwrap();
    let (mut handler, mut online) = connected_v5(&broker, "c");
    send(
        &mut handler,
        &mut online,
        subscribe(1, &[("r/1", QoS::AtLeastOnce)]),
    )
    .unwrap();
    handler.fill_output(&mut online);
    match &written(&mut handler)[..] {
        [Packet::SubAck(_), Packet::Publish(message)] => {
            assert!(message.retain);
            assert_eq!(message.properties, rich_properties());
        }
        other => panic!("expected SUBACK then the retained message, got {other:?}"),
    }
    // Retain Handling 1 (only for a new subscription) and 2 (never): nothing more.
    for handling in [
        mqtt::RetainHandling::OnNewSubscribe,
        mqtt::RetainHandling::Never,
    ] {
        let mut again = subscribe(2, &[("r/1", QoS::AtLeastOnce)]);
        if let Packet::Subscribe(subscribe) = &mut again {
            subscribe.filters[0].retain_handling = handling;
        }
        send(&mut handler, &mut online, again).unwrap();
        handler.fill_output(&mut online);
        assert!(
            matches!(&written(&mut handler)[..], [Packet::SubAck(_)]),
            "{handling:?}"
        );
    }
}

#[test]
fn v5_shared_membership_of_a_persistent_session_survives_reopening() {
    let dir = tempfile::tempdir().unwrap().keep();
    let open = || {
        let text = format!(
            "data_dir = {:?}\nin_memory = false\n{POLICY}",
            dir.display().to_string()
        );
        Broker::new(Config::parse(&text).unwrap()).unwrap()
    };
    {
        let broker = open();
        let (mut handler, mut online, _) =
            connected_with(&broker, connect_v5("member", false, Some(600)));
        send(
            &mut handler,
            &mut online,
            subscribe(1, &[("$share/g/s/#", QoS::AtLeastOnce)]),
        )
        .unwrap();
        handler.committed = u64::MAX;
        handler.release_acks();
        handler.close(&online, Ending::abnormal(DisconnectReason::ConnectionLost));
        broker.router.close_store();
    }
    let broker = open();
    let routed = broker
        .router
        .route("s/1", Bytes::from_static(b"m"), QoS::AtLeastOnce);
    assert_eq!(routed.sessions, 1, "the recovered member is in the group");
    let (mut handler, mut online, connack) =
        connected_with(&broker, connect_v5("member", false, Some(600)));
    assert!(connack.session_present);
    let topics: Vec<String> = received(&mut handler, &mut online)
        .into_iter()
        .map(|publish| publish.topic)
        .collect();
    assert_eq!(topics, vec!["s/1".to_owned()]);
    broker.router.close_store();
}

fn rate_limited_broker(limits: &str) -> Arc<Broker> {
    broker_with(&format!(
        "[limits]\nconnects_per_client_id_per_sec = 0\n{limits}"
    ))
}

/// Queues `packets` as one read would deliver them, then lets the handler at them.
fn send_all(
    handler: &mut PacketHandler,
    online: &mut Online,
    packets: impl IntoIterator<Item = Packet>,
) -> Result<(), Ending> {
    for packet in packets {
        mqtt::encode(&packet, &mut handler.input, handler.protocol).unwrap();
    }
    handler.handle_input(online)
}

fn dropped_rate_limited(broker: &Broker) -> u64 {
    let stats = &broker.router.stats;
    stats
        .dropped_rate_limited
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn no_rate_state_while_the_rates_are_off() {
    let (mut handler, online) = connected(&broker(), "c", true);
    assert!(handler.rates.is_none());
    assert_eq!(handler.throttling(&online), None);
}

#[test]
fn publishes_over_the_rate_are_discarded_without_puback_and_the_connection_stays_open() {
    let broker = rate_limited_broker("publishes_per_connection_per_sec = 3");
    let (mut subscriber, mut sub_online) = connected(&broker, "sub", true);
    send(
        &mut subscriber,
        &mut sub_online,
        subscribe(1, &[("a/#", QoS::AtLeastOnce)]),
    )
    .unwrap();
    written(&mut subscriber);
    let (mut publisher, mut pub_online) = connected(&broker, "pub", true);
    send_all(
        &mut publisher,
        &mut pub_online,
        (1..=5).map(|pkid| publish(&format!("a/{pkid}"), QoS::AtLeastOnce, pkid)),
    )
    .expect("the connection stays open");
    assert_eq!(
        written(&mut publisher),
        (1..=3)
            .map(|pkid| Packet::PubAck(Ack::new(pkid)))
            .collect::<Vec<_>>(),
        "no PUBACK for what was discarded"
    );
    assert_eq!(dropped_rate_limited(&broker), 2);
    assert_eq!(
        received_topics(&mut subscriber, &mut sub_online),
        vec!["a/1", "a/2", "a/3"]
    );
    // The connection still answers (a PINGREQ is not a PUBLISH).
    send(&mut publisher, &mut pub_online, Packet::PingReq).unwrap();
    assert_eq!(written(&mut publisher), vec![Packet::PingResp]);
    // Dropping needs no wake-up; only its report is due (at once: the first one).
    let throttling = publisher.throttling(&pub_online).expect("rates are on");
    assert!(!throttling.read_paused);
}

#[test]
fn v5_publishes_over_the_rate_get_puback_0x97() {
    let broker = rate_limited_broker("publishes_per_connection_per_sec = 2");
    let (mut publisher, mut online) = connected_v5(&broker, "pub");
    send_all(
        &mut publisher,
        &mut online,
        (1..=4).map(|pkid| publish("a/b", QoS::AtLeastOnce, pkid)),
    )
    .expect("the connection stays open");
    let acks: Vec<(u16, ReasonCode)> = written(&mut publisher)
        .into_iter()
        .map(|packet| match packet {
            Packet::PubAck(ack) => (ack.pkid, ack.reason),
            other => panic!("expected PUBACK, got {other:?}"),
        })
        .collect();
    assert_eq!(
        acks,
        vec![
            (1, ReasonCode::SUCCESS),
            (2, ReasonCode::SUCCESS),
            (3, ReasonCode::QUOTA_EXCEEDED),
            (4, ReasonCode::QUOTA_EXCEEDED)
        ]
    );
    assert_eq!(dropped_rate_limited(&broker), 2);
}

#[test]
fn deliveries_over_the_publish_rate_wait_in_the_queue() {
    let broker = rate_limited_broker("publishes_per_connection_per_sec = 2");
    let (mut subscriber, mut online) = connected(&broker, "sub", true);
    send(
        &mut subscriber,
        &mut online,
        subscribe(1, &[("t/#", QoS::AtMostOnce)]),
    )
    .unwrap();
    written(&mut subscriber);
    for topic in ["t/1", "t/2", "t/3"] {
        broker
            .router
            .route(topic, Bytes::from_static(b"m"), QoS::AtMostOnce);
    }
    assert_eq!(
        received_topics(&mut subscriber, &mut online),
        vec!["t/1", "t/2"]
    );
    assert_eq!(
        online.session.with_state(|s| s.queued_len()),
        1,
        "kept, not dropped"
    );
    assert_eq!(dropped_rate_limited(&broker), 0);
    let _first_report = subscriber.throttling(&online);
    let wake_at = subscriber
        .throttling(&online)
        .and_then(|t| t.wake_at)
        .expect("a wake-up for the held delivery");
    let wait = wake_at.saturating_duration_since(std::time::Instant::now());
    assert!(
        wait > std::time::Duration::from_millis(400)
            && wait <= std::time::Duration::from_millis(500),
        "one publish's worth at 2/s is 500 ms: {wait:?}"
    );
}

#[test]
fn over_the_byte_rate_input_waits_in_the_buffer() {
    let broker = rate_limited_broker("bytes_per_connection_per_sec = 100");
    let (mut publisher, mut online) = connected(&broker, "pub", true);
    let big = |pkid: u16| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "a/b".into(),
            pkid,
            payload: Bytes::from(vec![b'x'; 80]),
            properties: Default::default(),
        })
    };
    // 89 bytes each: the first leaves 11 of 100, the second puts the connection 78 in debt.
    send_all(&mut publisher, &mut online, (1..=3).map(big)).unwrap();
    assert_eq!(
        written(&mut publisher),
        vec![Packet::PubAck(Ack::new(1)), Packet::PubAck(Ack::new(2))]
    );
    assert_eq!(publisher.input.len(), 89, "the third waits, undecoded");
    let _first_report = publisher.throttling(&online);
    let throttling = publisher.throttling(&online).unwrap();
    assert!(throttling.read_paused);
    let wait = throttling
        .wake_at
        .unwrap()
        .saturating_duration_since(std::time::Instant::now());
    assert!(
        wait > std::time::Duration::from_millis(700)
            && wait <= std::time::Duration::from_millis(790),
        "78 bytes of debt + 1 at 100 B/s: {wait:?}"
    );
    // Nothing was lost: delayed, not dropped.
    assert_eq!(dropped_rate_limited(&broker), 0);
}

#[test]
fn a_shadow_request_is_routed_and_answered_and_its_answer_topics_are_refused_to_clients() {
    let broker = broker();
    let (mut subscriber, mut sub_online) = connected_v5(&broker, "sub");
    subscribe_v5(
        &mut subscriber,
        &mut sub_online,
        "$aws/things/lamp/shadow/#",
        QoS::AtLeastOnce,
    );
    let (mut publisher, mut pub_online) = connected_v5(&broker, "pub");
    send(
        &mut publisher,
        &mut pub_online,
        publish("$aws/things/lamp/shadow/get", QoS::AtLeastOnce, 1),
    )
    .unwrap();
    assert_eq!(written(&mut publisher), vec![Packet::PubAck(Ack::new(1))]);
    // A client's publish to an answer topic: refused as unauthorized, not routed.
    send(
        &mut publisher,
        &mut pub_online,
        publish("$aws/things/lamp/shadow/get/accepted", QoS::AtLeastOnce, 2),
    )
    .expect("the connection continues");
    match &written(&mut publisher)[..] {
        [Packet::PubAck(ack)] => assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }
    // The request itself reaches the subscriber, then the service's answer (the
    // dispatcher publishes from its own thread): "hello" is not a JSON document.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !seen
        .iter()
        .any(|topic: &String| topic.ends_with("/rejected"))
    {
        assert!(std::time::Instant::now() < deadline, "no answer: {seen:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
        seen.extend(received_topics(&mut subscriber, &mut sub_online));
    }
    assert_eq!(
        seen,
        [
            "$aws/things/lamp/shadow/get",
            "$aws/things/lamp/shadow/get/rejected"
        ]
    );
}
