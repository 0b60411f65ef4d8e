//! Matching rumqttc's events to the requests that wait on them.
//!
//! The session task hands a publish, subscribe or unsubscribe to rumqttc's `AsyncClient`
//! and only learns its packet id later, from the `Event::Outgoing(..)` rumqttc emits when
//! it writes the packet; the PUBACK/SUBACK/UNSUBACK then names that packet id. rumqttc
//! writes requests in the order they were handed over, so the requests wait in a FIFO
//! until their outgoing event, then in a table keyed by packet id until their ack.
//!
//! This type holds that bookkeeping and nothing else: no I/O, no callbacks, no logging
//! (as rumqttc splits its `state.rs` from its `eventloop.rs`), so event sequences can be
//! scripted in unit tests. It is generic over the request values so that the session can
//! store its acknowledgement sinks and the tests plain values.

use std::collections::{HashMap, VecDeque};

use crate::QoS;

/// What the bookkeeping needs to know about a publish.
pub(crate) trait TrackedPublish {
    /// QoS 0 is done once written; QoS 1 waits for its PUBACK.
    fn qos(&self) -> QoS;
    /// Submission order: what is left at a disconnect is re-sent in this order.
    fn seq(&self) -> u64;
}

/// A request handed to the MQTT client, waiting for its outgoing event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Op<P, S, U> {
    Publish(P),
    Subscribe(S),
    Unsubscribe(U),
}

/// A subscribe or unsubscribe left without its ack by a disconnect.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request<S, U> {
    Subscribe(S),
    Unsubscribe(U),
}

/// What an `Outgoing::Publish` meant.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written<P> {
    /// A QoS 0 publish was written: it is complete.
    Sent(P),
    /// A QoS 1 publish was written and now waits for the PUBACK of its packet id.
    AwaitingAck,
    /// The delayed write of the publish recorded at `AwaitAck`; nothing new.
    Retransmitted,
}

/// An outgoing event whose kind does not match the oldest request handed over. Holds that
/// request (`None`: there was none); it is taken off the FIFO so the rest stays in step.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OutOfStep<P, S, U>(pub(crate) Option<Op<P, S, U>>);

/// What a connection leaves behind when it ends.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Drained<P, S, U> {
    /// QoS 1 publishes without their PUBACK (written or not), by `seq`.
    pub(crate) resend: Vec<P>,
    /// QoS 0 publishes handed over but never written, by `seq`.
    pub(crate) failed: Vec<P>,
    /// Subscribes/unsubscribes without their ack: the written ones by packet id, then the
    /// unwritten ones in the order they were handed over.
    pub(crate) requests: Vec<Request<S, U>>,
}

/// The requests of one connection that wait for an outgoing event or an ack.
pub(crate) struct InFlight<P, S, U> {
    /// Handed to the client, not yet written.
    handed: VecDeque<Op<P, S, U>>,
    /// Written QoS 1 publishes by packet id. A queue because after a packet-id collision
    /// two publishes share one id until the first PUBACK.
    publishes: HashMap<u16, VecDeque<P>>,
    subscribes: HashMap<u16, S>,
    unsubscribes: HashMap<u16, U>,
    /// The packet id rumqttc reported `AwaitAck` for: its next `Outgoing::Publish` is the
    /// delayed write of a publish already recorded, not a new one.
    collision: Option<u16>,
}

impl<P: TrackedPublish, S, U> InFlight<P, S, U> {
    pub(crate) fn new() -> Self {
        InFlight {
            handed: VecDeque::new(),
            publishes: HashMap::new(),
            subscribes: HashMap::new(),
            unsubscribes: HashMap::new(),
            collision: None,
        }
    }

    /// `op` was handed to the client: its outgoing event comes after those handed before.
    pub(crate) fn push(&mut self, op: Op<P, S, U>) {
        self.handed.push_back(op);
    }

    /// `Outgoing::Publish(pkid)`.
    pub(crate) fn on_outgoing_publish(
        &mut self,
        pkid: u16,
    ) -> Result<Written<P>, OutOfStep<P, S, U>> {
        if self.collision == Some(pkid) {
            self.collision = None;
            return Ok(Written::Retransmitted);
        }
        match self.handed.pop_front() {
            Some(Op::Publish(p)) if p.qos() == QoS::AtMostOnce => Ok(Written::Sent(p)),
            Some(Op::Publish(p)) => {
                self.publishes.entry(pkid).or_default().push_back(p);
                Ok(Written::AwaitingAck)
            }
            other => Err(OutOfStep(other)),
        }
    }

