//! Status webhooks to Gem.
//!
//! Where a Lever integration reconciles the opportunity, a Gem integration *enqueues a delivery*:
//! a `gem.deliver` event on the same durable queue, processed by the same workers with the same
//! backoff and dead-lettering (after `worker.delivery_max_attempts`). One delivery exists per
//! distinct `(order, state, label, results URL)`: its dedupe key is a hash of those, and its
//! webhook id is derived from the same hash, so re-processing a status (a retried event, a
//! redelivered vendor callback) never queues a second webhook, and every retry of one webhook
//! carries the same `webhook-id` for Gem to dedupe on.
//!
//! Each attempt is signed afresh (Standard Webhooks, see [`signature`](super::signature)) with the
//! secrets active *at that moment*, so a rotation also applies to webhooks already queued.
//! 2xx = delivered; 410 = Gem asks us to stop (dead-lettered at once); anything else, a timeout
//! or a connection error → retried with backoff.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::screening;
use super::signature::{self, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::config::GemConfig;
use crate::recording::{CallLog, CallTarget, OutboundCall};
use crate::store::{Enqueued, Order, Store, StoreError};

/// Event kind of one status webhook to Gem.
pub const GEM_DELIVER: &str = "gem.deliver";

/// Timeout of one delivery attempt (Standard Webhooks suggests 15–30 s).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// Payload of a `gem.deliver` event: the webhook id and the exact body to sign and send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub webhook_id: String,
    pub body: String,
}

/// The JSON body Gem receives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusBody {
    /// Always `screening.status`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The id `POST /screenings` returned; null for an order Gem did not ask for.
    pub screening_id: Option<String>,
    pub application_id: String,
    pub order_ref: String,
    /// `pending`, `analyzing`, `partial`, `complete`, `error` or `cancelled`.
    pub state: String,
    /// The vendor's label, e.g. `CERTN - Complete`.
    pub label: String,
    pub results_url: Option<String>,
    pub score: Option<f64>,
    pub verdict: Option<String>,
    /// When switchyard recorded this status (RFC 3339, UTC).
    pub occurred_at: String,
}

/// Queues the webhook for `order`'s current status, unless that exact status was queued before.
/// Returns the event id when a new delivery was queued.
pub fn enqueue_status(
    store: &Store,
    integration: &str,
    order: &Order,
) -> Result<Option<i64>, StoreError> {
    let identity = serde_json::json!([
        integration,
        order.order_ref,
        order.state,
        order.label,
        order.report_url
    ]);
    let digest = hex::encode(Sha256::digest(identity.to_string().as_bytes()));
    let screening = screening::of_order(store, integration, &order.order_ref)?;
    let body = StatusBody {
        kind: "screening.status".into(),
        screening_id: screening.map(|s| s.id),
        application_id: order.opportunity_id.clone(),
        order_ref: order.order_ref.clone(),
        state: order.state.clone(),
        label: order.label.clone(),
        results_url: order.report_url.clone(),
        score: order.score,
        verdict: order.verdict.clone(),
        occurred_at: crate::clock::rfc3339(crate::clock::now_secs()),
    };
    let delivery = Delivery {
        webhook_id: format!("msg_{}", &digest[..32]),
        body: serde_json::to_string(&body).unwrap_or_default(),
    };
    let payload = serde_json::to_string(&delivery).unwrap_or_default();
    match store.enqueue(
        integration,
        GEM_DELIVER,
        &format!("gem.deliver:{digest}"),
        &payload,
    )? {
        Enqueued::New(id) => Ok(Some(id)),
        Enqueued::Duplicate { .. } => Ok(None),
    }
}

/// Why an attempt did not deliver. Never contains the URL or a secret.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A non-2xx answer, with the wait its `Retry-After` asked for (seconds or an HTTP date).
    #[error("Gem answered {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("Gem answered 410 Gone: stop sending")]
    Gone,
    #[error("cannot reach Gem: {0}")]
    Unreachable(String),
}

impl DeliveryError {
    /// Whether a later attempt may succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, DeliveryError::Gone)
    }
}

/// One attempt: signs `delivery` with the secrets active now and POSTs it to Gem's handler.
pub async fn send(
    http: &reqwest::Client,
    gem: &GemConfig,
    delivery: &Delivery,
) -> Result<u16, DeliveryError> {
    let now = crate::clock::now_secs();
    let secrets: Vec<&[u8]> = gem
        .signing_secrets(now)
        .into_iter()
        .map(|s| s.expose().as_bytes())
        .collect();
    let sig = signature::header(
        &secrets,
        &delivery.webhook_id,
        now,
        delivery.body.as_bytes(),
    );
    let started_at_ms = crate::clock::now_ms();
    let sent = http
        .post(&gem.webhook_url)
        .timeout(ATTEMPT_TIMEOUT)
        .header("content-type", "application/json")
        .header(HEADER_ID, &delivery.webhook_id)
        .header(HEADER_TIMESTAMP, now.to_string())
        .header(HEADER_SIGNATURE, sig)
        .body(delivery.body.clone())
        .send()
        .await;
    // The URL may carry a token of Gem's (in its path too): only its origin is recorded.
    let origin = url::Url::parse(&gem.webhook_url)
        .map(|u| format!("{}/…", u.origin().ascii_serialization()))
        .unwrap_or_default();
    let outcome = match &sent {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) if e.is_timeout() => Err("timeout".to_string()),
        Err(_) => Err("unreachable".to_string()),
    };
    CallLog::record_current(OutboundCall::ended(
        CallTarget::Ats,
        "POST",
        &origin,
        started_at_ms,
        outcome,
    ));
    // The URL may carry a token of Gem's: keep it out of errors and logs.
    let response = sent.map_err(|e| DeliveryError::Unreachable(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    match status {
        200..=299 => Ok(status),
        410 => Err(DeliveryError::Gone),
        other => Err(DeliveryError::Status {
            status: other,
            retry_after: response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after),
        }),
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::retry_after;
    use std::time::{Duration, SystemTime};

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(retry_after(" 120 "), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(90));
        let wait = retry_after(&later).expect("an HTTP date");
        assert!(wait > Duration::from_secs(80) && wait <= Duration::from_secs(90));
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(90));
        assert_eq!(retry_after(&past), Some(Duration::ZERO));
        assert_eq!(retry_after("soon"), None);
    }
}
