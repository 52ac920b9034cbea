//! Switchyard connector for Canditech skills assessments, on contract 0.2.1.
//!
//! The API it speaks is switchyard's design, written down in `docs/canditech.md`. This file is
//! the only one that touches the generated bindings: it reads configuration and state through the
//! host's imports, calls Canditech through `outbound-http`, verifies callbacks with the host's
//! `crypto`, and converts between the contract's types and the plain Rust of the other modules
//! (which are unit-tested natively).
//!
//! - `list-packages`: the account's assessments, from `GET /v1/assessments`.
//! - `start-screening`: invites the candidate to the requested assessment (a rule's package, else
//!   the integration's default package), exactly once per idempotency key even when Canditech
//!   ignores `Idempotency-Key`: the intent is recorded in `state` before the call, and a retry
//!   that finds an intent but no invitation looks it up by our reference before inviting again.
//!   Intent and invitation are screening-scoped (`state.set-for-screening`): the host drops them
//!   when it records the order, so they do not accumulate.
//! - `handle-callback`: signature + timestamp window (401), malformed (400), replayed signed
//!   request (409), then progress, completion (score, results link, note) and verdicts (a verdict
//!   tag and a note; a lower revision than one already seen is ignored).

pub mod api;
pub mod events;
pub mod replay;
pub mod signature;

wit_bindgen::generate!({ path: "../../wit", world: "connector" });

use exports::switchyard::connector::screening::Guest;
use switchyard::connector::crypto::{self, Encoding};
use switchyard::connector::log::{self as hostlog, Level};
use switchyard::connector::outbound_http::{self, HttpError, OutgoingRequest};
use switchyard::connector::types::{
    CallbackResult, ConfigField, ConnectorError, HttpRequest, HttpResponse, Manifest, Note,
    Package, ResourceNeeds, ScreeningRequest, ScreeningState, Started, Status, StatusUpdate,
};
use switchyard::connector::{config, state};

use api::{ApiError, Assessment};
use events::{Mapped, State};

/// The exported connector.
struct Canditech;

export!(Canditech);

const KEY_API_BASE: &str = "api-base";
const KEY_API_KEY: &str = "api-key";
const KEY_WEBHOOK_SECRET: &str = "webhook-secret";
/// Package parameter naming the assessment id (saves a `GET /v1/assessments`).
const PARAM_ASSESSMENT_ID: &str = "assessment-id";

const ORDER_PREFIX: &str = "order:";
const INTENT_PREFIX: &str = "intent:";
const REVISION_PREFIX: &str = "verdict-revision:";
/// Verdict revisions are remembered for the last this-many invitations only, so that the state
/// stays bounded however many screenings run: a verdict delivered out of order comes within
/// minutes, long before its invitation leaves the ring.
const REVISIONS_KEPT: u32 = 1000;
/// The next slot of the ring, and each slot's invitation.
const RING_NEXT: &str = "verdict-ring-next";
const RING_PREFIX: &str = "verdict-ring:";

/// Records the newest verdict revision seen for `invitation`. A new invitation takes the oldest
/// slot of the ring; the invitation that held it is forgotten.
fn remember_revision(invitation: &str, revision: u32) {
    let key = format!("{REVISION_PREFIX}{invitation}");
    if state::get(&key).is_none() {
        let next = state::get(RING_NEXT)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
            % REVISIONS_KEPT;
        let slot = format!("{RING_PREFIX}{next}");
        if let Some(old) = state::get(&slot) {
            state::delete(&format!("{REVISION_PREFIX}{old}"));
        }
        state::set(&slot, invitation);
        state::set(RING_NEXT, &((next + 1) % REVISIONS_KEPT).to_string());
    }
    state::set(&key, &revision.to_string());
}

