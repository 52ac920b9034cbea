//! The benchmark (not run by the test suite; figures, not pass/fail). Run `scripts/bench.sh`: it
//! builds the connectors, `switchyard` and `switchyard-loadgen`, then runs this
//! (`cargo bench -p switchyard-tests --bench host`), which prints ONE table at the end: figure,
//! value, the reference measured in the same run, their ratio, the target.
//!
//! 1. The real binary ([`external`]): `switchyard serve` as a child process with three
//!    connectors loaded, driven over loopback HTTP by `switchyard-loadgen` (a separate process
//!    sending pre-signed, distinct Lever webhooks over N keep-alive connections): start-up cold
//!    and from the compiled-code cache, processed events/s with an instant vendor, the raw
//!    SQLite ceiling of the same disk, acknowledged webhooks/s at 16 and 64 connections, latency
//!    at fixed offered rates (from intended send times), RSS idle and under load.
//! 2. The runtime's connector-call figures ([`wasm`]).
//! 3. The in-process host ([`in_process`]): bulkheads, resume after a crash, hot swap.
//!
//! Figures taken while other work runs on the machine are noise; the table says nothing about
//! them.

#[path = "bench/external.rs"]
mod external;
#[path = "bench/in_process.rs"]
mod in_process;
#[path = "bench/loadgen.rs"]
mod loadgen;
#[allow(dead_code)]
mod support_admin;
#[path = "bench/table.rs"]
mod table;
#[path = "bench/wasm.rs"]
mod wasm;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    external::run(&mut rows).await?;
    wasm::run(&mut rows).await?;
    in_process::run(&mut rows).await?;
    let after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let first3 = |s: &str| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    println!(
        "\nswitchyard benchmark: {cores} cores; load average {} before the run, {} after\n",
        first3(&load),
        first3(&after)
    );
    print!("{}", table::render(&rows));
    Ok(())
}
