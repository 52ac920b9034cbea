//! `switchyard-loadgen`: the benchmark's external load generator (tests/bench.rs runs it).
//!
//! - `drive`: pre-signs N distinct Lever `candidateStageChange` webhooks *before* the clock
//!   starts, opens `--connections` keep-alive connections to a loopback `switchyard serve`, then
//!   sends each webhook once: closed loop (as fast as answered) or, with `--rate`, open loop for
//!   `--duration` seconds with latency measured from each request's intended send time.
//! - `sqlite-ceiling`: rows/s of events-shaped inserts in `synchronous=FULL` WAL commits in a
//!   directory (batched, then one row per commit) — the disk's ceiling for durable intake.
//! - `fsync`: the latency of a small write + `fdatasync` in a directory, in a bounded loop — the
//!   disk's floor under every durable acknowledgement.
//!
//! Prints one JSON line on stdout (the benchmark parses it) and a human summary on stderr.
//! Loopback targets only; every loop is bounded by the number of pre-built requests.

mod ceiling;
mod drive;
mod fsync;
mod webhooks;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "switchyard-loadgen",
    about = "Load generator of the switchyard benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send pre-signed Lever stage-change webhooks to `--url`.
    Drive {
        /// The integration's Lever webhook URL, e.g. http://127.0.0.1:8080/hooks/acme/lever.
        #[arg(long)]
        url: String,
        /// The integration's Lever signature token.
        #[arg(long)]
        signature_token: String,
        /// `toStageId` of every webhook.
        #[arg(long)]
        stage: String,
        /// A file of opportunity ids, one a line, used round robin (default: a new id each).
        #[arg(long)]
        opportunities: Option<PathBuf>,
        /// Keep-alive connections, one task each.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Closed loop: how many webhooks to send.
        #[arg(long, conflicts_with = "rate")]
        requests: Option<usize>,
        /// Open loop: webhooks per second offered...
        #[arg(long, requires = "duration")]
        rate: Option<f64>,
        /// ...for this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Stop sending new requests this many seconds after the start (default: 60 for a
        /// closed loop, `--duration` + 10 for an open loop); the rest is reported `unsent`.
        #[arg(long)]
        max_secs: Option<f64>,
        /// Per-request timeout, seconds (a timed-out request counts as an error).
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Runtime threads of the generator (1: it takes at most one core from the server).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Measure the raw SQLite commit ceiling of the disk holding `--dir`.
    SqliteCeiling {
        /// Directory of the scratch database (the host's database directory: same disk).
        #[arg(long)]
        dir: PathBuf,
        /// Rows inserted in batched commits.
        #[arg(long, default_value_t = 50_000)]
        rows: usize,
        /// Rows per batched commit.
        #[arg(long, default_value_t = 50)]
        batch: usize,
        /// Rows inserted one per commit.
        #[arg(long, default_value_t = 2_000)]
        single_rows: usize,
    },
    /// Measure the latency of a small write + fdatasync on the disk holding `--dir`.
    Fsync {
        /// Directory of the scratch file (the host's database directory: same disk).
        #[arg(long)]
        dir: PathBuf,
        /// Flushes timed at most.
        #[arg(long, default_value_t = 2_000)]
        count: usize,
        /// Seconds the loop runs at most.
        #[arg(long, default_value_t = 5.0)]
        max_secs: f64,
    },
}

/// Upper bound on pre-built requests (memory: about 0.6 kB each).
const MAX_REQUESTS: usize = 2_000_000;

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Drive {
            url,
            signature_token,
            stage,
            opportunities,
            connections,
            requests,
            rate,
            duration,
            max_secs,
            timeout,
            threads,
        } => {
            let target = drive::Target::loopback(&url)?;
            let (n, pace, default_secs) = match (requests, rate, duration) {
                (Some(n), None, _) => (n, drive::Pace::Closed, 60.0),
                (None, Some(rate), Some(secs)) if rate > 0.0 && secs > 0.0 => (
                    (rate * secs).ceil() as usize,
                    drive::Pace::Open { rate },
                    secs + 10.0,
                ),
                _ => bail!("give --requests N (closed loop) or --rate R --duration S (open loop)"),
            };
            if n == 0 || n > MAX_REQUESTS {
                bail!("between 1 and {MAX_REQUESTS} requests, not {n}");
            }
            let ids: Vec<String> = match &opportunities {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("read {}", path.display()))?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
                None => Vec::new(),
            };
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let bodies = webhooks::bodies(
                &webhooks::Spec {
                    signature_token: &signature_token,
                    stage_id: &stage,
                    opportunities: &ids,
                    triggered_at_ms: now_ms,
                },
                n,
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .enable_all()
                .build()?;
            let report = runtime.block_on(drive::run(
                target,
                bodies,
                connections,
                pace,
                Duration::from_secs_f64(timeout.max(0.001)),
                Duration::from_secs_f64(max_secs.unwrap_or(default_secs).clamp(0.001, 3600.0)),
            ))?;
            let l = &report["latency_us"];
            eprintln!(
                "{} loop, {connections} connections: {} sent ({} unsent at the deadline), {} × 200, \
                 {} other, {} errors in {:.2} s = {:.0} acknowledged/s; latency (from {}) p50 {} µs \
                 p90 {} µs p99 {} µs max {} µs",
                report["mode"].as_str().unwrap_or_default(),
                report["sent"],
                report["unsent"],
                report["ok"],
                report["non_200"],
                report["errors"],
                report["elapsed_s"].as_f64().unwrap_or_default(),
                report["acked_per_s"].as_f64().unwrap_or_default(),
                l["from"].as_str().unwrap_or_default(),
                l["p50"],
                l["p90"],
                l["p99"],
                l["max"],
            );
            println!("{report}");
        }
        Command::SqliteCeiling {
            dir,
            rows,
            batch,
            single_rows,
        } => {
            let report = ceiling::measure(&dir, rows, batch, single_rows)?;
            eprintln!(
                "SQLite WAL synchronous=FULL in {}: {:.0} rows/s in {batch}-row commits, {:.0} rows/s one per commit",
                dir.display(),
                report["batched_rows_per_s"].as_f64().unwrap_or_default(),
                report["single_rows_per_s"].as_f64().unwrap_or_default(),
            );
            println!("{report}");
        }
        Command::Fsync {
            dir,
            count,
            max_secs,
        } => {
            let max = Duration::from_secs_f64(max_secs.clamp(0.0, 3600.0));
            let report = fsync::measure(&dir, count, max)?;
            let l = &report["latency_us"];
            eprintln!(
                "write + fdatasync in {}: {} syncs, p50 {} µs p90 {} µs p99 {} µs max {} µs; \
                 {:.1} % over 2 ms, {:.1} % over 5 ms",
                dir.display(),
                report["syncs"],
                l["p50"],
                l["p90"],
                l["p99"],
                l["max"],
                report["share_over_2ms"].as_f64().unwrap_or_default() * 100.0,
                report["share_over_5ms"].as_f64().unwrap_or_default() * 100.0,
            );
            println!("{report}");
        }
    }
    Ok(())
}
