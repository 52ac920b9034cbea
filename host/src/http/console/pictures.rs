//! `GET /console/pictures?hours=3`: the pictures, each with its numbers in a table under it
//! (readable by a viewer, who has no admin token for `/admin/stats`): events per minute and
//! failed attempts per minute per integration, the queue now and its oldest pending event, and
//! latency p50/p99 per connector version. Computed from the store's stats on each request and
//! drawn by [`super::charts`] (escaped SVG).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::charts::{self, Chart, Kind, Series};
use super::layout::{self, Page, Section};
use super::session::Current;
use crate::app::App;
use crate::store::stats::{MinuteCount, QueueNow, VersionStats};

/// The windows offered, in hours.
const WINDOWS: [u32; 4] = [1, 3, 12, 24];

/// The page's query.
#[derive(Deserialize)]
pub struct PicturesQuery {
    hours: Option<u32>,
}

/// Minutes of the day, UTC (`HH:MM`), for the time axis.
fn clock(ms: f64) -> String {
    let minutes = ((ms / 60_000.0).floor() as i64).rem_euclid(24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// One series per integration.
fn per_integration(counts: &[MinuteCount]) -> Vec<Series> {
    let mut by: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for c in counts {
        by.entry(&c.integration)
            .or_default()
            .push((c.minute_ms as f64, c.count as f64));
    }
    by.into_iter()
        .map(|(name, points)| Series {
            name: name.to_string(),
            points,
        })
        .collect()
}

fn svg(chart: &Chart<'_>) -> Markup {
    // `charts::render` escapes every text it draws.
    html! { figure.chart { (PreEscaped(charts::render(chart))) } }
}

fn per_minute(title: &str, id: &str, counts: &[MinuteCount]) -> Markup {
    let series = per_integration(counts);
    let chart = Chart {
        title,
        x_label: "minute (UTC)",
        y_label: "count",
        kind: Kind::Line,
        series: &series,
        x_text: &clock,
    };
    html! {
        (svg(&chart))
        details { summary { "The numbers" }
            table id=(id) {
                thead { tr { th { "Minute (UTC)" } th { "Integration" } th { "Count" } } }
                tbody {
                    @for c in counts { tr { td { (layout::time(c.minute_ms)) } td { (c.integration) } td { (c.count) } } }
                    @if counts.is_empty() { tr { td colspan="3" { "None in this window." } } }
                }
            }
        }
    }
}

fn queue(q: &QueueNow) -> Markup {
    let states = [
        ("queued", q.queued),
        ("running", q.running),
        ("waiting", q.waiting),
        ("dead", q.dead),
    ];
    let series: Vec<Series> = states
        .iter()
        .map(|(name, n)| Series {
            name: name.to_string(),
            points: vec![(0.0, *n as f64)],
        })
        .collect();
    let chart = Chart {
        title: "Queue depth now",
        x_label: "state",
        y_label: "events",
        kind: Kind::Bar,
        series: &series,
        x_text: &|_| "now".to_string(),
    };
    html! {
        (svg(&chart))
        table #queue {
            thead { tr { @for (name, _) in &states { th { (name) } } th { "Oldest pending received (UTC)" } } }
            tbody { tr {
                @for (_, n) in &states { td { (n) } }
                td { @if let Some(at) = q.oldest_pending_ms { (layout::time(at)) } @else { "none pending" } }
            } }
        }
    }
}

fn latency(versions: &[VersionStats]) -> Markup {
    let series: Vec<Series> = [("p50", false), ("p99", true)]
        .into_iter()
        .map(|(name, p99)| Series {
            name: name.to_string(),
            points: versions
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, if p99 { v.p99_ms } else { v.p50_ms } as f64))
                .collect(),
        })
        .collect();
    let name = |x: f64| {
        versions
            .get(x as usize)
            .map(|v| layout::short(&v.connector_version, 18))
            .unwrap_or_default()
    };
    let chart = Chart {
        title: "Call latency per connector version",
        x_label: "connector version",
        y_label: "ms",
        kind: Kind::Bar,
        series: &series,
        x_text: &name,
    };
    html! {
        (svg(&chart))
        table #latency {
            thead { tr { th { "Connector version" } th { "Attempts" } th { "Failures" } th { "p50 (ms)" } th { "p99 (ms)" } } }
            tbody {
                @for v in versions {
                    tr { td { code { (v.connector_version) } } td { (v.attempts) } td { (v.failures) } td { (v.p50_ms) } td { (v.p99_ms) } }
                }
                @if versions.is_empty() { tr { td colspan="5" { "No attempt in this window." } } }
            }
        }
    }
}

/// `GET /console/pictures`.
pub async fn page(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Query(q): Query<PicturesQuery>,
) -> Response {
    let hours = q.hours.unwrap_or(3);
    if !WINDOWS.contains(&hours) {
        return layout::refused(StatusCode::BAD_REQUEST, "hours: one of 1, 3, 12, 24.");
    }
    let since_ms = crate::clock::now_ms() - i64::from(hours) * 3_600_000;
    let store = &app.store;
    let numbers = (|| {
        Ok::<_, crate::store::StoreError>((
            store.events_per_minute(since_ms)?,
            store.failures_per_minute(since_ms)?,
            store.queue_now()?,
            store.version_stats(since_ms)?,
        ))
    })();
    let (events, failures, queue_now, versions) = match numbers {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot compute the pictures");
            return layout::storage_error();
        }
    };
    let content = html! {
        p.pager {
            "Window: "
            @for h in WINDOWS {
                @if h == hours { strong { "last " (h) " h" } } @else { a href={ "/console/pictures?hours=" (h) } { "last " (h) " h" } }
                " "
            }
        }
        h2 { "Events received" }
        (per_minute("Events per minute", "events-per-minute", &events))
        h2 { "Failures" }
        (per_minute("Failed attempts per minute", "failures-per-minute", &failures))
        h2 { "Queue" }
        (queue(&queue_now))
        h2 { "Latency" }
        (latency(&versions))
    };
    let page = Page {
        title: "Pictures",
        section: Section::Pictures,
        notice: None,
    };
    layout::page(&current, page, content).into_response()
}
