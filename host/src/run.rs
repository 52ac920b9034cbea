//! Composition: opens the store, loads connectors, builds the shared [`App`] and runs the HTTP
//! server, the workers, the retention pass, the poll that keeps this host in step with the others
//! on its database ([`crate::shared`]) and (with `--watch`) the connectors-directory watcher as
//! tasks around it.
//! Nothing else starts tasks of the host; nothing imports this module but the binary and tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::app::{App, Integration};
use crate::ats::lever::oauth::LeverOAuth;
use crate::config::{Config, ConfigError, StorageConfig};
use crate::flow::heartbeat::{self, Run};
use crate::flow::threads::WorkThreads;
use crate::flow::worker::Signals;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::Store;
use crate::timeline::Timeline;
use crate::wasm::cache::CodeCache;
use crate::wasm::registry::Registry;
use crate::wasm::runtime::Runtime;
use crate::wasm::types::CallError;

/// The config-file integrations whose `allowed_hosts` are not approved
/// (`runtime.approved_hosts` plus the serving connector manifest's `outbound-hosts`).
fn outbound_problems(config: &Config, registry: &Registry) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    for i in &config.integrations {
        let manifest = registry
            .get(&i.connector)
            .map(|c| c.manifest.outbound_hosts.clone())
            .unwrap_or_default();
        let found = crate::wasm::policy::allowed_problems(
            i.allowed_hosts.as_deref().unwrap_or_default(),
            &config.runtime.approved_hosts,
            &manifest,
            i.allow_loopback,
        );
        problems.extend(found.into_iter().map(|problem| ConfigError::Integration {
            integration: i.id.clone(),
            problem,
        }));
    }
    problems
}

/// What start-up would refuse once the connectors are loaded, for a config whose own checks
/// failed (`serve` reports both together): the outbound hosts of each integration against the
/// connectors of `runtime.connectors_dir` and, when the SQLite database exists, the versions
/// stored in it.
/// Opens the database only if it exists; starts nothing.
pub async fn connector_problems(config: &Config) -> Vec<ConfigError> {
    let cache = CodeCache::new(crate::wasm::deploy::data_dir(config).join("cache"));
    let runtime = match Runtime::from_config(&config.runtime, Some(cache), Default::default()) {
        Ok(runtime) => runtime,
        Err(e) => return vec![ConfigError::Runtime(format!("{e:#}"))],
    };
    let registry = Registry::new(runtime).with_limits(config.runtime.limits.clone());
    if config.runtime.connectors_dir.exists() {
        if let Err(e) = registry.load_dir(&config.runtime.connectors_dir).await {
            return vec![ConfigError::Runtime(format!(
                "runtime.connectors_dir: {e:#}"
            ))];
        }
    }
    if config.storage.path.exists() {
        if let Ok(store) = Store::open(&config.storage.path) {
            // Reads only: the import of files kept by an older version waits for `serve`.
            if let Err(e) = crate::wasm::deploy::catch_up(&registry, &store).await {
                tracing::warn!(error = %e, "cannot read the stored connector versions");
            }
        }
    }
    outbound_problems(config, &registry)
}

/// A running host: its address and a way to stop it.
pub struct RunningHost {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    run: Option<Run>,
    stop_workers: watch::Sender<bool>,
    abandon: watch::Sender<bool>,
    stop_heartbeat: watch::Sender<bool>,
    stop_http: watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    /// Where the workers run; shut down once they have stopped (or with the host, if dropped).
    work_threads: Option<WorkThreads>,
    heartbeat: tokio::task::JoinHandle<()>,
    http: tokio::task::JoinHandle<()>,
}

impl RunningHost {
    /// Stops gracefully within `worker.shutdown_grace_secs` (see [`RunningHost::shutdown_within`]).
    pub async fn shutdown(self) {
        let grace = Duration::from_secs(self.app.config.worker.shutdown_grace_secs);
        self.shutdown_within(grace).await;
    }

    /// Stops gracefully: requests get 503 + `Retry-After` at once; workers claim nothing more
    /// and get `grace` to finish their events, then what still runs is handed back to the queue
    /// uncounted; the run ends (nothing left leased) and the server stops.
    pub async fn shutdown_within(mut self, grace: Duration) {
        self.app.draining.store(true, Ordering::SeqCst);
        let _ = self.stop_workers.send(true);
        self.app.wake.notify_waiters();
        let deadline = tokio::time::Instant::now() + grace;
        let mut workers = std::mem::take(&mut self.workers).into_iter();
        let mut late = Vec::new();
        for task in workers.by_ref() {
            let mut task = task;
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                late.push(task);
                break;
            }
        }
        late.extend(workers);
        if !late.is_empty() {
            tracing::warn!(
                grace_secs = grace.as_secs_f64(),
                "grace period over: handing back events still running"
            );
            let _ = self.abandon.send(true);
            for task in late {
                let _ = task.await;
            }
        }
        // Every worker has returned: nothing of ours is left on their threads.
        drop(self.work_threads.take());
        let _ = self.stop_heartbeat.send(true);
        let _ = (&mut self.heartbeat).await;
        if let Some(run) = self.run.take() {
            crate::flow::heartbeat::end(&self.app, run);
        }
        let _ = self.stop_http.send(true);
        let _ = (&mut self.http).await;
        tracing::info!("stopped");
    }
}

