//! Connectors' `state`: values per (integration, connector, key), and the bytes each
//! (integration, connector) holds in all, for the `state` quota.
//!
//! The total is kept in `kv_totals` by triggers on `kv`, in the same statement as the change, so
//! the quota check is two key lookups. It used to be a `SUM` over the connector's rows on every
//! `state-set`: a connector that keeps a row per order (Certn keeps one per screening) made each
//! write cost a scan of every earlier one, and processing slowed as the database grew. A
//! database from before the table gets it filled from `kv` once, at open. Writes are writes of
//! the group commit (a screening's intent and order no longer cost an fsync each).
//! (PostgreSQL: the same triggers, or the same two statements in `kv_set`/`kv_delete`.)

use super::Cached;
use rusqlite::{params, Connection, OptionalExtension};

use super::{Result, Store};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS kv (
    integration TEXT NOT NULL,
    connector TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (integration, connector, key)
);
"#;

/// Bytes of a row: key + value, as the quota counts them. (No `INSERT OR IGNORE` in the
/// triggers: the conflict policy of the statement that fires them, an upsert, would override it.)
const TOTALS: &str = r#"
CREATE TABLE IF NOT EXISTS kv_totals (
    integration TEXT NOT NULL,
    connector TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (integration, connector)
);
CREATE TRIGGER IF NOT EXISTS kv_totals_insert AFTER INSERT ON kv BEGIN
    INSERT INTO kv_totals SELECT NEW.integration, NEW.connector, 0
     WHERE NOT EXISTS (SELECT 1 FROM kv_totals
                        WHERE integration = NEW.integration AND connector = NEW.connector);
    UPDATE kv_totals
       SET bytes = bytes + LENGTH(CAST(NEW.key AS BLOB)) + LENGTH(CAST(NEW.value AS BLOB))
     WHERE integration = NEW.integration AND connector = NEW.connector;
END;
CREATE TRIGGER IF NOT EXISTS kv_totals_update AFTER UPDATE ON kv BEGIN
    UPDATE kv_totals
       SET bytes = bytes - LENGTH(CAST(OLD.key AS BLOB)) - LENGTH(CAST(OLD.value AS BLOB))
     WHERE integration = OLD.integration AND connector = OLD.connector;
    INSERT INTO kv_totals SELECT NEW.integration, NEW.connector, 0
     WHERE NOT EXISTS (SELECT 1 FROM kv_totals
                        WHERE integration = NEW.integration AND connector = NEW.connector);
    UPDATE kv_totals
       SET bytes = bytes + LENGTH(CAST(NEW.key AS BLOB)) + LENGTH(CAST(NEW.value AS BLOB))
     WHERE integration = NEW.integration AND connector = NEW.connector;
END;
CREATE TRIGGER IF NOT EXISTS kv_totals_delete AFTER DELETE ON kv BEGIN
    UPDATE kv_totals
       SET bytes = bytes - LENGTH(CAST(OLD.key AS BLOB)) - LENGTH(CAST(OLD.value AS BLOB))
     WHERE integration = OLD.integration AND connector = OLD.connector;
END;
"#;

/// Creates `kv` and `kv_totals`; fills the totals of a database that had `kv` without them.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA)?;
    let had_totals = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kv_totals'")?
        .exists([])?;
    if had_totals {
        return Ok(conn.execute_batch(TOTALS)?);
    }
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(TOTALS)?;
    tx.exec(
        "INSERT INTO kv_totals (integration, connector, bytes)
         SELECT integration, connector,
                SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB)))
           FROM kv GROUP BY integration, connector",
        [],
    )?;
    Ok(tx.commit()?)
}

