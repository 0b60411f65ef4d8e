//! State shared by every connection: the session registry, the subscription index, the
//! retained messages, and the router that moves a publish into its subscribers' queues.
//!
//! Routing runs on the publisher's task. The subscription index is read-mostly (an RwLock
//! around a topic trie); each session has its own small mutex, so publishers to different
//! subscribers never contend on one lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use iot::TopicTrie;
use mqtt::QoS;
use parking_lot::{Mutex, RwLock};

use crate::auth::PolicyStore;
use crate::authorizers::Authorizers;
use crate::cognito::TemporaryCredentials;
use crate::config::{Config, ConfigError};
use crate::registry::Registry;
use crate::session::{Delivery, Enqueued, SessionState};
use crate::store::{Op, Recovered, SessionRecord, Store, StoredMessage};

/// A slow but connected subscriber may hold this many bytes of queued messages before it
/// starts losing QoS 0 (QoS 1 is bounded by `max_queued_per_session` instead): enough to
/// absorb bursts, small enough that ten thousand stalled subscribers fit in memory.
pub const MAX_QUEUED_QOS0_BYTES: usize = 8 << 20;

pub type ConnectionId = u64;

/// What a connection closed at shutdown logs.
const SHUTDOWN_REASON: &str = "the broker is shutting down";

/// The connection currently attached to a session, and how to wake it.
#[derive(Debug, Clone)]
struct Owner {
    connection: ConnectionId,
    live: Arc<LiveConnection>,
}

#[derive(Debug)]
struct SessionInner {
    state: SessionState,
    owner: Option<Owner>,
    /// Set while no connection owns a persistent session.
    expires_at: Option<Instant>,
}

