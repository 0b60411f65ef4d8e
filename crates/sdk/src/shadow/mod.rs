//! The Device Shadow service from the SDK: the iOS `AWSIoTDataManager` calls and an
//! async-native client, for classic and named shadows.
//!
//! Topics and documents come from the crate `shadow` (the broker uses the same one):
//! topics are built with [`ShadowId`] and errors decoded into [`Rejection`].
//!
//! **iOS style** ([`DataManager::register_with_shadow`]): register once (after
//! `connect*`), then [`DataManager::update_shadow`], [`DataManager::get_shadow`] and
//! [`DataManager::delete_shadow`] return `true` when the request was sent; the answers,
//! deltas, documents, foreign updates and timeouts arrive in the callback, with the
//! clientToken for correlation. One operation at a time per shadow, as iOS.
//!
//! ```no_run
//! use pubsub::shadow::{ShadowOperation, ShadowOperationStatus, ShadowOptions};
//! # fn f(iot: pubsub::DataManager) -> Result<(), &'static str> {
//! let registered = iot.register_with_shadow(
//!     "lamp",
//!     ShadowOptions::default().versioning(true),
//!     |name, operation, status, client_token, payload| {
//!         println!("{name} {operation:?} {status:?} {client_token:?} {}",
//!                  String::from_utf8_lossy(payload));
//!     },
//! );
//! if !registered {
//!     return Err("not registered (not connected, or a name the service refuses)");
//! }
//! if !iot.update_shadow("lamp", r#"{"state":{"desired":{"on":true}}}"#, None) {
//!     return Err("update not sent");
//! }
//! # Ok(()) }
//! ```
//!
//! **Async** ([`DataManager::shadow`] → [`ShadowClient`]): each call resolves with the
//! accepted document or the [`Rejection`]; any number of calls may be in flight.
//!
//! ```no_run
//! use pubsub::shadow::{ShadowError, ShadowId};
//! # async fn f(iot: pubsub::DataManager) -> Result<(), ShadowError> {
//! let lamp = iot.shadow(ShadowId::named("lamp", "config"));
//! lamp.update(serde_json::json!({"state": {"desired": {"on": true}}})).await?;
//! match lamp.get().await {
//!     Ok(document) => println!("{document}"),
//!     Err(ShadowError::Rejected(r)) if r.code == 404 => println!("no such shadow"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! iOS handles classic shadows only; here every call taking a shadow accepts a thing name
//! (`&str`/`String`, the classic shadow, as iOS) or a [`ShadowId`] (classic or named).

use std::time::Duration;

#[cfg(doc)]
use crate::DataManager;
use crate::{Error, QoS};

mod callback;
mod client;
pub(crate) mod state;

pub use ::shadow::document::Rejection;
pub use ::shadow::topic::{NameError, ShadowId};
pub(crate) use callback::Registry;
pub use client::{ShadowClient, ShadowDocument, ShadowStream};

/// A shadow operation, as iOS `AWSIoTShadowOperationType`.
///
/// ```
/// use pubsub::shadow::{ShadowOperation, ShadowOperationStatus};
/// fn describe(operation: ShadowOperation, status: ShadowOperationStatus) -> &'static str {
///     match (operation, status) {
///         (ShadowOperation::Update, ShadowOperationStatus::Accepted) => "my update is in",
///         (ShadowOperation::Update, ShadowOperationStatus::Delta) => "desired ≠ reported",
///         (_, ShadowOperationStatus::Timeout) => "no answer",
///         _ => "other",
///     }
/// }
/// assert_eq!(describe(ShadowOperation::Get, ShadowOperationStatus::Timeout), "no answer");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShadowOperation {
    /// `…/update`.
    Update,
    /// `…/get`.
    Get,
    /// `…/delete`.
    Delete,
}

impl From<::shadow::topic::Operation> for ShadowOperation {
    fn from(operation: ::shadow::topic::Operation) -> Self {
        use ::shadow::topic::Operation;
        match operation {
            Operation::Update => ShadowOperation::Update,
            Operation::Get => ShadowOperation::Get,
            Operation::Delete => ShadowOperation::Delete,
        }
    }
}

