//! The decisions of the iOS shadow helper (`AWSIoTDataManager.m`), without sockets, timers
//! or callbacks: what a request carries (clientToken, version), whether an operation may
//! start, and what an incoming answer means (stale, foreign, ours). The shells in
//! `callback.rs` and `client.rs` only move bytes and run timers.

use ::shadow::topic::{Operation, Response};
use serde_json::{Map, Value};

use super::{ShadowOperation, ShadowOperationStatus, ShadowOptions};

/// How much of the client id a generated clientToken keeps: the service limits tokens to
/// 64 bytes while client ids may be 128, so iOS keeps the last 48 characters.
pub(crate) const TOKEN_CLIENT_ID_CHARS: usize = 48;

/// The rolling counter of generated clientTokens (one per manager; iOS keeps one per
/// process). The first token ends in `-1`.
#[derive(Debug, Default)]
pub(crate) struct ClientTokens {
    issued: u64,
}

impl ClientTokens {
    /// `<last 48 characters of client_id>-<counter>`.
    pub(crate) fn next(&mut self, client_id: &str) -> String {
        self.issued += 1;
        let chars = client_id.chars().count();
        let tail: String = client_id
            .chars()
            .skip(chars.saturating_sub(TOKEN_CLIENT_ID_CHARS))
            .collect();
        format!("{tail}-{}", self.issued)
    }
}

/// Why an operation was not started (the iOS call returns NO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// An operation on this shadow is waiting for its answer or its timeout.
    InProgress,
    /// The update's JSON does not parse as a JSON object.
    NotAnObject,
    /// The update's JSON carries `version`, which the helper reserves for itself.
    ContainsVersion,
    /// A `clientToken` in the update's JSON is not a string.
    InvalidClientToken,
}

/// The body of an `update_shadow` call: a JSON object without `version` (iOS refuses one
/// because versioning is the helper's job).
pub(crate) fn update_body(json: &str) -> Result<Map<String, Value>, Refused> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(body)) if body.contains_key("version") => Err(Refused::ContainsVersion),
        Ok(Value::Object(body)) => Ok(body),
        _ => Err(Refused::NotAnObject),
    }
}

/// A request ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Begun {
    /// The JSON payload for `…/<operation>`.
    pub(crate) payload: Vec<u8>,
    /// The clientToken it carries.
    pub(crate) client_token: String,
    /// Identifies this operation for [`ShadowState::on_timeout`] and
    /// [`ShadowState::abandon`].
    pub(crate) seq: u64,
}

/// What the registered callback is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) operation: ShadowOperation,
    pub(crate) status: ShadowOperationStatus,
    /// The answer's clientToken for the answer to our operation; otherwise (delta,
    /// documents, foreign updates, timeouts) the token of our latest operation, as iOS.
    pub(crate) client_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    operation: Operation,
    seq: u64,
}

/// One registered shadow's helper state: the last version seen, the operation in
/// flight (iOS: the timer), and the latest clientToken.
#[derive(Debug, Clone)]
pub(crate) struct ShadowState {
    versioning: bool,
    stale_discards: bool,
    foreign_updates: bool,
    /// The highest `version` seen on an accepted, delta or documents message; 0 = none.
    version: u64,
    pending: Option<Pending>,
    /// iOS `shadow.clientToken`: set when an operation starts, kept after it ends.
    client_token: Option<String>,
    started: u64,
}

impl ShadowState {
    pub(crate) fn new(options: &ShadowOptions) -> ShadowState {
        ShadowState {
            versioning: options.versioning,
            stale_discards: options.stale_discards,
            foreign_updates: options.foreign_update_notifications,
            version: 0,
            pending: None,
            client_token: None,
            started: 0,
        }
    }

    /// True while an operation waits for its answer or its timeout.
    pub(crate) fn in_progress(&self) -> bool {
        self.pending.is_some()
    }

