//! Listeners and the lifecycle of a running broker: bind, accept, hand each connection to
//! its transport (plain MQTT, [`tls`] with ALPN dispatch, [`websocket`]), serve the control
//! plane, expire sessions, watch the registry file, shut down.
//!
//! The top of the data path: imports `connection`, `control`, `auth`, `broker` and below.

pub(crate) mod http;
pub(crate) mod tls;
pub(crate) mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::auth::{Identity, Transport};
use crate::broker::Broker;
use crate::config::{Config, ConfigError};
use crate::connection;
use crate::control;
use crate::metrics::Listener;
use crate::pki::{self, TlsMaterialError};
use crate::registry::RegistryError;
use tls::TlsConfigs;

/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {name} {address}: {source}")]
    Bind {
        name: &'static str,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    TlsMaterial(#[from] TlsMaterialError),
    #[error("cannot write {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

/// A broker serving its listeners until [`RunningBroker::shutdown`].
pub struct RunningBroker {
    broker: Arc<Broker>,
    listeners: Vec<(&'static str, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    connections_done: mpsc::Receiver<()>,
    /// Reloads the registry when `pubsub iot` (another process) rewrites it; `None` when
    /// the platform gave no watcher (the periodic look in `housekeeping` still runs).
    _registry_watcher: Option<notify::RecommendedWatcher>,
}

impl RunningBroker {
    /// The bound address of a listener (`mqtt`, `mqtts`, …), with the OS-assigned port.
    pub fn address(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(listener, _)| *listener == name)
            .map(|(_, address)| *address)
    }

    /// Answers a control-plane request in process, as the API would but without a
    /// signature: the program that embeds the broker holds its data directory anyway.
    pub async fn control(&self, request: &control::ApiRequest<'_>) -> control::Answer {
        control::answer_in_process(&self.broker, request).await
    }

    /// Stops accepting, closes every connection and waits (briefly) for them to finish.
    pub async fn shutdown(mut self) {
        // Listeners and connections still opening watch `shutdown`; open connections are
        // told through their wake-up, which they wait on anyway.
        let _ = self.shutdown.send(true);
        self.broker.router.live.close_all();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        // Every connection task holds a sender; when the last one is dropped, recv ends.
        if tokio::time::timeout(SHUTDOWN_GRACE, self.connections_done.recv())
            .await
            .is_err()
        {
            warn!("shutdown: some connections did not close within {SHUTDOWN_GRACE:?}");
        }
        let broker = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || broker.auth.registry.flush()).await;
        self.broker.router.close_store();
        info!("broker stopped");
    }
}

impl Drop for RunningBroker {
    /// A broker dropped without [`RunningBroker::shutdown`] still stops: listeners and
    /// opening connections watch `shutdown`, open connections are kicked.
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.broker.router.live.close_all();
    }
}

