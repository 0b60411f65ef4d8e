//! The MQTT session state of one client id, as a pure state machine: subscriptions, the
//! queue of messages waiting to be sent, and the outbound QoS 1 window. No I/O, no locks,
//! no clock: the connection task and the router drive it and perform what it decides.
//!
//! A queued QoS 1 message of a durable persistent session is also in the store, under a
//! message id. Past the memory budget its bytes are evicted from here ([`SessionState::evict`])
//! and read back through a [`Loader`] just before it is sent: the queue keeps its order and
//! its packet ids whether a message is in memory or not.

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

    /// Bytes this delivery holds in memory, as the memory budget counts them.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// Reads evicted messages back from the store by message id: for each id its delivery,
/// `None` for one the store no longer has; `Err` when the store cannot be read now (the
/// messages stay queued and are tried again later).
pub type Loader<'a> = dyn FnMut(&[u64]) -> Result<Vec<Option<Delivery>>, ()> + 'a;

/// For states that hold nothing evicted (no store): every read fails.
#[cfg(test)]
pub fn no_store(_: &[u64]) -> Result<Vec<Option<Delivery>>, ()> {
    Err(())
}

/// What happened to a message offered to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued under this session-local sequence number.
    Queued(u64),
    /// QoS 0 is not kept for an offline session (IoT Core stores only QoS 1), nor past the
    /// bound of a slow subscriber's queue.
    DroppedQos0,
    /// The queue was at its bound: the oldest queued QoS 1 message (on this topic, if it
    /// was in memory) made room.
    DroppedOldestQos1(Option<Arc<str>>),
}

/// The next packet a connection should write for this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// `None` for QoS 0.
    pub pkid: Option<u16>,
    pub dup: bool,
    pub delivery: Delivery,
}

/// A queued or in-flight message.
#[derive(Debug)]
struct Queued {
    seq: u64,
    /// Its id in the durable store; 0: it is only in memory.
    stored: u64,
    /// `None`: evicted; read back from the store before it is sent (always QoS 1).
    delivery: Option<Delivery>,
}

impl Queued {
    fn qos(&self) -> QoS {
        self.delivery.as_ref().map_or(QoS::AtLeastOnce, |d| d.qos)
    }

    /// Bytes held in memory.
    fn held(&self) -> usize {
        self.delivery.as_ref().map_or(0, Delivery::size)
    }

    /// Drops its bytes from memory if the store has made it durable (its id is at most
    /// `durable`); returns the bytes freed.
    fn evict(&mut self, durable: u64) -> usize {
        if self.stored == 0 || self.stored > durable {
            return 0;
        }
        self.delivery.take().map_or(0, |delivery| delivery.size())
    }

    /// Bytes held in memory that the store also has (eviction frees them at no loss).
    fn evictable(&self) -> usize {
        if self.stored == 0 {
            0
        } else {
            self.held()
        }
    }
}

/// What the store must forget: the session-local sequence number and the message id.
pub type StoredRef = (u64, u64);

/// Messages read back from the store per read, when the head of the queue was evicted:
/// enough to amortise a read transaction, few enough that 128 KiB messages read ahead
/// hold 2 MiB.
const READ_AHEAD: usize = 16;

#[derive(Debug)]
pub struct SessionState {
    subscriptions: BTreeMap<String, QoS>,
    /// Waiting to be sent, oldest first.
    pending: VecDeque<Queued>,
    /// Sent QoS 1 messages awaiting PUBACK, oldest first (resent in this order on resume).
    inflight: VecDeque<(u16, Queued)>,
    next_pkid: u16,
    next_seq: u64,
    /// Stored messages the session no longer holds (acknowledged, dropped, refused), for
    /// the caller to forget in the durable store. Drained by `take_removed`.
    removed: Vec<StoredRef>,
    // u32: kept small, as every session carries them.
    max_inflight: u32,
    max_queued: u32,
    max_queued_qos0_bytes: u32,
    /// QoS 1 messages in `pending`: what `max_queued` bounds (QoS 0 has its own bound).
    pending_qos1: u32,
    /// Topic and payload bytes held in memory by `pending`: what a slow subscriber costs.
    pending_bytes: usize,
    /// The same for `inflight`.
    inflight_bytes: usize,
    /// Of those, bytes the store also has.
    evictable_bytes: usize,
    dropped_qos0: u64,
    dropped_qos1: u64,
    /// Evicted messages the store no longer had when they were read back.
    lost_in_store: u64,
}

