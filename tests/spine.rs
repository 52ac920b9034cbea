//! The spine: Lever → Certn end to end, through real HTTP against the simulators.

use std::time::Duration;

use serde_json::json;
use switchyard::store::EventState;
use switchyard_sim::lever::sign;
use switchyard_testkit::{CERTN, TRIGGER};
use switchyard_tests::{all_done, certn_tags, eventually, lever_of, lever_writes, stack};

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_candidate_in_the_trigger_stage_goes_to_complete_with_one_tag_and_the_report_link() {
    let s = stack("happy", |_| {}).await;
    let posting = s.lever.add_posting("Engineer", &["Engineering"]);
    let opp = s.candidate("Ada Lovelace", Some("ada@example.com"), &[], Some(&posting));

    assert_eq!(s.move_to(&opp, TRIGGER).await.unwrap(), 200);
    let done = s
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string()) && !o.links.is_empty()
        })
        .await
        .unwrap();

    let apps = s.certn.applications();
    assert_eq!(apps.len(), 1, "exactly one invitation");
    assert_eq!(apps[0].applicant.email, "ada@example.com");
    assert_eq!(apps[0].package, "Basic", "the default package");
    assert_eq!(
        certn_tags(&done),
        vec!["CERTN - Complete"],
        "exactly one status tag"
    );
    assert!(
        done.tags.contains(&"Engineering".to_string()),
        "other tags untouched"
    );
    let report = apps[0].report_url.clone().expect("Certn has a report");
    assert_eq!(done.links, vec![report]);
    // Every status was shown on the way (Certn sim steps every 300 ms; each tag was added once).
    for label in [
        "CERTN - Pending",
        "CERTN - Analyzing",
        "CERTN - Partial",
        "CERTN - Complete",
    ] {
        let added = s
            .lever
            .request_log()
            .iter()
            .filter(|r| r.path.ends_with("/addTags") && r.body["tags"][0] == label)
            .count();
        assert_eq!(added, 1, "{label} added exactly once");
    }
    // The processed events record the connector version that handled them. The last event's
    // outcome is committed after its ATS write, so it may still be finishing: wait for it.
    let events = all_done(&s, CERTN, LONG).await;
    assert!(events.iter().all(|e| e
        .connector_version
        .as_deref()
        .is_some_and(|v| v.starts_with("certn@"))));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_naming_another_package_overrides_the_default_on_the_candidate_or_the_posting() {
    let s = stack("packages", |_| {}).await;
    let by_candidate = s.candidate("Tagged", Some("t@example.com"), &["Premium"], None);
    let posting = s.lever.add_posting("Driver", &["standard "]);
    let by_posting = s.candidate("Posting", Some("p@example.com"), &[], Some(&posting));
    let plain = s.candidate("Plain", Some("q@example.com"), &["unrelated"], None);
    for opp in [&by_candidate, &by_posting, &plain] {
        s.move_to(opp, TRIGGER).await.unwrap();
    }
    let package_of = |email: &str| {
        s.certn
            .applications()
            .into_iter()
            .find(|a| a.applicant.email == email)
            .map(|a| a.package)
    };
    eventually("three invitations", LONG, || {
        (s.certn.applications().len() == 3).then_some(())
    })
    .await;
    assert_eq!(package_of("t@example.com").as_deref(), Some("Premium"));
    assert_eq!(package_of("p@example.com").as_deref(), Some("Standard"));
    assert_eq!(package_of("q@example.com").as_deref(), Some("Basic"));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_email_shows_the_error_tag_and_moving_again_after_adding_one_starts_the_check() {
    let s = stack("noemail", |_| {}).await;
    let opp = s.candidate("Grace Hopper", None, &[], None);
    s.move_to(&opp, TRIGGER).await.unwrap();
    let errored = s
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - ERROR (No Email)".to_string())
        })
        .await
        .unwrap();
    assert_eq!(certn_tags(&errored), vec!["CERTN - ERROR (No Email)"]);
    assert_eq!(
        s.certn.invite_requests(),
        0,
        "no vendor call without an email"
    );

    // A stage that is not the trigger does nothing.
    s.lever.set_emails(&opp, &["grace@example.com"]).unwrap();
    s.move_to(&opp, "Phone screen").await.unwrap();
    s.move_to(&opp, TRIGGER).await.unwrap();
    let done = s
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string())
        })
        .await
        .unwrap();
    assert_eq!(
        certn_tags(&done),
        vec!["CERTN - Complete"],
        "the error tag is gone"
    );
    assert_eq!(s.certn.applications().len(), 1);
    let skipped = s.host().app.store.events(CERTN, 50).unwrap();
    assert!(
        skipped.iter().any(|e| e.state == EventState::Skipped),
        "the phone-screen move was skipped"
    );
}

