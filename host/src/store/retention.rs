//! Retention: what a pass prunes, what it keeps, and the tombstones that keep deduplication
//! working after an event is gone. The driver (when, how often, metrics) is `crate::retention`;
//! this module holds only the SQL, so the PostgreSQL backend implements the same statements.
//!
//! **Pruned**, once older than the cutoff (`storage.retention_days` before now):
//! - events that are `done` or `skipped` (their bodies in `event_bodies` with them: delivered Gem webhooks
//!   included) and their attempt history;
//! - orders in a terminal state (`complete`, `error`, `cancelled`: [`super::rank`] 4) last updated
//!   before the cutoff, with their notes and the Gem screenings that placed them;
//! - Gem screenings that never got an order and whose `gem.send` event is pruned;
//! - tombstones pruned more than `retention_days` ago;
//! - runs that ended before the cutoff and lease nothing, and replay jobs that finished (done or
//!   cancelled) before it, with their lists of events.
//!
//! **Kept**: every event that is `queued`, `running`, `waiting` or `dead` (a dead letter stays
//! until replayed or removed: [`Store::remove_dead_event`]); an event a kept Gem screening points
//! at (its status is read from it); a trigger whose screening is still open (an order not in a
//! terminal state recorded under the event's dedupe key as its idempotency key); an open (non-terminal) order, and a terminal one with a note
//! not yet written to the ATS (a replayed dead event still needs it).
//!
//! **Tombstones.** A pruned event leaves `(integration, dedupe_key, payload hash)` behind, so a
//! redelivered webhook, vendor callback or Gem `Idempotency-Key` is still answered as a duplicate
//! (or a replay, when the payload differs) and never queued again (see [`super::enqueue_on`]).
//! A `gem.send` tombstone also keeps the screening id and request digest its repeat is answered
//! with. A tombstone lives `retention_days` after the prune, so a key deduplicates for at least
//! twice the window after its event finished: far past any sender's retry horizon (Lever
//! webhooks older than `server.webhook_max_age_secs` are refused anyway; Gem and vendor retries
//! stop within days).
//!
//! Each batch is one write of the group commit (a savepoint of its own): a crash mid-pass leaves
//! every batch either done (rows gone, tombstones written) or not started. Batches are small so
//! intake never waits long behind one.
//!
//! On PostgreSQL the rows a batch deletes are selected `FOR UPDATE SKIP LOCKED`: a row another
//! transaction holds (an event being claimed, an order being recorded) waits for a later batch
//! instead of stalling this one. The pass runs on the housekeeping leader only
//! ([`super::leader`]).
//!
//! Written once for both backends; a batch lists its events in the connection's temporary table
//! `prune_ids` (SQLite: created at open; PostgreSQL: by the batch, on the writer's connection).
//! The file maintenance ([`Store::incremental_vacuum`], [`Store::pages`]) is SQLite's: on
//! PostgreSQL autovacuum reclaims space, and the database reports no free pages to return.

use rusqlite::Connection;

use super::queue::skip_locked;
use super::sql::{args, Db, Dialect};
use super::{Backend, EventState, Result, Store};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tombstones (
    integration TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    payload_hash TEXT NOT NULL,
    reply TEXT,
    pruned_at INTEGER NOT NULL,
    PRIMARY KEY (integration, dedupe_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tombstones_by_age ON tombstones (pruned_at);
CREATE INDEX IF NOT EXISTS events_finished ON events (state, finished_at);
CREATE INDEX IF NOT EXISTS orders_by_age ON orders (state, updated_at);
"#;

/// What a `gem.send` tombstone keeps to answer a repeated `Idempotency-Key`: the fields
/// `ats::gem::screening` compares, never the candidate.
fn reply(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "CASE WHEN kind = 'gem.send' THEN json_object(
                'screening_id', json_extract(body, '$.screening_id'),
                'sent_digest', json_extract(body, '$.sent_digest')) END"
        }
        Dialect::Postgres => {
            "CASE WHEN kind = 'gem.send' THEN CAST(jsonb_build_object(
                'screening_id', CAST(body AS jsonb) -> 'screening_id',
                'sent_digest', CAST(body AS jsonb) -> 'sent_digest') AS TEXT) END"
        }
    }
}

