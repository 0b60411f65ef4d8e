//! iot-data's Device Shadow API (IoT Core's `device-shadow-rest-api.md`; facts file §3.7):
//!
//! | operation | request |
//! |---|---|
//! | GetThingShadow | `GET /things/{thingName}/shadow[?name={shadowName}]` |
//! | UpdateThingShadow | `POST /things/{thingName}/shadow[?name=…]`, body: the request state document |
//! | DeleteThingShadow | `DELETE /things/{thingName}/shadow[?name=…]` |
//! | ListNamedShadowsForThing | `GET /api/things/shadow/ListNamedShadowsForThing/{thingName}?nextToken=&pageSize=` |
//!
//! The broker's shadow service answers, as it answers MQTT requests, except that a refusal
//! is the HTTP error (status = its code, body = its error document, `x-amzn-ErrorType` =
//! the iot-data exception name boto3 raises) and nothing goes to `…/rejected`; an accepted
//! update publishes `/update/accepted`, `/update/delta` and `/update/documents` to MQTT
//! subscribers all the same. Each call is authorized by `iot:GetThingShadow`,
//! `iot:UpdateThingShadow`, `iot:DeleteThingShadow` or `iot:ListNamedShadowsForThing` on
//! `thing/{thingName}` (also for a named shadow: the facts do not settle its resource).

use bytes::Bytes;
use iot::{Action, ResourceKind};
use shadow::{Operation, Rejection, ShadowId};

use super::*;
use crate::clock::unix_millis;
use crate::shadow::Origin;

/// Longest request body read at all: bigger is refused before it is parsed. The limit
/// on the state itself (8 KiB by default, `413` too) is the shadow service's.
const MAX_BODY_BYTES: usize = 128 * 1024;
/// ListNamedShadowsForThing's `pageSize` when none is given, and its range.
const DEFAULT_PAGE_SIZE: usize = 25;
const PAGE_SIZES: std::ops::RangeInclusive<usize> = 1..=100;

/// Whether `path` (as received) is one of this API's, so that its failures answer in its
/// shape (e.g. 401 `Unauthorized` for a bad signature).
pub(super) fn is_shadow_path(path: &str) -> bool {
    let parts = segments(path);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    is_shadow_api(&parts)
}

/// The same, on the path's segments (percent-decoded).
pub(super) fn is_shadow_api(parts: &[&str]) -> bool {
    matches!(
        parts,
        ["things", _, "shadow"] | ["api", "things", "shadow", ..]
    )
}

/// 401 for a request whose signature is missing or does not verify.
pub(super) fn unauthorized() -> ApiError {
    failure(Rejection::new(401, "Unauthorized"))
}

/// A rejection as the HTTP error: its code, its exception name, its document.
fn failure(rejection: Rejection) -> ApiError {
    let status = StatusCode::from_u16(rejection.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    ApiError::new(
        status,
        rejection.exception_name(),
        rejection.message.clone(),
    )
    .with_document(rejection.to_json())
}

/// What a request asks of the shadow service.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ShadowCall {
    Document {
        id: ShadowId,
        operation: Operation,
    },
    ListNamed {
        thing: String,
        page_size: usize,
        next_token: Option<String>,
    },
}

impl ShadowCall {
    /// The policy action that authorizes it (on `thing/{thing}`).
    fn action(&self) -> Action {
        match self {
            ShadowCall::Document { operation, .. } => match operation {
                Operation::Get => Action::GetThingShadow,
                Operation::Update => Action::UpdateThingShadow,
                Operation::Delete => Action::DeleteThingShadow,
            },
            ShadowCall::ListNamed { .. } => Action::ListNamedShadowsForThing,
        }
    }

    fn thing(&self) -> &str {
        match self {
            ShadowCall::Document { id, .. } => &id.thing,
            ShadowCall::ListNamed { thing, .. } => thing,
        }
    }
}

/// Reads a request of this API: method, path segments (percent-decoded) and query, with
/// names checked (400 `InvalidRequestException` with the rule's text). Pure.
fn parse(method: &str, parts: &[&str], query: &str) -> Result<ShadowCall, Rejection> {
    let invalid = |error: shadow::topic::NameError| Rejection::new(400, error.to_string());
    match parts {
        ["things", thing, "shadow"] => {
            let operation = match method {
                "GET" => Operation::Get,
                "POST" => Operation::Update,
                "DELETE" => Operation::Delete,
                _ => return Err(method_not_allowed(method)),
            };
            let id = ShadowId {
                thing: (*thing).to_owned(),
                shadow: query_param(query, "name"),
            };
            id.validate().map_err(invalid)?;
            Ok(ShadowCall::Document { id, operation })
        }
        ["api", "things", "shadow", "ListNamedShadowsForThing", thing] => {
            if method != "GET" {
                return Err(method_not_allowed(method));
            }
            shadow::topic::validate_thing_name(thing).map_err(invalid)?;
            let page_size = match query_param(query, "pageSize") {
                None => DEFAULT_PAGE_SIZE,
                Some(text) => text
                    .parse()
                    .ok()
                    .filter(|size| PAGE_SIZES.contains(size))
                    .ok_or_else(|| {
                        Rejection::new(
                            400,
                            format!(
                                "pageSize must be an integer from {} to {}, got {text:?}",
                                PAGE_SIZES.start(),
                                PAGE_SIZES.end()
                            ),
                        )
                    })?,
            };
            Ok(ShadowCall::ListNamed {
                thing: (*thing).to_owned(),
                page_size,
                next_token: query_param(query, "nextToken").filter(|token| !token.is_empty()),
            })
        }
        _ => Err(Rejection::new(
            404,
            format!(
                "{method} /{} is not an operation of this API",
                parts.join("/")
            ),
        )),
    }
}

