//! Step 2: the ATS's credentials, the connector's settings from its manifest's `config-fields`
//! (secrets write-only: password boxes, never shown again, not even after a refused submit), the
//! operator's packages where the connector takes them, the hosts it may reach. Posting it
//! creates the integration, paused, through the admin API's validation; each problem is shown
//! beside its field and nothing is created.
//!
//! - `GET /console/wizard/settings?id=&ats=&connector=` (step 1's choice, checked again)
//! - `POST /console/wizard/settings`

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{html, Markup};

use super::form::{self, Fields, Problems, Step};
use super::start::{self, Choice};
use crate::app::App;
use crate::ats::form::AtsInput;
use crate::config::forms::IntegrationInput;
use crate::config::PackageConfig;
use crate::http::admin::integrations::create_from;
use crate::http::console::audit;
use crate::http::console::session::Current;

/// Package rows offered where the operator gives the packages.
const PACKAGE_ROWS: usize = 3;

/// Where a connector's packages come from (the seeds: Certn's packages with one default are set
/// up by the operator; Justifacts reads a posting tag; Canditech lists its assessments).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Packages {
    /// The operator names them, each with its services, exactly one the default.
    Operator,
    /// A posting tag names the package: nothing to choose.
    PostingTags,
    /// The connector lists them live (`list-packages`): picked per rule.
    Live,
}

impl Packages {
    /// The source of `connector`'s packages.
    pub fn of(connector: &str) -> Packages {
        match connector {
            "certn" => Packages::Operator,
            "justifacts" => Packages::PostingTags,
            _ => Packages::Live,
        }
    }
}

/// `GET /console/wizard/settings`.
pub async fn page(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Query(choice): Query<Choice>,
) -> Response {
    if let Err(refused) = form::operator_only(&current) {
        return *refused;
    }
    let problems = choice.problems(&app);
    if !problems.is_empty() {
        return start::render(&app, &current, &choice, &problems);
    }
    render(
        &app,
        &current,
        &choice,
        &Fields(Vec::new()),
        &Problems::new(),
    )
}

fn render(
    app: &App,
    current: &Current,
    choice: &Choice,
    given: &Fields,
    problems: &Problems,
) -> Response {
    let content = html! {
        form.wizard #wizard-settings method="post" action="/console/wizard/settings" {
            (crate::http::console::layout::csrf(current))
            input type="hidden" name="id" value=(choice.id);
            input type="hidden" name="ats" value=(choice.ats);
            input type="hidden" name="connector" value=(choice.connector);
            p.hint { "Integration " strong { (choice.id) } ", " (choice.ats) " → " (choice.connector) "." }
            @if choice.ats == "lever" { (lever_fields(app, given, problems)) }
            @else { (gem_fields(given, problems)) }
            (connector_fields(app, &choice.connector, given, problems))
            (package_fields(&choice.connector, given, problems))
            h2 { "Network" }
            (form::field("Allowed hosts", "allowed_hosts", form::text("allowed_hosts", given.get("allowed_hosts")),
                "The vendor hosts this integration may call besides the connector's own (comma-separated host or host:port).", problems))
            label.choice {
                input type="checkbox" name="allow_loopback" value="true" checked[given.get("allow_loopback") == "true"];
                " Allow loopback addresses (simulators and tests only)"
            }
            p { button type="submit" { "Create (paused) and continue" } }
        }
    };
    form::page(current, Step::Settings, None, problems, content)
}

fn lever_fields(app: &App, given: &Fields, problems: &Problems) -> Markup {
    let oauth_app = app.lever_oauth.redirect_uri().is_some();
    let auth = match given.get("lever_auth") {
        "" if oauth_app => "oauth",
        "" => "api_key",
        other => other,
    };
    let base = match given.get("lever_api_base") {
        "" => crate::ats::lever::config::lever_api_base(),
        given => given.to_string(),
    };
    html! {
        h2 { "Lever: Settings > Integrations > Lever > Connect" }
        fieldset {
            legend { "How switchyard calls Lever" }
            label.choice {
                input type="radio" name="lever_auth" value="oauth" checked[auth == "oauth"] disabled[!oauth_app];
                " Connect as an app (OAuth: the customer accepts in Lever)"
                @if !oauth_app { span.hint { " — this host has no [lever_oauth] app configured" } }
            }
            label.choice {
                input type="radio" name="lever_auth" value="api_key" checked[auth == "api_key"];
                " An API key"
            }
            @if let Some(p) = problems.get("lever_auth") { span.problem role="alert" data-field="lever_auth" { (p) } }
        }
        (form::field("Lever API key", "lever_api_key", form::secret("lever_api_key"),
            "Only with an API key. Lever > Settings > Integrations and API > API Credentials: Opportunities read and write, Stages read, Postings read (to pick postings); Notes read and write for Justifacts and Canditech.", problems))
        (form::field("Signature token", "signature_token", form::secret("signature_token"),
            "Lever > Settings > Integrations and API > Webhooks > Candidate Stage Change: the signature token.", problems))
        (form::field("Lever API base", "lever_api_base", form::text("lever_api_base", &base),
            "Change only for a Lever sandbox.", problems))
    }
}

