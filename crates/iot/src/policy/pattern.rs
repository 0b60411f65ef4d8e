//! Pre-compiled strings of a policy: resource patterns and condition values.
//!
//! A string is split once, at parse time, into literal runs, policy variables and the
//! wildcards `*` / `?`. Matching walks those segments directly, reading a variable's value
//! from the request context when the walk reaches it, so a decision builds no substituted
//! string: substituted values are compared byte for byte and never act as wildcards.

use std::cell::OnceCell;
use std::net::IpAddr;

use super::RequestContext;

/// A policy variable (`${…}`) or condition key, by what it reads from the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    ClientId,
    ThingName,
    ThingTypeName,
    ThingAttribute(Box<str>),
    IsAttached,
    CertSubject(Box<str>),
    CertIssuer(Box<str>),
    CognitoSub,
    SourceIp,
    /// Multi-valued: only meaningful as a condition key.
    ConnectAttributes,
    /// A name we do not know: never resolves (as a key: always missing).
    Unknown,
}

impl Var {
    /// Names compare case-insensitively, as IAM's condition keys do; the parts that name
    /// an attribute or a certificate field are kept as written.
    pub(crate) fn from_name(name: &str) -> Var {
        fn strip<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
            let head = s.get(..prefix.len())?;
            head.eq_ignore_ascii_case(prefix)
                .then(|| &s[prefix.len()..])
        }
        let exact = |n: &str| name.eq_ignore_ascii_case(n);
        if exact("iot:ClientId") {
            Var::ClientId
        } else if exact("iot:Connection.Thing.ThingName") {
            Var::ThingName
        } else if exact("iot:Connection.Thing.ThingTypeName") {
            Var::ThingTypeName
        } else if exact("iot:Connection.Thing.IsAttached") {
            Var::IsAttached
        } else if exact("cognito-identity.amazonaws.com:sub") {
            Var::CognitoSub
        } else if exact("aws:SourceIp") {
            Var::SourceIp
        } else if exact("iot:ConnectAttributes") {
            Var::ConnectAttributes
        } else if let Some(attr) = strip(name, "iot:Connection.Thing.Attributes[")
            .and_then(|rest| rest.strip_suffix(']'))
            .filter(|a| !a.is_empty())
        {
            Var::ThingAttribute(attr.into())
        } else if let Some(field) =
            strip(name, "iot:Certificate.Subject.").filter(|f| !f.is_empty())
        {
            Var::CertSubject(field.into())
        } else if let Some(field) = strip(name, "iot:Certificate.Issuer.").filter(|f| !f.is_empty())
        {
            Var::CertIssuer(field.into())
        } else {
            Var::Unknown
        }
    }
}

/// Reads variables from one request's context. Built once per [`super::evaluate`] call;
/// the only value it has to format (the source IP as text) is formatted at most once.
pub(crate) struct Resolver<'a> {
    pub(crate) cx: &'a RequestContext,
    source_ip: OnceCell<Option<String>>,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(cx: &'a RequestContext) -> Self {
        Resolver {
            cx,
            source_ip: OnceCell::new(),
        }
    }

    /// The single value of `var`, or `None` when the context has none.
    pub(crate) fn get(&self, var: &Var) -> Option<&str> {
        let cx = self.cx;
        match var {
            Var::ClientId => cx.client_id.as_deref(),
            Var::ThingName => cx.facts().thing_name.as_deref(),
            Var::ThingTypeName => cx.facts().thing_type_name.as_deref(),
            Var::ThingAttribute(a) => super::field(&cx.facts().thing_attributes, a),
            Var::IsAttached => Some(if cx.facts().thing_name.is_some() {
                "true"
            } else {
                "false"
            }),
            Var::CertSubject(f) => super::field(&cx.facts().certificate_subject, f),
            Var::CertIssuer(f) => super::field(&cx.facts().certificate_issuer, f),
            Var::CognitoSub => cx.facts().cognito_identity_id.as_deref(),
            Var::SourceIp => self
                .source_ip
                .get_or_init(|| cx.source_ip.map(|ip| ip.to_string()))
                .as_deref(),
            Var::ConnectAttributes | Var::Unknown => None,
        }
    }

    pub(crate) fn source_ip(&self) -> Option<IpAddr> {
        self.cx.source_ip
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Seg {
    Lit(Box<str>),
    /// The variable and its text as written, for reasons.
    Var(Var, Box<str>),
    /// `*`: any run of characters, `/` included.
    Star,
    /// `?`: exactly one character.
    One,
}

/// How a compiled string matches. Variable-free shapes that resources usually have get
/// a direct comparison; everything else walks the segments.
#[derive(Debug, Clone)]
enum Shape {
    /// `*`
    Any,
    /// No wildcard, no variable.
    Exact(Box<str>),
    /// A literal followed by a single trailing `*`.
    Prefix(Box<str>),
    General(Box<[Seg]>),
}

/// A compiled resource pattern or condition value.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    shape: Shape,
    /// Whether any segment is a variable (only then can resolution fail).
    has_var: bool,
}