/// The registry entry of one client id.
pub struct Session {
    pub client_id: Arc<str>,
    pub clean: bool,
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

impl Session {
    /// Runs `f` on the session state under its lock. Keep `f` short: routers wait on it.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut SessionState) -> R) -> R {
        let mut inner = self.inner.lock();
        let result = f(&mut inner.state);
        self.forget_removed(&mut inner.state);
        result
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
    fn persist(&self) -> u64 {
        if let Some(store) = &self.store {
            let inner = self.inner.lock();
            let record = SessionRecord {
                subscriptions: inner
                    .state
                    .subscriptions()
                    .map(|(filter, qos)| (filter.to_owned(), qos as u8))
                    .collect(),
                expires_at_ms: inner.expires_at.map(instant_to_unix_ms),
            };
            store.submit(Op::PutSession(self.client_id.clone(), record))
        } else {
            0
        }
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
}

#[derive(Debug, Clone)]
pub struct RetainedMessage {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
}

/// Subscription index entry: the granted QoS and the session to deliver to.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub qos: QoS,
    pub session: Arc<Session>,
}

/// How the rest of the broker reaches a live connection: who it is (for the control
/// plane's disconnects), a wake-up (messages queued, the session taken over) and a request
/// to close it from outside (the control plane, shutdown) with the reason to log. One per
/// connection, shared by the connection, its session and the live registry; a flag and a
/// waker rather than a `Notify`, whose waiting future the connection would have to keep.
#[derive(Debug)]
pub struct LiveConnection {
    principal: Box<str>,
    /// The custom authorizer that admitted it, if one did.
    authorizer: Option<Box<str>>,
    reason: Mutex<Option<String>>,
    woken: AtomicBool,
    waker: AtomicWaker,
}

impl LiveConnection {
    pub fn new(principal: &str, authorizer: Option<&str>) -> LiveConnection {
        LiveConnection {
            principal: principal.into(),
            authorizer: authorizer.map(Into::into),
            reason: Mutex::new(None),
            woken: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    /// Why the connection must close, once asked to.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().clone()
    }

    /// Ready once after any number of [`LiveConnection::wake`]s since it was last ready.
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before looking, so a wake between the two is not lost.
        self.waker.register(cx.waker());
        if self.woken.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    pub fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn kick(&self, why: &str) {
        *self.reason.lock() = Some(why.to_owned());
        self.wake();
    }
}

/// An access key's secret and who it stands for.
#[derive(Debug, Clone)]
pub struct Credential {
    pub secret: String,
    pub principal: String,
    /// Temporary credentials are valid only with their own session token…
    pub session_token: Option<String>,
    /// …and until they expire.
    pub expires_at: Option<std::time::SystemTime>,
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

/// Counters worth reporting; read by logs and, later, /metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub messages_routed: AtomicU64,
    pub deliveries: AtomicU64,
    pub dropped_qos0: AtomicU64,
    pub dropped_qos1: AtomicU64,
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

pub struct Broker {
    pub config: Arc<Config>,
    /// The durable store; `None` with `in_memory = true`.
    pub store: Option<Arc<Store>>,
    pub policies: Arc<PolicyStore>,
    pub registry: Arc<Registry>,
    pub authorizers: Authorizers,
    pub temporary_credentials: TemporaryCredentials,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    subscriptions: RwLock<TopicTrie<Arc<str>, Subscriber>>,
    retained: RwLock<HashMap<Arc<str>, RetainedMessage>>,
    connect_attempts: Mutex<HashMap<String, (u64, u32)>>,
    live: Mutex<HashMap<ConnectionId, Arc<LiveConnection>>>,
    /// Set at shutdown: a connection registering afterwards is closed at once.
    closing: AtomicBool,
    pub connections: AtomicUsize,
    next_connection: AtomicU64,
    next_version: AtomicU64,
    pub stats: Stats,
}

impl Broker {
    /// Fails when a configured policy, certificate or authorizer is unusable.
    pub fn new(config: Config) -> Result<Arc<Broker>, ConfigError> {
        let policies = Arc::new(PolicyStore::from_config(&config)?);
        let registry = Arc::new(
            Registry::open(&config.data_dir)
                .map_err(|error| ConfigError::Invalid(error.to_string()))?,
        );
        registry.apply_config(&config)?;
        let authorizers = Authorizers::from_config(&config)?;
        let (store, recovered) = if config.in_memory {
            (None, Recovered::default())
        } else {
            let (store, recovered) = Store::open(
                &config.data_dir.join("store.redb"),
                config.limits.group_commit_max_delay,
            )
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
            (Some(store), recovered)
        };
        let broker = Arc::new(Broker {
            config: Arc::new(config),
            store,
            policies,
            registry,
            authorizers,
            temporary_credentials: TemporaryCredentials::default(),
            sessions: Mutex::new(HashMap::new()),
            subscriptions: RwLock::new(TopicTrie::new()),
            retained: RwLock::new(HashMap::new()),
            connect_attempts: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            next_connection: AtomicU64::new(1),
            next_version: AtomicU64::new(1),
            stats: Stats::default(),
        });
        broker.sync_registry();
        crate::cognito::apply_config_pools(&broker);
        broker.recover(recovered);
        Ok(broker)
    }

