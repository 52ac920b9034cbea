//! Bulkheads: which events the workers take next. Integrations are served in turn (round robin,
//! in name order, over the configured integrations that have queued events, starting after the
//! one served first last time), so no integration's backlog starves another; an integration already holding
//! `worker.integration_concurrency` events, or paused by its circuit breaker
//! ([`super::breaker`]), is skipped, and a half-open breaker lets exactly one probe through, so a
//! slow or failing vendor or ATS holds at most its own share of the workers. With 2 or more
//! workers that share is at most all but one, whatever `integration_concurrency` says, so a
//! neighbour always finds a worker. Events of integrations no longer configured are taken last
//! (they end dead with the reason).
//!
//! **Many integrations.** Each look starts from the integrations that have queued events
//! ([`Store::queued_integrations`]: one index seek each), never from the configured list: a host
//! serving 10,000 integrations with webhooks for a few pays for those few, per look.
//!
//! **Batched claims.** A worker that finds nothing ready claims for every free worker at once:
//! up to each integration's free places (one for a half-open breaker), at most as many as there
//! are workers not holding an event, as one write of the store's group commit
//! ([`Store::claim_batch`]: no fsync of its own, shared with the webhooks committed meanwhile;
//! the claiming worker's finished attempt rides in the same write). What it does not start itself waits in `ready` for the next free
//! worker (the others are woken). A claimed event holds its integration's place from the claim,
//! so the limits count ready and running events alike; it is leased to this run from the claim
//! too, so the heartbeat renews it and a crash hands it back like a running one. On a graceful
//! stop, ready events are handed back uncounted ([`Dispatcher::hand_back`]). A ready event whose
//! breaker opened after the claim still runs, like one that was running when it opened.
//!
//! Why one batch decided here and not one claim per worker: a batch decided under one lock keeps
//! "deciding and claiming are one step" (two workers never both take a half-open breaker's probe
//! or exceed a limit) with one statement per integration, while per-worker claims would each
//! re-run the round robin and cost a statement per event. The lock is held until the claim is
//! durable; the workers waiting for it wait on blocking threads.
//!
//! [`Store::claim_batch`]: crate::store::Store::claim_batch

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::app::App;
use crate::config::WorkerConfig;
use crate::flow::breaker::{Breakers, Verdict};
use crate::metrics::Metrics;
use crate::store::{Claim, Event, Finished, Result, Store, StoreError};

/// A finished attempt handed to [`Dispatcher::next`] and whether it was recorded (see
/// [`Store::finish`]).
pub type Recorded = (Finished, Result<bool>);

/// What one [`Dispatcher::next`] has done so far, kept outside it so that a panic halfway loses
/// none of it: how the finished attempt was recorded, and the events claimed (committed) but not
/// yet placed with a worker or in `ready`, which are then handed back to the queue.
#[derive(Default)]
struct Progress {
    recorded: Option<Recorded>,
    /// `(id, claim_seq)` of each.
    unplaced: Vec<(i64, i64)>,
}

struct State {
    /// Events claimed or running, per integration (each holds a place).
    in_flight: HashMap<String, usize>,
    /// The integration served first by the last claim that found work; the next starts after it.
    cursor: Option<String>,
    breakers: Breakers,
    /// Claimed (leased to this run) and not started yet, in the order to start them.
    ready: VecDeque<Event>,
    /// When events of integrations no longer configured were last looked for (see
    /// [`ORPHANS_EVERY`]).
    orphans_checked: Option<Instant>,
    /// The last look found no room: every configured integration with queued events at its
    /// limit or paused.
    full: bool,
}

/// How often to take events of integrations no longer configured. Such events are rare and only
/// end dead, so a second's delay is nothing, and an idle wake-up never pays for them.
const ORPHANS_EVERY: Duration = Duration::from_secs(1);

impl State {
    fn total_in_flight(&self) -> usize {
        self.in_flight.values().sum()
    }
}

