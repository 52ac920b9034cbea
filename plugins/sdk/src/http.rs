//! Calling a vendor over the host's `outbound-http` import: a request builder with JSON, and
//! [`HttpFailure`], which maps every way a call can fail onto the contract's [`ConnectorError`]
//! kinds (`config`: the operator must fix something; `transient`: the host retries later;
//! `rejected`: permanently unacceptable).
//!
//! ```ignore
//! let found: Invitations = Request::get(format!("{base}/invitations?reference={}", urlencode(key)))
//!     .bearer(&api_key)
//!     .send_json(host)
//!     .map_err(|f| f.to_error("Acme"))?;
//! ```
//!
//! Vendor error text quoted in an error is bounded and scrubbed of the request's credentials
//! (the [`Request::bearer`] token and [`Request::secret_header`] values).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::text::{scrub, truncate};
use crate::{ConnectorError, Host, HttpError, HttpResponse, OutgoingRequest};

/// Longest vendor detail [`HttpFailure::to_error`] quotes, in characters.
pub const MAX_DETAIL_CHARS: usize = 200;

/// An outgoing request being built. Header names are stored lower-case; setting a header again
/// replaces it.
#[derive(Clone)]
pub struct Request {
    request: OutgoingRequest,
    /// Credentials sent with the request, scrubbed from any vendor text we quote.
    secrets: Vec<String>,
    /// Why the body could not be encoded, reported by `send`.
    encode_error: Option<String>,
}

impl fmt::Debug for Request {
    /// Method and URL only: headers may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Request({} {})", self.request.method, self.request.url)
    }
}

impl Request {
    /// A request with any method (`GET`, `POST`, ...) to an absolute `http(s)` URL.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Request {
            request: OutgoingRequest {
                method: method.to_ascii_uppercase(),
                url: url.into(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: None,
            },
            secrets: Vec::new(),
            encode_error: None,
        }
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// `POST url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// `PUT url`.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new("PUT", url)
    }

    /// `PATCH url`.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new("PATCH", url)
    }

    /// `DELETE url`.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new("DELETE", url)
    }

    /// Sets header `name` (replacing an earlier value).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        let name = name.to_ascii_lowercase();
        self.request.headers.retain(|(k, _)| *k != name);
        self.request.headers.push((name, value.into()));
        self
    }

    /// Sets a header whose value is a credential: it is scrubbed from vendor text in errors.
    pub fn secret_header(mut self, name: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        self.secrets.push(value.clone());
        self.header(name, value)
    }

    /// `Authorization: Bearer <token>` (the token trimmed, and treated as a secret).
    pub fn bearer(mut self, token: &str) -> Self {
        let token = token.trim();
        self.secrets.push(token.to_string());
        self.header("authorization", format!("Bearer {token}"))
    }

    /// A JSON body (`content-type: application/json`). Encoding failures surface from `send`.
    pub fn json<T: Serialize + ?Sized>(self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.body("application/json", bytes),
            Err(e) => Request {
                encode_error: Some(e.to_string()),
                ..self
            },
        }
    }

    /// A raw body with its content type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.request.body = body.into();
        self.header("content-type", content_type)
    }

    /// The per-request timeout (the host applies its own cap as well).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.request.timeout_ms = Some(ms);
        self
    }

    /// The request as it will be sent.
    pub fn outgoing(&self) -> &OutgoingRequest {
        &self.request
    }

    /// Sends it. Any HTTP response is `Ok`, whatever its status; only a request that got no
    /// response (or could not be built) fails.
    pub fn send(self, host: &impl Host) -> Result<HttpResponse, HttpFailure> {
        if let Some(e) = self.encode_error {
            return Err(HttpFailure::new(HttpFailureKind::Encode(e), self.secrets));
        }
        host.send(&self.request)
            .map_err(|e| HttpFailure::new(HttpFailureKind::Transport(e), self.secrets.clone()))
    }

    /// Sends it and requires a 2xx answer (anything else is [`HttpFailureKind::Status`]).
    pub fn send_ok(self, host: &impl Host) -> Result<HttpResponse, HttpFailure> {
        let secrets = self.secrets.clone();
        let response = self.send(host)?;
        if response.is_success() {
            Ok(response)
        } else {
            Err(HttpFailure::new(
                HttpFailureKind::Status {
                    status: response.status,
                    body: response.body,
                },
                secrets,
            ))
        }
    }

    /// Sends it (with `accept: application/json` unless set), requires a 2xx answer and decodes
    /// its JSON body as `T` (a body that does not decode is [`HttpFailureKind::Decode`]).
    pub fn send_json<T: DeserializeOwned>(self, host: &impl Host) -> Result<T, HttpFailure> {
        let has_accept = self.request.headers.iter().any(|(k, _)| k == "accept");
        let request = if has_accept {
            self
        } else {
            self.header("accept", "application/json")
        };
        let secrets = request.secrets.clone();
        let response = request.send_ok(host)?;
        serde_json::from_slice(&response.body).map_err(|e| {
            HttpFailure::new(
                HttpFailureKind::Decode {
                    status: response.status,
                    error: e.to_string(),
                },
                secrets,
            )
        })
    }
}

