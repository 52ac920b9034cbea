//! Durable state in embedded SQLite (WAL): the event queue, vendor orders, notes to write, and the
//! connectors' key-value state.
//!
//! Invariants:
//! - an event row is committed before the webhook that carried it is acknowledged (in the batch
//!   that holds it: see [`writer`]);
//! - `(integration, dedupe_key)` is unique, so a redelivered webhook or callback never queues twice;
//! - an order's state only moves forward (see [`rank`]), so a late or replayed callback cannot undo
//!   a newer status;
//! - a note is recorded once per `(integration, order, text)` and marked written after the ATS
//!   confirmed it.
//!
//! One connection behind a mutex: SQLite serializes writers anyway, and every statement here is
//! short. Calls block briefly; they are made from async code on purpose (sub-millisecond in WAL).
//! Writes on a hot path go through [`Store::write`] instead: the [`writer`] thread commits
//! concurrent writes together (group commit, one fsync per batch) and answers each only after
//! its batch committed, without blocking an async thread during the fsync.
//!
//! Modules: this one (schema, intake), [`kv`] (connectors' `state`, with the totals its quota
//! checks and the screening-scoped entries dropped with their order), [`orders`] (orders with the
//! idempotency key that started them, notes, a status recorded in one transaction), [`queue`] (claims, outcomes, attempt history), [`runs`] (process runs, lease
//! renewal, taking back a dead run's events), [`admin`] (operator tables), [`console`] (the
//! console's sessions, sign-in rate limits and audit log), [`oauth`] (Lever OAuth
//! grants), [`gem`] (Gem's API keys and screenings), [`verdicts`], [`retention`] (what a retention
//! pass prunes and keeps, tombstones of pruned dedupe keys), [`traffic`] (each event's inbound
//! headers and its attempts' outbound calls), [`search`] (the operators' event filter),
//! [`replay`] (replaying one event or a filter's events as a stored job), [`stats`] (the
//! console's numbers: events and failures per minute, queue depth, latency per version), [`writer`] (group commit).
//!
//! **Backend seam.** All SQL of the host lives in `store/`: the connection, [`Store::write`] and
//! the statement cache are private to this module (`pub(in crate::store)`), so callers see only
//! `Store`'s methods and plain types. An ATS (or anything else) that needs a table adds it here,
//! as a module of `store/` with its schema and methods, on every backend. A PostgreSQL backend implements the same methods: the queue's claim becomes
//! `SELECT … FOR UPDATE SKIP LOCKED` + `UPDATE` (see [`queue`]), runs and leases are already
//! designed for several hosts on one database (see [`runs`]), multi-statement steps are
//! already single transactions, and group commit is the same batching over one PostgreSQL
//! connection (`BEGIN`, a `SAVEPOINT` per job, one `COMMIT`: see [`writer`]).

pub mod admin;
pub mod console;
pub mod gem;
pub mod kv;
pub mod orders;
pub mod queue;
pub mod replay;
pub mod retention;
pub mod runs;
pub mod search;
pub mod stats;
pub mod traffic;
pub mod writer;

pub use crate::metrics::WriterStats;
pub use orders::{rank, NewNote, Order, PendingNote, StatusRecord};
pub use queue::{Attempt, Claim, EventDetail, Finish};
pub use runs::{Resumed, RunInfo};
pub mod oauth;
pub mod verdicts;
pub mod waiting;
pub use waiting::{Retried, WaitFor, Waiting};

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the database directory: {0}")]
    Io(#[from] std::io::Error),
    /// The write itself succeeded, but the transaction holding it (shared with other writes)
    /// could not be committed: nothing of it is stored.
    #[error("the batch holding this write could not be committed: {0}")]
    Batch(String),
    /// The writer thread is gone (the store is being dropped): the write was not made.
    #[error("the store's writer has stopped")]
    WriterStopped,
    /// The write panicked; it was rolled back.
    #[error("a store write panicked")]
    Panicked,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// Group commit for [`Store::write`]; its thread ends with the last clone.
    writer: writer::Writer,
}

