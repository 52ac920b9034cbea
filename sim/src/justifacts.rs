//! A simulator of Justifacts (background checks).
//!
//! Justifacts publishes no API documentation (its Lever integration is configured in JWeb), so the
//! protocol below is switchyard's own design. The Justifacts connector
//! (`plugins/justifacts`) implements the client side of exactly this protocol; change both
//! together.
//!
//! # API (`http://127.0.0.1:PORT`)
//! Requests under `/v1/` need `Authorization: Bearer <api key>`, else
//! `401 {"error":"invalid api key"}`. Errors are always `{"error":"<message>"}`.
//!
//! - `POST /v1/orders` — place an order (invite the applicant). Headers: `Authorization`,
//!   `Content-Type: application/json`, optional `Idempotency-Key`. JSON body:
//!   ```json
//!   {"client_code": "JW-…",        // the JWeb client account; unknown → 401 {"error":"unknown client code"}
//!    "package_code": "13558",      // EmpCod ID: one or more ASCII digits, else 400
//!    "reference": "<opportunity id>",   // optional, echoed in callbacks
//!    "client_order_ref": "…",       // optional: the caller's own unique reference for this order,
//!                                   // stored and returned as is (lookup below); not a string → 400
//!    "callback_url": "http://127.0.0.1:…/…",  // required http(s) URL, else 400
//!    "applicant": {"name": "…", "email": "…" /* required, must contain @, else 400 */,
//!                  "phone": "…" | null}}
//!   ```
//!   Malformed JSON → 400. A new order → `201` with the order JSON (status `Initiated`). A
//!   repeated `Idempotency-Key` (per client code) → `200` with the existing order in its current
//!   state; nothing new is created or sent (the repeated body is not compared). With
//!   [`JustifactsOptions::ignore_idempotency_keys`] (or
//!   [`JustifactsSim::set_ignore_idempotency_keys`]) the header is ignored and every request
//!   creates a new order, as a vendor without idempotency support would.
//!   [`JustifactsSim::set_latency`] delays the answer after the order is created.
//! - `GET /v1/orders?client_order_ref=<urlencoded>` → `200 {"orders": [<order JSON, as
//!   GET /v1/orders/{id} returns it>]}`, oldest first, exact match; without the parameter, every
//!   order. This is how a client finds what an order it never got the answer to created.
//! - `GET /v1/orders/{id}` → `200` order JSON, or `404 {"error":"order not found"}`.
//! - `GET /results/{id}` (no auth: it stands for JWeb's logged-in result page) → a small HTML
//!   report once the order is `Complete`, else 404.
//!
//! # The order JSON
//! `{"order_id":"JF-…","status","client_code","package_code","reference","client_order_ref"
//!   (null when not given),"callback_url",
//!   "applicant":{"name","email","phone"},"result","result_url","created","updated"}`
//! (times RFC 3339). `status` goes `Initiated` → `In Process` → `Complete`, or to `Cancelled`
//! through [`JustifactsSim::cancel`]. On `Complete`, `result_url` = `{api_base}/results/{id}` and
//! `result` = [`JustifactsOptions::result`] (e.g. `Clear`, `Review`, `Adverse`; null if `None`).
//!
//! With [`JustifactsOptions::step_delay`] `Some(d)`, a new order gets an `Initiated` callback about
//! 50 ms after the order response, then moves one step every `d` with a callback per step (two
//! steps at most: the loop is bounded). With `None` nothing happens on its own (not even the
//! `Initiated` callback): [`JustifactsSim::advance`] moves one step and delivers its callback.
//!
//! # Callbacks
//! `POST` to the order's `callback_url`, only if its host is loopback (`127.0.0.0/8`, `::1`,
//! `localhost`; anything else is recorded as a failed attempt `0` and never contacted). Body:
//! ```json
//! {"event_id":"evt_…","event":"order.status_changed","order_id":"JF-…","reference":"…",
//!  "client_code":"…","package_code":"13558","status":"In Process",
//!  "result":"Clear"|null,"result_url":"http://…/results/JF-…"|null,"occurred_at":1700000000}
//! ```
//! (`result` / `result_url` are non-null only for `Complete`.) Headers:
//! `Content-Type: application/json`, `X-Justifacts-Timestamp: <unix seconds>`,
//! `X-Justifacts-Signature: sha256=<lower-case hex HMAC-SHA256(webhook secret,
//! "<timestamp>.<raw body>")>` (see [`sign`]). On a 5xx answer or a connection error (recorded as
//! 0) a callback is retried 3 more times after base×1, base×2, base×3
//! ([`JustifactsOptions::callback_retry_base`]), same body, fresh timestamp and signature each
//! time. Other answers are final.
//!
//! # Failure injection
//! [`JustifactsSim::fail_next`]: the next `n` requests under `/v1/` get `503` before auth and do
//! nothing (POSTs still count in [`JustifactsSim::order_requests`]).
//!
//! # Counting helpers (for "nobody invited twice" assertions)
//! [`JustifactsSim::orders_for_client_order_ref`], [`JustifactsSim::orders_for_reference`],
//! [`JustifactsSim::orders_for_email`], [`JustifactsSim::emails_ordered_more_than_once`].

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::http_util::{self, ServerHandle};

