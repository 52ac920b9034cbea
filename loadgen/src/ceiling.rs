//! The raw SQLite ceiling of a disk: rows/s of inserts shaped like the host's `events` row and
//! its `event_bodies` row (same columns, the same unique key and due index, a webhook-sized
//! body in a table of its own, as the host stores it) into a WAL database
//! with `synchronous=FULL` — the host's settings — committing `batch` rows at a time, then one row
//! per commit. The reference the host's intake is compared with: what the disk allows when every
//! row is durable before it is acknowledged.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use rusqlite::{params, Connection};
use serde_json::{json, Value};

const SCHEMA: &str = "
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    integration TEXT NOT NULL,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    last_error TEXT,
    connector_version TEXT,
    received_at INTEGER NOT NULL,
    finished_at INTEGER,
    UNIQUE (integration, dedupe_key)
);
CREATE INDEX events_due ON events (state, next_attempt_at);
CREATE TABLE event_bodies (
    event_id INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
";

/// Measures both figures in a scratch database in `dir` (removed afterwards).
pub fn measure(
    dir: &Path,
    batched_rows: usize,
    batch: usize,
    single_rows: usize,
) -> anyhow::Result<Value> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("loadgen-ceiling-{}.db", std::process::id()));
    let result = (|| {
        let mut conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        // A stored Lever stage change is about this long.
        let payload = "x".repeat(420);
        let batched = rows_per_s(&mut conn, &payload, batched_rows, batch.max(1), 0)?;
        let single = rows_per_s(&mut conn, &payload, single_rows, 1, batched_rows)?;
        anyhow::Ok(json!({
            "mode": "sqlite-ceiling",
            "dir": dir.display().to_string(),
            "batch": batch,
            "batched_rows": batched_rows,
            "batched_rows_per_s": batched,
            "single_rows": single_rows,
            "single_rows_per_s": single,
        }))
    })();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    result
}

/// Inserts `rows` rows, `batch` per transaction; returns rows per second.
fn rows_per_s(
    conn: &mut Connection,
    payload: &str,
    rows: usize,
    batch: usize,
    first: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut i = first;
    while i < first + rows {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (integration, kind, dedupe_key, payload_hash, state,
                 next_attempt_at, received_at) VALUES ('bench', 'lever.stage_change', ?1, ?2,
                 'queued', ?3, ?3)",
            )?;
            let mut body =
                tx.prepare_cached("INSERT INTO event_bodies (event_id, body) VALUES (?1, ?2)")?;
            for _ in 0..batch.min(first + rows - i) {
                let key = format!("{i:048x}");
                insert.execute(params![key, key, i as i64])?;
                body.execute(params![tx.last_insert_rowid(), payload])?;
                i += 1;
            }
        }
        tx.commit()?;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

#[cfg(test)]
mod tests {
    #[test]
    fn measures_both_figures_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ceiling");
        let report = super::measure(&dir, 100, 50, 10).unwrap();
        assert!(report["batched_rows_per_s"].as_f64().unwrap() > 0.0);
        assert!(report["single_rows_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}
