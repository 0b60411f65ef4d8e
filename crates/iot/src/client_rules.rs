//! IoT Core's rules for what a client sends, as pure checks. Each refusal says why, in
//! words a log reader can act on; the connection task decides how to answer.

use crate::Limits;
use mqtt::{Connect, DecodeError, Publish, QoS, ReasonCode, Subscribe};

/// A refused CONNECT: the CONNACK reason code to answer with (`None`: just close, as IoT
/// Core does under 3.1.1 for an oversize or malformed CONNECT) and the reason for the log.
/// Toward a 3.1.1 client the codec turns the reason code into the nearest return code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Option<ReasonCode>,
    pub reason: String,
}

impl Refusal {
    fn answer(code: ReasonCode, reason: impl Into<String>) -> Refusal {
        Refusal {
            code: Some(code),
            reason: reason.into(),
        }
    }

    /// MQTT 5 clients get `code`; 3.1.1 clients are disconnected without CONNACK.
    fn answer_v5(connect: &Connect, code: ReasonCode, reason: impl Into<String>) -> Refusal {
        Refusal {
            code: connect.protocol.is_v5().then_some(code),
            reason: reason.into(),
        }
    }

    pub fn not_authorized(reason: impl Into<String>) -> Refusal {
        Refusal::answer(ReasonCode::NOT_AUTHORIZED, reason)
    }

    /// IoT Core answers an excess CONNECT with "server unavailable" (reason THROTTLED);
    /// MQTT 5 has a code of its own for it.
    pub fn throttled(connect: &Connect, limit: u32) -> Refusal {
        let code = if connect.protocol.is_v5() {
            ReasonCode::CONNECTION_RATE_EXCEEDED
        } else {
            ReasonCode::SERVER_UNAVAILABLE
        };
        Refusal::answer(
            code,
            format!("THROTTLED: more than {limit} CONNECT per second for this client id"),
        )
    }
}

/// A refused PUBLISH or SUBSCRIBE: the MQTT 5 reason code that says why (in a PUBACK,
/// SUBACK or DISCONNECT, as the handler decides) and the reason for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub code: ReasonCode,
    pub reason: String,
}

