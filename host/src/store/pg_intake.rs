//! PostgreSQL's merged intake insert ([`super::intake`]): each chunk of a batch's webhooks is
//! one statement whose data-modifying CTEs insert the events, then the new ones' bodies and
//! inbound requests from the ids the events' insert returned, and which answers every webhook
//! (its new id, or the stored event or tombstone its key names). Nothing waits for one chunk's
//! answer before the next is sent: the chunks go out together, with the batch's `COMMIT` when
//! the batch holds only webhooks ([`Db::query_all_last`]), one round trip per batch where the
//! ids had to come back before the bodies could be sent (two).
//!
//! The single-row path's answers are kept ([`super::intake`]'s test runs on both backends): ids
//! in batch order (the insert's `ORDER BY`), a key stored, tombstoned, or earlier in the batch a
//! duplicate. A key another transaction inserted while this statement ran is visible to the
//! insert's conflict check but not to the statement's snapshot, which answers the others: such
//! a row fails the statement on purpose (a cast of a text naming it), and the writer runs the
//! batch's webhooks again one by one ([`super::writer`]), where each statement sees it.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::intake::{chunk_sizes, IntakeRow, CHUNKS};
use super::sql::{Db, Statement, Value};
use super::{now_ms, Enqueued, Result, StoreError};

/// The columns of a webhook's row in the statement's `VALUES`, with their types.
const COLUMNS: [(&str, &str); 8] = [
    ("integration", "TEXT"),
    ("kind", "TEXT"),
    ("dedupe_key", "TEXT"),
    ("payload_hash", "TEXT"),
    ("at", "BIGINT"),
    ("body", "TEXT"),
    ("headers", "TEXT"),
    ("signature", "TEXT"),
];

/// The statement of a chunk of `rows` webhooks. Answers, per row in order: its position, the
/// id the insert gave its key (any row of the key in this chunk), else the stored event's or
/// tombstone's id and payload hash.
fn enqueue_sql(rows: usize) -> String {
    let width = COLUMNS.len();
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let cols: Vec<String> = COLUMNS
                .iter()
                .enumerate()
                .map(|(c, (_, ty))| format!("CAST(?{} AS {ty})", r * width + c + 1))
                .collect();
            format!("({r}, {})", cols.join(", "))
        })
        .collect();
    let names: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    format!(
        "WITH v (ord, {names}) AS (VALUES {values}),
         inserted AS (
             INSERT INTO events (integration, kind, dedupe_key, payload_hash, state,
                 next_attempt_at, received_at)
             SELECT integration, kind, dedupe_key, payload_hash, 'queued', at, at FROM v
             WHERE NOT EXISTS (SELECT 1 FROM tombstones t
                               WHERE t.integration = v.integration
                                 AND t.dedupe_key = v.dedupe_key)
             ORDER BY ord
             ON CONFLICT (integration, dedupe_key) DO NOTHING
             RETURNING id, integration, dedupe_key),
         firsts AS (
             SELECT i.id, f.body, f.headers, f.signature FROM inserted i
             CROSS JOIN LATERAL (SELECT body, headers, signature FROM v
                                 WHERE v.integration = i.integration
                                   AND v.dedupe_key = i.dedupe_key
                                 ORDER BY ord LIMIT 1) f),
         bodies AS (INSERT INTO event_bodies (event_id, body) SELECT id, body FROM firsts),
         requests AS (
             INSERT INTO inbound_requests (event_id, headers, signature)
             SELECT id, headers, signature FROM firsts WHERE headers IS NOT NULL)
         SELECT v.ord, i.id, COALESCE(e.id, t.event_id), COALESCE(e.payload_hash, t.payload_hash),
             CASE WHEN i.id IS NULL AND e.id IS NULL AND t.event_id IS NULL
                  THEN CAST('inserted by another transaction meanwhile: ' || v.dedupe_key
                            AS BIGINT) END
         FROM v
         LEFT JOIN inserted i ON i.integration = v.integration AND i.dedupe_key = v.dedupe_key
         LEFT JOIN events e ON e.integration = v.integration AND e.dedupe_key = v.dedupe_key
         LEFT JOIN tombstones t
             ON t.integration = v.integration AND t.dedupe_key = v.dedupe_key
         ORDER BY v.ord",
        names = names.join(", "),
        values = values.join(", "),
    )
}

/// [`enqueue_sql`] per [`CHUNKS`] size, built once: a batch only looks it up.
static ENQUEUE: LazyLock<[String; CHUNKS.len()]> = LazyLock::new(|| CHUNKS.map(enqueue_sql));

/// The text for a chunk of `rows` (one of [`CHUNKS`], from [`chunk_sizes`]).
fn statement(rows: usize) -> &'static str {
    let at = CHUNKS
        .iter()
        .position(|&n| n == rows)
        .unwrap_or(CHUNKS.len() - 1);
    &ENQUEUE[at]
}

/// What the statement answered for one row: the id its key was inserted with, else the stored
/// event's (or tombstone's) id and payload hash.
#[derive(Default, Clone)]
struct Answer {
    inserted: Option<i64>,
    stored: Option<(i64, String)>,
}