    /// `Outgoing::AwaitAck(pkid)`: rumqttc's next packet id is still unacknowledged, so it
    /// holds the publish and writes it after that PUBACK (as `Outgoing::Publish(pkid)`).
    /// The publish is recorded now, behind the one that holds the id.
    pub(crate) fn on_await_ack(&mut self, pkid: u16) -> Result<(), OutOfStep<P, S, U>> {
        match self.handed.pop_front() {
            Some(Op::Publish(p)) => {
                self.publishes.entry(pkid).or_default().push_back(p);
                self.collision = Some(pkid);
                Ok(())
            }
            other => Err(OutOfStep(other)),
        }
    }

    /// `Outgoing::Subscribe(pkid)`.
    pub(crate) fn on_outgoing_subscribe(&mut self, pkid: u16) -> Result<(), OutOfStep<P, S, U>> {
        match self.handed.pop_front() {
            Some(Op::Subscribe(s)) => {
                self.subscribes.insert(pkid, s);
                Ok(())
            }
            other => Err(OutOfStep(other)),
        }
    }

    /// `Outgoing::Unsubscribe(pkid)`.
    pub(crate) fn on_outgoing_unsubscribe(&mut self, pkid: u16) -> Result<(), OutOfStep<P, S, U>> {
        match self.handed.pop_front() {
            Some(Op::Unsubscribe(u)) => {
                self.unsubscribes.insert(pkid, u);
                Ok(())
            }
            other => Err(OutOfStep(other)),
        }
    }

    /// PUBACK: the oldest publish written under `pkid`; `None` if there is none.
    pub(crate) fn on_puback(&mut self, pkid: u16) -> Option<P> {
        let p = self.publishes.get_mut(&pkid).and_then(|q| q.pop_front());
        if self.publishes.get(&pkid).is_some_and(|q| q.is_empty()) {
            self.publishes.remove(&pkid);
        }
        p
    }

    /// SUBACK: the subscribe written under `pkid`; `None` if there is none.
    pub(crate) fn on_suback(&mut self, pkid: u16) -> Option<S> {
        self.subscribes.remove(&pkid)
    }

    /// UNSUBACK: the unsubscribe written under `pkid`; `None` if there is none.
    pub(crate) fn on_unsuback(&mut self, pkid: u16) -> Option<U> {
        self.unsubscribes.remove(&pkid)
    }

