//! `pubsub bench`: a load generator for any MQTT 3.1.1 broker.
//!
//! Clients are minimal on purpose (our codec over a tokio socket, no client library), so
//! the generator costs little next to the broker it measures.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::{Args, Subcommand, ValueEnum};
use mqtt::{Connect, Packet, Protocol, PublishRef, QoS, Subscribe, SubscribeFilter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

#[derive(Subcommand)]
pub enum Scenario {
    /// N publishers → 1 subscriber (on `<prefix>/#`).
    FanIn(LoadOptions),
    /// QoS 1 into an offline persistent session (clean_session = false), then drained:
    /// measures what a durable store costs the publisher, and the drain rate.
    OfflineQueue(LoadOptions),
}

#[derive(Args, Clone)]
pub struct LoadOptions {
    /// Broker to load: mqtt://host:port.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    url: String,
    /// Publishing clients.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    #[arg(long, value_enum, default_value_t = QosArg::Zero)]
    qos: QosArg,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Distinct topics each publisher cycles through (`<prefix>/<client id>/<n>`): many
    /// topics keep per-topic caches in the broker (e.g. policy decisions) from hiding costs.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// First topic level.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Unacknowledged QoS 1 messages per publisher.
    #[arg(long, default_value_t = 100)]
    window: u64,
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
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

pub fn run(scenario: Scenario) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        match scenario {
            Scenario::FanIn(options) => fan_in(options).await,
            Scenario::OfflineQueue(options) => offline_queue(options).await,
        }
    })
}

async fn fan_in(options: LoadOptions) -> anyhow::Result<()> {
    let address = parse_url(&options.url)?;
    let qos = options.qos.qos();
    let run_id = std::process::id();
    let (mut sub_reader, mut sub_writer, mut buffer) =
        connect(&address, &format!("bench-sub-{run_id}"), true).await?;
    let filter = format!("{}/#", options.prefix);
    send(
        &mut sub_writer,
        &Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![SubscribeFilter { filter, qos }],
        }),
    )
    .await?;
    match read_packet(&mut sub_reader, &mut buffer).await? {
        Packet::SubAck(_) => {}
        other => bail!("expected SUBACK, got {}", other.name()),
    }
    let received = Arc::new(AtomicU64::new(0));
    let subscriber = tokio::spawn(count_messages(
        sub_reader,
        sub_writer,
        buffer,
        received.clone(),
    ));

    let started = Instant::now();
    let sent = publish_for_duration(&address, &options, qos).await?;
    let elapsed = started.elapsed();
    let received_at_stop = received.load(Ordering::Relaxed);
    // Give the broker a moment to deliver what it accepted before the stop.
    let drain_deadline = Instant::now() + Duration::from_secs(3);
    while received.load(Ordering::Relaxed) < sent && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    subscriber.abort();
    let received = received.load(Ordering::Relaxed);
    let rate = received_at_stop as f64 / elapsed.as_secs_f64();
    if options.json {
        println!(
            "{}",
            serde_json::json!({
                "scenario": "fan-in", "url": options.url, "publishers": options.publishers,
                "qos": qos as u8, "size": options.size, "topics_per_publisher": options.topics,
                "duration_s": elapsed.as_secs_f64(), "sent": sent, "received": received,
                "received_per_s": rate,
            })
        );
    } else {
        println!(
            "fan-in {} publishers → 1 subscriber, QoS {}, {} B, {} topics each: sent {sent}, received {received} ({:.1}%), {rate:.0} msg/s received",
            options.publishers,
            qos as u8,
            options.size,
            options.topics,
            100.0 * received as f64 / sent.max(1) as f64,
        );
    }
    Ok(())
}

