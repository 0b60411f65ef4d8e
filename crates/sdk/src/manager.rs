//! [`DataManager`]: connect, subscribe, publish — the Rust AWSIoTDataManager.
//!
//! Each `connect*` call starts one session task. The task owns the MQTT client (rumqttc's
//! MQTT 3.1.1 or MQTT 5 client, behind the seam in client.rs), reconnects with back-off,
//! re-subscribes and re-sends, and dispatches incoming messages to the subscriptions whose
//! filter matches. The public methods only record intent in a shared table and hand
//! commands to that task, so they never block.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use rumqttc::{TlsConfiguration, Transport};
use rustls::ClientConfig;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::auth::{self, username_with_metrics};
use crate::backoff::Backoff;
use crate::client::{self, Client, Failure, PublishError, SessionEvent};
use crate::config::ServiceConfiguration;
use crate::error::Error;
use crate::inflight::{InFlight, Op, OutOfStep, Request, TrackedPublish, Written};
use crate::mqtt5::{ConnackProperties, ProtocolVersion, PublishOptions, PublishProperties};
use crate::topic;
use crate::{tls, QoS};

/// Connection status, as iOS `AWSIoTMQTTStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Nothing happened yet.
    Unknown,
    /// A connection attempt is under way (first connect or reconnect).
    Connecting,
    /// CONNACK accepted.
    Connected,
    /// `disconnect()` was called and the connection is closed.
    Disconnected,
    /// The broker refused the connection: CONNACK with a non-zero return code (or HTTP
    /// 401/403 on the WebSocket upgrade).
    ConnectionRefused,
    /// Network, TLS or WebSocket failure, or the connection was lost.
    ConnectionError,
    /// The broker broke the MQTT protocol (unexpected packet, malformed data).
    ProtocolError,
}

/// An incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published to.
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was delivered with.
    pub qos: QoS,
    /// Retain flag (a retained message delivered on subscribe).
    pub retain: bool,
    /// MQTT 5 properties (user properties, content type, response topic, correlation
    /// data, ...); empty on MQTT 3.1.1 connections.
    pub properties: PublishProperties,
}

/// What happened to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// QoS 0: written to the connection.
    Sent,
    /// QoS 1: the broker acknowledged it (PUBACK).
    Acknowledged,
    /// The connection is down: the message waits in the offline queue and is sent after
    /// the reconnect.
    Queued,
    /// The connection is down and the offline queue policy refused the message.
    Rejected(RejectReason),
}

/// Why the offline queue refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// QoS 0 messages are not queued while offline (see `OfflineQueuePolicy::queue_qos0`).
    Qos0WhileOffline,
    /// The offline queue is full.
    QueueFull,
}

type StatusCallback = Arc<dyn Fn(Status) + Send + Sync>;
type PayloadCallback = Arc<dyn Fn(&[u8]) + Send + Sync>;
type ExtendedCallback = Arc<dyn Fn(&str, &[u8]) + Send + Sync>;
type AckCallback = Arc<dyn Fn() + Send + Sync>;

enum AckSink<T> {
    Callback(AckCallback),
    Channel(oneshot::Sender<Result<T, Error>>),
}

impl<T> AckSink<T> {
    fn complete(self, r: Result<T, Error>) {
        match self {
            AckSink::Callback(cb) => {
                if r.is_ok() && catch_unwind(AssertUnwindSafe(|| cb())).is_err() {
                    tracing::error!("acknowledgement callback panicked");
                }
            }
            AckSink::Channel(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

fn complete<T>(sink: Option<AckSink<T>>, r: Result<T, Error>) {
    if let Some(s) = sink {
        s.complete(r)
    }
}

struct OutgoingPublish {
    seq: u64,
    topic: String,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    properties: PublishProperties,
    ack: Option<AckSink<PublishOutcome>>,
}

impl TrackedPublish for OutgoingPublish {
    fn qos(&self) -> QoS {
        self.qos
    }
    fn seq(&self) -> u64 {
        self.seq
    }
}

#[derive(Clone)]
enum Handler {
    Payload(PayloadCallback),
    Extended(ExtendedCallback),
    Stream(mpsc::Sender<Message>),
    /// A callback the SDK registers for itself (the shadow helper): a user's callback for
    /// the same filter neither replaces it nor is replaced by it.
    Internal(ExtendedCallback),
}

struct Subscription {
    id: u64,
    filter: String,
    qos: QoS,
    handler: Handler,
}

enum Command {
    Publish(OutgoingPublish),
    Subscribe {
        filter: String,
        qos: QoS,
        ack: Option<AckSink<()>>,
    },
    Unsubscribe {
        filter: String,
        ack: Option<AckSink<()>>,
    },
    Disconnect(Option<oneshot::Sender<()>>),
}

#[derive(Default)]
struct Shared {
    session: Option<mpsc::UnboundedSender<Command>>,
    connected: bool,
    subscriptions: Vec<Subscription>,
    queue: VecDeque<OutgoingPublish>,
    next_id: u64,
    /// The CONNACK of the current connection.
    connack: Option<ConnackProperties>,
    /// The client id of the last `connect*` call (the shadow helper's clientTokens).
    client_id: Option<String>,
}

struct Inner {
    config: ServiceConfiguration,
    shared: Mutex<Shared>,
    status: watch::Sender<Status>,
    /// Shadows registered with `register_with_shadow` (own lock, taken before `shared`).
    shadows: crate::shadow::Registry,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_status(&self, s: Status, cb: Option<&StatusCallback>) {
        let changed = self.status.send_if_modified(|cur| {
            if *cur != s {
                *cur = s;
                true
            } else {
                false
            }
        });
        if changed {
            tracing::debug!(status = ?s, "status");
            if let Some(cb) = cb {
                if catch_unwind(AssertUnwindSafe(|| cb(s))).is_err() {
                    tracing::error!("status callback panicked");
                }
            }
        }
    }
}

/// Options for [`DataManager::connect_using_custom_auth`] (direct custom authentication:
/// TLS with ALPN `mqtt`, credentials in the CONNECT username).
#[derive(Debug, Clone, Default)]
pub struct CustomAuth {
    /// The user part of the username (may be empty).
    pub username: Option<String>,
    /// The authorizer's name.
    pub authorizer_name: String,
    /// The name of the token parameter the authorizer reads.
    pub token_key_name: String,
    /// The token.
    pub token_value: String,
    /// base64 RSA-SHA256 signature of the token (omit for an authorizer with signing disabled).
    pub token_signature: Option<String>,
    /// The CONNECT password (passed to the authorizer base64-encoded).
    pub password: Option<String>,
}

/// Options for [`DataManager::connect_mqtt`]: plain MQTT to any broker.
#[derive(Debug, Clone, Default)]
pub struct MqttConnectOptions {
    /// Use TLS (server authentication only) instead of plain TCP.
    pub tls: bool,
    /// CONNECT username.
    pub username: Option<String>,
    /// CONNECT password.
    pub password: Option<String>,
}

#[derive(Clone)]
enum TransportSpec {
    Tcp,
    Tls(Arc<ClientConfig>),
    WssSigV4 {
        authority: String,
        tls: Arc<ClientConfig>,
        credentials: SharedCredentialsProvider,
    },
    WssCustom {
        url: String,
        tls: Arc<ClientConfig>,
        headers: Vec<(String, String)>,
    },
}

#[derive(Clone)]
struct ConnectParams {
    client_id: String,
    clean_session: bool,
    host: String,
    port: u16,
    transport: TransportSpec,
    username: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print usernames/passwords (custom-auth tokens live there).
        f.debug_struct("ConnectParams")
            .field("client_id", &self.client_id)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn registry() -> &'static Mutex<HashMap<String, DataManager>> {
    static R: OnceLock<Mutex<HashMap<String, DataManager>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

pub(crate) fn runtime() -> tokio::runtime::Handle {
    tokio::runtime::Handle::try_current().unwrap_or_else(|_| {
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
    })
}

/// The client: one MQTT connection (at a time) to one endpoint, plus its subscriptions.
///
/// Cheap to clone (a handle). Methods that take callbacks are non-blocking and work with
/// or without a tokio runtime (the SDK starts a small one when none is running).
#[derive(Clone)]
pub struct DataManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DataManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataManager")
            .field("endpoint", &self.inner.config.endpoint())
            .field("status", &*self.inner.status.borrow())
            .finish()
    }
}

impl DataManager {
    /// A manager for `config`, not registered anywhere.
    pub fn new(config: ServiceConfiguration) -> DataManager {
        let (status, _) = watch::channel(Status::Unknown);
        DataManager {
            inner: Arc::new(Inner {
                config,
                shared: Mutex::new(Shared::default()),
                status,
                shadows: crate::shadow::Registry::default(),
            }),
        }
    }

    /// Create a manager for `config` and register it under `key` (replacing any previous
    /// one), as iOS `registerIoTDataManagerWithConfiguration:forKey:`.
    pub fn register(config: ServiceConfiguration, key: &str) -> DataManager {
        let m = DataManager::new(config);
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), m.clone());
        m
    }

    /// The manager registered under `key`.
    pub fn get(key: &str) -> Result<DataManager, Error> {
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NotRegistered(key.to_owned()))
    }

