//! Faults: a connector that traps, spins or exhausts memory; a host killed mid-flow.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchyard::store::{EventState, Store};
use switchyard_testkit::{Stack, CERTN, TRIGGER};
use switchyard_tests::{certn_tags, eventually, lever_of, options};

const LONG: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread")]
async fn a_connector_that_traps_spins_or_eats_memory_fails_that_event_only() {
    let s = Stack::start(options("misbehave", |o| {
        o.extra = vec![("bad".into(), "misbehave".into(), "Misbehave Stage".into())];
        o.runtime.timeout_ms = 1_500;
        o.runtime.memory_mb = 32;
        o.worker.max_attempts = 2;
        // At the server's priority: in a full suite on a loaded machine (load 8) the `oom` guest
        // once ran past the deadline before reaching its memory limit; niced workers (the
        // default) get the least CPU there, and this test is about containment, not priority.
        o.worker.nice = 0;
    }))
    .await
    .unwrap();

    let victims: Vec<String> = ["trap", "loop", "oom"]
        .iter()
        .map(|name| s.candidate(name, Some("x@example.com"), &[], None))
        .collect();
    for opp in &victims {
        s.move_to(opp, "Misbehave Stage").await.unwrap();
    }
    // Meanwhile, the Certn integration on the same host keeps serving.
    let ada = s.candidate("Ada", Some("ada@example.com"), &[], None);
    s.move_to(&ada, TRIGGER).await.unwrap();
    s.wait_for(&ada, LONG, |o| {
        o.tags.contains(&"CERTN - Complete".to_string())
    })
    .await
    .unwrap();

    let store = &s.host().app.store;
    let dead = eventually("all three bad events dead-lettered", LONG, || {
        let events = store.events("bad", 10).ok()?;
        let dead: Vec<_> = events
            .into_iter()
            .filter(|e| e.state == EventState::Dead)
            .collect();
        (dead.len() == 3).then_some(dead)
    })
    .await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|e| e.last_error.clone().unwrap_or_default())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("trapped")), "{reasons:?}");
    // The guest's own words (its panic message on stderr), not only the runtime's.
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("misbehave: trap requested")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("deadline")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("memory")), "{reasons:?}");
    assert!(
        dead.iter().all(|e| e.attempts == 2),
        "retried, then dead-lettered"
    );
    for opp in &victims {
        assert!(
            s.lever.opportunity(opp).unwrap().tags.is_empty(),
            "nothing written for a failed event"
        );
    }
    // A callback the connector traps on gets a 5xx (the vendor retries) and is recorded as dead.
    let callback = reqwest::Client::new()
        .post(format!("http://{}/hooks/bad/vendor", s.addr))
        .body("trap")
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status(), 500);
    let failed = store.events("bad", 10).unwrap();
    let failed = failed
        .iter()
        .find(|e| e.kind == "vendor.callback")
        .expect("the failed callback is recorded");
    assert_eq!(failed.state, EventState::Dead);
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("trapped"),
        "{:?}",
        failed.last_error
    );
    // The host still answers.
    let health = reqwest::get(format!("http://{}/healthz", s.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// The stack's config as a TOML file for `switchyard serve`.
fn write_config(stack: &Stack, dir: &std::path::Path) -> std::path::PathBuf {
    let c = &stack.config;
    let i = &c.integrations[0];
    let lever = lever_of(i);
    let text = format!(
        r#"
[server]
listen = "{listen}"
[storage]
path = "{db}"
[runtime]
connectors_dir = "{connectors}"
timeout_ms = 5000
approved_hosts = {hosts:?}
[worker]
retry_base_ms = 200
retry_max_ms = 1000
max_attempts = 50
lease_secs = 2
[[integrations]]
id = "{id}"
connector = "certn"
allowed_hosts = {hosts:?}
allow_loopback = true
[integrations.ats]
kind = "lever"
api_base = "{lever_base}"
api_key = "{lever_key}"
signature_token = "{token}"
trigger_stage = "{TRIGGER}"
[integrations.settings]
api-base = "{certn_base}"
[integrations.secrets]
api-key = "{certn_key}"
webhook-secret = "{certn_secret}"
[[integrations.packages]]
name = "Basic"
default = true
params = {{ checks = "criminal_record_check" }}
"#,
        listen = c.server.listen,
        db = c.storage.path.display(),
        connectors = c.runtime.connectors_dir.display(),
        id = i.id,
        hosts = i.allowed_hosts.clone().unwrap_or_default(),
        lever_base = lever.api_base,
        lever_key = lever.api_key.as_ref().expect("an API key").expose(),
        token = lever.signature_token.expose(),
        certn_base = stack.certn.api_base(),
        certn_key = stack.certn.api_key(),
        certn_secret = stack.certn.webhook_secret(),
    );
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The `switchyard` binary built beside this test (`cargo build --release --bins`).
fn binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("switchyard");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

async fn serve(config: &std::path::Path, addr: std::net::SocketAddr) -> Child {
    let child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let url = format!("http://{addr}/healthz");
    eventually("the host is up", Duration::from_secs(20), || {
        std::net::TcpStream::connect(addr).ok().map(|_| ())
    })
    .await;
    let _ = reqwest::get(url).await;
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_killed_mid_flow_finishes_the_flow_after_restart() {
    let dir = switchyard_tests::scratch("crash");
    let stack = Stack::prepare(options("crash", |o| {
        o.certn.step_delay = None; // the test drives Certn
        o.data_dir = dir.to_path_buf();
    }))
    .await
    .unwrap();
    let config = write_config(&stack, &dir);
    let mut host = serve(&config, stack.addr).await;

    // Lever's API fails, so the accepted webhook sits in the store, mid-flow, retrying.
    stack.lever.fail_next(1_000, 503);
    let opp = stack.candidate("Ada", Some("ada@example.com"), &[], None);
    assert_eq!(
        stack.move_to(&opp, TRIGGER).await.unwrap(),
        200,
        "accepted = committed"
    );
    eventually("the worker is retrying", LONG, || {
        (stack
            .lever
            .request_log()
            .iter()
            .filter(|r| r.status == 503)
            .count()
            >= 3)
            .then_some(())
    })
    .await;

    host.kill().unwrap(); // SIGKILL: no graceful shutdown
    host.wait().unwrap();
    let store = Store::open(&stack.config.storage.path).unwrap();
    let pending = store.events(CERTN, 10).unwrap();
    assert_eq!(pending.len(), 1);
    assert!(matches!(
        pending[0].state,
        EventState::Queued | EventState::Running
    ));
    drop(store);

    stack.lever.fail_next(0, 503);
    let mut host = serve(&config, stack.addr).await;
    stack
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - Pending".to_string())
        })
        .await
        .unwrap();
    let app_id = stack.certn.applications()[0].id.clone();

    // Kill again between callbacks; Certn's retries (and ours) carry the flow to the end.
    stack.certn.advance(&app_id).await.unwrap();
    stack
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - Analyzing".to_string())
        })
        .await
        .unwrap();
    host.kill().unwrap();
    host.wait().unwrap();
    let mut host = serve(&config, stack.addr).await;
    stack.certn.advance(&app_id).await.unwrap();
    stack.certn.advance(&app_id).await.unwrap();
    let done = stack
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string()) && !o.links.is_empty()
        })
        .await
        .unwrap();
    host.kill().unwrap();
    let _ = host.wait();

    assert_eq!(
        stack.certn.applications().len(),
        1,
        "one invitation across restarts"
    );
    assert_eq!(certn_tags(&done), vec!["CERTN - Complete"]);
    assert_eq!(done.links.len(), 1);
}
