//! The connector registry: connector id → the version currently serving it.
//!
//! Each slot is an `ArcSwap`: an invocation takes an `Arc` of the current version when it starts
//! and keeps it to the end, so replacing a slot (hot swap) never disturbs calls in flight, and every
//! call that starts afterwards sees the new version.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::connector::LoadedConnector;
use crate::runtime::{LoadError, Runtime};

/// Connectors by manifest id.
pub struct Registry {
    runtime: Arc<Runtime>,
    slots: RwLock<BTreeMap<String, Arc<ArcSwap<LoadedConnector>>>>,
}

impl Registry {
    /// An empty registry on `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Registry {
        Registry {
            runtime,
            slots: RwLock::new(BTreeMap::new()),
        }
    }

    /// The runtime connectors run on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Compiles and validates component bytes (off the request path) without installing them.
    pub async fn load(&self, bytes: Vec<u8>, source: &str) -> Result<LoadedConnector, LoadError> {
        let hash = hex::encode(Sha256::digest(&bytes));
        let compiled = self.runtime.compile(bytes).await?;
        let manifest = self.runtime.manifest(&compiled.pre).await?;
        if manifest.id.is_empty() {
            return Err(LoadError::Manifest("the manifest has an empty id".into()));
        }
        Ok(LoadedConnector {
            manifest,
            hash,
            loaded_at: std::time::SystemTime::now(),
            source: source.to_string(),
            compiled,
        })
    }

    /// Makes `loaded` the serving version of its connector id; returns the version it replaced.
    pub fn install(&self, loaded: LoadedConnector) -> Option<Arc<LoadedConnector>> {
        let id = loaded.manifest.id.clone();
        let loaded = Arc::new(loaded);
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        match slots.get(&id) {
            Some(slot) => Some(slot.swap(loaded)),
            None => {
                slots.insert(id, Arc::new(ArcSwap::new(loaded)));
                None
            }
        }
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

    /// Loads every `*.wasm` in `dir`. A file that fails to load is reported and skipped so one
    /// bad connector cannot keep the others from serving.
    pub async fn load_dir(
        &self,
        dir: &Path,
    ) -> anyhow::Result<Vec<(String, Result<String, String>)>> {
        let mut outcomes = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot read connectors dir {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        entries.sort();
        for path in entries {
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
                Err(e) => tracing::error!(file = %name, error = %e, "connector not loaded"),
            }
            outcomes.push((name, outcome));
        }
        Ok(outcomes)
    }
}
