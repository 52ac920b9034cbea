//! Workers: claim due events from the store, run them through [`flow`](super), and record
//! the outcome — done, skipped, retried later (exponential backoff with jitter) or dead-lettered
//! after `max_attempts`. A crash leaves claimed events with a lease that expires, after which any
//! worker picks them up again, so unfinished work resumes after a restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::flow::{self, Outcome};
use crate::store::{now_ms, Event, EventState};
use crate::timeline::TimelineEvent;

/// Longest idle sleep: the store is polled at least this often.
const IDLE: Duration = Duration::from_secs(1);
/// The longest `Retry-After` honoured, so a bogus answer cannot park an event for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Starts `worker.concurrency` workers.
pub fn spawn(app: Arc<App>, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..app.config.worker.concurrency.max(1))
        .map(|_| tokio::spawn(run(app.clone(), stop.clone())))
        .collect()
}

async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let lease_ms = app.config.worker.lease_secs as i64 * 1000;
    while !*stop.borrow() {
        match app.store.claim(lease_ms) {
            Ok(Some(event)) => handle(&app, event).await,
            Ok(None) => {
                let wait = match app.store.next_due_in() {
                    Ok(Some(ms)) => Duration::from_millis(ms as u64).min(IDLE),
                    _ => IDLE,
                };
                tokio::select! {
                    _ = app.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot claim events");
                tokio::time::sleep(IDLE).await;
            }
        }
    }
}

async fn handle(app: &Arc<App>, event: Event) {
    let result = flow::process(app, &event).await;
    let w = &app.config.worker;
    // Outbound webhooks get their own, longer, budget: the receiver may be down for a while.
    let max_attempts = if flow::role(app, &event) == Some(crate::ats::Role::Delivery) {
        w.delivery_max_attempts
    } else {
        w.max_attempts
    };
    let (state, error, version, retry_at, outcome) = match result {
        Ok(Outcome::Parked(why)) => return park(app, &event, &why),
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
    let metrics = app.registry.runtime().metrics();
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
    if let Err(e) = app.store.finish(
        event.id,
        state,
        error.as_deref(),
        version.as_deref(),
        retry_at,
    ) {
        // The lease will expire and the event be retried: nothing is lost.
        tracing::error!(event = event.id, error = %e, "cannot record the outcome of an event");
    }
}

/// Parks an event of a disconnected integration (see [`Outcome::Parked`]).
fn park(app: &App, event: &Event, why: &str) {
    tracing::warn!(event = event.id, integration = %event.integration, "parked: {why}");
    app.timeline.emit(TimelineEvent::EventFinished {
        integration: event.integration.clone(),
        event_id: event.id,
        outcome: format!("parked: {why}"),
    });
    if let Err(e) = app.store.park_event(event.id, why) {
        // The lease will expire and the event be claimed (and parked) again: nothing is lost.
        tracing::error!(event = event.id, error = %e, "cannot park an event");
    }
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
