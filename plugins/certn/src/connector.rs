//! The connector's four operations, written against the SDK's `Host` so that the unit tests run
//! them natively with `FakeHost`; `lib.rs` only exports them.

use serde_json::Value;
use switchyard_connector::http::Request;
use switchyard_connector::idempotency::{self, InviteError, OrderRef, Outcome};
use switchyard_connector::signature::{self, DEFAULT_TOLERANCE_SECS};
use switchyard_connector::text::{first_non_empty, header};
use switchyard_connector::{
    config, CallbackResult, ConfigField, ConnectorError, Host, HttpRequest, HttpResponse, Level,
    Manifest, Package, ResourceNeeds, ScreeningRequest, ScreeningState, Started, Status,
};

use crate::api;
use crate::callback::{self, Application, LABEL_NO_EMAIL, LABEL_PENDING, STATUS_LABELS};
use crate::package;

/// How the vendor is named in errors.
const VENDOR: &str = "Certn";

/// Config keys.
const KEY_API_BASE: &str = "api-base";
const KEY_API_KEY: &str = "api-key";
const KEY_WEBHOOK_SECRET: &str = "webhook-secret";

/// The connector's self-description.
pub fn manifest() -> Manifest {
    Manifest::new(
        "certn",
        env!("CARGO_PKG_VERSION"),
        "Certn background checks",
    )
    .config_fields(vec![
        ConfigField::setting(
            KEY_API_BASE,
            "Certn API base URL (default https://api.certn.co)",
            false,
        ),
        ConfigField::secret_setting(KEY_API_KEY, "Certn team API key", true),
        ConfigField::secret_setting(
            KEY_WEBHOOK_SECRET,
            "Certn webhook secret, used to verify Certn-Signature on callbacks",
            true,
        ),
    ])
    .outbound_hosts(&["api.certn.co"])
    .status_labels(&STATUS_LABELS)
    // A Rust component fits the host's defaults.
    .limits(ResourceNeeds::default())
}

/// The configured packages; none, or one without a service, is an operator problem (the host
/// asks when an integration's packages are saved and at start-up, before any invitation).
pub fn list_packages(host: &impl Host) -> Result<Vec<Package>, ConnectorError> {
    let packages = host.packages();
    if packages.is_empty() {
        return Err(ConnectorError::Config(
            "no Certn packages are configured".into(),
        ));
    }
    for p in &packages {
        package::require_service(&p.name, p.param("checks")).map_err(ConnectorError::Config)?;
    }
    Ok(packages)
}

impl OrderRef for Application {
    fn order_ref(&self) -> &str {
        &self.id
    }
}

fn pending() -> Status {
    Status::new(ScreeningState::Pending, LABEL_PENDING)
}

/// Invites the candidate at most once per idempotency key (intent recorded first; a retry with
/// an intent looks the application up by our reference before inviting again).
pub fn start_screening(
    host: &impl Host,
    request: &ScreeningRequest,
) -> Result<Started, ConnectorError> {
    let Some(email) = first_non_empty(&request.candidate.emails) else {
        host.log(
            Level::Warn,
            "candidate has no email; not inviting",
            &[("opportunity-id", &request.opportunity_id)],
        );
        return Ok(Started::without_order(Status::new(
            ScreeningState::Error,
            LABEL_NO_EMAIL,
        )));
    };

    // A retry of a request that already produced an order must not invite again. Checked
    // before package selection so a later config change cannot turn a retry into an error.
    let key = &request.idempotency_key;
    if let Some(order_ref) = idempotency::recorded(host, key) {
        host.log(
            Level::Info,
            "order already exists for idempotency key",
            &[("order-ref", &order_ref)],
        );
        return Ok(Started::order(order_ref, pending()));
    }

    let chosen = choose_package(host, &host.packages(), request)?;
    let api_key = config::required_secret(host, KEY_API_KEY)?;
    let api_base = host.setting(KEY_API_BASE);

    // Refused before the invitation, so a package saved before this check existed never sends
    // the candidate an empty check.
    let checks = package::require_service(&chosen.name, chosen.param("checks"))
        .map_err(ConnectorError::Config)?;

    let lookup = || -> Result<Option<Application>, ConnectorError> {
        let answer: Value = Request::get(api::lookup_url(api_base.as_deref(), key))
            .bearer(&api_key)
            .timeout_ms(api::INVITE_TIMEOUT_MS)
            .send_json(host)
            .map_err(|f| f.to_error(VENDOR))?;
        api::find_application(&answer, key).map_err(|e| {
            ConnectorError::Transient(format!("unreadable Certn application lookup: {e}"))
        })
    };
    let invite = || -> Result<Application, InviteError> {
        let body = api::invite_body(&api::Invite {
            email,
            phone: first_non_empty(&request.candidate.phones),
            package: &chosen.name,
            name: &request.candidate.name,
            reference: key,
            request_flags: &checks,
        });
        let response = Request::post(api::invite_url(api_base.as_deref()))
            .bearer(&api_key)
            .header("idempotency-key", key.as_str())
            .body("application/json", body)
            .timeout_ms(api::INVITE_TIMEOUT_MS)
            .send(host)
            .map_err(|f| InviteError::from_http(&f, VENDOR))?;
        let id = api::interpret_invite_response(response.status, &response.body, &api_key)
            .map_err(|e| {
                let error = match e {
                    api::InviteError::Config(m) => ConnectorError::Config(m),
                    api::InviteError::Transient(m) => ConnectorError::Transient(m),
                    api::InviteError::Rejected(m) => ConnectorError::Rejected(m),
                };
                InviteError::for_status(response.status, error)
            })?;
        Ok(Application {
            id,
            status: "PENDING".into(),
            report_url: None,
            result: None,
        })
    };

    let outcome = idempotency::start_once(host, key, lookup, invite)?;
    let status = match &outcome {
        // An earlier attempt's application: show where it stands now.
        Outcome::Found(app) => callback::status_of(app).unwrap_or_else(pending),
        Outcome::Placed(_) => {
            host.log(
                Level::Info,
                "Certn invite sent",
                &[
                    ("order-ref", outcome.order_ref()),
                    ("package", &chosen.name),
                ],
            );
            pending()
        }
        Outcome::Recorded(_) => pending(),
    };
    Ok(Started::order(outcome.order_ref(), status))
}

