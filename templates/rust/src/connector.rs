//! The connector's four operations.
//!
//! The vendor API is a placeholder to adapt to {{Name}}'s real one:
//! - `POST {api-base}/invitations` with `Authorization: Bearer <api-key>`, `Idempotency-Key: <key>`
//!   and `{"reference", "email", "name", "package", "callback_url"}` → `201 {"id", "status"}`;
//! - `GET {api-base}/invitations?reference=<key>` → `{"invitations": [{"id", "status", ...}]}`;
//! - callbacks: `POST` with `{"id", "status", "report_url"}`, `X-Timestamp: <unix seconds>` and
//!   `X-Signature: <hex HMAC-SHA256(webhook-secret, "<timestamp>.<body>")>`.
//!
//! If {{Name}} cannot find an order by our reference, change `lookup` in `start_screening`:
//! `switchyard_connector::lookup` has `by_field` (a field the vendor stores and lists by),
//! `by_email_since` (a search by email and time window) and `none` (no way at all: the host holds
//! the event for an operator instead of inviting twice).

use serde::{Deserialize, Serialize};
use switchyard_connector::http::{HttpFailure, Request};
use switchyard_connector::idempotency::{self, InviteError, OrderRef, Outcome};
use switchyard_connector::signature::{self, DEFAULT_TOLERANCE_SECS};
use switchyard_connector::text::{first_non_empty, header, urlencode};
use switchyard_connector::{
    config, CallbackResult, ConfigField, ConnectorError, Encoding, Host, HttpRequest, HttpResponse,
    Level, Manifest, Package, ResourceNeeds, ScreeningRequest, ScreeningState, Started, Status,
};

const VENDOR: &str = "{{Name}}";
const LABEL_PENDING: &str = "{{Name}} - Pending";
const LABEL_IN_PROGRESS: &str = "{{Name}} - In Progress";
const LABEL_COMPLETE: &str = "{{Name}} - Complete";
const LABEL_CANCELLED: &str = "{{Name}} - Cancelled";
const LABEL_NO_EMAIL: &str = "{{Name}} - ERROR (No Email)";

/// Called when the host loads the component; must not call any import.
pub fn manifest() -> Manifest {
    Manifest::new("{{name}}", env!("CARGO_PKG_VERSION"), "{{Name}}")
        .config_fields(vec![
            ConfigField::setting(
                "api-base",
                "{{Name}} API base URL, e.g. https://api.example.com",
                true,
            ),
            ConfigField::secret_setting("api-key", "{{Name}} API key", true),
            ConfigField::secret_setting(
                "webhook-secret",
                "Secret {{Name}} signs callbacks with (HMAC-SHA256)",
                true,
            ),
        ])
        // The hosts this connector calls by default; the operator approves others per integration.
        .outbound_hosts(&["api.example.com"])
        .status_labels(&[
            LABEL_PENDING,
            LABEL_IN_PROGRESS,
            LABEL_COMPLETE,
            LABEL_CANCELLED,
            LABEL_NO_EMAIL,
        ])
        // Rust components fit the host's defaults (3 core instances, a few MiB).
        .limits(ResourceNeeds::default())
}

/// The configured packages; none is an operator problem.
pub fn list_packages(host: &impl Host) -> Result<Vec<Package>, ConnectorError> {
    let packages = host.packages();
    if packages.is_empty() {
        return Err(ConnectorError::Config("no packages are configured".into()));
    }
    Ok(packages)
}

/// An invitation as the vendor describes it.
#[derive(Debug, Clone, Deserialize)]
struct Invitation {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    reference: Option<String>,
}

impl OrderRef for Invitation {
    fn order_ref(&self) -> &str {
        &self.id
    }
}

#[derive(Deserialize)]
struct Invitations {
    invitations: Vec<Invitation>,
}

#[derive(Serialize)]
struct InvitationBody<'a> {
    reference: &'a str,
    email: &'a str,
    name: &'a str,
    package: &'a str,
    callback_url: &'a str,
}

/// The state and label for a vendor status, if known.
fn status_of(vendor_status: &str) -> Option<Status> {
    let (state, label) = match vendor_status.trim().to_ascii_lowercase().as_str() {
        "pending" => (ScreeningState::Pending, LABEL_PENDING),
        "in_progress" => (ScreeningState::Analyzing, LABEL_IN_PROGRESS),
        "complete" => (ScreeningState::Complete, LABEL_COMPLETE),
        "cancelled" => (ScreeningState::Cancelled, LABEL_CANCELLED),
        _ => return None,
    };
    Some(Status::new(state, label))
}

