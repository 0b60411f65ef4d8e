//! Custom authentication: username and upgrade parsing (AWS CRT vectors), token signatures,
//! the authorizer event and the validation of the authorizer's answer.

use base64::Engine as _;
use iot::custom_auth::{
    from_http, parse_authorizer_response, parse_username, verify_token_signature, AuthorizerEvent,
    AuthorizerFields, AuthorizerResponse, AuthorizerResponseError, TokenSignatureError,
};
use proptest::prelude::*;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/aws-iot-wire.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("vectors file")).unwrap()
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).expect("fixture")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// base64(RSA PKCS#1 v1.5 SHA-256(token)) with a fixture private key.
fn sign(key_file: &str, token: &str) -> String {
    let key = RsaPrivateKey::from_pkcs8_pem(&fixture(key_file)).unwrap();
    let sig = key
        .sign(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(token.as_bytes()),
        )
        .unwrap();
    b64(&sig)
}

// ---- usernames -------------------------------------------------------------------------

#[test]
fn crt_usernames_parse_to_their_expectation() {
    let v = vectors();
    let cases = v["mqtt_connect_username"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let fields = parse_username(case["username"].as_str().unwrap());
        let expect = &case["expect"];
        assert_eq!(fields.user.as_deref(), expect["user"].as_str(), "{name}");
        assert_eq!(
            fields.authorizer_name.as_deref(),
            expect["authorizer_name"].as_str(),
            "{name}"
        );
        if let Some(sig) = expect.get("signature") {
            assert_eq!(fields.signature.as_deref(), sig.as_str(), "{name}");
        } else {
            assert_eq!(fields.signature, None, "{name}");
        }
        if let Some(key) = expect.get("token_key_name") {
            assert_eq!(
                fields.token(key.as_str().unwrap()),
                expect["token"].as_str(),
                "{name}"
            );
        }
        // The SDK metrics are plain params.
        assert_eq!(fields.token("SDK"), Some("IoTDeviceSDK/Python"));
        assert_eq!(fields.token("Platform"), Some("Unix"));
        assert_eq!(
            fields.token("Metadata"),
            Some("(CRTVersion=0.36.1;IoTSDKVersion=1.31.0;IoTSDKFeature=F/3,G/A;IoTSDKMetricsVersion=1)")
        );
    }
}

#[test]
fn crt_direct_username_in_full() {
    let v = vectors();
    let fields = parse_username(v["mqtt_connect_username"][0]["username"].as_str().unwrap());
    assert_eq!(
        fields,
        AuthorizerFields {
            user: Some("devuser".into()),
            authorizer_name: Some("MyAuthorizer".into()),
            signature: Some("sig/abc+==".into()),
            params: vec![
                ("mytoken".into(), "tokval".into()),
                ("SDK".into(), "IoTDeviceSDK/Python".into()),
                ("Platform".into(), "Unix".into()),
                (
                    "Metadata".into(),
                    "(CRTVersion=0.36.1;IoTSDKVersion=1.31.0;IoTSDKFeature=F/3,G/A;IoTSDKMetricsVersion=1)"
                        .into()
                ),
            ],
        }
    );
    assert!(!fields.is_empty());
}

#[test]
fn plus_in_a_signature_is_kept_and_percent_2b_decoded() {
    let f = parse_username("u?x-amz-customauthorizer-signature=ab+c/d+==&t=x+y");
    assert_eq!(f.signature.as_deref(), Some("ab+c/d+=="));
    assert_eq!(f.token("t"), Some("x+y"));
    let f = parse_username("u?x-amz-customauthorizer-signature=ab%2Bc%2Fd%2B%3D%3D");
    assert_eq!(f.signature.as_deref(), Some("ab+c/d+=="));
    let f = parse_username("u?x-amz-customauthorizer-signature=ab%2bc");
    assert_eq!(f.signature.as_deref(), Some("ab+c"));
}

