//! The MQTT session state of one client id, as a pure state machine: subscriptions, the
//! queue of messages waiting to be sent, and the outbound QoS 1 window. No I/O, no locks,
//! no clock: the connection task and the router drive it and perform what it decides.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use mqtt::QoS;

use crate::message::MessageMeta;

/// One message on its way to one subscriber. Topic, payload and MQTT 5 metadata are
/// shared among all the subscribers of a publish, so fan-out copies pointers, not the
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub meta: Option<Arc<MessageMeta>>,
}

impl Delivery {
    /// Past its Message Expiry Interval: no longer delivered (IoT Core drops it from
    /// queues, in-flight windows excepted, and from retained messages).
    /// `now_ms` is asked only for a message with an expiry (most have none).
    pub fn is_expired_at(&self, now_ms: impl FnOnce() -> u64) -> bool {
        MessageMeta::has_expired(self.meta.as_deref(), now_ms)
    }
}

/// What happened to a message offered to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued under this session-local sequence number (what the durable store keys it by).
    Queued(u64),
    /// QoS 0 is not kept for an offline session (IoT Core stores only QoS 1), nor past the
    /// bound of a slow subscriber's queue.
    DroppedQos0,
    /// The queue was at its bound: the oldest queued QoS 1 message made room.
    DroppedOldestQos1(Delivery),
}

/// The next packet a connection should write for this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// `None` for QoS 0.
    pub pkid: Option<u16>,
    pub dup: bool,
    pub delivery: Delivery,
}

#[derive(Debug)]
pub struct SessionState {
    subscriptions: BTreeMap<String, QoS>,
    /// Waiting to be sent, with their sequence numbers.
    pending: VecDeque<(u64, Delivery)>,
    /// Sent QoS 1 messages awaiting PUBACK, oldest first (resent in this order on resume).
    inflight: VecDeque<(u16, u64, Delivery)>,
    next_pkid: u16,
    next_seq: u64,
    /// Sequence numbers of messages the session no longer holds (acknowledged, dropped,
    /// refused), for the caller to forget in the durable store. Drained by `take_removed`.
    removed: Vec<u64>,
    // u32: kept small, as every session carries them.
    max_inflight: u32,
    max_queued: u32,
    max_queued_qos0_bytes: u32,
    /// Topic and payload bytes held in `pending`: what a slow subscriber costs in memory.
    pending_bytes: usize,
    dropped_qos0: u64,
    dropped_qos1: u64,
}

impl SessionState {
    /// `max_queued` bounds queued messages (the session's QoS 1 backlog);
    /// `max_queued_qos0_bytes` bounds the memory a slow subscriber may hold before it starts
    /// losing QoS 0.
    pub fn new(
        max_inflight: usize,
        max_queued: usize,
        max_queued_qos0_bytes: usize,
    ) -> SessionState {
        SessionState {
            subscriptions: BTreeMap::new(),
            pending: VecDeque::new(),
            inflight: VecDeque::new(),
            next_pkid: 1,
            next_seq: 1,
            removed: Vec::new(),
            max_inflight: saturating_u32(max_inflight.max(1)),
            max_queued: saturating_u32(max_queued.max(1)),
            max_queued_qos0_bytes: saturating_u32(max_queued_qos0_bytes),
            pending_bytes: 0,
            dropped_qos0: 0,
            dropped_qos1: 0,
        }
    }

    /// The client's Receive Maximum (MQTT 5) narrows the outbound QoS 1 window for the
    /// connection that owns the session now; never wider than the configured window.
    pub fn set_max_inflight(&mut self, max_inflight: usize) {
        self.max_inflight = saturating_u32(max_inflight.max(1));
    }

