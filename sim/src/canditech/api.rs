//! The HTTP side of the Canditech simulator: routes, the gate in front of `/v1/` (latency,
//! failure injection, auth, rate limit), and the candidate / results pages.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{webhooks, AssessmentRef, CandidateInfo, Invitation, Shared};
use crate::http_util;

type Shr = State<Arc<Shared>>;

const INVITATIONS_PATH: &str = "/v1/invitations";
/// How long a request hangs after [`super::CanditechSim::hang_next`].
const HANG: Duration = Duration::from_secs(30);
/// The rate-limit window.
const WINDOW: Duration = Duration::from_secs(60);
/// Longest `reference` and `Idempotency-Key`.
const MAX_KEY_LEN: usize = 255;
/// Most invitations one lookup returns.
const MAX_LOOKUP: usize = 100;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/v1/assessments", get(list_assessments))
        .route(INVITATIONS_PATH, get(lookup).post(create))
        .route("/v1/invitations/{id}", get(get_invitation))
        .layer(middleware::from_fn_with_state(shared.clone(), gate));
    Router::new()
        .merge(api)
        .route("/results/{id}", get(results_page))
        .route("/t/{token}", get(test_page))
        .fallback(not_found)
        .with_state(shared)
}

/// The documented error shape, `{"error":{"code","message"[,"field"]}}`.
fn error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Response {
    let mut err = json!({ "code": code, "message": message });
    if let Some(f) = field {
        err["field"] = json!(f);
    }
    (status, Json(json!({ "error": err }))).into_response()
}

fn invalid(field: &str, message: &str) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        message,
        Some(field),
    )
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "not found", None)
}

enum Gate {
    Hang,
    Unavailable,
    Throttled(u64),
    Unauthorized,
    Pass,
}

/// Latency, then (in this order) hang, down, fail, throttle, auth, rate limit.
async fn gate(State(shared): Shr, req: Request, next: Next) -> Response {
    tracing::debug!(method = %req.method(), uri = %req.uri(), "canditech sim request");
    let latency = {
        let mut st = shared.lock();
        if req.method() == Method::POST && req.uri().path() == INVITATIONS_PATH {
            st.invite_requests += 1;
        }
        st.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let gate = {
        let mut st = shared.lock();
        if st.hang_next > 0 {
            st.hang_next -= 1;
            Gate::Hang
        } else if st.down {
            Gate::Unavailable
        } else if st.fail_next > 0 {
            st.fail_next -= 1;
            Gate::Unavailable
        } else if st.throttle_next > 0 {
            st.throttle_next -= 1;
            Gate::Throttled(st.throttle_retry_after)
        } else if !authorized(&shared.api_key, req.headers()) {
            Gate::Unauthorized
        } else if let Some(limit) = shared.opts.rate_limit_per_minute {
            let now = Instant::now();
            if now.duration_since(st.window.0) >= WINDOW {
                st.window = (now, 0);
            }
            st.window.1 = st.window.1.saturating_add(1);
            if st.window.1 > limit {
                let left = WINDOW.saturating_sub(now.duration_since(st.window.0));
                Gate::Throttled(left.as_secs().max(1))
            } else {
                Gate::Pass
            }
        } else {
            Gate::Pass
        }
    };
    match gate {
        Gate::Hang => {
            tokio::time::sleep(HANG).await;
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "request timed out",
                None,
            )
        }
        Gate::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Canditech is temporarily unavailable",
            None,
        ),
        Gate::Throttled(secs) => {
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests",
                None,
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Gate::Unauthorized => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid API key",
            None,
        ),
        Gate::Pass => next.run(req).await,
    }
}

fn authorized(api_key: &str, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .is_some_and(|(_, token)| token.trim() == api_key)
}

async fn list_assessments(State(shared): Shr) -> Response {
    Json(json!({ "assessments": shared.assessments })).into_response()
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str).map(str::trim)
}

async fn create(State(shared): Shr, headers: HeaderMap, body: Bytes) -> Response {
    let req: Value = match serde_json::from_slice::<Value>(&body) {
        Ok(v) if v.is_object() => v,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "the body must be a JSON object",
                None,
            )
        }
    };
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.trim().is_empty() && k.trim().len() <= MAX_KEY_LEN => {
            Some(k.trim().to_string())
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible characters",
                None,
            )
        }
    };
    if !shared.opts.ignore_idempotency_keys {
        if let Some(existing) = replay(&shared, key.as_deref()) {
            let mut resp = (StatusCode::OK, Json(existing)).into_response();
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return resp;
        }
    }
    let invitation = match new_invitation(&shared, &req) {
        Ok(inv) => inv,
        Err(resp) => return *resp,
    };
    // Check-and-insert under one lock so concurrent repeats of a key create one invitation.
    {
        let mut st = shared.lock();
        if let Some(k) = key.filter(|_| !shared.opts.ignore_idempotency_keys) {
            let existing = st
                .idempotency
                .get(&k)
                .and_then(|id| st.invitations.iter().find(|i| &i.id == id))
                .cloned();
            if let Some(existing) = existing {
                drop(st);
                let mut resp = (StatusCode::OK, Json(existing)).into_response();
                resp.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return resp;
            }
            st.idempotency.insert(k, invitation.id.clone());
        }
        st.invitations.push(invitation.clone());
    }
    if let Some(delay) = shared.opts.step_delay {
        webhooks::spawn_progression(Arc::downgrade(&shared), invitation.id.clone(), delay);
    }
    (StatusCode::CREATED, Json(invitation)).into_response()
}