#[test]
fn metrics_appended_do_not_break_parsing() {
    // Older SDKs: `?SDK=…&Version=…` after the authorizer fields.
    let f = parse_username("dev?x-amz-customauthorizer-name=Auth&tok=T%26V&SDK=Java&Version=1.3.9");
    assert_eq!(f.user.as_deref(), Some("dev"));
    assert_eq!(f.authorizer_name.as_deref(), Some("Auth"));
    assert_eq!(f.token("tok"), Some("T&V"));
    assert_eq!(f.token("SDK"), Some("Java"));
    assert_eq!(f.token("Version"), Some("1.3.9"));
    // Metrics only: nothing for an authorizer.
    let f = parse_username("?SDK=IoTDeviceSDK/Python&Platform=Unix");
    assert_eq!(f.user.as_deref(), Some(""));
    assert_eq!(f.authorizer_name, None);
    assert_eq!(f.signature, None);
}

#[test]
fn usernames_without_query() {
    let f = parse_username("plain-user");
    assert_eq!(f.user.as_deref(), Some("plain-user"));
    assert!(f.is_empty());
    let f = parse_username("");
    assert_eq!(f.user.as_deref(), Some(""));
    assert!(f.is_empty());
    let f = parse_username("user?");
    assert_eq!(f.user.as_deref(), Some("user"));
    assert!(f.is_empty());
}

#[test]
fn malformed_escapes_are_kept_literally() {
    let f = parse_username("u?a=%zz&b=%&c=%4&d=%FF%41&e&=v&&f=1=2");
    assert_eq!(f.token("a"), Some("%zz"));
    assert_eq!(f.token("b"), Some("%"));
    assert_eq!(f.token("c"), Some("%4"));
    // Not UTF-8 once decoded: the undecodable byte stays escaped.
    assert_eq!(f.token("d"), Some("%FFA"));
    assert_eq!(f.token("e"), Some(""));
    assert_eq!(f.token(""), Some("v"));
    assert_eq!(f.token("f"), Some("1=2"));
}

#[test]
fn authorizer_keys_ignore_case_and_the_first_wins() {
    let f = parse_username(
        "u?X-Amz-CustomAuthorizer-Name=First&x-amz-customauthorizer-name=Second&X-AMZ-CUSTOMAUTHORIZER-SIGNATURE=s",
    );
    assert_eq!(f.authorizer_name.as_deref(), Some("First"));
    assert_eq!(f.signature.as_deref(), Some("s"));
    assert!(f.params.is_empty());
}

#[test]
fn token_lookup_prefers_the_exact_name() {
    let f = parse_username("u?Token=upper&token=lower");
    assert_eq!(f.token("token"), Some("lower"));
    assert_eq!(f.token("Token"), Some("upper"));
    assert_eq!(f.token("TOKEN"), Some("upper"));
    assert_eq!(f.token("other"), None);
}

// ---- WebSocket upgrade -----------------------------------------------------------------

const UPGRADE: [(&str, &str); 6] = [
    ("Host", "localhost"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "imofvJahw6B9YoUfWTrVXQ=="),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Protocol", "mqtt"),
];

#[test]
fn bare_crt_upgrade_carries_nothing() {
    // crt_websocket_custom_authorizer: the fields come in CONNECT instead.
    assert!(vectors()["crt_websocket_custom_authorizer"]["notes"]
        .as_str()
        .unwrap()
        .contains("no auth headers or query"));
    let f = from_http(&UPGRADE, "");
    assert!(f.is_empty(), "{f:?}");
    assert_eq!(f.user, None);
    let mut more = UPGRADE.to_vec();
    more.extend([
        ("User-Agent", "x"),
        ("Origin", "https://a"),
        ("sec-websocket-extensions", "x"),
    ]);
    assert!(from_http(&more, "").is_empty());
}

#[test]
fn fields_from_headers() {
    let mut headers = UPGRADE.to_vec();
    headers.extend([
        ("X-Amz-CustomAuthorizer-Name", "MyAuthorizer"),
        ("X-Amz-CustomAuthorizer-Signature", " sig+/abc== "),
        ("MyToken", "tok%20val"),
    ]);
    let f = from_http(&headers, "");
    assert_eq!(f.authorizer_name.as_deref(), Some("MyAuthorizer"));
    assert_eq!(f.signature.as_deref(), Some("sig+/abc=="));
    // Header names are lowercased, values are not decoded.
    assert_eq!(
        f.params,
        vec![("mytoken".to_owned(), "tok%20val".to_owned())]
    );
    assert_eq!(f.token("MyToken"), Some("tok%20val"));
    assert_eq!(f.user, None);
}

