//! Tests of the Justifacts simulator: the order API (auth, validation, idempotency, failure
//! injection), signed callbacks to a tiny loopback receiver, progression, retries and resends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use switchyard_sim::http_util::{self, ServerHandle};
use switchyard_sim::justifacts::{
    sign, JustifactsOptions, JustifactsSim, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};

/// What the receiver saw: each callback body, with whether its signature verified.
#[derive(Default)]
struct Seen {
    events: Vec<(bool, Value)>,
    /// Answer this many requests with 503 before accepting.
    fail_first: u32,
}

struct Receiver {
    seen: Arc<Mutex<Seen>>,
    server: ServerHandle,
}

impl Receiver {
    async fn start(secret: String, fail_first: u32) -> anyhow::Result<Receiver> {
        let seen = Arc::new(Mutex::new(Seen {
            events: Vec::new(),
            fail_first,
        }));
        let state = (seen.clone(), secret);
        let router = Router::new()
            .route("/callbacks/justifacts", post(receive))
            .with_state(Arc::new(state));
        let server = http_util::serve_loopback(router).await?;
        Ok(Receiver { seen, server })
    }

    fn url(&self) -> String {
        format!("{}/callbacks/justifacts", self.server.base_url())
    }

    fn events(&self) -> Vec<(bool, Value)> {
        self.seen
            .lock()
            .map(|s| s.events.clone())
            .unwrap_or_default()
    }

    /// Waits (bounded) until at least `n` callbacks arrived.
    async fn wait_for(&self, n: usize) -> Vec<(bool, Value)> {
        for _ in 0..100 {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.events()
    }
}

type ReceiverState = Arc<(Arc<Mutex<Seen>>, String)>;

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (seen, secret) = &*state;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let verified = match (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER)) {
        (Some(ts), Some(sig)) => ts
            .parse::<u64>()
            .is_ok_and(|ts| sign(secret, ts, &body) == sig),
        _ => false,
    };
    let Ok(mut seen) = seen.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    if seen.fail_first > 0 {
        seen.fail_first -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.events.push((verified, value));
    StatusCode::OK
}

fn manual() -> JustifactsOptions {
    JustifactsOptions {
        step_delay: None,
        callback_retry_base: Duration::from_millis(20),
        ..JustifactsOptions::default()
    }
}

fn order_body(sim: &JustifactsSim, callback_url: &str) -> Value {
    json!({
        "client_code": sim.client_code(),
        "package_code": "13558",
        "reference": "opp-1",
        "callback_url": callback_url,
        "applicant": {"name": "Ada Lovelace", "email": "ada@example.com", "phone": null}
    })
}

async fn post_order(
    sim: &JustifactsSim,
    key: Option<&str>,
    api_key: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let client = http_util::http_client(Duration::from_secs(5))?;
    let mut req = client
        .post(format!("{}/v1/orders", sim.api_base()))
        .bearer_auth(api_key)
        .json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let value = resp.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, value))
}

