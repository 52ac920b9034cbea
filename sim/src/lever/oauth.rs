//! Lever's OAuth authorization server (authorization-code flow, Auth0-style) as partner apps use
//! it: `/oauth/authorize`, `/oauth/token`, `/oauth/revoke`, and the access-token check the API
//! gate relies on. The protocol is documented in the parent module.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Shared;
use crate::http_util;

/// The scope that makes the token endpoint issue a refresh token.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Default lifetime of an access token (Lever: 3600 s).
pub(super) const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(3600);
/// Default lifetime of an authorization code.
pub(super) const DEFAULT_CODE_TTL: Duration = Duration::from_secs(60);

/// One request to `/oauth/authorize` whose client and redirect URI were valid, as recorded by
/// the simulator (see [`super::LeverSim::authorize_requests`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    /// The client that asked.
    pub client_id: String,
    /// The redirect URI it gave (equal to the registered one).
    pub redirect_uri: String,
    /// `response_type` as given (only `code` is accepted).
    pub response_type: Option<String>,
    /// The requested scopes, split on spaces, in the order given.
    pub scopes: Vec<String>,
    /// `state` as given.
    pub state: Option<String>,
    /// `audience` as given (recorded, not enforced).
    pub audience: Option<String>,
    /// `code` (the user accepted), `access_denied` (the user denied) or another RFC 6749 error
    /// code sent back to the redirect URI.
    pub outcome: String,
}

/// Requests to `/oauth/token` so far, by grant type (see [`super::LeverSim::token_requests`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequests {
    /// `grant_type=authorization_code`, refused ones included.
    pub authorization_code: usize,
    /// `grant_type=refresh_token`, refused ones included.
    pub refresh_token: usize,
    /// Any other or missing grant type.
    pub other: usize,
    /// Of all the above, how many were answered with an error (400 or 401).
    pub refused: usize,
}

struct Client {
    secret: String,
    redirect_uri: String,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    scope: String,
    expires: Instant,
    used: bool,
}

/// What the user authorized once (one code exchange); every token issued from it points here, so
/// revoking the grant kills them all.
struct Grant {
    client_id: String,
    scope: String,
    offline: bool,
    revoked: bool,
}

struct Access {
    grant: u64,
    expires: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RefreshState {
    Active,
    /// Exchanged once already: rotation made it useless.
    Rotated,
}

struct Refresh {
    grant: u64,
    state: RefreshState,
}

/// The authorization server's state; lives inside the simulator's state, under its lock.
pub(super) struct OAuth {
    clients: HashMap<String, Client>,
    codes: HashMap<String, Code>,
    grants: HashMap<u64, Grant>,
    next_grant: u64,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    pub(super) access_ttl: Duration,
    pub(super) code_ttl: Duration,
    pub(super) user_denies: bool,
    pub(super) authorize_log: Vec<AuthorizeRequest>,
    pub(super) token_requests: TokenRequests,
}

impl Default for OAuth {
    fn default() -> Self {
        OAuth {
            clients: HashMap::new(),
            codes: HashMap::new(),
            grants: HashMap::new(),
            next_grant: 1,
            access: HashMap::new(),
            refresh: HashMap::new(),
            access_ttl: DEFAULT_ACCESS_TTL,
            code_ttl: DEFAULT_CODE_TTL,
            user_denies: false,
            authorize_log: Vec::new(),
            token_requests: TokenRequests::default(),
        }
    }
}

impl OAuth {
    /// Registers a client and returns `(client_id, client_secret)`.
    pub(super) fn register(&mut self, redirect_uri: &str) -> (String, String) {
        let id = http_util::random_alnum(32);
        let secret = http_util::random_alnum(64);
        self.clients.insert(
            id.clone(),
            Client {
                secret: secret.clone(),
                redirect_uri: redirect_uri.to_string(),
            },
        );
        (id, secret)
    }