#[test]
fn fields_from_the_query() {
    let q = "x-amz-customauthorizer-name=MyAuthorizer&x-amz-customauthorizer-signature=sig%2Fabc%2B%3D%3D&MyToken=tok%20val";
    for query in [q.to_owned(), format!("?{q}")] {
        let f = from_http(&UPGRADE, &query);
        assert_eq!(f.authorizer_name.as_deref(), Some("MyAuthorizer"));
        assert_eq!(f.signature.as_deref(), Some("sig/abc+=="));
        assert_eq!(f.token("MyToken"), Some("tok val"));
    }
}

#[test]
fn headers_win_over_the_query() {
    let headers = [
        ("x-amz-customauthorizer-name", "FromHeader"),
        ("x-amz-customauthorizer-signature", "HeaderSig"),
        ("tok", "header-token"),
    ];
    let f = from_http(
        &headers,
        "x-amz-customauthorizer-name=FromQuery&x-amz-customauthorizer-signature=QuerySig&tok=query-token&other=1",
    );
    assert_eq!(f.authorizer_name.as_deref(), Some("FromHeader"));
    assert_eq!(f.signature.as_deref(), Some("HeaderSig"));
    assert_eq!(f.token("tok"), Some("header-token"));
    assert_eq!(f.token("other"), Some("1"));
    // Only in the query: taken from there.
    let f = from_http(&[("tok", "h")], "x-amz-customauthorizer-name=Q");
    assert_eq!(f.authorizer_name.as_deref(), Some("Q"));
}

// ---- token signatures ------------------------------------------------------------------

#[test]
fn token_signature_vector() {
    let v = vectors();
    let t = &v["custom_auth_token_signature"];
    let pem = t["public_key_pem"].as_str().unwrap();
    let token = t["token"].as_str().unwrap();
    let sig = t["signature_base64"].as_str().unwrap();
    verify_token_signature(token, sig, &[pem]).unwrap();
    // Still percent-encoded, as in a username (the CRT escapes '+' and '=').
    let escaped = sig
        .replace('+', "%2B")
        .replace('=', "%3D")
        .replace('/', "%2F");
    verify_token_signature(token, &escaped, &[pem]).unwrap();
    // '+' turned into ' ' by a form decoder; padding dropped.
    verify_token_signature(token, &sig.replace('+', " "), &[pem]).unwrap();
    verify_token_signature(token, sig.trim_end_matches('='), &[pem]).unwrap();

    // Another token.
    assert_eq!(
        verify_token_signature("allow-this-token!", sig, &[pem]),
        Err(TokenSignatureError::Mismatch)
    );
    // One flipped byte, wherever it is.
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .unwrap();
    for i in [0, raw.len() / 2, raw.len() - 1] {
        let mut flipped = raw.clone();
        flipped[i] ^= 0x01;
        assert_eq!(
            verify_token_signature(token, &b64(&flipped), &[pem]),
            Err(TokenSignatureError::Mismatch)
        );
    }
    // Truncated.
    assert_eq!(
        verify_token_signature(token, &b64(&raw[..raw.len() - 1]), &[pem]),
        Err(TokenSignatureError::Mismatch)
    );
}

#[test]
fn any_of_the_keys_may_match() {
    let v = vectors();
    let vector_pem = v["custom_auth_token_signature"]["public_key_pem"]
        .as_str()
        .unwrap();
    let spki = fixture("token-signing-2048.pub.pem");
    let pkcs1 = fixture("token-signing-2048.pkcs1.pub.pem");
    let sig = sign("token-signing-2048.key.pem", "my token é");
    verify_token_signature("my token é", &sig, &[&spki]).unwrap();
    verify_token_signature("my token é", &sig, &[&pkcs1]).unwrap();
    verify_token_signature("my token é", &sig, &[vector_pem, &pkcs1]).unwrap();
    verify_token_signature("my token é", &sig, &["garbage", vector_pem, &spki]).unwrap();
    assert_eq!(
        verify_token_signature("my token é", &sig, &[vector_pem]),
        Err(TokenSignatureError::Mismatch)
    );
    assert_eq!(
        verify_token_signature("my token", &sig, &[&spki]),
        Err(TokenSignatureError::Mismatch)
    );
}

