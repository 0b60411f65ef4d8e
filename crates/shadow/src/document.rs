//! A shadow document and what the service does with requests to it, as IoT Core's
//! developer guide describes (`device-shadow-document.md`, `device-shadow-data-flow.md`,
//! `device-shadow-error-messages.md`; summarised with sources in
//! `shared/IOT-FACTS-MQTT5-SHADOW.md` §3).
//!
//! Everything here is pure: the caller passes the current shadow (if any), the request's
//! payload and the time, and gets the new shadow to keep plus the JSON answers to publish,
//! or a [`Rejection`] with IoT Core's code and text. Timestamps are epoch seconds.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How long a deleted shadow's version is remembered: a shadow re-created within 48 hours
/// continues the old numbering, later it starts again (`device-shadow-data-flow.md`).
pub const DELETED_VERSION_KEPT_SECS: u64 = 48 * 3600;

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
        todo!()
    }

    /// `{"state": {...}, "metadata": {...}, "version": N}`: the shape of `previous` and
    /// `current` in `/update/documents`.
    pub fn document(&self) -> Value {
        todo!()
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
        todo!()
    }
}

/// The `clientToken` of a request payload, if it is a JSON object carrying a valid one
/// (a string of at most `limits.max_client_token_bytes`); for echoing in answers the
/// service makes itself (429).
pub fn client_token(payload: &[u8], limits: &Limits) -> Option<String> {
    let _ = (payload, limits);
    todo!()
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
/// no array containing `null` (`400 Invalid JSON`: IoT Core refuses such arrays, its text
/// for it is not documented); nesting within `max_depth`; the merged state within `max_state_bytes` (`413 The
/// payload exceeds the maximum size allowed`).
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
    let _ = (current, payload, now, limits);
    todo!()
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
    let _ = (current, label, payload, now, limits);
    todo!()
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
    let _ = (current, label, payload, now, limits);
    todo!()
}
