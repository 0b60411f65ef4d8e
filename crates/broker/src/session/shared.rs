//! The shared wrapper around one client id's [`SessionState`]: its lock, the connection
//! that owns it now, its expiry while offline, and what it tells the durable store.
//!
//! Routers and the owning connection both reach the state through here, under one small
//! mutex per session, so publishers to different subscribers never contend on one lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt::QoS;
use parking_lot::Mutex;

use super::budget::MemoryBudget;
use super::live::{ApiKick, ConnectionId, LiveConnection};
use super::state::{Delivery, Enqueued, Loader, Outgoing, SessionState};
use crate::clock::instant_to_unix_ms;
use crate::store::{Op, SessionRecord, Store, StoredMessage};

/// The connection currently attached to a session, and how to wake it.
#[derive(Debug, Clone)]
pub struct Owner {
    pub connection: ConnectionId,
    pub live: Arc<LiveConnection>,
}

#[derive(Debug)]
struct SessionInner {
    state: SessionState,
    owner: Option<Owner>,
    /// Set while no connection owns a persistent session.
    expires_at: Option<Instant>,
    /// How long the session outlives its connection, in ms (MQTT 5 Session Expiry
    /// Interval, as granted; 3.1.1: the configured `session_expiry`). Zero: it ends with
    /// it. Milliseconds rather than a `Duration` keep a session in jemalloc's 256-byte
    /// class (measured with `bench/idle-connections`).
    expiry_ms: u64,
}

/// A session as the console's Clients page shows it ([`Session::view`]).
#[derive(Debug)]
pub struct SessionView {
    pub client_id: Arc<str>,
    pub clean: bool,
    /// The connection that holds it, if one does.
    pub owner: Option<Arc<LiveConnection>>,
    pub subscriptions: Vec<String>,
    /// Queued and in-flight messages.
    pub queued: usize,
    /// How long an offline persistent session has left.
    pub expires_in: Option<Duration>,
}

/// The registry entry of one client id.
pub struct Session {
    pub client_id: Arc<str>,
    /// Ends with its connection and is never stored (3.1.1 clean session, MQTT 5 Session
    /// Expiry Interval 0 at CONNECT).
    pub clean: bool,
    /// Made by an MQTT 5 connection: IoT Core does not resume a session across versions.
    pub mqtt5: bool,
    inner: Mutex<SessionInner>,
    /// Set for a persistent session when the broker is durable.
    store: Option<Arc<Store>>,
    budget: Arc<MemoryBudget>,
    /// Message bytes the state holds in memory, and how many of them the store also has,
    /// as of its last change: read without the lock by the router choosing what to evict.
    memory: AtomicUsize,
    evictable: AtomicUsize,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.budget.changed(*self.memory.get_mut(), 0);
    }
}

/// A session tells the memory budget of changes this large (or of an emptied queue): the
/// budget is exact to within this per session holding messages.
const REPORT_STEP: usize = 4 << 10;

/// How a delivery to a stored session's queue is kept in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAs {
    /// Written by this session (the first target of the publish that keeps it), `held`
    /// for further targets that will reference it.
    New { held: bool },
    /// A reference to the message written under this id.
    Ref(u64),
}

/// A message read back from the store, as the queue delivers it.
fn from_stored(message: StoredMessage) -> Delivery {
    Delivery {
        topic: message.topic,
        payload: message.payload,
        qos: message.qos,
        retain: false,
        meta: message.meta,
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.client_id)
            .field("clean", &self.clean)
            .finish()
    }
}

/// What detaching a connection from its session left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detached {
    /// Another connection owns the session now: nothing was changed.
    NotOwner,
    /// A persistent session stays, offline, until its expiry.
    Kept,
    /// A clean session ends with its connection: the caller removes it.
    Ended,
}

/// What kind of session a connection asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKind {
    /// How long it outlives the connection; zero for a clean session.
    pub expiry: Duration,
    pub mqtt5: bool,
}

impl Session {
    pub fn new(
        client_id: Arc<str>,
        kind: SessionKind,
        state: SessionState,
        owner: Option<Owner>,
        expires_at: Option<Instant>,
        store: Option<Arc<Store>>,
        budget: Arc<MemoryBudget>,
    ) -> Session {
        Session {
            client_id,
            clean: kind.expiry.is_zero(),
            mqtt5: kind.mqtt5,
            inner: Mutex::new(SessionInner {
                state,
                owner,
                expires_at,
                expiry_ms: duration_ms(kind.expiry),
            }),
            store,
            budget,
            memory: AtomicUsize::new(0),
            evictable: AtomicUsize::new(0),
        }
    }

    /// Kept in the durable store (persistent, and the broker is durable): its QoS 1
    /// messages are stored, and can be evicted from memory.
    pub fn is_stored(&self) -> bool {
        self.store.is_some()
    }

    /// Message bytes it holds in memory (as last reported to the budget).
    pub fn memory_bytes(&self) -> usize {
        self.memory.load(Ordering::Relaxed)
    }

    /// Of those, what eviction could free at no loss.
    pub fn evictable_bytes(&self) -> usize {
        self.evictable.load(Ordering::Relaxed)
    }

