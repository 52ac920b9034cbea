//! The Certn v1 invite call: building the request body and interpreting the response.
//!
//! Sending is done in `lib.rs` (it needs the host's `outbound-http` import); everything here is
//! pure so it can be tested natively.

use serde_json::{json, Map, Value};

/// Path of the invite endpoint below `api-base`. Certn wants the trailing slash on unsafe methods.
pub const INVITE_PATH: &str = "/api/v1/hr/applications/invite/";

/// Default `api-base` when the operator configures none.
pub const DEFAULT_API_BASE: &str = "https://api.certn.co";

/// Per-request timeout for the invite call.
pub const INVITE_TIMEOUT_MS: u32 = 10_000;

/// The invite URL for a configured `api-base` (blank means the default; a trailing `/` is fine).
pub fn invite_url(api_base: Option<&str>) -> String {
    let base = api_base
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .unwrap_or(DEFAULT_API_BASE);
    format!("{}{INVITE_PATH}", base.trim_end_matches('/'))
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

/// How an invite call failed, mapped onto the contract's `connector-error` by `lib.rs`.
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
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => match map.get("detail").and_then(Value::as_str) {
            Some(detail) => detail.to_string(),
            None => map
                .iter()
                .map(|(field, v)| format!("{field}: {}", flatten(v)))
                .collect::<Vec<_>>()
                .join("; "),
        },
        Ok(other) => flatten(&other),
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    let text = if secret.is_empty() {
        text
    } else {
        text.replace(secret, "[redacted]")
    };
    let text = if text.is_empty() {
        "no detail".to_string()
    } else {
        text
    };
    truncate(&text, MAX_DETAIL)
}

fn flatten(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(flatten).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
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
            request_flags: &flags,
        });
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({
                "email": "ada@example.com",
                "phone_number": null,
                "package": "Basic",
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
