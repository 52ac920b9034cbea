//! A circuit breaker per integration. `closed`: events run; `worker.breaker_failures`
//! consecutive transient vendor failures (connector errors marked retryable, timeouts) → `open`:
//! the integration's events wait in the queue, unclaimed and uncounted, for the open period →
//! `half-open`: one event (the probe) is let through; its success closes the breaker, a vendor
//! failure opens it again for twice the period. The first period is
//! `worker.breaker_first_open_secs`, doubled on each failed probe up to
//! `worker.breaker_open_secs`, back to the first after a success: a short outage is probed
//! within seconds, a long one costs one probe per `breaker_open_secs`. Other failures (the ATS,
//! the store, an order not known yet) neither trip nor heal it. Every transition is logged and
//! counted (`switchyard_breaker_transitions_total{integration,state}`, gauge
//! `switchyard_breaker_open`).
//!
//! Time is handed in (`*_at`), so the tests drive it without sleeping.

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
    Closed {
        failures: u32,
    },
    /// Paused until `until`; `period` is how long this opening lasts.
    Open {
        until: Instant,
        period: Duration,
    },
    /// `period`: the opening it came from (a failed probe doubles it).
    HalfOpen {
        probing: bool,
        period: Duration,
    },
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
    first_open: Duration,
    max_open: Duration,
    states: HashMap<String, State>,
}

