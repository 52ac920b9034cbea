//! Loading a component and running a scenario's steps on it through the server's own runtime:
//! [`Runtime::compile`] (the contract check: 0.1 and 0.2 alike), the registry's manifest check
//! and grant, and [`LoadedConnector`]'s calls, each in the per-call sandbox `serve` uses (CPU
//! deadline, memory and instance caps, WASI with nothing preopened). Only what sits behind the
//! host's checks is the harness's ([`super::scripted`]), and the wall clock reads the step's `now`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::matching::{self, Problem};
use super::scenario::{Call, Request, Scenario, Step};
use super::scripted::{body_bytes, MemoryState, Recorder, Trace};
use super::values;
use super::{Options, StepReport};
use crate::config::limits::SandboxLimits;
use crate::config::Secret;
use crate::wasm::cache::{CodeCache, Origin};
use crate::wasm::connector::{read_manifest, LoadedConnector};
use crate::wasm::deploy::DeployError;
use crate::wasm::policy;
use crate::wasm::quota;
use crate::wasm::registry::check_manifest;
use crate::wasm::runtime::crypto::{self as host_crypto, Encoding};
use crate::wasm::runtime::{CallContext, Caps, Compiled, Runtime};
use crate::wasm::types::{CallError, RawHttp, ScreeningRequest};

/// A compiled component ready to instantiate, on its own runtime.
pub struct Loaded {
    pub runtime: Arc<Runtime>,
    pub compiled: Compiled,
    /// SHA-256 of the component bytes, hex.
    pub hash: String,
    pub contract: String,
    pub bytes: usize,
    pub origin: Origin,
    pub load_time: Duration,
}

/// Starts a runtime as `serve` configures one (default caps, `opts.timeout_ms`), then compiles
/// (or takes from the cache) and links the component; the error says why not, in the server's
/// words.
pub async fn load(bytes: Vec<u8>, opts: &Options) -> Result<Loaded, String> {
    let cache = opts.cache.clone().map(CodeCache::new);
    let runtime = Runtime::with_cache(opts.timeout_ms, Caps::default(), cache)
        .map_err(|e| format!("cannot start wasmtime: {e:#}"))?;
    let size = bytes.len();
    let hash = hex::encode(Sha256::digest(&bytes));
    let started = Instant::now();
    let compiled = runtime.compile(bytes).await.map_err(|e| e.to_string())?;
    Ok(Loaded {
        runtime,
        contract: compiled.contract_version.clone(),
        origin: compiled.origin,
        compiled,
        hash,
        bytes: size,
        load_time: started.elapsed(),
    })
}

/// How one call ended.
enum Outcome {
    Ok(Value),
    Error(Value),
    Trap(String),
}

impl Outcome {
    /// A connector's error is a value; the sandbox's (trap, deadline, memory) is a trap.
    fn of(result: Result<Value, CallError>) -> Outcome {
        match result {
            Ok(v) => Outcome::Ok(v),
            Err(e) => match values::error(&e) {
                Some(v) => Outcome::Error(v),
                None => Outcome::Trap(e.to_string()),
            },
        }
    }
}

/// What every step of one scenario shares: the loaded connector, the operator's limits, and the
/// scripted vendor, log and state behind the host's checks.
struct Session<'a> {
    runtime: &'a Arc<Runtime>,
    connector: LoadedConnector,
    scenario: &'a Scenario,
    limits: Arc<SandboxLimits>,
    recorder: Arc<Recorder>,
    state: Arc<MemoryState>,
}

