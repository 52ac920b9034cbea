//! The group commit's intake inserts: the webhooks of one batch become one multi-row `INSERT`
//! per table (`events`, `event_bodies`, `inbound_requests`) instead of a statement each.
//!
//! A webhook sent through [`Store::enqueue_batched`] or [`Store::enqueue_received`] is an
//! [`IntakeJob`] of the [`writer`](super::writer) (`IntakeJob`). When a batch holds two or more
//! (on PostgreSQL one or more), the writer runs them first, together, at the start of the
//! batch's transaction ([`enqueue_many_on`]);
//! each is answered with its own [`Enqueued`] once the batch committed, as before. Statement
//! texts exist for a bounded set of row counts ([`CHUNKS`]), so both backends' statement caches
//! keep them. If the merged statements fail, the transaction is rolled back and begun again
//! (nothing else ran in it yet) and each job runs alone in its own savepoint (the single-row
//! [`enqueue_on`]), so one bad row still fails only its own request. Neither a savepoint nor
//! (SQLite, `OR FAIL`) a statement journal copies the pages the merged statements change.
//!
//! Kept from the single-row path: ids follow the order of the batch (`VALUES` rows are inserted
//! in order), a key seen before (stored, tombstoned, or earlier in the same batch) is a
//! [`Enqueued::Duplicate`] that stores nothing, and nothing is acknowledged before `COMMIT`.
//!
//! [`Store::enqueue_batched`]: super::Store::enqueue_batched
//! [`Store::enqueue_received`]: super::Store::enqueue_received

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;

use super::sql::{Db, Dialect, Statement, Value};
use super::{
    duplicate_on, enqueue_hashed_on, now_ms, Backend, Enqueued, Result, Store, StoreError,
};

/// Row counts a multi-row statement is written for, largest first: a batch is cut into chunks
/// of these sizes, the powers of two, so `n` rows take one statement per bit of `n` (200 rows:
/// 128 + 64 + 8; 30: 16 + 8 + 4 + 2, where sizes 32, 8 and 1 took nine), each statement's
/// fixed cost paid on the writer thread every webhook waits for.
pub(in crate::store) const CHUNKS: [usize; 8] = [128, 64, 32, 16, 8, 4, 2, 1];

/// A webhook's body: UTF-8 text shared with the request that carried it, so it moves from the
/// request into the stored row without a copy ([`Value::Shared`]), with its SHA-256 (hex), which
/// tells a redelivery from a replay. The hash is taken where the body is made, on the request's
/// thread: the writer thread, which every webhook waits for, only binds it.
#[derive(Debug, Clone)]
pub(in crate::store) struct Body {
    bytes: Bytes,
    hash: String,
}

impl Body {
    fn new(bytes: Bytes) -> Body {
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
        // Into a buffer, then one string: `hex::encode` pushes each digit as a `char`.
        let mut hex = [0u8; 64];
        // 32 bytes fill the 64 digits exactly: this cannot fail.
        let _ = hex::encode_to_slice(digest, &mut hex);
        let hash = String::from_utf8_lossy(&hex).into_owned();
        Body { bytes, hash }
    }

    /// The body's SHA-256, hex.
    pub(in crate::store) fn hash(&self) -> &str {
        &self.hash
    }
}

impl TryFrom<Bytes> for Body {
    type Error = StoreError;

    /// Refuses a body that is not UTF-8 (the column is text on both backends).
    fn try_from(bytes: Bytes) -> Result<Body> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Body::new(bytes)),
            Err(e) => Err(StoreError::Row(format!(
                "a webhook body that is not UTF-8: {e}"
            ))),
        }
    }
}

