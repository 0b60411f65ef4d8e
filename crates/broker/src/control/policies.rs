//! Policies, their attachments to certificates and identities, test-authorization and describe-endpoint.

use iot::{Action, Policy, PrincipalFacts, RequestContext};

use crate::auth::test_authorization::{parse_action, test_authorization, AuthorizationQuestion};
use crate::auth::CognitoPrincipal;

use super::*;

pub(super) async fn route(
    broker: &Plane<'_>,
    request @ &ApiRequest {
        method,
        query,
        headers,
        body,
        ..
    }: &ApiRequest<'_>,
    parts: &[&str],
) -> ApiResult {
    match (method, parts) {
        ("POST", ["policies", name]) => {
            let body = json_body(body)?;
            let document = string_field(&body, "policyDocument")?;
            if broker.policies.get(name).is_some() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "ResourceAlreadyExistsException",
                    format!("policy {name} already exists"),
                ));
            }
            Policy::parse(name, &document).map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MalformedPolicyException",
                    error.to_string(),
                )
            })?;
            broker.registry.create_policy(name, &document)?;
            broker.sync_registry();
            Ok(json!({
                "policyName": name,
                "policyArn": arn(broker, "policy", name),
                "policyDocument": document,
                "policyVersionId": "1",
            }))
        }
        ("GET", ["policies", name]) => {
            let document = policy_document(broker, name)
                .ok_or_else(|| ApiError::not_found(format!("policy {name} does not exist")))?;
            let created = broker
                .registry
                .policy(name)
                .map(|r| r.creation_date)
                .unwrap_or_default();
            Ok(json!({
                "policyName": name,
                "policyArn": arn(broker, "policy", name),
                "policyDocument": document,
                "defaultVersionId": "1",
                "creationDate": created,
                "lastModifiedDate": created,
                "generationId": "1",
            }))
        }
        ("GET", ["policies"]) => {
            let mut names: Vec<String> = broker
                .config
                .policies
                .iter()
                .map(|p| p.name.clone())
                .collect();
            names.push(crate::config::DEV_ALLOW_ALL.to_owned());
            names.extend(
                broker
                    .registry
                    .policies()
                    .into_iter()
                    .map(|r| r.policy_name),
            );
            names.sort();
            names.dedup();
            let policies: Vec<Value> = names
                .iter()
                .map(|name| json!({"policyName": name, "policyArn": arn(broker, "policy", name)}))
                .collect();
            Ok(json!({ "policies": policies }))
        }
        ("DELETE", ["policies", name]) => {
            if broker.policies.is_declared_in_config(name) {
                return Err(ApiError::invalid(format!(
                    "policy {name} is declared in the broker's configuration file and cannot be deleted through the API"
                )));
            }
            broker.registry.delete_policy(name)?;
            broker.sync_registry();
            Ok(json!({}))
        }
        ("PUT", ["target-policies", policy]) => {
            let body = json_body(body)?;
            attach(broker, policy, &string_field(&body, "target")?)
        }
        ("POST", ["target-policies", policy]) => {
            let body = json_body(body)?;
            detach(broker, policy, &string_field(&body, "target")?)
        }
        ("PUT", ["principal-policies", policy]) | ("DELETE", ["principal-policies", policy]) => {
            let principal = headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("x-amzn-iot-principal"))
                .map(|(_, value)| value.to_string())
                .ok_or_else(|| ApiError::invalid("x-amzn-iot-principal header is required"))?;
            if method == "PUT" {
                attach(broker, policy, &principal)
            } else {
                detach(broker, policy, &principal)
            }
        }
        ("POST", ["attached-policies", target]) => {
            let principal = principal_of_target(target);
            let policies: Vec<Value> = broker
                .policies
                .attached(principal)
                .unwrap_or_default()
                .iter()
                .map(|name| json!({"policyName": name, "policyArn": arn(broker, "policy", name)}))
                .collect();
            Ok(json!({ "policies": policies }))
        }
        ("POST", ["policy-targets", policy]) => {
            require_policy(broker, policy)?;
            let targets: Vec<String> = broker
                .policies
                .targets_of(policy)
                .iter()
                .map(|principal| target_of_principal(broker, principal))
                .collect();
            Ok(json!({ "targets": targets }))
        }
        ("POST", ["test-authorization"]) => {
            let body = json_body(body)?;
            let principal = principal_of_target(&string_field(&body, "principal")?).to_owned();
            let add: Vec<String> = body["policyNamesToAdd"]
                .as_array()
                .map(|names| {
                    names
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let mut context = RequestContext {
                client_id: query_param(query, "clientId")
                    .or_else(|| body["clientId"].as_str().map(str::to_owned)),
                principal: principal.contains(':').then(|| {
                    Box::new(PrincipalFacts {
                        cognito_identity_id: Some(principal.clone()),
                        ..PrincipalFacts::default()
                    })
                }),
                ..RequestContext::default()
            };
            broker.policies.resolve_thing(&mut context, &principal);
            // A Cognito identity id (or a principal asked about with AWS's
            // cognitoIdentityPoolId): IoT Core's rule for Cognito identities decides.
            let pool_id = broker.registry.identity(&principal).or_else(|| {
                query_param(query, "cognitoIdentityPoolId")
                    .or_else(|| body["cognitoIdentityPoolId"].as_str().map(str::to_owned))
            });
            let cognito = pool_id.map(|pool_id| CognitoPrincipal {
                pool_id,
                authenticated: broker.registry.is_authenticated_identity(&principal),
            });
            let mut results = Vec::new();
            for info in body["authInfos"].as_array().cloned().unwrap_or_default() {
                let action_text = info["actionType"].as_str().unwrap_or_default();
                let action: Action = parse_action(action_text).ok_or_else(|| {
                    ApiError::invalid(format!("unknown actionType {action_text:?}"))
                })?;
                let resources: Vec<String> = info["resources"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                // A registered certificate or a Cognito identity with nothing attached is
                // known: IMPLICIT_DENY.
                let known = broker.registry.describe(&principal).is_ok() || cognito.is_some();
                let answer = test_authorization(
                    &broker.policies,
                    &broker.config,
                    &AuthorizationQuestion {
                        principal: &principal,
                        known_principal: known,
                        policy_names_to_add: &add,
                        context: &context,
                        action,
                        resources: &resources,
                        cognito: cognito.as_ref(),
                    },
                )
                .map_err(|error| ApiError::not_found(error.to_string()))?;
                results.extend(
                    answer["authResults"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            Ok(json!({ "authResults": results }))
        }
        ("GET", ["endpoint"]) => Ok(json!({ "endpointAddress": broker.config.endpoint })),
        _ => Err(unknown_operation(request)),
    }
}
