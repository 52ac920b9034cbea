//! Noisy neighbours and the operator's view of retries: a stalled vendor trips its integration's
//! circuit breaker while another integration on the same host keeps being served, a hung vendor
//! never holds both of two workers, and every attempt of a retried event is visible through the
//! admin API.

use std::time::Duration;

use reqwest::StatusCode;
use switchyard::config::Secret;
use switchyard::store::EventState;
use switchyard_testkit::{Stack, StackOptions, CERTN, TRIGGER};
use switchyard_tests::support_admin::{connectors_dir, data_dir, Admin, TOKEN};
use switchyard_tests::{certn_tags, eventually};

const LONG: Duration = Duration::from_secs(60);
const FAST_STAGE: &str = "Fast Stage";

async fn metrics(stack: &Stack) -> String {
    reqwest::get(format!("http://{}/metrics", stack.addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// Options of a stack with Certn ([`CERTN`]) and a second integration, `fast` (misbehave,
/// triggered at [`FAST_STAGE`]), on a fresh data dir `name`.
fn certn_and_fast(name: &str) -> StackOptions {
    let data = data_dir(name);
    let dir = connectors_dir(&data, &["certn", "misbehave"]);
    let mut opts = StackOptions::new(&dir, &data);
    opts.scratch = Some(data.0);
    opts.extra = vec![("fast".into(), "misbehave".into(), FAST_STAGE.into())];
    opts
}

/// Makes every Certn call hang and moves `n` candidates to its trigger stage.
async fn stuck_certn_candidates(s: &Stack, n: usize) -> Vec<String> {
    s.certn.hang_next(1_000_000);
    let mut stuck = Vec::with_capacity(n);
    for i in 0..n {
        let email = format!("s{i}@example.com");
        let opp = s.candidate(&format!("Stuck {i}"), Some(&email), &[], None);
        assert_eq!(s.move_to(&opp, TRIGGER).await.unwrap(), 200);
        stuck.push(opp);
    }
    stuck
}

/// Moves `n` candidates to `fast`'s trigger stage and waits until all its events are done.
async fn fast_events_done(s: &Stack, n: usize) {
    for i in 0..n {
        let opp = s.candidate(&format!("Fast {i}"), Some("f@example.com"), &[], None);
        assert_eq!(s.move_to(&opp, FAST_STAGE).await.unwrap(), 200);
    }
    let store = s.host().app.store.clone();
    eventually("the fast integration's events done", LONG, || {
        let done = store
            .list_events(Some("fast"), Some(EventState::Done), 100)
            .unwrap()
            .len();
        (done == n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_vendor_opens_its_breaker_while_another_integration_keeps_flowing() {
    let mut opts = certn_and_fast("breaker");
    opts.runtime.timeout_ms = 1_500;
    opts.worker.concurrency = 4;
    opts.worker.integration_concurrency = 2;
    opts.worker.breaker_failures = 2;
    opts.worker.breaker_open_secs = 2;
    let s = Stack::start(opts).await.expect("stack");

    // Every Certn call hangs past the connector's deadline.
    let stuck = stuck_certn_candidates(&s, 3).await;
    let open = format!("switchyard_breaker_open{{integration=\"{CERTN}\"}} 1");
    let mut seen_open = false;
    for _ in 0..600 {
        if metrics(&s).await.contains(&open) {
            seen_open = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_open, "the breaker opened: {}", metrics(&s).await);

    // Meanwhile the other integration is served.
    fast_events_done(&s, 6).await;
    let store = s.host().app.store.clone();
    // The stalled integration's events are still waiting (paused, not burning attempts), none
    // dead-lettered, no status shown yet.
    let certn_events = store.events(CERTN, 100).unwrap();
    assert!(
        certn_events.iter().all(|e| e.state != EventState::Dead),
        "{certn_events:?}"
    );
    for opp in &stuck {
        assert!(certn_tags(&s.lever.opportunity(opp).unwrap()).is_empty());
    }

    // The vendor recovers: a probe gets through (half-open), succeeds, the breaker closes and
    // the backlog completes, one invitation each.
    s.certn.hang_next(0);
    for opp in &stuck {
        let done = s
            .wait_for(opp, LONG, |o| {
                o.tags.contains(&"CERTN - Complete".to_string())
            })
            .await
            .unwrap();
        assert_eq!(certn_tags(&done), vec!["CERTN - Complete"]);
    }
    let text = metrics(&s).await;
    for state in ["open", "half-open", "closed"] {
        assert!(
            text.contains(&format!(
                "switchyard_breaker_transitions_total{{integration=\"{CERTN}\",state=\"{state}\"}}"
            )),
            "transition to {state} counted: {text}"
        );
    }
    assert!(
        text.contains(&format!(
            "switchyard_breaker_open{{integration=\"{CERTN}\"}} 0"
        )),
        "{text}"
    );
    assert_eq!(s.certn.applications().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_two_workers_a_hung_vendor_leaves_one_for_the_neighbour() {
    let mut opts = certn_and_fast("two-workers");
    // Two workers and the default integration_concurrency (8, above them); no breaker, and host
    // deadlines past the Certn connector's own 10 s invite timeout: each hung attempt holds its
    // worker ~10 s (the neighbour's events take well under a second), and only the bulkhead
    // can keep a worker free meanwhile.
    opts.worker.concurrency = 2;
    opts.worker.breaker_failures = 1_000;
    opts.worker.shutdown_grace_secs = 1;
    opts.runtime.timeout_ms = 120_000;
    opts.runtime.http_timeout_ms = 120_000;
    let s = Stack::start(opts).await.expect("stack");
    let store = s.host().app.store.clone();

    // Certn hangs; its backlog arrives first and is being worked on.
    stuck_certn_candidates(&s, 3).await;
    eventually("a Certn event running", LONG, || {
        let running = store
            .list_events(Some(CERTN), Some(EventState::Running), 10)
            .unwrap();
        (!running.is_empty()).then_some(())
    })
    .await;

    // The neighbour's events are all done while Certn's first attempts still hang.
    fast_events_done(&s, 3).await;
    let ended: Vec<_> = store
        .events(CERTN, 100)
        .unwrap()
        .into_iter()
        .filter_map(|e| store.event_detail(e.id).unwrap())
        .filter(|d| !d.attempts_history.is_empty())
        .collect();
    assert!(
        ended.is_empty(),
        "the neighbour waited for Certn's hung attempts to end: {ended:?}"
    );
    s.certn.hang_next(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_attempt_of_a_retried_event_is_visible_through_the_admin_api() {
    let data = data_dir("history");
    let dir = connectors_dir(&data, &["certn"]);
    let mut opts = StackOptions::new(&dir, &data);
    opts.scratch = Some(data.0);
    let mut stack = Stack::prepare(opts).await.expect("stack");
    stack.config.server.admin_token = Some(Secret::new(TOKEN));
    let s = stack.run().await.expect("host");
    let admin = Admin::new(&s, Some(TOKEN));

    s.certn.fail_next(2);
    let opp = s.candidate("Ada", Some("ada@example.com"), &[], None);
    s.move_to(&opp, TRIGGER).await.unwrap();
    s.wait_for(&opp, LONG, |o| {
        o.tags.contains(&"CERTN - Complete".to_string())
    })
    .await
    .unwrap();
    let start = s
        .host()
        .app
        .store
        .events(CERTN, 50)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == switchyard::ats::lever::LEVER_STAGE_CHANGE)
        .expect("the start event");

    let (status, body) = admin.get(&format!("/admin/events/{}", start.id)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "done");
    let history = body["attempts_history"].as_array().expect("history");
    let outcomes: Vec<&str> = history
        .iter()
        .filter_map(|a| a["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "done"], "{body}");
    for (i, a) in history.iter().enumerate() {
        assert_eq!(a["attempt"], i + 1);
        assert!(a["started_at_ms"].as_i64().unwrap_or(0) > 0);
        assert!(a["took_ms"].as_i64().is_some());
        assert!(
            a["connector_version"]
                .as_str()
                .is_some_and(|v| v.starts_with("certn@")),
            "{a}"
        );
    }
    assert!(
        history[0]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(history[2]["error"].is_null());
    // The success did not erase what went wrong before.
    assert!(
        body["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );

    let (status, body) = admin
        .get(&format!("/admin/events?state=done&integration={CERTN}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let listed = body["events"].as_array().expect("events");
    assert!(listed
        .iter()
        .any(|e| e["id"] == start.id && e["attempts"] == 3));
    assert!(listed
        .iter()
        .all(|e| e["state"] == "done" && e.get("payload").is_none()));

    assert_eq!(
        admin.get("/admin/events?state=bogus").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin.get("/admin/events/999999").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        Admin::new(&s, None)
            .get(&format!("/admin/events/{}", start.id))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}
