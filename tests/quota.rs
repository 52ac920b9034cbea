//! A full state quota is an alarm, not an outage: a connector that keeps an entry per screening
//! in `state` (the 0.1.0 Certn build still does) fills a small quota; its events then **wait**
//! with the reason (not dead, the vendor's circuit breaker closed), the
//! integration's health and `/metrics` say so, an operator's "retry now" finds it still full,
//! and raising the integration's quota through the admin API runs them, one invitation each.

use std::time::Duration;

use serde_json::json;
use switchyard::store::{EventState, WaitFor};
use switchyard_testkit::{Stack, StackOptions, CERTN, TRIGGER};
use switchyard_tests::support_admin::{fixture, Admin, Body, TOKEN};
use switchyard_tests::{eventually, scratch};

const LONG: Duration = Duration::from_secs(40);
const COMPLETE: &str = "CERTN - Complete";

async fn screened(s: &Stack, name: &str) -> String {
    let opp = s.candidate(name, Some("q@example.com"), &[], None);
    assert_eq!(s.move_to(&opp, TRIGGER).await.unwrap(), 200);
    opp
}

async fn completes(s: &Stack, opp: &str) {
    s.wait_for(opp, LONG, |o| o.tags.contains(&COMPLETE.to_string()))
        .await
        .expect("screening completes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_state_quota_makes_events_wait_and_raising_it_runs_them_once() {
    let data = scratch("quota-waits");
    let dir = data.join("connectors");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("certn_v01.wasm"), fixture("certn_v01")).unwrap();
    let mut s = Stack::prepare(StackOptions::new(&dir, &data))
        .await
        .unwrap();
    s.config.server.admin_token = Some(switchyard::config::Secret::new(TOKEN));
    // Few failures open the breaker: a quota counted against the vendor would show at once.
    s.config.worker.breaker_failures = 2;
    for i in &mut s.config.integrations {
        if i.id == CERTN {
            i.connector = "certn-v01".into();
        }
    }
    let s = s.run().await.unwrap();
    let admin = Admin::new(&s, Some(TOKEN));
    let path = format!("/admin/integrations/{CERTN}");

    // One screening: what one costs in state.
    let first = screened(&s, "First").await;
    completes(&s, &first).await;
    let (_, view) = admin.get(&path).await;
    let per_screening = view["health"]["state_bytes"].as_u64().unwrap();
    assert!(per_screening > 0, "{view}");
    assert_eq!(view["health"]["status"], "ok", "{view}");

    // Room for two and a bit: the second fits, the third and fourth do not.
    let quota = per_screening * 2 + per_screening / 4;
    let (status, body) = admin
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(Body::Json(json!({"state_total_bytes": quota}))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let second = screened(&s, "Second").await;
    completes(&s, &second).await;
    let (_, view) = admin.get(&path).await;
    assert_eq!(view["health"]["status"], "warning", "over 80 %: {view}");
    let stuck = [screened(&s, "Third").await, screened(&s, "Fourth").await];
    let store = &s.host().app.store;
    eventually("two events wait for quota", LONG, || {
        (store.waiting_for(CERTN, WaitFor::Quota).unwrap() == 2).then_some(())
    })
    .await;

    let events = store.events(CERTN, 100).unwrap();
    assert!(
        !events.iter().any(|e| e.state == EventState::Dead),
        "{events:?}"
    );
    let waiting: Vec<_> = events
        .iter()
        .filter(|e| e.state == EventState::Waiting)
        .collect();
    assert_eq!(waiting.len(), 2, "{events:?}");
    for e in &waiting {
        assert_eq!(e.waiting_for, Some(WaitFor::Quota));
        assert_eq!(e.attempts, 0, "a wait costs no attempt: {e:?}");
        let reason = e.last_error.as_deref().unwrap_or_default();
        assert!(reason.contains("state_total_bytes"), "{reason}");
    }
    let (_, view) = admin.get(&path).await;
    let health = &view["health"];
    assert_eq!(health["status"], "attention", "{view}");
    assert!(
        health["problems"].as_array().unwrap().iter().any(|p| {
            p["kind"] == "quota" && p["message"].as_str().unwrap().contains("state_total_bytes")
        }),
        "{view}"
    );
    let (_, listed) = admin.get("/admin/events?state=waiting").await;
    assert_eq!(listed["events"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed["events"][0]["waiting_for"], "quota", "{listed}");
    let metrics = reqwest::get(format!("http://{}/metrics", s.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "switchyard_events_waiting{{integration=\"{CERTN}\",waiting_for=\"quota\"}} 2"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "switchyard_connector_state_quota_bytes{{integration=\"{CERTN}\",connector=\"certn-v01\"}} {quota}"
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&format!(
            "switchyard_breaker_open{{integration=\"{CERTN}\"}} 1"
        )),
        "the vendor's breaker stays closed: {metrics}"
    );
    // (This 0.1.0 build records its order after the invitation, with Certn's idempotency key:
    // the two waiting ones may be invited already; their retries must not invite again.)
    assert!(s.certn.applications().len() <= 4);

    // Retry now, still full: they run and wait again.
    let (status, body) = admin.post(&format!("{path}/resume"), None).await;
    assert_eq!((status.as_u16(), body["resumed"].as_u64()), (200, Some(2)));
    eventually("they wait again", LONG, || {
        (store.waiting_for(CERTN, WaitFor::Quota).unwrap() == 2).then_some(())
    })
    .await;

    // The operator raises the quota: both run, one invitation each.
    let (status, body) = admin
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(Body::Json(json!({"state_total_bytes": 1 << 20}))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for opp in &stuck {
        completes(&s, opp).await;
    }
    assert_eq!(s.certn.applications().len(), 4);
    let (_, view) = admin.get(&path).await;
    assert_eq!(view["health"]["status"], "ok", "{view}");
}