async fn offline_queue(options: LoadOptions) -> anyhow::Result<()> {
    let address = parse_url(&options.url)?;
    let subscriber_id = format!("bench-offline-{}", std::process::id());
    let (mut reader, mut writer, mut buffer) = connect(&address, &subscriber_id, false).await?;
    send(
        &mut writer,
        &Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![SubscribeFilter {
                filter: format!("{}/#", options.prefix),
                qos: QoS::AtLeastOnce,
            }],
        }),
    )
    .await?;
    match read_packet(&mut reader, &mut buffer).await? {
        Packet::SubAck(_) => {}
        other => bail!("expected SUBACK, got {}", other.name()),
    }
    send(&mut writer, &Packet::Disconnect).await?;
    drop((reader, writer));

    let started = Instant::now();
    let sent = publish_for_duration(&address, &options, QoS::AtLeastOnce).await?;
    let publish_elapsed = started.elapsed();

    // Drain: reconnect the session and take everything it kept.
    let drain_started = Instant::now();
    let (mut reader, mut writer, mut buffer) = connect(&address, &subscriber_id, false).await?;
    let mut received: u64 = 0;
    let mut acks = BytesMut::new();
    loop {
        while let Some(packet) = mqtt::decode(&mut buffer, usize::MAX)? {
            if let Packet::Publish(publish) = packet {
                received += 1;
                if publish.qos == QoS::AtLeastOnce {
                    mqtt::encode(&Packet::PubAck(publish.pkid), &mut acks)?;
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
    send(&mut writer, &Packet::Disconnect).await?;

    let publish_rate = sent as f64 / publish_elapsed.as_secs_f64();
    let drain_rate = received as f64 / drain_elapsed.as_secs_f64();
    if options.json {
        println!(
            "{}",
            serde_json::json!({
                "scenario": "offline-queue", "url": options.url, "publishers": options.publishers,
                "size": options.size, "sent": sent, "received": received,
                "acknowledged_per_s": publish_rate, "drained_per_s": drain_rate,
            })
        );
    } else {
        println!(
            "offline-queue {} publishers, QoS 1, {} B: {sent} acknowledged ({publish_rate:.0} msg/s), {received} drained on reconnect ({drain_rate:.0} msg/s)",
            options.publishers, options.size
        );
    }
    Ok(())
}

/// Runs `options.publishers` publishers for `options.duration`; returns how many messages
/// they sent (QoS 1: and had acknowledged or in flight at the stop).
async fn publish_for_duration(
    address: &str,
    options: &LoadOptions,
    qos: QoS,
) -> anyhow::Result<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let payload = Bytes::from(vec![b'x'; options.size]);
    let mut publishers = Vec::new();
    for index in 0..options.publishers {
        let client_id = format!("bench-pub-{}-{index}", std::process::id());
        let (reader, writer, _) = connect(address, &client_id, true).await?;
        let topics: Vec<String> = (0..options.topics.max(1))
            .map(|n| format!("{}/{client_id}/{n}", options.prefix))
            .collect();
        publishers.push(tokio::spawn(publish_until_stopped(
            reader,
            writer,
            topics,
            payload.clone(),
            qos,
            options.window,
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(options.duration)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for publisher in publishers {
        sent += publisher.await??;
    }
    Ok(sent)
}

/// Publishes as fast as the socket (QoS 0) or the acknowledgement window (QoS 1) allows;
/// returns how many were sent.
async fn publish_until_stopped(
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    topics: Vec<String>,
    payload: Bytes,
    qos: QoS,
    window: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<u64> {
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
        for _ in 0..room.min(64) {
            pkid = pkid.checked_add(1).unwrap_or(1);
            let topic = &topics[(sent % topics.len() as u64) as usize];
            mqtt::encode_publish(
                &PublishRef {
                    dup: false,
                    qos,
                    retain: false,
                    topic,
                    pkid: if qos == QoS::AtMostOnce { 0 } else { pkid },
                    payload: &payload,
                },
                &mut batch,
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
    send(&mut writer, &Packet::Disconnect).await?;
    ack_reader.abort();
    Ok(sent)
}

async fn count_messages(
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    mut buffer: BytesMut,
    received: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut acks = BytesMut::new();
    loop {
        if reader.read_buf(&mut buffer).await? == 0 {
            bail!("subscriber connection closed by the broker");
        }
        while let Some(packet) = mqtt::decode(&mut buffer, usize::MAX)? {
            if let Packet::Publish(publish) = packet {
                received.fetch_add(1, Ordering::Relaxed);
                if publish.qos == QoS::AtLeastOnce {
                    mqtt::encode(&Packet::PubAck(publish.pkid), &mut acks)?;
                }
            }
        }
        if !acks.is_empty() {
            writer.write_all(&acks).await?;
            acks.clear();
        }
        buffer.reserve(32 * 1024);
    }
}

async fn connect(
    address: &str,
    client_id: &str,
    clean_session: bool,
) -> anyhow::Result<(OwnedReadHalf, OwnedWriteHalf, BytesMut)> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to {address}"))?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    send(
        &mut writer,
        &Packet::Connect(Connect {
            protocol: Protocol::V311,
            keep_alive: 60,
            client_id: client_id.to_owned(),
            clean_session,
            will: None,
            username: None,
            password: None,
        }),
    )
    .await?;
    let mut buffer = BytesMut::new();
    match read_packet(&mut reader, &mut buffer).await? {
        // What arrived after the CONNACK (a resumed session's backlog) stays in `buffer`.
        Packet::ConnAck(ack) if ack.code == mqtt::ConnectReturnCode::Accepted => {
            Ok((reader, writer, buffer))
        }
        Packet::ConnAck(ack) => bail!("{client_id}: CONNACK {:?}", ack.code),
        other => bail!("{client_id}: expected CONNACK, got {}", other.name()),
    }
}

async fn send(writer: &mut OwnedWriteHalf, packet: &Packet) -> anyhow::Result<()> {
    let mut buffer = BytesMut::new();
    mqtt::encode(packet, &mut buffer)?;
    writer.write_all(&buffer).await?;
    Ok(())
}

async fn read_packet(reader: &mut OwnedReadHalf, buffer: &mut BytesMut) -> anyhow::Result<Packet> {
    loop {
        if let Some(packet) = mqtt::decode(buffer, usize::MAX)? {
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
        _ => {
            bail!("--url must look like mqtt://host:port (TLS options come with the TLS listener)")
        }
    }
}
