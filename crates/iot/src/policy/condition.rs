//! The `Condition` element: operators, set prefixes, keys and their evaluation.

use std::net::IpAddr;

use super::pattern::{Pattern, Resolver, Var};

/// The base operator, without set prefix or `IfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    IpAddress,
    NotIpAddress,
    Bool,
    Null,
}

impl Op {
    pub(crate) fn from_name(name: &str) -> Option<Op> {
        const OPS: &[(&str, Op)] = &[
            ("StringEquals", Op::StringEquals),
            ("StringNotEquals", Op::StringNotEquals),
            ("StringEqualsIgnoreCase", Op::StringEqualsIgnoreCase),
            ("StringNotEqualsIgnoreCase", Op::StringNotEqualsIgnoreCase),
            ("StringLike", Op::StringLike),
            ("StringNotLike", Op::StringNotLike),
            // ARNs are strings here: IAM's ArnLike/ArnEquals both take wildcards.
            ("ArnEquals", Op::StringLike),
            ("ArnLike", Op::StringLike),
            ("ArnNotEquals", Op::StringNotLike),
            ("ArnNotLike", Op::StringNotLike),
            ("IpAddress", Op::IpAddress),
            ("NotIpAddress", Op::NotIpAddress),
            ("Bool", Op::Bool),
            ("Null", Op::Null),
        ];
        OPS.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, op)| op)
    }

    /// Operators IAM knows that this emulator does not implement (rejected with a clear
    /// message rather than as unknown).
    pub(crate) fn is_unsupported_iam(name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        lower.starts_with("numeric") || lower.starts_with("date") || lower == "binaryequals"
    }

    pub(crate) fn negated(self) -> bool {
        matches!(
            self,
            Op::StringNotEquals
                | Op::StringNotEqualsIgnoreCase
                | Op::StringNotLike
                | Op::NotIpAddress
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetOp {
    /// No prefix: a multi-valued key matches when any of its values does.
    Single,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `203.0.113.0/24`, `2001:db8::/32`, or a bare address (a single host).
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|&p| p <= max)?
            }
            Some(_) => return None,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address (dual-stack sockets) is its IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            if prefix == 0 {
                0
            } else {
                bits >> (width - prefix)
            }
        }
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), self.prefix, 32)
                    == masked(u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// String operators; wildcards compiled in for the `Like` ones.
    Str(Pattern),
    Cidr(Cidr),
    /// `Bool` and `Null`.
    Bool(bool),
}

/// One key of one operator: `"StringLike": {"iot:ClientId": ["a*", "b*"]}`.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    pub(crate) op: Op,
    pub(crate) set: SetOp,
    pub(crate) if_exists: bool,
    pub(crate) key: Var,
    pub(crate) values: Vec<Value>,
}

impl Condition {
    /// `Ok(holds)`, or `Err(variable)` when a value uses a variable the context lacks.
    pub(crate) fn eval<'p>(&'p self, r: &Resolver<'_>) -> Result<bool, &'p str> {
        for v in &self.values {
            if let Value::Str(p) = v {
                if let Some(var) = p.unresolved(r) {
                    return Err(var);
                }
            }
        }
        let cx = r.cx;
        // The request's values for the key; empty = the key is absent.
        let single: Option<&str>;
        let many: &[String] = match self.key {
            Var::ConnectAttributes => {
                single = None;
                &cx.connect_attributes
            }
            Var::SourceIp if matches!(self.op, Op::IpAddress | Op::NotIpAddress) => {
                // Compared as an address; no text needed.
                return Ok(self.eval_ip(r.source_ip()));
            }
            ref k => {
                single = r.get(k);
                &[]
            }
        };
        let present = single.is_some() || !many.is_empty();

        if self.op == Op::Null {
            // `"Null": {"k": "true"}` holds when k is absent.
            return Ok(self
                .values
                .iter()
                .any(|v| matches!(v, Value::Bool(b) if *b != present)));
        }
        if !present {
            return Ok(if self.if_exists {
                true
            } else {
                match self.set {
                    SetOp::ForAllValues => true,
                    SetOp::ForAnyValue => false,
                    SetOp::Single => self.op.negated(),
                }
            });
        }

        let holds_for = |value: &str| -> bool {
            let any = self.values.iter().any(|v| self.value_matches(v, value, r));
            any != self.op.negated()
        };
        Ok(match (single, self.set) {
            (Some(v), _) => holds_for(v),
            (None, SetOp::ForAllValues) => many.iter().all(|v| holds_for(v)),
            (None, _) => many.iter().any(|v| holds_for(v)),
        })
    }

    fn eval_ip(&self, ip: Option<IpAddr>) -> bool {
        match ip {
            None => {
                self.if_exists
                    || match self.set {
                        SetOp::ForAllValues => true,
                        SetOp::ForAnyValue => false,
                        SetOp::Single => self.op.negated(),
                    }
            }
            Some(ip) => {
                let any = self
                    .values
                    .iter()
                    .any(|v| matches!(v, Value::Cidr(c) if c.contains(ip)));
                any != self.op.negated()
            }
        }
    }

    fn value_matches(&self, cond: &Value, value: &str, r: &Resolver<'_>) -> bool {
        match (self.op, cond) {
            (Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase, Value::Str(p)) => {
                p.matches(value, r, true).unwrap_or(false)
            }
            (_, Value::Str(p)) => p.matches(value, r, false).unwrap_or(false),
            (_, Value::Cidr(c)) => value.parse::<IpAddr>().is_ok_and(|ip| c.contains(ip)),
            (_, Value::Bool(b)) => value.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        }
    }
}