/// Header carrying the callback's signing time (unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-Justifacts-Timestamp";
/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Justifacts-Signature";
/// The normal lifecycle of an order, in order.
pub const STATUSES: [&str; 3] = ["Initiated", "In Process", "Complete"];
/// The status of a cancelled order.
pub const CANCELLED: &str = "Cancelled";

/// Timeout of one callback attempt.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries after a failed first callback attempt.
const CALLBACK_RETRIES: u32 = 3;
/// Delay before the automatic `Initiated` callback, so it lands after the order response.
const INITIATED_DELAY: Duration = Duration::from_millis(50);

/// How the simulated Justifacts client account is set up.
#[derive(Clone, Debug)]
pub struct JustifactsOptions {
    /// `Some(d)`: orders progress on their own, one step every `d`.
    /// `None`: they only progress through [`JustifactsSim::advance`].
    pub step_delay: Option<Duration>,
    /// The result a completed order reports (`Clear`, `Review`, `Adverse`); `None` = no result.
    pub result: Option<String>,
    /// The JWeb client code to accept; `None` generates one.
    pub client_code: Option<String>,
    /// Base delay of callback retries (attempt k waits base × k).
    pub callback_retry_base: Duration,
    /// `true`: the `Idempotency-Key` header is ignored, so a repeated order creates a new one (as
    /// a vendor without idempotency support would). Can be changed on the running simulator with
    /// [`JustifactsSim::set_ignore_idempotency_keys`].
    pub ignore_idempotency_keys: bool,
}

impl Default for JustifactsOptions {
    /// A step every 300 ms, result `Clear`, a generated client code, retry base 200 ms,
    /// idempotency keys honoured.
    fn default() -> Self {
        JustifactsOptions {
            step_delay: Some(Duration::from_millis(300)),
            result: Some("Clear".into()),
            client_code: None,
            callback_retry_base: Duration::from_millis(200),
            ignore_idempotency_keys: false,
        }
    }
}

/// The applicant of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applicant {
    /// Full name (may be empty).
    #[serde(default)]
    pub name: String,
    /// Where the invitation goes.
    #[serde(default)]
    pub email: String,
    /// Optional phone.
    #[serde(default)]
    pub phone: Option<String>,
}

/// A Justifacts order, exactly as the API serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// `JF-…`.
    pub order_id: String,
    /// `Initiated`, `In Process`, `Complete` or `Cancelled`.
    pub status: String,
    /// The client account that placed it.
    pub client_code: String,
    /// Numeric package code.
    pub package_code: String,
    /// The caller's reference (an opportunity id), echoed in callbacks.
    pub reference: String,
    /// The caller's own reference for this order, if given (lookup:
    /// `GET /v1/orders?client_order_ref=`).
    #[serde(default)]
    pub client_order_ref: Option<String>,
    /// Where callbacks go.
    pub callback_url: String,
    /// Who is screened.
    pub applicant: Applicant,
    /// Set when complete, if the simulator is configured with one.
    pub result: Option<String>,
    /// `{api_base}/results/{id}` once complete.
    pub result_url: Option<String>,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Last change, RFC 3339.
    pub updated: String,
}