/// Shared by the workers of one host.
pub struct Dispatcher {
    limit: usize,
    workers: usize,
    state: Mutex<State>,
    /// Signalled when a place is freed or claimed events are ready: a worker that found nothing
    /// it may take waits on it (instead of polling a queue whose due events it may not take).
    pub freed: tokio::sync::Notify,
    /// Fault seam: panic right after the next committed claim.
    #[cfg(test)]
    panic_after_claim: std::sync::atomic::AtomicBool,
}

/// A claimed event's place in its integration's bulkhead; freed when dropped.
pub struct Permit {
    dispatcher: Arc<Dispatcher>,
    integration: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.dispatcher.lock();
        if let Some(n) = state.in_flight.get_mut(&self.integration) {
            *n = n.saturating_sub(1);
        }
        drop(state);
        self.dispatcher.freed.notify_one();
    }
}

impl Dispatcher {
    pub fn new(app: &App) -> Arc<Dispatcher> {
        Dispatcher::of_config(&app.config.worker)
    }

    /// The dispatcher of `[worker]`, with its effective per-integration limit (never every
    /// worker: see [`WorkerConfig::effective_integration_concurrency`]).
    fn of_config(w: &WorkerConfig) -> Arc<Dispatcher> {
        Dispatcher::with(
            w.concurrency,
            w.effective_integration_concurrency(),
            Breakers::new(
                w.breaker_failures,
                Duration::from_secs(w.breaker_first_open_secs),
                Duration::from_secs(w.breaker_open_secs),
            ),
        )
    }

