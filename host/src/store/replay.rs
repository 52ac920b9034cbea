//! Replay: queueing finished or failed events again, one ([`Store::replay_event`]) or every event
//! matching a filter as a **job** kept in the store ([`Store::start_replay`]), so that any host
//! sharing the database can carry it on, show its progress or cancel it.
//!
//! A job lists the matching events when it starts (at most the cap: a filter matching more is
//! refused with the count and nothing is stored). [`Store::replay_step`] queues a few of its
//! events at a time, so a large replay does not push everything else back at once. A replayed
//! event is queued due now with a fresh attempt budget, like an operator's retry; it never
//! starts a second screening, since the flow finds the order recorded under the event's
//! idempotency key. Replayable: `waiting`, `dead` and `skipped` events, and `done` ones when
//! forced. Portable SQL (`?N`, no SQLite-only functions).

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::search::EventFilter;
use super::{now_ms, Cached, EventState, Result, Retried, Store};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS replay_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    filter TEXT NOT NULL,
    include_done INTEGER NOT NULL,
    state TEXT NOT NULL,
    total INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS replay_job_events (
    job_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    PRIMARY KEY (job_id, event_id)
);
CREATE INDEX IF NOT EXISTS replay_jobs_by_state ON replay_jobs (state, id);
"#;

/// Where a replay job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Queueing its events.
    Running,
    /// Every event was queued again (or found not replayable any more).
    Done,
    /// Stopped by an operator; events queued before that stay queued.
    Cancelled,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> JobState {
        match s {
            "done" => JobState::Done,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Running,
        }
    }
}

/// A replay job and its progress.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReplayJob {
    pub id: i64,
    pub filter: EventFilter,
    /// Also `done` events.
    pub force: bool,
    pub state: JobState,
    /// Events the job took on.
    pub total: i64,
    /// Not queued yet.
    pub pending: i64,
    /// Queued again by the job.
    pub queued: i64,
    /// Not replayable any more when their turn came (already queued or running again).
    pub passed_over: i64,
    /// The job's queued events by their state now (`done`, `dead`, …): how the replay went.
    pub outcomes: Vec<(EventState, i64)>,
    /// Unix ms.
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What [`Store::start_replay`] did.
#[derive(Debug, Clone)]
pub enum StartReplay {
    Started(ReplayJob),
    /// More events match than the cap allows: nothing started.
    TooMany {
        matching: i64,
        cap: i64,
    },
}

/// The states a replay takes (`done` only when forced).
fn replayable(force: bool) -> &'static str {
    if force {
        "('waiting', 'dead', 'skipped', 'done')"
    } else {
        "('waiting', 'dead', 'skipped')"
    }
}

/// Queues event `id` again, due now with a fresh attempt budget, if it is replayable.
pub(super) fn requeue_on(conn: &Connection, id: i64, force: bool) -> Result<Retried> {
    let Some(state) = conn
        .row("SELECT state FROM events WHERE id = ?1", params![id], |r| {
            r.get::<_, String>(0)
        })
        .optional()?
    else {
        return Ok(Retried::NotFound);
    };
    let n = conn.exec(
        &format!(
            "UPDATE events SET state = 'queued', waiting_for = NULL, attempts = 0,
                next_attempt_at = ?2, finished_at = NULL
             WHERE id = ?1 AND state IN {}",
            replayable(force)
        ),
        params![id, now_ms()],
    )?;
    Ok(if n == 1 {
        Retried::Queued
    } else {
        Retried::Refused(EventState::parse(&state))
    })
}

