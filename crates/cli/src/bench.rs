//! `pubsub bench`: a load generator for any MQTT 3.1.1 or MQTT 5 broker (`--mqtt5`).
//!
//! Clients are minimal on purpose (our codec over a tokio socket, no client library), so
//! the generator costs little next to the broker it measures. Every result carries the
//! generator's own CPU time (user + system, getrusage) and its share of one core over the
//! scenario: near 100% × cores means the generator, not the broker, is the bottleneck.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::{Args, Subcommand, ValueEnum};
use mqtt::{Connect, Packet, Protocol, PublishRef, QoS, Subscribe, SubscribeFilter};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

#[derive(Subcommand)]
pub enum Scenario {
    /// N publishers → 1 subscriber (on `<prefix>/#`).
    FanIn(LoadOptions),
    /// 1 publisher → N subscribers (`--subscribers`, default 8) on the same topics.
    FanOut(LoadOptions),
    /// N pairs (`--publishers`): each publisher to its own topic, read by its own subscriber.
    P2p(LoadOptions),
    /// One-way latency at a fixed total `--rate` (default 1000 msg/s) spread over the
    /// publishers; payloads carry their send time. Reports p50/p90/p99/p99.9/max.
    Latency(LoadOptions),
    /// QoS 1 into an offline persistent session (clean_session = false), then drained:
    /// measures what a durable store costs the publisher, and the drain rate.
    OfflineQueue(LoadOptions),
    /// Opens `--count` idle CONNECTed connections; with `--pid`, the broker's RSS growth
    /// per connection (VmRSS from /proc/PID/status).
    Connections(ConnectionOptions),
    /// CONNECT (+ CONNACK, DISCONNECT) per second on fresh TCP connections; with `--tls`,
    /// a full TLS handshake each time (no session resumption).
    ConnectRate(ConnectRateOptions),
    /// Not a load: draws a grouped bar chart (SVG) from a JSON description, as
    /// `bench/compare` writes: {"title", "y_label", "log_scale", "groups": [{"label",
    /// "bars": {"series": value}}]}.
    Chart(ChartOptions),
}

#[derive(Args, Clone)]
pub struct ChartOptions {
    /// The chart's JSON description.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the SVG.
    #[arg(long)]
    output: PathBuf,
}

