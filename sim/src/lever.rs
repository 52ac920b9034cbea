//! A simulator of Lever (the ATS): REST API v1 under `{base}/v1`, Lever's OAuth authorization
//! server under `{base}/oauth`, and Lever-style signed webhooks.
//!
//! # API (`http://127.0.0.1:PORT/v1`)
//! Every request needs HTTP Basic auth with an API key of the account as username and an empty
//! password, or `Authorization: Bearer <token>` with an access token from the OAuth flow below
//! that has not expired and whose grant is not revoked (or the fixed [`LeverSim::oauth_token`]);
//! anything else gets `401 {"code":"Unauthorized","message":"..."}` (counted by
//! [`LeverSim::unauthorized_api_calls`]). Then the credential must carry the route's permission
//! ([`permissions`]: an API key those it was generated with, an OAuth token the scopes of its
//! grant), else `403 {"code":"Forbidden","message":"Missing required permission: <scope>"}`
//! (counted by [`LeverSim::forbidden_api_calls`]). Errors use Lever's shape
//! `{"code":"ResourceNotFound","message":"..."}`; malformed JSON gets 400 `BadRequest`. A
//! `perform_as` query parameter is accepted and ignored.
//!
//! | method + path | answer |
//! | --- | --- |
//! | `GET /v1/opportunities/:id[?expand=applications]` | `{"data":{id,name,contact,emails,phones:[{type,value}],tags,stage,stageChanges,links,applications,archived,archivedAt,...}}`; `applications` holds ids, or with `expand=applications` objects `{id,posting,type:"posting",...}` |
//! | `GET /v1/postings[?state&limit&offset]` | `{"data":[<posting>],"hasNext":bool,"next"?:token}`, oldest first; `state` one of Lever's six (all simulated postings are `published`); `limit`/`offset` as for stages |
//! | `GET /v1/postings/:id` | `{"data":{id,text,state:"published",tags,categories,...}}` |
//! | `GET /v1/stages[?limit&offset]` | `{"data":[{id,text}],"hasNext":bool,"next"?:token}`; `limit` 1–100 (default 100), `offset` = a previous `next` |
//! | `POST /v1/opportunities/:id/addTags` / `removeTags` | body `{"tags":[..]}` → 200 `{"data":<opportunity>}` |
//! | `POST /v1/opportunities/:id/addLinks` / `removeLinks` | body `{"links":[..]}` → 200 `{"data":<opportunity>}` |
//! | `POST /v1/opportunities/:id/notes` | body `{"value","secret"?,"score"? (1–4),"notifyFollowers"?}` → 201 `{"data":{"noteId"}}` |
//! | `GET /v1/opportunities/:id/notes` | `{"data":[{id,value,secret,score,createdAt}],"hasNext":false}` |
//! | `PUT /v1/opportunities/:id/stage` | body `{"stage":<stage id>}` → 200 `{"data":<opportunity>}`; fires `candidateStageChange` |
//!
//! Failure injection: [`LeverSim::fail_next`] (next n API requests answer a given status),
//! [`LeverSim::lose_next_note_answers`] (a note created, its answer lost) and
//! [`LeverSim::set_rate_limit`] (token bucket per key; over it → 429 with `Retry-After: 1`).
//! Every API request is recorded in [`LeverSim::request_log`], failed ones included.
//!
//! # OAuth (authorization-code flow, as Lever's partner apps use it)
//! Lever's real endpoints are `https://auth.lever.co/authorize` and
//! `POST https://auth.lever.co/oauth/token` (an Auth0 tenant); the simulator serves them at
//! [`LeverSim::oauth_authorize_url`] (`{base}/oauth/authorize`), [`LeverSim::oauth_token_url`]
//! (`{base}/oauth/token`) and [`LeverSim::oauth_revoke_url`] (`{base}/oauth/revoke`). A client
//! (app) is registered with [`LeverSim::register_oauth_client`]`(redirect_uri)` →
//! `(client_id, client_secret)`.
//!
//! - `GET /oauth/authorize?client_id&redirect_uri&response_type=code&state&scope&audience`:
//!   unknown or missing `client_id`, or a `redirect_uri` not exactly the registered one → `400`
//!   HTML page, no redirect. Otherwise the simulated user logs in and decides at once, and the
//!   answer is `302` to `redirect_uri` with, added to its query:
//!   `code=<one-time code>&state=<state>` (accepted), or
//!   `error=access_denied&error_description=...&state=...` (the user clicked Deny, see
//!   [`LeverSim::set_oauth_user_denies`]), or `error=unsupported_response_type&...` when
//!   `response_type` is not `code`. `state` is echoed only when given. `scope` is space-separated
//!   and recorded ([`LeverSim::authorize_requests`]); the user accepts it whole, and it is what
//!   every token of the grant may do on the API. `audience` is recorded, not checked.
//! - `POST /oauth/token`, body `application/x-www-form-urlencoded` or JSON (`Content-Type:
//!   application/json`); client credentials as HTTP Basic (`client_id:client_secret`, each
//!   form-urlencoded, RFC 6749 §2.3.1; preferred when present) or `client_id` + `client_secret` in
//!   the body.
//!   - `grant_type=authorization_code&code&redirect_uri`: the code is single-use, bound to the
//!     client and the redirect URI, and expires 60 s after it was issued
//!     ([`LeverSim::set_auth_code_ttl`]).
//!   - `grant_type=refresh_token&refresh_token`: issues a new access token **and a new refresh
//!     token**; the refresh token presented stops working (rotation; there is no grace period
//!     and no reuse detection: tokens issued before stay valid). Two concurrent refreshes with
//!     the same token: one wins, the other gets `invalid_grant`.
//!
//!   Success → `200 {"access_token","token_type":"Bearer","expires_in" (whole seconds),
//!   "scope" (as requested),"refresh_token" (only if the scope held `offline_access`)}` with
//!   `Cache-Control: no-store`. Access tokens live 3600 s ([`LeverSim::set_access_token_ttl`],
//!   [`LeverSim::force_expire_access_tokens`]). Errors are RFC 6749 §5.2
//!   `{"error","error_description"}`: `401 invalid_client` (missing, unknown or wrong client
//!   credentials); `400 invalid_grant` (unknown, used, expired or foreign code, mismatched
//!   `redirect_uri`; unknown, rotated-away, revoked or foreign refresh token); `400
//!   invalid_request` (missing parameter, bad body); `400 unsupported_grant_type`. Counted by
//!   [`LeverSim::token_requests`].
//! - `POST /oauth/revoke` (RFC 7009), body `token` (an access or refresh token) plus client
//!   credentials as above → `200` (also for an unknown token); revokes the whole grant the token
//!   belongs to: its access and refresh tokens. `401 invalid_client`; a token of another client →
//!   `400 unauthorized_client`.
//!
//! A grant is one successful code exchange; every token issued from it (refreshes included)
//! belongs to it. [`LeverSim::revoke_app`]`(client_id)` is the user clicking "Revoke Access" in
//! Lever's Authorized Apps: every grant of that client is revoked at once (API → 401, refresh →
//! `invalid_grant`); authorizing again starts a new grant. Nothing here touches the API key.
//!
//! # Webhooks
//! [`LeverSim::register_webhook`] returns the webhook's own signing token. A delivery is a POST
//! with `Content-Type: application/json`, `User-Agent: Lever-Webhooks` and the body
//! `{"id","triggeredAt"(ms),"event","token"(48 hex chars),"signature","data"}` where
//! `signature = hex(HMAC-SHA256(key = signing token, msg = token + triggeredAt as decimal))`
//! (see [`sign`]). Any non-2xx answer (or a connection error, recorded as status 0) is retried in the
//! background up to 5 more times with the *same* body, waiting base, 2×base, 4×base, 8×base,
//! 16×base (base 250 ms by default, see [`LeverSim::set_webhook_retry_base`]).