/// Lifecycle of an event. Transitions: queued → running → (done | skipped | queued again with a
/// later `next_attempt_at` | waiting | dead); waiting → queued (see [`waiting`]). A running event
/// whose lease expired (its worker crashed) is taken back (see [`runs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    Queued,
    Running,
    Done,
    Skipped,
    /// Held with a reason until something it needs changes (see [`waiting`]).
    Waiting,
    Dead,
}

impl EventState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventState::Queued => "queued",
            EventState::Running => "running",
            EventState::Done => "done",
            EventState::Skipped => "skipped",
            EventState::Waiting => "waiting",
            EventState::Dead => "dead",
        }
    }
    pub(crate) fn parse(s: &str) -> EventState {
        match s {
            "running" => EventState::Running,
            "done" => EventState::Done,
            "skipped" => EventState::Skipped,
            "waiting" => EventState::Waiting,
            "dead" => EventState::Dead,
            _ => EventState::Queued,
        }
    }
}

/// A stored event, as claimed by a worker or listed for operators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Event {
    pub id: i64,
    pub integration: String,
    pub kind: String,
    pub payload: String,
    pub state: EventState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub connector_version: Option<String>,
    /// What a waiting event waits for (its reason is `last_error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<WaitFor>,
    /// When the webhook or callback carrying it was accepted (unix ms).
    pub received_at_ms: i64,
}

/// Result of offering a new event to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored under this id.
    New(i64),
    /// The same dedupe key was stored before; `same_payload` tells a redelivery from a replay.
    Duplicate { id: i64, same_payload: bool },
}

pub(crate) use crate::clock::now_ms;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    integration TEXT NOT NULL,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
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
CREATE INDEX IF NOT EXISTS events_due ON events (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    integration TEXT NOT NULL,
    order_ref TEXT NOT NULL,
    connector TEXT NOT NULL,
    opportunity_id TEXT NOT NULL,
    state TEXT NOT NULL,
    label TEXT NOT NULL,
    report_url TEXT,
    score REAL,
    verdict TEXT,
    updated_at INTEGER NOT NULL,
    UNIQUE (integration, order_ref)
);
CREATE INDEX IF NOT EXISTS orders_by_opportunity ON orders (integration, opportunity_id);
CREATE TABLE IF NOT EXISTS notes (
    integration TEXT NOT NULL,
    order_ref TEXT NOT NULL,
    text TEXT NOT NULL,
    secret INTEGER NOT NULL,
    written_at INTEGER,
    PRIMARY KEY (integration, order_ref, text)
);
"#;

