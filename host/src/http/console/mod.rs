//! The operator console at `/console`: server-rendered HTML (maud escapes every value it
//! interpolates), a stylesheet and a small script embedded in the binary, pages readable without
//! the script. Mounted with the admin API (only when `server.admin_token` is set). See
//! `docs/console.md`.
//!
//! - [`auth`]: sign-in with a token (operator: `server.admin_token`; viewer:
//!   `server.viewer_token`), the session cookie, the CSRF token of every form, the role check of
//!   every action, the sign-in rate limit per client address ([`guard`](auth::guard)).
//! - [`layout`]: the page shell, assets, security headers, formatting.
//! - [`events`]: the events list (searched and paged by cursor with [`filter`]), an event with
//!   its masked headers and payload, signature check, attempts and their vendor and ATS calls,
//!   retry and forced replay.
//! - [`filter`]: the events filter of the console's forms, as the admin API's criteria.
//! - [`timeline`]: a candidate's timeline.
//! - [`replays`]: bulk replay by filter or since a time, the jobs with progress and cancel.
//! - [`pictures`]: charts of events, failures, the queue and latency, each with its table.
//! - [`integrations`]: health at a glance, webhook URLs to copy, pause/resume, the rotation forms.
//! - [`wizard`]: the setup wizard (ATS, connector settings, packages, rules from live lists,
//!   Verify Connection).
//! - [`rotate`]: one-click secret rotation (Lever's signature token, Gem's API key and webhook
//!   secret), each new secret shown once.
//! - [`connectors`]: versions and manifests; upload, activate, roll back, remove.
//! - [`charts`]: series → escaped SVG line and bar charts.
//! - [`audit`]: the audit log ([`audit::record`]) and its page.
//! - [`payload`]: a stored payload with its secrets masked; the candidate it names.
//! - [`session`]: the signed-in session of a request, as pages see it.
//!
//! Sessions, CSRF tokens, sign-in counters and the audit log live in the store
//! (`store::console`), so hosts sharing a database share them.

pub mod audit;
pub mod auth;
pub mod charts;
pub mod connectors;
pub mod events;
pub mod filter;
pub mod integrations;
pub mod layout;
pub mod payload;
pub mod pictures;
pub mod replays;
pub mod rotate;
pub mod session;
pub mod timeline;
pub mod wizard;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::app::App;

/// The console's routes, or None when the admin API is off (no `server.admin_token`).
pub fn router(app: Arc<App>) -> Option<Router<Arc<App>>> {
    app.config.server.admin_token.as_ref()?;
    let limit = app.config.server.admin_max_upload_bytes;
    let router = Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/events") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/events") }),
        )
        .route("/console/assets/console.css", get(layout::css))
        .route("/console/assets/console.js", get(layout::js))
        .route(
            "/console/sign-in",
            get(auth::sign_in_form).post(auth::sign_in),
        )
        .route("/console/sign-out", post(auth::sign_out))
        .route("/console/events", get(events::list))
        .route("/console/events/{id}", get(events::one))
        .route("/console/events/{id}/retry", post(events::retry))
        .route("/console/events/{id}/replay", post(events::replay))
        .route("/console/candidates/{id}", get(timeline::candidate))
        .route("/console/replays", get(replays::list).post(replays::bulk))
        .route("/console/replays/{id}/cancel", post(replays::cancel))
        .route("/console/integrations/{id}/replay", post(replays::since))
        .route("/console/pictures", get(pictures::page))
        .route("/console/integrations", get(integrations::list))
        .route(
            "/console/integrations/{id}/pause",
            post(integrations::pause),
        )
        .route(
            "/console/integrations/{id}/resume",
            post(integrations::resume),
        )
        .route(
            "/console/integrations/{id}/rotate/signature-token",
            post(rotate::signature_token),
        )
        .route(
            "/console/integrations/{id}/rotate/gem-key",
            post(rotate::gem_key),
        )
        .route(
            "/console/integrations/{id}/rotate/gem-webhook-secret",
            post(rotate::gem_webhook_secret),
        )
        .route("/console/wizard", get(wizard::start::page))
        .route(
            "/console/wizard/settings",
            get(wizard::settings::page).post(wizard::settings::create),
        )
        .route(
            "/console/wizard/{id}/connect",
            get(wizard::connect::page).post(wizard::connect::link),
        )
        .route(
            "/console/wizard/{id}/rules",
            get(wizard::rules::page).post(wizard::rules::save),
        )
        .route(
            "/console/wizard/{id}/finish",
            get(wizard::finish::page).post(wizard::finish::enable),
        )
        .route("/console/connectors", get(connectors::list))
        .route("/console/connectors/upload", post(connectors::upload))
        .route(
            "/console/connectors/{id}/rollback",
            post(connectors::rollback),
        )
        .route(
            "/console/connectors/{id}/versions/{hash}/activate",
            post(connectors::activate),
        )
        .route(
            "/console/connectors/{id}/versions/{hash}/remove",
            post(connectors::remove),
        )
        .route("/console/audit", get(audit::page))
        .layer(middleware::from_fn_with_state(app, auth::guard))
        .layer(middleware::from_fn(layout::security_headers))
        .layer(DefaultBodyLimit::max(limit));
    Some(router)
}
