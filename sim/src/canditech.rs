//! A simulator of Canditech (skills assessments).
//!
//! Canditech publishes no API, so the protocol is switchyard's own design, written down once in
//! `docs/canditech.md` (endpoints, objects, errors, rate limits, webhook events and signature).
//! This module serves exactly that on loopback and documents only what is particular to the
//! simulator:
//!
//! - One account: a fresh API key and webhook secret (`whsec_…`) per start, and the assessments
//!   of [`CanditechOptions::assessments`]. `test_url` is `{api_base}/t/{token}` and `results_url`
//!   `{api_base}/results/{invitation id}` (small HTML pages, no auth: they stand for Canditech's
//!   candidate and reviewer pages).
//! - Progression. With [`CanditechOptions::step_delay`] `Some(d)`, a new invitation gets
//!   `invitation.sent` about 50 ms after the create response, then `test.started`, then
//!   `test.completed` (score [`CanditechOptions::score`]) one `d` apart, then
//!   [`CanditechOptions::auto_verdict`] (if any) after another `d`. With `None` nothing happens
//!   on its own: tests drive it with [`CanditechSim::send`], [`CanditechSim::start_test`],
//!   [`CanditechSim::complete`], [`CanditechSim::advance`] (whichever of those is next) and
//!   [`CanditechSim::give_verdict`] (a second call with the other verdict is a reviewer changing
//!   their mind: `verdict.changed`).
//! - Webhooks go to the invitation's `callback_url`, else to [`CanditechSim::set_webhook_url`],
//!   and only to loopback hosts (anything else is recorded as a failed attempt `0`, never
//!   contacted). Retries: 3 more after base×1, base×2, base×3
//!   ([`CanditechOptions::callback_retry_base`]) on any non-2xx or connection error.
//!   [`CanditechSim::rotate_webhook_secret`] starts a rotation: both secrets sign until
//!   [`CanditechSim::finish_rotation`].
//! - Rate limit: [`CanditechOptions::rate_limit_per_minute`] (off by default).
//! - Failure injection on `/v1/` requests, checked in this order before auth:
//!   [`CanditechSim::hang_next`] (wait 30 s, then 503), [`CanditechSim::set_down`] (503),
//!   [`CanditechSim::fail_next`] (503), [`CanditechSim::throttle_next`] (429 + `Retry-After`).
//!   Injected failures do nothing but still count in [`CanditechSim::invite_requests`].
//!   [`CanditechSim::set_latency`] delays every `/v1/` answer.
//! - [`CanditechOptions::ignore_idempotency_keys`]: a repeated `Idempotency-Key` creates a new
//!   invitation (a vendor that ignores them), so clients must look up by `reference`.

mod api;
mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::http_util::{self, ServerHandle};

pub use webhooks::sign;

/// Header carrying `t=<unix>,v1=<hex>[,v1=<hex>]`.
pub const SIGNATURE_HEADER: &str = "Canditech-Signature";
/// Header repeating the body's event `id`.
pub const EVENT_ID_HEADER: &str = "Canditech-Event-Id";
/// Header repeating the body's event `type`.
pub const EVENT_TYPE_HEADER: &str = "Canditech-Event-Type";

/// Timeout of one webhook attempt.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// An assessment the simulated account offers.
#[derive(Clone, Debug, PartialEq)]
pub struct AssessmentSpec {
    /// E.g. `Python senior`.
    pub name: String,
    /// How long the test takes.
    pub duration_minutes: u32,
    /// The highest possible score.
    pub max_score: u32,
}

impl AssessmentSpec {
    /// An assessment named `name`.
    pub fn new(name: &str, duration_minutes: u32, max_score: u32) -> Self {
        AssessmentSpec {
            name: name.to_string(),
            duration_minutes,
            max_score,
        }
    }
}

/// A reviewer's decision on a completed test session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `thumbs_up`.
    ThumbsUp,
    /// `thumbs_down`.
    ThumbsDown,
}

