//! `pubsub`: the broker and its tools in one binary.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: freed pages go back to the OS at once instead
/// of after 10 s, so that the broker's resident memory follows the memory budget while
/// large queued messages come and go (`bench/backlog`: peak while draining 113 MB with the
/// default decay, 54 MB with this; docs/DESIGN-NOTES.md, Memory budget). Background
/// threads do the purging: done inline, it stalled runtime workers during connection
/// churn (a flood of 1,000 openings, tests/integration/test_floods.py: an unrelated pair's
/// messages waited 50–870 ms; with background threads, p99 within 5 ms of the baseline,
/// and `bench/backlog` peaks unchanged at 47 / 60 MB).
#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
pub static JEMALLOC_OPTIONS: &[u8; 57] =
    b"background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0\0";

mod api;
mod bench;
mod client;
mod cognito;
mod cognito_idp;
mod demo;
mod iot;
mod iot_data;
mod plot;

#[derive(Parser)]
#[command(
    name = "pubsub",
    version,
    about = "An AWS IoT Core-compatible MQTT broker and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker. Without --config: the embedded default (plain MQTT on
    /// 127.0.0.1:1883, anonymous clients allowed everything, data in ./.pubsub).
    Broker {
        /// TOML configuration file (see README: Configuration).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides `data_dir` from the configuration.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Load generator for any MQTT 3.1.1 broker.
    Bench {
        /// Also draw the result as an SVG bar chart to this file.
        #[arg(long, global = true, value_name = "FILE")]
        plot: Option<PathBuf>,
        #[command(subcommand)]
        scenario: bench::Scenario,
    },
    /// Cognito Identity calls, shaped as `aws cognito-identity` (get-id,
    /// get-credentials-for-identity).
    Cognito {
        #[command(subcommand)]
        command: cognito::CognitoCommand,
    },
    /// Cognito user pools, named and shaped as `aws cognito-idp` (create-user-pool,
    /// sign-up, initiate-auth, …), on the running broker or offline.
    #[command(name = "cognito-idp")]
    CognitoIdp {
        /// Where the broker is (`--config`, `--data-dir`, `--endpoint-url`), as for `iot`.
        #[command(flatten)]
        location: iot::Location,
        #[command(subcommand)]
        command: cognito_idp::CognitoIdpCommand,
    },
    /// The control plane, named and shaped as `aws iot`.
    Iot {
        /// Where the broker's state is (`--config`, `--data-dir`, `--endpoint-url`); given
        /// before or after the command.
        #[command(flatten)]
        location: iot::Location,
        #[command(subcommand)]
        command: iot::IotCommand,
    },
    /// The iot-data plane of a running broker, named and shaped as `aws iot-data`: the
    /// Device Shadow API (get-thing-shadow, update-thing-shadow, delete-thing-shadow,
    /// list-named-shadows-for-thing) and publish.
    #[command(name = "iot-data")]
    IotData {
        /// Where the broker is (`--config`, `--data-dir`, `--endpoint-url`), as for `iot`.
        #[command(flatten)]
        location: iot::Location,
        #[command(subcommand)]
        command: iot_data::IotDataCommand,
    },
    /// Publish one message (exit 1 with the reason when the broker refuses it).
    Pub(client::PubArgs),
    /// Subscribe and print messages (payload per line; -v: `topic payload`, then any MQTT 5
    /// properties).
    Sub(client::SubArgs),
    /// End to end on an embedded broker: every connection method of the SDK, live.
    Demo,
}

fn main() {
    let cli = Cli::parse();
    // Client commands keep stderr for their one-line failure reason: logs only with
    // RUST_LOG. `pubsub iot` answers offline through the broker's own control plane, whose
    // request log is for a running broker: warnings only. Everything else logs at info.
    let quiet = matches!(
        cli.command,
        Command::Pub(_) | Command::Sub(_) | Command::Demo
    );
    let default_level = match cli.command {
        _ if quiet => "off",
        Command::Iot { .. } | Command::IotData { .. } | Command::CognitoIdp { .. } => "warn",
        _ => "info",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter);
        tracing_subscriber::registry().with(fmt).init();
    }
    let result = match cli.command {
        Command::Pub(args) => client::run_pub(args),
        Command::Sub(args) => client::run_sub(args),
        Command::Demo => demo::run(),
        Command::Broker { config, data_dir } => run_broker(config, data_dir),
        Command::Iot { location, command } => iot::run(location, command),
        Command::IotData { location, command } => iot_data::run(location, command),
        Command::Cognito { command } => cognito::run(command),
        Command::CognitoIdp { location, command } => cognito_idp::run(location, command),
        Command::Bench { scenario, plot } => bench::run(scenario, plot),
    };
    if let Err(error) = result {
        eprintln!("pubsub: {error:#}");
        std::process::exit(1);
    }
}

fn run_broker(config_file: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = match &config_file {
        Some(path) => broker::Config::load(path)?,
        None => broker::Config::embedded_default(),
    };
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    raise_open_files_limit();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let running = broker::start(config).await?;
        wait_for_signal().await?;
        tracing::info!("shutting down");
        running.shutdown().await;
        Ok(())
    })
}

/// Raises the soft limit on open files to the hard one. A broker holds a descriptor per
/// connection, and one per authorizer call in flight: the usual soft limit of 1,024 would
/// refuse a thousand clients (accept fails with EMFILE) although the hard limit allows
/// far more.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur >= limit.rlim_max
    {
        return;
    }
    let before = limit.rlim_cur;
    // Linux refuses more than fs.nr_open (1,048,576 by default), "unlimited" included.
    limit.rlim_cur = limit.rlim_max.min(1 << 20);
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::debug!(before, after = limit.rlim_cur, "open-files limit raised");
    }
}

/// SIGINT or SIGTERM: both mean "stop gracefully".
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot watch SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
