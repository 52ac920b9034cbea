//! What `connector test` swaps in behind the host's own checks: a scripted vendor (the
//! [`Outbound`] that receives only requests [`CallContext::send`](crate::wasm::runtime::CallContext::send)
//! approved), durable state in memory (a [`StateBackend`] that counts usage as the store does),
//! and a [`LogSink`] keeping every line the host logged; all three record what the call did, in
//! order, for the step's trace.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use super::matching::{self, Problem};
use super::ordered::Ordered;
use super::scenario::{ErrorWithMessage, Exchange, HttpErrorSpec};
use crate::wasm::runtime::imports::{
    BoxFuture, HttpError, HttpResponse, LogLevel, LogSink, Outbound, OutgoingRequest, StateBackend,
};

/// One line of what a call did, in order.
#[derive(Debug, Clone)]
pub enum Trace {
    Http {
        method: String,
        url: String,
        answer: String,
    },
    StateSet(String, String),
    /// `set-for-screening`: the screening's idempotency key, the key, the value.
    StateSetForScreening(String, String, String),
    StateDelete(String),
    /// The host recorded the screening's order: its entries went (the idempotency key).
    StateDropScreening(String),
    Log(String),
}

impl std::fmt::Display for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Trace::Http {
                method,
                url,
                answer,
            } => write!(f, "http  {method} {url} -> {answer}"),
            Trace::StateSet(k, v) => write!(f, "state set {k} = {}", Value::from(v.clone())),
            Trace::StateSetForScreening(screening, k, v) => write!(
                f,
                "state set {k} = {} (for screening {screening})",
                Value::from(v.clone())
            ),
            Trace::StateDelete(k) => write!(f, "state delete {k}"),
            Trace::StateDropScreening(screening) => write!(
                f,
                "state drop the entries of screening {screening} (the host recorded its order)"
            ),
            Trace::Log(line) => write!(f, "log   {line}"),
        }
    }
}

/// What one step's call did and what it has yet to do.
#[derive(Default)]
pub struct Record {
    /// The vendor exchanges still expected, in order.
    pub exchanges: VecDeque<Exchange>,
    /// Requests that reached the vendor in this step.
    pub sent: usize,
    pub trace: Vec<Trace>,
    pub problems: Vec<Problem>,
    /// Log lines as `level message k=v ...`, for `expect.logs` and the secret check.
    pub logs: Vec<String>,
}

/// The scripted vendor and the log, shared by the calls of one scenario.
#[derive(Default)]
pub struct Recorder(Mutex<Record>);

impl Recorder {
    /// The record, for the harness between calls.
    pub fn record(&self) -> MutexGuard<'_, Record> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a step expecting `exchanges`.
    pub fn begin(&self, exchanges: &[Exchange]) {
        *self.record() = Record {
            exchanges: exchanges.iter().cloned().collect(),
            ..Record::default()
        };
    }