/// What went wrong with a vendor call.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpFailureKind {
    /// No response: denied by the host, timed out, connection failed, or malformed.
    Transport(HttpError),
    /// The vendor answered with a status that is not 2xx (from `send_ok` / `send_json`).
    Status {
        /// The HTTP status.
        status: u16,
        /// The vendor's body, as sent.
        body: Vec<u8>,
    },
    /// A 2xx answer whose body is not the JSON we expected (from `send_json`).
    Decode {
        /// The HTTP status.
        status: u16,
        /// The decoding error.
        error: String,
    },
    /// The request body could not be encoded (nothing was sent).
    Encode(String),
}

/// A failed vendor call: what went wrong, plus the request's credentials so that quoted vendor
/// text can be scrubbed (they never appear in `Debug` or `Display`).
#[derive(Clone)]
pub struct HttpFailure {
    kind: HttpFailureKind,
    secrets: Vec<String>,
}

impl HttpFailure {
    /// A failure of this kind for a request that carried `secrets`.
    pub fn new(kind: HttpFailureKind, secrets: Vec<String>) -> Self {
        HttpFailure { kind, secrets }
    }

    /// A failure from a response the caller found unacceptable (e.g. after [`Request::send`]).
    pub fn from_response(response: HttpResponse) -> Self {
        Self::new(
            HttpFailureKind::Status {
                status: response.status,
                body: response.body,
            },
            Vec::new(),
        )
    }

    /// What went wrong.
    pub fn kind(&self) -> &HttpFailureKind {
        &self.kind
    }

    /// The vendor's HTTP status, when it answered.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            HttpFailureKind::Status { status, .. } | HttpFailureKind::Decode { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The vendor's error text (see [`error_detail`]), bounded and scrubbed; empty when the
    /// vendor did not answer.
    pub fn detail(&self) -> String {
        match &self.kind {
            HttpFailureKind::Status { body, .. } => {
                error_detail(body, &self.secrets, MAX_DETAIL_CHARS)
            }
            _ => String::new(),
        }
    }

    /// Whether the vendor may have acted on the request (e.g. placed the order) even though the
    /// call failed: true for timeouts, connection failures, 2xx answers we could not read, and
    /// statuses per [`status_may_have_acted`]; false when the request never left or the vendor
    /// refused it.
    pub fn may_have_acted(&self) -> bool {
        match &self.kind {
            HttpFailureKind::Transport(HttpError::Denied(_)) | HttpFailureKind::Encode(_) => false,
            // `invalid` also covers a response over the host's size cap, which was processed.
            HttpFailureKind::Transport(_) | HttpFailureKind::Decode { .. } => true,
            HttpFailureKind::Status { status, .. } => status_may_have_acted(*status),
        }
    }

