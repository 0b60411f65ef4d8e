//! The data plane: the session map, the subscription index, the retained messages, and
//! the router that moves a publish into its subscribers' queues.
//!
//! Routing runs on the publisher's task. The subscription index is read-mostly (an RwLock
//! around a topic trie); each session has its own small mutex, so publishers to different
//! subscribers never contend on one lock.
//!
//! Imports `session`, `store`, `config` and `clock`; knows nothing of authentication or
//! policies (the connection checks `iot:Receive` when it takes a message out).

mod recover;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use iot::TopicTrie;
use mqtt::{LastWill, QoS};
use parking_lot::{Mutex, RwLock};

use crate::config::Config;
use crate::message::MessageMeta;
use crate::metrics::Snapshot;
use crate::session::{
    ApiKick, ConnectionId, Delivery, Detached, Enqueued, LiveConnection, LiveConnections,
    MemoryBudget, Owner, Session, SessionKind, SessionState, SessionView, StoreAs,
};
use crate::store::{Op, Recovered, Store, StoredMessage};

/// A slow but connected subscriber may hold this many bytes of queued messages before it
/// starts losing QoS 0 (QoS 1 is bounded by `max_queued_per_session` instead): enough to
/// absorb bursts, small enough that ten thousand stalled subscribers fit in memory.
pub const MAX_QUEUED_QOS0_BYTES: usize = 8 << 20;

/// Up to this many sessions, a publish's targets are de-duplicated by a linear scan (the
/// common case: one to a few subscribers, where hashing costs more than it saves); past
/// it, through a map, so overlapping filters of many subscribers stay O(matches).
const LINEAR_DEDUP_LIMIT: usize = 16;

#[derive(Debug, Clone)]
pub struct RetainedMessage {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    pub meta: Option<Arc<MessageMeta>>,
}

impl RetainedMessage {
    fn is_expired(&self, now_ms: u64) -> bool {
        MessageMeta::has_expired(self.meta.as_deref(), || now_ms)
    }
}

/// Subscription index entry: the granted QoS and the session to deliver to.
#[derive(Debug, Clone)]
struct Subscriber {
    qos: QoS,
    session: Arc<Session>,
}

/// A will waiting out its delay, with the token of the timer that sends it.
type HeldWill = (u64, Box<LastWill>);

/// The members of one shared subscription group (`$share/{ShareName}/{TopicFilter}`):
/// each message matching the filter goes to one of them, in turn.
#[derive(Debug, Clone, Default)]
struct ShareGroup {
    members: Vec<Subscriber>,
    /// Where the next turn starts; shared by the group's copies in the index.
    next: Arc<AtomicUsize>,
}

impl ShareGroup {
    /// The member that gets the next message: the next online one in turn; when none is
    /// online, a QoS 1 message goes to the next persistent-session member (it waits in
    /// that session's queue, as IoT Core queues for a group with persistent members),
    /// and a QoS 0 one to nobody.
    fn pick(&self, qos: QoS) -> Option<(Arc<Session>, QoS)> {
        let count = self.members.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let in_turn = (0..count).map(|i| &self.members[(start + i) % count]);
        if let Some(online) = in_turn.clone().find(|member| member.session.is_online()) {
            return Some((online.session.clone(), online.qos));
        }
        in_turn
            .filter(|member| qos.min(member.qos) == QoS::AtLeastOnce && !member.session.clean)
            .map(|member| (member.session.clone(), member.qos))
            .next()
    }
}

/// What routing one message did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Routed {
    /// Sessions it was offered to.
    pub sessions: usize,
    /// Store sequence number that makes it durable for every persistent session that kept
    /// it (0: nothing to wait for).
    pub durable: u64,
}

/// Counters worth reporting; read by logs and by `/metrics` ([`Router::metrics_snapshot`]).
#[derive(Debug, Default)]
pub struct Stats {
    pub messages_routed: AtomicU64,
    pub deliveries: AtomicU64,
    pub dropped_qos0: AtomicU64,
    pub dropped_qos1: AtomicU64,
    /// Messages not sent because they exceeded a client's MQTT 5 Maximum Packet Size.
    pub dropped_too_large: AtomicU64,
    /// Queued QoS 1 messages dropped to keep within the memory budget (only memory held
    /// them: `in_memory = true`, or a session the store does not keep).
    pub dropped_for_memory: AtomicU64,
    /// Message bytes evicted from memory to the store (read back when sent).
    pub evicted_bytes: AtomicU64,
    /// Inbound PUBLISHes discarded for exceeding `publishes_per_connection_per_sec`.
    pub dropped_rate_limited: AtomicU64,
}

