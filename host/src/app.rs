//! The shared state of a running host — configuration, store, connector registry and
//! integrations — used by the HTTP handlers, the workers and the watcher. A plain value: it starts
//! nothing and imports none of them; [`crate::run`] composes them around it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::ats::lever::oauth::LeverOAuth;
use crate::ats::{Ats, AtsCx};
use crate::config::limits::SandboxLimits;
use crate::config::{AtsConfig, Config, GemConfig, IntegrationConfig};
use crate::metrics::Metrics;
use crate::store::{Store, WaitFor};
use crate::timeline::Timeline;
use crate::wasm::connector::{CallError, LoadedConnector};
use crate::wasm::policy::OutboundClients;
use crate::wasm::pool::GuestPool;
use crate::wasm::quota::InFlight;
use crate::wasm::registry::Registry;
use crate::wasm::runtime::CallContext;

/// An integration and its ATS adapter.
pub struct Integration {
    pub config: IntegrationConfig,
    /// The adapter of the integration's ATS (see [`crate::ats`]).
    pub ats: Arc<dyn Ats>,
}

impl Integration {
    pub fn new(
        config: IntegrationConfig,
        http: &reqwest::Client,
        lever_oauth: &Arc<LeverOAuth>,
    ) -> Integration {
        let ats = crate::ats::build(&config, http, lever_oauth);
        Integration { config, ats }
    }

    /// The Gem settings, for a Gem integration.
    pub fn gem_config(&self) -> Option<&GemConfig> {
        match &self.config.ats {
            AtsConfig::Gem(g) => Some(g),
            _ => None,
        }
    }
}

/// Why a connector cannot serve an integration now (its words come from
/// [`Registry::not_ready`]: which connector, and why it did not load).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotLoaded(pub String);

/// Shared state of a running host.
pub struct App {
    pub config: Config,
    pub public_url: String,
    pub store: Store,
    pub registry: Arc<Registry>,
    pub http: reqwest::Client,
    /// The host's metrics, served at `/metrics` (created by `run`).
    pub metrics: Arc<Metrics>,
    pub timeline: Timeline,
    /// The host's Lever OAuth app (connect links, token refresh, revocation).
    pub lever_oauth: Arc<LeverOAuth>,
    /// Wakes idle workers when an event is queued.
    pub wake: Notify,
    /// This process's run: the holder named in the leases it takes (see `store::runs`).
    pub run_id: String,
    /// Set when the host is stopping: requests get 503 with `Retry-After`.
    pub draining: std::sync::atomic::AtomicBool,
    /// Whether this host leads housekeeping (`store::leader`), renewed by the heartbeat:
    /// retention passes and the replay-job runner act only while it is set.
    pub leader: std::sync::atomic::AtomicBool,
    pub(crate) integrations: RwLock<BTreeMap<String, Arc<Integration>>>,
    /// Serializes the admin API's read-modify-write of integrations (no lost updates).
    pub integration_edits: tokio::sync::Mutex<()>,
    /// Where connector calls run (never on the HTTP threads), with bounded concurrency.
    pub guests: GuestPool,
    /// The HTTP clients of connectors' outbound requests (address checks at connect time).
    pub outbound: OutboundClients,
    /// Outbound response bytes held per integration.
    pub in_flight: InFlight,
    /// `config.runtime.limits`, shared with every call.
    pub limits: Arc<SandboxLimits>,
}

/// The parts of [`App`] that only the sandbox uses, built from the config.
pub struct Sandbox {
    pub guests: GuestPool,
    pub outbound: OutboundClients,
    pub in_flight: InFlight,
    pub limits: Arc<SandboxLimits>,
}

impl Sandbox {
    pub fn new(config: &Config) -> anyhow::Result<Sandbox> {
        let limits = config.runtime.limits.clone();
        Ok(Sandbox {
            guests: GuestPool::new(&limits)?,
            outbound: OutboundClients::new()?,
            in_flight: InFlight::default(),
            limits: Arc::new(limits),
        })
    }
}