/// Rows removed by one batch, by table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub attempts: u64,
    pub orders: u64,
    pub notes: u64,
    pub gem_screenings: u64,
    pub tombstones: u64,
    pub runs: u64,
    pub replay_jobs: u64,
}

impl Pruned {
    /// Rows removed in all.
    pub fn total(&self) -> u64 {
        self.events
            + self.attempts
            + self.orders
            + self.notes
            + self.gem_screenings
            + self.tombstones
            + self.runs
            + self.replay_jobs
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: Pruned) {
        self.events += other.events;
        self.attempts += other.attempts;
        self.orders += other.orders;
        self.notes += other.notes;
        self.gem_screenings += other.gem_screenings;
        self.tombstones += other.tombstones;
        self.runs += other.runs;
        self.replay_jobs += other.replay_jobs;
    }

    /// `(table, rows)` pairs, for metrics and logs.
    pub fn by_table(&self) -> [(&'static str, u64); 8] {
        [
            ("events", self.events),
            ("attempts", self.attempts),
            ("orders", self.orders),
            ("notes", self.notes),
            ("gem_screenings", self.gem_screenings),
            ("tombstones", self.tombstones),
            ("runs", self.runs),
            ("replay_jobs", self.replay_jobs),
        ]
    }
}

/// What removing a dead letter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveDead {
    Removed,
    /// The event exists but is not dead: nothing changed.
    NotDead(EventState),
    Missing,
}

/// Free pages and all pages of the database file, and its page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pages {
    pub free: i64,
    pub total: i64,
    pub size: i64,
}

impl Store {
    /// One batch of at most `limit` rows of each kind finished before `cutoff_ms`, as one write;
    /// `now_ms` stamps the tombstones it leaves. A batch that prunes nothing means the pass is
    /// over.
    pub async fn prune_batch(&self, cutoff_ms: i64, now_ms: i64, limit: u32) -> Result<Pruned> {
        self.write_db(move |db| prune_on(db, cutoff_ms, now_ms, limit))
            .await
    }

    /// Removes dead event `id` and its attempts, leaving a tombstone so that a redelivery of it
    /// is still a duplicate. Any other state is left as it is.
    pub async fn remove_dead_event(&self, id: i64) -> Result<RemoveDead> {
        self.write_db(move |db| {
            let state = db
                .query_opt("SELECT state FROM events WHERE id = ?1", args![id])?
                .map(|r| r.text(0))
                .transpose()?;
            match state.as_deref().map(EventState::parse) {
                None => return Ok(RemoveDead::Missing),
                Some(EventState::Dead) => {}
                Some(other) => return Ok(RemoveDead::NotDead(other)),
            }
            clear_listed(db)?;
            db.execute("INSERT INTO prune_ids (id) VALUES (?1)", args![id])?;
            remove_listed_events(db, super::now_ms())?;
            Ok(RemoveDead::Removed)
        })
        .await
    }

    /// Returns up to `pages` free pages to the file system (a database created with
    /// `auto_vacuum = INCREMENTAL`; a no-op on others, whose free pages are reused instead).
    pub fn incremental_vacuum(&self, pages: u32) -> Result<()> {
        if let Backend::Postgres { .. } = self.backend {
            return Ok(());
        }
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
        // Each step frees one page: step through them all.
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
        drop(rows);
        drop(stmt);
        // On a blocking thread, not the writer's: its checkpoints do not see these commits.
        super::checkpoint::after_commit_here(&conn);
        Ok(())
    }

