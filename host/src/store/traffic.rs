//! What an event's traffic looked like, for operators: the inbound request as received (its
//! headers, secrets masked by [`crate::recording`], and the signature check), committed with the
//! event; and each attempt's outbound calls (vendor and ATS), bounded per attempt
//! ([`crate::recording::CALLS_PER_ATTEMPT`]) and per event ([`CALLS_PER_EVENT`], oldest dropped).
//! Both go with their event: a retention pass or an operator's removal deletes them (see
//! [`super::retention`]). Portable SQL (`?N` parameters), except an attempt's calls: one
//! statement of fixed text for all of them (a JSON parameter; each backend's JSON functions),
//! on PostgreSQL with the trim of the event's oldest in the same round trip.

use bytes::Bytes;
use serde::Serialize;

use super::intake::Body;
use super::sql::{args, Db, Dialect, Row, Statement};
use super::{Enqueued, Result, Store, StoreError};
use crate::recording::{CallTarget, OutboundCall};

/// Calls kept per event, over all its attempts (older ones are deleted as new ones arrive).
pub const CALLS_PER_EVENT: i64 = 200;

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
    /// same write (a duplicate keeps the first delivery's record). `payload` is the request's
    /// body, moved into the stored row without a copy; text that is not UTF-8 is refused.
    /// `headers` is the request's masked headers as JSON
    /// ([`crate::recording::masked_headers_json`], read back as [`Inbound::headers`]).
    pub async fn enqueue_received(
        &self,
        integration: &str,
        kind: &str,
        dedupe_key: String,
        payload: Bytes,
        headers: String,
        signature: String,
    ) -> Result<Enqueued> {
        let enqueued = self
            .write_intake(super::intake::IntakeRow {
                integration: integration.to_owned(),
                kind: kind.to_owned(),
                dedupe_key,
                body: Body::try_from(payload)?,
                inbound: Some((headers, signature)),
            })
            .await?;
        if matches!(enqueued, Enqueued::New(_)) {
            // Its batch woke a worker of this host already.
            self.notify_intake();
        }
        Ok(enqueued)
    }

    /// Records the outbound calls of attempt `attempt` of event `event_id` (one write), and
    /// keeps the event's newest [`CALLS_PER_EVENT`]. A worker records them with the attempt's
    /// outcome instead ([`Store::finish_with_calls`]).
    pub async fn record_calls(
        &self,
        event_id: i64,
        attempt: u32,
        calls: Vec<OutboundCall>,
    ) -> Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        self.write_db(move |db| record_calls_on(db, event_id, attempt, &calls))
            .await
    }

    /// The inbound request of event `id`, if one was recorded.
    pub fn inbound(&self, id: i64) -> Result<Option<Inbound>> {
        let Some(row) = self.db(|db| {
            db.query_opt(
                "SELECT headers, signature FROM inbound_requests WHERE event_id = ?1",
                args![id],
            )
        })?
        else {
            return Ok(None);
        };
        Ok(Some(Inbound {
            headers: serde_json::from_str(&row.text(0)?).unwrap_or_default(),
            signature: row.text(1)?,
        }))
    }

    /// The recorded outbound calls of event `id`, oldest first.
    pub fn calls(&self, id: i64) -> Result<Vec<RecordedCall>> {
        self.db(|db| calls_of(db, id))
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
        self.db(|db| {
            db.query(
                "SELECT order_ref, state, label, updated_at FROM orders
                 WHERE integration = ?1 AND opportunity_id = ?2 ORDER BY seq",
                args![integration, opportunity],
            )?
            .iter()
            .map(|r| {
                Ok(OrderStatus {
                    order_ref: r.text(0)?,
                    state: r.text(1)?,
                    label: r.text(2)?,
                    updated_at_ms: r.int(3)?,
                })
            })
            .collect()
        })
    }
}

/// [`Store::calls`] on a connection the caller holds.
pub(super) fn calls_of(db: &dyn Db, id: i64) -> Result<Vec<RecordedCall>> {
    db.query(
        "SELECT attempt, target, method, url, status, error, started_at, took_ms
         FROM outbound_calls WHERE event_id = ?1 ORDER BY id",
        args![id],
    )?
    .iter()
    .map(call_row)
    .collect()
}

fn call_row(r: &Row) -> Result<RecordedCall> {
    let attempt = r.int(0)?;
    let status = r.opt_int(4)?;
    Ok(RecordedCall {
        attempt: u32::try_from(attempt)
            .map_err(|_| StoreError::Row(format!("an attempt of {attempt}")))?,
        call: OutboundCall {
            target: CallTarget::parse(&r.text(1)?),
            method: r.text(2)?,
            url: r.text(3)?,
            status: status
                .map(|v| u16::try_from(v).map_err(|_| StoreError::Row(format!("a status of {v}"))))
                .transpose()?,
            error: r.opt_text(5)?,
            started_at_ms: r.int(6)?,
            took_ms: r.int(7)?,
        },
    })
}