    /// Records a subscription; returns the previous granted QoS if it replaced one.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> Option<QoS> {
        self.subscriptions.insert(filter.to_owned(), qos)
    }

    pub fn unsubscribe(&mut self, filter: &str) -> bool {
        self.subscriptions.remove(filter).is_some()
    }

    pub fn is_subscribed(&self, filter: &str) -> bool {
        self.subscriptions.contains_key(filter)
    }

    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, QoS)> {
        self.subscriptions
            .iter()
            .map(|(filter, qos)| (filter.as_str(), *qos))
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    /// Offers a message to the session. `online` says whether a connection will drain it.
    pub fn enqueue(&mut self, delivery: Delivery, online: bool) -> Enqueued {
        if delivery.qos == QoS::AtMostOnce {
            let full = self.pending.len() >= self.max_queued as usize
                || self.pending_bytes + queued_size(&delivery)
                    > self.max_queued_qos0_bytes as usize;
            if !online || full {
                self.dropped_qos0 += 1;
                return Enqueued::DroppedQos0;
            }
            return Enqueued::Queued(self.push_pending(delivery));
        }
        let mut dropped_oldest = None;
        if self.pending.len() >= self.max_queued as usize {
            // Make room by dropping the oldest QoS 1; QoS 0 entries ahead of it are kept
            // because they are about to be written by an online connection anyway.
            if let Some(index) = self
                .pending
                .iter()
                .position(|(_, queued)| queued.qos != QoS::AtMostOnce)
            {
                let (seq, dropped) = self.pending.remove(index).expect("index from position");
                self.pending_bytes -= queued_size(&dropped);
                self.removed.push(seq);
                self.dropped_qos1 += 1;
                dropped_oldest = Some(dropped);
            } else {
                self.pop_pending();
                self.dropped_qos0 += 1;
            }
        }
        let seq = self.push_pending(delivery);
        match dropped_oldest {
            Some(dropped) => Enqueued::DroppedOldestQos1(dropped),
            None => Enqueued::Queued(seq),
        }
    }

    /// The sequence number the last queued message got (what the store keys it by).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Puts messages recovered from the durable store back in the queue, in order; they
    /// keep their sequence numbers.
    pub fn restore(&mut self, queued: impl IntoIterator<Item = (u64, Delivery)>) {
        for (seq, delivery) in queued {
            self.next_seq = self.next_seq.max(seq + 1);
            self.pending_bytes += queued_size(&delivery);
            self.pending.push_back((seq, delivery));
        }
    }

    /// Sequence numbers dropped since the last call (see `removed`).
    pub fn take_removed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.removed)
    }

    /// Takes the next message to write, assigning a packet id to QoS 1. `None` when the
    /// queue is empty or the head is QoS 1 and the in-flight window is full (order is kept:
    /// later QoS 0 messages wait behind it).
    pub fn next_outgoing(&mut self) -> Option<Outgoing> {
        let (_, head) = self.pending.front()?;
        if head.qos == QoS::AtMostOnce {
            let (_, delivery) = self.pop_pending()?;
            return Some(Outgoing {
                pkid: None,
                dup: false,
                delivery,
            });
        }
        if self.inflight.len() >= self.max_inflight as usize {
            return None;
        }
        let (seq, delivery) = self.pop_pending()?;
        let pkid = self.allocate_pkid();
        self.inflight.push_back((pkid, seq, delivery.clone()));
        Some(Outgoing {
            pkid: Some(pkid),
            dup: false,
            delivery,
        })
    }

    /// Like [`SessionState::next_outgoing`], but first discards queued messages the
    /// subscriber may not receive (`allowed` says no): IoT Core drops them silently.
    pub fn next_outgoing_where(
        &mut self,
        mut allowed: impl FnMut(&Delivery) -> bool,
    ) -> Option<Outgoing> {
        while !allowed(&self.pending.front()?.1) {
            if let Some((seq, _)) = self.pop_pending() {
                self.removed.push(seq);
            }
        }
        self.next_outgoing()
    }

    /// The client acknowledged a QoS 1 delivery. `false` for an unknown packet id.
    pub fn acknowledge(&mut self, pkid: u16) -> bool {
        match self.inflight.iter().position(|(id, _, _)| *id == pkid) {
            Some(index) => {
                if let Some((_, seq, _)) = self.inflight.remove(index) {
                    self.removed.push(seq);
                }
                true
            }
            None => false,
        }
    }

    /// On resuming a session, unacknowledged QoS 1 messages are sent again with DUP set
    /// and their original packet ids (MQTT-4.4.0-1).
    pub fn redeliveries(&self) -> impl Iterator<Item = Outgoing> + '_ {
        self.inflight.iter().map(|(pkid, _, delivery)| Outgoing {
            pkid: Some(*pkid),
            dup: true,
            delivery: delivery.clone(),
        })
    }

    /// QoS 0 messages queued for a connection that is gone are not kept for the next one.
    pub fn drop_queued_qos0(&mut self) {
        let before = self.pending.len();
        self.pending
            .retain(|(_, queued)| queued.qos != QoS::AtMostOnce);
        self.dropped_qos0 += (before - self.pending.len()) as u64;
        self.pending_bytes = self
            .pending
            .iter()
            .map(|(_, queued)| queued_size(queued))
            .sum();
    }

    pub fn queued_len(&self) -> usize {
        self.pending.len()
    }

    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    #[cfg(test)]
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped_qos0, self.dropped_qos1)
    }

    fn push_pending(&mut self, delivery: Delivery) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending_bytes += queued_size(&delivery);
        self.pending.push_back((seq, delivery));
        seq
    }

    fn pop_pending(&mut self) -> Option<(u64, Delivery)> {
        let (seq, delivery) = self.pending.pop_front()?;
        self.pending_bytes -= queued_size(&delivery);
        Some((seq, delivery))
    }

    fn allocate_pkid(&mut self) -> u16 {
        // The window is at most a few hundred entries, so a scan beats a set here.
        loop {
            let candidate = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|(id, _, _)| *id == candidate) {
                return candidate;
            }
        }
    }
}

