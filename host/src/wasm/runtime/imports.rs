//! The host side of the capabilities a connector imports: outbound HTTP to approved hosts, the
//! integration's configuration and secrets, per-integration key-value state, and logging.

use std::collections::BTreeMap;
use std::time::Duration;

use super::bindings::switchyard::connector::{config, log, outbound_http, state, types};
use super::Invocation;
use crate::config::{IntegrationConfig, Secret};
use crate::store::Store;
use crate::timeline::{Timeline, TimelineEvent};

/// Everything an invocation may touch on behalf of one integration.
pub struct CallContext {
    pub integration_id: String,
    pub connector_id: String,
    pub settings: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Secret>,
    pub packages: Vec<types::Package>,
    pub callback_url: String,
    /// `host` or `host:port` entries; a request to anything else is denied.
    pub allowed_hosts: Vec<String>,
    /// None for calls outside any integration (reading a manifest): state is then unavailable.
    pub store: Option<Store>,
    pub http: reqwest::Client,
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
            store: None,
            http: reqwest::Client::new(),
            http_timeout: Duration::from_secs(1),
            timeline: Timeline::default(),
        }
    }

    /// The context for calls made for `integration` to connector `connector_id`.
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
            store: Some(store),
            http,
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
}

impl types::Host for Invocation {}

impl outbound_http::Host for Invocation {
    async fn send(
        &mut self,
        request: outbound_http::OutgoingRequest,
    ) -> wasmtime::Result<Result<types::HttpResponse, outbound_http::HttpError>> {
        use outbound_http::HttpError;
        let ctx = &self.ctx;
        let url = match reqwest::Url::parse(&request.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                return Ok(Err(HttpError::Invalid(
                    "not an absolute http(s) URL".into(),
                )))
            }
        };
        if !ctx.host_allowed(&url) {
            tracing::warn!(integration = %ctx.integration_id, connector = %ctx.connector_id,
                host = url.host_str().unwrap_or(""), "outbound request to an unapproved host denied");
            return Ok(Err(HttpError::Denied(format!(
                "{} is not an approved host for this integration",
                url.host_str().unwrap_or("")
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
        let result = match builder.body(request.body).send().await {
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
                    Ok(body) => Ok(types::HttpResponse {
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
        match &ctx.store {
            Some(store) => {
                Ok(store.kv_set(&ctx.integration_id, &ctx.connector_id, &key, &value)?)
            }
            None => wasmtime::bail!("state is unavailable outside an integration"),
        }
    }
    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let ctx = &self.ctx;
        match &ctx.store {
            Some(store) => Ok(store.kv_delete(&ctx.integration_id, &ctx.connector_id, &key)?),
            None => Ok(()),
        }
    }
}

impl log::Host for Invocation {
    async fn log(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let ctx = &self.ctx;
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
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
        assert!(ok("http://127.0.0.1:4000/x"));
        assert!(!ok("http://127.0.0.1:4001/x"));
        assert!(!ok("https://evil.example/x"));
        assert!(!ok("https://api.certn.co.evil.example/x"));
    }
}
