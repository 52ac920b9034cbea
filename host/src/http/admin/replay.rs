//! Bulk replay as background jobs kept in the store (see [`crate::store::replay`]; carried on by
//! [`crate::replay`]):
//!
//! - `POST /admin/replays` `{"filter": {…the events list's filters…}, "force": false}` — replays
//!   every waiting, dead or skipped event matching the filter (`force`: done ones too). 201 with
//!   the job; 422 when more than [`REPLAY_CAP`] events match, naming the count, and nothing
//!   started.
//! - `POST /admin/integrations/{id}/replay` `{"since": "<RFC 3339 or unix ms>", "force": false}`
//!   — everything of one integration received since a time (after an outage).
//! - `GET /admin/replays`, `GET /admin/replays/{id}` — jobs with their progress (pending,
//!   queued, passed over, and the queued events' states now).
//! - `POST /admin/replays/{id}/cancel` — queues nothing more; what it queued stays queued.
//!
//! A replayed screening is never started twice: the flow finds the order recorded under the
//! event's idempotency key and only brings the ATS up to date.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::criteria::Criteria;
use crate::app::App;
use crate::http::error::{ApiError, ErrorBody};
use crate::store::replay::{ReplayJob, StartReplay};
use crate::store::StoreError;

/// Most events one job may take on: a filter matching more is refused with the count.
pub const REPLAY_CAP: i64 = 1000;

pub(super) fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list, start))
        .routes(routes!(one))
        .routes(routes!(cancel))
        .routes(routes!(since))
}

/// `POST /admin/replays`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The events list's filters; empty: every replayable event.
    #[serde(default)]
    pub filter: Criteria,
    /// Replay `done` events too.
    #[serde(default)]
    pub force: bool,
}

/// `POST /admin/integrations/{id}/replay`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaySince {
    /// Received at or after (RFC 3339, or unix ms).
    pub since: String,
    /// Replay `done` events too.
    #[serde(default)]
    pub force: bool,
}

/// `GET /admin/replays`: newest first.
#[derive(Serialize, ToSchema)]
pub struct ReplayList {
    pub jobs: Vec<ReplayJob>,
}

fn storage(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "replay: storage error");
    ApiError::storage()
}

fn job_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request("a replay job id is a number"))
}

/// Starts a replay job for `criteria` (the API's and the console's one way in).
pub(crate) async fn begin(
    app: &App,
    criteria: &Criteria,
    force: bool,
) -> Result<(StatusCode, Json<ReplayJob>), ApiError> {
    let filter = criteria.filter(app)?;
    match app
        .store
        .start_replay(filter, force, REPLAY_CAP)
        .await
        .map_err(storage)?
    {
        StartReplay::Started(job) => {
            tracing::info!(
                job = job.id,
                events = job.total,
                force,
                "replay job started by an operator"
            );
            Ok((StatusCode::CREATED, Json(job)))
        }
        StartReplay::TooMany { matching, cap } => Err(ApiError::invalid(format!(
            "{matching} events match this filter, more than the {cap} one replay may take: \
             narrow the filter (nothing was started)"
        ))),
    }
}

/// Replays every replayable event matching a filter, as a background job.
#[utoipa::path(post, path = "/admin/replays", tag = "replay", request_body = ReplayRequest,
    responses((status = 201, description = "the job, started", body = ReplayJob),
        (status = 400, description = "a malformed body or filter value", body = ErrorBody),
        (status = 422, description = "more events match than the cap: nothing started", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn start(
    State(app): State<Arc<App>>,
    body: Result<Json<ReplayRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ReplayJob>), ApiError> {
    let Json(request) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    begin(&app, &request.filter, request.force).await
}

/// Replays everything of one integration received since a time.
#[utoipa::path(post, path = "/admin/integrations/{id}/replay", tag = "replay",
    params(("id" = String, Path, description = "integration id")), request_body = ReplaySince,
    responses((status = 201, description = "the job, started", body = ReplayJob),
        (status = 400, description = "a malformed body or time", body = ErrorBody),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 422, description = "more events match than the cap: nothing started", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn since(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Result<Json<ReplaySince>, JsonRejection>,
) -> Result<(StatusCode, Json<ReplayJob>), ApiError> {
    let Json(request) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if app.integration(&id).is_none() {
        return Err(ApiError::not_found(format!("no integration `{id}`")));
    }
    let criteria = Criteria {
        integration: Some(id),
        since: Some(request.since),
        ..Criteria::default()
    };
    begin(&app, &criteria, request.force).await
}

/// Replay jobs, newest first (the last 100).
#[utoipa::path(get, path = "/admin/replays", tag = "replay",
    responses((status = 200, body = ReplayList),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn list(State(app): State<Arc<App>>) -> Result<Json<ReplayList>, ApiError> {
    let jobs = app.store.replay_jobs(100).map_err(storage)?;
    Ok(Json(ReplayList { jobs }))
}

/// One replay job and its progress.
#[utoipa::path(get, path = "/admin/replays/{id}", tag = "replay",
    params(("id" = i64, Path, description = "job id")),
    responses((status = 200, body = ReplayJob),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn one(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<ReplayJob>, ApiError> {
    let id = job_id(&id)?;
    match app.store.replay_job(id).map_err(storage)? {
        Some(job) => Ok(Json(job)),
        None => Err(ApiError::not_found(format!("no replay job {id}"))),
    }
}

/// Cancels a running job: it queues nothing more (a finished job is returned as it is).
#[utoipa::path(post, path = "/admin/replays/{id}/cancel", tag = "replay",
    params(("id" = i64, Path, description = "job id")),
    responses((status = 200, body = ReplayJob),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<ReplayJob>, ApiError> {
    let id = job_id(&id)?;
    match app.store.cancel_replay(id).await.map_err(storage)? {
        Some(job) => {
            tracing::info!(job = id, "replay job cancelled by an operator");
            Ok(Json(job))
        }
        None => Err(ApiError::not_found(format!("no replay job {id}"))),
    }
}
