//! Loading a component and running a scenario's steps on it: one wasmtime engine configured as the
//! host's (component model, epoch deadlines, memory and instance caps, WASI p2 with nothing
//! preopened), a fresh store per step, the wall clock pinned to the step's `now`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostWallClock, WasiCtxBuilder};

use super::matching::{self, Problem};
use super::ordered::Ordered;
use super::scenario::{Call, Request, Scenario, Step};
use super::values;
use super::world::bindings::switchyard::connector::types;
use super::world::bindings::{Connector, ConnectorPre};
use super::world::{Sandbox, Trace, World};
use super::{Options, StepReport};
use crate::wasm::cache::{CodeCache, Origin};
use crate::wasm::runtime::crypto::{self as host_crypto, Encoding};
use crate::wasm::runtime::{Caps, Grant, Surface};

/// The epoch tick (as the host's).
const TICK: Duration = Duration::from_millis(10);
/// Guest stderr kept per call.
const STDERR_CAP: usize = 64 * 1024;

/// A compiled component ready to instantiate.
pub struct Loaded {
    pub pre: ConnectorPre<Sandbox>,
    pub engine: Engine,
    pub contract: String,
    pub bytes: usize,
    pub origin: Origin,
    pub load_time: Duration,
}

/// Compiles (or takes from `cache`) and links a contract-0.2 component; the error says why not.
pub fn load(bytes: &[u8], cache: Option<&Path>) -> Result<Loaded, String> {
    if !(bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[6..8] == [0x01, 0x00]) {
        return Err("not a WebAssembly component (a core module, or not wasm at all)".into());
    }
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    let engine = Engine::new(&config).map_err(|e| format!("cannot start wasmtime: {e}"))?;
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("harness-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .map_err(|e| format!("cannot start the epoch ticker: {e}"))?;
    let started = Instant::now();
    let (component, origin) = match cache {
        Some(dir) => CodeCache::new(dir.to_path_buf()).get_or_compile(&engine, bytes),
        None => Component::new(&engine, bytes).map(|c| (c, Origin::Compiled)),
    }
    .map_err(|e| format!("not a valid component: {e:#}"))?;
    let load_time = started.elapsed();
    let surface = Surface::of(&component, &engine);
    let screening = surface
        .exports
        .iter()
        .find(|n| n.starts_with("switchyard:connector/screening@"))
        .ok_or_else(|| {
            format!(
                "wrong world: no `switchyard:connector/screening` export (exports: {})",
                surface.exports.join(", ")
            )
        })?;
    let contract = screening
        .split_once('@')
        .map(|(_, v)| v)
        .unwrap_or("")
        .to_string();
    if !contract.starts_with("0.2.") {
        return Err(format!(
            "the component speaks contract {contract}; `connector test` runs contract 0.2.* \
             components (rebuild against wit/connector.wit)"
        ));
    }
    let mut linker = Linker::<Sandbox>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| e.to_string())?;
    Connector::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(|e| e.to_string())?;
    let pre = linker
        .instantiate_pre(&component)
        .and_then(ConnectorPre::new)
        .map_err(|e| format!("the component does not fit the contract: {e:#}"))?;
    Ok(Loaded {
        pre,
        engine,
        contract,
        bytes: bytes.len(),
        origin,
        load_time,
    })
}

/// A wall clock that reads a fixed second.
struct Pinned(Duration);

impl HostWallClock for Pinned {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// How one call ended.
pub enum Outcome {
    Ok(Value),
    Error(Value),
    Trap(String),
}

/// The sandbox one call gets: the host's grant (`wasm::runtime::limits`, default caps) and the
/// deadline.
#[derive(Clone, Copy)]
pub struct Limits {
    pub grant: Grant,
    pub timeout_ms: u64,
}

impl Limits {
    /// While nothing is known about the component (reading its manifest): the caps.
    pub fn bootstrap(timeout_ms: u64) -> Limits {
        Limits {
            grant: Caps::default().ceiling(),
            timeout_ms,
        }
    }

