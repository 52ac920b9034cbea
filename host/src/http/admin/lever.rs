//! `/admin/integrations/{id}/lever/...`: connecting a Lever integration through the host's
//! Lever OAuth app, and its connection state in the integration view.
//!
//! - `POST /admin/integrations/{id}/lever/connect` → `{"authorize_url", "expires_at",
//!   "redirect_uri"}`: a fresh single-use connect link (the operator, or the customer they send
//!   it to, opens it in a browser, logs into Lever and clicks Accept).
//! - `GET  /admin/integrations/{id}/lever/connect` → `302` to that link (for a client that sends
//!   the admin token and follows redirects).
//! - `POST|DELETE /admin/integrations/{id}/lever/disconnect` → revokes the grant at Lever
//!   (RFC 7009) and deletes the stored tokens either way; events then wait (parked).
//!   `DELETE /admin/integrations/{id}` does the same first.
//!
//! The callback (`/oauth/lever/callback`) is public: the `state` authenticates it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error;
use crate::app::App;
use crate::clock::rfc3339;
use crate::config::{AtsConfig, IntegrationConfig};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/admin/integrations/{id}/lever/connect",
            post(connect).get(connect_redirect),
        )
        .route(
            "/admin/integrations/{id}/lever/disconnect",
            post(disconnect).delete(disconnect),
        )
}

fn ms(at: Option<i64>) -> Value {
    at.map_or(Value::Null, |t| json!(rfc3339(t / 1000)))
}

/// The OAuth integration `id`, or the error to answer.
fn oauth_integration(app: &App, id: &str) -> Result<(), Box<Response>> {
    let Some(integration) = app.integration(id) else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no integration `{id}`"),
        )));
    };
    match &integration.config.ats {
        AtsConfig::Lever(l) if l.oauth => Ok(()),
        _ => Err(Box::new(error(
            StatusCode::CONFLICT,
            format!("integration `{id}` is not connected through the Lever OAuth app (set `ats.oauth` to true)"),
        ))),
    }
}

fn link(app: &App, id: &str) -> Result<(String, i64), Box<Response>> {
    oauth_integration(app, id)?;
    app.lever_oauth.authorize_url(id).map_err(|e| {
        Box::new(match e {
            crate::ats::lever::oauth::OAuthError::Store(e) => {
                tracing::error!(error = %e, "cannot store an OAuth state");
                error(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
            }
            e => error(StatusCode::CONFLICT, e.to_string()),
        })
    })
}

async fn connect(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match link(&app, &id) {
        Ok((url, expires_at)) => Json(json!({
            "integration": id,
            "authorize_url": url,
            "expires_at": ms(Some(expires_at)),
            "redirect_uri": app.lever_oauth.redirect_uri(),
        }))
        .into_response(),
        Err(resp) => *resp,
    }
}

async fn connect_redirect(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match link(&app, &id) {
        Ok((url, _)) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        Err(resp) => *resp,
    }
}

async fn disconnect(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if let Err(resp) = oauth_integration(&app, &id) {
        return *resp;
    }
    match app.lever_oauth.disconnect(&id).await {
        Ok((had_tokens, revoke_error)) => Json(json!({
            "integration": id,
            "status": "disconnected",
            "had_tokens": had_tokens,
            "revoked_at_lever": had_tokens && revoke_error.is_none(),
            "revoke_error": revoke_error,
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(integration = %id, error = %e, "cannot disconnect");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
        }
    }
}

/// Before an integration is deleted: revokes its Lever OAuth grant, if it has one.
pub(super) async fn revoke_before_delete(app: &App, id: &str) {
    if oauth_integration(app, id).is_err() {
        return;
    }
    if let Err(e) = app.lever_oauth.disconnect(id).await {
        tracing::warn!(integration = %id, error = %e, "cannot revoke the Lever grant of a deleted integration");
    }
}

/// The `connection` part of a Lever integration's admin view: how it authenticates, the last
/// Verify Connection ping, and for an OAuth integration the grant's state. No token values.
pub(super) fn connection_view(app: &App, c: &IntegrationConfig) -> Option<Value> {
    let AtsConfig::Lever(lever) = &c.ats else {
        return None;
    };
    let row = app.store.connection(&c.id).unwrap_or_default();
    let auth = if lever.oauth {
        "oauth"
    } else if lever.oauth_access_token.is_some() {
        "access_token"
    } else {
        "api_key"
    };
    let mut view = json!({
        "auth": auth,
        "last_verified_at": ms(row.verified_at),
    });
    if lever.oauth {
        let tokens = app.store.oauth_tokens(&c.id).ok().flatten();
        let status = match (&tokens, row.disconnected_at) {
            (Some(_), _) => "connected",
            (None, Some(_)) => "disconnected",
            (None, None) => "not_connected",
        };
        view["oauth"] = json!({
            "status": status,
            "connected_at": if tokens.is_some() { ms(row.connected_at) } else { Value::Null },
            "access_token_expires_at": ms(tokens.as_ref().and_then(|t| t.expires_at)),
            "refreshed_at": ms(tokens.as_ref().and_then(|t| t.refreshed_at)),
            "has_refresh_token": tokens.as_ref().is_some_and(|t| t.refresh_token.is_some()),
            "scope": tokens.as_ref().and_then(|t| t.scope.clone()),
            "disconnected_at": if tokens.is_none() { ms(row.disconnected_at) } else { Value::Null },
            "disconnect_reason": if tokens.is_none() { json!(row.disconnect_reason) } else { Value::Null },
            "parked_events": app.store.parked_events(&c.id).unwrap_or(0),
            "connect": format!("POST /admin/integrations/{}/lever/connect", c.id),
        });
    }
    Some(view)
}
