//! The host's view of a loaded connector version: its manifest, and typed calls into it.
//!
//! The calls take and return the host-neutral types of [`crate::wasm::types`] (re-exported here),
//! so the rest of the host never touches wasmtime nor knows which version a connector speaks.
//! Each call dispatches on the version here; the conversions live with each version's bindings
//! (`runtime/bindings/v0_*.rs`).

use std::sync::Arc;
use std::time::Instant;

use crate::timeline::TimelineEvent;
use crate::wasm::runtime::bindings::{v0_1, v0_2};
use crate::wasm::runtime::{CallContext, Compiled, Grant, Pre, Runtime};
pub use crate::wasm::types::{
    CallError, ConfigField, InvokeError, Limits, Manifest, Note, Package, RawHttp,
    ScreeningRequest, Started, Status, StatusUpdate,
};

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
        let packages = self.packages(runtime, ctx).await?;
        Ok(packages
            .into_iter()
            .map(|p| (p.name, p.is_default))
            .collect())
    }

    /// Calls `list-packages`, keeping each package's parameters.
    pub async fn packages(
        &self,
        runtime: &Runtime,
        ctx: Arc<CallContext>,
    ) -> Result<Vec<Package>, CallError> {
        let started = Instant::now();
        let result = self.packages_inner(runtime, ctx).await;
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
            Err(CallError::Invoke(InvokeError::StateQuota(_))) => "state_quota",
            Err(CallError::Invoke(InvokeError::Timeout(_))) => "timeout",
            Err(CallError::Invoke(InvokeError::OutOfMemory(_))) => "oom",
            Err(CallError::Invoke(InvokeError::Instantiate(_))) => "instantiate",
            Err(CallError::Invoke(InvokeError::ExportType(_))) => "export_type",
            Err(CallError::Invoke(InvokeError::LiftBytes(_))) => {
                runtime
                    .metrics()
                    .sandbox_limit(&self.manifest.id, "lift_bytes");
                "lift_bytes"
            }
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

    async fn packages_inner(
        &self,
        runtime: &Runtime,
        ctx: Arc<CallContext>,
    ) -> Result<Vec<Package>, CallError> {
        match &self.compiled.pre {
            Pre::V0_1(pre) => v0_1::list_packages(runtime, pre, self.grant, ctx).await,
            Pre::V0_2(pre) => v0_2::list_packages(runtime, pre, self.grant, ctx).await,
        }
    }
}
