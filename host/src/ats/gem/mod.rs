//! Gem: the ATS is the client. Gem calls switchyard's Gem API (per integration, with an API key
//! switchyard issued) to list packages, send a screening and read its status; switchyard sends
//! each status change back to Gem's webhook handler as a signed webhook (Standard Webhooks).
//!
//! - [`config`]: the `[integrations.ats]` section (`kind = "gem"`), its checks, and the Gem API's
//!   URL.
//! - [`form`]: Gem's `ats` fields in the admin API (input, view, storage form).
//! - [`keys`]: API keys (issued once, stored as SHA-256, revocable, several active at once).
//! - [`routes`]: the routes under `/gem/{integration}/`, Gem's HTTP surface.
//! - [`screening`]: a screening Gem asked for, and the `gem.send` step that starts it through the
//!   integration's connector (the same `start-screening` call the Lever flow makes).
//! - [`delivery`]: status webhooks to Gem: enqueued durably on the event queue, one per distinct
//!   status, and sent by the workers with retries.
//! - [`signature`]: Standard Webhooks signing (and verification, for tests).
//!
//! Its tables (`api_keys`, `gem_screenings`) and their SQL are in `crate::store::gem`.
//!
//! [`GemAts`] is the adapter the flow uses (see [`crate::ats::Ats`]). Documented for Gem-side
//! developers in `docs/gem.md`.

pub mod config;
pub mod delivery;
pub mod form;
pub mod keys;
pub mod routes;
pub mod screening;
pub mod signature;

use async_trait::async_trait;

use super::{Ats, AtsCx, AtsError, Role, StatusToRecord, Trigger};
use crate::ats::section::AtsSection;
use crate::config::GemConfig;
use crate::store::{Event, Order};
use crate::timeline::TimelineEvent;
use crate::wasm::connector::ScreeningRequest;
use delivery::{Delivery, DeliveryError, GEM_DELIVER};
use screening::{SendPayload, GEM_SEND};

/// A Gem integration's adapter: its webhook settings and the HTTP client for deliveries.
pub struct GemAts {
    config: GemConfig,
    http: reqwest::Client,
}

impl GemAts {
    pub fn new(config: GemConfig, http: reqwest::Client) -> GemAts {
        GemAts { config, http }
    }

    /// The Gem settings (webhook URL and secrets).
    pub fn config(&self) -> &GemConfig {
        &self.config
    }
}

fn send_payload(event: &Event) -> Result<SendPayload, AtsError> {
    serde_json::from_str(&event.payload)
        .map_err(|e| AtsError::fatal(format!("stored Gem screening is unreadable: {e}")))
}

