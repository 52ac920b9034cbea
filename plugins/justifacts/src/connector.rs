//! The connector's four operations, written against the SDK's `Host` (unit-tested natively with
//! `FakeHost`); every decision is delegated to the plain modules, and `lib.rs` only exports
//! these functions.

use serde_json::Value;
use switchyard_connector::http::Request;
use switchyard_connector::idempotency::{self, InviteError, OrderRef, Outcome};
use switchyard_connector::text::{first_non_empty, header};
use switchyard_connector::{
    config, CallbackResult, ConfigField, ConnectorError, Host, HttpRequest, HttpResponse, Level,
    Manifest, Note, Package, ResourceNeeds, ScreeningRequest, ScreeningState, Started, Status,
};

use crate::callback::{self, VendorStatus};
use crate::labels;
use crate::order::{self, Applicant, Order, OrderBody, OrderFailure};
use crate::package::{ConfiguredPackage, PACKAGE_CODE_PARAM};
use crate::plan::{self, Plan, RequestView};

/// How the vendor is named in errors.
const VENDOR: &str = "Justifacts";
/// Where Justifacts' production API lives.
const DEFAULT_API_BASE: &str = "https://api.justifacts.com";
/// Per-request timeout; the host caps it as well.
const TIMEOUT_MS: u32 = 15_000;

/// The connector's self-description.
pub fn manifest() -> Manifest {
    Manifest::new(
        "justifacts",
        env!("CARGO_PKG_VERSION"),
        "Justifacts background checks",
    )
    .config_fields(vec![
        ConfigField::setting(
            "api-base",
            "Justifacts API base URL (default https://api.justifacts.com; point it at a \
             sandbox or simulator for testing)",
            false,
        ),
        ConfigField::setting("client-code", "Your JWeb client account code", true),
        ConfigField::secret_setting("api-key", "Justifacts API key (Bearer token)", true),
        ConfigField::secret_setting(
            "webhook-secret",
            "Secret Justifacts signs status callbacks with (HMAC-SHA256)",
            true,
        ),
    ])
    .outbound_hosts(&["api.justifacts.com"])
    .status_labels(&labels::ALL)
    .default_trigger_stage("Background Check")
    // A Rust component fits the host's defaults.
    .limits(ResourceNeeds::default())
}

/// The configured packages (possibly none: Lever integrations choose by posting tag).
pub fn list_packages(host: &impl Host) -> Result<Vec<Package>, ConnectorError> {
    Ok(host.packages())
}

impl OrderRef for Order {
    fn order_ref(&self) -> &str {
        &self.order_id
    }
}

fn candidate_pending() -> Status {
    Status::new(ScreeningState::Pending, labels::IN_PROGRESS_CANDIDATE)
}

fn configured_packages(host: &impl Host) -> Vec<ConfiguredPackage> {
    host.packages()
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

/// Orders the background check at most once per idempotency key (intent recorded first; a
/// retry with an intent looks the order up by `client_order_ref` before ordering again), or
/// explains in an error status why it cannot.
pub fn start_screening(
    host: &impl Host,
    request: &ScreeningRequest,
) -> Result<Started, ConnectorError> {
    let key = &request.idempotency_key;
    if let Some(order_id) = idempotency::recorded(host, key) {
        // Already ordered for this request: never invite twice.
        return Ok(Started::order(order_id, candidate_pending()));
    }

    let client_code = config::required_setting(host, "client-code")?;
    let api_key = config::required_secret(host, "api-key")?;
    let api_base = config::setting_or(host, "api-base", DEFAULT_API_BASE);

    let configured = configured_packages(host);
    let view = RequestView {
        emails: &request.candidate.emails,
        posting_tags: &request.posting_tags,
        opportunity_tags: &request.opportunity_tags,
        package: request.package.as_deref(),
        stage: request.stage.as_deref(),
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
            host.log(
                Level::Warn,
                "Justifacts screening not started",
                &[
                    ("opportunity-id", &request.opportunity_id),
                    ("reason", reason),
                ],
            );
            return Ok(Started::without_order(
                Status::new(ScreeningState::Error, label).note(Note::public(note)),
            ));
        }
    };

    let lookup = || -> Result<Option<Order>, ConnectorError> {
        let answer: Value = Request::get(order::lookup_url(&api_base, key))
            .bearer(&api_key)
            .timeout_ms(TIMEOUT_MS)
            .send_json(host)
            .map_err(|f| f.to_error(VENDOR))?;
        order::find_order(&answer, key).map_err(|e| {
            ConnectorError::Transient(format!("unreadable Justifacts order lookup: {e}"))
        })
    };
    let invite = || -> Result<Order, InviteError> {
        let callback_url = host.callback_url();
        let body = OrderBody {
            client_code: &client_code,
            package_code: &package_code,
            reference: &request.opportunity_id,
            client_order_ref: key,
            callback_url: &callback_url,
            applicant: Applicant {
                name: request.candidate.name.trim(),
                email: &email,
                phone: first_non_empty(&request.candidate.phones),
            },
        };
        let response = Request::post(order::orders_url(&api_base))
            .bearer(&api_key)
            .header("accept", "application/json")
            .header("idempotency-key", key.as_str())
            .json(&body)
            .timeout_ms(TIMEOUT_MS)
            .send(host)
            .map_err(|f| InviteError::from_http(&f, VENDOR))?;
        order::read_response(response.status, &response.body)
            .map(Order::placed)
            .map_err(|f| {
                let error = match f {
                    OrderFailure::Transient(m) => ConnectorError::Transient(m),
                    OrderFailure::Config(m) => ConnectorError::Config(m),
                    OrderFailure::Rejected(m) => ConnectorError::Rejected(m),
                };
                InviteError::for_status(response.status, error)
            })
    };

    let outcome = idempotency::start_once(host, key, lookup, invite)?;
    let status = match &outcome {
        // An earlier attempt's order: show where it stands now.
        Outcome::Found(o) => VendorStatus::parse(&o.status)
            .map(|s| callback::status_for(s, o.result.as_deref(), o.result_url.as_deref()))
            .unwrap_or_else(candidate_pending),
        Outcome::Placed(_) => {
            host.log(
                Level::Info,
                "Justifacts order placed",
                &[
                    ("opportunity-id", &request.opportunity_id),
                    ("order-id", outcome.order_ref()),
                    ("package-code", &package_code),
                ],
            );
            candidate_pending()
        }
        Outcome::Recorded(_) => candidate_pending(),
    };
    Ok(Started::order(outcome.order_ref(), status))
}

/// Verifies a status callback and turns it into an update (see [`callback::handle`]).
pub fn handle_callback(
    host: &impl Host,
    request: &HttpRequest,
) -> Result<CallbackResult, ConnectorError> {
    let secret = config::required_secret(host, "webhook-secret")?;
    let handled = callback::handle(
        host,
        &request.method,
        |name| header(&request.headers, name),
        &request.body,
        secret.trim().as_bytes(),
    );
    if let Some((level, message)) = &handled.log {
        host.log(*level, message, &[]);
    }
    Ok(CallbackResult::with_updates(
        HttpResponse::json(handled.http_status, &handled.body),
        handled.update.into_iter().collect(),
    ))
}

#[cfg(test)]
#[path = "connector_tests.rs"]
mod tests;
