//! What plugin authors and operators meet first: a connector whose vendor cannot be searched
//! never invites twice by itself (its event waits for an operator, and a wait the store refuses
//! is retried), and `serve` names every problem of a config in one run, without a backtrace.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use switchyard::config::Secret;
use switchyard::store::{EventState, WaitFor};
use switchyard_testkit::{Stack, CERTN, TRIGGER};
use switchyard_tests::support_admin::{Admin, TOKEN};
use switchyard_tests::{all_done, component, eventually, options, plugins_dir, scratch};

const LONG: Duration = Duration::from_secs(30);

/// A host serving Certn's integration through the `nolookup` fixture, whose vendor cannot be
/// searched: an invitation that hangs puts its event to wait for an operator.
async fn nolookup_stack(name: &str) -> Stack {
    let mut opts = options(name, |o| {
        o.certn.step_delay = None;
        // The connector gives up on a vendor call after 1 s: a hanging invitation is lost.
        o.runtime.http_timeout_ms = 1_000;
    });
    // In the data dir, which the stack owns (and removes).
    let dir = opts.data_dir.join("connectors-dir");
    std::fs::create_dir_all(&dir).expect("connectors dir");
    std::fs::copy(component("nolookup"), dir.join("nolookup.wasm")).expect("copy the fixture");
    opts.connectors_dir = dir.clone();
    opts.runtime.connectors_dir = dir;
    let mut s = Stack::prepare(opts).await.expect("simulators start");
    s.config.integrations.retain(|i| i.id == CERTN);
    s.config.integrations[0].connector = "nolookup".into();
    s.config.server.admin_token = Some(Secret::new(TOKEN));
    s.run().await.expect("host starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vendor_without_a_lookup_is_never_invited_twice_blindly_the_event_waits_for_an_operator()
{
    let s = nolookup_stack("nolookup").await;
    let store = &s.host().app.store;

    // The vendor does not answer the invitation in time: it may or may not have placed the order.
    s.certn.hang_next(1);
    let opp = s.candidate("Ada Lovelace", Some("ada@example.com"), &[], None);
    assert_eq!(s.move_to(&opp, TRIGGER).await.unwrap(), 200);
    let waiting = eventually("the event waits (or fails)", LONG, || {
        store.events(CERTN, 10).ok()?.into_iter().find(|e| {
            matches!(
                e.state,
                EventState::Waiting | EventState::Dead | EventState::Done
            )
        })
    })
    .await;
    assert_eq!(waiting.state, EventState::Waiting, "{waiting:?}");
    assert_eq!(waiting.waiting_for, Some(WaitFor::Operator), "{waiting:?}");
    let reason = waiting.last_error.clone().unwrap_or_default();
    assert!(reason.contains("cannot be searched"), "{reason}");
    assert!(
        reason.contains(&format!("POST /admin/events/{}/retry", waiting.id)),
        "the reason says how to resume it: {reason}"
    );
    assert_eq!(
        s.certn.invite_requests(),
        1,
        "the retry did not invite again"
    );
    assert_eq!(
        store.kv_usage(CERTN, "nolookup", "").unwrap(),
        0,
        "the screening's intent went with the wait"
    );
    // Nothing resumes it by itself: not the heartbeat's re-check pass, not a host-side trigger
    // (a host start, an activation, a changed integration).
    assert_eq!(store.wake_rechecks().unwrap(), 0);
    s.host().app.resume_waiting(None, "the test");
    let still = store.event(waiting.id).unwrap().unwrap();
    assert_eq!(still.state, EventState::Waiting, "{still:?}");
    let admin = Admin::new(&s, Some(TOKEN));
    let (_, view) = admin.get(&format!("/admin/integrations/{CERTN}")).await;
    let problems = view["health"]["problems"].to_string();
    assert!(problems.contains("waiting for operator"), "{view}");

    // The operator checks the vendor: no order for Ada. Their retry invites, once.
    assert!(s.certn.applications().is_empty());
    let (status, body) = admin
        .post(&format!("/admin/events/{}/retry", waiting.id), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.wait_for(&opp, LONG, |o| {
        o.tags.contains(&"NOLOOKUP - Pending".to_string())
    })
    .await
    .unwrap();
    all_done(&s, CERTN, LONG).await;
    assert_eq!(s.certn.invitations_for_email("ada@example.com"), 1);
    assert_eq!(
        s.certn.invite_requests(),
        2,
        "the failed one and the operator's"
    );
}

/// A wait the store refuses is retried until it is written: the event does not stay running
/// under this run's lease, which its heartbeat keeps renewing, until the host restarts.
#[tokio::test(flavor = "multi_thread")]
async fn a_wait_the_store_refuses_is_retried_so_the_event_does_not_stay_running() {
    let s = nolookup_stack("wait-refused").await;
    let store = &s.host().app.store;
    let db = rusqlite::Connection::open(&s.config.storage.path).expect("open the database");
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch(
        "CREATE TABLE poison_waits (on_ INTEGER);
         INSERT INTO poison_waits VALUES (1);
         CREATE TRIGGER poison_wait BEFORE UPDATE OF state ON events
         WHEN NEW.state = 'waiting' AND EXISTS (SELECT 1 FROM poison_waits)
         BEGIN SELECT RAISE(ABORT, 'a refused wait (test)'); END;",
    )
    .expect("install the trigger");

    s.certn.hang_next(1);
    let opp = s.candidate("Ada Lovelace", Some("ada@example.com"), &[], None);
    assert_eq!(s.move_to(&opp, TRIGGER).await.unwrap(), 200);
    let retried = |text: String| {
        text.lines()
            .find_map(|l| l.strip_prefix("switchyard_event_writes_retried_total "))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .filter(|n| *n >= 1.0)
    };
    eventually("the refused wait is retried", LONG, || {
        retried(s.host().app.metrics.render(None))
    })
    .await;
    let held = store.events(CERTN, 10).unwrap();
    assert!(
        held.iter().all(|e| e.state == EventState::Running),
        "{held:?}"
    );

    // The store takes writes again: the next try puts it to wait, with no restart.
    db.execute("DELETE FROM poison_waits", []).unwrap();
    let waiting = eventually("the event waits for an operator", LONG, || {
        store
            .events(CERTN, 10)
            .ok()?
            .into_iter()
            .find(|e| e.state == EventState::Waiting)
    })
    .await;
    assert_eq!(waiting.waiting_for, Some(WaitFor::Operator), "{waiting:?}");
    assert_eq!(s.certn.invite_requests(), 1, "nothing invited again");
}

#[test]
fn serve_names_every_problem_of_a_config_in_one_run_without_a_backtrace() {
    let dir = scratch("config-problems");
    let db = dir.join("data/switchyard.db");
    let config = dir.join("switchyard.toml");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "short"
[storage]
path = "{db}"
[runtime]
connectors_dir = "{connectors}"
[worker]
nice = 40
[[integrations]]
id = "local-certn"
connector = "certn"
allowed_hosts = ["127.0.0.1:9999"]
[integrations.ats]
kind = "lever"
api_key = "k"
signature_token = "t"
[[integrations.packages]]
name = "Basic"
default = true
[[integrations.packages]]
name = "Plus"
default = true
"#,
        db = db.display(),
        connectors = plugins_dir().display(),
    );
    std::fs::write(&config, text).unwrap();
    let started = Instant::now();
    let out = Command::new(switchyard_tests::host_process::binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard serve");
    assert!(!out.status.success(), "a broken config must not serve");
    assert!(started.elapsed() < LONG, "it stopped by itself");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for named in [
        "server.admin_token",
        "worker.nice",
        "exactly one package must be the default",
        // The same loopback entry: admitted by one setting, approved by another; both now.
        "set allow_loopback = true",
        "add them to runtime.approved_hosts",
    ] {
        assert!(stderr.contains(named), "`{named}` not named:\n{stderr}");
    }
    assert!(stderr.contains("problems in the configuration"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
    assert!(!db.exists(), "a refused config creates no database");
}