/// Opens the configured store: SQLite at `storage.path`, or PostgreSQL at `storage.url`
/// (connected and migrated, or a clear error naming the URL without its password). A
/// PostgreSQL store is refused while part of the store does not run on it yet
/// ([`crate::store::NOT_ON_POSTGRES`]).
pub fn open_store(storage: &StorageConfig) -> anyhow::Result<Store> {
    let Some(url) = &storage.url else {
        return Ok(Store::open(&storage.path)?);
    };
    let store = Store::open_postgres(url, storage.password.as_ref().map(Secret::expose))?;
    let missing = store.missing();
    anyhow::ensure!(
        missing.is_empty(),
        "storage.url: the PostgreSQL backend is not complete in this version: {} still runs on \
         SQLite only. Use storage.path (SQLite) for now; {url} was migrated to schema version {} \
         and is otherwise untouched",
        missing.join(", "),
        store.schema_version()?
    );
    Ok(store)
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
    let store = open_store(&config.storage)?;
    // Leases and the lead are compared across hosts: refuse a clock a lease away.
    let skew = crate::flow::skew::at_start(&store, config.worker.lease_secs, crate::clock::now_ms)?;
    // Read before anything shared is loaded: a change made meanwhile is reloaded by the poll.
    let mut revisions = store.revisions()?;
    let lock_dir = heartbeat::lock_dir(&config);
    let run = heartbeat::begin(&store, &lock_dir)?;
    let cache = CodeCache::new(crate::wasm::deploy::data_dir(&config).join("cache"));
    // Created here and handed to whoever counts: the runtime, the OAuth app, the app's routes.
    let metrics = Arc::new(Metrics::default());
    let runtime = Runtime::from_config(&config.runtime, Some(cache), metrics.clone())?;
    let registry = Arc::new(Registry::new(runtime).with_limits(config.runtime.limits.clone()));
    if config.runtime.connectors_dir.exists() {
        registry.load_dir(&config.runtime.connectors_dir).await?;
    } else {
        tracing::warn!(dir = %config.runtime.connectors_dir.display(), "connectors dir does not exist");
    }
    if !crate::wasm::deploy::restore(&registry, &store, &config).await {
        // Not caught up: a revision the database never holds makes the sync task try again
        // (else it would wait for the next change made through another host).
        revisions.connectors = -1;
    }
    // Refused together with the packages' problems below: one start names them all.
    let mut problems = outbound_problems(&config, &registry);
    log_adjusted_limits(&config);
    let sandbox = crate::app::Sandbox::new(&config)?;
    let addr = listener.local_addr()?;
    // No redirects: a redirect could lead a connector's request to an unapproved host.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let public_url = config.public_url(addr);
    let lever_oauth = Arc::new(LeverOAuth::new(
        config.lever_oauth.as_ref(),
        &public_url,
        store.clone(),
        http.clone(),
        metrics.clone(),
    )?);
    let integrations = crate::app::merged_integrations(&config.integrations, &store)?
        .into_iter()
        .map(|c| {
            let integration = Integration::new(c, &http, &lever_oauth);
            (integration.config.id.clone(), Arc::new(integration))
        })
        .collect();
    let wake = store.queued();
    // SQLite is one process per file: this host is the only one writing to the ATS for it.
    let only_writer = store.dialect() == crate::store::Dialect::Sqlite;
    let app = Arc::new(App {
        public_url,
        lever_oauth,
        ats_written: crate::ats::written::Written::new(only_writer),
        config,
        store,
        registry,
        http,
        metrics,
        timeline: Timeline::default(),
        wake,
        run_id: run.id.clone(),
        draining: AtomicBool::new(false),
        leader: AtomicBool::new(false),
        integrations: RwLock::new(integrations),
        edits: Default::default(),
        guests: sandbox.guests,
        outbound: sandbox.outbound,
        in_flight: sandbox.in_flight,
        limits: sandbox.limits,
    });
    problems.extend(package_problems(&app).await);
    if let Some(refused) = ConfigError::all(problems) {
        return Err(refused.into());
    }
    for integration in app
        .integrations
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
    {
        let id = &integration.config.id;
        // Never "ready" for an integration whose connector did not load: its webhooks get 503
        // (with Retry-After) until a valid version is uploaded or activated.
        if let Some(reason) = app.registry.not_ready(&integration.config.connector) {
            tracing::error!(integration = %id, connector = %integration.config.connector,
                %reason, "integration NOT ready: its connector did not load; webhooks get 503 until it does");
            continue;
        }
        let endpoints = integration.ats.endpoints(&app.public_url, id);
        tracing::info!(integration = %id, ats = integration.ats.kind(),
            endpoints = ?endpoints,
            vendor_callback_url = %app.callback_url(id),
            "integration ready: give the ATS its endpoint, the vendor its callback URL");
    }
    if let Some(redirect) = app.lever_oauth.redirect_uri() {
        tracing::info!(redirect_uri = %redirect, "Lever OAuth app configured: register this redirect URI with Lever");
    }
    // Take back at once what a previous run of this host (or any dead host) held.
    let lease_ms = app.config.worker.lease_secs.max(1) as i64 * 1000;
    let resumed = heartbeat::reap(&app, &run.id, lease_ms, &lock_dir);
    heartbeat::lead(&app, &run.id, lease_ms);
    if let Some(skew_ms) = skew {
        app.metrics.clock_skew(skew_ms, false);
    }
    crate::flow::skew::observe(&app);
    tracing::info!(run = %run.id, resumed, "run started");
    // A new config (a raised quota, a fixed key) may be what waiting events need.
    app.resume_waiting(None, "the host started");
    let (stop_workers, workers_stopped) = watch::channel(false);
    let (abandon, abandoned) = watch::channel(false);
    let (stop_heartbeat, heartbeat_stopped) = watch::channel(false);
    let (stop_http, http_stopped) = watch::channel(false);
    let work_threads = WorkThreads::new(&app.config.worker)?;
    let mut workers = crate::flow::worker::spawn(
        app.clone(),
        run.id.clone(),
        Signals {
            stop: workers_stopped.clone(),
            abandon: abandoned,
        },
        work_threads.handle(),
    );
    if app.config.runtime.watch {
        workers.push(crate::wasm::watch::spawn(
            app.clone(),
            workers_stopped.clone(),
        ));
    }
    // Stopped with the workers: a pass cut short loses nothing (each batch commits whole).
    workers.push(crate::retention::spawn(
        app.clone(),
        workers_stopped.clone(),
    ));
    // PostgreSQL: other hosts' intake wakes this host's workers (the idle poll stays the
    // fallback); off with `storage.poll_only` (a pooler in transaction mode).
    if !app.config.storage.poll_only {
        if let Some(wakes) = app.store.listen() {
            workers.push(crate::flow::worker::wake_on_notify(
                app.clone(),
                wakes,
                workers_stopped.clone(),
            ));
        }
    }
    workers.push(crate::replay::spawn(app.clone(), workers_stopped.clone()));
    workers.push(crate::shared::spawn(
        app.clone(),
        revisions,
        workers_stopped,
    ));
    let heartbeat = heartbeat::spawn(app.clone(), run.id.clone(), lock_dir, heartbeat_stopped);
    let http = crate::http::spawn(app.clone(), listener, http_stopped);
    Ok(RunningHost {
        addr,
        app,
        run: Some(run),
        stop_workers,
        abandon,
        stop_heartbeat,
        stop_http,
        workers,
        work_threads: Some(work_threads),
        heartbeat,
        http,
    })
}

