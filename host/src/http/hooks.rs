//! Intake: webhooks from the ATS and callbacks from vendors. Every accepted request is committed
//! to the store *before* its 2xx; a refused one stores nothing. Their writes go through the
//! store's group commit ([`crate::store::writer`]): concurrent requests share one transaction
//! (one fsync), each answered once that transaction committed; if it cannot be, every request
//! in it gets 503 `storage unavailable, retry later` and nothing of them is stored.
//!
//! - `POST /hooks/{integration}/{source}`: an ATS webhook (`source` is the ATS's kind, e.g.
//!   `lever`), checked by the integration's adapter ([`Ats::verify_webhook`]): wrong signature or
//!   stale → 401, malformed → 400, too large → 413, unknown integration or a source the
//!   integration's ATS does not send → 404, disabled → 503, a dedupe key reused with a different
//!   body → 409. A redelivery of an accepted webhook → 200 `duplicate`, stored once. A test ping
//!   → 200, nothing stored.
//! - `ANY /hooks/{integration}/vendor[/...]`: vendor callbacks, handed raw to the integration's
//!   connector (run on the guest pool, never on the HTTP threads), which verifies the vendor's
//!   signature and chooses status, safe headers and body of the reply; the host builds the reply
//!   ([`super::reply`]). Its status updates (at most `runtime.limits.callback_updates`, each
//!   bounded) are committed all or none before the reply. No free connector slot → 503
//!   with `Retry-After`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use super::reply;
use crate::app::App;
use crate::ats::{Ats, Intake, Rejection};
use crate::flow::{VendorStatus, VENDOR_CALLBACK, VENDOR_STATUS};
use crate::recording::masked_headers_json;
use crate::store::{now_ms, Enqueued};
use crate::timeline::TimelineEvent;
use crate::wasm::connector::RawHttp;
use crate::wasm::quota::{check_updates, clip};

/// `POST /hooks/{integration}/{source}`: an ATS webhook. The request is taken whole, not as a
/// `HeaderMap` and `Bytes`: axum's `HeaderMap` extractor clones every header of every webhook;
/// here they are moved out of the request, and the body read as the `Bytes` extractor reads it
/// (its limit and 413).
pub async fn ats(
    State(app): State<Arc<App>>,
    Path((id, path_source)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let headers = std::mem::take(&mut parts.headers);
    let body = match Bytes::from_request(Request::from_parts(parts, body), &()).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    let metrics = app.metrics.clone();
    let Some(integration) = app.integration(&id) else {
        // Not the path's text: metric labels must not grow with what strangers send.
        metrics.webhook("ats", "unknown_integration");
        return ApiError::new(StatusCode::NOT_FOUND, "unknown integration").into_response();
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
        ApiError::new(status, reason).into_response()
    };
    let verified = ats.verify_webhook(
        // The path's source, not the ATS kind: a Lever route on a Gem integration is a 404.
        &path_source,
        &body,
        now_ms(),
        app.config.server.webhook_max_age_secs,
    );
    let Some(verified) = verified else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            format!("not a {source} webhook route"),
        )
        .into_response();
    };
    if !integration.config.enabled {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "integration is disabled".into(),
        );
    }
    let (kind, dedupe, payload) = match verified {
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
        }) => (kind, dedupe_key, payload),
    };
    if let Err(e) = app.connector(&integration) {
        // A verified event is not accepted (pings still are): it could only be dead-lettered.
        // The ATS retries after Retry-After.
        metrics.webhook(source, "connector_unavailable");
        return not_ready(&id, e);
    }
    let masked = masked_headers_json(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    // The group commit wakes a worker once per batch of new events (`Store::queued`).
    match app
        .store
        .enqueue_received(
            &id,
            kind,
            dedupe,
            payload.clone(),
            masked,
            format!("valid ({source})"),
        )
        .await
    {
        Ok(Enqueued::New(event_id)) => {
            metrics.webhook(source, "accepted");
            // Built only when someone follows the timeline: not on every webhook.
            if app.timeline.watched() {
                app.timeline.emit(TimelineEvent::WebhookAccepted {
                    integration: id.clone(),
                    source: source.into(),
                    event_id,
                    summary: ats.summary(kind, &payload),
                });
            }
            answered("accepted", event_id)
        }
        Ok(Enqueued::Duplicate {
            id: event_id,
            same_payload: true,
        }) => {
            metrics.webhook(source, "duplicate");
            answered("duplicate", event_id)
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
            ApiError::storage_retry_later().into_response()
        }
    }
}

