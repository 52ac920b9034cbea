//! The host side of the capabilities a connector imports: outbound HTTP to approved hosts, the
//! integration's configuration and secrets, per-integration key-value state, and logging.
//!
//! Every byte a connector can make the host hold here is bounded ([`SandboxLimits`], applied
//! through [`crate::wasm::quota`]) and every refusal is counted for the connector; outbound
//! requests follow [`crate::wasm::policy`] (approved hosts and ports, resolved addresses checked).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use super::bindings::switchyard::connector::{config, log, outbound_http, state, types};
use super::Invocation;
use crate::config::limits::{bytes, SandboxLimits};
use crate::config::{IntegrationConfig, Secret};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::timeline::{Timeline, TimelineEvent};
use crate::wasm::policy::{self, HostEntry};
use crate::wasm::quota::{self, CallBudget, Reservation};

/// Everything an invocation may touch on behalf of one integration.
pub struct CallContext {
    pub integration_id: String,
    pub connector_id: String,
    pub settings: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Secret>,
    pub packages: Vec<types::Package>,
    pub callback_url: String,
    /// `host` or `host:port` entries (no port: the scheme's default); anything else is denied.
    pub allowed_hosts: Vec<String>,
    /// Whether resolved loopback addresses are allowed (simulators and tests only).
    pub allow_loopback: bool,
    /// None for calls outside any integration (reading a manifest): state is then unavailable.
    pub store: Option<Store>,
    pub http: reqwest::Client,
    pub http_timeout: Duration,
    pub timeline: Timeline,
    /// The sandbox's byte and rate bounds.
    pub limits: Arc<SandboxLimits>,
    /// Where refusals are counted, per connector.
    pub metrics: Arc<Metrics>,
    /// This call's log budget.
    pub budget: CallBudget,
    /// Outbound response bytes the integration holds right now (shared by its calls).
    pub in_flight: Arc<AtomicUsize>,
    /// A call outside any integration (`manifest`): imports are refused.
    pub detached: bool,
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
            store: None,
            http: reqwest::Client::new(),
            http_timeout: Duration::from_secs(1),
            timeline: Timeline::default(),
            limits: Arc::new(SandboxLimits::default()),
            metrics: Arc::new(Metrics::default()),
            budget: CallBudget::default(),
            in_flight: Arc::default(),
            detached: true,
        }
    }

    /// The context for calls made for `integration` to connector `connector_id`, whose manifest
    /// asks for `default_hosts`; the integration's `allowed_hosts` come on top of them.
    #[allow(clippy::too_many_arguments)]
    pub fn for_integration(
        integration: &IntegrationConfig,
        connector_id: &str,
        default_hosts: &[String],
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
            .map(|p| types::Package {
                name: p.name.clone(),
                is_default: p.default,
                params: p
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .collect();
        let mut allowed_hosts = default_hosts.to_vec();
        allowed_hosts.extend(integration.allowed_hosts.iter().flatten().cloned());
        CallContext {
            integration_id: integration.id.clone(),
            connector_id: connector_id.to_string(),
            settings,
            secrets: integration.secrets.clone(),
            packages,
            callback_url,
            allowed_hosts,
            allow_loopback: integration.allow_loopback,
            store: Some(store),
            http,
            http_timeout,
            timeline,
            limits: Arc::new(SandboxLimits::default()),
            metrics: Arc::new(Metrics::default()),
            budget: CallBudget::default(),
            in_flight: Arc::default(),
            detached: false,
        }
    }

    /// The host's limits, metrics and the integration's in-flight counter.
    pub fn with_sandbox(
        mut self,
        limits: Arc<SandboxLimits>,
        metrics: Arc<Metrics>,
        in_flight: Arc<AtomicUsize>,
    ) -> CallContext {
        self.limits = limits;
        self.metrics = metrics;
        self.in_flight = in_flight;
        self
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

    /// Counts a limit that bit this connector.
    fn limited(&self, limit: &str) {
        self.metrics.sandbox_limit(&self.connector_id, limit);
    }
}

impl types::Host for Invocation {}

impl outbound_http::Host for Invocation {
    async fn send(
        &mut self,
        request: outbound_http::OutgoingRequest,
    ) -> wasmtime::Result<Result<types::HttpResponse, outbound_http::HttpError>> {
        use outbound_http::HttpError;
        let ctx = &self.ctx;
        if ctx.detached {
            wasmtime::bail!("outbound-http is unavailable here (manifest calls no import)");
        }
        let limits = ctx.limits.clone();
        let url = match reqwest::Url::parse(&request.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                return Ok(Err(HttpError::Invalid(
                    "not an absolute http(s) URL".into(),
                )))
            }
        };
        let host = url.host_str().unwrap_or("").to_string();
        let denied = |why: String| {
            tracing::warn!(integration = %ctx.integration_id, connector = %ctx.connector_id,
                host = %host, reason = %why, "outbound request denied");
            ctx.limited("outbound_policy");
            Ok(Err(HttpError::Denied(why)))
        };
        if !ctx.host_allowed(&url) {
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
        if let Some(range) = literal.and_then(|ip| policy::forbidden(ip, ctx.allow_loopback)) {
            return denied(format!("{host} is a {range} address"));
        }
        if request.body.len() > limits.outbound_request_bytes {
            ctx.limited("outbound_request_bytes");
            return Ok(Err(HttpError::Invalid(format!(
                "request body of {} bytes exceeds the {} cap (runtime.limits.outbound_request_bytes)",
                request.body.len(),
                bytes(limits.outbound_request_bytes)
            ))));
        }
        if request.headers.len() > limits.outbound_request_headers {
            ctx.limited("outbound_request_headers");
            return Ok(Err(HttpError::Invalid(format!(
                "{} request headers exceed the cap of {} (runtime.limits.outbound_request_headers)",
                request.headers.len(),
                limits.outbound_request_headers
            ))));
        }
        let Ok(method) = reqwest::Method::from_bytes(request.method.as_bytes()) else {
            return Ok(Err(HttpError::Invalid("bad method".into())));
        };
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(ctx.http_timeout)
            .min(ctx.http_timeout);
        let mut builder = ctx
            .http
            .request(method.clone(), url.clone())
            .timeout(timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        // Log the path only: query strings may carry credentials.
        let shown = format!(
            "{method} {}{}",
            url.origin().ascii_serialization(),
            url.path()
        );
        let connection = |e: &reqwest::Error| match policy::refused_resolution(e) {
            Some(why) => HttpError::Denied(why),
            None if e.is_timeout() => HttpError::Timeout,
            None => HttpError::Connection(quota::clip(&policy::describe(e), limits.error_bytes)),
        };
        let result = match builder.body(request.body).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let all = resp.headers().len();
                let headers: Vec<(String, String)> = resp
                    .headers()
                    .iter()
                    .take(limits.outbound_response_headers)
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into(),
                        )
                    })
                    .collect();
                if all > headers.len() {
                    ctx.limited("outbound_response_headers");
                }
                let mut reservation = Reservation::new(ctx.in_flight.clone());
                match quota::read_body(resp, &limits, &mut reservation).await {
                    Ok(body) => Ok(types::HttpResponse {
                        status,
                        headers,
                        body,
                    }),
                    Err(quota::BodyError::TooLarge(why)) => {
                        ctx.limited(if why.contains("outbound_integration_bytes") {
                            "outbound_integration_bytes"
                        } else {
                            "outbound_response_bytes"
                        });
                        Err(HttpError::Invalid(why))
                    }
                    Err(quota::BodyError::Read(e)) => Err(connection(&e)),
                }
            }
            Err(e) if e.is_builder() => Err(HttpError::Invalid(e.without_url().to_string())),
            Err(e) => Err(connection(&e)),
        };
        let outcome = match &result {
            Ok(r) => r.status.to_string(),
            Err(HttpError::Timeout) => "timeout".into(),
            Err(e) => format!("{e:?}"),
        };
        ctx.timeline.emit(TimelineEvent::VendorCall {
            integration: ctx.integration_id.clone(),
            request: shown,
            outcome,
        });
        Ok(result)
    }
}

