//! Connector-call figures from `switchyard_tests::bench_wasm` (the runtime's measurements):
//! instantiate + call of a trivial export vs wasmtime's empty component in the same run (and vs
//! the same component in a bare store: what of the call is wasmtime's and what the host's), and the
//! same connector logic (`plugins/twin`) native vs as a component — at the level of the host's
//! connector call, not end to end (see that module's docs).

use switchyard_testkit::bench::Figures;
use switchyard_tests::bench_wasm::{instantiate_call, native_vs_wasm};

use super::table::Row;

const ITERATIONS: usize = 2_000;
const CALLS: usize = 1_000;
const CONCURRENCY: usize = 8;

/// Appends the rows.
pub async fn run(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let r = instantiate_call(ITERATIONS).await?;
    let host = shown("", &r.host);
    rows.push(Row::against(
        format!("instantiate + call µs, median / p99 ({})", r.allocation),
        host.clone(),
        shown("empty component ", &r.floor),
        "<= 3x the floor",
    ));
    rows.push(Row::against(
        "instantiate + call µs, the same component in a bare store (no sandbox)",
        host.clone(),
        shown("bare ", &r.bare),
        "-",
    ));
    rows.push(Row::against(
        "instantiate + call µs, vs one page of memory (no component goes below it)",
        host,
        shown("memory floor ", &r.memory_floor),
        "-",
    ));
    let n = native_vs_wasm(CALLS, CONCURRENCY).await?;
    rows.push(Row::against(
        "connector call/s, Wasm vs native twin (not end to end)",
        (n.wasm_per_s, format!("{:.0}/s", n.wasm_per_s)),
        (n.native_per_s, format!("native {:.0}/s", n.native_per_s)),
        ">= 0.80",
    ));
    Ok(())
}

/// A figure as a row's (value, shown) pair: its median, and "<label>median / p99 µs".
fn shown(label: &str, f: &Figures) -> (f64, String) {
    (
        f.median_us,
        format!("{label}{:.1} / {:.1} µs", f.median_us, f.p99_us),
    )
}
