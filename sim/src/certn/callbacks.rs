//! Certn status callbacks: signing, delivery with bounded retries, and automatic progression.

use std::sync::Arc;
use std::time::Duration;

use super::{step, CallbackDelivery, Shared};
use crate::http_util;

/// Retries after the first failed attempt.
const MAX_RETRIES: u32 = 3;

/// Delay between an invite and its PENDING callback in automatic mode.
const FIRST_CALLBACK_DELAY: Duration = Duration::from_millis(50);

/// The `Certn-Signature` header value for `body` sent at unix time `t`:
/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn sign(secret: &str, t: u64, body: &str) -> String {
    let mac = http_util::hmac_sha256_hex(secret.as_bytes(), format!("{t}.{body}").as_bytes());
    format!("t={t},v1={mac}")
}

/// Sends the application's current state to the webhook URL and returns the first attempt's
/// status, or `None` when no webhook URL is set or the application is unknown. With `retry`,
/// retryable failures are retried in the background.
pub(super) async fn send(shared: &Arc<Shared>, app_id: &str, retry: bool) -> Option<u16> {
    let pending = prepare(shared, app_id)?;
    Some(deliver(shared, pending, retry).await)
}

/// A recorded callback about to be delivered.
struct Pending {
    url: String,
    body: String,
    index: usize,
}

/// Snapshots the application's current state as a callback body and records the callback.
fn prepare(shared: &Shared, app_id: &str) -> Option<Pending> {
    let mut st = shared.lock();
    let url = st.webhook_url.clone()?;
    let app = st.apps.iter().find(|a| a.id == app_id)?;
    let status = app.status.clone();
    let body = serde_json::to_string(app).ok()?;
    st.callbacks.push(CallbackDelivery {
        app_id: app_id.to_string(),
        status,
        body: body.clone(),
        attempts: Vec::new(),
    });
    Some(Pending {
        url,
        body,
        index: st.callbacks.len() - 1,
    })
}

/// Makes the first attempt and, with `retry`, retries retryable failures in the background.
async fn deliver(shared: &Arc<Shared>, p: Pending, retry: bool) -> u16 {
    let status = attempt(shared, p.index, &p.url, &p.body).await;
    if retry && retryable(status) {
        let shared = shared.clone();
        tokio::spawn(async move {
            let base = shared.opts.callback_retry_base;
            for k in 1..=MAX_RETRIES {
                tokio::time::sleep(base.saturating_mul(k)).await;
                if !retryable(attempt(&shared, p.index, &p.url, &p.body).await) {
                    break;
                }
            }
        });
    }
    status
}

/// Certn retries on 408/500/502/503/504 and connection errors only.
fn retryable(status: u16) -> bool {
    matches!(status, 0 | 408 | 500 | 502 | 503 | 504)
}

async fn attempt(shared: &Arc<Shared>, index: usize, url: &str, body: &str) -> u16 {
    let signature = sign(&shared.webhook_secret, http_util::now_secs(), body);
    let result = shared
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Certn-Team-ID", shared.team_id.as_str())
        .header("Certn-Signature", signature)
        .body(body.to_string())
        .send()
        .await;
    let status = match result {
        Ok(resp) => resp.status().as_u16(),
        Err(err) => {
            tracing::debug!(%url, %err, "certn callback attempt failed to connect");
            0
        }
    };
    tracing::debug!(%url, status, "certn callback attempt");
    if let Some(c) = shared.lock().callbacks.get_mut(index) {
        c.attempts.push(status);
    }
    status
}

/// Automatic mode: the PENDING callback shortly after the invite's answer (which `latency`
/// delays), then one step (and callback) every `delay` until COMPLETE. Bounded by the number of
/// statuses.
pub(super) fn spawn_progression(
    shared: Arc<Shared>,
    app_id: String,
    latency: Duration,
    delay: Duration,
) {
    tokio::spawn(async move {
        tokio::time::sleep(latency + FIRST_CALLBACK_DELAY).await;
        spawn_send(&shared, &app_id);
        for _ in 1..super::STATUSES.len() {
            tokio::time::sleep(delay).await;
            let moved = {
                let mut st = shared.lock();
                match st.app_mut(&app_id) {
                    Some(app) => step(app, &shared.base),
                    None => false,
                }
            };
            if !moved {
                break;
            }
            spawn_send(&shared, &app_id);
        }
    });
}

/// Snapshots the callback now and delivers it without making the progression wait for it.
fn spawn_send(shared: &Arc<Shared>, app_id: &str) {
    let Some(pending) = prepare(shared, app_id) else {
        tracing::debug!(%app_id, "certn sim: no webhook URL, callback skipped");
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        deliver(&shared, pending, true).await;
    });
}
