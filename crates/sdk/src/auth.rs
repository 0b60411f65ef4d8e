//! Wire formats of AWS IoT authentication: the SigV4 presigned WebSocket URL, custom
//! authorizer headers and CONNECT usernames, and the SDK metrics appended to usernames.
//!
//! All functions here are pure (time and credentials are arguments) so they can be tested
//! against fixed vectors.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::Error;

/// The SigV4 service name AWS IoT Core's data plane uses for WebSocket connections
/// (the AWS CRT and the AWS documentation use it; the iOS SDK uses `iotdata`).
pub const SIGV4_SERVICE: &str = "iotdevicegateway";

/// Lifetime written into `X-Amz-Expires` of a presigned URL (24 hours, the longest a
/// WebSocket connection lives in IoT Core).
pub const PRESIGN_EXPIRES: Duration = Duration::from_secs(86_400);

/// Name this SDK reports in username metrics (`?SDK=<name>&Version=<v>`).
pub(crate) const SDK_NAME: &str = "PubSubRust";

/// Version this SDK reports in username metrics.
pub(crate) const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Header (and username parameter) naming the custom authorizer.
pub(crate) const CUSTOM_AUTHORIZER_NAME: &str = "x-amz-customauthorizer-name";
/// Header (and username parameter) carrying the token signature.
pub(crate) const CUSTOM_AUTHORIZER_SIGNATURE: &str = "x-amz-customauthorizer-signature";

/// RFC 3986 unreserved characters stay; everything else is percent-encoded (as SigV4 does).
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encode everything except RFC 3986 unreserved characters (`+`, `=`, `/` included).
pub(crate) fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, STRICT).to_string()
}

/// When to append SDK metrics (`SDK=…&Version=…`) to the MQTT username.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MetricsMode {
    /// Only when the endpoint host is under `amazonaws.com` (the default).
    #[default]
    AwsEndpointsOnly,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// True when `host` is an AWS endpoint (ends with `amazonaws.com`, case-insensitive).
pub(crate) fn is_aws_host(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "amazonaws.com" || h.ends_with(".amazonaws.com")
}

/// The MQTT username to send: `base` with `SDK=<name>&Version=<v>` appended when `mode`
/// says so for `host` (after `?`, or after `&` when `base` already has a query part).
/// Returns `None` when there is neither a base username nor metrics to send (cases: the
/// unit tests below; a crate-private function has no doc test).
pub(crate) fn username_with_metrics(
    base: Option<&str>,
    host: &str,
    mode: MetricsMode,
) -> Option<String> {
    let add = match mode {
        MetricsMode::Always => true,
        MetricsMode::Never => false,
        MetricsMode::AwsEndpointsOnly => is_aws_host(host),
    };
    if !add {
        return base.map(str::to_owned);
    }
    let base = base.unwrap_or("");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}SDK={SDK_NAME}&Version={SDK_VERSION}"))
}

/// The headers the iOS SDK adds to the WebSocket upgrade for custom authentication, in its
/// order: `x-amz-customauthorizer-name: <name>`, `x-amz-customauthorizer-signature: <sig>`
/// (when a signature is given), `<tokenKeyName>: <token>`.
pub(crate) fn custom_auth_headers(
    authorizer_name: &str,
    token_key_name: &str,
    token_value: &str,
    token_signature: Option<&str>,
) -> Vec<(String, String)> {
    let mut h = vec![(
        CUSTOM_AUTHORIZER_NAME.to_owned(),
        authorizer_name.to_owned(),
    )];
    if let Some(sig) = token_signature {
        h.push((CUSTOM_AUTHORIZER_SIGNATURE.to_owned(), sig.to_owned()));
    }
    h.push((token_key_name.to_owned(), token_value.to_owned()));
    h
}

/// The CONNECT username for direct (ALPN `mqtt`) custom authentication:
/// `<user>?x-amz-customauthorizer-name=<name>&x-amz-customauthorizer-signature=<percent-encoded sig>&<tokenKeyName>=<token>`.
///
/// The signature is percent-encoded so that `+`, `=` and `/` survive query parsing; the
/// authorizer name and token are sent as given (as the AWS device SDKs do). The signature
/// parameter is left out when there is none (authorizer with signing disabled).
pub(crate) fn custom_auth_username(
    user: Option<&str>,
    authorizer_name: &str,
    token_key_name: &str,
    token_value: &str,
    token_signature: Option<&str>,
) -> String {
    let mut u = format!(
        "{}?{CUSTOM_AUTHORIZER_NAME}={authorizer_name}",
        user.unwrap_or("")
    );
    if let Some(sig) = token_signature {
        u.push_str(&format!(
            "&{CUSTOM_AUTHORIZER_SIGNATURE}={}",
            percent_encode(sig)
        ));
    }
    u.push_str(&format!("&{token_key_name}={token_value}"));
    u
}