    /// What a host with the default caps grants a connector whose manifest asks for `needs`, or
    /// why it would refuse it.
    pub fn granted(needs: &types::ResourceNeeds, timeout_ms: u64) -> Result<Limits, String> {
        let needs = crate::wasm::connector::Limits {
            memory_mib: needs.memory_mib,
            instances: needs.instances,
        };
        Ok(Limits {
            grant: Caps::default().grant(&needs).map_err(|e| e.to_string())?,
            timeout_ms,
        })
    }
}

/// Runs `call` on a fresh instance; returns the world back with the outcome and timings.
pub fn call(
    loaded: &Loaded,
    world: World,
    now: i64,
    limits: Limits,
    f: impl FnOnce(&Connector, &mut Store<Sandbox>) -> wasmtime::Result<Outcome>,
) -> (World, Outcome, Duration, Duration) {
    let stderr = MemoryOutputPipe::new(STDERR_CAP);
    let wasi = WasiCtxBuilder::new()
        .stderr(stderr.clone())
        .wall_clock(Pinned(Duration::from_secs(now.max(0) as u64)))
        .build();
    let store_limits = limits.grant.store_limits();
    let mut store = Store::new(
        &loaded.engine,
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            limits: store_limits,
            world,
        },
    );
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(limits.timeout_ms / TICK.as_millis() as u64 + 1);
    store.epoch_deadline_trap();
    let t0 = Instant::now();
    let instance = loaded.pre.instantiate(&mut store);
    let instantiated = t0.elapsed();
    let t1 = Instant::now();
    let outcome = match instance {
        Err(e) => Outcome::Trap(explain(&e, &stderr, limits, "could not be instantiated")),
        Ok(instance) => match f(&instance, &mut store) {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Trap(explain(&e, &stderr, limits, "trapped")),
        },
    };
    let called = t1.elapsed();
    (store.into_data().world, outcome, instantiated, called)
}

/// A trap's reason in plain words, with the guest's whole stderr (a Python traceback) below it.
fn explain(e: &wasmtime::Error, stderr: &MemoryOutputPipe, limits: Limits, what: &str) -> String {
    let text = format!("{e:#}");
    let mut reason = if matches!(
        e.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        format!("ran past its {} ms deadline", limits.timeout_ms)
    } else if text.contains("instance count too high") || text.contains("instance limit") {
        format!(
            "{what}: {} — the sandbox allows {} core instances: raise the manifest's limits.instances",
            first_line(&text),
            limits.grant.instances
        )
    } else if text.contains("memory") && (text.contains("limit") || text.contains("grow")) {
        format!(
            "{what}: {} — the sandbox allows {} MiB of linear memory: raise the manifest's limits.memory-mib",
            first_line(&text),
            limits.grant.memory_mib
        )
    } else {
        format!("{what}: {}", first_line(&text))
    };
    let said = String::from_utf8_lossy(&stderr.contents())
        .trim_end()
        .to_string();
    if !said.is_empty() {
        reason.push_str("\nguest stderr:\n");
        reason.push_str(&said);
    }
    reason
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

/// A request or response body: a string as UTF-8, other JSON compact, or base64.
pub fn body_bytes(body: Option<&Ordered>, base64: Option<&str>) -> Result<Vec<u8>, String> {
    if let Some(b64) = base64 {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("body-base64 is not base64: {e}"));
    }
    Ok(match body {
        None | Some(Ordered::Null) => Vec::new(),
        Some(Ordered::String(s)) => s.as_bytes().to_vec(),
        Some(other) => other.to_compact().into_bytes(),
    })
}

