//! Connectors' `state`: values per (integration, connector, key), and the bytes each
//! (integration, connector) holds in all, for the `state` quota.
//!
//! The total is kept in `kv_totals` by triggers on `kv` (on SQLite in the same statement as the
//! change; on PostgreSQL at the transaction's commit, a deferred constraint trigger), so the
//! quota check is two key lookups. It used to be a `SUM` over the connector's rows on every
//! `state-set`: a connector that keeps a row per order (Certn keeps one per screening) made each
//! write cost a scan of every earlier one, and processing slowed as the database grew. A
//! database from before the table gets it filled from `kv` once, at open. Writes are writes of
//! the group commit (a screening's intent and order no longer cost an fsync each).
//!
//! Screening-scoped entries (contract 0.2.1 `state.set-for-screening`) carry the screening's
//! idempotency key in `screening`; [`drop_recorded_screening_statement`] removes them in the
//! transaction that records that screening's order ([`super::orders`]), so a connector's state
//! stays the same size however many screenings run. The key's bytes count in the quota too
//! (every byte a connector makes the host keep is counted). A database from before the column
//! gets it at open, and the triggers are recreated to count it.
//! (PostgreSQL: each `kv` change adds its delta to a transaction-local setting, rolled back with
//! its savepoint like the row; a trigger deferred to the commit applies the summed deltas, one
//! update per totals row, in key order (migration 8). A totals row is locked only while a
//! transaction commits, not through the rest of a group commit's batch, so the hosts sharing a
//! database do not queue behind it; a batch makes one version of it, not one per write; and two
//! hosts take totals rows in the same order, so their commits cannot deadlock on them. Totals
//! are read from other connections, which see committed rows only. Since migration 9 a
//! connector's total is the sum of its stripes: the flush adds to the first stripe no other
//! transaction holds, `FOR UPDATE SKIP LOCKED`, or makes a new one, so two hosts' commits that
//! wrote one connector's state rarely wait on each other (only two making the same new stripe
//! do); a connector has about one stripe per host (bounded by its concurrent writers). SQLite
//! keeps one row per connector, its sum.)

use super::Cached;
use rusqlite::{Connection, OptionalExtension};

use super::sql::{args, values, Db, Row, Statement};
use super::{Result, Store, StoreError};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS kv (
    integration TEXT NOT NULL,
    connector TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    screening TEXT,
    PRIMARY KEY (integration, connector, key)
);
"#;

/// Finds the entries of one screening when its order is recorded.
const SCREENING_INDEX: &str = "CREATE INDEX IF NOT EXISTS kv_by_screening
    ON kv (integration, screening) WHERE screening IS NOT NULL;";

/// Bytes of a row: key + value + the screening's key, as the quota counts them (`IFNULL`: a
/// plain entry has none). (No `INSERT OR IGNORE` in the triggers: the conflict policy of the
/// statement that fires them, an upsert, would override it.) Dropped and created again when the
/// stored ones do not count the screening's key (a database from before), and only then: DDL
/// takes the write lock, and another process may open the database while a host writes to it.
const TOTALS_TABLE: &str = r#"
CREATE TABLE IF NOT EXISTS kv_totals (
    integration TEXT NOT NULL,
    connector TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (integration, connector)
);
"#;
const TOTALS: &str = r#"
DROP TRIGGER IF EXISTS kv_totals_insert;
DROP TRIGGER IF EXISTS kv_totals_update;
DROP TRIGGER IF EXISTS kv_totals_delete;
CREATE TRIGGER kv_totals_insert AFTER INSERT ON kv BEGIN
    INSERT INTO kv_totals SELECT NEW.integration, NEW.connector, 0
     WHERE NOT EXISTS (SELECT 1 FROM kv_totals
                        WHERE integration = NEW.integration AND connector = NEW.connector);
    UPDATE kv_totals
       SET bytes = bytes + LENGTH(CAST(NEW.key AS BLOB)) + LENGTH(CAST(NEW.value AS BLOB))
                 + IFNULL(LENGTH(CAST(NEW.screening AS BLOB)), 0)
     WHERE integration = NEW.integration AND connector = NEW.connector;
