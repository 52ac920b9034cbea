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
//! worker (the others are woken). A worker that just finished keeps its place until its look
//! plans ([`Permit::release_to_holder`]): two workers finishing at once then claim one event
//! each, each with its own outcome, where the first used to claim both places and turn the
//! second away with its outcome written alone. A finishing worker given a ready event instead
//! gets its outcome back unwritten ([`Next::unwritten`]), written beside that event's first
//! steps, not awaited before them. A claimed event holds its integration's place from the claim,
//! so the limits count ready and running events alike; it is leased to this run from the claim
//! too, so the heartbeat renews it and a crash hands it back like a running one. On a graceful
//! stop, ready events are handed back uncounted ([`Dispatcher::hand_back`]). A ready event whose
//! breaker opened after the claim still runs, like one that was running when it opened.
//!
//! Why one batch decided here and not one claim per worker: a batch decided under one lock keeps
//! fairness and the limits with one statement per integration, while per-worker claims would
//! each re-run the round robin and cost a statement per event. The lock is held only to decide
//! and to place, never through the claim's commit: the decision reserves its places (per
//! integration what the deal can give it, in all the free workers it claims for, a half-open
//! breaker's probe), counted like held ones until the claimed events are placed, so claims of
//! several workers run at once and share one group commit, and together they never exceed a
//! limit or take a probe twice. (Held through the commit, the lock let one claim through per
//! commit, the other finishing workers waiting on blocking threads.) The claim is awaited on the
//! worker's own task, no blocking thread in between.
//!
//! **On PostgreSQL, one look and claim at a time** per host (an async mutex held from the look
//! through placing the claim's events; a worker waiting for it then finds them in `ready`).
//! There a look is a round trip (on a blocking thread), and with concurrent claims every worker
//! woken at once (a batch of webhooks wakes the idle ones, NOTIFY those of every host) looked
//! before any had reserved; most then found the places reserved and recorded their outcome
//! alone. Measured (bench, A/B on one build, two runs each, 3 hosts): looks per ack 10.6 and
//! 9.7 against 0.18 serialized, host CPU per ack ~1,120 µs against 281–351; per event 9.5 and
//! 8.4 looks against 1.1 and 1.0, 3.1–3.3 ms against 2.2–2.8. SQLite keeps concurrent claims:
//! its look is a read beside the writer, and the claims of workers finishing at once share one
//! commit.
//!
//! [`Store::claim_batch`]: crate::store::Store::claim_batch

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;

use crate::app::App;
use crate::config::WorkerConfig;
use crate::flow::breaker::{Breakers, Verdict};
use crate::metrics::Metrics;
use crate::store::{Claim, Event, Finished, Result, Store, StoreError};

/// A finished attempt handed to [`Dispatcher::next`] and whether it was recorded (see
/// [`Store::finish`]).
pub type Recorded = (Finished, Result<bool>);

/// What [`Dispatcher::next`] gives a worker.
pub struct Next {
    /// The event to run next, with its place; none; or why the look failed.
    pub event: Result<Option<(Event, Permit)>>,
    /// How the finished attempt handed in was written (with the claim, or alone), if it was.
    pub recorded: Option<Recorded>,
    /// The finished attempt handed in, not written: `event` was already claimed for the worker
    /// (no claim of its own to carry it), and the worker writes it beside that event's first
    /// steps rather than wait for its commit before starting.
    pub unwritten: Option<Finished>,
}

/// Which integrations are configured (the dispatcher's view of the app).
type Configured<'a> = &'a (dyn Fn(&str) -> bool + Sync);

/// What one [`Dispatcher::next`] has done so far, kept outside it so that a panic halfway loses
/// none of it: how the finished attempt was recorded, and the events claimed (committed) but not
/// yet placed with a worker or in `ready`, which are then handed back to the queue.
#[derive(Default)]
struct Progress {
    recorded: Option<Recorded>,
    unwritten: Option<Finished>,
    /// `(id, claim_seq)` of each.
    unplaced: Vec<(i64, i64)>,
}

struct State {
    /// Events claimed or running, per integration (each holds a place).
    in_flight: HashMap<String, usize>,
    /// Places reserved by claims being committed now, per integration and in all: counted like
    /// held ones, so several workers' claims run at once (in one group commit) without the lock
    /// held through a commit, and still never exceed a limit together (see [`Reserved`]).
    claiming: HashMap<String, usize>,
    claiming_total: usize,
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
    /// A look found no room while claims held reservations: the places a claim reserved and
    /// did not fill wake that many workers when it ends. Without such a look nobody waits for
    /// them, and a wake-up would only start another claim (one that finds nothing, among hosts
    /// racing for the same events or beside events not due yet, would wake the next: a loop).
    turned_away: bool,
}

/// How often to take events of integrations no longer configured. Such events are rare and only
/// end dead, so a second's delay is nothing, and an idle wake-up never pays for them.
const ORPHANS_EVERY: Duration = Duration::from_secs(1);

impl State {
    /// Places taken in all: held (claimed or running) and reserved by claims in flight.
    fn total_in_flight(&self) -> usize {
        self.in_flight.values().sum::<usize>() + self.claiming_total
    }

    /// Places of `integration` taken: held and reserved.
    fn held(&self, integration: &str) -> usize {
        self.in_flight.get(integration).copied().unwrap_or(0)
            + self.claiming.get(integration).copied().unwrap_or(0)
    }
}

/// Shared by the workers of one host.
pub struct Dispatcher {
    limit: usize,
    workers: usize,
    state: Mutex<State>,
    /// On PostgreSQL, held from a worker's look through its claim's placing: one look and claim
    /// at a time per host (see the module's "On PostgreSQL").
    serial: Option<tokio::sync::Mutex<()>>,
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
    /// Whether freeing it wakes a waiting worker (see [`Permit::release_to_holder`]).
    wake: bool,
    /// Still counted in `in_flight` (false once freed under the lock, [`Place::free_in`]).
    held: bool,
}

