//! The admin API under `/admin`: connector versions ([`connectors`]), integrations
//! ([`integrations`]), the API keys of Gem integrations ([`gem_keys`]), Lever OAuth
//! connect/disconnect ([`lever`]) and the event queue with each event's attempt history
//! ([`events`]). Mounted only when `server.admin_token` is set; every route requires
//! `Authorization: Bearer <token>`, compared in constant time (401 otherwise). Errors are
//! `{"error": "..."}` with a 4xx for bad input, and a rejected request changes nothing.

mod connectors;
mod events;
mod gem_keys;
mod integrations;
mod lever;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::app::App;

/// The admin routes, or None when no admin token is configured (the API is off).
pub fn router(app: Arc<App>) -> Option<Router<Arc<App>>> {
    app.config.server.admin_token.as_ref()?;
    let limit = app.config.server.admin_max_upload_bytes;
    Some(
        Router::new()
            .merge(connectors::routes())
            .merge(integrations::routes())
            .merge(gem_keys::routes())
            .merge(events::routes())
            .merge(lever::routes())
            .layer(DefaultBodyLimit::max(limit))
            .layer(middleware::from_fn_with_state(app, authorize)),
    )
}

/// Lets a request through only with the right bearer token.
async fn authorize(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(expected) = &app.config.server.admin_token else {
        return error(StatusCode::NOT_FOUND, "the admin API is off");
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Comparing digests keeps the comparison constant-time even in the token's length.
    let same: bool = Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(expected.expose().as_bytes()))
        .into();
    if !same {
        tracing::warn!(path = %request.uri().path(), "admin request with a missing or wrong token");
        return error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
    }
    next.run(request).await
}

/// A JSON error response.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}
