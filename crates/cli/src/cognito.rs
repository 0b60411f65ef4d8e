//! `pubsub cognito …`: the Cognito Identity calls an app makes, shaped as
//! `aws cognito-identity`, against the broker's emulation (or AWS with `--endpoint-url`).

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum CognitoCommand {
    /// Gets (creates) an identity id in an identity pool.
    #[command(name = "get-id")]
    GetId {
        #[arg(long)]
        identity_pool_id: String,
        /// Logins of an authenticated identity: `provider=token`, comma-separated or
        /// repeated (as `aws cognito-identity --logins`).
        #[arg(long, value_delimiter = ',')]
        logins: Vec<String>,
        /// The broker's control plane, e.g. http://127.0.0.1:8088.
        #[arg(long, default_value = "http://127.0.0.1:8088")]
        endpoint_url: String,
    },
    /// Gets temporary credentials for an identity id.
    #[command(name = "get-credentials-for-identity")]
    GetCredentialsForIdentity {
        #[arg(long)]
        identity_id: String,
        /// The identity's logins, `provider=token` (e.g.
        /// `cognito-identity.amazonaws.com=<token>`).
        #[arg(long, value_delimiter = ',')]
        logins: Vec<String>,
        #[arg(long, default_value = "http://127.0.0.1:8088")]
        endpoint_url: String,
    },
    /// Lists the identity pools (with the `[admin]` credentials, found as `pubsub iot`
    /// finds them: `--config`, `--data-dir`, `--endpoint-url`; offline on the data
    /// directory when no broker runs).
    #[command(name = "list-identity-pools")]
    ListIdentityPools {
        #[command(flatten)]
        location: crate::iot::Location,
        #[arg(long, default_value_t = 60)]
        max_results: u32,
    },
}

/// Adds `Logins` (from `provider=token` pairs) to a request body.
fn with_logins(mut body: Value, logins: &[String]) -> anyhow::Result<Value> {
    if logins.is_empty() {
        return Ok(body);
    }
    let mut map = serde_json::Map::new();
    for login in logins {
        let Some((provider, token)) = login.split_once('=') else {
            bail!("--logins {login:?}: expected provider=token");
        };
        map.insert(provider.to_owned(), json!(token));
    }
    body["Logins"] = Value::Object(map);
    Ok(body)
}

pub fn run(command: CognitoCommand) -> anyhow::Result<()> {
    let (operation, body, endpoint) = match command {
        CognitoCommand::ListIdentityPools {
            location,
            max_results,
        } => {
            // Needs the `[admin]` signature: through the running broker's API or offline.
            let answer = crate::cognito_idp::call(
                &location,
                "AWSCognitoIdentityService.ListIdentityPools",
                &json!({ "MaxResults": max_results }),
            )?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            return Ok(());
        }
        CognitoCommand::GetId {
            identity_pool_id,
            logins,
            endpoint_url,
        } => (
            "GetId",
            with_logins(json!({ "IdentityPoolId": identity_pool_id }), &logins)?,
            endpoint_url,
        ),
        CognitoCommand::GetCredentialsForIdentity {
            identity_id,
            logins,
            endpoint_url,
        } => (
            "GetCredentialsForIdentity",
            with_logins(json!({ "IdentityId": identity_id }), &logins)?,
            endpoint_url,
        ),
    };
    // These operations are unsigned in AWS too.
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/", endpoint.trim_end_matches('/')))
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AWSCognitoIdentityService.{operation}"),
        )
        .body(body.to_string())
        .send()
        .with_context(|| format!("cannot reach {endpoint}"))?;
    let status = response.status();
    let answer: Value = response.json().context("the answer is not JSON")?;
    if !status.is_success() {
        bail!(
            "{}: {}",
            answer["__type"].as_str().unwrap_or("error"),
            answer["message"].as_str().unwrap_or_default()
        );
    }
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
