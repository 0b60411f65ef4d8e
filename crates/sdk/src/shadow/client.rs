//! The async shell: [`ShadowClient`], one request and its answer per call.
//!
//! Each call subscribes to its operation's `accepted` and `rejected` topics (waiting for
//! the SUBACKs, so the answer cannot be missed), publishes the request with a fresh
//! clientToken, resolves with the first answer carrying that token, and drops the two
//! subscriptions (the SDK unsubscribes when nothing else listens on them: a registered
//! iOS-style shadow or another call in flight keeps them). That costs two SUBSCRIBEs and
//! two UNSUBSCRIBEs per call but holds no subscription between calls, and concurrent
//! calls need no shared state: the token alone tells their answers apart.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ::shadow::topic::{Operation, Response, ShadowId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::state::answer_token;
use super::{IntoShadowId, Rejection, ShadowError};
use crate::{DataManager, Error, MessageStream, PublishOutcome, QoS};

/// Async access to one shadow (classic or named) through a [`DataManager`]; from
/// [`DataManager::shadow`]. Cheap to clone.
///
/// ```no_run
/// use pubsub::shadow::ShadowId;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug)]
/// struct Lamp { on: bool, brightness: u8 }
///
/// # async fn f(iot: pubsub::DataManager) -> Result<(), pubsub::shadow::ShadowError> {
/// let lamp = iot.shadow("lamp");                       // classic shadow of thing "lamp"
/// lamp.update_desired(&Lamp { on: true, brightness: 80 }).await?;
/// let doc = lamp.get_typed::<Lamp, Lamp>().await?;
/// println!("v{} desired {:?} reported {:?} delta {:?}", doc.version, doc.desired, doc.reported, doc.delta);
///
/// let mut deltas = iot.shadow(ShadowId::named("lamp", "config")).deltas().await?;
/// while let Some(delta) = deltas.recv().await {
///     println!("to do: {}", delta["state"]);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ShadowClient {
    manager: DataManager,
    id: ShadowId,
    qos: QoS,
    timeout: Duration,
}

impl DataManager {
    /// An async client for `shadow`: a thing name (its classic shadow) or a
    /// [`ShadowId`]. Requests and subscriptions use QoS 1 and time out after 10 s unless
    /// set otherwise ([`ShadowClient::qos`], [`ShadowClient::timeout`]).
    ///
    /// ```no_run
    /// # async fn f(iot: pubsub::DataManager) -> Result<(), pubsub::shadow::ShadowError> {
    /// use pubsub::shadow::ShadowId;
    /// let document = iot.shadow(ShadowId::named("lamp", "config")).get().await?;
    /// # Ok(()) }
    /// ```
    pub fn shadow(&self, shadow: impl IntoShadowId) -> ShadowClient {
        ShadowClient {
            manager: self.clone(),
            id: shadow.into_shadow_id(),
            qos: QoS::AtLeastOnce,
            timeout: Duration::from_secs(10),
        }
    }
}

impl ShadowClient {
    /// The shadow.
    ///
    /// ```no_run
    /// # fn f(iot: pubsub::DataManager) {
    /// assert_eq!(iot.shadow("lamp").id(), &pubsub::shadow::ShadowId::classic("lamp"));
    /// # }
    /// ```
    pub fn id(&self) -> &ShadowId {
        &self.id
    }

    /// The QoS of requests and answer subscriptions (default QoS 1).
    ///
    /// ```no_run
    /// # fn f(iot: pubsub::DataManager) {
    /// let lamp = iot.shadow("lamp").qos(pubsub::QoS::AtMostOnce);
    /// # }
    /// ```
    pub fn qos(mut self, qos: QoS) -> ShadowClient {
        self.qos = qos;
        self
    }

