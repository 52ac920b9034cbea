//! The PostgreSQL backend's connections, behind the synchronous [`Db`] of [`super::sql`].
//!
//! `Store`'s methods stay synchronous: a statement blocks its caller until the server answered,
//! as on SQLite. Statements run on [`pg_direct`] connections, driven on the calling thread
//! (no runtime, no thread switch per statement): a pool of them for [`Pg::conn`] (idle ones
//! kept, at most [`POOL_SIZE`] open), and the group commit's own ([`WriterConn`]).
//! Transaction control (`BEGIN`, the writer's `SAVEPOINT`/`RELEASE` per job) is deferred and
//! sent with the next statement, pipelined in its round trip; `COMMIT` carries what is left.
//!
//! What must run in the background or wait asynchronously (the NOTIFY after intake, advisory
//! locks, the LISTEN connection) uses deadpool-postgres pools on a small tokio runtime owned by
//! the store (`switchyard-pg` threads).
//!
//! No TLS in this phase: the database is reached on loopback or a private network.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::NoTls;

use super::pg_direct::Direct;
use super::sql::{to_postgres, Db, Dialect, Row, Statement, Value};
use super::{Result, StoreError};

/// Connections [`Pg::conn`] keeps open at most: one per thread that may hold one at once (the
/// workers' and the server's threads, the blocking threads' reads), with room to spare. The
/// writer holds one of its own, outside the pool.
const POOL_SIZE: usize = 16;

/// How long [`Pg::conn`] waits for a connection when all [`POOL_SIZE`] are in use.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Connections of the background pool: NOTIFYs after intake commits, one at a time per host.
const NOTIFY_POOL_SIZE: usize = 2;

/// Connections kept for advisory locks ([`Pg::advisory_lock`], and for each [`DirectLock`]
/// as many again): one per key held or awaited by this host (a host-local lock per key comes
/// first, so two tasks of one host never hold two). Apart from the main pool, so lock holders
/// always find a connection for their queries.
const LOCK_POOL_SIZE: usize = 32;

/// How long a lock waits for a free connection of the lock pool: a lock nested in another
/// (Lever's OAuth refresh inside an opportunity's writes) needs a second connection, so with
/// every connection held by a waiter the wait ends in an error (the step is retried) instead of
/// a deadlock.
const LOCK_POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a start-up connection attempt may take before the host gives up.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A PostgreSQL database: the pool, and the runtime its connections' I/O runs on.
pub(in crate::store) struct Pg {
    /// Taken only by `drop`.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    /// Synchronous connections for [`Pg::conn`].
    direct: Arc<Slots>,
    /// Synchronous connections that hold a [`DirectLock`] (at most [`LOCK_POOL_SIZE`]).
    lock_direct: Arc<Slots>,
    /// Connections for statements sent in the background ([`Pg::pool`]).
    pool: Pool,
    /// Connections that hold session-level advisory locks (see [`AdvisoryLock`]).
    locks: Pool,
    config: tokio_postgres::Config,
    /// The URL without its password, for errors and logs.
    shown: String,
    /// This host's NOTIFY throttle ([`super::notify`]).
    pub(in crate::store) notify: Arc<super::notify::Throttle>,
    /// The integrations with queued events the last claim read ([`super::queued_integrations`]).
    pub(in crate::store) looked: Arc<super::queued_integrations::Looked>,
    /// Round trips to the server so far, on every connection ([`Pg::round_trips`]).
    trips: Arc<AtomicU64>,
}

impl Drop for Pg {
    fn drop(&mut self) {
        // A runtime dropped on an async thread panics; shutting it down in the background
        // does not block (the store may be dropped anywhere).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `url` without its password (for errors: a secret never reaches a log or a message).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Only fails for URLs that cannot have a password: then it had none.
                let _ = parsed.set_password(Some("***"));
            }
            // libpq also takes the password as a query parameter.
            if parsed.query_pairs().any(|(k, _)| k == "password") {
                let kept: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" {
                            "***".into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(kept);
            }
            parsed.to_string()
        }
        Err(_) => "(an unparsable postgres URL)".into(),
    }
}

