//! Canditech simulator over real HTTP: the API of `docs/canditech.md` (auth, assessments,
//! invitations, idempotency, lookup, errors, rate limits), scripted progression with verdicts and
//! verdict changes, signed webhooks with retries, and failure injection.

use crate::common;

use std::time::Duration;

use common::{client, eventually, Receiver};
use serde_json::{json, Value};
use switchyard_sim::canditech::{sign, CanditechOptions, CanditechSim, Verdict};

fn manual() -> CanditechOptions {
    CanditechOptions {
        step_delay: None,
        callback_retry_base: Duration::from_millis(10),
        ..CanditechOptions::default()
    }
}

fn python(sim: &CanditechSim) -> String {
    sim.assessment_id("Python senior")
        .expect("the default assessments include Python senior")
}

fn body(sim: &CanditechSim, reference: &str, callback_url: Option<&str>) -> Value {
    let mut b = json!({
        "assessment_id": python(sim),
        "candidate": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "reference": reference,
    });
    if let Some(url) = callback_url {
        b["callback_url"] = json!(url);
    }
    b
}

async fn create(sim: &CanditechSim, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}/v1/invitations", sim.api_base()))
        .bearer_auth(sim.api_key())
        .json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.unwrap()
}

async fn create_json(sim: &CanditechSim, body: &Value, key: Option<&str>) -> (u16, Value) {
    let resp = create(sim, body, key).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(sim: &CanditechSim, path_and_query: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("{}{path_and_query}", sim.api_base()))
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Checks a `Canditech-Signature` the way a receiver would: any `v1` over `"<t>.<body>"`.
fn verify(secret: &str, header: &str, body: &str) -> bool {
    let Some(t) = header
        .split(',')
        .find_map(|p| p.strip_prefix("t="))
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return false;
    };
    let expected = sign(secret, t, body.as_bytes());
    let Some((_, mac)) = expected.split_once(",v1=") else {
        return false;
    };
    header
        .split(',')
        .filter_map(|p| p.strip_prefix("v1="))
        .any(|v| v == mac)
}

fn error_code(v: &Value) -> (&str, Option<&str>) {
    (
        v["error"]["code"].as_str().unwrap_or("?"),
        v["error"]["field"].as_str(),
    )
}

