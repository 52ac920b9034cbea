//! The assembled host: configuration, store, connector registry and integrations, shared by the
//! HTTP handlers and the workers. `start` wires it all up and returns a handle to stop it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::cache::CodeCache;
use crate::config::{AtsConfig, Config, GemConfig, IntegrationConfig, LeverConfig};
use crate::connector::LoadedConnector;
use crate::flow::FlowError;
use crate::lever::LeverClient;
use crate::registry::Registry;
use crate::runtime::{CallContext, Runtime};
use crate::store::Store;
use crate::timeline::Timeline;

/// Lock stripes that serialize ATS writes per opportunity (within this process).
const STRIPES: usize = 64;

/// An integration and its ATS client.
pub struct Integration {
    pub config: IntegrationConfig,
    /// The Lever API client, for a Lever integration (Gem calls us instead; see `gem`).
    pub lever: Option<LeverClient>,
}

impl Integration {
    fn new(config: IntegrationConfig, http: &reqwest::Client) -> Integration {
        let lever = match &config.ats {
            // `IntegrationConfig::check` guarantees a credential.
            AtsConfig::Lever(l) => l
                .auth()
                .map(|auth| LeverClient::new(http.clone(), &l.api_base, auth)),
            AtsConfig::Gem(_) => None,
        };
        Integration { config, lever }
    }

    /// The Lever settings and client, for a Lever integration.
    pub fn lever(&self) -> Option<(&LeverConfig, &LeverClient)> {
        match (&self.config.ats, &self.lever) {
            (AtsConfig::Lever(l), Some(client)) => Some((l, client)),
            _ => None,
        }
    }

    /// The Gem settings, for a Gem integration.
    pub fn gem_config(&self) -> Option<&GemConfig> {
        match &self.config.ats {
            AtsConfig::Gem(g) => Some(g),
            AtsConfig::Lever(_) => None,
        }
    }
}

/// Shared state of a running host.
pub struct App {
    pub config: Config,
    pub public_url: String,
    pub store: Store,
    pub registry: Arc<Registry>,
    pub http: reqwest::Client,
    pub timeline: Timeline,
    /// Wakes idle workers when an event is queued.
    pub wake: Notify,
    integrations: RwLock<BTreeMap<String, Arc<Integration>>>,
    stages: Mutex<HashMap<String, Vec<(String, String)>>>,
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// Serializes the admin API's read-modify-write of integrations (no lost updates).
    pub integration_edits: tokio::sync::Mutex<()>,
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
    ) -> Result<Arc<Integration>, crate::integrations::SaveError> {
        let json = crate::integrations::to_storage(&config)?;
        let mut map = self.integrations.write().unwrap_or_else(|e| e.into_inner());
        self.store.put_integration(&config.id, Some(&json))?;
        let integration = Arc::new(Integration::new(config, &self.http));
        map.insert(integration.config.id.clone(), integration.clone());
        // Its Lever account may have changed: forget the cached stage names.
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&integration.config.id);
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
        crate::gem::keys::revoke_all(&self.store, id)?;
        map.remove(id);
        Ok(true)
    }

    /// The connector version serving `integration` now.
    pub fn connector(&self, integration: &Integration) -> Result<Arc<LoadedConnector>, FlowError> {
        self.registry
            .get(&integration.config.connector)
            .ok_or_else(|| {
                FlowError::retry(format!(
                    "connector `{}` is not loaded",
                    integration.config.connector
                ))
            })
    }

    /// The sandbox context for calls to `connector` on behalf of `integration`.
    pub fn call_context(
        &self,
        integration: &Integration,
        connector: &LoadedConnector,
    ) -> Arc<CallContext> {
        Arc::new(CallContext::for_integration(
            &integration.config,
            &connector.manifest.id,
            &connector.manifest.outbound_hosts,
            self.callback_url(&integration.config.id),
            self.store.clone(),
            self.http.clone(),
            Duration::from_millis(self.config.runtime.http_timeout_ms),
            self.timeline.clone(),
        ))
    }

    /// Where the ATS sends this integration's webhooks (the seeds' "webhook URL").
    pub fn lever_webhook_url(&self, integration: &str) -> String {
        format!("{}/hooks/{integration}/lever", self.public_url)
    }

    /// The base of this integration's Gem API (`/packages`, `/screenings`), for a Gem integration.
    pub fn gem_api_url(&self, integration: &str) -> String {
        format!("{}/gem/{integration}", self.public_url)
    }

    /// Where the vendor sends this integration's status callbacks.
    pub fn callback_url(&self, integration: &str) -> String {
        format!("{}/hooks/{integration}/vendor", self.public_url)
    }

    /// The name of Lever stage `stage_id`, from a per-integration cache refreshed on a miss.
    pub async fn stage_name(
        &self,
        integration: &Integration,
        stage_id: &str,
    ) -> Result<Option<String>, FlowError> {
        let id = &integration.config.id;
        let cached = |app: &App| {
            app.stages
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .and_then(|s| {
                    s.iter()
                        .find(|(sid, _)| sid == stage_id)
                        .map(|(_, n)| n.clone())
                })
        };
        if let Some(name) = cached(self) {
            return Ok(Some(name));
        }
        let Some((_, client)) = integration.lever() else {
            return Ok(None);
        };
        let stages = client.stages().await?;
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), stages);
        Ok(cached(self))
    }

    /// Serializes ATS writes to one opportunity.
    pub async fn lock_opportunity(
        &self,
        integration: &str,
        opportunity: &str,
    ) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (integration, opportunity).hash(&mut h);
        self.stripes[(h.finish() as usize) % STRIPES].lock().await
    }
}

