//! One seam over rumqttc's two clients: MQTT 3.1.1 (`rumqttc::{AsyncClient, EventLoop}`)
//! and MQTT 5 (`rumqttc::v5::{AsyncClient, EventLoop}`).
//!
//! The session task (manager.rs) runs one loop for both versions: it hands requests to a
//! [`Client`] and reads [`SessionEvent`]s, the SDK's own normalized events (CONNACK with
//! its properties, incoming messages with their properties, acks with reason codes, the
//! packet ids of outgoing packets), or one [`Failure`] when the connection ends. Everything
//! version-specific — option building, property and reason-code conversion, error
//! classification — lives here, as pure functions where possible so it can be unit-tested
//! without a broker.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rumqttc::v5 as r5;
use rumqttc::v5::mqttbytes::v5 as p5;
use tokio::sync::mpsc;

use crate::manager::{Message, Status};
use crate::mqtt5::{ConnackProperties, PayloadFormat, PublishProperties, ReasonCode};
use crate::QoS;

/// rumqttc's options for one connection, per protocol version (boxed: hundreds of bytes,
/// of different sizes, built once per connection attempt).
pub(crate) enum Options {
    V3(Box<rumqttc::MqttOptions>),
    V5(Box<r5::MqttOptions>),
}

/// What the session learns from the connection, the same for both versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionEvent {
    /// CONNACK accepted (`session_present` inside; the other fields MQTT 5 only).
    Connected(ConnackProperties),
    /// An incoming PUBLISH (already acknowledged by rumqttc).
    Message(Message),
    /// PUBACK for a QoS 1 publish (MQTT 3.1.1: always 0x00).
    PubAck {
        pkid: u16,
        reason: ReasonCode,
        reason_string: Option<String>,
    },
    /// SUBACK, one code per filter (MQTT 3.1.1: the granted QoS or 0x80).
    SubAck {
        pkid: u16,
        reasons: Vec<ReasonCode>,
        reason_string: Option<String>,
    },
    /// UNSUBACK (MQTT 3.1.1 carries no codes: empty).
    UnsubAck {
        pkid: u16,
        reasons: Vec<ReasonCode>,
        reason_string: Option<String>,
    },
    /// rumqttc wrote a PUBLISH under this packet id (0 for QoS 0).
    OutgoingPublish(u16),
    /// rumqttc holds a publish: its packet id is still unacknowledged (see inflight.rs).
    AwaitAck(u16),
    OutgoingSubscribe(u16),
    OutgoingUnsubscribe(u16),
    OutgoingDisconnect,
    /// Pings, our own acks: nothing for the session.
    Other,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The status it reports.
    pub(crate) status: Status,
    /// Human-readable cause, for the log (the CLI prints it).
    pub(crate) error: String,
    /// The broker's reason code, when it gave one: a refused CONNACK, a server DISCONNECT.
    pub(crate) reason: Option<ReasonCode>,
}

/// The connection's request channel is closed (the event loop ended).
#[derive(Debug)]
pub(crate) struct Closed;

/// Why a publish was not handed over.
#[derive(Debug)]
pub(crate) enum PublishError {
    Closed,
    /// Larger than the broker's Maximum Packet Size (MQTT 5 CONNACK): rumqttc would end the
    /// connection on it, so it is refused before.
    TooLarge,
}

/// The request side of a connection.
pub(crate) enum Client {
    V3(rumqttc::AsyncClient),
    V5 {
        client: r5::AsyncClient,
        /// The broker's Maximum Packet Size from CONNACK (u32::MAX: none).
        max_packet: Arc<AtomicU32>,
    },
}

pub(crate) type Events = mpsc::UnboundedReceiver<Result<SessionEvent, Failure>>;