impl Store {
    /// Opens (creating if needed) the database at `path` in WAL mode.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        // First: another process (a host) may hold the write lock while this one opens.
        conn.pragma_update(None, "busy_timeout", 5000)?;
        // Before the first table: a new database returns pruned pages to the file system on
        // `PRAGMA incremental_vacuum`. An older one (auto_vacuum off) is not converted, since a
        // full VACUUM rewrites the file and needs as much free disk again; it reuses its free
        // pages instead, so it stops growing once retention prunes as much as arrives.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        // WAL + synchronous=FULL: a committed event survives a crash or power loss.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(gem::SCHEMA)?;
        conn.execute_batch(crate::store::admin::SCHEMA)?;
        conn.execute_batch(console::SCHEMA)?;
        queue::migrate(&conn)?;
        conn.execute_batch(runs::SCHEMA)?;
        conn.execute_batch(crate::store::oauth::SCHEMA)?;
        verdicts::migrate(&conn)?;
        orders::migrate(&conn)?;
        kv::migrate(&conn)?;
        waiting::migrate(&conn)?;
        conn.execute_batch(retention::SCHEMA)?;
        conn.execute_batch(traffic::SCHEMA)?;
        conn.execute_batch(replay::SCHEMA)?;
        retention::prepare(&conn)?;
        let conn = Arc::new(Mutex::new(conn));
        let writer = writer::Writer::start(conn.clone())?;
        Ok(Store { conn, writer })
    }

    /// The connection, for the modules of `store/` (one per group of tables).
    pub(in crate::store) fn conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    /// Runs `job` on the [`writer`] thread, in a transaction shared with the other writes that
    /// arrived meanwhile (group commit), inside a savepoint of its own: if it fails, only it is
    /// rolled back. Returns once that transaction committed (or failed: [`StoreError::Batch`],
    /// nothing of the job stored). Waits while the writer's queue is full.
    ///
    /// `job` must not begin, commit or roll back a transaction, and must not call any `Store`
    /// method: the writer holds the connection (a deadlock). Keep it short: the whole batch
    /// waits for it. Crate-only, so that no connection leaks past the backend seam.
    pub(in crate::store) async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.writer.write(job).await
    }

    /// [`Store::write`] from a blocking thread (a worker's claim); never from an async task.
    pub(in crate::store) fn write_blocking<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.writer.write_blocking(job)
    }

    /// Commits and batch sizes of [`Store::write`] so far (metrics).
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// [`Store::enqueue`] through the [`writer`]: committed with the writes that arrived at the
    /// same time, answered once durable. For intake on async threads.
    pub async fn enqueue_batched(
        &self,
        integration: &str,
        kind: &str,
        dedupe_key: &str,
        payload: &str,
    ) -> Result<Enqueued> {
        let (integration, kind, dedupe_key, payload) = (
            integration.to_owned(),
            kind.to_owned(),
            dedupe_key.to_owned(),
            payload.to_owned(),
        );
        self.write(move |conn| enqueue_on(conn, &integration, &kind, &dedupe_key, &payload))
            .await
    }

    /// [`Store::enqueue_all`] through the [`writer`]: all or none, in one savepoint of a shared
    /// batch, answered once durable.
    pub async fn enqueue_all_batched(
        &self,
        integration: &str,
        kind: &str,
        events: Vec<(String, String)>,
    ) -> Result<Vec<Enqueued>> {
        let (integration, kind) = (integration.to_owned(), kind.to_owned());
        self.write(move |conn| {
            events
                .iter()
                .map(|(key, payload)| enqueue_on(conn, &integration, &kind, key, payload))
                .collect()
        })
        .await
    }

    /// Queues an event unless its dedupe key was seen before. Committed when this returns, in a
    /// commit of its own on the calling thread (tests, tools); intake uses
    /// [`Store::enqueue_batched`].
    pub fn enqueue(
        &self,
        integration: &str,
        kind: &str,
        dedupe_key: &str,
        payload: &str,
    ) -> Result<Enqueued> {
        enqueue_on(&self.conn(), integration, kind, dedupe_key, payload)
    }

    /// Queues several events of one kind in one transaction: all or none are committed (a
    /// vendor callback's status updates).
    pub fn enqueue_all(
        &self,
        integration: &str,
        kind: &str,
        events: &[(String, String)],
    ) -> Result<Vec<Enqueued>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut done = Vec::with_capacity(events.len());
        for (dedupe_key, payload) in events {
            done.push(enqueue_on(&tx, integration, kind, dedupe_key, payload)?);
        }
        tx.commit()?;
        Ok(done)
    }

    /// Records a request that failed before it could be queued (e.g. a connector trapped while
    /// handling a vendor callback, which the vendor will retry): a dead event, for operators.
    pub fn record_failure(
        &self,
        integration: &str,
        kind: &str,
        payload: &str,
        error: &str,
        connector_version: &str,
    ) -> Result<i64> {
        let conn = self.conn();
        let now = now_ms();
        conn.exec(
            "INSERT INTO events (integration, kind, dedupe_key, payload_hash, payload, state,
                attempts, next_attempt_at, received_at, finished_at, last_error, connector_version)
             VALUES (?1, ?2, ?3, '', ?4, 'dead', 1, ?5, ?5, ?5, ?6, ?7)",
            params![
                integration,
                kind,
                format!("failure:{}", uuid::Uuid::new_v4()),
                payload,
                now,
                error,
                connector_version
            ],
        )?;
        let id = conn.last_insert_rowid();
        queue::record_attempt(
            &conn,
            id,
            None,
            now,
            0,
            queue::AttemptOutcome::Dead,
            Some(error),
            Some(connector_version),
        )?;
        Ok(id)
    }
}