END;
CREATE TRIGGER kv_totals_update AFTER UPDATE ON kv BEGIN
    UPDATE kv_totals
       SET bytes = bytes - LENGTH(CAST(OLD.key AS BLOB)) - LENGTH(CAST(OLD.value AS BLOB))
                 - IFNULL(LENGTH(CAST(OLD.screening AS BLOB)), 0)
     WHERE integration = OLD.integration AND connector = OLD.connector;
    INSERT INTO kv_totals SELECT NEW.integration, NEW.connector, 0
     WHERE NOT EXISTS (SELECT 1 FROM kv_totals
                        WHERE integration = NEW.integration AND connector = NEW.connector);
    UPDATE kv_totals
       SET bytes = bytes + LENGTH(CAST(NEW.key AS BLOB)) + LENGTH(CAST(NEW.value AS BLOB))
                 + IFNULL(LENGTH(CAST(NEW.screening AS BLOB)), 0)
     WHERE integration = NEW.integration AND connector = NEW.connector;
END;
CREATE TRIGGER kv_totals_delete AFTER DELETE ON kv BEGIN
    UPDATE kv_totals
       SET bytes = bytes - LENGTH(CAST(OLD.key AS BLOB)) - LENGTH(CAST(OLD.value AS BLOB))
                 - IFNULL(LENGTH(CAST(OLD.screening AS BLOB)), 0)
     WHERE integration = OLD.integration AND connector = OLD.connector;
END;
"#;

/// The bytes of one `kv` row as the quota counts them (see [`TOTALS`]), on both backends.
const ROW_BYTES: &str = "octet_length(key) + octet_length(value)
     + COALESCE(octet_length(screening), 0)";

/// Creates `kv` and `kv_totals`; adds `screening` to a `kv` from before it; fills the totals of
/// a database that had `kv` without them.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA)?;
    let has_screening = conn
        .prepare("SELECT 1 FROM pragma_table_info('kv') WHERE name = 'screening'")?
        .exists([])?;
    if !has_screening {
        conn.execute_batch("ALTER TABLE kv ADD COLUMN screening TEXT")?;
    }
    conn.execute_batch(SCREENING_INDEX)?;
    let had_totals = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kv_totals'")?
        .exists([])?;
    let triggers: Option<String> = conn
        .row(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'kv_totals_insert'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if had_totals && triggers.is_some_and(|sql| sql.contains("screening")) {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(TOTALS_TABLE)?;
    tx.execute_batch(TOTALS)?;
    if !had_totals {
        tx.exec(
            &format!(
                "INSERT INTO kv_totals (integration, connector, bytes)
                 SELECT integration, connector, SUM({ROW_BYTES}) FROM kv
                  GROUP BY integration, connector"
            ),
            [],
        )?;
    }
    Ok(tx.commit()?)
}

/// Removes every entry kept for the screening with `idempotency_key` (its order is being
/// recorded in the caller's transaction). Returns how many.
pub(in crate::store) fn drop_screening_on(
    db: &dyn Db,
    integration: &str,
    idempotency_key: &str,
) -> Result<usize> {
    let changed = db.execute(
        "DELETE FROM kv WHERE integration = ?1 AND screening = ?2",
        args![integration, idempotency_key],
    )?;
    Ok(changed as usize)
}

/// The statement that removes every entry kept for the screening with `idempotency_key` once
/// an order holds that key (recorded in the caller's transaction or before): the order's check
/// is inside it.
pub(in crate::store) fn drop_recorded_screening_statement(
    integration: &str,
    idempotency_key: &str,
) -> Statement {
    Statement::new(
        "DELETE FROM kv WHERE integration = ?1 AND screening = ?2
           AND EXISTS (SELECT 1 FROM orders WHERE integration = ?1 AND idempotency_key = ?2)",
        values![integration, idempotency_key],
    )
}

/// A connector's state entry as [`Store::kv_get_counted`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Option<String>,
    /// Bytes the entry counts for the quota (key, value, screening's key); 0 without one.
    pub bytes: u64,
    /// Bytes the connector keeps in all, when asked for.
    pub total: Option<u64>,
}