/// Start the connection: rumqttc's event loop runs in its own task (returned, abort it to
/// stop) and forwards normalized events until the first failure.
pub(crate) fn start(
    options: Options,
    connect_timeout_secs: u64,
) -> (Client, Events, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut network = rumqttc::NetworkOptions::new();
    network.set_connection_timeout(connect_timeout_secs);
    // Without TCP_NODELAY a request published right after the PUBACK of the previous
    // answer waits for the broker's delayed ACK (Nagle): ~40 ms per request/response.
    network.set_tcp_nodelay(true);
    match options {
        Options::V3(o) => {
            let (client, mut el) = rumqttc::AsyncClient::new(*o, 64);
            el.set_network_options(network);
            let poller = tokio::spawn(async move {
                loop {
                    let r = el.poll().await;
                    let end = r.is_err();
                    let r = r.map(from_v3).map_err(|e| failure_v3(&e));
                    if tx.send(r).is_err() || end {
                        break;
                    }
                }
            });
            (Client::V3(client), rx, poller)
        }
        Options::V5(mut o) => {
            // rumqttc v5 bounds the whole TCP + TLS + WebSocket + CONNACK exchange with the
            // options' timeout and the socket connect with the network options'.
            o.set_connection_timeout(connect_timeout_secs);
            o.set_network_options(network);
            let (client, mut el) = r5::AsyncClient::new(*o, 64);
            let max_packet = Arc::new(AtomicU32::new(u32::MAX));
            let max = max_packet.clone();
            let poller = tokio::spawn(async move {
                loop {
                    let r = el.poll().await;
                    let end = r.is_err();
                    if let Ok(r5::Event::Incoming(p5::Packet::ConnAck(ack))) = &r {
                        let m = ack
                            .properties
                            .as_ref()
                            .and_then(|p| p.max_packet_size)
                            .unwrap_or(u32::MAX);
                        max.store(m, Ordering::Relaxed);
                    }
                    let r = r.map(from_v5).map_err(|e| failure_v5(&e));
                    if tx.send(r).is_err() || end {
                        break;
                    }
                }
            });
            (Client::V5 { client, max_packet }, rx, poller)
        }
    }
}

impl Client {
    pub(crate) async fn publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Bytes,
        properties: &PublishProperties,
    ) -> Result<(), PublishError> {
        match self {
            Client::V3(c) => c
                .publish_bytes(topic, v3_qos(qos), retain, payload)
                .await
                .map_err(|_| PublishError::Closed),
            Client::V5 { client, max_packet } => {
                let props = to_v5_properties(properties);
                let max = max_packet.load(Ordering::Relaxed);
                if max != u32::MAX {
                    let mut p =
                        p5::Publish::new(topic, v5_qos(qos), payload.clone(), props.clone());
                    // The packet id is assigned later; count its two bytes now.
                    p.pkid = u16::from(qos == QoS::AtLeastOnce);
                    if p.size() > max as usize {
                        return Err(PublishError::TooLarge);
                    }
                }
                let r = match props {
                    Some(props) => {
                        client
                            .publish_bytes_with_properties(
                                topic,
                                v5_qos(qos),
                                retain,
                                payload,
                                props,
                            )
                            .await
                    }
                    None => {
                        client
                            .publish_bytes(topic, v5_qos(qos), retain, payload)
                            .await
                    }
                };
                r.map_err(|_| PublishError::Closed)
            }
        }
    }

    pub(crate) async fn subscribe(&self, filter: &str, qos: QoS) -> Result<(), Closed> {
        match self {
            Client::V3(c) => c.subscribe(filter, v3_qos(qos)).await.map_err(|_| Closed),
            Client::V5 { client, .. } => client
                .subscribe(filter, v5_qos(qos))
                .await
                .map_err(|_| Closed),
        }
    }

    pub(crate) async fn unsubscribe(&self, filter: &str) -> Result<(), Closed> {
        match self {
            Client::V3(c) => c.unsubscribe(filter).await.map_err(|_| Closed),
            Client::V5 { client, .. } => client.unsubscribe(filter).await.map_err(|_| Closed),
        }
    }

    /// Without waiting for room in the request channel (from a non-async context).
    pub(crate) fn try_unsubscribe(&self, filter: &str) -> Result<(), Closed> {
        match self {
            Client::V3(c) => c.try_unsubscribe(filter).map_err(|_| Closed),
            Client::V5 { client, .. } => client.try_unsubscribe(filter).map_err(|_| Closed),
        }
    }

    pub(crate) async fn disconnect(&self) -> Result<(), Closed> {
        match self {
            Client::V3(c) => c.disconnect().await.map_err(|_| Closed),
            Client::V5 { client, .. } => client.disconnect().await.map_err(|_| Closed),
        }
    }
}

