//! Test doubles of the host's imports, for native unit tests of a connector's logic (feature
//! `testing`; enable it in `[dev-dependencies]` only).
//!
//! [`FakeHost`] implements [`Host`]: vendor HTTP exchanges scripted in advance (each answers one
//! matching request, in order; an unscripted request fails with `connection`), configuration
//! set up with builder methods, `state` in memory, `crypto` computed natively (HMAC-SHA256,
//! SHA-256, hex, base64 as the host does), `log` recorded, and a fixed clock ([`DEFAULT_NOW`]).
//!
//! ```ignore
//! let host = FakeHost::new()
//!     .with_config("api-base", "https://api.example.com")
//!     .with_secret("api-key", "key_1")
//!     .with_package("Basic", true, &[]);
//! host.respond("POST", "https://api.example.com/invitations", 201, r#"{"id":"inv-1"}"#);
//! let started = start_screening(&host, &request).unwrap();
//! assert_eq!(host.count("POST", "https://api.example.com/invitations"), 1);
//! assert_eq!(host.state("order:lever:tok-1").as_deref(), Some("inv-1"));
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{
    Candidate, Encoding, Host, HttpError, HttpResponse, Level, OutgoingRequest, Package,
    ScreeningRequest,
};

/// The time a [`FakeHost`]'s clock reads unless told otherwise (2023-11-14T22:13:20Z).
pub const DEFAULT_NOW: i64 = 1_700_000_000;

/// One `log` call a connector made.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Its level.
    pub level: Level,
    /// Its message.
    pub message: String,
    /// Its fields.
    pub fields: Vec<(String, String)>,
}

/// A scripted vendor exchange: the request it answers and the answer.
#[derive(Debug, Clone)]
struct Exchange {
    method: String,
    url: String,
    answer: Result<HttpResponse, HttpError>,
    used: bool,
}

#[derive(Debug)]
struct Inner {
    integration_id: String,
    callback_url: String,
    settings: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    packages: Vec<Package>,
    state: BTreeMap<String, String>,
    /// State key → the idempotency key of the screening it belongs to (`set-for-screening`).
    screenings: BTreeMap<String, String>,
    script: Vec<Exchange>,
    requests: Vec<OutgoingRequest>,
    logs: Vec<LogLine>,
    now: i64,
}