    /// The database file's page counts.
    pub fn pages(&self) -> Result<Pages> {
        if let Backend::Postgres { .. } = self.backend {
            // Autovacuum's business: nothing for a retention pass to return.
            const PAGE: i64 = 8192;
            return Ok(Pages {
                free: 0,
                total: self.database_bytes()? / PAGE,
                size: PAGE,
            });
        }
        let conn = self.conn()?;
        let get = |pragma: &str| -> Result<i64> {
            Ok(conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))?)
        };
        Ok(Pages {
            free: get("freelist_count")?,
            total: get("page_count")?,
            size: get("page_size")?,
        })
    }

    /// PostgreSQL: the database's size on the server.
    fn database_bytes(&self) -> Result<i64> {
        self.db(|db| {
            db.query_one(
                "SELECT CAST(pg_database_size(current_database()) AS BIGINT)",
                &[],
            )?
            .int(0)
        })
    }

    /// Bytes on disk: the database file and its write-ahead log.
    pub fn disk_bytes(&self) -> Result<u64> {
        match &self.backend {
            Backend::Postgres { .. } => Ok(self.database_bytes()?.max(0) as u64),
            // The path the store opened, not the writer's connection's: that one is held
            // through each batch and its fsync.
            Backend::Sqlite { readers, .. } => {
                let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
                let mut wal = readers.path().as_os_str().to_owned();
                wal.push("-wal");
                Ok(size(readers.path()) + size(std::path::Path::new(&wal)))
            }
        }
    }
}

/// Creates the scratch table a batch lists its event ids in (per connection, never on disk).
pub(super) fn prepare(conn: &Connection) -> Result<()> {
    conn.execute_batch("CREATE TEMP TABLE IF NOT EXISTS prune_ids (id INTEGER PRIMARY KEY)")?;
    Ok(())
}

/// Empties `prune_ids` (on PostgreSQL, creates it first: a temporary table lives with the
/// connection, here the writer's).
fn clear_listed(db: &dyn Db) -> Result<()> {
    if db.dialect() == Dialect::Postgres {
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS prune_ids (id BIGINT PRIMARY KEY)",
            &[],
        )?;
    }
    db.execute("DELETE FROM prune_ids", &[])?;
    Ok(())
}

fn prune_on(db: &dyn Db, cutoff: i64, now: i64, limit: u32) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    let skip = skip_locked(db.dialect());
    // Orders first: pruning one frees its Gem screening, which frees that screening's event.
    let orders = db.query(
        &format!(
            "SELECT integration, order_ref FROM orders o
             WHERE state IN ('complete', 'error', 'cancelled') AND updated_at < ?1
               AND NOT EXISTS (SELECT 1 FROM notes n WHERE n.integration = o.integration
                   AND n.order_ref = o.order_ref AND n.written_at IS NULL)
             LIMIT ?2{skip}"
        ),
        args![cutoff, limit],
    )?;
    for row in &orders {
        let key = args![row.text(0)?, row.text(1)?];
        pruned.notes += db.execute(
            "DELETE FROM notes WHERE integration = ?1 AND order_ref = ?2",
            key,
        )?;
        pruned.gem_screenings += db.execute(
            "DELETE FROM gem_screenings WHERE integration = ?1 AND order_ref = ?2",
            key,
        )?;
        pruned.orders += db.execute(
            "DELETE FROM orders WHERE integration = ?1 AND order_ref = ?2",
            key,
        )?;
    }
    // A screening that never got an order (skipped: no rule applied) goes with its event.
    pruned.gem_screenings += db.execute(
        "DELETE FROM gem_screenings WHERE (integration, id) IN (
             SELECT g.integration, g.id FROM gem_screenings g JOIN events e ON e.id = g.event_id
             WHERE g.order_ref IS NULL AND e.state IN ('done', 'skipped') AND e.finished_at < ?1
             LIMIT ?2)",
        args![cutoff, limit],
    )?;
    clear_listed(db)?;
    db.execute(
        &format!(
            "INSERT INTO prune_ids (id)
             SELECT id FROM events e
             WHERE state IN ('done', 'skipped') AND finished_at < ?1
               AND NOT EXISTS (SELECT 1 FROM gem_screenings g
                   WHERE g.integration = e.integration AND g.event_id = e.id)
               AND NOT EXISTS (SELECT 1 FROM orders o
                   WHERE o.integration = e.integration AND o.idempotency_key = e.dedupe_key
                     AND o.state NOT IN ('complete', 'error', 'cancelled'))
             LIMIT ?2{skip}"
        ),
        args![cutoff, limit],
    )?;
    let (events, attempts) = remove_listed_events(db, now)?;
    pruned.events += events;
    pruned.attempts += attempts;
    pruned.tombstones += db.execute(
        "DELETE FROM tombstones WHERE (integration, dedupe_key) IN (
             SELECT integration, dedupe_key FROM tombstones WHERE pruned_at < ?1 LIMIT ?2)",
        args![cutoff, limit],
    )?;
    pruned.runs += db.execute(
        "DELETE FROM runs WHERE id IN (
             SELECT id FROM runs r WHERE ended_at < ?1
               AND NOT EXISTS (SELECT 1 FROM events e WHERE e.lease_run = r.id)
             LIMIT ?2)",
        args![cutoff, limit],
    )?;
    let jobs = db.query(
        &format!(
            "SELECT id FROM replay_jobs WHERE state IN ('done', 'cancelled') AND updated_at < ?1
             LIMIT ?2{skip}"
        ),
        args![cutoff, limit],
    )?;
    for job in &jobs {
        let id = job.int(0)?;
        db.execute("DELETE FROM replay_job_events WHERE job_id = ?1", args![id])?;
        pruned.replay_jobs += db.execute("DELETE FROM replay_jobs WHERE id = ?1", args![id])?;
    }
    Ok(pruned)
}