    /// The contract error for this failure, naming `vendor` (e.g. `"Certn"`): denied or invalid
    /// requests and 401/403 are `config`; timeouts, connection failures, 408, 425, 429, 5xx and
    /// unreadable answers are `transient`; other statuses and unencodable bodies are `rejected`.
    pub fn to_error(&self, vendor: &str) -> ConnectorError {
        match &self.kind {
            HttpFailureKind::Transport(e) => transport_error(e, vendor),
            HttpFailureKind::Status { status, .. } => {
                let (status, detail) = (*status, self.detail());
                match status {
                    401 | 403 => ConnectorError::Config(format!(
                        "{vendor} refused the credentials ({status}): {detail}"
                    )),
                    408 | 425 | 429 | 500..=599 => {
                        ConnectorError::Transient(format!("{vendor} answered {status}: {detail}"))
                    }
                    _ => ConnectorError::Rejected(format!(
                        "{vendor} refused the request ({status}): {detail}"
                    )),
                }
            }
            HttpFailureKind::Decode { status, error } => ConnectorError::Transient(format!(
                "{vendor} answered {status} with a body we could not read: {}",
                truncate(error, MAX_DETAIL_CHARS)
            )),
            HttpFailureKind::Encode(e) => {
                ConnectorError::Rejected(format!("could not encode the request to {vendor}: {e}"))
            }
        }
    }
}

impl fmt::Debug for HttpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFailure")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_error("the vendor").message())
    }
}

/// The contract error for a request that got no response, naming `vendor`.
pub fn transport_error(error: &HttpError, vendor: &str) -> ConnectorError {
    match error {
        HttpError::Timeout => ConnectorError::Transient(format!("{vendor} did not answer in time")),
        HttpError::Connection(m) => {
            ConnectorError::Transient(format!("could not reach {vendor}: {m}"))
        }
        HttpError::Denied(m) => {
            ConnectorError::Config(format!("outbound request to {vendor} denied: {m}"))
        }
        HttpError::Invalid(m) => {
            ConnectorError::Config(format!("invalid request to {vendor}: {m}"))
        }
    }
}

/// Whether a vendor that answered `status` may have acted on the request: 2xx, 409 (conflict:
/// something exists) and server errors other than 503 (the work may have been done before the
/// failure) may have; 503, 408, 425, 429 and other 4xx refused it.
pub fn status_may_have_acted(status: u16) -> bool {
    match status {
        200..=299 | 409 => true,
        503 => false,
        500..=599 => true,
        _ => false,
    }
}

