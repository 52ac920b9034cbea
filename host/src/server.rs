//! The HTTP surface: webhook intake from the ATS and vendor callbacks.
//!
//! - `POST /hooks/{integration}/lever`: Lever webhooks. Verified (signature, freshness, one-time
//!   token), then committed to the store *before* the 200. Wrong signature or stale → 401,
//!   malformed → 400, too large → 413, unknown integration → 404, a token reused with a different
//!   body → 409; none of these stores anything. A redelivery of an accepted webhook → 200, stored once.
//! - `ANY /hooks/{integration}/vendor[/...]`: vendor callbacks, handed raw to the integration's
//!   connector, which verifies the vendor's signature and chooses the response. Its status updates
//!   are committed before that response is returned.
//! - `/gem/{integration}/...`: the Gem-facing API (see [`crate::gem::api`]).
//! - `GET /healthz`; `GET /metrics` (Prometheus text, see [`crate::metrics`]).
//! - `/admin/...` when an admin token is configured (see [`crate::admin`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

use crate::app::App;
use crate::connector::RawHttp;
use crate::flow::{VendorStatus, LEVER_STAGE_CHANGE, VENDOR_CALLBACK, VENDOR_STATUS};
use crate::lever::webhook::{self, Rejection, Verified};
use crate::store::{now_ms, Enqueued};
use crate::timeline::TimelineEvent;

/// The router of a host.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.server.max_body_bytes;
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/hooks/{integration}/lever", post(lever_hook))
        .route("/hooks/{integration}/vendor", any(vendor_hook))
        .route("/hooks/{integration}/vendor/{*rest}", any(vendor_hook))
        .merge(crate::gem::api::routes())
        .layer(DefaultBodyLimit::max(limit));
    // Merged after the hooks' body limit so uploads get the admin limit instead.
    if let Some(admin) = crate::admin::router(app.clone()) {
        router = router.merge(admin);
    }
    router.with_state(app)
}

/// Serves `router` on `listener` until `stop` turns true.
pub fn spawn(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, router(app))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    })
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let depth = app.store.queue_depth().ok();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        app.registry.runtime().metrics().render(depth),
    )
        .into_response()
}

/// A JSON error response `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn lever_hook(State(app): State<Arc<App>>, Path(id): Path<String>, body: Bytes) -> Response {
    let metrics = app.registry.runtime().metrics().clone();
    let Some(integration) = app.integration(&id) else {
        metrics.webhook("lever", "unknown_integration");
        return error(StatusCode::NOT_FOUND, "unknown integration");
    };
    let reject = |status: StatusCode, reason: String| {
        metrics.webhook("lever", rejection_label(status));
        tracing::warn!(integration = %id, status = status.as_u16(), %reason, "Lever webhook rejected");
        app.timeline.emit(TimelineEvent::WebhookRejected {
            integration: id.clone(),
            source: "lever".into(),
            status: status.as_u16(),
            reason: reason.clone(),
        });
        error(status, reason)
    };
    if !integration.config.enabled {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "integration is disabled".into(),
        );
    }
    let Some((lever, _)) = integration.lever() else {
        return error(StatusCode::NOT_FOUND, "not a Lever integration");
    };
    let key = lever.signature_token.expose();
    let verified = webhook::verify(&body, key, app.config.server.webhook_max_age_secs, now_ms());
    let (hook, change) = match verified {
        Err(r @ Rejection::Malformed(_)) => return reject(StatusCode::BAD_REQUEST, r.to_string()),
        Err(r) => return reject(StatusCode::UNAUTHORIZED, r.to_string()),
        Ok((_, Verified::Ping)) => return Json(json!({ "status": "ok" })).into_response(),
        Ok((_, Verified::Ignored(event))) => {
            return Json(json!({ "status": "ignored", "event": event })).into_response()
        }
        Ok((hook, Verified::StageChange(change))) => (hook, change),
    };
    // The body parsed as JSON, so it is UTF-8.
    let payload = String::from_utf8_lossy(&body);
    let dedupe = format!("lever:{}", hook.token);
    match app
        .store
        .enqueue(&id, LEVER_STAGE_CHANGE, &dedupe, &payload)
    {
        Ok(Enqueued::New(event_id)) => {
            metrics.webhook("lever", "accepted");
            app.wake.notify_one();
            app.timeline.emit(TimelineEvent::WebhookAccepted {
                integration: id.clone(),
                source: "lever".into(),
                event_id,
                summary: format!(
                    "candidateStageChange opportunity {} → stage {}",
                    change.opportunity_id, change.to_stage_id
                ),
            });
            Json(json!({ "status": "accepted", "event": event_id })).into_response()
        }
        Ok(Enqueued::Duplicate {
            id: event_id,
            same_payload: true,
        }) => {
            metrics.webhook("lever", "duplicate");
            Json(json!({ "status": "duplicate", "event": event_id })).into_response()
        }
        Ok(Enqueued::Duplicate {
            same_payload: false,
            ..
        }) => reject(
            StatusCode::CONFLICT,
            "token already used by another delivery (replay)".into(),
        ),
        Err(e) => {
            metrics.webhook("lever", "storage_unavailable");
            tracing::error!(error = %e, "cannot store webhook");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry later",
            )
        }
    }
}

