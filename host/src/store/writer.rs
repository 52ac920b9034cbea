//! Group commit: writes from many concurrent requests share one transaction, hence one fsync.
//!
//! With `synchronous=FULL` every commit costs an fsync, and the disk, not SQLite, sets the pace:
//! one row per commit is a few thousand commits a second, fifty rows per commit tens of times
//! more rows. Durability stays as promised — a write is answered only after the transaction
//! holding it committed — so the way up is to share commits, never to skip them.
//!
//! How it works: one dedicated OS thread (`switchyard-store-writer`) receives jobs over a bounded
//! channel; a sender waits while the channel is full (backpressure, never an unbounded queue).
//! The thread blocks for the first job, then takes whatever else is already waiting (up to
//! [`MAX_BATCH`]): the jobs that arrived while the previous commit's fsync ran. No timer: a lone
//! write is committed at once, and under load batches grow by themselves. It then locks the
//! store's connection, runs `BEGIN IMMEDIATE`, each job inside its own `SAVEPOINT` (a job that
//! fails is rolled back alone and gets its own error; the others go on), `COMMIT`, and only then
//! answers every job. If `BEGIN` or `COMMIT` (or a savepoint) fails, the transaction is rolled
//! back and every job of the batch gets [`StoreError::Batch`]: nothing of it is half-written,
//! and the next batch starts clean.
//!
//! Webhooks ([`Writer::enqueue`]) are jobs the batch merges first: two or more (on PostgreSQL one
//! too) become one multi-row insert per table, first in the transaction and without a savepoint (see
//! [`super::intake`]); if that fails the transaction is rolled back and begun again, and each
//! runs alone, as any job. A committed batch that queued new
//! webhooks signals the store's `queued` [`Notify`] once (`notify_one`), before any of them is
//! answered: one idle worker wakes per batch, not one per webhook, and claims for the others.
//!
//! A job gets the connection as `&Connection` and must not begin, commit or roll back a
//! transaction itself (its savepoint already makes it atomic), nor call any [`Store`] method:
//! those lock the connection the writer already holds (a deadlock).
//!
//! The thread ends when the last [`Store`] clone is dropped (its channel closes).
//!
//! On SQLite the commits never checkpoint the WAL: a thread beside copies it, and the writer,
//! after a batch was answered, only asks for that or copies what was committed meanwhile
//! (`checkpoint`).
//!
//! **When a commit reaches the disk ([`Flush`]).** Every write is committed before it is
//! answered; most are also flushed (fsync) before it is answered. A processing step's
//! bookkeeping (a claim, an attempt's outcome, a status recorded before its ATS write-back) may
//! ask for [`Flush::Later`]: a batch made only of such writes commits with
//! `synchronous=NORMAL` (SQLite, WAL: no fsync), and the next flushed commit — the next webhook,
//! intent, note mark or checkpoint — makes it durable with itself. WAL recovery keeps commits in
//! order (each frame's checksum chains to the one before), so a power loss can lose only the
//! newest unflushed writes, never one older than a flushed commit; a process crash (kill -9)
//! loses nothing, the kernel has the pages. A lost step is redone as after any crash (its event
//! is taken back and every step is idempotent), and nothing the outside world acts on relies on
//! an unflushed write: an ack, an intent before its vendor call and a note's attempt mark are
//! flushed. PostgreSQL flushes every commit, as before.
//!
//! **PostgreSQL.** The same batching, written once (generic over the connection, [`Batching`]),
//! over one dedicated connection outside the pool (opened again when lost): `BEGIN`, a `SAVEPOINT` per job, one `COMMIT`
//! (one WAL flush for the batch; sent with the last job's last statements, or the webhooks'
//! merged insert when they are the whole batch: no round trip of its own), whose deferred work (the `kv_totals` trigger) runs in a
//! savepoint of its own first and is tried again alone if it deadlocks with another host's
//! (`PgConn::commit`): the batch fails for that only after the last attempt. A PostgreSQL
//! batch holds at most 61 jobs with a savepoint of their own (`Batching::MAX_SAVEPOINTS`;
//! webhooks share one, the deferred work has one): more would overflow the
//! server's cache of a transaction's 64 subtransactions, slowing every other session's
//! snapshots. The next job waits for the next batch. A job ported to both backends takes a `&dyn Db`
//! ([`super::Store::write_db`]); one written for SQLite only takes a `&Connection`.
//!
//! [`Store`]: super::Store

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, Notify};

use super::checkpoint::Checkpoints;
use super::intake::{enqueue_many_on, enqueue_one_on, IntakeRow};
use super::pg::{PgConn, WriterConn};
use super::sql::Db;
use super::{lock, Enqueued, Result, StoreError};
use crate::metrics::WriterStats;

/// When a write's commit must be on disk (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::store) enum Flush {
    /// Before the write is answered: anything acknowledged or acted on outside.
    Now,
    /// With the next flushed commit: a processing step's bookkeeping, redone after a power
    /// loss that took it.
    Later,
}

/// Most jobs committed together; a bound on how long one batch holds the connection.
pub const MAX_BATCH: usize = 512;

/// Jobs that may wait for the writer before senders wait too.
const CHANNEL: usize = 2 * MAX_BATCH;

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    failed_batches: AtomicU64,
    /// WAL frames (pages) the commits appended (SQLite).
    wal_frames: AtomicU64,
    /// Jobs taken off the channel (tests: with the channel's length, all jobs sent).
    taken: AtomicU64,
}

/// The sending side, held by every [`Store`](super::Store) clone; `C` is the connection the jobs
/// get.
pub(in crate::store) struct Writer<C> {
    jobs: mpsc::Sender<Box<dyn Job<C>>>,
    counters: Arc<Counters>,
}

impl<C> Clone for Writer<C> {
    fn clone(&self) -> Self {
        Writer {
            jobs: self.jobs.clone(),
            counters: self.counters.clone(),
        }
    }
}

