//! Waiting events: an event held with a reason until something it needs changes. One mechanism
//! for every such hold (an ATS not connected yet, an ATS permission missing, a connector's state
//! quota full), so operators see them the same way and have one way to resume them.
//!
//! A waiting event has `state = 'waiting'`, `waiting_for` (what resumes it, [`WaitFor`]), its
//! reason in `last_error`, and `next_attempt_at` = when it is re-checked by itself ([`NEVER`]:
//! only by a trigger). No worker claims it; it becomes `queued` again when
//! - its re-check time comes ([`Store::wake_rechecks`], on every heartbeat of every host);
//! - what it waits for may have changed ([`Store::resume_waiting`]: a (re)connect, a connector
//!   activated, the integration's settings changed, a host started with a new config);
//! - an operator asks ([`Store::retry_event`], [`Store::resume_waiting`] for one integration).
//!   An event waiting for an [`WaitFor::Operator`] decision resumes only this way.
//!
//! Waiting costs no attempt (the claim's count is taken back) and says nothing about the vendor
//! (the circuit breaker does not see it). Each wait is one line of the event's history.

use std::sync::Arc;

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use super::queue::{record_attempt, AttemptOutcome};
use super::sql::{args, Db, Dialect};
use super::{now_ms, EventState, Result, Store};

/// `next_attempt_at` of an event that waits for a trigger only (year 9999): never due by time.
pub const NEVER: i64 = 253_402_300_799_000;

/// What a waiting event waits for, and so what resumes it (besides an operator's retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WaitFor {
    /// The integration's ATS grant (an OAuth app not connected yet, or revoked before the event
    /// was received): resumed when the integration is connected.
    Connect,
    /// A permission or scope the ATS refused: re-checked every `worker.recheck_secs`, and
    /// resumed on a reconnect or a change of the integration.
    Permission,
    /// The connector's state quota: re-checked every `worker.recheck_secs`, and resumed when a
    /// connector version is activated or the integration's settings (its quota) change.
    Quota,
    /// An operator's decision: the connector cannot tell whether its vendor placed the order
    /// (an answer was lost) and the vendor cannot be searched. Never re-checked by itself;
    /// resumed only by an operator (`POST /admin/events/{id}/retry`,
    /// `POST /admin/integrations/{id}/resume`). The screening's connector state goes with the
    /// wait ([`Wait::drop_screening`]), so the operator's retry starts the screening afresh.
    Operator,
}

impl WaitFor {
    pub const ALL: [WaitFor; 4] = [
        WaitFor::Connect,
        WaitFor::Permission,
        WaitFor::Quota,
        WaitFor::Operator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WaitFor::Connect => "connect",
            WaitFor::Permission => "permission",
            WaitFor::Quota => "quota",
            WaitFor::Operator => "operator",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<WaitFor> {
        WaitFor::ALL.into_iter().find(|w| w.as_str() == s)
    }
}

/// Adds `events.waiting_for` to older databases, and turns their parked events (queued, due in
/// year 9999) into events waiting for a connect.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    let has = conn
        .prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'waiting_for'")?
        .exists([])?;
    if !has {
        conn.execute_batch("ALTER TABLE events ADD COLUMN waiting_for TEXT")?;
        conn.execute(
            "UPDATE events SET state = 'waiting', waiting_for = 'connect'
             WHERE state = 'queued' AND next_attempt_at >= ?1",
            params![NEVER],
        )?;
    }
    Ok(())
}

/// A claimed event put to wait (see [`Store::wait_event`]).
#[derive(Debug, Clone)]
pub struct Wait {
    pub run: String,
    /// The claim put to wait ([`super::Event::claim_seq`]): the fence, with `run`.
    pub claim_seq: i64,
    pub reason: String,
    pub waiting_for: WaitFor,
    /// When it is re-checked by itself (unix ms); `None`: only a trigger resumes it.
    pub recheck_at: Option<i64>,
    pub connector_version: Option<String>,
    pub started_at_ms: i64,
    pub took_ms: i64,
    /// The idempotency key of a screening whose connector state (its screening-scoped entries:
    /// the intent) is dropped in the same write: an operator's retry then invites afresh, and no
    /// crash between the two can leave a wait without the drop or the reverse.
    pub drop_screening: Option<String>,
}

/// The waiting events of an integration for one [`WaitFor`].
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Waiting {
    pub waiting_for: WaitFor,
    pub events: i64,
    /// The reason of the latest of them.
    pub reason: Option<String>,
}

/// What [`Store::retry_event`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// Queued, due now, with a fresh attempt budget.
    Queued,
    /// Not retried: it is in this state (queued, running or done).
    Refused(EventState),
    NotFound,
}