/// Deletes the events listed in `prune_ids` with their attempts, leaving a tombstone per
/// dedupe key (replacing an older one of the same key). Keys of recorded failures
/// (`failure:<uuid>`) are never offered again: no tombstone. Returns (events, attempts) removed.
fn remove_listed_events(db: &dyn Db, now: i64) -> Result<(u64, u64)> {
    db.execute(
        &format!(
            "INSERT INTO tombstones
                 (integration, dedupe_key, event_id, payload_hash, reply, pruned_at)
             SELECT integration, dedupe_key, id, payload_hash, {}, CAST(?1 AS BIGINT)
             FROM events LEFT JOIN event_bodies b ON b.event_id = events.id
             WHERE id IN (SELECT id FROM prune_ids) AND dedupe_key NOT LIKE 'failure:%'
             ON CONFLICT (integration, dedupe_key) DO UPDATE SET event_id = excluded.event_id,
                payload_hash = excluded.payload_hash, reply = excluded.reply,
                pruned_at = excluded.pruned_at",
            reply(db.dialect())
        ),
        args![now],
    )?;
    let attempts = db.execute(
        "DELETE FROM attempts WHERE event_id IN (SELECT id FROM prune_ids)",
        &[],
    )?;
    super::traffic::remove_listed(db)?;
    db.execute(
        "DELETE FROM event_bodies WHERE event_id IN (SELECT id FROM prune_ids)",
        &[],
    )?;
    let events = db.execute(
        "DELETE FROM events WHERE id IN (SELECT id FROM prune_ids)",
        &[],
    )?;
    Ok((events, attempts))
}