impl Verdict {
    /// The wire value, `thumbs_up` or `thumbs_down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::ThumbsUp => "thumbs_up",
            Verdict::ThumbsDown => "thumbs_down",
        }
    }
}

/// How the simulated Canditech account is set up.
#[derive(Clone, Debug)]
pub struct CanditechOptions {
    /// The account's assessments (ids are generated).
    pub assessments: Vec<AssessmentSpec>,
    /// `Some(d)`: invitations progress on their own, one step every `d`.
    /// `None`: only through the scripted methods.
    pub step_delay: Option<Duration>,
    /// The score a completed test gets in automatic mode and through [`CanditechSim::advance`]
    /// (capped at the assessment's maximum).
    pub score: f64,
    /// The verdict automatic mode gives after completion; `None`: no verdict.
    pub auto_verdict: Option<Verdict>,
    /// The reviewer's display name for verdicts given without one.
    pub reviewer: String,
    /// A repeated `Idempotency-Key` creates a new invitation anyway.
    pub ignore_idempotency_keys: bool,
    /// Base delay of webhook retries (attempt k waits base × k).
    pub callback_retry_base: Duration,
    /// Requests per minute per key before 429; `None`: unlimited.
    pub rate_limit_per_minute: Option<u32>,
}

impl Default for CanditechOptions {
    /// Assessments `Python senior` (60 min, max 100), `JavaScript mid` (45, 50) and
    /// `Customer support` (25, 40); a step every 300 ms; score 87; thumbs up by
    /// `Riley Reviewer`; idempotency keys honoured; retry base 200 ms; no rate limit.
    fn default() -> Self {
        CanditechOptions {
            assessments: vec![
                AssessmentSpec::new("Python senior", 60, 100),
                AssessmentSpec::new("JavaScript mid", 45, 50),
                AssessmentSpec::new("Customer support", 25, 40),
            ],
            step_delay: Some(Duration::from_millis(300)),
            score: 87.0,
            auto_verdict: Some(Verdict::ThumbsUp),
            reviewer: "Riley Reviewer".into(),
            ignore_idempotency_keys: false,
            callback_retry_base: Duration::from_millis(200),
            rate_limit_per_minute: None,
        }
    }
}

/// An assessment as `GET /v1/assessments` serves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// `asm_…`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Test length.
    pub duration_minutes: u32,
    /// Highest score.
    pub max_score: u32,
}

/// The assessment an invitation is for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssessmentRef {
    /// `asm_…`.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// The invited person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateInfo {
    /// Full name (may be empty).
    pub name: String,
    /// Where the invitation goes.
    pub email: String,
}

/// A reviewer's decision as the API serves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictInfo {
    /// `thumbs_up` or `thumbs_down`.
    pub decision: String,
    /// Reviewer's display name.
    pub reviewer: String,
    /// When it was given, RFC 3339.
    pub given_at: String,
    /// 1 for the first decision, +1 per change.
    pub revision: u32,
}

/// An invitation, exactly as the API and webhooks serve it (see `docs/canditech.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invitation {
    /// `inv_…`.
    pub id: String,
    /// The assessment.
    pub assessment: AssessmentRef,
    /// The candidate.
    pub candidate: CandidateInfo,
    /// The caller's reference.
    pub reference: Option<String>,
    /// Where this invitation's webhooks go.
    pub callback_url: Option<String>,
    /// `invited`, `started` or `completed`.
    pub status: String,
    /// The candidate's test link.
    pub test_url: String,
    /// RFC 3339.
    pub created_at: String,
    /// When `invitation.sent` happened.
    pub sent_at: Option<String>,
    /// When `test.started` happened.
    pub started_at: Option<String>,
    /// When `test.completed` happened.
    pub completed_at: Option<String>,
    /// Set once completed.
    pub score: Option<f64>,
    /// The assessment's maximum.
    pub max_score: u32,
    /// Set once completed.
    pub results_url: Option<String>,
    /// Set once a reviewer decided.
    pub verdict: Option<VerdictInfo>,
}

