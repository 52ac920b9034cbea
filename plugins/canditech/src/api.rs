//! The Canditech API of `docs/canditech.md`: URLs, request bodies, and reading the answers.
//!
//! Sending is done in `lib.rs` (it needs the host's `outbound-http` import); everything here is
//! pure so it can be tested natively.

use serde::Deserialize;
use serde_json::{json, Value};

/// Default `api-base` when the operator configures none.
pub const DEFAULT_API_BASE: &str = "https://api.canditech.io";

/// Per-request timeout of every Canditech call.
pub const TIMEOUT_MS: u32 = 10_000;

/// Longest `reference` / `Idempotency-Key` Canditech accepts.
pub const MAX_REFERENCE: usize = 255;

/// `api-base` without a trailing slash (blank means the default).
pub fn base(api_base: Option<&str>) -> String {
    api_base
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .unwrap_or(DEFAULT_API_BASE)
        .trim_end_matches('/')
        .to_string()
}

/// `GET /v1/assessments`.
pub fn assessments_url(base: &str) -> String {
    format!("{base}/v1/assessments")
}

/// `POST /v1/invitations`.
pub fn invitations_url(base: &str) -> String {
    format!("{base}/v1/invitations")
}

/// `GET /v1/invitations?reference=…`.
pub fn lookup_url(base: &str, reference: &str) -> String {
    format!("{base}/v1/invitations?reference={}", url_encode(reference))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An assessment as `GET /v1/assessments` lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Assessment {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub duration_minutes: Option<u32>,
    #[serde(default)]
    pub max_score: Option<f64>,
}

/// The assessment named or identified by `wanted`: id first (exact), then name
/// (case-insensitive, trimmed).
pub fn find<'a>(assessments: &'a [Assessment], wanted: &str) -> Option<&'a Assessment> {
    let wanted = wanted.trim();
    assessments.iter().find(|a| a.id == wanted).or_else(|| {
        assessments
            .iter()
            .find(|a| a.name.trim().eq_ignore_ascii_case(wanted))
    })
}

