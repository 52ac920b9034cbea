//! Numbers for the console's pictures, read from the queue and the attempt history on each
//! request: events received and attempts failed per integration and minute, the queue's depth
//! and its oldest pending event, and per connector version its attempts, failures and latency
//! (p50/p99 of an attempt's duration). Portable SQL: integer division for the minute buckets.

use std::collections::BTreeMap;

use serde::Serialize;

use super::sql::{args, Dialect};
use super::{Result, Store};

/// Attempts read per stats request at most (the newest), so a busy host's stats stay cheap.
const MAX_ATTEMPTS_READ: i64 = 100_000;

/// When the oldest queued or running event was received: one seek of the partial index of
/// their receipt times (`events_pending_received`, migration 11), where it walked each of
/// their rows (11 ms of CPU with 50,000 queued). SQLite, without table statistics, still
/// chose the index by state for it: named there.
pub(in crate::store) fn oldest_pending_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "SELECT MIN(received_at) FROM events INDEXED BY events_pending_received
             WHERE state IN ('queued', 'running')"
        }
        Dialect::Postgres => {
            "SELECT MIN(received_at) FROM events WHERE state IN ('queued', 'running')"
        }
    }
}

/// A count in one minute.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MinuteCount {
    pub integration: String,
    /// The minute's start (unix ms).
    pub minute_ms: i64,
    pub count: i64,
}

/// The queue now.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default, utoipa::ToSchema)]
pub struct QueueNow {
    pub queued: i64,
    pub running: i64,
    pub waiting: i64,
    pub dead: i64,
    /// When the oldest queued or running event was received (unix ms).
    pub oldest_pending_ms: Option<i64>,
}

/// One connector version's attempts in the window.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct VersionStats {
    /// `id@version#hash12`.
    pub connector_version: String,
    pub attempts: i64,
    /// Attempts that failed (retried later or dead-lettered).
    pub failures: i64,
    pub p50_ms: i64,
    pub p99_ms: i64,
}