    /// How long the session now outlives its connection.
    pub fn expiry(&self) -> Duration {
        Duration::from_millis(self.inner.lock().expiry_ms)
    }

    /// A new Session Expiry Interval (a resuming CONNECT, or MQTT 5 DISCONNECT); zero
    /// ends the session when its connection closes.
    pub fn set_expiry(&self, expiry: Duration) {
        self.inner.lock().expiry_ms = duration_ms(expiry);
    }

    /// Asks the connection that owns it to close as DeleteConnection does; `false` when
    /// no connection owns it.
    pub fn kick_owner(&self, kick: ApiKick) -> bool {
        match &self.inner.lock().owner {
            Some(owner) => {
                owner.live.kick_by_api(kick);
                true
            }
            None => false,
        }
    }

    /// What the console shows of the session, read under its lock at once.
    pub fn view(&self) -> SessionView {
        let inner = self.inner.lock();
        SessionView {
            client_id: self.client_id.clone(),
            clean: self.clean,
            owner: inner.owner.as_ref().map(|owner| owner.live.clone()),
            subscriptions: inner
                .state
                .subscriptions()
                .map(|(filter, _)| filter.to_owned())
                .collect(),
            queued: inner.state.queued_len() + inner.state.inflight_len(),
            expires_in: inner
                .expires_at
                .map(|at| at.saturating_duration_since(Instant::now())),
        }
    }

    /// A connection owns it now.
    pub fn is_online(&self) -> bool {
        self.inner.lock().owner.is_some()
    }