/// What opening a session found.
pub struct OpenedSession {
    pub session: Arc<Session>,
    pub session_present: bool,
    /// The connection that held this client id before (it has been told to go).
    pub took_over: Option<ConnectionId>,
    /// Store sequence number that makes the session durable (0: nothing to wait for).
    pub durable: u64,
}

pub struct Router {
    config: Arc<Config>,
    /// The durable store; `None` with `in_memory = true`.
    store: Option<Arc<Store>>,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    subscriptions: RwLock<TopicTrie<Arc<str>, Subscriber>>,
    /// Shared subscription groups, under their TopicFilter, keyed by ShareName.
    shared: RwLock<TopicTrie<Arc<str>, ShareGroup>>,
    /// How many groups `shared` holds: while none, routing does not touch its lock (a
    /// second lock per publish showed as contention between publishers).
    shared_groups: AtomicUsize,
    retained: RwLock<HashMap<Arc<str>, RetainedMessage>>,
    connect_attempts: Mutex<HashMap<String, (u64, u32)>>,
    /// MQTT 5 wills waiting out their Will Delay Interval, by client id, with the token of
    /// the timer that will send them.
    pending_wills: Mutex<HashMap<Arc<str>, HeldWill>>,
    /// Every live connection, for the control plane's disconnects and shutdown.
    pub live: LiveConnections,
    /// Connections past CONNECT (`limits.max_connections` counts these).
    pub connections: AtomicUsize,
    /// What all queues may hold in memory, and hold now.
    pub budget: Arc<MemoryBudget>,
    /// One delivery at a time brings the queues back within the budget; the others go on.
    reclaiming: Mutex<()>,
    next_connection: AtomicU64,
    next_version: AtomicU64,
    pub stats: Stats,
}

impl Router {
    /// A router over what the store recovered (nothing in memory).
    pub fn new(config: Arc<Config>, store: Option<Arc<Store>>, recovered: Recovered) -> Router {
        let budget = Arc::new(MemoryBudget::new(config.queue_memory_budget()));
        let router = Router {
            config,
            budget,
            reclaiming: Mutex::new(()),
            store,
            sessions: Mutex::new(HashMap::new()),
            subscriptions: RwLock::new(TopicTrie::new()),
            shared: RwLock::new(TopicTrie::new()),
            shared_groups: AtomicUsize::new(0),
            retained: RwLock::new(HashMap::new()),
            connect_attempts: Mutex::new(HashMap::new()),
            pending_wills: Mutex::new(HashMap::new()),
            live: LiveConnections::default(),
            connections: AtomicUsize::new(0),
            next_connection: AtomicU64::new(1),
            next_version: AtomicU64::new(1),
            stats: Stats::default(),
        };
        router.recover(recovered);
        router
    }

    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    fn new_session_state(&self) -> SessionState {
        let limits = &self.config.limits;
        SessionState::new(
            limits.max_inflight,
            limits.max_queued_per_session,
            MAX_QUEUED_QOS0_BYTES,
        )
    }

    /// Commits what the store has queued and stops its writer (graceful shutdown).
    pub fn close_store(&self) {
        if let Some(store) = &self.store {
            store.close();
        }
    }

