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
