//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format (which Prometheus
//! scrapes natively), through the `prometheus-client` crate.
//!
//! - `switchyard_webhooks_total{source,outcome}` — `accepted`, `duplicate`, or the rejection reason.
//! - `switchyard_invocations_total{connector,version,call,outcome}` — connector calls by outcome.
//! - `switchyard_invocation_seconds{connector,version}` — latency histogram of connector calls.
//! - `switchyard_event_retries_total`, `switchyard_dead_letters_total`.
//! - `switchyard_queue_depth` — events queued or running (read from the store when scraped).
//! - `switchyard_sandbox_limits_total{connector,limit}` — times a sandbox limit bit a connector
//!   (`limit` is the `runtime.limits` setting's name, e.g. `outbound_response_bytes`,
//!   `log_lines_per_call` counts every dropped line).
//! - `switchyard_events_resumed_total{why}` — events taken back from a run that could not finish
//!   them (`holder_died`, `lease_expired`); `switchyard_events_released_total` — handed back
//!   uncounted by a host stopping; `switchyard_event_writes_retried_total` — an event's outcome
//!   or wait the store refused, retried with backoff (the event stays running meanwhile);
//!   `switchyard_outcomes_recorded_total{with}` — how a worker's finished attempts were written:
//!   `claim` (in the write of the worker's next claim), or alone: `ready` (beside an event
//!   already claimed for the worker), `no_room`, `nothing` (no event to claim), `error` (the
//!   look failed), `stopping`.
//! - `switchyard_dispatcher_looks_total{by,found}` — the dispatcher's looks for integrations
//!   with queued events (`flow::bulkhead`): `by` the `store` (asked) or the `claim` before it
//!   (read in its round trip on PostgreSQL, no round trip of its own); `found` `some` or `none`.
//! - `switchyard_breaker_transitions_total{integration,state}`, `switchyard_breaker_open{integration}`
//!   — circuit breaker per integration (see `flow::breaker`).
//! - `switchyard_lever_oauth_total{outcome}` — Lever OAuth steps: `code_exchanged`, `refreshed`,
//!   `refresh_failed`, `unauthorized` (a 401 that triggered a refresh), `revoked` (Lever no
//!   longer honours the grant: the integration is disconnected), `disconnected` (by an operator).
//! - `switchyard_store_commits_total`, `switchyard_store_batched_writes_total`,
//!   `switchyard_store_failed_batches_total` — the store's group commit (`store::writer`):
//!   writes / commits is the mean batch size (read from the store when scraped);
//!   `switchyard_store_round_trips_total` — round trips to PostgreSQL (statements sent together
//!   count once; 0 on SQLite); `switchyard_store_wal_frames_total` — pages the group commit's
//!   commits appended to SQLite's WAL (each a page of the database; 0 on PostgreSQL).
//! - `switchyard_retention_pruned_rows_total{table}` — rows removed by retention passes;
//!   `switchyard_database_bytes` — the database file and its WAL on disk (read when scraped).
//! - `switchyard_connector_state_bytes{integration,connector}`,
//!   `switchyard_connector_state_quota_bytes{integration,connector}` — what a connector keeps in
//!   `state` for an integration and its quota (read from the store when scraped);
//!   `switchyard_state_quota_reached_total{integration,connector}` — `state.set` calls refused
//!   because the quota was full (the call's event then waits: see `store::waiting`).
//! - `switchyard_events_waiting{integration,waiting_for}` — events held waiting (`connect`,
//!   `permission`, `quota`), read from the store when scraped.
//! - `switchyard_leader` — 1 while this host leads housekeeping (`store::leader`; always 1 on
//!   SQLite).
//! - `switchyard_clock_skew_ms` — the database's clock minus this host's, measured each
//!   heartbeat round (`flow::skew`; PostgreSQL only).