#[tokio::test]
async fn auth_assessments_and_validation() {
    let sim = CanditechSim::start(manual()).await.unwrap();
    assert!(sim.api_base().starts_with("http://127.0.0.1:"));

    let resp = client()
        .get(format!("{}/v1/assessments", sim.api_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&v), ("unauthorized", None));
    let resp = client()
        .get(format!("{}/v1/assessments", sim.api_base()))
        .bearer_auth("ck_live_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let (s, v) = get(&sim, "/v1/assessments").await;
    assert_eq!(s, 200);
    let list = v["assessments"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["Python senior", "JavaScript mid", "Customer support"]
    );
    assert_eq!(list[0]["id"], json!(python(&sim)));
    assert!(python(&sim).starts_with("asm_"));
    assert_eq!(list[0]["duration_minutes"], 60);
    assert_eq!(list[0]["max_score"], 100);

    // Every documented validation error, in the documented shape; none creates anything.
    let resp = client()
        .post(format!("{}/v1/invitations", sim.api_base()))
        .bearer_auth(sim.api_key())
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        error_code(&resp.json::<Value>().await.unwrap()),
        ("invalid_json", None)
    );
    let cases = [
        (
            json!({"candidate": {"email": "a@b.c"}}),
            "validation_failed",
            "assessment_id",
        ),
        (
            json!({"assessment_id": "asm_nope", "candidate": {"email": "a@b.c"}}),
            "unknown_assessment",
            "assessment_id",
        ),
        (
            json!({"assessment_id": python(&sim), "candidate": {"name": "No Mail"}}),
            "validation_failed",
            "candidate.email",
        ),
        (
            json!({"assessment_id": python(&sim), "candidate": {"email": "not-an-email"}}),
            "validation_failed",
            "candidate.email",
        ),
        (
            json!({"assessment_id": python(&sim), "candidate": {"email": "a@b.c"},
                   "reference": "r".repeat(256)}),
            "validation_failed",
            "reference",
        ),
        (
            json!({"assessment_id": python(&sim), "candidate": {"email": "a@b.c"},
                   "callback_url": "/relative"}),
            "validation_failed",
            "callback_url",
        ),
    ];
    for (b, code, field) in cases {
        let (s, v) = create_json(&sim, &b, None).await;
        assert_eq!(s, 422, "{b}");
        assert_eq!(error_code(&v), (code, Some(field)), "{b}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let long_key = "k".repeat(256);
    let (s, v) = create_json(&sim, &body(&sim, "r", None), Some(&long_key)).await;
    assert_eq!(
        (s, error_code(&v)),
        (400, ("invalid_idempotency_key", None))
    );
    assert!(sim.invitations().is_empty());

    let (s, inv) = create_json(&sim, &body(&sim, "lever:tok-1", None), None).await;
    assert_eq!(s, 201);
    let id = inv["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("inv_"));
    assert_eq!(inv["status"], "invited");
    assert_eq!(inv["sent_at"], Value::Null);
    assert_eq!(inv["assessment"]["name"], "Python senior");
    assert_eq!(inv["candidate"]["email"], "ada@example.com");
    assert_eq!(inv["reference"], "lever:tok-1");
    assert_eq!(inv["callback_url"], Value::Null);
    assert_eq!(inv["max_score"], 100);
    assert_eq!(inv["score"], Value::Null);
    assert_eq!(inv["verdict"], Value::Null);
    let test_page = client()
        .get(inv["test_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(test_page.status(), 200);
    assert!(test_page.text().await.unwrap().contains("Python senior"));

    assert_eq!(
        get(&sim, &format!("/v1/invitations/{id}")).await,
        (200, inv)
    );
    let (s, v) = get(&sim, "/v1/invitations/inv_nope").await;
    assert_eq!((s, error_code(&v)), (404, ("not_found", None)));
    let (s, v) = get(&sim, "/v2/whatever").await;
    assert_eq!((s, error_code(&v)), (404, ("not_found", None)));
    assert_eq!(sim.invite_requests(), 9, "the 400s and 422s count too");
}

#[tokio::test]
async fn idempotency_key_returns_the_first_invitation() {
    let sim = CanditechSim::start(manual()).await.unwrap();
    let b = body(&sim, "lever:tok-1", None);
    let first = create(&sim, &b, Some("lever:tok-1")).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    sim.send(&id).await.unwrap();

    // A repeat (even with another body) creates nothing and shows the invitation as it is now.
    let mut other = b.clone();
    other["candidate"]["email"] = json!("someone@else.example");
    let again = create(&sim, &other, Some("lever:tok-1")).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert!(again["sent_at"].is_string());
    assert_eq!(sim.invitations().len(), 1);
    assert_eq!(sim.invitations_for_reference("lever:tok-1"), 1);
    assert_eq!(sim.invitations_for_email("someone@else.example"), 0);

    let (s, _) = create_json(&sim, &b, Some("lever:tok-2")).await;
    assert_eq!(s, 201);
    assert_eq!(sim.invitations().len(), 2);
    assert_eq!(sim.invitations_for_email("ADA@example.com"), 2);
    assert_eq!(sim.invite_requests(), 3);
}

#[tokio::test]
async fn ignored_idempotency_keys_duplicate_and_lookup_finds_them() {
    let sim = CanditechSim::start(CanditechOptions {
        ignore_idempotency_keys: true,
        ..manual()
    })
    .await
    .unwrap();
    let reference = "lever:a b/c?d=&e#f";
    let b = body(&sim, reference, None);
    let (s1, i1) = create_json(&sim, &b, Some("same-key")).await;
    let (s2, i2) = create_json(&sim, &b, Some("same-key")).await;
    assert_eq!((s1, s2), (201, 201));
    assert_ne!(i1["id"], i2["id"]);
    assert_eq!(sim.invitations_for_reference(reference), 2);

    let encoded: String = url_encode(reference);
    let (s, v) = get(&sim, &format!("/v1/invitations?reference={encoded}")).await;
    assert_eq!(s, 200);
    let ids: Vec<&Value> = v["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["id"])
        .collect();
    assert_eq!(ids, [&i1["id"], &i2["id"]], "oldest first");

    let (_, v) = get(&sim, "/v1/invitations?reference=lever%3Aother").await;
    assert_eq!(v, json!({"invitations": []}));
    let (_, v) = get(&sim, "/v1/invitations?email=ADA%40example.com").await;
    assert_eq!(v["invitations"].as_array().unwrap().len(), 2);
    let (_, v) = get(
        &sim,
        &format!("/v1/invitations?reference={encoded}&email=x%40y.z"),
    )
    .await;
    assert_eq!(
        v["invitations"].as_array().unwrap().len(),
        0,
        "both filters apply"
    );
    let (s, v) = get(&sim, "/v1/invitations").await;
    assert_eq!(
        (s, error_code(&v)),
        (422, ("validation_failed", Some("reference")))
    );
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn scripted_progression_with_a_changed_verdict() {
    let sim = CanditechSim::start(manual()).await.unwrap();
    let rx = Receiver::start().await;
    let (_, inv) = create_json(&sim, &body(&sim, "lever:tok-1", Some(&rx.url)), None).await;
    let id = inv["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.hits().is_empty(), "manual mode sends nothing on its own");

    assert!(sim.start_test(&id).await.is_err(), "not sent yet");
    assert!(sim.give_verdict(&id, Verdict::ThumbsUp).await.is_err());
    assert_eq!(sim.send(&id).await.unwrap(), 200);
    assert!(sim.send(&id).await.is_err(), "sent once");
    assert!(sim.complete(&id, 50.0).await.is_err(), "not started");
    assert_eq!(sim.start_test(&id).await.unwrap(), 200);
    assert!(sim.complete(&id, 101.0).await.is_err(), "above max_score");
    assert_eq!(sim.complete(&id, 42.5).await.unwrap(), 200);
    assert!(sim.advance(&id).await.is_err(), "completed");
    assert_eq!(sim.give_verdict(&id, Verdict::ThumbsUp).await.unwrap(), 200);
    assert!(
        sim.give_verdict(&id, Verdict::ThumbsUp).await.is_err(),
        "the same verdict again is no change"
    );
    assert_eq!(
        sim.give_verdict_by(&id, Verdict::ThumbsDown, "Sam Second")
            .await
            .unwrap(),
        200
    );
    assert!(sim.send("inv_nope").await.is_err());

    let hits = rx.hits();
    let types: Vec<String> = hits
        .iter()
        .map(|h| h.json()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types,
        [
            "invitation.sent",
            "test.started",
            "test.completed",
            "verdict.given",
            "verdict.changed"
        ]
    );
    for h in &hits {
        let v = h.json();
        assert_eq!(
            h.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(h.header("canditech-event-id").as_deref(), v["id"].as_str());
        assert_eq!(
            h.header("canditech-event-type").as_deref(),
            v["type"].as_str()
        );
        assert!(v["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(v["data"]["invitation"]["id"], json!(id));
        assert_eq!(v["data"]["invitation"]["reference"], "lever:tok-1");
        let sig = h.header("canditech-signature").unwrap();
        assert!(
            verify(&sim.webhook_secret(), &sig, &h.body),
            "bad signature {sig}"
        );
        assert!(!verify("whsec_other", &sig, &h.body));
        assert!(!verify(
            &sim.webhook_secret(),
            &sig,
            &format!("{} ", h.body)
        ));
    }
    let ids: std::collections::HashSet<String> = hits
        .iter()
        .map(|h| h.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 5, "one event id per event");

    let sent = hits[0].json();
    assert_eq!(sent["data"]["invitation"]["status"], "invited");
    assert!(sent["data"]["invitation"]["sent_at"].is_string());
    assert_eq!(hits[1].json()["data"]["invitation"]["status"], "started");
    let done = &hits[2].json()["data"]["invitation"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["score"], 42.5);
    assert_eq!(done["max_score"], 100);
    let results_url = done["results_url"].as_str().unwrap().to_string();
    assert_eq!(results_url, format!("{}/results/{id}", sim.api_base()));
    assert_eq!(done["verdict"], Value::Null);

    let given = hits[3].json();
    let v1 = &given["data"]["invitation"]["verdict"];
    assert_eq!(v1["decision"], "thumbs_up");
    assert_eq!(v1["reviewer"], "Riley Reviewer");
    assert_eq!(v1["revision"], 1);
    assert!(given["data"].get("previous_verdict").is_none());
    let changed = hits[4].json();
    let v2 = &changed["data"]["invitation"]["verdict"];
    assert_eq!(v2["decision"], "thumbs_down");
    assert_eq!(v2["reviewer"], "Sam Second");
    assert_eq!(v2["revision"], 2);
    assert_eq!(&changed["data"]["previous_verdict"], v1);

    let page = client().get(&results_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("42.5/100") && page.contains("thumbs_down by Sam Second"));
    let inv = sim.invitation(&id).unwrap();
    assert_eq!(inv.verdict.unwrap().decision, "thumbs_down");
    let (_, api) = get(&sim, &format!("/v1/invitations/{id}")).await;
    assert_eq!(api["verdict"]["revision"], 2);

    // A changed verdict can change back, as a new revision.
    sim.give_verdict(&id, Verdict::ThumbsUp).await.unwrap();
    let last = rx.wait_for(6).await[5].json();
    assert_eq!(last["type"], "verdict.changed");
    assert_eq!(last["data"]["invitation"]["verdict"]["revision"], 3);

    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 6);
    assert!(deliveries
        .iter()
        .all(|d| d.attempts == [200] && d.url.as_deref() == Some(rx.url.as_str())));
}

#[tokio::test]
async fn advance_uses_the_account_webhook_url_when_the_invitation_has_none() {
    let sim = CanditechSim::start(CanditechOptions {
        score: 999.0,
        ..manual()
    })
    .await
    .unwrap();
    let (_, inv) = create_json(&sim, &body(&sim, "r1", None), None).await;
    let id = inv["id"].as_str().unwrap().to_string();
    // No URL anywhere: the event is recorded, nothing is sent.
    assert_eq!(sim.advance(&id).await.unwrap(), 0);
    assert_eq!(sim.deliveries()[0].url, None);
    assert!(sim.deliveries()[0].attempts.is_empty());

    let rx = Receiver::start().await;
    sim.set_webhook_url(&rx.url);
    assert_eq!(sim.advance(&id).await.unwrap(), 200);
    assert_eq!(sim.advance(&id).await.unwrap(), 200);
    let hits = rx.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].json()["type"], "test.completed");
    assert_eq!(
        hits[1].json()["data"]["invitation"]["score"],
        100.0,
        "the configured score is capped at max_score"
    );
}

#[tokio::test]
async fn webhooks_are_retried_on_any_non_2xx_with_fresh_signatures() {
    let sim = CanditechSim::start(manual()).await.unwrap();
    let rx = Receiver::start().await;
    let (_, inv) = create_json(&sim, &body(&sim, "r1", Some(&rx.url)), None).await;
    let id = inv["id"].as_str().unwrap().to_string();

    rx.respond_with(&[401, 500]);
    assert_eq!(sim.send(&id).await.unwrap(), 401);
    assert!(eventually(|| sim.deliveries()[0].attempts == [401, 500, 200]).await);
    let hits = rx.hits();
    assert!(hits.iter().all(|h| h.body == hits[0].body), "same body");
    assert!(hits.iter().all(|h| verify(
        &sim.webhook_secret(),
        &h.header("canditech-signature").unwrap(),
        &h.body
    )));

    // At most 4 attempts.
    rx.respond_with(&[502; 5]); // 4 attempts, then the resend below
    sim.start_test(&id).await.unwrap();
    assert!(eventually(|| sim.deliveries()[1].attempts.len() == 4).await);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(sim.deliveries()[1].attempts, [502; 4]);

    // Resend: same body and event id, a new delivery entry, no retries.
    let before = rx.hits().len();
    assert_eq!(sim.resend_last_callback(&id).await.unwrap(), 502);
    assert_eq!(rx.hits().len(), before + 1);
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 3);
    assert_eq!(deliveries[2].event_id, deliveries[1].event_id);
    assert_eq!(deliveries[2].body, deliveries[1].body);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.deliveries()[2].attempts, [502]);
    assert_eq!(sim.resend_last_callback(&id).await.unwrap(), 200);
    assert!(sim.resend_last_callback("inv_nope").await.is_err());

    // A non-loopback callback URL is never contacted.
    let (_, far) = create_json(
        &sim,
        &body(&sim, "r2", Some("http://example.com/hook")),
        None,
    )
    .await;
    let hits_before = rx.hits().len();
    assert_eq!(sim.send(far["id"].as_str().unwrap()).await.unwrap(), 0);
    assert_eq!(sim.deliveries().last().unwrap().attempts.first(), Some(&0));
    assert_eq!(rx.hits().len(), hits_before);
}

#[tokio::test]
async fn secret_rotation_signs_with_both_secrets() {
    let sim = CanditechSim::start(manual()).await.unwrap();
    let rx = Receiver::start().await;
    let (_, inv) = create_json(&sim, &body(&sim, "r1", Some(&rx.url)), None).await;
    let id = inv["id"].as_str().unwrap().to_string();
    let old = sim.webhook_secret();
    let new = sim.rotate_webhook_secret();
    assert_ne!(old, new);
    assert_eq!(sim.webhook_secret(), new);
    sim.send(&id).await.unwrap();
    sim.finish_rotation();
    sim.start_test(&id).await.unwrap();
    let hits = rx.hits();
    let during = hits[0].header("canditech-signature").unwrap();
    assert_eq!(during.matches("v1=").count(), 2);
    assert!(verify(&old, &during, &hits[0].body) && verify(&new, &during, &hits[0].body));
    let after = hits[1].header("canditech-signature").unwrap();
    assert_eq!(after.matches("v1=").count(), 1);
    assert!(verify(&new, &after, &hits[1].body) && !verify(&old, &after, &hits[1].body));
}

#[tokio::test]
async fn automatic_progression_runs_to_a_verdict() {
    let sim = CanditechSim::start(CanditechOptions {
        step_delay: Some(Duration::from_millis(30)),
        ..CanditechOptions::default()
    })
    .await
    .unwrap();
    let rx = Receiver::start().await;
    sim.set_webhook_url(&rx.url);
    let (s, inv) = create_json(&sim, &body(&sim, "r1", None), None).await;
    assert_eq!(s, 201);
    let hits = rx.wait_for(4).await;
    let mut types: Vec<String> = hits
        .iter()
        .map(|h| h.json()["type"].as_str().unwrap().to_string())
        .collect();
    // Deliveries are not awaited by the schedule, so compare as a set of what happened.
    types.sort();
    assert_eq!(
        types,
        [
            "invitation.sent",
            "test.completed",
            "test.started",
            "verdict.given"
        ]
    );
    let id = inv["id"].as_str().unwrap();
    assert!(
        eventually(|| sim
            .invitation(id)
            .and_then(|i| i.verdict)
            .is_some_and(|v| v.decision == "thumbs_up"))
        .await
    );
    assert_eq!(sim.invitation(id).unwrap().score, Some(87.0));
}

#[tokio::test]
async fn failure_injection_and_rate_limits() {
    let sim = CanditechSim::start(manual()).await.unwrap();
    let b = body(&sim, "r1", None);
    sim.fail_next(2);
    assert_eq!(create(&sim, &b, None).await.status(), 503);
    let resp = create(&sim, &b, None).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        error_code(&resp.json::<Value>().await.unwrap()),
        ("unavailable", None)
    );
    assert_eq!(create(&sim, &b, None).await.status(), 201);

    sim.set_down(true);
    assert_eq!(create(&sim, &b, None).await.status(), 503);
    assert_eq!(get(&sim, "/v1/assessments").await.0, 503);
    sim.set_down(false);

    sim.throttle_next(1, 7);
    let resp = create(&sim, &b, None).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(
        error_code(&resp.json::<Value>().await.unwrap()),
        ("rate_limited", None)
    );
    assert_eq!(sim.invitations().len(), 1);
    assert_eq!(sim.invite_requests(), 5);

    let short = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    sim.hang_next(1);
    let err = short
        .get(format!("{}/v1/assessments", sim.api_base()))
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    sim.set_latency(Duration::from_secs(5));
    let err = short
        .get(format!("{}/v1/assessments", sim.api_base()))
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "latency delays the answer");
    sim.set_latency(Duration::ZERO);

    // A separate account with a rate limit of 3 requests a minute.
    let sim = CanditechSim::start(CanditechOptions {
        rate_limit_per_minute: Some(3),
        ..manual()
    })
    .await
    .unwrap();
    for _ in 0..3 {
        assert_eq!(get(&sim, "/v1/assessments").await.0, 200);
    }
    let resp = client()
        .get(format!("{}/v1/assessments", sim.api_base()))
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let b = body(&sim, "r2", None);
    assert_eq!(create(&sim, &b, None).await.status(), 429);
    assert!(sim.invitations().is_empty());
}
