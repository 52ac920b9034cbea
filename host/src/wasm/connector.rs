//! The host's view of a connector: its manifest, and typed calls into a loaded version.
//!
//! These types mirror the WIT records but are the host's own (serializable, independent of the
//! generated bindings), so the rest of the host never touches wasmtime.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::timeline::TimelineEvent;
use crate::wasm::runtime::bindings::types;
use crate::wasm::runtime::{CallContext, Compiled, InvokeError, Runtime};

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
}

/// One setting a connector reads (WIT `config-field`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigField {
    pub key: String,
    pub description: String,
    pub secret: bool,
    pub required: bool,
}

impl From<types::Manifest> for Manifest {
    fn from(m: types::Manifest) -> Self {
        Manifest {
            id: m.id,
            version: m.version,
            display_name: m.display_name,
            config_fields: m
                .config_fields
                .into_iter()
                .map(|f| ConfigField {
                    key: f.key,
                    description: f.description,
                    secret: f.secret,
                    required: f.required,
                })
                .collect(),
            outbound_hosts: m.outbound_hosts,
            status_labels: m.status_labels,
            default_trigger_stage: m.default_trigger_stage,
        }
    }
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

impl From<types::Status> for Status {
    fn from(s: types::Status) -> Self {
        use types::ScreeningState as S;
        let state = match s.state {
            S::Pending => "pending",
            S::Analyzing => "analyzing",
            S::Partial => "partial",
            S::Complete => "complete",
            S::Error => "error",
            S::Cancelled => "cancelled",
        };
        Status {
            state: state.into(),
            label: s.label,
            report_url: s.report_url.filter(|u| !u.is_empty()),
            score: s.score,
            verdict: s.verdict,
            note: s.note.map(|n| Note {
                text: n.text,
                secret: n.secret,
            }),
        }
    }
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

impl From<types::ConnectorError> for CallError {
    fn from(e: types::ConnectorError) -> Self {
        match e {
            types::ConnectorError::Config(m) => CallError::Config(m),
            types::ConnectorError::Transient(m) => CallError::Transient(m),
            types::ConnectorError::Rejected(m) => CallError::Rejected(m),
        }
    }
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
        let wit_req = types::ScreeningRequest {
            idempotency_key: req.idempotency_key.clone(),
            candidate: types::Candidate {
                name: req.name.clone(),
                emails: req.emails.clone(),
                phones: req.phones.clone(),
            },
            opportunity_id: req.opportunity_id.clone(),
            opportunity_tags: req.opportunity_tags.clone(),
            posting_id: req.posting_id.clone(),
            posting_tags: req.posting_tags.clone(),
            stage: req.stage.clone(),
            package: req.package.clone(),
        };
        let result = runtime
            .invoke(&self.compiled.pre, ctx, move |inst, store| {
                Box::pin(async move {
                    inst.switchyard_connector_screening()
                        .call_start_screening(store, &wit_req)
                        .await
                })
            })
            .await?;
        let started = result.map_err(CallError::from)?;
        Ok(Started {
            order_ref: started.order_ref,
            status: started.status.into(),
        })
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
        let wit_req = types::HttpRequest {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: req.body,
        };
        let result = runtime
            .invoke(&self.compiled.pre, ctx, move |inst, store| {
                Box::pin(async move {
                    inst.switchyard_connector_screening()
                        .call_handle_callback(store, &wit_req)
                        .await
                })
            })
            .await?;
        let out = result.map_err(CallError::from)?;
        let response = RawHttp {
            status: out.response.status,
            headers: out.response.headers,
            body: out.response.body,
            ..RawHttp::default()
        };
        let updates = out
            .updates
            .into_iter()
            .map(|u| StatusUpdate {
                order_ref: u.order_ref,
                status: u.status.into(),
            })
            .collect();
        Ok((response, updates))
    }

    async fn list_packages_inner(
        &self,
        runtime: &Runtime,
        ctx: Arc<CallContext>,
    ) -> Result<Vec<(String, bool)>, CallError> {
        let result = runtime
            .invoke(&self.compiled.pre, ctx, |inst, store| {
                Box::pin(async move {
                    inst.switchyard_connector_screening()
                        .call_list_packages(store)
                        .await
                })
            })
            .await?;
        let packages = result.map_err(CallError::from)?;
        Ok(packages
            .into_iter()
            .map(|p: types::Package| (p.name, p.is_default))
            .collect())
    }
}
