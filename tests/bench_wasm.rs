//! The benchmark's Wasm-side figures, as functions returning plain structs (the bench binary
//! prints them):
//!
//! - [`instantiate_call`] → [`InstantiateCallReport`]: instantiate + call of a trivial export
//!   (`list-packages` of `misbehave.wasm`) through the host's call path, median and p99 µs, the
//!   same handed to the guest pool as the server does, and wasmtime's floor (an empty WAT
//!   component on the same engine) measured in the same run. See
//!   `switchyard_testkit::bench`.
//! - [`native_vs_wasm`] → [`NativeVsWasm`]: the same connector logic (`plugins/twin`,
//!   `twin::connector`) called as a Wasm component (`twin.wasm`, through
//!   `LoadedConnector::start_screening`) and natively (the same module linked into this binary,
//!   its `Host` calling the host's `CallContext` directly), each call inviting at the Certn
//!   simulator through the host's outbound HTTP (same policy checks, same client) and mapping
//!   the answer to a status, both on the guest pool with the same concurrency. This is the ratio
//!   at the level of the host's connector call, **not** end to end: the Lever intake, the store
//!   and the Lever write-back around it are the same code for both and are not included.
//!   Differences that remain by design: the component is built like every plugin (`opt-level =
//!   "s"`, LTO), the native twin with the host's release profile; the native logic blocks its
//!   thread on the host's HTTP future (`block_in_place`, so tokio moves the guest pool's other
//!   work to another thread) where a component's fiber suspends instead — on a machine whose
//!   CPUs are busy with other work those extra threads get the native side a larger CPU share.
//!   Concurrency 1 compares per-call work alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::config::limits::SandboxLimits;
use switchyard::config::{RuntimeConfig, Secret};
use switchyard::wasm::connector::{CallError, LoadedConnector, ScreeningRequest, Started};
use switchyard::wasm::policy::OutboundClients;
use switchyard::wasm::registry::Registry;
use switchyard::wasm::runtime::imports::{self, CallContext, LiveHttp};
use switchyard::wasm::runtime::Runtime;
use switchyard_sim::certn::{CertnOptions, CertnSim};
use switchyard_testkit::bench::{self, Figures};

/// Instantiate + call figures (µs per call).
#[derive(Debug, Clone)]
pub struct InstantiateCallReport {
    /// `list-packages` through `LoadedConnector::list_packages` (fresh store, limiter, deadline,
    /// WASI context, instantiation from the `InstancePre`, call).
    pub host: Figures,
    /// The same call run on the guest pool (adds the hand-off to the pool's threads).
    pub guest_pool: Figures,
    /// wasmtime's floor: the empty component, bare store, same engine, same run.
    pub floor: Figures,
    /// The same connector component in a bare store (imports as traps), same engine, same run:
    /// wasmtime's cost for this component without the host's sandbox around the call.
    pub bare: Figures,
    /// The empty component with one page of memory its call writes to, bare store, same engine,
    /// same run: the least any component with a linear memory costs.
    pub memory_floor: Figures,
    /// The connector measured, `id@version#hash12`.
    pub connector: String,
    /// The instance allocator in use (pooling with its slots, or on demand).
    pub allocation: String,
}

/// Measures instantiate + call `iterations` times with the server's default `[runtime]`.
pub async fn instantiate_call(iterations: usize) -> anyhow::Result<InstantiateCallReport> {
    instantiate_call_with(&RuntimeConfig::default(), iterations).await
}

/// Like [`instantiate_call`] with another `[runtime]` (e.g. `pool.enabled = false`, to compare
/// with on-demand allocation).
pub async fn instantiate_call_with(
    config: &RuntimeConfig,
    iterations: usize,
) -> anyhow::Result<InstantiateCallReport> {
    let registry = Registry::new(Runtime::from_config(config, None, Default::default())?);
    let bytes = std::fs::read(crate::component("misbehave"))?;
    let connector = Arc::new(registry.load(bytes, "bench").await?);
    let runtime = registry.runtime();
    let figures = bench::instantiate_and_call(runtime, &connector, iterations).await?;
    let guest_pool =
        bench::through_guest_pool(runtime, connector, &config.limits, iterations).await?;
    Ok(InstantiateCallReport {
        host: figures.host,
        guest_pool,
        floor: figures.floor,
        bare: figures.bare,
        memory_floor: figures.memory_floor,
        connector: figures.connector,
        allocation: figures.allocation,
    })
}