/// The WIT `http-request` of a callback step, with `sign` headers computed at `now`.
fn callback_request(
    req: &Request,
    secrets: &BTreeMap<String, String>,
    now: i64,
) -> Result<types::HttpRequest, String> {
    let body = body_bytes(req.body.as_ref(), req.body_base64.as_deref())?;
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .flatten()
        .map(|(k, v)| (k.to_lowercase(), v.clone()))
        .collect();
    if let Some(sign) = &req.sign {
        let key = match (&sign.secret_value, &sign.secret) {
            (Some(v), _) => v.clone(),
            (None, Some(name)) => secrets.get(name).cloned().unwrap_or_default(),
            (None, None) => String::new(),
        };
        let timestamp = (now + sign.timestamp_offset).to_string();
        let template = sign
            .message
            .as_deref()
            .unwrap_or("{timestamp}.{body}")
            .replace("{timestamp}", &timestamp);
        let message = match template.split_once("{body}") {
            Some((before, after)) => [before.as_bytes(), &body, after.as_bytes()].concat(),
            None => template.into_bytes(),
        };
        let mac = host_crypto::hmac_sha256(key.as_bytes(), &message);
        for (name, value) in &sign.headers {
            let value = value
                .replace("{timestamp}", &timestamp)
                .replace("{hmac-hex}", &host_crypto::encode(&mac, Encoding::Hex))
                .replace(
                    "{hmac-base64}",
                    &host_crypto::encode(&mac, Encoding::Base64),
                );
            headers.push((name.to_lowercase(), value));
        }
    }
    Ok(types::HttpRequest {
        method: req.method.clone().unwrap_or_else(|| "POST".into()),
        path: req.path.clone().unwrap_or_else(|| "/".into()),
        query: req.query.clone().unwrap_or_default(),
        headers,
        body,
    })
}

fn screening_request(req: &Request) -> types::ScreeningRequest {
    let c = req.candidate.as_ref();
    types::ScreeningRequest {
        idempotency_key: req.idempotency_key.clone().unwrap_or_default(),
        candidate: types::Candidate {
            name: c.map(|c| c.name.clone()).unwrap_or_default(),
            emails: c.map(|c| c.emails.clone()).unwrap_or_default(),
            phones: c.map(|c| c.phones.clone()).unwrap_or_default(),
        },
        opportunity_id: req.opportunity_id.clone().unwrap_or_default(),
        opportunity_tags: req.opportunity_tags.clone().unwrap_or_default(),
        posting_id: req.posting_id.clone(),
        posting_tags: req.posting_tags.clone().unwrap_or_default(),
        stage: req.stage.clone(),
        package: req.package.clone(),
    }
}

/// Calls `manifest` with every import failing, as the host does when it loads a component.
pub fn manifest(
    loaded: &Loaded,
    world: World,
    now: i64,
    opts: &Options,
) -> (World, Result<types::Manifest, String>, StepReport) {
    let mut world = world;
    world.in_manifest = true;
    let mut found = None;
    let (mut world, outcome, inst, dur) = call(
        loaded,
        world,
        now,
        Limits::bootstrap(opts.timeout_ms),
        |c, store| {
            let m = c.switchyard_connector_screening().call_manifest(store)?;
            let v = values::manifest(&m);
            found = Some(m);
            Ok(Outcome::Ok(v))
        },
    );
    world.in_manifest = false;
    let mut report = StepReport::new("manifest".into(), inst, dur);
    report.problems.append(&mut world.problems);
    let manifest = match (outcome, found) {
        (Outcome::Ok(_), Some(m)) => Ok(m),
        (Outcome::Trap(why), _) => Err(why),
        _ => Err("no manifest".into()),
    };
    (world, manifest, report)
}

