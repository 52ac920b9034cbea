//! Workers: take due events from the [`Dispatcher`], run them through [`flow`](super), and record
//! the outcome — done, skipped, retried later (exponential backoff with jitter) or dead-lettered
//! after `max_attempts`, each attempt kept in the event's history with its outbound calls. The
//! outcome is recorded in the same write as the worker's next claim (one commit for "finish A,
//! claim the next"; the finished event's place is kept for that claim's look, so a worker
//! finishing beside it cannot take it first and leave this one nothing to claim); when the
//! worker's next event was already claimed for it (`ready`, taken here or handed back by the
//! dispatcher with the outcome unwritten), alone and beside that event's first steps on the
//! worker's own task (no blocking thread, no wait for a commit before starting); retried alone
//! if that write failed. Which event a free worker takes
//! is the dispatcher's choice (fair across integrations, bulkheads, circuit breakers; claimed in
//! batches for every free worker). A claimed event is leased to this process's run and renewed by
//! its heartbeat ([`super::heartbeat`]); after a crash the next run takes it back at once. On a
//! stop, a worker finishes its event (or hands it back when the grace period ends) and claimed
//! events nobody started go back to the queue uncounted. While claims fail (the database lost),
//! workers back off (up to `MAX_BACKOFF`), logging the outage once when it starts and once when it
//! ends.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::watch;

use crate::app::App;
use crate::flow::breaker::Verdict;
use crate::flow::bulkhead::{Dispatcher, Next, Permit, Place};
use crate::flow::{self, Outcome};
use crate::recording::{CallLog, OutboundCall};
use crate::store::waiting::Wait;
use crate::store::{now_ms, Event, EventState, Finish, Finished, WaitFor};
use crate::timeline::TimelineEvent;

/// Longest idle sleep: the store is polled at least this often.
const IDLE: Duration = Duration::from_secs(1);
/// Longest wait between claims while the store fails (the database lost): a worker backs off
/// from [`IDLE`] to this, doubling, and resumes at once when a claim succeeds again.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// Whether claims fail now, shared by the workers of a host: the outage is logged once when it
/// starts and once when it ends, not once per worker per attempt.
#[derive(Default)]
struct Outage(std::sync::atomic::AtomicBool);

impl Outage {
    fn failed(&self, e: &crate::store::StoreError) {
        if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tracing::error!(error = %e, "cannot claim events: workers back off until the store answers");
        }
    }

    fn answered(&self) {
        if self.0.swap(false, std::sync::atomic::Ordering::SeqCst) {
            tracing::info!("the store answers again: workers resume");
        }
    }
}
/// The longest `Retry-After` honoured, so a bogus answer cannot park an event for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How workers are told to stop: `stop` — claim nothing more (finish what runs); `abandon` —
/// the grace period is over: hand back what still runs.
#[derive(Clone)]
pub struct Signals {
    pub stop: watch::Receiver<bool>,
    pub abandon: watch::Receiver<bool>,
}

/// Starts `worker.concurrency` workers of run `run` on `on` (the [`WorkThreads`](super::threads)),
/// sharing one [`Dispatcher`].
pub fn spawn(
    app: Arc<App>,
    run: String,
    signals: Signals,
    on: &tokio::runtime::Handle,
) -> Vec<tokio::task::JoinHandle<()>> {
    let dispatcher = Dispatcher::new(&app);
    let run: Arc<str> = run.into();
    let outage = Arc::new(Outage::default());
    (0..app.config.worker.concurrency.max(1))
        .map(|_| {
            on.spawn(work(
                app.clone(),
                dispatcher.clone(),
                run.clone(),
                signals.clone(),
                outage.clone(),
            ))
        })
        .collect()
}

/// Wakes one of this host's idle workers on each wake-up from the database (`store::notify`:
/// events queued by another host), until `stop`: its look claims for every free worker, as
/// after a local intake batch (waking them all made each look in turn, a round trip each on
/// PostgreSQL, most finding what the first had claimed).
pub fn wake_on_notify(
    app: Arc<App>,
    mut wakes: tokio::sync::mpsc::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                woken = wakes.recv() => match woken {
                    Some(()) => app.wake.notify_one(),
                    None => return,
                },
                _ = stop.changed() => return,
            }
        }
    })
}

