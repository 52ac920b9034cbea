//! Lever → Canditech (seed 003) over real HTTP with the simulators: rules attach an assessment to
//! (posting, stage), completion brings a score, a results link and a note, a reviewer's verdict
//! becomes a tag that a changed verdict replaces, bad callbacks change nothing, and a retried
//! start never invites twice even when Canditech ignores idempotency keys.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard::store::EventState;
use switchyard::wasm::connector::ScreeningRequest;
use switchyard_sim::canditech::{self, CanditechOptions, Verdict, SIGNATURE_HEADER};
use switchyard_sim::lever::{NewOpportunity, Opportunity};
use switchyard_testkit::{
    wait_for, CanditechSetup, Stack, CANDITECH, CANDITECH_STAGE, PYTHON_ASSESSMENT, PYTHON_POSTING,
};
use switchyard_tests::{eventually, options, stack};

const LONG: Duration = Duration::from_secs(30);
const INVITED: &str = "Canditech - Invited";
const STARTED: &str = "Canditech - Started";
const COMPLETED: &str = "Canditech - Completed";
const UP: &str = "Canditech - Thumbs Up";
const DOWN: &str = "Canditech - Thumbs Down";

fn scripted() -> CanditechOptions {
    CanditechOptions {
        step_delay: None,
        callback_retry_base: Duration::from_millis(100),
        ..CanditechOptions::default()
    }
}

async fn ct_stack(name: &str, opts: CanditechOptions) -> Stack {
    stack(name, |o| o.canditech = Some(CanditechSetup::new(opts))).await
}

/// Adds a candidate on a new posting named `posting` and moves them to `stage`.
async fn candidate(s: &Stack, name: &str, posting: &str, stage: &str) -> String {
    let ct = s.canditech.as_ref().unwrap();
    let posting = ct.lever.add_posting(posting, &[]);
    let opp = ct.lever.add_opportunity(NewOpportunity {
        name: name.into(),
        emails: vec![format!(
            "{}@example.com",
            name.to_lowercase().replace(' ', ".")
        )],
        posting_id: Some(posting),
        ..NewOpportunity::default()
    });
    let stage = ct.lever.stage_id(stage).expect("the stage exists");
    assert_eq!(ct.lever.move_to_stage(&opp, &stage).await.unwrap(), 200);
    opp
}

async fn wait(s: &Stack, opp: &str, done: impl Fn(&Opportunity) -> bool) -> Opportunity {
    wait_for(&s.canditech.as_ref().unwrap().lever, opp, LONG, done)
        .await
        .unwrap()
}

fn has(o: &Opportunity, tag: &str) -> bool {
    o.tags.iter().any(|t| t == tag)
}

fn ct_tags(o: &Opportunity) -> Vec<String> {
    o.tags
        .iter()
        .filter(|t| t.starts_with("Canditech - "))
        .cloned()
        .collect()
}

/// Successful Lever writes of `kind` (`addTags`, `notes`, ...) whose body mentions `needle`.
fn lever_writes(s: &Stack, suffix: &str, needle: &str) -> usize {
    s.canditech
        .as_ref()
        .unwrap()
        .lever
        .request_log()
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.path.ends_with(suffix)
                && (200..300).contains(&r.status)
                && r.body.to_string().contains(needle)
        })
        .count()
}