    /// A dispatcher for `workers` workers, at most `limit` events per integration.
    fn with(workers: usize, limit: usize, breakers: Breakers) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            limit: limit.max(1),
            workers: workers.max(1),
            freed: tokio::sync::Notify::new(),
            #[cfg(test)]
            panic_after_claim: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(State {
                in_flight: HashMap::new(),
                cursor: None,
                breakers,
                ready: VecDeque::new(),
                orphans_checked: None,
                full: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next event for a free worker of `run`: a ready one, or else a new batch is claimed
    /// (fairly across integrations, within the limits) and its first event returned.
    ///
    /// `finished`: the attempt this worker just ended, recorded in the same write as the claim
    /// (one commit for both), or alone when no claim is written (a ready event taken, no room);
    /// how that went is returned with it, for the worker to retry the outcome alone on an error.
    ///
    /// A panic in here is caught: it is logged, the events it had claimed and not placed yet go
    /// back to the queue uncounted, and the finished attempt's recording is reported as it went
    /// (recorded before the panic, or not: never a misleading "lease lost").
    pub fn next(
        self: &Arc<Self>,
        app: &App,
        run: &str,
        lease_ms: i64,
        finished: Option<Finished>,
    ) -> (Result<Option<(Event, Permit)>>, Option<Recorded>) {
        let configured = |id: &str| app.integration(id).is_some();
        let scope = (&app.store, &*app.metrics);
        self.next_caught(&configured, scope, (run, lease_ms), finished)
    }

    /// [`Dispatcher::next`], `configured` telling which integrations are configured.
    fn next_caught(
        self: &Arc<Self>,
        configured: &dyn Fn(&str) -> bool,
        (store, metrics): (&Store, &Metrics),
        lease: (&str, i64),
        finished: Option<Finished>,
    ) -> (Result<Option<(Event, Permit)>>, Option<Recorded>) {
        let mut progress = Progress::default();
        let next = catch_unwind(AssertUnwindSafe(|| {
            self.next_after(configured, store, metrics, lease, finished, &mut progress)
        }));
        let next = next.unwrap_or_else(|panic| {
            let run = lease.0;
            let handed_back = match progress.unplaced.as_slice() {
                [] => 0,
                claims => store.unclaim(claims, run).unwrap_or_else(|e| {
                    // The run's end (or the next run) takes them back instead.
                    tracing::error!(error = %e, events = claims.len(), "cannot hand back claimed events");
                    0
                }),
            };
            tracing::error!(
                panic = panic_text(panic.as_ref()),
                handed_back,
                "the dispatcher panicked; the events it had claimed and not started are queued again"
            );
            Err(StoreError::Panicked)
        });
        (next, progress.recorded)
    }

    /// [`Dispatcher::next`] for tests, nothing finished.
    #[cfg(test)]
    fn next_of(
        self: &Arc<Self>,
        configured: &dyn Fn(&str) -> bool,
        store: &Store,
        metrics: &Metrics,
        run: &str,
        lease_ms: i64,
    ) -> Result<Option<(Event, Permit)>> {
        self.next_caught(configured, (store, metrics), (run, lease_ms), None)
            .0
    }

    /// [`Dispatcher::next`]; what it did so far goes to `progress`.
    fn next_after(
        self: &Arc<Self>,
        configured: &dyn Fn(&str) -> bool,
        store: &Store,
        metrics: &Metrics,
        (run, lease_ms): (&str, i64),
        finished: Option<Finished>,
        progress: &mut Progress,
    ) -> Result<Option<(Event, Permit)>> {
        let recorded = &mut progress.recorded;
        let alone = |finished: Option<Finished>| {
            finished.map(|f| {
                let result = store.record_finished_blocking(f.clone());
                (f, result)
            })
        };
        let mut state = self.lock();
        if let Some(event) = state.ready.pop_front() {
            drop(state);
            *recorded = alone(finished);
            return Ok(Some(self.started(event)));
        }
        let free = self.workers.saturating_sub(state.total_in_flight());
        if free == 0 {
            drop(state);
            *recorded = alone(finished);
            return Ok(None);
        }
        let queued = match store.queued_integrations() {
            Ok(queued) => queued,
            Err(e) => {
                drop(state);
                *recorded = alone(finished);
                return Err(e);
            }
        };
        let (ids, orphans): (Vec<String>, Vec<String>) =
            queued.into_iter().partition(|id| configured(id));
        // In name order, starting after the one served first last time.
        let start = state
            .cursor
            .as_deref()
            .map_or(0, |last| ids.partition_point(|id| id.as_str() <= last));
        let mut wants: Vec<(&str, usize)> = Vec::with_capacity(ids.len());
        for id in ids[start..].iter().chain(&ids[..start]) {
            let id = id.as_str();
            let held = state.in_flight.get(id).copied().unwrap_or(0);
            if held >= self.limit || !state.breakers.admits(id, metrics) {
                continue;
            }
            let want = if state.breakers.state(id) == "half-open" {
                1
            } else {
                self.limit - held
            };
            wants.push((id, want));
        }
        // Full: events are queued, but no configured integration may take one now (each at its
        // limit or paused, or only removed integrations' events are left).
        state.full = wants.is_empty() && !(ids.is_empty() && orphans.is_empty());
        let claimed = match finished {
            Some(f) if !wants.is_empty() => {
                match store.claim_batch_after(f.clone(), run, lease_ms, &wants, free) {
                    Ok((done, claimed)) => {
                        *recorded = Some((f, Ok(done)));
                        claimed
                    }
                    Err(e) => {
                        let claim = StoreError::Batch(e.to_string());
                        *recorded = Some((f, Err(e)));
                        return Err(claim);
                    }
                }
            }
            Some(f) => {
                // Nothing to claim: the outcome commits alone, without holding the dispatcher
                // (other workers and freed permits wait on it).
                drop(state);
                *recorded = alone(Some(f));
                state = self.lock();
                Vec::new()
            }
            None => claim_batch(store, run, lease_ms, &wants, free)?,
        };
        progress.unplaced = claimed.iter().map(|e| (e.id, e.claim_seq)).collect();
        #[cfg(test)]
        if self
            .panic_after_claim
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("fault seam: the dispatcher panics after a committed claim");
        }
        if let (false, Some((first, _))) = (claimed.is_empty(), wants.first()) {
            state.cursor = Some(first.to_string());
        }
        let mut claimed = claimed.into_iter();
        let first = match claimed.next() {
            Some(first) => first,
            None => {
                // Events of integrations that are no longer configured, at most once a second.
                if (state.orphans_checked).is_some_and(|at| at.elapsed() < ORPHANS_EVERY) {
                    return Ok(None);
                }
                state.orphans_checked = Some(Instant::now());
                match claim_orphan(store, run, lease_ms, &orphans)? {
                    Some(event) => {
                        progress.unplaced = vec![(event.id, event.claim_seq)];
                        event
                    }
                    None => return Ok(None),
                }
            }
        };
        for event in std::iter::once(&first).chain(claimed.as_slice()) {
            state.breakers.claimed(&event.integration);
            *state
                .in_flight
                .entry(event.integration.clone())
                .or_insert(0) += 1;
        }
        let others = claimed.len();
        state.ready.extend(claimed);
        // Placed: `first` goes to this worker, the others wait in `ready`.
        progress.unplaced.clear();
        drop(state);
        for _ in 0..others {
            self.freed.notify_one();
        }
        Ok(Some(self.started(first)))
    }

    /// A claimed event waiting in `ready`, if any, for a worker to start now: no store write
    /// and no blocking thread (its place was taken at the claim). The caller records its own
    /// finished attempt apart (see [`Dispatcher::next`] for when it rides with a claim).
    pub fn take_ready(self: &Arc<Self>) -> Option<(Event, Permit)> {
        let event = self.lock().ready.pop_front()?;
        Some(self.started(event))
    }

    /// The permit of a claimed event (its place was taken at the claim).
    fn started(self: &Arc<Self>, event: Event) -> (Event, Permit) {
        let permit = Permit {
            dispatcher: self.clone(),
            integration: event.integration.clone(),
        };
        (event, permit)
    }

    /// Hands the ready events (claimed, never started) back to the queue, uncounted: the host
    /// is stopping. Returns how many.
    pub fn hand_back(&self, store: &Store, run: &str) -> usize {
        let claims: Vec<(i64, i64)> = {
            let mut state = self.lock();
            let ready: Vec<Event> = state.ready.drain(..).collect();
            // Their places go with them.
            for e in &ready {
                if let Some(n) = state.in_flight.get_mut(&e.integration) {
                    *n = n.saturating_sub(1);
                }
            }
            ready.iter().map(|e| (e.id, e.claim_seq)).collect()
        };
        if claims.is_empty() {
            return 0;
        }
        match store.unclaim(&claims, run) {
            Ok(n) => n,
            Err(e) => {
                // The run's end (or, after a crash, the next run) takes them back instead.
                tracing::error!(error = %e, events = claims.len(), "cannot hand back claimed events");
                0
            }
        }
    }

    /// Feeds an attempt's outcome to the integration's breaker.
    pub fn record(&self, app: &App, integration: &str, verdict: Verdict) {
        self.record_with(&app.metrics, integration, verdict);
    }

    fn record_with(&self, metrics: &Metrics, integration: &str, verdict: Verdict) {
        self.lock().breakers.record(integration, verdict, metrics);
    }

    /// The breaker state of an integration (`closed`, `open`, `half-open`).
    pub fn breaker_state(&self, integration: &str) -> &'static str {
        self.lock().breakers.state(integration)
    }

