//! A shadow document and what the service does with requests to it, as IoT Core's
//! developer guide describes (`device-shadow-document.md`, `device-shadow-data-flow.md`,
//! `device-shadow-error-messages.md`; summarised with sources in
//! `shared/IOT-FACTS-MQTT5-SHADOW.md` §3).
//!
//! Everything here is pure: the caller passes the current shadow (if any), the request's
//! payload and the time, and gets the new shadow to keep plus the JSON answers to publish,
//! or a [`Rejection`] with IoT Core's code and text. Timestamps are epoch seconds.
//!
//! # Choices where the documentation is silent or unverified
//!
//! The developer guide leaves these open; this is what PubSub does (the README's shadow
//! section cites this list):
//!
//! 1. **Request checks and their order**: UTF-8 (else `415 Unsupported documented
//!    encoding; supported encoding is UTF-8`), a JSON object (else `400 Invalid JSON`),
//!    `clientToken` a string of at most [`Limits::max_client_token_bytes`] bytes (else
//!    `400 Invalid clientToken`), `version` a non-negative integer (else `400 Invalid
//!    version`; `null`, `1.5`, `-1` and `"3"` are all invalid), the `state` checks, the
//!    nesting depth, arrays holding `null`, the size, and last the version conflict (`409
//!    Version conflict`). Top-level keys other than `state`, `version` and `clientToken`
//!    are ignored.
//! 2. **Rejections** all carry `timestamp` (the request's `now`); every rejection found
//!    after the `clientToken` was read echoes it.
//! 3. **`state`** is required, an object or `null`; keys other than `desired` and
//!    `reported` inside it are `400 State contains an invalid node`; `desired` and
//!    `reported` are each an object or `null` (`400 Desired node must be an object` /
//!    `Reported node must be an object`, desired checked first).
//! 4. **Depth** counts levels inside `desired` or `reported` of the request: `{"a":1}` is
//!    depth 1, `{"a":{"b":1}}` depth 2, and an array counts as a level like an object
//!    (`{"a":[1]}` is depth 2). Deeper than [`Limits::max_depth`] is `400 JSON contains too
//!    many levels of nesting; maximum is {max_depth}`. (A payload nested more than 128
//!    levels anywhere does not parse at all, serde_json's limit, and is `400 Invalid JSON`.)
//! 5. **Arrays may not hold `null`** anywhere inside them (an element, or a value of an
//!    object nested in an element): `400 Invalid JSON`. Arrays are values, so a `null` in
//!    one could not mean "delete" and would otherwise be stored.
//! 6. **Size** is the compact JSON length of the merged `desired` plus the merged
//!    `reported` (metadata not counted); over [`Limits::max_state_bytes`] is `413 The
//!    payload exceeds the maximum size allowed`.
//! 7. **Pruning**: after a merge, objects left with no keys are removed, recursively, in
//!    state and metadata alike, and a section with no keys is absent. So `{"a":{}}` sent
//!    for a new key stores nothing, and sent for a key holding a scalar removes it.
//! 8. **`"state": null`** empties both sections; the shadow still exists (GET answers
//!    `"state": {}`) and the version increments.
//! 9. **Versions**: the next version is the current one plus 1, a new shadow's is 1. A
//!    deleted shadow (tombstone) continues its numbering when re-created less than
//!    [`DELETED_VERSION_KEPT_SECS`] after its deletion, and starts again at 1 from then on.
//!    A request's `version` is compared with the current version: 0 when there is no
//!    shadow, the tombstone's version within the 48 hours, 0 after.
//! 10. **`/update/accepted`** carries the request's `state` exactly as sent (with its
//!     `null`s, or `null` itself) and metadata for exactly what was sent: every leaf and
//!     every `null` becomes `{"timestamp": now}` (so `"state": null` gives `"metadata":
//!     {"timestamp": now}`), an array one such object per element.
//! 11. **`/update/delta`** is published only when the request's `state` held a `desired`
//!     object (not `null`) and the new shadow has a delta; it holds the whole delta and
//!     `metadata.desired` restricted to the delta's paths. A reported-only update does
//!     not republish a remaining delta.
//! 12. **Delta comparison**: numbers compare by value (`1` equals `1.0`), everything else
//!     as JSON values; objects on both sides are compared key by key, arrays whole.
//! 13. **`/update/documents`** omits `previous` when the update created the shadow (there
//!     was none, or only a tombstone).
//! 14. **GET** answers no `metadata.delta`. **GET and DELETE payloads** may be empty (or
//!     only whitespace) or a JSON object whose `clientToken` is checked as for an update;
//!     its `version` is ignored; anything else is 415 or `400 Invalid JSON`. Both answer
//!     `404 No shadow exists with name: '{label}'` for a missing shadow or a tombstone.
//! 15. **Metadata of arrays** is one `{"timestamp"}` per element of the outer array,
//!     whatever the elements are.