mod api;
mod oauth;
pub mod permissions;
mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::http_util::{self, ServerHandle};

pub use oauth::{AuthorizeRequest, TokenRequests, OFFLINE_ACCESS};
pub use webhooks::sign;

/// The stages a fresh simulator starts with, in pipeline order.
pub const DEFAULT_STAGES: [&str; 6] = [
    "New applicant",
    "Reached out",
    "Phone screen",
    "On-site interview",
    "Background Check",
    "Offer",
];

/// The event Lever sends when an opportunity changes stage.
pub const STAGE_CHANGE_EVENT: &str = "candidateStageChange";

/// Timeout of one webhook delivery attempt.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A running Lever simulator. Cloning shares the same server and state; the server stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct LeverSim {
    shared: Arc<Shared>,
    server: Arc<ServerHandle>,
}

/// What tests pass to [`LeverSim::add_opportunity`].
#[derive(Clone, Debug, Default)]
pub struct NewOpportunity {
    /// The candidate's name.
    pub name: String,
    /// Email addresses (may be empty, to test the "no email" path).
    pub emails: Vec<String>,
    /// Phone numbers (served as `{"type":"mobile","value":..}`).
    pub phones: Vec<String>,
    /// Tags set on the opportunity itself (the posting's tags are added to these).
    pub tags: Vec<String>,
    /// The posting the candidate applied to, if any.
    pub posting_id: Option<String>,
}