/// Native vs Wasm, the same connector logic, at the level of the host's connector call.
#[derive(Debug, Clone)]
pub struct NativeVsWasm {
    /// Calls per side (each one invitation at the vendor simulator).
    pub calls: usize,
    /// Calls in flight at once (guest-pool slots).
    pub concurrency: usize,
    /// Invitations per second, native.
    pub native_per_s: f64,
    /// Invitations per second, Wasm.
    pub wasm_per_s: f64,
    /// `wasm_per_s / native_per_s`.
    pub ratio: f64,
    /// Per-call latency, native (µs).
    pub native: Figures,
    /// Per-call latency, Wasm (µs).
    pub wasm: Figures,
    /// What was measured, in words (for the table's notes).
    pub level: &'static str,
}

const LEVEL: &str = "connector call (start-screening + vendor round trip through the host's \
                     outbound HTTP, on the guest pool); not end to end";

/// Runs `calls` invitations per side, `concurrency` at a time, alternating two rounds of each.
pub async fn native_vs_wasm(calls: usize, concurrency: usize) -> anyhow::Result<NativeVsWasm> {
    let concurrency = concurrency.max(1);
    let vendor = CertnSim::start(CertnOptions {
        step_delay: None,
        ..CertnOptions::default()
    })
    .await?;
    let config = RuntimeConfig::default();
    let limits = SandboxLimits {
        max_concurrent_calls: concurrency,
        max_calls_per_integration: concurrency,
        ..config.limits.clone()
    };
    let registry = Registry::new(Runtime::from_config(&config, None, Default::default())?);
    let bytes = std::fs::read(crate::component("twin"))?;
    let wasm = Arc::new(registry.load(bytes, "bench").await?);
    let runtime = registry.runtime().clone();
    let pool = Arc::new(switchyard::wasm::pool::GuestPool::new(&limits)?);
    let ctx = Arc::new(context(&vendor, Arc::new(limits))?);
    let side = |native: bool| Side {
        native,
        runtime: runtime.clone(),
        wasm: wasm.clone(),
        ctx: ctx.clone(),
        pool: pool.clone(),
    };
    // Warm both (connections, pool slots, caches), then two rounds each, interleaved.
    side(false).run(100, concurrency, "warm-w").await?;
    side(true).run(100, concurrency, "warm-n").await?;
    let (mut w, mut n) = (Round::default(), Round::default());
    for round in 0..2 {
        w.add(
            side(false)
                .run(calls / 2, concurrency, &format!("w{round}"))
                .await?,
        );
        n.add(
            side(true)
                .run(calls / 2, concurrency, &format!("n{round}"))
                .await?,
        );
    }
    let (native_per_s, wasm_per_s) = (n.per_s(), w.per_s());
    Ok(NativeVsWasm {
        calls: n.samples.len(),
        concurrency,
        native_per_s,
        wasm_per_s,
        ratio: wasm_per_s / native_per_s,
        native: Figures::of(n.samples),
        wasm: Figures::of(w.samples),
        level: LEVEL,
    })
}

/// The calls' context: the vendor simulator approved (loopback), its URL and key as settings.
fn context(vendor: &CertnSim, limits: Arc<SandboxLimits>) -> anyhow::Result<CallContext> {
    let base = vendor.api_base();
    let host = reqwest::Url::parse(&base)?;
    let approved = format!(
        "{}:{}",
        host.host_str().unwrap_or("127.0.0.1"),
        host.port_or_known_default().unwrap_or(80)
    );
    let mut ctx = CallContext::detached();
    ctx.detached = false;
    ctx.integration_id = "bench".into();
    ctx.connector_id = twin::connector::ID.into();
    ctx.settings = BTreeMap::from([(twin::connector::KEY_API_BASE.into(), base)]);
    ctx.secrets = BTreeMap::from([(
        twin::connector::KEY_API_KEY.into(),
        Secret::new(vendor.api_key()),
    )]);
    ctx.allowed_hosts = vec![approved];
    ctx.allow_loopback = true;
    ctx.http_timeout = Duration::from_secs(10);
    ctx.http = Arc::new(LiveHttp::new(
        OutboundClients::new()?.for_policy(true),
        limits.clone(),
        Arc::default(),
    ));
    ctx.limits = limits;
    Ok(ctx)
}

