//! The sans-I/O half of a connection: everything it decides, with no socket.
//!
//! [`PacketHandler`] holds the bytes received but not yet decoded, the bytes to write, and
//! the acknowledgements that wait for the store. The connection task (`super`) moves bytes
//! between it and the socket and tells it how far the store has committed; everything
//! else — CONNECT admission, IoT Core's checks, policy decisions, routing, retained
//! messages, ack-after-durable ordering, the will and lifecycle events — happens here, in
//! plain synchronous calls that the unit tests below drive against an in-memory broker.
//!
//! A handler's outcome is what it leaves in `output` (packets to write, in order) and,
//! when the connection must end, an [`Ending`].
//!
//! One handler serves MQTT 3.1.1 and MQTT 5: the version the CONNECT chose decides how
//! packets are decoded and encoded, and how a refusal is answered. Under 3.1.1 IoT Core
//! closes the connection for most errors; under MQTT 5 it answers with a reason code
//! (PUBACK/SUBACK 0x87 for a denied action, a server DISCONNECT with a reason for what
//! ends the connection), and so does this handler.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use iot::client_rules::{self, Refusal};
use iot::lifecycle::{self, DisconnectReason, EventContext};
use iot::{Action, RequestContext, ResourceKind};
use mqtt::{
    Ack, AckProperties, ConnAck, ConnAckProperties, Connect, Disconnect, LastWill, Packet,
    Protocol, Publish, PublishRef, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};
use shadow::ShadowTopic;
use tracing::{debug, info, warn};

use crate::auth::{ConnectionPolicy, Denied, Identity};
use crate::broker::Broker;
use crate::clock::unix_millis;
use crate::config::SubscribeDenied;
use crate::message::MessageMeta;
use crate::metrics::Listener;
use crate::session::{
    ConnectionId, ConnectionInfo, Delivery, LiveConnection, Outgoing, Session, SessionKind,
};

use super::rate::{ConnectionRates, RateReport, Throttling};

/// Stop encoding queued messages once a batch reaches this size; the rest waits for the
/// next write so one slow socket does not pin unbounded memory.
pub(super) const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// What an accepted connection carries through its life.
pub(crate) struct Online {
    pub(crate) client_id: Arc<str>,
    pub(crate) session: Arc<Session>,
    /// Wakes the connection (messages queued, session taken over) or asks it to close.
    pub(crate) live: Arc<LiveConnection>,
    will: Option<Box<LastWill>>,
    pub(crate) keep_alive: Duration,
    /// Lifecycle events' `sessionIdentifier`, written out as a UUID when an event is sent.
    session_identifier: u128,
    version_number: u64,
    pub(crate) policy: ConnectionPolicy,
    /// When the connection must end at the latest, and why.
    pub(crate) ends_at: Option<(tokio::time::Instant, DisconnectReason)>,
    /// MQTT 5 topic aliases the client set (index = alias - 1); allocated when it sets
    /// one, so a connection that never does carries one null pointer.
    topic_aliases: Option<Box<[Option<String>]>>,
}

/// Why a connection ended, whether its will is due, and what an MQTT 5 client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ending {
    pub(crate) reason: DisconnectReason,
    pub(crate) publish_will: bool,
    /// The reason code (and reason string) of the DISCONNECT the server sends an MQTT 5
    /// client before closing; 3.1.1 has no server DISCONNECT, the socket just closes.
    pub(crate) disconnect: Option<(ReasonCode, String)>,
}

impl Ending {
    pub(crate) fn abnormal(reason: DisconnectReason) -> Ending {
        Ending {
            reason,
            publish_will: true,
            disconnect: None,
        }
    }

    /// Ends the connection telling an MQTT 5 client `code` and why.
    pub(crate) fn telling(mut self, code: ReasonCode, why: impl Into<String>) -> Ending {
        self.disconnect = Some((code, reason_text(why.into())));
        self
    }
}

/// The longest reason string the broker sends. Reasons quote what the client sent (a
/// topic, a filter), which may be up to a packet long; a property holds at most 65535
/// bytes, and a reason is for a human reading a log, so it is cut here, in one place.
const MAX_REASON_STRING_BYTES: usize = 256;

fn reason_text(mut why: String) -> String {
    if why.len() > MAX_REASON_STRING_BYTES {
        let mut cut = MAX_REASON_STRING_BYTES - 3;
        while !why.is_char_boundary(cut) {
            cut -= 1;
        }
        why.truncate(cut);
        why.push_str("...");
    }
    why
}

/// A CONNECT that was accepted: the connection's state, and the store sequence number the
/// CONNACK (already in `output`) must wait for.
pub(crate) struct Admitted {
    pub(crate) online: Online,
    pub(crate) durable: u64,
}

pub(crate) struct PacketHandler {
    pub(crate) broker: Arc<Broker>,
    pub(crate) id: ConnectionId,
    pub(crate) peer: SocketAddr,
    /// Received bytes not yet decoded (a partial packet); empty and unallocated between
    /// packets.
    pub(crate) input: BytesMut,
    /// Encoded packets not yet written; unallocated once everything is written.
    pub(crate) output: BytesMut,
    /// Acknowledgements (PUBACK, SUBACK, UNSUBACK) held until the store has made what
    /// they acknowledge durable, in order (MQTT-4.6.0-2): `(packet, store sequence number)`.
    pub(crate) pending_acks: VecDeque<(Packet, u64)>,
    /// How far the store has committed, as the connection task last told it (it looks
    /// while acknowledgements wait; an older figure only holds a new ack one pass);
    /// `u64::MAX` in memory, where everything is as durable as it gets.
    pub(crate) committed: u64,
    /// The version CONNECT chose (3.1.1 until then).
    pub(crate) protocol: Protocol,
    /// MQTT 5 Request Problem Information: reason strings on acknowledgements only if set.
    problem_information: bool,
    /// The session expiry interval was zero at CONNECT: MQTT 5 DISCONNECT may not raise it.
    expiry_was_zero: bool,
    /// The client's Maximum Packet Size (MQTT 5); `u32::MAX` when it set none. Kept here
    /// rather than in `Online`: it fits in this struct's padding.
    client_max_packet: u32,
    /// The listener it came in on (its `pubsub_connections` label); in the padding too.
    pub(crate) listener: Listener,
    /// The per-connection rate limits; `None` (a null pointer) while they are off.
    pub(crate) rates: Option<Box<ConnectionRates>>,
}

