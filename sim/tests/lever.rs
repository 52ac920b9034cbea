//! Lever simulator: API, auth, failure injection and webhooks.

use crate::common;

use std::time::Duration;

use common::{client, eventually, no_redirect_client, Receiver};
use serde_json::{json, Value};
use switchyard_sim::lever::{sign, LeverSim, NewOpportunity, TokenRequests};

async fn get(sim: &LeverSim, path: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("{}{path}", sim.api_base()))
        .basic_auth(sim.api_key(), None::<&str>)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn send(sim: &LeverSim, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .request(method, format!("{}{path}", sim.api_base()))
        .basic_auth(sim.api_key(), None::<&str>)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn candidate(sim: &LeverSim, posting: Option<String>) -> String {
    sim.add_opportunity(NewOpportunity {
        name: "Ada Lovelace".into(),
        emails: vec!["ada@example.com".into()],
        phones: vec!["+1 555 0100".into()],
        tags: vec!["Premium".into()],
        posting_id: posting,
    })
}

#[tokio::test]
async fn api_requires_basic_auth_with_the_key() {
    let sim = LeverSim::start().await.unwrap();
    let url = format!("{}/stages", sim.api_base());
    let none = client().get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["code"], "Unauthorized");
    let wrong = client()
        .get(&url)
        .basic_auth("nope", None::<&str>)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let with_password = client()
        .get(&url)
        .basic_auth(sim.api_key(), Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_password.status(), 401);
    let bearer = client()
        .get(&url)
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 401);
    let (status, body) = get(&sim, "/stages").await;
    assert_eq!(status, 200);
    let texts: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, switchyard_sim::lever::DEFAULT_STAGES);
    assert_eq!(body["hasNext"], false);
    assert!(sim.api_base().starts_with("http://127.0.0.1:"));
    assert_eq!(sim.request_log().len(), 5);
}

#[tokio::test]
async fn stages_paginate() {
    let sim = LeverSim::start().await.unwrap();
    let id = sim.add_stage("Hired");
    assert_eq!(sim.stage_id("Hired"), Some(id.clone()));
    assert_eq!(sim.stage_id("Nope"), None);
    let mut seen = Vec::new();
    let mut path = "/stages?limit=3".to_string();
    for _ in 0..10 {
        let (status, body) = get(&sim, &path).await;
        assert_eq!(status, 200);
        for s in body["data"].as_array().unwrap() {
            seen.push(s["id"].as_str().unwrap().to_string());
        }
        if body["hasNext"] == false {
            break;
        }
        path = format!("/stages?limit=3&offset={}", body["next"].as_str().unwrap());
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.last(), Some(&id));
    assert_eq!(get(&sim, "/stages?limit=0").await.0, 400);
    assert_eq!(get(&sim, "/stages?limit=101").await.0, 400);
}

#[tokio::test]
async fn postings_list_oldest_first_in_pages_and_refuse_bad_parameters_and_missing_permission() {
    let sim = LeverSim::start().await.unwrap();
    let names = ["Engineer", "Designer", "Recruiter"];
    for name in names {
        sim.add_posting(name, &[]);
    }
    let (status, first) = get(&sim, "/postings?limit=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["hasNext"], true);
    let next = first["next"].as_str().unwrap().to_string();
    let (_, rest) = get(
        &sim,
        &format!("/postings?limit=2&offset={next}&state=published"),
    )
    .await;
    assert_eq!(rest["hasNext"], false);
    let texts: Vec<&str> = (first["data"].as_array().unwrap().iter())
        .chain(rest["data"].as_array().unwrap())
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, names);
    let (_, closed) = get(&sim, "/postings?state=closed").await;
    assert_eq!(
        closed["data"],
        json!([]),
        "every simulated posting is published"
    );
    for bad in [
        "/postings?limit=0",
        "/postings?limit=101",
        "/postings?offset=x",
        "/postings?state=open",
    ] {
        assert_eq!(get(&sim, bad).await.0, 400, "{bad}");
    }
    // A key without Postings read is refused with Lever's message.
    let key = sim.generate_api_key(&["stages:read:admin"]);
    let resp = client()
        .get(format!("{}/postings", sim.api_base()))
        .basic_auth(key, None::<&str>)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["message"],
        "Missing required permission: postings:read:admin"
    );
}