/// [`Store::kv_get_counted`]'s statement, to be sent with others.
pub(in crate::store) fn kv_get_counted_statement(
    integration: &str,
    connector: &str,
    key: &str,
    with_total: bool,
) -> Statement {
    let total = if with_total {
        "CAST(COALESCE((SELECT SUM(bytes) FROM kv_totals
                         WHERE integration = ?1 AND connector = ?2), 0) AS BIGINT)"
    } else {
        "CAST(NULL AS BIGINT)"
    };
    // Left-joined to one row: an absent key still answers the total.
    let sql = format!(
        "SELECT kv.value, CAST(COALESCE({ROW_BYTES}, 0) AS BIGINT), {total}
           FROM (SELECT 1 AS one) AS one
           LEFT JOIN kv ON kv.integration = ?1 AND kv.connector = ?2 AND kv.key = ?3"
    );
    Statement::new(sql, values![integration, connector, key])
}

/// The entry [`kv_get_counted_statement`] answered.
pub(in crate::store) fn kv_entry(rows: &[Row]) -> Result<KvEntry> {
    let row = rows.first().ok_or(StoreError::NoRow)?;
    Ok(KvEntry {
        value: row.opt_text(0)?,
        bytes: row.int(1)?.max(0) as u64,
        total: row.opt_int(2)?.map(|t| t.max(0) as u64),
    })
}

/// One change to a connector's state, as its `state` import asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWrite {
    /// `state.set`.
    Set { key: String, value: String },
    /// `state.set-for-screening`: dropped with the screening's order.
    SetForScreening {
        screening: String,
        key: String,
        value: String,
    },
    /// `state.delete`.
    Delete { key: String },
}

impl KvWrite {
    /// The key it changes.
    pub fn key(&self) -> &str {
        match self {
            KvWrite::Set { key, .. }
            | KvWrite::SetForScreening { key, .. }
            | KvWrite::Delete { key } => key,
        }
    }
}

/// Makes `write` in the caller's write. False for a screening's entry not kept (that
/// screening's order is already recorded: the host never asks about it again).
pub(in crate::store) fn kv_write_on(
    db: &dyn Db,
    integration: &str,
    connector: &str,
    write: &KvWrite,
) -> Result<bool> {
    let statement = kv_write_statement(integration, connector, write);
    let changed = db.execute(&statement.sql, &statement.values)?;
    Ok(!matches!(write, KvWrite::SetForScreening { .. }) || changed == 1)
}

/// The statement that makes `write`. A screening's entry is kept only while the screening's
/// order is not recorded: one conditional statement (it changes no row otherwise).
pub(in crate::store) fn kv_write_statement(
    integration: &str,
    connector: &str,
    write: &KvWrite,
) -> Statement {
    match write {
        KvWrite::Set { key, value } => Statement::new(
            "INSERT INTO kv (integration, connector, key, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (integration, connector, key)
             DO UPDATE SET value = excluded.value, screening = NULL",
            values![integration, connector, key, value],
        ),
        KvWrite::SetForScreening {
            screening,
            key,
            value,
        } => Statement::new(
            "INSERT INTO kv (integration, connector, key, value, screening)
             SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), CAST(?3 AS TEXT), CAST(?4 AS TEXT),
                    CAST(?5 AS TEXT)
             WHERE NOT EXISTS
                 (SELECT 1 FROM orders WHERE integration = ?1 AND idempotency_key = ?5)
             ON CONFLICT (integration, connector, key)
             DO UPDATE SET value = excluded.value, screening = excluded.screening",
            values![integration, connector, key, value, screening],
        ),
        KvWrite::Delete { key } => Statement::new(
            "DELETE FROM kv WHERE integration = ?1 AND connector = ?2 AND key = ?3",
            values![integration, connector, key],
        ),
    }
}

/// [`Store::kv_apply`] in the caller's write: its statements in one round trip on PostgreSQL
/// ([`Db::execute_all`]). The rows each write changed (0: a screening's entry not kept, or a
/// delete of nothing).
pub(in crate::store) fn kv_apply_on(
    db: &dyn Db,
    integration: &str,
    connector: &str,
    writes: &[KvWrite],
) -> Result<Vec<u64>> {
    let statements: Vec<Statement> = writes
        .iter()
        .map(|write| kv_write_statement(integration, connector, write))
        .collect();
    // A write of its own: alone in its batch, they carry its commit.
    db.execute_all_last(&statements)
}

