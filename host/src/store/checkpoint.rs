//! SQLite's WAL checkpoints: the copying done beside the group commit's writer, the WAL still
//! starting over.
//!
//! A checkpoint copies the pages the WAL holds into the database file and fsyncs that file. Run
//! by the writer (SQLite's autocheckpoint, inside the `COMMIT` that takes the WAL past its bound)
//! it holds up every request waiting for the next batch: with 8 MiB of WAL, tens of
//! milliseconds of copying and flushing, the tail of the ack latency. A passive checkpoint on a
//! connection of its own runs beside the writer, but alone it never lets the WAL start over
//! (the next write transaction starts it over only if every frame is in the database file, and
//! a writer that never pauses always adds frames meanwhile: the WAL grew past 100 MB). So the
//! two share the work:
//!
//! - after a batch whose commit took the WAL past [`START_BYTES`], the writer asks the
//!   checkpointer thread (`switchyard-checkpoint`) for a pass: passive checkpoints on its
//!   own connection, copying what is committed while the next batches go on, the first over
//!   the whole WAL, each next over what was committed during the one before, until one finds
//!   nothing left or [`CATCH_UP`] were made ([`catch_up`]);
//! - after the first batch once the pass ended, the writer copies the rest itself (a passive
//!   checkpoint on its connection, once that batch was answered): the frames committed since
//!   the pass's last checkpoint, if they are at most [`TAIL_BYTES`], else it asks for another
//!   pass. With every frame copied, its next write transaction starts the WAL over. This copy
//!   stalls the group commit (requests wait behind it): up to [`TAIL_BYTES`] copied and the
//!   database file's fsync when the pass made one checkpoint (with SQLite's fsync of the WAL
//!   before it, 1.8 ms at the median on a loaded machine, at 2,000 webhooks/s; that one is
//!   skipped after a flushed commit, [`Checkpoints::copy_tail`]); after a pass that caught up,
//!   what a few batches added, or nothing;
//! - if passes cannot keep up, the writer copies everything once the WAL is past
//!   [`HARD_BYTES`], after waiting for a pass still running (a slow disk) to end: the WAL stays
//!   bounded, as with SQLite's autocheckpoint, and like it these checkpoints are passive, so a
//!   reader that still needs frames keeps them in the WAL.
//!
//! A page that many batches change (an index leaf) still reaches the file about once per
//! [`START_BYTES`] of WAL. Durability does not change: a commit is durable once its WAL frames
//! are fsynced (`synchronous=FULL`), whichever connection copies them later; each checkpoint
//! fsyncs the WAL before copying, SQLite fsyncs the database file only after one that reached
//! the WAL's end (the writer's copy of the tail, or a pass's last checkpoint that caught up), and
//! the WAL starts over only after that fsync; after a kill -9 SQLite recovers from the WAL as
//! before. So that the writer's fsync does not flush the pass's megabytes, the checkpointer
//! fsyncs the database file itself after each pass that copied something. A reader that still needs frames keeps them from being
//! copied (on either side) and the WAL from starting over; the writer then asks for the next
//! pass once another [`TAIL_BYTES`] were committed.
//!
//! The writer learns how many frames the WAL holds from SQLite's WAL hook, called at each
//! commit on the committing thread (it replaces SQLite's autocheckpoint on that connection).
//! The few commits on that connection outside the writer thread (retention's incremental
//! vacuum, `Store::transaction`) call [`after_commit_here`], which copies the WAL past
//! [`START_BYTES`] itself, as the autocheckpoint did.

use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;
#[cfg(test)]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::{lock, Result};

/// WAL bytes after which the writer asks for a pass. Each pass ends with the writer's check of
/// the tail, one stall of the group commit (a few frames copied and one or two fsyncs, or none
/// when the pass caught up): at 2,000 webhooks/s the WAL grew 8 MiB about every 150 ms.
const START_BYTES: i64 = 16 << 20;

/// Checkpoints a pass makes at most after its first, each over what was committed during the
/// one before ([`catch_up`]).
const CATCH_UP: usize = 8;

/// WAL bytes committed during a pass that the writer copies itself; past this, another pass.
const TAIL_BYTES: i64 = 1 << 20;

/// WAL bytes past which the writer copies whatever the passes left, itself.
const HARD_BYTES: i64 = 4 * START_BYTES;

