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
//!
//! Waiting costs no attempt (the claim's count is taken back) and says nothing about the vendor
//! (the circuit breaker does not see it). Each wait is one line of the event's history.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use super::queue::{record_attempt, AttemptOutcome};
use super::{now_ms, Cached, EventState, Result, Store};

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
}

impl WaitFor {
    pub const ALL: [WaitFor; 3] = [WaitFor::Connect, WaitFor::Permission, WaitFor::Quota];

    pub fn as_str(self) -> &'static str {
        match self {
            WaitFor::Connect => "connect",
            WaitFor::Permission => "permission",
            WaitFor::Quota => "quota",
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
    pub reason: String,
    pub waiting_for: WaitFor,
    /// When it is re-checked by itself (unix ms); `None`: only a trigger resumes it.
    pub recheck_at: Option<i64>,
    pub connector_version: Option<String>,
    pub started_at_ms: i64,
    pub took_ms: i64,
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
    /// Puts an event this run holds to wait, without counting the attempt. Fenced by the lease
    /// like an outcome (false: the run no longer holds it). A wait for a connect that raced a
    /// connect (the integration has a grant now) is queued due now instead: it cannot wait
    /// forever for a connect that already happened.
    pub async fn wait_event(&self, id: i64, wait: Wait) -> Result<bool> {
        self.write(move |conn| {
            let next = wait.recheck_at.unwrap_or(NEVER);
            let n = conn.exec(
                "UPDATE events SET state = 'waiting', waiting_for = ?3, last_error = ?4,
                    attempts = MAX(attempts - 1, 0), next_attempt_at = ?5,
                    connector_version = COALESCE(?6, connector_version),
                    lease_until = NULL, lease_run = NULL
                 WHERE id = ?1 AND state = 'running' AND lease_run = ?2",
                params![
                    id,
                    wait.run,
                    wait.waiting_for.as_str(),
                    wait.reason,
                    next,
                    wait.connector_version
                ],
            )?;
            if n == 0 {
                return Ok(false);
            }
            record_attempt(
                conn,
                id,
                Some(&wait.run),
                wait.started_at_ms,
                wait.took_ms,
                AttemptOutcome::Waiting,
                Some(&wait.reason),
                wait.connector_version.as_deref(),
            )?;
            if wait.waiting_for == WaitFor::Connect {
                conn.exec(
                    "UPDATE events SET state = 'queued', waiting_for = NULL, next_attempt_at = ?2
                     WHERE id = ?1 AND EXISTS
                        (SELECT 1 FROM oauth_tokens t WHERE t.integration = events.integration)",
                    params![id, now_ms()],
                )?;
            }
            Ok(true)
        })
        .await
    }

    /// Makes waiting events due now: of one integration or all, waiting for one thing or any.
    /// They go back to their place in the queue (ahead of events received after them). Returns
    /// how many were resumed.
    pub fn resume_waiting(
        &self,
        integration: Option<&str>,
        waiting_for: Option<WaitFor>,
    ) -> Result<usize> {
        resume_on(&self.conn(), integration, waiting_for)
    }

    /// Re-checks: waiting events whose re-check time has come are queued. Returns how many.
    pub fn wake_rechecks(&self) -> Result<usize> {
        Ok(self.conn().exec(
            "UPDATE events SET state = 'queued', waiting_for = NULL
             WHERE state = 'waiting' AND next_attempt_at <= ?1",
            params![now_ms()],
        )?)
    }

    /// An operator's "retry now": a waiting, dead or skipped event is queued, due now, with a
    /// fresh attempt budget (its history kept). A replay is safe: every step is idempotent, and
    /// an order already recorded for the event's screening is not started again.
    pub fn retry_event(&self, id: i64) -> Result<Retried> {
        super::replay::requeue_on(&self.conn(), id, false)
    }

    /// An integration's waiting events, counted by what they wait for, with the latest reason.
    pub fn waiting(&self, integration: &str) -> Result<Vec<Waiting>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT waiting_for, COUNT(*),
                    (SELECT last_error FROM events l WHERE l.integration = e.integration
                        AND l.state = 'waiting' AND l.waiting_for = e.waiting_for
                        ORDER BY l.id DESC LIMIT 1)
             FROM events e WHERE integration = ?1 AND state = 'waiting'
             GROUP BY waiting_for ORDER BY waiting_for",
        )?;
        let rows = stmt.query_map(params![integration], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (what, events, reason) = row?;
            if let Some(waiting_for) = what.as_deref().and_then(WaitFor::parse) {
                out.push(Waiting {
                    waiting_for,
                    events,
                    reason,
                });
            }
        }
        Ok(out)
    }

    /// Waiting events of every integration: `(integration, waiting_for, events)`.
    pub fn waiting_all(&self) -> Result<Vec<(String, WaitFor, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT integration, waiting_for, COUNT(*) FROM events WHERE state = 'waiting'
             GROUP BY integration, waiting_for",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (integration, what, n) = row?;
            if let Some(what) = what.as_deref().and_then(WaitFor::parse) {
                out.push((integration, what, n));
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
pub(crate) fn resume_on(
    conn: &Connection,
    integration: Option<&str>,
    waiting_for: Option<WaitFor>,
) -> Result<usize> {
    Ok(conn.exec(
        "UPDATE events SET state = 'queued', waiting_for = NULL,
            next_attempt_at = MIN(received_at, ?3)
         WHERE state = 'waiting' AND (?1 IS NULL OR integration = ?1)
           AND (?2 IS NULL OR waiting_for = ?2)",
        params![integration, waiting_for.map(WaitFor::as_str), now_ms()],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::queue::Claim;

    fn store() -> Store {
        let dir = std::env::temp_dir().join(format!("sy-waiting-{}", uuid::Uuid::new_v4()));
        Store::open(&dir.join("db.sqlite")).expect("store opens")
    }

    fn wait(run: &str, what: WaitFor, recheck_at: Option<i64>) -> Wait {
        Wait {
            run: run.into(),
            reason: format!("needs {}", what.as_str()),
            waiting_for: what,
            recheck_at,
            connector_version: None,
            started_at_ms: now_ms(),
            took_ms: 1,
        }
    }

    fn claim(s: &Store) -> Option<crate::store::Event> {
        s.claim(&Claim::any("r", 60_000)).unwrap()
    }

    #[tokio::test]
    async fn a_waiting_event_is_not_claimed_until_its_trigger_and_costs_no_attempt() {
        let s = store();
        s.enqueue("a", "k", "1", "{}").unwrap();
        let e = claim(&s).unwrap();
        assert!(s
            .wait_event(e.id, wait("r", WaitFor::Permission, None))
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
    }

    #[tokio::test]
    async fn a_recheck_time_resumes_by_itself_and_a_lost_lease_changes_nothing() {
        let s = store();
        s.enqueue("a", "k", "1", "{}").unwrap();
        let e = claim(&s).unwrap();
        assert!(!s
            .wait_event(e.id, wait("other-run", WaitFor::Quota, None))
            .await
            .unwrap());
        assert!(s
            .wait_event(e.id, wait("r", WaitFor::Quota, Some(now_ms() - 1)))
            .await
            .unwrap());
        assert_eq!(s.waiting_for("a", WaitFor::Quota).unwrap(), 1);
        assert_eq!(s.wake_rechecks().unwrap(), 1);
        assert_eq!(claim(&s).unwrap().id, e.id);
    }

    #[tokio::test]
    async fn an_operator_retries_dead_and_waiting_events_but_not_done_ones() {
        let s = store();
        s.enqueue("a", "k", "1", "{}").unwrap();
        let e = claim(&s).unwrap();
        assert!(s
            .wait_event(e.id, wait("r", WaitFor::Connect, None))
            .await
            .unwrap());
        assert_eq!(s.retry_event(e.id).unwrap(), Retried::Queued);
        assert_eq!(
            s.retry_event(e.id).unwrap(),
            Retried::Refused(EventState::Queued)
        );
        assert_eq!(s.retry_event(999).unwrap(), Retried::NotFound);
    }
}
