//! A client of the broker's control plane: requests signed with SigV4 (aws-sigv4), as the
//! AWS CLI signs them, answers printed as `aws iot` prints them.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use aws_credential_types::Credentials;
use serde_json::Value;

pub struct ApiClient {
    /// `http://host:port`, no trailing slash.
    endpoint: String,
    region: String,
    credentials: Credentials,
}

/// AWS's URI encoding of one path segment (a topic's `/` becomes `%2F`).
pub fn encode_segment(segment: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(segment, UNRESERVED).to_string()
}

impl ApiClient {
    /// A client signing with `credentials` (temporary ones too, whose session token goes
    /// in `x-amz-security-token`, signed, as the AWS CLI sends it).
    pub fn with_credentials(endpoint: &str, region: &str, credentials: Credentials) -> ApiClient {
        ApiClient {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: region.to_owned(),
            credentials,
        }
    }

    /// One signed request with a JSON body; `path` is already encoded, `query` without
    /// `?`. An AWS-shaped error answer becomes an error `"<ErrorType>: <message>"`.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let (status, kind, text) = self.send(method, path, query, headers, body.as_bytes())?;
        read_answer(status, kind.as_deref(), &text)
    }

    /// One signed request with the body as given: the answer's status, `x-amzn-ErrorType`
    /// and body, unread.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<(u16, Option<String>, String)> {
        let signed = self.sign(method, path, query, headers, body)?;
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut request = client.request(method.parse()?, &signed.url);
        for (name, value) in &signed.headers {
            request = request.header(name, value);
        }
        let response = request
            .body(body.to_vec())
            .send()
            .with_context(|| format!("cannot reach the control plane at {}", self.endpoint))?;
        let (status, kind) = status_and_kind(response.status(), response.headers());
        Ok((status, kind, response.text()?))
    }

    /// [`ApiClient::send`] from async code, through `client` (its timeouts apply).
    pub async fn send_async(
        &self,
        client: &reqwest::Client,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<(u16, Option<String>, String)> {
        let signed = self.sign(method, path, query, headers, body)?;
        let mut request = client.request(method.parse()?, &signed.url);
        for (name, value) in &signed.headers {
            request = request.header(name, value);
        }
        let response = request
            .body(body.to_vec())
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.endpoint))?;
        let (status, kind) = status_and_kind(response.status(), response.headers());
        Ok((status, kind, response.text().await?))
    }

    /// The URL and every header to send (the SigV4 ones included, `host` excluded: the
    /// HTTP client sets it from the URL), as the AWS CLI signs.
    fn sign(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Signed> {
        let url = if query.is_empty() {
            format!("{}{path}", self.endpoint)
        } else {
            format!("{}{path}?{query}", self.endpoint)
        };
        let service = signing_service(path, headers);
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_owned();
        let mut all_headers: Vec<(&str, &str)> = vec![("host", host.as_str())];
        all_headers.extend_from_slice(headers);
        let typed = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        if !body.is_empty() && !typed {
            all_headers.push(("content-type", "application/json"));
        }
        let signed_headers = iot::sigv4::sign_headers(
            method,
            &url,
            &all_headers,
            body,
            &self.region,
            service,
            &self.credentials,
            SystemTime::now(),
        )
        .map_err(|e| anyhow::anyhow!("SigV4 signing: {e}"))?;
        let mut out: Vec<(String, String)> = all_headers
            .iter()
            .filter(|(name, _)| *name != "host")
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        out.extend(signed_headers);
        Ok(Signed { url, headers: out })
    }
}

/// A request ready to send: [`ApiClient::sign`]'s result.
struct Signed {
    url: String,
    headers: Vec<(String, String)>,
}

/// An answer's status and `x-amzn-ErrorType`.
fn status_and_kind(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> (u16, Option<String>) {
    let kind = headers
        .get("x-amzn-ErrorType")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (status.as_u16(), kind)
}

/// The service name a request is signed for: `cognito-idp` for a user pools call (by its
/// `X-Amz-Target`), `iotdata` for the data plane (publish, retained messages, the shadow
/// API), `iot` for the rest, as the AWS SDKs sign them.
fn signing_service(path: &str, headers: &[(&str, &str)]) -> &'static str {
    let user_pools = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("x-amz-target")
            && value.starts_with("AWSCognitoIdentityProviderService.")
    });
    if user_pools {
        return "cognito-idp";
    }
    let shadow_api = path.starts_with("/api/things/shadow/")
        || (path.starts_with("/things/") && path.trim_end_matches('/').ends_with("/shadow"));
    if shadow_api || path.starts_with("/topics/") || path.starts_with("/retainedMessage") {
        "iotdata"
    } else {
        "iot"
    }
}

/// A control-plane answer as `aws iot` reads it, whether it came over HTTP or from
/// `broker::control::answer_local`: the JSON (`{}` when empty), or for a non-2xx status
/// the error `"<ErrorType> (HTTP <status>): <message>"`.
pub fn read_answer(status: u16, kind: Option<&str>, body: &str) -> anyhow::Result<Value> {
    let value: Value = if body.is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_str(body).with_context(|| format!("answer is not JSON: {body}"))?
    };
    if !(200..300).contains(&status) {
        bail!(
            "{} (HTTP {status}): {}",
            kind.unwrap_or("error"),
            value["message"].as_str().unwrap_or(body)
        );
    }
    Ok(value)
}
