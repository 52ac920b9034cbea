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
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::ats::gem::keys::{self, KeyError, KeyInfo};
use crate::config::AtsConfig;
use crate::http::error::{ApiError, ErrorBody};

pub(super) fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list, issue))
        .routes(routes!(revoke))
}

/// `GET .../gem-keys`: never the keys themselves.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

/// A new key: the only response that ever carries it.
#[derive(Serialize, ToSchema)]
pub struct NewKey {
    pub key_id: String,
    /// The key to paste into Gem (only its SHA-256 is stored).
    pub key: String,
    /// The base URL of this integration's Gem API.
    pub gem_api: String,
}

/// The key revoked.
#[derive(Serialize, ToSchema)]
pub struct RevokedKey {
    pub revoked: String,
}

/// Refuses unless `id` is an existing Gem integration.
fn gem_only(app: &App, id: &str) -> Result<(), ApiError> {
    match app.integration(id) {
        None => Err(ApiError::not_found(format!("no integration `{id}`"))),
        Some(i) if !matches!(i.config.ats, AtsConfig::Gem(_)) => Err(ApiError::conflict(format!(
            "integration `{id}` is not a Gem integration"
        ))),
        Some(_) => Ok(()),
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> ApiError {
        match e {
            KeyError::Store(e) => {
                tracing::error!(error = %e, "Gem key store failed");
                ApiError::storage()
            }
            other => ApiError::not_found(other.to_string()),
        }
    }
}

/// The integration's keys: ids, prefixes, creation and revocation times.
#[utoipa::path(get, path = "/admin/integrations/{id}/gem-keys", tag = "gem-keys",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 200, body = KeyList),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 409, description = "not a Gem integration", body = ErrorBody)))]
async fn list(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<KeyList>, ApiError> {
    gem_only(&app, &id)?;
    Ok(Json(KeyList {
        keys: keys::list(&app.store, &id)?,
    }))
}

/// Issues a key for Gem to call this integration with.
#[utoipa::path(post, path = "/admin/integrations/{id}/gem-keys", tag = "gem-keys",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 201, body = NewKey),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 409, description = "not a Gem integration", body = ErrorBody)))]
async fn issue(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    gem_only(&app, &id)?;
    let issued = keys::issue(&app.store, &id)?;
    tracing::info!(integration = %id, key_id = %issued.key_id, "Gem API key issued");
    Ok((
        StatusCode::CREATED,
        Json(NewKey {
            gem_api: app.gem_api_url(&id),
            key_id: issued.key_id,
            key: issued.key,
        }),
    ))
}

/// Revokes a key: it stops working at once.
#[utoipa::path(delete, path = "/admin/integrations/{id}/gem-keys/{key_id}", tag = "gem-keys",
    params(("id" = String, Path, description = "integration id"),
        ("key_id" = String, Path, description = "key id")),
    responses((status = 200, body = RevokedKey),
        (status = 404, description = "no such integration or key", body = ErrorBody),
        (status = 409, description = "not a Gem integration", body = ErrorBody)))]
async fn revoke(
    State(app): State<Arc<App>>,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<RevokedKey>, ApiError> {
    gem_only(&app, &id)?;
    keys::revoke(&app.store, &id, &key_id)?;
    tracing::info!(integration = %id, key_id = %key_id, "Gem API key revoked");
    Ok(Json(RevokedKey { revoked: key_id }))
}
