//! iot-data over HTTPS (the iOS SDK's `AWSIoTData`): publish and read back a retained
//! message, then update, read and delete a named shadow, signed with SigV4 by the
//! credentials in `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`).
//! The README's "iot-data over HTTPS" shows `run` (a test keeps them identical).
//!
//! ```text
//! pubsub broker &                                     # http listener on 127.0.0.1:8088
//! export AWS_ACCESS_KEY_ID=$(jq -r .accessKeyId .pubsub/admin-credentials)
//! export AWS_SECRET_ACCESS_KEY=$(jq -r .secretAccessKey .pubsub/admin-credentials)
//! cargo run -p pubsub --example iot_data -- [endpoint-url] [region]
//! ```

use pubsub::data::{DataError, IotDataClient};
use pubsub::{EnvironmentCredentialsProvider, PublishOptions, PublishProperties, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8088".into());
    let region = args.next().unwrap_or_else(|| "us-east-1".into());
    // IoT Core: "https://xxxx-ats.iot.us-east-1.amazonaws.com"; or, from the configuration
    // the MQTT connections use, IotDataClient::from_config(&service_configuration).
    let iot = IotDataClient::new(&url, region, EnvironmentCredentialsProvider)?;
    run(&iot).await?;
    Ok(())
}

// README: iot-data
async fn run(iot: &IotDataClient) -> Result<(), DataError> {
    // POST /topics/sensors%2F1%2Ftemp?qos=1&retain=true (MQTT 5 properties ride along).
    let options = PublishOptions::new()
        .retain(true)
        .properties(PublishProperties::new().user_property("unit", "celsius"));
    iot.publish("sensors/1/temp", "21.5", QoS::AtLeastOnce, options)
        .await?;

    let retained = iot.get_retained_message("sensors/1/temp").await?;
    println!(
        "{} = {:?} {:?}",
        retained.topic, retained.payload, retained.user_properties
    );
    let mut token = None;
    loop {
        let page = iot
            .list_retained_messages(token.as_deref(), Some(50))
            .await?;
        for summary in &page.retained_topics {
            println!(
                "retained: {} ({} bytes)",
                summary.topic, summary.payload_size
            );
        }
        token = match page.next_token {
            Some(next) => Some(next),
            None => break,
        };
    }

    let desired = serde_json::json!({"state": {"desired": {"rate": 5}}});
    let accepted = iot
        .update_thing_shadow("lamp", Some("config"), &desired)
        .await?;
    println!("version {}", accepted["version"]);
    let document = iot.get_thing_shadow("lamp", Some("config")).await?;
    println!("delta {}", document["state"]["delta"]);
    let names = iot.list_named_shadows_for_thing("lamp", None, None).await?;
    println!("named shadows: {:?}", names.results);
    iot.delete_thing_shadow("lamp", Some("config")).await?;

    match iot.get_thing_shadow("lamp", Some("config")).await {
        Err(e) if e.error_type() == Some("ResourceNotFoundException") => println!("deleted"),
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
// README: end