    /// Whether the last [`Dispatcher::next`] that found nothing found no room either (every
    /// integration at its limit or paused): a worker then waits for a freed place, not for the
    /// next due time.
    pub fn full(&self) -> bool {
        self.lock().full
    }

    /// Events of `integration` claimed or running now.
    pub fn in_flight(&self, integration: &str) -> usize {
        self.lock().in_flight.get(integration).copied().unwrap_or(0)
    }
}

/// What a caught panic says (its message when it has one).
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// The oldest due event of the first of `orphans` (integrations no longer configured) that has
/// one.
fn claim_orphan(
    store: &Store,
    run: &str,
    lease_ms: i64,
    orphans: &[String],
) -> Result<Option<Event>> {
    for orphan in orphans {
        let claim = Claim {
            integration: Some(orphan.as_str()),
            ..Claim::any(run, lease_ms)
        };
        if let Some(event) = store.claim(&claim)? {
            return Ok(Some(event));
        }
    }
    Ok(None)
}

/// [`Store::claim_batch`] for the plan, nothing asked when nothing may be claimed.
fn claim_batch(
    store: &Store,
    run: &str,
    lease_ms: i64,
    wants: &[(&str, usize)],
    total: usize,
) -> Result<Vec<Event>> {
    if wants.is_empty() {
        return Ok(Vec::new());
    }
    store.claim_batch(run, lease_ms, wants, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TempStore;
    use crate::store::EventState;

    const RUN: &str = "run-1";

    fn store_with(events: &[(&str, usize)]) -> TempStore {
        let store = crate::store::testing::sqlite();
        store.begin_run(RUN, "test").unwrap();
        for (integration, n) in events {
            for i in 0..*n {
                store
                    .enqueue(integration, "k", &format!("{integration}-{i}"), "{}")
                    .unwrap();
            }
        }
        store
    }

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn next(
        d: &Arc<Dispatcher>,
        ids: &[String],
        s: &Store,
        m: &Metrics,
    ) -> Option<(Event, Permit)> {
        d.next_of(&|id| ids.iter().any(|i| i == id), s, m, RUN, 60_000)
            .unwrap()
    }

    #[test]
    fn one_claim_serves_every_free_worker_in_turn_within_the_limits() {
        let (s, m) = (
            store_with(&[("a", 10), ("b", 10), ("c", 1)]),
            Metrics::default(),
        );
        let names = ids(&["a", "b", "c"]);
        let d = Dispatcher::with(
            6,
            2,
            Breakers::new(5, Duration::from_secs(60), Duration::from_secs(60)),
        );
        let mut taken = Vec::new();
        while let Some(t) = next(&d, &names, &s, &m) {
            taken.push(t);
        }
        let order: Vec<&str> = taken.iter().map(|(e, _)| e.integration.as_str()).collect();
        // Dealt in turn; `c` has one event; each integration holds at most 2 places.
        assert_eq!(order, ["a", "b", "c", "a", "b"]);
        assert_eq!(
            s.held_by(RUN).unwrap(),
            5,
            "every claimed event is leased to the run"
        );
        // A freed place of `a` goes to `a`'s next event (`b` is at its limit, `c` has none).
        let pos = order.iter().position(|i| *i == "a").unwrap();
        drop(taken.remove(pos));
        let (e, _p) = next(&d, &names, &s, &m).expect("a place is free");
        assert_eq!(e.integration, "a");
        assert!(next(&d, &names, &s, &m).is_none());
    }

    #[test]
    fn claims_never_exceed_the_free_workers_and_start_after_the_last_served() {
        let (s, m) = (store_with(&[("a", 5), ("b", 5)]), Metrics::default());
        let names = ids(&["a", "b"]);
        let d = Dispatcher::with(
            3,
            4,
            Breakers::new(5, Duration::from_secs(60), Duration::from_secs(60)),
        );
        let first: Vec<_> = std::iter::from_fn(|| next(&d, &names, &s, &m)).collect();
        let order: Vec<&str> = first.iter().map(|(e, _)| e.integration.as_str()).collect();
        assert_eq!(order, ["a", "b", "a"]);
        drop(first);
        // The next batch starts with `b`.
        let (e, _p) = next(&d, &names, &s, &m).unwrap();
        assert_eq!(e.integration, "b");
    }

    #[test]
    fn events_of_removed_integrations_are_still_taken_at_most_once_a_second_and_full_is_told() {
        let (s, m) = (store_with(&[("gone", 2), ("a", 1)]), Metrics::default());
        let names = ids(&["a"]);
        let d = Dispatcher::with(
            4,
            1,
            Breakers::new(5, Duration::from_secs(60), Duration::from_secs(60)),
        );
        let (a, _pa) = next(&d, &names, &s, &m).expect("a's event first");
        assert_eq!(a.integration, "a");
        // `a` is at its limit: nothing of it may be taken, and the dispatcher says so.
        let (g1, _p1) = next(&d, &names, &s, &m).expect("a removed integration's event");
        assert_eq!(g1.integration, "gone");
        assert!(d.full(), "every configured integration is at its limit");
        // The next one waits for the next look, a second later (the look scans the queue).
        assert!(next(&d, &names, &s, &m).is_none());
        std::thread::sleep(ORPHANS_EVERY + Duration::from_millis(50));
        let (g2, _p2) = next(&d, &names, &s, &m).expect("taken at the next look");
        assert_eq!(g2.integration, "gone");
        assert_ne!(g1.id, g2.id);
    }

    #[test]
    fn a_half_open_breaker_lets_exactly_one_probe_through() {
        let (s, m) = (store_with(&[("a", 5), ("b", 2)]), Metrics::default());
        let names = ids(&["a", "b"]);
        let d = Dispatcher::with(8, 4, Breakers::new(1, Duration::ZERO, Duration::ZERO));
        d.lock().breakers.record("a", Verdict::VendorFailure, &m);
        assert_eq!(d.breaker_state("a"), "open");
        let taken: Vec<_> = std::iter::from_fn(|| next(&d, &names, &s, &m)).collect();
        let of_a = taken.iter().filter(|(e, _)| e.integration == "a").count();
        assert_eq!((of_a, taken.len()), (1, 3), "one probe of `a`, all of `b`");
        assert_eq!(d.breaker_state("a"), "half-open");
        // The probe succeeds: `a` is served in full again.
        d.record_with(&m, "a", Verdict::Success);
        let more: Vec<_> = std::iter::from_fn(|| next(&d, &names, &s, &m)).collect();
        assert_eq!(
            more.len(),
            3,
            "up to `a`'s limit of 4 with the probe still held"
        );
    }

    #[test]
    fn a_worker_starts_an_event_claimed_for_it_without_claiming_again() {
        let (s, m) = (store_with(&[("a", 5)]), Metrics::default());
        let names = ids(&["a"]);
        let d = Dispatcher::with(
            3,
            3,
            Breakers::new(5, Duration::from_secs(60), Duration::from_secs(60)),
        );
        assert!(d.take_ready().is_none(), "nothing claimed yet");
        let (first, _p1) = next(&d, &names, &s, &m).unwrap();
        assert_eq!(
            s.held_by(RUN).unwrap(),
            3,
            "one claim for the three workers"
        );
        let (second, _p2) = d.take_ready().expect("claimed for the second worker");
        let (third, _p3) = d.take_ready().expect("claimed for the third worker");
        assert!(first.id < second.id && second.id < third.id, "oldest first");
        assert!(d.take_ready().is_none());
        assert_eq!(
            s.held_by(RUN).unwrap(),
            3,
            "taking a ready event claims nothing"
        );
        assert_eq!(d.in_flight("a"), 3, "each holds its place");
    }

    #[test]
    fn claimed_events_not_started_are_handed_back_uncounted() {
        let (s, m) = (store_with(&[("a", 4)]), Metrics::default());
        let names = ids(&["a"]);
        let d = Dispatcher::with(
            4,
            4,
            Breakers::new(5, Duration::from_secs(60), Duration::from_secs(60)),
        );
        let (started, permit) = next(&d, &names, &s, &m).unwrap();
        assert_eq!(s.held_by(RUN).unwrap(), 4, "the batch is leased to the run");
        assert_eq!(d.hand_back(&s, RUN), 3);
        assert_eq!(d.in_flight("a"), 1, "only the started one holds a place");
        assert_eq!(s.held_by(RUN).unwrap(), 1);
        for e in s.events("a", 10).unwrap() {
            if e.id == started.id {
                continue;
            }
            assert_eq!((e.state, e.attempts), (EventState::Queued, 0));
            let d = s.event_detail(e.id).unwrap().unwrap();
            assert!(d.attempts_history.is_empty(), "never started: no attempt");
        }
        drop(permit);
        assert_eq!(d.in_flight("a"), 0);
    }

    #[test]
    fn a_panic_after_a_committed_claim_hands_its_events_back_and_reports_the_outcome() {
        let (s, m) = (store_with(&[("a", 4)]), Metrics::default());
        let names = ids(&["a"]);
        let configured = |id: &str| names.iter().any(|i| i == id);
        let d = Dispatcher::with(
            2,
            2,
            Breakers::new(5, Duration::from_secs(60), Duration::from_secs(60)),
        );
        let (first, permit) = next(&d, &names, &s, &m).unwrap();
        let (second, _held) = next(&d, &names, &s, &m).unwrap();
        let finish = crate::store::Finish {
            run: RUN,
            claim_seq: first.claim_seq,
            state: EventState::Done,
            error: None,
            connector_version: None,
            retry_at: None,
            started_at_ms: 0,
            took_ms: 1,
        };
        let finished = Finished::new(first.id, first.attempts, &finish, Vec::new());
        drop(permit);
        d.panic_after_claim
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // The outcome and a claim of the freed place commit together, then the dispatcher panics.
        let (next_one, recorded) =
            d.next_caught(&configured, (&s, &m), (RUN, 60_000), Some(finished));
        assert!(matches!(next_one, Err(StoreError::Panicked)));
        let (_, how) = recorded.expect("the outcome's recording is reported");
        assert!(
            matches!(how, Ok(true)),
            "recorded before the panic: {how:?}"
        );
        assert_eq!(s.event(first.id).unwrap().unwrap().state, EventState::Done);
        // The event claimed in that write is queued again, uncounted; only `second` is held.
        assert_eq!(s.held_by(RUN).unwrap(), 1);
        let queued: Vec<Event> = s
            .events("a", 10)
            .unwrap()
            .into_iter()
            .filter(|e| e.state == EventState::Queued)
            .collect();
        assert_eq!(queued.len(), 2);
        assert!(queued.iter().all(|e| e.attempts == 0), "{queued:?}");
        // The dispatcher goes on: the handed-back events are claimed again.
        let (again, _p) = next(&d, &names, &s, &m).expect("claimable again");
        assert!(queued.iter().any(|e| e.id == again.id));
        assert_ne!(again.id, second.id);
    }

    #[test]
    fn with_two_workers_a_hung_integration_leaves_one_for_its_neighbour() {
        let (s, m) = (store_with(&[("hung", 5)]), Metrics::default());
        let names = ids(&["hung", "ok"]);
        // The default integration_concurrency (8) is above the 2 workers.
        let w = WorkerConfig {
            concurrency: 2,
            ..WorkerConfig::default()
        };
        let d = Dispatcher::of_config(&w);
        // `hung`'s backlog came first; its events never finish (their permits are held).
        let mut held = Vec::new();
        while let Some(t) = next(&d, &names, &s, &m) {
            held.push(t);
        }
        assert_eq!(held.len(), 1, "`hung` holds one of the two workers");
        // The neighbour's event arrives afterwards and is taken by the other worker.
        s.enqueue("ok", "k", "ok-1", "{}").unwrap();
        let (e, _p) = next(&d, &names, &s, &m).expect("a worker is left for `ok`");
        assert_eq!(e.integration, "ok");
    }
}
