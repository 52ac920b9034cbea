//! Bulkheads: which event a free worker takes next. Integrations are served in turn (round
//! robin over the configured integrations, starting after the one served last), so no
//! integration's backlog starves another; an integration already running
//! `worker.integration_concurrency` events, or paused by its circuit breaker
//! ([`super::breaker`]), is skipped, so a slow or failing vendor or ATS holds at most its own
//! share of the workers. Events of integrations no longer configured are taken last (they end
//! dead with the reason).
//!
//! Deciding and claiming happen under one lock, so two workers never both take a half-open
//! breaker's probe or exceed a limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::app::App;
use crate::flow::breaker::{Breakers, Verdict};
use crate::store::{Claim, Event, Result};

struct State {
    in_flight: HashMap<String, usize>,
    cursor: usize,
    breakers: Breakers,
}

/// Shared by the workers of one host.
pub struct Dispatcher {
    limit: usize,
    state: Mutex<State>,
    /// Signalled when a permit is freed: a worker that found only blocked events waits on it
    /// (instead of polling a queue whose due events it may not take).
    pub freed: tokio::sync::Notify,
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
        let w = &app.config.worker;
        Arc::new(Dispatcher {
            limit: w.integration_concurrency.max(1),
            freed: tokio::sync::Notify::new(),
            state: Mutex::new(State {
                in_flight: HashMap::new(),
                cursor: 0,
                breakers: Breakers::new(
                    w.breaker_failures,
                    Duration::from_secs(w.breaker_open_secs),
                ),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims the next event for `run`, fairly across integrations, within the limits.
    pub fn next(
        self: &Arc<Self>,
        app: &App,
        run: &str,
        lease_ms: i64,
    ) -> Result<Option<(Event, Permit)>> {
        let metrics = app.registry.runtime().metrics();
        let ids: Vec<String> = app
            .integrations()
            .iter()
            .map(|i| i.config.id.clone())
            .collect();
        let mut state = self.lock();
        let n = ids.len();
        let start = if n == 0 { 0 } else { state.cursor % n };
        for k in 0..n {
            let id = &ids[(start + k) % n];
            if state.in_flight.get(id).copied().unwrap_or(0) >= self.limit
                || !state.breakers.admits(id, metrics)
            {
                continue;
            }
            let claim = Claim {
                run,
                lease_ms,
                integration: Some(id),
                exclude: &[],
            };
            if let Some(event) = app.store.claim(&claim)? {
                state.cursor = (start + k + 1) % n;
                state.breakers.claimed(id);
                return Ok(Some((event, self.permit(&mut state, id))));
            }
        }
        // Events of integrations that are no longer configured.
        let claim = Claim {
            run,
            lease_ms,
            integration: None,
            exclude: &ids,
        };
        Ok(app.store.claim(&claim)?.map(|event| {
            let permit = self.permit(&mut state, &event.integration.clone());
            (event, permit)
        }))
    }

    fn permit(self: &Arc<Self>, state: &mut State, integration: &str) -> Permit {
        *state.in_flight.entry(integration.to_string()).or_insert(0) += 1;
        Permit {
            dispatcher: self.clone(),
            integration: integration.to_string(),
        }
    }

    /// Feeds an attempt's outcome to the integration's breaker.
    pub fn record(&self, app: &App, integration: &str, verdict: Verdict) {
        let metrics = app.registry.runtime().metrics();
        self.lock().breakers.record(integration, verdict, metrics);
    }

    /// The breaker state of an integration (`closed`, `open`, `half-open`).
    pub fn breaker_state(&self, integration: &str) -> &'static str {
        self.lock().breakers.state(integration)
    }

    /// Events of `integration` running now.
    pub fn in_flight(&self, integration: &str) -> usize {
        self.lock().in_flight.get(integration).copied().unwrap_or(0)
    }
}
