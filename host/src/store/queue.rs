//! The event queue: claiming due events under a lease held by a process run ([`super::runs`]),
//! recording each attempt's outcome with its history (`attempts`, bounded per event), and the
//! read side operators use (one event with its attempts, listings by state).
//!
//! Two claims. [`Store::claim`]: one row, "the oldest due event of this integration (or of any
//! integration not excluded) that nobody holds". [`Store::claim_batch`] (the dispatcher's is
//! [`Store::claim_batch_after`], with the worker's finished attempt, awaited on its task),
//! up to a given number of due events per integration and in total, as **one write of the group
//! commit** (one transaction with the webhooks that arrived meanwhile, one fsync for all),
//! dealt round robin across the integrations. Every claimed event is
//! leased to the run at once, whether a worker starts it now or a moment later, so the heartbeat
//! renews it and a crash hands it back like a running one; one never started is handed back on a
//! graceful stop by [`Store::unclaim`] (its attempt not counted, nothing in its history).
//! An event handed or taken back keeps its `next_attempt_at`, so it goes back to its place in
//! the claim order, ahead of the events received after it.
//!
//! Written once for both backends ([`super::sql`]), except the row locks of a claim. A batch
//! claim reads each asked integration's oldest due events (on PostgreSQL `FOR UPDATE SKIP
//! LOCKED`: a host never waits for rows another host is claiming), deals them round robin and
//! leases them with one `UPDATE … RETURNING` (on PostgreSQL, where every integration asked gets
//! all it wants, each one's are selected and leased by one statement, all sent together, with
//! the worker's finished attempt and, alone in the group commit's batch, its commit: one round
//! trip); [`Store::claim`] is one `UPDATE …
//! WHERE id = (SELECT … LIMIT 1 FOR UPDATE SKIP LOCKED)`. Either runs in a transaction that ends
//! before the claim returns (no transaction is held while a connector runs). SQLite gets the same
//! effect from its single writer.
//! Running events are never claimed here: a lease is taken back only through [`super::runs`]
//! (its holder died, or its lease expired without renewal), which logs and counts it.
//!
//! **The claim fence.** Every claim bumps `claim_seq`, which nothing decreases (`attempts`, the
//! user-visible count, goes back down when a claim is handed back uncounted and to 0 on a
//! retry). Every call that writes an outcome of a claim ([`Store::finish`],
//! [`Store::wait_event`], [`Store::release`], [`Store::unclaim`]) matches the event's run **and**
//! `claim_seq`, so an older claim's outcome changes nothing even when run and attempt match.
//! The body is not in `events` (it is in `event_bodies`, written once with the event): a claim
//! reads it by the event's key for the worker and never rewrites it.

use std::sync::Arc;

use rusqlite::Connection;
use serde::Serialize;

use super::queued_integrations::QUEUED_INTEGRATIONS;
use super::sql::{args, values, Db, Dialect, Row, Statement, Value};
use super::{now_ms, Backend, Event, EventState, Result, Store, StoreError};

/// Attempts kept per event (older ones are deleted as new ones are recorded).
pub const HISTORY_PER_EVENT: i64 = 20;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    run_id TEXT,
    started_at INTEGER NOT NULL,
    took_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    connector_version TEXT
);
CREATE INDEX IF NOT EXISTS attempts_by_event ON attempts (event_id, id);
CREATE INDEX IF NOT EXISTS events_by_integration_due ON events (state, integration, next_attempt_at);
"#;

/// Columns added to `events` after its first release; added to older databases at open.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('events')")?;
    let cols: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (col, ty) in [("lease_run", "TEXT"), ("claimed_at", "INTEGER")] {
        if !cols.iter().any(|c| c == col) {
            conn.execute_batch(&format!("ALTER TABLE events ADD COLUMN {col} {ty}"))?;
        }
    }
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// What a worker may claim.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The process run that will hold the lease.
    pub run: &'a str,
    /// Lease length; the run's heartbeat renews it while the step runs.
    pub lease_ms: i64,
    /// Only this integration's events, or any integration's.
    pub integration: Option<&'a str>,
    /// Never these integrations' events (at their concurrency limit, or paused by a breaker).
    pub exclude: &'a [String],
}

impl<'a> Claim<'a> {
    /// Any integration's oldest due event, for `run`.
    pub fn any(run: &'a str, lease_ms: i64) -> Claim<'a> {
        Claim {
            run,
            lease_ms,
            integration: None,
            exclude: &[],
        }
    }
}

/// How an attempt ended, as kept in its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Done,
    Skipped,
    /// Failed; will be retried.
    Retry,
    Dead,
    /// The host stopped before the attempt finished; handed back without counting it.
    Released,
    /// The run holding the attempt died (crash, lost host); taken back by another run.
    Abandoned,
    /// Put to wait (see [`super::waiting`]); not counted.
    Waiting,
}

impl AttemptOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Done => "done",
            AttemptOutcome::Skipped => "skipped",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Dead => "dead",
            AttemptOutcome::Released => "released",
            AttemptOutcome::Abandoned => "abandoned",
            AttemptOutcome::Waiting => "waiting",
        }
    }
}

/// One attempt of an event.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Attempt {
    pub attempt: u32,
    pub run_id: Option<String>,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    pub took_ms: i64,
    pub outcome: String,
    pub error: Option<String>,
    pub connector_version: Option<String>,
}

/// An event as operators see it: the row, its timing, and its attempts (oldest first).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: Event,
    /// When a queued event is due, or a waiting one is re-checked (none: only by a trigger).
    pub next_attempt_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// The run holding it now (running events only).
    pub lease_run: Option<String>,
    pub attempts_history: Vec<Attempt>,
}

/// The outcome of one attempt, for [`Store::finish`]. Fenced by `run` and `claim_seq`: it is
/// recorded only while that run still holds that claim of the event (not after its lease was
/// taken back, even if the same run claimed the event again since).
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    pub run: &'a str,
    /// The claim this is the outcome of: the event's [`Event::claim_seq`] as claimed. Unlike
    /// `attempts` (handed back by a wait or a release, reset by a retry) it only grows.
    pub claim_seq: i64,
    pub state: EventState,
    pub error: Option<&'a str>,
    pub connector_version: Option<&'a str>,
    /// Re-queue at this time (unix ms) instead of ending in `state`.
    pub retry_at: Option<i64>,
    pub started_at_ms: i64,
    pub took_ms: i64,
}

/// An event's columns as [`event_row`] reads them. The body is read from `event_bodies` by the
/// event's key (where an event is shown or processed); nothing here writes it.
pub(super) const EVENT_COLS: &str = "id, integration, kind, \
     (SELECT body FROM event_bodies b WHERE b.event_id = events.id), state, attempts, last_error, \
     connector_version, waiting_for, received_at, claim_seq";

/// How many columns [`EVENT_COLS`] lists: the position of the first column a statement selects
/// after them (a claim's due time, an event's detail), counted from the list itself so that a
/// column added to it cannot shift what follows.
pub(super) const EVENT_COLS_LEN: usize = columns(EVENT_COLS);

/// The columns of a select list: its commas outside parentheses, plus one.
const fn columns(list: &str) -> usize {
    let bytes = list.as_bytes();
    let (mut depth, mut n, mut i) = (0usize, 1, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => n += 1,
            _ => {}
        }
        i += 1;
    }
    n
}

pub(in crate::store) fn event_row(r: &Row) -> Result<Event> {
    Ok(Event {
        id: r.int(0)?,
        integration: r.text(1)?,
        kind: r.text(2)?,
        payload: r.text(3)?,
        state: EventState::parse(&r.text(4)?),
        attempts: count(r.int(5)?)?,
        last_error: r.opt_text(6)?,
        connector_version: r.opt_text(7)?,
        waiting_for: r.opt_text(8)?.as_deref().and_then(super::WaitFor::parse),
        received_at_ms: r.int(9)?,
        claim_seq: r.int(10)?,
    })
}

/// An attempt number as stored (never negative, far below `u32::MAX`).
fn count(n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::Row(format!("an attempt count of {n}")))
}

/// What locks the rows a claim selects: on PostgreSQL, rows another host is claiming are
/// skipped rather than waited for; SQLite's single writer needs nothing.
pub(in crate::store) fn skip_locked(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
    }
}

/// `id` is one of the integers of the JSON array parameter `?{n}`. On PostgreSQL an array
/// (`= ANY`), so the planner looks each id up in the primary key: as an `IN (subquery)` it
/// estimated 100 rows and hash-joined them against every queued event (a scan of the whole
/// queue and its dead index entries per claim: ~4 ms with 9,000 queued, against ~0.5 ms).
pub(in crate::store) fn id_in_json(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => format!("id IN (SELECT value FROM json_each(?{n}))"),
        Dialect::Postgres => format!(
            "id = ANY(ARRAY(SELECT CAST(x AS BIGINT)
                  FROM json_array_elements_text(CAST(CAST(?{n} AS TEXT) AS JSON)) x))"
        ),
    }
}

