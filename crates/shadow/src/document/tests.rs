//! The document engine against the developer guide's examples and the facts file's §5
//! items 15–19, then every rejection text, versions, merge, pruning, metadata and delta.

use serde_json::{json, Value};

use super::*;

const T0: u64 = 1_591_141_596;

fn limits() -> Limits {
    Limits::default()
}

fn ts(t: u64) -> Value {
    json!({ "timestamp": t })
}

fn apply(current: Option<&Shadow>, request: Value, now: u64) -> Answers {
    update(current, request.to_string().as_bytes(), now, &limits())
        .unwrap_or_else(|r| panic!("{request} refused: {r}"))
}

fn refused(current: Option<&Shadow>, payload: &[u8]) -> Rejection {
    match update(current, payload, T0, &limits()) {
        Ok(answers) => panic!(
            "{} accepted: {}",
            String::from_utf8_lossy(payload),
            answers.accepted
        ),
        Err(rejection) => rejection,
    }
}

fn refused_json(current: Option<&Shadow>, request: Value) -> Rejection {
    refused(current, request.to_string().as_bytes())
}

/// A shadow built by the given requests, one second apart from `T0`.
fn shadow_of(requests: &[Value]) -> Shadow {
    let mut shadow: Option<Shadow> = None;
    for (i, request) in requests.iter().enumerate() {
        shadow = Some(apply(shadow.as_ref(), request.clone(), T0 + i as u64).shadow);
    }
    shadow.expect("at least one request")
}

fn get_ok(shadow: &Shadow, now: u64) -> Value {
    get(Some(shadow), "thing", b"", now, &limits()).unwrap()
}

// §5 item 15.
#[test]
fn first_desired_update_answers_accepted_delta_and_documents() {
    let answers = apply(
        None,
        json!({"state":{"desired":{"a":1,"b":{"c":2}}},"clientToken":"t1"}),
        T0,
    );
    assert_eq!(
        answers.accepted,
        json!({
            "state": {"desired": {"a": 1, "b": {"c": 2}}},
            "metadata": {"desired": {"a": ts(T0), "b": {"c": ts(T0)}}},
            "version": 1,
            "timestamp": T0,
            "clientToken": "t1",
        })
    );
    assert_eq!(
        answers.delta,
        Some(json!({
            "version": 1,
            "timestamp": T0,
            "state": {"a": 1, "b": {"c": 2}},
            "metadata": {"a": ts(T0), "b": {"c": ts(T0)}},
            "clientToken": "t1",
        }))
    );
    let current = json!({
        "state": {"desired": {"a": 1, "b": {"c": 2}}},
        "metadata": {"desired": {"a": ts(T0), "b": {"c": ts(T0)}}},
        "version": 1,
    });
    assert_eq!(
        answers.documents,
        json!({"current": current, "timestamp": T0, "clientToken": "t1"})
    );
    assert_eq!(answers.shadow.version, 1);
    assert_eq!(answers.shadow.timestamp, T0);
    assert!(answers.shadow.exists());
    assert!(answers.shadow.is_consistent());

    // The next update: version previous + 1, documents carry previous and current.
    let next = apply(
        Some(&answers.shadow),
        json!({"state":{"desired":{"a":3}},"clientToken":"t2"}),
        T0 + 10,
    );
    assert_eq!(next.accepted["version"], 2);
    assert_eq!(next.documents["previous"], current);
    assert_eq!(
        next.documents["current"],
        json!({
            "state": {"desired": {"a": 3, "b": {"c": 2}}},
            "metadata": {"desired": {"a": ts(T0 + 10), "b": {"c": ts(T0)}}},
            "version": 2,
        })
    );
    assert_eq!(next.documents["clientToken"], "t2");
    assert_eq!(next.documents["timestamp"], T0 + 10);
}

// §5 item 16.
#[test]
fn reported_leaves_the_rest_in_the_delta_and_null_deletes() {
    let first = apply(None, json!({"state":{"desired":{"a":1,"b":{"c":2}}}}), T0);
    let reported = apply(
        Some(&first.shadow),
        json!({"state":{"reported":{"b":{"c":2}}}}),
        T0 + 1,
    );
    assert_eq!(
        reported.delta, None,
        "a reported-only update publishes no delta"
    );
    let got = get_ok(&reported.shadow, T0 + 2);
    assert_eq!(got["state"]["delta"], json!({"a": 1}));
    assert_eq!(
        got["state"]["desired"],
        json!({"a": 1, "b": {"c": 2}}),
        "desired is not cleared when reported matches"
    );
    assert_eq!(got["state"]["reported"], json!({"b": {"c": 2}}));

    let removed = apply(
        Some(&reported.shadow),
        json!({"state":{"desired":{"a":null}}}),
        T0 + 3,
    );
    assert_eq!(
        removed.accepted,
        json!({
            "state": {"desired": {"a": null}},
            "metadata": {"desired": {"a": ts(T0 + 3)}},
            "version": 3,
            "timestamp": T0 + 3,
        })
    );
    assert_eq!(removed.delta, None);
    assert_eq!(removed.shadow.delta(), None);
    let got = get_ok(&removed.shadow, T0 + 4);
    assert_eq!(
        got,
        json!({
            "state": {"desired": {"b": {"c": 2}}, "reported": {"b": {"c": 2}}},
            "metadata": {
                "desired": {"b": {"c": ts(T0)}},
                "reported": {"b": {"c": ts(T0 + 1)}},
            },
            "version": 3,
            "timestamp": T0 + 4,
        })
    );
}

