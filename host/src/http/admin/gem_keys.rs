//! `/admin/integrations/{id}/gem-keys`: the API keys Gem uses to call a Gem integration, managed
//! on a live server (the same operations as `switchyard gem issue-key|list-keys|revoke-key`).
//!
//! - `GET    .../gem-keys` — ids, prefixes, creation and revocation times (never the keys).
//! - `POST   .../gem-keys` — 201 with the new key: the only response that ever carries it, since
//!   only its SHA-256 is stored. Paste it into Gem.
//! - `DELETE .../gem-keys/{key_id}` — revoke; it stops working at once.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::json;

use super::error;
use crate::app::App;
use crate::ats::gem::keys::{self, KeyError};
use crate::config::AtsConfig;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/integrations/{id}/gem-keys", get(list).post(issue))
        .route("/admin/integrations/{id}/gem-keys/{key_id}", delete(revoke))
}

/// The error response when `id` is not an existing Gem integration.
fn refuse_unless_gem(app: &App, id: &str) -> Option<Response> {
    match app.integration(id) {
        None => Some(error(
            StatusCode::NOT_FOUND,
            format!("no integration `{id}`"),
        )),
        Some(i) if !matches!(i.config.ats, AtsConfig::Gem(_)) => Some(error(
            StatusCode::CONFLICT,
            format!("integration `{id}` is not a Gem integration"),
        )),
        Some(_) => None,
    }
}

fn failed(e: KeyError) -> Response {
    match e {
        KeyError::Store(e) => {
            tracing::error!(error = %e, "Gem key store failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
        }
        other => error(StatusCode::NOT_FOUND, other.to_string()),
    }
}

async fn list(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if let Some(refused) = refuse_unless_gem(&app, &id) {
        return refused;
    }
    match keys::list(&app.store, &id) {
        Ok(list) => Json(json!({ "keys": list })).into_response(),
        Err(e) => failed(e),
    }
}

async fn issue(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if let Some(refused) = refuse_unless_gem(&app, &id) {
        return refused;
    }
    match keys::issue(&app.store, &id) {
        Ok(issued) => {
            tracing::info!(integration = %id, key_id = %issued.key_id, "Gem API key issued");
            (
                StatusCode::CREATED,
                Json(json!({
                    "key_id": issued.key_id,
                    "key": issued.key,
                    "gem_api": app.gem_api_url(&id),
                })),
            )
                .into_response()
        }
        Err(e) => failed(e),
    }
}

async fn revoke(
    State(app): State<Arc<App>>,
    Path((id, key_id)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = refuse_unless_gem(&app, &id) {
        return refused;
    }
    match keys::revoke(&app.store, &id, &key_id) {
        Ok(()) => {
            tracing::info!(integration = %id, key_id = %key_id, "Gem API key revoked");
            Json(json!({ "revoked": key_id })).into_response()
        }
        Err(e) => failed(e),
    }
}