/// A snapshot of an opportunity, as tests inspect it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Opportunity {
    /// Opportunity id.
    pub id: String,
    /// Candidate name.
    pub name: String,
    /// Email addresses.
    pub emails: Vec<String>,
    /// Phone numbers.
    pub phones: Vec<String>,
    /// Tags, including those inherited from the posting.
    pub tags: Vec<String>,
    /// Id of the current stage.
    pub stage: String,
    /// Links (as added by `addLinks`).
    pub links: Vec<String>,
    /// Notes (as added by `POST .../notes`), oldest first.
    pub notes: Vec<Note>,
    /// The posting applied to, if any.
    pub posting_id: Option<String>,
}

/// A note on an opportunity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// Note id.
    pub id: String,
    /// Note text.
    pub value: String,
    /// Whether the note is secret (visible to privileged users only).
    pub secret: bool,
    /// Score 1–4 if one was given.
    #[serde(default)]
    pub score: Option<u8>,
    /// Creation time, ms since the epoch.
    pub created_at: u64,
}

/// One API request as the simulator received it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path without the query, e.g. `/v1/opportunities/<id>/addLinks`.
    pub path: String,
    /// The body as JSON (`null` when empty, a JSON string when it was not valid JSON).
    pub body: serde_json::Value,
    /// The status the simulator answered (injected failures and 401/429 included).
    pub status: u16,
}

/// One webhook delivery (one event to one URL) and all its attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Target URL.
    pub url: String,
    /// Event name, e.g. `candidateStageChange`.
    pub event: String,
    /// The exact body sent (identical on every attempt).
    pub body: String,
    /// Status of each attempt so far, in order; 0 = connection error or timeout.
    pub attempts: Vec<u16>,
}

/// State shared by the public handle, the API handlers and the webhook sender.
pub(crate) struct Shared {
    api_key: String,
    oauth_token: String,
    client: reqwest::Client,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("lever sim state lock poisoned")
    }
}

#[derive(Clone, Debug)]
struct Stage {
    id: String,
    text: String,
}

#[derive(Clone, Debug)]
struct Posting {
    id: String,
    text: String,
    tags: Vec<String>,
    created_at: u64,
    /// Creation order (postings made in the same millisecond keep it in `GET /postings`).
    seq: usize,
}

#[derive(Clone, Debug)]
struct OppRecord {
    opp: Opportunity,
    contact_id: String,
    application_id: String,
    created_at: u64,
    updated_at: u64,
    /// (stage id, time in ms)
    stage_changes: Vec<(String, u64)>,
}

#[derive(Clone, Debug)]
struct Webhook {
    event: String,
    url: String,
    signing_token: String,
}

struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct State {
    stages: Vec<Stage>,
    postings: HashMap<String, Posting>,
    opps: HashMap<String, OppRecord>,
    webhooks: Vec<Webhook>,
    log: Vec<LoggedRequest>,
    /// (remaining count, status)
    fail_next: (u32, u16),
    /// Notes still to create whose answer is then lost (see [`LeverSim::lose_next_note_answers`]).
    lose_note_answers: u32,
    rate: Option<TokenBucket>,
    deliveries: Vec<Delivery>,
    retry_base: Duration,
    oauth: oauth::OAuth,
    /// API requests answered 401.
    unauthorized: usize,
    /// API requests answered 403 (a permission the credential lacks).
    forbidden: usize,
    /// Every API key generated in this account → its permissions.
    api_keys: HashMap<String, Vec<String>>,
    /// The permissions of the fixed [`LeverSim::oauth_token`].
    oauth_token_permissions: Vec<String>,
}

impl State {
    /// Sets the stage of `opp_id` and returns the previous stage id.
    fn set_stage(&mut self, opp_id: &str, stage_id: &str) -> Result<String, StageError> {
        if !self.stages.iter().any(|s| s.id == stage_id) {
            return Err(StageError::UnknownStage);
        }
        let rec = self
            .opps
            .get_mut(opp_id)
            .ok_or(StageError::UnknownOpportunity)?;
        let now = http_util::now_ms();
        let from = std::mem::replace(&mut rec.opp.stage, stage_id.to_string());
        rec.stage_changes.push((stage_id.to_string(), now));
        rec.updated_at = now;
        Ok(from)
    }
}

