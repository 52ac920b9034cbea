//! The scenario file (`templates/SCENARIO.md`), parsed strictly: unknown keys and values of the
//! wrong type are errors, so a typo cannot silently test nothing.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::ordered::Ordered;
use crate::config::limits::SandboxLimits;

/// A whole scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    #[allow(dead_code)]
    pub description: Option<String>,
    /// Unix seconds the wall clock reads; default the real clock.
    pub now: Option<i64>,
    #[serde(default)]
    pub config: ConfigSpec,
    #[serde(default)]
    pub state: BTreeMap<String, String>,
    pub manifest: Option<Value>,
    /// The operator's `runtime.approved_hosts`: the manifest's `outbound-hosts` and the
    /// integration's `allowed-hosts` must be among them (or, for the latter, the manifest's).
    #[serde(default)]
    pub approved_hosts: Vec<String>,
    /// The operator's `runtime.limits` (keys as in the TOML); absent keys keep their defaults.
    pub limits: Option<SandboxLimits>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// The integration's configuration as the connector sees it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigSpec {
    pub integration_id: Option<String>,
    pub callback_url: Option<String>,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub packages: Vec<PackageSpec>,
    /// The integration's `allowed_hosts`: hosts it may call beyond the manifest's.
    pub allowed_hosts: Option<Vec<String>>,
    /// The integration's `allow_loopback`: loopback literals (127.0.0.0/8, ::1) may be called.
    #[serde(default)]
    pub allow_loopback: bool,
}

impl ConfigSpec {
    pub fn integration_id(&self) -> String {
        self.integration_id.clone().unwrap_or_else(|| "test".into())
    }
    pub fn callback_url(&self) -> String {
        self.callback_url
            .clone()
            .unwrap_or_else(|| "https://switchyard.example/hooks/test/vendor".into())
    }
}

/// One configured package.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PackageSpec {
    pub name: String,
    #[serde(default)]
    pub default: bool,
    /// In file order.
    #[serde(default, deserialize_with = "ordered_strings")]
    pub params: Vec<(String, String)>,
}

/// Which export a step calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Call {
    StartScreening,
    HandleCallback,
    ListPackages,
    Manifest,
}

impl Call {
    pub fn name(self) -> &'static str {
        match self {
            Call::StartScreening => "start-screening",
            Call::HandleCallback => "handle-callback",
            Call::ListPackages => "list-packages",
            Call::Manifest => "manifest",
        }
    }
}

/// One export call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Step {
    pub name: Option<String>,
    pub call: Call,
    pub now: Option<i64>,
    /// Merged into the state before the call; `null` removes a key.
    #[serde(default)]
    pub given_state: BTreeMap<String, Option<String>>,
    pub request: Option<Request>,
    /// Absent = the call must make no request.
    #[serde(default)]
    pub http: Vec<Exchange>,
    #[serde(default)]
    pub expect: Expect,
}

/// A step's argument: the keys of a `screening-request` or of a callback `http-request` (which
/// ones a call accepts is checked by [`Scenario::check`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Request {
    // start-screening
    pub idempotency_key: Option<String>,
    pub candidate: Option<CandidateSpec>,
    pub opportunity_id: Option<String>,
    pub opportunity_tags: Option<Vec<String>>,
    pub posting_id: Option<String>,
    pub posting_tags: Option<Vec<String>>,
    pub stage: Option<String>,
    pub package: Option<String>,
    // handle-callback
    pub method: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub body: Option<Ordered>,
    pub body_base64: Option<String>,
    pub sign: Option<Sign>,
}

impl Request {
    fn screening_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut has = |present: bool, key| {
            if present {
                keys.push(key)
            }
        };
        has(self.idempotency_key.is_some(), "idempotency-key");
        has(self.candidate.is_some(), "candidate");
        has(self.opportunity_id.is_some(), "opportunity-id");
        has(self.opportunity_tags.is_some(), "opportunity-tags");
        has(self.posting_id.is_some(), "posting-id");
        has(self.posting_tags.is_some(), "posting-tags");
        has(self.stage.is_some(), "stage");
        has(self.package.is_some(), "package");
        keys
    }

    fn callback_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut has = |present: bool, key| {
            if present {
                keys.push(key)
            }
        };
        has(self.method.is_some(), "method");
        has(self.path.is_some(), "path");
        has(self.query.is_some(), "query");
        has(self.headers.is_some(), "headers");
        has(self.body.is_some(), "body");
        has(self.body_base64.is_some(), "body-base64");
        has(self.sign.is_some(), "sign");
        keys
    }
}

/// The candidate of a screening request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub phones: Vec<String>,
}

/// Signature headers computed as the vendor would.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Sign {
    pub secret: Option<String>,
    pub secret_value: Option<String>,
    #[serde(default)]
    pub timestamp_offset: i64,
    pub message: Option<String>,
    #[serde(default, deserialize_with = "ordered_strings")]
    pub headers: Vec<(String, String)>,
}

/// One recorded vendor exchange.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Exchange {
    pub method: String,
    pub url: String,
    pub headers: Option<BTreeMap<String, String>>,
    pub body: Option<String>,
    pub body_contains: Option<Value>,
    pub body_json: Option<Value>,
    pub response: Option<ResponseSpec>,
    pub error: Option<HttpErrorSpec>,
}

/// The vendor's answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ResponseSpec {
    pub status: Option<u16>,
    pub headers: Option<BTreeMap<String, String>>,
    pub body: Option<Ordered>,
    pub body_base64: Option<String>,
}