/// One callback and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackDelivery {
    /// The order it is about.
    pub order_id: String,
    /// The status it carries.
    pub status: String,
    /// Its `event_id` (the same on retries and resends).
    pub event_id: String,
    /// The exact body (identical on every attempt).
    pub body: String,
    /// HTTP status of each attempt, in order; 0 = connection error, timeout or refused
    /// (non-loopback) URL.
    pub attempts: Vec<u16>,
}

/// A running Justifacts simulator. Clones share the server and state; the server stops when the
/// last clone is dropped, and automatic progression stops with it.
#[derive(Clone)]
pub struct JustifactsSim {
    shared: Arc<Shared>,
    server: Arc<ServerHandle>,
}

struct Shared {
    api_key: String,
    client_code: String,
    webhook_secret: String,
    base: String,
    opts: JustifactsOptions,
    client: reqwest::Client,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written in a way that
        // matters for a simulator; keep serving rather than cascading the panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct State {
    orders: Vec<Order>,
    /// `(client code, idempotency key)` → order id.
    idempotency: HashMap<(String, String), String>,
    order_requests: usize,
    fail_next: u32,
    callbacks: Vec<CallbackDelivery>,
    ignore_idempotency_keys: bool,
    /// Added before every order answer (after the work is done).
    latency: Duration,
}

impl State {
    fn order_mut(&mut self, id: &str) -> Option<&mut Order> {
        self.orders.iter_mut().find(|o| o.order_id == id)
    }
}

/// The `X-Justifacts-Signature` value for `body` signed at `timestamp` (unix seconds):
/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. Public so tests can forge callbacks.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut msg = timestamp.to_string().into_bytes();
    msg.push(b'.');
    msg.extend_from_slice(body);
    format!(
        "sha256={}",
        http_util::hmac_sha256_hex(secret.as_bytes(), &msg)
    )
}

/// Moves `order` one step along [`STATUSES`]; false if it is complete or cancelled.
fn step(order: &mut Order, base: &str, result: Option<&str>) -> bool {
    let Some(current) = STATUSES.iter().position(|s| *s == order.status) else {
        return false;
    };
    let Some(next) = STATUSES.get(current + 1) else {
        return false;
    };
    order.status = (*next).to_string();
    if *next == "Complete" {
        order.result_url = Some(format!("{base}/results/{}", order.order_id));
        order.result = result.map(str::to_string);
    }
    order.updated = http_util::now_rfc3339();
    true
}

/// The callback body for `order`'s current status.
fn event_body(order: &Order) -> (String, String) {
    let event_id = format!("evt_{}", http_util::random_hex(24));
    let complete = order.status == "Complete";
    let body = serde_json::json!({
        "event_id": event_id,
        "event": "order.status_changed",
        "order_id": order.order_id,
        "reference": order.reference,
        "client_code": order.client_code,
        "package_code": order.package_code,
        "status": order.status,
        "result": if complete { order.result.clone() } else { None },
        "result_url": if complete { order.result_url.clone() } else { None },
        "occurred_at": http_util::now_secs(),
    });
    (event_id, body.to_string())
}

/// True if `url` is an http(s) URL whose host is loopback: the simulator never calls out.
fn is_loopback_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return false;
    }
    let Some(host) = parsed.host_str() else {
        return false;
    };
    // IPv6 hosts come bracketed (`[::1]`).
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// True for answers worth retrying: connection errors and server errors.
fn retryable(code: u16) -> bool {
    code == 0 || (500..=599).contains(&code)
}

/// A callback ready to send: recorded in the delivery log at `index`.
struct Outgoing {
    url: String,
    body: String,
    index: usize,
}

/// Under one lock: applies `change` to the order, then records a callback for its new status, so
/// a concurrent step cannot slip between the change and the body describing it.
fn prepare(
    shared: &Shared,
    order_id: &str,
    change: impl FnOnce(&mut Order) -> anyhow::Result<()>,
) -> anyhow::Result<Outgoing> {
    let mut st = shared.lock();
    let order = st
        .order_mut(order_id)
        .with_context(|| format!("unknown order {order_id}"))?;
    change(order)?;
    let (event_id, body) = event_body(order);
    let delivery = CallbackDelivery {
        order_id: order.order_id.clone(),
        status: order.status.clone(),
        event_id,
        body: body.clone(),
        attempts: Vec::new(),
    };
    let url = order.callback_url.clone();
    st.callbacks.push(delivery);
    Ok(Outgoing {
        url,
        body,
        index: st.callbacks.len() - 1,
    })
}

