//! The replay runner: carries on the bulk replay jobs kept in the store
//! ([`crate::store::replay`]), a batch of events every tick, and wakes the workers for them.
//! Paced so that a replay of many events never pushes new webhooks far back: events it queued
//! are due now, like new ones, but only [`BATCH`] more join the queue per tick. With several
//! hosts on one database only the housekeeping leader steps jobs ([`App::leader`]), so two
//! hosts never queue one job's batch twice; a job started on any host is carried on by the
//! leader. Started by `crate::run` only.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;

/// Events queued again per tick.
pub const BATCH: u32 = 20;
/// How often the runner looks for work.
const TICK: Duration = Duration::from_millis(250);

/// Runs until `stop` turns true.
pub fn spawn(app: Arc<App>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => break,
            }
            if !app.leader.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            match app.store.replay_step(BATCH).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(events = n, "replay: events queued again");
                    app.wake.notify_waiters();
                }
                Err(e) => tracing::error!(error = %e, "replay step failed; the next tick retries"),
            }
        }
    })
}
