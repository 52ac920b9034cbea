//! The integrations page: each integration's health at a glance (enabled or paused, the health
//! `GET /admin/integrations/{id}` computes, the Lever connection and its last Verify Connection,
//! the last event, dead letters), its webhook and vendor-callback URLs with copy buttons, and
//! pause/resume and "replay everything since T" (posted to [`super::replays`]) for operators.
//!
//! - `GET /console/integrations`
//! - `POST /console/integrations/{id}/pause`, `POST /console/integrations/{id}/resume` — the admin
//!   API's disable/enable (validated and saved the same way), audited.
//! - The rotation forms post to [`super::rotate`]; "Set up an integration" opens
//!   [`super::wizard`].

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use maud::{html, Markup};

use super::audit;
use super::layout::{self, Done, Notice, Page, Section};
use super::session::Current;
use crate::app::App;
use crate::config::{AtsConfig, IntegrationConfig};
use crate::http::admin::integrations::{set_enabled, view};
use crate::store::console::Role;
use crate::store::EventState;

/// Dead letters counted at most (the badge says "500+" past it).
const DEAD_SCAN: u32 = 500;

fn card(app: &App, current: &Current, c: &IntegrationConfig) -> Markup {
    let body = view(app, c);
    let health = &body.health;
    let status = serde_json::to_value(health.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let last = app
        .store
        .list_events(Some(&c.id), None, 1)
        .ok()
        .and_then(|e| e.into_iter().next());
    let dead = app
        .store
        .list_events(Some(&c.id), Some(EventState::Dead), DEAD_SCAN)
        .map(|e| e.len())
        .unwrap_or(0);
    let urls = &body.view.webhook_urls;
    let events = format!(
        "/console/events?integration={}",
        url::form_urlencoded::byte_serialize(c.id.as_bytes()).collect::<String>()
    );
    html! {
        section.card.integration data-id=(c.id) {
            h2 {
                (c.id) " "
                @if c.enabled { span.state.ok { "enabled" } } @else { span.state.paused { "paused" } }
                " " span class={ "state " (status) } { "health: " (status) }
            }
            dl.facts {
                dt { "ATS" } dd { (c.ats.section().kind()) }
                dt { "Connector" } dd { (c.connector)
                    @if let Some(reason) = &body.not_ready_reason { br; span.error { "not ready: " (reason) } } }
                @if let Some(conn) = &body.connection {
                    dt { "Connection" } dd {
                        (conn.auth)
                        @if let Some(grant) = &conn.oauth { " — " (grant.status) }
                    }
                    dt { "Last Verify Connection" } dd { (conn.last_verified_at.as_deref().unwrap_or("never")) }
                }
                dt { "Last event" } dd {
                    @if let Some(e) = &last {
                        a href={ "/console/events/" (e.id) } { (layout::time(e.received_at_ms)) } " (" (e.state.as_str()) ")"
                    } @else { "none yet" }
                }
                dt { "Dead letters" } dd {
                    a href={ (events) "&state=dead" } { (dead) @if dead as u32 >= DEAD_SCAN { "+" } }
                }
                dt { "State" } dd { (health.state_bytes) " of " (health.state_quota_bytes) " bytes" }
                @for (name, url) in &urls.ats {
                    dt { (name) " webhook URL" } dd { (layout::copyable(url)) }
                }
                dt { "Vendor callback URL" } dd { (layout::copyable(&urls.vendor)) }
            }
            @if !health.problems.is_empty() {
                ul.problems {
                    @for p in &health.problems { li { strong { (p.kind) } ": " (p.message) } }
                }
            }
            p {
                a href=(events) { "Events" } " "
                @if c.enabled {
                    (layout::action(current, &format!("/console/integrations/{}/pause", c.id), "Pause", None))
                } @else {
                    (layout::action(current, &format!("/console/integrations/{}/resume", c.id), "Resume", None))
                }
            }
            @if current.role() == Role::Operator {
                (rotation(current, c))
                form.inline.replay-since method="post" action={ "/console/integrations/" (c.id) "/replay" } {
                    (layout::csrf(current))
                    label { "Replay everything received since (UTC) "
                        input type="text" name="since" required placeholder="2026-12-06T09:00:00Z"; }
                    label { input type="checkbox" name="force" value="true"; " also done ones" }
                    " " button type="submit" { "Replay since" }
                }
            }
        }
    }
}

/// The rotation forms of `c`'s secrets (operators only; see [`super::rotate`]).
fn rotation(current: &Current, c: &IntegrationConfig) -> Markup {
    let base = format!("/console/integrations/{}/rotate", c.id);
    html! {
        div.rotation {
            @match &c.ats {
                AtsConfig::Lever(_) => {
                    form.inline method="post" action={ (base) "/signature-token" } {
                        (layout::csrf(current))
                        label { "New Lever signature token "
                            input type="password" name="signature_token" autocomplete="new-password" required; }
                        " " button type="submit" { "Replace token" }
                    }
                }
                AtsConfig::Gem(_) => {
                    form.inline method="post" action={ (base) "/gem-key" }
                        data-confirm="Issue a new Gem API key and revoke the current ones at once?" {
                        (layout::csrf(current))
                        button type="submit" { "New Gem API key" }
                    }
                    " "
                    form.inline method="post" action={ (base) "/gem-webhook-secret" } {
                        (layout::csrf(current))
                        label { "Old secret still signs for (hours) "
                            input type="number" name="overlap_hours" value="24" min="1" max="168"; }
                        " " button type="submit" { "New webhook secret" }
                    }
                }
            }
        }
    }
}

/// `GET /console/integrations`.
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Query(done): Query<Done>,
) -> Response {
    let integrations = app.integrations();
    let content = html! {
        @for i in &integrations { (card(&app, &current, &i.config)) }
        @if integrations.is_empty() { p { "No integration yet." } }
        @if current.role() == Role::Operator { p { a #set-up href="/console/wizard" { "Set up an integration" } } }
    };
    let page = Page {
        title: "Integrations",
        section: Section::Integrations,
        notice: Notice::of_code(done.ok.as_deref()),
    };
    layout::page(&current, page, content).into_response()
}

async fn set(app: Arc<App>, current: Current, id: String, enabled: bool) -> Response {
    let action = if enabled {
        "integration.resume"
    } else {
        "integration.pause"
    };
    let before = app.integration(&id).map(|i| enabled_str(i.config.enabled));
    match set_enabled(app.clone(), id.clone(), enabled).await {
        Ok(_) => {
            tracing::info!(integration = %id, enabled, "integration changed from the console");
            audit::record(
                &app,
                &current,
                action,
                &id,
                "ok",
                before,
                Some(enabled_str(enabled)),
            );
            let code = if enabled { "resumed" } else { "paused" };
            Redirect::to(&format!("/console/integrations?ok={code}")).into_response()
        }
        Err(e) => {
            audit::record(
                &app,
                &current,
                action,
                &id,
                &format!("refused: {e}"),
                before,
                None,
            );
            layout::refused(e.status(), &e.to_string())
        }
    }
}

fn enabled_str(enabled: bool) -> String {
    if enabled { "enabled" } else { "paused" }.to_string()
}

/// `POST /console/integrations/{id}/pause`.
pub async fn pause(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    set(app, current, id, false).await
}

/// `POST /console/integrations/{id}/resume`.
pub async fn resume(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    set(app, current, id, true).await
}
