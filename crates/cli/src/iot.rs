//! `pubsub iot …`: the control plane, with the AWS CLI's command and flag names.
//!
//! With `--endpoint-url`, or when a broker with a control plane runs on the data directory
//! (found through `listeners.json`), commands call its API, signed by the `[admin]`
//! credentials (or `<data_dir>/admin-credentials`, or the AWS environment variables).
//! Otherwise the commands that need no running broker work offline on the data directory.

use std::path::PathBuf;

use anyhow::{bail, Context};
use broker::auth::{parse_action, test_authorization, AuthorizationQuestion, PolicyStore};
use broker::config::CertificateStatus;
use broker::control::{
    certificate_summary, describe_certificate, principal_of_target, resource_arn,
};
use broker::registry::{status_name, Registry};
use broker::tls_material::issue_device_certificate;
use broker::Config;
use clap::{Args, Subcommand, ValueEnum};
use iot::{PrincipalFacts, RequestContext};
use serde_json::json;
use std::time::Duration;

use crate::api::{encode_segment, ApiClient};

/// Where offline commands find the broker's state: `--config` (its `data_dir`, region,
/// account, endpoint) and/or `--data-dir` (overrides the config's).
#[derive(Args, Clone)]
pub struct Location {
    /// Broker configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The broker's data directory (default: the config's `data_dir`, else `.pubsub`).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The control plane to call (e.g. http://127.0.0.1:8088); default: the running
    /// broker's, from `<data_dir>/listeners.json`.
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
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