/// The strings of the JSON array parameter `?{n}`, as a subquery's rows.
fn json_texts(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => format!("SELECT value FROM json_each(?{n})"),
        // Bound as text (the driver binds strings only to text types), then read as JSON.
        Dialect::Postgres => {
            format!("SELECT json_array_elements_text(CAST(CAST(?{n} AS TEXT) AS JSON))")
        }
    }
}

/// Appends an attempt to an event's history and trims it to [`HISTORY_PER_EVENT`].
#[allow(clippy::too_many_arguments)]
pub(in crate::store) fn record_attempt(
    db: &dyn Db,
    event_id: i64,
    run: Option<&str>,
    started_at_ms: i64,
    took_ms: i64,
    outcome: AttemptOutcome,
    error: Option<&str>,
    connector_version: Option<&str>,
) -> Result<()> {
    let args = args![
        event_id,
        run,
        started_at_ms,
        took_ms,
        outcome.as_str(),
        error,
        connector_version,
        HISTORY_PER_EVENT
    ];
    match db.dialect() {
        // One round trip: the trim does not see the row inserted beside it (one snapshot), so
        // it keeps one fewer of the older ones.
        Dialect::Postgres => db.execute(
            &format!(
                "WITH ins AS ({ATTEMPT_INSERT} FROM events WHERE id = ?1 RETURNING id)
                 {}",
                trim_older("attempts", "?8 - (SELECT COUNT(*) FROM ins)")
            ),
            args,
        )?,
        Dialect::Sqlite => {
            db.execute(
                &format!("{ATTEMPT_INSERT} FROM events WHERE id = ?1"),
                &args[..7],
            )?;
            db.execute(&TRIM_SQLITE, &args[..1])?
        }
    };
    Ok(())
}

/// An attempt's row from an event's (`id`, `attempts`, `connector_version`): `?2` run, `?3`
/// started at, `?4` took, `?5` outcome, `?6` error, `?7` connector version (else the event's).
/// The casts: PostgreSQL infers no type for a parameter in a SELECT list.
const ATTEMPT_INSERT: &str = "INSERT INTO attempts (event_id, attempt, run_id, started_at,
        took_ms, outcome, error, connector_version)
    SELECT id, attempts, CAST(?2 AS TEXT), CAST(?3 AS BIGINT), CAST(?4 AS BIGINT),
           CAST(?5 AS TEXT), CAST(?6 AS TEXT), COALESCE(CAST(?7 AS TEXT), connector_version)";

/// An event's history trimmed to [`HISTORY_PER_EVENT`] on SQLite ([`trim_older`]).
static TRIM_SQLITE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| trim_older("attempts", &HISTORY_PER_EVENT.to_string()));

/// Deletes from `table` the rows of event `?1` older than its newest `keep` (SQL: a number, or
/// on PostgreSQL an expression of the statement's own): one seek on the table's
/// `(event_id, id)` index to the newest row past those kept, and a range delete up to it
/// (nothing when there are no more than `keep`). What `id NOT IN (SELECT id … LIMIT keep)` did,
/// without building the kept ids into a temporary index (SQLite, at every outcome on the group
/// commit's writer) or a hashed subplan (PostgreSQL: 22.6 µs against 13.9 µs of the server's
/// time per call, with 1–25 rows per event). On SQLite the bound is inlined: it re-prepares a
/// statement whose `LIMIT` or `OFFSET` is a bound parameter each time it is bound.
pub(in crate::store) fn trim_older(table: &str, keep: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE event_id = ?1 AND id <=
            (SELECT id FROM {table} WHERE event_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET {keep})"
    )
}

/// [`Finish`], owned, for a job of the writer.
#[derive(Debug, Clone)]
struct Outcome {
    run: String,
    claim_seq: i64,
    state: EventState,
    error: Option<String>,
    connector_version: Option<String>,
    retry_at: Option<i64>,
    started_at_ms: i64,
    took_ms: i64,
}

/// An attempt's outcome and its outbound calls, owned: what a worker records when the attempt
/// ends, alone or with its next claim. Shared: the worker keeps one for a retry of the write
/// while the write takes another, without copying the calls.
#[derive(Debug, Clone)]
pub struct Finished(Arc<FinishedParts>);

#[derive(Debug)]
struct FinishedParts {
    id: i64,
    /// The attempt's number as users see it (the event's `attempts` as claimed), for its calls.
    attempt: u32,
    outcome: Outcome,
    calls: Vec<crate::recording::OutboundCall>,
}

impl Finished {
    /// Outcome `f` of attempt number `attempt` of event `id`, with the outbound `calls` that
    /// attempt made.
    pub fn new(
        id: i64,
        attempt: u32,
        f: &Finish<'_>,
        calls: Vec<crate::recording::OutboundCall>,
    ) -> Finished {
        Finished(Arc::new(FinishedParts {
            id,
            attempt,
            outcome: Outcome {
                run: f.run.to_owned(),
                claim_seq: f.claim_seq,
                state: f.state,
                error: f.error.map(str::to_owned),
                connector_version: f.connector_version.map(str::to_owned),
                retry_at: f.retry_at,
                started_at_ms: f.started_at_ms,
                took_ms: f.took_ms,
            },
            calls,
        }))
    }

    /// The event it is the outcome of.
    pub fn event(&self) -> i64 {
        self.0.id
    }

    /// Its claim is no longer held by its run once this is written (see [`super::runs::Held`]).
    fn written(&self, held: &super::runs::Held) {
        held.ended(&self.0.outcome.run, self.0.id, self.0.outcome.claim_seq);
    }
}

/// [`Finished`] in the caller's write: the calls are kept even when the outcome is fenced off
/// (another run took the event): they were made.
fn finished_on(db: &dyn Db, f: &Finished) -> Result<bool> {
    if db.dialect() == Dialect::Postgres {
        // One round trip: the calls and the outcome do not wait on each other.
        let answers = db.query_all(&finished_statements_pg(f))?;
        return recorded(answers.last());
    }
    let f = &*f.0;
    super::traffic::record_calls_on(db, f.id, f.attempt, &f.calls)?;
    finish_on(db, f.id, &f.outcome)
}

/// [`finished_on`]'s statements on PostgreSQL, the outcome's last: they answer rows (sent with
/// [`Db::query_all`]).
fn finished_statements_pg(f: &Finished) -> Vec<Statement> {
    let f = &*f.0;
    let mut statements: Vec<Statement> =
        super::traffic::calls_statement_pg(f.id, f.attempt, &f.calls)
            .into_iter()
            .collect();
    statements.push(finish_statement_pg(f.id, &f.outcome));
    statements
}

/// Whether [`finish_statement_pg`] recorded its outcome, from its answer.
fn recorded(answer: Option<&Vec<Row>>) -> Result<bool> {
    let row = answer
        .and_then(|rows| rows.first())
        .ok_or(StoreError::NoRow)?;
    Ok(row.int(0)? == 1)
}

/// [`Store::finish`] on a connection the caller holds in a transaction (or savepoint).
fn finish_on(db: &dyn Db, id: i64, f: &Outcome) -> Result<bool> {
    if db.dialect() == Dialect::Postgres {
        let finish = finish_statement_pg(id, f);
        return Ok(db.query_one(&finish.sql, &finish.values)?.int(0)? == 1);
    }
    let (update, args) = finish_parts(id, f);
    // Statements in-process: the shared texts, each with the parameters it numbers.
    let n = db.execute(update, &args[..11])?;
    if n == 1 {
        db.execute(
            &format!("{ATTEMPT_INSERT} FROM events WHERE id = ?1"),
            &args[..7],
        )?;
        db.execute(&TRIM_SQLITE, &args[..1])?;
    }
    Ok(n == 1)
}

/// [`finish_on`] on PostgreSQL as one statement answering whether it recorded the outcome: the
/// outcome, its history row and the history's trim (which does not see the row inserted
/// beside it, so it keeps one fewer of the older ones).
fn finish_statement_pg(id: i64, f: &Outcome) -> Statement {
    let (update, args) = finish_parts(id, f);
    Statement::new(
        format!(
            "WITH u AS ({update} RETURNING id, attempts, connector_version),
             ins AS ({ATTEMPT_INSERT} FROM u RETURNING id),
             trimmed AS ({})
             SELECT COUNT(*) FROM u",
            trim_older("attempts", "?12 - (SELECT COUNT(*) FROM ins)")
        ),
        args,
    )
}

