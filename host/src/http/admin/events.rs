//! `/admin/events`: the queue as operators see it.
//!
//! - `GET /admin/events?state=dead&integration=acme&limit=50` — newest first, without payloads;
//!   also `connector`, `ats`, `candidate` (text in the payload), `error` (text in the last
//!   error), `since`/`until` (RFC 3339 or unix ms) and `before` (the cursor: `next_cursor` of the
//!   previous page); `state` one of `queued|running|done|skipped|waiting|dead`, `limit` at most
//!   500 (default 50). A waiting event says what it waits for (`waiting_for`) and why
//!   (`last_error`).
//! - `GET /admin/events/{id}` — one event with its payload, timing, the run holding it (if
//!   running) and its attempts (the last 20): when each started, how long it took, which run and
//!   connector version ran it, how it ended and with which error; the webhook's headers as
//!   received (secrets masked) and its signature check; each attempt's vendor and ATS calls.
//! - `DELETE /admin/events/{id}` — removes a dead letter and its attempts (409 for an event that
//!   is not dead); its dedupe key stays taken (a tombstone), so a redelivery is not queued again.
//! - `POST /admin/events/{id}/retry` — an operator's "retry now" (or replay): a waiting, dead
//!   or skipped event (e.g. one not sent while its integration was off) is queued, due now, with
//!   a fresh attempt budget; with `?force=true` a done one too. 409 for one queued or running
//!   (or done, without force). Safe to repeat: a screening whose order is recorded is never
//!   started twice.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::criteria::Criteria;
use crate::app::App;
use crate::http::error::{ApiError, ErrorBody};
use crate::store::retention::RemoveDead;
use crate::store::traffic::{Inbound, RecordedCall};
use crate::store::{Event, EventDetail, EventState, Retried, WaitFor};

const MAX_LIMIT: u32 = 500;

pub(super) fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one, remove))
        .routes(routes!(retry))
}

/// The filters of `GET /admin/events` (all optional; each one narrows the list).
#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only events in this state.
    state: Option<EventState>,
    /// Only this integration's events.
    integration: Option<String>,
    /// Only events of integrations served by this connector (e.g. `certn`).
    connector: Option<String>,
    /// Only events of integrations on this ATS (`lever`, `gem`).
    ats: Option<String>,
    /// Only events whose payload mentions this text: a candidate's or opportunity's id, an
    /// email, an order reference.
    candidate: Option<String>,
    /// Only events whose last error contains this text.
    error: Option<String>,
    /// Received at or after this instant (RFC 3339, or unix ms).
    since: Option<String>,
    /// Received before this instant (RFC 3339, or unix ms).
    until: Option<String>,
    /// The cursor: only events with a smaller id (the `next_cursor` of the previous page).
    before: Option<i64>,
    /// At most this many (1..500, default 50).
    limit: Option<u32>,
}

impl ListQuery {
    /// The filter part, as a replay job takes it.
    fn criteria(&self) -> Criteria {
        Criteria {
            state: self.state,
            integration: self.integration.clone(),
            connector: self.connector.clone(),
            ats: self.ats.clone(),
            candidate: self.candidate.clone(),
            error: self.error.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
        }
    }
}

/// `GET /admin/events`: newest first.
#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventSummary>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
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
            "query: state=queued|running|done|skipped|waiting|dead, integration=<id>, \
             connector=<id>, ats=<kind>, candidate=<text>, error=<text>, since=<time>, \
             until=<time>, before=<id>, limit=<1..500>",
        ));
    };
    let filter = q.criteria().filter(&app)?;
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let events = app
        .store
        .search_events(&filter, q.before, limit)
        .map_err(|e| {
            tracing::error!(error = %e, "cannot list events");
            ApiError::storage()
        })?;
    let next_cursor = match events.last() {
        Some(last) if events.len() == limit as usize => Some(last.id),
        _ => None,
    };
    Ok(Json(EventList {
        events: events.into_iter().map(EventSummary::from).collect(),
        next_cursor,
    }))
}

