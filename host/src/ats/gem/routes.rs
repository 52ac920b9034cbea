//! Gem's routes ([`routes`]): the Gem-facing API, per integration, authenticated by an `X-API-Key` that switchyard issued
//! (see [`keys`](crate::ats::gem::keys)):
//!
//! - `GET /gem/{integration}/packages` → `{"packages":[{"name","default"}]}`, from the
//!   connector's `list-packages`.
//! - `POST /gem/{integration}/screenings` (optional `Idempotency-Key` header), body
//!   [`SendRequest`] → 202 `{"id","status":"queued","package"}` once the screening is committed.
//!   No email → 422; a package the connector does not list → 422; the same `Idempotency-Key` with
//!   another body → 409.
//! - `GET /gem/{integration}/screenings/{id}` → its current state, label and results URL.
//!
//! Errors are `{"error": "<message>"}`: unknown integration (or not a Gem one) → 404, missing,
//! unknown or revoked key → 401, disabled integration → 503, connector failure → 502.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::app::{App, Integration};
use crate::ats::gem::keys;
use crate::ats::gem::screening::{self, Queued, SendRequest};
use crate::http::error::ApiError;
use crate::store::EventState;
use crate::timeline::TimelineEvent;

/// The routes under `/gem/{integration}/`, mounted by [`crate::http::router`].
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/gem/{integration}/packages", get(packages))
        .route("/gem/{integration}/screenings", post(send))
        .route("/gem/{integration}/screenings/{id}", get(status))
}

/// An error response, boxed: handlers return it as is, helpers pass it up cheaply.
type Rejection = Box<Response>;

fn reject(status: StatusCode, message: impl Into<String>) -> Rejection {
    Box::new(ApiError::new(status, message).into_response())
}

/// The integration, if `headers` carry an active API key for it; otherwise the error response.
fn authorize(app: &App, id: &str, headers: &HeaderMap) -> Result<Arc<Integration>, Rejection> {
    let Some(integration) = app.integration(id).filter(|i| i.gem_config().is_some()) else {
        return Err(reject(StatusCode::NOT_FOUND, "unknown Gem integration"));
    };
    let presented = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if presented.is_empty() {
        return Err(reject(StatusCode::UNAUTHORIZED, "missing X-API-Key header"));
    }
    match keys::authenticate(&app.store, id, presented) {
        Ok(Some(_key_id)) => {}
        Ok(None) => {
            tracing::warn!(integration = %id, "Gem API call with an invalid or revoked key");
            return Err(reject(
                StatusCode::UNAUTHORIZED,
                "invalid or revoked API key",
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot check an API key");
            return Err(reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry later",
            ));
        }
    }
    if !integration.config.enabled {
        return Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "integration is disabled",
        ));
    }
    Ok(integration)
}

