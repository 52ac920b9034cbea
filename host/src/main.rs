//! The `switchyard` command line: `serve`, `demo`, and connector tools.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Runs screening-vendor connectors (WebAssembly components) behind ATS webhooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve webhooks for the integrations in a config file.
    Serve {
        /// The TOML config file (see switchyard.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the Lever → Certn flow end to end against loopback simulators and print its timeline.
    Demo {
        /// Directory holding the built connector components.
        #[arg(long, default_value = "plugins/target/wasm32-wasip2/release")]
        connectors: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            match cli.command {
                Command::Demo { .. } => "error".into(),
                _ => "info".into(),
            }
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(config).await,
            Command::Demo { connectors } => switchyard::demo::run(&connectors).await,
        }
    })
}

async fn serve(path: PathBuf) -> anyhow::Result<()> {
    let config = switchyard::Config::load(&path)?;
    let host = switchyard::start(config)
        .await
        .context("starting the host")?;
    tracing::info!(addr = %host.addr, "switchyard listening");
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    host.shutdown().await;
    Ok(())
}
