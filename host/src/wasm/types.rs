//! The host-neutral connector types: what a connector says (manifest, statuses, packages) and
//! what a call into one takes, returns and fails with. They mirror the WIT records but are the
//! host's own (serializable, the same for every contract version), and depend on nothing else in
//! `wasm/`, so the per-version bindings, the imports and the quotas can all use them without
//! depending on each other. A 0.1 manifest has no `verdict-labels` or `limits`: they read as empty
//! and zeros.

use serde::{Deserialize, Serialize};

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

/// The prefix of a `rejected` message by which a connector says: "my vendor may have placed the
/// order (its answer was lost) and cannot be searched, so I will not invite again blindly: an
/// operator must decide". The event then waits for an operator (`store::WaitFor::Operator`). A
/// convention, not a contract change: a host that does not know it dead-letters the event, which
/// an operator retries too. The SDKs write it (`ConnectorError::needs_operator` in Rust).
pub const NEEDS_OPERATOR: &str = "needs-operator: ";

impl CallError {
    /// The reason, when the connector asked for an operator's decision ([`NEEDS_OPERATOR`]).
    pub fn needs_operator(&self) -> Option<&str> {
        match self {
            CallError::Rejected(message) => message.strip_prefix(NEEDS_OPERATOR),
            _ => None,
        }
    }

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

/// Why one invocation failed. The connector's own errors are not here: they are values.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("connector trapped: {0}")]
    Trap(String),
    #[error("connector ran past its {0} ms deadline")]
    Timeout(u64),
    #[error("connector exceeded its {0} MiB memory limit")]
    OutOfMemory(u32),
    #[error("connector could not be instantiated: {0}")]
    Instantiate(String),
    /// The call handed the host more bytes at once (its result, or one import call's
    /// arguments) than `runtime.limits.lift_bytes`; stopped before the host copied them.
    #[error(
        "connector handed the host more than {0} bytes at once (its result or one import call's \
         arguments; runtime.limits.lift_bytes): stopped before copying"
    )]
    LiftBytes(usize),
    /// A `state.set` was refused because the integration's state quota is full: a trap like
    /// any other for the connector, but not the vendor's fault, and retrying cannot help until
    /// there is room (the flow holds the event: see `store::waiting`).
    #[error("connector trapped: {0}")]
    StateQuota(String),
    /// One of the component's `screening` exports does not have the type its contract version
    /// gives it (found when the manifest call type-checks all four): the build is wrong, not
    /// the call.
    #[error("{0}")]
    ExportType(#[from] ExportMismatch),
}

/// The error a refused `state.set` traps with when the quota is full; [`InvokeError::StateQuota`]
/// once the call ended.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateQuotaFull(pub String);

/// A `screening` export whose type is not the contract's, e.g. a `start-screening` taking a
/// string where the contract passes a `screening-request`; [`InvokeError::ExportType`] once the
/// call ended.
#[derive(Debug, Clone, thiserror::Error)]
#[error("its `{export}` export does not have the type the contract gives it ({cause})")]
pub struct ExportMismatch {
    /// The export's WIT name (`start-screening`).
    pub export: &'static str,
    /// wasmtime's type-check message, e.g. "type mismatch with parameters: expected `record`
    /// found `string`".
    pub cause: String,
}
