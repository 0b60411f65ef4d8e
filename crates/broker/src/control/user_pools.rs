//! Cognito user pools' API (`cognito-idp`): AWS's JSON 1.1 protocol (`X-Amz-Target:
//! AWSCognitoIdentityProviderService.<Operation>`), with AWS's operation names, shapes,
//! exception names and messages, so that boto3, the AWS SDKs and Amplify work against it
//! with only the endpoint changed. The pool's management and the Admin operations need the
//! `[admin]` signature; the operations an app makes for its users (SignUp, InitiateAuth,
//! GetUser, …) are unsigned, as in AWS. And the pool's JWKS, `GET
//! /<userPoolId>/.well-known/jwks.json`, unsigned.
//!
//! Sign-ins and tokens are the identity plane's (`auth::user_pools`); this file reads the
//! requests and shapes the answers.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::auth::user_pools::{
    attribute_list, idp_error, new_client_id, new_pool_id, new_signing_key, new_user, set_password,
    IdpError, SignIn,
};
use crate::auth::IdentityPlane;
use crate::registry::{
    now_secs, PasswordPolicy, RegistryError, UserPoolClientRecord, UserPoolRecord, UserRecord,
    UserStatus, DEFAULT_AUTH_FLOWS, KNOWN_AUTH_FLOWS,
};
use crate::secrets::random_alphanumeric;

/// The `X-Amz-Target` prefix of this API.
pub const TARGET_PREFIX: &str = "AWSCognitoIdentityProviderService.";

/// Operations AWS serves without a signature (an app's calls for its users).
pub fn is_unsigned_operation(operation: &str) -> bool {
    matches!(
        operation,
        "SignUp"
            | "ConfirmSignUp"
            | "InitiateAuth"
            | "RespondToAuthChallenge"
            | "GetUser"
            | "GlobalSignOut"
    )
}

/// The pool id of a JWKS request's path (`/<userPoolId>/.well-known/jwks.json`).
pub fn jwks_pool_id(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix('/')?
        .strip_suffix("/.well-known/jwks.json")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// The JWKS of a pool, or Cognito's 404 text.
pub(crate) fn jwks(plane: &IdentityPlane, pool_id: &str) -> Result<Value, IdpError> {
    let pool = plane
        .registry
        .user_pool(pool_id)
        .ok_or_else(|| pool_not_found(pool_id))?;
    plane.user_pools.jwks(&pool)
}

fn pool_not_found(id: &str) -> IdpError {
    idp_error(
        "ResourceNotFoundException",
        format!("User pool {id} does not exist."),
    )
}

fn invalid(message: impl Into<String>) -> IdpError {
    idp_error("InvalidParameterException", message)
}

fn user_not_found() -> IdpError {
    idp_error("UserNotFoundException", "User does not exist.")
}

/// A registry refusal of a change to one pool, in Cognito's words.
fn pool_change_error(pool_id: &str, error: RegistryError) -> IdpError {
    match error {
        RegistryError::NotFound(what) if what.starts_with("user pool") => pool_not_found(pool_id),
        RegistryError::NotFound(_) => user_not_found(),
        other => other.into(),
    }
}

fn string(body: &Value, name: &str) -> Result<String, IdpError> {
    match body[name].as_str() {
        Some(text) if !text.is_empty() => Ok(text.to_owned()),
        _ => Err(invalid(format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(name)
        ))),
    }
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `[{Name, Value}]` → attributes; `sub` is the pool's to give.
fn attributes_of(list: &Value) -> Result<BTreeMap<String, String>, IdpError> {
    let mut attributes = BTreeMap::new();
    for item in list.as_array().into_iter().flatten() {
        let name = item["Name"]
            .as_str()
            .ok_or_else(|| invalid("an attribute needs a Name"))?;
        if name == "sub" {
            return Err(invalid("Cannot modify an already provided sub"));
        }
        let value = item["Value"].as_str().unwrap_or_default();
        attributes.insert(name.to_owned(), value.to_owned());
    }
    Ok(attributes)
}

fn describe_pool(pool: &UserPoolRecord, account_id: &str) -> Value {
    let policy = &pool.password_policy;
    json!({
        "Id": pool.id,
        "Name": pool.name,
        "Arn": format!("arn:aws:cognito-idp:{}:{account_id}:userpool/{}", pool.region(), pool.id),
        "CreationDate": pool.creation_date,
        "LastModifiedDate": pool.last_modified_date,
        "Policies": {"PasswordPolicy": {
            "MinimumLength": policy.minimum_length,
            "RequireUppercase": policy.require_uppercase,
            "RequireLowercase": policy.require_lowercase,
            "RequireNumbers": policy.require_numbers,
            "RequireSymbols": policy.require_symbols,
            "TemporaryPasswordValidityDays": 7,
        }},
        "MfaConfiguration": "OFF",
        "EstimatedNumberOfUsers": pool.users.len(),
        "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": false},
        "UsernameConfiguration": {"CaseSensitive": true},
        "SchemaAttributes": [],
        "LambdaConfig": {},
    })
}

