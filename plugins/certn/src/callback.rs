//! Parsing Certn webhooks: the application JSON they carry (also what the lookup by reference
//! returns) and the endpoint-verification query.

use serde::Deserialize;
use serde_json::Value;
use switchyard_connector::text::query_param;
use switchyard_connector::{ScreeningState as State, Status};

/// Label for an invite that could not be sent because the candidate has no email.
pub const LABEL_NO_EMAIL: &str = "CERTN - ERROR (No Email)";
/// Label for a freshly sent invite.
pub const LABEL_PENDING: &str = "CERTN - Pending";

/// Every label this connector returns, in the order the manifest lists them.
pub const STATUS_LABELS: [&str; 6] = [
    LABEL_PENDING,
    "CERTN - Analyzing",
    "CERTN - Partial",
    "CERTN - Complete",
    LABEL_NO_EMAIL,
    "CERTN - Cancelled",
];

/// Maps a Certn application `status` to our state and the label recruiters see.
/// Returns `None` for a status we do not know.
pub fn map_status(status: &str) -> Option<(State, &'static str)> {
    match status.trim().to_ascii_uppercase().as_str() {
        "PENDING" => Some((State::Pending, LABEL_PENDING)),
        "ANALYZING" => Some((State::Analyzing, "CERTN - Analyzing")),
        "PARTIAL" => Some((State::Partial, "CERTN - Partial")),
        "COMPLETE" => Some((State::Complete, "CERTN - Complete")),
        "CANCELLED" => Some((State::Cancelled, "CERTN - Cancelled")),
        _ => None,
    }
}

/// The fields of a Certn application webhook we use.
#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    /// The application id (our order reference).
    pub id: String,
    /// Certn's status, as sent.
    pub status: String,
    /// Link to the report, when non-empty.
    pub report_url: Option<String>,
    /// Certn's result (verdict), when present.
    pub result: Option<String>,
}

#[derive(Deserialize)]
struct RawApplication {
    id: Value,
    status: String,
    #[serde(default)]
    report_url: Option<String>,
    #[serde(default)]
    result: Option<Value>,
}

/// A string or number JSON value as text; anything else is `None`.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses a webhook body. Any JSON error, or an application without an `id` or `status`, is an
/// error (the caller answers 400).
pub fn parse_application(body: &[u8]) -> Result<Application, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    application_from_value(value)
}

/// An application from its JSON value (a webhook body, or one result of the lookup).
pub fn application_from_value(value: Value) -> Result<Application, String> {
    let raw: RawApplication = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let id = scalar_text(&raw.id).ok_or("application id is not a string or number")?;
    Ok(Application {
        id,
        status: raw.status,
        report_url: raw
            .report_url
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty()),
        result: raw.result.as_ref().and_then(scalar_text),
    })
}

/// The status recruiters should see for an application (its report link and Certn's result as
/// the verdict), or `None` for a status we do not know.
pub fn status_of(app: &Application) -> Option<Status> {
    let (state, label) = map_status(&app.status)?;
    Some(
        Status::new(state, label)
            .maybe_report_url(app.report_url.clone())
            .maybe_verdict(app.result.clone()),
    )
}

/// The decoded value of the `challenge` parameter of a query string, if there is one.
pub fn challenge(query: &str) -> Option<String> {
    query_param(query, "challenge")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_case_insensitively() {
        assert_eq!(
            map_status("complete"),
            Some((State::Complete, "CERTN - Complete"))
        );
        assert_eq!(
            map_status(" Analyzing "),
            Some((State::Analyzing, "CERTN - Analyzing"))
        );
        assert_eq!(map_status("PENDING").map(|s| s.1), Some(LABEL_PENDING));
        assert_eq!(map_status("PARTIAL").map(|s| s.0), Some(State::Partial));
        assert_eq!(
            map_status("Cancelled").map(|s| s.1),
            Some("CERTN - Cancelled")
        );
        assert_eq!(map_status("RETURNED"), None);
        assert_eq!(map_status(""), None);
    }

    #[test]
    fn every_mapped_label_is_in_the_manifest() {
        for s in ["PENDING", "ANALYZING", "PARTIAL", "COMPLETE", "CANCELLED"] {
            let (_, label) = map_status(s).unwrap();
            assert!(STATUS_LABELS.contains(&label));
        }
    }

    #[test]
    fn parses_full_application() {
        let app = parse_application(
            br#"{"id":"9f1c","status":"COMPLETE","report_url":"https://r/9f1c.pdf",
                 "result":"CLEARED","applicant":{"email":"a@b.c"}}"#,
        )
        .unwrap();
        assert_eq!(
            app,
            Application {
                id: "9f1c".into(),
                status: "COMPLETE".into(),
                report_url: Some("https://r/9f1c.pdf".into()),
                result: Some("CLEARED".into()),
            }
        );
    }

    #[test]
    fn empty_and_null_optionals_are_none() {
        let app =
            parse_application(br#"{"id":42,"status":"PENDING","report_url":"","result":null}"#)
                .unwrap();
        assert_eq!(app.id, "42");
        assert_eq!(app.report_url, None);
        assert_eq!(app.result, None);
        let app = parse_application(br#"{"id":"x","status":"PENDING","report_url":null}"#).unwrap();
        assert_eq!(app.report_url, None);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"id":"x"}"#,
            br#"{"status":"PENDING"}"#,
            br#"{"id":"","status":"PENDING"}"#,
            br#"{"id":{},"status":"PENDING"}"#,
            br#"{"id":"x","status":7}"#,
        ] {
            assert!(parse_application(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn challenge_is_found_and_decoded() {
        assert_eq!(challenge("challenge=abc123"), Some("abc123".into()));
        assert_eq!(challenge("x=1&challenge=a%20b+c%2"), Some("a b c%2".into()));
        assert_eq!(challenge("challenge="), Some(String::new()));
        assert_eq!(challenge("challenges=1"), None);
        assert_eq!(challenge(""), None);
        assert_eq!(challenge("challenge=%zz%4"), Some("%zz%4".into()));
    }
}