fn record_attempt(shared: &Shared, index: usize, code: u16) {
    if let Some(d) = shared.lock().callbacks.get_mut(index) {
        d.attempts.push(code);
    }
}

/// One delivery attempt with a fresh timestamp and signature; 0 on connection error or timeout.
async fn attempt(shared: &Shared, url: &str, body: &str) -> u16 {
    let ts = http_util::now_secs();
    let result = shared
        .client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(
            SIGNATURE_HEADER,
            sign(&shared.webhook_secret, ts, body.as_bytes()),
        )
        .body(body.to_string())
        .send()
        .await;
    match result {
        Ok(resp) => resp.status().as_u16(),
        Err(err) => {
            tracing::debug!(%err, "justifacts sim callback failed");
            0
        }
    }
}

/// Sends `out` once and returns the answer; if that failed, retries (bounded) in the background.
async fn send(shared: Arc<Shared>, out: Outgoing, retry: bool) -> u16 {
    if !is_loopback_url(&out.url) {
        tracing::warn!(url = %out.url, "justifacts sim refuses non-loopback callback URL");
        record_attempt(&shared, out.index, 0);
        return 0;
    }
    let first = attempt(&shared, &out.url, &out.body).await;
    record_attempt(&shared, out.index, first);
    if retry && retryable(first) {
        // Weak: a dropped simulator stops retrying instead of calling out after the test ended.
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            for k in 1..=CALLBACK_RETRIES {
                let Some(base) = weak.upgrade().map(|s| s.opts.callback_retry_base) else {
                    return;
                };
                tokio::time::sleep(base * k).await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let code = attempt(&shared, &out.url, &out.body).await;
                record_attempt(&shared, out.index, code);
                if !retryable(code) {
                    return;
                }
            }
        });
    }
    first
}

/// One step forward plus its callback (first attempt awaited).
async fn advance_order(shared: Arc<Shared>, order_id: &str) -> anyhow::Result<u16> {
    let base = shared.base.clone();
    let result = shared.opts.result.clone();
    let out = prepare(&shared, order_id, |order| {
        anyhow::ensure!(
            step(order, &base, result.as_deref()),
            "order {order_id} is {} and cannot advance",
            order.status
        );
        Ok(())
    })?;
    Ok(send(shared, out, true).await)
}

/// Automatic progression: `Initiated` callback shortly after the order's answer (which `latency`
/// delays), then one step every `delay`. Bounded by the number of statuses; stops early if the
/// order is cancelled or the simulator is dropped.
fn spawn_progression(weak: Weak<Shared>, order_id: String, latency: Duration, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(latency + INITIATED_DELAY).await;
        let Some(shared) = weak.upgrade() else {
            return;
        };
        match prepare(&shared, &order_id, |_| Ok(())) {
            Ok(out) => {
                send(shared, out, true).await;
            }
            Err(_) => return,
        }
        for _ in 1..STATUSES.len() {
            tokio::time::sleep(delay).await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            if advance_order(shared, &order_id).await.is_err() {
                return;
            }
        }
    });
}

impl JustifactsSim {
    /// Starts a simulator on `127.0.0.1:<random port>` with a fresh API key and webhook secret
    /// (and client code, unless [`JustifactsOptions::client_code`] sets one).
    pub async fn start(opts: JustifactsOptions) -> anyhow::Result<JustifactsSim> {
        let listener = http_util::bind_loopback().await?;
        let base = format!("http://{}", listener.local_addr()?);
        let client_code = opts
            .client_code
            .clone()
            .unwrap_or_else(|| format!("JW-{}", http_util::random_hex(8).to_uppercase()));
        let shared = Arc::new(Shared {
            api_key: http_util::random_alnum(40),
            client_code,
            webhook_secret: format!("whsec_{}", http_util::random_alnum(32)),
            base,
            client: http_util::http_client(CALLBACK_TIMEOUT)?,
            state: Mutex::new(State {
                ignore_idempotency_keys: opts.ignore_idempotency_keys,
                ..State::default()
            }),
            opts,
        });
        let server = http_util::serve(listener, router(shared.clone()))?;
        tracing::debug!(addr = %server.addr(), "justifacts sim started");
        Ok(JustifactsSim {
            shared,
            server: Arc::new(server),
        })
    }