    /// Remove the manager registered under `key` (it keeps working for existing handles).
    pub fn remove(key: &str) -> Option<DataManager> {
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
    }

    /// The configuration.
    pub fn configuration(&self) -> &ServiceConfiguration {
        &self.inner.config
    }

    /// What the broker said in the CONNACK of the current connection (MQTT 5: its
    /// properties, e.g. the Assigned Client Identifier or Receive Maximum); `None` while
    /// not connected.
    pub fn connack(&self) -> Option<ConnackProperties> {
        self.inner.lock().connack.clone()
    }

    /// The latest status; `changed().await` on it to follow changes.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// Wait until the current connection attempt ends: `Ok` once connected, `Err(status)`
    /// when it fails (ConnectionRefused, ConnectionError, ProtocolError) or is disconnected.
    /// With auto-reconnect on, later attempts continue after an `Err`.
    pub async fn wait_for_connection(&self) -> Result<(), Status> {
        let mut rx = self.status();
        loop {
            let s = *rx.borrow_and_update();
            match s {
                Status::Connected => return Ok(()),
                Status::Connecting => {}
                Status::Unknown if self.inner.lock().session.is_some() => {}
                other => return Err(other),
            }
            if rx.changed().await.is_err() {
                return Err(Status::Unknown);
            }
        }
    }

    fn tls_config(
        &self,
        identity: Option<&crate::identity::Identity>,
        alpn: &[&str],
    ) -> Result<Arc<ClientConfig>, Error> {
        tls::client_config(self.inner.config.ca_file.as_deref(), identity, alpn)
    }

    fn host(&self) -> String {
        self.inner.config.endpoint().host().to_owned()
    }

    fn metrics_username(&self, base: Option<&str>) -> Option<String> {
        username_with_metrics(base, &self.host(), self.inner.config.metrics)
    }

    /// Connect with mutual TLS on port 8883 (or the configured override), authenticating
    /// with the identity `certificate_id` from the identity store. Returns at once; the
    /// status callback reports progress. Refused (`Err`) for an empty client id or while
    /// connected/connecting.
    pub fn connect(
        &self,
        client_id: &str,
        clean_session: bool,
        certificate_id: &str,
        status_callback: impl Fn(Status) + Send + Sync + 'static,
    ) -> Result<(), Error> {
        self.connect_certificate(
            client_id,
            clean_session,
            certificate_id,
            false,
            Arc::new(status_callback),
        )
    }

    /// As [`DataManager::connect`], on port 443 with TLS ALPN `x-amzn-mqtt-ca`.
    pub fn connect_using_alpn(
        &self,
        client_id: &str,
        clean_session: bool,
        certificate_id: &str,
        status_callback: impl Fn(Status) + Send + Sync + 'static,
    ) -> Result<(), Error> {
        self.connect_certificate(
            client_id,
            clean_session,
            certificate_id,
            true,
            Arc::new(status_callback),
        )
    }

    fn connect_certificate(
        &self,
        client_id: &str,
        clean_session: bool,
        certificate_id: &str,
        alpn: bool,
        cb: StatusCallback,
    ) -> Result<(), Error> {
        check_client_id(client_id)?;
        let identity = self.inner.config.store()?.load(certificate_id)?;
        let cfg = &self.inner.config;
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
        self.start(
            ConnectParams {
                client_id: client_id.to_owned(),
                clean_session,
                host: self.host(),
                port,
                transport: TransportSpec::Tls(tls),
                username: self.metrics_username(None),
                password: None,
            },
            cb,
        )
    }

    /// Connect over WebSocket (`wss://<endpoint>/mqtt`, port 443 or the override), the URL
    /// presigned with SigV4 (service `iotdevicegateway`) from the configured credentials
    /// provider. The URL is signed afresh on every (re)connect attempt.
    pub fn connect_using_websocket(
        &self,
        client_id: &str,
        clean_session: bool,
        status_callback: impl Fn(Status) + Send + Sync + 'static,
    ) -> Result<(), Error> {
        check_client_id(client_id)?;
        let cfg = &self.inner.config;
        let port = cfg.port(cfg.ports.websocket, 443);
        let tls = self.tls_config(None, &["http/1.1"])?;
        self.start(
            ConnectParams {
                client_id: client_id.to_owned(),
                clean_session,
                host: self.host(),
                port,
                transport: TransportSpec::WssSigV4 {
                    authority: authority(&self.host(), port),
                    tls,
                    credentials: (*cfg.credentials_handle()).clone(),
                },
                username: self.metrics_username(None),
                password: None,
            },
            Arc::new(status_callback),
        )
    }

