//! Lever webhook bodies, signing and delivery with bounded background retries.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Delivery, Shared, STAGE_CHANGE_EVENT};
use crate::http_util;

/// Retries after the first failed attempt.
const MAX_RETRIES: u32 = 5;

/// Lever's webhook signature: hex(HMAC-SHA256(key = `signing_token`, msg = `token` followed by
/// `triggered_at_ms` in decimal)).
pub fn sign(signing_token: &str, token: &str, triggered_at_ms: u64) -> String {
    let msg = format!("{token}{triggered_at_ms}");
    http_util::hmac_sha256_hex(signing_token.as_bytes(), msg.as_bytes())
}

/// A complete signed webhook body for `event` with `data`.
pub(super) fn event_body(signing_token: &str, event: &str, data: Value) -> String {
    let token = http_util::random_hex(48);
    let triggered_at = http_util::now_ms();
    json!({
        "id": http_util::new_id(),
        "triggeredAt": triggered_at,
        "event": event,
        "token": token,
        "signature": sign(signing_token, &token, triggered_at),
        "data": data,
    })
    .to_string()
}

/// Delivers `candidateStageChange` to every webhook registered for it; returns the first-attempt
/// status per webhook, in registration order.
pub(super) async fn fire_stage_change(
    shared: &Arc<Shared>,
    opp_id: &str,
    from_stage: &str,
    to_stage: &str,
) -> Vec<u16> {
    let (hooks, contact_id) = {
        let st = shared.lock();
        let hooks: Vec<_> = st
            .webhooks
            .iter()
            .filter(|w| w.event == STAGE_CHANGE_EVENT)
            .cloned()
            .collect();
        let contact = st
            .opps
            .get(opp_id)
            .map(|r| r.contact_id.clone())
            .unwrap_or_default();
        (hooks, contact)
    };
    let data = json!({
        "opportunityId": opp_id,
        "candidateId": opp_id,
        "contactId": contact_id,
        "toStageId": to_stage,
        "fromStageId": if from_stage.is_empty() { Value::Null } else { json!(from_stage) },
    });
    let mut statuses = Vec::with_capacity(hooks.len());
    for hook in hooks {
        let body = event_body(&hook.signing_token, STAGE_CHANGE_EVENT, data.clone());
        statuses.push(deliver(shared, &hook.url, STAGE_CHANGE_EVENT, body, true).await);
    }
    statuses
}

/// Records a new delivery, makes the first attempt and returns its status (0 = connection
/// error). With `retry`, a failed first attempt is retried in the background.
pub(super) async fn deliver(
    shared: &Arc<Shared>,
    url: &str,
    event: &str,
    body: String,
    retry: bool,
) -> u16 {
    let index = {
        let mut st = shared.lock();
        st.deliveries.push(Delivery {
            url: url.to_string(),
            event: event.to_string(),
            body: body.clone(),
            attempts: Vec::new(),
        });
        st.deliveries.len() - 1
    };
    let status = attempt(shared, index, url, &body).await;
    if retry && !is_success(status) {
        let shared = shared.clone();
        let url = url.to_string();
        tokio::spawn(async move {
            let mut gap = shared.lock().retry_base;
            for _ in 0..MAX_RETRIES {
                tokio::time::sleep(gap).await;
                if is_success(attempt(&shared, index, &url, &body).await) {
                    break;
                }
                gap = gap.saturating_mul(2);
            }
        });
    }
    status
}

async fn attempt(shared: &Arc<Shared>, index: usize, url: &str, body: &str) -> u16 {
    let result = shared
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, "Lever-Webhooks")
        .body(body.to_string())
        .send()
        .await;
    let status = match result {
        Ok(resp) => resp.status().as_u16(),
        Err(err) => {
            tracing::debug!(%url, %err, "lever webhook attempt failed to connect");
            0
        }
    };
    tracing::debug!(%url, status, "lever webhook attempt");
    if let Some(d) = shared.lock().deliveries.get_mut(index) {
        d.attempts.push(status);
    }
    status
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}
