//! `switchyard-demo`: Lever → Certn, Justifacts, Canditech, then Gem → Certn, end to end against
//! loopback simulators, printing the host's timeline (what `scripts/demo.sh` runs).

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "switchyard-demo",
    version,
    about = "Runs Lever → Certn, then Gem → Certn, end to end against loopback simulators, printing the timeline"
)]
struct Cli {
    /// Directory holding the built connector components.
    #[arg(long, default_value = "plugins/target/wasm32-wasip2/release")]
    connectors: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The timeline is the output; the host's own logs only when something fails.
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    tokio::runtime::Runtime::new()?.block_on(switchyard_testkit::demo::run(&cli.connectors))
}
