//! The MQTT client session as a pure state machine: no sockets, no clock, no tasks.
//!
//! [`ClientSession`] decides every packet the SDK writes and what every packet it reads
//! means, for MQTT 3.1.1 and MQTT 5 alike; the session task (task.rs) only moves bytes
//! between it and the transport and hands its outputs to the user. It outlives single
//! network connections, which is what gives the SDK its delivery guarantees:
//!
//! - **Packet ids survive reconnects.** A QoS 1 publish keeps its packet id until its
//!   PUBACK; after a reconnect it is re-sent with the same id and DUP set (MQTT 3.1.1
//!   §4.4, MQTT 5 §4.4), whether or not the broker kept the session.
//! - **Rejoin.** The first CONNECT carries the caller's Clean Session / Clean Start;
//!   every automatic reconnect asks to resume (`false`), as the iOS SDK and the CRT's
//!   MQTT 5 "rejoin post success" policy do, so messages queued by the broker during an
//!   outage are delivered.
//! - **No endless retries.** Each operation is sent on at most `max_attempts`
//!   connections and waits at most `ack_timeout` per attempt: an operation the broker
//!   answers by closing the connection (a denied topic) or never answers ends with an
//!   error instead of looping forever.
//! - **Acknowledge after hand-off.** An incoming QoS 1 PUBLISH is acknowledged only when
//!   the caller says it was handed to the user ([`ClientSession::ack_delivery`]), so a
//!   message the SDK could not deliver is redelivered by the broker.
//!
//! Time is passed in (`now`), so keep-alive and timeouts are tested without waiting.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt::{
    Ack, ConnAck, Connect, ConnectProperties, Disconnect, LastWill, Packet, Protocol, Publish,
    PublishProperties, QoS as WireQoS, ReasonCode, SubAck, Subscribe, SubscribeFilter,
    SubscribeProperties, UnsubAck, Unsubscribe,
};

use crate::error::Error;
use crate::status::Reason;
use crate::QoS;

/// What the session is configured with; fixed for its life.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub(crate) client_id: String,
    /// Clean Session (3.1.1) / Clean Start (5) of the *first* CONNECT only.
    pub(crate) clean_start: bool,
    pub(crate) protocol: Protocol,
    /// Zero: no keep-alive.
    pub(crate) keep_alive: Duration,
    /// How long a PINGREQ may wait for its PINGRESP before the link counts as dead.
    pub(crate) ping_timeout: Duration,
    pub(crate) will: Option<LastWill>,
    /// MQTT 5 Session Expiry Interval, seconds (sent on every CONNECT so a reconnect has a
    /// session to rejoin).
    pub(crate) session_expiry: u32,
    /// The largest packet we accept (sent as MQTT 5 Maximum Packet Size).
    pub(crate) max_packet_size: u32,
    /// Per attempt: an operation not acknowledged this long after it was written fails.
    pub(crate) ack_timeout: Option<Duration>,
    /// Connections an operation may be written on before it fails.
    pub(crate) max_attempts: u32,
    /// QoS 1 publishes in flight at once (lowered by the broker's Receive Maximum).
    pub(crate) inflight_limit: u16,
}

/// An incoming message to hand to the user; `ack` is the packet id to pass to
/// [`ClientSession::ack_delivery`] once it has been handed over (QoS 1 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub(crate) publish: Publish,
    pub(crate) ack: Option<u16>,
}

/// An outgoing publish, before it has a packet id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutgoingPublish {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) properties: PublishProperties,
}

/// A finished operation: the caller's token and how it ended.
pub(crate) type Completion<A> = (A, Result<(), Error>);

#[derive(Debug)]
struct Tracked<A> {
    op: TrackedOp,
    token: A,
    /// Connections it has been written on.
    attempts: u32,
    /// When the current attempt times out.
    deadline: Option<Instant>,
    /// Order of first submission, kept across reconnects for resends.
    order: u64,
}

#[derive(Debug, Clone)]
enum TrackedOp {
    Publish(Publish),
    Subscribe(Vec<(String, QoS)>),
    Unsubscribe(Vec<String>),
}

