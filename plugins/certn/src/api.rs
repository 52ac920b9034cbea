//! The Certn v1 calls: the invite (request body, interpreting the response) and the lookup of
//! an application by our reference (the screening request's idempotency key, sent as the
//! invite's `reference`).
//!
//! Sending is done in `connector.rs` through the SDK's `Host`; everything here is pure.

use serde_json::{json, Map, Value};
use switchyard_connector::text::urlencode;

use crate::callback::{self, Application};

/// Path of the invite endpoint below `api-base`. Certn wants the trailing slash on unsafe methods.
pub const INVITE_PATH: &str = "/api/v1/hr/applications/invite/";

/// Path of the application list below `api-base`, filtered with `?reference=`.
pub const APPLICATIONS_PATH: &str = "/api/v1/hr/applications/";

/// Default `api-base` when the operator configures none.
pub const DEFAULT_API_BASE: &str = "https://api.certn.co";

/// Per-request timeout for the invite call.
pub const INVITE_TIMEOUT_MS: u32 = 10_000;

/// The configured `api-base` (blank means the default), without a trailing `/`.
fn base(api_base: Option<&str>) -> &str {
    api_base
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .unwrap_or(DEFAULT_API_BASE)
        .trim_end_matches('/')
}

/// The invite URL for a configured `api-base` (blank means the default; a trailing `/` is fine).
pub fn invite_url(api_base: Option<&str>) -> String {
    format!("{}{INVITE_PATH}", base(api_base))
}

/// The URL listing the applications made with our `reference`.
pub fn lookup_url(api_base: Option<&str>, reference: &str) -> String {
    format!(
        "{}{APPLICATIONS_PATH}?reference={}",
        base(api_base),
        urlencode(reference)
    )
}

/// The oldest application in a lookup answer (`{"results": [<application>, ...]}`) that carries
/// exactly our `reference`; `Ok(None)` when there is none, `Err` when the answer is unreadable.
pub fn find_application(answer: &Value, reference: &str) -> Result<Option<Application>, String> {
    let results = answer
        .get("results")
        .and_then(Value::as_array)
        .ok_or("the lookup answer has no results list")?;
    results
        .iter()
        .find(|app| app.get("reference").and_then(Value::as_str) == Some(reference))
        .map(|app| callback::application_from_value(app.clone()))
        .transpose()
}

/// Splits a full name on its first space into Certn's `first_name` and `last_name`.
/// A single word is all first name.
pub fn split_name(full: &str) -> (String, String) {
    let full = full.trim();
    match full.split_once(char::is_whitespace) {
        Some((first, last)) => (first.to_string(), last.trim().to_string()),
        None => (full.to_string(), String::new()),
    }
}

/// What an invite needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite<'a> {
    /// Where Certn sends the invitation.
    pub email: &'a str,
    /// The candidate's phone, if known.
    pub phone: Option<&'a str>,
    /// The package name, for Certn's records.
    pub package: &'a str,
    /// The candidate's full name.
    pub name: &'a str,
    /// Our reference (the idempotency key), stored by Certn so a retry can look the application
    /// up.
    pub reference: &'a str,
    /// `request_*` flags to set (see `package::request_flags`).
    pub request_flags: &'a [String],
}

/// The JSON body of `POST /api/v1/hr/applications/invite/`.
pub fn invite_body(invite: &Invite<'_>) -> Vec<u8> {
    let (first_name, last_name) = split_name(invite.name);
    let mut body = Map::new();
    body.insert("email".into(), json!(invite.email));
    body.insert("phone_number".into(), json!(invite.phone));
    body.insert("package".into(), json!(invite.package));
    body.insert("reference".into(), json!(invite.reference));
    body.insert(
        "information".into(),
        json!({ "first_name": first_name, "last_name": last_name }),
    );
    for flag in invite.request_flags {
        body.insert(flag.clone(), Value::Bool(true));
    }
    // Serializing a map of strings and bools cannot fail.
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

/// How an invite call failed, mapped onto the contract's `connector-error` by `connector.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteError {
    /// Configuration is wrong (bad API key, host not approved, bad URL).
    Config(String),
    /// Try again later (rate limit, 5xx, timeout, connection).
    Transient(String),
    /// Certn refused this request for good.
    Rejected(String),
}

/// Longest vendor detail we copy into an error message.
const MAX_DETAIL: usize = 300;

/// Interprets Certn's response to an invite: the application id on success.
///
/// `secret` is the API key; it is scrubbed from any vendor text we quote, just in case.
pub fn interpret_invite_response(
    status: u16,
    body: &[u8],
    secret: &str,
) -> Result<String, InviteError> {
    match status {
        200..=299 => serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("id").and_then(crate::callback::scalar_text))
            // The invite may have been sent; retrying could invite twice, so don't.
            .ok_or_else(|| {
                InviteError::Rejected(format!("Certn answered {status} without an application id"))
            }),
        401 | 403 => Err(InviteError::Config("Certn rejected the API key".into())),
        408 | 429 => Err(InviteError::Transient(format!(
            "Certn answered {status} (rate limited or timed out)"
        ))),
        500..=599 => Err(InviteError::Transient(format!("Certn answered {status}"))),
        _ => Err(InviteError::Rejected(format!(
            "Certn refused the invite ({status}): {}",
            error_detail(body, secret)
        ))),
    }
}

