//! Errors returned by the SDK.

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
    /// A topic name or filter is not valid MQTT.
    #[error("invalid topic {0:?}")]
    InvalidTopic(String),
    /// Acknowledgement callbacks exist only for QoS 1.
    #[error("an acknowledgement needs QoS 1")]
    AckNeedsQos1,
    /// The payload (with the topic) exceeds `MqttConfiguration::max_packet_size`.
    #[error("payload of {0} bytes is too large")]
    PayloadTooLarge(usize),
    /// The broker refused a subscription (SUBACK failure code).
    #[error("subscription to {0:?} refused by the broker")]
    SubscriptionRefused(String),
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
    /// No AWS credentials could be obtained for SigV4 signing.
    #[error("credentials: {0}")]
    Credentials(String),
    /// SigV4 signing failed.
    #[error("signing: {0}")]
    Signing(String),
    /// File-system error (identity store, CA file).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
