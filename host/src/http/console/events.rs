//! The events pages, where operators live.
//!
//! - `GET /console/events?integration=&state=&candidate=&page=` — newest first, 25 a page,
//!   filtered by integration and state in the store (`Store::list_events`, as
//!   `GET /admin/events`), and by candidate among the newest 500.
//! - `GET /console/events/{id}` — the event as received (secrets masked), its state, timing,
//!   connector version and every attempt; "Retry now" (waiting, dead) or "Replay" (skipped) for
//!   operators.
//! - `POST /console/events/{id}/retry` — the admin API's retry (`Store::retry_event`), audited.
//! - `GET /console/candidates/{id}` — one candidate's timeline from what is stored: each webhook
//!   accepted, each attempt (connector version, outcome, error), the vendor's status updates,
//!   and the orders with their current status.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

use super::audit;
use super::layout::{self, Done, Notice, Page, Section};
use super::payload;
use super::session::Current;
use crate::app::App;
use crate::store::{Event, EventDetail, EventState, Retried};

const PER_PAGE: u32 = 25;
/// The newest events the candidate filter and the timeline look through.
const SCAN: u32 = 500;

const STATES: [EventState; 6] = [
    EventState::Queued,
    EventState::Running,
    EventState::Waiting,
    EventState::Done,
    EventState::Skipped,
    EventState::Dead,
];

/// The list's filters (from its GET form).
#[derive(Deserialize, Default)]
pub struct Filters {
    integration: Option<String>,
    state: Option<String>,
    candidate: Option<String>,
    page: Option<u32>,
    ok: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_state(s: &str) -> Option<EventState> {
    STATES.into_iter().find(|st| st.as_str() == s)
}

fn state_badge(state: EventState) -> Markup {
    html! { span class={ "state " (state.as_str()) } { (state.as_str()) } }
}

/// `GET /console/events`.
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Query(f): Query<Filters>,
) -> Response {
    let integration = nonempty(&f.integration);
    let candidate = nonempty(&f.candidate);
    let state = match nonempty(&f.state) {
        None => None,
        Some(s) => match parse_state(s) {
            Some(st) => Some(st),
            None => return layout::refused(StatusCode::BAD_REQUEST, "Unknown state."),
        },
    };
    let page = f.page.unwrap_or(0).min(SCAN / PER_PAGE);
    let limit = if candidate.is_some() {
        SCAN
    } else {
        ((page + 1) * PER_PAGE + 1).min(SCAN)
    };
    let events = match app.store.list_events(integration, state, limit) {
        Ok(events) => events,
        Err(e) => {
            tracing::error!(error = %e, "cannot list events");
            return layout::storage_error();
        }
    };
    let matching: Vec<(Event, Option<String>)> = events
        .into_iter()
        .map(|e| {
            let c = payload::candidate(&e.payload);
            (e, c)
        })
        .filter(|(_, c)| candidate.is_none_or(|want| c.as_deref() == Some(want)))
        .collect();
    let start = (page * PER_PAGE) as usize;
    let shown: Vec<_> = matching
        .iter()
        .skip(start)
        .take(PER_PAGE as usize)
        .collect();
    let has_next = matching.len() > start + PER_PAGE as usize;
    let integrations: Vec<String> = app
        .integrations()
        .iter()
        .map(|i| i.config.id.clone())
        .collect();
    let link = |p: u32| {
        let q = [
            ("integration", integration.unwrap_or("")),
            ("state", state.map(EventState::as_str).unwrap_or("")),
            ("candidate", candidate.unwrap_or("")),
        ];
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in q.iter().filter(|(_, v)| !v.is_empty()) {
            s.append_pair(k, v);
        }
        s.append_pair("page", &p.to_string());
        format!("/console/events?{}", s.finish())
    };
    let content = html! {
        form.filters method="get" action="/console/events" {
            label { "Integration"
                select name="integration" {
                    option value="" { "all" }
                    @for id in &integrations {
                        option value=(id) selected[integration == Some(id.as_str())] { (id) }
                    }
                }
            }
            label { "State"
                select name="state" {
                    option value="" { "all" }
                    @for st in STATES {
                        option value=(st.as_str()) selected[state == Some(st)] { (st.as_str()) }
                    }
                }
            }
            label { "Candidate (opportunity id)"
                input type="search" name="candidate" value=(candidate.unwrap_or(""));
            }
            button type="submit" { "Filter" }
        }
        @if candidate.is_some() {
            p.hint { "The candidate filter looks through the newest " (SCAN) " events." }
        }
        table #events {
            thead { tr {
                th { "#" } th { "Received (UTC)" } th { "Integration" } th { "Kind" }
                th { "Candidate" } th { "State" } th { "Attempts" } th { "Connector version" } th { "Last error" }
            } }
            tbody {
                @for (e, c) in &shown {
                    tr {
                        td { a href={ "/console/events/" (e.id) } { (e.id) } }
                        td { (layout::time(e.received_at_ms)) }
                        td { (e.integration) }
                        td { (e.kind) }
                        td { @if let Some(c) = c { a href={ "/console/candidates/" (urlencode(c)) } { (c) } } }
                        td { (state_badge(e.state)) }
                        td { (e.attempts) }
                        td { @if let Some(v) = &e.connector_version { code { (v) } } }
                        td.error { @if let Some(err) = &e.last_error { (layout::short(err, 160)) } }
                    }
                }
                @if shown.is_empty() { tr { td colspan="9" { "No event matches." } } }
            }
        }
        p.pager {
            @if page > 0 { a href=(link(page - 1)) { "← Newer" } }
            @if has_next { a href=(link(page + 1)) { "Older →" } }
        }
    };
    let page = Page {
        title: "Events",
        section: Section::Events,
        notice: Notice::of_code(f.ok.as_deref()),
    };
    layout::page(&current, page, content).into_response()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn parse_id(id: &str) -> Result<i64, Response> {
    id.parse::<i64>()
        .map_err(|_| layout::refused(StatusCode::BAD_REQUEST, "An event id is a number."))
}