impl Pattern {
    /// Compiles `text`. `wildcards`: whether `*` / `?` are wildcards (resources, `StringLike`)
    /// or literal (`StringEquals`). `variables`: whether `${…}` is substituted (policy
    /// version 2012-10-17) or literal text (2008-10-17, as IAM does).
    pub(crate) fn compile(text: &str, wildcards: bool, variables: bool) -> Pattern {
        let mut segs: Vec<Seg> = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if variables && rest.starts_with("${") {
                if let Some(end) = rest.find('}') {
                    let name = &rest[2..end];
                    let written = &rest[..=end];
                    rest = &rest[end + 1..];
                    match name {
                        "*" | "?" | "$" => lit.push_str(name),
                        _ => {
                            flush(&mut lit, &mut segs);
                            segs.push(Seg::Var(Var::from_name(name), written.into()));
                        }
                    }
                    continue;
                }
            }
            rest = &rest[c.len_utf8()..];
            match c {
                '*' if wildcards => {
                    flush(&mut lit, &mut segs);
                    // `**` matches what `*` does; one keeps backtracking linear.
                    if !matches!(segs.last(), Some(Seg::Star)) {
                        segs.push(Seg::Star);
                    }
                }
                '?' if wildcards => {
                    flush(&mut lit, &mut segs);
                    segs.push(Seg::One);
                }
                _ => lit.push(c),
            }
        }
        flush(&mut lit, &mut segs);

        let has_var = segs.iter().any(|s| matches!(s, Seg::Var(..)));
        let shape = match segs.as_slice() {
            [] => Shape::Exact("".into()),
            [Seg::Star] => Shape::Any,
            [Seg::Lit(l)] => Shape::Exact(l.clone()),
            [Seg::Lit(l), Seg::Star] => Shape::Prefix(l.clone()),
            _ => Shape::General(segs.into_boxed_slice()),
        };
        Pattern { shape, has_var }
    }

    /// The first variable (as written) that the context cannot resolve.
    pub(crate) fn unresolved<'p>(&'p self, r: &Resolver<'_>) -> Option<&'p str> {
        if !self.has_var {
            return None;
        }
        let Shape::General(segs) = &self.shape else {
            return None;
        };
        segs.iter().find_map(|s| match s {
            Seg::Var(v, written) if r.get(v).is_none() => Some(&**written),
            _ => None,
        })
    }

    /// Whether `text` matches. `Err` names the first unresolvable variable.
    /// `ignore_case`: ASCII case-insensitive comparison of literal characters.
    pub(crate) fn matches<'p>(
        &'p self,
        text: &str,
        r: &Resolver<'_>,
        ignore_case: bool,
    ) -> Result<bool, &'p str> {
        let eq = |a: &str, b: &str| {
            if ignore_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        Ok(match &self.shape {
            Shape::Any => true,
            Shape::Exact(l) => eq(l, text),
            Shape::Prefix(l) => text.get(..l.len()).is_some_and(|head| eq(l, head)),
            Shape::General(segs) => {
                if let Some(v) = self.unresolved(r) {
                    return Err(v);
                }
                if ignore_case || segs.iter().any(|seg| matches!(seg, Seg::One)) {
                    match_segs(segs, text.as_bytes(), r, ignore_case)
                } else {
                    match_stars(segs, text.as_bytes(), r)
                }
            }
        })
    }
}

fn flush(lit: &mut String, segs: &mut Vec<Seg>) {
    if !lit.is_empty() {
        segs.push(Seg::Lit(std::mem::take(lit).into_boxed_str()));
    }
}

/// Length of the UTF-8 sequence that starts with `lead`.
fn char_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xff => 4,
        // A continuation byte: only reachable on malformed input; step one byte.
        _ => 1,
    }
}

/// The bytes a literal or (resolved) variable segment stands for.
fn seg_bytes<'a>(seg: &'a Seg, r: &'a Resolver<'_>) -> &'a [u8] {
    match seg {
        Seg::Lit(l) => l.as_bytes(),
        Seg::Var(v, _) => r.get(v).unwrap_or_default().as_bytes(),
        Seg::Star | Seg::One => &[],
    }
}

