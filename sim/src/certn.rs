//! A simulator of Certn (background checks), API v1 style.
//!
//! The real v1 protocol is only partly confirmed by public sources; this module documents the
//! shape we chose, in one place, so it is easy to correct.
//!
//! # API (`http://127.0.0.1:PORT`)
//! Requests under `/api/` need `Authorization: Bearer <api key>`, else
//! `401 {"detail":"Invalid token."}` (or `"Authentication credentials were not provided."`).
//! Errors are Django-REST-framework shaped: `{"detail":"..."}` or `{"<field>":["..."]}`.
//!
//! - `POST /api/v1/hr/applications/invite/` (trailing slash required; without it → 404).
//!   JSON body:
//!   `{"email" (required, else 400 {"email":["This field is required."]}),
//!     "phone_number"?, "package" (one of the team's packages, else 400
//!     {"detail":"unknown package '<name>'"}), "information":{"first_name"?,"last_name"?}?,
//!     "tag"?, "owner_id"?, "reference"? (the caller's own reference, a string; stored and
//!     returned as is), "request_<service>": bool ...}`. Malformed JSON → 400
//!   `{"detail":"JSON parse error - ..."}`; a non-bool `request_*` → 400; a non-string
//!   `reference` → 400 `{"reference":["Not a valid string."]}`.
//!   An `Idempotency-Key` header that was already used for a created application returns that
//!   application (current state) with 200 and creates nothing: no new application, no new
//!   progression, no callback. (The repeated body is not compared.) With
//!   [`CertnOptions::ignore_idempotency_keys`] (or [`CertnSim::set_ignore_idempotency_keys`]) the
//!   header is ignored and every invite creates a new application, as a vendor without
//!   idempotency support would. A new invite → 201 with the application JSON.
//!   [`CertnSim::set_latency`] delays the answer after the application is created.
//! - `GET /api/v1/hr/applications/?reference=<urlencoded>` → `200 {"count": N, "next": null,
//!   "previous": null, "results": [<application JSON, as GET .../:id/ returns it>]}`, oldest
//!   first, exact match on `reference`; no `reference` parameter lists every application. This is
//!   how a client finds what an invite it never got the answer to created.
//! - `GET /api/v1/hr/applications/:id/` → 200 application JSON, or 404 `{"detail":"Not found."}`.
//! - `GET /api/v1/hr/packages/` → `{"count","next":null,"previous":null,"results":[{"id","name"}]}`.
//! - `GET /reports/:id.pdf` (no auth) → a small fake PDF once the report exists (status PARTIAL or
//!   COMPLETE), else 404.
//!
//! # The application JSON
//! `{"id","created","modified" (RFC 3339),"status","status_label","report_status","result",
//!   "result_label","certn_score","certn_score_label","is_submitted","report_url","package","tag",
//!   "owner_id","reference","applicant":{"id","status","first_name","last_name","email","phone_number"},
//!   "request_<service>": bool ...}`.
//!
//! | step | `status` / `status_label` | `report_status` | `is_submitted` | `report_url` | `result`, `certn_score` |
//! | --- | --- | --- | --- | --- | --- |
//! | 0 | `PENDING` / `Pending` | `NONE` | false | null | null |
//! | 1 | `ANALYZING` / `Analyzing` | `ANALYZING` | true | null | null |
//! | 2 | `PARTIAL` / `Partial` | `PARTIAL` | true | `{api_base}/reports/{id}.pdf` | null |
//! | 3 | `COMPLETE` / `Complete` | `COMPLETE` | true | same | `CLEAR` (labels `Clear`) |
//!
//! `applicant.status` mirrors `status`. With [`CertnOptions::step_delay`] `Some(d)`, a new invite
//! gets a PENDING callback right after the invite response (about 50 ms later) and then moves one
//! step every `d`, with a callback per step. With `None`, nothing happens on its own (not even the
//! PENDING callback): [`CertnSim::advance`] moves one step and delivers its callback.
//!
//! # Callbacks
//! POST to the URL set by [`CertnSim::set_webhook_url`]; body = the full application JSON;
//! headers `Content-Type: application/json`, `Certn-Team-ID: <team id>`,
//! `Certn-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(webhook secret, "<t>.<raw body>")>`
//! (see [`sign`]). On 408/500/502/503/504 or a connection error (recorded as 0) a callback is
//! retried 3 more times after base×1, base×2, base×3 ([`CertnOptions::callback_retry_base`]),
//! with the same body but a fresh `t` and signature each time. Other answers are not retried.
//!
//! # Failure injection (API requests under `/api/` only)
//! [`CertnSim::hang_next`] (wait 30 s, then answer 503 without doing anything),
//! [`CertnSim::set_down`] (503 while down), [`CertnSim::fail_next`] (503), checked in that order
//! before auth. Failed requests do nothing, but still count in [`CertnSim::invite_requests`].
//!
//! # Counting helpers (for "nobody invited twice" assertions)
//! [`CertnSim::invitations_for_reference`], [`CertnSim::invitations_for_email`],
//! [`CertnSim::emails_invited_more_than_once`].

