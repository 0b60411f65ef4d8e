//! The broker's shared state: the data plane ([`Router`]) beside the identity plane
//! ([`IdentityPlane`]), which never see each other, and the Device Shadow service
//! ([`ShadowService`]) above the data plane. Connections, listeners and the control
//! plane hold one `Arc<Broker>` and reach each plane through it.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use tokio::sync::Semaphore;

use crate::auth::IdentityPlane;
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::router::Router;
use crate::shadow::ShadowService;
use crate::sign_ins::SignIns;
use crate::store::{Recovered, Store};

pub struct Broker {
    pub config: Arc<Config>,
    pub router: Arc<Router>,
    pub auth: IdentityPlane,
    /// Shares the router with its dispatcher, which publishes the answers.
    pub(crate) shadows: ShadowService,
    /// Turns for connections still opening (`connection::opening::gated`): half the
    /// runtime's worker threads (its default size), at least one, so a flood of
    /// handshakes and authorizer calls leaves the other half to open connections.
    pub(crate) openings: Arc<Semaphore>,
    /// What `/metrics` shows beyond what the planes count anyway (made with the identity
    /// plane's policy store, which counts denials into it).
    pub(crate) metrics: Arc<Metrics>,
    /// When it started and what it listens on (the console's Overview).
    pub(crate) started: Started,
    /// Signed-in console sessions (the console's cookies).
    pub(crate) sign_ins: SignIns,
}

/// When the broker started and the addresses its listeners bound.
#[derive(Debug)]
pub struct Started {
    pub at: SystemTime,
    /// Set once every listener is bound.
    pub listeners: OnceLock<Vec<(&'static str, SocketAddr)>>,
}

impl Broker {
    /// Opens the registry and (unless `in_memory`) the durable store, and recovers what it
    /// held. Fails when a configured policy, certificate or authorizer is unusable.
    pub fn new(config: Config) -> Result<Arc<Broker>, ConfigError> {
        let config = Arc::new(config);
        let auth = IdentityPlane::open(config.clone())?;
        let metrics = auth.policies.metrics.clone();
        let (store, mut recovered) = if config.in_memory {
            (None, Recovered::default())
        } else {
            let (store, recovered) = Store::open_measured(
                &config.data_dir.join("store.redb"),
                config.limits.group_commit_max_delay,
                config.store_cache_bytes(),
                metrics.clone(),
            )
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
            (Some(store), recovered)
        };
        let shadows = std::mem::take(&mut recovered.shadows);
        let router = Arc::new(Router::new(config.clone(), store.clone(), recovered));
        let shadows = ShadowService::new(&config, store, router.clone(), shadows);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let opening_permits = (workers / 2).max(1);
        Ok(Arc::new(Broker {
            config,
            router,
            auth,
            shadows,
            openings: Arc::new(Semaphore::new(opening_permits)),
            metrics,
            started: Started {
                at: SystemTime::now(),
                listeners: OnceLock::new(),
            },
            sign_ins: SignIns::default(),
        }))
    }
}