impl Store {
    /// A connector's state value.
    pub fn kv_get(&self, integration: &str, connector: &str, key: &str) -> Result<Option<String>> {
        self.read_db(|db| {
            db.query_opt(
                "SELECT value FROM kv WHERE integration = ?1 AND connector = ?2 AND key = ?3",
                args![integration, connector, key],
            )?
            .map(|r| r.text(0))
            .transpose()
        })
    }

    /// A connector's state value with the bytes its entry counts for the quota (0 without
    /// one) and, if `with_total`, the bytes the connector keeps in all: one statement (a round
    /// trip on PostgreSQL) for what a call's first read and its later quota checks need.
    pub fn kv_get_counted(
        &self,
        integration: &str,
        connector: &str,
        key: &str,
        with_total: bool,
    ) -> Result<KvEntry> {
        let read = kv_get_counted_statement(integration, connector, key, with_total);
        self.read_db(|db| kv_entry(&db.query(&read.sql, &read.values)?))
    }

    /// Sets a connector's state value; durable when it returns (see [`Store::write_now`]).
    pub fn kv_set(&self, integration: &str, connector: &str, key: &str, value: &str) -> Result<()> {
        let write = KvWrite::Set {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        self.kv_write(integration, connector, write).map(drop)
    }

    /// Sets a connector's state value that belongs to the screening with `idempotency_key`
    /// (dropped when its order is recorded); durable when it returns. Not kept, and false, when
    /// that screening's order is already recorded (the host never asks about it again).
    pub fn kv_set_for_screening(
        &self,
        integration: &str,
        connector: &str,
        idempotency_key: &str,
        key: &str,
        value: &str,
    ) -> Result<bool> {
        let write = KvWrite::SetForScreening {
            screening: idempotency_key.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        };
        self.kv_write(integration, connector, write)
    }

    /// Commits a connector's `writes`, in order, as one write of the group commit; durable when
    /// it returns.
    pub fn kv_apply(&self, integration: &str, connector: &str, writes: Vec<KvWrite>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let (integration, connector) = (integration.to_owned(), connector.to_owned());
        self.write_now(move |db| kv_apply_on(db, &integration, &connector, &writes).map(drop))
    }

    /// [`Store::kv_apply`] for async code: awaits the group commit, blocking no thread. The
    /// rows each write changed (0: a screening's entry not kept, or a delete of nothing).
    pub async fn kv_apply_committed(
        &self,
        integration: &str,
        connector: &str,
        writes: Vec<KvWrite>,
    ) -> Result<Vec<u64>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let (integration, connector) = (integration.to_owned(), connector.to_owned());
        self.write_db(move |db| kv_apply_on(db, &integration, &connector, &writes))
            .await
    }

    fn kv_write(&self, integration: &str, connector: &str, write: KvWrite) -> Result<bool> {
        let (integration, connector) = (integration.to_owned(), connector.to_owned());
        self.write_now(move |db| kv_write_on(db, &integration, &connector, &write))
    }

