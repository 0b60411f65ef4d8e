//! `pubsub cognito-idp …`: Cognito user pools, with the AWS CLI's command and flag names
//! (`aws cognito-idp`). Every command is one JSON 1.1 call (`X-Amz-Target:
//! AWSCognitoIdentityProviderService.<Operation>`), answered by the broker's own
//! implementation: the running broker's API (found as `pubsub iot` finds it, signed by the
//! `[admin]` credentials; the operations an app makes for its users are unsigned in AWS and
//! the broker ignores the signature on them), or offline on the data directory. Offline,
//! an SRP sign-in cannot be finished (its challenge lives in the broker's memory), but
//! everything else works.

use anyhow::{bail, Context};
use broker::control::ApiRequest;
use clap::Subcommand;
use serde_json::{json, Map, Value};

use crate::api::read_answer;
use crate::iot::{answer_offline, Location};

#[derive(Subcommand)]
pub enum CognitoIdpCommand {
    /// Creates a user pool (with a signing key of its own).
    #[command(name = "create-user-pool")]
    CreateUserPool {
        #[arg(long)]
        pool_name: String,
        /// `PasswordPolicy={MinimumLength=8,…}` is not read in shorthand: JSON, e.g.
        /// '{"PasswordPolicy": {"MinimumLength": 8, "RequireSymbols": false}}'.
        #[arg(long)]
        policies: Option<String>,
    },
    #[command(name = "describe-user-pool")]
    DescribeUserPool {
        #[arg(long)]
        user_pool_id: String,
    },
    #[command(name = "list-user-pools")]
    ListUserPools {
        #[arg(long)]
        max_results: u32,
        #[arg(long)]
        next_token: Option<String>,
    },
    /// Creates an app client (public: client secrets are not emulated).
    #[command(name = "create-user-pool-client")]
    CreateUserPoolClient {
        #[arg(long)]
        user_pool_id: String,
        #[arg(long)]
        client_name: String,
        /// e.g. ALLOW_USER_SRP_AUTH ALLOW_USER_PASSWORD_AUTH ALLOW_REFRESH_TOKEN_AUTH.
        #[arg(long, num_args = 1..)]
        explicit_auth_flows: Vec<String>,
        #[arg(long)]
        prevent_user_existence_errors: Option<String>,
    },
    /// Creates a user with a temporary password (FORCE_CHANGE_PASSWORD).
    #[command(name = "admin-create-user")]
    AdminCreateUser {
        #[arg(long)]
        user_pool_id: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        temporary_password: Option<String>,
        /// `Name=email,Value=a@example.com` (one per attribute), or JSON.
        #[arg(long, num_args = 1..)]
        user_attributes: Vec<String>,
        /// Accepted for the AWS CLI's sake (no message leaves the machine anyway).
        #[arg(long)]
        message_action: Option<String>,
    },
    #[command(name = "admin-set-user-password")]
    AdminSetUserPassword {
        #[arg(long)]
        user_pool_id: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: String,
        /// The password is the user's own (CONFIRMED), not a temporary one.
        #[arg(long, conflicts_with = "no_permanent")]
        permanent: bool,
        /// The password is temporary (FORCE_CHANGE_PASSWORD), the default.
        #[arg(long)]
        no_permanent: bool,
    },
    #[command(name = "admin-get-user")]
    AdminGetUser {
        #[arg(long)]
        user_pool_id: String,
        #[arg(long)]
        username: String,
    },
    #[command(name = "admin-confirm-sign-up")]
    AdminConfirmSignUp {
        #[arg(long)]
        user_pool_id: String,
        #[arg(long)]
        username: String,
    },
    #[command(name = "sign-up")]
    SignUp {
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: String,
        /// `Name=email,Value=a@example.com` (one per attribute), or JSON.
        #[arg(long, num_args = 1..)]
        user_attributes: Vec<String>,
    },
    /// Confirms a sign-up with the pool's confirmation code (`[[user_pools]]
    /// confirmation_code`, default 123456).
    #[command(name = "confirm-sign-up")]
    ConfirmSignUp {
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        confirmation_code: String,
    },
    /// Signs a user in: USER_PASSWORD_AUTH (USERNAME=…,PASSWORD=…) or
    /// REFRESH_TOKEN_AUTH (REFRESH_TOKEN=…).
    #[command(name = "initiate-auth")]
    InitiateAuth {
        #[arg(long)]
        auth_flow: String,
        #[arg(long)]
        client_id: String,
        /// `USERNAME=alice,PASSWORD=…`, or JSON.
        #[arg(long)]
        auth_parameters: String,
    },
    /// Answers a challenge, e.g. NEW_PASSWORD_REQUIRED with
    /// `USERNAME=alice,NEW_PASSWORD=…` and the `Session` of initiate-auth.
    #[command(name = "respond-to-auth-challenge")]
    RespondToAuthChallenge {
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        challenge_name: String,
        #[arg(long)]
        challenge_responses: String,
        #[arg(long)]
        session: Option<String>,
    },
    #[command(name = "get-user")]
    GetUser {
        #[arg(long)]
        access_token: String,
    },
    /// Signs the user out everywhere: the tokens of every earlier sign-in are refused.
    #[command(name = "global-sign-out")]
    GlobalSignOut {
        #[arg(long)]
        access_token: String,
    },
}

