//! [`DataManager`]: connect, subscribe, publish — the Rust AWSIoTDataManager.
//!
//! Each `connect*` call starts one session task (task.rs) on the SDK's runtime (or the
//! one given with [`crate::ServiceConfiguration::runtime`]). The task owns the MQTT
//! session state machine (session.rs) and the transport, reconnects with back-off,
//! re-subscribes and re-sends. The public methods here only record intent in a shared
//! table and hand commands to that task, so they never block; user callbacks run on the
//! manager's callback thread (dispatch.rs), never on the task.
//!
//! Lifecycle: a `DataManager` is a handle. Dropping the last handle disconnects (the task
//! holds the shared state, not a handle, so nothing keeps itself alive).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use bytes::Bytes;
use rustls::ClientConfig;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::auth::{self, username_with_metrics};
use crate::config::{ClientRules, ServiceConfiguration};
use crate::dispatch::Dispatcher;
use crate::error::Error;
use crate::mqtt5::{ConnackProperties, ProtocolVersion, PublishOptions, PublishProperties};
use crate::session::{OutgoingPublish, SessionConfig};
use crate::status::{Reason, Status, StatusEvent};
use crate::task::{Dial, SessionTask};
use crate::transport::{Target, WebSocketTarget};
use crate::{tls, topic, QoS};

/// An incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// The topic it was published to.
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was delivered with.
    pub qos: QoS,
    /// Retain flag (a retained message delivered on subscribe).
    pub retain: bool,
    /// DUP flag: the broker may have delivered this message before (QoS 1 redelivery).
    pub dup: bool,
    /// MQTT 5 properties (user properties, content type, response topic, correlation
    /// data, ...); empty on MQTT 3.1.1 connections.
    pub properties: PublishProperties,
}

impl Message {
    /// The payload as UTF-8 text, with invalid sequences replaced.
    pub fn payload_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.payload)
    }
}

/// What happened to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishOutcome {
    /// QoS 0: written to the connection.
    Sent,
    /// QoS 1: the broker acknowledged it (PUBACK).
    Acknowledged,
    /// [`DataManager::try_publish`]: handed to the connection; nothing waits for the end.
    Submitted,
    /// The connection is down (or not up yet): the message waits in the offline queue
    /// and is sent after the (re)connect.
    Queued,
    /// The connection is down and the offline queue policy refused the message.
    Rejected(RejectReason),
}

/// Why the offline queue refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// QoS 0 messages are not queued while offline (`OfflineQueuePolicy::queue_qos0`).
    Qos0WhileOffline,
    /// The offline queue is full.
    QueueFull,
}

/// Custom authorizer parameters, for [`DataManager::connect_using_custom_auth`] (TLS with
/// ALPN `mqtt`, parameters in the CONNECT username) and
/// [`DataManager::connect_using_websocket_custom_auth`] (parameters as upgrade headers).
///
/// ```
/// let auth = pubsub::CustomAuth::new("MyAuthorizer", "token", "allow-me")
///     .signature("aGVsbG8=");
/// assert_eq!(auth.token_signature.as_deref(), Some("aGVsbG8="));
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct CustomAuth {
    /// The authorizer's name.
    pub authorizer_name: String,
    /// The name of the token parameter the authorizer reads.
    pub token_key_name: String,
    /// The token.
    pub token_value: String,
    /// base64 RSA-SHA256 signature of the token; `None` for an authorizer with signing
    /// disabled.
    pub token_signature: Option<String>,
    /// Direct mode only: the user part of the CONNECT username.
    pub username: Option<String>,
    /// Direct mode only: the CONNECT password (passed to the authorizer base64-encoded).
    pub password: Option<String>,
}

impl std::fmt::Debug for CustomAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token and password are credentials: never logged.
        f.debug_struct("CustomAuth")
            .field("authorizer_name", &self.authorizer_name)
            .field("token_key_name", &self.token_key_name)
            .field("signed", &self.token_signature.is_some())
            .finish_non_exhaustive()
    }
}

impl CustomAuth {
    /// Parameters for `authorizer_name`, sending `token` as `token_key_name`.
    pub fn new(
        authorizer_name: impl Into<String>,
        token_key_name: impl Into<String>,
        token: impl Into<String>,
    ) -> CustomAuth {
        CustomAuth {
            authorizer_name: authorizer_name.into(),
            token_key_name: token_key_name.into(),
            token_value: token.into(),
            ..CustomAuth::default()
        }
    }

    /// The token's signature (base64), for an authorizer with signing enabled.
    pub fn signature(mut self, signature: impl Into<String>) -> Self {
        self.token_signature = Some(signature.into());
        self
    }

    /// The user part of the CONNECT username (direct mode).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The CONNECT password (direct mode).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }
}

/// How [`DataManager::connect_using_custom_auth_provider`] reaches the authorizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CustomAuthTransport {
    /// TLS with ALPN `mqtt` (port 443), parameters in the CONNECT username.
    Direct,
    /// WebSocket (`wss://<endpoint>/mqtt`), parameters as upgrade headers.
    WebSocket,
}

/// Options for [`DataManager::connect_mqtt`]: plain MQTT to any broker.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MqttConnectOptions {
    /// Use TLS (server authentication only) instead of plain TCP.
    pub tls: bool,
    /// CONNECT username.
    pub username: Option<String>,
    /// CONNECT password.
    pub password: Option<String>,
}