/// An outcome's `UPDATE` and its parameters: `?1`..`?7` as [`record_attempt`] takes them,
/// `?8`.. the update's own, `?12` the history kept.
fn finish_parts(id: i64, f: &Outcome) -> (&'static str, Vec<Value>) {
    let (state, next, finished) = match f.retry_at {
        Some(at) => (EventState::Queued, at, None),
        None => (f.state, 0, Some(now_ms())),
    };
    let outcome = match (f.retry_at, f.state) {
        (Some(_), _) => AttemptOutcome::Retry,
        (None, EventState::Done) => AttemptOutcome::Done,
        (None, EventState::Skipped) => AttemptOutcome::Skipped,
        _ => AttemptOutcome::Dead,
    };
    // A success keeps the last error: what went wrong before stays visible (and in history).
    // `?1`..`?7` as [`record_attempt`] takes them; `?8`.. the update's own.
    let update = "UPDATE events SET state = ?8, last_error = COALESCE(?6, last_error),
            connector_version = COALESCE(?7, connector_version),
            next_attempt_at = CASE WHEN CAST(?9 AS BIGINT) > 0 THEN ?9 ELSE next_attempt_at END,
            lease_until = NULL, lease_run = NULL, finished_at = ?10
         WHERE id = ?1 AND state = 'running' AND lease_run = ?2 AND claim_seq = ?11";
    let args = args![
        id,
        &f.run,
        f.started_at_ms,
        f.took_ms,
        outcome.as_str(),
        f.error.as_deref(),
        f.connector_version.as_deref(),
        state.as_str(),
        next,
        finished,
        f.claim_seq,
        HISTORY_PER_EVENT
    ];
    (update, args.to_vec())
}

impl Store {
    /// Claims the oldest due queued event allowed by `claim`, leased to `claim.run`.
    pub fn claim(&self, claim: &Claim<'_>) -> Result<Option<Event>> {
        let now = now_ms();
        // The exclusions are one parameter (a JSON array), so the statement's text is the same
        // whatever their number: the statement caches keep it (a `NOT IN (?4, ?5, …)` built per
        // call was parsed per call, its cost growing with the integrations configured).
        let excluded = serde_json::Value::from(claim.exclude.to_vec()).to_string();
        let mut args: Vec<Value> = vec![
            claim.run.into(),
            (now + claim.lease_ms).into(),
            now.into(),
            excluded.into(),
        ];
        let mut filter = String::new();
        if let Some(only) = claim.integration {
            args.push(only.into());
            filter.push_str(" AND integration = ?5");
        }
        self.db(|db| {
            let filter = format!(
                "{filter} AND integration NOT IN ({})",
                json_texts(db.dialect(), 4)
            );
            let sql = format!(
                "UPDATE events SET state = 'running', lease_run = ?1, lease_until = ?2,
                    claimed_at = ?3, attempts = attempts + 1, claim_seq = claim_seq + 1
                 WHERE id = (SELECT id FROM events
                             WHERE state = 'queued' AND next_attempt_at <= ?3{filter}
                             ORDER BY next_attempt_at, id LIMIT 1{})
                 RETURNING {EVENT_COLS}",
                skip_locked(db.dialect())
            );
            db.query_opt(&sql, &args)?
                .as_ref()
                .map(event_row)
                .transpose()
        })
        .inspect(|event| self.held.claimed(claim.run, event.as_slice()))
    }

    /// Claims, in one transaction, up to `want` due events of each integration and at most
    /// `total` in all, leased to `run` for `lease_ms`. Oldest first within an integration, dealt
    /// round robin across them in the order of `wants` (the first integration gets the first
    /// event, the second the second, …), which is also the order returned.
    ///
    /// The claim is one write of the group commit ([`Store::write_blocking`]): it shares the
    /// commit (and its fsync) with the webhooks arriving meanwhile, runs on the writer's thread,
    /// and never holds the connection while a worker thread waits for a CPU. It returns once
    /// the leases are committed; their flush may wait for the next flushed commit (a claim lost
    /// to a power loss leaves its events queued). It blocks: call it from a blocking thread.
    /// Used by tests only; the dispatcher claims with [`Store::claim_batch_after`], awaited on
    /// the worker's task, with the outcome of the attempt it just ended.
    pub fn claim_batch(
        &self,
        run: &str,
        lease_ms: i64,
        wants: &[(&str, usize)],
        total: usize,
    ) -> Result<Vec<Event>> {
        let wants: Vec<(String, usize)> = wants.iter().map(|(i, n)| (i.to_string(), *n)).collect();
        let mine = run.to_owned();
        self.write_db_later_blocking(move |db| claim_batch_on(db, &mine, lease_ms, &wants, total))
            .inspect(|events| self.held.claimed(run, events))
    }

    /// [`Store::claim_batch`] from an async task (a worker: no blocking thread), that first
    /// records the worker's finished attempt, if any, in the same write: one commit for "finish
    /// A, claim the next", instead of one each. Returns whether the outcome was recorded (see
    /// [`Store::finish`]) and the claimed events; on an error neither is stored.
    pub async fn claim_batch_after(
        &self,
        finished: Option<Finished>,
        run: &str,
        lease_ms: i64,
        wants: &[(&str, usize)],
        total: usize,
    ) -> Result<(Option<bool>, Vec<Event>)> {
        let mine = run.to_owned();
        let wants: Vec<(String, usize)> = wants.iter().map(|(i, n)| (i.to_string(), *n)).collect();
        let written = finished.clone();
        // On PostgreSQL the claim also reads which integrations have queued events, for the
        // next look (`queued_integrations`): what may have queued events since it was sent
        // makes that answer stale.
        let looked = match &self.backend {
            Backend::Postgres { pg, .. } => Some((pg.looked.clone(), pg.looked.since())),
            Backend::Sqlite { .. } => None,
        };
        let answer = self
            .write_db_later(move |db| {
                if db.dialect() == Dialect::Postgres {
                    return claim_after_pg(db, finished.as_ref(), &mine, lease_ms, &wants, total);
                }
                let recorded = finished.map(|f| finished_on(db, &f)).transpose()?;
                let claimed = claim_batch_on(db, &mine, lease_ms, &wants, total)?;
                Ok((recorded, claimed, None))
            })
            .await;
        let (recorded, events, queued) = answer?;
        if let Some(f) = written {
            f.written(&self.held);
        }
        self.held.claimed(run, &events);
        if let (Some((looked, since)), Some(queued)) = (looked, queued) {
            looked.keep(since, queued);
        }
        Ok((recorded, events))
    }

    /// Hands back events this run claimed but never started (a graceful stop): queued again as
    /// they were, in their place (`next_attempt_at` untouched, so they are claimed before events
    /// received after them), the claim's attempt not counted, nothing added to their history.
    /// Returns how many were still held. `claims` are `(id, claim_seq)` as claimed: an event
    /// claimed again since (after its lease was taken back) is left alone.
    pub fn unclaim(&self, claims: &[(i64, i64)], run: &str) -> Result<usize> {
        self.transaction(|db| {
            let sql = format!(
                "UPDATE events SET state = 'queued', lease_run = NULL, lease_until = NULL,
                    claimed_at = NULL, attempts = {}(attempts - 1, 0)
                 WHERE id = ?1 AND state = 'running' AND lease_run = ?2 AND claim_seq = ?3",
                db.dialect().greatest()
            );
            let mut n = 0;
            for (id, claim_seq) in claims {
                n += db.execute(&sql, args![*id, run, *claim_seq])?;
            }
            Ok(n as usize)
        })
        .inspect(|n| {
            for (id, claim_seq) in claims {
                self.held.ended(run, *id, *claim_seq);
            }
            self.notify_due(*n > 0)
        })
    }

    /// Milliseconds until the next queued event is due (None when nothing is queued).
    pub fn next_due_in(&self) -> Result<Option<i64>> {
        let next = self.read_db(|db| db.query_one(next_due_sql(db.dialect()), &[])?.opt_int(0))?;
        Ok(next.map(|t| (t - now_ms()).max(0)))
    }

    /// Records the outcome of an attempt and appends it to the event's history, atomically.
    /// Fenced by run and claim: if `f.run` no longer holds that claim of the event (its run was
    /// declared dead and another run took it, or it was handed back and claimed again), nothing
    /// changes and this returns false. Through the
    /// [`writer`](super::writer): one savepoint in a transaction shared with the other writes of
    /// the moment, answered once that transaction committed; its flush may wait for the next
    /// flushed commit (an outcome lost to a power loss is redone: its event is taken back).
    pub async fn finish(&self, id: i64, f: &Finish<'_>) -> Result<bool> {
        self.record_finished(Finished::new(id, 0, f, Vec::new()))
            .await
    }