mod api;
mod callbacks;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http_util::{self, ServerHandle};

pub use callbacks::sign;

/// Timeout of one callback attempt.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The statuses an application goes through, in order.
pub const STATUSES: [&str; 4] = ["PENDING", "ANALYZING", "PARTIAL", "COMPLETE"];

/// How the simulated Certn team is set up.
#[derive(Clone, Debug)]
pub struct CertnOptions {
    /// The team's package names; an invite must name one of them.
    pub packages: Vec<String>,
    /// `Some(d)`: applications progress on their own, one step every `d`.
    /// `None`: they only progress through [`CertnSim::advance`].
    pub step_delay: Option<Duration>,
    /// Base delay of callback retries (attempt k waits base × k).
    pub callback_retry_base: Duration,
    /// `true`: the `Idempotency-Key` header is ignored, so a repeated invite creates a new
    /// application (as a vendor without idempotency support would). Can be changed on the
    /// running simulator with [`CertnSim::set_ignore_idempotency_keys`].
    pub ignore_idempotency_keys: bool,
}

impl Default for CertnOptions {
    /// Packages `Basic`, `Standard`, `Premium`; a step every 300 ms; retry base 200 ms;
    /// idempotency keys honoured.
    fn default() -> Self {
        CertnOptions {
            packages: vec!["Basic".into(), "Standard".into(), "Premium".into()],
            step_delay: Some(Duration::from_millis(300)),
            callback_retry_base: Duration::from_millis(200),
            ignore_idempotency_keys: false,
        }
    }
}

/// A Certn application (one background check), exactly as the API and callbacks serve it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Application {
    /// Application id.
    pub id: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Last change, RFC 3339.
    pub modified: String,
    /// `PENDING`, `ANALYZING`, `PARTIAL` or `COMPLETE`.
    pub status: String,
    /// Human label of `status`, e.g. `Pending`.
    pub status_label: String,
    /// `NONE`, `ANALYZING`, `PARTIAL` or `COMPLETE`.
    pub report_status: String,
    /// `CLEAR` once complete.
    pub result: Option<String>,
    /// Human label of `result`.
    pub result_label: Option<String>,
    /// `CLEAR` once complete.
    pub certn_score: Option<String>,
    /// Human label of `certn_score`.
    pub certn_score_label: Option<String>,
    /// Whether the applicant has submitted the form.
    pub is_submitted: bool,
    /// The PDF report, once some results exist.
    pub report_url: Option<String>,
    /// The package ordered.
    pub package: String,
    /// The `tag` given with the invite, if any.
    pub tag: Option<String>,
    /// The `owner_id` given with the invite, if any.
    pub owner_id: Option<String>,
    /// The caller's own `reference` given with the invite, if any (lookup:
    /// `GET /api/v1/hr/applications/?reference=`).
    #[serde(default)]
    pub reference: Option<String>,
    /// The person checked.
    pub applicant: Applicant,
    /// The `request_*` flags given with the invite (serialized flat, like the invite body).
    #[serde(flatten)]
    pub request_flags: BTreeMap<String, serde_json::Value>,
}