impl TrackedOp {
    fn what(&self) -> String {
        match self {
            TrackedOp::Publish(p) => format!("PUBLISH to {:?}", p.topic),
            TrackedOp::Subscribe(f) => format!("SUBSCRIBE to {:?}", f[0].0),
            TrackedOp::Unsubscribe(f) => format!("UNSUBSCRIBE from {:?}", f[0]),
        }
    }
}

/// The client side of one MQTT session (possibly spanning several connections).
#[derive(Debug)]
pub(crate) struct ClientSession<A> {
    config: SessionConfig,
    connected: bool,
    /// A CONNACK was accepted at least once: later CONNECTs ask to resume.
    joined: bool,
    /// Operations with a packet id, waiting for their acknowledgement.
    tracked: BTreeMap<u16, Tracked<A>>,
    /// Publishes and requests waiting for a connection or room in the window.
    waiting: VecDeque<(Waiting, A, u64)>,
    /// QoS 1 publishes received and handed to the user, not yet acknowledged.
    unacked_incoming: HashSet<u16>,
    next_pkid: u16,
    next_order: u64,
    inflight_limit: u16,
    /// The broker's Maximum Packet Size (MQTT 5 CONNACK).
    server_max_packet: Option<u32>,
    last_write: Option<Instant>,
    ping_sent: Option<Instant>,
    transmit: VecDeque<Packet>,
    completions: VecDeque<Completion<A>>,
    deliveries: VecDeque<Delivery>,
}

#[derive(Debug)]
enum Waiting {
    Publish(OutgoingPublish),
    Subscribe(Vec<(String, QoS)>),
    Unsubscribe(Vec<String>),
}

fn wire_qos(q: QoS) -> WireQoS {
    match q {
        QoS::AtMostOnce => WireQoS::AtMostOnce,
        QoS::AtLeastOnce => WireQoS::AtLeastOnce,
    }
}

impl<A> ClientSession<A> {
    pub(crate) fn new(config: SessionConfig) -> Self {
        let inflight_limit = config.inflight_limit.max(1);
        ClientSession {
            config,
            connected: false,
            joined: false,
            tracked: BTreeMap::new(),
            waiting: VecDeque::new(),
            unacked_incoming: HashSet::new(),
            next_pkid: 0,
            next_order: 0,
            inflight_limit,
            server_max_packet: None,
            last_write: None,
            ping_sent: None,
            transmit: VecDeque::new(),
            completions: VecDeque::new(),
            deliveries: VecDeque::new(),
        }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        self.config.protocol
    }

    /// The CONNECT for the next connection, with this attempt's credentials (a custom-auth
    /// token may change between attempts): the caller's clean flag the first time, a
    /// request to resume afterwards.
    pub(crate) fn connect_packet(
        &self,
        username: Option<String>,
        password: Option<Bytes>,
    ) -> Packet {
        let c = &self.config;
        let v5 = c.protocol.is_v5();
        let mut properties = ConnectProperties::default();
        if v5 {
            properties.session_expiry_interval = Some(c.session_expiry);
            properties.maximum_packet_size = Some(c.max_packet_size);
        }
        Packet::Connect(Connect {
            protocol: c.protocol,
            keep_alive: u16::try_from(c.keep_alive.as_secs()).unwrap_or(u16::MAX),
            client_id: c.client_id.clone(),
            clean_session: if self.joined { false } else { c.clean_start },
            will: c.will.clone(),
            username,
            password,
            properties,
        })
    }

    /// The CONNECT was written at `now`.
    pub(crate) fn on_connect_written(&mut self, now: Instant) {
        self.last_write = Some(now);
    }

