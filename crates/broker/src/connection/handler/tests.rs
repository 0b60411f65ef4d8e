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