/// A connection the writer can batch on.
pub(in crate::store) trait Batching: Db {
    /// What opens a batch's transaction.
    const BEGIN: &'static str;
    /// Runs a transaction-control statement (`SAVEPOINT job`, `COMMIT`, …).
    fn control(&self, sql: &'static str) -> Result<()>;
    /// Whether the batch's transaction is still open (SQLite ends it on some errors).
    fn in_transaction(&self) -> bool;
    /// Jobs with a savepoint of their own a batch takes at most (webhooks share one).
    const MAX_SAVEPOINTS: usize = MAX_BATCH;
    /// The fewest webhooks of a batch run as the merged intake insert ([`merge_intake`]).
    const MERGE_FROM: usize = 2;
    /// Whether the next commits are flushed before they return (the default) or may wait for
    /// a later flushed commit. Called outside a transaction.
    fn flush_commits(&self, now: bool) -> Result<()>;
    /// Whether the write about to run is the batch's last, whose last statements may then
    /// carry the `COMMIT` ([`Db::execute_all_last`]; PostgreSQL).
    fn alone(&self, _alone: bool) {}
}

impl Batching for Connection {
    /// `IMMEDIATE`: the write lock up front, not a failed upgrade halfway.
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    /// Prepared once: a batch runs two per job, and parsing them each time was a measurable
    /// share of the writer's CPU.
    fn control(&self, sql: &'static str) -> Result<()> {
        Ok(self.prepare_cached(sql)?.execute([]).map(drop)?)
    }

    fn in_transaction(&self) -> bool {
        !self.is_autocommit()
    }

    fn flush_commits(&self, now: bool) -> Result<()> {
        let sql = match now {
            true => "PRAGMA synchronous = FULL",
            // NORMAL keeps commits in order only in WAL mode; a file system where SQLite could
            // not enter WAL (it then stays in its old mode) keeps every commit flushed.
            false
                if self
                    .prepare_cached("PRAGMA journal_mode")?
                    .query_row([], |r| r.get::<_, String>(0))?
                    != "wal" =>
            {
                return Ok(())
            }
            false => "PRAGMA synchronous = NORMAL",
        };
        Ok(self.prepare_cached(sql)?.execute([]).map(drop)?)
    }
}

impl Batching for PgConn {
    const BEGIN: &'static str = "BEGIN";

    /// A transaction's backend caches 64 subtransactions that wrote (each job's savepoint is
    /// one); past that, every other session's snapshot overflows to `pg_subtrans` lookups.
    /// 61 jobs, the webhooks' merged insert and the commit's deferred work stay within it (the
    /// per-webhook fallback after a failed merge may exceed it, once).
    const MAX_SAVEPOINTS: usize = 61;

    /// A single webhook too: its merged insert is one statement (`pg_intake`), sent with the
    /// batch's `COMMIT`, where alone it waited for its event's id before its body's insert.
    const MERGE_FROM: usize = 1;

    /// Only `COMMIT` and `ROLLBACK` wait for the server: the rest (`BEGIN`, a job's
    /// `SAVEPOINT`/`RELEASE`/`ROLLBACK TO`) is sent with the next statement, in its round trip.
    fn control(&self, sql: &'static str) -> Result<()> {
        match sql {
            "BEGIN" => self.begin(),
            "COMMIT" => return self.commit(),
            "ROLLBACK" => return self.rollback(),
            _ => self.defer(sql),
        }
        Ok(())
    }

    /// A failed statement does not end a PostgreSQL transaction (its savepoint is rolled back);
    /// only a lost connection does.
    fn in_transaction(&self) -> bool {
        !self.is_closed()
    }

    /// Every commit is flushed on PostgreSQL.
    fn flush_commits(&self, _now: bool) -> Result<()> {
        Ok(())
    }

    fn alone(&self, alone: bool) {
        self.set_alone(alone);
    }
}

/// Where the writer thread takes its connection for each batch.
pub(in crate::store) trait Source: Send + 'static {
    type Conn: Batching;
    fn with<R>(&self, f: impl FnOnce(&Self::Conn) -> R) -> R;
    /// After each batch, once it was answered: housekeeping that must not delay its answers.
    /// `flushed`: every commit so far is on disk (the last one that committed was flushed).
    /// Returns the WAL frames the batch's commit appended (SQLite; 0 elsewhere).
    fn after_batch(&self, _flushed: bool) -> u64 {
        0
    }
}

/// SQLite: the store's one connection, locked for the batch, and its WAL checkpoints.
pub(in crate::store) struct SqliteWriter {
    pub(in crate::store) conn: Arc<Mutex<Connection>>,
    pub(in crate::store) checkpoints: Checkpoints,
}

impl Source for SqliteWriter {
    type Conn = Connection;
    fn with<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        f(&lock(&self.conn))
    }
    fn after_batch(&self, flushed: bool) -> u64 {
        self.checkpoints.after_batch(&self.conn, flushed)
    }
}

/// PostgreSQL: a connection of the writer's own, reconnected when lost.
impl Source for WriterConn {
    type Conn = PgConn;
    fn with<R>(&self, f: impl FnOnce(&PgConn) -> R) -> R {
        f(&self.current())
    }
}

/// A job in the batch: run inside its savepoint, answered once the batch's outcome is known.
trait Job<C>: Send {
    /// Runs the write; false if it failed (its savepoint is then rolled back).
    fn run(&mut self, conn: &C) -> bool;
    /// Answers the caller; `batch` is the outcome of the transaction that held the job.
    fn answer(self: Box<Self>, batch: &std::result::Result<(), String>);
    /// The webhook this job queues, while it is an intake insert the batch may still merge.
    fn intake(&self) -> Option<&IntakeRow> {
        None
    }
    /// Its part of the batch's merged intake insert: done, it does not run again.
    fn settle(&mut self, _done: Enqueued) {}
    /// Done by the merged intake insert: no savepoint of its own.
    fn settled(&self) -> bool {
        false
    }
    /// It queued a new event (the workers should look once its batch committed).
    fn queued_new(&self) -> bool {
        false
    }
    /// When its commit must be on disk.
    fn flush(&self) -> Flush {
        Flush::Now
    }
}

/// A webhook to queue ([`super::intake`]): merged with the batch's others, or run alone.
struct IntakeJob {
    row: IntakeRow,
    done: Option<Result<Enqueued>>,
    reply: oneshot::Sender<Result<Enqueued>>,
}