fn replay(shared: &Shared, key: Option<&str>) -> Option<Invitation> {
    let st = shared.lock();
    let id = st.idempotency.get(key?)?;
    st.invitations.iter().find(|i| &i.id == id).cloned()
}

/// Validates a create body (the documented order of checks) and builds the invitation.
fn new_invitation(shared: &Shared, req: &Value) -> Result<Invitation, Box<Response>> {
    let assessment_id = text(req, "/assessment_id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Box::new(invalid("assessment_id", "assessment_id is required")))?;
    let assessment = shared
        .assessments
        .iter()
        .find(|a| a.id == assessment_id)
        .ok_or_else(|| {
            Box::new(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_assessment",
                "no such assessment in this account",
                Some("assessment_id"),
            ))
        })?;
    let email = text(req, "/candidate/email").unwrap_or_default();
    if email.is_empty() || !email.contains('@') {
        return Err(Box::new(invalid(
            "candidate.email",
            "candidate.email is not an email address",
        )));
    }
    let reference = text(req, "/reference").map(str::to_string);
    if reference.as_ref().is_some_and(|r| r.len() > MAX_KEY_LEN) {
        return Err(Box::new(invalid(
            "reference",
            "reference is longer than 255 characters",
        )));
    }
    let callback_url = match req.get("callback_url") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let url = v.as_str().map(str::trim).unwrap_or_default();
            if !reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                return Err(Box::new(invalid(
                    "callback_url",
                    "callback_url must be an absolute http(s) URL",
                )));
            }
            Some(url.to_string())
        }
    };
    Ok(Invitation {
        id: format!("inv_{}", http_util::random_hex(20)),
        assessment: AssessmentRef {
            id: assessment.id.clone(),
            name: assessment.name.clone(),
        },
        candidate: CandidateInfo {
            name: text(req, "/candidate/name").unwrap_or_default().to_string(),
            email: email.to_string(),
        },
        reference,
        callback_url,
        status: "invited".into(),
        test_url: format!("{}/t/{}", shared.base, http_util::random_hex(24)),
        created_at: http_util::now_rfc3339(),
        sent_at: None,
        started_at: None,
        completed_at: None,
        score: None,
        max_score: assessment.max_score,
        results_url: None,
        verdict: None,
    })
}

async fn get_invitation(State(shared): Shr, Path(id): Path<String>) -> Response {
    let found = shared
        .lock()
        .invitations
        .iter()
        .find(|i| i.id == id)
        .cloned();
    match found {
        Some(inv) => Json(inv).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such invitation",
            None,
        ),
    }
}

async fn lookup(State(shared): Shr, Query(q): Query<HashMap<String, String>>) -> Response {
    let reference = q.get("reference");
    let email = q.get("email").map(|e| e.trim());
    if reference.is_none() && email.is_none() {
        return invalid("reference", "give reference or email");
    }
    let found: Vec<Invitation> = shared
        .lock()
        .invitations
        .iter()
        .filter(|i| reference.is_none_or(|r| i.reference.as_ref() == Some(r)))
        .filter(|i| email.is_none_or(|e| i.candidate.email.eq_ignore_ascii_case(e)))
        .take(MAX_LOOKUP)
        .cloned()
        .collect();
    Json(json!({ "invitations": found })).into_response()
}

/// Minimal HTML escaping for text nodes (names are user input).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn results_page(State(shared): Shr, Path(id): Path<String>) -> Response {
    let found = shared
        .lock()
        .invitations
        .iter()
        .find(|i| i.id == id && i.status == "completed")
        .cloned();
    let Some(inv) = found else {
        return (
            StatusCode::NOT_FOUND,
            Html("<h1>Not found</h1>".to_string()),
        )
            .into_response();
    };
    let verdict = inv.verdict.as_ref().map_or("(none yet)".to_string(), |v| {
        format!("{} by {}", v.decision, v.reviewer)
    });
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Canditech results {id}</title>\
         </head><body><h1>Canditech assessment results</h1><dl>\
         <dt>Candidate</dt><dd>{name}</dd><dt>Assessment</dt><dd>{assessment}</dd>\
         <dt>Score</dt><dd>{score}/{max}</dd><dt>Verdict</dt><dd>{verdict}</dd></dl></body></html>\n",
        id = escape(&inv.id),
        name = escape(&inv.candidate.name),
        assessment = escape(&inv.assessment.name),
        score = inv.score.unwrap_or_default(),
        max = inv.max_score,
        verdict = escape(&verdict),
    );
    (StatusCode::OK, Html(page)).into_response()
}

async fn test_page(State(shared): Shr, Path(token): Path<String>) -> Response {
    let url = format!("{}/t/{token}", shared.base);
    let found = shared
        .lock()
        .invitations
        .iter()
        .find(|i| i.test_url == url)
        .map(|i| i.assessment.name.clone());
    match found {
        Some(name) => Html(format!(
            "<!doctype html>\n<html><body><h1>Canditech test: {}</h1></body></html>\n",
            escape(&name)
        ))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Html("<h1>Not found</h1>".to_string()),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape("<b>&'\""), "&lt;b&gt;&amp;&#39;&quot;");
    }
}