    /// The broker's CONNACK. `Ok(session_present)` when accepted; then everything still
    /// unacknowledged is queued for re-sending (publishes with DUP and their packet id)
    /// and the waiting operations go out as the window allows.
    pub(crate) fn on_connack(&mut self, ack: &ConnAck, now: Instant) -> Result<bool, Reason> {
        if !ack.code.is_success() {
            return Err(Reason::Refused {
                code: ack.code,
                reason_string: ack.properties.reason_string.clone(),
            });
        }
        self.connected = true;
        self.joined = true;
        self.ping_sent = None;
        self.server_max_packet = ack.properties.maximum_packet_size;
        self.inflight_limit = self.config.inflight_limit.max(1);
        if let Some(m) = ack.properties.receive_maximum {
            self.inflight_limit = self.inflight_limit.min(m.max(1));
        }
        if !ack.session_present {
            // A new session: the broker will not redeliver what we had not acknowledged.
            self.unacked_incoming.clear();
        }
        // Re-send in the order first submitted.
        let mut resend: Vec<(u16, u64)> = self.tracked.iter().map(|(k, t)| (*k, t.order)).collect();
        resend.sort_by_key(|(_, order)| *order);
        for (pkid, _) in resend {
            let t = self.tracked.get_mut(&pkid).expect("listed above");
            if t.attempts >= self.config.max_attempts {
                let t = self.tracked.remove(&pkid).expect("listed above");
                let what = t.op.what();
                self.completions.push_back((
                    t.token,
                    Err(Error::GaveUp {
                        what,
                        attempts: t.attempts,
                    }),
                ));
                continue;
            }
            t.attempts += 1;
            t.deadline = self.config.ack_timeout.map(|d| now + d);
            let packet = match &mut t.op {
                TrackedOp::Publish(p) => {
                    p.dup = true;
                    Packet::Publish(p.clone())
                }
                TrackedOp::Subscribe(f) => subscribe_packet(pkid, f),
                TrackedOp::Unsubscribe(f) => unsubscribe_packet(pkid, f),
            };
            self.transmit.push_back(packet);
        }
        self.flush_waiting(now);
        Ok(ack.session_present)
    }

    /// The connection is gone (any reason): operations stay tracked for the next one.
    pub(crate) fn on_connection_lost(&mut self) {
        self.connected = false;
        self.ping_sent = None;
        self.last_write = None;
        self.transmit.clear();
    }

    /// Publish. QoS 0 completes once written; QoS 1 on its PUBACK. Without a connection
    /// (or room in the window) it waits, in order.
    pub(crate) fn publish(&mut self, p: OutgoingPublish, token: A, now: Instant) {
        let order = self.bump_order();
        self.waiting.push_back((Waiting::Publish(p), token, order));
        self.flush_waiting(now);
    }

    /// Subscribe to `filters`; completes on the SUBACK (an error names a refused filter).
    pub(crate) fn subscribe(&mut self, filters: Vec<(String, QoS)>, token: A, now: Instant) {
        let order = self.bump_order();
        self.waiting
            .push_back((Waiting::Subscribe(filters), token, order));
        self.flush_waiting(now);
    }

    /// Unsubscribe; completes on the UNSUBACK.
    pub(crate) fn unsubscribe(&mut self, filters: Vec<String>, token: A, now: Instant) {
        let order = self.bump_order();
        self.waiting
            .push_back((Waiting::Unsubscribe(filters), token, order));
        self.flush_waiting(now);
    }

    /// Filters with a SUBSCRIBE not yet acknowledged (they need no re-subscribe).
    pub(crate) fn pending_filters(&self) -> HashSet<String> {
        let tracked = self.tracked.values().filter_map(|t| match &t.op {
            TrackedOp::Subscribe(f) => Some(f),
            _ => None,
        });
        let waiting = self.waiting.iter().filter_map(|(w, _, _)| match w {
            Waiting::Subscribe(f) => Some(f),
            _ => None,
        });
        tracked
            .chain(waiting)
            .flatten()
            .map(|(f, _)| f.clone())
            .collect()
    }

    /// The user has the QoS 1 message `pkid`: acknowledge it (if the connection that
    /// brought it is still up; otherwise the broker redelivers it, a duplicate QoS 1
    /// allows).
    pub(crate) fn ack_delivery(&mut self, pkid: u16, now: Instant) {
        if self.unacked_incoming.remove(&pkid) && self.connected {
            self.write(Packet::PubAck(Ack::new(pkid)), now);
        }
    }

    /// The DISCONNECT for a user's `disconnect()`. On MQTT 5, a session begun with Clean
    /// Start ends with it (Session Expiry Interval 0): it was kept only to survive outages.
    pub(crate) fn disconnect_packet(&self) -> Packet {
        let mut d = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
        if self.config.protocol.is_v5() && self.config.clean_start {
            d.properties.session_expiry_interval = Some(0);
        }
        Packet::Disconnect(d)
    }

