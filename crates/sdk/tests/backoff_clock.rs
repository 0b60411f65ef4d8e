//! The reconnect schedule as the session applies it, on tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pubsub::{
    DataManager, Endpoint, MqttConfiguration, MqttConnectOptions, ServiceConfiguration, Status,
};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn reconnect_waits_follow_the_schedule() {
    // Nothing listens on this port: every attempt fails at once with ConnectionError.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let m = DataManager::new(
        ServiceConfiguration::new("local", Endpoint::parse("127.0.0.1").unwrap())
            .mqtt_port(port)
            .mqtt_configuration(MqttConfiguration::default()),
    );
    let attempts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let a2 = attempts.clone();
    m.connect_mqtt("backoff", true, &MqttConnectOptions::default(), move |s| {
        if s == Status::Connecting {
            a2.lock().unwrap().push(Instant::now());
        }
    })
    .unwrap();
    // 1 + 2 + 4 + 8 + 16 s of waits: six attempts within ~31 s of virtual time.
    let deadline = Instant::now() + Duration::from_secs(40);
    while attempts.lock().unwrap().len() < 6 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    m.disconnect_and_wait().await;
    let t = attempts.lock().unwrap().clone();
    assert!(t.len() >= 6, "only {} attempts", t.len());
    for (i, w) in t.windows(2).take(5).enumerate() {
        let gap = w[1] - w[0];
        let nominal = Duration::from_secs(1 << i);
        // Jitter removes at most 20 %; the failed attempt itself takes (virtually) no time.
        assert!(
            gap >= nominal.mul_f64(0.8) && gap <= nominal + Duration::from_millis(300),
            "wait {i}: {gap:?}"
        );
    }
}
