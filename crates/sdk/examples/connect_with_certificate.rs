//! The iOS seed snippets in Rust: connect with a certificate, subscribe, publish a string,
//! unsubscribe, disconnect.
//!
//! ```text
//! cargo run -p pubsub --example connect_with_certificate -- \
//!     <endpoint> <certificate.pem> <private.key> [ca.pem] [port]
//! ```
//! e.g. `xxxx-ats.iot.us-east-1.amazonaws.com cert.pem key.pem`, or a local broker:
//! `localhost cert.pem key.pem ca.pem 8883`.

use std::time::Duration;

use pubsub::{DataManager, Endpoint, IdentityStore, QoS, ServiceConfiguration};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: connect_with_certificate <endpoint> <certificate.pem> <private.key> [ca.pem] [port]");
        std::process::exit(2);
    }
    // Import the identity once; afterwards the certificate id is all `connect` needs.
    let store = IdentityStore::open(IdentityStore::default_location())?;
    let certificate_id = store.import_pem(&std::fs::read(&args[1])?, &std::fs::read(&args[2])?)?;
    println!("certificate id {certificate_id}");

    let mut config =
        ServiceConfiguration::new("us-east-1", Endpoint::parse(&args[0])?).identity_store(store);
    if let Some(ca) = args.get(3) {
        config = config.ca_file(ca);
    }
    if let Some(port) = args.get(4) {
        config = config.certificate_port(port.parse()?);
    }
    DataManager::register(config, "MyKey");
    let iot = DataManager::get("MyKey")?;

    let (tx, rx) = std::sync::mpsc::channel();
    iot.connect("client-1", true, &certificate_id, move |event| {
        println!("status: {event}");
        let _ = tx.send(event);
    })?;
    // Wait for the connection (the callback reports progress, and why it failed).
    loop {
        let event = rx.recv_timeout(Duration::from_secs(15))?;
        match event.status {
            pubsub::Status::Connected => break,
            pubsub::Status::Connecting => {}
            _ => return Err(event.into()),
        }
    }

    iot.subscribe("myTopic", QoS::AtMostOnce, |message| {
        println!("received: {}", message.payload_str());
    })?;
    std::thread::sleep(Duration::from_millis(500)); // let the SUBACK arrive
    iot.try_publish("myTopic", "Hello to all subscribers!", QoS::AtMostOnce)?;
    std::thread::sleep(Duration::from_secs(1));
    iot.unsubscribe_topic("myTopic")?;
    iot.disconnect()?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}