impl Guest for Canditech {
    fn manifest() -> Manifest {
        let field = |key: &str, description: &str, secret: bool, required: bool| ConfigField {
            key: key.into(),
            description: description.into(),
            secret,
            required,
        };
        Manifest {
            id: "canditech".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            display_name: "Canditech skills assessments".into(),
            config_fields: vec![
                field(
                    KEY_API_BASE,
                    "Canditech API base URL (default https://api.canditech.io)",
                    false,
                    false,
                ),
                field(
                    KEY_API_KEY,
                    "Canditech API key (Settings > API)",
                    true,
                    true,
                ),
                field(
                    KEY_WEBHOOK_SECRET,
                    "Canditech webhook secret (whsec_…), verifies Canditech-Signature",
                    true,
                    true,
                ),
            ],
            outbound_hosts: vec!["api.canditech.io".into()],
            status_labels: events::STATUS_LABELS
                .iter()
                .map(|l| l.to_string())
                .collect(),
            default_trigger_stage: Some("Canditech Stage".into()),
            verdict_labels: events::VERDICT_LABELS
                .iter()
                .map(|l| l.to_string())
                .collect(),
            limits: ResourceNeeds {
                memory_mib: 0,
                instances: 0,
            },
        }
    }

    fn list_packages() -> Result<Vec<Package>, ConnectorError> {
        let api = Api::from_config()?;
        Ok(api
            .assessments()?
            .into_iter()
            .map(|a| {
                let mut params = vec![(PARAM_ASSESSMENT_ID.to_string(), a.id)];
                if let Some(d) = a.duration_minutes {
                    params.push(("duration-minutes".into(), d.to_string()));
                }
                if let Some(m) = a.max_score {
                    params.push(("max-score".into(), format!("{m}")));
                }
                Package {
                    name: a.name,
                    is_default: false,
                    params,
                }
            })
            .collect())
    }

    fn start_screening(request: ScreeningRequest) -> Result<Started, ConnectorError> {
        let order_key = format!("{ORDER_PREFIX}{}", request.idempotency_key);
        if let Some(invitation) = state::get(&order_key) {
            log(
                Level::Info,
                "invitation already exists",
                &[("invitation", &invitation)],
            );
            return Ok(invited(invitation));
        }
        let Some(email) = request
            .candidate
            .emails
            .iter()
            .map(|e| e.trim())
            .find(|e| !e.is_empty())
        else {
            log(
                Level::Warn,
                "candidate has no email; not inviting",
                &[("opportunity-id", &request.opportunity_id)],
            );
            return Ok(not_sent(events::LABEL_NO_EMAIL));
        };
        let api = Api::from_config()?;
        let Some(assessment_id) = choose_assessment(&api, &request)? else {
            return Ok(not_sent(events::LABEL_NO_ASSESSMENT));
        };

        let reference = reference_for(&request.idempotency_key);
        let intent_key = format!("{INTENT_PREFIX}{}", request.idempotency_key);
        if state::get(&intent_key).is_some() {
            // An earlier attempt may have invited and died before recording the answer: ask
            // Canditech before inviting again (it may ignore idempotency keys).
            if let Some(found) = api.lookup(&reference)? {
                log(
                    Level::Info,
                    "found the invitation of an earlier attempt",
                    &[("invitation", &found)],
                );
                state::set_for_screening(&request.idempotency_key, &order_key, &found);
                state::delete(&intent_key);
                return Ok(invited(found));
            }
        }
        // Durable before the call: a crash after it is seen by the retry above. Both entries
        // belong to the screening: the host drops them when it records its order.
        state::set_for_screening(&request.idempotency_key, &intent_key, &assessment_id);
        let body = api::invite_body(
            &assessment_id,
            &request.candidate.name,
            email,
            &reference,
            &config::callback_url(),
        );
        let invitation = api.invite(body, &reference)?;
        state::set_for_screening(&request.idempotency_key, &order_key, &invitation);
        state::delete(&intent_key);
        log(
            Level::Info,
            "Canditech invitation created",
            &[
                ("invitation", &invitation),
                ("assessment-id", &assessment_id),
            ],
        );
        Ok(invited(invitation))
    }