impl SessionState {
    /// `max_queued` bounds queued QoS 1 messages (the session's backlog);
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
            pending_qos1: 0,
            pending_bytes: 0,
            inflight_bytes: 0,
            evictable_bytes: 0,
            dropped_qos0: 0,
            dropped_qos1: 0,
            lost_in_store: 0,
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

    /// Offers a message to the session. `stored` is its id in the durable store (0: not
    /// stored); `online` says whether a connection will drain it.
    pub fn enqueue(&mut self, delivery: Delivery, stored: u64, online: bool) -> Enqueued {
        if delivery.qos == QoS::AtMostOnce {
            // Only bytes bound QoS 0: the QoS 1 count must not cut an online subscriber's
            // QoS 0 stream.
            let full = self.pending_bytes + delivery.size() > self.max_queued_qos0_bytes as usize;
            if !online || full {
                self.dropped_qos0 += 1;
                return Enqueued::DroppedQos0;
            }
            return Enqueued::Queued(self.push_pending(delivery, 0));
        }
        let mut dropped = None;
        if self.pending_qos1 >= self.max_queued {
            // Make room by dropping the oldest QoS 1; QoS 0 entries ahead of it are kept
            // because they are about to be written by an online connection anyway.
            let index = self
                .pending
                .iter()
                .position(|queued| queued.qos() == QoS::AtLeastOnce)
                .expect("pending_qos1 counts pending QoS 1 entries");
            let queued = self.remove_pending(index);
            self.dropped_qos1 += 1;
            dropped = Some(queued.delivery.map(|d| d.topic));
        }
        let seq = self.push_pending(delivery, stored);
        match dropped {
            Some(topic) => Enqueued::DroppedOldestQos1(topic),
            None => Enqueued::Queued(seq),
        }
    }

    /// The sequence number the last queued message got.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The message just queued (as [`SessionState::last_seq`]) is now in the store under
    /// `id`: it can be evicted, and its removal is reported.
    pub fn mark_stored(&mut self, id: u64) {
        let seq = self.last_seq();
        if let Some(queued) = self.pending.back_mut().filter(|queued| queued.seq == seq) {
            if queued.stored == 0 {
                queued.stored = id;
                self.evictable_bytes += queued.held();
            }
        }
    }

    /// Puts messages recovered from the durable store back in the queue, in order, as
    /// evicted entries (read back when sent): `(sequence number, message id)`.
    pub fn restore(&mut self, queued: impl IntoIterator<Item = StoredRef>) {
        for (seq, stored) in queued {
            self.next_seq = self.next_seq.max(seq + 1);
            self.pending_qos1 += 1;
            self.pending.push_back(Queued {
                seq,
                stored,
                delivery: None,
            });
        }
    }

    /// Stored messages dropped since the last call (see `removed`).
    pub fn take_removed(&mut self) -> Vec<StoredRef> {
        std::mem::take(&mut self.removed)
    }

