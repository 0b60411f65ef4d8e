//! Errors returned by the SDK.

use std::time::Duration;

use crate::mqtt5::ReasonCode;

/// ` (<reason string>)` when the broker sent one.
pub(crate) fn detail(reason_string: &Option<String>) -> String {
    match reason_string {
        Some(s) if !s.is_empty() => format!(" ({s})"),
        _ => String::new(),
    }
}

/// Everything that can go wrong in a call to the SDK.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client id is empty.
    #[error("client id must not be empty")]
    EmptyClientId,
    /// `connect*` was called while a connection is established or being established.
    #[error("already connected or connecting")]
    AlreadyConnected,
    /// The operation needs a connection (`connect*` was not called, or `disconnect` was).
    #[error("not connected")]
    NotConnected,
    /// The connection was closed by `disconnect()` before the operation completed.
    #[error("disconnected before the operation completed")]
    Disconnected,
    /// A topic name or filter is not valid: MQTT's rules, plus IoT Core's (256 bytes,
    /// at most 7 slashes, reserved `$` topics) where they apply (see
    /// [`crate::config::ClientRules`]). The connection is untouched.
    #[error("invalid topic {topic:?}{}", .reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    InvalidTopic {
        /// The topic or filter.
        topic: String,
        /// Which IoT Core rule it breaks (`None`: not valid MQTT).
        #[source]
        reason: Option<iot::topic::TopicError>,
    },
    /// The payload is larger than allowed: IoT Core's 128 KiB where its rules apply, else
    /// what `MqttConfiguration::max_packet_size` leaves after the topic.
    #[error("payload of {len} bytes is larger than the {max} allowed")]
    PayloadTooLarge {
        /// The payload's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The PUBLISH is larger than the broker's Maximum Packet Size (MQTT 5 CONNACK): sending
    /// it would end the connection, so it is not sent.
    #[error("packet of {len} bytes is larger than the broker's maximum of {max}")]
    PacketTooLarge {
        /// The encoded PUBLISH's size.
        len: usize,
        /// The broker's limit.
        max: u32,
    },
    /// The operation was written on `attempts` connections and each ended before its
    /// acknowledgement (IoT Core closes an MQTT 3.1.1 connection on a publish or
    /// subscribe its policy denies): it is not sent again
    /// (`MqttConfiguration::max_attempts`).
    #[error("{what}: the connection closed {attempts} times before it was acknowledged; given up")]
    GaveUp {
        /// The operation.
        what: String,
        /// Connections it was written on.
        attempts: u32,
    },
    /// No acknowledgement within `MqttConfiguration::ack_timeout` of writing it.
    #[error("{what}: not acknowledged within {timeout:?}")]
    AckTimeout {
        /// The operation.
        what: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The broker refused a QoS 1 publish: MQTT 5 PUBACK with a reason code of 0x80 or
    /// above (e.g. `0x87 Not authorized` for a topic outside the policy).
    #[error("publish refused by the broker: {reason}{}", detail(.reason_string))]
    PublishRefused {
        /// The PUBACK's reason code.
        reason: ReasonCode,
        /// The PUBACK's Reason String, if the broker sent one.
        reason_string: Option<String>,
    },
    /// The broker refused a subscription (SUBACK failure code; on MQTT 3.1.1 always
    /// `0x80`, which carries no reason).
    #[error("subscription to {filter:?} refused by the broker: {reason}{}", detail(.reason_string))]
    SubscribeRefused {
        /// The filter.
        filter: String,
        /// The SUBACK's reason code.
        reason: ReasonCode,
        /// The SUBACK's Reason String, if the broker sent one.
        reason_string: Option<String>,
    },
    /// The broker refused an unsubscribe (MQTT 5 UNSUBACK reason code of 0x80 or above).
    #[error("unsubscribe from {filter:?} refused by the broker: {reason}{}", detail(.reason_string))]
    UnsubscribeRefused {
        /// The filter.
        filter: String,
        /// The UNSUBACK's reason code.
        reason: ReasonCode,
        /// The UNSUBACK's Reason String, if the broker sent one.
        reason_string: Option<String>,
    },
    /// The operation uses MQTT 5 features on a manager configured for MQTT 3.1.1.
    #[error("{0} needs MQTT 5 (MqttConfiguration::protocol(ProtocolVersion::V5))")]
    NeedsMqtt5(&'static str),
    /// [`crate::DataManager::request`] got no matching response in time.
    #[error("no response within {0:?}")]
    RequestTimedOut(Duration),
    /// The connection ended (or never came up) for the reason inside: from
    /// `DataManager::wait_for_connection` via `?`, and for operations still open when a
    /// session ends other than by `disconnect()` (auto-reconnect off).
    #[error(transparent)]
    Connection(#[from] crate::status::StatusEvent),
    /// A message was dropped from the offline queue to make room.
    #[error("dropped from the full offline queue")]
    DroppedFromQueue,
    /// No `DataManager` registered under this key.
    #[error("no DataManager registered under {0:?}")]
    NotRegistered(String),
    /// The endpoint could not be parsed.
    #[error("invalid endpoint {0:?}")]
    InvalidEndpoint(String),
    /// The certificate id is not in the identity store.
    #[error("certificate {0:?} not found in the identity store")]
    CertificateNotFound(String),
    /// A certificate id contains characters other than letters, digits, `-`, `_`, `.`.
    #[error("invalid certificate id {0:?}")]
    InvalidCertificateId(String),
    /// PEM or DER data could not be parsed (certificate, key, CA file).
    #[error("invalid PEM/DER data: {0}")]
    InvalidPem(String),
    /// The PKCS#12 data could not be read (wrong passphrase, no key or certificate).
    #[error("PKCS#12: {0}")]
    Pkcs12(String),
    /// The certificate and private key do not belong together or use an unsupported key type.
    #[error("key: {0}")]
    Key(String),
    /// TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// No AWS credentials could be obtained for SigV4 signing (the provider's error, e.g.
    /// Cognito's, is the source).
    #[error("credentials")]
    Credentials(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// SigV4 signing failed.
    #[error("signing: {0}")]
    Signing(String),
    /// File-system error (identity store, CA file).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
