//! The last step: the URLs to copy (the ATS's webhook URL, the vendor's callback URL), Gem's API
//! key (generated and shown once, by `rotate::gem_key`), then Verify Connection: the ATS accepts
//! the integration's credential (Lever: `GET /stages`; an OAuth integration must be connected),
//! the connector lists its packages with these settings, Gem has a key. All pass → the
//! integration is enabled and the console lands on it; any fails → this page again with each
//! problem, the integration still paused.
//!
//! - `GET /console/wizard/{id}/finish`
//! - `POST /console/wizard/{id}/finish` — verify and enable (audited).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use maud::html;

use super::form::{self, Problems, Step};
use crate::app::{App, Integration};
use crate::ats::gem::keys;
use crate::config::AtsConfig;
use crate::http::admin::integrations::{set_enabled, view};
use crate::http::console::audit;
use crate::http::console::layout::{self, csrf};
use crate::http::console::session::Current;

fn render(
    app: &App,
    current: &Current,
    integration: &Integration,
    problems: &Problems,
) -> Response {
    let config = &integration.config;
    let body = view(app, config);
    let urls = &body.view.webhook_urls;
    let gem = matches!(config.ats, AtsConfig::Gem(_));
    let active_keys = if gem {
        (keys::list(&app.store, &config.id)
            .unwrap_or_default()
            .into_iter())
        .filter(|k| k.revoked_at_ms.is_none())
        .count()
    } else {
        0
    };
    let content = html! {
        h2 { "Give these to the ATS and the vendor" }
        dl.facts #urls {
            @for (name, url) in &urls.ats {
                dt { (name) " webhook URL" } dd { (layout::copyable(url)) }
            }
            dt { "Vendor callback URL" } dd { (layout::copyable(&urls.vendor)) }
        }
        @if gem {
            p.hint { "Give Gem its API base above and an API key: the key is shown once." }
            p #gem-keys { (active_keys) " active Gem API key(s). "
                (layout::action(current, &format!("/console/integrations/{}/rotate/gem-key", config.id), "Generate Gem's API key", None)) }
        } @else {
            p.hint { "In Lever: Settings > Integrations and API > Webhooks > Candidate Stage Change: paste the Lever webhook URL, then click Verify Connection there (the integrations page shows its last ping). Give the vendor the callback URL (Certn: its webhook URL)." }
        }
        @if let Some(conn) = &body.connection {
            p { "Last Verify Connection ping from Lever: " (conn.last_verified_at.as_deref().unwrap_or("none yet")) }
        }
        @if !problems.is_empty() {
            ul.problems #verify-problems {
                @for (check, problem) in problems { li { strong { (check) } ": " (problem) } }
            }
        }
        form #wizard-finish method="post" action={ "/console/wizard/" (config.id) "/finish" } {
            (csrf(current))
            button type="submit" { "Verify Connection and enable" }
        }
    };
    form::page(current, Step::Finish, Some(config), problems, content)
}

/// `GET /console/wizard/{id}/finish`.
pub async fn page(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = form::operator_only(&current) {
        return *refused;
    }
    match form::integration(&app, &id).await {
        Ok(i) => render(&app, &current, &i, &Problems::new()),
        Err(missing) => *missing,
    }
}

/// Verify Connection: each check that fails, by what it checks.
async fn verify(app: &App, integration: &Integration) -> Problems {
    let mut problems = Problems::new();
    if let Err(e) = integration.ats.check_connection().await {
        problems.insert("ATS".into(), e.message);
    }
    match app.offered_packages(&integration.config).await {
        None => {
            problems.insert("connector".into(), "not loaded".into());
        }
        Some(Err(e)) => {
            problems.insert(
                "connector".into(),
                format!("did not list its packages: {e}"),
            );
        }
        Some(Ok(_)) => {}
    }
    if matches!(integration.config.ats, AtsConfig::Gem(_)) {
        match keys::list(&app.store, &integration.config.id) {
            Err(e) => {
                problems.insert("Gem API key".into(), format!("cannot read the keys: {e}"));
            }
            Ok(keys) if !keys.iter().any(|k| k.revoked_at_ms.is_none()) => {
                problems.insert(
                    "Gem API key".into(),
                    "generate one and paste it into Gem first".into(),
                );
            }
            Ok(_) => {}
        }
    }
    problems
}

/// `POST /console/wizard/{id}/finish`.
pub async fn enable(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    let integration = match form::integration(&app, &id).await {
        Ok(i) => i,
        Err(missing) => return *missing,
    };
    let mut problems = verify(&app, &integration).await;
    if problems.is_empty() {
        if let Err(e) = set_enabled(app.clone(), id.clone(), true).await {
            problems.insert("enable".into(), e.to_string());
        }
    }
    if problems.is_empty() {
        tracing::info!(integration = %id, "integration verified and enabled by the setup wizard");
        audit::record(
            &app,
            &current,
            "integration.verify_and_enable",
            &id,
            "ok",
            Some("paused".into()),
            Some("enabled".into()),
        );
        return Redirect::to("/console/integrations?ok=set-up").into_response();
    }
    let why = (problems.iter())
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("; ");
    audit::record(
        &app,
        &current,
        "integration.verify_and_enable",
        &id,
        &format!("refused: {why}"),
        None,
        None,
    );
    render(&app, &current, &integration, &problems)
}
