//! Configuration: where to connect ([`ServiceConfiguration`]) and how the MQTT session
//! behaves ([`MqttConfiguration`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::{
    error::CredentialsError, future, ProvideCredentials, SharedCredentialsProvider,
};
use aws_credential_types::Credentials;
use bytes::Bytes;

use crate::auth::MetricsMode;
use crate::backoff::BackoffConfig;
use crate::error::Error;
use crate::identity::IdentityStore;
use crate::mqtt5::ProtocolVersion;
use crate::QoS;

/// The broker's address: a host (IoT Core: `xxxx-ats.iot.<region>.amazonaws.com`), an
/// optional port, parsed from a bare host, `host:port` or a URL such as
/// `wss://xxxx-ats.iot.us-east-1.amazonaws.com/mqtt` (scheme and path are ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: Option<u16>,
}

impl Endpoint {
    /// Parse a host, `host:port`, `[v6]:port` or URL. A URL's scheme, user info, path,
    /// query and fragment are ignored: the connection method decides the transport.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] (holding `s`) when the host is empty or contains
    /// whitespace, the port is not a number from 0 to 65535, or an IPv6 address misses
    /// its `]` or has something other than `:port` after it.
    ///
    /// ```
    /// use pubsub::Endpoint;
    /// let e = Endpoint::parse("wss://xxxx-ats.iot.us-east-1.amazonaws.com/mqtt")?;
    /// assert_eq!((e.host(), e.port()), ("xxxx-ats.iot.us-east-1.amazonaws.com", None));
    /// let local: Endpoint = "localhost:8883".parse()?;
    /// assert_eq!(local.port(), Some(8883));
    /// assert_eq!(Endpoint::parse("[::1]:1883")?.host(), "::1");
    /// assert!(matches!(Endpoint::parse("host:99999"), Err(pubsub::Error::InvalidEndpoint(_))));
    /// # Ok::<(), pubsub::Error>(())
    /// ```
    pub fn parse(s: &str) -> Result<Endpoint, Error> {
        let bad = || Error::InvalidEndpoint(s.to_owned());
        let rest = match s.find("://") {
            Some(i) => &s[i + 3..],
            None => s,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit('@').next().unwrap_or("");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
                None if after.is_empty() => None,
                None => return Err(bad()),
            };
            (h.to_owned(), port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p.parse::<u16>().map_err(|_| bad())?)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Endpoint { host, port })
    }

    /// The host name (or IP address) — also the TLS server name (SNI).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port given in the endpoint string, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl FromStr for Endpoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Endpoint::parse(s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => write!(f, "{host}"),
        }
    }
}

/// Per-connection-method port overrides. `None` means: the endpoint's own port if it has
/// one, else the IoT Core default shown on each field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ports {
    /// `connect` (mutual TLS): default 8883.
    pub certificate: Option<u16>,
    /// `connect_using_alpn` (mutual TLS, ALPN `x-amzn-mqtt-ca`): default 443.
    pub alpn: Option<u16>,
    /// `connect_using_websocket` and `connect_using_websocket_custom_auth`: default 443.
    pub websocket: Option<u16>,
    /// `connect_using_custom_auth` (TLS, ALPN `mqtt`): default 443.
    pub custom_auth: Option<u16>,
    /// `connect_mqtt` over plain TCP: default 1883.
    pub mqtt_tcp: Option<u16>,
    /// `connect_mqtt` over TLS (server authentication only): default 8883.
    pub mqtt_tls: Option<u16>,
}

/// What to do with a publish while the connection is down (after `connect*`, before
/// `disconnect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OfflineQueuePolicy {
    /// How many messages the queue holds (default 100).
    pub capacity: usize,
    /// Queue QoS 0 messages too (default true, as iOS: a QoS 0 publish made right after
    /// `connect*`, before the CONNACK, is sent once connected rather than lost).
    pub queue_qos0: bool,
    /// What a publish into a full queue does (default [`WhenFull::RejectNew`]).
    pub when_full: WhenFull,
}

impl Default for OfflineQueuePolicy {
    fn default() -> Self {
        OfflineQueuePolicy {
            capacity: 100,
            queue_qos0: true,
            when_full: WhenFull::RejectNew,
        }
    }
}