    pub fn next_connection_id(&self) -> ConnectionId {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Lifecycle events carry a version number that orders a client id's events.
    pub fn next_version_number(&self) -> u64 {
        self.next_version.fetch_add(1, Ordering::Relaxed)
    }

    /// IoT Core's CONNECT throttle per client id. `false` when this attempt is over the limit.
    pub fn admit_connect(&self, client_id: &str, now_unix_secs: u64) -> bool {
        let limit = self.config.limits.connects_per_client_id_per_sec;
        if limit == 0 {
            return true;
        }
        let mut attempts = self.connect_attempts.lock();
        let entry = attempts
            .entry(client_id.to_owned())
            .or_insert((now_unix_secs, 0));
        if entry.0 != now_unix_secs {
            *entry = (now_unix_secs, 0);
        }
        entry.1 += 1;
        entry.1 <= limit
    }

    /// Attaches a connection to the session of `client_id`, creating, resuming or
    /// replacing it, and tells any connection that held it before to close.
    ///
    /// `clean_start` false resumes a persistent session made by the same MQTT version
    /// (IoT Core resumes none across versions); `kind` says how long the session outlives
    /// the connection (3.1.1 clean session: zero).
    pub fn open_session(
        &self,
        client_id: &str,
        clean_start: bool,
        kind: SessionKind,
        connection: ConnectionId,
        live: Arc<LiveConnection>,
    ) -> OpenedSession {
        let owner = Owner { connection, live };
        let pending_will = self.pending_wills.lock().remove(client_id);
        let opened = self.open_session_locked(client_id, clean_start, kind, owner);
        // A will waiting out its delay: the client is back. Resuming the session cancels
        // it (MQTT-3.1.3-9); a new session means the old one ended, and a session's end
        // sends its will.
        if let Some((_, will)) = pending_will {
            if opened.session_present {
                tracing::info!(%client_id, "delayed last will cancelled: the client resumed its session");
            } else {
                self.publish_will(client_id, &will);
            }
        }
        opened
    }

    fn open_session_locked(
        &self,
        client_id: &str,
        clean_start: bool,
        kind: SessionKind,
        owner: Owner,
    ) -> OpenedSession {
        let mut sessions = self.sessions.lock();
        let existing = sessions.get(client_id).cloned();
        let mut took_over = None;
        if let Some(old) = &existing {
            // A session past its expiry that housekeeping has not swept yet is gone.
            let expired = old.is_expired(Instant::now());
            if !clean_start && !old.clean && old.mqtt5 == kind.mqtt5 && !expired {
                took_over = old.replace_owner(Some(owner));
                old.set_expiry(kind.expiry);
                let durable = old.persist();
                return OpenedSession {
                    session: old.clone(),
                    session_present: true,
                    took_over,
                    durable,
                };
            }
            took_over = old.replace_owner(None);
        }
        if let Some(old) = existing {
            self.remove_subscriptions(&old);
            old.delete_stored();
        }
        let session = Arc::new(Session::new(
            client_id.into(),
            kind,
            self.new_session_state(),
            Some(owner),
            None,
            if kind.expiry.is_zero() {
                None
            } else {
                self.store.clone()
            },
            self.budget.clone(),
        ));
        let durable = session.persist();
        sessions.insert(session.client_id.clone(), session.clone());
        OpenedSession {
            session,
            session_present: false,
            took_over,
            durable,
        }
    }

    /// Detaches a closing connection. A clean session ends with it (so does one whose
    /// expiry MQTT 5 DISCONNECT set to zero); a persistent one is kept for its expiry.
    /// Nothing happens if another connection took it over.
    pub fn close_session(&self, session: &Arc<Session>, connection: ConnectionId, now: Instant) {
        if session.detach(connection, now) != Detached::Ended {
            return;
        }
        if !session.clean {
            session.delete_stored();
        }
        let mut sessions = self.sessions.lock();
        if sessions
            .get(&session.client_id)
            .is_some_and(|current| Arc::ptr_eq(current, session))
        {
            sessions.remove(&session.client_id);
        }
        drop(sessions);
        self.remove_subscriptions(session);
    }

    /// Removes persistent sessions that stayed offline past their expiry.
    pub fn expire_sessions(&self, now: Instant) -> usize {
        let expired: Vec<Arc<Session>> = {
            let mut sessions = self.sessions.lock();
            let expired: Vec<_> = sessions
                .values()
                .filter(|session| session.is_expired(now))
                .cloned()
                .collect();
            for session in &expired {
                sessions.remove(&session.client_id);
                // Under the lock: a reconnect right after must not see its new session
                // deleted by a late DeleteSession.
                session.delete_stored();
            }
            expired
        };
        for session in &expired {
            let queued = session.with_state(|state| state.queued_len() + state.inflight_len());
            tracing::info!(client_id = %session.client_id, queued, "persistent session expired; its queued messages are discarded");
            self.remove_subscriptions(session);
        }
        self.connect_attempts.lock().clear();
        expired.len()
    }

    /// Closes the connection that holds the session of `client_id` as DeleteConnection
    /// asks; `false` if no connection holds it.
    pub fn disconnect_client(&self, client_id: &str, kick: ApiKick) -> bool {
        let session = self.sessions.lock().get(client_id).cloned();
        session.is_some_and(|session| session.kick_owner(kick))
    }

    /// Keeps a will until its delay is over; returns the token that sends it
    /// ([`Router::take_will`]).
    pub fn hold_will(&self, client_id: &str, will: Box<LastWill>) -> u64 {
        let token = rand::random();
        self.pending_wills
            .lock()
            .insert(client_id.into(), (token, will));
        token
    }

    /// The held will of `client_id`, if it is still due: with `Some(token)` only the one
    /// that timer holds (a later disconnect may have replaced it), with `None` any.
    pub fn take_will(&self, client_id: &str, token: Option<u64>) -> Option<Box<LastWill>> {
        let mut pending = self.pending_wills.lock();
        match pending.get(client_id) {
            Some((held, _)) if token.is_none_or(|token| token == *held) => {
                pending.remove(client_id).map(|(_, will)| will)
            }
            _ => None,
        }
    }

    /// Publishes a client's will (with its MQTT 5 properties; its expiry starts now).
    pub fn publish_will(&self, client_id: &str, will: &LastWill) {
        tracing::info!(%client_id, topic = %will.topic, "publishing last will");
        let meta =
            MessageMeta::from_will(&will.properties, crate::clock::unix_millis()).map(Arc::new);
        if will.retain {
            self.retain_message(&will.topic, will.message.clone(), will.qos, meta.clone());
        }
        self.route_message(&will.topic, will.message.clone(), will.qos, meta);
    }

    /// Ends the persistent session of `client_id` if no connection holds it (the data
    /// plane's DeleteConnection with `cleanSession=true`), sending a will that waits for
    /// its delay; `false` if there is none.
    pub fn end_offline_session(&self, client_id: &str) -> bool {
        let session = {
            let mut sessions = self.sessions.lock();
            match sessions.get(client_id) {
                Some(session) if !session.is_online() => {
                    let session = session.clone();
                    sessions.remove(client_id);
                    session.delete_stored();
                    session
                }
                _ => return false,
            }
        };
        self.remove_subscriptions(&session);
        if let Some(will) = self.take_will(client_id, None) {
            self.publish_will(client_id, &will);
        }
        true
    }

    #[cfg(test)]
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Records a subscription in the session and in the index.
    pub fn subscribe(&self, session: &Arc<Session>, filter: &str, qos: QoS) {
        session.with_state(|state| state.subscribe(filter, qos));
        self.index_subscription(session, filter, qos);
    }

    /// Removes a subscription from the session and the index; `false` if there was none.
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        if !session.with_state(|state| state.unsubscribe(filter)) {
            return false;
        }
        self.unindex_subscription(session, filter);
        true
    }

