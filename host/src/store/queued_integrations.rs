//! Which integrations have queued events, found without reading the events: a loose index scan
//! of the partial index `events_queued_due (integration, next_attempt_at, id) WHERE state =
//! 'queued'`, one seek per integration listed (a backlog of 50,000 events behind one
//! integration is one seek, not 50,000 rows). The dispatcher asks only these integrations for
//! due events, so what a claim costs follows the integrations with work, not the number
//! configured (issue 25: a host serving 10,000 integrations). On SQLite each seek is a cached
//! statement of its own, run in turn: the recursive query keeps its queue in a temporary
//! table, a B-tree with its own page cache opened and freed at every look.
//!
//! On PostgreSQL a look is a round trip (and a hop to a blocking thread), taken before nearly
//! every claim. So a claim that leases each integration's events in one statement also reads
//! this list in its round trip, after its leases and in its transaction ([`Looked`]), and the
//! dispatcher's next look takes that answer instead of asking again
//! ([`Store::queued_integrations_known`]): once, while nothing that queues events happened on
//! this host or was notified by another since the claim was sent, and within [`LOOKED_FOR`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::sql::{args, Dialect};
use super::{Backend, Result, Store};

/// How long a list read with a claim answers the next look. An integration queued meanwhile
/// that nothing announced is missed by one look only: the claim that look makes reads the list
/// again.
pub(in crate::store) const LOOKED_FOR: Duration = Duration::from_millis(500);

/// The list the last claim read (PostgreSQL), for the next look.
#[derive(Default)]
pub(in crate::store) struct Looked {
    /// Bumped by everything that may queue an integration's events: this host's commits that
    /// queue ([`Store::notify_queued`]) and each NOTIFY from any host.
    changes: AtomicU64,
    /// The list, with the changes seen before its claim was sent and when it was read.
    last: Mutex<Option<(u64, Instant, Vec<String>)>>,
}

impl Looked {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<(u64, Instant, Vec<String>)>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Something may have queued events: a list read before it no longer answers.
    pub(in crate::store) fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The changes so far: taken before a claim is sent, handed back with its list.
    pub(in crate::store) fn since(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Keeps `list`, read by a claim sent after `since` changes, for the next look.
    pub(in crate::store) fn keep(&self, since: u64, list: Vec<String>) {
        *self.last() = Some((since, Instant::now(), list));
    }

    /// The list kept, if it still answers (see the module doc); used once. An empty list is
    /// never used: a look that finds nothing is worth its round trip.
    fn take(&self) -> Option<Vec<String>> {
        let (since, read, list) = self.last().take()?;
        (since == self.since() && read.elapsed() < LOOKED_FOR && !list.is_empty()).then_some(list)
    }
}

/// Each step seeks the next integration name above the last one found. Fixed text on both
/// backends (the statement caches keep it).
pub(in crate::store) const QUEUED_INTEGRATIONS: &str = "
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

/// SQLite: the first step of [`QUEUED_INTEGRATIONS`], as a statement of its own.
const FIRST_QUEUED: &str = "SELECT integration FROM events WHERE state = 'queued'
    ORDER BY integration LIMIT 1";
/// SQLite: each next step of [`QUEUED_INTEGRATIONS`], as a statement of its own.
const NEXT_QUEUED: &str = "SELECT integration FROM events WHERE state = 'queued'
    AND integration > ?1 ORDER BY integration LIMIT 1";

impl Store {
    /// The integrations with at least one queued event (due or not), in name order. Read beside
    /// the writer ([`Store::read_db`]): the dispatcher asks it before each claim, and on the
    /// writer's connection it waited for the batch being committed and its fsync.
    pub fn queued_integrations(&self) -> Result<Vec<String>> {
        self.read_db(|db| match db.dialect() {
            // The same seeks, each a cached statement run from here: the recursive query's
            // queue is a temporary table, opened (a B-tree and its page cache) at every look.
            // Each step reads its own snapshot: an integration queued throughout is found, one
            // queued or claimed meanwhile is as a look a moment earlier or later would see it.
            Dialect::Sqlite => {
                let mut found: Vec<String> = Vec::new();
                loop {
                    let next = match found.last() {
                        Some(last) => db.query_opt(NEXT_QUEUED, args![last.as_str()])?,
                        None => db.query_opt(FIRST_QUEUED, &[])?,
                    };
                    match next {
                        Some(row) => found.push(row.text(0)?),
                        None => return Ok(found),
                    }
                }
            }
            Dialect::Postgres => db
                .query(QUEUED_INTEGRATIONS, &[])?
                .iter()
                .map(|r| r.text(0))
                .collect(),
        })
    }

