//! Process runs and the leases they hold. Every start of the host registers a run (`runs`: id,
//! node, pid, started, heartbeat, ended); a claimed event's lease names its run (`events.lease_run`)
//! and lasts `worker.lease_secs`, renewed by the run's heartbeat while the step runs, so a lease
//! outlives any step of a live run and expires within seconds of its run's death.
//!
//! A run is known dead when it ended, when its heartbeat is older than a lease, or — on the same
//! machine — when its lock file (`<data dir>/runs/<id>.lock`, flocked for the run's life) can be
//! locked by someone else: the kernel dropped the lock with the process. So a host restarted after
//! kill -9 takes back its previous run's events at once, and with several hosts on one database
//! (PostgreSQL) a dead host's events move on after at most one lease. Taking events back is
//! recorded in their history (`abandoned`) and reported to the caller, which logs and counts it.
//! An event taken or handed back keeps its due time (`next_attempt_at`), so it is claimed again
//! before the events received after it.
//!
//! **What a run renews.** The heartbeat renews only the events this process knows its run holds
//! ([`Held`]: claimed through this store, and their outcome not recorded yet), not every event
//! leased to the run: a claim committed whose answer was lost (the connection dropped after
//! the server's COMMIT) leases events to the run that no worker has. Their lease then runs out,
//! and the run's own sweep ([`Store::take_back_expired`]) takes them back like another run's,
//! while the events it holds stay its own (their outcomes are fenced by run and claim).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::queue::{id_in_json, record_attempt, AttemptOutcome};
use super::sql::{args, Db, Value};
use super::{now_ms, Event, Result, Store, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    ended_at INTEGER,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS events_by_lease ON events (lease_run) WHERE lease_run IS NOT NULL;
"#;

/// The events each run of this process holds: `(id → claim_seq)` per run, added when a claim
/// returns and removed when the claim's outcome is recorded (or found fenced off), or when a
/// heartbeat finds the event no longer running under the run. A claim whose answer never
/// came is not here: the heartbeat leaves its lease to run out (see the module's doc).
#[derive(Default)]
pub(in crate::store) struct Held {
    runs: Mutex<HashMap<String, HashMap<i64, i64>>>,
}

impl Held {
    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<i64, i64>>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `events` were claimed for `run` (their claim committed and answered).
    pub(in crate::store) fn claimed(&self, run: &str, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let mut runs = self.runs();
        let held = runs.entry(run.to_owned()).or_default();
        held.extend(events.iter().map(|e| (e.id, e.claim_seq)));
    }

    /// The outcome of claim `claim_seq` of event `id` by `run` is recorded, or that claim no
    /// longer holds it. A later claim of the same event by the run stays held.
    pub(in crate::store) fn ended(&self, run: &str, id: i64, claim_seq: i64) {
        let mut runs = self.runs();
        if let Some(held) = runs.get_mut(run) {
            if held.get(&id) == Some(&claim_seq) {
                held.remove(&id);
            }
            if held.is_empty() {
                runs.remove(run);
            }
        }
    }

    /// What `run` holds now: `(id, claim_seq)`.
    fn of(&self, run: &str) -> Vec<(i64, i64)> {
        self.runs()
            .get(run)
            .map(|held| held.iter().map(|(id, seq)| (*id, *seq)).collect())
            .unwrap_or_default()
    }

    /// Forgets what `run` held of `seen` that is not in `running` (its outcome recorded by a
    /// path that does not say so, or the event taken back), unless claimed again since.
    fn keep_running(&self, run: &str, seen: &[(i64, i64)], running: &[i64]) {
        for (id, seq) in seen.iter().filter(|(id, _)| !running.contains(id)) {
            self.ended(run, *id, *seq);
        }
    }

    /// `run` holds nothing any more (it ended).
    fn forget(&self, run: &str) {
        self.runs().remove(run);
    }
}

/// The ids of `held` as the JSON array parameter of [`id_in_json`].
fn ids_json(held: &[(i64, i64)]) -> String {
    serde_json::Value::from(held.iter().map(|(id, _)| *id).collect::<Vec<_>>()).to_string()
}

/// A run still registered as live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub id: String,
    pub node: String,
    pub pid: u32,
    pub started_at_ms: i64,
    pub heartbeat_at_ms: i64,
}