    /// Connect over WebSocket with a custom authorizer: the upgrade request carries
    /// `x-amz-customauthorizer-name`, `x-amz-customauthorizer-signature` (unless
    /// `token_signature` is empty) and `<token_key_name>: <token_value>`, as the iOS SDK.
    #[allow(clippy::too_many_arguments)]
    pub fn connect_using_websocket_custom_auth(
        &self,
        client_id: &str,
        clean_session: bool,
        authorizer_name: &str,
        token_key_name: &str,
        token_value: &str,
        token_signature: &str,
        status_callback: impl Fn(Status) + Send + Sync + 'static,
    ) -> Result<(), Error> {
        check_client_id(client_id)?;
        let cfg = &self.inner.config;
        let port = cfg.port(cfg.ports.websocket, 443);
        let tls = self.tls_config(None, &["http/1.1"])?;
        let sig = (!token_signature.is_empty()).then_some(token_signature);
        self.start(
            ConnectParams {
                client_id: client_id.to_owned(),
                clean_session,
                host: self.host(),
                port,
                transport: TransportSpec::WssCustom {
                    url: format!("wss://{}/mqtt", authority(&self.host(), port)),
                    tls,
                    headers: auth::custom_auth_headers(
                        authorizer_name,
                        token_key_name,
                        token_value,
                        sig,
                    ),
                },
                username: self.metrics_username(None),
                password: None,
            },
            Arc::new(status_callback),
        )
    }

    /// Connect with a custom authorizer directly over MQTT: TLS with ALPN `mqtt` on port
    /// 443 (or the override), the authorizer parameters in the CONNECT username
    /// (see [`auth::custom_auth_username`]).
    pub fn connect_using_custom_auth(
        &self,
        client_id: &str,
        clean_session: bool,
        custom: &CustomAuth,
        status_callback: impl Fn(Status) + Send + Sync + 'static,
    ) -> Result<(), Error> {
        check_client_id(client_id)?;
        let cfg = &self.inner.config;
        let port = cfg.port(cfg.ports.custom_auth, 443);
        let tls = self.tls_config(None, &["mqtt"])?;
        let user = auth::custom_auth_username(
            custom.username.as_deref(),
            &custom.authorizer_name,
            &custom.token_key_name,
            &custom.token_value,
            custom.token_signature.as_deref().filter(|s| !s.is_empty()),
        );
        self.start(
            ConnectParams {
                client_id: client_id.to_owned(),
                clean_session,
                host: self.host(),
                port,
                transport: TransportSpec::Tls(tls),
                username: self.metrics_username(Some(&user)),
                password: custom.password.clone(),
            },
            Arc::new(status_callback),
        )
    }

    /// Plain MQTT (3.1.1, or 5 as configured) to any broker: TCP (port 1883) or TLS with
    /// server authentication only (port 8883), optional username/password. Metrics are
    /// added to the username only for AWS endpoints or when configured.
    pub fn connect_mqtt(
        &self,
        client_id: &str,
        clean_session: bool,
        options: &MqttConnectOptions,
        status_callback: impl Fn(Status) + Send + Sync + 'static,
    ) -> Result<(), Error> {
        check_client_id(client_id)?;
        let cfg = &self.inner.config;
        let (transport, port) = if options.tls {
            (
                TransportSpec::Tls(self.tls_config(None, &[])?),
                cfg.port(cfg.ports.mqtt_tls, 8883),
            )
        } else {
            (TransportSpec::Tcp, cfg.port(cfg.ports.mqtt_tcp, 1883))
        };
        self.start(
            ConnectParams {
                client_id: client_id.to_owned(),
                clean_session,
                host: self.host(),
                port,
                transport,
                username: self.metrics_username(options.username.as_deref()),
                password: options.password.clone(),
            },
            Arc::new(status_callback),
        )
    }

    fn start(&self, params: ConnectParams, cb: StatusCallback) -> Result<(), Error> {
        let rx = {
            let mut sh = self.inner.lock();
            if sh.session.is_some() {
                return Err(Error::AlreadyConnected);
            }
            let (tx, rx) = mpsc::unbounded_channel();
            sh.session = Some(tx);
            sh.connected = false;
            sh.client_id = Some(params.client_id.clone());
            rx
        };
        tracing::info!(?params, "connecting");
        self.inner.set_status(Status::Connecting, Some(&cb));
        let session = Session::new(self.inner.clone(), cb);
        runtime().spawn(session.run(params, rx));
        Ok(())
    }

    /// Close the connection (DISCONNECT) and stop reconnecting. Pending acknowledgements
    /// fail with [`Error::Disconnected`]; the status becomes `Disconnected`. Returns false
    /// when there was no connection.
    pub fn disconnect(&self) -> bool {
        match &self.inner.lock().session {
            Some(tx) => tx.send(Command::Disconnect(None)).is_ok(),
            None => false,
        }
    }

    /// [`DataManager::disconnect`], resolving once the connection is closed.
    pub async fn disconnect_and_wait(&self) {
        let (tx, rx) = oneshot::channel();
        let sent = match &self.inner.lock().session {
            Some(s) => s.send(Command::Disconnect(Some(tx))).is_ok(),
            None => false,
        };
        if sent {
            let _ = rx.await;
        }
    }

    // ---- publish ----

