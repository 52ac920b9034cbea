//! What happens to one stored event, read top-down.
//!
//! `lever.stage_change`: resolve the stage's name → if it is the integration's trigger stage, read
//! the opportunity and its posting tags from Lever → ask the connector to start a screening (the
//! idempotency key is the webhook's token, so a retry never invites twice) → record the order and
//! its first status → reconcile the opportunity in Lever.
//!
//! `vendor.status`: a status update a connector produced from a verified vendor callback → advance
//! the order (never backwards) → bring the ATS up to date (below).
//!
//! `gem.send`: a screening Gem sent through its API → the *same* connector `start-screening` call
//! (idempotency key `gem:<screening id>`, Gem's package if one was chosen) → link the screening to
//! the order → record the order and its first status → bring the ATS up to date.
//!
//! `gem.deliver`: one signed status webhook to Gem's handler (see [`gem::delivery`]).
//!
//! "Bring the ATS up to date" is the one ATS-specific step: a Lever integration reconciles the
//! opportunity in Lever; a Gem integration queues a status webhook for the order.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::{App, Integration};
use crate::connector::{CallError, LoadedConnector, ScreeningRequest, Status, StatusUpdate};
use crate::gem::delivery::{self, Delivery, DeliveryError, GEM_DELIVER};
use crate::gem::screening::{self as gem_screening, SendPayload, GEM_SEND};
use crate::lever::webhook::{StageChange, Webhook};
use crate::lever::{self, LeverError};
use crate::store::{Event, Order, StoreError};
use crate::timeline::TimelineEvent;

/// Event kind of a Lever stage change.
pub const LEVER_STAGE_CHANGE: &str = "lever.stage_change";
/// Event kind of a status update from a vendor callback.
pub const VENDOR_STATUS: &str = "vendor.status";
/// Event kind of a vendor callback the connector failed on (recorded dead; the vendor retries).
pub const VENDOR_CALLBACK: &str = "vendor.callback";

/// How an event ended.
#[derive(Debug)]
pub enum Outcome {
    /// Processed; the connector version that handled it, if any.
    Done(Option<String>),
    /// Nothing to do (not the trigger stage, integration disabled); says why.
    Skipped(String),
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FlowError {
    pub message: String,
    pub retryable: bool,
    pub connector_version: Option<String>,
    /// The least wait before the next attempt that the other side asked for (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl FlowError {
    pub(crate) fn new(message: impl Into<String>, retryable: bool) -> FlowError {
        FlowError {
            message: message.into(),
            retryable,
            connector_version: None,
            retry_after: None,
        }
    }
    pub(crate) fn retry(message: impl Into<String>) -> FlowError {
        FlowError::new(message, true)
    }
    fn fatal(message: impl Into<String>) -> FlowError {
        FlowError::new(message, false)
    }
    fn by(mut self, version: &str) -> FlowError {
        self.connector_version = Some(version.to_string());
        self
    }
}

impl From<LeverError> for FlowError {
    fn from(e: LeverError) -> Self {
        FlowError::new(e.to_string(), e.retryable())
    }
}

impl From<StoreError> for FlowError {
    fn from(e: StoreError) -> Self {
        FlowError::retry(e.to_string())
    }
}

impl From<lever::sync::SyncError> for FlowError {
    fn from(e: lever::sync::SyncError) -> Self {
        FlowError::new(e.to_string(), e.retryable())
    }
}

/// Payload of a `vendor.status` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VendorStatus {
    /// The connector version that produced the update from the callback.
    pub connector_version: String,
    pub update: StatusUpdate,
}

/// Processes one claimed event.
pub async fn process(app: &Arc<App>, event: &Event) -> Result<Outcome, FlowError> {
    let Some(integration) = app.integration(&event.integration) else {
        return Err(FlowError::fatal(format!(
            "integration `{}` no longer exists",
            event.integration
        )));
    };
    // Disabling stops new work; what already happened is still reported: a status webhook
    // queued for Gem is delivered, and a Gem send not started yet ends as an error Gem sees.
    if !integration.config.enabled && event.kind != GEM_DELIVER {
        if event.kind == GEM_SEND {
            return Err(FlowError::fatal(
                "the integration was disabled before the send started",
            ));
        }
        return Ok(Outcome::Skipped("integration is disabled".into()));
    }
    match event.kind.as_str() {
        LEVER_STAGE_CHANGE => stage_change(app, &integration, event).await,
        VENDOR_STATUS => vendor_status(app, &integration, event).await,
        GEM_SEND => gem_send(app, &integration, event).await,
        GEM_DELIVER => gem_deliver(app, &integration, event).await,
        other => Err(FlowError::fatal(format!("unknown event kind `{other}`"))),
    }
}