async fn work(
    app: Arc<App>,
    dispatcher: Arc<Dispatcher>,
    run: Arc<str>,
    mut signals: Signals,
    outage: Arc<Outage>,
) {
    let lease_ms = app.config.worker.lease_secs.max(1) as i64 * 1000;
    let mut backoff = IDLE;
    // The outcome of the attempt this worker just ended, recorded with its next claim, and its
    // place, kept for that claim's look.
    let mut finished: Option<(Finished, Place)> = None;
    while !*signals.stop.borrow() {
        // An event claimed for this worker by another's batch: started at once, on this task
        // (no blocking thread, no store write first); the attempt just ended is recorded
        // alone, beside it (`lone`).
        if let Some(ready) = dispatcher.take_ready() {
            // This worker takes a claimed event instead of looking: another worker may use the
            // place kept for its look.
            let lone = finished.take().map(|(f, place)| {
                place.pass_on();
                f
            });
            match run_one(&app, &dispatcher, &run, ready, lone, &mut signals).await {
                Some(ended) => finished = ended,
                None => break,
            }
            continue;
        }
        // Claimed on this task: the claim is a write of the group commit, awaited (no blocking
        // thread), and shares its commit with the claims of workers finishing at once on SQLite;
        // on PostgreSQL they go one at a time (`bulkhead`'s module doc).
        // Registered as a waiter for freed places before looking: when several workers find
        // no room because of one claim's reservation, each place it frees (`notify_one` per
        // place) wakes a distinct worker, even one not yet waiting; Notify stores only one
        // wake-up for tasks that are not. Dropped unused, its wake-up passes to another waiter.
        // Boxed so it can be dropped as soon as `next` gives this worker something to do (an
        // event, an error): `notify_one` wakes the longest waiter first, and a busy worker's
        // leftover waiter would take a wake meant for an idle one until its event ended.
        let mut freed = Some(Box::pin(dispatcher.freed.notified()));
        if let Some(freed) = freed.as_mut() {
            freed.as_mut().enable();
        }
        // Likewise for new events: a `notify_waiters` landing between the look and the wait
        // below would otherwise be missed (it stores nothing for tasks not yet waiting).
        let mut woken = Box::pin(app.wake.notified());
        woken.as_mut().enable();
        let (ended, place) = finished.take().unzip();
        let kept = ended.clone();
        let Next {
            event: next,
            recorded,
            unwritten,
        } = dispatcher.next(&app, &run, lease_ms, ended, place).await;
        if !matches!(next, Ok(None)) {
            // Busy (an event to run) or backing off: not waiting for a place, so any wake-up
            // already given passes on to a waiting worker now, not when this iteration ends.
            freed = None;
        }
        // Nothing to take though there was room: sleep until the next due event. (A panic of
        // this read is the idle tick's problem, not the outcome's.)
        let due_in = match &next {
            Ok(None) if !dispatcher.full() => {
                let read = app.store.off_async(|s| s.next_due_in());
                AssertUnwindSafe(read)
                    .catch_unwind()
                    .await
                    .ok()
                    .and_then(|r| r.ok().flatten())
            }
            _ => None,
        };
        // An outcome handed back unwritten goes beside the ready event it came with.
        let (lone, unwritten) = match &next {
            Ok(Some(_)) => (unwritten, None),
            _ => (None, unwritten),
        };
        // An outcome the dispatcher never got to record (it panicked first, or its task was
        // cancelled) is recorded alone below (fenced: never twice).
        let recorded = match (recorded, unwritten) {
            (Some(recorded), _) => Some(recorded),
            (None, Some(f)) => {
                app.metrics.outcome_recorded("error");
                let result = app.store.record_finished(f.clone()).await;
                Some((f, result))
            }
            (None, None) => kept
                .filter(|_| lone.is_none())
                .map(|f| (f, Err(crate::store::StoreError::Panicked))),
        };
        if let Some((f, result)) = recorded {
            settle(&app, f, result).await;
        }
        if next.is_ok() {
            backoff = IDLE;
            outage.answered();
        }
        match next {
            Ok(Some(next)) => {
                match run_one(&app, &dispatcher, &run, next, lone, &mut signals).await {
                    Some(ended) => finished = ended,
                    None => break,
                }
            }
            Ok(None) => {
                // Nothing claimable. A due event left unclaimed is blocked (its integration at
                // its limit, or paused): wait for a freed permit, a new event or the idle
                // tick rather than polling it again at once.
                let wait = match due_in {
                    Some(ms) if ms > 0 => Duration::from_millis(ms as u64).min(IDLE),
                    _ => IDLE,
                };
                let freed = freed.as_mut().expect("kept while nothing was taken");
                tokio::select! {
                    _ = &mut woken => {}
                    _ = freed => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = signals.stop.changed() => {}
                }
            }
            Err(e) => {
                outage.failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = signals.stop.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    // Stopping: the last outcome goes alone.
    if let Some((f, _place)) = finished.take() {
        app.metrics.outcome_recorded("stopping");
        let result = app.store.record_finished(f.clone()).await;
        settle(&app, f, result).await;
    }
    // Claimed for workers that will not start them now: back to the queue, uncounted.
    let n = dispatcher.hand_back(&app.store, &run);
    if n > 0 {
        app.metrics.released(n as u64);
        tracing::info!(
            events = n,
            "stopping: claimed events not started handed back"
        );
    }
}

/// Runs one claimed event to its end. Returns its finished attempt (recorded by the caller with
/// its next claim) and its place (kept for that claim's look), or `None` when the grace period
/// ended first (the event handed back).
///
/// `lone`: this worker's previous attempt, when no claim will carry it (the event came from
/// `ready`). It is recorded beside this event's steps, not before them: the write shares the
/// worker's task, so nothing waits for it on a thread of its own, and its commit overlaps the
/// new event's first ATS read. Fenced as ever, so a retry after a failed write never records
/// it twice; if the grace period ends before it is answered, the run ends and the event is
/// taken back like any unrecorded one.
async fn run_one(
    app: &Arc<App>,
    dispatcher: &Arc<Dispatcher>,
    run: &str,
    (event, permit): (Event, Permit),
    lone: Option<Finished>,
    signals: &mut Signals,
) -> Option<Option<(Finished, Place)>> {
    let started_at_ms = now_ms();
    let (id, claim_seq) = (event.id, event.claim_seq);
    let previous = async {
        if let Some(f) = lone {
            app.metrics.outcome_recorded("ready");
            let result = app.store.record_finished(f.clone()).await;
            settle(app, f, result).await;
        }
    };
    let this = handle(app, dispatcher, run, event, permit, started_at_ms);
    tokio::select! {
        // `previous` first: its write is sent before this event's first await.
        ((), ended) = async { tokio::join!(previous, this) } => Some(ended),
        _ = abandoned(&mut signals.abandon) => {
            // Grace period over: hand it back uncounted; a later run redoes the step (every
            // step is idempotent, as after a crash).
            match app.store.release(id, run, claim_seq, started_at_ms) {
                Ok(true) => {
                    app.metrics.released(1);
                    tracing::warn!(event = id, "grace period over: event handed back to the queue");
                }
                Ok(false) => {}
                Err(e) => tracing::error!(event = id, error = %e, "cannot hand back an event"),
            }
            None
        }
    }
}

/// Resolves once `abandon` is true (never if its sender is gone without saying so).
async fn abandoned(abandon: &mut watch::Receiver<bool>) {
    while !*abandon.borrow() {
        if abandon.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn handle(
    app: &Arc<App>,
    dispatcher: &Dispatcher,
    run: &str,
    event: Event,
    permit: Permit,
    started_at_ms: i64,
) -> Option<(Finished, Place)> {
    let t = Instant::now();
    let calls = CallLog::default();
    let result = calls.clone().scope(flow::process(app, &event)).await;
    let took_ms = t.elapsed().as_millis() as i64;
    let calls = taken_calls(&event, &calls);
    let verdict = match &result {
        // A waiting event says nothing about the vendor (a full quota is not its fault).
        Ok(Outcome::Wait(..)) => Verdict::Neutral,
        Ok(_) => Verdict::Success,
        Err(e) if e.vendor && e.retryable => Verdict::VendorFailure,
        Err(_) => Verdict::Neutral,
    };
    dispatcher.record(app, &event.integration, verdict);
    let w = &app.config.worker;
    // Outbound webhooks get their own, longer, budget: the receiver may be down for a while.
    let max_attempts = if flow::role(app, &event) == Some(crate::ats::Role::Delivery) {
        w.delivery_max_attempts
    } else {
        w.max_attempts
    };
    let (state, error, version, retry_at, outcome) = match result {
        Ok(Outcome::Wait(what, why, drop_screening)) => {
            let held = Held {
                what,
                why,
                drop_screening,
            };
            let timing = (started_at_ms, took_ms);
            wait(app, &event, run, held, timing, calls).await;
            return None;
        }
        Ok(Outcome::Done(version)) => (EventState::Done, None, version, None, "done".to_string()),
        Ok(Outcome::Skipped(why)) => (
            EventState::Skipped,
            Some(why.clone()),
            None,
            None,
            format!("skipped: {why}"),
        ),
        Err(e) if e.retryable && event.attempts < max_attempts => {
            // Never sooner than the receiver asked (Retry-After), up to an hour.
            let asked = e
                .retry_after
                .map_or(0, |d| d.min(MAX_RETRY_AFTER).as_millis() as u64);
            let delay = backoff(event.attempts, w.retry_base_ms, w.retry_max_ms).max(asked);
            let text = format!(
                "attempt {} failed, retry in {} ms: {}",
                event.attempts, delay, e.message
            );
            (
                EventState::Queued,
                Some(e.message),
                e.connector_version,
                Some(now_ms() + delay as i64),
                text,
            )
        }
        Err(e) => {
            let text = format!(
                "dead-lettered after {} attempt(s): {}",
                event.attempts, e.message
            );
            (
                EventState::Dead,
                Some(e.message),
                e.connector_version,
                None,
                text,
            )
        }
    };
    let metrics = &app.metrics;
    if state == EventState::Dead {
        metrics.dead_letter();
        tracing::error!(event = event.id, integration = %event.integration, "{outcome}");
        if let Err(e) = flow::gave_up(app, &event) {
            tracing::error!(event = event.id, error = %e, "cannot report the dead-lettered event");
        }
    } else if retry_at.is_some() {
        metrics.retry();
        tracing::warn!(event = event.id, integration = %event.integration, "{outcome}");
    } else {
        tracing::info!(event = event.id, integration = %event.integration, "{outcome}");
    }
    app.timeline.emit(TimelineEvent::EventFinished {
        integration: event.integration.clone(),
        event_id: event.id,
        outcome,
    });
    let finish = Finish {
        run,
        claim_seq: event.claim_seq,
        state,
        error: error.as_deref(),
        connector_version: version.as_deref(),
        retry_at,
        started_at_ms,
        took_ms,
    };
    // Recorded with this worker's next claim (one commit for both); its place is kept for this
    // worker's next look (no other worker woken, or able, to take it first).
    let place = permit.release_to_holder();
    Some((
        Finished::new(event.id, event.attempts, &finish, calls),
        place,
    ))
}

/// Settles how an attempt's outcome was recorded: retried alone until written (see
/// [`retry_event_write`]).
async fn settle(app: &App, finished: Finished, result: crate::store::Result<bool>) {
    let id = finished.event();
    let write = || app.store.record_finished(finished.clone());
    retry_event_write(app, id, EventWrite::Outcome, result, write).await;
}

/// Which write of an event [`retry_event_write`] retries, for its logs.
#[derive(Clone, Copy)]
enum EventWrite {
    Outcome,
    Wait,
}

impl EventWrite {
    /// What the write records.
    fn noun(self) -> &'static str {
        match self {
            EventWrite::Outcome => "the outcome",
            EventWrite::Wait => "the wait",
        }
    }
}

/// Retries an event's write (its outcome, or its wait) that the store refused, alone, with
/// backoff, until it is written, fenced off, or the host stops. This run's heartbeat keeps
/// renewing the event's lease, so a write given up (the database lost) would keep the event
/// `running` until the host restarts. The write is fenced by run and claim, so a retry never
/// records it twice. A host that stops meanwhile gives up: its run ends and the event is taken
/// back. `result`: how the first try went; `write` tries again.
async fn retry_event_write<F, W>(
    app: &App,
    id: i64,
    what: EventWrite,
    mut result: crate::store::Result<bool>,
    write: W,
) where
    W: Fn() -> F,
    F: std::future::Future<Output = crate::store::Result<bool>>,
{
    let mut pause = Duration::from_millis(250);
    loop {
        match result {
            Ok(true) => return,
            // Another run took it (this one was declared dead): its outcome wins, not ours.
            Ok(false) => {
                tracing::warn!(
                    event = id,
                    "lease lost before {} was recorded; discarded",
                    what.noun()
                );
                return;
            }
            Err(e) if app.draining.load(std::sync::atomic::Ordering::Relaxed) => {
                tracing::error!(event = id, error = %e, "cannot record {} of an event while stopping; it will be taken back", what.noun());
                return;
            }
            Err(e) => {
                tracing::error!(event = id, error = %e, retry_in_ms = pause.as_millis() as u64, "cannot record {} of an event; retrying", what.noun());
                app.metrics.write_retried();
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_BACKOFF);
            }
        }
        result = write().await;
    }
}

/// The outbound calls the attempt made, as kept by its log (the ones beyond its bound logged).
fn taken_calls(event: &Event, calls: &CallLog) -> Vec<OutboundCall> {
    let (kept, dropped) = calls.take();
    if dropped > 0 {
        tracing::warn!(
            event = event.id,
            dropped,
            "outbound calls beyond the per-attempt bound not recorded"
        );
    }
    kept
}

/// What an event waits for, why, and the screening whose connector state goes with the wait.
struct Held {
    what: WaitFor,
    why: String,
    drop_screening: Option<String>,
}

/// Puts an event to wait (see [`crate::store::waiting`]): a permission or the quota is
/// re-checked every `worker.recheck_secs`; a connect only by its trigger; an operator's decision
/// only by an operator.
async fn wait(
    app: &App,
    event: &Event,
    run: &str,
    held: Held,
    (started_at_ms, took_ms): (i64, i64),
    calls: Vec<OutboundCall>,
) {
    let Held {
        what,
        why,
        drop_screening,
    } = held;
    tracing::warn!(event = event.id, integration = %event.integration,
        waiting_for = what.as_str(), "waiting: {why}");
    app.timeline.emit(TimelineEvent::EventFinished {
        integration: event.integration.clone(),
        event_id: event.id,
        outcome: format!("waiting for {}: {why}", what.as_str()),
    });
    let recheck_at = match what {
        WaitFor::Connect | WaitFor::Operator => None,
        WaitFor::Permission | WaitFor::Quota => {
            Some(now_ms() + app.config.worker.recheck_secs.max(1) as i64 * 1000)
        }
    };
    let wait = Wait {
        run: run.to_string(),
        claim_seq: event.claim_seq,
        reason: why,
        waiting_for: what,
        recheck_at,
        connector_version: None,
        started_at_ms,
        took_ms,
        drop_screening,
    };
    // The attempt's outbound calls go in the same write as the wait (one commit); shared, not
    // copied, by each try.
    let (wait, calls) = (Arc::new(wait), Arc::<[OutboundCall]>::from(calls));
    let write = || {
        app.store
            .wait_event_with_calls(event.id, wait.clone(), event.attempts, calls.clone())
    };
    let first = write().await;
    retry_event_write(app, event.id, EventWrite::Wait, first, write).await;
}

/// Delay before attempt `attempts + 1`: base · 2^(attempts−1), capped, ±20 % jitter.
pub fn backoff(attempts: u32, base_ms: u64, max_ms: u64) -> u64 {
    let exp = base_ms.saturating_mul(1u64 << attempts.saturating_sub(1).min(30));
    let capped = exp.min(max_ms) as f64;
    (capped * (0.8 + rand::random::<f64>() * 0.4)) as u64
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        for _ in 0..100 {
            let first = backoff(1, 1000, 60_000);
            assert!((800..=1200).contains(&first));
            let third = backoff(3, 1000, 60_000);
            assert!((3200..=4800).contains(&third));
            assert!(backoff(30, 1000, 60_000) <= 72_000);
        }
    }
}