// §5 item 17.
#[test]
fn arrays_are_replaced_whole_with_one_timestamp_per_element() {
    let three = apply(None, json!({"state":{"desired":{"l":[1,2,3]}}}), T0);
    assert_eq!(
        three.accepted["metadata"],
        json!({"desired": {"l": [ts(T0), ts(T0), ts(T0)]}})
    );
    let one = apply(
        Some(&three.shadow),
        json!({"state":{"desired":{"l":[1]}}}),
        T0 + 1,
    );
    assert_eq!(
        one.shadow.desired,
        Some(json!({"l": [1]}).as_object().unwrap().clone())
    );
    assert_eq!(
        one.shadow.metadata_desired,
        Some(json!({"l": [ts(T0 + 1)]}).as_object().unwrap().clone())
    );
    assert_eq!(one.delta.unwrap()["metadata"], json!({"l": [ts(T0 + 1)]}));

    let rejected = refused_json(
        Some(&one.shadow),
        json!({"state":{"desired":{"l":[null,"x"]}},"clientToken":"c"}),
    );
    assert_eq!(
        rejected.to_json(),
        json!({"code": 400, "message": "Invalid JSON", "timestamp": T0, "clientToken": "c"})
    );
}

#[test]
fn nulls_nested_anywhere_in_an_array_are_refused() {
    for request in [
        json!({"state":{"reported":{"l":[1,[2,null]]}}}),
        json!({"state":{"reported":{"l":[{"k":null}]}}}),
        json!({"state":{"desired":{"o":{"l":[null]}}}}),
    ] {
        let r = refused_json(None, request.clone());
        assert_eq!(
            (r.code, r.message.as_str()),
            (400, "Invalid JSON"),
            "{request}"
        );
    }
    // Nulls outside arrays are deletions, fine.
    apply(
        None,
        json!({"state":{"desired":{"o":{"k":null},"l":[{}]}}}),
        T0,
    );
}

// §5 item 18.
#[test]
fn a_wrong_version_is_a_conflict() {
    let shadow = shadow_of(&[
        json!({"state":{"desired":{"a":1}}}),
        json!({"state":{"desired":{"a":2}}}),
    ]);
    assert_eq!(shadow.version, 2);
    for wrong in [0, 1, 3, 100] {
        let r = refused_json(
            Some(&shadow),
            json!({"state":{"desired":{"a":3}},"version":wrong,"clientToken":"v"}),
        );
        assert_eq!(
            r.to_json(),
            json!({"code": 409, "message": "Version conflict", "timestamp": T0, "clientToken": "v"})
        );
        assert_eq!(r.exception_name(), "ConflictException");
    }
    let ok = apply(
        Some(&shadow),
        json!({"state":{"desired":{"a":3}},"version":2}),
        T0 + 5,
    );
    assert_eq!(ok.shadow.version, 3);
    // No shadow: the current version is 0.
    assert_eq!(
        apply(None, json!({"state":{},"version":0}), T0)
            .shadow
            .version,
        1
    );
    assert_eq!(
        refused_json(None, json!({"state":{},"version":1})).code,
        409
    );
}

#[test]
fn deleting_keeps_the_version_for_48_hours() {
    let shadow = shadow_of(&[
        json!({"state":{"desired":{"a":1}}}),
        json!({"state":{"desired":{"a":2}}}),
        json!({"state":{"reported":{"a":2}}}),
    ]);
    let deleted_at = T0 + 100;
    let (tombstone, answer) = delete(Some(&shadow), "thing", b"", deleted_at, &limits()).unwrap();
    assert_eq!(answer, json!({"version": 3, "timestamp": deleted_at}));
    assert_eq!(
        tombstone,
        Shadow {
            version: 3,
            timestamp: deleted_at,
            deleted_at: Some(deleted_at),
            ..Shadow::default()
        }
    );
    assert!(!tombstone.exists());
    assert!(tombstone.is_consistent());

    let request = || json!({"state":{"desired":{"b":1}}});
    let just_before = deleted_at + DELETED_VERSION_KEPT_SECS - 1;
    let recreated = apply(Some(&tombstone), request(), just_before);
    assert_eq!(
        recreated.shadow.version, 4,
        "re-created within 48 h continues"
    );
    assert_eq!(recreated.shadow.deleted_at, None);
    assert_eq!(recreated.shadow.timestamp, just_before);
    assert_eq!(
        recreated.shadow.desired,
        Some(json!({"b": 1}).as_object().unwrap().clone()),
        "nothing of the deleted shadow's state comes back"
    );
    assert_eq!(recreated.shadow.reported, None);
    assert!(recreated.documents.get("previous").is_none());
    // The optimistic check sees the tombstone's version within the 48 hours.
    let with_version = |v: u64| {
        let mut r = request();
        r["version"] = json!(v);
        r.to_string()
    };
    assert!(update(
        Some(&tombstone),
        with_version(3).as_bytes(),
        just_before,
        &limits()
    )
    .is_ok());
    assert_eq!(
        update(
            Some(&tombstone),
            with_version(0).as_bytes(),
            just_before,
            &limits()
        )
        .unwrap_err()
        .code,
        409
    );

    let at_boundary = deleted_at + DELETED_VERSION_KEPT_SECS;
    let fresh = apply(Some(&tombstone), request(), at_boundary);
    assert_eq!(fresh.shadow.version, 1, "after 48 h the numbering restarts");
    assert!(update(
        Some(&tombstone),
        with_version(0).as_bytes(),
        at_boundary,
        &limits()
    )
    .is_ok());
    assert_eq!(
        update(
            Some(&tombstone),
            with_version(3).as_bytes(),
            at_boundary,
            &limits()
        )
        .unwrap_err()
        .code,
        409
    );
}