impl Store {
    /// A connector's state value.
    pub fn kv_get(&self, integration: &str, connector: &str, key: &str) -> Result<Option<String>> {
        self.conn()
            .row(
                "SELECT value FROM kv WHERE integration = ?1 AND connector = ?2 AND key = ?3",
                params![integration, connector, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(Into::into)
    }

    /// Sets a connector's state value; durable when it returns (see [`Store::write_now`]).
    pub fn kv_set(&self, integration: &str, connector: &str, key: &str, value: &str) -> Result<()> {
        let row = [integration, connector, key, value].map(str::to_owned);
        self.write_now(move |conn| {
            conn.exec(
                "INSERT INTO kv (integration, connector, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (integration, connector, key) DO UPDATE SET value = excluded.value",
                params![row[0], row[1], row[2], row[3]],
            )?;
            Ok(())
        })
    }

    /// Bytes (keys + values) a connector keeps for an integration, not counting `except_key`.
    pub fn kv_usage(&self, integration: &str, connector: &str, except_key: &str) -> Result<u64> {
        let conn = self.conn();
        let total: i64 = conn
            .row(
                "SELECT bytes FROM kv_totals WHERE integration = ?1 AND connector = ?2",
                params![integration, connector],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let this: i64 = conn
            .row(
                "SELECT LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB)) FROM kv
                 WHERE integration = ?1 AND connector = ?2 AND key = ?3",
                params![integration, connector, except_key],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        Ok((total - this).max(0) as u64)
    }

    /// Bytes each connector keeps for each integration: `(integration, connector, bytes)`.
    pub fn kv_totals(&self) -> Result<Vec<(String, String, u64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT integration, connector, bytes FROM kv_totals ORDER BY integration, connector",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes a connector's state value; durable when it returns (see [`Store::write_now`]).
    pub fn kv_delete(&self, integration: &str, connector: &str, key: &str) -> Result<()> {
        let row = [integration, connector, key].map(str::to_owned);
        self.write_now(move |conn| {
            conn.exec(
                "DELETE FROM kv WHERE integration = ?1 AND connector = ?2 AND key = ?3",
                params![row[0], row[1], row[2]],
            )?;
            Ok(())
        })
    }

    /// A write from synchronous code that may run anywhere — a connector's `state` import runs
    /// inside a guest call on the guest pool: one write of the group commit (sharing its fsync
    /// with the webhooks, claims and steps of the moment), the thread lent to the runtime
    /// meanwhile (`block_in_place`). Where that is impossible (a current-thread runtime, as in
    /// some tests) it is its own transaction.
    fn write_now<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.write_blocking(job))
            }
            Ok(_) => job(&self.conn()),
            Err(_) => self.write_blocking(job),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(store: &Store, integration: &str, connector: &str) -> i64 {
        store
            .conn()
            .query_row(
                "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB))), 0)
                 FROM kv WHERE integration = ?1 AND connector = ?2",
                params![integration, connector],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn usage_follows_sets_overwrites_and_deletes() {
        let dir = std::env::temp_dir().join(format!("sy-kv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir.join("db")).unwrap();
        store.kv_set("a", "certn", "order:1", "xxxxxxxxxx").unwrap();
        store.kv_set("a", "certn", "order:2", "yy").unwrap();
        store.kv_set("a", "other", "k", "zzz").unwrap();
        store.kv_set("b", "certn", "k", "é").unwrap(); // 2 bytes
        assert_eq!(
            store.kv_usage("a", "certn", "none").unwrap(),
            7 + 10 + 7 + 2
        );
        // Without the key being replaced: what a new value of it is checked against.
        assert_eq!(store.kv_usage("a", "certn", "order:1").unwrap(), 7 + 2);
        store.kv_set("a", "certn", "order:1", "x").unwrap();
        store.kv_delete("a", "certn", "order:2").unwrap();
        store.kv_delete("a", "certn", "missing").unwrap();
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 8);
        for (i, c) in [("a", "certn"), ("a", "other"), ("b", "certn")] {
            assert_eq!(
                store.kv_usage(i, c, "none").unwrap() as i64,
                sum(&store, i, c),
                "{i}/{c}"
            );
        }
        assert_eq!(store.kv_usage("nobody", "certn", "k").unwrap(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_database_from_before_the_totals_gets_them_filled_at_open() {
        let dir = std::env::temp_dir().join(format!("sy-kv-old-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(SCHEMA).unwrap();
            old.execute(
                "INSERT INTO kv VALUES ('a', 'certn', 'order:1', 'abc'), ('a', 'certn', 'k', 'v')",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 10 + 2);
        store.kv_set("a", "certn", "new", "1").unwrap();
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 16);
        drop(store);
        // Opening again does not fill them twice.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 16);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
