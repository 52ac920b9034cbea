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
//! the database names logs it, shows it in `/admin/connectors` (`problems`), keeps serving
//! what it served, and tries that version again later (after a wait that doubles).
//!
//! Every change of what a host serves (an upload that activates, activate, rollback, remove,
//! prune, catch-up) runs in the host's deploy turn ([`Registry::deploy_turn`], one async
//! mutex), and stores the deployment before it swaps the serving slot: a host never serves a
//! version the database does not name.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::Config;
use crate::store::admin::Deployment;
use crate::store::components::ComponentDelete;
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
    /// The database names the version as a connector's active version or rollback target
    /// (perhaps just chosen through another host).
    #[error("{0} is the active version or the rollback target in the database (perhaps chosen through another host): activate or roll back to another version first")]
    InUse(String),
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
        let _turn = registry.deploy_turn().await;
        switch_to(registry, store, &id, &version.hash)?;
    }
    Ok(Uploaded {
        version,
        new,
        activated: activate,
    })
}

/// Makes a loaded version serve on every host: catches up with the database, stores the
/// deployment, then swaps this host's serving slot (in this host's deploy turn).
pub async fn activate(
    registry: &Registry,
    store: &Store,
    id: &str,
    hash: &str,
) -> Result<Arc<LoadedConnector>, DeployError> {
    let _turn = turn_caught_up(registry, store).await;
    let (next, old) = switch_to(registry, store, id, hash)?;
    tracing::info!(connector = %next.version_tag(), replaced = ?old, "connector version activated");
    Ok(next)
}

/// Serves the previous version again on every host, as [`activate`] does.
pub async fn rollback(
    registry: &Registry,
    store: &Store,
    id: &str,
) -> Result<Arc<LoadedConnector>, DeployError> {
    let _turn = turn_caught_up(registry, store).await;
    // The database's rollback target when an operator chose versions (on any host), else this
    // host's own (a dir version replaced by the watcher before any deployment).
    let previous = match store.deployment(id)? {
        Some(d) => d.previous_hash,
        None => registry.previous(id)?,
    }
    .ok_or_else(|| RegistryError::NoPrevious(id.into()))?;
    let (next, old) = switch_to(registry, store, id, &previous)?;
    tracing::info!(connector = %next.version_tag(), replaced = ?old, "connector rolled back");
    Ok(next)
}

/// Forgets a version that is not serving, and deletes its stored bytes (every host forgets it).
/// Refused, changing nothing, while it serves here or a deployment names it as the active
/// version or the rollback target (checked by the delete itself, so another host's activation
/// cannot slip in between).
pub async fn remove(
    registry: &Registry,
    store: &Store,
    id: &str,
    hash: &str,
) -> Result<Arc<LoadedConnector>, DeployError> {
    let _turn = turn_caught_up(registry, store).await;
    remove_locked(registry, store, id, hash)
}

/// [`remove`] in the caller's deploy turn.
fn remove_locked(
    registry: &Registry,
    store: &Store,
    id: &str,
    hash: &str,
) -> Result<Arc<LoadedConnector>, DeployError> {
    let version = registry.version(id, hash)?;
    if registry.get(id).is_some_and(|v| v.hash == version.hash) {
        return Err(RegistryError::Active(version.version_tag()).into());
    }
    // What this host serves, as the database should still name it (it caught up just before).
    let seen = match registry.get(id) {
        Some(active) => Some(Deployment {
            connector: id.to_string(),
            active_hash: active.hash.clone(),
            previous_hash: registry.previous(id)?,
        }),
        None => None,
    };
    if store.delete_component(&version.hash, seen.as_ref())? == ComponentDelete::InUse {
        return Err(DeployError::InUse(version.version_tag()));
    }
    let removed = registry.remove(id, &version.hash)?;
    tracing::info!(connector = %removed.version_tag(), "connector version removed");
    Ok(removed)
}