fn queued_size(delivery: &Delivery) -> usize {
    delivery.topic.len() + delivery.payload.len()
}

fn saturating_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, qos: QoS) -> Delivery {
        Delivery {
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            meta: None,
        }
    }

    #[test]
    fn qos0_is_not_kept_for_offline_sessions() {
        let mut session = SessionState::new(10, 100, 1 << 20);
        assert_eq!(
            session.enqueue(message("a", QoS::AtMostOnce), false),
            Enqueued::DroppedQos0
        );
        assert_eq!(
            session.enqueue(message("a", QoS::AtLeastOnce), false),
            Enqueued::Queued(1)
        );
        assert_eq!(session.queued_len(), 1);
    }

    #[test]
    fn inflight_window_holds_back_qos1_and_keeps_order() {
        let mut session = SessionState::new(2, 100, 1 << 20);
        for topic in ["1", "2", "3"] {
            session.enqueue(message(topic, QoS::AtLeastOnce), true);
        }
        session.enqueue(message("4", QoS::AtMostOnce), true);
        let first = session.next_outgoing().unwrap();
        let second = session.next_outgoing().unwrap();
        assert_eq!((first.pkid, second.pkid), (Some(1), Some(2)));
        assert_eq!(session.next_outgoing(), None, "window of 2 is full");
        assert!(session.acknowledge(1));
        let third = session.next_outgoing().unwrap();
        assert_eq!(&*third.delivery.topic, "3");
        assert_eq!(&*session.next_outgoing().unwrap().delivery.topic, "4");
        assert!(!session.acknowledge(99));
    }

    #[test]
    fn resume_redelivers_unacknowledged_with_dup_and_same_ids() {
        let mut session = SessionState::new(10, 100, 1 << 20);
        session.enqueue(message("a", QoS::AtLeastOnce), true);
        session.enqueue(message("b", QoS::AtLeastOnce), true);
        let a = session.next_outgoing().unwrap();
        let b = session.next_outgoing().unwrap();
        session.acknowledge(a.pkid.unwrap());
        let again: Vec<_> = session.redeliveries().collect();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].pkid, b.pkid);
        assert!(again[0].dup);
    }

    #[test]
    fn messages_the_subscriber_may_not_receive_are_skipped() {
        let mut session = SessionState::new(10, 100, 1 << 20);
        for topic in ["secret", "open", "secret"] {
            session.enqueue(message(topic, QoS::AtLeastOnce), true);
        }
        let allowed = |delivery: &Delivery| &*delivery.topic != "secret";
        let sent = session.next_outgoing_where(allowed).unwrap();
        assert_eq!((&*sent.delivery.topic, sent.pkid), ("open", Some(1)));
        assert_eq!(session.next_outgoing_where(allowed), None);
        assert_eq!(session.queued_len(), 0);
        assert_eq!(session.inflight_len(), 1);
    }

    #[test]
    fn removed_messages_are_reported_for_the_store() {
        let mut session = SessionState::new(10, 2, 1 << 20);
        for topic in ["1", "2", "3"] {
            session.enqueue(message(topic, QoS::AtLeastOnce), false);
        }
        assert_eq!(session.take_removed(), vec![1], "the oldest made room");
        let sent = session.next_outgoing().unwrap();
        session.acknowledge(sent.pkid.unwrap());
        assert_eq!(session.take_removed(), vec![2]);
        assert!(session.take_removed().is_empty());
    }

    #[test]
    fn restored_messages_keep_their_numbers_and_order() {
        let mut session = SessionState::new(10, 100, 1 << 20);
        session.restore([
            (7, message("a", QoS::AtLeastOnce)),
            (9, message("b", QoS::AtLeastOnce)),
        ]);
        assert!(matches!(
            session.enqueue(message("c", QoS::AtLeastOnce), false),
            Enqueued::Queued(10)
        ));
        let topics: Vec<_> = std::iter::from_fn(|| session.next_outgoing())
            .map(|out| out.delivery.topic.to_string())
            .collect();
        assert_eq!(topics, ["a", "b", "c"]);
    }

    #[test]
    fn full_queue_drops_oldest_qos1() {
        let mut session = SessionState::new(10, 2, 1 << 20);
        session.enqueue(message("1", QoS::AtLeastOnce), false);
        session.enqueue(message("2", QoS::AtLeastOnce), false);
        match session.enqueue(message("3", QoS::AtLeastOnce), false) {
            Enqueued::DroppedOldestQos1(dropped) => assert_eq!(&*dropped.topic, "1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(session.dropped(), (0, 1));
        assert_eq!(&*session.next_outgoing().unwrap().delivery.topic, "2");
    }

    #[test]
    fn slow_subscriber_loses_qos0_past_its_bound() {
        // Each test message is 2 bytes (topic "a", payload "x").
        let mut session = SessionState::new(10, 100, 4);
        for _ in 0..2 {
            assert!(matches!(
                session.enqueue(message("a", QoS::AtMostOnce), true),
                Enqueued::Queued(_)
            ));
        }
        assert_eq!(
            session.enqueue(message("a", QoS::AtMostOnce), true),
            Enqueued::DroppedQos0
        );
        assert_eq!(session.dropped(), (1, 0));
    }

    #[test]
    fn packet_ids_skip_zero_and_ids_in_flight() {
        let mut session = SessionState::new(3, 100, 1 << 20);
        session.next_pkid = u16::MAX;
        for _ in 0..3 {
            session.enqueue(message("a", QoS::AtLeastOnce), true);
        }
        let ids: Vec<_> = (0..3)
            .map(|_| session.next_outgoing().unwrap().pkid.unwrap())
            .collect();
        assert_eq!(ids, vec![u16::MAX, 1, 2]);
    }

    #[test]
    fn subscriptions_replace_and_remove() {
        let mut session = SessionState::new(1, 1, 1);
        assert_eq!(session.subscribe("a/#", QoS::AtMostOnce), None);
        assert_eq!(
            session.subscribe("a/#", QoS::AtLeastOnce),
            Some(QoS::AtMostOnce)
        );
        assert_eq!(session.subscription_count(), 1);
        assert!(session.unsubscribe("a/#"));
        assert!(!session.unsubscribe("a/#"));
    }
}
