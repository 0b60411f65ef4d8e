//! What an application message carries besides topic, payload and QoS: its MQTT 5
//! properties and when it expires. Shared (behind an `Arc`) by every delivery of one
//! publish, and absent for a 3.1.1 publish or an MQTT 5 one without properties, so a
//! message without them costs one null pointer per delivery.

use mqtt::{PublishProperties, WillProperties};

/// IoT Core's bounds for a Message Expiry Interval: 0 counts as 1 s, more than 7 days as
/// 7 days.
pub const MIN_MESSAGE_EXPIRY_SECS: u32 = 1;
pub const MAX_MESSAGE_EXPIRY_SECS: u32 = 7 * 24 * 60 * 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// As the publisher sent them, without Topic Alias and Subscription Identifiers (they
    /// belong to one connection); the Message Expiry Interval is rewritten per delivery.
    pub properties: PublishProperties,
    /// Unix ms from which the message is no longer delivered.
    pub expires_at_ms: Option<u64>,
}

impl MessageMeta {
    /// The metadata of a publish received now; `None` when there is nothing to carry
    /// (3.1.1, or MQTT 5 without properties). `now_ms` is asked only for an expiry.
    pub fn from_publish(
        mut properties: PublishProperties,
        now_ms: impl FnOnce() -> u64,
    ) -> Option<MessageMeta> {
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        if properties.is_empty() {
            return None;
        }
        let expires_at_ms = properties.message_expiry_interval.map(|secs| {
            let secs = secs.clamp(MIN_MESSAGE_EXPIRY_SECS, MAX_MESSAGE_EXPIRY_SECS);
            properties.message_expiry_interval = Some(secs);
            now_ms() + u64::from(secs) * 1000
        });
        Some(MessageMeta {
            properties,
            expires_at_ms,
        })
    }

    /// The metadata of a will message, published at `now_ms` (its expiry starts then).
    pub fn from_will(will: &WillProperties, now_ms: u64) -> Option<MessageMeta> {
        let properties = PublishProperties {
            payload_format_indicator: will.payload_format_indicator,
            message_expiry_interval: will.message_expiry_interval,
            topic_alias: None,
            response_topic: will.response_topic.clone(),
            correlation_data: will.correlation_data.clone(),
            user_properties: will.user_properties.clone(),
            subscription_identifiers: Vec::new(),
            content_type: will.content_type.clone(),
        };
        MessageMeta::from_publish(properties, || now_ms)
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }

    /// Whether a message with this metadata (if any) has expired; `now_ms` is asked only
    /// for one with an expiry, so messages without any never read the clock.
    pub fn has_expired(meta: Option<&MessageMeta>, now_ms: impl FnOnce() -> u64) -> bool {
        meta.is_some_and(|meta| meta.expires_at_ms.is_some() && meta.is_expired(now_ms()))
    }

    /// The properties to send at `now_ms`: the Message Expiry Interval becomes the time
    /// left, in whole seconds (MQTT-3.3.2-6). Borrowed unless it has to change.
    pub fn properties_at(&self, now_ms: u64) -> std::borrow::Cow<'_, PublishProperties> {
        match self.expires_at_ms {
            None => std::borrow::Cow::Borrowed(&self.properties),
            Some(at) => {
                let mut properties = self.properties.clone();
                let left = at.saturating_sub(now_ms) / 1000;
                properties.message_expiry_interval = Some(u32::try_from(left).unwrap_or(u32::MAX));
                std::borrow::Cow::Owned(properties)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_clamped_and_counted_down() {
        let properties = |mei| PublishProperties {
            message_expiry_interval: Some(mei),
            ..PublishProperties::default()
        };
        let zero = MessageMeta::from_publish(properties(0), || 1_000).unwrap();
        assert_eq!(zero.expires_at_ms, Some(2_000), "0 counts as 1 s");
        let huge = MessageMeta::from_publish(properties(u32::MAX), || 0).unwrap();
        assert_eq!(huge.properties.message_expiry_interval, Some(604_800));
        let thirty = MessageMeta::from_publish(properties(30), || 0).unwrap();
        assert_eq!(
            thirty.properties_at(20_500).message_expiry_interval,
            Some(9),
            "time left, whole seconds"
        );
        assert!(!thirty.is_expired(29_999));
        assert!(thirty.is_expired(30_000));
    }

    #[test]
    fn nothing_to_carry_is_none() {
        let alias_only = PublishProperties {
            topic_alias: Some(3),
            subscription_identifiers: vec![1],
            ..PublishProperties::default()
        };
        assert_eq!(MessageMeta::from_publish(alias_only, || 0), None);
    }
}
