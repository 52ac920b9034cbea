//! A candidate's timeline (`GET /console/candidates/{id}`), from what is stored: each webhook
//! accepted, each attempt (connector version, outcome, error), the vendor's status updates, and
//! the orders with their current status.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};

use super::events::state_badge;
use super::layout::{self, Page, Section};
use super::payload;
use super::session::Current;
use crate::app::App;
use crate::store::Event;

/// The newest events the timeline looks through.
const SCAN: u32 = 500;

/// `GET /console/candidates/{id}`: the timeline.
pub async fn candidate(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(candidate): Path<String>,
) -> Response {
    let events = match app.store.list_events(None, None, SCAN) {
        Ok(events) => events,
        Err(e) => {
            tracing::error!(error = %e, "cannot list events");
            return layout::storage_error();
        }
    };
    let mine: Vec<&Event> = events
        .iter()
        .filter(|e| payload::candidate(&e.payload).as_deref() == Some(candidate.as_str()))
        .collect();
    let mut integrations: Vec<&str> = mine.iter().map(|e| e.integration.as_str()).collect();
    integrations.sort_unstable();
    integrations.dedup();
    let mut orders = Vec::new();
    for integration in &integrations {
        match app.store.orders_of(integration, &candidate) {
            Ok(o) => orders.extend(o),
            Err(e) => tracing::error!(error = %e, "cannot read orders"),
        }
    }
    // The vendor's status updates name the order, not the candidate.
    let updates: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.kind == crate::flow::VENDOR_STATUS
                && orders
                    .iter()
                    .any(|o| o.integration == e.integration && e.payload.contains(&o.order_ref))
        })
        .collect();
    let mut steps: Vec<(i64, bool, Markup)> = Vec::new();
    for e in mine.iter().chain(updates.iter()) {
        let what = if e.kind == crate::flow::VENDOR_STATUS {
            "Vendor status update received"
        } else {
            "Webhook accepted"
        };
        steps.push((
            e.received_at_ms,
            false,
            html! { (what) " (" (e.kind) ", " (e.integration) ") — " a href={ "/console/events/" (e.id) } { "event " (e.id) } " " (state_badge(e.state)) },
        ));
        let Ok(Some(detail)) = app.store.event_detail(e.id) else {
            continue;
        };
        for a in &detail.attempts_history {
            let bad = !matches!(a.outcome.as_str(), "done" | "skipped");
            steps.push((
                a.started_at_ms,
                bad,
                html! {
                    "Connector invoked, attempt " (a.attempt) " → " span class={ "state " (a.outcome) } { (a.outcome) }
                    " in " (a.took_ms) " ms"
                    @if let Some(v) = &a.connector_version { " · " code { (v) } }
                    @if let Some(err) = &a.error { br; span.error { (err) } }
                },
            ));
        }
    }
    steps.sort_by_key(|(at, _, _)| *at);
    let content = html! {
        p.hint { "From what is stored: the newest " (SCAN) " events that name this candidate, their attempts, and the orders." }
        h2 { "Timeline" }
        ol.timeline #timeline {
            @for (at, bad, what) in &steps {
                li class=[bad.then_some("bad")] { span.when { (layout::time(*at)) } (what) }
            }
            @if steps.is_empty() { li { "Nothing stored for this candidate." } }
        }
        h2 { "Orders" }
        table #orders {
            thead { tr { th { "Integration" } th { "Connector" } th { "Order" } th { "State" } th { "Status" } th { "Verdict" } th { "Report" } } }
            tbody {
                @for o in &orders {
                    tr {
                        td { (o.integration) } td { (o.connector) } td { code { (o.order_ref) } }
                        td { span class={ "state " (o.state) } { (o.state) } } td { (o.label) }
                        td { @if let Some(v) = &o.verdict { (v) } }
                        td { @if let Some(u) = &o.report_url { "recorded (" (u.len()) " characters; shown in the ATS)" } }
                    }
                }
                @if orders.is_empty() { tr { td colspan="7" { "No order yet." } } }
            }
        }
    };
    let title = format!("Candidate {candidate}");
    let page = Page {
        title: &title,
        section: Section::Events,
        notice: None,
    };
    layout::page(&current, page, content).into_response()
}
