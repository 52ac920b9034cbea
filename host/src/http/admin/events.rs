//! `/admin/events`: the queue as operators see it.
//!
//! - `GET /admin/events?state=dead&integration=acme&limit=50` — newest first, without payloads;
//!   `state` one of `queued|running|done|skipped|dead`, `limit` at most 500 (default 50).
//! - `GET /admin/events/{id}` — one event with its payload, timing, the run holding it (if
//!   running) and its attempts (the last 20): when each started, how long it took, which run and
//!   connector version ran it, how it ended and with which error.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error;
use crate::app::App;
use crate::store::EventState;

const MAX_LIMIT: u32 = 500;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/events", get(list))
        .route("/admin/events/{id}", get(one))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<EventState>,
    integration: Option<String>,
    limit: Option<u32>,
}

async fn list(
    State(app): State<Arc<App>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "query: state=queued|running|done|skipped|dead, integration=<id>, limit=<1..500>",
        );
    };
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    match app
        .store
        .list_events(q.integration.as_deref(), q.state, limit)
    {
        Ok(events) => {
            let items: Vec<_> = events
                .iter()
                .map(|e| {
                    json!({
                        "id": e.id, "integration": e.integration, "kind": e.kind,
                        "state": e.state, "attempts": e.attempts, "last_error": e.last_error,
                        "connector_version": e.connector_version,
                    })
                })
                .collect();
            Json(json!({ "events": items })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot list events");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
        }
    }
}

async fn one(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "an event id is a number");
    };
    match app.store.event_detail(id) {
        Ok(Some(detail)) => Json(detail).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no event {id}")),
        Err(e) => {
            tracing::error!(error = %e, "cannot read an event");
            error(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
        }
    }
}
