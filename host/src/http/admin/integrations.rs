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
use crate::app::{App, Integration};
use crate::config::forms::{check_against, IntegrationInput, IntegrationView};
use crate::config::{IntegrationConfig, RuleConfig};

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

/// Validates against the connector (when it is loaded) and the operator's approved hosts, and
/// saves. `previous_rules`: the rules before this change (`None` for a new integration); changed
/// rules are checked against the connector's `list-packages`.
async fn save(
    app: &App,
    config: IntegrationConfig,
    status: StatusCode,
    previous_rules: Option<&[RuleConfig]>,
) -> Response {
    let connector = app.registry.get(&config.connector);
    if let Some(connector) = &connector {
        if let Err(e) = check_against(&config, &connector.manifest) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
        }
    }
    if let Err(e) = app.check_hosts(&config) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, e);
    }
    if previous_rules != Some(config.rules.as_slice()) && !config.rules.is_empty() {
        if let Err(response) = check_rules(app, &config).await {
            return response;
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

/// Refuses rules that name a package the connector does not offer (its `list-packages`, asked
/// with the configuration being saved), listing the valid ones. Nothing is saved when the check
/// cannot be made.
async fn check_rules(app: &App, config: &IntegrationConfig) -> Result<(), Response> {
    let Some(connector) = app.registry.get(&config.connector) else {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "connector `{}` is not loaded, so the rules' packages cannot be checked",
                config.connector
            ),
        ));
    };
    let candidate = Integration::new(config.clone(), &app.http, &app.lever_oauth);
    let ctx = app.call_context(&candidate, &connector);
    let offered = connector
        .list_packages(app.registry.runtime(), ctx)
        .await
        .map_err(|e| {
            tracing::warn!(integration = %config.id, connector = %connector.version_tag(), error = %e, "list-packages failed");
            error(
                StatusCode::BAD_GATEWAY,
                format!("cannot check the rules: the connector cannot list packages: {e}"),
            )
        })?;
    let names: Vec<String> = offered.into_iter().map(|(name, _)| name).collect();
    crate::config::rules::check_packages(&config.rules, &names)
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, e))
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
    save(&app, config, StatusCode::CREATED, None).await
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
        Ok(next) => save(&app, next, StatusCode::OK, Some(&current.config.rules)).await,
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
    let rules = current.config.rules.clone();
    save(&app, next, StatusCode::OK, Some(&rules)).await
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