impl MqttConnectOptions {
    /// Plain TCP, no credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// TLS (server authentication) instead of plain TCP.
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// CONNECT username and password.
    pub fn credentials(mut self, username: impl Into<String>, password: Option<String>) -> Self {
        self.username = Some(username.into());
        self.password = password;
        self
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub(crate) type StatusCallback = Arc<Mutex<dyn FnMut(StatusEvent) + Send>>;
type MessageCallback = Arc<Mutex<dyn FnMut(&Message) + Send>>;
pub(crate) type InternalCallback = Arc<dyn Fn(&str, &[u8]) + Send + Sync>;

/// Where the end of an operation goes.
pub(crate) enum Sink<T> {
    None,
    Channel(oneshot::Sender<Result<T, Error>>),
    /// Run on the callback thread.
    Callback(Box<dyn FnOnce(Result<T, Error>) + Send>),
}

impl<T: Send + 'static> Sink<T> {
    pub(crate) fn complete(self, r: Result<T, Error>, dispatcher: &Dispatcher) {
        match self {
            Sink::None => {}
            Sink::Channel(tx) => {
                let _ = tx.send(r);
            }
            Sink::Callback(cb) => dispatcher.run(move || cb(r)),
        }
    }
}

#[derive(Clone)]
pub(crate) enum Handler {
    Callback(MessageCallback),
    Stream(mpsc::Sender<Message>),
    /// A callback the SDK registers for itself (the shadow helper): a user's callback for
    /// the same filter neither replaces it nor is replaced by it, and a user's
    /// `disconnect()` keeps it.
    Internal(InternalCallback),
}

pub(crate) struct Subscription {
    pub(crate) id: u64,
    pub(crate) filter: String,
    pub(crate) qos: QoS,
    pub(crate) handler: Handler,
}

pub(crate) enum Command {
    Publish(OutgoingPublish, Sink<PublishOutcome>),
    Subscribe {
        filter: String,
        qos: QoS,
        sink: Sink<()>,
    },
    Unsubscribe {
        filter: String,
        sink: Sink<()>,
    },
    /// The callback thread handed over the QoS 1 message with this packet id.
    Ack(u16),
    Disconnect(Option<oneshot::Sender<()>>),
}

/// The session of the current `connect*` call.
pub(crate) struct Live {
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    status_callback: StatusCallback,
}

#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) live: Option<Live>,
    /// Bumped by every `connect*` and `disconnect`: a task whose generation is no longer
    /// current reports nothing (its successor owns the status).
    pub(crate) generation: u64,
    pub(crate) subscriptions: Vec<Subscription>,
    /// The offline queue: publishes made while the connection is down.
    pub(crate) queue: VecDeque<(OutgoingPublish, Sink<PublishOutcome>)>,
    next_id: u64,
    pub(crate) connack: Option<ConnackProperties>,
    client_id: Option<String>,
    /// IoT Core's topic and payload rules apply (see [`ClientRules`]).
    iot_rules: bool,
}

pub(crate) struct Inner {
    pub(crate) config: ServiceConfiguration,
    shared: Mutex<Shared>,
    status: watch::Sender<StatusEvent>,
    /// Shadows registered with `register_with_shadow` (own lock, taken before `shared`).
    shadows: crate::shadow::Registry,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Report a status change of session `generation`; ignored once that session is no
    /// longer the current one. Called with the lock held, so the state a callback sees
    /// (e.g. whether `connect*` may be called) is the state the status describes.
    pub(crate) fn report(&self, sh: &Shared, generation: u64, event: StatusEvent) {
        if sh.generation != generation {
            return;
        }
        let changed = self.status.send_if_modified(|cur| {
            let changed = cur.status != event.status || event.reason.is_some();
            if changed {
                *cur = event.clone();
            }
            changed
        });
        if !changed {
            return;
        }
        tracing::debug!(status = ?event.status, reason = ?event.reason, "status");
        if let Some(live) = &sh.live {
            let cb = live.status_callback.clone();
            self.dispatcher
                .run(move || (cb.lock().unwrap_or_else(|e| e.into_inner()))(event));
        }
    }

    /// The user's `disconnect()` (or the last handle dropped): the manager is free for a
    /// new `connect*` at once; the task closes the connection in the background. As the
    /// iOS SDK, the user's callback subscriptions and streams end here; the offline queue
    /// fails with [`Error::Disconnected`].
    fn end_session(&self, done: Option<oneshot::Sender<()>>) -> bool {
        let (tx, queued) = {
            let mut sh = self.lock();
            let Some(live) = sh.live.as_ref() else {
                return false;
            };
            let tx = live.tx.clone();
            let g = sh.generation;
            self.report(&sh, g, StatusEvent::ended(Reason::UserDisconnect));
            sh.live = None;
            sh.generation += 1;
            sh.connack = None;
            sh.subscriptions
                .retain(|s| matches!(s.handler, Handler::Internal(_)));
            let queued: Vec<_> = sh.queue.drain(..).collect();
            (tx, queued)
        };
        for (_, sink) in queued {
            sink.complete(Err(Error::Disconnected), &self.dispatcher);
        }
        if let Err(mpsc::error::SendError(Command::Disconnect(Some(done)))) =
            tx.send(Command::Disconnect(done))
        {
            // The task already ended.
            let _ = done.send(());
        }
        true
    }
}

fn registry() -> &'static Mutex<HashMap<String, DataManager>> {
    static R: OnceLock<Mutex<HashMap<String, DataManager>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// The SDK's own runtime, used unless the configuration names one: session tasks never
/// run on the caller's runtime, whose shutdown would otherwise stop them mid-session.
pub(crate) fn sdk_runtime() -> tokio::runtime::Handle {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pubsub-sdk")
            .enable_all()
            .build()
            .expect("pubsub: cannot start the SDK's tokio runtime")
    })
    .handle()
    .clone()
}

/// Disconnects when the last [`DataManager`] handle goes.
struct Handle {
    inner: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.inner.end_session(None) {
            tracing::info!("last DataManager handle dropped: disconnecting");
        }
    }
}

/// The client: one MQTT connection (at a time) to one endpoint, plus its subscriptions.
///
/// Cheap to clone (a handle). Dropping the last handle disconnects. Methods never block
/// and work with or without a tokio runtime.
#[derive(Clone)]
pub struct DataManager {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for DataManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataManager")
            .field("endpoint", &self.inner().config.endpoint())
            .field("status", &self.inner().status.borrow().status)
            .finish()
    }
}

impl DataManager {
    fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    /// A manager for `config`, not registered anywhere.
    pub fn new(config: ServiceConfiguration) -> DataManager {
        let (status, _) = watch::channel(StatusEvent::new(Status::Unknown));
        let runtime = config.runtime.clone().unwrap_or_else(sdk_runtime);
        DataManager {
            handle: Arc::new(Handle {
                inner: Arc::new(Inner {
                    config,
                    shared: Mutex::new(Shared::default()),
                    status,
                    shadows: crate::shadow::Registry::default(),
                    dispatcher: Dispatcher::start(),
                    runtime,
                }),
            }),
        }
    }