/// One webhook event and its delivery attempts.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The invitation it is about.
    pub invitation_id: String,
    /// `evt_…` (the same on retries and resends).
    pub event_id: String,
    /// E.g. `test.completed`.
    pub event_type: String,
    /// Where it went; `None` when neither the invitation nor the account had a URL (no attempt).
    pub url: Option<String>,
    /// The exact body (identical on every attempt).
    pub body: String,
    /// HTTP status of each attempt, in order; 0 = connection error, timeout or refused
    /// (non-loopback) URL.
    pub attempts: Vec<u16>,
}

/// A running Canditech simulator. Clones share the server and state; the server stops when the
/// last clone is dropped, and automatic progression and retries stop with it.
#[derive(Clone)]
pub struct CanditechSim {
    shared: Arc<Shared>,
    server: Arc<ServerHandle>,
}

pub(crate) struct Shared {
    api_key: String,
    base: String,
    assessments: Vec<Assessment>,
    opts: CanditechOptions,
    client: reqwest::Client,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a simulator's state dangerously
        // half-written; keep serving rather than cascading it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct State {
    /// Current secret first, then the one being rotated out.
    secrets: Vec<String>,
    invitations: Vec<Invitation>,
    idempotency: HashMap<String, String>,
    invite_requests: usize,
    webhook_url: Option<String>,
    deliveries: Vec<Delivery>,
    fail_next: u32,
    hang_next: u32,
    down: bool,
    throttle_next: u32,
    throttle_retry_after: u64,
    latency: Duration,
    /// Start of the current rate-limit window and the requests in it.
    window: (Instant, u32),
}

impl State {
    fn invitation_mut(&mut self, id: &str) -> anyhow::Result<&mut Invitation> {
        self.invitations
            .iter_mut()
            .find(|i| i.id == id)
            .with_context(|| format!("unknown invitation {id}"))
    }
}

/// What a scripted step does to an invitation.
enum Step {
    Send,
    Start,
    Complete(f64),
    Verdict(Verdict, String),
}

/// Applies `step` to `inv` and returns the event type plus, for a changed verdict, the verdict
/// it replaced. Fails (changing nothing) when the step is out of order.
fn apply(
    inv: &mut Invitation,
    step: Step,
    base: &str,
) -> anyhow::Result<(&'static str, Option<VerdictInfo>)> {
    let now = http_util::now_rfc3339();
    let id = inv.id.clone();
    match step {
        Step::Send => {
            anyhow::ensure!(
                inv.status == "invited" && inv.sent_at.is_none(),
                "invitation {id} was already sent"
            );
            inv.sent_at = Some(now);
            Ok(("invitation.sent", None))
        }
        Step::Start => {
            anyhow::ensure!(
                inv.status == "invited" && inv.sent_at.is_some(),
                "invitation {id} is {} (sent: {}) and cannot start",
                inv.status,
                inv.sent_at.is_some()
            );
            inv.status = "started".into();
            inv.started_at = Some(now);
            Ok(("test.started", None))
        }
        Step::Complete(score) => {
            anyhow::ensure!(
                inv.status == "started",
                "invitation {id} is {} and cannot complete",
                inv.status
            );
            anyhow::ensure!(
                score.is_finite() && score >= 0.0 && score <= f64::from(inv.max_score),
                "score {score} is outside 0..={}",
                inv.max_score
            );
            inv.status = "completed".into();
            inv.completed_at = Some(now);
            inv.score = Some(score);
            inv.results_url = Some(format!("{base}/results/{id}"));
            Ok(("test.completed", None))
        }
        Step::Verdict(verdict, reviewer) => {
            anyhow::ensure!(
                inv.status == "completed",
                "invitation {id} is {} and cannot get a verdict",
                inv.status
            );
            let previous = inv.verdict.clone();
            if let Some(p) = &previous {
                anyhow::ensure!(
                    p.decision != verdict.as_str(),
                    "invitation {id} already has {}",
                    p.decision
                );
            }
            inv.verdict = Some(VerdictInfo {
                decision: verdict.as_str().to_string(),
                reviewer,
                given_at: now,
                revision: previous.as_ref().map_or(1, |p| p.revision + 1),
            });
            Ok(match previous {
                None => ("verdict.given", None),
                Some(p) => ("verdict.changed", Some(p)),
            })
        }
    }
}