/// The invitation the rule hit sent, once Lever shows it.
async fn invited(s: &Stack, opp: &str) -> canditech::Invitation {
    wait(s, opp, |o| has(o, INVITED)).await;
    let sim = &s.canditech.as_ref().unwrap().sim;
    let invitations = sim.invitations();
    assert_eq!(invitations.len(), 1, "one invitation");
    invitations[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_hit_invites_with_its_assessment_and_results_and_verdicts_reach_lever() {
    let s = ct_stack("ct-happy", scripted()).await;
    let sim = &s.canditech.as_ref().unwrap().sim;
    let opp = candidate(&s, "Guido van Rossum", PYTHON_POSTING, CANDITECH_STAGE).await;
    let inv = invited(&s, &opp).await;
    assert_eq!(
        inv.assessment.name, PYTHON_ASSESSMENT,
        "the rule's assessment"
    );
    assert_eq!(inv.candidate.email, "guido.van.rossum@example.com");
    let reference = inv.reference.clone().expect("our reference");
    assert!(reference.starts_with("lever:"), "{reference}");
    assert_eq!(
        inv.callback_url.as_deref(),
        Some(format!("http://{}/hooks/{CANDITECH}/vendor", s.addr).as_str())
    );

    sim.send(&inv.id).await.unwrap();
    assert_eq!(sim.start_test(&inv.id).await.unwrap(), 200);
    let o = wait(&s, &opp, |o| has(o, STARTED)).await;
    assert_eq!(ct_tags(&o), [STARTED], "one status tag at a time");

    assert_eq!(sim.complete(&inv.id, 87.0).await.unwrap(), 200);
    let results = format!("{}/results/{}", sim.api_base(), inv.id);
    let o = wait(&s, &opp, |o| has(o, COMPLETED) && !o.notes.is_empty()).await;
    assert_eq!(ct_tags(&o), [COMPLETED]);
    assert_eq!(
        o.links,
        std::slice::from_ref(&results),
        "the results link, added once"
    );
    assert_eq!(o.notes.len(), 1);
    assert_eq!(
        o.notes[0].value,
        format!("Canditech assessment completed: score 87/100. Results: {results}")
    );

    assert_eq!(
        sim.give_verdict(&inv.id, Verdict::ThumbsUp).await.unwrap(),
        200
    );
    let o = wait(&s, &opp, |o| has(o, UP) && o.notes.len() == 2).await;
    assert_eq!(
        ct_tags(&o),
        [COMPLETED, UP],
        "the verdict tag next to the status tag"
    );
    assert!(
        o.notes[1]
            .value
            .starts_with("Canditech verdict: Thumbs up (by Riley Reviewer, "),
        "{}",
        o.notes[1].value
    );

    // The reviewer changes their mind: the state stays complete, the verdict is replaced.
    assert_eq!(
        sim.give_verdict_by(&inv.id, Verdict::ThumbsDown, "Sam Second")
            .await
            .unwrap(),
        200
    );
    let o = wait(&s, &opp, |o| has(o, DOWN) && o.notes.len() == 3).await;
    assert_eq!(
        ct_tags(&o),
        [COMPLETED, DOWN],
        "the old verdict tag is gone"
    );
    assert!(
        o.notes[2]
            .value
            .starts_with("Canditech verdict changed to Thumbs down (by Sam Second, ")
            && o.notes[2].value.ends_with("; was Thumbs up)"),
        "{}",
        o.notes[2].value
    );

    // Canditech re-sends the last event with a fresh `t` (signatures have 1-second resolution:
    // within the same second the request is byte-identical to the first, i.e. a replay):
    // accepted, and nothing is written twice.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(sim.resend_last_callback(&inv.id).await.unwrap(), 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let o = s
        .canditech
        .as_ref()
        .unwrap()
        .lever
        .opportunity(&opp)
        .unwrap();
    assert_eq!(ct_tags(&o), [COMPLETED, DOWN]);
    assert_eq!(o.notes.len(), 3, "each note once");
    assert_eq!(o.links.len(), 1);
    assert_eq!(lever_writes(&s, "/notes", "Canditech"), 3);
    assert_eq!(lever_writes(&s, "/addTags", UP), 1);
    assert_eq!(lever_writes(&s, "/addTags", DOWN), 1);
    assert_eq!(lever_writes(&s, "/addLinks", &results), 1);
    assert_eq!(sim.invitations_for_reference(&reference), 1);
    let order = s
        .host()
        .app
        .store
        .order(CANDITECH, &inv.id)
        .unwrap()
        .unwrap();
    assert_eq!(
        (order.state.as_str(), order.verdict.as_deref(), order.score),
        ("complete", Some(DOWN), Some(87.0))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_miss_is_skipped_with_the_reason_and_invites_nobody() {
    let s = ct_stack("ct-miss", scripted()).await;
    let ct = s.canditech.as_ref().unwrap();
    let other_posting = candidate(&s, "Hedy Lamarr", "Data Analyst", CANDITECH_STAGE).await;
    let other_stage = candidate(&s, "Grace Hopper", PYTHON_POSTING, "Phone screen").await;
    let app = &s.host().app;
    let reasons = eventually("both moves decided", LONG, || {
        let skipped: Vec<String> = app
            .store
            .events(CANDITECH, 20)
            .unwrap()
            .into_iter()
            .filter(|e| e.state == EventState::Skipped)
            .filter_map(|e| e.last_error)
            .collect();
        (skipped.len() == 2).then_some(skipped)
    })
    .await;
    assert!(
        reasons.iter().any(|r| r.contains("\"Data Analyst\"")
            && r.contains("has no rule at stage \"Canditech Stage\"")
            && r.contains("\"Python Developer\"")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("no rule for stage \"Phone screen\"")),
        "{reasons:?}"
    );
    assert_eq!(ct.sim.invite_requests(), 0, "no invitation at Canditech");
    for opp in [other_posting, other_stage] {
        let o = ct.lever.opportunity(&opp).unwrap();
        assert!(ct_tags(&o).is_empty() && o.notes.is_empty(), "{o:?}");
    }
}

/// Posts a Canditech webhook to the host, signed as given.
async fn post_callback(s: &Stack, body: &str, signature: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{}/hooks/{CANDITECH}/vendor", s.addr))
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_stale_and_replayed_callbacks_are_rejected_and_write_nothing() {
    let s = ct_stack("ct-forged", scripted()).await;
    let ct = s.canditech.as_ref().unwrap();
    let opp = candidate(&s, "Ada Lovelace", PYTHON_POSTING, CANDITECH_STAGE).await;
    let inv = invited(&s, &opp).await;
    let app = &s.host().app;
    let events_before = app.store.events(CANDITECH, 100).unwrap().len();

    let completed = json!({
        "id": "evt_forged", "type": "test.completed", "created_at": "2026-01-01T00:00:00Z",
        "data": {"invitation": {"id": inv.id, "status": "completed", "score": 100, "max_score": 100,
                                "results_url": "https://evil.example/results"}}
    })
    .to_string();
    let secret = ct.sim.webhook_secret();
    let now = unix_now();
    let forged = canditech::sign("whsec_not_the_secret", now, completed.as_bytes());
    assert_eq!(post_callback(&s, &completed, &forged).await, 401, "forged");
    let stale = canditech::sign(&secret, now - 301, completed.as_bytes());
    assert_eq!(post_callback(&s, &completed, &stale).await, 401, "stale");
    let future = canditech::sign(&secret, now + 301, completed.as_bytes());
    assert_eq!(
        post_callback(&s, &completed, &future).await,
        401,
        "from the future"
    );
    let good = canditech::sign(&secret, now, completed.as_bytes());
    let tampered = completed.replace("100,", "99,");
    assert_eq!(
        post_callback(&s, &tampered, &good).await,
        401,
        "tampered body"
    );
    assert_eq!(
        post_callback(&s, "{oops", &canditech::sign(&secret, now, b"{oops")).await,
        400
    );

    // A genuine, correctly signed request is accepted once; the same request again is a replay.
    let started = json!({
        "id": "evt_real", "type": "test.started", "created_at": "2026-01-01T00:00:00Z",
        "data": {"invitation": {"id": inv.id, "status": "started"}}
    })
    .to_string();
    let signed = canditech::sign(&secret, now, started.as_bytes());
    assert_eq!(post_callback(&s, &started, &signed).await, 200);
    wait(&s, &opp, |o| has(o, STARTED)).await;
    let events_after_real = app.store.events(CANDITECH, 100).unwrap().len();
    assert_eq!(
        events_after_real,
        events_before + 1,
        "only the genuine one was queued"
    );
    assert_eq!(post_callback(&s, &started, &signed).await, 409, "replayed");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.store.events(CANDITECH, 100).unwrap().len(),
        events_after_real,
        "the rejected requests queued nothing"
    );
    let o = ct.lever.opportunity(&opp).unwrap();
    assert_eq!(ct_tags(&o), [STARTED]);
    assert!(o.links.is_empty() && o.notes.is_empty(), "{o:?}");
    assert!(app
        .store
        .order(CANDITECH, &inv.id)
        .unwrap()
        .unwrap()
        .score
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_start_looks_the_invitation_up_instead_of_inviting_again() {
    let s = ct_stack(
        "ct-retry",
        CanditechOptions {
            ignore_idempotency_keys: true,
            ..scripted()
        },
    )
    .await;
    let sim = &s.canditech.as_ref().unwrap().sim;
    let app = &s.host().app;
    let integration = app.integration(CANDITECH).unwrap();
    let connector = app.registry.get("canditech").expect("canditech is loaded");
    let key = "lever:retried-start";
    let request = ScreeningRequest {
        idempotency_key: key.into(),
        name: "Ada Lovelace".into(),
        emails: vec!["ada@example.com".into()],
        phones: Vec::new(),
        opportunity_id: "opp-retry".into(),
        opportunity_tags: Vec::new(),
        posting_id: None,
        posting_name: None,
        posting_tags: Vec::new(),
        stage: Some(CANDITECH_STAGE.into()),
        package: Some(PYTHON_ASSESSMENT.into()),
    };
    let start = || async {
        connector
            .start_screening(
                app.registry.runtime(),
                app.call_context(&integration, &connector),
                &request,
            )
            .await
            .expect("start-screening works")
    };
    let first = start().await;
    assert_eq!(sim.invite_requests(), 1);
    // No intent is left beside the order (both screening-scoped until the host records it).
    let kv = |k: &str| format!("{k}{key}");
    assert_eq!(
        app.store
            .kv_get(CANDITECH, "canditech", &kv("intent:"))
            .unwrap(),
        None
    );
    // A crash between Canditech's answer and recording it: the intent is there, the order not.
    app.store
        .kv_delete(CANDITECH, "canditech", &kv("order:"))
        .unwrap();
    app.store
        .kv_set_for_screening(CANDITECH, "canditech", key, &kv("intent:"), "python")
        .unwrap();
    let retry = start().await;
    assert_eq!(retry.order_ref, first.order_ref, "the same invitation");
    assert_eq!(sim.invite_requests(), 1, "looked up, not invited again");
    assert_eq!(sim.invitations_for_reference(key), 1);
    // A plain retry finds the recorded order without asking Canditech at all.
    assert_eq!(start().await.order_ref, first.order_ref);
    assert_eq!(sim.invite_requests(), 1);

    // Control: without the intent, this simulator really does invite twice for one key.
    app.store
        .kv_delete(CANDITECH, "canditech", &kv("order:"))
        .unwrap();
    app.store
        .kv_delete(CANDITECH, "canditech", &kv("intent:"))
        .unwrap();
    let blind = start().await;
    assert_ne!(blind.order_ref, first.order_ref);
    assert_eq!(sim.invitations_for_reference(key), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_naming_an_assessment_canditech_does_not_offer_is_refused_with_the_list() {
    let mut s = Stack::prepare(options("ct-rules", |o| {
        o.canditech = Some(CanditechSetup::new(scripted()))
    }))
    .await
    .unwrap();
    let token = "canditech-admin-token-0123456789";
    s.config.server.admin_token = Some(switchyard::config::Secret::new(token));
    let s = s.run().await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{}/admin/integrations/{CANDITECH}", s.addr);
    let patch = |rules: Value| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let resp = http
                .patch(&url)
                .bearer_auth(token)
                .json(&json!({ "rules": rules }))
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = patch(json!([
        {"posting": PYTHON_POSTING, "stage": CANDITECH_STAGE, "package": "Go expert"}
    ]))
    .await;
    assert_eq!(status, 422, "{body}");
    let message = body.to_string();
    assert!(
        message.contains("Go expert")
            && message.contains("Python senior")
            && message.contains("JavaScript mid")
            && message.contains("Customer support"),
        "{message}"
    );
    let (_, shown) = {
        let resp = http.get(&url).bearer_auth(token).send().await.unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!(
        shown["rules"],
        json!([{"posting": PYTHON_POSTING, "stage": CANDITECH_STAGE, "package": PYTHON_ASSESSMENT}]),
        "nothing changed"
    );

    // An offered one (any case) is saved and takes effect.
    let (status, body) = patch(json!([
        {"posting": "Data Analyst", "stage": CANDITECH_STAGE, "package": "customer SUPPORT"}
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rules"][0]["posting"], "Data Analyst");
    let opp = candidate(&s, "Hedy Lamarr", "Data Analyst", CANDITECH_STAGE).await;
    let inv = invited(&s, &opp).await;
    assert_eq!(inv.assessment.name, "Customer support");
}

/// The seed's setup: the customer connects its Lever account as an authorized app (no API key);
/// a move made before the grant waits and goes through once the connect dance is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_connected_through_lever_oauth_gets_invited_and_tagged() {
    let s = stack("canditech-oauth", |o| {
        o.canditech = Some(CanditechSetup {
            oauth: true,
            ..CanditechSetup::new(scripted())
        })
    })
    .await;
    let opp = candidate(&s, "Grace Hopper", PYTHON_POSTING, CANDITECH_STAGE).await;
    // No grant yet: nothing can be written to Lever and nobody is invited.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ct = s.canditech.as_ref().unwrap();
    assert!(ct_tags(&ct.lever.opportunity(&opp).unwrap()).is_empty());
    let answer = s.connect_canditech().await.expect("the connect dance");
    assert_eq!(answer["status"], "connected", "{answer}");
    let o = wait(&s, &opp, |o| has(o, INVITED)).await;
    assert_eq!(ct_tags(&o), vec![INVITED.to_string()]);
}