#[test]
fn missing_shadows_and_tombstones_are_404() {
    let shadow = shadow_of(&[json!({"state":{"desired":{"a":1}}})]);
    let (tombstone, _) = delete(Some(&shadow), "x", b"", T0 + 1, &limits()).unwrap();
    for current in [None, Some(&tombstone)] {
        let r = delete(current, "x", b"", T0 + 2, &limits()).unwrap_err();
        assert_eq!(
            r.to_json(),
            json!({"code": 404, "message": "No shadow exists with name: 'x'", "timestamp": T0 + 2})
        );
        assert_eq!(r.exception_name(), "ResourceNotFoundException");
        let r = get(current, "x", br#"{"clientToken":"g"}"#, T0 + 2, &limits()).unwrap_err();
        assert_eq!(
            r.to_json(),
            json!({
                "code": 404,
                "message": "No shadow exists with name: 'x'",
                "timestamp": T0 + 2,
                "clientToken": "g",
            })
        );
    }
}

// §5 item 19 and the remaining texts.
#[test]
fn every_validation_text() {
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"not json".to_vec(), 400, "Invalid JSON"),
        (b"".to_vec(), 400, "Invalid JSON"),
        (b"[1]".to_vec(), 400, "Invalid JSON"),
        (b"\"state\"".to_vec(), 400, "Invalid JSON"),
        (b"null".to_vec(), 400, "Invalid JSON"),
        (
            b"{\"state\":{\"desired\":{\"a\":\"\xff\"}}}".to_vec(),
            415,
            "Unsupported documented encoding; supported encoding is UTF-8",
        ),
        (
            br#"{"desired":{"a":1}}"#.to_vec(),
            400,
            "Missing required node: state",
        ),
        (
            br#"{"state":1}"#.to_vec(),
            400,
            "State node must be an object",
        ),
        (
            br#"{"state":"x"}"#.to_vec(),
            400,
            "State node must be an object",
        ),
        (
            br#"{"state":[]}"#.to_vec(),
            400,
            "State node must be an object",
        ),
        (
            br#"{"state":{"delta":{}}}"#.to_vec(),
            400,
            "State contains an invalid node",
        ),
        (
            br#"{"state":{"desired":{},"metadata":{}}}"#.to_vec(),
            400,
            "State contains an invalid node",
        ),
        (
            br#"{"state":{"desired":1}}"#.to_vec(),
            400,
            "Desired node must be an object",
        ),
        (
            br#"{"state":{"desired":[]}}"#.to_vec(),
            400,
            "Desired node must be an object",
        ),
        (
            br#"{"state":{"reported":"x"}}"#.to_vec(),
            400,
            "Reported node must be an object",
        ),
        (
            br#"{"state":{"desired":true,"reported":"x"}}"#.to_vec(),
            400,
            "Desired node must be an object",
        ),
        (
            br#"{"state":{},"version":-1}"#.to_vec(),
            400,
            "Invalid version",
        ),
        (
            br#"{"state":{},"version":1.5}"#.to_vec(),
            400,
            "Invalid version",
        ),
        (
            br#"{"state":{},"version":"3"}"#.to_vec(),
            400,
            "Invalid version",
        ),
        (
            br#"{"state":{},"version":null}"#.to_vec(),
            400,
            "Invalid version",
        ),
        (
            br#"{"state":{},"clientToken":7}"#.to_vec(),
            400,
            "Invalid clientToken",
        ),
        (
            br#"{"state":{},"clientToken":null}"#.to_vec(),
            400,
            "Invalid clientToken",
        ),
    ];
    for (payload, code, message) in cases {
        let r = refused(None, &payload);
        assert_eq!(
            (r.code, r.message.as_str()),
            (code, message),
            "{}",
            String::from_utf8_lossy(&payload)
        );
        assert_eq!(r.timestamp, Some(T0));
        assert_eq!(r.client_token, None);
    }
}

#[test]
fn client_token_is_limited_to_64_bytes() {
    let request = |token: &str| json!({"state":{"desired":{"a":1}},"clientToken":token});
    let r = refused_json(None, request(&"t".repeat(65)));
    assert_eq!(
        r.to_json(),
        json!({"code": 400, "message": "Invalid clientToken", "timestamp": T0})
    );
    assert_eq!(r.exception_name(), "InvalidRequestException");
    // Bytes, not characters: 33 two-byte characters are 66 bytes.
    assert_eq!(
        refused_json(None, request(&"é".repeat(33))).message,
        "Invalid clientToken"
    );
    let max = "t".repeat(64);
    assert_eq!(
        apply(None, request(&max), T0).accepted["clientToken"],
        max.as_str()
    );
    assert_eq!(apply(None, request(""), T0).accepted["clientToken"], "");
}

