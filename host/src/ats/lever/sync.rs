//! Writes the recorded state of an opportunity's screenings onto the Lever opportunity.
//!
//! Tags and links are reconciled, not replayed: it reads the opportunity as Lever has it now and
//! writes only what is missing, so running it twice (a retried event, a crash between two
//! writes, a redelivered callback) never adds the same tag or link twice. Notes are not read back
//! from Lever as a rule: the store says which were written.
//! - status tag: the newest order's label; every other status label of the connector is removed,
//!   so exactly one shows;
//! - verdict tag: the newest order's verdict when it is one of the connector's verdict labels;
//!   every other verdict label is removed (a changed verdict replaces the old tag; a newer order
//!   without a verdict clears it);
//! - links: every order's report URL, once;
//! - notes: each recorded note not yet marked written: marked *attempted* in the store, written,
//!   then marked written after Lever's 201. Lever's notes API has no idempotency key, so a write
//!   whose answer was lost (a timeout, a 5xx, a crash before `written_at`) may or may not have
//!   happened: a note marked attempted and not written is looked up among the opportunity's
//!   notes first (`notes:read:admin`, read only then) and written only if Lever lacks it. So a
//!   note is written exactly once, and the common path never reads notes.

use crate::ats::lever::{LeverClient, LeverError, Opportunity};
use crate::ats::written::Writing;
use crate::store::locks::HeldLock;
use crate::store::{Order, PendingNote, Store};
use crate::timeline::{Timeline, TimelineEvent};

/// Brings opportunity `opportunity_id` in line with `orders` stored for it and the `notes` to
/// write, read under `held` (the opportunity's cross-host lock, [`Store::lock_opportunity`]),
/// checked still held before each write: a lock lost with its connection stops the
/// reconciliation, and the step is retried. The notes recorded with this event's status are
/// there already; a status recorded after the read is written by its own event.
/// `status_labels` and `verdict_labels` are all labels the connector may use (its manifest).
/// `opened`: the opportunity as read since this host's last write to it (the read that started
/// the screening), else it is read now; `writing` marks each write for the next such read.
#[allow(clippy::too_many_arguments)]
pub async fn reconcile(
    (client, opened): (&LeverClient, Option<Opportunity>),
    (held, mut writing): (&HeldLock, Writing<'_>),
    (orders, notes): (Vec<Order>, Vec<PendingNote>),
    store: &Store,
    integration: &str,
    opportunity_id: &str,
    status_labels: &[String],
    verdict_labels: &[String],
    timeline: &Timeline,
) -> Result<(), SyncError> {
    let Some(newest) = orders.last() else {
        return Ok(());
    };
    let opp = match opened {
        Some(opp) => opp,
        None => client.opportunity(opportunity_id).await?,
    };
    let write = |action: String| {
        timeline.emit(TimelineEvent::AtsWrite {
            integration: integration.to_string(),
            opportunity: opportunity_id.to_string(),
            action,
        })
    };

    // Labels of older orders count as status labels too, in case a connector version renamed one.
    let is_status_label =
        |tag: &String| status_labels.contains(tag) || orders.iter().any(|o| &o.label == tag);
    let verdict = newest
        .verdict
        .as_ref()
        .filter(|v| verdict_labels.contains(v) && **v != newest.label);
    let stale: Vec<String> = opp
        .tags
        .iter()
        .filter(|t| {
            let wanted = **t == newest.label || Some(*t) == verdict;
            !wanted && (is_status_label(t) || verdict_labels.contains(t))
        })
        .cloned()
        .collect();
    if !stale.is_empty() {
        held.still_held().await?;
        writing.arm();
        client.remove_tags(opportunity_id, &stale).await?;
        write(format!("removeTags {stale:?}"));
    }
    if !opp.tags.contains(&newest.label) {
        held.still_held().await?;
        writing.arm();
        client
            .add_tags(opportunity_id, std::slice::from_ref(&newest.label))
            .await?;
        write(format!("addTags [{:?}]", newest.label));
    }
    if let Some(verdict) = verdict.filter(|v| !opp.tags.contains(v)) {
        held.still_held().await?;
        writing.arm();
        client
            .add_tags(opportunity_id, std::slice::from_ref(verdict))
            .await?;
        write(format!("addTags [{verdict:?}] (verdict)"));
    }

    let mut links: Vec<String> = Vec::new();
    for url in orders.iter().filter_map(|o| o.report_url.clone()) {
        if !opp.links.contains(&url) && !links.contains(&url) {
            links.push(url);
        }
    }
    if !links.is_empty() {
        held.still_held().await?;
        writing.arm();
        client.add_links(opportunity_id, &links).await?;
        write(format!("addLinks {links:?}"));
    }

    // Read once, and only when an earlier write may have gone through.
    let mut on_lever: Option<Vec<String>> = None;
    for note in notes {
        if note.attempted {
            if on_lever.is_none() {
                on_lever = Some(client.note_texts(opportunity_id).await?);
            }
            if on_lever
                .as_ref()
                .is_some_and(|kept| kept.contains(&note.text))
            {
                store.note_written(integration, &note.order_ref, &note.text)?;
                continue;
            }
        }
        held.still_held().await?;
        store.note_attempted(integration, &note.order_ref, &note.text)?;
        writing.arm();
        client
            .add_note(opportunity_id, &note.text, note.secret)
            .await?;
        store.note_written(integration, &note.order_ref, &note.text)?;
        write(format!(
            "add {}note ({} chars)",
            if note.secret { "secret " } else { "" },
            note.text.len()
        ));
    }
    Ok(())
}

/// Why a reconciliation stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Lever(#[from] LeverError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}