impl Session<'_> {
    /// The context a server would build for the scenario's integration (`App::call_context`),
    /// with the scripted transport, state and log swapped in and the wall clock at `now`.
    fn context(&self, now: i64) -> Arc<CallContext> {
        let config = &self.scenario.config;
        let manifest = &self.connector.manifest;
        let mut ctx = CallContext::detached();
        ctx.detached = false;
        ctx.integration_id = config.integration_id();
        ctx.connector_id = manifest.id.clone();
        ctx.settings = config.settings.clone();
        ctx.secrets = config
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
            .collect();
        ctx.packages = config
            .packages
            .iter()
            .map(|p| crate::wasm::types::Package {
                name: p.name.clone(),
                is_default: p.default,
                params: p.params.clone(),
            })
            .collect();
        ctx.callback_url = config.callback_url();
        ctx.allowed_hosts = manifest
            .outbound_hosts
            .iter()
            .chain(config.allowed_hosts.iter().flatten())
            .cloned()
            .collect();
        ctx.allow_loopback = config.allow_loopback;
        ctx.state = Some(self.state.clone());
        ctx.http = self.recorder.clone();
        ctx.http_timeout = HTTP_TIMEOUT;
        ctx.limits = self.limits.clone();
        ctx.wall_clock = Some(Duration::from_secs(now.max(0) as u64));
        ctx.log_sink = Some(self.recorder.clone());
        Arc::new(ctx)
    }

    /// Calls the step's export; a status over the operator's limits is a problem, as the server
    /// refuses it.
    async fn call(
        &self,
        kind: Call,
        req: &Request,
        callback: Option<RawHttp>,
        now: i64,
        problems: &mut Vec<Problem>,
    ) -> Outcome {
        let (runtime, connector, ctx) = (&**self.runtime, &self.connector, self.context(now));
        let mut over = |reason: String| {
            problems.push(Problem {
                path: "runtime.limits".into(),
                expected: "statuses within the operator's limits".into(),
                got: reason,
            })
        };
        let result = match (kind, callback) {
            (Call::StartScreening, _) => {
                let request = screening_request(req);
                connector
                    .start_screening(runtime, ctx, &request)
                    .await
                    .map(|s| {
                        match quota::check_status(&s.status, &self.limits) {
                            Err(why) => over(why),
                            // The server records the order now, and drops the screening's
                            // entries with it.
                            Ok(()) => self.state.drop_screening(&request.idempotency_key),
                        }
                        values::started(&s)
                    })
            }
            (Call::HandleCallback, request) => connector
                .handle_callback(runtime, ctx, request.unwrap_or_default())
                .await
                .map(|(response, updates)| {
                    if let Err(why) = quota::check_updates(&updates, &self.limits) {
                        over(why);
                    }
                    values::callback(&response, &updates)
                }),
            (Call::ListPackages, _) => connector
                .packages(runtime, ctx)
                .await
                .map(|p| values::packages(&p)),
            (Call::Manifest, _) => read_manifest(runtime, &connector.compiled, connector.grant)
                .await
                .map(|m| values::manifest(&m))
                .map_err(CallError::from),
        };
        Outcome::of(result)
    }
}

/// Cap on one outbound request's timeout (`runtime.http_timeout_ms`'s default).
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// The request of a callback step, with `sign` headers computed at `now`.
fn callback_request(
    req: &Request,
    secrets: &BTreeMap<String, String>,
    now: i64,
) -> Result<RawHttp, String> {
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
    Ok(RawHttp {
        method: req.method.clone().unwrap_or_else(|| "POST".into()),
        path: req.path.clone().unwrap_or_else(|| "/".into()),
        query: req.query.clone().unwrap_or_default(),
        status: 0,
        headers,
        body,
    })
}

fn screening_request(req: &Request) -> ScreeningRequest {
    let c = req.candidate.as_ref();
    ScreeningRequest {
        idempotency_key: req.idempotency_key.clone().unwrap_or_default(),
        name: c.map(|c| c.name.clone()).unwrap_or_default(),
        emails: c.map(|c| c.emails.clone()).unwrap_or_default(),
        phones: c.map(|c| c.phones.clone()).unwrap_or_default(),
        opportunity_id: req.opportunity_id.clone().unwrap_or_default(),
        opportunity_tags: req.opportunity_tags.clone().unwrap_or_default(),
        posting_id: req.posting_id.clone(),
        posting_name: None,
        posting_tags: req.posting_tags.clone().unwrap_or_default(),
        stage: req.stage.clone(),
        package: req.package.clone(),
    }
}

