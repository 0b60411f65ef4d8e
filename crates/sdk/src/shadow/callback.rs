//! The iOS-style shell: `register_with_shadow` and friends on [`DataManager`]. Decisions
//! are [`ShadowState`]'s; this file subscribes, publishes, runs the operation timers and
//! calls the callback (never under the registry's lock, so a callback may call back in).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

use ::shadow::topic::{Operation, Response, ShadowId, ShadowTopic};
use serde_json::Map;

use super::state::{update_body, ClientTokens, Refused, ShadowState};
use super::{label, IntoShadowId, ShadowOperation, ShadowOperationStatus, ShadowOptions};
use crate::{DataManager, PublishOutcome};

type ShadowCallback =
    Arc<dyn Fn(&str, ShadowOperation, ShadowOperationStatus, Option<&str>, &[u8]) + Send + Sync>;

/// `info` with the shadow's `debug` option (iOS `enableDebugging`), `debug` otherwise.
macro_rules! note {
    ($loud:expr, $($arg:tt)*) => {
        if $loud { tracing::info!($($arg)*) } else { tracing::debug!($($arg)*) }
    };
}

/// A manager's registered shadows and its clientToken counter.
#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Shadows>,
}

#[derive(Default)]
struct Shadows {
    tokens: ClientTokens,
    registered: HashMap<ShadowId, Registered>,
}

