//! The broker's shared state: the data plane ([`Router`]) beside the identity plane
//! ([`IdentityPlane`]), which never see each other. Connections, listeners and the control
//! plane hold one `Arc<Broker>` and reach each plane through it.

use std::sync::Arc;

use crate::auth::IdentityPlane;
use crate::config::{Config, ConfigError};
use crate::router::Router;
use crate::store::{Recovered, Store};

pub struct Broker {
    pub config: Arc<Config>,
    pub router: Router,
    pub auth: IdentityPlane,
}

impl Broker {
    /// Opens the registry and (unless `in_memory`) the durable store, and recovers what it
    /// held. Fails when a configured policy, certificate or authorizer is unusable.
    pub fn new(config: Config) -> Result<Arc<Broker>, ConfigError> {
        let config = Arc::new(config);
        let auth = IdentityPlane::open(config.clone())?;
        let (store, recovered) = if config.in_memory {
            (None, Recovered::default())
        } else {
            let (store, recovered) = Store::open(
                &config.data_dir.join("store.redb"),
                config.limits.group_commit_max_delay,
                config.store_cache_bytes(),
            )
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
            (Some(store), recovered)
        };
        let router = Router::new(config.clone(), store, recovered);
        Ok(Arc::new(Broker {
            config,
            router,
            auth,
        }))
    }
}
