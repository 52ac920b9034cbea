//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Hand-written text exposition over a few counters behind one mutex: the host has a handful of
//! series, updated at most a few thousand times a second, so a metrics crate (and its proc-macro
//! dependencies) would buy nothing here.
//!
//! - `switchyard_webhooks_total{source,outcome}` — `accepted`, `duplicate`, or the rejection reason.
//! - `switchyard_invocations_total{connector,version,call,outcome}` — connector calls by outcome.
//! - `switchyard_invocation_seconds{connector,version}` — latency histogram of connector calls.
//! - `switchyard_event_retries_total`, `switchyard_dead_letters_total`.
//! - `switchyard_queue_depth` — events queued or running (read from the store when scraped).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Series {
    webhooks: BTreeMap<(String, String), u64>,
    invocations: BTreeMap<(String, String, String, String), u64>,
    latency: BTreeMap<(String, String), Histogram>,
    retries: u64,
    dead_letters: u64,
}

/// The host's metrics.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<Series>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Series) -> R) -> R {
        f(&mut self.series.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A webhook from `source` (`lever`, `vendor`) was accepted, or rejected for `outcome`.
    pub fn webhook(&self, source: &str, outcome: &str) {
        self.with(|s| {
            *s.webhooks
                .entry((source.into(), outcome.into()))
                .or_default() += 1
        });
    }

    /// One connector call finished.
    pub fn invocation(
        &self,
        connector: &str,
        version: &str,
        call: &str,
        outcome: &str,
        took: Duration,
    ) {
        self.with(|s| {
            let key = (
                connector.to_string(),
                version.to_string(),
                call.to_string(),
                outcome.to_string(),
            );
            *s.invocations.entry(key).or_default() += 1;
            let h = s
                .latency
                .entry((connector.into(), version.into()))
                .or_default();
            let secs = took.as_secs_f64();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        });
    }

    /// An event attempt failed and was scheduled again.
    pub fn retry(&self) {
        self.with(|s| s.retries += 1);
    }

    /// An event was dead-lettered.
    pub fn dead_letter(&self) {
        self.with(|s| s.dead_letters += 1);
    }

    /// The text exposition format; `queue_depth` is read by the caller.
    pub fn render(&self, queue_depth: Option<i64>) -> String {
        let mut out = String::new();
        self.with(|s| {
            out.push_str("# HELP switchyard_webhooks_total Inbound webhooks by source and outcome.\n");
            out.push_str("# TYPE switchyard_webhooks_total counter\n");
            for ((source, outcome), n) in &s.webhooks {
                let _ = writeln!(out, "switchyard_webhooks_total{{source=\"{}\",outcome=\"{}\"}} {n}", esc(source), esc(outcome));
            }
            out.push_str("# HELP switchyard_invocations_total Connector calls by connector, version, call and outcome.\n");
            out.push_str("# TYPE switchyard_invocations_total counter\n");
            for ((c, v, call, outcome), n) in &s.invocations {
                let _ = writeln!(
                    out,
                    "switchyard_invocations_total{{connector=\"{}\",version=\"{}\",call=\"{}\",outcome=\"{}\"}} {n}",
                    esc(c), esc(v), esc(call), esc(outcome)
                );
            }
            out.push_str("# HELP switchyard_invocation_seconds Connector call latency.\n");
            out.push_str("# TYPE switchyard_invocation_seconds histogram\n");
            for ((c, v), h) in &s.latency {
                let labels = format!("connector=\"{}\",version=\"{}\"", esc(c), esc(v));
                for (bound, n) in BUCKETS.iter().zip(h.counts.iter()) {
                    let _ = writeln!(out, "switchyard_invocation_seconds_bucket{{{labels},le=\"{bound}\"}} {n}");
                }
                let _ = writeln!(out, "switchyard_invocation_seconds_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "switchyard_invocation_seconds_sum{{{labels}}} {}", h.sum);
                let _ = writeln!(out, "switchyard_invocation_seconds_count{{{labels}}} {}", h.count);
            }
            out.push_str("# HELP switchyard_event_retries_total Event attempts scheduled again after a failure.\n");
            out.push_str("# TYPE switchyard_event_retries_total counter\n");
            let _ = writeln!(out, "switchyard_event_retries_total {}", s.retries);
            out.push_str("# HELP switchyard_dead_letters_total Events dead-lettered.\n");
            out.push_str("# TYPE switchyard_dead_letters_total counter\n");
            let _ = writeln!(out, "switchyard_dead_letters_total {}", s.dead_letters);
        });
        if let Some(depth) = queue_depth {
            out.push_str("# HELP switchyard_queue_depth Events queued or running.\n");
            out.push_str("# TYPE switchyard_queue_depth gauge\n");
            let _ = writeln!(out, "switchyard_queue_depth {depth}");
        }
        out
    }
}

/// Escapes a label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.webhook("lever", "accepted");
        m.webhook("lever", "bad_signature");
        m.invocation(
            "certn",
            "0.1.0#abc",
            "start-screening",
            "ok",
            Duration::from_millis(3),
        );
        m.retry();
        let text = m.render(Some(2));
        assert!(text
            .contains("switchyard_webhooks_total{source=\"lever\",outcome=\"bad_signature\"} 1"));
        assert!(text.contains("le=\"0.0025\"} 0"));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("switchyard_event_retries_total 1"));
        assert!(text.contains("switchyard_queue_depth 2"));
    }
}
