//! `GET /admin/stats?hours=3[&connector=certn]`: the numbers behind the console's pictures,
//! computed from the store on each request (see [`crate::store::stats`]): events received and
//! failed attempts per integration and minute over the last `hours` (1..=24, default 3), the
//! queue now (depth by state, oldest pending event), and per connector version its attempts,
//! failures and latency p50/p99 (what the connectors page shows; `connector` narrows it to
//! one connector's versions).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::http::error::{ApiError, ErrorBody};
use crate::store::stats::{MinuteCount, QueueNow, VersionStats};
use crate::store::StoreError;

/// The longest window offered.
const MAX_HOURS: u32 = 24;

pub(super) fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(stats))
}

/// Which window.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// The last this many hours (1..=24, default 3).
    hours: Option<u32>,
    /// Only this connector's versions in `connector_versions`.
    connector: Option<String>,
}

/// The console's numbers.
#[derive(Serialize, ToSchema)]
pub struct Stats {
    /// The window's start (unix ms).
    pub since_ms: i64,
    pub events_per_minute: Vec<MinuteCount>,
    /// Attempts that failed (retried later or dead-lettered), per integration and minute.
    pub failures_per_minute: Vec<MinuteCount>,
    pub queue: QueueNow,
    pub connector_versions: Vec<VersionStats>,
}

/// Events and failures per minute, the queue now, latency per connector version.
#[utoipa::path(get, path = "/admin/stats", tag = "stats", params(StatsQuery),
    responses((status = 200, body = Stats),
        (status = 400, description = "an unknown parameter or a window out of range", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn stats(
    State(app): State<Arc<App>>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Stats>, ApiError> {
    let usage = || ApiError::bad_request(format!("query: hours=<1..{MAX_HOURS}>, connector=<id>"));
    let Ok(Query(q)) = query else {
        return Err(usage());
    };
    let hours = q.hours.unwrap_or(3);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(usage());
    }
    let since_ms = crate::clock::now_ms() - i64::from(hours) * 3_600_000;
    let storage = |e: StoreError| {
        tracing::error!(error = %e, "cannot compute stats");
        ApiError::storage()
    };
    let store = &app.store;
    let mut connector_versions = store.version_stats(since_ms).map_err(storage)?;
    if let Some(id) = q.connector.as_deref() {
        let prefix = format!("{id}@");
        connector_versions.retain(|v| v.connector_version.starts_with(&prefix));
    }
    Ok(Json(Stats {
        since_ms,
        events_per_minute: store.events_per_minute(since_ms).map_err(storage)?,
        failures_per_minute: store.failures_per_minute(since_ms).map_err(storage)?,
        queue: store.queue_now().map_err(storage)?,
        connector_versions,
    }))
}
