//! The PostgreSQL planner's statistics of tables that grow fast from empty.
//!
//! Each connection prepares a statement once and PostgreSQL plans it for the parameters of its
//! first calls, then keeps one generic plan until the table's statistics change. Planned while
//! the table was empty or small (a new database's first minutes; a table pruned to nothing
//! that fills again), that plan scans: without statistics an index on a prefix of the
//! condition (`orders` by integration, every order of it filtered), with statistics of a few
//! hundred rows the whole table; and it stays as the table grows: an `UPDATE orders` or the
//! pending notes' read then reads every row of the integration instead of 3–6 buffers.
//! Autovacuum's ANALYZE replaces those plans, but only at its rounds (a minute apart,
//! `autovacuum_naptime`); an ANALYZE of the still-empty table makes them worse (an empty table
//! is then planned as one, with nested sequential scans).
//!
//! So the host that leads housekeeping analyzes, at each heartbeat, the tables that hold at
//! least [`GROWN_ROWS`] rows and more than twice what their statistics say: a table growing
//! from empty is analyzed at about 200, 400, 800 … rows, a handful of times until autovacuum's
//! own thresholds keep up, and its cached plans are made again each time (index lookups from
//! about 500 rows on). A table of steady size is never analyzed here. SQLite plans without size
//! statistics: nothing to do.

use super::{Backend, Result, Store};

/// Rows from which a table that outgrew its statistics is analyzed: few enough that its cached
/// plans are replaced while a wrong one still costs little, enough for real statistics.
pub const GROWN_ROWS: i64 = 200;

impl Store {
    /// Analyzes the tables that outgrew their statistics (see the module docs); their names.
    pub fn analyze_grown_tables(&self) -> Result<Vec<String>> {
        if let Backend::Sqlite { .. } = self.backend {
            return Ok(Vec::new());
        }
        self.db(|db| {
            let grown = db.query(
                "SELECT quote_ident(c.relname) FROM pg_class c
                 JOIN pg_stat_user_tables s ON s.relid = c.oid
                 WHERE s.schemaname = current_schema() AND s.n_live_tup >= ?1
                   AND s.n_live_tup > 2 * GREATEST(c.reltuples, 0)
                 ORDER BY 1",
                super::sql::args![GROWN_ROWS],
            )?;
            let mut names = Vec::with_capacity(grown.len());
            for row in &grown {
                let name = row.text(0)?;
                // SKIP_LOCKED: a table locked by a VACUUM, a migration or an operator is left
                // for the next round rather than holding up the heartbeat that calls this.
                db.execute(&format!("ANALYZE (SKIP_LOCKED) {name}"), &[])?;
                names.push(name);
            }
            Ok(names)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::sql::{args, Db};
    use crate::store::Result;

    fn explain_update(db: &dyn Db) -> Result<String> {
        let plan = db.query("EXPLAIN (COSTS OFF) EXECUTE advance('certn', 'r7')", &[])?;
        Ok(plan
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<Vec<_>>>()?
            .join("\n"))
    }

    /// A statement planned while `orders` was empty looks an order up by its key again once
    /// the table grew and the leader analyzed it, on the connection that cached the plan; an
    /// empty table is left alone, and a table is analyzed again only once it doubled.
    #[test]
    fn on_postgres_plans_made_on_an_empty_table_are_replaced_once_it_grew() {
        let store = crate::store::testing::postgres();
        assert_eq!(store.analyze_grown_tables().unwrap(), Vec::<String>::new());
        store
            .db(|db| {
                // Autovacuum's own ANALYZE could get there first and leave nothing to do.
                db.execute("ALTER TABLE orders SET (autovacuum_enabled = off)", &[])?;
                db.execute(
                    "PREPARE advance(text, text) AS UPDATE orders SET updated_at = 1
                     WHERE integration = $1 AND order_ref = $2",
                    &[],
                )?;
                // Past the custom plans of the first calls: the generic plan is cached.
                for _ in 0..8 {
                    db.execute("EXECUTE advance('certn', 'r1')", &[])?;
                }
                db.execute(
                    "INSERT INTO orders (integration, order_ref, connector, opportunity_id,
                         state, label, updated_at)
                     SELECT 'certn', 'r' || n, 'certn', 'o' || n, 'invited', 'l', 1
                     FROM generate_series(1, ?1::bigint * 5) n",
                    args![super::GROWN_ROWS],
                )?;
                let by_key = "Index Cond: ((integration = $1) AND (order_ref = $2))";
                let before = explain_update(db)?;
                assert!(
                    !before.contains(by_key),
                    "planned on the empty table: {before}"
                );
                let mut analyzed = Vec::new();
                for _ in 0..200 {
                    // The inserting session's counts reach the statistics within a second.
                    analyzed = store.analyze_grown_tables()?;
                    if !analyzed.is_empty() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                assert_eq!(analyzed, vec!["orders".to_string()]);
                let plan = explain_update(db)?;
                assert!(plan.contains(by_key), "{plan}");
                db.execute("DEALLOCATE advance", &[])?;
                Ok(())
            })
            .unwrap();
        assert_eq!(store.analyze_grown_tables().unwrap(), Vec::<String>::new());
    }
}
