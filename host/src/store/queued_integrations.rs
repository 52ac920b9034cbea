//! Which integrations have queued events, found without reading the events: a loose index scan
//! of the partial index `events_queued_due (integration, next_attempt_at, id) WHERE state =
//! 'queued'`, one seek per integration listed (a backlog of 50,000 events behind one
//! integration is one seek, not 50,000 rows). The dispatcher asks only these integrations for
//! due events, so what a claim costs follows the integrations with work, not the number
//! configured (issue 25: a host serving 10,000 integrations).

use super::{Result, Store};

/// Each step seeks the next integration name above the last one found. Fixed text on both
/// backends (the statement caches keep it).
const QUEUED_INTEGRATIONS: &str = "
WITH RECURSIVE queued(integration) AS (
    SELECT (SELECT integration FROM events WHERE state = 'queued'
            ORDER BY integration LIMIT 1)
    UNION ALL
    SELECT (SELECT e.integration FROM events e
            WHERE e.state = 'queued' AND e.integration > q.integration
            ORDER BY e.integration LIMIT 1)
    FROM queued q WHERE q.integration IS NOT NULL
)
SELECT integration FROM queued WHERE integration IS NOT NULL";

impl Store {
    /// The integrations with at least one queued event (due or not), in name order. Read beside
    /// the writer ([`Store::read_db`]): the dispatcher asks it before each claim, and on the
    /// writer's connection it waited for the batch being committed and its fsync.
    pub fn queued_integrations(&self) -> Result<Vec<String>> {
        self.read_db(|db| {
            db.query(QUEUED_INTEGRATIONS, &[])?
                .iter()
                .map(|r| r.text(0))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::on_both;
    use crate::store::Claim;

    #[test]
    fn lists_each_integration_with_queued_events_once_in_name_order() {
        on_both(|s| {
            assert!(s.queued_integrations().unwrap().is_empty());
            for (integration, n) in [("b", 3), ("a", 1), ("c", 2)] {
                for i in 0..n {
                    s.enqueue(integration, "k", &format!("{integration}-{i}"), "{}")
                        .unwrap();
                }
            }
            assert_eq!(s.queued_integrations().unwrap(), ["a", "b", "c"]);
            // `a`'s only event is claimed (running, not queued): `a` is no longer listed.
            s.begin_run("r", "test").unwrap();
            let claim = Claim {
                integration: Some("a"),
                ..Claim::any("r", 60_000)
            };
            assert!(s.claim(&claim).unwrap().is_some());
            assert_eq!(s.queued_integrations().unwrap(), ["b", "c"]);
        });
    }

    /// The dispatcher's look before each claim does not wait for the writer's connection (held
    /// through a batch and its fsync), and sees what was committed before it.
    #[test]
    fn answers_while_the_writer_holds_its_connection() {
        let store = crate::store::testing::sqlite();
        store.enqueue("a", "k", "a-1", "{}").unwrap();
        let held = store.conn().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = store.store.clone();
        std::thread::spawn(move || {
            let _ = tx.send(reader.queued_integrations());
        });
        let listed = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the look waited for the writer's connection");
        drop(held);
        assert_eq!(listed.unwrap(), ["a"]);
    }
}