impl Rejected {
    fn new(code: ReasonCode, reason: impl Into<String>) -> Rejected {
        Rejected {
            code,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The largest packet the decoder accepts (and MQTT 5's CONNACK Maximum Packet Size).
/// Payload size itself is checked after decoding, so a PUBLISH within the packet bound but
/// over the payload limit is refused with the precise reason.
pub fn max_packet_size(limits: &Limits) -> usize {
    limits.max_packet_bytes
}

pub fn is_unsupported_protocol_level(error: &DecodeError) -> bool {
    matches!(error, DecodeError::UnsupportedProtocolLevel(_))
}

/// IoT Core's CONNECT rules. An MQTT 5 client with an empty client id is given one by the
/// broker (Assigned Client Identifier), so only 3.1.1 refuses it here.
pub fn check_connect(connect: &Connect, limits: &Limits) -> Result<(), Refusal> {
    let id = &connect.client_id;
    let v5 = connect.protocol.is_v5();
    if connect.properties.authentication_method.is_some() {
        return Err(Refusal::answer(
            ReasonCode::BAD_AUTHENTICATION_METHOD,
            "enhanced authentication (Authentication Method) is not supported (IoT Core)",
        ));
    }
    if id.is_empty() && !v5 {
        return Err(Refusal::answer(
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            "empty client id requires clean session (MQTT-3.1.3-8)",
        ));
    }
    if id.len() > limits.max_client_id_bytes {
        return Err(Refusal::answer(
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            format!(
                "client id is {} bytes, limit is {}",
                id.len(),
                limits.max_client_id_bytes
            ),
        ));
    }
    if id.starts_with('$') {
        return Err(Refusal::answer(
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            "client ids starting with '$' are reserved",
        ));
    }
    if let Some(will) = &connect.will {
        if will.qos == QoS::ExactlyOnce {
            return Err(Refusal::answer_v5(
                connect,
                ReasonCode::QOS_NOT_SUPPORTED,
                "last will with QoS 2 (not supported)",
            ));
        }
        if will.message.len() > limits.max_payload_bytes {
            return Err(Refusal::answer_v5(
                connect,
                ReasonCode::PACKET_TOO_LARGE,
                format!(
                    "last will payload is {} bytes, limit is {}",
                    will.message.len(),
                    limits.max_payload_bytes
                ),
            ));
        }
        crate::validate_topic_name(&will.topic, limits)
            .and_then(|()| crate::validate_client_publish(&will.topic))
            .map_err(|error| {
                Refusal::answer_v5(
                    connect,
                    ReasonCode::TOPIC_NAME_INVALID,
                    format!("last will topic {:?}: {error}", will.topic),
                )
            })?;
    }
    Ok(())
}

/// Checks a client's PUBLISH (its topic already resolved from a topic alias).
pub fn check_publish(publish: &Publish, limits: &Limits) -> Result<(), Rejected> {
    if publish.qos == QoS::ExactlyOnce {
        return Err(Rejected::new(
            ReasonCode::QOS_NOT_SUPPORTED,
            "QoS 2 is not supported (IoT Core)",
        ));
    }
    if publish.payload.len() > limits.max_payload_bytes {
        return Err(Rejected::new(
            ReasonCode::PACKET_TOO_LARGE,
            format!(
                "payload is {} bytes, limit is {}",
                publish.payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    crate::validate_topic_name(&publish.topic, limits)
        .and_then(|()| crate::validate_client_publish(&publish.topic))
        .map_err(|error| {
            // A service's own topic is a well-formed topic the client may not publish to:
            // answered as a denied publish (PUBACK 0x87 under MQTT 5).
            let code = match error {
                crate::TopicError::ServicePublished(_) => ReasonCode::NOT_AUTHORIZED,
                _ => ReasonCode::TOPIC_NAME_INVALID,
            };
            Rejected::new(code, format!("topic {:?}: {error}", publish.topic))
        })?;
    if let Some(response_topic) = &publish.properties.response_topic {
        crate::validate_topic_name(response_topic, limits).map_err(|error| {
            Rejected::new(
                ReasonCode::TOPIC_NAME_INVALID,
                format!("response topic {response_topic:?}: {error}"),
            )
        })?;
    }
    Ok(())
}

/// Checks what applies to a SUBSCRIBE as a whole; `count_after` is the connection's
/// subscription count if it were granted. Refusals here close a 3.1.1 connection and
/// disconnect an MQTT 5 one with the code given.
pub fn check_subscribe(
    subscribe: &Subscribe,
    count_after: usize,
    limits: &Limits,
) -> Result<(), Rejected> {
    if subscribe.properties.subscription_identifier.is_some() {
        return Err(Rejected::new(
            ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
            "DISCONNECT: Subscription Id is not supported now",
        ));
    }
    if subscribe.filters.len() > limits.max_filters_per_subscribe {
        return Err(Rejected::new(
            ReasonCode::QUOTA_EXCEEDED,
            format!(
                "{} topic filters in one SUBSCRIBE, limit is {}",
                subscribe.filters.len(),
                limits.max_filters_per_subscribe
            ),
        ));
    }
    for wanted in &subscribe.filters {
        // MQTT-3.8.3-4: No Local on a shared subscription is a protocol error.
        if wanted.no_local && crate::shared_filter(&wanted.filter).is_some() {
            return Err(Rejected::new(
                ReasonCode::PROTOCOL_ERROR,
                format!(
                    "No Local set on the shared subscription {:?}",
                    wanted.filter
                ),
            ));
        }
    }
    if count_after > limits.max_subscriptions_per_connection {
        return Err(Rejected::new(
            ReasonCode::QUOTA_EXCEEDED,
            format!(
                "{count_after} subscriptions on one connection, limit is {}",
                limits.max_subscriptions_per_connection
            ),
        ));
    }
    Ok(())
}

/// Checks one filter of a SUBSCRIBE. A 3.1.1 connection is closed for a refusal (QoS 2
/// included, as IoT Core); an MQTT 5 one gets SUBACK 0x8F for that filter, and QoS 2 is
/// granted as QoS 1 (MQTT-3.2.2-10: a server without QoS 2 still accepts the request).
pub fn check_filter(filter: &str, qos: QoS, v5: bool, limits: &Limits) -> Result<(), Rejected> {
    if qos == QoS::ExactlyOnce && !v5 {
        return Err(Rejected::new(
            ReasonCode::QOS_NOT_SUPPORTED,
            format!("QoS 2 requested for {filter:?}: not supported (IoT Core)"),
        ));
    }
    crate::validate_topic_filter(filter, limits).map_err(|error| {
        Rejected::new(
            ReasonCode::TOPIC_FILTER_INVALID,
            format!("topic filter {filter:?}: {error}"),
        )
    })
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
            properties: Default::default(),
        }
    }

    #[test]
    fn client_id_rules() {
        let limits = Limits::default();
        assert!(check_connect(&connect("ok"), &limits).is_ok());
        let refused = check_connect(&connect(""), &limits).unwrap_err();
        assert_eq!(refused.code, Some(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID));
        let mut v5 = connect("");
        v5.protocol = Protocol::V5;
        assert!(
            check_connect(&v5, &limits).is_ok(),
            "MQTT 5 gets an assigned id"
        );
        v5.client_id = "$GEN/abc".into();
        assert!(check_connect(&v5, &limits).is_err());
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
            properties: Default::default(),
        });
        assert_eq!(check_connect(&with_will, &limits).unwrap_err().code, None);
        with_will.protocol = Protocol::V5;
        assert_eq!(
            check_connect(&with_will, &limits).unwrap_err().code,
            Some(ReasonCode::TOPIC_NAME_INVALID)
        );
        if let Some(will) = &mut with_will.will {
            will.topic = "ok".into();
            will.qos = QoS::ExactlyOnce;
        }
        assert_eq!(
            check_connect(&with_will, &limits).unwrap_err().code,
            Some(ReasonCode::QOS_NOT_SUPPORTED)
        );
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
            properties: Default::default(),
        };
        assert!(check_publish(&publish("a", b"1234", QoS::AtLeastOnce), &limits).is_ok());
        assert!(
            check_publish(&publish("a", b"12345", QoS::AtLeastOnce), &limits)
                .unwrap_err()
                .reason
                .contains("limit is 4")
        );
        assert!(check_publish(&publish("a", b"1", QoS::ExactlyOnce), &limits).is_err());
        let answer = "$aws/things/t/shadow/update/accepted";
        assert_eq!(
            check_publish(&publish(answer, b"{}", QoS::AtLeastOnce), &limits)
                .unwrap_err()
                .code,
            ReasonCode::NOT_AUTHORIZED
        );
        let request = "$aws/things/t/shadow/update";
        assert!(check_publish(&publish(request, b"{}", QoS::AtLeastOnce), &limits).is_ok());
        assert_eq!(
            check_publish(&publish("$aws/events/x", b"1", QoS::AtLeastOnce), &limits)
                .unwrap_err()
                .code,
            ReasonCode::TOPIC_NAME_INVALID
        );
        assert!(check_publish(
            &publish("a/b/c/d/e/f/g/h/i", b"1", QoS::AtMostOnce),
            &limits
        )
        .is_err());
    }

    #[test]
    fn shared_subscription_filters() {
        let limits = Limits::default();
        for good in ["$share/g/t/#", "$share/g/a/b/c/d/e/f/g/h", "$share/g/+"] {
            assert!(
                check_filter(good, QoS::AtLeastOnce, true, &limits).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "$share/+/t",
            "$share/g",
            "$share//t",
            "$share/g/",
            "$share/g/a/b/c/d/e/f/g/h/i",
        ] {
            let refused = check_filter(bad, QoS::AtLeastOnce, true, &limits).unwrap_err();
            assert_eq!(refused.code, ReasonCode::TOPIC_FILTER_INVALID, "{bad}");
        }
        let long_name = format!("$share/{}/t", "n".repeat(129));
        assert!(check_filter(&long_name, QoS::AtMostOnce, true, &limits).is_err());
        let mut shared = Subscribe {
            pkid: 1,
            filters: vec![SubscribeFilter::new("$share/g/t", QoS::AtLeastOnce)],
            properties: Default::default(),
        };
        shared.filters[0].no_local = true;
        assert_eq!(
            check_subscribe(&shared, 1, &limits).unwrap_err().code,
            ReasonCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn subscribe_limits() {
        let limits = Limits::default();
        let subscribe = |count: usize, qos| Subscribe {
            pkid: 1,
            filters: (0..count)
                .map(|i| SubscribeFilter::new(format!("t/{i}"), qos))
                .collect(),
            properties: Default::default(),
        };
        assert!(check_subscribe(&subscribe(8, QoS::AtLeastOnce), 8, &limits).is_ok());
        assert!(check_subscribe(&subscribe(9, QoS::AtLeastOnce), 9, &limits).is_err());
        assert!(check_subscribe(&subscribe(1, QoS::AtLeastOnce), 51, &limits).is_err());
        assert!(check_filter("t", QoS::ExactlyOnce, false, &limits).is_err());
        assert!(check_filter("t", QoS::ExactlyOnce, true, &limits).is_ok());
        let mut with_id = subscribe(1, QoS::AtLeastOnce);
        with_id.properties.subscription_identifier = Some(7);
        assert_eq!(
            check_subscribe(&with_id, 1, &limits).unwrap_err().code,
            ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED
        );
    }
}