/// A short, human-readable detail from a vendor's error body: the `detail`, `error` or `message`
/// string of a JSON object, or its field errors (`email: Enter a valid email address.`), or the
/// raw text; with `secrets` redacted, at most `max` characters, and `no detail` when empty.
pub fn error_detail(body: &[u8], secrets: &[String], max: usize) -> String {
    use serde_json::Value;
    fn flatten(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(flatten).collect::<Vec<_>>().join(" "),
            Value::Object(map) => match ["detail", "error", "message"]
                .iter()
                .find_map(|k| map.get(*k).and_then(Value::as_str))
            {
                Some(text) => text.to_string(),
                None => map
                    .iter()
                    .map(|(field, v)| format!("{field}: {}", flatten(v)))
                    .collect::<Vec<_>>()
                    .join("; "),
            },
            other => other.to_string(),
        }
    }
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => flatten(&v),
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    let text = scrub(&text, secrets);
    if text.trim().is_empty() {
        "no detail".to_string()
    } else {
        truncate(&text, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;
    use serde::Deserialize;

    const URL: &str = "https://api.example.com/things";

    #[derive(Debug, Deserialize, PartialEq)]
    struct Thing {
        id: String,
    }

    #[test]
    fn builds_json_requests_with_credentials() {
        let host = FakeHost::new();
        host.respond("POST", URL, 201, r#"{"id":"t-1"}"#);
        let thing: Thing = Request::post(URL)
            .bearer(" key_1 ")
            .header("Idempotency-Key", "k")
            .json(&serde_json::json!({"a": 1}))
            .timeout_ms(5_000)
            .send_json(&host)
            .unwrap();
        assert_eq!(thing, Thing { id: "t-1".into() });
        let sent = &host.requests()[0];
        assert_eq!(sent.method, "POST");
        assert_eq!(sent.body, br#"{"a":1}"#);
        assert_eq!(sent.timeout_ms, Some(5_000));
        let h = |n: &str| crate::text::header(&sent.headers, n).map(str::to_string);
        assert_eq!(h("authorization").as_deref(), Some("Bearer key_1"));
        assert_eq!(h("idempotency-key").as_deref(), Some("k"));
        assert_eq!(h("content-type").as_deref(), Some("application/json"));
        assert_eq!(h("accept").as_deref(), Some("application/json"));
    }

    fn failure(status: u16, body: &str) -> HttpFailure {
        let host = FakeHost::new();
        host.respond("GET", URL, status, body);
        Request::get(URL)
            .bearer("sk_live_9")
            .send_json::<Thing>(&host)
            .unwrap_err()
    }

    #[test]
    fn statuses_map_to_error_kinds() {
        let kind = |s: u16| failure(s, "").to_error("Acme").kind();
        assert_eq!(kind(401), "config");
        assert_eq!(kind(403), "config");
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert_eq!(kind(s), "transient", "{s}");
        }
        for s in [400, 404, 409, 422] {
            assert_eq!(kind(s), "rejected", "{s}");
        }
        assert_eq!(
            failure(400, r#"{"email":["Enter a valid email address."]}"#).to_error("Acme"),
            ConnectorError::Rejected(
                "Acme refused the request (400): email: Enter a valid email address.".into()
            )
        );
        let unreadable = failure(200, "<html>");
        assert_eq!(unreadable.to_error("Acme").kind(), "transient");
        assert!(unreadable.may_have_acted());
    }

    #[test]
    fn transport_failures_and_what_may_have_happened() {
        let host = FakeHost::new();
        host.fail("GET", URL, HttpError::Timeout);
        let f = Request::get(URL).send(&host).unwrap_err();
        assert_eq!(
            f.to_error("Acme"),
            ConnectorError::Transient("Acme did not answer in time".into())
        );
        assert!(f.may_have_acted());
        host.fail("GET", URL, HttpError::Denied("not approved".into()));
        let f = Request::get(URL).send(&host).unwrap_err();
        assert_eq!(f.to_error("Acme").kind(), "config");
        assert!(!f.may_have_acted());
        assert!(!failure(503, "").may_have_acted());
        assert!(!failure(429, "").may_have_acted());
        assert!(failure(502, "").may_have_acted());
    }

    #[test]
    fn vendor_text_is_bounded_and_scrubbed() {
        let f = failure(400, r#"{"detail":"bad token sk_live_9"}"#);
        assert_eq!(f.detail(), "bad token [redacted]");
        assert!(!format!("{f:?} {f}").contains("sk_live_9"));
        let long = "x".repeat(1000);
        assert!(failure(400, &long).detail().chars().count() <= MAX_DETAIL_CHARS + 1);
        assert_eq!(failure(400, "").detail(), "no detail");
        assert_eq!(
            error_detail(br#"{"error":"email is required"}"#, &[], 200),
            "email is required"
        );
    }

    #[test]
    fn unencodable_bodies_are_never_sent() {
        let host = FakeHost::new();
        let mut bad = std::collections::HashMap::new();
        bad.insert(vec![1u8], 1); // a map with non-string keys cannot be JSON
        let f = Request::post(URL).json(&bad).send(&host).unwrap_err();
        assert_eq!(f.to_error("Acme").kind(), "rejected");
        assert!(host.requests().is_empty());
    }
}