impl<C: Batching> Job<C> for IntakeJob {
    fn run(&mut self, conn: &C) -> bool {
        if self.done.is_none() {
            let row = &self.row;
            self.done = Some(
                catch_unwind(AssertUnwindSafe(|| enqueue_one_on(conn, row)))
                    .unwrap_or(Err(StoreError::Panicked)),
            );
        }
        matches!(self.done, Some(Ok(_)))
    }

    fn answer(self: Box<Self>, batch: &std::result::Result<(), String>) {
        reply(self.done, batch, self.reply);
    }

    fn intake(&self) -> Option<&IntakeRow> {
        self.done.is_none().then_some(&self.row)
    }

    fn settle(&mut self, done: Enqueued) {
        self.done = Some(Ok(done));
    }

    fn settled(&self) -> bool {
        self.done.is_some()
    }

    fn queued_new(&self) -> bool {
        matches!(self.done, Some(Ok(Enqueued::New(_))))
    }
}

/// Answers a job: its own failure, else the batch's outcome.
fn reply<T>(
    done: Option<Result<T>>,
    batch: &std::result::Result<(), String>,
    to: oneshot::Sender<Result<T>>,
) {
    let answer = match (done, batch) {
        // Its own failure: nothing of it was kept, whatever the batch did.
        (Some(Err(e)), _) => Err(e),
        (Some(Ok(value)), Ok(())) => Ok(value),
        (_, Err(reason)) => Err(StoreError::Batch(reason.clone())),
        (None, Ok(())) => Err(StoreError::Batch("the write did not run".into())),
    };
    // The caller may have gone (request cancelled): the write stands, nobody to tell.
    let _ = to.send(answer);
}

struct Pending<T, F> {
    work: Option<F>,
    done: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    flush: Flush,
}

impl<C, T, F> Job<C> for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&C) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &C) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A panicking job must not take the writer (and every later write) down with it.
        let done =
            catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or(Err(StoreError::Panicked));
        let ok = done.is_ok();
        self.done = Some(done);
        ok
    }

    fn answer(self: Box<Self>, batch: &std::result::Result<(), String>) {
        reply(self.done, batch, self.reply);
    }

    fn flush(&self) -> Flush {
        self.flush
    }
}

impl<C: Batching + 'static> Writer<C> {
    /// Starts the writer thread over `conn`; `queued` is signalled once per committed batch
    /// that queued new webhooks.
    pub(in crate::store) fn start<S: Source<Conn = C>>(
        conn: S,
        queued: Arc<Notify>,
    ) -> std::io::Result<Writer<C>> {
        let (jobs, rx) = mpsc::channel(CHANNEL);
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        std::thread::Builder::new()
            .name("switchyard-store-writer".into())
            .spawn(move || run(&conn, rx, &thread_counters, &queued))?;
        Ok(Writer { jobs, counters })
    }

    /// Runs `job` in the next batch; answers after the batch committed.
    pub(in crate::store) async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&C) -> Result<T> + Send + 'static,
    {
        self.write_flushed(Flush::Now, job).await
    }

    /// [`Writer::write`], its commit on disk as `flush` says.
    pub(in crate::store) async fn write_flushed<T, F>(&self, flush: Flush, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&C) -> Result<T> + Send + 'static,
    {
        let (job, answer) = pending(job, flush);
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Queues a webhook in the next batch, merged with the batch's other webhooks into one
    /// multi-row insert per table ([`super::intake`]); answers after the batch committed.
    pub(in crate::store) async fn enqueue(&self, row: IntakeRow) -> Result<Enqueued> {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job<C>> = Box::new(IntakeJob {
            row,
            done: None,
            reply,
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// [`Writer::write`] for a thread that may block (not an async task: tokio panics there).
    pub(in crate::store) fn write_blocking<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&C) -> Result<T> + Send + 'static,
    {
        self.write_blocking_flushed(Flush::Now, job)
    }

    /// [`Writer::write_blocking`], its commit on disk as `flush` says.
    pub(in crate::store) fn write_blocking_flushed<T, F>(&self, flush: Flush, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&C) -> Result<T> + Send + 'static,
    {
        let (job, answer) = pending(job, flush);
        self.jobs
            .blocking_send(job)
            .map_err(|_| StoreError::WriterStopped)?;
        answer
            .blocking_recv()
            .map_err(|_| StoreError::WriterStopped)?
    }

    pub(in crate::store) fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            failed_batches: self.counters.failed_batches.load(Ordering::Relaxed),
            round_trips: 0,
            wal_frames: self.counters.wal_frames.load(Ordering::Relaxed),
        }
    }

    /// Jobs sent so far: taken by the writer or still in the channel.
    #[cfg(test)]
    fn sent(&self) -> u64 {
        self.counters.taken.load(Ordering::SeqCst)
            + (self.jobs.max_capacity() - self.jobs.capacity()) as u64
    }
}

/// `work` as a job for the writer, and where its answer will come.
fn pending<C, T, F>(work: F, flush: Flush) -> (Box<dyn Job<C>>, oneshot::Receiver<Result<T>>)
where
    C: 'static,
    T: Send + 'static,
    F: FnOnce(&C) -> Result<T> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job = Box::new(Pending {
        work: Some(work),
        done: None,
        reply,
        flush,
    });
    (job, answer)
}

/// The writer thread's loop; returns when every sender is gone.
fn run<S: Source>(
    source: &S,
    mut rx: mpsc::Receiver<Box<dyn Job<S::Conn>>>,
    counters: &Counters,
    queued: &Notify,
) {
    let mut batch: Vec<Box<dyn Job<S::Conn>>> = Vec::with_capacity(MAX_BATCH);
    // A job taken that would have opened one savepoint too many: it starts the next batch.
    let mut carried: Option<Box<dyn Job<S::Conn>>> = None;
    // Whether the last batch that committed was flushed (so every commit before it too).
    let mut flushed = true;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.blocking_recv() {
                Some(job) => {
                    counters.taken.fetch_add(1, Ordering::SeqCst);
                    job
                }
                None => break,
            },
        };
        let mut savepoints = usize::from(first.intake().is_none());
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => {
                    counters.taken.fetch_add(1, Ordering::SeqCst);
                    // Webhooks share the merged insert's one savepoint.
                    if job.intake().is_none() {
                        if savepoints == S::Conn::MAX_SAVEPOINTS {
                            carried = Some(job);
                            break;
                        }
                        savepoints += 1;
                    }
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        // Flushed unless every job of the batch may wait for a later flush.
        let now = batch.iter().any(|job| job.flush() == Flush::Now);
        let outcome = source.with(|conn| commit_flushed(conn, &mut batch, now));
        match &outcome {
            Ok(()) => {
                flushed = now;
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters
                    .writes
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                // Once per batch, not per webhook: the woken worker claims for the others.
                if batch.iter().any(|job| job.queued_new()) {
                    queued.notify_one();
                }
            }
            Err(reason) => {
                counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(jobs = batch.len(), error = %reason, "store batch rolled back");
            }
        }
        // Answered after the lock is released: callers may go on to read the store at once.
        for job in batch.drain(..) {
            job.answer(&outcome);
        }
        let frames = source.after_batch(flushed);
        counters.wal_frames.fetch_add(frames, Ordering::Relaxed);
    }
}

