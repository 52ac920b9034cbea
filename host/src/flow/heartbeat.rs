//! This process's run (see [`crate::store::runs`]): registered at start-up with a lock file,
//! kept alive by a heartbeat that renews the leases of the events it holds every third of a
//! lease (those this process knows it holds: a claim whose answer was lost is left to expire,
//! and [`reap`] takes it back like another run's), and watching the other runs: one that is dead (its lock file free, or no heartbeat for
//! a lease) loses its events to the queue at once, in their place ahead of the events received
//! after them — logged (`resuming event … after its holder died`) and counted
//! (`switchyard_events_resumed_total`). Each beat also queues the waiting events whose re-check
//! time has come ([`crate::store::waiting`]), and takes or renews the lead of housekeeping
//! ([`crate::store::leader`], for a lease: [`lead`]); the leader analyzes the tables that outgrew
//! their statistics ([`crate::store::statistics`]). Each beat also compares this host's clock with the
//! database's ([`super::skew`]). Every host reaps (taking back is one
//! transaction, and must not wait for a new leader when the dead host was the leader).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::store::leader::HOUSEKEEPING;
use crate::store::runs::{lock_abandoned, RunLock};
use crate::store::{now_ms, Resumed, Store};

/// This process's run: its id and the lock that proves it alive.
pub struct Run {
    pub id: String,
    lock: Option<RunLock>,
}

/// Where runs keep their lock files.
pub fn lock_dir(config: &crate::config::Config) -> PathBuf {
    crate::wasm::deploy::data_dir(config).join("runs")
}

fn node() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "local".into())
}

/// Registers a new run (lock first, so a registered run without a held lock is a dead one).
pub fn begin(store: &Store, dir: &Path) -> anyhow::Result<Run> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let lock = match RunLock::acquire(dir, &id) {
        Ok(lock) => Some(lock),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(),
                "cannot create this run's lock file; a restart will wait a lease to resume");
            None
        }
    };
    store.begin_run(&id, &node())?;
    Ok(Run { id, lock })
}

/// Takes or renews the lead of housekeeping for `run` until a lease from now, and records in
/// [`App::leader`] (and `switchyard_leader`) whether this host leads. A failed renewal stops the
/// lead at once: the row may be another host's before the next beat.
pub fn lead(app: &App, run: &str, lease_ms: i64) {
    let leads = match app.store.lead(HOUSEKEEPING, run, lease_ms) {
        Ok(leads) => leads,
        Err(e) => {
            tracing::warn!(error = %e, "cannot renew the lead of housekeeping: not leading");
            false
        }
    };
    let before = app.leader.swap(leads, std::sync::atomic::Ordering::SeqCst);
    if before != leads {
        tracing::info!(run = %run, leads, "housekeeping leadership changed");
    }
    app.metrics.leader(leads);
}

/// Ends the run cleanly: what it still holds goes back to the queue uncounted; its lead of
/// housekeeping, if it has it, goes to the next host at once.
pub fn end(app: &App, run: Run) {
    if let Err(e) = app.store.resign(HOUSEKEEPING, &run.id) {
        tracing::warn!(error = %e, "cannot resign the lead of housekeeping; it will expire");
    }
    match app.store.end_run(&run.id) {
        Ok(n) if n > 0 => {
            app.metrics.released(n as u64);
            tracing::warn!(
                run = %run.id,
                events = n,
                "handed back events still running at shutdown"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot end this run; its leases will expire"),
    }
    if let Some(lock) = run.lock {
        lock.release();
    }
}

/// Takes back the events of dead runs and of expired leases. Returns how many.
pub fn reap(app: &App, me: &str, lease_ms: i64, dir: &Path) -> usize {
    let mut resumed: Vec<(Resumed, &'static str)> = Vec::new();
    let now = now_ms();
    match app.store.live_runs() {
        Ok(runs) => {
            for r in runs.into_iter().filter(|r| r.id != me) {
                let why = if lock_abandoned(dir, &r.id) {
                    Some(format!("process {} on {} is gone", r.pid, r.node))
                } else if r.heartbeat_at_ms < now - lease_ms {
                    Some(format!(
                        "no heartbeat for {} ms (process {} on {})",
                        now - r.heartbeat_at_ms,
                        r.pid,
                        r.node
                    ))
                } else {
                    None
                };
                let Some(why) = why else { continue };
                tracing::warn!(run = %r.id, "run declared dead: {why}");
                match app.store.declare_dead(&r.id, &why) {
                    Ok(back) => resumed.extend(back.into_iter().map(|b| (b, "holder_died"))),
                    Err(e) => {
                        tracing::error!(run = %r.id, error = %e, "cannot take back a dead run's events")
                    }
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the runs table"),
    }
    match app.store.take_back_expired(me) {
        Ok(back) => resumed.extend(back.into_iter().map(|b| (b, "lease_expired"))),
        Err(e) => tracing::error!(error = %e, "cannot take back expired leases"),
    }
    let metrics = &app.metrics;
    for (r, why) in &resumed {
        metrics.resumed(why);
        tracing::warn!(event = r.event_id, integration = %r.integration, holder = %r.holder,
            "resuming event after its holder died: {}", r.why);
    }
    if !resumed.is_empty() {
        app.wake.notify_waiters();
    }
    resumed.len()
}

/// PostgreSQL: statistics for the tables that outgrew theirs, so the plans cached on them
/// are made again ([`crate::store::statistics`]). Done by the host that leads housekeeping.
fn analyze_grown_tables(app: &App) {
    match app.store.analyze_grown_tables() {
        Ok(tables) if tables.is_empty() => {}
        Ok(tables) => tracing::info!(?tables, "analyzed tables that outgrew their statistics"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot analyze the tables that outgrew their statistics")
        }
    }
}

/// The heartbeat task: renews this run's leases, reaps dead runs and renews the lead of
/// housekeeping every third of a lease.
pub fn spawn(
    app: Arc<App>,
    run: String,
    dir: PathBuf,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let lease_ms = app.config.worker.lease_secs.max(1) as i64 * 1000;
    let every = Duration::from_millis((lease_ms / 3).max(100) as u64);
    tokio::spawn(async move {
        while !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => break,
            }
            match app.store.heartbeat(&run, lease_ms) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(run = %run,
                        "this run was declared dead by another host: its events moved on, \
                         and the outcomes of its steps in flight will be discarded; reviving it");
                    if let Err(e) = app.store.revive(&run) {
                        tracing::error!(error = %e, "cannot revive this run");
                    }
                }
                Err(e) => tracing::error!(error = %e, "heartbeat failed; leases may expire"),
            }
            reap(&app, &run, lease_ms, &dir);
            lead(&app, &run, lease_ms);
            super::skew::observe(&app);
            match app.store.wake_rechecks() {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(events = n, "waiting events due for a re-check queued");
                    app.wake.notify_waiters();
                }
                Err(e) => tracing::error!(error = %e, "cannot queue waiting events for a re-check"),
            }
            // Last: the round's leases and wake-ups do not wait for it.
            if app.leader.load(std::sync::atomic::Ordering::SeqCst) {
                analyze_grown_tables(&app);
            }
        }
    })
}