#[tokio::test]
async fn posting_tags_are_inherited_and_applications_expand() {
    let sim = LeverSim::start().await.unwrap();
    let posting = sim.add_posting("Engineer", &["Standard", "CERTN"]);
    let opp = candidate(&sim, Some(posting.clone()));
    let snap = sim.opportunity(&opp).unwrap();
    assert_eq!(snap.tags, vec!["Premium", "Standard", "CERTN"]);
    assert_eq!(snap.stage, sim.stage_id("New applicant").unwrap());

    let (status, body) = get(&sim, &format!("/opportunities/{opp}")).await;
    assert_eq!(status, 200);
    let d = &body["data"];
    assert_eq!(d["id"], opp.as_str());
    assert_eq!(d["emails"], json!(["ada@example.com"]));
    assert_eq!(
        d["phones"],
        json!([{"type": "mobile", "value": "+1 555 0100"}])
    );
    assert_eq!(d["archivedAt"], Value::Null);
    assert!(d["applications"][0].is_string());

    let (_, body) = get(
        &sim,
        &format!("/opportunities/{opp}?expand=applications&perform_as=u1"),
    )
    .await;
    assert_eq!(body["data"]["applications"][0]["posting"], posting.as_str());
    assert_eq!(body["data"]["applications"][0]["type"], "posting");

    let (status, body) = get(&sim, &format!("/postings/{posting}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["tags"], json!(["Standard", "CERTN"]));
    assert_eq!(body["data"]["state"], "published");

    let (status, body) = get(&sim, "/opportunities/does-not-exist").await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "ResourceNotFound");
    assert_eq!(get(&sim, "/postings/nope").await.0, 404);
}

#[tokio::test]
async fn write_backs_update_the_opportunity() {
    let sim = LeverSim::start().await.unwrap();
    let opp = candidate(&sim, None);
    let post = reqwest::Method::POST;
    let (s, body) = send(
        &sim,
        post.clone(),
        &format!("/opportunities/{opp}/addTags?perform_as=u1"),
        json!({"tags": ["CERTN - Pending", "Premium"]}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["tags"], json!(["Premium", "CERTN - Pending"]));
    let (s, _) = send(
        &sim,
        post.clone(),
        &format!("/opportunities/{opp}/removeTags"),
        json!({"tags": ["CERTN - Pending"]}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = send(
        &sim,
        post.clone(),
        &format!("/opportunities/{opp}/addLinks"),
        json!({"links": ["http://r/1.pdf"]}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["links"], json!(["http://r/1.pdf"]));
    send(
        &sim,
        post.clone(),
        &format!("/opportunities/{opp}/addLinks"),
        json!({"links": ["http://r/2.pdf"]}),
    )
    .await;
    send(
        &sim,
        post.clone(),
        &format!("/opportunities/{opp}/removeLinks"),
        json!({"links": ["http://r/1.pdf"]}),
    )
    .await;
    let (s, body) = send(
        &sim,
        post.clone(),
        &format!("/opportunities/{opp}/notes"),
        json!({"value": "Report: http://r/2.pdf", "secret": true, "notifyFollowers": false}),
    )
    .await;
    assert_eq!(s, 201);
    let note_id = body["data"]["noteId"].as_str().unwrap().to_string();
    assert_eq!(
        send(
            &sim,
            post.clone(),
            &format!("/opportunities/{opp}/notes"),
            json!({"value": "x", "score": 9})
        )
        .await
        .0,
        400
    );

    let snap = sim.opportunity(&opp).unwrap();
    assert_eq!(snap.tags, vec!["Premium"]);
    assert_eq!(snap.links, vec!["http://r/2.pdf"]);
    assert_eq!(snap.notes.len(), 1);
    assert_eq!(snap.notes[0].id, note_id);
    assert!(snap.notes[0].secret);

    let (s, body) = get(&sim, &format!("/opportunities/{opp}/notes")).await;
    assert_eq!(s, 200);
    assert_eq!(body["data"][0]["value"], "Report: http://r/2.pdf");
    assert_eq!(body["hasNext"], false);

    // Malformed JSON and missing fields are 400s; unknown opportunities 404.
    let resp = client()
        .post(format!("{}/opportunities/{opp}/addTags", sim.api_base()))
        .basic_auth(sim.api_key(), None::<&str>)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        send(
            &sim,
            post.clone(),
            &format!("/opportunities/{opp}/addTags"),
            json!({"tag": []})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        send(
            &sim,
            post.clone(),
            "/opportunities/nope/addTags",
            json!({"tags": []})
        )
        .await
        .0,
        404
    );

    let log = sim.request_log();
    let add_links = log
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/addLinks"))
        .count();
    assert_eq!(add_links, 2);
    let notes = log
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/notes"))
        .count();
    assert_eq!(notes, 2);
    assert_eq!(log[0].body, json!({"tags": ["CERTN - Pending", "Premium"]}));
    assert_eq!(log[0].status, 200);

    sim.set_emails(&opp, &[]).unwrap();
    assert!(sim.opportunity(&opp).unwrap().emails.is_empty());
    assert!(sim.set_emails("nope", &[]).is_err());
}

#[tokio::test]
async fn fail_next_and_rate_limit() {
    let sim = LeverSim::start().await.unwrap();
    sim.fail_next(2, 503);
    assert_eq!(get(&sim, "/stages").await.0, 503);
    let (s, body) = get(&sim, "/stages").await;
    assert_eq!(
        (s, body["code"].as_str()),
        (503, Some("ServiceUnavailable"))
    );
    assert_eq!(get(&sim, "/stages").await.0, 200);

    sim.set_rate_limit(Some((1.0, 2)));
    assert_eq!(get(&sim, "/stages").await.0, 200);
    assert_eq!(get(&sim, "/stages").await.0, 200);
    let resp = client()
        .get(format!("{}/stages", sim.api_base()))
        .basic_auth(sim.api_key(), None::<&str>)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    sim.set_rate_limit(None);
    assert_eq!(get(&sim, "/stages").await.0, 200);
    let statuses: Vec<u16> = sim.request_log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 200, 200, 200, 429, 200]);
}

#[tokio::test]
async fn stage_change_webhook_is_signed() {
    let sim = LeverSim::start().await.unwrap();
    let rx = Receiver::start().await;
    let signing = sim.register_webhook("candidateStageChange", &rx.url);
    assert!(signing.len() >= 32);
    let opp = candidate(&sim, None);
    let from = sim.opportunity(&opp).unwrap().stage;
    let bg = sim.stage_id("Background Check").unwrap();
    assert_eq!(sim.move_to_stage(&opp, &bg).await.unwrap(), 200);
    assert_eq!(sim.opportunity(&opp).unwrap().stage, bg);

    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].header("user-agent").as_deref(),
        Some("Lever-Webhooks")
    );
    assert_eq!(
        hits[0].header("content-type").as_deref(),
        Some("application/json")
    );
    let body = hits[0].json();
    assert_eq!(body["event"], "candidateStageChange");
    let token = body["token"].as_str().unwrap();
    assert_eq!(token.len(), 48);
    let at = body["triggeredAt"].as_u64().unwrap();
    assert_eq!(body["signature"], sign(&signing, token, at).as_str());
    assert_ne!(body["signature"], sign("other", token, at).as_str());
    assert!(body["id"].is_string());
    let d = &body["data"];
    assert_eq!(d["opportunityId"], opp.as_str());
    assert_eq!(d["candidateId"], opp.as_str());
    assert_eq!(d["toStageId"], bg.as_str());
    assert_eq!(d["fromStageId"], from.as_str());
    assert!(d["contactId"].is_string());

    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].attempts, vec![200]);
    assert_eq!(deliveries[0].body, hits[0].body);

    // Rerun resends the same body.
    assert_eq!(sim.rerun_delivery(0).await.unwrap(), 200);
    assert_eq!(rx.hits()[1].body, hits[0].body);

    // Moving through the API fires the webhook too.
    let offer = sim.stage_id("Offer").unwrap();
    let (s, body) = send(
        &sim,
        reqwest::Method::PUT,
        &format!("/opportunities/{opp}/stage"),
        json!({"stage": offer}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["data"]["stage"], offer.as_str());
    let hits = rx.wait_for(3).await;
    assert_eq!(hits[2].json()["data"]["toStageId"], offer.as_str());
    assert_eq!(
        send(
            &sim,
            reqwest::Method::PUT,
            &format!("/opportunities/{opp}/stage"),
            json!({"stage": "nope"})
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn failed_webhooks_are_retried_with_the_same_body() {
    let sim = LeverSim::start().await.unwrap();
    sim.set_webhook_retry_base(Duration::from_millis(10));
    let rx = Receiver::start().await;
    sim.register_webhook("candidateStageChange", &rx.url);
    let opp = candidate(&sim, None);
    let bg = sim.stage_id("Background Check").unwrap();
    rx.respond_with(&[500, 302]);
    assert_eq!(sim.move_to_stage(&opp, &bg).await.unwrap(), 500);
    let hits = rx.wait_for(3).await;
    assert_eq!(hits.len(), 3);
    assert!(hits.iter().all(|h| h.body == hits[0].body));
    assert!(eventually(|| sim.deliveries()[0].attempts == vec![500, 302, 200]).await);

    // Always failing: 1 + 5 attempts, then it stops.
    rx.respond_with(&[500; 10]);
    sim.move_to_stage(&opp, &bg).await.unwrap();
    assert!(eventually(|| sim.deliveries()[1].attempts.len() == 6).await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sim.deliveries()[1].attempts, vec![500; 6]);

    // Connection errors are recorded as 0.
    let dead = sim.register_webhook("candidateStageChange", "http://127.0.0.1:9/hook");
    assert!(!dead.is_empty());
    sim.move_to_stage(&opp, &bg).await.unwrap();
    assert!(
        eventually(|| sim
            .deliveries()
            .iter()
            .any(|d| d.url.contains(":9/") && d.attempts.first() == Some(&0)))
        .await
    );
}

#[tokio::test]
async fn test_ping_is_signed_and_empty() {
    let sim = LeverSim::start().await.unwrap();
    let rx = Receiver::start().await;
    let signing = sim.register_webhook("candidateStageChange", &rx.url);
    assert_eq!(sim.send_test_ping(&rx.url, &signing).await.unwrap(), 200);
    let body = rx.hits()[0].json();
    assert_eq!(body["event"], "candidateHired");
    assert_eq!(body["data"], json!({}));
    let at = body["triggeredAt"].as_u64().unwrap();
    assert_eq!(
        body["signature"],
        sign(&signing, body["token"].as_str().unwrap(), at).as_str()
    );
    rx.respond_with(&[404]);
    assert_eq!(sim.send_test_ping(&rx.url, &signing).await.unwrap(), 404);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rx.hits().len(), 2, "pings are not retried");
}

// ---- OAuth (authorization-code flow) ----

const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";
const SCOPES: &str = "opportunities:write:admin stages:read:admin offline_access";

/// What `/oauth/authorize` answered: the status and the query of its `Location`, if any.
struct Authorized {
    status: u16,
    location: Option<reqwest::Url>,
}

impl Authorized {
    fn param(&self, key: &str) -> Option<String> {
        self.location.as_ref().and_then(|url| {
            url.query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        })
    }
}

async fn authorize(sim: &LeverSim, client_id: &str, redirect_uri: &str, scope: &str) -> Authorized {
    let resp = no_redirect_client()
        .get(sim.oauth_authorize_url())
        .query(&[
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("state", "st-42"),
            ("scope", scope),
            ("audience", "https://api.lever.co/v1/"),
        ])
        .send()
        .await
        .unwrap();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(|v| reqwest::Url::parse(v).unwrap());
    Authorized {
        status: resp.status().as_u16(),
        location,
    }
}

/// A token request, form-encoded with the client credentials as HTTP Basic (what oauth2 crates
/// send by default).
async fn token(sim: &LeverSim, creds: (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
    let resp = client()
        .post(sim.oauth_token_url())
        .basic_auth(creds.0, Some(creds.1))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn exchange(sim: &LeverSim, client: (&str, &str), code: &str) -> (u16, Value) {
    token(
        sim,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await
}

async fn refresh(sim: &LeverSim, client: (&str, &str), refresh_token: &str) -> (u16, Value) {
    token(
        sim,
        client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// `GET /v1/stages` with a Bearer token; returns the status and Lever's error code, if any.
async fn api_with_bearer(sim: &LeverSim, access_token: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("{}/stages", sim.api_base()))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["code"].clone())
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

/// Registers a client and runs authorize + code exchange; returns the client and the tokens.
async fn connect(sim: &LeverSim, scope: &str) -> ((String, String), Value) {
    let (id, secret) = sim.register_oauth_client(REDIRECT);
    let auth = authorize(sim, &id, REDIRECT, scope).await;
    assert_eq!(auth.status, 302);
    let code = auth.param("code").expect("a code in the redirect");
    let (status, tokens) = exchange(sim, (&id, &secret), &code).await;
    assert_eq!(status, 200, "{tokens}");
    ((id, secret), tokens)
}

#[tokio::test]
async fn oauth_code_flow_then_bearer_api_calls_and_refresh_rotation() {
    let sim = LeverSim::start().await.unwrap();
    assert!(sim.oauth_token_url().starts_with("http://127.0.0.1:"));
    let (id, secret) = sim.register_oauth_client(REDIRECT);
    let client = (id.as_str(), secret.as_str());

    let auth = authorize(&sim, &id, REDIRECT, SCOPES).await;
    assert_eq!(auth.status, 302);
    let location = auth.location.clone().unwrap();
    assert_eq!(
        location.as_str().split('?').next(),
        Some(REDIRECT),
        "redirects to the registered URI"
    );
    assert_eq!(auth.param("state").as_deref(), Some("st-42"));
    let code = auth.param("code").unwrap();
    let recorded = sim.authorize_requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].scopes,
        vec![
            "opportunities:write:admin",
            "stages:read:admin",
            "offline_access"
        ]
    );
    assert_eq!(
        recorded[0].audience.as_deref(),
        Some("https://api.lever.co/v1/")
    );

    let (status, tokens) = exchange(&sim, client, &code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], SCOPES);
    let access = text(&tokens, "access_token");
    let refresh1 = text(&tokens, "refresh_token");
    assert!(!access.is_empty() && !refresh1.is_empty());
    assert_eq!(api_with_bearer(&sim, &access).await.0, 200);

    // The code is single-use.
    let (status, err) = exchange(&sim, client, &code).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Refresh rotates: new access and refresh tokens, the old refresh token is dead.
    let (status, rotated) = refresh(&sim, client, &refresh1).await;
    assert_eq!(status, 200, "{rotated}");
    let access2 = text(&rotated, "access_token");
    let refresh2 = text(&rotated, "refresh_token");
    assert!(!refresh2.is_empty());
    assert_ne!(refresh2, refresh1);
    assert_ne!(access2, access);
    assert_eq!(api_with_bearer(&sim, &access2).await.0, 200);
    let (status, err) = refresh(&sim, client, &refresh1).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(err["error_description"].is_string());

    // The newest refresh token works, also with the credentials in a JSON body.
    let resp = common::client()
        .post(sim.oauth_token_url())
        .json(&json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh2,
            "client_id": id,
            "client_secret": secret,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Wrong client secret: 401 invalid_client.
    let (status, err) = refresh(&sim, (&id, "wrong"), &refresh2).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_client"))
    );

    assert_eq!(
        sim.token_requests(),
        TokenRequests {
            authorization_code: 2,
            refresh_token: 4,
            other: 0,
            refused: 3,
        }
    );
    // The API key keeps working next to OAuth.
    assert_eq!(get(&sim, "/stages").await.0, 200);
}

#[tokio::test]
async fn oauth_codes_are_bound_to_client_redirect_and_time() {
    let sim = LeverSim::start().await.unwrap();
    let (a_id, a_secret) = sim.register_oauth_client(REDIRECT);
    let (b_id, b_secret) = sim.register_oauth_client(REDIRECT);

    // Another client cannot redeem A's code; nor can A with another redirect_uri.
    let code = authorize(&sim, &a_id, REDIRECT, SCOPES)
        .await
        .param("code")
        .unwrap();
    let (status, err) = exchange(&sim, (&b_id, &b_secret), &code).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, err) = token(
        &sim,
        (&a_id, &a_secret),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
        ],
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // An expired code is refused.
    sim.set_auth_code_ttl(Duration::ZERO);
    let stale = authorize(&sim, &a_id, REDIRECT, SCOPES)
        .await
        .param("code")
        .unwrap();
    let (status, err) = exchange(&sim, (&a_id, &a_secret), &stale).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Unknown grant type and a made-up code.
    let (status, err) = token(&sim, (&a_id, &a_secret), &[("grant_type", "password")]).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, err) = exchange(&sim, (&a_id, &a_secret), "made-up").await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Without offline_access there is no refresh token.
    sim.set_auth_code_ttl(Duration::from_secs(60));
    let (_, tokens) = connect(&sim, "stages:read:admin").await;
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    assert_eq!(tokens["scope"], "stages:read:admin");
}

#[tokio::test]
async fn oauth_authorize_refuses_unknown_clients_and_foreign_redirects_without_redirecting() {
    let sim = LeverSim::start().await.unwrap();
    let (id, _) = sim.register_oauth_client(REDIRECT);
    let unknown = authorize(&sim, "nope", REDIRECT, SCOPES).await;
    assert_eq!((unknown.status, unknown.location.is_none()), (400, true));
    let foreign = authorize(&sim, &id, "http://127.0.0.1:9/evil", SCOPES).await;
    assert_eq!((foreign.status, foreign.location.is_none()), (400, true));
    // Prefix tricks are no exact match either.
    let longer = authorize(&sim, &id, &format!("{REDIRECT}/x"), SCOPES).await;
    assert_eq!(longer.status, 400);
    assert!(sim.authorize_requests().is_empty());

    // response_type other than code: an error redirect.
    let resp = no_redirect_client()
        .get(sim.oauth_authorize_url())
        .query(&[
            ("client_id", id.as_str()),
            ("redirect_uri", REDIRECT),
            ("response_type", "token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.contains("error=unsupported_response_type"),
        "{location}"
    );
}

#[tokio::test]
async fn oauth_user_deny_redirects_with_access_denied() {
    let sim = LeverSim::start().await.unwrap();
    let (id, _) = sim.register_oauth_client(REDIRECT);
    sim.set_oauth_user_denies(true);
    let auth = authorize(&sim, &id, REDIRECT, SCOPES).await;
    assert_eq!(auth.status, 302);
    assert_eq!(auth.param("error").as_deref(), Some("access_denied"));
    assert_eq!(auth.param("state").as_deref(), Some("st-42"));
    assert_eq!(auth.param("code"), None);
    assert_eq!(sim.authorize_requests()[0].outcome, "access_denied");
    // The user changes their mind.
    sim.set_oauth_user_denies(false);
    assert!(authorize(&sim, &id, REDIRECT, SCOPES)
        .await
        .param("code")
        .is_some());
}

#[tokio::test]
async fn expired_access_tokens_get_401_until_refreshed() {
    let sim = LeverSim::start().await.unwrap();
    let ((id, secret), tokens) = connect(&sim, SCOPES).await;
    let access = text(&tokens, "access_token");
    assert_eq!(api_with_bearer(&sim, &access).await.0, 200);
    assert_eq!(sim.unauthorized_api_calls(), 0);

    sim.force_expire_access_tokens();
    assert_eq!(
        api_with_bearer(&sim, &access).await,
        (401, json!("Unauthorized"))
    );
    assert_eq!(sim.unauthorized_api_calls(), 1);
    let (status, fresh) = refresh(&sim, (&id, &secret), &text(&tokens, "refresh_token")).await;
    assert_eq!(status, 200);
    assert_eq!(
        api_with_bearer(&sim, &text(&fresh, "access_token")).await.0,
        200
    );

    // A zero lifetime: the token is dead on arrival, and says so.
    sim.set_access_token_ttl(Duration::ZERO);
    let (status, short) = refresh(&sim, (&id, &secret), &text(&fresh, "refresh_token")).await;
    assert_eq!(status, 200);
    assert_eq!(short["expires_in"], 0);
    assert_eq!(
        api_with_bearer(&sim, &text(&short, "access_token")).await.0,
        401
    );
    assert_eq!(api_with_bearer(&sim, "not-a-token").await.0, 401);
    assert_eq!(sim.unauthorized_api_calls(), 3);
}

#[tokio::test]
async fn revoking_the_app_kills_every_token_of_that_client() {
    let sim = LeverSim::start().await.unwrap();
    let ((id, secret), first) = connect(&sim, SCOPES).await;
    let (status, second) = refresh(&sim, (&id, &secret), &text(&first, "refresh_token")).await;
    assert_eq!(status, 200);
    // Another app of the same account is not affected.
    let ((other_id, other_secret), other) = connect(&sim, SCOPES).await;

    assert_eq!(sim.revoke_app(&id), 1);
    for t in [&first, &second] {
        assert_eq!(api_with_bearer(&sim, &text(t, "access_token")).await.0, 401);
    }
    let (status, err) = refresh(&sim, (&id, &secret), &text(&second, "refresh_token")).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        api_with_bearer(&sim, &text(&other, "access_token")).await.0,
        200
    );
    let (status, _) = refresh(
        &sim,
        (&other_id, &other_secret),
        &text(&other, "refresh_token"),
    )
    .await;
    assert_eq!(status, 200);
    // The API key and the fixed token are untouched; the app can be authorized again.
    assert_eq!(get(&sim, "/stages").await.0, 200);
    assert_eq!(api_with_bearer(&sim, &sim.oauth_token()).await.0, 200);
    let code = authorize(&sim, &id, REDIRECT, SCOPES)
        .await
        .param("code")
        .unwrap();
    let (status, again) = exchange(&sim, (&id, &secret), &code).await;
    assert_eq!(status, 200);
    assert_eq!(
        api_with_bearer(&sim, &text(&again, "access_token")).await.0,
        200
    );
}

#[tokio::test]
async fn revocation_endpoint_revokes_the_grant_of_a_token() {
    let sim = LeverSim::start().await.unwrap();
    let ((id, secret), tokens) = connect(&sim, SCOPES).await;
    let revoke = |token: String, secret: String| {
        let url = sim.oauth_revoke_url();
        let id = id.clone();
        async move {
            client()
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[
                    ("token", token.as_str()),
                    ("token_type_hint", "refresh_token"),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        revoke(text(&tokens, "refresh_token"), "wrong".into()).await,
        401
    );
    assert_eq!(
        api_with_bearer(&sim, &text(&tokens, "access_token"))
            .await
            .0,
        200
    );
    assert_eq!(revoke("unknown".into(), secret.clone()).await, 200);
    assert_eq!(
        revoke(text(&tokens, "refresh_token"), secret.clone()).await,
        200
    );
    assert_eq!(
        api_with_bearer(&sim, &text(&tokens, "access_token"))
            .await
            .0,
        401
    );
    let (status, err) = refresh(&sim, (&id, &secret), &text(&tokens, "refresh_token")).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

/// A request to `path` with API key `key`; returns the status and the body.
async fn call_with_key(
    sim: &LeverSim,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, format!("{}{path}", sim.api_base()))
        .basic_auth(key, None::<&str>);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_api_key_may_do_only_what_it_was_generated_for() {
    use reqwest::Method;
    use switchyard_sim::lever::permissions::{
        OPPORTUNITIES_READ, OPPORTUNITIES_WRITE, POSTINGS_READ, STAGES_READ,
    };
    let sim = LeverSim::start().await.unwrap();
    let posting = sim.add_posting("Engineer", &["remote"]);
    let opp = candidate(&sim, Some(posting.clone()));
    // Seed 001's key: read/write opportunities (tags, links), read stages.
    let key = sim.generate_api_key(&[OPPORTUNITIES_READ, OPPORTUNITIES_WRITE, STAGES_READ]);
    let ok = |r: (u16, Value)| r.0;
    assert_eq!(
        ok(call_with_key(&sim, &key, Method::GET, "/stages", None).await),
        200
    );
    let opp_path = format!("/opportunities/{opp}");
    assert_eq!(
        ok(call_with_key(&sim, &key, Method::GET, &opp_path, None).await),
        200
    );
    let tags = json!({"tags": ["X"]});
    let add_tags = format!("{opp_path}/addTags");
    assert_eq!(
        ok(call_with_key(&sim, &key, Method::POST, &add_tags, Some(tags)).await),
        200
    );

    // Outside the key's permissions: 403 in Lever's shape, naming the permission; nothing done.
    let (status, body) = call_with_key(
        &sim,
        &key,
        Method::GET,
        &format!("/postings/{posting}"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "Forbidden");
    assert!(
        body["message"].as_str().unwrap().contains(POSTINGS_READ),
        "{body}"
    );
    let note = json!({"value": "hello"});
    let notes = format!("{opp_path}/notes");
    let (status, body) = call_with_key(&sim, &key, Method::POST, &notes, Some(note.clone())).await;
    assert_eq!(status, 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("notes:write:admin"),
        "{body}"
    );
    assert_eq!(
        ok(call_with_key(&sim, &key, Method::GET, &notes, None).await),
        403
    );
    assert!(sim.opportunity(&opp).unwrap().notes.is_empty());
    assert_eq!(sim.forbidden_api_calls(), 3);
    // A write permission does not stand in for the read.
    let write_only = sim.generate_api_key(&[OPPORTUNITIES_WRITE]);
    assert_eq!(
        ok(call_with_key(&sim, &write_only, Method::GET, &opp_path, None).await),
        403
    );

    // The admin ticks the box: the same key now works.
    assert!(sim.grant_api_key_permission(&key, "notes:write:admin"));
    assert_eq!(
        ok(call_with_key(&sim, &key, Method::POST, &notes, Some(note)).await),
        201
    );
    assert_eq!(sim.opportunity(&opp).unwrap().notes.len(), 1);
    assert!(!sim.grant_api_key_permission("unknown-key", "notes:write:admin"));
}

#[tokio::test]
async fn an_oauth_token_may_do_only_what_its_grant_scopes_allow() {
    let sim = LeverSim::start().await.unwrap();
    let opp = candidate(&sim, None);
    let (_, tokens) = connect(&sim, "opportunities:read:admin offline_access").await;
    let access = text(&tokens, "access_token");
    let get = |path: String| {
        client()
            .get(format!("{}{path}", sim.api_base()))
            .bearer_auth(&access)
            .send()
    };
    assert_eq!(
        get(format!("/opportunities/{opp}")).await.unwrap().status(),
        200
    );
    let denied = get("/stages".into()).await.unwrap();
    assert_eq!(denied.status(), 403);
    let body: Value = denied.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("stages:read:admin"),
        "{body}"
    );
    // The fixed token carries every permission.
    assert_eq!(api_with_bearer(&sim, &sim.oauth_token()).await.0, 200);
}
