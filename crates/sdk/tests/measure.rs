//! One measurement (ignored by default; run with
//! `cargo test --release -p pubsub --test measure -- --ignored --nocapture`):
//! QoS 1 round trips through mosquitto with the SDK on both ends, and the SDK against
//! rumqttc (an independent Rust client) under the same load.

mod common;

use std::time::{Duration, Instant};

use pubsub::{
    DataManager, Endpoint, MqttConnectOptions, PublishOutcome, QoS, ServiceConfiguration,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn qos1_throughput_through_mosquitto() {
    let broker = common::Mosquitto::start(
        "allow_anonymous true\nmax_inflight_messages 0\nmax_queued_messages 0",
    );
    let cfg = ServiceConfiguration::new("local", Endpoint::parse("127.0.0.1").unwrap())
        .mqtt_port(broker.port);
    let sub = DataManager::new(cfg.clone());
    let publisher = DataManager::new(cfg);
    sub.connect_mqtt("measure-sub", true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    publisher
        .connect_mqtt("measure-pub", true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    sub.wait_for_connection().await.unwrap();
    publisher.wait_for_connection().await.unwrap();
    let mut stream = sub.subscribe_stream("m/t", QoS::AtLeastOnce).await.unwrap();

    const N: usize = 20_000;
    let payload = bytes::Bytes::from(vec![b'x'; 64]);
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        for _ in 0..N {
            tokio::time::timeout(Duration::from_secs(30), stream.recv())
                .await
                .unwrap()
                .unwrap();
        }
        Instant::now()
    });
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..64 {
        let p = publisher.clone();
        let payload = payload.clone();
        tasks.spawn(async move {
            for _ in (w..N).step_by(64) {
                assert_eq!(
                    p.publish("m/t", payload.clone(), QoS::AtLeastOnce)
                        .await
                        .unwrap(),
                    PublishOutcome::Acknowledged
                );
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let acked = start.elapsed();
    let received = receiver.await.unwrap() - start;
    println!(
        "QoS1 {N} x 64 B, 64 publishes in flight: all PUBACKed in {acked:?} ({:.0} msg/s), all received in {received:?} ({:.0} msg/s)",
        N as f64 / acked.as_secs_f64(),
        N as f64 / received.as_secs_f64()
    );
    sub.disconnect_and_wait().await;
    publisher.disconnect_and_wait().await;
}

/// One SDK round: 64 tasks each awaiting PUBACK (64 in flight), SDK subscriber stream.
async fn sdk_round(port: u16, round: usize, n: usize) -> (Duration, Duration) {
    let cfg =
        ServiceConfiguration::new("local", Endpoint::parse("127.0.0.1").unwrap()).mqtt_port(port);
    let sub = DataManager::new(cfg.clone());
    let publisher = DataManager::new(cfg);
    sub.connect_mqtt(
        &format!("sdk-sub-{round}"),
        true,
        &MqttConnectOptions::default(),
        |_| {},
    )
    .unwrap();
    publisher
        .connect_mqtt(
            &format!("sdk-pub-{round}"),
            true,
            &MqttConnectOptions::default(),
            |_| {},
        )
        .unwrap();
    sub.wait_for_connection().await.unwrap();
    publisher.wait_for_connection().await.unwrap();
    let topic = format!("m/sdk/{round}");
    let mut stream = sub
        .subscribe_stream(&topic, QoS::AtLeastOnce)
        .await
        .unwrap();
    let payload = bytes::Bytes::from(vec![b'x'; 64]);
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        for _ in 0..n {
            tokio::time::timeout(Duration::from_secs(30), stream.recv())
                .await
                .unwrap()
                .unwrap();
        }
        Instant::now()
    });
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WINDOW {
        let p = publisher.clone();
        let payload = payload.clone();
        let topic = topic.clone();
        tasks.spawn(async move {
            for _ in (w..n).step_by(WINDOW) {
                assert_eq!(
                    p.publish(&topic, payload.clone(), QoS::AtLeastOnce)
                        .await
                        .unwrap(),
                    PublishOutcome::Acknowledged
                );
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let acked = start.elapsed();
    let received = receiver.await.unwrap() - start;
    sub.disconnect_and_wait().await;
    publisher.disconnect_and_wait().await;
    (acked, received)
}

/// The same load on raw rumqttc: one publisher client with 64 in flight, one subscriber.
async fn raw_round(port: u16, round: usize, n: usize) -> (Duration, Duration) {
    use rumqttc::{AsyncClient, Event, Incoming, MqttOptions};
    let mut so = MqttOptions::new(format!("raw-sub-{round}"), "127.0.0.1", port);
    so.set_inflight(100);
    let (sub, mut sub_loop) = AsyncClient::new(so, 1024);
    let topic = format!("m/raw/{round}");
    sub.subscribe(&topic, rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Incoming::SubAck(_)) = sub_loop.poll().await.unwrap() {
            break;
        }
    }
    let mut po = MqttOptions::new(format!("raw-pub-{round}"), "127.0.0.1", port);
    po.set_inflight(WINDOW as u16);
    let (publisher, mut pub_loop) = AsyncClient::new(po, 1024);
    loop {
        if let Event::Incoming(Incoming::ConnAck(_)) = pub_loop.poll().await.unwrap() {
            break;
        }
    }
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            if let Event::Incoming(Incoming::Publish(_)) =
                tokio::time::timeout(Duration::from_secs(30), sub_loop.poll())
                    .await
                    .unwrap()
                    .unwrap()
            {
                got += 1;
            }
        }
        let at = Instant::now();
        (at, sub, sub_loop)
    });
    let payload = bytes::Bytes::from(vec![b'x'; 64]);
    let feeder = {
        let publisher = publisher.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            for _ in 0..n {
                publisher
                    .publish_bytes(
                        topic.clone(),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        payload.clone(),
                    )
                    .await
                    .unwrap();
            }
        })
    };
    let mut acks = 0;
    while acks < n {
        if let Event::Incoming(Incoming::PubAck(_)) = pub_loop.poll().await.unwrap() {
            acks += 1;
        }
    }
    let acked = start.elapsed();
    feeder.await.unwrap();
    let (at, sub, mut sub_loop) = receiver.await.unwrap();
    let received = at - start;
    publisher.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(200), pub_loop.poll()).await;
    sub.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(200), sub_loop.poll()).await;
    (acked, received)
}

