//! Versioned schema migrations, run when the store opens, on both backends.
//!
//! `schema_migrations (version, applied_at)` records each applied migration. At open, the store
//! applies every migration of [`MIGRATIONS`] newer than the database's version, in order, and
//! refuses a database whose version is newer than any it knows ([`StoreError::NewerSchema`]:
//! a newer switchyard wrote it; this one would misread it).
//!
//! Version 1 is the schema as it stood when migrations came in. On SQLite it is applied by the
//! code that used to run at every open (`CREATE TABLE IF NOT EXISTS` and each module's column
//! checks): a database from before versioning, at whatever older columns it had, is brought to
//! version 1 in place, then recorded. On PostgreSQL it is plain DDL
//! (`migrations/0001_baseline.postgres.sql`).
//!
//! **Adding a schema change** (every issue's goes here, never into a module's open path): append
//! a [`Migration`] with the next version, its SQLite SQL and its PostgreSQL SQL (they may differ
//! in types: BIGINT, DOUBLE PRECISION, BYTEA, identity columns there). Each runs in one
//! transaction with the row that records it; never edit an applied one.

use rusqlite::{Connection, OptionalExtension};

use super::pg::PgConn;
use super::sql::{args, Db};
use super::{now_ms, Result, StoreError};

/// One step of the schema.
pub(in crate::store) struct Migration {
    pub version: i64,
    /// What it changes, for logs.
    pub name: &'static str,
    sqlite: Sqlite,
    postgres: &'static str,
}

enum Sqlite {
    /// Statements run in the migration's transaction.
    Sql(&'static str),
    /// Code that manages its own statements (the baseline, which predates versioning).
    Code(fn(&Connection) -> Result<()>),
}

/// Every migration, oldest first; versions are 1, 2, 3 … without gaps.
pub(in crate::store) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name:
            "baseline: events, attempts, runs, orders, notes, kv, operators' tables, OAuth, Gem, \
           tombstones",
        sqlite: Sqlite::Code(super::sqlite_baseline),
        postgres: include_str!("migrations/0001_baseline.postgres.sql"),
    },
    Migration {
        version: 2,
        name: "console: each event's inbound headers and outbound calls, replay jobs, console \
           sessions, sign-in counters and audit log",
        sqlite: Sqlite::Sql(include_str!("migrations/0002_console.sqlite.sql")),
        postgres: include_str!("migrations/0002_console.postgres.sql"),
    },
    Migration {
        version: 3,
        name: "cluster: partial indexes of the queued events (the claim's), housekeeping leaders",
        sqlite: Sqlite::Sql(include_str!("migrations/0003_cluster.sqlite.sql")),
        postgres: include_str!("migrations/0003_cluster.postgres.sql"),
    },
    Migration {
        version: 4,
        name: "shared: uploaded connector components in the database, shared revisions, \
           integrations' edit revision",
        sqlite: Sqlite::Sql(include_str!("migrations/0004_shared.sqlite.sql")),
        postgres: include_str!("migrations/0004_shared.postgres.sql"),
    },
    Migration {
        version: 5,
        name: "bodies: event bodies in `event_bodies`, apart from the hot `events` rows; the \
           claim sequence that fences outcomes",
        sqlite: Sqlite::Sql(include_str!("migrations/0005_bodies.sqlite.sql")),
        postgres: include_str!("migrations/0005_bodies.postgres.sql"),
    },
];

/// The schema version this build writes.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    applied_at BIGINT NOT NULL
)";

/// Refuses a database a newer switchyard wrote.
fn check_not_newer(found: Option<i64>) -> Result<i64> {
    let found = found.unwrap_or(0);
    if found > latest() {
        return Err(StoreError::NewerSchema {
            found,
            known: latest(),
        });
    }
    Ok(found)
}

/// Brings a SQLite database to [`latest`].
pub(in crate::store) fn sqlite(conn: &Connection) -> Result<()> {
    // Read first: a database at the latest version opens without DDL (another process, such as
    // a running host, may hold the write lock).
    let has_table = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !has_table {
        conn.execute_batch(TABLE)?;
    }
    let current = check_not_newer(
        Db::query_one(conn, "SELECT MAX(version) FROM schema_migrations", &[])?.opt_int(0)?,
    )?;
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        match migration.sqlite {
            // Its own transactions (it predates versioning, and each of its steps is idempotent:
            // a crash halfway is finished by the next open).
            Sqlite::Code(run) => {
                run(conn)?;
                record(conn, migration.version)?;
            }
            Sqlite::Sql(sql) => {
                let tx = conn.unchecked_transaction()?;
                tx.execute_batch(sql)?;
                record(&*tx, migration.version)?;
                tx.commit()?;
            }
        }
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "schema migrated"
        );
    }
    Ok(())
}

/// Brings a PostgreSQL database to [`latest`]. Hosts starting together take turns (an advisory
/// lock held by the transaction), so each migration runs once.
pub(in crate::store) fn postgres(conn: &PgConn) -> Result<()> {
    conn.batch(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock({LOCK}); {TABLE};"
    ))?;
    let applied = (|| {
        let current = check_not_newer(
            Db::query_one(conn, "SELECT MAX(version) FROM schema_migrations", &[])?.opt_int(0)?,
        )?;
        for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
            conn.batch(migration.postgres)?;
            record(conn, migration.version)?;
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "schema migrated"
            );
        }
        Ok(())
    })();
    match applied {
        Ok(()) => conn.batch("COMMIT"),
        Err(e) => {
            if let Err(rollback) = conn.batch("ROLLBACK") {
                tracing::error!(error = %rollback, "cannot roll back a failed migration");
            }
            Err(e)
        }
    }
}

/// The advisory lock key of migrations (any constant; "sy-migr" in ASCII).
const LOCK: i64 = 0x0073_792d_6d69_6772;

fn record(db: &dyn Db, version: i64) -> Result<()> {
    db.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
        args![version, now_ms()],
    )?;
    Ok(())
}

/// The database's schema version (0: none applied).
pub(in crate::store) fn version(db: &dyn Db) -> Result<i64> {
    Ok(db
        .query_one("SELECT MAX(version) FROM schema_migrations", &[])?
        .opt_int(0)?
        .unwrap_or(0))
}