impl Permit {
    /// Keeps the place for the worker that held it, which looks for its next event at once with
    /// its finished attempt: counted as held until that look plans ([`Dispatcher::next`]), so a
    /// worker finishing beside it cannot claim this place too and leave its holder no room (its
    /// outcome then written alone, not with a claim); then freed without waking anyone (a
    /// wake-up would have another worker race the holder for it).
    pub fn release_to_holder(mut self) -> Place {
        self.wake = false;
        Place(self)
    }
}

/// A finished event's place kept for its holder's next look (see [`Permit::release_to_holder`]);
/// freed without a wake-up when dropped.
pub struct Place(Permit);

impl Place {
    /// Frees the place and wakes a waiting worker for it: its holder takes an event already
    /// claimed for it instead.
    pub fn pass_on(mut self) {
        self.0.wake = true;
    }

    /// Frees the place under the dispatcher's lock, for its holder's own look.
    fn free_in(mut self, state: &mut State) {
        if let Some(n) = state.in_flight.get_mut(&self.0.integration) {
            *n = n.saturating_sub(1);
        }
        self.0.held = false;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let mut state = self.dispatcher.lock();
        if let Some(n) = state.in_flight.get_mut(&self.integration) {
            *n = n.saturating_sub(1);
        }
        drop(state);
        if self.wake {
            self.dispatcher.freed.notify_one();
        }
    }
}

/// The places one claim reserved while it commits: per integration at most what the deal can
/// give it (its want, within the total), in all the claim's total, and the probes of half-open
/// breakers it takes. Given back when the claim's events are placed, or when it fails, panics or
/// is cancelled (dropped): a probe that found no event is let through again.
struct Reserved<'a> {
    dispatcher: &'a Dispatcher,
    wants: Vec<(String, usize)>,
    total: usize,
    probes: Vec<String>,
}

impl Reserved<'_> {
    /// Gives the places back; `got` are the integrations of the events placed (their probes
    /// stay taken).
    fn release(&mut self, state: &mut State, got: &[&str]) {
        // Held per integration (`wants`, which may sum past the total) and in all (`total`):
        // whichever is more, less what was placed, may have kept workers from a place.
        let held = self
            .wants
            .iter()
            .map(|(_, n)| n)
            .sum::<usize>()
            .max(self.total);
        for (id, n) in self.wants.drain(..) {
            if let Some(r) = state.claiming.get_mut(&id) {
                *r = r.saturating_sub(n);
                if *r == 0 {
                    state.claiming.remove(&id);
                }
            }
        }
        state.claiming_total = state.claiming_total.saturating_sub(self.total);
        for probe in self.probes.drain(..) {
            if !got.contains(&probe.as_str()) {
                state.breakers.unclaimed(&probe);
            }
        }
        let unused = match state.turned_away {
            true => held.saturating_sub(got.len()).min(self.dispatcher.workers),
            false => 0,
        };
        // Cleared only with the last reservation: a worker turned away while several claims
        // held places waits for whichever leaves some unused, not only for the first to end
        // (which may fill all of its own and wake nobody).
        if state.claiming_total == 0 {
            state.turned_away = false;
        }
        self.total = 0;
        // Workers that found no room because of a reservation look again.
        for _ in 0..unused {
            self.dispatcher.freed.notify_one();
        }
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.total > 0 || !self.probes.is_empty() {
            let mut state = self.dispatcher.lock();
            self.release(&mut state, &[]);
        }
    }
}

/// What a look under the lock decided.
enum Plan<'a> {
    /// An event another worker's claim left in `ready`.
    Ready(Event),
    /// Claim these (integration, want), at most `total`, with the places reserved.
    Claim(Vec<(String, usize)>, Reserved<'a>),
    /// No room, or nothing a configured integration may take now.
    Nothing,
}

impl Dispatcher {
    pub fn new(app: &App) -> Arc<Dispatcher> {
        let serial = app.store.dialect() == crate::store::Dialect::Postgres;
        Dispatcher::of_config(&app.config.worker, serial)
    }

    /// The dispatcher of `[worker]`, with its effective per-integration limit (never every
    /// worker: see [`WorkerConfig::effective_integration_concurrency`]); `serial`: one look and
    /// claim at a time (PostgreSQL).
    fn of_config(w: &WorkerConfig, serial: bool) -> Arc<Dispatcher> {
        Dispatcher::build(
            w.concurrency,
            w.effective_integration_concurrency(),
            Breakers::new(
                w.breaker_failures,
                Duration::from_secs(w.breaker_first_open_secs),
                Duration::from_secs(w.breaker_open_secs),
            ),
            serial,
        )
    }

    /// A dispatcher for `workers` workers, at most `limit` events per integration, claims
    /// concurrent (SQLite's).
    #[cfg(test)]
    fn with(workers: usize, limit: usize, breakers: Breakers) -> Arc<Dispatcher> {
        Dispatcher::build(workers, limit, breakers, false)
    }