    /// How long a call waits, from the call to the answer (default 10 s); then
    /// [`ShadowError::Timeout`].
    ///
    /// ```no_run
    /// # fn f(iot: pubsub::DataManager) {
    /// let lamp = iot.shadow("lamp").timeout(std::time::Duration::from_secs(3));
    /// # }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> ShadowClient {
        self.timeout = timeout;
        self
    }

    /// The whole shadow document (`…/get/accepted`): `state.desired`, `state.reported`,
    /// `state.delta`, `metadata`, `version`, `timestamp`, `clientToken`. A shadow that
    /// does not exist is `Rejected` with code 404.
    ///
    /// # Errors
    /// [`ShadowError::Rejected`] with the service's error document (e.g. code 404 when the
    /// shadow does not exist); [`ShadowError::Timeout`] when the subscriptions,
    /// the publish and the answer together take longer than [`ShadowClient::timeout`];
    /// [`ShadowError::InvalidName`] when the thing or shadow name makes no valid topic;
    /// [`ShadowError::Connection`] with [`Error::NotConnected`] before the first
    /// `connect*` or when the request was neither sent nor queued, with
    /// [`Error::Disconnected`] when `disconnect()` ends the wait, and with any error of
    /// [`DataManager::subscribe_stream`] or [`DataManager::publish`] (e.g.
    /// [`Error::SubscribeRefused`], [`Error::PublishRefused`] for a topic outside the
    /// policy); [`ShadowError::MalformedAnswer`] when the answer on `…/rejected` is not an
    /// error document.
    ///
    /// ```no_run
    /// # async fn f(lamp: pubsub::shadow::ShadowClient) -> Result<(), pubsub::shadow::ShadowError> {
    /// let document = lamp.get().await?;
    /// println!("reported: {}", document["state"]["reported"]);
    /// # Ok(()) }
    /// ```
    pub async fn get(&self) -> Result<Value, ShadowError> {
        self.request(Operation::Get, Map::new()).await
    }

    /// Send an update request (`{"state": {"desired": …, "reported": …}}`, optionally
    /// with `"version"` for optimistic locking and `"clientToken"`) and return the
    /// accepted document (the fields sent, their metadata, the new version). A token is
    /// generated unless the request has one.
    ///
    /// # Errors
    /// [`ShadowError::Rejected`] with the service's error document (e.g. code 404 when the
    /// shadow does not exist, 409 when `version` is not the current one, 400 for a malformed request); [`ShadowError::Timeout`] when the subscriptions,
    /// the publish and the answer together take longer than [`ShadowClient::timeout`];
    /// [`ShadowError::InvalidName`] when the thing or shadow name makes no valid topic;
    /// [`ShadowError::Connection`] with [`Error::NotConnected`] before the first
    /// `connect*` or when the request was neither sent nor queued, with
    /// [`Error::Disconnected`] when `disconnect()` ends the wait, and with any error of
    /// [`DataManager::subscribe_stream`] or [`DataManager::publish`] (e.g.
    /// [`Error::SubscribeRefused`], [`Error::PublishRefused`] for a topic outside the
    /// policy); [`ShadowError::MalformedAnswer`] when the answer on `…/rejected` is not an
    /// error document.
    /// [`ShadowError::Document`] before anything is sent when `request` is not a JSON
    /// object or its `clientToken` is not a string.
    ///
    /// ```no_run
    /// # async fn f(lamp: pubsub::shadow::ShadowClient) -> Result<(), pubsub::shadow::ShadowError> {
    /// let accepted = lamp.update(serde_json::json!({"state": {"reported": {"on": true}}})).await?;
    /// println!("now version {}", accepted["version"]);
    /// # Ok(()) }
    /// ```
    pub async fn update(&self, request: Value) -> Result<Value, ShadowError> {
        match request {
            Value::Object(body) => self.request(Operation::Update, body).await,
            _ => Err(ShadowError::Document(
                "an update request must be a JSON object".into(),
            )),
        }
    }

    /// Delete the shadow; returns `{"version": <deleted version>, "timestamp": …}`.
    ///
    /// # Errors
    /// [`ShadowError::Rejected`] with the service's error document (e.g. code 404 when the
    /// shadow does not exist); [`ShadowError::Timeout`] when the subscriptions,
    /// the publish and the answer together take longer than [`ShadowClient::timeout`];
    /// [`ShadowError::InvalidName`] when the thing or shadow name makes no valid topic;
    /// [`ShadowError::Connection`] with [`Error::NotConnected`] before the first
    /// `connect*` or when the request was neither sent nor queued, with
    /// [`Error::Disconnected`] when `disconnect()` ends the wait, and with any error of
    /// [`DataManager::subscribe_stream`] or [`DataManager::publish`] (e.g.
    /// [`Error::SubscribeRefused`], [`Error::PublishRefused`] for a topic outside the
    /// policy); [`ShadowError::MalformedAnswer`] when the answer on `…/rejected` is not an
    /// error document.
    ///
    /// ```no_run
    /// # async fn f(lamp: pubsub::shadow::ShadowClient) -> Result<(), pubsub::shadow::ShadowError> {
    /// lamp.delete().await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self) -> Result<Value, ShadowError> {
        self.request(Operation::Delete, Map::new()).await
    }

    /// Update `state.desired` with `desired` serialized by serde (merged into the stored
    /// state; `None` fields serialized as `null` delete keys).
    ///
    /// # Errors
    /// [`ShadowError::Document`] when `desired` does not serialize to JSON (a map whose
    /// keys are neither strings nor numbers, a failing `Serialize` impl); otherwise as
    /// [`ShadowClient::update`].
    ///
    /// ```no_run
    /// # async fn f(lamp: pubsub::shadow::ShadowClient) -> Result<(), pubsub::shadow::ShadowError> {
    /// #[derive(serde::Serialize)]
    /// struct Wanted { brightness: u8 }
    /// lamp.update_desired(&Wanted { brightness: 30 }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_desired<T: Serialize + ?Sized>(
        &self,
        desired: &T,
    ) -> Result<Value, ShadowError> {
        self.update_section("desired", desired).await
    }

    /// Update `state.reported` with `reported` serialized by serde.
    ///
    /// # Errors
    /// As [`ShadowClient::update_desired`].
    ///
    /// ```no_run
    /// # async fn f(lamp: pubsub::shadow::ShadowClient) -> Result<(), pubsub::shadow::ShadowError> {
    /// lamp.update_reported(&serde_json::json!({"brightness": 30})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_reported<T: Serialize + ?Sized>(
        &self,
        reported: &T,
    ) -> Result<Value, ShadowError> {
        self.update_section("reported", reported).await
    }

    async fn update_section<T: Serialize + ?Sized>(
        &self,
        section: &str,
        value: &T,
    ) -> Result<Value, ShadowError> {
        let value =
            serde_json::to_value(value).map_err(|e| ShadowError::Document(e.to_string()))?;
        self.update(json!({ "state": { section: value } })).await
    }

    /// [`ShadowClient::get`], with `desired` and `reported` deserialized into `D` and `R`.
    ///
    /// # Errors
    /// As [`ShadowClient::get`], plus [`ShadowError::Document`] when the document does
    /// not deserialize into `D` and `R` (the shadow holds other fields or types than
    /// expected; use `Option` fields for keys that may be missing).
    ///
    /// ```no_run
    /// # async fn f(lamp: pubsub::shadow::ShadowClient) -> Result<(), pubsub::shadow::ShadowError> {
    /// #[derive(serde::Deserialize, Debug)]
    /// struct Lamp { on: bool }
    /// let doc = lamp.get_typed::<Lamp, Lamp>().await?;
    /// if let Some(reported) = doc.reported { println!("on: {}", reported.on) }
    /// # Ok(()) }
    /// ```
    pub async fn get_typed<D: DeserializeOwned, R: DeserializeOwned>(
        &self,
    ) -> Result<ShadowDocument<D, R>, ShadowError> {
        let document = self.get().await?;
        ShadowDocument::from_json(document).map_err(|e| ShadowError::Document(e.to_string()))
    }

    /// The shadow's `…/update/delta` messages from now on (`{"version", "timestamp",
    /// "state": <delta>, "metadata", "clientToken"?}`), once subscribed.
    ///
    /// # Errors
    /// [`ShadowError::InvalidName`] when the thing or shadow name makes no valid topic;
    /// [`ShadowError::Connection`] with the error of [`DataManager::subscribe_stream`]
    /// ([`Error::NotConnected`], [`Error::SubscribeRefused`], [`Error::Disconnected`], …).
    /// Unlike requests, no [`ShadowClient::timeout`] applies.
    ///
    /// ```no_run
    /// # async fn f(lamp: pubsub::shadow::ShadowClient) -> Result<(), pubsub::shadow::ShadowError> {
    /// let mut deltas = lamp.deltas().await?;
    /// if let Some(delta) = deltas.recv().await { println!("{}", delta["state"]) }
    /// # Ok(()) }
    /// ```
    pub async fn deltas(&self) -> Result<ShadowStream, ShadowError> {
        self.stream(Response::Delta).await
    }

    /// The shadow's `…/update/documents` messages from now on (`{"previous",
    /// "current", "timestamp", "clientToken"?}`), once subscribed.
    ///
    /// # Errors
    /// [`ShadowError::InvalidName`] when the thing or shadow name makes no valid topic;
    /// [`ShadowError::Connection`] with the error of [`DataManager::subscribe_stream`]
    /// ([`Error::NotConnected`], [`Error::SubscribeRefused`], [`Error::Disconnected`], …).
    /// Unlike requests, no [`ShadowClient::timeout`] applies.
    ///
    /// ```no_run
    /// # async fn f(lamp: pubsub::shadow::ShadowClient) -> Result<(), pubsub::shadow::ShadowError> {
    /// let mut documents = lamp.documents().await?;
    /// if let Some(d) = documents.recv().await { println!("now {}", d["current"]) }
    /// # Ok(()) }
    /// ```
    pub async fn documents(&self) -> Result<ShadowStream, ShadowError> {
        self.stream(Response::Documents).await
    }

    async fn stream(&self, response: Response) -> Result<ShadowStream, ShadowError> {
        self.id.validate()?;
        let topic = self.id.response_topic(Operation::Update, response);
        let messages = self.manager.subscribe_stream(&topic, self.qos).await?;
        Ok(ShadowStream { messages })
    }

    async fn request(
        &self,
        operation: Operation,
        mut body: Map<String, Value>,
    ) -> Result<Value, ShadowError> {
        self.id.validate()?;
        let token = match body.get("clientToken") {
            Some(Value::String(token)) => token.clone(),
            Some(_) => return Err(ShadowError::Document("clientToken must be a string".into())),
            None => {
                let client_id = self.manager.client_id().ok_or(Error::NotConnected)?;
                let token = self.manager.shadows().next_token(&client_id);
                body.insert("clientToken".into(), Value::String(token.clone()));
                token
            }
        };
        let deadline = Instant::now() + self.timeout;
        let timed_out = |_| ShadowError::Timeout(self.timeout);
        let accepted_topic = self.id.response_topic(operation, Response::Accepted);
        let rejected_topic = self.id.response_topic(operation, Response::Rejected);
        let (mut accepted, mut rejected) = tokio::time::timeout_at(deadline, async {
            tokio::try_join!(
                self.manager.subscribe_stream(&accepted_topic, self.qos),
                self.manager.subscribe_stream(&rejected_topic, self.qos),
            )
        })
        .await
        .map_err(timed_out)??;
        let payload = serde_json::to_vec(&Value::Object(body)).expect("JSON values serialize");
        let topic = self.id.request_topic(operation);
        let outcome =
            tokio::time::timeout_at(deadline, self.manager.publish(&topic, payload, self.qos))
                .await
                .map_err(timed_out)??;
        if let PublishOutcome::Rejected(why) = outcome {
            tracing::warn!(%topic, ?why, "shadow request not queued while offline");
            return Err(Error::NotConnected.into());
        }
        loop {
            let message = tokio::select! {
                m = accepted.recv() => m,
                m = rejected.recv() => m,
                _ = tokio::time::sleep_until(deadline) => return Err(ShadowError::Timeout(self.timeout)),
            };
            let Some(message) = message else {
                return Err(Error::Disconnected.into());
            };
            // Not JSON, or another request's answer: not ours.
            let Ok(answer) = serde_json::from_slice::<Value>(&message.payload) else {
                continue;
            };
            if answer_token(&answer) != Some(token.as_str()) {
                continue;
            }
            if message.topic != rejected_topic {
                return Ok(answer);
            }
            return Err(match serde_json::from_value::<Rejection>(answer) {
                Ok(rejection) => ShadowError::Rejected(rejection),
                Err(e) => ShadowError::MalformedAnswer {
                    topic: message.topic,
                    detail: e.to_string(),
                },
            });
        }
    }
}