#[derive(Debug, PartialEq)]
enum StageError {
    UnknownOpportunity,
    UnknownStage,
}

impl LeverSim {
    /// Starts a simulator on `127.0.0.1:<random port>` with the default stages and a fresh API key.
    pub async fn start() -> anyhow::Result<LeverSim> {
        let stages = DEFAULT_STAGES
            .iter()
            .map(|t| Stage {
                id: http_util::new_id(),
                text: (*t).to_string(),
            })
            .collect();
        let api_key = http_util::random_alnum(40);
        let all = || permissions::ALL.map(String::from).to_vec();
        let shared = Arc::new(Shared {
            api_key: api_key.clone(),
            oauth_token: http_util::random_alnum(48),
            client: http_util::http_client(DELIVERY_TIMEOUT)?,
            state: Mutex::new(State {
                stages,
                postings: HashMap::new(),
                opps: HashMap::new(),
                webhooks: Vec::new(),
                log: Vec::new(),
                fail_next: (0, 500),
                lose_note_answers: 0,
                rate: None,
                deliveries: Vec::new(),
                retry_base: Duration::from_millis(250),
                oauth: oauth::OAuth::default(),
                unauthorized: 0,
                forbidden: 0,
                api_keys: HashMap::from([(api_key, all())]),
                oauth_token_permissions: all(),
            }),
        });
        let server = http_util::serve_loopback(api::router(shared.clone())).await?;
        tracing::debug!(addr = %server.addr(), "lever sim started");
        Ok(LeverSim {
            shared,
            server: Arc::new(server),
        })
    }

    /// The API base URL, `http://127.0.0.1:PORT/v1` (no trailing slash).
    pub fn api_base(&self) -> String {
        format!("{}/v1", self.server.base_url())
    }

    /// The account's first API key (HTTP Basic username, empty password), generated with every
    /// permission of [`permissions::ALL`]. Tests that stand for a customer following the docs
    /// use [`LeverSim::generate_api_key`] instead.
    pub fn api_key(&self) -> String {
        self.shared.api_key.clone()
    }

    /// Generates a new API key carrying exactly `permissions` (scope strings such as
    /// [`permissions::OPPORTUNITIES_READ`]), as a Super Admin ticking those boxes would.
    pub fn generate_api_key(&self, permissions: &[&str]) -> String {
        let key = http_util::random_alnum(40);
        self.set_api_key_permissions(&key, permissions);
        key
    }

    /// Replaces the permissions of API key `key` (the admin edits the key in Lever's settings).
    pub fn set_api_key_permissions(&self, key: &str, permissions: &[&str]) {
        let permissions = permissions.iter().map(|p| (*p).to_string()).collect();
        self.shared
            .lock()
            .api_keys
            .insert(key.to_string(), permissions);
    }

    /// Adds `permission` to API key `key` (the admin ticks one more box); false for an unknown key.
    pub fn grant_api_key_permission(&self, key: &str, permission: &str) -> bool {
        let mut st = self.shared.lock();
        let Some(granted) = st.api_keys.get_mut(key) else {
            return false;
        };
        push_unique(granted, permission.to_string());
        true
    }

    /// How many API requests were answered 403 so far (a permission the credential lacks).
    pub fn forbidden_api_calls(&self) -> usize {
        self.shared.lock().forbidden
    }

    /// A fixed OAuth access token of this account (sent as `Authorization: Bearer`), for tests
    /// that need a Bearer token without running the OAuth flow. It belongs to no OAuth client:
    /// it never expires, carries every permission of [`permissions::ALL`], and neither
    /// [`LeverSim::revoke_app`] nor `/oauth/revoke` affects it.
    pub fn oauth_token(&self) -> String {
        self.shared.oauth_token.clone()
    }

    /// `http://127.0.0.1:PORT/oauth/authorize`, standing for `https://auth.lever.co/authorize`.
    pub fn oauth_authorize_url(&self) -> String {
        format!("{}/oauth/authorize", self.server.base_url())
    }

    /// `http://127.0.0.1:PORT/oauth/token`, standing for `https://auth.lever.co/oauth/token`.
    pub fn oauth_token_url(&self) -> String {
        format!("{}/oauth/token", self.server.base_url())
    }