use std::io;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Number, Value};

/// How long a deleted shadow's version is remembered: a shadow re-created within 48 hours
/// continues the old numbering, later it starts again (`device-shadow-data-flow.md`).
pub const DELETED_VERSION_KEPT_SECS: u64 = 48 * 3600;

const UNSUPPORTED_ENCODING: &str = "Unsupported documented encoding; supported encoding is UTF-8";
const INVALID_JSON: &str = "Invalid JSON";
const INVALID_CLIENT_TOKEN: &str = "Invalid clientToken";
const INVALID_VERSION: &str = "Invalid version";
const MISSING_STATE: &str = "Missing required node: state";
const STATE_NOT_OBJECT: &str = "State node must be an object";
const STATE_INVALID_NODE: &str = "State contains an invalid node";
const DESIRED_NOT_OBJECT: &str = "Desired node must be an object";
const REPORTED_NOT_OBJECT: &str = "Reported node must be an object";
const TOO_LARGE: &str = "The payload exceeds the maximum size allowed";
const VERSION_CONFLICT: &str = "Version conflict";

/// The service's document limits. IoT Core's values are the defaults; the broker makes
/// them configurable because the published quotas disagree (depth 5, 6 or 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Bytes of `state.desired` plus `state.reported` (metadata not counted); over → 413.
    pub max_state_bytes: usize,
    /// Nesting levels inside `desired` or `reported`; deeper → 400 "JSON contains too
    /// many levels of nesting; maximum is {max_depth}".
    pub max_depth: usize,
    /// Longest `clientToken`, in bytes; longer → 400 "Invalid clientToken".
    pub max_client_token_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_state_bytes: 8 * 1024,
            max_depth: 6,
            max_client_token_bytes: 64,
        }
    }
}

impl Limits {
    pub fn new(max_state_bytes: usize, max_depth: usize, max_client_token_bytes: usize) -> Limits {
        Limits {
            max_state_bytes,
            max_depth,
            max_client_token_bytes,
        }
    }
}

/// A shadow as the service keeps it between requests (the broker's store persists it
/// with serde). A deleted shadow is kept as a tombstone (`deleted_at`) so that its
/// version continues when it is re-created.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shadow {
    /// `state.desired`; `None` when the section is absent.
    pub desired: Option<Map<String, Value>>,
    /// `state.reported`; `None` when the section is absent.
    pub reported: Option<Map<String, Value>>,
    /// `metadata.desired`: `desired` with every leaf replaced by `{"timestamp": t}` of
    /// its last update (an array by an array of one such object per element).
    pub metadata_desired: Option<Map<String, Value>>,
    /// `metadata.reported`, as `metadata_desired`.
    pub metadata_reported: Option<Map<String, Value>>,
    /// The version of the last accepted update (for a tombstone: of the deleted shadow).
    pub version: u64,
    /// When the last accepted update (or the deletion) happened.
    pub timestamp: u64,
    /// When the shadow was deleted; `None` while it exists.
    pub deleted_at: Option<u64>,
}

impl Shadow {
    /// `false` for a tombstone.
    pub fn exists(&self) -> bool {
        self.deleted_at.is_none()
    }

    /// `state.delta`: every key of `desired` whose value differs from (or is missing in)
    /// `reported`, nested objects compared key by key keeping the path from the root,
    /// arrays and scalars compared whole; `None` when there is no difference.
    pub fn delta(&self) -> Option<Map<String, Value>> {
        let desired = self.desired.as_ref()?;
        let empty = Map::new();
        let delta = delta_of(desired, self.reported.as_ref().unwrap_or(&empty));
        (!delta.is_empty()).then_some(delta)
    }

