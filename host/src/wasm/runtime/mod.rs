//! The WebAssembly runtime: one wasmtime engine, components compiled once and pre-instantiated,
//! and a fresh, sandboxed store for every invocation.
//!
//! Sandbox per invocation: a CPU deadline (epoch interruption, 10 ms ticks) and the same wall-clock
//! deadline around the whole call (covering time spent in host calls), per-store limits on memory,
//! instances, tables and memories (the connector's [`Grant`], see [`limits`]), no filesystem,
//! environment, sockets or clocks beyond WASI's wall clock and randomness, and outbound HTTP only
//! through [`imports`] to approved hosts. A trap, timeout or out-of-memory fails that one
//! invocation with a [`InvokeError`]; the engine and every other call are unaffected.
//!
//! Contract versions: [`contract`] reads which `switchyard:connector/screening@0.x` a component
//! exports; [`bindings`] holds one generated binding per served version, all linked into one
//! linker (their import names differ by version), and [`Pre`] is the pre-instantiated component of
//! whichever version it speaks.
//!
//! Per call, only what holds guest state is new: the `Store` (its instance, memories, tables,
//! resource table, WASI context with the stderr buffer, limiter and deadline). The engine, the
//! linker, the type-checked `InstancePre` and the instance slots ([`alloc`]: the pooling
//! allocator) are built once and shared; the integration's [`CallContext`] (HTTP clients, limits,
//! metrics) is shared by `Arc`.
//!
//! Modules: `alloc` (pooling or on-demand allocation, sized from `[runtime.pool]`), `bindings`
//! (generated, per version),
//! `contract` (version check), `deferred` (a `start-screening` call's `state`, its writes
//! committed before each outbound request or with the call's outcome), `imports` (host imports on neutral types, and the harness seam),
//! `crypto` (the 0.2 `crypto` import), `diagnose` (what a toolchain's error means for the
//! author), `limits` (caps and grants), `output` (bounded guest stderr).

pub mod alloc;
#[doc(hidden)]
pub mod bindings;
pub mod contract;
pub mod crypto;
pub mod deferred;
mod diagnose;
pub mod imports;
pub mod limits;
mod output;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use crate::wasm::types::InvokeError;
use crate::wasm::types::{ExportMismatch, StateQuotaFull};
pub use alloc::Allocation;
pub use contract::{ContractVersion, Surface};
pub use imports::CallContext;
pub use limits::{Caps, Grant};

use crate::config::limits::{PoolSettings, SandboxLimits};
use crate::config::RuntimeConfig;
use crate::metrics::Metrics;
use crate::wasm::cache::{CodeCache, Origin};

/// The epoch tick: the granularity of CPU deadlines.
const TICK: Duration = Duration::from_millis(10);

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("the component does not fit the switchyard:connector contract: {0}")]
    Contract(String),
    #[error("wrong world: {0}")]
    WrongWorld(String),
    #[error("incompatible contract version: {0}")]
    Incompatible(String),
    #[error("the component's manifest call failed: {0}")]
    Manifest(String),
    /// It needs more than the sandbox grants; the message names the limit, its value and the
    /// setting that changes it.
    #[error("the component does not fit this host's sandbox limits: {0}")]
    Limits(String),
}

/// Per-store data: WASI context, limits, and what the host imports need.
pub struct Invocation {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    pub(crate) ctx: Arc<CallContext>,
}

impl WasiView for Invocation {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A pre-instantiated component of either served contract version (exports type-checked).
pub enum Pre {
    V0_1(bindings::Linked<bindings::v0_1::ConnectorPre<Invocation>>),
    V0_2(bindings::Linked<bindings::v0_2::ConnectorPre<Invocation>>),
}

/// Something that instantiates into a fresh store: a version's [`bindings::Linked`] component.
pub trait Instantiate: Send + Sync {
    type Instance: Send + Sync + 'static;
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<Invocation>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = wasmtime::Result<Self::Instance>> + Send + 'a>,
    >;
}

/// A compiled, pre-linked component ready to instantiate cheaply.
pub struct Compiled {
    pub component: Component,
    pub pre: Pre,
    /// Its imports and exports.
    pub surface: Surface,
    /// The contract version it was built against (e.g. `0.1.0`), as its export names it.
    pub contract_version: String,
    /// Whether the machine code came from the on-disk cache.
    pub origin: Origin,
}

/// The engine and linker shared by all connectors.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Invocation>,
    timeout_ms: u64,
    caps: Caps,
    cache: Option<CodeCache>,
    metrics: Arc<Metrics>,
    allocation: Allocation,
}

