//! The HTTP surface.
//!
//! - [`hooks`]: intake — `POST /hooks/{integration}/{source}` (ATS webhooks, e.g. `lever`,
//!   verified by the integration's [`Ats`](crate::ats::Ats) adapter) and
//!   `ANY /hooks/{integration}/vendor[/...]` (vendor callbacks, answered through the connector).
//!   Both commit to the store *before* they answer 2xx.
//! - each ATS's own routes, from its folder (`crate::ats::<name>::routes`): Gem's API under
//!   `/gem/{integration}/...` (Gem calls us), Lever's `GET /oauth/lever/callback` (public; the
//!   `state` authenticates it). [`lever_oauth`] is the old path of Lever's.
//! - [`admin`]: `/admin/...` when an admin token is configured.
//! - [`console`]: the operator console, `/console/...`, mounted with the admin API
//!   ([`console::charts`]: its SVG charts).
//! - `GET /healthz`: 200 `{"status":"ok","leader":…,"clock_skew_ms":…}`, or 503 with the
//!   reason when the database does not answer (`leader`: whether this host leads housekeeping;
//!   `clock_skew_ms`: the database's clock minus this host's, see [`crate::flow::skew`]);
//!   `GET /metrics` (Prometheus text, see [`crate::metrics`]).
//! - [`error`]: [`ApiError`], the one error type: `{"error": "<message>", "code": "<code>"}`.
//!
//! While the host is stopping ([`App::draining`]) every route but `/metrics` answers 503 with
//! `Retry-After`, so senders retry against another instance or after the restart.
//!
//! The server is served with each connection's peer address (`ConnectInfo`): the console's
//! sign-in rate limit counts per client address.

pub mod admin;
pub mod console;
pub mod error;
pub mod hooks;
pub mod reply;

pub use crate::ats::lever::routes as lever_oauth;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use tokio::sync::watch;

use crate::app::App;
use error::ApiError;

/// The router of a host.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.server.max_body_bytes;
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/hooks/{integration}/vendor", any(hooks::vendor))
        .route("/hooks/{integration}/vendor/{*rest}", any(hooks::vendor))
        .route("/hooks/{integration}/{source}", post(hooks::ats))
        .merge(crate::ats::lever::routes::routes())
        .merge(crate::ats::gem::routes::routes())
        .layer(DefaultBodyLimit::max(limit));
    // Merged after the hooks' body limit so uploads get the admin limit instead.
    if let Some(admin) = crate::http::admin::router(app.clone()) {
        router = router.merge(admin);
    }
    if let Some(console) = crate::http::console::router(app.clone()) {
        router = router.merge(console);
    }
    router
        .layer(axum::middleware::from_fn_with_state(app.clone(), draining))
        .with_state(app)
}

/// How long `/healthz` waits for the database to answer.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Liveness and readiness: 503 with the reason while the database does not answer (no address
/// or user: the page is unauthenticated), so a load balancer sends webhooks to another host.
async fn healthz(State(app): State<Arc<App>>) -> Response {
    let leader = app.leader.load(std::sync::atomic::Ordering::SeqCst);
    // The database's clock minus this host's, as of the last heartbeat (`flow::skew`).
    let clock_skew_ms = app.metrics.clock_skew_ms();
    // Off the async threads: a lost server blocks the check up to its connect timeout.
    let store = app.store.clone();
    let ping = tokio::task::spawn_blocking(move || store.ping());
    let problem = match tokio::time::timeout(HEALTH_TIMEOUT, ping).await {
        Ok(Ok(Ok(()))) => None,
        // The details (the server's address, its user) go to the log, not to this
        // unauthenticated page.
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "/healthz: the database does not answer");
            Some("database unreachable: the store does not answer (the host's log says why)".into())
        }
        Ok(Err(_)) => Some("database check failed".to_string()),
        Err(_) => Some(format!(
            "database unreachable: no answer within {} s",
            HEALTH_TIMEOUT.as_secs()
        )),
    };
    match problem {
        None => axum::Json(serde_json::json!({
            "status": "ok", "leader": leader, "clock_skew_ms": clock_skew_ms,
        }))
        .into_response(),
        Some(reason) => {
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({
                    "status": "unavailable", "reason": reason, "leader": leader,
                    "clock_skew_ms": clock_skew_ms,
                })),
            )
                .into_response();
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(error::STORAGE_RETRY_AFTER),
            );
            response
        }
    }
}

/// Seconds a sender is asked to wait while this host stops.
const DRAINING_RETRY_AFTER: &str = "5";

/// Refuses new work once the host is stopping (nothing is accepted that it might not store).
async fn draining(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if app.draining.load(std::sync::atomic::Ordering::SeqCst) && request.uri().path() != "/metrics"
    {
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "switchyard is shutting down; retry later",
        )
        .into_response();
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static(DRAINING_RETRY_AFTER),
        );
        return response;
    }
    next.run(request).await
}

/// Serves `router` on `listener` until `stop` turns true.
pub fn spawn(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        };
        let service = router(app).into_make_service_with_connect_info::<std::net::SocketAddr>();
        if let Err(e) = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    })
}

/// `GET /metrics`: the exposition is gathered on a blocking thread ([`off_http`]).
async fn metrics(State(app): State<Arc<App>>) -> Response {
    match off_http(move || exposition(&app)).await {
        Some(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                crate::metrics::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        None => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable").into_response()
        }
    }
}

/// Runs `read` on the runtime's blocking threads, not on the HTTP threads that acknowledge
/// webhooks: the store's figures of a scrape walk the backlog's index entries (milliseconds with
/// tens of thousands queued), during which a webhook's answer on that thread would wait. `None`
/// if `read` panicked.
async fn off_http<T: Send + 'static>(read: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(read).await.ok()
}

/// The Prometheus text: the store's figures read now, then every metric.
fn exposition(app: &App) -> String {
    let depth = app.store.queue_depth().ok();
    let metrics = &app.metrics;
    metrics.store_writer(&app.store.writer_stats());
    if let Ok(bytes) = app.store.disk_bytes() {
        metrics.database_bytes(bytes);
    }
    // The state gauges of integrations that exist, with each one's quota.
    if let Ok(totals) = app.store.kv_totals() {
        let rows: Vec<_> = totals
            .into_iter()
            .filter_map(|(integration, connector, bytes)| {
                let quota = app
                    .integration(&integration)
                    .map(|i| app.limits_of(&i.config).state_total_bytes as u64)?;
                Some((integration, connector, bytes, quota))
            })
            .collect();
        metrics.state_usage(&rows);
    }
    if let Ok(waiting) = app.store.waiting_all() {
        let rows: Vec<_> = waiting
            .into_iter()
            .map(|(integration, what, n)| (integration, what.as_str(), n))
            .collect();
        metrics.waiting(&rows);
    }
    metrics.render(depth)
}

#[cfg(test)]
mod tests {
    use super::off_http;

    /// A scrape's reads do not hold the HTTP thread: on a runtime of one thread, a read that
    /// blocks until another task of that runtime has run still lets that task run (inline, it
    /// would wait forever; the bound fails the test instead).
    #[tokio::test(flavor = "current_thread")]
    async fn a_scrapes_reads_leave_the_http_thread_free() {
        let (ran, other_task_ran) = std::sync::mpsc::channel();
        let read = off_http(move || {
            other_task_ran
                .recv_timeout(std::time::Duration::from_secs(30))
                .is_ok()
        });
        tokio::spawn(async move { ran.send(()) });
        assert_eq!(
            read.await,
            Some(true),
            "the read blocked the runtime's thread"
        );
    }
}
