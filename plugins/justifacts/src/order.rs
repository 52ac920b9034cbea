//! Placing a Justifacts order: the request we send and how we read the answer.
//!
//! `POST {api-base}/v1/orders` with
//!
//! - `Authorization: Bearer <api-key>`
//! - `Idempotency-Key: <screening request's idempotency key>` (a repeat returns the same order)
//! - `Content-Type: application/json`
//! - body: `{"client_code", "package_code", "reference", "callback_url",
//!   "applicant": {"name", "email", "phone"}}`
//!
//! Answer: `201` (new) or `200` (idempotent repeat) with `{"order_id", "status", ...}`; errors
//! carry `{"error": "<message>"}`. This module has no bindings so it is tested natively.

use serde::{Deserialize, Serialize};

/// The applicant, as Justifacts needs them for the invitation email.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Applicant<'a> {
    /// Full name.
    pub name: &'a str,
    /// Where the invitation goes.
    pub email: &'a str,
    /// Optional phone for the invitation SMS.
    pub phone: Option<&'a str>,
}

/// The JSON body of `POST /v1/orders`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OrderBody<'a> {
    /// The JWeb client account.
    pub client_code: &'a str,
    /// Numeric package code (`EmpCod` ID).
    pub package_code: &'a str,
    /// Our reference echoed in callbacks: the ATS opportunity id.
    pub reference: &'a str,
    /// Where Justifacts posts status changes.
    pub callback_url: &'a str,
    /// Who to screen.
    pub applicant: Applicant<'a>,
}

/// `{api-base}/v1/orders`, tolerating a trailing slash on the configured base.
pub fn orders_url(api_base: &str) -> String {
    format!("{}/v1/orders", api_base.trim().trim_end_matches('/'))
}

/// Why an order was not placed, already sorted into the host's retry classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderFailure {
    /// Retry later (429, 5xx, unreadable success).
    Transient(String),
    /// The integration's credentials are wrong (401/403).
    Config(String),
    /// Justifacts refused this order for good (other 4xx).
    Rejected(String),
}

#[derive(Deserialize)]
struct Created {
    order_id: String,
}

#[derive(Deserialize)]
struct ApiError {
    error: String,
}

/// The vendor's error message, bounded, for the host's log and the recruiter-facing error.
fn error_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let text: String = text.chars().take(200).collect();
    if text.trim().is_empty() {
        "no details".to_string()
    } else {
        text
    }
}

/// Reads the answer to `POST /v1/orders`: the order id, or a classified failure.
pub fn read_response(status: u16, body: &[u8]) -> Result<String, OrderFailure> {
    match status {
        200..=299 => match serde_json::from_slice::<Created>(body) {
            Ok(c) if !c.order_id.trim().is_empty() => Ok(c.order_id.trim().to_string()),
            // A success we cannot read is most likely a proxy or a partial outage; the
            // idempotency key makes retrying safe.
            _ => Err(OrderFailure::Transient(format!(
                "Justifacts answered {status} without an order id"
            ))),
        },
        401 | 403 => Err(OrderFailure::Config(format!(
            "Justifacts refused the credentials ({status}): check api-key and client-code ({})",
            error_message(body)
        ))),
        408 | 425 | 429 | 500..=599 => Err(OrderFailure::Transient(format!(
            "Justifacts unavailable ({status}): {}",
            error_message(body)
        ))),
        _ => Err(OrderFailure::Rejected(format!(
            "Justifacts rejected the order ({status}): {}",
            error_message(body)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url() {
        assert_eq!(
            orders_url("https://api.justifacts.com/"),
            "https://api.justifacts.com/v1/orders"
        );
        assert_eq!(
            orders_url("http://127.0.0.1:9"),
            "http://127.0.0.1:9/v1/orders"
        );
    }

    #[test]
    fn body_shape() {
        let body = OrderBody {
            client_code: "C1",
            package_code: "13558",
            reference: "opp-1",
            callback_url: "http://cb",
            applicant: Applicant {
                name: "Ada Lovelace",
                email: "ada@example.com",
                phone: None,
            },
        };
        let v = serde_json::to_value(&body).unwrap_or_default();
        assert_eq!(v["package_code"], "13558");
        assert_eq!(v["applicant"]["email"], "ada@example.com");
        assert!(v["applicant"]["phone"].is_null());
    }

    #[test]
    fn responses() {
        assert_eq!(
            read_response(201, br#"{"order_id":"JF-1","status":"Initiated"}"#),
            Ok("JF-1".into())
        );
        assert_eq!(
            read_response(200, br#"{"order_id":"JF-1"}"#),
            Ok("JF-1".into())
        );
        assert!(matches!(
            read_response(200, b"<html>"),
            Err(OrderFailure::Transient(_))
        ));
        assert!(matches!(
            read_response(503, b""),
            Err(OrderFailure::Transient(_))
        ));
        assert!(matches!(
            read_response(429, b""),
            Err(OrderFailure::Transient(_))
        ));
        assert!(matches!(
            read_response(401, b""),
            Err(OrderFailure::Config(_))
        ));
        assert!(matches!(
            read_response(403, b""),
            Err(OrderFailure::Config(_))
        ));
        assert_eq!(
            read_response(400, br#"{"error":"email is required"}"#),
            Err(OrderFailure::Rejected(
                "Justifacts rejected the order (400): email is required".into()
            ))
        );
        assert!(matches!(
            read_response(404, b""),
            Err(OrderFailure::Rejected(_))
        ));
    }
}