impl App {
    /// The integration `id`, if configured.
    pub fn integration(&self, id: &str) -> Option<Arc<Integration>> {
        self.integrations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Every integration, by id.
    pub fn integrations(&self) -> Vec<Arc<Integration>> {
        self.integrations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Creates or replaces an integration: stored first (so it survives a restart), then served.
    pub fn put_integration(
        &self,
        config: IntegrationConfig,
    ) -> Result<Arc<Integration>, crate::config::forms::SaveError> {
        let json = crate::config::forms::to_storage(&config)?;
        let mut map = self.integrations.write().unwrap_or_else(|e| e.into_inner());
        self.store.put_integration(&config.id, Some(&json))?;
        let integration = Arc::new(Integration::new(config, &self.http, &self.lever_oauth));
        // A fresh adapter: its ATS account may have changed (no stale caches).
        map.insert(integration.config.id.clone(), integration.clone());
        drop(map);
        // A changed integration (a new key, a raised quota) may be what its waiting events need.
        self.resume_waiting(Some(&integration.config.id), "the integration changed");
        Ok(integration)
    }

    /// Deletes an integration (a tombstone keeps a config-file entry from coming back) and
    /// revokes its Gem API keys, so a later integration with the same id does not inherit them.
    pub fn delete_integration(&self, id: &str) -> Result<bool, crate::store::StoreError> {
        let mut map = self.integrations.write().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(id) {
            return Ok(false);
        }
        self.store.put_integration(id, None)?;
        crate::ats::gem::keys::revoke_all(&self.store, id)?;
        // A later integration with the same id must not inherit the grant.
        self.store.oauth_forget(id)?;
        map.remove(id);
        Ok(true)
    }

    /// The connector version serving `integration` now.
    pub fn connector(&self, integration: &Integration) -> Result<Arc<LoadedConnector>, NotLoaded> {
        let id = &integration.config.connector;
        self.registry.get(id).ok_or_else(|| {
            NotLoaded(
                self.registry
                    .not_ready(id)
                    .unwrap_or_else(|| format!("connector `{id}` is not loaded")),
            )
        })
    }

    /// What an ATS adapter's calls for `integration` may use of the host.
    pub fn ats_cx<'a>(&'a self, integration: &'a Integration) -> AtsCx<'a> {
        AtsCx {
            integration: &integration.config.id,
            enabled: integration.config.enabled,
            store: &self.store,
            timeline: &self.timeline,
            wake: &self.wake,
        }
    }

    /// The sandbox context for calls to `connector` on behalf of `integration`. Entries of the
    /// integration's `allowed_hosts` that the operator no longer approves (a stored integration
    /// after a connector change) are left out.
    pub fn call_context(
        &self,
        integration: &Integration,
        connector: &LoadedConnector,
    ) -> Arc<CallContext> {
        let mut config = integration.config.clone();
        let approved = &self.config.runtime.approved_hosts;
        let manifest = &connector.manifest.outbound_hosts;
        if let Some(hosts) = &mut config.allowed_hosts {
            hosts.retain(|h| {
                crate::wasm::policy::check_allowed(
                    std::slice::from_ref(h),
                    approved,
                    manifest,
                    config.allow_loopback,
                )
                .is_ok()
            });
        }
        let ctx = CallContext::for_integration(
            &config,
            &connector.manifest.id,
            manifest,
            self.callback_url(&integration.config.id),
            self.store.clone(),
            self.http.clone(),
            Duration::from_millis(self.config.runtime.http_timeout_ms),
            self.timeline.clone(),
        )
        .with_sandbox(
            self.limits_of(&integration.config),
            self.metrics.clone(),
            self.outbound.for_policy(config.allow_loopback),
            self.in_flight.of(&integration.config.id),
        );
        Arc::new(ctx)
    }

    /// Resumes waiting events that a change may have unblocked: those waiting for a permission
    /// or for state quota (of one integration, or all). A store error is logged: the periodic
    /// re-check resumes them anyway.
    pub fn resume_waiting(&self, integration: Option<&str>, why: &str) {
        let mut resumed = 0;
        for what in [WaitFor::Permission, WaitFor::Quota] {
            match self.store.resume_waiting(integration, Some(what)) {
                Ok(n) => resumed += n,
                Err(e) => tracing::error!(error = %e, "cannot resume waiting events"),
            }
        }
        if resumed > 0 {
            tracing::info!(
                integration = integration.unwrap_or("all"),
                events = resumed,
                "waiting events resumed: {why}"
            );
            self.wake.notify_waiters();
        }
    }

    /// The sandbox limits of an integration's calls: the host's, with its own state quota.
    pub fn limits_of(&self, config: &IntegrationConfig) -> Arc<SandboxLimits> {
        match config.state_total_bytes {
            Some(quota) => Arc::new(SandboxLimits {
                state_total_bytes: usize::try_from(quota).unwrap_or(usize::MAX),
                ..(*self.limits).clone()
            }),
            None => self.limits.clone(),
        }
    }

    /// What `config`'s connector offers with this very configuration (its `list-packages`), or
    /// `None` when the connector is not loaded. Asked before changed packages or rules are saved
    /// and at start-up, so packages the connector refuses never reach a candidate.
    pub async fn offered_packages(
        &self,
        config: &IntegrationConfig,
    ) -> Option<Result<Vec<(String, bool)>, CallError>> {
        let connector = self.registry.get(&config.connector)?;
        let candidate = Integration::new(config.clone(), &self.http, &self.lever_oauth);
        let ctx = self.call_context(&candidate, &connector);
        Some(connector.list_packages(self.registry.runtime(), ctx).await)
    }

    /// Whether `config.allowed_hosts` are approved: in `runtime.approved_hosts` or the serving
    /// connector manifest's `outbound-hosts` (only the former when the connector is not loaded).
    pub fn check_hosts(&self, config: &IntegrationConfig) -> Result<(), String> {
        let manifest = self
            .registry
            .get(&config.connector)
            .map(|c| c.manifest.outbound_hosts.clone())
            .unwrap_or_default();
        crate::wasm::policy::check_allowed(
            config.allowed_hosts.as_deref().unwrap_or_default(),
            &self.config.runtime.approved_hosts,
            &manifest,
            config.allow_loopback,
        )
    }

    /// Runs a connector call for `integration` on the guest pool (see [`crate::wasm::pool`]);
    /// no free slot in time → a transient error (the event is retried, a callback gets 503).
    pub async fn guest_call<R, F>(&self, integration: &str, call: F) -> Result<R, CallError>
    where
        F: std::future::Future<Output = Result<R, CallError>> + Send + 'static,
        R: Send + 'static,
    {
        match self.guests.run(integration, call).await {
            Ok(result) => result,
            Err(busy) => Err(CallError::Transient(format!("{busy}, retry later"))),
        }
    }

    /// Where the ATS sends this integration's webhooks (the seeds' "webhook URL"), for an ATS
    /// that sends webhooks.
    pub fn lever_webhook_url(&self, integration: &str) -> String {
        crate::ats::section::hook_url(&self.public_url, integration, "lever")
    }

    /// The base of this integration's Gem API (`/packages`, `/screenings`), for a Gem integration.
    pub fn gem_api_url(&self, integration: &str) -> String {
        crate::ats::gem::config::api_url(&self.public_url, integration)
    }

    /// Where the vendor sends this integration's status callbacks.
    pub fn callback_url(&self, integration: &str) -> String {
        crate::ats::section::hook_url(&self.public_url, integration, "vendor")
    }
}