impl Runtime {
    /// Builds the engine and starts the epoch ticker (a thread that lives as long as the process).
    pub fn new(timeout_ms: u64, caps: Caps) -> anyhow::Result<Arc<Runtime>> {
        Runtime::with_cache(timeout_ms, caps, None)
    }

    /// Like [`Runtime::new`], keeping compiled code in `cache` across restarts (the instance
    /// pool sized from the default `[runtime.pool]` and guest slots).
    pub fn with_cache(
        timeout_ms: u64,
        caps: Caps,
        cache: Option<CodeCache>,
    ) -> anyhow::Result<Arc<Runtime>> {
        let (pool, limits) = (PoolSettings::default(), SandboxLimits::default());
        // Offline tools (`connector test|validate|inspect`) export no metrics: their calls are
        // counted into a registry of their own that nothing reads.
        let metrics = Arc::new(Metrics::default());
        Runtime::build(timeout_ms, caps, &pool, &limits, cache, metrics)
    }

    /// The runtime `[runtime]` describes: its deadline, caps, and the instance pool sized for its
    /// guest slots, counting connector calls into the host's `metrics`. Logs which allocator is
    /// in use.
    pub fn from_config(
        config: &RuntimeConfig,
        cache: Option<CodeCache>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Runtime>> {
        let runtime = Runtime::build(
            config.timeout_ms,
            Caps::of(config),
            &config.pool,
            &config.limits,
            cache,
            metrics,
        )?;
        tracing::info!("wasm runtime: {}", runtime.allocation);
        Ok(runtime)
    }

    fn build(
        timeout_ms: u64,
        caps: Caps,
        pool: &PoolSettings,
        limits: &SandboxLimits,
        cache: Option<CodeCache>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Runtime>> {
        let (engine, allocation) = alloc::engine(engine_config(), pool, limits, caps)?;
        let mut linker = Linker::<Invocation>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
        // Every served version into the same linker: their import names differ by version.
        bindings::v0_1::Connector::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        bindings::v0_2::Connector::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            timeout_ms,
            caps,
            cache,
            metrics,
            allocation,
        }))
    }

    /// Which instance allocator the engine uses (pooling with its slots, or on demand and why).
    pub fn allocation(&self) -> &Allocation {
        &self.allocation
    }

    /// The metrics connector calls are counted into (the host's, handed in by `run`).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The engine (for the compiled-code cache).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The on-disk cache of compiled code, if any (pruned by `crate::retention`).
    pub fn cache(&self) -> Option<&CodeCache> {
        self.cache.as_ref()
    }

    /// The operator's sandbox caps.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// Compiles component bytes off the async executor (or takes them from the cache), checks the
    /// contract version and links them against the contract.
    pub async fn compile(self: &Arc<Self>, bytes: Vec<u8>) -> Result<Compiled, LoadError> {
        let this = self.clone();
        let (component, origin) = tokio::task::spawn_blocking(move || {
            if !wasmparser_is_component(&bytes) {
                return Err(LoadError::NotAComponent(
                    "missing the component-model header (a core module or not wasm at all)".into(),
                ));
            }
            let compiled = match &this.cache {
                Some(cache) => cache.get_or_compile(&this.engine, &bytes),
                None => Component::new(&this.engine, &bytes).map(|c| (c, Origin::Compiled)),
            };
            compiled.map_err(|e| LoadError::NotAComponent(format!("{e:#}")))
        })
        .await
        .map_err(|e| LoadError::NotAComponent(e.to_string()))??;
        self.link(component, origin)
    }

    /// Checks the contract of an already compiled component and links it with the bindings of
    /// the version it speaks.
    pub fn link(&self, component: Component, origin: Origin) -> Result<Compiled, LoadError> {
        let surface = Surface::of(&component, &self.engine);
        let (version, contract_version) = surface.check()?;
        let contract = |e: wasmtime::Error| {
            let text = format!("{e:#}");
            LoadError::Contract(match diagnose::load_hint(&text) {
                Some(hint) => format!("{hint}: {text}"),
                None => text,
            })
        };
        let pre = self.linker.instantiate_pre(&component).map_err(contract)?;
        let pre = match version {
            ContractVersion::V0_1 => Pre::V0_1(
                bindings::v0_1::ConnectorPre::new(pre)
                    .and_then(bindings::v0_1::link)
                    .map_err(contract)?,
            ),
            ContractVersion::V0_2 => Pre::V0_2(
                bindings::v0_2::ConnectorPre::new(pre)
                    .and_then(bindings::v0_2::link)
                    .map_err(contract)?,
            ),
        };
        Ok(Compiled {
            component,
            pre,
            surface,
            contract_version,
            origin,
        })
    }

    /// Runs `call` on a fresh instance of `pre` inside the sandbox, with `grant`'s limits.
    pub async fn invoke<P: Instantiate, R: Send + 'static>(
        &self,
        pre: &P,
        grant: Grant,
        ctx: Arc<CallContext>,
        call: impl for<'a> FnOnce(
            &'a P::Instance,
            &'a mut Store<Invocation>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = wasmtime::Result<R>> + Send + 'a>,
        >,
    ) -> Result<R, InvokeError> {
        let stderr = output::GuestOutput::new();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone());
        if let Some(at) = ctx.wall_clock {
            wasi.wall_clock(Pinned(at));
        }
        let wasi = wasi.build();
        let lift_bytes = ctx.limits.lift_bytes;
        let mut store = Store::new(
            &self.engine,
            Invocation {
                wasi,
                table: ResourceTable::new(),
                limits: grant.store_limits(),
                ctx,
            },
        );
        store.limiter(|s| &mut s.limits);
        // Bounds each copy out of the guest (a result, an import's arguments) before it starts:
        // the copy runs in host code, which the epoch deadline below cannot interrupt.
        store.set_hostcall_fuel(lift_bytes);
        let started = Instant::now();
        let timeout = Duration::from_millis(self.timeout_ms);
        // Yield to the executor on every tick, so a spinning guest shares its thread with the
        // other calls on the guest pool; trap once the deadline has passed.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if started.elapsed() >= timeout {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::Yield(1)
            })
        });

        let run = async {
            let instance = pre
                .instantiate(&mut store)
                .await
                .map_err(|e| classify_instantiate(e, grant))?;
            call(&instance, &mut store)
                .await
                .map_err(|e| classify(e, &stderr, started, grant, lift_bytes))
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(InvokeError::Timeout(self.timeout_ms)),
        }
    }
}

