//! Plain MQTT to any broker (no AWS): subscribe, publish, unsubscribe, disconnect,
//! using the callback API without an async runtime of your own.
//!
//! ```text
//! cargo run -p pubsub --example plain_mqtt -- [host] [port]     # default localhost 1883
//! ```

mod support;

use std::sync::mpsc;
use std::time::Duration;

use pubsub::{MqttConnectOptions, QoS, Status};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iot = support::manager_from_args()?;

    let (status_tx, status_rx) = mpsc::channel();
    iot.connect_mqtt(
        "plain-example",
        true,
        &MqttConnectOptions::default(),
        move |s| {
            println!("status: {s:?}");
            let _ = status_tx.send(s);
        },
    )?;
    loop {
        match status_rx.recv_timeout(Duration::from_secs(10))? {
            Status::Connected => break,
            Status::Connecting => {}
            other => return Err(format!("connection failed: {other:?}").into()),
        }
    }

    let (msg_tx, msg_rx) = mpsc::channel();
    let (ack_tx, ack_rx) = mpsc::channel();
    iot.subscribe_extended_with_ack(
        "example/+",
        QoS::AtLeastOnce,
        move |topic, payload| {
            let _ = msg_tx.send(format!("{topic}: {}", String::from_utf8_lossy(payload)));
        },
        move || {
            let _ = ack_tx.send(());
        },
    );
    ack_rx.recv_timeout(Duration::from_secs(10))?;
    iot.publish_string_with_ack(
        "Hello to all subscribers!",
        "example/greeting",
        QoS::AtLeastOnce,
        || println!("PUBACK received"),
    );
    println!("received {}", msg_rx.recv_timeout(Duration::from_secs(10))?);
    iot.unsubscribe_topic("example/+");
    iot.disconnect();
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}
