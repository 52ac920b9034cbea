//! What an event's traffic looked like, for operators: the inbound request as received (its
//! headers, secrets masked by [`crate::recording`], and the signature check), committed with the
//! event; and each attempt's outbound calls (vendor and ATS), bounded per attempt
//! ([`crate::recording::CALLS_PER_ATTEMPT`]) and per event ([`CALLS_PER_EVENT`], oldest dropped).
//! Both go with their event: a retention pass or an operator's removal deletes them (see
//! [`super::retention`]). Portable SQL only (`?N` parameters, no SQLite-only functions).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{enqueue_on, Cached, Enqueued, Result, Store};
use crate::recording::{CallTarget, OutboundCall};

/// Calls kept per event, over all its attempts (older ones are deleted as new ones arrive).
pub const CALLS_PER_EVENT: i64 = 200;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS inbound_requests (
    event_id INTEGER PRIMARY KEY,
    headers TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbound_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    target TEXT NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    status INTEGER,
    error TEXT,
    started_at INTEGER NOT NULL,
    took_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbound_calls_by_event ON outbound_calls (event_id, id);
"#;

/// The inbound request that carried an event, as received.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Inbound {
    /// `(name, value)` in the order received; secret values masked, names kept.
    pub headers: Vec<(String, String)>,
    /// The signature check's result (only verified requests are stored).
    pub signature: String,
}

/// An outbound call with the attempt that made it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RecordedCall {
    pub attempt: u32,
    #[serde(flatten)]
    pub call: OutboundCall,
}

impl Store {
    /// [`Store::enqueue_batched`] that also records the inbound request of a new event, in the
    /// same write (a duplicate keeps the first delivery's record).
    pub async fn enqueue_received(
        &self,
        integration: &str,
        kind: &str,
        dedupe_key: &str,
        payload: &str,
        inbound: Inbound,
    ) -> Result<Enqueued> {
        let (integration, kind, dedupe_key, payload) = (
            integration.to_owned(),
            kind.to_owned(),
            dedupe_key.to_owned(),
            payload.to_owned(),
        );
        self.write(move |conn| {
            let done = enqueue_on(conn, &integration, &kind, &dedupe_key, &payload)?;
            if let Enqueued::New(id) = done {
                let headers = serde_json::to_string(&inbound.headers).unwrap_or_default();
                conn.exec(
                    "INSERT INTO inbound_requests (event_id, headers, signature)
                     VALUES (?1, ?2, ?3)",
                    params![id, headers, inbound.signature],
                )?;
            }
            Ok(done)
        })
        .await
    }

    /// Records the outbound calls of attempt `attempt` of event `event_id` (one write), and
    /// keeps the event's newest [`CALLS_PER_EVENT`].
    pub async fn record_calls(
        &self,
        event_id: i64,
        attempt: u32,
        calls: Vec<OutboundCall>,
    ) -> Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        self.write(move |conn| {
            for c in &calls {
                conn.exec(
                    "INSERT INTO outbound_calls (event_id, attempt, target, method, url, status,
                        error, started_at, took_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        event_id,
                        attempt,
                        c.target.as_str(),
                        c.method,
                        c.url,
                        c.status,
                        c.error,
                        c.started_at_ms,
                        c.took_ms
                    ],
                )?;
            }
            conn.exec(
                "DELETE FROM outbound_calls WHERE event_id = ?1 AND id NOT IN
                    (SELECT id FROM outbound_calls WHERE event_id = ?1 ORDER BY id DESC LIMIT ?2)",
                params![event_id, CALLS_PER_EVENT],
            )?;
            Ok(())
        })
        .await
    }

    /// The inbound request of event `id`, if one was recorded.
    pub fn inbound(&self, id: i64) -> Result<Option<Inbound>> {
        let row: Option<(String, String)> = self
            .conn()
            .row(
                "SELECT headers, signature FROM inbound_requests WHERE event_id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.map(|(headers, signature)| Inbound {
            headers: serde_json::from_str(&headers).unwrap_or_default(),
            signature,
        }))
    }

    /// The recorded outbound calls of event `id`, oldest first.
    pub fn calls(&self, id: i64) -> Result<Vec<RecordedCall>> {
        calls_of(&self.conn(), id)
    }
}