    fn submit(&self, p: OutgoingPublish) -> Result<Option<PublishOutcome>, Error> {
        if !topic::is_valid_topic(&p.topic) {
            return Err(Error::InvalidTopic(p.topic));
        }
        let max = self.inner.config.mqtt.max_packet_size;
        if p.payload.len() + p.topic.len() + 8 > max {
            return Err(Error::PayloadTooLarge(p.payload.len()));
        }
        let policy = self.inner.config.mqtt.offline_queue;
        let mut sh = self.inner.lock();
        let Some(tx) = sh.session.clone() else {
            return Err(Error::NotConnected);
        };
        if sh.connected {
            tx.send(Command::Publish(p))
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
                    if let Some(old) = sh.queue.pop_front() {
                        tracing::warn!(topic = %old.topic, "offline queue full: dropping the oldest message");
                        complete(old.ack, Err(Error::DroppedFromQueue));
                    }
                    if policy.capacity == 0 {
                        return Ok(Some(PublishOutcome::Rejected(RejectReason::QueueFull)));
                    }
                }
            }
        }
        sh.queue.push_back(p);
        Ok(Some(PublishOutcome::Queued))
    }

    fn outgoing(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        ack: Option<AckSink<PublishOutcome>>,
    ) -> OutgoingPublish {
        let seq = {
            let mut sh = self.inner.lock();
            sh.next_id += 1;
            sh.next_id
        };
        OutgoingPublish {
            seq,
            topic: topic.to_owned(),
            payload,
            qos,
            retain: false,
            properties: PublishProperties::default(),
            ack,
        }
    }

    fn require_v5(&self, what: &'static str) -> Result<(), Error> {
        if self.inner.config.mqtt.protocol == ProtocolVersion::V5 {
            Ok(())
        } else {
            Err(Error::NeedsMqtt5(what))
        }
    }

    /// [`DataManager::publish`] with options: the retain flag and MQTT 5 properties (user
    /// properties, content type, payload format, response topic, correlation data,
    /// message expiry). A QoS 1 publish the broker refuses (MQTT 5 PUBACK 0x80 or above)
    /// fails with [`Error::PublishRefused`], which names the reason code. Properties on an
    /// MQTT 3.1.1 manager are an error ([`Error::NeedsMqtt5`]), not silently dropped.
    ///
    /// ```no_run
    /// # async fn f(iot: pubsub::DataManager) -> Result<(), pubsub::Error> {
    /// use pubsub::{PublishOptions, PublishProperties, QoS};
    /// let props = PublishProperties::new()
    ///     .user_property("source", "sensor-7")
    ///     .content_type("application/json");
    /// iot.publish_with("telemetry/7", r#"{"t":21.5}"#, QoS::AtLeastOnce,
    ///     PublishOptions::new().properties(props)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_with(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        options: PublishOptions,
    ) -> Result<PublishOutcome, Error> {
        if !options.properties.is_empty() {
            self.require_v5("publish properties")?;
        }
        let (tx, rx) = oneshot::channel();
        let mut p = self.outgoing(topic, payload.into(), qos, Some(AckSink::Channel(tx)));
        p.retain = options.retain;
        p.properties = options.properties;
        match self.submit(p)? {
            Some(outcome) => Ok(outcome),
            None => rx.await.unwrap_or(Err(Error::Disconnected)),
        }
    }

    /// MQTT 5 request/response: subscribe to `response_topic`, publish `payload` to `topic`
    /// (QoS 1) with that Response Topic and fresh Correlation Data, and resolve with the
    /// first message on `response_topic` that carries the same Correlation Data (the
    /// responder copies it, as the MQTT 5 specification asks). Other messages on the
    /// response topic are left to other listeners. [`Error::RequestTimedOut`] after
    /// `timeout` (counted from the call, subscription included); the subscription is
    /// removed when the call ends unless something else listens on the same filter.
    ///
    /// ```no_run
    /// # async fn f(iot: pubsub::DataManager) -> Result<(), pubsub::Error> {
    /// use std::time::Duration;
    /// let reply = iot
    ///     .request("svc/time", "now?", "svc/time/reply/client-1", Duration::from_secs(5))
    ///     .await?;
    /// println!("{}", String::from_utf8_lossy(&reply.payload));
    /// # Ok(()) }
    /// ```
    pub async fn request(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        response_topic: &str,
        timeout: Duration,
    ) -> Result<Message, Error> {
        self.require_v5("request/response")?;
        if !topic::is_valid_topic(response_topic) {
            return Err(Error::InvalidTopic(response_topic.to_owned()));
        }
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

    /// Publish and wait: QoS 0 resolves with `Sent` once written, QoS 1 with
    /// `Acknowledged` on PUBACK (also when the PUBACK comes after a reconnect). While the
    /// connection is down, resolves at once with `Queued` or `Rejected(..)` according to
    /// the offline queue policy. `Err` when not connected at all, for an invalid topic, or
    /// when `disconnect()` intervenes.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
    ) -> Result<PublishOutcome, Error> {
        self.publish_with_retain(topic, payload, qos, false).await
    }

    /// [`DataManager::publish`] with the retain flag.
    pub async fn publish_with_retain(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<PublishOutcome, Error> {
        let (tx, rx) = oneshot::channel();
        let mut p = self.outgoing(topic, payload.into(), qos, Some(AckSink::Channel(tx)));
        p.retain = retain;
        match self.submit(p)? {
            Some(outcome) => Ok(outcome),
            None => rx.await.unwrap_or(Err(Error::Disconnected)),
        }
    }

    /// Publish without waiting. Returns what happened at once: `Ok(None)` when handed to
    /// the connection, `Ok(Some(Queued | Rejected))` while offline.
    pub fn try_publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
    ) -> Result<Option<PublishOutcome>, Error> {
        let p = self.outgoing(topic, payload.into(), qos, None);
        self.submit(p)
    }

    /// Publish a string (iOS `publishString:onTopic:QoS:`). True when sent or queued.
    pub fn publish_string(&self, string: &str, topic: &str, qos: QoS) -> bool {
        self.publish_data(string.as_bytes(), topic, qos)
    }

    /// Publish bytes (iOS `publishData:onTopic:QoS:`). True when sent or queued.
    pub fn publish_data(&self, data: &[u8], topic: &str, qos: QoS) -> bool {
        accepted(self.try_publish(topic, Bytes::copy_from_slice(data), qos))
    }

    /// Publish a string with a callback on PUBACK. QoS 1 only: false for QoS 0.
    pub fn publish_string_with_ack(
        &self,
        string: &str,
        topic: &str,
        qos: QoS,
        ack_callback: impl Fn() + Send + Sync + 'static,
    ) -> bool {
        self.publish_data_with_ack(string.as_bytes(), topic, qos, ack_callback)
    }

    /// Publish bytes with a callback on PUBACK. QoS 1 only: false for QoS 0.
    pub fn publish_data_with_ack(
        &self,
        data: &[u8],
        topic: &str,
        qos: QoS,
        ack_callback: impl Fn() + Send + Sync + 'static,
    ) -> bool {
        if qos != QoS::AtLeastOnce {
            tracing::warn!("an acknowledgement callback needs QoS 1");
            return false;
        }
        let p = self.outgoing(
            topic,
            Bytes::copy_from_slice(data),
            qos,
            Some(AckSink::Callback(Arc::new(ack_callback))),
        );
        accepted(self.submit(p))
    }

    // ---- subscribe ----

    fn add_subscription(
        &self,
        filter: &str,
        qos: QoS,
        handler: Handler,
        ack: Option<AckSink<()>>,
    ) -> Result<u64, Error> {
        if !topic::is_valid_filter(filter) {
            return Err(Error::InvalidTopic(filter.to_owned()));
        }
        let mut sh = self.inner.lock();
        let Some(tx) = sh.session.clone() else {
            return Err(Error::NotConnected);
        };
        if matches!(handler, Handler::Payload(_) | Handler::Extended(_)) {
            // As iOS: a new callback for a topic replaces the previous one.
            sh.subscriptions.retain(|s| {
                s.filter != filter || matches!(s.handler, Handler::Stream(_) | Handler::Internal(_))
            });
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
            ack,
        })
        .map_err(|_| Error::NotConnected)?;
        Ok(id)
    }

    /// Subscribe; `callback(payload)` runs for every message whose topic matches `topic`
    /// (wildcards allowed). True when the subscription was accepted (sent now, or after
    /// the connection is up). A new callback for the same filter replaces the old one.
    pub fn subscribe(
        &self,
        topic: &str,
        qos: QoS,
        callback: impl Fn(&[u8]) + Send + Sync + 'static,
    ) -> bool {
        self.add_subscription(topic, qos, Handler::Payload(Arc::new(callback)), None)
            .is_ok()
    }

    /// [`DataManager::subscribe`] with `ack_callback` called on SUBACK.
    pub fn subscribe_with_ack(
        &self,
        topic: &str,
        qos: QoS,
        callback: impl Fn(&[u8]) + Send + Sync + 'static,
        ack_callback: impl Fn() + Send + Sync + 'static,
    ) -> bool {
        let ack = Some(AckSink::Callback(Arc::new(ack_callback) as AckCallback));
        self.add_subscription(topic, qos, Handler::Payload(Arc::new(callback)), ack)
            .is_ok()
    }

    /// Subscribe; `callback(topic, payload)` receives the concrete topic too.
    pub fn subscribe_extended(
        &self,
        topic: &str,
        qos: QoS,
        callback: impl Fn(&str, &[u8]) + Send + Sync + 'static,
    ) -> bool {
        self.add_subscription(topic, qos, Handler::Extended(Arc::new(callback)), None)
            .is_ok()
    }

    /// [`DataManager::subscribe_extended`] with `ack_callback` called on SUBACK.
    pub fn subscribe_extended_with_ack(
        &self,
        topic: &str,
        qos: QoS,
        callback: impl Fn(&str, &[u8]) + Send + Sync + 'static,
        ack_callback: impl Fn() + Send + Sync + 'static,
    ) -> bool {
        let ack = Some(AckSink::Callback(Arc::new(ack_callback) as AckCallback));
        self.add_subscription(topic, qos, Handler::Extended(Arc::new(callback)), ack)
            .is_ok()
    }

    /// Subscribe and receive matching messages as a stream. Resolves once the broker has
    /// acknowledged the subscription (after the reconnect when offline); `Err` when the
    /// broker refuses it or the connection is closed. Dropping the stream removes the
    /// subscription (and unsubscribes when nothing else listens on the filter).
    /// Messages beyond `MqttConfiguration::stream_buffer` unread ones are dropped.
    pub async fn subscribe_stream(&self, filter: &str, qos: QoS) -> Result<MessageStream, Error> {
        let (tx, rx) = mpsc::channel(self.inner.config.mqtt.stream_buffer.max(1));
        let (ack_tx, ack_rx) = oneshot::channel();
        let id = self.add_subscription(
            filter,
            qos,
            Handler::Stream(tx),
            Some(AckSink::Channel(ack_tx)),
        )?;
        let stream = MessageStream {
            rx,
            id,
            filter: filter.to_owned(),
            manager: Arc::downgrade(&self.inner),
        };
        if let Err(e) = ack_rx.await.unwrap_or(Err(Error::Disconnected)) {
            // Refused: forget the handler without an UNSUBSCRIBE for a filter never held.
            remove_stream(&self.inner, id, &stream.filter, false);
            return Err(e);
        }
        Ok(stream)
    }

    /// Unsubscribe `topic` (exactly as subscribed) and drop its callbacks and streams.
    pub fn unsubscribe_topic(&self, topic: &str) -> bool {
        self.remove_subscription(topic, None)
    }

    /// [`DataManager::unsubscribe_topic`] with `ack_callback` called on UNSUBACK.
    pub fn unsubscribe_topic_with_ack(
        &self,
        topic: &str,
        ack_callback: impl Fn() + Send + Sync + 'static,
    ) -> bool {
        self.remove_subscription(topic, Some(AckSink::Callback(Arc::new(ack_callback))))
    }

    /// Unsubscribe and wait for UNSUBACK.
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        if !self.remove_subscription(topic, Some(AckSink::Channel(tx))) {
            return Err(Error::NotConnected);
        }
        rx.await.unwrap_or(Err(Error::Disconnected))
    }

    fn remove_subscription(&self, filter: &str, ack: Option<AckSink<()>>) -> bool {
        let mut sh = self.inner.lock();
        let Some(tx) = sh.session.clone() else {
            return false;
        };
        sh.subscriptions.retain(|s| s.filter != filter);
        tx.send(Command::Unsubscribe {
            filter: filter.to_owned(),
            ack,
        })
        .is_ok()
    }
}