/// [`commit`]; `now`: flushed before it returns, else (all jobs [`Flush::Later`]) left for the
/// next flushed commit. The connection is flushing again afterwards: its other users (and the
/// next batch) commit as before.
fn commit_flushed<C: Batching>(
    conn: &C,
    jobs: &mut [Box<dyn Job<C>>],
    now: bool,
) -> std::result::Result<(), String> {
    if now {
        // Every commit of the batch ends in the WAL's fsync: its frames are written together.
        return super::wal_writes::flushed_commit(|| commit(conn, jobs));
    }
    conn.flush_commits(false)
        .map_err(|e| format!("cannot relax the commit's flush: {e}"))?;
    let result = commit(conn, jobs);
    if let Err(e) = conn.flush_commits(true) {
        // Every other commit of this connection would go unflushed, and a panic would end only
        // this thread (the host would live on, refusing every write): stop the process, whose
        // restart takes its events back.
        tracing::error!(error = %e, "cannot make the store's commits flushed again; aborting");
        std::process::abort();
    }
    result
}

/// One transaction over `jobs`. `Err` = rolled back, nothing of the batch is stored.
fn commit<C: Batching>(conn: &C, jobs: &mut [Box<dyn Job<C>>]) -> std::result::Result<(), String> {
    conn.control(C::BEGIN)
        .map_err(|e| format!("cannot begin: {e}"))?;
    let result = run_jobs(conn, jobs).and_then(|()| {
        conn.control("COMMIT")
            .map_err(|e| format!("cannot commit: {e}"))
    });
    conn.alone(false);
    if result.is_err() && conn.in_transaction() {
        // A failed COMMIT (e.g. a deferred constraint, a full disk) leaves the transaction open.
        if let Err(e) = conn.control("ROLLBACK") {
            tracing::error!(error = %e, "cannot roll back a failed store batch");
        }
    }
    result
}

fn run_jobs<C: Batching>(
    conn: &C,
    jobs: &mut [Box<dyn Job<C>>],
) -> std::result::Result<(), String> {
    // Webhooks alone: their merged insert's last statements may carry the COMMIT.
    conn.alone(jobs.iter().all(|job| job.intake().is_some()));
    merge_intake(conn, jobs)?;
    let last = jobs.iter().rposition(|job| !job.settled());
    for (n, job) in jobs.iter_mut().enumerate() {
        if job.settled() {
            continue;
        }
        // The batch's last write's last statements may carry the COMMIT (PostgreSQL: one round
        // trip fewer per batch); one that fails leaves the transaction open, rolled back to its
        // savepoint as any failed write.
        conn.alone(Some(n) == last);
        conn.control("SAVEPOINT job")
            .map_err(|e| format!("cannot open a savepoint: {e}"))?;
        let ok = job.run(conn);
        if !conn.in_transaction() {
            // SQLite aborted the whole transaction (or the job ended it): earlier jobs are gone.
            return Err("the batch's transaction was ended by one of its writes".into());
        }
        if !ok {
            conn.control("ROLLBACK TO job")
                .map_err(|e| format!("cannot roll back a failed write: {e}"))?;
        }
        conn.control("RELEASE job")
            .map_err(|e| format!("cannot release a savepoint: {e}"))?;
    }
    Ok(())
}

/// The batch's webhooks (at least [`Batching::MERGE_FROM`]), queued together by one multi-row insert per table. They
/// run first in the batch's transaction, without a savepoint of their own: a savepoint copies
/// every page it first changes to the statement journal (the unique key's random leaves, the
/// tables' and indexes' last pages: most of a batch's pages), and nothing before them needs
/// keeping. If they fail, the transaction is rolled back and begun again (nothing else had run
/// in it), and each runs alone afterwards (its own savepoint, its own error), as any job.
fn merge_intake<C: Batching>(
    conn: &C,
    jobs: &mut [Box<dyn Job<C>>],
) -> std::result::Result<(), String> {
    let (at, rows): (Vec<usize>, Vec<&IntakeRow>) = jobs
        .iter()
        .enumerate()
        .filter_map(|(n, job)| job.intake().map(|row| (n, row)))
        .unzip();
    let count = rows.len();
    if count < C::MERGE_FROM {
        return Ok(());
    }
    let merged = catch_unwind(AssertUnwindSafe(|| enqueue_many_on(conn, &rows)))
        .unwrap_or(Err(StoreError::Panicked));
    if !conn.in_transaction() {
        return Err("the batch's transaction was ended by its intake insert".into());
    }
    match merged {
        Ok(answers) => {
            for (n, done) in at.into_iter().zip(answers) {
                jobs[n].settle(done);
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, jobs = count, "merged intake insert failed: one by one");
            conn.control("ROLLBACK")
                .map_err(|e| format!("cannot roll back a failed intake insert: {e}"))?;
            conn.control(C::BEGIN)
                .map_err(|e| format!("cannot begin again after a failed intake insert: {e}"))
        }
    }
}

