//! The WebAssembly runtime: one wasmtime engine, components compiled once and pre-instantiated,
//! and a fresh, sandboxed store for every invocation.
//!
//! Sandbox per invocation: a CPU deadline (epoch interruption, 10 ms ticks) and the same wall-clock
//! deadline around the whole call (covering time spent in host calls), a linear-memory cap, no
//! filesystem, environment, sockets or clocks beyond WASI's wall clock and randomness, and outbound
//! HTTP only through [`imports`] to approved hosts. A trap, timeout or out-of-memory fails that one
//! invocation with a [`InvokeError`]; the engine and every other call are unaffected.

pub mod bindings;
pub mod contract;
mod imports;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use bindings::{Connector, ConnectorPre};
pub use imports::CallContext;

use crate::metrics::Metrics;
use crate::wasm::cache::{CodeCache, Origin};
use crate::wasm::connector::Manifest;
pub use contract::Surface;

/// The epoch tick: the granularity of CPU deadlines.
const TICK: Duration = Duration::from_millis(10);
/// How much of a guest's stderr (panic messages) is kept for the failure reason.
const STDERR_CAP: usize = 64 * 1024;

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
}

/// Why one invocation failed. The connector's own errors are not here: they are values.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("connector trapped: {0}")]
    Trap(String),
    #[error("connector ran past its {0} ms deadline")]
    Timeout(u64),
    #[error("connector exceeded its {0} MiB memory limit")]
    OutOfMemory(usize),
    #[error("connector could not be instantiated: {0}")]
    Instantiate(String),
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

/// A compiled, pre-linked component ready to instantiate cheaply.
pub struct Compiled {
    pub component: Component,
    pub pre: ConnectorPre<Invocation>,
    /// Its imports and exports.
    pub surface: Surface,
    /// The contract version it was built against (e.g. `0.1.0`).
    pub contract_version: String,
    /// Whether the machine code came from the on-disk cache.
    pub origin: Origin,
}

/// The engine and linker shared by all connectors.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Invocation>,
    timeout_ms: u64,
    memory_mb: usize,
    cache: Option<CodeCache>,
    metrics: Arc<Metrics>,
}

impl Runtime {
    /// Builds the engine and starts the epoch ticker (a thread that lives as long as the process).
    pub fn new(timeout_ms: u64, memory_mb: usize) -> anyhow::Result<Arc<Runtime>> {
        Runtime::with_cache(timeout_ms, memory_mb, None)
    }

    /// Like [`Runtime::new`], keeping compiled code in `cache` across restarts.
    pub fn with_cache(
        timeout_ms: u64,
        memory_mb: usize,
        cache: Option<CodeCache>,
    ) -> anyhow::Result<Arc<Runtime>> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut linker = Linker::<Invocation>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
        bindings::Connector::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
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
            memory_mb,
            cache,
            metrics: Arc::new(Metrics::default()),
        }))
    }

    /// The host's metrics (connector calls are counted where they run).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The engine (for the compiled-code cache).
    pub fn engine(&self) -> &Engine {
        &self.engine
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

    /// Checks the contract of an already compiled component and links it.
    pub fn link(&self, component: Component, origin: Origin) -> Result<Compiled, LoadError> {
        let surface = Surface::of(&component, &self.engine);
        let contract_version = surface.check()?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(ConnectorPre::new)
            .map_err(|e| LoadError::Contract(format!("{e:#}")))?;
        Ok(Compiled {
            component,
            pre,
            surface,
            contract_version,
            origin,
        })
    }

    /// Asks a freshly compiled component to describe itself.
    pub async fn manifest(&self, pre: &ConnectorPre<Invocation>) -> Result<Manifest, LoadError> {
        let ctx = Arc::new(CallContext::detached());
        let m = self
            .invoke(pre, ctx, |inst, store| {
                Box::pin(async move {
                    inst.switchyard_connector_screening()
                        .call_manifest(store)
                        .await
                })
            })
            .await
            .map_err(|e| LoadError::Manifest(e.to_string()))?;
        Ok(Manifest::from(m))
    }

    /// Runs `call` on a fresh instance of `pre` inside the sandbox.
    pub async fn invoke<R: Send + 'static>(
        &self,
        pre: &ConnectorPre<Invocation>,
        ctx: Arc<CallContext>,
        call: impl for<'a> FnOnce(
            &'a Connector,
            &'a mut Store<Invocation>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = wasmtime::Result<R>> + Send + 'a>,
        >,
    ) -> Result<R, InvokeError> {
        let stderr = MemoryOutputPipe::new(STDERR_CAP);
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.memory_mb * 1024 * 1024)
            .instances(8)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.engine,
            Invocation {
                wasi,
                table: ResourceTable::new(),
                limits,
                ctx,
            },
        );
        store.limiter(|s| &mut s.limits);
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
                .instantiate_async(&mut store)
                .await
                .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;
            call(&instance, &mut store)
                .await
                .map_err(|e| self.classify(e, &stderr, started))
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(InvokeError::Timeout(self.timeout_ms)),
        }
    }

    /// Turns a wasmtime error into the reason recorded on the event.
    fn classify(
        &self,
        e: wasmtime::Error,
        stderr: &MemoryOutputPipe,
        started: Instant,
    ) -> InvokeError {
        let text = format!("{e:#}");
        if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
            if *trap == wasmtime::Trap::Interrupt {
                return InvokeError::Timeout(started.elapsed().as_millis() as u64);
            }
        }
        if text.contains("memory") && (text.contains("limit") || text.contains("grow")) {
            return InvokeError::OutOfMemory(self.memory_mb);
        }
        // A host import refused the call (a sandbox limit): its reason, not the backtrace.
        if e.downcast_ref::<wasmtime::Trap>().is_none() {
            let cause = e.root_cause().to_string();
            if cause.starts_with("state.set refused") || cause.contains("is unavailable") {
                return InvokeError::Trap(cause);
            }
        }
        let guest_said = String::from_utf8_lossy(&stderr.contents())
            .trim()
            .to_string();
        let last = guest_said.lines().rev().take(3).collect::<Vec<_>>();
        if last.is_empty() {
            InvokeError::Trap(first_line(&text))
        } else {
            let said: Vec<&str> = last.into_iter().rev().collect();
            InvokeError::Trap(format!("{} ({})", first_line(&text), said.join(" | ")))
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

/// A component starts with the wasm magic and the component-model layer/version bytes.
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[6..8] == [0x01, 0x00]
}