    /// `{"state": {...}, "metadata": {...}, "version": N}`: the shape of `previous` and
    /// `current` in `/update/documents`.
    pub fn document(&self) -> Value {
        json!({
            "state": sections(&self.desired, &self.reported),
            "metadata": sections(&self.metadata_desired, &self.metadata_reported),
            "version": self.version,
        })
    }

    /// Whether the shadow keeps the invariants every [`update`] establishes: each
    /// section's metadata has exactly the section's keys down to every leaf (an array's
    /// metadata one `{"timestamp": n}` per element), no object in a section is empty, a
    /// section without keys is absent, and a tombstone has no sections. For checking
    /// shadows read back from storage.
    pub fn is_consistent(&self) -> bool {
        let section_ok =
            |state: &Option<Map<String, Value>>, meta: &Option<Map<String, Value>>| match (
                state, meta,
            ) {
                (None, None) => true,
                (Some(state), Some(meta)) => !state.is_empty() && object_mirrors(state, meta),
                _ => false,
            };
        let sections_ok = section_ok(&self.desired, &self.metadata_desired)
            && section_ok(&self.reported, &self.metadata_reported);
        sections_ok && (self.exists() || self.desired.is_none() && self.reported.is_none())
    }
}

/// What an accepted update publishes (and keeps).
#[derive(Clone, Debug, PartialEq)]
pub struct Answers {
    /// The shadow to keep.
    pub shadow: Shadow,
    /// `/update/accepted` and the REST UpdateThingShadow body: only the sections and
    /// fields the request carried (with `null`s), their metadata, `version`,
    /// `timestamp`, and `clientToken` when the request had one.
    pub accepted: Value,
    /// `/update/delta`, when the request changed `desired` and the new shadow has a delta:
    /// `{"version", "timestamp", "state": <whole delta>, "metadata": <its metadata>,
    /// "clientToken"?}`.
    pub delta: Option<Value>,
    /// `/update/documents`: `{"previous": <document or absent for a new shadow>,
    /// "current": <document>, "timestamp", "clientToken"?}`.
    pub documents: Value,
}

/// A refused request: IoT Core's error document. Published on `…/rejected` for MQTT
/// requests; the body of the HTTP error for iot-data calls.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    pub code: u16,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

impl Rejection {
    pub fn new(code: u16, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
            timestamp: None,
            client_token: None,
        }
    }

    /// 429, for the caller's in-flight and rate limits (the document rules have none).
    pub fn too_many_requests() -> Rejection {
        Rejection::new(429, "Too Many Requests")
    }

    /// 413 with IoT Core's text, for a request over a size limit the caller applies
    /// before the document rules (the HTTP API's body limit).
    pub fn too_large() -> Rejection {
        Rejection::new(413, TOO_LARGE)
    }

    /// 404 for a shadow that does not exist: `No shadow exists with name: '{label}'`,
    /// where `label` is the shadow's name, or the thing's name for a classic shadow.
    pub fn no_shadow(label: &str) -> Rejection {
        Rejection::new(404, format!("No shadow exists with name: '{label}'"))
    }

    pub fn with_client_token(mut self, client_token: Option<String>) -> Rejection {
        self.client_token = client_token;
        self
    }

    pub fn with_timestamp(mut self, timestamp: u64) -> Rejection {
        self.timestamp = Some(timestamp);
        self
    }

    /// The JSON error document.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a rejection is plain data")
    }

    /// The iot-data REST API's exception name for this code (boto3 raises it):
    /// `InvalidRequestException` (400), `UnauthorizedException` (401),
    /// `ForbiddenException` (403), `ResourceNotFoundException` (404),
    /// `MethodNotAllowedException` (405), `ConflictException` (409),
    /// `RequestEntityTooLargeException` (413), `UnsupportedDocumentEncodingException`
    /// (415), `ThrottlingException` (429), `ServiceUnavailableException` (503),
    /// `InternalFailureException` (500 and anything else).
    pub fn exception_name(&self) -> &'static str {
        exception_name_for_status(self.code)
    }
}

