//! A status the flow learned (a started screening's first, a vendor's update), handed to
//! [`super::Ats::sync`] to record before it writes anything to the ATS: an adapter that takes a
//! store lock first records it with that lock ([`Store::lock_opportunity`]: one round trip on
//! PostgreSQL), any other alone first ([`StatusToRecord::record`]).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::kv::KvWrite;
use crate::store::{StatusRecord, Store};
use crate::timeline::{Timeline, TimelineEvent};

/// What [`Store::record_status_with_state`] records, and whether it was.
pub struct StatusToRecord {
    record: StatusRecord,
    /// The connector's `state` writes after its last outbound request, committed with it.
    state: Vec<KvWrite>,
    /// The timeline's label of the status once recorded.
    label: String,
    recorded: AtomicBool,
}

impl StatusToRecord {
    pub fn new(record: StatusRecord, state: Vec<KvWrite>, label: String) -> StatusToRecord {
        StatusToRecord {
            record,
            state,
            label,
            recorded: AtomicBool::new(false),
        }
    }

    /// What the store records (copies: a failed step keeps them).
    pub fn write(&self) -> (StatusRecord, Vec<KvWrite>) {
        (self.record.clone(), self.state.clone())
    }

    /// Whether it was recorded (committed).
    pub fn recorded(&self) -> bool {
        self.recorded.load(Ordering::Acquire)
    }

    /// Marks it recorded, once committed, and shows it on the timeline.
    pub fn mark_recorded(&self, timeline: &Timeline) {
        if self.recorded.swap(true, Ordering::AcqRel) {
            return;
        }
        timeline.emit(TimelineEvent::StatusRecorded {
            integration: self.record.order.integration.clone(),
            order_ref: self.record.order.order_ref.clone(),
            label: self.label.clone(),
        });
    }

    /// Records it alone (one write of the group commit), for an adapter that takes no lock.
    pub async fn record(&self, store: &Store, timeline: &Timeline) -> crate::store::Result<()> {
        let (record, state) = self.write();
        store.record_status_with_state(record, state).await?;
        self.mark_recorded(timeline);
        Ok(())
    }
}
