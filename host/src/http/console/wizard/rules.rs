//! "Attach Assessment to Stage: position → stage → assessment": the trigger stage and
//! `(posting, stage) → package` rules, each picked from a **live** list read with the
//! integration's own credentials and settings: Lever's postings (`GET /postings`) and stages
//! (`GET /stages`), the connector's `list-packages`. A posted choice must be in the list read
//! again when it is posted; the rules are saved through the admin API's validation.
//!
//! - `GET /console/wizard/{id}/rules`
//! - `POST /console/wizard/{id}/rules` — audited with the rules before and after.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{html, Markup};

use super::form::{self, Fields, Problems, Step, WHOLE_FORM};
use crate::app::{App, Integration};
use crate::ats::form::AtsInput;
use crate::config::forms::IntegrationInput;
use crate::config::{AtsConfig, RuleConfig};
use crate::http::admin::integrations::update_from;
use crate::http::admin::live::live_list;
use crate::http::console::audit;
use crate::http::console::layout::csrf;
use crate::http::console::session::Current;

/// Empty rule rows offered beside the saved rules.
const NEW_ROWS: usize = 2;

/// The live lists, each with why it could not be read.
struct Lists {
    postings: Result<Vec<(String, String)>, String>,
    stages: Result<Vec<(String, String)>, String>,
    packages: Result<Vec<String>, String>,
}

impl Lists {
    async fn read(app: &App, integration: &Integration) -> Lists {
        let postings = live_list(integration, "postings", integration.ats.postings().await);
        let stages = live_list(integration, "stages", integration.ats.stages().await);
        let packages = match app.offered_packages(&integration.config).await {
            None => Err(format!(
                "connector `{}` is not loaded",
                integration.config.connector
            )),
            Some(Err(e)) => Err(format!("the connector did not list its packages: {e}")),
            Some(Ok(list)) => Ok(list.into_iter().map(|(name, _)| name).collect()),
        };
        Lists {
            postings: postings.map_err(|e| e.to_string()),
            stages: stages.map_err(|e| e.to_string()),
            packages,
        }
    }
}

fn trigger_of(app: &App, integration: &Integration) -> String {
    match &integration.config.ats {
        AtsConfig::Lever(l) => l.trigger_stage.clone(),
        AtsConfig::Gem(_) => None,
    }
    .or_else(|| {
        (app.registry.get(&integration.config.connector))
            .and_then(|c| c.manifest.default_trigger_stage.clone())
    })
    .unwrap_or_default()
}

/// A select of `options` (value, label) after `none` (value ""), `selected` chosen.
fn select(name: &str, none: &str, options: &[(String, String)], selected: &str) -> Markup {
    html! {
        select id=(name) name=(name) {
            option value="" selected[selected.is_empty()] { (none) }
            @for (value, label) in options {
                option value=(value) selected[selected == value] { (label) }
            }
        }
    }
}

fn list_problem(what: &str, list: &Result<Vec<impl Sized>, String>) -> Markup {
    html! {
        @if let Err(e) = list { p.notice.error role="alert" { "Cannot read the " (what) ": " (e) } }
    }
}

fn render(
    app: &App,
    current: &Current,
    integration: &Integration,
    lists: &Lists,
    given: Option<&Fields>,
    problems: &Problems,
) -> Response {
    let config = &integration.config;
    let postings: Vec<(String, String)> = lists.postings.clone().unwrap_or_default();
    let stages: Vec<(String, String)> = (lists.stages.clone().unwrap_or_default().into_iter())
        .map(|(_, name)| (name.clone(), name))
        .collect();
    let packages: Vec<(String, String)> = (lists.packages.clone().unwrap_or_default().into_iter())
        .map(|p| (p.clone(), p))
        .collect();
    let saved = config.rules.len();
    let value = |name: &str, saved: Option<&str>| -> String {
        match given {
            Some(g) => g.get(name).to_string(),
            None => saved.unwrap_or("").to_string(),
        }
    };
    let trigger = value("trigger_stage", Some(&trigger_of(app, integration)));
    let content = html! {
        (list_problem("postings", &lists.postings))
        (list_problem("stages", &lists.stages))
        (list_problem("packages", &lists.packages))
        form.wizard #wizard-rules method="post" action={ "/console/wizard/" (config.id) "/rules" } {
            (csrf(current))
            (form::field("Trigger stage", "trigger_stage", select("trigger_stage", "(the connector's default)", &stages, &trigger),
                "Moving a candidate to this stage starts the screening (a rule can name another stage).", problems))
            h2 { "Rules: posting → stage → package" }
            p.hint { "Each rule sends its package when a candidate of the posting reaches the stage. Without a rule, the default package is sent." }
            table.rules {
                tr { th { "Posting" } th { "Stage" } th { "Package" } }
                @for i in 0..saved + NEW_ROWS {
                    @let rule = config.rules.get(i);
                    @let (p, s, k) = (format!("rule.{i}.posting"), format!("rule.{i}.stage"), format!("rule.{i}.package"));
                    tr {
                        td { (form::field("", &p, select(&p, "every posting", &postings, &value(&p, rule.and_then(|r| r.posting.as_deref()))), "", problems)) }
                        td { (form::field("", &s, select(&s, "the trigger stage", &stages, &value(&s, rule.and_then(|r| r.stage.as_deref()))), "", problems)) }
                        td { (form::field("", &k, select(&k, "(no rule)", &packages, &value(&k, rule.map(|r| r.package.as_str()))), "", problems)) }
                    }
                }
            }
            p { button type="submit" { "Save and continue" } }
        }
    };
    form::page(current, Step::Rules, Some(config), problems, content)
}