    /// The scope string granted to `token` while it is an issued access token that has not
    /// expired and whose grant is not revoked; `None` otherwise.
    pub(super) fn access_token_scope(&self, token: &str) -> Option<&str> {
        let access = self.access.get(token)?;
        let grant = self.grants.get(&access.grant)?;
        (Instant::now() < access.expires && !grant.revoked).then_some(grant.scope.as_str())
    }

    /// Every access token issued so far expires now (refresh tokens keep working).
    pub(super) fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        for a in self.access.values_mut() {
            a.expires = now;
        }
    }

    /// Revokes every grant of `client_id`; returns how many were still active.
    pub(super) fn revoke_client(&mut self, client_id: &str) -> usize {
        let mut n = 0;
        for g in self.grants.values_mut() {
            if g.client_id == client_id && !g.revoked {
                g.revoked = true;
                n += 1;
            }
        }
        n
    }

    /// A fresh access token (and, for offline grants, a fresh refresh token) for `grant`, as the
    /// token endpoint's JSON answer.
    fn issue(&mut self, grant_id: u64) -> Value {
        let Some(grant) = self.grants.get(&grant_id) else {
            return json!({});
        };
        let (scope, offline) = (grant.scope.clone(), grant.offline);
        let access = http_util::random_alnum(48);
        self.access.insert(
            access.clone(),
            Access {
                grant: grant_id,
                expires: Instant::now() + self.access_ttl,
            },
        );
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl.as_secs(),
            "scope": scope,
        });
        if offline {
            let refresh = http_util::random_alnum(48);
            self.refresh.insert(
                refresh.clone(),
                Refresh {
                    grant: grant_id,
                    state: RefreshState::Active,
                },
            );
            body["refresh_token"] = json!(refresh);
        }
        body
    }

    fn grant_of(&self, token: &str) -> Option<u64> {
        self.access
            .get(token)
            .map(|a| a.grant)
            .or_else(|| self.refresh.get(token).map(|r| r.grant))
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/oauth/authorize", get(authorize))
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
}

type Shr = State<Arc<Shared>>;

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The page the user's browser shows when the request is too broken to redirect back.
fn error_page(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<!doctype html>\n<html><head><title>Authorization error</title></head>\
             <body><h1>Oops, something went wrong</h1><p>{message}</p></body></html>\n"
        )),
    )
        .into_response()
}

/// `302` to `redirect_uri` with `pairs` added to its query.
fn redirect(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page("The registered redirect_uri is not a valid URL.");
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
    }
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => error_page("The redirect URL is not a valid header value."),
    }
}

async fn authorize(State(shared): Shr, Query(q): Query<Vec<(String, String)>>) -> Response {
    let mut st = shared.lock();
    let oauth = &mut st.oauth;
    let Some(client_id) = param(&q, "client_id") else {
        return error_page("Missing client_id.");
    };
    let Some(client) = oauth.clients.get(client_id) else {
        return error_page("Unknown client.");
    };
    // Exact match only: a mismatch must never redirect (open-redirect protection).
    let redirect_uri = client.redirect_uri.clone();
    if param(&q, "redirect_uri") != Some(redirect_uri.as_str()) {
        return error_page("The redirect_uri does not match the one registered for this client.");
    }
    let state = param(&q, "state");
    let scope = param(&q, "scope").unwrap_or_default().to_string();
    let response_type = param(&q, "response_type");
    let outcome = if response_type != Some("code") {
        "unsupported_response_type"
    } else if oauth.user_denies {
        "access_denied"
    } else {
        "code"
    };
    oauth.authorize_log.push(AuthorizeRequest {
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.clone(),
        response_type: response_type.map(str::to_string),
        scopes: scope.split_whitespace().map(str::to_string).collect(),
        state: state.map(str::to_string),
        audience: param(&q, "audience").map(str::to_string),
        outcome: outcome.to_string(),
    });
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let code;
    match outcome {
        "code" => {
            code = http_util::random_alnum(32);
            oauth.codes.insert(
                code.clone(),
                Code {
                    client_id: client_id.to_string(),
                    redirect_uri: redirect_uri.clone(),
                    scope,
                    expires: Instant::now() + oauth.code_ttl,
                    used: false,
                },
            );
            pairs.push(("code", &code));
        }
        "access_denied" => {
            pairs.push(("error", "access_denied"));
            pairs.push(("error_description", "The user denied access to the app."));
        }
        other => {
            pairs.push(("error", other));
            pairs.push(("error_description", "Only response_type=code is supported."));
        }
    }
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    tracing::debug!(outcome, "lever sim: authorize");
    redirect(&redirect_uri, &pairs)
}