/// After an event is dead-lettered: a Gem send that never got a vendor order is reported to Gem
/// as an `error` status (the recruiter would otherwise see "queued" forever). The reason stays in
/// the event and the logs: Gem gets a fixed label, not internal error text. Idempotent; a send
/// whose order was placed before it failed keeps that order.
pub fn gave_up(app: &App, event: &Event) -> Result<(), FlowError> {
    if event.kind != GEM_SEND {
        return Ok(());
    }
    let send: SendPayload = serde_json::from_str(&event.payload)
        .map_err(|e| FlowError::fatal(format!("stored Gem screening is unreadable: {e}")))?;
    let order_ref = gem_screening::failed_order_ref(&send.screening_id);
    let unlinked = gem_screening::link_order_if_unlinked(
        &app.store,
        &event.integration,
        &send.screening_id,
        &order_ref,
    )?;
    // Linked before (to a real order: keep it; to ours: an earlier run of this step was cut short).
    let ours = unlinked
        || gem_screening::get(&app.store, &event.integration, &send.screening_id)?
            .and_then(|s| s.order_ref)
            .is_some_and(|r| r == order_ref);
    if !ours {
        return Ok(());
    }
    let order = Order {
        integration: event.integration.clone(),
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
    app.store.upsert_order(&order)?;
    if delivery::enqueue_status(&app.store, &event.integration, &order)?.is_some() {
        app.wake.notify_one();
    }
    Ok(())
}

async fn stage_change(
    app: &Arc<App>,
    integration: &Integration,
    event: &Event,
) -> Result<Outcome, FlowError> {
    let hook: Webhook = serde_json::from_str(&event.payload)
        .map_err(|e| FlowError::fatal(format!("stored webhook is unreadable: {e}")))?;
    let change: StageChange = serde_json::from_value(hook.data.clone())
        .map_err(|e| FlowError::fatal(format!("stored stage change is unreadable: {e}")))?;
    let Some((lever_config, lever_client)) = integration.lever() else {
        return Err(FlowError::fatal(
            "a Lever event for an integration without a Lever client (not Lever, or no credential)",
        ));
    };
    let connector = app.connector(integration)?;
    let version = connector.version_tag();

    let trigger = lever_config
        .trigger_stage
        .clone()
        .or_else(|| connector.manifest.default_trigger_stage.clone())
        .ok_or_else(|| FlowError::fatal("no trigger stage configured").by(&version))?;
    let stage_name = app.stage_name(integration, &change.to_stage_id).await?;
    if !stage_name
        .as_deref()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case(trigger.trim()))
    {
        return Ok(Outcome::Skipped(format!(
            "stage {:?} is not the trigger stage {trigger:?}",
            stage_name.unwrap_or(change.to_stage_id)
        )));
    }

    let opp = lever_client.opportunity(&change.opportunity_id).await?;
    let mut posting_tags = Vec::new();
    for posting in &opp.posting_ids {
        for tag in lever_client.posting_tags(posting).await? {
            if !posting_tags.contains(&tag) {
                posting_tags.push(tag);
            }
        }
    }
    let request = ScreeningRequest {
        idempotency_key: format!("lever:{}", hook.token),
        name: opp.name.clone(),
        emails: opp.emails.clone(),
        phones: opp.phones.clone(),
        opportunity_id: opp.id.clone(),
        opportunity_tags: opp.tags.clone(),
        posting_id: opp.posting_ids.first().cloned(),
        posting_tags,
        stage: stage_name,
        package: None,
    };
    let ctx = app.call_context(integration, &connector);
    let started = connector
        .start_screening(app.registry.runtime(), ctx, &request)
        .await
        .map_err(|e| call_failed(e).by(&version))?;

    // No vendor order (e.g. no email): the status still belongs on the opportunity, under a
    // local reference unique to this event.
    let order_ref = started
        .order_ref
        .clone()
        .unwrap_or_else(|| format!("local:{}", event.id));
    record_status(
        app,
        integration,
        &connector,
        &order_ref,
        &opp.id,
        &started.status,
    )?;
    sync_ats(app, integration, &connector, &order_ref, &opp.id)
        .await
        .map_err(|e| e.by(&version))?;
    Ok(Outcome::Done(Some(version)))
}

async fn gem_send(
    app: &Arc<App>,
    integration: &Integration,
    event: &Event,
) -> Result<Outcome, FlowError> {
    let send: SendPayload = serde_json::from_str(&event.payload)
        .map_err(|e| FlowError::fatal(format!("stored Gem screening is unreadable: {e}")))?;
    let connector = app.connector(integration)?;
    let version = connector.version_tag();
    let request = ScreeningRequest {
        idempotency_key: format!("gem:{}", send.screening_id),
        name: send.request.candidate.name.clone(),
        emails: send.request.candidate.emails.clone(),
        phones: send.request.candidate.phones.clone(),
        opportunity_id: send.request.application_id.clone(),
        opportunity_tags: Vec::new(),
        posting_id: None,
        posting_tags: Vec::new(),
        stage: send.request.stage.clone(),
        package: send.request.package.clone(),
    };
    let ctx = app.call_context(integration, &connector);
    let started = connector
        .start_screening(app.registry.runtime(), ctx, &request)
        .await
        .map_err(|e| call_failed(e).by(&version))?;
    let order_ref = started
        .order_ref
        .clone()
        .unwrap_or_else(|| format!("local:{}", event.id));
    // Linked before the order is recorded: a vendor callback waits for the order, so by the time
    // it produces a webhook, the webhook can name the screening.
    gem_screening::link_order(
        &app.store,
        &integration.config.id,
        &send.screening_id,
        &order_ref,
    )?;
    let application = &send.request.application_id;
    record_status(
        app,
        integration,
        &connector,
        &order_ref,
        application,
        &started.status,
    )?;
    sync_ats(app, integration, &connector, &order_ref, application)
        .await
        .map_err(|e| e.by(&version))?;
    Ok(Outcome::Done(Some(version)))
}

