//! `pubsub iot …`: the control plane, with the AWS CLI's command and flag names.
//!
//! Until the broker's HTTP API lands, commands work offline on a configuration file.

use std::path::PathBuf;

use anyhow::{bail, Context};
use broker::auth::{parse_action, test_authorization, PolicyStore};
use broker::config::CertificateStatus;
use broker::registry::{status_name, CertificateRecord, Registry};
use broker::tls_material::issue_device_certificate;
use broker::Config;
use clap::{Args, Subcommand, ValueEnum};
use iot::RequestContext;
use serde_json::json;

/// Where offline commands find the broker's state: `--config` (its `data_dir`, region,
/// account, endpoint) and/or `--data-dir` (overrides the config's).
#[derive(Args, Clone)]
pub struct Location {
    /// Broker configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The broker's data directory (default: the config's `data_dir`, else `.pubsub`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl Location {
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::embedded_default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }

    fn registry(&self) -> anyhow::Result<(Config, Registry)> {
        let config = self.config()?;
        let registry = Registry::open(&config.data_dir)?;
        Ok((config, registry))
    }
}

#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StatusArg {
    Active,
    Inactive,
    Revoked,
}

impl From<StatusArg> for CertificateStatus {
    fn from(status: StatusArg) -> CertificateStatus {
        match status {
            StatusArg::Active => CertificateStatus::Active,
            StatusArg::Inactive => CertificateStatus::Inactive,
            StatusArg::Revoked => CertificateStatus::Revoked,
        }
    }
}