    fn index_subscription(&self, session: &Arc<Session>, filter: &str, qos: QoS) {
        if let Some(shared) = iot::shared_filter(filter) {
            let mut index = self.shared.write();
            let name: Arc<str> = shared.share_name.into();
            let mut group = index.get(shared.filter, &name).cloned().unwrap_or_default();
            group
                .members
                .retain(|member| member.session.client_id != session.client_id);
            group.members.push(Subscriber {
                qos,
                session: session.clone(),
            });
            if index.insert(shared.filter, name, group).is_none() {
                self.shared_groups.fetch_add(1, Ordering::Release);
            }
            return;
        }
        self.subscriptions.write().insert(
            filter,
            session.client_id.clone(),
            Subscriber {
                qos,
                session: session.clone(),
            },
        );
    }

    fn unindex_subscription(&self, session: &Arc<Session>, filter: &str) {
        if let Some(shared) = iot::shared_filter(filter) {
            let mut index = self.shared.write();
            let name: Arc<str> = shared.share_name.into();
            let Some(mut group) = index.get(shared.filter, &name).cloned() else {
                return;
            };
            // Only this session's own membership (see below).
            group
                .members
                .retain(|member| !Arc::ptr_eq(&member.session, session));
            if group.members.is_empty() {
                index.remove(shared.filter, &name);
                self.shared_groups.fetch_sub(1, Ordering::Release);
            } else {
                index.insert(shared.filter, name, group);
            }
            return;
        }
        let mut index = self.subscriptions.write();
        // Only this session's own entry: a newer session under the same client id owns
        // the key now if this one was replaced.
        let owned = matches!(
            index.get(filter, &session.client_id),
            Some(subscriber) if Arc::ptr_eq(&subscriber.session, session)
        );
        if owned {
            index.remove(filter, &session.client_id);
        }
    }

