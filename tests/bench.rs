//! The benchmark (not run by the test suite; figures, not pass/fail). Run `scripts/bench.sh`: it
//! builds the connectors, `switchyard` and `switchyard-loadgen`, then runs this
//! (`cargo bench -p switchyard-tests --bench host --features bench`: the feature adds the
//! benchmark-only code), which prints ONE table at the end: figure, value, the reference measured
//! in the same run, their ratio, the target.
//!
//! 1. The real binary ([`external`]): `switchyard serve` as a child process with three
//!    connectors loaded, driven over loopback HTTP by `switchyard-loadgen` (a separate process
//!    sending pre-signed, distinct Lever webhooks over N keep-alive connections): start-up cold
//!    and from the compiled-code cache, processed events/s with an instant vendor, the raw
//!    SQLite ceiling of the same disk, acknowledged webhooks/s at 16 and 64 connections, latency
//!    at fixed offered rates (from intended send times), RSS idle and under load.
//!    The same processing and intake figures with PostgreSQL, 1 host and 3 hosts on one
//!    database behind a loopback balancer ([`postgres`]).
//!    The same intake with 1, 100, 1,000 and 10,000 configured integrations ([`customers`]).
//! 2. The runtime's connector-call figures ([`wasm`]), including the same connector logic native
//!    vs Wasm at the level of the connector call.
//! 3. The in-process host ([`in_process`]): bulkheads, resume after a crash, hot swap.
//!
//! Figures taken while other work runs on the machine are noise; the table says nothing about
//! them.
//!
//! `SWITCHYARD_BENCH_ONLY` (comma-separated: `processing`, `intake`, `external`, `customers`,
//! `postgres`, `wasm`, `in_process`) runs only those parts; `processing` is the real binary's
//! start-up and processing rows without its intake phases, `intake` the same and its
//! closed-loop intake rows, without the latency runs (a profile or an A/B of intake). Unset:
//! everything.
//!
//! The PostgreSQL rows count statements when the cluster loads `pg_stat_statements`
//! (`shared_preload_libraries=pg_stat_statements`), and round trips as the hosts count them
//! (`switchyard_store_round_trips_total`: statements sent together count once);
//! `SWITCHYARD_BENCH_PG_STATEMENTS=1` also prints each statement's calls per event and per ack
//! to stderr.

#[path = "bench/customers.rs"]
mod customers;
#[path = "bench/external.rs"]
mod external;
#[path = "bench/in_process.rs"]
mod in_process;
#[path = "bench/loadgen.rs"]
mod loadgen;
#[path = "bench/postgres.rs"]
mod postgres;
#[path = "bench/snapshot.rs"]
mod snapshot;
#[path = "bench/table.rs"]
mod table;
#[path = "bench/threads.rs"]
mod threads;
#[path = "bench/wasm.rs"]
mod wasm;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let only = std::env::var("SWITCHYARD_BENCH_ONLY").unwrap_or_default();
    let part = |name: &str| only.is_empty() || only.split(',').any(|p| p.trim() == name);
    if part("external") {
        external::run(&mut rows, external::Phases::All).await?;
    } else if part("processing") {
        external::run(&mut rows, external::Phases::Processing).await?;
    } else if part("intake") {
        external::run(&mut rows, external::Phases::Intake).await?;
    }
    if part("customers") {
        customers::run(&mut rows).await?;
    }
    if part("postgres") {
        postgres::run(&mut rows).await?;
    }
    if part("wasm") {
        wasm::run(&mut rows).await?;
    }
    if part("in_process") {
        in_process::run(&mut rows).await?;
    }
    let after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let first3 = |s: &str| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    println!(
        "\nswitchyard benchmark: {cores} cores; load average {} before the run, {} after\n",
        first3(&load),
        first3(&after)
    );
    print!("{}", table::render(&rows));
    println!("{NOTES}");
    Ok(())
}

/// What each row measures (printed under the table).
const NOTES: &str = "
- start-up: `switchyard serve` spawned until /healthz answers 200; cold = empty data dir (compiles
  certn, justifacts, misbehave), restart = the same data dir (compiled-code cache).
- processed events/s: webhooks for real candidates at the Certn integration's trigger stage; each
  event reads the opportunity from the Lever simulator, invites at the Certn simulator (answers at
  once, applications do not progress: no callbacks) and writes the status back to Lever; from the
  generator's start to the last event finished. Store writes: the group commit's jobs (each
  webhook, claim, outcome, intent, status), several per commit. By thread: CPU and context
  switches of the host's threads by name (`switchyard-stor` the writer, `switchyard-work` the
  workers and their blocking threads, `tokio-rt-worker` HTTP), from /proc between the same two
  readings.
- SQLite ceiling: switchyard-loadgen sqlite-ceiling, events-shaped rows, WAL + synchronous=FULL,
  in the host's database directory, measured between processing and intake.
- acked webhooks/s: switchyard-loadgen (a separate process, one core) sends pre-signed, distinct
  Lever webhooks over N keep-alive connections, closed loop; a 200 means committed. Their events
  are at a non-trigger stage: each is later skipped after a stage lookup (the backlog row).
  KiB written per ack: the host's `write_bytes` (/proc/<pid>/io: WAL frames and checkpoints,
  processing's writes included) over the run, per 200.
- ack latency: open loop at a fixed rate for 5 s; latency from each request's intended send time,
  unsent requests counted with the latency reached at the generator's deadline; p99 by second:
  of the requests due in each second of the run (a tail from one stall shows in one second).
  \"… per ack\": what the host did between the run's start and end per 200, figures load on the
  machine disturbs less than latency: CPU by thread (µs and context switches), the group
  commit's writes, WAL frames, bytes written (checkpoints included), acks and WAL frames per
  commit, and events retried per second (the down integration's, behind the backlog rows).
  …queued behind a down ATS: the same runs after 50,000 webhooks were sent (closed loop) to a
  third integration whose Lever API is a closed port: its events fail to reach the ATS, are
  retried later and open its circuit breaker, while they stay queued beside the intake.
- disk: write + fdatasync: switchyard-loadgen fsync, in the database's directory while the host
  is idle, just before the latency runs: 16 KiB (four WAL frames) overwritten in a 4 MiB file,
  then fdatasync, at most 2,000 times or 5 s — the flush each WAL commit with synchronous=FULL
  waits for. Every ack waits for one such flush, and one arriving during another's waits for
  that one too: when more than about 1 % of flushes take over 2 ms (5 ms), the p99 <= 2 ms
  (5 ms) target cannot be met on this disk with every ack durable before its 200, whatever the
  host does; the host's part is the latency above it.
- N integrations: `switchyard serve` configured with N Lever integrations (1, 100, 1,000,
  10,000; one connector), a fresh database each, 10,000 webhooks closed loop over 64 connections
  to one of them; start-up = spawned until /healthz answers 200.
- RSS: VmRSS of the serve process after start-up (idle), largest sampled every 50 ms during
  processing and intake (under load), VmHWM at the end.
- PostgreSQL, 1 and 3 hosts: `switchyard serve` processes (certn and misbehave loaded) on one
  database of the throwaway cluster scripts/bench.sh starts, behind the test kit's loopback
  round-robin TCP balancer (also for 1 host: the same path), which runs in the bench process;
  processed events/s as above (1,000 moves), acked webhooks/s closed loop at 16 connections.
- instantiate + call, connector call/s: switchyard_tests::bench_wasm (connector-call level: the
  Lever intake, store and write-back around the call are not included).
- bulkheads, resume, hot swap: the in-process host (simulators and host in the bench process).
- Figures taken while other work runs on the machine (see the load average) are noise.";