impl PacketHandler {
    pub(crate) fn new(broker: Arc<Broker>, peer: SocketAddr) -> PacketHandler {
        let committed = if broker.router.store().is_some() {
            0
        } else {
            u64::MAX
        };
        PacketHandler {
            id: broker.router.next_connection_id(),
            peer,
            input: BytesMut::new(),
            output: BytesMut::new(),
            pending_acks: VecDeque::new(),
            committed,
            protocol: Protocol::V311,
            problem_information: true,
            expiry_was_zero: false,
            client_max_packet: u32::MAX,
            listener: Listener::Mqtt,
            rates: ConnectionRates::new(&broker.config.limits, Instant::now()),
            broker,
        }
    }

    fn v5(&self) -> bool {
        self.protocol.is_v5()
    }

    pub(crate) fn max_packet_size(&self) -> usize {
        client_rules::max_packet_size(&self.broker.config.limits)
    }

    /// The first packet, once it is complete. `Err` closes the connection (logged here;
    /// a CONNACK is queued where the client can read one: 3.1.1's return code 1 for an
    /// unsupported protocol level, an MQTT 5 reason code for an MQTT 5 CONNECT that does
    /// not decode).
    pub(crate) fn decode_connect(&mut self) -> Result<Option<Connect>, ()> {
        let max_packet_size = self.max_packet_size();
        let asked = mqtt::peek_connect_protocol(&self.input);
        match mqtt::decode(&mut self.input, max_packet_size, Protocol::V311) {
            Ok(Some(Packet::Connect(connect))) => {
                self.protocol = connect.protocol;
                Ok(Some(connect))
            }
            Ok(Some(other)) => {
                info!(peer = %self.peer, packet = other.name(), "closing connection: first packet is not CONNECT");
                Err(())
            }
            Ok(None) => Ok(None),
            Err(error) => {
                if asked == Some(Protocol::V5) {
                    self.protocol = Protocol::V5;
                    let mut connack = ConnAck::new(false, error.reason_code());
                    connack.properties.reason_string = Some(reason_text(error.to_string()));
                    self.queue_packet(&Packet::ConnAck(connack));
                    info!(peer = %self.peer, %error, code = %error.reason_code(), "closing connection: MQTT 5 CONNECT refused");
                } else {
                    if client_rules::is_unsupported_protocol_level(&error) {
                        self.queue_connack(false, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
                    }
                    info!(peer = %self.peer, %error, "closing connection: malformed CONNECT");
                }
                Err(())
            }
        }
    }

    pub(crate) fn queue_connack(&mut self, session_present: bool, code: ReasonCode) {
        self.queue_packet(&Packet::ConnAck(ConnAck::new(session_present, code)));
    }

    /// A refusing CONNACK; MQTT 5 clients also get the reason as a reason string.
    fn queue_refusal(&mut self, code: ReasonCode, reason: &str) {
        let mut connack = ConnAck::new(false, code);
        if self.v5() {
            connack.properties.reason_string = Some(reason_text(reason.to_owned()));
        }
        self.queue_packet(&Packet::ConnAck(connack));
    }

    /// Properties for an acknowledgement saying `why`: a reason string, unless an MQTT 5
    /// client asked for none (Request Problem Information 0, MQTT-3.1.2-29).
    fn problem(&self, why: &str) -> AckProperties {
        AckProperties {
            reason_string: self
                .problem_information
                .then(|| reason_text(why.to_owned())),
            user_properties: Vec::new(),
        }
    }

    /// Applies IoT Core's CONNECT rules to an authenticated client, opens its session and
    /// queues CONNACK (and, on a resumed session, the redeliveries). `None`: refused, with
    /// the CONNACK to send (if any) queued and the reason logged.
    pub(crate) fn admit(
        &mut self,
        mut connect: Connect,
        identity: &Identity,
        lifetime: Option<(Duration, DisconnectReason)>,
    ) -> Option<Admitted> {
        let broker = self.broker.clone();
        let limits = &broker.config.limits;
        let v5 = connect.protocol.is_v5();
        self.protocol = connect.protocol;
        self.problem_information = connect
            .properties
            .request_problem_information
            .unwrap_or(true);
        if connect.client_id.is_empty() && connect.clean_session && !v5 {
            connect.client_id = assigned_client_id(self.id);
        }
        if let Err(refusal) = client_rules::check_connect(&connect, limits) {
            warn!(client_id = %connect.client_id, peer = %self.peer, code = ?refusal.code, reason = %refusal.reason, "CONNECT refused");
            if let Some(code) = refusal.code {
                self.queue_refusal(code, &refusal.reason);
            }
            return None;
        }
        // MQTT 5: the broker names a client that sent no id (Assigned Client Identifier),
        // as IoT Core does, with a `$GEN/` id no client may send itself.
        let mut assigned = None;
        if connect.client_id.is_empty() {
            connect.client_id = format!("$GEN/{}", crate::secrets::uuid_text(rand::random()));
            assigned = Some(connect.client_id.clone());
        }
        let kind = session_kind(&connect, broker.config.session_expiry);
        let context = connect_context(&connect, &kind, self.peer, identity);
        let policies = broker.auth.policies.clone();
        let mut policy = match identity {
            Identity::Authorizer(authorized) => ConnectionPolicy::with_policies(
                policies,
                &authorized.principal_id,
                authorized.policies.clone(),
                context,
            ),
            Identity::Credentials {
                cognito: Some(cognito),
                ..
            } => ConnectionPolicy::new(policies, identity.principal(), context)
                .with_thing_facts()
                .with_cognito(cognito),
            Identity::Certificate(_) | Identity::Credentials { .. } => {
                ConnectionPolicy::new(policies, identity.principal(), context).with_thing_facts()
            }
            Identity::Administrator => {
                let administrator = vec![policies.administrator.clone()];
                ConnectionPolicy::with_policies(
                    policies,
                    identity.principal(),
                    administrator,
                    context,
                )
            }
            _ => ConnectionPolicy::new(policies, identity.principal(), context),
        };
        let now_secs = unix_millis() / 1000;
        let verdict = authorize_connect(&mut policy, &connect).and_then(|()| {
            if broker.router.admit_connect(&connect.client_id, now_secs) {
                Ok(())
            } else {
                Err(Refusal::throttled(
                    &connect,
                    limits.connects_per_client_id_per_sec,
                ))
            }
        });
        if let Err(refusal) = verdict {
            warn!(client_id = %connect.client_id, principal = policy.principal(), peer = %self.peer, code = ?refusal.code, reason = %refusal.reason, "CONNECT refused");
            if let Some(code) = refusal.code {
                self.queue_refusal(code, &refusal.reason);
            }
            return None;
        }
        let max_connections = limits.max_connections;
        let open = broker.router.connections.fetch_add(1, Ordering::Relaxed) + 1;
        if max_connections > 0 && open > max_connections {
            broker.router.connections.fetch_sub(1, Ordering::Relaxed);
            warn!(client_id = %connect.client_id, peer = %self.peer, max_connections, "CONNECT refused: connection limit reached");
            self.queue_refusal(ReasonCode::QUOTA_EXCEEDED, "connection limit reached");
            return None;
        }
        broker
            .metrics
            .connection(self.listener, protocol_label(self.protocol), 1);

        let authorizer_name = match identity {
            Identity::Authorizer(authorized) => Some(authorized.authorizer.as_str()),
            _ => None,
        };
        let live = Arc::new(
            LiveConnection::new(policy.principal(), authorizer_name).with_info(ConnectionInfo {
                listener: self.listener,
                protocol: protocol_label(self.protocol),
                peer: self.peer,
                connected_at_ms: unix_millis(),
            }),
        );
        let opened = broker.router.open_session(
            &connect.client_id,
            connect.clean_session,
            kind,
            self.id,
            live.clone(),
        );
        // The client's Receive Maximum narrows the QoS 1 window toward it.
        let window = connect
            .properties
            .receive_maximum
            .map_or(limits.max_inflight, |max| {
                usize::from(max).min(limits.max_inflight)
            });
        opened
            .session
            .with_state(|state| state.set_max_inflight(window));
        if let Some(previous) = opened.took_over {
            info!(client_id = %connect.client_id, previous_connection = previous, "client id connected again: the older connection is closed (DUPLICATE_CLIENTID)");
        }
        let online = Online {
            live,
            client_id: opened.session.client_id.clone(),
            session: opened.session,
            will: connect.will.take().map(Box::new),
            keep_alive: limits.keep_alive_deadline(connect.keep_alive),
            session_identifier: rand::random(),
            version_number: broker.router.next_version_number(),
            policy,
            ends_at: lifetime.map(|(after, reason)| (tokio::time::Instant::now() + after, reason)),
            topic_aliases: None,
        };
        self.client_max_packet = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
        self.expiry_was_zero = kind.expiry.is_zero();
        let mut connack = ConnAck::new(opened.session_present, ReasonCode::SUCCESS);
        if v5 {
            connack.properties = connack_properties(&connect, &kind, limits, assigned);
        }
        self.queue_packet(&Packet::ConnAck(connack));
        if opened.session_present {
            let redeliveries: Vec<Outgoing> = online.session.redeliveries();
            broker.router.keep_within_budget();
            for outgoing in &redeliveries {
                encode_outgoing(&mut self.output, outgoing, self.protocol, unix_millis);
            }
            broker.metrics.messages_out.add(redeliveries.len() as u64);
        }
        info!(client_id = %online.client_id, principal = online.policy.principal(), peer = %self.peer, protocol = ?connect.protocol, clean_session = connect.clean_session, session_expiry = ?kind.expiry, session_present = opened.session_present, keep_alive = ?online.keep_alive, "client connected");
        Some(Admitted {
            online,
            durable: opened.durable,
        })
    }

    /// Once the CONNACK may go out (its session is durable): the connection becomes
    /// reachable by the control plane and shutdown, and its `connected` event is sent.
    pub(crate) fn go_online(&mut self, online: &Online) {
        self.broker
            .router
            .live
            .register(self.id, online.live.clone());
        let peer_ip = self.peer.ip().to_string();
        self.publish_event(online, |context| {
            lifecycle::connected_event(context, &peer_ip)
        });
    }

    /// Decodes and handles every complete packet in the input buffer; over the byte rate,
    /// the rest stays buffered until the connection's [`Throttling::wake_at`].
    pub(crate) fn handle_input(&mut self, online: &mut Online) -> Result<(), Ending> {
        // Counted once per batch, not per packet.
        let mut publishes = 0;
        let handled = self.handle_packets(online, &mut publishes);
        self.broker.metrics.messages_in.add(publishes);
        handled
    }

    fn handle_packets(&mut self, online: &mut Online, publishes: &mut u64) -> Result<(), Ending> {
        loop {
            if let Some(rates) = &mut self.rates {
                if !self.input.is_empty() && !rates.may_receive(Instant::now()) {
                    return Ok(());
                }
            }
            let max_packet_size = self.max_packet_size();
            let buffered = self.input.len();
            let packet = match mqtt::decode(&mut self.input, max_packet_size, self.protocol) {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(()),
                Err(error) => {
                    warn!(client_id = %online.client_id, principal = online.policy.principal(), %error, "closing connection: malformed packet");
                    return Err(Ending::abnormal(DisconnectReason::ClientError)
                        .telling(error.reason_code(), error.to_string()));
                }
            };
            if let Packet::Publish(_) = &packet {
                *publishes += 1;
                if let Some(rates) = &mut self.rates {
                    rates.received(buffered - self.input.len(), Instant::now());
                }
            }
            self.handle_packet(online, packet)?;
        }
    }

    /// Logs what the rate limits did (at most once a second per connection) and tells the
    /// shell whether to read and when to look again; `None` while no rate is limited.
    pub(crate) fn throttling(&mut self, online: &Online) -> Option<Throttling> {
        let v5 = self.protocol.is_v5();
        let rates = self.rates.as_deref_mut()?;
        let now = Instant::now();
        if let Some(report) = rates.take_report(now, false) {
            log_rate_report(&online.client_id, v5, rates, report);
        }
        Some(rates.throttling(now))
    }

    pub(crate) fn handle_packet(
        &mut self,
        online: &mut Online,
        packet: Packet,
    ) -> Result<(), Ending> {
        match packet {
            Packet::Publish(publish) => self.handle_publish(online, publish),
            Packet::PubAck(ack) => {
                let pkid = ack.pkid;
                if !online.session.with_state(|state| state.acknowledge(pkid)) {
                    debug!(client_id = %online.client_id, pkid, "PUBACK for an unknown packet id ignored");
                }
                Ok(())
            }
            Packet::Subscribe(subscribe) => self.handle_subscribe(online, subscribe),
            Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(online, unsubscribe),
            Packet::PingReq => {
                self.queue_packet(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(disconnect) => Err(self.handle_disconnect(online, disconnect)),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                warn!(client_id = %online.client_id, packet = packet.name(), "closing connection: QoS 2 is not supported (IoT Core)");
                Err(Ending::abnormal(DisconnectReason::ClientError).telling(
                    ReasonCode::PROTOCOL_ERROR,
                    format!(
                        "{} is not supported: QoS 2 is not (IoT Core)",
                        packet.name()
                    ),
                ))
            }
            Packet::Auth(_) => {
                warn!(client_id = %online.client_id, "closing connection: AUTH (enhanced authentication) is not supported (IoT Core)");
                Err(Ending::abnormal(DisconnectReason::ClientError).telling(
                    ReasonCode::PROTOCOL_ERROR,
                    "AUTH is not supported: no authentication method was agreed",
                ))
            }
            other => {
                warn!(client_id = %online.client_id, packet = other.name(), "closing connection: packet not allowed from a client at this point");
                Err(Ending::abnormal(DisconnectReason::ClientError).telling(
                    ReasonCode::PROTOCOL_ERROR,
                    format!("{} is not allowed from a client", other.name()),
                ))
            }
        }
    }

    /// A client's DISCONNECT. MQTT 5: reason 0x04 asks for the will; a Session Expiry
    /// Interval replaces the session's (0 ends it now), but may not raise one that was 0
    /// at CONNECT (MQTT-3.14.2-2, a protocol error).
    fn handle_disconnect(&mut self, online: &Online, disconnect: Disconnect) -> Ending {
        // MQTT-3.14.4-3: only a Normal disconnection (0x00) discards the will; 0x04 asks
        // for it, and so does any error code a client closes with.
        let publish_will = disconnect.reason != ReasonCode::NORMAL_DISCONNECTION;
        // A DISCONNECT still buffered when another connection took the session over must
        // not change the session that now belongs to that connection.
        let expiry = disconnect
            .properties
            .session_expiry_interval
            .filter(|_| online.session.is_owned_by(self.id));
        if let Some(secs) = expiry {
            if self.expiry_was_zero && secs > 0 {
                warn!(client_id = %online.client_id, secs, "closing connection: DISCONNECT raises a session expiry interval that was 0 (protocol error)");
                return Ending::abnormal(DisconnectReason::ClientError).telling(
                    ReasonCode::PROTOCOL_ERROR,
                    "the session expiry interval was 0 at CONNECT and cannot be raised",
                );
            }
            let expiry = granted_expiry(secs, self.broker.config.session_expiry);
            online.session.set_expiry(expiry);
            debug!(client_id = %online.client_id, ?expiry, "session expiry changed by DISCONNECT");
        }
        Ending {
            reason: DisconnectReason::ClientInitiatedDisconnect,
            publish_will,
            disconnect: None,
        }
    }

    /// MQTT 5 topic aliases (client to server): an alias with a topic sets it, an alias
    /// with an empty topic uses it. 0, one above the CONNACK's Topic Alias Maximum, or an
    /// unset one end the connection with DISCONNECT 0x94 (as IoT Core answers).
    fn resolve_topic_alias(
        &self,
        online: &mut Online,
        publish: &mut Publish,
    ) -> Result<(), Ending> {
        let Some(alias) = publish.properties.topic_alias else {
            return Ok(());
        };
        let maximum = self.broker.config.limits.topic_alias_maximum;
        let invalid = |why: String| {
            warn!(client_id = %online.client_id, alias, %why, "closing connection: topic alias invalid");
            Err(Ending::abnormal(DisconnectReason::ClientError)
                .telling(ReasonCode::TOPIC_ALIAS_INVALID, why))
        };
        if alias == 0 || alias > maximum {
            return invalid(format!("topic alias {alias} is outside 1..={maximum}"));
        }
        let index = usize::from(alias - 1);
        if publish.topic.is_empty() {
            match online
                .topic_aliases
                .as_ref()
                .and_then(|aliases| aliases.get(index))
            {
                Some(Some(topic)) => publish.topic = topic.clone(),
                _ => {
                    return invalid(format!(
                        "topic alias {alias} was not set on this connection"
                    ))
                }
            }
        } else {
            let aliases = online
                .topic_aliases
                .get_or_insert_with(|| vec![None; usize::from(maximum)].into_boxed_slice());
            aliases[index] = Some(publish.topic.clone());
        }
        Ok(())
    }

    fn handle_publish(&mut self, online: &mut Online, mut publish: Publish) -> Result<(), Ending> {
        let v5 = self.v5();
        self.resolve_topic_alias(online, &mut publish)?;
        let limits = &self.broker.config.limits;
        // The acknowledgements held for the store are what the client still waits for; the
        // shell stops reading at this same bound, so only an already buffered PUBLISH can
        // exceed it.
        if v5 && publish.qos == QoS::AtLeastOnce {
            let unacknowledged = self.pending_acks.len();
            if unacknowledged >= limits.max_inflight {
                warn!(client_id = %online.client_id, unacknowledged, "closing connection: Receive Maximum exceeded");
                return Err(Ending::abnormal(DisconnectReason::ClientError).telling(
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    format!(
                        "more than {} unacknowledged QoS 1 PUBLISH",
                        limits.max_inflight
                    ),
                ));
            }
        }
        if let Err(rejected) = client_rules::check_publish(&publish, limits) {
            // A bad topic is answered in the PUBACK under MQTT 5 (IoT Core's PUBACK table
            // has 0x90), and so is a topic only a service publishes to (a shadow's
            // answers: 0x87, as a denied publish); QoS 2 and oversize end the connection
            // with their reason.
            let in_puback = [ReasonCode::TOPIC_NAME_INVALID, ReasonCode::NOT_AUTHORIZED];
            if v5 && in_puback.contains(&rejected.code) {
                warn!(client_id = %online.client_id, principal = online.policy.principal(), topic = %publish.topic, reason = %rejected, "PUBLISH refused: PUBACK 0x{:02X}", rejected.code.0);
                if publish.qos == QoS::AtLeastOnce {
                    let ack = self.refusing_puback(publish.pkid, rejected.code, &rejected.reason);
                    self.acknowledge_when_durable(ack, 0);
                }
                return Ok(());
            }
            warn!(client_id = %online.client_id, principal = online.policy.principal(), topic = %publish.topic, reason = %rejected, "closing connection: PUBLISH refused");
            return Err(Ending::abnormal(DisconnectReason::ClientError)
                .telling(rejected.code, rejected.reason));
        }
        let mut allowed = online
            .policy
            .check(Action::Publish, ResourceKind::Topic, &publish.topic);
        if publish.retain && allowed.is_ok() {
            allowed =
                online
                    .policy
                    .check(Action::RetainPublish, ResourceKind::Topic, &publish.topic);
        }
        if let Err(denied) = allowed {
            if v5 {
                log_denied(online, &denied, "PUBLISH denied: PUBACK 0x87");
                if publish.qos == QoS::AtLeastOnce {
                    let why = format!("{} on {} denied", denied.action, denied.resource);
                    let ack = self.refusing_puback(publish.pkid, ReasonCode::NOT_AUTHORIZED, &why);
                    self.acknowledge_when_durable(ack, 0);
                }
                return Ok(());
            }
            log_denied(
                online,
                &denied,
                "PUBLISH denied: closing connection (FORBIDDEN_ACCESS)",
            );
            return Err(Ending::abnormal(DisconnectReason::ForbiddenAccess));
        }
        if let Some(rates) = &mut self.rates {
            if !rates.admit_inbound(Instant::now()) {
                self.discard_over_rate(&publish);
                return Ok(());
            }
        }
        let router = &self.broker.router;
        let meta = MessageMeta::from_publish(publish.properties, unix_millis).map(Arc::new);
        let mut durable = 0;
        // IoT Core keeps no retained messages on reserved topics.
        if publish.retain && !iot::is_reserved(&publish.topic) {
            durable = router.retain_message(
                &publish.topic,
                publish.payload.clone(),
                publish.qos,
                meta.clone(),
            );
        }
        // A shadow request is routed like any message (IoT Core delivers it to the
        // topic's subscribers too) and handed to the shadow service.
        let shadow_request = ShadowTopic::parse(&publish.topic)
            .filter(ShadowTopic::is_request)
            .map(|request| (request.id(), request.operation, publish.payload.clone()));
        let routed = router.route_message(&publish.topic, publish.payload, publish.qos, meta);
        if let Some((id, operation, payload)) = shadow_request {
            self.broker.shadows.submit_mqtt(id, operation, payload);
        }
        if publish.qos == QoS::AtLeastOnce {
            // The PUBACK promises at-least-once: it waits until every persistent session
            // that kept the message (and the retained store) has it on disk.
            self.acknowledge_when_durable(
                Packet::PubAck(Ack::new(publish.pkid)),
                durable.max(routed.durable),
            );
        }
        Ok(())
    }

    /// An inbound PUBLISH over `publishes_per_connection_per_sec`: not routed (nor
    /// retained), and the connection stays open, as IoT Core does. A 3.1.1 QoS 1 one gets
    /// no PUBACK (3.1.1 has no refusing one); an MQTT 5 one gets PUBACK 0x97 Quota
    /// exceeded, a code in IoT Core's MQTT 5 PUBACK table: a PUBLISH never acknowledged
    /// would hold one of the client's Receive Maximum slots for the connection's life.
    /// Counted here; logged by [`PacketHandler::throttling`].
    fn discard_over_rate(&mut self, publish: &Publish) {
        self.broker
            .router
            .stats
            .dropped_rate_limited
            .fetch_add(1, Ordering::Relaxed);
        if self.v5() && publish.qos == QoS::AtLeastOnce {
            let per_sec = self.broker.config.limits.publishes_per_sec();
            let why = format!("publishes_per_connection_per_sec ({per_sec}/s) exceeded");
            let ack = self.refusing_puback(publish.pkid, ReasonCode::QUOTA_EXCEEDED, &why);
            self.acknowledge_when_durable(ack, 0);
        }
    }

    fn refusing_puback(&self, pkid: u16, reason: ReasonCode, why: &str) -> Packet {
        Packet::PubAck(Ack {
            pkid,
            reason,
            properties: self.problem(why),
        })
    }

    /// Queues an acknowledgement to be sent once the store has reached `durable`.
    fn acknowledge_when_durable(&mut self, ack: Packet, durable: u64) {
        if self.pending_acks.is_empty() && durable <= self.committed {
            self.queue_packet(&ack);
            return;
        }
        self.pending_acks.push_back((ack, durable));
        self.release_acks();
    }

    /// Sends, in order, every held acknowledgement whose subject is now durable.
    pub(crate) fn release_acks(&mut self) {
        while self
            .pending_acks
            .front()
            .is_some_and(|(_, needed)| *needed <= self.committed)
        {
            if let Some((ack, _)) = self.pending_acks.pop_front() {
                self.queue_packet(&ack);
            }
        }
    }

    fn handle_subscribe(
        &mut self,
        online: &mut Online,
        subscribe: Subscribe,
    ) -> Result<(), Ending> {
        // Packets still buffered when another connection took the client id over must not
        // change the session that now belongs to the new connection.
        if !online.session.is_owned_by(self.id) {
            return Err(Ending::abnormal(DisconnectReason::DuplicateClientId));
        }
        let broker = self.broker.clone();
        let limits = &broker.config.limits;
        let v5 = self.v5();
        let count_after = online.session.with_state(|state| {
            state.subscription_count()
                + subscribe
                    .filters
                    .iter()
                    .filter(|wanted| !state.is_subscribed(&wanted.filter))
                    .count()
        });
        let whole = client_rules::check_subscribe(&subscribe, count_after, limits).and_then(|()| {
            // 3.1.1: any bad filter closes the connection before anything is subscribed.
            if v5 {
                return Ok(());
            }
            subscribe.filters.iter().try_for_each(|wanted| {
                client_rules::check_filter(&wanted.filter, wanted.qos, false, limits)
            })
        });
        if let Err(rejected) = whole {
            warn!(client_id = %online.client_id, principal = online.policy.principal(), reason = %rejected, "closing connection: SUBSCRIBE refused");
            return Err(Ending::abnormal(DisconnectReason::ClientError)
                .telling(rejected.code, rejected.reason));
        }
        let mut return_codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        let mut granted = Vec::with_capacity(subscribe.filters.len());
        let mut problems = Vec::new();
        for wanted in &subscribe.filters {
            if let Err(rejected) =
                client_rules::check_filter(&wanted.filter, wanted.qos, v5, limits)
            {
                warn!(client_id = %online.client_id, principal = online.policy.principal(), reason = %rejected, "SUBSCRIBE filter refused: SUBACK 0x8F");
                return_codes.push(rejected.code);
                problems.push(rejected.reason);
                continue;
            }
            let allowed =
                online
                    .policy
                    .check(Action::Subscribe, ResourceKind::TopicFilter, &wanted.filter);
            if let Err(denied) = allowed {
                if v5 {
                    log_denied(online, &denied, "SUBSCRIBE denied: SUBACK 0x87");
                    return_codes.push(ReasonCode::NOT_AUTHORIZED);
                    problems.push(format!("{} on {} denied", denied.action, denied.resource));
                    continue;
                }
                if broker.config.subscribe_denied == SubscribeDenied::Disconnect {
                    log_denied(
                        online,
                        &denied,
                        "SUBSCRIBE denied: closing connection (FORBIDDEN_ACCESS)",
                    );
                    return Err(Ending::abnormal(DisconnectReason::ForbiddenAccess));
                }
                log_denied(online, &denied, "SUBSCRIBE denied: SUBACK failure (0x80)");
                return_codes.push(ReasonCode::UNSPECIFIED_ERROR);
                continue;
            }
            // MQTT 5 asks for QoS 2 get QoS 1, the most IoT Core serves (MQTT-3.2.2-10).
            let qos = wanted.qos.min(QoS::AtLeastOnce);
            granted.push(wanted.filter.as_str());
            let existed = online
                .session
                .with_state(|state| state.is_subscribed(&wanted.filter));
            broker
                .router
                .subscribe(&online.session, &wanted.filter, qos);
            return_codes.push(ReasonCode::granted(qos));
            let send_retained = match wanted.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscribe => !existed,
                RetainHandling::Never => false,
            };
            if !send_retained {
                continue;
            }
            for message in broker.router.retained_for(&wanted.filter) {
                retained.push(Delivery {
                    topic: message.topic,
                    payload: message.payload,
                    qos: message.qos.min(qos),
                    retain: true,
                    meta: message.meta,
                });
            }
        }
        // The SUBACK is queued before any retained message, so the client sees them in
        // that order; for a persistent session it waits until the subscription is durable.
        let durable = online.session.persist();
        let properties = if problems.is_empty() {
            AckProperties::default()
        } else {
            self.problem(&problems.join("; "))
        };
        self.acknowledge_when_durable(
            Packet::SubAck(SubAck {
                pkid: subscribe.pkid,
                return_codes,
                properties,
            }),
            durable,
        );
        for delivery in retained {
            broker.router.deliver(&online.session, delivery);
        }
        debug!(client_id = %online.client_id, filters = ?granted, "subscribed");
        if !granted.is_empty() {
            self.publish_event(online, |context| {
                lifecycle::subscription_event(context, true, &granted)
            });
        }
        Ok(())
    }

    fn handle_unsubscribe(
        &mut self,
        online: &Online,
        unsubscribe: Unsubscribe,
    ) -> Result<(), Ending> {
        if !online.session.is_owned_by(self.id) {
            return Err(Ending::abnormal(DisconnectReason::DuplicateClientId));
        }
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            // Only MQTT 5 lets a bad filter this far (the 3.1.1 decoder refuses it).
            if iot::validate_topic_filter(filter, &self.broker.config.limits).is_err() {
                reason_codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            }
            reason_codes.push(if self.broker.router.unsubscribe(&online.session, filter) {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        let durable = online.session.persist();
        self.acknowledge_when_durable(
            Packet::UnsubAck(UnsubAck {
                pkid: unsubscribe.pkid,
                reason_codes,
                properties: AckProperties::default(),
            }),
            durable,
        );
        let filters: Vec<&str> = unsubscribe.filters.iter().map(String::as_str).collect();
        self.publish_event(online, |context| {
            lifecycle::subscription_event(context, false, &filters)
        });
        Ok(())
    }

    /// Moves what the session has ready into the output buffer, up to one batch. Each
    /// message is checked against `iot:Receive` here, at delivery, as IoT Core does; a
    /// refused one is dropped silently (logged once per topic). So is one past its MQTT 5
    /// Message Expiry Interval, and one larger than the client's Maximum Packet Size
    /// (MQTT-3.1.2-25: the server discards what the client could not take).
    pub(crate) fn fill_output(&mut self, online: &mut Online) {
        if self.output.len() >= WRITE_BATCH_BYTES {
            return;
        }
        // Retained messages for a new subscription must not overtake its SUBACK.
        if self
            .pending_acks
            .iter()
            .any(|(ack, _)| matches!(ack, Packet::SubAck(_)))
        {
            return;
        }
        let id = self.id;
        let policy = &mut online.policy;
        let client_id = &online.client_id;
        let protocol = self.protocol;
        let client_max_packet = self.client_max_packet;
        let stats = &self.broker.router.stats;
        // Read the clock only if a message has an expiry (most have none).
        let now = std::cell::OnceCell::new();
        let now_ms = || *now.get_or_init(unix_millis);
        let mut may_receive = |delivery: &Delivery| {
            if delivery.is_expired_at(now_ms) {
                debug!(client_id = %client_id, topic = %delivery.topic, "message expired before delivery: dropped");
                return false;
            }
            if client_max_packet != u32::MAX {
                let size = mqtt::publish_encoded_len(
                    &publish_ref(delivery, 1, false, protocol, None),
                    protocol,
                );
                if size > client_max_packet as usize {
                    let total = stats.dropped_too_large.fetch_add(1, Ordering::Relaxed) + 1;
                    warn!(client_id = %client_id, topic = %delivery.topic, size, client_max_packet, dropped_total = total, "message larger than the client's Maximum Packet Size: dropped");
                    return false;
                }
            }
            let (allowed, denied) =
                policy.check_quietly(Action::Receive, ResourceKind::Topic, &delivery.topic);
            if let Some(denied) = denied {
                info!(client_id = %client_id, principal = policy.principal(), action = %denied.action, resource = %denied.resource, reason = %denied.decision.reason, "iot:Receive denied: message not delivered");
            }
            allowed
        };
        let output = &mut self.output;
        // Over a rate, messages stay queued until the connection's `Throttling::wake_at`.
        let mut rates = self
            .rates
            .as_deref_mut()
            .map(|rates| (rates, Instant::now()));
        let mut sent = 0;
        online.session.with_owned_state(id, |state, load| {
            while output.len() < WRITE_BATCH_BYTES {
                if let Some((rates, now)) = &mut rates {
                    if state.queued_len() > 0 && !rates.may_send(*now) {
                        break;
                    }
                }
                let Some(outgoing) = state.next_outgoing_where(&mut may_receive, load) else {
                    break;
                };
                let before = output.len();
                encode_outgoing(output, &outgoing, protocol, now_ms);
                sent += 1;
                if let Some((rates, now)) = &mut rates {
                    rates.sent(output.len() - before, *now);
                }
            }
        });
        self.broker.metrics.messages_out.add(sent);
        // Messages read back from the store count in the memory budget too.
        self.broker.router.keep_within_budget();
    }

    pub(crate) fn queue_packet(&mut self, packet: &Packet) {
        // Every packet the broker builds is encodable (reason strings are capped); should
        // one not be, the connection must not panic: it is logged and not sent.
        if let Err(error) = mqtt::encode(packet, &mut self.output, self.protocol) {
            warn!(peer = %self.peer, packet = packet.name(), %error, "broker-built packet not encodable: not sent");
        }
    }

    /// The server DISCONNECT an MQTT 5 client gets when `ending` closes its connection.
    pub(crate) fn queue_disconnect(&mut self, ending: &Ending) {
        if let (true, Some((code, why))) = (self.v5(), &ending.disconnect) {
            self.queue_packet(&Packet::Disconnect(Disconnect::with_reason_string(
                *code,
                why.clone(),
            )));
        }
    }

    fn publish_event(
        &self,
        online: &Online,
        build: impl FnOnce(&EventContext) -> (String, String),
    ) {
        if !lifecycle::emits_events(&online.client_id) {
            return;
        }
        let context = EventContext {
            client_id: &online.client_id,
            timestamp_ms: unix_millis(),
            session_identifier: &crate::secrets::uuid_text(online.session_identifier),
            principal_identifier: online.policy.principal(),
            version_number: online.version_number,
        };
        let (topic, payload) = build(&context);
        self.broker
            .router
            .route(&topic, Bytes::from(payload), QoS::AtLeastOnce);
    }

    /// The end of an accepted connection (after its last output was flushed): the will if
    /// due, session detach, the disconnected event, the connection count.
    pub(crate) fn close(&mut self, online: &Online, ending: Ending) {
        let router = &self.broker.router;
        if ending.publish_will {
            if let Some(will) = &online.will {
                // MQTT 5 Will Delay Interval: the will waits, and is not sent if the client
                // is back by then; the session's end comes first if it is sooner.
                let delay = Duration::from_secs(u64::from(
                    will.properties.will_delay_interval.unwrap_or(0),
                ))
                .min(online.session.expiry());
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) if !delay.is_zero() => {
                        info!(client_id = %online.client_id, topic = %will.topic, ?delay, "last will delayed");
                        // Held by the router: a reconnect that resumes the session cancels
                        // it, one that ends the session sends it at once.
                        let token = router.hold_will(&online.client_id, will.clone());
                        let broker = self.broker.clone();
                        let client_id = online.client_id.clone();
                        runtime.spawn(async move {
                            tokio::time::sleep(delay).await;
                            if let Some(will) = broker.router.take_will(&client_id, Some(token)) {
                                broker.router.publish_will(&client_id, &will);
                            }
                        });
                    }
                    _ => router.publish_will(&online.client_id, will),
                }
            }
        }
        let v5 = self.v5();
        if let Some(rates) = self.rates.as_deref_mut() {
            if let Some(report) = rates.take_report(Instant::now(), true) {
                log_rate_report(&online.client_id, v5, rates, report);
            }
        }
        router.live.unregister(self.id);
        router.close_session(&online.session, self.id, Instant::now());
        router.connections.fetch_sub(1, Ordering::Relaxed);
        self.broker
            .metrics
            .connection(self.listener, protocol_label(self.protocol), -1);
        info!(client_id = %online.client_id, principal = online.policy.principal(), reason = %ending.reason, "client disconnected");
        self.publish_event(online, |context| {
            lifecycle::disconnected_event(context, ending.reason)
        });
    }
}

/// A client id for a client that sent an empty one (MQTT-3.1.3-6): unique per connection.
fn assigned_client_id(connection: ConnectionId) -> String {
    format!("pubsub-{connection}-{:08x}", rand::random::<u32>())
}

/// The PUBLISH of a delivery, its topic, payload and properties borrowed from the shared
/// message (`properties` holds them when they had to be rewritten for this send).
fn publish_ref<'a>(
    delivery: &'a Delivery,
    pkid: u16,
    dup: bool,
    protocol: Protocol,
    properties: Option<&'a mqtt::PublishProperties>,
) -> PublishRef<'a> {
    let properties = match (protocol.is_v5(), properties) {
        (false, _) => None,
        (true, Some(properties)) => Some(properties),
        (true, None) => delivery.meta.as_ref().map(|meta| &meta.properties),
    };
    PublishRef {
        dup,
        qos: delivery.qos,
        retain: delivery.retain,
        topic: &delivery.topic,
        pkid,
        payload: &delivery.payload,
        properties,
    }
}