#[test]
fn state_over_8_kb_is_413() {
    // {"s":"…"} is 8 bytes of framing.
    let fits = json!({"state":{"desired":{"s":"x".repeat(8 * 1024 - 8)}}});
    let shadow = apply(None, fits, T0).shadow;
    let r = refused_json(
        None,
        json!({"state":{"desired":{"s":"x".repeat(9000)}},"clientToken":"big"}),
    );
    assert_eq!(
        r.to_json(),
        json!({
            "code": 413,
            "message": "The payload exceeds the maximum size allowed",
            "timestamp": T0,
            "clientToken": "big",
        })
    );
    assert_eq!(r.exception_name(), "RequestEntityTooLargeException");
    // The merged state counts: one more byte in the other section is too much.
    // Exactly at the limit is fine (an empty section is absent and counts nothing).
    apply(Some(&shadow), json!({"state":{"reported":{}}}), T0);
    let r = refused_json(Some(&shadow), json!({"state":{"reported":{"t":1}}}));
    assert_eq!(r.code, 413);
    // Replacing the big value by a small one is fine, and metadata never counts.
    apply(
        Some(&shadow),
        json!({"state":{"desired":{"s":"small"},"reported":{"t":1}}}),
        T0,
    );
}

#[test]
fn nesting_beyond_the_limit_is_refused() {
    fn nested(levels: usize) -> Value {
        (1..levels).fold(json!({"leaf": 1}), |inner, _| json!({ "k": inner }))
    }
    let six = nested(6);
    apply(
        None,
        json!({"state":{"desired":six.clone(),"reported":six}}),
        T0,
    );
    for section in ["desired", "reported"] {
        let r = refused_json(
            None,
            json!({"state":{section: nested(7)},"clientToken":"d"}),
        );
        assert_eq!(
            r.to_json(),
            json!({
                "code": 400,
                "message": "JSON contains too many levels of nesting; maximum is 6",
                "timestamp": T0,
                "clientToken": "d",
            })
        );
    }
    // An array is a level; `{"a":[[[[[1]]]]]}` is 6 deep, one more array is 7.
    apply(None, json!({"state":{"desired":{"a":[[[[[1]]]]]}}}), T0);
    assert_eq!(
        refused_json(None, json!({"state":{"desired":{"a":[[[[[[1]]]]]]}}})).code,
        400
    );
    // The limit is configurable and named in the text.
    let r = update(
        None,
        json!({"state":{"desired":nested(3)}})
            .to_string()
            .as_bytes(),
        T0,
        &Limits::new(8192, 2, 64),
    )
    .unwrap_err();
    assert_eq!(
        r.message,
        "JSON contains too many levels of nesting; maximum is 2"
    );
}

#[test]
fn nesting_beyond_the_parser_is_invalid_json() {
    let deep = format!(
        r#"{{"state":{{"desired":{}1{}}}}}"#,
        r#"{"k":"#.repeat(200),
        "}".repeat(200)
    );
    assert_eq!(refused(None, deep.as_bytes()).message, "Invalid JSON");
    assert_eq!(
        refused(None, "[".repeat(100_000).as_bytes()).message,
        "Invalid JSON"
    );
}

#[test]
fn checks_run_in_order() {
    let first = |request: Value| refused_json(None, request).message;
    // clientToken before version.
    assert_eq!(
        first(json!({"clientToken":1,"version":-1})),
        "Invalid clientToken"
    );
    // version before state.
    assert_eq!(first(json!({"version":"x"})), "Invalid version");
    // state shape before nested sections.
    assert_eq!(
        first(json!({"state":{"other":1,"desired":1}})),
        "State contains an invalid node"
    );
    // depth before arrays holding null.
    let deep_with_null = json!({"state":{"desired":{"a":[[[[[[null]]]]]]}}});
    assert!(first(deep_with_null).starts_with("JSON contains too many levels"));
    // arrays holding null before size.
    assert_eq!(
        first(json!({"state":{"desired":{"a":[null],"s":"x".repeat(9000)}}})),
        "Invalid JSON"
    );
    // size before the version conflict.
    assert_eq!(
        first(json!({"state":{"desired":{"s":"x".repeat(9000)}},"version":5})),
        "The payload exceeds the maximum size allowed"
    );
}

#[test]
fn rejections_after_the_token_echo_it() {
    for request in [
        json!({"clientToken":"e","version":-1}),
        json!({"clientToken":"e"}),
        json!({"clientToken":"e","state":1}),
        json!({"clientToken":"e","state":{"x":{}}}),
        json!({"clientToken":"e","state":{"desired":2}}),
        json!({"clientToken":"e","state":{"reported":2}}),
    ] {
        let r = refused_json(None, request.clone());
        assert_eq!(r.client_token.as_deref(), Some("e"), "{request}");
        assert_eq!(r.timestamp, Some(T0));
        assert_eq!(r.to_json()["clientToken"], "e");
    }
}

#[test]
fn other_top_level_keys_are_ignored() {
    let answers = apply(
        None,
        json!({"state":{"reported":{"a":1}},"metadata":{"x":1},"timestamp":5,"extra":[null]}),
        T0,
    );
    assert_eq!(
        answers.accepted,
        json!({
            "state": {"reported": {"a": 1}},
            "metadata": {"reported": {"a": ts(T0)}},
            "version": 1,
            "timestamp": T0,
        })
    );
    assert_eq!(answers.delta, None);
}