    /// Runs `f` on the session state under its lock. Keep `f` short: routers wait on it.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut SessionState) -> R) -> R {
        let mut inner = self.inner.lock();
        let result = f(&mut inner.state);
        self.settle(&mut inner.state);
        result
    }

    /// Like [`Session::with_state`], but only while `connection` still owns the session:
    /// a connection being taken over must not take messages meant for its successor. `f`
    /// gets the loader that reads evicted messages back from the store.
    pub fn with_owned_state<R>(
        &self,
        connection: ConnectionId,
        f: impl FnOnce(&mut SessionState, &mut Loader<'_>) -> R,
    ) -> Option<R> {
        let mut inner = self.inner.lock();
        match &inner.owner {
            Some(owner) if owner.connection == connection => {
                let result = f(&mut inner.state, &mut |ids| self.load(ids));
                self.settle(&mut inner.state);
                Some(result)
            }
            _ => None,
        }
    }

    /// The unacknowledged QoS 1 messages a resumed session sends again (evicted ones read
    /// back from the store).
    pub fn redeliveries(&self) -> Vec<Outgoing> {
        let mut inner = self.inner.lock();
        let outgoing = inner.state.redeliveries(&mut |ids| self.load(ids));
        self.settle(&mut inner.state);
        outgoing
    }

    /// Frees at least `want` bytes, if it can, by evicting messages the store also has;
    /// returns the bytes freed.
    pub fn evict(&self, want: usize) -> usize {
        let Some(store) = &self.store else {
            return 0;
        };
        let durable = store.durable();
        let mut inner = self.inner.lock();
        let freed = inner.state.evict(want, durable);
        self.settle(&mut inner.state);
        freed
    }

    /// Frees at least `want` bytes, if it can, by dropping the oldest queued messages only
    /// memory holds; returns the bytes freed and the QoS 1 messages dropped.
    pub fn drop_oldest(&self, want: usize) -> (usize, u64) {
        let mut inner = self.inner.lock();
        let dropped = inner.state.drop_oldest(want);
        self.settle(&mut inner.state);
        dropped
    }

    fn load(&self, ids: &[u64]) -> Result<Vec<Option<Delivery>>, ()> {
        let store = self.store.as_ref().ok_or(())?;
        match store.load(ids) {
            Ok(found) => Ok(found.into_iter().map(|m| m.map(from_stored)).collect()),
            Err(_) => Err(()),
        }
    }

    /// After every change to the state: the store forgets what the state dropped, and the
    /// budget learns what it holds now.
    fn settle(&self, state: &mut SessionState) {
        self.forget_removed(state);
        let lost = state.take_lost_in_store();
        if lost > 0 {
            tracing::error!(client_id = %self.client_id, lost, "queued messages missing from the store: not delivered");
        }
        let now = state.memory_bytes();
        // The shared total hears of changes of at least REPORT_STEP, or of an emptied queue:
        // small messages through a busy session would otherwise make every delivery and
        // acknowledgement contend on one cache line (bench/ab p2p QoS 1: 0.85).
        let reported = self.memory.load(Ordering::Relaxed);
        if now.abs_diff(reported) >= REPORT_STEP || (now == 0 && reported != 0) {
            self.memory.store(now, Ordering::Relaxed);
            self.budget.changed(reported, now);
        }
        let evictable = state.evictable_bytes();
        if self.evictable.load(Ordering::Relaxed) != evictable {
            self.evictable.store(evictable, Ordering::Relaxed);
        }
    }

    pub fn is_owned_by(&self, connection: ConnectionId) -> bool {
        matches!(&self.inner.lock().owner, Some(owner) if owner.connection == connection)
    }

    /// Tells the store about messages the state machine no longer holds.
    fn forget_removed(&self, state: &mut SessionState) {
        let removed = state.take_removed();
        if let Some(store) = &self.store {
            for (seq, id) in removed {
                store.submit(Op::DeleteRef(self.client_id.clone(), seq, id));
            }
        }
    }

    /// Saves the subscriptions and expiry of a persistent session; returns the store
    /// sequence number that makes it durable (0 when nothing is stored).
    pub fn persist(&self) -> u64 {
        let Some(store) = &self.store else {
            return 0;
        };
        let inner = self.inner.lock();
        let record = SessionRecord {
            subscriptions: inner
                .state
                .subscriptions()
                .map(|(filter, qos)| (filter.to_owned(), qos as u8))
                .collect(),
            expires_at_ms: inner.expires_at.map(instant_to_unix_ms),
            mqtt5: self.mqtt5,
            expiry_ms: Some(inner.expiry_ms),
        };
        store.submit(Op::PutSession(self.client_id.clone(), record))
    }

    /// Forgets the session in the durable store (it ended, expired or was replaced).
    pub fn delete_stored(&self) {
        if let Some(store) = &self.store {
            store.submit(Op::DeleteSession(self.client_id.clone()));
        }
    }

    /// Offers a delivery and wakes the owning connection. For a QoS 1 message kept by a
    /// stored session, `store_as` says whether this session writes the message to the
    /// store (the first such target of a publish) or references the one written before.
    /// Returns the queue's verdict, the store sequence number that makes its place in the
    /// queue durable (0: nothing to wait for) and the message's id in the store (0: none).
    pub fn deliver(&self, delivery: Delivery, store_as: StoreAs) -> (Enqueued, u64, u64) {
        let mut inner = self.inner.lock();
        let online = inner.owner.is_some();
        let store = self
            .store
            .as_ref()
            .filter(|_| delivery.qos == QoS::AtLeastOnce);
        let message = match (store, store_as) {
            (Some(_), StoreAs::New { .. }) => Some(StoredMessage {
                topic: delivery.topic.clone(),
                payload: delivery.payload.clone(),
                qos: delivery.qos,
                meta: delivery.meta.clone(),
            }),
            _ => None,
        };
        let outcome = inner.state.enqueue(delivery, 0, online);
        let (mut durable, mut id) = (0, 0);
        if let (Some(store), true) = (store, outcome != Enqueued::DroppedQos0) {
            let queued = (self.client_id.clone(), inner.state.last_seq());
            match (store_as, message) {
                (StoreAs::New { held }, Some(message)) => {
                    id = store.submit(Op::PutMessage {
                        message,
                        queued,
                        held,
                    });
                    durable = id;
                }
                (StoreAs::Ref(existing), _) if existing != 0 => {
                    id = existing;
                    durable = store.submit(Op::PutRef(queued.0, queued.1, id));
                }
                _ => {}
            }
            if id != 0 {
                inner.state.mark_stored(id);
            }
        }
        self.settle(&mut inner.state);
        if outcome != Enqueued::DroppedQos0 {
            if let Some(owner) = &inner.owner {
                owner.live.wake();
            }
        }
        (outcome, durable, id)
    }

    /// Takes the session away from its current connection (woken, so it sees it lost the
    /// session) and, with `Some`, gives it to a new one (it is online from now); returns
    /// which connection held it before. One lock: no delivery sees it in between.
    pub fn replace_owner(&self, owner: Option<Owner>) -> Option<ConnectionId> {
        let mut inner = self.inner.lock();
        let previous = inner.owner.take();
        if let Some(previous) = &previous {
            previous.live.wake();
        }
        if owner.is_some() {
            inner.owner = owner;
            inner.expires_at = None;
        }
        previous.map(|previous| previous.connection)
    }

    /// Detaches a closing connection; a persistent session starts its expiry (from `now`)
    /// and loses the QoS 0 messages queued for the connection that is gone. A session
    /// whose expiry is zero (clean, or set so by MQTT 5 DISCONNECT) ends.
    pub fn detach(&self, connection: ConnectionId, now: Instant) -> Detached {
        let mut inner = self.inner.lock();
        match &inner.owner {
            Some(owner) if owner.connection == connection => {}
            _ => return Detached::NotOwner,
        }
        inner.owner = None;
        if self.clean || inner.expiry_ms == 0 {
            return Detached::Ended;
        }
        inner.state.drop_queued_qos0();
        self.settle(&mut inner.state);
        inner.expires_at = Some(now + Duration::from_millis(inner.expiry_ms));
        drop(inner);
        self.persist();
        Detached::Kept
    }

    /// Offline and past its expiry.
    pub fn is_expired(&self, now: Instant) -> bool {
        let inner = self.inner.lock();
        inner.owner.is_none() && inner.expires_at.is_some_and(|at| at <= now)
    }

    /// The filters it subscribes to.
    pub fn filters(&self) -> Vec<String> {
        self.inner
            .lock()
            .state
            .subscriptions()
            .map(|(filter, _)| filter.to_owned())
            .collect()
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