    /// Rebuilds persistent sessions (offline, with their subscriptions and queued QoS 1
    /// messages) and retained messages from what the store held at start.
    fn recover(&self, recovered: Recovered) {
        let now_ms = unix_millis();
        let (mut sessions, mut messages) = (0, 0);
        for (client_id, record, queued) in recovered.sessions {
            let remaining = record
                .expires_at_ms
                .map(|at| Duration::from_millis(at.saturating_sub(now_ms)));
            if remaining == Some(Duration::ZERO) {
                if let Some(store) = &self.store {
                    store.submit(Op::DeleteSession(client_id.into()));
                }
                continue;
            }
            // A session that was connected when the broker stopped expires as if it had
            // just disconnected.
            let expires_at = Instant::now() + remaining.unwrap_or(self.config.session_expiry);
            let mut state = self.new_session_state();
            for (filter, qos) in &record.subscriptions {
                state.subscribe(filter, QoS::from_u8(*qos).unwrap_or(QoS::AtMostOnce));
            }
            messages += queued.len();
            state.restore(queued.into_iter().map(|(seq, message)| {
                (
                    seq,
                    Delivery {
                        topic: message.topic,
                        payload: message.payload,
                        qos: message.qos,
                        retain: false,
                    },
                )
            }));
            let session = Arc::new(Session {
                client_id: client_id.as_str().into(),
                clean: false,
                inner: Mutex::new(SessionInner {
                    state,
                    owner: None,
                    expires_at: Some(expires_at),
                }),
                store: self.store.clone(),
            });
            for (filter, qos) in &record.subscriptions {
                self.add_subscription(
                    &session,
                    filter,
                    QoS::from_u8(*qos).unwrap_or(QoS::AtMostOnce),
                );
            }
            self.sessions
                .lock()
                .insert(session.client_id.clone(), session);
            sessions += 1;
        }
        let retained = recovered.retained.len();
        for message in recovered.retained {
            let topic = message.topic;
            self.retained.write().insert(
                topic.clone(),
                RetainedMessage {
                    topic,
                    payload: message.payload,
                    qos: message.qos,
                },
            );
        }
        if self.store.is_some() {
            tracing::info!(sessions, messages, retained, "durable store recovered");
        }
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

    /// Picks up what `pubsub iot` (another process) changed in the registry since the last
    /// look: policies, attachments, authorizers.
    pub fn refresh_registry(&self) {
        match self.registry.reload_if_changed() {
            Ok(true) => self.sync_registry(),
            Ok(false) => {}
            Err(error) => tracing::error!(%error, "registry unreadable"),
        }
    }

    /// Hands the registry's current state to the policy store and the authorizers.
    pub fn sync_registry(&self) {
        self.registry.sync_policies(&self.policies);
        self.authorizers.sync(
            &self.registry.authorizers(),
            self.registry.default_authorizer(),
        );
    }

    /// Registers a connection so the control plane (and shutdown) can close it.
    pub fn register_live(&self, connection: ConnectionId, handle: Arc<LiveConnection>) {
        let mut live = self.live.lock();
        if self.closing.load(Ordering::Relaxed) {
            handle.kick(SHUTDOWN_REASON);
        }
        live.insert(connection, handle);
    }

    /// Closes every live connection, and any that registers from now on (shutdown).
    pub fn close_all_connections(&self) -> usize {
        // Set before the registry is walked: a connection registering concurrently is
        // either in the walk or sees the flag under the same lock (`register_live`).
        self.closing.store(true, Ordering::Relaxed);
        self.disconnect_where(|_| true, SHUTDOWN_REASON)
    }

    pub fn unregister_live(&self, connection: ConnectionId) {
        self.live.lock().remove(&connection);
    }

    /// Closes every connection of a principal (SERVER_INITIATED_DISCONNECT); returns how many.
    pub fn disconnect_principal(&self, principal: &str, why: &str) -> usize {
        self.disconnect_where(|live| &*live.principal == principal, why)
    }

    /// Closes every connection a custom authorizer admitted; returns how many.
    pub fn disconnect_authorizer(&self, authorizer: &str, why: &str) -> usize {
        self.disconnect_where(|live| live.authorizer.as_deref() == Some(authorizer), why)
    }

    fn disconnect_where(&self, affected: impl Fn(&LiveConnection) -> bool, why: &str) -> usize {
        let live = self.live.lock();
        let mut closed = 0;
        for connection in live.values().filter(|live| affected(live)) {
            connection.kick(why);
            closed += 1;
        }
        closed
    }

    /// What an access key stands for: `[[credentials]]` first, then keys made by
    /// `pubsub iot create-access-key`, then temporary credentials from the Cognito
    /// emulation (valid only with their session token and until they expire).
    pub fn credential(&self, access_key_id: &str) -> Option<Credential> {
        self.refresh_registry();
        let long_lived = |(secret, principal): (String, String)| Credential {
            secret,
            principal,
            session_token: None,
            expires_at: None,
        };
        self.config
            .credentials
            .iter()
            .find(|credential| credential.access_key_id == access_key_id)
            .map(|credential| {
                long_lived((
                    credential.secret_access_key.clone(),
                    credential.principal.clone(),
                ))
            })
            .or_else(|| self.registry.credential(access_key_id).map(long_lived))
            .or_else(|| {
                self.temporary_credentials
                    .get(access_key_id)
                    .map(|temporary| Credential {
                        secret: temporary.secret_access_key,
                        principal: temporary.identity_id,
                        session_token: Some(temporary.session_token),
                        expires_at: Some(temporary.expires_at),
                    })
            })
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
    pub fn open_session(
        &self,
        client_id: &str,
        clean_session: bool,
        connection: ConnectionId,
        live: Arc<LiveConnection>,
    ) -> OpenedSession {
        let owner = Owner { connection, live };
        let mut sessions = self.sessions.lock();
        let existing = sessions.get(client_id).cloned();
        let mut took_over = None;
        if let Some(old) = &existing {
            let mut inner = old.inner.lock();
            if let Some(previous) = inner.owner.take() {
                took_over = Some(previous.connection);
                previous.live.wake();
            }
            if !clean_session && !old.clean {
                inner.owner = Some(owner.clone());
                inner.expires_at = None;
                drop(inner);
                let durable = old.persist();
                return OpenedSession {
                    session: old.clone(),
                    session_present: true,
                    took_over,
                    durable,
                };
            }
        }
        if let Some(old) = existing {
            self.remove_subscriptions(&old);
            if let Some(store) = &old.store {
                store.submit(Op::DeleteSession(old.client_id.clone()));
            }
        }
        let session = Arc::new(Session {
            client_id: client_id.into(),
            clean: clean_session,
            inner: Mutex::new(SessionInner {
                state: self.new_session_state(),
                owner: Some(owner),
                expires_at: None,
            }),
            store: if clean_session {
                None
            } else {
                self.store.clone()
            },
        });
        let durable = session.persist();
        sessions.insert(session.client_id.clone(), session.clone());
        OpenedSession {
            session,
            session_present: false,
            took_over,
            durable,
        }
    }

    /// Detaches a closing connection. A clean session ends with it; a persistent one is
    /// kept until `session_expiry`. Nothing happens if another connection took it over.
    pub fn close_session(&self, session: &Arc<Session>, connection: ConnectionId, now: Instant) {
        {
            let mut inner = session.inner.lock();
            match &inner.owner {
                Some(owner) if owner.connection == connection => {}
                _ => return,
            }
            inner.owner = None;
            if !session.clean {
                inner.state.drop_queued_qos0();
                inner.expires_at = Some(now + self.config.session_expiry);
                drop(inner);
                session.persist();
                return;
            }
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
                .filter(|session| {
                    let inner = session.inner.lock();
                    inner.owner.is_none() && inner.expires_at.is_some_and(|at| at <= now)
                })
                .cloned()
                .collect();
            for session in &expired {
                sessions.remove(&session.client_id);
                // Under the lock: a reconnect right after must not see its new session
                // deleted by a late DeleteSession.
                if let Some(store) = &session.store {
                    store.submit(Op::DeleteSession(session.client_id.clone()));
                }
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

    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn add_subscription(&self, session: &Arc<Session>, filter: &str, qos: QoS) {
        self.subscriptions.write().insert(
            filter,
            session.client_id.clone(),
            Subscriber {
                qos,
                session: session.clone(),
            },
        );
    }

    pub fn remove_subscription(&self, session: &Arc<Session>, filter: &str) {
        let mut index = self.subscriptions.write();
        // Only this session's own entry: a newer session under the same client id owns
        // the key now if this one was replaced.
        let owned = matches!(
            index_entry(&index, filter, &session.client_id),
            Some(subscriber) if Arc::ptr_eq(&subscriber.session, session)
        );
        if owned {
            index.remove(filter, &session.client_id);
        }
    }

    fn remove_subscriptions(&self, session: &Arc<Session>) {
        let filters: Vec<String> = session.with_state(|state| {
            state
                .subscriptions()
                .map(|(filter, _)| filter.to_owned())
                .collect()
        });
        for filter in filters {
            self.remove_subscription(session, &filter);
        }
    }

    /// Delivers a message to every matching subscription, once per session at the highest
    /// granted QoS (capped by the message's QoS).
    pub fn route(&self, topic: &str, payload: Bytes, qos: QoS) -> Routed {
        self.stats.messages_routed.fetch_add(1, Ordering::Relaxed);
        let mut targets: Vec<(Arc<Session>, QoS)> = Vec::new();
        {
            let index = self.subscriptions.read();
            index.for_each_match(topic, |_filter, _key, subscriber| {
                match targets
                    .iter_mut()
                    .find(|(session, _)| Arc::ptr_eq(session, &subscriber.session))
                {
                    Some((_, granted)) => *granted = (*granted).max(subscriber.qos),
                    None => targets.push((subscriber.session.clone(), subscriber.qos)),
                }
            });
        }
        if targets.is_empty() {
            return Routed::default();
        }
        let topic: Arc<str> = topic.into();
        let mut durable = 0;
        for (session, granted) in &targets {
            durable = durable.max(self.deliver(
                session,
                Delivery {
                    topic: topic.clone(),
                    payload: payload.clone(),
                    qos: qos.min(*granted),
                    retain: false,
                },
            ));
        }
        Routed {
            sessions: targets.len(),
            durable,
        }
    }

    /// Queues one delivery for one session, counting and logging what had to be dropped.
    /// Returns the store sequence number that makes it durable (0: nothing to wait for).
    pub fn deliver(&self, session: &Session, delivery: Delivery) -> u64 {
        self.stats.deliveries.fetch_add(1, Ordering::Relaxed);
        let (outcome, durable) = session.deliver(delivery);
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
            Enqueued::DroppedOldestQos1(dropped) => {
                let total = self.stats.dropped_qos1.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(client_id = %session.client_id, topic = %dropped.topic, dropped_total = total, limit = self.config.limits.max_queued_per_session, "session queue full: oldest QoS 1 message dropped");
            }
        }
        durable
    }

    /// Saves a persistent session's subscriptions after they changed; returns the store
    /// sequence number to wait for before acknowledging (0: none).
    pub fn save_session(&self, session: &Session) -> u64 {
        session.persist()
    }

    /// Stores, replaces or (with an empty payload) deletes the retained message of a topic.
    /// Returns the store sequence number that makes the change durable (0 in memory).
    pub fn retain(&self, topic: &str, payload: Bytes, qos: QoS) -> u64 {
        let mut retained = self.retained.write();
        let durable = self.store.as_ref().map_or(0, |store| {
            store.submit(if payload.is_empty() {
                Op::DeleteRetained(topic.into())
            } else {
                Op::PutRetained(StoredMessage {
                    topic: topic.into(),
                    payload: payload.clone(),
                    qos,
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
                },
            );
        }
        durable
    }

    /// Retained messages a new subscription to `filter` receives: IoT Core gives them only
    /// to a filter that names the topic exactly, unless `retained_on_wildcard` is set.
    pub fn retained_for(&self, filter: &str) -> Vec<RetainedMessage> {
        let retained = self.retained.read();
        if iot::filter_is_exact(filter) {
            return retained.get(filter).cloned().into_iter().collect();
        }
        if !self.config.retained_on_wildcard {
            return Vec::new();
        }
        retained
            .values()
            .filter(|message| iot::topic_matches(filter, &message.topic))
            .cloned()
            .collect()
    }

    /// Every retained message (the data plane's ListRetainedMessages).
    pub fn retained_messages(&self) -> Vec<RetainedMessage> {
        let mut messages: Vec<RetainedMessage> = self.retained.read().values().cloned().collect();
        messages.sort_by(|a, b| a.topic.cmp(&b.topic));
        messages
    }

    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }
}

fn index_entry<'a>(
    index: &'a TopicTrie<Arc<str>, Subscriber>,
    filter: &str,
    key: &Arc<str>,
) -> Option<&'a Subscriber> {
    index.get(filter, key)
}

/// Milliseconds since the Unix epoch, as lifecycle events carry them.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// Unix milliseconds of a future (or past) `Instant`, for storing expiry times.
fn instant_to_unix_ms(at: Instant) -> u64 {
    let now = Instant::now();
    let now_ms = unix_millis();
    if at >= now {
        now_ms + (at - now).as_millis() as u64
    } else {
        now_ms.saturating_sub((now - at).as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker() -> Arc<Broker> {
        Broker::new(Config::parse("in_memory = true").unwrap()).unwrap()
    }

    fn drain(session: &Session) -> Vec<(String, QoS)> {
        session.with_state(|state| {
            std::iter::from_fn(|| state.next_outgoing())
                .map(|out| (out.delivery.topic.to_string(), out.delivery.qos))
                .collect()
        })
    }

    #[test]
    fn overlapping_subscriptions_deliver_once_at_highest_qos() {
        let broker = broker();
        let opened = broker.open_session("c", true, 1, Arc::new(LiveConnection::new("c", None)));
        broker.add_subscription(&opened.session, "a/+", QoS::AtMostOnce);
        broker.add_subscription(&opened.session, "a/#", QoS::AtLeastOnce);
        assert_eq!(
            broker
                .route("a/b", Bytes::from_static(b"m"), QoS::AtLeastOnce)
                .sessions,
            1
        );
        assert_eq!(
            drain(&opened.session),
            vec![("a/b".into(), QoS::AtLeastOnce)]
        );
    }

    #[test]
    fn persistent_session_resumes_and_clean_session_replaces() {
        let broker = broker();
        let first = broker.open_session("c", false, 1, Arc::new(LiveConnection::new("c", None)));
        assert!(!first.session_present);
        first
            .session
            .with_state(|state| state.subscribe("t", QoS::AtLeastOnce));
        broker.add_subscription(&first.session, "t", QoS::AtLeastOnce);
        broker.close_session(&first.session, 1, Instant::now());
        broker.route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce);
        let resumed = broker.open_session("c", false, 2, Arc::new(LiveConnection::new("c", None)));
        assert!(resumed.session_present);
        assert_eq!(drain(&resumed.session).len(), 1);
        let replaced = broker.open_session("c", true, 3, Arc::new(LiveConnection::new("c", None)));
        assert!(!replaced.session_present);
        assert_eq!(replaced.took_over, Some(2));
        assert_eq!(
            broker
                .route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce)
                .sessions,
            0
        );
    }

    #[test]
    fn expired_sessions_are_removed() {
        let broker = broker();
        let opened = broker.open_session("c", false, 1, Arc::new(LiveConnection::new("c", None)));
        broker.add_subscription(&opened.session, "t", QoS::AtLeastOnce);
        opened
            .session
            .with_state(|state| state.subscribe("t", QoS::AtLeastOnce));
        let now = Instant::now();
        broker.close_session(&opened.session, 1, now);
        assert_eq!(broker.expire_sessions(now), 0);
        assert_eq!(broker.expire_sessions(now + Duration::from_secs(3601)), 1);
        assert_eq!(broker.session_count(), 0);
        assert_eq!(
            broker
                .route("t", Bytes::from_static(b"m"), QoS::AtLeastOnce)
                .sessions,
            0
        );
    }

    #[test]
    fn retained_follows_iot_rule() {
        let broker = broker();
        broker.retain("a/b", Bytes::from_static(b"1"), QoS::AtMostOnce);
        broker.retain("a/b", Bytes::from_static(b"2"), QoS::AtMostOnce);
        assert_eq!(&broker.retained_for("a/b")[0].payload[..], b"2");
        assert!(broker.retained_for("a/+").is_empty());
        broker.retain("a/b", Bytes::new(), QoS::AtMostOnce);
        assert_eq!(broker.retained_count(), 0);
    }

    #[test]
    fn connect_throttle_counts_per_second() {
        let broker = broker();
        assert!(broker.admit_connect("c", 10));
        assert!(!broker.admit_connect("c", 10));
        assert!(broker.admit_connect("other", 10));
        assert!(broker.admit_connect("c", 11));
    }
}