fn describe_client(client: &UserPoolClientRecord, pool_id: &str) -> Value {
    json!({
        "UserPoolId": pool_id,
        "ClientName": client.client_name,
        "ClientId": client.client_id,
        "CreationDate": client.creation_date,
        "LastModifiedDate": client.last_modified_date,
        "ExplicitAuthFlows": client.explicit_auth_flows,
        "AccessTokenValidity": client.access_token_validity_secs,
        "IdTokenValidity": client.id_token_validity_secs,
        "RefreshTokenValidity": client.refresh_token_validity_secs,
        "TokenValidityUnits": {"AccessToken": "seconds", "IdToken": "seconds", "RefreshToken": "seconds"},
        "PreventUserExistenceErrors": client.prevent_user_existence_errors,
        "EnableTokenRevocation": true,
        "AuthSessionValidity": 3,
    })
}

/// `Policies.PasswordPolicy` of CreateUserPool, defaults for what it leaves out.
fn password_policy_of(body: &Value) -> PasswordPolicy {
    let given = &body["Policies"]["PasswordPolicy"];
    let default = PasswordPolicy::default();
    let flag = |name: &str, default: bool| given[name].as_bool().unwrap_or(default);
    PasswordPolicy {
        minimum_length: given["MinimumLength"]
            .as_u64()
            .map_or(default.minimum_length, |n| n.clamp(6, 99) as u32),
        require_uppercase: flag("RequireUppercase", default.require_uppercase),
        require_lowercase: flag("RequireLowercase", default.require_lowercase),
        require_numbers: flag("RequireNumbers", default.require_numbers),
        require_symbols: flag("RequireSymbols", default.require_symbols),
    }
}

/// A validity of CreateUserPoolClient in seconds: the value in its `TokenValidityUnits`
/// unit (AWS's defaults: hours for access and ID tokens, days for refresh tokens).
fn validity_secs(
    body: &Value,
    field: &str,
    unit_field: &str,
    default_unit: &str,
    default: u64,
) -> Result<u64, IdpError> {
    let Some(value) = body[field].as_u64() else {
        return Ok(default);
    };
    let unit = body["TokenValidityUnits"][unit_field]
        .as_str()
        .unwrap_or(default_unit);
    let scale = match unit {
        "seconds" => 1,
        "minutes" => 60,
        "hours" => 3600,
        "days" => 86400,
        other => {
            return Err(invalid(format!(
                "unknown TokenValidityUnits value {other:?}"
            )))
        }
    };
    Ok((value * scale).max(1))
}