impl CanditechSim {
    /// Starts a simulator on `127.0.0.1:<random port>` with a fresh API key and webhook secret.
    pub async fn start(opts: CanditechOptions) -> anyhow::Result<CanditechSim> {
        let listener = http_util::bind_loopback().await?;
        let base = format!("http://{}", listener.local_addr()?);
        let assessments = opts
            .assessments
            .iter()
            .map(|a| Assessment {
                id: format!("asm_{}", http_util::random_hex(16)),
                name: a.name.clone(),
                duration_minutes: a.duration_minutes,
                max_score: a.max_score,
            })
            .collect();
        let shared = Arc::new(Shared {
            api_key: format!("ck_live_{}", http_util::random_alnum(36)),
            base,
            assessments,
            opts,
            client: http_util::http_client(CALLBACK_TIMEOUT)?,
            state: Mutex::new(State {
                secrets: vec![new_secret()],
                invitations: Vec::new(),
                idempotency: HashMap::new(),
                invite_requests: 0,
                webhook_url: None,
                deliveries: Vec::new(),
                fail_next: 0,
                hang_next: 0,
                down: false,
                throttle_next: 0,
                throttle_retry_after: 1,
                latency: Duration::ZERO,
                window: (Instant::now(), 0),
            }),
        });
        let server = http_util::serve(listener, api::router(shared.clone()))?;
        tracing::debug!(addr = %server.addr(), "canditech sim started");
        Ok(CanditechSim {
            shared,
            server: Arc::new(server),
        })
    }