/// What the shadow callback is told, as iOS `AWSIoTShadowOperationStatusType`.
///
/// ```no_run
/// use pubsub::shadow::{ShadowOperationStatus, ShadowOptions};
/// # fn f(iot: pubsub::DataManager) {
/// let registered = iot.register_with_shadow("lamp", ShadowOptions::default(), |name, op, status, token, payload| {
///     match status {
///         ShadowOperationStatus::Rejected => eprintln!("{name}: {op:?} refused: {}",
///                                                      String::from_utf8_lossy(payload)),
///         ShadowOperationStatus::Timeout => eprintln!("{name}: {op:?} ({token:?}) timed out"),
///         _ => {}
///     }
/// });
/// assert!(registered);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShadowOperationStatus {
    /// The answer to our operation on `…/accepted`.
    Accepted,
    /// The answer to our operation on `…/rejected` (payload: the error document).
    Rejected,
    /// A message on `…/update/delta`.
    Delta,
    /// A message on `…/update/documents`.
    Documents,
    /// Someone else's update or delete was accepted (with
    /// [`ShadowOptions::foreign_update_notifications`]).
    ForeignUpdate,
    /// No answer within [`ShadowOptions::operation_timeout`] (payload: `timeout`).
    Timeout,
}

/// The options of [`DataManager::register_with_shadow`]: the keys of the iOS options
/// dictionary, with the defaults of the iOS code (`initWithName:…`), which for versioning
/// differ from its header documentation (the header says YES, the code uses NO).
///
/// ```
/// use std::time::Duration;
/// use pubsub::{QoS, shadow::ShadowOptions};
/// let options = ShadowOptions::default()
///     .versioning(true)
///     .foreign_update_notifications(true)
///     .qos(QoS::AtLeastOnce)
///     .operation_timeout(Duration::from_secs(5));
/// assert!(options.stale_discards);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ShadowOptions {
    /// `enableDebugging`: log the helper's subscriptions, requests and answers at `info`
    /// level (`debug` otherwise). Default off.
    pub debug: bool,
    /// `enableVersioning`: once a version is known, every request (update, get and
    /// delete) carries `"version": <last seen>`, so an update based on an old state is
    /// rejected (409). Default off.
    pub versioning: bool,
    /// `enableForeignStateUpdateNotifications`: an accepted update or delete carrying
    /// another clientToken is reported as [`ShadowOperationStatus::ForeignUpdate`].
    /// Default off.
    pub foreign_update_notifications: bool,
    /// `enableStaleDiscards`: drop accepted, delta and documents messages whose
    /// `version` is lower than the highest seen (deletes excepted). Default on.
    pub stale_discards: bool,
    /// `enableIgnoreDeltas`: do not subscribe to `…/update/delta`. Default off.
    pub ignore_deltas: bool,
    /// `enableIgnoreDocuments`: do not subscribe to `…/update/documents`. Default off.
    pub ignore_documents: bool,
    /// `QoS`: of the subscriptions and of the requests. Default QoS 0.
    pub qos: QoS,
    /// `shadowOperationTimeoutSeconds`: how long an operation waits for its answer
    /// before the callback gets [`ShadowOperationStatus::Timeout`]. Default 10 s.
    pub operation_timeout: Duration,
}

impl Default for ShadowOptions {
    fn default() -> Self {
        ShadowOptions {
            debug: false,
            versioning: false,
            foreign_update_notifications: false,
            stale_discards: true,
            ignore_deltas: false,
            ignore_documents: false,
            qos: QoS::AtMostOnce,
            operation_timeout: Duration::from_secs(10),
        }
    }
}