/// Behaviour of a full offline queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenFull {
    /// The new message is rejected.
    RejectNew,
    /// The oldest queued message is dropped (its acknowledgement fails) to make room.
    DropOldest,
}

/// The last-will message the broker publishes when the connection ends without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastWill {
    /// Topic of the will message.
    pub topic: String,
    /// Payload of the will message.
    pub message: Bytes,
    /// QoS of the will message.
    pub qos: QoS,
    /// Retain flag of the will message.
    pub retain: bool,
}

impl LastWill {
    /// A will of `message` on `topic`.
    pub fn new(
        topic: impl Into<String>,
        message: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Self {
        LastWill {
            topic: topic.into(),
            message: message.into(),
            qos,
            retain,
        }
    }

    pub(crate) fn to_wire(&self) -> mqtt::LastWill {
        mqtt::LastWill {
            topic: self.topic.clone(),
            message: self.message.clone(),
            qos: match self.qos {
                QoS::AtMostOnce => mqtt::QoS::AtMostOnce,
                QoS::AtLeastOnce => mqtt::QoS::AtLeastOnce,
            },
            retain: self.retain,
            properties: mqtt::WillProperties::default(),
        }
    }
}

/// MQTT session behaviour; the defaults mirror the iOS SDK's `AWSIoTMQTTConfiguration`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MqttConfiguration {
    /// Keep-alive interval sent in CONNECT (default 300 s).
    pub keep_alive: Duration,
    /// Reconnect schedule (1 s doubling to 128 s, reset after 20 s connected, jitter 20 %).
    pub backoff: BackoffConfig,
    /// Reconnect automatically after a lost or failed connection (default true).
    pub auto_reconnect: bool,
    /// Re-subscribe every topic after a reconnect on which the broker did not keep the
    /// session (`session_present = false`) (default true).
    pub auto_resubscribe: bool,
    /// Last will, if any.
    pub last_will: Option<LastWill>,
    /// Offline queue policy.
    pub offline_queue: OfflineQueuePolicy,
    /// Largest packet sent or accepted (default 256 KiB; IoT Core payloads are ≤ 128 KiB).
    pub max_packet_size: usize,
    /// Time allowed for TCP + TLS + WebSocket + CONNACK (default 10 s).
    pub connect_timeout: Duration,
    /// Unread messages a `subscribe_stream` holds (default 1024). When a stream is full,
    /// delivery waits for the reader (back-pressure) instead of dropping messages.
    pub stream_buffer: usize,
    /// MQTT 3.1.1 (default, as the iOS SDK) or MQTT 5 (properties, reason codes,
    /// request/response; see [`crate::mqtt5`]).
    pub protocol: ProtocolVersion,
    /// MQTT 5: the Session Expiry Interval sent in every CONNECT (default 1 h, IoT Core's
    /// default; the broker may clamp it), so that an automatic reconnect can rejoin the
    /// session. With `clean_session = true` the user's `disconnect()` ends the session
    /// (DISCONNECT with Session Expiry Interval 0).
    pub session_expiry: Duration,
    /// How long a PINGREQ waits for its PINGRESP before the link counts as dead (default
    /// 10 s). A dead link is detected at most `keep_alive + ping_timeout` after the last
    /// packet was written.
    pub ping_timeout: Duration,
    /// How long a QoS 1 publish, subscribe or unsubscribe waits for its acknowledgement
    /// after each time it is written (default 30 s; CRT's `ack_timeout_sec`). `None`:
    /// wait as long as the connection lasts.
    pub ack_timeout: Option<Duration>,
    /// On how many connections an operation is written before it fails with
    /// [`crate::Error::GaveUp`] (default 3): an operation the broker answers by closing
    /// the connection is not re-sent forever.
    pub max_attempts: u32,
    /// Which topic and payload rules the SDK checks before sending (default
    /// [`ClientRules::Auto`]).
    pub rules: ClientRules,
}

/// The rules the SDK checks locally, so that a bad topic or an oversize payload is an
/// `Err` at the call instead of a connection the broker drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientRules {
    /// IoT Core's on its connection methods (certificate, ALPN, WebSocket, custom auth)
    /// and on `connect_mqtt` to an `*.amazonaws.com` endpoint; MQTT's otherwise.
    #[default]
    Auto,
    /// IoT Core's (and the PubSub broker's): topics of at most 256 bytes and 7 slashes,
    /// no publishing to reserved `$` topics other than IoT Core's services', payloads of
    /// at most 128 KiB.
    IotCore,
    /// MQTT's only: valid UTF-8 without wildcards in topic names, valid filters,
    /// `max_packet_size`.
    Mqtt,
}

