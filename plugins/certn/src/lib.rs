//! Switchyard connector for Certn background checks.
//!
//! This file is the only one that touches the generated bindings: it reads configuration and
//! state through the host's imports, calls Certn through `outbound-http`, and converts between the
//! contract's types and the plain Rust of the other modules (which are unit-tested natively).

pub mod api;
pub mod callback;
pub mod package;
pub mod signature;

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "connector" });

use exports::switchyard::connector::screening::Guest;
use switchyard::connector::log::{self as hostlog, Level};
use switchyard::connector::outbound_http::{self, HttpError, OutgoingRequest};
use switchyard::connector::types::{
    CallbackResult, ConfigField, ConnectorError, HttpRequest, HttpResponse, Manifest, Package,
    ScreeningRequest, ScreeningState, Started, Status, StatusUpdate,
};
use switchyard::connector::{config, state};

use callback::{State, LABEL_NO_EMAIL, LABEL_PENDING, STATUS_LABELS};

/// The exported connector.
struct Certn;

export!(Certn);

/// Config keys.
const KEY_API_BASE: &str = "api-base";
const KEY_API_KEY: &str = "api-key";
const KEY_WEBHOOK_SECRET: &str = "webhook-secret";

/// Prefix of the state keys that remember the order made for an idempotency key.
const ORDER_KEY_PREFIX: &str = "order:";

impl Guest for Certn {
    fn manifest() -> Manifest {
        let field = |key: &str, description: &str, secret: bool, required: bool| ConfigField {
            key: key.into(),
            description: description.into(),
            secret,
            required,
        };
        Manifest {
            id: "certn".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            display_name: "Certn background checks".into(),
            config_fields: vec![
                field(
                    KEY_API_BASE,
                    "Certn API base URL (default https://api.certn.co)",
                    false,
                    false,
                ),
                field(KEY_API_KEY, "Certn team API key", true, true),
                field(
                    KEY_WEBHOOK_SECRET,
                    "Certn webhook secret, used to verify Certn-Signature on callbacks",
                    true,
                    true,
                ),
            ],
            outbound_hosts: vec!["api.certn.co".into()],
            status_labels: STATUS_LABELS.iter().map(|l| l.to_string()).collect(),
            default_trigger_stage: None,
        }
    }

    fn list_packages() -> Result<Vec<Package>, ConnectorError> {
        let packages = config::packages();
        if packages.is_empty() {
            return Err(ConnectorError::Config(
                "no Certn packages are configured".into(),
            ));
        }
        Ok(packages)
    }

    fn start_screening(request: ScreeningRequest) -> Result<Started, ConnectorError> {
        let Some(email) = first_non_empty(&request.candidate.emails) else {
            log(
                Level::Warn,
                "candidate has no email; not inviting",
                &[("opportunity-id", &request.opportunity_id)],
            );
            return Ok(Started {
                order_ref: None,
                status: status(State::Error, LABEL_NO_EMAIL),
            });
        };

        // A retry of a request that already produced an order must not invite again. Checked
        // before package selection so a later config change cannot turn a retry into an error.
        let order_key = format!("{ORDER_KEY_PREFIX}{}", request.idempotency_key);
        if let Some(order_ref) = state::get(&order_key) {
            log(
                Level::Info,
                "order already exists for idempotency key",
                &[("order-ref", &order_ref)],
            );
            return Ok(Started {
                order_ref: Some(order_ref),
                status: status(State::Pending, LABEL_PENDING),
            });
        }

        let packages = config::packages();
        let chosen = choose_package(&packages, &request)?;

        let api_key = config::secret(KEY_API_KEY)
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| ConnectorError::Config("api-key is not set".into()))?;
        let url = api::invite_url(config::get(KEY_API_BASE).as_deref());