impl Pg {
    /// Connects to `url` (`password`, if given, overrides the URL's) and checks that the server
    /// answers. Errors name the URL without its password.
    pub(in crate::store) fn connect(url: &str, password: Option<&str>) -> Result<Pg> {
        let shown = redact(url);
        let unreachable = |reason: String| StoreError::Unreachable {
            url: shown.clone(),
            reason,
        };
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| unreachable(format!("not a valid PostgreSQL URL: {e}")))?;
        if let Some(password) = password {
            config.password(password);
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("switchyard");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("switchyard-pg")
            .enable_all()
            .build()?;
        let build = |size: usize, wait: Option<std::time::Duration>| {
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .wait_timeout(wait)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| unreachable(e.to_string()))
        };
        let pg = Pg {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            direct: Arc::default(),
            lock_direct: Arc::default(),
            pool: build(NOTIFY_POOL_SIZE, None)?,
            locks: build(LOCK_POOL_SIZE, Some(LOCK_POOL_WAIT))?,
            config,
            shown: shown.clone(),
            notify: Arc::default(),
            looked: Arc::default(),
            trips: Arc::default(),
        };
        // Answers now, or the host does not start.
        let conn = pg.conn().map_err(|e| unreachable(e.to_string()))?;
        conn.query("SELECT 1", &[])
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(pg)
    }

    /// The URL as shown (without its password).
    pub(in crate::store) fn shown(&self) -> &str {
        &self.shown
    }

    /// Round trips to the server so far: the store's statements (several sent together count
    /// once), the advisory locks' lock, check and unlock, and NOTIFYs.
    pub(in crate::store) fn round_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// The counter of [`Pg::round_trips`], for a round trip made in the background (a NOTIFY).
    pub(in crate::store) fn trips(&self) -> Arc<AtomicU64> {
        self.trips.clone()
    }

    /// Starts `future` on the store's runtime, without waiting for it.
    pub(in crate::store) fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.handle.spawn(future));
    }

    /// The pool, for a statement sent in the background ([`Pg::spawn`]).
    pub(in crate::store) fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// The connection settings, for a connection of its own (the LISTEN one).
    pub(in crate::store) fn config(&self) -> tokio_postgres::Config {
        self.config.clone()
    }

    /// A connection of the pool: an idle one (checked still open), or a new one while fewer
    /// than [`POOL_SIZE`] are open; otherwise waits up to [`POOL_WAIT`] for one to come back.
    pub(in crate::store) fn conn(&self) -> Result<PgConn> {
        self.take(&self.direct, POOL_SIZE, POOL_WAIT)
    }

    /// [`Pg::conn`] from `slots`, of which at most `size` are open, waiting at most `wait`.
    fn take(&self, slots: &Arc<Slots>, size: usize, wait: std::time::Duration) -> Result<PgConn> {
        let deadline = std::time::Instant::now() + wait;
        let mut state = slots.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(mut direct) = state.idle.pop() {
                drop(state);
                if !direct.probe() {
                    return Ok(PgConn::new(direct, Some(slots.clone())));
                }
                // Closed while idle (the server restarted): its place is free again.
                state = slots.state.lock().unwrap_or_else(|e| e.into_inner());
                state.open -= 1;
                continue;
            }
            if state.open < size {
                state.open += 1;
                drop(state);
                return match Direct::connect(&self.config, self.trips.clone()) {
                    Ok(direct) => Ok(PgConn::new(direct, Some(slots.clone()))),
                    Err(e) => {
                        slots.release(None);
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(StoreError::Postgres(format!(
                    "no database connection free within {wait:?} (all {size} in use)"
                )));
            }
            state = slots
                .free
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A connection of its own, outside the pool (the writer's: it holds it for good).
    pub(in crate::store) fn dedicated(&self) -> Result<PgConn> {
        Ok(PgConn::new(
            Direct::connect(&self.config, self.trips.clone())?,
            None,
        ))
    }
}

/// The pool of [`Pg::conn`]: idle connections and how many are open (idle or in use).
#[derive(Default)]
struct Slots {
    state: Mutex<SlotState>,
    /// Signalled when a connection comes back or its place frees up.
    free: Condvar,
}

#[derive(Default)]
struct SlotState {
    idle: Vec<Direct>,
    open: usize,
}

impl Slots {
    /// Takes back a connection (`Some`: kept idle for the next caller) or frees its place.
    fn release(&self, direct: Option<Direct>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match direct {
            Some(direct) => state.idle.push(direct),
            None => state.open -= 1,
        }
        drop(state);
        self.free.notify_one();
    }
}

/// A session-level advisory lock held on a connection of the lock pool. Dropping it unlocks
/// (in the background, on the store's runtime); if the unlock fails, the connection is closed
/// instead of going back to the pool, which releases the lock server-side. A host that dies
/// loses its connections, and PostgreSQL releases their locks with them.
pub(in crate::store) struct AdvisoryLock {
    client: Option<deadpool_postgres::Object>,
    key: i64,
    handle: tokio::runtime::Handle,
    trips: Arc<AtomicU64>,
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let key = self.key;
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.handle.spawn(async move {
            let unlocked = client
                .query_one("SELECT pg_advisory_unlock($1)", &[&key])
                .await
                .and_then(|row| row.try_get::<_, bool>(0));
            if !matches!(unlocked, Ok(true)) {
                tracing::warn!("an advisory lock could not be released: closing its connection");
                drop(deadpool_postgres::Object::take(client));
            }
        });
    }
}

/// How long [`AdvisoryLock::alive`] waits for its connection's answer.
const LOCK_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl AdvisoryLock {
    /// Whether the lock's session still lives, by a round trip on its connection (bounded): a
    /// session-level lock lasts exactly as long as its session, so a lost connection means the
    /// lock is gone and another host may hold it.
    pub(in crate::store) async fn alive(&self) -> bool {
        let Some(client) = self.client.as_ref() else {
            return false;
        };
        if client.is_closed() {
            return false;
        }
        self.trips.fetch_add(1, Ordering::Relaxed);
        matches!(
            tokio::time::timeout(LOCK_CHECK_TIMEOUT, client.simple_query("SELECT 1")).await,
            Ok(Ok(_))
        )
    }
}

impl Pg {
    /// Waits for the session-level advisory lock `key` on a connection of its own. The wait
    /// runs on the store's runtime; if the caller stops waiting, a lock taken afterwards is
    /// released at once (the task's result is dropped).
    pub(in crate::store) async fn advisory_lock(&self, key: i64) -> Result<AdvisoryLock> {
        let pool = self.locks.clone();
        let handle = self.handle.clone();
        let trips = self.trips.clone();
        trips.fetch_add(1, Ordering::Relaxed);
        let task = self.handle.spawn(async move {
            let client = pool
                .get()
                .await
                .map_err(|e| StoreError::Postgres(e.to_string()))?;
            client
                .execute("SELECT pg_advisory_lock($1)", &[&key])
                .await?;
            Ok(AdvisoryLock {
                client: Some(client),
                key,
                handle,
                trips,
            })
        });
        match task.await {
            Ok(lock) => lock,
            Err(e) => Err(StoreError::Postgres(format!(
                "taking an advisory lock: {e}"
            ))),
        }
    }
}

/// A session-level advisory lock taken without waiting, on a connection of its own driven by
/// the holder's thread ([`pg_direct`]): taking it and checking it are each one round trip on
/// that thread, and releasing it none, where the lock pool's ([`AdvisoryLock`]) each also hop
/// to the store's runtime and back. Taking it carries the holder's first reads in the same round trip
/// ([`Pg::try_lock_with`]). Dropping it sends the unlock without waiting for its answer
/// ([`PgConn::send_only`]); a connection that cannot send it is closed instead, which releases
/// the lock server-side.
pub(in crate::store) struct DirectLock {
    conn: Mutex<Session>,
    key: i64,
}

/// A [`DirectLock`]'s connection, and when the last statement its session answered was sent.
struct Session {
    conn: PgConn,
    proven: Instant,
}

/// How long after the lock's session last answered (counted from when that statement was sent)
/// [`DirectLock::alive`] reads the session's socket instead of making a round trip.
///
/// Why this keeps the fencing: the lock is lost only when the server ends the session. A session
/// the server ends (terminated, the server stopping or crashing, `idle_session_timeout`) sends
/// its error and closes the socket before its locks go, so another host can take the lock only
/// after that reached this host's socket (loopback or a network the host just talked over), and
/// [`PgConn::probe`] reads it there. A session the server ends without reaching this host (the
/// network cut) is ended by its dead-peer detection: TCP keepalives, at least 2 s after the
/// last exchange (`tcp_keepalives_idle` and `_interval` are whole seconds), or
/// `tcp_user_timeout` (off by default; README, "Running several hosts": not below this). Past
/// this, or if the socket shows anything, the check is a round trip as before.
const LOCK_FRESH: Duration = Duration::from_secs(1);

impl DirectLock {
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the lock's session still lives: within [`LOCK_FRESH`] of its last answer, its
    /// socket shows no end (no round trip); else a round trip on its connection, bounded by
    /// [`LOCK_CHECK_TIMEOUT`] (see [`AdvisoryLock::alive`]).
    pub(in crate::store) fn alive(&self) -> bool {
        let mut session = self.session();
        if session.proven.elapsed() < LOCK_FRESH {
            return !session.conn.probe();
        }
        let sent = Instant::now();
        let alive = session.conn.answers_within(LOCK_CHECK_TIMEOUT);
        if alive {
            session.proven = sent;
        }
        alive
    }

    /// Makes the session's last answer `fresh` (within [`LOCK_FRESH`]) or not (tests: what the
    /// check does must not depend on how fast the machine runs them).
    #[cfg(test)]
    pub(in crate::store) fn answered(&self, fresh: bool) {
        let now = Instant::now();
        let at = if fresh {
            Some(now)
        } else {
            now.checked_sub(LOCK_FRESH)
        };
        self.session().proven = at.unwrap_or(now);
    }
}

impl Drop for DirectLock {
    fn drop(&mut self) {
        let session = self.session();
        let conn = &session.conn;
        if std::thread::panicking() {
            // Not reused (see `PgConn`'s drop): closing it releases the lock.
            return;
        }
        // Sent without waiting for the answer (the server releases the lock as the message
        // arrives; the connection's next user reads the answer): not a round trip of the
        // holder's. The lock is held by this session, so the unlock cannot fail but with the
        // connection, which releases it too.
        let unlock = format!("SELECT pg_advisory_unlock({})", self.key);
        if !conn.send_only(&unlock) {
            tracing::warn!("an advisory lock could not be released: closing its connection");
            conn.close();
        }
    }
}

impl Pg {
    /// Takes the session-level advisory lock `key` if no other session holds it, and runs
    /// `reads` under it, all in one round trip: the lock and the reads' answers, or `None`
    /// (nothing held, the reads' answers dropped) when another session holds it.
    ///
    /// `writes` (those of the lock's holder that need no lock, such as a status recorded
    /// before its ATS write-back) go in the same round trip, between the lock and the reads,
    /// in a transaction that commits after the reads (which see them): on `Ok` they are
    /// committed, the lock taken or not; on an error nothing of them is (the connection is
    /// closed, which rolls back), except if the error came after the commit's answer.
    /// `committed` is set once the commit answered, error or not: the caller then knows.
    pub(in crate::store) fn try_lock_with(
        &self,
        key: i64,
        writes: &[Statement],
        reads: &[Statement],
        committed: &mut bool,
    ) -> Result<Option<(DirectLock, Vec<Vec<Row>>)>> {
        let conn = self.take(&self.lock_direct, LOCK_POOL_SIZE, LOCK_POOL_WAIT)?;
        let sent = Instant::now();
        let mut statements = Vec::with_capacity(1 + writes.len() + reads.len());
        // First: a session lock outlives the transaction it was taken in.
        statements.push(Statement::new(
            "SELECT pg_try_advisory_lock(?1)",
            vec![Value::Int(key)],
        ));
        statements.extend_from_slice(writes);
        statements.extend_from_slice(reads);
        let answers = if writes.is_empty() {
            conn.query_all(&statements)
        } else {
            let answers = conn.query_all_committed(&statements);
            *committed = answers.is_ok();
            answers
        };
        let answered = answers.and_then(|answers| {
            let mut answers = answers.into_iter();
            let taken = answers.next().ok_or(StoreError::NoRow)?;
            let taken = taken.first().ok_or(StoreError::NoRow)?.int(0)? == 1;
            Ok((taken, answers.skip(writes.len()).collect()))
        });
        match answered {
            Ok((true, rows)) => Ok(Some((
                DirectLock {
                    conn: Mutex::new(Session { conn, proven: sent }),
                    key,
                },
                rows,
            ))),
            // Nothing held: the connection goes back as it is.
            Ok((false, _)) => Ok(None),
            Err(e) => {
                // Whether the lock was taken is not known: closing releases it if it was.
                conn.close();
                Err(e)
            }
        }
    }
}

/// How long a batch waits for the writer's lost connection to be opened again. A server whose
/// packets are dropped would otherwise hold the batch for the whole connect timeout (or, once
/// TCP connects, without end); past this wait the batch fails at once (intake answers 503 with
/// `Retry-After`) while the attempt goes on in the background.
const WRITER_RECONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Each background attempt to open the writer's connection again is bounded by this.
const RECONNECT_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(2);

/// The pause between two failed attempts: doubling from the first, up to the last.
const RECONNECT_PAUSE_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const RECONNECT_PAUSE_MAX: std::time::Duration = std::time::Duration::from_secs(8);

/// The group commit's connection: its own, outside the pool, opened again when lost (the
/// server restarted, a failover, the network cut). The reconnection runs in the background,
/// with backoff, and a batch waits for it at most [`WRITER_RECONNECT_WAIT`]: until it
/// succeeds, each batch fails with the reason and its writes get an error (intake answers 503).
pub(in crate::store) struct WriterConn {
    pg: Arc<Pg>,
    conn: Mutex<PgConn>,
    reconnect: Arc<(Mutex<Reconnect>, std::sync::Condvar)>,
}

/// The background reconnection: whether one runs, and the connection it opened, not yet taken.
#[derive(Default)]
struct Reconnect {
    running: bool,
    opened: Option<PgConn>,
}

impl WriterConn {
    pub(in crate::store) fn open(pg: Arc<Pg>) -> Result<WriterConn> {
        let conn = Mutex::new(pg.dedicated()?);
        Ok(WriterConn {
            pg,
            conn,
            reconnect: Arc::default(),
        })
    }

    /// The connection, opened again first if it was lost (kept as it is, closed, if that
    /// cannot be done within [`WRITER_RECONNECT_WAIT`]: the batch then fails with the reason).
    pub(in crate::store) fn current(&self) -> std::sync::MutexGuard<'_, PgConn> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if conn.probe() {
            if let Some(fresh) = self.reopened() {
                tracing::info!("the store writer reconnected to PostgreSQL");
                *conn = fresh;
            }
        }
        conn
    }

    /// A connection opened again by the background reconnection (started if none runs),
    /// waiting for it at most [`WRITER_RECONNECT_WAIT`].
    fn reopened(&self) -> Option<PgConn> {
        let (state, changed) = &*self.reconnect;
        let mut now = state.lock().unwrap_or_else(|e| e.into_inner());
        if now.opened.is_none() && !now.running {
            now.running = true;
            let (config, to) = (self.pg.config(), Arc::downgrade(&self.reconnect));
            let trips = self.pg.trips.clone();
            let started = std::thread::Builder::new()
                .name("switchyard-pg-reconnect".into())
                .spawn(move || reconnect(config, trips, to));
            if let Err(e) = started {
                now.running = false;
                tracing::error!(error = %e, "cannot start the store writer's reconnection");
            }
        }
        let (mut now, _) = changed
            .wait_timeout_while(now, WRITER_RECONNECT_WAIT, |s| s.opened.is_none())
            .unwrap_or_else(|e| e.into_inner());
        now.opened.take()
    }
}

