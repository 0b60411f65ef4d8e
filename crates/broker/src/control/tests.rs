//! The control plane's answers, without HTTP: offline on a temporary data directory, and
//! signed / in process on a broker built from the same directory.

use super::*;

fn config(dir: &std::path::Path) -> Config {
    Config::parse(&format!(
        "data_dir = {:?}\nin_memory = true\n",
        dir.display().to_string()
    ))
    .unwrap()
}

fn request<'a>(method: &'a str, path: &'a str, body: &'a [u8]) -> ApiRequest<'a> {
    ApiRequest {
        method,
        path,
        query: "",
        headers: &[],
        body,
    }
}

const DOCUMENT: &[u8] = br#"{"policyDocument": "{\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", \"Action\": \"iot:Connect\", \"Resource\": \"*\"}]}"}"#;

#[tokio::test]
async fn offline_answers_have_the_api_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let created = answer_local(
        config(dir.path()),
        &request("POST", "/policies/p", DOCUMENT),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let again = answer_local(
        config(dir.path()),
        &request("POST", "/policies/p", DOCUMENT),
    )
    .await;
    assert_eq!(
        (again.status, again.error_kind),
        (409, Some("ResourceAlreadyExistsException"))
    );
    let missing = answer_local(
        config(dir.path()),
        &request("PUT", "/target-policies/nope", br#"{"target": "x"}"#),
    )
    .await;
    assert_eq!(
        (missing.status, missing.error_kind),
        (404, Some("ResourceNotFoundException"))
    );
    let unknown = answer_local(config(dir.path()), &request("GET", "/no/such/thing", b"")).await;
    assert_eq!(unknown.error_kind, Some("UnknownOperationException"));
    let publish = answer_local(config(dir.path()), &request("POST", "/topics/a", b"x")).await;
    assert_eq!(publish.status, 503, "the data plane needs a running broker");
}

#[tokio::test]
async fn over_the_network_a_request_must_be_signed_in_process_it_need_not() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::new(config(dir.path())).unwrap();
    let unsigned = answer(&broker, &request("GET", "/policies", b"")).await;
    assert_eq!(
        (unsigned.status, unsigned.error_kind),
        (403, Some("UnauthorizedException"))
    );
    assert!(unsigned.body.contains("not signed"), "{}", unsigned.body);
    let in_process = answer_in_process(&broker, &request("GET", "/policies", b"")).await;
    assert_eq!(in_process.status, 200, "{}", in_process.body);
    // Cognito's GetId is unsigned in AWS, so over the network too.
    let get_id = answer(
        &broker,
        &ApiRequest {
            headers: &[("x-amz-target", "AWSCognitoIdentityService.GetId")],
            ..request("POST", "/", br#"{"IdentityPoolId": "us-east-1:none"}"#)
        },
    )
    .await;
    assert_eq!(get_id.error_kind, Some("ResourceNotFoundException"));
}

#[tokio::test]
async fn detaching_a_policy_closes_the_principal_connections() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::new(config(dir.path())).unwrap();
    let live = std::sync::Arc::new(crate::session::LiveConnection::new("device-1", None));
    broker.router.live.register(1, live.clone());
    let attach = br#"{"target": "device-1"}"#;
    for (method, path, body) in [
        ("POST", "/policies/p", DOCUMENT),
        ("PUT", "/target-policies/p", &attach[..]),
    ] {
        let answered = answer_in_process(&broker, &request(method, path, body)).await;
        assert_eq!(answered.status, 200, "{}", answered.body);
    }
    assert_eq!(live.reason(), None);
    let detached = answer_in_process(&broker, &request("POST", "/target-policies/p", attach)).await;
    assert_eq!(detached.status, 200, "{}", detached.body);
    assert!(
        live.reason().is_some_and(|why| why.contains("detached")),
        "{:?}",
        live.reason()
    );
}

