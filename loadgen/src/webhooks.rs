//! Lever `candidateStageChange` deliveries, signed the way Lever signs them:
//! `signature = hex(HMAC-SHA256(key = the webhook's signature token, msg = token + triggeredAt))`
//! (host/src/ats/lever/signature.rs verifies it). Every body has its own random `token`, which
//! is also the host's dedupe key, so each one is a distinct webhook to store, never a duplicate.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// What the generated deliveries say.
pub struct Spec<'a> {
    /// The integration's Lever signature token.
    pub signature_token: &'a str,
    /// `toStageId` of every delivery.
    pub stage_id: &'a str,
    /// Opportunity ids, used round robin; empty: a synthetic id per delivery.
    pub opportunities: &'a [String],
    /// `triggeredAt` (ms since the epoch) of every delivery; the host refuses it once stale.
    pub triggered_at_ms: i64,
}

/// Lever's signature of `token` and `triggered_at_ms` under `key`.
pub fn sign(key: &str, token: &str, triggered_at_ms: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(token.as_bytes());
    mac.update(triggered_at_ms.to_string().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `n` signed, distinct delivery bodies (built before any clock starts).
pub fn bodies(spec: &Spec<'_>, n: usize) -> Vec<Bytes> {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|i| {
            let mut raw = [0u8; 24];
            rng.fill_bytes(&mut raw);
            // 48 hex characters, as Lever's tokens are.
            let token = hex::encode(raw);
            let opportunity = match spec.opportunities {
                [] => format!("loadgen-{}", &token[..16]),
                ids => ids[i % ids.len()].clone(),
            };
            let body = serde_json::json!({
                "id": format!("loadgen-{i}-{}", &token[..8]),
                "triggeredAt": spec.triggered_at_ms,
                "event": "candidateStageChange",
                "token": token,
                "signature": sign(spec.signature_token, &token, spec.triggered_at_ms),
                "data": {
                    "opportunityId": opportunity,
                    "candidateId": opportunity,
                    "contactId": opportunity,
                    "toStageId": spec.stage_id,
                    "fromStageId": null,
                },
            });
            Bytes::from(body.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard::ats::lever::webhook::{verify, Verified};

    #[test]
    fn the_hosts_verifier_accepts_every_body_and_each_token_is_distinct() {
        let now = 1_700_000_000_000;
        let opportunities = vec!["opp-a".to_string(), "opp-b".to_string()];
        let spec = Spec {
            signature_token: "the-signature-token",
            stage_id: "stage-1",
            opportunities: &opportunities,
            triggered_at_ms: now,
        };
        let bodies = bodies(&spec, 4);
        let mut tokens = std::collections::BTreeSet::new();
        for (i, body) in bodies.iter().enumerate() {
            let (hook, verified) = verify(body, "the-signature-token", 60, now).expect("verified");
            tokens.insert(hook.token);
            match verified {
                Verified::StageChange(c) => {
                    assert_eq!(c.opportunity_id, opportunities[i % 2]);
                    assert_eq!(c.to_stage_id, "stage-1");
                }
                other => panic!("not a stage change: {other:?}"),
            }
            assert!(verify(body, "another-token", 60, now).is_err());
        }
        assert_eq!(tokens.len(), 4, "distinct tokens");
    }
}