/// Answers one cognito-idp operation (the caller checked the signature where one is
/// needed).
pub(crate) async fn answer(
    plane: &IdentityPlane,
    operation: &str,
    body: &Value,
) -> Result<Value, IdpError> {
    let now = now_secs();
    let account = &plane.config.account_id;
    match operation {
        "CreateUserPool" => {
            let name = string(body, "PoolName")?;
            // Making an RSA key takes a while: not on the runtime's worker.
            let (signing_key_pem, kid) = tokio::task::spawn_blocking(new_signing_key)
                .await
                .map_err(|error| idp_error("InternalErrorException", error.to_string()))?;
            let record = UserPoolRecord {
                id: new_pool_id(&plane.config.region),
                name,
                creation_date: now,
                last_modified_date: now,
                signing_key_pem,
                kid,
                password_policy: password_policy_of(body),
                auto_confirm: false,
                confirmation_code: crate::config::default_confirmation_code(),
                clients: BTreeMap::new(),
                users: BTreeMap::new(),
            };
            plane.registry.create_user_pool(record.clone())?;
            tracing::info!(user_pool = %record.id, name = %record.name, "user pool created");
            Ok(json!({ "UserPool": describe_pool(&record, account) }))
        }
        "DescribeUserPool" => {
            let id = string(body, "UserPoolId")?;
            let pool = plane
                .registry
                .user_pool(&id)
                .ok_or_else(|| pool_not_found(&id))?;
            Ok(json!({ "UserPool": describe_pool(&pool, account) }))
        }
        "ListUserPools" => {
            let max = body["MaxResults"]
                .as_u64()
                .filter(|max| (1..=60).contains(max))
                .ok_or_else(|| invalid("1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 60"))? as usize;
            let start: usize = body["NextToken"]
                .as_str()
                .and_then(|token| token.parse().ok())
                .unwrap_or(0);
            let all = plane.registry.user_pools();
            let pools: Vec<Value> = all
                .iter()
                .skip(start)
                .take(max)
                .map(|pool| {
                    json!({
                        "Id": pool.id,
                        "Name": pool.name,
                        "CreationDate": pool.creation_date,
                        "LastModifiedDate": pool.last_modified_date,
                        "LambdaConfig": {},
                    })
                })
                .collect();
            let mut answer = json!({ "UserPools": pools });
            if start + max < all.len() {
                answer["NextToken"] = json!((start + max).to_string());
            }
            Ok(answer)
        }
        "CreateUserPoolClient" => {
            let pool_id = string(body, "UserPoolId")?;
            let client_name = string(body, "ClientName")?;
            if body["GenerateSecret"].as_bool() == Some(true) {
                return Err(invalid(
                    "client secrets (GenerateSecret) are not emulated: make a public client",
                ));
            }
            let flows: Vec<String> = match body["ExplicitAuthFlows"].as_array() {
                Some(flows) => flows
                    .iter()
                    .map(|flow| {
                        let flow = flow.as_str().unwrap_or_default();
                        if KNOWN_AUTH_FLOWS.contains(&flow) {
                            Ok(flow.to_owned())
                        } else {
                            Err(invalid(format!("unknown ExplicitAuthFlows value {flow:?}")))
                        }
                    })
                    .collect::<Result<_, _>>()?,
                None => DEFAULT_AUTH_FLOWS.iter().map(|f| (*f).to_owned()).collect(),
            };
            let prevent = body["PreventUserExistenceErrors"]
                .as_str()
                .unwrap_or("LEGACY");
            if !matches!(prevent, "LEGACY" | "ENABLED") {
                return Err(invalid(format!(
                    "PreventUserExistenceErrors must be LEGACY or ENABLED, not {prevent:?}"
                )));
            }
            let client = UserPoolClientRecord {
                client_id: new_client_id(),
                client_name,
                creation_date: now,
                last_modified_date: now,
                explicit_auth_flows: flows,
                access_token_validity_secs: validity_secs(
                    body,
                    "AccessTokenValidity",
                    "AccessToken",
                    "hours",
                    3600,
                )?,
                id_token_validity_secs: validity_secs(
                    body,
                    "IdTokenValidity",
                    "IdToken",
                    "hours",
                    3600,
                )?,
                refresh_token_validity_secs: validity_secs(
                    body,
                    "RefreshTokenValidity",
                    "RefreshToken",
                    "days",
                    30 * 86400,
                )?,
                prevent_user_existence_errors: prevent.to_owned(),
            };
            plane
                .registry
                .change_user_pool(&pool_id, |pool| {
                    pool.clients
                        .insert(client.client_id.clone(), client.clone());
                    Ok(())
                })
                .map_err(|error| pool_change_error(&pool_id, error))?;
            tracing::info!(user_pool = %pool_id, client_id = %client.client_id, "user pool client created");
            Ok(json!({ "UserPoolClient": describe_client(&client, &pool_id) }))
        }
        "AdminCreateUser" => {
            let pool_id = string(body, "UserPoolId")?;
            let username = string(body, "Username")?;
            let attributes = attributes_of(&body["UserAttributes"])?;
            let pool = plane
                .registry
                .user_pool(&pool_id)
                .ok_or_else(|| pool_not_found(&pool_id))?;
            // Without a temporary password Cognito makes one (and mails it): here it is
            // logged, since no mail leaves the machine.
            let temporary = match body["TemporaryPassword"].as_str() {
                Some(password) => {
                    pool.password_policy
                        .check(password)
                        .map_err(|why| idp_error("InvalidPasswordException", why))?;
                    password.to_owned()
                }
                None => {
                    let made = format!("{}aA1!", random_alphanumeric(12));
                    tracing::info!(user_pool = %pool_id, username, temporary_password = %made, "AdminCreateUser: temporary password made");
                    made
                }
            };
            let user = new_user(
                &pool,
                &username,
                &temporary,
                attributes,
                UserStatus::ForceChangePassword,
                now,
            );
            add_user(
                plane,
                &pool_id,
                &username,
                &user,
                "User account already exists",
            )?;
            tracing::info!(user_pool = %pool_id, username, "user created (FORCE_CHANGE_PASSWORD)");
            Ok(json!({ "User": {
                "Username": user.username,
                "Attributes": attribute_list(&user),
                "UserCreateDate": user.creation_date,
                "UserLastModifiedDate": user.last_modified_date,
                "Enabled": user.enabled,
                "UserStatus": user.status.name(),
            }}))
        }
        "AdminSetUserPassword" => {
            let pool_id = string(body, "UserPoolId")?;
            let username = string(body, "Username")?;
            let password = string(body, "Password")?;
            let permanent = body["Permanent"].as_bool().unwrap_or(false);
            let salt = rand_salt();
            plane
                .registry
                .change_user_pool(&pool_id, |pool| {
                    pool.password_policy
                        .check(&password)
                        .map_err(RegistryError::Invalid)?;
                    let snapshot = pool.clone();
                    let user = pool
                        .users
                        .get_mut(&username)
                        .ok_or_else(|| RegistryError::NotFound(format!("user {username}")))?;
                    set_password(&snapshot, user, &password, salt);
                    user.status = if permanent {
                        UserStatus::Confirmed
                    } else {
                        UserStatus::ForceChangePassword
                    };
                    user.last_modified_date = now;
                    Ok(())
                })
                .map_err(|error| match error {
                    RegistryError::Invalid(why) => idp_error("InvalidPasswordException", why),
                    other => pool_change_error(&pool_id, other),
                })?;
            tracing::info!(user_pool = %pool_id, username, permanent, "password set by the admin");
            Ok(json!({}))
        }
        "AdminGetUser" => {
            let pool_id = string(body, "UserPoolId")?;
            let username = string(body, "Username")?;
            let pool = plane
                .registry
                .user_pool(&pool_id)
                .ok_or_else(|| pool_not_found(&pool_id))?;
            let user = pool.users.get(&username).ok_or_else(user_not_found)?;
            Ok(json!({
                "Username": user.username,
                "UserAttributes": attribute_list(user),
                "UserCreateDate": user.creation_date,
                "UserLastModifiedDate": user.last_modified_date,
                "Enabled": user.enabled,
                "UserStatus": user.status.name(),
            }))
        }
        "AdminConfirmSignUp" => {
            let pool_id = string(body, "UserPoolId")?;
            let username = string(body, "Username")?;
            confirm(plane, &pool_id, &username, None, now)?;
            Ok(json!({}))
        }
        "SignUp" => {
            let client_id = string(body, "ClientId")?;
            let username = string(body, "Username")?;
            let password = string(body, "Password")?;
            let attributes = attributes_of(&body["UserAttributes"])?;
            let pool = plane.pool_of_client(&client_id)?;
            pool.password_policy
                .check(&password)
                .map_err(|why| idp_error("InvalidPasswordException", why))?;
            let status = if pool.auto_confirm {
                UserStatus::Confirmed
            } else {
                UserStatus::Unconfirmed
            };
            let user = new_user(&pool, &username, &password, attributes, status, now);
            add_user(plane, &pool.id, &username, &user, "User already exists")?;
            tracing::info!(user_pool = %pool.id, username, status = user.status.name(), "user signed up");
            let mut answer = json!({
                "UserConfirmed": status == UserStatus::Confirmed,
                "UserSub": user.sub,
            });
            if status == UserStatus::Unconfirmed {
                if let Some(email) = user.attributes.get("email") {
                    answer["CodeDeliveryDetails"] = json!({
                        "Destination": masked(email),
                        "DeliveryMedium": "EMAIL",
                        "AttributeName": "email",
                    });
                }
            }
            Ok(answer)
        }
        "ConfirmSignUp" => {
            let client_id = string(body, "ClientId")?;
            let username = string(body, "Username")?;
            let code = string(body, "ConfirmationCode")?;
            let pool = plane.pool_of_client(&client_id)?;
            confirm(plane, &pool.id, &username, Some(&code), now)?;
            Ok(json!({}))
        }
        "InitiateAuth" => {
            let client_id = string(body, "ClientId")?;
            let flow = string(body, "AuthFlow")?;
            let signed_in = plane.initiate_auth(&client_id, &flow, &body["AuthParameters"])?;
            Ok(sign_in_answer(signed_in))
        }
        "RespondToAuthChallenge" => {
            let client_id = string(body, "ClientId")?;
            let challenge = string(body, "ChallengeName")?;
            let signed_in = plane.respond_to_auth_challenge(
                &client_id,
                &challenge,
                &body["ChallengeResponses"],
                body["Session"].as_str(),
            )?;
            Ok(sign_in_answer(signed_in))
        }
        "GetUser" => {
            let token = string(body, "AccessToken")?;
            let grant = plane.verify_access_token(&token)?;
            let user = grant
                .pool
                .users
                .get(&grant.username)
                .ok_or_else(user_not_found)?;
            Ok(json!({
                "Username": user.username,
                "UserAttributes": attribute_list(user),
            }))
        }
        "GlobalSignOut" => {
            let token = string(body, "AccessToken")?;
            let grant = plane.verify_access_token(&token)?;
            plane.global_sign_out(&grant)?;
            Ok(json!({}))
        }
        other => Err(idp_error(
            "UnknownOperationException",
            format!("{other} is not an operation of this emulation"),
        )),
    }
}