/// Opens the writer's connection again, pausing longer after each failure, until one succeeds;
/// hands it over through `to`. Each attempt is bounded: [`RECONNECT_ATTEMPT`] for the socket's
/// connect and again for the handshake (a server that accepts and stalls is given up on). A
/// thread of its own, since an attempt blocks; it ends without a connection once the writer is
/// gone (the store dropped).
fn reconnect(
    mut config: tokio_postgres::Config,
    trips: Arc<AtomicU64>,
    to: std::sync::Weak<(Mutex<Reconnect>, std::sync::Condvar)>,
) {
    config.connect_timeout(RECONNECT_ATTEMPT);
    let mut pause = RECONNECT_PAUSE_FIRST;
    while to.strong_count() > 0 {
        match Direct::connect(&config, trips.clone()) {
            Ok(direct) => {
                let Some(to) = to.upgrade() else { return };
                let (state, changed) = &*to;
                let mut now = state.lock().unwrap_or_else(|e| e.into_inner());
                now.opened = Some(PgConn::new(direct, None));
                now.running = false;
                changed.notify_all();
                return;
            }
            Err(e) => tracing::debug!(error = %e, "the store writer cannot reconnect yet"),
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(RECONNECT_PAUSE_MAX);
    }
}

/// What commits a transaction: its deferred work (the `kv_totals` constraint trigger) first, in
/// a savepoint of its own that [`PgConn::commit`] can undo and run again.
const COMMIT: &str =
    "SAVEPOINT deferred_work;SET CONSTRAINTS ALL IMMEDIATE;RELEASE deferred_work;COMMIT";

/// How many times [`PgConn::commit`] runs a transaction's deferred work that deadlocked.
pub(in crate::store) const COMMIT_ATTEMPTS: u32 = 4;

/// The pause before the deferred work's next attempt, times the attempt, jittered ±50 %: two
/// hosts that deadlocked do not meet again at once.
const COMMIT_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// One PostgreSQL connection, used synchronously by one thread at a time.
pub(in crate::store) struct PgConn {
    /// `None` only while dropping.
    direct: RefCell<Option<Direct>>,
    /// Transaction control not sent yet (`BEGIN;SAVEPOINT job;…`): it goes out ahead of the
    /// next statement, in the same round trip.
    deferred: RefCell<String>,
    /// A transaction was begun and not yet ended: such a connection never goes back idle.
    in_transaction: Cell<bool>,
    /// The write running is the group commit's batch's last: its last statements may carry
    /// the `COMMIT` ([`PgConn::set_alone`]).
    alone: Cell<bool>,
    /// The batch's transaction was committed with its write's last statements: the writer's
    /// `RELEASE` and `COMMIT` that follow have nothing left to do.
    ended: Cell<bool>,
    /// The pool it returns to when dropped (`None`: the writer's own).
    home: Option<Arc<Slots>>,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        let Some(home) = self.home.take() else {
            return;
        };
        let direct = self.direct.get_mut().take();
        // A connection left inside a transaction (a panic, a failed rollback) or closed is not
        // reused: dropping it closes it, and the server rolls back what it held.
        let reusable = !self.in_transaction.get() && !std::thread::panicking();
        home.release(direct.filter(|d| reusable && !d.is_closed()));
    }
}

