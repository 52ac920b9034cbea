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
    Migration {
        version: 6,
        name: "pgack: PostgreSQL's `state` quota totals updated at commit (a deferred trigger), \
           not at each write",
        sqlite: Sqlite::Sql(include_str!("migrations/0006_pgack.sqlite.sql")),
        postgres: include_str!("migrations/0006_pgack.postgres.sql"),
    },
    Migration {
        version: 7,
        name: "ack4: fewer index entries per queued webhook (`events_due` dropped, \
           `events_finished` only of done and skipped events, `events_waiting_due` only of \
           waiting ones)",
        sqlite: Sqlite::Sql(include_str!("migrations/0007_ack4.sqlite.sql")),
        postgres: include_str!("migrations/0007_ack4.postgres.sql"),
    },
    Migration {
        version: 8,
        name: "pg4: PostgreSQL's `state` quota totals updated once per key per transaction, in \
           key order, at commit",
        sqlite: Sqlite::Sql(include_str!("migrations/0008_pg4.sqlite.sql")),
        postgres: include_str!("migrations/0008_pg4.postgres.sql"),
    },
    Migration {
        version: 9,
        name: "pg5: PostgreSQL's `state` quota totals in stripes, so hosts' commits do not \
           queue on one row; a connector's first totals row counted from `kv`",
        sqlite: Sqlite::Sql(include_str!("migrations/0009_pg5.sqlite.sql")),
        postgres: include_str!("migrations/0009_pg5.postgres.sql"),
    },
    Migration {
        version: 10,
        name: "pg6: PostgreSQL's `state` quota totals counted again from `kv` (a total migration \
           8's DELETE made wrong is right again)",
        sqlite: Sqlite::Sql(include_str!("migrations/0010_pg6.sqlite.sql")),
        postgres: include_str!("migrations/0010_pg6.postgres.sql"),
    },
    Migration {
        version: 11,
        name: "ack9: the oldest pending event's receipt time read from an index of the queued \
           and running events (`events_pending_received`), not from every one of their rows",
        sqlite: Sqlite::Sql(include_str!("migrations/0011_ack9.sqlite.sql")),
        postgres: include_str!("migrations/0011_ack9.postgres.sql"),
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
    sqlite_to(conn, latest())
}

/// Brings a SQLite database to version `target` (tests: a database as an older build left it).
pub(in crate::store) fn sqlite_to(conn: &Connection, target: i64) -> Result<()> {
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
    for migration in MIGRATIONS
        .iter()
        .filter(|m| m.version > current && m.version <= target)
    {
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
    postgres_to(conn, latest())
}

/// Brings a PostgreSQL database to version `target` (tests: as an older build left it).
pub(in crate::store) fn postgres_to(conn: &PgConn, target: i64) -> Result<()> {
    conn.batch(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock({LOCK}); {TABLE};"
    ))?;
    let applied = (|| {
        let current = check_not_newer(
            Db::query_one(conn, "SELECT MAX(version) FROM schema_migrations", &[])?.opt_int(0)?,
        )?;
        if (1..PG6).contains(&current) && target >= PG6 {
            // Migration 10 locks `kv` against writes. Taken first, before migration 9's `ALTER
            // TABLE kv_totals`: a host of an older version commits its `kv` writes and then
            // flushes their totals into `kv_totals`, so an upgrade holding `kv_totals` while it
            // waits for `kv` deadlocks with it. `kv` then `kv_totals`, as every host's commit.
            // Bounded: while it waits, and then until it commits, every `kv` write waits
            // behind it (each host's writer thread, so its acks and claims too). Past 10
            // seconds the upgrade fails, having changed nothing, and can be retried.
            conn.batch("SET LOCAL lock_timeout = '10s'; LOCK TABLE kv IN SHARE MODE")?;
        }
        for migration in MIGRATIONS
            .iter()
            .filter(|m| m.version > current && m.version <= target)
        {
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

/// The migration that recounts `kv_totals` under a lock on `kv` (`0010_pg6`).
const PG6: i64 = 10;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::search::EventFilter;
    use crate::store::{EventState, Finish, Store};

    /// Events as a build at version 4 stored them: the body in the `events` row.
    fn old_events(db: &dyn Db) {
        for (key, body, state, finished) in [
            ("old-1", r#"{"opportunityId":"opp_old"}"#, "queued", None),
            ("old-2", r#"{"n":2}"#, "done", Some(1_i64)),
        ] {
            db.execute(
                "INSERT INTO events (integration, kind, dedupe_key, payload_hash, payload, state,
                    next_attempt_at, received_at, finished_at)
                 VALUES ('acme', 'lever.stage_change', ?1, 'h', ?2, ?3, 0, 0, ?4)",
                args![key, body, state, finished],
            )
            .unwrap();
        }
    }

    /// A database at version 4 with events, opened by this build: the bodies moved to
    /// `event_bodies`, and the events are still shown, searched, processed and pruned.
    async fn check_migrated(s: Store) {
        assert_eq!(s.schema_version().unwrap(), latest());
        let shown: Vec<(String, String)> = s
            .events("acme", 10)
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.payload))
            .collect();
        assert_eq!(shown.len(), 2);
        assert_eq!(shown[1].1, r#"{"opportunityId":"opp_old"}"#);
        let found = EventFilter {
            text: Some("opp_old".into()),
            ..EventFilter::default()
        };
        assert_eq!(s.count_events(&found).unwrap(), 1, "searched in the body");

        let e = s
            .claim(&crate::store::Claim::any("r", 60_000))
            .unwrap()
            .expect("the old queued event is claimable");
        assert_eq!(e.payload, r#"{"opportunityId":"opp_old"}"#);
        let done = Finish {
            run: "r",
            claim_seq: e.claim_seq,
            state: EventState::Done,
            error: None,
            connector_version: None,
            retry_at: None,
            started_at_ms: now_ms(),
            took_ms: 1,
        };
        assert!(s.finish(e.id, &done).await.unwrap());

        // The old finished event goes with its body; the one just finished stays.
        let pruned = s.prune_batch(10, now_ms(), 100).await.unwrap();
        assert_eq!(pruned.events, 1);
        let bodies = s
            .db(|db| {
                db.query_one("SELECT COUNT(*) FROM event_bodies", &[])?
                    .int(0)
            })
            .unwrap();
        assert_eq!(bodies, 1);
    }

    #[tokio::test]
    async fn a_database_at_version_4_migrates_its_bodies_in_place_on_both_backends() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("v4.db");
        {
            let conn = Connection::open(&path).unwrap();
            sqlite_to(&conn, 4).unwrap();
            old_events(&conn);
        }
        check_migrated(Store::open(&path).unwrap()).await;

        let url = crate::store::testing::postgres_url();
        let pg = crate::store::pg::Pg::connect(&url, None).unwrap();
        let conn = pg.conn().unwrap();
        postgres_to(&conn, 4).unwrap();
        old_events(&conn);
        drop(conn);
        check_migrated(Store::open_postgres(&url, None).unwrap()).await;
    }
}
