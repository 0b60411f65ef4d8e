//! The async API: a subscription as a stream, and a QoS 1 publish that resolves on PUBACK.
//!
//! ```text
//! cargo run -p pubsub --example async_stream -- [host] [port]   # default localhost 1883
//! ```

mod support;

use pubsub::{MqttConnectOptions, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iot = support::manager_from_args()?;
    iot.connect_mqtt(
        "stream-example",
        true,
        &MqttConnectOptions::default(),
        |s| println!("status: {s}"),
    )?;
    iot.wait_for_connection()
        .await
        .map_err(|s| format!("connection failed: {s}"))?;

    let mut messages = iot
        .subscribe_stream("sensors/+/temp", QoS::AtLeastOnce)
        .await?;
    let outcome = iot
        .publish("sensors/kitchen/temp", "21.5", QoS::AtLeastOnce)
        .await?;
    println!("publish: {outcome:?}");
    if let Some(m) = messages.recv().await {
        println!("{} = {}", m.topic, m.payload_str());
    }
    iot.disconnect_and_wait().await;
    Ok(())
}