#[derive(Default)]
struct Round {
    samples: Vec<Duration>,
    elapsed: Duration,
}

impl Round {
    fn add(&mut self, other: Round) {
        self.samples.extend(other.samples);
        self.elapsed += other.elapsed;
    }

    fn per_s(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One side of the comparison.
#[derive(Clone)]
struct Side {
    native: bool,
    runtime: Arc<Runtime>,
    wasm: Arc<LoadedConnector>,
    ctx: Arc<CallContext>,
    pool: Arc<switchyard::wasm::pool::GuestPool>,
}

impl Side {
    /// `calls` invitations, `concurrency` callers; distinct idempotency keys (`tag`-n).
    async fn run(&self, calls: usize, concurrency: usize, tag: &str) -> anyhow::Result<Round> {
        let started = Instant::now();
        let mut callers = tokio::task::JoinSet::new();
        for c in 0..concurrency {
            let (side, tag) = (self.clone(), tag.to_string());
            let mine = (c..calls).step_by(concurrency).collect::<Vec<_>>();
            callers.spawn(async move {
                let mut samples = Vec::with_capacity(mine.len());
                for i in mine {
                    let t = Instant::now();
                    side.call(request(&format!("{tag}-{i}"))).await?;
                    samples.push(t.elapsed());
                }
                anyhow::Ok(samples)
            });
        }
        let mut samples = Vec::with_capacity(calls);
        while let Some(done) = callers.join_next().await {
            samples.extend(done??);
        }
        Ok(Round {
            samples,
            elapsed: started.elapsed(),
        })
    }

    /// One `start-screening`, on the guest pool like every connector call of the server.
    async fn call(&self, req: ScreeningRequest) -> anyhow::Result<()> {
        let side = self.clone();
        let order = self
            .pool
            .run("bench", async move {
                if side.native {
                    // The native logic is synchronous like a guest: it blocks its thread while
                    // the host's async import runs, as a component's fiber waits on it.
                    tokio::task::block_in_place(|| native::start_screening(&side.ctx, &req))
                        .map(|s| s.order_ref)
                        .map_err(|e| e.to_string())
                } else {
                    side.wasm
                        .start_screening(&side.runtime, side.ctx.clone(), &req)
                        .await
                        .map(|s| s.order_ref)
                        .map_err(|e| e.to_string())
                }
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .map_err(|e| anyhow::anyhow!("start-screening failed: {e}"))?;
        anyhow::ensure!(order.is_some(), "the vendor placed no order");
        Ok(())
    }
}

fn request(key: &str) -> ScreeningRequest {
    ScreeningRequest {
        idempotency_key: key.to_string(),
        name: "Ada Lovelace".into(),
        emails: vec![format!("{key}@example.com")],
        phones: vec![],
        opportunity_id: format!("opp-{key}"),
        opportunity_tags: vec![],
        posting_id: None,
        posting_name: None,
        posting_tags: vec![],
        stage: None,
        package: Some("Basic".into()),
    }
}

/// The twin linked natively: the SDK's `Host` over the host's `CallContext` (the same imports a
/// component reaches through its bindings, minus the canonical ABI).
mod native {
    use super::*;
    use switchyard::wasm::connector::{Note, Status};
    use switchyard_connector as sdk;

    struct NativeHost<'a> {
        ctx: &'a CallContext,
        handle: tokio::runtime::Handle,
    }

    /// Converts like the host's bindings do, calls the twin's logic, converts back.
    pub fn start_screening(
        ctx: &CallContext,
        req: &ScreeningRequest,
    ) -> Result<Started, CallError> {
        let host = NativeHost {
            ctx,
            handle: tokio::runtime::Handle::current(),
        };
        let request = sdk::ScreeningRequest {
            idempotency_key: req.idempotency_key.clone(),
            candidate: sdk::Candidate {
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
        match twin::connector::start_screening(&host, &request) {
            Ok(started) => Ok(Started {
                order_ref: started.order_ref,
                status: status(started.status),
            }),
            Err(sdk::ConnectorError::Config(m)) => Err(CallError::Config(m)),
            Err(sdk::ConnectorError::Transient(m)) => Err(CallError::Transient(m)),
            Err(sdk::ConnectorError::Rejected(m)) => Err(CallError::Rejected(m)),
        }
    }

    fn status(s: sdk::Status) -> Status {
        use sdk::ScreeningState as S;
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

    impl sdk::Host for NativeHost<'_> {
        fn send(
            &self,
            request: &sdk::OutgoingRequest,
        ) -> Result<sdk::HttpResponse, sdk::HttpError> {
            let request = imports::OutgoingRequest {
                method: request.method.clone(),
                url: request.url.clone(),
                headers: request.headers.clone(),
                body: request.body.clone(),
                timeout_ms: request.timeout_ms,
            };
            match self.handle.block_on(self.ctx.send(request)) {
                Ok(r) => Ok(sdk::HttpResponse {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                }),
                Err(imports::HttpError::Denied(m)) => Err(sdk::HttpError::Denied(m)),
                Err(imports::HttpError::Timeout) => Err(sdk::HttpError::Timeout),
                Err(imports::HttpError::Connection(m)) => Err(sdk::HttpError::Connection(m)),
                Err(imports::HttpError::Invalid(m)) => Err(sdk::HttpError::Invalid(m)),
            }
        }
        fn integration_id(&self) -> String {
            self.ctx.integration_id.clone()
        }
        fn setting(&self, key: &str) -> Option<String> {
            self.ctx.settings.get(key).cloned()
        }
        fn secret(&self, key: &str) -> Option<String> {
            self.ctx.secrets.get(key).map(|s| s.expose().to_string())
        }
        fn packages(&self) -> Vec<sdk::Package> {
            Vec::new()
        }
        fn callback_url(&self) -> String {
            self.ctx.callback_url.clone()
        }
        fn state_get(&self, key: &str) -> Option<String> {
            self.ctx.state_get(key).ok().flatten()
        }
        fn state_set(&self, key: &str, value: &str) {
            let _ = self.ctx.state_set(key, value);
        }
        fn state_set_for_screening(&self, idempotency_key: &str, key: &str, value: &str) {
            let _ = self
                .ctx
                .state_set_for_screening(idempotency_key, key, value);
        }
        fn state_delete(&self, key: &str) {
            let _ = self.ctx.state_delete(key);
        }
        fn log(&self, _level: sdk::Level, _message: &str, _fields: &[(&str, &str)]) {}
        fn sha256(&self, data: &[u8]) -> Vec<u8> {
            switchyard::wasm::runtime::crypto::sha256(data)
        }
        fn hmac_sha256(&self, key: &[u8], message: &[u8]) -> Vec<u8> {
            switchyard::wasm::runtime::crypto::hmac_sha256(key, message)
        }
        fn constant_time_eq(&self, a: &[u8], b: &[u8]) -> bool {
            switchyard::wasm::runtime::crypto::constant_time_eq(a, b)
        }
        fn verify_hmac_sha256(
            &self,
            _key: &[u8],
            _message: &[u8],
            _signature: &str,
            _encoding: sdk::Encoding,
        ) -> bool {
            false
        }
        fn encode(&self, _data: &[u8], _encoding: sdk::Encoding) -> String {
            String::new()
        }
        fn decode(&self, _text: &str, _encoding: sdk::Encoding) -> Option<Vec<u8>> {
            None
        }
        fn now(&self) -> i64 {
            switchyard::clock::now_secs()
        }
    }
}