/// An event taken back from a run that can no longer finish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    pub event_id: i64,
    pub integration: String,
    /// The run that held it.
    pub holder: String,
    /// Why it was taken back (`holder died: …`, `lease expired`).
    pub why: String,
}

/// The lock a run holds on its file for as long as the process lives.
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Creates and locks `<dir>/<run>.lock`.
    pub fn acquire(dir: &Path, run: &str) -> std::io::Result<RunLock> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{run}.lock"));
        let file = File::create(&path)?;
        file.try_lock().map_err(std::io::Error::other)?;
        Ok(RunLock { file, path })
    }

    /// Unlocks and removes the file (a run that ended cleanly).
    pub fn release(self) {
        let _ = self.file.unlock();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether run `run`'s process is known to be gone: its lock file in `dir` exists and nobody
/// holds its lock. `false` when it cannot tell (no file: another machine's run).
pub fn lock_abandoned(dir: &Path, run: &str) -> bool {
    let path = dir.join(format!("{run}.lock"));
    match File::open(&path) {
        Ok(f) => {
            let free = f.try_lock().is_ok();
            if free {
                let _ = std::fs::remove_file(&path);
            }
            free
        }
        Err(_) => false,
    }
}

/// Requeues every running event matching `filter` (a `WHERE` clause on `events` with `?1` the
/// current time and `?2`, `?3`, … `more`), recording an `abandoned` attempt for each.
fn take_back(db: &dyn Db, filter: &str, more: Vec<Value>, why: &str) -> Result<Vec<Resumed>> {
    let now = now_ms();
    let mut params = vec![Value::from(now)];
    params.extend(more);
    let held = db.query(
        &format!(
            "SELECT id, integration, COALESCE(lease_run, ''), COALESCE(claimed_at, ?1) FROM events
             WHERE state = 'running' AND {filter}"
        ),
        &params,
    )?;
    let least = db.dialect().least();
    let mut resumed = Vec::with_capacity(held.len());
    for row in held {
        let (id, integration, holder, claimed_at) =
            (row.int(0)?, row.text(1)?, row.text(2)?, row.int(3)?);
        let error = format!("taken back from run {holder}: {why}");
        record_attempt(
            db,
            id,
            Some(&holder),
            claimed_at,
            now - claimed_at,
            AttemptOutcome::Abandoned,
            Some(&error),
            None,
        )?;
        // `next_attempt_at` keeps the due time it was claimed at (never later than now), so the
        // claim's order (`next_attempt_at, id`) puts it back ahead of everything received after
        // it: work a crash interrupted resumes first, not behind the backlog.
        db.execute(
            &format!(
                "UPDATE events SET state = 'queued', lease_run = NULL, lease_until = NULL,
                    next_attempt_at = {least}(next_attempt_at, ?2), last_error = ?3
                 WHERE id = ?1"
            ),
            args![id, now, &error],
        )?;
        resumed.push(Resumed {
            event_id: id,
            integration,
            holder,
            why: why.to_string(),
        });
    }
    Ok(resumed)
}

impl Store {
    /// Registers a new run of this process on `node`; returns its id.
    pub fn begin_run(&self, id: &str, node: &str) -> Result<()> {
        let now = now_ms();
        self.db(|db| {
            db.execute(
                "INSERT INTO runs (id, node, pid, started_at, heartbeat_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                args![id, node, std::process::id(), now],
            )
        })?;
        Ok(())
    }

    /// The run's heartbeat: records it and renews the lease of every event this process knows
    /// the run holds ([`Held`]) to `lease_ms` from now, in one transaction: one statement for
    /// the run, one for its events (none when it holds nothing). False if the run was declared
    /// dead meanwhile (its leases are gone). An event leased to the run that it does not know
    /// of (a claim whose answer was lost) is not renewed: its lease runs out and
    /// [`Store::take_back_expired`] takes it back.
    pub fn heartbeat(&self, run: &str, lease_ms: i64) -> Result<bool> {
        let now = now_ms();
        let held = self.held.of(run);
        let (alive, running) = self.transaction(|db| {
            let alive = db.execute(
                "UPDATE runs SET heartbeat_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
                args![run, now],
            )? == 1;
            if !alive || held.is_empty() {
                return Ok((alive, None));
            }
            let running = db
                .query(
                    &format!(
                        "UPDATE events SET lease_until = ?2
                         WHERE {} AND lease_run = ?1 AND state = 'running' RETURNING id",
                        id_in_json(db.dialect(), 3)
                    ),
                    args![run, now + lease_ms, ids_json(&held)],
                )?
                .iter()
                .map(|r| r.int(0))
                .collect::<Result<Vec<i64>>>()?;
            Ok((alive, Some(running)))
        })?;
        if let Some(running) = running {
            self.held.keep_running(run, &held, &running);
        }
        Ok(alive)
    }

    /// Brings back run `run` after another host declared it dead (it was partitioned longer than
    /// a lease, not dead): its old events have moved on (their outcomes are fenced by run), and
    /// what it claims from now on is leased and renewed again. Without this a live host would
    /// keep working under a dead run whose leases are never renewed, and every event it claims
    /// would be taken back and run twice.
    pub fn revive(&self, run: &str) -> Result<()> {
        self.db(|db| {
            db.execute(
                "UPDATE runs SET ended_at = NULL, end_reason = NULL, heartbeat_at = ?2 WHERE id = ?1",
                args![run, now_ms()],
            )
        })?;
        Ok(())
    }

    /// Runs not known to have ended.
    pub fn live_runs(&self) -> Result<Vec<RunInfo>> {
        self.db(|db| {
            db.query(
                "SELECT id, node, pid, started_at, heartbeat_at FROM runs WHERE ended_at IS NULL
                 ORDER BY started_at",
                &[],
            )?
            .iter()
            .map(|r| {
                let pid = r.int(2)?;
                Ok(RunInfo {
                    id: r.text(0)?,
                    node: r.text(1)?,
                    pid: u32::try_from(pid)
                        .map_err(|_| StoreError::Row(format!("a process id of {pid}")))?,
                    started_at_ms: r.int(3)?,
                    heartbeat_at_ms: r.int(4)?,
                })
            })
            .collect()
        })
    }

    /// Marks run `run` dead (`why`) and takes back every event it held, in one transaction.
    pub fn declare_dead(&self, run: &str, why: &str) -> Result<Vec<Resumed>> {
        let resumed = self.transaction(|db| {
            db.execute(
                "UPDATE runs SET ended_at = ?2, end_reason = ?3 WHERE id = ?1 AND ended_at IS NULL",
                args![run, now_ms(), format!("died: {why}")],
            )?;
            take_back(
                db,
                "lease_run = ?2",
                vec![run.into()],
                &format!("holder died ({why})"),
            )
        })?;
        self.notify_due(!resumed.is_empty());
        Ok(resumed)
    }

    /// Takes back running events whose lease ran out without renewal (a stuck or partitioned
    /// holder, a claim whose answer was lost), except those `me` (this run) holds ([`Held`]:
    /// its workers may still be at them, and their outcomes are fenced by run and claim).
    pub fn take_back_expired(&self, me: &str) -> Result<Vec<Resumed>> {
        let held = ids_json(&self.held.of(me));
        let resumed = self.transaction(|db| {
            let filter = format!(
                "lease_until < ?1 AND (COALESCE(lease_run, '') <> ?2 OR NOT {})",
                id_in_json(db.dialect(), 3)
            );
            take_back(
                db,
                &filter,
                vec![me.into(), held.into()],
                "lease expired without renewal",
            )
        })?;
        self.notify_due(!resumed.is_empty());
        Ok(resumed)
    }

    /// Ends run `run` cleanly: what it still holds goes back to the queue uncounted.
    pub fn end_run(&self, run: &str) -> Result<usize> {
        let now = now_ms();
        let handed_back = self.transaction(|db| {
            let held = db.query(
                "SELECT id, COALESCE(claimed_at, ?2) FROM events
                 WHERE state = 'running' AND lease_run = ?1",
                args![run, now],
            )?;
            let d = db.dialect();
            for row in &held {
                let (id, claimed_at) = (row.int(0)?, row.int(1)?);
                record_attempt(
                    db,
                    id,
                    Some(run),
                    claimed_at,
                    now - claimed_at,
                    AttemptOutcome::Released,
                    Some("host stopped: handed back before it finished (not counted)"),
                    None,
                )?;
                // Keeps its place in the queue, like a taken-back event (see `take_back`).
                db.execute(
                    &format!(
                        "UPDATE events SET state = 'queued', lease_run = NULL, lease_until = NULL,
                            next_attempt_at = {}(next_attempt_at, ?2),
                            attempts = {}(attempts - 1, 0)
                         WHERE id = ?1",
                        d.least(),
                        d.greatest()
                    ),
                    args![id, now],
                )?;
            }
            db.execute(
                "UPDATE runs SET ended_at = ?2, end_reason = 'stopped' WHERE id = ?1",
                args![run, now],
            )?;
            Ok(held.len())
        })?;
        self.held.forget(run);
        self.notify_due(handed_back > 0);
        Ok(handed_back)
    }

    /// Events held (running) by `run`, for tests and operators.
    pub fn held_by(&self, run: &str) -> Result<i64> {
        self.db(|db| {
            db.query_one(
                "SELECT COUNT(*) FROM events WHERE state = 'running' AND lease_run = ?1",
                args![run],
            )?
            .int(0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::on_both;
    use crate::store::{Claim, EventState};

    fn claim(s: &Store, run: &str) -> Option<crate::store::Event> {
        leased(s, run, 60_000)
    }

    /// The oldest due event claimed for `run`, leased for `lease_ms`.
    fn leased(s: &Store, run: &str, lease_ms: i64) -> Option<crate::store::Event> {
        s.claim(&Claim {
            run,
            lease_ms,
            integration: None,
            exclude: &[],
        })
        .unwrap()
    }

    #[test]
    fn a_dead_runs_events_are_taken_back_at_once_with_the_attempt_in_history() {
        on_both(|s| {
            s.begin_run("old", "n").unwrap();
            s.enqueue("i", "k", "a", "{}").unwrap();
            let e = claim(&s, "old").unwrap();
            s.begin_run("new", "n").unwrap();
            assert!(claim(&s, "new").is_none(), "held by the old run");
            let resumed = s.declare_dead("old", "lock released").unwrap();
            assert_eq!(resumed.len(), 1);
            assert_eq!(
                (resumed[0].event_id, resumed[0].holder.as_str()),
                (e.id, "old")
            );
            let again = claim(&s, "new").unwrap();
            assert_eq!((again.id, again.attempts), (e.id, 2));
            let d = s.event_detail(e.id).unwrap().unwrap();
            assert_eq!(d.attempts_history[0].outcome, "abandoned");
            assert!(!s.heartbeat("old", 1000).unwrap(), "a dead run stays dead");
            assert_eq!(
                s.live_runs()
                    .unwrap()
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>(),
                ["new"]
            );
        });
    }

    #[test]
    fn a_run_declared_dead_while_alive_is_revived_and_its_new_claims_are_renewed() {
        on_both(|s| {
            s.begin_run("partitioned", "n").unwrap();
            s.enqueue("i", "k", "a", "{}").unwrap();
            let old = claim(&s, "partitioned").unwrap();
            s.declare_dead("partitioned", "heartbeat stale").unwrap();
            assert!(!s.heartbeat("partitioned", 1000).unwrap());
            s.revive("partitioned").unwrap();
            assert!(s.live_runs().unwrap().iter().any(|r| r.id == "partitioned"));
            let again = claim(&s, "partitioned").unwrap();
            assert_eq!(again.id, old.id, "the taken-back event is claimed again");
            assert!(s.heartbeat("partitioned", 60_000).unwrap(), "alive again");
            // Its lease was renewed: another host's expiry sweep leaves it alone.
            assert!(s.take_back_expired("other").unwrap().is_empty());
        });
    }

    #[test]
    fn a_dead_runs_events_are_claimed_before_events_queued_after_them() {
        on_both(|s| {
            s.begin_run("old", "n").unwrap();
            s.enqueue("i", "k", "early-1", "{}").unwrap();
            s.enqueue("i", "k", "early-2", "{}").unwrap();
            let held = [claim(&s, "old").unwrap().id, claim(&s, "old").unwrap().id];
            // The backlog received while the old run worked; the pauses keep the due times apart
            // (from each other and from the requeue's "now").
            for n in 0..3 {
                std::thread::sleep(std::time::Duration::from_millis(3));
                s.enqueue("i", "k", &format!("later-{n}"), "{}").unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(3));
            assert_eq!(s.declare_dead("old", "lock released").unwrap().len(), 2);
            s.begin_run("new", "n").unwrap();
            let order: Vec<i64> = std::iter::from_fn(|| claim(&s, "new").map(|e| e.id)).collect();
            assert_eq!(order.len(), 5);
            assert_eq!(
                order[..2],
                held,
                "the interrupted events resume first, in their order"
            );
        });
        // The dispatcher's batched claim sees the same order.
        on_both(|s| {
            s.begin_run("old", "n").unwrap();
            s.enqueue("i", "k", "early", "{}").unwrap();
            let held = claim(&s, "old").unwrap().id;
            std::thread::sleep(std::time::Duration::from_millis(3));
            s.enqueue("i", "k", "later", "{}").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(3));
            s.declare_dead("old", "lock released").unwrap();
            let batch = s.claim_batch("new", 60_000, &[("i", 1)], 1).unwrap();
            assert_eq!(batch.iter().map(|e| e.id).collect::<Vec<_>>(), [held]);
        });
    }

    #[test]
    fn heartbeats_renew_leases_and_unrenewed_ones_are_taken_back() {
        on_both(|s| {
            s.begin_run("a", "n").unwrap();
            s.begin_run("b", "n").unwrap();
            s.enqueue("i", "k", "1", "{}").unwrap();
            s.enqueue("i", "k", "2", "{}").unwrap();
            let ea = s
                .claim(&Claim {
                    run: "a",
                    lease_ms: -1,
                    integration: None,
                    exclude: &[],
                })
                .unwrap()
                .unwrap();
            let eb = s
                .claim(&Claim {
                    run: "b",
                    lease_ms: -1,
                    integration: None,
                    exclude: &[],
                })
                .unwrap()
                .unwrap();
            // b renews; a does not.
            assert!(s.heartbeat("b", 60_000).unwrap());
            let back = s.take_back_expired("b").unwrap();
            assert_eq!(back.iter().map(|r| r.event_id).collect::<Vec<_>>(), [ea.id]);
            assert_eq!(s.event(eb.id).unwrap().unwrap().state, EventState::Running);
            // A clean end hands back what is still held, uncounted.
            assert_eq!(s.end_run("b").unwrap(), 1);
            let e = s.event(eb.id).unwrap().unwrap();
            assert_eq!((e.state, e.attempts), (EventState::Queued, 0));
        });
    }

    /// Leases the oldest queued event to `run` with a lease already run out, as a claim whose
    /// COMMIT the server made while the host never got the answer: `(id, claim_seq)`.
    fn claim_behind_the_hosts_back(s: &Store, run: &str) -> (i64, i64) {
        s.db(|db| {
            let row = db.query_one(
                "UPDATE events SET state = 'running', lease_run = ?1, lease_until = ?2,
                    claimed_at = ?2, attempts = attempts + 1, claim_seq = claim_seq + 1
                 WHERE id = (SELECT MIN(id) FROM events WHERE state = 'queued')
                 RETURNING id, claim_seq",
                args![run, now_ms() - 1],
            )?;
            Ok((row.int(0)?, row.int(1)?))
        })
        .unwrap()
    }

    /// A claim committed for this run whose answer was lost: no worker has its event, so the
    /// heartbeat leaves its lease to run out and the run's own sweep takes it back (before,
    /// the heartbeat renewed it and the sweep skipped the run's own: stuck `running` until the
    /// host stopped). What the run holds stays its own, and the lost claim stays fenced.
    #[test]
    fn a_claim_whose_answer_was_lost_is_taken_back_after_its_lease() {
        on_both(|s| {
            s.begin_run("me", "n").unwrap();
            s.enqueue("i", "k", "1", "{}").unwrap();
            s.enqueue("i", "k", "2", "{}").unwrap();
            let held = leased(&s, "me", -1).unwrap();
            let (lost, lost_seq) = claim_behind_the_hosts_back(&s, "me");
            assert!(s.heartbeat("me", 60_000).unwrap());
            let back = s.take_back_expired("me").unwrap();
            assert_eq!(back.iter().map(|r| r.event_id).collect::<Vec<_>>(), [lost]);
            assert_eq!(
                s.event(held.id).unwrap().unwrap().state,
                EventState::Running
            );
            assert_eq!(s.held_by("me").unwrap(), 1);
            let again = claim(&s, "me").unwrap();
            assert_eq!(again.id, lost, "queued again, in its place");
            assert!(
                !s.release(lost, "me", lost_seq, now_ms()).unwrap(),
                "the lost claim's outcome is refused"
            );
            // Both claims are now the run's own: renewed, and never taken back by it.
            assert!(s.heartbeat("me", 60_000).unwrap());
            assert!(s.take_back_expired("me").unwrap().is_empty());
            assert!(s.take_back_expired("other").unwrap().is_empty());
        });
    }

    /// The heartbeat renews only what the run holds, and forgets what it finished.
    #[test]
    fn the_heartbeat_renews_what_the_run_holds_and_forgets_what_it_ended() {
        on_both(|s| {
            s.begin_run("me", "n").unwrap();
            s.enqueue("i", "k", "1", "{}").unwrap();
            let e = leased(&s, "me", -1).unwrap();
            assert_eq!(s.held.of("me"), [(e.id, e.claim_seq)]);
            assert!(s.heartbeat("me", 60_000).unwrap());
            assert!(
                s.take_back_expired("other").unwrap().is_empty(),
                "renewed: another host leaves it alone"
            );
            assert!(s.release(e.id, "me", e.claim_seq, now_ms()).unwrap());
            assert!(s.held.of("me").is_empty(), "its outcome is recorded");
        });
    }

    #[test]
    fn a_lock_file_tells_a_live_run_from_a_dead_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let lock = RunLock::acquire(&dir, "r1").unwrap();
        assert!(!lock_abandoned(&dir, "r1"), "held by a live run");
        assert!(!lock_abandoned(&dir, "unknown"), "no file: cannot tell");
        // A process that dies drops its lock; the file stays behind.
        drop(lock);
        assert!(lock_abandoned(&dir, "r1"));
    }
}