/// The iot-data exception (botocore's model) an HTTP status stands for: each exception
/// has one status, so a client that got no `x-amzn-ErrorType` can still name it.
pub fn exception_name_for_status(code: u16) -> &'static str {
    match code {
        400 => "InvalidRequestException",
        401 => "UnauthorizedException",
        403 => "ForbiddenException",
        404 => "ResourceNotFoundException",
        405 => "MethodNotAllowedException",
        409 => "ConflictException",
        413 => "RequestEntityTooLargeException",
        415 => "UnsupportedDocumentEncodingException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalFailureException",
    }
}

/// The `clientToken` of a request payload, if it is a JSON object carrying a valid one
/// (a string of at most `limits.max_client_token_bytes`); for echoing in answers the
/// service makes itself (429).
pub fn client_token(payload: &[u8], limits: &Limits) -> Option<String> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(payload) else {
        return None;
    };
    read_client_token(&object, limits).ok().flatten()
}

/// An update request (`…/update`, UpdateThingShadow) applied to `current` (`None` or a
/// tombstone: the shadow does not exist, the update creates it).
///
/// Checks, in IoT Core's order and with its texts: UTF-8 JSON object (`400 Invalid
/// JSON`); `clientToken` a string within the limit (`400 Invalid clientToken`);
/// `version` a non-negative integer (`400 Invalid version`) equal to the current version
/// when present (`409 Version conflict`); `state` present (`400 Missing required node:
/// state`), an object or `null` (`400 State node must be an object`), containing only
/// `desired` and `reported` (`400 State contains an invalid node`), each an object or
/// `null` (`400 Desired node must be an object` / `Reported node must be an object`);
/// nesting within `max_depth`; no array containing `null` (`400 Invalid JSON`: IoT Core
/// refuses such arrays, its text for it is not documented); the merged state within
/// `max_state_bytes` (`413 The payload exceeds the maximum size allowed`); and last the
/// version. See the module's list of choices for the details.
///
/// Merge: nested objects merge key by key, a `null` value deletes the key, a section
/// set to `null` is removed, `"state": null` empties the shadow; arrays and scalars are
/// replaced whole. Metadata of every leaf written gets `now`. The version is the current
/// one plus 1; a tombstone's version continues within [`DELETED_VERSION_KEPT_SECS`] of
/// its deletion and restarts at 1 after.
pub fn update(
    current: Option<&Shadow>,
    payload: &[u8],
    now: u64,
    limits: &Limits,
) -> Result<Answers, Rejection> {
    let request = read_request(payload, now, limits, false)?;
    let token = request.client_token;
    let refuse = |code: u16, message: &str| {
        Rejection::new(code, message)
            .with_client_token(token.clone())
            .with_timestamp(now)
    };
    let object = request.object;

    let expected_version = match object.get("version") {
        None => None,
        Some(version) => Some(
            version
                .as_u64()
                .ok_or_else(|| refuse(400, INVALID_VERSION))?,
        ),
    };

    let state = object
        .get("state")
        .ok_or_else(|| refuse(400, MISSING_STATE))?;
    // `None`: the request leaves the section alone; `Some(Null)`: removes it; `Some(map)`:
    // merges into it.
    let (desired, reported) = match state {
        Value::Null => (None, None),
        Value::Object(state) => {
            if state.keys().any(|k| k != "desired" && k != "reported") {
                return Err(refuse(400, STATE_INVALID_NODE));
            }
            let section = |key: &str, message: &str| match state.get(key) {
                None => Ok(None),
                Some(value @ (Value::Null | Value::Object(_))) => Ok(Some(value)),
                Some(_) => Err(refuse(400, message)),
            };
            (
                section("desired", DESIRED_NOT_OBJECT)?,
                section("reported", REPORTED_NOT_OBJECT)?,
            )
        }
        _ => return Err(refuse(400, STATE_NOT_OBJECT)),
    };

    let sent = [desired, reported];
    if sent.iter().flatten().any(|s| depth(s) > limits.max_depth) {
        return Err(refuse(
            400,
            &format!(
                "JSON contains too many levels of nesting; maximum is {}",
                limits.max_depth
            ),
        ));
    }
    if sent.iter().flatten().any(|s| holds_null_in_array(s, false)) {
        return Err(refuse(400, INVALID_JSON));
    }

    let existing = current.filter(|s| s.exists());
    let current_version = match current {
        None => 0,
        Some(shadow) => match shadow.deleted_at {
            None => shadow.version,
            Some(deleted) if now.saturating_sub(deleted) < DELETED_VERSION_KEPT_SECS => {
                shadow.version
            }
            Some(_) => 0,
        },
    };

    let mut shadow = Shadow {
        version: current_version.saturating_add(1),
        timestamp: now,
        deleted_at: None,
        ..existing.cloned().unwrap_or_default()
    };
    if state.is_null() {
        shadow.desired = None;
        shadow.reported = None;
        shadow.metadata_desired = None;
        shadow.metadata_reported = None;
    }
    apply_section(
        &mut shadow.desired,
        &mut shadow.metadata_desired,
        desired,
        now,
    );
    apply_section(
        &mut shadow.reported,
        &mut shadow.metadata_reported,
        reported,
        now,
    );

    if compact_len(&shadow.desired) + compact_len(&shadow.reported) > limits.max_state_bytes {
        return Err(refuse(413, TOO_LARGE));
    }
    if expected_version.is_some_and(|v| v != current_version) {
        return Err(refuse(409, VERSION_CONFLICT));
    }

    let mut accepted = json!({
        "state": state,
        "metadata": sent_metadata(state, now),
        "version": shadow.version,
        "timestamp": now,
    });
    add_client_token(&mut accepted, &token);

    let delta = match (desired, shadow.delta()) {
        (Some(Value::Object(_)), Some(delta)) => {
            let empty = Map::new();
            let metadata = restrict(&delta, shadow.metadata_desired.as_ref().unwrap_or(&empty));
            let mut answer = json!({
                "version": shadow.version,
                "timestamp": now,
                "state": delta,
                "metadata": metadata,
            });
            add_client_token(&mut answer, &token);
            Some(answer)
        }
        _ => None,
    };

    let mut documents = json!({
        "current": shadow.document(),
        "timestamp": now,
    });
    if let Some(previous) = existing {
        documents["previous"] = previous.document();
    }
    add_client_token(&mut documents, &token);

    Ok(Answers {
        shadow,
        accepted,
        delta,
        documents,
    })
}

