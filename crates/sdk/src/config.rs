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
    /// Parse a host, `host:port`, `[v6]:port` or URL.
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
pub struct OfflineQueuePolicy {
    /// How many messages the queue holds (default 100).
    pub capacity: usize,
    /// Queue QoS 0 messages too (default false: a QoS 0 publish while offline is rejected).
    pub queue_qos0: bool,
    /// What a publish into a full queue does (default [`WhenFull::RejectNew`]).
    pub when_full: WhenFull,
}

impl Default for OfflineQueuePolicy {
    fn default() -> Self {
        OfflineQueuePolicy {
            capacity: 100,
            queue_qos0: false,
            when_full: WhenFull::RejectNew,
        }
    }
}

/// Behaviour of a full offline queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// The new message is rejected.
    RejectNew,
    /// The oldest queued message is dropped (its acknowledgement fails) to make room.
    DropOldest,
}

/// The last-will message the broker publishes when the connection ends without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// MQTT session behaviour; the defaults mirror the iOS SDK's `AWSIoTMQTTConfiguration`.
#[derive(Debug, Clone)]
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
    /// Messages buffered per `subscribe_stream` before new ones are dropped (default 1024).
    pub stream_buffer: usize,
    /// MQTT 3.1.1 (default, as the iOS SDK) or MQTT 5 (properties, reason codes,
    /// request/response; see [`crate::mqtt5`]).
    pub protocol: ProtocolVersion,
    /// MQTT 5 with `clean_session = false`: the Session Expiry Interval asked for in CONNECT
    /// (default 1 h, IoT Core's default; the broker may clamp it). MQTT 3.1.1 has no such
    /// field, and MQTT 5 with `clean_session = true` asks for 0 (the session ends with the
    /// connection), so both keep 3.1.1's meaning of the flag.
    pub session_expiry: Duration,
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