    fn build(workers: usize, limit: usize, breakers: Breakers, serial: bool) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            limit: limit.max(1),
            workers: workers.max(1),
            serial: serial.then(|| tokio::sync::Mutex::new(())),
            freed: tokio::sync::Notify::new(),
            #[cfg(test)]
            panic_after_claim: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(State {
                in_flight: HashMap::new(),
                claiming: HashMap::new(),
                claiming_total: 0,
                cursor: None,
                breakers,
                ready: VecDeque::new(),
                orphans_checked: None,
                full: false,
                turned_away: false,
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
    /// (one commit for both), or alone when no claim is written (no room, nothing to claim);
    /// how that went is returned with it, for the worker to retry the outcome alone on an error.
    /// When the worker is given an event already claimed for it, `finished` comes back unwritten
    /// ([`Next::unwritten`]). `place`: that attempt's place, kept for this look (see
    /// [`Permit::release_to_holder`]).
    ///
    /// On the worker's own task: the claim is a write of the group commit awaited like any
    /// other (no blocking thread), and the dispatcher's lock is held only to decide and to place,
    /// never through a commit, so the claims of workers finishing at once share one commit on
    /// SQLite; on PostgreSQL they go one at a time (module doc, "On PostgreSQL").
    ///
    /// A panic in here is caught: it is logged, the events it had claimed and not placed yet go
    /// back to the queue uncounted, and the finished attempt's recording is reported as it went
    /// (recorded before the panic, or not: never a misleading "lease lost").
    pub async fn next(
        self: &Arc<Self>,
        app: &App,
        run: &str,
        lease_ms: i64,
        finished: Option<Finished>,
        place: Option<Place>,
    ) -> Next {
        let configured = |id: &str| app.integration(id).is_some();
        let scope = (&app.store, &*app.metrics);
        self.next_caught(&configured, scope, (run, lease_ms), finished, place)
            .await
    }

    /// [`Dispatcher::next`], `configured` telling which integrations are configured.
    async fn next_caught(
        self: &Arc<Self>,
        configured: Configured<'_>,
        (store, metrics): (&Store, &Metrics),
        lease: (&str, i64),
        finished: Option<Finished>,
        place: Option<Place>,
    ) -> Next {
        let mut progress = Progress::default();
        let next = AssertUnwindSafe(self.next_after(
            configured,
            (store, metrics),
            lease,
            (finished, place),
            &mut progress,
        ))
        .catch_unwind()
        .await;
        let next = match next {
            Ok(next) => next,
            Err(panic) => {
                let run = lease.0;
                let handed_back = match progress.unplaced.as_slice() {
                    [] => 0,
                    claims => {
                        // A blocking transaction (the writer's connection, or PostgreSQL's
                        // I/O): on a blocking thread, not the async worker's.
                        let events = claims.len();
                        let (store, claims, run) = (store.clone(), claims.to_vec(), run.to_owned());
                        tokio::task::spawn_blocking(move || store.unclaim(&claims, &run))
                            .await
                            .unwrap_or(Err(StoreError::Panicked))
                            .unwrap_or_else(|e| {
                                // The run's end (or the next run) takes them back instead.
                                tracing::error!(error = %e, events, "cannot hand back claimed events");
                                0
                            })
                    }
                };
                tracing::error!(
                    panic = panic_text(panic.as_ref()),
                    handed_back,
                    "the dispatcher panicked; the events it had claimed and not started are queued again"
                );
                Err(StoreError::Panicked)
            }
        };
        Next {
            event: next,
            recorded: progress.recorded,
            unwritten: progress.unwritten,
        }
    }

    /// [`Dispatcher::next`] for tests, nothing finished.
    #[cfg(test)]
    async fn next_of(
        self: &Arc<Self>,
        configured: Configured<'_>,
        store: &Store,
        metrics: &Metrics,
        run: &str,
        lease_ms: i64,
    ) -> Result<Option<(Event, Permit)>> {
        self.next_caught(configured, (store, metrics), (run, lease_ms), None, None)
            .await
            .event
    }

    /// [`Dispatcher::next`]; what it did so far goes to `progress`.
    async fn next_after(
        self: &Arc<Self>,
        configured: Configured<'_>,
        (store, metrics): (&Store, &Metrics),
        (run, lease_ms): (&str, i64),
        (finished, mut place): (Option<Finished>, Option<Place>),
        progress: &mut Progress,
    ) -> Result<Option<(Event, Permit)>> {
        // On PostgreSQL, one look and claim at a time: held until the claim's events are placed,
        // so a worker waiting here then finds them in `ready` (module doc, "On PostgreSQL").
        let gate = match &self.serial {
            Some(serial) => Some(serial.lock().await),
            None => None,
        };
        if let Some(ready) = self.take_ready() {
            drop(gate);
            // The place kept for this worker's look goes unused (it takes a claimed event
            // instead): another worker may use it. The outcome goes back unwritten: no claim
            // carries it, and the worker writes it beside this event's first steps.
            if let Some(place) = place {
                place.pass_on();
            }
            progress.unwritten = finished;
            return Ok(Some(ready));
        }
        let full = {
            let mut state = self.lock();
            // This worker's own place (kept for this look) is not taken.
            let own = usize::from(place.is_some());
            let full = state.total_in_flight().saturating_sub(own) >= self.workers;
            state.turned_away |= full && state.claiming_total > 0;
            // Told to the worker (`full()`): it then waits for a freed place, with no look at
            // the next due time (a round trip on PostgreSQL) that would not be used.
            if full {
                state.full = true;
            }
            full
        };
        if full {
            drop((gate, place));
            progress.recorded = alone((store, metrics), finished, "no_room").await;
            return Ok(None);
        }
        // On PostgreSQL the last claim may have read it already (no round trip).
        let (looked, by) = match store.queued_integrations_known() {
            Some(queued) => (Ok(queued), "claim"),
            None => (store.off_async(|s| s.queued_integrations()).await, "store"),
        };
        let queued = match looked {
            Ok(queued) => {
                metrics.look(by, !queued.is_empty());
                queued
            }
            Err(e) => {
                drop((gate, place));
                progress.recorded = alone((store, metrics), finished, "error").await;
                return Err(e);
            }
        };
        let (ids, orphans): (Vec<String>, Vec<String>) =
            queued.into_iter().partition(|id| configured(id));
        let (wants, reserved) = match self.plan(&ids, !orphans.is_empty(), metrics, &mut place) {
            Plan::Ready(event) => {
                drop(gate);
                // As above: the place goes to another worker, the outcome back unwritten.
                if let Some(place) = place {
                    place.pass_on();
                }
                progress.unwritten = finished;
                return Ok(Some(self.started(event)));
            }
            Plan::Nothing => {
                // Nothing to claim: the outcome commits alone.
                drop(gate);
                progress.recorded = alone((store, metrics), finished, "nothing").await;
                return self.claim_orphan(store, (run, lease_ms), orphans).await;
            }
            Plan::Claim(wants, reserved) => (wants, reserved),
        };
        let asked: Vec<(&str, usize)> = wants.iter().map(|(id, n)| (id.as_str(), *n)).collect();
        let kept = finished.clone();
        let claimed = store
            .claim_batch_after(finished, run, lease_ms, &asked, reserved.total)
            .await;
        let claimed = match (claimed, kept) {
            (Ok((done, claimed)), kept) => {
                if done.is_some() {
                    metrics.outcome_recorded("claim");
                }
                progress.recorded = kept.zip(done).map(|(f, done)| (f, Ok(done)));
                claimed
            }
            (Err(e), kept) => {
                let claim = StoreError::Batch(e.to_string());
                progress.recorded = kept.map(|f| (f, Err(e)));
                return Err(claim);
            }
        };
        progress.unplaced = claimed.iter().map(|e| (e.id, e.claim_seq)).collect();
        #[cfg(test)]
        if self
            .panic_after_claim
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("fault seam: the dispatcher panics after a committed claim");
        }
        let first = wants.first().map(|(id, _)| id.as_str());
        let placed = self.place(reserved, claimed, first);
        progress.unplaced.clear();
        drop(gate);
        match placed {
            Some(first) => Ok(Some(first)),
            None => self.claim_orphan(store, (run, lease_ms), orphans).await,
        }
    }

    /// Decides under the lock what to claim, and reserves its places: an event left in `ready`
    /// meanwhile first; then, within the free workers, each configured integration with queued
    /// events in turn (starting after the one served first last time), up to its free places
    /// (one probe for a half-open breaker). `orphans`: whether integrations no longer configured
    /// have queued events. `place`: the calling worker's place, kept for this look, freed here
    /// (under the lock, so no other look can take it first) unless an event is ready.
    fn plan(
        &self,
        ids: &[String],
        orphans: bool,
        metrics: &Metrics,
        place: &mut Option<Place>,
    ) -> Plan<'_> {
        let mut state = self.lock();
        if let Some(event) = state.ready.pop_front() {
            return Plan::Ready(event);
        }
        if let Some(place) = place.take() {
            place.free_in(&mut state);
        }
        let free = self.workers.saturating_sub(state.total_in_flight());
        if free == 0 {
            state.turned_away |= state.claiming_total > 0;
            return Plan::Nothing;
        }
        let start = state
            .cursor
            .as_deref()
            .map_or(0, |last| ids.partition_point(|id| id.as_str() <= last));
        let mut wants: Vec<(String, usize)> = Vec::with_capacity(ids.len());
        let mut probes = Vec::new();
        for id in ids[start..].iter().chain(&ids[..start]) {
            let held = state.held(id);
            if held >= self.limit {
                state.turned_away |= state.claiming.contains_key(id);
                continue;
            }
            if !state.breakers.admits(id, metrics) {
                continue;
            }
            let want = if state.breakers.state(id) == "half-open" {
                // Taken now, so a claim beside this one does not probe too.
                state.breakers.claimed(id);
                probes.push(id.clone());
                1
            } else {
                self.limit - held
            };
            wants.push((id.clone(), want));
        }
        // Full: events are queued, but no configured integration may take one now (each at its
        // limit or paused, or only removed integrations' events are left).
        state.full = wants.is_empty() && (orphans || !ids.is_empty());
        if wants.is_empty() {
            return Plan::Nothing;
        }
        // At most the free workers, and no more than the integrations want: a claim beside this
        // one still finds the rest free.
        let total = free.min(wants.iter().map(|(_, want)| want).sum());
        let reserved: Vec<(String, usize)> = wants
            .iter()
            .map(|(id, want)| (id.clone(), (*want).min(total)))
            .collect();
        for (id, n) in &reserved {
            *state.claiming.entry(id.clone()).or_insert(0) += n;
        }
        state.claiming_total += total;
        let reserved = Reserved {
            dispatcher: self,
            wants: reserved,
            total,
            probes,
        };
        Plan::Claim(wants, reserved)
    }