impl Store {
    /// Puts an event this run holds to wait, without counting the attempt. Fenced by run and
    /// claim like an outcome (false: that claim no longer holds it). A wait for a connect that raced a
    /// connect (the integration has a grant now) is queued due now instead: it cannot wait
    /// forever for a connect that already happened.
    pub async fn wait_event(&self, id: i64, wait: Wait) -> Result<bool> {
        self.wait_event_with_calls(id, Arc::new(wait), 0, Arc::new([]))
            .await
    }

    /// [`Store::wait_event`] that also records the outbound `calls` of attempt number `attempt`
    /// in the same write (one commit, as an outcome and its calls): they are kept even when
    /// the wait is fenced off, since they were made. Shared, so a worker retrying the write
    /// copies neither.
    pub async fn wait_event_with_calls(
        &self,
        id: i64,
        wait: Arc<Wait>,
        attempt: u32,
        calls: Arc<[crate::recording::OutboundCall]>,
    ) -> Result<bool> {
        let fence = (wait.run.clone(), wait.claim_seq);
        self.write_db(move |db| {
            super::traffic::record_calls_on(db, id, attempt, &calls)?;
            let next = wait.recheck_at.unwrap_or(NEVER);
            let n = db.execute(
                &format!(
                    "UPDATE events SET state = 'waiting', waiting_for = ?3, last_error = ?4,
                        attempts = {}(attempts - 1, 0), next_attempt_at = ?5,
                        connector_version = COALESCE(?6, connector_version),
                        lease_until = NULL, lease_run = NULL
                     WHERE id = ?1 AND state = 'running' AND lease_run = ?2 AND claim_seq = ?7",
                    db.dialect().greatest()
                ),
                args![
                    id,
                    &wait.run,
                    wait.waiting_for.as_str(),
                    &wait.reason,
                    next,
                    wait.connector_version.as_deref(),
                    wait.claim_seq
                ],
            )?;
            if n == 0 {
                return Ok(false);
            }
            record_attempt(
                db,
                id,
                Some(&wait.run),
                wait.started_at_ms,
                wait.took_ms,
                AttemptOutcome::Waiting,
                Some(&wait.reason),
                wait.connector_version.as_deref(),
            )?;
            if let Some(key) = &wait.drop_screening {
                let integration = db
                    .query_one("SELECT integration FROM events WHERE id = ?1", args![id])?
                    .text(0)?;
                super::kv::drop_screening_on(db, &integration, key)?;
            }
            if wait.waiting_for == WaitFor::Connect {
                db.execute(
                    "UPDATE events SET state = 'queued', waiting_for = NULL, next_attempt_at = ?2
                     WHERE id = ?1 AND EXISTS
                        (SELECT 1 FROM oauth_tokens t WHERE t.integration = events.integration)",
                    args![id, now_ms()],
                )?;
            }
            Ok(true)
        })
        .await
        .inspect(|_| self.held.ended(&fence.0, id, fence.1))
    }

    /// Makes waiting events due now: of one integration or all, waiting for one thing or any.
    /// They go back to their place in the queue (ahead of events received after them). Returns
    /// how many were resumed.
    pub fn resume_waiting(
        &self,
        integration: Option<&str>,
        waiting_for: Option<WaitFor>,
    ) -> Result<usize> {
        let resumed = self.db(|db| resume_on(db, integration, waiting_for))?;
        self.notify_due(resumed > 0);
        Ok(resumed)
    }

    /// Re-checks: waiting events whose re-check time has come are queued. Returns how many.
    pub fn wake_rechecks(&self) -> Result<usize> {
        let woken = self.db(|db| db.execute(&wake_sql(db.dialect()), args![now_ms()]))?;
        self.notify_due(woken > 0);
        Ok(woken as usize)
    }

    /// An operator's "retry now": a waiting, dead or skipped event is queued, due now, with a
    /// fresh attempt budget (its history kept). A replay is safe: every step is idempotent, and
    /// an order already recorded for the event's screening is not started again.
    pub fn retry_event(&self, id: i64) -> Result<Retried> {
        let retried = self.db(|db| super::replay::requeue_on(db, id, false))?;
        self.notify_due(retried == Retried::Queued);
        Ok(retried)
    }

