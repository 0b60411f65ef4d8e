//! Custom authorizers: create, describe, list, update, delete, set-default, test-invoke.

use crate::clock::unix_millis;

use super::*;

pub(super) async fn route(
    broker: &Plane<'_>,
    request @ &ApiRequest { method, body, .. }: &ApiRequest<'_>,
    parts: &[&str],
) -> ApiResult {
    match (method, parts) {
        ("POST", ["authorizer", name]) => {
            let body = json_body(body)?;
            if broker.authorizers.exists(name) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "ResourceAlreadyExistsException",
                    format!("authorizer {name} already exists"),
                ));
            }
            let now = unix_millis() / 1000;
            let record = AuthorizerRecord {
                authorizer_name: name.to_string(),
                authorizer_function_arn: string_field(&body, "authorizerFunctionArn")?,
                token_key_name: body["tokenKeyName"].as_str().unwrap_or_default().to_owned(),
                token_signing_public_keys: public_keys(&body),
                status: body["status"].as_str().unwrap_or("ACTIVE").to_owned(),
                signing_disabled: body["signingDisabled"].as_bool().unwrap_or(false),
                creation_date: now,
                last_modified_date: now,
            };
            if !record.signing_disabled && record.token_signing_public_keys.is_empty() {
                return Err(ApiError::invalid(
                    "tokenSigningPublicKeys are required unless signingDisabled is true",
                ));
            }
            broker.registry.put_authorizer(record)?;
            broker.sync_registry();
            Ok(json!({"authorizerName": name, "authorizerArn": arn(broker, "authorizer", name)}))
        }
        ("GET", ["authorizer", name]) => {
            let record = broker
                .registry
                .authorizer(name)
                .ok_or_else(|| ApiError::not_found(format!("authorizer {name} does not exist")))?;
            Ok(json!({ "authorizerDescription": describe_authorizer(broker, &record) }))
        }
        ("GET", ["authorizers"]) => {
            let authorizers: Vec<Value> = broker
                .registry
                .authorizers()
                .iter()
                .map(|r| json!({"authorizerName": r.authorizer_name, "authorizerArn": arn(broker, "authorizer", &r.authorizer_name)}))
                .collect();
            Ok(json!({ "authorizers": authorizers }))
        }
        ("PUT", ["authorizer", name]) => {
            let body = json_body(body)?;
            let mut record = broker
                .registry
                .authorizer(name)
                .ok_or_else(|| ApiError::not_found(format!("authorizer {name} does not exist")))?;
            if let Some(url) = body["authorizerFunctionArn"].as_str() {
                record.authorizer_function_arn = url.to_owned();
            }
            if let Some(key) = body["tokenKeyName"].as_str() {
                record.token_key_name = key.to_owned();
            }
            if body["tokenSigningPublicKeys"].is_object() {
                record.token_signing_public_keys = public_keys(&body);
            }
            if let Some(status) = body["status"].as_str() {
                record.status = status.to_owned();
            }
            record.last_modified_date = unix_millis() / 1000;
            let inactive = !record.status.eq_ignore_ascii_case("ACTIVE");
            broker.registry.put_authorizer(record)?;
            broker.sync_registry();
            if inactive {
                let closed = broker
                    .disconnect_authorizer(name, &format!("authorizer {name} is now INACTIVE"));
                info!(authorizer = %name, closed, "authorizer deactivated; its connections are closed");
            }
            Ok(json!({"authorizerName": name, "authorizerArn": arn(broker, "authorizer", name)}))
        }
        ("DELETE", ["authorizer", name]) => {
            let record = broker
                .registry
                .authorizer(name)
                .ok_or_else(|| ApiError::not_found(format!("authorizer {name} does not exist")))?;
            if record.status.eq_ignore_ascii_case("ACTIVE") {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "DeleteConflictException",
                    format!("authorizer {name} is ACTIVE; set it INACTIVE first"),
                ));
            }
            broker.registry.delete_authorizer(name)?;
            broker.sync_registry();
            Ok(json!({}))
        }
        ("POST", ["default-authorizer"]) => {
            let body = json_body(body)?;
            let name = string_field(&body, "authorizerName")?;
            if !broker.authorizers.exists(&name) {
                return Err(ApiError::not_found(format!(
                    "authorizer {name} does not exist"
                )));
            }
            broker.registry.set_default_authorizer(&name)?;
            broker.sync_registry();
            Ok(json!({"authorizerName": name, "authorizerArn": arn(broker, "authorizer", &name)}))
        }
        ("POST", ["authorizer", name, "test"]) => {
            let body = json_body(body)?;
            let fields = iot::custom_auth::AuthorizerFields {
                user: None,
                authorizer_name: Some(name.to_string()),
                signature: body["tokenSignature"].as_str().map(str::to_owned),
                params: Vec::new(),
            };
            let token = body["token"].as_str().unwrap_or_default().to_owned();
            let mut fields = fields;
            if let Some(entry_key) = broker.registry.authorizer(name).map(|r| r.token_key_name) {
                fields.params.push((entry_key, token));
            }
            let connection_id = format!("test-invoke-{}", unix_millis());
            match broker
                .authorizers
                .authorize(
                    &fields,
                    crate::auth::custom::ConnectionFacts {
                        protocols: &["http"],
                        server_name: None,
                        http_headers: None,
                        http_query: None,
                        mqtt_username: None,
                        mqtt_password: None,
                        mqtt_client_id: None,
                        connection_id: &connection_id,
                    },
                )
                .await
            {
                Ok(identity) => Ok(json!({
                    "isAuthenticated": true,
                    "principalId": identity.principal_id,
                    "policyDocuments": identity.policy_documents,
                    "disconnectAfterInSeconds": identity.disconnect_after.as_secs(),
                    "refreshAfterInSeconds": identity.refresh_after.as_secs(),
                })),
                Err(reason) => Err(ApiError::invalid(reason)),
            }
        }
        _ => Err(unknown_operation(request)),
    }
}
