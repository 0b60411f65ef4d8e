//! IoT Core's rules for what a client sends, as pure checks. Each refusal says why, in
//! words a log reader can act on; the connection task decides how to answer.

use crate::Limits;
use mqtt::{Connect, ConnectReturnCode, DecodeError, Publish, QoS, Subscribe};

/// A refused CONNECT: the CONNACK code to answer with (`None`: just close, as IoT Core
/// does for an oversize or malformed CONNECT) and the reason for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Option<ConnectReturnCode>,
    pub reason: String,
}

impl Refusal {
    fn answer(code: ConnectReturnCode, reason: impl Into<String>) -> Refusal {
        Refusal {
            code: Some(code),
            reason: reason.into(),
        }
    }

    fn close(reason: impl Into<String>) -> Refusal {
        Refusal {
            code: None,
            reason: reason.into(),
        }
    }

    pub fn not_authorized(reason: impl Into<String>) -> Refusal {
        Refusal::answer(ConnectReturnCode::NotAuthorized, reason)
    }

    /// IoT Core answers an excess CONNECT with "server unavailable" (reason THROTTLED).
    pub fn throttled(limit: u32) -> Refusal {
        Refusal::answer(
            ConnectReturnCode::ServerUnavailable,
            format!("THROTTLED: more than {limit} CONNECT per second for this client id"),
        )
    }
}

/// The largest packet the decoder accepts: the payload limit plus room for the longest
/// possible topic and headers. Payload size itself is checked after decoding, so a too
/// large PUBLISH is refused with the precise reason.
pub fn max_packet_size(limits: &Limits) -> usize {
    limits.max_payload_bytes + 65_536 + 16
}

pub fn is_unsupported_protocol_level(error: &DecodeError) -> bool {
    matches!(error, DecodeError::UnsupportedProtocolLevel(_))
}

pub fn check_connect(connect: &Connect, limits: &Limits) -> Result<(), Refusal> {
    let id = &connect.client_id;
    if id.is_empty() {
        return Err(Refusal::answer(
            ConnectReturnCode::IdentifierRejected,
            "empty client id requires clean session (MQTT-3.1.3-8)",
        ));
    }
    if id.len() > limits.max_client_id_bytes {
        return Err(Refusal::answer(
            ConnectReturnCode::IdentifierRejected,
            format!(
                "client id is {} bytes, limit is {}",
                id.len(),
                limits.max_client_id_bytes
            ),
        ));
    }
    if id.starts_with('$') {
        return Err(Refusal::answer(
            ConnectReturnCode::IdentifierRejected,
            "client ids starting with '$' are reserved",
        ));
    }
    if let Some(will) = &connect.will {
        if will.qos == QoS::ExactlyOnce {
            return Err(Refusal::close("last will with QoS 2 (not supported)"));
        }
        if will.message.len() > limits.max_payload_bytes {
            return Err(Refusal::close(format!(
                "last will payload is {} bytes, limit is {}",
                will.message.len(),
                limits.max_payload_bytes
            )));
        }
        crate::validate_topic_name(&will.topic, limits)
            .and_then(|()| crate::validate_client_publish(&will.topic))
            .map_err(|error| {
                Refusal::close(format!("last will topic {:?}: {error}", will.topic))
            })?;
    }
    Ok(())
}

/// Checks a client's PUBLISH; the error is the reason the connection is closed.
pub fn check_publish(publish: &Publish, limits: &Limits) -> Result<(), String> {
    if publish.qos == QoS::ExactlyOnce {
        return Err("QoS 2 is not supported (IoT Core)".into());
    }
    if publish.payload.len() > limits.max_payload_bytes {
        return Err(format!(
            "payload is {} bytes, limit is {}",
            publish.payload.len(),
            limits.max_payload_bytes
        ));
    }
    crate::validate_topic_name(&publish.topic, limits)
        .and_then(|()| crate::validate_client_publish(&publish.topic))
        .map_err(|error| format!("topic {:?}: {error}", publish.topic))
}

