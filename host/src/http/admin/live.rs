//! Live lists for the console's setup wizard, read on each request through the integration's
//! own adapter and connector (so with its credentials and settings as saved):
//!
//! - `GET /admin/integrations/{id}/stages` — the ATS's pipeline stages (Lever: `GET /stages`).
//!   422 for an ATS that has none to pick (Gem calls us with what to screen).
//! - `GET /admin/integrations/{id}/postings` — the ATS's job postings (Lever: `GET /postings`,
//!   `postings:read:admin`). 422 for an ATS that has none to pick.
//! - `GET /admin/integrations/{id}/packages` — the connector's `list-packages` for this
//!   integration, each with whether it is the default.
//!
//! A connector's settings (`config-fields`) are in its manifest: `GET /admin/connectors/{id}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::{App, Integration};
use crate::ats::AtsError;
use crate::http::error::{ApiError, ErrorBody};

pub(super) fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(stages))
        .routes(routes!(postings))
        .routes(routes!(packages))
}

/// One pipeline stage.
#[derive(Serialize, ToSchema)]
pub struct Stage {
    pub id: String,
    pub name: String,
}

/// `GET /admin/integrations/{id}/stages`.
#[derive(Serialize, ToSchema)]
pub struct StageList {
    pub stages: Vec<Stage>,
}

/// One job posting.
#[derive(Serialize, ToSchema)]
pub struct Posting {
    pub id: String,
    pub name: String,
}

/// `GET /admin/integrations/{id}/postings`.
#[derive(Serialize, ToSchema)]
pub struct PostingList {
    pub postings: Vec<Posting>,
}

/// One package the connector offers.
#[derive(Serialize, ToSchema)]
pub struct OfferedPackage {
    pub name: String,
    pub default: bool,
}

/// `GET /admin/integrations/{id}/packages`.
#[derive(Serialize, ToSchema)]
pub struct PackageList {
    pub packages: Vec<OfferedPackage>,
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!("no integration `{id}`"))
}

/// The ATS's pipeline stages, read live.
#[utoipa::path(get, path = "/admin/integrations/{id}/stages", tag = "integrations",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 200, body = StageList),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 422, description = "this ATS has no stages to pick", body = ErrorBody),
        (status = 502, description = "the ATS refused or failed", body = ErrorBody)))]
async fn stages(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<StageList>, ApiError> {
    let integration = app.integration(&id).ok_or_else(|| unknown(&id))?;
    let list = live_list(&integration, "stages", integration.ats.stages().await)?;
    Ok(Json(StageList {
        stages: list
            .into_iter()
            .map(|(id, name)| Stage { id, name })
            .collect(),
    }))
}

/// The ATS's job postings, read live.
#[utoipa::path(get, path = "/admin/integrations/{id}/postings", tag = "integrations",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 200, body = PostingList),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 422, description = "this ATS has no postings to pick", body = ErrorBody),
        (status = 502, description = "the ATS refused or failed", body = ErrorBody)))]
async fn postings(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<PostingList>, ApiError> {
    let integration = app.integration(&id).ok_or_else(|| unknown(&id))?;
    let list = live_list(&integration, "postings", integration.ats.postings().await)?;
    Ok(Json(PostingList {
        postings: list
            .into_iter()
            .map(|(id, name)| Posting { id, name })
            .collect(),
    }))
}

/// A live `(id, name)` list of the ATS (`what`: `stages` or `postings`) as the API answers it
/// (also the console wizard's pickers).
pub(crate) fn live_list(
    integration: &Integration,
    what: &str,
    read: Option<Result<Vec<(String, String)>, AtsError>>,
) -> Result<Vec<(String, String)>, ApiError> {
    match read {
        None => Err(ApiError::invalid(format!(
            "a {} integration has no {what} to pick",
            integration.ats.kind()
        ))),
        Some(Err(e)) => {
            tracing::warn!(integration = %integration.config.id, error = %e.message, "cannot list the ATS's {what}");
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the ATS did not list its {what}: {}", e.message),
            ))
        }
        Some(Ok(list)) => Ok(list),
    }
}

/// The connector's packages for this integration (`list-packages`), read live.
#[utoipa::path(get, path = "/admin/integrations/{id}/packages", tag = "integrations",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 200, body = PackageList),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 502, description = "the connector failed", body = ErrorBody),
        (status = 503, description = "the connector is not loaded", body = ErrorBody)))]
async fn packages(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<PackageList>, ApiError> {
    let integration = app.integration(&id).ok_or_else(|| unknown(&id))?;
    match app.offered_packages(&integration.config).await {
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("connector `{}` is not loaded", integration.config.connector),
        )),
        Some(Err(e)) => {
            tracing::warn!(integration = %id, error = %e, "list-packages failed");
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the connector did not list its packages: {e}"),
            ))
        }
        Some(Ok(list)) => Ok(Json(PackageList {
            packages: list
                .into_iter()
                .map(|(name, default)| OfferedPackage { name, default })
                .collect(),
        })),
    }
}
