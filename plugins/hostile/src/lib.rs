//! A hostile connector, for the host's sandbox tests (`tests/hostile.rs`): every attack a
//! third-party connector could make on the host's memory, threads, storage, logs and replies.
//!
//! The attack is chosen per call: `start-screening` takes it from the candidate's name,
//! `handle-callback` from the request body (`attack=<name>` or just `<name>`); either falls back to
//! the integration setting `attack`. Parameters come from settings: `url` (the target of
//! `big-response` / `big-request`, which the operator must have approved).
//!
//! | attack          | what it does                                                                    |
//! |-----------------|---------------------------------------------------------------------------------|
//! | `big-response`  | GETs `url` (a server answering with an endless body) and reports what it got    |
//! | `big-request`   | POSTs an 8 MiB body to `url`                                                    |
//! | `big-log`       | logs one 16 MiB message, then succeeds                                          |
//! | `log-flood`     | logs 1,000,000 lines, then succeeds                                             |
//! | `state-flood`   | stores 64 KiB values under new keys until the host stops it                     |
//! | `state-big`     | stores one 2 MiB value                                                          |
//! | `big-error`     | fails with a 4 MiB transient error message                                      |
//! | `spin`          | spins forever; only the host's deadline stops it                                |
//! | `updates`       | (callback) answers 200 with 100,000 status updates                              |
//! | `headers`       | (callback) answers 200 with 40,000 headers plus framing and hop-by-hop headers  |
//! | `big-body`      | (callback) answers 200 with an 8 MiB body                                       |
//! | anything else   | behaves: start → `HOSTILE - Pending`; callback → 200 `ok`, no updates           |
//!
//! Every failure the host reports to it (an `http-error`) is returned as a `transient` error with
//! the host's text, so the host's reason ends up on the event where tests can read it.

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "connector" });

use std::hint::black_box;

use exports::switchyard::connector::screening::Guest;
use switchyard::connector::outbound_http::{self, OutgoingRequest};
use switchyard::connector::types::{
    CallbackResult, ConnectorError, HttpRequest, HttpResponse, Manifest, Package, ScreeningRequest,
    ScreeningState, Started, Status, StatusUpdate,
};
use switchyard::connector::{config, log, state};

/// The only label this connector returns.
const LABEL: &str = "HOSTILE - Pending";

struct Hostile;

export!(Hostile);

/// The attack named by `input`, else by the `attack` setting.
fn attack(input: &str) -> String {
    let input = input.trim();
    let named = input.strip_prefix("attack=").unwrap_or(input);
    let named = named.split_whitespace().next().unwrap_or("");
    if named.is_empty() {
        config::get("attack").unwrap_or_default()
    } else {
        named.to_ascii_lowercase()
    }
}

fn pending(order_ref: String) -> Started {
    Started {
        order_ref: Some(order_ref),
        status: status(),
    }
}

fn status() -> Status {
    Status {
        state: ScreeningState::Pending,
        label: LABEL.into(),
        report_url: None,
        score: None,
        verdict: None,
        note: None,
    }
}

fn transient(what: &str, e: outbound_http::HttpError) -> ConnectorError {
    ConnectorError::Transient(format!("{what}: {e:?}"))
}