    /// The running broker's control plane, if there is one to talk to.
    fn api(&self) -> anyhow::Result<Option<ApiClient>> {
        let config = self.config()?;
        let endpoint = match &self.endpoint_url {
            Some(url) => url.clone(),
            None => {
                let listeners = config.data_dir.join("listeners.json");
                let Some(address) = std::fs::read_to_string(&listeners)
                    .ok()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .and_then(|value| value["http"].as_str().map(str::to_owned))
                else {
                    return Ok(None);
                };
                let reachable = address.parse().is_ok_and(|address| {
                    std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300))
                        .is_ok()
                });
                if !reachable {
                    return Ok(None);
                }
                format!("http://{address}")
            }
        };
        let (key, secret) = match (
            &config.admin,
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(admin), _, _) => (admin.access_key_id.clone(), admin.secret_access_key.clone()),
            (None, Ok(key), Ok(secret)) if self.endpoint_url.is_some() => (key, secret),
            _ => {
                let path = config.data_dir.join("admin-credentials");
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "no [admin] in the config and cannot read {}",
                        path.display()
                    )
                })?;
                let value: serde_json::Value = serde_json::from_str(&text)?;
                (
                    value["accessKeyId"].as_str().unwrap_or_default().to_owned(),
                    value["secretAccessKey"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            }
        };
        Ok(Some(ApiClient::new(
            &endpoint,
            &config.region,
            &key,
            &secret,
        )))
    }

    /// The control plane, for commands that only exist there.
    fn require_api(&self) -> anyhow::Result<ApiClient> {
        self.api()?.ok_or_else(|| {
            anyhow::anyhow!(
                "no broker control plane is running for this data directory; start `pubsub broker` (with listeners.http) or pass --endpoint-url"
            )
        })
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
        #[arg(long)]
        certificate_pem: String,
        #[arg(long)]
        set_as_active: bool,
    },
    /// Changes a certificate's status.
    #[command(name = "update-certificate")]
    UpdateCertificate {
        #[arg(long)]
        certificate_id: String,
        #[arg(long)]
        new_status: StatusArg,
    },
    #[command(name = "describe-certificate")]
    DescribeCertificate {
        #[arg(long)]
        certificate_id: String,
    },
    #[command(name = "list-certificates")]
    ListCertificates,
    /// Attaches a policy to a target: a certificate ARN or id, or an identity id.
    #[command(name = "attach-policy")]
    AttachPolicy {
        #[arg(long)]
        policy_name: String,
        #[arg(long)]
        target: String,
    },
    /// The deprecated form the seed uses: `--principal` instead of `--target`.
    #[command(name = "attach-principal-policy")]
    AttachPrincipalPolicy {
        #[arg(long)]
        policy_name: String,
        #[arg(long)]
        principal: String,
    },
    /// Makes a long-lived access key pair for a principal (e.g. a Cognito identity id) that
    /// SigV4 WebSocket connections can sign with; stored in the data directory.
    #[command(name = "create-access-key")]
    CreateAccessKey {
        #[arg(long)]
        principal: String,
    },
    /// Prints the endpoint clients connect to.
    #[command(name = "describe-endpoint")]
    DescribeEndpoint {
        /// Accepted for compatibility (iot:Data-ATS, …); the answer is the same.
        #[arg(long)]
        endpoint_type: Option<String>,
    },
    /// Creates a policy (`--policy-document` is JSON text or `file://PATH`). Needs the API.
    #[command(name = "create-policy")]
    CreatePolicy {
        #[arg(long)]
        policy_name: String,
        #[arg(long)]
        policy_document: String,
    },
    #[command(name = "get-policy")]
    GetPolicy {
        #[arg(long)]
        policy_name: String,
    },
    #[command(name = "list-policies")]
    ListPolicies,
    #[command(name = "delete-policy")]
    DeletePolicy {
        #[arg(long)]
        policy_name: String,
    },
    /// Detaches a policy; the target's open connections are closed. Needs the API.
    #[command(name = "detach-policy")]
    DetachPolicy {
        #[arg(long)]
        policy_name: String,
        #[arg(long)]
        target: String,
    },
    #[command(name = "detach-principal-policy")]
    DetachPrincipalPolicy {
        #[arg(long)]
        policy_name: String,
        #[arg(long)]
        principal: String,
    },
    #[command(name = "list-attached-policies")]
    ListAttachedPolicies {
        #[arg(long)]
        target: String,
    },
    #[command(name = "list-targets-for-policy")]
    ListTargetsForPolicy {
        #[arg(long)]
        policy_name: String,
    },
    #[command(name = "delete-certificate")]
    DeleteCertificate {
        #[arg(long)]
        certificate_id: String,
    },
    /// Creates a custom authorizer; `--authorizer-function-arn` is the function's HTTP URL.
    #[command(name = "create-authorizer")]
    CreateAuthorizer {
        #[arg(long)]
        authorizer_name: String,
        #[arg(long)]
        authorizer_function_arn: String,
        #[arg(long)]
        token_key_name: Option<String>,
        /// `NAME=PEM` or `NAME=file://PATH` (repeatable).
        #[arg(long, num_args = 1..)]
        token_signing_public_keys: Vec<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        signing_disabled: bool,
    },
    #[command(name = "describe-authorizer")]
    DescribeAuthorizer {
        #[arg(long)]
        authorizer_name: String,
    },
    #[command(name = "list-authorizers")]
    ListAuthorizers,
    #[command(name = "update-authorizer")]
    UpdateAuthorizer {
        #[arg(long)]
        authorizer_name: String,
        #[arg(long)]
        authorizer_function_arn: Option<String>,
        #[arg(long)]
        token_key_name: Option<String>,
        #[arg(long)]
        status: Option<String>,
    },
    #[command(name = "delete-authorizer")]
    DeleteAuthorizer {
        #[arg(long)]
        authorizer_name: String,
    },
    #[command(name = "set-default-authorizer")]
    SetDefaultAuthorizer {
        #[arg(long)]
        authorizer_name: String,
    },
    /// Answers whether a principal may perform an action on resources, as AWS's
    /// test-authorization does, plus the reason: which policy and statement decided.
    #[command(name = "test-authorization")]
    TestAuthorization {
        /// Policies and attachments come from the config (default: the embedded default,
        /// where `anonymous` has `dev-allow-all`) and the data directory's registry.
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

pub fn run(location: Location, command: IotCommand) -> anyhow::Result<()> {
    match location.api()? {
        Some(api) => {
            if let Some(answer) = remote(&api, &command)? {
                return print_answer(&answer);
            }
        }
        None if command.needs_api() => {
            location.require_api()?;
        }
        None => {}
    }
    match command {
        IotCommand::CreateKeysAndCertificate {
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
                "certificateArn": resource_arn(&config, "cert", &record.certificate_id),
                "certificateId": record.certificate_id,
                "certificatePem": issued.certificate_pem,
                "keyPair": {"PublicKey": issued.public_key_pem, "PrivateKey": issued.private_key_pem},
            }))
        }
        IotCommand::RegisterCertificate {
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
                "certificateArn": resource_arn(&config, "cert", &record.certificate_id),
                "certificateId": record.certificate_id,
            }))
        }
        IotCommand::UpdateCertificate {
            certificate_id,
            new_status,
        } => {
            let (_, registry) = location.registry()?;
            registry.update_status(&certificate_id, new_status.into())?;
            Ok(())
        }
        IotCommand::DescribeCertificate { certificate_id } => {
            let (config, registry) = location.registry()?;
            let record = registry.describe(&certificate_id)?;
            print_json(&json!({ "certificateDescription": describe_certificate(&config, &record) }))
        }
        IotCommand::ListCertificates => {
            let (config, registry) = location.registry()?;
            let certificates: Vec<_> = registry
                .list()
                .iter()
                .map(|record| certificate_summary(&config, record))
                .collect();
            print_json(&json!({ "certificates": certificates }))
        }
        IotCommand::AttachPolicy {
            policy_name,
            target,
        }
        | IotCommand::AttachPrincipalPolicy {
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
        IotCommand::CreateAccessKey { principal } => {
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
        IotCommand::DescribeEndpoint { .. } => {
            let config = location.config()?;
            print_json(&json!({ "endpointAddress": config.endpoint }))
        }
        // Only reachable when `remote` returned nothing, which it never does for these.
        IotCommand::CreatePolicy { .. }
        | IotCommand::GetPolicy { .. }
        | IotCommand::ListPolicies
        | IotCommand::DeletePolicy { .. }
        | IotCommand::DetachPolicy { .. }
        | IotCommand::DetachPrincipalPolicy { .. }
        | IotCommand::ListAttachedPolicies { .. }
        | IotCommand::ListTargetsForPolicy { .. }
        | IotCommand::DeleteCertificate { .. }
        | IotCommand::CreateAuthorizer { .. }
        | IotCommand::DescribeAuthorizer { .. }
        | IotCommand::ListAuthorizers
        | IotCommand::UpdateAuthorizer { .. }
        | IotCommand::DeleteAuthorizer { .. }
        | IotCommand::SetDefaultAuthorizer { .. } => {
            bail!("this command needs the broker's control plane")
        }
        IotCommand::TestAuthorization {
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
                principal: principal.contains(':').then(|| {
                    Box::new(PrincipalFacts {
                        cognito_identity_id: Some(principal.clone()),
                        ..PrincipalFacts::default()
                    })
                }),
                ..RequestContext::default()
            };
            let mut results = Vec::new();
            for (action_text, resources) in requests {
                let action = parse_action(&action_text)
                    .with_context(|| format!("unknown action {action_text:?}"))?;
                let known = registry.describe(&principal).is_ok();
                let mut answer = test_authorization(
                    &store,
                    &config,
                    &AuthorizationQuestion {
                        principal: &principal,
                        known_principal: known,
                        policy_names_to_add: &policy_names_to_add,
                        context: &context,
                        action,
                        resources: &resources,
                    },
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

impl IotCommand {
    /// Commands that exist only as calls to the running broker's API.
    fn needs_api(&self) -> bool {
        !matches!(
            self,
            IotCommand::CreateKeysAndCertificate { .. }
                | IotCommand::RegisterCertificate { .. }
                | IotCommand::UpdateCertificate { .. }
                | IotCommand::DescribeCertificate { .. }
                | IotCommand::ListCertificates
                | IotCommand::AttachPolicy { .. }
                | IotCommand::AttachPrincipalPolicy { .. }
                | IotCommand::CreateAccessKey { .. }
                | IotCommand::DescribeEndpoint { .. }
                | IotCommand::TestAuthorization { .. }
        )
    }
}

/// Text given as is, or read from `file://PATH` (as the AWS CLI does).
fn text_or_file(text: &str) -> anyhow::Result<String> {
    match text.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {path}")),
        None => Ok(text.to_owned()),
    }
}

/// The API call for a command; `None` for commands with no API form (create-access-key).
fn remote(api: &ApiClient, command: &IotCommand) -> anyhow::Result<Option<serde_json::Value>> {
    let e = encode_segment;
    let active = |on: bool| format!("setAsActive={on}");
    let answer = match command {
        IotCommand::CreateKeysAndCertificate {
            set_as_active,
            certificate_pem_outfile,
            public_key_outfile,
            private_key_outfile,
            ..
        } => {
            let answer = api.call(
                "POST",
                "/keys-and-certificate",
                &active(*set_as_active),
                &[],
                None,
            )?;
            for (file, field) in [
                (certificate_pem_outfile, &answer["certificatePem"]),
                (public_key_outfile, &answer["keyPair"]["PublicKey"]),
                (private_key_outfile, &answer["keyPair"]["PrivateKey"]),
            ] {
                if let Some(file) = file {
                    std::fs::write(file, field.as_str().unwrap_or_default())
                        .with_context(|| format!("cannot write {}", file.display()))?;
                }
            }
            answer
        }
        IotCommand::RegisterCertificate {
            certificate_pem,
            set_as_active,
            ..
        } => api.call(
            "POST",
            "/certificate/register",
            &active(*set_as_active),
            &[],
            Some(&json!({ "certificatePem": text_or_file(certificate_pem)? })),
        )?,
        IotCommand::UpdateCertificate {
            certificate_id,
            new_status,
            ..
        } => {
            let status = status_name((*new_status).into());
            api.call(
                "PUT",
                &format!("/certificates/{}", e(certificate_id)),
                &format!("newStatus={status}"),
                &[],
                None,
            )?
        }
        IotCommand::DescribeCertificate { certificate_id, .. } => api.call(
            "GET",
            &format!("/certificates/{}", e(certificate_id)),
            "",
            &[],
            None,
        )?,
        IotCommand::ListCertificates => api.call("GET", "/certificates", "", &[], None)?,
        IotCommand::DeleteCertificate { certificate_id, .. } => api.call(
            "DELETE",
            &format!("/certificates/{}", e(certificate_id)),
            "",
            &[],
            None,
        )?,
        IotCommand::AttachPolicy {
            policy_name,
            target,
            ..
        } => api.call(
            "PUT",
            &format!("/target-policies/{}", e(policy_name)),
            "",
            &[],
            Some(&json!({ "target": target })),
        )?,
        IotCommand::DetachPolicy {
            policy_name,
            target,
            ..
        } => api.call(
            "POST",
            &format!("/target-policies/{}", e(policy_name)),
            "",
            &[],
            Some(&json!({ "target": target })),
        )?,
        IotCommand::AttachPrincipalPolicy {
            policy_name,
            principal,
            ..
        } => api.call(
            "PUT",
            &format!("/principal-policies/{}", e(policy_name)),
            "",
            &[("x-amzn-iot-principal", principal.as_str())],
            None,
        )?,
        IotCommand::DetachPrincipalPolicy {
            policy_name,
            principal,
            ..
        } => api.call(
            "DELETE",
            &format!("/principal-policies/{}", e(policy_name)),
            "",
            &[("x-amzn-iot-principal", principal.as_str())],
            None,
        )?,
        IotCommand::CreatePolicy {
            policy_name,
            policy_document,
            ..
        } => api.call(
            "POST",
            &format!("/policies/{}", e(policy_name)),
            "",
            &[],
            Some(&json!({ "policyDocument": text_or_file(policy_document)? })),
        )?,
        IotCommand::GetPolicy { policy_name, .. } => api.call(
            "GET",
            &format!("/policies/{}", e(policy_name)),
            "",
            &[],
            None,
        )?,
        IotCommand::ListPolicies => api.call("GET", "/policies", "", &[], None)?,
        IotCommand::DeletePolicy { policy_name, .. } => api.call(
            "DELETE",
            &format!("/policies/{}", e(policy_name)),
            "",
            &[],
            None,
        )?,
        IotCommand::ListAttachedPolicies { target, .. } => api.call(
            "POST",
            &format!("/attached-policies/{}", e(target)),
            "",
            &[],
            None,
        )?,
        IotCommand::ListTargetsForPolicy { policy_name, .. } => api.call(
            "POST",
            &format!("/policy-targets/{}", e(policy_name)),
            "",
            &[],
            None,
        )?,
        IotCommand::CreateAuthorizer {
            authorizer_name,
            authorizer_function_arn,
            token_key_name,
            token_signing_public_keys,
            status,
            signing_disabled,
            ..
        } => {
            let mut keys = serde_json::Map::new();
            for pair in token_signing_public_keys {
                let (name, value) = pair.split_once('=').with_context(|| {
                    format!("--token-signing-public-keys {pair:?}: expected NAME=PEM")
                })?;
                keys.insert(name.to_owned(), text_or_file(value)?.into());
            }
            api.call(
                "POST",
                &format!("/authorizer/{}", e(authorizer_name)),
                "",
                &[],
                Some(&json!({
                    "authorizerFunctionArn": authorizer_function_arn,
                    "tokenKeyName": token_key_name,
                    "tokenSigningPublicKeys": keys,
                    "status": status.clone().unwrap_or_else(|| "ACTIVE".into()),
                    "signingDisabled": signing_disabled,
                })),
            )?
        }
        IotCommand::DescribeAuthorizer {
            authorizer_name, ..
        } => api.call(
            "GET",
            &format!("/authorizer/{}", e(authorizer_name)),
            "",
            &[],
            None,
        )?,
        IotCommand::ListAuthorizers => api.call("GET", "/authorizers/", "", &[], None)?,
        IotCommand::UpdateAuthorizer {
            authorizer_name,
            authorizer_function_arn,
            token_key_name,
            status,
            ..
        } => {
            let mut body = serde_json::Map::new();
            if let Some(url) = authorizer_function_arn {
                body.insert("authorizerFunctionArn".into(), url.clone().into());
            }
            if let Some(key) = token_key_name {
                body.insert("tokenKeyName".into(), key.clone().into());
            }
            if let Some(status) = status {
                body.insert("status".into(), status.clone().into());
            }
            api.call(
                "PUT",
                &format!("/authorizer/{}", e(authorizer_name)),
                "",
                &[],
                Some(&serde_json::Value::Object(body)),
            )?
        }
        IotCommand::DeleteAuthorizer {
            authorizer_name, ..
        } => api.call(
            "DELETE",
            &format!("/authorizer/{}", e(authorizer_name)),
            "",
            &[],
            None,
        )?,
        IotCommand::SetDefaultAuthorizer {
            authorizer_name, ..
        } => api.call(
            "POST",
            "/default-authorizer",
            "",
            &[],
            Some(&json!({ "authorizerName": authorizer_name })),
        )?,
        IotCommand::DescribeEndpoint { endpoint_type, .. } => api.call(
            "GET",
            "/endpoint",
            &endpoint_type
                .as_ref()
                .map(|kind| format!("endpointType={}", e(kind)))
                .unwrap_or_default(),
            &[],
            None,
        )?,
        IotCommand::CreateAccessKey { .. } | IotCommand::TestAuthorization { .. } => {
            return Ok(None)
        }
    };
    Ok(Some(answer))
}

/// As the AWS CLI: an empty answer prints nothing.
fn print_answer(answer: &serde_json::Value) -> anyhow::Result<()> {
    if answer.as_object().is_some_and(|object| object.is_empty()) {
        return Ok(());
    }
    print_json(answer)
}

fn status(set_as_active: bool) -> CertificateStatus {
    if set_as_active {
        CertificateStatus::Active
    } else {
        CertificateStatus::Inactive
    }
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