// ---------------------------------------------------------------------------------------
// MQTT 3.1.1

pub(crate) fn v3_qos(q: QoS) -> rumqttc::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
    }
}

/// rumqttc's QoS 2 never reaches us from IoT Core; shown as QoS 1 (the SDK has no QoS 2).
fn from_v3_qos(q: rumqttc::QoS) -> QoS {
    if q == rumqttc::QoS::AtMostOnce {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

pub(crate) fn from_v3(ev: rumqttc::Event) -> SessionEvent {
    use rumqttc::{Event, Incoming, SubscribeReasonCode};
    match ev {
        Event::Incoming(Incoming::ConnAck(ack)) => SessionEvent::Connected(ConnackProperties {
            session_present: ack.session_present,
            ..ConnackProperties::default()
        }),
        Event::Incoming(Incoming::Publish(p)) => SessionEvent::Message(Message {
            topic: p.topic,
            payload: p.payload,
            qos: from_v3_qos(p.qos),
            retain: p.retain,
            properties: PublishProperties::default(),
        }),
        Event::Incoming(Incoming::PubAck(a)) => SessionEvent::PubAck {
            pkid: a.pkid,
            reason: ReasonCode::SUCCESS,
            reason_string: None,
        },
        Event::Incoming(Incoming::SubAck(a)) => SessionEvent::SubAck {
            pkid: a.pkid,
            reasons: a
                .return_codes
                .iter()
                .map(|c| match c {
                    SubscribeReasonCode::Success(q) => ReasonCode(*q as u8),
                    SubscribeReasonCode::Failure => ReasonCode::UNSPECIFIED_ERROR,
                })
                .collect(),
            reason_string: None,
        },
        Event::Incoming(Incoming::UnsubAck(a)) => SessionEvent::UnsubAck {
            pkid: a.pkid,
            reasons: Vec::new(),
            reason_string: None,
        },
        Event::Outgoing(o) => outgoing(o),
        Event::Incoming(_) => SessionEvent::Other,
    }
}

fn outgoing(o: rumqttc::Outgoing) -> SessionEvent {
    use rumqttc::Outgoing;
    match o {
        Outgoing::Publish(pkid) => SessionEvent::OutgoingPublish(pkid),
        Outgoing::AwaitAck(pkid) => SessionEvent::AwaitAck(pkid),
        Outgoing::Subscribe(pkid) => SessionEvent::OutgoingSubscribe(pkid),
        Outgoing::Unsubscribe(pkid) => SessionEvent::OutgoingUnsubscribe(pkid),
        Outgoing::Disconnect => SessionEvent::OutgoingDisconnect,
        _ => SessionEvent::Other,
    }
}

fn websocket_status(text: &str) -> Status {
    // tungstenite reports a refused upgrade as "HTTP error: 401 Unauthorized".
    if text.contains("401") || text.contains("403") {
        Status::ConnectionRefused
    } else {
        Status::ConnectionError
    }
}

pub(crate) fn failure_v3(e: &rumqttc::ConnectionError) -> Failure {
    use rumqttc::{ConnectionError as CE, StateError as SE};
    let status = match e {
        CE::ConnectionRefused(_) => Status::ConnectionRefused,
        CE::NotConnAck(_) | CE::ResponseValidation(_) => Status::ProtocolError,
        CE::MqttState(
            SE::Io(_)
            | SE::ConnectionAborted
            | SE::Deserialization(rumqttc::mqttbytes::Error::Io(_)),
        ) => Status::ConnectionError,
        CE::MqttState(_) => Status::ProtocolError,
        CE::Websocket(w) => websocket_status(&w.to_string()),
        _ => Status::ConnectionError,
    };
    let reason = match e {
        CE::ConnectionRefused(code) => Some(ReasonCode(*code as u8)),
        _ => None,
    };
    Failure {
        status,
        error: e.to_string(),
        reason,
    }
}

// ---------------------------------------------------------------------------------------
// MQTT 5

fn v5_qos(q: QoS) -> r5::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => r5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => r5::mqttbytes::QoS::AtLeastOnce,
    }
}