pub fn run(location: Location, command: CognitoIdpCommand) -> anyhow::Result<()> {
    let (operation, body) = request(command)?;
    let target = format!("AWSCognitoIdentityProviderService.{operation}");
    let answer = call(&location, &target, &body)?;
    if !answer.as_object().is_some_and(|object| object.is_empty()) {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    }
    Ok(())
}

/// One JSON 1.1 call (`X-Amz-Target: target`) through the running broker's API (signed by
/// the `[admin]` credentials), or offline on the data directory.
pub(crate) fn call(location: &Location, target: &str, body: &Value) -> anyhow::Result<Value> {
    let text = body.to_string();
    let headers = [
        ("x-amz-target", target),
        ("content-type", "application/x-amz-json-1.1"),
    ];
    let answer = match location.api()? {
        Some(api) => {
            let (status, kind, body) = api.send("POST", "/", "", &headers, text.as_bytes())?;
            read_answer(status, kind.as_deref(), &body)?
        }
        None => {
            let request = ApiRequest {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                body: text.as_bytes(),
            };
            let answer = answer_offline(location.config()?, &request)?;
            read_answer(answer.status, answer.error_kind, &answer.body)?
        }
    };
    Ok(answer)
}

/// The operation and JSON body of a command.
fn request(command: CognitoIdpCommand) -> anyhow::Result<(&'static str, Value)> {
    use CognitoIdpCommand as C;
    Ok(match command {
        C::CreateUserPool {
            pool_name,
            policies,
        } => {
            let mut body = json!({ "PoolName": pool_name });
            if let Some(policies) = policies {
                body["Policies"] =
                    serde_json::from_str(&policies).context("--policies is not JSON")?;
            }
            ("CreateUserPool", body)
        }
        C::DescribeUserPool { user_pool_id } => {
            ("DescribeUserPool", json!({ "UserPoolId": user_pool_id }))
        }
        C::ListUserPools {
            max_results,
            next_token,
        } => {
            let mut body = json!({ "MaxResults": max_results });
            if let Some(token) = next_token {
                body["NextToken"] = json!(token);
            }
            ("ListUserPools", body)
        }
        C::CreateUserPoolClient {
            user_pool_id,
            client_name,
            explicit_auth_flows,
            prevent_user_existence_errors,
        } => {
            let mut body = json!({ "UserPoolId": user_pool_id, "ClientName": client_name });
            if !explicit_auth_flows.is_empty() {
                body["ExplicitAuthFlows"] = json!(explicit_auth_flows);
            }
            if let Some(prevent) = prevent_user_existence_errors {
                body["PreventUserExistenceErrors"] = json!(prevent);
            }
            ("CreateUserPoolClient", body)
        }
        C::AdminCreateUser {
            user_pool_id,
            username,
            temporary_password,
            user_attributes,
            message_action,
        } => {
            let mut body = json!({
                "UserPoolId": user_pool_id,
                "Username": username,
                "UserAttributes": attribute_list(&user_attributes)?,
            });
            if let Some(password) = temporary_password {
                body["TemporaryPassword"] = json!(password);
            }
            if let Some(action) = message_action {
                body["MessageAction"] = json!(action);
            }
            ("AdminCreateUser", body)
        }
        C::AdminSetUserPassword {
            user_pool_id,
            username,
            password,
            permanent,
            ..
        } => (
            "AdminSetUserPassword",
            json!({
                "UserPoolId": user_pool_id,
                "Username": username,
                "Password": password,
                "Permanent": permanent,
            }),
        ),
        C::AdminGetUser {
            user_pool_id,
            username,
        } => (
            "AdminGetUser",
            json!({ "UserPoolId": user_pool_id, "Username": username }),
        ),
        C::AdminConfirmSignUp {
            user_pool_id,
            username,
        } => (
            "AdminConfirmSignUp",
            json!({ "UserPoolId": user_pool_id, "Username": username }),
        ),
        C::SignUp {
            client_id,
            username,
            password,
            user_attributes,
        } => (
            "SignUp",
            json!({
                "ClientId": client_id,
                "Username": username,
                "Password": password,
                "UserAttributes": attribute_list(&user_attributes)?,
            }),
        ),
        C::ConfirmSignUp {
            client_id,
            username,
            confirmation_code,
        } => (
            "ConfirmSignUp",
            json!({
                "ClientId": client_id,
                "Username": username,
                "ConfirmationCode": confirmation_code,
            }),
        ),
        C::InitiateAuth {
            auth_flow,
            client_id,
            auth_parameters,
        } => (
            "InitiateAuth",
            json!({
                "AuthFlow": auth_flow,
                "ClientId": client_id,
                "AuthParameters": string_map(&auth_parameters, "--auth-parameters")?,
            }),
        ),
        C::RespondToAuthChallenge {
            client_id,
            challenge_name,
            challenge_responses,
            session,
        } => {
            let mut body = json!({
                "ClientId": client_id,
                "ChallengeName": challenge_name,
                "ChallengeResponses": string_map(&challenge_responses, "--challenge-responses")?,
            });
            if let Some(session) = session {
                body["Session"] = json!(session);
            }
            ("RespondToAuthChallenge", body)
        }
        C::GetUser { access_token } => ("GetUser", json!({ "AccessToken": access_token })),
        C::GlobalSignOut { access_token } => {
            ("GlobalSignOut", json!({ "AccessToken": access_token }))
        }
    })
}

