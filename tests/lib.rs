//! Shared helpers of the end-to-end tests: where the built connectors are, scratch directories,
//! a running [`Stack`](switchyard::demo::Stack) of simulators + host, and the real binary as a
//! child process ([`serve`]).

pub mod serve;

pub mod bench_wasm;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use switchyard::demo::{Stack, StackOptions};

pub mod host_process;

/// The directory of the built connector components. Panics with the command to run if missing.
pub fn plugins_dir() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-wasip2/release");
    assert!(
        dir.join("certn.wasm").exists(),
        "connectors not built: run `cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml` (scripts/test.sh does)"
    );
    dir
}

/// A fresh scratch directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-test-{name}-{}-{}",
        std::process::id(),
        nanos()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Options for a test stack (fast retries, short deadlines), adjusted by `tweak`.
pub fn options(name: &str, tweak: impl FnOnce(&mut StackOptions)) -> StackOptions {
    let mut opts = StackOptions::new(&plugins_dir(), &scratch(name));
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

/// The CERTN status tags on an opportunity.
pub fn certn_tags(opp: &switchyard_sim::lever::Opportunity) -> Vec<String> {
    opp.tags
        .iter()
        .filter(|t| t.starts_with("CERTN - "))
        .cloned()
        .collect()
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
