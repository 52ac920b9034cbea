//! Durable state in embedded SQLite (WAL), or in PostgreSQL (`storage.url`): the event queue,
//! vendor orders, notes to write, and the connectors' key-value state.
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
//! SQLite: one read-write connection behind a mutex (SQLite serializes writers anyway, and every
//! statement here is short), plus read connections ([`readers`]) for the reads of the
//! processing path, which so never wait for the group commit's batch or its fsync. Calls block
//! briefly; they are made from async code on purpose (sub-millisecond in WAL). PostgreSQL: a
//! pool of connections each driven on the thread that holds it ([`pg`], `pg_direct`): a
//! statement blocks its caller for one round trip, no thread switch.
//! Writes on a hot path go through [`Store::write_db`] instead: the [`writer`] thread commits
//! concurrent writes together (group commit, one fsync per batch) and answers each only after
//! its batch committed, without blocking an async thread during the fsync.
//!
//! Modules: this one (schema, intake), [`intake`] (the group commit's intake inserts: a batch's
//! webhooks as one multi-row insert per table; on PostgreSQL one statement per chunk for the three
//! tables, `pg_intake`), [`locks`] (named locks across every host on the
//! database: writes to one opportunity, one OAuth refresh per integration, a holder checking
//! its lock still holds before each effect; transaction-scoped ones for Gem key rotations and
//! deployment changes), [`leader`] (which host leads housekeeping: a row with a TTL; the
//! database's clock against this host's), [`notify`] (PostgreSQL's NOTIFY after intake
//! commits and the LISTEN connection that wakes idle workers of every host), [`kv`] (connectors' `state`, with the totals its quota
//! checks and the screening-scoped entries dropped with their order), [`orders`] (orders with the
//! idempotency key that started them, notes, a status recorded in one transaction), [`queue`]
//! (claims, outcomes, attempt history), [`queued_integrations`] (which integrations have queued
//! events: a loose index scan, one seek each), [`runs`] (process runs, lease renewal, taking back a dead run's events), [`admin`] (operator tables:
//! integrations with their edit revision, deployments), [`components`] (uploaded connector
//! components, stored once for every host), [`revision`] (the shared revisions hosts poll to
//! reload what another host changed), [`console`] (the console's
//! sessions, sign-in rate limits and audit log), [`oauth`] (Lever OAuth
//! grants), [`gem`] (Gem's API keys and screenings), [`verdicts`], [`retention`] (what a retention
//! pass prunes and keeps, tombstones of pruned dedupe keys), [`traffic`] (each event's inbound
//! headers and its attempts' outbound calls), [`search`] (the operators' event filter),
//! [`replay`] (replaying one event or a filter's events as a stored job), [`statistics`]
//! (PostgreSQL: analyzing the tables that outgrew their statistics, whose cached plans were
//! made on a few rows), [`stats`] (the
//! console's numbers: events and failures per minute, queue depth, latency per version),
//! [`writer`] (group commit, on both
//! backends), `checkpoint` (SQLite's WAL copied into the database file beside the writer, which
//! copies only the tail and so lets the WAL start over), [`page_cache`] (SQLite's page cache without a walk of every cached page at the
//! commits that split pages), [`sqlite_global`] (SQLite's process-wide configuration, set by the
//! binary: memory statistics off, its allocations through mimalloc (`sqlite_malloc`), the page cache wrapper, `wal_writes`: a flushed commit's WAL
//! frames written in one call), `readers` (SQLite's read connections beside the writer: [`Store::read_db`]), [`migrations`] (versioned schema, both backends; **how to add a schema change** is
//! there), [`sql`] (the backend-neutral layer: `?N` SQL, values, rows, the [`sql::Db`] trait),
//! [`pg`] (PostgreSQL's pools and connections), `pg_direct` (a PostgreSQL connection driven on
//! the calling thread, without a runtime), `testing` (tests: a store per backend,
//! `on_both`).
//!
//! **Backend seam.** All SQL of the host lives in `store/`: the connections, the writer and
//! the statement caches are private to this module (`pub(in crate::store)`), so callers see only
//! `Store`'s methods and plain types. An ATS (or anything else) that needs a table adds it here,
//! as a module of `store/` with its schema (a [`migrations`] entry) and methods, on every backend.
//!
//! **Two backends, one set of methods.** `Store` is SQLite or PostgreSQL ([`Store::open`],
//! [`Store::open_postgres`]); its methods stay synchronous on both (no caller changes). A method
//! ported to both is written once over [`sql::Db`]: [`Store::db`] (a connection),
//! [`Store::transaction`], [`Store::write_db`] (a write of the group commit). Every module
//! above is written this way. SQLite-only code (a module not ported yet, the migrations of a
//! database from before versioning, file maintenance) reaches SQLite's connection through
//! `conn()` and [`Store::write`], which on PostgreSQL answer [`StoreError::NotOnPostgres`];
//! while such a module exists, list it in [`NOT_ON_POSTGRES`] and `serve` refuses a PostgreSQL
//! store. Porting one: replace `rusqlite` calls by [`sql::Db`] ones (`?N` parameters stay; see
//! [`sql`] for what differs), move it from `conn()` to `db()`/`write_db()`, and run its tests on
//! both backends (`testing::on_both`).

