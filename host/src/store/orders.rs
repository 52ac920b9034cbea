//! Vendor orders, their notes, and recording a status in one transaction.
//!
//! An order's state only moves forward ([`rank`]); its verdict is replaced by newer ones
//! ([`super::verdicts`]); a note is recorded once per `(integration, order, text)` and marked
//! written after the ATS confirmed it.
//!
//! [`Store::record_status`] is what the flow calls for every status it learns (a started screening,
//! a vendor callback's update): insert-or-keep the order, move it forward, set the verdict, add the
//! note — all in one transaction, so a crash or a failed statement leaves either the whole status
//! or none of it (a retry of the step then records it again: every part is idempotent).

use super::Cached;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::verdicts::record_verdict_on;
use super::{now_ms, Result, Store};

/// A vendor order and the status the ATS should show for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Order {
    pub integration: String,
    pub order_ref: String,
    pub connector: String,
    pub opportunity_id: String,
    /// Insertion sequence: the newest order of an opportunity owns its status label.
    pub seq: i64,
    pub state: String,
    pub label: String,
    pub report_url: Option<String>,
    pub score: Option<f64>,
    pub verdict: Option<String>,
}

/// A note waiting to be written, or written.
#[derive(Debug, Clone)]
pub struct PendingNote {
    pub order_ref: String,
    pub text: String,
    pub secret: bool,
}

/// Forward-only ordering of normalized screening states. Terminal states share the top rank so
/// that none of them can be replaced by an earlier state.
pub fn rank(state: &str) -> u8 {
    match state {
        "pending" => 1,
        "analyzing" => 2,
        "partial" => 3,
        "complete" | "error" | "cancelled" => 4,
        _ => 0,
    }
}

/// A note an order's status asks to be written to the ATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNote {
    pub text: String,
    pub secret: bool,
}

/// Everything one status of an order changes, for [`Store::record_status`].
#[derive(Debug, Clone)]
pub struct StatusRecord {
    /// The order as this status describes it. New: inserted; known: moved forward, never back.
    /// Its `verdict` is ignored: see `verdict`.
    pub order: Order,
    /// Set unless a newer update (a higher `seq`) already set one.
    pub verdict: Option<String>,
    /// Orders the updates as they were accepted: the id of the event carrying this status.
    pub seq: i64,
    pub note: Option<NewNote>,
}

/// Inserts `order` unless its reference is known (a retried start-screening keeps the first).
fn insert_order_on(conn: &Connection, order: &Order) -> Result<()> {
    conn.exec(
        "INSERT INTO orders (integration, order_ref, connector, opportunity_id, state, label,
            report_url, score, verdict, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (integration, order_ref) DO NOTHING",
        params![
            order.integration,
            order.order_ref,
            order.connector,
            order.opportunity_id,
            order.state,
            order.label,
            order.report_url,
            order.score,
            order.verdict,
            now_ms()
        ],
    )?;
    Ok(())
}

/// [`Store::advance_order`] on a connection (or transaction) the caller holds.
fn advance_order_on(conn: &Connection, update: &Order) -> Result<bool> {
    let current: Option<String> = conn
        .row(
            "SELECT state FROM orders WHERE integration = ?1 AND order_ref = ?2",
            params![update.integration, update.order_ref],
            |r| r.get(0),
        )
        .optional()?;
    match current {
        Some(cur) if rank(&update.state) >= rank(&cur) => {
            let n = conn.exec(
                "UPDATE orders SET state = ?3, label = ?4,
                    report_url = COALESCE(?5, report_url), score = COALESCE(?6, score),
                    verdict = COALESCE(?7, verdict), updated_at = ?8
                 WHERE integration = ?1 AND order_ref = ?2",
                params![
                    update.integration,
                    update.order_ref,
                    update.state,
                    update.label,
                    update.report_url,
                    update.score,
                    update.verdict,
                    now_ms()
                ],
            )?;
            Ok(n == 1)
        }
        _ => Ok(false),
    }
}

