//! Cognito Identity emulation: identity pools, identity ids, and temporary credentials
//! that the SigV4 WebSocket verifier accepts for their identity — so the seed's app flow
//! (`getIdentityId()`, credentials, `attach-principal-policy`, connect over WebSocket) runs
//! on one machine. AWS's JSON 1.1 protocol (`X-Amz-Target:
//! AWSCognitoIdentityService.<Operation>`) on the control-plane listener.
//!
//! Guest (unauthenticated) identities, and authenticated ones: logins of a user pool, an
//! OpenID Connect provider, or a developer provider (GetOpenIdTokenForDeveloperIdentity),
//! verified by `auth::logins`. Which role decides a Cognito identity's rights, and how, is
//! `auth::roles`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use std::collections::BTreeMap;

use crate::auth::logins::Login;
use crate::auth::roles::role_name_of_arn;
use crate::auth::{CognitoPrincipal, IdentityPlane};
use crate::registry::{CognitoProviderRecord, IdentityPoolRecord, AUTHENTICATED, UNAUTHENTICATED};
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
    let mut answer = json!({
        "IdentityPoolId": pool.identity_pool_id,
        "IdentityPoolName": pool.identity_pool_name,
        "AllowUnauthenticatedIdentities": pool.allow_unauthenticated,
        "AllowClassicFlow": false,
        "CognitoIdentityProviders": pool.cognito_identity_providers.iter().map(|provider| {
            let mut entry = json!({"ProviderName": provider.provider_name, "ServerSideTokenCheck": false});
            if let Some(client_id) = &provider.client_id {
                entry["ClientId"] = json!(client_id);
            }
            entry
        }).collect::<Vec<_>>(),
        "OpenIdConnectProviderARNs": pool.open_id_connect_provider_arns,
    });
    if let Some(name) = &pool.developer_provider_name {
        answer["DeveloperProviderName"] = json!(name);
    }
    answer
}

/// CreateIdentityPool's providers: CognitoIdentityProviders, OpenIdConnectProviderARNs,
/// DeveloperProviderName.
fn providers_of(body: &Value, record: &mut IdentityPoolRecord) -> Result<(), CognitoError> {
    for provider in body["CognitoIdentityProviders"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let provider_name = provider["ProviderName"].as_str().ok_or_else(|| {
            error(
                "InvalidParameterException",
                "CognitoIdentityProviders[].ProviderName is required",
            )
        })?;
        record
            .cognito_identity_providers
            .push(CognitoProviderRecord {
                provider_name: provider_name.to_owned(),
                client_id: provider["ClientId"].as_str().map(str::to_owned),
            });
    }
    for arn in body["OpenIdConnectProviderARNs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let arn = arn
            .as_str()
            .filter(|arn| arn.contains(":oidc-provider/"))
            .ok_or_else(|| {
                error(
                "InvalidParameterException",
                "OpenIdConnectProviderARNs[] must be arn:aws:iam::<account>:oidc-provider/<issuer>",
            )
            })?;
        record.open_id_connect_provider_arns.push(arn.to_owned());
    }
    record.developer_provider_name = body["DeveloperProviderName"].as_str().map(str::to_owned);
    Ok(())
}

/// SetIdentityPoolRoles' `Roles`: `authenticated` / `unauthenticated` → the ARN of a role
/// the broker knows (`[[roles]]`, or one a config pool's role policy defines).
fn roles_of(
    broker: &IdentityPlane,
    body: &Value,
) -> Result<BTreeMap<String, String>, CognitoError> {
    let roles = body["Roles"]
        .as_object()
        .ok_or_else(|| error("InvalidParameterException", "Roles is required"))?;
    let mut chosen = BTreeMap::new();
    for (kind, arn) in roles {
        if kind != AUTHENTICATED && kind != UNAUTHENTICATED {
            return Err(error(
                "InvalidParameterException",
                format!("Roles: unknown key {kind:?} (authenticated, unauthenticated)"),
            ));
        }
        let arn = arn.as_str().unwrap_or_default();
        let name = role_name_of_arn(arn).ok_or_else(|| {
            error(
                "InvalidParameterException",
                format!("Roles.{kind}: {arn:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"),
            )
        })?;
        if !broker.policies.has_role(name) {
            return Err(error(
                "InvalidParameterException",
                format!("Roles.{kind}: role {name:?} is not declared (add it to [[roles]] with its policy)"),
            ));
        }
        chosen.insert(kind.clone(), arn.to_owned());
    }
    Ok(chosen)
}

