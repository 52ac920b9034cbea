//! Deploying connector versions on a live host: validate, keep, activate, roll back, remove, and
//! prune the versions beyond the newest few.
//!
//! Validation before activation: the bytes must be a component of a compatible contract version
//! (checked by [`Runtime::compile`](crate::wasm::runtime::Runtime::compile)), its `manifest` call must
//! work and name the connector it replaces, and it may ask only for outbound hosts the operator
//! approved (`runtime.approved_hosts`, plus the hosts of the version serving now). Compilation
//! runs on a blocking thread, never on the request path of webhooks. A rejected version changes
//! nothing.
//!
//! An uploaded component is stored once in the database (`connector_blobs`, by the SHA-256 of
//! its bytes), and the operator's choice of active/previous version too (`deployments`), so every
//! host on the database serves the same version and a restart serves it again. Each host catches
//! up with the database ([`catch_up`], polled by [`crate::shared`]): it compiles stored versions
//! it lacks into its own code cache and swaps its serving slot to the version a deployment names.
//!
//! The connectors dir is each host's own: its files are loaded at start-up and never stored. A
//! connector with a deployment serves the deployment's version on every host (the database wins
//! over the dir); one without serves the dir's file. A host that cannot load or serve a version
//! the database names logs it, shows it in `/admin/connectors` (`problems`) and keeps serving
//! what it served.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::Config;
use crate::store::admin::Deployment;
use crate::store::{Store, StoreError, WaitFor};
use crate::wasm::connector::LoadedConnector;
use crate::wasm::registry::{Registry, RegistryError, VersionStatus};
use crate::wasm::runtime::LoadError;