impl config::Host for Invocation {
    async fn integration_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.ctx.integration_id.clone())
    }
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.ctx.settings.get(&key).cloned())
    }
    async fn secret(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.ctx.secrets.get(&key).map(|s| s.expose().to_string()))
    }
    async fn packages(&mut self) -> wasmtime::Result<Vec<types::Package>> {
        Ok(self.ctx.packages.clone())
    }
    async fn callback_url(&mut self) -> wasmtime::Result<String> {
        Ok(self.ctx.callback_url.clone())
    }
}

impl state::Host for Invocation {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        let ctx = &self.ctx;
        match &ctx.store {
            Some(store) => Ok(store.kv_get(&ctx.integration_id, &ctx.connector_id, &key)?),
            None => Ok(None),
        }
    }
    async fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        let ctx = &self.ctx;
        let Some(store) = &ctx.store else {
            wasmtime::bail!("state is unavailable outside an integration");
        };
        let l = &ctx.limits;
        // Over a cap the call traps (WIT `state`): a connector that cannot record its intent
        // must not go on to call the vendor.
        let refuse = |limit: &str, what: String| {
            ctx.limited(limit);
            tracing::warn!(integration = %ctx.integration_id, connector = %ctx.connector_id,
                "state.set refused: {what}");
            Err(wasmtime::format_err!(
                "state.set refused: {what} (runtime.limits.{limit})"
            ))
        };
        if key.len() > l.state_key_bytes {
            return refuse(
                "state_key_bytes",
                format!(
                    "a key of {} bytes exceeds {}",
                    key.len(),
                    bytes(l.state_key_bytes)
                ),
            );
        }
        if value.len() > l.state_value_bytes {
            return refuse(
                "state_value_bytes",
                format!(
                    "a value of {} bytes exceeds {}",
                    value.len(),
                    bytes(l.state_value_bytes)
                ),
            );
        }
        let used = store.kv_usage(&ctx.integration_id, &ctx.connector_id, &key)?;
        let total = used + (key.len() + value.len()) as u64;
        if total > l.state_total_bytes as u64 {
            return refuse(
                "state_total_bytes",
                format!(
                    "the integration's state would hold {total} bytes, over its {} quota",
                    bytes(l.state_total_bytes)
                ),
            );
        }
        Ok(store.kv_set(&ctx.integration_id, &ctx.connector_id, &key, &value)?)
    }
    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let ctx = &self.ctx;
        match &ctx.store {
            Some(store) => Ok(store.kv_delete(&ctx.integration_id, &ctx.connector_id, &key)?),
            None => Ok(()),
        }
    }
}

