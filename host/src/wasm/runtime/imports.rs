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
//! `StateBackend`, fills the other public fields itself (settings, secrets, packages, callback URL,
//! allowed hosts), and calls [`LoadedConnector`](crate::wasm::connector::LoadedConnector) exactly
//! as the flow does — no network, no database. The checks that are policy, not transport (an
//! absolute http(s) URL, an approved host, a valid method, the timeout cap, the timeline entry),
//! stay in [`CallContext::send`] so the harness exercises them too.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{IntegrationConfig, Secret};
use crate::store::Store;
use crate::timeline::{Timeline, TimelineEvent};
use crate::wasm::connector::Package;

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
}

/// Where one integration's `state` of one connector lives: the store ([`StoreState`]) or, in the
/// offline harness, memory. An error traps the call (the host cannot keep its promise of
/// durability), it is not shown to the guest as a value.
pub trait StateBackend: Send + Sync {
    fn get(&self, key: &str) -> anyhow::Result<Option<String>>;
    /// Durable when it returns.
    fn set(&self, key: &str, value: &str) -> anyhow::Result<()>;
    fn delete(&self, key: &str) -> anyhow::Result<()>;
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
    /// `host` or `host:port` entries; a request to anything else is denied.
    pub allowed_hosts: Vec<String>,
    /// None for calls outside any integration (reading a manifest): `get` is then empty and
    /// `set` traps.
    pub state: Option<Arc<dyn StateBackend>>,
    /// Where approved requests go.
    pub http: Arc<dyn Outbound>,
    /// Cap on one request's timeout (a connector may ask for less).
    pub http_timeout: Duration,
    pub timeline: Timeline,
}

impl CallContext {
    /// A context with no integration: no settings, no state, no network.
    pub fn detached() -> CallContext {
        CallContext {
            integration_id: String::new(),
            connector_id: String::new(),
            settings: BTreeMap::new(),
            secrets: BTreeMap::new(),
            packages: Vec::new(),
            callback_url: String::new(),
            allowed_hosts: Vec::new(),
            state: None,
            http: Arc::new(NoNetwork),
            http_timeout: Duration::from_secs(1),
            timeline: Timeline::default(),
        }
    }

    /// The server's context for calls made for `integration` to connector `connector_id`: live
    /// HTTP through `http`, state in `store`.
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
        CallContext {
            integration_id: integration.id.clone(),
            connector_id: connector_id.to_string(),
            settings,
            secrets: integration.secrets.clone(),
            packages,
            callback_url,
            allowed_hosts: integration
                .allowed_hosts
                .clone()
                .unwrap_or_else(|| default_hosts.to_vec()),
            state: Some(Arc::new(StoreState {
                store,
                integration: integration.id.clone(),
                connector: connector_id.to_string(),
            })),
            http: Arc::new(LiveHttp { client: http }),
            http_timeout,
            timeline,
        }
    }

    /// Whether `url` targets an approved host. An entry without a port approves any port.
    pub fn host_allowed(&self, url: &reqwest::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let port = url.port_or_known_default();
        self.allowed_hosts
            .iter()
            .any(|entry| match entry.rsplit_once(':') {
                Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => {
                    h.eq_ignore_ascii_case(host) && p.parse::<u16>().ok() == port
                }
                _ => entry.eq_ignore_ascii_case(host),
            })
    }

    /// `outbound-http.send`: checks the request against the integration's policy, then hands it
    /// to [`CallContext::http`], and records the call (path only) on the timeline.
    pub async fn send(&self, request: OutgoingRequest) -> Result<HttpResponse, HttpError> {
        let url = match reqwest::Url::parse(&request.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => return Err(HttpError::Invalid("not an absolute http(s) URL".into())),
        };
        if !self.host_allowed(&url) {
            tracing::warn!(integration = %self.integration_id, connector = %self.connector_id,
                host = url.host_str().unwrap_or(""), "outbound request to an unapproved host denied");
            return Err(HttpError::Denied(format!(
                "{} is not an approved host for this integration",
                url.host_str().unwrap_or("")
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
        let result = self.http.send(request, timeout).await;
        let outcome = match &result {
            Ok(r) => r.status.to_string(),
            Err(HttpError::Timeout) => "timeout".into(),
            Err(e) => format!("{e:?}"),
        };
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

    /// `state.set`.
    pub fn state_set(&self, key: &str, value: &str) -> wasmtime::Result<()> {
        match &self.state {
            Some(state) => state.set(key, value).map_err(trap),
            None => wasmtime::bail!("state is unavailable outside an integration"),
        }
    }

    /// `state.delete`.
    pub fn state_delete(&self, key: &str) -> wasmtime::Result<()> {
        match &self.state {
            Some(state) => state.delete(key).map_err(trap),
            None => Ok(()),
        }
    }

    /// `log.log`: into the host's log, tagged; warnings and errors also on the timeline.
    pub fn log(&self, level: LogLevel, message: &str, fields: &[(String, String)]) {
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
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
        if matches!(level, LogLevel::Warn | LogLevel::Error) {
            self.timeline.emit(TimelineEvent::ConnectorLog {
                integration: self.integration_id.clone(),
                message: format!("{message} {fields}").trim().to_string(),
            });
        }
    }
}

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

/// The server's outbound HTTP: reqwest with the host's client (built without redirects, so a
/// redirect cannot lead to an unapproved host).
pub struct LiveHttp {
    pub client: reqwest::Client,
}

impl Outbound for LiveHttp {
    fn send(
        &self,
        request: OutgoingRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        Box::pin(async move {
            let method = reqwest::Method::from_bytes(request.method.as_bytes())
                .map_err(|_| HttpError::Invalid("bad method".into()))?;
            let mut builder = self.client.request(method, &request.url).timeout(timeout);
            for (name, value) in &request.headers {
                builder = builder.header(name, value);
            }
            match builder.body(request.body).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into(),
                            )
                        })
                        .collect();
                    match resp.bytes().await {
                        Ok(body) => Ok(HttpResponse {
                            status,
                            headers,
                            body: body.to_vec(),
                        }),
                        Err(e) if e.is_timeout() => Err(HttpError::Timeout),
                        Err(e) => Err(HttpError::Connection(e.without_url().to_string())),
                    }
                }
                Err(e) if e.is_timeout() => Err(HttpError::Timeout),
                Err(e) if e.is_builder() => Err(HttpError::Invalid(e.without_url().to_string())),
                Err(e) => Err(HttpError::Connection(e.without_url().to_string())),
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
    fn delete(&self, key: &str) -> anyhow::Result<()> {
        Ok(self
            .store
            .kv_delete(&self.integration, &self.connector, key)?)
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