/// Encodes one delivery as PUBLISH. The topic, payload and properties are borrowed from
/// the shared message, never copied into a new allocation per subscriber (an MQTT 5
/// message with an expiry gets its Message Expiry Interval rewritten to the time left).
pub(super) fn encode_outgoing(
    output: &mut BytesMut,
    outgoing: &Outgoing,
    protocol: Protocol,
    now_ms: impl Fn() -> u64,
) {
    let delivery = &outgoing.delivery;
    let rewritten = match (&delivery.meta, protocol.is_v5()) {
        (Some(meta), true) if meta.expires_at_ms.is_some() => Some(meta.properties_at(now_ms())),
        _ => None,
    };
    let publish = publish_ref(
        delivery,
        outgoing.pkid.unwrap_or(0),
        outgoing.dup,
        protocol,
        rewritten.as_deref(),
    );
    mqtt::encode_publish(&publish, output, protocol).expect("routed messages are encodable");
}

/// The session a CONNECT asks for. 3.1.1: clean session = zero expiry, otherwise the
/// configured `session_expiry`. MQTT 5: the Session Expiry Interval (absent = 0), at most
/// the configured one (IoT Core's account quota), 0xFFFFFFFF included.
fn session_kind(connect: &Connect, configured: Duration) -> SessionKind {
    let expiry = match connect.protocol {
        Protocol::V5 => granted_expiry(
            connect.properties.session_expiry_interval.unwrap_or(0),
            configured,
        ),
        _ if connect.clean_session => Duration::ZERO,
        _ => configured,
    };
    SessionKind {
        expiry,
        mqtt5: connect.protocol.is_v5(),
    }
}

