//! Step 1: the integration's id, its ATS and its connector. A GET form to the settings step:
//! nothing changes until the settings are posted, and the settings step checks the choice again.
//!
//! - `GET /console/wizard`

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use maud::html;
use serde::Deserialize;

use super::form::{self, Problems, Step};
use crate::app::App;
use crate::config::id_problem;
use crate::http::console::session::Current;

/// The ATS kinds the wizard sets up: (kind, label).
pub const ATS: [(&str, &str); 2] = [
    (
        "lever",
        "Lever — it sends a webhook when a candidate moves to a stage",
    ),
    ("gem", "Gem — it calls switchyard with what to screen"),
];

/// Step 1's choice, as the query of the settings step (checked again there).
#[derive(Deserialize, Default)]
pub struct Choice {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub ats: String,
    #[serde(default)]
    pub connector: String,
}

impl Choice {
    /// What is wrong with this choice, by field.
    pub fn problems(&self, app: &App) -> Problems {
        let mut problems = Problems::new();
        if let Some(p) = id_problem(&self.id) {
            problems.insert("id".into(), p.into());
        } else if app.integration(&self.id).is_some() {
            problems.insert(
                "id".into(),
                format!("an integration `{}` exists: pick another id", self.id),
            );
        }
        if !ATS.iter().any(|(kind, _)| *kind == self.ats) {
            problems.insert("ats".into(), "choose Lever or Gem".into());
        }
        if app.registry.get(&self.connector).is_none() {
            problems.insert(
                "connector".into(),
                "choose one of the connectors this host has loaded".into(),
            );
        }
        problems
    }
}

/// `GET /console/wizard`.
pub async fn page(State(app): State<Arc<App>>, Extension(current): Extension<Current>) -> Response {
    if let Err(refused) = form::operator_only(&current) {
        return *refused;
    }
    render(&app, &current, &Choice::default(), &Problems::new())
}

/// Step 1 with `choice` filled in and its `problems` beside the fields.
pub fn render(app: &App, current: &Current, choice: &Choice, problems: &Problems) -> Response {
    let connectors = app.registry.connector_ids();
    let content = html! {
        form.wizard #wizard-start method="get" action="/console/wizard/settings" {
            (form::field("Integration id", "id", form::text("id", &choice.id),
                "Names the integration in its webhook URLs: letters, digits, - and _.", problems))
            fieldset {
                legend { "ATS" }
                @for (kind, label) in ATS {
                    label.choice {
                        input type="radio" name="ats" value=(kind) checked[choice.ats == kind];
                        " " (label)
                    }
                }
                @if let Some(p) = problems.get("ats") { span.problem role="alert" data-field="ats" { (p) } }
            }
            (form::field("Connector", "connector", html! {
                select id="connector" name="connector" {
                    @for id in &connectors {
                        @let name = app.registry.get(id).map(|c| c.manifest.display_name.clone()).unwrap_or_default();
                        option value=(id) selected[choice.connector == *id] { (name) " (" (id) ")" }
                    }
                }
            }, "The screening vendor's connector.", problems))
            button type="submit" { "Next: settings" }
        }
    };
    form::page(current, Step::Start, None, problems, content)
}
