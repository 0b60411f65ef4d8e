//! The iot-data plane: publish over HTTPS, retained messages (get, list), and
//! DeleteConnection. Needs the running broker. Publish is authorized by the caller's
//! policies (`iot:Publish`, and `iot:RetainPublish` to retain) when a key other than the
//! admin's signed it; the rest is the admin's. A publish to a shadow request topic also
//! goes to the shadow service, as an MQTT client's does.

use std::sync::Arc;

use base64::Engine;
use mqtt::{PublishProperties, QoS};

use iot::{Action, ResourceKind};

use crate::clock::unix_millis;
use crate::message::MessageMeta;

use super::*;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// ListRetainedMessages' largest `maxResults` (IoT Core's), and its value when none is given.
const MAX_RESULTS: usize = 200;

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
            let meta = publish_properties(query, request.headers)
                .map_err(ApiError::invalid)?
                .and_then(|properties| MessageMeta::from_publish(properties, unix_millis))
                .map(Arc::new);
            if retain && !iot::is_reserved(&topic) {
                broker
                    .data_plane()?
                    .retain_message(&topic, payload.clone(), qos, meta.clone());
            }
            let shadow_request = shadow::ShadowTopic::parse(&topic)
                .filter(shadow::ShadowTopic::is_request)
                .map(|request| (request.id(), request.operation));
            broker
                .data_plane()?
                .route_message(&topic, payload.clone(), qos, meta);
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
            let mut answer = json!({
                "topic": topic,
                "payload": BASE64.encode(&message.payload),
                "qos": message.qos as u8,
                "lastModifiedTime": unix_millis(),
            });
            if let Some(users) = message
                .meta
                .as_ref()
                .map(|meta| &meta.properties.user_properties)
                .filter(|users| !users.is_empty())
            {
                answer["userProperties"] = BASE64.encode(user_properties_json(users)).into();
            }
            Ok(answer)
        }
        ("GET", ["retainedMessage"]) => {
            let (max_results, after) = list_page(query).map_err(ApiError::invalid)?;
            // Sorted by topic: a page starts after the last topic of the previous one.
            let (page, next) = page_after(
                broker.data_plane()?.retained_messages(),
                |m| &m.topic,
                after.as_deref(),
                max_results,
            );
            let topics: Vec<Value> = page
                .iter()
                .map(|m| json!({"topic": &*m.topic, "payloadSize": m.payload.len(), "qos": m.qos as u8, "lastModifiedTime": unix_millis()}))
                .collect();
            let mut answer = json!({ "retainedTopics": topics });
            if let Some(last) = next {
                answer["nextToken"] = BASE64.encode(last).into();
            }
            Ok(answer)
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

/// The MQTT 5 properties of an iot-data Publish, as IoT Core takes them (botocore's
/// `PublishRequest`): queries `contentType`, `responseTopic`, `messageExpiry` (seconds);
/// headers `x-amz-mqtt5-user-properties` (base64 of a JSON array of `{"key": "value"}`
/// objects), `x-amz-mqtt5-payload-format-indicator` (`UNSPECIFIED_BYTES` or `UTF8_DATA`),
/// `x-amz-mqtt5-correlation-data` (base64). `None` when there is none; `Err` is the 400's
/// message. Pure.
fn publish_properties(
    query: &str,
    headers: &[(&str, &str)],
) -> Result<Option<PublishProperties>, String> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    };
    let base64 = |name: &str, value: &str| {
        BASE64
            .decode(value)
            .map_err(|error| format!("{name} is not base64: {error}"))
    };
    let mut properties = PublishProperties {
        content_type: query_param(query, "contentType"),
        response_topic: query_param(query, "responseTopic"),
        ..PublishProperties::default()
    };
    if let Some(topic) = &properties.response_topic {
        // MQTT 5 §3.3.2.3.5: a topic name, so no wildcards.
        if !mqtt::is_valid_topic_name(topic) {
            return Err(format!(
                "responseTopic {topic:?} must be a topic name without wildcards"
            ));
        }
    }
    if let Some(expiry) = query_param(query, "messageExpiry") {
        let seconds: u64 = expiry
            .parse()
            .map_err(|_| format!("messageExpiry {expiry:?} is not a number of seconds"))?;
        properties.message_expiry_interval = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
    }
    if let Some(format) = header("x-amz-mqtt5-payload-format-indicator") {
        properties.payload_format_indicator = Some(match format {
            "UTF8_DATA" => true,
            "UNSPECIFIED_BYTES" => false,
            other => {
                return Err(format!(
                    "payload format indicator {other:?} is not UNSPECIFIED_BYTES or UTF8_DATA"
                ))
            }
        });
    }
    if let Some(data) = header("x-amz-mqtt5-correlation-data") {
        properties.correlation_data = Some(base64("correlation data", data)?.into());
    }
    if let Some(users) = header("x-amz-mqtt5-user-properties") {
        let json = base64("user properties", users)?;
        let not_a_list = |error: serde_json::Error| {
            format!("user properties are not a JSON array of objects: {error}")
        };
        // botocore JSON-encodes this header's value before base64, so boto3's documented
        // form (a JSON string) arrives as a JSON string holding the array: read through it.
        let list: Vec<serde_json::Map<String, Value>> =
            match serde_json::from_slice::<Value>(&json).map_err(not_a_list)? {
                Value::String(inner) => serde_json::from_str(&inner),
                other => serde_json::from_value(other),
            }
            .map_err(not_a_list)?;
        for object in list {
            for (key, value) in object {
                let value = match value {
                    Value::String(value) => value,
                    other => other.to_string(),
                };
                properties.user_properties.push((key, value));
            }
        }
    }
    Ok((!properties.is_empty()).then_some(properties))
}

