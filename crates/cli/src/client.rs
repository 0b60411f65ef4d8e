//! `pubsub pub` and `pubsub sub`: one-shot clients on the SDK (`pubsub` crate), with the
//! connection options of DESIGN.md §3. They never reconnect: a refused or lost connection
//! ends the command with exit status 1 and one line on stderr saying why.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{ArgAction, Args, ValueEnum};
use pubsub_sdk::{
    CustomAuth, DataManager, Endpoint, IdentityStore, Message, MqttConfiguration,
    MqttConnectOptions, PayloadFormat, Ports, ProtocolVersion, PublishOptions, PublishOutcome,
    PublishProperties, QoS, ServiceConfiguration, Status, StatusEvent,
};
use tokio::sync::{mpsc, watch};

/// How to reach the broker (exactly one mode; see `pubsub pub --help`).
#[derive(Args, Clone, Debug)]
pub struct ConnectionOptions {
    /// Plain MQTT over TCP (default port 1883).
    #[arg(long, help_heading = "Connection mode")]
    plain: bool,
    /// MQTT over TLS, server authentication only (default port 8883).
    #[arg(long, help_heading = "Connection mode")]
    tls: bool,
    /// Client certificate (PEM): mutual TLS (default port 8883).
    #[arg(
        long,
        requires = "key",
        value_name = "FILE",
        help_heading = "Connection mode"
    )]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(
        long,
        requires = "cert",
        value_name = "FILE",
        help_heading = "Connection mode"
    )]
    key: Option<PathBuf>,
    /// With --cert: TLS ALPN `x-amzn-mqtt-ca` (IoT Core's port 443).
    #[arg(long, requires = "cert", help_heading = "Connection mode")]
    alpn: bool,
    /// MQTT over WebSocket (wss://ENDPOINT/mqtt, default port 443): SigV4-signed from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, or custom auth with
    /// --authorizer.
    #[arg(long, help_heading = "Connection mode")]
    websocket: bool,
    /// SigV4 region (default: $AWS_REGION, else us-east-1).
    #[arg(long, value_name = "R", help_heading = "Connection mode")]
    region: Option<String>,
    /// Custom authorizer name: WebSocket headers with --websocket, else direct (TLS, ALPN
    /// `mqtt`, authorizer fields in the CONNECT username; default port 443).
    #[arg(long, value_name = "N", requires_all = ["token_key_name", "token"], help_heading = "Connection mode")]
    authorizer: Option<String>,
    /// Name of the token parameter the authorizer reads.
    #[arg(
        long,
        value_name = "K",
        requires = "authorizer",
        help_heading = "Connection mode"
    )]
    token_key_name: Option<String>,
    /// The token.
    #[arg(
        long,
        value_name = "V",
        requires = "authorizer",
        help_heading = "Connection mode"
    )]
    token: Option<String>,
    /// base64 RSA-SHA256 signature of the token (omit when the authorizer has signing disabled).
    #[arg(
        long,
        value_name = "S",
        requires = "authorizer",
        help_heading = "Connection mode"
    )]
    token_signature: Option<String>,

    /// Broker host (or host:port).
    #[arg(long, default_value = "localhost", value_name = "HOST")]
    endpoint: String,
    /// Port (default: the connection mode's IoT Core port).
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// Trust only the CA certificates in this PEM file (default: webpki roots).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// CONNECT username (plain, --tls, or the user part with direct custom auth).
    #[arg(long, value_name = "U")]
    username: Option<String>,
    /// CONNECT password.
    #[arg(long, value_name = "P")]
    password: Option<String>,
    /// Client id (default pubsub-<random>).
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// Clean session.
    #[arg(long, value_name = "true|false", default_value_t = true, action = ArgAction::Set)]
    clean_session: bool,
    /// Keep-alive interval in seconds (0 = off; default 300; MQTT 5: at least 5).
    #[arg(long, value_name = "SECS")]
    keepalive: Option<u64>,
    /// Speak MQTT 5 instead of MQTT 3.1.1 (message properties, reason codes).
    #[arg(long)]
    mqtt5: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum QosArg {
    #[value(name = "0")]
    Zero,
    #[value(name = "1")]
    One,
}

