//! A small client for the parts of Lever's REST API v1 that the flow needs. API key auth (HTTP
//! Basic, key as user name), a static OAuth access token (Bearer), or the tokens of the host's
//! OAuth app ([`TokenSource`]: refreshed before expiry, and once on a 401). 429 and 5xx are
//! retried a few times with exponential backoff, honouring `Retry-After`; past that the error is
//! transient and the event is retried later. A 403 is never retried here: it names the
//! permission the call needs ([`permissions`]) and the event waits for someone to grant it.

use std::time::Duration;

use serde_json::Value;

use super::answers;
pub use super::answers::Opportunity;
pub use super::error::LeverError;
use super::oauth::TokenSource;
use super::permissions::{self, Endpoint};
use crate::config::{LeverAuth, Secret};
use crate::recording::{CallLog, CallTarget, OutboundCall};

/// Attempts per API call before giving the failure back to the worker.
const ATTEMPTS: u32 = 4;
/// Longest single wait between attempts.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// Longest part of Lever's own 403 message kept in the error.
const MAX_MESSAGE: usize = 200;

/// How a client authenticates.
#[derive(Clone)]
enum Credential {
    Basic(Secret),
    Bearer(Secret),
    /// The OAuth app's tokens of this integration.
    Tokens(TokenSource),
    /// `LeverAuth::OAuth` without a token source (should not happen: refused at build time).
    Missing,
}

/// Lever API client for one integration.
#[derive(Clone)]
pub struct LeverClient {
    http: reqwest::Client,
    base: Base,
    auth: Credential,
}

/// The API's base URL, parsed once: each call's URL is the base with its path and query set,
/// not a string parsed again (host and all) for the request and once more for its record.
#[derive(Clone)]
struct Base {
    text: String,
    parsed: Option<url::Url>,
}

impl Base {
    fn new(base: &str) -> Base {
        let text = base.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&text)
            .ok()
            .filter(|u| !u.cannot_be_a_base() && u.query().is_none() && u.fragment().is_none());
        Base { text, parsed }
    }

    /// The URL of `path` (`/x/y?query`) under the base; `Err` holds the text of one that does
    /// not parse (sent as is: the request fails as it always did).
    fn join(&self, path: &str) -> Result<url::Url, String> {
        let Some(base) = &self.parsed else {
            return Err(format!("{}{path}", self.text));
        };
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        let mut url = base.clone();
        url.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
        url.set_query(query);
        Ok(url)
    }
}

impl LeverClient {
    /// A client for `base` (e.g. `https://api.lever.co/v1`) authenticating with `auth`.
    pub fn new(http: reqwest::Client, base: &str, auth: LeverAuth) -> LeverClient {
        let auth = match auth {
            LeverAuth::ApiKey(key) => Credential::Basic(key),
            LeverAuth::Bearer(token) => Credential::Bearer(token),
            LeverAuth::OAuth => Credential::Missing,
        };
        LeverClient {
            http,
            base: Base::new(base),
            auth,
        }
    }

    /// A client authenticating with the OAuth app's tokens of one integration.
    pub fn with_tokens(http: reqwest::Client, base: &str, tokens: TokenSource) -> LeverClient {
        LeverClient {
            http,
            base: Base::new(base),
            auth: Credential::Tokens(tokens),
        }
    }

