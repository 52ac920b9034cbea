//! `switchyard connector test` runs components through the server's own runtime and policy:
//! a contract-0.1 connector passes its scenario, a request to an unapproved host is denied before
//! it reaches the scripted vendor, hosts the operator did not approve fail the manifest step, and
//! a state-quota breach traps with the very words of the server (whose state lives in the store).
//!
//! Needs the built components: `plugins/target/.../certn.wasm` and
//! `plugins/fixtures/target/.../certn_v01.wasm` (see `plugins/fixtures/Cargo.toml`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchyard::config::limits::SandboxLimits;
use switchyard::config::Secret;
use switchyard::store::Store;
use switchyard::wasm::connector::{CallError, InvokeError, Package, ScreeningRequest};
use switchyard::wasm::harness::{self, Options, Report};
use switchyard::wasm::registry::Registry;
use switchyard::wasm::runtime::imports::{
    BoxFuture, HttpError, HttpResponse, Outbound, OutgoingRequest, StoreState,
};
use switchyard::wasm::runtime::{CallContext, Caps, Runtime};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn certn_v01() -> PathBuf {
    root().join("plugins/fixtures/target/wasm32-wasip2/release/certn_v01.wasm")
}

fn certn() -> PathBuf {
    root().join("plugins/target/wasm32-wasip2/release/certn.wasm")
}

fn scenario(name: &str) -> PathBuf {
    root().join("tests/scenarios").join(name)
}

fn run(component: &Path, scenario: &Path) -> Report {
    harness::run_files(component, scenario, &Options::default()).expect("usable")
}

/// `base` (a file under tests/scenarios) changed by `edit`, written to `dir/name`.
fn variant(dir: &Path, base: &str, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let text = std::fs::read_to_string(scenario(base)).unwrap();
    let mut value: Value = serde_json::from_str(&text).unwrap();
    edit(&mut value);
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

#[test]
fn a_contract_0_1_connector_passes_its_scenario() {
    let report = run(&certn_v01(), &scenario("certn-v01.json"));
    assert!(report.passed(), "{}", report.render(false));
    assert!(report.contract.starts_with("0.1."), "{}", report.contract);
    assert_eq!(report.steps.len(), 4, "manifest and three steps");
}

#[test]
fn a_request_to_an_unapproved_host_is_denied_before_the_vendor() {
    let report = run(&certn(), &scenario("certn-unapproved-host.json"));
    assert!(report.passed(), "{}", report.render(false));
    assert!(report.contract.starts_with("0.2."), "{}", report.contract);
    let step = &report.steps[1];
    assert!(
        !step.trace.iter().any(|l| l.starts_with("http")),
        "no request reached the scripted vendor: {:?}",
        step.trace
    );
}

#[test]
fn hosts_the_operator_did_not_approve_fail_the_manifest_step() {
    let dir = switchyard_tests::scratch("harness");
    let unapproved = variant(&dir, "certn-v01.json", "no-approval.json", |s| {
        s["approved-hosts"] = serde_json::json!([]);
    });
    let report = run(&certn_v01(), &unapproved);
    assert!(!report.passed());
    assert_eq!(
        report.steps.len(),
        1,
        "no step runs: {}",
        report.render(false)
    );
    let got = &report.steps[0].problems[0].got;
    assert!(
        got.contains("outbound hosts no operator approved: api.certn.co"),
        "{got}"
    );

    let loopback = variant(&dir, "certn-v01.json", "loopback.json", |s| {
        s["approved-hosts"] = serde_json::json!(["api.certn.co", "127.0.0.1:9000"]);
        s["config"]["allowed-hosts"] = serde_json::json!(["127.0.0.1:9000"]);
    });
    let report = run(&certn_v01(), &loopback);
    let got = &report.steps[0].problems[0].got;
    assert!(got.contains("is a loopback address"), "{got}");

    let allowed = variant(&dir, "certn-v01.json", "loopback-allowed.json", |s| {
        s["approved-hosts"] = serde_json::json!(["api.certn.co", "127.0.0.1:9000"]);
        s["config"]["allowed-hosts"] = serde_json::json!(["127.0.0.1:9000"]);
        s["config"]["allow-loopback"] = Value::Bool(true);
    });
    let report = run(&certn_v01(), &allowed);
    assert!(report.passed(), "{}", report.render(false));
}

/// Answers every request with a Certn application id.
struct Invited;

impl Outbound for Invited {
    fn send(
        &self,
        _: OutgoingRequest,
        _: Duration,
    ) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        Box::pin(async {
            Ok(HttpResponse {
                status: 201,
                headers: vec![],
                body: br#"{"id":"app-1"}"#.to_vec(),
            })
        })
    }
}

/// The server's trap for the same call: the same component, its state in the store.
async fn server_trap() -> String {
    let runtime = Runtime::new(30_000, Caps::default()).unwrap();
    let limits = SandboxLimits {
        state_total_bytes: 16,
        ..SandboxLimits::default()
    };
    let registry = Registry::new(runtime.clone()).with_limits(limits.clone());
    let connector = registry
        .load(std::fs::read(certn_v01()).unwrap(), "test")
        .await
        .unwrap();
    let dir = switchyard_tests::scratch("harness-db");
    let store = Store::open(&dir.join("state.db")).unwrap();
    let mut ctx = CallContext::detached();
    ctx.detached = false;
    ctx.integration_id = "test".into();
    ctx.connector_id = connector.manifest.id.clone();
    ctx.secrets = [("api-key".to_string(), Secret::new("test_key_1234"))].into();
    ctx.packages = vec![Package {
        name: "Basic".into(),
        is_default: true,
        params: vec![],
    }];
    ctx.allowed_hosts = connector.manifest.outbound_hosts.clone();
    ctx.state = Some(Arc::new(StoreState {
        store,
        integration: "test".into(),
        connector: connector.manifest.id.clone(),
    }));
    ctx.http = Arc::new(Invited);
    ctx.limits = Arc::new(limits);
    let request = ScreeningRequest {
        idempotency_key: "lever:tok-1".into(),
        name: "Ada Lovelace".into(),
        emails: vec!["ada@example.com".into()],
        phones: vec![],
        opportunity_id: String::new(),
        opportunity_tags: vec![],
        posting_id: None,
        posting_name: None,
        posting_tags: vec![],
        stage: None,
        package: None,
    };
    let result = connector
        .start_screening(&runtime, Arc::new(ctx), &request)
        .await;
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        // A trap like any other, told apart so that the flow holds the event for room.
        Err(e @ CallError::Invoke(InvokeError::StateQuota(_))) => e.to_string(),
        other => panic!("the server's call should trap on the state quota: {other:?}"),
    }
}

#[test]
fn a_state_quota_breach_traps_as_in_the_server() {
    let report = run(&certn_v01(), &scenario("certn-v01-state-quota.json"));
    assert!(report.passed(), "{}", report.render(false));
    let trap = report.steps[1]
        .trace
        .iter()
        .find_map(|l| l.strip_prefix("trap  "))
        .expect("a trap line");
    let words = "state.set refused: the integration's state would hold 22 bytes";
    assert!(trap.contains(words), "{trap}");
    assert!(
        trap.contains("(runtime.limits.state_total_bytes)"),
        "{trap}"
    );
    let server = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(server_trap());
    let first = |t: &str| t.lines().next().unwrap_or_default().to_string();
    assert_eq!(first(trap), first(&server));
}