/// Runs one step; the state carries over in the session.
async fn step(s: &Session<'_>, index: usize, step: &Step) -> Result<StepReport, String> {
    let scenario = s.scenario;
    let manifest = &s.connector.manifest;
    let name = step
        .name
        .clone()
        .unwrap_or_else(|| format!("{}: {}", index + 1, step.call.name()));
    let now = step
        .now
        .or(scenario.now)
        .unwrap_or_else(crate::clock::now_secs);
    {
        let mut state = s.state.entries();
        for (key, value) in &step.given_state {
            match value {
                Some(v) => state.insert(key.clone(), v.clone()),
                None => state.remove(key),
            };
        }
    }
    s.recorder.begin(&step.http);
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
    let mut problems = Vec::new();
    let started = Instant::now();
    let outcome = s.call(step.call, req, callback, now, &mut problems).await;
    let mut report = StepReport::new(name, started.elapsed());
    let mut record = s.recorder.record();
    let state = s.state.entries();
    report.problems.append(&mut record.problems);
    report.problems.append(&mut problems);
    let problems = &mut report.problems;
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
        let got = state.get(key);
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
        let text = record.logs.join("\n");
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
                    format!("{} line(s)", record.logs.len()),
                );
            }
        }
    }
    if let Some(first) = record.exchanges.front() {
        note(
            problems,
            "http",
            format!(
                "{} more request(s), next {} {}",
                record.exchanges.len(),
                first.method,
                first.url
            ),
            "none".into(),
        );
    }
    // Always: labels are the manifest's, and no secret reaches what the host keeps or shows.
    let mut kept = record.logs.join("\n");
    kept.push_str(&serde_json::to_string(&*state).unwrap_or_default());
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
        .splice(0..0, record.trace.iter().map(Trace::to_string));
    report.trace.push(match &outcome {
        Outcome::Ok(v) => format!("ok    {}", short(v)),
        Outcome::Error(e) => format!(
            "error {}: {}",
            e["kind"].as_str().unwrap_or("?"),
            e["message"].as_str().unwrap_or("")
        ),
        Outcome::Trap(why) => format!("trap  {why}"),
    });
    Ok(report)
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

/// Runs the whole scenario on a loaded component: the manifest as the server checks it when it
/// loads one, the operator's approval of its hosts and of the integration's `allowed-hosts`, then
/// every step.
pub async fn scenario(loaded: Loaded, scenario: &Scenario) -> Result<Vec<StepReport>, String> {
    let limits = Arc::new(scenario.limits.clone().unwrap_or_default());
    let started = Instant::now();
    let checked = check_manifest(&loaded.runtime, &loaded.compiled, &limits).await;
    let mut first = StepReport::new("manifest".into(), started.elapsed());
    let refuse = |first: &mut StepReport, path: &str, expected: &str, got: String| {
        first.problems.push(Problem {
            path: path.into(),
            expected: expected.into(),
            got,
        })
    };
    let (manifest, grant) = match checked {
        Ok(found) => found,
        Err(why) => {
            refuse(&mut first, "manifest", "a manifest", why.to_string());
            return Ok(vec![first]);
        }
    };
    if let Some(want) = &scenario.manifest {
        let value = values::manifest(&manifest);
        matching::check(want, Some(&value), "manifest", &mut first.problems);
    }
    // As an upload: the manifest's hosts must be the operator's approved hosts.
    let unapproved = policy::unapproved(&manifest.outbound_hosts, &scenario.approved_hosts);
    if !unapproved.is_empty() {
        let why = DeployError::UnapprovedHosts(unapproved.join(", ")).to_string();
        refuse(
            &mut first,
            "approved-hosts",
            "the manifest's outbound-hosts",
            why,
        );
        return Ok(vec![first]);
    }
    // As the integration's configuration is checked.
    let config = &scenario.config;
    if let Err(why) = policy::check_allowed(
        config.allowed_hosts.as_deref().unwrap_or_default(),
        &scenario.approved_hosts,
        &manifest.outbound_hosts,
        config.allow_loopback,
    ) {
        refuse(&mut first, "config.allowed-hosts", "approved hosts", why);
        return Ok(vec![first]);
    }
    first.trace.push(format!(
        "ok    {} {} ({}), {} status label(s); sandbox {} MiB, {} instances",
        manifest.id,
        manifest.version,
        manifest.display_name,
        manifest.status_labels.len(),
        grant.memory_mib,
        grant.instances
    ));
    let recorder = Arc::new(Recorder::default());
    let session = Session {
        runtime: &loaded.runtime,
        connector: LoadedConnector {
            manifest,
            hash: loaded.hash,
            loaded_at: std::time::SystemTime::now(),
            source: "connector test".into(),
            compiled: loaded.compiled,
            grant,
        },
        scenario,
        limits,
        state: Arc::new(MemoryState::new(scenario.state.clone(), recorder.clone())),
        recorder,
    };
    let mut reports = vec![first];
    for (i, s) in scenario.steps.iter().enumerate() {
        reports.push(step(&session, i, s).await?);
    }
    Ok(reports)
}