fn granted_expiry(requested_secs: u32, configured: Duration) -> Duration {
    Duration::from_secs(u64::from(requested_secs)).min(configured)
}

/// The CONNACK properties of an accepted MQTT 5 CONNECT: what IoT Core advertises
/// (facts file §1.2), and whatever the broker changed of what the client asked.
fn connack_properties(
    connect: &Connect,
    kind: &SessionKind,
    limits: &iot::Limits,
    assigned_client_identifier: Option<String>,
) -> ConnAckProperties {
    let requested_expiry = connect.properties.session_expiry_interval.unwrap_or(0);
    let granted_expiry = u32::try_from(kind.expiry.as_secs()).unwrap_or(u32::MAX);
    let keep_alive = limits.effective_keep_alive(connect.keep_alive).as_secs();
    let keep_alive = u16::try_from(keep_alive).unwrap_or(u16::MAX);
    ConnAckProperties {
        session_expiry_interval: (granted_expiry != requested_expiry).then_some(granted_expiry),
        receive_maximum: Some(u16::try_from(limits.max_inflight.max(1)).unwrap_or(u16::MAX)),
        maximum_qos: Some(QoS::AtLeastOnce),
        retain_available: Some(true),
        maximum_packet_size: Some(
            u32::try_from(client_rules::max_packet_size(limits)).unwrap_or(u32::MAX),
        ),
        assigned_client_identifier,
        topic_alias_maximum: Some(limits.topic_alias_maximum),
        wildcard_subscription_available: Some(true),
        subscription_identifiers_available: Some(false),
        shared_subscription_available: Some(true),
        server_keep_alive: (keep_alive != connect.keep_alive).then_some(keep_alive),
        ..ConnAckProperties::default()
    }
}