/// A wall clock that reads one instant (an injected clock, [`CallContext::wall_clock`]).
struct Pinned(Duration);

impl wasmtime_wasi::HostWallClock for Pinned {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// The engine settings every runtime (and the benchmark's floor) shares, allocator aside.
pub(crate) fn engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config
}

/// Instantiation fails on limits (instances, initial memory) or on a start function's trap.
fn classify_instantiate(e: wasmtime::Error, grant: Grant) -> InvokeError {
    let text = format!("{e:#}");
    if is_memory_limit(&text) {
        return InvokeError::OutOfMemory(grant.memory_mib);
    }
    InvokeError::Instantiate(output::bounded(&text, output::CHAIN_CAP))
}

/// Turns a wasmtime error into the reason recorded on the event: the cause, the guest's stderr
/// (bounded head and tail: a Python traceback is printed *above* the runtime's generic panic
/// lines), and the error chain with its wasm backtrace (bounded).
fn classify(
    e: wasmtime::Error,
    stderr: &output::GuestOutput,
    started: Instant,
    grant: Grant,
    lift_bytes: usize,
) -> InvokeError {
    if let Some(mismatch) = e.downcast_ref::<ExportMismatch>() {
        return InvokeError::ExportType(mismatch.clone());
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        if *trap == wasmtime::Trap::Interrupt {
            return InvokeError::Timeout(started.elapsed().as_millis() as u64);
        }
    }
    // wasmtime's error type for it is private: its text is what identifies it.
    if e.root_cause().to_string().contains(HOSTCALL_FUEL_EXHAUSTED) {
        return InvokeError::LiftBytes(lift_bytes);
    }
    let chain = format!("{e:?}");
    if is_memory_limit(&format!("{e:#}")) {
        return InvokeError::OutOfMemory(grant.memory_mib);
    }
    let cause = e.root_cause().to_string();
    let said = stderr.text();
    // The author's mistake first, when the toolchain's text shows one.
    let mut reason = diagnose::trap_hint(&said)
        .map(|hint| format!("{hint}\n"))
        .unwrap_or_default();
    reason.push_str(&output::bounded(&cause, output::CAUSE_CAP));
    if !said.is_empty() {
        reason.push_str("\nguest stderr:\n");
        reason.push_str(&said);
    }
    reason.push('\n');
    reason.push_str(&output::bounded(&chain, output::CHAIN_CAP));
    if e.downcast_ref::<StateQuotaFull>().is_some() {
        return InvokeError::StateQuota(reason);
    }
    InvokeError::Trap(reason)
}

/// Part of wasmtime 48's message when a copy out of the guest would pass the hostcall fuel.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

fn is_memory_limit(text: &str) -> bool {
    text.contains("memory") && (text.contains("limit") || text.contains("grow"))
}

/// A component starts with the wasm magic and the component-model layer/version bytes.
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[6..8] == [0x01, 0x00]
}
