//! Verdicts of orders: a reviewer's decision that may change after the order is complete.
//!
//! The state of an order only moves forward ([`super::rank`]); a verdict instead is replaced by
//! any *newer* one, while the state stays `complete`. "Newer" is the order of the status updates
//! as they were accepted (the id of the `vendor.status` event that carried them, or of the start
//! event): connectors drop stale verdicts before they are queued (Canditech orders them by
//! revision), and this keeps a retried older update, processed after a newer one, from undoing it.
//!
//! Migration: `orders.verdict_seq` is added to a database created before it existed.

use rusqlite::Connection;

use super::sql::{values, Db, Statement};
use super::{now_ms, Result, Store};

/// Adds the columns this module needs to an existing database (idempotent).
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    let has: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('orders') WHERE name = 'verdict_seq'")?
        .exists([])?;
    if !has {
        conn.execute_batch("ALTER TABLE orders ADD COLUMN verdict_seq INTEGER")?;
    }
    Ok(())
}

impl Store {
    /// Sets the verdict of order `order_ref` to `verdict`, carried by the update numbered `seq`,
    /// unless a newer update already set one. Returns whether it changed.
    pub fn record_verdict(
        &self,
        integration: &str,
        order_ref: &str,
        verdict: &str,
        seq: i64,
    ) -> Result<bool> {
        self.db(|db| record_verdict_on(db, integration, order_ref, verdict, seq))
    }
}

/// [`Store::record_verdict`] on a connection (or transaction) the caller holds.
pub(in crate::store) fn record_verdict_on(
    db: &dyn Db,
    integration: &str,
    order_ref: &str,
    verdict: &str,
    seq: i64,
) -> Result<bool> {
    let statement = record_verdict_statement(integration, order_ref, verdict, seq);
    Ok(db.execute(&statement.sql, &statement.values)? == 1)
}

/// The statement of [`record_verdict_on`].
pub(in crate::store) fn record_verdict_statement(
    integration: &str,
    order_ref: &str,
    verdict: &str,
    seq: i64,
) -> Statement {
    Statement::new(
        "UPDATE orders SET verdict = ?3, verdict_seq = ?4, updated_at = ?5
         WHERE integration = ?1 AND order_ref = ?2
           AND (verdict_seq IS NULL OR verdict_seq <= ?4)
           AND (verdict IS DISTINCT FROM ?3 OR verdict_seq IS DISTINCT FROM ?4)",
        values![integration, order_ref, verdict, seq, now_ms()],
    )
}

#[cfg(test)]
mod tests {
    use crate::store::{Order, Store};

    fn order() -> Order {
        Order {
            integration: "i".into(),
            order_ref: "inv_1".into(),
            connector: "canditech".into(),
            opportunity_id: "opp".into(),
            seq: 0,
            state: "complete".into(),
            label: "Canditech - Completed".into(),
            report_url: None,
            score: Some(87.0),
            verdict: None,
        }
    }

    #[test]
    fn a_newer_verdict_replaces_an_older_one_and_a_late_older_one_does_not() {
        crate::store::testing::on_both(|s| {
            s.upsert_order(&order()).unwrap();
            assert!(s.record_verdict("i", "inv_1", "Up", 10).unwrap());
            assert!(s.record_verdict("i", "inv_1", "Down", 12).unwrap());
            assert!(
                !s.record_verdict("i", "inv_1", "Up", 10).unwrap(),
                "a retried older update"
            );
            assert!(
                !s.record_verdict("i", "inv_1", "Down", 12).unwrap(),
                "the same update again"
            );
            let o = s.order("i", "inv_1").unwrap().unwrap();
            assert_eq!(
                (o.state.as_str(), o.verdict.as_deref()),
                ("complete", Some("Down"))
            );
        });
    }

    #[test]
    fn an_existing_database_gets_the_column() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.db");
        {
            // The orders table as it was before verdict_seq.
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE orders (seq INTEGER PRIMARY KEY AUTOINCREMENT, integration TEXT NOT NULL,
                    order_ref TEXT NOT NULL, connector TEXT NOT NULL, opportunity_id TEXT NOT NULL,
                    state TEXT NOT NULL, label TEXT NOT NULL, report_url TEXT, score REAL,
                    verdict TEXT, updated_at INTEGER NOT NULL, UNIQUE (integration, order_ref));
                 INSERT INTO orders (integration, order_ref, connector, opportunity_id, state, label,
                    verdict, updated_at) VALUES ('i', 'inv_1', 'c', 'opp', 'complete', 'L', 'Up', 0);",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert!(s.record_verdict("i", "inv_1", "Down", 1).unwrap());
        drop(s);
        let s = Store::open(&path).expect("opening twice is fine");
        assert_eq!(
            s.order("i", "inv_1").unwrap().unwrap().verdict.as_deref(),
            Some("Down")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
