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

use serde::{Deserialize, Serialize};

use super::search::EventFilter;
use super::sql::{args, Db};
use super::{now_ms, EventState, Result, Retried, Store, StoreError};

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
pub(super) fn requeue_on(db: &dyn Db, id: i64, force: bool) -> Result<Retried> {
    let Some(row) = db.query_opt("SELECT state FROM events WHERE id = ?1", args![id])? else {
        return Ok(Retried::NotFound);
    };
    let state = row.text(0)?;
    let n = db.execute(
        &format!(
            "UPDATE events SET state = 'queued', waiting_for = NULL, attempts = 0,
                next_attempt_at = ?2, finished_at = NULL
             WHERE id = ?1 AND state IN {}",
            replayable(force)
        ),
        args![id, now_ms()],
    )?;
    Ok(if n == 1 {
        Retried::Queued
    } else {
        Retried::Refused(EventState::parse(&state))
    })
}

fn job_on(db: &dyn Db, id: i64) -> Result<Option<ReplayJob>> {
    let Some(row) = db.query_opt(
        "SELECT filter, include_done, state, total, created_at, updated_at FROM replay_jobs
         WHERE id = ?1",
        args![id],
    )?
    else {
        return Ok(None);
    };
    let (filter, force, state, total, created, updated) = (
        row.text(0)?,
        row.int(1)? != 0,
        row.text(2)?,
        row.int(3)?,
        row.int(4)?,
        row.int(5)?,
    );
    let (mut pending, mut queued, mut passed_over) = (0, 0, 0);
    for row in db.query(
        "SELECT step, COUNT(*) FROM replay_job_events WHERE job_id = ?1 GROUP BY step",
        args![id],
    )? {
        let n = row.int(1)?;
        match row.text(0)?.as_str() {
            "pending" => pending = n,
            "queued" => queued = n,
            _ => passed_over = n,
        }
    }
    let outcomes = db
        .query(
            "SELECT e.state, COUNT(*) FROM replay_job_events j JOIN events e ON e.id = j.event_id
             WHERE j.job_id = ?1 AND j.step = 'queued' GROUP BY e.state ORDER BY e.state",
            args![id],
        )?
        .iter()
        .map(|r| Ok((EventState::parse(&r.text(0)?), r.int(1)?)))
        .collect::<Result<Vec<_>>>()?;
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
        let retried = self.write_db(move |db| requeue_on(db, id, force)).await?;
        self.notify_due(retried == Retried::Queued);
        Ok(retried)
    }

    /// Starts a job replaying every replayable event matching `filter` (see the module docs),
    /// unless more than `cap` match: then nothing is stored and the count is returned.
    pub async fn start_replay(
        &self,
        filter: EventFilter,
        force: bool,
        cap: i64,
    ) -> Result<StartReplay> {
        self.write_db(move |db| {
            let (clause, mut args) = filter.sql();
            let clause = format!("{clause} AND state IN {}", replayable(force));
            let matching = db
                .query_one(&format!("SELECT COUNT(*) FROM events {clause}"), &args)?
                .int(0)?;
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
            let job = db
                .query_one(
                    "INSERT INTO replay_jobs (filter, include_done, state, total, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                     RETURNING id",
                    args![stored, force, state.as_str(), matching, now],
                )?
                .int(0)?;
            args.push(job.into());
            // The cast: PostgreSQL infers no type for a parameter in a SELECT list.
            db.execute(
                &format!(
                    "INSERT INTO replay_job_events (job_id, event_id, step)
                     SELECT CAST(?{} AS BIGINT), id, 'pending' FROM events {clause}",
                    args.len()
                ),
                &args,
            )?;
            let started = job_on(db, job)?.ok_or(StoreError::NoRow)?;
            Ok(StartReplay::Started(started))
        })
        .await
    }

    /// Queues up to `batch` more events of the oldest running job, oldest events first, and
    /// ends the job when none is left. Returns how many were queued (0: nothing to do).
    pub async fn replay_step(&self, batch: u32) -> Result<usize> {
        let queued = self.write_db(move |db| {
            let Some(row) = db.query_opt(
                "SELECT id, include_done FROM replay_jobs WHERE state = 'running'
                 ORDER BY id LIMIT 1",
                args![],
            )?
            else {
                return Ok(0);
            };
            let (job, force) = (row.int(0)?, row.int(1)? != 0);
            let ids = db
                .query(
                    "SELECT event_id FROM replay_job_events WHERE job_id = ?1 AND step = 'pending'
                     ORDER BY event_id LIMIT ?2",
                    args![job, batch],
                )?
                .iter()
                .map(|r| r.int(0))
                .collect::<Result<Vec<i64>>>()?;
            let mut queued = 0;
            for id in &ids {
                let step = match requeue_on(db, *id, force)? {
                    Retried::Queued => {
                        queued += 1;
                        "queued"
                    }
                    _ => "passed_over",
                };
                db.execute(
                    "UPDATE replay_job_events SET step = ?3 WHERE job_id = ?1 AND event_id = ?2",
                    args![job, *id, step],
                )?;
            }
            let left = db
                .query_opt(
                    "SELECT 1 FROM replay_job_events WHERE job_id = ?1 AND step = 'pending'
                     LIMIT 1",
                    args![job],
                )?
                .is_some();
            let next = if left {
                JobState::Running
            } else {
                JobState::Done
            };
            db.execute(
                "UPDATE replay_jobs SET state = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'running'",
                args![job, next.as_str(), now_ms()],
            )?;
            Ok(queued)
        })
        .await?;
        self.notify_due(queued > 0);
        Ok(queued)
    }

    /// One job with its progress.
    pub fn replay_job(&self, id: i64) -> Result<Option<ReplayJob>> {
        self.db(|db| job_on(db, id))
    }

    /// The newest jobs first.
    pub fn replay_jobs(&self, limit: u32) -> Result<Vec<ReplayJob>> {
        self.db(|db| {
            let ids = db
                .query(
                    "SELECT id FROM replay_jobs ORDER BY id DESC LIMIT ?1",
                    args![limit],
                )?
                .iter()
                .map(|r| r.int(0))
                .collect::<Result<Vec<i64>>>()?;
            let mut jobs = Vec::with_capacity(ids.len());
            for id in ids {
                jobs.extend(job_on(db, id)?);
            }
            Ok(jobs)
        })
    }

    /// Cancels a running job: events it queued stay queued, the rest are left as they are.
    /// `None`: no such job; a job no longer running is returned unchanged.
    pub async fn cancel_replay(&self, id: i64) -> Result<Option<ReplayJob>> {
        self.write_db(move |db| {
            db.execute(
                "UPDATE replay_jobs SET state = 'cancelled', updated_at = ?2
                 WHERE id = ?1 AND state = 'running'",
                args![id, now_ms()],
            )?;
            job_on(db, id)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::on_both_async;
    use crate::store::Claim;

    fn set_state(s: &Store, id: i64, state: &str) {
        s.db(|db| {
            db.execute(
                "UPDATE events SET state = ?2 WHERE id = ?1",
                args![id, state],
            )
        })
        .unwrap();
    }

    #[tokio::test]
    async fn a_job_over_the_cap_starts_nothing_and_one_within_queues_in_steps() {
        on_both_async!(|s: Store| async move {
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
        });
    }

    #[tokio::test]
    async fn a_cancelled_job_queues_nothing_more() {
        on_both_async!(|s: Store| async move {
            for n in 0..3 {
                s.enqueue("a", "k", &n.to_string(), "{}").unwrap();
            }
            s.db(|db| db.execute("UPDATE events SET state = 'dead'", args![]))
                .unwrap();
            let StartReplay::Started(job) = s
                .start_replay(EventFilter::default(), false, 10)
                .await
                .unwrap()
            else {
                panic!("refused")
            };
            assert!(!job.force);
            assert_eq!(s.replay_step(1).await.unwrap(), 1);
            let cancelled = s.cancel_replay(job.id).await.unwrap().unwrap();
            assert_eq!(cancelled.state, JobState::Cancelled);
            assert_eq!(s.replay_step(10).await.unwrap(), 0);
            let job = s.replay_job(job.id).unwrap().unwrap();
            assert_eq!((job.queued, job.pending), (1, 2));
            assert_eq!(s.cancel_replay(999).await.unwrap().map(|j| j.id), None);
        });
    }

    #[tokio::test]
    async fn a_forced_job_with_a_filter_takes_done_events_and_keeps_its_filter() {
        on_both_async!(|s: Store| async move {
            for (n, integration) in ["a", "b", "a"].into_iter().enumerate() {
                let Ok(crate::store::Enqueued::New(id)) =
                    s.enqueue(integration, "k", &n.to_string(), "{}")
                else {
                    panic!("not new")
                };
                set_state(&s, id, "done");
            }
            let only_a = EventFilter {
                integrations: Some(vec!["a".into()]),
                ..EventFilter::default()
            };
            let StartReplay::Started(none) =
                s.start_replay(only_a.clone(), false, 10).await.unwrap()
            else {
                panic!("refused")
            };
            assert_eq!((none.total, none.state), (0, JobState::Done));
            let StartReplay::Started(job) = s.start_replay(only_a.clone(), true, 10).await.unwrap()
            else {
                panic!("refused")
            };
            assert_eq!((job.total, job.force, &job.filter), (2, true, &only_a));
            assert_eq!(s.replay_step(10).await.unwrap(), 2);
            let jobs = s.replay_jobs(10).unwrap();
            assert_eq!(
                jobs.iter().map(|j| (j.id, j.state)).collect::<Vec<_>>(),
                vec![(job.id, JobState::Done), (none.id, JobState::Done)],
                "newest first"
            );
            assert_eq!(jobs[0].outcomes, vec![(EventState::Queued, 2)]);
        });
    }
}