/// Deletes the traffic of the events listed in `prune_ids` (with their events).
pub(super) fn remove_listed(db: &dyn Db) -> Result<u64> {
    let calls = db.execute(
        "DELETE FROM outbound_calls WHERE event_id IN (SELECT id FROM prune_ids)",
        &[],
    )?;
    let inbound = db.execute(
        "DELETE FROM inbound_requests WHERE event_id IN (SELECT id FROM prune_ids)",
        &[],
    )?;
    Ok(calls + inbound)
}

/// [`Store::record_calls`] inside a write the caller holds.
pub(in crate::store) fn record_calls_on(
    db: &dyn Db,
    event_id: i64,
    attempt: u32,
    calls: &[OutboundCall],
) -> Result<()> {
    if calls.is_empty() {
        return Ok(());
    }
    if db.dialect() == Dialect::Postgres {
        if let Some(insert) = calls_statement_pg(event_id, attempt, calls) {
            db.execute(&insert.sql, &insert.values)?;
        }
        return Ok(());
    }
    db.execute(
        "INSERT INTO outbound_calls (event_id, attempt, target, method, url, status,
            error, started_at, took_ms)
         SELECT ?1, ?2, json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                json_extract(value, '$[4]'), json_extract(value, '$[5]'),
                json_extract(value, '$[6]')
         FROM json_each(?3) ORDER BY key",
        args![event_id, attempt, calls_json(calls)],
    )?;
    db.execute(&TRIM_CALLS_SQLITE, args![event_id])?;
    Ok(())
}

/// An event's calls trimmed to the newest [`CALLS_PER_EVENT`] on SQLite.
static TRIM_CALLS_SQLITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    super::queue::trim_older("outbound_calls", &CALLS_PER_EVENT.to_string())
});

/// [`record_calls_on`] on PostgreSQL as one statement (the insert and the trim: one round
/// trip, which a caller may pipeline with its own), none without calls. The trim does not see
/// the rows inserted beside it (one snapshot), so it keeps that many fewer of the older ones.
pub(in crate::store) fn calls_statement_pg(
    event_id: i64,
    attempt: u32,
    calls: &[OutboundCall],
) -> Option<Statement> {
    if calls.is_empty() {
        return None;
    }
    Some(Statement::new(
        format!(
            "WITH ins AS (
                INSERT INTO outbound_calls (event_id, attempt, target, method, url, status,
                    error, started_at, took_ms)
                SELECT CAST(?1 AS BIGINT), CAST(?2 AS BIGINT), c ->> 0, c ->> 1, c ->> 2,
                       CAST(c ->> 3 AS BIGINT), c ->> 4, CAST(c ->> 5 AS BIGINT),
                       CAST(c ->> 6 AS BIGINT)
                FROM json_array_elements(CAST(CAST(?3 AS TEXT) AS JSON))
                     WITH ORDINALITY AS j(c, n)
                ORDER BY n
                RETURNING id)
             {}",
            super::queue::trim_older(
                "outbound_calls",
                "GREATEST(?4 - (SELECT COUNT(*) FROM ins), 0)"
            )
        ),
        args![event_id, attempt, calls_json(calls), CALLS_PER_EVENT].to_vec(),
    ))
}

/// The calls as one JSON parameter: one statement of fixed text however many there are.
/// Written straight from the calls (each an array), with no `serde_json::Value` tree between:
/// it is built on the group commit's writer, for every outcome with calls.
fn calls_json(calls: &[OutboundCall]) -> String {
    let rows: Vec<_> = calls
        .iter()
        .map(|c| {
            (
                c.target.as_str(),
                &c.method,
                &c.url,
                c.status,
                &c.error,
                c.started_at_ms,
                c.took_ms,
            )
        })
        .collect();
    // Strings, numbers and nulls only: writing them to a string cannot fail. Should a field's
    // type ever change so that it can, the event's outcome still commits, without its calls,
    // and the loss is logged rather than silent.
    serde_json::to_string(&rows).unwrap_or_else(|e| {
        tracing::error!(error = %e, calls = calls.len(), "outbound calls not recorded");
        String::from("[]")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::on_both_async;

    fn call(n: i64) -> OutboundCall {
        OutboundCall::ended(CallTarget::Vendor, "POST", "http://v/x", n, Ok(201))
    }

    #[tokio::test]
    async fn traffic_is_bounded_per_event_and_goes_with_its_event() {
        on_both_async!(|s: Store| async move {
            let inbound = Inbound {
                headers: vec![("x-sig".into(), "***".into())],
                signature: "valid".into(),
            };
            let Enqueued::New(id) = s
                .enqueue_received(
                    "i",
                    "k",
                    "d".into(),
                    Bytes::from_static(b"{}"),
                    serde_json::to_string(&inbound.headers).unwrap(),
                    inbound.signature.clone(),
                )
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
            s.db(|db| db.execute("UPDATE events SET state = 'dead' WHERE id = ?1", args![id]))
                .unwrap();
            s.remove_dead_event(id).await.unwrap();
            assert!(s.calls(id).unwrap().is_empty());
            assert_eq!(s.inbound(id).unwrap(), None);
            assert!(s.event(id).unwrap().is_none());
        });
    }
}
