//! A simulator of Gem (the ATS) as a client of switchyard's Gem API.
//!
//! # As Gem's webhook handler
//! `POST {webhook_url}` receives status webhooks signed the Standard Webhooks way:
//! `webhook-id`, `webhook-timestamp` (unix seconds), `webhook-signature` = space-separated
//! `v1,<base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))>` entries. A delivery is accepted
//! when any entry verifies under any of the configured secrets ([`GemSim::set_secrets`], so tests
//! can rotate), and its timestamp is within ±5 minutes. Answers: 503 while
//! [`GemSim::set_down`]; 400 for missing headers or a stale timestamp; 401 for a bad signature;
//! 200 otherwise. A `webhook-id` already accepted is answered 200 and not kept again (counted in
//! [`GemSim::duplicates`]), the way a real receiver dedupes.
//!
//! # As a client
//! [`GemSim::list_packages`], [`GemSim::send_check`] and [`GemSim::screening`] call switchyard's
//! Gem API with an `X-API-Key`, returning the HTTP status and the JSON body.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::http_util::{self, ServerHandle};

/// Largest accepted clock difference of a webhook timestamp, as Standard Webhooks recommends.
pub const TOLERANCE_SECS: i64 = 300;

/// How the simulated Gem account is set up.
#[derive(Clone, Debug, Default)]
pub struct GemOptions {
    /// Webhook secrets that verify (the one pasted into Gem; two while rotating).
    pub secrets: Vec<String>,
}

/// One accepted status webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceivedStatus {
    pub webhook_id: String,
    pub timestamp: i64,
    pub screening_id: Option<String>,
    pub application_id: String,
    pub state: String,
    pub label: String,
    pub results_url: Option<String>,
    /// The whole body, as received.
    pub body: serde_json::Value,
}

/// A delivery Gem refused, and why.
#[derive(Clone, Debug)]
pub struct Rejected {
    pub status: u16,
    pub reason: String,
}

#[derive(Default)]
struct Inner {
    secrets: Vec<String>,
    down: bool,
    retry_after: Option<u64>,
    attempts: usize,
    attempt_log: Vec<(String, Instant)>,
    received: Vec<ReceivedStatus>,
    seen: HashSet<String>,
    duplicates: usize,
    rejected: Vec<Rejected>,
}

/// The running simulator. Stops when dropped.
pub struct GemSim {
    server: ServerHandle,
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(inner: &Shared) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl GemSim {
    /// Starts the webhook handler on `127.0.0.1:0`.
    pub async fn start(opts: GemOptions) -> anyhow::Result<GemSim> {
        let inner: Shared = Arc::new(Mutex::new(Inner {
            secrets: opts.secrets,
            ..Inner::default()
        }));
        let router = axum::Router::new()
            .route("/certn/certnWebhookHandler", post(handle))
            .with_state(inner.clone());
        let server = http_util::serve_loopback(router).await?;
        Ok(GemSim {
            server,
            inner,
            http: http_util::http_client(Duration::from_secs(20))?,
        })
    }

    /// The URL to configure as the integration's Gem webhook URL.
    pub fn webhook_url(&self) -> String {
        format!("{}/certn/certnWebhookHandler", self.server.base_url())
    }

    /// Replaces the secrets that verify signatures.
    pub fn set_secrets(&self, secrets: Vec<String>) {
        lock(&self.inner).secrets = secrets;
    }

    /// While down, every delivery gets 503 (and counts as an attempt).
    pub fn set_down(&self, down: bool) {
        lock(&self.inner).down = down;
    }

    /// While down, the 503s carry `Retry-After: <secs>` (`None`: no header).
    pub fn set_retry_after(&self, secs: Option<u64>) {
        lock(&self.inner).retry_after = secs;
    }

    /// Every attempt's `webhook-id` (empty if absent) and arrival time, in arrival order.
    pub fn attempt_log(&self) -> Vec<(String, Instant)> {
        lock(&self.inner).attempt_log.clone()
    }

    /// Accepted webhooks, one per `webhook-id`, in arrival order.
    pub fn received(&self) -> Vec<ReceivedStatus> {
        lock(&self.inner).received.clone()
    }

    /// Every delivery attempt that reached the handler, whatever the answer.
    pub fn attempts(&self) -> usize {
        lock(&self.inner).attempts
    }

    /// Deliveries of a `webhook-id` that had already been accepted.
    pub fn duplicates(&self) -> usize {
        lock(&self.inner).duplicates
    }

    /// Deliveries refused for a bad signature, stale timestamp or missing header (not 503s).
    pub fn rejected(&self) -> Vec<Rejected> {
        lock(&self.inner).rejected.clone()
    }

    /// `GET {host}/gem/{integration}/packages`.
    pub async fn list_packages(
        &self,
        host: &str,
        integration: &str,
        api_key: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let req = self.http.get(format!("{host}/gem/{integration}/packages"));
        call(req, api_key).await
    }

    /// `POST {host}/gem/{integration}/screenings` with `body`, optionally with an `Idempotency-Key`.
    pub async fn send_check(
        &self,
        host: &str,
        integration: &str,
        api_key: &str,
        body: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut req = self
            .http
            .post(format!("{host}/gem/{integration}/screenings"))
            .json(body);
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key);
        }
        call(req, api_key).await
    }

    /// `GET {host}/gem/{integration}/screenings/{id}`.
    pub async fn screening(
        &self,
        host: &str,
        integration: &str,
        api_key: &str,
        id: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let req = self
            .http
            .get(format!("{host}/gem/{integration}/screenings/{id}"));
        call(req, api_key).await
    }
}