pub mod admin;
mod checkpoint;
pub mod components;
pub mod console;
pub mod gem;
pub mod intake;
pub mod kv;
pub mod leader;
pub mod locks;
pub mod notify;
pub mod orders;
pub mod page_cache;
pub mod queue;
pub mod queued_integrations;
pub mod replay;
pub mod retention;
pub mod revision;
pub mod runs;
pub mod search;
pub mod sqlite_global;
mod sqlite_malloc;
pub mod statistics;
pub mod stats;
pub mod traffic;
pub mod writer;

pub use crate::metrics::WriterStats;
pub use locks::{HeldLock, LockName};
pub use orders::{rank, NewNote, Order, PendingNote, StatusRecord};
pub use queue::{Attempt, Claim, EventDetail, Finish, Finished};
pub use runs::{Resumed, RunInfo};
pub use sql::Dialect;
pub mod migrations;
pub mod oauth;
pub mod pg;
mod pg_direct;
mod pg_intake;
mod readers;
pub(in crate::store) mod sql;
#[cfg(test)]
pub(crate) mod testing;
pub mod verdicts;
pub mod waiting;
mod wal_writes;
pub use waiting::{Retried, WaitFor, Waiting};

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use sql::{args, Db, Value};

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
    /// PostgreSQL refused or failed a statement, or a connection could not be had.
    #[error("PostgreSQL error: {0}")]
    Postgres(String),
    /// PostgreSQL did not answer at open (`url` is shown without its password).
    #[error("cannot reach PostgreSQL at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The database was written by a newer switchyard: this one would misread it.
    #[error(
        "the database's schema is version {found}, newer than this switchyard's ({known}): \
         run a switchyard of version {found} or later on it"
    )]
    NewerSchema { found: i64, known: i64 },
    /// A method not yet ported to PostgreSQL was called on a PostgreSQL store.
    #[error("this store operation is not available on PostgreSQL yet")]
    NotOnPostgres,
    /// A cross-host lock ([`locks`]) was lost with its database connection: another host may
    /// hold it now, so nothing more may be done under it.
    #[error("a cross-host lock was lost with its database connection")]
    LockLost,
    /// A query expected a row and found none.
    #[error("no row found")]
    NoRow,
    /// A column did not hold what the code reads from it.
    #[error("unexpected column value: {0}")]
    Row(String),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        // A server error's DETAIL can quote the failing row (a webhook's body, its headers):
        // only its severity, code and message go into the error (and so into logs).
        match e.as_db_error() {
            Some(db) => StoreError::Postgres(format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            )),
            None => StoreError::Postgres(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What does not run on PostgreSQL yet: `serve` refuses a PostgreSQL store while this is not
/// empty (no half backend in use).
pub const NOT_ON_POSTGRES: &[&str] = &[];

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// This process's named locks ([`locks`]).
    locks: Arc<locks::Local>,
    /// The events this process's runs hold ([`runs::Held`]): what their heartbeats renew.
    held: Arc<runs::Held>,
    /// Signalled once per group commit that queued new webhooks ([`Store::queued`]).
    queued: Arc<tokio::sync::Notify>,
}