/// 200 `{"event":<id>,"status":<status>}`, written without building a JSON tree (the answer to
/// every stored webhook).
fn answered(status: &'static str, event: i64) -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        format!(r#"{{"event":{event},"status":"{status}"}}"#),
    )
        .into_response()
}

/// 503 + `Retry-After` for an integration whose connector is not loaded (not ready).
fn not_ready(id: &str, e: crate::app::NotLoaded) -> Response {
    tracing::warn!(integration = %id, reason = %e, "webhook refused: integration not ready");
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("integration not ready: {e}"),
    )
    .into_response();
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

/// `ANY /hooks/{integration}/vendor[/...]`: a vendor callback. The connector runs on the guest
/// pool (never on this thread); its updates are checked against the limits and committed
/// together (one write of the group commit) before the reply, which the host builds
/// ([`super::reply`]).
pub async fn vendor(
    State(app): State<Arc<App>>,
    Path(params): Path<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = params.get("integration").cloned().unwrap_or_default();
    let metrics = app.metrics.clone();
    let Some(integration) = app.integration(&id) else {
        metrics.webhook("vendor", "unknown_integration");
        return ApiError::new(StatusCode::NOT_FOUND, "unknown integration").into_response();
    };
    if !integration.config.enabled {
        metrics.webhook("vendor", "disabled");
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "integration is disabled")
            .into_response();
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
    let limits = app.limits.clone();
    let runtime = app.registry.runtime().clone();
    let called = connector.clone();
    let outcome = app
        .guests
        .run(&id, async move {
            called.handle_callback(&runtime, ctx, request).await
        })
        .await;
    let failed = |reason: String, limit: Option<&str>| {
        // The vendor retries on 5xx; the failure is recorded with its reason for operators.
        let reason = clip(&reason, limits.error_bytes);
        if let Some(limit) = limit {
            metrics.sandbox_limit(&connector.manifest.id, limit);
        }
        tracing::error!(integration = %id, connector = %version, error = %reason, "callback handling failed");
        let summary = json!({
            "method": method.as_str(),
            "path": uri.path(),
            "body": String::from_utf8_lossy(&body),
        });
        if let Err(store_error) = app.store.record_failure(
            &id,
            VENDOR_CALLBACK,
            &summary.to_string(),
            &reason,
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
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("connector failed: {reason}"),
        )
        .into_response()
    };
    let (response, updates) = match outcome {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return failed(e.to_string(), None),
        Err(busy) => {
            metrics.webhook("vendor", "busy");
            tracing::warn!(integration = %id, reason = %busy, "callback refused: no connector slot");
            let mut r = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{busy}, retry later"),
            )
            .into_response();
            r.headers_mut()
                .insert(RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
            return r;
        }
    };
    let success = (200..300).contains(&response.status);
    let updates = if success { updates } else { Vec::new() };
    if let Err(reason) = check_updates(&updates, &limits) {
        let limit = if reason.contains("callback_updates") {
            "callback_updates"
        } else {
            "status_field_bytes"
        };
        return failed(format!("callback refused: {reason}"), Some(limit));
    }
    // Identical updates (a redelivered callback) share a dedupe key and are queued once.
    let mut rows = Vec::with_capacity(updates.len());
    for update in updates {
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
        match serde_json::to_string(&payload) {
            Ok(p) => rows.push((dedupe, p)),
            Err(e) => return failed(format!("cannot encode a status update: {e}"), None),
        }
    }
    let applied = rows.len();
    if applied > 0 {
        if let Err(e) = app
            .store
            .enqueue_all_batched(&id, VENDOR_STATUS, rows)
            .await
        {
            tracing::error!(error = %e, "cannot store status updates");
            return ApiError::storage_retry_later().into_response();
        }
        app.wake.notify_one();
    }
    let reply = reply::build(response, &limits);
    for limit in &reply.limited {
        metrics.sandbox_limit(&connector.manifest.id, limit);
    }
    let status = reply.response.status();
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
    metrics.webhook("vendor", outcome);
    reply.response
}