    /// `http://127.0.0.1:PORT/oauth/revoke` (RFC 7009 token revocation).
    pub fn oauth_revoke_url(&self) -> String {
        format!("{}/oauth/revoke", self.server.base_url())
    }

    /// Registers an OAuth client (a partner app) whose only redirect URI is `redirect_uri` (matched
    /// exactly) and returns its `(client_id, client_secret)`.
    pub fn register_oauth_client(&self, redirect_uri: &str) -> (String, String) {
        self.shared.lock().oauth.register(redirect_uri)
    }

    /// When true, the simulated user clicks "Deny" on the consent screen: a valid authorize
    /// request is redirected with `error=access_denied` instead of a code. Default false.
    pub fn set_oauth_user_denies(&self, deny: bool) {
        self.shared.lock().oauth.user_denies = deny;
    }

    /// Lifetime of access tokens issued from now on (default 3600 s, as Lever's).
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        self.shared.lock().oauth.access_ttl = ttl;
    }

    /// Lifetime of authorization codes issued from now on (default 60 s).
    pub fn set_auth_code_ttl(&self, ttl: Duration) {
        self.shared.lock().oauth.code_ttl = ttl;
    }

    /// Makes every access token issued so far expire now; refresh tokens keep working.
    pub fn force_expire_access_tokens(&self) {
        self.shared.lock().oauth.expire_access_tokens();
    }

    /// The user clicks "Revoke Access" on this app in Lever's Authorized Apps: every access and
    /// refresh token ever issued to `client_id` stops working at once. Returns how many grants
    /// (user authorizations) were still active. The app can be authorized again afterwards.
    pub fn revoke_app(&self, client_id: &str) -> usize {
        self.shared.lock().oauth.revoke_client(client_id)
    }

    /// Requests to the token endpoint so far, by grant type.
    pub fn token_requests(&self) -> TokenRequests {
        self.shared.lock().oauth.token_requests
    }

    /// Every authorize request with a valid client and redirect URI so far, oldest first, with
    /// the scopes asked for.
    pub fn authorize_requests(&self) -> Vec<AuthorizeRequest> {
        self.shared.lock().oauth.authorize_log.clone()
    }

    /// How many API requests (`/v1/...`) were answered 401 so far (bad, expired or revoked
    /// credentials, and injected 401s).
    pub fn unauthorized_api_calls(&self) -> usize {
        self.shared.lock().unauthorized
    }

    /// Adds a stage at the end of the pipeline and returns its id.
    pub fn add_stage(&self, name: &str) -> String {
        let id = http_util::new_id();
        self.shared.lock().stages.push(Stage {
            id: id.clone(),
            text: name.to_string(),
        });
        id
    }

    /// The id of the first stage named exactly `name`.
    pub fn stage_id(&self, name: &str) -> Option<String> {
        let st = self.shared.lock();
        st.stages
            .iter()
            .find(|s| s.text == name)
            .map(|s| s.id.clone())
    }

    /// Adds a published posting with these tags and returns its id.
    pub fn add_posting(&self, text: &str, tags: &[&str]) -> String {
        let id = http_util::new_id();
        let mut st = self.shared.lock();
        let posting = Posting {
            id: id.clone(),
            text: text.to_string(),
            tags: tags.iter().map(|t| (*t).to_string()).collect(),
            created_at: http_util::now_ms(),
            seq: st.postings.len(),
        };
        st.postings.insert(id.clone(), posting);
        id
    }

    /// Adds an opportunity in the first stage and returns its id. As in Lever, the posting's tags
    /// are added to the opportunity's tags. An unknown `posting_id` is kept as given (so the
    /// posting lookup answers 404), which lets tests exercise that path.
    pub fn add_opportunity(&self, new: NewOpportunity) -> String {
        let id = http_util::new_id();
        let now = http_util::now_ms();
        let mut st = self.shared.lock();
        let mut tags = Vec::new();
        for t in new.tags {
            push_unique(&mut tags, t);
        }
        if let Some(posting) = new.posting_id.as_ref().and_then(|p| st.postings.get(p)) {
            for t in &posting.tags {
                push_unique(&mut tags, t.clone());
            }
        }
        let stage = st.stages.first().map(|s| s.id.clone()).unwrap_or_default();
        let rec = OppRecord {
            opp: Opportunity {
                id: id.clone(),
                name: new.name,
                emails: new.emails,
                phones: new.phones,
                tags,
                stage: stage.clone(),
                links: Vec::new(),
                notes: Vec::new(),
                posting_id: new.posting_id,
            },
            contact_id: http_util::new_id(),
            application_id: http_util::new_id(),
            created_at: now,
            updated_at: now,
            stage_changes: vec![(stage, now)],
        };
        st.opps.insert(id.clone(), rec);
        id
    }

    /// Replaces the email addresses of an opportunity.
    pub fn set_emails(&self, opp_id: &str, emails: &[&str]) -> anyhow::Result<()> {
        let mut st = self.shared.lock();
        let rec = st
            .opps
            .get_mut(opp_id)
            .ok_or_else(|| anyhow::anyhow!("unknown opportunity {opp_id}"))?;
        rec.opp.emails = emails.iter().map(|e| (*e).to_string()).collect();
        rec.updated_at = http_util::now_ms();
        Ok(())
    }

    /// A snapshot of an opportunity.
    pub fn opportunity(&self, id: &str) -> Option<Opportunity> {
        self.shared.lock().opps.get(id).map(|r| r.opp.clone())
    }

    /// Every API request received so far, oldest first (failed and rejected ones included).
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Forgets the request log.
    pub fn clear_request_log(&self) {
        self.shared.lock().log.clear();
    }

    /// The next `n` notes are created, but answered `504` as if the answer were lost on the way
    /// (a timeout, a crash of the caller): the caller cannot tell whether Lever kept them.
    pub fn lose_next_note_answers(&self, n: u32) {
        self.shared.lock().lose_note_answers = n;
    }

    /// The next `n` API requests answer `status` (with a Lever-shaped error body) and do nothing.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.shared.lock().fail_next = (n, status);
    }

    /// Sets (or with `None` removes) a token-bucket rate limit: `(requests per second, burst)`.
    /// Requests over it answer 429 with `Retry-After: 1`. The bucket starts full.
    pub fn set_rate_limit(&self, limit: Option<(f64, u32)>) {
        self.shared.lock().rate = limit.map(|(rate, burst)| TokenBucket::new(rate, burst));
    }

    /// Registers a webhook for `event` (e.g. `candidateStageChange`) at `url` and returns its new
    /// signing token.
    pub fn register_webhook(&self, event: &str, url: &str) -> String {
        let signing_token = http_util::random_alnum(40);
        self.shared.lock().webhooks.push(Webhook {
            event: event.to_string(),
            url: url.to_string(),
            signing_token: signing_token.clone(),
        });
        signing_token
    }

    /// Sets the base gap of webhook retries (default 250 ms; gaps double, 5 retries at most).
    pub fn set_webhook_retry_base(&self, base: Duration) {
        self.shared.lock().retry_base = base;
    }

    /// Moves an opportunity to a stage (as a recruiter in the UI would) and delivers
    /// `candidateStageChange` to every webhook registered for it. Returns the status of the first
    /// attempt to the first such webhook (0 = connection error, or no webhook registered);
    /// failed deliveries are retried in the background.
    pub async fn move_to_stage(&self, opp_id: &str, stage_id: &str) -> anyhow::Result<u16> {
        let from = self
            .shared
            .lock()
            .set_stage(opp_id, stage_id)
            .map_err(|e| anyhow::anyhow!("cannot move {opp_id} to {stage_id}: {e:?}"))?;
        let statuses = webhooks::fire_stage_change(&self.shared, opp_id, &from, stage_id).await;
        Ok(statuses.first().copied().unwrap_or(0))
    }

    /// Sends a signed test ping (`candidateHired` with `"data":{}`), as Lever's "Verify Connection"
    /// does, and returns the status (0 = connection error). Not retried.
    pub async fn send_test_ping(&self, url: &str, signing_token: &str) -> anyhow::Result<u16> {
        let body = webhooks::event_body(signing_token, "candidateHired", serde_json::json!({}));
        Ok(webhooks::deliver(&self.shared, url, "candidateHired", body, false).await)
    }

    /// Resends delivery number `index` (see [`LeverSim::deliveries`]) with the same body, like
    /// Lever's "Rerun" button, and returns the status (0 = connection error). Not retried.
    pub async fn rerun_delivery(&self, index: usize) -> anyhow::Result<u16> {
        let d = self
            .shared
            .lock()
            .deliveries
            .get(index)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no delivery number {index}"))?;
        Ok(webhooks::deliver(&self.shared, &d.url, &d.event, d.body, false).await)
    }

    /// All webhook deliveries so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}