fn config_with_reader(dir: &std::path::Path) -> Config {
    Config::parse(&format!(
        r#"data_dir = {:?}
in_memory = true
[[credentials]]
access_key_id = "AKIAREADER"
secret_access_key = "secret"
principal = "reader"
policies = ["get-a"]
[[policies]]
name = "get-a"
document = '''{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "iot:GetThingShadow", "Resource": "arn:aws:iot:us-east-1:123456789012:thing/a"}}]}}'''
"#,
        dir.display().to_string()
    ))
    .unwrap()
}

#[tokio::test]
async fn a_principal_may_do_what_its_policies_allow_the_admin_everything() {
    use iot::{Action, ResourceKind};
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::new(config_with_reader(dir.path())).unwrap();
    let plane = running(&broker);
    let reader = Caller::Principal("reader".into(), None);
    let thing = ResourceKind::Thing;
    assert!(reader
        .authorize(&plane, Action::GetThingShadow, thing, "a")
        .is_ok());
    for (action, name) in [
        (Action::GetThingShadow, "b"),
        (Action::UpdateThingShadow, "a"),
        (Action::DeleteThingShadow, "a"),
        (Action::ListNamedShadowsForThing, "a"),
        (Action::Publish, "a"),
    ] {
        let refused = reader
            .authorize(&plane, action, thing, name)
            .unwrap_err()
            .into_answer();
        assert_eq!(
            (refused.status, refused.error_kind),
            (403, Some("ForbiddenException")),
            "{action} on {name}"
        );
        assert!(Caller::Admin.authorize(&plane, action, thing, name).is_ok());
    }
    let stranger = Caller::Principal("stranger".into(), None);
    assert!(stranger
        .authorize(&plane, Action::GetThingShadow, thing, "a")
        .is_err());
}

#[tokio::test]
async fn the_shadow_api_answers_in_its_own_shape() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::new(config(dir.path())).unwrap();
    let unsigned = answer(&broker, &request("GET", "/things/a/shadow", b"")).await;
    assert_eq!(
        (unsigned.status, unsigned.error_kind),
        (401, Some("UnauthorizedException"))
    );
    let body: Value = serde_json::from_str(&unsigned.body).unwrap();
    assert_eq!(body, json!({"code": 401, "message": "Unauthorized"}));

    let missing = answer_in_process(&broker, &request("GET", "/things/a/shadow", b"")).await;
    assert_eq!(
        (missing.status, missing.error_kind),
        (404, Some("ResourceNotFoundException"))
    );
    let body: Value = serde_json::from_str(&missing.body).unwrap();
    assert_eq!(
        (body["code"].as_u64(), body["message"].as_str()),
        (Some(404), Some("No shadow exists with name: 'a'"))
    );
    let update = br#"{"state": {"desired": {"on": true}}}"#;
    let accepted = answer_in_process(&broker, &request("POST", "/things/a/shadow", update)).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let body: Value = serde_json::from_str(&accepted.body).unwrap();
    assert_eq!(
        (&body["state"], &body["version"]),
        (&json!({"desired": {"on": true}}), &json!(1))
    );
    let oversized = vec![b' '; 128 * 1024 + 1];
    let refused =
        answer_in_process(&broker, &request("POST", "/things/a/shadow", &oversized)).await;
    assert_eq!(
        (refused.status, refused.error_kind),
        (413, Some("RequestEntityTooLargeException"))
    );
    let bad_name = answer_in_process(&broker, &request("GET", "/things/a%20b/shadow", b"")).await;
    assert_eq!(
        (bad_name.status, bad_name.error_kind),
        (400, Some("InvalidRequestException"))
    );
    // Without a running broker there is no shadow service.
    let offline = answer_local(config(dir.path()), &request("GET", "/things/a/shadow", b"")).await;
    assert_eq!(
        (offline.status, offline.error_kind),
        (503, Some("ServiceUnavailableException"))
    );
}