fn method_not_allowed(method: &str) -> Rejection {
    Rejection::new(
        405,
        format!("method {method} is not allowed on this resource"),
    )
}

pub(super) async fn route(
    plane: &Plane<'_>,
    request: &ApiRequest<'_>,
    parts: &[&str],
    caller: &Caller,
) -> ApiResult {
    let call = parse(request.method, parts, request.query).map_err(failure)?;
    caller
        .authorize(plane, call.action(), ResourceKind::Thing, call.thing())
        .map_err(|error| error.with_document(Rejection::new(403, "Forbidden").to_json()))?;
    match call {
        ShadowCall::Document { id, operation } => {
            let payload = match operation {
                Operation::Update if request.body.len() > MAX_BODY_BYTES => {
                    return Err(failure(Rejection::too_large()))
                }
                Operation::Update => Bytes::copy_from_slice(request.body),
                // GET and DELETE carry no document in this API.
                Operation::Get | Operation::Delete => Bytes::new(),
            };
            plane
                .shadows()?
                .request(id, operation, payload, Origin::Http)
                .await
                .map_err(failure)
        }
        ShadowCall::ListNamed {
            thing,
            page_size,
            next_token,
        } => {
            let (results, next_token) =
                plane
                    .shadows()?
                    .list_named(&thing, page_size, next_token.as_deref());
            let mut answer = json!({ "results": results, "timestamp": unix_millis() / 1000 });
            if let Some(next_token) = next_token {
                answer["nextToken"] = next_token.into();
            }
            Ok(answer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(method: &str, path: &str, query: &str) -> Result<ShadowCall, Rejection> {
        let parts = segments(path);
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        parse(method, &parts, query)
    }

    #[test]
    fn the_three_document_operations_and_their_actions() {
        for (method, operation, action) in [
            ("GET", Operation::Get, Action::GetThingShadow),
            ("POST", Operation::Update, Action::UpdateThingShadow),
            ("DELETE", Operation::Delete, Action::DeleteThingShadow),
        ] {
            let classic = parsed(method, "/things/lamp/shadow", "").unwrap();
            assert_eq!(
                classic,
                ShadowCall::Document {
                    id: ShadowId::classic("lamp"),
                    operation
                }
            );
            assert_eq!((classic.action(), classic.thing()), (action, "lamp"));
            let named = parsed(method, "/things/lamp/shadow", "name=%24cfg").unwrap();
            assert_eq!(
                named,
                ShadowCall::Document {
                    id: ShadowId::named("lamp", "$cfg"),
                    operation
                }
            );
        }
        let refused = parsed("PUT", "/things/lamp/shadow", "").unwrap_err();
        assert_eq!(refused.code, 405);
    }

    #[test]
    fn names_are_checked_with_the_rule_text() {
        let bad_thing = parsed("GET", "/things/a%20b/shadow", "").unwrap_err();
        assert_eq!(bad_thing.code, 400);
        assert!(
            bad_thing.message.starts_with("thing name must be"),
            "{bad_thing:?}"
        );
        let bad_shadow = parsed("GET", "/things/a/shadow", "name=x%2Fy").unwrap_err();
        assert!(
            bad_shadow.message.starts_with("shadow name must be"),
            "{bad_shadow:?}"
        );
        let long = format!(
            "/api/things/shadow/ListNamedShadowsForThing/{}",
            "t".repeat(129)
        );
        assert_eq!(parsed("GET", &long, "").unwrap_err().code, 400);
    }

    #[test]
    fn list_named_pages_within_1_to_100() {
        let path = "/api/things/shadow/ListNamedShadowsForThing/lamp";
        assert_eq!(
            parsed("GET", path, "").unwrap(),
            ShadowCall::ListNamed {
                thing: "lamp".into(),
                page_size: DEFAULT_PAGE_SIZE,
                next_token: None
            }
        );
        let page = parsed("GET", path, "nextToken=abc%3D&pageSize=100").unwrap();
        assert_eq!(
            page,
            ShadowCall::ListNamed {
                thing: "lamp".into(),
                page_size: 100,
                next_token: Some("abc=".into())
            }
        );
        assert_eq!(page.action(), Action::ListNamedShadowsForThing);
        for bad in ["pageSize=0", "pageSize=101", "pageSize=x"] {
            assert_eq!(parsed("GET", path, bad).unwrap_err().code, 400, "{bad}");
        }
        assert_eq!(parsed("POST", path, "").unwrap_err().code, 405);
    }

    #[test]
    fn only_this_api_paths_are_its_own() {
        assert!(is_shadow_path("/things/lamp/shadow"));
        assert!(is_shadow_path(
            "/api/things/shadow/ListNamedShadowsForThing/lamp"
        ));
        // CreateThing and friends (another family) and iot-data Publish are not.
        assert!(!is_shadow_path("/things/lamp"));
        assert!(!is_shadow_path("/things/lamp/shadow/x"));
        assert!(!is_shadow_path("/topics/things/lamp/shadow"));
    }
}