/// The applicant of an [`Application`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Applicant {
    /// Applicant id.
    pub id: String,
    /// Mirrors the application's `status`.
    pub status: String,
    /// From `information.first_name`.
    pub first_name: Option<String>,
    /// From `information.last_name`.
    pub last_name: Option<String>,
    /// The invited email address.
    pub email: String,
    /// From `phone_number`.
    pub phone_number: Option<String>,
}

/// One callback (one status of one application) and its attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallbackDelivery {
    /// The application the callback is about.
    pub app_id: String,
    /// The application status it carries, e.g. `PARTIAL`.
    pub status: String,
    /// The exact body sent (identical on every attempt).
    pub body: String,
    /// Status of each attempt, in order; 0 = connection error or timeout.
    pub attempts: Vec<u16>,
}

/// A running Certn simulator. Cloning shares the same server and state; the server stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct CertnSim {
    shared: Arc<Shared>,
    server: Arc<ServerHandle>,
}

pub(crate) struct Shared {
    api_key: String,
    webhook_secret: String,
    team_id: String,
    base: String,
    packages: Vec<(String, String)>,
    opts: CertnOptions,
    client: reqwest::Client,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("certn sim state lock poisoned")
    }
}

#[derive(Default)]
struct State {
    apps: Vec<Application>,
    idempotency: HashMap<String, String>,
    invite_requests: usize,
    webhook_url: Option<String>,
    callbacks: Vec<CallbackDelivery>,
    fail_next: u32,
    hang_next: u32,
    down: bool,
    ignore_idempotency_keys: bool,
    /// Added before every invite answer (after the work is done).
    latency: Duration,
}

impl State {
    fn app_mut(&mut self, id: &str) -> Option<&mut Application> {
        self.apps.iter_mut().find(|a| a.id == id)
    }
}

/// Moves `app` one step forward; returns false if it is already complete.
fn step(app: &mut Application, base: &str) -> bool {
    let Some(current) = STATUSES.iter().position(|s| *s == app.status) else {
        return false;
    };
    let Some(next) = STATUSES.get(current + 1) else {
        return false;
    };
    let label = match *next {
        "ANALYZING" => "Analyzing",
        "PARTIAL" => "Partial",
        _ => "Complete",
    };
    app.status = (*next).to_string();
    app.status_label = label.to_string();
    app.applicant.status = app.status.clone();
    app.report_status = app.status.clone();
    app.is_submitted = true;
    if *next != "ANALYZING" {
        app.report_url = Some(format!("{base}/reports/{}.pdf", app.id));
    }
    if *next == "COMPLETE" {
        app.result = Some("CLEAR".into());
        app.result_label = Some("Clear".into());
        app.certn_score = Some("CLEAR".into());
        app.certn_score_label = Some("Clear".into());
    }
    app.modified = http_util::now_rfc3339();
    true
}