pub(crate) fn v5_last_will(w: &crate::config::LastWill) -> p5::LastWill {
    p5::LastWill::new(&w.topic, w.message.to_vec(), v5_qos(w.qos), w.retain, None)
}

fn to_v5_properties(p: &PublishProperties) -> Option<p5::PublishProperties> {
    if p.is_empty() {
        return None;
    }
    Some(p5::PublishProperties {
        payload_format_indicator: p.payload_format.map(PayloadFormat::byte),
        message_expiry_interval: p.message_expiry_interval,
        topic_alias: None,
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        subscription_identifiers: Vec::new(),
        content_type: p.content_type.clone(),
    })
}

fn from_v5_properties(p: Option<p5::PublishProperties>) -> PublishProperties {
    let Some(p) = p else {
        return PublishProperties::default();
    };
    PublishProperties {
        payload_format: p.payload_format_indicator.map(PayloadFormat::from_byte),
        message_expiry_interval: p.message_expiry_interval,
        content_type: p.content_type,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        user_properties: p.user_properties,
    }
}

fn connack_v5(ack: p5::ConnAck) -> ConnackProperties {
    let mut c = ConnackProperties {
        session_present: ack.session_present,
        ..ConnackProperties::default()
    };
    if let Some(p) = ack.properties {
        c.session_expiry_interval = p.session_expiry_interval;
        c.receive_maximum = p.receive_max;
        c.maximum_qos = p.max_qos;
        c.retain_available = p.retain_available;
        c.maximum_packet_size = p.max_packet_size;
        c.assigned_client_identifier = p.assigned_client_identifier;
        c.topic_alias_maximum = p.topic_alias_max;
        c.reason_string = p.reason_string;
        c.user_properties = p.user_properties;
        c.wildcard_subscription_available = p.wildcard_subscription_available;
        c.subscription_identifiers_available = p.subscription_identifiers_available;
        c.shared_subscription_available = p.shared_subscription_available;
        c.server_keep_alive = p.server_keep_alive;
        c.response_information = p.response_information;
    }
    c
}

