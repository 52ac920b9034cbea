//! The scripted host a component runs against in `connector test`: the contract's imports answered
//! from the scenario (recorded vendor exchanges, configuration, durable state carried across
//! steps, captured logs, the same crypto as the host), and a trace of everything the call did.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};
use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::matching::{self, Problem};
use super::scenario::{ConfigSpec, ErrorWithMessage, Exchange, HttpErrorSpec};
use crate::wasm::runtime::crypto as host_crypto;

pub mod bindings {
    //! Contract 0.2 (`wit/connector.wit`) with synchronous, trappable imports: the harness has no
    //! network to await, and an import called during `manifest` traps, as on the host.
    wasmtime::component::bindgen!({
        path: "../wit/connector.wit",
        world: "connector",
        imports: { default: trappable },
    });
}

use bindings::switchyard::connector::{config, crypto, log, outbound_http, state, types};

/// One line of what a call did, in order.
#[derive(Debug, Clone)]
pub enum Trace {
    Http {
        method: String,
        url: String,
        answer: String,
    },
    StateSet(String, String),
    StateDelete(String),
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
            Trace::StateDelete(k) => write!(f, "state delete {k}"),
            Trace::Log(line) => write!(f, "log   {line}"),
        }
    }
}

/// Everything the imports see and record during one call.
pub struct World {
    pub config: Arc<ConfigSpec>,
    /// During `manifest` every import traps (and is a problem).
    pub in_manifest: bool,
    pub state: BTreeMap<String, String>,
    pub exchanges: VecDeque<Exchange>,
    pub sent: usize,
    pub trace: Vec<Trace>,
    pub problems: Vec<Problem>,
    /// Log lines as `level message k=v ...`, for `expect.logs` and the secret check.
    pub logs: Vec<String>,
}

impl World {
    pub fn new(config: Arc<ConfigSpec>, state: BTreeMap<String, String>) -> World {
        World {
            config,
            in_manifest: false,
            state,
            exchanges: VecDeque::new(),
            sent: 0,
            trace: Vec::new(),
            problems: Vec::new(),
            logs: Vec::new(),
        }
    }

    fn guard(&mut self, import: &str) -> wasmtime::Result<()> {
        if self.in_manifest {
            self.problems.push(Problem {
                path: "manifest".into(),
                expected: "no import call".into(),
                got: format!("a call to {import}"),
            });
            wasmtime::bail!(
                "import {import} called during manifest (the host fails every import there)"
            );
        }
        Ok(())
    }
}