/// Queues `rows` (PostgreSQL): one statement per chunk, all sent together; one answer per
/// row, in order, as [`super::intake::enqueue_many_on`] gives them.
pub(in crate::store) fn enqueue_many_on(db: &dyn Db, rows: &[&IntakeRow]) -> Result<Vec<Enqueued>> {
    let now = now_ms();
    let mut statements = Vec::new();
    let mut start = 0;
    for size in chunk_sizes(rows.len()) {
        let mut args: Vec<Value> = Vec::with_capacity(size * COLUMNS.len());
        for row in &rows[start..start + size] {
            let (headers, signature) = match &row.inbound {
                Some((headers, signature)) => (Some(headers.as_str()), Some(signature.as_str())),
                None => (None, None),
            };
            args.extend([
                row.integration.as_str().into(),
                row.kind.as_str().into(),
                row.dedupe_key.as_str().into(),
                row.body.hash().into(),
                now.into(),
                (&row.body).into(),
                headers.into(),
                signature.into(),
            ]);
        }
        statements.push(Statement::new(statement(size), args));
        start += size;
    }
    let mut answers = vec![Answer::default(); rows.len()];
    let mut start = 0;
    for (size, chunk) in chunk_sizes(rows.len())
        .into_iter()
        .zip(db.query_all_last(&statements)?)
    {
        for r in chunk {
            let ord = r.int(0)?;
            let answer = usize::try_from(ord)
                .ok()
                .and_then(|ord| ord.checked_add(start))
                .and_then(|at| answers.get_mut(at))
                .ok_or_else(|| StoreError::Row(format!("an intake answer for row {ord}")))?;
            answer.inserted = r.opt_int(1)?;
            answer.stored = match (r.opt_int(2)?, r.opt_text(3)?) {
                (Some(id), Some(hash)) => Some((id, hash)),
                _ => None,
            };
        }
        start += size;
    }
    answered(rows, &answers)
}

/// Each row's [`Enqueued`]: the first row of a key inserted is new; a later one a duplicate of
/// it; a key not inserted a duplicate of what holds it.
fn answered(rows: &[&IntakeRow], answers: &[Answer]) -> Result<Vec<Enqueued>> {
    let mut first: HashMap<(&str, &str), usize> = HashMap::with_capacity(rows.len());
    for (at, row) in rows.iter().enumerate() {
        first
            .entry((row.integration.as_str(), row.dedupe_key.as_str()))
            .or_insert(at);
    }
    rows.iter()
        .enumerate()
        .map(|(at, row)| {
            let key = (row.integration.as_str(), row.dedupe_key.as_str());
            let first_at = first.get(&key).copied().unwrap_or(at);
            let hash = row.body.hash();
            Ok(match (&answers[first_at].inserted, &answers[at].stored) {
                (Some(id), _) if first_at == at => Enqueued::New(*id),
                (Some(id), _) => Enqueued::Duplicate {
                    id: *id,
                    same_payload: rows[first_at].body.hash() == hash,
                },
                (None, Some((id, stored))) => Enqueued::Duplicate {
                    id: *id,
                    same_payload: stored == hash,
                },
                (None, None) => {
                    return Err(StoreError::Row(format!(
                        "no answer for the intake of key {:?}",
                        row.dedupe_key
                    )))
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    fn row(key: &str, inbound: bool) -> IntakeRow {
        IntakeRow {
            integration: "acme".into(),
            kind: "lever.stage_change".into(),
            dedupe_key: key.into(),
            body: "{}".into(),
            inbound: inbound.then(|| ("{}".to_owned(), "valid".to_owned())),
        }
    }

    /// A webhook alone in its batch is one round trip, its commit included; a batch's chunks
    /// all go in one round trip (here inside a transaction of the caller's, then its commit),
    /// where each chunk's events waited for their ids before the bodies could be sent.
    #[tokio::test(flavor = "multi_thread")]
    async fn on_postgres_a_batch_of_webhooks_is_one_round_trip() {
        let s = testing::postgres();
        let trips = || s.writer_stats().round_trips;
        // The writer's statements prepared first.
        s.write_intake(row("warm", true)).await.unwrap();
        let before = trips();
        let done = s.write_intake(row("alone", true)).await.unwrap();
        assert!(matches!(done, Enqueued::New(_)), "{done:?}");
        assert_eq!(trips() - before, 1, "with its commit");

        let rows: Vec<IntakeRow> = (0..137)
            .map(|n| row(&format!("k{n}"), n % 2 == 0))
            .collect();
        let refs: Vec<&IntakeRow> = rows.iter().collect();
        // Chunks of 128, 8 and 1, prepared first.
        s.transaction(|db| enqueue_many_on(db, &refs)).unwrap();
        let again: Vec<IntakeRow> = (0..137)
            .map(|n| row(&format!("j{n}"), n % 2 == 0))
            .collect();
        let refs: Vec<&IntakeRow> = again.iter().collect();
        let before = trips();
        let answers = s.transaction(|db| enqueue_many_on(db, &refs)).unwrap();
        assert_eq!(trips() - before, 2, "the chunks together, then the commit");
        assert!(answers.iter().all(|a| matches!(a, Enqueued::New(_))));
        assert_eq!(s.queue_depth().unwrap(), 2 + 137 * 2);
    }
}