fn order_id(v: &Value) -> String {
    v["order_id"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn orders_are_idempotent() -> anyhow::Result<()> {
    let sim = JustifactsSim::start(manual()).await?;
    let body = order_body(&sim, "http://127.0.0.1:9/cb");
    let (s1, o1) = post_order(&sim, Some("key-1"), &sim.api_key(), &body).await?;
    let (s2, o2) = post_order(&sim, Some("key-1"), &sim.api_key(), &body).await?;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(o1["status"], "Initiated");
    assert!(order_id(&o1).starts_with("JF-"));
    assert_eq!(order_id(&o1), order_id(&o2));
    assert_eq!(sim.orders(), 1);
    assert_eq!(sim.order_requests(), 2);

    let (s3, o3) = post_order(&sim, Some("key-2"), &sim.api_key(), &body).await?;
    assert_eq!(s3, 201);
    assert_ne!(order_id(&o3), order_id(&o1));
    // Without a key every request is a new order.
    post_order(&sim, None, &sim.api_key(), &body).await?;
    post_order(&sim, None, &sim.api_key(), &body).await?;
    assert_eq!(sim.orders(), 4);
    assert!(
        sim.callbacks().is_empty(),
        "manual mode sends nothing on its own"
    );
    Ok(())
}

#[tokio::test]
async fn auth_and_validation() -> anyhow::Result<()> {
    let sim = JustifactsSim::start(manual()).await?;
    let good = order_body(&sim, "http://127.0.0.1:9/cb");
    assert_eq!(post_order(&sim, None, "wrong", &good).await?.0, 401);
    let mut bad_client = good.clone();
    bad_client["client_code"] = json!("JW-NOPE");
    assert_eq!(
        post_order(&sim, None, &sim.api_key(), &bad_client).await?.0,
        401
    );
    let mut no_email = good.clone();
    no_email["applicant"]["email"] = json!(" ");
    let (status, err) = post_order(&sim, None, &sim.api_key(), &no_email).await?;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().is_some_and(|e| e.contains("email")));
    let mut bad_package = good.clone();
    bad_package["package_code"] = json!("13a58");
    assert_eq!(
        post_order(&sim, None, &sim.api_key(), &bad_package)
            .await?
            .0,
        400
    );
    let mut bad_callback = good.clone();
    bad_callback["callback_url"] = json!("not a url");
    assert_eq!(
        post_order(&sim, None, &sim.api_key(), &bad_callback)
            .await?
            .0,
        400
    );
    assert_eq!(
        post_order(&sim, None, &sim.api_key(), &json!("x")).await?.0,
        400
    );
    assert_eq!(sim.orders(), 0);
    assert_eq!(sim.order_requests(), 6);
    Ok(())
}

#[tokio::test]
async fn fail_next_answers_503_then_recovers() -> anyhow::Result<()> {
    let sim = JustifactsSim::start(manual()).await?;
    let body = order_body(&sim, "http://127.0.0.1:9/cb");
    sim.fail_next(2);
    assert_eq!(
        post_order(&sim, Some("k"), &sim.api_key(), &body).await?.0,
        503
    );
    assert_eq!(
        post_order(&sim, Some("k"), &sim.api_key(), &body).await?.0,
        503
    );
    assert_eq!(sim.orders(), 0);
    assert_eq!(
        post_order(&sim, Some("k"), &sim.api_key(), &body).await?.0,
        201
    );
    assert_eq!((sim.orders(), sim.order_requests()), (1, 3));
    Ok(())
}

#[tokio::test]
async fn manual_progression_sends_signed_callbacks() -> anyhow::Result<()> {
    let sim = JustifactsSim::start(manual()).await?;
    let rx = Receiver::start(sim.webhook_secret(), 0).await?;
    let (_, order) = post_order(
        &sim,
        Some("k"),
        &sim.api_key(),
        &order_body(&sim, &rx.url()),
    )
    .await?;
    let id = order_id(&order);

    assert_eq!(sim.advance(&id).await?, 200);
    assert_eq!(sim.advance(&id).await?, 200);
    assert!(
        sim.advance(&id).await.is_err(),
        "a complete order cannot advance"
    );

    let events = rx.wait_for(2).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|(verified, _)| *verified));
    assert_eq!(events[0].1["status"], "In Process");
    assert!(events[0].1["result"].is_null());
    assert!(events[0].1["result_url"].is_null());
    let done = &events[1].1;
    assert_eq!(done["status"], "Complete");
    assert_eq!(done["order_id"], id.as_str());
    assert_eq!(done["reference"], "opp-1");
    assert_eq!(done["result"], "Clear");
    let result_url = done["result_url"].as_str().unwrap_or_default().to_string();
    assert_eq!(result_url, format!("{}/results/{id}", sim.api_base()));

    let client = http_util::http_client(Duration::from_secs(5))?;
    let page = client.get(&result_url).send().await?;
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await?;
    assert!(html.contains("Clear") && html.contains("Ada Lovelace"));

    let api = client
        .get(format!("{}/v1/orders/{id}", sim.api_base()))
        .bearer_auth(sim.api_key())
        .send()
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(api["status"], "Complete");
    assert_eq!(
        sim.order(&id).map(|o| o.status).as_deref(),
        Some("Complete")
    );
    Ok(())
}

