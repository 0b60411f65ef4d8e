//! IoT Core lifecycle events: their topics, their JSON payloads and the disconnect reasons.
//! The caller supplies the clock reading so these stay pure.

use serde_json::json;

/// Why a connection ended, with IoT Core's names for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    AuthError,
    ClientInitiatedDisconnect,
    ClientError,
    ConnectionLost,
    DuplicateClientId,
    ForbiddenAccess,
    MqttKeepAliveTimeout,
    ServerError,
    ServerInitiatedDisconnect,
    Throttled,
    WebsocketTtlExpiration,
    CustomAuthTtlExpiration,
    ApiInitiatedDisconnect,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::AuthError => "AUTH_ERROR",
            DisconnectReason::ClientInitiatedDisconnect => "CLIENT_INITIATED_DISCONNECT",
            DisconnectReason::ClientError => "CLIENT_ERROR",
            DisconnectReason::ConnectionLost => "CONNECTION_LOST",
            DisconnectReason::DuplicateClientId => "DUPLICATE_CLIENTID",
            DisconnectReason::ForbiddenAccess => "FORBIDDEN_ACCESS",
            DisconnectReason::MqttKeepAliveTimeout => "MQTT_KEEP_ALIVE_TIMEOUT",
            DisconnectReason::ServerError => "SERVER_ERROR",
            DisconnectReason::ServerInitiatedDisconnect => "SERVER_INITIATED_DISCONNECT",
            DisconnectReason::Throttled => "THROTTLED",
            DisconnectReason::WebsocketTtlExpiration => "WEBSOCKET_TTL_EXPIRATION",
            DisconnectReason::CustomAuthTtlExpiration => "CUSTOMAUTH_TTL_EXPIRATION",
            DisconnectReason::ApiInitiatedDisconnect => "API_INITIATED_DISCONNECT",
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every lifecycle event says about the connection it concerns.
#[derive(Debug, Clone)]
pub struct EventContext<'a> {
    pub client_id: &'a str,
    pub timestamp_ms: u64,
    pub session_identifier: &'a str,
    pub principal_identifier: &'a str,
    pub version_number: u64,
}

/// IoT Core publishes no lifecycle events for client ids with MQTT wildcards in them.
pub fn emits_events(client_id: &str) -> bool {
    !client_id.contains(['#', '+'])
}

/// `(topic, payload)` of a `connected` event.
pub fn connected_event(context: &EventContext, ip_address: &str) -> (String, String) {
    let payload = json!({
        "clientId": context.client_id,
        "timestamp": context.timestamp_ms,
        "eventType": "connected",
        "sessionIdentifier": context.session_identifier,
        "principalIdentifier": context.principal_identifier,
        "ipAddress": ip_address,
        "versionNumber": context.version_number,
    });
    (
        format!("$aws/events/presence/connected/{}", context.client_id),
        payload.to_string(),
    )
}

/// `(topic, payload)` of a `disconnected` event.
pub fn disconnected_event(context: &EventContext, reason: DisconnectReason) -> (String, String) {
    let payload = json!({
        "clientId": context.client_id,
        "timestamp": context.timestamp_ms,
        "eventType": "disconnected",
        "sessionIdentifier": context.session_identifier,
        "principalIdentifier": context.principal_identifier,
        "clientInitiatedDisconnect": reason == DisconnectReason::ClientInitiatedDisconnect,
        "disconnectReason": reason.as_str(),
        "versionNumber": context.version_number,
    });
    (
        format!("$aws/events/presence/disconnected/{}", context.client_id),
        payload.to_string(),
    )
}

/// `(topic, payload)` of a `subscribed` (or, with `subscribed = false`, `unsubscribed`) event.
pub fn subscription_event(
    context: &EventContext,
    subscribed: bool,
    topics: &[&str],
) -> (String, String) {
    let event_type = if subscribed {
        "subscribed"
    } else {
        "unsubscribed"
    };
    let payload = json!({
        "clientId": context.client_id,
        "timestamp": context.timestamp_ms,
        "eventType": event_type,
        "sessionIdentifier": context.session_identifier,
        "principalIdentifier": context.principal_identifier,
        "topics": topics,
    });
    (
        format!(
            "$aws/events/subscriptions/{event_type}/{}",
            context.client_id
        ),
        payload.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> EventContext<'static> {
        EventContext {
            client_id: "c1",
            timestamp_ms: 1_700_000_000_000,
            session_identifier: "s-1",
            principal_identifier: "anonymous",
            version_number: 3,
        }
    }

    #[test]
    fn disconnected_event_has_iot_fields() {
        let (topic, payload) = disconnected_event(&context(), DisconnectReason::DuplicateClientId);
        assert_eq!(topic, "$aws/events/presence/disconnected/c1");
        let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(value["disconnectReason"], "DUPLICATE_CLIENTID");
        assert_eq!(value["clientInitiatedDisconnect"], false);
        assert_eq!(value["timestamp"], 1_700_000_000_000u64);
        assert_eq!(value["versionNumber"], 3);
    }

    #[test]
    fn connected_and_subscription_events() {
        let (topic, payload) = connected_event(&context(), "127.0.0.1");
        assert_eq!(topic, "$aws/events/presence/connected/c1");
        assert!(payload.contains("\"ipAddress\":\"127.0.0.1\""));
        let (topic, payload) = subscription_event(&context(), false, &["a/b", "c/#"]);
        assert_eq!(topic, "$aws/events/subscriptions/unsubscribed/c1");
        let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(value["topics"][1], "c/#");
    }

    #[test]
    fn wildcard_client_ids_emit_nothing() {
        assert!(emits_events("sensor-1"));
        assert!(!emits_events("a+b"));
        assert!(!emits_events("a#"));
    }
}
