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
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, Publish, PublishRef, QoS, SubAck,
    Subscribe, SubscribeReturnCode, Unsubscribe,
};
use tracing::{debug, info, warn};

use crate::auth::{ConnectionPolicy, Denied, Identity};
use crate::broker::Broker;
use crate::clock::unix_millis;
use crate::config::SubscribeDenied;
use crate::session::{ConnectionId, Delivery, LiveConnection, Outgoing, Session};

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
}

/// Why a connection ended, and whether its will is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ending {
    pub(crate) reason: DisconnectReason,
    pub(crate) publish_will: bool,
}

impl Ending {
    pub(crate) fn abnormal(reason: DisconnectReason) -> Ending {
        Ending {
            reason,
            publish_will: true,
        }
    }
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
            broker,
            peer,
            input: BytesMut::new(),
            output: BytesMut::new(),
            pending_acks: VecDeque::new(),
            committed,
        }
    }

    pub(crate) fn max_packet_size(&self) -> usize {
        client_rules::max_packet_size(&self.broker.config.limits)
    }

    /// The first packet, once it is complete. `Err` closes the connection (logged here;
    /// a CONNACK 1 is queued for an unsupported protocol level).
    pub(crate) fn decode_connect(&mut self) -> Result<Option<Connect>, ()> {
        let max_packet_size = self.max_packet_size();
        match mqtt::decode(&mut self.input, max_packet_size) {
            Ok(Some(Packet::Connect(connect))) => Ok(Some(connect)),
            Ok(Some(other)) => {
                info!(peer = %self.peer, packet = other.name(), "closing connection: first packet is not CONNECT");
                Err(())
            }
            Ok(None) => Ok(None),
            Err(error) => {
                if client_rules::is_unsupported_protocol_level(&error) {
                    self.queue_connack(false, ConnectReturnCode::UnacceptableProtocolVersion);
                }
                info!(peer = %self.peer, %error, "closing connection: malformed CONNECT");
                Err(())
            }
        }
    }

    pub(crate) fn queue_connack(&mut self, session_present: bool, code: ConnectReturnCode) {
        self.queue_packet(&Packet::ConnAck(ConnAck {
            session_present,
            code,
        }));
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
        if connect.client_id.is_empty() && connect.clean_session {
            connect.client_id = assigned_client_id(self.id);
        }
        let context = connect_context(&connect, self.peer, identity);
        let policies = broker.auth.policies.clone();
        let mut policy = match identity {
            Identity::Authorizer(authorized) => ConnectionPolicy::with_policies(
                policies,
                &authorized.principal_id,
                authorized.policies.clone(),
                context,
            ),
            _ => ConnectionPolicy::new(policies, identity.principal(), context),
        };
        let now_secs = unix_millis() / 1000;
        let verdict = client_rules::check_connect(&connect, limits)
            .and_then(|()| authorize_connect(&mut policy, &connect))
            .and_then(|()| {
                if broker.router.admit_connect(&connect.client_id, now_secs) {
                    Ok(())
                } else {
                    Err(Refusal::throttled(limits.connects_per_client_id_per_sec))
                }
            });
        if let Err(refusal) = verdict {
            warn!(client_id = %connect.client_id, principal = policy.principal(), peer = %self.peer, code = ?refusal.code, reason = %refusal.reason, "CONNECT refused");
            if let Some(code) = refusal.code {
                self.queue_connack(false, code);
            }
            return None;
        }
        let max_connections = limits.max_connections;
        let open = broker.router.connections.fetch_add(1, Ordering::Relaxed) + 1;
        if max_connections > 0 && open > max_connections {
            broker.router.connections.fetch_sub(1, Ordering::Relaxed);
            warn!(client_id = %connect.client_id, peer = %self.peer, max_connections, "CONNECT refused: connection limit reached");
            self.queue_connack(false, ConnectReturnCode::ServerUnavailable);
            return None;
        }

        let authorizer_name = match identity {
            Identity::Authorizer(authorized) => Some(authorized.authorizer.as_str()),
            _ => None,
        };
        let live = Arc::new(LiveConnection::new(policy.principal(), authorizer_name));
        let opened = broker.router.open_session(
            &connect.client_id,
            connect.clean_session,
            self.id,
            live.clone(),
        );
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
        };
        self.queue_connack(opened.session_present, ConnectReturnCode::Accepted);
        if opened.session_present {
            let redeliveries: Vec<Outgoing> = online
                .session
                .with_state(|state| state.redeliveries().collect());
            for outgoing in &redeliveries {
                encode_outgoing(&mut self.output, outgoing);
            }
        }
        info!(client_id = %online.client_id, principal = online.policy.principal(), peer = %self.peer, clean_session = connect.clean_session, session_present = opened.session_present, keep_alive = ?online.keep_alive, "client connected");
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

    /// Decodes and handles every complete packet in the input buffer.
    pub(crate) fn handle_input(&mut self, online: &mut Online) -> Result<(), Ending> {
        loop {
            let max_packet_size = self.max_packet_size();
            let packet = match mqtt::decode(&mut self.input, max_packet_size) {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(()),
                Err(error) => {
                    warn!(client_id = %online.client_id, principal = online.policy.principal(), %error, "closing connection: malformed packet");
                    return Err(Ending::abnormal(DisconnectReason::ClientError));
                }
            };
            self.handle_packet(online, packet)?;
        }
    }

    pub(crate) fn handle_packet(
        &mut self,
        online: &mut Online,
        packet: Packet,
    ) -> Result<(), Ending> {
        match packet {
            Packet::Publish(publish) => self.handle_publish(online, publish),
            Packet::PubAck(pkid) => {
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
            Packet::Disconnect => Err(Ending {
                reason: DisconnectReason::ClientInitiatedDisconnect,
                publish_will: false,
            }),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                warn!(client_id = %online.client_id, packet = packet.name(), "closing connection: QoS 2 is not supported (IoT Core)");
                Err(Ending::abnormal(DisconnectReason::ClientError))
            }
            other => {
                warn!(client_id = %online.client_id, packet = other.name(), "closing connection: packet not allowed from a client at this point");
                Err(Ending::abnormal(DisconnectReason::ClientError))
            }
        }
    }

    fn handle_publish(&mut self, online: &mut Online, publish: Publish) -> Result<(), Ending> {
        let limits = &self.broker.config.limits;
        if let Err(reason) = client_rules::check_publish(&publish, limits) {
            warn!(client_id = %online.client_id, principal = online.policy.principal(), topic = %publish.topic, %reason, "closing connection: PUBLISH refused");
            return Err(Ending::abnormal(DisconnectReason::ClientError));
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
            log_denied(
                online,
                &denied,
                "PUBLISH denied: closing connection (FORBIDDEN_ACCESS)",
            );
            return Err(Ending::abnormal(DisconnectReason::ForbiddenAccess));
        }
        let router = &self.broker.router;
        let mut durable = 0;
        // IoT Core keeps no retained messages on reserved topics.
        if publish.retain && !iot::is_reserved(&publish.topic) {
            durable = router.retain(&publish.topic, publish.payload.clone(), publish.qos);
        }
        let routed = router.route(&publish.topic, publish.payload, publish.qos);
        if publish.qos == QoS::AtLeastOnce {
            // The PUBACK promises at-least-once: it waits until every persistent session
            // that kept the message (and the retained store) has it on disk.
            self.acknowledge_when_durable(
                Packet::PubAck(publish.pkid),
                durable.max(routed.durable),
            );
        }
        Ok(())
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
        let count_after = online.session.with_state(|state| {
            state.subscription_count()
                + subscribe
                    .filters
                    .iter()
                    .filter(|wanted| !state.is_subscribed(&wanted.filter))
                    .count()
        });
        if let Err(reason) = client_rules::check_subscribe(&subscribe, count_after, limits) {
            warn!(client_id = %online.client_id, principal = online.policy.principal(), %reason, "closing connection: SUBSCRIBE refused");
            return Err(Ending::abnormal(DisconnectReason::ClientError));
        }
        let mut return_codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        let mut granted = Vec::with_capacity(subscribe.filters.len());
        for wanted in &subscribe.filters {
            let allowed =
                online
                    .policy
                    .check(Action::Subscribe, ResourceKind::TopicFilter, &wanted.filter);
            if let Err(denied) = allowed {
                if broker.config.subscribe_denied == SubscribeDenied::Disconnect {
                    log_denied(
                        online,
                        &denied,
                        "SUBSCRIBE denied: closing connection (FORBIDDEN_ACCESS)",
                    );
                    return Err(Ending::abnormal(DisconnectReason::ForbiddenAccess));
                }
                log_denied(online, &denied, "SUBSCRIBE denied: SUBACK failure (0x80)");
                return_codes.push(SubscribeReturnCode::Failure);
                continue;
            }
            granted.push(wanted.filter.as_str());
            broker
                .router
                .subscribe(&online.session, &wanted.filter, wanted.qos);
            return_codes.push(SubscribeReturnCode::Success(wanted.qos));
            for message in broker.router.retained_for(&wanted.filter) {
                retained.push(Delivery {
                    topic: message.topic,
                    payload: message.payload,
                    qos: message.qos.min(wanted.qos),
                    retain: true,
                });
            }
        }
        // The SUBACK is queued before any retained message, so the client sees them in
        // that order; for a persistent session it waits until the subscription is durable.
        let durable = online.session.persist();
        self.acknowledge_when_durable(
            Packet::SubAck(SubAck {
                pkid: subscribe.pkid,
                return_codes,
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
        for filter in &unsubscribe.filters {
            self.broker.router.unsubscribe(&online.session, filter);
        }
        let durable = online.session.persist();
        self.acknowledge_when_durable(Packet::UnsubAck(unsubscribe.pkid), durable);
        let filters: Vec<&str> = unsubscribe.filters.iter().map(String::as_str).collect();
        self.publish_event(online, |context| {
            lifecycle::subscription_event(context, false, &filters)
        });
        Ok(())
    }

    /// Moves what the session has ready into the output buffer, up to one batch. Each
    /// message is checked against `iot:Receive` here, at delivery, as IoT Core does; a
    /// refused one is dropped silently (logged once per topic).
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
        let mut may_receive = |delivery: &Delivery| {
            let (allowed, denied) =
                policy.check_quietly(Action::Receive, ResourceKind::Topic, &delivery.topic);
            if let Some(denied) = denied {
                info!(client_id = %client_id, principal = policy.principal(), action = %denied.action, resource = %denied.resource, reason = %denied.decision.reason, "iot:Receive denied: message not delivered");
            }
            allowed
        };
        let output = &mut self.output;
        online.session.with_owned_state(id, |state| {
            while output.len() < WRITE_BATCH_BYTES {
                match state.next_outgoing_where(&mut may_receive) {
                    Some(outgoing) => encode_outgoing(output, &outgoing),
                    None => break,
                }
            }
        });
    }

    pub(crate) fn queue_packet(&mut self, packet: &Packet) {
        mqtt::encode(packet, &mut self.output).expect("broker-built packets are encodable");
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
                info!(client_id = %online.client_id, topic = %will.topic, "publishing last will");
                if will.retain {
                    router.retain(&will.topic, will.message.clone(), will.qos);
                }
                router.route(&will.topic, will.message.clone(), will.qos);
            }
        }
        router.live.unregister(self.id);
        router.close_session(&online.session, self.id, Instant::now());
        router.connections.fetch_sub(1, Ordering::Relaxed);
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

/// Encodes one delivery as PUBLISH. The topic and payload are borrowed from the shared
/// message, never copied into a new allocation per subscriber.
pub(super) fn encode_outgoing(output: &mut BytesMut, outgoing: &Outgoing) {
    let delivery = &outgoing.delivery;
    let publish = PublishRef {
        dup: outgoing.dup,
        qos: delivery.qos,
        retain: delivery.retain,
        topic: &delivery.topic,
        pkid: outgoing.pkid.unwrap_or(0),
        payload: &delivery.payload,
    };
    mqtt::encode_publish(&publish, output).expect("routed messages are encodable");
}

/// What a CONNECT tells the policy engine: client id, source address, connect attributes.
fn connect_context(connect: &Connect, peer: SocketAddr, identity: &Identity) -> RequestContext {
    let mut connect_attributes = Vec::new();
    if !connect.clean_session {
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
        Identity::Certificate(certificate) => {
            let fields = |names: &std::collections::BTreeMap<String, String>| {
                names.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            let facts = context.facts_mut();
            facts.certificate_subject = fields(&certificate.subject);
            facts.certificate_issuer = fields(&certificate.issuer);
        }
        Identity::Credentials { principal } => {
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

fn log_denied(online: &Online, denied: &Denied, what: &str) {
    warn!(client_id = %online.client_id, principal = online.policy.principal(), action = %denied.action, resource = %denied.resource, reason = %denied.decision.reason, "{what}");
}

#[cfg(test)]
mod tests;
