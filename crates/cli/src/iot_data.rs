//! `pubsub iot-data …`: the iot-data plane (the Device Shadow API, publish), with the AWS
//! CLI's command names, flags and output: a shadow document goes to the output file given
//! as the last argument (`-` for stdout), as `aws iot-data` writes its blob answers.
//!
//! The requests go where `pubsub iot` sends its own ([`Location`]): `--endpoint-url`, or
//! the broker running on the data directory. The shadow service exists only in a running
//! broker, so with none these commands fail with the control plane's
//! `ServiceUnavailableException`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use broker::control::ApiRequest;
use clap::Subcommand;

use crate::api::{encode_segment, read_answer};
use crate::iot::{answer_offline, Location};

#[derive(Subcommand)]
pub enum IotDataCommand {
    /// Writes a shadow document (GetThingShadow) to OUTFILE.
    #[command(name = "get-thing-shadow")]
    GetThingShadow {
        #[arg(long)]
        thing_name: String,
        /// A named shadow (default: the thing's classic shadow).
        #[arg(long)]
        shadow_name: Option<String>,
        /// Where the document goes (`-`: stdout).
        outfile: PathBuf,
    },
    /// Updates a shadow (UpdateThingShadow) and writes the accepted document to OUTFILE.
    #[command(name = "update-thing-shadow")]
    UpdateThingShadow {
        #[arg(long)]
        thing_name: String,
        #[arg(long)]
        shadow_name: Option<String>,
        /// The request state document: JSON text, `file://PATH` or `fileb://PATH`.
        #[arg(long)]
        payload: String,
        /// Accepted for compatibility with AWS CLI v2 scripts (`raw-in-base64-out`); the
        /// payload is always taken as given.
        #[arg(long)]
        cli_binary_format: Option<String>,
        outfile: PathBuf,
    },
    /// Deletes a shadow (DeleteThingShadow) and writes `{"version","timestamp"}` to OUTFILE.
    #[command(name = "delete-thing-shadow")]
    DeleteThingShadow {
        #[arg(long)]
        thing_name: String,
        #[arg(long)]
        shadow_name: Option<String>,
        outfile: PathBuf,
    },
    /// Prints a thing's named shadows, one page (ListNamedShadowsForThing).
    #[command(name = "list-named-shadows-for-thing")]
    ListNamedShadowsForThing {
        #[arg(long)]
        thing_name: String,
        /// 1–100 (default 25).
        #[arg(long)]
        page_size: Option<u32>,
        #[arg(long)]
        next_token: Option<String>,
    },
    /// Publishes one message over HTTP (iot-data Publish).
    Publish {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 0)]
        qos: u8,
        #[arg(long)]
        retain: bool,
        /// The payload: text, `file://PATH` or `fileb://PATH` (default: empty).
        #[arg(long)]
        payload: Option<String>,
        /// Accepted for compatibility, as for update-thing-shadow.
        #[arg(long)]
        cli_binary_format: Option<String>,
    },
}

/// One iot-data request: method, encoded path, query, body.
#[derive(Debug, PartialEq, Eq)]
struct DataCall {
    method: &'static str,
    path: String,
    query: String,
    body: Vec<u8>,
}

/// The request of a command. Pure but for reading a `file://` payload.
fn request(command: &IotDataCommand) -> anyhow::Result<DataCall> {
    let shadow = |method, thing: &str, shadow: &Option<String>, body| DataCall {
        method,
        path: format!("/things/{}/shadow", encode_segment(thing)),
        query: shadow
            .as_deref()
            .map(|name| format!("name={}", encode_segment(name)))
            .unwrap_or_default(),
        body,
    };
    Ok(match command {
        IotDataCommand::GetThingShadow {
            thing_name,
            shadow_name,
            ..
        } => shadow("GET", thing_name, shadow_name, Vec::new()),
        IotDataCommand::UpdateThingShadow {
            thing_name,
            shadow_name,
            payload,
            ..
        } => shadow("POST", thing_name, shadow_name, blob(payload)?),
        IotDataCommand::DeleteThingShadow {
            thing_name,
            shadow_name,
            ..
        } => shadow("DELETE", thing_name, shadow_name, Vec::new()),
        IotDataCommand::ListNamedShadowsForThing {
            thing_name,
            page_size,
            next_token,
        } => {
            let mut query = Vec::new();
            if let Some(token) = next_token {
                query.push(format!("nextToken={}", encode_segment(token)));
            }
            if let Some(size) = page_size {
                query.push(format!("pageSize={size}"));
            }
            DataCall {
                method: "GET",
                path: format!(
                    "/api/things/shadow/ListNamedShadowsForThing/{}",
                    encode_segment(thing_name)
                ),
                query: query.join("&"),
                body: Vec::new(),
            }
        }
        IotDataCommand::Publish {
            topic,
            qos,
            retain,
            payload,
            ..
        } => DataCall {
            method: "POST",
            path: format!("/topics/{}", encode_segment(topic)),
            query: format!("qos={qos}&retain={retain}"),
            body: payload
                .as_deref()
                .map(blob)
                .transpose()?
                .unwrap_or_default(),
        },
    })
}

