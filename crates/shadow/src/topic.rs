//! The Device Shadow service's reserved topics (IoT Core developer guide,
//! `device-shadow-mqtt.md`, `reserved-topics.md`):
//!
//! ```text
//! $aws/things/{thing}/shadow/{get|update|delete}[/{accepted|rejected|delta|documents}]
//! $aws/things/{thing}/shadow/name/{shadow}/{get|update|delete}[/…]
//! ```
//!
//! Only `update` has `delta` and `documents`. Topics are case-sensitive. A thing name is
//! 1–128 characters of `[a-zA-Z0-9:_-]`, a shadow name 1–64 of `[$a-zA-Z0-9:_-]`
//! (iot-data API reference, `UpdateThingShadow`).

use std::fmt;

const THINGS_PREFIX: &str = "$aws/things/";
const SHADOW_LEVEL: &str = "shadow";
const NAME_LEVEL: &str = "name";

/// Longest thing name, in characters.
pub const MAX_THING_NAME_CHARS: usize = 128;
/// Longest shadow name, in characters.
pub const MAX_SHADOW_NAME_CHARS: usize = 64;

/// What a request asks of a shadow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Get,
    Update,
    Delete,
}

impl Operation {
    pub const ALL: [Operation; 3] = [Operation::Get, Operation::Update, Operation::Delete];

    /// The topic level: `get`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }

    fn parse(level: &str) -> Option<Operation> {
        Some(match level {
            "get" => Operation::Get,
            "update" => Operation::Update,
            "delete" => Operation::Delete,
            _ => return None,
        })
    }

    /// The answer topics the service publishes for this operation.
    pub fn responses(self) -> &'static [Response] {
        match self {
            Operation::Update => &[
                Response::Accepted,
                Response::Rejected,
                Response::Delta,
                Response::Documents,
            ],
            Operation::Get | Operation::Delete => &[Response::Accepted, Response::Rejected],
        }
    }
}

/// An answer topic's last level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Response {
    Accepted,
    Rejected,
    /// `update/delta` only.
    Delta,
    /// `update/documents` only.
    Documents,
}

impl Response {
    /// The topic level: `accepted`, `rejected`, `delta` or `documents`.
    pub fn as_str(self) -> &'static str {
        match self {
            Response::Accepted => "accepted",
            Response::Rejected => "rejected",
            Response::Delta => "delta",
            Response::Documents => "documents",
        }
    }

    fn parse(level: &str) -> Option<Response> {
        Some(match level {
            "accepted" => Response::Accepted,
            "rejected" => Response::Rejected,
            "delta" => Response::Delta,
            "documents" => Response::Documents,
            _ => return None,
        })
    }
}

/// One shadow: a thing's classic (unnamed) shadow or one of its named shadows. Owned, for
/// use as a key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShadowId {
    pub thing: String,
    /// `None` for the classic shadow.
    pub shadow: Option<String>,
}

impl ShadowId {
    pub fn classic(thing: impl Into<String>) -> ShadowId {
        ShadowId {
            thing: thing.into(),
            shadow: None,
        }
    }

    pub fn named(thing: impl Into<String>, shadow: impl Into<String>) -> ShadowId {
        ShadowId {
            thing: thing.into(),
            shadow: Some(shadow.into()),
        }
    }

    /// `$aws/things/{thing}/shadow` or `$aws/things/{thing}/shadow/name/{shadow}`.
    pub fn prefix(&self) -> String {
        prefix(&self.thing, self.shadow.as_deref())
    }

    /// The topic a client publishes `operation` requests to.
    pub fn request_topic(&self, operation: Operation) -> String {
        format!("{}/{}", self.prefix(), operation.as_str())
    }

    /// The topic the service publishes `response` to `operation` on.
    pub fn response_topic(&self, operation: Operation, response: Response) -> String {
        format!(
            "{}/{}/{}",
            self.prefix(),
            operation.as_str(),
            response.as_str()
        )
    }

    /// Checks both names against the API's rules.
    pub fn validate(&self) -> Result<(), NameError> {
        validate_thing_name(&self.thing)?;
        match &self.shadow {
            Some(shadow) => validate_shadow_name(shadow),
            None => Ok(()),
        }
    }
}

impl fmt::Display for ShadowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shadow {
            Some(shadow) => write!(f, "{}/{}", self.thing, shadow),
            None => write!(f, "{} (classic)", self.thing),
        }
    }
}

fn prefix(thing: &str, shadow: Option<&str>) -> String {
    match shadow {
        Some(shadow) => format!("{THINGS_PREFIX}{thing}/{SHADOW_LEVEL}/{NAME_LEVEL}/{shadow}"),
        None => format!("{THINGS_PREFIX}{thing}/{SHADOW_LEVEL}"),
    }
}

/// A parsed shadow topic: a request (`response` is `None`) or an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShadowTopic<'a> {
    pub thing: &'a str,
    /// `None` for the classic shadow.
    pub shadow: Option<&'a str>,
    pub operation: Operation,
    pub response: Option<Response>,
}