/// Where a run of literal/variable segments ends if it matches `text` at `at`.
fn match_run_at(run: &[Seg], text: &[u8], mut at: usize, r: &Resolver<'_>) -> Option<usize> {
    for seg in run {
        let bytes = seg_bytes(seg, r);
        if !text.get(at..)?.starts_with(bytes) {
            return None;
        }
        at += bytes.len();
    }
    Some(at)
}

/// The matcher for the common case, patterns without `?` compared case-sensitively: the
/// runs between stars are compared as whole slices, the first anchored at the start, the
/// last at the end, each middle one at its leftmost occurrence (which is always safe when
/// `*` is the only wildcard). Resource patterns all begin with a long literal ARN prefix,
/// so most mismatches are decided by one slice comparison.
fn match_stars(segs: &[Seg], text: &[u8], r: &Resolver<'_>) -> bool {
    let stars = segs.iter().filter(|seg| matches!(seg, Seg::Star)).count();
    let mut runs = segs.split(|seg| matches!(seg, Seg::Star));
    let first = runs.next().unwrap_or_default();
    let Some(mut at) = match_run_at(first, text, 0, r) else {
        return false;
    };
    if stars == 0 {
        return at == text.len();
    }
    for (index, run) in runs.enumerate() {
        let last = index + 1 == stars;
        if last {
            let len: usize = run.iter().map(|seg| seg_bytes(seg, r).len()).sum();
            return text.len() >= at + len
                && match_run_at(run, text, text.len() - len, r) == Some(text.len());
        }
        match (at..=text.len()).find_map(|start| match_run_at(run, text, start, r)) {
            Some(end) => at = end,
            None => return false,
        }
    }
    true
}

/// A position in the pattern: segment index and byte offset inside a literal or variable.
#[derive(Clone, Copy)]
struct Pos {
    seg: usize,
    off: usize,
}

enum Tok {
    Byte(u8),
    Star,
    One,
    End,
}

/// Greedy `*` / `?` matcher with single-star backtracking, over segments whose variables
/// all resolve (checked by the caller). Linear memory, O(pattern × text) worst case.
fn match_segs(segs: &[Seg], text: &[u8], r: &Resolver<'_>, ignore_case: bool) -> bool {
    fn bytes_of<'a>(seg: &'a Seg, r: &'a Resolver<'_>) -> &'a [u8] {
        match seg {
            Seg::Lit(l) => l.as_bytes(),
            Seg::Var(v, _) => r.get(v).unwrap_or_default().as_bytes(),
            Seg::Star | Seg::One => &[],
        }
    }
    // Normalises `p` past exhausted literals and returns the token there.
    let tok = |p: &mut Pos| -> Tok {
        while let Some(seg) = segs.get(p.seg) {
            match seg {
                Seg::Star => return Tok::Star,
                Seg::One => return Tok::One,
                _ => {
                    let b = bytes_of(seg, r);
                    if p.off < b.len() {
                        return Tok::Byte(b[p.off]);
                    }
                    p.seg += 1;
                    p.off = 0;
                }
            }
        }
        Tok::End
    };
    let after = |p: Pos| Pos {
        seg: p.seg + 1,
        off: 0,
    };

    let mut p = Pos { seg: 0, off: 0 };
    let mut t = 0usize;
    // Where to resume after the last `*`: pattern position after it, text position it
    // currently stops at.
    let mut star: Option<(Pos, usize)> = None;
    loop {
        let token = tok(&mut p);
        if t == text.len() {
            // Only trailing stars may remain; a star cannot give back text it never took.
            let mut token = token;
            loop {
                match token {
                    Tok::End => return true,
                    Tok::Star => {
                        p = after(p);
                        token = tok(&mut p);
                    }
                    _ => return false,
                }
            }
        }
        match token {
            Tok::Star => {
                p = after(p);
                star = Some((p, t));
                continue;
            }
            Tok::One => {
                p = after(p);
                t += char_len(text[t]).min(text.len() - t);
                continue;
            }
            Tok::Byte(b) => {
                let c = text[t];
                if b == c || (ignore_case && b.eq_ignore_ascii_case(&c)) {
                    p.off += 1;
                    t += 1;
                    continue;
                }
            }
            Tok::End => {}
        }
        // Mismatch: let the last `*` take one more character, or fail.
        match star {
            Some((sp, st)) => {
                let nt = st + char_len(text[st]).min(text.len() - st);
                star = Some((sp, nt));
                p = sp;
                t = nt;
            }
            None => return false,
        }
    }
}

/// Plain wildcard match of two strings (no variables), used for actions at parse time.
pub(crate) fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let cx = RequestContext::default();
    Pattern::compile(pattern, true, false)
        .matches(text, &Resolver::new(&cx), ignore_case)
        .unwrap_or(false)
}
