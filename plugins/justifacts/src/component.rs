//! The WIT glue: implements `screening` with the host's imports, delegating every decision to the
//! plain modules.

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "connector" });

use self::exports::switchyard::connector::screening::Guest;
use self::switchyard::connector::outbound_http::{self, HttpError, OutgoingRequest};
use self::switchyard::connector::types::{
    CallbackResult, ConfigField, ConnectorError, HttpRequest, HttpResponse, Manifest, Note,
    Package, ScreeningRequest, ScreeningState, Started, Status, StatusUpdate,
};
use self::switchyard::connector::{config, log, state};

use crate::callback::{self, LogLevel};
use crate::labels;
use crate::order::{self, Applicant, OrderBody, OrderFailure};
use crate::package::{ConfiguredPackage, PACKAGE_CODE_PARAM};
use crate::plan::{self, Plan, RequestView};

/// Where Justifacts' production API lives.
const DEFAULT_API_BASE: &str = "https://api.justifacts.com";
/// Per-request timeout; the host caps it as well.
const TIMEOUT_MS: u32 = 15_000;

struct Component;

export!(Component);

fn field(key: &str, description: &str, secret: bool, required: bool) -> ConfigField {
    ConfigField {
        key: key.to_string(),
        description: description.to_string(),
        secret,
        required,
    }
}

fn status(state: ScreeningState, label: &str) -> Status {
    Status {
        state,
        label: label.to_string(),
        report_url: None,
        score: None,
        verdict: None,
        note: None,
    }
}

/// The state key remembering the order placed for an idempotency key.
fn order_key(idempotency_key: &str) -> String {
    format!("order:{idempotency_key}")
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn required_secret(key: &str) -> Result<String, ConnectorError> {
    config::secret(key)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ConnectorError::Config(format!("missing secret `{key}`")))
}

/// Unix time in seconds from the WASI wall clock. The contract has no clock import, but every
/// wasm32-wasip2 component may use `wasi:clocks`; a clock before 1970 reads as 0, which makes
/// every signature stale (fails closed).
fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn configured_packages() -> Vec<ConfiguredPackage> {
    config::packages()
        .into_iter()
        .map(|p| ConfiguredPackage {
            code: p
                .params
                .iter()
                .find(|(k, _)| k == PACKAGE_CODE_PARAM || k == "code")
                .map(|(_, v)| v.clone()),
            name: p.name,
        })
        .collect()
}

fn convert_status(s: callback::Status) -> Status {
    Status {
        state: match s.state {
            callback::State::Pending => ScreeningState::Pending,
            callback::State::Analyzing => ScreeningState::Analyzing,
            callback::State::Complete => ScreeningState::Complete,
            callback::State::Cancelled => ScreeningState::Cancelled,
        },
        label: s.label.to_string(),
        report_url: s.report_url,
        score: None,
        verdict: s.verdict,
        note: s.note.map(|n| Note {
            text: n.text,
            secret: n.secret,
        }),
    }
}

impl Guest for Component {
    fn manifest() -> Manifest {
        Manifest {
            id: "justifacts".to_string(),
            version: "0.1.0".to_string(),
            display_name: "Justifacts background checks".to_string(),
            config_fields: vec![
                field(
                    "api-base",
                    "Justifacts API base URL (default https://api.justifacts.com; point it at a \
                     sandbox or simulator for testing)",
                    false,
                    false,
                ),
                field("client-code", "Your JWeb client account code", false, true),
                field("api-key", "Justifacts API key (Bearer token)", true, true),
                field(
                    "webhook-secret",
                    "Secret Justifacts signs status callbacks with (HMAC-SHA256)",
                    true,
                    true,
                ),
            ],
            outbound_hosts: vec!["api.justifacts.com".to_string()],
            status_labels: labels::ALL.iter().map(|l| l.to_string()).collect(),
            default_trigger_stage: Some("Background Check".to_string()),
        }
    }

    fn list_packages() -> Result<Vec<Package>, ConnectorError> {
        Ok(config::packages())
    }

