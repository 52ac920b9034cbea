//! Intake: webhooks from the ATS and callbacks from vendors. Every accepted request is committed
//! to the store *before* its 2xx; a refused one stores nothing.
//!
//! - `POST /hooks/{integration}/{source}`: an ATS webhook (`source` is the ATS's kind, e.g.
//!   `lever`), checked by the integration's adapter ([`Ats::verify_webhook`]): wrong signature or
//!   stale → 401, malformed → 400, too large → 413, unknown integration or a source the
//!   integration's ATS does not send → 404, disabled → 503, a dedupe key reused with a different
//!   body → 409. A redelivery of an accepted webhook → 200 `duplicate`, stored once. A test ping
//!   → 200, nothing stored.
//! - `ANY /hooks/{integration}/vendor[/...]`: vendor callbacks, handed raw to the integration's
//!   connector, which verifies the vendor's signature and chooses the response. Its status updates
//!   are committed before that response is returned.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error;
use crate::app::App;
use crate::ats::{Ats, Intake, Rejection};
use crate::flow::{VendorStatus, VENDOR_CALLBACK, VENDOR_STATUS};
use crate::store::{now_ms, Enqueued};
use crate::timeline::TimelineEvent;
use crate::wasm::connector::RawHttp;

/// `POST /hooks/{integration}/{source}`: an ATS webhook.
pub async fn ats(
    State(app): State<Arc<App>>,
    Path((id, path_source)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let metrics = app.registry.runtime().metrics().clone();
    let Some(integration) = app.integration(&id) else {
        // Not the path's text: metric labels must not grow with what strangers send.
        metrics.webhook("ats", "unknown_integration");
        return error(StatusCode::NOT_FOUND, "unknown integration");
    };
    let ats: &dyn Ats = integration.ats.as_ref();
    let source = ats.kind();
    let reject = |status: StatusCode, reason: String| {
        metrics.webhook(source, rejection_label(status));
        tracing::warn!(integration = %id, status = status.as_u16(), %reason, "{source} webhook rejected");
        app.timeline.emit(TimelineEvent::WebhookRejected {
            integration: id.clone(),
            source: source.into(),
            status: status.as_u16(),
            reason: reason.clone(),
        });
        error(status, reason)
    };
    let verified = ats.verify_webhook(
        // The path's source, not the ATS kind: a Lever route on a Gem integration is a 404.
        &path_source,
        &body,
        now_ms(),
        app.config.server.webhook_max_age_secs,
    );
    let Some(verified) = verified else {
        return error(
            StatusCode::NOT_FOUND,
            format!("not a {source} webhook route"),
        );
    };
    if !integration.config.enabled {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "integration is disabled".into(),
        );
    }
    let (kind, dedupe, payload, summary) = match verified {
        Err(r @ Rejection::Malformed(_)) => return reject(StatusCode::BAD_REQUEST, r.to_string()),
        Err(r @ Rejection::Unauthorized(_)) => {
            return reject(StatusCode::UNAUTHORIZED, r.to_string())
        }
        Ok(Intake::Ping) => {
            // Verify Connection: no event, but the operator sees when it last worked.
            if let Err(e) = app.store.record_verified(&id) {
                tracing::error!(integration = %id, error = %e, "cannot record a verify ping");
            }
            return Json(json!({ "status": "ok" })).into_response();
        }
        Ok(Intake::Ignored(event)) => {
            return Json(json!({ "status": "ignored", "event": event })).into_response()
        }
        Ok(Intake::Event {
            kind,
            dedupe_key,
            payload,
            summary,
        }) => (kind, dedupe_key, payload, summary),
    };
    if let Err(e) = app.connector(&integration) {
        // A verified event is not accepted (pings still are): it could only be dead-lettered.
        // The ATS retries after Retry-After.
        metrics.webhook(source, "connector_unavailable");
        return not_ready(&id, e);
    }
    match app.store.enqueue(&id, kind, &dedupe, &payload) {
        Ok(Enqueued::New(event_id)) => {
            metrics.webhook(source, "accepted");
            app.wake.notify_one();
            app.timeline.emit(TimelineEvent::WebhookAccepted {
                integration: id.clone(),
                source: source.into(),
                event_id,
                summary,
            });
            Json(json!({ "status": "accepted", "event": event_id })).into_response()
        }
        Ok(Enqueued::Duplicate {
            id: event_id,
            same_payload: true,
        }) => {
            metrics.webhook(source, "duplicate");
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
            metrics.webhook(source, "storage_unavailable");
            tracing::error!(error = %e, "cannot store webhook");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry later",
            )
        }
    }
}

/// 503 + `Retry-After` for an integration whose connector is not loaded (not ready).
fn not_ready(id: &str, e: crate::app::NotLoaded) -> Response {
    tracing::warn!(integration = %id, reason = %e, "webhook refused: integration not ready");
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("integration not ready: {e}"),
    );
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static(NOT_READY_RETRY_AFTER),
    );
    response
}

/// Seconds an ATS or vendor is asked to wait before retrying a webhook for a not-ready
/// integration.
const NOT_READY_RETRY_AFTER: &str = "60";

/// The metrics label of a refused ATS webhook.
fn rejection_label(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "malformed",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::CONFLICT => "replay",
        StatusCode::SERVICE_UNAVAILABLE => "disabled",
        _ => "other",
    }
}

/// `ANY /hooks/{integration}/vendor[/...]`: a vendor callback.
pub async fn vendor(
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
            return not_ready(&id, e);
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