/// Per-store data.
pub struct Sandbox {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub world: World,
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for Sandbox {}

impl outbound_http::Host for Sandbox {
    fn send(
        &mut self,
        request: outbound_http::OutgoingRequest,
    ) -> wasmtime::Result<Result<types::HttpResponse, outbound_http::HttpError>> {
        use outbound_http::HttpError;
        let w = &mut self.world;
        w.guard("outbound-http.send")?;
        w.sent += 1;
        let at = format!("request {} ({} {})", w.sent, request.method, request.url);
        let Some(exchange) = w.exchanges.pop_front() else {
            w.problems.push(Problem {
                path: at,
                expected: "no further request".into(),
                got: "a request not in the scenario".into(),
            });
            w.trace.push(Trace::Http {
                method: request.method,
                url: request.url,
                answer: "not in the scenario (connection error)".into(),
            });
            return Ok(Err(HttpError::Connection(
                "harness: no recorded exchange for this request".into(),
            )));
        };
        let actual = json!({
            "method": request.method,
            "url": request.url,
            "headers": request.headers.iter().map(|(k, v)| (k.to_lowercase(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "body": String::from_utf8_lossy(&request.body),
        });
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
        matching::check(&expected, Some(&actual), &at, &mut w.problems);
        let (result, answer) = match &exchange.error {
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
                let json_body = matches!(&spec.body, Some(b) if !matches!(b, super::ordered::Ordered::String(_)));
                let headers = match &spec.headers {
                    Some(h) => h
                        .iter()
                        .map(|(k, v)| (k.to_lowercase(), v.clone()))
                        .collect(),
                    None if json_body => vec![("content-type".into(), "application/json".into())],
                    None => vec![],
                };
                let body = super::run::body_bytes(spec.body.as_ref(), spec.body_base64.as_deref())
                    .map_err(|e| wasmtime::format_err!("{at}: {e}"))?;
                let status = spec.status.unwrap_or(200);
                (
                    Ok(types::HttpResponse {
                        status,
                        headers,
                        body,
                    }),
                    status.to_string(),
                )
            }
        };
        w.trace.push(Trace::Http {
            method: request.method,
            url: request.url,
            answer,
        });
        Ok(result)
    }
}

impl config::Host for Sandbox {
    fn integration_id(&mut self) -> wasmtime::Result<String> {
        self.world.guard("config.integration-id")?;
        Ok(self.world.config.integration_id())
    }
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.world.guard("config.get")?;
        Ok(self.world.config.settings.get(&key).cloned())
    }
    fn secret(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.world.guard("config.secret")?;
        Ok(self.world.config.secrets.get(&key).cloned())
    }
    fn packages(&mut self) -> wasmtime::Result<Vec<types::Package>> {
        self.world.guard("config.packages")?;
        Ok(self
            .world
            .config
            .packages
            .iter()
            .map(|p| types::Package {
                name: p.name.clone(),
                is_default: p.default,
                params: p.params.clone(),
            })
            .collect())
    }
    fn callback_url(&mut self) -> wasmtime::Result<String> {
        self.world.guard("config.callback-url")?;
        Ok(self.world.config.callback_url())
    }
}

impl state::Host for Sandbox {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.world.guard("state.get")?;
        Ok(self.world.state.get(&key).cloned())
    }
    fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        self.world.guard("state.set")?;
        self.world
            .trace
            .push(Trace::StateSet(key.clone(), value.clone()));
        self.world.state.insert(key, value);
        Ok(())
    }
    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.world.guard("state.delete")?;
        self.world.trace.push(Trace::StateDelete(key.clone()));
        self.world.state.remove(&key);
        Ok(())
    }
}

impl log::Host for Sandbox {
    fn log(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.world.guard("log.log")?;
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        let mut line = format!("{level} {message}");
        for (k, v) in &fields {
            line.push_str(&format!(" {k}={v}"));
        }
        self.world.trace.push(Trace::Log(line.clone()));
        self.world.logs.push(line);
        Ok(())
    }
}

/// The host's own implementation (`wasm::runtime::crypto`), so a scenario sees what production does.
impl crypto::Host for Sandbox {
    fn sha256(&mut self, data: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        self.world.guard("crypto.sha256")?;
        Ok(host_crypto::sha256(&data))
    }
    fn hmac_sha256(&mut self, key: Vec<u8>, message: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        self.world.guard("crypto.hmac-sha256")?;
        Ok(host_crypto::hmac_sha256(&key, &message))
    }
    fn constant_time_eq(&mut self, a: Vec<u8>, b: Vec<u8>) -> wasmtime::Result<bool> {
        self.world.guard("crypto.constant-time-eq")?;
        Ok(host_crypto::constant_time_eq(&a, &b))
    }
    fn verify_hmac_sha256(
        &mut self,
        key: Vec<u8>,
        message: Vec<u8>,
        signature: String,
        e: crypto::Encoding,
    ) -> wasmtime::Result<bool> {
        self.world.guard("crypto.verify-hmac-sha256")?;
        Ok(host_crypto::verify_hmac_sha256(
            &key,
            &message,
            &signature,
            encoding(e),
        ))
    }
    fn encode(&mut self, data: Vec<u8>, e: crypto::Encoding) -> wasmtime::Result<String> {
        self.world.guard("crypto.encode")?;
        Ok(host_crypto::encode(&data, encoding(e)))
    }
    fn decode(&mut self, text: String, e: crypto::Encoding) -> wasmtime::Result<Option<Vec<u8>>> {
        self.world.guard("crypto.decode")?;
        Ok(host_crypto::decode(&text, encoding(e)))
    }
}

fn encoding(e: crypto::Encoding) -> host_crypto::Encoding {
    match e {
        crypto::Encoding::Hex => host_crypto::Encoding::Hex,
        crypto::Encoding::Base64 => host_crypto::Encoding::Base64,
    }
}