/// An RFC 6749 §5.2 error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"lever\""),
        );
    }
    resp
}

/// A refused grant, before it becomes an [`oauth_error`] answer.
struct Refusal {
    error: &'static str,
    description: &'static str,
}

fn invalid_grant(description: &'static str) -> Refusal {
    Refusal {
        error: "invalid_grant",
        description,
    }
}

fn invalid_request(description: &'static str) -> Refusal {
    Refusal {
        error: "invalid_request",
        description,
    }
}

/// The parameters of a token or revoke request: a JSON object when the content type says JSON,
/// else `application/x-www-form-urlencoded`.
fn body_params(headers: &HeaderMap, body: &Bytes) -> Result<HashMap<String, String>, String> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if json {
        let obj: serde_json::Map<String, Value> =
            serde_json::from_slice(body).map_err(|e| format!("Invalid JSON body: {e}"))?;
        Ok(obj
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })
            .collect())
    } else {
        Ok(url::form_urlencoded::parse(body).into_owned().collect())
    }
}

/// Decodes one `application/x-www-form-urlencoded` value (RFC 6749 §2.3.1 encodes the client id
/// and secret that way before HTTP Basic).
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The client credentials: HTTP Basic if present (what oauth2 crates send by default), else
/// `client_id` / `client_secret` in the body.
fn client_credentials(
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Option<(String, String)> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        return Some((form_decode(id), form_decode(secret)));
    }
    Some((
        params.get("client_id")?.clone(),
        params.get("client_secret")?.clone(),
    ))
}

/// Authenticates the client of a token or revoke request; the error is the 401 to answer.
fn authenticate(
    oauth: &OAuth,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<String, Box<Response>> {
    let refused = || {
        Box::new(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        ))
    };
    let (id, secret) = client_credentials(headers, params).ok_or_else(refused)?;
    match oauth.clients.get(&id) {
        Some(client) if client.secret == secret => Ok(id),
        _ => Err(refused()),
    }
}

async fn token(State(shared): Shr, headers: HeaderMap, body: Bytes) -> Response {
    let params = body_params(&headers, &body);
    let mut st = shared.lock();
    let oauth = &mut st.oauth;
    let grant_type = params
        .as_ref()
        .ok()
        .and_then(|p| p.get("grant_type"))
        .cloned();
    match grant_type.as_deref() {
        Some("authorization_code") => oauth.token_requests.authorization_code += 1,
        Some("refresh_token") => oauth.token_requests.refresh_token += 1,
        _ => oauth.token_requests.other += 1,
    }
    let resp = match params {
        Ok(params) => token_answer(oauth, &headers, &params, grant_type.as_deref()),
        Err(msg) => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &msg),
    };
    if resp.status() != StatusCode::OK {
        oauth.token_requests.refused += 1;
    }
    tracing::debug!(grant_type = ?grant_type, status = %resp.status(), "lever sim: token");
    resp
}

