//! The shared wrapper around one client id's [`SessionState`]: its lock, the connection
//! that owns it now, its expiry while offline, and what it tells the durable store.
//!
//! Routers and the owning connection both reach the state through here, under one small
//! mutex per session, so publishers to different subscribers never contend on one lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt::QoS;
use parking_lot::Mutex;

use super::live::{ApiKick, ConnectionId, LiveConnection};
use super::state::{Delivery, Enqueued, SessionState};
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
        }
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

    /// A connection owns it now.
    pub fn is_online(&self) -> bool {
        self.inner.lock().owner.is_some()
    }

    /// Runs `f` on the session state under its lock. Keep `f` short: routers wait on it.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut SessionState) -> R) -> R {
        let mut inner = self.inner.lock();
        let result = f(&mut inner.state);
        self.forget_removed(&mut inner.state);
        result
    }

    /// Like [`Session::with_state`], but only while `connection` still owns the session:
    /// a connection being taken over must not take messages meant for its successor.
    pub fn with_owned_state<R>(
        &self,
        connection: ConnectionId,
        f: impl FnOnce(&mut SessionState) -> R,
    ) -> Option<R> {
        let mut inner = self.inner.lock();
        match &inner.owner {
            Some(owner) if owner.connection == connection => {
                let result = f(&mut inner.state);
                self.forget_removed(&mut inner.state);
                Some(result)
            }
            _ => None,
        }
    }

    pub fn is_owned_by(&self, connection: ConnectionId) -> bool {
        matches!(&self.inner.lock().owner, Some(owner) if owner.connection == connection)
    }

    /// Tells the store about messages the state machine no longer holds.
    fn forget_removed(&self, state: &mut SessionState) {
        let removed = state.take_removed();
        if let Some(store) = &self.store {
            for seq in removed {
                store.submit(Op::DeleteMessage(self.client_id.clone(), seq));
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

    /// Offers a delivery and wakes the owning connection. Returns the queue's verdict and,
    /// for a QoS 1 message kept by a durable persistent session, the store sequence number
    /// that makes it durable.
    pub fn deliver(&self, delivery: Delivery) -> (Enqueued, u64) {
        let mut inner = self.inner.lock();
        let online = inner.owner.is_some();
        let message =
            (self.store.is_some() && delivery.qos == QoS::AtLeastOnce).then(|| StoredMessage {
                topic: delivery.topic.clone(),
                payload: delivery.payload.clone(),
                qos: delivery.qos,
                meta: delivery.meta.clone(),
            });
        let outcome = inner.state.enqueue(delivery, online);
        let queued_seq = inner.state.last_seq();
        let mut durable = 0;
        if let (Some(store), Some(message)) = (&self.store, message) {
            if outcome != Enqueued::DroppedQos0 {
                durable = store.submit(Op::PutMessage(self.client_id.clone(), queued_seq, message));
            }
        }
        self.forget_removed(&mut inner.state);
        if outcome != Enqueued::DroppedQos0 {
            if let Some(owner) = &inner.owner {
                owner.live.wake();
            }
        }
        (outcome, durable)
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