    /// Takes the next message to write, assigning a packet id to QoS 1, after discarding
    /// queued messages the subscriber may not receive (`allowed` says no: IoT Core drops
    /// them silently). Evicted messages at the head are read back through `load` first.
    /// `None` when the queue is empty, the store cannot be read now, or the head is QoS 1
    /// and the in-flight window is full (order is kept: later QoS 0 messages wait behind it).
    pub fn next_outgoing_where(
        &mut self,
        mut allowed: impl FnMut(&Delivery) -> bool,
        load: &mut Loader<'_>,
    ) -> Option<Outgoing> {
        loop {
            let head = self.pending.front()?;
            let Some(delivery) = &head.delivery else {
                if !self.read_ahead(load) {
                    return None;
                }
                continue;
            };
            if allowed(delivery) {
                break;
            }
            self.remove_pending(0);
        }
        let head = self.pending.front()?;
        if head.qos() == QoS::AtMostOnce {
            let queued = self.remove_pending(0);
            return Some(Outgoing {
                pkid: None,
                dup: false,
                delivery: queued.delivery.expect("checked above"),
            });
        }
        if self.inflight.len() >= self.max_inflight as usize {
            return None;
        }
        // Moved, not removed: the store keeps it until it is acknowledged.
        let queued = self.pending.pop_front().expect("checked above");
        self.pending_qos1 -= 1;
        self.pending_bytes -= queued.held();
        self.inflight_bytes += queued.held();
        let delivery = queued.delivery.clone().expect("checked above");
        let pkid = self.allocate_pkid();
        self.inflight.push_back((pkid, queued));
        Some(Outgoing {
            pkid: Some(pkid),
            dup: false,
            delivery,
        })
    }

    /// Reads the evicted messages at the head of the queue back from the store. `false`
    /// when the store cannot be read now.
    fn read_ahead(&mut self, load: &mut Loader<'_>) -> bool {
        let ids: Vec<u64> = self
            .pending
            .iter()
            .take(READ_AHEAD)
            .take_while(|queued| queued.delivery.is_none())
            .map(|queued| queued.stored)
            .collect();
        let Ok(loaded) = load(&ids) else {
            return false;
        };
        let mut index = 0;
        for delivery in loaded.into_iter().take(ids.len()) {
            match delivery {
                Some(delivery) => {
                    self.pending_bytes += delivery.size();
                    self.evictable_bytes += delivery.size();
                    self.pending[index].delivery = Some(delivery);
                    index += 1;
                }
                None => {
                    self.lost_in_store += 1;
                    self.remove_pending(index);
                }
            }
        }
        true
    }

    /// The client acknowledged a QoS 1 delivery. `false` for an unknown packet id.
    pub fn acknowledge(&mut self, pkid: u16) -> bool {
        match self.inflight.iter().position(|(id, _)| *id == pkid) {
            Some(index) => {
                let (_, queued) = self.inflight.remove(index).expect("index from position");
                self.inflight_bytes -= queued.held();
                self.evictable_bytes -= queued.evictable();
                if queued.stored != 0 {
                    self.removed.push((queued.seq, queued.stored));
                }
                true
            }
            None => false,
        }
    }

