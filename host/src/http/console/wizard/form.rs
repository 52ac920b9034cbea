//! What every wizard step shares: the steps bar, a field with its problem beside it, the posted
//! fields, and the lookups each step starts with (an operator, an integration that exists).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use crate::app::{App, Integration};
use crate::config::{AtsConfig, IntegrationConfig};
use crate::http::console::layout::{self, Notice, Page, Section};
use crate::http::console::session::Current;
use crate::store::console::Role;

/// Problems by field name (`_form`: not about one field).
pub type Problems = BTreeMap<String, String>;

/// The key of a problem that is about no single field.
pub const WHOLE_FORM: &str = "_form";

/// A posted form, as its fields in order (repeated and dynamic names included).
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The trimmed value of `name`, empty when absent.
    pub fn get(&self, name: &str) -> &str {
        (self.0.iter())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    }

    /// The value of `name` when given and not blank.
    pub fn opt(&self, name: &str) -> Option<String> {
        Some(self.get(name).to_string()).filter(|v| !v.is_empty())
    }
}

/// The wizard's steps, in order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Start,
    Settings,
    Connect,
    Rules,
    Finish,
}

impl Step {
    fn label(self) -> &'static str {
        match self {
            Step::Start => "ATS and connector",
            Step::Settings => "Settings",
            Step::Connect => "Connect to Lever",
            Step::Rules => "Attach to stage",
            Step::Finish => "Verify and enable",
        }
    }

    /// The steps an integration goes through: Gem has no stages to attach to, and only a Lever
    /// integration on the OAuth app connects.
    pub fn of(config: Option<&IntegrationConfig>) -> Vec<Step> {
        match config.map(|c| &c.ats) {
            Some(AtsConfig::Gem(_)) => vec![Step::Start, Step::Settings, Step::Finish],
            Some(AtsConfig::Lever(l)) if !l.oauth => {
                vec![Step::Start, Step::Settings, Step::Rules, Step::Finish]
            }
            _ => vec![
                Step::Start,
                Step::Settings,
                Step::Connect,
                Step::Rules,
                Step::Finish,
            ],
        }
    }
}

/// A wizard page: the steps bar, then `content`.
pub fn page(
    current: &Current,
    step: Step,
    config: Option<&IntegrationConfig>,
    problems: &Problems,
    content: Markup,
) -> Response {
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let content = html! {
        ol.steps {
            @for s in Step::of(config) {
                li class=[(s == step).then_some("active")] { (s.label()) }
            }
        }
        (content)
    };
    let notice = if problems.is_empty() {
        None
    } else {
        Some(Notice::Error(match problems.get(WHOLE_FORM) {
            Some(p) => format!("Nothing was saved: {p}"),
            None => "Nothing was saved: see the problems beside the fields.".to_string(),
        }))
    };
    let page = Page {
        title: "Set up an integration",
        section: Section::Wizard,
        notice,
    };
    (status, layout::page(current, page, content)).into_response()
}

/// A labelled field; its problem, if any, beside it.
pub fn field(label: &str, name: &str, input: Markup, help: &str, problems: &Problems) -> Markup {
    let problem = problems.get(name);
    html! {
        div.field.invalid[problem.is_some()] {
            label for=(name) { (label) }
            (input)
            @if let Some(p) = problem {
                span.problem role="alert" data-field=(name) { (p) }
            }
            @if !help.is_empty() { small.hint { (help) } }
        }
    }
}

/// A text input showing `value`.
pub fn text(name: &str, value: &str) -> Markup {
    html! { input type="text" id=(name) name=(name) value=(value); }
}

/// A write-only input: a password box that never shows a value (not even after a refused
/// submit: the operator types it again).
pub fn secret(name: &str) -> Markup {
    html! { input type="password" id=(name) name=(name) autocomplete="new-password"; }
}

/// Refuses anyone but an operator (the guard only checks the role of posted forms: the wizard's
/// pages are forms and nothing else).
pub fn operator_only(current: &Current) -> Result<(), Box<Response>> {
    if current.role() == Role::Operator {
        Ok(())
    } else {
        Err(Box::new(layout::refused(
            StatusCode::FORBIDDEN,
            "Only operators set up integrations: sign in with the operator token.",
        )))
    }
}

/// The integration `id`, or a 404 page. Behind a load balancer the step before may have
/// created it through another host: one not known here yet is looked up in the database
/// before the page says it does not exist.
pub async fn integration(app: &App, id: &str) -> Result<Arc<Integration>, Box<Response>> {
    let mut found = app.integration(id);
    if found.is_none() {
        if let Err(e) = app.reload_integrations().await {
            tracing::error!(error = %e, "cannot read the integrations");
        }
        found = app.integration(id);
    }
    found.ok_or_else(|| {
        Box::new(layout::refused(
            StatusCode::NOT_FOUND,
            "No such integration: start the setup again from the first step.",
        ))
    })
}

/// The field an error message of the shared validation is about, by the first of `candidates`
/// (needle, field) whose needle it mentions; the whole form when it names none.
pub fn problem_field(message: &str, candidates: &[(String, String)]) -> String {
    candidates
        .iter()
        .find(|(needle, _)| message.contains(needle.as_str()))
        .map(|(_, field)| field.clone())
        .unwrap_or_else(|| WHOLE_FORM.to_string())
}
