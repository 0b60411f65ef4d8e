//! The iOS seed's flow in Rust: credentials from a Cognito identity pool, SigV4 WebSocket
//! connection, publish a string, print the status.
//!
//! ```text
//! cargo run -p pubsub --example cognito_websocket -- \
//!     <identity-pool-id> <iot-endpoint> [cognito-endpoint] [ca.pem]
//! ```
//! e.g. on AWS: `us-east-1:<uuid> wss://xxxx-ats.iot.us-east-1.amazonaws.com/mqtt`; against a
//! local broker: `us-east-1:<uuid> localhost:8443 https://localhost:8443/ data/tls/ca.pem`
//! (the CA file is used for both the Cognito endpoint and the broker). The region is the
//! pool id's prefix.

use std::time::Duration;

use pubsub::cognito::CognitoCredentialsProvider;
use pubsub::{DataManager, Endpoint, QoS, ServiceConfiguration, Status};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!(
            "usage: cognito_websocket <identity-pool-id> <iot-endpoint> [cognito-endpoint] [ca.pem]"
        );
        std::process::exit(2);
    }
    let pool_id = &args[0];
    let region = pool_id.split(':').next().unwrap_or("us-east-1");
    let ca = args.get(3);

    // let credentialsProvider = AWSCognitoCredentialsProvider(regionType: .USEast1, identityPoolId: "…")
    let mut credentials = CognitoCredentialsProvider::builder(pool_id, region);
    if let Some(url) = args.get(2) {
        credentials = credentials.endpoint(url);
    }
    if let Some(ca) = ca {
        credentials = credentials.ca_file(ca);
    }
    let credentials = credentials.build()?;

    // credentialsProvider.getIdentityId() — the id a signed-in user's IoT policy is attached
    // to. This guest identity gets what its pool's unauthenticated role allows (IoT Core
    // does not consult IoT policies attached to a guest).
    let runtime = tokio::runtime::Runtime::new()?;
    let identity_id = runtime.block_on(credentials.identity_id())?;
    println!("identity id {identity_id}");

    // AWSServiceConfiguration(region:, endpoint:, credentialsProvider:)
    let mut config = ServiceConfiguration::new(region, Endpoint::parse(&args[1])?)
        .credentials_provider(credentials);
    if let Some(ca) = ca {
        config = config.ca_file(ca);
    }
    DataManager::register(config, "MyAWSIoTDataManager");
    let iot = DataManager::get("MyAWSIoTDataManager")?;

    let (tx, rx) = std::sync::mpsc::channel();
    iot.connect_using_websocket("cognito-example", true, move |event| {
        println!("status: {event}"); // with the reason when it failed
        let _ = tx.send(event);
    })?;
    loop {
        let event = rx.recv_timeout(Duration::from_secs(15))?;
        match event.status {
            Status::Connected => break,
            Status::Connecting => {}
            _ => return Err(event.into()),
        }
    }

    let sent = iot.try_publish(
        "myTopic",
        "Hello from a Cognito identity!",
        QoS::AtLeastOnce,
    )?;
    println!("publish: {sent:?}");
    std::thread::sleep(Duration::from_secs(1));
    iot.disconnect()?;
    std::thread::sleep(Duration::from_millis(200));
    println!("status: {}", *iot.status().borrow());
    Ok(())
}