    /// The API base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn api_base(&self) -> String {
        self.server.base_url()
    }

    /// The API key (`Authorization: Bearer <key>`).
    pub fn api_key(&self) -> String {
        self.shared.api_key.clone()
    }

    /// The JWeb client code orders must carry.
    pub fn client_code(&self) -> String {
        self.shared.client_code.clone()
    }

    /// The secret callbacks are signed with.
    pub fn webhook_secret(&self) -> String {
        self.shared.webhook_secret.clone()
    }

    /// Moves an order one step (`Initiated` → `In Process` → `Complete`) and delivers its
    /// callback; returns the first attempt's HTTP status (0 = no answer) once it is answered
    /// (retries continue in the background). Fails if the order is unknown, complete or
    /// cancelled.
    pub async fn advance(&self, order_id: &str) -> anyhow::Result<u16> {
        advance_order(self.shared.clone(), order_id).await
    }

    /// Cancels an order that is not complete and delivers the `Cancelled` callback; returns the
    /// first attempt's HTTP status.
    pub async fn cancel(&self, order_id: &str) -> anyhow::Result<u16> {
        let out = prepare(&self.shared, order_id, |order| {
            anyhow::ensure!(
                order.status != "Complete" && order.status != CANCELLED,
                "order {order_id} is {} and cannot be cancelled",
                order.status
            );
            order.status = CANCELLED.to_string();
            order.updated = http_util::now_rfc3339();
            Ok(())
        })?;
        Ok(send(self.shared.clone(), out, true).await)
    }

    /// Sends the order's latest callback again (same body and `event_id`, fresh timestamp and
    /// signature), once, without retries; returns the HTTP status (0 = no answer). Recorded as a
    /// new entry in [`JustifactsSim::callbacks`]. Fails if the order has had no callback yet.
    pub async fn resend_last_callback(&self, order_id: &str) -> anyhow::Result<u16> {
        let out = {
            let mut st = self.shared.lock();
            let url = st
                .orders
                .iter()
                .find(|o| o.order_id == order_id)
                .map(|o| o.callback_url.clone())
                .with_context(|| format!("unknown order {order_id}"))?;
            let mut last = st
                .callbacks
                .iter()
                .rev()
                .find(|d| d.order_id == order_id)
                .cloned()
                .with_context(|| format!("order {order_id} has had no callback yet"))?;
            let body = last.body.clone();
            last.attempts.clear();
            st.callbacks.push(last);
            Outgoing {
                url,
                body,
                index: st.callbacks.len() - 1,
            }
        };
        Ok(send(self.shared.clone(), out, false).await)
    }

    /// How many orders exist (idempotent repeats do not add any).
    pub fn orders(&self) -> usize {
        self.shared.lock().orders.len()
    }

    /// Every order, oldest first.
    pub fn order_list(&self) -> Vec<Order> {
        self.shared.lock().orders.clone()
    }

    /// One order by id.
    pub fn order(&self, order_id: &str) -> Option<Order> {
        self.shared
            .lock()
            .orders
            .iter()
            .find(|o| o.order_id == order_id)
            .cloned()
    }

    /// How many `POST /v1/orders` requests arrived (including failed and repeated ones).
    pub fn order_requests(&self) -> usize {
        self.shared.lock().order_requests
    }

    /// Every callback sent so far, oldest first, with its attempts.
    pub fn callbacks(&self) -> Vec<CallbackDelivery> {
        self.shared.lock().callbacks.clone()
    }

    /// Answers the next `n` API requests (under `/v1/`) with 503, doing nothing.
    pub fn fail_next(&self, n: u32) {
        self.shared.lock().fail_next = n;
    }

    /// `true`: from now on the `Idempotency-Key` header is ignored and every order request
    /// creates a new order (see [`JustifactsOptions::ignore_idempotency_keys`]).
    pub fn set_ignore_idempotency_keys(&self, ignore: bool) {
        self.shared.lock().ignore_idempotency_keys = ignore;
    }

    /// Delays every `POST /v1/orders` answer by `latency` after the order is created (zero =
    /// off), so a test can kill the client between the request and the answer. Automatic
    /// progression's first callback waits for it too.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// How many orders carry this `client_order_ref`.
    pub fn orders_for_client_order_ref(&self, client_order_ref: &str) -> usize {
        self.count(|o| o.client_order_ref.as_deref() == Some(client_order_ref))
    }

    /// How many orders carry this `reference` (opportunity id).
    pub fn orders_for_reference(&self, reference: &str) -> usize {
        self.count(|o| o.reference == reference)
    }

    /// How many orders were placed for this applicant email (case-insensitive).
    pub fn orders_for_email(&self, email: &str) -> usize {
        let email = email.trim();
        self.count(|o| o.applicant.email.eq_ignore_ascii_case(email))
    }

    /// Every applicant email (lower-cased) with more than one order, with its number of orders,
    /// sorted by email: empty when no candidate was invited twice.
    pub fn emails_ordered_more_than_once(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for o in &self.shared.lock().orders {
            *counts
                .entry(o.applicant.email.to_ascii_lowercase())
                .or_default() += 1;
        }
        counts.into_iter().filter(|(_, n)| *n > 1).collect()
    }

    fn count(&self, pred: impl Fn(&Order) -> bool) -> usize {
        self.shared.lock().orders.iter().filter(|o| pred(o)).count()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/orders", post(create_order).get(find_orders))
        .route("/v1/orders/{id}", get(get_order))
        .route("/results/{id}", get(result_page))
        .with_state(shared)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Failure injection, then auth: the common front of every `/v1/` request.
fn gate(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    {
        let mut st = shared.lock();
        if st.fail_next > 0 {
            st.fail_next -= 1;
            return Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service unavailable",
            ));
        }
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(str::trim);
    if token != Some(shared.api_key.as_str()) {
        return Some(error(StatusCode::UNAUTHORIZED, "invalid api key"));
    }
    None
}

