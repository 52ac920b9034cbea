//! The host's view of a connector: its manifest, and typed calls into a loaded version.
//!
//! These types mirror the WIT records but are the host's own (serializable, independent of the
//! generated bindings and of the contract version), so the rest of the host never touches
//! wasmtime nor knows which version a connector speaks. Each call dispatches on the version here;
//! the conversions live with each version's bindings (`runtime/bindings/v0_*.rs`). A 0.1
//! manifest has no `verdict-labels` or `limits`: they read as empty and zeros.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::timeline::TimelineEvent;
use crate::wasm::runtime::bindings::{v0_1, v0_2};
use crate::wasm::runtime::{CallContext, Compiled, Grant, InvokeError, Pre, Runtime};

/// A connector's self-description (WIT `manifest`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub id: String,
    pub version: String,
    pub display_name: String,
    pub config_fields: Vec<ConfigField>,
    pub outbound_hosts: Vec<String>,
    pub status_labels: Vec<String>,
    pub default_trigger_stage: Option<String>,
    /// Verdict labels the connector can return in `status.verdict` (0.2; empty for 0.1).
    #[serde(default)]
    pub verdict_labels: Vec<String>,
    /// What it needs from the sandbox (0.2; zeros — the host's defaults — for 0.1).
    #[serde(default)]
    pub limits: Limits,
}

/// A connector's sandbox needs (WIT `resource-needs`). Zero means "the host's default".
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory, MiB.
    pub memory_mib: u32,
    /// Core instances in the component.
    pub instances: u32,
}

/// A screening package (WIT `package`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub is_default: bool,
    pub params: Vec<(String, String)>,
}

/// One setting a connector reads (WIT `config-field`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigField {
    pub key: String,
    pub description: String,
    pub secret: bool,
    pub required: bool,
}

/// Normalized status (WIT `status`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// `pending`, `analyzing`, `partial`, `complete`, `error` or `cancelled`.
    pub state: String,
    pub label: String,
    pub report_url: Option<String>,
    pub score: Option<f64>,
    pub verdict: Option<String>,
    pub note: Option<Note>,
}

/// A note to add (WIT `note`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Note {
    pub text: String,
    pub secret: bool,
}

/// A status for one order (WIT `status-update`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusUpdate {
    pub order_ref: String,
    pub status: Status,
}

/// What a call into a connector can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The sandbox stopped the call (trap, timeout, out of memory).
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// The connector reported a temporary failure: retry.
    #[error("transient: {0}")]
    Transient(String),
    /// The integration's configuration is wrong: an operator must fix it.
    #[error("configuration: {0}")]
    Config(String),
    /// The request is permanently unacceptable.
    #[error("rejected: {0}")]
    Rejected(String),
}

impl CallError {
    /// Whether retrying later may succeed. Traps and timeouts count as retryable: they may come
    /// from a slow vendor or a bug fixed by the next version; the attempt cap bounds them.
    pub fn retryable(&self) -> bool {
        matches!(self, CallError::Invoke(_) | CallError::Transient(_))
    }
}

/// A neutral screening request (WIT `screening-request`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScreeningRequest {
    pub idempotency_key: String,
    pub name: String,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub opportunity_id: String,
    pub opportunity_tags: Vec<String>,
    pub posting_id: Option<String>,
    /// The posting's name (Lever `text`), for the host's rules; not part of the contract.
    #[serde(default)]
    pub posting_name: Option<String>,
    pub posting_tags: Vec<String>,
    pub stage: Option<String>,
    pub package: Option<String>,
}

/// What `start-screening` returned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Started {
    pub order_ref: Option<String>,
    pub status: Status,
}

/// A raw HTTP request or response crossing the contract.
#[derive(Debug, Clone, Default)]
pub struct RawHttp {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One loaded version of a connector: compiled code, manifest and identity.
pub struct LoadedConnector {
    pub manifest: Manifest,
    /// SHA-256 of the component bytes, hex.
    pub hash: String,
    pub loaded_at: std::time::SystemTime,
    pub source: String,
    pub compiled: Compiled,
    /// The sandbox limits its calls run with (from its manifest, within the operator's caps).
    pub grant: Grant,
    /// Benchmark only: the same logic linked into the host, called instead of the component
    /// (see [`NativeLogic`]). Always `None` in a server.
    #[doc(hidden)]
    pub native: std::sync::RwLock<Option<Arc<dyn NativeLogic>>>,
}

/// **Benchmark only** (the "same connector logic, native vs Wasm, end to end" figure): a
/// connector's `start-screening` compiled into the host's process instead of run as a
/// component, so that the one difference between two runs of the whole flow is the sandbox.
/// Nothing sandboxes it; the server never installs one (no config, file or admin call can), only
/// a benchmark holding the registry in its own process does, with [`LoadedConnector::run_natively`].
#[doc(hidden)]
pub trait NativeLogic: Send + Sync {
    /// `start-screening`, called on the guest pool where the component would run; it may block
    /// its thread on the host's imports (it is called inside `block_in_place`).
    fn start_screening(
        &self,
        ctx: &CallContext,
        req: &ScreeningRequest,
    ) -> Result<Started, CallError>;
}

/// Calls `manifest` on a compiled component of any served version, in a sandbox with `grant`.
pub async fn read_manifest(
    runtime: &Runtime,
    compiled: &Compiled,
    grant: Grant,
) -> Result<Manifest, InvokeError> {
    let ctx = Arc::new(CallContext::detached());
    match &compiled.pre {
        Pre::V0_1(pre) => v0_1::manifest(runtime, pre, grant, ctx).await,
        Pre::V0_2(pre) => v0_2::manifest(runtime, pre, grant, ctx).await,
    }
}

impl LoadedConnector {
    /// Calls `start-screening`.
    pub async fn start_screening(
        &self,
        runtime: &Runtime,
        ctx: Arc<CallContext>,
        req: &ScreeningRequest,
    ) -> Result<Started, CallError> {
        let started = Instant::now();
        let result = self.start_screening_inner(runtime, ctx, req).await;
        self.observe(runtime, "start-screening", started, &result);
        result
    }