    /// Create a manager for `config` and register it under `key`, as iOS
    /// `registerIoTDataManagerWithConfiguration:forKey:`. A manager registered under the
    /// same key before is removed and disconnected.
    pub fn register(config: ServiceConfiguration, key: &str) -> DataManager {
        let m = DataManager::new(config);
        let old = registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), m.clone());
        if let Some(old) = old {
            let _ = old.disconnect();
        }
        m
    }

    /// The manager registered under `key`.
    ///
    /// # Errors
    /// [`Error::NotRegistered`] when nothing is registered under `key`.
    pub fn get(key: &str) -> Result<DataManager, Error> {
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NotRegistered(key.to_owned()))
    }

    /// Remove the manager registered under `key`. It keeps working for existing handles,
    /// and disconnects when the last of them is dropped.
    pub fn remove(key: &str) -> Option<DataManager> {
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
    }

    /// The configuration.
    pub fn configuration(&self) -> &ServiceConfiguration {
        &self.inner().config
    }

    /// What the broker said in the CONNACK of the current connection (`session_present`,
    /// and with MQTT 5 its properties, e.g. the Assigned Client Identifier or Receive
    /// Maximum); `None` while not connected.
    pub fn connack(&self) -> Option<ConnackProperties> {
        self.inner().lock().connack.clone()
    }

    /// The latest status and its reason; `changed().await` on it to follow changes.
    pub fn status(&self) -> watch::Receiver<StatusEvent> {
        self.inner().status.subscribe()
    }

    /// Wait until the current connection attempt ends: the CONNACK once connected.
    ///
    /// # Errors
    /// The [`StatusEvent`] that ended the attempt (refused, failed, disconnected), with
    /// its [`Reason`]. With auto-reconnect on, later attempts continue after the error.
    pub async fn wait_for_connection(&self) -> Result<ConnackProperties, StatusEvent> {
        let mut rx = self.status();
        loop {
            let ev = rx.borrow_and_update().clone();
            match ev.status {
                Status::Connected => {
                    if let Some(c) = self.connack() {
                        return Ok(c);
                    }
                }
                Status::Connecting => {}
                Status::Unknown if self.inner().lock().live.is_some() => {}
                _ => return Err(ev),
            }
            if rx.changed().await.is_err() {
                return Err(ev);
            }
        }
    }

    fn tls_config(
        &self,
        identity: Option<&crate::identity::Identity>,
        alpn: &[&str],
    ) -> Result<Arc<ClientConfig>, Error> {
        tls::client_config(self.inner().config.ca_file.as_deref(), identity, alpn)
    }

    fn host(&self) -> String {
        self.inner().config.endpoint().host().to_owned()
    }

    fn metrics_username(&self, base: Option<&str>) -> Option<String> {
        username_with_metrics(base, &self.host(), self.inner().config.metrics)
    }

    /// Connect with mutual TLS on port 8883 (or the configured override), authenticating
    /// with the identity `certificate_id` from the identity store. Returns at once; the
    /// status callback (run on the callback thread) reports progress.
    ///
    /// # Errors
    /// [`Error::EmptyClientId`]; [`Error::AlreadyConnected`] while a session is active;
    /// identity-store and TLS configuration errors.
    pub fn connect(
        &self,
        client_id: &str,
        clean_session: bool,
        certificate_id: &str,
        status_callback: impl FnMut(StatusEvent) + Send + 'static,
    ) -> Result<(), Error> {
        self.connect_certificate(client_id, certificate_id, false)
            .and_then(|dial| self.start(client_id, clean_session, dial, true, status_callback))
    }

    /// As [`DataManager::connect`], on port 443 with TLS ALPN `x-amzn-mqtt-ca`.
    ///
    /// # Errors
    /// As [`DataManager::connect`].
    pub fn connect_using_alpn(
        &self,
        client_id: &str,
        clean_session: bool,
        certificate_id: &str,
        status_callback: impl FnMut(StatusEvent) + Send + 'static,
    ) -> Result<(), Error> {
        self.connect_certificate(client_id, certificate_id, true)
            .and_then(|dial| self.start(client_id, clean_session, dial, true, status_callback))
    }

    fn connect_certificate(
        &self,
        client_id: &str,
        certificate_id: &str,
        alpn: bool,
    ) -> Result<Dial, Error> {
        check_client_id(client_id)?;
        let identity = self.inner().config.store()?.load(certificate_id)?;
        let cfg = &self.inner().config;
        let (tls, port) = if alpn {
            (
                self.tls_config(Some(&identity), &["x-amzn-mqtt-ca"])?,
                cfg.port(cfg.ports.alpn, 443),
            )
        } else {
            (
                self.tls_config(Some(&identity), &[])?,
                cfg.port(cfg.ports.certificate, 8883),
            )
        };
        Ok(Dial::Fixed {
            target: self.target(port, Some(tls)),
            username: self.metrics_username(None),
            password: None,
        })
    }

    fn target(&self, port: u16, tls: Option<Arc<ClientConfig>>) -> Target {
        Target {
            host: self.host(),
            port,
            tls,
            websocket: None,
        }
    }

    /// Connect over WebSocket (`wss://<endpoint>/mqtt`, port 443 or the override), the URL
    /// presigned with SigV4 (service `iotdevicegateway`) from the configured credentials
    /// provider, afresh on every (re)connect attempt (so refreshed credentials are used).
    ///
    /// # Errors
    /// [`Error::EmptyClientId`]; [`Error::AlreadyConnected`]; TLS configuration errors.
    /// Credential and signing failures are reported through the status callback
    /// ([`Reason::Prepare`]), as they can happen on any reconnect.
    pub fn connect_using_websocket(
        &self,
        client_id: &str,
        clean_session: bool,
        status_callback: impl FnMut(StatusEvent) + Send + 'static,
    ) -> Result<(), Error> {
        check_client_id(client_id)?;
        let cfg = &self.inner().config;
        let port = cfg.port(cfg.ports.websocket, 443);
        let tls = self.tls_config(None, &["http/1.1"])?;
        let dial = Dial::SigV4 {
            target: self.target(port, Some(tls)),
            authority: authority(&self.host(), port),
            region: cfg.region.clone(),
            credentials: SharedCredentialsProvider::clone(&cfg.credentials_handle()),
            username: self.metrics_username(None),
        };
        self.start(client_id, clean_session, dial, true, status_callback)
    }

    /// Connect over WebSocket to a URL the caller presigns (e.g. a backend that signs
    /// for the app): `url_provider` is called before every (re)connect attempt, so an
    /// expired URL is replaced. `ws://` and `wss://` URLs are accepted.
    ///
    /// ```no_run
    /// # fn f(iot: pubsub::DataManager, url: String) -> Result<(), pubsub::Error> {
    /// iot.connect_using_presigned_url("client-1", true, move || {
    ///     let url = url.clone();
    ///     async move { Ok(url) }
    /// }, |status| println!("{status}"))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::EmptyClientId`]; [`Error::AlreadyConnected`]; TLS configuration errors.
    /// An `Err` from the provider, or a URL that is not `ws://` / `wss://`, is reported
    /// through the status callback ([`Reason::Prepare`]).
    pub fn connect_using_presigned_url<F, Fut>(
        &self,
        client_id: &str,
        clean_session: bool,
        url_provider: F,
        status_callback: impl FnMut(StatusEvent) + Send + 'static,
    ) -> Result<(), Error>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, Error>> + Send + 'static,
    {
        check_client_id(client_id)?;
        let tls = self.tls_config(None, &["http/1.1"])?;
        let dial = Dial::PresignedUrl {
            tls,
            provider: Arc::new(move || Box::pin(url_provider()) as BoxFuture<_>),
            username: self.metrics_username(None),
        };
        self.start(client_id, clean_session, dial, true, status_callback)
    }

    /// Connect over WebSocket with a custom authorizer: the upgrade request carries
    /// `x-amz-customauthorizer-name`, `x-amz-customauthorizer-signature` (when
    /// `auth.token_signature` is set) and `<token_key_name>: <token_value>`, as the iOS SDK.
    ///
    /// # Errors
    /// [`Error::EmptyClientId`]; [`Error::AlreadyConnected`]; TLS configuration errors.
    pub fn connect_using_websocket_custom_auth(
        &self,
        client_id: &str,
        clean_session: bool,
        auth: &CustomAuth,
        status_callback: impl FnMut(StatusEvent) + Send + 'static,
    ) -> Result<(), Error> {
        let auth = auth.clone();
        self.connect_using_custom_auth_provider(
            client_id,
            clean_session,
            CustomAuthTransport::WebSocket,
            move || {
                let auth = auth.clone();
                async move { Ok(auth) }
            },
            status_callback,
        )
    }

    /// Connect with a custom authorizer directly over MQTT: TLS with ALPN `mqtt` on port
    /// 443 (or the override), the authorizer parameters in the CONNECT username
    /// (`<user>?x-amz-customauthorizer-name=…&x-amz-customauthorizer-signature=…&<key>=<token>`).
    ///
    /// # Errors
    /// [`Error::EmptyClientId`]; [`Error::AlreadyConnected`]; TLS configuration errors.
    pub fn connect_using_custom_auth(
        &self,
        client_id: &str,
        clean_session: bool,
        auth: &CustomAuth,
        status_callback: impl FnMut(StatusEvent) + Send + 'static,
    ) -> Result<(), Error> {
        let auth = auth.clone();
        self.connect_using_custom_auth_provider(
            client_id,
            clean_session,
            CustomAuthTransport::Direct,
            move || {
                let auth = auth.clone();
                async move { Ok(auth) }
            },
            status_callback,
        )
    }

    /// Custom authentication with a token that expires: `provider` is called before every
    /// (re)connect attempt and its parameters are used for that attempt only.
    ///
    /// ```no_run
    /// # fn f(iot: pubsub::DataManager) -> Result<(), pubsub::Error> {
    /// use pubsub::{CustomAuth, CustomAuthTransport};
    /// iot.connect_using_custom_auth_provider("client-1", true, CustomAuthTransport::Direct,
    ///     || async { Ok(CustomAuth::new("MyAuthorizer", "token", fetch_token().await)) },
    ///     |status| println!("{status}"))?;
    /// # Ok(()) }
    /// # async fn fetch_token() -> String { String::new() }
    /// ```
    ///
    /// # Errors
    /// [`Error::EmptyClientId`]; [`Error::AlreadyConnected`]; TLS configuration errors.
    /// An `Err` from the provider is reported through the status callback
    /// ([`Reason::Prepare`]) and the attempt is retried after back-off.
    pub fn connect_using_custom_auth_provider<F, Fut>(
        &self,
        client_id: &str,
        clean_session: bool,
        transport: CustomAuthTransport,
        provider: F,
        status_callback: impl FnMut(StatusEvent) + Send + 'static,
    ) -> Result<(), Error>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CustomAuth, Error>> + Send + 'static,
    {
        check_client_id(client_id)?;
        let cfg = &self.inner().config;
        let (target, websocket) = match transport {
            CustomAuthTransport::Direct => {
                let port = cfg.port(cfg.ports.custom_auth, 443);
                (
                    self.target(port, Some(self.tls_config(None, &["mqtt"])?)),
                    None,
                )
            }
            CustomAuthTransport::WebSocket => {
                let port = cfg.port(cfg.ports.websocket, 443);
                let url = format!("wss://{}/mqtt", authority(&self.host(), port));
                (
                    self.target(port, Some(self.tls_config(None, &["http/1.1"])?)),
                    Some(url),
                )
            }
        };
        let dial = Dial::CustomAuth {
            target,
            websocket_url: websocket,
            provider: Arc::new(move || Box::pin(provider()) as BoxFuture<_>),
            host: self.host(),
            metrics: cfg.metrics,
        };
        self.start(client_id, clean_session, dial, true, status_callback)
    }

    /// Plain MQTT (3.1.1, or 5 as configured) to any broker: TCP (port 1883) or TLS with
    /// server authentication only (port 8883), optional username/password. Metrics are
    /// added to the username only for AWS endpoints or when configured.
    ///
    /// # Errors
    /// [`Error::EmptyClientId`]; [`Error::AlreadyConnected`]; TLS configuration errors.
    pub fn connect_mqtt(
        &self,
        client_id: &str,
        clean_session: bool,
        options: &MqttConnectOptions,
        status_callback: impl FnMut(StatusEvent) + Send + 'static,
    ) -> Result<(), Error> {
        check_client_id(client_id)?;
        let cfg = &self.inner().config;
        let target = if options.tls {
            self.target(
                cfg.port(cfg.ports.mqtt_tls, 8883),
                Some(self.tls_config(None, &[])?),
            )
        } else {
            self.target(cfg.port(cfg.ports.mqtt_tcp, 1883), None)
        };
        let dial = Dial::Fixed {
            target,
            username: self.metrics_username(options.username.as_deref()),
            password: options.password.clone(),
        };
        self.start(client_id, clean_session, dial, false, status_callback)
    }

    fn session_config(&self, client_id: &str, clean_session: bool) -> SessionConfig {
        let mqtt = &self.inner().config.mqtt;
        let keep_alive = if mqtt.keep_alive.is_zero() {
            Duration::ZERO
        } else {
            mqtt.keep_alive.max(Duration::from_secs(1))
        };
        SessionConfig {
            client_id: client_id.to_owned(),
            clean_start: clean_session,
            protocol: match mqtt.protocol {
                ProtocolVersion::V311 => mqtt::Protocol::V311,
                ProtocolVersion::V5 => mqtt::Protocol::V5,
            },
            keep_alive,
            ping_timeout: mqtt.ping_timeout,
            will: mqtt.last_will.as_ref().map(|w| w.to_wire()),
            session_expiry: u32::try_from(mqtt.session_expiry.as_secs()).unwrap_or(u32::MAX),
            max_packet_size: u32::try_from(mqtt.max_packet_size).unwrap_or(u32::MAX),
            ack_timeout: mqtt.ack_timeout,
            max_attempts: mqtt.max_attempts.max(1),
            inflight_limit: 100,
        }
    }

    fn start(
        &self,
        client_id: &str,
        clean_session: bool,
        dial: Dial,
        iot_method: bool,
        status_callback: impl FnMut(StatusEvent) + Send + 'static,
    ) -> Result<(), Error> {
        let inner = self.inner();
        let iot_rules = match inner.config.mqtt.rules {
            ClientRules::IotCore => true,
            ClientRules::Mqtt => false,
            ClientRules::Auto => iot_method || auth::is_aws_host(&self.host()),
        };
        let session = self.session_config(client_id, clean_session);
        let (generation, rx, tx) = {
            let mut sh = inner.lock();
            if sh.live.is_some() {
                return Err(Error::AlreadyConnected);
            }
            let (tx, rx) = mpsc::unbounded_channel();
            sh.generation += 1;
            sh.live = Some(Live {
                tx: tx.clone(),
                status_callback: Arc::new(Mutex::new(status_callback)),
            });
            sh.connack = None;
            sh.client_id = Some(client_id.to_owned());
            sh.iot_rules = iot_rules;
            let g = sh.generation;
            inner.report(&sh, g, StatusEvent::new(Status::Connecting));
            (g, rx, tx)
        };
        tracing::info!(client_id, ?dial, iot_rules, "connecting");
        let task = SessionTask::new(inner.clone(), generation, session, dial, rx, tx);
        inner.runtime.spawn(task.run());
        Ok(())
    }

    /// Close the connection (DISCONNECT) and stop reconnecting. The manager is free for a
    /// new `connect*` at once. As the iOS SDK, subscriptions made with callbacks and
    /// streams end; pending acknowledgements and the offline queue fail with
    /// [`Error::Disconnected`]; the status becomes `Disconnected`.
    ///
    /// # Errors
    /// [`Error::NotConnected`] when no session was active.
    pub fn disconnect(&self) -> Result<(), Error> {
        if self.inner().end_session(None) {
            Ok(())
        } else {
            Err(Error::NotConnected)
        }
    }

    /// [`DataManager::disconnect`], resolving once the connection is closed (at most a
    /// couple of seconds for a broker that does not close its side).
    pub async fn disconnect_and_wait(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner().end_session(Some(tx)) {
            let _ = rx.await;
        }
    }

    // ---- publish ----

    /// Hand a publish to the session (connected), the offline queue (connecting or
    /// reconnecting), or refuse it. `Ok(None)`: handed over, `sink` hears the end.
    fn submit(
        &self,
        p: OutgoingPublish,
        sink: Sink<PublishOutcome>,
    ) -> Result<Option<PublishOutcome>, Error> {
        let inner = self.inner();
        let iot_rules = inner.lock().iot_rules;
        check_topic(&p.topic, iot_rules)?;
        let max = if iot_rules {
            iot::Limits::default().max_payload_bytes
        } else {
            inner
                .config
                .mqtt
                .max_packet_size
                .saturating_sub(p.topic.len() + 8)
        };
        if p.payload.len() > max {
            return Err(Error::PayloadTooLarge {
                len: p.payload.len(),
                max,
            });
        }
        let policy = inner.config.mqtt.offline_queue;
        let mut sh = inner.lock();
        let Some(live) = sh.live.as_ref() else {
            return Err(Error::NotConnected);
        };
        if sh.connack.is_some() {
            live.tx
                .send(Command::Publish(p, sink))
                .map_err(|_| Error::NotConnected)?;
            return Ok(None);
        }
        if p.qos == QoS::AtMostOnce && !policy.queue_qos0 {
            return Ok(Some(PublishOutcome::Rejected(
                RejectReason::Qos0WhileOffline,
            )));
        }
        if sh.queue.len() >= policy.capacity {
            match policy.when_full {
                crate::config::WhenFull::RejectNew => {
                    return Ok(Some(PublishOutcome::Rejected(RejectReason::QueueFull)))
                }
                crate::config::WhenFull::DropOldest => {
                    if let Some((old, old_sink)) = sh.queue.pop_front() {
                        tracing::warn!(topic = %old.topic, "offline queue full: dropping the oldest message");
                        old_sink.complete(Err(Error::DroppedFromQueue), &inner.dispatcher);
                    }
                    if policy.capacity == 0 {
                        return Ok(Some(PublishOutcome::Rejected(RejectReason::QueueFull)));
                    }
                }
            }
        }
        sh.queue.push_back((p, sink));
        Ok(Some(PublishOutcome::Queued))
    }

    fn require_v5(&self, what: &'static str) -> Result<(), Error> {
        if self.inner().config.mqtt.protocol == ProtocolVersion::V5 {
            Ok(())
        } else {
            Err(Error::NeedsMqtt5(what))
        }
    }

    fn outgoing(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        options: PublishOptions,
    ) -> Result<OutgoingPublish, Error> {
        if !options.properties.is_empty() {
            self.require_v5("publish properties")?;
        }
        Ok(OutgoingPublish {
            topic: topic.to_owned(),
            payload,
            qos,
            retain: options.retain,
            properties: crate::mqtt5::to_wire_properties(&options.properties),
        })
    }

    /// Publish and wait: QoS 0 resolves with `Sent` once written, QoS 1 with
    /// `Acknowledged` on PUBACK (also when the PUBACK comes after a reconnect). While the
    /// connection is down (or not up yet), resolves at once with `Queued` or
    /// `Rejected(..)` according to the offline queue policy.
    ///
    /// ```no_run
    /// # async fn f(iot: pubsub::DataManager) -> Result<(), pubsub::Error> {
    /// use pubsub::QoS;
    /// iot.publish("sensors/7/temp", "21.5", QoS::AtLeastOnce).await?;
    /// iot.publish("sensors/7/raw", vec![0u8, 1, 2], QoS::AtMostOnce).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotConnected`] without a session; [`Error::InvalidTopic`];
    /// [`Error::PayloadTooLarge`]; [`Error::PublishRefused`] (MQTT 5 PUBACK failure);
    /// [`Error::AckTimeout`] / [`Error::GaveUp`] when the broker never acknowledges it
    /// (e.g. closes the connection on it each time); [`Error::Disconnected`] when
    /// `disconnect()` intervenes.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
    ) -> Result<PublishOutcome, Error> {
        self.publish_with(topic, payload, qos, PublishOptions::new())
            .await
    }

    /// [`DataManager::publish`] with options: the retain flag and MQTT 5 properties (user
    /// properties, content type, payload format, response topic, correlation data,
    /// message expiry).
    ///
    /// ```no_run
    /// # async fn f(iot: pubsub::DataManager) -> Result<(), pubsub::Error> {
    /// use pubsub::{PublishOptions, PublishProperties, QoS};
    /// let props = PublishProperties::new()
    ///     .user_property("source", "sensor-7")
    ///     .content_type("application/json");
    /// iot.publish_with("telemetry/7", r#"{"t":21.5}"#, QoS::AtLeastOnce,
    ///     PublishOptions::new().retain(true).properties(props)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`DataManager::publish`], plus [`Error::NeedsMqtt5`] for properties on an
    /// MQTT 3.1.1 manager (they are not silently dropped).
    pub async fn publish_with(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        options: PublishOptions,
    ) -> Result<PublishOutcome, Error> {
        let p = self.outgoing(topic, payload.into(), qos, options)?;
        let (tx, rx) = oneshot::channel();
        match self.submit(p, Sink::Channel(tx))? {
            Some(outcome) => Ok(outcome),
            None => rx.await.unwrap_or(Err(Error::Disconnected)),
        }
    }

    /// Publish without waiting (iOS `publishString:onTopic:QoS:` / `publishData:`):
    /// `Submitted` when handed to the connection, `Queued` or `Rejected(..)` while
    /// offline.
    ///
    /// # Errors
    /// [`Error::NotConnected`], [`Error::InvalidTopic`], [`Error::PayloadTooLarge`]; what
    /// happens after the hand-off is not reported (use [`DataManager::publish`] or
    /// [`DataManager::publish_with_ack`] to hear it).
    pub fn try_publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
    ) -> Result<PublishOutcome, Error> {
        let p = self.outgoing(topic, payload.into(), qos, PublishOptions::new())?;
        Ok(self
            .submit(p, Sink::None)?
            .unwrap_or(PublishOutcome::Submitted))
    }

    /// Publish with a callback (iOS `publishString:onTopic:QoS:ackCallback:`), run on the
    /// callback thread with how it ended: `Ok(Acknowledged)` on PUBACK, `Ok(Sent)` for
    /// QoS 0 once written, or the error. Returns what happened at once, as
    /// [`DataManager::try_publish`]; the callback is not called when this returns `Err`
    /// or `Rejected`.
    ///
    /// # Errors
    /// As [`DataManager::try_publish`].
    pub fn publish_with_ack(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        ack: impl FnOnce(Result<PublishOutcome, Error>) + Send + 'static,
    ) -> Result<PublishOutcome, Error> {
        let p = self.outgoing(topic, payload.into(), qos, PublishOptions::new())?;
        Ok(self
            .submit(p, Sink::Callback(Box::new(ack)))?
            .unwrap_or(PublishOutcome::Submitted))
    }

    /// MQTT 5 request/response: subscribe to `response_topic`, publish `payload` to `topic`
    /// (QoS 1) with that Response Topic and fresh Correlation Data, and resolve with the
    /// first message on `response_topic` that carries the same Correlation Data (the
    /// responder copies it, as the MQTT 5 specification asks). Other messages on the
    /// response topic are left to other listeners. The subscription is removed when the
    /// call ends unless something else listens on the same filter.
    ///
    /// ```no_run
    /// # async fn f(iot: pubsub::DataManager) -> Result<(), pubsub::Error> {
    /// use std::time::Duration;
    /// let reply = iot
    ///     .request("svc/time", "now?", "svc/time/reply/client-1", Duration::from_secs(5))
    ///     .await?;
    /// println!("{}", reply.payload_str());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NeedsMqtt5`] on MQTT 3.1.1; [`Error::RequestTimedOut`] after `timeout`
    /// (counted from the call, subscription included); subscribe and publish errors.
    pub async fn request(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        response_topic: &str,
        timeout: Duration,
    ) -> Result<Message, Error> {
        self.require_v5("request/response")?;
        let deadline = Instant::now() + timeout;
        let timed_out = |_| Error::RequestTimedOut(timeout);
        let mut responses = tokio::time::timeout_at(
            deadline,
            self.subscribe_stream(response_topic, QoS::AtLeastOnce),
        )
        .await
        .map_err(timed_out)??;
        // 128 random bits: unique among this client's outstanding requests, and not
        // guessable by other clients that share the response topic.
        let correlation = Bytes::from(format!(
            "{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        ));
        let properties = PublishProperties::new()
            .response_topic(response_topic)
            .correlation_data(correlation.clone());
        let published = tokio::time::timeout_at(
            deadline,
            self.publish_with(
                topic,
                payload,
                QoS::AtLeastOnce,
                PublishOptions::new().properties(properties),
            ),
        )
        .await
        .map_err(timed_out)??;
        if let PublishOutcome::Rejected(_) = published {
            return Err(Error::NotConnected);
        }
        loop {
            match tokio::time::timeout_at(deadline, responses.recv()).await {
                Err(_) => return Err(Error::RequestTimedOut(timeout)),
                Ok(None) => return Err(Error::Disconnected),
                Ok(Some(m)) if m.properties.correlation_data.as_ref() == Some(&correlation) => {
                    return Ok(m)
                }
                Ok(Some(_)) => {}
            }
        }
    }

    // ---- subscribe ----

    fn add_subscription(
        &self,
        filter: &str,
        qos: QoS,
        handler: Handler,
        sink: Sink<()>,
    ) -> Result<u64, Error> {
        let inner = self.inner();
        let mut sh = inner.lock();
        check_filter(filter, sh.iot_rules)?;
        let Some(live) = sh.live.as_ref() else {
            return Err(Error::NotConnected);
        };
        let tx = live.tx.clone();
        if matches!(handler, Handler::Callback(_)) {
            // As iOS: a new callback for a topic replaces the previous one.
            sh.subscriptions
                .retain(|s| s.filter != filter || !matches!(s.handler, Handler::Callback(_)));
        }
        sh.next_id += 1;
        let id = sh.next_id;
        sh.subscriptions.push(Subscription {
            id,
            filter: filter.to_owned(),
            qos,
            handler,
        });
        tx.send(Command::Subscribe {
            filter: filter.to_owned(),
            qos,
            sink,
        })
        .map_err(|_| Error::NotConnected)?;
        Ok(id)
    }

    /// Subscribe; `callback` runs on the callback thread for every message whose topic
    /// matches `filter` (wildcards allowed). Sent now, or once the connection is up. A
    /// new callback for the same filter replaces the old one (as iOS). QoS 1 messages
    /// are acknowledged after the callback returns.
    ///
    /// ```no_run
    /// # fn f(iot: pubsub::DataManager) -> Result<(), pubsub::Error> {
    /// use pubsub::QoS;
    /// iot.subscribe("sensors/+/temp", QoS::AtLeastOnce, |m| {
    ///     println!("{}: {}", m.topic, m.payload_str());
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotConnected`] without a session; [`Error::InvalidTopic`]. A refusal by
    /// the broker is only heard with [`DataManager::subscribe_with_ack`] or
    /// [`DataManager::subscribe_stream`].
    pub fn subscribe(
        &self,
        filter: &str,
        qos: QoS,
        callback: impl FnMut(&Message) + Send + 'static,
    ) -> Result<(), Error> {
        self.add_subscription(
            filter,
            qos,
            Handler::Callback(Arc::new(Mutex::new(callback))),
            Sink::None,
        )
        .map(drop)
    }

    /// [`DataManager::subscribe`] with `ack` called (on the callback thread) with the
    /// SUBACK's verdict: `Ok(())`, or the refusal ([`Error::SubscribeRefused`]), a
    /// timeout, or [`Error::Disconnected`].
    ///
    /// # Errors
    /// As [`DataManager::subscribe`].
    pub fn subscribe_with_ack(
        &self,
        filter: &str,
        qos: QoS,
        callback: impl FnMut(&Message) + Send + 'static,
        ack: impl FnOnce(Result<(), Error>) + Send + 'static,
    ) -> Result<(), Error> {
        self.add_subscription(
            filter,
            qos,
            Handler::Callback(Arc::new(Mutex::new(callback))),
            Sink::Callback(Box::new(ack)),
        )
        .map(drop)
    }

    /// Subscribe and receive matching messages as a stream. Resolves once the broker has
    /// acknowledged the subscription (after the reconnect when offline). Dropping the
    /// stream removes the subscription (and unsubscribes at once when nothing else
    /// listens on the filter).
    ///
    /// A stream holds up to `MqttConfiguration::stream_buffer` unread messages; when it
    /// is full, delivery waits (back-pressure: later callbacks wait too, and QoS 1
    /// messages are acknowledged only once in the stream), so nothing is dropped.
    ///
    /// # Errors
    /// [`Error::NotConnected`]; [`Error::InvalidTopic`]; the broker's refusal
    /// ([`Error::SubscribeRefused`]); [`Error::Disconnected`].
    pub async fn subscribe_stream(&self, filter: &str, qos: QoS) -> Result<MessageStream, Error> {
        let (tx, rx) = mpsc::channel(self.inner().config.mqtt.stream_buffer.max(1));
        let (ack_tx, ack_rx) = oneshot::channel();
        let id = self.add_subscription(filter, qos, Handler::Stream(tx), Sink::Channel(ack_tx))?;
        let stream = MessageStream {
            rx,
            id,
            filter: filter.to_owned(),
            manager: Arc::downgrade(self.inner()),
        };
        if let Err(e) = ack_rx.await.unwrap_or(Err(Error::Disconnected)) {
            // Refused: forget the handler without an UNSUBSCRIBE for a filter never held.
            remove_subscription_id(self.inner(), id, &stream.filter, false);
            return Err(e);
        }
        Ok(stream)
    }

    /// Unsubscribe `filter` (exactly as subscribed) and drop its callbacks and streams,
    /// without waiting for the UNSUBACK.
    ///
    /// # Errors
    /// [`Error::NotConnected`] without a session (after `disconnect()` there is nothing
    /// to remove: callback subscriptions ended with it).
    pub fn unsubscribe_topic(&self, filter: &str) -> Result<(), Error> {
        self.remove_subscription(filter, Sink::None)
    }

    /// [`DataManager::unsubscribe_topic`] with `ack` called (on the callback thread) with
    /// the UNSUBACK's verdict.
    ///
    /// # Errors
    /// As [`DataManager::unsubscribe_topic`].
    pub fn unsubscribe_topic_with_ack(
        &self,
        filter: &str,
        ack: impl FnOnce(Result<(), Error>) + Send + 'static,
    ) -> Result<(), Error> {
        self.remove_subscription(filter, Sink::Callback(Box::new(ack)))
    }

    /// Unsubscribe and wait for the UNSUBACK.
    ///
    /// # Errors
    /// [`Error::NotConnected`]; [`Error::UnsubscribeRefused`] (MQTT 5);
    /// [`Error::AckTimeout`]; [`Error::Disconnected`].
    pub async fn unsubscribe(&self, filter: &str) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.remove_subscription(filter, Sink::Channel(tx))?;
        rx.await.unwrap_or(Err(Error::Disconnected))
    }

    fn remove_subscription(&self, filter: &str, sink: Sink<()>) -> Result<(), Error> {
        let mut sh = self.inner().lock();
        let Some(live) = sh.live.as_ref() else {
            return Err(Error::NotConnected);
        };
        let tx = live.tx.clone();
        sh.subscriptions.retain(|s| s.filter != filter);
        tx.send(Command::Unsubscribe {
            filter: filter.to_owned(),
            sink,
        })
        .map_err(|_| Error::NotConnected)
    }
}

/// A handle that does not keep the manager alive: SDK-internal callbacks stored in the
/// manager's own subscription table hold this, not a [`DataManager`], to avoid a cycle.
#[derive(Clone)]
pub(crate) struct WeakDataManager(Weak<Handle>);

impl WeakDataManager {
    pub(crate) fn upgrade(&self) -> Option<DataManager> {
        self.0.upgrade().map(|handle| DataManager { handle })
    }
}

impl DataManager {
    pub(crate) fn downgrade(&self) -> WeakDataManager {
        WeakDataManager(Arc::downgrade(&self.handle))
    }

    pub(crate) fn shadows(&self) -> &crate::shadow::Registry {
        &self.inner().shadows
    }

    /// The runtime the manager's tasks run on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner().runtime
    }

    /// The client id of the last `connect*` call; `None` before the first one.
    pub(crate) fn client_id(&self) -> Option<String> {
        self.inner().lock().client_id.clone()
    }

    /// Subscribe an SDK-internal callback (see `Handler::Internal`); the id is for
    /// [`DataManager::remove_internal`].
    pub(crate) fn subscribe_internal(
        &self,
        filter: &str,
        qos: QoS,
        callback: impl Fn(&str, &[u8]) + Send + Sync + 'static,
    ) -> Result<u64, Error> {
        self.add_subscription(
            filter,
            qos,
            Handler::Internal(Arc::new(callback)),
            Sink::None,
        )
    }

    /// Remove the internal subscription `id`, unsubscribing when nothing else listens on
    /// `filter`.
    pub(crate) fn remove_internal(&self, id: u64, filter: &str) {
        remove_subscription_id(self.inner(), id, filter, true);
    }
}

/// `topic` under the rules that apply ([`ClientRules`]).
fn check_topic(topic: &str, iot_rules: bool) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidTopic {
        topic: topic.to_owned(),
        reason,
    };
    if iot_rules {
        let limits = iot::Limits::default();
        iot::topic::validate_topic_name(topic, &limits)
            .and_then(|()| iot::topic::validate_client_publish(topic))
            .map_err(|e| invalid(Some(e)))
    } else if topic::is_valid_topic(topic) {
        Ok(())
    } else {
        Err(invalid(None))
    }
}

/// `filter` under the rules that apply ([`ClientRules`]).
fn check_filter(filter: &str, iot_rules: bool) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidTopic {
        topic: filter.to_owned(),
        reason,
    };
    if iot_rules {
        iot::topic::validate_topic_filter(filter, &iot::Limits::default())
            .map_err(|e| invalid(Some(e)))
    } else if topic::is_valid_filter(filter) {
        Ok(())
    } else {
        Err(invalid(None))
    }
}

fn check_client_id(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        Err(Error::EmptyClientId)
    } else {
        Ok(())
    }
}

pub(crate) fn authority(host: &str, port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// Parse a `ws://` / `wss://` URL into the target it dials.
pub(crate) fn websocket_target(url: &str, tls: Arc<ClientConfig>) -> Result<Target, Error> {
    let (secure, default_port) = if url.starts_with("wss://") {
        (true, 443)
    } else if url.starts_with("ws://") {
        (false, 80)
    } else {
        return Err(Error::InvalidEndpoint(
            "a WebSocket URL starts with ws:// or wss://".to_owned(),
        ));
    };
    let endpoint = crate::Endpoint::parse(url)?;
    Ok(Target {
        host: endpoint.host().to_owned(),
        port: endpoint.port().unwrap_or(default_port),
        tls: secure.then_some(tls),
        websocket: Some(WebSocketTarget {
            url: url.to_owned(),
            headers: Vec::new(),
        }),
    })
}

/// Messages from [`DataManager::subscribe_stream`]. Dropping it removes its subscription
/// (and sends UNSUBSCRIBE at once when nothing else listens on the filter).
#[derive(Debug)]
pub struct MessageStream {
    rx: mpsc::Receiver<Message>,
    id: u64,
    filter: String,
    manager: Weak<Inner>,
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        if let Some(inner) = self.manager.upgrade() {
            remove_subscription_id(&inner, self.id, &self.filter, true);
        }
    }
}

/// Remove the subscription `id` (a stream's, or an internal one) if the session still
/// has it and, with `unsubscribe`, tell the broker when it was the filter's last
/// listener. Done under the lock that orders commands, so a later subscribe to the same
/// filter is not undone.
fn remove_subscription_id(inner: &Inner, id: u64, filter: &str, unsubscribe: bool) {
    let mut sh = inner.lock();
    let before = sh.subscriptions.len();
    sh.subscriptions.retain(|s| s.id != id);
    if !unsubscribe
        || sh.subscriptions.len() == before
        || sh.subscriptions.iter().any(|s| s.filter == filter)
    {
        return;
    }
    if let Some(live) = &sh.live {
        let _ = live.tx.send(Command::Unsubscribe {
            filter: filter.to_owned(),
            sink: Sink::None,
        });
    }
}

impl MessageStream {
    /// The next message; `None` once the manager is disconnected or unsubscribed.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for MessageStream {
    type Item = Message;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_authority() {
        assert_eq!(authority("example.com", 443), "example.com");
        assert_eq!(authority("localhost", 8443), "localhost:8443");
        assert_eq!(authority("::1", 8443), "[::1]:8443");
    }

    #[test]
    fn presigned_urls_name_their_target() {
        let tls = tls::client_config(None, None, &[]).unwrap();
        let t =
            websocket_target("wss://h.example:8443/mqtt?X-Amz-Signature=x", tls.clone()).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.tls.is_some()),
            ("h.example", 8443, true)
        );
        let t = websocket_target("ws://127.0.0.1/mqtt", tls.clone()).unwrap();
        assert_eq!((t.port, t.tls.is_some()), (80, false));
        assert!(websocket_target("https://h/mqtt", tls).is_err());
    }
}
