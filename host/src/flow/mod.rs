//! What happens to one stored event, read top-down. The flow is ATS-neutral: it knows an ATS
//! only through [`Ats`](crate::ats::Ats) (the integration's adapter) and a vendor only through the
//! integration's connector.
//!
//! A trigger event (Lever's stage change, Gem's send): ask the adapter what it means
//! ([`Ats::trigger`](crate::ats::Ats::trigger)) → for a stage reached, start only at the
//! integration's trigger stage, reading the candidate's context from the ATS → unless an order is
//! recorded for the request's idempotency key already (a retry, a replay: the host owns
//! idempotency), ask the connector to start a screening → record the order with the key and its
//! first status (the connector's state for that screening goes with it) → bring the ATS up to
//! date.
//!
//! `vendor.status`: a status update a connector produced from a verified vendor callback → advance
//! the order (never backwards) → bring the ATS up to date.
//!
//! A delivery event (Gem's status webhook): the adapter sends it.
//!
//! "Bring the ATS up to date" is [`Ats::sync`](crate::ats::Ats::sync): Lever reconciles the
//! opportunity, Gem queues a status webhook for the order.

pub mod breaker;
pub mod bulkhead;
pub mod heartbeat;
pub mod rules;
pub mod skew;
pub mod threads;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::{App, Integration};
use crate::ats::{AtsError, Disconnected, Role, StatusToRecord, Trigger};
use crate::store::kv::{KvEntry, KvWrite};
use crate::store::{Event, NewNote, Order, StatusRecord, StoreError, WaitFor};
use crate::wasm::connector::{CallError, LoadedConnector, ScreeningRequest, Status, StatusUpdate};
use crate::wasm::runtime::deferred::{keys_read_ahead, DeferredState};
use crate::wasm::runtime::InvokeError;

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
    /// Held with a reason until what it needs changes (see [`crate::store::waiting`]); its
    /// attempt not counted. The third field: the idempotency key of a screening whose connector
    /// state goes with the wait (an [`WaitFor::Operator`] wait).
    Wait(WaitFor, String, Option<String>),
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
    /// The connector call failed (the vendor, or the connector itself): counts for the
    /// integration's circuit breaker when retryable.
    pub vendor: bool,
    /// Retrying cannot help until this changes (an ATS permission, the state quota): the event
    /// waits for it instead.
    pub wait: Option<WaitFor>,
    /// A screening was started (its order recorded) before this failed: the step only has the
    /// ATS left to update.
    pub started: bool,
    /// With `wait`: the idempotency key of the screening whose connector state is dropped with
    /// the wait (see [`crate::store::waiting::Wait::drop_screening`]).
    pub drop_screening: Option<String>,
}

