//! Lever's routes ([`routes`]): `GET /oauth/lever/callback`, where Lever sends the browser back
//! after "Accept" (or "Deny").
//! Public: the single-use, expiring `state` (issued by the admin API's connect link and bound to
//! one integration) is what authenticates it. Unknown, reused or expired state, or Lever's
//! `error=` → a clear 400 (HTML for a browser, JSON otherwise) and nothing stored. A valid one
//! → the code is exchanged, the tokens stored, the integration's parked events resumed.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::ats::lever::oauth::CALLBACK_PATH;
use crate::config::AtsConfig;
use crate::store::oauth::StateCheck;

/// Lever's routes, mounted by [`crate::http::router`]: the OAuth callback.
pub fn routes() -> Router<Arc<App>> {
    Router::new().route(CALLBACK_PATH, get(callback))
}

/// The callback's query: `code` + `state`, or `error` (+ `error_description`) + `state`.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Whether the caller is a browser (an HTML page) rather than a program (JSON).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An answer: `{"status"|"error", "message", ...}` as JSON, or the same as a small page.
fn answer(html: bool, status: StatusCode, code: &str, message: &str) -> Response {
    page_or_json(html, status, code, message, "")
}

/// [`answer`], its page ending with `extra` (trusted HTML).
fn page_or_json(
    html: bool,
    status: StatusCode,
    code: &str,
    message: &str,
    extra: &str,
) -> Response {
    if html {
        let title = match code {
            _ if status.is_success() => "Connected to Lever",
            "state_expired" => "This connect link has expired",
            _ => "Could not connect to Lever",
        };
        let body = format!(
            "<!doctype html>\n<html><head><title>{title}</title></head><body><h1>{title}</h1>\
             <p>{}</p><p><code>{}</code></p>{extra}</body></html>\n",
            escape(message),
            escape(code)
        );
        return (status, Html(body)).into_response();
    }
    let key = if status.is_success() {
        "status"
    } else {
        "error"
    };
    let mut body = serde_json::Map::new();
    body.insert(key.into(), json!(code));
    body.insert("message".into(), json!(message));
    (status, Json(serde_json::Value::Object(body))).into_response()
}

/// How whoever holds a dead connect link gets a new one: the customer's Lever admin is rarely the
/// operator, so the page says what to ask for and which call issues it.
fn new_link(integration: &str) -> String {
    format!(
        "Ask the person who sent you this link for a new one: they issue it for integration \
         `{integration}` with `POST /admin/integrations/{integration}/lever/connect` (switchyard's \
         admin API). Then open the new link, log into Lever and click Accept again."
    )
}

/// `GET /oauth/lever/callback`.
pub async fn callback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let html = wants_html(&headers);
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let bad = |code: &str, message: &str| {
        tracing::warn!(code, "Lever OAuth callback refused: {message}");
        answer(html, StatusCode::BAD_REQUEST, code, message)
    };
    let Some(state) = q.state.as_deref().filter(|s| !s.is_empty()) else {
        return bad(
            "missing_state",
            "The callback carries no state: start again from the integration's connect link.",
        );
    };
    let (integration, verifier) = match app.store.oauth_take_state(state) {
        Err(e) => {
            tracing::error!(error = %e, "cannot check an OAuth state");
            return answer(html, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "Storage is unavailable; try again.");
        }
        Ok(StateCheck::Unknown) => return bad("unknown_state", "This connect link was not issued by this host (or is too old): start again from the integration's connect link."),
        Ok(StateCheck::Used { integration }) => return bad("state_used", &format!("This connect link was already used. {}", new_link(&integration))),
        Ok(StateCheck::Expired { integration }) => {
            let lifetime = app.config.lever_oauth.as_ref().map_or(String::new(), |c| {
                format!(" (a link works for {} minutes)", c.state_ttl_secs.div_ceil(60))
            });
            return bad("state_expired", &format!(
                "This connect link expired before Lever sent you back{lifetime}, so nothing was stored. {}",
                new_link(&integration)
            ));
        }
        Ok(StateCheck::Valid { integration, pkce_verifier }) => (integration, pkce_verifier),
    };
    if let Some(error) = &q.error {
        let detail = q.error_description.as_deref().unwrap_or("no description");
        return bad(
            "lever_error",
            &format!("Lever did not authorize the app for `{integration}`: {error} ({detail}). Nothing was stored."),
        );
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return bad("missing_code", "Lever sent neither a code nor an error.");
    };
    let is_oauth = app
        .integration(&integration)
        .is_some_and(|i| matches!(&i.config.ats, AtsConfig::Lever(l) if l.oauth));
    if !is_oauth {
        return bad(
            "not_an_oauth_integration",
            &format!("Integration `{integration}` no longer exists or is not connected through the Lever OAuth app."),
        );
    }
    let tokens = match app.lever_oauth.exchange(code, &verifier).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(%integration, error = %e, "Lever OAuth code exchange failed");
            return answer(
                html,
                StatusCode::BAD_GATEWAY,
                "exchange_failed",
                &format!("Lever did not exchange the code: {e}. Nothing was stored."),
            );
        }
    };
    match app.store.oauth_connect(&integration, &tokens) {
        Ok(resumed) => {
            app.wake.notify_waiters();
            tracing::info!(%integration, resumed, "Lever integration connected through OAuth");
            let message = format!("Integration `{integration}` is connected to Lever; {resumed} waiting event(s) resumed.");
            if html {
                // The operator who connected from the console's setup wizard goes on there.
                let next = match app.config.server.admin_token {
                    Some(_) => format!(
                        "<p><a href=\"/console/wizard/{}/connect\">Continue the setup in the console</a></p>",
                        escape(&url::form_urlencoded::byte_serialize(integration.as_bytes()).collect::<String>())
                    ),
                    None => String::new(),
                };
                return page_or_json(true, StatusCode::OK, "connected", &message, &next);
            }
            Json(json!({
                "status": "connected",
                "integration": integration,
                "resumed_events": resumed,
                "message": message,
            }))
            .into_response()
        }
        Err(e) => {
            tracing::error!(%integration, error = %e, "cannot store the Lever tokens");
            answer(
                html,
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "Storage is unavailable; ask for a new connect link.",
            )
        }
    }
}