    /// The connection ended: everything still waiting, sorted for re-sending. Leaves the
    /// bookkeeping empty.
    pub(crate) fn drain_on_disconnect(&mut self) -> Drained<P, S, U> {
        self.collision = None;
        let mut pubs: Vec<P> = self.publishes.drain().flat_map(|(_, q)| q).collect();
        let mut written: Vec<(u16, Request<S, U>)> = self
            .subscribes
            .drain()
            .map(|(pkid, s)| (pkid, Request::Subscribe(s)))
            .chain(
                self.unsubscribes
                    .drain()
                    .map(|(pkid, u)| (pkid, Request::Unsubscribe(u))),
            )
            .collect();
        written.sort_by_key(|(pkid, _)| *pkid);
        let mut requests: Vec<Request<S, U>> = written.into_iter().map(|(_, r)| r).collect();
        for op in self.handed.drain(..) {
            match op {
                Op::Publish(p) => pubs.push(p),
                Op::Subscribe(s) => requests.push(Request::Subscribe(s)),
                Op::Unsubscribe(u) => requests.push(Request::Unsubscribe(u)),
            }
        }
        pubs.sort_by_key(|p| p.seq());
        let (resend, failed) = pubs.into_iter().partition(|p| p.qos() == QoS::AtLeastOnce);
        Drained {
            resend,
            failed,
            requests,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    struct Pub {
        seq: u64,
        qos: QoS,
    }

    impl TrackedPublish for Pub {
        fn qos(&self) -> QoS {
            self.qos
        }
        fn seq(&self) -> u64 {
            self.seq
        }
    }

    fn q0(seq: u64) -> Pub {
        Pub {
            seq,
            qos: QoS::AtMostOnce,
        }
    }

    fn q1(seq: u64) -> Pub {
        Pub {
            seq,
            qos: QoS::AtLeastOnce,
        }
    }

    type T = InFlight<Pub, &'static str, &'static str>;

    #[test]
    fn puback_resolves_the_publish_written_under_its_pkid() {
        let mut t = T::new();
        t.push(Op::Publish(q1(1)));
        assert_eq!(t.on_outgoing_publish(7), Ok(Written::AwaitingAck));
        assert_eq!(t.on_puback(7), Some(q1(1)));
        assert_eq!(t.on_puback(7), None, "resolved once only");
    }

    #[test]
    fn qos0_publish_completes_when_written() {
        let mut t = T::new();
        t.push(Op::Publish(q0(1)));
        assert_eq!(t.on_outgoing_publish(0), Ok(Written::Sent(q0(1))));
        assert_eq!(t.on_puback(0), None);
        assert_eq!(t.drain_on_disconnect(), Drained::default());
    }

    #[test]
    fn interleaved_publishes_resolve_by_pkid() {
        let mut t = T::new();
        t.push(Op::Publish(q1(1)));
        t.push(Op::Publish(q1(2)));
        assert_eq!(t.on_outgoing_publish(1), Ok(Written::AwaitingAck));
        t.push(Op::Publish(q1(3)));
        assert_eq!(t.on_outgoing_publish(2), Ok(Written::AwaitingAck));
        assert_eq!(t.on_outgoing_publish(3), Ok(Written::AwaitingAck));
        // Acks out of order.
        assert_eq!(t.on_puback(2), Some(q1(2)));
        assert_eq!(t.on_puback(3), Some(q1(3)));
        assert_eq!(t.on_puback(1), Some(q1(1)));
    }

    #[test]
    fn suback_and_unsuback_match_their_requests() {
        let mut t = T::new();
        t.push(Op::Subscribe("a"));
        t.push(Op::Publish(q1(1)));
        t.push(Op::Unsubscribe("b"));
        t.push(Op::Subscribe("c"));
        assert_eq!(t.on_outgoing_subscribe(1), Ok(()));
        assert_eq!(t.on_outgoing_publish(2), Ok(Written::AwaitingAck));
        assert_eq!(t.on_outgoing_unsubscribe(3), Ok(()));
        assert_eq!(t.on_outgoing_subscribe(4), Ok(()));
        // An ack of the other kind does not take the request.
        assert_eq!(t.on_suback(3), None);
        assert_eq!(t.on_unsuback(1), None);
        assert_eq!(t.on_unsuback(3), Some("b"));
        assert_eq!(t.on_suback(4), Some("c"));
        assert_eq!(t.on_suback(1), Some("a"));
        assert_eq!(t.on_puback(2), Some(q1(1)));
    }

    #[test]
    fn collision_waits_for_the_first_puback_and_skips_the_retransmission() {
        let mut t = T::new();
        t.push(Op::Publish(q1(1)));
        assert_eq!(t.on_outgoing_publish(5), Ok(Written::AwaitingAck));
        // pkid 5 comes round again while still unacknowledged: rumqttc holds seq 2.
        t.push(Op::Publish(q1(2)));
        t.push(Op::Publish(q1(3)));
        assert_eq!(t.on_await_ack(5), Ok(()));
        // The first PUBACK for 5 is the older publish's.
        assert_eq!(t.on_puback(5), Some(q1(1)));
        // rumqttc now writes the held publish: not a new request, seq 3 stays queued.
        assert_eq!(t.on_outgoing_publish(5), Ok(Written::Retransmitted));
        assert_eq!(t.on_outgoing_publish(6), Ok(Written::AwaitingAck));
        assert_eq!(t.on_puback(5), Some(q1(2)));
        assert_eq!(t.on_puback(6), Some(q1(3)));
        // The collision is over: the next publish under 5 is a new one.
        t.push(Op::Publish(q1(4)));
        assert_eq!(t.on_outgoing_publish(5), Ok(Written::AwaitingAck));
        assert_eq!(t.on_puback(5), Some(q1(4)));
    }

    #[test]
    fn collided_publish_is_resent_after_a_disconnect() {
        let mut t = T::new();
        t.push(Op::Publish(q1(1)));
        assert_eq!(t.on_outgoing_publish(5), Ok(Written::AwaitingAck));
        t.push(Op::Publish(q1(2)));
        assert_eq!(t.on_await_ack(5), Ok(()));
        let d = t.drain_on_disconnect();
        assert_eq!(d.resend, vec![q1(1), q1(2)]);
        // No collision survives into the next connection's bookkeeping.
        t.push(Op::Publish(q1(3)));
        assert_eq!(t.on_outgoing_publish(5), Ok(Written::AwaitingAck));
    }

    #[test]
    fn unknown_acks_are_ignored_and_reported() {
        let mut t = T::new();
        t.push(Op::Publish(q1(1)));
        t.push(Op::Subscribe("a"));
        t.push(Op::Unsubscribe("b"));
        assert_eq!(t.on_outgoing_publish(1), Ok(Written::AwaitingAck));
        assert_eq!(t.on_outgoing_subscribe(2), Ok(()));
        assert_eq!(t.on_outgoing_unsubscribe(3), Ok(()));
        assert_eq!(t.on_puback(9), None);
        assert_eq!(t.on_suback(9), None);
        assert_eq!(t.on_unsuback(9), None);
        // The known ones are untouched.
        assert_eq!(t.on_puback(1), Some(q1(1)));
        assert_eq!(t.on_suback(2), Some("a"));
        assert_eq!(t.on_unsuback(3), Some("b"));
    }

    #[test]
    fn out_of_step_events_hand_back_the_oldest_request() {
        let mut t = T::new();
        t.push(Op::Subscribe("a"));
        t.push(Op::Publish(q1(1)));
        t.push(Op::Unsubscribe("b"));
        assert_eq!(
            t.on_outgoing_publish(1),
            Err(OutOfStep(Some(Op::Subscribe("a"))))
        );
        assert_eq!(
            t.on_outgoing_subscribe(2),
            Err(OutOfStep(Some(Op::Publish(q1(1)))))
        );
        assert_eq!(
            t.on_await_ack(3),
            Err(OutOfStep(Some(Op::Unsubscribe("b"))))
        );
        assert_eq!(t.on_outgoing_unsubscribe(4), Err(OutOfStep(None)));
        // A failed AwaitAck records no collision.
        t.push(Op::Publish(q1(2)));
        assert_eq!(t.on_outgoing_publish(3), Ok(Written::AwaitingAck));
        assert_eq!(t.drain_on_disconnect().resend, vec![q1(2)]);
    }

    #[test]
    fn disconnect_drains_by_pkid_then_handover_order() {
        let mut t = T::new();
        t.push(Op::Subscribe("c"));
        t.push(Op::Unsubscribe("a"));
        t.push(Op::Subscribe("b"));
        t.push(Op::Publish(q1(5)));
        t.push(Op::Publish(q1(2)));
        assert_eq!(t.on_outgoing_subscribe(3), Ok(()));
        assert_eq!(t.on_outgoing_unsubscribe(1), Ok(()));
        assert_eq!(t.on_outgoing_subscribe(2), Ok(()));
        assert_eq!(t.on_outgoing_publish(10), Ok(Written::AwaitingAck));
        assert_eq!(t.on_outgoing_publish(11), Ok(Written::AwaitingAck));
        // Handed over, never written.
        t.push(Op::Unsubscribe("d"));
        t.push(Op::Publish(q0(4)));
        t.push(Op::Subscribe("e"));
        t.push(Op::Publish(q1(1)));
        t.push(Op::Publish(q0(3)));
        let d = t.drain_on_disconnect();
        assert_eq!(d.resend, vec![q1(1), q1(2), q1(5)]);
        assert_eq!(d.failed, vec![q0(3), q0(4)]);
        assert_eq!(
            d.requests,
            vec![
                Request::Unsubscribe("a"),
                Request::Subscribe("b"),
                Request::Subscribe("c"),
                Request::Unsubscribe("d"),
                Request::Subscribe("e"),
            ]
        );
        // Nothing is left behind.
        assert_eq!(t.on_puback(10), None);
        assert_eq!(t.on_suback(2), None);
        assert_eq!(t.on_outgoing_publish(12), Err(OutOfStep(None)));
        assert_eq!(t.drain_on_disconnect(), Drained::default());
    }

    impl<P, S, U> Default for Drained<P, S, U> {
        fn default() -> Self {
            Drained {
                resend: Vec::new(),
                failed: Vec::new(),
                requests: Vec::new(),
            }
        }
    }
}
