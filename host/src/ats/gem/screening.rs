//! A screening Gem asked for: the request as Gem sent it (stored as the `gem.send` event's
//! payload), and its row in `gem_screenings`, which links Gem's screening id to the event that
//! starts it and, once placed, to the vendor order.

use serde::{Deserialize, Serialize};

pub use crate::store::gem::Screening;
use crate::store::gem::{NewScreening, ScreeningEnqueued};
use crate::store::{Store, StoreError};

/// Event kind of a screening Gem sent.
pub const GEM_SEND: &str = "gem.send";

/// The candidate as Gem sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub phones: Vec<String>,
}

/// The body of `POST /gem/{integration}/screenings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Gem's application id (the candidacy); becomes the order's `opportunity_id`.
    pub application_id: String,
    pub candidate: Candidate,
    /// A package chosen in Gem's send dialog; absent → the connector's default.
    #[serde(default)]
    pub package: Option<String>,
    /// The interview stage the check was sent from, for the connector's information.
    #[serde(default)]
    pub stage: Option<String>,
}

/// Payload of a `gem.send` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendPayload {
    pub screening_id: String,
    /// SHA-256 of the request as Gem sent it (before the default package was filled in): what an
    /// `Idempotency-Key` repeat is compared with.
    #[serde(default)]
    pub sent_digest: Option<String>,
    #[serde(flatten)]
    pub request: SendRequest,
}

/// What offering a send to the store did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// Stored: a new screening with this id, started by this event.
    New { screening_id: String, event_id: i64 },
    /// The same `Idempotency-Key` with the same request: the screening it created before.
    Existing(String),
    /// The same `Idempotency-Key` with a different request.
    Conflict,
}

fn sha256(text: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()))
}

fn idempotency_dedupe(key: &str) -> String {
    format!("gem:idem:{}", sha256(key))
}

/// The digest of a request as sent (serializing plain strings cannot fail).
fn digest(sent: &SendRequest) -> String {
    sha256(&serde_json::to_string(sent).unwrap_or_default())
}

/// What a repeat with the same key is, given the first one's stored payload.
/// What a repeat is compared with: the first send's fields a pruned event's tombstone keeps too.
#[derive(Deserialize)]
struct FirstSend {
    screening_id: String,
    #[serde(default)]
    sent_digest: Option<String>,
}

fn repeat_of(stored: &str, sent: &SendRequest) -> Queued {
    match serde_json::from_str::<FirstSend>(stored) {
        Ok(first) if first.sent_digest.as_deref() == Some(digest(sent).as_str()) => {
            Queued::Existing(first.screening_id)
        }
        _ => Queued::Conflict,
    }
}

/// An earlier send with this `Idempotency-Key`, if any: checked before anything else (the
/// connector's packages may have changed, or be unreachable, since the first one).
pub fn prior(
    store: &Store,
    integration: &str,
    idempotency_key: &str,
    sent: &SendRequest,
) -> Result<Option<Queued>, StoreError> {
    let stored = store.event_payload(integration, &idempotency_dedupe(idempotency_key))?;
    Ok(stored.map(|s| repeat_of(&s, sent)))
}

/// Commits the screening and its `gem.send` event together, in one write of the store's group
/// commit (durable before the 202). `sent` is the request as Gem sent it, `request` the one to
/// run (default package filled in). With an idempotency key, a repeat of the same request
/// returns the first screening.
pub async fn enqueue(
    store: &Store,
    integration: &str,
    sent: &SendRequest,
    request: &SendRequest,
    idempotency_key: Option<&str>,
) -> Result<Queued, StoreError> {
    let screening_id = format!("scr_{}", uuid::Uuid::new_v4().simple());
    let dedupe = match idempotency_key {
        Some(k) => idempotency_dedupe(k),
        None => format!("gem:{screening_id}"),
    };
    let payload = SendPayload {
        screening_id: screening_id.clone(),
        sent_digest: Some(digest(sent)),
        request: request.clone(),
    };
    // Serializing plain strings cannot fail.
    let text = serde_json::to_string(&payload).unwrap_or_default();
    let new = NewScreening {
        integration: integration.to_owned(),
        id: screening_id.clone(),
        application_id: request.application_id.clone(),
        package: request.package.clone(),
        kind: GEM_SEND,
        dedupe_key: dedupe,
        payload: text,
    };
    Ok(match store.enqueue_gem_screening(new).await? {
        ScreeningEnqueued::New { event_id } => Queued::New {
            screening_id,
            event_id,
        },
        ScreeningEnqueued::Duplicate { payload } => repeat_of(&payload, sent),
    })
}

/// Links a screening to the vendor order the connector placed (or a local reference).
pub fn link_order(
    store: &Store,
    integration: &str,
    screening_id: &str,
    order_ref: &str,
) -> Result<(), StoreError> {
    store.link_gem_screening(integration, screening_id, order_ref, false)?;
    Ok(())
}

/// Links a screening that has no order yet to `order_ref`; returns whether it was unlinked.
pub fn link_order_if_unlinked(
    store: &Store,
    integration: &str,
    screening_id: &str,
    order_ref: &str,
) -> Result<bool, StoreError> {
    store.link_gem_screening(integration, screening_id, order_ref, true)
}

/// The order reference [`GemAts::gave_up`](super::GemAts) gives a screening that never got a vendor order.
pub fn failed_order_ref(screening_id: &str) -> String {
    format!("failed:{screening_id}")
}

/// A screening by id.
pub fn get(store: &Store, integration: &str, id: &str) -> Result<Option<Screening>, StoreError> {
    store.gem_screening(integration, id)
}

/// The screening that placed order `order_ref`, if Gem asked for it.
pub fn of_order(
    store: &Store,
    integration: &str,
    order_ref: &str,
) -> Result<Option<Screening>, StoreError> {
    store.gem_screening_of_order(integration, order_ref)
}