/// The tombstone of `integration`'s `dedupe_key`: the pruned event's id and payload hash.
pub(super) fn tombstone(
    db: &dyn Db,
    integration: &str,
    dedupe_key: &str,
) -> Result<Option<(i64, String)>> {
    db.query_opt(
        "SELECT event_id, payload_hash FROM tombstones WHERE integration = ?1 AND dedupe_key = ?2",
        args![integration, dedupe_key],
    )?
    .map(|row| Ok((row.int(0)?, row.text(1)?)))
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::Value;
    use crate::store::testing::on_both_async;
    use crate::store::Enqueued;

    fn exec(s: &Store, sql: &str, params: &[Value]) {
        s.db(|db| db.execute(sql, params)).unwrap();
    }

    /// Stores an event in `state`, finished (if finished) at `at`.
    fn event(s: &Store, key: &str, state: &str, at: i64) -> i64 {
        let Enqueued::New(id) = s.enqueue("acme", "lever.stage_change", key, "{}").unwrap() else {
            panic!("{key} was new");
        };
        let finished = matches!(state, "done" | "skipped" | "dead").then_some(at);
        exec(
            s,
            "UPDATE events SET state = ?2, finished_at = ?3 WHERE id = ?1",
            args![id, state, finished],
        );
        exec(
            s,
            "INSERT INTO attempts (event_id, attempt, started_at, took_ms, outcome)
             VALUES (?1, 1, ?2, 5, 'done')",
            args![id, at],
        );
        id
    }

    fn order(s: &Store, order_ref: &str, state: &str, at: i64, note_written: Option<i64>) {
        exec(
            s,
            "INSERT INTO orders (integration, order_ref, connector, opportunity_id, state, label,
                 updated_at) VALUES ('acme', ?1, 'certn', 'opp', ?2, ?2, ?3)",
            args![order_ref, state, at],
        );
        exec(
            s,
            "INSERT INTO notes (integration, order_ref, text, secret, written_at)
             VALUES ('acme', ?1, 'done', 0, ?2)",
            args![order_ref, note_written],
        );
    }

    fn count(s: &Store, sql: &str) -> i64 {
        s.db(|db| db.query_one(sql, &[])?.int(0)).unwrap()
    }

    async fn prune_all(s: &Store, cutoff: i64, now: i64) -> Pruned {
        let mut total = Pruned::default();
        loop {
            let batch = s.prune_batch(cutoff, now, 2).await.unwrap();
            if batch.total() == 0 {
                return total;
            }
            total.add(batch);
        }
    }

    #[tokio::test]
    async fn a_pass_prunes_old_finished_work_and_keeps_what_is_live_dead_or_open() {
        on_both_async!(|s: Store| async move {
            let (old, recent, cutoff) = (1_000, 9_000, 5_000);
            let done = event(&s, "lever:done", "done", old);
            event(&s, "lever:skipped", "skipped", old);
            event(&s, "lever:recent", "done", recent);
            let queued = event(&s, "lever:queued", "queued", old);
            let running = event(&s, "lever:running", "running", old);
            let dead = event(&s, "lever:dead", "dead", old);
            let waiting = event(&s, "lever:waiting", "waiting", old);
            order(&s, "closed", "complete", old, Some(old));
            order(&s, "open", "pending", old, Some(old));
            order(&s, "unwritten", "complete", old, None);
            order(&s, "fresh", "complete", recent, Some(recent));
            // A Gem screening whose order is open keeps its event, however old.
            let gem_event = event(&s, "gem:open", "done", old);
            exec(
                &s,
                "INSERT INTO gem_screenings (integration, id, application_id, event_id, order_ref,
                 created_at) VALUES ('acme', 'scr_1', 'app', ?1, 'open', 0)",
                args![gem_event],
            );
            // So does a Lever trigger whose screening is open (its key is the order's).
            let open_trigger = event(&s, "lever:open", "done", old);
            exec(
                &s,
                "UPDATE orders SET idempotency_key = 'lever:open' WHERE order_ref = 'open'",
                &[],
            );

            let pruned = prune_all(&s, cutoff, 10_000).await;

            assert_eq!((pruned.events, pruned.attempts), (2, 2));
            assert_eq!((pruned.orders, pruned.notes), (1, 1));
            let ids: Vec<i64> = s
                .db(|db| db.query("SELECT id FROM events ORDER BY id", &[]))
                .unwrap()
                .iter()
                .map(|r| r.int(0).unwrap())
                .collect();
            assert!(!ids.contains(&done));
            for kept in [queued, running, dead, waiting, gem_event, open_trigger] {
                assert!(ids.contains(&kept), "event {kept} was pruned");
            }
            assert_eq!(count(&s, "SELECT COUNT(*) FROM events"), 7);
            let orders: Vec<String> = s
                .db(|db| db.query("SELECT order_ref FROM orders ORDER BY order_ref", &[]))
                .unwrap()
                .iter()
                .map(|r| r.text(0).unwrap())
                .collect();
            assert_eq!(orders, ["fresh", "open", "unwritten"]);
            assert_eq!(count(&s, "SELECT COUNT(*) FROM gem_screenings"), 1);
            // Nothing left to do: a second pass prunes nothing.
            assert_eq!(prune_all(&s, cutoff, 10_000).await, Pruned::default());
        });
    }

    #[tokio::test]
    async fn a_pass_prunes_old_ended_runs_and_finished_replay_jobs_only() {
        on_both_async!(|s: Store| async move {
            let (old, recent, cutoff) = (1_000, 9_000, 5_000);
            for (id, ended) in [
                ("ended", Some(old)),
                ("live", None),
                ("fresh", Some(recent)),
            ] {
                exec(
                    &s,
                    "INSERT INTO runs (id, node, pid, started_at, heartbeat_at, ended_at)
                     VALUES (?1, 'n', 1, 0, 0, ?2)",
                    args![id, ended],
                );
            }
            // An ended run that still names a lease is kept until the lease is taken back.
            exec(
                &s,
                "INSERT INTO runs (id, node, pid, started_at, heartbeat_at, ended_at)
                 VALUES ('leasing', 'n', 1, 0, 0, ?1)",
                args![old],
            );
            let running = event(&s, "lever:held", "running", old);
            exec(
                &s,
                "UPDATE events SET lease_run = 'leasing' WHERE id = ?1",
                args![running],
            );
            for (filter, state, at) in [
                ("old-done", "done", old),
                ("old-cancelled", "cancelled", old),
                ("old-running", "running", old),
                ("new-done", "done", recent),
            ] {
                exec(
                    &s,
                    "INSERT INTO replay_jobs (filter, include_done, state, total, created_at,
                        updated_at) VALUES (?1, 0, ?2, 1, ?3, ?3)",
                    args![filter, state, at],
                );
            }
            exec(
                &s,
                "INSERT INTO replay_job_events (job_id, event_id, step)
                 SELECT id, 1, 'done' FROM replay_jobs",
                &[],
            );

            let pruned = prune_all(&s, cutoff, 10_000).await;

            assert_eq!((pruned.runs, pruned.replay_jobs), (1, 2));
            let left = |sql: &str| -> Vec<String> {
                s.db(|db| db.query(sql, &[]))
                    .unwrap()
                    .iter()
                    .map(|r| r.text(0).unwrap())
                    .collect()
            };
            assert_eq!(
                left("SELECT id FROM runs ORDER BY id"),
                ["fresh", "leasing", "live"]
            );
            assert_eq!(
                left("SELECT filter FROM replay_jobs ORDER BY filter"),
                ["new-done", "old-running"]
            );
            assert_eq!(count(&s, "SELECT COUNT(*) FROM replay_job_events"), 2);
        });
    }

    #[tokio::test]
    async fn a_pruned_key_is_still_a_duplicate_and_a_changed_payload_still_a_replay() {
        on_both_async!(|s: Store| async move {
            let id = event(&s, "lever:tok", "done", 1_000);
            prune_all(&s, 5_000, 10_000).await;
            assert_eq!(count(&s, "SELECT COUNT(*) FROM events"), 0);

            let again = s
                .enqueue("acme", "lever.stage_change", "lever:tok", "{}")
                .unwrap();
            assert_eq!(
                again,
                Enqueued::Duplicate {
                    id,
                    same_payload: true
                }
            );
            let replay = s
                .enqueue("acme", "lever.stage_change", "lever:tok", "{\"x\":1}")
                .unwrap();
            assert_eq!(
                replay,
                Enqueued::Duplicate {
                    id,
                    same_payload: false
                }
            );
            let batched = s
                .enqueue_batched("acme", "lever.stage_change", "lever:tok", "{}")
                .await
                .unwrap();
            assert_eq!(
                batched,
                Enqueued::Duplicate {
                    id,
                    same_payload: true
                }
            );
            assert_eq!(count(&s, "SELECT COUNT(*) FROM events"), 0);
            // Another integration's key of the same name is its own.
            assert!(matches!(
                s.enqueue("other", "lever.stage_change", "lever:tok", "{}")
                    .unwrap(),
                Enqueued::New(_)
            ));
        });
    }

    #[tokio::test]
    async fn a_tombstone_lives_one_more_window_then_goes() {
        on_both_async!(|s: Store| async move {
            event(&s, "lever:tok", "done", 1_000);
            let window = 4_000;
            // Pruned at 10 000; still there a window later, gone after.
            prune_all(&s, 10_000 - window, 10_000).await;
            prune_all(&s, 13_000 - window, 13_000).await;
            assert_eq!(count(&s, "SELECT COUNT(*) FROM tombstones"), 1);
            let pruned = prune_all(&s, 14_001 - window, 14_001).await;
            assert_eq!(pruned.tombstones, 1);
            assert!(matches!(
                s.enqueue("acme", "lever.stage_change", "lever:tok", "{}")
                    .unwrap(),
                Enqueued::New(_)
            ));
        });
    }

    #[tokio::test]
    async fn a_gem_send_tombstone_keeps_its_screening_id_and_digest_not_the_candidate() {
        on_both_async!(|s: Store| async move {
            let payload = r#"{"screening_id":"scr_9","sent_digest":"abc","application_id":"app",
            "candidate":{"name":"Ada Lovelace","emails":["ada@example.com"],"phones":[]}}"#;
            let Enqueued::New(id) = s
                .enqueue("acme", "gem.send", "gem:key:k1", payload)
                .unwrap()
            else {
                panic!("new");
            };
            exec(
                &s,
                "UPDATE events SET state = 'done', finished_at = 1 WHERE id = ?1",
                args![id],
            );
            prune_all(&s, 5_000, 10_000).await;
            let kept = s
                .event_payload("acme", "gem:key:k1")
                .unwrap()
                .expect("tombstone");
            let kept: serde_json::Value = serde_json::from_str(&kept).unwrap();
            assert_eq!(
                kept,
                serde_json::json!({"screening_id": "scr_9", "sent_digest": "abc"})
            );
        });
    }

    #[tokio::test]
    async fn only_a_dead_letter_can_be_removed_and_its_key_stays_taken() {
        on_both_async!(|s: Store| async move {
            let dead = event(&s, "lever:dead", "dead", 1_000);
            let queued = event(&s, "lever:queued", "queued", 1_000);
            assert_eq!(
                s.remove_dead_event(queued).await.unwrap(),
                RemoveDead::NotDead(EventState::Queued)
            );
            assert_eq!(
                s.remove_dead_event(dead).await.unwrap(),
                RemoveDead::Removed
            );
            assert_eq!(
                s.remove_dead_event(dead).await.unwrap(),
                RemoveDead::Missing
            );
            assert_eq!(count(&s, "SELECT COUNT(*) FROM events"), 1);
            assert_eq!(count(&s, "SELECT COUNT(*) FROM attempts"), 1);
            assert!(matches!(
                s.enqueue("acme", "lever.stage_change", "lever:dead", "{}")
                    .unwrap(),
                Enqueued::Duplicate { .. }
            ));
        });
    }

    #[test]
    fn a_new_database_returns_free_pages_to_the_file_system() {
        let s = crate::store::testing::sqlite();
        let mode: i64 = s
            .conn()
            .unwrap()
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 2, "auto_vacuum = INCREMENTAL");
        let big = "x".repeat(4_000);
        for i in 0..200 {
            s.enqueue("acme", "k", &format!("k{i}"), &big).unwrap();
        }
        s.conn()
            .unwrap()
            .execute_batch("DELETE FROM events; DELETE FROM event_bodies;")
            .unwrap();
        let before = s.pages().unwrap();
        assert!(before.free > 100, "{before:?}");
        s.incremental_vacuum(10_000).unwrap();
        let after = s.pages().unwrap();
        assert_eq!(after.free, 0);
        assert!(after.total < before.total - 100, "{before:?} → {after:?}");
    }
}