/// The value at quantile `q` of `sorted` (nearest rank), 0 when empty.
fn quantile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Store {
    /// Events received per integration and minute since `since_ms`, oldest first.
    pub fn events_per_minute(&self, since_ms: i64) -> Result<Vec<MinuteCount>> {
        self.minute_counts(
            "SELECT integration, (received_at / 60000) * 60000 AS minute, COUNT(*) FROM events
             WHERE received_at >= ?1 GROUP BY integration, minute ORDER BY minute, integration",
            since_ms,
        )
    }

    /// Failed attempts (retried or dead-lettered) per integration and minute since `since_ms`.
    pub fn failures_per_minute(&self, since_ms: i64) -> Result<Vec<MinuteCount>> {
        self.minute_counts(
            "SELECT e.integration, (a.started_at / 60000) * 60000 AS minute, COUNT(*)
             FROM attempts a JOIN events e ON e.id = a.event_id
             WHERE a.started_at >= ?1 AND a.outcome IN ('retry', 'dead')
             GROUP BY e.integration, minute ORDER BY minute, e.integration",
            since_ms,
        )
    }

    fn minute_counts(&self, sql: &str, since_ms: i64) -> Result<Vec<MinuteCount>> {
        self.db(|db| {
            db.query(sql, args![since_ms])?
                .iter()
                .map(|r| {
                    Ok(MinuteCount {
                        integration: r.text(0)?,
                        minute_ms: r.int(1)?,
                        count: r.int(2)?,
                    })
                })
                .collect()
        })
    }

    /// The queue's depth by state and its oldest pending event, on a read connection (it
    /// walks the whole backlog; the writer's connection would hold up the group commit).
    pub fn queue_now(&self) -> Result<QueueNow> {
        self.read_db(|db| {
            let mut now = QueueNow::default();
            for row in db.query(
                "SELECT state, COUNT(*) FROM events
                 WHERE state IN ('queued', 'running', 'waiting', 'dead') GROUP BY state",
                args![],
            )? {
                let n = row.int(1)?;
                match row.text(0)?.as_str() {
                    "queued" => now.queued = n,
                    "running" => now.running = n,
                    "waiting" => now.waiting = n,
                    _ => now.dead = n,
                }
            }
            now.oldest_pending_ms = db
                .query_one(oldest_pending_sql(db.dialect()), args![])?
                .opt_int(0)?;
            Ok(now)
        })
    }

    /// Per connector version: attempts, failures and latency since `since_ms` (of the newest
    /// attempts read), ordered by version.
    pub fn version_stats(&self, since_ms: i64) -> Result<Vec<VersionStats>> {
        let rows = self.db(|db| {
            db.query(
                "SELECT connector_version, took_ms, outcome FROM attempts
                 WHERE started_at >= ?1 AND connector_version IS NOT NULL
                    AND outcome IN ('done', 'skipped', 'retry', 'dead')
                 ORDER BY id DESC LIMIT ?2",
                args![since_ms, MAX_ATTEMPTS_READ],
            )
        })?;
        let mut by_version: BTreeMap<String, (Vec<i64>, i64)> = BTreeMap::new();
        for row in rows {
            let (version, took, outcome) = (row.text(0)?, row.int(1)?, row.text(2)?);
            let entry = by_version.entry(version).or_default();
            entry.0.push(took);
            if outcome == "retry" || outcome == "dead" {
                entry.1 += 1;
            }
        }
        Ok(by_version
            .into_iter()
            .map(|(connector_version, (mut took, failures))| {
                took.sort_unstable();
                VersionStats {
                    connector_version,
                    attempts: took.len() as i64,
                    failures,
                    p50_ms: quantile(&took, 0.5),
                    p99_ms: quantile(&took, 0.99),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{on_both, on_both_async};
    use crate::store::{Claim, EventState, Finish};

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!((quantile(&v, 0.5), quantile(&v, 0.99)), (50, 99));
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[tokio::test]
    async fn counts_failures_and_latency_come_from_the_queue_and_the_history() {
        on_both_async!(|s: Store| async move {
            for n in 0..3 {
                s.enqueue("a", "k", &n.to_string(), "{}").unwrap();
            }
            for (n, took, retry) in [(0, 10, true), (1, 30, false)] {
                let e = s.claim(&Claim::any("r", 60_000)).unwrap().unwrap();
                let f = Finish {
                    run: "r",
                    claim_seq: e.claim_seq,
                    state: EventState::Done,
                    error: retry.then_some("vendor down"),
                    connector_version: Some("c@1#abc"),
                    retry_at: retry.then_some(crate::store::now_ms() + 60_000),
                    started_at_ms: crate::store::now_ms(),
                    took_ms: took + n,
                };
                assert!(s.finish(e.id, &f).await.unwrap());
            }
            let received = s.events_per_minute(0).unwrap();
            assert_eq!(received.iter().map(|m| m.count).sum::<i64>(), 3);
            assert!(received.iter().all(|m| m.minute_ms % 60_000 == 0));
            let failed = s.failures_per_minute(0).unwrap();
            assert_eq!(failed.iter().map(|m| m.count).sum::<i64>(), 1);
            let q = s.queue_now().unwrap();
            assert_eq!((q.queued, q.running, q.dead), (2, 0, 0));
            assert!(q.oldest_pending_ms.is_some());
            let v = s.version_stats(0).unwrap();
            assert_eq!(v.len(), 1);
            assert_eq!(
                (v[0].attempts, v[0].failures, v[0].p50_ms, v[0].p99_ms),
                (2, 1, 10, 31)
            );
        });
    }

    /// What `/metrics` and the console read of the queue is read beside the writer (SQLite):
    /// with the writer's connection held, as through a batch and its fsync, every figure comes
    /// before it is let go, and each is right.
    #[test]
    fn the_queue_figures_are_read_beside_the_writer() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let s = crate::store::testing::sqlite();
        for n in 0..10 {
            s.enqueue("a", "k", &n.to_string(), "{}").unwrap();
        }
        s.kv_set("a", "c", "key", "value").unwrap();
        s.conn()
            .unwrap()
            .execute_batch(
                "UPDATE events SET state = 'running', received_at = 7 WHERE id IN (1, 2);
                 UPDATE events SET state = 'waiting', waiting_for = 'connect' WHERE id = 3;
                 UPDATE events SET state = 'dead' WHERE id = 4;
                 UPDATE events SET state = 'done' WHERE id = 5;",
            )
            .unwrap();
        let (held, is_held) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let let_go = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (store, let_go) = (&s, &let_go);
            scope.spawn(move || {
                let conn = store.conn().unwrap();
                held.send(()).unwrap();
                // A guard against a hang, not a measure: a read that waits for the writer's
                // connection gets it only then, and the test fails.
                let _ = released.recv_timeout(std::time::Duration::from_secs(30));
                let_go.store(true, Ordering::SeqCst);
                drop(conn);
            });
            is_held.recv().unwrap();
            let depth = s.queue_depth().unwrap();
            let now = s.queue_now().unwrap();
            let waiting = s.waiting_all().unwrap();
            let totals = s.kv_totals().unwrap();
            let bytes = s.disk_bytes().unwrap();
            assert!(
                !let_go.load(Ordering::SeqCst),
                "a read waited for the writer's connection"
            );
            release.send(()).unwrap();
            assert_eq!(depth, 7);
            assert_eq!(
                now,
                QueueNow {
                    queued: 5,
                    running: 2,
                    waiting: 1,
                    dead: 1,
                    oldest_pending_ms: Some(7),
                }
            );
            assert_eq!(
                waiting,
                vec![("a".to_string(), crate::store::WaitFor::Connect, 1)]
            );
            assert_eq!(totals.len(), 1);
            assert!(bytes > 0);
        });
    }

    /// The oldest pending event is the one a walk of every row finds (receipt times out of id
    /// order, as after a clock set back or from another host; older finished, waiting and dead
    /// events left out), and SQLite reads it by one seek of its index, not row by row.
    #[test]
    fn the_oldest_pending_event_is_one_index_seek_with_the_same_figure() {
        on_both(|s| {
            for n in 0..40 {
                s.enqueue("a", "k", &n.to_string(), "{}").unwrap();
            }
            let states = ["queued", "running", "done", "waiting", "dead", "skipped"];
            s.transaction(|db| {
                for id in 1..=40_i64 {
                    db.execute(
                        "UPDATE events SET received_at = ?1, state = ?2 WHERE id = ?3",
                        args![(id * 58) % 1_000, states[(id % 6) as usize], id],
                    )?;
                }
                Ok(())
            })
            .unwrap();
            let walked = (1..=40_i64)
                .filter(|id| id % 6 < 2)
                .map(|id| (id * 58) % 1_000)
                .min();
            let oldest_anywhere = (1..=40_i64).map(|id| (id * 58) % 1_000).min();
            assert!(
                walked > oldest_anywhere,
                "an older event that is not pending"
            );
            assert_ne!(
                walked,
                Some(58),
                "the oldest pending is not the first pending by id"
            );
            assert_eq!(s.queue_now().unwrap().oldest_pending_ms, walked);
        });
        let s = crate::store::testing::sqlite();
        let conn = s.conn().unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                oldest_pending_sql(Dialect::Sqlite)
            ))
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            plan,
            ["SEARCH events USING INDEX events_pending_received"],
            "one seek"
        );
    }

    #[test]
    fn an_empty_queue_has_no_oldest_pending_event() {
        on_both(|s| {
            assert_eq!(s.queue_now().unwrap(), QueueNow::default());
            assert!(s.events_per_minute(0).unwrap().is_empty());
            assert!(s.version_stats(0).unwrap().is_empty());
        });
    }
}