impl Breakers {
    /// Breakers that open after `threshold` consecutive vendor failures, for `first_open` at
    /// first, doubling per failed probe up to `max_open` (`first_open` is capped to it).
    pub fn new(threshold: u32, first_open: Duration, max_open: Duration) -> Breakers {
        Breakers {
            threshold: threshold.max(1),
            first_open: first_open.min(max_open),
            max_open,
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
                State::Open { period, .. } => tracing::warn!(
                    integration,
                    from = from.name(),
                    probe_in_ms = period.as_millis() as u64,
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
        self.admits_at(integration, Instant::now(), metrics)
    }

    /// [`Breakers::admits`] at `now`.
    fn admits_at(&mut self, integration: &str, now: Instant, metrics: &Metrics) -> bool {
        match self.states.get(integration).copied() {
            None | Some(State::Closed { .. }) => true,
            Some(State::HalfOpen { probing, .. }) => !probing,
            Some(State::Open { until, period }) if now >= until => {
                self.set(
                    integration,
                    State::HalfOpen {
                        probing: false,
                        period,
                    },
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
        if let Some(State::HalfOpen { probing, .. }) = self.states.get_mut(integration) {
            *probing = true;
        }
    }

    /// A probe taken for `integration` found no event (or its claim failed): the next claim may
    /// probe.
    pub fn unclaimed(&mut self, integration: &str) {
        if let Some(State::HalfOpen { probing, .. }) = self.states.get_mut(integration) {
            *probing = false;
        }
    }

    /// Records how an attempt of `integration` went.
    pub fn record(&mut self, integration: &str, verdict: Verdict, metrics: &Metrics) {
        self.record_at(integration, verdict, Instant::now(), metrics)
    }

    /// [`Breakers::record`] at `now`.
    fn record_at(&mut self, integration: &str, verdict: Verdict, now: Instant, metrics: &Metrics) {
        let state = self
            .states
            .get(integration)
            .copied()
            .unwrap_or(State::Closed { failures: 0 });
        let open_for = |period: Duration| State::Open {
            until: now + period,
            period,
        };
        match (state, verdict) {
            (State::Closed { failures }, Verdict::VendorFailure) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    let why = format!("{failures} consecutive vendor failures");
                    self.set(integration, open_for(self.first_open), metrics, &why);
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
            // The outage outlasted the period: wait twice as long before the next probe.
            (State::HalfOpen { period, .. }, Verdict::VendorFailure) => {
                let next = period
                    .saturating_mul(2)
                    .clamp(self.first_open, self.max_open);
                self.set(integration, open_for(next), metrics, "the probe failed")
            }
            // A neutral outcome of the probe: let another one through.
            (State::HalfOpen { period, .. }, Verdict::Neutral) => {
                self.states.insert(
                    integration.to_string(),
                    State::HalfOpen {
                        probing: false,
                        period,
                    },
                );
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
        let mut b = Breakers::new(3, Duration::from_millis(30), Duration::from_millis(30));
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
        let mut b = Breakers::new(2, Duration::from_secs(60), Duration::from_secs(60));
        b.record("a", Verdict::VendorFailure, &m);
        b.record("a", Verdict::Success, &m);
        b.record("a", Verdict::VendorFailure, &m);
        assert_eq!(b.state("a"), "closed");
    }

    const SEC: Duration = Duration::from_secs(1);

    /// Fails `a`'s probes until the breaker is open again; returns how long each opening lasted,
    /// as seen by polling `admits` once a second of injected time from `t`.
    fn failed_probes(b: &mut Breakers, m: &Metrics, t: &mut Instant, n: usize) -> Vec<u64> {
        let mut waits = Vec::new();
        for _ in 0..n {
            let opened = *t;
            while !b.admits_at("a", *t, m) {
                *t += SEC;
            }
            waits.push((*t - opened).as_secs());
            b.claimed("a");
            b.record_at("a", Verdict::VendorFailure, *t, m);
            assert_eq!(b.state("a"), "open");
        }
        waits
    }

    #[test]
    fn the_first_probe_comes_after_the_short_period_then_the_wait_doubles_up_to_the_cap() {
        let m = Metrics::default();
        let mut b = Breakers::new(2, 2 * SEC, 30 * SEC);
        let mut t = Instant::now();
        b.record_at("a", Verdict::VendorFailure, t, &m);
        b.record_at("a", Verdict::VendorFailure, t, &m);
        assert_eq!(b.state("a"), "open");
        assert!(!b.admits_at("a", t + SEC, &m), "still open after 1 s");
        // Each failed probe doubles the wait: 2, 4, 8, 16 s, then capped at 30 s.
        let waits = failed_probes(&mut b, &m, &mut t, 7);
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_successful_probe_closes_it_and_the_next_opening_is_short_again() {
        let m = Metrics::default();
        let mut b = Breakers::new(1, 2 * SEC, 30 * SEC);
        let mut t = Instant::now();
        b.record_at("a", Verdict::VendorFailure, t, &m);
        assert_eq!(failed_probes(&mut b, &m, &mut t, 3), [2, 4, 8]);
        // The outage ends: the next probe (after 16 s) succeeds.
        t += 16 * SEC;
        assert!(b.admits_at("a", t, &m));
        b.claimed("a");
        b.record_at("a", Verdict::Success, t, &m);
        assert_eq!(b.state("a"), "closed");
        // A new outage starts from the short period, not from where the last one ended.
        b.record_at("a", Verdict::VendorFailure, t, &m);
        assert_eq!(failed_probes(&mut b, &m, &mut t, 2), [2, 4]);
    }

    #[test]
    fn a_neutral_probe_outcome_keeps_the_period_and_a_first_period_above_the_cap_is_capped() {
        let m = Metrics::default();
        let mut b = Breakers::new(1, 2 * SEC, 30 * SEC);
        let mut t = Instant::now();
        b.record_at("a", Verdict::VendorFailure, t, &m);
        assert_eq!(failed_probes(&mut b, &m, &mut t, 2), [2, 4]);
        t += 8 * SEC;
        assert!(b.admits_at("a", t, &m));
        b.claimed("a");
        // The probe ended for a reason that says nothing about the vendor: another probe.
        b.record_at("a", Verdict::Neutral, t, &m);
        assert!(b.admits_at("a", t, &m));
        b.claimed("a");
        b.record_at("a", Verdict::VendorFailure, t, &m);
        assert!(!b.admits_at("a", t + 15 * SEC, &m), "8 s doubled: 16 s");
        assert!(b.admits_at("a", t + 16 * SEC, &m));

        let mut capped = Breakers::new(1, 60 * SEC, 5 * SEC);
        let t = Instant::now();
        capped.record_at("a", Verdict::VendorFailure, t, &m);
        assert!(capped.admits_at("a", t + 5 * SEC, &m));
    }
}
