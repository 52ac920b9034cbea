//! `/admin/connectors`: upload, list, activate, roll back and remove connector versions.
//!
//! - `GET    /admin/connectors` — every connector with its versions.
//! - `GET    /admin/connectors/{id}` — one connector's versions.
//! - `POST   /admin/connectors[/{id}]/versions?activate=true` — body: the component's bytes.
//!   Validated off the request path; 201 (new) or 200 (same bytes already loaded); 422 with the
//!   reason when rejected (the serving version is untouched).
//! - `POST   /admin/connectors/{id}/versions/{hash}/activate` — hash or 12+ character prefix.
//! - `POST   /admin/connectors/{id}/rollback`
//! - `DELETE /admin/connectors/{id}/versions/{hash}` — only a version that is not serving.
//!
//! Every host on one database serves the same versions: an upload is stored once in the
//! database, and an activation, rollback or removal through any host reaches the others within
//! `storage.sync_ms` ([`crate::wasm::deploy`]). A listing shows what serves on the host asked, and
//! under `problems` the versions the database names that this host cannot load or serve.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::http::error::{ApiError, ErrorBody};
use crate::wasm::deploy::{self, DeployError};
use crate::wasm::registry::{RegistryError, VersionInfo, VersionProblem};

pub(super) fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(upload_any))
        .routes(routes!(show))
        .routes(routes!(upload))
        .routes(routes!(activate))
        .routes(routes!(remove))
        .routes(routes!(rollback))
}

/// `GET /admin/connectors`.
#[derive(Serialize, ToSchema)]
pub struct ConnectorList {
    pub connectors: Vec<ConnectorVersions>,
}

/// One connector and its loaded versions.
#[derive(Serialize, ToSchema)]
pub struct ConnectorVersions {
    pub id: String,
    pub versions: Vec<VersionInfo>,
    /// Versions the database names that this host cannot load or serve (it keeps serving its
    /// active version); absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<VersionProblem>,
}

/// The answer to an upload.
#[derive(Serialize, ToSchema)]
pub struct Uploaded {
    /// The version as now loaded.
    pub version: Option<VersionInfo>,
    /// False when the same bytes were already loaded.
    pub new: bool,
    /// Whether it now serves.
    pub activated: bool,
}

/// The version serving after an activation or a rollback.
#[derive(Serialize, ToSchema)]
pub struct Activated {
    /// Its tag, `id@version#hash12`.
    pub active: String,
    pub hash: String,
}

impl Activated {
    fn of(v: &crate::wasm::connector::LoadedConnector) -> Activated {
        Activated {
            active: v.version_tag(),
            hash: v.hash.clone(),
        }
    }
}

/// The version removed.
#[derive(Serialize, ToSchema)]
pub struct Removed {
    /// Its tag, `id@version#hash12`.
    pub removed: String,
    pub hash: String,
}

/// The query of an upload.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// `true` or `1`: serve the version at once once it is valid.
    activate: Option<String>,
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> ApiError {
        let status = match &e {
            DeployError::Invalid(_)
            | DeployError::WrongConnector { .. }
            | DeployError::UnapprovedHosts(_) => StatusCode::UNPROCESSABLE_ENTITY,
            DeployError::Registry(
                RegistryError::UnknownConnector(_) | RegistryError::UnknownVersion(..),
            ) => StatusCode::NOT_FOUND,
            DeployError::Registry(_) | DeployError::InUse(_) => StatusCode::CONFLICT,
            DeployError::Store(_) | DeployError::Io(_) => {
                tracing::error!(error = %e, "connector deployment failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

fn versions_of(app: &App, id: &str) -> Option<ConnectorVersions> {
    let problems = app.registry.problems(id);
    let versions = match app.registry.versions(id) {
        Some(versions) => versions,
        None if !problems.is_empty() => Vec::new(),
        None => return None,
    };
    Some(ConnectorVersions {
        id: id.to_string(),
        versions,
        problems,
    })
}

/// Every connector with its versions.
#[utoipa::path(get, path = "/admin/connectors", tag = "connectors",
    responses((status = 200, body = ConnectorList)))]
async fn list(State(app): State<Arc<App>>) -> Json<ConnectorList> {
    let connectors = app
        .registry
        .listed_ids()
        .iter()
        .filter_map(|id| versions_of(&app, id))
        .collect();
    Json(ConnectorList { connectors })
}

/// One connector's versions.
#[utoipa::path(get, path = "/admin/connectors/{id}", tag = "connectors",
    params(("id" = String, Path, description = "connector id")),
    responses((status = 200, body = ConnectorVersions),
        (status = 404, description = "no such connector is loaded", body = ErrorBody)))]