/// A shadow document with `desired` and `reported` as Rust types: what
/// [`ShadowClient::get_typed`] returns.
///
/// ```
/// use pubsub::shadow::ShadowDocument;
/// let doc: ShadowDocument<serde_json::Value, serde_json::Value> = ShadowDocument::from_json(
///     serde_json::json!({"state": {"desired": {"on": true}}, "metadata": {}, "version": 3, "timestamp": 1}),
/// ).unwrap();
/// assert_eq!((doc.version, doc.reported), (3, None));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ShadowDocument<D, R> {
    /// `state.desired`; `None` when absent.
    pub desired: Option<D>,
    /// `state.reported`; `None` when absent.
    pub reported: Option<R>,
    /// `state.delta`: the desired keys whose values differ from reported; `None` when
    /// there is no difference. Untyped: it holds only part of `desired`.
    pub delta: Option<Value>,
    /// `metadata` (`{"desired": …, "reported": …}` with a `{"timestamp"}` per leaf);
    /// `Null` when absent.
    pub metadata: Value,
    /// `version`.
    pub version: u64,
    /// `timestamp` (epoch seconds).
    pub timestamp: u64,
    /// `clientToken`, when the request had one.
    pub client_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument<D, R> {
    state: Option<RawState<D, R>>,
    #[serde(default)]
    metadata: Value,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    timestamp: u64,
    client_token: Option<String>,
}