    fn answer(&self, request: OutgoingRequest) -> Result<HttpResponse, HttpError> {
        let mut r = self.record();
        r.sent += 1;
        let at = format!("request {} ({} {})", r.sent, request.method, request.url);
        let Some(exchange) = r.exchanges.pop_front() else {
            r.problems.push(Problem {
                path: at,
                expected: "no further request".into(),
                got: "a request not in the scenario".into(),
            });
            r.trace.push(Trace::Http {
                method: request.method,
                url: request.url,
                answer: "not in the scenario (connection error)".into(),
            });
            return Err(HttpError::Connection(
                "harness: no recorded exchange for this request".into(),
            ));
        };
        let actual = json!({
            "method": request.method,
            "url": request.url,
            "headers": request.headers.iter().map(|(k, v)| (k.to_lowercase(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "body": String::from_utf8_lossy(&request.body),
        });
        matching::check(&expected(&exchange), Some(&actual), &at, &mut r.problems);
        let (result, answer) = match response(&exchange) {
            Ok(pair) => pair,
            Err(why) => {
                r.problems.push(Problem {
                    path: at,
                    expected: "a response the harness can send".into(),
                    got: why.clone(),
                });
                (Err(HttpError::Connection(why.clone())), why)
            }
        };
        r.trace.push(Trace::Http {
            method: request.method,
            url: request.url,
            answer,
        });
        result
    }
}

/// What a recorded exchange expects of the request, in the shape [`matching::check`] reads.
fn expected(exchange: &Exchange) -> Value {
    let mut expected = json!({ "method": exchange.method, "url": exchange.url });
    if let Some(h) = &exchange.headers {
        expected["headers"] = h
            .iter()
            .map(|(k, v)| (k.to_lowercase(), Value::from(v.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    if let Some(b) = &exchange.body {
        expected["body"] = b.clone().into();
    }
    if let Some(b) = &exchange.body_contains {
        expected["body-contains"] = b.clone();
    }
    if let Some(b) = &exchange.body_json {
        expected["body-json"] = b.clone();
    }
    expected
}

type Answer = (Result<HttpResponse, HttpError>, String);

/// The recorded answer, and how the trace shows it.
fn response(exchange: &Exchange) -> Result<Answer, String> {
    Ok(match &exchange.error {
        Some(HttpErrorSpec::Timeout(_)) => (Err(HttpError::Timeout), "timeout".to_string()),
        Some(HttpErrorSpec::WithMessage(e)) => match e {
            ErrorWithMessage::Connection(m) => (
                Err(HttpError::Connection(m.clone())),
                format!("connection error: {m}"),
            ),
            ErrorWithMessage::Denied(m) => {
                (Err(HttpError::Denied(m.clone())), format!("denied: {m}"))
            }
            ErrorWithMessage::Invalid(m) => {
                (Err(HttpError::Invalid(m.clone())), format!("invalid: {m}"))
            }
        },
        None => {
            let spec = exchange.response.clone().unwrap_or_default();
            let json_body = matches!(&spec.body, Some(b) if !matches!(b, Ordered::String(_)));
            let headers = match &spec.headers {
                Some(h) => h
                    .iter()
                    .map(|(k, v)| (k.to_lowercase(), v.clone()))
                    .collect(),
                None if json_body => vec![("content-type".into(), "application/json".into())],
                None => vec![],
            };
            let body = body_bytes(spec.body.as_ref(), spec.body_base64.as_deref())?;
            let status = spec.status.unwrap_or(200);
            (
                Ok(HttpResponse {
                    status,
                    headers,
                    body,
                }),
                status.to_string(),
            )
        }
    })
}

impl Outbound for Recorder {
    fn send(
        &self,
        request: OutgoingRequest,
        _: Duration,
    ) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        let answer = self.answer(request);
        Box::pin(async move { answer })
    }
}

impl LogSink for Recorder {
    fn line(&self, level: LogLevel, message: &str, fields: &str) {
        let level = match level {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        let line = format!("{level} {message} {fields}").trim_end().to_string();
        let mut r = self.record();
        r.trace.push(Trace::Log(line.clone()));
        r.logs.push(line);
    }
}

/// The integration's durable state, in memory for the whole scenario. Screening-scoped entries
/// go as in the server: [`MemoryState::drop_screening`] after a `start-screening` step that
/// returned a result (the server records an order for every one).
pub struct MemoryState {
    entries: Mutex<BTreeMap<String, String>>,
    /// Key → the idempotency key of the screening it belongs to (`set-for-screening`).
    screenings: Mutex<BTreeMap<String, String>>,
    recorder: Arc<Recorder>,
}

impl MemoryState {
    /// State holding `entries` (none screening-scoped); changes are traced through `recorder`.
    pub fn new(entries: BTreeMap<String, String>, recorder: Arc<Recorder>) -> MemoryState {
        MemoryState {
            entries: Mutex::new(entries),
            screenings: Mutex::default(),
            recorder,
        }
    }

    /// The entries now.
    pub fn entries(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn screenings(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.screenings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the server does when it records the order of the screening with `idempotency_key`:
    /// that screening's entries go.
    pub fn drop_screening(&self, idempotency_key: &str) {
        let keys: Vec<String> = self
            .screenings()
            .iter()
            .filter(|(_, s)| s.as_str() == idempotency_key)
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return;
        }
        let (mut entries, mut screenings) = (self.entries(), self.screenings());
        for key in &keys {
            entries.remove(key);
            screenings.remove(key);
        }
        self.recorder
            .record()
            .trace
            .push(Trace::StateDropScreening(idempotency_key.into()));
    }
}

impl StateBackend for MemoryState {
    fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self.entries().get(key).cloned())
    }
    fn set(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.recorder
            .record()
            .trace
            .push(Trace::StateSet(key.into(), value.into()));
        self.entries().insert(key.into(), value.into());
        self.screenings().remove(key);
        Ok(())
    }
    fn set_for_screening(
        &self,
        idempotency_key: &str,
        key: &str,
        value: &str,
    ) -> anyhow::Result<()> {
        self.recorder
            .record()
            .trace
            .push(Trace::StateSetForScreening(
                idempotency_key.into(),
                key.into(),
                value.into(),
            ));
        self.entries().insert(key.into(), value.into());
        self.screenings().insert(key.into(), idempotency_key.into());
        Ok(())
    }
    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.recorder
            .record()
            .trace
            .push(Trace::StateDelete(key.into()));
        self.entries().remove(key);
        self.screenings().remove(key);
        Ok(())
    }
    /// As the store counts (`store::kv`): the bytes of every key, value and screening's key but
    /// `key`'s entry.
    fn usage_without(&self, key: &str) -> anyhow::Result<u64> {
        let screenings = self.screenings();
        Ok(self
            .entries()
            .iter()
            .filter(|(k, _)| k.as_str() != key)
            .map(|(k, v)| (k.len() + v.len() + screenings.get(k).map_or(0, String::len)) as u64)
            .sum())
    }
}

/// A request or response body: a string as UTF-8, other JSON compact, or base64.
pub fn body_bytes(body: Option<&Ordered>, base64: Option<&str>) -> Result<Vec<u8>, String> {
    if let Some(b64) = base64 {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("body-base64 is not base64: {e}"));
    }
    Ok(match body {
        None | Some(Ordered::Null) => Vec::new(),
        Some(Ordered::String(s)) => s.as_bytes().to_vec(),
        Some(other) => other.to_compact().into_bytes(),
    })
}
