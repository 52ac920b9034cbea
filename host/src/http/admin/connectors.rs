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

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use super::error;
use crate::app::App;
use crate::wasm::deploy::{self, DeployError};
use crate::wasm::registry::RegistryError;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/connectors", get(list))
        .route("/admin/connectors/versions", post(upload_any))
        .route("/admin/connectors/{id}", get(show))
        .route("/admin/connectors/{id}/versions", post(upload))
        .route(
            "/admin/connectors/{id}/versions/{hash}/activate",
            post(activate),
        )
        .route("/admin/connectors/{id}/versions/{hash}", delete(remove))
        .route("/admin/connectors/{id}/rollback", post(rollback))
}

fn failed(e: DeployError) -> Response {
    let status = match &e {
        DeployError::Invalid(_)
        | DeployError::WrongConnector { .. }
        | DeployError::UnapprovedHosts(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DeployError::Registry(
            RegistryError::UnknownConnector(_) | RegistryError::UnknownVersion(..),
        ) => StatusCode::NOT_FOUND,
        DeployError::Registry(_) => StatusCode::CONFLICT,
        DeployError::Store(_) | DeployError::Io(_) => {
            tracing::error!(error = %e, "connector deployment failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error(status, e.to_string())
}

fn connector_json(app: &App, id: &str) -> Option<serde_json::Value> {
    let versions = app.registry.versions(id)?;
    Some(json!({ "id": id, "versions": versions }))
}

async fn list(State(app): State<Arc<App>>) -> Response {
    let all: Vec<_> = app
        .registry
        .connector_ids()
        .iter()
        .filter_map(|id| connector_json(&app, id))
        .collect();
    Json(json!({ "connectors": all })).into_response()
}

async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match connector_json(&app, &id) {
        Some(c) => Json(c).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no connector `{id}` is loaded"),
        ),
    }
}

async fn upload_any(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    upload_as(app, None, q, body).await
}

async fn upload(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    upload_as(app, Some(id), q, body).await
}

async fn upload_as(
    app: Arc<App>,
    id: Option<String>,
    q: HashMap<String, String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Over `server.admin_max_upload_bytes` → 413, as JSON like every other admin error.
    let body = match body {
        Ok(body) => body,
        Err(r) => return error(r.status(), r.body_text()),
    };
    let activate = q.get("activate").is_some_and(|v| v == "true" || v == "1");
    let source = format!("upload:{}", crate::store::now_ms());
    let result = deploy::upload(
        &app.registry,
        &app.store,
        &app.config,
        id.as_deref(),
        body.to_vec(),
        &source,
        activate,
    )
    .await;
    match result {
        Ok(up) => {
            let status = if up.new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let hash = up.version.hash.clone();
            let info = app
                .registry
                .versions(&up.version.manifest.id)
                .and_then(|vs| vs.into_iter().find(|v| v.hash == hash));
            (
                status,
                Json(json!({ "version": info, "new": up.new, "activated": up.activated })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(connector = ?id, error = %e, "connector upload rejected");
            failed(e)
        }
    }
}

async fn activate(
    State(app): State<Arc<App>>,
    Path((id, hash)): Path<(String, String)>,
) -> Response {
    match deploy::activate(&app.registry, &app.store, &id, &hash) {
        Ok(v) => Json(json!({ "active": v.version_tag(), "hash": v.hash })).into_response(),
        Err(e) => failed(e),
    }
}

async fn rollback(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match deploy::rollback(&app.registry, &app.store, &id) {
        Ok(v) => Json(json!({ "active": v.version_tag(), "hash": v.hash })).into_response(),
        Err(e) => failed(e),
    }
}

async fn remove(State(app): State<Arc<App>>, Path((id, hash)): Path<(String, String)>) -> Response {
    match deploy::remove(&app.registry, &app.store, &app.config, &id, &hash) {
        Ok(v) => Json(json!({ "removed": v.version_tag(), "hash": v.hash })).into_response(),
        Err(e) => failed(e),
    }
}