fn rand_salt() -> [u8; 16] {
    use rand::RngCore;
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    salt
}

/// Adds a new user to a pool; `exists` is Cognito's message when the name is taken
/// (AdminCreateUser and SignUp word it differently).
fn add_user(
    plane: &IdentityPlane,
    pool_id: &str,
    username: &str,
    user: &UserRecord,
    exists: &'static str,
) -> Result<(), IdpError> {
    plane
        .registry
        .change_user_pool(pool_id, |pool| {
            if pool.users.contains_key(username) {
                return Err(RegistryError::AlreadyExists(username.to_owned()));
            }
            pool.users.insert(username.to_owned(), user.clone());
            Ok(())
        })
        .map_err(|error| match error {
            RegistryError::AlreadyExists(_) => idp_error("UsernameExistsException", exists),
            other => pool_change_error(pool_id, other),
        })
}

/// ConfirmSignUp (with the code) and AdminConfirmSignUp (without): UNCONFIRMED →
/// CONFIRMED, and an e-mail attribute becomes verified (the code proved it).
fn confirm(
    plane: &IdentityPlane,
    pool_id: &str,
    username: &str,
    code: Option<&str>,
    now: u64,
) -> Result<(), IdpError> {
    let pool = plane
        .registry
        .user_pool(pool_id)
        .ok_or_else(|| pool_not_found(pool_id))?;
    let Some(user) = pool.users.get(username) else {
        return Err(match code {
            Some(_) => idp_error(
                "UserNotFoundException",
                "Username/client id combination not found.",
            ),
            None => user_not_found(),
        });
    };
    if code.is_some_and(|code| code != pool.confirmation_code) {
        return Err(idp_error(
            "CodeMismatchException",
            "Invalid verification code provided, please try again.",
        ));
    }
    let not_unconfirmed = |status: UserStatus| {
        idp_error(
            "NotAuthorizedException",
            format!(
                "User cannot be confirmed. Current status is {}",
                status.name()
            ),
        )
    };
    if user.status != UserStatus::Unconfirmed {
        return Err(not_unconfirmed(user.status));
    }
    plane
        .registry
        .change_user_pool(pool_id, |pool| {
            let user = pool
                .users
                .get_mut(username)
                .ok_or_else(|| RegistryError::NotFound(format!("user {username}")))?;
            // Confirmed by another request since it was read.
            if user.status != UserStatus::Unconfirmed {
                return Err(RegistryError::WrongState(user.status.name().to_owned()));
            }
            user.status = UserStatus::Confirmed;
            if user.attributes.contains_key("email") {
                user.attributes
                    .insert("email_verified".into(), "true".into());
            }
            user.last_modified_date = now;
            Ok(())
        })
        .map_err(|error| match error {
            RegistryError::WrongState(_) => not_unconfirmed(UserStatus::Confirmed),
            other => pool_change_error(pool_id, other),
        })?;
    tracing::info!(user_pool = pool_id, username, "user confirmed");
    Ok(())
}

/// `a***@e***` as Cognito masks a destination.
fn masked(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!(
            "{}***@{}***",
            local.chars().next().unwrap_or('*'),
            domain.chars().next().unwrap_or('*')
        ),
        None => "***".into(),
    }
}

fn sign_in_answer(signed_in: SignIn) -> Value {
    match signed_in {
        SignIn::Tokens(result) => json!({
            "AuthenticationResult": result,
            "ChallengeParameters": {},
        }),
        SignIn::Challenge {
            name,
            parameters,
            session,
        } => {
            let mut answer = json!({
                "ChallengeName": name,
                "ChallengeParameters": parameters,
            });
            if let Some(session) = session {
                answer["Session"] = json!(session);
            }
            answer
        }
    }
}