fn add_note_on(
    conn: &Connection,
    integration: &str,
    order_ref: &str,
    text: &str,
    secret: bool,
) -> Result<()> {
    conn.exec(
        "INSERT INTO notes (integration, order_ref, text, secret) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
        params![integration, order_ref, text, secret],
    )?;
    Ok(())
}

/// [`Store::record_status`] on a connection (or transaction) the caller holds: the caller makes
/// it atomic.
fn record_status_on(conn: &Connection, rec: &StatusRecord) -> Result<()> {
    let order = Order {
        verdict: None,
        ..rec.order.clone()
    };
    insert_order_on(conn, &order)?;
    advance_order_on(conn, &order)?;
    let (integration, order_ref) = (&order.integration, &order.order_ref);
    if let Some(verdict) = &rec.verdict {
        record_verdict_on(conn, integration, order_ref, verdict, rec.seq)?;
    }
    if let Some(note) = &rec.note {
        add_note_on(conn, integration, order_ref, &note.text, note.secret)?;
    }
    Ok(())
}

fn order_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Order> {
    Ok(Order {
        integration: r.get(0)?,
        order_ref: r.get(1)?,
        connector: r.get(2)?,
        opportunity_id: r.get(3)?,
        seq: r.get(4)?,
        state: r.get(5)?,
        label: r.get(6)?,
        report_url: r.get(7)?,
        score: r.get(8)?,
        verdict: r.get(9)?,
    })
}

impl Store {
    /// Records one status of an order atomically (see the module docs): the order inserted or
    /// moved forward, the verdict unless a newer one is set, the note once. Through the
    /// [`writer`](super::writer): one savepoint in a transaction shared with the other writes of
    /// the moment (one fsync for all), answered once that transaction committed; on an error
    /// nothing of this status is stored.
    pub async fn record_status(&self, rec: StatusRecord) -> Result<()> {
        self.write(move |conn| record_status_on(conn, &rec)).await
    }

    /// Records a new order, or returns the existing one (a retried start-screening).
    pub fn upsert_order(&self, order: &Order) -> Result<Order> {
        insert_order_on(&self.conn(), order)?;
        self.order(&order.integration, &order.order_ref)
            .map(|o| o.unwrap_or_else(|| order.clone()))
    }

    /// An order by reference.
    pub fn order(&self, integration: &str, order_ref: &str) -> Result<Option<Order>> {
        self.conn()
            .row(
                "SELECT integration, order_ref, connector, opportunity_id, seq, state, label,
                        report_url, score, verdict
                 FROM orders WHERE integration = ?1 AND order_ref = ?2",
                params![integration, order_ref],
                order_row,
            )
            .optional()
            .map_err(Into::into)
    }