/// Asks each integration's connector for its packages before any event runs: a config-file
/// integration whose packages the connector refuses (a Certn package without a service) stops the
/// start with the reason, as an unapproved host does; a stored one (checked when it was saved,
/// refused since by a new connector version) is logged and its events fail with the same reason.
async fn package_problems(app: &App) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    // A set, not a scan of the file's list per integration: 10,000 integrations start in seconds.
    let in_file: std::collections::HashSet<&str> = app
        .config
        .integrations
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    for integration in app.integrations() {
        let config = &integration.config;
        if config.packages.is_empty() {
            continue;
        }
        let Some(Err(e)) = app.offered_packages(config).await else {
            continue;
        };
        let in_file = in_file.contains(config.id.as_str());
        match e {
            CallError::Config(reason) if in_file => problems.push(ConfigError::Integration {
                integration: config.id.clone(),
                problem: format!("the connector refuses its packages: {reason}"),
            }),
            e => {
                tracing::error!(integration = %config.id, connector = %config.connector, error = %e,
                "the connector cannot list this integration's packages; its screenings will fail until they are fixed")
            }
        }
    }
    problems
}

/// Warns where the host applies a limit other than the configured one, so that one integration
/// can never hold every worker, guest slot or guest thread (see
/// [`WorkerConfig::effective_integration_concurrency`](crate::config::WorkerConfig::effective_integration_concurrency)
/// and [`SandboxLimits`](crate::config::limits::SandboxLimits)).
fn log_adjusted_limits(config: &Config) {
    let (w, l) = (&config.worker, &config.runtime.limits);
    let adjusted = [
        (
            "worker.integration_concurrency",
            w.integration_concurrency,
            w.effective_integration_concurrency(),
            "at most worker.concurrency - 1: one integration never holds every worker",
        ),
        (
            "runtime.limits.max_calls_per_integration",
            l.max_calls_per_integration,
            l.effective_calls_per_integration(),
            "at most max_concurrent_calls - 1: one integration never takes every guest slot",
        ),
        (
            "runtime.limits.guest_threads",
            l.guest_threads,
            l.effective_guest_threads(),
            "one more than the calls of one integration: a neighbour's call always finds a thread",
        ),
    ];
    for (setting, configured, effective, why) in adjusted {
        if configured != effective {
            tracing::warn!(setting, configured, effective, "{setting} adjusted: {why}");
        }
    }
}
