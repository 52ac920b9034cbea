//! The connectors page: every connector and loaded version with its manifest, contract version,
//! limits and state (active, previous, inactive); upload (the validation result shown as the
//! reason when refused), activate, roll back and remove for operators. Each action calls what the
//! admin API's handler calls (`wasm::deploy`), and is audited with the serving version before
//! and after.
//!
//! - `GET /console/connectors`
//! - `POST /console/connectors/upload` (multipart: `file`, `activate`)
//! - `POST /console/connectors/{id}/rollback`
//! - `POST /console/connectors/{id}/versions/{hash}/activate`, `.../remove`

use std::sync::Arc;

use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use maud::{html, Markup};

use super::audit;
use super::layout::{self, Done, Notice, Page, Section};
use super::session::Current;
use crate::app::App;
use crate::http::error::ApiError;
use crate::store::console::Role;
use crate::wasm::deploy::{self, DeployError};
use crate::wasm::registry::{VersionInfo, VersionStatus};

fn status_name(s: VersionStatus) -> &'static str {
    match s {
        VersionStatus::Active => "active",
        VersionStatus::Previous => "previous",
        VersionStatus::Inactive => "inactive",
    }
}

fn version_row(current: &Current, id: &str, v: &VersionInfo) -> Markup {
    let status = status_name(v.status);
    let m = &v.manifest;
    let base = format!("/console/connectors/{id}/versions/{}", v.hash);
    html! {
        tr data-hash=(v.hash) {
            td { code { (v.tag) } }
            td { span class={ "state " (status) } { (status) } }
            td { (v.contract_version) }
            td { (layout::time(v.loaded_at as i64)) }
            td { (v.source) }
            td {
                details {
                    summary { (m.display_name) " " (m.version) }
                    dl.facts {
                        dt { "Outbound hosts" } dd { (m.outbound_hosts.join(", ")) }
                        dt { "Config fields" } dd {
                            @for f in &m.config_fields {
                                code { (f.key) } @if f.secret { " (secret)" } @if f.required { " (required)" } " — " (f.description) br;
                            }
                        }
                        dt { "Status labels" } dd { (m.status_labels.join(", ")) }
                        dt { "Default trigger stage" } dd { (m.default_trigger_stage.as_deref().unwrap_or("—")) }
                        dt { "Limits asked" } dd { (m.limits.memory_mib) " MiB, " (m.limits.instances) " instances (0: the host's default)" }
                        dt { "Granted" } dd { (v.grant.memory_mib) " MiB, " (v.grant.instances) " instances" }
                        dt { "Hash" } dd { code { (v.hash) } }
                    }
                }
            }
            td {
                @if v.status != VersionStatus::Active {
                    (layout::action(current, &format!("{base}/activate"), "Activate", None))
                    " "
                    (layout::action(current, &format!("{base}/remove"), "Remove", Some("Remove this version?")))
                }
            }
        }
    }
}

fn render(app: &App, current: &Current, notice: Option<Notice>, status: StatusCode) -> Response {
    let ids = app.registry.connector_ids();
    let content = html! {
        @for id in &ids {
            @let versions = app.registry.versions(id).unwrap_or_default();
            section.card.connector data-id=(id) {
                h2 { (id) }
                table {
                    thead { tr { th { "Version" } th { "State" } th { "Contract" } th { "Loaded (UTC)" } th { "Source" } th { "Manifest" } th {} } }
                    tbody { @for v in &versions { (version_row(current, id, v)) } }
                }
                @if versions.iter().any(|v| v.status == VersionStatus::Previous) {
                    p { (layout::action(current, &format!("/console/connectors/{id}/rollback"), "Roll back to the previous version", None)) }
                }
            }
        }
        @if ids.is_empty() { p { "No connector is loaded." } }
        @if current.role() == Role::Operator {
            section.card {
                h2 { "Upload a version" }
                form #upload method="post" action="/console/connectors/upload" enctype="multipart/form-data" {
                    (layout::csrf(current))
                    input type="file" name="file" accept=".wasm,application/wasm" required;
                    label { input type="checkbox" name="activate" value="true"; " activate once valid" }
                    " "
                    button type="submit" { "Upload" }
                }
                p.hint { "The component is validated (contract version, manifest, limits, outbound hosts) before it can serve; a refused one leaves the serving version untouched." }
            }
        }
    };
    let page = Page {
        title: "Connectors",
        section: Section::Connectors,
        notice,
    };
    (status, layout::page(current, page, content)).into_response()
}