/// The connector's packages as `(name, default)`.
async fn list_packages(
    app: &App,
    integration: &Integration,
) -> Result<Vec<(String, bool)>, Rejection> {
    let connector = app
        .connector(integration)
        .map_err(|e| reject(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let ctx = app.call_context(integration, &connector);
    let runtime = app.registry.runtime().clone();
    let called = connector.clone();
    app.guest_call(&integration.config.id, async move {
        called.list_packages(&runtime, ctx).await
    })
    .await
    .map_err(|e| {
            tracing::error!(integration = %integration.config.id, connector = %connector.version_tag(), error = %e, "list-packages failed");
            reject(StatusCode::BAD_GATEWAY, format!("the connector cannot list packages: {e}"))
        })
}

async fn packages(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let integration = match authorize(&app, &id, &headers) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    match list_packages(&app, &integration).await {
        Ok(list) => {
            let packages: Vec<_> = list
                .into_iter()
                .map(|(name, default)| json!({ "name": name, "default": default }))
                .collect();
            Json(json!({ "packages": packages })).into_response()
        }
        Err(r) => *r,
    }
}

async fn send(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let integration = match authorize(&app, &id, &headers) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let mut request: SendRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}"),
            )
            .into_response()
        }
    };
    request.application_id = request.application_id.trim().to_string();
    request.candidate.emails.retain(|e| !e.trim().is_empty());
    if request.application_id.is_empty() {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "application_id is required",
        )
        .into_response();
    }
    // Rejected up front: the vendor invites the candidate by email, and Gem shows this message
    // to the recruiter in the send dialog right away.
    if request.candidate.emails.is_empty() {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the candidate has no email address: the screening invitation is sent by email",
        )
        .into_response();
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_string);
    let sent = request.clone();
    if let Some(key) = &idempotency_key {
        match screening::prior(&app.store, &id, key, &sent) {
            Ok(None) => {}
            Ok(Some(repeat)) => return answer_repeat(&app, &id, repeat),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a Gem screening");
                return ApiError::storage_retry_later().into_response();
            }
        }
    }
    let available = match list_packages(&app, &integration).await {
        Ok(list) => list,
        Err(r) => return *r,
    };
    let package = match request
        .package
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        Some(wanted) => match available
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
        {
            Some((name, _)) => Some(name.clone()),
            None => {
                let names: Vec<&str> = available.iter().map(|(n, _)| n.as_str()).collect();
                return ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "unknown package {wanted:?}; available: {}",
                        names.join(", ")
                    ),
                )
                .into_response();
            }
        },
        None => None,
    };
    // Absent → the connector's default, named explicitly: Gem has no tags for a connector to
    // pick a package from (Justifacts, for one, reads its package from posting tags otherwise).
    request.package = package.or_else(|| {
        available
            .iter()
            .find(|(_, default)| *default)
            .map(|(n, _)| n.clone())
    });
    let shown_package = request.package.clone();
    match screening::enqueue(&app.store, &id, &sent, &request, idempotency_key.as_deref()).await {
        Ok(Queued::New {
            screening_id,
            event_id,
        }) => {
            app.wake.notify_one();
            app.timeline.emit(TimelineEvent::WebhookAccepted {
                integration: id.clone(),
                source: "gem".into(),
                event_id,
                summary: format!(
                    "send screening {screening_id} for application {} (package {})",
                    request.application_id,
                    shown_package.as_deref().unwrap_or("default")
                ),
            });
            (
                StatusCode::ACCEPTED,
                Json(json!({ "id": screening_id, "status": "queued", "package": shown_package })),
            )
                .into_response()
        }
        Ok(repeat) => answer_repeat(&app, &id, repeat),
        Err(e) => {
            tracing::error!(error = %e, "cannot store a Gem screening");
            ApiError::storage_retry_later().into_response()
        }
    }
}

/// The answer to a repeated `Idempotency-Key`: the first screening, or 409 for another body.
fn answer_repeat(app: &App, integration: &str, repeat: Queued) -> Response {
    match repeat {
        Queued::Existing(screening_id) | Queued::New { screening_id, .. } => {
            let package = screening::get(&app.store, integration, &screening_id)
                .ok()
                .flatten()
                .and_then(|s| s.package);
            (
                StatusCode::ACCEPTED,
                Json(json!({ "id": screening_id, "status": "queued", "package": package })),
            )
                .into_response()
        }
        Queued::Conflict => ApiError::new(
            StatusCode::CONFLICT,
            "Idempotency-Key was already used with a different request",
        )
        .into_response(),
    }
}

async fn status(
    State(app): State<Arc<App>>,
    Path((id, screening_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&app, &id, &headers) {
        return *r;
    }
    let found = match screening::get(&app.store, &id, &screening_id) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return ApiError::new(StatusCode::NOT_FOUND, "unknown screening").into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read a Gem screening");
            return ApiError::storage_retry_later().into_response();
        }
    };
    let order = match &found.order_ref {
        Some(r) => app.store.order(&id, r).ok().flatten(),
        None => None,
    };
    let mut out = json!({
        "id": found.id,
        "application_id": found.application_id,
        "package": found.package,
        "order_ref": found.order_ref,
    });
    match order {
        Some(o) => {
            out["status"] = json!(o.state);
            out["label"] = json!(o.label);
            out["results_url"] = json!(o.report_url);
            out["score"] = json!(o.score);
            out["verdict"] = json!(o.verdict);
        }
        // Not placed yet: the start event is waiting or retrying.
        None => out["status"] = json!("queued"),
    }
    // Starting it was given up before any vendor order existed: `error`, as in the webhook Gem
    // got. The detail is the operator's (logs, events); Gem gets where to look.
    let placed = found
        .order_ref
        .as_deref()
        .is_some_and(|r| r != screening::failed_order_ref(&found.id));
    if !placed {
        if let Some(e) = app.store.event(found.event_id).ok().flatten() {
            if e.state == EventState::Dead {
                out["status"] = json!("error");
                out["error"] = json!(format!(
                    "the screening could not be started; the operator can see why in event {}",
                    e.id
                ));
            }
        }
    }
    Json(out).into_response()
}