#[tokio::test]
async fn automatic_progression() -> anyhow::Result<()> {
    let sim = JustifactsSim::start(JustifactsOptions {
        step_delay: Some(Duration::from_millis(60)),
        result: None,
        ..JustifactsOptions::default()
    })
    .await?;
    let rx = Receiver::start(sim.webhook_secret(), 0).await?;
    post_order(
        &sim,
        Some("k"),
        &sim.api_key(),
        &order_body(&sim, &rx.url()),
    )
    .await?;
    let events = rx.wait_for(3).await;
    let statuses: Vec<_> = events.iter().map(|(_, e)| e["status"].clone()).collect();
    assert_eq!(statuses, vec!["Initiated", "In Process", "Complete"]);
    assert!(events.iter().all(|(verified, _)| *verified));
    assert!(events[2].1["result"].is_null(), "no result configured");
    assert!(events[2].1["result_url"].is_string());
    Ok(())
}

#[tokio::test]
async fn failed_callbacks_are_retried_and_resends_are_duplicates() -> anyhow::Result<()> {
    let sim = JustifactsSim::start(manual()).await?;
    let rx = Receiver::start(sim.webhook_secret(), 2).await?;
    let (_, order) = post_order(&sim, None, &sim.api_key(), &order_body(&sim, &rx.url())).await?;
    let id = order_id(&order);

    assert_eq!(sim.advance(&id).await?, 503);
    let events = rx.wait_for(1).await;
    assert_eq!(events.len(), 1);
    assert!(events[0].0, "retries carry valid signatures");
    // The sim records an attempt after the receiver answered it: poll (bounded).
    let mut attempts = Vec::new();
    for _ in 0..100 {
        attempts = sim
            .callbacks()
            .first()
            .map(|d| d.attempts.clone())
            .unwrap_or_default();
        if attempts.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(attempts, vec![503, 503, 200]);

    assert_eq!(sim.resend_last_callback(&id).await?, 200);
    let events = rx.wait_for(2).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].1, events[1].1, "a resend repeats the same event");
    assert!(events[1].0);
    Ok(())
}

#[tokio::test]
async fn cancel_and_refused_non_loopback_callbacks() -> anyhow::Result<()> {
    let sim = JustifactsSim::start(manual()).await?;
    let rx = Receiver::start(sim.webhook_secret(), 0).await?;
    let (_, order) = post_order(&sim, None, &sim.api_key(), &order_body(&sim, &rx.url())).await?;
    let id = order_id(&order);
    assert_eq!(sim.cancel(&id).await?, 200);
    assert!(sim.advance(&id).await.is_err());
    let events = rx.wait_for(1).await;
    assert_eq!(events[0].1["status"], "Cancelled");

    // An order whose callback URL is not loopback is accepted but never called.
    let (status, order) = post_order(
        &sim,
        None,
        &sim.api_key(),
        &order_body(&sim, "http://example.com/cb"),
    )
    .await?;
    assert_eq!(status, 201);
    assert_eq!(sim.advance(&order_id(&order)).await?, 0);
    Ok(())
}

fn with_ref(sim: &JustifactsSim, client_order_ref: &str) -> Value {
    let mut body = order_body(sim, "http://127.0.0.1:9/cb");
    body["client_order_ref"] = json!(client_order_ref);
    body
}

