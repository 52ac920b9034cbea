//! The host side of the capabilities a connector imports — outbound HTTP to approved hosts, the
//! integration's configuration and secrets, per-integration key-value state, and logging — on
//! host-neutral types. The per-version WIT glue (`bindings/v0_*.rs`) converts and delegates here,
//! so every contract version gets the same behaviour. `crypto` is in [`super::crypto`].
//!
//! # The seam for an offline harness
//!
//! A [`CallContext`] is everything one invocation may touch, and its two effectful parts are
//! trait objects: [`CallContext::http`] ([`Outbound`]: where an *approved* request goes) and
//! [`CallContext::state`] ([`StateBackend`]: where `state` lives). The server uses [`LiveHttp`]
//! (reqwest, no redirects) and [`StoreState`] (the SQLite `kv` table, scoped to one integration
//! and connector); `switchyard connector test` supplies a scripted `Outbound` and an in-memory
//! `StateBackend` (both reached only after the checks below), a [`LogSink`] that keeps every line
//! the host logged, and a pinned [`CallContext::wall_clock`]; it fills the other public fields
//! itself (settings, secrets, packages, callback URL, allowed hosts, limits), and calls
//! [`LoadedConnector`](crate::wasm::connector::LoadedConnector) exactly as the flow does — no
//! network, no database. The checks that are policy, not transport (an absolute http(s) URL, an
//! approved host, an IP literal's range, a valid method, the request caps, the timeout cap, the
//! timeline entry), stay in [`CallContext::send`] so the harness exercises them too; the check of
//! *resolved* addresses belongs to [`LiveHttp`]'s client, which the harness does not use.
//!
//! # Bounds
//!
//! Every byte a connector can make the host hold here is bounded ([`SandboxLimits`], applied
//! through [`crate::wasm::quota`]) and every refusal counted for the connector: request bodies and
//! headers and IP literals in [`CallContext::send`], the response body streamed with a cap in
//! [`LiveHttp`] (whose client checks resolved addresses, [`crate::wasm::policy`]), log size and
//! rate in [`CallContext::log`], state key/value size and the integration's total in
//! [`CallContext::state_set`] and [`CallContext::state_set_for_screening`]. A detached context (reading a manifest) refuses every import.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::config::limits::{bytes, SandboxLimits};
use crate::config::{IntegrationConfig, Secret};
use crate::metrics::{Metrics, QuotaLevel};
use crate::recording::{CallLog, CallTarget, OutboundCall};
use crate::store::Store;
use crate::timeline::{Timeline, TimelineEvent};
use crate::wasm::policy::{self, HostEntry};
use crate::wasm::quota::{self, CallBudget, Reservation};
use crate::wasm::types::{Package, StateQuotaFull};

/// An outgoing request as a connector made it (WIT `outbound-http.outgoing-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: Option<u32>,
}

/// A vendor's answer (WIT `types.http-response`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request got no response (WIT `outbound-http.http-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host is not approved for this integration.
    Denied(String),
    /// No answer within the timeout.
    Timeout,
    /// Connecting or reading failed.
    Connection(String),
    /// The request is malformed.
    Invalid(String),
}

