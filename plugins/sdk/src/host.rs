//! The host's imports as one trait, so connector logic runs against the real host inside a
//! component ([`WasmHost`]) and against `testing::FakeHost` in native unit tests.

use crate::bindings::switchyard::connector::{config, crypto, log, outbound_http, state};
use crate::{Encoding, HttpError, HttpResponse, Level, OutgoingRequest, Package};

/// Everything a connector may ask of the host: the contract's imports (`outbound-http`,
/// `config`, `state`, `log`, `crypto`) and the wall clock.
///
/// Write connector logic against `&impl Host`; the component glue passes [`WasmHost`], the unit
/// tests a `testing::FakeHost`. The helpers in [`crate::http`], [`crate::signature`],
/// [`crate::state`], [`crate::config`] and [`crate::idempotency`] take a `Host` too.
pub trait Host {
    /// `outbound-http.send`: one request, the whole response back. Only approved hosts are
    /// reachable; others fail with [`HttpError::Denied`].
    fn send(&self, request: &OutgoingRequest) -> Result<HttpResponse, HttpError>;

    /// `config.integration-id`: the integration this call runs for.
    fn integration_id(&self) -> String;
    /// `config.get`: a non-secret setting, if set.
    fn setting(&self, key: &str) -> Option<String>;
    /// `config.secret`: a secret setting, if set. Never log it.
    fn secret(&self, key: &str) -> Option<String>;
    /// `config.packages`: the configured packages (exactly one is the default when non-empty).
    fn packages(&self) -> Vec<Package>;
    /// `config.callback-url`: where the vendor should send callbacks.
    fn callback_url(&self) -> String;

    /// `state.get`: the value stored under `key`, if any.
    fn state_get(&self, key: &str) -> Option<String>;
    /// `state.set`: stores `value` under `key`, durably once it returns, kept until deleted.
    fn state_set(&self, key: &str, value: &str);
    /// `state.set-for-screening` (contract 0.2.1): like [`Host::state_set`], but the entry
    /// belongs to the screening with `idempotency_key` and the host drops it when it records that
    /// screening's order (after which it never calls `start-screening` with that key again).
    fn state_set_for_screening(&self, idempotency_key: &str, key: &str, value: &str);
    /// `state.delete`: removes `key`.
    fn state_delete(&self, key: &str);

    /// `log.log`: a structured log line in the host's log. Never put secrets in it.
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]);

    /// `crypto.sha256`: SHA-256 of `data` (32 bytes).
    fn sha256(&self, data: &[u8]) -> Vec<u8>;
    /// `crypto.hmac-sha256`: HMAC-SHA256 of `message` under `key` (32 bytes).
    fn hmac_sha256(&self, key: &[u8], message: &[u8]) -> Vec<u8>;
    /// `crypto.constant-time-eq`: equality in time that does not depend on where `a` and `b`
    /// differ.
    fn constant_time_eq(&self, a: &[u8], b: &[u8]) -> bool;
    /// `crypto.verify-hmac-sha256`: whether `signature` (text in `encoding`) is
    /// HMAC-SHA256(`key`, `message`), compared in constant time; malformed text is false.
    fn verify_hmac_sha256(
        &self,
        key: &[u8],
        message: &[u8],
        signature: &str,
        encoding: Encoding,
    ) -> bool;
    /// `crypto.encode`: `data` as text in `encoding`.
    fn encode(&self, data: &[u8], encoding: Encoding) -> String;
    /// `crypto.decode`: text in `encoding` as bytes; `None` when malformed.
    fn decode(&self, text: &str, encoding: Encoding) -> Option<Vec<u8>>;

    /// The current time in Unix seconds. Inside a component this is the WASI wall clock (a clock
    /// before 1970 reads as 0, which makes every timestamped signature stale: it fails closed).
    fn now(&self) -> i64;
}

/// The real host: every method calls the component's imports.
///
/// Only usable inside a component (wasm32); on a native target the generated import stubs are
/// unreachable, so native tests use `testing::FakeHost` instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmHost;

impl Host for WasmHost {
    fn send(&self, request: &OutgoingRequest) -> Result<HttpResponse, HttpError> {
        outbound_http::send(request)
    }

    fn integration_id(&self) -> String {
        config::integration_id()
    }

    fn setting(&self, key: &str) -> Option<String> {
        config::get(key)
    }

    fn secret(&self, key: &str) -> Option<String> {
        config::secret(key)
    }

    fn packages(&self) -> Vec<Package> {
        config::packages()
    }

    fn callback_url(&self) -> String {
        config::callback_url()
    }

    fn state_get(&self, key: &str) -> Option<String> {
        state::get(key)
    }

    fn state_set(&self, key: &str, value: &str) {
        state::set(key, value)
    }

    fn state_set_for_screening(&self, idempotency_key: &str, key: &str, value: &str) {
        state::set_for_screening(idempotency_key, key, value)
    }

    fn state_delete(&self, key: &str) {
        state::delete(key)
    }

    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        log::log(level, message, &fields)
    }

    fn sha256(&self, data: &[u8]) -> Vec<u8> {
        crypto::sha256(data)
    }

    fn hmac_sha256(&self, key: &[u8], message: &[u8]) -> Vec<u8> {
        crypto::hmac_sha256(key, message)
    }

    fn constant_time_eq(&self, a: &[u8], b: &[u8]) -> bool {
        crypto::constant_time_eq(a, b)
    }

    fn verify_hmac_sha256(
        &self,
        key: &[u8],
        message: &[u8],
        signature: &str,
        encoding: Encoding,
    ) -> bool {
        crypto::verify_hmac_sha256(key, message, signature, encoding)
    }

    fn encode(&self, data: &[u8], encoding: Encoding) -> String {
        crypto::encode(data, encoding)
    }

    fn decode(&self, text: &str, encoding: Encoding) -> Option<Vec<u8>> {
        crypto::decode(text, encoding)
    }

    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}