impl FlowError {
    pub(crate) fn new(message: impl Into<String>, retryable: bool) -> FlowError {
        FlowError {
            message: message.into(),
            retryable,
            connector_version: None,
            retry_after: None,
            vendor: false,
            wait: None,
            started: false,
            drop_screening: None,
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

impl From<AtsError> for FlowError {
    fn from(e: AtsError) -> Self {
        FlowError {
            retry_after: e.retry_after,
            wait: e.wait,
            ..FlowError::new(e.message, e.retryable)
        }
    }
}

impl From<crate::app::NotLoaded> for FlowError {
    fn from(e: crate::app::NotLoaded) -> Self {
        FlowError::retry(e.to_string())
    }
}

impl From<StoreError> for FlowError {
    fn from(e: StoreError) -> Self {
        FlowError::retry(e.to_string())
    }
}

/// Payload of a `vendor.status` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VendorStatus {
    /// The connector version that produced the update from the callback.
    pub connector_version: String,
    pub update: StatusUpdate,
}

/// The connector cannot tell whether its vendor placed the order and cannot look it up (see
/// [`crate::wasm::types::NEEDS_OPERATOR`]): the event waits for an operator, and the screening's
/// connector state (its intent) goes with the wait, so the operator's retry invites afresh.
fn needs_operator(app: &App, reason: &str, key: String, event_id: i64) -> FlowError {
    let text = format!(
        "{reason} (an operator decides: if the vendor has no order for this candidate, \
         POST /admin/events/{event_id}/retry invites once more; if it has one, cancel it there \
         first, then retry)"
    );
    FlowError {
        wait: Some(WaitFor::Operator),
        drop_screening: Some(key),
        ..FlowError::new(
            crate::wasm::quota::clip(&text, app.limits.error_bytes),
            false,
        )
    }
}

/// The role of an event kind: ATS trigger or delivery, or `None` for the flow's own kinds.
pub fn role(app: &App, event: &Event) -> Option<Role> {
    app.integration(&event.integration)
        .and_then(|i| i.ats.role(&event.kind))
}

/// Processes one claimed event.
pub async fn process(app: &Arc<App>, event: &Event) -> Result<Outcome, FlowError> {
    let Some(integration) = app.integration(&event.integration) else {
        return Err(FlowError::fatal(format!(
            "integration `{}` no longer exists",
            event.integration
        )));
    };
    let cx = app.ats_cx(&integration);
    let trigger = integration.ats.role(&event.kind) == Some(Role::Trigger);
    if let Some(d) = integration.ats.disconnected(&cx) {
        return Ok(disconnected(event, trigger, d));
    }
    match steps(app, &integration, event).await {
        // A step that found the grant revoked (refresh refused, 401 after a refresh). A
        // screening started before that (order recorded, ATS not updated yet) waits for the
        // reconnect to be written back.
        Err(e) => match integration.ats.disconnected(&cx) {
            Some(d) => Ok(disconnected(event, trigger && !e.started, d)),
            None => match e.wait {
                Some(what) => Ok(Outcome::Wait(what, e.message, e.drop_screening)),
                None => Err(e),
            },
        },
        done => done,
    }
}

/// Revoke means off: a trigger of an integration whose access was revoked (in the ATS, or
/// disconnected by an operator) is recorded as not sent, and nothing sends it by itself later
/// (an operator may replay it on purpose). Anything else of a disconnected integration (a status
/// of a screening already started, an integration never connected yet) waits for the connect.
fn disconnected(event: &Event, trigger: bool, d: Disconnected) -> Outcome {
    match d {
        Disconnected::Revoked(reason) if trigger => Outcome::Skipped(format!(
            "not sent: {reason}; the integration is off until connected again \
             (POST /admin/events/{}/retry sends it once connected)",
            event.id
        )),
        d => Outcome::Wait(WaitFor::Connect, d.to_string(), None),
    }
}

/// The steps of one event, by its kind.
async fn steps(
    app: &Arc<App>,
    integration: &Arc<Integration>,
    event: &Event,
) -> Result<Outcome, FlowError> {
    let cx = app.ats_cx(integration);
    if event.kind == VENDOR_STATUS {
        if !integration.config.enabled {
            return Ok(Outcome::Skipped("integration is disabled".into()));
        }
        return vendor_status(app, integration, event).await;
    }
    match integration.ats.role(&event.kind) {
        // Deliveries go out even while disabled: they report what already happened.
        Some(Role::Delivery) => {
            integration.ats.deliver(&cx, event).await?;
            Ok(Outcome::Done(None))
        }
        Some(Role::Trigger) => start(app, integration, event).await,
        None => Err(FlowError::fatal(format!(
            "unknown event kind `{}` for a {} integration",
            event.kind,
            integration.ats.kind()
        ))),
    }
}

/// After an event is dead-lettered: the adapter tells the ATS if it waits for an answer.
pub fn gave_up(app: &App, event: &Event) -> Result<(), FlowError> {
    let Some(integration) = app.integration(&event.integration) else {
        return Ok(());
    };
    if integration.ats.role(&event.kind) != Some(Role::Trigger) {
        return Ok(());
    }
    integration
        .ats
        .gave_up(&app.ats_cx(&integration), event)
        .map_err(Into::into)
}

/// A trigger event: decide, start the screening, record it, bring the ATS up to date.
async fn start(
    app: &Arc<App>,
    integration: &Integration,
    event: &Event,
) -> Result<Outcome, FlowError> {
    let cx = app.ats_cx(integration);
    let connector = app.connector(integration)?;
    let version = connector.version_tag();
    let default_stage = connector.manifest.default_trigger_stage.as_deref();
    let request = match integration.ats.trigger(&cx, event, default_stage).await? {
        Trigger::Skip(why) => return Ok(Outcome::Skipped(why)),
        Trigger::Explicit(request) => *request,
        Trigger::StageReached(stage) => {
            // The integration's (posting, stage) → package rules; without rules, the trigger
            // stage starts the connector's own choice for every posting.
            let trigger = integration.ats.trigger_stage().or(default_stage);
            let no_start = |n: rules::NoStart| match n {
                rules::NoStart::Skip(why) => Ok(Outcome::Skipped(why)),
                rules::NoStart::Misconfigured(why) => Err(FlowError::fatal(why).by(&version)),
            };
            let here = match rules::at_stage(&integration.config.rules, trigger, &stage) {
                Ok(here) => here,
                Err(n) => return no_start(n),
            };
            let mut request = integration
                .ats
                .screening_request(&cx, event, &stage)
                .await?;
            let rule = match rules::pick(
                &here,
                request.posting_id.as_deref(),
                request.posting_name.as_deref(),
            ) {
                Ok(rule) => rule,
                Err(n) => return no_start(n),
            };
            if let Some(package) = &rule.package {
                request.package = Some(package.clone());
            }
            request
        }
    };
    let key = &request.idempotency_key;
    // The host owns idempotency: once the order of this key is recorded (a retry after that, a
    // replay), the connector is not asked again; its state for the screening is gone by then.
    // Read with it, for the connector's call: the state its idempotency check reads first.
    let ahead = keys_read_ahead(key);
    let sent = std::time::Instant::now();
    let (recorded, entries) = {
        let (id, connector_id) = (integration.config.id.clone(), connector.manifest.id.clone());
        let (key, keys) = (key.clone(), ahead.clone());
        app.store
            .off_async(move |s| s.order_for_key_with_state(&id, &connector_id, &key, &keys))
            .await?
    };
    let (order_ref, first_status, state) = match recorded {
        Some(order) => {
            tracing::info!(integration = %integration.config.id, event = event.id,
                order = %order.order_ref,
                "the order of this screening is recorded; not calling start-screening again");
            (order.order_ref, None, None)
        }
        None => {
            let read_ahead = (ahead, entries, sent);
            let (started, state) =
                start_screening(app, integration, &connector, &request, event.id, read_ahead)
                    .await
                    .map_err(|e| e.by(&version))?;
            // No vendor order (e.g. no email): the status still belongs on the candidacy, under
            // a local reference unique to this event.
            let order_ref = started
                .order_ref
                .unwrap_or_else(|| format!("local:{}", event.id));
            (order_ref, Some(started.status), Some(state))
        }
    };
    if let Err(e) = integration.ats.started(&cx, event, &order_ref) {
        // The outcome is not recorded: what the connector wrote after its requests still is.
        if let Some(state) = &state {
            flush_state(state);
        }
        return Err(e.into());
    }
    let opportunity = &request.opportunity_id;
    let writes = state.as_ref().map(|s| s.take()).unwrap_or_default();
    let status = first_status.as_ref().map(|status| {
        let first = (event.id, Some(key.as_str()), writes.clone());
        status_to_record(
            integration,
            &connector,
            &order_ref,
            opportunity,
            status,
            first,
        )
    });
    let synced = sync(
        app,
        integration,
        &connector,
        &order_ref,
        opportunity,
        status.as_ref(),
    )
    .await;
    if let Err(e) = synced {
        if status.as_ref().is_some_and(|s| !s.recorded()) {
            // The order is not recorded: the connector's writes after its requests still are.
            if let Some(state) = &state {
                state.hold_again(writes);
                flush_state(state);
            }
            return Err(e.into());
        }
        return Err(FlowError {
            started: true,
            ..FlowError::from(e).by(&version)
        });
    }
    Ok(Outcome::Done(Some(version)))
}

async fn start_screening(
    app: &App,
    integration: &Integration,
    connector: &Arc<LoadedConnector>,
    request: &ScreeningRequest,
    event_id: i64,
    (keys, entries, sent): (Vec<String>, Vec<KvEntry>, std::time::Instant),
) -> Result<(crate::wasm::connector::Started, Arc<DeferredState>), FlowError> {
    // The connector's `state` writes after its last request are committed with the order
    // ([`DeferredState`]); the ones before each request, before it leaves.
    let state = DeferredState::new(
        app.store.clone(),
        &integration.config.id,
        &connector.manifest.id,
    );
    state.read_ahead(&keys, entries, sent);
    let mut ctx = app.sandbox_context(integration, connector);
    ctx.state = Some(state.clone());
    let ctx = Arc::new(ctx);
    let runtime = app.registry.runtime();
    let key = request.idempotency_key.clone();
    // On the worker's task: no hop to a guest thread and back.
    let started = app
        .worker_guest_call(
            &integration.config.id,
            connector.start_screening(runtime, ctx, request),
        )
        .await;
    let started = started.map_err(|e| match e.needs_operator() {
        Some(reason) => needs_operator(app, reason, key, event_id),
        None => call_failed(app, e),
    });
    // What the connector returns is stored and shown: bounded like a callback's updates.
    let started = started.and_then(|started| {
        crate::wasm::quota::check_status(&started.status, &app.limits).map_err(|reason| {
            app.metrics
                .sandbox_limit(&connector.manifest.id, "status_field_bytes");
            FlowError::new(format!("start-screening returned {reason}"), false)
        })?;
        Ok(started)
    });
    match started {
        Ok(started) => Ok((started, state)),
        Err(e) => {
            // No outcome to record: what the call wrote stands all the same.
            flush_state(&state);
            Err(e)
        }
    }
}

/// Commits a call's held `state` writes when no outcome will carry them. A failure is logged:
/// the attempt's own error is the one to report, and the intent each request needed is durable.
fn flush_state(state: &DeferredState) {
    if let Err(e) = state.flush() {
        tracing::error!(error = %e, "cannot store the connector's state writes of a failed call");
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
    let (order_ref, opportunity) = (&order.order_ref, &order.opportunity_id);
    let fields = (event.id, None, Vec::new());
    let status = status_to_record(
        integration,
        &connector,
        order_ref,
        opportunity,
        &update.status,
        fields,
    );
    let synced = sync(
        app,
        integration,
        &connector,
        order_ref,
        opportunity,
        Some(&status),
    )
    .await;
    if let Err(e) = synced {
        // Not recorded: failed as the status's write (the ATS untouched).
        return Err(match status.recorded() {
            true => FlowError::from(e).by(&payload.connector_version),
            false => e.into(),
        });
    }
    Ok(Outcome::Done(Some(payload.connector_version)))
}

/// The connector's verdict labels: a `status.verdict` among them is shown as a verdict tag.
fn verdict_labels(connector: &LoadedConnector) -> &[String] {
    // Contract 0.1 connectors have none; 0.2 declares them in the manifest.
    &connector.manifest.verdict_labels
}

/// The status the connector gave for `order_ref`, for [`Ats::sync`](crate::ats::Ats::sync) to
/// record before its ATS write-back (the state forward only; a verdict replaced by a newer one
/// even when the state stays the same; its note). `seq` orders the updates as they were accepted
/// (the id of the event carrying this one). `idempotency_key`: the request that started the
/// order (its first status), recorded with it; `state`: the connector's `state` writes made
/// after its last request, committed in the same write, before the screening's entries go.
fn status_to_record(
    integration: &Integration,
    connector: &LoadedConnector,
    order_ref: &str,
    opportunity_id: &str,
    status: &Status,
    (seq, idempotency_key, state): (i64, Option<&str>, Vec<KvWrite>),
) -> StatusToRecord {
    let record = StatusRecord {
        order: Order {
            integration: integration.config.id.clone(),
            order_ref: order_ref.to_string(),
            connector: connector.manifest.id.clone(),
            opportunity_id: opportunity_id.to_string(),
            seq: 0,
            state: status.state.clone(),
            label: status.label.clone(),
            report_url: status.report_url.clone(),
            score: status.score,
            // Recorded apart, ordered by `seq` rather than by state.
            verdict: None,
        },
        verdict: status.verdict.clone(),
        seq,
        note: status.note.as_ref().map(|n| NewNote {
            text: n.text.clone(),
            secret: n.secret,
        }),
        idempotency_key: idempotency_key.map(str::to_owned),
    };
    let shown = status
        .verdict
        .as_ref()
        .filter(|v| verdict_labels(connector).contains(v));
    let label = match shown {
        Some(v) => format!("{} + verdict {v}", status.label),
        None => status.label.clone(),
    };
    StatusToRecord::new(record, state, label)
}

/// Brings the ATS up to date with `order_ref`'s recorded state ([`Ats::sync`]), recording
/// `status` first (one transaction: new order inserted, known one moved forward, never back;
/// the verdict and the note with it, or nothing). An error with `status` not recorded failed
/// before anything reached the ATS.
///
/// [`Ats::sync`]: crate::ats::Ats::sync
async fn sync(
    app: &App,
    integration: &Integration,
    connector: &LoadedConnector,
    order_ref: &str,
    opportunity_id: &str,
    status: Option<&StatusToRecord>,
) -> Result<(), AtsError> {
    let cx = app.ats_cx(integration);
    let labels = &connector.manifest.status_labels;
    let verdicts = verdict_labels(connector);
    let ats = &integration.ats;
    ats.sync(&cx, order_ref, opportunity_id, labels, verdicts, status)
        .await?;
    if let Some(status) = status.filter(|s| !s.recorded()) {
        // An adapter must record it before it writes: late, it is still not lost.
        tracing::error!(integration = %integration.config.id, order = order_ref,
            "the ATS adapter did not record the status before its write-back");
        status.record(&app.store, &app.timeline).await?;
    }
    Ok(())
}

/// A failed connector call as a flow error, counted against the vendor (for the breaker); the
/// connector's text is cut to `runtime.limits.error_bytes` (it is stored on the event and logged).
/// A full state quota is neither the vendor's fault nor helped by a retry: the event waits.
fn call_failed(app: &App, e: CallError) -> FlowError {
    let text = crate::wasm::quota::clip(&e.to_string(), app.limits.error_bytes);
    if matches!(e, CallError::Invoke(InvokeError::StateQuota(_))) {
        return FlowError {
            wait: Some(WaitFor::Quota),
            ..FlowError::new(text, false)
        };
    }
    FlowError {
        vendor: true,
        ..FlowError::new(text, e.retryable())
    }
}
