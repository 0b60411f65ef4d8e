//! The iot-data plane: publish over HTTPS, retained messages (get, list), and
//! DeleteConnection. Needs the running broker. Publish is authorized by the caller's
//! policies (`iot:Publish`, and `iot:RetainPublish` to retain) when a key other than the
//! admin's signed it; the rest is the admin's. A publish to a shadow request topic also
//! goes to the shadow service, as an MQTT client's does.

use base64::Engine;
use mqtt::QoS;

use iot::{Action, ResourceKind};

use crate::clock::unix_millis;

use super::*;

/// Whether the operation at `path` may be signed by a key other than the admin's (its
/// handler then authorizes the caller).
pub(super) fn authorizes_principals(path: &str) -> bool {
    path.starts_with("/topics/")
}

pub(super) async fn route(
    broker: &Plane<'_>,
    request @ &ApiRequest {
        method,
        path,
        query,
        body,
        ..
    }: &ApiRequest<'_>,
    parts: &[&str],
    caller: &Caller,
) -> ApiResult {
    match (method, parts) {
        ("POST", ["topics", ..]) => {
            let topic = data_topic(path, "/topics/")?;
            let qos = match query_param(query, "qos").as_deref() {
                None | Some("0") => QoS::AtMostOnce,
                Some("1") => QoS::AtLeastOnce,
                Some(other) => {
                    return Err(ApiError::invalid(format!("qos {other} is not supported")))
                }
            };
            iot::validate_topic_name(&topic, &broker.config.limits)
                .and_then(|()| iot::validate_client_publish(&topic))
                .map_err(|error| ApiError::invalid(format!("topic {topic:?}: {error}")))?;
            if body.len() > broker.config.limits.max_payload_bytes {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLargeException",
                    format!(
                        "payload is {} bytes, limit is {}",
                        body.len(),
                        broker.config.limits.max_payload_bytes
                    ),
                ));
            }
            let retain = query_param(query, "retain").as_deref() == Some("true");
            caller.authorize(broker, Action::Publish, ResourceKind::Topic, &topic)?;
            if retain {
                caller.authorize(broker, Action::RetainPublish, ResourceKind::Topic, &topic)?;
            }
            let payload = bytes::Bytes::copy_from_slice(body);
            if retain && !iot::is_reserved(&topic) {
                broker.data_plane()?.retain(&topic, payload.clone(), qos);
            }
            let shadow_request = shadow::ShadowTopic::parse(&topic)
                .filter(shadow::ShadowTopic::is_request)
                .map(|request| (request.id(), request.operation));
            broker.data_plane()?.route(&topic, payload.clone(), qos);
            // A publish to a shadow request topic is a shadow request whatever carried it,
            // answered on `…/accepted` or `…/rejected` as for an MQTT client.
            if let Some((id, operation)) = shadow_request {
                broker.shadows()?.submit_mqtt(id, operation, payload);
            }
            Ok(json!({}))
        }
        ("GET", ["retainedMessage", ..]) if path.len() > "/retainedMessage/".len() => {
            let topic = data_topic(path, "/retainedMessage/")?;
            let message = broker
                .data_plane()?
                .retained_for(&topic)
                .into_iter()
                .find(|message| *message.topic == *topic)
                .ok_or_else(|| ApiError::not_found(format!("no retained message on {topic}")))?;
            Ok(json!({
                "topic": topic,
                "payload": base64::engine::general_purpose::STANDARD.encode(&message.payload),
                "qos": message.qos as u8,
                "lastModifiedTime": unix_millis(),
            }))
        }
        ("GET", ["retainedMessage"]) => {
            let topics: Vec<Value> = broker
                .data_plane()?
                .retained_messages()
                .iter()
                .map(|m| json!({"topic": &*m.topic, "payloadSize": m.payload.len(), "qos": m.qos as u8, "lastModifiedTime": unix_millis()}))
                .collect();
            Ok(json!({ "retainedTopics": topics }))
        }
        // DeleteConnection: the connection gets DISCONNECT 0x98 (MQTT 5) and closes, with
        // a lifecycle event saying API_INITIATED_DISCONNECT; `cleanSession=true` ends its
        // session, `preventWillMessage=true` keeps its will from being sent.
        ("DELETE", ["connections", ..]) if path.len() > "/connections/".len() => {
            let client_id = data_topic(path, "/connections/")?;
            if client_id.starts_with('$') {
                return Err(ApiError::invalid(format!(
                    "client id {client_id:?}: ids starting with '$' cannot be disconnected"
                )));
            }
            let kick = crate::session::ApiKick {
                clean_session: query_param(query, "cleanSession").as_deref() == Some("true"),
                prevent_will: query_param(query, "preventWillMessage").as_deref() == Some("true"),
            };
            let router = broker.data_plane()?;
            let closed = router.disconnect_client(&client_id, kick);
            let ended = kick.clean_session && !closed && router.end_offline_session(&client_id);
            if !closed && !ended {
                return Err(ApiError::not_found(format!(
                    "no connection with client id {client_id}"
                )));
            }
            tracing::info!(%client_id, closed, clean_session = kick.clean_session, prevent_will = kick.prevent_will, "DeleteConnection");
            Ok(json!({}))
        }
        _ => Err(unknown_operation(request)),
    }
}
