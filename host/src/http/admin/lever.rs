//! `/admin/integrations/{id}/lever/...`: connecting a Lever integration through the host's
//! Lever OAuth app, and its connection state in the integration view.
//!
//! - `POST /admin/integrations/{id}/lever/connect` → `{"authorize_url", "expires_at",
//!   "redirect_uri"}`: a fresh single-use connect link (the operator, or the customer they send
//!   it to, opens it in a browser, logs into Lever and clicks Accept).
//! - `GET  /admin/integrations/{id}/lever/connect` → `302` to that link (for a client that sends
//!   the admin token and follows redirects).
//! - `POST|DELETE /admin/integrations/{id}/lever/disconnect` → revokes the grant at Lever
//!   (RFC 7009) and deletes the stored tokens either way: the integration is off (candidates
//!   moved afterwards are recorded as not sent; events received before wait for a reconnect).
//!   `DELETE /admin/integrations/{id}` does the same first.
//!
//! The callback (`/oauth/lever/callback`) is public: the `state` authenticates it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::clock::rfc3339;
use crate::config::{AtsConfig, IntegrationConfig};
use crate::http::error::{ApiError, ErrorBody};
use crate::store::WaitFor;

pub(super) fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(connect, connect_redirect))
        .routes(routes!(disconnect))
}

/// A fresh single-use link to connect an integration to Lever.
#[derive(Serialize, ToSchema)]
pub struct ConnectLink {
    pub integration: String,
    /// Open in a browser, log into Lever and click Accept.
    pub authorize_url: String,
    /// When the link stops working (RFC 3339).
    pub expires_at: String,
    /// Where Lever sends the browser back (`server.public_url` + the callback path).
    pub redirect_uri: Option<String>,
}

/// The outcome of a disconnection.
#[derive(Serialize, ToSchema)]
pub struct Disconnected {
    pub integration: String,
    /// Always `disconnected`.
    pub status: String,
    /// Whether tokens were stored (they are deleted either way).
    pub had_tokens: bool,
    /// Whether Lever confirmed the revocation.
    pub revoked_at_lever: bool,
    /// Why the revocation at Lever failed, if it did.
    pub revoke_error: Option<String>,
}

/// The `connection` part of a Lever integration's view. No token values.
#[derive(Serialize, ToSchema)]
pub struct LeverConnection {
    /// `oauth`, `access_token` or `api_key`.
    pub auth: String,
    /// The last Verify Connection ping (RFC 3339).
    pub last_verified_at: Option<String>,
    /// OAuth integrations only: the grant's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthGrant>,
}

/// The state of a Lever OAuth grant. Times are RFC 3339.
#[derive(Serialize, ToSchema)]
pub struct OAuthGrant {
    /// `connected`, `disconnected` or `not_connected`.
    pub status: String,
    pub connected_at: Option<String>,
    pub access_token_expires_at: Option<String>,
    pub refreshed_at: Option<String>,
    pub has_refresh_token: bool,
    pub scope: Option<String>,
    pub disconnected_at: Option<String>,
    pub disconnect_reason: Option<String>,
    /// Events waiting for a grant (`waiting_for: connect`): received before a revoke, or before
    /// the first connect. Those received after a revoke are not sent (skipped, with the reason).
    pub waiting_events: i64,
    /// The request that makes a connect link.
    pub connect: String,
}

fn ms(at: Option<i64>) -> Option<String> {
    at.map(|t| rfc3339(t / 1000))
}

/// Refuses unless `id` is connected through the Lever OAuth app.
fn oauth_integration(app: &App, id: &str) -> Result<(), ApiError> {
    let Some(integration) = app.integration(id) else {
        return Err(ApiError::not_found(format!("no integration `{id}`")));
    };
    match &integration.config.ats {
        AtsConfig::Lever(l) if l.oauth => Ok(()),
        _ => Err(ApiError::conflict(format!(
            "integration `{id}` is not connected through the Lever OAuth app (set `ats.oauth` to true)"
        ))),
    }
}

fn link(app: &App, id: &str) -> Result<(String, i64), ApiError> {
    oauth_integration(app, id)?;
    app.lever_oauth.authorize_url(id).map_err(|e| match e {
        crate::ats::lever::oauth::OAuthError::Store(e) => {
            tracing::error!(error = %e, "cannot store an OAuth state");
            ApiError::storage()
        }
        e => ApiError::conflict(e.to_string()),
    })
}

/// A fresh single-use connect link.
#[utoipa::path(post, path = "/admin/integrations/{id}/lever/connect", tag = "lever",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 200, body = ConnectLink),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 409, description = "not an OAuth integration, or no OAuth app configured", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn connect(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<ConnectLink>, ApiError> {
    let (authorize_url, expires_at) = link(&app, &id)?;
    Ok(Json(ConnectLink {
        integration: id,
        authorize_url,
        expires_at: rfc3339(expires_at / 1000),
        redirect_uri: app.lever_oauth.redirect_uri(),
    }))
}

/// A redirect to a fresh connect link (for a client that follows redirects).
#[utoipa::path(get, path = "/admin/integrations/{id}/lever/connect", tag = "lever",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 302, description = "to Lever's authorize page (`Location`)"),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 409, description = "not an OAuth integration, or no OAuth app configured", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn connect_redirect(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (url, _) = link(&app, &id)?;
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

/// Revokes the grant at Lever (RFC 7009) and deletes the stored tokens either way.
#[utoipa::path(method(post, delete), path = "/admin/integrations/{id}/lever/disconnect", tag = "lever",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 200, body = Disconnected),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 409, description = "not an OAuth integration", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn disconnect(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Disconnected>, ApiError> {
    oauth_integration(&app, &id)?;
    match app.lever_oauth.disconnect(&id).await {
        Ok((had_tokens, revoke_error)) => Ok(Json(Disconnected {
            integration: id,
            status: "disconnected".into(),
            had_tokens,
            revoked_at_lever: had_tokens && revoke_error.is_none(),
            revoke_error,
        })),
        Err(e) => {
            tracing::error!(integration = %id, error = %e, "cannot disconnect");
            Err(ApiError::storage())
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
pub(super) fn connection_view(app: &App, c: &IntegrationConfig) -> Option<LeverConnection> {
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
    let oauth = lever.oauth.then(|| {
        let tokens = app.store.oauth_tokens(&c.id).ok().flatten();
        let status = match (&tokens, row.disconnected_at) {
            (Some(_), _) => "connected",
            (None, Some(_)) => "disconnected",
            (None, None) => "not_connected",
        };
        let connected = tokens.is_some();
        OAuthGrant {
            status: status.into(),
            connected_at: ms(row.connected_at).filter(|_| connected),
            access_token_expires_at: ms(tokens.as_ref().and_then(|t| t.expires_at)),
            refreshed_at: ms(tokens.as_ref().and_then(|t| t.refreshed_at)),
            has_refresh_token: tokens.as_ref().is_some_and(|t| t.refresh_token.is_some()),
            scope: tokens.as_ref().and_then(|t| t.scope.clone()),
            disconnected_at: ms(row.disconnected_at).filter(|_| !connected),
            disconnect_reason: row.disconnect_reason.clone().filter(|_| !connected),
            waiting_events: app.store.waiting_for(&c.id, WaitFor::Connect).unwrap_or(0),
            connect: format!("POST /admin/integrations/{}/lever/connect", c.id),
        }
    });
    Some(LeverConnection {
        auth: auth.into(),
        last_verified_at: ms(row.verified_at),
        oauth,
    })
}