    /// A call's answer as JSON (`Null` when it is not JSON).
    async fn call(
        &self,
        endpoint: Endpoint,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, LeverError> {
        let bytes = self.call_bytes(endpoint, method, path, body).await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A call's answer as it came: the caller reads only the fields it needs.
    async fn call_bytes(
        &self,
        endpoint: Endpoint,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<bytes::Bytes, LeverError> {
        let url = self.base.join(path);
        let mut wait = Duration::from_millis(250);
        let mut last = String::new();
        // Once per call: a 401 on an OAuth token refreshes it and tries again at once.
        let mut refreshed_on_401 = false;
        let mut attempt = 0;
        // Notes and links are not idempotent at Lever: after a lost answer (5xx, timeout)
        // another POST could add one twice. They are tried once; the event's retry checks what
        // Lever kept (the opportunity's links, an attempted note) before writing again.
        let attempts = if endpoint == permissions::ADD_NOTE || endpoint == permissions::ADD_LINKS {
            1
        } else {
            ATTEMPTS
        };
        while attempt < attempts {
            attempt += 1;
            let req = match &url {
                Ok(url) => self.http.request(method.clone(), url.clone()),
                Err(text) => self.http.request(method.clone(), text.as_str()),
            };
            let mut bearer = None;
            let mut req = match &self.auth {
                Credential::Basic(key) => req.basic_auth(key.expose(), Some("")),
                Credential::Bearer(token) => req.bearer_auth(token.expose()),
                Credential::Tokens(source) => {
                    let token = source.access_token().await?;
                    let req = req.bearer_auth(token.expose());
                    bearer = Some(token);
                    req
                }
                Credential::Missing => {
                    return Err(LeverError::Disconnected("no OAuth app configured".into()))
                }
            }
            .timeout(Duration::from_secs(15));
            if let Some(body) = body {
                req = req.json(body);
            }
            let started_at_ms = crate::clock::now_ms();
            let sent = req.send().await;
            // For the operators' view of the event (no header, no body: the URL, masked).
            if let Some(log) = CallLog::current() {
                let outcome = match &sent {
                    Ok(resp) => Ok(resp.status().as_u16()),
                    Err(e) if e.is_timeout() => Err("timeout".to_string()),
                    Err(e) if e.is_connect() => Err("cannot connect".to_string()),
                    Err(_) => Err("request failed".to_string()),
                };
                let method = method.as_str();
                log.record(match &url {
                    Ok(url) => {
                        OutboundCall::ended_at(CallTarget::Ats, method, url, started_at_ms, outcome)
                    }
                    Err(text) => {
                        OutboundCall::ended(CallTarget::Ats, method, text, started_at_ms, outcome)
                    }
                });
            }
            match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = resp.bytes().await.unwrap_or_default();
                    let text = || String::from_utf8_lossy(&body);
                    match status {
                        200..=299 => return Ok(body),
                        401 => {
                            if let (Credential::Tokens(source), Some(used)) = (&self.auth, &bearer)
                            {
                                if refreshed_on_401 {
                                    return Err(source.rejected_after_refresh());
                                }
                                source.after_unauthorized(used).await?;
                                refreshed_on_401 = true;
                                attempt -= 1;
                                continue;
                            }
                            return Err(LeverError::Unauthorized(status));
                        }
                        403 => return Err(forbidden(endpoint, &text())),
                        429 | 500..=599 => {
                            last = format!("{status} on {method} {path}");
                            if let Some(ra) = retry_after {
                                wait = ra.min(MAX_WAIT);
                            }
                        }
                        _ => {
                            let message = serde_json::from_slice::<Value>(&body)
                                .ok()
                                .and_then(|v| v["message"].as_str().map(str::to_string))
                                .unwrap_or_else(|| text().into_owned());
                            return Err(LeverError::Rejected { status, message });
                        }
                    }
                }
                Err(e) => last = format!("{method} {path}: {}", e.without_url()),
            }
            if attempt < attempts {
                tracing::debug!(%last, attempt, "Lever call failed, backing off");
                let jitter = rand::random::<f64>() * 0.2 + 0.9;
                tokio::time::sleep(wait.mul_f64(jitter)).await;
                wait = (wait * 2).min(MAX_WAIT);
            }
        }
        Err(LeverError::Transient(last))
    }

    /// `GET /opportunities/:id?expand=applications`, its answer read straight into the
    /// fields used ([`answers::OpportunityAnswer`]).
    pub async fn opportunity(&self, id: &str) -> Result<Opportunity, LeverError> {
        let body = self
            .call_bytes(
                permissions::GET_OPPORTUNITY,
                reqwest::Method::GET,
                &format!("/opportunities/{id}?expand=applications"),
                None,
            )
            .await?;
        Ok(answers::opportunity(&body, id))
    }

    /// `GET /postings/:id` → its name (`text`) and tags.
    pub async fn posting(&self, id: &str) -> Result<(Option<String>, Vec<String>), LeverError> {
        let v = self
            .call(
                permissions::GET_POSTING,
                reqwest::Method::GET,
                &format!("/postings/{id}"),
                None,
            )
            .await?;
        let text = v["data"]["text"].as_str().map(str::to_string);
        let tags = v["data"]["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok((text, tags))
    }

    /// `GET /stages`, every page: (id, name) pairs.
    pub async fn stages(&self) -> Result<Vec<(String, String)>, LeverError> {
        self.every_page(permissions::LIST_STAGES, "/stages").await
    }

    /// `GET /postings`, every page: (id, name) pairs, for the console's rule picker.
    pub async fn postings(&self) -> Result<Vec<(String, String)>, LeverError> {
        self.every_page(permissions::LIST_POSTINGS, "/postings")
            .await
    }

    /// Every page of a list of `{id, text}` items at `path`.
    async fn every_page(
        &self,
        endpoint: Endpoint,
        path: &str,
    ) -> Result<Vec<(String, String)>, LeverError> {
        let mut out = Vec::new();
        let mut offset: Option<String> = None;
        // Bounded: Lever pipelines have tens of stages, accounts hundreds of postings.
        for _ in 0..50 {
            let page = match &offset {
                // Lever's `next` is an opaque token.
                Some(o) => format!(
                    "{path}?limit=100&offset={}",
                    url::form_urlencoded::byte_serialize(o.as_bytes()).collect::<String>()
                ),
                None => format!("{path}?limit=100"),
            };
            let v = self
                .call(endpoint, reqwest::Method::GET, &page, None)
                .await?;
            for s in v["data"].as_array().into_iter().flatten() {
                if let (Some(id), Some(text)) = (s["id"].as_str(), s["text"].as_str()) {
                    out.push((id.to_string(), text.to_string()));
                }
            }
            match (v["hasNext"].as_bool(), v["next"].as_str()) {
                (Some(true), Some(next)) => offset = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// `POST /opportunities/:id/addTags`.
    pub async fn add_tags(&self, id: &str, tags: &[String]) -> Result<(), LeverError> {
        self.post(
            permissions::ADD_TAGS,
            &format!("/opportunities/{id}/addTags"),
            serde_json::json!({ "tags": tags }),
        )
        .await
    }

    /// `POST /opportunities/:id/removeTags`.
    pub async fn remove_tags(&self, id: &str, tags: &[String]) -> Result<(), LeverError> {
        self.post(
            permissions::REMOVE_TAGS,
            &format!("/opportunities/{id}/removeTags"),
            serde_json::json!({ "tags": tags }),
        )
        .await
    }

    /// `POST /opportunities/:id/addLinks`.
    pub async fn add_links(&self, id: &str, links: &[String]) -> Result<(), LeverError> {
        self.post(
            permissions::ADD_LINKS,
            &format!("/opportunities/{id}/addLinks"),
            serde_json::json!({ "links": links }),
        )
        .await
    }

    /// `GET /opportunities/:id/notes` → the text of each note (the first 100). Read only to
    /// learn whether an interrupted write of ours was kept.
    pub async fn note_texts(&self, id: &str) -> Result<Vec<String>, LeverError> {
        let v = self
            .call(
                permissions::LIST_NOTES,
                reqwest::Method::GET,
                &format!("/opportunities/{id}/notes?limit=100"),
                None,
            )
            .await?;
        Ok(v["data"]
            .as_array()
            .map(|notes| {
                notes
                    .iter()
                    .filter_map(|n| n["value"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `POST /opportunities/:id/notes`.
    pub async fn add_note(&self, id: &str, text: &str, secret: bool) -> Result<(), LeverError> {
        self.post(
            permissions::ADD_NOTE,
            &format!("/opportunities/{id}/notes"),
            serde_json::json!({ "value": text, "secret": secret, "notifyFollowers": false }),
        )
        .await
    }

    async fn post(&self, endpoint: Endpoint, path: &str, body: Value) -> Result<(), LeverError> {
        self.call(endpoint, reqwest::Method::POST, path, Some(&body))
            .await
            .map(|_| ())
    }
}

/// The error for a 403 on `endpoint`: the permission it needs, and Lever's message (shortened;
/// it never holds the credential).
fn forbidden(endpoint: Endpoint, body: &str) -> LeverError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string());
    LeverError::Forbidden {
        call: endpoint.label,
        permission: endpoint.permission,
        message: message.chars().take(MAX_MESSAGE).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_403_names_the_call_and_its_permission_and_keeps_lever_s_message_short() {
        let body =
            r#"{"code":"Forbidden","message":"Missing required permission: postings:read:admin"}"#;
        let e = forbidden(permissions::GET_POSTING, body);
        let text = e.to_string();
        assert!(text.contains("GET /postings/:id"), "{text}");
        assert!(
            text.contains("lacks permission postings:read:admin"),
            "{text}"
        );
        assert!(text.ends_with("Lever said: Missing required permission: postings:read:admin"));
        assert!(!e.retryable());
        // Not JSON: the text itself, cut.
        let LeverError::Forbidden { message, .. } =
            forbidden(permissions::ADD_NOTE, &"x".repeat(5_000))
        else {
            panic!("a 403 is Forbidden");
        };
        assert_eq!(message.len(), MAX_MESSAGE);
    }
}
