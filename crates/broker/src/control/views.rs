//! PubSub's own operations, not AWS's: read-only views of the running broker that the
//! console shows (docs/CONSOLE.md): `GET /pubsub/clients` (sessions, online and offline),
//! `GET /pubsub/refusals` (the latest policy refusals, "why denied"), `GET
//! /pubsub/overview` (listeners, uptime, totals). Admin only; they need the running broker.

use crate::clock::unix_millis;
use crate::refusals::Refusal;
use crate::session::SessionView;

use super::*;

pub(super) fn route(plane: &Plane<'_>, request: &ApiRequest<'_>, parts: &[&str]) -> ApiResult {
    match (request.method, parts) {
        ("GET", ["pubsub", "clients"]) => Ok(clients(&plane.data_plane()?.session_views())),
        ("GET", ["pubsub", "refusals"]) => {
            plane.data_plane()?;
            let refusals: Vec<Value> = plane
                .policies
                .metrics
                .refusals
                .latest()
                .iter()
                .map(refusal)
                .collect();
            Ok(json!({ "refusals": refusals }))
        }
        ("GET", ["pubsub", "overview"]) => overview(plane),
        _ => Err(unknown_operation(request)),
    }
}

/// Sessions with a connection under `connected`, persistent ones without under `offline`.
fn clients(views: &[SessionView]) -> Value {
    let now = unix_millis();
    let mut connected = Vec::new();
    let mut offline = Vec::new();
    for view in views {
        match &view.owner {
            Some(live) => {
                let info = live.info();
                connected.push(json!({
                    "clientId": &*view.client_id,
                    "principal": live.principal(),
                    "listener": info.map(|info| info.listener.name()),
                    "protocol": info.map(|info| info.protocol),
                    "peer": info.map(|info| info.peer.to_string()),
                    "connectedAt": info.map(|info| info.connected_at_ms),
                    "subscriptions": &view.subscriptions,
                    "queued": view.queued,
                    "cleanSession": view.clean,
                }))
            }
            None => offline.push(json!({
                "clientId": &*view.client_id,
                "subscriptions": &view.subscriptions,
                "queued": view.queued,
                "expiresAt": view
                    .expires_in
                    .map(|left| now + u64::try_from(left.as_millis()).unwrap_or(u64::MAX / 2)),
            })),
        }
    }
    json!({ "connected": connected, "offline": offline })
}

fn refusal(refusal: &Refusal) -> Value {
    json!({
        "time": refusal.time_ms,
        "clientId": refusal.client_id,
        "principal": refusal.principal,
        "action": refusal.action,
        "resource": refusal.resource,
        "policy": refusal.policy,
        "statement": refusal.statement,
        "sid": refusal.sid,
        "reason": refusal.reason,
    })
}

fn overview(plane: &Plane<'_>) -> ApiResult {
    let router = plane.data_plane()?;
    let started = plane.started.ok_or_else(needs_running_broker)?;
    let metrics = &plane.policies.metrics;
    let snapshot = router.metrics_snapshot();
    let started_at = started
        .at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let uptime = SystemTime::now()
        .duration_since(started.at)
        .unwrap_or_default();
    let listeners: Vec<Value> = started
        .listeners
        .get()
        .map(|listeners| {
            listeners
                .iter()
                .map(|(name, address)| json!({"name": name, "address": address.to_string()}))
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "startedAt": u64::try_from(started_at.as_millis()).unwrap_or(0),
        "uptimeSeconds": uptime.as_secs(),
        "listeners": listeners,
        "connections": router.connections.load(std::sync::atomic::Ordering::Relaxed),
        "sessions": {"online": snapshot.sessions_online, "offline": snapshot.sessions_offline},
        "messagesIn": metrics.messages_in.get(),
        "messagesOut": metrics.messages_out.get(),
        "bytesIn": metrics.bytes_in.get(),
        "bytesOut": metrics.bytes_out.get(),
        "retainedMessages": snapshot.retained_messages,
        "queuedMessages": snapshot.queued_messages,
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::metrics::Listener;
    use crate::session::{ConnectionInfo, LiveConnection};

    #[test]
    fn clients_split_online_from_offline_sessions_with_their_details() {
        let live = LiveConnection::new("anonymous", None).with_info(ConnectionInfo {
            listener: Listener::Mqtt,
            protocol: "5",
            peer: "127.0.0.1:5000".parse().unwrap(),
            connected_at_ms: 1_000,
        });
        let views = [
            SessionView {
                client_id: "on".into(),
                clean: true,
                owner: Some(Arc::new(live)),
                subscriptions: vec!["a/#".into()],
                queued: 2,
                expires_in: None,
            },
            SessionView {
                client_id: "off".into(),
                clean: false,
                owner: None,
                subscriptions: vec!["b/+".into()],
                queued: 3,
                expires_in: Some(Duration::from_secs(60)),
            },
        ];
        let before = unix_millis();
        let answer = clients(&views);
        let connected = &answer["connected"][0];
        assert_eq!(connected["clientId"], "on");
        assert_eq!(connected["principal"], "anonymous");
        assert_eq!(connected["listener"], "mqtt");
        assert_eq!(connected["protocol"], "5");
        assert_eq!(connected["peer"], "127.0.0.1:5000");
        assert_eq!(connected["connectedAt"], 1_000);
        assert_eq!(connected["subscriptions"], json!(["a/#"]));
        assert_eq!(connected["queued"], 2);
        let offline = &answer["offline"][0];
        assert_eq!(offline["clientId"], "off");
        assert_eq!(offline["queued"], 3);
        let expires = offline["expiresAt"].as_u64().unwrap();
        assert!(expires >= before + 60_000 && expires <= unix_millis() + 60_000);
        assert_eq!(answer["connected"].as_array().unwrap().len(), 1);
        assert_eq!(answer["offline"].as_array().unwrap().len(), 1);
    }
}
