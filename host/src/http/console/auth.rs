//! Who is asking: sign-in with a token, the session cookie, the CSRF token of every form, the
//! two roles, and the sign-in rate limit per client address.
//!
//! - `GET /console/sign-in` opens an anonymous session (stored, short-lived) that carries the
//!   sign-in form's CSRF token.
//! - `POST /console/sign-in` compares the token with `server.admin_token` (operator) and
//!   `server.viewer_token` (viewer) in constant time. Right: a *new* session id (the anonymous one
//!   is dropped, so a planted cookie cannot be signed in). Wrong: counted against the client
//!   address; past [`MAX_FAILURES`] in [`WINDOW_MS`] every attempt is refused with 429 unread.
//! - `POST /console/sign-out` ends the session.
//!
//! [`guard`] runs before every console route but the sign-in page and the assets: no session →
//! the sign-in page; a POST without the session's CSRF token → 403; a viewer's POST (every POST
//! but sign-out is an operator action) → 403, logged and written to the audit log.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::audit;
use super::layout;
use super::session::Current;
use crate::app::App;
use crate::clock::now_ms;
use crate::store::console::{Role, Session};

/// The session cookie's name.
pub const COOKIE: &str = "switchyard_console";
/// How long a signed-in session lasts.
const SESSION_MS: i64 = 8 * 3600 * 1000;
/// How long a sign-in form stays valid.
const ANONYMOUS_MS: i64 = 30 * 60 * 1000;
/// Failed sign-ins allowed per client address in one [`WINDOW_MS`].
pub const MAX_FAILURES: u32 = 5;
/// The rate limit's window.
const WINDOW_MS: i64 = 15 * 60 * 1000;

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn hash_id(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The client address (the TCP peer: a forwarded-for header is anyone's to write).
fn client_of(request: &Request) -> String {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The session id in the request's cookie, if any.
fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The stored session of the request's cookie (expired or unknown: None).
fn session_of(app: &App, headers: &HeaderMap) -> Option<Session> {
    let id = cookie_id(headers)?;
    match app.store.console_session(&hash_id(&id), now_ms()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot read a console session");
            None
        }
    }
}

/// `Set-Cookie` for session `id` (empty with `max_age_ms` 0: removes it).
fn cookie(app: &App, id: &str, max_age_ms: i64) -> HeaderValue {
    let secure = if app.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let value = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age_ms / 1000
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Creates and stores a session; returns it with the cookie id to hand out.
fn open_session(
    app: &App,
    role: Role,
    client: &str,
    lasts_ms: i64,
) -> Result<(Session, String), Box<Response>> {
    let id = random_hex();
    let now = now_ms();
    let session = Session {
        id_hash: hash_id(&id),
        role,
        csrf: random_hex(),
        client: client.to_string(),
        created_at_ms: now,
        expires_at_ms: now + lasts_ms,
    };
    app.store.console_session_create(&session).map_err(|e| {
        tracing::error!(error = %e, "cannot store a console session");
        Box::new(layout::storage_error())
    })?;
    Ok((session, id))
}

fn sign_in_page(csrf: &str, problem: Option<&str>) -> maud::Markup {
    layout::bare(
        "Sign in",
        html! {
            h1 { "switchyard console" }
            @if let Some(problem) = problem { p.notice.error role="alert" { (problem) } }
            form method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(csrf);
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
            p.hint { "The operator token is the admin API's token; the viewer token reads only." }
        },
    )
}

/// `GET /console/sign-in`.
pub async fn sign_in_form(State(app): State<Arc<App>>, request: Request) -> Response {
    match session_of(&app, request.headers()) {
        Some(s) if s.role != Role::Anonymous => Redirect::to("/console/events").into_response(),
        Some(s) => sign_in_page(&s.csrf, None).into_response(),
        None => {
            let client = client_of(&request);
            match open_session(&app, Role::Anonymous, &client, ANONYMOUS_MS) {
                Ok((session, id)) => (
                    [(header::SET_COOKIE, cookie(&app, &id, ANONYMOUS_MS))],
                    sign_in_page(&session.csrf, None),
                )
                    .into_response(),
                Err(response) => *response,
            }
        }
    }
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct SignIn {
    token: String,
}

/// `POST /console/sign-in` (its CSRF token was checked by [`guard`]).
pub async fn sign_in(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
    Form(form): Form<SignIn>,
) -> Response {
    let anonymous = current.session;
    let client = anonymous.client.clone();
    let window_from = now_ms() - WINDOW_MS;
    match app.store.console_sign_in_failures(&client, window_from) {
        Ok(n) if n >= MAX_FAILURES => {
            tracing::warn!(client = %client, "console sign-in refused: too many failed attempts");
            let page = sign_in_page(
                &anonymous.csrf,
                Some("Too many failed sign-ins from this address: try again in 15 minutes."),
            );
            return (StatusCode::TOO_MANY_REQUESTS, page).into_response();
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot read the sign-in rate limit");
            return layout::storage_error();
        }
    }
    let server = &app.config.server;
    let role = if server
        .admin_token
        .as_ref()
        .is_some_and(|t| t.matches(&form.token))
    {
        Some(Role::Operator)
    } else if server
        .viewer_token
        .as_ref()
        .is_some_and(|t| t.matches(&form.token))
    {
        Some(Role::Viewer)
    } else {
        None
    };
    let Some(role) = role else {
        if let Err(e) = app
            .store
            .console_sign_in_failed(&client, now_ms(), window_from)
        {
            tracing::error!(error = %e, "cannot count a failed sign-in");
        }
        tracing::warn!(client = %client, "console sign-in with a wrong token");
        let page = sign_in_page(&anonymous.csrf, Some("Wrong token."));
        return (StatusCode::UNAUTHORIZED, page).into_response();
    };
    if let Err(e) = app.store.console_sign_in_cleared(&client) {
        tracing::error!(error = %e, "cannot clear the sign-in rate limit");
    }
    if let Err(e) = app.store.console_session_delete(&anonymous.id_hash) {
        tracing::error!(error = %e, "cannot drop the anonymous console session");
    }
    let (session, id) = match open_session(&app, role, &client, SESSION_MS) {
        Ok(opened) => opened,
        Err(response) => return *response,
    };
    let current = Current { session };
    audit::record(
        &app,
        &current,
        "session.sign_in",
        "console",
        "ok",
        None,
        None,
    );
    tracing::info!(role = role.as_str(), client = %client, "console sign-in");
    (
        [(header::SET_COOKIE, cookie(&app, &id, SESSION_MS))],
        Redirect::to("/console/events"),
    )
        .into_response()
}

/// `POST /console/sign-out`.
pub async fn sign_out(
    State(app): State<Arc<App>>,
    Extension(current): Extension<Current>,
) -> Response {
    if let Err(e) = app.store.console_session_delete(&current.session.id_hash) {
        tracing::error!(error = %e, "cannot end a console session");
        return layout::storage_error();
    }
    audit::record(
        &app,
        &current,
        "session.sign_out",
        "console",
        "ok",
        None,
        None,
    );
    (
        [(header::SET_COOKIE, cookie(&app, "", 0))],
        Redirect::to("/console/sign-in"),
    )
        .into_response()
}

/// The session check, the CSRF check and the role check of every console route but the sign-in
/// page and the assets (see the module doc).
pub async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let sign_in = path == "/console/sign-in";
    let post = request.method() == Method::POST;
    // The sign-in page opens its own session; the assets are public.
    if !post && (sign_in || path.starts_with("/console/assets/")) {
        return next.run(request).await;
    }
    let session = session_of(&app, request.headers());
    let session = match session {
        Some(s) if sign_in || s.role != Role::Anonymous => s,
        // No session: the sign-in page (a form posted to it opens one with its token).
        _ => return Redirect::to("/console/sign-in").into_response(),
    };
    let current = Current { session };
    let mut request = request;
    if post {
        let limit = app.config.server.admin_max_upload_bytes;
        let (checked, given) = match csrf_of(request, limit).await {
            Ok(read) => read,
            Err(response) => return response,
        };
        let valid = given
            .as_deref()
            .is_some_and(|g| crate::secret::Secret::new(current.session.csrf.clone()).matches(g));
        if !valid {
            tracing::warn!(path = %path, role = current.role().as_str(), "console form without a valid CSRF token");
            return layout::refused(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from the console (missing or wrong CSRF token). Nothing was changed: reload the page and try again.",
            );
        }
        let operator_only = !sign_in && path != "/console/sign-out";
        if operator_only && current.role() != Role::Operator {
            tracing::warn!(path = %path, role = current.role().as_str(), "console: a viewer attempted an operator action");
            audit::record(
                &app,
                &current,
                &format!("POST {path}"),
                &path,
                "refused: viewers cannot act",
                None,
                None,
            );
            return layout::refused(
                StatusCode::FORBIDDEN,
                "Viewers can read the console but not act: sign in with the operator token. This attempt was written to the audit log.",
            );
        }
        request = checked;
    }
    request.extensions_mut().insert(current);
    next.run(request).await
}

/// Reads a POST body to find its `csrf` field (URL-encoded or multipart), and gives back the
/// request with the same body for the handler.
async fn csrf_of(request: Request, limit: usize) -> Result<(Request, Option<String>), Response> {
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // The largest form is a connector upload: over the admin API's upload limit is a 413.
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        layout::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form is larger than this host accepts.",
        )
    })?;
    let given = if content_type.starts_with("application/x-www-form-urlencoded") {
        url::form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
    } else if content_type.starts_with("multipart/form-data") {
        multipart_csrf(&content_type, bytes.clone()).await
    } else {
        None
    };
    Ok((Request::from_parts(parts, Body::from(bytes)), given))
}

/// The `csrf` field of a multipart body.
async fn multipart_csrf(content_type: &str, bytes: Bytes) -> Option<String> {
    let copy = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(bytes))
        .ok()?;
    let mut multipart = Multipart::from_request(copy, &()).await.ok()?;
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some("csrf") {
            return field.text().await.ok();
        }
    }
    None
}
