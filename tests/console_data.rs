//! What the operator console shows and does, through the admin API: a Lever → Certn event with
//! its inbound headers, signature check and every vendor and ATS call (no secret anywhere), the
//! candidate's timeline, the setup wizard's live lists, the events search, the stats, and bulk replay of dead letters after a vendor
//! outage (one invitation per candidate, a forced replay of a done event inviting nobody again).
//!
//! Needs the built plugins (see plugins/README.md).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use switchyard::store::EventState;
use switchyard_testkit::{CERTN, TRIGGER};
use switchyard_tests::support_admin::{stack, stack_with, Admin, Body, TOKEN};
use switchyard_tests::{certn_complete, eventually};

const LONG: Duration = Duration::from_secs(60);

/// The trigger event of `opportunity` (its stage change), found through the search filter.
async fn trigger_event(admin: &Admin, opportunity: &str) -> Value {
    let (status, list) = admin
        .get(&format!(
            "/admin/events?integration={CERTN}&candidate={opportunity}&limit=10"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let trigger = list["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] != "vendor.status")
        .cloned();
    trigger.unwrap_or_else(|| panic!("no trigger event in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_shows_its_webhook_and_every_call_and_the_timeline_fills_without_a_secret(
) -> anyhow::Result<()> {
    let stack = stack("console-event", &["certn"]).await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    let opp = stack.candidate("Ada Console", Some("ada@example.com"), &[], None);
    certn_complete(&stack, &opp, LONG).await;

    let trigger = trigger_event(&admin, &opp).await;
    let (status, event) = admin.get(&format!("/admin/events/{}", trigger["id"])).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert!(
        event["connector_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("certn@")),
        "{event}"
    );
    assert_eq!(event["inbound"]["signature"], "valid (lever)", "{event}");
    let headers = event["inbound"]["headers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        headers.iter().any(|h| h[0] == "content-type"),
        "the webhook's headers as received: {event}"
    );
    let calls = event["calls"].as_array().cloned().unwrap_or_default();
    let certn_base = stack.certn.api_base();
    let vendor: Vec<&Value> = calls.iter().filter(|c| c["target"] == "vendor").collect();
    assert!(
        vendor.iter().any(|c| c["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&certn_base))
            && c["status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s))),
        "the invitation at Certn: {calls:?}"
    );
    let ats: Vec<&Value> = calls.iter().filter(|c| c["target"] == "ats").collect();
    assert!(
        ats.iter()
            .any(|c| c["method"] == "GET" && c["url"].as_str().is_some_and(|u| u.contains(&opp))),
        "the opportunity read from Lever: {calls:?}"
    );
    assert!(
        ats.iter().any(|c| c["method"] == "POST"),
        "the status written to Lever: {calls:?}"
    );
    assert!(calls
        .iter()
        .all(|c| c["attempt"].as_u64() >= Some(1) && c["took_ms"].is_i64()));

    let (status, timeline) = admin
        .get(&format!(
            "/admin/integrations/{CERTN}/timeline?opportunity={opp}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    let entries = timeline["entries"].as_array().cloned().unwrap_or_default();
    let steps: Vec<&str> = entries.iter().filter_map(|e| e["step"].as_str()).collect();
    // Webhook accepted → connector invoked → vendor call → the ATS written after it.
    let first = |step: &str| steps.iter().position(|s| *s == step);
    let order = [
        first("accepted"),
        first("attempt"),
        first("vendor_call"),
        steps.iter().rposition(|s| *s == "ats_call"),
    ];
    assert!(order.iter().all(Option::is_some), "{steps:?}");
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    assert!(steps.contains(&"status"), "{steps:?}");
    let times: Vec<i64> = entries.iter().filter_map(|e| e["at_ms"].as_i64()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {times:?}"
    );

    // No secret of the customer's, the vendor's or the operator's in what the console shows.
    let shown = format!("{event}{timeline}");
    let secrets = [
        stack.certn.api_key(),
        stack.certn.webhook_secret(),
        stack.lever.api_key(),
        TOKEN.to_string(),
    ];
    for secret in secrets {
        assert!(!shown.contains(&secret), "a secret is shown");
    }

    // The wizard's live lists: Lever's stages, Certn's packages (exactly one default).
    let (status, stages) = admin
        .get(&format!("/admin/integrations/{CERTN}/stages"))
        .await;
    assert_eq!(status, StatusCode::OK, "{stages}");
    assert!(
        stages["stages"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == TRIGGER),
        "{stages}"
    );
    let (status, packages) = admin
        .get(&format!("/admin/integrations/{CERTN}/packages"))
        .await;
    assert_eq!(status, StatusCode::OK, "{packages}");
    let defaults = packages["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["default"] == true)
        .count();
    assert_eq!(defaults, 1, "{packages}");
    assert_eq!(
        admin.get("/admin/integrations/nobody/stages").await.0,
        StatusCode::NOT_FOUND
    );

    // Bad input: a timeline without a candidate, a search with a wrong time.
    let (status, _) = admin
        .get(&format!("/admin/integrations/{CERTN}/timeline"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = admin.get("/admin/events?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("since")),
        "{body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_events_search_filters_and_pages_and_keeps_the_old_parameters() -> anyhow::Result<()> {
    let stack = stack("console-search", &["certn"]).await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    let mut opps = Vec::new();
    for n in 0..3 {
        let opp = stack.candidate(
            &format!("Search {n}"),
            Some(&format!("s{n}@example.com")),
            &[],
            None,
        );
        certn_complete(&stack, &opp, LONG).await;
        opps.push(opp);
    }
    let list = |query: String| {
        let admin = &admin;
        async move {
            let (status, body) = admin.get(&format!("/admin/events?{query}")).await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            body
        }
    };
    let ids = |body: &Value| -> Vec<i64> {
        body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["id"].as_i64())
            .collect()
    };
    let all = ids(&list(format!("integration={CERTN}&limit=500")).await);
    assert!(
        all.len() >= 6,
        "a trigger and a status per candidate: {all:?}"
    );
    // One candidate's events only.
    let one = ids(&list(format!("candidate={}", opps[1])).await);
    assert!(
        !one.is_empty() && one.len() < all.len(),
        "{one:?} of {all:?}"
    );
    assert!(one.iter().all(|id| all.contains(id)));
    // By connector and ATS (resolved to integrations), by state, error text and time.
    assert_eq!(
        ids(&list("connector=certn&ats=lever&limit=500".into()).await),
        all
    );
    assert!(ids(&list("connector=nobody".into()).await).is_empty());
    assert!(ids(&list("state=dead".into()).await).is_empty());
    assert!(ids(&list("error=no-such-error-text".into()).await).is_empty());
    assert!(ids(&list(format!("until={}", 1_000)).await).is_empty());
    assert_eq!(
        ids(&list("since=2000-01-01T00:00:00Z&limit=500".into()).await).len(),
        all.len()
    );
    // Pages of two, newest first, through the cursor.
    let mut paged = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let before = cursor.map(|c| format!("&before={c}")).unwrap_or_default();
        let page = list(format!("integration={CERTN}&limit=2{before}")).await;
        paged.extend(ids(&page));
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(paged, all);
    // Unknown parameters are still refused.
    assert_eq!(
        admin.get("/admin/events?colour=red").await.0,
        StatusCode::BAD_REQUEST
    );

    // The numbers behind the pictures count the same events and the version that ran them.
    let (status, stats) = admin.get("/admin/stats?hours=1&connector=certn").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let received: i64 = stats["events_per_minute"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["count"].as_i64())
        .sum();
    assert_eq!(received, all.len() as i64, "{stats}");
    let versions = stats["connector_versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        versions.iter().all(|v| v["connector_version"]
            .as_str()
            .is_some_and(|t| t.starts_with("certn@"))),
        "{stats}"
    );
    assert!(
        versions
            .iter()
            .any(|v| v["attempts"].as_i64() >= Some(6)
                && v["p99_ms"].as_i64() >= v["p50_ms"].as_i64()),
        "{stats}"
    );
    assert_eq!(stats["queue"]["dead"], 0, "{stats}");
    assert_eq!(
        admin.get("/admin/stats?hours=99").await.0,
        StatusCode::BAD_REQUEST
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_of_an_outage_are_bulk_replayed_by_filter_with_one_invitation_each(
) -> anyhow::Result<()> {
    let stack = stack_with("console-replay", &["certn"], |c| {
        c.worker.max_attempts = 2;
        c.worker.retry_base_ms = 50;
        c.worker.breaker_failures = 1_000;
    })
    .await?;
    let admin = Admin::new(&stack, Some(TOKEN));
    let store = stack.host().app.store.clone();

    // The vendor would invite twice if asked twice: only the host's idempotency stands.
    stack.certn.set_ignore_idempotency_keys(true);
    // Certn is down: every candidate's event dead-letters.
    stack.certn.set_down(true);
    let mut opps = Vec::new();
    for n in 0..3 {
        let opp = stack.candidate(
            &format!("Outage {n}"),
            Some(&format!("o{n}@example.com")),
            &[],
            None,
        );
        assert_eq!(stack.move_to(&opp, TRIGGER).await?, 200);
        opps.push(opp);
    }
    eventually("three dead letters", LONG, || {
        let dead = store
            .list_events(Some(CERTN), Some(EventState::Dead), 10)
            .ok()?;
        (dead.len() == 3).then_some(())
    })
    .await;

    // A filter matching nothing replays nothing; a bad body changes nothing.
    let (status, body) = admin
        .post(
            "/admin/replays",
            Some(Body::Json(json!({"filter": {"colour": "red"}}))),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Fixed: replay every dead letter of the integration, by filter.
    stack.certn.set_down(false);
    let (status, job) = admin
        .post(
            "/admin/replays",
            Some(Body::Json(
                json!({"filter": {"integration": CERTN, "state": "dead"}}),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["total"], 3, "{job}");
    let id = job["id"].clone();
    for opp in &opps {
        stack
            .wait_for(opp, LONG, |o| {
                o.tags.contains(&"CERTN - Complete".to_string())
            })
            .await?;
    }
    let (_, job) = admin.get(&format!("/admin/replays/{id}")).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["queued"], 3, "{job}");
    for n in 0..3 {
        let email = format!("o{n}@example.com");
        assert_eq!(stack.certn.invitations_for_email(&email), 1, "{email}");
    }

    // A forced replay of a finished screening writes the ATS again but invites nobody again,
    // and so does "everything of this integration since T".
    let invites = stack.certn.invite_requests();
    let trigger = trigger_event(&admin, &opps[0]).await;
    let (status, body) = admin
        .post(&format!("/admin/events/{}/retry", trigger["id"]), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "done needs force: {body}");
    let (status, body) = admin
        .post(
            &format!("/admin/events/{}/retry?force=true", trigger["id"]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, job) = admin
        .post(
            &format!("/admin/integrations/{CERTN}/replay"),
            Some(Body::Json(
                json!({"since": "2000-01-01T00:00:00Z", "force": true}),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].clone();
    let job_id = id.as_i64().unwrap_or_default();
    let finished = eventually(
        "the since-T replay done and its events finished",
        LONG,
        || {
            let job = store.replay_job(job_id).ok()??;
            let finished = job.pending == 0
                && job
                    .outcomes
                    .iter()
                    .all(|(state, _)| *state == EventState::Done);
            finished.then_some(job)
        },
    )
    .await;
    assert!(
        finished.queued >= 6,
        "every trigger and status update: {finished:?}"
    );
    for n in 0..3 {
        let email = format!("o{n}@example.com");
        assert_eq!(stack.certn.invitations_for_email(&email), 1, "{email}");
    }
    assert_eq!(
        stack.certn.invite_requests(),
        invites,
        "no invite sent again"
    );
    let (status, _) = admin
        .post(&format!("/admin/replays/{id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        admin.get("/admin/replays/999999").await.0,
        StatusCode::NOT_FOUND
    );
    Ok(())
}