/// The database behind a [`Store`], with its group commit (whose thread ends with the last
/// clone).
#[derive(Clone)]
enum Backend {
    Sqlite {
        conn: Arc<Mutex<Connection>>,
        writer: writer::Writer<Connection>,
        readers: Arc<readers::Readers>,
        /// What the WAL checkpoints did (tests).
        #[cfg(test)]
        checkpoints: Arc<checkpoint::Counts>,
    },
    Postgres {
        pg: Arc<pg::Pg>,
        writer: writer::Writer<pg::PgConn>,
    },
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
    /// The claim that holds it (bumped by every claim, never decreased): outcomes are fenced by
    /// it ([`Finish::claim_seq`]). Internal, not shown to operators.
    #[serde(skip)]
    pub claim_seq: i64,
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

/// Schema version 1 on SQLite, as every open ran it before versioned migrations: idempotent, so
/// it also brings a database from before versioning (with older columns) to version 1 in place.
pub(in crate::store) fn sqlite_baseline(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(gem::SCHEMA)?;
    conn.execute_batch(crate::store::admin::SCHEMA)?;
    queue::migrate(conn)?;
    conn.execute_batch(runs::SCHEMA)?;
    conn.execute_batch(crate::store::oauth::SCHEMA)?;
    verdicts::migrate(conn)?;
    orders::migrate(conn)?;
    kv::migrate(conn)?;
    waiting::migrate(conn)?;
    conn.execute_batch(retention::SCHEMA)?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database at `path` in WAL mode.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_sqlite(path, checkpoint::Bounds::STORE)
    }