/// The AWS CLI's map shorthand (`KEY=value,KEY2=value2`) or JSON (`{"KEY": "value"}`).
pub(crate) fn string_map(text: &str, flag: &str) -> anyhow::Result<Value> {
    if text.trim_start().starts_with('{') {
        let value: Value =
            serde_json::from_str(text).with_context(|| format!("{flag} is not JSON"))?;
        if !value
            .as_object()
            .is_some_and(|map| map.values().all(Value::is_string))
        {
            bail!("{flag}: a JSON object of strings, e.g. {{\"USERNAME\": \"alice\"}}");
        }
        return Ok(value);
    }
    let mut map = Map::new();
    for pair in text.split(',').filter(|pair| !pair.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("{flag}: {pair:?} is not KEY=value");
        };
        map.insert(key.trim().to_owned(), json!(value));
    }
    Ok(Value::Object(map))
}

/// `--user-attributes`: each `Name=email,Value=a@example.com` (the AWS CLI's shorthand,
/// one per attribute), or one JSON list `[{"Name": …, "Value": …}]`.
pub(crate) fn attribute_list(items: &[String]) -> anyhow::Result<Value> {
    if let [only] = items {
        if only.trim_start().starts_with('[') {
            return serde_json::from_str(only).context("--user-attributes is not JSON");
        }
    }
    let mut list = Vec::new();
    for item in items {
        let fields = string_map(item, "--user-attributes")?;
        let (Some(name), value) = (fields["Name"].as_str(), fields["Value"].as_str()) else {
            bail!("--user-attributes: {item:?} is not Name=…,Value=…");
        };
        list.push(json!({ "Name": name, "Value": value.unwrap_or_default() }));
    }
    Ok(Value::Array(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthand_and_json_give_the_same_maps() {
        let shorthand = string_map("USERNAME=alice,PASSWORD=a=b", "--x").unwrap();
        assert_eq!(shorthand, json!({"USERNAME": "alice", "PASSWORD": "a=b"}));
        let json_form = string_map(r#"{"USERNAME": "alice", "PASSWORD": "a=b"}"#, "--x").unwrap();
        assert_eq!(shorthand, json_form);
        assert!(string_map("USERNAME", "--x").is_err());
        assert!(string_map(r#"{"A": 1}"#, "--x").is_err());
    }

    #[test]
    fn user_attributes_in_shorthand_and_json() {
        let items = [
            "Name=email,Value=a@b.c".to_owned(),
            "Name=name,Value=Al".to_owned(),
        ];
        let list = attribute_list(&items).unwrap();
        assert_eq!(
            list,
            json!([{"Name": "email", "Value": "a@b.c"}, {"Name": "name", "Value": "Al"}])
        );
        let json_form = attribute_list(&[list.to_string()]).unwrap();
        assert_eq!(json_form, list);
        assert!(attribute_list(&["Value=x".to_owned()]).is_err());
    }
}