impl PgConn {
    fn new(direct: Direct, home: Option<Arc<Slots>>) -> PgConn {
        PgConn {
            direct: RefCell::new(Some(direct)),
            deferred: RefCell::default(),
            in_transaction: Cell::new(false),
            alone: Cell::new(false),
            ended: Cell::new(false),
            home,
        }
    }

    /// Runs `f` on the connection with the deferred transaction control (taken: `f` sends it).
    fn with<T>(&self, f: impl FnOnce(&mut Direct, &str) -> Result<T>) -> Result<T> {
        if self.ended.get() {
            return Err(StoreError::Postgres(
                "a statement after its write's last ones, which committed".into(),
            ));
        }
        let deferred = self.deferred.take();
        let mut direct = self.direct.borrow_mut();
        let direct = direct
            .as_mut()
            .ok_or_else(|| StoreError::Postgres("the connection is gone".into()))?;
        f(direct, &deferred)
    }

    /// Statements without parameters or results, several at once (migrations, transaction
    /// control), sent with what was deferred.
    pub(in crate::store) fn batch(&self, sql: &str) -> Result<()> {
        self.with(|direct, deferred| {
            let text = format!("{deferred}{sql}");
            Ok(direct.run(|c| c.batch_execute(&text))??)
        })
    }

    /// Queues `sql` (transaction control that answers nothing the caller reads) to go out
    /// with the next statement; its error, if any, is that statement's.
    pub(in crate::store) fn defer(&self, sql: &str) {
        if self.ended.get() {
            // The transaction committed with the write's last statements (a `RELEASE job`).
            return;
        }
        let mut deferred = self.deferred.borrow_mut();
        deferred.push_str(sql);
        deferred.push(';');
    }

    /// Opens a transaction (sent with its first statement).
    pub(in crate::store) fn begin(&self) {
        self.ended.set(false);
        self.in_transaction.set(true);
        self.defer("BEGIN");
    }

    /// Commits, with whatever was deferred, in one round trip when nothing goes wrong. The
    /// transaction's deferred work (the `kv_totals` constraint trigger) runs first, in a
    /// savepoint of its own, so a deadlock or serialization failure there (the totals rows are
    /// taken in key order since migration 8, but any deferred work may meet another host's
    /// locks) rolls back only that work, which is tried again after a short jittered pause, up to
    /// [`COMMIT_ATTEMPTS`] times; the statements before it never run twice (a group commit's
    /// batch is not failed for it). Any other failure, or the last attempt's, is the commit's
    /// (the caller rolls back).
    pub(in crate::store) fn commit(&self) -> Result<()> {
        if self.ended.replace(false) {
            // Committed already, with the write's last statements ([`PgConn::last`]).
            return Ok(());
        }
        let sent = self.with(|direct, deferred| {
            let text = format!("{deferred}{COMMIT}");
            direct.run(|c| c.batch_execute(&text))
        })?;
        self.commit_retried(sent)
    }

    /// The rest of [`PgConn::commit`] once [`COMMIT`] was sent and answered `sent`: done, or
    /// the deferred work tried again after a deadlock or serialization failure.
    fn commit_retried(
        &self,
        mut sent: std::result::Result<(), tokio_postgres::Error>,
    ) -> Result<()> {
        let mut attempt = 1;
        loop {
            let Err(e) = sent else {
                self.in_transaction.set(false);
                return Ok(());
            };
            let retried = e.code().is_some_and(|code| {
                *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::T_R_SERIALIZATION_FAILURE
            });
            if !retried || attempt == COMMIT_ATTEMPTS {
                return Err(e.into());
            }
            // Undoes only the deferred work, releasing its locks (the other transaction goes
            // on); its trigger events are pending again. It fails when the error came from
            // COMMIT itself (the transaction is over): the error to report is still `e`.
            if let Err(undo) = self.batch("ROLLBACK TO deferred_work") {
                tracing::warn!(error = %undo, "cannot undo a store batch's deferred work");
                return Err(e.into());
            }
            tracing::warn!(
                attempt,
                error = %StoreError::from(e),
                "a store batch's deferred work failed at commit: trying it again"
            );
            let jitter = 0.5 + rand::random::<f64>();
            std::thread::sleep(COMMIT_RETRY_PAUSE.mul_f64(f64::from(attempt) * jitter));
            sent = self.with(|direct, deferred| {
                let text =
                    format!("{deferred}SET CONSTRAINTS ALL IMMEDIATE;RELEASE deferred_work;COMMIT");
                direct.run(|c| c.batch_execute(&text))
            })?;
            attempt += 1;
        }
    }