    /// [`Store::open`], with the WAL's checkpoints at `bounds` (the store's, or a test's).
    pub(in crate::store) fn open_sqlite(path: &Path, bounds: checkpoint::Bounds) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        // First: another process (a host) may hold the write lock while this one opens.
        conn.pragma_update(None, "busy_timeout", 5000)?;
        // Before the first table, a new database's page size (an existing one keeps its own:
        // changing it takes a full VACUUM, outside WAL mode). Each webhook changes a leaf of
        // the unique `(integration, dedupe_key)` index at random, and a changed page goes whole
        // to the WAL and again to the file at checkpoint: a smaller page writes fewer bytes.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        // Before the first table: a new database returns pruned pages to the file system on
        // `PRAGMA incremental_vacuum`. An older one (auto_vacuum off) is not converted, since a
        // full VACUUM rewrites the file and needs up to twice its size free; it reuses its free
        // pages instead, so it stops growing once retention prunes as much as arrives.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        // WAL + synchronous=FULL: a committed event survives a crash or power loss.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Each group-commit job runs in a savepoint, which copies every page it first changes
        // to a statement journal: in memory, not a temporary file (on disk it was opened,
        // written and unlinked about once per processed event, and was more bytes than the WAL
        // itself under intake). A batch is bounded (`writer::MAX_BATCH`), so is this memory.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // The writer's pages (KiB): the queue's index leaves stay cached, not read back
        // through the file system on every batch (the default is 2 MiB).
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrations::sqlite(&conn)?;
        retention::prepare(&conn)?;
        // Checkpoints beside the writer, which copies only their tail ([`checkpoint`]).
        let checkpoints = checkpoint::Checkpoints::start(path, &conn, bounds)?;
        #[cfg(test)]
        let counts = checkpoints.counts();
        let conn = Arc::new(Mutex::new(conn));
        let queued = Arc::default();
        let source = writer::SqliteWriter {
            conn: conn.clone(),
            checkpoints,
        };
        let writer = writer::Writer::start(source, Arc::clone(&queued))?;
        let readers = Arc::new(readers::Readers::new(path));
        Ok(Store {
            backend: Backend::Sqlite {
                conn,
                writer,
                readers,
                #[cfg(test)]
                checkpoints: counts,
            },
            locks: Arc::default(),
            held: Arc::default(),
            queued,
        })
    }

    /// Connects to the PostgreSQL database at `url` (`password`, if given, instead of the
    /// URL's) and migrates it to this build's schema. Errors name the URL without its password.
    pub fn open_postgres(url: &str, password: Option<&str>) -> Result<Store> {
        let pg = Arc::new(pg::Pg::connect(url, password)?);
        migrations::postgres(&pg.conn()?)?;
        let queued = Arc::default();
        let writer = writer::Writer::start(pg::WriterConn::open(pg.clone())?, Arc::clone(&queued))?;
        tracing::debug!(url = pg.shown(), "PostgreSQL store open");
        Ok(Store {
            backend: Backend::Postgres { pg, writer },
            locks: Arc::default(),
            held: Arc::default(),
            queued,
        })
    }

    /// Signalled (`notify_one`) once per group commit that queued new webhooks
    /// ([`Store::enqueue_received`], [`Store::enqueue_batched`]), before any of them is
    /// answered: the host's workers wait on it (`App::wake`), so a batch wakes one worker, who
    /// claims for the others, instead of each webhook waking one.
    pub fn queued(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.queued)
    }

    /// Which backend this store runs on.
    pub fn dialect(&self) -> sql::Dialect {
        match self.backend {
            Backend::Sqlite { .. } => sql::Dialect::Sqlite,
            Backend::Postgres { .. } => sql::Dialect::Postgres,
        }
    }

    /// Runs `f` (synchronous store calls) from async code without holding an async thread
    /// while the database answers. On PostgreSQL each statement is a round trip, and while the
    /// server is unreachable a statement waits up to the sockets' keepalive bound: there `f` runs
    /// on a blocking thread, so the threads that serve HTTP keep answering (intake's 503s
    /// included). On SQLite it runs in place: its reads go to read connections that never wait
    /// for the writer, and a thread hop would cost more than the read.
    pub async fn off_async<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        match self.backend {
            Backend::Sqlite { .. } => f(self),
            Backend::Postgres { .. } => {
                let store = self.clone();
                tokio::task::spawn_blocking(move || f(&store))
                    .await
                    .unwrap_or(Err(StoreError::Panicked))
            }
        }
    }

    /// SQLite's connection, for the methods not ported to [`sql::Db`] yet.
    pub(in crate::store) fn conn(&self) -> Result<MutexGuard<'_, Connection>> {
        match &self.backend {
            Backend::Sqlite { conn, .. } => Ok(lock(conn)),
            Backend::Postgres { .. } => Err(StoreError::NotOnPostgres),
        }
    }

    /// Runs `f` on a connection of either backend (statements commit one by one).
    pub(in crate::store) fn db<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite { conn, .. } => f(&*lock(conn)),
            Backend::Postgres { pg, .. } => f(&pg.conn()?),
        }
    }

    /// Runs read-only `f` beside the writer: on SQLite on a read connection ([`readers`]: it
    /// never waits for the group commit's batch or fsync, and refuses writes), on PostgreSQL on a
    /// pooled connection. It sees every write whose call returned before it started.
    pub(in crate::store) fn read_db<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite { readers, .. } => readers.with(|c| f(c)),
            Backend::Postgres { pg, .. } => f(&pg.conn()?),
        }
    }

    /// Runs `f` in a transaction of its own: committed if it returns `Ok`, rolled back if not.
    pub(in crate::store) fn transaction<T>(
        &self,
        f: impl FnOnce(&dyn Db) -> Result<T>,
    ) -> Result<T> {
        match &self.backend {
            Backend::Sqlite { conn, .. } => {
                let mut conn = lock(conn);
                let tx = conn.transaction()?;
                let value = f(&*tx)?;
                tx.commit()?;
                // Off the writer thread, whose checkpoints do not see this commit.
                checkpoint::after_commit_here(&conn);
                Ok(value)
            }
            Backend::Postgres { pg, .. } => {
                let conn = pg.conn()?;
                conn.begin();
                match f(&conn) {
                    Ok(value) => conn.commit().map(|()| value),
                    Err(e) => {
                        if let Err(rollback) = conn.rollback() {
                            tracing::error!(error = %rollback, "cannot roll back a transaction");
                        }
                        Err(e)
                    }
                }
            }
        }
    }

    /// What this store's backend cannot do yet ([`NOT_ON_POSTGRES`] on PostgreSQL; nothing on
    /// SQLite).
    pub fn missing(&self) -> &'static [&'static str] {
        match self.backend {
            Backend::Sqlite { .. } => &[],
            Backend::Postgres { .. } => NOT_ON_POSTGRES,
        }
    }

    /// The database's schema version ([`migrations`]).
    pub fn schema_version(&self) -> Result<i64> {
        self.db(migrations::version)
    }

    /// Whether the database answers now (`/healthz`): always on SQLite (a file of this host);
    /// on PostgreSQL, a `SELECT 1` on a pooled connection. The error names the URL without its
    /// password. Blocks up to the connect timeout when the server is gone: call it off the
    /// async threads, under a timeout.
    pub fn ping(&self) -> Result<()> {
        let Backend::Postgres { pg, .. } = &self.backend else {
            return Ok(());
        };
        let unreachable = |e: StoreError| StoreError::Unreachable {
            url: pg.shown().to_string(),
            reason: e.to_string(),
        };
        pg.conn()
            .and_then(|c| c.query("SELECT 1", &[]))
            .map(|_| ())
            .map_err(unreachable)
    }

    /// Runs `job` on the [`writer`] thread, in a transaction shared with the other writes that
    /// arrived meanwhile (group commit), inside a savepoint of its own: if it fails, only it is
    /// rolled back. Returns once that transaction committed (or failed: [`StoreError::Batch`],
    /// nothing of the job stored). Waits while the writer's queue is full.
    ///
    /// `job` must not begin, commit or roll back a transaction, and must not call any `Store`
    /// method: the writer holds the connection (a deadlock). Keep it short: the whole batch
    /// waits for it. Crate-only, so that no connection leaks past the backend seam.
    #[allow(dead_code)] // for store modules written for SQLite only, until they are ported
    pub(in crate::store) async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite { writer, .. } => writer.write(job).await,
            Backend::Postgres { .. } => Err(StoreError::NotOnPostgres),
        }
    }

    /// [`Store::write`] for a job written over [`sql::Db`]: on either backend.
    pub(in crate::store) async fn write_db<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite { writer, .. } => writer.write(move |c: &Connection| job(c)).await,
            Backend::Postgres { writer, .. } => writer.write(move |c: &pg::PgConn| job(c)).await,
        }
    }

    /// [`Store::write_db`] from a blocking thread (a worker's claim); never from an async task.
    pub(in crate::store) fn write_db_blocking<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite { writer, .. } => writer.write_blocking(move |c: &Connection| job(c)),
            Backend::Postgres { writer, .. } => writer.write_blocking(move |c: &pg::PgConn| job(c)),
        }
    }

    /// Commits and batch sizes of [`Store::write`] so far (metrics).
    pub fn writer_stats(&self) -> WriterStats {
        match &self.backend {
            Backend::Sqlite { writer, .. } => writer.stats(),
            Backend::Postgres { writer, pg, .. } => WriterStats {
                round_trips: pg.round_trips(),
                ..writer.stats()
            },
        }
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
        let enqueued = self
            .write_intake(intake::IntakeRow {
                integration: integration.to_owned(),
                kind: kind.to_owned(),
                dedupe_key: dedupe_key.to_owned(),
                body: intake::Body::from(payload),
                inbound: None,
            })
            .await?;
        if matches!(enqueued, Enqueued::New(_)) {
            // Its batch woke a worker of this host already.
            self.notify_intake();
        }
        Ok(enqueued)
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
        let enqueued: Vec<Enqueued> = self
            .write_db(move |db| {
                events
                    .iter()
                    .map(|(key, payload)| enqueue_on(db, &integration, &kind, key, payload))
                    .collect()
            })
            .await?;
        if enqueued.iter().any(|e| matches!(e, Enqueued::New(_))) {
            self.notify_queued();
        }
        Ok(enqueued)
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
        let enqueued = self.db(|db| enqueue_on(db, integration, kind, dedupe_key, payload))?;
        self.notify_due(matches!(enqueued, Enqueued::New(_)));
        Ok(enqueued)
    }

    /// Queues several events of one kind in one transaction: all or none are committed (a
    /// vendor callback's status updates).
    pub fn enqueue_all(
        &self,
        integration: &str,
        kind: &str,
        events: &[(String, String)],
    ) -> Result<Vec<Enqueued>> {
        let enqueued: Vec<Enqueued> = self.transaction(|db| {
            events
                .iter()
                .map(|(dedupe_key, payload)| enqueue_on(db, integration, kind, dedupe_key, payload))
                .collect()
        })?;
        self.notify_due(enqueued.iter().any(|e| matches!(e, Enqueued::New(_))));
        Ok(enqueued)
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
        let now = now_ms();
        self.transaction(|db| {
            let id = db
                .query_one(
                    "INSERT INTO events (integration, kind, dedupe_key, payload_hash,
                        state, attempts, next_attempt_at, received_at, finished_at, last_error,
                        connector_version)
                     VALUES (?1, ?2, ?3, '', 'dead', 1, ?4, ?4, ?4, ?5, ?6)
                     RETURNING id",
                    args![
                        integration,
                        kind,
                        format!("failure:{}", uuid::Uuid::new_v4()),
                        now,
                        error,
                        connector_version
                    ],
                )?
                .int(0)?;
            insert_body(db, id, payload.into())?;
            queue::record_attempt(
                db,
                id,
                None,
                now,
                0,
                queue::AttemptOutcome::Dead,
                Some(error),
                Some(connector_version),
            )?;
            Ok(id)
        })
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

