//! Policy documents → compiled statements, rejecting what AWS IoT would reject.

use serde_json::{Map, Value as Json};

use super::condition::{Cidr, Condition, Op, SetOp, Value};
use super::pattern::{wildcard_match, Pattern, Var};
use super::{Action, Effect, Policy, PolicyError, Resources, Statement, MAX_POLICY_CHARS};

pub(crate) fn parse(name: &str, document: &str) -> Result<Policy, PolicyError> {
    let length = document.chars().filter(|c| !c.is_whitespace()).count();
    if length > MAX_POLICY_CHARS {
        return Err(PolicyError::TooLong {
            policy: name.to_owned(),
            length,
            max: MAX_POLICY_CHARS,
        });
    }
    let json: Json = serde_json::from_str(document).map_err(|e| PolicyError::Json {
        policy: name.to_owned(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    let p = Parser { policy: name };
    let root = json
        .as_object()
        .ok_or_else(|| p.err("(document)", "must be a JSON object"))?;

    for key in root.keys() {
        if !matches!(key.as_str(), "Version" | "Statement" | "Id") {
            return Err(p.err(
                key,
                "unknown top-level key (expected Version, Statement, Id)",
            ));
        }
    }
    let variables = match root.get("Version") {
        Some(Json::String(v)) if v == "2012-10-17" => true,
        Some(Json::String(v)) if v == "2008-10-17" => false,
        Some(other) => {
            return Err(p.err(
                "Version",
                format!("must be \"2012-10-17\" or \"2008-10-17\", not {other}"),
            ))
        }
        None => return Err(p.err("Version", "is required (use \"2012-10-17\")")),
    };
    if let Some(id) = root.get("Id") {
        if !id.is_string() {
            return Err(p.err("Id", "must be a string"));
        }
    }
    let statements = match root.get("Statement") {
        Some(Json::Object(s)) => vec![p.statement("Statement".to_owned(), s, variables)?],
        Some(Json::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let path = format!("Statement[{i}]");
                match s {
                    Json::Object(s) => p.statement(path, s, variables),
                    _ => Err(p.err(&path, "must be an object")),
                }
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(p.err("Statement", "must be an object or an array of objects")),
        None => return Err(p.err("Statement", "is required")),
    };
    Ok(Policy {
        name: name.to_owned(),
        statements,
    })
}

/// serde_json appends " at line L column C"; we report those as fields.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

struct Parser<'a> {
    policy: &'a str,
}

impl Parser<'_> {
    fn err(&self, path: &str, reason: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            policy: self.policy.to_owned(),
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    fn statement(
        &self,
        path: String,
        s: &Map<String, Json>,
        variables: bool,
    ) -> Result<Statement, PolicyError> {
        let at = |key: &str| format!("{path}.{key}");
        for key in s.keys() {
            match key.as_str() {
                "Sid" | "Effect" | "Action" | "NotAction" | "Resource" | "NotResource"
                | "Condition" => {}
                "Principal" | "NotPrincipal" => {
                    return Err(self.err(
                        &at(key),
                        "IoT policies have no principal: they apply to the principals they are attached to",
                    ))
                }
                _ => {
                    return Err(self.err(
                        &at(key),
                        "unknown statement key (expected Sid, Effect, Action, NotAction, Resource, NotResource, Condition)",
                    ))
                }
            }
        }
        let sid = match s.get("Sid") {
            None => None,
            Some(Json::String(sid)) => Some(sid.clone()),
            Some(_) => return Err(self.err(&at("Sid"), "must be a string")),
        };
        let effect = match s.get("Effect") {
            Some(Json::String(e)) if e == "Allow" => Effect::Allow,
            Some(Json::String(e)) if e == "Deny" => Effect::Deny,
            Some(other) => {
                return Err(self.err(
                    &at("Effect"),
                    format!("must be \"Allow\" or \"Deny\", not {other}"),
                ))
            }
            None => return Err(self.err(&at("Effect"), "is required (\"Allow\" or \"Deny\")")),
        };

        let actions = match (s.get("Action"), s.get("NotAction")) {
            (Some(_), Some(_)) => {
                return Err(self.err(&path, "has both Action and NotAction; use one"))
            }
            (None, None) => return Err(self.err(&path, "needs an Action or a NotAction")),
            (Some(a), None) => self.actions(&at("Action"), a)?,
            (None, Some(a)) => !self.actions(&at("NotAction"), a)? & Action::ALL_MASK,
        };

        let resources = match (s.get("Resource"), s.get("NotResource")) {
            (Some(_), Some(_)) => {
                return Err(self.err(&path, "has both Resource and NotResource; use one"))
            }
            (None, None) => return Err(self.err(&path, "needs a Resource or a NotResource")),
            (Some(r), None) => {
                Resources::Resource(self.resources(&at("Resource"), r, variables)?)
            }
            (None, Some(r)) => {
                Resources::NotResource(self.resources(&at("NotResource"), r, variables)?)
            }
        };

        let conditions = match s.get("Condition") {
            None => Vec::new(),
            Some(Json::Object(c)) => self.conditions(&at("Condition"), c, variables)?,
            Some(_) => return Err(self.err(&at("Condition"), "must be an object")),
        };

        Ok(Statement {
            sid,
            effect,
            actions,
            resources,
            conditions,
        })
    }

    /// A string or a non-empty array of strings.
    fn strings<'j>(&self, path: &str, v: &'j Json) -> Result<Vec<(String, &'j str)>, PolicyError> {
        match v {
            Json::String(s) => Ok(vec![(path.to_owned(), s.as_str())]),
            Json::Array(list) if list.is_empty() => Err(self.err(path, "must not be empty")),
            Json::Array(list) => list
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let p = format!("{path}[{i}]");
                    match item {
                        Json::String(s) => Ok((p, s.as_str())),
                        _ => Err(self.err(&p, "must be a string")),
                    }
                })
                .collect(),
            _ => Err(self.err(path, "must be a string or an array of strings")),
        }
    }

    /// The set of IoT actions the patterns name, as a bit mask.
    fn actions(&self, path: &str, v: &Json) -> Result<u16, PolicyError> {
        let mut mask = 0;
        for (p, pattern) in self.strings(path, v)? {
            let valid = pattern == "*"
                || pattern
                    .split_once(':')
                    .is_some_and(|(service, name)| !service.is_empty() && !name.is_empty());
            if !valid {
                return Err(self.err(
                    &p,
                    format!("action {pattern:?} must look like \"iot:Publish\" (service:action) or be \"*\""),
                ));
            }
            for a in Action::ALL {
                if wildcard_match(pattern, a.as_str(), true) {
                    mask |= a.bit();
                }
            }
        }
        Ok(mask)
    }

    fn resources(
        &self,
        path: &str,
        v: &Json,
        variables: bool,
    ) -> Result<Vec<Pattern>, PolicyError> {
        Ok(self
            .strings(path, v)?
            .into_iter()
            .map(|(_, r)| Pattern::compile(r, true, variables))
            .collect())
    }

    fn conditions(
        &self,
        path: &str,
        c: &Map<String, Json>,
        variables: bool,
    ) -> Result<Vec<Condition>, PolicyError> {
        let mut out = Vec::new();
        for (op_name, block) in c {
            let op_path = format!("{path}.{op_name}");
            let (set, rest) = if let Some(rest) = strip_ci(op_name, "ForAnyValue:") {
                (SetOp::ForAnyValue, rest)
            } else if let Some(rest) = strip_ci(op_name, "ForAllValues:") {
                (SetOp::ForAllValues, rest)
            } else {
                (SetOp::Single, op_name.as_str())
            };
            let (base, if_exists) = match rest
                .len()
                .checked_sub("IfExists".len())
                .and_then(|i| rest.get(i..).map(|tail| (i, tail)))
            {
                Some((i, tail)) if tail.eq_ignore_ascii_case("IfExists") => (&rest[..i], true),
                _ => (rest, false),
            };
            let op = match Op::from_name(base) {
                Some(op) => op,
                None if Op::is_unsupported_iam(base) => {
                    return Err(self.err(
                        &op_path,
                        format!("condition operator {op_name:?} is not supported by this emulator (supported: String*, Arn*, IpAddress, NotIpAddress, Bool, Null)"),
                    ))
                }
                None => {
                    return Err(self.err(&op_path, format!("unknown condition operator {op_name:?}")))
                }
            };
            if op == Op::Null && (if_exists || set != SetOp::Single) {
                return Err(self.err(&op_path, "Null takes no IfExists suffix or set prefix"));
            }
            let Json::Object(block) = block else {
                return Err(self.err(&op_path, "must be an object of condition keys to values"));
            };
            for (key, values) in block {
                let key_path = format!("{op_path}.{key}");
                let var = Var::from_name(key);
                let list: Vec<&Json> = match values {
                    Json::Array(l) if l.is_empty() => {
                        return Err(self.err(&key_path, "must not be empty"))
                    }
                    Json::Array(l) => l.iter().collect(),
                    v => vec![v],
                };
                let mut compiled = Vec::with_capacity(list.len());
                for (i, v) in list.into_iter().enumerate() {
                    let vpath = if values.is_array() {
                        format!("{key_path}[{i}]")
                    } else {
                        key_path.clone()
                    };
                    let text = match v {
                        Json::String(s) => s.clone(),
                        Json::Bool(b) => b.to_string(),
                        Json::Number(n) => n.to_string(),
                        _ => return Err(self.err(&vpath, "must be a string, number or boolean")),
                    };
                    compiled.push(self.value(&vpath, op, &text, variables)?);
                }
                out.push(Condition {
                    op,
                    set,
                    if_exists,
                    key: var,
                    values: compiled,
                });
            }
        }
        Ok(out)
    }

    fn value(&self, path: &str, op: Op, text: &str, variables: bool) -> Result<Value, PolicyError> {
        Ok(match op {
            Op::StringLike | Op::StringNotLike => {
                Value::Str(Pattern::compile(text, true, variables))
            }
            Op::StringEquals
            | Op::StringNotEquals
            | Op::StringEqualsIgnoreCase
            | Op::StringNotEqualsIgnoreCase => Value::Str(Pattern::compile(text, false, variables)),
            Op::IpAddress | Op::NotIpAddress => {
                Value::Cidr(Cidr::parse(text).ok_or_else(|| {
                    self.err(path, format!("{text:?} is not an IP address or CIDR block"))
                })?)
            }
            Op::Bool | Op::Null => {
                if text.eq_ignore_ascii_case("true") {
                    Value::Bool(true)
                } else if text.eq_ignore_ascii_case("false") {
                    Value::Bool(false)
                } else {
                    return Err(
                        self.err(path, format!("must be \"true\" or \"false\", not {text:?}"))
                    );
                }
            }
        })
    }
}

fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}