    fn remove_subscriptions(&self, session: &Arc<Session>) {
        for filter in session.filters() {
            self.unindex_subscription(session, &filter);
        }
    }

    /// Delivers a message without MQTT 5 metadata (see [`Router::route_message`]).
    pub fn route(&self, topic: &str, payload: Bytes, qos: QoS) -> Routed {
        self.route_message(topic, payload, qos, None)
    }

    /// Delivers a message to every matching subscription, once per session at the highest
    /// granted QoS (capped by the message's QoS), and to one member of each matching
    /// shared subscription group.
    pub fn route_message(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        meta: Option<Arc<MessageMeta>>,
    ) -> Routed {
        self.stats.messages_routed.fetch_add(1, Ordering::Relaxed);
        let mut targets = {
            let index = self.subscriptions.read();
            let mut targets = Targets::default();
            index.for_each_match(topic, |_filter, _key, subscriber| {
                targets.add(&subscriber.session, subscriber.qos)
            });
            targets.list
        };
        if self.shared_groups.load(Ordering::Acquire) > 0 {
            // One copy per matching group, not merged with the member's own
            // subscriptions: a group's copy is the group's.
            self.shared
                .read()
                .for_each_match(topic, |_filter, _name, group| {
                    targets.extend(group.pick(qos));
                });
        }
        if targets.is_empty() {
            return Routed::default();
        }
        let topic: Arc<str> = topic.into();
        let mut durable = 0;
        // Stored once, by the first session that keeps it in the store; the others
        // reference it, and the router holds it until they have.
        // (Only a durable broker routing QoS 1 has anything to look for.)
        let held = self.store.is_some()
            && qos == QoS::AtLeastOnce
            && targets
                .iter()
                .filter(|(session, granted)| session.is_stored() && *granted == QoS::AtLeastOnce)
                .nth(1)
                .is_some();
        let mut stored = 0;
        for (session, granted) in &targets {
            let store_as = if stored == 0 {
                StoreAs::New { held }
            } else {
                StoreAs::Ref(stored)
            };
            let (queued_durable, id) = self.enqueue(
                session,
                Delivery {
                    topic: topic.clone(),
                    payload: payload.clone(),
                    qos: qos.min(*granted),
                    retain: false,
                    meta: meta.clone(),
                },
                store_as,
            );
            if stored == 0 {
                stored = id;
            }
            durable = durable.max(queued_durable);
        }
        if held && stored != 0 {
            if let Some(store) = &self.store {
                store.submit(Op::ReleaseMessage(stored));
            }
        }
        self.keep_within_budget();
        Routed {
            sessions: targets.len(),
            durable,
        }
    }

    /// Queues one delivery for one session (a retained message for a new subscription).
    /// Returns the store sequence number that makes it durable (0: nothing to wait for).
    pub fn deliver(&self, session: &Session, delivery: Delivery) -> u64 {
        let (durable, _) = self.enqueue(session, delivery, StoreAs::New { held: false });
        self.keep_within_budget();
        durable
    }