#[derive(Subcommand)]
pub enum IotCommand {
    /// Creates a key pair and a certificate issued by the local device CA, and registers it.
    #[command(name = "create-keys-and-certificate")]
    CreateKeysAndCertificate {
        #[command(flatten)]
        location: Location,
        /// Register the certificate ACTIVE (default: INACTIVE, as AWS).
        #[arg(long)]
        set_as_active: bool,
        #[arg(long)]
        certificate_pem_outfile: Option<PathBuf>,
        #[arg(long)]
        public_key_outfile: Option<PathBuf>,
        #[arg(long)]
        private_key_outfile: Option<PathBuf>,
    },
    /// Registers a certificate given as PEM text or `file://PATH`.
    #[command(name = "register-certificate")]
    RegisterCertificate {
        #[command(flatten)]
        location: Location,
        #[arg(long)]
        certificate_pem: String,
        #[arg(long)]
        set_as_active: bool,
    },
    /// Changes a certificate's status.
    #[command(name = "update-certificate")]
    UpdateCertificate {
        #[command(flatten)]
        location: Location,
        #[arg(long)]
        certificate_id: String,
        #[arg(long)]
        new_status: StatusArg,
    },
    #[command(name = "describe-certificate")]
    DescribeCertificate {
        #[command(flatten)]
        location: Location,
        #[arg(long)]
        certificate_id: String,
    },
    #[command(name = "list-certificates")]
    ListCertificates {
        #[command(flatten)]
        location: Location,
    },
    /// Attaches a policy to a target: a certificate ARN or id, or an identity id.
    #[command(name = "attach-policy")]
    AttachPolicy {
        #[command(flatten)]
        location: Location,
        #[arg(long)]
        policy_name: String,
        #[arg(long)]
        target: String,
    },
    /// The deprecated form the seed uses: `--principal` instead of `--target`.
    #[command(name = "attach-principal-policy")]
    AttachPrincipalPolicy {
        #[command(flatten)]
        location: Location,
        #[arg(long)]
        policy_name: String,
        #[arg(long)]
        principal: String,
    },
    /// Makes a long-lived access key pair for a principal (e.g. a Cognito identity id) that
    /// SigV4 WebSocket connections can sign with; stored in the data directory.
    #[command(name = "create-access-key")]
    CreateAccessKey {
        #[command(flatten)]
        location: Location,
        #[arg(long)]
        principal: String,
    },
    /// Prints the endpoint clients connect to.
    #[command(name = "describe-endpoint")]
    DescribeEndpoint {
        #[command(flatten)]
        location: Location,
        /// Accepted for compatibility (iot:Data-ATS, …); the answer is the same.
        #[arg(long)]
        endpoint_type: Option<String>,
    },
    /// Answers whether a principal may perform an action on resources, as AWS's
    /// test-authorization does, plus the reason: which policy and statement decided.
    #[command(name = "test-authorization")]
    TestAuthorization {
        /// Policies and attachments come from the config (default: the embedded default,
        /// where `anonymous` has `dev-allow-all`) and the data directory's registry.
        #[command(flatten)]
        location: Location,
        /// `anonymous`, a certificate ARN or id, an identity id or access key from
        /// [[credentials]].
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
        IotCommand::CreateKeysAndCertificate {
            location,
            set_as_active,
            certificate_pem_outfile,
            public_key_outfile,
            private_key_outfile,
        } => {
            let (config, registry) = location.registry()?;
            let issued = issue_device_certificate(&config.data_dir, "pubsub device")?;
            let record = registry.register(&issued.certificate_pem, status(set_as_active))?;
            for (file, text) in [
                (&certificate_pem_outfile, &issued.certificate_pem),
                (&public_key_outfile, &issued.public_key_pem),
                (&private_key_outfile, &issued.private_key_pem),
            ] {
                if let Some(file) = file {
                    std::fs::write(file, text)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                }
            }
            print_json(&json!({
                "certificateArn": certificate_arn(&config, &record.certificate_id),
                "certificateId": record.certificate_id,
                "certificatePem": issued.certificate_pem,
                "keyPair": {"PublicKey": issued.public_key_pem, "PrivateKey": issued.private_key_pem},
            }))
        }
        IotCommand::RegisterCertificate {
            location,
            certificate_pem,
            set_as_active,
        } => {
            let (config, registry) = location.registry()?;
            let pem = match certificate_pem.strip_prefix("file://") {
                Some(path) => {
                    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
                }
                None => certificate_pem,
            };
            let record = registry.register(&pem, status(set_as_active))?;
            print_json(&json!({
                "certificateArn": certificate_arn(&config, &record.certificate_id),
                "certificateId": record.certificate_id,
            }))
        }
        IotCommand::UpdateCertificate {
            location,
            certificate_id,
            new_status,
        } => {
            let (_, registry) = location.registry()?;
            registry.update_status(&certificate_id, new_status.into())?;
            Ok(())
        }
        IotCommand::DescribeCertificate {
            location,
            certificate_id,
        } => {
            let (config, registry) = location.registry()?;
            let record = registry.describe(&certificate_id)?;
            print_json(&json!({ "certificateDescription": describe(&config, &record) }))
        }
        IotCommand::ListCertificates { location } => {
            let (config, registry) = location.registry()?;
            let certificates: Vec<_> = registry
                .list()
                .iter()
                .map(|record| {
                    json!({
                        "certificateArn": certificate_arn(&config, &record.certificate_id),
                        "certificateId": record.certificate_id,
                        "status": status_name(record.status),
                        "creationDate": record.creation_date,
                    })
                })
                .collect();
            print_json(&json!({ "certificates": certificates }))
        }
        IotCommand::AttachPolicy {
            location,
            policy_name,
            target,
        }
        | IotCommand::AttachPrincipalPolicy {
            location,
            policy_name,
            principal: target,
        } => {
            let (config, registry) = location.registry()?;
            let principal = principal_of_target(&target);
            if PolicyStore::from_config(&config)?
                .get(&policy_name)
                .is_none()
            {
                bail!("policy {policy_name:?} does not exist in the broker's configuration");
            }
            registry.attach(principal, &policy_name)?;
            Ok(())
        }
        IotCommand::CreateAccessKey {
            location,
            principal,
        } => {
            let (_, registry) = location.registry()?;
            let record = registry.create_access_key(&principal)?;
            print_json(&json!({
                "AccessKey": {
                    "AccessKeyId": record.access_key_id,
                    "SecretAccessKey": record.secret_access_key,
                    "Principal": record.principal,
                    "Status": "Active",
                }
            }))
        }
        IotCommand::DescribeEndpoint { location, .. } => {
            let config = location.config()?;
            print_json(&json!({ "endpointAddress": config.endpoint }))
        }
        IotCommand::TestAuthorization {
            location,
            principal,
            auth_infos,
            action,
            resource,
            client_id,
            policy_names_to_add,
        } => {
            let (config, registry) = location.registry()?;
            let store = PolicyStore::from_config(&config)?;
            registry.sync_policies(&store);
            let principal = principal_of_target(&principal).to_owned();
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

fn status(set_as_active: bool) -> CertificateStatus {
    if set_as_active {
        CertificateStatus::Active
    } else {
        CertificateStatus::Inactive
    }
}

fn certificate_arn(config: &Config, id: &str) -> String {
    format!(
        "arn:aws:iot:{}:{}:cert/{id}",
        config.region, config.account_id
    )
}

/// A certificate ARN names its certificate id; anything else (an identity id) is the
/// principal itself.
fn principal_of_target(target: &str) -> &str {
    match target.split_once(":cert/") {
        Some((_, id)) if target.starts_with("arn:") => id,
        _ => target,
    }
}

fn describe(config: &Config, record: &CertificateRecord) -> serde_json::Value {
    json!({
        "certificateArn": certificate_arn(config, &record.certificate_id),
        "certificateId": record.certificate_id,
        "caCertificateId": record.ca_certificate_id,
        "status": status_name(record.status),
        "certificatePem": record.certificate_pem,
        "creationDate": record.creation_date,
        "lastModifiedDate": record.creation_date,
        "certificateMode": if record.ca_certificate_id.is_some() { "DEFAULT" } else { "SNI_ONLY" },
    })
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
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
    fn certificate_arns_name_their_id() {
        assert_eq!(
            principal_of_target("arn:aws:iot:us-east-1:123456789012:cert/abc"),
            "abc"
        );
        assert_eq!(principal_of_target("us-east-1:4a1b"), "us-east-1:4a1b");
    }

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
