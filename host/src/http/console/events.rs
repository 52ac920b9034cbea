//! The events pages, where operators live.
//!
//! - `GET /console/events?integration=&connector=&ats=&candidate=&state=&error=&since=&until=&before=`
//!   — newest first, 25 a page, searched in the store with the admin API's criteria
//!   ([`super::filter`]) and paged by cursor (`before`: the last id shown), with the count of
//!   matching events and, for operators, "Replay all N matching" (see [`super::replays`]).
//! - `GET /console/events/{id}` — the event as received (payload and headers, secrets masked),
//!   the signature check, its state, timing, connector version and every attempt with its
//!   vendor and ATS calls; "Retry now" (waiting, dead) or "Replay (force)" (done, skipped) for
//!   operators.
//! - `POST /console/events/{id}/retry` — the admin API's retry (`Store::retry_event`), audited.
//! - `POST /console/events/{id}/replay` — a forced replay (`Store::replay_event(id, true)`),
//!   audited: a screening whose order is recorded is never started twice.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

use super::audit;
use super::filter::FilterForm;
use super::layout::{self, Done, Notice, Page, Section};
use super::payload;
use super::session::Current;
use crate::app::App;
use crate::store::traffic::RecordedCall;
use crate::store::{EventDetail, EventState, Retried};

const PER_PAGE: u32 = 25;

/// The list's query: the filter, the cursor and an action's notice.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(flatten)]
    filter: FilterForm,
    before: Option<i64>,
    ok: Option<String>,
}

pub(super) fn state_badge(state: EventState) -> Markup {
    html! { span class={ "state " (state.as_str()) } { (state.as_str()) } }
}

/// `GET /console/events`.
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Query(q): Query<ListQuery>,
) -> Response {
    let integrations: Vec<String> = app
        .integrations()
        .iter()
        .map(|i| i.config.id.clone())
        .collect();
    let filter = q
        .filter
        .criteria()
        .and_then(|c| c.filter(&app).map_err(|e| e.to_string()));
    let (events, matching, problem) = match filter {
        Err(problem) => (Vec::new(), 0, Some(problem)),
        Ok(filter) => {
            let found = app
                .store
                .search_events(&filter, q.before, PER_PAGE + 1)
                .and_then(|events| Ok((events, app.store.count_events(&filter)?)));
            match found {
                Ok((events, count)) => (events, count, None),
                Err(e) => {
                    tracing::error!(error = %e, "cannot search events");
                    return layout::storage_error();
                }
            }
        }
    };
    let has_next = events.len() > PER_PAGE as usize;
    let shown: Vec<_> = events
        .into_iter()
        .take(PER_PAGE as usize)
        .map(|e| {
            let c = payload::candidate(&e.payload);
            (e, c)
        })
        .collect();
    let next = shown.last().map(|(e, _)| e.id).filter(|_| has_next);
    let f = &q.filter;
    let content = html! {
        form.filters #filter method="get" action="/console/events" {
            (f.fields(&integrations))
            button type="submit" { "Filter" }
            a href="/console/events" { "Clear" }
        }
        @if problem.is_none() {
            p #matching { strong { (matching) } " matching events." }
            @if matching > 0 {
                (bulk_replay(&current, f, matching))
            }
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
            @if q.before.is_some() { a href=(f.link(None)) { "← Newest" } }
            @if let Some(next) = next { a #older href=(f.link(Some(next))) { "Older →" } }
        }
    };
    let (status, notice) = match problem {
        Some(p) => (StatusCode::BAD_REQUEST, Some(Notice::Error(p))),
        None => (StatusCode::OK, Notice::of_code(q.ok.as_deref())),
    };
    let page = Page {
        title: "Events",
        section: Section::Events,
        notice,
    };
    (status, layout::page(&current, page, content)).into_response()
}

/// "Replay all N matching" (operators): the filter as hidden fields, posted to
/// `/console/replays`.
fn bulk_replay(current: &Current, f: &FilterForm, matching: i64) -> Markup {
    html! {
        @if current.role() == crate::store::console::Role::Operator {
            form.inline #bulk-replay method="post" action="/console/replays"
                data-confirm={ "Replay all " (matching) " matching events?" } {
                (layout::csrf(current))
                (f.hidden())
                label { input type="checkbox" name="force" value="true"; " also done ones (force)" }
                " "
                button type="submit" { "Replay all " (matching) " matching" }
            }
        }
    }
}

pub(super) fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn parse_id(id: &str) -> Result<i64, Box<Response>> {
    id.parse::<i64>().map_err(|_| {
        Box::new(layout::refused(
            StatusCode::BAD_REQUEST,
            "An event id is a number.",
        ))
    })
}