    fn start_screening(request: ScreeningRequest) -> Result<Started, ConnectorError> {
        let key = order_key(&request.idempotency_key);
        if let Some(order_id) = state::get(&key) {
            // Already ordered for this request: never invite twice.
            return Ok(Started {
                order_ref: Some(order_id),
                status: status(ScreeningState::Pending, labels::IN_PROGRESS_CANDIDATE),
            });
        }

        let client_code = config::get("client-code")
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ConnectorError::Config("missing setting `client-code`".into()))?;
        let api_key = required_secret("api-key")?;
        let api_base = config::get("api-base")
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_API_BASE.to_string());

        let configured = configured_packages();
        let view = RequestView {
            emails: &request.candidate.emails,
            posting_tags: &request.posting_tags,
            opportunity_tags: &request.opportunity_tags,
            package: request.package.as_deref(),
        };
        let (package_code, email) = match plan::plan(view, &configured) {
            Plan::Order {
                package_code,
                email,
            } => (package_code, email),
            Plan::Refuse {
                label,
                note,
                reason,
            } => {
                log::log(
                    log::Level::Warn,
                    "Justifacts screening not started",
                    &fields(&[
                        ("opportunity-id", &request.opportunity_id),
                        ("reason", reason),
                    ]),
                );
                let mut st = status(ScreeningState::Error, label);
                st.note = Some(Note {
                    text: note,
                    secret: false,
                });
                return Ok(Started {
                    order_ref: None,
                    status: st,
                });
            }
        };

        let phone = request
            .candidate
            .phones
            .iter()
            .map(|p| p.trim())
            .find(|p| !p.is_empty());
        let callback_url = config::callback_url();
        let body = OrderBody {
            client_code: &client_code,
            package_code: &package_code,
            reference: &request.opportunity_id,
            callback_url: &callback_url,
            applicant: Applicant {
                name: request.candidate.name.trim(),
                email: &email,
                phone,
            },
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| ConnectorError::Rejected(format!("cannot encode order: {e}")))?;
        let response = outbound_http::send(&OutgoingRequest {
            method: "POST".to_string(),
            url: order::orders_url(&api_base),
            headers: vec![
                ("authorization".into(), format!("Bearer {}", api_key.trim())),
                ("content-type".into(), "application/json".into()),
                ("accept".into(), "application/json".into()),
                ("idempotency-key".into(), request.idempotency_key.clone()),
            ],
            body,
            timeout_ms: Some(TIMEOUT_MS),
        })
        .map_err(|e| match e {
            HttpError::Denied(m) => ConnectorError::Config(format!(
                "outbound request to Justifacts denied ({m}): approve the api-base host"
            )),
            HttpError::Timeout => ConnectorError::Transient("Justifacts timed out".into()),
            HttpError::Connection(m) => {
                ConnectorError::Transient(format!("cannot reach Justifacts: {m}"))
            }
            HttpError::Invalid(m) => {
                ConnectorError::Config(format!("invalid Justifacts request (check api-base): {m}"))
            }
        })?;

        let order_id =
            order::read_response(response.status, &response.body).map_err(|f| match f {
                OrderFailure::Transient(m) => ConnectorError::Transient(m),
                OrderFailure::Config(m) => ConnectorError::Config(m),
                OrderFailure::Rejected(m) => ConnectorError::Rejected(m),
            })?;
        state::set(&key, &order_id);
        log::log(
            log::Level::Info,
            "Justifacts order placed",
            &fields(&[
                ("opportunity-id", &request.opportunity_id),
                ("order-id", &order_id),
                ("package-code", &package_code),
            ]),
        );
        Ok(Started {
            order_ref: Some(order_id),
            status: status(ScreeningState::Pending, labels::IN_PROGRESS_CANDIDATE),
        })
    }

    fn handle_callback(request: HttpRequest) -> Result<CallbackResult, ConnectorError> {
        let secret = required_secret("webhook-secret")?;
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let handled = callback::handle(
            &request.method,
            header,
            &request.body,
            secret.trim().as_bytes(),
            now_secs(),
        );
        if let Some((level, message)) = &handled.log {
            let level = match level {
                LogLevel::Info => log::Level::Info,
                LogLevel::Warn => log::Level::Warn,
            };
            log::log(level, message, &[]);
        }
        Ok(CallbackResult {
            response: HttpResponse {
                status: handled.http_status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: handled.body.into_bytes(),
            },
            updates: handled
                .update
                .map(|u| StatusUpdate {
                    order_ref: u.order_ref,
                    status: convert_status(u.status),
                })
                .into_iter()
                .collect(),
        })
    }
}