    /// Offers one delivery to one session, counting and logging what had to be dropped.
    /// Returns the store sequence number that makes it durable and the message's id in the
    /// store (0 for either: none).
    fn enqueue(&self, session: &Session, delivery: Delivery, store_as: StoreAs) -> (u64, u64) {
        self.stats.deliveries.fetch_add(1, Ordering::Relaxed);
        let (outcome, durable, id) = session.deliver(delivery, store_as);
        match outcome {
            Enqueued::Queued(_) => {}
            Enqueued::DroppedQos0 => {
                let total = self.stats.dropped_qos0.fetch_add(1, Ordering::Relaxed) + 1;
                // A slow subscriber can drop thousands per second: log the first and then
                // every thousandth, so the log stays readable.
                if total % 1000 == 1 {
                    tracing::warn!(client_id = %session.client_id, dropped_total = total, "QoS 0 message dropped: subscriber offline or its queue is full");
                }
            }
            Enqueued::DroppedOldestQos1(topic) => {
                let total = self.stats.dropped_qos1.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(client_id = %session.client_id, topic = topic.as_deref().unwrap_or("(in the store)"), dropped_total = total, limit = self.config.limits.max_queued_per_session, "session queue full: oldest QoS 1 message dropped");
            }
        }
        (durable, id)
    }

    /// Brings the messages queued in memory back within the memory budget, if a delivery
    /// pushed them over: first by evicting messages the store also has (no loss; read
    /// back when sent), largest holders first and a little past the limit so that the
    /// next deliveries do not each pay for a pass; then, if only memory holds what is
    /// left, by dropping the oldest QoS 1 messages of the largest queues. Called after
    /// every routing, and by connections after they read evicted messages back.
    pub fn keep_within_budget(&self) {
        if self.budget.excess() == 0 {
            return;
        }
        let Some(_one_at_a_time) = self.reclaiming.try_lock() else {
            return;
        };
        let mut sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        sessions.sort_by_key(|session| std::cmp::Reverse(session.evictable_bytes()));
        let mut want = self.budget.excess() + self.budget.limit() / 8;
        for session in &sessions {
            if want == 0 || session.evictable_bytes() == 0 {
                break;
            }
            let freed = session.evict(want);
            self.stats
                .evicted_bytes
                .fetch_add(freed as u64, Ordering::Relaxed);
            want = want.saturating_sub(freed);
        }
        if self.budget.excess() == 0 {
            return;
        }
        sessions.sort_by_key(|session| std::cmp::Reverse(session.memory_bytes()));
        for session in &sessions {
            let excess = self.budget.excess();
            if excess == 0 || session.memory_bytes() == 0 {
                break;
            }
            let (_, dropped) = session.drop_oldest(excess);
            if dropped == 0 {
                continue;
            }
            let before = self
                .stats
                .dropped_for_memory
                .fetch_add(dropped, Ordering::Relaxed);
            // Under sustained pressure this runs for every delivery: log the first drop
            // and then once per thousand.
            if before == 0 || before / 1000 != (before + dropped) / 1000 {
                tracing::warn!(client_id = %session.client_id, dropped, dropped_total = before + dropped, memory_budget = self.budget.limit(), "memory budget reached: oldest queued QoS 1 messages dropped");
            }
        }
    }

    /// Retains a message without MQTT 5 metadata (see [`Router::retain_message`]).
    #[cfg(test)]
    pub fn retain(&self, topic: &str, payload: Bytes, qos: QoS) -> u64 {
        self.retain_message(topic, payload, qos, None)
    }

    /// Stores, replaces or (with an empty payload) deletes the retained message of a topic.
    /// Returns the store sequence number that makes the change durable (0 in memory).
    pub fn retain_message(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        meta: Option<Arc<MessageMeta>>,
    ) -> u64 {
        let mut retained = self.retained.write();
        let durable = self.store.as_ref().map_or(0, |store| {
            store.submit(if payload.is_empty() {
                Op::DeleteRetained(topic.into())
            } else {
                Op::PutRetained(StoredMessage {
                    topic: topic.into(),
                    payload: payload.clone(),
                    qos,
                    meta: meta.clone(),
                })
            })
        });
        if payload.is_empty() {
            retained.remove(topic);
        } else {
            let topic: Arc<str> = topic.into();
            retained.insert(
                topic.clone(),
                RetainedMessage {
                    topic,
                    payload,
                    qos,
                    meta,
                },
            );
        }
        durable
    }

