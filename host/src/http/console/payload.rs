//! A stored payload as the console shows it: secrets masked, pretty-printed, and the candidate it
//! is about (for the per-candidate timeline).

use serde_json::Value;

/// Shown instead of a secret's value.
pub const MASK: &str = "•••••• (masked)";

/// Keys whose values are secrets wherever they appear (case-insensitive, part of the key):
/// Lever's webhook `token` and `signature`, API keys, passwords, bearer headers.
const SECRET_KEYS: [&str; 7] = [
    "token",
    "secret",
    "signature",
    "password",
    "apikey",
    "api_key",
    "authorization",
];

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    SECRET_KEYS.iter().any(|s| key.contains(s))
}

fn mask(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret(key) && !v.is_null() {
                    *v = Value::String(MASK.into());
                } else {
                    mask(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// The payload pretty-printed with every secret masked. A payload that is not JSON is not shown
/// (it could hold anything): only its size.
pub fn masked(payload: &str) -> String {
    match serde_json::from_str::<Value>(payload) {
        Ok(mut value) => {
            mask(&mut value);
            serde_json::to_string_pretty(&value).unwrap_or_default()
        }
        Err(_) => format!("(not JSON: {} bytes, not shown)", payload.len()),
    }
}

/// Keys that name the candidate in the payloads the host stores (Lever's webhook data, status
/// updates, Gem's screenings).
const CANDIDATE_KEYS: [&str; 6] = [
    "opportunityId",
    "opportunity_id",
    "applicationId",
    "application_id",
    "candidateId",
    "candidate_id",
];

fn find_candidate(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => CANDIDATE_KEYS
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_str).map(str::to_string))
            .or_else(|| map.values().find_map(find_candidate)),
        Value::Array(items) => items.iter().find_map(find_candidate),
        _ => None,
    }
}

/// The candidate (Lever opportunity, Gem candidate) an event is about, if its payload names one.
pub fn candidate(payload: &str) -> Option<String> {
    let value = serde_json::from_str::<Value>(payload).ok()?;
    find_candidate(&value).filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_at_any_depth_and_the_rest_is_kept() {
        let shown = masked(
            r#"{"token":"t0k","signature":"abc","data":{"opportunityId":"o1","API-Key":"k","n":[{"client_secret":"s"}]}}"#,
        );
        for secret in ["t0k", "abc", "\"k\"", "\"s\""] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("o1"), "{shown}");
        assert_eq!(shown.matches(MASK).count(), 4, "{shown}");
    }

    #[test]
    fn the_candidate_is_found_in_nested_data() {
        assert_eq!(
            candidate(r#"{"data":{"opportunityId":"opp-1"}}"#).as_deref(),
            Some("opp-1")
        );
        assert_eq!(candidate(r#"{"data":{}}"#), None);
        assert_eq!(candidate("not json"), None);
    }
}