/// A blob argument as the AWS CLI reads one: `fileb://PATH` (bytes), `file://PATH`, or
/// the text itself.
fn blob(argument: &str) -> anyhow::Result<Vec<u8>> {
    match argument.strip_prefix("fileb://") {
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {path}")),
        None => Ok(crate::iot::text_or_file(argument)?.into_bytes()),
    }
}

pub fn run(location: Location, command: IotDataCommand) -> anyhow::Result<()> {
    let call = request(&command)?;
    let answer = send(&location, &call)?;
    match &command {
        IotDataCommand::GetThingShadow { outfile, .. }
        | IotDataCommand::UpdateThingShadow { outfile, .. }
        | IotDataCommand::DeleteThingShadow { outfile, .. } => write_blob(outfile, &answer),
        IotDataCommand::ListNamedShadowsForThing { .. } => {
            let value: serde_json::Value = serde_json::from_str(&answer)
                .with_context(|| format!("answer is not JSON: {answer}"))?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
        IotDataCommand::Publish { .. } => Ok(()),
    }
}

/// The answer's body, unchanged, once its status says success (else the error
/// `"<ErrorType> (HTTP <status>): <message>"`): from the running broker, or from the data
/// directory when none runs.
fn send(location: &Location, call: &DataCall) -> anyhow::Result<String> {
    let (status, kind, body) = match location.api()? {
        Some(api) => api.send(call.method, &call.path, &call.query, &[], &call.body)?,
        None => {
            let request = ApiRequest {
                method: call.method,
                path: &call.path,
                query: &call.query,
                headers: &[],
                body: &call.body,
            };
            let answer = answer_offline(location.config()?, &request)?;
            (
                answer.status,
                answer.error_kind.map(str::to_owned),
                answer.body,
            )
        }
    };
    read_answer(status, kind.as_deref(), &body)?;
    Ok(body)
}

fn write_blob(outfile: &PathBuf, blob: &str) -> anyhow::Result<()> {
    if outfile.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(blob.as_bytes())?;
        return Ok(stdout.flush()?);
    }
    std::fs::write(outfile, blob).with_context(|| format!("cannot write {}", outfile.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_commands_make_the_iot_data_requests() {
        let get = request(&IotDataCommand::GetThingShadow {
            thing_name: "lamp".into(),
            shadow_name: Some("$cfg".into()),
            outfile: "-".into(),
        })
        .unwrap();
        assert_eq!(
            get,
            DataCall {
                method: "GET",
                path: "/things/lamp/shadow".into(),
                query: "name=%24cfg".into(),
                body: Vec::new(),
            }
        );
        let update = request(&IotDataCommand::UpdateThingShadow {
            thing_name: "lamp".into(),
            shadow_name: None,
            payload: r#"{"state":{}}"#.into(),
            cli_binary_format: Some("raw-in-base64-out".into()),
            outfile: "-".into(),
        })
        .unwrap();
        assert_eq!(
            (update.method, update.query.as_str(), &update.body[..]),
            ("POST", "", &br#"{"state":{}}"#[..])
        );
        let list = request(&IotDataCommand::ListNamedShadowsForThing {
            thing_name: "lamp".into(),
            page_size: Some(2),
            next_token: Some("a/b".into()),
        })
        .unwrap();
        assert_eq!(
            (list.path.as_str(), list.query.as_str()),
            (
                "/api/things/shadow/ListNamedShadowsForThing/lamp",
                "nextToken=a%2Fb&pageSize=2"
            )
        );
        let publish = request(&IotDataCommand::Publish {
            topic: "a/b".into(),
            qos: 1,
            retain: false,
            payload: Some("hi".into()),
            cli_binary_format: None,
        })
        .unwrap();
        assert_eq!(
            (
                publish.path.as_str(),
                publish.query.as_str(),
                &publish.body[..]
            ),
            ("/topics/a%2Fb", "qos=1&retain=false", &b"hi"[..])
        );
    }

    #[test]
    fn payloads_come_from_files_as_with_the_aws_cli() {
        let path = std::env::temp_dir().join(format!("iot-data-blob-{}.json", std::process::id()));
        std::fs::write(&path, b"{\"state\":null}").unwrap();
        let text = blob(&format!("file://{}", path.display())).unwrap();
        let bytes = blob(&format!("fileb://{}", path.display())).unwrap();
        assert_eq!(
            (&text[..], &bytes[..]),
            (&b"{\"state\":null}"[..], &b"{\"state\":null}"[..])
        );
        std::fs::remove_file(&path).unwrap();
        assert!(blob("file:///no/such/file").is_err());
    }
}
