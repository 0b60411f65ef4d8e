//! `pubsub`: the broker and its tools in one binary.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod bench;
mod iot;

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
        #[command(subcommand)]
        scenario: bench::Scenario,
    },
    /// The control plane, named and shaped as `aws iot`.
    Iot {
        #[command(subcommand)]
        command: iot::IotCommand,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Broker { config, data_dir } => run_broker(config, data_dir),
        Command::Iot { command } => iot::run(command),
        Command::Bench { scenario } => bench::run(scenario),
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
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let running = broker::start(config).await?;
        wait_for_signal().await?;
        tracing::info!("shutting down");
        running.shutdown().await;
        Ok(())
    })
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