    /// A packet from the broker. `Err` ends the connection with that reason.
    pub(crate) fn on_packet(&mut self, packet: Packet, now: Instant) -> Result<(), Reason> {
        if !self.connected {
            return match packet {
                Packet::ConnAck(_) => {
                    Err(Reason::Protocol("CONNACK handled by on_connack".to_owned()))
                }
                other => Err(Reason::Protocol(format!("{} before CONNACK", other.name()))),
            };
        }
        match packet {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(a) => self.acknowledged(a.pkid, "PUBACK", now, |op| match op {
                TrackedOp::Publish(_) if a.reason.is_success() => Some(Ok(())),
                TrackedOp::Publish(_) => Some(Err(Error::PublishRefused {
                    reason: a.reason,
                    reason_string: a.properties.reason_string.clone(),
                })),
                _ => None,
            }),
            Packet::SubAck(ack) => self.acknowledged(ack.pkid, "SUBACK", now, |op| match op {
                TrackedOp::Subscribe(filters) => Some(suback_verdict(filters, &ack)),
                _ => None,
            }),
            Packet::UnsubAck(ack) => self.acknowledged(ack.pkid, "UNSUBACK", now, |op| match op {
                TrackedOp::Unsubscribe(filters) => Some(unsuback_verdict(filters, &ack)),
                _ => None,
            }),
            Packet::PingResp => {
                self.ping_sent = None;
                Ok(())
            }
            Packet::Disconnect(d) => Err(Reason::ServerDisconnect {
                code: d.reason,
                reason_string: d.properties.reason_string.clone(),
            }),
            other => Err(Reason::Protocol(format!(
                "unexpected {} from the broker",
                other.name()
            ))),
        }
    }

    /// The acknowledgement `name` for `pkid`: `verdict` says how the operation it answers
    /// ends, or `None` when no operation of that kind waits under this id (e.g. it timed
    /// out), and the ack is dropped.
    fn acknowledged(
        &mut self,
        pkid: u16,
        name: &str,
        now: Instant,
        verdict: impl FnOnce(&TrackedOp) -> Option<Result<(), Error>>,
    ) -> Result<(), Reason> {
        match self.tracked.get(&pkid).and_then(|t| verdict(&t.op)) {
            Some(r) => {
                let t = self.tracked.remove(&pkid).expect("looked up above");
                self.completions.push_back((t.token, r));
            }
            None => tracing::debug!(pkid, "{name} for no matching operation in flight"),
        }
        self.flush_waiting(now);
        Ok(())
    }

    fn on_publish(&mut self, p: Publish) -> Result<(), Reason> {
        match p.qos {
            WireQoS::AtMostOnce => {
                self.deliveries.push_back(Delivery {
                    publish: p,
                    ack: None,
                });
                Ok(())
            }
            WireQoS::AtLeastOnce => {
                // A redelivery (DUP) of a message the user has not finished with yet: the
                // acknowledgement that is coming covers it.
                if !self.unacked_incoming.insert(p.pkid) {
                    tracing::debug!(pkid = p.pkid, "redelivery of a message in hand");
                    return Ok(());
                }
                let pkid = p.pkid;
                self.deliveries.push_back(Delivery {
                    publish: p,
                    ack: Some(pkid),
                });
                Ok(())
            }
            // We never subscribe with QoS 2, so a broker may not send it (MQTT §3.8.4).
            WireQoS::ExactlyOnce => Err(Reason::Protocol(
                "QoS 2 PUBLISH on a subscription of QoS 1 or less".to_owned(),
            )),
        }
    }

