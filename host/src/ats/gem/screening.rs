//! A screening Gem asked for: the request as Gem sent it (stored as the `gem.send` event's
//! payload), and its row in `gem_screenings`, which links Gem's screening id to the event that
//! starts it and, once placed, to the vendor order.

use crate::store::Cached;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::store::{enqueue_on, now_ms, Enqueued, Store, StoreError};

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

/// A stored screening.
#[derive(Debug, Clone, Serialize)]
pub struct Screening {
    pub id: String,
    pub application_id: String,
    pub package: Option<String>,
    pub event_id: i64,
    pub order_ref: Option<String>,
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
fn repeat_of(stored: &str, sent: &SendRequest) -> Queued {
    match serde_json::from_str::<SendPayload>(stored) {
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
    let stored: Option<String> = store
        .conn()
        .query_row(
            "SELECT payload FROM events WHERE integration = ?1 AND dedupe_key = ?2",
            params![integration, idempotency_dedupe(idempotency_key)],
            |r| r.get(0),
        )
        .optional()?;
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
    let (integration, sent, request) = (integration.to_owned(), sent.clone(), request.clone());
    // One savepoint: the event and its screening row are stored together or not at all.
    store
        .write(move |conn| match enqueue_on(conn, &integration, GEM_SEND, &dedupe, &text)? {
            Enqueued::New(event_id) => {
                conn.exec(
                    "INSERT INTO gem_screenings (integration, id, application_id, package, event_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![integration, screening_id, request.application_id, request.package, event_id, now_ms()],
                )?;
                Ok(Queued::New {
                    screening_id,
                    event_id,
                })
            }
            Enqueued::Duplicate { id, .. } => {
                let stored: String = conn.row(
                    "SELECT payload FROM events WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )?;
                Ok(repeat_of(&stored, &sent))
            }
        })
        .await
}

/// Links a screening to the vendor order the connector placed (or a local reference).
pub fn link_order(
    store: &Store,
    integration: &str,
    screening_id: &str,
    order_ref: &str,
) -> Result<(), StoreError> {
    store.conn().execute(
        "UPDATE gem_screenings SET order_ref = ?3 WHERE integration = ?1 AND id = ?2",
        params![integration, screening_id, order_ref],
    )?;
    Ok(())
}

/// Links a screening that has no order yet to `order_ref`; returns whether it was unlinked.
pub fn link_order_if_unlinked(
    store: &Store,
    integration: &str,
    screening_id: &str,
    order_ref: &str,
) -> Result<bool, StoreError> {
    let n = store.conn().execute(
        "UPDATE gem_screenings SET order_ref = ?3
         WHERE integration = ?1 AND id = ?2 AND order_ref IS NULL",
        params![integration, screening_id, order_ref],
    )?;
    Ok(n == 1)
}

/// The order reference [`GemAts::gave_up`](super::GemAts) gives a screening that never got a vendor order.
pub fn failed_order_ref(screening_id: &str) -> String {
    format!("failed:{screening_id}")
}

const COLUMNS: &str = "id, application_id, package, event_id, order_ref";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Screening> {
    Ok(Screening {
        id: r.get(0)?,
        application_id: r.get(1)?,
        package: r.get(2)?,
        event_id: r.get(3)?,
        order_ref: r.get(4)?,
    })
}

/// A screening by id.
pub fn get(store: &Store, integration: &str, id: &str) -> Result<Option<Screening>, StoreError> {
    store
        .conn()
        .query_row(
            &format!("SELECT {COLUMNS} FROM gem_screenings WHERE integration = ?1 AND id = ?2"),
            params![integration, id],
            row,
        )
        .optional()
        .map_err(Into::into)
}

/// The screening that placed order `order_ref`, if Gem asked for it.
pub fn of_order(
    store: &Store,
    integration: &str,
    order_ref: &str,
) -> Result<Option<Screening>, StoreError> {
    store
        .conn()
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM gem_screenings WHERE integration = ?1 AND order_ref = ?2"
            ),
            params![integration, order_ref],
            row,
        )
        .optional()
        .map_err(Into::into)
}