#[test]
fn null_state_empties_the_shadow_but_keeps_it() {
    let shadow = shadow_of(&[json!({"state":{"desired":{"a":1},"reported":{"b":2}}})]);
    let emptied = apply(
        Some(&shadow),
        json!({"state":null,"clientToken":"n"}),
        T0 + 9,
    );
    assert_eq!(
        emptied.accepted,
        json!({
            "state": null,
            "metadata": ts(T0 + 9),
            "version": 2,
            "timestamp": T0 + 9,
            "clientToken": "n",
        })
    );
    assert_eq!(emptied.delta, None);
    assert_eq!(emptied.documents["previous"], shadow.document());
    assert_eq!(
        emptied.documents["current"],
        json!({"state": {}, "metadata": {}, "version": 2})
    );
    assert!(emptied.shadow.exists());
    assert_eq!(
        get_ok(&emptied.shadow, T0 + 10),
        json!({"state": {}, "metadata": {}, "version": 2, "timestamp": T0 + 10})
    );
    // And it is an update like any: a new one builds on the empty shadow.
    let again = apply(
        Some(&emptied.shadow),
        json!({"state":{"reported":{"c":3}}}),
        T0 + 11,
    );
    assert_eq!(again.shadow.version, 3);
    assert_eq!(again.shadow.desired, None);
}

#[test]
fn a_null_section_removes_it() {
    let shadow = shadow_of(&[json!({"state":{"desired":{"a":1},"reported":{"b":2}}})]);
    let answers = apply(Some(&shadow), json!({"state":{"desired":null}}), T0 + 1);
    assert_eq!(answers.shadow.desired, None);
    assert_eq!(answers.shadow.metadata_desired, None);
    assert_eq!(answers.shadow.reported, shadow.reported);
    assert_eq!(answers.accepted["metadata"], json!({"desired": ts(T0 + 1)}));
    assert_eq!(answers.delta, None);
    let answers = apply(
        Some(&answers.shadow),
        json!({"state":{"reported":null}}),
        T0 + 2,
    );
    assert_eq!(answers.documents["current"]["state"], json!({}));
}

#[test]
fn merge_keeps_untouched_fields_and_replaces_arrays_and_scalars() {
    let shadow = shadow_of(&[
        json!({"state":{"desired":{"a":1,"o":{"x":1,"y":{"z":[1,2]}},"s":"k"}}}),
        json!({"state":{"desired":{"o":{"y":{"z":["n"]},"w":true},"s":{"now":"object"}}}}),
    ]);
    assert_eq!(
        Value::Object(shadow.desired.clone().unwrap()),
        json!({"a":1,"o":{"x":1,"y":{"z":["n"]},"w":true},"s":{"now":"object"}})
    );
    assert_eq!(
        Value::Object(shadow.metadata_desired.clone().unwrap()),
        json!({
            "a": ts(T0),
            "o": {"x": ts(T0), "y": {"z": [ts(T0 + 1)]}, "w": ts(T0 + 1)},
            "s": {"now": ts(T0 + 1)},
        })
    );
    // An object replaced by a scalar takes the scalar's single timestamp.
    let flat = apply(Some(&shadow), json!({"state":{"desired":{"o":5}}}), T0 + 2).shadow;
    assert_eq!(flat.desired.as_ref().unwrap()["o"], 5);
    assert_eq!(flat.metadata_desired.as_ref().unwrap()["o"], ts(T0 + 2));
    assert!(flat.is_consistent());
}

#[test]
fn objects_left_empty_are_pruned() {
    let shadow = shadow_of(&[json!({"state":{"desired":{"a":{"b":{"c":1}}},"reported":{"k":1}}})]);
    let pruned = apply(
        Some(&shadow),
        json!({"state":{"desired":{"a":{"b":{"c":null}}}}}),
        T0 + 1,
    );
    assert_eq!(
        pruned.shadow.desired, None,
        "a section with no keys is absent"
    );
    assert_eq!(pruned.shadow.metadata_desired, None);
    assert_eq!(
        pruned.documents["current"],
        json!({"state": {"reported": {"k": 1}}, "metadata": {"reported": {"k": ts(T0)}}, "version": 2})
    );
    // Siblings stay; only the emptied branch goes.
    let shadow = shadow_of(&[json!({"state":{"desired":{"a":{"b":{"c":1},"d":2}}}})]);
    let pruned = apply(
        Some(&shadow),
        json!({"state":{"desired":{"a":{"b":{"c":null}}}}}),
        T0 + 1,
    );
    assert_eq!(
        Value::Object(pruned.shadow.desired.clone().unwrap()),
        json!({"a":{"d":2}})
    );
    assert_eq!(
        Value::Object(pruned.shadow.metadata_desired.clone().unwrap()),
        json!({"a":{"d":ts(T0)}})
    );
    // Sending empty objects stores nothing; an empty object over a scalar removes it.
    let nothing = apply(
        None,
        json!({"state":{"desired":{},"reported":{"a":{"b":{}}}}}),
        T0,
    );
    assert_eq!(nothing.shadow.desired, None);
    assert_eq!(nothing.shadow.reported, None);
    assert_eq!(nothing.shadow.version, 1);
    assert_eq!(
        nothing.accepted["metadata"],
        json!({"desired": {}, "reported": {"a": {"b": {}}}})
    );
    let scalar = shadow_of(&[json!({"state":{"reported":{"a":1,"b":2}}})]);
    let replaced = apply(
        Some(&scalar),
        json!({"state":{"reported":{"a":{}}}}),
        T0 + 1,
    )
    .shadow;
    assert_eq!(
        Value::Object(replaced.reported.clone().unwrap()),
        json!({"b":2})
    );
    assert!(replaced.is_consistent());
    // Empty objects inside arrays are values and stay.
    let kept = apply(None, json!({"state":{"reported":{"l":[{}]}}}), T0).shadow;
    assert_eq!(Value::Object(kept.reported.unwrap()), json!({"l":[{}]}));
}