#[derive(Deserialize)]
struct NewOrder {
    #[serde(default)]
    client_code: String,
    #[serde(default)]
    package_code: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    client_order_ref: Option<String>,
    #[serde(default)]
    callback_url: String,
    #[serde(default)]
    applicant: Option<Applicant>,
}

/// `POST /v1/orders`: does the work, then waits the injected latency before answering (the order
/// exists even if the caller is gone by then).
async fn create_order(
    AxState(shared): AxState<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let resp = place_order(&shared, &headers, &body);
    let latency = shared.lock().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    resp
}

fn place_order(shared: &Arc<Shared>, headers: &HeaderMap, body: &Bytes) -> Response {
    shared.lock().order_requests += 1;
    if let Some(resp) = gate(shared, headers) {
        return resp;
    }
    let req: NewOrder = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("malformed JSON: {e}")),
    };
    if req.client_code.trim() != shared.client_code {
        return error(StatusCode::UNAUTHORIZED, "unknown client code");
    }
    let package_code = req.package_code.trim();
    if package_code.is_empty()
        || package_code.len() > 20
        || !package_code.bytes().all(|b| b.is_ascii_digit())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "package_code must be a numeric EmpCod ID",
        );
    }
    let mut applicant = req.applicant.unwrap_or(Applicant {
        name: String::new(),
        email: String::new(),
        phone: None,
    });
    applicant.email = applicant.email.trim().to_string();
    if applicant.email.is_empty() || !applicant.email.contains('@') {
        return error(StatusCode::BAD_REQUEST, "applicant.email is required");
    }
    let callback_url = req.callback_url.trim();
    if !reqwest::Url::parse(callback_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
        return error(
            StatusCode::BAD_REQUEST,
            "callback_url must be an absolute http(s) URL",
        );
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| (shared.client_code.clone(), k.to_string()));

    // Check-and-insert under one lock so concurrent repeats cannot create two orders.
    let (order, latency) = {
        let mut st = shared.lock();
        let idempotency_key = idempotency_key.filter(|_| !st.ignore_idempotency_keys);
        if let Some(key) = &idempotency_key {
            let existing = st
                .idempotency
                .get(key)
                .and_then(|id| st.orders.iter().find(|o| &o.order_id == id))
                .cloned();
            if let Some(existing) = existing {
                return (StatusCode::OK, Json(existing)).into_response();
            }
        }
        let now = http_util::now_rfc3339();
        let order = Order {
            order_id: format!("JF-{}", http_util::random_hex(12).to_uppercase()),
            status: STATUSES[0].to_string(),
            client_code: shared.client_code.clone(),
            package_code: package_code.to_string(),
            reference: req.reference.trim().to_string(),
            client_order_ref: req.client_order_ref,
            callback_url: callback_url.to_string(),
            applicant,
            result: None,
            result_url: None,
            created: now.clone(),
            updated: now,
        };
        if let Some(key) = idempotency_key {
            st.idempotency.insert(key, order.order_id.clone());
        }
        st.orders.push(order.clone());
        (order, st.latency)
    };
    if let Some(delay) = shared.opts.step_delay {
        spawn_progression(
            Arc::downgrade(shared),
            order.order_id.clone(),
            latency,
            delay,
        );
    }
    (StatusCode::CREATED, Json(order)).into_response()
}

