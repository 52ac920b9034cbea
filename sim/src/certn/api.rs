//! The HTTP side of the Certn simulator: routes, the gate (failure injection, auth) in front of
//! the API, and the fake PDF reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::{callbacks, Applicant, Application, Shared};
use crate::http_util;

type Shr = State<Arc<Shared>>;

const INVITE_PATH: &str = "/api/v1/hr/applications/invite/";

/// How long a request hangs after [`super::CertnSim::hang_next`].
const HANG: Duration = Duration::from_secs(30);

pub(super) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route(INVITE_PATH, post(invite))
        .route("/api/v1/hr/applications/", get(list_applications))
        .route("/api/v1/hr/applications/{id}/", get(get_application))
        .route("/api/v1/hr/packages/", get(list_packages))
        .layer(middleware::from_fn_with_state(shared.clone(), gate));
    Router::new()
        .merge(api)
        .route("/reports/{file}", get(report))
        .fallback(not_found)
        .with_state(shared)
}

fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "detail": message.into() }))).into_response()
}

fn field_error(field: &str, message: &str) -> Response {
    let mut body = Map::new();
    body.insert(field.to_string(), json!([message]));
    (StatusCode::BAD_REQUEST, Json(Value::Object(body))).into_response()
}

async fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not found.")
}

enum Injected {
    Hang,
    Unavailable,
}

/// Counts invites, then applies injected failures (hang, down, fail) and auth, in that order.
async fn gate(State(shared): Shr, req: Request, next: Next) -> Response {
    tracing::debug!(method = %req.method(), uri = %req.uri(), "certn sim request");
    let injected = {
        let mut st = shared.lock();
        if req.method() == Method::POST && req.uri().path() == INVITE_PATH {
            st.invite_requests += 1;
        }
        if st.hang_next > 0 {
            st.hang_next -= 1;
            Some(Injected::Hang)
        } else if st.down {
            Some(Injected::Unavailable)
        } else if st.fail_next > 0 {
            st.fail_next -= 1;
            Some(Injected::Unavailable)
        } else {
            None
        }
    };
    match injected {
        Some(Injected::Hang) => {
            tokio::time::sleep(HANG).await;
            return detail(StatusCode::SERVICE_UNAVAILABLE, "Request timed out.");
        }
        Some(Injected::Unavailable) => {
            return detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable, try again later.",
            );
        }
        None => {}
    }
    if let Some(resp) = check_auth(&shared.api_key, req.headers()) {
        return resp;
    }
    next.run(req).await
}