/// Longest log field key or value.
const LOG_FIELD_BYTES: usize = 256;

impl log::Host for Invocation {
    async fn log(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let ctx = &self.ctx;
        if ctx.detached {
            wasmtime::bail!("log is unavailable during manifest (manifest calls no import)");
        }
        let l = &ctx.limits;
        if !ctx.budget.take_log_line(l.log_lines_per_call) {
            ctx.limited("log_lines_per_call");
            if ctx.budget.log_dropped() == 1 {
                tracing::warn!(connector = %ctx.connector_id, integration = %ctx.integration_id,
                    "connector log limit reached: {} lines in this call; further lines dropped (runtime.limits.log_lines_per_call)",
                    l.log_lines_per_call);
            }
            return Ok(());
        }
        if message.len() > l.log_message_bytes || fields.len() > l.log_fields {
            ctx.limited("log_message_bytes");
        }
        let message = quota::clip(&message, l.log_message_bytes);
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
                tracing::$lvl!(connector = %ctx.connector_id, integration = %ctx.integration_id,
                    fields = %fields, "{message}")
            };
        }
        match level {
            log::Level::Trace => emit!(trace),
            log::Level::Debug => emit!(debug),
            log::Level::Info => emit!(info),
            log::Level::Warn => emit!(warn),
            log::Level::Error => emit!(error),
        }
        if matches!(level, log::Level::Warn | log::Level::Error) {
            ctx.timeline.emit(TimelineEvent::ConnectorLog {
                integration: ctx.integration_id.clone(),
                message: format!("{message} {fields}").trim().to_string(),
            });
        }
        Ok(())
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
}