/// An in-memory [`Host`] for native tests. Builder methods (`with_*`) set it up; `respond` and
/// `fail` script the vendor; `requests`, `count`, `state` and `logs` show what the connector did.
#[derive(Debug)]
pub struct FakeHost {
    inner: RefCell<Inner>,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeHost {
    /// Integration `test`, callback URL `https://switchyard.example/hooks/test/vendor`, no
    /// settings, secrets, packages, state or script; the clock at [`DEFAULT_NOW`].
    pub fn new() -> Self {
        FakeHost {
            inner: RefCell::new(Inner {
                integration_id: "test".into(),
                callback_url: "https://switchyard.example/hooks/test/vendor".into(),
                settings: BTreeMap::new(),
                secrets: BTreeMap::new(),
                packages: Vec::new(),
                state: BTreeMap::new(),
                screenings: BTreeMap::new(),
                script: Vec::new(),
                requests: Vec::new(),
                logs: Vec::new(),
                now: DEFAULT_NOW,
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut Inner)) -> Self {
        change(&mut self.inner.borrow_mut());
        self
    }

    /// With a plain setting (`config.get`).
    pub fn with_config(self, key: &str, value: &str) -> Self {
        self.with(|i| {
            i.settings.insert(key.into(), value.into());
        })
    }

    /// With a secret setting (`config.secret`).
    pub fn with_secret(self, key: &str, value: &str) -> Self {
        self.with(|i| {
            i.secrets.insert(key.into(), value.into());
        })
    }

    /// With one more configured package (`config.packages`, in the order added).
    pub fn with_package(self, name: &str, is_default: bool, params: &[(&str, &str)]) -> Self {
        self.with(|i| i.packages.push(Package::new(name, is_default, params)))
    }

    /// With this integration id.
    pub fn with_integration_id(self, id: &str) -> Self {
        self.with(|i| i.integration_id = id.into())
    }

    /// With this callback URL.
    pub fn with_callback_url(self, url: &str) -> Self {
        self.with(|i| i.callback_url = url.into())
    }

    /// With a state value already there (what an earlier, crashed attempt left behind).
    pub fn with_state(self, key: &str, value: &str) -> Self {
        self.with(|i| {
            i.state.insert(key.into(), value.into());
        })
    }

    /// With the clock at `now` (Unix seconds).
    pub fn with_now(self, now: i64) -> Self {
        self.with(|i| i.now = now)
    }

    /// Scripts a vendor answer with a body and no headers: the next `method url` request (exact
    /// URL, query included) gets it.
    pub fn respond(&self, method: &str, url: &str, status: u16, body: &str) {
        self.respond_with(
            method,
            url,
            HttpResponse {
                status,
                headers: Vec::new(),
                body: body.as_bytes().to_vec(),
            },
        )
    }

    /// Scripts a full vendor response for the next `method url` request.
    pub fn respond_with(&self, method: &str, url: &str, response: HttpResponse) {
        self.script(method, url, Ok(response))
    }

    /// Scripts a transport failure (e.g. [`HttpError::Timeout`]: the answer was lost) for the
    /// next `method url` request.
    pub fn fail(&self, method: &str, url: &str, error: HttpError) {
        self.script(method, url, Err(error))
    }

    fn script(&self, method: &str, url: &str, answer: Result<HttpResponse, HttpError>) {
        self.inner.borrow_mut().script.push(Exchange {
            method: method.to_ascii_uppercase(),
            url: url.into(),
            answer,
            used: false,
        })
    }

    /// Sets a state value, as if an earlier call had (a plain `set`: kept until deleted).
    pub fn set_state(&self, key: &str, value: &str) {
        let mut inner = self.inner.borrow_mut();
        inner.state.insert(key.into(), value.into());
        inner.screenings.remove(key);
    }

    /// The idempotency key of the screening the entry `key` belongs to, if it was set with
    /// `set-for-screening`.
    pub fn screening_of(&self, key: &str) -> Option<String> {
        self.inner.borrow().screenings.get(key).cloned()
    }

    /// What the host does when it records the order of the screening with `idempotency_key`:
    /// that screening's entries go.
    pub fn record_order(&self, idempotency_key: &str) {
        let mut inner = self.inner.borrow_mut();
        let Inner {
            state, screenings, ..
        } = &mut *inner;
        screenings.retain(|key, screening| {
            let keep = screening != idempotency_key;
            if !keep {
                state.remove(key);
            }
            keep
        });
    }

    /// Moves the clock.
    pub fn set_now(&self, now: i64) {
        self.inner.borrow_mut().now = now;
    }

    /// Every request the connector sent, in order (answered or not).
    pub fn requests(&self) -> Vec<OutgoingRequest> {
        self.inner.borrow().requests.clone()
    }

    /// How many `method url` requests the connector sent (exact URL, query included).
    pub fn count(&self, method: &str, url: &str) -> usize {
        self.inner
            .borrow()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.url == url)
            .count()
    }

    /// Scripted exchanges no request used yet, as `METHOD url` (empty when the connector made
    /// every call the test expected).
    pub fn unused(&self) -> Vec<String> {
        self.inner
            .borrow()
            .script
            .iter()
            .filter(|e| !e.used)
            .map(|e| format!("{} {}", e.method, e.url))
            .collect()
    }

    /// The state value under `key`.
    pub fn state(&self, key: &str) -> Option<String> {
        self.inner.borrow().state.get(key).cloned()
    }

    /// The whole state.
    pub fn state_map(&self) -> BTreeMap<String, String> {
        self.inner.borrow().state.clone()
    }

    /// Every log line, in order.
    pub fn logs(&self) -> Vec<LogLine> {
        self.inner.borrow().logs.clone()
    }
}

impl Host for FakeHost {
    fn send(&self, request: &OutgoingRequest) -> Result<HttpResponse, HttpError> {
        let mut inner = self.inner.borrow_mut();
        inner.requests.push(request.clone());
        let exchange = inner.script.iter_mut().find(|e| {
            !e.used && e.method.eq_ignore_ascii_case(&request.method) && e.url == request.url
        });
        match exchange {
            Some(e) => {
                e.used = true;
                e.answer.clone()
            }
            None => Err(HttpError::Connection(format!(
                "FakeHost: no scripted answer for {} {}",
                request.method, request.url
            ))),
        }
    }

    fn integration_id(&self) -> String {
        self.inner.borrow().integration_id.clone()
    }

    fn setting(&self, key: &str) -> Option<String> {
        self.inner.borrow().settings.get(key).cloned()
    }

    fn secret(&self, key: &str) -> Option<String> {
        self.inner.borrow().secrets.get(key).cloned()
    }

    fn packages(&self) -> Vec<Package> {
        self.inner.borrow().packages.clone()
    }

    fn callback_url(&self) -> String {
        self.inner.borrow().callback_url.clone()
    }

    fn state_get(&self, key: &str) -> Option<String> {
        self.state(key)
    }

    fn state_set(&self, key: &str, value: &str) {
        self.set_state(key, value)
    }

    fn state_set_for_screening(&self, idempotency_key: &str, key: &str, value: &str) {
        let mut inner = self.inner.borrow_mut();
        inner.state.insert(key.into(), value.into());
        inner.screenings.insert(key.into(), idempotency_key.into());
    }

    fn state_delete(&self, key: &str) {
        let mut inner = self.inner.borrow_mut();
        inner.state.remove(key);
        inner.screenings.remove(key);
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        self.inner.borrow_mut().logs.push(LogLine {
            level,
            message: message.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    fn sha256(&self, data: &[u8]) -> Vec<u8> {
        Sha256::digest(data).to_vec()
    }

    fn hmac_sha256(&self, key: &[u8], message: &[u8]) -> Vec<u8> {
        hmac_sha256(key, message)
    }

    fn constant_time_eq(&self, a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    fn verify_hmac_sha256(
        &self,
        key: &[u8],
        message: &[u8],
        signature: &str,
        encoding: Encoding,
    ) -> bool {
        self.decode(signature, encoding)
            .is_some_and(|sig| self.constant_time_eq(&hmac_sha256(key, message), &sig))
    }

    fn encode(&self, data: &[u8], encoding: Encoding) -> String {
        match encoding {
            Encoding::Hex => hex::encode(data),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(data),
        }
    }

    fn decode(&self, text: &str, encoding: Encoding) -> Option<Vec<u8>> {
        match encoding {
            Encoding::Hex => hex::decode(text).ok(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        }
    }

    fn now(&self) -> i64 {
        self.inner.borrow().now
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` only fails for fixed-size-key MACs.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts any key length"),
    };
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// A screening request for tests: idempotency key `key`, a candidate with `name` and `emails`,
/// opportunity `opp-1`, and nothing else (set other fields with struct update syntax).
pub fn screening_request(key: &str, name: &str, emails: &[&str]) -> ScreeningRequest {
    ScreeningRequest {
        idempotency_key: key.into(),
        candidate: Candidate {
            name: name.into(),
            emails: emails.iter().map(|e| e.to_string()).collect(),
            phones: Vec::new(),
        },
        opportunity_id: "opp-1".into(),
        opportunity_tags: Vec::new(),
        posting_id: None,
        posting_tags: Vec::new(),
        stage: None,
        package: None,
    }
}

/// Lower-case hex HMAC-SHA256 of `message` under `key`, for signing callbacks in tests.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    hex::encode(hmac_sha256(key, message))
}

/// A Stripe-style signature header `t=<at>,v1=<hex HMAC-SHA256(secret, "<at>.<body>")>`, as
/// [`crate::signature::verify_stripe_style`] checks it.
pub fn stripe_signature(secret: &[u8], at: i64, body: &[u8]) -> String {
    let message = crate::signature::signed_message(&at.to_string(), body);
    format!("t={at},v1={}", hmac_sha256_hex(secret, &message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges_answer_once_in_order_and_unscripted_requests_fail() {
        let host = FakeHost::new();
        let url = "https://v.example/x";
        host.respond("GET", url, 200, "one");
        host.fail("get", url, HttpError::Timeout);
        let get = |h: &FakeHost| {
            h.send(&OutgoingRequest {
                method: "GET".into(),
                url: url.into(),
                headers: vec![],
                body: vec![],
                timeout_ms: None,
            })
        };
        assert_eq!(get(&host).map(|r| r.body), Ok(b"one".to_vec()));
        assert_eq!(get(&host), Err(HttpError::Timeout));
        assert!(matches!(get(&host), Err(HttpError::Connection(_))));
        assert_eq!(host.count("GET", url), 3);
        assert!(host.unused().is_empty());
    }

    #[test]
    fn crypto_matches_known_values() {
        let host = FakeHost::new();
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            host.encode(&host.sha256(b"abc"), Encoding::Hex),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(host.encode(b"hi", Encoding::Base64), "aGk=");
        assert_eq!(host.decode("aGk", Encoding::Base64), None);
        assert_eq!(host.decode("ABcd", Encoding::Hex), Some(vec![0xab, 0xcd]));
        let mac = host.hmac_sha256(b"k", b"m");
        let b64 = host.encode(&mac, Encoding::Base64);
        assert!(host.verify_hmac_sha256(b"k", b"m", &b64, Encoding::Base64));
        assert!(!host.verify_hmac_sha256(b"k", b"n", &b64, Encoding::Base64));
        assert!(!host.constant_time_eq(b"ab", b"abc"));
    }
}