impl super::Store {
    /// [`Store::write_db`](super::Store::write_db) whose commit may wait for the next flushed
    /// one ([`Flush::Later`]): only for a processing step's bookkeeping that a power loss may
    /// take back (the step is then redone).
    pub(in crate::store) async fn write_db_later<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        use super::Backend;
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                writer
                    .write_flushed(Flush::Later, move |c: &Connection| job(c))
                    .await
            }
            Backend::Postgres { writer, .. } => {
                writer
                    .write_flushed(Flush::Later, move |c: &PgConn| job(c))
                    .await
            }
        }
    }

    /// [`Store::write_db_later`] from a blocking thread.
    pub(in crate::store) fn write_db_later_blocking<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    {
        use super::Backend;
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                writer.write_blocking_flushed(Flush::Later, move |c: &Connection| job(c))
            }
            Backend::Postgres { writer, .. } => {
                writer.write_blocking_flushed(Flush::Later, move |c: &PgConn| job(c))
            }
        }
    }
}

#[cfg(test)]
pub(in crate::store) mod tests {
    use super::*;
    use crate::store::testing::TempStore;
    use crate::store::Store;
    use rusqlite::params;

    /// Jobs the writer took so far, and jobs sent so far (taken or waiting), on either backend.
    pub(in crate::store) fn counts(store: &Store) -> (u64, u64) {
        match &store.backend {
            crate::store::Backend::Sqlite { writer, .. } => {
                (writer.counters.taken.load(Ordering::SeqCst), writer.sent())
            }
            crate::store::Backend::Postgres { writer, .. } => {
                (writer.counters.taken.load(Ordering::SeqCst), writer.sent())
            }
        }
    }

    fn temp_store() -> TempStore {
        crate::store::testing::sqlite()
    }