/// A short, human-readable detail from a Certn (Django REST framework) error body:
/// `{"detail": "..."}`, or field errors `{"email": ["Enter a valid email address."]}`, or the raw
/// text. Truncated, and with `secret` removed.
pub fn error_detail(body: &[u8], secret: &str) -> String {
    switchyard_connector::http::error_detail(body, &[secret.to_string()], MAX_DETAIL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_on_first_space() {
        assert_eq!(
            split_name("Ada Lovelace"),
            ("Ada".into(), "Lovelace".into())
        );
        assert_eq!(
            split_name("  Mary Ann  Evans "),
            ("Mary".into(), "Ann  Evans".into())
        );
        assert_eq!(split_name("Cher"), ("Cher".into(), String::new()));
        assert_eq!(split_name(""), (String::new(), String::new()));
    }

    #[test]
    fn invite_url_uses_default_and_trims() {
        assert_eq!(
            invite_url(None),
            "https://api.certn.co/api/v1/hr/applications/invite/"
        );
        assert_eq!(invite_url(Some("  ")), invite_url(None));
        assert_eq!(
            invite_url(Some("http://127.0.0.1:9000/")),
            "http://127.0.0.1:9000/api/v1/hr/applications/invite/"
        );
    }

    #[test]
    fn lookup_url_encodes_the_reference() {
        assert_eq!(
            lookup_url(Some("http://127.0.0.1:9000/"), "gem:scr 2"),
            "http://127.0.0.1:9000/api/v1/hr/applications/?reference=gem%3Ascr%202"
        );
    }

    #[test]
    fn lookup_finds_only_our_reference() {
        let answer = json!({"count": 3, "next": null, "results": [
            {"id": "a0", "status": "PENDING", "reference": "other"},
            {"id": "a1", "status": "ANALYZING", "reference": "lever:tok-1"},
            {"id": "a2", "status": "PENDING", "reference": "lever:tok-1"},
        ]});
        let found = find_application(&answer, "lever:tok-1").unwrap().unwrap();
        assert_eq!(
            (found.id.as_str(), found.status.as_str()),
            ("a1", "ANALYZING")
        );
        assert_eq!(find_application(&answer, "lever:tok-9"), Ok(None));
        assert!(find_application(&json!({"detail": "x"}), "r").is_err());
        let broken = json!({"results": [{"id": {}, "status": "PENDING", "reference": "r"}]});
        assert!(find_application(&broken, "r").is_err());
    }

    #[test]
    fn invite_body_shape() {
        let flags = vec![
            "request_criminal_record_check".to_string(),
            "request_identity_verification".to_string(),
        ];
        let body = invite_body(&Invite {
            email: "ada@example.com",
            phone: None,
            package: "Basic",
            name: "Ada Lovelace",
            reference: "lever:tok-1",
            request_flags: &flags,
        });
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({
                "email": "ada@example.com",
                "phone_number": null,
                "package": "Basic",
                "reference": "lever:tok-1",
                "information": {"first_name": "Ada", "last_name": "Lovelace"},
                "request_criminal_record_check": true,
                "request_identity_verification": true,
            })
        );
        let body = invite_body(&Invite {
            phone: Some("+15550100"),
            ..Invite {
                email: "a@b.c",
                phone: None,
                package: "P",
                name: "A",
                reference: "r",
                request_flags: &[],
            }
        });
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["phone_number"], "+15550100");
    }

    #[test]
    fn success_yields_id() {
        assert_eq!(
            interpret_invite_response(201, br#"{"id":"abc","applicant":{}}"#, "k"),
            Ok("abc".into())
        );
        assert_eq!(
            interpret_invite_response(200, br#"{"id":17}"#, "k"),
            Ok("17".into())
        );
        assert!(matches!(
            interpret_invite_response(201, b"oops", "k"),
            Err(InviteError::Rejected(_))
        ));
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(
            interpret_invite_response(401, b"", "k"),
            Err(InviteError::Config("Certn rejected the API key".into()))
        );
        assert!(matches!(
            interpret_invite_response(403, b"", "k"),
            Err(InviteError::Config(_))
        ));
        for s in [408, 429, 500, 502, 503] {
            assert!(matches!(
                interpret_invite_response(s, b"", "k"),
                Err(InviteError::Transient(_))
            ));
        }
        assert_eq!(
            interpret_invite_response(400, br#"{"email":["Enter a valid email address."]}"#, "k"),
            Err(InviteError::Rejected(
                "Certn refused the invite (400): email: Enter a valid email address.".into()
            ))
        );
        assert_eq!(
            interpret_invite_response(404, br#"{"detail":"Not found."}"#, "k"),
            Err(InviteError::Rejected(
                "Certn refused the invite (404): Not found.".into()
            ))
        );
    }

    #[test]
    fn detail_never_contains_the_key_and_is_bounded() {
        let d = error_detail(b"bad token sk_live_123", "sk_live_123");
        assert_eq!(d, "bad token [redacted]");
        let long = "x".repeat(1000);
        assert!(error_detail(long.as_bytes(), "").chars().count() <= MAX_DETAIL + 1);
        assert_eq!(error_detail(b"", ""), "no detail");
    }
}