/// The JSON body of `POST /v1/invitations`.
pub fn invite_body(
    assessment_id: &str,
    name: &str,
    email: &str,
    reference: &str,
    callback_url: &str,
) -> Vec<u8> {
    let mut body = json!({
        "assessment_id": assessment_id,
        "candidate": {"name": name.trim(), "email": email.trim()},
        "reference": reference,
    });
    // Canditech wants an absolute http(s) URL; anything else would be a 422 for the whole call.
    if callback_url.starts_with("http://") || callback_url.starts_with("https://") {
        body["callback_url"] = json!(callback_url);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// How a call failed, mapped onto the contract's `connector-error` by `lib.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The configuration is wrong (bad API key, unknown assessment id).
    Config(String),
    /// Try again later (rate limit, 5xx, timeout).
    Transient(String),
    /// Canditech refused this request for good.
    Rejected(String),
}

/// Longest vendor detail copied into an error message.
const MAX_DETAIL: usize = 200;

/// The `error.code` and `error.message` of an error body, shortened, with `secret` blanked out.
fn detail(body: &[u8], secret: &str) -> (String, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v["error"]["code"].as_str().unwrap_or("").to_string();
    let mut message: String = v["error"]["message"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(MAX_DETAIL)
        .collect();
    if !secret.is_empty() {
        message = message.replace(secret, "***");
    }
    (code, message)
}

/// Maps a non-2xx answer onto an [`ApiError`].
pub fn error_for(status: u16, body: &[u8], secret: &str) -> ApiError {
    let (code, message) = detail(body, secret);
    let what = format!("Canditech answered {status} {code}: {message}");
    match status {
        401 | 403 => ApiError::Config(format!("{what} (check api-key)")),
        429 | 500..=599 | 408 => ApiError::Transient(what),
        404 => ApiError::Config(format!("{what} (check api-base)")),
        422 if code == "unknown_assessment" => ApiError::Config(what),
        _ => ApiError::Rejected(what),
    }
}

/// Reads `GET /v1/assessments`.
pub fn parse_assessments(
    status: u16,
    body: &[u8],
    secret: &str,
) -> Result<Vec<Assessment>, ApiError> {
    if !(200..300).contains(&status) {
        return Err(error_for(status, body, secret));
    }
    #[derive(Deserialize)]
    struct List {
        assessments: Vec<Assessment>,
    }
    serde_json::from_slice::<List>(body)
        .map(|l| l.assessments)
        .map_err(|e| ApiError::Transient(format!("unreadable assessment list: {e}")))
}

/// Reads the answer to `POST /v1/invitations` (201 new, 200 idempotent replay): the invitation id.
pub fn parse_invite(status: u16, body: &[u8], secret: &str) -> Result<String, ApiError> {
    if !(200..300).contains(&status) {
        return Err(error_for(status, body, secret));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::Transient(format!("unreadable invitation: {e}")))?;
    v["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::Transient("the invitation has no id".into()))
}

/// Reads `GET /v1/invitations?reference=…`: the id of the oldest invitation, if any.
pub fn parse_lookup(status: u16, body: &[u8], secret: &str) -> Result<Option<String>, ApiError> {
    if !(200..300).contains(&status) {
        return Err(error_for(status, body, secret));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::Transient(format!("unreadable lookup: {e}")))?;
    let list = v["invitations"]
        .as_array()
        .ok_or_else(|| ApiError::Transient("the lookup has no invitations list".into()))?;
    // Oldest first: the one a first attempt created.
    Ok(list
        .iter()
        .find_map(|i| i["id"].as_str().filter(|id| !id.is_empty()))
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_use_the_configured_base() {
        assert_eq!(
            assessments_url(&base(None)),
            "https://api.canditech.io/v1/assessments"
        );
        assert_eq!(
            invitations_url(&base(Some(" http://127.0.0.1:9/ "))),
            "http://127.0.0.1:9/v1/invitations"
        );
        assert_eq!(
            lookup_url("http://h", "lever:a b/c?d=&e#f"),
            "http://h/v1/invitations?reference=lever%3Aa%20b%2Fc%3Fd%3D%26e%23f"
        );
    }

    #[test]
    fn assessments_are_found_by_id_then_name() {
        let list = parse_assessments(
            200,
            br#"{"assessments":[{"id":"asm_1","name":"Python senior","duration_minutes":60,"max_score":100},
                                {"id":"asm_2","name":"asm_1"}]}"#,
            "",
        )
        .unwrap();
        assert_eq!(find(&list, "asm_1").unwrap().name, "Python senior");
        assert_eq!(find(&list, " python SENIOR ").unwrap().id, "asm_1");
        assert!(find(&list, "Go").is_none());
    }

    #[test]
    fn errors_map_to_the_contract_kinds_and_hide_the_key() {
        let body = br#"{"error":{"code":"unauthorized","message":"bad key ck_live_secret"}}"#;
        match error_for(401, body, "ck_live_secret") {
            ApiError::Config(m) => {
                assert!(m.contains("***") && !m.contains("ck_live_secret"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(error_for(429, b"{}", ""), ApiError::Transient(_)));
        assert!(matches!(error_for(503, b"", ""), ApiError::Transient(_)));
        assert!(matches!(
            error_for(
                422,
                br#"{"error":{"code":"validation_failed","message":"x"}}"#,
                ""
            ),
            ApiError::Rejected(_)
        ));
        assert!(matches!(
            error_for(
                422,
                br#"{"error":{"code":"unknown_assessment","message":"x"}}"#,
                ""
            ),
            ApiError::Config(_)
        ));
    }

    #[test]
    fn invite_and_lookup_answers_are_read() {
        assert_eq!(
            parse_invite(201, br#"{"id":"inv_1","status":"invited"}"#, "").unwrap(),
            "inv_1"
        );
        assert_eq!(
            parse_invite(200, br#"{"id":"inv_1"}"#, "").unwrap(),
            "inv_1"
        );
        assert!(matches!(
            parse_invite(201, b"{}", ""),
            Err(ApiError::Transient(_))
        ));
        assert_eq!(
            parse_lookup(
                200,
                br#"{"invitations":[{"id":"inv_old"},{"id":"inv_new"}]}"#,
                ""
            )
            .unwrap(),
            Some("inv_old".into())
        );
        assert_eq!(
            parse_lookup(200, br#"{"invitations":[]}"#, "").unwrap(),
            None
        );
    }

    #[test]
    fn the_invite_body_carries_reference_and_only_absolute_callbacks() {
        let v: Value = serde_json::from_slice(&invite_body(
            "asm_1",
            " Ada ",
            "a@b.c",
            "lever:t",
            "http://h/hooks/x/vendor",
        ))
        .unwrap();
        assert_eq!(v["assessment_id"], "asm_1");
        assert_eq!(v["candidate"], json!({"name": "Ada", "email": "a@b.c"}));
        assert_eq!(v["reference"], "lever:t");
        assert_eq!(v["callback_url"], "http://h/hooks/x/vendor");
        let v: Value =
            serde_json::from_slice(&invite_body("asm_1", "", "a@b.c", "r", "/relative")).unwrap();
        assert!(v.get("callback_url").is_none());
    }
}
