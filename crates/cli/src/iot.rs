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
use aws_credential_types::Credentials;
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
    pub(crate) fn config(&self) -> anyhow::Result<Config> {
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
    pub(crate) fn api(&self) -> anyhow::Result<Option<ApiClient>> {
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
        // The AWS environment variables as the AWS CLI reads them: a session token makes
        // them temporary credentials (Cognito's), sent as `X-Amz-Security-Token`, signed.
        let (key, secret, token) = match (
            config.admin_key(),
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some((key, secret)), _, _) => (key.to_owned(), secret.to_owned(), None),
            (None, Ok(key), Ok(secret)) if self.endpoint_url.is_some() => (
                key,
                secret,
                std::env::var("AWS_SESSION_TOKEN")
                    .ok()
                    .filter(|token| !token.is_empty()),
            ),
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
                    None,
                )
            }
        };
        let credentials = Credentials::new(key, secret, token, None, "pubsub-iot");
        Ok(Some(ApiClient::with_credentials(
            &endpoint,
            &config.region,
            credentials,
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

/// The AWS CLI's pagination of a list command: by default every page; with `--max-items`
/// at most that many items, and a `NextToken` to go on from with `--starting-token`.
#[derive(Args, Clone, Default)]
pub struct Paging {
    /// Items per request (the API's `maxResults`, 1–250).
    #[arg(long)]
    page_size: Option<usize>,
    /// At most this many items in all; the answer carries `NextToken` if there are more.
    #[arg(long)]
    max_items: Option<usize>,
    /// The `NextToken` of an earlier answer.
    #[arg(long)]
    starting_token: Option<String>,
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
    /// Creates a thing. `--attribute-payload` is JSON (`{"attributes": {"room": "lab"}}`),
    /// `file://PATH`, or the shorthand `attributes={room=lab,floor=2}`.
    #[command(name = "create-thing")]
    CreateThing {
        #[arg(long)]
        thing_name: String,
        #[arg(long)]
        thing_type_name: Option<String>,
        #[arg(long)]
        attribute_payload: Option<String>,
    },
    #[command(name = "describe-thing")]
    DescribeThing {
        #[arg(long)]
        thing_name: String,
    },
    /// Lists things, optionally those with an attribute value or a thing type.
    #[command(name = "list-things")]
    ListThings {
        #[arg(long)]
        attribute_name: Option<String>,
        #[arg(long)]
        attribute_value: Option<String>,
        #[arg(long)]
        thing_type_name: Option<String>,
        /// `--attribute-value` is a prefix of the value.
        #[arg(long)]
        use_prefix_attribute_value: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Changes a thing's type or attributes (`--attribute-payload` as for create-thing,
    /// plus `merge`: `attributes={a=1},merge=true`; an empty value removes an attribute).
    #[command(name = "update-thing")]
    UpdateThing {
        #[arg(long)]
        thing_name: String,
        #[arg(long)]
        thing_type_name: Option<String>,
        #[arg(long)]
        attribute_payload: Option<String>,
        /// Refused with VersionConflictException unless the thing has this version.
        #[arg(long)]
        expected_version: Option<u64>,
        #[arg(long)]
        remove_thing_type: bool,
    },
    #[command(name = "delete-thing")]
    DeleteThing {
        #[arg(long)]
        thing_name: String,
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// Attaches a principal (certificate ARN, Cognito identity id) to a thing.
    #[command(name = "attach-thing-principal")]
    AttachThingPrincipal {
        #[arg(long)]
        thing_name: String,
        #[arg(long)]
        principal: String,
    },
    #[command(name = "detach-thing-principal")]
    DetachThingPrincipal {
        #[arg(long)]
        thing_name: String,
        #[arg(long)]
        principal: String,
    },
    #[command(name = "list-thing-principals")]
    ListThingPrincipals {
        #[arg(long)]
        thing_name: String,
        #[command(flatten)]
        paging: Paging,
    },
    #[command(name = "list-principal-things")]
    ListPrincipalThings {
        #[arg(long)]
        principal: String,
        #[command(flatten)]
        paging: Paging,
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
    let api = location.api()?;
    let config = match api {
        Some(_) => None,
        None => Some(location.config()?),
    };
    let send = |call: &Call| match (&api, &config) {
        (Some(api), _) => api.call(
            call.method,
            &call.path,
            &call.query,
            &call.header_pairs(),
            call.body.as_ref(),
        ),
        (None, Some(config)) => local(config.clone(), call),
        (None, None) => unreachable!("a config when there is no API"),
    };
    let answer = match paging_of(&command) {
        Some((key, paging)) => paginate(send, call, key, paging)?,
        None => send(&call)?,
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
#[derive(Debug, Clone)]
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
    let body = call.body.as_ref().map(Value::to_string).unwrap_or_default();
    let request = ApiRequest {
        method: call.method,
        path: &call.path,
        query: &call.query,
        headers: &call.header_pairs(),
        body: body.as_bytes(),
    };
    answer_value(answer_offline(config, &request)?)
}

/// The broker's control plane's answer to one request, on the data directory (no broker
/// running: data-plane operations answer 503).
pub(crate) fn answer_offline(config: Config, request: &ApiRequest<'_>) -> anyhow::Result<Answer> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(answer_local(config, request)))
}

/// An [`Answer`] read as [`ApiClient::call`] reads an HTTP answer.
fn answer_value(answer: Answer) -> anyhow::Result<Value> {
    read_answer(answer.status, answer.error_kind, &answer.body)
}

/// Text given as is, or read from `file://PATH` (as the AWS CLI does).
pub(crate) fn text_or_file(text: &str) -> anyhow::Result<String> {
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
        IotCommand::CreateThing {
            thing_name,
            thing_type_name,
            attribute_payload,
        } => {
            let body = thing_body(thing_type_name, attribute_payload)?;
            Call::new("POST", format!("/things/{}", e(thing_name))).body(Value::Object(body))
        }
        IotCommand::DescribeThing { thing_name } => {
            Call::new("GET", format!("/things/{}", e(thing_name)))
        }
        IotCommand::ListThings {
            attribute_name,
            attribute_value,
            thing_type_name,
            use_prefix_attribute_value,
            ..
        } => {
            let mut query = Vec::new();
            for (name, value) in [
                ("attributeName", attribute_name),
                ("attributeValue", attribute_value),
                ("thingTypeName", thing_type_name),
            ] {
                if let Some(value) = value {
                    query.push(format!("{name}={}", e(value)));
                }
            }
            if *use_prefix_attribute_value {
                query.push("usePrefixAttributeValue=true".into());
            }
            Call::new("GET", "/things").query(query.join("&"))
        }
        IotCommand::UpdateThing {
            thing_name,
            thing_type_name,
            attribute_payload,
            expected_version,
            remove_thing_type,
        } => {
            let mut body = thing_body(thing_type_name, attribute_payload)?;
            if let Some(version) = expected_version {
                body.insert("expectedVersion".into(), (*version).into());
            }
            if *remove_thing_type {
                body.insert("removeThingType".into(), true.into());
            }
            Call::new("PATCH", format!("/things/{}", e(thing_name))).body(Value::Object(body))
        }
        IotCommand::DeleteThing {
            thing_name,
            expected_version,
        } => Call::new("DELETE", format!("/things/{}", e(thing_name))).query(
            expected_version
                .map(|version| format!("expectedVersion={version}"))
                .unwrap_or_default(),
        ),
        IotCommand::AttachThingPrincipal {
            thing_name,
            principal,
        } => Call::new("PUT", format!("/things/{}/principals", e(thing_name)))
            .header("x-amzn-principal", principal),
        IotCommand::DetachThingPrincipal {
            thing_name,
            principal,
        } => Call::new("DELETE", format!("/things/{}/principals", e(thing_name)))
            .header("x-amzn-principal", principal),
        IotCommand::ListThingPrincipals { thing_name, .. } => {
            Call::new("GET", format!("/things/{}/principals", e(thing_name)))
        }
        IotCommand::ListPrincipalThings { principal, .. } => {
            Call::new("GET", "/principals/things").header("x-amzn-principal", principal)
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

/// The list a paginated command gathers (its answer's key) and how.
fn paging_of(command: &IotCommand) -> Option<(&'static str, &Paging)> {
    match command {
        IotCommand::ListThings { paging, .. } => Some(("things", paging)),
        IotCommand::ListThingPrincipals { paging, .. } => Some(("principals", paging)),
        IotCommand::ListPrincipalThings { paging, .. } => Some(("things", paging)),
        _ => None,
    }
}

/// Follows `nextToken` as the AWS CLI does: the items of every page under `key`, or with
/// `--max-items` at most that many and `NextToken` when more remain. A page never holds
/// more than the items still wanted, so `NextToken` is the API's own token.
fn paginate(
    send: impl Fn(&Call) -> anyhow::Result<Value>,
    call: Call,
    key: &str,
    paging: &Paging,
) -> anyhow::Result<Value> {
    if paging.max_items == Some(0) || paging.page_size == Some(0) {
        bail!("--max-items and --page-size must be at least 1");
    }
    let mut items = Vec::new();
    let mut token = paging.starting_token.clone();
    loop {
        let wanted = paging.max_items.map(|max| max - items.len());
        let size = match (paging.page_size, wanted) {
            (Some(size), Some(wanted)) => Some(size.min(wanted)),
            (size, wanted) => size.or(wanted),
        };
        let mut query: Vec<String> = Some(call.query.clone())
            .filter(|query| !query.is_empty())
            .into_iter()
            .collect();
        if let Some(size) = size {
            query.push(format!("maxResults={size}"));
        }
        if let Some(token) = &token {
            query.push(format!("nextToken={}", encode_segment(token)));
        }
        let page = send(&call.clone().query(query.join("&")))?;
        items.extend(page[key].as_array().cloned().unwrap_or_default());
        token = page["nextToken"].as_str().map(str::to_owned);
        let full = paging.max_items.is_some_and(|max| items.len() >= max);
        if token.is_none() || full {
            break;
        }
    }
    let mut answer = json!({ key: items });
    if let Some(token) = token {
        answer["NextToken"] = token.into();
    }
    Ok(answer)
}

/// `--attribute-payload`: JSON (or `file://PATH`), or the AWS CLI's shorthand
/// `attributes={room=lab,floor=2},merge=true`.
fn parse_attribute_payload(text: &str) -> anyhow::Result<Value> {
    let text = text_or_file(text)?;
    let text = text.trim();
    if text.starts_with('{') {
        return serde_json::from_str(text)
            .with_context(|| format!("--attribute-payload is not JSON: {text}"));
    }
    let mut payload = serde_json::Map::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut parts = Vec::new();
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    for part in parts.into_iter().filter(|part| !part.trim().is_empty()) {
        let (key, value) = part
            .split_once('=')
            .with_context(|| format!("--attribute-payload: {part:?} is not KEY=VALUE"))?;
        match key.trim() {
            "attributes" => {
                let inner = value
                    .trim()
                    .strip_prefix('{')
                    .and_then(|rest| rest.strip_suffix('}'))
                    .with_context(|| {
                        format!("--attribute-payload: attributes={value} is not {{NAME=VALUE,…}}")
                    })?;
                let mut attributes = serde_json::Map::new();
                for pair in inner.split(',').filter(|pair| !pair.trim().is_empty()) {
                    let (name, value) = pair.split_once('=').with_context(|| {
                        format!("--attribute-payload: attribute {pair:?} is not NAME=VALUE")
                    })?;
                    attributes.insert(name.trim().to_owned(), value.trim().into());
                }
                payload.insert("attributes".into(), Value::Object(attributes));
            }
            "merge" => {
                let merge = match value.trim() {
                    "true" => true,
                    "false" => false,
                    other => bail!("--attribute-payload: merge={other} is not true or false"),
                };
                payload.insert("merge".into(), merge.into());
            }
            other => bail!("--attribute-payload: unknown key {other:?} (attributes, merge)"),
        }
    }
    Ok(Value::Object(payload))
}

/// As the AWS CLI: an empty answer prints nothing.
/// The body fields CreateThing and UpdateThing share: `thingTypeName` and
/// `attributePayload`, each when given.
fn thing_body(
    thing_type_name: &Option<String>,
    attribute_payload: &Option<String>,
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut body = serde_json::Map::new();
    if let Some(type_name) = thing_type_name {
        body.insert("thingTypeName".into(), type_name.clone().into());
    }
    if let Some(payload) = attribute_payload {
        body.insert("attributePayload".into(), parse_attribute_payload(payload)?);
    }
    Ok(body)
}

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
    fn attribute_payload_json_and_shorthand_make_one_body() {
        let json_form = parse_attribute_payload(
            r#"{"attributes": {"room": "lab", "floor": "2"}, "merge": true}"#,
        )
        .unwrap();
        let shorthand =
            parse_attribute_payload("attributes={room=lab, floor=2},merge=true").unwrap();
        assert_eq!(json_form, shorthand);
        assert_eq!(
            parse_attribute_payload("attributes={a=x=y,b=}").unwrap(),
            json!({"attributes": {"a": "x=y", "b": ""}})
        );
        assert!(parse_attribute_payload("merge=maybe").is_err());
        assert!(parse_attribute_payload("attributes=a=b").is_err());
        assert!(parse_attribute_payload("colour=red").is_err());
    }

    #[test]
    fn pagination_follows_tokens_and_stops_at_max_items() {
        // A fake API over five names, pages as the broker makes them.
        let names = ["a", "b", "c", "d", "e"];
        let sent = std::cell::RefCell::new(Vec::new());
        let send = |call: &Call| -> anyhow::Result<Value> {
            sent.borrow_mut().push(call.query.clone());
            let param = |name: &str| {
                call.query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                    .map(str::to_owned)
            };
            let max: usize = param("maxResults").map_or(2, |m| m.parse().unwrap());
            let after = param("nextToken").unwrap_or_default();
            let rest: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| *n > after.as_str())
                .collect();
            let page = &rest[..max.min(rest.len())];
            let mut answer = json!({ "things": page });
            if rest.len() > max {
                answer["nextToken"] = json!(page.last().unwrap());
            }
            Ok(answer)
        };
        let call = Call::new("GET", "/things").query("thingTypeName=t");
        let all = paginate(send, call.clone(), "things", &Paging::default()).unwrap();
        assert_eq!(all, json!({"things": ["a", "b", "c", "d", "e"]}));
        assert_eq!(sent.borrow().len(), 3);
        assert!(sent
            .borrow()
            .iter()
            .all(|q| q.starts_with("thingTypeName=t")));
        let some = Paging {
            page_size: Some(2),
            max_items: Some(3),
            starting_token: None,
        };
        let first = paginate(send, call.clone(), "things", &some).unwrap();
        assert_eq!(first, json!({"things": ["a", "b", "c"], "NextToken": "c"}));
        let next = Paging {
            starting_token: Some("c".into()),
            ..some
        };
        let rest = paginate(send, call, "things", &next).unwrap();
        assert_eq!(rest, json!({"things": ["d", "e"]}));
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
