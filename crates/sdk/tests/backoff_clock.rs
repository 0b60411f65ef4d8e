//! The reconnect schedule as the session applies it, on tokio's paused clock.

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
    // The session task runs on this runtime, so the back-off waits use its paused clock.
    let m = DataManager::new(
        ServiceConfiguration::new("local", Endpoint::parse("127.0.0.1").unwrap())
            .mqtt_port(port)
            .mqtt_configuration(MqttConfiguration::default())
            .runtime(tokio::runtime::Handle::current()),
    );
    // Each failed attempt, seen on the status channel. The session task sets it, so the
    // change is seen before the clock can advance; `Connecting` and the `ConnectionError`
    // right after it may come as one change, two failures never do (a wait separates them).
    let mut status = m.status();
    m.connect_mqtt("backoff", true, &MqttConnectOptions::default(), |_| {})
        .unwrap();
    // 1 + 2 + 4 + 8 + 16 s of waits: six attempts within ~31 s of virtual time.
    let mut failures = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(40), async {
        while failures.len() < 6 && status.changed().await.is_ok() {
            if status.borrow_and_update().status == Status::ConnectionError {
                failures.push(Instant::now());
            }
        }
    })
    .await;
    m.disconnect_and_wait().await;
    let t = failures;
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
