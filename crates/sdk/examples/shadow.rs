//! Device shadows from the SDK against a PubSub broker (or IoT Core): the iOS-style calls
//! with their callback on the classic shadow of `lamp`, then the async client on its
//! named shadow `config`. The README's "SDK shadow API" shows these two functions (a test
//! keeps them identical).
//!
//! ```text
//! pubsub broker &                                              # mqtt on localhost:1883
//! cargo run -p pubsub --example shadow -- [host] [port]       # default localhost 1883
//! ```

mod support;

use std::sync::mpsc;
use std::time::Duration;

use pubsub::shadow::{
    ShadowDocument, ShadowError, ShadowId, ShadowOperation, ShadowOperationStatus, ShadowOptions,
};
use pubsub::{DataManager, MqttConnectOptions};
use serde::{Deserialize, Serialize};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iot = support::manager_from_args()?;
    iot.connect_mqtt(
        "shadow-example",
        true,
        &MqttConnectOptions::default(),
        |_| {},
    )?;
    iot.wait_for_connection()
        .await
        .map_err(|s| format!("connection failed: {s}"))?;
    ios_style(&iot)?;
    async_style(&iot).await?;
    iot.disconnect_and_wait().await;
    Ok(())
}

// README: ios-style
fn ios_style(iot: &DataManager) -> Result<(), Box<dyn std::error::Error>> {
    let (tx, rx) = mpsc::channel();
    let options = ShadowOptions::default()
        .versioning(true) // send the last version seen: stale updates get 409
        .foreign_update_notifications(true) // tell me about other clients' updates
        .operation_timeout(Duration::from_secs(5));
    let registered = iot.register_with_shadow(
        "lamp",
        options,
        move |name, operation, status, token, payload| {
            println!(
                "{name} {operation:?} {status:?} {token:?} {}",
                String::from_utf8_lossy(payload)
            );
            let _ = tx.send((operation, status));
        },
    );
    if !registered {
        return Err("not registered: not connected, or a name the service refuses".into());
    }
    // true = sent; the answer comes to the callback (one operation at a time per shadow).
    // false = not sent (why is logged), and the callback will not hear of it.
    if !iot.update_shadow("lamp", r#"{"state":{"desired":{"on":true}}}"#, None) {
        return Err("update not sent".into());
    }
    while rx.recv_timeout(Duration::from_secs(5))?
        != (ShadowOperation::Update, ShadowOperationStatus::Accepted)
    {}
    if !iot.get_shadow("lamp", Some("my-token-1")) {
        return Err("get not sent".into());
    }
    while rx.recv_timeout(Duration::from_secs(5))?.0 != ShadowOperation::Get {}
    assert!(iot.unregister_from_shadow("lamp")); // false: it was not registered
    Ok(())
}
// README: end

// README: async
#[derive(Serialize, Deserialize, Debug)]
struct Config {
    mode: String,
    interval_secs: u32,
}

async fn async_style(iot: &DataManager) -> Result<(), ShadowError> {
    let config = iot.shadow(ShadowId::named("lamp", "config")); // or iot.shadow("lamp"): classic
    let mut deltas = config.deltas().await?;
    let wanted = Config {
        mode: "eco".into(),
        interval_secs: 60,
    };
    config.update_desired(&wanted).await?;
    if let Some(delta) = deltas.recv().await {
        println!("device should apply {}", delta["state"]); // what differs from reported
    }
    config.update_reported(&wanted).await?; // the device applied it
    let doc: ShadowDocument<Config, Config> = config.get_typed().await?;
    println!(
        "v{}: desired {:?}, reported {:?}, delta {:?}",
        doc.version, doc.desired, doc.reported, doc.delta
    );
    // Optimistic locking: a stale version is rejected with IoT Core's code and message.
    let stale = serde_json::json!({"state": {"desired": {"mode": "off"}}, "version": 1});
    match config.update(stale).await {
        Err(ShadowError::Rejected(r)) => println!("rejected: {} {}", r.code, r.message), // 409 Version conflict
        other => println!("{other:?}"),
    }
    config.delete().await?;
    Ok(())
}
// README: end
