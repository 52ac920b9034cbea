//! Canditech webhooks: event bodies, signing, delivery with bounded retries, and automatic
//! progression.

use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context as _;
use reqwest::header;
use serde_json::json;

use super::{
    apply, next_step, Delivery, Invitation, Shared, Step, VerdictInfo, EVENT_ID_HEADER,
    EVENT_TYPE_HEADER, SIGNATURE_HEADER,
};
use crate::http_util;

/// Retries after a failed first attempt.
const RETRIES: u32 = 3;
/// Delay before the automatic `invitation.sent`, so it lands after the create response.
const FIRST_EVENT_DELAY: Duration = Duration::from_millis(50);

/// The `Canditech-Signature` value for `body` signed with one secret at unix time `t`:
/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. Public so tests can forge webhooks.
pub fn sign(secret: &str, t: u64, body: &[u8]) -> String {
    header_value(&[secret], t, body)
}

/// One `v1` per secret (several during a rotation).
fn header_value<S: AsRef<str>>(secrets: &[S], t: u64, body: &[u8]) -> String {
    let mut msg = t.to_string().into_bytes();
    msg.push(b'.');
    msg.extend_from_slice(body);
    let mut value = format!("t={t}");
    for s in secrets {
        value.push_str(",v1=");
        value.push_str(&http_util::hmac_sha256_hex(s.as_ref().as_bytes(), &msg));
    }
    value
}

/// A recorded event about to be delivered (index into the delivery log).
pub(super) struct Outgoing {
    url: Option<String>,
    event_id: String,
    event_type: String,
    body: String,
    index: usize,
}

fn event_body(
    event_id: &str,
    event_type: &str,
    inv: &Invitation,
    previous: Option<&VerdictInfo>,
) -> String {
    let mut data = json!({ "invitation": inv });
    if let Some(p) = previous {
        data["previous_verdict"] = json!(p);
    }
    json!({
        "id": event_id,
        "type": event_type,
        "created_at": http_util::now_rfc3339(),
        "data": data,
    })
    .to_string()
}

/// Under one lock: applies `step`, then records the event describing the new state, so a
/// concurrent step cannot slip between the change and its body.
pub(super) fn prepare(
    shared: &Shared,
    invitation_id: &str,
    step: Step,
) -> anyhow::Result<Outgoing> {
    let mut st = shared.lock();
    let account_url = st.webhook_url.clone();
    let inv = st.invitation_mut(invitation_id)?;
    let (event_type, previous) = apply(inv, step, &shared.base)?;
    let event_id = format!("evt_{}", http_util::random_hex(24));
    let body = event_body(&event_id, event_type, inv, previous.as_ref());
    let url = inv.callback_url.clone().or(account_url);
    st.deliveries.push(Delivery {
        invitation_id: invitation_id.to_string(),
        event_id: event_id.clone(),
        event_type: event_type.to_string(),
        url: url.clone(),
        body: body.clone(),
        attempts: Vec::new(),
    });
    Ok(Outgoing {
        url,
        event_id,
        event_type: event_type.to_string(),
        body,
        index: st.deliveries.len() - 1,
    })
}

/// The invitation's latest event again, recorded as a new delivery.
pub(super) fn prepare_resend(shared: &Shared, invitation_id: &str) -> anyhow::Result<Outgoing> {
    let mut st = shared.lock();
    let mut last = st
        .deliveries
        .iter()
        .rev()
        .find(|d| d.invitation_id == invitation_id)
        .cloned()
        .with_context(|| format!("invitation {invitation_id} has had no event"))?;
    last.attempts.clear();
    let out = Outgoing {
        url: last.url.clone(),
        event_id: last.event_id.clone(),
        event_type: last.event_type.clone(),
        body: last.body.clone(),
        index: st.deliveries.len(),
    };
    st.deliveries.push(last);
    Ok(out)
}

/// True if `url` is an http(s) URL whose host is loopback: the simulator never calls out.
fn is_loopback_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return false;
    }
    let Some(host) = parsed.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn record_attempt(shared: &Shared, index: usize, code: u16) {
    if let Some(d) = shared.lock().deliveries.get_mut(index) {
        d.attempts.push(code);
    }
}

