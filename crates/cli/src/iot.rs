//! `pubsub iot …`: the control plane, with the AWS CLI's command and flag names.
//!
//! Every command is one control-plane request (method, path, query, JSON body: [`request`]),
//! answered by one implementation, the broker's. With `--endpoint-url`, or when a broker
//! with a control plane runs on the data directory (found through `listeners.json`), the
//! request goes to its API, signed by the `[admin]` credentials (or
//! `<data_dir>/admin-credentials`, or the AWS environment variables). Otherwise
//! [`broker::control::answer_local`] answers it on the data directory; operations of the
//! data plane (publish, retained messages) need the running broker.

use std::path::PathBuf;

use anyhow::{bail, Context};
use broker::control::{answer_local, Answer, ApiRequest};
use broker::Config;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::time::Duration;

use crate::api::{encode_segment, read_answer, ApiClient};

/// Where the broker's state is: `--config` (its `data_dir`, region, account, endpoint)
/// and/or `--data-dir` (overrides the config's), or the running control plane to call.
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
}

#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StatusArg {
    Active,
    Inactive,
    Revoked,
}

impl StatusArg {
    /// The API's name of the status (`newStatus=`).
    fn name(self) -> &'static str {
        match self {
            StatusArg::Active => "ACTIVE",
            StatusArg::Inactive => "INACTIVE",
            StatusArg::Revoked => "REVOKED",
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
    /// Creates a policy (`--policy-document` is JSON text or `file://PATH`).
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
    /// Detaches a policy; the target's open connections are closed.
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
    let call = request(&command)?;
    let answer = match location.api()? {
        Some(api) => api.call(
            call.method,
            &call.path,
            &call.query,
            &call.header_pairs(),
            call.body.as_ref(),
        )?,
        None => local(location.config()?, &call)?,
    };
    if let IotCommand::CreateKeysAndCertificate {
        certificate_pem_outfile,
        public_key_outfile,
        private_key_outfile,
        ..
    } = &command
    {
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
    }
    print_answer(&answer)
}

/// One control-plane request: what every command is, online or offline.
#[derive(Debug)]
struct Call {
    method: &'static str,
    /// Percent-encoded, as sent.
    path: String,
    /// Without the `?`.
    query: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl Call {
    fn new(method: &'static str, path: impl Into<String>) -> Call {
        Call {
            method,
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn query(mut self, query: impl Into<String>) -> Call {
        self.query = query.into();
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Call {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn body(mut self, body: Value) -> Call {
        self.body = Some(body);
        self
    }

    fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect()
    }
}

/// Answers a request on the data directory, with the broker's own control plane.
fn local(config: Config, call: &Call) -> anyhow::Result<Value> {
    let headers = call.header_pairs();
    let body = call.body.as_ref().map(Value::to_string).unwrap_or_default();
    let request = ApiRequest {
        method: call.method,
        path: &call.path,
        query: &call.query,
        headers: &headers,
        body: body.as_bytes(),
    };
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(answer_local(config, &request));
    answer_value(answer)
}

/// An [`Answer`] read as [`ApiClient::call`] reads an HTTP answer.
fn answer_value(answer: Answer) -> anyhow::Result<Value> {
    read_answer(answer.status, answer.error_kind, &answer.body)
}

/// Text given as is, or read from `file://PATH` (as the AWS CLI does).
fn text_or_file(text: &str) -> anyhow::Result<String> {
    match text.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {path}")),
        None => Ok(text.to_owned()),
    }
}

/// The control-plane request of a command.
fn request(command: &IotCommand) -> anyhow::Result<Call> {
    let e = encode_segment;
    let active = |on: bool| format!("setAsActive={on}");
    let call = match command {
        IotCommand::CreateKeysAndCertificate { set_as_active, .. } => {
            Call::new("POST", "/keys-and-certificate").query(active(*set_as_active))
        }
        IotCommand::RegisterCertificate {
            certificate_pem,
            set_as_active,
        } => Call::new("POST", "/certificate/register")
            .query(active(*set_as_active))
            .body(json!({ "certificatePem": text_or_file(certificate_pem)? })),
        IotCommand::UpdateCertificate {
            certificate_id,
            new_status,
        } => Call::new("PUT", format!("/certificates/{}", e(certificate_id)))
            .query(format!("newStatus={}", new_status.name())),
        IotCommand::DescribeCertificate { certificate_id } => {
            Call::new("GET", format!("/certificates/{}", e(certificate_id)))
        }
        IotCommand::ListCertificates => Call::new("GET", "/certificates"),
        IotCommand::DeleteCertificate { certificate_id } => {
            Call::new("DELETE", format!("/certificates/{}", e(certificate_id)))
        }
        IotCommand::AttachPolicy {
            policy_name,
            target,
        } => Call::new("PUT", format!("/target-policies/{}", e(policy_name)))
            .body(json!({ "target": target })),
        IotCommand::DetachPolicy {
            policy_name,
            target,
        } => Call::new("POST", format!("/target-policies/{}", e(policy_name)))
            .body(json!({ "target": target })),
        IotCommand::AttachPrincipalPolicy {
            policy_name,
            principal,
        } => Call::new("PUT", format!("/principal-policies/{}", e(policy_name)))
            .header("x-amzn-iot-principal", principal),
        IotCommand::DetachPrincipalPolicy {
            policy_name,
            principal,
        } => Call::new("DELETE", format!("/principal-policies/{}", e(policy_name)))
            .header("x-amzn-iot-principal", principal),
        IotCommand::CreateAccessKey { principal } => {
            Call::new("POST", "/access-keys").body(json!({ "principal": principal }))
        }
        IotCommand::CreatePolicy {
            policy_name,
            policy_document,
        } => Call::new("POST", format!("/policies/{}", e(policy_name)))
            .body(json!({ "policyDocument": text_or_file(policy_document)? })),
        IotCommand::GetPolicy { policy_name } => {
            Call::new("GET", format!("/policies/{}", e(policy_name)))
        }
        IotCommand::ListPolicies => Call::new("GET", "/policies"),
        IotCommand::DeletePolicy { policy_name } => {
            Call::new("DELETE", format!("/policies/{}", e(policy_name)))
        }
        IotCommand::ListAttachedPolicies { target } => {
            Call::new("POST", format!("/attached-policies/{}", e(target)))
        }
        IotCommand::ListTargetsForPolicy { policy_name } => {
            Call::new("POST", format!("/policy-targets/{}", e(policy_name)))
        }
        IotCommand::CreateAuthorizer {
            authorizer_name,
            authorizer_function_arn,
            token_key_name,
            token_signing_public_keys,
            status,
            signing_disabled,
        } => {
            let mut keys = serde_json::Map::new();
            for pair in token_signing_public_keys {
                let (name, value) = pair.split_once('=').with_context(|| {
                    format!("--token-signing-public-keys {pair:?}: expected NAME=PEM")
                })?;
                keys.insert(name.to_owned(), text_or_file(value)?.into());
            }
            Call::new("POST", format!("/authorizer/{}", e(authorizer_name))).body(json!({
                "authorizerFunctionArn": authorizer_function_arn,
                "tokenKeyName": token_key_name,
                "tokenSigningPublicKeys": keys,
                "status": status.clone().unwrap_or_else(|| "ACTIVE".into()),
                "signingDisabled": signing_disabled,
            }))
        }
        IotCommand::DescribeAuthorizer { authorizer_name } => {
            Call::new("GET", format!("/authorizer/{}", e(authorizer_name)))
        }
        IotCommand::ListAuthorizers => Call::new("GET", "/authorizers/"),
        IotCommand::UpdateAuthorizer {
            authorizer_name,
            authorizer_function_arn,
            token_key_name,
            status,
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
            Call::new("PUT", format!("/authorizer/{}", e(authorizer_name)))
                .body(Value::Object(body))
        }
        IotCommand::DeleteAuthorizer { authorizer_name } => {
            Call::new("DELETE", format!("/authorizer/{}", e(authorizer_name)))
        }
        IotCommand::SetDefaultAuthorizer { authorizer_name } => {
            Call::new("POST", "/default-authorizer")
                .body(json!({ "authorizerName": authorizer_name }))
        }
        IotCommand::DescribeEndpoint { endpoint_type } => Call::new("GET", "/endpoint").query(
            endpoint_type
                .as_ref()
                .map(|kind| format!("endpointType={}", e(kind)))
                .unwrap_or_default(),
        ),
        IotCommand::TestAuthorization {
            principal,
            auth_infos,
            action,
            resource,
            client_id,
            policy_names_to_add,
        } => {
            let mut infos = Vec::new();
            if let (Some(action), Some(resource)) = (action, resource) {
                infos.push(json!({ "actionType": action, "resources": [resource] }));
            }
            for info in auth_infos {
                let (action, resources) = parse_auth_info(info)?;
                infos.push(json!({ "actionType": action, "resources": resources }));
            }
            if infos.is_empty() {
                bail!("give --action and --resource, or --auth-infos actionType=…,resources=…");
            }
            Call::new("POST", "/test-authorization").body(json!({
                "principal": principal,
                "authInfos": infos,
                "policyNamesToAdd": policy_names_to_add,
                "clientId": client_id,
            }))
        }
    };
    Ok(call)
}

/// As the AWS CLI: an empty answer prints nothing.
fn print_answer(answer: &Value) -> anyhow::Result<()> {
    if answer.as_object().is_some_and(|object| object.is_empty()) {
        return Ok(());
    }
    println!("{}", serde_json::to_string_pretty(answer)?);
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
    fn auth_infos_shorthand() {
        let (action, resources) =
            parse_auth_info("actionType=PUBLISH,resources=arn:a:topic/x,arn:a:topic/y").unwrap();
        assert_eq!(action, "PUBLISH");
        assert_eq!(resources, ["arn:a:topic/x", "arn:a:topic/y"]);
        assert!(parse_auth_info("resources=x").is_err());
        assert!(parse_auth_info("bogus=1").is_err());
    }

    #[test]
    fn test_authorization_both_forms_make_one_body() {
        let call = request(&IotCommand::TestAuthorization {
            principal: "anonymous".into(),
            auth_infos: vec!["actionType=PUBLISH,resources=arn:a:topic/x,arn:a:topic/y".into()],
            action: Some("iot:Connect".into()),
            resource: Some("arn:a:client/c".into()),
            client_id: Some("c".into()),
            policy_names_to_add: vec!["p".into()],
        })
        .unwrap();
        assert_eq!(
            (call.method, call.path.as_str()),
            ("POST", "/test-authorization")
        );
        assert_eq!(
            call.body.unwrap(),
            json!({
                "principal": "anonymous",
                "authInfos": [
                    {"actionType": "iot:Connect", "resources": ["arn:a:client/c"]},
                    {"actionType": "PUBLISH", "resources": ["arn:a:topic/x", "arn:a:topic/y"]},
                ],
                "policyNamesToAdd": ["p"],
                "clientId": "c",
            })
        );
    }

    #[test]
    fn answers_read_as_the_api_client_reads_them() {
        let empty = Answer {
            status: 200,
            error_kind: None,
            body: String::new(),
        };
        assert_eq!(answer_value(empty).unwrap(), json!({}));
        let failed = Answer {
            status: 404,
            error_kind: Some("ResourceNotFoundException"),
            body: json!({"message": "policy p does not exist"}).to_string(),
        };
        assert_eq!(
            answer_value(failed).unwrap_err().to_string(),
            "ResourceNotFoundException (HTTP 404): policy p does not exist"
        );
    }
}