/// Runs one step; the state carries over in the returned world.
pub fn step(
    loaded: &Loaded,
    scenario: &Scenario,
    manifest: &types::Manifest,
    mut world: World,
    index: usize,
    step: &Step,
    opts: &Options,
) -> Result<(World, StepReport), String> {
    let name = step
        .name
        .clone()
        .unwrap_or_else(|| format!("{}: {}", index + 1, step.call.name()));
    let now = step
        .now
        .or(scenario.now)
        .unwrap_or_else(crate::clock::now_secs);
    for (key, value) in &step.given_state {
        match value {
            Some(v) => world.state.insert(key.clone(), v.clone()),
            None => world.state.remove(key),
        };
    }
    world.exchanges = step.http.iter().cloned().collect();
    world.sent = 0;
    world.trace.clear();
    world.logs.clear();
    world.problems.clear();
    let default_req = Request::default();
    let req = step.request.as_ref().unwrap_or(&default_req);
    let at = format!("steps[{index}]");
    let callback = match step.call {
        Call::HandleCallback => Some(
            callback_request(req, &scenario.config.secrets, now)
                .map_err(|e| format!("{at}: {e}"))?,
        ),
        _ => None,
    };
    let screening = screening_request(req);
    let limits = Limits::granted(&manifest.limits, opts.timeout_ms)?;
    let kind = step.call;
    let (mut world, outcome, inst, dur) = call(loaded, world, now, limits, |c, store| {
        let s = c.switchyard_connector_screening();
        let out = match kind {
            Call::StartScreening => s
                .call_start_screening(&mut *store, &screening)?
                .map(|v| values::started(&v)),
            Call::HandleCallback => {
                let req = callback.as_ref().expect("built above");
                s.call_handle_callback(&mut *store, req)?
                    .map(|v| values::callback(&v))
            }
            Call::ListPackages => s
                .call_list_packages(&mut *store)?
                .map(|v| values::packages(&v)),
            Call::Manifest => Ok(values::manifest(&s.call_manifest(&mut *store)?)),
        };
        Ok(match out {
            Ok(v) => Outcome::Ok(v),
            Err(e) => Outcome::Error(values::error(&e)),
        })
    });
    let mut report = StepReport::new(name, inst, dur);
    let problems = &mut report.problems;
    problems.append(&mut world.problems);
    let expect = &step.expect;
    let note = |problems: &mut Vec<Problem>, path: &str, expected: String, got: String| {
        problems.push(Problem {
            path: path.into(),
            expected,
            got,
        })
    };
    match &outcome {
        Outcome::Trap(why) => {
            if !expect.trap {
                note(problems, "call", "no trap".into(), format!("a trap: {why}"));
            }
        }
        Outcome::Error(e) => {
            if expect.trap {
                note(problems, "call", "a trap".into(), format!("error {e}"));
            } else if let Some(want) = &expect.error {
                matching::check(want, Some(e), "error", problems);
            } else {
                note(
                    problems,
                    "call",
                    "ok".into(),
                    format!(
                        "error {}: {}",
                        e["kind"].as_str().unwrap_or("?"),
                        e["message"].as_str().unwrap_or("")
                    ),
                );
            }
        }
        Outcome::Ok(v) => {
            if expect.trap {
                note(
                    problems,
                    "call",
                    "a trap".into(),
                    format!("ok {}", matching::show(Some(v))),
                );
            } else if let Some(want) = &expect.error {
                note(
                    problems,
                    "call",
                    format!("error {want}"),
                    format!("ok {}", matching::show(Some(v))),
                );
            } else if let Some(want) = &expect.ok {
                matching::check(want, Some(v), "result", problems);
            }
        }
    }
    for (key, want) in expect.state.iter().flatten() {
        let got = world.state.get(key);
        let fine = match want {
            Value::Bool(true) => got.is_some(),
            Value::Null => got.is_none(),
            Value::String(s) => got == Some(s),
            _ => false,
        };
        if !fine {
            note(
                problems,
                &format!("state {key:?}"),
                if *want == Value::Bool(true) {
                    "a value".into()
                } else {
                    matching::show(Some(want))
                },
                got.map(|g| Value::from(g.clone()).to_string())
                    .unwrap_or_else(|| "nothing".into()),
            );
        }
    }
    if let Some(logs) = &expect.logs {
        let text = world.logs.join("\n");
        let parts: Vec<&Value> = match &logs.contain {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(one) => vec![one],
            None => vec![],
        };
        for part in parts {
            if !part.as_str().is_some_and(|p| text.contains(p)) {
                note(
                    problems,
                    "logs",
                    format!("to contain {part}"),
                    format!("{} line(s)", world.logs.len()),
                );
            }
        }
    }
    if let Some(first) = world.exchanges.front() {
        note(
            problems,
            "http",
            format!(
                "{} more request(s), next {} {}",
                world.exchanges.len(),
                first.method,
                first.url
            ),
            "none".into(),
        );
    }
    // Always: labels are the manifest's, and no secret reaches what the host keeps or shows.
    let mut kept = world.logs.join("\n");
    kept.push_str(&serde_json::to_string(&world.state).unwrap_or_default());
    match &outcome {
        Outcome::Ok(v) => {
            for (order, s) in values::statuses(v) {
                let label = s["label"].as_str().unwrap_or("");
                if !manifest.status_labels.iter().any(|l| l == label) {
                    note(
                        problems,
                        "label",
                        "one of the manifest's status-labels".into(),
                        format!("{label:?}"),
                    );
                }
                report.trace.push(format!(
                    "status {}{}",
                    order.map(|o| format!("{o}: ")).unwrap_or_default(),
                    values::summarize_status(s)
                ));
            }
            for key in ["status", "updates", "response"] {
                if let Some(part) = v.get(key) {
                    kept.push_str(&part.to_string());
                }
            }
        }
        Outcome::Error(e) => kept.push_str(&e.to_string()),
        Outcome::Trap(_) => {}
    }
    for (key, secret) in &scenario.config.secrets {
        if secret.len() >= 4 && kept.contains(secret.as_str()) {
            note(
                problems,
                &format!("secret {key:?}"),
                "never in logs, errors, callback responses, statuses or state".into(),
                "found there".into(),
            );
        }
    }
    report
        .trace
        .splice(0..0, world.trace.iter().map(Trace::to_string));
    report.trace.push(match &outcome {
        Outcome::Ok(v) => format!("ok    {}", short(v)),
        Outcome::Error(e) => format!(
            "error {}: {}",
            e["kind"].as_str().unwrap_or("?"),
            e["message"].as_str().unwrap_or("")
        ),
        Outcome::Trap(why) => format!("trap  {why}"),
    });
    Ok((world, report))
}