async fn gem_deliver(
    app: &Arc<App>,
    integration: &Integration,
    event: &Event,
) -> Result<Outcome, FlowError> {
    let Some(gem) = integration.gem_config() else {
        return Err(FlowError::fatal(
            "a Gem delivery for an integration that is not a Gem one",
        ));
    };
    let delivery: Delivery = serde_json::from_str(&event.payload)
        .map_err(|e| FlowError::fatal(format!("stored Gem delivery is unreadable: {e}")))?;
    match delivery::send(&app.http, gem, &delivery).await {
        Ok(status) => {
            app.timeline.emit(TimelineEvent::AtsWrite {
                integration: integration.config.id.clone(),
                opportunity: "gem".into(),
                action: format!(
                    "status webhook {} delivered ({status})",
                    delivery.webhook_id
                ),
            });
            Ok(Outcome::Done(None))
        }
        Err(e) => Err(FlowError {
            retry_after: match &e {
                DeliveryError::Status { retry_after, .. } => *retry_after,
                _ => None,
            },
            ..FlowError::new(
                format!("webhook {}: {e}", delivery.webhook_id),
                e.retryable(),
            )
        }),
    }
}

async fn vendor_status(
    app: &Arc<App>,
    integration: &Integration,
    event: &Event,
) -> Result<Outcome, FlowError> {
    let payload: VendorStatus = serde_json::from_str(&event.payload)
        .map_err(|e| FlowError::fatal(format!("stored status update is unreadable: {e}")))?;
    let connector = app.connector(integration)?;
    let update = &payload.update;
    let Some(order) = app.store.order(&integration.config.id, &update.order_ref)? else {
        // The callback can overtake the start event that records the order: wait for it.
        return Err(
            FlowError::retry(format!("order {} is not known yet", update.order_ref))
                .by(&payload.connector_version),
        );
    };
    record_status(
        app,
        integration,
        &connector,
        &order.order_ref,
        &order.opportunity_id,
        &update.status,
    )?;
    sync_ats(
        app,
        integration,
        &connector,
        &order.order_ref,
        &order.opportunity_id,
    )
    .await
    .map_err(|e| e.by(&payload.connector_version))?;
    Ok(Outcome::Done(Some(payload.connector_version)))
}

/// Stores an order's status (forward only) and its note, if any.
fn record_status(
    app: &App,
    integration: &Integration,
    connector: &LoadedConnector,
    order_ref: &str,
    opportunity_id: &str,
    status: &Status,
) -> Result<(), FlowError> {
    let id = &integration.config.id;
    let order = Order {
        integration: id.clone(),
        order_ref: order_ref.to_string(),
        connector: connector.manifest.id.clone(),
        opportunity_id: opportunity_id.to_string(),
        seq: 0,
        state: status.state.clone(),
        label: status.label.clone(),
        report_url: status.report_url.clone(),
        score: status.score,
        verdict: status.verdict.clone(),
    };
    // New order: inserted. Known order (a retry, a callback): moved forward, never back.
    app.store.upsert_order(&order)?;
    app.store.advance_order(&order)?;
    if let Some(note) = &status.note {
        app.store.add_note(id, order_ref, &note.text, note.secret)?;
    }
    app.timeline.emit(TimelineEvent::StatusRecorded {
        integration: id.clone(),
        order_ref: order_ref.to_string(),
        label: status.label.clone(),
    });
    Ok(())
}

/// Brings the ATS up to date with what is recorded. Lever: writes the opportunity's recorded
/// state, one opportunity at a time. Gem: queues a webhook with the order's current status (once
/// per distinct status; the worker delivers it).
async fn sync_ats(
    app: &App,
    integration: &Integration,
    connector: &LoadedConnector,
    order_ref: &str,
    opportunity_id: &str,
) -> Result<(), FlowError> {
    let Some((_, client)) = integration.lever() else {
        let Some(order) = app.store.order(&integration.config.id, order_ref)? else {
            return Err(FlowError::retry(format!(
                "order {order_ref} is not recorded"
            )));
        };
        if delivery::enqueue_status(&app.store, &integration.config.id, &order)?.is_some() {
            app.wake.notify_one();
        }
        return Ok(());
    };
    let _guard = app
        .lock_opportunity(&integration.config.id, opportunity_id)
        .await;
    lever::sync::reconcile(
        client,
        &app.store,
        &integration.config.id,
        opportunity_id,
        &connector.manifest.status_labels,
        &app.timeline,
    )
    .await
    .map_err(Into::into)
}

fn call_failed(e: CallError) -> FlowError {
    FlowError::new(e.to_string(), e.retryable())
}
