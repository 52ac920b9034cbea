//! The `switchyard` command line: `serve`, connector tools and Gem keys (the demo is
//! `switchyard-demo`, in the test kit).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// mimalloc, for the host's allocations and SQLite's (`store::sqlite_malloc`, set in
/// `sqlite_global::configure`): malloc/free were top frames of both the group commit's writer
/// and the HTTP threads on glibc's allocator. (Issue 25's first trial, the host's allocations
/// alone on mimalloc with SQLite's left on glibc, measured within the noise.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Manage a Gem integration's API keys (the keys Gem uses to call switchyard).
    Gem {
        #[command(subcommand)]
        command: GemCommand,
    },
}

#[derive(Subcommand)]
enum GemCommand {
    /// Issue a new API key and print it once (only its hash is stored). Paste it into Gem.
    IssueKey {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        integration: String,
    },
    /// Revoke a key by its id (as shown by list-keys); it stops working at once.
    RevokeKey {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        integration: String,
        #[arg(long)]
        key_id: String,
    },
    /// List an integration's keys: ids, prefixes, creation and revocation times (never the keys).
    ListKeys {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        integration: String,
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
        /// Compiled-code cache directory, shared with `connector test` (default: none).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// The server's config file: check against its `[runtime]` limits (`max_memory_mib`,
        /// `max_instances`, `memory_mb`) instead of the defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Prints the manifest, imports/exports and contract version as JSON; exits non-zero with the
    /// reason when the component would not load.
    Inspect {
        file: PathBuf,
        /// The server's config file, for its `[runtime]` limits (default: the defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Creates a connector project from a template (builds and passes its scenario as created).
    New {
        /// The connector id: lower-case letters, digits and `-`, e.g. `acme-checks`.
        name: String,
        /// rust, python or js.
        #[arg(long)]
        lang: switchyard::authoring::new::Lang,
        /// The project directory (default ./<name>); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// (rust) The SDK crate `switchyard-connector` (plugins/sdk of a switchyard checkout);
        /// default $SWITCHYARD_SDK, then the tree this binary was built from.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Runs a component offline against a scenario (templates/SCENARIO.md): scripted vendor,
    /// config, state and calls. Exit 0 all steps passed, 1 a step failed, 2 unusable input.
    Test {
        file: PathBuf,
        scenario: PathBuf,
        /// Print only the step lines and problems, not what each passing call did.
        #[arg(long)]
        quiet: bool,
        /// Compiled-code cache directory (default ~/.cache/switchyard/compiled).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Compile every time (to measure a cold compile).
        #[arg(long, conflicts_with = "cache")]
        no_cache: bool,
        /// Deadline of each call, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
    },
}

/// Runs the command; an error is printed as its reason (and its causes), never with a
/// backtrace: `RUST_BACKTRACE` is for panics, and a refusal is an answer, not a crash.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // No transparent huge pages (what `MIMALLOC_ALLOW_THP=0` does): mimalloc asks for them for
    // its arenas, and each first touch of a 2 MiB page then zeroes it in the kernel, after a
    // compaction when memory is fragmented (`defrag=madvise`). Start-up with 10,000
    // integrations (a 4.8 MB config parsed) spent 70 % of its CPU there, 0.1–0.7 s of system
    // time varying with the machine's memory, and the idle RSS was 98 MB instead of 41.
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("warning: transparent huge pages left on: {e}");
    }
    // SAFETY: first thing, before any thread or connection: no other SQLite call can run.
    let sqlite = unsafe { switchyard::store::sqlite_global::configure() };
    if !sqlite.page_cache {
        eprintln!("warning: SQLite's page cache wrapper not installed (SQLite was initialized)");
    }
    if !sqlite.mimalloc {
        eprintln!("warning: SQLite allocates through the C library (SQLite was initialized)");
    }
    if !sqlite.memstatus_off {
        eprintln!("warning: SQLite's memory statistics left on (SQLite was initialized)");
    }
    if !sqlite.wal_writes {
        eprintln!("warning: SQLite writes its WAL frame by frame (no default VFS to wrap)");
    }
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            match cli.command {
                Command::Connector { .. } => "error".into(),
                _ => "info".into(),
            }
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let runtime = server_runtime()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config, watch } => serve(config, watch).await,
            Command::Connector { command } => connector(command).await,
            Command::Gem { command } => gem(command),
        }
    })
}

/// The runtime of the HTTP server (and of the other commands): half the CPUs, at least one
/// thread, unless `TOKIO_WORKER_THREADS` names a count. Not tokio's one per CPU: the store's
/// writer and checkpointer threads and the workers' own runtime take CPU beside it, and each
/// server thread that parks between requests is woken again (by the socket, by the group
/// commit's answers, by the other thread stealing). On 2 CPUs, one thread instead of two cut
/// the server threads' context switches per acknowledged webhook by about three quarters and
/// their CPU per webhook by about a fifth (issue 25).
fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // A count set here would override tokio's own reading of the variable.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(server_threads(cpus));
    }
    builder.build()
}

/// The server's threads on a machine of `cpus` CPUs.
fn server_threads(cpus: usize) -> usize {
    cpus.div_ceil(2).max(1)
}