/// One offline request with a query and headers.
async fn ask(
    dir: &std::path::Path,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Option<&'static str>, Value) {
    let answer = answer_local(
        config(dir),
        &ApiRequest {
            method,
            path,
            query,
            headers,
            body: body.as_bytes(),
        },
    )
    .await;
    let value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    (answer.status, answer.error_kind, value)
}

#[tokio::test]
async fn things_have_the_api_shapes_offline() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let lab = r#"{"attributePayload": {"attributes": {"room": "lab"}}}"#;
    let (status, _, created) = ask(dir, "POST", "/things/t1", "", &[], lab).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        created["thingArn"],
        "arn:aws:iot:us-east-1:123456789012:thing/t1"
    );
    let (status, _, again) = ask(dir, "POST", "/things/t1", "", &[], lab).await;
    assert_eq!(
        (status, &again["thingId"]),
        (200, &created["thingId"]),
        "an identical create answers the same thing"
    );
    let hall = r#"{"attributePayload": {"attributes": {"room": "hall"}}}"#;
    let (status, kind, _) = ask(dir, "POST", "/things/t1", "", &[], hall).await;
    assert_eq!(
        (status, kind),
        (409, Some("ResourceAlreadyExistsException"))
    );
    for name in ["t2", "t3"] {
        assert_eq!(
            ask(dir, "POST", &format!("/things/{name}"), "", &[], "")
                .await
                .0,
            200
        );
    }
    let (_, _, first) = ask(dir, "GET", "/things", "maxResults=2", &[], "").await;
    let names = |page: &Value| -> Vec<String> {
        page["things"]
            .as_array()
            .unwrap()
            .iter()
            .map(|thing| thing["thingName"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        (names(&first), &first["nextToken"]),
        (vec!["t1".into(), "t2".into()], &json!("t2"))
    );
    let (_, _, second) = ask(dir, "GET", "/things", "maxResults=2&nextToken=t2", &[], "").await;
    assert_eq!(names(&second), ["t3"]);
    assert!(second.get("nextToken").is_none(), "{second}");
    let (_, _, filtered) = ask(
        dir,
        "GET",
        "/things",
        "attributeName=room&attributeValue=lab",
        &[],
        "",
    )
    .await;
    assert_eq!(names(&filtered), ["t1"]);
    let (status, kind, _) = ask(dir, "GET", "/things", "maxResults=251", &[], "").await;
    assert_eq!((status, kind), (400, Some("InvalidRequestException")));

    let stale = r#"{"expectedVersion": 5, "attributePayload": {"attributes": {"a": "1"}}}"#;
    let (status, kind, _) = ask(dir, "PATCH", "/things/t1", "", &[], stale).await;
    assert_eq!((status, kind), (409, Some("VersionConflictException")));
    let merge =
        r#"{"expectedVersion": 1, "attributePayload": {"attributes": {"a": "1"}, "merge": true}}"#;
    assert_eq!(ask(dir, "PATCH", "/things/t1", "", &[], merge).await.0, 200);
    let (_, _, described) = ask(dir, "GET", "/things/t1", "", &[], "").await;
    assert_eq!(described["version"], 2);
    assert_eq!(described["attributes"], json!({"room": "lab", "a": "1"}));
    assert_eq!(described["defaultClientId"], "t1");
    assert!(described.get("thingTypeName").is_none(), "{described}");

    let principal = [("x-amzn-principal", "us-east-1:0b6f4c2e")];
    assert_eq!(
        ask(dir, "PUT", "/things/t1/principals", "", &principal, "")
            .await
            .0,
        200
    );
    let (_, _, principals) = ask(dir, "GET", "/things/t1/principals", "", &[], "").await;
    assert_eq!(principals["principals"], json!(["us-east-1:0b6f4c2e"]));
    let (_, _, things) = ask(dir, "GET", "/principals/things", "", &principal, "").await;
    assert_eq!(things["things"], json!(["t1"]));
    let (status, kind, refused) = ask(dir, "DELETE", "/things/t1", "", &[], "").await;
    assert_eq!(
        (status, kind),
        (400, Some("InvalidRequestException")),
        "{refused}"
    );
    assert_eq!(
        ask(dir, "DELETE", "/things/t1/principals", "", &principal, "")
            .await
            .0,
        200
    );
    let (status, kind, _) = ask(dir, "DELETE", "/things/t1", "expectedVersion=1", &[], "").await;
    assert_eq!((status, kind), (409, Some("VersionConflictException")));
    assert_eq!(
        ask(dir, "DELETE", "/things/t1", "expectedVersion=2", &[], "")
            .await
            .0,
        200
    );
    let (status, kind, _) = ask(dir, "GET", "/things/t1", "", &[], "").await;
    assert_eq!((status, kind), (404, Some("ResourceNotFoundException")));
    assert_eq!(
        ask(dir, "DELETE", "/things/t1", "", &[], "").await.0,
        200,
        "deleting a missing thing is no error"
    );
    let (status, kind, _) = ask(dir, "GET", "/things/a%20b", "", &[], "").await;
    assert_eq!((status, kind), (400, Some("InvalidRequestException")));
    let (status, kind, _) = ask(dir, "PUT", "/things/t2/principals", "", &[], "").await;
    assert_eq!((status, kind), (400, Some("InvalidRequestException")));
}

#[tokio::test]
async fn declared_things_are_applied_once_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = {:?}\nin_memory = true\n[[things]]\nname = \"sensor-1\"\nprincipals = [\"us-east-1:dev\"]\nattributes = {{ room = \"lab\" }}\n",
        dir.path().display().to_string()
    );
    for _ in 0..2 {
        let broker = Broker::new(Config::parse(&text).unwrap()).unwrap();
        let described = answer_in_process(&broker, &request("GET", "/things/sensor-1", b"")).await;
        let described: Value = serde_json::from_str(&described.body).unwrap();
        assert_eq!(described["attributes"], json!({"room": "lab"}));
        assert_eq!(described["version"], 1, "a second start changes nothing");
    }
    let (_, _, principals) = ask(
        dir.path(),
        "GET",
        "/things/sensor-1/principals",
        "",
        &[],
        "",
    )
    .await;
    assert_eq!(principals["principals"], json!(["us-east-1:dev"]));
}