    /// Whether the write the group commit runs next on this connection is its batch's last
    /// (set by the writer for each write): its last statements may then carry the batch's
    /// `COMMIT` ([`Db::execute_all_last`]).
    pub(in crate::store) fn set_alone(&self, alone: bool) {
        self.alone.set(alone);
    }

    /// Rolls back; what was deferred is dropped (it belonged to the transaction).
    pub(in crate::store) fn rollback(&self) -> Result<()> {
        if self.ended.replace(false) {
            return Err(StoreError::Postgres(
                "cannot roll back a write committed with its last statements".into(),
            ));
        }
        self.deferred.borrow_mut().clear();
        self.batch("ROLLBACK")?;
        self.in_transaction.set(false);
        Ok(())
    }

    /// Ends the connection when it drops (never reused): the server then ends its session, and
    /// the session's locks with it.
    pub(in crate::store) fn close(&self) {
        if let Some(direct) = self.direct.borrow_mut().as_mut() {
            direct.close();
        }
    }

    /// Whether the server answers a statement within `timeout`; a connection that does not is
    /// closed (its statement may still be in flight).
    pub(in crate::store) fn answers_within(&self, timeout: std::time::Duration) -> bool {
        self.simple_within("SELECT 1", timeout).is_ok()
    }

    /// The first column of the first row `sql` (a statement without parameters, sent as text:
    /// nothing to prepare) answers, waiting at most `timeout` for it; a connection that does
    /// not answer in time is closed.
    pub(in crate::store) fn simple_within(
        &self,
        sql: &str,
        timeout: std::time::Duration,
    ) -> Result<Option<String>> {
        let deadline = std::time::Instant::now() + timeout;
        let messages = self.with(|direct, deferred| {
            if !deferred.is_empty() {
                return Err(StoreError::Postgres("a transaction is open".into()));
            }
            direct.run_until(|c| c.simple_query(sql), Some(deadline))
        })??;
        Ok(messages.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        }))
    }

    /// Sends `sql` (a simple statement whose answer nobody reads) without waiting for its
    /// answer ([`Direct::send_only`]); false if it may not have left whole.
    pub(in crate::store) fn send_only(&self, sql: &str) -> bool {
        self.with(|direct, deferred| Ok(deferred.is_empty() && direct.send_only(sql)))
            .unwrap_or(false)
    }

    /// Whether the connection is known to have ended.
    pub(in crate::store) fn is_closed(&self) -> bool {
        self.direct.borrow().as_ref().is_none_or(Direct::is_closed)
    }

    /// Whether the connection ended, reading what the server sent while it sat idle first.
    pub(in crate::store) fn probe(&self) -> bool {
        self.direct.borrow_mut().as_mut().is_none_or(Direct::probe)
    }
}

/// What one of the statements sent together ([`PgConn::together`]) answered.
enum Answer {
    Changed(u64),
    Rows(Vec<tokio_postgres::Row>),
}

/// What [`PgConn::together`] sent after the statements (`then`) answered, if it was sent.
type Then = Option<std::result::Result<(), tokio_postgres::Error>>;

impl PgConn {
    /// `statements`, prepared first where needed (once per connection), sent together with
    /// what was deferred: one round trip for all (tokio-postgres pipelines the futures polled
    /// together, in order). Their changed-row counts, or with `rows` their rows; the first
    /// error is the call's. `then` (statements without parameters: a `COMMIT`) goes out after
    /// them in the same round trip, and its answer comes back beside theirs; it is not sent
    /// when a statement's parameters cannot be encoded (such a statement is never sent, and
    /// the others would be committed without it).
    fn together(
        &self,
        statements: &[Statement],
        rows: bool,
        then: Option<&str>,
    ) -> Result<(Vec<Answer>, Then)> {
        let params: Vec<_> = statements.iter().map(|s| params(&s.values)).collect();
        self.with(|direct, mut deferred| {
            let mut prepared_all = Vec::with_capacity(statements.len());
            for s in statements {
                let (statement, rest) = prepared(direct, deferred, &s.sql)?;
                deferred = rest;
                prepared_all.push(statement);
            }
            let then = then.filter(|_| {
                prepared_all
                    .iter()
                    .zip(&params)
                    .all(|(statement, params)| encodes(statement, params))
            });
            let (sent, done, then) = direct.run(|c| {
                let control = async move {
                    match deferred {
                        "" => Ok(()),
                        deferred => c.batch_execute(deferred).await,
                    }
                };
                let each = prepared_all
                    .iter()
                    .zip(&params)
                    .map(|(statement, params)| async move {
                        if rows {
                            c.query(statement, params).await.map(Answer::Rows)
                        } else {
                            c.execute(statement, params).await.map(Answer::Changed)
                        }
                    });
                let then = async move {
                    match then {
                        Some(sql) => Some(c.batch_execute(sql).await),
                        None => None,
                    }
                };
                futures::future::join3(control, in_order(each.collect()), then)
            })?;
            sent?;
            let done = done
                .into_iter()
                .map(|answer| answer.map_err(StoreError::from))
                .collect::<Result<_>>();
            if done.is_err() && matches!(then, Some(Ok(()))) {
                // Committed all the same (the server ran every statement; this side failed
                // after): nothing is left for the writer to commit or roll back.
                self.in_transaction.set(false);
                self.ended.set(true);
            }
            Ok((done?, then))
        })
    }

    /// A write's last statements ([`Db::execute_all_last`]): last in its batch, sent with the
    /// batch's [`COMMIT`] (one round trip when nothing goes wrong; a deadlock of the deferred
    /// work is tried again as [`PgConn::commit`] does). A statement that fails, or a commit that
    /// fails for good, leaves the transaction open for the writer to roll back, as any failed
    /// write does.
    fn last(&self, statements: &[Statement], rows: bool) -> Result<Vec<Answer>> {
        debug_assert!(self.commits_last());
        self.with_commit(statements, rows)
    }

