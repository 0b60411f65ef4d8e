//! One measurement (ignored by default; run with
//! `cargo test --release -p pubsub --test measure -- --ignored --nocapture`):
//! QoS 1 round trips through mosquitto with the SDK on both ends.

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