/// `GET /v1/orders?client_order_ref=<r>` with the sim's key.
async fn find(sim: &JustifactsSim, client_order_ref: &str) -> anyhow::Result<(u16, Value)> {
    let resp = http_util::http_client(Duration::from_secs(5))?
        .get(format!("{}/v1/orders", sim.api_base()))
        .query(&[("client_order_ref", client_order_ref)])
        .bearer_auth(sim.api_key())
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn orders_can_be_found_by_client_order_ref() -> anyhow::Result<()> {
    let sim = JustifactsSim::start(manual()).await?;
    let r = "switchyard:opp 1/bg&x=y#";
    let (status, created) = post_order(&sim, None, &sim.api_key(), &with_ref(&sim, r)).await?;
    assert_eq!(status, 201);
    assert_eq!(created["client_order_ref"], r);
    assert_eq!(created["reference"], "opp-1", "reference is kept as it was");
    post_order(&sim, None, &sim.api_key(), &with_ref(&sim, "other")).await?;
    let (_, plain) = post_order(
        &sim,
        None,
        &sim.api_key(),
        &order_body(&sim, "http://127.0.0.1:9/cb"),
    )
    .await?;
    assert_eq!(plain["client_order_ref"], Value::Null);

    let (status, found) = find(&sim, r).await?;
    assert_eq!(status, 200);
    let by_id: Value = http_util::http_client(Duration::from_secs(5))?
        .get(format!(
            "{}/v1/orders/{}",
            sim.api_base(),
            order_id(&created)
        ))
        .bearer_auth(sim.api_key())
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(found, json!({ "orders": [by_id] }));
    assert_eq!(find(&sim, "nobody").await?, (200, json!({ "orders": [] })));
    assert_eq!(find(&sim, "switchyard:opp 1").await?.1["orders"], json!([]));

    let unauthenticated = http_util::http_client(Duration::from_secs(5))?
        .get(format!(
            "{}/v1/orders?client_order_ref=other",
            sim.api_base()
        ))
        .send()
        .await?;
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(sim.orders_for_client_order_ref(r), 1);
    assert_eq!(sim.orders_for_reference("opp-1"), 3);
    Ok(())
}

#[tokio::test]
async fn ignoring_idempotency_keys_creates_two_orders() -> anyhow::Result<()> {
    let sim = JustifactsSim::start(JustifactsOptions {
        ignore_idempotency_keys: true,
        ..manual()
    })
    .await?;
    let body = with_ref(&sim, "ref-1");
    let (s1, o1) = post_order(&sim, Some("key-1"), &sim.api_key(), &body).await?;
    let (s2, o2) = post_order(&sim, Some("key-1"), &sim.api_key(), &body).await?;
    assert_eq!((s1, s2), (201, 201));
    assert_ne!(order_id(&o1), order_id(&o2));
    assert_eq!(sim.orders_for_client_order_ref("ref-1"), 2);
    assert_eq!(sim.orders_for_email("Ada@Example.com"), 2);
    assert_eq!(
        sim.emails_ordered_more_than_once(),
        vec![("ada@example.com".to_string(), 2)]
    );
    assert_eq!(
        find(&sim, "ref-1").await?.1["orders"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    sim.set_ignore_idempotency_keys(false);
    let body = with_ref(&sim, "ref-2");
    let (s3, o3) = post_order(&sim, Some("key-2"), &sim.api_key(), &body).await?;
    let (s4, o4) = post_order(&sim, Some("key-2"), &sim.api_key(), &body).await?;
    assert_eq!((s3, s4), (201, 200));
    assert_eq!(order_id(&o3), order_id(&o4));
    assert_eq!(sim.orders_for_client_order_ref("ref-2"), 1);
    Ok(())
}

#[tokio::test]
async fn idempotency_keys_are_honoured_by_default() -> anyhow::Result<()> {
    let sim = JustifactsSim::start(manual()).await?;
    let body = with_ref(&sim, "ref-1");
    post_order(&sim, Some("key-1"), &sim.api_key(), &body).await?;
    post_order(&sim, Some("key-1"), &sim.api_key(), &body).await?;
    assert_eq!(sim.orders_for_client_order_ref("ref-1"), 1);
    assert_eq!(sim.orders_for_email("ada@example.com"), 1);
    assert!(sim.emails_ordered_more_than_once().is_empty());
    Ok(())
}

#[tokio::test]
async fn with_latency_the_order_exists_even_if_the_caller_gave_up() -> anyhow::Result<()> {
    let sim = JustifactsSim::start(manual()).await?;
    sim.set_latency(Duration::from_secs(3));
    let impatient = http_util::http_client(Duration::from_millis(300))?;
    let err = impatient
        .post(format!("{}/v1/orders", sim.api_base()))
        .bearer_auth(sim.api_key())
        .json(&with_ref(&sim, "crash-1"))
        .send()
        .await
        .err()
        .map(|e| e.is_timeout());
    assert_eq!(err, Some(true));
    let mut found = false;
    for _ in 0..100 {
        if sim.orders_for_client_order_ref("crash-1") == 1 {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(found, "the order was created before the answer");
    sim.set_latency(Duration::ZERO);
    assert_eq!(
        find(&sim, "crash-1").await?.1["orders"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    Ok(())
}
