//! One client id's MQTT session: the pure state machine ([`state`]), the shared wrapper
//! that routers and the owning connection lock ([`shared`]), how a live connection is
//! woken or asked to close ([`live`]), and the memory all queues may hold ([`budget`]).
//!
//! Imports only `store` and the utilities `clock` and `message` from the crate.

pub(crate) mod budget;
pub(crate) mod live;
pub(crate) mod shared;
pub(crate) mod state;

pub(crate) use budget::MemoryBudget;
pub(crate) use live::{
    ApiKick, ConnectionId, ConnectionInfo, LiveConnection, LiveConnections, SHUTDOWN_REASON,
};
pub(crate) use shared::{Detached, Owner, Session, SessionKind, SessionView, StoreAs};
pub(crate) use state::{Delivery, Enqueued, Outgoing, SessionState};
