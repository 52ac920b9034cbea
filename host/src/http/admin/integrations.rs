//! `/admin/integrations`: create, read, update, enable/disable and delete integrations. Secrets
//! are write-only: responses say which are set, never their values. Changes are stored before they
//! take effect, so they survive a restart.
//!
//! - `GET    /admin/integrations`, `GET /admin/integrations/{id}`
//! - `POST   /admin/integrations` — create (201); 409 if the id exists.
//! - `PATCH  /admin/integrations/{id}` — change only the given fields (`null` secret: remove it).
//! - `POST   /admin/integrations/{id}/enable` — returns the webhook URLs to give Lever and the vendor.
//! - `POST   /admin/integrations/{id}/disable`
//! - `DELETE /admin/integrations/{id}`

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::error;
use crate::app::App;
use crate::config::forms::{check_against, IntegrationInput, IntegrationView};
use crate::config::IntegrationConfig;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/integrations", get(list).post(create))
        .route(
            "/admin/integrations/{id}",
            get(show).patch(update).delete(remove),
        )
        .route("/admin/integrations/{id}/enable", post(enable))
        .route("/admin/integrations/{id}/disable", post(disable))
}

/// The integration as shown (with its Lever connection), plus whether it is ready: `ready` is
/// false while its connector is not loaded, and `not_ready_reason` says why (which file failed
/// and how) and what fixes it.
fn view(app: &App, c: &IntegrationConfig) -> serde_json::Value {
    let mut view = IntegrationView::of(c, &app.public_url);
    view.connection = super::lever::connection_view(app, c);
    let mut v = serde_json::to_value(view).unwrap_or_else(|_| json!({ "id": c.id }));
    let reason = app.registry.not_ready(&c.connector);
    v["ready"] = json!(reason.is_none());
    v["not_ready_reason"] = json!(reason);
    v
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no integration `{id}`"))
}

/// Validates against the connector (when it is loaded) and saves.
fn save(app: &App, config: IntegrationConfig, status: StatusCode) -> Response {
    if let Some(connector) = app.registry.get(&config.connector) {
        if let Err(e) = check_against(&config, &connector.manifest) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
        }
    }
    match app.put_integration(config) {
        Ok(i) => (status, Json(view(app, &i.config))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot save integration");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot save the integration",
            )
        }
    }
}

async fn list(State(app): State<Arc<App>>) -> Response {
    let all: Vec<_> = app
        .integrations()
        .iter()
        .map(|i| view(&app, &i.config))
        .collect();
    Json(json!({ "integrations": all })).into_response()
}

async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.integration(&id) {
        Some(i) => Json(view(&app, &i.config)).into_response(),
        None => not_found(&id),
    }
}

async fn create(
    State(app): State<Arc<App>>,
    body: Result<Json<IntegrationInput>, JsonRejection>,
) -> Response {
    let input = match body {
        Ok(Json(input)) => input,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let config = match input.create() {
        Ok(c) => c,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let _edit = app.integration_edits.lock().await;
    if app.integration(&config.id).is_some() {
        return error(
            StatusCode::CONFLICT,
            format!("integration `{}` exists", config.id),
        );
    }
    save(&app, config, StatusCode::CREATED)
}

async fn update(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Result<Json<IntegrationInput>, JsonRejection>,
) -> Response {
    let input = match body {
        Ok(Json(input)) => input,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let _edit = app.integration_edits.lock().await;
    let Some(current) = app.integration(&id) else {
        return not_found(&id);
    };
    match input.apply(current.config.clone()) {
        Ok(next) => save(&app, next, StatusCode::OK),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

async fn set_enabled(app: Arc<App>, id: String, enabled: bool) -> Response {
    let _edit = app.integration_edits.lock().await;
    let Some(current) = app.integration(&id) else {
        return not_found(&id);
    };
    let mut next = current.config.clone();
    next.enabled = enabled;
    save(&app, next, StatusCode::OK)
}

async fn enable(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    set_enabled(app, id, true).await
}

async fn disable(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    set_enabled(app, id, false).await
}

async fn remove(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let _edit = app.integration_edits.lock().await;
    // A Lever OAuth grant is revoked at Lever first (best effort; the tokens go either way).
    super::lever::revoke_before_delete(&app, &id).await;
    match app.delete_integration(&id) {
        Ok(true) => Json(json!({ "deleted": id })).into_response(),
        Ok(false) => not_found(&id),
        Err(e) => {
            tracing::error!(error = %e, "cannot delete integration");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot delete the integration",
            )
        }
    }
}
