//! Connection status and the reason for each change.
//!
//! [`Status`] is the iOS SDK's `AWSIoTMQTTStatus`; every change is reported as a
//! [`StatusEvent`], which adds why ([`Reason`]): the broker's CONNACK or DISCONNECT code,
//! the HTTP status of a refused WebSocket upgrade, the TLS alert, the I/O error, a
//! keep-alive timeout. `StatusEvent` is an [`std::error::Error`] whose source chain ends
//! at the underlying error, so `wait_for_connection().await?` works in `anyhow` code.

use std::sync::Arc;
use std::time::Duration;

use crate::error::detail;
use crate::mqtt5::ReasonCode;

/// Connection status, as iOS `AWSIoTMQTTStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Nothing happened yet.
    Unknown,
    /// A connection attempt is under way (first connect or reconnect).
    Connecting,
    /// CONNACK accepted.
    Connected,
    /// `disconnect()` was called (or the last handle dropped) and the connection is closed.
    Disconnected,
    /// The broker refused the connection: CONNACK with a failure code, or HTTP 401/403 on
    /// the WebSocket upgrade.
    ConnectionRefused,
    /// Network, TLS or WebSocket failure, keep-alive timeout, or the connection was lost.
    ConnectionError,
    /// The broker broke the MQTT protocol (unexpected packet, malformed data).
    ProtocolError,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Unknown => "not connected yet",
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::Disconnected => "disconnected",
            Status::ConnectionRefused => "connection refused",
            Status::ConnectionError => "connection failed or lost",
            Status::ProtocolError => "protocol error",
        })
    }
}

/// Why the status changed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// The user called `disconnect()`, or dropped the last handle.
    #[error("disconnected by the application")]
    UserDisconnect,
    /// The broker refused the CONNECT (CONNACK code; MQTT 3.1.1 return codes are shown as
    /// the MQTT 5 code of the same meaning, e.g. 5 as `0x87 Not authorized`).
    #[error("CONNACK {code}{}", detail(.reason_string))]
    Refused {
        /// The CONNACK's code.
        code: ReasonCode,
        /// MQTT 5 Reason String, if sent.
        reason_string: Option<String>,
    },
    /// The WebSocket upgrade was answered with this HTTP status (401/403: refused).
    #[error("WebSocket upgrade answered HTTP {status}{}", detail(.body))]
    HttpStatus {
        /// The status code.
        status: u16,
        /// The start of the response body, if any (IoT Core explains refusals there).
        body: Option<String>,
    },
    /// TLS failed (a received alert such as `BadCertificate`, an untrusted server
    /// certificate, ...).
    #[error("TLS: {0}")]
    Tls(#[source] Arc<rustls::Error>),
    /// A network error.
    #[error("I/O: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// The WebSocket layer failed (other than the upgrade's HTTP status).
    #[error("WebSocket: {0}")]
    WebSocket(#[source] Arc<tokio_tungstenite::tungstenite::Error>),
    /// TCP, TLS, WebSocket and CONNACK did not complete in time.
    #[error("no CONNACK within {0:?}")]
    ConnectTimeout(Duration),
    /// No PINGRESP within this time: the link is dead.
    #[error("keep-alive: no PINGRESP within {0:?}")]
    KeepAliveTimeout(Duration),
    /// The broker closed the connection without a DISCONNECT (IoT Core does this for a
    /// publish or subscribe its policy denies on MQTT 3.1.1).
    #[error("the broker closed the connection")]
    ClosedByBroker,
    /// The broker sent DISCONNECT (MQTT 5) with this reason.
    #[error("DISCONNECT from the broker: {code}{}", detail(.reason_string))]
    ServerDisconnect {
        /// The DISCONNECT's reason code.
        code: ReasonCode,
        /// Its Reason String, if sent.
        reason_string: Option<String>,
    },
    /// The broker sent something MQTT does not allow here.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The connection could not be prepared: credentials for signing, a token provider.
    #[error("preparing the connection: {0}")]
    Prepare(#[source] Arc<crate::Error>),
    /// The task driving the connection stopped (its tokio runtime shut down).
    #[error("the connection's task stopped (its runtime shut down)")]
    TaskStopped,
}

impl Reason {
    /// The status this reason ends a connection with.
    pub fn status(&self) -> Status {
        match self {
            Reason::UserDisconnect => Status::Disconnected,
            Reason::Refused { .. } => Status::ConnectionRefused,
            Reason::HttpStatus { status, .. } if *status == 401 || *status == 403 => {
                Status::ConnectionRefused
            }
            Reason::Protocol(_) => Status::ProtocolError,
            _ => Status::ConnectionError,
        }
    }
}

/// A status change and why it happened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StatusEvent {
    /// The new status.
    pub status: Status,
    /// Why: set for every end of a connection (`Disconnected`, `ConnectionRefused`,
    /// `ConnectionError`, `ProtocolError`); `None` for `Connecting` and `Connected`.
    pub reason: Option<Reason>,
    /// With `Connected`: whether the broker resumed a stored session (CONNACK
    /// session present). QoS 1 messages it queued during an outage follow.
    pub session_present: bool,
}

impl StatusEvent {
    pub(crate) fn new(status: Status) -> StatusEvent {
        StatusEvent {
            status,
            reason: None,
            session_present: false,
        }
    }

    pub(crate) fn ended(reason: Reason) -> StatusEvent {
        StatusEvent {
            status: reason.status(),
            reason: Some(reason),
            session_present: false,
        }
    }
}

impl PartialEq<Status> for StatusEvent {
    fn eq(&self, other: &Status) -> bool {
        self.status == *other
    }
}

impl std::fmt::Display for StatusEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            Some(r) => write!(f, "{}: {r}", self.status),
            None => write!(f, "{}", self.status),
        }
    }
}

impl std::error::Error for StatusEvent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.reason.as_ref().map(|r| r as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_to_the_ios_statuses() {
        let refused = Reason::Refused {
            code: ReasonCode::NOT_AUTHORIZED,
            reason_string: None,
        };
        assert_eq!(refused.status(), Status::ConnectionRefused);
        let http = |status| Reason::HttpStatus { status, body: None };
        assert_eq!(http(401).status(), Status::ConnectionRefused);
        assert_eq!(http(403).status(), Status::ConnectionRefused);
        assert_eq!(http(502).status(), Status::ConnectionError);
        assert_eq!(
            Reason::KeepAliveTimeout(Duration::from_secs(3)).status(),
            Status::ConnectionError,
            "a dead link is a connection error, not a protocol error"
        );
        assert_eq!(Reason::Protocol("x".into()).status(), Status::ProtocolError);
        assert_eq!(Reason::UserDisconnect.status(), Status::Disconnected);
    }

    #[test]
    fn the_event_displays_status_and_reason_and_chains_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = StatusEvent::ended(Reason::Io(Arc::new(io)));
        assert_eq!(e.to_string(), "connection failed or lost: I/O: refused");
        let source = std::error::Error::source(&e).expect("reason");
        assert!(std::error::Error::source(source).is_some(), "the io::Error");
        assert!(e == Status::ConnectionError);
    }
}