/// The writer connection's page cache, KiB (`PRAGMA cache_size`): 32 MiB, within the host's
/// 150 MB under load.
const WRITER_CACHE_KIB: i64 = 32 << 10;

/// A new database's page size, bytes (SQLite's default is 4096).
const PAGE_SIZE: i64 = 2048;

/// The connection, even after a panic while it was held: SQLite stays consistent (statements and
/// transactions are atomic; the writer rolls back what a panicking job left).
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`Store::enqueue`] on a connection (or transaction) the caller holds, so that an event can be
/// committed together with rows that describe it.
pub(in crate::store) fn enqueue_on<B>(
    db: &dyn Db,
    integration: &str,
    kind: &str,
    dedupe_key: &str,
    payload: B,
) -> Result<Enqueued>
where
    B: AsRef<[u8]> + Into<Value>,
{
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(payload.as_ref()));
    enqueue_hashed_on(db, integration, kind, dedupe_key, payload.into(), &hash)
}

/// [`enqueue_on`] with the payload's SHA-256 (hex) already taken.
pub(in crate::store) fn enqueue_hashed_on(
    db: &dyn Db,
    integration: &str,
    kind: &str,
    dedupe_key: &str,
    payload: Value,
    hash: &str,
) -> Result<Enqueued> {
    let now = now_ms();

    // A key whose event was pruned is still taken: its tombstone answers (see [`retention`]).
    // The casts: PostgreSQL infers no type for a parameter in a SELECT list.
    let inserted = db.query_opt(
        "INSERT INTO events (integration, kind, dedupe_key, payload_hash, state,
                next_attempt_at, received_at)
             SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), CAST(?3 AS TEXT), CAST(?4 AS TEXT),
                    'queued', CAST(?5 AS BIGINT), CAST(?5 AS BIGINT)
             WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE integration = ?1 AND dedupe_key = ?3)
             ON CONFLICT (integration, dedupe_key) DO NOTHING
             RETURNING id",
        args![integration, kind, dedupe_key, hash, now],
    )?;
    if let Some(row) = inserted {
        let id = row.int(0)?;
        insert_body(db, id, payload)?;
        return Ok(Enqueued::New(id));
    }
    duplicate_on(db, integration, dedupe_key, hash)
}