/// A handle that does not keep the manager alive: SDK-internal callbacks stored in the
/// manager's own subscription table hold this, not a [`DataManager`], to avoid a cycle.
#[derive(Clone)]
pub(crate) struct WeakDataManager(Weak<Inner>);

impl WeakDataManager {
    pub(crate) fn upgrade(&self) -> Option<DataManager> {
        self.0.upgrade().map(|inner| DataManager { inner })
    }
}

impl DataManager {
    pub(crate) fn downgrade(&self) -> WeakDataManager {
        WeakDataManager(Arc::downgrade(&self.inner))
    }

    pub(crate) fn shadows(&self) -> &crate::shadow::Registry {
        &self.inner.shadows
    }

    /// The client id of the last `connect*` call; `None` before the first one.
    pub(crate) fn client_id(&self) -> Option<String> {
        self.inner.lock().client_id.clone()
    }

    /// Subscribe an SDK-internal callback (see `Handler::Internal`); the id is for
    /// [`DataManager::remove_internal`].
    pub(crate) fn subscribe_internal(
        &self,
        filter: &str,
        qos: QoS,
        callback: impl Fn(&str, &[u8]) + Send + Sync + 'static,
    ) -> Result<u64, Error> {
        self.add_subscription(filter, qos, Handler::Internal(Arc::new(callback)), None)
    }

    /// Remove the internal subscription `id`, unsubscribing when nothing else listens on
    /// `filter`.
    pub(crate) fn remove_internal(&self, id: u64, filter: &str) {
        remove_stream(&self.inner, id, filter, true);
    }
}

fn accepted(r: Result<Option<PublishOutcome>, Error>) -> bool {
    matches!(r, Ok(None) | Ok(Some(PublishOutcome::Queued)))
}

fn check_client_id(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        Err(Error::EmptyClientId)
    } else {
        Ok(())
    }
}

fn authority(host: &str, port: u16) -> String {
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

/// Messages from [`DataManager::subscribe_stream`]. Dropping it removes its subscription
/// (and sends UNSUBSCRIBE when nothing else listens on the filter).
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
            remove_stream(&inner, self.id, &self.filter, true);
        }
    }
}