/// The shared attacks (start or callback); `Ok(())` means "carry on and behave".
fn common(attack: &str) -> Result<(), ConnectorError> {
    match attack {
        "big-response" => {
            let url = config::get("url").unwrap_or_default();
            let response = outbound_http::send(&OutgoingRequest {
                method: "GET".into(),
                url,
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: Some(60_000),
            })
            .map_err(|e| transient("big-response", e))?;
            Err(ConnectorError::Rejected(format!(
                "big-response: the host handed over {} bytes",
                response.body.len()
            )))
        }
        "big-request" => {
            let url = config::get("url").unwrap_or_default();
            let response = outbound_http::send(&OutgoingRequest {
                method: "POST".into(),
                url,
                headers: Vec::new(),
                body: vec![b'x'; 8 << 20],
                timeout_ms: Some(10_000),
            })
            .map_err(|e| transient("big-request", e))?;
            Err(ConnectorError::Rejected(format!(
                "big-request: sent, answered {}",
                response.status
            )))
        }
        "big-log" => {
            let message = "A".repeat(16 << 20);
            log::log(
                log::Level::Warn,
                &message,
                &[("attack".into(), "big-log".into())],
            );
            Ok(())
        }
        "log-flood" => {
            for i in 0..1_000_000u32 {
                log::log(log::Level::Info, "flood", &[("n".into(), i.to_string())]);
            }
            Ok(())
        }
        "state-flood" => {
            let value = "v".repeat(64 << 10);
            for i in 0u64.. {
                state::set(&format!("flood:{i}"), &value);
            }
            Ok(())
        }
        "state-big" => {
            state::set("big", &"v".repeat(2 << 20));
            Ok(())
        }
        "big-error" => Err(ConnectorError::Transient("E".repeat(4 << 20))),
        "spin" => spin_forever(),
        _ => Ok(()),
    }
}

impl Guest for Hostile {
    fn manifest() -> Manifest {
        Manifest {
            id: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            display_name: "Hostile test connector".into(),
            config_fields: Vec::new(),
            outbound_hosts: Vec::new(),
            status_labels: vec![LABEL.into()],
            default_trigger_stage: None,
        }
    }

    fn list_packages() -> Result<Vec<Package>, ConnectorError> {
        Ok(Vec::new())
    }

    fn start_screening(request: ScreeningRequest) -> Result<Started, ConnectorError> {
        common(&attack(&request.candidate.name))?;
        Ok(pending(format!("hostile-{}", request.idempotency_key)))
    }

    fn handle_callback(request: HttpRequest) -> Result<CallbackResult, ConnectorError> {
        let body = String::from_utf8_lossy(&request.body).to_string();
        let attack = attack(&body);
        common(&attack)?;
        let ok = |headers: Vec<(String, String)>, body: Vec<u8>, updates: Vec<StatusUpdate>| {
            Ok(CallbackResult {
                response: HttpResponse {
                    status: 200,
                    headers,
                    body,
                },
                updates,
            })
        };
        match attack.as_str() {
            "updates" => {
                let updates = (0..100_000)
                    .map(|i| StatusUpdate {
                        order_ref: format!("flood-{i}"),
                        status: status(),
                    })
                    .collect();
                ok(Vec::new(), b"ok".to_vec(), updates)
            }
            "headers" => {
                let mut headers: Vec<(String, String)> = (0..40_000)
                    .map(|i| (format!("x-flood-{i}"), "y".repeat(32)))
                    .collect();
                headers.extend(
                    [
                        ("content-length", "999999"),
                        ("transfer-encoding", "chunked"),
                        ("connection", "close"),
                        ("keep-alive", "timeout=1"),
                        ("upgrade", "h2c"),
                        ("set-cookie", "session=stolen"),
                        ("content-type", "text/plain"),
                        ("x-hostile", "yes"),
                    ]
                    .map(|(k, v)| (k.to_string(), v.to_string())),
                );
                ok(headers, b"ok".to_vec(), Vec::new())
            }
            "big-body" => ok(Vec::new(), vec![b'b'; 8 << 20], Vec::new()),
            _ => ok(Vec::new(), b"ok".to_vec(), Vec::new()),
        }
    }
}

/// Pure computation that never calls the host: only the host's deadline can stop it.
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_attack_comes_from_the_input_first() {
        // `config::get` is only reached for empty input, which these never are.
        assert_eq!(super::attack("attack=spin"), "spin");
        assert_eq!(super::attack(" Updates "), "updates");
        assert_eq!(super::attack("big-log and more"), "big-log");
    }
}