fn puback_code(r: p5::PubAckReason) -> u8 {
    use p5::PubAckReason as R;
    match r {
        R::Success => 0x00,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

fn suback_code(r: p5::SubscribeReasonCode) -> u8 {
    use p5::SubscribeReasonCode as R;
    match r {
        R::Success(q) => q as u8,
        R::Failure | R::Unspecified => 0x80,
        R::ImplementationSpecific => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicFilterInvalid => 0x8F,
        R::PkidInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::SharedSubscriptionsNotSupported => 0x9E,
        R::SubscriptionIdNotSupported => 0xA1,
        R::WildcardSubscriptionsNotSupported => 0xA2,
    }
}

fn unsuback_code(r: p5::UnsubAckReason) -> u8 {
    use p5::UnsubAckReason as R;
    match r {
        R::Success => 0x00,
        R::NoSubscriptionExisted => 0x11,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicFilterInvalid => 0x8F,
        R::PacketIdentifierInUse => 0x91,
    }
}

fn connack_code(r: p5::ConnectReturnCode) -> u8 {
    use p5::ConnectReturnCode as R;
    match r {
        R::Success => 0x00,
        // MQTT 3.1.1 codes, never decoded on an MQTT 5 connection.
        R::RefusedProtocolVersion => 0x01,
        R::BadClientId => 0x02,
        R::ServiceUnavailable => 0x03,
        R::UnspecifiedError => 0x80,
        R::MalformedPacket => 0x81,
        R::ProtocolError => 0x82,
        R::ImplementationSpecificError => 0x83,
        R::UnsupportedProtocolVersion => 0x84,
        R::ClientIdentifierNotValid => 0x85,
        R::BadUserNamePassword => 0x86,
        R::NotAuthorized => 0x87,
        R::ServerUnavailable => 0x88,
        R::ServerBusy => 0x89,
        R::Banned => 0x8A,
        R::BadAuthenticationMethod => 0x8C,
        R::TopicNameInvalid => 0x90,
        R::PacketTooLarge => 0x95,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
        R::RetainNotSupported => 0x9A,
        R::QoSNotSupported => 0x9B,
        R::UseAnotherServer => 0x9C,
        R::ServerMoved => 0x9D,
        R::ConnectionRateExceeded => 0x9F,
    }
}

fn reason_string_of<T>(p: &Option<T>, f: impl Fn(&T) -> &Option<String>) -> Option<String> {
    p.as_ref().and_then(|p| f(p).clone())
}

pub(crate) fn from_v5(ev: r5::Event) -> SessionEvent {
    use p5::Packet;
    match ev {
        r5::Event::Incoming(Packet::ConnAck(ack)) => SessionEvent::Connected(connack_v5(ack)),
        r5::Event::Incoming(Packet::Publish(p)) => SessionEvent::Message(Message {
            // rumqttc has already replaced an inbound topic alias by its topic.
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload,
            qos: if p.qos == r5::mqttbytes::QoS::AtMostOnce {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            },
            retain: p.retain,
            properties: from_v5_properties(p.properties),
        }),
        r5::Event::Incoming(Packet::PubAck(a)) => SessionEvent::PubAck {
            pkid: a.pkid,
            reason: ReasonCode(puback_code(a.reason)),
            reason_string: reason_string_of(&a.properties, |p| &p.reason_string),
        },
        r5::Event::Incoming(Packet::SubAck(a)) => SessionEvent::SubAck {
            pkid: a.pkid,
            reasons: a
                .return_codes
                .iter()
                .map(|c| ReasonCode(suback_code(*c)))
                .collect(),
            reason_string: reason_string_of(&a.properties, |p| &p.reason_string),
        },
        r5::Event::Incoming(Packet::UnsubAck(a)) => SessionEvent::UnsubAck {
            pkid: a.pkid,
            reasons: a
                .reasons
                .iter()
                .map(|c| ReasonCode(unsuback_code(*c)))
                .collect(),
            reason_string: reason_string_of(&a.properties, |p| &p.reason_string),
        },
        r5::Event::Outgoing(o) => outgoing(o),
        r5::Event::Incoming(_) => SessionEvent::Other,
    }
}

fn with_reason_string(text: String, reason_string: &Option<String>) -> String {
    match reason_string {
        Some(s) if !s.is_empty() => format!("{text} ({s})"),
        _ => text,
    }
}

pub(crate) fn failure_v5(e: &r5::ConnectionError) -> Failure {
    use r5::{ConnectionError as CE, StateError as SE};
    match e {
        CE::ConnectionRefused(code) | CE::MqttState(SE::ConnFail { reason: code }) => {
            let rc = ReasonCode(connack_code(*code));
            Failure {
                status: Status::ConnectionRefused,
                error: format!("connection refused: CONNACK {rc}"),
                reason: Some(rc),
            }
        }
        CE::MqttState(SE::ServerDisconnect {
            reason_code,
            reason_string,
        }) => {
            let rc = ReasonCode(*reason_code as u8);
            Failure {
                status: Status::ConnectionError,
                error: with_reason_string(format!("server DISCONNECT {rc}"), reason_string),
                reason: Some(rc),
            }
        }
        _ => {
            let status = match e {
                CE::NotConnAck(_) | CE::ResponseValidation(_) => Status::ProtocolError,
                CE::MqttState(
                    SE::Io(_)
                    | SE::ConnectionAborted
                    | SE::Deserialization(r5::mqttbytes::Error::Io(_)),
                ) => Status::ConnectionError,
                CE::MqttState(_) => Status::ProtocolError,
                CE::Websocket(w) => websocket_status(&w.to_string()),
                _ => Status::ConnectionError,
            };
            Failure {
                status,
                error: e.to_string(),
                reason: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v5_publish_keeps_every_property_in_order() {
        let mut p = p5::Publish::new(
            "a/b",
            r5::mqttbytes::QoS::AtLeastOnce,
            Bytes::from_static(b"hi"),
            Some(p5::PublishProperties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(30),
                topic_alias: Some(3),
                response_topic: Some("r/1".into()),
                correlation_data: Some(Bytes::from_static(b"c1")),
                user_properties: vec![("z".into(), "1".into()), ("a".into(), "2".into())],
                subscription_identifiers: vec![],
                content_type: Some("text/plain".into()),
            }),
        );
        p.retain = true;
        let ev = from_v5(r5::Event::Incoming(p5::Packet::Publish(p)));
        let SessionEvent::Message(m) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!((m.topic.as_str(), &m.payload[..]), ("a/b", &b"hi"[..]));
        assert_eq!((m.qos, m.retain), (QoS::AtLeastOnce, true));
        assert_eq!(
            m.properties,
            PublishProperties::new()
                .payload_format(PayloadFormat::Utf8)
                .message_expiry_interval(30)
                .response_topic("r/1")
                .correlation_data(Bytes::from_static(b"c1"))
                .user_property("z", "1")
                .user_property("a", "2")
                .content_type("text/plain")
        );
        // And back: what the SDK sends is what it was given (no alias, no identifiers).
        let back = to_v5_properties(&m.properties).unwrap();
        assert_eq!(back.user_properties[0].0, "z");
        assert_eq!(back.topic_alias, None);
        assert_eq!(from_v5_properties(Some(back)), m.properties);
        assert_eq!(to_v5_properties(&PublishProperties::new()), None);
    }

    #[test]
    fn acks_carry_reason_codes_and_strings() {
        let a = p5::PubAck {
            pkid: 7,
            reason: p5::PubAckReason::NotAuthorized,
            properties: Some(p5::PubAckProperties {
                reason_string: Some("denied by policy".into()),
                user_properties: vec![],
            }),
        };
        assert_eq!(
            from_v5(r5::Event::Incoming(p5::Packet::PubAck(a))),
            SessionEvent::PubAck {
                pkid: 7,
                reason: ReasonCode(0x87),
                reason_string: Some("denied by policy".into())
            }
        );
        let s = p5::SubAck {
            pkid: 2,
            return_codes: vec![
                p5::SubscribeReasonCode::Success(r5::mqttbytes::QoS::AtLeastOnce),
                p5::SubscribeReasonCode::NotAuthorized,
                p5::SubscribeReasonCode::Unspecified,
            ],
            properties: None,
        };
        assert_eq!(
            from_v5(r5::Event::Incoming(p5::Packet::SubAck(s))),
            SessionEvent::SubAck {
                pkid: 2,
                reasons: vec![ReasonCode(1), ReasonCode(0x87), ReasonCode(0x80)],
                reason_string: None
            }
        );
        let u = p5::UnsubAck {
            pkid: 3,
            reasons: vec![p5::UnsubAckReason::NoSubscriptionExisted],
            properties: None,
        };
        assert_eq!(
            from_v5(r5::Event::Incoming(p5::Packet::UnsubAck(u))),
            SessionEvent::UnsubAck {
                pkid: 3,
                reasons: vec![ReasonCode(0x11)],
                reason_string: None
            }
        );
        // MQTT 3.1.1: success without a code on PUBACK, granted QoS or 0x80 on SUBACK.
        assert_eq!(
            from_v3(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(
                rumqttc::PubAck::new(9)
            ))),
            SessionEvent::PubAck {
                pkid: 9,
                reason: ReasonCode::SUCCESS,
                reason_string: None
            }
        );
        assert_eq!(
            from_v3(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(
                rumqttc::SubAck::new(
                    4,
                    vec![
                        rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtMostOnce),
                        rumqttc::SubscribeReasonCode::Failure
                    ]
                )
            ))),
            SessionEvent::SubAck {
                pkid: 4,
                reasons: vec![ReasonCode(0), ReasonCode(0x80)],
                reason_string: None
            }
        );
    }

    #[test]
    fn connack_and_outgoing_events_are_the_same_for_both_versions() {
        let ack = p5::ConnAck {
            session_present: true,
            code: p5::ConnectReturnCode::Success,
            properties: Some(p5::ConnAckProperties {
                session_expiry_interval: Some(3600),
                receive_max: Some(100),
                max_qos: Some(1),
                retain_available: Some(1),
                max_packet_size: Some(149504),
                assigned_client_identifier: Some("$GEN/abc".into()),
                topic_alias_max: Some(8),
                reason_string: None,
                user_properties: vec![],
                wildcard_subscription_available: Some(1),
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(1),
                server_keep_alive: Some(1200),
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            }),
        };
        let SessionEvent::Connected(c) = from_v5(r5::Event::Incoming(p5::Packet::ConnAck(ack)))
        else {
            panic!()
        };
        assert!(c.session_present);
        assert_eq!(c.receive_maximum, Some(100));
        assert_eq!(c.assigned_client_identifier.as_deref(), Some("$GEN/abc"));
        assert_eq!(c.server_keep_alive, Some(1200));
        let SessionEvent::Connected(c) =
            from_v3(rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(
                rumqttc::ConnAck::new(rumqttc::ConnectReturnCode::Success, false),
            )))
        else {
            panic!()
        };
        assert_eq!(c, ConnackProperties::default());
        for (o, want) in [
            (
                rumqttc::Outgoing::Publish(5),
                SessionEvent::OutgoingPublish(5),
            ),
            (rumqttc::Outgoing::AwaitAck(5), SessionEvent::AwaitAck(5)),
            (
                rumqttc::Outgoing::Subscribe(6),
                SessionEvent::OutgoingSubscribe(6),
            ),
            (
                rumqttc::Outgoing::Unsubscribe(7),
                SessionEvent::OutgoingUnsubscribe(7),
            ),
            (
                rumqttc::Outgoing::Disconnect,
                SessionEvent::OutgoingDisconnect,
            ),
            (rumqttc::Outgoing::PingReq, SessionEvent::Other),
        ] {
            assert_eq!(from_v3(rumqttc::Event::Outgoing(o.clone())), want);
            assert_eq!(from_v5(r5::Event::Outgoing(o)), want);
        }
    }

    #[test]
    fn failures_name_the_brokers_reason() {
        let f = failure_v5(&r5::ConnectionError::ConnectionRefused(
            p5::ConnectReturnCode::NotAuthorized,
        ));
        assert_eq!(f.status, Status::ConnectionRefused);
        assert_eq!(f.reason, Some(ReasonCode(0x87)));
        assert_eq!(f.error, "connection refused: CONNACK 0x87 Not authorized");
        let f = failure_v5(&r5::ConnectionError::MqttState(
            r5::StateError::ServerDisconnect {
                reason_code: p5::DisconnectReasonCode::SessionTakenOver,
                reason_string: Some("another connection".into()),
            },
        ));
        assert_eq!(f.status, Status::ConnectionError);
        assert_eq!(
            f.error,
            "server DISCONNECT 0x8E Session taken over (another connection)"
        );
        let f = failure_v5(&r5::ConnectionError::MqttState(
            r5::StateError::ConnectionAborted,
        ));
        assert_eq!((f.status, f.reason), (Status::ConnectionError, None));
        let f = failure_v3(&rumqttc::ConnectionError::ConnectionRefused(
            rumqttc::ConnectReturnCode::NotAuthorized,
        ));
        assert_eq!(
            (f.status, f.reason),
            (Status::ConnectionRefused, Some(ReasonCode(5)))
        );
    }
}