/// `GET /v1/orders[?client_order_ref=]`: this client's orders, filtered by exact reference.
async fn find_orders(
    AxState(shared): AxState<Arc<Shared>>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if let Some(resp) = gate(&shared, &headers) {
        return resp;
    }
    let wanted = q
        .iter()
        .find(|(k, _)| k == "client_order_ref")
        .map(|(_, v)| v.as_str());
    let orders: Vec<Order> = shared
        .lock()
        .orders
        .iter()
        .filter(|o| wanted.is_none() || o.client_order_ref.as_deref() == wanted)
        .cloned()
        .collect();
    (
        StatusCode::OK,
        Json(serde_json::json!({ "orders": orders })),
    )
        .into_response()
}

async fn get_order(
    AxState(shared): AxState<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(resp) = gate(&shared, &headers) {
        return resp;
    }
    let order = shared
        .lock()
        .orders
        .iter()
        .find(|o| o.order_id == id)
        .cloned();
    match order {
        Some(o) => (StatusCode::OK, Json(o)).into_response(),
        None => error(StatusCode::NOT_FOUND, "order not found"),
    }
}

/// Minimal HTML escaping for text nodes (applicant names are user input).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn result_page(AxState(shared): AxState<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let order = shared
        .lock()
        .orders
        .iter()
        .find(|o| o.order_id == id && o.status == "Complete")
        .cloned();
    let Some(o) = order else {
        return (
            StatusCode::NOT_FOUND,
            Html("<h1>Not found</h1>".to_string()),
        )
            .into_response();
    };
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Justifacts report {id}</title></head>\
         <body><h1>Justifacts background check</h1><dl>\
         <dt>Order</dt><dd>{id}</dd><dt>Applicant</dt><dd>{name}</dd>\
         <dt>Package</dt><dd>{package}</dd><dt>Status</dt><dd>{status}</dd>\
         <dt>Result</dt><dd>{result}</dd></dl></body></html>\n",
        id = escape(&o.order_id),
        name = escape(&o.applicant.name),
        package = escape(&o.package_code),
        status = escape(&o.status),
        result = escape(o.result.as_deref().unwrap_or("(none)")),
    );
    (StatusCode::OK, Html(page)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_documented_scheme() {
        // Same vector as the connector's unit test (plugins/justifacts/src/signature.rs): the two
        // implementations must agree.
        assert_eq!(
            sign(
                "whsec_test",
                1_700_000_000,
                br#"{"order_id":"JF-1","status":"Complete"}"#
            ),
            "sha256=2f643ca0767112655e5a0c8669d2533bd40e7680a464c2ce3a9e0a50bec36b9a"
        );
    }

    #[test]
    fn loopback_urls() {
        assert!(is_loopback_url("http://127.0.0.1:8080/cb"));
        assert!(is_loopback_url("http://localhost/cb"));
        assert!(is_loopback_url("http://[::1]:9/cb"));
        assert!(is_loopback_url("https://127.0.0.2/cb"));
        assert!(!is_loopback_url("http://example.com/cb"));
        assert!(!is_loopback_url("http://10.0.0.1/cb"));
        assert!(!is_loopback_url("ftp://127.0.0.1/cb"));
        assert!(!is_loopback_url("not a url"));
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
