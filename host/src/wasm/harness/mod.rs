//! `switchyard connector test <file.wasm> <scenario.json>`: the offline harness. It runs a
//! connector component (contract 0.1 or 0.2) through the server's own runtime, sandbox and
//! outbound policy against a scenario (`templates/SCENARIO.md`): scripted configuration, secrets,
//! packages, state, the integration's `allowed-hosts`, the operator's approved hosts and limits,
//! the vendor's recorded HTTP exchanges (each approved outbound request is matched against the
//! next expected one), and the calls an ATS event and vendor callbacks would make. It prints what
//! every call did (outbound requests, state changes, logs, statuses, timings) and checks the
//! expectations. No server, no network, no database: the vendor, the state and the log are
//! swapped in *behind* the host's checks, so a request, state write or log line the server would
//! refuse is refused here in the same words. Resolved addresses are not checked (nothing is
//! resolved): that check stays with the server's live transport.
//!
//! - [`scenario`]: the file format, parsed strictly.
//! - [`scripted`]: the vendor, state and log behind the host's checks, and the trace.
//! - [`run`]: loading the component on the runtime and calling it step by step.
//! - [`matching`]: expectations against values; [`values`]: the values' JSON shapes.

pub mod matching;
mod ordered;
pub mod run;
pub mod scenario;
pub mod scripted;
mod values;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::wasm::cache::Origin;
use matching::Problem;
use scenario::Scenario;

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Deadline of each call (CPU and wall clock), as the host's `runtime.timeout_ms`.
    pub timeout_ms: u64,
    /// Compiled-code cache directory (the first run compiles, later ones load).
    pub cache: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout_ms: 30_000,
            cache: None,
        }
    }
}

/// Why the harness could not run at all (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// One step's result.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub name: String,
    pub problems: Vec<Problem>,
    /// What the call did, one line each: requests, state changes, logs, statuses, result.
    pub trace: Vec<String>,
    /// The whole call, instantiation included (as the server runs it: a fresh instance each).
    pub call: Duration,
}

impl StepReport {
    fn new(name: String, call: Duration) -> StepReport {
        StepReport {
            name,
            problems: Vec::new(),
            trace: Vec::new(),
            call,
        }
    }

    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Report {
    pub component: String,
    pub scenario: String,
    pub contract: String,
    pub bytes: usize,
    pub origin: Origin,
    pub load_time: Duration,
    pub steps: Vec<StepReport>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.steps.iter().filter(|s| !s.passed()).count()
    }

    pub fn passed(&self) -> bool {
        self.failed() == 0
    }

    /// The text `connector test` prints; `quiet` leaves out the trace of passing steps.
    pub fn render(&self, quiet: bool) -> String {
        let mut out = format!(
            "{}: contract {}, {:.1} MB, {} in {}\n",
            self.component,
            self.contract,
            self.bytes as f64 / 1e6,
            match self.origin {
                Origin::Compiled => "compiled",
                Origin::Cache => "loaded from the compiled-code cache",
            },
            ms(self.load_time)
        );
        for s in &self.steps {
            out.push_str(&format!(
                "{} {}  (call {})\n",
                if s.passed() { "ok  " } else { "FAIL" },
                s.name,
                ms(s.call)
            ));
            for p in &s.problems {
                out.push_str(&format!("       {}\n", p.path));
                out.push_str(&format!("         - expected {}\n", p.expected));
                out.push_str(&format!("         + got      {}\n", indent(&p.got, 20)));
            }
            if !quiet || !s.passed() {
                for line in &s.trace {
                    out.push_str(&format!("     | {}\n", indent(line, 7)));
                }
            }
        }
        out.push_str(&format!(
            "{}: {} passed, {} failed\n",
            self.scenario,
            self.steps.len() - self.failed(),
            self.failed()
        ));
        out
    }
}

fn indent(text: &str, by: usize) -> String {
    text.replace('\n', &format!("\n{}| ", " ".repeat(by.saturating_sub(2))))
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

/// Runs `scenario` (a file) on `component` (a file), on a runtime of its own (for callers
/// outside any async runtime).
pub fn run_files(component: &Path, scenario: &Path, opts: &Options) -> Result<Report, Unusable> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Unusable(format!("cannot start the async runtime: {e}")))?;
    tokio.block_on(run(component, scenario, opts))
}

/// Runs `scenario` (a file) on `component` (a file).
pub async fn run(component: &Path, scenario: &Path, opts: &Options) -> Result<Report, Unusable> {
    let text = std::fs::read_to_string(scenario)
        .map_err(|e| Unusable(format!("cannot read {}: {e}", scenario.display())))?;
    let parsed =
        Scenario::parse(&text).map_err(|e| Unusable(format!("{}: {e}", scenario.display())))?;
    let bytes = std::fs::read(component)
        .map_err(|e| Unusable(format!("cannot read {}: {e}", component.display())))?;
    let loaded = run::load(bytes, opts)
        .await
        .map_err(|e| Unusable(format!("{}: {e}", component.display())))?;
    let (contract, size, origin, load_time) = (
        loaded.contract.clone(),
        loaded.bytes,
        loaded.origin,
        loaded.load_time,
    );
    let steps = run::scenario(loaded, &parsed).await.map_err(Unusable)?;
    Ok(Report {
        component: component.display().to_string(),
        scenario: scenario.display().to_string(),
        contract,
        bytes: size,
        origin,
        load_time,
        steps,
    })
}