fn gem_fields(given: &Fields, problems: &Problems) -> Markup {
    html! {
        h2 { "Gem" }
        (form::field("Gem webhook URL", "gem_webhook_url", form::text("gem_webhook_url", given.get("gem_webhook_url")),
            "The Webhook URL Gem gives the vendor: where status updates go.", problems))
        (form::field("Gem webhook secret", "gem_webhook_secret", form::secret("gem_webhook_secret"),
            "Signs the status webhooks; the same secret is pasted into Gem. Gem's API key is generated at the last step.", problems))
    }
}

fn connector_fields(app: &App, connector: &str, given: &Fields, problems: &Problems) -> Markup {
    let fields = (app.registry.get(connector))
        .map(|c| c.manifest.config_fields.clone())
        .unwrap_or_default();
    html! {
        h2 { "Connector settings" }
        @for f in &fields {
            @let name = format!("setting.{}", f.key);
            @let label = format!("{}{}", f.key, if f.required { " (required)" } else { "" });
            @let input = if f.secret { form::secret(&name) } else { form::text(&name, given.get(&name)) };
            (form::field(&label, &name, input, &f.description, problems))
        }
        @if fields.is_empty() { p.hint { "This connector reads no settings." } }
    }
}

fn package_fields(connector: &str, given: &Fields, problems: &Problems) -> Markup {
    html! {
        h2 { "Packages" }
        @match Packages::of(connector) {
            Packages::Operator => {
                p.hint { "Name each package and its services (e.g. criminal_record_check,identity_verification); exactly one is the default." }
                @if let Some(p) = problems.get("packages") { span.problem role="alert" data-field="packages" { (p) } }
                table.packages {
                    tr { th { "Default" } th { "Package" } th { "Services" } }
                    @for i in 0..PACKAGE_ROWS {
                        @let name = format!("package.{i}.name");
                        @let checks = format!("package.{i}.checks");
                        @let default = given.get("default_package");
                        tr {
                            td { input type="radio" name="default_package" value=(i) checked[default == i.to_string() || (default.is_empty() && i == 0)]; }
                            td { (form::field("", &name, form::text(&name, given.get(&name)), "", problems)) }
                            td { (form::field("", &checks, form::text(&checks, given.get(&checks)), "", problems)) }
                        }
                    }
                }
            }
            Packages::PostingTags => p { "Justifacts reads the package from the posting's tag (such as "
                code { "JUSTIFACTS BGC PKG: EmpCod[ID : 13558]" } "): nothing to choose here." },
            Packages::Live => p { "This connector lists its packages itself (list-packages): pick them per stage in the rules step." },
        }
    }
}

/// `POST /console/wizard/settings`: creates the integration, paused.
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let given = Fields(fields);
    let choice = Choice {
        id: given.get("id").to_string(),
        ats: given.get("ats").to_string(),
        connector: given.get("connector").to_string(),
    };
    let problems = choice.problems(&app);
    if !problems.is_empty() {
        return start::render(&app, &current, &choice, &problems);
    }
    let (input, problems) = input_of(&app, &choice, &given);
    if !problems.is_empty() {
        return render(&app, &current, &choice, &given, &problems);
    }
    let oauth = given.get("lever_auth") == "oauth" && choice.ats == "lever";
    let summary = format!(
        "{} ({}) → {}, paused; secrets set: {}",
        choice.ats,
        if choice.ats == "gem" {
            "webhook secret"
        } else if oauth {
            "OAuth app"
        } else {
            "API key"
        },
        choice.connector,
        secret_names(&input),
    );
    match create_from(&app, input).await {
        Ok(_) => {
            tracing::info!(integration = %choice.id, "integration created by the setup wizard");
            audit::record(
                &app,
                &current,
                "integration.create",
                &choice.id,
                "ok",
                None,
                Some(summary),
            );
            let next = if oauth {
                "connect"
            } else if choice.ats == "gem" {
                "finish"
            } else {
                "rules"
            };
            Redirect::to(&format!("/console/wizard/{}/{next}", choice.id)).into_response()
        }
        Err(e) => {
            let message = e.to_string();
            audit::record(
                &app,
                &current,
                "integration.create",
                &choice.id,
                &format!("refused: {message}"),
                None,
                None,
            );
            let mut problems = Problems::new();
            let field = form::problem_field(&message, &field_names(&app, &choice.connector));
            problems.insert(field, message);
            render(&app, &current, &choice, &given, &problems)
        }
    }
}

/// The names of the secrets `input` sets (never their values).
fn secret_names(input: &IntegrationInput) -> String {
    let mut names: Vec<&str> = (input.secrets.iter().flatten())
        .map(|(k, _)| k.as_str())
        .collect();
    if let Some(ats) = &input.ats {
        names.extend(
            (ats.fields.keys())
                .filter(|k| ["api_key", "signature_token", "webhook_secret"].contains(&k.as_str()))
                .map(String::as_str),
        );
    }
    names.join(", ")
}