    fn insert(n: i64) -> impl FnOnce(&Connection) -> Result<i64> + Send + 'static {
        move |c| {
            c.execute("INSERT INTO t (n) VALUES (?1)", params![n])?;
            Ok(n)
        }
    }

    fn rows(store: &Store) -> Vec<i64> {
        let conn = store.conn().unwrap();
        let mut stmt = conn.prepare("SELECT n FROM t ORDER BY n").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    /// A store with a table `t (n UNIQUE)`, and (on the writer's connection) a deferred foreign
    /// key that only COMMIT checks: a row of `child` whose parent is missing fails the batch.
    fn store_with_tables() -> TempStore {
        let store = temp_store();
        store
            .conn()
            .unwrap()
            .execute_batch(
                "CREATE TABLE t (n INTEGER NOT NULL UNIQUE);
                 PRAGMA foreign_keys = ON;
                 CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TEMP TABLE child (
                     parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
            )
            .unwrap();
        store
    }

    /// Holds the writer inside a job of its own until the returned sender is used: writes sent
    /// meanwhile wait in the channel and make up the next batch, whatever the machine's speed.
    pub(in crate::store) async fn hold_writer(
        store: &Store,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<()>>,
    ) {
        let taken = || counts(store).0;
        let before = taken();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let s = store.clone();
        let gate = tokio::spawn(async move {
            s.write_db(move |_| {
                let _ = wait.recv();
                Ok(())
            })
            .await
        });
        // Taken off the channel: its batch is fixed, later writes wait for the next one.
        for _ in 0..10_000 {
            if taken() > before {
                return (release, gate);
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("the writer never took the holding job")
    }

    /// Waits (bounded) until `n` writes were sent since the store opened.
    pub(in crate::store) async fn wait_sent(store: &Store, n: u64) {
        for _ in 0..10_000 {
            if counts(store).1 >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("only {} of {n} writes sent", counts(store).1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_one_commit() {
        let store = store_with_tables();
        const N: i64 = 200;
        let (release, gate) = hold_writer(&store).await;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..N {
            let s = store.clone();
            tasks.spawn(async move { s.write(insert(n)).await });
        }
        wait_sent(&store, 1 + N as u64).await;
        release.send(()).unwrap();
        gate.await.unwrap().unwrap();
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        let stats = store.writer_stats();
        assert_eq!(
            (stats.commits, stats.writes),
            (2, 1 + N as u64),
            "the held job's batch, then one batch of all {N}"
        );
        assert_eq!(rows(&store), (0..N).collect::<Vec<_>>());
    }

    /// `PRAGMA synchronous` as a job sees it: 1 = NORMAL (no fsync at commit), 2 = FULL.
    fn synchronous(c: &dyn Db) -> Result<i64> {
        c.query_one("PRAGMA synchronous", &[])?.int(0)
    }

    /// A batch of only `Later` writes commits unflushed; one `Now` write among them flushes
    /// the whole batch; and every other commit of the connection is flushed again afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn only_a_batch_of_later_writes_commits_unflushed() {
        let store = temp_store();
        let full = |s: &Store| s.db(synchronous).unwrap();
        assert_eq!(full(&store), 2);
        assert_eq!(store.write_db_later(synchronous).await.unwrap(), 1);
        assert_eq!(full(&store), 2, "flushed again after the batch");
        assert_eq!(store.write_db(synchronous).await.unwrap(), 2);
        // A later write and a flushed one in one batch: the batch is flushed.
        let (release, gate) = hold_writer(&store).await;
        let sent = counts(&store).1;
        let (a, b) = (store.clone(), store.clone());
        let later = tokio::spawn(async move { a.write_db_later(synchronous).await });
        let now = tokio::spawn(async move { b.write_db(synchronous).await });
        wait_sent(&store, sent + 2).await;
        release.send(()).unwrap();
        gate.await.unwrap().unwrap();
        assert_eq!(later.await.unwrap().unwrap(), 2);
        assert_eq!(now.await.unwrap().unwrap(), 2);
        assert_eq!(full(&store), 2);
    }

    /// Webhooks waiting together are one batch and one merged insert: each is answered with
    /// its own outcome, in the order they were sent, after the one commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn webhooks_of_one_batch_are_queued_together_in_order() {
        let store = temp_store();
        const N: u64 = 40;
        let (release, gate) = hold_writer(&store).await;
        let mut answers = Vec::new();
        for n in 0..N {
            let s = store.clone();
            // Keys 10 and 11 are one key: the second is a replay (another body).
            let key = format!("k{}", if n == 11 { 10 } else { n });
            answers.push(tokio::spawn(async move {
                s.enqueue_batched("acme", "k", &key, &format!("{{\"n\":{n}}}"))
                    .await
            }));
            // Sent one after the other: the channel's order is the batch's.
            wait_sent(&store, 2 + n).await;
        }
        release.send(()).unwrap();
        gate.await.unwrap().unwrap();
        let mut ids = Vec::new();
        for (n, answer) in answers.into_iter().enumerate() {
            match answer.await.unwrap().unwrap() {
                Enqueued::New(id) => ids.push(id),
                Enqueued::Duplicate { id, same_payload } => {
                    assert_eq!((n, same_payload), (11, false));
                    assert_eq!(Some(&id), ids.last());
                }
            }
        }
        assert_eq!(ids.len() as u64, N - 1);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(store.writer_stats().commits, 2, "the held job's, then one");
        assert_eq!(
            store.event(ids[39 - 1]).unwrap().unwrap().payload,
            "{\"n\":39}"
        );
    }

    /// A batch of new webhooks wakes one waiting worker, once, before any of them is answered;
    /// a batch of duplicates wakes nobody.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_batch_of_new_webhooks_wakes_one_worker_once() {
        use std::future::Future;
        use std::task::{Context, Waker};
        let store = temp_store();
        let queued = store.queued();
        // Two idle workers waiting (registered before anything is sent).
        let mut first = Box::pin(queued.notified());
        let mut second = Box::pin(queued.notified());
        first.as_mut().enable();
        second.as_mut().enable();
        let woken = |n: &mut std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>>| {
            n.as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_ready()
        };

        let (release, gate) = hold_writer(&store).await;
        let mut answers = tokio::task::JoinSet::new();
        for n in 0..20 {
            let s = store.clone();
            answers
                .spawn(async move { s.enqueue_batched("acme", "k", &format!("k{n}"), "{}").await });
        }
        wait_sent(&store, 21).await;
        assert!(!woken(&mut first), "nothing committed yet");
        release.send(()).unwrap();
        gate.await.unwrap().unwrap();
        while let Some(r) = answers.join_next().await {
            assert!(matches!(r.unwrap().unwrap(), Enqueued::New(_)));
        }
        assert_eq!(store.writer_stats().commits, 2, "the held job's, then one");
        assert!(woken(&mut first), "the batch woke a worker");
        assert!(
            !woken(&mut second),
            "one wake-up for the batch, not one per webhook"
        );

        // Redeliveries queue nothing and wake nobody.
        for n in 0..3 {
            let again = store
                .enqueue_batched("acme", "k", &format!("k{n}"), "{}")
                .await
                .unwrap();
            assert!(matches!(again, Enqueued::Duplicate { .. }));
        }
        assert!(!woken(&mut second), "duplicates wake nobody");
    }

    /// A webhook the merged insert refuses (a trigger refuses its body, after the batch's event
    /// rows were inserted) fails alone: what the merged statements did is undone, each other
    /// webhook is then stored once, new, with its own body, and the batch's other write commits
    /// with them, in the one commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_webhook_the_merged_insert_refuses_fails_alone() {
        let store = store_with_tables();
        store
            .conn()
            .unwrap()
            .execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON event_bodies
                 WHEN NEW.body = 'refused' BEGIN SELECT RAISE(ABORT, 'refused by this test'); END;",
            )
            .unwrap();
        let (release, gate) = hold_writer(&store).await;
        let mut webhooks = Vec::new();
        for n in 0..6 {
            let s = store.clone();
            let body = match n {
                4 => "refused".to_string(),
                n => format!("{{\"n\":{n}}}"),
            };
            webhooks.push(tokio::spawn(async move {
                s.enqueue_batched("acme", "k", &format!("k{n}"), &body)
                    .await
            }));
            wait_sent(&store, 2 + n).await;
        }
        let write = tokio::spawn({
            let s = store.clone();
            async move { s.write(insert(1)).await }
        });
        wait_sent(&store, 8).await;
        release.send(()).unwrap();
        gate.await.unwrap().unwrap();
        for (n, answer) in webhooks.into_iter().enumerate() {
            match (n, answer.await.unwrap()) {
                (4, Err(StoreError::Sqlite(_))) => {}
                (n, Ok(Enqueued::New(id))) if n != 4 => assert_eq!(
                    store.event(id).unwrap().unwrap().payload,
                    format!("{{\"n\":{n}}}")
                ),
                (n, other) => panic!("webhook {n}: {other:?}"),
            }
        }
        assert_eq!(write.await.unwrap().unwrap(), 1);
        assert_eq!(rows(&store), vec![1]);
        let stored: (i64, i64) = store
            .conn()
            .unwrap()
            .query_row(
                "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM event_bodies)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(stored, (5, 5), "the refused webhook stored nothing");
        let stats = store.writer_stats();
        assert_eq!(
            (stats.commits, stats.failed_batches),
            (2, 0),
            "the held job's, then one"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_write_fails_alone() {
        let store = store_with_tables();
        store.write(insert(1)).await.unwrap();
        let (release, gate) = hold_writer(&store).await;
        let good = tokio::spawn({
            let s = store.clone();
            async move { s.write(insert(2)).await }
        });
        // Two statements, the second a duplicate: its first insert must be rolled back too.
        let bad = tokio::spawn({
            let s = store.clone();
            async move {
                s.write(|c| {
                    c.execute("INSERT INTO t (n) VALUES (3)", [])?;
                    c.execute("INSERT INTO t (n) VALUES (1)", [])?;
                    Ok(())
                })
                .await
            }
        });
        let panics = tokio::spawn({
            let s = store.clone();
            async move {
                s.write(|c| -> Result<()> {
                    c.execute("INSERT INTO t (n) VALUES (4)", [])?;
                    panic!("a job that panics (expected by this test)")
                })
                .await
            }
        });
        let after = tokio::spawn({
            let s = store.clone();
            async move { s.write(insert(5)).await }
        });
        wait_sent(&store, 6).await;
        release.send(()).unwrap();
        gate.await.unwrap().unwrap();
        assert_eq!(good.await.unwrap().unwrap(), 2);
        assert!(matches!(
            bad.await.unwrap(),
            Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(..)))
        ));
        assert!(matches!(panics.await.unwrap(), Err(StoreError::Panicked)));
        assert_eq!(after.await.unwrap().unwrap(), 5);
        assert_eq!(rows(&store), vec![1, 2, 5]);
        let stats = store.writer_stats();
        assert_eq!(
            (stats.commits, stats.failed_batches),
            (3, 0),
            "the four shared one commit"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_commit_fails_its_whole_batch_and_later_batches_commit() {
        let store = store_with_tables();
        let (release, gate) = hold_writer(&store).await;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..20 {
            let s = store.clone();
            tasks.spawn(async move { s.write(insert(n)).await });
        }
        // Passes its statement; COMMIT then finds the missing parent and fails.
        let orphan = tokio::spawn({
            let s = store.clone();
            async move {
                s.write(|c| {
                    c.execute("INSERT INTO child (parent) VALUES (42)", [])?;
                    Ok(())
                })
                .await
            }
        });
        wait_sent(&store, 22).await;
        release.send(()).unwrap();
        gate.await.unwrap().unwrap();
        assert!(matches!(orphan.await.unwrap(), Err(StoreError::Batch(_))));
        while let Some(r) = tasks.join_next().await {
            assert!(
                matches!(r.unwrap(), Err(StoreError::Batch(_))),
                "every write of the batch fails with it"
            );
        }
        assert!(rows(&store).is_empty(), "nothing of the failed batch");
        assert_eq!(store.writer_stats().failed_batches, 1);

        // The next batch starts clean.
        store.write(insert(100)).await.unwrap();
        assert_eq!(rows(&store), vec![100]);
        let orphans: i64 = store
            .conn()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM child", [], |r| r.get(0))
            .unwrap();
        assert_eq!(orphans, 0);
    }

    /// PostgreSQL defers a job's `SAVEPOINT`/`RELEASE`/`ROLLBACK TO` into the next statement's
    /// round trip: a write after a failed one in the same batch (its first statement new to the
    /// connection, so prepared first) still runs after the rollback, and commits; the failed
    /// one leaves nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_postgres_a_write_after_a_failed_one_in_its_batch_commits() {
        use crate::store::sql::args;
        let store = crate::store::testing::postgres();
        store
            .db(|db| db.execute("CREATE TABLE t (n BIGINT NOT NULL UNIQUE)", &[]))
            .unwrap();
        let insert = |n: i64| {
            move |db: &dyn crate::store::sql::Db| {
                db.execute("INSERT INTO t (n) VALUES (?1)", args![n])
            }
        };
        store.write_db(insert(1)).await.unwrap();
        let (release, gate) = hold_writer(&store).await;
        let bad = tokio::spawn({
            let s = store.clone();
            async move {
                s.write_db(|db| {
                    db.execute("INSERT INTO t (n) VALUES (?1)", args![3_i64])?;
                    db.execute("INSERT INTO t (n) VALUES (?1)", args![1_i64])
                })
                .await
            }
        });
        wait_sent(&store, 3).await;
        let good = tokio::spawn({
            let s = store.clone();
            async move {
                s.write_db(|db| {
                    let before =
                        db.query_one("SELECT COUNT(*) FROM t WHERE n > ?1", args![0_i64])?;
                    db.execute("INSERT INTO t (n) VALUES (?1)", args![2_i64])?;
                    before.int(0)
                })
                .await
            }
        });
        // In the batch after `good`, not racing it for the channel (it would be counted first).
        wait_sent(&store, 4).await;
        let after = tokio::spawn({
            let s = store.clone();
            async move { s.write_db(insert(4)).await }
        });
        wait_sent(&store, 5).await;
        release.send(()).unwrap();
        gate.await.unwrap().unwrap();
        assert!(matches!(bad.await.unwrap(), Err(StoreError::Postgres(_))));
        assert_eq!(
            good.await.unwrap().unwrap(),
            1,
            "it saw the table as before the failed write"
        );
        assert_eq!(after.await.unwrap().unwrap(), 1);
        let rows: Vec<i64> = store
            .db(|db| db.query("SELECT n FROM t ORDER BY n", &[]))
            .unwrap()
            .iter()
            .map(|r| r.int(0).unwrap())
            .collect();
        assert_eq!(rows, vec![1, 2, 4]);
        assert_eq!(store.writer_stats().failed_batches, 0);
    }

    /// A PostgreSQL batch opens at most [`PgConn::MAX_SAVEPOINTS`] job savepoints (more would
    /// overflow the server's per-transaction subtransaction cache and slow every session's
    /// snapshots): 100 writes waiting together commit in two batches, every one of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_postgres_a_batch_stays_within_the_subtransaction_cache() {
        use crate::store::sql::args;
        const N: i64 = 100;
        let store = crate::store::testing::postgres();
        store
            .db(|db| db.execute("CREATE TABLE t (n BIGINT NOT NULL UNIQUE)", &[]))
            .unwrap();
        let (release, gate) = hold_writer(&store).await;
        let commits = store.writer_stats().commits;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..N {
            let s = store.clone();
            tasks.spawn(async move {
                s.write_db(move |db| db.execute("INSERT INTO t (n) VALUES (?1)", args![n]))
                    .await
            });
        }
        wait_sent(&store, 1 + N as u64).await;
        release.send(()).unwrap();
        gate.await.unwrap().unwrap();
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.unwrap().unwrap(), 1);
        }
        let stats = store.writer_stats();
        assert_eq!(
            stats.commits - commits,
            3,
            "the held job's batch, then {} writes and the other {}",
            PgConn::MAX_SAVEPOINTS,
            N as usize - PgConn::MAX_SAVEPOINTS
        );
        let rows = store
            .db(|db| db.query_one("SELECT COUNT(*) FROM t", &[]))
            .unwrap()
            .int(0)
            .unwrap();
        assert_eq!(rows, N);
    }

    /// A PostgreSQL store with a table `t (n UNIQUE)` whose rows are checked at COMMIT by a
    /// deferred trigger that fails its first `failures` runs with SQLSTATE 40P01, as PostgreSQL
    /// fails one of two transactions whose deferred work deadlocks at COMMIT; the
    /// sequence `t_checks` counts its runs.
    pub(in crate::store) fn postgres_with_deadlocking_checks(failures: u32) -> Store {
        let store = crate::store::testing::postgres();
        let function = format!(
            "CREATE FUNCTION t_check() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                 IF nextval('t_checks') <= {failures} THEN
                     RAISE EXCEPTION 'deadlock detected (a test)' USING ERRCODE = '40P01';
                 END IF;
                 RETURN NULL;
             END $$"
        );
        store
            .db(|db| {
                db.execute("CREATE TABLE t (n BIGINT NOT NULL UNIQUE)", &[])?;
                db.execute("CREATE SEQUENCE t_checks", &[])?;
                db.execute(&function, &[])?;
                db.execute(
                    "CREATE CONSTRAINT TRIGGER t_check AFTER INSERT ON t
                     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION t_check()",
                    &[],
                )
            })
            .unwrap();
        store
    }

    /// What a PostgreSQL store holds: the rows of `t`, the runs of its deferred check, the
    /// events queued.
    fn postgres_holds(store: &Store) -> (Vec<i64>, i64, i64) {
        store
            .db(|db| {
                let t = db.query("SELECT n FROM t ORDER BY n", &[])?;
                let t = t.iter().map(|r| r.int(0)).collect::<Result<_>>()?;
                let checks = db.query_one(
                    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM t_checks",
                    &[],
                )?;
                let events = db.query_one("SELECT COUNT(*) FROM events", &[])?;
                Ok((t, checks.int(0)?, events.int(0)?))
            })
            .unwrap()
    }

    /// A batch of webhooks and writes sent while the writer is held; `t` gets 1 and 3, and a
    /// write of 2 then 1 fails alone. The webhooks' answers, then the three writes'.
    async fn deadlock_batch(
        store: &Store,
    ) -> (Vec<Result<Enqueued>>, Result<()>, Result<()>, Result<()>) {
        use crate::store::sql::args;
        let insert = |ns: &'static [i64]| {
            let s = store.clone();
            async move {
                s.write_db(move |db| {
                    for &n in ns {
                        db.execute("INSERT INTO t (n) VALUES (?1)", args![n])?;
                    }
                    Ok(())
                })
                .await
            }
        };
        let (release, gate) = hold_writer(store).await;
        let sent = counts(store).1;
        let mut webhooks = Vec::new();
        for n in 0..5 {
            let s = store.clone();
            webhooks.push(tokio::spawn(async move {
                s.enqueue_batched("acme", "k", &format!("k{n}"), "{}").await
            }));
        }
        wait_sent(store, sent + 5).await;
        // One after the other: the batch runs them in this order.
        let first = tokio::spawn(insert(&[1]));
        wait_sent(store, sent + 6).await;
        let failing = tokio::spawn(insert(&[2, 1]));
        wait_sent(store, sent + 7).await;
        let last = tokio::spawn(insert(&[3]));
        wait_sent(store, sent + 8).await;
        release.send(()).unwrap();
        gate.await.unwrap().unwrap();
        let mut answers = Vec::new();
        for webhook in webhooks {
            answers.push(webhook.await.unwrap());
        }
        let first = first.await.unwrap();
        let failing = failing.await.unwrap();
        (answers, first, failing, last.await.unwrap())
    }

    /// A deadlock in a batch's deferred work at COMMIT is tried again alone: the batch
    /// commits, every webhook is stored once and answered, every other job gets its own
    /// answer, and no job ran twice (the check ran once failing, then once per row kept).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_postgres_a_deadlock_at_commit_does_not_fail_the_batch() {
        let store = postgres_with_deadlocking_checks(1);
        let commits = store.writer_stats().commits;
        let (webhooks, first, failing, last) = deadlock_batch(&store).await;
        for answer in webhooks {
            assert!(matches!(answer, Ok(Enqueued::New(_))), "{answer:?}");
        }
        first.unwrap();
        assert!(
            matches!(failing, Err(StoreError::Postgres(_))),
            "{failing:?}"
        );
        last.unwrap();
        assert_eq!(postgres_holds(&store), (vec![1, 3], 1 + 2, 5));
        let stats = store.writer_stats();
        assert_eq!((stats.commits - commits, stats.failed_batches), (2, 0));
    }

    /// A deadlock that comes back at every attempt fails the batch after the last one, as any
    /// failed commit: nothing of it stored, every job told; the next batch commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_postgres_a_deadlock_at_every_commit_attempt_fails_the_batch() {
        use crate::store::pg::COMMIT_ATTEMPTS;
        let store = postgres_with_deadlocking_checks(COMMIT_ATTEMPTS);
        let (webhooks, first, failing, last) = deadlock_batch(&store).await;
        for answer in webhooks {
            assert!(matches!(answer, Err(StoreError::Batch(_))), "{answer:?}");
        }
        assert!(matches!(first, Err(StoreError::Batch(_))), "{first:?}");
        assert!(
            matches!(failing, Err(StoreError::Postgres(_))),
            "{failing:?}"
        );
        assert!(matches!(last, Err(StoreError::Batch(_))), "{last:?}");
        let checks = i64::from(COMMIT_ATTEMPTS);
        assert_eq!(postgres_holds(&store), (vec![], checks, 0));
        assert_eq!(store.writer_stats().failed_batches, 1);

        let (webhooks, first, _, last) = deadlock_batch(&store).await;
        assert!(webhooks.iter().all(|a| matches!(a, Ok(Enqueued::New(_)))));
        first.unwrap();
        last.unwrap();
        assert_eq!(postgres_holds(&store), (vec![1, 3], checks + 2, 5));
    }

    /// Figures, not a pass/fail test (`cargo test --release -p switchyard --lib writer_figures
    /// -- --ignored --nocapture`): rows/s of N concurrent writes through the writer vs one
    /// commit each on the same disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn writer_figures() {
        const N: i64 = 5_000;
        let store = store_with_tables();
        let started = std::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..N {
            let s = store.clone();
            tasks.spawn(async move { s.write(insert(n)).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        let grouped = started.elapsed();
        let stats = store.writer_stats();
        let started = std::time::Instant::now();
        for n in N..N + 1000 {
            store
                .conn()
                .unwrap()
                .execute("INSERT INTO t (n) VALUES (?1)", params![n])
                .unwrap();
        }
        let single = started.elapsed();
        eprintln!(
            "figure: {N} concurrent writes through the writer: {:.0} rows/s ({} commits, mean batch {:.1}); \
             one commit each: {:.0} rows/s",
            N as f64 / grouped.as_secs_f64(),
            stats.commits,
            stats.writes as f64 / stats.commits.max(1) as f64,
            1000.0 / single.as_secs_f64()
        );
    }
}
