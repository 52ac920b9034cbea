//! Deploying connector versions on a live host: validate, keep, activate, roll back, remove.
//!
//! Validation before activation: the bytes must be a component of a compatible contract version
//! (checked by [`Runtime::compile`](crate::wasm::runtime::Runtime::compile)), its `manifest` call must
//! work and name the connector it replaces, and it may ask only for outbound hosts the operator
//! approved (`runtime.approved_hosts`, plus the hosts of the version serving now). Compilation
//! runs on a blocking thread, never on the request path of webhooks. A rejected version changes
//! nothing.
//!
//! Uploaded bytes are kept in `<storage dir>/connectors/<hash>.wasm` and the operator's choice of
//! active/previous version in the store (`deployments`), so a restart serves the same version.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::store::admin::Deployment;
use crate::store::{Store, StoreError, WaitFor};
use crate::wasm::connector::LoadedConnector;
use crate::wasm::registry::{Registry, RegistryError};
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
        let dir = uploads_dir(config);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.wasm", loaded.hash));
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)?;
        }
    }
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
    let (next, old) = registry.rollback(id)?;
    remember(registry, store, id, &next)?;
    tracing::info!(connector = %next.version_tag(), replaced = ?old.map(|o| o.version_tag()), "connector rolled back");
    Ok(next)
}

/// Forgets a version that is not serving, and deletes its uploaded bytes.
pub fn remove(
    registry: &Registry,
    store: &Store,
    config: &Config,
    id: &str,
    hash: &str,
) -> Result<Arc<LoadedConnector>, DeployError> {
    let removed = registry.remove(id, hash)?;
    if let Some(serving) = registry.get(id) {
        remember(registry, store, id, &serving)?;
    }
    let path = uploads_dir(config).join(format!("{}.wasm", removed.hash));
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    tracing::info!(connector = %removed.version_tag(), "connector version removed");
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
            .find(|v| v.status == crate::wasm::registry::VersionStatus::Previous)
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

/// At start-up, after the connectors dir is loaded: loads the kept uploads and re-applies the
/// operator's last choice of active and previous version. Problems are logged, never fatal, so
/// a host always comes up with what it can serve.
pub async fn restore(registry: &Registry, store: &Store, config: &Config) {
    let dir = uploads_dir(config);
    if dir.exists() {
        for path in crate::wasm::registry::wasm_files(&dir).unwrap_or_default() {
            load_kept(registry, &path).await;
        }
    }
    let deployments = match store.deployments() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot read deployments; serving the connectors dir");
            return;
        }
    };
    for d in deployments {
        match registry.activate(&d.connector, &d.active_hash) {
            Ok((v, _)) => {
                tracing::info!(connector = %v.version_tag(), "restored active connector version")
            }
            Err(e) => {
                tracing::warn!(connector = %d.connector, error = %e, "cannot restore the active version")
            }
        }
        if let Some(previous) = &d.previous_hash {
            registry.set_previous(&d.connector, previous);
        }
    }
}

async fn load_kept(registry: &Registry, path: &Path) {
    let source = format!("upload:{}", path.display());
    let result = match std::fs::read(path) {
        Ok(bytes) => registry
            .load(bytes, &source)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(loaded) => {
            registry.add(loaded);
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "kept connector upload not loaded")
        }
    }
}
