//! Certn simulator: invite API, idempotency, progression, signed callbacks, failure injection.

use crate::common;

use std::time::Duration;

use common::{client, eventually, Receiver};
use serde_json::{json, Value};
use switchyard_sim::certn::{sign, CertnOptions, CertnSim};

fn manual() -> CertnOptions {
    CertnOptions {
        step_delay: None,
        callback_retry_base: Duration::from_millis(10),
        ..CertnOptions::default()
    }
}

fn invite_body() -> Value {
    json!({
        "email": "ada@example.com",
        "phone_number": "+1 555 0100",
        "package": "Standard",
        "information": {"first_name": "Ada", "last_name": "Lovelace"},
        "request_criminal_record_check": true,
    })
}

async fn invite(sim: &CertnSim, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut req = client()
        .post(format!("{}/api/v1/hr/applications/invite/", sim.api_base()))
        .bearer_auth(sim.api_key())
        .json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Checks a callback's signature the way a receiver would.
fn verify(secret: &str, header: &str, body: &str) -> bool {
    let Some(t) = header
        .split(',')
        .find_map(|p| p.strip_prefix("t="))
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return false;
    };
    sign(secret, t, body) == header
}

#[tokio::test]
async fn invite_validates_and_requires_auth() {
    let sim = CertnSim::start(manual()).await.unwrap();
    assert!(sim.api_base().starts_with("http://127.0.0.1:"));
    let url = format!("{}/api/v1/hr/applications/invite/", sim.api_base());

    let resp = client()
        .post(&url)
        .json(&invite_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .post(&url)
        .bearer_auth("wrong")
        .json(&invite_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .post(url.trim_end_matches('/'))
        .bearer_auth(sim.api_key())
        .json(&invite_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "the trailing slash is required");

    let (s, body) = invite(&sim, &json!({"package": "Basic"}), None).await;
    assert_eq!(
        (s, body["email"][0].as_str()),
        (400, Some("This field is required."))
    );
    let (s, body) = invite(&sim, &json!({"email": "a@b.c", "package": "Gold"}), None).await;
    assert_eq!(s, 400);
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .starts_with("unknown package"));
    let (s, _) = invite(
        &sim,
        &json!({"email": "a@b.c", "package": "Basic", "request_x": "yes"}),
        None,
    )
    .await;
    assert_eq!(s, 400);
    let resp = client()
        .post(&url)
        .bearer_auth(sim.api_key())
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(sim.applications().is_empty());

    let (s, app) = invite(&sim, &invite_body(), None).await;
    assert_eq!(s, 201);
    assert_eq!(app["status"], "PENDING");
    assert_eq!(app["status_label"], "Pending");
    assert_eq!(app["report_status"], "NONE");
    assert_eq!(app["is_submitted"], false);
    assert_eq!(app["report_url"], Value::Null);
    assert_eq!(app["package"], "Standard");
    assert_eq!(app["request_criminal_record_check"], true);
    assert_eq!(app["applicant"]["email"], "ada@example.com");
    assert_eq!(app["applicant"]["first_name"], "Ada");
    assert_eq!(app["applicant"]["phone_number"], "+1 555 0100");
    assert_eq!(
        sim.invite_requests(),
        7,
        "two 401s, four 400s and the 201, not the 404"
    );

    let id = app["id"].as_str().unwrap();
    let resp = client()
        .get(format!("{}/api/v1/hr/applications/{id}/", sim.api_base()))
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), app);
    let resp = client()
        .get(format!("{}/api/v1/hr/packages/", sim.api_base()))
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap();
    let names: Vec<Value> = resp.json::<Value>().await.unwrap()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, vec!["Basic", "Standard", "Premium"]);
}

#[tokio::test]
async fn idempotency_key_returns_the_same_application() {
    let sim = CertnSim::start(manual()).await.unwrap();
    let (s1, a1) = invite(&sim, &invite_body(), Some("opp-1:stage-bg")).await;
    let (s2, a2) = invite(&sim, &invite_body(), Some("opp-1:stage-bg")).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(a1["id"], a2["id"]);
    assert_eq!(sim.applications().len(), 1);
    let (s3, a3) = invite(&sim, &invite_body(), Some("opp-2:stage-bg")).await;
    assert_eq!(s3, 201);
    assert_ne!(a3["id"], a1["id"]);
    assert_eq!(sim.applications().len(), 2);
    assert_eq!(sim.invite_requests(), 3);
}