/// Remove the subscription `id` (a stream's, or an internal one) if the session still has it and, with
/// `unsubscribe`, tell the broker when it was the filter's last listener. Done under the
/// lock that orders commands, so a later subscribe to the same filter is not undone.
fn remove_stream(inner: &Inner, id: u64, filter: &str, unsubscribe: bool) {
    let mut sh = inner.lock();
    let before = sh.subscriptions.len();
    sh.subscriptions.retain(|s| s.id != id);
    if !unsubscribe
        || sh.subscriptions.len() == before
        || sh.subscriptions.iter().any(|s| s.filter == filter)
    {
        return;
    }
    if let Some(tx) = &sh.session {
        let _ = tx.send(Command::Unsubscribe {
            filter: filter.to_owned(),
            ack: None,
        });
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
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

// ---------------------------------------------------------------------------------------
// The session task.

/// A subscribe handed to the client, waiting for its SUBACK.
struct PendingSubscribe {
    filter: String,
    qos: QoS,
    ack: Option<AckSink<()>>,
}

/// An unsubscribe handed to the client, waiting for its UNSUBACK.
struct PendingUnsubscribe {
    filter: String,
    ack: Option<AckSink<()>>,
}

type PendingOp = Op<OutgoingPublish, PendingSubscribe, PendingUnsubscribe>;

struct Conn {
    client: Client,
    events: client::Events,
    poller: tokio::task::JoinHandle<()>,
    connected_at: Option<Instant>,
    /// Requests handed to `client`, matched to its events.
    inflight: InFlight<OutgoingPublish, PendingSubscribe, PendingUnsubscribe>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

enum ConnEnd {
    UserDisconnect(Option<oneshot::Sender<()>>),
    Failed {
        status: Status,
        lasted: Option<Duration>,
    },
}

struct Session {
    inner: Arc<Inner>,
    cb: StatusCallback,
    /// QoS 1 publishes handed to a connection that ended before their PUBACK.
    resend: Vec<OutgoingPublish>,
    /// Commands received while no connection was up.
    deferred: VecDeque<Command>,
    /// Filters the broker acknowledged (and holds while the session persists).
    confirmed: HashSet<String>,
}

/// Where to connect, by transport: the host (or WebSocket URL) and the rumqttc transport,
/// plus the request modifier adding custom-auth headers to the WebSocket upgrade. Shared
/// by both protocol versions, which take the same transports.
struct Target {
    address: String,
    transport: Option<Transport>,
    headers: Option<Arc<Vec<(String, String)>>>,
}

async fn target(params: &ConnectParams, config: &ServiceConfiguration) -> Result<Target, Error> {
    Ok(match &params.transport {
        TransportSpec::Tcp => Target {
            address: params.host.clone(),
            transport: None,
            headers: None,
        },
        TransportSpec::Tls(tls) => Target {
            address: params.host.clone(),
            transport: Some(Transport::Tls(TlsConfiguration::Rustls(tls.clone()))),
            headers: None,
        },
        TransportSpec::WssSigV4 {
            authority,
            tls,
            credentials,
        } => {
            let creds = credentials
                .provide_credentials()
                .await
                .map_err(|e| Error::Credentials(error_chain(&e)))?;
            let url = auth::presign_websocket_url(
                authority,
                &config.region,
                auth::SIGV4_SERVICE,
                &creds,
                std::time::SystemTime::now(),
                auth::PRESIGN_EXPIRES,
            )?;
            Target {
                address: url,
                transport: Some(Transport::Wss(TlsConfiguration::Rustls(tls.clone()))),
                headers: None,
            }
        }
        TransportSpec::WssCustom { url, tls, headers } => Target {
            address: url.clone(),
            transport: Some(Transport::Wss(TlsConfiguration::Rustls(tls.clone()))),
            headers: Some(Arc::new(headers.clone())),
        },
    })
}

/// The WebSocket upgrade request with the custom-auth headers added.
fn with_headers(
    headers: Arc<Vec<(String, String)>>,
) -> impl Fn(http::Request<()>) -> std::future::Ready<http::Request<()>> + Send + Sync + 'static {
    move |mut req: http::Request<()>| {
        for (k, v) in headers.iter() {
            match (
                http::HeaderName::try_from(k.as_str()),
                http::HeaderValue::try_from(v.as_str()),
            ) {
                (Ok(k), Ok(v)) => {
                    req.headers_mut().insert(k, v);
                }
                _ => tracing::warn!(header = %k, "custom-auth header not valid HTTP; left out"),
            }
        }
        std::future::ready(req)
    }
}

async fn build_options(
    params: &ConnectParams,
    config: &ServiceConfiguration,
) -> Result<client::Options, Error> {
    let mqtt = &config.mqtt;
    let t = target(params, config).await?;
    let keep_alive = if mqtt.keep_alive.is_zero() {
        Duration::ZERO
    } else {
        mqtt.keep_alive.max(Duration::from_secs(1))
    };
    let credentials = match (&params.username, &params.password) {
        (Some(u), p) => Some((u.clone(), p.clone().unwrap_or_default())),
        (None, Some(p)) => Some((String::new(), p.clone())),
        (None, None) => None,
    };
    Ok(match mqtt.protocol {
        ProtocolVersion::V311 => {
            let mut o = rumqttc::MqttOptions::new(&params.client_id, t.address, params.port);
            if let Some(tr) = t.transport {
                o.set_transport(tr);
            }
            if let Some(h) = t.headers {
                o.set_request_modifier(with_headers(h));
            }
            o.set_keep_alive(keep_alive);
            o.set_clean_session(params.clean_session);
            o.set_max_packet_size(mqtt.max_packet_size, mqtt.max_packet_size);
            o.set_inflight(100);
            if let Some((u, p)) = credentials {
                o.set_credentials(u, p);
            }
            if let Some(w) = &mqtt.last_will {
                o.set_last_will(rumqttc::LastWill::new(
                    &w.topic,
                    w.message.to_vec(),
                    client::v3_qos(w.qos),
                    w.retain,
                ));
            }
            client::Options::V3(Box::new(o))
        }
        ProtocolVersion::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(&params.client_id, t.address, params.port);
            if let Some(tr) = t.transport {
                o.set_transport(tr);
            }
            if let Some(h) = t.headers {
                o.set_request_modifier(with_headers(h));
            }
            // rumqttc v5 refuses (panics on) keep-alives under 5 s, "off" included.
            o.set_keep_alive(keep_alive.max(Duration::from_secs(5)));
            o.set_clean_start(params.clean_session);
            // 3.1.1's clean_session = false means "keep the session after the connection";
            // MQTT 5 says so with a non-zero Session Expiry Interval.
            if !params.clean_session {
                let secs = u32::try_from(mqtt.session_expiry.as_secs()).unwrap_or(u32::MAX);
                o.set_session_expiry_interval(Some(secs));
            }
            // Also the largest packet rumqttc accepts (its default is 10 KiB).
            o.set_max_packet_size(Some(
                u32::try_from(mqtt.max_packet_size).unwrap_or(u32::MAX),
            ));
            o.set_outgoing_inflight_upper_limit(100);
            if let Some((u, p)) = credentials {
                o.set_credentials(u, p);
            }
            if let Some(w) = &mqtt.last_will {
                o.set_last_will(client::v5_last_will(w));
            }
            client::Options::V5(Box::new(o))
        }
    })
}

impl Session {
    fn new(inner: Arc<Inner>, cb: StatusCallback) -> Self {
        Session {
            inner,
            cb,
            resend: Vec::new(),
            deferred: VecDeque::new(),
            confirmed: HashSet::new(),
        }
    }

    fn set_status(&self, s: Status) {
        self.inner.set_status(s, Some(&self.cb));
    }

    async fn run(mut self, params: ConnectParams, mut cmds: mpsc::UnboundedReceiver<Command>) {
        let mqtt = self.inner.config.mqtt.clone();
        let mut backoff = Backoff::new(mqtt.backoff);
        let done = 'outer: loop {
            self.set_status(Status::Connecting);
            match self.run_connection(&params, &mut cmds).await {
                ConnEnd::UserDisconnect(done) => break 'outer Some(done),
                ConnEnd::Failed { status, lasted } => {
                    self.set_status(status);
                    if let Some(l) = lasted {
                        backoff.connection_lost(l);
                    }
                    if !mqtt.auto_reconnect {
                        break 'outer None;
                    }
                    let delay = backoff.next_delay(fastrand::f64());
                    tracing::info!(?delay, ?status, "reconnecting after back-off");
                    let sleep = tokio::time::sleep(delay);
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            _ = &mut sleep => break,
                            cmd = cmds.recv() => match cmd {
                                None => break 'outer Some(None),
                                Some(Command::Disconnect(done)) => break 'outer Some(done),
                                Some(c) => self.deferred.push_back(c),
                            }
                        }
                    }
                }
            }
        };
        self.finish(done);
    }

    /// End of the session: fail what is pending, release the manager for a new connect.
    fn finish(mut self, user: Option<Option<oneshot::Sender<()>>>) {
        for p in self.resend.drain(..) {
            complete(p.ack, Err(Error::Disconnected));
        }
        for c in self.deferred.drain(..) {
            fail_command(c);
        }
        let queued: Vec<_> = {
            let mut sh = self.inner.lock();
            sh.connected = false;
            sh.queue.drain(..).collect()
        };
        for p in queued {
            complete(p.ack, Err(Error::Disconnected));
        }
        if user.is_some() {
            self.set_status(Status::Disconnected);
        }
        {
            let mut sh = self.inner.lock();
            sh.session = None;
            // Streams end with the session.
            sh.subscriptions
                .retain(|s| !matches!(s.handler, Handler::Stream(_)));
        }
        tracing::info!("session ended");
        if let Some(Some(done)) = user {
            let _ = done.send(());
        }
    }

    async fn run_connection(
        &mut self,
        params: &ConnectParams,
        cmds: &mut mpsc::UnboundedReceiver<Command>,
    ) -> ConnEnd {
        let opts = match build_options(params, &self.inner.config).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot prepare the connection");
                return ConnEnd::Failed {
                    status: Status::ConnectionError,
                    lasted: None,
                };
            }
        };
        let (client, events, poller) = client::start(
            opts,
            self.inner.config.mqtt.connect_timeout.as_secs().max(1),
        );
        let mut conn = Conn {
            client,
            events,
            poller,
            connected_at: None,
            inflight: InFlight::new(),
        };
        loop {
            tokio::select! {
                biased;
                ev = conn.events.recv() => match ev {
                    Some(Ok(SessionEvent::Connected(connack))) => {
                        self.on_connack(&mut conn, connack).await;
                    }
                    Some(Ok(ev)) => self.on_event(&mut conn, ev),
                    Some(Err(Failure { status, error, reason })) => {
                        let reason = reason.map(|r| r.to_string());
                        tracing::warn!(%error, ?status, reason, "connection ended");
                        let lasted = conn.connected_at.map(|t| t.elapsed());
                        self.connection_lost(&mut conn);
                        return ConnEnd::Failed { status, lasted };
                    }
                    None => {
                        let lasted = conn.connected_at.map(|t| t.elapsed());
                        self.connection_lost(&mut conn);
                        return ConnEnd::Failed { status: Status::ConnectionError, lasted };
                    }
                },
                cmd = cmds.recv() => match cmd {
                    None | Some(Command::Disconnect(_)) if conn.connected_at.is_none() => {
                        self.connection_lost(&mut conn);
                        return ConnEnd::UserDisconnect(match cmd { Some(Command::Disconnect(d)) => d, _ => None });
                    }
                    None => {
                        self.graceful_disconnect(&mut conn).await;
                        return ConnEnd::UserDisconnect(None);
                    }
                    Some(Command::Disconnect(done)) => {
                        self.graceful_disconnect(&mut conn).await;
                        return ConnEnd::UserDisconnect(done);
                    }
                    Some(c) => {
                        if conn.connected_at.is_some() {
                            self.execute(&mut conn, c).await;
                        } else {
                            self.deferred.push_back(c);
                        }
                    }
                }
            }
        }
    }

    async fn graceful_disconnect(&mut self, conn: &mut Conn) {
        if conn.client.disconnect().await.is_ok() {
            let deadline = tokio::time::sleep(Duration::from_secs(2));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    ev = conn.events.recv() => match ev {
                        Some(Ok(SessionEvent::OutgoingDisconnect)) | Some(Err(_)) | None => break,
                        Some(Ok(ev)) => self.on_event(conn, ev),
                    }
                }
            }
        }
        self.connection_lost(conn);
    }

    /// The connection is gone: QoS 1 publishes not acknowledged go to `resend`,
    /// subscribe/unsubscribe requests not acknowledged go back to `deferred`.
    fn connection_lost(&mut self, conn: &mut Conn) {
        {
            let mut sh = self.inner.lock();
            sh.connected = false;
            sh.connack = None;
        }
        let left = conn.inflight.drain_on_disconnect();
        self.resend.extend(left.resend);
        for p in left.failed {
            complete(p.ack, Err(Error::NotConnected));
        }
        for r in left.requests.into_iter().rev() {
            let c = match r {
                Request::Subscribe(PendingSubscribe { filter, qos, ack }) => {
                    Command::Subscribe { filter, qos, ack }
                }
                Request::Unsubscribe(PendingUnsubscribe { filter, ack }) => {
                    Command::Unsubscribe { filter, ack }
                }
            };
            self.deferred.push_front(c);
        }
        self.resend.sort_by_key(|p| p.seq);
    }

    async fn on_connack(&mut self, conn: &mut Conn, connack: ConnackProperties) {
        conn.connected_at = Some(Instant::now());
        let session_present = connack.session_present;
        let queued: Vec<OutgoingPublish> = {
            let mut sh = self.inner.lock();
            sh.connected = true;
            sh.connack = Some(connack);
            sh.queue.drain(..).collect()
        };
        self.set_status(Status::Connected);
        tracing::info!(session_present, "connected");
        if !session_present {
            self.confirmed.clear();
        }
        // Re-subscribe what the broker does not hold (everything when the session is new).
        if session_present || self.inner.config.mqtt.auto_resubscribe {
            let pending: HashSet<String> = self
                .deferred
                .iter()
                .filter_map(|c| match c {
                    Command::Subscribe { filter, .. } => Some(filter.clone()),
                    _ => None,
                })
                .collect();
            let mut wanted: Vec<(String, QoS)> = Vec::new();
            for s in self.inner.lock().subscriptions.iter() {
                if self.confirmed.contains(&s.filter) || pending.contains(&s.filter) {
                    continue;
                }
                match wanted.iter_mut().find(|(f, _)| *f == s.filter) {
                    Some((_, q)) => *q = (*q).max(s.qos),
                    None => wanted.push((s.filter.clone(), s.qos)),
                }
            }
            for (filter, qos) in wanted {
                tracing::debug!(%filter, "re-subscribing");
                self.execute(
                    conn,
                    Command::Subscribe {
                        filter,
                        qos,
                        ack: None,
                    },
                )
                .await;
            }
        }
        for p in std::mem::take(&mut self.resend) {
            self.send_publish(conn, p).await;
        }
        for c in std::mem::take(&mut self.deferred) {
            self.execute(conn, c).await;
        }
        for p in queued {
            self.send_publish(conn, p).await;
        }
    }

    async fn send_publish(&mut self, conn: &mut Conn, p: OutgoingPublish) {
        match conn
            .client
            .publish(&p.topic, p.qos, p.retain, p.payload.clone(), &p.properties)
            .await
        {
            Ok(()) => conn.inflight.push(PendingOp::Publish(p)),
            Err(PublishError::TooLarge) => {
                tracing::warn!(topic = %p.topic, "publish larger than the broker's Maximum Packet Size");
                let len = p.payload.len();
                complete(p.ack, Err(Error::PayloadTooLarge(len)));
            }
            Err(PublishError::Closed) => {
                if p.qos == QoS::AtLeastOnce {
                    self.resend.push(p);
                } else {
                    complete(p.ack, Err(Error::NotConnected));
                }
            }
        }
    }

    async fn execute(&mut self, conn: &mut Conn, c: Command) {
        match c {
            Command::Publish(p) => self.send_publish(conn, p).await,
            Command::Subscribe { filter, qos, ack } => {
                match conn.client.subscribe(&filter, qos).await {
                    Ok(()) => conn.inflight.push(PendingOp::Subscribe(PendingSubscribe {
                        filter,
                        qos,
                        ack,
                    })),
                    Err(_) => self
                        .deferred
                        .push_back(Command::Subscribe { filter, qos, ack }),
                }
            }
            Command::Unsubscribe { filter, ack } => {
                self.confirmed.remove(&filter);
                match conn.client.unsubscribe(&filter).await {
                    Ok(()) => conn
                        .inflight
                        .push(PendingOp::Unsubscribe(PendingUnsubscribe { filter, ack })),
                    Err(_) => self
                        .deferred
                        .push_back(Command::Unsubscribe { filter, ack }),
                }
            }
            Command::Disconnect(_) => unreachable!("handled by the caller"),
        }
    }

    fn on_event(&mut self, conn: &mut Conn, ev: SessionEvent) {
        match ev {
            SessionEvent::OutgoingPublish(pkid) => match conn.inflight.on_outgoing_publish(pkid) {
                Ok(Written::Sent(p)) => complete(p.ack, Ok(PublishOutcome::Sent)),
                Ok(Written::AwaitingAck | Written::Retransmitted) => {}
                Err(OutOfStep(other)) => tracing::error!(
                    pkid,
                    ok = other.is_some(),
                    "publish bookkeeping out of step"
                ),
            },
            SessionEvent::AwaitAck(pkid) => {
                // As before the extraction: a non-publish at the front is dropped silently.
                let _ = conn.inflight.on_await_ack(pkid);
            }
            SessionEvent::OutgoingSubscribe(pkid) => {
                if let Err(OutOfStep(_dropped)) = conn.inflight.on_outgoing_subscribe(pkid) {
                    tracing::error!(pkid, "subscribe bookkeeping out of step");
                }
            }
            SessionEvent::OutgoingUnsubscribe(pkid) => {
                if let Err(OutOfStep(_dropped)) = conn.inflight.on_outgoing_unsubscribe(pkid) {
                    tracing::error!(pkid, "unsubscribe bookkeeping out of step");
                }
            }
            SessionEvent::PubAck {
                pkid,
                reason,
                reason_string,
            } => {
                if let Some(p) = conn.inflight.on_puback(pkid) {
                    if reason.is_success() {
                        complete(p.ack, Ok(PublishOutcome::Acknowledged));
                    } else {
                        // MQTT 5: the broker kept the connection and said no; the publish
                        // is done (not re-sent) and the caller learns why.
                        tracing::warn!(topic = %p.topic, %reason, reason_string, "publish refused by the broker");
                        complete(
                            p.ack,
                            Err(Error::PublishRefused {
                                reason,
                                reason_string,
                            }),
                        );
                    }
                }
            }
            SessionEvent::SubAck {
                pkid,
                reasons,
                reason_string,
            } => {
                if let Some(PendingSubscribe {
                    filter, ack: sink, ..
                }) = conn.inflight.on_suback(pkid)
                {
                    match reasons.iter().find(|r| !r.is_success()) {
                        Some(&reason) => {
                            tracing::warn!(%filter, %reason, reason_string, "subscription refused by the broker");
                            let e = match self.inner.config.mqtt.protocol {
                                ProtocolVersion::V311 => Error::SubscriptionRefused(filter),
                                ProtocolVersion::V5 => Error::SubscribeRefused {
                                    filter,
                                    reason,
                                    reason_string,
                                },
                            };
                            complete(sink, Err(e));
                        }
                        None => {
                            self.confirmed.insert(filter);
                            complete(sink, Ok(()));
                        }
                    }
                }
            }
            SessionEvent::UnsubAck {
                pkid,
                reasons,
                reason_string,
            } => {
                if let Some(PendingUnsubscribe { filter, ack: sink }) =
                    conn.inflight.on_unsuback(pkid)
                {
                    self.confirmed.remove(&filter);
                    // 0x11 No subscription existed is a success: the filter is not held.
                    match reasons.iter().find(|r| !r.is_success()) {
                        Some(&reason) => complete(
                            sink,
                            Err(Error::UnsubscribeRefused {
                                filter,
                                reason,
                                reason_string,
                            }),
                        ),
                        None => complete(sink, Ok(())),
                    }
                }
            }
            SessionEvent::Message(m) => self.dispatch(conn, m),
            SessionEvent::Connected(_) | SessionEvent::OutgoingDisconnect | SessionEvent::Other => {
            }
        }
    }

    fn dispatch(&mut self, conn: &mut Conn, m: Message) {
        let topic = m.topic.as_str();
        let handlers: Vec<(u64, String, Handler)> = self
            .inner
            .lock()
            .subscriptions
            .iter()
            .filter(|s| topic::matches(&s.filter, topic))
            .map(|s| (s.id, s.filter.clone(), s.handler.clone()))
            .collect();
        if handlers.is_empty() {
            tracing::debug!(%topic, "message matches no subscription");
            return;
        }
        let mut closed = Vec::new();
        for (id, filter, h) in handlers {
            let r = catch_unwind(AssertUnwindSafe(|| match &h {
                Handler::Payload(cb) => cb(&m.payload),
                Handler::Extended(cb) | Handler::Internal(cb) => cb(topic, &m.payload),
                Handler::Stream(tx) => match tx.try_send(m.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(%topic, "subscription stream full: message dropped")
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => closed.push((id, filter.clone())),
                },
            }));
            if r.is_err() {
                tracing::error!(%topic, "message callback panicked");
            }
        }
        for (id, filter) in closed {
            let unsubscribe = {
                let mut sh = self.inner.lock();
                let before = sh.subscriptions.len();
                sh.subscriptions.retain(|s| s.id != id);
                // Not when the stream's own drop already removed it (and unsubscribed).
                sh.subscriptions.len() < before
                    && !sh.subscriptions.iter().any(|s| s.filter == filter)
            };
            if unsubscribe {
                // Best effort; the UNSUBACK needs no one.
                if conn.client.try_unsubscribe(&filter).is_ok() {
                    conn.inflight
                        .push(PendingOp::Unsubscribe(PendingUnsubscribe {
                            filter,
                            ack: None,
                        }));
                }
            }
        }
    }
}

fn fail_command(c: Command) {
    match c {
        Command::Publish(p) => complete(p.ack, Err(Error::Disconnected)),
        Command::Subscribe { ack, .. } | Command::Unsubscribe { ack, .. } => {
            complete(ack, Err(Error::Disconnected))
        }
        Command::Disconnect(Some(done)) => {
            let _ = done.send(());
        }
        Command::Disconnect(None) => {}
    }
}

/// An error with its sources, so a credentials failure says what the provider reported
/// (e.g. Cognito's error type and message), not only "an error occurred".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
}
