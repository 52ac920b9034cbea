//! Measurements of a connector call for the benchmark.
//!
//! - [`instantiate_and_call`]: instantiate + call of a trivial export (`list-packages`) of a real
//!   connector through the host's own call path ([`LoadedConnector::list_packages`]: a fresh store
//!   with the sandbox's limiter, deadline and WASI context, instantiation from the `InstancePre`,
//!   the call, the store dropped), and, in the same run on the same engine, wasmtime's floor: an
//!   empty component written in WAT exporting one function, instantiated from an `InstancePre`
//!   into a bare store and called (no WASI, no limiter, no imports); and between the two, the
//!   same connector component instantiated into a bare store and its `list-packages` called
//!   (imports linked as traps: the call makes none), which is wasmtime's own cost for that
//!   component (its core instances, their imports, its memory reset) without the host's sandbox
//!   around it (WASI context, limiter, deadlines, metrics); and the memory floor: the empty
//!   component plus one page of linear memory its call writes to, the least any component with a
//!   memory costs (the pool slot's reset: a `PAGEMAP_SCAN` of the memory and a copy of each page
//!   ever written), which bounds how close a real connector can get to the empty floor.
//! - [`through_guest_pool`]: the same call handed to the guest pool's runtime, as the server does
//!   (adds a cross-thread hand-off).
//!
//! Figures are per call in µs; they are noise while something else uses the CPU.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::Store;

use switchyard::config::limits::SandboxLimits;
use switchyard::wasm::connector::LoadedConnector;
use switchyard::wasm::pool::GuestPool;
use switchyard::wasm::runtime::{CallContext, Runtime};

/// Median and 99th percentile of one measured operation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Figures {
    pub iterations: usize,
    pub median_us: f64,
    pub p99_us: f64,
}

impl Figures {
    /// The figures of `samples` (any order).
    pub fn of(mut samples: Vec<Duration>) -> Figures {
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        Figures {
            iterations: samples.len(),
            median_us: at(0.5),
            p99_us: at(0.99),
        }
    }
}

/// Instantiate + call through the host's path, against wasmtime's floor on the same engine.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstantiateCall {
    /// `list-packages` of the connector through [`LoadedConnector::list_packages`].
    pub host: Figures,
    /// The empty WAT component: bare store, instantiate from its `InstancePre`, call.
    pub floor: Figures,
    /// The same connector component, bare store, instantiate from its `InstancePre`, call: what
    /// wasmtime itself spends on this component; `host` minus this is the host's sandbox.
    pub bare: Figures,
    /// The empty component with one page of linear memory that its call writes to, bare store:
    /// what any component with a memory costs wasmtime (the pool slot's reset of that memory),
    /// the floor a connector cannot go below.
    pub memory_floor: Figures,
    /// The connector measured (`id@version#hash12`).
    pub connector: String,
    /// The engine's instance allocator (pooling with its slots, or on demand).
    pub allocation: String,
}

/// The floor's component: one core module with one function, lifted; no memory, no imports.
const EMPTY_COMPONENT: &str = r#"
(component
  (core module $m (func (export "run") (result i32) i32.const 42))
  (core instance $i (instantiate $m))
  (func (export "run") (result u32) (canon lift (core func $i "run"))))
"#;

/// The memory floor's component: the empty component plus one page of linear memory, which its
/// call writes to (as every call of a real component writes its stack and heap).
const MEMORY_COMPONENT: &str = r#"
(component
  (core module $m
    (memory 1)
    (func (export "run") (result i32) (i32.store (i32.const 1024) (i32.const 42)) i32.const 42))
  (core instance $i (instantiate $m))
  (func (export "run") (result u32) (canon lift (core func $i "run"))))
"#;

/// Calls before timing starts (warm caches, warm pool slots).
const WARM_UP: usize = 200;

/// Measures `iterations` instantiate + call of `connector`'s `list-packages` on `runtime` (the
/// runtime it was loaded with), then of the empty component on the same engine, alternating in
/// blocks so that both see the same machine.
pub async fn instantiate_and_call(
    runtime: &Arc<Runtime>,
    connector: &LoadedConnector,
    iterations: usize,
) -> anyhow::Result<InstantiateCall> {
    let ctx = Arc::new(CallContext::detached());
    let floor = Floor::new(runtime, EMPTY_COMPONENT)?;
    let memory_floor = Floor::new(runtime, MEMORY_COMPONENT)?;
    let bare = Bare::new(runtime, connector)?;
    for _ in 0..WARM_UP {
        host_call(runtime, connector, &ctx).await?;
        floor.call().await?;
        memory_floor.call().await?;
        bare.call().await?;
    }
    let (mut host, mut empty, mut same) = (Vec::new(), Vec::new(), Vec::new());
    let mut memory = Vec::new();
    const BLOCK: usize = 100;
    while host.len() < iterations {
        for _ in 0..BLOCK.min(iterations - host.len()) {
            let started = Instant::now();
            host_call(runtime, connector, &ctx).await?;
            host.push(started.elapsed());
            let started = Instant::now();
            floor.call().await?;
            empty.push(started.elapsed());
            let started = Instant::now();
            bare.call().await?;
            same.push(started.elapsed());
            let started = Instant::now();
            memory_floor.call().await?;
            memory.push(started.elapsed());
        }
    }
    Ok(InstantiateCall {
        host: Figures::of(host),
        floor: Figures::of(empty),
        bare: Figures::of(same),
        memory_floor: Figures::of(memory),
        connector: connector.version_tag(),
        allocation: runtime.allocation().to_string(),
    })
}

