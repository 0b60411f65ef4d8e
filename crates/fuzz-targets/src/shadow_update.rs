//! Any bytes as a Device Shadow update request, applied to no shadow, to an existing one,
//! to a fresh tombstone and to one older than 48 hours: never a panic; a refusal is one
//! of the update's codes and echoes only the request's own valid `clientToken`; an
//! accepted update leaves a consistent shadow (metadata mirroring the state, nothing
//! empty) of the right version within the size limit, answers that agree with it, and
//! is idempotent (the same request again changes nothing but the version). The same
//! bytes as get and delete payloads must not panic either.

use serde_json::Value;
use shadow::document::{self, Limits, Shadow, DELETED_VERSION_KEPT_SECS};

const NOW: u64 = 1_700_000_000;

pub fn run(data: &[u8]) {
    let limits = Limits::default();
    let existing = document::update(
        None,
        br#"{"state":{"desired":{"a":1,"b":{"c":[1,2]},"s":"x"},"reported":{"a":2,"d":{"e":true}}}}"#,
        NOW - 10,
        &limits,
    )
    .expect("the base update is valid")
    .shadow;
    let (fresh_tombstone, _) = document::delete(Some(&existing), "t", b"", NOW - 5, &limits)
        .expect("the base shadow exists");
    let old_tombstone = Shadow {
        deleted_at: Some(NOW - DELETED_VERSION_KEPT_SECS),
        ..fresh_tombstone.clone()
    };

    let token = document::client_token(data, &limits);
    if let Some(token) = &token {
        assert!(token.len() <= limits.max_client_token_bytes);
    }
    let request = serde_json::from_slice::<Value>(data).ok();

    for (current, version_before) in [
        (None, 0),
        (Some(&existing), existing.version),
        (Some(&fresh_tombstone), fresh_tombstone.version),
        (Some(&old_tombstone), 0),
    ] {
        match document::update(current, data, NOW, &limits) {
            Ok(answers) => {
                let request = request.as_ref().expect("an accepted request is JSON");
                check_accepted(current, version_before, request, &answers, &token, &limits);
                if request.get("version").is_none() {
                    let again = document::update(Some(&answers.shadow), data, NOW + 1, &limits)
                        .expect("an accepted request applies again");
                    assert_eq!(again.shadow.desired, answers.shadow.desired);
                    assert_eq!(again.shadow.reported, answers.shadow.reported);
                    assert_eq!(again.shadow.version, answers.shadow.version + 1);
                }
            }
            Err(rejection) => {
                assert!(
                    [400, 409, 413, 415].contains(&rejection.code),
                    "{rejection}"
                );
                assert_eq!(rejection.timestamp, Some(NOW));
                assert!(rejection.client_token.is_none() || rejection.client_token == token);
                if rejection.code == 409 || rejection.code == 413 {
                    assert_eq!(rejection.client_token, token);
                }
                if rejection.code == 409 {
                    assert!(request.as_ref().is_some_and(|r| r.get("version").is_some()));
                }
                let _ = (rejection.to_json(), rejection.exception_name());
            }
        }

        let exists = current.is_some_and(Shadow::exists);
        for outcome in [
            document::get(current, "t", data, NOW, &limits).map(|_| ()),
            document::delete(current, "t", data, NOW, &limits).map(|(tombstone, answer)| {
                assert!(!tombstone.exists());
                assert_eq!(answer["version"], tombstone.version);
            }),
        ] {
            match outcome {
                Ok(()) => assert!(exists),
                Err(rejection) => {
                    assert!([400, 404, 415].contains(&rejection.code), "{rejection}");
                    assert!(exists || rejection.code != 404 || rejection.client_token == token);
                }
            }
        }
    }
}

fn check_accepted(
    current: Option<&Shadow>,
    version_before: u64,
    request: &Value,
    answers: &document::Answers,
    token: &Option<String>,
    limits: &Limits,
) {
    let shadow = &answers.shadow;
    assert!(shadow.exists());
    assert!(shadow.is_consistent(), "{shadow:?}");
    assert_eq!(shadow.version, version_before + 1);
    assert_eq!(shadow.timestamp, NOW);
    let size = |section: &Option<serde_json::Map<String, Value>>| {
        section
            .as_ref()
            .map_or(0, |s| serde_json::to_string(s).unwrap().len())
    };
    assert!(size(&shadow.desired) + size(&shadow.reported) <= limits.max_state_bytes);

    let echoed = |answer: &Value| {
        answer
            .get("clientToken")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    assert_eq!(answers.accepted["state"], request["state"]);
    assert_eq!(answers.accepted["version"], shadow.version);
    assert_eq!(&echoed(&answers.accepted), token);
    assert_eq!(answers.documents["current"], shadow.document());
    assert_eq!(&echoed(&answers.documents), token);
    match current.filter(|s| s.exists()) {
        Some(previous) => assert_eq!(answers.documents["previous"], previous.document()),
        None => assert!(answers.documents.get("previous").is_none()),
    }
    if let Some(delta) = &answers.delta {
        assert!(request["state"]["desired"].is_object());
        let expected = shadow
            .delta()
            .expect("a published delta is the shadow's delta");
        assert_eq!(delta["state"], Value::Object(expected));
        assert_eq!(&echoed(delta), token);
    } else if request["state"]["desired"].is_object() {
        assert_eq!(shadow.delta(), None);
    }

    let text = serde_json::to_string(shadow).unwrap();
    assert_eq!(&serde_json::from_str::<Shadow>(&text).unwrap(), shadow);
    let got = document::get(Some(shadow), "t", b"", NOW, limits).expect("the new shadow exists");
    assert_eq!(got["version"], shadow.version);
}
