//! Shared helpers of the end-to-end tests: where the built connectors are, scratch directories,
//! a running [`Stack`](switchyard_testkit::Stack) of simulators + host, and the real binary as a
//! child process ([`serve`]).

pub mod serve;

pub mod support_admin;

pub mod support_console;

/// The benchmark's connector-call figures: only with the `bench` feature (the benchmark's build).
#[cfg(feature = "bench")]
pub mod bench_wasm;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use switchyard::store::{Event, EventState};
use switchyard_testkit::{Stack, StackOptions};

pub mod host_process;

/// The default connectors directory: the production connectors (Certn, Justifacts, Canditech),
/// what `switchyard.example.toml` loads. Panics with the command to run if missing.
pub fn plugins_dir() -> PathBuf {
    let dir = root().join("plugins/target/wasm32-wasip2/release");
    assert!(
        dir.join("certn.wasm").exists(),
        "connectors not built: run `{PLUGINS_BUILD}` (scripts/test.sh does)"
    );
    dir
}

/// The test and benchmark components (`plugins/fixtures/`: misbehave, hostile, twin, and the ones
/// the host must reject), built apart so that they never land in [`plugins_dir`].
pub fn fixtures_dir() -> PathBuf {
    root().join("plugins/fixtures/target/wasm32-wasip2/release")
}

/// The test components a stack from [`options`] serves beside the production connectors.
const TEST_CONNECTORS: [&str; 3] = ["misbehave", "hostile", "twin"];

const PLUGINS_BUILD: &str =
    "cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml";
const FIXTURES_BUILD: &str =
    "cargo build --release --target wasm32-wasip2 --manifest-path plugins/fixtures/Cargo.toml";

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A built component by name (`certn`, `misbehave`, `greedy`, ...): a production connector, else
/// a test fixture. Panics with the command to run if it is neither.
pub fn component(name: &str) -> PathBuf {
    let file = format!("{name}.wasm");
    let production = plugins_dir().join(&file);
    if production.exists() {
        return production;
    }
    let fixture = fixtures_dir().join(&file);
    assert!(
        fixture.exists(),
        "{} missing: run `{FIXTURES_BUILD}` (scripts/test.sh does)",
        fixture.display()
    );
    fixture
}

/// A connectors directory with the production connectors and [`TEST_CONNECTORS`], made once per
/// test process (tests only read it). A static is never dropped, so the directories of earlier
/// test processes that are gone are removed here instead.
pub fn test_connectors_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = std::env::temp_dir();
        remove_dead_processes_dirs(&tmp, CONNECTORS_PREFIX);
        let dir = tmp.join(format!("{CONNECTORS_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the test connectors dir");
        let production = std::fs::read_dir(plugins_dir()).expect("read the connectors dir");
        for entry in production.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "wasm") {
                std::fs::copy(&path, dir.join(entry.file_name())).expect("copy a connector");
            }
        }
        for name in TEST_CONNECTORS {
            std::fs::copy(component(name), dir.join(format!("{name}.wasm")))
                .expect("copy a test connector");
        }
        dir
    })
    .clone()
}

const CONNECTORS_PREFIX: &str = "switchyard-test-connectors-";

/// Removes `<tmp>/<prefix><pid>` directories whose process no longer runs.
fn remove_dead_processes_dirs(tmp: &std::path::Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A scratch directory, removed with its contents when this drops; derefs to its path.
pub struct Scratch(pub tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        self.0.path()
    }
}

/// A fresh scratch directory (`switchyard-test-<name>-…` in the temporary directory).
pub fn scratch(name: &str) -> Scratch {
    Scratch(
        tempfile::Builder::new()
            .prefix(&format!("switchyard-test-{name}-"))
            .tempdir()
            .expect("scratch dir"),
    )
}

/// Options for a test stack (fast retries, short deadlines), adjusted by `tweak`.
pub fn options(name: &str, tweak: impl FnOnce(&mut StackOptions)) -> StackOptions {
    let dir = scratch(name);
    let mut opts = StackOptions::new(&test_connectors_dir(), &dir);
    opts.scratch = Some(dir.0);
    tweak(&mut opts);
    opts
}

/// Starts a stack with test options.
pub async fn stack(name: &str, tweak: impl FnOnce(&mut StackOptions)) -> Stack {
    Stack::start(options(name, tweak))
        .await
        .expect("stack starts")
}

/// Polls `check` every 50 ms until it returns Some, or panics after `within` with `what`.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every event of `integration` is done and returns them. An event's outcome is
/// committed after its ATS write, so the last one may still be finishing when the ATS shows it.
pub async fn all_done(stack: &Stack, integration: &str, within: Duration) -> Vec<Event> {
    eventually("every event done", within, || {
        let events = stack.host().app.store.events(integration, 100).ok()?;
        (events.iter().all(|e| e.state == EventState::Done)).then_some(events)
    })
    .await
}

/// Count of logged Lever API requests whose path ends with `suffix` and that succeeded.
pub fn lever_writes(stack: &Stack, suffix: &str) -> usize {
    stack
        .lever
        .request_log()
        .iter()
        .filter(|r| {
            r.method == "POST" && r.path.ends_with(suffix) && (200..300).contains(&r.status)
        })
        .count()
}

/// Moves `opportunity` to the trigger stage and waits (bounded) until Lever shows it Complete
/// with the report link; returns that snapshot.
pub async fn certn_complete(
    stack: &Stack,
    opportunity: &str,
    within: Duration,
) -> switchyard_sim::lever::Opportunity {
    let status = stack
        .move_to(opportunity, switchyard_testkit::TRIGGER)
        .await;
    assert_eq!(status.unwrap(), 200, "Lever's webhook was accepted");
    stack
        .wait_for(opportunity, within, |o| {
            o.tags.contains(&"CERTN - Complete".to_string()) && !o.links.is_empty()
        })
        .await
        .unwrap()
}

/// The CERTN status tags on an opportunity.
pub fn certn_tags(opp: &switchyard_sim::lever::Opportunity) -> Vec<String> {
    opp.tags
        .iter()
        .filter(|t| t.starts_with("CERTN - "))
        .cloned()
        .collect()
}

/// Seed 004: a completed Justifacts check shows its result URL in one secret note, and nowhere
/// else (no link, which every Lever user would see).
pub fn assert_result_in_secret_note_only(opp: &switchyard_sim::lever::Opportunity, url: &str) {
    assert_eq!(opp.notes.len(), 1, "{:?}", opp.notes);
    let note = &opp.notes[0];
    assert!(note.secret, "the result note is secret");
    assert!(note.value.contains(url), "{}", note.value);
    assert!(opp.links.is_empty(), "no public link: {:?}", opp.links);
}

/// The Lever settings of an integration (panics for another ATS).
pub fn lever_of(
    integration: &switchyard::config::IntegrationConfig,
) -> &switchyard::config::LeverConfig {
    #[allow(unreachable_patterns)]
    match &integration.ats {
        switchyard::config::AtsConfig::Lever(l) => l,
        _ => panic!("integration {} is not a Lever integration", integration.id),
    }
}