/// Keeps the newest `keep` loaded versions of each connector (by load time) and removes the
/// others with their stored bytes, never the active version or the rollback target; then drops
/// the compiled-code cache entries of versions no longer loaded. Returns the tags removed.
pub async fn prune(
    registry: &Registry,
    store: &Store,
    keep: usize,
) -> Result<Vec<String>, DeployError> {
    let _turn = registry.deploy_turn().await;
    let mut removed = Vec::new();
    let mut loaded = std::collections::HashSet::new();
    for id in registry.connector_ids() {
        let mut versions = registry.versions(&id).unwrap_or_default();
        versions.sort_by_key(|v| v.loaded_at);
        let excess = versions.len().saturating_sub(keep);
        let (old, kept) = versions.split_at(excess);
        for v in old {
            let pruned = (v.status == VersionStatus::Inactive)
                .then(|| remove_locked(registry, store, &id, &v.hash));
            match pruned {
                Some(Ok(gone)) => removed.push(gone.version_tag()),
                // Another host's rollback target: kept until the database lets it go.
                Some(Err(DeployError::InUse(_))) | None => {
                    loaded.insert(v.hash.clone());
                }
                Some(Err(e)) => return Err(e),
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

/// Stores the deployment that makes version `hash` of `id` serve (the version serving now, if
/// another, becomes the rollback target), then swaps this host's slot: a host never serves a
/// version the database does not name. Returns the new version and the one it replaced.
fn switch_to(
    registry: &Registry,
    store: &Store,
    id: &str,
    hash: &str,
) -> Result<(Arc<LoadedConnector>, Option<String>), DeployError> {
    let next = registry.version(id, hash)?;
    let serving = registry.get(id).filter(|v| v.hash != next.hash);
    let previous = match &serving {
        Some(v) => Some(v.hash.clone()),
        None => registry.previous(id)?,
    };
    store.put_deployment(&Deployment {
        connector: id.to_string(),
        active_hash: next.hash.clone(),
        previous_hash: previous.clone(),
    })?;
    registry.activate(id, &next.hash)?;
    registry.set_previous(id, previous.as_deref());
    // Another version may keep less state: events waiting for room try again (those of other
    // connectors' integrations too; they wait again at once if nothing changed for them).
    let resumed = store.resume_waiting(None, Some(WaitFor::Quota))?;
    if resumed > 0 {
        tracing::info!(connector = %id, events = resumed, "events waiting for state quota resumed");
    }
    Ok((next, serving.map(|v| v.version_tag())))
}

/// At start-up, after the connectors dir is loaded: imports the uploads an older switchyard
/// kept as files, then [`catch_up`] with the database. Problems are logged, never fatal, so a
/// host always comes up with what it can serve.
///
/// Returns whether this host serves what the database names; `false` (the database could not
/// be read, or a version is to be tried again) tells the caller to catch up again later.
pub async fn restore(registry: &Registry, store: &Store, config: &Config) -> bool {
    let dir = uploads_dir(config);
    if dir.exists() {
        for path in crate::wasm::registry::wasm_files(&dir).unwrap_or_default() {
            import_kept(registry, store, &path).await;
        }
    }
    match catch_up(registry, store).await {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the stored connector versions; serving the connectors dir");
            false
        }
    }
}

/// Source of a version loaded from the database (one uploaded here is `upload:…`).
const FROM_DATABASE: &str = "database:";

fn is_stored(source: &str) -> bool {
    source.starts_with("upload") || source.starts_with(FROM_DATABASE)
}

/// Brings this host's registry in line with the database (in this host's deploy turn): loads
/// the stored versions it lacks (compiled into its own code cache), serves the version each
/// deployment names with its rollback target, and forgets stored versions deleted through
/// another host. A version that cannot load or serve here is logged and recorded
/// ([`Registry::problems`]); the host keeps serving what it served, and tries that version
/// again after a wait that doubles with each failure (a version stored just after its
/// deployment was read serves a second later; a broken one is not recompiled at every sync).
/// `Ok(false)`: some version is still to be tried again, so the caller calls again.
pub async fn catch_up(registry: &Registry, store: &Store) -> Result<bool, StoreError> {
    let _turn = registry.deploy_turn().await;
    catch_up_locked(registry, store).await
}

/// [`catch_up`] in the caller's deploy turn.
async fn catch_up_locked(registry: &Registry, store: &Store) -> Result<bool, StoreError> {
    let loaded: HashSet<String> = registry.hashes();
    for c in store.components()? {
        if loaded.contains(&c.hash) || !registry.retry_due(&c.hash) {
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
                    if registry.retry_due(&d.active_hash) {
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
    Ok(!registry.has_problems())
}

/// This host's deploy turn, caught up with the database first, for a version operation
/// (activate, roll back, remove): a version uploaded or chosen through another host a moment
/// ago is known here. A failed catch-up is logged: the operation then works on what this host
/// holds.
async fn turn_caught_up<'r>(
    registry: &'r Registry,
    store: &Store,
) -> tokio::sync::MutexGuard<'r, ()> {
    let turn = registry.deploy_turn().await;
    if let Err(e) = catch_up_locked(registry, store).await {
        tracing::warn!(error = %e, "cannot catch up with the stored connector versions");
    }
    turn
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
