//! `/admin/integrations`: create, read, update, enable/disable and delete integrations. Secrets
//! are write-only: responses say which are set, never their values. Changes are stored before they
//! take effect, so they survive a restart and reach every host on the database (within
//! `storage.sync_ms`).
//!
//! Edits read the integration from the database and write over the revision they read; one that
//! loses to a concurrent edit (on this host or another) reads again and re-applies its change, so
//! two PATCHes at once both land ([`edit`]).
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
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::lever::LeverConnection;
use crate::app::App;
use crate::config::forms::{check_against, IntegrationInput, IntegrationView};
use crate::config::IntegrationConfig;
use crate::http::error::{ApiError, ErrorBody};
use crate::wasm::types::CallError;

pub(super) fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
        .routes(routes!(enable))
        .routes(routes!(disable))
}

/// An integration as the admin API shows it: no secret values.
#[derive(Serialize, ToSchema)]
pub struct IntegrationBody {
    #[serde(flatten)]
    pub view: IntegrationView,
    /// Lever integrations: the connection's state (OAuth grant, disconnection, last Verify
    /// Connection ping).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<LeverConnection>,
    /// What needs attention (waiting events and why, state against its quota).
    pub health: super::health::Health,
    /// False while its connector is not loaded.
    pub ready: bool,
    /// Why it is not ready (which file failed and how) and what fixes it.
    pub not_ready_reason: Option<String>,
}

/// `GET /admin/integrations`.
#[derive(Serialize, ToSchema)]
pub struct IntegrationList {
    pub integrations: Vec<IntegrationBody>,
}

/// The integration deleted.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: String,
}

/// The integration as `GET /admin/integrations/{id}` shows it (also the console's view).
pub(crate) fn view(app: &App, c: &IntegrationConfig) -> IntegrationBody {
    let not_ready_reason = app.registry.not_ready(&c.connector);
    IntegrationBody {
        view: IntegrationView::of(c, &app.public_url),
        connection: super::lever::connection_view(app, c),
        health: super::health::of(app, c),
        ready: not_ready_reason.is_none(),
        not_ready_reason,
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no integration `{id}`"))
}

/// Times an edit reads again after losing to concurrent edits before it answers 409.
const EDIT_ATTEMPTS: usize = 8;

/// Reads integration `id` from the database, applies `change` to it (None: it does not exist),
/// validates the result and saves it over the revision read. An edit that loses to a concurrent
/// one reads again and re-applies `change`, so neither is dropped.
async fn edit(
    app: &App,
    id: &str,
    status: StatusCode,
    change: impl Fn(Option<IntegrationConfig>) -> Result<IntegrationConfig, ApiError>,
) -> Result<(StatusCode, Json<IntegrationBody>), ApiError> {
    for _ in 0..EDIT_ATTEMPTS {
        let (current, read) = app.read_integration(id).map_err(|e| {
            tracing::error!(integration = %id, error = %e, "cannot read integration");
            ApiError::storage()
        })?;
        let next = change(current.clone())?;
        validate(app, &next, current.as_ref()).await?;
        match app.save_integration(next, read) {
            Ok(Some(i)) => return Ok((status, Json(view(app, &i.config)))),
            Ok(None) => {
                tracing::debug!(integration = %id, "edit lost to a concurrent one; reading again")
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot save integration");
                return Err(ApiError::internal("cannot save the integration"));
            }
        }
    }
    Err(ApiError::conflict(format!(
        "integration `{id}` kept changing through other edits; try again"
    )))
}

/// Validates against the connector (when it is loaded) and the operator's approved hosts.
/// `previous`: the integration before this change (`None` for a new one); changed packages and
/// rules are checked against the connector's `list-packages`.
async fn validate(
    app: &App,
    config: &IntegrationConfig,
    previous: Option<&IntegrationConfig>,
) -> Result<(), ApiError> {
    if let Some(connector) = app.registry.get(&config.connector) {
        check_against(config, &connector.manifest).map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    app.check_hosts(config).map_err(ApiError::invalid)?;
    let rules_changed = !config.rules.is_empty()
        && previous.map(|p| p.rules.as_slice()) != Some(config.rules.as_slice());
    let packages_changed = !config.packages.is_empty()
        && previous.map(|p| p.packages.as_slice()) != Some(config.packages.as_slice());
    if rules_changed || packages_changed {
        check_packages(app, config, rules_changed).await?;
    }
    Ok(())
}

/// Asks the connector for its packages with the configuration being saved: a package it refuses
/// (a Certn package without a service) is a 422 with its reason, and with `check_rules`, so is a
/// rule naming a package it does not offer (listing the valid ones). Nothing is saved when the
/// rules cannot be checked; packages of a connector that is not loaded are checked at its load.
async fn check_packages(
    app: &App,
    config: &IntegrationConfig,
    check_rules: bool,
) -> Result<(), ApiError> {
    let offered = match app.offered_packages(config).await {
        None if check_rules => {
            return Err(ApiError::invalid(format!(
                "connector `{}` is not loaded, so the rules' packages cannot be checked",
                config.connector
            )))
        }
        None => return Ok(()),
        Some(Err(CallError::Config(reason))) => {
            return Err(ApiError::invalid(format!(
                "the connector refuses the packages: {reason}"
            )))
        }
        Some(Err(e)) => {
            tracing::warn!(integration = %config.id, connector = %config.connector, error = %e, "list-packages failed");
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("cannot check the packages: the connector cannot list them: {e}"),
            ));
        }
        Some(Ok(offered)) => offered,
    };
    if !check_rules {
        return Ok(());
    }
    let names: Vec<String> = offered.into_iter().map(|(name, _)| name).collect();
    crate::config::rules::check_packages(&config.rules, &names).map_err(ApiError::invalid)
}