fn pending() -> Status {
    Status::new(ScreeningState::Pending, LABEL_PENDING)
}

/// Invites the candidate, at most once per idempotency key (the SDK's `start_once` follows the
/// contract's pattern: intent recorded first, lookup by reference on a retry).
pub fn start_screening(
    host: &impl Host,
    request: &ScreeningRequest,
) -> Result<Started, ConnectorError> {
    let Some(email) = first_non_empty(&request.candidate.emails) else {
        return Ok(Started::without_order(Status::new(
            ScreeningState::Error,
            LABEL_NO_EMAIL,
        )));
    };
    let key = &request.idempotency_key;
    if let Some(order_ref) = idempotency::recorded(host, key) {
        return Ok(Started::order(order_ref, pending()));
    }
    let base = config::required_setting(host, "api-base")?;
    let base = base.trim_end_matches('/');
    let api_key = config::required_secret(host, "api-key")?;
    let packages = list_packages(host)?;
    let chosen = match request.package.as_deref() {
        Some(wanted) => packages
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(wanted.trim()))
            .ok_or_else(|| ConnectorError::Rejected(format!("unknown package {wanted:?}")))?,
        None => packages
            .iter()
            .find(|p| p.is_default)
            .unwrap_or(&packages[0]),
    };

    // Step 3 of the idempotency pattern: the order an earlier attempt may have placed.
    let lookup = || -> Result<Option<Invitation>, ConnectorError> {
        let found: Invitations =
            Request::get(format!("{base}/invitations?reference={}", urlencode(key)))
                .bearer(&api_key)
                .send_json(host)
                .map_err(|f| f.to_error(VENDOR))?;
        // An invitation carrying a reference must carry ours.
        Ok(found
            .invitations
            .into_iter()
            .find(|i| i.reference.as_deref().is_none_or(|r| r == key)))
    };
    let invite = || -> Result<Invitation, InviteError> {
        let callback_url = host.callback_url();
        Request::post(format!("{base}/invitations"))
            .bearer(&api_key)
            .header("idempotency-key", key.as_str())
            .json(&InvitationBody {
                reference: key,
                email,
                name: request.candidate.name.trim(),
                package: &chosen.name,
                callback_url: &callback_url,
            })
            .send_json(host)
            .map_err(|f: HttpFailure| InviteError::from_http(&f, VENDOR))
    };

    let outcome = idempotency::start_once(host, key, lookup, invite)?;
    let status = match &outcome {
        // Found by the lookup: show where it stands now.
        Outcome::Found(i) => i
            .status
            .as_deref()
            .and_then(status_of)
            .unwrap_or_else(pending),
        Outcome::Placed(_) | Outcome::Recorded(_) => pending(),
    };
    host.log(
        Level::Info,
        "invitation sent or found",
        &[
            ("order-ref", outcome.order_ref()),
            ("package", &chosen.name),
        ],
    );
    Ok(Started::order(outcome.order_ref(), status))
}

#[derive(Deserialize)]
struct Event {
    id: String,
    status: String,
    #[serde(default)]
    report_url: Option<String>,
}