#[test]
fn delta_keeps_the_path_and_compares_arrays_whole() {
    let shadow = shadow_of(&[json!({"state":{
        "desired":{"lights":{"color":{"r":255,"g":255},"on":true},"l":[1,2],"x":1,"o":{"p":1}},
        "reported":{"lights":{"color":{"r":255,"g":0},"on":true},"l":[1],"x":1.0,"o":"flat","only":2},
    }})]);
    let delta = shadow.delta().unwrap();
    assert_eq!(
        Value::Object(delta),
        json!({"lights":{"color":{"g":255}},"l":[1,2],"o":{"p":1}})
    );
    let got = get_ok(&shadow, T0 + 1);
    assert_eq!(
        got["state"]["delta"],
        json!({"lights":{"color":{"g":255}},"l":[1,2],"o":{"p":1}})
    );
    assert!(got["metadata"].get("delta").is_none());
}

#[test]
fn the_delta_message_holds_every_difference_and_its_metadata() {
    let shadow = shadow_of(&[
        json!({"state":{"desired":{"a":1,"b":{"c":2,"d":3}},"reported":{"b":{"c":2}}}}),
    ]);
    let answers = apply(
        Some(&shadow),
        json!({"state":{"desired":{"e":[5,6]}},"clientToken":"dl"}),
        T0 + 7,
    );
    assert_eq!(
        answers.delta,
        Some(json!({
            "version": 2,
            "timestamp": T0 + 7,
            "state": {"a": 1, "b": {"d": 3}, "e": [5, 6]},
            "metadata": {"a": ts(T0), "b": {"d": ts(T0)}, "e": [ts(T0 + 7), ts(T0 + 7)]},
            "clientToken": "dl",
        }))
    );
    // A desired update that leaves no difference publishes no delta.
    let matched = apply(
        Some(&shadow),
        json!({"state":{"reported":{"a":1,"b":{"d":3}},"desired":{}}}),
        T0 + 8,
    );
    assert_eq!(matched.delta, None);
    assert_eq!(matched.shadow.delta(), None);
    // No desired section, no delta.
    assert_eq!(Shadow::default().delta(), None);
}

#[test]
fn get_answers_the_whole_document() {
    let shadow = shadow_of(&[json!({"state":{"desired":{"a":1},"reported":{"a":0,"r":[true]}}})]);
    let answer = get(
        Some(&shadow),
        "thing",
        br#"{"clientToken":"gt","version":99}"#,
        T0 + 5,
        &limits(),
    )
    .unwrap();
    assert_eq!(
        answer,
        json!({
            "state": {"desired": {"a": 1}, "reported": {"a": 0, "r": [true]}, "delta": {"a": 1}},
            "metadata": {"desired": {"a": ts(T0)}, "reported": {"a": ts(T0), "r": [ts(T0)]}},
            "version": 1,
            "timestamp": T0 + 5,
            "clientToken": "gt",
        })
    );
    assert_eq!(
        shadow.document(),
        json!({
            "state": {"desired": {"a": 1}, "reported": {"a": 0, "r": [true]}},
            "metadata": {"desired": {"a": ts(T0)}, "reported": {"a": ts(T0), "r": [ts(T0)]}},
            "version": 1,
        })
    );
}

#[test]
fn get_and_delete_payload_rules() {
    let shadow = shadow_of(&[json!({"state":{"reported":{"a":1}}})]);
    // The payload, and the clientToken the answer echoes or the rejection's code and text.
    type Expected = Result<Option<&'static str>, (u16, &'static str)>;
    let cases: Vec<(&[u8], Expected)> = vec![
        (b"".as_slice(), Ok(None)),
        (b" \r\n".as_slice(), Ok(None)),
        (b"{}".as_slice(), Ok(None)),
        (
            br#"{"clientToken":"k","version":"ignored"}"#.as_slice(),
            Ok(Some("k")),
        ),
        (b"[]".as_slice(), Err((400, "Invalid JSON"))),
        (b"x".as_slice(), Err((400, "Invalid JSON"))),
        (b"\"s\"".as_slice(), Err((400, "Invalid JSON"))),
        (
            br#"{"clientToken":false}"#.as_slice(),
            Err((400, "Invalid clientToken")),
        ),
        (
            b"\xc3".as_slice(),
            Err((
                415,
                "Unsupported documented encoding; supported encoding is UTF-8",
            )),
        ),
    ];
    for (payload, expected) in cases {
        let shown = String::from_utf8_lossy(payload);
        let got = get(Some(&shadow), "s", payload, T0 + 1, &limits());
        let deleted = delete(Some(&shadow), "s", payload, T0 + 1, &limits());
        match expected {
            Ok(token) => {
                let got = got.unwrap();
                assert_eq!(got["clientToken"].as_str(), token, "{shown}");
                let (_, answer) = deleted.unwrap();
                let mut want = json!({"version": 1, "timestamp": T0 + 1});
                if let Some(token) = token {
                    want["clientToken"] = json!(token);
                }
                assert_eq!(answer, want, "{shown}");
            }
            Err((code, message)) => {
                for r in [got.unwrap_err(), deleted.unwrap_err()] {
                    assert_eq!((r.code, r.message.as_str()), (code, message), "{shown}");
                    assert_eq!(r.timestamp, Some(T0 + 1));
                }
            }
        }
    }
}