/// Every integration.
#[utoipa::path(get, path = "/admin/integrations", tag = "integrations",
    responses((status = 200, body = IntegrationList)))]
async fn list(State(app): State<Arc<App>>) -> Json<IntegrationList> {
    let integrations = app
        .integrations()
        .iter()
        .map(|i| view(&app, &i.config))
        .collect();
    Json(IntegrationList { integrations })
}

/// One integration.
#[utoipa::path(get, path = "/admin/integrations/{id}", tag = "integrations",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 200, body = IntegrationBody),
        (status = 404, description = "no such integration", body = ErrorBody)))]
async fn show(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<IntegrationBody>, ApiError> {
    let integration = app.integration(&id).ok_or_else(|| not_found(&id))?;
    Ok(Json(view(&app, &integration.config)))
}

/// Creates an integration (every required field given).
#[utoipa::path(post, path = "/admin/integrations", tag = "integrations",
    request_body = IntegrationInput,
    responses((status = 201, body = IntegrationBody),
        (status = 400, description = "not a valid body", body = ErrorBody),
        (status = 409, description = "the id exists", body = ErrorBody),
        (status = 422, description = "refused by validation; nothing saved", body = ErrorBody),
        (status = 502, description = "the connector cannot list its packages", body = ErrorBody)))]
async fn create(
    State(app): State<Arc<App>>,
    body: Result<Json<IntegrationInput>, JsonRejection>,
) -> Result<(StatusCode, Json<IntegrationBody>), ApiError> {
    let Json(input) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    create_from(&app, input).await
}

/// Creates an integration from `input`, validated and saved like `POST /admin/integrations`
/// (also the console's setup wizard).
pub(crate) async fn create_from(
    app: &App,
    input: IntegrationInput,
) -> Result<(StatusCode, Json<IntegrationBody>), ApiError> {
    let config = input
        .create()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    edit(
        app,
        &config.id.clone(),
        StatusCode::CREATED,
        |current| match current {
            Some(c) => Err(ApiError::conflict(format!("integration `{}` exists", c.id))),
            None => Ok(config.clone()),
        },
    )
    .await
}