/// `GET /console/wizard/{id}/rules`.
pub async fn page(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = form::operator_only(&current) {
        return *refused;
    }
    let integration = match form::integration(&app, &id).await {
        Ok(i) => i,
        Err(missing) => return *missing,
    };
    if let Some(gem) = gem_skips(&integration) {
        return gem;
    }
    let lists = Lists::read(&app, &integration).await;
    render(&app, &current, &integration, &lists, None, &Problems::new())
}

/// Gem calls switchyard with what to screen: no stage to attach to, on to the last step.
fn gem_skips(integration: &Integration) -> Option<Response> {
    matches!(integration.config.ats, AtsConfig::Gem(_)).then(|| {
        Redirect::to(&format!("/console/wizard/{}/finish", integration.config.id)).into_response()
    })
}

/// Whether `value` is blank or one of `list`'s ids, else the problem.
fn pick(value: &str, list: &[String], what: &str) -> Result<Option<String>, String> {
    if value.is_empty() {
        Ok(None)
    } else if list.iter().any(|v| v == value) {
        Ok(Some(value.to_string()))
    } else {
        Err(format!(
            "not one of the ATS's or connector's {what} (read again just now)"
        ))
    }
}

/// `POST /console/wizard/{id}/rules`.
pub async fn save(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let integration = match form::integration(&app, &id).await {
        Ok(i) => i,
        Err(missing) => return *missing,
    };
    if let Some(gem) = gem_skips(&integration) {
        return gem;
    }
    let given = Fields(fields);
    let lists = Lists::read(&app, &integration).await;
    let ids = |l: &Result<Vec<(String, String)>, String>, name: bool| -> Vec<String> {
        (l.clone().unwrap_or_default().into_iter())
            .map(|(id, n)| if name { n } else { id })
            .collect()
    };
    let (postings, stages) = (ids(&lists.postings, false), ids(&lists.stages, true));
    let packages = lists.packages.clone().unwrap_or_default();
    let mut problems = Problems::new();
    let trigger = pick(given.get("trigger_stage"), &stages, "stages").unwrap_or_else(|e| {
        problems.insert("trigger_stage".into(), e);
        None
    });
    let mut rules = Vec::new();
    let rows = integration.config.rules.len() + NEW_ROWS;
    for i in 0..rows {
        let mut checked = |field: &str, list: &[String], what: &str| {
            let name = format!("rule.{i}.{field}");
            pick(given.get(&name), list, what).unwrap_or_else(|e| {
                problems.insert(name, e);
                None
            })
        };
        let posting = checked("posting", &postings, "postings");
        let stage = checked("stage", &stages, "stages");
        let package = checked("package", &packages, "packages");
        match package {
            Some(package) => rules.push(RuleConfig {
                posting,
                stage,
                package,
            }),
            None if posting.is_some() || stage.is_some() => {
                problems.insert(
                    format!("rule.{i}.package"),
                    "choose the package this rule sends".into(),
                );
            }
            None => {}
        }
    }
    if !problems.is_empty() {
        return render(
            &app,
            &current,
            &integration,
            &lists,
            Some(&given),
            &problems,
        );
    }
    let before = describe(&integration.config.rules);
    let after = describe(&rules);
    let mut ats = serde_json::Map::new();
    ats.insert("trigger_stage".into(), trigger.unwrap_or_default().into());
    let input = IntegrationInput {
        ats: Some(AtsInput {
            kind: None,
            fields: ats,
        }),
        rules: Some(rules),
        ..IntegrationInput::default()
    };
    match update_from(&app, &id, input).await {
        Ok(_) => {
            audit::record(
                &app,
                &current,
                "integration.rules",
                &id,
                "ok",
                Some(before),
                Some(after),
            );
            Redirect::to(&format!("/console/wizard/{id}/finish")).into_response()
        }
        Err(e) => {
            audit::record(
                &app,
                &current,
                "integration.rules",
                &id,
                &format!("refused: {e}"),
                Some(before),
                None,
            );
            problems.insert(WHOLE_FORM.into(), e.to_string());
            render(
                &app,
                &current,
                &integration,
                &lists,
                Some(&given),
                &problems,
            )
        }
    }
}

/// Rules as the audit log shows them.
fn describe(rules: &[RuleConfig]) -> String {
    if rules.is_empty() {
        return "no rules".into();
    }
    (rules.iter())
        .map(|r| {
            format!(
                "{} / {} → {}",
                r.posting.as_deref().unwrap_or("every posting"),
                r.stage.as_deref().unwrap_or("trigger stage"),
                r.package
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
