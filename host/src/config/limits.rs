//! `[runtime.limits]`: every byte, thread and slot a connector can make the host spend, with its
//! default. SECURITY.md lists the same table for operators; keep the two in step.
//! `[runtime.pool]` ([`PoolSettings`]): how much the instance pool reserves up front.

use serde::{Deserialize, Serialize};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// The sandbox's bounds beyond the CPU deadline and memory cap (`runtime.timeout_ms`,
/// `runtime.memory_mb`). Each is enforced by the host and counted per connector in
/// `switchyard_sandbox_limits_total{connector,limit}` when it bites.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxLimits {
    /// Threads of the dedicated runtime that runs guest code (never the HTTP threads). With 2 or
    /// more, raised if needed to one more than the calls one integration may run (see
    /// [`SandboxLimits::effective_guest_threads`]).
    pub guest_threads: usize,
    /// Connector calls running at once, all integrations together.
    pub max_concurrent_calls: usize,
    /// Connector calls running at once for one integration (so one cannot take every slot).
    /// With `max_concurrent_calls` of 2 or more, lowered to `max_concurrent_calls - 1` if higher
    /// (see [`SandboxLimits::effective_calls_per_integration`]).
    pub max_calls_per_integration: usize,
    /// How long a call waits for a slot before it fails as busy (callback → 503, event → retry).
    pub call_queue_ms: u64,
    /// Largest body of one outbound request.
    pub outbound_request_bytes: usize,
    /// Most headers on one outbound request.
    pub outbound_request_headers: usize,
    /// Largest outbound response body handed to a connector (one call); larger → `invalid`.
    pub outbound_response_bytes: usize,
    /// Outbound response bytes one integration may hold at once across its concurrent calls.
    pub outbound_integration_bytes: usize,
    /// Most response headers handed to a connector (the rest are dropped).
    pub outbound_response_headers: usize,
    /// Longest log message; longer ones are truncated.
    pub log_message_bytes: usize,
    /// Most fields per log line (the rest are dropped); each key and value is cut to 256 bytes.
    pub log_fields: usize,
    /// Log lines one call may write; further lines are dropped and counted.
    pub log_lines_per_call: u64,
    /// Longest `state` key.
    pub state_key_bytes: usize,
    /// Largest `state` value.
    pub state_value_bytes: usize,
    /// `state` bytes (keys + values) one connector may keep per integration.
    pub state_total_bytes: usize,
    /// Most status updates one callback may return; more → the callback is refused.
    pub callback_updates: usize,
    /// Longest order reference, label, verdict or report URL in a status.
    pub status_field_bytes: usize,
    /// Longest note text in a status.
    pub note_bytes: usize,
    /// Most headers of a vendor-callback reply (only `content-type`, `cache-control`, `x-*`).
    pub reply_headers: usize,
    /// Longest value of one reply header (longer ones are dropped).
    pub reply_header_bytes: usize,
    /// Largest vendor-callback reply body; a larger one is replaced by an empty body.
    pub reply_body_bytes: usize,
    /// Longest connector error text recorded on an event or returned to a vendor.
    pub error_bytes: usize,
    /// Longest string in a manifest (id, version, names, hosts, labels, descriptions).
    pub manifest_string_bytes: usize,
    /// Most entries in each manifest list (config fields, hosts, labels).
    pub manifest_list_items: usize,
    /// Most bytes the host copies out of a guest in one go: a call's result (its strings and
    /// lists, all together), or the arguments of one import call. Counted before the copy
    /// (wasmtime's hostcall fuel), because copying runs in host code where the epoch deadline
    /// does not reach: past it the call traps at once, naming this setting.
    pub lift_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            // One more than max_calls_per_integration: one integration's calls never occupy
            // every thread (effective_guest_threads would raise it anyway).
            guest_threads: 5,
            max_concurrent_calls: 16,
            max_calls_per_integration: 4,
            call_queue_ms: 10_000,
            outbound_request_bytes: MIB,
            outbound_request_headers: 64,
            outbound_response_bytes: 4 * MIB,
            outbound_integration_bytes: 16 * MIB,
            outbound_response_headers: 64,
            log_message_bytes: 8 * KIB,
            log_fields: 32,
            log_lines_per_call: 200,
            state_key_bytes: 512,
            state_value_bytes: 64 * KIB,
            state_total_bytes: MIB,
            callback_updates: 100,
            status_field_bytes: 2 * KIB,
            note_bytes: 16 * KIB,
            reply_headers: 16,
            reply_header_bytes: 4 * KIB,
            reply_body_bytes: 64 * KIB,
            error_bytes: 2 * KIB,
            manifest_string_bytes: KIB,
            manifest_list_items: 256,
            // Above every legitimate transfer (a 1 MiB request, a 16 MiB log line the host cuts,
            // 100,000 refused updates), and copied in tens of milliseconds.
            lift_bytes: 32 * MIB,
        }
    }
}