/// Changes only the given fields (a `null` secret removes it).
#[utoipa::path(patch, path = "/admin/integrations/{id}", tag = "integrations",
    params(("id" = String, Path, description = "integration id")),
    request_body = IntegrationInput,
    responses((status = 200, body = IntegrationBody),
        (status = 400, description = "not a valid body", body = ErrorBody),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 422, description = "refused by validation; nothing saved", body = ErrorBody),
        (status = 502, description = "the connector cannot list its packages", body = ErrorBody)))]
async fn update(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Result<Json<IntegrationInput>, JsonRejection>,
) -> Result<(StatusCode, Json<IntegrationBody>), ApiError> {
    let Json(input) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    update_from(&app, &id, input).await
}

/// Applies `input` to integration `id`, validated and saved like `PATCH /admin/integrations/{id}`
/// (also the console's setup wizard and secret rotation).
pub(crate) async fn update_from(
    app: &App,
    id: &str,
    input: IntegrationInput,
) -> Result<(StatusCode, Json<IntegrationBody>), ApiError> {
    edit(app, id, StatusCode::OK, |current| {
        let current = current.ok_or_else(|| not_found(id))?;
        input
            .clone()
            .apply(current)
            .map_err(|e| ApiError::invalid(e.to_string()))
    })
    .await
}

/// Changes integration `id` by `change` applied to the stored configuration (re-applied if
/// another edit lands first), validated and saved like `PATCH` (the console's secret rotation:
/// what it keeps of the old secret must be the stored one, not this host's copy).
pub(crate) async fn update_with(
    app: &App,
    id: &str,
    change: impl Fn(IntegrationConfig) -> Result<IntegrationConfig, ApiError>,
) -> Result<(StatusCode, Json<IntegrationBody>), ApiError> {
    edit(app, id, StatusCode::OK, |current| {
        change(current.ok_or_else(|| not_found(id))?)
    })
    .await
}

/// Enables or disables an integration, validated and saved like any change (also the console's
/// pause and resume).
pub(crate) async fn set_enabled(
    app: Arc<App>,
    id: String,
    enabled: bool,
) -> Result<(StatusCode, Json<IntegrationBody>), ApiError> {
    edit(&app, &id, StatusCode::OK, |current| {
        let mut next = current.ok_or_else(|| not_found(&id))?;
        next.enabled = enabled;
        Ok(next)
    })
    .await
}

/// Enables an integration; its view carries the webhook URLs to give the ATS and the vendor.
#[utoipa::path(post, path = "/admin/integrations/{id}/enable", tag = "integrations",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 200, body = IntegrationBody),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 422, description = "refused by validation; nothing saved", body = ErrorBody)))]
async fn enable(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<IntegrationBody>), ApiError> {
    set_enabled(app, id, true).await
}

/// Disables an integration: its webhooks are refused with 503.
#[utoipa::path(post, path = "/admin/integrations/{id}/disable", tag = "integrations",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 200, body = IntegrationBody),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 422, description = "refused by validation; nothing saved", body = ErrorBody)))]
async fn disable(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<IntegrationBody>), ApiError> {
    set_enabled(app, id, false).await
}

/// Deletes an integration (a Lever OAuth grant is revoked at Lever first, best effort).
#[utoipa::path(delete, path = "/admin/integrations/{id}", tag = "integrations",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 200, body = Deleted),
        (status = 404, description = "no such integration", body = ErrorBody)))]
async fn remove(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    // A Lever OAuth grant is revoked at Lever first (best effort; the tokens go either way).
    super::lever::revoke_before_delete(&app, &id).await;
    match app.delete_integration(&id) {
        Ok(true) => Ok(Json(Deleted { deleted: id })),
        Ok(false) => Err(not_found(&id)),
        Err(e) => {
            tracing::error!(error = %e, "cannot delete integration");
            Err(ApiError::internal("cannot delete the integration"))
        }
    }
}