#[derive(Deserialize)]
struct RawState<D, R> {
    desired: Option<D>,
    reported: Option<R>,
    delta: Option<Value>,
}

impl<D: DeserializeOwned, R: DeserializeOwned> ShadowDocument<D, R> {
    /// Read a get/accepted document (see the type's example). Missing `metadata`,
    /// `version` and `timestamp` read as `Null` and 0.
    ///
    /// # Errors
    /// The [`serde_json::Error`] when `document` is not an object, a field has the wrong
    /// type, or `state.desired` / `state.reported` does not deserialize into `D` / `R`.
    pub fn from_json(document: Value) -> Result<ShadowDocument<D, R>, serde_json::Error> {
        let raw: RawDocument<D, R> = serde_json::from_value(document)?;
        let (desired, reported, delta) = match raw.state {
            Some(s) => (s.desired, s.reported, s.delta),
            None => (None, None, None),
        };
        Ok(ShadowDocument {
            desired,
            reported,
            delta,
            metadata: raw.metadata,
            version: raw.version,
            timestamp: raw.timestamp,
            client_token: raw.client_token,
        })
    }
}

/// Delta or documents messages of one shadow, as JSON objects (anything else on the
/// topic is skipped); from [`ShadowClient::deltas`] and [`ShadowClient::documents`].
/// Dropping it unsubscribes (unless something else listens on the topic).
///
/// ```no_run
/// # async fn f(lamp: pubsub::shadow::ShadowClient) -> Result<(), pubsub::shadow::ShadowError> {
/// let mut deltas = lamp.deltas().await?;
/// while let Some(delta) = deltas.recv().await {
///     println!("v{}: {}", delta["version"], delta["state"]);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ShadowStream {
    messages: MessageStream,
}