#[test]
fn keys_under_2048_bits_are_rejected() {
    let weak = fixture("weak-1024.pub.pem");
    let sig = sign("weak-1024.key.pem", "tok");
    let err = verify_token_signature("tok", &sig, &[&weak]).unwrap_err();
    assert_eq!(
        err,
        TokenSignatureError::KeyTooSmall {
            index: 0,
            bits: 1024
        }
    );
    assert!(err.to_string().contains("1024"));
    // A weak key beside a good one is skipped; the good one decides.
    let spki = fixture("token-signing-2048.pub.pem");
    assert_eq!(
        verify_token_signature("tok", &sig, &[&weak, &spki]),
        Err(TokenSignatureError::Mismatch)
    );
    let good = sign("token-signing-2048.key.pem", "tok");
    verify_token_signature("tok", &good, &[&weak, &spki]).unwrap();
}

#[test]
fn unusable_keys_and_signatures() {
    let spki = fixture("token-signing-2048.pub.pem");
    let sig = sign("token-signing-2048.key.pem", "tok");
    assert_eq!(
        verify_token_signature("tok", &sig, &[]),
        Err(TokenSignatureError::NoKeys)
    );
    assert!(matches!(
        verify_token_signature("tok", &sig, &["not a key"]),
        Err(TokenSignatureError::InvalidKey { index: 0, .. })
    ));
    let broken = spki.replace("MIIB", "MIIC");
    assert!(matches!(
        verify_token_signature("tok", &sig, &[&broken]),
        Err(TokenSignatureError::InvalidKey { index: 0, .. })
    ));
    // A private key is not a public key.
    assert!(matches!(
        verify_token_signature("tok", &sig, &[&fixture("token-signing-2048.key.pem")]),
        Err(TokenSignatureError::InvalidKey { .. })
    ));
    for bad in ["***", "a", "%FF%FE", "ab_c-"] {
        assert!(
            matches!(
                verify_token_signature("tok", bad, &[&spki]),
                Err(TokenSignatureError::NotBase64(_))
            ),
            "{bad}"
        );
    }
    assert_eq!(
        verify_token_signature("tok", "", &[&spki]),
        Err(TokenSignatureError::Mismatch)
    );
}

// ---- authorizer event ------------------------------------------------------------------

#[test]
fn event_for_a_websocket_upgrade() {
    let headers = [
        ("host", "localhost"),
        ("mytoken", "tok"),
        ("x-dup", "a"),
        ("x-dup", "b"),
    ];
    let event = AuthorizerEvent {
        token: "tok",
        signature_verified: true,
        protocols: &["tls", "http"],
        server_name: Some("localhost"),
        http_headers: Some(&headers),
        http_query: Some("a=b"),
        mqtt_username: None,
        mqtt_password: None,
        mqtt_client_id: None,
        connection_id: "c0ffee",
    };
    assert_eq!(
        event.to_json(),
        json!({
            "token": "tok",
            "signatureVerified": true,
            "protocols": ["tls", "http"],
            "protocolData": {
                "tls": {"serverName": "localhost"},
                "http": {
                    "headers": {"host": "localhost", "mytoken": "tok", "x-dup": "a,b"},
                    "queryString": "?a=b"
                }
            },
            "connectionMetadata": {"id": "c0ffee"}
        })
    );
}

#[test]
fn event_for_mqtt_connect() {
    let event = AuthorizerEvent {
        token: "tokval",
        signature_verified: false,
        protocols: &["tls", "mqtt"],
        server_name: Some("example.iot"),
        http_headers: None,
        http_query: None,
        mqtt_username: Some("devuser?x-amz-customauthorizer-name=A&mytoken=tokval"),
        mqtt_password: Some(b"secret-pw"),
        mqtt_client_id: Some("crt-ca-direct"),
        connection_id: "id-1",
    };
    assert_eq!(
        event.to_json(),
        json!({
            "token": "tokval",
            "signatureVerified": false,
            "protocols": ["tls", "mqtt"],
            "protocolData": {
                "tls": {"serverName": "example.iot"},
                "mqtt": {
                    "username": "devuser?x-amz-customauthorizer-name=A&mytoken=tokval",
                    "password": "c2VjcmV0LXB3",
                    "clientId": "crt-ca-direct"
                }
            },
            "connectionMetadata": {"id": "id-1"}
        })
    );
    // Only what is there.
    let minimal = AuthorizerEvent {
        server_name: None,
        mqtt_username: None,
        mqtt_password: None,
        protocols: &["mqtt"],
        ..event
    };
    assert_eq!(
        minimal.to_json()["protocolData"],
        json!({"mqtt": {"clientId": "crt-ca-direct"}})
    );
}