/// Why a deployment step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Not a usable component (not wasm, wrong world, incompatible contract, manifest failed).
    #[error("{0}")]
    Invalid(#[from] LoadError),
    #[error("the component is connector `{found}`, not `{expected}`")]
    WrongConnector { expected: String, found: String },
    #[error("the component asks for outbound hosts no operator approved: {0} (add them to runtime.approved_hosts)")]
    UnapprovedHosts(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot record the deployment: {0}")]
    Store(#[from] StoreError),
    #[error("cannot keep the component: {0}")]
    Io(#[from] std::io::Error),
}

/// The outcome of an upload.
pub struct Uploaded {
    pub version: Arc<LoadedConnector>,
    /// False when the same bytes were loaded already.
    pub new: bool,
    pub activated: bool,
}

/// The directory holding the database, the compiled-code cache and uploaded components.
pub fn data_dir(config: &Config) -> PathBuf {
    match config.storage.path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Where versions uploaded before they were stored in the database were kept (imported and
/// removed at start-up by [`restore`]).
fn uploads_dir(config: &Config) -> PathBuf {
    data_dir(config).join("connectors")
}

/// Validates `bytes` as a new version of connector `expected` (any connector when None), keeps
/// it, and activates it when `activate` is set.
pub async fn upload(
    registry: &Registry,
    store: &Store,
    config: &Config,
    expected: Option<&str>,
    bytes: Vec<u8>,
    source: &str,
    activate: bool,
) -> Result<Uploaded, DeployError> {
    let loaded = registry.load(bytes.clone(), source).await?;
    let id = loaded.manifest.id.clone();
    if let Some(expected) = expected.filter(|e| *e != id) {
        return Err(DeployError::WrongConnector {
            expected: expected.to_string(),
            found: id,
        });
    }
    let mut approved: Vec<String> = config.runtime.approved_hosts.clone();
    if let Some(serving) = registry.get(&id) {
        approved.extend(serving.manifest.outbound_hosts.iter().cloned());
    }
    let unapproved = crate::wasm::policy::unapproved(&loaded.manifest.outbound_hosts, &approved);
    if !unapproved.is_empty() {
        return Err(DeployError::UnapprovedHosts(unapproved.join(", ")));
    }
    if source.starts_with("upload") {
        // Stored before it is added here, so whatever this host serves every host can load.
        store.put_component(&loaded.hash, &id, &bytes)?;
    }
    registry.clear_problem(&loaded.hash);
    let (version, new) = registry.add(loaded);
    if activate {
        self::activate(registry, store, &id, &version.hash)?;
    }
    Ok(Uploaded {
        version,
        new,
        activated: activate,
    })
}

/// Makes a loaded version serve, and remembers that.
pub fn activate(
    registry: &Registry,
    store: &Store,
    id: &str,
    hash: &str,
) -> Result<Arc<LoadedConnector>, DeployError> {
    let (next, old) = registry.activate(id, hash)?;
    remember(registry, store, id, &next)?;
    tracing::info!(connector = %next.version_tag(), replaced = ?old.map(|o| o.version_tag()), "connector version activated");
    Ok(next)
}

/// Serves the previous version again, and remembers that.
pub fn rollback(
    registry: &Registry,
    store: &Store,
    id: &str,
) -> Result<Arc<LoadedConnector>, DeployError> {
    // The database's rollback target when an operator chose versions (on any host), else this
    // host's own (a dir version replaced by the watcher before any deployment).
    let (next, old) = match store.deployment(id)? {
        Some(d) => {
            let previous = d
                .previous_hash
                .ok_or_else(|| RegistryError::NoPrevious(id.into()))?;
            registry.activate(id, &previous)?
        }
        None => registry.rollback(id)?,
    };
    remember(registry, store, id, &next)?;
    tracing::info!(connector = %next.version_tag(), replaced = ?old.map(|o| o.version_tag()), "connector rolled back");
    Ok(next)
}

/// Forgets a version that is not serving, and deletes its stored bytes (every host forgets it).
pub fn remove(
    registry: &Registry,
    store: &Store,
    id: &str,
    hash: &str,
) -> Result<Arc<LoadedConnector>, DeployError> {
    let removed = registry.remove(id, hash)?;
    if let Some(serving) = registry.get(id) {
        remember(registry, store, id, &serving)?;
    }
    // Refused by the store while a deployment (another host's choice) still names it.
    store.delete_component(&removed.hash)?;
    tracing::info!(connector = %removed.version_tag(), "connector version removed");
    Ok(removed)
}

/// Keeps the newest `keep` loaded versions of each connector (by load time) and removes the
/// others with their stored bytes, never the active version or the rollback target; then drops
/// the compiled-code cache entries of versions no longer loaded. Returns the tags removed.
pub fn prune(registry: &Registry, store: &Store, keep: usize) -> Result<Vec<String>, DeployError> {
    let mut removed = Vec::new();
    let mut loaded = std::collections::HashSet::new();
    for id in registry.connector_ids() {
        let mut versions = registry.versions(&id).unwrap_or_default();
        versions.sort_by_key(|v| v.loaded_at);
        let excess = versions.len().saturating_sub(keep);
        let (old, kept) = versions.split_at(excess);
        for v in old {
            if v.status == VersionStatus::Inactive {
                removed.push(remove(registry, store, &id, &v.hash)?.version_tag());
            } else {
                loaded.insert(v.hash.clone());
            }
        }
        loaded.extend(kept.iter().map(|v| v.hash.clone()));
    }
    let runtime = registry.runtime();
    if let Some(cache) = runtime.cache() {
        let entries = cache.prune(runtime.engine(), &loaded)?;
        if entries > 0 {
            tracing::info!(
                entries,
                "compiled-code cache entries of unloaded versions removed"
            );
        }
    }
    Ok(removed)
}

fn remember(
    registry: &Registry,
    store: &Store,
    id: &str,
    active: &LoadedConnector,
) -> Result<(), DeployError> {
    let previous = registry.versions(id).and_then(|vs| {
        vs.into_iter()
            .find(|v| v.status == VersionStatus::Previous)
            .map(|v| v.hash)
    });
    store.put_deployment(&Deployment {
        connector: id.to_string(),
        active_hash: active.hash.clone(),
        previous_hash: previous,
    })?;
    // Another version may keep less state: events waiting for room try again (those of other
    // connectors' integrations too; they wait again at once if nothing changed for them).
    let resumed = store.resume_waiting(None, Some(WaitFor::Quota))?;
    if resumed > 0 {
        tracing::info!(connector = %id, events = resumed, "events waiting for state quota resumed");
    }
    Ok(())
}

/// At start-up, after the connectors dir is loaded: imports the uploads an older switchyard
/// kept as files, then [`catch_up`] with the database. Problems are logged, never fatal, so a
/// host always comes up with what it can serve.
pub async fn restore(registry: &Registry, store: &Store, config: &Config) {
    let dir = uploads_dir(config);
    if dir.exists() {
        for path in crate::wasm::registry::wasm_files(&dir).unwrap_or_default() {
            import_kept(registry, store, &path).await;
        }
    }
    if let Err(e) = catch_up(registry, store).await {
        tracing::error!(error = %e, "cannot read the stored connector versions; serving the connectors dir");
    }
}

/// Source of a version loaded from the database (one uploaded here is `upload:…`).
const FROM_DATABASE: &str = "database:";

fn is_stored(source: &str) -> bool {
    source.starts_with("upload") || source.starts_with(FROM_DATABASE)
}

/// Brings this host's registry in line with the database: loads the stored versions it lacks
/// (compiled into its own code cache), serves the version each deployment names with its
/// rollback target, and forgets stored versions deleted through another host. A version that
/// cannot load or serve here is logged and recorded ([`Registry::problems`]); the host keeps
/// serving what it served, and does not try a version that failed to load again until restart.
pub async fn catch_up(registry: &Registry, store: &Store) -> Result<(), StoreError> {
    let loaded: HashSet<String> = registry.hashes();
    for c in store.components()? {
        if loaded.contains(&c.hash) || registry.has_problem(&c.hash) {
            continue;
        }
        // Deleted since the listing: nothing to load.
        let Some(bytes) = store.component_bytes(&c.hash)? else {
            continue;
        };
        let source = format!("{FROM_DATABASE}{}", c.uploaded_at);
        match registry.load(bytes, &source).await {
            Ok(mut version) => {
                // Its age is the upload's, as on every host (retention keeps the newest).
                version.loaded_at = UNIX_EPOCH + Duration::from_millis(c.uploaded_at.max(0) as u64);
                tracing::info!(connector = %version.version_tag(), "stored connector version loaded");
                registry.add(version);
            }
            Err(e) => {
                tracing::error!(connector = %c.connector, hash = %c.hash, error = %e,
                    "a stored connector version does not load on this host; it keeps serving its current version");
                registry.record_problem(
                    &c.connector,
                    &c.hash,
                    format!("does not load on this host: {e}"),
                );
            }
        }
    }
    let deployments = store.deployments()?;
    for d in &deployments {
        let serving = registry.get(&d.connector);
        if serving.as_ref().map(|v| v.hash.as_str()) != Some(d.active_hash.as_str()) {
            let serving = serving.map(|v| v.version_tag());
            match registry.activate(&d.connector, &d.active_hash) {
                Ok((v, _)) => {
                    registry.clear_problem(&d.active_hash);
                    tracing::info!(connector = %v.version_tag(), replaced = ?serving, "connector version serving as the database says")
                }
                Err(e) => {
                    tracing::error!(connector = %d.connector, hash = %d.active_hash, serving = ?serving, error = %e,
                        "the database names a version this host cannot serve; it keeps serving its current version");
                    if !registry.has_problem(&d.active_hash) {
                        registry.record_problem(
                            &d.connector,
                            &d.active_hash,
                            format!("active in the database, not served here: {e}"),
                        );
                    }
                }
            }
        }
        registry.set_previous(&d.connector, d.previous_hash.as_deref());
    }
    // What this host holds from the database, listed before the database is read again: a
    // version uploaded here meanwhile was stored before it was added, so it is never forgotten.
    let held: Vec<(String, String)> = registry
        .connector_ids()
        .into_iter()
        .flat_map(|id| {
            registry
                .versions(&id)
                .unwrap_or_default()
                .into_iter()
                .filter(|v| is_stored(&v.source) && v.status != VersionStatus::Active)
                .map(move |v| (id.clone(), v.hash))
        })
        .collect();
    let stored: HashSet<String> = store.components()?.into_iter().map(|c| c.hash).collect();
    for (id, hash) in held.into_iter().filter(|(_, h)| !stored.contains(h)) {
        if let Ok(v) = registry.remove(&id, &hash) {
            tracing::info!(connector = %v.version_tag(), "connector version removed through another host");
        }
    }
    registry.retain_problems(|hash| {
        stored.contains(hash) || deployments.iter().any(|d| d.active_hash == hash)
    });
    Ok(())
}

/// [`catch_up`] before a version operation (activate, roll back, remove), so a version uploaded
/// or chosen through another host a moment ago is known here. A failure is logged: the
/// operation then works on what this host holds.
pub async fn catch_up_first(registry: &Registry, store: &Store) {
    if let Err(e) = catch_up(registry, store).await {
        tracing::warn!(error = %e, "cannot catch up with the stored connector versions");
    }
}

/// Stores a component an older switchyard kept in the uploads dir, then removes the file.
async fn import_kept(registry: &Registry, store: &Store, path: &Path) {
    let result = match std::fs::read(path) {
        Ok(bytes) => match registry.load(bytes.clone(), "upload:kept").await {
            Ok(loaded) => store
                .put_component(&loaded.hash, &loaded.manifest.id, &bytes)
                .map(|_| loaded)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(loaded) => {
            tracing::info!(file = %path.display(), connector = %loaded.version_tag(), "kept connector upload stored in the database");
            registry.add(loaded);
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove an imported upload");
            }
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "kept connector upload not loaded")
        }
    }
}