/// A get request (`…/get`, GetThingShadow): the whole document, `state.desired`,
/// `state.reported`, `state.delta` (when there is one), `metadata`, `version`,
/// `timestamp` (now), `clientToken` when the request had one. The payload may be empty
/// or a JSON object (the SDKs send `{"clientToken": …}`, iOS also `version`, which is
/// not checked); anything else is `400 Invalid JSON`. A missing shadow or a tombstone
/// is [`Rejection::no_shadow`]`(label)`.
pub fn get(
    current: Option<&Shadow>,
    label: &str,
    payload: &[u8],
    now: u64,
    limits: &Limits,
) -> Result<Value, Rejection> {
    let token = read_request(payload, now, limits, true)?.client_token;
    let shadow = existing(current, label, now, &token)?;
    let mut state = sections(&shadow.desired, &shadow.reported);
    if let Some(delta) = shadow.delta() {
        state["delta"] = Value::Object(delta);
    }
    let mut answer = json!({
        "state": state,
        "metadata": sections(&shadow.metadata_desired, &shadow.metadata_reported),
        "version": shadow.version,
        "timestamp": now,
    });
    add_client_token(&mut answer, &token);
    Ok(answer)
}

/// A delete request (`…/delete`, DeleteThingShadow): the tombstone to keep and the
/// answer `{"version": <deleted version>, "timestamp": now, "clientToken"?}`. Payload as
/// for [`get`]; a missing shadow or a tombstone is [`Rejection::no_shadow`]`(label)`.
pub fn delete(
    current: Option<&Shadow>,
    label: &str,
    payload: &[u8],
    now: u64,
    limits: &Limits,
) -> Result<(Shadow, Value), Rejection> {
    let token = read_request(payload, now, limits, true)?.client_token;
    let shadow = existing(current, label, now, &token)?;
    let tombstone = Shadow {
        version: shadow.version,
        timestamp: now,
        deleted_at: Some(now),
        ..Shadow::default()
    };
    let mut answer = json!({"version": shadow.version, "timestamp": now});
    add_client_token(&mut answer, &token);
    Ok((tombstone, answer))
}