    /// [`PgConn::last`]'s work in any open transaction: `statements`, then its [`COMMIT`], in
    /// one round trip per [`PIPELINE`]. [`PgConn::commit`] after it ends the transaction here
    /// (and sends the `COMMIT` if it could not go with them).
    fn with_commit(&self, statements: &[Statement], rows: bool) -> Result<Vec<Answer>> {
        if statements.is_empty() {
            return Ok(Vec::new());
        }
        let at = (statements.len() - 1) / PIPELINE * PIPELINE;
        let mut answers = Vec::with_capacity(statements.len());
        for chunk in statements[..at].chunks(PIPELINE) {
            answers.extend(self.together(chunk, rows, None)?.0);
        }
        let (done, then) = self.together(&statements[at..], rows, Some(COMMIT))?;
        answers.extend(done);
        // Not sent (a parameter that cannot be encoded): the writer's COMMIT follows.
        if let Some(sent) = then {
            self.commit_retried(sent)?;
            self.ended.set(true);
        }
        Ok(answers)
    }
}

impl PgConn {
    /// `statements` in one transaction of their own, committed in the same round trip (per
    /// [`PIPELINE`]): each one's rows. The deferred work at the commit is tried again as
    /// [`PgConn::commit`] does. On an error the transaction may be open: the caller closes
    /// the connection, which rolls it back.
    pub(in crate::store) fn query_all_committed(
        &self,
        statements: &[Statement],
    ) -> Result<Vec<Vec<Row>>> {
        self.begin();
        let answers = self.with_commit(statements, true)?;
        self.commit()?;
        rows_of(answers)
    }

    /// Whether a write's last statements carry its batch's `COMMIT` ([`PgConn::last`]).
    fn commits_last(&self) -> bool {
        self.alone.get() && self.in_transaction.get()
    }
}

/// Whether `params` encode as `statement`'s parameters (as tokio-postgres checks before
/// sending it).
fn encodes(statement: &tokio_postgres::Statement, params: &[&(dyn ToSql + Sync)]) -> bool {
    let mut buf = bytes::BytesMut::new();
    statement.params().len() == params.len()
        && statement.params().iter().zip(params).all(|(ty, value)| {
            buf.clear();
            value.to_sql_checked(ty, &mut buf).is_ok()
        })
}

/// Statements per round trip in [`PgConn::together`]: [`in_order`] polls every pending one at
/// each wake-up, so a round trip's cost grows with the square of its length, and a connector's
/// call can hold any number of `state` deletes (they take no quota).
const PIPELINE: usize = 256;

/// Runs `futures` together, each polled in its turn until all are done; their outputs in order.
/// A tokio-postgres request goes out when its future is first polled, so the statements run in
/// this order (`join_all` polls more than 30 futures in no set order).
async fn in_order<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures
        .into_iter()
        .map(|f| Box::pin(futures::future::maybe_done(f)))
        .collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for future in &mut futures {
            pending |= future.as_mut().poll(cx).is_pending();
        }
        if pending {
            return std::task::Poll::Pending;
        }
        let outputs = futures.iter_mut().filter_map(|f| f.as_mut().take_output());
        std::task::Poll::Ready(outputs.collect())
    })
    .await
}

/// What `make` builds from the client, with `deferred` (transaction control) pipelined ahead of
/// it: one round trip for both. The statement's error is the deferred control's if that failed.
fn pipelined<'a, T, F>(
    direct: &'a mut Direct,
    deferred: &'a str,
    make: impl FnOnce(&'a tokio_postgres::Client) -> F,
) -> Result<T>
where
    F: Future<Output = std::result::Result<T, tokio_postgres::Error>> + 'a,
{
    if deferred.is_empty() {
        return Ok(direct.run(make)??);
    }
    let (sent, done) = direct.run(|c| futures::future::join(c.batch_execute(deferred), make(c)))?;
    sent?;
    Ok(done?)
}

/// The statement for `sql` (`?N` text), prepared on first use with `deferred` pipelined ahead
/// (a statement cannot be prepared inside a transaction a failed job left aborted until its
/// deferred `ROLLBACK TO` ran); what of `deferred` is still to send.
fn prepared<'d>(
    direct: &mut Direct,
    deferred: &'d str,
    sql: &str,
) -> Result<(tokio_postgres::Statement, &'d str)> {
    if let Some(statement) = direct.cached(sql) {
        return Ok((statement, deferred));
    }
    let text = to_postgres(sql);
    let statement = pipelined(direct, deferred, |c| c.prepare(&text))?;
    direct.remember(sql, statement.clone());
    Ok((statement, ""))
}

fn params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Db for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&self, sql: &str, values: &[Value]) -> Result<u64> {
        let params = params(values);
        self.with(|direct, deferred| {
            let (stmt, deferred) = prepared(direct, deferred, sql)?;
            pipelined(direct, deferred, |c| c.execute(&stmt, &params))
        })
    }

    /// Inside a transaction: sent together ([`PgConn::together`]), one round trip per [`PIPELINE`].
    fn execute_all(&self, statements: &[Statement]) -> Result<Vec<u64>> {
        if statements.len() < 2 || !self.in_transaction.get() {
            return statements
                .iter()
                .map(|s| self.execute(&s.sql, &s.values))
                .collect();
        }
        let mut counts = Vec::with_capacity(statements.len());
        for chunk in statements.chunks(PIPELINE) {
            for answer in self.together(chunk, false, None)?.0 {
                counts.push(match answer {
                    Answer::Changed(n) => n,
                    Answer::Rows(_) => {
                        return Err(StoreError::Row("rows where a count was asked".into()))
                    }
                });
            }
        }
        Ok(counts)
    }

    /// Alone in the group commit's batch: with its `COMMIT` ([`PgConn::last`]).
    fn execute_all_last(&self, statements: &[Statement]) -> Result<Vec<u64>> {
        if !self.commits_last() {
            return self.execute_all(statements);
        }
        self.last(statements, false)?
            .into_iter()
            .map(|answer| match answer {
                Answer::Changed(n) => Ok(n),
                Answer::Rows(_) => Err(StoreError::Row("rows where a count was asked".into())),
            })
            .collect()
    }

    /// Alone in the group commit's batch: with its `COMMIT` ([`PgConn::last`]); the rows are
    /// read after it.
    fn query_all_last(&self, statements: &[Statement]) -> Result<Vec<Vec<Row>>> {
        if !self.commits_last() {
            return self.query_all(statements);
        }
        rows_of(self.last(statements, true)?)
    }

    /// Alone in the group commit's batch: with its `COMMIT` ([`PgConn::last`]); the rows are
    /// read after it.
    fn query_last(&self, sql: &str, values: &[Value]) -> Result<Vec<Row>> {
        if !self.commits_last() {
            return self.query(sql, values);
        }
        let statement = Statement::new(sql.to_owned(), values.to_vec());
        match self.last(std::slice::from_ref(&statement), true)?.pop() {
            Some(Answer::Rows(rows)) => rows.iter().map(from_postgres).collect(),
            _ => Err(StoreError::Row("a count where rows were asked".into())),
        }
    }

    /// Sent together ([`PgConn::together`]), one round trip per [`PIPELINE`].
    fn query_all(&self, statements: &[Statement]) -> Result<Vec<Vec<Row>>> {
        if statements.len() < 2 {
            return statements
                .iter()
                .map(|s| self.query(&s.sql, &s.values))
                .collect();
        }
        let mut all = Vec::with_capacity(statements.len());
        for chunk in statements.chunks(PIPELINE) {
            for answer in self.together(chunk, true, None)?.0 {
                all.push(match answer {
                    Answer::Rows(rows) => rows.iter().map(from_postgres).collect::<Result<_>>()?,
                    Answer::Changed(_) => {
                        return Err(StoreError::Row("a count where rows were asked".into()))
                    }
                });
            }
        }
        Ok(all)
    }

    fn query(&self, sql: &str, values: &[Value]) -> Result<Vec<Row>> {
        let params = params(values);
        let rows = self.with(|direct, deferred| {
            let (stmt, deferred) = prepared(direct, deferred, sql)?;
            pipelined(direct, deferred, |c| c.query(&stmt, &params))
        })?;
        rows.iter().map(from_postgres).collect()
    }
}

