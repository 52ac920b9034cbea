//! What happens to one stored event, read top-down.
//!
//! `lever.stage_change`: resolve the stage's name → if it is the integration's trigger stage, read
//! the opportunity and its posting tags from Lever → ask the connector to start a screening (the
//! idempotency key is the webhook's token, so a retry never invites twice) → record the order and
//! its first status → reconcile the opportunity in Lever.
//!
//! `vendor.status`: a status update a connector produced from a verified vendor callback → advance
//! the order (never backwards) → reconcile the opportunity in Lever.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::app::{App, Integration};
use crate::connector::{CallError, LoadedConnector, ScreeningRequest, Status, StatusUpdate};
use crate::lever::webhook::{StageChange, Webhook};
use crate::lever::{self, LeverError};
use crate::store::{Event, Order, StoreError};
use crate::timeline::TimelineEvent;

/// Event kind of a Lever stage change.
pub const LEVER_STAGE_CHANGE: &str = "lever.stage_change";
/// Event kind of a status update from a vendor callback.
pub const VENDOR_STATUS: &str = "vendor.status";

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
}

impl FlowError {
    fn retry(message: impl Into<String>) -> FlowError {
        FlowError {
            message: message.into(),
            retryable: true,
            connector_version: None,
        }
    }
    fn fatal(message: impl Into<String>) -> FlowError {
        FlowError {
            message: message.into(),
            retryable: false,
            connector_version: None,
        }
    }
    fn by(mut self, version: &str) -> FlowError {
        self.connector_version = Some(version.to_string());
        self
    }
}

impl From<LeverError> for FlowError {
    fn from(e: LeverError) -> Self {
        FlowError {
            retryable: e.retryable(),
            message: e.to_string(),
            connector_version: None,
        }
    }
}

impl From<StoreError> for FlowError {
    fn from(e: StoreError) -> Self {
        FlowError::retry(e.to_string())
    }
}

impl From<lever::sync::SyncError> for FlowError {
    fn from(e: lever::sync::SyncError) -> Self {
        FlowError {
            retryable: e.retryable(),
            message: e.to_string(),
            connector_version: None,
        }
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
    if !integration.config.enabled {
        return Ok(Outcome::Skipped("integration is disabled".into()));
    }
    match event.kind.as_str() {
        LEVER_STAGE_CHANGE => stage_change(app, &integration, event).await,
        VENDOR_STATUS => vendor_status(app, &integration, event).await,
        other => Err(FlowError::fatal(format!("unknown event kind `{other}`"))),
    }
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
    let connector = app.connector(integration)?;
    let version = connector.version_tag();

    let trigger = integration
        .lever_config()
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

    let opp = integration
        .lever
        .opportunity(&change.opportunity_id)
        .await?;
    let mut posting_tags = Vec::new();
    for posting in &opp.posting_ids {
        for tag in integration.lever.posting_tags(posting).await? {
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
    reconcile(app, integration, &connector, &opp.id)
        .await
        .map_err(|e| e.by(&version))?;
    Ok(Outcome::Done(Some(version)))
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
    reconcile(app, integration, &connector, &order.opportunity_id)
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
    let existing = app.store.upsert_order(&Order {
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
    })?;
    if existing.state != status.state || existing.label != status.label {
        app.store.advance_order(
            id,
            order_ref,
            &status.state,
            &status.label,
            status.report_url.as_deref(),
            status.score,
            status.verdict.as_deref(),
        )?;
    }
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

/// Writes the opportunity's recorded state to Lever, one opportunity at a time.
async fn reconcile(
    app: &App,
    integration: &Integration,
    connector: &LoadedConnector,
    opportunity_id: &str,
) -> Result<(), FlowError> {
    let _guard = app
        .lock_opportunity(&integration.config.id, opportunity_id)
        .await;
    lever::sync::reconcile(
        &integration.lever,
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
    FlowError {
        retryable: e.retryable(),
        message: e.to_string(),
        connector_version: None,
    }
}
