//! What a served host did over one load run, per acknowledged webhook: its CPU by thread, the
//! store's group commits, writes and WAL frames, bytes written, and the events it retried (the
//! down integration's, behind which the backlog latency rows run). Figures that load on the
//! machine disturbs less than latency, so two runs can be compared on a busy machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use switchyard_tests::serve::{cpu_secs, written_bytes};

use super::threads::{self, Usage};

/// The counters of `/metrics` a snapshot reads.
const COUNTERS: [&str; 4] = [
    "switchyard_store_commits_total",
    "switchyard_store_batched_writes_total",
    "switchyard_store_wal_frames_total",
    "switchyard_event_retries_total",
];

/// A host's counters at one moment.
pub struct Snapshot {
    at: Instant,
    cpu: Option<f64>,
    written: Option<u64>,
    counters: [f64; COUNTERS.len()],
    threads: BTreeMap<String, Usage>,
}

impl Snapshot {
    /// The counters of the host `pid` serving at `addr`, now.
    pub async fn take(addr: SocketAddr, pid: u32) -> Snapshot {
        let text = metrics(addr).await;
        Snapshot {
            at: Instant::now(),
            cpu: cpu_secs(pid),
            written: written_bytes(pid),
            counters: COUNTERS.map(|name| counter(&text, name)),
            threads: threads::by_name(pid),
        }
    }

    /// What happened between `self` and `after`, per one of `acks`.
    pub fn per_ack(&self, after: &Snapshot, acks: f64) -> String {
        let acks = acks.max(1.0);
        let d = |i: usize| after.counters[i] - self.counters[i];
        let (commits, writes, frames, retries) = (d(0), d(1), d(2), d(3));
        let cpu_us = self
            .cpu
            .zip(after.cpu)
            .map_or(0.0, |(b, a)| (a - b) * 1e6 / acks);
        let kib = self
            .written
            .zip(after.written)
            .map_or(0.0, |(b, a)| a.saturating_sub(b) as f64 / 1024.0 / acks);
        let secs = after.at.duration_since(self.at).as_secs_f64().max(1e-9);
        format!(
            "host CPU {cpu_us:.0} µs per ack ({}); {:.2} store writes, {:.2} WAL frames, \
             {kib:.1} KiB written per ack; {:.2} acks and {:.1} WAL frames per group commit; \
             {:.0} events retried/s",
            threads::per_unit_us(&self.threads, &after.threads, acks),
            writes / acks,
            frames / acks,
            acks / commits.max(1.0),
            frames / commits.max(1.0),
            retries / secs,
        )
    }
}

/// The text of the host's `/metrics` (empty when unreadable).
async fn metrics(addr: SocketAddr) -> String {
    match reqwest::get(format!("http://{addr}/metrics")).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// A counter of the host's `/metrics` (0 when absent or unreadable).
pub async fn metric(addr: SocketAddr, name: &str) -> f64 {
    counter(&metrics(addr).await, name)
}

/// The value of counter `name` in a `/metrics` text (0 when absent).
fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