/// A request payload that passed the encoding, JSON and `clientToken` checks.
struct Request {
    object: Map<String, Value>,
    client_token: Option<String>,
}

/// The checks every request shares. `empty_allowed`: get and delete may have no payload.
fn read_request(
    payload: &[u8],
    now: u64,
    limits: &Limits,
    empty_allowed: bool,
) -> Result<Request, Rejection> {
    let refuse = |code: u16, message: &str| Rejection::new(code, message).with_timestamp(now);
    let text = std::str::from_utf8(payload).map_err(|_| refuse(415, UNSUPPORTED_ENCODING))?;
    if empty_allowed && text.trim().is_empty() {
        return Ok(Request {
            object: Map::new(),
            client_token: None,
        });
    }
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
        return Err(refuse(400, INVALID_JSON));
    };
    let client_token =
        read_client_token(&object, limits).map_err(|()| refuse(400, INVALID_CLIENT_TOKEN))?;
    Ok(Request {
        object,
        client_token,
    })
}

/// `Ok(None)` without a `clientToken`, `Err` for one that is not a string within the limit.
fn read_client_token(object: &Map<String, Value>, limits: &Limits) -> Result<Option<String>, ()> {
    match object.get("clientToken") {
        None => Ok(None),
        Some(Value::String(token)) if token.len() <= limits.max_client_token_bytes => {
            Ok(Some(token.clone()))
        }
        Some(_) => Err(()),
    }
}

/// The shadow a get or delete acts on, or the 404.
fn existing<'a>(
    current: Option<&'a Shadow>,
    label: &str,
    now: u64,
    token: &Option<String>,
) -> Result<&'a Shadow, Rejection> {
    current.filter(|s| s.exists()).ok_or_else(|| {
        Rejection::no_shadow(label)
            .with_client_token(token.clone())
            .with_timestamp(now)
    })
}

fn add_client_token(answer: &mut Value, token: &Option<String>) {
    if let Some(token) = token {
        answer["clientToken"] = Value::String(token.clone());
    }
}

/// `{"desired"?, "reported"?}` with the absent sections left out.
fn sections(desired: &Option<Map<String, Value>>, reported: &Option<Map<String, Value>>) -> Value {
    let mut out = Map::new();
    if let Some(desired) = desired {
        out.insert("desired".into(), Value::Object(desired.clone()));
    }
    if let Some(reported) = reported {
        out.insert("reported".into(), Value::Object(reported.clone()));
    }
    Value::Object(out)
}

/// Nesting levels of a value: a scalar or `null` 0, an object or array one more than its
/// deepest member.
fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether a `null` sits anywhere inside an array within `value`.
fn holds_null_in_array(value: &Value, in_array: bool) -> bool {
    match value {
        Value::Null => in_array,
        Value::Array(items) => items.iter().any(|v| holds_null_in_array(v, true)),
        Value::Object(map) => map.values().any(|v| holds_null_in_array(v, in_array)),
        _ => false,
    }
}

/// A section of the request applied to the stored section and its metadata.
fn apply_section(
    state: &mut Option<Map<String, Value>>,
    metadata: &mut Option<Map<String, Value>>,
    sent: Option<&Value>,
    now: u64,
) {
    match sent {
        None => {}
        Some(Value::Object(patch)) => {
            let mut merged = state.take().unwrap_or_default();
            let mut merged_metadata = metadata.take().unwrap_or_default();
            merge(&mut merged, &mut merged_metadata, patch, now);
            if !merged.is_empty() {
                *state = Some(merged);
                *metadata = Some(merged_metadata);
            }
        }
        Some(_) => {
            *state = None;
            *metadata = None;
        }
    }
}