fn read_detail(app: &App, id: i64) -> Result<EventDetail, Response> {
    match app.store.event_detail(id) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(layout::refused(
            StatusCode::NOT_FOUND,
            &format!("No event {id}."),
        )),
        Err(e) => {
            tracing::error!(error = %e, "cannot read an event");
            Err(layout::storage_error())
        }
    }
}

/// `GET /console/events/{id}`.
pub async fn one(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let detail = match parse_id(&id).and_then(|id| read_detail(&app, id)) {
        Ok(d) => d,
        Err(response) => return response,
    };
    let e = &detail.event;
    let candidate = payload::candidate(&e.payload);
    let retry_label = match e.state {
        EventState::Waiting | EventState::Dead => Some("Retry now"),
        EventState::Skipped => Some("Replay"),
        _ => None,
    };
    let content = html! {
        dl.facts {
            dt { "State" } dd { (state_badge(e.state))
                @if let Some(w) = &e.waiting_for { " — waiting for " (w.as_str()) } }
            dt { "Integration" } dd { (e.integration) }
            dt { "Kind" } dd { (e.kind) }
            @if let Some(c) = &candidate {
                dt { "Candidate" } dd { a href={ "/console/candidates/" (urlencode(c)) } { (c) " — timeline" } }
            }
            dt { "Received (UTC)" } dd { (layout::time(e.received_at_ms)) }
            @if let Some(f) = detail.finished_at_ms { dt { "Finished (UTC)" } dd { (layout::time(f)) } }
            @if let Some(n) = detail.next_attempt_at_ms { dt { "Next attempt (UTC)" } dd { (layout::time(n)) } }
            dt { "Attempts" } dd { (e.attempts) }
            dt { "Connector version" } dd { @if let Some(v) = &e.connector_version { code { (v) } } @else { "—" } }
            @if let Some(run) = &detail.lease_run { dt { "Held by run" } dd { code { (run) } } }
            @if let Some(err) = &e.last_error { dt { "Last error" } dd.error { (err) } }
        }
        @if let Some(label) = retry_label {
            p { (layout::action(&current, &format!("/console/events/{}/retry", e.id), label, None)) }
        }
        h2 { "Attempts" }
        table #attempts {
            thead { tr { th { "#" } th { "Started (UTC)" } th { "Took" } th { "Outcome" } th { "Connector version" } th { "Run" } th { "Error" } } }
            tbody {
                @for a in &detail.attempts_history {
                    tr {
                        td { (a.attempt) }
                        td { (layout::time(a.started_at_ms)) }
                        td { (a.took_ms) " ms" }
                        td { span class={ "state " (a.outcome) } { (a.outcome) } }
                        td { @if let Some(v) = &a.connector_version { code { (v) } } }
                        td { @if let Some(r) = &a.run_id { code { (layout::short(r, 12)) } } }
                        td.error { @if let Some(err) = &a.error { (err) } }
                    }
                }
                @if detail.attempts_history.is_empty() { tr { td colspan="7" { "No attempt yet." } } }
            }
        }
        h2 { "Payload as received" }
        p.hint { "Secrets (tokens, signatures, keys) are masked." }
        pre #payload { code { (payload::masked(&e.payload)) } }
    };
    let title = format!("Event {}", e.id);
    let page = Page {
        title: &title,
        section: Section::Events,
        notice: Notice::of_code(done.ok.as_deref()),
    };
    layout::page(&current, page, content).into_response()
}

/// `POST /console/events/{id}/retry` (operators; CSRF checked by the guard).
pub async fn retry(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    let detail = match parse_id(&id).and_then(|id| read_detail(&app, id)) {
        Ok(d) => d,
        Err(response) => return response,
    };
    let id = detail.event.id;
    let before = Some(detail.event.state.as_str().to_string());
    let target = format!("event {id}");
    match app.store.retry_event(id) {
        Ok(Retried::Queued) => {
            app.wake.notify_waiters();
            tracing::info!(event = id, "event queued again from the console");
            audit::record(
                &app,
                &current,
                "event.retry",
                &target,
                "ok",
                before,
                Some("queued".into()),
            );
            Redirect::to(&format!("/console/events/{id}?ok=retried")).into_response()
        }
        Ok(Retried::Refused(state)) => {
            let why = format!(
                "Event {id} is {}: only a waiting, dead or skipped event can be retried.",
                state.as_str()
            );
            audit::record(
                &app,
                &current,
                "event.retry",
                &target,
                &format!("refused: {why}"),
                before,
                None,
            );
            layout::refused(StatusCode::CONFLICT, &why)
        }
        Ok(Retried::NotFound) => layout::refused(StatusCode::NOT_FOUND, &format!("No event {id}.")),
        Err(e) => {
            tracing::error!(error = %e, "cannot retry an event");
            layout::storage_error()
        }
    }
}

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