impl CertnSim {
    /// Starts a simulator on `127.0.0.1:<random port>` with a fresh API key, webhook secret and
    /// team id.
    pub async fn start(opts: CertnOptions) -> anyhow::Result<CertnSim> {
        let listener = http_util::bind_loopback().await?;
        let base = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            api_key: http_util::random_alnum(40),
            webhook_secret: http_util::random_alnum(32),
            team_id: http_util::new_id(),
            base,
            packages: opts
                .packages
                .iter()
                .map(|p| (http_util::new_id(), p.clone()))
                .collect(),
            client: http_util::http_client(CALLBACK_TIMEOUT)?,
            state: Mutex::new(State {
                ignore_idempotency_keys: opts.ignore_idempotency_keys,
                ..State::default()
            }),
            opts,
        });
        let server = http_util::serve(listener, api::router(shared.clone()))?;
        tracing::debug!(addr = %server.addr(), "certn sim started");
        Ok(CertnSim {
            shared,
            server: Arc::new(server),
        })
    }

    /// The API base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn api_base(&self) -> String {
        self.server.base_url()
    }

    /// The team's API key (`Authorization: Bearer <key>`).
    pub fn api_key(&self) -> String {
        self.shared.api_key.clone()
    }

    /// The team's webhook secret, the key of `Certn-Signature`.
    pub fn webhook_secret(&self) -> String {
        self.shared.webhook_secret.clone()
    }

    /// The team id sent in `Certn-Team-ID`.
    pub fn team_id(&self) -> String {
        self.shared.team_id.clone()
    }

    /// Sets the callback URL (the "team settings" step). Without one, no callbacks are sent.
    pub fn set_webhook_url(&self, url: &str) {
        self.shared.lock().webhook_url = Some(url.to_string());
    }

    /// Moves an application one step forward and delivers its callback; returns once the first
    /// attempt is answered (retries continue in the background). Fails if the application is
    /// unknown or already complete.
    pub async fn advance(&self, app_id: &str) -> anyhow::Result<()> {
        {
            let mut st = self.shared.lock();
            let app = st
                .app_mut(app_id)
                .ok_or_else(|| anyhow::anyhow!("unknown application {app_id}"))?;
            anyhow::ensure!(
                step(app, &self.shared.base),
                "application {app_id} is already complete"
            );
        }
        callbacks::send(&self.shared, app_id, true).await;
        Ok(())
    }

    /// Redelivers the application's latest status once more (a duplicate, freshly signed) and
    /// returns the answer's status (0 = connection error). Not retried. Fails if the application
    /// is unknown or no webhook URL is set.
    pub async fn resend_last_callback(&self, app_id: &str) -> anyhow::Result<u16> {
        anyhow::ensure!(
            self.application(app_id).is_some(),
            "unknown application {app_id}"
        );
        callbacks::send(&self.shared, app_id, false)
            .await
            .ok_or_else(|| anyhow::anyhow!("no webhook URL is set"))
    }

    /// All callbacks so far, oldest first.
    pub fn callbacks(&self) -> Vec<CallbackDelivery> {
        self.shared.lock().callbacks.clone()
    }

    /// All created applications, oldest first.
    pub fn applications(&self) -> Vec<Application> {
        self.shared.lock().apps.clone()
    }

    /// One application by id.
    pub fn application(&self, id: &str) -> Option<Application> {
        self.shared.lock().apps.iter().find(|a| a.id == id).cloned()
    }

    /// How many POSTs to the invite endpoint arrived (failed and idempotent repeats included).
    pub fn invite_requests(&self) -> usize {
        self.shared.lock().invite_requests
    }

    /// The next `n` API requests answer 503 and do nothing.
    pub fn fail_next(&self, n: u32) {
        self.shared.lock().fail_next = n;
    }

    /// The next `n` API requests wait 30 s, then answer 503 and do nothing (clients should time
    /// out first).
    pub fn hang_next(&self, n: u32) {
        self.shared.lock().hang_next = n;
    }

    /// While down, every API request answers 503.
    pub fn set_down(&self, down: bool) {
        self.shared.lock().down = down;
    }

    /// `true`: from now on the `Idempotency-Key` header is ignored and every invite creates a new
    /// application (see [`CertnOptions::ignore_idempotency_keys`]).
    pub fn set_ignore_idempotency_keys(&self, ignore: bool) {
        self.shared.lock().ignore_idempotency_keys = ignore;
    }

    /// Delays every invite answer by `latency` after the application is created (zero = off), so
    /// a test can kill the client between the request and the answer. Automatic progression's
    /// first callback waits for it too.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// How many applications were created with this `reference`.
    pub fn invitations_for_reference(&self, reference: &str) -> usize {
        self.shared
            .lock()
            .apps
            .iter()
            .filter(|a| a.reference.as_deref() == Some(reference))
            .count()
    }

    /// How many applications were created for this applicant email (case-insensitive).
    pub fn invitations_for_email(&self, email: &str) -> usize {
        let email = email.trim();
        self.shared
            .lock()
            .apps
            .iter()
            .filter(|a| a.applicant.email.eq_ignore_ascii_case(email))
            .count()
    }

    /// Every applicant email (lower-cased) invited more than once, with its number of
    /// applications, sorted by email: empty when no candidate was invited twice.
    pub fn emails_invited_more_than_once(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for app in &self.shared.lock().apps {
            *counts
                .entry(app.applicant.email.to_ascii_lowercase())
                .or_default() += 1;
        }
        counts.into_iter().filter(|(_, n)| *n > 1).collect()
    }
}