/// An event as the console's event page shows it.
#[derive(Serialize, ToSchema)]
pub struct EventView {
    #[serde(flatten)]
    pub detail: EventDetail,
    /// The webhook as received: headers (secret values masked) and the signature check. None
    /// for events the host made itself (vendor status updates, deliveries) and events from
    /// before this was recorded.
    pub inbound: Option<Inbound>,
    /// Every outbound call of its attempts (vendor and ATS), oldest first, each with its
    /// `attempt`: at most 50 per attempt and 200 per event.
    pub calls: Vec<RecordedCall>,
}

/// One event with its payload, timing and attempts (the last 20).
#[utoipa::path(get, path = "/admin/events/{id}", tag = "events",
    params(("id" = i64, Path, description = "event id")),
    responses((status = 200, body = EventView),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such event", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn one(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(ApiError::bad_request("an event id is a number"));
    };
    let storage = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "cannot read an event");
        ApiError::storage()
    };
    let Some(detail) = app.store.event_detail(id).map_err(storage)? else {
        return Err(ApiError::not_found(format!("no event {id}")));
    };
    Ok(Json(EventView {
        detail,
        inbound: app.store.inbound(id).map_err(storage)?,
        calls: app.store.calls(id).map_err(storage)?,
    }))
}

/// `DELETE /admin/events/{id}`: what was removed.
#[derive(Serialize, ToSchema)]
pub struct RemovedEvent {
    pub removed: i64,
}

/// Removes a dead letter with its attempts. Its dedupe key stays taken (a tombstone), so a
/// redelivery of the same webhook is answered as a duplicate, not queued again.
#[utoipa::path(delete, path = "/admin/events/{id}", tag = "events",
    params(("id" = i64, Path, description = "event id")),
    responses((status = 200, body = RemovedEvent),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such event", body = ErrorBody),
        (status = 409, description = "the event is not dead: nothing removed", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn remove(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<RemovedEvent>, ApiError> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(ApiError::bad_request("an event id is a number"));
    };
    match app.store.remove_dead_event(id).await {
        Ok(RemoveDead::Removed) => {
            tracing::info!(event = id, "dead letter removed by an operator");
            Ok(Json(RemovedEvent { removed: id }))
        }
        Ok(RemoveDead::NotDead(state)) => Err(ApiError::conflict(format!(
            "event {id} is {}, not dead: only dead letters can be removed",
            state.as_str()
        ))),
        Ok(RemoveDead::Missing) => Err(ApiError::not_found(format!("no event {id}"))),
        Err(e) => {
            tracing::error!(error = %e, "cannot remove an event");
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

/// `POST /admin/events/{id}/retry` options.
#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RetryQuery {
    /// Replay a `done` event too (its screening is not started again: the order recorded under
    /// its idempotency key answers).
    force: Option<bool>,
}

/// An operator's "retry now" (or replay): a waiting, dead or skipped event, or with `force` a
/// done one, is queued, due now.
#[utoipa::path(post, path = "/admin/events/{id}/retry", tag = "events",
    params(("id" = i64, Path, description = "event id"), RetryQuery),
    responses((status = 200, body = Requeued),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such event", body = ErrorBody),
        (status = 409, description = "the event is queued or running, or done without `force`", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn retry(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    query: Result<Query<RetryQuery>, QueryRejection>,
) -> Result<Json<Requeued>, ApiError> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(ApiError::bad_request("an event id is a number"));
    };
    let Ok(Query(q)) = query else {
        return Err(ApiError::bad_request("query: force=true|false"));
    };
    let retried = match q.force {
        Some(true) => app.store.replay_event(id, true).await,
        _ => app.store.retry_event(id),
    };
    match retried {
        Ok(Retried::Queued) => {
            tracing::info!(event = id, "event queued again by an operator");
            app.wake.notify_waiters();
            Ok(Json(Requeued {
                id,
                state: EventState::Queued,
            }))
        }
        Ok(Retried::Refused(state)) => Err(ApiError::conflict(format!(
            "event {id} is {}: only a waiting, dead or skipped event can be retried \
             (a done one with force=true)",
            state.as_str()
        ))),
        Ok(Retried::NotFound) => Err(ApiError::not_found(format!("no event {id}"))),
        Err(e) => {
            tracing::error!(error = %e, "cannot retry an event");
            Err(ApiError::storage())
        }
    }
}