    /// Records `finished` (its outcome and its outbound calls) in one write; see
    /// [`Store::finish`]. A worker records it with its next claim instead
    /// ([`Store::claim_batch_after`]) and comes here when that cannot be.
    pub async fn record_finished(&self, finished: Finished) -> Result<bool> {
        let written = finished.clone();
        self.write_db_later(move |db| finished_on(db, &finished))
            .await
            .inspect(|_| written.written(&self.held))
    }

    /// Hands an event this run holds back to the queue without counting the attempt (graceful
    /// stop), in its place (its due time kept). Fenced by run and claim like an outcome. Returns
    /// whether it was still held.
    pub fn release(&self, id: i64, run: &str, claim_seq: i64, started_at_ms: i64) -> Result<bool> {
        let now = now_ms();
        self.transaction(|db| {
            let d = db.dialect();
            let n = db.execute(
                &format!(
                    "UPDATE events SET state = 'queued', lease_run = NULL, lease_until = NULL,
                        next_attempt_at = {}(next_attempt_at, ?3),
                        attempts = {}(attempts - 1, 0)
                     WHERE id = ?1 AND state = 'running' AND lease_run = ?2 AND claim_seq = ?4",
                    d.least(),
                    d.greatest()
                ),
                args![id, run, now, claim_seq],
            )?;
            if n == 1 {
                record_attempt(
                    db,
                    id,
                    Some(run),
                    started_at_ms,
                    now - started_at_ms,
                    AttemptOutcome::Released,
                    Some("host stopping: handed back before it finished (not counted)"),
                    None,
                )?;
            }
            Ok(n == 1)
        })
        .inspect(|released| {
            self.held.ended(run, id, claim_seq);
            self.notify_due(*released)
        })
    }

    /// One event by id.
    pub fn event(&self, id: i64) -> Result<Option<Event>> {
        self.db(|db| {
            db.query_opt(
                &format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"),
                args![id],
            )?
            .as_ref()
            .map(event_row)
            .transpose()
        })
    }

    /// One event with its timing and attempt history.
    pub fn event_detail(&self, id: i64) -> Result<Option<EventDetail>> {
        let Some((event, next, finished, lease_run, history)) = self.db(|db| {
            let Some(row) = db.query_opt(
                &format!(
                    "SELECT {EVENT_COLS}, next_attempt_at, finished_at, lease_run
                     FROM events WHERE id = ?1"
                ),
                args![id],
            )?
            else {
                return Ok(None);
            };
            let history = db
                .query(
                    "SELECT attempt, run_id, started_at, took_ms, outcome, error, connector_version
                     FROM attempts WHERE event_id = ?1 ORDER BY id",
                    args![id],
                )?
                .iter()
                .map(|r| {
                    Ok(Attempt {
                        attempt: count(r.int(0)?)?,
                        run_id: r.opt_text(1)?,
                        started_at_ms: r.int(2)?,
                        took_ms: r.int(3)?,
                        outcome: r.text(4)?,
                        error: r.opt_text(5)?,
                        connector_version: r.opt_text(6)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Some((
                event_row(&row)?,
                row.int(EVENT_COLS_LEN)?,
                row.opt_int(EVENT_COLS_LEN + 1)?,
                row.opt_text(EVENT_COLS_LEN + 2)?,
                history,
            )))
        })?
        else {
            return Ok(None);
        };
        let due = match event.state {
            EventState::Queued => true,
            EventState::Waiting => next < super::waiting::NEVER,
            _ => false,
        };
        Ok(Some(EventDetail {
            event,
            next_attempt_at_ms: due.then_some(next),
            finished_at_ms: finished,
            lease_run,
            attempts_history: history,
        }))
    }

    /// Events of an integration, newest first (for operators and tests).
    pub fn events(&self, integration: &str, limit: u32) -> Result<Vec<Event>> {
        self.list_events(Some(integration), None, limit)
    }

    /// Events, newest first, optionally of one integration and/or in one state.
    pub fn list_events(
        &self,
        integration: Option<&str>,
        state: Option<EventState>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        self.db(|db| {
            db.query(
                &format!(
                    "SELECT {EVENT_COLS} FROM events
                     WHERE (CAST(?1 AS TEXT) IS NULL OR integration = ?1)
                       AND (CAST(?2 AS TEXT) IS NULL OR state = ?2)
                     ORDER BY id DESC LIMIT ?3"
                ),
                args![integration, state.map(EventState::as_str), limit],
            )?
            .iter()
            .map(event_row)
            .collect()
        })
    }

    /// Number of events queued or in progress (not those held in `waiting`). On a read
    /// connection: `/metrics` asks on an HTTP thread, and the writer's connection is held
    /// through each batch and its fsync (the count walks every queued entry of an index).
    pub fn queue_depth(&self) -> Result<i64> {
        self.read_db(|db| {
            db.query_one(
                "SELECT COUNT(*) FROM events WHERE state IN ('queued', 'running')",
                &[],
            )?
            .int(0)
        })
    }
}

/// The UPDATE that leases claimed events to a run: `?1` now, `?2` the run, `?3` the lease's
/// end. A claim statement appends which rows (`WHERE …`, or `FROM … WHERE …`).
const LEASE: &str = "UPDATE events SET state = 'running', lease_run = ?2, lease_until = ?3,
    claimed_at = ?1, attempts = attempts + 1, claim_seq = claim_seq + 1";

/// [`Store::claim_batch`] on the writer's connection, inside its transaction: one `SELECT` per
/// integration asked (on PostgreSQL `FOR UPDATE SKIP LOCKED`) and one `UPDATE` for all. (A
/// single PostgreSQL statement doing both, a recursive CTE, was tried: it took ~3.6 ms per claim
/// under the bench's load against ~1 ms for these, and halved the acks/s of one host, whose
/// webhooks commit in the same writer transaction.)
fn claim_batch_on(
    db: &dyn Db,
    run: &str,
    lease_ms: i64,
    wants: &[(String, usize)],
    total: usize,
) -> Result<Vec<Event>> {
    if db.dialect() == Dialect::Postgres {
        return Ok(claim_after_pg(db, None, run, lease_ms, wants, total)?.1);
    }
    if wants.is_empty() || total == 0 {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let order = deal(db, now, wants, total)?;
    lease(db, run, (now, lease_ms), &order)
}

/// Leases the events `order` (ids, in the deal's order) to `run` from `now` for `lease_ms`:
/// the claim's last statement (on PostgreSQL, alone in its batch, it carries the commit). The
/// events leased, in that order.
fn lease(db: &dyn Db, run: &str, (now, lease_ms): (i64, i64), order: &[i64]) -> Result<Vec<Event>> {
    if order.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::Value::from(order.to_vec()).to_string();
    let mut claimed = db
        .query_last(
            &lease_batch_sql(db.dialect()),
            args![now, run, now + lease_ms, ids],
        )?
        .iter()
        .map(|r| {
            let event = event_row(r)?;
            let at = order.iter().position(|id| *id == event.id).unwrap_or(0);
            Ok((at, event))
        })
        .collect::<Result<Vec<_>>>()?;
    claimed.sort_by_key(|(at, _)| *at);
    Ok(claimed.into_iter().map(|(_, event)| event).collect())
}

/// The integrations with queued events a claim read after its leases, in its round trip, for
/// the dispatcher's next look (`None`: not read).
type QueuedAfter = Option<Vec<String>>;

/// [`Store::claim_batch_after`] on PostgreSQL: the finished attempt's statements (its calls and
/// its fenced outcome, [`finished_statements_pg`]) go out with the deal's first `SELECT`s, one
/// round trip for both (they do not wait on each other's answers; the `SELECT`s run after the
/// outcome, in the same transaction, so an outcome that queues its event again for now lets it
/// be claimed at once, as before), then the lease, which carries the commit when the claim is
/// alone in its batch. Whether the outcome was recorded (`None`: none given), the events, and
/// the integrations with queued events after the lease when the claim read them
/// ([`lease_each_pg`]).
fn claim_after_pg(
    db: &dyn Db,
    finished: Option<&Finished>,
    run: &str,
    lease_ms: i64,
    wants: &[(String, usize)],
    total: usize,
) -> Result<(Option<bool>, Vec<Event>, QueuedAfter)> {
    if wants.is_empty() || total == 0 {
        let recorded = finished.map(|f| finished_on(db, f)).transpose()?;
        return Ok((recorded, Vec::new(), None));
    }
    let now = now_ms();
    let lead = finished.map(finished_statements_pg).unwrap_or_default();
    let fits = wants
        .iter()
        .map(|(_, want)| (*want).min(total))
        .sum::<usize>()
        <= total;
    let (answers, claimed, queued) = if fits {
        lease_each_pg(db, lead, run, (now, lease_ms), wants, total)?
    } else {
        let (answers, order) = deal_pg(db, now, wants, total, lead)?;
        (answers, lease(db, run, (now, lease_ms), &order)?, None)
    };
    let recorded = finished.map(|_| recorded(answers.last())).transpose()?;
    Ok((recorded, claimed, queued))
}

/// Leases the oldest due events of integration `?4`, at most `?5`, with [`LEASE`]'s `?1`..`?3`:
/// a [`DUE_POSTGRES`] and its lease in one statement; each row also answers its due time.
static LEASE_DUE_PG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{LEASE} WHERE id = ANY(ARRAY(SELECT id FROM events
            WHERE state = 'queued' AND next_attempt_at <= ?1 AND integration = ?4
            ORDER BY next_attempt_at, id LIMIT ?5 FOR UPDATE SKIP LOCKED))
         RETURNING {EVENT_COLS}, next_attempt_at"
    )
});

/// The claim when every integration asked can have all it wants (their wants, each capped at
/// `total`, add up to no more than it): the deal then gives each its oldest due events, so each
/// integration's are selected and leased by one statement ([`LEASE_DUE_PG`]), all sent
/// together after `lead` (statements answering rows) and, alone in the batch, with the commit:
/// one round trip. Last comes the dispatcher's next look, which integrations still have queued
/// events ([`QUEUED_INTEGRATIONS`], after the leases in their transaction). `lead`'s answers,
/// the events in the deal's order (round robin in the order of `wants`, oldest first within
/// each), and that list.
fn lease_each_pg(
    db: &dyn Db,
    lead: Vec<Statement>,
    run: &str,
    (now, lease_ms): (i64, i64),
    wants: &[(String, usize)],
    total: usize,
) -> Result<(Vec<Vec<Row>>, Vec<Event>, QueuedAfter)> {
    let lead_len = lead.len();
    let mut statements = lead;
    statements.extend(wants.iter().map(|(integration, want)| {
        let n = (*want).min(total) as i64;
        Statement::new(
            LEASE_DUE_PG.as_str(),
            values![now, run, now + lease_ms, integration.as_str(), n],
        )
    }));
    statements.push(Statement::new(QUEUED_INTEGRATIONS, Vec::new()));
    let mut answers = db.query_all_last(&statements)?;
    let queued = answers
        .pop()
        .ok_or(StoreError::NoRow)?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<Vec<_>>>()?;
    let leased = answers.split_off(lead_len);
    // Keyed by (rank within its integration, the integration's place): the deal's order.
    let mut claimed = Vec::new();
    for (at, rows) in leased.iter().enumerate() {
        let mut events = rows
            .iter()
            .map(|r| Ok((r.int(EVENT_COLS_LEN)?, event_row(r)?)))
            .collect::<Result<Vec<_>>>()?;
        events.sort_by_key(|(due, event)| (*due, event.id));
        claimed.extend(
            events
                .into_iter()
                .enumerate()
                .map(|(rank, (_, event))| ((rank, at), event)),
        );
    }
    claimed.sort_by_key(|(key, _)| *key);
    Ok((
        answers,
        claimed.into_iter().map(|(_, event)| event).collect(),
        Some(queued),
    ))
}

/// [`deal`] on PostgreSQL, its `SELECT`s sent together: each round those of as many
/// integrations as could still fill `total` (the one-by-one deal would send each of them: it
/// stops only once `total` integrations had due events), the first round after `lead`
/// (statements answering rows). `lead`'s answers, and the ids dealt.
fn deal_pg(
    db: &dyn Db,
    now: i64,
    wants: &[(String, usize)],
    total: usize,
    lead: Vec<Statement>,
) -> Result<(Vec<Vec<Row>>, Vec<i64>)> {
    let mut statements = lead;
    let mut lead = statements.len();
    let mut lead_answers = Vec::new();
    let mut due: Vec<std::collections::VecDeque<i64>> = Vec::with_capacity(wants.len());
    let mut with_due = 0;
    let mut asked = wants.iter();
    while with_due < total {
        let round: Vec<&(String, usize)> = asked.by_ref().take(total - with_due).collect();
        if round.is_empty() {
            break;
        }
        statements.extend(round.iter().map(|(integration, want)| {
            let n = (*want).min(total) as i64;
            Statement::new(DUE_POSTGRES, values![now, integration.as_str(), n])
        }));
        let mut answers = db.query_all(&statements)?.into_iter();
        lead_answers.extend(answers.by_ref().take(lead));
        for rows in answers {
            let ids = rows
                .iter()
                .map(|r| r.int(0))
                .collect::<Result<std::collections::VecDeque<i64>>>()?;
            with_due += usize::from(!ids.is_empty());
            due.push(ids);
        }
        statements = Vec::new();
        lead = 0;
    }
    Ok((lead_answers, deal_round_robin(due, total)))
}

/// [`Store::next_due_in`]'s statement: the first entry of the partial index of queued events by
/// due time. SQLite (no table statistics) picked the full index by state for `state =
/// 'queued'` and aggregated every queued event's entry: each idle worker's look cost 31 ms with
/// 90,000 queued (a backlog behind a down ATS), 3 µs on the partial index.
pub(in crate::store) fn next_due_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "SELECT MIN(next_attempt_at) FROM events INDEXED BY events_queued_next
             WHERE state = 'queued'"
        }
        Dialect::Postgres => "SELECT MIN(next_attempt_at) FROM events WHERE state = 'queued'",
    }
}