fn token_answer(
    oauth: &mut OAuth,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    grant_type: Option<&str>,
) -> Response {
    let client_id = match authenticate(oauth, headers, params) {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let answer = match grant_type {
        Some("authorization_code") => exchange_code(oauth, &client_id, params),
        Some("refresh_token") => refresh(oauth, &client_id, params),
        Some(_) => Err(Refusal {
            error: "unsupported_grant_type",
            description: "grant_type must be authorization_code or refresh_token.",
        }),
        None => Err(invalid_request("Missing grant_type.")),
    };
    match answer {
        Ok(body) => {
            let mut resp = (StatusCode::OK, Json(body)).into_response();
            let h = resp.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            resp
        }
        Err(r) => oauth_error(StatusCode::BAD_REQUEST, r.error, r.description),
    }
}

fn exchange_code(
    oauth: &mut OAuth,
    client_id: &str,
    params: &HashMap<String, String>,
) -> Result<Value, Refusal> {
    let Some(code) = params.get("code") else {
        return Err(invalid_request("Missing code."));
    };
    let Some(entry) = oauth.codes.get_mut(code) else {
        return Err(invalid_grant("Invalid authorization code."));
    };
    if entry.used {
        return Err(invalid_grant("The authorization code was already used."));
    }
    if Instant::now() >= entry.expires {
        return Err(invalid_grant("The authorization code has expired."));
    }
    if entry.client_id != client_id {
        return Err(invalid_grant(
            "The authorization code was issued to another client.",
        ));
    }
    if params.get("redirect_uri") != Some(&entry.redirect_uri) {
        return Err(invalid_grant(
            "redirect_uri does not match the one of the authorization request.",
        ));
    }
    entry.used = true;
    let scope = entry.scope.clone();
    let grant_id = oauth.next_grant;
    oauth.next_grant += 1;
    oauth.grants.insert(
        grant_id,
        Grant {
            client_id: client_id.to_string(),
            offline: scope.split_whitespace().any(|s| s == OFFLINE_ACCESS),
            scope,
            revoked: false,
        },
    );
    Ok(oauth.issue(grant_id))
}

fn refresh(
    oauth: &mut OAuth,
    client_id: &str,
    params: &HashMap<String, String>,
) -> Result<Value, Refusal> {
    let Some(token) = params.get("refresh_token") else {
        return Err(invalid_request("Missing refresh_token."));
    };
    let Some(entry) = oauth.refresh.get(token) else {
        return Err(invalid_grant("Unknown or invalid refresh token."));
    };
    let grant_id = entry.grant;
    let Some(grant) = oauth.grants.get(&grant_id) else {
        return Err(invalid_grant("Unknown or invalid refresh token."));
    };
    if grant.client_id != client_id {
        return Err(invalid_grant(
            "The refresh token was issued to another client.",
        ));
    }
    if grant.revoked {
        return Err(invalid_grant("The refresh token has been revoked."));
    }
    if entry.state == RefreshState::Rotated {
        return Err(invalid_grant(
            "The refresh token was already used (rotated): use the newest one.",
        ));
    }
    if let Some(entry) = oauth.refresh.get_mut(token) {
        entry.state = RefreshState::Rotated;
    }
    Ok(oauth.issue(grant_id))
}

async fn revoke(State(shared): Shr, headers: HeaderMap, body: Bytes) -> Response {
    let params = match body_params(&headers, &body) {
        Ok(p) => p,
        Err(msg) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &msg),
    };
    let mut st = shared.lock();
    let oauth = &mut st.oauth;
    let client_id = match authenticate(oauth, &headers, &params) {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let Some(token) = params.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing token.");
    };
    // RFC 7009 §2.2: an unknown token is not an error.
    if let Some(grant) = oauth
        .grant_of(token)
        .and_then(|id| oauth.grants.get_mut(&id))
    {
        if grant.client_id != client_id {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "The token was issued to another client.",
            );
        }
        grant.revoked = true;
    }
    tracing::debug!("lever sim: revoke");
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decode_handles_escapes() {
        assert_eq!(form_decode("abc"), "abc");
        assert_eq!(form_decode("a%3Ab+c"), "a:b c");
        assert_eq!(form_decode("x=y"), "x=y");
    }
}