    /// Every order of one opportunity, oldest first.
    pub fn orders_of(&self, integration: &str, opportunity_id: &str) -> Result<Vec<Order>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT integration, order_ref, connector, opportunity_id, seq, state, label,
                    report_url, score, verdict
             FROM orders WHERE integration = ?1 AND opportunity_id = ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![integration, opportunity_id], order_row)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Into::into)
    }

    /// Applies `update`'s status (state, label, report URL, score, verdict) to the stored order
    /// with the same reference, unless that would move it backwards. Returns whether it changed.
    /// Fields absent from the update keep their value.
    pub fn advance_order(&self, update: &Order) -> Result<bool> {
        advance_order_on(&self.conn(), update)
    }

    /// Records a note to write for an order (idempotent).
    pub fn add_note(
        &self,
        integration: &str,
        order_ref: &str,
        text: &str,
        secret: bool,
    ) -> Result<()> {
        add_note_on(&self.conn(), integration, order_ref, text, secret)
    }

    /// Notes of an opportunity's orders not yet confirmed written.
    pub fn unwritten_notes(
        &self,
        integration: &str,
        opportunity_id: &str,
    ) -> Result<Vec<PendingNote>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT n.order_ref, n.text, n.secret FROM notes n
             JOIN orders o ON o.integration = n.integration AND o.order_ref = n.order_ref
             WHERE n.integration = ?1 AND o.opportunity_id = ?2 AND n.written_at IS NULL
             ORDER BY o.seq, n.rowid",
        )?;
        let rows = stmt.query_map(params![integration, opportunity_id], |r| {
            Ok(PendingNote {
                order_ref: r.get(0)?,
                text: r.get(1)?,
                secret: r.get(2)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Into::into)
    }

    /// Marks a note written.
    pub fn note_written(&self, integration: &str, order_ref: &str, text: &str) -> Result<()> {
        self.conn().exec(
            "UPDATE notes SET written_at = ?4 WHERE integration = ?1 AND order_ref = ?2 AND text = ?3",
            params![integration, order_ref, text, now_ms()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("sy-orders-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("t.db")).expect("open");
        (store, dir)
    }

    fn pending() -> Order {
        Order {
            integration: "i".into(),
            order_ref: "o1".into(),
            connector: "certn".into(),
            opportunity_id: "opp".into(),
            seq: 0,
            state: "pending".into(),
            label: "P".into(),
            report_url: None,
            score: None,
            verdict: None,
        }
    }

    fn status(order: Order, verdict: Option<&str>, seq: i64, note: Option<&str>) -> StatusRecord {
        StatusRecord {
            order,
            verdict: verdict.map(Into::into),
            seq,
            note: note.map(|t| NewNote {
                text: t.into(),
                secret: false,
            }),
        }
    }

    #[test]
    fn orders_never_move_backwards() {
        let (s, _dir) = temp_store();
        let order = pending();
        s.upsert_order(&order).unwrap();
        let partial = Order {
            state: "partial".into(),
            label: "Part".into(),
            report_url: Some("u".into()),
            ..order.clone()
        };
        assert!(s.advance_order(&partial).unwrap());
        let analyzing = Order {
            state: "analyzing".into(),
            label: "A".into(),
            ..order
        };
        assert!(!s.advance_order(&analyzing).unwrap());
        let o = s.order("i", "o1").unwrap().unwrap();
        assert_eq!(
            (o.state.as_str(), o.report_url.as_deref()),
            ("partial", Some("u"))
        );
    }

    #[tokio::test]
    async fn a_status_records_order_verdict_and_note_and_a_replay_changes_nothing() {
        let (s, _dir) = temp_store();
        s.record_status(status(pending(), None, 1, None))
            .await
            .unwrap();
        let complete = Order {
            state: "complete".into(),
            label: "Done".into(),
            score: Some(9.0),
            ..pending()
        };
        let done = status(complete, Some("Up"), 5, Some("report ready"));
        s.record_status(done.clone()).await.unwrap();
        // A retried step, and a late pending update: nothing moves back, no second note.
        s.record_status(done).await.unwrap();
        s.record_status(status(pending(), Some("Down"), 3, None))
            .await
            .unwrap();
        let o = s.order("i", "o1").unwrap().unwrap();
        assert_eq!(
            (o.state.as_str(), o.label.as_str(), o.verdict.as_deref()),
            ("complete", "Done", Some("Up"))
        );
        let notes = s.unwritten_notes("i", "opp").unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].text, "report ready");
    }

    #[tokio::test]
    async fn a_status_that_fails_part_way_leaves_nothing_written() {
        let (s, _dir) = temp_store();
        // The note's insert fails after the order's insert and the verdict succeeded.
        s.conn()
            .execute_batch(
                "CREATE TRIGGER no_notes BEFORE INSERT ON notes
                 BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
            )
            .unwrap();
        let rec = status(pending(), Some("Up"), 1, Some("hello"));
        assert!(s.record_status(rec.clone()).await.is_err());
        assert_eq!(s.order("i", "o1").unwrap(), None, "no order half-recorded");
        s.conn().execute_batch("DROP TRIGGER no_notes").unwrap();
        // The retry records all of it.
        s.record_status(rec).await.unwrap();
        let o = s.order("i", "o1").unwrap().unwrap();
        assert_eq!(o.verdict.as_deref(), Some("Up"));
        assert_eq!(s.unwritten_notes("i", "opp").unwrap().len(), 1);
    }
}