/// A device's request over mutual TLS (ALPN `x-amzn-http-ca`): no signature, its
/// certificate's policies decide each iot-data operation (with the certificate's subject
/// as policy variables), and the control plane's own operations are refused.
#[tokio::test]
async fn a_certificate_reaches_iot_data_by_its_policies_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::new(config(dir.path())).unwrap();
    let id = "ab".repeat(32);
    let policy = br#"{"policyDocument": "{\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", \"Action\": \"iot:GetThingShadow\", \"Resource\": \"arn:aws:iot:us-east-1:123456789012:thing/${iot:Certificate.Subject.CommonName}\"}, {\"Effect\": \"Allow\", \"Action\": \"iot:Publish\", \"Resource\": \"arn:aws:iot:us-east-1:123456789012:topic/dev/*\"}]}"}"#;
    let attach = format!(r#"{{"target": "arn:aws:iot:us-east-1:123456789012:cert/{id}"}}"#);
    for (method, path, body) in [
        ("POST", "/policies/device", &policy[..]),
        ("PUT", "/target-policies/device", attach.as_bytes()),
    ] {
        let answered = answer_in_process(&broker, &request(method, path, body)).await;
        assert_eq!(answered.status, 200, "{}", answered.body);
    }
    let certificate = CertificateIdentity {
        certificate_id: id.clone(),
        subject: [("CommonName".to_owned(), "dev1".to_owned())].into(),
        issuer: Default::default(),
    };
    let ask = |method: &'static str, path: &'static str, body: &'static [u8]| {
        let (broker, certificate) = (&broker, certificate.clone());
        async move {
            let answered =
                answer_for_certificate(broker, &request(method, path, body), certificate).await;
            (answered.status, answered.error_kind, answered.body)
        }
    };
    // Allowed: the shadow API answers (no shadow yet), the publish goes out.
    let (status, kind, _) = ask("GET", "/things/dev1/shadow", b"").await;
    assert_eq!((status, kind), (404, Some("ResourceNotFoundException")));
    let (status, _, body) = ask("POST", "/topics/dev/x", b"hi").await;
    assert_eq!(status, 200, "{body}");
    // Not in its policy: another thing, another action, another topic.
    for (method, path) in [
        ("GET", "/things/dev2/shadow"),
        ("POST", "/things/dev1/shadow"),
        ("POST", "/topics/other"),
    ] {
        let (status, kind, _) = ask(method, path, br#"{"state": {}}"#).await;
        assert_eq!(
            (status, kind),
            (403, Some("ForbiddenException")),
            "{method} {path}"
        );
    }
    // The control plane, and Cognito, are the admin's.
    let (status, kind, body) = ask("GET", "/policies", b"").await;
    assert_eq!((status, kind), (403, Some("UnauthorizedException")));
    assert!(body.contains(&id), "{body}");
    let get_id = answer_for_certificate(
        &broker,
        &ApiRequest {
            headers: &[("x-amz-target", "AWSCognitoIdentityService.GetId")],
            ..request("POST", "/", br#"{"IdentityPoolId": "us-east-1:none"}"#)
        },
        certificate.clone(),
    )
    .await;
    assert_eq!(
        (get_id.status, get_id.error_kind),
        (403, Some("NotAuthorizedException"))
    );
}

fn idp_request<'a>(headers: &'a [(&'a str, &'a str)], body: &'a [u8]) -> ApiRequest<'a> {
    ApiRequest {
        headers,
        ..request("POST", "/", body)
    }
}

#[tokio::test]
async fn cognito_idp_admin_operations_need_the_signature_the_apps_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::new(config(dir.path())).unwrap();
    let target = |op: &'static str| [("x-amz-target", op)];
    let create = target("AWSCognitoIdentityProviderService.CreateUserPool");
    let unsigned = answer(&broker, &idp_request(&create, br#"{"PoolName": "p"}"#)).await;
    assert_eq!(
        (unsigned.status, unsigned.error_kind),
        (403, Some("NotAuthorizedException"))
    );
    assert!(unsigned.body.contains("not signed"), "{}", unsigned.body);
    // An app's call needs no signature; it is answered (here: no such client).
    let sign_up = target("AWSCognitoIdentityProviderService.SignUp");
    let body = br#"{"ClientId": "nope", "Username": "u", "Password": "Passw0rd!"}"#;
    let app = answer(&broker, &idp_request(&sign_up, body)).await;
    assert_eq!(
        (app.status, app.error_kind),
        (400, Some("ResourceNotFoundException"))
    );
    assert!(
        app.body.contains("User pool client nope does not exist."),
        "{}",
        app.body
    );
    // A JWKS is anyone's to read; an unknown pool's is 404.
    let jwks = answer(
        &broker,
        &request("GET", "/us-east-1_None00000/.well-known/jwks.json", b""),
    )
    .await;
    assert_eq!(
        (jwks.status, jwks.error_kind),
        (404, Some("ResourceNotFoundException"))
    );
    assert!(serves_unsigned(
        "GET",
        "/us-east-1_AbC/.well-known/jwks.json"
    ));
    assert!(!serves_unsigned(
        "POST",
        "/us-east-1_AbC/.well-known/jwks.json"
    ));
    assert!(!serves_unsigned("GET", "/a/b/.well-known/jwks.json"));
}
