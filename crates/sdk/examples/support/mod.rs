//! What the examples share: the broker's address from the command line
//! (`[host] [port]`, default `localhost 1883`).

use pubsub::{DataManager, Endpoint, ServiceConfiguration};

/// A manager for plain MQTT to `[host] [port]` from the command line.
pub fn manager_from_args() -> Result<DataManager, Box<dyn std::error::Error>> {
    let host = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost".into());
    let port: u16 = std::env::args()
        .nth(2)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(1883);
    Ok(DataManager::new(
        ServiceConfiguration::new("local", Endpoint::parse(&host)?).mqtt_port(port),
    ))
}