    /// An integration's waiting events, counted by what they wait for, with the latest reason.
    pub fn waiting(&self, integration: &str) -> Result<Vec<Waiting>> {
        let rows = self.db(|db| {
            db.query(
                "SELECT waiting_for, COUNT(*),
                        (SELECT last_error FROM events l WHERE l.integration = e.integration
                            AND l.state = 'waiting' AND l.waiting_for = e.waiting_for
                            ORDER BY l.id DESC LIMIT 1)
                 FROM events e WHERE integration = ?1 AND state = 'waiting'
                 GROUP BY integration, waiting_for ORDER BY waiting_for",
                args![integration],
            )
        })?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(waiting_for) = row.opt_text(0)?.as_deref().and_then(WaitFor::parse) {
                out.push(Waiting {
                    waiting_for,
                    events: row.int(1)?,
                    reason: row.opt_text(2)?,
                });
            }
        }
        Ok(out)
    }

    /// Waiting events of every integration: `(integration, waiting_for, events)`, on a read
    /// connection (`/metrics`: never behind the group commit's batch).
    pub fn waiting_all(&self) -> Result<Vec<(String, WaitFor, i64)>> {
        let rows = self.read_db(|db| {
            db.query(
                "SELECT integration, waiting_for, COUNT(*) FROM events WHERE state = 'waiting'
                 GROUP BY integration, waiting_for",
                &[],
            )
        })?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(what) = row.opt_text(1)?.as_deref().and_then(WaitFor::parse) {
                out.push((row.text(0)?, what, row.int(2)?));
            }
        }
        Ok(out)
    }

    /// How many of the integration's events wait for `what`.
    pub fn waiting_for(&self, integration: &str, what: WaitFor) -> Result<i64> {
        Ok(self
            .waiting(integration)?
            .into_iter()
            .find(|w| w.waiting_for == what)
            .map_or(0, |w| w.events))
    }
}

/// [`Store::resume_waiting`] on a connection the caller holds (inside a transaction or not).
pub(in crate::store) fn resume_on(
    db: &dyn Db,
    integration: Option<&str>,
    waiting_for: Option<WaitFor>,
) -> Result<usize> {
    let resumed = db.execute(
        &format!(
            "UPDATE events SET state = 'queued', waiting_for = NULL,
                next_attempt_at = {}(received_at, ?3)
             WHERE state = 'waiting' AND (CAST(?1 AS TEXT) IS NULL OR integration = ?1)
               AND (CAST(?2 AS TEXT) IS NULL OR waiting_for = ?2)",
            db.dialect().least()
        ),
        args![integration, waiting_for.map(WaitFor::as_str), now_ms()],
    )?;
    Ok(resumed as usize)
}