    /// Keep-alive and acknowledgement timeouts. `Err` when the link is dead.
    pub(crate) fn on_tick(&mut self, now: Instant) -> Result<(), Reason> {
        let expired: Vec<u16> = self
            .tracked
            .iter()
            .filter(|(_, t)| t.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for pkid in expired {
            let t = self.tracked.remove(&pkid).expect("listed above");
            let timeout = self.config.ack_timeout.unwrap_or_default();
            self.completions.push_back((
                t.token,
                Err(Error::AckTimeout {
                    what: t.op.what(),
                    timeout,
                }),
            ));
        }
        if !self.connected {
            return Ok(());
        }
        if let Some(sent) = self.ping_sent {
            if now >= sent + self.config.ping_timeout {
                return Err(Reason::KeepAliveTimeout(self.config.ping_timeout));
            }
        } else if !self.config.keep_alive.is_zero() {
            if let Some(last) = self.last_write {
                if now >= last + self.config.keep_alive {
                    self.write(Packet::PingReq, now);
                    self.ping_sent = Some(now);
                }
            }
        }
        self.flush_waiting(now);
        Ok(())
    }

    /// When [`ClientSession::on_tick`] next has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let ops = self.tracked.values().filter_map(|t| t.deadline).min();
        let link = if !self.connected {
            None
        } else if let Some(sent) = self.ping_sent {
            Some(sent + self.config.ping_timeout)
        } else if self.config.keep_alive.is_zero() {
            None
        } else {
            self.last_write.map(|l| l + self.config.keep_alive)
        };
        [ops, link].into_iter().flatten().min()
    }

    /// Packets wait to be written.
    pub(crate) fn has_transmit(&self) -> bool {
        !self.transmit.is_empty()
    }

    /// The next packet to write.
    pub(crate) fn poll_transmit(&mut self) -> Option<Packet> {
        self.transmit.pop_front()
    }

    /// The next finished operation.
    pub(crate) fn poll_completion(&mut self) -> Option<Completion<A>> {
        self.completions.pop_front()
    }

    /// The next incoming message.
    pub(crate) fn poll_delivery(&mut self) -> Option<Delivery> {
        self.deliveries.pop_front()
    }

    /// End of the session: every operation still open completes with `error()`.
    pub(crate) fn fail_all(&mut self, error: impl Fn() -> Error) -> Vec<Completion<A>> {
        let mut out: Vec<Completion<A>> = self.completions.drain(..).collect();
        let mut tracked: Vec<Tracked<A>> =
            std::mem::take(&mut self.tracked).into_values().collect();
        tracked.sort_by_key(|t| t.order);
        out.extend(tracked.into_iter().map(|t| (t.token, Err(error()))));
        out.extend(self.waiting.drain(..).map(|(_, a, _)| (a, Err(error()))));
        out
    }

    fn bump_order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    fn write(&mut self, p: Packet, now: Instant) {
        self.transmit.push_back(p);
        self.last_write = Some(now);
    }

    fn inflight_publishes(&self) -> usize {
        self.tracked
            .values()
            .filter(|t| matches!(t.op, TrackedOp::Publish(_)))
            .count()
    }