fn job_on(conn: &Connection, id: i64) -> Result<Option<ReplayJob>> {
    let Some((filter, force, state, total, created, updated)) = conn
        .row(
            "SELECT filter, include_done, state, total, created_at, updated_at FROM replay_jobs
             WHERE id = ?1",
            params![id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut steps = conn.prepare_cached(
        "SELECT step, COUNT(*) FROM replay_job_events WHERE job_id = ?1 GROUP BY step",
    )?;
    let (mut pending, mut queued, mut passed_over) = (0, 0, 0);
    for row in steps.query_map(params![id], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))? {
        let (step, n): (String, i64) = row?;
        match step.as_str() {
            "pending" => pending = n,
            "queued" => queued = n,
            _ => passed_over = n,
        }
    }
    let mut states = conn.prepare_cached(
        "SELECT e.state, COUNT(*) FROM replay_job_events j JOIN events e ON e.id = j.event_id
         WHERE j.job_id = ?1 AND j.step = 'queued' GROUP BY e.state ORDER BY e.state",
    )?;
    let outcomes = states
        .query_map(params![id], |r| {
            Ok((EventState::parse(&r.get::<_, String>(0)?), r.get(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(ReplayJob {
        id,
        filter: serde_json::from_str(&filter).unwrap_or_default(),
        force,
        state: JobState::parse(&state),
        total,
        pending,
        queued,
        passed_over,
        outcomes,
        created_at_ms: created,
        updated_at_ms: updated,
    }))
}

impl Store {
    /// Queues one event again: a waiting, dead or skipped one, or with `force` a done one too.
    pub async fn replay_event(&self, id: i64, force: bool) -> Result<Retried> {
        self.write(move |conn| requeue_on(conn, id, force)).await
    }

    /// Starts a job replaying every replayable event matching `filter` (see the module docs),
    /// unless more than `cap` match: then nothing is stored and the count is returned.
    pub async fn start_replay(
        &self,
        filter: EventFilter,
        force: bool,
        cap: i64,
    ) -> Result<StartReplay> {
        self.write(move |conn| {
            let (clause, mut args) = filter.sql();
            let clause = format!("{clause} AND state IN {}", replayable(force));
            let matching: i64 = conn.query_row(
                &format!("SELECT COUNT(*) FROM events {clause}"),
                params_from_iter(args.iter()),
                |r| r.get(0),
            )?;
            if matching > cap {
                return Ok(StartReplay::TooMany { matching, cap });
            }
            let now = now_ms();
            let stored = serde_json::to_string(&filter).unwrap_or_default();
            let state = if matching == 0 {
                JobState::Done
            } else {
                JobState::Running
            };
            conn.exec(
                "INSERT INTO replay_jobs (filter, include_done, state, total, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![stored, force, state.as_str(), matching, now],
            )?;
            let job = conn.last_insert_rowid();
            args.push(job.into());
            conn.execute(
                &format!(
                    "INSERT INTO replay_job_events (job_id, event_id, step)
                     SELECT ?{}, id, 'pending' FROM events {clause}",
                    args.len()
                ),
                params_from_iter(args),
            )?;
            let started = job_on(conn, job)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            Ok(StartReplay::Started(started))
        })
        .await
    }

    /// Queues up to `batch` more events of the oldest running job, oldest events first, and
    /// ends the job when none is left. Returns how many were queued (0: nothing to do).
    pub async fn replay_step(&self, batch: u32) -> Result<usize> {
        self.write(move |conn| {
            let Some((job, force)) = conn
                .row(
                    "SELECT id, include_done FROM replay_jobs WHERE state = 'running' ORDER BY id LIMIT 1",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?)),
                )
                .optional()?
            else {
                return Ok(0);
            };
            let ids: Vec<i64> = conn
                .prepare_cached(
                    "SELECT event_id FROM replay_job_events WHERE job_id = ?1 AND step = 'pending'
                     ORDER BY event_id LIMIT ?2",
                )?
                .query_map(params![job, batch], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut queued = 0;
            for id in &ids {
                let step = match requeue_on(conn, *id, force)? {
                    Retried::Queued => {
                        queued += 1;
                        "queued"
                    }
                    _ => "passed_over",
                };
                conn.exec(
                    "UPDATE replay_job_events SET step = ?3 WHERE job_id = ?1 AND event_id = ?2",
                    params![job, id, step],
                )?;
            }
            let left: bool = conn
                .prepare_cached(
                    "SELECT 1 FROM replay_job_events WHERE job_id = ?1 AND step = 'pending'",
                )?
                .exists(params![job])?;
            let next = if left {
                JobState::Running
            } else {
                JobState::Done
            };
            conn.exec(
                "UPDATE replay_jobs SET state = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'running'",
                params![job, next.as_str(), now_ms()],
            )?;
            Ok(queued)
        })
        .await
    }

    /// One job with its progress.
    pub fn replay_job(&self, id: i64) -> Result<Option<ReplayJob>> {
        job_on(&self.conn(), id)
    }

    /// The newest jobs first.
    pub fn replay_jobs(&self, limit: u32) -> Result<Vec<ReplayJob>> {
        let conn = self.conn();
        let ids: Vec<i64> = conn
            .prepare_cached("SELECT id FROM replay_jobs ORDER BY id DESC LIMIT ?1")?
            .query_map(params![limit], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            jobs.extend(job_on(&conn, id)?);
        }
        Ok(jobs)
    }

    /// Cancels a running job: events it queued stay queued, the rest are left as they are.
    /// `None`: no such job; a job no longer running is returned unchanged.
    pub async fn cancel_replay(&self, id: i64) -> Result<Option<ReplayJob>> {
        self.write(move |conn| {
            conn.exec(
                "UPDATE replay_jobs SET state = 'cancelled', updated_at = ?2
                 WHERE id = ?1 AND state = 'running'",
                params![id, now_ms()],
            )?;
            job_on(conn, id)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Claim;

    fn temp_store() -> Store {
        let dir = std::env::temp_dir().join(format!("sy-replay-{}", uuid::Uuid::new_v4()));
        Store::open(&dir.join("t.db")).expect("open")
    }

    fn set_state(s: &Store, id: i64, state: &str) {
        s.conn()
            .execute(
                "UPDATE events SET state = ?2 WHERE id = ?1",
                params![id, state],
            )
            .unwrap();
    }

    #[tokio::test]
    async fn a_job_over_the_cap_starts_nothing_and_one_within_queues_in_steps() {
        let s = temp_store();
        let mut ids = Vec::new();
        for n in 0..5 {
            let Ok(crate::store::Enqueued::New(id)) = s.enqueue("a", "k", &n.to_string(), "{}")
            else {
                panic!("not new")
            };
            ids.push(id);
        }
        for id in &ids[..4] {
            set_state(&s, *id, "dead");
        }
        set_state(&s, ids[4], "done");
        let dead = EventFilter::default();
        match s.start_replay(dead.clone(), false, 3).await.unwrap() {
            StartReplay::TooMany { matching, cap } => assert_eq!((matching, cap), (4, 3)),
            StartReplay::Started(j) => panic!("started {j:?}"),
        }
        assert!(s.replay_jobs(10).unwrap().is_empty());

        let StartReplay::Started(job) = s.start_replay(dead, false, 10).await.unwrap() else {
            panic!("refused")
        };
        assert_eq!(
            (job.total, job.pending, job.state),
            (4, 4, JobState::Running)
        );
        // One event is queued by someone else before the job's turn: passed over.
        s.retry_event(ids[3]).unwrap();
        assert_eq!(s.replay_step(2).await.unwrap(), 2);
        assert_eq!(s.replay_step(2).await.unwrap(), 1);
        let job = s.replay_job(job.id).unwrap().unwrap();
        assert_eq!((job.queued, job.passed_over, job.pending), (3, 1, 0));
        assert_eq!(job.state, JobState::Done);
        assert_eq!(job.outcomes, vec![(EventState::Queued, 3)]);
        // The done event was not touched without force; with it, it is.
        assert_eq!(s.event(ids[4]).unwrap().unwrap().state, EventState::Done);
        assert_eq!(
            s.replay_event(ids[4], false).await.unwrap(),
            Retried::Refused(EventState::Done)
        );
        assert_eq!(s.replay_event(ids[4], true).await.unwrap(), Retried::Queued);
        assert!(s.claim(&Claim::any("r", 60_000)).unwrap().is_some());
    }

    #[tokio::test]
    async fn a_cancelled_job_queues_nothing_more() {
        let s = temp_store();
        for n in 0..3 {
            s.enqueue("a", "k", &n.to_string(), "{}").unwrap();
        }
        s.conn()
            .execute("UPDATE events SET state = 'dead'", [])
            .unwrap();
        let StartReplay::Started(job) = s
            .start_replay(EventFilter::default(), false, 10)
            .await
            .unwrap()
        else {
            panic!("refused")
        };
        assert_eq!(s.replay_step(1).await.unwrap(), 1);
        let cancelled = s.cancel_replay(job.id).await.unwrap().unwrap();
        assert_eq!(cancelled.state, JobState::Cancelled);
        assert_eq!(s.replay_step(10).await.unwrap(), 0);
        let job = s.replay_job(job.id).unwrap().unwrap();
        assert_eq!((job.queued, job.pending), (1, 2));
    }
}