    /// Retained messages a new subscription to `filter` receives: IoT Core gives them only
    /// to a filter that names the topic exactly, unless `retained_on_wildcard` is set, and
    /// never to a shared subscription. An expired one (MQTT 5 Message Expiry Interval) is
    /// no longer given.
    pub fn retained_for(&self, filter: &str) -> Vec<RetainedMessage> {
        if iot::shared_filter(filter).is_some() {
            return Vec::new();
        }
        let now_ms = crate::clock::unix_millis();
        let retained = self.retained.read();
        if iot::filter_is_exact(filter) {
            return retained
                .get(filter)
                .filter(|message| !message.is_expired(now_ms))
                .cloned()
                .into_iter()
                .collect();
        }
        if !self.config.retained_on_wildcard {
            return Vec::new();
        }
        retained
            .values()
            .filter(|message| {
                iot::topic_matches(filter, &message.topic) && !message.is_expired(now_ms)
            })
            .cloned()
            .collect()
    }

    /// Every retained message that has not expired (the data plane's
    /// ListRetainedMessages).
    pub fn retained_messages(&self) -> Vec<RetainedMessage> {
        let now_ms = crate::clock::unix_millis();
        let mut messages: Vec<RetainedMessage> = self
            .retained
            .read()
            .values()
            .filter(|message| !message.is_expired(now_ms))
            .cloned()
            .collect();
        messages.sort_by(|a, b| a.topic.cmp(&b.topic));
        messages
    }

    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Every session as the console shows it, by client id. Takes each session's lock in
    /// turn, briefly, as a scrape does.
    pub fn session_views(&self) -> Vec<SessionView> {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        let mut views: Vec<SessionView> = sessions.iter().map(|session| session.view()).collect();
        views.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        views
    }

    /// What `/metrics` reads from the data plane when scraped: sessions by state, queued
    /// and retained messages, and the drop counters of [`Stats`] by reason. Takes each
    /// session's lock in turn, briefly: a scrape, not the hot path.
    pub fn metrics_snapshot(&self) -> Snapshot {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        let mut snapshot = Snapshot::default();
        for session in &sessions {
            if session.is_online() {
                snapshot.sessions_online += 1;
            } else {
                snapshot.sessions_offline += 1;
            }
            snapshot.queued_messages +=
                session.with_state(|state| state.queued_len() + state.inflight_len()) as u64;
        }
        snapshot.retained_messages = self.retained_count() as u64;
        let stats = &self.stats;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        snapshot.dropped = vec![
            // QoS 0 to an offline subscriber, or past a connected one's queue bytes.
            ("qos0_not_queued", read(&stats.dropped_qos0)),
            ("queue_full", read(&stats.dropped_qos1)),
            ("too_large", read(&stats.dropped_too_large)),
            ("memory", read(&stats.dropped_for_memory)),
            ("rate_limited", read(&stats.dropped_rate_limited)),
        ];
        snapshot
    }
}

/// The sessions one publish reaches, each once, at the highest QoS any of its matching
/// subscriptions granted.
#[derive(Default)]
struct Targets {
    list: Vec<(Arc<Session>, QoS)>,
    /// Position in `list` by session, made once the list outgrows a linear scan (most
    /// publishes never need it, and never pay for it).
    positions: Option<HashMap<*const Session, usize>>,
}

impl Targets {
    fn add(&mut self, session: &Arc<Session>, qos: QoS) {
        let key = Arc::as_ptr(session);
        let known = match &mut self.positions {
            Some(positions) => positions.get(&key).copied(),
            None => {
                let found = self
                    .list
                    .iter()
                    .position(|(known, _)| Arc::ptr_eq(known, session));
                if found.is_none() && self.list.len() >= LINEAR_DEDUP_LIMIT {
                    self.positions = Some(
                        self.list
                            .iter()
                            .enumerate()
                            .map(|(index, (known, _))| (Arc::as_ptr(known), index))
                            .collect(),
                    );
                }
                found
            }
        };
        match known {
            Some(index) => self.list[index].1 = self.list[index].1.max(qos),
            None => {
                if let Some(positions) = &mut self.positions {
                    positions.insert(key, self.list.len());
                }
                self.list.push((session.clone(), qos));
            }
        }
    }
}

#[cfg(test)]
mod tests;
