//! The audit log: [`record`] writes who did what to what, when, with the value before and after
//! (every operator action, and every action refused to a viewer); `GET /console/audit` shows it,
//! newest first, 50 a page.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::html;
use serde::Deserialize;

use super::layout::{self, Page, Section};
use super::session::Current;
use crate::app::App;
use crate::clock::now_ms;
use crate::store::console::NewAudit;

const PAGE: u32 = 50;

/// Writes a line of the audit log. A line that cannot be stored is logged (the action it
/// describes already happened; failing the response would only hide that).
pub fn record(
    app: &App,
    current: &Current,
    action: &str,
    target: &str,
    outcome: &str,
    before: Option<String>,
    after: Option<String>,
) {
    let entry = NewAudit {
        actor: current.actor(),
        action: action.to_string(),
        target: target.to_string(),
        outcome: outcome.to_string(),
        before,
        after,
    };
    if let Err(e) = app.store.audit_record(&entry, now_ms()) {
        tracing::error!(error = %e, action, target, "cannot write the audit log");
    }
}

/// The audit page's query.
#[derive(Deserialize)]
pub struct AuditQuery {
    /// Lines older than this id (the next page).
    before: Option<i64>,
}

/// `GET /console/audit`.
pub async fn page(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let entries = match app.store.audit_list(q.before, PAGE) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the audit log");
            return layout::storage_error();
        }
    };
    let next = (entries.len() == PAGE as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let content = html! {
        p.hint { "Every operator action, and every action refused to a viewer, newest first." }
        table #audit {
            thead { tr { th { "When (UTC)" } th { "Who" } th { "What" } th { "Target" } th { "Outcome" } th { "Before" } th { "After" } } }
            tbody {
                @for (at_ms, e) in entries.iter().map(|e| (e.at_ms, &e.line)) {
                    tr {
                        td { (layout::time(at_ms)) }
                        td { (e.actor) }
                        td { code { (e.action) } }
                        td { (e.target) }
                        td class=[e.outcome.starts_with("ok").then_some("ok")] { (e.outcome) }
                        td { @if let Some(b) = &e.before { code { (b) } } }
                        td { @if let Some(a) = &e.after { code { (a) } } }
                    }
                }
                @if entries.is_empty() { tr { td colspan="7" { "Nothing yet." } } }
            }
        }
        @if let Some(next) = next {
            p.pager { a href={ "/console/audit?before=" (next) } { "Older →" } }
        }
    };
    let page = Page {
        title: "Audit log",
        section: Section::Audit,
        notice: None,
    };
    layout::page(&current, page, content).into_response()
}