/// An order's status as it stands, and when it last changed.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct OrderStatus {
    pub order_ref: String,
    pub state: String,
    pub label: String,
    /// Unix ms.
    pub updated_at_ms: i64,
}

impl Store {
    /// The orders of `opportunity` in `integration`, oldest first, with when each last changed.
    pub fn order_statuses(&self, integration: &str, opportunity: &str) -> Result<Vec<OrderStatus>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT order_ref, state, label, updated_at FROM orders
             WHERE integration = ?1 AND opportunity_id = ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![integration, opportunity], |r| {
            Ok(OrderStatus {
                order_ref: r.get(0)?,
                state: r.get(1)?,
                label: r.get(2)?,
                updated_at_ms: r.get(3)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Into::into)
    }
}

/// [`Store::calls`] on a connection the caller holds.
pub(super) fn calls_of(conn: &Connection, id: i64) -> Result<Vec<RecordedCall>> {
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, target, method, url, status, error, started_at, took_ms
         FROM outbound_calls WHERE event_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![id], |r| {
        Ok(RecordedCall {
            attempt: r.get(0)?,
            call: OutboundCall {
                target: CallTarget::parse(&r.get::<_, String>(1)?),
                method: r.get(2)?,
                url: r.get(3)?,
                status: r.get(4)?,
                error: r.get(5)?,
                started_at_ms: r.get(6)?,
                took_ms: r.get(7)?,
            },
        })
    })?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Into::into)
}

/// Deletes the traffic of the events listed in `temp.prune_ids` (with their events).
pub(super) fn remove_listed(conn: &Connection) -> Result<u64> {
    let calls = conn.exec(
        "DELETE FROM outbound_calls WHERE event_id IN (SELECT id FROM temp.prune_ids)",
        [],
    )?;
    let inbound = conn.exec(
        "DELETE FROM inbound_requests WHERE event_id IN (SELECT id FROM temp.prune_ids)",
        [],
    )?;
    Ok((calls + inbound) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> Store {
        let dir = std::env::temp_dir().join(format!("sy-traffic-{}", uuid::Uuid::new_v4()));
        Store::open(&dir.join("t.db")).expect("open")
    }

    fn call(n: i64) -> OutboundCall {
        OutboundCall::ended(CallTarget::Vendor, "POST", "http://v/x", n, Ok(201))
    }

    #[tokio::test]
    async fn traffic_is_bounded_per_event_and_goes_with_its_event() {
        let s = temp_store();
        let inbound = Inbound {
            headers: vec![("x-sig".into(), "***".into())],
            signature: "valid".into(),
        };
        let Enqueued::New(id) = s
            .enqueue_received("i", "k", "d", "{}", inbound.clone())
            .await
            .unwrap()
        else {
            panic!("not new")
        };
        assert_eq!(s.inbound(id).unwrap(), Some(inbound));
        for attempt in 1..=5 {
            let calls = (0..50).map(call).collect();
            s.record_calls(id, attempt, calls).await.unwrap();
        }
        let kept = s.calls(id).unwrap();
        assert_eq!(kept.len() as i64, CALLS_PER_EVENT);
        assert_eq!(kept.last().map(|c| c.attempt), Some(5));
        assert_eq!(kept.first().map(|c| c.attempt), Some(2));

        // A dead letter removed by an operator takes its traffic with it.
        s.conn()
            .execute("UPDATE events SET state = 'dead' WHERE id = ?1", [id])
            .unwrap();
        s.remove_dead_event(id).await.unwrap();
        assert!(s.calls(id).unwrap().is_empty());
        assert_eq!(s.inbound(id).unwrap(), None);
        assert!(s.event(id).unwrap().is_none());
    }
}