/// [`Store::wake_rechecks`]'s statement: the due waits queued again.
pub(in crate::store) fn wake_sql(dialect: Dialect) -> String {
    // SQLite (no table statistics) would pick the full index by state and walk every waiting
    // event, those due never (a connect, an operator) too; PostgreSQL's statistics find the
    // partial index of waits by due time.
    let events = match dialect {
        Dialect::Sqlite => "events INDEXED BY events_waiting_due",
        Dialect::Postgres => "events",
    };
    format!(
        "UPDATE {events} SET state = 'queued', waiting_for = NULL
         WHERE state = 'waiting' AND next_attempt_at <= ?1"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::queue::Claim;
    use crate::store::testing::on_both_async;
    use crate::store::Event;

    /// A wait of claim `e`, as run `run` would record it.
    fn wait(e: &Event, run: &str, what: WaitFor, recheck_at: Option<i64>) -> Wait {
        Wait {
            run: run.into(),
            claim_seq: e.claim_seq,
            reason: format!("needs {}", what.as_str()),
            waiting_for: what,
            recheck_at,
            connector_version: None,
            started_at_ms: now_ms(),
            took_ms: 1,
            drop_screening: None,
        }
    }

    fn claim(s: &Store) -> Option<Event> {
        s.claim(&Claim::any("r", 60_000)).unwrap()
    }

    #[tokio::test]
    async fn a_waiting_event_is_not_claimed_until_its_trigger_and_costs_no_attempt() {
        on_both_async!(|s: Store| async move {
            s.enqueue("a", "k", "1", "{}").unwrap();
            let e = claim(&s).unwrap();
            assert!(s
                .wait_event(e.id, wait(&e, "r", WaitFor::Permission, None))
                .await
                .unwrap());
            let shown = s.event(e.id).unwrap().unwrap();
            assert_eq!(shown.state, EventState::Waiting);
            assert_eq!(shown.waiting_for, Some(WaitFor::Permission));
            assert_eq!(shown.last_error.as_deref(), Some("needs permission"));
            assert!(claim(&s).is_none(), "a waiting event is not claimable");
            assert_eq!(
                s.wake_rechecks().unwrap(),
                0,
                "no re-check time: only a trigger"
            );
            // A trigger for something else leaves it waiting.
            assert_eq!(
                s.resume_waiting(Some("a"), Some(WaitFor::Quota)).unwrap(),
                0
            );
            assert_eq!(
                s.resume_waiting(Some("a"), Some(WaitFor::Permission))
                    .unwrap(),
                1
            );
            let again = claim(&s).unwrap();
            assert_eq!(again.attempts, 1, "the wait did not count as an attempt");
            let history = s.event_detail(e.id).unwrap().unwrap().attempts_history;
            assert_eq!(history[0].outcome, "waiting");
        });
    }

    fn vendor_call(url: &str) -> crate::recording::OutboundCall {
        use crate::recording::{CallTarget, OutboundCall};
        OutboundCall::ended(CallTarget::Vendor, "POST", url, now_ms(), Ok(201))
    }

    #[tokio::test]
    async fn a_recheck_time_resumes_by_itself_and_a_lost_lease_changes_nothing() {
        on_both_async!(|s: Store| async move {
            s.enqueue("a", "k", "1", "{}").unwrap();
            let e = claim(&s).unwrap();
            let fenced = wait(&e, "other-run", WaitFor::Quota, None);
            let calls = vec![vendor_call("http://v/fenced")];
            assert!(!s
                .wait_event_with_calls(e.id, fenced.into(), e.attempts, calls.into())
                .await
                .unwrap());
            assert_eq!(s.event(e.id).unwrap().unwrap().state, EventState::Running);
            let held = wait(&e, "r", WaitFor::Quota, Some(now_ms() - 1));
            let calls = vec![vendor_call("http://v/held")];
            assert!(s
                .wait_event_with_calls(e.id, held.into(), e.attempts, calls.into())
                .await
                .unwrap());
            // The calls were made: kept with the wait, and even when the wait was fenced off.
            let urls: Vec<String> = s
                .calls(e.id)
                .unwrap()
                .into_iter()
                .map(|c| c.call.url)
                .collect();
            assert_eq!(urls, ["http://v/fenced", "http://v/held"]);
            assert_eq!(s.waiting_for("a", WaitFor::Quota).unwrap(), 1);
            assert_eq!(s.wake_rechecks().unwrap(), 1);
            assert_eq!(claim(&s).unwrap().id, e.id);
        });
    }

    #[tokio::test]
    async fn an_operator_wait_drops_the_screenings_intent_and_only_an_operator_resumes_it() {
        on_both_async!(|s: Store| async move {
            s.enqueue("a", "k", "1", "{}").unwrap();
            s.kv_set_for_screening("a", "c", "lever:t1", "intent:lever:t1", "17")
                .unwrap();
            s.kv_set_for_screening("a", "c", "lever:t2", "intent:lever:t2", "18")
                .unwrap();
            let e = claim(&s).unwrap();
            let held = Wait {
                drop_screening: Some("lever:t1".into()),
                ..wait(&e, "r", WaitFor::Operator, None)
            };
            assert!(s.wait_event(e.id, held).await.unwrap());
            assert_eq!(s.kv_get("a", "c", "intent:lever:t1").unwrap(), None);
            assert_eq!(
                s.kv_get("a", "c", "intent:lever:t2").unwrap().as_deref(),
                Some("18"),
                "another screening's entries stay"
            );
            assert_eq!(s.wake_rechecks().unwrap(), 0, "never re-checked by itself");
            for what in [WaitFor::Connect, WaitFor::Permission, WaitFor::Quota] {
                assert_eq!(s.resume_waiting(None, Some(what)).unwrap(), 0);
            }
            assert_eq!(s.waiting_for("a", WaitFor::Operator).unwrap(), 1);
            assert_eq!(s.retry_event(e.id).unwrap(), Retried::Queued);
            assert_eq!(claim(&s).unwrap().id, e.id);
        });
    }

    #[tokio::test]
    async fn an_operator_retries_dead_and_waiting_events_but_not_done_ones() {
        on_both_async!(|s: Store| async move {
            s.enqueue("a", "k", "1", "{}").unwrap();
            let e = claim(&s).unwrap();
            assert!(s
                .wait_event(e.id, wait(&e, "r", WaitFor::Connect, None))
                .await
                .unwrap());
            assert_eq!(s.retry_event(e.id).unwrap(), Retried::Queued);
            assert_eq!(
                s.retry_event(e.id).unwrap(),
                Retried::Refused(EventState::Queued)
            );
            assert_eq!(s.retry_event(999).unwrap(), Retried::NotFound);
        });
    }
}