    /// Bytes (keys, values, screenings' keys) a connector keeps for an integration, not counting
    /// the entry `except_key`.
    pub fn kv_usage(&self, integration: &str, connector: &str, except_key: &str) -> Result<u64> {
        // One statement (a round trip on PostgreSQL), not one per lookup; the total is the sum
        // of the connector's stripes (PostgreSQL), an index search of the key's prefix.
        self.read_db(|db| {
            let usage = db
                .query_one(
                    &format!(
                        "SELECT CAST(COALESCE((SELECT SUM(bytes) FROM kv_totals
                                 WHERE integration = ?1 AND connector = ?2), 0)
                            - COALESCE((SELECT {ROW_BYTES} FROM kv
                                 WHERE integration = ?1 AND connector = ?2 AND key = ?3), 0)
                            AS BIGINT)"
                    ),
                    args![integration, connector, except_key],
                )?
                .int(0)?;
            Ok(usage.max(0) as u64)
        })
    }

    /// Bytes each connector keeps for each integration: `(integration, connector, bytes)`, on a
    /// read connection (`/metrics`: never behind the group commit's batch).
    pub fn kv_totals(&self) -> Result<Vec<(String, String, u64)>> {
        self.read_db(|db| {
            db.query(
                "SELECT integration, connector, CAST(SUM(bytes) AS BIGINT) FROM kv_totals
                 GROUP BY integration, connector ORDER BY integration, connector",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?, r.int(2)?.max(0) as u64)))
            .collect()
        })
    }

    /// Deletes a connector's state value; durable when it returns (see [`Store::write_now`]).
    pub fn kv_delete(&self, integration: &str, connector: &str, key: &str) -> Result<()> {
        let write = KvWrite::Delete {
            key: key.to_owned(),
        };
        self.kv_write(integration, connector, write).map(drop)
    }

    /// A write from synchronous code that may run anywhere — a connector's `state` import runs
    /// inside a guest call on the guest pool: one write of the group commit (sharing its fsync
    /// with the webhooks, claims and steps of the moment), the thread lent to the runtime
    /// meanwhile (`block_in_place`). Where that is impossible (a current-thread runtime, as in
    /// some tests) it is its own transaction.
    fn write_now<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.write_db_blocking(job))
            }
            Ok(_) => self.db(job),
            Err(_) => self.write_db_blocking(job),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::testing::on_both;

    /// On PostgreSQL a transaction that wrote a connector's state and is still open (one host's
    /// group commit, mid-batch) does not hold back another connection's write of the same
    /// connector's state (another host's): the totals' row is updated at commit. Once both
    /// committed, the totals count both.
    #[test]
    fn on_postgres_an_open_state_write_does_not_hold_back_another() {
        let store = crate::store::testing::postgres();
        write_beside_an_open_one(&store, None)
            .expect("the second write went through while the first was open");
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 4 + 5);
    }

    /// Writes `k1` (4 bytes) on one connection and, while that transaction is open (after
    /// `then` in it), commits `k2` (5 bytes) on another, bounded so that a wait for the first
    /// fails instead of hanging (`lock_timeout`: the totals are written at commit, after
    /// PostgreSQL has stopped the statement's `statement_timeout`); then commits the first.
    fn write_beside_an_open_one(store: &Store, then: Option<&str>) -> Result<()> {
        let insert = |key: &str, value: &str| {
            format!(
                "INSERT INTO kv (integration, connector, key, value)
                 VALUES ('a', 'certn', '{key}', '{value}')"
            )
        };
        store.db(|first| {
            first.execute("BEGIN", &[])?;
            first.execute(&insert("k1", "v1"), &[])?;
            if let Some(then) = then {
                first.execute(then, &[])?;
            }
            let other = store.db(|second| {
                second.execute("SET lock_timeout = 2000", &[])?;
                let written = second.execute(&insert("k2", "v22"), &[]);
                second.execute("SET lock_timeout = 0", &[])?;
                written
            });
            first.execute("COMMIT", &[])?;
            other.map(drop)
        })
    }

    /// Two hosts' transactions that wrote two connectors' state in opposite order commit
    /// without a deadlock, with right totals: each updates the totals rows once, in key order,
    /// at commit. Staged as under migration 8, where the old order (each row as written)
    /// deadlocked: a third transaction holds `a`'s totals (its stripe, and the new stripe it is
    /// making, the one wait left since migration 9) while the first (a, b) waits on it and the
    /// second (b, a) waits behind. Since migration 9 a flush that waited finds a free stripe
    /// afterwards, so this test no longer shows the key order itself (which matters only when
    /// two transactions make the same new stripes).
    #[test]
    fn on_postgres_opposite_state_writes_of_two_hosts_commit_without_a_deadlock() {
        let store = crate::store::testing::postgres();
        let write = |integration: &str, key: &str| {
            format!(
                "INSERT INTO kv (integration, connector, key, value)
                 VALUES ('{integration}', 'certn', '{key}', 'v')"
            )
        };
        store
            .db(|db| {
                db.execute(&write("a", "k0"), &[])?;
                db.execute(&write("b", "k0"), &[])
            })
            .unwrap();
        // A plain COMMIT (no retry of its deferred work): a deadlock would fail it.
        let host = |first: &'static str, second: &'static str| {
            let (store, first, second) = (store.clone(), write(first, "k1"), write(second, "k2"));
            std::thread::spawn(move || {
                store.db(|db| {
                    db.execute("BEGIN", &[])?;
                    db.execute(&first, &[])?;
                    db.execute(&second, &[])?;
                    db.execute("COMMIT", &[])
                })
            })
        };
        let waiting = |n: i64| crate::store::testing::wait_for_lock_waiters(&store, n);
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (locked, holding) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn({
            let store = store.clone();
            move || {
                store.transaction(|db| {
                    db.query(
                        "SELECT bytes FROM kv_totals WHERE integration = 'a' FOR UPDATE",
                        &[],
                    )?;
                    db.execute(
                        "INSERT INTO kv_totals (integration, connector, stripe, bytes)
                         VALUES ('a', 'certn', 1, 0)",
                        &[],
                    )?;
                    let _ = locked.send(());
                    let _ = held.recv();
                    Ok(())
                })
            }
        });
        holding.recv().unwrap();
        let ab = host("a", "b");
        waiting(1);
        let ba = host("b", "a");
        waiting(2);
        release.send(()).unwrap();
        holder.join().unwrap().unwrap();
        ab.join().unwrap().expect("the first host's commit");
        ba.join().unwrap().expect("the second host's commit");
        for integration in ["a", "b"] {
            assert_eq!(
                store.kv_usage(integration, "certn", "none").unwrap() as i64,
                sum(&store, integration, "certn")
            );
        }
    }

    /// On PostgreSQL a host's commit that is applying its state writes to a connector's totals
    /// (its deferred work run, the transaction still open) does not hold back another host's
    /// commit of the same connector's state: that one adds to another stripe. One totals row
    /// per connector made the second wait until the first ended.
    #[test]
    fn on_postgres_two_commits_of_one_connectors_totals_do_not_wait_on_each_other() {
        let store = crate::store::testing::postgres();
        store.kv_set("a", "certn", "k0", "v").unwrap();
        // The flush that COMMIT runs first, run now: the first holds the totals it updated.
        write_beside_an_open_one(&store, Some("SET CONSTRAINTS ALL IMMEDIATE"))
            .expect("the second commit went through while the first held its totals");
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 3 + 4 + 5);
        assert_eq!(
            store.kv_usage("a", "certn", "none").unwrap() as i64,
            sum(&store, "a", "certn")
        );
        assert_eq!(
            store.kv_totals().unwrap(),
            vec![("a".into(), "certn".into(), 12)]
        );
    }

    /// A `kv` change of a connector without a totals row (lost, or never made) makes the
    /// true total, counted from `kv`: a delete made a negative row that hid the rest.
    #[test]
    fn on_postgres_a_change_without_totals_counts_them_from_the_state() {
        let store = crate::store::testing::postgres();
        store.kv_set("a", "certn", "k1", "xxxx").unwrap();
        store.kv_set("a", "certn", "k2", "yy").unwrap();
        store
            .db(|db| db.execute("DELETE FROM kv_totals", &[]))
            .unwrap();
        store.kv_delete("a", "certn", "k1").unwrap();
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 2 + 2);
        assert_eq!(
            store.kv_usage("a", "certn", "none").unwrap() as i64,
            sum(&store, "a", "certn")
        );
    }

    /// A PostgreSQL database at version 8 keeps its totals through migration 9 (as stripe 0),
    /// and counts on from them.
    #[test]
    fn on_postgres_totals_from_before_stripes_are_carried_over() {
        let url = postgres_at(
            8,
            &["INSERT INTO kv (integration, connector, key, value) VALUES ('a', 'certn', 'k', 'vvv')"],
        );
        let store = Store::open_postgres(&url, None).unwrap();
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 1 + 3);
        store.kv_set("a", "certn", "k2", "v").unwrap();
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 4 + 3);
    }

    /// A PostgreSQL database at version 9 whose totals went wrong (migration 8's DELETE
    /// without a totals row made a negative one) has them counted again from `kv` by migration
    /// 10, and counts on from there.
    #[test]
    fn on_postgres_wrong_totals_are_counted_again_at_the_upgrade() {
        let url = postgres_at(
            9,
            &[
                "INSERT INTO kv (integration, connector, key, value)
                     VALUES ('a', 'certn', 'k', 'vvv'), ('b', 'certn', 'k', 'v')",
                // Committed (its totals made at commit): now made wrong.
                "UPDATE kv_totals SET bytes = -7 WHERE integration = 'a';
                 INSERT INTO kv_totals (integration, connector, stripe, bytes)
                     VALUES ('b', 'certn', 1, 40), ('gone', 'certn', 0, 9);",
            ],
        );
        let store = Store::open_postgres(&url, None).unwrap();
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 1 + 3);
        assert_eq!(store.kv_usage("b", "certn", "none").unwrap(), 1 + 1);
        assert_eq!(store.kv_usage("gone", "certn", "none").unwrap(), 0);
        store.kv_set("a", "certn", "k2", "v").unwrap();
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 4 + 3);
        assert_eq!(
            store.kv_totals().unwrap(),
            vec![
                ("a".into(), "certn".into(), 7),
                ("b".into(), "certn".into(), 2)
            ]
        );
    }

    /// An upgrade from schema 8 to 10 while an older host has written `kv` in an open
    /// transaction waits for that transaction, which then commits (flushing its totals into
    /// `kv_totals`), and then goes through: no deadlock between migration 9's hold on
    /// `kv_totals` and migration 10's wait for `kv`. Waits are bounded (`lock_timeout`) so a
    /// regression fails instead of hanging.
    #[test]
    fn on_postgres_an_upgrade_to_10_waits_for_an_old_hosts_state_write_without_a_deadlock() {
        let url = postgres_at(8, &[]);
        let pg = crate::store::pg::Pg::connect(&url, None).unwrap();
        let old_host = pg.conn().unwrap();
        old_host
            .batch(
                "SET lock_timeout = 5000; BEGIN;
                 INSERT INTO kv (integration, connector, key, value) VALUES ('a', 'certn', 'k', 'vvv');",
            )
            .unwrap();
        let upgrade = {
            let url = url.clone();
            std::thread::spawn(move || {
                let pg = crate::store::pg::Pg::connect(&url, None)?;
                let conn = pg.conn()?;
                conn.batch("SET lock_timeout = 5000")?;
                crate::store::migrations::postgres(&conn)
            })
        };
        let watcher = pg.conn().unwrap();
        let mut waiting = false;
        for _ in 0..1_000 {
            let n = Db::query_one(
                &watcher,
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .int(0)
            .unwrap();
            if n >= 1 {
                waiting = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(waiting, "the upgrade waits for the open write");
        old_host
            .batch("COMMIT")
            .expect("the older host's write commits");
        upgrade
            .join()
            .unwrap()
            .expect("the upgrade goes through after it");
        drop((old_host, watcher));
        let store = Store::open_postgres(&url, None).unwrap();
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 1 + 3);
    }

    /// One statement answers a key's value, its counted size and, when asked, the total.
    #[test]
    fn a_counted_read_answers_the_entry_and_the_total() {
        on_both(|store| {
            store.kv_set("a", "certn", "k", "vvv").unwrap();
            store
                .kv_set_for_screening("a", "certn", "s1", "intent:s1", "1")
                .unwrap();
            let read = |key: &str, with_total: bool| {
                store.kv_get_counted("a", "certn", key, with_total).unwrap()
            };
            let total = 4 + (9 + 1 + 2);
            assert_eq!(
                read("k", true),
                KvEntry {
                    value: Some("vvv".into()),
                    bytes: 4,
                    total: Some(total)
                }
            );
            assert_eq!(read("intent:s1", false).bytes, 12);
            assert_eq!(read("intent:s1", false).total, None);
            assert_eq!(
                read("missing", true),
                KvEntry {
                    value: None,
                    bytes: 0,
                    total: Some(total)
                }
            );
            assert_eq!(
                store.kv_get_counted("nobody", "certn", "k", true).unwrap(),
                KvEntry {
                    value: None,
                    bytes: 0,
                    total: Some(0)
                }
            );
        });
    }

    /// A new PostgreSQL database at schema `version`, each of `sql` then committed alone: its
    /// URL.
    fn postgres_at(version: i64, sql: &[&str]) -> String {
        let url = crate::store::testing::postgres_url();
        let pg = crate::store::pg::Pg::connect(&url, None).unwrap();
        let conn = pg.conn().unwrap();
        crate::store::migrations::postgres_to(&conn, version).unwrap();
        for sql in sql {
            conn.batch(sql).unwrap();
        }
        url
    }

    fn sum(store: &Store, integration: &str, connector: &str) -> i64 {
        store
            .db(|db| {
                db.query_one(
                    &format!(
                        "SELECT CAST(COALESCE(SUM({ROW_BYTES}), 0) AS BIGINT) FROM kv
                         WHERE integration = ?1 AND connector = ?2"
                    ),
                    args![integration, connector],
                )?
                .int(0)
            })
            .unwrap()
    }

    #[test]
    fn usage_follows_sets_overwrites_and_deletes() {
        on_both(|store| {
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
        });
    }

    #[test]
    fn a_database_from_before_the_totals_gets_them_filled_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(SCHEMA).unwrap();
            old.execute(
                "INSERT INTO kv (integration, connector, key, value)
                 VALUES ('a', 'certn', 'order:1', 'abc'), ('a', 'certn', 'k', 'v')",
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

    #[test]
    fn a_screening_entry_counts_its_key_and_a_plain_set_makes_it_permanent() {
        on_both(|store| {
            assert!(store
                .kv_set_for_screening("a", "certn", "lever:t1", "intent:lever:t1", "17")
                .unwrap());
            assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 15 + 2 + 8);
            // The same key set plainly: kept for good, no screening counted.
            store.kv_set("a", "certn", "intent:lever:t1", "17").unwrap();
            assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 15 + 2);
            assert_eq!(
                store.kv_usage("a", "certn", "none").unwrap() as i64,
                sum(&store, "a", "certn")
            );
            let dropped = store
                .write_db_blocking(|db| drop_screening_on(db, "a", "lever:t1"))
                .unwrap();
            assert_eq!(dropped, 0, "a plain entry is not the screening's any more");
        });
    }

    #[test]
    fn a_database_from_before_screening_entries_gets_the_column_and_counts_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db");
        {
            // The tables and triggers as they were: no `screening`.
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE kv (integration TEXT NOT NULL, connector TEXT NOT NULL,
                    key TEXT NOT NULL, value TEXT NOT NULL,
                    PRIMARY KEY (integration, connector, key));
                 CREATE TABLE kv_totals (integration TEXT NOT NULL, connector TEXT NOT NULL,
                    bytes INTEGER NOT NULL, PRIMARY KEY (integration, connector));
                 CREATE TRIGGER kv_totals_insert AFTER INSERT ON kv BEGIN
                    INSERT INTO kv_totals SELECT NEW.integration, NEW.connector, 0
                     WHERE NOT EXISTS (SELECT 1 FROM kv_totals WHERE integration = NEW.integration
                                        AND connector = NEW.connector);
                    UPDATE kv_totals SET bytes = bytes + LENGTH(NEW.key) + LENGTH(NEW.value)
                     WHERE integration = NEW.integration AND connector = NEW.connector;
                 END;
                 INSERT INTO kv VALUES ('a', 'certn', 'order:1', 'abc');",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.kv_usage("a", "certn", "none").unwrap(), 10);
        store
            .kv_set_for_screening("a", "certn", "k9", "intent:k9", "1")
            .unwrap();
        assert_eq!(
            store.kv_usage("a", "certn", "none").unwrap(),
            10 + 9 + 1 + 2
        );
        assert_eq!(
            store.kv_usage("a", "certn", "none").unwrap() as i64,
            sum(&store, "a", "certn")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