impl QosArg {
    fn qos(self) -> QoS {
        match self {
            QosArg::Zero => QoS::AtMostOnce,
            QosArg::One => QoS::AtLeastOnce,
        }
    }
}

/// `pubsub pub`: publish one message.
#[derive(Args, Debug)]
pub struct PubArgs {
    /// Topic to publish to.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// The message (UTF-8 text).
    #[arg(short = 'm', long = "message")]
    message: String,
    /// QoS.
    #[arg(short = 'q', long = "qos", value_enum, default_value = "0")]
    qos: QosArg,
    /// Retain flag.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
    /// MQTT 5 user property KEY=VALUE (repeatable; order kept).
    #[arg(long = "user-property", value_name = "K=V", requires = "mqtt5", value_parser = parse_user_property, help_heading = "MQTT 5 properties (with --mqtt5)")]
    user_properties: Vec<(String, String)>,
    /// MQTT 5 Content Type.
    #[arg(
        long,
        value_name = "TYPE",
        requires = "mqtt5",
        help_heading = "MQTT 5 properties (with --mqtt5)"
    )]
    content_type: Option<String>,
    /// MQTT 5 Response Topic.
    #[arg(
        long,
        value_name = "TOPIC",
        requires = "mqtt5",
        help_heading = "MQTT 5 properties (with --mqtt5)"
    )]
    response_topic: Option<String>,
    /// MQTT 5 Correlation Data (the UTF-8 bytes of the text given).
    #[arg(
        long,
        value_name = "DATA",
        requires = "mqtt5",
        help_heading = "MQTT 5 properties (with --mqtt5)"
    )]
    correlation_data: Option<String>,
    /// MQTT 5 Message Expiry Interval in seconds.
    #[arg(
        long = "message-expiry",
        value_name = "SECS",
        requires = "mqtt5",
        help_heading = "MQTT 5 properties (with --mqtt5)"
    )]
    message_expiry: Option<u32>,
    /// MQTT 5 Payload Format Indicator 1 (the message is UTF-8 text).
    #[arg(
        long,
        requires = "mqtt5",
        help_heading = "MQTT 5 properties (with --mqtt5)"
    )]
    payload_format_utf8: bool,
    #[command(flatten)]
    connection: ConnectionOptions,
}

fn parse_user_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

impl PubArgs {
    fn properties(&self) -> PublishProperties {
        let mut p = PublishProperties::new();
        for (k, v) in &self.user_properties {
            p = p.user_property(k, v);
        }
        if let Some(c) = &self.content_type {
            p = p.content_type(c);
        }
        if let Some(r) = &self.response_topic {
            p = p.response_topic(r);
        }
        if let Some(c) = &self.correlation_data {
            p = p.correlation_data(c.clone().into_bytes());
        }
        if let Some(e) = self.message_expiry {
            p = p.message_expiry_interval(e);
        }
        if self.payload_format_utf8 {
            p = p.payload_format(PayloadFormat::Utf8);
        }
        p
    }
}

/// `pubsub sub`: print messages.
#[derive(Args, Debug)]
pub struct SubArgs {
    /// Topic filter (repeatable).
    #[arg(short = 't', long = "topic", required = true)]
    topics: Vec<String>,
    /// QoS.
    #[arg(short = 'q', long = "qos", value_enum, default_value = "0")]
    qos: QosArg,
    /// Exit after this many messages.
    #[arg(short = 'C', long = "count")]
    count: Option<u64>,
    /// Print `topic payload` instead of the payload alone; with --mqtt5 followed by
    /// ` | ` and the message's properties when it has any.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    #[command(flatten)]
    connection: ConnectionOptions,
}

// ---------------------------------------------------------------------------------------
// Why a connection ended: the SDK's status event carries the reason (CONNACK code, HTTP
// status of the upgrade, TLS alert, I/O error, DISCONNECT reason).

fn describe(status: Status) -> &'static str {
    match status {
        Status::ConnectionRefused => "connection refused",
        Status::ConnectionError => "connection failed or lost",
        Status::ProtocolError => "protocol error",
        Status::Disconnected => "disconnected",
        _ => "connection ended",
    }
}