/// Checks a SUBSCRIBE; `count_after` is the connection's subscription count if it were
/// granted.
pub fn check_subscribe(
    subscribe: &Subscribe,
    count_after: usize,
    limits: &Limits,
) -> Result<(), String> {
    if subscribe.filters.len() > limits.max_filters_per_subscribe {
        return Err(format!(
            "{} topic filters in one SUBSCRIBE, limit is {}",
            subscribe.filters.len(),
            limits.max_filters_per_subscribe
        ));
    }
    for wanted in &subscribe.filters {
        if wanted.qos == QoS::ExactlyOnce {
            return Err(format!(
                "QoS 2 requested for {:?}: not supported (IoT Core)",
                wanted.filter
            ));
        }
        crate::validate_topic_filter(&wanted.filter, limits)
            .map_err(|error| format!("topic filter {:?}: {error}", wanted.filter))?;
    }
    if count_after > limits.max_subscriptions_per_connection {
        return Err(format!(
            "{count_after} subscriptions on one connection, limit is {}",
            limits.max_subscriptions_per_connection
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqtt::{LastWill, Protocol, SubscribeFilter};

    fn connect(client_id: &str) -> Connect {
        Connect {
            protocol: Protocol::V311,
            keep_alive: 60,
            client_id: client_id.into(),
            clean_session: false,
            will: None,
            username: None,
            password: None,
        }
    }

    #[test]
    fn client_id_rules() {
        let limits = Limits::default();
        assert!(check_connect(&connect("ok"), &limits).is_ok());
        let refused = check_connect(&connect(""), &limits).unwrap_err();
        assert_eq!(refused.code, Some(ConnectReturnCode::IdentifierRejected));
        let long = "x".repeat(129);
        let refused = check_connect(&connect(&long), &limits).unwrap_err();
        assert!(refused.reason.contains("129"), "{}", refused.reason);
        assert!(check_connect(&connect(&"x".repeat(128)), &limits).is_ok());
    }

    #[test]
    fn will_topic_and_size_are_checked() {
        let limits = Limits::default();
        let mut with_will = connect("c");
        with_will.will = Some(LastWill {
            topic: "$aws/events/presence/x".into(),
            message: Bytes::from_static(b"bye"),
            qos: QoS::AtMostOnce,
            retain: false,
        });
        assert_eq!(check_connect(&with_will, &limits).unwrap_err().code, None);
    }

    #[test]
    fn publish_limits() {
        let limits = Limits {
            max_payload_bytes: 4,
            ..Limits::default()
        };
        let publish = |topic: &str, payload: &'static [u8], qos| Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.into(),
            pkid: 1,
            payload: Bytes::from_static(payload),
        };
        assert!(check_publish(&publish("a", b"1234", QoS::AtLeastOnce), &limits).is_ok());
        assert!(
            check_publish(&publish("a", b"12345", QoS::AtLeastOnce), &limits)
                .unwrap_err()
                .contains("limit is 4")
        );
        assert!(check_publish(&publish("a", b"1", QoS::ExactlyOnce), &limits).is_err());
        assert!(check_publish(
            &publish("a/b/c/d/e/f/g/h/i", b"1", QoS::AtMostOnce),
            &limits
        )
        .is_err());
    }

    #[test]
    fn subscribe_limits() {
        let limits = Limits::default();
        let subscribe = |count: usize, qos| Subscribe {
            pkid: 1,
            filters: (0..count)
                .map(|i| SubscribeFilter {
                    filter: format!("t/{i}"),
                    qos,
                })
                .collect(),
        };
        assert!(check_subscribe(&subscribe(8, QoS::AtLeastOnce), 8, &limits).is_ok());
        assert!(check_subscribe(&subscribe(9, QoS::AtLeastOnce), 9, &limits).is_err());
        assert!(check_subscribe(&subscribe(1, QoS::AtLeastOnce), 51, &limits).is_err());
        assert!(check_subscribe(&subscribe(1, QoS::ExactlyOnce), 1, &limits).is_err());
    }
}
