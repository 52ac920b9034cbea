//! Bulk replay from the console, through the admin API's own job start ([`begin`]: same
//! criteria, same cap, same refusal) and the store's jobs:
//!
//! - `POST /console/replays` — "Replay all N matching" on the events list: the list's filter as
//!   form fields (and `force`); over the cap → 422 with the count, nothing started.
//! - `POST /console/integrations/{id}/replay` — "replay everything since T" (after an outage).
//! - `GET /console/replays` — the jobs with their progress; `POST /console/replays/{id}/cancel`.
//!
//! Every start, refusal and cancel is audited.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::html;
use serde::Deserialize;

use super::audit;
use super::filter::FilterForm;
use super::layout::{self, Done, Notice, Page, Section};
use super::session::Current;
use crate::app::App;
use crate::http::admin::criteria::Criteria;
use crate::http::admin::replay::{begin, REPLAY_CAP};
use crate::store::replay::{JobState, ReplayJob};

/// The bulk replay form: the events list's filter and `force`.
#[derive(Deserialize)]
pub struct BulkForm {
    #[serde(flatten)]
    filter: FilterForm,
    force: Option<String>,
}

/// "Replay everything since T".
#[derive(Deserialize)]
pub struct SinceForm {
    since: String,
    force: Option<String>,
}

fn checked(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| v == "true" || v == "on")
}

/// Starts a job and answers with the jobs page, or the refusal (audited either way).
async fn start(
    app: &App,
    current: &Current,
    target: &str,
    criteria: Criteria,
    force: bool,
) -> Response {
    let after = serde_json::to_string(&criteria).ok();
    match begin(app, &criteria, force).await {
        Ok((_, axum::Json(job))) => {
            let done = format!(
                "started job {} for {} events (force: {force})",
                job.id, job.total
            );
            audit::record(
                app,
                current,
                "replay.start",
                target,
                "ok",
                after,
                Some(done),
            );
            Redirect::to("/console/replays?ok=replay-started").into_response()
        }
        Err(e) => {
            let why = e.to_string();
            let outcome = format!("refused: {why}");
            audit::record(app, current, "replay.start", target, &outcome, after, None);
            layout::refused(e.status(), &why)
        }
    }
}

/// `POST /console/replays` (operators; CSRF checked by the guard).
pub async fn bulk(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Form(form): Form<BulkForm>,
) -> Response {
    let criteria = match form.filter.criteria() {
        Ok(c) => c,
        Err(why) => return layout::refused(StatusCode::BAD_REQUEST, &why),
    };
    start(
        &app,
        &current,
        "events matching a filter",
        criteria,
        checked(&form.force),
    )
    .await
}

/// `POST /console/integrations/{id}/replay` (operators).
pub async fn since(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
    Form(form): Form<SinceForm>,
) -> Response {
    if app.integration(&id).is_none() {
        return layout::refused(StatusCode::NOT_FOUND, &format!("No integration `{id}`."));
    }
    let filter = FilterForm {
        integration: Some(id.clone()),
        since: Some(form.since),
        ..FilterForm::default()
    };
    let criteria = match filter.criteria() {
        Ok(c) => c,
        Err(why) => return layout::refused(StatusCode::BAD_REQUEST, &why),
    };
    let target = format!("integration {id}");
    start(&app, &current, &target, criteria, checked(&form.force)).await
}

/// `POST /console/replays/{id}/cancel` (operators).
pub async fn cancel(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return layout::refused(StatusCode::BAD_REQUEST, "A replay job id is a number.");
    };
    let before = app
        .store
        .replay_job(id)
        .ok()
        .flatten()
        .map(|j| state(&j).to_string());
    match app.store.cancel_replay(id).await {
        Ok(Some(job)) => {
            let after = Some(state(&job).to_string());
            audit::record(
                &app,
                &current,
                "replay.cancel",
                &format!("replay job {id}"),
                "ok",
                before,
                after,
            );
            Redirect::to("/console/replays?ok=replay-cancelled").into_response()
        }
        Ok(None) => layout::refused(StatusCode::NOT_FOUND, &format!("No replay job {id}.")),
        Err(e) => {
            tracing::error!(error = %e, "cannot cancel a replay job");
            layout::storage_error()
        }
    }
}

fn state(job: &ReplayJob) -> &'static str {
    match job.state {
        JobState::Running => "running",
        JobState::Done => "done",
        JobState::Cancelled => "cancelled",
    }
}

/// `GET /console/replays`: the newest 100 jobs.
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Query(done): Query<Done>,
) -> Response {
    let jobs = match app.store.replay_jobs(100) {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::error!(error = %e, "cannot list replay jobs");
            return layout::storage_error();
        }
    };
    let content = html! {
        p.hint {
            "Start a job from the events list (\"Replay all N matching\") or an integration (\"Replay since\"). "
            "A job takes at most " (REPLAY_CAP) " events; a replayed screening is never started twice."
        }
        table #replays {
            thead { tr {
                th { "#" } th { "Started (UTC)" } th { "Filter" } th { "Force" } th { "State" }
                th { "Events" } th { "Queued" } th { "Pending" } th { "Passed over" } th { "Their states now" } th {}
            } }
            tbody {
                @for job in &jobs {
                    tr {
                        td { (job.id) }
                        td { (layout::time(job.created_at_ms)) }
                        td { code { (serde_json::to_string(&job.filter).unwrap_or_default()) } }
                        td { @if job.force { "yes" } @else { "no" } }
                        td { span class={ "state " (state(job)) } { (state(job)) } }
                        td { (job.total) }
                        td { (job.queued) }
                        td { (job.pending) }
                        td { (job.passed_over) }
                        td { @for (st, n) in &job.outcomes { (st.as_str()) ": " (n) " " } }
                        td { @if job.state == JobState::Running {
                            (layout::action(&current, &format!("/console/replays/{}/cancel", job.id), "Cancel", None))
                        } }
                    }
                }
                @if jobs.is_empty() { tr { td colspan="11" { "No replay job yet." } } }
            }
        }
    };
    let page = Page {
        title: "Replay jobs",
        section: Section::Replays,
        notice: Notice::of_code(done.ok.as_deref()),
    };
    layout::page(&current, page, content).into_response()
}