impl<'a> ShadowTopic<'a> {
    /// Parses a topic name. `None` unless it is exactly one of the service's topics:
    /// other `$aws/things/{thing}/…` topics (jobs, Device Defender, unknown shadow
    /// levels) are not shadow topics. Names are not validated here (see
    /// [`ShadowId::validate`]), so that the service can answer a bad name with a
    /// rejection rather than ignore it.
    pub fn parse(topic: &'a str) -> Option<ShadowTopic<'a>> {
        let rest = topic.strip_prefix(THINGS_PREFIX)?;
        let mut levels = rest.split('/');
        let thing = levels.next().filter(|thing| !thing.is_empty())?;
        if levels.next()? != SHADOW_LEVEL {
            return None;
        }
        let mut level = levels.next()?;
        let mut shadow = None;
        if level == NAME_LEVEL {
            shadow = Some(levels.next().filter(|name| !name.is_empty())?);
            level = levels.next()?;
        }
        let operation = Operation::parse(level)?;
        let response = match levels.next() {
            None => None,
            Some(level) => {
                let response = Response::parse(level)?;
                if !operation.responses().contains(&response) {
                    return None;
                }
                Some(response)
            }
        };
        if levels.next().is_some() {
            return None;
        }
        Some(ShadowTopic {
            thing,
            shadow,
            operation,
            response,
        })
    }

    /// `true` for a request topic (`…/get`, `…/update`, `…/delete`).
    pub fn is_request(&self) -> bool {
        self.response.is_none()
    }

    pub fn id(&self) -> ShadowId {
        ShadowId {
            thing: self.thing.to_owned(),
            shadow: self.shadow.map(str::to_owned),
        }
    }
}

impl fmt::Display for ShadowTopic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&prefix(self.thing, self.shadow))?;
        write!(f, "/{}", self.operation.as_str())?;
        if let Some(response) = self.response {
            write!(f, "/{}", response.as_str())?;
        }
        Ok(())
    }
}

/// Why a thing or shadow name was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    #[error("thing name must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'")]
    ThingName,
    #[error("shadow name must be 1 to 64 characters of a-z, A-Z, 0-9, '$', ':', '_' and '-'")]
    ShadowName,
}

/// A thing name: 1–128 characters of `[a-zA-Z0-9:_-]`.
pub fn validate_thing_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_THING_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
    ok.then_some(()).ok_or(NameError::ThingName)
}

/// A shadow name: 1–64 characters of `[$a-zA-Z0-9:_-]`.
pub fn validate_shadow_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SHADOW_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'$' | b':' | b'_' | b'-'));
    ok.then_some(()).ok_or(NameError::ShadowName)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_classic_and_named_requests_and_answers() {
        let t = ShadowTopic::parse("$aws/things/lamp/shadow/update").unwrap();
        assert_eq!(
            (t.thing, t.shadow, t.operation, t.response),
            ("lamp", None, Operation::Update, None)
        );
        assert!(t.is_request());
        let t = ShadowTopic::parse("$aws/things/lamp/shadow/name/cfg/get/accepted").unwrap();
        assert_eq!(
            (t.thing, t.shadow, t.operation, t.response),
            (
                "lamp",
                Some("cfg"),
                Operation::Get,
                Some(Response::Accepted)
            )
        );
        let t = ShadowTopic::parse("$aws/things/lamp/shadow/update/documents").unwrap();
        assert_eq!(t.response, Some(Response::Documents));
    }

    #[test]
    fn refuses_what_is_not_exactly_a_shadow_topic() {
        for topic in [
            "$aws/things/lamp/jobs/get",
            "$aws/things/lamp/shadow",
            "$aws/things/lamp/shadow/",
            "$aws/things//shadow/get",
            "$aws/things/lamp/shadow/name//get",
            "$aws/things/lamp/shadow/name/cfg",
            "$aws/things/lamp/shadow/list",
            "$aws/things/lamp/shadow/get/delta",
            "$aws/things/lamp/shadow/delete/documents",
            "$aws/things/lamp/shadow/update/accepted/x",
            "$aws/things/lamp/Shadow/get",
            "$aws/things/lamp/shadow/GET",
            "aws/things/lamp/shadow/get",
            "$aws/things/lamp/shadow/name/cfg/update/delta/x",
        ] {
            assert_eq!(ShadowTopic::parse(topic), None, "{topic}");
        }
    }

    #[test]
    fn building_and_parsing_agree() {
        for id in [ShadowId::classic("t-1"), ShadowId::named("t:1", "$cfg_2")] {
            for operation in Operation::ALL {
                let request = id.request_topic(operation);
                let parsed = ShadowTopic::parse(&request).unwrap();
                assert_eq!((parsed.id(), parsed.operation), (id.clone(), operation));
                assert_eq!(parsed.to_string(), request);
                for &response in operation.responses() {
                    let topic = id.response_topic(operation, response);
                    let parsed = ShadowTopic::parse(&topic).unwrap();
                    assert_eq!(parsed.response, Some(response));
                    assert_eq!(parsed.id(), id);
                    assert_eq!(parsed.to_string(), topic);
                }
            }
        }
    }

    #[test]
    fn names_follow_the_api_rules() {
        assert_eq!(validate_thing_name("Lamp_1:a-b"), Ok(()));
        assert_eq!(validate_thing_name(&"a".repeat(128)), Ok(()));
        for bad in ["", "a b", "a/b", "a$", "é", &"a".repeat(129)] {
            assert_eq!(validate_thing_name(bad), Err(NameError::ThingName), "{bad}");
        }
        assert_eq!(validate_shadow_name("$cfg:1_a-b"), Ok(()));
        for bad in ["", "a/b", "a+", &"a".repeat(65)] {
            assert_eq!(
                validate_shadow_name(bad),
                Err(NameError::ShadowName),
                "{bad}"
            );
        }
        assert!(ShadowId::named("t", "a b").validate().is_err());
        assert!(ShadowId::classic("t").validate().is_ok());
    }
}
