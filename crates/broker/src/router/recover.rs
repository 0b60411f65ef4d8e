//! Rebuilding the data plane from what the durable store held at start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt::QoS;

use super::{RetainedMessage, Router};
use crate::clock::unix_millis;
use crate::session::{Session, SessionKind};
use crate::store::{Op, Recovered};

impl Router {
    /// Rebuilds persistent sessions (offline, with their subscriptions and queued QoS 1
    /// messages) and retained messages.
    pub(super) fn recover(&self, recovered: Recovered) {
        let now_ms = unix_millis();
        let (mut sessions, mut messages) = (0, 0);
        for (client_id, record, queued) in recovered.sessions {
            let remaining = record
                .expires_at_ms
                .map(|at| Duration::from_millis(at.saturating_sub(now_ms)));
            // Expired while the broker was down, or one whose expiry was 0 when it stopped
            // (an MQTT 5 session resumed with expiry 0 ends with its connection).
            if remaining == Some(Duration::ZERO) || record.expiry_ms == Some(0) {
                if let Some(store) = &self.store {
                    store.submit(Op::DeleteSession(client_id.into()));
                }
                continue;
            }
            // A session that was connected when the broker stopped expires as if it had
            // just disconnected.
            let expiry = record
                .expiry_ms
                .filter(|ms| *ms > 0)
                .map_or(self.config.session_expiry, Duration::from_millis);
            let expires_at = Instant::now() + remaining.unwrap_or(expiry);
            let subscriptions: Vec<(String, QoS)> = record
                .subscriptions
                .iter()
                .map(|(filter, qos)| {
                    (
                        filter.clone(),
                        QoS::from_u8(*qos).unwrap_or(QoS::AtMostOnce),
                    )
                })
                .collect();
            let mut state = self.new_session_state();
            for (filter, qos) in &subscriptions {
                state.subscribe(filter, *qos);
            }
            messages += queued.len();
            state.restore(queued);
            let session = Arc::new(Session::new(
                client_id.as_str().into(),
                SessionKind {
                    expiry,
                    mqtt5: record.mqtt5,
                },
                state,
                None,
                Some(expires_at),
                self.store.clone(),
                self.budget.clone(),
            ));
            for (filter, qos) in &subscriptions {
                self.index_subscription(&session, filter, *qos);
            }
            self.sessions
                .lock()
                .insert(session.client_id.clone(), session);
            sessions += 1;
        }
        let retained = recovered.retained.len();
        for message in recovered.retained {
            let topic = message.topic;
            self.retained.write().insert(
                topic.clone(),
                RetainedMessage {
                    topic,
                    payload: message.payload,
                    qos: message.qos,
                    meta: message.meta,
                },
            );
        }
        if self.store.is_some() {
            tracing::info!(sessions, messages, retained, "durable store recovered");
        }
    }
}
