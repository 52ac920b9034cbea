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
        /// Watch the connectors dir: new or changed .wasm files are validated and activated.
        #[arg(long)]
        watch: bool,
    },
    /// Offline tools for connector components.
    Connector {
        #[command(subcommand)]
        command: ConnectorCommand,
    },
    /// Run the Lever → Certn flow end to end against loopback simulators and print its timeline.
    Demo {
        /// Directory holding the built connector components.
        #[arg(long, default_value = "plugins/target/wasm32-wasip2/release")]
        connectors: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// Runs the checks an upload goes through; exits non-zero with the reason if it would be rejected.
    Validate {
        file: PathBuf,
        /// The connector id it must have (the one it would replace).
        #[arg(long)]
        connector: Option<String>,
        /// An approved outbound host (repeat); when given, the manifest may ask only for these.
        #[arg(long = "approved-host")]
        approved_hosts: Vec<String>,
    },
    /// Prints the manifest, imports/exports and contract version as JSON.
    Inspect { file: PathBuf },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            match cli.command {
                Command::Demo { .. } | Command::Connector { .. } => "error".into(),
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
            Command::Serve { config, watch } => serve(config, watch).await,
            Command::Connector { command } => connector(command).await,
            Command::Demo { connectors } => switchyard::demo::run(&connectors).await,
        }
    })
}

async fn connector(command: ConnectorCommand) -> anyhow::Result<()> {
    match command {
        ConnectorCommand::Validate {
            file,
            connector,
            approved_hosts,
        } => {
            match switchyard::inspect::validate(&file, connector.as_deref(), &approved_hosts).await
            {
                Ok(tag) => println!("ok: {tag}"),
                Err(e) => {
                    // The reason is the whole answer: no backtrace, no error chain.
                    eprintln!("{}: {e}", file.display());
                    std::process::exit(1);
                }
            }
        }
        ConnectorCommand::Inspect { file } => {
            let report = switchyard::inspect::inspect(&file).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

async fn serve(path: PathBuf, watch: bool) -> anyhow::Result<()> {
    let mut config = switchyard::Config::load(&path)?;
    config.runtime.watch |= watch;
    let host = switchyard::start(config)
        .await
        .context("starting the host")?;
    tracing::info!(addr = %host.addr, "switchyard listening");
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    host.shutdown().await;
    Ok(())
}