/// What a CONNECT tells the policy engine: client id, source address, connect attributes.
/// A session that outlives the connection (3.1.1 clean session 0, MQTT 5 Session Expiry
/// Interval above 0) is a `PersistentConnect`.
fn connect_context(
    connect: &Connect,
    kind: &SessionKind,
    peer: SocketAddr,
    identity: &Identity,
) -> RequestContext {
    let mut connect_attributes = Vec::new();
    if !kind.expiry.is_zero() {
        connect_attributes.push("PersistentConnect".to_owned());
    }
    if connect.will.is_some() {
        connect_attributes.push("LastWill".to_owned());
    }
    let mut context = RequestContext {
        client_id: Some(connect.client_id.clone()),
        source_ip: Some(peer.ip()),
        connect_attributes,
        ..RequestContext::default()
    };
    match identity {
        Identity::Certificate(certificate) => certificate.add_facts(&mut context),
        Identity::Credentials { principal, .. } => {
            context.facts_mut().cognito_identity_id = Some(principal.clone());
        }
        _ => {}
    }
    context
}

/// `iot:Connect` on the client id, and `iot:Publish` (plus `iot:RetainPublish`) on the will
/// topic: IoT Core refuses a will the principal could not publish with CONNACK 5.
fn authorize_connect(policy: &mut ConnectionPolicy, connect: &Connect) -> Result<(), Refusal> {
    let mut checks = vec![(
        Action::Connect,
        ResourceKind::Client,
        connect.client_id.as_str(),
    )];
    if let Some(will) = &connect.will {
        checks.push((Action::Publish, ResourceKind::Topic, will.topic.as_str()));
        if will.retain {
            checks.push((
                Action::RetainPublish,
                ResourceKind::Topic,
                will.topic.as_str(),
            ));
        }
    }
    for (action, kind, name) in checks {
        policy.check(action, kind, name).map_err(|denied| {
            Refusal::not_authorized(format!(
                "{} on {}: {}",
                denied.action, denied.resource, denied.decision.reason
            ))
        })?;
    }
    Ok(())
}

