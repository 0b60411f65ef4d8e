//! Uncached cost of one authorization decision: every iteration evaluates a different topic
//! (10,000 distinct ones, cycled), so nothing a caller might cache helps.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use iot::{
    decide, evaluate, resource_arn, Action, Policy, PrincipalFacts, RequestContext, ResourceKind,
};

const TOPICS: usize = 10_000;
const ARN: &str = "arn:aws:iot:us-east-1:123456789012";

fn context() -> RequestContext {
    RequestContext {
        client_id: Some("dev1".into()),
        principal: Some(Box::new(PrincipalFacts {
            thing_name: Some("dev1".into()),
            thing_attributes: [("fleet".to_string(), "f1".to_string())].into(),
            certificate_subject: [("CommonName".to_string(), "dev1".to_string())].into(),
            ..PrincipalFacts::default()
        })),
        source_ip: Some("10.1.2.3".parse().unwrap()),
        ..RequestContext::default()
    }
}

fn ten_statements() -> String {
    let s = |effect: &str, actions: &str, resource: &str, extra: &str| {
        format!(
            r#"{{"Effect":"{effect}","Action":[{actions}],"Resource":"{ARN}:{resource}"{extra}}}"#
        )
    };
    let statements = [
        s("Allow", r#""iot:Connect""#, "client/${iot:ClientId}", ""),
        s("Allow", r#""iot:Publish","iot:Receive""#, "topic/sensors/${iot:ClientId}/*", ""),
        s("Allow", r#""iot:Subscribe""#, "topicfilter/sensors/${iot:ClientId}/*", ""),
        s("Allow", r#""iot:Publish""#, "topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*", ""),
        s("Allow", r#""iot:Receive""#, "topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*", ""),
        s("Allow", r#""iot:Subscribe""#, "topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*", ""),
        s("Allow", r#""iot:Publish""#, "topic/fleet/${iot:Connection.Thing.Attributes[fleet]}/*", ""),
        s(
            "Deny",
            r#""iot:Publish""#,
            "topic/sensors/${iot:ClientId}/private/*",
            r#","Condition":{"StringNotEquals":{"iot:Certificate.Subject.CommonName":"${iot:ClientId}"}}"#,
        ),
        s("Allow", r#""iot:Pub*""#, "topic/cn/${iot:Certificate.Subject.CommonName}/?", ""),
        s("Deny", r#""iot:*""#, "topic/admin/*", r#","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#),
    ]
    .join(",");
    format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#)
}

fn topics() -> Vec<String> {
    (0..TOPICS)
        .map(|i| {
            let name = match i % 5 {
                0 => format!("sensors/dev1/t{i}"),
                1 => format!("fleet/f1/m{i}"),
                2 => format!("other/x{i}"),
                3 => format!("sensors/dev1/private/p{i}"),
                _ => format!("$aws/things/dev1/shadow/u{i}"),
            };
            resource_arn("us-east-1", "123456789012", ResourceKind::Topic, &name)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let cx = context();
    let topics = topics();
    let allow_all = vec![Arc::new(
        Policy::parse(
            "allowAll",
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}"#,
        )
        .unwrap(),
    )];
    let ten = vec![Arc::new(Policy::parse("ten", &ten_statements()).unwrap())];

    let allowed = topics
        .iter()
        .filter(|t| evaluate(&ten, Action::Publish, t, &cx).is_allowed())
        .count();
    eprintln!("ten_statements: {allowed} of {TOPICS} topics allowed");

    let mut group = c.benchmark_group("policy_decision");
    for (name, policies) in [
        ("allow_all", &allow_all),
        ("ten_statements_with_variables", &ten),
    ] {
        group.bench_function(format!("{name}/evaluate_with_reason"), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % TOPICS;
                black_box(evaluate(
                    policies,
                    Action::Publish,
                    black_box(&topics[i]),
                    &cx,
                ))
            })
        });
        group.bench_function(format!("{name}/decide"), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % TOPICS;
                black_box(decide(
                    policies,
                    Action::Publish,
                    black_box(&topics[i]),
                    &cx,
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