fn read_detail(app: &App, id: i64) -> Result<EventDetail, Box<Response>> {
    match app.store.event_detail(id) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(Box::new(layout::refused(
            StatusCode::NOT_FOUND,
            &format!("No event {id}."),
        ))),
        Err(e) => {
            tracing::error!(error = %e, "cannot read an event");
            Err(Box::new(layout::storage_error()))
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
        Err(response) => return *response,
    };
    let e = &detail.event;
    let candidate = payload::candidate(&e.payload);
    let action = match e.state {
        EventState::Waiting | EventState::Dead => Some(("retry", "Retry now")),
        EventState::Done | EventState::Skipped => Some(("replay", "Replay (force)")),
        _ => None,
    };
    let (inbound, calls) = match (app.store.inbound(e.id), app.store.calls(e.id)) {
        (Ok(inbound), Ok(calls)) => (inbound, calls),
        (Err(err), _) | (_, Err(err)) => {
            tracing::error!(error = %err, "cannot read an event's traffic");
            return layout::storage_error();
        }
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
            dt { "Signature check" } dd #signature {
                @if let Some(i) = &inbound { (i.signature) } @else { "not recorded (not received over HTTP)" }
            }
        }
        @if let Some((verb, label)) = action {
            p { (layout::action(&current, &format!("/console/events/{}/{verb}", e.id), label, None)) }
            @if verb == "replay" {
                p.hint { "A screening whose order is recorded is not started again: a replay only brings the ATS up to date." }
            }
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
        h2 { "Vendor and ATS calls" }
        (calls_table(&calls))
        h2 { "Headers as received" }
        p.hint { "Secret values (signatures, tokens, keys) are masked as stored." }
        table #headers {
            thead { tr { th { "Header" } th { "Value" } } }
            tbody {
                @if let Some(i) = &inbound {
                    @for (name, value) in &i.headers { tr { td { code { (name) } } td { code { (value) } } } }
                }
                @if inbound.as_ref().is_none_or(|i| i.headers.is_empty()) { tr { td colspan="2" { "Not recorded." } } }
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

/// Each attempt's outbound calls, in the order made.
fn calls_table(calls: &[RecordedCall]) -> Markup {
    html! {
        table #calls {
            thead { tr { th { "Attempt" } th { "To" } th { "Method" } th { "URL (secrets masked)" } th { "Status or error" } th { "Started (UTC)" } th { "Took" } } }
            tbody {
                @for c in calls {
                    tr {
                        td { (c.attempt) }
                        td { (c.call.target.as_str()) }
                        td { (c.call.method) }
                        td { code { (c.call.url) } }
                        @if let Some(status) = c.call.status {
                            td class=[(status >= 400).then_some("error")] { (status) }
                        } @else {
                            td.error { (c.call.error.as_deref().unwrap_or("no answer")) }
                        }
                        td { (layout::time(c.call.started_at_ms)) }
                        td { (c.call.took_ms) " ms" }
                    }
                }
                @if calls.is_empty() { tr { td colspan="7" { "No call recorded." } } }
            }
        }
    }
}

/// `POST /console/events/{id}/retry` (operators; CSRF checked by the guard).
pub async fn retry(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    requeue(&app, &current, &id, false).await
}

/// `POST /console/events/{id}/replay`: a forced replay, a done event too.
pub async fn replay(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    requeue(&app, &current, &id, true).await
}

/// Queues an event again (`force`: a done one too), audited either way.
async fn requeue(app: &App, current: &Current, id: &str, force: bool) -> Response {
    let detail = match parse_id(id).and_then(|id| read_detail(app, id)) {
        Ok(d) => d,
        Err(response) => return *response,
    };
    let id = detail.event.id;
    let before = Some(detail.event.state.as_str().to_string());
    let target = format!("event {id}");
    let (action, ok) = if force {
        ("event.replay", "replayed")
    } else {
        ("event.retry", "retried")
    };
    let result = if force {
        app.store.replay_event(id, true).await
    } else {
        app.store.retry_event(id)
    };
    match result {
        Ok(Retried::Queued) => {
            app.wake.notify_waiters();
            tracing::info!(event = id, force, "event queued again from the console");
            let after = Some("queued".to_string());
            audit::record(app, current, action, &target, "ok", before, after);
            Redirect::to(&format!("/console/events/{id}?ok={ok}")).into_response()
        }
        Ok(Retried::Refused(state)) => {
            let why = if force {
                format!("Event {id} is {}: it is being run already.", state.as_str())
            } else {
                format!(
                    "Event {id} is {}: only a waiting, dead or skipped event can be retried.",
                    state.as_str()
                )
            };
            let outcome = format!("refused: {why}");
            audit::record(app, current, action, &target, &outcome, before, None);
            layout::refused(StatusCode::CONFLICT, &why)
        }
        Ok(Retried::NotFound) => layout::refused(StatusCode::NOT_FOUND, &format!("No event {id}.")),
        Err(e) => {
            tracing::error!(error = %e, "cannot queue an event again");
            layout::storage_error()
        }
    }
}