    fn handle_callback(request: HttpRequest) -> Result<CallbackResult, ConnectorError> {
        if !request.method.eq_ignore_ascii_case("POST") {
            return Ok(no_updates(405, r#"{"error":"method not allowed"}"#));
        }
        let secret = config::secret(KEY_WEBHOOK_SECRET)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ConnectorError::Config("webhook-secret is not set".into()))?;
        let header = request
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("canditech-signature"))
            .map(|(_, value)| value.as_str());
        let now = unix_now();
        let t = match signature::verify(&HostHmac, secret.as_bytes(), header, &request.body, now) {
            Ok(t) => t,
            Err(e) => {
                log(
                    Level::Warn,
                    "rejected Canditech callback",
                    &[("reason", e.as_str())],
                );
                return Ok(no_updates(401, r#"{"error":"invalid signature"}"#));
            }
        };
        let event = match events::parse(&request.body) {
            Ok(e) => e,
            Err(e) => {
                log(
                    Level::Warn,
                    "malformed Canditech callback",
                    &[("error", &e)],
                );
                return Ok(no_updates(400, r#"{"error":"malformed body"}"#));
            }
        };
        let seen = state::get(replay::STATE_KEY);
        let Some(seen) = replay::accept(seen.as_deref(), &event.id, t, now) else {
            log(
                Level::Warn,
                "replayed Canditech callback",
                &[("event", &event.id)],
            );
            return Ok(no_updates(409, r#"{"error":"replayed request"}"#));
        };
        state::set(replay::STATE_KEY, &seen);

        let Some(mapped) = events::map(&event) else {
            log(
                Level::Info,
                "ignoring Canditech event",
                &[("event", &event.id), ("type", &event.kind)],
            );
            return Ok(no_updates(200, r#"{"received":true}"#));
        };
        if let Some(revision) = events::verdict_revision(&event) {
            let key = format!("{REVISION_PREFIX}{}", event.invitation.id);
            let newest = state::get(&key).and_then(|v| v.parse::<u32>().ok());
            if newest.is_some_and(|n| n > revision) {
                log(
                    Level::Info,
                    "ignoring an older verdict",
                    &[("event", &event.id), ("revision", &revision.to_string())],
                );
                return Ok(no_updates(200, r#"{"received":true,"stale":true}"#));
            }
            remember_revision(&event.invitation.id, revision);
        }
        Ok(CallbackResult {
            response: json_response(200, r#"{"received":true}"#),
            updates: vec![StatusUpdate {
                order_ref: event.invitation.id.clone(),
                status: status(mapped),
            }],
        })
    }
}

/// The assessment id for a request: the requested package (a rule's assessment), else the
/// integration's default package; by a configured `assessment-id` param, else by the account's
/// list (id, then name). `None`: none chosen or Canditech does not offer it.
fn choose_assessment(
    api: &Api,
    request: &ScreeningRequest,
) -> Result<Option<String>, ConnectorError> {
    let configured = config::packages();
    let wanted = request
        .package
        .clone()
        .filter(|p| !p.trim().is_empty())
        .or_else(|| {
            configured
                .iter()
                .find(|p| p.is_default)
                .map(|p| p.name.clone())
        });
    let Some(wanted) = wanted else {
        log(
            Level::Warn,
            "no assessment requested and no default package",
            &[],
        );
        return Ok(None);
    };
    let pinned = configured
        .iter()
        .filter(|p| p.name.trim().eq_ignore_ascii_case(wanted.trim()))
        .find_map(|p| {
            p.params
                .iter()
                .find(|(k, v)| k == PARAM_ASSESSMENT_ID && !v.trim().is_empty())
                .map(|(_, v)| v.trim().to_string())
        });
    if pinned.is_some() {
        return Ok(pinned);
    }
    let list = api.assessments()?;
    match api::find(&list, &wanted) {
        Some(Assessment { id, .. }) => Ok(Some(id.clone())),
        None => {
            let names: Vec<&str> = list.iter().map(|a| a.name.as_str()).collect();
            log(
                Level::Warn,
                "Canditech does not offer the requested assessment",
                &[("assessment", &wanted), ("offered", &names.join(", "))],
            );
            Ok(None)
        }
    }
}

/// Our reference (and idempotency key) at Canditech: the request's key, hashed when too long.
fn reference_for(key: &str) -> String {
    if key.len() <= api::MAX_REFERENCE {
        key.to_string()
    } else {
        format!(
            "sha256:{}",
            crypto::encode(&crypto::sha256(key.as_bytes()), Encoding::Hex)
        )
    }
}

/// The Canditech API of this integration.
struct Api {
    base: String,
    key: String,
}

impl Api {
    fn from_config() -> Result<Api, ConnectorError> {
        let key = config::secret(KEY_API_KEY)
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ConnectorError::Config("api-key is not set".into()))?;
        Ok(Api {
            base: api::base(config::get(KEY_API_BASE).as_deref()),
            key,
        })
    }

    fn send(
        &self,
        method: &str,
        url: String,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> Result<(u16, Vec<u8>), ConnectorError> {
        let mut headers = vec![
            ("authorization".to_string(), format!("Bearer {}", self.key)),
            ("accept".to_string(), "application/json".to_string()),
        ];
        if !body.is_empty() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let response = outbound_http::send(&OutgoingRequest {
            method: method.into(),
            url,
            headers,
            body,
            timeout_ms: Some(api::TIMEOUT_MS),
        })
        .map_err(http_error)?;
        Ok((response.status, response.body))
    }

    fn assessments(&self) -> Result<Vec<Assessment>, ConnectorError> {
        let (status, body) = self.send("GET", api::assessments_url(&self.base), Vec::new(), &[])?;
        api::parse_assessments(status, &body, &self.key).map_err(api_error)
    }

    fn lookup(&self, reference: &str) -> Result<Option<String>, ConnectorError> {
        let (status, body) = self.send(
            "GET",
            api::lookup_url(&self.base, reference),
            Vec::new(),
            &[],
        )?;
        api::parse_lookup(status, &body, &self.key).map_err(api_error)
    }

    fn invite(&self, body: Vec<u8>, reference: &str) -> Result<String, ConnectorError> {
        let (status, body) = self.send(
            "POST",
            api::invitations_url(&self.base),
            body,
            &[("idempotency-key", reference)],
        )?;
        api::parse_invite(status, &body, &self.key).map_err(api_error)
    }
}

/// Checks signatures with the host's constant-time HMAC.
struct HostHmac;

impl signature::Hmac for HostHmac {
    fn verify_hex(&self, key: &[u8], message: &[u8], signature_hex: &str) -> bool {
        crypto::verify_hmac_sha256(key, message, signature_hex, Encoding::Hex)
    }
}

fn api_error(e: ApiError) -> ConnectorError {
    match e {
        ApiError::Config(m) => ConnectorError::Config(m),
        ApiError::Transient(m) => ConnectorError::Transient(m),
        ApiError::Rejected(m) => ConnectorError::Rejected(m),
    }
}

fn http_error(e: HttpError) -> ConnectorError {
    match e {
        HttpError::Timeout => ConnectorError::Transient("Canditech did not answer in time".into()),
        HttpError::Connection(m) => {
            ConnectorError::Transient(format!("could not reach Canditech: {m}"))
        }
        HttpError::Denied(m) => {
            ConnectorError::Config(format!("outbound request to Canditech denied: {m}"))
        }
        HttpError::Invalid(m) => {
            ConnectorError::Config(format!("invalid request to Canditech: {m}"))
        }
    }
}

fn invited(invitation: String) -> Started {
    Started {
        order_ref: Some(invitation),
        status: status(Mapped::plain(State::Pending, events::LABEL_INVITED)),
    }
}

fn not_sent(label: &'static str) -> Started {
    Started {
        order_ref: None,
        status: status(Mapped::plain(State::Error, label)),
    }
}

fn status(m: Mapped) -> Status {
    Status {
        state: match m.state {
            State::Pending => ScreeningState::Pending,
            State::Analyzing => ScreeningState::Analyzing,
            State::Complete => ScreeningState::Complete,
            State::Error => ScreeningState::Error,
        },
        label: m.label.into(),
        report_url: m.report_url,
        score: m.score,
        verdict: m.verdict.map(str::to_string),
        note: m.note.map(|text| Note {
            text,
            secret: false,
        }),
    }
}

fn json_response(code: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status: code,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    }
}

fn no_updates(code: u16, body: &str) -> CallbackResult {
    CallbackResult {
        response: json_response(code, body),
        updates: Vec::new(),
    }
}

/// Seconds since the Unix epoch from the WASI wall clock (0 before 1970, which then fails the
/// signature's window rather than panicking).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    hostlog::log(level, message, &fields);
}