/// GetCredentialsForIdentity's answer: temporary credentials for the pool's role of the
/// identity's kind. As in AWS, a pool without that role cannot issue them.
fn issue_credentials(
    broker: &IdentityPlane,
    pool: &IdentityPoolRecord,
    identity_id: &str,
    authenticated: bool,
) -> Result<Value, CognitoError> {
    let kind = if authenticated {
        AUTHENTICATED
    } else {
        UNAUTHENTICATED
    };
    if !pool.roles.contains_key(kind) {
        tracing::warn!(pool = %pool.identity_pool_id, identity_id, "no {kind} role: credentials refused (SetIdentityPoolRoles, or {kind}_role_policy in [[identity_pools]])");
        return Err(error(
            "InvalidIdentityPoolConfigurationException",
            "Invalid identity pool configuration. Check assigned IAM roles for this pool.",
        ));
    }
    let ttl = Duration::from_secs(pool.credentials_ttl_secs);
    let cognito = CognitoPrincipal {
        pool_id: pool.identity_pool_id.clone(),
        authenticated,
    };
    let (access_key_id, credential) = broker
        .temporary_credentials
        .issue(identity_id, cognito, ttl);
    tracing::info!(identity_id, access_key_id = %access_key_id, ttl = ?ttl, authenticated, "temporary credentials issued");
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

fn internal(e: impl std::fmt::Display) -> CognitoError {
    error("InternalErrorException", e.to_string())
}

fn unauthenticated_refused() -> CognitoError {
    error(
        "NotAuthorizedException",
        "Unauthenticated access is not supported for this identity pool.",
    )
}

fn logins_mismatch() -> CognitoError {
    error(
        "NotAuthorizedException",
        "Logins don't match. Please include at least one valid login for this identity or identity pool.",
    )
}

/// One login verified, or Cognito's refusal (logged with its reason).
fn verify(
    broker: &IdentityPlane,
    pool: &IdentityPoolRecord,
    provider: &str,
    token: &str,
) -> Result<Login, CognitoError> {
    broker.verify_login(pool, provider, token).map_err(|message| {
        tracing::warn!(pool = %pool.identity_pool_id, provider, reason = %message, "login refused");
        error("NotAuthorizedException", message)
    })
}

/// The request's `Logins`, each verified.
fn verified_logins(
    broker: &IdentityPlane,
    pool: &IdentityPoolRecord,
    body: &Value,
) -> Result<Vec<Login>, CognitoError> {
    let Some(logins) = body["Logins"].as_object() else {
        return Ok(Vec::new());
    };
    if logins.len() > 10 {
        return Err(error(
            "InvalidParameterException",
            "Logins has at most 10 entries",
        ));
    }
    logins
        .iter()
        .map(|(provider, token)| {
            let token = token.as_str().ok_or_else(|| {
                error(
                    "InvalidParameterException",
                    format!("Logins.{provider} must be a string"),
                )
            })?;
            verify(broker, pool, provider, token)
        })
        .collect()
}

/// The identity verified logins stand for: the one the broker's token names, or the one
/// the first login got before (a new one otherwise), with the other logins linked to it.
fn identity_of_logins(
    broker: &IdentityPlane,
    pool: &IdentityPoolRecord,
    logins: &[Login],
) -> Result<String, CognitoError> {
    if let Some((identity_id, _)) = logins.iter().find_map(|login| login.identity.clone()) {
        return Ok(identity_id);
    }
    let first = &logins[0];
    let new_id = format!("{}:{}", broker.config.region, uuid_shaped());
    let (identity_id, created) = broker
        .registry
        .identity_of_login(
            &pool.identity_pool_id,
            &first.provider,
            &first.subject,
            &new_id,
        )
        .map_err(internal)?;
    link(broker, pool, &logins[1..], &identity_id)?;
    tracing::info!(pool = %pool.identity_pool_id, provider = %first.provider, identity_id = %identity_id, created, "authenticated identity");
    Ok(identity_id)
}

/// Links logins to an identity; a login of another identity is a conflict.
fn link(
    broker: &IdentityPlane,
    pool: &IdentityPoolRecord,
    logins: &[Login],
    identity_id: &str,
) -> Result<(), CognitoError> {
    for login in logins.iter().filter(|login| login.identity.is_none()) {
        broker
            .registry
            .link_login(
                &pool.identity_pool_id,
                &login.provider,
                &login.subject,
                identity_id,
            )
            .map_err(|e| match e {
                crate::registry::RegistryError::AlreadyExists(_) => error(
                    "ResourceConflictException",
                    "Login already associated with a different identity.",
                ),
                other => internal(other),
            })?;
    }
    Ok(())
}

/// Whether credentials (or a token) for `identity_id` are authenticated ones: with
/// `Logins`, each must verify and be this identity's; without, the identity must be a
/// guest of a pool that allows guests.
fn identity_kind(
    broker: &IdentityPlane,
    pool: &IdentityPoolRecord,
    identity_id: &str,
    body: &Value,
) -> Result<bool, CognitoError> {
    let logins = verified_logins(broker, pool, body)?;
    if logins.is_empty() {
        if broker.registry.is_authenticated_identity(identity_id) {
            // An identity with a login gets credentials only with a login.
            return Err(logins_mismatch());
        }
        if !pool.allow_unauthenticated {
            return Err(unauthenticated_refused());
        }
        return Ok(false);
    }
    let mut authenticated = false;
    for login in &logins {
        let owner = match &login.identity {
            Some((owner, login_authenticated)) => {
                authenticated |= login_authenticated;
                Some(owner.clone())
            }
            None => {
                authenticated = true;
                broker.registry.identity_of_known_login(
                    &pool.identity_pool_id,
                    &login.provider,
                    &login.subject,
                )
            }
        };
        if owner.as_deref() != Some(identity_id) {
            tracing::warn!(identity_id, provider = %login.provider, "login refused: it is not this identity's");
            return Err(logins_mismatch());
        }
    }
    if !authenticated && !pool.allow_unauthenticated {
        return Err(unauthenticated_refused());
    }
    Ok(authenticated)
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
    match operation {
        "CreateIdentityPool" => {
            let name = field("IdentityPoolName")?;
            let mut record = IdentityPoolRecord {
                identity_pool_id: format!("{}:{}", broker.config.region, uuid_shaped()),
                identity_pool_name: name,
                allow_unauthenticated: body["AllowUnauthenticatedIdentities"]
                    .as_bool()
                    .unwrap_or(false),
                credentials_ttl_secs: 3600,
                roles: BTreeMap::new(),
                developer_provider_name: None,
                cognito_identity_providers: Vec::new(),
                open_id_connect_provider_arns: Vec::new(),
            };
            providers_of(body, &mut record)?;
            if record.developer_provider_name.is_some() {
                crate::auth::logins::prepare_open_id_key(&broker.registry);
            }
            broker
                .registry
                .ensure_identity_pool(record.clone())
                .map_err(|e| error("InternalErrorException", e.to_string()))?;
            broker.sync_registry();
            Ok(describe(&record))
        }
        "DescribeIdentityPool" => Ok(describe(&pool_of(&field("IdentityPoolId")?)?)),
        "SetIdentityPoolRoles" => {
            let pool = pool_of(&field("IdentityPoolId")?)?;
            let roles = roles_of(broker, body)?;
            broker
                .registry
                .set_identity_pool_roles(&pool.identity_pool_id, roles.clone())
                .map_err(|e| error("InternalErrorException", e.to_string()))?;
            broker.sync_registry();
            tracing::info!(pool = %pool.identity_pool_id, ?roles, "identity pool roles set");
            Ok(json!({}))
        }
        "GetIdentityPoolRoles" => {
            let pool = pool_of(&field("IdentityPoolId")?)?;
            Ok(json!({"IdentityPoolId": pool.identity_pool_id, "Roles": pool.roles}))
        }
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
            let logins = verified_logins(broker, &pool, body)?;
            if !logins.is_empty() {
                let identity_id = identity_of_logins(broker, &pool, &logins)?;
                return Ok(json!({ "IdentityId": identity_id }));
            }
            if !pool.allow_unauthenticated {
                return Err(unauthenticated_refused());
            }
            let identity_id = format!("{}:{}", broker.config.region, uuid_shaped());
            broker
                .registry
                .add_identity(&identity_id, &pool.identity_pool_id)
                .map_err(internal)?;
            Ok(json!({ "IdentityId": identity_id }))
        }
        "GetCredentialsForIdentity" => {
            let identity_id = field("IdentityId")?;
            let pool = identity_pool_of(&identity_id)?;
            let authenticated = identity_kind(broker, &pool, &identity_id, body)?;
            issue_credentials(broker, &pool, &identity_id, authenticated)
        }
        "GetOpenIdToken" => {
            let identity_id = field("IdentityId")?;
            let pool = identity_pool_of(&identity_id)?;
            let authenticated = identity_kind(broker, &pool, &identity_id, body)?;
            let amr: Vec<String> = if authenticated {
                let mut amr = vec![AUTHENTICATED.to_owned()];
                amr.extend(
                    body["Logins"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(p, _)| p.clone()),
                );
                amr
            } else {
                vec![UNAUTHENTICATED.to_owned()]
            };
            // Cognito's OpenID tokens last ten minutes.
            let token = broker
                .open_id_token(&identity_id, &pool.identity_pool_id, &amr, 600)
                .map_err(|e| error("InternalErrorException", e))?;
            Ok(json!({ "IdentityId": identity_id, "Token": token }))
        }
        "GetOpenIdTokenForDeveloperIdentity" => {
            let pool = pool_of(&field("IdentityPoolId")?)?;
            let Some(developer) = pool.developer_provider_name.clone() else {
                return Err(error(
                    "NotAuthorizedException",
                    "This identity pool has no developer provider (DeveloperProviderName).",
                ));
            };
            let duration = body["TokenDuration"].as_u64().unwrap_or(900);
            if !(1..=86_400).contains(&duration) {
                return Err(error(
                    "InvalidParameterException",
                    "TokenDuration must be between 1 and 86400 seconds.",
                ));
            }
            let Some(given) = body["Logins"]
                .as_object()
                .filter(|logins| !logins.is_empty())
            else {
                return Err(error("InvalidParameterException", "Logins is required"));
            };
            let mut logins = Vec::new();
            let mut user = None;
            for (provider, value) in given {
                let value = value.as_str().ok_or_else(|| {
                    error(
                        "InvalidParameterException",
                        format!("Logins.{provider} must be a string"),
                    )
                })?;
                if *provider == developer {
                    user = Some(value.to_owned());
                    logins.push(Login {
                        provider: provider.clone(),
                        subject: value.to_owned(),
                        identity: None,
                    });
                } else {
                    logins.push(verify(broker, &pool, provider, value)?);
                }
            }
            let Some(user) = user else {
                return Err(error(
                    "NotAuthorizedException",
                    format!(
                        "Logins must name the identity pool's developer provider {developer:?}."
                    ),
                ));
            };
            let identity_id = match body["IdentityId"].as_str() {
                Some(identity_id) => {
                    if identity_pool_of(identity_id)?.identity_pool_id != pool.identity_pool_id {
                        return Err(error(
                            "InvalidParameterException",
                            format!(
                                "Identity '{identity_id}' is not of identity pool {}.",
                                pool.identity_pool_id
                            ),
                        ));
                    }
                    link(broker, &pool, &logins, identity_id)?;
                    identity_id.to_owned()
                }
                None => identity_of_logins(broker, &pool, &logins)?,
            };
            let amr = [
                AUTHENTICATED.to_owned(),
                developer.clone(),
                format!("{developer}:{}:{user}", pool.identity_pool_id),
            ];
            let token = broker
                .open_id_token(&identity_id, &pool.identity_pool_id, &amr, duration)
                .map_err(|e| error("InternalErrorException", e))?;
            tracing::info!(pool = %pool.identity_pool_id, developer = %developer, identity_id = %identity_id, "developer-authenticated identity token issued");
            Ok(json!({ "IdentityId": identity_id, "Token": token }))
        }
        other => Err(CognitoError {
            status: 400,
            kind: "UnknownOperationException",
            message: format!("{other} is not emulated"),
        }),
    }
}