/// How the shared validation's messages name this form's fields: (needle, field).
fn field_names(app: &App, connector: &str) -> Vec<(String, String)> {
    // A connector's required settings are named by key ("connector `certn` requires api-key").
    let mut names: Vec<(String, String)> = (app.registry.get(connector))
        .map(|c| c.manifest.config_fields.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|f| (f.key.clone(), format!("setting.{}", f.key)))
        .collect();
    for (needle, field) in [
        ("signature_token", "signature_token"),
        ("api_key", "lever_api_key"),
        ("webhook_url", "gem_webhook_url"),
        ("webhook_secret", "gem_webhook_secret"),
        ("allowed", "allowed_hosts"),
        ("host", "allowed_hosts"),
        ("package", "packages"),
    ] {
        names.push((needle.to_string(), field.to_string()));
    }
    names
}

/// The create body of this form, and the problems found field by field before the shared
/// validation runs.
fn input_of(app: &App, choice: &Choice, given: &Fields) -> (IntegrationInput, Problems) {
    let mut problems = Problems::new();
    let mut need = |field: &str, problem: &str| {
        problems.insert(field.to_string(), problem.to_string());
    };
    let mut ats = serde_json::Map::new();
    if choice.ats == "lever" {
        match given.get("lever_auth") {
            "oauth" if app.lever_oauth.redirect_uri().is_some() => {
                ats.insert("oauth".into(), true.into());
            }
            "oauth" => need(
                "lever_auth",
                "this host has no Lever OAuth app: use an API key",
            ),
            "api_key" => match given.opt("lever_api_key") {
                Some(key) => {
                    ats.insert("api_key".into(), key.into());
                }
                None => need("lever_api_key", "paste the Lever API key"),
            },
            _ => need("lever_auth", "choose OAuth or an API key"),
        }
        match given.opt("signature_token") {
            Some(token) => {
                ats.insert("signature_token".into(), token.into());
            }
            None => need(
                "signature_token",
                "paste the webhook's signature token from Lever",
            ),
        }
        match given.opt("lever_api_base") {
            Some(base) if base.starts_with("https://") || base.starts_with("http://") => {
                ats.insert("api_base".into(), base.into());
            }
            Some(_) => need("lever_api_base", "must be an http(s) URL"),
            None => {}
        }
    } else {
        match given.opt("gem_webhook_url") {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                ats.insert("webhook_url".into(), url.into());
            }
            _ => need("gem_webhook_url", "must be Gem's http(s) webhook URL"),
        }
        match given.opt("gem_webhook_secret") {
            Some(secret) => {
                ats.insert("webhook_secret".into(), secret.into());
            }
            None => need(
                "gem_webhook_secret",
                "set the secret that signs status webhooks",
            ),
        }
    }
    let mut settings = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let fields = (app.registry.get(&choice.connector))
        .map(|c| c.manifest.config_fields.clone())
        .unwrap_or_default();
    for f in &fields {
        let name = format!("setting.{}", f.key);
        match (given.opt(&name), f.secret) {
            (Some(v), true) => {
                secrets.insert(f.key.clone(), Some(v));
            }
            (Some(v), false) => {
                settings.insert(f.key.clone(), serde_json::Value::String(v));
            }
            (None, _) if f.required => need(&name, "required"),
            (None, _) => {}
        }
    }
    let packages = match Packages::of(&choice.connector) {
        Packages::Operator => operator_packages(given, &mut need),
        _ => Vec::new(),
    };
    let allowed_hosts: Vec<String> = (given.get("allowed_hosts").split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    let input = IntegrationInput {
        id: Some(choice.id.clone()),
        connector: Some(choice.connector.clone()),
        enabled: Some(false),
        ats: Some(AtsInput {
            kind: Some(choice.ats.clone()),
            fields: ats,
        }),
        allowed_hosts: (!allowed_hosts.is_empty()).then_some(allowed_hosts),
        allow_loopback: Some(given.get("allow_loopback") == "true"),
        settings: Some(settings),
        secrets: Some(secrets),
        packages: (!packages.is_empty()).then_some(packages),
        ..IntegrationInput::default()
    };
    (input, problems)
}

/// The operator's packages: the named rows, the chosen one the default.
fn operator_packages(given: &Fields, need: &mut impl FnMut(&str, &str)) -> Vec<PackageConfig> {
    let default = given.get("default_package");
    let mut packages = Vec::new();
    for i in 0..PACKAGE_ROWS {
        let Some(name) = given.opt(&format!("package.{i}.name")) else {
            if default == i.to_string() {
                need(
                    &format!("package.{i}.name"),
                    "the default package needs a name",
                );
            }
            continue;
        };
        let checks = given.get(&format!("package.{i}.checks"));
        if checks.is_empty() {
            need(&format!("package.{i}.checks"), "name at least one service");
        }
        packages.push(PackageConfig {
            name,
            default: default == i.to_string(),
            params: BTreeMap::from([("checks".to_string(), checks.to_string())]),
        });
    }
    if packages.is_empty() {
        need("packages", "name at least one package (the default)");
    }
    packages
}