/// The batch claim's lease of the ids [`deal`] chose: [`LEASE`]'s parameters, and `?4` the ids
/// as a JSON array.
pub(in crate::store) fn lease_batch_sql(dialect: Dialect) -> String {
    // SQLite (no table statistics) takes `state = 'queued'` for a selective index term and
    // walked every queued event's index entry to find the few ids asked: a claim's cost grew
    // with the backlog, on the writer every webhook waits for. `+` keeps the term off any
    // index, so the ids are looked up by rowid.
    let state = match dialect {
        Dialect::Sqlite => "+state",
        Dialect::Postgres => "state",
    };
    format!(
        "{LEASE} WHERE {} AND {state} = 'queued' RETURNING {EVENT_COLS}",
        id_in_json(dialect, 4)
    )
}

/// An integration's oldest due events (on PostgreSQL locked, skipping those another host is
/// claiming). On SQLite the limit is a cast, not the bare parameter: a bare `LIMIT ?3` made
/// SQLite re-prepare the statement at every bind (about 6 % of the host's CPU in processing).
const DUE_SQLITE: &str = "SELECT id FROM events
    WHERE state = 'queued' AND next_attempt_at <= ?1 AND integration = ?2
    ORDER BY next_attempt_at, id LIMIT CAST(?3 AS INTEGER)";
const DUE_POSTGRES: &str = "SELECT id FROM events
    WHERE state = 'queued' AND next_attempt_at <= ?1 AND integration = ?2
    ORDER BY next_attempt_at, id LIMIT ?3 FOR UPDATE SKIP LOCKED";

/// The deal: each integration's oldest due event ids (one `SELECT` each, until `total`
/// integrations with due events were seen: the first round fills the total from those), dealt
/// one per integration per round, in the order of `wants`, up to `total`.
fn deal(db: &dyn Db, now: i64, wants: &[(String, usize)], total: usize) -> Result<Vec<i64>> {
    let select = match db.dialect() {
        Dialect::Sqlite => DUE_SQLITE,
        Dialect::Postgres => DUE_POSTGRES,
    };
    let mut due: Vec<std::collections::VecDeque<i64>> = Vec::with_capacity(wants.len());
    let mut with_due = 0;
    for (integration, want) in wants {
        if with_due >= total {
            break;
        }
        let n = (*want).min(total) as i64;
        let ids = db
            .query(select, args![now, integration, n])?
            .iter()
            .map(|r| r.int(0))
            .collect::<Result<std::collections::VecDeque<i64>>>()?;
        with_due += usize::from(!ids.is_empty());
        due.push(ids);
    }
    Ok(deal_round_robin(due, total))
}

