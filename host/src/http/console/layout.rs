//! The page shell every console page shares (navigation, role, sign-out), its stylesheet and
//! script (embedded in the binary: no build step), the security headers of every console
//! response, and small formatting helpers. Pages read fine without the script: it only adds the
//! copy buttons' clipboard and the confirmations of destructive actions.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::session::Current;
use crate::store::console::Role;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The sections of the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Events,
    Integrations,
    Connectors,
    Replays,
    Pictures,
    Audit,
    Wizard,
}

impl Section {
    const ALL: [(Section, &'static str, &'static str); 7] = [
        (Section::Events, "Events", "/console/events"),
        (
            Section::Integrations,
            "Integrations",
            "/console/integrations",
        ),
        (Section::Connectors, "Connectors", "/console/connectors"),
        (Section::Replays, "Replay jobs", "/console/replays"),
        (Section::Pictures, "Pictures", "/console/pictures"),
        (Section::Audit, "Audit log", "/console/audit"),
        (Section::Wizard, "Set up", "/console/wizard"),
    ];
}

/// A page: its title, its section, and an optional notice above the content.
pub struct Page<'a> {
    pub title: &'a str,
    pub section: Section,
    pub notice: Option<Notice>,
}

/// A message above a page's content.
pub enum Notice {
    Ok(String),
    Error(String),
}

/// The query of a page an action redirects to: `?ok=<code>` (see [`Notice::of_code`]).
#[derive(serde::Deserialize)]
pub struct Done {
    pub ok: Option<String>,
}

impl Notice {
    /// The success notice of an action's redirect (`?ok=<code>`). Only these fixed texts: a
    /// link cannot make the console say anything else.
    pub fn of_code(code: Option<&str>) -> Option<Notice> {
        let text = match code? {
            "retried" => "Queued again: a worker takes it up now.",
            "replayed" => {
                "Replayed: queued again; a screening already ordered is not started twice."
            }
            "replay-started" => "Replay job started: its events are queued in the background.",
            "replay-cancelled" => "Cancelled: the job queues nothing more.",
            "paused" => "Paused: its webhooks are refused with 503 until it is resumed.",
            "resumed" => "Resumed: its webhooks are accepted again.",
            "uploaded" => "Uploaded and validated.",
            "activated" => "Activated: new calls use this version.",
            "rolled-back" => "Rolled back: the previous version serves again.",
            "removed" => "Removed.",
            "set-up" => {
                "Set up: Verify Connection passed (the ATS accepts the credential, the connector \
                 lists its packages) and the integration is enabled."
            }
            "token-replaced" => {
                "Signature token replaced: webhooks signed with the old one are refused from now."
            }
            _ => return None,
        };
        Some(Notice::Ok(text.to_string()))
    }
}

fn head(title: &str) -> Markup {
    html! {
        (DOCTYPE)
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · switchyard" }
        link rel="stylesheet" href="/console/assets/console.css";
        script src="/console/assets/console.js" defer {}
    }
}

/// A page of a signed-in user.
pub fn page(current: &Current, page: Page<'_>, content: Markup) -> Markup {
    html! {
        (head(page.title))
        header {
            span.brand { "switchyard" }
            nav {
                @for (section, label, href) in Section::ALL {
                    a href=(href) class=[(section == page.section).then_some("active")] { (label) }
                }
            }
            span.who {
                span.role { (current.role().as_str()) }
                form.inline method="post" action="/console/sign-out" {
                    (csrf(current))
                    button.link type="submit" { "Sign out" }
                }
            }
        }
        main {
            h1 { (page.title) }
            @match &page.notice {
                Some(Notice::Ok(text)) => p.notice.ok role="status" { (text) },
                Some(Notice::Error(text)) => p.notice.error role="alert" { (text) },
                None => {}
            }
            (content)
        }
    }
}

/// A page without navigation (sign-in, refusals).
pub fn bare(title: &str, content: Markup) -> Markup {
    html! {
        (head(title))
        main.bare { (content) }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf(current: &Current) -> Markup {
    html! { input type="hidden" name="csrf" value=(current.session.csrf); }
}

/// A one-button form posting to `action` (operators only: viewers see nothing).
pub fn action(current: &Current, action: &str, label: &str, confirm: Option<&str>) -> Markup {
    html! {
        @if current.role() == Role::Operator {
            form.inline method="post" action=(action) data-confirm=[confirm] {
                (csrf(current))
                button type="submit" { (label) }
            }
        }
    }
}

/// A value with a button that copies it.
pub fn copyable(value: &str) -> Markup {
    html! {
        span.copyable {
            code { (value) }
            button.copy type="button" data-copy=(value) title="Copy" { "Copy" }
        }
    }
}

/// An HTML refusal (403, 413, ...): what happened and that nothing changed.
pub fn refused(status: StatusCode, message: &str) -> Response {
    let body = bare(
        "Refused",
        html! {
            h1 { "Refused" }
            p.notice.error role="alert" { (message) }
            p { a href="/console/events" { "Back to the console" } }
        },
    );
    (status, body).into_response()
}

/// The store cannot be read or written.
pub fn storage_error() -> Response {
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "Storage is unavailable; nothing was changed. Try again shortly.",
    )
}

/// Unix milliseconds as UTC, to the second (RFC 3339).
pub fn time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub fn short(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// `GET /console/assets/console.css`.
pub async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

/// `GET /console/assets/console.js`.
pub async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

/// Headers of every console response: no inline script or style may run (a value that slipped
/// through escaping still could not execute), no framing, no caching of pages, no referrer
/// leaving the host.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