/// One line per limit that acted, with how often since the last line.
fn log_rate_report(client_id: &str, v5: bool, rates: &ConnectionRates, report: RateReport) {
    let RateReport {
        dropped,
        outbound_waits,
        byte_waits,
    } = report;
    if dropped > 0 {
        let qos1 = if v5 { "PUBACK 0x97" } else { "no PUBACK" };
        warn!(
            client_id,
            limit = "publishes_per_connection_per_sec",
            per_sec = rates.publishes_per_sec(),
            dropped,
            qos1,
            "publish rate exceeded: inbound PUBLISH discarded, not delivered"
        );
    }
    if outbound_waits > 0 {
        info!(
            client_id,
            limit = "publishes_per_connection_per_sec",
            per_sec = rates.publishes_per_sec(),
            waits = outbound_waits,
            "publish rate reached: deliveries to the client wait in its queue"
        );
    }
    if byte_waits > 0 {
        info!(
            client_id,
            limit = "bytes_per_connection_per_sec",
            per_sec = rates.bytes_per_sec(),
            waits = byte_waits,
            "throughput limit reached: reading from and sending to the client delayed"
        );
    }
}

/// The `protocol` label of `pubsub_connections`.
fn protocol_label(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::V5 => "5",
        Protocol::V311 => "3.1.1",
        Protocol::V31 => "3.1",
    }
}

fn log_denied(online: &Online, denied: &Denied, what: &str) {
    warn!(client_id = %online.client_id, principal = online.policy.principal(), action = %denied.action, resource = %denied.resource, reason = %denied.decision.reason, "{what}");
}

#[cfg(test)]
mod tests;