/// User properties as IoT Core's HTTP API returns them: a JSON array of one-pair objects.
fn user_properties_json(users: &[(String, String)]) -> String {
    let list: Vec<Value> = users.iter().map(|(k, v)| json!({ k: v })).collect();
    Value::Array(list).to_string()
}

/// ListRetainedMessages' page: `maxResults` (default and most 200), and the topic after
/// which it starts (`nextToken`, the base64 of the previous page's last topic). Pure.
fn list_page(query: &str) -> Result<(usize, Option<String>), String> {
    let max_results = max_results(query, MAX_RESULTS, MAX_RESULTS)?;
    let after = match query_param(query, "nextToken").filter(|token| !token.is_empty()) {
        None => None,
        Some(token) => Some(
            BASE64
                .decode(&token)
                .ok()
                .and_then(|topic| String::from_utf8(topic).ok())
                .ok_or_else(|| format!("nextToken {token:?} is not one this API returned"))?,
        ),
    };
    Ok((max_results, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_properties_from_queries_and_headers() {
        assert_eq!(publish_properties("qos=1&retain=true", &[]), Ok(None));
        let users = BASE64.encode(r#"[{"a":"1"},{"a":"2"},{"n":3}]"#);
        // As boto3 sends a string: JSON-encoded once more.
        let boto3 = BASE64.encode(r#""[{\"a\": \"1\"}]""#);
        assert_eq!(
            publish_properties("", &[("x-amz-mqtt5-user-properties", &boto3)])
                .unwrap()
                .unwrap()
                .user_properties,
            vec![("a".to_owned(), "1".to_owned())]
        );
        let correlation = BASE64.encode("id-7");
        let headers = [
            ("X-Amz-Mqtt5-User-Properties", users.as_str()),
            ("x-amz-mqtt5-payload-format-indicator", "UTF8_DATA"),
            ("x-amz-mqtt5-correlation-data", correlation.as_str()),
        ];
        let properties = publish_properties(
            "qos=1&contentType=text%2Fplain&responseTopic=re%2Fply&messageExpiry=60",
            &headers,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            properties,
            PublishProperties {
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(60),
                response_topic: Some("re/ply".into()),
                correlation_data: Some(bytes::Bytes::from_static(b"id-7")),
                user_properties: vec![
                    ("a".into(), "1".into()),
                    ("a".into(), "2".into()),
                    ("n".into(), "3".into())
                ],
                content_type: Some("text/plain".into()),
                ..PublishProperties::default()
            }
        );
        assert_eq!(
            user_properties_json(&properties.user_properties[..2]),
            r#"[{"a":"1"},{"a":"2"}]"#
        );
        for (query, headers) in [
            ("messageExpiry=-1", vec![]),
            ("responseTopic=a%2F%2B", vec![]),
            ("", vec![("x-amz-mqtt5-payload-format-indicator", "TEXT")]),
            ("", vec![("x-amz-mqtt5-correlation-data", "!!")]),
            ("", vec![("x-amz-mqtt5-user-properties", "e30=")]),
        ] {
            assert!(
                publish_properties(query, &headers).is_err(),
                "{query} {headers:?}"
            );
        }
    }

    #[test]
    fn retained_pages() {
        assert_eq!(list_page(""), Ok((200, None)));
        let token = BASE64.encode("a/b");
        assert_eq!(
            list_page(&format!("maxResults=2&nextToken={token}")),
            Ok((2, Some("a/b".into())))
        );
        for bad in [
            "maxResults=0",
            "maxResults=201",
            "maxResults=x",
            "nextToken=%21",
        ] {
            assert!(list_page(bad).is_err(), "{bad}");
        }
    }
}