    /// A free packet id (1..=65535, none in use).
    fn allocate_pkid(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid == 0 {
                self.next_pkid = 1;
            }
            if !self.tracked.contains_key(&self.next_pkid) {
                return Some(self.next_pkid);
            }
        }
        None
    }

    fn too_large(&self, p: &Publish) -> Option<(usize, u32)> {
        let max = self.server_max_packet?;
        let len = mqtt::publish_encoded_len(&p.borrowed(), self.config.protocol);
        (len > max as usize).then_some((len, max))
    }

    /// Send what waits, in order, while connected and the window has room. A publish that
    /// cannot go yet blocks those behind it (order is kept).
    fn flush_waiting(&mut self, now: Instant) {
        while self.connected {
            let Some((w, _, _)) = self.waiting.front() else {
                return;
            };
            let needs_window = matches!(w, Waiting::Publish(p) if p.qos == QoS::AtLeastOnce);
            if needs_window && self.inflight_publishes() >= usize::from(self.inflight_limit) {
                return;
            }
            let (w, token, order) = self.waiting.pop_front().expect("front exists");
            let pkid = match &w {
                Waiting::Publish(p) if p.qos == QoS::AtMostOnce => 0,
                _ => match self.allocate_pkid() {
                    Some(id) => id,
                    None => {
                        self.waiting.push_front((w, token, order));
                        return;
                    }
                },
            };
            let deadline = self.config.ack_timeout.map(|d| now + d);
            match w {
                Waiting::Publish(p) => {
                    let publish = Publish {
                        dup: false,
                        qos: wire_qos(p.qos),
                        retain: p.retain,
                        topic: p.topic,
                        pkid,
                        payload: p.payload,
                        properties: p.properties,
                    };
                    if let Some((len, max)) = self.too_large(&publish) {
                        self.completions
                            .push_back((token, Err(Error::PacketTooLarge { len, max })));
                        continue;
                    }
                    self.write(Packet::Publish(publish.clone()), now);
                    if p.qos == QoS::AtMostOnce {
                        self.completions.push_back((token, Ok(())));
                    } else {
                        self.tracked.insert(
                            pkid,
                            Tracked {
                                op: TrackedOp::Publish(publish),
                                token,
                                attempts: 1,
                                deadline,
                                order,
                            },
                        );
                    }
                }
                Waiting::Subscribe(filters) => {
                    self.write(subscribe_packet(pkid, &filters), now);
                    self.tracked.insert(
                        pkid,
                        Tracked {
                            op: TrackedOp::Subscribe(filters),
                            token,
                            attempts: 1,
                            deadline,
                            order,
                        },
                    );
                }
                Waiting::Unsubscribe(filters) => {
                    self.write(unsubscribe_packet(pkid, &filters), now);
                    self.tracked.insert(
                        pkid,
                        Tracked {
                            op: TrackedOp::Unsubscribe(filters),
                            token,
                            attempts: 1,
                            deadline,
                            order,
                        },
                    );
                }
            }
        }
    }
}

/// How a SUBSCRIBE of `filters` ends by its SUBACK: the first refused filter, named, or
/// a protocol error when the codes do not match the filters one to one.
fn suback_verdict(filters: &[(String, QoS)], ack: &SubAck) -> Result<(), Error> {
    let refused = ack
        .return_codes
        .iter()
        .zip(filters)
        .find(|(r, _)| r.is_failure());
    match refused {
        None if ack.return_codes.len() == filters.len() => Ok(()),
        None => Err(Error::SubscribeRefused {
            filter: filters[0].0.clone(),
            reason: ReasonCode::PROTOCOL_ERROR,
            reason_string: Some(format!(
                "SUBACK has {} codes for {} filters",
                ack.return_codes.len(),
                filters.len()
            )),
        }),
        Some((reason, (filter, _))) => Err(Error::SubscribeRefused {
            filter: filter.clone(),
            reason: *reason,
            reason_string: ack.properties.reason_string.clone(),
        }),
    }
}

/// How an UNSUBSCRIBE ends by its UNSUBACK (MQTT 3.1.1's carries no codes: success).
/// 0x11 No subscription existed is a success: the filter is not held.
fn unsuback_verdict(filters: &[String], ack: &UnsubAck) -> Result<(), Error> {
    match ack
        .reason_codes
        .iter()
        .zip(filters)
        .find(|(r, _)| r.is_failure())
    {
        None => Ok(()),
        Some((reason, filter)) => Err(Error::UnsubscribeRefused {
            filter: filter.clone(),
            reason: *reason,
            reason_string: ack.properties.reason_string.clone(),
        }),
    }
}

fn subscribe_packet(pkid: u16, filters: &[(String, QoS)]) -> Packet {
    Packet::Subscribe(Subscribe {
        pkid,
        filters: filters
            .iter()
            .map(|(f, q)| SubscribeFilter::new(f.clone(), wire_qos(*q)))
            .collect(),
        properties: SubscribeProperties::default(),
    })
}