fn check_auth(api_key: &str, headers: &HeaderMap) -> Option<Response> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Some(detail(
            StatusCode::UNAUTHORIZED,
            "Authentication credentials were not provided.",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if token == Some(api_key) {
        None
    } else {
        Some(detail(StatusCode::UNAUTHORIZED, "Invalid token."))
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The invite endpoint: does the work, then waits the injected latency before answering (the
/// application exists even if the caller is gone by then).
async fn invite(State(shared): Shr, headers: HeaderMap, body: Bytes) -> Response {
    let resp = create_or_replay(&shared, &headers, &body);
    let latency = shared.lock().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    resp
}

fn create_or_replay(shared: &Arc<Shared>, headers: &HeaderMap, body: &Bytes) -> Response {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return detail(StatusCode::BAD_REQUEST, format!("JSON parse error - {e}")),
    };
    let Some(obj) = value.as_object() else {
        return detail(
            StatusCode::BAD_REQUEST,
            "Invalid data. Expected a dictionary.",
        );
    };
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && !shared.lock().ignore_idempotency_keys)
        .map(str::to_string);
    if let Some(existing) = idempotent_replay(shared, idempotency_key.as_deref()) {
        return (StatusCode::OK, Json(existing)).into_response();
    }
    let app = match new_application(shared, obj) {
        Ok(app) => app,
        Err(resp) => return *resp,
    };
    let latency = {
        let mut st = shared.lock();
        // A concurrent request with the same key may have won the race.
        if let Some(key) = &idempotency_key {
            if let Some(id) = st.idempotency.get(key).cloned() {
                if let Some(existing) = st.apps.iter().find(|a| a.id == id) {
                    return (StatusCode::OK, Json(existing.clone())).into_response();
                }
            }
            st.idempotency.insert(key.clone(), app.id.clone());
        }
        st.apps.push(app.clone());
        st.latency
    };
    tracing::debug!(id = %app.id, "certn sim: invite sent");
    if let Some(delay) = shared.opts.step_delay {
        // The first callback waits for the (delayed) answer, as it does without latency.
        callbacks::spawn_progression(shared.clone(), app.id.clone(), latency, delay);
    }
    (StatusCode::CREATED, Json(app)).into_response()
}

fn idempotent_replay(shared: &Shared, key: Option<&str>) -> Option<Application> {
    let st = shared.lock();
    let id = st.idempotency.get(key?)?;
    st.apps.iter().find(|a| &a.id == id).cloned()
}

/// Validates an invite body and builds the new (PENDING) application.
fn new_application(
    shared: &Shared,
    obj: &Map<String, Value>,
) -> Result<Application, Box<Response>> {
    let email = obj
        .get("email")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| Box::new(field_error("email", "This field is required.")))?;
    if !email.contains('@') {
        return Err(Box::new(field_error(
            "email",
            "Enter a valid email address.",
        )));
    }
    let package = match obj.get("package").and_then(Value::as_str) {
        Some(p) if shared.packages.iter().any(|(_, name)| name == p) => p.to_string(),
        Some(p) => {
            return Err(Box::new(detail(
                StatusCode::BAD_REQUEST,
                format!("unknown package '{p}'"),
            )))
        }
        None => {
            return Err(Box::new(detail(
                StatusCode::BAD_REQUEST,
                "unknown package: none given",
            )))
        }
    };
    let mut request_flags = BTreeMap::new();
    for (key, value) in obj.iter().filter(|(k, _)| k.starts_with("request_")) {
        if !value.is_boolean() {
            return Err(Box::new(field_error(key, "Must be a valid boolean.")));
        }
        request_flags.insert(key.clone(), value.clone());
    }
    let reference = match obj.get("reference") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(r.clone()),
        Some(_) => return Err(Box::new(field_error("reference", "Not a valid string."))),
    };
    let info = obj.get("information").and_then(Value::as_object);
    let now = http_util::now_rfc3339();
    Ok(Application {
        id: http_util::new_id(),
        created: now.clone(),
        modified: now,
        status: "PENDING".into(),
        status_label: "Pending".into(),
        report_status: "NONE".into(),
        result: None,
        result_label: None,
        certn_score: None,
        certn_score_label: None,
        is_submitted: false,
        report_url: None,
        package,
        tag: opt_str(obj, "tag"),
        owner_id: opt_str(obj, "owner_id"),
        reference,
        applicant: Applicant {
            id: http_util::new_id(),
            status: "PENDING".into(),
            first_name: info.and_then(|i| opt_str(i, "first_name")),
            last_name: info.and_then(|i| opt_str(i, "last_name")),
            email: email.to_string(),
            phone_number: opt_str(obj, "phone_number"),
        },
        request_flags,
    })
}

async fn get_application(State(shared): Shr, Path(id): Path<String>) -> Response {
    let st = shared.lock();
    match st.apps.iter().find(|a| a.id == id) {
        Some(app) => Json(app.clone()).into_response(),
        None => detail(StatusCode::NOT_FOUND, "Not found."),
    }
}

/// `GET /api/v1/hr/applications/[?reference=]`: a DRF-style page holding every match.
async fn list_applications(State(shared): Shr, Query(q): Query<Vec<(String, String)>>) -> Response {
    let reference = q
        .iter()
        .find(|(k, _)| k == "reference")
        .map(|(_, v)| v.as_str());
    let results: Vec<Application> = shared
        .lock()
        .apps
        .iter()
        .filter(|a| reference.is_none() || a.reference.as_deref() == reference)
        .cloned()
        .collect();
    Json(json!({
        "count": results.len(),
        "next": null,
        "previous": null,
        "results": results,
    }))
    .into_response()
}

async fn list_packages(State(shared): Shr) -> Response {
    let results: Vec<Value> = shared
        .packages
        .iter()
        .map(|(id, name)| json!({ "id": id, "name": name }))
        .collect();
    Json(json!({
        "count": results.len(),
        "next": null,
        "previous": null,
        "results": results,
    }))
    .into_response()
}

async fn report(State(shared): Shr, Path(file): Path<String>) -> Response {
    let Some(id) = file.strip_suffix(".pdf") else {
        return detail(StatusCode::NOT_FOUND, "Not found.");
    };
    let available = {
        let st = shared.lock();
        st.apps.iter().any(|a| a.id == id && a.report_url.is_some())
    };
    if !available {
        return detail(StatusCode::NOT_FOUND, "Not found.");
    }
    let pdf = format!(
        "%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n\
         2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n\
         % Certn simulator report for application {id}\n\
         trailer << /Root 1 0 R >>\n%%EOF\n"
    );
    (
        [(header::CONTENT_TYPE, "application/pdf")],
        Bytes::from(pdf),
    )
        .into_response()
}