struct Registered {
    state: ShadowState,
    options: ShadowOptions,
    callback: ShadowCallback,
    /// (subscription id, filter) in the manager's table.
    subscriptions: Vec<(u64, String)>,
    /// The operation timer: (operation seq, task).
    timer: Option<(u64, tokio::task::AbortHandle)>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Shadows> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh clientToken for `client_id` (shared with the async client, so tokens of
    /// both APIs never collide).
    pub(crate) fn next_token(&self, client_id: &str) -> String {
        self.lock().tokens.next(client_id)
    }
}

/// The answer topics a registration subscribes to, in iOS's order: delta, documents
/// (unless ignored), then accepted/rejected of update, get and delete.
pub(crate) fn registration_topics(id: &ShadowId, options: &ShadowOptions) -> Vec<String> {
    let mut topics = Vec::new();
    if !options.ignore_deltas {
        topics.push(id.response_topic(Operation::Update, Response::Delta));
    }
    if !options.ignore_documents {
        topics.push(id.response_topic(Operation::Update, Response::Documents));
    }
    for operation in [Operation::Update, Operation::Get, Operation::Delete] {
        for response in [Response::Accepted, Response::Rejected] {
            topics.push(id.response_topic(operation, response));
        }
    }
    topics
}

fn call(
    callback: &ShadowCallback,
    name: &str,
    operation: ShadowOperation,
    status: ShadowOperationStatus,
    client_token: Option<&str>,
    payload: &[u8],
) {
    let run = || callback(name, operation, status, client_token, payload);
    if catch_unwind(AssertUnwindSafe(run)).is_err() {
        tracing::error!(shadow = name, "shadow callback panicked");
    }
}

impl DataManager {
    /// Register a shadow and its callback, as iOS `registerWithShadow:options:eventCallback:`.
    ///
    /// Subscribes (with `options.qos`) to `…/update/delta` and `…/update/documents`
    /// (unless ignored) and to the `accepted`/`rejected` answers of update, get and
    /// delete. `callback(name, operation, status, client_token, payload)` then receives:
    /// the answers to this manager's operations (`Accepted`, `Rejected` with the error
    /// document), every delta and documents message, accepted updates and deletes of
    /// other clients (`ForeignUpdate`, with
    /// [`foreign_update_notifications`](ShadowOptions::foreign_update_notifications)),
    /// and `Timeout` (payload `timeout`) when an operation gets no answer in time.
    /// `name` is the thing's name for a classic shadow, the shadow's name for a named one.
    ///
    /// Call it after `connect*` (false before, as iOS). Registering a registered shadow
    /// again changes nothing and returns true, as iOS. False for a name the service
    /// would refuse. The registration outlives `disconnect` and holds for the next
    /// `connect*`. Its subscriptions coexist with the app's own on the same topics, but
    /// [`DataManager::unsubscribe_topic`] on one of them removes the registration's too.
    ///
    /// The reason for a `false` is logged (`tracing`, level `error`); the async
    /// [`DataManager::shadow`] client returns it as a [`ShadowError`](super::ShadowError)
    /// instead.
    ///
    /// ```no_run
    /// use pubsub::shadow::{ShadowId, ShadowOperationStatus, ShadowOptions};
    /// # fn f(iot: pubsub::DataManager) -> Result<(), &'static str> {
    /// let registered = iot.register_with_shadow("lamp", ShadowOptions::default(), |name, op, status, token, payload| {
    ///     if status == ShadowOperationStatus::Delta {
    ///         println!("{name}: apply {}", String::from_utf8_lossy(payload));
    ///     }
    /// });
    /// if !registered {
    ///     return Err("not registered: not connected yet?");
    /// }
    /// // Named shadows, which iOS cannot reach: the same calls with a ShadowId.
    /// assert!(iot.register_with_shadow(ShadowId::named("lamp", "config"), ShadowOptions::default(),
    ///     |_, _, _, _, _| {}));
    /// # Ok(()) }
    /// ```
    #[must_use = "false means the shadow is not registered (not connected, invalid name, or subscribing failed) and its callback will never be called"]
    pub fn register_with_shadow(
        &self,
        shadow: impl IntoShadowId,
        options: ShadowOptions,
        callback: impl Fn(&str, ShadowOperation, ShadowOperationStatus, Option<&str>, &[u8])
            + Send
            + Sync
            + 'static,
    ) -> bool {
        let id = shadow.into_shadow_id();
        if let Err(e) = id.validate() {
            tracing::error!(shadow = %id, error = %e, "cannot register with shadow");
            return false;
        }
        let loud = options.debug;
        {
            let mut shadows = self.shadows().lock();
            if shadows.registered.contains_key(&id) {
                tracing::error!(shadow = %id, "is already registered");
                return true;
            }
            shadows.registered.insert(
                id.clone(),
                Registered {
                    state: ShadowState::new(&options),
                    options: options.clone(),
                    callback: Arc::new(callback),
                    subscriptions: Vec::new(),
                    timer: None,
                },
            );
        }
        let mut subscriptions = Vec::new();
        for filter in registration_topics(&id, &options) {
            let weak = self.downgrade();
            let handler = move |topic: &str, payload: &[u8]| {
                if let Some(manager) = weak.upgrade() {
                    manager.on_shadow_message(topic, payload);
                }
            };
            match self.subscribe_internal(&filter, options.qos, handler) {
                Ok(sub) => {
                    note!(loud, %filter, "subscribing");
                    subscriptions.push((sub, filter));
                }
                Err(e) => {
                    tracing::error!(shadow = %id, error = %e, "unable to subscribe to shadow topics");
                    for (sub, filter) in subscriptions {
                        self.remove_internal(sub, &filter);
                    }
                    self.shadows().lock().registered.remove(&id);
                    return false;
                }
            }
        }
        let orphaned = {
            let mut shadows = self.shadows().lock();
            match shadows.registered.get_mut(&id) {
                Some(r) if r.subscriptions.is_empty() => {
                    r.subscriptions = subscriptions;
                    None
                }
                // Unregistered (and maybe registered again) while we subscribed.
                _ => Some(subscriptions),
            }
        };
        for (sub, filter) in orphaned.into_iter().flatten() {
            self.remove_internal(sub, &filter);
        }
        true
    }

    /// Unregister a shadow, as iOS `unregisterFromShadow:`: unsubscribes its topics and
    /// cancels its operation timer. False when it was not registered.
    ///
    /// ```no_run
    /// # fn f(iot: pubsub::DataManager) {
    /// assert!(iot.unregister_from_shadow("lamp"));
    /// # }
    /// ```
    #[must_use = "false means the shadow was not registered"]
    pub fn unregister_from_shadow(&self, shadow: impl IntoShadowId) -> bool {
        let id = shadow.into_shadow_id();
        let Some(registered) = self.shadows().lock().registered.remove(&id) else {
            tracing::error!(shadow = %id, "is not registered");
            return false;
        };
        if let Some((_, timer)) = registered.timer {
            timer.abort();
        }
        for (sub, filter) in registered.subscriptions {
            note!(registered.options.debug, %filter, "unsubscribing");
            self.remove_internal(sub, &filter);
        }
        true
    }