fn failure(event: &StatusEvent, context: &str) -> anyhow::Error {
    match &event.reason {
        Some(reason) => anyhow!("{}{context}: {}", describe(event.status), chain(reason)),
        None => anyhow!("{}{context}", describe(event.status)),
    }
}

/// An error and its sources, `: `-separated (a TLS alert inside an I/O error, ...).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let t = cause.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = cause.source();
    }
    text
}

// ---------------------------------------------------------------------------------------

enum Mode {
    Plain,
    Tls,
    Certificate { alpn: bool },
    SigV4,
    CustomWebSocket,
    CustomDirect,
}

impl ConnectionOptions {
    fn mode(&self) -> anyhow::Result<Mode> {
        let mut modes = Vec::new();
        if self.plain {
            modes.push(("--plain", Mode::Plain));
        }
        if self.tls {
            modes.push(("--tls", Mode::Tls));
        }
        if self.cert.is_some() {
            modes.push(("--cert", Mode::Certificate { alpn: self.alpn }));
        }
        match (self.websocket, self.authorizer.is_some()) {
            (true, true) => modes.push(("--websocket --authorizer", Mode::CustomWebSocket)),
            (true, false) => modes.push(("--websocket", Mode::SigV4)),
            (false, true) => modes.push(("--authorizer", Mode::CustomDirect)),
            (false, false) => {}
        }
        if modes.len() > 1 {
            let names: Vec<_> = modes.iter().map(|(n, _)| *n).collect();
            bail!("choose one connection mode, not {}", names.join(" and "));
        }
        match modes.pop() {
            Some((_, m)) => Ok(m),
            None => bail!(
                "choose a connection mode: --plain, --tls, --cert F --key F [--alpn], --websocket, or --authorizer N --token-key-name K --token V"
            ),
        }
    }

    /// Connect and wait for CONNACK. Returns the manager and the identity-store scratch
    /// directory (removed on drop) for certificate modes.
    async fn connect(&self) -> anyhow::Result<(DataManager, Option<ScratchDir>)> {
        let mode = self.mode()?;
        let endpoint = Endpoint::parse(&self.endpoint)
            .map_err(|e| anyhow!("--endpoint {:?}: {e}", self.endpoint))?;
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let mut mqtt = MqttConfiguration::default();
        mqtt.auto_reconnect = false;
        // One attempt: a command that fails says why at once.
        mqtt.max_attempts = 1;
        if self.mqtt5 {
            mqtt.protocol = ProtocolVersion::V5;
        }
        if let Some(k) = self.keepalive {
            mqtt.keep_alive = Duration::from_secs(k);
        }
        // The default credentials provider of ServiceConfiguration is the SDK's
        // EnvironmentCredentialsProvider (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
        // AWS_SESSION_TOKEN).
        let mut config = ServiceConfiguration::new(region, endpoint).mqtt_configuration(mqtt);
        if let Some(p) = self.port {
            let mut ports = Ports::default();
            ports.certificate = Some(p);
            ports.alpn = Some(p);
            ports.websocket = Some(p);
            ports.custom_auth = Some(p);
            ports.mqtt_tcp = Some(p);
            ports.mqtt_tls = Some(p);
            config = config.ports(ports);
        }
        if let Some(ca) = &self.ca {
            if !ca.is_file() {
                bail!("--ca {}: no such file", ca.display());
            }
            config = config.ca_file(ca);
        }
        if matches!(mode, Mode::SigV4) {
            let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
            if !set("AWS_ACCESS_KEY_ID") || !set("AWS_SECRET_ACCESS_KEY") {
                bail!("--websocket (SigV4) needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials) in the environment");
            }
        }
        let mut scratch = None;
        let mut certificate_id = String::new();
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            let dir = ScratchDir::new()?;
            let store = IdentityStore::open(&dir.0)?;
            let cert_pem =
                std::fs::read(cert).with_context(|| format!("--cert {}", cert.display()))?;
            let key_pem = std::fs::read(key).with_context(|| format!("--key {}", key.display()))?;
            certificate_id = store
                .import_pem(&cert_pem, &key_pem)
                .map_err(|e| anyhow!("--cert/--key: {e}"))?;
            config = config.identity_store(store);
            scratch = Some(dir);
        }
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| format!("pubsub-{:08x}", fastrand::u32(..)));
        let iot = DataManager::new(config);
        let clean = self.clean_session;
        let mut custom = CustomAuth::new(
            self.authorizer.clone().unwrap_or_default(),
            self.token_key_name.clone().unwrap_or_default(),
            self.token.clone().unwrap_or_default(),
        );
        custom.token_signature = self.token_signature.clone();
        custom.username = self.username.clone();
        custom.password = self.password.clone();
        let started = match mode {
            Mode::Plain | Mode::Tls => {
                let mut options = MqttConnectOptions::new().tls(matches!(mode, Mode::Tls));
                options.username = self.username.clone();
                options.password = self.password.clone();
                iot.connect_mqtt(&client_id, clean, &options, |_| {})
            }
            Mode::Certificate { alpn: false } => {
                iot.connect(&client_id, clean, &certificate_id, |_| {})
            }
            Mode::Certificate { alpn: true } => {
                iot.connect_using_alpn(&client_id, clean, &certificate_id, |_| {})
            }
            Mode::SigV4 => iot.connect_using_websocket(&client_id, clean, |_| {}),
            Mode::CustomWebSocket => {
                iot.connect_using_websocket_custom_auth(&client_id, clean, &custom, |_| {})
            }
            Mode::CustomDirect => iot.connect_using_custom_auth(&client_id, clean, &custom, |_| {}),
        };
        started.map_err(|e| anyhow!("cannot connect: {e}"))?;
        if let Err(event) = iot.wait_for_connection().await {
            return Err(failure(&event, &format!(" ({})", self.endpoint)));
        }
        Ok((iot, scratch))
    }
}