/// An `ok` value in one line, without the statuses (already listed).
fn short(v: &Value) -> String {
    if let Some(r) = v.get("order-ref") {
        return format!("order-ref {r}");
    }
    if let Some(resp) = v.get("response") {
        let body = matching::show(resp.get("body"));
        let n = v["updates"].as_array().map_or(0, Vec::len);
        return format!("response {} {body}, {n} update(s)", resp["status"]);
    }
    matching::show(Some(v))
}

/// Runs the whole scenario on a loaded component.
pub fn scenario(
    loaded: &Loaded,
    scenario: &Scenario,
    opts: &Options,
) -> Result<Vec<StepReport>, String> {
    let world = World::new(Arc::new(scenario.config.clone()), scenario.state.clone());
    let now = scenario.now.unwrap_or_else(crate::clock::now_secs);
    let (mut world, manifest, mut first) = manifest(loaded, world, now, opts);
    let manifest = match manifest {
        Ok(m) => m,
        Err(why) => {
            first.problems.push(Problem {
                path: "manifest".into(),
                expected: "a manifest".into(),
                got: format!("a trap: {why}"),
            });
            return Ok(vec![first]);
        }
    };
    let value = values::manifest(&manifest);
    if let Some(want) = &scenario.manifest {
        matching::check(want, Some(&value), "manifest", &mut first.problems);
    }
    let limits = match Limits::granted(&manifest.limits, opts.timeout_ms) {
        Ok(l) => l,
        Err(why) => {
            first.problems.push(Problem {
                path: "manifest.limits".into(),
                expected: "needs within the host's default caps".into(),
                got: why,
            });
            return Ok(vec![first]);
        }
    };
    first.trace.push(format!(
        "ok    {} {} ({}), {} status label(s); sandbox {} MiB, {} instances",
        manifest.id,
        manifest.version,
        manifest.display_name,
        manifest.status_labels.len(),
        limits.grant.memory_mib,
        limits.grant.instances
    ));
    let mut reports = vec![first];
    for (i, s) in scenario.steps.iter().enumerate() {
        let (w, report) = step(loaded, scenario, &manifest, world, i, s, opts)?;
        world = w;
        reports.push(report);
    }
    Ok(reports)
}