/// Binds the configured listeners and starts serving.
pub async fn start(config: Config) -> Result<RunningBroker, BrokerError> {
    config.validate()?;
    let limits = &config.limits;
    if limits.publishes_per_sec() > 0 || limits.bytes_per_sec() > 0 {
        info!(
            publishes_per_sec = limits.publishes_per_sec(),
            bytes_per_sec = limits.bytes_per_sec(),
            "per-connection rate limits on (0 = unlimited)"
        );
    }
    let enabled = config.listeners.enabled()?;
    let broker = Broker::new(config)?;
    let wants_tls = enabled
        .iter()
        .any(|(name, _)| matches!(*name, "mqtts" | "tls"));
    let tls_configs = if wants_tls {
        let identity = pki::server_identity(&broker.config)?;
        if let Some(ca) = &identity.generated_ca {
            info!("TLS server certificate issued by the local CA {}: clients trust that file (e.g. mosquitto_pub --cafile)", ca.display());
        }
        Some(Arc::new(TlsConfigs::new(
            &identity,
            broker.auth.registry.clone(),
            broker.auth.policies.clone(),
        )?))
    } else {
        None
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (connection_alive, connections_done) = mpsc::channel::<()>(1);
    let mut listeners = Vec::new();
    let mut tasks = Vec::new();
    for (name, address) in enabled {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| BrokerError::Bind {
                name,
                address,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| BrokerError::Bind {
            name,
            address,
            source,
        })?;
        info!("listening {name} {bound}");
        listeners.push((name, bound));
        if name == "http" || name == "tls" {
            // Generated now (not at the first request) so `pubsub iot` and a console user
            // can read it.
            control::admin_credentials(&broker.config).map_err(|source| BrokerError::DataDir {
                path: broker
                    .config
                    .data_dir
                    .join("admin-credentials")
                    .display()
                    .to_string(),
                source,
            })?;
        }
        let kind = match name {
            "http" => ListenerKind::Http,
            "mqtts" => ListenerKind::Mqtts(tls_configs.clone().expect("made for TLS listeners")),
            "tls" => ListenerKind::Tls(tls_configs.clone().expect("made for TLS listeners")),
            "ws" => ListenerKind::WebSocket,
            _ => ListenerKind::Mqtt,
        };
        tasks.push(tokio::spawn(accept_loop(
            broker.clone(),
            listener,
            kind,
            shutdown_rx.clone(),
            connection_alive.clone(),
        )));
    }
    write_listeners_file(&broker.config.data_dir, &listeners)?;
    let _ = broker.started.listeners.set(listeners.clone());
    tasks.push(tokio::spawn(housekeeping(
        broker.clone(),
        shutdown_rx.clone(),
    )));
    let registry_watcher = watch_registry(&broker);
    Ok(RunningBroker {
        broker,
        listeners,
        shutdown,
        tasks,
        connections_done,
        _registry_watcher: registry_watcher,
    })
}

/// What a listener speaks.
#[derive(Clone)]
enum ListenerKind {
    Mqtt,
    Mqtts(Arc<TlsConfigs>),
    Tls(Arc<TlsConfigs>),
    /// Plain WebSocket (development): HTTP upgrade to MQTT over WebSocket, no TLS.
    WebSocket,
    /// The control plane and iot-data over HTTP.
    Http,
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: TcpListener,
    kind: ListenerKind,
    mut shutdown: watch::Receiver<bool>,
    connection_alive: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let broker = broker.clone();
                let shutdown = shutdown.clone();
                let alive = connection_alive.clone();
                // One task type per kind, so a task is only as large as its own kind's
                // future (a plain connection does not carry room for a TLS handshake).
                match &kind {
                    ListenerKind::Mqtt => spawn_connection(
                        connection::serve(
                            broker,
                            stream,
                            peer,
                            shutdown,
                            Listener::Mqtt,
                            Identity::Anonymous,
                        ),
                        alive,
                    ),
                    ListenerKind::Mqtts(configs) => spawn_connection(
                        tls::serve_mqtts(broker, configs.clone(), stream, peer, shutdown),
                        alive,
                    ),
                    ListenerKind::Tls(configs) => spawn_connection(
                        tls::serve_tls(broker, configs.clone(), stream, peer, shutdown),
                        alive,
                    ),
                    // `ws`: `/mqtt` upgrades (and signed control-plane requests); `http`: the
                    // control plane, the console and `/metrics`, and `/mqtt` upgrades (the
                    // console's MQTT connection, same origin as its page).
                    ListenerKind::WebSocket | ListenerKind::Http => {
                        let listener = match kind {
                            ListenerKind::Http => Listener::Http,
                            _ => Listener::Ws,
                        };
                        spawn_connection(
                            websocket::serve(
                                broker,
                                stream,
                                peer,
                                shutdown,
                                Transport::Plain,
                                listener,
                            ),
                            alive,
                        )
                    }
                }
            }
            Err(error) => {
                // Usually EMFILE: back off instead of spinning on a full descriptor table.
                warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs one connection; `alive` is held until it ends (shutdown waits for the last one).
/// The future is made by the caller and polled in place (`map`): an `async` block that
/// awaited it would hold it twice, once as captured and once as awaited.
fn spawn_connection(serving: impl Future<Output = ()> + Send + 'static, alive: mpsc::Sender<()>) {
    tokio::spawn(serving.map(move |()| drop(alive)));
}

/// Expires offline sessions, and looks at the registry file in case a change was missed
/// by the watcher (off the runtime's workers: it is file I/O).
async fn housekeeping(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let period = (broker.config.session_expiry / 4)
        .clamp(Duration::from_millis(250), Duration::from_secs(10));
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                broker.router.expire_sessions(Instant::now());
                // What arrived in the last commit group of a burst could not be evicted
                // before it was durable.
                broker.router.keep_within_budget();
                let broker = broker.clone();
                let _ = tokio::task::spawn_blocking(move || broker.auth.refresh_registry()).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Reloads the registry as soon as its file changes (on the watcher's own thread), so the
/// TLS certificate verifier can read it from memory inside the handshake.
fn watch_registry(broker: &Arc<Broker>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let file = broker.auth.registry.path();
    let dir = file.parent()?.to_path_buf();
    // Matched by name: the watcher may report the folder's path in another form (absolute,
    // canonical) than the configured `data_dir`. A rename onto it is how the registry is
    // written, by this process or another.
    let name = file.file_name()?.to_owned();
    let watched = broker.clone();
    let on_event = move |event: notify::Result<notify::Event>| {
        let touches_registry = |event: &notify::Event| {
            event
                .paths
                .iter()
                .any(|path| path.file_name() == Some(name.as_os_str()))
        };
        if event.is_ok_and(|event| touches_registry(&event)) {
            watched.auth.refresh_registry();
        }
    };
    let started = notify::recommended_watcher(on_event).and_then(|mut watcher| {
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    match started {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            warn!(%error, "cannot watch the registry file; changes by other processes are seen within the housekeeping period");
            None
        }
    }
}

/// `<data_dir>/listeners.json`: how tests and tools find OS-assigned ports.
fn write_listeners_file(
    data_dir: &Path,
    listeners: &[(&'static str, SocketAddr)],
) -> Result<(), BrokerError> {
    let path = data_dir.join("listeners.json");
    let error = |source| BrokerError::DataDir {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(error)?;
    let map: serde_json::Map<String, serde_json::Value> = listeners
        .iter()
        .map(|(name, address)| (name.to_string(), address.to_string().into()))
        .collect();
    // Written to a temporary name first so a reader never sees half a file.
    let temporary = data_dir.join("listeners.json.tmp");
    std::fs::write(&temporary, serde_json::Value::Object(map).to_string()).map_err(error)?;
    std::fs::rename(&temporary, &path).map_err(error)
}
