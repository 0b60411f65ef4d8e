//! How the rest of the broker reaches a live connection: a wake-up (messages queued, the
//! session taken over) and a request to close it from outside (the control plane,
//! shutdown), plus the registry of every live connection that those requests walk.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use crate::metrics::Listener;

/// Identifies one connection for the life of the broker (never reused).
pub type ConnectionId = u64;

/// What a connection closed at shutdown logs (and how it knows to tell an MQTT 5 client
/// "server shutting down" rather than "administrative action").
pub const SHUTDOWN_REASON: &str = "the broker is shutting down";

/// What is shown of a connection (the console's Clients page, `GET /pubsub/clients`),
/// fixed at CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    pub listener: Listener,
    /// `3.1.1` or `5`, as `pubsub_connections` labels it.
    pub protocol: &'static str,
    pub peer: SocketAddr,
    pub connected_at_ms: u64,
}

/// One per connection, shared by the connection, its session and the live registry; a
/// flag and a waker rather than a `Notify`, whose waiting future the connection would
/// have to keep (docs/DESIGN-NOTES.md, "Memory per connection").
#[derive(Debug)]
pub struct LiveConnection {
    principal: Box<str>,
    /// Where it came from and when, for the console's list of clients.
    info: Option<ConnectionInfo>,
    /// The custom authorizer that admitted it, if one did.
    authorizer: Option<Box<str>>,
    reason: Mutex<Option<String>>,
    /// DeleteConnection's options when that is why it must close (`ApiKick` bits; one
    /// byte beside `woken`, as every connection carries it).
    api_kick: AtomicU8,
    woken: AtomicBool,
    waker: AtomicWaker,
}

impl LiveConnection {
    pub fn new(principal: &str, authorizer: Option<&str>) -> LiveConnection {
        LiveConnection {
            principal: principal.into(),
            info: None,
            authorizer: authorizer.map(Into::into),
            reason: Mutex::new(None),
            api_kick: AtomicU8::new(0),
            woken: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    pub fn with_info(mut self, info: ConnectionInfo) -> LiveConnection {
        self.info = Some(info);
        self
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    pub fn info(&self) -> Option<&ConnectionInfo> {
        self.info.as_ref()
    }

    /// The DeleteConnection options, when that is why it must close.
    pub fn api_kick(&self) -> Option<ApiKick> {
        ApiKick::from_bits(self.api_kick.load(Ordering::Acquire))
    }

    /// Asks the connection to close as DeleteConnection does.
    pub fn kick_by_api(&self, kick: ApiKick) {
        self.api_kick.store(kick.bits(), Ordering::Release);
        self.kick("DeleteConnection (API_INITIATED_DISCONNECT)");
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

    /// Asks the connection to close, saying why (it logs the reason).
    pub fn kick(&self, why: &str) {
        *self.reason.lock() = Some(why.to_owned());
        self.wake();
    }
}

/// The options of a DeleteConnection (`DELETE /connections/{clientId}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApiKick {
    /// End the session too (`cleanSession=true`).
    pub clean_session: bool,
    /// Do not publish the will (`preventWillMessage=true`).
    pub prevent_will: bool,
}

impl ApiKick {
    const SET: u8 = 1;
    const CLEAN_SESSION: u8 = 2;
    const PREVENT_WILL: u8 = 4;

    fn bits(self) -> u8 {
        let mut bits = ApiKick::SET;
        if self.clean_session {
            bits |= ApiKick::CLEAN_SESSION;
        }
        if self.prevent_will {
            bits |= ApiKick::PREVENT_WILL;
        }
        bits
    }

    fn from_bits(bits: u8) -> Option<ApiKick> {
        (bits & ApiKick::SET != 0).then_some(ApiKick {
            clean_session: bits & ApiKick::CLEAN_SESSION != 0,
            prevent_will: bits & ApiKick::PREVENT_WILL != 0,
        })
    }
}

/// Every live connection, so the control plane and shutdown can close them.
#[derive(Debug, Default)]
pub struct LiveConnections {
    live: Mutex<HashMap<ConnectionId, Arc<LiveConnection>>>,
    /// Set at shutdown: a connection registering afterwards is closed at once.
    closing: AtomicBool,
}

impl LiveConnections {
    pub fn register(&self, connection: ConnectionId, handle: Arc<LiveConnection>) {
        let mut live = self.live.lock();
        if self.closing.load(Ordering::Relaxed) {
            handle.kick(SHUTDOWN_REASON);
        }
        live.insert(connection, handle);
    }

    pub fn unregister(&self, connection: ConnectionId) {
        self.live.lock().remove(&connection);
    }

    /// Closes every live connection, and any that registers from now on (shutdown).
    pub fn close_all(&self) -> usize {
        // Set before the registry is walked: a connection registering concurrently is
        // either in the walk or sees the flag under the same lock (`register`).
        self.closing.store(true, Ordering::Relaxed);
        self.disconnect_where(|_| true, SHUTDOWN_REASON)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kicks_reach_only_the_named_principal_and_shutdown_reaches_late_comers() {
        let registry = LiveConnections::default();
        let (a, b) = (
            Arc::new(LiveConnection::new("alice", None)),
            Arc::new(LiveConnection::new("bob", Some("auth"))),
        );
        registry.register(1, a.clone());
        registry.register(2, b.clone());
        assert_eq!(registry.disconnect_principal("alice", "policy detached"), 1);
        assert_eq!(a.reason().as_deref(), Some("policy detached"));
        assert_eq!(b.reason(), None);
        assert_eq!(
            registry.disconnect_authorizer("auth", "authorizer deleted"),
            1
        );
        registry.unregister(1);
        registry.unregister(2);
        assert_eq!(registry.close_all(), 0);
        let late = Arc::new(LiveConnection::new("carol", None));
        registry.register(3, late.clone());
        assert_eq!(late.reason().as_deref(), Some(SHUTDOWN_REASON));
    }
}