/// The answer for a key already taken (by a stored event, or a pruned one's tombstone):
/// `hash` is the offered payload's, to tell a redelivery from a replay.
pub(in crate::store) fn duplicate_on(
    db: &dyn Db,
    integration: &str,
    dedupe_key: &str,
    hash: &str,
) -> Result<Enqueued> {
    let stored = db.query_opt(
        "SELECT id, payload_hash FROM events WHERE integration = ?1 AND dedupe_key = ?2",
        args![integration, dedupe_key],
    )?;
    let (id, old_hash) = match stored {
        Some(row) => (row.int(0)?, row.text(1)?),
        None => retention::tombstone(db, integration, dedupe_key)?.ok_or(StoreError::NoRow)?,
    };
    Ok(Enqueued::Duplicate {
        id,
        same_payload: old_hash == hash,
    })
}

/// Stores an event's body in `event_bodies`, apart from the `events` row that claims and
/// outcomes rewrite (in the caller's transaction: an event is never without its body).
pub(in crate::store) fn insert_body(db: &dyn Db, event_id: i64, body: Value) -> Result<()> {
    db.execute(
        "INSERT INTO event_bodies (event_id, body) VALUES (?1, ?2)",
        &[event_id.into(), body],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::testing::{on_both, on_both_async, postgres_url};
    use super::*;

    #[test]
    fn duplicate_keys_are_not_queued_twice_and_replays_are_told_apart() {
        on_both(|s| {
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
        });
    }

    #[tokio::test]
    async fn batched_intake_dedupes_like_the_direct_one() {
        on_both_async!(|s: Store| async move {
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
        });
    }

    #[test]
    fn a_batch_of_events_is_stored_whole_with_distinct_ids() {
        on_both(|s| {
            let events: Vec<(String, String)> = (0..3)
                .map(|n| (format!("k{n}"), format!("{{\"n\":{n}}}")))
                .collect();
            let stored = s.enqueue_all("i", "k", &events).unwrap();
            let ids: std::collections::BTreeSet<i64> = stored
                .iter()
                .map(|e| match e {
                    Enqueued::New(id) => *id,
                    other => panic!("expected a new event, got {other:?}"),
                })
                .collect();
            assert_eq!(ids.len(), 3);
            assert_eq!(s.queue_depth().unwrap(), 3);
        });
    }

    #[test]
    fn a_recorded_failure_is_dead_and_not_queued() {
        on_both(|s| {
            let id = s
                .record_failure("i", "vendor.callback", "{}", "trapped", "1.0.0")
                .unwrap();
            assert!(id > 0);
            assert_eq!(s.queue_depth().unwrap(), 0, "a dead event is not queued");
        });
    }

    #[test]
    fn a_new_database_is_at_the_latest_schema_version() {
        on_both(|s| assert_eq!(s.schema_version().unwrap(), migrations::latest()));
    }

    #[test]
    fn a_database_from_a_newer_switchyard_is_refused_naming_both_versions() {
        let newer = migrations::latest() + 1;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let path = dir.join("t.db");
        drop(Store::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
                [newer],
            )
            .unwrap();
        let sqlite = Store::open(&path).err().expect("refused").to_string();

        let url = postgres_url();
        drop(Store::open_postgres(&url, None).unwrap());
        Store::open_postgres(&url, None)
            .unwrap()
            .db(|db| {
                db.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
                    args![newer],
                )
            })
            .unwrap();
        let postgres = Store::open_postgres(&url, None)
            .err()
            .expect("refused")
            .to_string();
        for refused in [sqlite, postgres] {
            assert!(
                refused.contains(&format!("version {newer}"))
                    && refused.contains(&format!("({})", migrations::latest())),
                "{refused}"
            );
        }
    }

    /// A database written before versioned migrations, by the SQL of that time (events without
    /// leases or waits, orders without idempotency keys or verdict order, `kv` without
    /// screenings or totals), with a row in each: opened, it is migrated in place and keeps them.
    #[test]
    fn a_database_from_before_versioning_migrates_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT,
                    integration TEXT NOT NULL, kind TEXT NOT NULL, dedupe_key TEXT NOT NULL,
                    payload_hash TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL,
                    lease_until INTEGER, last_error TEXT, connector_version TEXT,
                    received_at INTEGER NOT NULL, finished_at INTEGER,
                    UNIQUE (integration, dedupe_key));
                 CREATE TABLE orders (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    integration TEXT NOT NULL, order_ref TEXT NOT NULL, connector TEXT NOT NULL,
                    opportunity_id TEXT NOT NULL, state TEXT NOT NULL, label TEXT NOT NULL,
                    report_url TEXT, score REAL, verdict TEXT, updated_at INTEGER NOT NULL,
                    UNIQUE (integration, order_ref));
                 CREATE TABLE notes (integration TEXT NOT NULL, order_ref TEXT NOT NULL,
                    text TEXT NOT NULL, secret INTEGER NOT NULL, written_at INTEGER,
                    PRIMARY KEY (integration, order_ref, text));
                 CREATE TABLE kv (integration TEXT NOT NULL, connector TEXT NOT NULL,
                    key TEXT NOT NULL, value TEXT NOT NULL,
                    PRIMARY KEY (integration, connector, key));
                 INSERT INTO events (integration, kind, dedupe_key, payload_hash, payload, state,
                    next_attempt_at, received_at)
                    VALUES ('i', 'k', 'old', 'h', '{}', 'queued', 0, 0);
                 INSERT INTO orders (integration, order_ref, connector, opportunity_id, state,
                    label, updated_at) VALUES ('i', 'o1', 'c', 'opp', 'pending', 'Pending', 0);
                 INSERT INTO kv VALUES ('i', 'c', 'key', 'value');",
            )
            .unwrap();

        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), migrations::latest());
        assert_eq!(
            store.queue_depth().unwrap(),
            1,
            "the old event is still queued"
        );
        assert!(matches!(
            store.enqueue("i", "k", "old", "{}").unwrap(),
            Enqueued::Duplicate { .. }
        ));
        let conn = store.conn().unwrap();
        for (table, column) in [
            ("events", "lease_run"),
            ("events", "waiting_for"),
            ("orders", "idempotency_key"),
            ("orders", "verdict_seq"),
            ("notes", "attempted_at"),
            ("kv", "screening"),
        ] {
            let has: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
                    [table, column],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(has, 1, "{table}.{column} added");
        }
        let bytes: i64 = conn
            .query_row("SELECT bytes FROM kv_totals", [], |r| r.get(0))
            .unwrap();
        assert_eq!(bytes, 8, "the old state's bytes counted");
        drop(conn);
        drop(store);
        // Opened again: already at the latest version, nothing to do.
        assert_eq!(
            Store::open(&path).unwrap().schema_version().unwrap(),
            migrations::latest()
        );
    }

    /// The writer's batches keep their savepoint journals in memory: on disk (SQLite's default)
    /// they spilled to a fresh temporary file about once per processed event.
    #[tokio::test]
    async fn the_writers_savepoint_journals_stay_in_memory() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let temp_store =
            |db: &dyn Db| -> Result<i64> { db.query_one("PRAGMA temp_store", &[])?.int(0) };
        // 2 = MEMORY, as a job of a batch sees its connection.
        assert_eq!(store.write_db(temp_store).await.unwrap(), 2);
    }

    /// A new database gets 2 KiB pages, an existing one keeps its size; the writer's commits
    /// never checkpoint (SQLite's autocheckpoint is off there: see `checkpoint`).
    #[test]
    fn a_new_database_has_small_pages_and_an_existing_one_keeps_its_own() {
        let dir = tempfile::TempDir::new().unwrap();
        let pragma = |store: &Store, name: &str| -> i64 {
            store
                .conn()
                .unwrap()
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .unwrap()
        };
        let fresh = Store::open(&dir.path().join("new.sqlite")).unwrap();
        assert_eq!(pragma(&fresh, "page_size"), 2048);
        assert_eq!(pragma(&fresh, "wal_autocheckpoint"), 0);

        let old = dir.path().join("old.sqlite");
        Connection::open(&old)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE before (n INTEGER);")
            .unwrap();
        let existing = Store::open(&old).unwrap();
        assert_eq!(pragma(&existing, "page_size"), 4096);
        assert_eq!(pragma(&existing, "wal_autocheckpoint"), 0);
        existing.enqueue("acme", "k", "key", "{}").unwrap();
        assert_eq!(pragma(&existing, "page_size"), 4096, "still, once written");
    }
}