impl From<&str> for Body {
    fn from(text: &str) -> Body {
        Body::new(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl From<&Body> for Value {
    fn from(body: &Body) -> Value {
        Value::Shared(body.bytes.clone())
    }
}

/// One webhook to queue.
#[derive(Debug, Clone)]
pub(in crate::store) struct IntakeRow {
    pub integration: String,
    pub kind: String,
    pub dedupe_key: String,
    pub body: Body,
    /// The inbound request's masked headers (JSON) and signature, kept for a new event.
    pub inbound: Option<(String, String)>,
}

/// Queues `row` on its own (a batch with one webhook, or after the merged statements failed).
pub(in crate::store) fn enqueue_one_on(db: &dyn Db, row: &IntakeRow) -> Result<Enqueued> {
    let done = enqueue_hashed_on(
        db,
        &row.integration,
        &row.kind,
        &row.dedupe_key,
        (&row.body).into(),
        row.body.hash(),
    )?;
    if let (Enqueued::New(id), Some((headers, signature))) = (&done, &row.inbound) {
        db.execute_all(&inbound_inserts(db, &[(*id, headers, signature)]))?;
    }
    Ok(done)
}

/// Queues `rows` with one multi-row statement per table and chunk; one answer per row, in order.
/// PostgreSQL's is one statement per chunk for the three tables ([`super::pg_intake`]).
pub(in crate::store) fn enqueue_many_on(db: &dyn Db, rows: &[&IntakeRow]) -> Result<Vec<Enqueued>> {
    if db.dialect() == Dialect::Postgres {
        return super::pg_intake::enqueue_many_on(db, rows);
    }
    let now = now_ms();
    // Each key's first row in the batch, and the id its insert returned (none: refused).
    let mut first: HashMap<(&str, &str), usize> = HashMap::with_capacity(rows.len());
    for (at, row) in rows.iter().enumerate() {
        first
            .entry((row.integration.as_str(), row.dedupe_key.as_str()))
            .or_insert(at);
    }
    let mut inserted: Vec<Option<i64>> = vec![None; rows.len()];
    let mut start = 0;
    for size in chunk_sizes(rows.len()) {
        let mut args: Vec<Value> = Vec::with_capacity(size * 5);
        for row in &rows[start..start + size] {
            args.extend([
                row.integration.as_str().into(),
                row.kind.as_str().into(),
                row.dedupe_key.as_str().into(),
                row.body.hash().into(),
                now.into(),
            ]);
        }
        for r in db.query(statement(&INSERT_EVENTS, db, size), &args)? {
            let (integration, key) = (r.text(1)?, r.text(2)?);
            if let Some(&at) = first.get(&(integration.as_str(), key.as_str())) {
                inserted[at] = Some(r.int(0)?);
            }
        }
        start += size;
    }

    // In batch order: the first row of a key inserted is new; a later one, or one refused
    // (stored before, or tombstoned), is a duplicate, told apart as the single-row path does.
    let mut answers = Vec::with_capacity(rows.len());
    for (at, row) in rows.iter().enumerate() {
        let key = (row.integration.as_str(), row.dedupe_key.as_str());
        let hash = row.body.hash();
        let first_at = first.get(&key).copied().unwrap_or(at);
        answers.push(match inserted[first_at] {
            Some(id) if first_at == at => Enqueued::New(id),
            Some(id) => Enqueued::Duplicate {
                id,
                same_payload: rows[first_at].body.hash() == hash,
            },
            None => duplicate_on(db, key.0, key.1, hash)?,
        });
    }

    let new: Vec<(i64, &IntakeRow)> = answers
        .iter()
        .zip(rows)
        .filter_map(|(a, row)| match a {
            Enqueued::New(id) => Some((*id, *row)),
            Enqueued::Duplicate { .. } => None,
        })
        .collect();
    let inbound: Vec<(i64, &String, &String)> = new
        .iter()
        .filter_map(|(id, row)| row.inbound.as_ref().map(|(h, s)| (*id, h, s)))
        .collect();
    let mut inserts = body_inserts(db, &new);
    inserts.extend(inbound_inserts(db, &inbound));
    // Nothing waits for their answers: one round trip on PostgreSQL, with the COMMIT when the
    // batch holds only webhooks.
    db.execute_all_last(&inserts)?;
    Ok(answers)
}

/// `n` cut into chunks of the [`CHUNKS`] sizes, largest first.
pub(in crate::store) fn chunk_sizes(mut n: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    for size in CHUNKS {
        while n >= size {
            sizes.push(size);
            n -= size;
        }
    }
    sizes
}

/// `(?1, ?2, …), (…)`: `rows` groups of `width` numbered parameters, each cast as `types`.
fn values(rows: usize, types: &[&str]) -> String {
    let width = types.len();
    (0..rows)
        .map(|r| {
            let cols: Vec<String> = types
                .iter()
                .enumerate()
                .map(|(c, ty)| match ty {
                    &"" => format!("?{}", r * width + c + 1),
                    ty => format!("CAST(?{} AS {ty})", r * width + c + 1),
                })
                .collect();
            format!("({})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A multi-row statement's text per dialect (SQLite's, PostgreSQL's) and [`CHUNKS`] size,
/// built once: a batch only looks it up.
type Statements = LazyLock<[[String; CHUNKS.len()]; 2]>;

/// How each multi-row insert starts. On SQLite `OR FAIL`: a statement that fails keeps the rows
/// it inserted before the failure instead of undoing them, so it needs no statement journal (a
/// copy of every page it changes, on the writer every webhook waits for). The merged inserts
/// stay all or nothing through the batch's transaction, which a failed merge rolls back
/// ([`super::writer`]); a single webhook's insert runs in its job's savepoint.
fn insert_into(dialect: usize) -> &'static str {
    ["INSERT OR FAIL INTO", "INSERT INTO"][dialect]
}

/// The index of `db`'s dialect in a [`Statements`].
fn dialect(db: &dyn Db) -> usize {
    match db.dialect() {
        Dialect::Sqlite => 0,
        Dialect::Postgres => 1,
    }
}

static INSERT_EVENTS: Statements =
    LazyLock::new(|| [0, 1].map(|d| CHUNKS.map(|rows| insert_events_sql(d, rows))));
static INSERT_BODIES: Statements = LazyLock::new(|| {
    [0, 1].map(|d| {
        CHUNKS.map(|rows| {
            format!(
                "{} event_bodies (event_id, body) VALUES {}",
                insert_into(d),
                values(rows, &["", ""])
            )
        })
    })
});
static INSERT_INBOUND: Statements = LazyLock::new(|| {
    [0, 1].map(|d| {
        CHUNKS.map(|rows| {
            format!(
                "{} inbound_requests (event_id, headers, signature) VALUES {}",
                insert_into(d),
                values(rows, &["", "", ""])
            )
        })
    })
});

/// The text of `statements` for `db` and a chunk of `rows` rows (one of [`CHUNKS`]: sizes come
/// from [`chunk_sizes`]; another would get the one-row text, which then fails on its parameter
/// count, never runs wrong).
fn statement(statements: &'static Statements, db: &dyn Db, rows: usize) -> &'static str {
    let at = CHUNKS
        .iter()
        .position(|&n| n == rows)
        .unwrap_or(CHUNKS.len() - 1);
    &statements[dialect(db)][at]
}

/// The multi-row `events` insert of `rows` rows: a key already stored or tombstoned is skipped
/// (answered as a duplicate afterwards). The casts: PostgreSQL infers no type for a parameter
/// in `VALUES` outside an `INSERT`'s own list.
fn insert_events_sql(dialect: usize, rows: usize) -> String {
    format!(
        "{} events (integration, kind, dedupe_key, payload_hash, state,
                next_attempt_at, received_at)
         SELECT v.column1, v.column2, v.column3, v.column4, 'queued', v.column5, v.column5
         FROM (VALUES {}) AS v
         WHERE NOT EXISTS (SELECT 1 FROM tombstones t
                           WHERE t.integration = v.column1 AND t.dedupe_key = v.column3)
         ON CONFLICT (integration, dedupe_key) DO NOTHING
         RETURNING id, integration, dedupe_key",
        insert_into(dialect),
        values(rows, &["TEXT", "TEXT", "TEXT", "TEXT", "BIGINT"])
    )
}

/// The new events' bodies, a multi-row insert per chunk.
fn body_inserts(db: &dyn Db, new: &[(i64, &IntakeRow)]) -> Vec<Statement> {
    let mut start = 0;
    let mut inserts = Vec::new();
    for size in chunk_sizes(new.len()) {
        let args: Vec<Value> = new[start..start + size]
            .iter()
            .flat_map(|(id, row)| [(*id).into(), (&row.body).into()])
            .collect();
        inserts.push(Statement::new(statement(&INSERT_BODIES, db, size), args));
        start += size;
    }
    inserts
}

/// The new events' inbound requests (headers, signature), a multi-row insert per chunk.
fn inbound_inserts(db: &dyn Db, rows: &[(i64, &String, &String)]) -> Vec<Statement> {
    let mut start = 0;
    let mut inserts = Vec::new();
    for size in chunk_sizes(rows.len()) {
        let args: Vec<Value> = rows[start..start + size]
            .iter()
            .flat_map(|(id, headers, signature)| {
                [
                    (*id).into(),
                    headers.as_str().into(),
                    signature.as_str().into(),
                ]
            })
            .collect();
        inserts.push(Statement::new(statement(&INSERT_INBOUND, db, size), args));
        start += size;
    }
    inserts
}

impl Store {
    /// Queues `row` through the [`writer`](super::writer), merged with the webhooks of its batch.
    pub(in crate::store) async fn write_intake(&self, row: IntakeRow) -> Result<Enqueued> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => writer.enqueue(row).await,
            Backend::Postgres { writer, .. } => writer.enqueue(row).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::on_both;

    fn row(key: &str, body: &str, inbound: bool) -> IntakeRow {
        IntakeRow {
            integration: "acme".into(),
            kind: "lever.stage_change".into(),
            dedupe_key: key.into(),
            body: body.into(),
            inbound: inbound.then(|| ("{\"h\":\"v\"}".to_owned(), "valid".to_owned())),
        }
    }

    /// Figures, not a pass/fail test (`cargo test --release -p switchyard --lib intake_figures
    /// -- --ignored --nocapture`): webhooks/s of N concurrent intake writes merged into
    /// multi-row inserts vs one statement per webhook (the path before), on each backend.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn intake_figures() {
        const N: usize = 5_000;
        let sqlite = crate::store::testing::sqlite();
        for (name, s) in [
            ("sqlite", sqlite.store.clone()),
            ("postgres", crate::store::testing::postgres()),
        ] {
            for merged in [false, true] {
                let before = s.writer_stats();
                let started = std::time::Instant::now();
                let mut tasks = tokio::task::JoinSet::new();
                for n in 0..N {
                    let s = s.clone();
                    let r = row(&format!("{merged}-{n}"), &"x".repeat(420), true);
                    tasks.spawn(async move {
                        if merged {
                            s.write_intake(r).await
                        } else {
                            s.write_db(move |db| enqueue_one_on(db, &r)).await
                        }
                    });
                }
                while let Some(r) = tasks.join_next().await {
                    assert!(matches!(r.unwrap().unwrap(), Enqueued::New(_)));
                }
                let took = started.elapsed();
                let after = s.writer_stats();
                eprintln!(
                    "figure: {name}, {}: {:.0} webhooks/s (mean batch {:.1})",
                    if merged {
                        "merged"
                    } else {
                        "one statement each"
                    },
                    N as f64 / took.as_secs_f64(),
                    (after.writes - before.writes) as f64
                        / (after.commits - before.commits).max(1) as f64
                );
            }
        }
    }

    #[test]
    fn a_batch_is_cut_into_the_bounded_statement_sizes() {
        assert_eq!(chunk_sizes(200), vec![128, 64, 8]);
        assert_eq!(chunk_sizes(137), vec![128, 8, 1]);
        assert_eq!(chunk_sizes(30), vec![16, 8, 4, 2]);
        assert_eq!(chunk_sizes(1), vec![1]);
        assert!(chunk_sizes(0).is_empty());
    }

    /// One merged insert answers each webhook as the single-row path would: new ones in batch
    /// order with their bodies and inbound requests, a key stored before or repeated in the
    /// batch a duplicate (a redelivery or a replay) that stores nothing.
    #[test]
    fn merged_intake_answers_each_webhook_like_the_single_row_path() {
        on_both(|s| {
            let Enqueued::New(before) = s.enqueue("acme", "k", "old", "{}").unwrap() else {
                panic!("a new event");
            };
            let mut rows: Vec<IntakeRow> = (0..137)
                .map(|n| row(&format!("k{n}"), &format!("{{\"n\":{n}}}"), n % 2 == 0))
                .collect();
            rows.push(row("old", "{}", true));
            rows.push(row("k3", "{\"n\":3}", false));
            rows.push(row("k4", "{\"changed\":true}", false));
            let refs: Vec<&IntakeRow> = rows.iter().collect();
            let answers = s.transaction(|db| enqueue_many_on(db, &refs)).unwrap();
            assert_eq!(answers.len(), rows.len());

            let ids: Vec<i64> = answers[..137]
                .iter()
                .map(|a| match a {
                    Enqueued::New(id) => *id,
                    other => panic!("expected a new event, got {other:?}"),
                })
                .collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "batch order: {ids:?}");
            assert!(ids[0] > before);
            assert_eq!(
                answers[137..],
                [
                    Enqueued::Duplicate {
                        id: before,
                        same_payload: true
                    },
                    Enqueued::Duplicate {
                        id: ids[3],
                        same_payload: true
                    },
                    Enqueued::Duplicate {
                        id: ids[4],
                        same_payload: false
                    },
                ]
            );
            assert_eq!(s.queue_depth().unwrap(), 138);
            for n in [0, 4, 5, 136] {
                let e = s.event(ids[n]).unwrap().unwrap();
                assert_eq!(e.payload, format!("{{\"n\":{n}}}"), "its own body");
                assert_eq!(
                    s.inbound(ids[n]).unwrap().is_some(),
                    n % 2 == 0,
                    "inbound request of {n}"
                );
            }
            assert!(
                s.inbound(before).unwrap().is_none(),
                "a duplicate records nothing"
            );

            // A key twice within one statement (a chunk of 8): the first is new, the second a
            // duplicate of it.
            let rows: Vec<IntakeRow> = (0..8)
                .map(|n| row(&format!("d{}", n.min(6)), &format!("{{\"d\":{n}}}"), false))
                .collect();
            let refs: Vec<&IntakeRow> = rows.iter().collect();
            let answers = s.transaction(|db| enqueue_many_on(db, &refs)).unwrap();
            let Enqueued::New(first) = answers[6] else {
                panic!("new: {answers:?}");
            };
            assert_eq!(
                answers[7],
                Enqueued::Duplicate {
                    id: first,
                    same_payload: false
                }
            );
            assert_eq!(s.queue_depth().unwrap(), 138 + 7);
        });
    }

    /// What a queued webhook costs in indexes (SQLite): it enters only the unique key and the
    /// one full index by state, besides the claim's partial ones and the pending events'
    /// receipt times (migration 11: the last leaf, shared by a batch); every reader of the indexes
    /// migration 7 dropped or narrowed still searches an index on a table of queued, running,
    /// waiting, dead and finished events (a scan would grow with the history); and the batch
    /// claim's lease, on the writer every webhook waits for, looks its ids up by rowid instead
    /// of walking every queued event (it did, through an index by state, as the backlog grew).
    #[test]
    fn a_queued_webhook_enters_only_the_indexes_its_readers_need() {
        let s = crate::store::testing::sqlite();
        for n in 0..300 {
            s.enqueue("acme", "k", &format!("key-{n}"), "{}").unwrap();
        }
        let conn = s.conn().unwrap();
        conn.execute_batch(
            "UPDATE events SET state = 'done', finished_at = id WHERE id <= 100;
             UPDATE events SET state = 'skipped', finished_at = id WHERE id BETWEEN 101 AND 200;
             UPDATE events SET state = 'dead', finished_at = id WHERE id BETWEEN 201 AND 210;
             UPDATE events SET state = 'waiting', waiting_for = 'connect' WHERE id BETWEEN 211 AND 230;
             UPDATE events SET state = 'running', lease_run = 'r' WHERE id BETWEEN 231 AND 240;",
        )
        .unwrap();

        // Every index of `events` whose rows include a queued event: the full ones and the
        // partial ones whose condition names it (the claim's, the pending receipt times).
        let mut queued_in: Vec<String> = conn
            .prepare(
                "SELECT i.name FROM pragma_index_list('events') i
                 LEFT JOIN sqlite_schema m ON m.type = 'index' AND m.name = i.name
                 WHERE NOT i.partial OR m.sql LIKE '%WHERE state%''queued''%'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        queued_in.sort();
        assert_eq!(
            queued_in,
            [
                "events_by_integration_due",
                "events_pending_received",
                "events_queued_due",
                "events_queued_next",
                "sqlite_autoindex_events_1",
            ]
        );

        // The readers, as their modules write them (stats, queue, waiting, retention), and the
        // index search each must keep.
        let by_state = "events_by_integration_due (state=?)";
        let finished = "events_finished (state=? AND finished_at<?)";
        let lease = crate::store::queue::lease_batch_sql(crate::store::sql::Dialect::Sqlite);
        let wake = crate::store::waiting::wake_sql(crate::store::sql::Dialect::Sqlite);
        let next_due = crate::store::queue::next_due_sql(crate::store::sql::Dialect::Sqlite);
        for (reader, search) in [
            (
                "SELECT state, COUNT(*) FROM events
                 WHERE state IN ('queued', 'running', 'waiting', 'dead') GROUP BY state",
                by_state,
            ),
            (
                crate::store::stats::oldest_pending_sql(crate::store::sql::Dialect::Sqlite),
                "INDEX events_pending_received",
            ),
            (
                "SELECT COUNT(*) FROM events WHERE state IN ('queued', 'running')",
                by_state,
            ),
            (wake.as_str(), "events_waiting_due (next_attempt_at<?)"),
            (
                "SELECT integration, waiting_for, COUNT(*) FROM events WHERE state = 'waiting'
                 GROUP BY integration, waiting_for",
                by_state,
            ),
            (
                "SELECT id FROM events e WHERE state IN ('done', 'skipped') AND finished_at < ?1
                 LIMIT ?2",
                finished,
            ),
            (lease.as_str(), "events USING INTEGER PRIMARY KEY (rowid=?)"),
            // An idle worker's look: one seek, not every queued event's entry.
            (next_due, "INDEX events_queued_next"),
            (
                "SELECT g.integration, g.id FROM gem_screenings g JOIN events e
                 ON e.id = g.event_id
                 WHERE g.order_ref IS NULL AND e.state IN ('done', 'skipped')
                   AND e.finished_at < ?1 LIMIT ?2",
                finished,
            ),
        ] {
            let mut explain = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {reader}"))
                .unwrap();
            let nulls = vec![rusqlite::types::Null; explain.parameter_count()];
            let plan: Vec<String> = explain
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(
                plan.iter().any(|line| line.ends_with(search))
                    && !plan
                        .iter()
                        .any(|line| line.starts_with("SCAN events") || line.starts_with("SCAN e ")),
                "{reader}\nplans {plan:?}"
            );
        }
    }
}