/// A private temporary directory for the identity store of --cert/--key.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> anyhow::Result<ScratchDir> {
        let p = std::env::temp_dir().join(format!(
            "pubsub-cli-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700));
        }
        Ok(ScratchDir(p))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Waits until the status leaves `Connected`; returns the event that ended it.
async fn lost(mut status: watch::Receiver<StatusEvent>) -> StatusEvent {
    loop {
        let s = status.borrow_and_update().clone();
        if s.status != Status::Connected {
            return s;
        }
        if status.changed().await.is_err() {
            return s;
        }
    }
}

/// Once the connection has ended (the SDK reports the end before it fails what was
/// pending), the event that ended it.
fn ended(iot: &DataManager) -> StatusEvent {
    iot.status().borrow().clone()
}

pub fn run_pub(args: PubArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let (iot, _scratch) = args.connection.connect().await?;
        let qos = args.qos.qos();
        let options = PublishOptions::new()
            .retain(args.retain)
            .properties(args.properties());
        let outcome = iot
            .publish_with(&args.topic, args.message.clone().into_bytes(), qos, options)
            .await;
        // MQTT 5 refusals of QoS 1 come back as PUBACK reason codes (publish failed: ...).
        let denied_hint = format!(
            " after PUBLISH to {:?} (the broker closes the connection when a publish is not allowed)",
            args.topic
        );
        match outcome {
            Ok(PublishOutcome::Acknowledged) | Ok(PublishOutcome::Sent) => {}
            Ok(other) => {
                let s = ended(&iot);
                bail!("{}{denied_hint}: publish {other:?}", describe(s.status))
            }
            Err(e) => {
                let s = ended(&iot);
                if s.status == Status::Connected {
                    bail!("publish failed: {}", chain(&e));
                }
                return Err(failure(&s, &denied_hint));
            }
        }
        if qos == QoS::AtMostOnce {
            // DESIGN.md asks for PINGREQ/PINGRESP here; the SDK exposes no ping, so the
            // barrier is another request the broker must answer in order: an UNSUBSCRIBE of
            // the topic just published to (no subscription exists, nothing is changed, and
            // IoT Core has no policy action for it). Its UNSUBACK proves the broker
            // processed the PUBLISH without closing the connection; a denied publish ends
            // the connection first and the unsubscribe fails.
            let barrier =
                tokio::time::timeout(Duration::from_secs(10), iot.unsubscribe(&args.topic)).await;
            let s = ended(&iot);
            match barrier {
                Ok(Ok(())) if s.status == Status::Connected => {}
                Ok(_) => return Err(failure(&s, &denied_hint)),
                Err(_) => bail!("no answer from the broker within 10 s{denied_hint}"),
            }
        }
        iot.disconnect_and_wait().await;
        Ok(())
    })
}

