//! The Lever OAuth step: a fresh single-use connect link (the host's existing one,
//! `LeverOAuth::authorize_url`) for the operator, or the customer they send it to, to open, log
//! into Lever and accept. Lever's callback stores the grant; this page then shows the integration
//! connected and goes on to the rules. The link is shown, not redirected to: the console's forms
//! may only post to the console.
//!
//! - `GET /console/wizard/{id}/connect` — the grant's state.
//! - `POST /console/wizard/{id}/connect` — a fresh link (audited).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup};

use super::form::{self, Problems, Step};
use crate::app::App;
use crate::config::IntegrationConfig;
use crate::http::admin::integrations::view;
use crate::http::console::audit;
use crate::http::console::layout::{self, csrf};
use crate::http::console::session::Current;

fn render(
    app: &App,
    current: &Current,
    config: &IntegrationConfig,
    link: Option<Markup>,
) -> Response {
    let status = (view(app, config).connection)
        .and_then(|c| c.oauth)
        .map(|g| g.status)
        .unwrap_or_else(|| "not_connected".into());
    let connected = status == "connected";
    let content = html! {
        p #grant { "Lever connection: " span class={ "state " @if connected { "ok" } @else { "waiting" } } { (status) } }
        @if connected {
            p { "Connected. " a #next href={ "/console/wizard/" (config.id) "/rules" } { "Next: attach to a stage" } }
        } @else {
            p { "Make a connect link, open it (or send it to the customer), log into Lever and click Accept. Lever sends the browser back to switchyard, which stores the grant; then come back here." }
            form #wizard-connect method="post" action={ "/console/wizard/" (config.id) "/connect" } {
                (csrf(current))
                button type="submit" { "Make a connect link" }
            }
            @if let Some(link) = link { (link) }
            p { a href={ "/console/wizard/" (config.id) "/connect" } { "Check the connection again" } }
        }
    };
    form::page(
        current,
        Step::Connect,
        Some(config),
        &Problems::new(),
        content,
    )
}

/// `GET /console/wizard/{id}/connect`.
pub async fn page(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = form::operator_only(&current) {
        return *refused;
    }
    match form::integration(&app, &id).await {
        Ok(i) => render(&app, &current, &i.config, None),
        Err(missing) => *missing,
    }
}

/// `POST /console/wizard/{id}/connect`.
pub async fn link(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    let integration = match form::integration(&app, &id).await {
        Ok(i) => i,
        Err(missing) => return *missing,
    };
    match app.lever_oauth.authorize_url(&id) {
        Ok((url, expires_at)) => {
            audit::record(
                &app,
                &current,
                "integration.lever_connect_link",
                &id,
                "ok",
                None,
                None,
            );
            let link = html! {
                p #connect-link {
                    a href=(url) { "Open Lever's consent page" } " (single use, until " (layout::time(expires_at)) ") "
                    (layout::copyable(&url))
                }
            };
            render(&app, &current, &integration.config, Some(link))
        }
        Err(e) => {
            tracing::warn!(integration = %id, error = %e, "no Lever connect link");
            audit::record(
                &app,
                &current,
                "integration.lever_connect_link",
                &id,
                &format!("refused: {e}"),
                None,
                None,
            );
            layout::refused(StatusCode::CONFLICT, &format!("No connect link: {e}"))
        }
    }
}
