//! A live feed of what the host does with each event, for the demo and for tests.
//! Emitting never blocks: with no subscriber, events are dropped.

use std::fmt;

use tokio::sync::broadcast;

/// One step of the flow.
#[derive(Debug, Clone)]
pub enum TimelineEvent {
    WebhookAccepted {
        integration: String,
        source: String,
        event_id: i64,
        summary: String,
    },
    WebhookRejected {
        integration: String,
        source: String,
        status: u16,
        reason: String,
    },
    ConnectorInvoked {
        integration: String,
        connector: String,
        call: String,
    },
    VendorCall {
        integration: String,
        request: String,
        outcome: String,
    },
    ConnectorLog {
        integration: String,
        message: String,
    },
    CallbackHandled {
        integration: String,
        status: u16,
        updates: usize,
    },
    StatusRecorded {
        integration: String,
        order_ref: String,
        label: String,
    },
    AtsWrite {
        integration: String,
        opportunity: String,
        action: String,
    },
    EventFinished {
        integration: String,
        event_id: i64,
        outcome: String,
    },
}

impl fmt::Display for TimelineEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TimelineEvent::*;
        match self {
            WebhookAccepted {
                source,
                event_id,
                summary,
                ..
            } => {
                write!(
                    f,
                    "webhook accepted   [{source}] event #{event_id}: {summary}"
                )
            }
            WebhookRejected {
                source,
                status,
                reason,
                ..
            } => {
                write!(f, "webhook rejected   [{source}] {status}: {reason}")
            }
            ConnectorInvoked {
                connector, call, ..
            } => {
                write!(f, "connector invoked  {connector}.{call}")
            }
            VendorCall {
                request, outcome, ..
            } => write!(f, "vendor call        {request} -> {outcome}"),
            ConnectorLog { message, .. } => write!(f, "connector says     {message}"),
            CallbackHandled {
                status, updates, ..
            } => {
                write!(
                    f,
                    "vendor callback    answered {status}, {updates} status update(s)"
                )
            }
            StatusRecorded {
                order_ref, label, ..
            } => {
                write!(f, "status recorded    order {order_ref}: {label}")
            }
            AtsWrite {
                opportunity,
                action,
                ..
            } => write!(f, "ATS write          {opportunity}: {action}"),
            EventFinished {
                event_id, outcome, ..
            } => write!(f, "event finished     #{event_id}: {outcome}"),
        }
    }
}

/// Sender side of the feed; cheap to clone.
#[derive(Clone)]
pub struct Timeline {
    tx: broadcast::Sender<TimelineEvent>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl Timeline {
    /// Publishes one step.
    pub fn emit(&self, event: TimelineEvent) {
        tracing::debug!(target: "switchyard::timeline", "{event}");
        let _ = self.tx.send(event);
    }
    /// Whether an emitted step goes anywhere (a subscriber, or the debug log): a hot path
    /// skips building one that would be dropped.
    pub fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
            || tracing::enabled!(target: "switchyard::timeline", tracing::Level::DEBUG)
    }
    /// A receiver of every step emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TimelineEvent> {
        self.tx.subscribe()
    }
}
