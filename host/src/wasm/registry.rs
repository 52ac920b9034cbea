//! The connector registry: every loaded version of every connector, and which one serves.
//!
//! Each connector has a serving slot, an `ArcSwap`: an invocation takes an `Arc` of the current
//! version when it starts and keeps it to the end, so replacing a slot (hot swap) never disturbs
//! calls in flight, and every call that starts afterwards sees the new version. Beside the slot the
//! registry keeps the connector's other loaded versions: `active` (serving), `previous` (the one
//! `rollback` returns to) and `inactive` (loaded, validated, not serving).
//!
//! Lock order: `families` before `slots`. Neither is held across an `await`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::wasm::cache::Origin;
use crate::wasm::connector::{read_manifest, LoadedConnector, Manifest};
use crate::wasm::runtime::Grant;
use crate::wasm::runtime::{Compiled, LoadError, Runtime};

/// A version operation that cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no connector `{0}` is loaded")]
    UnknownConnector(String),
    #[error(
        "connector `{0}` has no version matching `{1}` (give its hash or a 12+ character prefix)"
    )]
    UnknownVersion(String, String),
    #[error("connector `{0}` has no previous version to roll back to")]
    NoPrevious(String),
    #[error("version {0} is serving; activate another version before removing it")]
    Active(String),
}

/// Where a version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VersionStatus {
    /// Serving every new invocation.
    Active,
    /// Served before the active one; the target of a rollback.
    Previous,
    /// Loaded and valid, not serving.
    Inactive,
}

/// One version as operators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    /// `id@version#hash12`, as recorded on events.
    pub tag: String,
    /// SHA-256 of the component bytes.
    pub hash: String,
    pub status: VersionStatus,
    pub contract_version: String,
    /// Unix milliseconds.
    pub loaded_at: u64,
    pub source: String,
    /// `cache` when the compiled code came from the on-disk cache.
    pub compiled_from: Origin,
    /// The sandbox limits its calls get.
    #[schema(value_type = Object)]
    pub grant: Grant,
    /// The component's embedded manifest.
    #[schema(value_type = Object)]
    pub manifest: Manifest,
}

#[derive(Default)]
struct Family {
    versions: Vec<Arc<LoadedConnector>>,
    active: Option<String>,
    previous: Option<String>,
}

impl Family {
    fn find(&self, id: &str, wanted: &str) -> Result<Arc<LoadedConnector>, RegistryError> {
        let matches: Vec<_> = self
            .versions
            .iter()
            .filter(|v| v.hash == wanted || (wanted.len() >= 12 && v.hash.starts_with(wanted)))
            .collect();
        match matches[..] {
            [one] => Ok(one.clone()),
            _ => Err(RegistryError::UnknownVersion(id.into(), wanted.into())),
        }
    }

    fn status(&self, hash: &str) -> VersionStatus {
        if self.active.as_deref() == Some(hash) {
            VersionStatus::Active
        } else if self.previous.as_deref() == Some(hash) {
            VersionStatus::Previous
        } else {
            VersionStatus::Inactive
        }
    }
}

/// Connectors by manifest id.
pub struct Registry {
    runtime: Arc<Runtime>,
    /// Manifest size bounds checked at load (`runtime.limits.manifest_*`).
    limits: crate::config::limits::SandboxLimits,
    families: Mutex<BTreeMap<String, Family>>,
    slots: RwLock<BTreeMap<String, Arc<ArcSwap<LoadedConnector>>>>,
    /// Files of the connectors dir that failed to load at start-up: file path → reason. Kept so
    /// an integration whose connector is missing can say why (see [`Registry::not_ready`]).
    failures: Mutex<BTreeMap<String, String>>,
    /// Versions the database names (stored, or active in a deployment) that this host cannot
    /// load or serve, by hash. Shown by `/admin/connectors`.
    problems: Mutex<BTreeMap<String, Problem>>,
    /// Held by each change of what this host serves ([`Registry::deploy_turn`]).
    deploys: tokio::sync::Mutex<()>,
}

/// A recorded problem of one version, and when to try it again.
struct Problem {
    connector: String,
    reason: String,
    tries: u32,
    retry_at: std::time::Instant,
}

/// The wait before a version that failed is tried again: doubling from the first, up to the
/// last, so one that keeps failing is not recompiled at every sync.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(300);

