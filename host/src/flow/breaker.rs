//! A circuit breaker per integration. `closed`: events run; `worker.breaker_failures`
//! consecutive transient vendor failures (connector errors marked retryable, timeouts) → `open`:
//! the integration's events wait in the queue, unclaimed and uncounted, for
//! `worker.breaker_open_secs` → `half-open`: one event (the probe) is let through; its success
//! closes the breaker, a vendor failure opens it again. Other failures (the ATS, the store, an
//! order not known yet) neither trip nor heal it. Every transition is logged and counted
//! (`switchyard_breaker_transitions_total{integration,state}`, gauge `switchyard_breaker_open`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// How an attempt went, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// A retryable failure of the connector call (the vendor).
    VendorFailure,
    /// Anything else: says nothing about the vendor.
    Neutral,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half-open",
        }
    }
}

/// The breakers of every integration. Not thread-safe by itself: the dispatcher
/// ([`super::bulkhead`]) holds it under its lock, so deciding and claiming are one step.
pub struct Breakers {
    threshold: u32,
    open_for: Duration,
    states: HashMap<String, State>,
}

impl Breakers {
    pub fn new(threshold: u32, open_for: Duration) -> Breakers {
        Breakers {
            threshold: threshold.max(1),
            open_for,
            states: HashMap::new(),
        }
    }

    fn set(&mut self, integration: &str, to: State, metrics: &Metrics, why: &str) {
        let from = self
            .states
            .insert(integration.to_string(), to)
            .unwrap_or(State::Closed { failures: 0 });
        if from.name() != to.name() {
            metrics.breaker_transition(integration, to.name());
            match to {
                State::Open { .. } => tracing::warn!(
                    integration,
                    from = from.name(),
                    reopen_in_secs = self.open_for.as_secs(),
                    "circuit breaker open: {why}"
                ),
                _ => tracing::info!(
                    integration,
                    from = from.name(),
                    to = to.name(),
                    "circuit breaker {}: {why}",
                    to.name()
                ),
            }
        }
    }

    /// Whether `integration`'s events may be claimed now. An open breaker whose wait is over
    /// turns half-open here and admits one probe.
    pub fn admits(&mut self, integration: &str, metrics: &Metrics) -> bool {
        match self.states.get(integration).copied() {
            None | Some(State::Closed { .. }) => true,
            Some(State::HalfOpen { probing }) => !probing,
            Some(State::Open { until }) if Instant::now() >= until => {
                self.set(
                    integration,
                    State::HalfOpen { probing: false },
                    metrics,
                    "letting one probe event through",
                );
                true
            }
            Some(State::Open { .. }) => false,
        }
    }

    /// An event of `integration` was claimed (a half-open breaker's probe is now in flight).
    pub fn claimed(&mut self, integration: &str) {
        if let Some(State::HalfOpen { probing }) = self.states.get_mut(integration) {
            *probing = true;
        }
    }

    /// Records how an attempt of `integration` went.
    pub fn record(&mut self, integration: &str, verdict: Verdict, metrics: &Metrics) {
        let state = self
            .states
            .get(integration)
            .copied()
            .unwrap_or(State::Closed { failures: 0 });
        let open = State::Open {
            until: Instant::now() + self.open_for,
        };
        match (state, verdict) {
            (State::Closed { failures }, Verdict::VendorFailure) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    let why = format!("{failures} consecutive vendor failures");
                    self.set(integration, open, metrics, &why);
                } else {
                    self.states
                        .insert(integration.to_string(), State::Closed { failures });
                }
            }
            (State::Closed { .. }, Verdict::Success) => {
                self.states
                    .insert(integration.to_string(), State::Closed { failures: 0 });
            }
            (State::HalfOpen { .. }, Verdict::Success) => self.set(
                integration,
                State::Closed { failures: 0 },
                metrics,
                "the probe succeeded",
            ),
            (State::HalfOpen { .. }, Verdict::VendorFailure) => {
                self.set(integration, open, metrics, "the probe failed")
            }
            // A neutral outcome of the probe: let another one through.
            (State::HalfOpen { .. }, Verdict::Neutral) => {
                self.states
                    .insert(integration.to_string(), State::HalfOpen { probing: false });
            }
            // Late outcomes of events claimed before the breaker opened change nothing.
            (State::Open { .. }, _) | (State::Closed { .. }, Verdict::Neutral) => {}
        }
    }

    /// The integration's state name (`closed`, `open`, `half-open`).
    pub fn state(&self, integration: &str) -> &'static str {
        self.states.get(integration).map_or("closed", |s| s.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_vendor_failures_probes_once_then_closes() {
        let m = Metrics::default();
        let mut b = Breakers::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            b.record("a", Verdict::VendorFailure, &m);
        }
        b.record("a", Verdict::Neutral, &m);
        assert!(
            b.admits("a", &m),
            "two failures and a neutral outcome: still closed"
        );
        b.record("a", Verdict::VendorFailure, &m);
        assert_eq!(b.state("a"), "open");
        assert!(!b.admits("a", &m));
        assert!(b.admits("b", &m), "other integrations are unaffected");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admits("a", &m), "half-open admits a probe");
        b.claimed("a");
        assert!(!b.admits("a", &m), "only one probe at a time");
        b.record("a", Verdict::VendorFailure, &m);
        assert_eq!(b.state("a"), "open", "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admits("a", &m));
        b.claimed("a");
        b.record("a", Verdict::Success, &m);
        assert_eq!(b.state("a"), "closed");
        let text = m.render(None);
        assert!(
            text.contains(
                "switchyard_breaker_transitions_total{integration=\"a\",state=\"open\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("switchyard_breaker_open{integration=\"a\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let m = Metrics::default();
        let mut b = Breakers::new(2, Duration::from_secs(60));
        b.record("a", Verdict::VendorFailure, &m);
        b.record("a", Verdict::Success, &m);
        b.record("a", Verdict::VendorFailure, &m);
        assert_eq!(b.state("a"), "closed");
    }
}
