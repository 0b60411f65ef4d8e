//! `pubsub iot …`: the control plane, with the AWS CLI's command and flag names.
//!
//! Until the broker's HTTP API lands, commands work offline on a configuration file.

use std::path::PathBuf;

use anyhow::{bail, Context};
use broker::auth::{parse_action, test_authorization, PolicyStore};
use broker::Config;
use clap::Subcommand;
use iot::RequestContext;

#[derive(Subcommand)]
pub enum IotCommand {
    /// Answers whether a principal may perform an action on resources, as AWS's
    /// test-authorization does, plus the reason: which policy and statement decided.
    #[command(name = "test-authorization")]
    TestAuthorization {
        /// Broker configuration to read policies and attachments from (default: the
        /// embedded default, where `anonymous` has `dev-allow-all`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// `anonymous`, an identity id or access key from [[credentials]].
        #[arg(long)]
        principal: String,
        /// AWS form: `actionType=PUBLISH,resources=ARN[,ARN…]` (repeatable).
        #[arg(long = "auth-infos", num_args = 1..)]
        auth_infos: Vec<String>,
        /// Short form: the action (`iot:Publish`, `iot:Connect`, …).
        #[arg(long, requires = "resource")]
        action: Option<String>,
        /// Short form: the resource ARN.
        #[arg(long)]
        resource: Option<String>,
        /// The client id that resolves `${iot:ClientId}`.
        #[arg(long)]
        client_id: Option<String>,
        /// Policies to evaluate as if attached.
        #[arg(long = "policy-names-to-add", num_args = 1..)]
        policy_names_to_add: Vec<String>,
    },
}

pub fn run(command: IotCommand) -> anyhow::Result<()> {
    match command {
        IotCommand::TestAuthorization {
            config,
            principal,
            auth_infos,
            action,
            resource,
            client_id,
            policy_names_to_add,
        } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::embedded_default(),
            };
            let store = PolicyStore::from_config(&config)?;
            let mut requests = Vec::new();
            if let (Some(action), Some(resource)) = (action, resource) {
                requests.push((action, vec![resource]));
            }
            for info in &auth_infos {
                requests.push(parse_auth_info(info)?);
            }
            if requests.is_empty() {
                bail!("give --action and --resource, or --auth-infos actionType=…,resources=…");
            }
            let context = RequestContext {
                client_id,
                cognito_identity_id: principal.contains(':').then(|| principal.clone()),
                ..RequestContext::default()
            };
            let mut results = Vec::new();
            for (action_text, resources) in requests {
                let action = parse_action(&action_text)
                    .with_context(|| format!("unknown action {action_text:?}"))?;
                let mut answer = test_authorization(
                    &store,
                    &config,
                    &principal,
                    &policy_names_to_add,
                    &context,
                    action,
                    &resources,
                )?;
                results.append(
                    answer["authResults"]
                        .as_array_mut()
                        .expect("authResults is an array"),
                );
            }
            let output = serde_json::json!({ "authResults": results });
            println!("{}", serde_json::to_string_pretty(&output)?);
            Ok(())
        }
    }
}

/// `actionType=PUBLISH,resources=arn:…,arn:…` (the AWS CLI's shorthand).
fn parse_auth_info(text: &str) -> anyhow::Result<(String, Vec<String>)> {
    let mut action = None;
    let mut resources = Vec::new();
    let mut in_resources = false;
    for part in text.split(',') {
        if let Some(value) = part.strip_prefix("actionType=") {
            action = Some(value.to_owned());
            in_resources = false;
        } else if let Some(value) = part.strip_prefix("resources=") {
            resources.push(value.to_owned());
            in_resources = true;
        } else if in_resources && !part.is_empty() {
            resources.push(part.to_owned());
        } else {
            bail!("cannot read --auth-infos {text:?}: expected actionType=…,resources=…");
        }
    }
    match action {
        Some(action) if !resources.is_empty() => Ok((action, resources)),
        _ => bail!("--auth-infos {text:?} needs both actionType= and resources="),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_infos_shorthand() {
        let (action, resources) =
            parse_auth_info("actionType=PUBLISH,resources=arn:a:topic/x,arn:a:topic/y").unwrap();
        assert_eq!(action, "PUBLISH");
        assert_eq!(resources, ["arn:a:topic/x", "arn:a:topic/y"]);
        assert!(parse_auth_info("resources=x").is_err());
        assert!(parse_auth_info("bogus=1").is_err());
    }
}
