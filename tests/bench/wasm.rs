//! Connector-call figures provided by the runtime (instantiate + call of a trivial export vs
//! wasmtime's empty component; the same connector logic native vs as a component, end to end).
//! Not measured yet: the functions that measure them belong to `switchyard::wasm` and are wired
//! here once they exist.

use super::table::Row;

/// Appends the rows (marked "not measured" until the runtime provides the measurements).
pub async fn run(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    for (figure, target) in [
        (
            "instantiate + call µs, median / p99 (vs wasmtime empty component)",
            "<= 15 µs median",
        ),
        (
            "end-to-end events/s, Wasm vs native connector logic",
            ">= 0.80",
        ),
    ] {
        rows.push(Row::plain(
            figure,
            "not measured (no measuring function in switchyard::wasm yet)",
            target,
        ));
    }
    Ok(())
}