pub fn run_sub(args: SubArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let (iot, _scratch) = args.connection.connect().await?;
        let qos = args.qos.qos();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let verbose = args.verbose;
        for filter in &args.topics {
            let mut stream = match iot.subscribe_stream(filter, qos).await {
                Ok(s) => s,
                Err(e) => {
                    let s = ended(&iot);
                    if s.status == Status::Connected {
                        bail!("subscribe {filter:?}: {}", chain(&e));
                    }
                    return Err(failure(&s, &format!(" while subscribing to {filter:?}")));
                }
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(m) = stream.recv().await {
                    let line = if verbose {
                        verbose_line(&m)
                    } else {
                        String::from_utf8_lossy(&m.payload).into_owned()
                    };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let lost = lost(iot.status());
        tokio::pin!(lost);
        let mut received = 0u64;
        let stdout = std::io::stdout();
        if args.count == Some(0) {
            iot.disconnect_and_wait().await;
            return Ok(());
        }
        loop {
            tokio::select! {
                line = rx.recv() => {
                    let Some(line) = line else { break };
                    let mut out = stdout.lock();
                    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                        // stdout closed (e.g. `| head`): stop quietly.
                        break;
                    }
                    received += 1;
                    if args.count.is_some_and(|c| received >= c) {
                        break;
                    }
                }
                s = &mut lost => {
                    // Print what arrived before the end.
                    while let Ok(line) = rx.try_recv() {
                        println!("{line}");
                    }
                    return Err(failure(&s, ""));
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        iot.disconnect_and_wait().await;
        Ok(())
    })
}

/// `topic payload`, then ` | ` and the MQTT 5 properties when there are any, in a fixed
/// order: content-type, correlation-data, message-expiry, payload-format, response-topic,
/// then `user-property:KEY=VALUE` for each user property in the order received. Values
/// with spaces, quotes, `|` or control characters are quoted (Rust string syntax);
/// correlation data that is not printable UTF-8 is shown as `0x<hex>`.
fn verbose_line(m: &Message) -> String {
    let mut line = format!("{} {}", m.topic, String::from_utf8_lossy(&m.payload));
    let p = &m.properties;
    let mut fields: Vec<String> = Vec::new();
    if let Some(c) = &p.content_type {
        fields.push(format!("content-type={}", quoted(c)));
    }
    if let Some(c) = &p.correlation_data {
        let shown = match std::str::from_utf8(c) {
            Ok(t) if !t.is_empty() && !t.chars().any(char::is_control) => quoted(t),
            _ => format!(
                "0x{}",
                c.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        };
        fields.push(format!("correlation-data={shown}"));
    }
    if let Some(e) = p.message_expiry_interval {
        fields.push(format!("message-expiry={e}"));
    }
    if let Some(f) = p.payload_format {
        let f = match f {
            PayloadFormat::Utf8 => "utf8",
            PayloadFormat::Unspecified => "bytes",
        };
        fields.push(format!("payload-format={f}"));
    }
    if let Some(r) = &p.response_topic {
        fields.push(format!("response-topic={}", quoted(r)));
    }
    for (k, v) in &p.user_properties {
        fields.push(format!("user-property:{}={}", quoted(k), quoted(v)));
    }
    if !fields.is_empty() {
        line.push_str(" | ");
        line.push_str(&fields.join(" "));
    }
    line
}

fn quoted(s: &str) -> String {
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '|' | '='));
    if plain {
        s.to_owned()
    } else {
        format!("{s:?}")
    }
}