async fn connector(command: ConnectorCommand) -> anyhow::Result<()> {
    match command {
        ConnectorCommand::Validate {
            file,
            connector,
            approved_hosts,
            config,
            cache,
        } => {
            let limits = runtime_settings(config.as_deref())?;
            match switchyard::wasm::inspect::check(
                &file,
                connector.as_deref(),
                &approved_hosts,
                &limits,
                cache.as_deref(),
            )
            .await
            {
                Ok(tag) => println!("ok: {tag}"),
                Err(e) => {
                    // The reason is the whole answer: no backtrace, no error chain.
                    eprintln!("{}: {e}", file.display());
                    std::process::exit(1);
                }
            }
        }
        ConnectorCommand::Inspect { file, config } => {
            let limits = runtime_settings(config.as_deref())?;
            let report = switchyard::wasm::inspect::inspect(&file, &limits).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(problem) = &report.problem {
                eprintln!("{}: {problem}", file.display());
                std::process::exit(1);
            }
        }
        ConnectorCommand::New {
            name,
            lang,
            dir,
            sdk,
        } => {
            use switchyard::authoring::new;
            let project = new::NewProject {
                dir: dir.unwrap_or_else(|| PathBuf::from(&name)),
                name,
                lang,
                sdk,
            };
            if let Err(e) = new::create(&project) {
                eprintln!("connector new: {e}");
                std::process::exit(2);
            }
            println!("{}", new::next_steps(&project));
        }
        ConnectorCommand::Test {
            file,
            scenario,
            quiet,
            cache,
            no_cache,
            timeout_ms,
        } => {
            use switchyard::wasm::harness;
            let cache = if no_cache {
                None
            } else {
                cache.or_else(|| {
                    std::env::var_os("XDG_CACHE_HOME")
                        .map(PathBuf::from)
                        .or_else(|| {
                            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"))
                        })
                        .map(|c| c.join("switchyard/compiled"))
                })
            };
            let opts = harness::Options { timeout_ms, cache };
            match harness::run(&file, &scenario, &opts).await {
                Ok(report) => {
                    print!("{}", report.render(quiet));
                    std::process::exit(if report.passed() { 0 } else { 1 });
                }
                Err(e) => {
                    eprintln!("connector test: {e}");
                    std::process::exit(2);
                }
            }
        }
    }
    Ok(())
}

/// `[runtime]` of `config` when given, else the defaults (for `connector validate|inspect`).
fn runtime_settings(
    config: Option<&std::path::Path>,
) -> anyhow::Result<switchyard::config::RuntimeConfig> {
    Ok(match config {
        Some(path) => switchyard::Config::load(path)?.runtime,
        None => switchyard::config::RuntimeConfig::default(),
    })
}

async fn serve(path: PathBuf, watch: bool) -> anyhow::Result<()> {
    use switchyard::config::ConfigError;
    let mut config = switchyard::Config::read(&path)?;
    config.runtime.watch |= watch;
    let problems = config.problems();
    if !problems.is_empty() {
        // Start-up would stop here; what it would refuse after loading the connectors is named
        // too, so that one run lists everything to fix.
        let later = switchyard::run::connector_problems(&config).await;
        let mut seen = std::collections::HashSet::new();
        let all = (problems.into_iter().chain(later))
            .flat_map(ConfigError::into_problems)
            .filter(|p| seen.insert(p.to_string()))
            .collect();
        if let Some(refused) = ConfigError::all(all) {
            anyhow::bail!("{}: {refused}", path.display());
        }
    }
    let host = switchyard::start(config)
        .await
        .context("starting the host")?;
    tracing::info!(addr = %host.addr, "switchyard listening");
    let signal = stop_signal().await?;
    let grace = host.app.config.worker.shutdown_grace_secs;
    tracing::info!(
        signal,
        grace_secs = grace,
        "stopping: refusing new requests (503), finishing events in flight"
    );
    let started = std::time::Instant::now();
    host.shutdown().await;
    tracing::info!(
        took_ms = started.elapsed().as_millis() as u64,
        "stopped cleanly"
    );
    Ok(())
}

/// Waits for SIGTERM (what orchestrators send) or SIGINT (Ctrl-C); returns its name.
async fn stop_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        })
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("Ctrl-C")
    }
}

/// Opens the store of `config` for Gem integration `integration` (which must exist and be a Gem one).
fn gem_store(
    config: &std::path::Path,
    integration: &str,
) -> anyhow::Result<switchyard::store::Store> {
    let config = switchyard::Config::load(config)?;
    let found = config
        .integrations
        .iter()
        .find(|i| i.id == integration)
        .with_context(|| format!("no integration `{integration}` in the config"))?;
    anyhow::ensure!(
        matches!(found.ats, switchyard::config::AtsConfig::Gem(_)),
        "integration `{integration}` is not a Gem integration (ats.kind = \"gem\")"
    );
    switchyard::run::open_store(&config.storage)
}

fn gem(command: GemCommand) -> anyhow::Result<()> {
    use switchyard::ats::gem::keys;
    match command {
        GemCommand::IssueKey {
            config,
            integration,
        } => {
            let issued = keys::issue(&gem_store(&config, &integration)?, &integration)?;
            eprintln!(
                "Issued key {} for `{integration}`. It is shown once; store it in Gem now:",
                issued.key_id
            );
            println!("{}", issued.key);
        }
        GemCommand::RevokeKey {
            config,
            integration,
            key_id,
        } => {
            keys::revoke(&gem_store(&config, &integration)?, &integration, &key_id)?;
            println!("revoked {key_id}");
        }
        GemCommand::ListKeys {
            config,
            integration,
        } => {
            let when = |ms: i64| switchyard::clock::rfc3339(ms / 1000);
            for k in keys::list(&gem_store(&config, &integration)?, &integration)? {
                let revoked = k
                    .revoked_at_ms
                    .map(|t| format!("revoked {}", when(t)))
                    .unwrap_or_else(|| "active".into());
                println!(
                    "{}  {}  created {}  {revoked}",
                    k.key_id,
                    k.prefix,
                    when(k.created_at_ms)
                );
            }
        }
    }
    Ok(())
}