/// Posts a raw body to the host's Lever endpoint of `integration`.
async fn post(addr: std::net::SocketAddr, integration: &str, body: Vec<u8>) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("http://{addr}/hooks/{integration}/lever"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("host answers")
        .status()
}

fn webhook(key: &str, token: &str, triggered_at: u64, opportunity: &str, stage: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "triggeredAt": triggered_at, "event": "candidateStageChange", "token": token,
        "signature": sign(key, token, triggered_at),
        "data": {"opportunityId": opportunity, "toStageId": stage, "fromStageId": "x"},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_deliveries_are_refused_with_clear_statuses_and_store_nothing() {
    let s = stack("reject", |_| {}).await;
    let key = lever_of(&s.config.integrations[0])
        .signature_token
        .expose()
        .to_string();
    let opp = s.candidate("Mallory", Some("m@example.com"), &[], None);
    let stage = s.lever.stage_id(TRIGGER).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let addr = s.addr;

    assert_eq!(
        post(addr, CERTN, webhook("wrong-key", "t1", now, &opp, &stage)).await,
        401
    );
    assert_eq!(
        post(
            addr,
            CERTN,
            webhook(&key, "t2", now - 3_600_000, &opp, &stage)
        )
        .await,
        401,
        "stale"
    );
    assert_eq!(
        post(addr, CERTN, b"{\"event\": ".to_vec()).await,
        400,
        "malformed"
    );
    assert_eq!(
        post(addr, CERTN, vec![b' '; 300 * 1024]).await,
        413,
        "oversized"
    );
    assert_eq!(
        post(addr, "nope", webhook(&key, "t3", now, &opp, &stage)).await,
        404
    );
    // Lever's "Verify Connection" ping.
    let ping = serde_json::to_vec(&json!({
        "triggeredAt": now, "event": "candidateHired", "token": "p1", "signature": sign(&key, "p1", now), "data": {},
    }))
    .unwrap();
    assert_eq!(post(addr, CERTN, ping).await, 200);
    assert!(
        s.host().app.store.events(CERTN, 10).unwrap().is_empty(),
        "nothing stored so far"
    );

    // A good delivery, its redelivery, and a replay of its token with other data.
    let good = webhook(&key, "t4", now, &opp, &stage);
    assert_eq!(post(addr, CERTN, good.clone()).await, 200);
    assert_eq!(
        post(addr, CERTN, good).await,
        200,
        "a redelivery is acknowledged"
    );
    let other = s.candidate("Victim", Some("v@example.com"), &[], None);
    assert_eq!(
        post(addr, CERTN, webhook(&key, "t4", now, &other, &stage)).await,
        409,
        "replayed token"
    );
    // Only the Lever deliveries: Certn's first callback may already be stored as well.
    let deliveries = s.host().app.store.events(CERTN, 10).unwrap();
    assert_eq!(
        deliveries
            .iter()
            .filter(|e| e.kind == "lever.stage_change")
            .count(),
        1,
        "stored once: {deliveries:?}"
    );

    s.wait_for(&opp, LONG, |o| {
        o.tags.contains(&"CERTN - Complete".to_string())
    })
    .await
    .unwrap();
    assert_eq!(
        s.certn.applications().len(),
        1,
        "one invitation for one accepted delivery"
    );
    assert!(
        certn_tags(&s.lever.opportunity(&other).unwrap()).is_empty(),
        "the replay did nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivered_webhooks_and_callbacks_write_nothing_twice() {
    let s = stack("dupes", |_| {}).await;
    let opp = s.candidate("Ada", Some("ada@example.com"), &[], None);
    s.move_to(&opp, TRIGGER).await.unwrap();
    s.wait_for(&opp, LONG, |o| {
        o.tags.contains(&"CERTN - Complete".to_string()) && !o.links.is_empty()
    })
    .await
    .unwrap();
    let app_id = s.certn.applications()[0].id.clone();
    let (tags_before, links_before) = (lever_writes(&s, "/addTags"), lever_writes(&s, "/addLinks"));

    // Lever's "Rerun" of the delivery, and Certn re-sending its last (Complete) callback twice.
    assert_eq!(s.lever.rerun_delivery(0).await.unwrap(), 200);
    assert_eq!(s.certn.resend_last_callback(&app_id).await.unwrap(), 200);
    assert_eq!(s.certn.resend_last_callback(&app_id).await.unwrap(), 200);
    tokio::time::sleep(Duration::from_millis(800)).await;

    assert_eq!(s.certn.invite_requests(), 1, "never invited twice");
    assert_eq!(lever_writes(&s, "/addTags"), tags_before);
    assert_eq!(lever_writes(&s, "/addLinks"), links_before);
    let opp = s.lever.opportunity(&opp).unwrap();
    assert_eq!(certn_tags(&opp), vec!["CERTN - Complete"]);
    assert_eq!(opp.links.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn certn_down_for_a_while_then_up_completes_without_duplicates() {
    let s = stack("down", |_| {}).await;
    s.certn.set_down(true);
    let opp = s.candidate("Ada", Some("ada@example.com"), &[], None);
    s.move_to(&opp, TRIGGER).await.unwrap();
    eventually("a few refused invitations", LONG, || {
        (s.certn.invite_requests() >= 2).then_some(())
    })
    .await;
    let events = s.host().app.store.events(CERTN, 10).unwrap();
    assert!(
        events[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("transient")),
        "the failure is recorded: {events:?}"
    );
    s.certn.set_down(false);

    let done = s
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string()) && !o.links.is_empty()
        })
        .await
        .unwrap();
    assert_eq!(s.certn.applications().len(), 1, "one invitation");
    assert_eq!(certn_tags(&done), vec!["CERTN - Complete"]);
    assert_eq!(done.links.len(), 1);
    assert_eq!(lever_writes(&s, "/addLinks"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn lever_rate_limiting_and_errors_are_retried() {
    let s = stack("lever429", |_| {}).await;
    let opp = s.candidate("Ada", Some("ada@example.com"), &[], None);
    s.lever.fail_next(6, 429);
    s.move_to(&opp, TRIGGER).await.unwrap();
    let done = s
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string()) && !o.links.is_empty()
        })
        .await
        .unwrap();
    assert_eq!(certn_tags(&done), vec!["CERTN - Complete"]);
    assert_eq!(s.certn.applications().len(), 1);
    assert!(
        s.lever
            .request_log()
            .iter()
            .filter(|r| r.status == 429)
            .count()
            >= 6
    );
}

/// On SQLite (one host) a started screening's tag is written back from the opportunity read to
/// start it: nothing of this host wrote to it in between, so Lever is not asked again.
#[tokio::test(flavor = "multi_thread")]
async fn a_started_screening_writes_its_tag_back_from_the_opportunity_it_read_to_start() {
    let s = stack("oneread", |o| o.certn.step_delay = None).await;
    let opp = s.candidate("Ada Lovelace", Some("ada@example.com"), &[], None);
    s.lever.clear_request_log();
    assert_eq!(s.move_to(&opp, TRIGGER).await.unwrap(), 200);
    s.wait_for(&opp, LONG, |o| {
        o.tags.contains(&"CERTN - Pending".to_string())
    })
    .await
    .unwrap();
    let log = s.lever.request_log();
    let reads = log
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/opportunities/{opp}")))
        .count();
    assert_eq!(reads, 1, "one read of the opportunity: {log:?}");
    // The next status is a write-back of its own: it reads what the first one wrote.
    let app = s.certn.applications()[0].id.clone();
    s.certn.advance(&app).await.unwrap();
    let moved = s
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - Analyzing".to_string())
        })
        .await
        .unwrap();
    assert_eq!(
        certn_tags(&moved),
        vec!["CERTN - Analyzing"],
        "one status tag"
    );
}
