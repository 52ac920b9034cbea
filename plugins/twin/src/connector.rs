//! The twin's operations, written against the SDK's [`Host`] so they run unchanged inside a
//! component (`WasmHost`) and natively (the benchmark's host).

use serde::Deserialize;
use serde_json::json;
use switchyard_connector::http::Request;
use switchyard_connector::{
    CallbackResult, ConfigField, ConnectorError, Host, HttpRequest, HttpResponse, Manifest,
    Package, ScreeningRequest, ScreeningState, Started, Status,
};

/// The connector id.
pub const ID: &str = "twin";
/// Setting: the vendor's API base (the benchmark's Certn simulator).
pub const KEY_API_BASE: &str = "api-base";
/// Secret: the vendor's API key.
pub const KEY_API_KEY: &str = "api-key";
/// The invite endpoint below the API base.
const INVITE_PATH: &str = "/api/v1/hr/applications/invite/";

/// The vendor's answer to an invite (only what the status needs).
#[derive(Deserialize)]
struct Application {
    id: String,
    status: String,
    status_label: String,
    report_url: Option<String>,
}

/// `manifest`.
pub fn manifest() -> Manifest {
    Manifest::new(ID, "0.1.0", "Twin (benchmark)")
        .config_fields(vec![
            ConfigField::setting(KEY_API_BASE, "The vendor's API base URL", true),
            ConfigField::secret_setting(KEY_API_KEY, "The vendor's API key", true),
        ])
        .status_labels(&[
            "TWIN - Pending",
            "TWIN - Analyzing",
            "TWIN - Partial",
            "TWIN - Complete",
        ])
}

/// `list-packages`: the configured ones.
pub fn list_packages(host: &impl Host) -> Result<Vec<Package>, ConnectorError> {
    Ok(host.packages())
}

/// `start-screening`: builds the invite, sends it through the host, maps the answer.
pub fn start_screening(
    host: &impl Host,
    request: &ScreeningRequest,
) -> Result<Started, ConnectorError> {
    let base = host
        .setting(KEY_API_BASE)
        .ok_or_else(|| ConnectorError::Config(format!("`{KEY_API_BASE}` is not set")))?;
    let key = host
        .secret(KEY_API_KEY)
        .ok_or_else(|| ConnectorError::Config(format!("`{KEY_API_KEY}` is not set")))?;
    let Some(email) = request.candidate.emails.first() else {
        return Ok(Started {
            order_ref: None,
            status: Status::new(ScreeningState::Error, "TWIN - Pending"),
        });
    };
    let package = request.package.clone().unwrap_or_else(|| "Basic".into());
    let (first, last) = request
        .candidate
        .name
        .split_once(' ')
        .unwrap_or((request.candidate.name.as_str(), ""));
    let body = json!({
        "email": email,
        "package": package,
        "reference": request.idempotency_key,
        "information": { "first_name": first, "last_name": last },
    });
    let app: Application = Request::post(format!("{}{INVITE_PATH}", base.trim_end_matches('/')))
        .bearer(&key)
        .header("idempotency-key", request.idempotency_key.clone())
        .json(&body)
        .timeout_ms(10_000)
        .send_json(host)
        .map_err(|e| e.to_error("the vendor"))?;
    let state = match app.status.as_str() {
        "ANALYZING" => ScreeningState::Analyzing,
        "PARTIAL" => ScreeningState::Partial,
        "COMPLETE" => ScreeningState::Complete,
        _ => ScreeningState::Pending,
    };
    Ok(Started {
        order_ref: Some(app.id),
        status: Status::new(state, format!("TWIN - {}", app.status_label))
            .maybe_report_url(app.report_url),
    })
}

/// `handle-callback`: acknowledged, nothing changes (the benchmark measures invitations).
pub fn handle_callback(
    _host: &impl Host,
    _request: &HttpRequest,
) -> Result<CallbackResult, ConnectorError> {
    Ok(CallbackResult::reply(HttpResponse::text(200, "ok")))
}