/// The rows of each of [`PgConn::together`]'s answers (asked with `rows`).
fn rows_of(answers: Vec<Answer>) -> Result<Vec<Vec<Row>>> {
    answers
        .into_iter()
        .map(|answer| match answer {
            Answer::Rows(rows) => rows.iter().map(from_postgres).collect(),
            Answer::Changed(_) => Err(StoreError::Row("a count where rows were asked".into())),
        })
        .collect()
}

/// A row as neutral values, read by each column's type.
fn from_postgres(row: &tokio_postgres::Row) -> Result<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = match *ty {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)?
                .map(|v| Value::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            _ => {
                return Err(StoreError::Row(format!(
                    "column {} has type {ty}, which the store does not read (cast it)",
                    column.name()
                )))
            }
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

/// A neutral value bound as the type PostgreSQL inferred for the parameter.
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Real(v) => match *ty {
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(v) => v.as_str().to_sql(ty, out),
            Value::Shared(v) => std::str::from_utf8(v)?.to_sql(ty, out),
            Value::Blob(v) => v.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Environment variable holding the test cluster's URL (`scripts/pg.sh start` exports it).
pub const TEST_URL_VAR: &str = "SWITCHYARD_TEST_PG_URL";

/// A new, empty database on the test cluster named by [`TEST_URL_VAR`]: its URL. For tests of
/// the PostgreSQL backend, which must fail (never skip) without a server: the error names the
/// script that starts one.
pub fn test_database() -> std::result::Result<String, String> {
    let hint = "start one with `eval \"$(scripts/pg.sh start)\"` (scripts/test.sh does)";
    let base = std::env::var(TEST_URL_VAR)
        .map_err(|_| format!("PostgreSQL tests need {TEST_URL_VAR}: {hint}"))?;
    let name = format!("sy_test_{}", uuid::Uuid::new_v4().simple());
    let admin = base.clone();
    let created = std::thread::spawn({
        let name = name.clone();
        move || -> std::result::Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&admin, NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .map_err(|e| e.to_string())
            })
        }
    })
    .join()
    .map_err(|_| "creating the test database panicked".to_string())?;
    created.map_err(|e| {
        format!(
            "the PostgreSQL at {} does not answer ({e}): {hint}",
            redact(&base)
        )
    })?;
    let mut url = url::Url::parse(&base).map_err(|e| format!("{TEST_URL_VAR}: {e}"))?;
    url.set_path(&name);
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::sql::{values, Db, Statement};
    use super::super::StoreError;
    use super::{redact, Pg, PgConn, PIPELINE};

    /// Statements run together in a transaction go out in one round trip, each with its own
    /// row count; one that fails fails the call with its own error (not the aborted
    /// transaction's).
    #[test]
    fn on_postgres_statements_run_together_take_one_round_trip_and_fail_together() {
        let pg = Pg::connect(&crate::store::testing::postgres_url(), None).unwrap();
        let round_trips = |_: &PgConn| pg.round_trips();
        let conn = pg.conn().unwrap();
        conn.batch("CREATE TABLE t (n BIGINT PRIMARY KEY)").unwrap();
        let insert = |n: i64| {
            Statement::new(
                "INSERT INTO t (n) VALUES (?1) ON CONFLICT (n) DO NOTHING",
                values![n],
            )
        };
        let strict = |n: i64| Statement::new("INSERT INTO t (n) VALUES (?1)", values![n]);
        conn.begin();
        // Prepared on first use, once per connection.
        conn.execute_all(&[insert(0), strict(100)]).unwrap();
        let before = round_trips(&conn);
        assert_eq!(
            conn.execute_all(&[insert(1), insert(1), strict(2)])
                .unwrap(),
            vec![1, 0, 1]
        );
        assert_eq!(round_trips(&conn) - before, 1, "one round trip for three");
        // Many at once run in their order: each insert finds the row the delete before it
        // removed gone, each delete finds the insert before it; sent [`PIPELINE`] at a time.
        let flip: Vec<Statement> = (0..2 * PIPELINE + 1)
            .map(|i| match i % 2 {
                0 => insert(1000),
                _ => Statement::new("DELETE FROM t WHERE n = ?1", values![1000_i64]),
            })
            .collect();
        // Prepared first, so that the count is the statements' own round trips.
        conn.execute_all(&flip[..2]).unwrap();
        let before = round_trips(&conn);
        assert_eq!(conn.execute_all(&flip).unwrap(), vec![1; 2 * PIPELINE + 1]);
        assert_eq!(round_trips(&conn) - before, 3, "three round trips for 513");
        conn.execute("DELETE FROM t WHERE n = 1000", &[]).unwrap();
        conn.defer("SAVEPOINT s");
        let failed = conn
            .execute_all(&[strict(3), strict(1), strict(4)])
            .unwrap_err()
            .to_string();
        assert!(failed.contains("duplicate key"), "{failed}");
        conn.defer("ROLLBACK TO s");
        conn.commit().unwrap();
        let rows: Vec<i64> = conn
            .query("SELECT n FROM t ORDER BY n", &[])
            .unwrap()
            .iter()
            .map(|r| r.int(0).unwrap())
            .collect();
        assert_eq!(rows, vec![0, 1, 2, 100]);
        // Reads, outside a transaction too: one round trip once prepared.
        let reads = [
            Statement::new("SELECT n FROM t WHERE n < 2 ORDER BY n", Vec::new()),
            Statement::new("SELECT n FROM t WHERE n > 2", Vec::new()),
        ];
        conn.query_all(&reads).unwrap();
        let before = round_trips(&conn);
        let answers = conn.query_all(&reads).unwrap();
        assert_eq!(
            round_trips(&conn) - before,
            1,
            "one round trip for two reads"
        );
        let ints = |rows: &Vec<super::Row>| -> Vec<i64> {
            rows.iter().map(|r| r.int(0).unwrap()).collect()
        };
        assert_eq!(
            answers.iter().map(ints).collect::<Vec<_>>(),
            vec![vec![0, 1], vec![100]]
        );
    }

    /// The writer's tests' store whose rows of `t` a deferred trigger checks at COMMIT, failing
    /// its first `deadlocks` runs with SQLSTATE 40P01 (runs counted by `t_checks`), with a
    /// table `small (n INTEGER)` besides.
    fn store_with_checked_rows(deadlocks: u32) -> crate::store::Store {
        let store = crate::store::writer::tests::postgres_with_deadlocking_checks(deadlocks);
        store
            .db(|db| db.execute("CREATE TABLE small (n INTEGER)", &[]))
            .unwrap();
        store
    }

    /// `sql` with each of `ns` as its `?1`, as the last statements of one write of the group
    /// commit: its answer.
    async fn last_write(
        store: &crate::store::Store,
        sql: &'static str,
        ns: &[i64],
    ) -> crate::store::Result<Vec<u64>> {
        let statements: Vec<Statement> = ns
            .iter()
            .map(|n| Statement::new(sql, values![*n]))
            .collect();
        store
            .write_db(move |db| db.execute_all_last(&statements))
            .await
    }

    fn ints(store: &crate::store::Store, sql: &str) -> Vec<i64> {
        store
            .db(|db| db.query(sql, &[])?.iter().map(|r| r.int(0)).collect())
            .unwrap()
    }

    /// A write alone in its batch sends its last statements with the batch's COMMIT (one round
    /// trip); one that fails leaves nothing of the write, and its own error reaches the caller;
    /// a parameter that cannot be encoded keeps the COMMIT back (the other statements would
    /// commit without it): nothing of that write either. The next write commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres_a_lone_writes_last_statements_carry_its_commit_or_nothing_is_applied() {
        let store = store_with_checked_rows(0);
        let insert = "INSERT INTO t (n) VALUES (?1)";
        last_write(&store, insert, &[1]).await.unwrap();
        let before = store.writer_stats().round_trips;
        assert_eq!(
            last_write(&store, insert, &[2, 3]).await.unwrap(),
            vec![1, 1]
        );
        assert_eq!(
            store.writer_stats().round_trips - before,
            1,
            "statements and commit"
        );

        let failed = last_write(&store, insert, &[4, 1, 5]).await.unwrap_err();
        assert!(matches!(failed, StoreError::Postgres(_)), "{failed:?}");
        assert!(failed.to_string().contains("duplicate key"), "{failed}");
        assert_eq!(ints(&store, "SELECT n FROM t ORDER BY n"), vec![1, 2, 3]);

        let small = "INSERT INTO small (n) VALUES (?1)";
        last_write(&store, small, &[7]).await.unwrap();
        let failed = last_write(&store, small, &[8, i64::MAX]).await.unwrap_err();
        assert!(
            failed.to_string().contains("serializing parameter"),
            "{failed}"
        );
        assert_eq!(ints(&store, "SELECT n FROM small"), vec![7]);

        last_write(&store, insert, &[6]).await.unwrap();
        assert_eq!(ints(&store, "SELECT n FROM t ORDER BY n"), vec![1, 2, 3, 6]);
        assert_eq!(store.writer_stats().failed_batches, 0);
    }

    /// Writes sharing a batch: the last one's last statements carry the batch's COMMIT (one
    /// round trip per write, none for the COMMIT); a last one that fails is rolled back to its
    /// savepoint alone, and the others commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres_the_last_write_of_a_batch_carries_its_commit_or_fails_alone() {
        use crate::store::writer::tests::{counts, hold_writer, wait_sent};
        let store = store_with_checked_rows(0);
        let insert = "INSERT INTO t (n) VALUES (?1)";
        last_write(&store, insert, &[1]).await.unwrap();
        // (first, last, round trips, rows after): a duplicate last fails alone, and the
        // batch's COMMIT is then its own round trip.
        for (first, last, trips, kept) in [(2, 3, 3, vec![1, 2, 3]), (4, 1, 4, vec![1, 2, 3, 4])] {
            let (release, gate) = hold_writer(&store).await;
            let mut sent = counts(&store).1;
            // In this order in the batch.
            let mut write = |n: i64| {
                let store = store.clone();
                sent += 1;
                (
                    tokio::spawn(async move { last_write(&store, insert, &[n]).await }),
                    sent,
                )
            };
            let (first, one) = write(first);
            wait_sent(&store, one).await;
            let (second, two) = write(last);
            wait_sent(&store, two).await;
            let before = store.writer_stats().round_trips;
            release.send(()).unwrap();
            gate.await.unwrap().unwrap();
            let (first, second) = (first.await.unwrap(), second.await.unwrap());
            // The holding job's COMMIT, then one round trip per write.
            assert_eq!(store.writer_stats().round_trips - before, trips);
            assert!(first.is_ok(), "{first:?}");
            assert_eq!(second.is_ok(), last != 1, "{second:?}");
            assert_eq!(ints(&store, "SELECT n FROM t ORDER BY n"), kept);
        }
        assert_eq!(store.writer_stats().failed_batches, 0);
    }

    /// A lone write's deferred work that deadlocks at the COMMIT its statements carried is tried
    /// again, as any batch's: the write commits once; at every attempt, nothing is applied and
    /// the error reaches the caller.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres_a_lone_write_whose_commit_deadlocks_is_tried_again() {
        let insert = "INSERT INTO t (n) VALUES (?1)";
        let store = store_with_checked_rows(1);
        assert_eq!(last_write(&store, insert, &[1]).await.unwrap(), vec![1]);
        assert_eq!(ints(&store, "SELECT n FROM t"), vec![1]);
        assert_eq!(ints(&store, "SELECT last_value FROM t_checks"), vec![2]);

        let store = store_with_checked_rows(super::COMMIT_ATTEMPTS);
        let failed = last_write(&store, insert, &[1]).await.unwrap_err();
        assert!(failed.to_string().contains("deadlock"), "{failed}");
        assert!(ints(&store, "SELECT n FROM t").is_empty());
        last_write(&store, insert, &[2]).await.unwrap();
        assert_eq!(ints(&store, "SELECT n FROM t"), vec![2]);
    }

    #[test]
    fn a_password_is_masked_in_the_userinfo_and_in_the_query() {
        let shown =
            redact("postgres://app:hunter2@db.internal:5432/sy?sslmode=disable&password=hunter3");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
        assert!(
            shown.contains("db.internal") && shown.contains("sslmode=disable"),
            "{shown}"
        );
    }
}