    /// What [`Store::queued_integrations`] would answer, without asking, when the last claim
    /// read it and it still answers (PostgreSQL; see the module doc); else `None`: ask.
    pub fn queued_integrations_known(&self) -> Option<Vec<String>> {
        match &self.backend {
            Backend::Postgres { pg, .. } => pg.looked.take(),
            Backend::Sqlite { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Looked;
    use crate::store::sql::{args, Value};
    use crate::store::testing::{on_both, postgres_url};
    use crate::store::{Backend, Claim, Store};

    /// A list kept answers one look, and only while nothing queued events since its claim was
    /// sent, within [`super::LOOKED_FOR`]; an empty one never answers.
    #[test]
    fn a_kept_list_answers_once_while_nothing_was_queued_since() {
        let looked = Looked::default();
        assert_eq!(looked.take(), None, "nothing kept");
        let since = looked.since();
        looked.keep(since, vec!["a".into()]);
        assert_eq!(looked.take(), Some(vec!["a".to_string()]));
        assert_eq!(looked.take(), None, "used once");
        looked.keep(since, vec!["a".into()]);
        looked.changed();
        assert_eq!(
            looked.take(),
            None,
            "events queued after the claim was sent"
        );
        let since = looked.since();
        looked.keep(since, Vec::new());
        assert_eq!(looked.take(), None, "an empty list is asked again");
    }

    fn looked(s: &Store) -> Arc<Looked> {
        match &s.backend {
            Backend::Postgres { pg, .. } => pg.looked.clone(),
            Backend::Sqlite { .. } => unreachable!("a PostgreSQL store"),
        }
    }

    /// On PostgreSQL a claim reads the list for the dispatcher's next look in its own round
    /// trip: that look costs none. An event queued on this host after the claim makes the
    /// next look ask the store again, which sees it.
    #[tokio::test]
    async fn on_postgres_a_claim_answers_the_next_look_until_events_are_queued() {
        let s = crate::store::testing::postgres();
        for n in 0..3 {
            s.enqueue("a", "k", &format!("a-{n}"), "{}").unwrap();
        }
        s.begin_run("r", "test").unwrap();
        let claimed = s
            .claim_batch_after(None, "r", 60_000, &[("a", 1)], 1)
            .await
            .unwrap();
        assert_eq!(claimed.1.len(), 1);
        let trips = s.writer_stats().round_trips;
        assert_eq!(s.queued_integrations_known(), Some(vec!["a".to_string()]));
        assert_eq!(s.writer_stats().round_trips, trips, "no round trip");
        assert_eq!(s.queued_integrations_known(), None, "used once");

        // Read after the claim's leases: the integration whose last events it leased is gone.
        let claimed = s
            .claim_batch_after(None, "r", 60_000, &[("a", 2)], 2)
            .await
            .unwrap();
        assert_eq!(claimed.1.len(), 2);
        let kept = looked(&s).last().take().map(|(_, _, list)| list);
        assert_eq!(kept, Some(Vec::new()), "a's last events are running");

        for n in 3..5 {
            s.enqueue("a", "k", &format!("a-{n}"), "{}").unwrap();
        }
        s.claim_batch_after(None, "r", 60_000, &[("a", 1)], 1)
            .await
            .unwrap();
        s.enqueue("b", "k", "b-1", "{}").unwrap();
        assert_eq!(s.queued_integrations_known(), None, "b queued since");
        assert_eq!(s.queued_integrations().unwrap(), ["a", "b"]);
    }

    /// A NOTIFY from another host (events queued there) makes this host's kept list stale
    /// before its workers are woken.
    #[tokio::test(flavor = "multi_thread")]
    async fn on_postgres_a_notify_from_another_host_makes_the_kept_list_stale() {
        let url = postgres_url();
        let s = Store::open_postgres(&url, None).unwrap();
        let other = Store::open_postgres(&url, None).unwrap();
        let mut woken = s.listen().expect("LISTEN on PostgreSQL");
        let within = std::time::Duration::from_secs(10);
        // The first wake-up: the LISTEN connection is open.
        tokio::time::timeout(within, woken.recv()).await.unwrap();
        let looked = looked(&s);
        let since = looked.since();
        looked.keep(since, vec!["a".into()]);
        other.enqueue("b", "k", "b-1", "{}").unwrap();
        tokio::time::timeout(within, woken.recv())
            .await
            .expect("woken by the other host's NOTIFY");
        assert_eq!(s.queued_integrations_known(), None);
        assert_eq!(s.queued_integrations().unwrap(), ["b"]);
    }

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

    /// SQLite's steps are each one seek of an index (no scan, no temporary B-tree).
    #[test]
    fn on_sqlite_each_step_seeks_the_index_of_queued_events() {
        let store = crate::store::testing::sqlite();
        let next: &[Value] = args!["a"];
        for (statement, params) in [(super::FIRST_QUEUED, &[][..]), (super::NEXT_QUEUED, next)] {
            let explained = format!("EXPLAIN QUERY PLAN {statement}");
            let steps = store.read_db(|db| db.query(&explained, params)).unwrap();
            let details: Vec<String> = steps.iter().map(|r| r.text(3).unwrap()).collect();
            assert!(
                details
                    .iter()
                    .all(|d| d.starts_with("SEARCH events USING COVERING INDEX")),
                "{statement}: {details:?}"
            );
        }
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
