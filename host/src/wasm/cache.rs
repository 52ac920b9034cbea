//! On-disk cache of compiled connector code, so a restart does not recompile.
//!
//! An entry is keyed by SHA-256 of the component bytes *and* the engine's compatibility hash
//! (wasmtime version, target, compiler settings), so code compiled by another engine is never
//! looked up. Beside each entry lies the SHA-256 of its serialized bytes; an entry is deserialized
//! only after that digest matches, because deserializing is `unsafe` (wasmtime trusts the bytes as
//! machine code). A missing, corrupt or incompatible entry is rebuilt and rewritten, never trusted.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Deserialized from a verified cache entry.
    Cache,
    /// Compiled now (no usable entry).
    Compiled,
}

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct CodeCache {
    dir: PathBuf,
}

impl CodeCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> CodeCache {
        CodeCache { dir }
    }

    /// The cached code for `bytes` if a verified entry exists, else compiles and stores it.
    /// Failing to write the cache only costs the next restart a compile, so it is logged, not fatal.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, Origin)> {
        let path = self.entry(engine, bytes);
        if let Some(component) = self.read(engine, &path) {
            return Ok((component, Origin::Cache));
        }
        let component = Component::new(engine, bytes)?;
        match component.serialize() {
            Ok(code) => {
                if let Err(e) = write(&path, &code) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write compiled-code cache entry");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialize compiled component"),
        }
        Ok((component, Origin::Compiled))
    }

    /// Removes every entry but those of `keep` (SHA-256 of component bytes, hex) compiled by
    /// `engine`: the code of removed versions and of other engine builds. Returns how many
    /// entries went. A missing directory holds nothing to prune.
    pub fn prune(
        &self,
        engine: &Engine,
        keep: &std::collections::HashSet<String>,
    ) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let engine_suffix = format!("-{}.cwasm", engine_hash(engine));
        let mut removed = 0;
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".cwasm") else {
                continue;
            };
            let component = stem.split('-').next().unwrap_or_default();
            if name.ends_with(&engine_suffix) && keep.contains(component) {
                continue;
            }
            std::fs::remove_file(&path)?;
            // The digest beside it; already gone if a crash came between the two removals.
            let _ = std::fs::remove_file(sidecar(&path));
            removed += 1;
        }
        Ok(removed)
    }

    /// `<dir>/<sha256 of the component>-<engine hash>.cwasm`.
    fn entry(&self, engine: &Engine, bytes: &[u8]) -> PathBuf {
        let component = hex::encode(Sha256::digest(bytes));
        self.dir
            .join(format!("{component}-{}.cwasm", engine_hash(engine)))
    }

    /// A verified entry, or None (missing, unreadable, digest mismatch, or rejected by wasmtime).
    fn read(&self, engine: &Engine, path: &Path) -> Option<Component> {
        let code = std::fs::read(path).ok()?;
        let digest = std::fs::read_to_string(sidecar(path)).ok()?;
        if digest.trim() != hex::encode(Sha256::digest(&code)) {
            tracing::warn!(path = %path.display(), "compiled-code cache entry is corrupt; recompiling");
            return None;
        }
        // SAFETY: the bytes are exactly what `Component::serialize` wrote for this engine
        // configuration (the digest beside them matches, and the file name carries the engine's
        // compatibility hash); wasmtime additionally checks its own header and version.
        match unsafe { Component::deserialize(engine, &code) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "stale compiled-code cache entry; recompiling");
                None
            }
        }
    }
}

/// The engine's compatibility hash as written in entry names.
fn engine_hash(engine: &Engine) -> String {
    // DefaultHasher::new() is deterministic within one build of the host, which is all the
    // engine hash needs: another build of wasmtime changes the hash anyway.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

fn sidecar(path: &Path) -> PathBuf {
    path.with_extension("cwasm.sha256")
}

/// Writes the digest first, then the code, each through a temporary file and a rename, so a
/// crash leaves either no entry or one whose digest does not match (rebuilt next time).
fn write(path: &Path, code: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let atomic = |target: &Path, data: &[u8]| {
        let tmp = target.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, target)
    };
    atomic(&sidecar(path), hex::encode(Sha256::digest(code)).as_bytes())?;
    atomic(path, code)
}
