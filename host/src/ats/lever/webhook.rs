//! Lever's webhook body, and the checks every delivery must pass before it is stored.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::signature;

/// A Lever webhook delivery, borrowed from the request's body. Only `token`, `triggeredAt` and
/// the signature are signed, so `data` is trusted only because a token is accepted once and only
/// while fresh. `data` stays its raw text: a stage change reads its fields from it, with no
/// `serde_json::Value` tree built per request.
#[derive(Debug, Deserialize)]
pub struct Webhook<'a> {
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    #[serde(rename = "triggeredAt")]
    pub triggered_at: i64,
    pub token: String,
    #[serde(borrow)]
    pub signature: Cow<'a, str>,
    /// `None` when absent or `null`.
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

/// The part of a `candidateStageChange` the flow needs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct StageChange {
    #[serde(rename = "opportunityId")]
    pub opportunity_id: String,
    #[serde(rename = "toStageId")]
    pub to_stage_id: String,
    #[serde(rename = "fromStageId", default)]
    pub from_stage_id: Option<String>,
}

/// Why a delivery is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Rejection {
    #[error("malformed webhook body: {0}")]
    Malformed(String),
    #[error("signature does not match")]
    BadSignature,
    #[error("triggeredAt is {0} s away from now")]
    Stale(i64),
}

/// What a verified delivery asks of us.
#[derive(Debug, PartialEq)]
pub enum Verified {
    /// Lever's "Verify Connection" ping: answer 2xx, do nothing.
    Ping,
    /// A stage change to process.
    StageChange(StageChange),
    /// Another event we do not act on.
    Ignored(String),
}

/// Parses and verifies a delivery: JSON shape, signature, freshness.
pub fn verify<'a>(
    body: &'a [u8],
    key: &str,
    max_age_secs: u64,
    now_ms: i64,
) -> Result<(Webhook<'a>, Verified), Rejection> {
    let hook: Webhook =
        serde_json::from_slice(body).map_err(|e| Rejection::Malformed(e.to_string()))?;
    if !signature::verify(key, &hook.token, hook.triggered_at, &hook.signature) {
        return Err(Rejection::BadSignature);
    }
    let skew_secs = (now_ms - hook.triggered_at) / 1000;
    if skew_secs.unsigned_abs() > max_age_secs {
        return Err(Rejection::Stale(skew_secs));
    }
    let verified = match &*hook.event {
        "candidateHired" if empty(hook.data) => Verified::Ping,
        // Read from `data`'s own text: one pass over it, no tree, no copy of it.
        "candidateStageChange" => Verified::StageChange(
            serde_json::from_str(hook.data.map_or("null", RawValue::get))
                .map_err(|e| Rejection::Malformed(format!("stage change data: {e}")))?,
        ),
        other => Verified::Ignored(other.to_string()),
    };
    Ok((hook, verified))
}

/// Whether `data` is absent, `null` or `{}` (a ping's).
fn empty(data: Option<&RawValue>) -> bool {
    data.is_none_or(|raw| {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get())
            .is_ok_and(|fields| fields.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(event: &str, triggered_at: i64, data: serde_json::Value, key: &str) -> Vec<u8> {
        let token = "be58f711f349c7780e4579cd7c63341ac6f881e4dccc3154";
        serde_json::to_vec(&serde_json::json!({
            "triggeredAt": triggered_at, "event": event, "token": token,
            "signature": signature::sign(key, token, triggered_at), "data": data,
        }))
        .unwrap()
    }

    #[test]
    fn a_ping_is_recognised_and_a_stage_change_parsed() {
        let now = 1_700_000_000_000;
        let ping = body("candidateHired", now, serde_json::json!({}), "k");
        assert_eq!(verify(&ping, "k", 60, now).unwrap().1, Verified::Ping);
        let change = body(
            "candidateStageChange",
            now,
            serde_json::json!({"opportunityId": "o1", "toStageId": "s2", "fromStageId": "s1"}),
            "k",
        );
        match verify(&change, "k", 60, now).unwrap().1 {
            Verified::StageChange(c) => assert_eq!(
                (c.opportunity_id.as_str(), c.to_stage_id.as_str()),
                ("o1", "s2")
            ),
            other => panic!("{other:?}"),
        }
    }

    /// `data` is read from its raw text: a ping's is absent, `null` or `{}` (anything else is
    /// another event), and a stage change's strings keep their escapes decoded.
    #[test]
    fn data_is_read_from_its_text_as_the_tree_read_it() {
        let now = 1_700_000_000_000;
        let token = "t1";
        let signed = |event: &str, data: Option<&str>| {
            let data = data.map_or(String::new(), |d| format!(r#","data":{d}"#));
            format!(
                r#"{{"triggeredAt":{now},"event":"{event}","token":"{token}","signature":"{}"{data}}}"#,
                signature::sign("k", token, now)
            )
        };
        for ping in [None, Some("null"), Some("{}"), Some(" { } ")] {
            let body = signed("candidateHired", ping);
            assert_eq!(
                verify(body.as_bytes(), "k", 60, now).unwrap().1,
                Verified::Ping
            );
        }
        let hired = signed("candidateHired", Some(r#"{"opportunityId":"o1"}"#));
        assert_eq!(
            verify(hired.as_bytes(), "k", 60, now).unwrap().1,
            Verified::Ignored("candidateHired".into())
        );
        let escaped = signed(
            "candidateStageChange",
            Some(r#"{"opportunityId":"o\u00e9\"1","toStageId":"s2","extra":[1,{"a":null}]}"#),
        );
        let (hook, verified) = verify(escaped.as_bytes(), "k", 60, now).unwrap();
        assert_eq!(hook.token, token);
        assert_eq!(
            verified,
            Verified::StageChange(StageChange {
                opportunity_id: "o\u{e9}\"1".into(),
                to_stage_id: "s2".into(),
                from_stage_id: None,
            })
        );
        let null = signed("candidateStageChange", Some("null"));
        assert!(matches!(
            verify(null.as_bytes(), "k", 60, now),
            Err(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn bad_signature_stale_and_malformed_are_rejected() {
        let now = 1_700_000_000_000;
        let data = serde_json::json!({"opportunityId": "o1", "toStageId": "s2"});
        let b = body("candidateStageChange", now, data.clone(), "k");
        assert_eq!(
            verify(&b, "wrong", 60, now).unwrap_err(),
            Rejection::BadSignature
        );
        let old = body("candidateStageChange", now - 3_600_000, data, "k");
        assert!(matches!(
            verify(&old, "k", 900, now),
            Err(Rejection::Stale(3600))
        ));
        assert!(matches!(
            verify(b"{not json", "k", 60, now),
            Err(Rejection::Malformed(_))
        ));
        let no_data = body(
            "candidateStageChange",
            now,
            serde_json::json!({"x": 1}),
            "k",
        );
        assert!(matches!(
            verify(&no_data, "k", 60, now),
            Err(Rejection::Malformed(_))
        ));
    }
}
