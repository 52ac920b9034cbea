//! SQLite's read connections: reads run beside the group commit's writer instead of through its
//! connection.
//!
//! In WAL mode a reader never waits for a writer: it reads the newest committed snapshot while
//! a batch's transaction is open and while its `COMMIT` fsyncs. The store's one read-write
//! connection is held by the writer for a whole batch (fsync included), so a read that took it
//! waited for that batch; a read connection of its own does not.
//!
//! Read-your-writes holds: a write's call returns only after its `COMMIT`, and a read that
//! starts afterwards (on any connection) begins its snapshot from that commit or a later one.
//! Each read here is one autocommit statement (or a few), so no snapshot is held between calls.
//!
//! Connections are opened on first need and kept (up to [`IDLE`]) for the next read; one busy
//! beyond that is closed after its read. They are opened read-only (`query_only` too), so a
//! write routed here by mistake fails instead of bypassing the writer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use super::Result;

/// Read connections kept open between reads: about one per worker that reads at once.
const IDLE: usize = 8;

/// Statements each read connection keeps prepared (the processing path's reads are a dozen).
const STATEMENT_CACHE: usize = 64;

/// The pool of read connections of one SQLite database.
pub(in crate::store) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Read connections to the database at `path` (opened when first needed).
    pub(in crate::store) fn new(path: &Path) -> Readers {
        Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The database's file.
    pub(in crate::store) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read connection, handed back to the pool afterwards.
    pub(in crate::store) fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let taken = self.idle().pop();
        let conn = match taken {
            Some(conn) => conn,
            None => self.open()?,
        };
        let value = f(&conn);
        let mut idle = self.idle();
        if idle.len() < IDLE {
            idle.push(conn);
        }
        value
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panicking reader left nothing half-done on a connection it no longer holds.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // A checkpoint that truncates the WAL briefly locks readers out.
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[test]
    fn a_read_beside_an_open_batch_sees_the_last_commit_and_writes_are_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        store.kv_set("i", "c", "k", "v1").unwrap();
        // The writer's connection is held (as during a batch's fsync): a read does not wait.
        let held = store.conn().unwrap();
        assert_eq!(store.kv_get("i", "c", "k").unwrap().as_deref(), Some("v1"));
        drop(held);
        store.kv_set("i", "c", "k", "v2").unwrap();
        assert_eq!(
            store.kv_get("i", "c", "k").unwrap().as_deref(),
            Some("v2"),
            "a read after a write returned sees it"
        );
        let refused = store.read_db(|db| db.execute("DELETE FROM kv", &[]));
        assert!(refused.is_err(), "a read connection refuses writes");
        assert!(store.kv_get("i", "c", "k").unwrap().is_some());
    }
}