async fn call(
    req: reqwest::RequestBuilder,
    api_key: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let resp = req
        .header("x-api-key", api_key)
        .send()
        .await
        .context("calling the Gem API")?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.context("reading the Gem API response")?;
    Ok((
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    ))
}

/// Base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn handle(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut g = lock(&inner);
    g.attempts += 1;
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    g.attempt_log.push((id, Instant::now()));
    if g.down {
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
        if let Some(secs) = g.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        return response;
    }
    let (id, ts, json) = match verify(&g.secrets, &headers, &body) {
        Ok(v) => v,
        Err((status, reason)) => {
            g.rejected.push(Rejected {
                status: status.as_u16(),
                reason: reason.into(),
            });
            return (status, reason).into_response();
        }
    };
    if !g.seen.insert(id.clone()) {
        g.duplicates += 1;
        return (StatusCode::OK, "duplicate").into_response();
    }
    let text = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let status = ReceivedStatus {
        webhook_id: id,
        timestamp: ts,
        screening_id: text("screening_id"),
        application_id: text("application_id").unwrap_or_default(),
        state: text("state").unwrap_or_default(),
        label: text("label").unwrap_or_default(),
        results_url: text("results_url"),
        body: json,
    };
    g.received.push(status);
    (StatusCode::OK, "ok").into_response()
}

/// Checks headers, freshness and signature; returns the id, timestamp and parsed body.
fn verify(
    secrets: &[String],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, i64, serde_json::Value), (StatusCode, &'static str)> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (Some(id), Some(ts), Some(sigs)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return Err((StatusCode::BAD_REQUEST, "missing webhook-* headers"));
    };
    let ts = ts
        .parse::<i64>()
        .map_err(|_| (StatusCode::BAD_REQUEST, "bad webhook-timestamp"))?;
    let now = i64::try_from(http_util::now_secs()).unwrap_or(i64::MAX);
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err((StatusCode::BAD_REQUEST, "stale webhook-timestamp"));
    }
    let expected: Vec<String> = secrets.iter().map(|s| sign(s, &id, ts, body)).collect();
    let valid = sigs
        .split(' ')
        .filter_map(|e| e.strip_prefix("v1,"))
        .any(|sig| expected.iter().any(|x| x == sig));
    if !valid {
        return Err((StatusCode::UNAUTHORIZED, "no valid signature"));
    }
    let json =
        serde_json::from_slice(body).map_err(|_| (StatusCode::BAD_REQUEST, "body is not JSON"))?;
    Ok((id, ts, json))
}