/// A log severity (WIT `log.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// A boxed future, for the object-safe traits below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an outbound request goes once [`CallContext::send`] has approved it: the network
/// ([`LiveHttp`]) or, in the offline harness, a script.
pub trait Outbound: Send + Sync {
    /// Sends `request` (an absolute http(s) URL to an approved host, a valid method) and waits at
    /// most `timeout` for the whole response.
    fn send(
        &self,
        request: OutgoingRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<HttpResponse, HttpError>>;

    /// [`Outbound::send`] with `request.url` parsed already (by the policy check): a transport
    /// that parses it again may take this one instead.
    fn send_parsed(
        &self,
        request: OutgoingRequest,
        _url: reqwest::Url,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        self.send(request, timeout)
    }
}

/// Where one integration's `state` of one connector lives: the store ([`StoreState`]) or, in the
/// offline harness, memory. An error traps the call (the host cannot keep its promise of
/// durability), it is not shown to the guest as a value.
pub trait StateBackend: Send + Sync {
    fn get(&self, key: &str) -> anyhow::Result<Option<String>>;
    /// Durable when it returns.
    fn set(&self, key: &str, value: &str) -> anyhow::Result<()>;
    /// Like `set`, but the entry belongs to the screening with `idempotency_key` and goes when
    /// that screening's order is recorded (`state.set-for-screening`). Durable when it returns.
    fn set_for_screening(
        &self,
        idempotency_key: &str,
        key: &str,
        value: &str,
    ) -> anyhow::Result<()>;
    fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// Bytes (keys, values, screenings' keys) held, not counting the entry `key` (for the total
    /// quota). A backend that cannot tell says 0 (then only the per-value cap applies).
    fn usage_without(&self, _key: &str) -> anyhow::Result<u64> {
        Ok(0)
    }
    /// Makes every write so far durable: called before each outbound request leaves, so that
    /// a crash during the request never loses what the connector recorded before it (its
    /// intent). A backend whose writes are durable when they return has nothing to do. Async:
    /// the call awaits the commit instead of blocking its thread.
    fn before_outbound(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Where the offline harness keeps the log lines a connector wrote, as the host logged them
/// (after the size and rate limits). The server has none: its lines go to `tracing`.
pub trait LogSink: Send + Sync {
    /// One line: `fields` as the host formats them (`k=v k=v`, each clipped).
    fn line(&self, level: LogLevel, message: &str, fields: &str);
}

/// Everything an invocation may touch on behalf of one integration (see the module docs for how
/// a harness builds one).
pub struct CallContext {
    pub integration_id: String,
    pub connector_id: String,
    pub settings: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Secret>,
    pub packages: Vec<Package>,
    pub callback_url: String,
    /// `host` or `host:port` entries (no port: the scheme's default); anything else is denied.
    pub allowed_hosts: Vec<String>,
    /// Whether loopback addresses may be reached (simulators and tests only).
    pub allow_loopback: bool,
    /// None for calls outside any integration (reading a manifest): `get` is then empty and
    /// `set` traps.
    pub state: Option<Arc<dyn StateBackend>>,
    /// Where approved requests go.
    pub http: Arc<dyn Outbound>,
    /// Cap on one request's timeout (a connector may ask for less).
    pub http_timeout: Duration,
    pub timeline: Timeline,
    /// The sandbox's byte and rate bounds.
    pub limits: Arc<SandboxLimits>,
    /// Where limits that bite are counted, per connector.
    pub metrics: Arc<Metrics>,
    /// This call's log budget.
    pub budget: CallBudget,
    /// A call outside any integration (`manifest`): every import is refused.
    pub detached: bool,
    /// What WASI's wall clock reads during the call (since the Unix epoch); None: the real clock.
    /// The offline harness pins it to a step's `now`.
    pub wall_clock: Option<Duration>,
    /// Also receives every logged line (the offline harness); None in the server.
    pub log_sink: Option<Arc<dyn LogSink>>,
    /// Where `outbound-http` calls are recorded for operators: the log of the attempt that built
    /// this context (none outside an attempt).
    pub calls: Option<CallLog>,
}

/// The default limits of a context the server has not given its own yet (shared: contexts are
/// built for every call, and a fresh metrics registry each time was wasted work).
fn unset_limits() -> Arc<SandboxLimits> {
    static LIMITS: std::sync::OnceLock<Arc<SandboxLimits>> = std::sync::OnceLock::new();
    LIMITS.get_or_init(Arc::default).clone()
}

/// Where a context without the server's metrics counts (never read; shared for the same reason).
fn unset_metrics() -> Arc<Metrics> {
    static METRICS: std::sync::OnceLock<Arc<Metrics>> = std::sync::OnceLock::new();
    METRICS.get_or_init(Arc::default).clone()
}

impl CallContext {
    /// A context with no integration: no settings, no state, no network, no log.
    pub fn detached() -> CallContext {
        CallContext {
            integration_id: String::new(),
            connector_id: String::new(),
            settings: BTreeMap::new(),
            secrets: BTreeMap::new(),
            packages: Vec::new(),
            callback_url: String::new(),
            allowed_hosts: Vec::new(),
            allow_loopback: false,
            state: None,
            http: Arc::new(NoNetwork),
            http_timeout: Duration::from_secs(1),
            timeline: Timeline::default(),
            limits: unset_limits(),
            metrics: unset_metrics(),
            budget: CallBudget::default(),
            detached: true,
            wall_clock: None,
            log_sink: None,
            calls: None,
        }
    }

    /// The server's context for calls made for `integration` to connector `connector_id`: live
    /// HTTP through `http`, state in `store`. The connector may call its manifest's hosts
    /// (`default_hosts`) plus those of the integration's `allowed_hosts` that the operator still
    /// approves (`approved`; a stored integration may name a host a connector change no longer
    /// covers). Default limits: the server sets its own with [`CallContext::with_sandbox`].
    #[allow(clippy::too_many_arguments)]
    pub fn for_integration(
        integration: &IntegrationConfig,
        connector_id: &str,
        default_hosts: &[String],
        approved: &[String],
        callback_url: String,
        store: Store,
        http: reqwest::Client,
        http_timeout: Duration,
        timeline: Timeline,
    ) -> CallContext {
        let settings = integration
            .settings
            .keys()
            .filter_map(|k| integration.setting(k).map(|v| (k.clone(), v)))
            .collect();
        let packages = integration
            .packages
            .iter()
            .map(|p| Package {
                name: p.name.clone(),
                is_default: p.default,
                params: p
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .collect();
        // Checked one entry at a time, not by copying the whole config first: every call builds
        // a context.
        let still = |h: &&String| {
            crate::wasm::policy::check_allowed(
                std::slice::from_ref(*h),
                approved,
                default_hosts,
                integration.allow_loopback,
            )
            .is_ok()
        };
        CallContext {
            integration_id: integration.id.clone(),
            connector_id: connector_id.to_string(),
            settings,
            secrets: integration.secrets.clone(),
            packages,
            callback_url,
            allowed_hosts: default_hosts
                .iter()
                .chain(integration.allowed_hosts.iter().flatten().filter(still))
                .cloned()
                .collect(),
            allow_loopback: integration.allow_loopback,
            state: Some(Arc::new(StoreState {
                store,
                integration: integration.id.clone(),
                connector: connector_id.to_string(),
            })),
            http: Arc::new(LiveHttp::new(http, unset_limits(), Arc::default())),
            http_timeout,
            timeline,
            limits: unset_limits(),
            metrics: unset_metrics(),
            budget: CallBudget::default(),
            detached: false,
            wall_clock: None,
            log_sink: None,
            calls: CallLog::current(),
        }
    }

    /// The server's limits and metrics; `client` (the outbound client for the integration's
    /// address policy) reads bodies within them, counting against `in_flight` (the integration's
    /// response bytes held at once).
    pub fn with_sandbox(
        mut self,
        limits: Arc<SandboxLimits>,
        metrics: Arc<Metrics>,
        client: reqwest::Client,
        in_flight: Arc<AtomicUsize>,
    ) -> CallContext {
        self.http = Arc::new(LiveHttp::new(client, limits.clone(), in_flight));
        self.limits = limits;
        self.metrics = metrics;
        self
    }

    /// Counts a limit (a `runtime.limits` setting's name) that bit this connector.
    pub fn limited(&self, limit: &str) {
        self.metrics.sandbox_limit(&self.connector_id, limit);
    }

    /// Whether `url` targets an approved host and port (an entry without a port allows only the
    /// scheme's default port).
    pub fn host_allowed(&self, url: &reqwest::Url) -> bool {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let default = if url.scheme() == "https" { 443 } else { 80 };
        self.allowed_hosts
            .iter()
            .filter_map(|e| HostEntry::parse(e).ok())
            .any(|e| e.matches(host, port, default))
    }

    /// `outbound-http.send`: checks the request against the integration's policy, then hands it
    /// to [`CallContext::http`], and records the call (path only) on the timeline.
    pub async fn send(&self, request: OutgoingRequest) -> Result<HttpResponse, HttpError> {
        let url = match reqwest::Url::parse(&request.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => return Err(HttpError::Invalid("not an absolute http(s) URL".into())),
        };
        let host = url.host_str().unwrap_or("").to_string();
        let denied = |why: String| {
            tracing::warn!(integration = %self.integration_id, connector = %self.connector_id,
                host = %host, reason = %why, "outbound request denied");
            self.limited("outbound_policy");
            Err(HttpError::Denied(why))
        };
        if !self.host_allowed(&url) {
            return denied(format!(
                "{host}:{} is not an approved host and port for this integration",
                url.port_or_known_default().unwrap_or(0)
            ));
        }
        // IP literals never reach the resolver: check them here.
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok();
        if let Some(range) = literal.and_then(|ip| policy::forbidden(ip, self.allow_loopback)) {
            return denied(format!("{host} is a {range} address"));
        }
        let l = &self.limits;
        if request.body.len() > l.outbound_request_bytes {
            self.limited("outbound_request_bytes");
            return Err(HttpError::Invalid(format!(
                "request body of {} bytes exceeds the {} cap (runtime.limits.outbound_request_bytes)",
                request.body.len(),
                bytes(l.outbound_request_bytes)
            )));
        }
        if request.headers.len() > l.outbound_request_headers {
            self.limited("outbound_request_headers");
            return Err(HttpError::Invalid(format!(
                "{} request headers exceed the cap of {} (runtime.limits.outbound_request_headers)",
                request.headers.len(),
                l.outbound_request_headers
            )));
        }
        if reqwest::Method::from_bytes(request.method.as_bytes()).is_err() {
            return Err(HttpError::Invalid("bad method".into()));
        }
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(self.http_timeout)
            .min(self.http_timeout);
        // Log the path only: query strings may carry credentials.
        let shown = format!(
            "{} {}{}",
            request.method,
            url.origin().ascii_serialization(),
            url.path()
        );
        let method = request.method.clone();
        if let Some(state) = &self.state {
            if let Err(e) = state.before_outbound().await {
                tracing::error!(integration = %self.integration_id, connector = %self.connector_id,
                    error = %e, "state writes could not be stored: the request is not sent");
                return Err(HttpError::Connection(
                    "the connector's state could not be stored; the request was not sent".into(),
                ));
            }
        }
        let started_at_ms = crate::clock::now_ms();
        let mut result = self.http.send_parsed(request, url.clone(), timeout).await;
        match &mut result {
            Ok(r) if r.headers.len() > l.outbound_response_headers => {
                r.headers.truncate(l.outbound_response_headers);
                self.limited("outbound_response_headers");
            }
            Err(HttpError::Invalid(why)) if why.contains("runtime.limits.outbound_integration") => {
                self.limited("outbound_integration_bytes")
            }
            Err(HttpError::Invalid(why)) if why.contains("runtime.limits.outbound_response") => {
                self.limited("outbound_response_bytes")
            }
            _ => {}
        }
        let outcome = match &result {
            Ok(r) => r.status.to_string(),
            Err(HttpError::Timeout) => "timeout".into(),
            Err(e) => format!("{e:?}"),
        };
        if let Some(calls) = &self.calls {
            let ended = match &result {
                Ok(r) => Ok(r.status),
                Err(_) => Err(outcome.clone()),
            };
            calls.record(OutboundCall::ended_at(
                CallTarget::Vendor,
                &method,
                &url,
                started_at_ms,
                ended,
            ));
        }
        self.timeline.emit(TimelineEvent::VendorCall {
            integration: self.integration_id.clone(),
            request: shown,
            outcome,
        });
        result
    }

    /// `state.get`.
    pub fn state_get(&self, key: &str) -> wasmtime::Result<Option<String>> {
        match &self.state {
            Some(state) => state.get(key).map_err(trap),
            None => Ok(None),
        }
    }

    /// `state.set`. Over a cap the call traps (WIT `state`): a connector that cannot record its
    /// intent must not go on to call the vendor.
    pub fn state_set(&self, key: &str, value: &str) -> wasmtime::Result<()> {
        let (state, total, quota) = self.state_write("state.set", key, value, "")?;
        state.set(key, value).map_err(trap)?;
        self.quota_level(QuotaLevel::of(total, quota), total, quota);
        Ok(())
    }

    /// `state.set-for-screening`: `state.set`'s caps (the idempotency key held to the key cap and
    /// counted in the total too), and the entry goes when the screening's order is recorded.
    pub fn state_set_for_screening(
        &self,
        idempotency_key: &str,
        key: &str,
        value: &str,
    ) -> wasmtime::Result<()> {
        let import = "state.set-for-screening";
        let (state, total, quota) = self.state_write(import, key, value, idempotency_key)?;
        state
            .set_for_screening(idempotency_key, key, value)
            .map_err(trap)?;
        self.quota_level(QuotaLevel::of(total, quota), total, quota);
        Ok(())
    }

    /// The backend, the total after the write and the quota, once a write of `key` = `value`
    /// (for the screening `screening`, empty for none) is within the key, value and total caps;
    /// else the trap naming the setting (a full quota as [`StateQuotaFull`]).
    fn state_write(
        &self,
        import: &str,
        key: &str,
        value: &str,
        screening: &str,
    ) -> wasmtime::Result<(&Arc<dyn StateBackend>, u64, u64)> {
        let Some(state) = &self.state else {
            wasmtime::bail!("state is unavailable outside an integration");
        };
        let l = &self.limits;
        let refuse = |limit: &str, what: String| {
            self.limited(limit);
            tracing::warn!(integration = %self.integration_id, connector = %self.connector_id,
                "{import} refused: {what}");
            Err(wasmtime::format_err!(
                "{import} refused: {what} (runtime.limits.{limit})"
            ))
        };
        for (what, len) in [("key", key.len()), ("idempotency key", screening.len())] {
            if len > l.state_key_bytes {
                let what = format!(
                    "a {what} of {len} bytes exceeds {}",
                    bytes(l.state_key_bytes)
                );
                return refuse("state_key_bytes", what);
            }
        }
        if value.len() > l.state_value_bytes {
            let what = format!(
                "a value of {} bytes exceeds {}",
                value.len(),
                bytes(l.state_value_bytes)
            );
            return refuse("state_value_bytes", what);
        }
        let total = state.usage_without(key).map_err(trap)?
            + (key.len() + value.len() + screening.len()) as u64;
        let quota = l.state_total_bytes as u64;
        if total > quota {
            self.limited("state_total_bytes");
            self.quota_level(QuotaLevel::Full, total, quota);
            return Err(wasmtime::Error::new(StateQuotaFull(format!(
                "{import} refused: the integration's state would hold {total} bytes, over its {} \
                 quota (runtime.limits.state_total_bytes)",
                bytes(l.state_total_bytes)
            ))));
        }
        Ok((state, total, quota))
    }

    /// Logs a change of how full the integration's state is, once per change: a warning from
    /// 80 %, an error when a `state.set` was refused, and when it has room again.
    fn quota_level(&self, level: QuotaLevel, total: u64, quota: u64) {
        let Some(before) =
            self.metrics
                .quota_level(&self.integration_id, &self.connector_id, level)
        else {
            return;
        };
        let (integration, connector) = (&self.integration_id, &self.connector_id);
        let setting = "runtime.limits.state_total_bytes, or the integration's state_total_bytes";
        match level {
            QuotaLevel::Full => tracing::error!(%integration, %connector, quota, setting,
                "state quota full: the connector's state.set calls are refused and its events \
                 wait until the quota is raised or the connector keeps less"),
            QuotaLevel::Warning if before < level => tracing::warn!(%integration, %connector,
                bytes = total, quota, setting, "connector state above 80 % of its quota"),
            _ => tracing::info!(%integration, %connector, bytes = total, quota,
                "connector state has room again"),
        }
    }

    /// `state.delete`.
    pub fn state_delete(&self, key: &str) -> wasmtime::Result<()> {
        match &self.state {
            Some(state) => state.delete(key).map_err(trap),
            None => Ok(()),
        }
    }

    /// `log.log`: into the host's log, tagged; warnings and errors also on the timeline. The
    /// message is cut at `log_message_bytes`, fields beyond `log_fields` dropped, lines beyond
    /// `log_lines_per_call` dropped and counted. Refused (a trap) during `manifest`.
    pub fn log(
        &self,
        level: LogLevel,
        message: &str,
        fields: &[(String, String)],
    ) -> wasmtime::Result<()> {
        if self.detached {
            wasmtime::bail!("log is unavailable during manifest (manifest calls no import)");
        }
        let l = &self.limits;
        if !self.budget.take_log_line(l.log_lines_per_call) {
            self.limited("log_lines_per_call");
            if self.budget.log_dropped() == 1 {
                tracing::warn!(connector = %self.connector_id, integration = %self.integration_id,
                    "connector log limit reached: {} lines in this call; further lines dropped (runtime.limits.log_lines_per_call)",
                    l.log_lines_per_call);
            }
            return Ok(());
        }
        if message.len() > l.log_message_bytes || fields.len() > l.log_fields {
            self.limited("log_message_bytes");
        }
        let message = quota::clip(message, l.log_message_bytes);
        let fields = fields
            .iter()
            .take(l.log_fields)
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    quota::clip(k, LOG_FIELD_BYTES),
                    quota::clip(v, LOG_FIELD_BYTES)
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        macro_rules! emit {
            ($lvl:ident) => {
                tracing::$lvl!(connector = %self.connector_id, integration = %self.integration_id,
                    fields = %fields, "{message}")
            };
        }
        match level {
            LogLevel::Trace => emit!(trace),
            LogLevel::Debug => emit!(debug),
            LogLevel::Info => emit!(info),
            LogLevel::Warn => emit!(warn),
            LogLevel::Error => emit!(error),
        }
        if let Some(sink) = &self.log_sink {
            sink.line(level, &message, &fields);
        }
        if matches!(level, LogLevel::Warn | LogLevel::Error) {
            self.timeline.emit(TimelineEvent::ConnectorLog {
                integration: self.integration_id.clone(),
                message: format!("{message} {fields}").trim().to_string(),
            });
        }
        Ok(())
    }
}

/// Longest log field key or value.
const LOG_FIELD_BYTES: usize = 256;

fn trap(e: anyhow::Error) -> wasmtime::Error {
    wasmtime::Error::msg(format!("{e:#}"))
}

/// No network at all (reading a manifest): every request is denied.
struct NoNetwork;

impl Outbound for NoNetwork {
    fn send(
        &self,
        _: OutgoingRequest,
        _: Duration,
    ) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        Box::pin(async {
            Err(HttpError::Denied(
                "no network outside an integration".into(),
            ))
        })
    }
}

/// The server's outbound HTTP: reqwest with a client of [`policy::OutboundClients`] (no
/// redirects, no proxies, resolved addresses checked), the body read in chunks up to the caps.
pub struct LiveHttp {
    pub client: reqwest::Client,
    limits: Arc<SandboxLimits>,
    in_flight: Arc<AtomicUsize>,
}

impl LiveHttp {
    /// `in_flight`: the integration's response bytes held at once (shared by its calls).
    pub fn new(
        client: reqwest::Client,
        limits: Arc<SandboxLimits>,
        in_flight: Arc<AtomicUsize>,
    ) -> LiveHttp {
        LiveHttp {
            client,
            limits,
            in_flight,
        }
    }
}

/// A reqwest error as the guest sees it: a refused resolution is `denied`; no URL in the text.
fn http_error(e: &reqwest::Error, limits: &SandboxLimits) -> HttpError {
    match policy::refused_resolution(e) {
        Some(why) => HttpError::Denied(why),
        None if e.is_timeout() => HttpError::Timeout,
        None => HttpError::Connection(quota::clip(&policy::describe(e), limits.error_bytes)),
    }
}

impl Outbound for LiveHttp {
    fn send(
        &self,
        request: OutgoingRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        match reqwest::Url::parse(&request.url) {
            Ok(url) => self.send_parsed(request, url, timeout),
            Err(_) => Box::pin(async { Err(HttpError::Invalid("not an absolute URL".into())) }),
        }
    }

    fn send_parsed(
        &self,
        request: OutgoingRequest,
        url: reqwest::Url,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        Box::pin(async move {
            let method = reqwest::Method::from_bytes(request.method.as_bytes())
                .map_err(|_| HttpError::Invalid("bad method".into()))?;
            let mut builder = self.client.request(method, url).timeout(timeout);
            for (name, value) in &request.headers {
                builder = builder.header(name, value);
            }
            let resp = match builder.body(request.body).send().await {
                Ok(resp) => resp,
                Err(e) if e.is_builder() => {
                    return Err(HttpError::Invalid(e.without_url().to_string()))
                }
                Err(e) => return Err(http_error(&e, &self.limits)),
            };
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .take(self.limits.outbound_response_headers + 1)
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into(),
                    )
                })
                .collect();
            let mut reservation = Reservation::new(self.in_flight.clone());
            match quota::read_body(resp, &self.limits, &mut reservation).await {
                Ok(body) => Ok(HttpResponse {
                    status,
                    headers,
                    body,
                }),
                Err(quota::BodyError::TooLarge(why)) => Err(HttpError::Invalid(why)),
                Err(quota::BodyError::Read(e)) => Err(http_error(&e, &self.limits)),
            }
        })
    }
}

/// The server's `state`: the store's `kv` table, scoped to one integration and connector.
pub struct StoreState {
    pub store: Store,
    pub integration: String,
    pub connector: String,
}

impl StateBackend for StoreState {
    fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self.store.kv_get(&self.integration, &self.connector, key)?)
    }
    fn set(&self, key: &str, value: &str) -> anyhow::Result<()> {
        Ok(self
            .store
            .kv_set(&self.integration, &self.connector, key, value)?)
    }
    fn set_for_screening(
        &self,
        idempotency_key: &str,
        key: &str,
        value: &str,
    ) -> anyhow::Result<()> {
        let kept = self.store.kv_set_for_screening(
            &self.integration,
            &self.connector,
            idempotency_key,
            key,
            value,
        )?;
        if !kept {
            tracing::debug!(integration = %self.integration, connector = %self.connector,
                "state.set-for-screening: that screening's order is recorded already; not kept");
        }
        Ok(())
    }
    fn delete(&self, key: &str) -> anyhow::Result<()> {
        Ok(self
            .store
            .kv_delete(&self.integration, &self.connector, key)?)
    }
    fn usage_without(&self, key: &str) -> anyhow::Result<u64> {
        Ok(self
            .store
            .kv_usage(&self.integration, &self.connector, key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_approved_hosts_and_ports_pass() {
        let mut ctx = CallContext::detached();
        ctx.allowed_hosts = vec!["api.certn.co".into(), "127.0.0.1:4000".into()];
        let ok = |u: &str| ctx.host_allowed(&reqwest::Url::parse(u).unwrap());
        assert!(ok("https://api.certn.co/x"));
        assert!(ok("http://api.certn.co/x"), "port 80 by scheme");
        assert!(
            !ok("https://api.certn.co:8443/x"),
            "no port means the default port"
        );
        assert!(ok("http://127.0.0.1:4000/x"));
        assert!(!ok("http://127.0.0.1:4001/x"));
        assert!(!ok("https://evil.example/x"));
        assert!(!ok("https://api.certn.co.evil.example/x"));
    }

    /// A scripted transport, as the offline harness would supply: policy still applies first.
    struct Script;
    impl Outbound for Script {
        fn send(
            &self,
            r: OutgoingRequest,
            _: Duration,
        ) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
            Box::pin(async move {
                Ok(HttpResponse {
                    status: 201,
                    headers: vec![],
                    body: r.url.into_bytes(),
                })
            })
        }
    }

    #[tokio::test]
    async fn a_supplied_transport_gets_only_approved_requests() {
        let mut ctx = CallContext::detached();
        ctx.http = Arc::new(Script);
        ctx.allowed_hosts = vec!["vendor.example".into()];
        let req = |url: &str| OutgoingRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![],
            body: vec![],
            timeout_ms: None,
        };
        let ok = ctx
            .send(req("https://vendor.example/orders"))
            .await
            .unwrap();
        assert_eq!(ok.status, 201);
        assert_eq!(ok.body, b"https://vendor.example/orders");
        assert!(matches!(
            ctx.send(req("https://other.example/")).await,
            Err(HttpError::Denied(_))
        ));
        assert!(matches!(
            ctx.send(req("/relative")).await,
            Err(HttpError::Invalid(_))
        ));
    }
}