/// Each integration's due ids (in the order asked) dealt one per integration per round, up to
/// `total`.
fn deal_round_robin(mut due: Vec<std::collections::VecDeque<i64>>, total: usize) -> Vec<i64> {
    let mut order = Vec::new();
    while order.len() < total && due.iter().any(|d| !d.is_empty()) {
        for ids in due.iter_mut() {
            if order.len() == total {
                break;
            }
            if let Some(id) = ids.pop_front() {
                order.push(id);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{on_both, on_both_async, postgres_url};
    use crate::store::Enqueued;

    fn claim<'a>(run: &'a str, only: Option<&'a str>, exclude: &'a [String]) -> Claim<'a> {
        Claim {
            run,
            lease_ms: 60_000,
            integration: only,
            exclude,
        }
    }

    fn finish<'a>(
        run: &'a str,
        claim_seq: i64,
        state: EventState,
        error: Option<&'static str>,
    ) -> Finish<'a> {
        Finish {
            run,
            claim_seq,
            state,
            error,
            connector_version: Some("c@1#abc"),
            retry_at: None,
            started_at_ms: now_ms(),
            took_ms: 3,
        }
    }

    /// What a statement selects after [`EVENT_COLS`] is read at [`EVENT_COLS_LEN`], which the
    /// list itself gives (a subquery's commas are not columns).
    #[test]
    fn the_column_after_the_event_columns_is_found_from_their_list() {
        assert_eq!(columns("a, (SELECT b FROM t WHERE c IN (1, 2)), d"), 3);
        on_both(|s| {
            s.enqueue("i", "k", "d1", "{}").unwrap();
            let row = s
                .read_db(|db| {
                    db.query_one(
                        &format!("SELECT {EVENT_COLS}, next_attempt_at FROM events"),
                        &[],
                    )
                })
                .unwrap();
            assert_eq!(row.0.len(), EVENT_COLS_LEN + 1);
            let event = event_row(&row).unwrap();
            assert_eq!(row.int(EVENT_COLS_LEN).unwrap(), event.received_at_ms);
        });
    }

    #[test]
    fn claims_respect_the_integration_filter_and_exclusions() {
        on_both(|s| {
            s.enqueue("a", "k", "1", "{}").unwrap();
            s.enqueue("b", "k", "2", "{}").unwrap();
            let excluded = vec!["a".to_string()];
            let got = s.claim(&claim("r", None, &excluded)).unwrap().unwrap();
            assert_eq!(got.integration, "b");
            assert!(s.claim(&claim("r", Some("b"), &[])).unwrap().is_none());
            let got = s.claim(&claim("r", Some("a"), &[])).unwrap().unwrap();
            assert_eq!(got.integration, "a");
            // Running events are not claimable again here.
            assert!(s.claim(&claim("r2", None, &[])).unwrap().is_none());
        });
    }

    #[tokio::test]
    async fn an_outcome_rides_with_the_next_claim_in_one_commit() {
        on_both_async!(|s: Store| async move {
            s.enqueue("a", "k", "1", "{}").unwrap();
            s.enqueue("a", "k", "2", "{}").unwrap();
            let (_, first) = s
                .claim_batch_after(None, "r", 60_000, &[("a", 1)], 1)
                .await
                .unwrap();
            let call = crate::recording::OutboundCall::ended(
                crate::recording::CallTarget::Vendor,
                "POST",
                "https://vendor.example/invite",
                now_ms(),
                Ok(201),
            );
            let done = Finished::new(
                first[0].id,
                first[0].attempts,
                &finish("r", first[0].claim_seq, EventState::Done, None),
                vec![call],
            );
            let commits = s.writer_stats().commits;
            let (recorded, next) = s
                .claim_batch_after(Some(done.clone()), "r", 60_000, &[("a", 1)], 1)
                .await
                .unwrap();
            assert_eq!(s.writer_stats().commits, commits + 1, "one commit for both");
            assert_eq!(recorded, Some(true));
            assert_eq!(next.len(), 1);
            assert_ne!(next[0].id, first[0].id);
            let ended = s.event(first[0].id).unwrap().unwrap();
            assert_eq!(ended.state, EventState::Done);
            assert_eq!(s.calls(first[0].id).unwrap().len(), 1, "its calls with it");
            // Recorded again: fenced by run and claim, the outcome is not counted twice.
            assert!(!s.record_finished(done).await.unwrap());
            let history = s
                .event_detail(first[0].id)
                .unwrap()
                .unwrap()
                .attempts_history;
            assert_eq!(history.len(), 1, "{history:?}");
        });
    }

    /// On PostgreSQL an outcome and its outbound calls are one round trip (then the commit's):
    /// neither waits for the other's answer.
    #[tokio::test]
    async fn on_postgres_an_outcome_with_its_calls_is_one_round_trip() {
        let s = crate::store::testing::postgres();
        for key in ["1", "2"] {
            s.enqueue("a", "k", key, "{}").unwrap();
        }
        let mut trips = Vec::new();
        for _ in 0..2 {
            let (_, claimed) = s
                .claim_batch_after(None, "r", 60_000, &[("a", 1)], 1)
                .await
                .unwrap();
            let e = &claimed[0];
            // The enqueues' NOTIFYs (one trailing) counted before, not inside, the window.
            s.notifies_counted().await;
            let before = s.writer_stats().round_trips;
            assert!(s.record_finished(done(e, vendor_call())).await.unwrap());
            trips.push(s.writer_stats().round_trips - before);
            assert_eq!(s.calls(e.id).unwrap().len(), 1);
        }
        // The second: its statements prepared by the first.
        assert_eq!(trips[1], 2, "the outcome with its calls, then the commit");
    }

    /// An outbound call, for an attempt's outcome.
    fn vendor_call() -> Vec<crate::recording::OutboundCall> {
        vec![crate::recording::OutboundCall::ended(
            crate::recording::CallTarget::Vendor,
            "POST",
            "https://vendor.example/invite",
            now_ms(),
            Ok(201),
        )]
    }

    /// Event `e`'s attempt done, as run `r` claimed it, with `calls`.
    fn done(e: &Event, calls: Vec<crate::recording::OutboundCall>) -> Finished {
        let outcome = finish("r", e.claim_seq, EventState::Done, None);
        Finished::new(e.id, e.attempts, &outcome, calls)
    }

    /// A worker's outcome (with its calls) and its next claim, `wants` of at most `total`, on
    /// PostgreSQL: the round trips, once its statements are prepared.
    async fn outcome_and_claim_trips(s: &Store, wants: &[(&str, usize)], total: usize) -> u64 {
        let (_, claimed) = s
            .claim_batch_after(None, "r", 60_000, wants, total)
            .await
            .unwrap();
        let e = claimed[0].clone();
        s.notifies_counted().await;
        let before = s.writer_stats().round_trips;
        let (recorded, next) = s
            .claim_batch_after(Some(done(&e, vendor_call())), "r", 60_000, wants, total)
            .await
            .unwrap();
        let trips = s.writer_stats().round_trips - before;
        assert_eq!(recorded, Some(true));
        assert_eq!(s.event(e.id).unwrap().unwrap().state, EventState::Done);
        assert_eq!(s.calls(e.id).unwrap().len(), 1, "its calls with it");
        assert!(!next.is_empty());
        assert!(next.iter().all(|e| e.state == EventState::Running));
        trips
    }

    /// On PostgreSQL a worker's outcome rides with its next claim's first statements, alone in
    /// the batch the claim's last carries the commit: where each integration gets all it
    /// wants, one round trip for everything (each integration's events selected and leased by
    /// one statement); where the deal must choose, two (the outcome with the `SELECT`s, the
    /// lease with the commit). They were four: outcome, `SELECT`, lease, commit.
    #[tokio::test]
    async fn on_postgres_an_outcome_and_the_next_claim_take_one_or_two_round_trips() {
        let s = crate::store::testing::postgres();
        for integration in ["a", "b", "c"] {
            for key in 0..6 {
                s.enqueue(integration, "k", &key.to_string(), "{}").unwrap();
            }
        }
        // Prepared by the first of each.
        let mut trips = Vec::new();
        for _ in 0..2 {
            trips.push((
                outcome_and_claim_trips(&s, &[("a", 1)], 1).await,
                outcome_and_claim_trips(&s, &[("b", 2), ("c", 2)], 2).await,
            ));
        }
        assert_eq!(trips[1], (1, 2), "{trips:?}");
    }

    /// The outcome sent with the claim's `SELECT` is still fenced: the outcome of a claim taken
    /// back (and claimed again by the same run) changes nothing, while the claim beside it goes
    /// through and the current claim's outcome lands.
    #[tokio::test]
    async fn on_postgres_a_fenced_outcome_riding_with_a_claim_changes_nothing() {
        let s = crate::store::testing::postgres();
        for key in ["1", "2"] {
            s.enqueue("a", "k", key, "{}").unwrap();
        }
        let (_, first) = s
            .claim_batch_after(None, "r", 60_000, &[("a", 1)], 1)
            .await
            .unwrap();
        let old = first[0].clone();
        s.db(|db| db.execute("UPDATE events SET lease_until = 0", &[]))
            .unwrap();
        assert_eq!(s.take_back_expired("other").unwrap().len(), 1);
        let (_, again) = s
            .claim_batch_after(None, "r", 60_000, &[("a", 1)], 1)
            .await
            .unwrap();
        let now = again[0].clone();
        assert_eq!(now.id, old.id, "taken back in its place");
        assert!(now.claim_seq > old.claim_seq);

        let stale = done(&old, vendor_call());
        let (recorded, next) = s
            .claim_batch_after(Some(stale), "r", 60_000, &[("a", 1)], 1)
            .await
            .unwrap();
        assert_eq!(recorded, Some(false), "fenced");
        assert_eq!(next.len(), 1, "the claim beside it went through");
        assert_ne!(next[0].id, old.id);
        let held = s.event(old.id).unwrap().unwrap();
        assert_eq!(
            (held.state, held.claim_seq),
            (EventState::Running, now.claim_seq)
        );
        assert_eq!(s.calls(old.id).unwrap().len(), 1, "the calls made are kept");

        let (recorded, _) = s
            .claim_batch_after(Some(done(&now, Vec::new())), "r", 60_000, &[("a", 1)], 1)
            .await
            .unwrap();
        assert_eq!(recorded, Some(true));
        assert_eq!(s.event(old.id).unwrap().unwrap().state, EventState::Done);
    }

    /// On PostgreSQL the batch claim's lease reads only the rows it leases, however long the
    /// queue: with 5,000 queued, no scan of its plan returns more than the 3 ids asked. (Written
    /// as `id IN (subquery)` it was hash-joined against every queued event: a scan of the whole
    /// queue per claim, which halved one host's acks/s under the bench's backlog.)
    #[test]
    fn on_postgres_a_batch_lease_reads_only_the_rows_it_leases() {
        let store = crate::store::testing::postgres();
        let plan = store
            .db(|db| {
                db.execute(
                    "INSERT INTO events (integration, kind, dedupe_key, payload_hash, state,
                         next_attempt_at, received_at)
                     SELECT 'a', 'k', 'd' || g, 'h', 'queued', g, g
                     FROM generate_series(1, 5000) g",
                    &[],
                )?;
                db.execute("ANALYZE events", &[])?;
                let explain = format!(
                    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {}",
                    lease_batch_sql(Dialect::Postgres)
                );
                db.query(&explain, args![1_i64, "run", 2_i64, "[10, 20, 30]"])?
                    .iter()
                    .map(|r| r.text(0))
                    .collect::<Result<Vec<String>>>()
            })
            .unwrap();
        let rows_of = |line: &str| -> i64 {
            let at = line.find("rows=").expect("an analyzed plan line") + 5;
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a row count")
        };
        let scans: Vec<&String> = plan.iter().filter(|l| l.contains("Scan")).collect();
        assert!(!scans.is_empty(), "{plan:#?}");
        // A sequential scan that filters down to the 3 rows also says rows=3: what it read
        // and threw away shows as "Rows Removed by Filter".
        assert!(
            !plan.iter().any(|l| l.contains("Rows Removed by Filter")),
            "a scan that read rows it does not lease: {plan:#?}"
        );
        for scan in scans {
            assert!(
                rows_of(scan) <= 3,
                "a scan beyond the leased rows: {plan:#?}"
            );
        }
        let leased = store.db(|db| {
            db.query_one("SELECT COUNT(*) FROM events WHERE state = 'running'", &[])?
                .int(0)
        });
        assert_eq!(leased.unwrap(), 3);
    }

    /// Events a1..a3, b1, c1, c2 queued in that order: their names by id.
    fn enqueue_named(s: &Store) -> std::collections::HashMap<i64, String> {
        let mut ids = std::collections::HashMap::new();
        for (integration, n) in [("a", 3), ("b", 1), ("c", 2)] {
            for i in 1..=n {
                let key = format!("{integration}{i}");
                let Enqueued::New(id) = s.enqueue(integration, "k", &key, "{}").unwrap() else {
                    panic!("{key} is new");
                };
                ids.insert(id, key);
            }
        }
        ids
    }

    /// The batch claim deals one event per integration per round, in the order asked, oldest
    /// first within each, up to each integration's want and the total; integrations without a
    /// due event, and events due later, are passed over. Then the rest, in later claims.
    #[test]
    fn a_batch_claim_deals_round_robin_in_the_order_asked() {
        on_both(|s| {
            let ids = enqueue_named(&s);
            s.enqueue("d", "k", "d1", "{}").unwrap();
            s.db(|db| {
                db.execute(
                    "UPDATE events SET next_attempt_at = ?1 WHERE integration = 'd'",
                    args![now_ms() + 3_600_000],
                )
            })
            .unwrap();
            let names = |events: &[Event]| -> Vec<String> {
                events.iter().map(|e| ids[&e.id].clone()).collect()
            };
            let wants = [("d", 5), ("c", 2), ("none", 4), ("a", 2), ("b", 1)];
            let first = s.claim_batch("r", 60_000, &wants, 4).unwrap();
            assert_eq!(names(&first), ["c1", "a1", "b1", "c2"]);
            assert!(first.iter().all(|e| e.state == EventState::Running));
            let rest = s
                .claim_batch("r", 60_000, &[("a", 1), ("c", 2)], 10)
                .unwrap();
            assert_eq!(names(&rest), ["a2"], "a's want is 1 in this claim");
            let last = s.claim_batch("r", 60_000, &[("a", 5)], 10).unwrap();
            assert_eq!(names(&last), ["a3"]);
            assert!(s.claim_batch("r", 60_000, &wants, 10).unwrap().is_empty());
            assert!(s.claim_batch("r", 60_000, &[], 10).unwrap().is_empty());
        });
    }

    /// A claim where every integration gets all it wants (on PostgreSQL each one's events
    /// selected and leased by one statement) deals in the same order: round robin in the
    /// order asked, oldest first within each.
    #[test]
    fn a_claim_within_every_want_deals_round_robin_too() {
        on_both(|s| {
            let ids = enqueue_named(&s);
            let claimed = s
                .claim_batch("r", 60_000, &[("c", 2), ("none", 1), ("a", 2), ("b", 1)], 8)
                .unwrap();
            let names: Vec<&str> = claimed.iter().map(|e| ids[&e.id].as_str()).collect();
            assert_eq!(names, ["c1", "a1", "b1", "c2", "a2"]);
            assert!(claimed.iter().all(|e| e.state == EventState::Running));
        });
    }

    #[test]
    fn events_handed_back_keep_their_place_ahead_of_later_ones() {
        on_both(|s| {
            s.enqueue("a", "k", "1", "{}").unwrap();
            s.enqueue("a", "k", "2", "{}").unwrap();
            let first = s.claim_batch("r", 60_000, &[("a", 2)], 2).unwrap();
            assert_eq!(first.len(), 2);
            std::thread::sleep(std::time::Duration::from_millis(3));
            s.enqueue("a", "k", "3", "{}").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(3));
            // One claimed and never started (unclaim), one stopped while running (release).
            assert_eq!(
                s.unclaim(&[(first[0].id, first[0].claim_seq)], "r")
                    .unwrap(),
                1
            );
            assert!(s
                .release(first[1].id, "r", first[1].claim_seq, now_ms())
                .unwrap());
            let again = s.claim_batch("r2", 60_000, &[("a", 3)], 3).unwrap();
            let order: Vec<i64> = again.iter().map(|e| e.id).collect();
            assert_eq!(order[..2], [first[0].id, first[1].id], "{order:?}");
        });
    }

    #[tokio::test]
    async fn a_retried_event_keeps_every_attempt_and_its_last_error() {
        on_both_async!(|s: Store| async move {
            s.enqueue("a", "k", "1", "{}").unwrap();
            let e = s.claim(&claim("r", None, &[])).unwrap().unwrap();
            let retry = Finish {
                retry_at: Some(now_ms() - 1),
                ..finish(
                    "r",
                    e.claim_seq,
                    EventState::Queued,
                    Some("vendor timed out"),
                )
            };
            assert!(s.finish(e.id, &retry).await.unwrap());
            let e = s.claim(&claim("r", None, &[])).unwrap().unwrap();
            assert_eq!(e.attempts, 2);
            assert!(s
                .finish(e.id, &finish("r", e.claim_seq, EventState::Done, None))
                .await
                .unwrap());
            let d = s.event_detail(e.id).unwrap().unwrap();
            assert_eq!(d.event.state, EventState::Done);
            assert_eq!(d.event.last_error.as_deref(), Some("vendor timed out"));
            let outcomes: Vec<(u32, &str)> = d
                .attempts_history
                .iter()
                .map(|a| (a.attempt, a.outcome.as_str()))
                .collect();
            assert_eq!(outcomes, vec![(1, "retry"), (2, "done")]);
            assert_eq!(
                d.attempts_history[0].error.as_deref(),
                Some("vendor timed out")
            );
            assert_eq!(
                d.attempts_history[1].connector_version.as_deref(),
                Some("c@1#abc")
            );
        });
    }

    #[tokio::test]
    async fn an_attempt_taken_back_cannot_record_its_outcome_even_for_the_same_run() {
        on_both_async!(|s: Store| async move {
            s.enqueue("a", "k", "1", "{}").unwrap();
            let first = s.claim(&claim("r", None, &[])).unwrap().unwrap();
            // Run r stalls past its lease: another host takes the event back, and r (alive
            // again) claims it anew while its first attempt is still running somewhere.
            s.db(|db| db.execute("UPDATE events SET lease_until = 0", &[]))
                .unwrap();
            assert_eq!(s.take_back_expired("other").unwrap().len(), 1);
            let second = s.claim(&claim("r", None, &[])).unwrap().unwrap();
            assert_eq!(second.attempts, first.attempts + 1);
            let stale = finish("r", first.claim_seq, EventState::Done, None);
            assert!(!s.finish(first.id, &stale).await.unwrap(), "fenced");
            assert_eq!(
                s.event_detail(first.id).unwrap().unwrap().event.state,
                EventState::Running
            );
            let current = finish("r", second.claim_seq, EventState::Done, None);
            assert!(s.finish(second.id, &current).await.unwrap());
        });
    }

    /// On PostgreSQL too, a trim is one seek on `(event_id, id)` and a range delete, with no
    /// subplan of the kept ids (`id NOT IN (…)` hashed them at every outcome).
    #[test]
    fn on_postgres_a_trim_is_a_seek_and_a_range_delete() {
        let s = crate::store::testing::postgres();
        let sql = format!("EXPLAIN {}", trim_older("attempts", "20")).replace("?1", "7");
        let plan = s
            .db(|db| {
                db.query(&sql, &[])?
                    .iter()
                    .map(|r| r.text(0))
                    .collect::<crate::store::Result<Vec<String>>>()
            })
            .unwrap()
            .join("\n");
        assert!(plan.contains("attempts_by_event"), "{plan}");
        assert!(!plan.contains("SubPlan"), "{plan}");
    }

    #[tokio::test]
    async fn history_is_bounded_and_a_lost_lease_fences_the_outcome() {
        on_both_async!(|s: Store| async move {
            s.enqueue("a", "k", "1", "{}").unwrap();
            for _ in 0..(HISTORY_PER_EVENT + 5) {
                let e = s.claim(&claim("r", None, &[])).unwrap().unwrap();
                let retry = Finish {
                    retry_at: Some(now_ms() - 1),
                    ..finish("r", e.claim_seq, EventState::Queued, Some("x"))
                };
                assert!(s.finish(e.id, &retry).await.unwrap());
            }
            let e = s.claim(&claim("r", None, &[])).unwrap().unwrap();
            // Another run's outcome for an event it does not hold changes nothing.
            assert!(!s
                .finish(e.id, &finish("other", e.claim_seq, EventState::Done, None))
                .await
                .unwrap());
            let d = s.event_detail(e.id).unwrap().unwrap();
            assert_eq!(d.event.state, EventState::Running);
            assert_eq!(d.attempts_history.len() as i64, HISTORY_PER_EVENT);
            assert_eq!(
                d.attempts_history.last().map(|a| a.attempt),
                Some((HISTORY_PER_EVENT + 5) as u32)
            );
            // A graceful release hands it back without burning the attempt.
            assert!(s.release(e.id, "r", e.claim_seq, now_ms()).unwrap());
            let again = s.claim(&claim("r", None, &[])).unwrap().unwrap();
            assert_eq!(again.attempts, e.attempts);
        });
    }

    /// `attempts` goes back down when a claim is handed back, so an older claim of the same run
    /// can show the same run and attempt as the current one: only the claim sequence tells them
    /// apart. Every outcome-writing call (finish, wait, release, unclaim) with the older claim
    /// changes nothing.
    #[tokio::test]
    async fn an_older_claim_with_the_same_run_and_attempt_is_fenced() {
        on_both_async!(|s: Store| async move {
            s.enqueue("a", "k", "1", "{}").unwrap();
            let old = s.claim(&claim("r", None, &[])).unwrap().unwrap();
            // Handed back uncounted (attempts 1 → 0), then claimed again (0 → 1) by the same run.
            assert!(s.release(old.id, "r", old.claim_seq, now_ms()).unwrap());
            let now = s.claim(&claim("r", None, &[])).unwrap().unwrap();
            assert_eq!((now.id, now.attempts), (old.id, old.attempts));
            assert!(now.claim_seq > old.claim_seq);

            let stale = finish("r", old.claim_seq, EventState::Done, None);
            assert!(!s.finish(old.id, &stale).await.unwrap(), "finish fenced");
            let wait = crate::store::waiting::Wait {
                run: "r".into(),
                claim_seq: old.claim_seq,
                reason: "stale".into(),
                waiting_for: crate::store::WaitFor::Quota,
                recheck_at: None,
                connector_version: None,
                started_at_ms: now_ms(),
                took_ms: 1,
                drop_screening: None,
            };
            assert!(!s.wait_event(old.id, wait).await.unwrap(), "wait fenced");
            assert!(
                !s.release(old.id, "r", old.claim_seq, now_ms()).unwrap(),
                "release fenced"
            );
            assert_eq!(
                s.unclaim(&[(old.id, old.claim_seq)], "r").unwrap(),
                0,
                "unclaim fenced"
            );
            let d = s.event_detail(old.id).unwrap().unwrap();
            assert_eq!((d.event.state, d.event.attempts), (EventState::Running, 1));
            assert_eq!(d.event.claim_seq, now.claim_seq);
            // The current claim's outcome still lands.
            let current = finish("r", now.claim_seq, EventState::Done, None);
            assert!(s.finish(now.id, &current).await.unwrap());
        });
    }

    /// Two hosts on one PostgreSQL: while one holds rows it is claiming (its transaction still
    /// open), the other claims the rest at once instead of waiting for those rows' locks.
    #[test]
    fn a_second_postgres_host_claims_past_rows_another_is_claiming() {
        let url = postgres_url();
        let (a, b) = (
            Store::open_postgres(&url, None).unwrap(),
            Store::open_postgres(&url, None).unwrap(),
        );
        for n in 0..10 {
            a.enqueue("i", "k", &n.to_string(), "{}").unwrap();
        }
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let (claimed, took) = std::sync::mpsc::channel::<Vec<i64>>();
        let holder = std::thread::spawn(move || {
            a.write_db_blocking(move |db| {
                let ids: Vec<i64> = claim_batch_on(db, "ra", 60_000, &[("i".into(), 4)], 4)?
                    .iter()
                    .map(|e| e.id)
                    .collect();
                let _ = claimed.send(ids.clone());
                let _ = held.recv();
                Ok(ids)
            })
        });
        let first = took
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the first host claimed");
        let (done, second) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(b.claim_batch("rb", 60_000, &[("i", 10)], 10));
        });
        let second: Vec<i64> = second
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the second host did not wait for the first one's locks")
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        hold.send(()).unwrap();
        assert_eq!(holder.join().unwrap().unwrap(), first);
        assert_eq!(second.len(), 6, "{second:?}");
        assert!(
            second.iter().all(|id| !first.contains(id)),
            "{first:?} {second:?}"
        );
    }

    /// A claim's transaction ends before it returns: nothing stays `idle in transaction` (no
    /// lock or snapshot held while a connector runs).
    #[test]
    fn a_postgres_claim_holds_no_transaction_open() {
        let s = crate::store::testing::postgres();
        for n in 0..3 {
            s.enqueue("i", "k", &n.to_string(), "{}").unwrap();
        }
        assert!(s.claim(&claim("r", None, &[])).unwrap().is_some());
        assert_eq!(s.claim_batch("r", 60_000, &[("i", 5)], 5).unwrap().len(), 2);
        let open = s
            .db(|db| {
                db.query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
                    &[],
                )?
                .int(0)
            })
            .unwrap();
        assert_eq!(open, 0);
    }
}