/// `execute` and `query_row` through the connection's statement cache: a statement is parsed
/// (and the triggers it fires compiled) once, not on every call — which, per webhook and per
/// step, cost more CPU than running it.
pub(in crate::store) trait Cached {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Statements kept prepared (the hot ones of intake, claims, steps and `state` are about 40).
const STATEMENT_CACHE: usize = 128;

/// The connection, even after a panic while it was held: SQLite stays consistent (statements and
/// transactions are atomic; the writer rolls back what a panicking job left).
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`Store::enqueue`] on a connection (or transaction) the caller holds, so that an event can be
/// committed together with rows that describe it.
pub(in crate::store) fn enqueue_on(
    conn: &Connection,
    integration: &str,
    kind: &str,
    dedupe_key: &str,
    payload: &str,
) -> Result<Enqueued> {
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(payload.as_bytes()));
    let now = now_ms();

    // A key whose event was pruned is still taken: its tombstone answers (see [`retention`]).
    let inserted = conn.exec(
        "INSERT INTO events (integration, kind, dedupe_key, payload_hash, payload, state,
                next_attempt_at, received_at)
             SELECT ?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6
             WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE integration = ?1 AND dedupe_key = ?3)
             ON CONFLICT (integration, dedupe_key) DO NOTHING",
        params![integration, kind, dedupe_key, hash, payload, now],
    )?;
    if inserted == 1 {
        return Ok(Enqueued::New(conn.last_insert_rowid()));
    }
    let stored = conn
        .row(
            "SELECT id, payload_hash FROM events WHERE integration = ?1 AND dedupe_key = ?2",
            params![integration, dedupe_key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (id, old_hash): (i64, String) = match stored {
        Some(found) => found,
        None => retention::tombstone(conn, integration, dedupe_key)?
            .ok_or(rusqlite::Error::QueryReturnedNoRows)?,
    };
    Ok(Enqueued::Duplicate {
        id,
        same_payload: old_hash == hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("sy-store-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("t.db")).expect("open");
        (store, dir)
    }

    #[test]
    fn duplicate_keys_are_not_queued_twice_and_replays_are_told_apart() {
        let (s, _dir) = temp_store();
        assert!(matches!(
            s.enqueue("i", "k", "tok", "{}").unwrap(),
            Enqueued::New(_)
        ));
        assert!(matches!(
            s.enqueue("i", "k", "tok", "{}").unwrap(),
            Enqueued::Duplicate {
                same_payload: true,
                ..
            }
        ));
        assert!(matches!(
            s.enqueue("i", "k", "tok", "{\"x\":1}").unwrap(),
            Enqueued::Duplicate {
                same_payload: false,
                ..
            }
        ));
        assert_eq!(s.queue_depth().unwrap(), 1);
    }

    #[tokio::test]
    async fn batched_intake_dedupes_like_the_direct_one() {
        let (s, _dir) = temp_store();
        let new = s.enqueue_batched("i", "k", "tok", "{}").await.unwrap();
        assert!(matches!(new, Enqueued::New(_)));
        let again = s
            .enqueue_all_batched(
                "i",
                "k",
                vec![
                    ("tok".into(), "{}".into()),
                    ("tok".into(), "{\"x\":1}".into()),
                ],
            )
            .await
            .unwrap();
        assert!(matches!(
            again.as_slice(),
            [
                Enqueued::Duplicate {
                    same_payload: true,
                    ..
                },
                Enqueued::Duplicate {
                    same_payload: false,
                    ..
                }
            ]
        ));
        assert_eq!(s.queue_depth().unwrap(), 1);
    }
}