    /// Places a committed claim's events: the first for the calling worker, the others in
    /// `ready` (the other workers woken), each holding its integration's place; the claim's
    /// reservation given back. `first_asked`: the integration the claim asked first (the next
    /// claim starts after it when this one found work).
    fn place(
        self: &Arc<Self>,
        mut reserved: Reserved<'_>,
        claimed: Vec<Event>,
        first_asked: Option<&str>,
    ) -> Option<(Event, Permit)> {
        let mut state = self.lock();
        let got: Vec<&str> = claimed.iter().map(|e| e.integration.as_str()).collect();
        reserved.release(&mut state, &got);
        if let (false, Some(first)) = (claimed.is_empty(), first_asked) {
            state.cursor = Some(first.to_string());
        }
        for event in &claimed {
            state.breakers.claimed(&event.integration);
            *state
                .in_flight
                .entry(event.integration.clone())
                .or_insert(0) += 1;
        }
        let mut claimed = claimed.into_iter();
        let first = claimed.next()?;
        let others = claimed.len();
        state.ready.extend(claimed);
        drop(state);
        for _ in 0..others {
            self.freed.notify_one();
        }
        Some(self.started(first))
    }

    /// The oldest due event of an integration no longer configured, at most once a second, if
    /// a worker is free: such events are rare and only end dead.
    async fn claim_orphan(
        self: &Arc<Self>,
        store: &Store,
        (run, lease_ms): (&str, i64),
        orphans: Vec<String>,
    ) -> Result<Option<(Event, Permit)>> {
        if orphans.is_empty() {
            return Ok(None);
        }
        let reserved = {
            let mut state = self.lock();
            let due = (state.orphans_checked).is_none_or(|at| at.elapsed() >= ORPHANS_EVERY);
            if !due || state.total_in_flight() >= self.workers {
                return Ok(None);
            }
            state.orphans_checked = Some(Instant::now());
            state.claiming_total += 1;
            Reserved {
                dispatcher: self,
                wants: Vec::new(),
                total: 1,
                probes: Vec::new(),
            }
        };
        // A single-row claim on the store's connection: off the worker's threads.
        let (store, run) = (store.clone(), run.to_owned());
        let claimed = tokio::task::spawn_blocking(move || -> Result<Option<Event>> {
            for orphan in &orphans {
                let claim = Claim {
                    integration: Some(orphan.as_str()),
                    ..Claim::any(&run, lease_ms)
                };
                if let Some(event) = store.claim(&claim)? {
                    return Ok(Some(event));
                }
            }
            Ok(None)
        })
        .await
        .unwrap_or(Err(StoreError::Panicked))?;
        Ok(self.place(reserved, claimed.into_iter().collect(), None))
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
            wake: true,
            held: true,
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

/// Records a worker's finished attempt alone (no claim carries it), counted by why (`with`, see
/// [`Metrics::outcome_recorded`]).
async fn alone(
    (store, metrics): (&Store, &Metrics),
    finished: Option<Finished>,
    with: &'static str,
) -> Option<Recorded> {
    let f = finished?;
    metrics.outcome_recorded(with);
    let result = store.record_finished(f.clone()).await;
    Some((f, result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TempStore;
    use crate::store::EventState;

    const RUN: &str = "run-1";

    fn store_with(events: &[(&str, usize)]) -> TempStore {
        let store = crate::store::testing::sqlite();
        fill(&store, events);
        store
    }

    /// Begins [`RUN`] on `store` and queues `events` (integration, how many).
    fn fill(store: &Store, events: &[(&str, usize)]) {
        store.begin_run(RUN, "test").unwrap();
        for (integration, n) in events {
            for i in 0..*n {
                store
                    .enqueue(integration, "k", &format!("{integration}-{i}"), "{}")
                    .unwrap();
            }
        }
    }

    /// Polls `next` (a look and claim) until the claims in flight reserve `total` places,
    /// checking that it still waits: a look may first be a round trip on a blocking thread
    /// (PostgreSQL), which one poll does not see through.
    async fn until_claiming<F: std::future::Future + Unpin>(
        d: &Dispatcher,
        next: &mut F,
        total: usize,
    ) {
        for _ in 0..2_000 {
            assert!(
                futures::poll!(&mut *next).is_pending(),
                "its claim waits for the writer"
            );
            if d.lock().claiming_total >= total {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no claim reserved {total} places");
    }

    /// A dispatcher for `workers` workers, `limit` per integration, breakers that stay closed.
    fn dispatcher(workers: usize, limit: usize) -> Arc<Dispatcher> {
        Dispatcher::build(workers, limit, closed_breakers(), false)
    }

    /// [`dispatcher`], one look and claim at a time (PostgreSQL's).
    fn serialized(workers: usize, limit: usize) -> Arc<Dispatcher> {
        Dispatcher::build(workers, limit, closed_breakers(), true)
    }

    fn closed_breakers() -> Breakers {
        Breakers::new(5, Duration::from_secs(60), Duration::from_secs(60))
    }

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    async fn next(
        d: &Arc<Dispatcher>,
        ids: &[String],
        s: &Store,
        m: &Metrics,
    ) -> Option<(Event, Permit)> {
        d.next_of(&|id| ids.iter().any(|i| i == id), s, m, RUN, 60_000)
            .await
            .unwrap()
    }

    /// Every event the dispatcher hands out now, one [`next`] after the other.
    async fn all(
        d: &Arc<Dispatcher>,
        ids: &[String],
        s: &Store,
        m: &Metrics,
    ) -> Vec<(Event, Permit)> {
        let mut taken = Vec::new();
        while let Some(t) = next(d, ids, s, m).await {
            taken.push(t);
        }
        taken
    }

    #[tokio::test]
    async fn one_claim_serves_every_free_worker_in_turn_within_the_limits() {
        let (s, m) = (
            store_with(&[("a", 10), ("b", 10), ("c", 1)]),
            Metrics::default(),
        );
        let names = ids(&["a", "b", "c"]);
        let d = dispatcher(6, 2);
        let mut taken = all(&d, &names, &s, &m).await;
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
        let (e, _p) = next(&d, &names, &s, &m).await.expect("a place is free");
        assert_eq!(e.integration, "a");
        assert!(next(&d, &names, &s, &m).await.is_none());
    }

    #[tokio::test]
    async fn claims_never_exceed_the_free_workers_and_start_after_the_last_served() {
        let (s, m) = (store_with(&[("a", 5), ("b", 5)]), Metrics::default());
        let names = ids(&["a", "b"]);
        let d = dispatcher(3, 4);
        let first: Vec<_> = all(&d, &names, &s, &m).await;
        let order: Vec<&str> = first.iter().map(|(e, _)| e.integration.as_str()).collect();
        assert_eq!(order, ["a", "b", "a"]);
        drop(first);
        // The next batch starts with `b`.
        let (e, _p) = next(&d, &names, &s, &m).await.unwrap();
        assert_eq!(e.integration, "b");
    }

    #[tokio::test]
    async fn events_of_removed_integrations_are_still_taken_at_most_once_a_second_and_full_is_told()
    {
        let (s, m) = (store_with(&[("gone", 2), ("a", 1)]), Metrics::default());
        let names = ids(&["a"]);
        let d = dispatcher(4, 1);
        let (a, _pa) = next(&d, &names, &s, &m).await.expect("a's event first");
        assert_eq!(a.integration, "a");
        // `a` is at its limit: nothing of it may be taken, and the dispatcher says so.
        let (g1, _p1) = next(&d, &names, &s, &m)
            .await
            .expect("a removed integration's event");
        assert_eq!(g1.integration, "gone");
        assert!(d.full(), "every configured integration is at its limit");
        // The next one waits for the next look, a second later (the look scans the queue).
        assert!(next(&d, &names, &s, &m).await.is_none());
        std::thread::sleep(ORPHANS_EVERY + Duration::from_millis(50));
        let (g2, _p2) = next(&d, &names, &s, &m)
            .await
            .expect("taken at the next look");
        assert_eq!(g2.integration, "gone");
        assert_ne!(g1.id, g2.id);
    }

    #[tokio::test]
    async fn a_half_open_breaker_lets_exactly_one_probe_through() {
        let (s, m) = (store_with(&[("a", 5), ("b", 2)]), Metrics::default());
        let names = ids(&["a", "b"]);
        let d = Dispatcher::with(8, 4, Breakers::new(1, Duration::ZERO, Duration::ZERO));
        d.lock().breakers.record("a", Verdict::VendorFailure, &m);
        assert_eq!(d.breaker_state("a"), "open");
        let taken: Vec<_> = all(&d, &names, &s, &m).await;
        let of_a = taken.iter().filter(|(e, _)| e.integration == "a").count();
        assert_eq!((of_a, taken.len()), (1, 3), "one probe of `a`, all of `b`");
        assert_eq!(d.breaker_state("a"), "half-open");
        // The probe succeeds: `a` is served in full again.
        d.record_with(&m, "a", Verdict::Success);
        let more: Vec<_> = all(&d, &names, &s, &m).await;
        assert_eq!(
            more.len(),
            3,
            "up to `a`'s limit of 4 with the probe still held"
        );
    }

    /// The dispatcher's lock is not held through a claim's commit: a worker finishing while
    /// another's claim waits for the writer claims beside it, and both claims share one commit.
    #[tokio::test]
    async fn claims_of_workers_finishing_at_once_share_one_commit() {
        crate::store::testing::on_both_async!(claims_share_one_commit);
    }

    async fn claims_share_one_commit(s: Store) {
        fill(&s, &[("a", 10)]);
        let m = Metrics::default();
        let names = ids(&["a"]);
        let configured = |id: &str| names.iter().any(|i| i == id);
        let d = dispatcher(4, 3);
        let mut running = all(&d, &names, &s, &m).await;
        assert_eq!(running.len(), 3, "`a` at its limit");
        let held = crate::store::testing::hold_writer(&s);
        let commits = s.writer_stats().commits;
        drop(running.pop());
        let mut one = Box::pin(d.next_of(&configured, &s, &m, RUN, 60_000));
        until_claiming(&d, &mut one, 1).await;
        drop(running.pop());
        let mut two = Box::pin(d.next_of(&configured, &s, &m, RUN, 60_000));
        until_claiming(&d, &mut two, 2).await;
        assert_eq!(d.lock().claiming_total, 2, "both claims under way at once");
        drop(held);
        let (one, two) = (one.await.unwrap(), two.await.unwrap());
        let (one, two) = (one.expect("claimed"), two.expect("claimed"));
        assert_ne!(one.0.id, two.0.id);
        assert_eq!(
            s.writer_stats().commits,
            commits + 2,
            "the holding job's commit, then one for both claims"
        );
        assert_eq!((d.in_flight("a"), d.lock().claiming_total), (3, 0));
    }

    /// Serialized (PostgreSQL's dispatcher): a worker finishing while another's claim commits
    /// waits for it, and then takes the event that claim left ready for it, with no look or
    /// claim of its own (concurrent, it would be turned away by the claim's reservation and
    /// record its outcome alone).
    #[tokio::test]
    async fn serialized_a_worker_waits_for_the_claim_in_flight_and_takes_what_it_left_ready() {
        crate::store::testing::on_both_async!(serialized_waits_for_the_claim_in_flight);
    }

    async fn serialized_waits_for_the_claim_in_flight(s: Store) {
        fill(&s, &[("a", 10)]);
        let m = Metrics::default();
        let names = ids(&["a"]);
        let configured = |id: &str| names.iter().any(|i| i == id);
        let d = serialized(4, 4);
        let mut running = all(&d, &names, &s, &m).await;
        assert_eq!(running.len(), 4);
        let held = crate::store::testing::hold_writer(&s);
        let commits = s.writer_stats().commits;
        drop(running.pop());
        drop(running.pop());
        let mut one = Box::pin(d.next_of(&configured, &s, &m, RUN, 60_000));
        until_claiming(&d, &mut one, 2).await;
        let mut two = Box::pin(d.next_of(&configured, &s, &m, RUN, 60_000));
        assert!(
            futures::poll!(&mut two).is_pending(),
            "the second waits for the first claim"
        );
        assert_eq!(d.lock().claiming_total, 2, "one claim, for both places");
        drop(held);
        let one = one.await.unwrap().expect("claimed");
        let two = two.await.unwrap().expect("left ready by the first claim");
        assert_ne!(one.0.id, two.0.id);
        assert_eq!(
            s.writer_stats().commits,
            commits + 2,
            "the holding job's commit, then the one claim"
        );
        assert_eq!((d.in_flight("a"), d.lock().claiming_total), (4, 0));
    }

    /// A claim that finds nothing (its integration's events queued but not due, or taken by
    /// another host first) wakes no worker when none was turned away for its reservation: a
    /// wake-up would only start another such claim, which would wake the next, in a loop.
    #[tokio::test]
    async fn a_claim_that_finds_nothing_wakes_no_worker_when_none_was_turned_away() {
        let (s, m) = (store_with(&[("a", 1)]), Metrics::default());
        let names = ids(&["a"]);
        let d = dispatcher(4, 2);
        let (e, permit) = next(&d, &names, &s, &m).await.expect("claimed");
        let later = crate::store::Finish {
            run: RUN,
            claim_seq: e.claim_seq,
            state: EventState::Queued,
            error: Some("the ATS is down"),
            connector_version: None,
            retry_at: Some(crate::clock::now_ms() + 600_000),
            started_at_ms: crate::clock::now_ms(),
            took_ms: 1,
        };
        assert!(s.finish(e.id, &later).await.unwrap());
        drop(permit);
        // The ended event's own wake-up, taken.
        let _ = futures::poll!(Box::pin(d.freed.notified()));
        assert!(next(&d, &names, &s, &m).await.is_none(), "queued, not due");
        assert!(
            futures::poll!(Box::pin(d.freed.notified())).is_pending(),
            "nobody woken"
        );
    }

    /// A worker that found no room because a claim reserved the places is woken for each place
    /// the claim did not fill.
    #[tokio::test]
    async fn a_worker_turned_away_by_a_reservation_is_woken_for_the_places_it_left() {
        let (s, m) = (store_with(&[("a", 1)]), Metrics::default());
        let names = ids(&["a"]);
        let configured = |id: &str| names.iter().any(|i| i == id);
        let d = dispatcher(2, 2);
        let held = crate::store::testing::hold_writer(&s);
        let mut one = Box::pin(d.next_of(&configured, &s, &m, RUN, 60_000));
        assert!(futures::poll!(&mut one).is_pending(), "its claim waits");
        assert_eq!(d.lock().claiming_total, 2, "both places reserved");
        assert!(next(&d, &names, &s, &m).await.is_none(), "no room");
        assert!(
            d.full(),
            "told: the worker waits for a place, not the next due time"
        );
        assert!(futures::poll!(Box::pin(d.freed.notified())).is_pending());
        drop(held);
        let (_e, _p) = one.await.unwrap().expect("the one event");
        assert!(
            futures::poll!(Box::pin(d.freed.notified())).is_ready(),
            "the place the claim left wakes the worker it turned away"
        );
    }

    /// A worker turned away while two claims hold reservations is woken by the one that leaves
    /// places unused, even when the other ends first having filled all of its own.
    #[tokio::test]
    async fn a_worker_turned_away_by_two_claims_is_woken_by_the_one_that_leaves_places() {
        let (s, m) = (store_with(&[("a", 4)]), Metrics::default());
        let names = ids(&["a"]);
        let configured = |id: &str| names.iter().any(|i| i == id);
        let d = dispatcher(4, 3);
        let mut running = all(&d, &names, &s, &m).await;
        assert_eq!(running.len(), 3, "`a` at its limit, one event left");
        let held = crate::store::testing::hold_writer(&s);
        drop(running.pop());
        let mut one = Box::pin(d.next_of(&configured, &s, &m, RUN, 60_000));
        assert!(futures::poll!(&mut one).is_pending());
        drop(running.pop());
        let mut two = Box::pin(d.next_of(&configured, &s, &m, RUN, 60_000));
        assert!(futures::poll!(&mut two).is_pending());
        assert_eq!(
            d.lock().claiming_total,
            2,
            "one place reserved by each claim"
        );
        // The ended events' wake-ups, taken.
        let _ = futures::poll!(Box::pin(d.freed.notified()));
        assert!(next(&d, &names, &s, &m).await.is_none(), "turned away");
        assert!(futures::poll!(Box::pin(d.freed.notified())).is_pending());
        drop(held);
        let one = one.await.unwrap().expect("the last event");
        assert!(
            futures::poll!(Box::pin(d.freed.notified())).is_pending(),
            "the first claim filled its place"
        );
        assert!(two.await.unwrap().is_none(), "nothing left for the second");
        assert!(
            futures::poll!(Box::pin(d.freed.notified())).is_ready(),
            "the place the second claim left wakes the worker turned away"
        );
        drop(one);
    }

    /// A worker that ends its event frees the place for its own next look without waking an
    /// idle worker to race it; a place freed otherwise (a wait, a hand-back) wakes one.
    #[tokio::test]
    async fn a_place_freed_for_its_holder_wakes_no_other_worker() {
        let (s, m) = (store_with(&[("a", 3)]), Metrics::default());
        let names = ids(&["a"]);
        let d = dispatcher(4, 2);
        let mut running = all(&d, &names, &s, &m).await;
        assert_eq!(running.len(), 2);
        // The claim's wake-up for its ready event, taken already.
        let _ = futures::poll!(Box::pin(d.freed.notified()));
        let place = running.pop().unwrap().1.release_to_holder();
        assert_eq!(d.in_flight("a"), 2, "kept for its holder's next look");
        drop(place);
        assert_eq!(d.in_flight("a"), 1, "the place is free");
        assert!(
            futures::poll!(Box::pin(d.freed.notified())).is_pending(),
            "nobody woken"
        );
        drop(running.pop());
        assert!(futures::poll!(Box::pin(d.freed.notified())).is_ready());
        assert_eq!(d.in_flight("a"), 0);
    }

    #[tokio::test]
    async fn a_worker_starts_an_event_claimed_for_it_without_claiming_again() {
        let (s, m) = (store_with(&[("a", 5)]), Metrics::default());
        let names = ids(&["a"]);
        let d = dispatcher(3, 3);
        assert!(d.take_ready().is_none(), "nothing claimed yet");
        let (first, _p1) = next(&d, &names, &s, &m).await.unwrap();
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

    /// A finishing worker that takes a ready event inside `next` leaves unused the place its
    /// attempt freed for it (no wake-up then): another worker is woken for it.
    #[tokio::test]
    async fn a_finishing_worker_taking_a_ready_event_wakes_another_for_its_place() {
        let (s, m) = (store_with(&[("a", 5)]), Metrics::default());
        let names = ids(&["a"]);
        let d = dispatcher(3, 3);
        let (first, permit) = next(&d, &names, &s, &m).await.unwrap();
        assert_eq!(d.lock().ready.len(), 2);
        // The claim's wake-ups for its ready events, taken already.
        let _ = futures::poll!(Box::pin(d.freed.notified()));
        let place = permit.release_to_holder();
        let next = look_after(&d, &names, (&s, &m), &first, place).await;
        assert!(next.event.unwrap().is_some(), "a ready event");
        assert!(next.recorded.is_none(), "no claim to carry the outcome");
        let unwritten = next
            .unwritten
            .expect("handed back, for the worker to write");
        assert_eq!(unwritten.event(), first.id);
        assert_eq!(
            s.event(first.id).unwrap().unwrap().state,
            EventState::Running,
            "not written before the ready event starts"
        );
        assert!(
            futures::poll!(Box::pin(d.freed.notified())).is_ready(),
            "the place freed by the finished attempt wakes another worker"
        );
    }

    /// The outcome of `event`, done, as its worker hands it to its next look.
    fn done(event: &Event) -> Finished {
        let finish = crate::store::Finish {
            run: RUN,
            claim_seq: event.claim_seq,
            state: EventState::Done,
            error: None,
            connector_version: None,
            retry_at: None,
            started_at_ms: 0,
            took_ms: 1,
        };
        Finished::new(event.id, event.attempts, &finish, Vec::new())
    }

    /// A worker's look after it ended `ended` (done), its place kept for the look.
    async fn look_after(
        d: &Arc<Dispatcher>,
        names: &[String],
        (s, m): (&Store, &Metrics),
        ended: &Event,
        place: Place,
    ) -> Next {
        let configured = |id: &str| names.iter().any(|i| i == id);
        let lease = (RUN, 60_000);
        d.next_caught(&configured, (s, m), lease, Some(done(ended)), Some(place))
            .await
    }

    /// Two workers ending at once each claim their next event with their own outcome: the first
    /// to look does not take the place the second kept for its look (and leave it nothing to
    /// claim, its outcome then written alone).
    #[tokio::test]
    async fn workers_finishing_at_once_each_claim_with_their_own_outcome() {
        let (s, m) = (store_with(&[("a", 6)]), Metrics::default());
        let names = ids(&["a"]);
        let d = dispatcher(4, 2);
        let mut running = all(&d, &names, &s, &m).await;
        assert_eq!(running.len(), 2, "`a` at its limit");
        let (two, p2) = running.pop().unwrap();
        let (one, p1) = running.pop().unwrap();
        let (place1, place2) = (p1.release_to_holder(), p2.release_to_holder());
        let first = look_after(&d, &names, (&s, &m), &one, place1).await;
        let _third = first.event.unwrap().expect("a claim of its own");
        assert!(matches!(first.recorded, Some((_, Ok(true)))));
        assert!(d.lock().ready.is_empty(), "the second's place left to it");
        let second = look_after(&d, &names, (&s, &m), &two, place2).await;
        let _fourth = second.event.unwrap().expect("a claim of its own");
        assert!(
            matches!(second.recorded, Some((_, Ok(true)))),
            "its outcome written with that claim"
        );
        assert!(second.unwritten.is_none());
        for e in [&one, &two] {
            assert_eq!(s.event(e.id).unwrap().unwrap().state, EventState::Done);
        }
        assert_eq!(d.in_flight("a"), 2);
    }

    #[tokio::test]
    async fn claimed_events_not_started_are_handed_back_uncounted() {
        let (s, m) = (store_with(&[("a", 4)]), Metrics::default());
        let names = ids(&["a"]);
        let d = dispatcher(4, 4);
        let (started, permit) = next(&d, &names, &s, &m).await.unwrap();
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

    #[tokio::test]
    async fn a_panic_after_a_committed_claim_hands_its_events_back_and_reports_the_outcome() {
        let (s, m) = (store_with(&[("a", 4)]), Metrics::default());
        let names = ids(&["a"]);
        let configured = |id: &str| names.iter().any(|i| i == id);
        let d = dispatcher(2, 2);
        let (first, permit) = next(&d, &names, &s, &m).await.unwrap();
        let (second, _held) = next(&d, &names, &s, &m).await.unwrap();
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
        let panicked = d
            .next_caught(&configured, (&s, &m), (RUN, 60_000), Some(finished), None)
            .await;
        assert!(matches!(panicked.event, Err(StoreError::Panicked)));
        let (_, how) = panicked
            .recorded
            .expect("the outcome's recording is reported");
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
        let (again, _p) = next(&d, &names, &s, &m).await.expect("claimable again");
        assert!(queued.iter().any(|e| e.id == again.id));
        assert_ne!(again.id, second.id);
    }

    /// Serialized (PostgreSQL's dispatcher): a panic while the look-and-claim lock is held
    /// releases it; the next look gets through and claims the handed-back events.
    #[tokio::test]
    async fn serialized_a_panic_after_a_claim_leaves_the_next_look_free_to_go() {
        let (s, m) = (store_with(&[("a", 4)]), Metrics::default());
        let names = ids(&["a"]);
        let configured = |id: &str| names.iter().any(|i| i == id);
        let d = serialized(2, 2);
        let (first, permit) = next(&d, &names, &s, &m).await.unwrap();
        let (_second, _held) = next(&d, &names, &s, &m).await.unwrap();
        drop(permit);
        d.panic_after_claim
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let panicked = d
            .next_caught(&configured, (&s, &m), (RUN, 60_000), None, None)
            .await;
        assert!(matches!(panicked.event, Err(StoreError::Panicked)));
        assert_eq!(
            s.held_by(RUN).unwrap(),
            2,
            "`first` and `second`; the new claim handed back"
        );
        assert!(
            d.serial.as_ref().expect("serialized").try_lock().is_ok(),
            "the lock went with the panicked look"
        );
        let (again, _p) = next(&d, &names, &s, &m).await.expect("claimable again");
        assert_ne!(again.id, first.id);
        assert_eq!(s.held_by(RUN).unwrap(), 3);
    }

    #[tokio::test]
    async fn with_two_workers_a_hung_integration_leaves_one_for_its_neighbour() {
        let (s, m) = (store_with(&[("hung", 5)]), Metrics::default());
        let names = ids(&["hung", "ok"]);
        // The default integration_concurrency (8) is above the 2 workers.
        let w = WorkerConfig {
            concurrency: 2,
            ..WorkerConfig::default()
        };
        let d = Dispatcher::of_config(&w, false);
        // `hung`'s backlog came first; its events never finish (their permits are held).
        let held = all(&d, &names, &s, &m).await;
        assert_eq!(held.len(), 1, "`hung` holds one of the two workers");
        // The neighbour's event arrives afterwards and is taken by the other worker.
        s.enqueue("ok", "k", "ok-1", "{}").unwrap();
        let (e, _p) = next(&d, &names, &s, &m)
            .await
            .expect("a worker is left for `ok`");
        assert_eq!(e.integration, "ok");
    }
}
