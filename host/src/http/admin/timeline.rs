//! `GET /admin/integrations/{id}/timeline?opportunity=<id>`: what happened to one candidate,
//! oldest first, from stored rows only: each webhook accepted (with its signature check), each
//! attempt (the connector version that ran it, how it ended), each vendor call and ATS call it
//! made, and where each order's status stands. ATS-neutral: a candidate's events are the ones
//! whose payload names the opportunity (or one of its orders).

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
use crate::recording::CallTarget;
use crate::store::search::EventFilter;
use crate::store::{Event, StoreError};

/// Events read per candidate (its webhooks and status updates): far more than one screening has.
const MAX_EVENTS: u32 = 200;

pub(super) fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(timeline))
}

/// Whose timeline.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    /// The ATS's id of the candidate's opportunity (application).
    opportunity: String,
}

/// What a timeline entry is.
#[derive(Serialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A webhook or status update was accepted and stored.
    Accepted,
    /// A worker ran the event (the connector invoked, or the order found recorded).
    Attempt,
    /// The connector called its vendor.
    VendorCall,
    /// The host called the ATS (a read, or a write: tag, link, note, status webhook).
    AtsCall,
    /// An order's status as it stands.
    Status,
}

/// One line of the timeline.
#[derive(Serialize, ToSchema)]
pub struct Entry {
    /// Unix ms.
    pub at_ms: i64,
    pub step: Step,
    /// The event it belongs to (none for an order's status).
    pub event_id: Option<i64>,
    pub text: String,
}

/// A candidate's timeline.
#[derive(Serialize, ToSchema)]
pub struct Timeline {
    pub integration: String,
    pub opportunity: String,
    pub entries: Vec<Entry>,
}

/// What happened to one candidate, oldest first.
#[utoipa::path(get, path = "/admin/integrations/{id}/timeline", tag = "events",
    params(("id" = String, Path, description = "integration id"), TimelineQuery),
    responses((status = 200, body = Timeline),
        (status = 400, description = "no opportunity given", body = ErrorBody),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn timeline(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    query: Result<Query<TimelineQuery>, QueryRejection>,
) -> Result<Json<Timeline>, ApiError> {
    let Some(opportunity) = query
        .ok()
        .map(|Query(q)| q.opportunity.trim().to_string())
        .filter(|o| !o.is_empty())
    else {
        return Err(ApiError::bad_request("query: opportunity=<the ATS's id>"));
    };
    if app.integration(&id).is_none() {
        return Err(ApiError::not_found(format!("no integration `{id}`")));
    }
    let storage = |e: StoreError| {
        tracing::error!(error = %e, "cannot read a timeline");
        ApiError::storage()
    };
    let orders = app
        .store
        .order_statuses(&id, &opportunity)
        .map_err(storage)?;
    // The candidate's webhooks name the opportunity; status updates name an order.
    let mut events: Vec<Event> = Vec::new();
    for text in std::iter::once(&opportunity).chain(orders.iter().map(|o| &o.order_ref)) {
        let filter = EventFilter {
            integrations: Some(vec![id.clone()]),
            text: Some(text.clone()),
            ..EventFilter::default()
        };
        let found = app
            .store
            .search_events(&filter, None, MAX_EVENTS)
            .map_err(storage)?;
        for event in found {
            if events.iter().all(|known| known.id != event.id) {
                events.push(event);
            }
        }
    }
    let mut entries = Vec::new();
    for event in &events {
        entries.extend(event_entries(&app, event).map_err(storage)?);
    }
    entries.extend(orders.into_iter().map(|o| Entry {
        at_ms: o.updated_at_ms,
        step: Step::Status,
        event_id: None,
        text: format!("order {}: {} ({})", o.order_ref, o.label, o.state),
    }));
    // Stable: entries of one instant keep the order they were built in.
    entries.sort_by_key(|e| e.at_ms);
    Ok(Json(Timeline {
        integration: id,
        opportunity,
        entries,
    }))
}

/// One event's entries: accepted, then each attempt with the calls it made.
fn event_entries(app: &App, event: &Event) -> Result<Vec<Entry>, StoreError> {
    let mut entries = Vec::new();
    let signature = app
        .store
        .inbound(event.id)?
        .map(|i| format!(", signature {}", i.signature))
        .unwrap_or_default();
    entries.push(Entry {
        at_ms: event.received_at_ms,
        step: Step::Accepted,
        event_id: Some(event.id),
        text: format!("{} #{} accepted{signature}", event.kind, event.id),
    });
    let attempts = app
        .store
        .event_detail(event.id)?
        .map(|d| d.attempts_history)
        .unwrap_or_default();
    for a in attempts {
        let error = a.error.map(|e| format!(": {e}")).unwrap_or_default();
        entries.push(Entry {
            at_ms: a.started_at_ms,
            step: Step::Attempt,
            event_id: Some(event.id),
            text: format!(
                "attempt {} ({}) {}{error}",
                a.attempt,
                a.connector_version.as_deref().unwrap_or("no connector"),
                a.outcome
            ),
        });
    }
    for c in app.store.calls(event.id)? {
        let call = c.call;
        let outcome = match (call.status, &call.error) {
            (Some(status), _) => status.to_string(),
            (None, Some(e)) => e.clone(),
            (None, None) => "no answer".into(),
        };
        entries.push(Entry {
            at_ms: call.started_at_ms,
            step: match call.target {
                CallTarget::Vendor => Step::VendorCall,
                CallTarget::Ats => Step::AtsCall,
            },
            event_id: Some(event.id),
            text: format!(
                "{} {} -> {outcome} in {} ms",
                call.method, call.url, call.took_ms
            ),
        });
    }
    Ok(entries)
}