    /// The operation in flight.
    pub(crate) fn pending_seq(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.seq)
    }

    /// The highest version seen so far (0 before any).
    #[cfg(test)]
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Start `operation` with `body` (the update's object, or empty for get/delete):
    /// refused while another operation is in flight; the clientToken is `client_token`,
    /// else the body's, else `generate()`; `version` is added when versioning is on and a
    /// version is known — on every operation, as iOS does.
    pub(crate) fn begin(
        &mut self,
        operation: Operation,
        mut body: Map<String, Value>,
        client_token: Option<&str>,
        generate: impl FnOnce() -> String,
    ) -> Result<Begun, Refused> {
        if self.pending.is_some() {
            return Err(Refused::InProgress);
        }
        let token = match (client_token, body.get("clientToken")) {
            (Some(token), _) => token.to_owned(),
            (None, Some(Value::String(token))) => token.clone(),
            (None, Some(_)) => return Err(Refused::InvalidClientToken),
            (None, None) => generate(),
        };
        body.insert("clientToken".into(), Value::String(token.clone()));
        if self.versioning && self.version > 0 {
            body.insert("version".into(), Value::from(self.version));
        }
        self.started += 1;
        self.pending = Some(Pending {
            operation,
            seq: self.started,
        });
        self.client_token = Some(token.clone());
        Ok(Begun {
            payload: serde_json::to_vec(&Value::Object(body)).expect("JSON values serialize"),
            client_token: token,
            seq: self.started,
        })
    }

    /// The publish of operation `seq` failed before reaching the connection: it is not in
    /// flight after all.
    pub(crate) fn abandon(&mut self, seq: u64) {
        if self.pending.as_ref().is_some_and(|p| p.seq == seq) {
            self.pending = None;
        }
    }

    /// The timer of operation `seq` fired: a Timeout event if it is still in flight.
    pub(crate) fn on_timeout(&mut self, seq: u64) -> Option<Event> {
        let pending = self.pending.take_if(|p| p.seq == seq)?;
        Some(Event {
            operation: pending.operation.into(),
            status: ShadowOperationStatus::Timeout,
            client_token: self.client_token.clone(),
        })
    }

    /// An answer arrived on `…/<operation>/<response>`. `None` when nothing is to be told:
    /// not a JSON object, stale (a lower version than seen, except on delete, with stale
    /// discards on), someone else's answer without foreign notifications, or a foreign
    /// get/rejected.
    pub(crate) fn on_message(
        &mut self,
        operation: Operation,
        response: Response,
        payload: &[u8],
    ) -> Option<Event> {
        let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(payload) else {
            return None;
        };
        if response != Response::Rejected {
            if let Some(version) = message.get("version").and_then(Value::as_u64) {
                if version >= self.version {
                    self.version = version;
                } else if operation != Operation::Delete && self.stale_discards {
                    // Out of order (a lower version after a higher one); a delete's lower
                    // version is a re-created shadow's history, not staleness.
                    return None;
                }
            }
        }
        let status = match response {
            Response::Delta => ShadowOperationStatus::Delta,
            Response::Documents => ShadowOperationStatus::Documents,
            Response::Accepted => ShadowOperationStatus::Accepted,
            Response::Rejected => ShadowOperationStatus::Rejected,
        };
        if matches!(response, Response::Delta | Response::Documents) {
            return Some(Event {
                operation: operation.into(),
                status,
                client_token: self.client_token.clone(),
            });
        }
        let token = message.get("clientToken").and_then(Value::as_str);
        let ours =
            self.pending.is_some() && token.is_some() && token == self.client_token.as_deref();
        if !ours {
            let foreign = response == Response::Accepted
                && operation != Operation::Get
                && self.foreign_updates;
            return foreign.then(|| Event {
                operation: operation.into(),
                status: ShadowOperationStatus::ForeignUpdate,
                client_token: self.client_token.clone(),
            });
        }
        self.pending = None;
        Some(Event {
            operation: operation.into(),
            status,
            client_token: token.map(str::to_owned),
        })
    }
}