/// Merges `patch` into `state` and keeps `metadata` its mirror: `null` deletes, objects
/// merge key by key, anything else replaces and gets `now`; objects left empty go.
fn merge(
    state: &mut Map<String, Value>,
    metadata: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    now: u64,
) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                state.remove(key);
                metadata.remove(key);
            }
            Value::Object(sub_patch) => {
                // A scalar or array replaced by an object starts from an empty one; so
                // does metadata that does not mirror an object.
                if !state.get(key).is_some_and(Value::is_object) {
                    state.insert(key.clone(), Value::Object(Map::new()));
                    metadata.remove(key);
                }
                if !metadata.get(key).is_some_and(Value::is_object) {
                    metadata.insert(key.clone(), Value::Object(Map::new()));
                }
                let (Some(Value::Object(sub_state)), Some(Value::Object(sub_metadata))) =
                    (state.get_mut(key), metadata.get_mut(key))
                else {
                    unreachable!("both were made objects above");
                };
                merge(sub_state, sub_metadata, sub_patch, now);
                if sub_state.is_empty() {
                    state.remove(key);
                    metadata.remove(key);
                }
            }
            leaf => {
                state.insert(key.clone(), leaf.clone());
                metadata.insert(key.clone(), sent_metadata(leaf, now));
            }
        }
    }
}

/// The metadata of a value as sent: objects mirrored key by key, an array one timestamp
/// per element, any other value (`null` included) one timestamp.
fn sent_metadata(value: &Value, now: u64) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), sent_metadata(v, now)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|_| timestamp(now)).collect()),
        _ => timestamp(now),
    }
}

fn timestamp(now: u64) -> Value {
    json!({ "timestamp": now })
}

/// Whether `metadata` mirrors `state` as [`merge`] builds it, with no empty object.
fn object_mirrors(state: &Map<String, Value>, metadata: &Map<String, Value>) -> bool {
    state.len() == metadata.len()
        && state.iter().all(|(key, value)| {
            let Some(meta) = metadata.get(key) else {
                return false;
            };
            match (value, meta) {
                (Value::Object(s), Value::Object(m)) => !s.is_empty() && object_mirrors(s, m),
                (Value::Object(_), _) => false,
                (Value::Array(items), Value::Array(stamps)) => {
                    items.len() == stamps.len() && stamps.iter().all(is_timestamp)
                }
                (Value::Array(_), _) => false,
                (_, meta) => is_timestamp(meta),
            }
        })
}

fn is_timestamp(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|m| m.len() == 1 && m.get("timestamp").is_some_and(|t| t.as_u64().is_some()))
}

/// Keys of `desired` whose values differ from `reported`'s, keeping nested paths.
fn delta_of(desired: &Map<String, Value>, reported: &Map<String, Value>) -> Map<String, Value> {
    let mut delta = Map::new();
    for (key, wanted) in desired {
        match (wanted, reported.get(key)) {
            (Value::Object(wanted_map), Some(Value::Object(reported_map))) => {
                let sub = delta_of(wanted_map, reported_map);
                if !sub.is_empty() {
                    delta.insert(key.clone(), Value::Object(sub));
                }
            }
            (_, Some(actual)) if same_value(wanted, actual) => {}
            _ => {
                delta.insert(key.clone(), wanted.clone());
            }
        }
    }
    delta
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| same_value(a, b)))
        }
        _ => a == b,
    }
}

fn same_number(x: &Number, y: &Number) -> bool {
    let integer = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (integer(x), integer(y)) {
        (Some(x), Some(y)) => x == y,
        _ => x.as_f64() == y.as_f64(),
    }
}

/// `metadata` cut down to the paths of `delta` (whose objects all mirror objects of the
/// desired section `metadata` describes).
fn restrict(delta: &Map<String, Value>, metadata: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in delta {
        let Some(meta) = metadata.get(key) else {
            continue;
        };
        let meta = match (value, meta) {
            (Value::Object(sub_delta), Value::Object(sub_meta)) => {
                Value::Object(restrict(sub_delta, sub_meta))
            }
            _ => meta.clone(),
        };
        out.insert(key.clone(), meta);
    }
    out
}

/// Length of a section's compact JSON (0 when absent), without building the text.
fn compact_len(section: &Option<Map<String, Value>>) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let Some(section) = section else {
        return 0;
    };
    let mut count = Count(0);
    serde_json::to_writer(&mut count, section).expect("a JSON map always serializes");
    count.0
}

#[cfg(test)]
mod tests;