impl MqttConfiguration {
    /// The same configuration with another protocol version:
    /// `MqttConfiguration::default().protocol(ProtocolVersion::V5)`.
    pub fn protocol(mut self, version: ProtocolVersion) -> Self {
        self.protocol = version;
        self
    }
}

impl Default for MqttConfiguration {
    fn default() -> Self {
        MqttConfiguration {
            keep_alive: Duration::from_secs(300),
            backoff: BackoffConfig::default(),
            auto_reconnect: true,
            auto_resubscribe: true,
            last_will: None,
            offline_queue: OfflineQueuePolicy::default(),
            max_packet_size: 256 * 1024,
            connect_timeout: Duration::from_secs(10),
            stream_buffer: 1024,
            protocol: ProtocolVersion::V311,
            session_expiry: Duration::from_secs(3600),
            ping_timeout: Duration::from_secs(10),
            ack_timeout: Some(Duration::from_secs(30)),
            max_attempts: 3,
            rules: ClientRules::Auto,
        }
    }
}

/// Where and how to connect: region, endpoint, credentials, ports, trust, identities.
#[derive(Clone)]
pub struct ServiceConfiguration {
    pub(crate) region: String,
    pub(crate) endpoint: Endpoint,
    pub(crate) credentials: SharedCredentialsProvider,
    pub(crate) ports: Ports,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) identity_store: Option<IdentityStore>,
    pub(crate) mqtt: MqttConfiguration,
    pub(crate) metrics: MetricsMode,
    pub(crate) runtime: Option<tokio::runtime::Handle>,
}

impl fmt::Debug for ServiceConfiguration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConfiguration")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("ports", &self.ports)
            .field("ca_file", &self.ca_file)
            .field("mqtt", &self.mqtt)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl ServiceConfiguration {
    /// A configuration for `endpoint` in `region`, with credentials from the environment
    /// ([`EnvironmentCredentialsProvider`]), IoT Core's default ports, the webpki roots as
    /// trust store, the default identity store and [`MqttConfiguration::default`].
    pub fn new(region: impl Into<String>, endpoint: Endpoint) -> Self {
        let host = endpoint.host().to_ascii_lowercase();
        if crate::auth::is_aws_host(&host) && host.contains(".iot.") && !host.contains("-ats.") {
            tracing::warn!(
                endpoint = %endpoint,
                "legacy (non-ATS) AWS IoT endpoint: its certificate is signed by a Symantec root not in the webpki roots; use the -ats endpoint"
            );
        }
        ServiceConfiguration {
            region: region.into(),
            endpoint,
            credentials: SharedCredentialsProvider::new(EnvironmentCredentialsProvider),
            ports: Ports::default(),
            ca_file: None,
            identity_store: None,
            mqtt: MqttConfiguration::default(),
            metrics: MetricsMode::default(),
            runtime: None,
        }
    }

    /// Use `provider` (anything implementing `ProvideCredentials`, e.g. a static
    /// [`Credentials`] or an `aws-config` chain) for SigV4 signing.
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.credentials = SharedCredentialsProvider::new(provider);
        self
    }

    /// Use static credentials for SigV4 signing.
    pub fn static_credentials(
        self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        self.credentials_provider(Credentials::new(
            access_key_id,
            secret_access_key,
            session_token,
            None,
            "pubsub-static",
        ))
    }

    /// Replace all port overrides.
    pub fn ports(mut self, ports: Ports) -> Self {
        self.ports = ports;
        self
    }

    /// Port for `connect` (mutual TLS; default 8883).
    pub fn certificate_port(mut self, port: u16) -> Self {
        self.ports.certificate = Some(port);
        self
    }

    /// Port for `connect_using_alpn` (default 443).
    pub fn alpn_port(mut self, port: u16) -> Self {
        self.ports.alpn = Some(port);
        self
    }

    /// Port for the WebSocket methods (default 443).
    pub fn websocket_port(mut self, port: u16) -> Self {
        self.ports.websocket = Some(port);
        self
    }

    /// Port for `connect_using_custom_auth` (default 443).
    pub fn custom_auth_port(mut self, port: u16) -> Self {
        self.ports.custom_auth = Some(port);
        self
    }

    /// Port for `connect_mqtt` (plain TCP default 1883; TLS default 8883).
    pub fn mqtt_port(mut self, port: u16) -> Self {
        self.ports.mqtt_tcp = Some(port);
        self.ports.mqtt_tls = Some(port);
        self
    }

    /// Run the manager's connection tasks on this tokio runtime instead of the SDK's own
    /// (a one-thread runtime the SDK starts on first use). If that runtime shuts down
    /// while connected, the manager reports `ConnectionError` ([`crate::Reason::TaskStopped`])
    /// and is free for a new `connect*`; it never stays "connected" with no task.
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Trust only the CA certificates in this PEM file (default: the webpki roots, which
    /// include Amazon's roots for `-ats` endpoints).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Where `connect` looks certificates up (default: [`IdentityStore::default_location`]).
    pub fn identity_store(mut self, store: IdentityStore) -> Self {
        self.identity_store = Some(store);
        self
    }

    /// MQTT session behaviour.
    pub fn mqtt_configuration(mut self, mqtt: MqttConfiguration) -> Self {
        self.mqtt = mqtt;
        self
    }

    /// When to append SDK metrics to the MQTT username (default: AWS endpoints only).
    pub fn metrics(mut self, mode: MetricsMode) -> Self {
        self.metrics = mode;
        self
    }

    /// The region used for SigV4.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The MQTT configuration.
    pub fn mqtt(&self) -> &MqttConfiguration {
        &self.mqtt
    }

    pub(crate) fn port(&self, over: Option<u16>, default: u16) -> u16 {
        over.or(self.endpoint.port).unwrap_or(default)
    }

    pub(crate) fn store(&self) -> Result<IdentityStore, Error> {
        match &self.identity_store {
            Some(s) => Ok(s.clone()),
            None => IdentityStore::open(IdentityStore::default_location()),
        }
    }

    pub(crate) fn credentials_handle(&self) -> Arc<SharedCredentialsProvider> {
        Arc::new(self.credentials.clone())
    }
}

/// Credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the optional
/// `AWS_SESSION_TOKEN`, read each time credentials are needed.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvironmentCredentialsProvider;

impl EnvironmentCredentialsProvider {
    fn load() -> aws_credential_types::provider::Result {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let id = get("AWS_ACCESS_KEY_ID")
            .ok_or_else(|| CredentialsError::not_loaded("AWS_ACCESS_KEY_ID is not set"))?;
        let secret = get("AWS_SECRET_ACCESS_KEY")
            .ok_or_else(|| CredentialsError::not_loaded("AWS_SECRET_ACCESS_KEY is not set"))?;
        Ok(Credentials::new(
            id,
            secret,
            get("AWS_SESSION_TOKEN"),
            None,
            "environment",
        ))
    }
}

impl ProvideCredentials for EnvironmentCredentialsProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Self::load())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        let e = Endpoint::parse("wss://abc-ats.iot.us-east-1.amazonaws.com/mqtt").unwrap();
        assert_eq!(
            (e.host(), e.port()),
            ("abc-ats.iot.us-east-1.amazonaws.com", None)
        );
        let e = Endpoint::parse("localhost:8443").unwrap();
        assert_eq!((e.host(), e.port()), ("localhost", Some(8443)));
        let e = Endpoint::parse("mqtts://[::1]:8883").unwrap();
        assert_eq!((e.host(), e.port()), ("::1", Some(8883)));
        assert!(Endpoint::parse("").is_err());
        assert!(Endpoint::parse("host:notaport").is_err());
    }

    #[test]
    fn port_precedence() {
        let c = ServiceConfiguration::new("us-east-1", Endpoint::parse("localhost").unwrap());
        assert_eq!(c.port(c.ports.certificate, 8883), 8883);
        let c = c.certificate_port(18883);
        assert_eq!(c.port(c.ports.certificate, 8883), 18883);
        assert_eq!(c.port(c.ports.alpn, 443), 443);
        let c = ServiceConfiguration::new("us-east-1", Endpoint::parse("localhost:9000").unwrap());
        assert_eq!(c.port(c.ports.alpn, 443), 9000);
    }
}