fn object(payload: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(payload)
        .ok()
        .filter(Value::is_object)
}

impl ShadowStream {
    /// The next message; `None` once the connection is closed by `disconnect()`.
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            let message = self.messages.recv().await?;
            if let Some(value) = object(&message.payload) {
                return Some(value);
            }
        }
    }
}

impl futures_core::Stream for ShadowStream {
    type Item = Value;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Value>> {
        loop {
            match Pin::new(&mut self.messages).poll_next(cx) {
                Poll::Ready(Some(message)) => {
                    if let Some(value) = object(&message.payload) {
                        return Poll::Ready(Some(value));
                    }
                }
                other => return other.map(|_| None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Lamp {
        on: bool,
    }

    #[test]
    fn typed_documents_read_state_metadata_and_version() {
        let doc: ShadowDocument<Lamp, Lamp> = ShadowDocument::from_json(json!({
            "state": {"desired": {"on": true}, "reported": {"on": false}, "delta": {"on": true}},
            "metadata": {"desired": {"on": {"timestamp": 5}}, "reported": {"on": {"timestamp": 4}}},
            "version": 2, "timestamp": 9, "clientToken": "c-1"
        }))
        .unwrap();
        assert_eq!(doc.desired, Some(Lamp { on: true }));
        assert_eq!(doc.reported, Some(Lamp { on: false }));
        assert_eq!(doc.delta, Some(json!({"on": true})));
        assert_eq!(doc.metadata["desired"]["on"]["timestamp"], 5);
        assert_eq!((doc.version, doc.timestamp), (2, 9));
        assert_eq!(doc.client_token.as_deref(), Some("c-1"));

        let empty: ShadowDocument<Lamp, Lamp> =
            ShadowDocument::from_json(json!({"state": {}, "version": 1, "timestamp": 1})).unwrap();
        assert_eq!(
            (empty.desired, empty.reported, empty.delta),
            (None, None, None)
        );
        assert!(
            ShadowDocument::<Lamp, Lamp>::from_json(json!({"state": {"desired": {"on": 3}}}))
                .is_err()
        );
    }
}