#[test]
fn client_token_reads_only_valid_tokens() {
    let l = limits();
    assert_eq!(
        client_token(br#"{"clientToken":"abc"}"#, &l),
        Some("abc".into())
    );
    assert_eq!(
        client_token(br#"{"state":1,"clientToken":"a"}"#, &l),
        Some("a".into())
    );
    assert_eq!(client_token(br#"{"clientToken":1}"#, &l), None);
    assert_eq!(client_token(br#"["clientToken"]"#, &l), None);
    assert_eq!(client_token(b"", &l), None);
    assert_eq!(client_token(b"\xff", &l), None);
    let long = format!(r#"{{"clientToken":"{}"}}"#, "a".repeat(65));
    assert_eq!(client_token(long.as_bytes(), &l), None);
    assert_eq!(
        client_token(long.as_bytes(), &Limits::new(8192, 6, 65))
            .unwrap()
            .len(),
        65
    );
}

#[test]
fn exception_names() {
    let name = |code| Rejection::new(code, "m").exception_name();
    assert_eq!(
        [400, 401, 403, 404, 405, 409, 413, 415, 429, 503, 500, 418].map(name),
        [
            "InvalidRequestException",
            "UnauthorizedException",
            "ForbiddenException",
            "ResourceNotFoundException",
            "MethodNotAllowedException",
            "ConflictException",
            "RequestEntityTooLargeException",
            "UnsupportedDocumentEncodingException",
            "ThrottlingException",
            "ServiceUnavailableException",
            "InternalFailureException",
            "InternalFailureException",
        ]
    );
    assert_eq!(
        Rejection::too_many_requests().exception_name(),
        "ThrottlingException"
    );
}

#[test]
fn a_shadow_survives_serde() {
    let shadow = shadow_of(&[json!({"state":{"desired":{"a":[1,{"b":2}]},"reported":{"c":"d"}}})]);
    let text = serde_json::to_string(&shadow).unwrap();
    assert_eq!(serde_json::from_str::<Shadow>(&text).unwrap(), shadow);
}

#[test]
fn inconsistent_shadows_are_recognised() {
    let good = shadow_of(&[json!({"state":{"desired":{"a":{"b":[1,2]}}}})]);
    assert!(good.is_consistent());
    let mut missing_meta = good.clone();
    missing_meta.metadata_desired = None;
    assert!(!missing_meta.is_consistent());
    let mut short_array = good.clone();
    short_array.metadata_desired = Some(json!({"a":{"b":[ts(1)]}}).as_object().unwrap().clone());
    assert!(!short_array.is_consistent());
    let mut empty_object = good.clone();
    empty_object.desired = Some(json!({"a":{}}).as_object().unwrap().clone());
    empty_object.metadata_desired = Some(json!({"a":{}}).as_object().unwrap().clone());
    assert!(!empty_object.is_consistent());
    let mut tombstone_with_state = good.clone();
    tombstone_with_state.deleted_at = Some(5);
    assert!(!tombstone_with_state.is_consistent());
}

#[test]
fn an_existing_shadow_without_metadata_still_merges() {
    // A shadow from storage whose metadata was lost: the update rebuilds what it writes.
    let mut shadow = shadow_of(&[json!({"state":{"desired":{"a":{"b":1}}}})]);
    shadow.metadata_desired = Some(Map::new());
    let answers = apply(
        Some(&shadow),
        json!({"state":{"desired":{"a":{"c":2}}}}),
        T0 + 1,
    );
    assert_eq!(
        Value::Object(answers.shadow.metadata_desired.unwrap()),
        json!({"a":{"c":ts(T0 + 1)}})
    );
}

mod properties {
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    use super::super::*;

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::from),
            (-50i64..50).prop_map(Value::from),
            (-20i32..20).prop_map(|n| json!(f64::from(n) / 4.0)),
            "[a-c]{0,3}".prop_map(Value::from),
        ]
    }

    /// Keys from a small alphabet so that updates collide with what is stored.
    fn key() -> impl Strategy<Value = String> {
        "[a-d]"
    }

    /// A value without nulls (what arrays may hold), at most one level deep so that a
    /// patch stays within the default depth of 6.
    fn solid() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(1, 6, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A valid section patch: objects whose values may be `null` (deletions).
    fn patch() -> impl Strategy<Value = Map<String, Value>> {
        let value = prop_oneof![
            3 => leaf(),
            1 => Just(Value::Null),
            1 => prop::collection::vec(solid(), 0..3).prop_map(Value::Array),
        ]
        .prop_recursive(3, 24, 4, |inner| {
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        });
        prop::collection::btree_map(key(), value, 0..4).prop_map(|m| m.into_iter().collect())
    }

    /// A section of a `state` node: left out, `null` or a patch.
    fn section() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            1 => Just(None),
            1 => Just(Some(Value::Null)),
            4 => patch().prop_map(|p| Some(Value::Object(p))),
        ]
    }

    /// A `state` node: two sections, or `null` itself.
    fn state() -> impl Strategy<Value = Value> {
        prop_oneof![
            1 => Just(Value::Null),
            8 => (section(), section()).prop_map(|(d, r)| {
                let mut state = Map::new();
                if let Some(d) = d {
                    state.insert("desired".into(), d);
                }
                if let Some(r) = r {
                    state.insert("reported".into(), r);
                }
                Value::Object(state)
            }),
        ]
    }

    /// Any JSON at all, nulls in arrays and deep nesting included.
    fn any_json() -> impl Strategy<Value = Value> {
        prop_oneof![Just(Value::Null), leaf(), "\\PC{0,4}".prop_map(Value::from)].prop_recursive(
            8,
            64,
            4,
            |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("state".to_string()),
                            Just("desired".to_string()),
                            Just("reported".to_string()),
                            Just("version".to_string()),
                            Just("clientToken".to_string()),
                            key(),
                        ],
                        inner,
                        0..4
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            },
        )
    }

    fn run(current: Option<&Shadow>, request: &Value, now: u64) -> Answers {
        update(
            current,
            request.to_string().as_bytes(),
            now,
            &Limits::default(),
        )
        .unwrap_or_else(|r| panic!("{request} refused: {r}"))
    }

    /// The shadow a sequence of states builds, one second apart.
    fn build(states: &[Value]) -> Option<Shadow> {
        let mut shadow = None;
        for (i, state) in states.iter().enumerate() {
            shadow = Some(
                run(
                    shadow.as_ref(),
                    &json!({ "state": state }),
                    1_000 + i as u64,
                )
                .shadow,
            );
        }
        shadow
    }

    proptest! {
        #[test]
        fn a_desired_update_is_idempotent(
            history in prop::collection::vec(state(), 0..4),
            desired in patch(),
        ) {
            let base = build(&history);
            let request = json!({"state": {"desired": desired}});
            let once = run(base.as_ref(), &request, 2_000).shadow;
            let twice = run(Some(&once), &request, 2_001).shadow;
            prop_assert_eq!(&twice.desired, &once.desired);
            prop_assert_eq!(&twice.reported, &once.reported);
            prop_assert_eq!(twice.version, once.version + 1);
        }

        #[test]
        fn reporting_the_desired_state_leaves_no_delta(
            history in prop::collection::vec(state(), 1..4),
        ) {
            let base = build(&history).unwrap();
            let desired = Value::Object(base.desired.clone().unwrap_or_default());
            let matched = run(Some(&base), &json!({"state": {"reported": desired}}), 2_000);
            prop_assert_eq!(matched.shadow.delta(), None);
            prop_assert_eq!(matched.delta, None);
            let got = get(Some(&matched.shadow), "t", b"", 2_001, &Limits::default()).unwrap();
            prop_assert!(got["state"].get("delta").is_none());
        }

        #[test]
        fn one_request_setting_both_sections_alike_leaves_no_delta(
            section in prop::collection::btree_map(key(), solid(), 0..4),
        ) {
            let section = Value::Object(section.into_iter().collect());
            let answers = run(None, &json!({"state": {"desired": section, "reported": section}}), 5);
            prop_assert_eq!(answers.shadow.delta(), None);
        }

        #[test]
        fn metadata_mirrors_state(history in prop::collection::vec(state(), 1..6)) {
            let mut shadow = None;
            for (i, state) in history.iter().enumerate() {
                let answers = run(shadow.as_ref(), &json!({ "state": state }), i as u64);
                prop_assert!(answers.shadow.is_consistent(), "{:?}", answers.shadow);
                prop_assert!(sent_mirrors(state, &answers.accepted["metadata"]));
                if let Some(delta) = &answers.delta {
                    let (Value::Object(d), Value::Object(m)) = (&delta["state"], &delta["metadata"]) else {
                        panic!("delta state and metadata are objects: {delta}");
                    };
                    prop_assert!(object_mirrors(d, m), "{}", delta);
                }
                shadow = Some(answers.shadow);
            }
        }

        #[test]
        fn update_never_panics_on_json(
            history in prop::collection::vec(state(), 0..3),
            request in any_json(),
            wrapped in 0..3u8,
        ) {
            let base = build(&history);
            let request = match wrapped {
                0 => request,
                1 => json!({"state": request}),
                _ => json!({"state": {"desired": request, "reported": request}}),
            };
            let payload = request.to_string();
            check_any(base.as_ref(), payload.as_bytes());
        }

        #[test]
        fn update_never_panics_on_bytes(
            history in prop::collection::vec(state(), 0..3),
            payload in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            check_any(build(&history).as_ref(), &payload);
        }
    }

    /// Whatever the payload: no panic, a known code, or a consistent next shadow.
    fn check_any(base: Option<&Shadow>, payload: &[u8]) {
        let limits = Limits::default();
        match update(base, payload, 9_000, &limits) {
            Ok(answers) => {
                assert!(answers.shadow.is_consistent());
                assert_eq!(answers.shadow.version, base.map_or(0, |s| s.version) + 1);
                assert_eq!(answers.documents["current"], answers.shadow.document());
            }
            Err(r) => {
                assert!([400, 409, 413, 415].contains(&r.code), "{r}");
                assert_eq!(r.timestamp, Some(9_000));
            }
        }
        let _ = get(base, "t", payload, 9_000, &limits);
        let _ = delete(base, "t", payload, 9_000, &limits);
        let _ = client_token(payload, &limits);
    }

    /// Whether `metadata` is the as-sent metadata of `sent`: objects key by key, an
    /// array one timestamp per element, every other value (and `null`) one timestamp.
    fn sent_mirrors(sent: &Value, metadata: &Value) -> bool {
        match (sent, metadata) {
            (Value::Object(s), Value::Object(m)) => {
                s.len() == m.len()
                    && s.iter()
                        .all(|(k, v)| m.get(k).is_some_and(|mv| sent_mirrors(v, mv)))
            }
            (Value::Object(_), _) => false,
            (Value::Array(items), Value::Array(stamps)) => {
                items.len() == stamps.len() && stamps.iter().all(is_timestamp)
            }
            (Value::Array(_), _) => false,
            (_, m) => is_timestamp(m),
        }
    }
}