#[derive(Args, Clone)]
pub struct LoadOptions {
    /// Broker to load: mqtt://host:port.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    url: String,
    /// Publishing clients (p2p: pairs; fan-out always uses one).
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Subscribing clients for fan-out (default 8) and latency (default 1).
    #[arg(long)]
    subscribers: Option<usize>,
    #[arg(long, value_enum, default_value_t = QosArg::Zero)]
    qos: QosArg,
    /// Payload bytes per message (latency: at least 8, the send timestamp).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Total publish rate in msg/s, spread evenly over the publishers (default: as fast as
    /// possible; latency: 1000).
    #[arg(long)]
    rate: Option<f64>,
    /// Distinct topics each publisher cycles through (`<prefix>/<client id>/<n>`): many
    /// topics keep per-topic caches in the broker (e.g. policy decisions) from hiding costs.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// First topic level.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Fan-out: filters each subscriber subscribes to, all matching every published topic
    /// (`<prefix>/#`, `<prefix>/+/+`, `<prefix>/+/#`, `<prefix>/+/+/#`; 1 to 4):
    /// overlapping subscriptions, which the broker must deliver once per subscriber.
    #[arg(long, default_value_t = 1)]
    overlapping_filters: usize,
    /// Unacknowledged QoS 1 messages per publisher.
    #[arg(long, default_value_t = 100)]
    window: u64,
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Speak MQTT 5 instead of 3.1.1 (persistent sessions ask for a Session Expiry
    /// Interval of one hour).
    #[arg(long)]
    mqtt5: bool,
}

#[derive(Args, Clone)]
pub struct ConnectionOptions {
    /// Broker to load: mqtt://host:port.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    url: String,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// The broker's process id, to report its RSS growth per connection.
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds to hold the connections before measuring.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Speak MQTT 5 instead of 3.1.1 (persistent sessions ask for a Session Expiry
    /// Interval of one hour).
    #[arg(long)]
    mqtt5: bool,
}

#[derive(Args, Clone)]
pub struct ConnectRateOptions {
    /// Broker to load: mqtt://host:port (with `--tls`, its TLS listener).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    url: String,
    /// Seconds of load.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Clients connecting concurrently, each one connection after another.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// TLS (rustls, ring provider) before each CONNECT.
    #[arg(long, requires = "ca")]
    tls: bool,
    /// CA certificates (PEM) that sign the broker's certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate chain (PEM), for brokers that require one.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of `--cert`.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Name the broker's certificate must carry.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Speak MQTT 5 instead of 3.1.1 (persistent sessions ask for a Session Expiry
    /// Interval of one hour).
    #[arg(long)]
    mqtt5: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum QosArg {
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

/// The version every client of this run speaks (one per run: set once from `--mqtt5`).
static PROTOCOL: OnceLock<Protocol> = OnceLock::new();

fn protocol() -> Protocol {
    PROTOCOL.get().copied().unwrap_or(Protocol::V311)
}

impl Scenario {
    fn mqtt5(&self) -> bool {
        match self {
            Scenario::FanIn(o)
            | Scenario::FanOut(o)
            | Scenario::P2p(o)
            | Scenario::Latency(o)
            | Scenario::OfflineQueue(o) => o.mqtt5,
            Scenario::Connections(o) => o.mqtt5,
            Scenario::ConnectRate(o) => o.mqtt5,
            Scenario::Chart(_) => false,
        }
    }

    fn json(&self) -> bool {
        match self {
            Scenario::FanIn(o)
            | Scenario::FanOut(o)
            | Scenario::P2p(o)
            | Scenario::Latency(o)
            | Scenario::OfflineQueue(o) => o.json,
            Scenario::Connections(o) => o.json,
            Scenario::ConnectRate(o) => o.json,
            Scenario::Chart(_) => false,
        }
    }
}

/// A scenario's result: the JSON object and the human line, both without the generator's
/// CPU, which `run` adds.
struct Report {
    value: Value,
    line: String,
    /// The generator's CPU time and the wall time of the load phase, when the scenario
    /// has one (setup and draining left out); otherwise `run` measures the whole scenario.
    load: Option<(Duration, Duration)>,
}

pub fn run(scenario: Scenario, plot: Option<PathBuf>) -> anyhow::Result<()> {
    if let Scenario::Chart(options) = &scenario {
        let text = std::fs::read_to_string(&options.input)
            .with_context(|| format!("cannot read {}", options.input.display()))?;
        return crate::plot::draw(&crate::plot::chart_from_json(&text)?, &options.output);
    }
    let json = scenario.json();
    if scenario.mqtt5() {
        let _ = PROTOCOL.set(Protocol::V5);
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let (wall, cpu) = (Instant::now(), cpu_time());
    let Report {
        mut value,
        line,
        load,
    } = runtime.block_on(async {
        match scenario {
            Scenario::FanIn(options) => fan_in(options).await,
            Scenario::FanOut(options) => fan_out(options).await,
            Scenario::P2p(options) => p2p(options).await,
            Scenario::Latency(options) => latency(options).await,
            Scenario::OfflineQueue(options) => offline_queue(options).await,
            Scenario::Connections(options) => connections(options).await,
            Scenario::ConnectRate(options) => connect_rate(options).await,
            Scenario::Chart(_) => unreachable!("drawn above"),
        }
    })?;
    let (cpu, wall) = load.unwrap_or_else(|| (cpu_time() - cpu, wall.elapsed()));
    let (cpu, wall) = (cpu.as_secs_f64(), wall.as_secs_f64());
    let share = 100.0 * cpu / wall;
    if let Some(path) = &plot {
        crate::plot::draw(&crate::plot::chart_of_result(&value), path)?;
    }
    if json {
        value["generator_cpu_s"] = json!(cpu);
        value["generator_cpu_pct"] = json!(share);
        println!("{value}");
    } else {
        println!("{line} [generator CPU {cpu:.2} s in {wall:.1} s, {share:.0}% of one core]");
    }
    Ok(())
}

/// This process's CPU time so far (user + system).
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// A bar on stderr over a scenario's load phase, with a live count and rate; drawn only
/// when stderr is a terminal, so `--json` output and scripts are unaffected.
struct Progress {
    bar: indicatif::ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(seconds: f64, unit: &'static str, counter: Arc<AtomicU64>) -> Progress {
        let bar = indicatif::ProgressBar::new((seconds * 10.0).ceil() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("[{bar:30}] {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        let ticker = {
            let bar = bar.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let elapsed = started.elapsed().as_secs_f64();
                    let count = counter.load(Ordering::Relaxed);
                    bar.set_position((elapsed * 10.0) as u64);
                    bar.set_message(format!(
                        "{elapsed:.1}/{seconds} s, {count} {unit}, {:.0}/s",
                        count as f64 / elapsed
                    ));
                }
            })
        };
        Progress { bar, ticker }
    }

    fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// Monotonic nanoseconds since the bench started: the send timestamp latency payloads carry.
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What a load run measured: messages published, and delivered to all the subscribers.
struct LoadResult {
    sent: u64,
    /// Delivered by the time the publishers stopped (the rate's numerator).
    delivered_at_stop: u64,
    /// Delivered in all, after draining.
    delivered: u64,
    /// Publishing time.
    elapsed: Duration,
    /// The generator's CPU time while publishing.
    generator_cpu: Duration,
    /// One-way latencies (stamped payloads only).
    latencies_ns: Vec<u64>,
}

impl LoadResult {
    fn delivered_per_s(&self) -> f64 {
        self.delivered_at_stop as f64 / self.elapsed.as_secs_f64()
    }
}

/// Subscribes one client per filter list (QoS `--qos`), then runs `publishers` publishers
/// for `--duration`, then waits for `copies` deliveries of every message sent (see below).
async fn run_load(
    options: &LoadOptions,
    filters: Vec<Vec<String>>,
    publishers: usize,
    stamp: bool,
    copies: u64,
) -> anyhow::Result<LoadResult> {
    let address = parse_url(&options.url)?;
    let qos = options.qos.qos();
    let received = Arc::new(AtomicU64::new(0));
    let latencies = stamp.then(|| Arc::new(Mutex::new(Vec::new())));
    let mut subscribers = Vec::new();
    for (index, filter) in filters.into_iter().enumerate() {
        let client_id = format!("bench-sub-{}-{index}", std::process::id());
        let (reader, writer, buffer) = subscribe(&address, &client_id, filter, qos, true).await?;
        subscribers.push(tokio::spawn(count_messages(
            reader,
            writer,
            buffer,
            received.clone(),
            latencies.clone(),
        )));
    }
    let (started, cpu) = (Instant::now(), cpu_time());
    let bar = Progress::start(options.duration, "delivered", received.clone());
    let sent = publish_for_duration(&address, options, qos, publishers, stamp).await?;
    let (elapsed, generator_cpu) = (started.elapsed(), cpu_time() - cpu);
    bar.finish();
    let delivered_at_stop = received.load(Ordering::Relaxed);
    // Let the broker deliver what it accepted before the stop: until all has arrived, or
    // nothing more for 1 s (QoS 0 dropped under overload), or 30 s.
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    let (mut last, mut last_progress) = (received.load(Ordering::Relaxed), Instant::now());
    while last < sent * copies
        && last_progress.elapsed() < Duration::from_secs(1)
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = received.load(Ordering::Relaxed);
        if now > last {
            (last, last_progress) = (now, Instant::now());
        }
    }
    for subscriber in subscribers {
        subscriber.abort();
    }
    let latencies_ns = match latencies {
        Some(latencies) => std::mem::take(&mut *latencies.lock().unwrap()),
        None => Vec::new(),
    };
    Ok(LoadResult {
        sent,
        delivered_at_stop,
        delivered: received.load(Ordering::Relaxed),
        elapsed,
        generator_cpu,
        latencies_ns,
    })
}

async fn fan_in(options: LoadOptions) -> anyhow::Result<Report> {
    let filters = vec![vec![format!("{}/#", options.prefix)]];
    let result = run_load(&options, filters, options.publishers, false, 1).await?;
    let (sent, received, rate) = (result.sent, result.delivered, result.delivered_per_s());
    let qos = options.qos.qos() as u8;
    Ok(Report {
        value: json!({
            "scenario": "fan-in", "url": options.url, "publishers": options.publishers,
            "qos": qos, "size": options.size, "topics_per_publisher": options.topics,
            "duration_s": result.elapsed.as_secs_f64(), "sent": sent, "received": received,
            "received_per_s": rate,
        }),
        line: format!(
            "fan-in {} publishers → 1 subscriber, QoS {qos}, {} B, {} topics each: sent {sent}, received {received} ({:.1}%), {rate:.0} msg/s received",
            options.publishers,
            options.size,
            options.topics,
            100.0 * received as f64 / sent.max(1) as f64,
        ),
        load: Some((result.generator_cpu, result.elapsed)),
    })
}

async fn fan_out(options: LoadOptions) -> anyhow::Result<Report> {
    let subscribers = options.subscribers.unwrap_or(8).max(1);
    // Every one matches `<prefix>/<client id>/<n>`, the topics publishers use.
    let overlapping: Vec<String> = ["#", "+/+", "+/#", "+/+/#"]
        .iter()
        .take(options.overlapping_filters.clamp(1, 4))
        .map(|tail| format!("{}/{tail}", options.prefix))
        .collect();
    let filters_each = overlapping.len();
    let filters = vec![overlapping; subscribers];
    let result = run_load(&options, filters, 1, false, subscribers as u64).await?;
    let (sent, delivered, rate) = (result.sent, result.delivered, result.delivered_per_s());
    let per_subscriber = rate / subscribers as f64;
    let qos = options.qos.qos() as u8;
    Ok(Report {
        value: json!({
            "scenario": "fan-out", "url": options.url, "publishers": 1,
            "subscribers": subscribers, "filters_per_subscriber": filters_each,
            "qos": qos, "size": options.size,
            "duration_s": result.elapsed.as_secs_f64(), "sent": sent, "delivered": delivered,
            "delivered_per_s": rate, "delivered_per_s_per_subscriber": per_subscriber,
        }),
        line: format!(
            "fan-out 1 publisher → {subscribers} subscribers ({filters_each} overlapping filters each), QoS {qos}, {} B: sent {sent}, delivered {delivered} ({:.1}% of {subscribers}×), {rate:.0} msg/s delivered ({per_subscriber:.0} per subscriber)",
            options.size,
            100.0 * delivered as f64 / (sent * subscribers as u64).max(1) as f64,
        ),
        load: Some((result.generator_cpu, result.elapsed)),
    })
}

async fn p2p(options: LoadOptions) -> anyhow::Result<Report> {
    let pairs = options.publishers.max(1);
    // Publisher `i` publishes under `<prefix>/<its client id>/` (see publish_for_duration).
    let filters = (0..pairs)
        .map(|i| vec![format!("{}/{}/#", options.prefix, publisher_id(i))])
        .collect();
    let result = run_load(&options, filters, pairs, false, 1).await?;
    let (sent, delivered, rate) = (result.sent, result.delivered, result.delivered_per_s());
    let qos = options.qos.qos() as u8;
    Ok(Report {
        value: json!({
            "scenario": "p2p", "url": options.url, "pairs": pairs, "qos": qos,
            "size": options.size, "duration_s": result.elapsed.as_secs_f64(), "sent": sent,
            "delivered": delivered, "delivered_per_s": rate,
        }),
        line: format!(
            "p2p {pairs} publisher → subscriber pairs, QoS {qos}, {} B: sent {sent}, delivered {delivered} ({:.1}%), {rate:.0} msg/s delivered",
            options.size,
            100.0 * delivered as f64 / sent.max(1) as f64,
        ),
        load: Some((result.generator_cpu, result.elapsed)),
    })
}

async fn latency(mut options: LoadOptions) -> anyhow::Result<Report> {
    let rate = *options.rate.get_or_insert(1000.0);
    options.size = options.size.max(8);
    let subscribers = options.subscribers.unwrap_or(1).max(1);
    let filters = vec![vec![format!("{}/#", options.prefix)]; subscribers];
    let result = run_load(
        &options,
        filters,
        options.publishers,
        true,
        subscribers as u64,
    )
    .await?;
    let mut latencies = result.latencies_ns;
    latencies.sort_unstable();
    let percentile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((q * latencies.len() as f64) as usize).min(latencies.len() - 1);
        latencies[index] as f64 / 1000.0
    };
    let (p50, p90, p99, p999) = (
        percentile(0.5),
        percentile(0.9),
        percentile(0.99),
        percentile(0.999),
    );
    let max = latencies.last().map_or(f64::NAN, |&ns| ns as f64 / 1000.0);
    let achieved = result.sent as f64 / result.elapsed.as_secs_f64();
    let qos = options.qos.qos() as u8;
    let lost = (result.sent * subscribers as u64).saturating_sub(result.delivered);
    Ok(Report {
        value: json!({
            "scenario": "latency", "url": options.url, "publishers": options.publishers,
            "subscribers": subscribers, "qos": qos, "size": options.size,
            "duration_s": result.elapsed.as_secs_f64(), "target_rate": rate,
            "achieved_rate": achieved, "sent": result.sent, "delivered": result.delivered,
            "p50_us": p50, "p90_us": p90, "p99_us": p99, "p999_us": p999, "max_us": max,
        }),
        line: format!(
            "latency {} publishers → {subscribers} subscriber(s), QoS {qos}, {} B, {rate:.0} msg/s asked, {achieved:.0} sent/s, {lost} not delivered: p50 {p50:.0} µs, p90 {p90:.0} µs, p99 {p99:.0} µs, p99.9 {p999:.0} µs, max {max:.0} µs",
            options.publishers, options.size,
        ),
        load: Some((result.generator_cpu, result.elapsed)),
    })
}

async fn offline_queue(options: LoadOptions) -> anyhow::Result<Report> {
    let address = parse_url(&options.url)?;
    let subscriber_id = format!("bench-offline-{}", std::process::id());
    let filter = vec![format!("{}/#", options.prefix)];
    let (reader, mut writer, _) =
        subscribe(&address, &subscriber_id, filter, QoS::AtLeastOnce, false).await?;
    send(&mut writer, &Packet::disconnect()).await?;
    drop((reader, writer));

    let started = Instant::now();
    let sent = publish_for_duration(
        &address,
        &options,
        QoS::AtLeastOnce,
        options.publishers,
        false,
    )
    .await?;
    let publish_elapsed = started.elapsed();

    // Drain: reconnect the session and take everything it kept.
    let drain_started = Instant::now();
    let (mut reader, mut writer, mut buffer) = connect(&address, &subscriber_id, false).await?;
    let mut received: u64 = 0;
    let mut acks = BytesMut::new();
    loop {
        while let Some(packet) = mqtt::decode(&mut buffer, usize::MAX, protocol())? {
            if let Packet::Publish(publish) = packet {
                received += 1;
                if publish.qos == QoS::AtLeastOnce {
                    mqtt::encode(
                        &Packet::PubAck(mqtt::Ack::new(publish.pkid)),
                        &mut acks,
                        protocol(),
                    )?;
                }
            }
        }
        writer.write_all(&acks).await?;
        acks.clear();
        if received >= sent {
            break;
        }
        buffer.reserve(32 * 1024);
        match tokio::time::timeout(Duration::from_secs(2), reader.read_buf(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    let drain_elapsed = drain_started.elapsed();
    // Leave nothing behind for the next run: a clean session replaces the persistent one.
    drop((reader, writer));
    let (_reader, mut writer, _) = connect(&address, &subscriber_id, true).await?;
    send(&mut writer, &Packet::disconnect()).await?;

    let publish_rate = sent as f64 / publish_elapsed.as_secs_f64();
    let drain_rate = received as f64 / drain_elapsed.as_secs_f64();
    Ok(Report {
        value: json!({
            "scenario": "offline-queue", "url": options.url, "publishers": options.publishers,
            "size": options.size, "sent": sent, "received": received,
            "acknowledged_per_s": publish_rate, "drained_per_s": drain_rate,
        }),
        line: format!(
            "offline-queue {} publishers, QoS 1, {} B: {sent} acknowledged ({publish_rate:.0} msg/s), {received} drained on reconnect ({drain_rate:.0} msg/s)",
            options.publishers, options.size
        ),
        load: None,
    })
}

async fn connections(options: ConnectionOptions) -> anyhow::Result<Report> {
    let address = parse_url(&options.url)?;
    let before = options.pid.map(rss_kib).transpose()?;
    let started = Instant::now();
    let mut held = Vec::with_capacity(options.count);
    // A few hundred CONNECTs in flight at a time: fast, without a SYN flood.
    let mut pending = tokio::task::JoinSet::new();
    for index in 0..options.count {
        let (address, client_id) = (
            address.clone(),
            format!("bench-idle-{}-{index}", std::process::id()),
        );
        pending.spawn(async move { connect(&address, &client_id, true).await });
        if pending.len() >= 256 {
            held.push(pending.join_next().await.expect("a task is pending")??);
        }
    }
    while let Some(connection) = pending.join_next().await {
        held.push(connection??);
    }
    let connect_elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs_f64(options.settle)).await;
    let after = options.pid.map(rss_kib).transpose()?;
    let rate = options.count as f64 / connect_elapsed.as_secs_f64();
    let growth = before.zip(after).map(|(b, a)| a as i64 - b as i64);
    let per_connection = growth.map(|kib| kib as f64 * 1024.0 / options.count.max(1) as f64);
    for (_, mut writer, _) in held.drain(..) {
        let _ = send(&mut writer, &Packet::disconnect()).await;
    }
    let memory = match (before, after, per_connection) {
        (Some(b), Some(a), Some(per)) => {
            format!(": broker RSS {b} KiB → {a} KiB, {per:.0} B per connection")
        }
        _ => String::new(),
    };
    Ok(Report {
        value: json!({
            "scenario": "connections", "url": options.url, "count": options.count,
            "connect_s": connect_elapsed.as_secs_f64(), "connects_per_s": rate,
            "broker_rss_before_kib": before, "broker_rss_after_kib": after,
            "bytes_per_connection": per_connection,
        }),
        line: format!(
            "connections {} idle, opened in {:.2} s ({rate:.0}/s){memory}",
            options.count,
            connect_elapsed.as_secs_f64()
        ),
        load: None,
    })
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

async fn connect_rate(options: ConnectRateOptions) -> anyhow::Result<Report> {
    let address = parse_url(&options.url)?;
    let tls = match options.tls {
        true => Some(tls_connector(&options)?),
        false => None,
    };
    let server_name = rustls_pki_types::ServerName::try_from(options.server_name.clone())
        .context("--server-name is not a valid DNS name or IP address")?;
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let mut workers = Vec::new();
    for worker in 0..options.concurrency.max(1) {
        let (address, tls, server_name) = (address.clone(), tls.clone(), server_name.clone());
        let (stop, done, failed, first_error) = (
            stop.clone(),
            done.clone(),
            failed.clone(),
            first_error.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let client_id = format!("bench-cr-{}-{worker}-{n}", std::process::id());
                let attempt = async {
                    let stream = TcpStream::connect(&address).await?;
                    stream.set_nodelay(true)?;
                    match &tls {
                        Some(connector) => {
                            let mut stream = connector.connect(server_name.clone(), stream).await?;
                            connect_and_leave(&mut stream, &client_id).await
                        }
                        None => connect_and_leave(&mut { stream }, &client_id).await,
                    }
                };
                match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                    Ok(Ok(())) => done.fetch_add(1, Ordering::Relaxed),
                    outcome => {
                        let error = match outcome {
                            Ok(Err(e)) => format!("{e:#}"),
                            _ => "timed out after 5 s".to_owned(),
                        };
                        first_error.lock().unwrap().get_or_insert(error);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let (started, cpu) = (Instant::now(), cpu_time());
    let bar = Progress::start(options.duration, "connects", done.clone());
    tokio::time::sleep(Duration::from_secs_f64(options.duration)).await;
    stop.store(true, Ordering::Relaxed);
    let done_at_stop = done.load(Ordering::Relaxed);
    let (elapsed, generator_cpu) = (started.elapsed(), cpu_time() - cpu);
    bar.finish();
    for worker in workers {
        worker.await?;
    }
    let failed = failed.load(Ordering::Relaxed);
    let rate = done_at_stop as f64 / elapsed.as_secs_f64();
    let kind = if options.tls {
        "TLS handshake + CONNECT"
    } else {
        "TCP + CONNECT"
    };
    let error = first_error.lock().unwrap().clone();
    let failures = match &error {
        Some(e) => format!(", {failed} failed (first: {e})"),
        None => String::new(),
    };
    Ok(Report {
        value: json!({
            "scenario": "connect-rate", "url": options.url, "tls": options.tls,
            "concurrency": options.concurrency, "duration_s": elapsed.as_secs_f64(),
            "connects": done_at_stop, "failed": failed, "first_error": error,
            "connects_per_s": rate,
        }),
        line: format!(
            "connect-rate {kind}, {} concurrent: {done_at_stop} in {:.1} s, {rate:.0}/s{failures}",
            options.concurrency,
            elapsed.as_secs_f64()
        ),
        load: Some((generator_cpu, elapsed)),
    })
}

/// CONNECT, CONNACK, DISCONNECT, then wait for the broker to close first (so the
/// TIME_WAIT stays on its side and the generator does not run out of local ports).
async fn connect_and_leave<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    client_id: &str,
) -> anyhow::Result<()> {
    mqtt_connect(stream, client_id, true).await?;
    send(stream, &Packet::disconnect()).await?;
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// rustls client (ring provider) trusting `--ca`, with `--cert`/`--key` when given, and
/// without session resumption: every connection pays a full handshake.
fn tls_connector(options: &ConnectRateOptions) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let ca = options.ca.as_ref().context("--tls needs --ca")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("cannot read {}", ca.display()))?
    {
        roots.add(cert.with_context(|| format!("bad PEM in {}", ca.display()))?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("cannot read {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("bad PEM in {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("cannot read a private key from {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn publisher_id(index: usize) -> String {
    format!("bench-pub-{}-{index}", std::process::id())
}

/// Runs `publishers` publishers for `options.duration`, at `options.rate` in total if set;
/// returns how many messages they sent (QoS 1: and had acknowledged or in flight at the
/// stop). With `stamp`, each payload starts with its send time (`now_ns`, little endian).
async fn publish_for_duration(
    address: &str,
    options: &LoadOptions,
    qos: QoS,
    publishers: usize,
    stamp: bool,
) -> anyhow::Result<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let payload = Bytes::from(vec![b'x'; options.size]);
    let rate = options.rate.map(|total| total / publishers.max(1) as f64);
    let mut tasks = Vec::new();
    for index in 0..publishers {
        let client_id = publisher_id(index);
        let (reader, writer, _) = connect(address, &client_id, true).await?;
        let topics: Vec<String> = (0..options.topics.max(1))
            .map(|n| format!("{}/{client_id}/{n}", options.prefix))
            .collect();
        let plan = PublishPlan {
            topics,
            payload: payload.clone(),
            qos,
            window: options.window,
            rate,
            stamp,
        };
        tasks.push(tokio::spawn(publish_until_stopped(
            reader,
            writer,
            plan,
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(options.duration)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for task in tasks {
        sent += task.await??;
    }
    Ok(sent)
}

/// What one publisher sends.
struct PublishPlan {
    /// Cycled through, one message each.
    topics: Vec<String>,
    payload: Bytes,
    qos: QoS,
    /// Unacknowledged QoS 1 messages at most.
    window: u64,
    /// Messages per second; `None`: as fast as the socket or the window allows.
    rate: Option<f64>,
    /// Write the send time into the first 8 payload bytes.
    stamp: bool,
}

/// Publishes at `plan.rate`, or as fast as the socket (QoS 0) or the acknowledgement
/// window (QoS 1) allows; returns how many were sent.
async fn publish_until_stopped(
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    plan: PublishPlan,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<u64> {
    let PublishPlan {
        topics,
        payload,
        qos,
        window,
        rate,
        stamp,
    } = plan;
    let acked = Arc::new(AtomicU64::new(0));
    let ack_arrived = Arc::new(Notify::new());
    let ack_reader = {
        let (acked, ack_arrived) = (acked.clone(), ack_arrived.clone());
        tokio::spawn(async move {
            let mut buffer = BytesMut::with_capacity(16 * 1024);
            while let Ok(packet) = read_packet(&mut reader, &mut buffer).await {
                if let Packet::PubAck(_) = packet {
                    acked.fetch_add(1, Ordering::Relaxed);
                    ack_arrived.notify_one();
                }
            }
        })
    };
    let mut stamped = payload.to_vec();
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut pkid: u16 = 0;
    let mut batch = BytesMut::with_capacity(64 * 1024);
    while !stop.load(Ordering::Relaxed) {
        if qos == QoS::AtLeastOnce && sent - acked.load(Ordering::Relaxed) >= window {
            let _ = tokio::time::timeout(Duration::from_millis(100), ack_arrived.notified()).await;
            continue;
        }
        let room = if qos == QoS::AtLeastOnce {
            window - (sent - acked.load(Ordering::Relaxed))
        } else {
            64
        };
        let mut count = room.min(64);
        if let Some(rate) = rate {
            let due = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
            if due <= sent {
                let next = started + Duration::from_secs_f64(sent as f64 / rate);
                let next = next.min(Instant::now() + Duration::from_millis(100));
                tokio::time::sleep_until(next.into()).await;
                continue;
            }
            count = count.min(due - sent);
        }
        for _ in 0..count {
            pkid = pkid.checked_add(1).unwrap_or(1);
            let topic = &topics[(sent % topics.len() as u64) as usize];
            if stamp {
                stamped[..8].copy_from_slice(&now_ns().to_le_bytes());
            }
            mqtt::encode_publish(
                &PublishRef {
                    dup: false,
                    qos,
                    retain: false,
                    topic,
                    pkid: if qos == QoS::AtMostOnce { 0 } else { pkid },
                    payload: if stamp { &stamped } else { &payload },
                    properties: None,
                },
                &mut batch,
                protocol(),
            )?;
            sent += 1;
        }
        writer.write_all(&batch).await?;
        batch.clear();
    }
    if qos == QoS::AtLeastOnce {
        let deadline = Instant::now() + Duration::from_secs(3);
        while acked.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    send(&mut writer, &Packet::disconnect()).await?;
    ack_reader.abort();
    Ok(sent)
}

/// Counts (and acknowledges) what a subscriber receives; with `latencies`, also records
/// each message's one-way latency from the send time stamped in its payload.
async fn count_messages(
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    mut buffer: BytesMut,
    received: Arc<AtomicU64>,
    latencies: Option<Arc<Mutex<Vec<u64>>>>,
) -> anyhow::Result<()> {
    let mut acks = BytesMut::new();
    let mut measured = Vec::new();
    loop {
        if reader.read_buf(&mut buffer).await? == 0 {
            bail!("subscriber connection closed by the broker");
        }
        let now = now_ns();
        while let Some(packet) = mqtt::decode(&mut buffer, usize::MAX, protocol())? {
            if let Packet::Publish(publish) = packet {
                received.fetch_add(1, Ordering::Relaxed);
                if latencies.is_some() && publish.payload.len() >= 8 {
                    let sent = u64::from_le_bytes(publish.payload[..8].try_into().unwrap());
                    measured.push(now.saturating_sub(sent));
                }
                if publish.qos == QoS::AtLeastOnce {
                    mqtt::encode(
                        &Packet::PubAck(mqtt::Ack::new(publish.pkid)),
                        &mut acks,
                        protocol(),
                    )?;
                }
            }
        }
        if let Some(latencies) = &latencies {
            latencies.lock().unwrap().append(&mut measured);
        }
        if !acks.is_empty() {
            writer.write_all(&acks).await?;
            acks.clear();
        }
        buffer.reserve(32 * 1024);
    }
}

/// A clean or persistent session subscribed to `filters`; what arrived after the SUBACK
/// stays in the returned buffer.
async fn subscribe(
    address: &str,
    client_id: &str,
    filters: Vec<String>,
    qos: QoS,
    clean_session: bool,
) -> anyhow::Result<(OwnedReadHalf, OwnedWriteHalf, BytesMut)> {
    let (mut reader, mut writer, mut buffer) = connect(address, client_id, clean_session).await?;
    send(
        &mut writer,
        &Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: filters
                .into_iter()
                .map(|filter| SubscribeFilter::new(filter, qos))
                .collect(),
            properties: Default::default(),
        }),
    )
    .await?;
    match read_packet(&mut reader, &mut buffer).await? {
        Packet::SubAck(_) => Ok((reader, writer, buffer)),
        other => bail!("{client_id}: expected SUBACK, got {}", other.name()),
    }
}

async fn connect(
    address: &str,
    client_id: &str,
    clean_session: bool,
) -> anyhow::Result<(OwnedReadHalf, OwnedWriteHalf, BytesMut)> {
    let mut stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to {address}"))?;
    stream.set_nodelay(true)?;
    let buffer = mqtt_connect(&mut stream, client_id, clean_session).await?;
    let (reader, writer) = stream.into_split();
    Ok((reader, writer, buffer))
}

/// CONNECT and wait for an accepting CONNACK, on any stream (plain or TLS). What arrived
/// after the CONNACK (a resumed session's backlog) is in the returned buffer.
async fn mqtt_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    client_id: &str,
    clean_session: bool,
) -> anyhow::Result<BytesMut> {
    send(
        stream,
        &Packet::Connect(Connect {
            protocol: protocol(),
            keep_alive: 60,
            client_id: client_id.to_owned(),
            clean_session,
            will: None,
            username: None,
            password: None,
            properties: mqtt::ConnectProperties {
                // MQTT 5's persistent session: Clean Start 0 and an expiry above 0.
                session_expiry_interval: (!clean_session).then_some(3600),
                ..Default::default()
            },
        }),
    )
    .await?;
    let mut buffer = BytesMut::new();
    match read_packet(stream, &mut buffer).await? {
        Packet::ConnAck(ack) if ack.code == mqtt::ReasonCode::SUCCESS => Ok(buffer),
        Packet::ConnAck(ack) => bail!("{client_id}: CONNACK {}", ack.code),
        other => bail!("{client_id}: expected CONNACK, got {}", other.name()),
    }
}

async fn send<W: AsyncWrite + Unpin>(writer: &mut W, packet: &Packet) -> anyhow::Result<()> {
    let mut buffer = BytesMut::new();
    mqtt::encode(packet, &mut buffer, protocol())?;
    writer.write_all(&buffer).await?;
    Ok(())
}

async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
) -> anyhow::Result<Packet> {
    loop {
        if let Some(packet) = mqtt::decode(buffer, usize::MAX, protocol())? {
            return Ok(packet);
        }
        buffer.reserve(16 * 1024);
        if reader.read_buf(buffer).await? == 0 {
            bail!("connection closed by the broker");
        }
    }
}

fn parse_url(url: &str) -> anyhow::Result<String> {
    match url.strip_prefix("mqtt://") {
        Some(address) if !address.is_empty() => Ok(address.trim_end_matches('/').to_owned()),
        _ => bail!("--url must look like mqtt://host:port (for TLS, add --tls)"),
    }
}