async fn show(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<ConnectorVersions>, ApiError> {
    versions_of(&app, &id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no connector `{id}` is loaded")))
}

/// Uploads a version of the connector its manifest names.
#[utoipa::path(post, path = "/admin/connectors/versions", tag = "connectors",
    params(UploadQuery),
    request_body(content = String, content_type = "application/wasm",
        description = "the component's bytes"),
    responses((status = 201, description = "a new version", body = Uploaded),
        (status = 200, description = "the same bytes were already loaded", body = Uploaded),
        (status = 413, description = "over `server.admin_max_upload_bytes`", body = ErrorBody),
        (status = 422, description = "rejected; the serving version is untouched", body = ErrorBody)))]
async fn upload_any(
    State(app): State<Arc<App>>,
    Query(q): Query<UploadQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    upload_as(app, None, q, body).await
}

/// Uploads a version of connector `id` (the manifest must name it).
#[utoipa::path(post, path = "/admin/connectors/{id}/versions", tag = "connectors",
    params(("id" = String, Path, description = "connector id"), UploadQuery),
    request_body(content = String, content_type = "application/wasm",
        description = "the component's bytes"),
    responses((status = 201, description = "a new version", body = Uploaded),
        (status = 200, description = "the same bytes were already loaded", body = Uploaded),
        (status = 413, description = "over `server.admin_max_upload_bytes`", body = ErrorBody),
        (status = 422, description = "rejected; the serving version is untouched", body = ErrorBody)))]
async fn upload(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<UploadQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    upload_as(app, Some(id), q, body).await
}

async fn upload_as(
    app: Arc<App>,
    id: Option<String>,
    q: UploadQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    // Over `server.admin_max_upload_bytes` → 413, as JSON like every other admin error.
    let body = body?;
    let activate = q.activate.is_some_and(|v| v == "true" || v == "1");
    let source = format!("upload:{}", crate::store::now_ms());
    let up = deploy::upload(
        &app.registry,
        &app.store,
        &app.config,
        id.as_deref(),
        body.to_vec(),
        &source,
        activate,
    )
    .await
    .map_err(|e| {
        tracing::warn!(connector = ?id, error = %e, "connector upload rejected");
        ApiError::from(e)
    })?;
    let status = if up.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let hash = up.version.hash.clone();
    let version = app
        .registry
        .versions(&up.version.manifest.id)
        .and_then(|vs| vs.into_iter().find(|v| v.hash == hash));
    Ok((
        status,
        Json(Uploaded {
            version,
            new: up.new,
            activated: up.activated,
        }),
    ))
}

/// Serves version `hash` (or a 12+ character prefix of it).
#[utoipa::path(post, path = "/admin/connectors/{id}/versions/{hash}/activate", tag = "connectors",
    params(("id" = String, Path, description = "connector id"),
        ("hash" = String, Path, description = "version hash or a 12+ character prefix")),
    responses((status = 200, body = Activated),
        (status = 404, description = "no such connector or version", body = ErrorBody),
        (status = 409, description = "the version cannot serve", body = ErrorBody)))]
async fn activate(
    State(app): State<Arc<App>>,
    Path((id, hash)): Path<(String, String)>,
) -> Result<Json<Activated>, ApiError> {
    let v = deploy::activate(&app.registry, &app.store, &id, &hash).await?;
    Ok(Json(Activated::of(&v)))
}

/// Serves the previous version again.
#[utoipa::path(post, path = "/admin/connectors/{id}/rollback", tag = "connectors",
    params(("id" = String, Path, description = "connector id")),
    responses((status = 200, body = Activated),
        (status = 404, description = "no such connector", body = ErrorBody),
        (status = 409, description = "no previous version", body = ErrorBody)))]
async fn rollback(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Activated>, ApiError> {
    let v = deploy::rollback(&app.registry, &app.store, &id).await?;
    Ok(Json(Activated::of(&v)))
}

/// Removes a version that is not serving.
#[utoipa::path(delete, path = "/admin/connectors/{id}/versions/{hash}", tag = "connectors",
    params(("id" = String, Path, description = "connector id"),
        ("hash" = String, Path, description = "version hash or a 12+ character prefix")),
    responses((status = 200, body = Removed),
        (status = 404, description = "no such connector or version", body = ErrorBody),
        (status = 409, description = "the version serves here, or the database names it as a connector's active version or rollback target (nothing is removed)", body = ErrorBody)))]
async fn remove(
    State(app): State<Arc<App>>,
    Path((id, hash)): Path<(String, String)>,
) -> Result<Json<Removed>, ApiError> {
    let v = deploy::remove(&app.registry, &app.store, &id, &hash).await?;
    Ok(Json(Removed {
        removed: v.version_tag(),
        hash: v.hash.clone(),
    }))
}