    /// Update a registered shadow, as iOS `updateShadow:jsonString:clientToken:`:
    /// publishes `json` (a JSON object such as `{"state":{"desired":{…}}}`, without
    /// `version`) to `…/update` with a clientToken (`client_token`, else the JSON's, else
    /// generated as `<last 48 characters of the client id>-<counter>`) and, with
    /// versioning, the last version seen. The answer comes to the callback.
    ///
    /// False when the shadow is not registered, an operation on it is still in flight,
    /// `json` is not an object or carries `version`, or the request could not be sent
    /// or queued.
    ///
    /// ```no_run
    /// # fn f(iot: pubsub::DataManager) {
    /// if !iot.update_shadow("lamp", r#"{"state":{"reported":{"on":true}}}"#, Some("my-token-1")) {
    ///     eprintln!("not sent (see the log); the callback will not hear of it");
    /// }
    /// # }
    /// ```
    #[must_use = "false means the request was not sent and the callback will not hear of it (not registered or connected, an operation in flight, bad JSON)"]
    pub fn update_shadow(
        &self,
        shadow: impl IntoShadowId,
        json: &str,
        client_token: Option<&str>,
    ) -> bool {
        let id = shadow.into_shadow_id();
        match update_body(json) {
            Ok(body) => self.shadow_operation(id, Operation::Update, body, client_token),
            Err(why) => {
                tracing::error!(shadow = %id, ?why, "update refused");
                false
            }
        }
    }

    /// Get a registered shadow, as iOS `getShadow:clientToken:`: publishes
    /// `{"clientToken": …}` (plus `version` with versioning) to `…/get`; the document
    /// comes to the callback as `Get`/`Accepted`. False as for
    /// [`DataManager::update_shadow`].
    ///
    /// ```no_run
    /// # fn f(iot: pubsub::DataManager) {
    /// if !iot.get_shadow("lamp", None) {
    ///     eprintln!("get not sent: not registered or connected, or an operation in flight");
    /// }
    /// # }
    /// ```
    #[must_use = "false means the request was not sent and the callback will not hear of it (not registered or connected, an operation in flight)"]
    pub fn get_shadow(&self, shadow: impl IntoShadowId, client_token: Option<&str>) -> bool {
        self.shadow_operation(
            shadow.into_shadow_id(),
            Operation::Get,
            Map::new(),
            client_token,
        )
    }

    /// Delete a registered shadow, as iOS `deleteShadow:clientToken:`: publishes
    /// `{"clientToken": …}` (plus `version` with versioning) to `…/delete`. False as for
    /// [`DataManager::update_shadow`].
    ///
    /// ```no_run
    /// # fn f(iot: pubsub::DataManager) {
    /// if !iot.delete_shadow("lamp", None) {
    ///     eprintln!("delete not sent: not registered or connected, or an operation in flight");
    /// }
    /// # }
    /// ```
    #[must_use = "false means the request was not sent and the callback will not hear of it (not registered or connected, an operation in flight)"]
    pub fn delete_shadow(&self, shadow: impl IntoShadowId, client_token: Option<&str>) -> bool {
        self.shadow_operation(
            shadow.into_shadow_id(),
            Operation::Delete,
            Map::new(),
            client_token,
        )
    }