/// The config file's integrations overlaid with the stored ones: a stored row wins, a stored
/// tombstone removes (see [`crate::integrations`]).
fn merged_integrations(config: &Config, store: &Store) -> anyhow::Result<Vec<IntegrationConfig>> {
    let mut all: BTreeMap<String, IntegrationConfig> = config
        .integrations
        .iter()
        .map(|c| (c.id.clone(), c.clone()))
        .collect();
    for (id, json) in store.stored_integrations()? {
        match json {
            None => {
                all.remove(&id);
            }
            Some(json) => match crate::integrations::from_storage(&json) {
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

/// A running host: its address and a way to stop it.
pub struct RunningHost {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningHost {
    /// Stops accepting requests, lets workers finish their current event, and waits.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.app.wake.notify_waiters();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds `server.listen`, then [`start_on`].
pub async fn start(config: Config) -> anyhow::Result<RunningHost> {
    let listener = tokio::net::TcpListener::bind(&config.server.listen).await?;
    start_on(config, listener).await
}

/// Opens the store, loads connectors and starts the workers and the server on `listener`.
pub async fn start_on(
    config: Config,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<RunningHost> {
    let store = Store::open(&config.storage.path)?;
    let cache = CodeCache::new(crate::deploy::data_dir(&config).join("cache"));
    let runtime = Runtime::with_cache(
        config.runtime.timeout_ms,
        config.runtime.memory_mb,
        Some(cache),
    )?;
    let registry = Arc::new(Registry::new(runtime));
    if config.runtime.connectors_dir.exists() {
        registry.load_dir(&config.runtime.connectors_dir).await?;
    } else {
        tracing::warn!(dir = %config.runtime.connectors_dir.display(), "connectors dir does not exist");
    }
    crate::deploy::restore(&registry, &store, &config).await;
    let addr = listener.local_addr()?;
    // No redirects: a redirect could lead a connector's request to an unapproved host.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let integrations = merged_integrations(&config, &store)?
        .into_iter()
        .map(|c| (c.id.clone(), Arc::new(Integration::new(c, &http))))
        .collect();
    let app = Arc::new(App {
        public_url: config.public_url(addr),
        config,
        store,
        registry,
        http,
        timeline: Timeline::default(),
        wake: Notify::new(),
        integrations: RwLock::new(integrations),
        stages: Mutex::new(HashMap::new()),
        stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        integration_edits: tokio::sync::Mutex::new(()),
    });
    for integration in app
        .integrations
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
    {
        let id = &integration.config.id;
        match &integration.config.ats {
            AtsConfig::Lever(_) => tracing::info!(integration = %id,
                webhook_url = %app.lever_webhook_url(id),
                vendor_callback_url = %app.callback_url(id),
                "integration ready: point the ATS webhook at webhook_url"),
            AtsConfig::Gem(_) => tracing::info!(integration = %id,
                gem_api_url = %app.gem_api_url(id),
                vendor_callback_url = %app.callback_url(id),
                "Gem integration ready: give Gem gem_api_url and a key from `switchyard gem issue-key`"),
        }
    }
    let (stop, stopped) = watch::channel(false);
    let mut tasks = crate::worker::spawn(app.clone(), stopped.clone());
    if app.config.runtime.watch {
        tasks.push(crate::watch::spawn(app.clone(), stopped.clone()));
    }
    tasks.push(crate::server::spawn(app.clone(), listener, stopped));
    Ok(RunningHost {
        addr,
        app,
        stop,
        tasks,
    })
}