#[async_trait]
impl Ats for GemAts {
    fn kind(&self) -> &'static str {
        "gem"
    }

    fn endpoints(&self, public_url: &str, integration: &str) -> Vec<(&'static str, String)> {
        self.config.webhook_urls(public_url, integration)
    }

    fn role(&self, kind: &str) -> Option<Role> {
        match kind {
            GEM_SEND => Some(Role::Trigger),
            GEM_DELIVER => Some(Role::Delivery),
            _ => None,
        }
    }

    /// A screening Gem sent through its API: the *same* connector `start-screening` call as for
    /// Lever, with idempotency key `gem:<screening id>` and Gem's package if one was chosen.
    async fn trigger(
        &self,
        cx: &AtsCx<'_>,
        event: &Event,
        _default_stage: Option<&str>,
    ) -> Result<Trigger, AtsError> {
        // Gem waits for an answer: a send the integration was disabled before ends as an error
        // Gem sees (see `gave_up`), not as a silent skip.
        if !cx.enabled {
            return Err(AtsError::fatal(
                "the integration was disabled before the send started",
            ));
        }
        let send = send_payload(event)?;
        Ok(Trigger::Explicit(Box::new(ScreeningRequest {
            idempotency_key: format!("gem:{}", send.screening_id),
            name: send.request.candidate.name.clone(),
            emails: send.request.candidate.emails.clone(),
            phones: send.request.candidate.phones.clone(),
            opportunity_id: send.request.application_id.clone(),
            opportunity_tags: Vec::new(),
            posting_id: None,
            posting_name: None,
            posting_tags: Vec::new(),
            stage: send.request.stage.clone(),
            package: send.request.package.clone(),
        })))
    }

    /// Linked before the order is recorded: a vendor callback waits for the order, so by the time
    /// it produces a webhook, the webhook can name the screening.
    fn started(&self, cx: &AtsCx<'_>, event: &Event, order_ref: &str) -> Result<(), AtsError> {
        let send = send_payload(event)?;
        screening::link_order(cx.store, cx.integration, &send.screening_id, order_ref)?;
        Ok(())
    }

    /// Queues a webhook with the order's current status (once per distinct status; the workers
    /// deliver it).
    async fn sync(
        &self,
        cx: &AtsCx<'_>,
        order_ref: &str,
        _opportunity_id: &str,
        _status_labels: &[String],
        _verdict_labels: &[String],
        status: Option<&StatusToRecord>,
    ) -> Result<(), AtsError> {
        if let Some(status) = status {
            status.record(cx.store, cx.timeline).await?;
        }
        let Some(order) = cx.store.order(cx.integration, order_ref)? else {
            return Err(AtsError::new(
                format!("order {order_ref} is not recorded"),
                true,
            ));
        };
        if delivery::enqueue_status(cx.store, cx.integration, &order)?.is_some() {
            cx.wake.notify_one();
        }
        Ok(())
    }

    /// One signed status webhook to Gem's handler.
    async fn deliver(&self, cx: &AtsCx<'_>, event: &Event) -> Result<String, AtsError> {
        let delivery: Delivery = serde_json::from_str(&event.payload)
            .map_err(|e| AtsError::fatal(format!("stored Gem delivery is unreadable: {e}")))?;
        match delivery::send(&self.http, &self.config, &delivery).await {
            Ok(status) => {
                let action = format!(
                    "status webhook {} delivered ({status})",
                    delivery.webhook_id
                );
                cx.timeline.emit(TimelineEvent::AtsWrite {
                    integration: cx.integration.to_string(),
                    opportunity: "gem".into(),
                    action: action.clone(),
                });
                Ok(action)
            }
            Err(e) => Err(AtsError {
                retry_after: match &e {
                    DeliveryError::Status { retry_after, .. } => *retry_after,
                    _ => None,
                },
                ..AtsError::new(
                    format!("webhook {}: {e}", delivery.webhook_id),
                    e.retryable(),
                )
            }),
        }
    }

    /// A Gem send that never got a vendor order is reported to Gem as an `error` status (the
    /// recruiter would otherwise see "queued" forever). The reason stays in the event and the
    /// logs: Gem gets a fixed label, not internal error text. Idempotent; a send whose order was
    /// placed before it failed keeps that order.
    fn gave_up(&self, cx: &AtsCx<'_>, event: &Event) -> Result<(), AtsError> {
        if event.kind != GEM_SEND {
            return Ok(());
        }
        let send = send_payload(event)?;
        let order_ref = screening::failed_order_ref(&send.screening_id);
        let unlinked = screening::link_order_if_unlinked(
            cx.store,
            cx.integration,
            &send.screening_id,
            &order_ref,
        )?;
        // Linked before (to a real order: keep it; to ours: an earlier run of this step was cut
        // short).
        let ours = unlinked
            || screening::get(cx.store, cx.integration, &send.screening_id)?
                .and_then(|s| s.order_ref)
                .is_some_and(|r| r == order_ref);
        if !ours {
            return Ok(());
        }
        let order = Order {
            integration: cx.integration.to_string(),
            order_ref,
            connector: String::new(),
            opportunity_id: send.request.application_id.clone(),
            seq: 0,
            state: "error".into(),
            label: "ERROR (could not start)".into(),
            report_url: None,
            score: None,
            verdict: None,
        };
        cx.store.upsert_order(&order)?;
        if delivery::enqueue_status(cx.store, cx.integration, &order)?.is_some() {
            cx.wake.notify_one();
        }
        Ok(())
    }
}
