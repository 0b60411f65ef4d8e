//! Cognito Identity emulation: identity pools, identity ids, and temporary credentials
//! that the SigV4 WebSocket verifier accepts for their identity — so the seed's app flow
//! (`getIdentityId()`, credentials, `attach-principal-policy`, connect over WebSocket) runs
//! on one machine. AWS's JSON 1.1 protocol (`X-Amz-Target:
//! AWSCognitoIdentityService.<Operation>`) on the control-plane listener.
//!
//! Unauthenticated identities only: a developer-authenticated provider is not emulated.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::auth::IdentityPlane;
use crate::registry::IdentityPoolRecord;
use crate::secrets::uuid_shaped;

/// A Cognito-shaped error: `__type` and `message`, HTTP 400 (or as given).
pub struct CognitoError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

fn error(kind: &'static str, message: impl Into<String>) -> CognitoError {
    CognitoError {
        status: 400,
        kind,
        message: message.into(),
    }
}

/// Operations AWS serves without a signature.
pub fn is_unsigned_operation(operation: &str) -> bool {
    matches!(
        operation,
        "GetId" | "GetCredentialsForIdentity" | "GetOpenIdToken"
    )
}

fn epoch_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn describe(pool: &IdentityPoolRecord) -> Value {
    json!({
        "IdentityPoolId": pool.identity_pool_id,
        "IdentityPoolName": pool.identity_pool_name,
        "AllowUnauthenticatedIdentities": pool.allow_unauthenticated,
        "AllowClassicFlow": false,
    })
}

/// Answers one Cognito Identity operation.
pub(crate) fn answer(
    broker: &IdentityPlane,
    operation: &str,
    body: &Value,
) -> Result<Value, CognitoError> {
    let field = |name: &str| {
        body[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| error("InvalidParameterException", format!("{name} is required")))
    };
    let pool_of = |id: &str| {
        broker.registry.identity_pool(id).ok_or_else(|| {
            error(
                "ResourceNotFoundException",
                format!("IdentityPool '{id}' not found."),
            )
        })
    };
    let identity_pool_of = |identity_id: &str| {
        broker
            .registry
            .identity(identity_id)
            .and_then(|pool_id| broker.registry.identity_pool(&pool_id))
            .ok_or_else(|| {
                error(
                    "ResourceNotFoundException",
                    format!("Identity '{identity_id}' not found."),
                )
            })
    };
    let has_logins = body["Logins"]
        .as_object()
        .is_some_and(|logins| !logins.is_empty());
    match operation {
        "CreateIdentityPool" => {
            let name = field("IdentityPoolName")?;
            let record = IdentityPoolRecord {
                identity_pool_id: format!("{}:{}", broker.config.region, uuid_shaped()),
                identity_pool_name: name,
                allow_unauthenticated: body["AllowUnauthenticatedIdentities"]
                    .as_bool()
                    .unwrap_or(false),
                credentials_ttl_secs: 3600,
            };
            broker
                .registry
                .ensure_identity_pool(record.clone())
                .map_err(|e| error("InternalErrorException", e.to_string()))?;
            Ok(describe(&record))
        }
        "DescribeIdentityPool" => Ok(describe(&pool_of(&field("IdentityPoolId")?)?)),
        "ListIdentityPools" => {
            let all = broker.registry.identity_pools();
            let start: usize = body["NextToken"]
                .as_str()
                .and_then(|token| token.parse().ok())
                .unwrap_or(0);
            let max = body["MaxResults"].as_u64().unwrap_or(60).clamp(1, 60) as usize;
            let pools: Vec<Value> = all
                .iter()
                .skip(start)
                .take(max)
                .map(|pool| {
                    json!({"IdentityPoolId": pool.identity_pool_id, "IdentityPoolName": pool.identity_pool_name})
                })
                .collect();
            let mut answer = json!({ "IdentityPools": pools });
            if start + max < all.len() {
                answer["NextToken"] = json!((start + max).to_string());
            }
            Ok(answer)
        }
        "GetId" => {
            let pool = pool_of(&field("IdentityPoolId")?)?;
            if has_logins {
                return Err(error(
                    "NotAuthorizedException",
                    "authenticated identities (Logins) are not emulated; use unauthenticated identities",
                ));
            }
            if !pool.allow_unauthenticated {
                return Err(error(
                    "NotAuthorizedException",
                    "Unauthenticated access is not supported for this identity pool.",
                ));
            }
            let identity_id = format!("{}:{}", broker.config.region, uuid_shaped());
            broker
                .registry
                .add_identity(&identity_id, &pool.identity_pool_id)
                .map_err(|e| error("InternalErrorException", e.to_string()))?;
            Ok(json!({ "IdentityId": identity_id }))
        }
        "GetCredentialsForIdentity" => {
            let identity_id = field("IdentityId")?;
            let pool = identity_pool_of(&identity_id)?;
            let ttl = Duration::from_secs(pool.credentials_ttl_secs);
            let (access_key_id, credential) = broker.temporary_credentials.issue(&identity_id, ttl);
            tracing::info!(identity_id = %identity_id, access_key_id = %access_key_id, ttl = ?ttl, "temporary credentials issued");
            Ok(json!({
                "IdentityId": identity_id,
                "Credentials": {
                    "AccessKeyId": access_key_id,
                    "SecretKey": credential.secret_access_key,
                    "SessionToken": credential.session_token,
                    "Expiration": epoch_seconds(credential.expires_at),
                }
            }))
        }
        "GetOpenIdToken" => {
            let identity_id = field("IdentityId")?;
            identity_pool_of(&identity_id)?;
            use base64::Engine;
            let encode = |value: &Value| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
            };
            let now = epoch_seconds(SystemTime::now()) as u64;
            // An unsigned token (alg "none"): it names the identity for tools that want a
            // token; nothing in this broker trusts it.
            let token = format!(
                "{}.{}.",
                encode(&json!({"alg": "none", "typ": "JWT"})),
                encode(&json!({"sub": identity_id, "aud": "pubsub", "iat": now, "exp": now + 600}))
            );
            Ok(json!({ "IdentityId": identity_id, "Token": token }))
        }
        other => Err(CognitoError {
            status: 400,
            kind: "UnknownOperationException",
            message: format!("{other} is not emulated"),
        }),
    }
}