    fn shadow_operation(
        &self,
        id: ShadowId,
        operation: Operation,
        body: Map<String, serde_json::Value>,
        client_token: Option<&str>,
    ) -> bool {
        let Some(client_id) = self.client_id() else {
            tracing::error!(shadow = %id, "not connected");
            return false;
        };
        let (begun, options) = {
            let mut guard = self.shadows().lock();
            let Shadows { tokens, registered } = &mut *guard;
            let Some(r) = registered.get_mut(&id) else {
                tracing::error!(shadow = %id, operation = operation.as_str(), "attempting an operation on an unregistered shadow");
                return false;
            };
            match r
                .state
                .begin(operation, body, client_token, || tokens.next(&client_id))
            {
                Ok(begun) => (begun, r.options.clone()),
                Err(why) => {
                    if why == Refused::InProgress {
                        note!(r.options.debug, shadow = %id, "operation still in progress");
                    } else {
                        tracing::error!(shadow = %id, ?why, "request refused");
                    }
                    return false;
                }
            }
        };
        let topic = id.request_topic(operation);
        let sent = matches!(
            self.try_publish(&topic, begun.payload.clone(), options.qos),
            Ok(PublishOutcome::Submitted | PublishOutcome::Queued)
        );
        if !sent {
            tracing::warn!(%topic, "shadow request could not be sent");
            if let Some(r) = self.shadows().lock().registered.get_mut(&id) {
                r.state.abandon(begun.seq);
            }
            return false;
        }
        note!(options.debug, %topic, payload = %String::from_utf8_lossy(&begun.payload), "published");
        let weak = self.downgrade();
        let seq = begun.seq;
        let timer_id = id.clone();
        let timeout = options.operation_timeout;
        let timer = self.runtime().spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(manager) = weak.upgrade() {
                manager.on_shadow_timeout(&timer_id, seq);
            }
        });
        let mut shadows = self.shadows().lock();
        match shadows.registered.get_mut(&id) {
            Some(r) if r.state.pending_seq() == Some(seq) => {
                r.timer = Some((seq, timer.abort_handle()));
            }
            // Answered (or unregistered) already.
            _ => timer.abort(),
        }
        true
    }

    fn on_shadow_timeout(&self, id: &ShadowId, seq: u64) {
        let fire = {
            let mut shadows = self.shadows().lock();
            shadows.registered.get_mut(id).and_then(|r| {
                let event = r.state.on_timeout(seq)?;
                r.timer = None;
                note!(r.options.debug, shadow = %id, "operation timed out");
                Some((event, r.callback.clone()))
            })
        };
        if let Some((event, callback)) = fire {
            call(
                &callback,
                label(id),
                event.operation,
                event.status,
                event.client_token.as_deref(),
                b"timeout",
            );
        }
    }

    fn on_shadow_message(&self, topic: &str, payload: &[u8]) {
        let Some(parsed) = ShadowTopic::parse(topic) else {
            return;
        };
        let Some(response) = parsed.response else {
            return;
        };
        let id = parsed.id();
        let fire = {
            let mut shadows = self.shadows().lock();
            let Some(r) = shadows.registered.get_mut(&id) else {
                return;
            };
            note!(r.options.debug, %topic, payload = %String::from_utf8_lossy(payload), "shadow message");
            let event = r.state.on_message(parsed.operation, response, payload);
            if !r.state.in_progress() {
                if let Some((_, timer)) = r.timer.take() {
                    timer.abort();
                }
            }
            if event.is_none() {
                note!(r.options.debug, %topic, "not reported (stale, foreign or not a JSON object)");
            }
            event.map(|e| (e, r.callback.clone()))
        };
        if let Some((event, callback)) = fire {
            call(
                &callback,
                label(&id),
                event.operation,
                event.status,
                event.client_token.as_deref(),
                payload,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_subscribes_as_ios_with_ignores() {
        let id = ShadowId::classic("lamp");
        let all = registration_topics(&id, &ShadowOptions::default());
        assert_eq!(
            all,
            [
                "$aws/things/lamp/shadow/update/delta",
                "$aws/things/lamp/shadow/update/documents",
                "$aws/things/lamp/shadow/update/accepted",
                "$aws/things/lamp/shadow/update/rejected",
                "$aws/things/lamp/shadow/get/accepted",
                "$aws/things/lamp/shadow/get/rejected",
                "$aws/things/lamp/shadow/delete/accepted",
                "$aws/things/lamp/shadow/delete/rejected",
            ]
        );
        let quiet = registration_topics(
            &ShadowId::named("lamp", "cfg"),
            &ShadowOptions::default()
                .ignore_deltas(true)
                .ignore_documents(true),
        );
        assert_eq!(quiet.len(), 6);
        assert!(quiet
            .iter()
            .all(|t| t.starts_with("$aws/things/lamp/shadow/name/cfg/")
                && !t.ends_with("/delta")
                && !t.ends_with("/documents")));
    }
}