    /// On resuming a session, unacknowledged QoS 1 messages are sent again with DUP set
    /// and their original packet ids (MQTT-4.4.0-1); evicted ones are read back first (an
    /// in-flight message the store cannot be read for now is sent on a later resume).
    pub fn redeliveries(&mut self, load: &mut Loader<'_>) -> Vec<Outgoing> {
        let ids: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, queued)| queued.delivery.is_none())
            .map(|(_, queued)| queued.stored)
            .collect();
        if !ids.is_empty() {
            if let Ok(loaded) = load(&ids) {
                let mut loaded = loaded.into_iter();
                let mut lost = Vec::new();
                for (pkid, queued) in self.inflight.iter_mut() {
                    if queued.delivery.is_some() {
                        continue;
                    }
                    match loaded.next().flatten() {
                        Some(delivery) => {
                            self.inflight_bytes += delivery.size();
                            self.evictable_bytes += delivery.size();
                            queued.delivery = Some(delivery);
                        }
                        None => lost.push(*pkid),
                    }
                }
                for pkid in lost {
                    self.lost_in_store += 1;
                    self.acknowledge(pkid);
                }
            }
        }
        self.inflight
            .iter()
            .filter_map(|(pkid, queued)| {
                Some(Outgoing {
                    pkid: Some(*pkid),
                    dup: true,
                    delivery: queued.delivery.clone()?,
                })
            })
            .collect()
    }

    /// QoS 0 messages queued for a connection that is gone are not kept for the next one.
    pub fn drop_queued_qos0(&mut self) {
        let before = self.pending.len();
        self.pending
            .retain(|queued| queued.qos() != QoS::AtMostOnce);
        self.dropped_qos0 += (before - self.pending.len()) as u64;
        self.pending_bytes = self.pending.iter().map(Queued::held).sum();
    }

    /// Frees at least `want` bytes (or all it can) by evicting messages the store has
    /// made durable (ids up to `durable`), newest first (the head is what is sent next);
    /// returns the bytes freed.
    pub fn evict(&mut self, want: usize, durable: u64) -> usize {
        let mut from_pending = 0;
        for queued in self.pending.iter_mut().rev() {
            if from_pending >= want {
                break;
            }
            from_pending += queued.evict(durable);
        }
        let mut from_inflight = 0;
        for (_, queued) in self.inflight.iter_mut().rev() {
            if from_pending + from_inflight >= want {
                break;
            }
            from_inflight += queued.evict(durable);
        }
        self.pending_bytes -= from_pending;
        self.inflight_bytes -= from_inflight;
        let freed = from_pending + from_inflight;
        self.evictable_bytes -= freed;
        freed
    }

    /// Frees at least `want` bytes (or all it can) by dropping queued messages that only
    /// memory holds: the oldest QoS 1 first, then the oldest QoS 0. Returns the bytes freed
    /// and how many QoS 1 messages were dropped.
    pub fn drop_oldest(&mut self, want: usize) -> (usize, u64) {
        let (mut freed, mut dropped_qos1) = (0, 0);
        for qos in [QoS::AtLeastOnce, QoS::AtMostOnce] {
            let mut index = 0;
            while freed < want && index < self.pending.len() {
                let queued = &self.pending[index];
                if queued.stored != 0 || queued.delivery.is_none() || queued.qos() != qos {
                    index += 1;
                    continue;
                }
                freed += self.remove_pending(index).held();
                match qos {
                    QoS::AtMostOnce => self.dropped_qos0 += 1,
                    _ => {
                        self.dropped_qos1 += 1;
                        dropped_qos1 += 1;
                    }
                }
            }
        }
        (freed, dropped_qos1)
    }

    pub fn queued_len(&self) -> usize {
        self.pending.len()
    }

    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Message bytes held in memory (queued and in flight): what the memory budget counts.
    pub fn memory_bytes(&self) -> usize {
        self.pending_bytes + self.inflight_bytes
    }

    /// Of [`SessionState::memory_bytes`], what eviction could free without loss.
    pub fn evictable_bytes(&self) -> usize {
        self.evictable_bytes
    }

    /// Evicted messages that were missing from the store when read back (0 unless the
    /// store lost data); the caller reports them.
    pub fn take_lost_in_store(&mut self) -> u64 {
        std::mem::take(&mut self.lost_in_store)
    }

    /// The next message, for a state with nothing evicted (tests).
    #[cfg(test)]
    pub fn next_outgoing(&mut self) -> Option<Outgoing> {
        self.next_outgoing_where(|_| true, &mut no_store)
    }

    #[cfg(test)]
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped_qos0, self.dropped_qos1)
    }

    fn push_pending(&mut self, delivery: Delivery, stored: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let queued = Queued {
            seq,
            stored,
            delivery: Some(delivery),
        };
        self.pending_bytes += queued.held();
        self.evictable_bytes += queued.evictable();
        if queued.qos() == QoS::AtLeastOnce {
            self.pending_qos1 += 1;
        }
        self.pending.push_back(queued);
        seq
    }

    /// Removes a queued message for good (dropped or refused), telling the store.
    fn remove_pending(&mut self, index: usize) -> Queued {
        let queued = self.pending.remove(index).expect("index within pending");
        self.pending_bytes -= queued.held();
        self.evictable_bytes -= queued.evictable();
        if queued.qos() == QoS::AtLeastOnce {
            self.pending_qos1 -= 1;
        }
        if queued.stored != 0 {
            self.removed.push((queued.seq, queued.stored));
        }
        queued
    }

    fn allocate_pkid(&mut self) -> u16 {
        // The window is at most a few hundred entries, so a scan beats a set here.
        loop {
            let candidate = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|(id, _)| *id == candidate) {
                return candidate;
            }
        }
    }
}

fn saturating_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