impl ShadowOptions {
    /// Sets [`ShadowOptions::debug`].
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }
    /// Sets [`ShadowOptions::versioning`].
    pub fn versioning(mut self, on: bool) -> Self {
        self.versioning = on;
        self
    }
    /// Sets [`ShadowOptions::foreign_update_notifications`].
    pub fn foreign_update_notifications(mut self, on: bool) -> Self {
        self.foreign_update_notifications = on;
        self
    }
    /// Sets [`ShadowOptions::stale_discards`].
    pub fn stale_discards(mut self, on: bool) -> Self {
        self.stale_discards = on;
        self
    }
    /// Sets [`ShadowOptions::ignore_deltas`].
    pub fn ignore_deltas(mut self, on: bool) -> Self {
        self.ignore_deltas = on;
        self
    }
    /// Sets [`ShadowOptions::ignore_documents`].
    pub fn ignore_documents(mut self, on: bool) -> Self {
        self.ignore_documents = on;
        self
    }
    /// Sets [`ShadowOptions::qos`].
    pub fn qos(mut self, qos: QoS) -> Self {
        self.qos = qos;
        self
    }
    /// Sets [`ShadowOptions::operation_timeout`].
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }
}

/// What identifies a shadow in the SDK's shadow calls: a thing name (`&str`, `String`:
/// its classic shadow, as iOS) or a [`ShadowId`] (classic or named).
///
/// ```
/// use pubsub::shadow::{IntoShadowId, ShadowId};
/// assert_eq!("lamp".into_shadow_id(), ShadowId::classic("lamp"));
/// assert_eq!(ShadowId::named("lamp", "cfg").into_shadow_id().shadow.as_deref(), Some("cfg"));
/// ```
pub trait IntoShadowId {
    /// The shadow meant.
    fn into_shadow_id(self) -> ShadowId;
}

impl IntoShadowId for &str {
    fn into_shadow_id(self) -> ShadowId {
        ShadowId::classic(self)
    }
}

impl IntoShadowId for String {
    fn into_shadow_id(self) -> ShadowId {
        ShadowId::classic(self)
    }
}

impl IntoShadowId for &String {
    fn into_shadow_id(self) -> ShadowId {
        ShadowId::classic(self.as_str())
    }
}

impl IntoShadowId for ShadowId {
    fn into_shadow_id(self) -> ShadowId {
        self
    }
}

impl IntoShadowId for &ShadowId {
    fn into_shadow_id(self) -> ShadowId {
        self.clone()
    }
}

/// The name a shadow callback is given: the thing's name for a classic shadow (as iOS),
/// the shadow's name for a named one (the label IoT Core's 404 text uses too).
pub(crate) fn label(id: &ShadowId) -> &str {
    id.shadow.as_deref().unwrap_or(&id.thing)
}

/// Why an async shadow call failed.
///
/// ```no_run
/// # async fn f(lamp: pubsub::shadow::ShadowClient) {
/// use pubsub::shadow::ShadowError;
/// match lamp.update(serde_json::json!({"state": {"desired": {"on": true}}, "version": 3})).await {
///     Err(ShadowError::Rejected(r)) if r.code == 409 => println!("someone else updated it"),
///     Err(ShadowError::Timeout(after)) => println!("no answer after {after:?}"),
///     Err(e) => println!("{e}"),
///     Ok(accepted) => println!("version {}", accepted["version"]),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShadowError {
    /// The service refused the request: its error document (code, message, timestamp,
    /// clientToken).
    #[error("shadow request rejected: {0}")]
    Rejected(Rejection),
    /// No answer within the client's timeout (subscriptions and publish included).
    #[error("no answer from the shadow service within {0:?}")]
    Timeout(Duration),
    /// The connection: not connected, disconnected, subscription refused, ...
    #[error(transparent)]
    Connection(#[from] Error),
    /// The thing or shadow name breaks the service's rules (it would make no valid topic).
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A request is not a JSON object, or a typed document does not (de)serialize.
    #[error("shadow document: {0}")]
    Document(String),
    /// An answer on `…/rejected` that is not an error document.
    #[error("malformed answer on {topic}: {detail}")]
    MalformedAnswer {
        /// Where it arrived.
        topic: String,
        /// What is wrong with it.
        detail: String,
    },
}