/// The WAL's bounds in bytes: the store's constants, smaller in tests (so that a test writes a
/// few MiB, not hundreds, to see the WAL start over many times).
#[derive(Debug, Clone, Copy)]
pub(in crate::store) struct Bounds {
    /// Asks for a pass ([`START_BYTES`]).
    pub(in crate::store) start: i64,
    /// Copied by the writer after a pass ([`TAIL_BYTES`]).
    pub(in crate::store) tail: i64,
    /// Copied by the writer whatever the passes did ([`HARD_BYTES`]).
    pub(in crate::store) hard: i64,
}

impl Bounds {
    /// The store's.
    pub(in crate::store) const STORE: Bounds = Bounds {
        start: START_BYTES,
        tail: TAIL_BYTES,
        hard: HARD_BYTES,
    };
}

/// What the checkpointer reports while a pass is asked for or running.
const PENDING: i64 = -1;

/// What it reports after a pass that failed (not a busy one, which copied nothing: `0`).
const FAILED: i64 = -2;

thread_local! {
    /// Frames in the WAL after this thread's last commit on the writer's connection.
    static FRAMES: Cell<i64> = const { Cell::new(0) };
}

/// SQLite's WAL hook on the writer's connection: remembers the frames after each commit.
fn count_frames(_: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    FRAMES.with(|f| f.set(i64::from(frames)));
    Ok(())
}

/// Checkpoints done so far, beside the writer and by it (tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub(in crate::store) struct Counts {
    /// Passes on the checkpointer's connection.
    pub(in crate::store) passes: AtomicU64,
    /// The writer's copies of what a pass left (the tail).
    pub(in crate::store) by_writer: AtomicU64,
    /// The writer's copies past the hard bound (the passes could not keep up).
    pub(in crate::store) forced: AtomicU64,
    /// The writer's copies after a flushed commit, without SQLite's fsync of the WAL.
    pub(in crate::store) unsynced_wal: AtomicU64,
}

/// The writer's side of the checkpoints (used from the writer thread only).
pub(in crate::store) struct Checkpoints {
    /// [`START_BYTES`], [`TAIL_BYTES`] and [`HARD_BYTES`] in frames of this database's pages.
    start: i64,
    tail: i64,
    hard: i64,
    /// Asks the checkpointer for a pass.
    ask: SyncSender<()>,
    /// Told after each pass, once its result is in `copied`.
    done: Receiver<()>,
    /// The database file, flushed after the writer's own copy ([`Checkpoints::copy_tail`]).
    file: std::path::PathBuf,
    /// Frames the last pass left copied; [`PENDING`] while one is asked for or running.
    copied: Arc<AtomicI64>,
    /// Frames at which the next pass is asked for: `start`, or a tail further if a reader kept
    /// the WAL from starting over after the last one.
    next: Cell<i64>,
    /// A pass was asked for and its result not taken yet.
    passing: Cell<bool>,
    /// Frames in the WAL after the last batch: the next one's appended frames are counted from
    /// it (from 0 once the WAL started over).
    seen: Cell<i64>,
    #[cfg(test)]
    counts: Arc<Counts>,
}

impl Checkpoints {
    /// Makes `writer` (the store's read-write connection to `path`) count its WAL frames, and
    /// starts the checkpointer thread on a connection of its own. The thread ends once the
    /// returned value is dropped (with the writer thread).
    pub(in crate::store) fn start(
        path: &Path,
        writer: &Connection,
        bounds: Bounds,
    ) -> Result<Checkpoints> {
        let page: i64 = writer.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let frames = |bytes: i64| bytes / page.max(512);
        let conn = Connection::open(path)?;
        let file = path.to_path_buf();
        let own_file = file.clone();
        // Its checkpoints fsync the WAL before copying (and the database file after, if they
        // reached the WAL's end).
        conn.pragma_update(None, "synchronous", "FULL")?;
        let (ask, asked) = sync_channel::<()>(1);
        let (ended, done) = sync_channel::<()>(1);
        let copied = Arc::new(AtomicI64::new(PENDING));
        let reported = Arc::clone(&copied);
        #[cfg(test)]
        let counts = Arc::new(Counts::default());
        #[cfg(test)]
        let passes = Arc::clone(&counts);
        std::thread::Builder::new()
            .name("switchyard-checkpoint".into())
            .spawn(move || {
                // Warned once per run of failures: a persistent error (EIO, ENOSPC) fails every
                // pass, one per tail of WAL.
                let mut failing = false;
                while asked.recv().is_ok() {
                    let frames = match catch_up(&conn, &file) {
                        Ok(frames) => {
                            if std::mem::take(&mut failing) {
                                tracing::info!("WAL checkpoints succeed again");
                            }
                            frames
                        }
                        Err(e) => {
                            // The WAL keeps every commit; the writer asks again after another
                            // tail (or copies itself past the hard bound).
                            if !std::mem::replace(&mut failing, true) {
                                tracing::warn!(error = %e, "WAL checkpoint failed");
                            }
                            FAILED
                        }
                    };
                    #[cfg(test)]
                    passes.passes.fetch_add(1, Ordering::Relaxed);
                    reported.store(frames, Ordering::Release);
                    // Full: the writer did not wait, and one wake-up is enough.
                    let _ = ended.try_send(());
                }
            })?;
        writer.wal_hook(Some(count_frames));
        Ok(Checkpoints {
            start: frames(bounds.start),
            tail: frames(bounds.tail),
            hard: frames(bounds.hard),
            next: Cell::new(frames(bounds.start)),
            ask,
            done,
            file: own_file,
            copied,
            passing: Cell::new(false),
            seen: Cell::new(0),
            #[cfg(test)]
            counts,
        })
    }