/// `GET /console/connectors`.
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Query(done): Query<Done>,
) -> Response {
    render(
        &app,
        &current,
        Notice::of_code(done.ok.as_deref()),
        StatusCode::OK,
    )
}

fn serving(app: &App, id: &str) -> Option<String> {
    app.registry.get(id).map(|c| c.version_tag())
}

/// Audits an action and answers: its page with the success notice, or with the reason it was
/// refused (and the status the admin API would have answered).
fn answer(
    app: &App,
    current: &Current,
    action: &str,
    target: &str,
    before: Option<String>,
    result: Result<(String, &str), DeployError>,
) -> Response {
    match result {
        Ok((after, code)) => {
            audit::record(app, current, action, target, "ok", before, Some(after));
            Redirect::to(&format!("/console/connectors?ok={code}")).into_response()
        }
        Err(e) => {
            let e = ApiError::from(e);
            audit::record(
                app,
                current,
                action,
                target,
                &format!("refused: {e}"),
                before,
                None,
            );
            render(
                app,
                current,
                Some(Notice::Error(format!("Refused: {e}"))),
                e.status(),
            )
        }
    }
}

/// `POST /console/connectors/upload`.
pub async fn upload(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    mut form: Multipart,
) -> Response {
    let mut bytes = None;
    let mut activate = false;
    let mut name = String::new();
    loop {
        match form.next_field().await {
            Ok(Some(field)) => match field.name() {
                Some("file") => {
                    name = field.file_name().unwrap_or("").to_string();
                    bytes = field.bytes().await.ok();
                }
                Some("activate") => activate = field.text().await.is_ok_and(|v| v == "true"),
                _ => {}
            },
            Ok(None) => break,
            Err(e) => {
                return layout::refused(StatusCode::BAD_REQUEST, &format!("Unreadable form: {e}"))
            }
        }
    }
    let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
        return render(
            &app,
            &current,
            Some(Notice::Error(
                "Choose a component file (.wasm) to upload.".into(),
            )),
            StatusCode::BAD_REQUEST,
        );
    };
    let source = format!("upload:{}", crate::store::now_ms());
    let target = if name.is_empty() {
        "upload".to_string()
    } else {
        name
    };
    // What served before, by connector: the upload names its connector only once loaded.
    let serving_before: Vec<(String, Option<String>)> = app
        .registry
        .connector_ids()
        .into_iter()
        .map(|id| {
            let tag = serving(&app, &id);
            (id, tag)
        })
        .collect();
    let result = deploy::upload(
        &app.registry,
        &app.store,
        &app.config,
        None,
        bytes.to_vec(),
        &source,
        activate,
    )
    .await;
    let before = result.as_ref().ok().and_then(|up| {
        serving_before
            .iter()
            .find(|(id, _)| *id == up.version.manifest.id)
            .and_then(|(_, tag)| tag.clone())
    });
    let result = result.map(|up| {
        let tag = up.version.version_tag();
        let after = if up.activated {
            format!("{tag} (active)")
        } else {
            tag
        };
        (
            after,
            if up.activated {
                "activated"
            } else {
                "uploaded"
            },
        )
    });
    if let Err(e) = &result {
        tracing::warn!(error = %e, "connector upload from the console rejected");
    }
    answer(&app, &current, "connector.upload", &target, before, result)
}

/// `POST /console/connectors/{id}/rollback`.
pub async fn rollback(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    let before = serving(&app, &id);
    let result = deploy::rollback(&app.registry, &app.store, &id)
        .await
        .map(|v| (v.version_tag(), "rolled-back"));
    answer(&app, &current, "connector.rollback", &id, before, result)
}

/// `POST /console/connectors/{id}/versions/{hash}/activate`.
pub async fn activate(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path((id, hash)): Path<(String, String)>,
) -> Response {
    let before = serving(&app, &id);
    let result = deploy::activate(&app.registry, &app.store, &id, &hash)
        .await
        .map(|v| (v.version_tag(), "activated"));
    answer(&app, &current, "connector.activate", &id, before, result)
}

/// `POST /console/connectors/{id}/versions/{hash}/remove`.
pub async fn remove(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path((id, hash)): Path<(String, String)>,
) -> Response {
    let before = Some(format!("{hash} loaded"));
    let result = deploy::remove(&app.registry, &app.store, &id, &hash)
        .await
        .map(|v| (format!("{} removed", v.version_tag()), "removed"));
    answer(&app, &current, "connector.remove", &id, before, result)
}
