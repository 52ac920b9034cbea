//! `/admin/events`: the queue as operators see it.
//!
//! - `GET /admin/events?state=dead&integration=acme&limit=50` — newest first, without payloads;
//!   `state` one of `queued|running|done|skipped|waiting|dead`, `limit` at most 500 (default
//!   50). A waiting event says what it waits for (`waiting_for`) and why (`last_error`).
//! - `GET /admin/events/{id}` — one event with its payload, timing, the run holding it (if
//!   running) and its attempts (the last 20): when each started, how long it took, which run and
//!   connector version ran it, how it ended and with which error.
//! - `POST /admin/events/{id}/retry` — an operator's "retry now" (or replay): a waiting, dead
//!   or skipped event (e.g. one not sent while its integration was off) is queued, due now, with
//!   a fresh attempt budget. 409 for one queued, running or done. Safe to repeat: a screening
//!   whose order is recorded is never started twice.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::http::error::{ApiError, ErrorBody};
use crate::store::{Event, EventDetail, EventState, Retried, WaitFor};

const MAX_LIMIT: u32 = 500;

pub(super) fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one))
        .routes(routes!(retry))
}

/// The filters of `GET /admin/events`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only events in this state.
    state: Option<EventState>,
    /// Only this integration's events.
    integration: Option<String>,
    /// At most this many (1..500, default 50).
    limit: Option<u32>,
}

/// `GET /admin/events`: newest first.
#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventSummary>,
}

/// An event without its payload.
#[derive(Serialize, ToSchema)]
pub struct EventSummary {
    pub id: i64,
    pub integration: String,
    pub kind: String,
    pub state: EventState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub connector_version: Option<String>,
    /// What a waiting event waits for (its reason is `last_error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<WaitFor>,
    /// When it was received (unix ms).
    pub received_at_ms: i64,
}

impl From<Event> for EventSummary {
    fn from(e: Event) -> EventSummary {
        EventSummary {
            id: e.id,
            integration: e.integration,
            kind: e.kind,
            state: e.state,
            attempts: e.attempts,
            last_error: e.last_error,
            connector_version: e.connector_version,
            waiting_for: e.waiting_for,
            received_at_ms: e.received_at_ms,
        }
    }
}

/// The queue, newest first, without payloads.
#[utoipa::path(get, path = "/admin/events", tag = "events", params(ListQuery),
    responses((status = 200, body = EventList),
        (status = 400, description = "an unknown filter or value", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn list(
    State(app): State<Arc<App>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(ApiError::bad_request(
            "query: state=queued|running|done|skipped|waiting|dead, integration=<id>, limit=<1..500>",
        ));
    };
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let events = app
        .store
        .list_events(q.integration.as_deref(), q.state, limit)
        .map_err(|e| {
            tracing::error!(error = %e, "cannot list events");
            ApiError::storage()
        })?;
    Ok(Json(EventList {
        events: events.into_iter().map(EventSummary::from).collect(),
    }))
}

/// One event with its payload, timing and attempts (the last 20).
#[utoipa::path(get, path = "/admin/events/{id}", tag = "events",
    params(("id" = i64, Path, description = "event id")),
    responses((status = 200, body = EventDetail),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such event", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn one(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<EventDetail>, ApiError> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(ApiError::bad_request("an event id is a number"));
    };
    match app.store.event_detail(id) {
        Ok(Some(detail)) => Ok(Json(detail)),
        Ok(None) => Err(ApiError::not_found(format!("no event {id}"))),
        Err(e) => {
            tracing::error!(error = %e, "cannot read an event");
            Err(ApiError::storage())
        }
    }
}

/// The event queued again.
#[derive(Serialize, ToSchema)]
pub struct Requeued {
    pub id: i64,
    pub state: EventState,
}

/// An operator's "retry now": a waiting, dead or skipped event is queued, due now.
#[utoipa::path(post, path = "/admin/events/{id}/retry", tag = "events",
    params(("id" = i64, Path, description = "event id")),
    responses((status = 200, body = Requeued),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such event", body = ErrorBody),
        (status = 409, description = "the event is queued, running or done", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn retry(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Requeued>, ApiError> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(ApiError::bad_request("an event id is a number"));
    };
    match app.store.retry_event(id) {
        Ok(Retried::Queued) => {
            tracing::info!(event = id, "event queued again by an operator");
            app.wake.notify_waiters();
            Ok(Json(Requeued {
                id,
                state: EventState::Queued,
            }))
        }
        Ok(Retried::Refused(state)) => Err(ApiError::conflict(format!(
            "event {id} is {}: only a waiting, dead or skipped event can be retried",
            state.as_str()
        ))),
        Ok(Retried::NotFound) => Err(ApiError::not_found(format!("no event {id}"))),
        Err(e) => {
            tracing::error!(error = %e, "cannot retry an event");
            Err(ApiError::storage())
        }
    }
}