use std::borrow::Cow;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    // Borrowed where static (every outcome but a vendor's reply status): counting a webhook
    // allocates nothing.
    source: Cow<'static, str>,
    outcome: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    connector: String,
    version: String,
    call: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    connector: String,
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    connector: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhyLabels {
    why: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    integration: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationLabels {
    integration: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    integration: String,
    connector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitingLabels {
    integration: String,
    waiting_for: String,
}

/// How full a connector's state is for an integration, as last seen by a `state.set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QuotaLevel {
    Ok,
    /// At or above 80 % of the quota.
    Warning,
    /// A `state.set` was refused: the quota is full.
    Full,
}

impl QuotaLevel {
    /// The level of `bytes` held against `quota` (a refusal is [`QuotaLevel::Full`] apart).
    pub fn of(bytes: u64, quota: u64) -> QuotaLevel {
        if bytes.saturating_mul(5) >= quota.saturating_mul(4) {
            QuotaLevel::Warning
        } else {
            QuotaLevel::Ok
        }
    }
}

type LatencyFamily = Family<VersionLabels, Histogram, fn() -> Histogram>;

/// The host's metrics.
pub struct Metrics {
    registry: Registry,
    webhooks: Family<WebhookLabels, Counter>,
    invocations: Family<InvocationLabels, Counter>,
    latency: LatencyFamily,
    retries: Counter,
    dead_letters: Counter,
    queue_depth: Gauge,
    limits: Family<LimitLabels, Counter>,
    resumed: Family<WhyLabels, Counter>,
    released: Counter,
    writes_retried: Counter,
    outcomes: Family<WithLabels, Counter>,
    looks: Family<LookLabels, Counter>,
    breaker_transitions: Family<BreakerLabels, Counter>,
    breaker_open: Family<IntegrationLabels, Gauge>,
    lever_oauth: Family<OutcomeLabels, Counter>,
    store_commits: Counter,
    store_writes: Counter,
    store_failed_batches: Counter,
    store_round_trips: Counter,
    store_wal_frames: Counter,
    pruned: Family<TableLabels, Counter>,
    database_bytes: Gauge,
    /// Serializes [`Metrics::store_writer`]: two scrapes at once must not both add the difference.
    store_sync: std::sync::Mutex<()>,
    state_bytes: Family<StateLabels, Gauge>,
    state_quota: Family<StateLabels, Gauge>,
    state_quota_reached: Family<StateLabels, Counter>,
    waiting: Family<WaitingLabels, Gauge>,
    leader: Gauge,
    clock_skew: Gauge,
    /// Whether the clock skew was past its warning level at the last measure.
    clock_far: std::sync::atomic::AtomicBool,
    /// The last [`QuotaLevel`] seen per (integration, connector): a change is logged once.
    quota_levels: std::sync::Mutex<std::collections::HashMap<(String, String), QuotaLevel>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WithLabels {
    with: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookLabels {
    by: &'static str,
    found: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let webhooks = Family::<WebhookLabels, Counter>::default();
        let invocations = Family::<InvocationLabels, Counter>::default();
        let latency = LatencyFamily::new_with_constructor(|| Histogram::new(BUCKETS));
        let (retries, dead_letters, queue_depth) =
            (Counter::default(), Counter::default(), Gauge::default());
        registry.register(
            "webhooks",
            "Inbound webhooks by source and outcome",
            webhooks.clone(),
        );
        registry.register(
            "invocations",
            "Connector calls by connector, version, call and outcome",
            invocations.clone(),
        );
        registry.register(
            "invocation_seconds",
            "Connector call latency",
            latency.clone(),
        );
        registry.register(
            "event_retries",
            "Event attempts scheduled again after a failure",
            retries.clone(),
        );
        registry.register("dead_letters", "Events dead-lettered", dead_letters.clone());
        registry.register(
            "queue_depth",
            "Events queued or running",
            queue_depth.clone(),
        );
        let limits = Family::<LimitLabels, Counter>::default();
        registry.register(
            "sandbox_limits",
            "Times a sandbox limit bit a connector, by connector and limit",
            limits.clone(),
        );
        let resumed = Family::<WhyLabels, Counter>::default();
        let released = Counter::default();
        let writes_retried = Counter::default();
        let outcomes = Family::<WithLabels, Counter>::default();
        let looks = Family::<LookLabels, Counter>::default();
        let breaker_transitions = Family::<BreakerLabels, Counter>::default();
        let breaker_open = Family::<IntegrationLabels, Gauge>::default();
        registry.register(
            "events_resumed",
            "Events taken back from a run that could not finish them",
            resumed.clone(),
        );
        registry.register(
            "events_released",
            "Events handed back uncounted by a stopping host",
            released.clone(),
        );
        registry.register(
            "event_writes_retried",
            "Event outcomes and waits the store refused, retried",
            writes_retried.clone(),
        );
        registry.register(
            "outcomes_recorded",
            "Finished attempts written, with the worker's next claim or alone (and why)",
            outcomes.clone(),
        );
        registry.register(
            "dispatcher_looks",
            "The dispatcher's looks for integrations with queued events, by who answered and what",
            looks.clone(),
        );
        registry.register(
            "breaker_transitions",
            "Circuit breaker transitions by integration and new state",
            breaker_transitions.clone(),
        );
        registry.register(
            "breaker_open",
            "1 while an integration's circuit breaker is open or half-open",
            breaker_open.clone(),
        );
        let lever_oauth = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "lever_oauth",
            "Lever OAuth steps by outcome",
            lever_oauth.clone(),
        );
        let (store_commits, store_writes, store_failed_batches) =
            (Counter::default(), Counter::default(), Counter::default());
        registry.register(
            "store_commits",
            "Batches committed by the store's group commit",
            store_commits.clone(),
        );
        registry.register(
            "store_batched_writes",
            "Writes committed by the store's group commit",
            store_writes.clone(),
        );
        registry.register(
            "store_failed_batches",
            "Group-commit batches rolled back (each of their writes answered with an error)",
            store_failed_batches.clone(),
        );
        let store_round_trips = Counter::default();
        registry.register(
            "store_round_trips",
            "Round trips to PostgreSQL on the store's connections (statements sent together count once)",
            store_round_trips.clone(),
        );
        let store_wal_frames = Counter::default();
        registry.register(
            "store_wal_frames",
            "Pages the group commit's commits appended to SQLite's WAL (0 on PostgreSQL)",
            store_wal_frames.clone(),
        );
        let (pruned, database_bytes) =
            (Family::<TableLabels, Counter>::default(), Gauge::default());
        registry.register(
            "retention_pruned_rows",
            "Rows removed by retention passes, by table",
            pruned.clone(),
        );
        registry.register(
            "database_bytes",
            "Bytes on disk of the database file and its write-ahead log",
            database_bytes.clone(),
        );
        let (state_bytes, state_quota) = (
            Family::<StateLabels, Gauge>::default(),
            Family::<StateLabels, Gauge>::default(),
        );
        registry.register(
            "connector_state_bytes",
            "Bytes a connector keeps in state for an integration",
            state_bytes.clone(),
        );
        registry.register(
            "connector_state_quota_bytes",
            "The state quota of a connector for an integration",
            state_quota.clone(),
        );
        let state_quota_reached = Family::<StateLabels, Counter>::default();
        registry.register(
            "state_quota_reached",
            "state.set calls refused because the integration's state quota was full",
            state_quota_reached.clone(),
        );
        let waiting = Family::<WaitingLabels, Gauge>::default();
        registry.register(
            "events_waiting",
            "Events held waiting, by integration and what they wait for",
            waiting.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this host leads housekeeping (retention, pruning, replay jobs)",
            leader.clone(),
        );
        let clock_skew = Gauge::default();
        registry.register(
            "clock_skew_ms",
            "The database's clock minus this host's, in milliseconds (PostgreSQL only)",
            clock_skew.clone(),
        );
        Metrics {
            leader,
            clock_skew,
            clock_far: Default::default(),
            pruned,
            database_bytes,
            state_bytes,
            state_quota,
            state_quota_reached,
            waiting,
            quota_levels: Default::default(),
            store_commits,
            store_writes,
            store_failed_batches,
            store_round_trips,
            store_wal_frames,
            store_sync: std::sync::Mutex::new(()),
            limits,
            resumed,
            released,
            writes_retried,
            outcomes,
            looks,
            breaker_transitions,
            breaker_open,
            lever_oauth,
            registry,
            webhooks,
            invocations,
            latency,
            retries,
            dead_letters,
            queue_depth,
        }
    }
}

impl Metrics {
    /// A webhook from `source` (`lever`, `vendor`) was accepted, or rejected for `outcome`.
    pub fn webhook(&self, source: &'static str, outcome: impl Into<Cow<'static, str>>) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                source: Cow::Borrowed(source),
                outcome: outcome.into(),
            })
            .inc();
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
        self.invocations
            .get_or_create(&InvocationLabels {
                connector: connector.into(),
                version: version.into(),
                call: call.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.latency
            .get_or_create(&VersionLabels {
                connector: connector.into(),
                version: version.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// A sandbox limit (a `runtime.limits` setting's name) bit connector `connector`.
    pub fn sandbox_limit(&self, connector: &str, limit: &str) {
        self.limits
            .get_or_create(&LimitLabels {
                connector: connector.into(),
                limit: limit.into(),
            })
            .inc();
    }

    /// An event attempt failed and was scheduled again.
    pub fn retry(&self) {
        self.retries.inc();
    }

    /// A Lever OAuth step happened (see the module doc for the outcomes).
    pub fn lever_oauth(&self, outcome: &str) {
        self.lever_oauth
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// An event was dead-lettered.
    pub fn dead_letter(&self) {
        self.dead_letters.inc();
    }

    /// An event was taken back from a run that could not finish it (`holder_died`, `lease_expired`).
    pub fn resumed(&self, why: &str) {
        self.resumed
            .get_or_create(&WhyLabels { why: why.into() })
            .inc();
    }

    /// Events were handed back uncounted by a stopping host.
    pub fn released(&self, n: u64) {
        self.released.inc_by(n);
    }

    /// The store refused an event's outcome or wait; it is tried again.
    pub fn write_retried(&self) {
        self.writes_retried.inc();
    }

    /// A worker's finished attempt was written: `with` its next `claim`, or alone and why
    /// (`ready`, `no_room`, `nothing`, `error`, `stopping`).
    pub fn outcome_recorded(&self, with: &'static str) {
        self.outcomes
            .get_or_create(&WithLabels {
                with: Cow::Borrowed(with),
            })
            .inc();
    }

    /// The dispatcher looked for integrations with queued events: answered by the last `claim`
    /// or by the `store`; whether it `found` any.
    pub fn look(&self, by: &'static str, found: bool) {
        let found = if found { "some" } else { "none" };
        self.looks.get_or_create(&LookLabels { by, found }).inc();
    }

    /// An integration's circuit breaker moved to `state` (`closed`, `open`, `half-open`).
    pub fn breaker_transition(&self, integration: &str, state: &str) {
        self.breaker_transitions
            .get_or_create(&BreakerLabels {
                integration: integration.into(),
                state: state.into(),
            })
            .inc();
        self.breaker_open
            .get_or_create(&IntegrationLabels {
                integration: integration.into(),
            })
            .set(i64::from(state != "closed"));
    }

    /// Brings the group-commit counters up to `stats` (the store's own counts, read at scrape).
    pub fn store_writer(&self, stats: &WriterStats) {
        let _one_at_a_time = self.store_sync.lock().unwrap_or_else(|e| e.into_inner());
        for (counter, total) in [
            (&self.store_commits, stats.commits),
            (&self.store_writes, stats.writes),
            (&self.store_failed_batches, stats.failed_batches),
            (&self.store_round_trips, stats.round_trips),
            (&self.store_wal_frames, stats.wal_frames),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// A retention pass removed `rows` rows of `table`.
    pub fn pruned(&self, table: &str, rows: u64) {
        self.pruned
            .get_or_create(&TableLabels {
                table: table.into(),
            })
            .inc_by(rows);
    }

    /// The database's size on disk, read at scrape.
    pub fn database_bytes(&self, bytes: u64) {
        self.database_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Records `level` for a connector's state of an integration; returns the previous level
    /// when it changed (the caller logs each change once), `None` otherwise.
    pub fn quota_level(
        &self,
        integration: &str,
        connector: &str,
        level: QuotaLevel,
    ) -> Option<QuotaLevel> {
        if level == QuotaLevel::Full {
            self.state_quota_reached
                .get_or_create(&StateLabels {
                    integration: integration.into(),
                    connector: connector.into(),
                })
                .inc();
        }
        let mut levels = self.quota_levels.lock().unwrap_or_else(|e| e.into_inner());
        let key = (integration.to_string(), connector.to_string());
        let before = levels.insert(key, level).unwrap_or(QuotaLevel::Ok);
        (before != level).then_some(before)
    }

    /// Sets the state gauges from the store: `(integration, connector, bytes, quota)`.
    pub fn state_usage(&self, rows: &[(String, String, u64, u64)]) {
        self.state_bytes.clear();
        self.state_quota.clear();
        for (integration, connector, bytes, quota) in rows {
            let labels = StateLabels {
                integration: integration.clone(),
                connector: connector.clone(),
            };
            self.state_bytes.get_or_create(&labels).set(*bytes as i64);
            self.state_quota.get_or_create(&labels).set(*quota as i64);
        }
    }

    /// Sets the waiting gauges from the store: `(integration, waiting_for, events)`.
    pub fn waiting(&self, rows: &[(String, &str, i64)]) {
        self.waiting.clear();
        for (integration, what, n) in rows {
            self.waiting
                .get_or_create(&WaitingLabels {
                    integration: integration.clone(),
                    waiting_for: what.to_string(),
                })
                .set(*n);
        }
    }

    /// The clock skew just measured, and whether it is past its warning level: true when it
    /// just went past it (to be logged once).
    pub fn clock_skew(&self, skew_ms: i64, far: bool) -> bool {
        self.clock_skew.set(skew_ms);
        let was = self
            .clock_far
            .swap(far, std::sync::atomic::Ordering::SeqCst);
        far && !was
    }

    /// The clock skew last measured (0 before any, and on SQLite).
    pub fn clock_skew_ms(&self) -> i64 {
        self.clock_skew.get()
    }

    /// Whether this host leads housekeeping now.
    pub fn leader(&self, leads: bool) {
        self.leader.set(leads.into());
    }

    /// The exposition ([`CONTENT_TYPE`]); `queue_depth` is read by the caller (`None`: the store
    /// could not be read, the last value stands).
    pub fn render(&self, queue_depth: Option<i64>) -> String {
        if let Some(depth) = queue_depth {
            self.queue_depth.set(depth);
        }
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// Counters of the store's writer since the store was opened (for metrics and tests). Defined
/// here, not in `store`, so metrics do not depend on the store.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Batches committed.
    pub commits: u64,
    /// Jobs committed (`writes / commits` is the mean batch size).
    pub writes: u64,
    /// Batches rolled back because `BEGIN`, a savepoint or `COMMIT` failed.
    pub failed_batches: u64,
    /// Round trips to PostgreSQL, on every connection of the store (0 on SQLite).
    pub round_trips: u64,
    /// Pages the commits appended to SQLite's WAL (0 on PostgreSQL).
    pub wal_frames: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_level_change_is_reported_once() {
        let m = Metrics::default();
        assert_eq!(QuotaLevel::of(79, 100), QuotaLevel::Ok);
        assert_eq!(QuotaLevel::of(80, 100), QuotaLevel::Warning);
        assert_eq!(m.quota_level("a", "c", QuotaLevel::Ok), None);
        assert_eq!(
            m.quota_level("a", "c", QuotaLevel::Warning),
            Some(QuotaLevel::Ok)
        );
        assert_eq!(m.quota_level("a", "c", QuotaLevel::Warning), None);
        assert_eq!(
            m.quota_level("a", "c", QuotaLevel::Full),
            Some(QuotaLevel::Warning)
        );
        assert_eq!(m.quota_level("a", "c", QuotaLevel::Full), None, "once");
        assert_eq!(
            m.quota_level("b", "c", QuotaLevel::Ok),
            None,
            "per integration"
        );
        let text = m.render(None);
        assert!(
            text.contains(
                "switchyard_state_quota_reached_total{integration=\"a\",connector=\"c\"} 2"
            ),
            "{text}"
        );
    }

    #[test]
    fn group_commit_counters_follow_the_stores_totals() {
        let m = Metrics::default();
        let stats = |commits, writes| WriterStats {
            commits,
            writes,
            failed_batches: 0,
            round_trips: 0,
            wal_frames: 0,
        };
        m.store_writer(&stats(2, 10));
        m.store_writer(&stats(3, 40));
        let text = m.render(None);
        assert!(text.contains("switchyard_store_commits_total 3"), "{text}");
        assert!(
            text.contains("switchyard_store_batched_writes_total 40"),
            "{text}"
        );
    }

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
        assert!(
            text.contains(
                "switchyard_webhooks_total{source=\"lever\",outcome=\"bad_signature\"} 1"
            ),
            "{text}"
        );
        // Cumulative: 3 ms is above the 2.5 ms bucket and within the 5 ms one.
        let bucket = |le: &str| {
            format!("switchyard_invocation_seconds_bucket{{le=\"{le}\",connector=\"certn\",version=\"0.1.0#abc\"}}")
        };
        assert!(text.contains(&format!("{} 0", bucket("0.0025"))), "{text}");
        assert!(text.contains(&format!("{} 1", bucket("0.005"))), "{text}");
        assert!(text.contains(&format!("{} 1", bucket("+Inf"))), "{text}");
        assert!(text.contains("switchyard_event_retries_total 1"), "{text}");
        assert!(text.contains("switchyard_queue_depth 2"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
