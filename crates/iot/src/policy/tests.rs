use super::*;
use proptest::prelude::*;

const ARN: &str = "arn:aws:iot:us-east-1:123456789012:";

fn arn(rest: &str) -> String {
    format!("{ARN}{rest}")
}

fn doc(statements: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#)
}

fn policy(name: &str, statements: &str) -> Arc<Policy> {
    let d = doc(statements);
    Arc::new(Policy::parse(name, &d).unwrap_or_else(|e| panic!("{e}\n{d}")))
}

/// An Allow of `action` on `resource` with an optional condition block.
fn allow(action: &str, resource: &str, condition: Option<&str>) -> Arc<Policy> {
    let c = condition.map_or(String::new(), |c| format!(r#","Condition":{c}"#));
    policy(
        "p",
        &format!(r#"{{"Effect":"Allow","Action":"{action}","Resource":"{resource}"{c}}}"#),
    )
}

fn cx() -> RequestContext {
    RequestContext {
        client_id: Some("dev1".into()),
        principal: Some(Box::new(PrincipalFacts {
            thing_name: Some("thing1".into()),
            thing_type_name: Some("sensor".into()),
            thing_attributes: [("room".to_string(), "kitchen".to_string())].into(),
            certificate_subject: [
                ("CommonName".to_string(), "cn1".to_string()),
                ("Organization".to_string(), "acme".to_string()),
            ]
            .into(),
            certificate_issuer: [("CommonName".to_string(), "ca1".to_string())].into(),
            cognito_identity_id: Some("us-east-1:abcd".into()),
        })),
        source_ip: Some("10.1.2.3".parse().unwrap()),
        connect_attributes: vec!["PersistentConnect".into()],
    }
}

fn decide(p: &[Arc<Policy>], a: Action, resource: &str, c: &RequestContext) -> AuthDecision {
    evaluate(p, a, resource, c).decision
}

use AuthDecision::{Allowed, ExplicitDeny, ImplicitDeny};

#[test]
fn action_names() {
    for a in Action::ALL {
        assert_eq!(Action::parse(a.as_str()), Some(a));
        assert_eq!(Action::parse(&a.as_str().to_uppercase()), Some(a));
        assert_eq!(Action::parse(&a.as_str()[4..]), Some(a));
    }
    assert_eq!(Action::parse("iot:publish"), Some(Action::Publish));
    assert_eq!(Action::parse("iot:Pub*"), None);
    assert_eq!(Action::parse("s3:Publish"), None);
    assert_eq!(AuthDecision::ExplicitDeny.as_str(), "EXPLICIT_DENY");
    assert_eq!(AuthDecision::ImplicitDeny.as_str(), "IMPLICIT_DENY");
    assert_eq!(AuthDecision::Allowed.as_str(), "ALLOWED");
}

#[test]
fn action_wildcards() {
    use Action::*;
    let table: &[(&str, Action, bool)] = &[
        ("iot:*", Publish, true),
        ("iot:*", Connect, true),
        ("*", UpdateThingShadow, true),
        ("iot:Pub*", Publish, true),
        ("iot:Pub*", Subscribe, false),
        ("iot:pub*", Publish, true),
        ("IOT:PUBLISH", Publish, true),
        ("iot:Publish", RetainPublish, false),
        ("iot:*Publish", RetainPublish, true),
        ("iot:*Publish", Publish, true),
        ("iot:?eceive", Receive, true),
        ("iot:?eceive", Connect, false),
        ("iot:*Shadow", GetThingShadow, true),
        ("iot:*Shadow", GetRetainedMessage, false),
        ("iot:*Shadow", ListNamedShadowsForThing, false),
        ("iot:List*", ListNamedShadowsForThing, true),
        ("iot:*Retained*", ListRetainedMessages, true),
        ("s3:*", Publish, false),
        ("iot:CreateThing", Publish, false),
    ];
    for &(pattern, action, expected) in table {
        let p = allow(pattern, "*", None);
        let got = decide(&[p], action, &arn("topic/x"), &cx());
        assert_eq!(got == Allowed, expected, "{pattern} vs {action}");
    }
}

#[test]
fn resource_wildcards() {
    let table: &[(&str, &str, bool)] = &[
        ("*", "topic/a", true),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a",
            "topic/a",
            true,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a",
            "topic/ab",
            false,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a",
            "topic/A",
            false,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/*",
            "topic/a/b/c",
            true,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/*",
            "topicfilter/a",
            false,
        ),
        ("arn:aws:iot:*:*:topic/a/*/c", "topic/a/x/y/c", true),
        ("arn:aws:iot:*:*:topic/a/*/c", "topic/a/x/y/d", false),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a?c",
            "topic/abc",
            true,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a?c",
            "topic/ac",
            false,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a?c",
            "topic/abbc",
            false,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a?c",
            "topic/a/c",
            true,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a?c",
            "topic/aéc",
            true,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/*é",
            "topic/xxé",
            true,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a**b",
            "topic/ab",
            true,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/*a*a*a",
            "topic/aaaa",
            true,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/*a*a*a",
            "topic/aab",
            false,
        ),
        // MQTT wildcards are literal characters in a policy.
        (
            "arn:aws:iot:us-east-1:123456789012:topicfilter/a/+",
            "topicfilter/a/+",
            true,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topicfilter/a/+",
            "topicfilter/a/b",
            false,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a/#",
            "topic/a/b",
            false,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topicfilter/a/#",
            "topicfilter/a/#",
            true,
        ),
        // Escapes are literal.
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a${*}",
            "topic/a*",
            true,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a${*}",
            "topic/ab",
            false,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a${?}",
            "topic/a?",
            true,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/a${?}",
            "topic/ab",
            false,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/${$}aws/x",
            "topic/$aws/x",
            true,
        ),
        (
            "arn:aws:iot:us-east-1:123456789012:topic/$aws/*",
            "topic/$aws/things/t",
            true,
        ),
        // `${` without `}` is literal.
        (
            "arn:aws:iot:us-east-1:123456789012:topic/${x",
            "topic/${x",
            true,
        ),
    ];
    for &(pattern, resource, expected) in table {
        let p = allow("iot:Publish", pattern, None);
        let got = decide(&[p], Action::Publish, &arn(resource), &cx());
        assert_eq!(got == Allowed, expected, "{pattern} vs {resource}");
    }
}

#[test]
fn variables() {
    // (resource pattern, resource, context change, expected allowed, unresolved)
    type Edit = fn(&mut RequestContext);
    let none: Edit = |_| {};
    let table: &[(&str, &str, Edit, bool)] = &[
        ("topic/${iot:ClientId}", "topic/dev1", none, true),
        ("topic/${iot:ClientId}", "topic/dev2", none, false),
        (
            "topic/${iot:ClientId}",
            "topic/dev1",
            |c| c.client_id = None,
            false,
        ),
        ("topic/${iot:clientid}", "topic/dev1", none, true),
        (
            "topic/${iot:Connection.Thing.ThingName}/*",
            "topic/thing1/x",
            none,
            true,
        ),
        (
            "topic/${iot:Connection.Thing.ThingName}/*",
            "topic/thing1/x",
            |c| c.facts_mut().thing_name = None,
            false,
        ),
        (
            "topic/${iot:Connection.Thing.ThingTypeName}",
            "topic/sensor",
            none,
            true,
        ),
        (
            "topic/${iot:Connection.Thing.ThingTypeName}",
            "topic/sensor",
            |c| c.facts_mut().thing_type_name = None,
            false,
        ),
        (
            "topic/${iot:Connection.Thing.Attributes[room]}",
            "topic/kitchen",
            none,
            true,
        ),
        (
            "topic/${iot:Connection.Thing.Attributes[floor]}",
            "topic/kitchen",
            none,
            false,
        ),
        (
            "topic/${iot:Connection.Thing.IsAttached}",
            "topic/true",
            none,
            true,
        ),
        (
            "topic/${iot:Connection.Thing.IsAttached}",
            "topic/false",
            |c| c.facts_mut().thing_name = None,
            true,
        ),
        (
            "topic/${iot:Certificate.Subject.CommonName}",
            "topic/cn1",
            none,
            true,
        ),
        (
            "topic/${iot:Certificate.Subject.Organization}",
            "topic/acme",
            none,
            true,
        ),
        (
            "topic/${iot:Certificate.Subject.Country}",
            "topic/US",
            none,
            false,
        ),
        (
            "topic/${iot:Certificate.Issuer.CommonName}",
            "topic/ca1",
            none,
            true,
        ),
        (
            "topic/${iot:Certificate.Issuer.CommonName}",
            "topic/ca1",
            |c| c.facts_mut().certificate_issuer.clear(),
            false,
        ),
        (
            "topic/${cognito-identity.amazonaws.com:sub}",
            "topic/us-east-1:abcd",
            none,
            true,
        ),
        (
            "topic/${cognito-identity.amazonaws.com:sub}",
            "topic/us-east-1:abcd",
            |c| c.facts_mut().cognito_identity_id = None,
            false,
        ),
        ("topic/${aws:SourceIp}", "topic/10.1.2.3", none, true),
        (
            "topic/${aws:SourceIp}",
            "topic/10.1.2.3",
            |c| c.source_ip = None,
            false,
        ),
        ("topic/${no:SuchVariable}", "topic/", none, false),
        // Substituted values are literal, never wildcards.
        (
            "topic/${iot:ClientId}",
            "topic/abc",
            |c| c.client_id = Some("a*".into()),
            false,
        ),
        (
            "topic/${iot:ClientId}",
            "topic/a*",
            |c| c.client_id = Some("a*".into()),
            true,
        ),
        (
            "topic/${iot:ClientId}",
            "topic/ab",
            |c| c.client_id = Some("a?".into()),
            false,
        ),
        (
            "topic/${iot:ClientId}/*",
            "topic/a/b/x",
            |c| c.client_id = Some("a/b".into()),
            true,
        ),
        (
            "topic/${iot:ClientId}",
            "topic/",
            |c| c.client_id = Some("".into()),
            true,
        ),
        ("topic/*${iot:ClientId}", "topic/xxdev1", none, true),
        ("topic/*${iot:ClientId}?", "topic/xdev1dev1z", none, true),
    ];
    for &(pattern, resource, edit, expected) in table {
        let mut c = cx();
        edit(&mut c);
        let p = allow("iot:Publish", &arn(pattern), None);
        let d = evaluate(&[p], Action::Publish, &arn(resource), &c);
        assert_eq!(
            d.is_allowed(),
            expected,
            "{pattern} vs {resource}: {}",
            d.reason
        );
    }
}

#[test]
fn version_2008_has_no_variables() {
    let d = r#"{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:123456789012:topic/${iot:ClientId}"}}"#;
    let p = Arc::new(Policy::parse("old", d).unwrap());
    assert_eq!(
        decide(
            std::slice::from_ref(&p),
            Action::Publish,
            &arn("topic/dev1"),
            &cx()
        ),
        ImplicitDeny
    );
    assert_eq!(
        decide(&[p], Action::Publish, &arn("topic/${iot:ClientId}"), &cx()),
        Allowed
    );
}

#[test]
fn unresolved_reason_and_deny() {
    let mut c = cx();
    c.facts_mut().thing_name = None;
    let p = policy(
        "p",
        r#"{"Effect":"Allow","Action":"iot:Publish","Resource":"*"},
           {"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/${iot:Connection.Thing.ThingName}"}"#,
    );
    // The Deny cannot be resolved, so it denies nothing.
    let d = evaluate(&[p], Action::Publish, &arn("topic/thing1"), &c);
    assert_eq!(d.decision, Allowed, "{}", d.reason);

    let p = allow(
        "iot:Publish",
        &arn("topic/${iot:Connection.Thing.ThingName}"),
        None,
    );
    let d = evaluate(&[p], Action::Publish, &arn("topic/x"), &c);
    assert_eq!(d.decision, ImplicitDeny);
    assert_eq!(
        d.reason,
        format!(
            "no statement allowed iot:Publish on {} (1 policy checked; statement 0 of \"p\" skipped: ${{iot:Connection.Thing.ThingName}} unresolved)",
            arn("topic/x")
        )
    );

    // Another Resource entry still matches.
    let p = policy(
        "p",
        r#"{"Effect":"Allow","Action":"iot:Publish","Resource":["arn:aws:iot:*:*:topic/${iot:Connection.Thing.ThingName}","arn:aws:iot:*:*:topic/public"]}"#,
    );
    assert_eq!(
        decide(&[p], Action::Publish, &arn("topic/public"), &c),
        Allowed
    );

    // An unresolved NotResource makes the statement not apply, rather than match everything.
    let p = policy(
        "p",
        r#"{"Effect":"Allow","Action":"iot:Publish","NotResource":"arn:aws:iot:*:*:topic/${iot:Connection.Thing.ThingName}"}"#,
    );
    assert_eq!(
        decide(&[p], Action::Publish, &arn("topic/x"), &c),
        ImplicitDeny
    );
}

#[test]
fn reasons() {
    let p = policy(
        "myIOTPolicy",
        r#"{"Effect":"Allow","Action":"iot:Connect","Resource":"*"},
           {"Sid":"AllowPublish","Effect":"Allow","Action":"iot:Publish","Resource":"*"}"#,
    );
    let d = evaluate(
        std::slice::from_ref(&p),
        Action::Publish,
        &arn("topic/x"),
        &cx(),
    );
    assert_eq!(
        d.reason,
        r#"allowed by policy "myIOTPolicy" statement 1 (Sid "AllowPublish")"#
    );
    assert_eq!(d.policy.as_deref(), Some("myIOTPolicy"));
    assert_eq!(d.statement, Some(1));
    assert_eq!(d.sid.as_deref(), Some("AllowPublish"));

    let deny = policy("d", r#"{"Effect":"Deny","Action":"iot:*","Resource":"*"}"#);
    let d = evaluate(
        &[p.clone(), deny.clone()],
        Action::Publish,
        &arn("topic/x"),
        &cx(),
    );
    assert_eq!(d.decision, ExplicitDeny);
    assert_eq!(d.reason, r#"explicitly denied by policy "d" statement 0"#);
    assert_eq!(
        (d.policy.as_deref(), d.statement, d.sid),
        (Some("d"), Some(0), None)
    );

    let d = evaluate(
        &[p, deny.clone()],
        Action::Subscribe,
        &arn("topicfilter/x"),
        &cx(),
    );
    assert_eq!(d.decision, ExplicitDeny);
    let other = allow("iot:Connect", "*", None);
    let d = evaluate(
        &[other.clone(), other],
        Action::Publish,
        &arn("topic/x"),
        &cx(),
    );
    assert_eq!(
        d.reason,
        format!(
            "no statement allowed iot:Publish on {} (2 policies checked)",
            arn("topic/x")
        )
    );
    assert_eq!((d.policy, d.statement, d.sid), (None, None, None));
    let d = evaluate(&[], Action::Connect, &arn("client/x"), &cx());
    assert_eq!(d.decision, ImplicitDeny);
}

#[test]
fn deny_precedence_and_not_elements() {
    let allow_all = allow("iot:*", "*", None);
    let deny_secret = policy(
        "deny",
        r#"{"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/secret/*"}"#,
    );
    let both = [allow_all.clone(), deny_secret.clone()];
    assert_eq!(
        decide(&both, Action::Publish, &arn("topic/secret/a"), &cx()),
        ExplicitDeny
    );
    assert_eq!(
        decide(&both, Action::Publish, &arn("topic/public"), &cx()),
        Allowed
    );
    assert_eq!(
        decide(&both, Action::Receive, &arn("topic/secret/a"), &cx()),
        Allowed
    );
    // Deny alone is still a deny, not an allow.
    assert_eq!(
        decide(&[deny_secret], Action::Publish, &arn("topic/public"), &cx()),
        ImplicitDeny
    );

    // NotAction: everything but Publish.
    let p = policy(
        "p",
        r#"{"Effect":"Allow","NotAction":"iot:Publish","Resource":"*"}"#,
    );
    assert_eq!(
        decide(
            std::slice::from_ref(&p),
            Action::Publish,
            &arn("topic/a"),
            &cx()
        ),
        ImplicitDeny
    );
    assert_eq!(
        decide(
            std::slice::from_ref(&p),
            Action::Receive,
            &arn("topic/a"),
            &cx()
        ),
        Allowed
    );
    assert_eq!(
        decide(&[p], Action::Connect, &arn("client/a"), &cx()),
        Allowed
    );
    let p = policy(
        "p",
        r#"{"Effect":"Deny","NotAction":["iot:Connect","iot:Sub*"],"Resource":"*"}"#,
    );
    let both = [allow_all.clone(), p];
    assert_eq!(
        decide(&both, Action::Publish, &arn("topic/a"), &cx()),
        ExplicitDeny
    );
    assert_eq!(
        decide(&both, Action::Subscribe, &arn("topicfilter/a"), &cx()),
        Allowed
    );

    // NotResource: everything but topic/private/*.
    let p = policy(
        "p",
        r#"{"Effect":"Allow","Action":"iot:Publish","NotResource":["arn:aws:iot:*:*:topic/private/*","arn:aws:iot:*:*:topic/${iot:ClientId}"]}"#,
    );
    assert_eq!(
        decide(
            std::slice::from_ref(&p),
            Action::Publish,
            &arn("topic/a"),
            &cx()
        ),
        Allowed
    );
    assert_eq!(
        decide(
            std::slice::from_ref(&p),
            Action::Publish,
            &arn("topic/private/a"),
            &cx()
        ),
        ImplicitDeny
    );
    assert_eq!(
        decide(&[p], Action::Publish, &arn("topic/dev1"), &cx()),
        ImplicitDeny
    );
}

#[test]
fn conditions() {
    type Edit = fn(&mut RequestContext);
    let none: Edit = |_| {};
    let no_ip: Edit = |c| c.source_ip = None;
    let no_thing: Edit = |c| c.facts_mut().thing_name = None;
    let no_attrs: Edit = |c| c.connect_attributes.clear();
    let both_attrs: Edit =
        |c| c.connect_attributes = vec!["PersistentConnect".into(), "LastWill".into()];
    let table: &[(&str, Edit, bool)] = &[
        (r#"{"StringEquals":{"iot:ClientId":"dev1"}}"#, none, true),
        (r#"{"StringEquals":{"iot:ClientId":"DEV1"}}"#, none, false),
        (
            r#"{"StringEquals":{"iot:ClientId":["x","dev1"]}}"#,
            none,
            true,
        ),
        (r#"{"StringEquals":{"iot:ClientId":"dev*"}}"#, none, false),
        (r#"{"StringEquals":{"iot:clientid":"dev1"}}"#, none, true),
        (
            r#"{"StringEquals":{"iot:ClientId":"dev1"}}"#,
            |c| c.client_id = None,
            false,
        ),
        (
            r#"{"StringEquals":{"iot:ClientId":"${iot:Connection.Thing.ThingName}"}}"#,
            |c| c.client_id = Some("thing1".into()),
            true,
        ),
        (
            r#"{"StringEquals":{"iot:ClientId":"${iot:Connection.Thing.ThingName}"}}"#,
            none,
            false,
        ),
        (
            r#"{"StringEquals":{"iot:ClientId":"${iot:Connection.Thing.ThingName}"}}"#,
            no_thing,
            false,
        ),
        (
            r#"{"StringNotEquals":{"iot:ClientId":"${iot:Connection.Thing.ThingName}"}}"#,
            no_thing,
            false,
        ),
        (
            r#"{"StringNotEquals":{"iot:ClientId":"dev1"}}"#,
            none,
            false,
        ),
        (
            r#"{"StringNotEquals":{"iot:ClientId":["a","b"]}}"#,
            none,
            true,
        ),
        (
            r#"{"StringNotEquals":{"iot:ClientId":"dev1"}}"#,
            |c| c.client_id = None,
            true,
        ),
        (
            r#"{"StringEqualsIgnoreCase":{"iot:ClientId":"DEV1"}}"#,
            none,
            true,
        ),
        (
            r#"{"StringEqualsIgnoreCase":{"iot:ClientId":"DEV2"}}"#,
            none,
            false,
        ),
        (
            r#"{"StringNotEqualsIgnoreCase":{"iot:ClientId":"DEV1"}}"#,
            none,
            false,
        ),
        (r#"{"StringLike":{"iot:ClientId":"dev*"}}"#, none, true),
        (r#"{"StringLike":{"iot:ClientId":"de?1"}}"#, none, true),
        (r#"{"StringLike":{"iot:ClientId":"x*"}}"#, none, false),
        (
            r#"{"StringLike":{"iot:ClientId":"${iot:Connection.Thing.ThingName}*"}}"#,
            |c| c.client_id = Some("thing1-a".into()),
            true,
        ),
        (
            r#"{"StringLike":{"iot:ClientId":"x*"}}"#,
            |c| c.client_id = None,
            false,
        ),
        (r#"{"StringNotLike":{"iot:ClientId":"x*"}}"#, none, true),
        (
            r#"{"StringNotLike":{"iot:ClientId":["x*","d*"]}}"#,
            none,
            false,
        ),
        (
            r#"{"StringNotLike":{"iot:ClientId":"x*"}}"#,
            |c| c.client_id = None,
            true,
        ),
        (
            r#"{"StringLikeIfExists":{"iot:ClientId":"x*"}}"#,
            |c| c.client_id = None,
            true,
        ),
        (
            r#"{"StringLikeIfExists":{"iot:ClientId":"x*"}}"#,
            none,
            false,
        ),
        (
            r#"{"StringEqualsIfExists":{"iot:ClientId":"dev1"}}"#,
            none,
            true,
        ),
        (
            r#"{"StringEquals":{"iot:Connection.Thing.ThingName":"thing1"}}"#,
            none,
            true,
        ),
        (
            r#"{"StringEquals":{"iot:Connection.Thing.ThingName":"thing1"}}"#,
            no_thing,
            false,
        ),
        (
            r#"{"StringEquals":{"iot:Connection.Thing.Attributes[room]":"kitchen"}}"#,
            none,
            true,
        ),
        (
            r#"{"StringEquals":{"iot:Certificate.Subject.CommonName":"cn1"}}"#,
            none,
            true,
        ),
        (
            r#"{"StringEquals":{"cognito-identity.amazonaws.com:sub":"us-east-1:abcd"}}"#,
            none,
            true,
        ),
        (r#"{"StringEquals":{"some:UnknownKey":"x"}}"#, none, false),
        (r#"{"StringNotEquals":{"some:UnknownKey":"x"}}"#, none, true),
        (r#"{"ArnLike":{"iot:ClientId":"d*"}}"#, none, true),
        // IP addresses.
        (r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#, none, true),
        (r#"{"IpAddress":{"aws:SourceIp":"10.1.2.3"}}"#, none, true),
        (
            r#"{"IpAddress":{"aws:SourceIp":"10.1.2.4/32"}}"#,
            none,
            false,
        ),
        (r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#, none, true),
        (
            r#"{"IpAddress":{"aws:SourceIp":["192.168.0.0/16","10.1.0.0/16"]}}"#,
            none,
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"192.168.0.0/16"}}"#,
            none,
            false,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#,
            none,
            false,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#,
            |c| c.source_ip = Some("2001:db8:1::5".parse().unwrap()),
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#,
            |c| c.source_ip = Some("2001:db9::5".parse().unwrap()),
            false,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"::/0"}}"#,
            |c| c.source_ip = Some("::1".parse().unwrap()),
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            |c| c.source_ip = Some("::ffff:10.9.9.9".parse().unwrap()),
            true,
        ),
        (
            r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            no_ip,
            false,
        ),
        (
            r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            none,
            false,
        ),
        (
            r#"{"NotIpAddress":{"aws:SourceIp":"192.168.0.0/16"}}"#,
            none,
            true,
        ),
        (
            r#"{"NotIpAddress":{"aws:SourceIp":"192.168.0.0/16"}}"#,
            no_ip,
            true,
        ),
        (
            r#"{"IpAddressIfExists":{"aws:SourceIp":"192.168.0.0/16"}}"#,
            no_ip,
            true,
        ),
        (
            r#"{"StringEquals":{"aws:SourceIp":"10.1.2.3"}}"#,
            none,
            true,
        ),
        // Bool and Null.
        (
            r#"{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}"#,
            none,
            true,
        ),
        (
            r#"{"Bool":{"iot:Connection.Thing.IsAttached":true}}"#,
            none,
            true,
        ),
        (
            r#"{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}"#,
            no_thing,
            false,
        ),
        (
            r#"{"Bool":{"iot:Connection.Thing.IsAttached":"false"}}"#,
            no_thing,
            true,
        ),
        (r#"{"Bool":{"aws:SecureTransport":"true"}}"#, none, false),
        (
            r#"{"Null":{"iot:Connection.Thing.ThingName":"true"}}"#,
            no_thing,
            true,
        ),
        (
            r#"{"Null":{"iot:Connection.Thing.ThingName":"true"}}"#,
            none,
            false,
        ),
        (
            r#"{"Null":{"iot:Connection.Thing.ThingName":"false"}}"#,
            none,
            true,
        ),
        (
            r#"{"Null":{"iot:Connection.Thing.ThingName":false}}"#,
            no_thing,
            false,
        ),
        (
            r#"{"Null":{"iot:ConnectAttributes":"true"}}"#,
            no_attrs,
            true,
        ),
        // Connect attributes and set operators.
        (
            r#"{"ForAnyValue:StringEquals":{"iot:ConnectAttributes":["PersistentConnect"]}}"#,
            none,
            true,
        ),
        (
            r#"{"ForAnyValue:StringEquals":{"iot:ConnectAttributes":["LastWill"]}}"#,
            none,
            false,
        ),
        (
            r#"{"ForAnyValue:StringEquals":{"iot:ConnectAttributes":["LastWill"]}}"#,
            both_attrs,
            true,
        ),
        (
            r#"{"ForAnyValue:StringEquals":{"iot:ConnectAttributes":"LastWill"}}"#,
            no_attrs,
            false,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"iot:ConnectAttributes":["PersistentConnect"]}}"#,
            none,
            true,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"iot:ConnectAttributes":["PersistentConnect"]}}"#,
            both_attrs,
            false,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"iot:ConnectAttributes":["PersistentConnect","LastWill"]}}"#,
            both_attrs,
            true,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"iot:ConnectAttributes":["LastWill"]}}"#,
            no_attrs,
            true,
        ),
        (
            r#"{"ForAllValues:StringNotEquals":{"iot:ConnectAttributes":["LastWill"]}}"#,
            none,
            true,
        ),
        (
            r#"{"ForAllValues:StringNotEquals":{"iot:ConnectAttributes":["LastWill"]}}"#,
            both_attrs,
            false,
        ),
        (
            r#"{"ForAnyValue:StringNotEquals":{"iot:ConnectAttributes":["LastWill"]}}"#,
            both_attrs,
            true,
        ),
        (
            r#"{"ForAnyValue:StringLike":{"iot:ConnectAttributes":"Last*"}}"#,
            both_attrs,
            true,
        ),
        (
            r#"{"StringEquals":{"iot:ConnectAttributes":"LastWill"}}"#,
            both_attrs,
            true,
        ),
        (
            r#"{"ForAnyValue:StringEquals":{"iot:ClientId":"dev1"}}"#,
            none,
            true,
        ),
        (
            r#"{"ForAllValues:StringEquals":{"iot:ClientId":"x"}}"#,
            none,
            false,
        ),
        // AND across keys and operators, OR across values.
        (
            r#"{"StringEquals":{"iot:ClientId":"dev1","iot:Connection.Thing.ThingName":"thing1"}}"#,
            none,
            true,
        ),
        (
            r#"{"StringEquals":{"iot:ClientId":"dev1","iot:Connection.Thing.ThingName":"other"}}"#,
            none,
            false,
        ),
        (
            r#"{"StringEquals":{"iot:ClientId":"dev1"},"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#,
            none,
            true,
        ),
        (
            r#"{"StringEquals":{"iot:ClientId":"dev1"},"IpAddress":{"aws:SourceIp":"11.0.0.0/8"}}"#,
            none,
            false,
        ),
        (r#"{}"#, none, true),
    ];
    for &(condition, edit, expected) in table {
        let mut c = cx();
        edit(&mut c);
        let p = allow("iot:Connect", "*", Some(condition));
        let d = evaluate(&[p], Action::Connect, &arn("client/dev1"), &c);
        assert_eq!(d.is_allowed(), expected, "{condition}: {}", d.reason);
    }
}

#[test]
fn condition_unresolved_deny_does_not_deny() {
    let mut c = cx();
    c.facts_mut().thing_name = None;
    let p = policy(
        "p",
        r#"{"Effect":"Allow","Action":"iot:Connect","Resource":"*"},
           {"Effect":"Deny","Action":"iot:Connect","Resource":"*","Condition":{"StringNotEquals":{"iot:ClientId":"${iot:Connection.Thing.ThingName}"}}}"#,
    );
    assert_eq!(
        decide(
            std::slice::from_ref(&p),
            Action::Connect,
            &arn("client/dev1"),
            &c
        ),
        Allowed
    );
    assert_eq!(
        decide(&[p], Action::Connect, &arn("client/dev1"), &cx()),
        ExplicitDeny
    );
}

#[test]
fn seed_policy() {
    let seed = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iot:Connect"],"Resource":["arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}"]},{"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":["arn:aws:iot:us-east-1:123456789012:topic/sensors/${iot:ClientId}/*"]},{"Effect":"Allow","Action":["iot:Subscribe"],"Resource":["arn:aws:iot:us-east-1:123456789012:topicfilter/sensors/*"]}]}"#;
    let p = [Arc::new(Policy::parse("seed", seed).unwrap())];
    assert_eq!(p[0].name(), "seed");
    assert_eq!(p[0].statement_count(), 3);
    let c = cx();
    let r = |kind, name| resource_arn("us-east-1", "123456789012", kind, name);
    use Action::*;
    use ResourceKind::*;
    let table = [
        (Connect, r(Client, "dev1"), Allowed),
        (Connect, r(Client, "dev2"), ImplicitDeny),
        (
            Connect,
            resource_arn("eu-west-1", "123456789012", Client, "dev1"),
            ImplicitDeny,
        ),
        (Publish, r(Topic, "sensors/dev1/temp"), Allowed),
        (Publish, r(Topic, "sensors/dev1/a/b"), Allowed),
        (Receive, r(Topic, "sensors/dev1/temp"), Allowed),
        (Publish, r(Topic, "sensors/dev1"), ImplicitDeny),
        (Publish, r(Topic, "sensors/dev2/temp"), ImplicitDeny),
        (RetainPublish, r(Topic, "sensors/dev1/temp"), ImplicitDeny),
        (Subscribe, r(TopicFilter, "sensors/+/temp"), Allowed),
        (Subscribe, r(TopicFilter, "sensors/#"), Allowed),
        (Subscribe, r(TopicFilter, "other/#"), ImplicitDeny),
        (Subscribe, r(Topic, "sensors/x"), ImplicitDeny),
    ];
    for (action, resource, expected) in table {
        assert_eq!(
            decide(&p, action, &resource, &c),
            expected,
            "{action} {resource}"
        );
    }
    let mut anon = cx();
    anon.client_id = None;
    let d = evaluate(&p, Connect, &r(Client, "dev1"), &anon);
    assert!(
        d.reason.contains("${iot:ClientId} unresolved"),
        "{}",
        d.reason
    );
}

#[test]
fn resource_arns() {
    assert_eq!(
        resource_arn("us-east-1", "123", ResourceKind::Topic, "a/b"),
        "arn:aws:iot:us-east-1:123:topic/a/b"
    );
    assert_eq!(
        resource_arn("r", "1", ResourceKind::Client, "c"),
        "arn:aws:iot:r:1:client/c"
    );
    assert_eq!(
        resource_arn("r", "1", ResourceKind::TopicFilter, "a/#"),
        "arn:aws:iot:r:1:topicfilter/a/#"
    );
    assert_eq!(
        resource_arn("r", "1", ResourceKind::Thing, "t"),
        "arn:aws:iot:r:1:thing/t"
    );
    assert_eq!(
        resource_arn("r", "1", ResourceKind::Cert, "ab"),
        "arn:aws:iot:r:1:cert/ab"
    );
}

#[test]
fn accepted_shapes() {
    for d in [
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}"#,
        r#"{"Version":"2008-10-17","Id":"x","Statement":[]}"#,
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"a","Effect":"Deny","NotAction":["iot:Publish"],"NotResource":["*"],"Condition":{"ForAnyValue:StringLikeIfExists":{"iot:ConnectAttributes":["Last*"]}}}]}"#,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":true}}}]}"#,
    ] {
        Policy::parse("ok", d).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// (document, JSON path or None, text the message must contain)
#[test]
fn rejections() {
    let st = |body: &str| doc(body);
    let table: Vec<(String, Option<&str>, &str)> = vec![
        ("{\"Version\":".into(), None, "line 1, column 11"),
        (
            "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [,]\n}".into(),
            None,
            "line 3",
        ),
        ("[]".into(), Some("(document)"), "object"),
        (
            r#"{"Version":"2012-10-18","Statement":[]}"#.into(),
            Some("Version"),
            "2012-10-17",
        ),
        (
            r#"{"Version":2012,"Statement":[]}"#.into(),
            Some("Version"),
            "2012-10-17",
        ),
        (r#"{"Statement":[]}"#.into(), Some("Version"), "required"),
        (
            r#"{"Version":"2012-10-17"}"#.into(),
            Some("Statement"),
            "required",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":"x"}"#.into(),
            Some("Statement"),
            "object",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[],"Extra":1}"#.into(),
            Some("Extra"),
            "unknown top-level key",
        ),
        (
            st(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*"},{"Effect":"Permit","Action":"iot:*","Resource":"*"}"#,
            ),
            Some("Statement[1].Effect"),
            "\"Permit\"",
        ),
        (
            st(r#"{"Action":"iot:*","Resource":"*"}"#),
            Some("Statement[0].Effect"),
            "required",
        ),
        (
            st(r#"{"Effect":"allow","Action":"iot:*","Resource":"*"}"#),
            Some("Statement[0].Effect"),
            "Allow",
        ),
        (
            st(r#"{"Effect":"Allow","Action":"iot:*"}"#),
            Some("Statement[0]"),
            "Resource",
        ),
        (
            st(r#"{"Effect":"Allow","Resource":"*"}"#),
            Some("Statement[0]"),
            "Action",
        ),
        (
            st(r#"{"Effect":"Allow","Action":"iot:*","NotAction":"iot:Publish","Resource":"*"}"#),
            Some("Statement[0]"),
            "both Action and NotAction",
        ),
        (
            st(r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","NotResource":"*"}"#),
            Some("Statement[0]"),
            "both Resource and NotResource",
        ),
        (
            st(r#"{"Effect":"Allow","Action":[],"Resource":"*"}"#),
            Some("Statement[0].Action"),
            "empty",
        ),
        (
            st(r#"{"Effect":"Allow","Action":"iot:*","Resource":[]}"#),
            Some("Statement[0].Resource"),
            "empty",
        ),
        (
            st(r#"{"Effect":"Allow","Action":["iot:*",3],"Resource":"*"}"#),
            Some("Statement[0].Action[1]"),
            "string",
        ),
        (
            st(r#"{"Effect":"Allow","Action":"Publish","Resource":"*"}"#),
            Some("Statement[0].Action"),
            "service:action",
        ),
        (
            st(r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Principal":"*"}"#),
            Some("Statement[0].Principal"),
            "no principal",
        ),
        (
            st(r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Bogus":1}"#),
            Some("Statement[0].Bogus"),
            "unknown statement key",
        ),
        (
            st(r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Sid":1}"#),
            Some("Statement[0].Sid"),
            "string",
        ),
        (
            st(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"StringSorta":{"iot:ClientId":"x"}}}"#,
            ),
            Some("Statement[0].Condition.StringSorta"),
            "unknown condition operator",
        ),
        (
            st(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"NumericLessThan":{"x":"1"}}}"#,
            ),
            Some("Statement[0].Condition.NumericLessThan"),
            "not supported",
        ),
        (
            st(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}}"#,
            ),
            Some("Statement[0].Condition.IpAddress.aws:SourceIp"),
            "CIDR",
        ),
        (
            st(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":["1.2.3.4","x"]}}}"#,
            ),
            Some("Statement[0].Condition.IpAddress.aws:SourceIp[1]"),
            "CIDR",
        ),
        (
            st(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"Bool":{"k":"yes"}}}"#,
            ),
            Some("Statement[0].Condition.Bool.k"),
            "true",
        ),
        (
            st(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"NullIfExists":{"k":"true"}}}"#,
            ),
            Some("Statement[0].Condition.NullIfExists"),
            "Null",
        ),
        (
            st(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"StringEquals":{"k":[]}}}"#,
            ),
            Some("Statement[0].Condition.StringEquals.k"),
            "empty",
        ),
        (
            st(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"StringEquals":"x"}}"#,
            ),
            Some("Statement[0].Condition.StringEquals"),
            "object",
        ),
        (
            st(r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":[]}"#),
            Some("Statement[0].Condition"),
            "object",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"iot:*"}}"#.into(),
            Some("Statement"),
            "Resource",
        ),
    ];
    for (d, path, text) in table {
        let err = Policy::parse("bad", &d).expect_err(&d);
        let msg = err.to_string();
        assert!(msg.starts_with("policy \"bad\": "), "{msg}");
        assert!(msg.contains(text), "{d}\n→ {msg}");
        match (&err, path) {
            (PolicyError::Invalid { path: got, .. }, Some(want)) => assert_eq!(got, want, "{msg}"),
            (PolicyError::Json { .. }, None) => {}
            _ => panic!("unexpected error kind for {d}: {err:?}"),
        }
    }
}

#[test]
fn length_limit_ignores_whitespace() {
    let resource = |n: usize| format!("arn:aws:iot:us-east-1:123456789012:topic/{}", "a".repeat(n));
    let base = doc(&format!(
        r#"{{"Effect":"Allow","Action":"iot:*","Resource":"{}"}}"#,
        resource(0)
    ));
    let room = MAX_POLICY_CHARS - base.len();
    let exact = doc(&format!(
        r#"{{"Effect":"Allow","Action":"iot:*","Resource":"{}"}}"#,
        resource(room)
    ));
    assert_eq!(exact.len(), MAX_POLICY_CHARS);
    Policy::parse("p", &exact).unwrap();
    // Whitespace does not count.
    let spaced = exact.replace(',', " ,\n\t ");
    Policy::parse("p", &spaced).unwrap();
    let over = doc(&format!(
        r#"{{"Effect":"Allow","Action":"iot:*","Resource":"{}"}}"#,
        resource(room + 1)
    ));
    let err = Policy::parse("p", &over).unwrap_err();
    assert_eq!(
        err,
        PolicyError::TooLong {
            policy: "p".into(),
            length: 2049,
            max: 2048
        }
    );
    assert!(err.to_string().contains("2049 characters"), "{err}");
}

fn arb_context() -> impl Strategy<Value = RequestContext> {
    (
        proptest::option::of("[a-z0-9*?/+#$]{0,8}"),
        proptest::option::of("[a-z0-9]{1,8}"),
        proptest::option::of(any::<[u8; 4]>()),
        prop::collection::vec(
            prop::sample::select(vec!["PersistentConnect", "LastWill", "CleanSession"]),
            0..3,
        ),
    )
        .prop_map(|(client_id, thing_name, ip, attrs)| RequestContext {
            client_id,
            principal: Some(Box::new(PrincipalFacts {
                thing_name,
                ..PrincipalFacts::default()
            })),
            source_ip: ip.map(std::net::IpAddr::from),
            connect_attributes: attrs.into_iter().map(String::from).collect(),
        })
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop::sample::select(Action::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn allow_all_allows_everything(
        action in arb_action(),
        resource in "\\PC{0,40}",
        c in arb_context(),
    ) {
        let p = allow("iot:*", "*", None);
        prop_assert_eq!(decide(std::slice::from_ref(&p), action, &resource, &c), Allowed);
        // A matching Deny (same resource, exact or by the request's own ARN) wins.
        let deny = policy("d", &format!(
            r#"{{"Effect":"Deny","Action":"{}","Resource":"{}"}}"#,
            action.as_str(),
            resource.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "${$}").replace('*', "${*}").replace('?', "${?}"),
        ));
        prop_assert_eq!(decide(&[p.clone(), deny.clone()], action, &resource, &c), ExplicitDeny);
        prop_assert_eq!(decide(&[deny, p], action, &resource, &c), ExplicitDeny);
    }

    #[test]
    fn decide_agrees_with_evaluate(
        topic in "[a-z]{1,3}(/[a-z*?]{1,3}){0,3}",
        client in "[a-z*]{1,4}",
    ) {
        let policies = vec![Arc::new(Policy::parse("p", r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:r:1:topic/${iot:ClientId}/*"},
            {"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:r:1:topic/*/x*"},
            {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:r:1:topic/${iot:Connection.Thing.ThingName}"}]}"#).unwrap())];
        let cx = RequestContext { client_id: Some(client), ..RequestContext::default() };
        let resource = format!("arn:aws:iot:r:1:topic/{topic}");
        prop_assert_eq!(
            decide(&policies, Action::Publish, &resource, &cx),
            evaluate(&policies, Action::Publish, &resource, &cx).decision
        );
    }

    #[test]
    fn order_independent(
        statements in prop::collection::vec((any::<bool>(), 0..4usize, 0..6usize), 1..6),
        action in arb_action(),
        topic in "[a-z0-9]{1,3}(/[a-z0-9]{1,3}){0,2}",
        c in arb_context(),
        rotate in 0..6usize,
    ) {
        let actions = ["iot:*", "iot:Publish", "iot:Sub*", "iot:?onnect"];
        let resources = [
            "*",
            "arn:aws:iot:*:*:topic/${iot:ClientId}",
            "arn:aws:iot:*:*:topic/a*",
            "arn:aws:iot:us-east-1:123456789012:topic/?/*",
            "arn:aws:iot:*:*:topic/${iot:Connection.Thing.ThingName}/*",
            "arn:aws:iot:*:*:client/*",
        ];
        let policies: Vec<Arc<Policy>> = statements
            .iter()
            .enumerate()
            .map(|(i, &(deny, a, r))| {
                let effect = if deny { "Deny" } else { "Allow" };
                Arc::new(Policy::parse(&format!("p{i}"), &doc(&format!(
                    r#"{{"Effect":"{effect}","Action":"{}","Resource":"{}"}}"#,
                    actions[a], resources[r]
                ))).unwrap())
            })
            .collect();
        let resource = arn(&format!("topic/{topic}"));
        let expected = decide(&policies, action, &resource, &c);
        let mut rotated = policies.clone();
        rotated.rotate_left(rotate % policies.len());
        prop_assert_eq!(decide(&rotated, action, &resource, &c), expected);
        let mut reversed = policies;
        reversed.reverse();
        prop_assert_eq!(decide(&reversed, action, &resource, &c), expected);
    }

    #[test]
    fn wildcard_agrees_with_reference(pattern in "[ab*?]{0,8}", text in "[ab]{0,8}") {
        prop_assert_eq!(pattern::wildcard_match(&pattern, &text, false), reference(pattern.as_bytes(), text.as_bytes()));
    }

    /// Patterns with a variable (`V` stands for `${iot:ClientId}`) match like the pattern
    /// with the value written in, for values without wildcard characters.
    #[test]
    fn variables_agree_with_reference(
        pattern in "[abV*?]{0,8}",
        client in "[ab]{0,3}",
        text in "[ab]{0,8}",
    ) {
        let cx = RequestContext { client_id: Some(client.clone()), ..RequestContext::default() };
        let compiled = pattern::Pattern::compile(&pattern.replace('V', "${iot:ClientId}"), true, true);
        let substituted = pattern.replace('V', &client);
        prop_assert_eq!(
            compiled.matches(&text, &pattern::Resolver::new(&cx), false),
            Ok(reference(substituted.as_bytes(), text.as_bytes()))
        );
    }
}

/// Exponential-time recursive glob, obviously right.
fn reference(p: &[u8], t: &[u8]) -> bool {
    match (p.first(), t.first()) {
        (None, _) => t.is_empty(),
        (Some(b'*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
        (Some(b'?'), Some(_)) => reference(&p[1..], &t[1..]),
        (Some(a), Some(b)) => a == b && reference(&p[1..], &t[1..]),
        (Some(_), None) => false,
    }
}
