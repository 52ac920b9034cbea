//! SQLite's WAL checkpoints, off the group commit's writer thread.
//!
//! By default SQLite checkpoints from the connection that commits once the WAL passes 1,000
//! pages: the writer thread, between two batches, copied every changed page from the WAL into
//! the database file and fsynced it while the webhooks of the next batch waited (a tail of the
//! ack latency). Here the writer's connection has `wal_autocheckpoint = 0` and a thread of its
//! own (`switchyard-store-checkpoint`), on a connection of its own, runs a `PASSIVE` checkpoint
//! every [`TICK`]: it copies what is committed beside the writer, never waiting for it nor
//! making it wait.
//!
//! **The WAL stays bounded.** A passive checkpoint never restarts the WAL from its beginning;
//! the next write transaction does, once every frame is in the database file. Under load without
//! a pause that moment may not come, so when a checkpoint leaves more than [`BOUND_FRAMES`]
//! frames in the WAL the next one is a `RESTART`: it waits for the current batch (the busy
//! timeout), copies the few frames left and makes the next batch start the WAL over. The
//! writer's `journal_size_limit` then truncates the file back to [`JOURNAL_LIMIT`] bytes.
//!
//! Durability does not change: a commit is durable once its WAL frames are fsynced, whichever
//! connection later copies them, and recovery after kill -9 replays the WAL as before.
//!
//! The thread ends one tick after the store's last clone is dropped (it watches the writer's
//! connection through a `Weak`).

use std::path::Path;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use rusqlite::Connection;

use super::Result;

/// How often the checkpointer copies what was committed since its last pass.
const TICK: Duration = Duration::from_millis(100);

/// WAL frames (pages) left after a checkpoint above which the next one restarts the WAL
/// (16 MiB of 4 KiB pages; at the bench's 20,000 frames/s a few passes).
pub(in crate::store) const BOUND_FRAMES: i64 = 4096;

/// Bytes the WAL file is truncated to when it starts over (`journal_size_limit`).
pub(in crate::store) const JOURNAL_LIMIT: i64 = 16 << 20;

/// Makes `writer` (the store's read-write connection) leave checkpoints to a thread started
/// here over a connection of its own to `path`; the thread ends when `watched` is gone.
pub(in crate::store) fn start(
    path: &Path,
    writer: &Connection,
    watched: Weak<Mutex<Connection>>,
) -> Result<()> {
    let conn = Connection::open(path)?;
    // A RESTART waits for the writer's batch through the busy handler.
    conn.pragma_update(None, "busy_timeout", 5000)?;
    // The checkpoint's own fsyncs follow this connection's setting: the WAL before its pages
    // are copied, the database file before the WAL may start over (SQLite's default, stated).
    conn.pragma_update(None, "synchronous", "FULL")?;
    writer.pragma_update(None, "wal_autocheckpoint", 0)?;
    writer.pragma_update(None, "journal_size_limit", JOURNAL_LIMIT)?;
    std::thread::Builder::new()
        .name("switchyard-store-checkpoint".into())
        .spawn(move || run(&conn, &watched))?;
    Ok(())
}

/// Runs one checkpoint (`sql`); returns the frames in the WAL.
fn checkpoint(conn: &Connection, sql: &str) -> Result<i64> {
    Ok(conn.query_row(sql, [], |r| r.get(1))?)
}

fn run(conn: &Connection, watched: &Weak<Mutex<Connection>>) {
    let mut restart = false;
    while watched.strong_count() > 0 {
        std::thread::sleep(TICK);
        let (mode, sql) = match restart {
            true => ("RESTART", "PRAGMA wal_checkpoint(RESTART)"),
            false => ("PASSIVE", "PRAGMA wal_checkpoint(PASSIVE)"),
        };
        match checkpoint(conn, sql) {
            Ok(log) => restart = log > BOUND_FRAMES,
            // Busy (a RESTART that waited out its timeout) or I/O: the WAL keeps the commits;
            // the next pass tries again.
            Err(e) => tracing::warn!(error = %e, mode, "WAL checkpoint failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// The WAL file's size.
    fn wal_bytes(path: &Path) -> u64 {
        std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len())
    }

    /// Commits do not checkpoint on the writer (the WAL grows past SQLite's default 1,000
    /// pages while the checkpointer is stalled), yet the checkpointer copies them and the WAL
    /// file stays within its bound under a steady stream of writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_checkpointed_beside_the_writer_and_stays_bounded() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("switchyard.db");
        let store = Store::open(&path).unwrap();
        store
            .write(|c| {
                c.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB NOT NULL)")?;
                Ok(())
            })
            .await
            .unwrap();
        // 3,000 pages in one transaction while a reader pins the WAL: nothing can be copied.
        let pin = Connection::open(&path).unwrap();
        pin.execute_batch("BEGIN; SELECT COUNT(*) FROM t;").unwrap();
        store
            .write(|c| {
                let mut insert = c.prepare("INSERT INTO t (pad) VALUES (zeroblob(4000))")?;
                for _ in 0..3_000 {
                    insert.execute([])?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let autocheckpoint: i64 = store
            .conn()
            .unwrap()
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            autocheckpoint, 0,
            "the writer's connection never checkpoints"
        );
        pin.execute_batch("COMMIT").unwrap();
        // The checkpointer copies the 3,000 pages and restarts the WAL (over the bound); later
        // small commits then start the file over, truncated to the limit.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while wal_bytes(&path) > JOURNAL_LIMIT as u64 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was not checkpointed and truncated: {} bytes",
                wal_bytes(&path)
            );
            store
                .write(|c| {
                    c.execute("INSERT INTO t (pad) VALUES (zeroblob(10))", [])?;
                    Ok(())
                })
                .await
                .unwrap();
            tokio::time::sleep(TICK).await;
        }
        // Steady writes, 5 times the bound in all: the WAL starts over meanwhile (how far it
        // grows between two passes depends on the machine's load, so only that is asserted).
        let mut largest = 0;
        for _ in 0..500 {
            store
                .write(|c| {
                    let mut insert = c.prepare("INSERT INTO t (pad) VALUES (zeroblob(4000))")?;
                    for _ in 0..40 {
                        insert.execute([])?;
                    }
                    Ok(())
                })
                .await
                .unwrap();
            largest = largest.max(wal_bytes(&path));
        }
        assert!(
            largest < 20_000 * 4096,
            "the WAL kept every page: {largest} bytes"
        );
        let rows: i64 = store
            .conn()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t WHERE length(pad) = 4000", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(rows, 3_000 + 20_000, "every write kept");
    }
}