// ---- authorizer response ---------------------------------------------------------------

/// IoT Core's lower bound for the answer's TTLs.
const MIN_TTL: u64 = 300;

fn response(v: Value) -> Result<AuthorizerResponse, AuthorizerResponseError> {
    parse_authorizer_response(v.to_string().as_bytes(), MIN_TTL)
}

fn good() -> Value {
    json!({
        "isAuthenticated": true,
        "principalId": "Device42",
        "disconnectAfterInSeconds": 3600,
        "refreshAfterInSeconds": 300,
        "policyDocuments": [
            "{\"Version\":\"2012-10-17\",\"Statement\":[]}",
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}
        ]
    })
}

#[test]
fn a_good_answer() {
    let r = response(good()).unwrap();
    assert!(r.is_authenticated);
    assert_eq!(r.principal_id, "Device42");
    assert_eq!(r.disconnect_after_secs, 3600);
    assert_eq!(r.refresh_after_secs, 300);
    assert_eq!(r.policy_documents.len(), 2);
    assert_eq!(
        r.policy_documents[0],
        "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    );
    // Objects are serialized.
    let doc: Value = serde_json::from_str(&r.policy_documents[1]).unwrap();
    assert_eq!(doc["Statement"][0]["Action"], "iot:Connect");
}

#[test]
fn a_refusal_needs_nothing_else() {
    let r = response(json!({"isAuthenticated": false})).unwrap();
    assert!(!r.is_authenticated);
    assert!(r.policy_documents.is_empty());
    let r = response(json!({"isAuthenticated": false, "principalId": "x y", "policyDocuments": 3}))
        .unwrap();
    assert!(!r.is_authenticated);
}

#[test]
fn is_authenticated_is_a_required_boolean() {
    use AuthorizerResponseError as E;
    assert_eq!(response(json!({})), Err(E::Missing("isAuthenticated")));
    assert!(matches!(
        response(json!({"isAuthenticated": "true"})),
        Err(E::WrongType {
            field: "isAuthenticated",
            ..
        })
    ));
    assert!(matches!(
        parse_authorizer_response(b"not json", MIN_TTL),
        Err(E::NotJson(_))
    ));
    assert!(matches!(
        parse_authorizer_response(b"[true]", MIN_TTL),
        Err(E::NotJson(_))
    ));
    assert!(matches!(
        parse_authorizer_response(b"", MIN_TTL),
        Err(E::NotJson(_))
    ));
}

#[test]
fn principal_id_rules() {
    use AuthorizerResponseError as E;
    let with = |p: Value| {
        let mut v = good();
        v["principalId"] = p;
        response(v)
    };
    with(json!("a")).unwrap();
    with(json!("A".repeat(128))).unwrap();
    for bad in ["", "has space", "dash-ed", "under_score", "ünïcode"] {
        assert_eq!(
            with(json!(bad)),
            Err(E::InvalidPrincipalId(bad.into())),
            "{bad}"
        );
    }
    assert_eq!(
        with(json!("A".repeat(129))),
        Err(E::InvalidPrincipalId("A".repeat(129)))
    );
    assert!(matches!(
        with(json!(42)),
        Err(E::WrongType {
            field: "principalId",
            ..
        })
    ));
    let mut v = good();
    v.as_object_mut().unwrap().remove("principalId");
    assert_eq!(response(v), Err(E::Missing("principalId")));
}

#[test]
fn policy_document_rules() {
    use AuthorizerResponseError as E;
    let with = |docs: Value| {
        let mut v = good();
        v["policyDocuments"] = docs;
        response(v)
    };
    let doc = "{}";
    with(json!([])).unwrap();
    with(json!(vec![doc; 10])).unwrap();
    assert_eq!(with(json!(vec![doc; 11])), Err(E::TooManyPolicies(11)));
    with(json!(["x".repeat(2048)])).unwrap();
    // Characters, not bytes.
    with(json!(["é".repeat(2048)])).unwrap();
    assert_eq!(
        with(json!([doc, "x".repeat(2049)])),
        Err(E::PolicyTooLong {
            index: 1,
            chars: 2049
        })
    );
    // A serialized object counts too.
    let big = json!({"k": "x".repeat(2048)});
    assert!(matches!(
        with(json!([big])),
        Err(E::PolicyTooLong { index: 0, .. })
    ));
    assert!(matches!(
        with(json!([1])),
        Err(E::WrongType {
            field: "policyDocuments",
            ..
        })
    ));
    assert!(matches!(
        with(json!("{}")),
        Err(E::WrongType {
            field: "policyDocuments",
            ..
        })
    ));
    let mut v = good();
    v.as_object_mut().unwrap().remove("policyDocuments");
    assert_eq!(response(v), Err(E::Missing("policyDocuments")));
}

#[test]
fn ttl_rules() {
    use AuthorizerResponseError as E;
    for field in ["disconnectAfterInSeconds", "refreshAfterInSeconds"] {
        let with = |secs: Value| {
            let mut v = good();
            v[field] = secs;
            response(v)
        };
        with(json!(300)).unwrap();
        with(json!(86_400)).unwrap();
        assert_eq!(
            with(json!(299)),
            Err(E::OutOfRange {
                field,
                value: 299,
                min: MIN_TTL
            })
        );
        assert_eq!(
            with(json!(86_401)),
            Err(E::OutOfRange {
                field,
                value: 86_401,
                min: MIN_TTL
            })
        );
        assert_eq!(
            with(json!(0)),
            Err(E::OutOfRange {
                field,
                value: 0,
                min: MIN_TTL
            })
        );
        for bad in [json!(-1), json!(300.5), json!("300"), json!(null)] {
            assert!(matches!(with(bad), Err(E::WrongType { .. })));
        }
        let mut v = good();
        v.as_object_mut().unwrap().remove(field);
        assert_eq!(response(v), Err(E::Missing(field)));
    }
    let err = response({
        let mut v = good();
        v["refreshAfterInSeconds"] = json!(10);
        v
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "refreshAfterInSeconds is 10, it must be between 300 and 86400"
    );
    // A lower configured bound (`[limits] authorizer_ttl_min`) lets short TTLs through.
    let mut short = good();
    short["disconnectAfterInSeconds"] = json!(2);
    let answer = parse_authorizer_response(short.to_string().as_bytes(), 1).unwrap();
    assert_eq!(answer.disconnect_after_secs, 2);
    short["disconnectAfterInSeconds"] = json!(0);
    let err = parse_authorizer_response(short.to_string().as_bytes(), 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "disconnectAfterInSeconds is 0, it must be between 1 and 86400"
    );
}

// ---- properties ------------------------------------------------------------------------

/// Percent-encodes every byte outside `A-Za-z0-9-_.~`.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn parse_username_never_panics(s in any::<String>()) {
        let f = parse_username(&s);
        prop_assert!(f.user.is_some());
    }

    #[test]
    fn parse_username_never_panics_on_query_like_input(s in "[a-z?&=%0-9A-F+/ -]{0,80}") {
        let _ = parse_username(&s);
        let _ = from_http(&[("x-amz-customauthorizer-signature", &s), (&s, "v")], &s);
    }

    #[test]
    fn encoded_values_round_trip(user in "[^?]{0,20}", name in ".{0,20}", sig in ".{0,40}", key in "[a-zA-Z]{1,10}", token in ".{0,40}") {
        prop_assume!(!key.eq_ignore_ascii_case("x-amz-customauthorizer-name"));
        let username = format!(
            "{user}?x-amz-customauthorizer-name={}&x-amz-customauthorizer-signature={}&{key}={}&SDK=x",
            encode(&name), encode(&sig), encode(&token)
        );
        let f = parse_username(&username);
        prop_assert_eq!(f.user.as_deref(), Some(user.as_str()));
        prop_assert_eq!(f.authorizer_name.as_deref(), Some(name.as_str()));
        prop_assert_eq!(f.signature.as_deref(), Some(sig.as_str()));
        prop_assert_eq!(f.token(&key), Some(token.as_str()));
    }
}
