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
        move |event| {
            println!("status: {event}");
            let _ = status_tx.send(event);
        },
    )?;
    loop {
        let event = status_rx.recv_timeout(Duration::from_secs(10))?;
        match event.status {
            Status::Connected => break,
            Status::Connecting => {}
            _ => return Err(event.into()),
        }
    }

    let (msg_tx, msg_rx) = mpsc::channel();
    let (ack_tx, ack_rx) = mpsc::channel();
    iot.subscribe_with_ack(
        "example/+",
        QoS::AtLeastOnce,
        move |message| {
            let _ = msg_tx.send(format!("{}: {}", message.topic, message.payload_str()));
        },
        move |result| {
            let _ = ack_tx.send(result);
        },
    )?;
    ack_rx.recv_timeout(Duration::from_secs(10))??; // Err: the broker refused it
    iot.publish_with_ack(
        "example/greeting",
        "Hello to all subscribers!",
        QoS::AtLeastOnce,
        |result| println!("publish: {result:?}"), // Ok(Acknowledged) on PUBACK
    )?;
    println!("received {}", msg_rx.recv_timeout(Duration::from_secs(10))?);
    iot.unsubscribe_topic("example/+")?;
    iot.disconnect()?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}