    /// The API base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn api_base(&self) -> String {
        self.server.base_url()
    }

    /// The account's API key (`Authorization: Bearer <key>`).
    pub fn api_key(&self) -> String {
        self.shared.api_key.clone()
    }

    /// The current webhook secret (the key of `Canditech-Signature`).
    pub fn webhook_secret(&self) -> String {
        self.shared.lock().secrets[0].clone()
    }

    /// Starts a secret rotation: a new secret becomes current and webhooks carry a `v1` for it
    /// and one for the previous secret until [`CanditechSim::finish_rotation`]. Returns the new
    /// secret.
    pub fn rotate_webhook_secret(&self) -> String {
        let secret = new_secret();
        let mut st = self.shared.lock();
        st.secrets.truncate(1);
        st.secrets.insert(0, secret.clone());
        secret
    }

    /// Ends a rotation: only the current secret signs.
    pub fn finish_rotation(&self) {
        self.shared.lock().secrets.truncate(1);
    }

    /// The account's webhook URL (*Settings > Webhooks*), used for invitations created without a
    /// `callback_url`.
    pub fn set_webhook_url(&self, url: &str) {
        self.shared.lock().webhook_url = Some(url.to_string());
    }

    /// The account's assessments, as `GET /v1/assessments` lists them.
    pub fn assessments(&self) -> Vec<Assessment> {
        self.shared.assessments.clone()
    }

    /// The id of the assessment named `name` (exact), if any.
    pub fn assessment_id(&self, name: &str) -> Option<String> {
        self.shared
            .assessments
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.id.clone())
    }

    /// Every invitation, oldest first.
    pub fn invitations(&self) -> Vec<Invitation> {
        self.shared.lock().invitations.clone()
    }

    /// One invitation by id.
    pub fn invitation(&self, id: &str) -> Option<Invitation> {
        self.shared
            .lock()
            .invitations
            .iter()
            .find(|i| i.id == id)
            .cloned()
    }

    /// How many invitations carry exactly this `reference`.
    pub fn invitations_for_reference(&self, reference: &str) -> usize {
        self.shared
            .lock()
            .invitations
            .iter()
            .filter(|i| i.reference.as_deref() == Some(reference))
            .count()
    }

    /// How many invitations went to this email (case-insensitive).
    pub fn invitations_for_email(&self, email: &str) -> usize {
        self.shared
            .lock()
            .invitations
            .iter()
            .filter(|i| i.candidate.email.eq_ignore_ascii_case(email.trim()))
            .count()
    }

    /// How many `POST /v1/invitations` arrived (failed, throttled and idempotent repeats
    /// included).
    pub fn invite_requests(&self) -> usize {
        self.shared.lock().invite_requests
    }

    /// Every webhook event so far, oldest first, with its attempts.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// The invitation email goes out: `invitation.sent`. Returns the first attempt's status
    /// (0 = no answer or no URL); retries continue in the background.
    pub async fn send(&self, invitation_id: &str) -> anyhow::Result<u16> {
        self.step(invitation_id, Step::Send).await
    }

    /// The candidate opens the test: `test.started`.
    pub async fn start_test(&self, invitation_id: &str) -> anyhow::Result<u16> {
        self.step(invitation_id, Step::Start).await
    }

    /// The candidate submits with `score` (0 ≤ score ≤ max): `test.completed`.
    pub async fn complete(&self, invitation_id: &str, score: f64) -> anyhow::Result<u16> {
        self.step(invitation_id, Step::Complete(score)).await
    }

    /// Whichever of send, start and complete (with [`CanditechOptions::score`]) is next. Fails on
    /// a completed invitation.
    pub async fn advance(&self, invitation_id: &str) -> anyhow::Result<u16> {
        let step = next_step(&self.shared, invitation_id)?;
        self.step(invitation_id, step).await
    }

    /// The default reviewer decides: `verdict.given` the first time, `verdict.changed` when the
    /// decision differs from the current one. Fails unless completed, and when the verdict is
    /// already this one.
    pub async fn give_verdict(&self, invitation_id: &str, verdict: Verdict) -> anyhow::Result<u16> {
        let reviewer = self.shared.opts.reviewer.clone();
        self.give_verdict_by(invitation_id, verdict, &reviewer)
            .await
    }

    /// [`CanditechSim::give_verdict`] by a named reviewer.
    pub async fn give_verdict_by(
        &self,
        invitation_id: &str,
        verdict: Verdict,
        reviewer: &str,
    ) -> anyhow::Result<u16> {
        self.step(invitation_id, Step::Verdict(verdict, reviewer.to_string()))
            .await
    }

    async fn step(&self, invitation_id: &str, step: Step) -> anyhow::Result<u16> {
        let out = webhooks::prepare(&self.shared, invitation_id, step)?;
        Ok(webhooks::deliver(self.shared.clone(), out, true).await)
    }

    /// Sends the invitation's latest event again (the dashboard's "Resend": same body and event
    /// id, fresh signature), once, without retries; recorded as a new delivery. Returns the
    /// status (0 = no answer). Fails if the invitation has had no event.
    pub async fn resend_last_callback(&self, invitation_id: &str) -> anyhow::Result<u16> {
        let out = webhooks::prepare_resend(&self.shared, invitation_id)?;
        Ok(webhooks::deliver(self.shared.clone(), out, false).await)
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

    /// The next `n` API requests answer 429 with `Retry-After: <retry_after_secs>`.
    pub fn throttle_next(&self, n: u32, retry_after_secs: u64) {
        let mut st = self.shared.lock();
        st.throttle_next = n;
        st.throttle_retry_after = retry_after_secs;
    }

    /// Every API answer is delayed by `latency` (zero: none).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }
}

fn new_secret() -> String {
    format!("whsec_{}", http_util::random_alnum(32))
}

fn next_step(shared: &Shared, invitation_id: &str) -> anyhow::Result<Step> {
    let mut st = shared.lock();
    let inv = st.invitation_mut(invitation_id)?;
    Ok(match (inv.status.as_str(), inv.sent_at.is_some()) {
        ("invited", false) => Step::Send,
        ("invited", true) => Step::Start,
        ("started", _) => Step::Complete(shared.opts.score.min(f64::from(inv.max_score))),
        (status, _) => anyhow::bail!("invitation {invitation_id} is {status} and cannot advance"),
    })
}
