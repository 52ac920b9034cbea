//! The shared state of a running host — configuration, store, connector registry and
//! integrations — used by the HTTP handlers, the workers and the watcher. A plain value: it starts
//! nothing and imports none of them; [`crate::run`] composes them around it.
//!
//! Integrations live in the database for every host on it: an admin edit reads the stored row
//! and writes over the revision it read ([`App::save_integration`]), and each host reloads what
//! another changed ([`App::reload_integrations`], polled by [`crate::shared`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::ats::lever::oauth::LeverOAuth;
use crate::ats::{Ats, AtsCx};
use crate::config::forms::SaveError;
use crate::config::limits::SandboxLimits;
use crate::config::{AtsConfig, Config, GemConfig, IntegrationConfig};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, WaitFor};
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
    /// This host's writes to ATS records, shared by every integration's adapter (one rebuilt
    /// by an edit included): see [`crate::ats::written`].
    pub ats_written: crate::ats::written::Written,
    /// Wakes idle workers when an event is queued: the store's [`Store::queued`], which the
    /// group commit signals once per batch of new webhooks; other paths that queue or release
    /// events signal it themselves.
    pub wake: Arc<Notify>,
    /// This process's run: the holder named in the leases it takes (see `store::runs`).
    pub run_id: String,
    /// Set when the host is stopping: requests get 503 with `Retry-After`.
    pub draining: std::sync::atomic::AtomicBool,
    /// Whether this host leads housekeeping (`store::leader`), renewed by the heartbeat:
    /// retention passes and the replay-job runner act only while it is set.
    pub leader: std::sync::atomic::AtomicBool,
    pub(crate) integrations: RwLock<BTreeMap<String, Arc<Integration>>>,
    /// Integration edits made through this host, counted under the integrations' write lock:
    /// a reload whose database read may predate one of them must not swap (see
    /// [`App::reload_integrations`]).
    pub(crate) edits: AtomicU64,
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
            // One idle connection per call that can run at once, so none is reopened.
            outbound: OutboundClients::sized(
                config.worker.concurrency.max(limits.max_concurrent_calls),
            )?,
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

    /// Creates or replaces an integration whatever is stored now: stored first (so it survives a
    /// restart and reaches every host), then served. Admin edits use [`App::save_integration`].
    pub fn put_integration(
        &self,
        config: IntegrationConfig,
    ) -> Result<Arc<Integration>, SaveError> {
        let json = crate::config::forms::to_storage(&config)?;
        let mut map = self.integrations.write().unwrap_or_else(|e| e.into_inner());
        self.store.put_integration(&config.id, Some(&json))?;
        Ok(self.serve_changed(&mut map, config))
    }

    /// Integration `id` as an edit reads it, from the database (not this host's copy, which may
    /// lag another host's edit by `storage.sync_ms`): the stored row, else the config file's
    /// entry; None when it does not exist (or was deleted). With it, the edit revision to write
    /// over (None: no row stored yet).
    pub fn read_integration(
        &self,
        id: &str,
    ) -> Result<(Option<IntegrationConfig>, Option<i64>), SaveError> {
        match self.store.integration_row(id)? {
            Some(row) => {
                let config = row
                    .config
                    .as_deref()
                    .map(crate::config::forms::from_storage)
                    .transpose()?;
                Ok((config, Some(row.revision)))
            }
            None => Ok((
                self.config
                    .integrations
                    .iter()
                    .find(|c| c.id == id)
                    .cloned(),
                None,
            )),
        }
    }

    /// Stores `config` only if its row is still at the edit revision `read` (see
    /// [`App::read_integration`]), then serves it. `Ok(None)`: another edit (on any host) came
    /// first and nothing was written; read again and re-apply.
    pub fn save_integration(
        &self,
        config: IntegrationConfig,
        read: Option<i64>,
    ) -> Result<Option<Arc<Integration>>, SaveError> {
        let json = crate::config::forms::to_storage(&config)?;
        let mut map = self.integrations.write().unwrap_or_else(|e| e.into_inner());
        if !self
            .store
            .put_integration_at(&config.id, Some(&json), read)?
        {
            return Ok(None);
        }
        Ok(Some(self.serve_changed(&mut map, config)))
    }

    /// Serves a changed integration with a fresh adapter (its ATS account may have changed: no
    /// stale caches), and resumes what the change may unblock.
    fn serve_changed(
        &self,
        map: &mut BTreeMap<String, Arc<Integration>>,
        config: IntegrationConfig,
    ) -> Arc<Integration> {
        let integration = Arc::new(Integration::new(config, &self.http, &self.lever_oauth));
        map.insert(integration.config.id.clone(), integration.clone());
        self.edits.fetch_add(1, Ordering::SeqCst);
        // A changed integration (a new key, a raised quota) may be what its waiting events need.
        self.resume_waiting(Some(&integration.config.id), "the integration changed");
        integration
    }

    /// Deletes an integration (a tombstone keeps a config-file entry from coming back, on every
    /// host) and revokes its Gem API keys, so a later integration with the same id does not
    /// inherit them. False when it does not exist.
    pub fn delete_integration(&self, id: &str) -> Result<bool, SaveError> {
        loop {
            let (current, read) = self.read_integration(id)?;
            if current.is_none() {
                return Ok(false);
            }
            let mut map = self.integrations.write().unwrap_or_else(|e| e.into_inner());
            // Lost to a concurrent edit: read again (it may have deleted it already).
            if !self.store.delete_integration_at(id, read)? {
                continue;
            }
            map.remove(id);
            self.edits.fetch_add(1, Ordering::SeqCst);
            return Ok(true);
        }
    }

    /// Serves the integrations as the database has them now (what another host changed): a
    /// changed one gets a fresh adapter, an unchanged one keeps its own (and its caches), a
    /// deleted one goes. The database is read on a blocking thread with no lock held; the
    /// integrations' lock is taken only to swap. Returns how many changed, or None when an edit
    /// made through this host landed meanwhile (the read may predate it and would undo it:
    /// nothing is swapped, and the caller tries again later).
    pub async fn reload_integrations(&self) -> Result<Option<usize>, StoreError> {
        let edits = self.edits.load(Ordering::SeqCst);
        let (file, store) = (self.config.integrations.clone(), self.store.clone());
        let wanted = tokio::task::spawn_blocking(move || merged_integrations(&file, &store))
            .await
            .map_err(|e| {
                StoreError::Io(std::io::Error::other(format!(
                    "the integrations read was lost: {e}"
                )))
            })??;
        let mut map = self.integrations.write().unwrap_or_else(|e| e.into_inner());
        if self.edits.load(Ordering::SeqCst) != edits {
            return Ok(None);
        }
        let storage = |c: &IntegrationConfig| crate::config::forms::to_storage(c).ok();
        let mut changed = 0;
        let keep: std::collections::HashSet<String> = wanted.iter().map(|c| c.id.clone()).collect();
        map.retain(|id, _| {
            let kept = keep.contains(id);
            if !kept {
                tracing::info!(integration = %id, "integration deleted through another host");
                changed += 1;
            }
            kept
        });
        for config in wanted {
            let same = map
                .get(&config.id)
                .is_some_and(|i| storage(&i.config) == storage(&config));
            if !same {
                tracing::info!(integration = %config.id, "integration changed through another host");
                let integration = Integration::new(config, &self.http, &self.lever_oauth);
                map.insert(integration.config.id.clone(), Arc::new(integration));
                changed += 1;
            }
        }
        Ok(Some(changed))
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
            written: &self.ats_written,
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
        Arc::new(self.sandbox_context(integration, connector))
    }

    /// [`App::call_context`] before it is shared, for a caller that replaces a part of it (the
    /// flow's `state` of a `start-screening` call).
    pub fn sandbox_context(
        &self,
        integration: &Integration,
        connector: &LoadedConnector,
    ) -> CallContext {
        let config = &integration.config;
        CallContext::for_integration(
            config,
            &connector.manifest.id,
            &connector.manifest.outbound_hosts,
            &self.config.runtime.approved_hosts,
            self.callback_url(&config.id),
            self.store.clone(),
            self.http.clone(),
            Duration::from_millis(self.config.runtime.http_timeout_ms),
            self.timeline.clone(),
        )
        .with_sandbox(
            self.limits_of(config),
            self.metrics.clone(),
            self.outbound.for_policy(config.allow_loopback),
            self.in_flight.of(&config.id),
        )
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
        self.guests
            .run(integration, call)
            .await
            .unwrap_or_else(|busy| Err(busy_error(&busy)))
    }

    /// [`App::guest_call`] for a worker: on the worker's own task (its runtime is apart from
    /// the threads that serve HTTP), within the same slots ([`GuestPool::run_here`]).
    pub async fn worker_guest_call<R, F>(&self, integration: &str, call: F) -> Result<R, CallError>
    where
        F: std::future::Future<Output = Result<R, CallError>>,
    {
        self.guests
            .run_here(integration, call)
            .await
            .unwrap_or_else(|busy| Err(busy_error(&busy)))
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

/// The config file's integrations overlaid with the stored ones: a stored row wins, a stored
/// tombstone removes (see [`crate::config::forms`]).
pub(crate) fn merged_integrations(
    file: &[IntegrationConfig],
    store: &Store,
) -> Result<Vec<IntegrationConfig>, StoreError> {
    let mut all: BTreeMap<String, IntegrationConfig> =
        file.iter().map(|c| (c.id.clone(), c.clone())).collect();
    for (id, json) in store.stored_integrations()? {
        match json {
            None => {
                all.remove(&id);
            }
            Some(json) => match crate::config::forms::from_storage(&json) {
                Ok(c) => {
                    all.insert(id, c);
                }
                // Never print the row: it holds secrets.
                Err(e) => {
                    tracing::error!(integration = %id, error = %e, "stored integration is unreadable; skipped")
                }
            },
        }
    }
    Ok(all.into_values().collect())
}

/// A call that found no guest slot in time: retried later.
fn busy_error(busy: &crate::wasm::pool::Busy) -> CallError {
    CallError::Transient(format!("{busy}, retry later"))
}