/// An `http-error` instead of an answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HttpErrorSpec {
    /// `"timeout"`.
    Timeout(TimeoutWord),
    /// `{"connection": msg}`, `{"denied": msg}`, `{"invalid": msg}`.
    WithMessage(ErrorWithMessage),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeoutWord {
    Timeout,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum ErrorWithMessage {
    Connection(String),
    Denied(String),
    Invalid(String),
}

/// What a call must produce.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Expect {
    pub ok: Option<Value>,
    pub error: Option<Value>,
    #[serde(default)]
    pub trap: bool,
    /// string = exactly, null = absent, true = present.
    pub state: Option<BTreeMap<String, Value>>,
    pub logs: Option<LogsExpect>,
}

/// Texts that must appear in the call's log lines.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsExpect {
    #[serde(default)]
    pub contain: Option<Value>,
}

impl Scenario {
    /// Parses and checks a scenario; the error says where and what is wrong.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = serde_json::from_str(text).map_err(|e| e.to_string())?;
        scenario.check()?;
        Ok(scenario)
    }

    /// What serde cannot say: which request keys a call takes, value shapes in `expect`.
    fn check(&self) -> Result<(), String> {
        for (i, step) in self.steps.iter().enumerate() {
            let at = format!("steps[{i}] ({})", step.call.name());
            if let Some(req) = &step.request {
                let wrong = match step.call {
                    Call::StartScreening => req.callback_keys(),
                    Call::HandleCallback => req.screening_keys(),
                    Call::ListPackages | Call::Manifest => {
                        let mut all = req.screening_keys();
                        all.extend(req.callback_keys());
                        all
                    }
                };
                if let Some(key) = wrong.first() {
                    return Err(format!("{at}.request: `{key}` is not a key of this call"));
                }
                if req.body.is_some() && req.body_base64.is_some() {
                    return Err(format!(
                        "{at}.request: give `body` or `body-base64`, not both"
                    ));
                }
                if let Some(sign) = &req.sign {
                    match (&sign.secret, &sign.secret_value) {
                        (Some(name), None) if !self.config.secrets.contains_key(name) => {
                            return Err(format!(
                                "{at}.request.sign.secret: `{name}` is not in config.secrets"
                            ))
                        }
                        (None, None) | (Some(_), Some(_)) => {
                            return Err(format!(
                                "{at}.request.sign: give `secret` or `secret-value`"
                            ))
                        }
                        _ => {}
                    }
                }
            }
            if step.call == Call::StartScreening
                && step
                    .request
                    .as_ref()
                    .and_then(|r| r.idempotency_key.as_ref())
                    .is_none()
            {
                return Err(format!("{at}.request needs an `idempotency-key`"));
            }
            for (j, x) in step.http.iter().enumerate() {
                if x.response.is_some() && x.error.is_some() {
                    return Err(format!(
                        "{at}.http[{j}]: give `response` or `error`, not both"
                    ));
                }
            }
            if let Some(state) = &step.expect.state {
                for (key, v) in state {
                    if !matches!(v, Value::String(_) | Value::Null | Value::Bool(true)) {
                        return Err(format!("{at}.expect.state.{key}: a string, null or true"));
                    }
                }
            }
            if step.expect.trap && (step.expect.ok.is_some() || step.expect.error.is_some()) {
                return Err(format!("{at}.expect: `trap` excludes `ok` and `error`"));
            }
        }
        Ok(())
    }
}

/// An object of strings, in file order.
fn ordered_strings<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    match Ordered::deserialize(d)? {
        Ordered::Object(entries) => entries
            .into_iter()
            .map(|(k, v)| match v {
                Ordered::String(s) => Ok((k, s)),
                _ => Err(serde::de::Error::custom(format!("`{k}` must be a string"))),
            })
            .collect(),
        _ => Err(serde::de::Error::custom("expected an object of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_misplaced_request_keys_are_refused() {
        let e = Scenario::parse(r#"{ "stpes": [] }"#).unwrap_err();
        assert!(e.contains("unknown field `stpes`"), "{e}");
        let e = Scenario::parse(
            r#"{ "steps": [ { "call": "start-screening", "request": { "idempotency-key": "k", "body": "x" } } ] }"#,
        )
        .unwrap_err();
        assert!(e.contains("`body` is not a key of this call"), "{e}");
        let e = Scenario::parse(r#"{ "steps": [ { "call": "start-screening" } ] }"#).unwrap_err();
        assert!(e.contains("idempotency-key"), "{e}");
        let e = Scenario::parse(
            r#"{ "steps": [ { "call": "list-packages", "expect": { "ok": [], "trap": true } } ] }"#,
        )
        .unwrap_err();
        assert!(e.contains("trap"), "{e}");
    }

    #[test]
    fn errors_params_and_bodies_parse() {
        let s = Scenario::parse(
            r#"{ "config": { "packages": [ { "name": "B", "params": { "z": "1", "a": "2" } } ] },
                 "steps": [ { "call": "handle-callback", "request": { "body": { "z": 1, "a": 2 } },
                   "http": [ { "method": "GET", "url": "u", "error": "timeout" },
                             { "method": "GET", "url": "u", "error": { "connection": "reset" } } ] } ] }"#,
        )
        .unwrap();
        assert_eq!(s.config.packages[0].params[0].0, "z");
        let body = s.steps[0].request.as_ref().unwrap().body.as_ref().unwrap();
        assert_eq!(body.to_compact(), r#"{"z":1,"a":2}"#);
        assert!(matches!(
            s.steps[0].http[0].error,
            Some(HttpErrorSpec::Timeout(_))
        ));
        assert!(Scenario::parse(r#"{ "steps": [ { "call": "list-packages", "http": [ { "method": "GET", "url": "u", "error": "nope" } ] } ] }"#).is_err());
    }
}
