//! Connector-call figures from `switchyard_tests::bench_wasm` (the runtime's measurements):
//! instantiate + call of a trivial export vs wasmtime's empty component in the same run (and vs
//! the same component in a bare store: what of the call is wasmtime's and what the host's), and the
//! same connector logic (`plugins/twin`) native vs as a component — at the level of the host's
//! connector call, not end to end (see that module's docs).

use switchyard_tests::bench_wasm::{instantiate_call, native_vs_wasm};

use super::table::Row;

const ITERATIONS: usize = 2_000;
const CALLS: usize = 1_000;
const CONCURRENCY: usize = 8;

/// Appends the rows.
pub async fn run(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let r = instantiate_call(ITERATIONS).await?;
    rows.push(Row::against(
        format!("instantiate + call µs, median / p99 ({})", r.allocation),
        (
            r.host.median_us,
            format!("{:.1} / {:.1} µs", r.host.median_us, r.host.p99_us),
        ),
        (
            r.floor.median_us,
            format!(
                "empty component {:.1} / {:.1} µs",
                r.floor.median_us, r.floor.p99_us
            ),
        ),
        "<= 3x the floor",
    ));
    rows.push(Row::against(
        "instantiate + call µs, the same component in a bare store (no sandbox)",
        (
            r.host.median_us,
            format!("{:.1} / {:.1} µs", r.host.median_us, r.host.p99_us),
        ),
        (
            r.bare.median_us,
            format!("bare {:.1} / {:.1} µs", r.bare.median_us, r.bare.p99_us),
        ),
        "-",
    ));
    rows.push(Row::against(
        "instantiate + call µs, vs one page of memory (no component goes below it)",
        (
            r.host.median_us,
            format!("{:.1} / {:.1} µs", r.host.median_us, r.host.p99_us),
        ),
        (
            r.memory_floor.median_us,
            format!(
                "memory floor {:.1} / {:.1} µs",
                r.memory_floor.median_us, r.memory_floor.p99_us
            ),
        ),
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