const WINDOW: usize = 64;

/// SDK vs raw rumqttc, same mosquitto, same load, alternating rounds (run with
/// `cargo test --release -p pubsub --test measure sdk_vs_raw -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn sdk_vs_raw_rumqttc_qos1_through_mosquitto() {
    let broker = common::Mosquitto::start(
        "allow_anonymous true\nmax_inflight_messages 0\nmax_queued_messages 0",
    );
    const N: usize = 20_000;
    const ROUNDS: usize = 5;
    let (mut sdk, mut raw) = (Vec::new(), Vec::new());
    // Warm-up (connections, allocator, mosquitto).
    raw_round(broker.port, 100, 2_000).await;
    sdk_round(broker.port, 100, 2_000).await;
    for round in 0..ROUNDS {
        let rate =
            |(a, r): (Duration, Duration)| (N as f64 / a.as_secs_f64(), N as f64 / r.as_secs_f64());
        let s = rate(sdk_round(broker.port, round, N).await);
        let w = rate(raw_round(broker.port, round, N).await);
        println!(
            "round {round}: SDK {:.0} acked/s {:.0} received/s | raw rumqttc {:.0} acked/s {:.0} received/s",
            s.0, s.1, w.0, w.1
        );
        sdk.push(s.0);
        raw.push(w.0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (s, w) = (median(&mut sdk), median(&mut raw));
    println!(
        "QoS1 {N} x 64 B, {WINDOW} in flight, median of {ROUNDS}: SDK {s:.0} publishes/s, raw rumqttc {w:.0} publishes/s, SDK/raw = {:.3} (layer cost {:.1} %)",
        s / w,
        (1.0 - s / w) * 100.0
    );
}