/// Measures `iterations` of the same call run on a guest pool (`limits`' threads and slots), as
/// the server runs every connector call: the figure includes the hand-off to the pool's runtime.
pub async fn through_guest_pool(
    runtime: &Arc<Runtime>,
    connector: Arc<LoadedConnector>,
    limits: &SandboxLimits,
    iterations: usize,
) -> anyhow::Result<Figures> {
    let pool = GuestPool::new(limits)?;
    let ctx = Arc::new(CallContext::detached());
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..WARM_UP + iterations {
        let (runtime, connector, ctx) = (runtime.clone(), connector.clone(), ctx.clone());
        let started = Instant::now();
        pool.run("bench", async move {
            host_call(&runtime, &connector, &ctx).await
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))??;
        if i >= WARM_UP {
            samples.push(started.elapsed());
        }
    }
    Ok(Figures::of(samples))
}

async fn host_call(
    runtime: &Runtime,
    connector: &LoadedConnector,
    ctx: &Arc<CallContext>,
) -> anyhow::Result<()> {
    connector
        .list_packages(runtime, ctx.clone())
        .await
        .map(drop)
        .map_err(|e| anyhow::anyhow!("list-packages failed: {e}"))
}

/// The connector's own component, pre-instantiated on the runtime's engine with every import a
/// trap, called into a bare store (the floor's shape, the connector's code).
struct Bare {
    engine: wasmtime::Engine,
    pre: wasmtime::component::InstancePre<()>,
    list_packages: wasmtime::component::ComponentExportIndex,
}

impl Bare {
    fn new(runtime: &Runtime, connector: &LoadedConnector) -> anyhow::Result<Bare> {
        let engine = runtime.engine().clone();
        let component = &connector.compiled.component;
        let interface = format!(
            "switchyard:connector/screening@{}",
            connector.compiled.contract_version
        );
        let screening = component
            .get_export_index(None, &interface)
            .ok_or_else(|| anyhow::anyhow!("the connector exports no `{interface}`"))?;
        let list_packages = component
            .get_export_index(Some(&screening), "list-packages")
            .ok_or_else(|| anyhow::anyhow!("the connector exports no `list-packages`"))?;
        let mut linker = Linker::<()>::new(&engine);
        linker
            .define_unknown_imports_as_traps(component)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(Bare {
            engine,
            pre,
            list_packages,
        })
    }

    async fn call(&self) -> anyhow::Result<()> {
        let (mut store, instance) = instantiate(&self.engine, &self.pre).await?;
        let func = instance
            .get_func(&mut store, self.list_packages)
            .ok_or_else(|| anyhow::anyhow!("`list-packages` is not a function"))?;
        let mut result = [wasmtime::component::Val::Bool(false)];
        func.call_async(&mut store, &[], &mut result)
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        anyhow::ensure!(
            matches!(result[0], wasmtime::component::Val::Result(Ok(_))),
            "the bare connector's `list-packages` failed: {:?}",
            result[0]
        );
        Ok(())
    }
}

/// A fresh store (no data) and `pre` instantiated in it: the bare and floor references' setup.
async fn instantiate(
    engine: &wasmtime::Engine,
    pre: &wasmtime::component::InstancePre<()>,
) -> anyhow::Result<(Store<()>, wasmtime::component::Instance)> {
    let mut store = Store::new(engine, ());
    // The engine interrupts on epochs; a store's deadline starts at 0.
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    Ok((store, instance))
}

/// A reference component exporting `run` (returns 42), pre-instantiated on the runtime's engine.
struct Floor {
    engine: wasmtime::Engine,
    pre: wasmtime::component::InstancePre<()>,
    /// The export, looked up once (as the generated bindings' `*Pre` do).
    run: wasmtime::component::ComponentExportIndex,
}

impl Floor {
    fn new(runtime: &Runtime, wat: &str) -> anyhow::Result<Floor> {
        let bytes = wat::parse_str(wat)?;
        let engine = runtime.engine().clone();
        let component = Component::new(&engine, bytes).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let run = component
            .get_export_index(None, "run")
            .ok_or_else(|| anyhow::anyhow!("the empty component exports no `run`"))?;
        let pre = Linker::<()>::new(&engine)
            .instantiate_pre(&component)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(Floor { engine, pre, run })
    }

    async fn call(&self) -> anyhow::Result<()> {
        let (mut store, instance) = instantiate(&self.engine, &self.pre).await?;
        let run = instance
            .get_typed_func::<(), (u32,)>(&mut store, &self.run)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let (n,) = run
            .call_async(&mut store, ())
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        anyhow::ensure!(n == 42, "the reference component returned {n}");
        Ok(())
    }
}