#[tokio::test]
async fn manual_advance_delivers_signed_callbacks() {
    let sim = CertnSim::start(manual()).await.unwrap();
    let rx = Receiver::start().await;
    sim.set_webhook_url(&rx.url);
    let (_, app) = invite(&sim, &invite_body(), None).await;
    let id = app["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.hits().is_empty(), "manual mode sends nothing on its own");

    sim.advance(&id).await.unwrap();
    sim.advance(&id).await.unwrap();
    sim.advance(&id).await.unwrap();
    assert!(sim.advance(&id).await.is_err(), "already complete");
    assert!(sim.advance("nope").await.is_err());

    let hits = rx.hits();
    let statuses: Vec<String> = hits
        .iter()
        .map(|h| h.json()["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, vec!["ANALYZING", "PARTIAL", "COMPLETE"]);
    for h in &hits {
        assert_eq!(
            h.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(h.header("certn-team-id"), Some(sim.team_id()));
        let sig = h.header("certn-signature").unwrap();
        assert!(
            verify(&sim.webhook_secret(), &sig, &h.body),
            "bad signature {sig}"
        );
        assert!(!verify("other-secret", &sig, &h.body));
    }
    assert_eq!(hits[0].json()["is_submitted"], true);
    assert_eq!(hits[0].json()["report_url"], Value::Null);
    let partial = hits[1].json();
    assert_eq!(partial["report_status"], "PARTIAL");
    let report_url = partial["report_url"].as_str().unwrap().to_string();
    assert_eq!(report_url, format!("{}/reports/{id}.pdf", sim.api_base()));
    let complete = hits[2].json();
    assert_eq!(complete["report_status"], "COMPLETE");
    assert_eq!(complete["result"], "CLEAR");
    assert_eq!(complete["certn_score"], "CLEAR");

    let pdf = client().get(&report_url).send().await.unwrap();
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF"));

    let cbs = sim.callbacks();
    assert_eq!(cbs.len(), 3);
    assert!(cbs
        .iter()
        .all(|c| c.attempts == vec![200] && c.app_id == id));
    assert_eq!(cbs[2].status, "COMPLETE");

    // A duplicate of the latest status, freshly signed.
    assert_eq!(sim.resend_last_callback(&id).await.unwrap(), 200);
    let hits = rx.hits();
    assert_eq!(hits.len(), 4);
    assert_eq!(hits[3].body, hits[2].body);
    assert!(verify(
        &sim.webhook_secret(),
        &hits[3].header("certn-signature").unwrap(),
        &hits[3].body
    ));
    assert!(sim.resend_last_callback("nope").await.is_err());
}

#[tokio::test]
async fn automatic_progression_runs_to_complete() {
    let sim = CertnSim::start(CertnOptions {
        step_delay: Some(Duration::from_millis(30)),
        ..CertnOptions::default()
    })
    .await
    .unwrap();
    let rx = Receiver::start().await;
    sim.set_webhook_url(&rx.url);
    let (s, app) = invite(&sim, &invite_body(), None).await;
    assert_eq!(s, 201);
    let hits = rx.wait_for(4).await;
    let statuses: Vec<String> = hits
        .iter()
        .map(|h| h.json()["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        statuses,
        vec!["PENDING", "ANALYZING", "PARTIAL", "COMPLETE"]
    );
    let id = app["id"].as_str().unwrap();
    assert_eq!(sim.application(id).unwrap().status, "COMPLETE");
}

#[tokio::test]
async fn callbacks_are_retried_on_5xx_only() {
    let sim = CertnSim::start(manual()).await.unwrap();
    let rx = Receiver::start().await;
    sim.set_webhook_url(&rx.url);
    let (_, app) = invite(&sim, &invite_body(), None).await;
    let id = app["id"].as_str().unwrap().to_string();

    rx.respond_with(&[503, 500]);
    sim.advance(&id).await.unwrap();
    assert!(eventually(|| sim.callbacks()[0].attempts == vec![503, 500, 200]).await);
    let hits = rx.hits();
    assert!(hits.iter().all(|h| h.body == hits[0].body));
    let sigs: Vec<String> = hits
        .iter()
        .map(|h| h.header("certn-signature").unwrap())
        .collect();
    assert!(sigs
        .iter()
        .all(|s| verify(&sim.webhook_secret(), s, &hits[0].body)));

    // 400 is final; 4 failing attempts at most.
    rx.respond_with(&[400]);
    sim.advance(&id).await.unwrap();
    rx.respond_with(&[502; 5]);
    sim.advance(&id).await.unwrap();
    assert!(eventually(|| sim.callbacks().get(2).map(|c| c.attempts.len()) == Some(4)).await);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let cbs = sim.callbacks();
    assert_eq!(cbs[1].attempts, vec![400]);
    assert_eq!(cbs[2].attempts, vec![502; 4]);
}

#[tokio::test]
async fn failure_injection() {
    let sim = CertnSim::start(manual()).await.unwrap();
    sim.fail_next(2);
    assert_eq!(invite(&sim, &invite_body(), None).await.0, 503);
    assert_eq!(invite(&sim, &invite_body(), None).await.0, 503);
    assert_eq!(invite(&sim, &invite_body(), None).await.0, 201);

    sim.set_down(true);
    assert_eq!(invite(&sim, &invite_body(), None).await.0, 503);
    assert_eq!(invite(&sim, &invite_body(), None).await.0, 503);
    sim.set_down(false);
    assert_eq!(sim.applications().len(), 1);
    assert_eq!(sim.invite_requests(), 5);

    sim.hang_next(1);
    let short = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = short
        .post(format!("{}/api/v1/hr/applications/invite/", sim.api_base()))
        .bearer_auth(sim.api_key())
        .json(&invite_body())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(invite(&sim, &invite_body(), None).await.0, 201);
    assert_eq!(sim.applications().len(), 2);
}

/// `GET /api/v1/hr/applications/?reference=<reference>` with the team's key.
async fn lookup(sim: &CertnSim, reference: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("{}/api/v1/hr/applications/", sim.api_base()))
        .query(&[("reference", reference)])
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn with_reference(reference: &str) -> Value {
    let mut body = invite_body();
    body["reference"] = json!(reference);
    body
}

#[tokio::test]
async fn applications_can_be_found_by_reference() {
    let sim = CertnSim::start(manual()).await.unwrap();
    // Characters that need URL encoding survive the round trip.
    let reference = "switchyard:lever/opp 1&stage=bg?#";
    let (status, created) = invite(&sim, &with_reference(reference), None).await;
    assert_eq!(status, 201);
    assert_eq!(created["reference"], reference);
    invite(&sim, &with_reference("other"), None).await;
    let (_, plain) = invite(&sim, &invite_body(), None).await;
    assert_eq!(plain["reference"], Value::Null);

    let (status, page) = lookup(&sim, reference).await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], 1);
    let id = created["id"].as_str().unwrap();
    let by_id: Value = client()
        .get(format!("{}/api/v1/hr/applications/{id}/", sim.api_base()))
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["results"], json!([by_id]));

    let (status, none) = lookup(&sim, "nobody").await;
    assert_eq!(
        (status, none["count"].clone(), none["results"].clone()),
        (200, json!(0), json!([]))
    );
    let (status, _) = lookup(&sim, "switchyard:lever/opp 1").await;
    assert_eq!(status, 200, "a prefix is no match");
    assert_eq!(lookup(&sim, "switchyard:lever/opp 1").await.1["count"], 0);

    let unauthenticated = client()
        .get(format!(
            "{}/api/v1/hr/applications/?reference=other",
            sim.api_base()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let mut bad = invite_body();
    bad["reference"] = json!(42);
    let (status, err) = invite(&sim, &bad, None).await;
    assert_eq!(
        (status, err["reference"].clone()),
        (400, json!(["Not a valid string."]))
    );
    assert_eq!(sim.invitations_for_reference(reference), 1);
}

#[tokio::test]
async fn ignoring_idempotency_keys_creates_a_new_application_per_request() {
    let sim = CertnSim::start(CertnOptions {
        ignore_idempotency_keys: true,
        ..manual()
    })
    .await
    .unwrap();
    let body = with_reference("ref-1");
    let (s1, a1) = invite(&sim, &body, Some("key-1")).await;
    let (s2, a2) = invite(&sim, &body, Some("key-1")).await;
    assert_eq!((s1, s2), (201, 201));
    assert_ne!(a1["id"], a2["id"]);
    assert_eq!(sim.invitations_for_reference("ref-1"), 2);
    assert_eq!(sim.invitations_for_email("ADA@example.com"), 2);
    assert_eq!(
        sim.emails_invited_more_than_once(),
        vec![("ada@example.com".to_string(), 2)]
    );
    assert_eq!(lookup(&sim, "ref-1").await.1["count"], 2);

    // Switched back on, keys are honoured again.
    sim.set_ignore_idempotency_keys(false);
    let (s3, a3) = invite(&sim, &with_reference("ref-2"), Some("key-2")).await;
    let (s4, a4) = invite(&sim, &with_reference("ref-2"), Some("key-2")).await;
    assert_eq!((s3, s4), (201, 200));
    assert_eq!(a3["id"], a4["id"]);
    assert_eq!(sim.invitations_for_reference("ref-2"), 1);
}

#[tokio::test]
async fn idempotency_keys_are_honoured_by_default() {
    let sim = CertnSim::start(manual()).await.unwrap();
    let body = with_reference("ref-1");
    invite(&sim, &body, Some("key-1")).await;
    invite(&sim, &body, Some("key-1")).await;
    assert_eq!(sim.invitations_for_reference("ref-1"), 1);
    assert_eq!(sim.invitations_for_email("ada@example.com"), 1);
    assert!(sim.emails_invited_more_than_once().is_empty());
}

#[tokio::test]
async fn with_latency_the_application_exists_even_if_the_caller_gave_up() {
    let sim = CertnSim::start(manual()).await.unwrap();
    sim.set_latency(Duration::from_secs(3));
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = impatient
        .post(format!("{}/api/v1/hr/applications/invite/", sim.api_base()))
        .bearer_auth(sim.api_key())
        .json(&with_reference("crash-1"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert!(eventually(|| sim.invitations_for_reference("crash-1") == 1).await);
    sim.set_latency(Duration::ZERO);
    let (status, page) = lookup(&sim, "crash-1").await;
    assert_eq!((status, page["count"].clone()), (200, json!(1)));
}
