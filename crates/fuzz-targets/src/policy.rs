//! Any UTF-8 text must parse to a policy or a `PolicyError`, never panic, and whatever
//! parses must evaluate without panicking, whatever the request.

use std::sync::Arc;

use iot::{evaluate, resource_arn, Action, Policy, PrincipalFacts, RequestContext, ResourceKind};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = match Policy::parse("fuzz", text) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            // The message must render.
            let _ = e.to_string();
            return;
        }
    };
    let full = RequestContext {
        client_id: Some("dev*1?".into()),
        principal: Some(Box::new(PrincipalFacts {
            thing_name: Some("thing1".into()),
            thing_type_name: Some("type".into()),
            thing_attributes: [("a".to_string(), "é*".to_string())].into(),
            certificate_subject: [("CommonName".to_string(), "cn".to_string())].into(),
            certificate_issuer: [("CommonName".to_string(), "ca".to_string())].into(),
            cognito_identity_id: Some("us-east-1:x".into()),
        })),
        source_ip: Some("::ffff:10.0.0.1".parse().unwrap()),
        connect_attributes: vec!["PersistentConnect".into(), "LastWill".into()],
    };
    let empty = RequestContext::default();
    // The document's own text as a resource exercises the matcher on odd input.
    let resources = [
        resource_arn("us-east-1", "123456789012", ResourceKind::Topic, "a/b/c"),
        resource_arn("us-east-1", "123456789012", ResourceKind::Client, "dev*1?"),
        resource_arn(
            "us-east-1",
            "123456789012",
            ResourceKind::TopicFilter,
            "a/+/#",
        ),
        String::new(),
        text.to_owned(),
    ];
    let policies = [policy.clone(), policy];
    for action in Action::ALL {
        for resource in &resources {
            for cx in [&full, &empty] {
                let d = evaluate(&policies, action, resource, cx);
                assert!(!d.reason.is_empty());
                assert_eq!(
                    d.is_allowed(),
                    d.policy.is_some() && d.decision.as_str() == "ALLOWED"
                );
            }
        }
    }
}