/// Presign `wss://<authority>/mqtt` with SigV4 for AWS IoT (query-string signing):
/// [`iot::sigv4::presign_websocket_url`], the one signer the broker's console uses too.
///
/// `authority` is the host, plus `:port` when the port is not 443; it is exactly what the
/// WebSocket client sends as `Host`, the only signed header. A session token in
/// `credentials` is appended unsigned as `X-Amz-Security-Token`, as IoT Core requires.
/// [`DataManager::connect_using_websocket`](crate::DataManager::connect_using_websocket)
/// calls this on every attempt; call it yourself for a URL to hand to
/// [`DataManager::connect_using_presigned_url`](crate::DataManager::connect_using_presigned_url)
/// from another process (a backend that holds the credentials).
///
/// # Errors
/// [`Error::Signing`] with the signer's message when `authority` does not make a valid
/// URI and `Host` header (for instance it contains a space). Time, expiry and
/// credentials are not checked: an expired or wrong key gives a URL the server refuses.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use pubsub::auth::{presign_websocket_url, SIGV4_SERVICE};
/// use pubsub::Credentials;
///
/// let credentials = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", None, None, "example");
/// let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let url = presign_websocket_url(
///     "xxxx-ats.iot.us-east-1.amazonaws.com",
///     "us-east-1",
///     SIGV4_SERVICE,
///     &credentials,
///     time,
///     Duration::from_secs(300),
/// )?;
/// assert!(url.starts_with("wss://xxxx-ats.iot.us-east-1.amazonaws.com/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256"));
/// assert!(url.contains("X-Amz-Date=20231114T221320Z") && url.contains("X-Amz-Expires=300"));
///
/// let bad = presign_websocket_url("bad host", "us-east-1", SIGV4_SERVICE, &credentials, time, Duration::from_secs(300));
/// assert!(matches!(bad, Err(pubsub::Error::Signing(_))));
/// # Ok::<(), pubsub::Error>(())
/// ```
pub fn presign_websocket_url(
    authority: &str,
    region: &str,
    service: &str,
    credentials: &Credentials,
    time: SystemTime,
    expires: Duration,
) -> Result<String, Error> {
    iot::sigv4::presign_websocket_url(
        "wss",
        authority,
        region,
        service,
        credentials,
        time,
        expires,
    )
    .map_err(Error::Signing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_rule() {
        let v = SDK_VERSION;
        assert_eq!(
            username_with_metrics(
                None,
                "a1b2-ats.iot.eu-west-1.amazonaws.com",
                MetricsMode::AwsEndpointsOnly
            ),
            Some(format!("?SDK=PubSubRust&Version={v}"))
        );
        assert_eq!(
            username_with_metrics(Some("u"), "X.AMAZONAWS.COM", MetricsMode::AwsEndpointsOnly),
            Some(format!("u?SDK=PubSubRust&Version={v}"))
        );
        assert_eq!(
            username_with_metrics(None, "localhost", MetricsMode::AwsEndpointsOnly),
            None
        );
        assert_eq!(
            username_with_metrics(Some("u"), "notamazonaws.com", MetricsMode::AwsEndpointsOnly),
            Some("u".into())
        );
        assert_eq!(
            username_with_metrics(
                Some("u"),
                "amazonaws.com.evil.org",
                MetricsMode::AwsEndpointsOnly
            ),
            Some("u".into())
        );
        assert_eq!(
            username_with_metrics(Some("u?a=b"), "localhost", MetricsMode::Always),
            Some(format!("u?a=b&SDK=PubSubRust&Version={v}"))
        );
        assert_eq!(
            username_with_metrics(Some("u"), "x.amazonaws.com", MetricsMode::Never),
            Some("u".into())
        );
    }

    #[test]
    fn custom_auth_headers_as_ios() {
        assert_eq!(
            custom_auth_headers("MyAuthorizer", "x-token", "tok", Some("sig/abc+==")),
            vec![
                (
                    "x-amz-customauthorizer-name".to_string(),
                    "MyAuthorizer".to_string()
                ),
                (
                    "x-amz-customauthorizer-signature".to_string(),
                    "sig/abc+==".to_string()
                ),
                ("x-token".to_string(), "tok".to_string()),
            ]
        );
        assert_eq!(custom_auth_headers("A", "k", "v", None).len(), 2);
    }

    #[test]
    fn custom_auth_username_format() {
        assert_eq!(
            custom_auth_username(Some("devuser"), "MyAuthorizer", "mytoken", "tokval", Some("sig/abc+==")),
            "devuser?x-amz-customauthorizer-name=MyAuthorizer&x-amz-customauthorizer-signature=sig%2Fabc%2B%3D%3D&mytoken=tokval"
        );
        assert_eq!(
            custom_auth_username(None, "A", "k", "v", None),
            "?x-amz-customauthorizer-name=A&k=v"
        );
        // Metrics go after the authorizer parameters.
        let u = custom_auth_username(None, "A", "k", "v", None);
        assert_eq!(
            username_with_metrics(Some(&u), "x.amazonaws.com", MetricsMode::AwsEndpointsOnly)
                .unwrap(),
            format!("?x-amz-customauthorizer-name=A&k=v&SDK=PubSubRust&Version={SDK_VERSION}")
        );
    }
}