/// Picks the package for a request (see `package::select_package`) and logs tag overrides.
fn choose_package(
    host: &impl Host,
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
        host.log(
            Level::Info,
            "package chosen by tag",
            &[("package", &chosen.name), ("also-matched", &others)],
        );
    }
    Ok(chosen)
}

/// Endpoint verification (`GET ?challenge=`) and signed application webhooks (`POST`).
pub fn handle_callback(
    host: &impl Host,
    request: &HttpRequest,
) -> Result<CallbackResult, ConnectorError> {
    match request.method.to_ascii_uppercase().as_str() {
        "GET" => Ok(match callback::challenge(&request.query) {
            // Endpoint verification: echo the challenge as text/plain.
            Some(challenge) => CallbackResult::reply(HttpResponse::text(200, challenge)),
            None => {
                CallbackResult::reply(HttpResponse::json(400, r#"{"error":"missing challenge"}"#))
            }
        }),
        "POST" => handle_webhook(host, request),
        _ => Ok(CallbackResult::reply(HttpResponse::json(
            405,
            r#"{"error":"method not allowed"}"#,
        ))),
    }
}

/// Verifies and applies a Certn application webhook.
fn handle_webhook(
    host: &impl Host,
    request: &HttpRequest,
) -> Result<CallbackResult, ConnectorError> {
    let secret = config::required_secret(host, KEY_WEBHOOK_SECRET)?;
    // `Certn-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
    if let Err(e) = signature::verify_stripe_style(
        host,
        secret.as_bytes(),
        header(&request.headers, "certn-signature"),
        &request.body,
        DEFAULT_TOLERANCE_SECS,
    ) {
        host.log(
            Level::Warn,
            "rejected Certn callback",
            &[("reason", e.as_str())],
        );
        return Ok(CallbackResult::reply(HttpResponse::json(
            401,
            r#"{"error":"invalid signature"}"#,
        )));
    }

    let app = match callback::parse_application(&request.body) {
        Ok(app) => app,
        Err(e) => {
            host.log(
                Level::Warn,
                "malformed Certn callback body",
                &[("error", &e)],
            );
            return Ok(CallbackResult::reply(HttpResponse::json(
                400,
                r#"{"error":"malformed body"}"#,
            )));
        }
    };

    let received = || HttpResponse::json(200, r#"{"received":true}"#);
    let Some(status) = callback::status_of(&app) else {
        // Answer 200 anyway: an error status would only make Certn retry something we will never
        // understand.
        host.log(
            Level::Warn,
            "ignoring Certn callback with unknown status",
            &[("order-ref", &app.id), ("status", &app.status)],
        );
        return Ok(CallbackResult::reply(received()));
    };
    Ok(CallbackResult::with_updates(
        received(),
        vec![status.for_order(app.id)],
    ))
}

#[cfg(test)]
#[path = "connector_tests.rs"]
mod tests;
