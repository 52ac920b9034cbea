//! An integration's health, as `GET /admin/integrations/{id}` shows it: what needs an operator
//! and why. Computed from the store on each read (waiting events, connector state against its
//! quota), so it cannot go stale.
//!
//! - `POST /admin/integrations/{id}/resume` — an operator's "retry now" for every waiting event
//!   of the integration (after granting a permission, raising a quota, ...). Events whose cause
//!   is still there wait again at once, with the reason.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::config::IntegrationConfig;
use crate::http::error::{ApiError, ErrorBody};
use crate::metrics::QuotaLevel;
use crate::store::{WaitFor, Waiting};

pub(super) fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(resume))
}

/// How an integration is doing.
#[derive(Serialize, ToSchema, PartialEq, Eq, Debug, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Working, but heading for trouble (state above 80 % of its quota).
    Warning,
    /// Events wait for an operator or the customer (see `problems`).
    Attention,
}

/// One thing to look at.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `connect`, `permission`, `quota` (events wait for it), or `state_quota_warning`.
    pub kind: String,
    /// What is wrong and what fixes it.
    pub message: String,
}

/// An integration's health.
#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: Status,
    pub problems: Vec<Problem>,
    /// Its waiting events, by what they wait for.
    pub waiting: Vec<Waiting>,
    /// Bytes its connector keeps in `state`, and the quota they count against.
    pub state_bytes: u64,
    pub state_quota_bytes: u64,
}

/// The health of integration `c`. A store error shows as a problem rather than failing the view.
pub fn of(app: &App, c: &IntegrationConfig) -> Health {
    let quota = app.limits_of(c).state_total_bytes as u64;
    let mut problems = Vec::new();
    let waiting = app.store.waiting(&c.id).unwrap_or_else(|e| {
        problems.push(Problem {
            kind: "storage".into(),
            message: format!("cannot read the waiting events: {e}"),
        });
        Vec::new()
    });
    let bytes = app.store.kv_usage(&c.id, &c.connector, "").unwrap_or(0);
    for w in &waiting {
        let fix = match w.waiting_for {
            WaitFor::Connect => "connect the integration (POST /admin/integrations/{id}/lever/connect)",
            WaitFor::Permission => {
                "grant the permission in the ATS, then POST /admin/integrations/{id}/resume (or wait for the re-check)"
            }
            WaitFor::Quota => {
                "raise the integration's state_total_bytes (PATCH /admin/integrations/{id}) or fix the connector"
            }
            WaitFor::Operator => {
                "check at the vendor whether the candidate was invited (cancel it there if so), then POST /admin/events/<event>/retry or POST /admin/integrations/{id}/resume"
            }
        };
        problems.push(Problem {
            kind: w.waiting_for.as_str().into(),
            message: format!(
                "{} event(s) waiting for {}: {}; to fix: {}",
                w.events,
                w.waiting_for.as_str(),
                w.reason.as_deref().unwrap_or("no reason recorded"),
                fix.replace("{id}", &c.id)
            ),
        });
    }
    let full = waiting.iter().any(|w| w.waiting_for == WaitFor::Quota);
    if !full && QuotaLevel::of(bytes, quota) == QuotaLevel::Warning {
        problems.push(Problem {
            kind: "state_quota_warning".into(),
            message: format!(
                "the connector keeps {bytes} bytes in state, {} % of its {quota}-byte quota \
                 (runtime.limits.state_total_bytes, or the integration's state_total_bytes)",
                bytes.saturating_mul(100) / quota.max(1)
            ),
        });
    }
    let status = if !waiting.is_empty() {
        Status::Attention
    } else if problems.is_empty() {
        Status::Ok
    } else {
        Status::Warning
    };
    Health {
        status,
        problems,
        waiting,
        state_bytes: bytes,
        state_quota_bytes: quota,
    }
}

/// How many waiting events were queued again.
#[derive(Serialize, ToSchema)]
pub struct Resumed {
    pub resumed: usize,
}

/// Retry now: every waiting event of the integration is queued again.
#[utoipa::path(post, path = "/admin/integrations/{id}/resume", tag = "integrations",
    params(("id" = String, Path, description = "integration id")),
    responses((status = 200, body = Resumed),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn resume(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Resumed>, ApiError> {
    if app.integration(&id).is_none() {
        return Err(ApiError::not_found(format!("no integration `{id}`")));
    }
    let resumed = app.store.resume_waiting(Some(&id), None).map_err(|e| {
        tracing::error!(error = %e, "cannot resume waiting events");
        ApiError::storage()
    })?;
    tracing::info!(integration = %id, events = resumed, "waiting events resumed by an operator");
    app.wake.notify_waiters();
    Ok(Json(Resumed { resumed }))
}