        let checks = chosen
            .params
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("checks"))
            .map(|(_, v)| package::request_flags(v))
            .unwrap_or_default();
        if checks.is_empty() {
            log(
                Level::Warn,
                "package has no checks parameter; inviting without request_* flags",
                &[("package", &chosen.name)],
            );
        }
        let body = api::invite_body(&api::Invite {
            email,
            phone: first_non_empty(&request.candidate.phones),
            package: &chosen.name,
            name: &request.candidate.name,
            request_flags: &checks,
        });

        let response = outbound_http::send(&OutgoingRequest {
            method: "POST".into(),
            url,
            headers: vec![
                ("authorization".into(), format!("Bearer {}", api_key.trim())),
                ("content-type".into(), "application/json".into()),
                ("idempotency-key".into(), request.idempotency_key.clone()),
            ],
            body,
            timeout_ms: Some(api::INVITE_TIMEOUT_MS),
        })
        .map_err(http_error)?;

        let order_ref = api::interpret_invite_response(response.status, &response.body, &api_key)
            .map_err(|e| match e {
            api::InviteError::Config(m) => ConnectorError::Config(m),
            api::InviteError::Transient(m) => ConnectorError::Transient(m),
            api::InviteError::Rejected(m) => ConnectorError::Rejected(m),
        })?;
        state::set(&order_key, &order_ref);
        log(
            Level::Info,
            "Certn invite sent",
            &[("order-ref", &order_ref), ("package", &chosen.name)],
        );
        Ok(Started {
            order_ref: Some(order_ref),
            status: status(State::Pending, LABEL_PENDING),
        })
    }

    fn handle_callback(request: HttpRequest) -> Result<CallbackResult, ConnectorError> {
        match request.method.to_ascii_uppercase().as_str() {
            "GET" => Ok(match callback::challenge(&request.query) {
                // Endpoint verification: echo the challenge as text/plain.
                Some(challenge) => no_updates(response(200, "text/plain", challenge.into_bytes())),
                None => no_updates(json_response(400, r#"{"error":"missing challenge"}"#)),
            }),
            "POST" => handle_webhook(&request),
            _ => Ok(no_updates(json_response(
                405,
                r#"{"error":"method not allowed"}"#,
            ))),
        }
    }
}

/// Verifies and applies a Certn application webhook.
fn handle_webhook(request: &HttpRequest) -> Result<CallbackResult, ConnectorError> {
    let secret = config::secret(KEY_WEBHOOK_SECRET)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ConnectorError::Config("webhook-secret is not set".into()))?;
    let header = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("certn-signature"))
        .map(|(_, value)| value.as_str());
    if let Err(e) = signature::verify(secret.as_bytes(), header, &request.body, unix_now()) {
        log(
            Level::Warn,
            "rejected Certn callback",
            &[("reason", e.as_str())],
        );
        return Ok(no_updates(json_response(
            401,
            r#"{"error":"invalid signature"}"#,
        )));
    }

    let app = match callback::parse_application(&request.body) {
        Ok(app) => app,
        Err(e) => {
            log(
                Level::Warn,
                "malformed Certn callback body",
                &[("error", &e)],
            );
            return Ok(no_updates(json_response(
                400,
                r#"{"error":"malformed body"}"#,
            )));
        }
    };

    let Some((state, label)) = callback::map_status(&app.status) else {
        // Answer 200 anyway: an error status would only make Certn retry something we will never
        // understand.
        log(
            Level::Warn,
            "ignoring Certn callback with unknown status",
            &[("order-ref", &app.id), ("status", &app.status)],
        );
        return Ok(no_updates(json_response(200, r#"{"received":true}"#)));
    };

    let mut status = status(state, label);
    status.report_url = app.report_url;
    status.verdict = app.result;
    Ok(CallbackResult {
        response: json_response(200, r#"{"received":true}"#),
        updates: vec![StatusUpdate {
            order_ref: app.id,
            status,
        }],
    })
}

/// Picks the package for a request (see `package::select_package`) and logs tag overrides.
fn choose_package(
    packages: &[Package],
    request: &ScreeningRequest,
) -> Result<Package, ConnectorError> {
    let refs: Vec<package::PackageRef<'_>> = packages
        .iter()
        .map(|p| package::PackageRef {
            name: &p.name,
            is_default: p.is_default,
        })
        .collect();
    let tags = request
        .opportunity_tags
        .iter()
        .chain(&request.posting_tags)
        .map(String::as_str);
    let selection =
        package::select_package(&refs, request.package.as_deref(), tags).map_err(|e| match e {
            package::SelectError::Unknown(name) => {
                ConnectorError::Rejected(format!("unknown package {name:?}"))
            }
            package::SelectError::NoDefault => {
                ConnectorError::Config("no default Certn package is configured".into())
            }
        })?;
    let chosen = packages[selection.index].clone();
    if let package::Reason::Tag { also_matched } = &selection.reason {
        let others = also_matched.join(", ");
        log(
            Level::Info,
            "package chosen by tag",
            &[("package", &chosen.name), ("also-matched", &others)],
        );
    }
    Ok(chosen)
}

/// Maps a transport failure onto the contract's error kinds.
fn http_error(e: HttpError) -> ConnectorError {
    match e {
        HttpError::Timeout => ConnectorError::Transient("Certn did not answer in time".into()),
        HttpError::Connection(m) => {
            ConnectorError::Transient(format!("could not reach Certn: {m}"))
        }
        HttpError::Denied(m) => {
            ConnectorError::Config(format!("outbound request to Certn denied: {m}"))
        }
        HttpError::Invalid(m) => ConnectorError::Config(format!("invalid request to Certn: {m}")),
    }
}

fn first_non_empty(values: &[String]) -> Option<&str> {
    values.iter().map(|v| v.trim()).find(|v| !v.is_empty())
}

fn status(state: State, label: &str) -> Status {
    Status {
        state: match state {
            State::Pending => ScreeningState::Pending,
            State::Analyzing => ScreeningState::Analyzing,
            State::Partial => ScreeningState::Partial,
            State::Complete => ScreeningState::Complete,
            State::Error => ScreeningState::Error,
            State::Cancelled => ScreeningState::Cancelled,
        },
        label: label.into(),
        report_url: None,
        score: None,
        verdict: None,
        note: None,
    }
}

fn response(code: u16, content_type: &str, body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status: code,
        headers: vec![("content-type".into(), content_type.into())],
        body,
    }
}

fn json_response(code: u16, body: &str) -> HttpResponse {
    response(code, "application/json", body.as_bytes().to_vec())
}

fn no_updates(response: HttpResponse) -> CallbackResult {
    CallbackResult {
        response,
        updates: Vec::new(),
    }
}

/// Seconds since the Unix epoch from the WASI wall clock (0 if the clock is before 1970, which
/// then fails the signature's freshness check rather than panicking).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    hostlog::log(level, message, &fields);
}
