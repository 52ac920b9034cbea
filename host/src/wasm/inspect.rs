//! `switchyard connector validate|inspect <file.wasm>`: the checks an upload goes through, and
//! what a component declares, offline (no server, no store, no network), for operators and plugin
//! authors alike.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::config::RuntimeConfig;
use crate::wasm::connector::Manifest;
use crate::wasm::registry::Registry;
use crate::wasm::runtime::Grant;
use crate::wasm::runtime::{Caps, LoadError, Runtime, Surface};

/// Why a file cannot be inspected or did not validate.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(String),
    #[error("rejected: {0}")]
    Rejected(#[from] LoadError),
    #[error("rejected: the component is connector `{found}`, not `{expected}`")]
    WrongConnector { expected: String, found: String },
    #[error(
        "rejected: outbound hosts not approved: {0} (its manifest's outbound-hosts must each be \
         given as --approved-host, as the server's runtime.approved_hosts must list them)"
    )]
    UnapprovedHosts(String),
}

/// What a component is and declares.
#[derive(Debug, Serialize)]
pub struct Report {
    pub file: String,
    pub sha256: String,
    pub bytes: usize,
    /// `switchyard:connector` version it was built against, when it fits the contract.
    pub contract_version: Option<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Its self-description, when it loads.
    pub manifest: Option<Manifest>,
    /// The sandbox limits its calls would get, when it loads.
    pub grant: Option<Grant>,
    /// Why it would be rejected, if it would.
    pub problem: Option<String>,
}

/// The runtime with `settings`' limits and an optional compiled-code cache (`connector test`
/// shares it: same engine).
async fn runtime(settings: &RuntimeConfig, cache: Option<&Path>) -> Result<Registry, InspectError> {
    let cache = cache.map(|dir| crate::wasm::cache::CodeCache::new(dir.to_path_buf()));
    let runtime: Arc<Runtime> = Runtime::with_cache(settings.timeout_ms, Caps::of(settings), cache)
        .map_err(|e| InspectError::Runtime(e.to_string()))?;
    Ok(Registry::new(runtime))
}

/// Describes `path`, whether or not it would be accepted under `settings`' sandbox limits
/// (`problem` says why not; the CLI then exits non-zero).
pub async fn inspect(path: &Path, settings: &RuntimeConfig) -> Result<Report, InspectError> {
    let bytes =
        std::fs::read(path).map_err(|e| InspectError::Read(path.display().to_string(), e))?;
    let registry = runtime(settings, None).await?;
    let surface = Component::new(registry.runtime().engine(), &bytes)
        .ok()
        .map(|c| Surface::of(&c, registry.runtime().engine()));
    let mut report = Report {
        file: path.display().to_string(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes: bytes.len(),
        contract_version: None,
        imports: surface
            .as_ref()
            .map(|s| s.imports.clone())
            .unwrap_or_default(),
        exports: surface
            .as_ref()
            .map(|s| s.exports.clone())
            .unwrap_or_default(),
        manifest: None,
        grant: None,
        problem: None,
    };
    match registry.load(bytes, &report.file).await {
        Ok(loaded) => {
            report.contract_version = Some(loaded.compiled.contract_version.clone());
            report.manifest = Some(loaded.manifest.clone());
            report.grant = Some(loaded.grant);
        }
        Err(e) => report.problem = Some(e.to_string()),
    }
    Ok(report)
}

/// Runs the upload checks on `path`: a component of a served contract version whose manifest
/// works and whose declared limits fit `settings`' caps, naming `connector` when given and asking
/// only for `approved` hosts when any are given. Returns the version tag (`id@version#hash12`).
pub async fn validate(
    path: &Path,
    connector: Option<&str>,
    approved: &[String],
    settings: &RuntimeConfig,
) -> Result<String, InspectError> {
    check(path, connector, approved, settings, None).await
}

/// [`validate`] under the default limits, taking compiled code from (and adding it to) the cache
/// directory `cache`.
pub async fn validate_with_cache(
    path: &Path,
    connector: Option<&str>,
    approved: &[String],
    cache: Option<&Path>,
) -> Result<String, InspectError> {
    check(path, connector, approved, &RuntimeConfig::default(), cache).await
}

/// [`validate`] under `settings`' limits with an optional compiled-code cache.
pub async fn check(
    path: &Path,
    connector: Option<&str>,
    approved: &[String],
    settings: &RuntimeConfig,
    cache: Option<&Path>,
) -> Result<String, InspectError> {
    let bytes =
        std::fs::read(path).map_err(|e| InspectError::Read(path.display().to_string(), e))?;
    let registry = runtime(settings, cache).await?;
    let loaded = registry.load(bytes, &path.display().to_string()).await?;
    if let Some(expected) = connector.filter(|c| *c != loaded.manifest.id) {
        return Err(InspectError::WrongConnector {
            expected: expected.into(),
            found: loaded.manifest.id.clone(),
        });
    }
    if !approved.is_empty() {
        let unapproved: Vec<&str> = loaded
            .manifest
            .outbound_hosts
            .iter()
            .filter(|h| !approved.iter().any(|a| a.eq_ignore_ascii_case(h)))
            .map(String::as_str)
            .collect();
        if !unapproved.is_empty() {
            return Err(InspectError::UnapprovedHosts(unapproved.join(", ")));
        }
    }
    Ok(loaded.version_tag())
}