impl SandboxLimits {
    /// The calls one integration may run at once, as the guest pool applies it:
    /// `max_calls_per_integration`, but at most `max_concurrent_calls - 1` when that is 2 or
    /// more, so one integration's calls never take every slot of the host.
    pub fn effective_calls_per_integration(&self) -> usize {
        super::leave_one(self.max_calls_per_integration, self.max_concurrent_calls)
    }

    /// The guest runtime's threads: `guest_threads`, but with 2 or more at least one more than
    /// [`SandboxLimits::effective_calls_per_integration`], so one integration's calls (even all
    /// looping) never occupy every thread and a neighbour's call starts at once. Raising the
    /// threads, not lowering the calls: a call holds its slot while it waits on the vendor,
    /// when it needs no thread, and one call per integration would serialize every vendor.
    pub fn effective_guest_threads(&self) -> usize {
        let threads = self.guest_threads.max(1);
        if threads >= 2 {
            threads.max(self.effective_calls_per_integration() + 1)
        } else {
            threads
        }
    }

    /// Refuses zeros where a zero would stop every connector (or every call).
    pub fn check(&self) -> Result<(), String> {
        let slots = [
            ("guest_threads", self.guest_threads),
            ("max_concurrent_calls", self.max_concurrent_calls),
            ("max_calls_per_integration", self.max_calls_per_integration),
        ];
        if let Some((name, _)) = slots.iter().find(|(_, v)| *v == 0) {
            return Err(format!("runtime.limits.{name} must be at least 1"));
        }
        // A request the host would send must fit through the copy first.
        if self.lift_bytes < self.outbound_request_bytes + 64 * KIB {
            return Err(format!(
                "runtime.limits.lift_bytes ({}) must be at least runtime.limits.outbound_request_bytes ({}) + 64 KiB",
                self.lift_bytes, self.outbound_request_bytes
            ));
        }
        Ok(())
    }
}

/// `[runtime.pool]`: wasmtime's pooling allocator, which reserves the slots connector instances
/// live in (linear memories, tables, async stacks) once at start-up and reuses them for every
/// call, so a call maps and unmaps nothing. Each linear memory slot is as large as
/// `runtime.max_memory_mib` (so every grant fits) and reserves ~4 GiB of address space, none of
/// it RAM until used. If the pool cannot be reserved (a virtual-memory limit), the host logs a
/// warning and allocates on demand; the start-up log says which is in use.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// `false`: allocate every instance on demand (no reservation, slower calls).
    pub enabled: bool,
    /// Component instances alive at once: one per running call, plus manifest reads at load and
    /// validation. 0: `runtime.limits.max_concurrent_calls` + 16. More calls than this fail to
    /// instantiate (the event is retried), so it must exceed `max_concurrent_calls`.
    pub instances: u32,
    /// Linear memories in the pool, all instances together (Rust components have 1, Python
    /// ones a few). 0: 2 × `instances`.
    pub memories: u32,
    /// Tables in the pool, all instances together. 0: 2 × `instances`.
    pub tables: u32,
    /// Largest table (elements) of one core instance; a component with a larger one is refused
    /// at load.
    pub table_elements: u32,
    /// Bytes of each linear memory kept resident when a call ends and reset in place (only the
    /// pages the call touched, where the kernel has `PAGEMAP_SCAN`, Linux ≥ 6.7) instead of
    /// handed back to the OS: the next call takes no page faults there. Costs up to this much RSS
    /// per warm memory slot.
    pub keep_resident_kib: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            enabled: true,
            instances: 0,
            memories: 0,
            tables: 0,
            table_elements: 65_536,
            keep_resident_kib: 2048,
        }
    }
}

/// Extra component instances beyond the guest slots: manifest reads at load and validation.
const POOL_MARGIN: u32 = 16;

impl PoolSettings {
    /// The component instances of the pool for `limits` (0 → slots + margin).
    pub fn instances_for(&self, limits: &SandboxLimits) -> u32 {
        match self.instances {
            0 => u32::try_from(limits.max_concurrent_calls)
                .unwrap_or(u32::MAX)
                .saturating_add(POOL_MARGIN),
            n => n,
        }
    }

    /// Refuses a pool that cannot hold every guest slot.
    pub fn check(&self, limits: &SandboxLimits) -> Result<(), String> {
        let instances = self.instances_for(limits) as usize;
        if self.enabled && instances <= limits.max_concurrent_calls {
            return Err(format!(
                "runtime.pool.instances ({instances}) must be above \
                 runtime.limits.max_concurrent_calls ({}): every running call holds an instance, \
                 and loading connectors needs a few more",
                limits.max_concurrent_calls
            ));
        }
        if self.enabled && self.table_elements == 0 {
            return Err("runtime.pool.table_elements must be at least 1".into());
        }
        Ok(())
    }
}

/// `n` bytes for people: `4 MiB`, `64 KiB`, `100 bytes`.
pub fn bytes(n: usize) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}