/// Verifies a callback's signature with the host's `crypto` import and turns it into an update.
pub fn handle_callback(
    host: &impl Host,
    request: &HttpRequest,
) -> Result<CallbackResult, ConnectorError> {
    if !request.method.eq_ignore_ascii_case("POST") {
        return Ok(CallbackResult::reply(HttpResponse::json(
            405,
            r#"{"error":"method not allowed"}"#,
        )));
    }
    let secret = config::required_secret(host, "webhook-secret")?;
    let verified = signature::verify_timestamped(
        host,
        secret.as_bytes(),
        header(&request.headers, "x-timestamp").unwrap_or_default(),
        header(&request.headers, "x-signature"),
        &request.body,
        Encoding::Hex,
        DEFAULT_TOLERANCE_SECS,
    );
    if let Err(e) = verified {
        host.log(
            Level::Warn,
            "rejected a callback",
            &[("reason", e.as_str())],
        );
        return Ok(CallbackResult::reply(HttpResponse::json(
            401,
            r#"{"error":"invalid signature"}"#,
        )));
    }
    let Ok(event) = serde_json::from_slice::<Event>(&request.body) else {
        return Ok(CallbackResult::reply(HttpResponse::json(
            400,
            r#"{"error":"malformed body"}"#,
        )));
    };
    let Some(status) = status_of(&event.status) else {
        // Authentic but unknown: acknowledge so the vendor stops retrying, change nothing.
        host.log(
            Level::Warn,
            "ignored a callback with an unknown status",
            &[("order-ref", &event.id)],
        );
        return Ok(CallbackResult::reply(HttpResponse::json(
            200,
            r#"{"ok":true}"#,
        )));
    };
    Ok(CallbackResult::with_updates(
        HttpResponse::json(200, r#"{"ok":true}"#),
        vec![status
            .maybe_report_url(event.report_url)
            .for_order(event.id)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_connector::testing::{hmac_sha256_hex, FakeHost, DEFAULT_NOW};
    use switchyard_connector::{Candidate, HttpError};

    const BASE: &str = "https://api.example.com";
    const KEY: &str = "lever:tok-1";

    fn host() -> FakeHost {
        FakeHost::new()
            .with_config("api-base", BASE)
            .with_secret("api-key", "key_1")
            .with_secret("webhook-secret", "whsec_1")
            .with_package("Basic", true, &[])
    }

    fn request(emails: &[&str]) -> ScreeningRequest {
        ScreeningRequest {
            idempotency_key: KEY.into(),
            candidate: Candidate {
                name: "Ada Lovelace".into(),
                emails: emails.iter().map(|e| e.to_string()).collect(),
                phones: vec![],
            },
            opportunity_id: "opp-1".into(),
            opportunity_tags: vec![],
            posting_id: None,
            posting_tags: vec![],
            stage: None,
            package: None,
        }
    }

    #[test]
    fn invites_once_and_records_the_order() {
        let host = host();
        host.respond(
            "POST",
            &format!("{BASE}/invitations"),
            201,
            r#"{"id":"inv-1"}"#,
        );
        let started = start_screening(&host, &request(&["ada@example.com"])).unwrap();
        assert_eq!(started.order_ref.as_deref(), Some("inv-1"));
        assert!(start_screening(&host, &request(&["ada@example.com"])).is_ok());
        assert_eq!(host.requests().len(), 1, "a retry sends nothing");
        assert_eq!(
            host.state(&format!("order:{KEY}")).as_deref(),
            Some("inv-1")
        );
    }

    #[test]
    fn after_a_timeout_the_retry_looks_up_first() {
        let host = host();
        host.fail("POST", &format!("{BASE}/invitations"), HttpError::Timeout);
        assert!(start_screening(&host, &request(&["ada@example.com"])).is_err());
        host.respond(
            "GET",
            &format!("{BASE}/invitations?reference=lever%3Atok-1"),
            200,
            r#"{"invitations":[{"id":"inv-1","status":"in_progress","reference":"lever:tok-1"}]}"#,
        );
        let started = start_screening(&host, &request(&["ada@example.com"])).unwrap();
        assert_eq!(started.status.label, LABEL_IN_PROGRESS);
        assert_eq!(host.count("POST", &format!("{BASE}/invitations")), 1);
    }

    #[test]
    fn no_email_is_an_error_status_without_a_call() {
        let host = host();
        let started = start_screening(&host, &request(&[" "])).unwrap();
        assert_eq!(started.status.label, LABEL_NO_EMAIL);
        assert!(host.requests().is_empty());
    }

    fn signed(body: &str, secret: &[u8], at: i64) -> HttpRequest {
        let message = format!("{at}.{body}");
        HttpRequest {
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: vec![
                ("x-timestamp".into(), at.to_string()),
                (
                    "x-signature".into(),
                    hmac_sha256_hex(secret, message.as_bytes()),
                ),
            ],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn signed_callbacks_become_updates_and_bad_ones_are_refused() {
        let host = host();
        let body = r#"{"id":"inv-1","status":"complete"}"#;
        let ok = handle_callback(&host, &signed(body, b"whsec_1", DEFAULT_NOW)).unwrap();
        assert_eq!(ok.response.status, 200);
        assert_eq!(ok.updates[0].status.label, LABEL_COMPLETE);
        for bad in [
            signed(body, b"other", DEFAULT_NOW),
            signed(body, b"whsec_1", DEFAULT_NOW - 301),
        ] {
            let r = handle_callback(&host, &bad).unwrap();
            assert_eq!((r.response.status, r.updates.len()), (401, 0));
        }
    }
}