    /// After each batch, answered, on the writer thread: asks for a pass, or copies the tail of
    /// the last one on `conn`, the writer's connection; `flushed`: every commit in the WAL is on
    /// disk. Returns the frames the batch's commit appended to the WAL (the store's
    /// `wal_frames`: what a commit costs in pages written).
    pub(in crate::store) fn after_batch(&self, conn: &Mutex<Connection>, flushed: bool) -> u64 {
        let frames = FRAMES.with(Cell::get);
        let seen = self.seen.replace(frames);
        // Fewer than before: the WAL started over at this batch's commit.
        let appended = u64::try_from(if frames >= seen {
            frames - seen
        } else {
            frames
        })
        .unwrap_or_default();
        self.checkpoint(conn, frames, flushed);
        appended
    }

    /// [`Checkpoints::after_batch`]'s checkpoint work, `frames` in the WAL.
    fn checkpoint(&self, conn: &Mutex<Connection>, frames: i64, flushed: bool) {
        if frames >= self.hard && self.passing.get() {
            // A pass runs long and the WAL is past its bound: the writer copies the rest as soon
            // as the pass ended (SQLite lets one checkpoint run at a time), as SQLite's
            // autocheckpoint would, inside its commit.
            self.wait_for_pass();
        }
        let copied = self.pass_ended();
        if frames < self.start {
            // Under the bound, or the WAL started over since.
            self.next.set(self.start);
            return;
        }
        match copied {
            // A pass is running (the WAL grows until it ends), or none is due yet.
            None if self.passing.get() || frames < self.next.get() => {}
            None => self.ask(),
            Some(copied)
                if copied != FAILED && frames - copied <= self.tail || frames >= self.hard =>
            {
                // Every frame copied: the next write transaction starts the WAL over, unless
                // a reader still needs some; then the next pass waits for a tail's more.
                if let Err(e) = self.copy_tail(&lock(conn), flushed, copied) {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
                #[cfg(test)]
                {
                    let by = if frames >= self.hard {
                        &self.counts.forced
                    } else {
                        &self.counts.by_writer
                    };
                    by.fetch_add(1, Ordering::Relaxed);
                }
                self.next.set(frames + self.tail);
            }
            // The pass failed, or left more than a tail (a reader still needed frames, or the
            // batches outran it): the next pass once another tail was committed, not after the
            // very next batch.
            Some(_) => self.next.set(frames + self.tail),
        }
    }

    /// The writer's copy of what the pass left (`copied`: the frames the pass left in the file,
    /// flushed there), on its connection `conn`. The group commit waits meanwhile. When every
    /// commit in the WAL is already on disk (`flushed`), SQLite's fsync of the WAL before copying
    /// would only wait for the disk again (a flush of the device's cache even with nothing to
    /// write): the copy then runs with `synchronous=OFF`, and the database file is flushed here
    /// afterwards, as SQLite would, when the copy reached the WAL's end and added frames; before
    /// the writer's next transaction, which may start the WAL over.
    fn copy_tail(&self, conn: &Connection, flushed: bool, copied: i64) -> Result<()> {
        if !flushed {
            return passive(conn).map(drop);
        }
        conn.prepare_cached("PRAGMA synchronous = OFF")?
            .execute([])?;
        let result = passive_frames(conn);
        if let Err(e) = conn
            .prepare_cached("PRAGMA synchronous = FULL")
            .and_then(|mut s| s.execute([]))
        {
            // Every later commit would go unflushed (the writer's commit_flushed does the same).
            tracing::error!(error = %e, "cannot make the store's commits flushed again; aborting");
            std::process::abort();
        }
        let (log, now) = result?;
        if now == log && now > copied.max(0) {
            // SQLite already counts these frames as copied: the next write transaction would
            // start the WAL over on a file not on disk. A restart recovers from the WAL instead.
            if let Err(e) = std::fs::File::open(&self.file).and_then(|f| f.sync_data()) {
                tracing::error!(error = %e, "cannot flush the database file after a WAL copy; aborting");
                std::process::abort();
            }
        }
        #[cfg(test)]
        self.counts.unsynced_wal.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// What the checkpoints did so far.
    #[cfg(test)]
    pub(in crate::store) fn counts(&self) -> Arc<Counts> {
        Arc::clone(&self.counts)
    }

    /// The frames the pass asked for left copied, once it ended.
    fn pass_ended(&self) -> Option<i64> {
        if !self.passing.get() {
            return None;
        }
        let copied = self.copied.load(Ordering::Acquire);
        (copied != PENDING).then(|| {
            self.passing.set(false);
            copied
        })
    }

    /// Waits until the pass asked for ended.
    fn wait_for_pass(&self) {
        // A wake-up may be a previous pass's, sent after the writer took its result: look again.
        while self.copied.load(Ordering::Acquire) == PENDING {
            if self.done.recv().is_err() {
                // The checkpointer is gone (it panicked): the writer copies alone.
                self.copied.store(FAILED, Ordering::Release);
            }
        }
    }

    fn ask(&self) {
        self.copied.store(PENDING, Ordering::Release);
        self.passing.set(true);
        // Room for one, and asked only when no pass is pending. Without the thread (it cannot
        // end before this side is dropped) nothing is copied beside: the writer copies past
        // `hard` itself.
        if self.ask.try_send(()).is_err() {
            self.copied.store(FAILED, Ordering::Release);
        }
    }
}

/// After a commit on the writer's connection `conn` outside the writer thread (which checkpoints
/// only after its own batches): copies the WAL itself, passively, once it is past
/// [`START_BYTES`], so that such commits alone (a long retention pass) do not grow it unbounded.
pub(in crate::store) fn after_commit_here(conn: &Connection) {
    // The hook set this thread's count at the commit; taken, so that a later call with no
    // commit between does not copy again.
    let frames = FRAMES.with(|f| f.replace(0));
    if frames == 0 {
        return;
    }
    let copy = || -> Result<()> {
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        if frames * page >= START_BYTES {
            passive(conn)?;
        }
        Ok(())
    };
    if let Err(e) = copy() {
        tracing::warn!(error = %e, "WAL checkpoint failed");
    }
}

/// A pass of the checkpointer on `conn`, its connection to the database `file`: passive
/// checkpoints, the first over what the WAL holds, each next over what the writer committed
/// during the one before (a shorter copy each time), until one finds nothing left (the whole
/// WAL is then in the file, fsynced by SQLite, and the writer's next transaction starts it over
/// with nothing for the writer to copy in line with waiting requests), a reader keeps frames, or
/// [`CATCH_UP`] more were made (the writer outran them; it copies the rest itself). SQLite
/// fsyncs the database file only after a checkpoint that reached the WAL's end: each one that
/// copied is flushed here, so that the writer's own copy flushes only its tail (any descriptor
/// flushes the file's pages). Returns the last checkpoint's frames in the file.
fn catch_up(conn: &Connection, file: &Path) -> Result<i64> {
    catch_up_with(conn, file, &mut || {})
}

/// [`catch_up`], calling `between` after each checkpoint that another follows (tests: a
/// commit during the pass).
fn catch_up_with(conn: &Connection, file: &Path, between: &mut dyn FnMut()) -> Result<i64> {
    let mut copied = 0;
    for n in 0..=CATCH_UP {
        if n > 0 {
            between();
        }
        let (log, now) = passive_frames(conn)?;
        if now > copied {
            std::fs::File::open(file)?.sync_data()?;
        }
        // No progress (everything copied, or the WAL started over meanwhile), or a reader
        // needs the rest: another pass would copy nothing.
        if now <= copied || log > now {
            return Ok(now);
        }
        copied = now;
    }
    Ok(copied)
}

/// A passive checkpoint on `conn`; returns the frames of the WAL in the database file since it
/// last started over (all of them unless a reader needed some; none if another checkpoint was
/// running, which SQLite reports as -1).
fn passive(conn: &Connection) -> Result<i64> {
    Ok(passive_frames(conn)?.1)
}

/// [`passive`], with the frames the WAL held when it began first.
fn passive_frames(conn: &Connection) -> Result<(i64, i64)> {
    let (log, copied): (i64, i64) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })?;
    Ok((log.max(0), copied.max(0)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::store::Store;

    /// The WAL file's size, and how many times it started over (its header's checkpoint
    /// sequence number, big-endian at byte 12): its length and 32-byte header only, not the
    /// whole file.
    fn wal(path: &Path) -> (u64, u32) {
        use std::io::Read;
        let wal = path.with_extension("db-wal");
        let len = std::fs::metadata(&wal).map_or(0, |m| m.len());
        let mut header = [0u8; 32];
        let restarts = std::fs::File::open(&wal)
            .and_then(|mut f| f.read_exact(&mut header))
            .map_or(0, |()| {
                u32::from_be_bytes([header[12], header[13], header[14], header[15]])
            });
        (len, restarts)
    }

    impl Store {
        fn checkpoint_counts(&self) -> Arc<Counts> {
            match &self.backend {
                crate::store::Backend::Sqlite { checkpoints, .. } => Arc::clone(checkpoints),
                crate::store::Backend::Postgres { .. } => unreachable!("a SQLite store"),
            }
        }
    }

    /// A store with `bounds` in a fresh directory (kept while the guard lives), its database's
    /// path, and one table `t (n, pad)` to fill.
    async fn store_with_table(bounds: Bounds) -> (tempfile::TempDir, std::path::PathBuf, Store) {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("switchyard.db");
        let store = Store::open_sqlite(&path, bounds).unwrap();
        store
            .write(|c| {
                c.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB NOT NULL)")?;
                Ok(())
            })
            .await
            .unwrap();
        (dir, path, store)
    }

    /// Under writes that never pause, the copying runs beside the writer (passes on the
    /// checkpointer's connection), yet the WAL starts over again and again and stays bounded:
    /// the writer copies only what a pass left, not everything past the hard bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_wal_is_copied_beside_the_writer_and_starts_over_under_steady_writes() {
        const ROW: usize = 4000;
        const WRITERS: usize = 16;
        // Small bounds, so the WAL starts over many times in a few MiB.
        let bounds = Bounds {
            start: 512 << 10,
            tail: 256 << 10,
            hard: 2 << 20,
        };
        let (_dir, path, store) = store_with_table(bounds).await;
        // Three times past the hard bound and a pass, from writers that keep the writer busy
        // throughout (each row is at least ROW bytes of WAL).
        let written = 3 * (bounds.hard + bounds.start) as usize;
        let rows = (written / ROW).div_ceil(WRITERS);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..WRITERS {
            let s = store.clone();
            let path = path.clone();
            tasks.spawn(async move {
                let mut largest = 0;
                for _ in 0..rows {
                    s.write(|c| {
                        c.execute("INSERT INTO t (pad) VALUES (zeroblob(?1))", [ROW as i64])?;
                        Ok(())
                    })
                    .await
                    .unwrap();
                    largest = largest.max(wal(&path).0);
                }
                largest
            });
        }
        let mut largest = 0;
        while let Some(r) = tasks.join_next().await {
            largest = largest.max(r.unwrap());
        }
        // Every frame the commits appended is counted once, across the WAL's restarts (each
        // row is at least ROW bytes of WAL, and at most a few pages more).
        let frame_bytes =
            store.writer_stats().wal_frames as usize * crate::store::PAGE_SIZE as usize;
        let rows_bytes = rows * WRITERS * ROW;
        assert!(
            (rows_bytes..4 * rows_bytes).contains(&frame_bytes),
            "{frame_bytes} bytes of frames counted for {rows_bytes} bytes of rows"
        );
        let counts = store.checkpoint_counts();
        assert!(
            counts.passes.load(Ordering::Relaxed) >= 2,
            "copied beside the writer: {counts:?}"
        );
        assert!(
            counts.by_writer.load(Ordering::Relaxed) >= 2,
            "the writer copied the passes' tails: {counts:?}"
        );
        // Every write here is flushed: the writer's copies skip SQLite's fsync of the WAL, and
        // leave its connection flushing its commits again.
        assert_eq!(
            counts.unsynced_wal.load(Ordering::Relaxed),
            counts.by_writer.load(Ordering::Relaxed) + counts.forced.load(Ordering::Relaxed),
            "{counts:?}"
        );
        let synchronous: i64 = store
            .conn()
            .unwrap()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "FULL again");
        // It starts over about once per start bound's worth of WAL (plus a pass's tail): ~7
        // times here on a quiet machine, fewer when the passes beside the writer are starved
        // of CPU (6 seen on a loaded one), and more often than at the hard bound alone (3).
        let (_, restarts) = wal(&path);
        assert!(
            restarts as usize > written / (bounds.hard + bounds.start) as usize,
            "the WAL started over {restarts} times for {written} bytes: {counts:?}"
        );
        // The WAL's own bound, plus the batches committed meanwhile.
        assert!(
            largest <= (bounds.hard + bounds.start) as u64,
            "{largest} bytes"
        );
        let kept: i64 = store
            .conn()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept as usize, rows * WRITERS, "every write kept");
    }

    /// A reader that keeps the WAL's frames from being copied makes each pass leave more than a
    /// tail: the next pass waits for another tail of WAL, not the very next batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_kept_back_by_a_reader_is_asked_again_only_a_tail_later() {
        const ROW: usize = 4000;
        const ROWS: usize = 120;
        let bounds = Bounds {
            start: 256 << 10,
            tail: 64 << 10,
            hard: 4 << 20,
        };
        let (_dir, path, store) = store_with_table(bounds).await;
        let reader = rusqlite::Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        // One row a batch, each more than ROW bytes of WAL, all under the hard bound.
        for _ in 0..ROWS {
            store
                .write(|c| {
                    c.execute("INSERT INTO t (pad) VALUES (zeroblob(?1))", [ROW as i64])?;
                    Ok(())
                })
                .await
                .unwrap();
        }
        let (len, _) = wal(&path);
        let counts = store.checkpoint_counts();
        let passes = counts.passes.load(Ordering::Relaxed);
        assert!(passes >= 1, "{counts:?}");
        // One pass per tail past the start, and the one running at the end; not one a batch.
        let most = (len as i64 - bounds.start) / bounds.tail + 2;
        assert!(
            passes as i64 <= most,
            "{passes} passes for {len} bytes of WAL: {counts:?}"
        );
        reader.execute_batch("COMMIT").unwrap();
    }

    /// What the writer commits during a pass's first checkpoint is copied by the pass's next
    /// one, not left for the writer: the writer's next transaction starts the WAL over without
    /// the writer copying anything (its copy stalls the group commit).
    #[test]
    fn a_pass_copies_what_was_committed_during_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("switchyard.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (pad BLOB NOT NULL)",
            )
            .unwrap();
        let insert = |rows: i64| {
            writer
                .execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                     INSERT INTO t (pad) SELECT zeroblob(1000) FROM n",
                    [rows],
                )
                .unwrap();
        };
        insert(200);
        // A batch in flight while the pass begins, committed after its first checkpoint.
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        insert(20);
        let commit = || {
            if !writer.is_autocommit() {
                writer.execute_batch("COMMIT").unwrap();
            }
        };
        let checkpointer = Connection::open(&path).unwrap();
        catch_up_with(&checkpointer, &path, &mut || commit()).unwrap();
        commit();
        let (_, restarts) = wal(&path);
        insert(1);
        assert_eq!(
            wal(&path).1,
            restarts + 1,
            "the writer's next transaction started the WAL over"
        );
    }

    /// Commits outside the writer thread (retention's vacuum) copy the WAL past its bound
    /// themselves: the writer's checkpoints never see them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_outside_the_writer_copy_the_wal_past_its_bound() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("switchyard.db");
        let store = Store::open(&path).unwrap();
        let before = wal(&path).1;
        // About twice START_BYTES of WAL, in transactions off the writer thread (each of
        // 1,100 rows of 2,000 bytes).
        store
            .transaction(|db| db.execute("CREATE TABLE t (pad BLOB NOT NULL)", &[]))
            .unwrap();
        for _ in 0..=2 * START_BYTES / (1100 * 2000) {
            store
                .transaction(|db| {
                    db.execute(
                        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n                          WHERE i < 1100) INSERT INTO t (pad) SELECT zeroblob(2000) FROM n",
                        &[],
                    )
                })
                .unwrap();
        }
        assert!(
            wal(&path).1 > before,
            "the WAL started over: {:?}",
            wal(&path)
        );
        assert!(wal(&path).0 < 2 * START_BYTES as u64, "{:?}", wal(&path));
    }
}