/// One attempt with a fresh timestamp and signature; 0 on connection error, timeout or a
/// non-loopback URL.
async fn attempt(shared: &Shared, out: &Outgoing, url: &str) -> u16 {
    let code = if is_loopback_url(url) {
        let secrets = shared.lock().secrets.clone();
        let signature = header_value(&secrets, http_util::now_secs(), out.body.as_bytes());
        let result = shared
            .client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "Canditech-Webhooks/1.0")
            .header(EVENT_ID_HEADER, out.event_id.as_str())
            .header(EVENT_TYPE_HEADER, out.event_type.as_str())
            .header(SIGNATURE_HEADER, signature)
            .body(out.body.clone())
            .send()
            .await;
        match result {
            Ok(resp) => resp.status().as_u16(),
            Err(err) => {
                tracing::debug!(%err, "canditech sim webhook attempt failed");
                0
            }
        }
    } else {
        tracing::warn!(%url, "canditech sim refuses a non-loopback webhook URL");
        0
    };
    record_attempt(shared, out.index, code);
    code
}

/// Sends `out` once and returns the answer (0 = none, or no URL); with `retry`, a failure is
/// retried (bounded) in the background.
pub(super) async fn deliver(shared: Arc<Shared>, out: Outgoing, retry: bool) -> u16 {
    let Some(url) = out.url.clone() else {
        tracing::debug!(event = %out.event_type, "canditech sim: no webhook URL, event not sent");
        return 0;
    };
    let first = attempt(&shared, &out, &url).await;
    if retry && !(200..300).contains(&first) {
        // Weak: a dropped simulator stops retrying instead of calling out after the test ended.
        let weak = Arc::downgrade(&shared);
        drop(shared);
        tokio::spawn(async move {
            for k in 1..=RETRIES {
                let Some(base) = weak.upgrade().map(|s| s.opts.callback_retry_base) else {
                    return;
                };
                tokio::time::sleep(base.saturating_mul(k)).await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                if (200..300).contains(&attempt(&shared, &out, &url).await) {
                    return;
                }
            }
        });
    }
    first
}

/// Automatic mode: sent, started, completed, then the automatic verdict if any, `delay` apart.
/// Bounded by the number of steps; stops when a step fails or the simulator is dropped.
pub(super) fn spawn_progression(weak: Weak<Shared>, invitation_id: String, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(FIRST_EVENT_DELAY).await;
        for k in 0..4 {
            if k > 0 {
                tokio::time::sleep(delay).await;
            }
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let step = if k < 3 {
                match next_step(&shared, &invitation_id) {
                    Ok(step) => step,
                    Err(_) => return,
                }
            } else {
                match shared.opts.auto_verdict {
                    Some(v) => Step::Verdict(v, shared.opts.reviewer.clone()),
                    None => return,
                }
            };
            let Ok(out) = prepare(&shared, &invitation_id, step) else {
                return;
            };
            // Not awaited by the progression: a slow receiver must not stretch the schedule.
            tokio::spawn(deliver(shared, out, true));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_documented_scheme() {
        // The same vector as the connector's unit test (plugins/canditech/src/signature.rs):
        // the two implementations must agree.
        let body = br#"{"id":"evt_1","type":"test.completed"}"#;
        assert_eq!(
            sign("whsec_test", 1_700_000_000, body),
            "t=1700000000,v1=ba194747ad41470bdc66fe8f8f7593f2672e3b8496a1ccf99496afa67c300742"
        );
        let two = header_value(&["a", "b"], 5, b"x");
        assert_eq!(two.matches(",v1=").count(), 2);
        assert!(two.starts_with("t=5,v1="));
    }

    #[test]
    fn loopback_urls() {
        assert!(is_loopback_url("http://127.0.0.1:8080/cb"));
        assert!(is_loopback_url("http://localhost/cb"));
        assert!(is_loopback_url("http://[::1]:9/cb"));
        assert!(!is_loopback_url("http://example.com/cb"));
        assert!(!is_loopback_url("ftp://127.0.0.1/cb"));
        assert!(!is_loopback_url("nope"));
    }
}