fn unsubscribe_packet(pkid: u16, filters: &[String]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        pkid,
        filters: filters.to_vec(),
        user_properties: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt::ConnAck;

    fn config(clean_start: bool) -> SessionConfig {
        SessionConfig {
            client_id: "c1".into(),
            clean_start,
            protocol: Protocol::V311,
            keep_alive: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(3),
            will: None,
            session_expiry: 3600,
            max_packet_size: 1 << 20,
            ack_timeout: Some(Duration::from_secs(5)),
            max_attempts: 3,
            inflight_limit: 2,
        }
    }

    fn publish(topic: &str, qos: QoS) -> OutgoingPublish {
        OutgoingPublish {
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            properties: PublishProperties::default(),
        }
    }

    fn connack(present: bool) -> ConnAck {
        ConnAck::new(present, ReasonCode::SUCCESS)
    }

    fn written(s: &mut ClientSession<u32>) -> Vec<Packet> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    fn done(s: &mut ClientSession<u32>) -> Vec<(u32, Result<(), String>)> {
        std::iter::from_fn(|| s.poll_completion())
            .map(|(t, r)| (t, r.map_err(|e| e.to_string())))
            .collect()
    }

    fn clean_flag(p: &Packet) -> bool {
        match p {
            Packet::Connect(c) => c.clean_session,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_first_connect_uses_the_callers_flag_and_reconnects_rejoin() {
        let t = Instant::now();
        let mut s = ClientSession::<u32>::new(config(true));
        assert!(clean_flag(&s.connect_packet(None, None)));
        // Refused: nothing joined yet, so the next attempt is still clean.
        let refused = ConnAck::new(false, ReasonCode::NOT_AUTHORIZED);
        assert!(matches!(
            s.on_connack(&refused, t),
            Err(Reason::Refused { .. })
        ));
        assert!(clean_flag(&s.connect_packet(None, None)));
        assert!(!s.on_connack(&connack(false), t).unwrap());
        s.on_connection_lost();
        assert!(
            !clean_flag(&s.connect_packet(None, None)),
            "a reconnect asks to resume"
        );
    }

    #[test]
    fn nothing_is_written_before_connack_and_qos0_then_goes_out_in_order() {
        let t = Instant::now();
        let mut s = ClientSession::new(config(true));
        s.publish(publish("a", QoS::AtMostOnce), 1, t);
        s.publish(publish("b", QoS::AtLeastOnce), 2, t);
        assert!(written(&mut s).is_empty());
        s.on_connack(&connack(false), t).unwrap();
        let topics: Vec<_> = written(&mut s)
            .into_iter()
            .map(|p| match p {
                Packet::Publish(p) => (p.topic, p.pkid),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(topics, vec![("a".into(), 0), ("b".into(), 1)]);
        assert_eq!(
            done(&mut s),
            vec![(1, Ok(()))],
            "QoS 0 completes once written"
        );
        s.on_packet(Packet::PubAck(Ack::new(1)), t).unwrap();
        assert_eq!(done(&mut s), vec![(2, Ok(()))]);
    }

    #[test]
    fn a_resend_keeps_its_packet_id_and_sets_dup() {
        let t = Instant::now();
        let mut s = ClientSession::new(config(false));
        s.on_connack(&connack(false), t).unwrap();
        s.publish(publish("a", QoS::AtLeastOnce), 1, t);
        s.publish(publish("b", QoS::AtLeastOnce), 2, t);
        let first = written(&mut s);
        s.on_packet(Packet::PubAck(Ack::new(1)), t).unwrap();
        s.on_connection_lost();
        s.on_connack(&connack(true), t).unwrap();
        let again = written(&mut s);
        match (&first[1], &again[..]) {
            (Packet::Publish(before), [Packet::Publish(after)]) => {
                assert_eq!(after.pkid, before.pkid);
                assert!(after.dup && !before.dup);
                assert_eq!(after.topic, "b");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_operation_that_kills_every_connection_gives_up_after_max_attempts() {
        let t = Instant::now();
        let mut s = ClientSession::new(config(false));
        s.on_connack(&connack(false), t).unwrap();
        s.publish(publish("denied", QoS::AtLeastOnce), 7, t);
        for _ in 0..2 {
            assert_eq!(written(&mut s).len(), 1);
            s.on_connection_lost();
            s.on_connack(&connack(true), t).unwrap();
        }
        assert_eq!(written(&mut s).len(), 1, "third attempt");
        s.on_connection_lost();
        s.on_connack(&connack(true), t).unwrap();
        assert!(written(&mut s).is_empty(), "not sent a fourth time");
        let d = done(&mut s);
        assert_eq!(d.len(), 1);
        assert!(d[0].1.as_ref().unwrap_err().contains("3 times"), "{d:?}");
    }

    #[test]
    fn an_unanswered_operation_times_out_and_frees_the_window() {
        let t = Instant::now();
        let mut s = ClientSession::new(config(false));
        s.on_connack(&connack(false), t).unwrap();
        for token in 1..=3 {
            s.publish(publish("t", QoS::AtLeastOnce), token, t);
        }
        assert_eq!(written(&mut s).len(), 2, "window of 2");
        assert_eq!(s.next_deadline(), Some(t + Duration::from_secs(5)));
        s.on_tick(t + Duration::from_secs(5)).unwrap();
        let d = done(&mut s);
        assert_eq!(d.len(), 2);
        assert!(d[0]
            .1
            .as_ref()
            .unwrap_err()
            .contains("not acknowledged within"));
        assert_eq!(written(&mut s).len(), 1, "the third goes out");
    }

    #[test]
    fn keep_alive_pings_when_idle_and_a_missing_pingresp_is_a_dead_link() {
        let t = Instant::now();
        let mut s = ClientSession::<u32>::new(config(false));
        s.on_connect_written(t);
        s.on_connack(&connack(false), t).unwrap();
        s.on_tick(t + Duration::from_secs(9)).unwrap();
        assert!(written(&mut s).is_empty());
        s.on_tick(t + Duration::from_secs(10)).unwrap();
        assert_eq!(written(&mut s), vec![Packet::PingReq]);
        s.on_packet(Packet::PingResp, t + Duration::from_secs(11))
            .unwrap();
        s.on_tick(t + Duration::from_secs(20)).unwrap();
        assert_eq!(written(&mut s), vec![Packet::PingReq]);
        let dead = s.on_tick(t + Duration::from_secs(23));
        assert!(matches!(dead, Err(Reason::KeepAliveTimeout(_))), "{dead:?}");
    }

    #[test]
    fn qos1_is_acknowledged_only_when_handed_over_and_a_dup_in_hand_is_not_redelivered() {
        let t = Instant::now();
        let mut s = ClientSession::<u32>::new(config(false));
        s.on_connack(&connack(true), t).unwrap();
        let incoming = Publish {
            dup: false,
            qos: WireQoS::AtLeastOnce,
            retain: false,
            topic: "in".into(),
            pkid: 9,
            payload: Bytes::from_static(b"m"),
            properties: PublishProperties::default(),
        };
        s.on_packet(Packet::Publish(incoming.clone()), t).unwrap();
        let d = s.poll_delivery().unwrap();
        assert_eq!(d.ack, Some(9));
        assert!(written(&mut s).is_empty(), "no PUBACK before the hand-off");
        let redelivery = Publish {
            dup: true,
            ..incoming
        };
        s.on_packet(Packet::Publish(redelivery), t).unwrap();
        assert!(s.poll_delivery().is_none());
        s.ack_delivery(9, t);
        assert_eq!(written(&mut s), vec![Packet::PubAck(Ack::new(9))]);
    }

    #[test]
    fn a_refused_filter_is_named_and_v5_disconnect_ends_a_clean_session() {
        let t = Instant::now();
        let mut c = config(true);
        c.protocol = Protocol::V5;
        let mut s = ClientSession::new(c);
        s.on_connack(&connack(false), t).unwrap();
        s.subscribe(
            vec![
                ("ok".into(), QoS::AtLeastOnce),
                ("no".into(), QoS::AtMostOnce),
            ],
            1,
            t,
        );
        assert_eq!(s.pending_filters().len(), 2);
        let pkid = match &written(&mut s)[..] {
            [Packet::Subscribe(sub)] => sub.pkid,
            other => panic!("{other:?}"),
        };
        let suback = SubAck {
            pkid,
            return_codes: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED],
            properties: Default::default(),
        };
        s.on_packet(Packet::SubAck(suback), t).unwrap();
        let d = done(&mut s);
        assert!(d[0].1.as_ref().unwrap_err().contains("\"no\""), "{d:?}");
        match s.disconnect_packet() {
            Packet::Disconnect(d) => assert_eq!(d.properties.session_expiry_interval, Some(0)),
            other => panic!("{other:?}"),
        }
    }
}
