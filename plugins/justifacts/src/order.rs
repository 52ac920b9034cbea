//! Placing a Justifacts order: the request we send and how we read the answer.
//!
//! `POST {api-base}/v1/orders` with
//!
//! - `Authorization: Bearer <api-key>`
//! - `Idempotency-Key: <screening request's idempotency key>` (a repeat returns the same order)
//! - `Content-Type: application/json`
//! - body: `{"client_code", "package_code", "reference", "client_order_ref", "callback_url",
//!   "applicant": {"name", "email", "phone"}}`
//!
//! Answer: `201` (new) or `200` (idempotent repeat) with `{"order_id", "status", ...}`; errors
//! carry `{"error": "<message>"}`.
//!
//! `client_order_ref` is our own reference for the order, the screening request's idempotency
//! key: `GET {api-base}/v1/orders?client_order_ref=<key>` → `{"orders": [<order>, ...]}` finds
//! an order whose answer we never got, so a retry does not order twice even when Justifacts
//! ignores the `Idempotency-Key`. This module is pure.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_connector::text::urlencode;

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
    /// Our reference for this order (the idempotency key), for the lookup.
    pub client_order_ref: &'a str,
    /// Where Justifacts posts status changes.
    pub callback_url: &'a str,
    /// Who to screen.
    pub applicant: Applicant<'a>,
}

/// `{api-base}/v1/orders`, tolerating a trailing slash on the configured base.
pub fn orders_url(api_base: &str) -> String {
    format!("{}/v1/orders", api_base.trim().trim_end_matches('/'))
}

/// `{api-base}/v1/orders?client_order_ref=<reference>`.
pub fn lookup_url(api_base: &str, client_order_ref: &str) -> String {
    format!(
        "{}?client_order_ref={}",
        orders_url(api_base),
        urlencode(client_order_ref)
    )
}

/// An order as the lookup describes it (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Order {
    /// `JF-…`.
    pub order_id: String,
    /// `Initiated`, `In Process`, `Complete` or `Cancelled`.
    #[serde(default)]
    pub status: String,
    /// Our reference, as we sent it.
    #[serde(default)]
    pub client_order_ref: Option<String>,
    /// `Clear`, `Review`, `Adverse`, once complete.
    #[serde(default)]
    pub result: Option<String>,
    /// The result page, once complete.
    #[serde(default)]
    pub result_url: Option<String>,
}

impl Order {
    /// A just-placed order, as far as we know it.
    pub fn placed(order_id: String) -> Self {
        Order {
            order_id,
            status: "Initiated".into(),
            client_order_ref: None,
            result: None,
            result_url: None,
        }
    }
}

/// The oldest order in a lookup answer (`{"orders": [...]}`) that carries exactly our
/// `client_order_ref`; `Ok(None)` when there is none, `Err` when the answer is unreadable.
pub fn find_order(answer: &Value, client_order_ref: &str) -> Result<Option<Order>, String> {
    let orders = answer
        .get("orders")
        .and_then(Value::as_array)
        .ok_or("the lookup answer has no orders list")?;
    for order in orders {
        let order: Order = serde_json::from_value(order.clone()).map_err(|e| e.to_string())?;
        if order.client_order_ref.as_deref() == Some(client_order_ref)
            && !order.order_id.trim().is_empty()
        {
            return Ok(Some(order));
        }
    }
    Ok(None)
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

/// The vendor's error message, bounded, for the host's log and the recruiter-facing error.
fn error_message(body: &[u8]) -> String {
    switchyard_connector::http::error_detail(body, &[], 200)
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
            client_order_ref: "lever:tok-1",
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
        assert_eq!(v["client_order_ref"], "lever:tok-1");
        assert!(v["applicant"]["phone"].is_null());
    }

    #[test]
    fn lookup() {
        assert_eq!(
            lookup_url("http://127.0.0.1:9/", "gem:scr 2"),
            "http://127.0.0.1:9/v1/orders?client_order_ref=gem%3Ascr%202"
        );
        let answer = serde_json::json!({"orders": [
            {"order_id": "JF-0", "status": "Initiated", "client_order_ref": null},
            {"order_id": "JF-1", "status": "In Process", "client_order_ref": "k", "result": null},
            {"order_id": "JF-2", "status": "Initiated", "client_order_ref": "k"},
        ]});
        let found = find_order(&answer, "k").unwrap().unwrap();
        assert_eq!(
            (found.order_id.as_str(), found.status.as_str()),
            ("JF-1", "In Process")
        );
        assert_eq!(find_order(&answer, "other"), Ok(None));
        assert!(find_order(&serde_json::json!({"error": "x"}), "k").is_err());
        assert!(find_order(&serde_json::json!({"orders": [{"status": 1}]}), "k").is_err());
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