    /// Calls `handle-callback`.
    pub async fn handle_callback(
        &self,
        runtime: &Runtime,
        ctx: Arc<CallContext>,
        req: RawHttp,
    ) -> Result<(RawHttp, Vec<StatusUpdate>), CallError> {
        let started = Instant::now();
        let result = self.handle_callback_inner(runtime, ctx, req).await;
        self.observe(runtime, "handle-callback", started, &result);
        result
    }

    /// Calls `list-packages`.
    pub async fn list_packages(
        &self,
        runtime: &Runtime,
        ctx: Arc<CallContext>,
    ) -> Result<Vec<(String, bool)>, CallError> {
        let started = Instant::now();
        let result = self.list_packages_inner(runtime, ctx).await;
        self.observe(runtime, "list-packages", started, &result);
        result
    }

    /// Counts a finished call in the metrics, labelled with this version.
    fn observe<T>(
        &self,
        runtime: &Runtime,
        call: &str,
        started: Instant,
        result: &Result<T, CallError>,
    ) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(CallError::Invoke(InvokeError::Trap(_))) => "trap",
            Err(CallError::Invoke(InvokeError::Timeout(_))) => "timeout",
            Err(CallError::Invoke(InvokeError::OutOfMemory(_))) => "oom",
            Err(CallError::Invoke(InvokeError::Instantiate(_))) => "instantiate",
            Err(CallError::Transient(_)) => "transient",
            Err(CallError::Config(_)) => "config",
            Err(CallError::Rejected(_)) => "rejected",
        };
        let version = format!(
            "{}#{}",
            self.manifest.version,
            &self.hash[..12.min(self.hash.len())]
        );
        runtime.metrics().invocation(
            &self.manifest.id,
            &version,
            call,
            outcome,
            started.elapsed(),
        );
    }

    /// Benchmark only: calls `start-screening` of `native` instead of the component from now on
    /// (`None`: the component again). See [`NativeLogic`].
    #[doc(hidden)]
    pub fn run_natively(&self, native: Option<Arc<dyn NativeLogic>>) {
        *self.native.write().unwrap_or_else(|e| e.into_inner()) = native;
    }

    /// `id@version#hash12`: recorded on every event this version processed.
    pub fn version_tag(&self) -> String {
        format!(
            "{}@{}#{}",
            self.manifest.id,
            self.manifest.version,
            &self.hash[..12.min(self.hash.len())]
        )
    }

    async fn start_screening_inner(
        &self,
        runtime: &Runtime,
        ctx: Arc<CallContext>,
        req: &ScreeningRequest,
    ) -> Result<Started, CallError> {
        ctx.timeline.emit(TimelineEvent::ConnectorInvoked {
            integration: ctx.integration_id.clone(),
            connector: self.version_tag(),
            call: "start-screening".into(),
        });
        let native = self
            .native
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(native) = native {
            return tokio::task::block_in_place(|| native.start_screening(&ctx, req));
        }
        match &self.compiled.pre {
            Pre::V0_1(pre) => v0_1::start_screening(runtime, pre, self.grant, ctx, req).await,
            Pre::V0_2(pre) => v0_2::start_screening(runtime, pre, self.grant, ctx, req).await,
        }
    }

    async fn handle_callback_inner(
        &self,
        runtime: &Runtime,
        ctx: Arc<CallContext>,
        req: RawHttp,
    ) -> Result<(RawHttp, Vec<StatusUpdate>), CallError> {
        ctx.timeline.emit(TimelineEvent::ConnectorInvoked {
            integration: ctx.integration_id.clone(),
            connector: self.version_tag(),
            call: "handle-callback".into(),
        });
        match &self.compiled.pre {
            Pre::V0_1(pre) => v0_1::handle_callback(runtime, pre, self.grant, ctx, req).await,
            Pre::V0_2(pre) => v0_2::handle_callback(runtime, pre, self.grant, ctx, req).await,
        }
    }

    async fn list_packages_inner(
        &self,
        runtime: &Runtime,
        ctx: Arc<CallContext>,
    ) -> Result<Vec<(String, bool)>, CallError> {
        let packages = match &self.compiled.pre {
            Pre::V0_1(pre) => v0_1::list_packages(runtime, pre, self.grant, ctx).await,
            Pre::V0_2(pre) => v0_2::list_packages(runtime, pre, self.grant, ctx).await,
        }?;
        Ok(packages
            .into_iter()
            .map(|p| (p.name, p.is_default))
            .collect())
    }
}