/// The clientToken an answer carries, if it is a JSON object with one.
pub(crate) fn answer_token(answer: &Value) -> Option<&str> {
    answer.get("clientToken").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use ShadowOperationStatus::*;

    fn options() -> ShadowOptions {
        ShadowOptions::default()
    }

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn payload(b: &Begun) -> Value {
        serde_json::from_slice(&b.payload).unwrap()
    }

    fn bytes(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn tokens_keep_the_last_48_characters_and_count_from_1() {
        let mut tokens = ClientTokens::default();
        assert_eq!(tokens.next("app-1"), "app-1-1");
        assert_eq!(tokens.next("app-1"), "app-1-2");
        let long: String = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
        assert_eq!(long.len(), 62);
        let token = tokens.next(&long);
        assert_eq!(token, format!("{}-3", &long[14..]));
        assert_eq!(token.len(), 48 + 2);
        // Characters, not bytes: a multi-byte id is not cut inside a character.
        let wide = "é".repeat(50);
        assert_eq!(tokens.next(&wide), format!("{}-4", "é".repeat(48)));
    }

    #[test]
    fn update_bodies_are_objects_without_version() {
        assert_eq!(
            update_body(r#"{"state":{"desired":{"on":true}}}"#),
            Ok(body(json!({"state":{"desired":{"on":true}}})))
        );
        assert_eq!(
            update_body(r#"{"state":{},"version":3}"#),
            Err(Refused::ContainsVersion)
        );
        for bad in ["", "[1]", "\"x\"", "{", "null"] {
            assert_eq!(update_body(bad), Err(Refused::NotAnObject), "{bad}");
        }
    }

    #[test]
    fn requests_carry_a_token_given_found_or_generated() {
        let mut st = ShadowState::new(&options());
        let b = st
            .begin(Operation::Get, Map::new(), None, || "gen-1".into())
            .unwrap();
        assert_eq!(payload(&b), json!({"clientToken": "gen-1"}));
        assert_eq!(b.client_token, "gen-1");
        st.abandon(b.seq);
        // The caller's token wins over the body's; the body's over a generated one.
        let b = st
            .begin(
                Operation::Update,
                body(json!({"state": {}, "clientToken": "in-body"})),
                Some("given"),
                || unreachable!(),
            )
            .unwrap();
        assert_eq!(payload(&b)["clientToken"], "given");
        st.abandon(b.seq);
        let b = st
            .begin(
                Operation::Update,
                body(json!({"state": {}, "clientToken": "in-body"})),
                None,
                || unreachable!(),
            )
            .unwrap();
        assert_eq!(b.client_token, "in-body");
        st.abandon(b.seq);
        assert_eq!(
            st.begin(
                Operation::Update,
                body(json!({"state": {}, "clientToken": 7})),
                None,
                || unreachable!()
            ),
            Err(Refused::InvalidClientToken)
        );
    }

    #[test]
    fn one_operation_at_a_time() {
        let mut st = ShadowState::new(&options());
        let first = st
            .begin(Operation::Update, Map::new(), Some("t1"), || unreachable!())
            .unwrap();
        assert!(st.in_progress());
        assert_eq!(
            st.begin(Operation::Get, Map::new(), Some("t2"), || unreachable!()),
            Err(Refused::InProgress)
        );
        // Its answer ends it; the next may start.
        let ev = st
            .on_message(
                Operation::Update,
                Response::Accepted,
                &bytes(json!({"version": 1, "clientToken": "t1"})),
            )
            .unwrap();
        assert_eq!(
            ev,
            Event {
                operation: ShadowOperation::Update,
                status: Accepted,
                client_token: Some("t1".into())
            }
        );
        assert!(!st.in_progress());
        // A late timer of the finished operation does nothing.
        assert_eq!(st.on_timeout(first.seq), None);
        assert!(st
            .begin(Operation::Get, Map::new(), Some("t2"), || unreachable!())
            .is_ok());
    }

    #[test]
    fn timeout_reports_the_pending_operation_and_token() {
        let mut st = ShadowState::new(&options());
        let b = st
            .begin(
                Operation::Delete,
                Map::new(),
                Some("d-1"),
                || unreachable!(),
            )
            .unwrap();
        assert_eq!(st.on_timeout(b.seq + 1), None);
        assert_eq!(
            st.on_timeout(b.seq),
            Some(Event {
                operation: ShadowOperation::Delete,
                status: Timeout,
                client_token: Some("d-1".into())
            })
        );
        assert!(!st.in_progress());
        assert_eq!(st.on_timeout(b.seq), None);
        // After the timeout the late answer is someone else's (no callback by default).
        assert_eq!(
            st.on_message(
                Operation::Delete,
                Response::Accepted,
                &bytes(json!({"version": 2, "clientToken": "d-1"}))
            ),
            None
        );
    }

    #[test]
    fn version_is_added_only_with_versioning_and_a_known_version() {
        let mut off = ShadowState::new(&options());
        let mut on = ShadowState::new(&options().versioning(true));
        for st in [&mut off, &mut on] {
            let b = st
                .begin(Operation::Get, Map::new(), Some("g"), || unreachable!())
                .unwrap();
            assert_eq!(payload(&b), json!({"clientToken": "g"}), "no version known");
            st.on_message(
                Operation::Get,
                Response::Accepted,
                &bytes(json!({"state": {}, "version": 7, "clientToken": "g"})),
            );
            assert_eq!(st.version(), 7);
        }
        let b = off
            .begin(Operation::Update, Map::new(), Some("u"), || unreachable!())
            .unwrap();
        assert_eq!(payload(&b).get("version"), None);
        // On every operation, get and delete included, as iOS.
        for op in Operation::ALL {
            let b = on
                .begin(op, Map::new(), Some("u"), || unreachable!())
                .unwrap();
            assert_eq!(payload(&b)["version"], 7, "{op:?}");
            on.abandon(b.seq);
        }
    }

    #[test]
    fn rejections_do_not_move_the_version() {
        let mut st = ShadowState::new(&options().versioning(true));
        st.on_message(
            Operation::Update,
            Response::Delta,
            &bytes(json!({"version": 4, "state": {"on": true}})),
        );
        let b = st
            .begin(Operation::Update, Map::new(), Some("u"), || unreachable!())
            .unwrap();
        let ev = st
            .on_message(
                Operation::Update,
                Response::Rejected,
                &bytes(json!({"code": 409, "message": "Version conflict", "version": 9, "clientToken": "u"})),
            )
            .unwrap();
        assert_eq!(ev.status, Rejected);
        assert_eq!(st.version(), 4);
        assert!(!st.in_progress());
        let _ = b;
    }

    #[test]
    fn stale_messages_are_discarded_except_deletes() {
        let mut st = ShadowState::new(&options());
        let delta = |v: u64| bytes(json!({"version": v, "state": {"on": true}}));
        assert!(st
            .on_message(Operation::Update, Response::Delta, &delta(5))
            .is_some());
        assert_eq!(
            st.on_message(Operation::Update, Response::Delta, &delta(4)),
            None
        );
        // Same version again is not stale.
        assert!(st
            .on_message(Operation::Update, Response::Delta, &delta(5))
            .is_some());
        // A delete with a lower version still gets through (and does not lower ours).
        let b = st
            .begin(Operation::Delete, Map::new(), Some("d"), || unreachable!())
            .unwrap();
        let ev = st.on_message(
            Operation::Delete,
            Response::Accepted,
            &bytes(json!({"version": 1, "clientToken": "d"})),
        );
        assert_eq!(ev.map(|e| e.status), Some(Accepted));
        assert_eq!(st.version(), 5);
        let _ = b;
        // Documents carry no top-level version: never stale.
        assert!(st
            .on_message(
                Operation::Update,
                Response::Documents,
                &bytes(json!({"previous": {"version": 1}, "current": {"version": 2}}))
            )
            .is_some());

        // With stale discards off, lower versions pass and leave ours alone.
        let mut st = ShadowState::new(&options().stale_discards(false));
        st.on_message(Operation::Update, Response::Delta, &delta(5));
        assert_eq!(
            st.on_message(Operation::Update, Response::Delta, &delta(4))
                .map(|e| e.status),
            Some(Delta)
        );
        assert_eq!(st.version(), 5);
    }

    #[test]
    fn deltas_and_documents_carry_our_latest_token() {
        let mut st = ShadowState::new(&options());
        let ev = st
            .on_message(
                Operation::Update,
                Response::Delta,
                &bytes(json!({"version": 1, "state": {}, "clientToken": "theirs"})),
            )
            .unwrap();
        assert_eq!((ev.status, ev.client_token), (Delta, None));
        st.begin(
            Operation::Update,
            Map::new(),
            Some("mine"),
            || unreachable!(),
        )
        .unwrap();
        let ev = st
            .on_message(
                Operation::Update,
                Response::Documents,
                &bytes(json!({"current": {}, "clientToken": "theirs"})),
            )
            .unwrap();
        assert_eq!(
            (ev.operation, ev.status, ev.client_token.as_deref()),
            (ShadowOperation::Update, Documents, Some("mine"))
        );
        // A delta is not an answer: the operation is still in flight.
        assert!(st.in_progress());
    }

    #[test]
    fn foreign_updates_are_reported_only_when_asked_and_only_for_update_and_delete() {
        let foreign = |v: u64| bytes(json!({"version": v, "clientToken": "other-9"}));
        let mut quiet = ShadowState::new(&options());
        assert_eq!(
            quiet.on_message(Operation::Update, Response::Accepted, &foreign(1)),
            None
        );
        let mut st = ShadowState::new(&options().foreign_update_notifications(true));
        let ev = st
            .on_message(Operation::Update, Response::Accepted, &foreign(2))
            .unwrap();
        assert_eq!(
            (ev.operation, ev.status, ev.client_token),
            (ShadowOperation::Update, ForeignUpdate, None)
        );
        assert_eq!(
            st.on_message(Operation::Delete, Response::Accepted, &foreign(3))
                .map(|e| (e.operation, e.status)),
            Some((ShadowOperation::Delete, ForeignUpdate))
        );
        // Someone else's get, and anyone's rejections, are not updates.
        assert_eq!(
            st.on_message(Operation::Get, Response::Accepted, &foreign(3)),
            None
        );
        assert_eq!(
            st.on_message(
                Operation::Update,
                Response::Rejected,
                &bytes(json!({"code": 400, "message": "x", "clientToken": "other-9"}))
            ),
            None
        );
        // While ours is in flight, another token is still foreign and ours stays pending;
        // the foreign event names our token, as iOS.
        st.begin(
            Operation::Update,
            Map::new(),
            Some("mine-1"),
            || unreachable!(),
        )
        .unwrap();
        let ev = st
            .on_message(Operation::Update, Response::Accepted, &foreign(4))
            .unwrap();
        assert_eq!(
            (ev.status, ev.client_token.as_deref()),
            (ForeignUpdate, Some("mine-1"))
        );
        assert!(st.in_progress());
        // An answer without any token is not ours either.
        assert!(st
            .on_message(
                Operation::Update,
                Response::Accepted,
                &bytes(json!({"version": 5}))
            )
            .is_some_and(|e| e.status == ForeignUpdate));
        assert!(st.in_progress());
    }

    #[test]
    fn non_object_payloads_are_dropped() {
        let mut st = ShadowState::new(&options().foreign_update_notifications(true));
        st.begin(Operation::Get, Map::new(), Some("g"), || unreachable!())
            .unwrap();
        for p in [&b"timeout"[..], b"[]", b"", b"\xff"] {
            assert_eq!(st.on_message(Operation::Get, Response::Accepted, p), None);
        }
        assert!(st.in_progress());
    }
}