/// A version the database names that this host cannot load or serve.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionProblem {
    pub hash: String,
    /// What went wrong on this host (it keeps serving its current version).
    pub reason: String,
}

impl Registry {
    /// An empty registry on `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Registry {
        Registry {
            runtime,
            limits: Default::default(),
            families: Mutex::new(BTreeMap::new()),
            slots: RwLock::new(BTreeMap::new()),
            failures: Mutex::new(BTreeMap::new()),
            problems: Mutex::new(BTreeMap::new()),
            deploys: tokio::sync::Mutex::new(()),
        }
    }

    /// Checks manifests against `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: crate::config::limits::SandboxLimits) -> Registry {
        self.limits = limits;
        self
    }

    /// Why connector `id` cannot serve now, or None when a version of it is serving. Names the
    /// file that failed to load for it when one did (matched by file name: `certn-v01` is
    /// `certn-v01.wasm` or `certn_v01.wasm`), else lists every file that failed.
    pub fn not_ready(&self, id: &str) -> Option<String> {
        if self.get(id).is_some() {
            return None;
        }
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = id.replace('_', "-").to_ascii_lowercase();
        let stem = |file: &str| {
            Path::new(file)
                .file_stem()
                .map(|s| s.to_string_lossy().replace('_', "-").to_ascii_lowercase())
                .unwrap_or_default()
        };
        let mut reason = format!("connector `{id}` is not loaded");
        if let Some((file, why)) = failures.iter().find(|(f, _)| stem(f) == wanted) {
            reason.push_str(&format!(": {file} failed to load: {why}"));
        } else if !failures.is_empty() {
            let files: Vec<&str> = failures.keys().map(String::as_str).collect();
            reason.push_str(&format!(
                " (files that failed to load at start-up: {}; see the log)",
                files.join(", ")
            ));
        }
        reason.push_str("; upload or activate a valid version to make it ready");
        Some(reason)
    }

    /// The runtime connectors run on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Compiles and validates component bytes (off the request path) without installing them.
    ///
    /// The manifest is read under the operator's caps (its needs are not known before), then the
    /// grant is derived from its `limits`, and, when that grant is smaller, the component is run
    /// once more under it, so a component that cannot work within what it declared is refused
    /// now rather than on its first real call.
    pub async fn load(&self, bytes: Vec<u8>, source: &str) -> Result<LoadedConnector, LoadError> {
        let hash = hex::encode(Sha256::digest(&bytes));
        let compiled = self.runtime.compile(bytes).await?;
        let runtime = self.runtime.clone();
        let limits = self.limits.clone();
        // Guest code never runs on the threads that serve HTTP: an upload or a watched file whose
        // manifest spins holds this blocking thread until its deadline, not an executor worker.
        let handle = tokio::runtime::Handle::current();
        let (compiled, checked) = tokio::task::spawn_blocking(move || {
            let checked = handle.block_on(check_manifest(&runtime, &compiled, &limits));
            (compiled, checked)
        })
        .await
        .map_err(|e| LoadError::Manifest(format!("the manifest check was lost: {e}")))?;
        let (manifest, grant) = checked?;
        Ok(LoadedConnector {
            manifest,
            hash,
            loaded_at: std::time::SystemTime::now(),
            source: source.to_string(),
            compiled,
            grant,
        })
    }

    /// Adds a version without activating it. A version with the same hash already loaded is kept
    /// instead; the boolean says whether `loaded` was new.
    pub fn add(&self, loaded: LoadedConnector) -> (Arc<LoadedConnector>, bool) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(loaded.manifest.id.clone()).or_default();
        if let Some(existing) = family.versions.iter().find(|v| v.hash == loaded.hash) {
            return (existing.clone(), false);
        }
        let loaded = Arc::new(loaded);
        family.versions.push(loaded.clone());
        (loaded, true)
    }

    /// Makes version `hash` (or a 12+ character prefix) of connector `id` serve; the version it
    /// replaces becomes `previous`. Returns the new and the replaced version.
    pub fn activate(
        &self,
        id: &str,
        hash: &str,
    ) -> Result<(Arc<LoadedConnector>, Option<Arc<LoadedConnector>>), RegistryError> {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families
            .get_mut(id)
            .ok_or_else(|| RegistryError::UnknownConnector(id.into()))?;
        let next = family.find(id, hash)?;
        if family.active.as_deref() != Some(next.hash.as_str()) {
            family.previous = family.active.replace(next.hash.clone());
        }
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let replaced = match slots.get(id) {
            Some(slot) => Some(slot.swap(next.clone())).filter(|old| old.hash != next.hash),
            None => {
                slots.insert(id.to_string(), Arc::new(ArcSwap::new(next.clone())));
                None
            }
        };
        Ok((next, replaced))
    }

    /// Version `hash` (or a 12+ character prefix) of connector `id`, if loaded here.
    pub fn version(&self, id: &str, hash: &str) -> Result<Arc<LoadedConnector>, RegistryError> {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        families
            .get(id)
            .ok_or_else(|| RegistryError::UnknownConnector(id.into()))?
            .find(id, hash)
    }

    /// The rollback target of connector `id` on this host.
    pub fn previous(&self, id: &str) -> Result<Option<String>, RegistryError> {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families
            .get(id)
            .ok_or_else(|| RegistryError::UnknownConnector(id.into()))?;
        Ok(family.previous.clone())
    }

    /// Forgets a version that is not serving. Calls still running on it finish (they hold an `Arc`).
    pub fn remove(&self, id: &str, hash: &str) -> Result<Arc<LoadedConnector>, RegistryError> {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families
            .get_mut(id)
            .ok_or_else(|| RegistryError::UnknownConnector(id.into()))?;
        let version = family.find(id, hash)?;
        if family.active.as_deref() == Some(version.hash.as_str()) {
            return Err(RegistryError::Active(version.version_tag()));
        }
        if family.previous.as_deref() == Some(version.hash.as_str()) {
            family.previous = None;
        }
        family.versions.retain(|v| v.hash != version.hash);
        Ok(version)
    }

    /// Sets the rollback target as the database remembers it: `hash` if that version is loaded
    /// and not serving, none for `None`.
    pub fn set_previous(&self, id: &str, hash: Option<&str>) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(family) = families.get_mut(id) {
            match hash {
                None => family.previous = None,
                Some(hash) => {
                    if family.versions.iter().any(|v| v.hash == hash)
                        && family.active.as_deref() != Some(hash)
                    {
                        family.previous = Some(hash.to_string());
                    }
                }
            }
        }
    }

    /// The hashes of every loaded version.
    pub fn hashes(&self) -> std::collections::HashSet<String> {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        families
            .values()
            .flat_map(|f| f.versions.iter().map(|v| v.hash.clone()))
            .collect()
    }

    /// Waits for this host's turn to change what it serves, and holds it while the guard
    /// lives: uploads that activate, activations, rollbacks, removals and catching up with the
    /// database run one at a time, so each stores its deployment and swaps in the same order.
    pub async fn deploy_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.deploys.lock().await
    }

    /// Records that version `hash` of `connector`, named by the database, cannot load or serve
    /// on this host; it is tried again after a wait that doubles with each failure.
    pub fn record_problem(&self, connector: &str, hash: &str, reason: String) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        let tries = problems.get(hash).map_or(1, |p| p.tries.saturating_add(1));
        let wait = RETRY_FIRST
            .saturating_mul(1 << tries.saturating_sub(1).min(16))
            .min(RETRY_MAX);
        problems.insert(
            hash.to_string(),
            Problem {
                connector: connector.to_string(),
                reason,
                tries,
                retry_at: std::time::Instant::now() + wait,
            },
        );
    }

    /// Whether version `hash` may be tried now: it has no problem, or its wait is over.
    pub fn retry_due(&self, hash: &str) -> bool {
        let problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        problems
            .get(hash)
            .is_none_or(|p| p.retry_at <= std::time::Instant::now())
    }

    /// Whether any version the database names has a problem here (to be tried again).
    pub fn has_problems(&self) -> bool {
        !self
            .problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Forgets a problem of version `hash` (it loaded or serves now).
    pub fn clear_problem(&self, hash: &str) {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hash);
    }

    /// Keeps only the problems of versions `keep` still names.
    pub fn retain_problems(&self, keep: impl Fn(&str) -> bool) {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|hash, _| keep(hash));
    }

    /// The recorded problems of connector `id`.
    pub fn problems(&self, id: &str) -> Vec<VersionProblem> {
        let problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        problems
            .iter()
            .filter(|(_, p)| p.connector == id)
            .map(|(hash, p)| VersionProblem {
                hash: hash.clone(),
                reason: p.reason.clone(),
            })
            .collect()
    }

    /// Ids of connectors with a loaded version or a recorded problem.
    pub fn listed_ids(&self) -> Vec<String> {
        let mut ids: std::collections::BTreeSet<String> =
            self.connector_ids().into_iter().collect();
        let problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        ids.extend(problems.values().map(|p| p.connector.clone()));
        ids.into_iter().collect()
    }

    /// Adds `loaded` and makes it serve; returns the version it replaced.
    pub fn install(&self, loaded: LoadedConnector) -> Option<Arc<LoadedConnector>> {
        let id = loaded.manifest.id.clone();
        let (added, _) = self.add(loaded);
        self.activate(&id, &added.hash)
            .ok()
            .and_then(|(_, old)| old)
    }

    /// The version serving connector `id` right now.
    pub fn get(&self, id: &str) -> Option<Arc<LoadedConnector>> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.get(id).map(|slot| slot.load_full())
    }

    /// Every serving version.
    pub fn all(&self) -> Vec<Arc<LoadedConnector>> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.values().map(|slot| slot.load_full()).collect()
    }

    /// Ids of every connector with at least one loaded version.
    pub fn connector_ids(&self) -> Vec<String> {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        families.keys().cloned().collect()
    }

    /// Every loaded version of connector `id`, oldest first.
    pub fn versions(&self, id: &str) -> Option<Vec<VersionInfo>> {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.get(id)?;
        Some(
            family
                .versions
                .iter()
                .map(|v| VersionInfo {
                    tag: v.version_tag(),
                    hash: v.hash.clone(),
                    status: family.status(&v.hash),
                    contract_version: v.compiled.contract_version.clone(),
                    loaded_at: v
                        .loaded_at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0),
                    source: v.source.clone(),
                    compiled_from: v.compiled.origin,
                    grant: v.grant,
                    manifest: v.manifest.clone(),
                })
                .collect(),
        )
    }

    /// Loads and activates every `*.wasm` in `dir` (in name order). A file that fails to load is
    /// reported and skipped so one bad connector cannot keep the others from serving.
    pub async fn load_dir(
        &self,
        dir: &Path,
    ) -> anyhow::Result<Vec<(String, Result<String, String>)>> {
        let mut outcomes = Vec::new();
        for path in wasm_files(dir)? {
            let name = path.display().to_string();
            let outcome = match std::fs::read(&path) {
                Ok(bytes) => match self.load(bytes, &name).await {
                    Ok(loaded) => {
                        let tag = loaded.version_tag();
                        self.install(loaded);
                        Ok(tag)
                    }
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            match &outcome {
                Ok(tag) => tracing::info!(file = %name, connector = %tag, "connector loaded"),
                Err(e) => {
                    tracing::error!(file = %name, error = %e, "connector not loaded");
                    self.failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name.clone(), e.clone());
                }
            }
            outcomes.push((name, outcome));
        }
        Ok(outcomes)
    }
}

/// The `*.wasm` files of `dir`, sorted.
pub fn wasm_files(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read connectors dir {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    entries.sort();
    Ok(entries)
}

/// Reads the manifest under the operator's caps, checks its size, derives the grant from its
/// `limits` and, when that grant is smaller, runs the manifest once more under it.
pub async fn check_manifest(
    runtime: &Arc<Runtime>,
    compiled: &Compiled,
    limits: &crate::config::limits::SandboxLimits,
) -> Result<(Manifest, Grant), LoadError> {
    let caps = runtime.caps();
    let manifest = read_manifest(runtime, compiled, caps.ceiling())
        .await
        .map_err(|e| caps.explain_manifest_failure(e))?;
    if manifest.id.is_empty() {
        return Err(LoadError::Manifest("the manifest has an empty id".into()));
    }
    crate::wasm::quota::check_manifest(&manifest, limits).map_err(LoadError::Manifest)?;
    let grant = caps.grant(&manifest.limits)?;
    if grant != caps.ceiling() {
        read_manifest(runtime, compiled, grant)
            .await
            .map_err(|e| grant.explain_failure(e))?;
    }
    Ok((manifest, grant))
}