/// The metrics label of a refused Lever webhook.
fn rejection_label(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "malformed",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::CONFLICT => "replay",
        StatusCode::SERVICE_UNAVAILABLE => "disabled",
        _ => "other",
    }
}

async fn vendor_hook(
    State(app): State<Arc<App>>,
    Path(params): Path<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = params.get("integration").cloned().unwrap_or_default();
    let metrics = app.registry.runtime().metrics().clone();
    let Some(integration) = app.integration(&id) else {
        metrics.webhook("vendor", "unknown_integration");
        return error(StatusCode::NOT_FOUND, "unknown integration");
    };
    if !integration.config.enabled {
        metrics.webhook("vendor", "disabled");
        return error(StatusCode::SERVICE_UNAVAILABLE, "integration is disabled");
    }
    let connector = match app.connector(&integration) {
        Ok(c) => c,
        Err(e) => {
            metrics.webhook("vendor", "connector_unavailable");
            return error(StatusCode::SERVICE_UNAVAILABLE, e.message);
        }
    };
    let request = RawHttp {
        method: method.to_string(),
        path: format!("/{}", params.get("rest").map(String::as_str).unwrap_or("")),
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into(),
                )
            })
            .collect(),
        body: body.to_vec(),
        ..RawHttp::default()
    };
    let ctx = app.call_context(&integration, &connector);
    let version = connector.version_tag();
    let (response, updates) = match connector
        .handle_callback(app.registry.runtime(), ctx, request)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            // The vendor retries on 5xx; the failure is recorded with its reason for operators.
            tracing::error!(integration = %id, connector = %version, error = %e, "callback handling failed");
            let summary = json!({
                "method": method.as_str(),
                "path": uri.path(),
                "body": String::from_utf8_lossy(&body),
            });
            if let Err(store_error) = app.store.record_failure(
                &id,
                VENDOR_CALLBACK,
                &summary.to_string(),
                &e.to_string(),
                &version,
            ) {
                tracing::error!(error = %store_error, "cannot record the failed callback");
            }
            app.timeline.emit(TimelineEvent::CallbackHandled {
                integration: id.clone(),
                status: 500,
                updates: 0,
            });
            metrics.webhook("vendor", "connector_failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("connector failed: {e}"),
            );
        }
    };
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let applied = if status.is_success() {
        updates.len()
    } else {
        0
    };
    for update in updates.into_iter().take(applied) {
        // Identical updates (a redelivered callback) share a dedupe key and are queued once.
        let payload = VendorStatus {
            connector_version: version.clone(),
            update,
        };
        let key_source = serde_json::to_string(&payload.update).unwrap_or_default();
        let dedupe = format!(
            "status:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                key_source.as_bytes()
            ))
        );
        let stored = serde_json::to_string(&payload)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                app.store
                    .enqueue(&id, VENDOR_STATUS, &dedupe, &p)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = stored {
            tracing::error!(error = %e, "cannot store status update");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry later",
            );
        }
    }
    if applied > 0 {
        app.wake.notify_one();
    }
    app.timeline.emit(TimelineEvent::CallbackHandled {
        integration: id,
        status: status.as_u16(),
        updates: applied,
    });
    let outcome = if status.is_success() {
        "accepted".to_string()
    } else {
        format!("connector_{}", status.as_u16())
    };
    metrics.webhook("vendor", &outcome);
    let mut out = (status, response.body).into_response();
    for (name, value) in response.headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            out.headers_mut().insert(n, v);
        }
    }
    out
}
