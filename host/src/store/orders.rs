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
//!
//! **The host owns idempotency.** A started screening's order is recorded with the request's
//! idempotency key (`orders.idempotency_key`, unique per integration where set), and the flow
//! looks it up ([`Store::order_for_key`]) before calling `start-screening`: a retry or a replay
//! after the order was recorded never reaches the connector. The same transaction drops the
//! connector's entries for that screening (`state.set-for-screening`, [`super::kv`]).

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::sql::{args, values, Db, Dialect, Row, Statement};

use super::kv::{
    drop_recorded_screening_statement, kv_entry, kv_get_counted_statement, kv_write_statement,
    KvEntry,
};
use super::locks::{HeldLock, LockName};
use super::verdicts::record_verdict_statement;
use super::{now_ms, Result, Store, StoreError};

/// Adds `idempotency_key` to an `orders` table from before it, and its index.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    let has_key = conn
        .prepare("SELECT 1 FROM pragma_table_info('orders') WHERE name = 'idempotency_key'")?
        .exists([])?;
    if !has_key {
        conn.execute_batch("ALTER TABLE orders ADD COLUMN idempotency_key TEXT")?;
    }
    let has_attempt = conn
        .prepare("SELECT 1 FROM pragma_table_info('notes') WHERE name = 'attempted_at'")?
        .exists([])?;
    if !has_attempt {
        conn.execute_batch("ALTER TABLE notes ADD COLUMN attempted_at INTEGER")?;
    }
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS orders_by_key ON orders (integration, idempotency_key)
         WHERE idempotency_key IS NOT NULL;",
    )?;
    Ok(())
}

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNote {
    pub order_ref: String,
    pub text: String,
    pub secret: bool,
    /// A write of it was started before and never confirmed (a timeout, a crash): the ATS may
    /// have it already.
    pub attempted: bool,
}

/// Forward-only ordering of normalized screening states. Terminal states share the top rank so
/// that none of them can be replaced by an earlier state.
pub fn rank(state: &str) -> u8 {
    RANKS
        .iter()
        .find(|(s, _)| *s == state)
        .map_or(0, |(_, r)| *r)
}

/// The ranks of [`rank`] (any other state ranks 0).
const RANKS: [(&str, u8); 6] = [
    ("pending", 1),
    ("analyzing", 2),
    ("partial", 3),
    ("complete", 4),
    ("error", 4),
    ("cancelled", 4),
];

/// [`rank`] of the `state` column, in SQL: the forward-only check inside the update itself.
fn rank_sql() -> String {
    rank_of("state")
}

/// [`rank`] of a state `column` (e.g. `excluded.state`), in SQL.
fn rank_of(column: &str) -> String {
    let whens: String = RANKS
        .iter()
        .map(|(s, r)| format!(" WHEN '{s}' THEN {r}"))
        .collect();
    format!("CASE {column}{whens} ELSE 0 END")
}

/// What inserting an order does to one already there.
#[derive(Clone, Copy)]
enum OnConflict {
    /// Keeps it as it is, only giving it the key if it has none.
    KeepIt,
    /// Also moves it forward to the inserted state (never back), as [`advance_order_on`] does: a
    /// status whose advance found no order, while another transaction was inserting it
    /// (PostgreSQL), is not dropped when its insert then meets that order.
    Advance,
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
    /// The idempotency key of the request that started the order (a started screening's first
    /// status; none for a vendor's update): recorded with a new order, and the connector's
    /// entries for that screening dropped.
    pub idempotency_key: Option<String>,
}

/// Inserts `order` unless its reference is known (a retried start-screening keeps the first),
/// with `idempotency_key` unless another order of the integration holds that key already (the
/// unique index would refuse the whole status). A known order without a key gets this one.
fn insert_order_on(
    db: &dyn Db,
    order: &Order,
    idempotency_key: Option<&str>,
    on_conflict: OnConflict,
) -> Result<()> {
    let statement = insert_order_statement(order, idempotency_key, on_conflict);
    db.execute(&statement.sql, &statement.values)?;
    Ok(())
}

/// The statement of [`insert_order_on`].
fn insert_order_statement(
    order: &Order,
    idempotency_key: Option<&str>,
    on_conflict: OnConflict,
) -> Statement {
    let advance = match on_conflict {
        OnConflict::KeepIt => String::new(),
        OnConflict::Advance => {
            // Every right-hand side reads the row as it was, so one test serves them all.
            let newer = format!(
                "{} >= {}",
                rank_of("excluded.state"),
                rank_of("orders.state")
            );
            format!(
                ", state = CASE WHEN {newer} THEN excluded.state ELSE orders.state END,
                 label = CASE WHEN {newer} THEN excluded.label ELSE orders.label END,
                 report_url = CASE WHEN {newer}
                     THEN COALESCE(excluded.report_url, orders.report_url)
                     ELSE orders.report_url END,
                 score = CASE WHEN {newer}
                     THEN COALESCE(excluded.score, orders.score) ELSE orders.score END,
                 verdict = CASE WHEN {newer}
                     THEN COALESCE(excluded.verdict, orders.verdict) ELSE orders.verdict END,
                 updated_at = CASE WHEN {newer}
                     THEN excluded.updated_at ELSE orders.updated_at END"
            )
        }
    };
    // The key's check is in the statement (one round trip, not a read before it).
    Statement::new(
        format!(
            "INSERT INTO orders (integration, order_ref, connector, opportunity_id, state, label,
                report_url, score, verdict, updated_at, idempotency_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
                CASE WHEN EXISTS (SELECT 1 FROM orders WHERE integration = ?1
                                  AND idempotency_key = CAST(?11 AS TEXT))
                     THEN NULL ELSE CAST(?11 AS TEXT) END)
             ON CONFLICT (integration, order_ref)
             DO UPDATE SET idempotency_key =
                 COALESCE(orders.idempotency_key, excluded.idempotency_key){advance}"
        ),
        values![
            &order.integration,
            &order.order_ref,
            &order.connector,
            &order.opportunity_id,
            &order.state,
            &order.label,
            order.report_url.as_deref(),
            order.score,
            order.verdict.as_deref(),
            now_ms(),
            idempotency_key
        ],
    )
}

/// [`Store::advance_order`] on a connection (or transaction) the caller holds.
fn advance_order_on(db: &dyn Db, update: &Order) -> Result<bool> {
    // One statement: the rank check is in it (no read of the state first).
    let n = db.execute(
        &format!(
            "UPDATE orders SET state = ?3, label = ?4,
                report_url = COALESCE(?5, report_url), score = COALESCE(?6, score),
                verdict = COALESCE(?7, verdict), updated_at = ?8
             WHERE integration = ?1 AND order_ref = ?2 AND {} <= ?9",
            rank_sql()
        ),
        args![
            &update.integration,
            &update.order_ref,
            &update.state,
            &update.label,
            update.report_url.as_deref(),
            update.score,
            update.verdict.as_deref(),
            now_ms(),
            i64::from(rank(&update.state))
        ],
    )?;
    Ok(n == 1)
}

fn add_note_on(
    db: &dyn Db,
    integration: &str,
    order_ref: &str,
    text: &str,
    secret: bool,
) -> Result<()> {
    let statement = add_note_statement(integration, order_ref, text, secret);
    db.execute(&statement.sql, &statement.values)?;
    Ok(())
}

fn add_note_statement(integration: &str, order_ref: &str, text: &str, secret: bool) -> Statement {
    Statement::new(
        "INSERT INTO notes (integration, order_ref, text, secret) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
        values![integration, order_ref, text, secret],
    )
}

/// [`Store::record_status`] on a connection (or transaction) the caller holds, with `state` (a
/// connector's `state` writes): the caller makes it atomic. Statements whose answers nothing
/// waits for go out together ([`Db::execute_all`]: one round trip on PostgreSQL).
fn record_status_on(conn: &dyn Db, rec: &StatusRecord, state: Vec<Statement>) -> Result<()> {
    // A callback's status (no key) is advanced first: a known order is one row write and no
    // insert; a new one is inserted once, where inserting then advancing it wrote the same row
    // twice.
    let advanced = rec.idempotency_key.is_none() && advance_order_on(conn, &unverdicted(rec))?;
    // The write's last: alone in its batch, they carry its commit.
    conn.execute_all_last(&status_statements(rec, !advanced, state))?;
    Ok(())
}

/// A status's order without its verdict, which is recorded apart (ordered by `seq`).
fn unverdicted(rec: &StatusRecord) -> Order {
    Order {
        verdict: None,
        ..rec.order.clone()
    }
}

/// The statements of a status, none waiting for another's answer: the order's upsert (unless
/// `upsert` is false: advanced already), then `state`, the verdict, the note, and the
/// screening's dropped entries.
fn status_statements(rec: &StatusRecord, upsert: bool, state: Vec<Statement>) -> Vec<Statement> {
    let order = unverdicted(rec);
    let key = rec.idempotency_key.as_deref();
    let mut statements = Vec::with_capacity(state.len() + 4);
    // A started screening's order: one upsert inserts it, or moves a known one forward (a
    // retried start-screening) and gives it the key if it has none, as an advance followed by
    // an insert of the key did, with no answer to wait for in between. A callback's status the
    // same, when it is not advanced first.
    if upsert {
        statements.push(insert_order_statement(&order, key, OnConflict::Advance));
    }
    // After the order: an entry of the screening it records is not kept at all (the statement
    // checks for the order), where written before it was inserted and then dropped.
    statements.extend(state);
    let (integration, order_ref) = (&order.integration, &order.order_ref);
    if let Some(verdict) = &rec.verdict {
        statements.push(record_verdict_statement(
            integration,
            order_ref,
            verdict,
            rec.seq,
        ));
    }
    if let Some(note) = &rec.note {
        statements.push(add_note_statement(
            integration,
            order_ref,
            &note.text,
            note.secret,
        ));
    }
    // The screening is recorded (by this order, or by one recorded before for the same key): the
    // host never calls start-screening for it again, so the connector's entries for it go. A key
    // left unrecorded (the vendor named an order another key already holds) keeps them.
    if let Some(key) = key {
        statements.push(drop_recorded_screening_statement(integration, key));
    }
    statements
}

/// A connector's `state` writes as the statements that apply them for `order`'s connector.
fn state_statements(order: &Order, state: &[super::kv::KvWrite]) -> Vec<Statement> {
    state
        .iter()
        .map(|write| kv_write_statement(&order.integration, &order.connector, write))
        .collect()
}

/// [`Store::order_for_key`]'s statement.
fn order_for_key_statement(integration: &str, idempotency_key: &str) -> Statement {
    Statement::new(
        format!("SELECT {ORDER_COLS} FROM orders WHERE integration = ?1 AND idempotency_key = ?2"),
        values![integration, idempotency_key],
    )
}

/// The answers of [`orders_of_statement`] and [`unwritten_notes_statement`], read together.
fn orders_and_notes(answers: Vec<Vec<Row>>) -> Result<(Vec<Order>, Vec<PendingNote>)> {
    let mut answers = answers.into_iter();
    let (Some(orders), Some(notes)) = (answers.next(), answers.next()) else {
        return Err(StoreError::NoRow);
    };
    Ok((
        orders.iter().map(order_row).collect::<Result<_>>()?,
        notes.iter().map(note_row).collect::<Result<_>>()?,
    ))
}

/// The orders of one opportunity, oldest first ([`order_row`]).
fn orders_of_statement(integration: &str, opportunity_id: &str) -> Statement {
    Statement::new(
        format!(
            "SELECT {ORDER_COLS} FROM orders WHERE integration = ?1 AND opportunity_id = ?2 \
             ORDER BY seq"
        ),
        values![integration, opportunity_id],
    )
}

/// The notes of one opportunity's orders not written to the ATS yet, oldest order first, in
/// the order they were recorded: SQLite's rowid, PostgreSQL's `seq` ([`note_row`]).
fn unwritten_notes_statement(
    dialect: Dialect,
    integration: &str,
    opportunity_id: &str,
) -> Statement {
    let recorded = match dialect {
        Dialect::Sqlite => "n.rowid",
        Dialect::Postgres => "n.seq",
    };
    Statement::new(
        format!(
            "SELECT n.order_ref, n.text, n.secret,
                    CASE WHEN n.attempted_at IS NULL THEN 0 ELSE 1 END
             FROM notes n
             JOIN orders o ON o.integration = n.integration AND o.order_ref = n.order_ref
             WHERE n.integration = ?1 AND o.opportunity_id = ?2 AND n.written_at IS NULL
             ORDER BY o.seq, {recorded}"
        ),
        values![integration, opportunity_id],
    )
}

fn note_row(r: &Row) -> Result<PendingNote> {
    Ok(PendingNote {
        order_ref: r.text(0)?,
        text: r.text(1)?,
        secret: r.int(2)? != 0,
        attempted: r.int(3)? != 0,
    })
}

/// The columns [`order_row`] reads, in its order.
const ORDER_COLS: &str =
    "integration, order_ref, connector, opportunity_id, seq, state, label, report_url, score, verdict";

fn order_row(r: &Row) -> Result<Order> {
    Ok(Order {
        integration: r.text(0)?,
        order_ref: r.text(1)?,
        connector: r.text(2)?,
        opportunity_id: r.text(3)?,
        seq: r.int(4)?,
        state: r.text(5)?,
        label: r.text(6)?,
        report_url: r.opt_text(7)?,
        score: r.opt_real(8)?,
        verdict: r.opt_text(9)?,
    })
}

impl Store {
    /// Records one status of an order atomically (see the module docs): the order inserted or
    /// moved forward, the verdict unless a newer one is set, the note once. Through the
    /// [`writer`](super::writer): one savepoint in a transaction shared with the other writes of
    /// the moment (one fsync for all), answered once that transaction committed; on an error
    /// nothing of this status is stored.
    pub async fn record_status(&self, rec: StatusRecord) -> Result<()> {
        self.record_status_with_state(rec, Vec::new()).await
    }

    /// [`Store::record_status`] with the `state` writes the order's connector made after its
    /// last outbound request, applied after the order in the same write (one commit for both):
    /// the screening's own entries among them are dropped with it at once.
    ///
    /// Its flush may wait for the next flushed commit: a status lost to a power loss is
    /// recorded again when the step is redone (the intent, flushed before the vendor call, makes
    /// the connector look its order up instead of inviting again; the ATS write-back reconciles,
    /// and a note's attempt mark is flushed before the note is written).
    pub async fn record_status_with_state(
        &self,
        rec: StatusRecord,
        state: Vec<super::kv::KvWrite>,
    ) -> Result<()> {
        self.write_db_later(move |db| {
            record_status_on(db, &rec, state_statements(&rec.order, &state))
        })
        .await
    }

    /// Records a new order, or returns the existing one (a retried start-screening).
    pub fn upsert_order(&self, order: &Order) -> Result<Order> {
        self.db(|db| insert_order_on(db, order, None, OnConflict::KeepIt))?;
        self.order(&order.integration, &order.order_ref)
            .map(|o| o.unwrap_or_else(|| order.clone()))
    }

    /// An order by reference.
    pub fn order(&self, integration: &str, order_ref: &str) -> Result<Option<Order>> {
        self.read_db(|db| {
            db.query_opt(
                &format!(
                    "SELECT {ORDER_COLS} FROM orders WHERE integration = ?1 AND order_ref = ?2"
                ),
                args![integration, order_ref],
            )?
            .as_ref()
            .map(order_row)
            .transpose()
        })
    }

    /// The order recorded for the screening request with `idempotency_key`, if any: the flow
    /// does not call `start-screening` again for it.
    pub fn order_for_key(&self, integration: &str, idempotency_key: &str) -> Result<Option<Order>> {
        let read = order_for_key_statement(integration, idempotency_key);
        self.read_db(|db| {
            db.query(&read.sql, &read.values)?
                .first()
                .map(order_row)
                .transpose()
        })
    }

    /// [`Store::order_for_key`], and `keys` of `connector`'s state as
    /// [`Store::kv_get_counted`] reads them (the first with the connector's total): what a
    /// screening's start reads before, and its connector first in, its call; one round trip
    /// on PostgreSQL.
    pub fn order_for_key_with_state(
        &self,
        integration: &str,
        connector: &str,
        idempotency_key: &str,
        keys: &[String],
    ) -> Result<(Option<Order>, Vec<KvEntry>)> {
        let mut reads = vec![order_for_key_statement(integration, idempotency_key)];
        reads.extend(
            keys.iter()
                .enumerate()
                .map(|(i, key)| kv_get_counted_statement(integration, connector, key, i == 0)),
        );
        self.read_db(|db| {
            let mut answers = db.query_all(&reads)?.into_iter();
            let order = answers.next().ok_or(StoreError::NoRow)?;
            let order = order.first().map(order_row).transpose()?;
            let entries = answers.map(|rows| kv_entry(&rows)).collect::<Result<_>>()?;
            Ok((order, entries))
        })
    }

    /// Every order of one opportunity, oldest first.
    pub fn orders_of(&self, integration: &str, opportunity_id: &str) -> Result<Vec<Order>> {
        let read = orders_of_statement(integration, opportunity_id);
        self.read_db(|db| {
            db.query(&read.sql, &read.values)?
                .iter()
                .map(order_row)
                .collect()
        })
    }

    /// [`Store::orders_of`] and [`Store::unwritten_notes`] of one opportunity, read together
    /// (one round trip on PostgreSQL): what reconciling its ATS reads before it writes.
    pub fn orders_and_unwritten_notes(
        &self,
        integration: &str,
        opportunity_id: &str,
    ) -> Result<(Vec<Order>, Vec<PendingNote>)> {
        self.read_db(|db| {
            let reads = [
                orders_of_statement(integration, opportunity_id),
                unwritten_notes_statement(db.dialect(), integration, opportunity_id),
            ];
            orders_and_notes(db.query_all(&reads)?)
        })
    }

    /// Takes the lock of an opportunity's writes ([`LockName::Opportunity`]) and reads under it
    /// what [`Store::orders_and_unwritten_notes`] reads: one round trip on PostgreSQL when no
    /// other host holds the lock ([`Store::lock_with`]).
    ///
    /// `status` (what [`Store::record_status_with_state`] records) is committed first, whether
    /// or not another host holds the lock, and the reads see it: on PostgreSQL in the lock's
    /// round trip, on its connection (the status needs no lock: it moves its order forward
    /// only), so a status and the lock of its ATS write-back are one round trip, not two (and
    /// no hop to the group commit's thread); on SQLite through the group commit, before the
    /// lock. `recorded` runs once the status is committed, before anything can still fail: an
    /// error after it (the wait for a lock another host holds failed, its reads failed) leaves
    /// the status recorded, and the caller must neither record it again nor take it for
    /// unrecorded. An error without it means the status may not be recorded.
    pub async fn lock_opportunity(
        &self,
        integration: &str,
        opportunity_id: &str,
        status: Option<(StatusRecord, Vec<super::kv::KvWrite>)>,
        recorded: impl FnOnce() + Send,
    ) -> Result<(HeldLock, Vec<Order>, Vec<PendingNote>)> {
        let name = LockName::Opportunity {
            integration,
            opportunity: opportunity_id,
        };
        let reads = [
            orders_of_statement(integration, opportunity_id),
            unwritten_notes_statement(self.dialect(), integration, opportunity_id),
        ];
        let mut recorded = Some(recorded);
        let writes = match (status, self.dialect()) {
            (Some((rec, state)), Dialect::Postgres) => {
                // All sent together: a callback's status upserts its order, not advanced first.
                status_statements(&rec, true, state_statements(&rec.order, &state))
            }
            (Some((rec, state)), Dialect::Sqlite) => {
                self.record_status_with_state(rec, state).await?;
                if let Some(recorded) = recorded.take() {
                    recorded();
                }
                Vec::new()
            }
            (None, _) => Vec::new(),
        };
        let committed = || {
            if let (Some(recorded), false) = (recorded, writes.is_empty()) {
                recorded();
            }
        };
        let (held, answers) = self.lock_with(name, &writes, &reads, committed).await?;
        let (orders, notes) = orders_and_notes(answers)?;
        Ok((held, orders, notes))
    }

    /// Applies `update`'s status (state, label, report URL, score, verdict) to the stored order
    /// with the same reference, unless that would move it backwards. Returns whether it changed.
    /// Fields absent from the update keep their value.
    pub fn advance_order(&self, update: &Order) -> Result<bool> {
        self.db(|db| advance_order_on(db, update))
    }

    /// Records a note to write for an order (idempotent).
    pub fn add_note(
        &self,
        integration: &str,
        order_ref: &str,
        text: &str,
        secret: bool,
    ) -> Result<()> {
        self.db(|db| add_note_on(db, integration, order_ref, text, secret))
    }

    /// Notes of an opportunity's orders not yet confirmed written.
    pub fn unwritten_notes(
        &self,
        integration: &str,
        opportunity_id: &str,
    ) -> Result<Vec<PendingNote>> {
        self.read_db(|db| {
            let read = unwritten_notes_statement(db.dialect(), integration, opportunity_id);
            db.query(&read.sql, &read.values)?
                .iter()
                .map(note_row)
                .collect()
        })
    }

    /// Records that a write of a note is starting, before the ATS is called: a retry then knows
    /// to check whether the ATS kept it (exactly once, across a lost answer or a crash).
    pub fn note_attempted(&self, integration: &str, order_ref: &str, text: &str) -> Result<()> {
        self.db(|db| {
            db.execute(
                "UPDATE notes SET attempted_at = COALESCE(attempted_at, ?4)
                 WHERE integration = ?1 AND order_ref = ?2 AND text = ?3",
                args![integration, order_ref, text, now_ms()],
            )
        })?;
        Ok(())
    }

    /// Marks a note written.
    pub fn note_written(&self, integration: &str, order_ref: &str, text: &str) -> Result<()> {
        self.db(|db| {
            db.execute(
                "UPDATE notes SET written_at = ?4
                 WHERE integration = ?1 AND order_ref = ?2 AND text = ?3",
                args![integration, order_ref, text, now_ms()],
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{on_both, on_both_async};

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
            idempotency_key: None,
        }
    }

    #[test]
    fn orders_never_move_backwards() {
        on_both(|s| {
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
        });
    }

    #[tokio::test]
    async fn a_status_records_order_verdict_and_note_and_a_replay_changes_nothing() {
        on_both_async!(|s: Store| async move {
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
            // Read together, the same answers.
            let (orders, together) = s.orders_and_unwritten_notes("i", "opp").unwrap();
            assert_eq!(orders, s.orders_of("i", "opp").unwrap());
            assert_eq!(together, notes);
            // And with the opportunity's lock.
            let (held, locked, under) = s.lock_opportunity("i", "opp", None, || ()).await.unwrap();
            assert_eq!((locked, under), (orders, notes));
            held.still_held().await.unwrap();
        });
    }

    /// A status handed to the opportunity's lock is recorded before the reads under it, which
    /// see it: a callback's (moving a known order forward), a started screening's with its
    /// `state` writes.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_status_recorded_with_the_opportunitys_lock_is_read_under_it() {
        use crate::store::kv::KvWrite;
        on_both_async!(|s: Store| async move {
            s.kv_set_for_screening("i", "certn", "k1", "intent:k1", "1")
                .unwrap();
            let cursor = vec![KvWrite::Set {
                key: "cursor".into(),
                value: "7".into(),
            }];
            let first = Some((started("o1", "k1"), cursor));
            let (held, orders, notes) = s.lock_opportunity("i", "opp", first, || ()).await.unwrap();
            assert_eq!(orders.len(), 1);
            assert!(notes.is_empty());
            drop(held);
            let kv = |k: &str| s.kv_get("i", "certn", k).unwrap();
            assert_eq!(
                (kv("intent:k1"), kv("cursor").as_deref()),
                (None, Some("7"))
            );
            let complete = Order {
                state: "complete".into(),
                label: "Done".into(),
                ..pending()
            };
            let update = status(complete, Some("Up"), 5, Some("report ready"));
            let (_held, orders, notes) = s
                .lock_opportunity("i", "opp", Some((update, Vec::new())), || ())
                .await
                .unwrap();
            let o = &orders[0];
            assert_eq!(
                (o.state.as_str(), o.verdict.as_deref(), notes.len()),
                ("complete", Some("Up"), 1)
            );
            assert!(s.order_for_key("i", "k1").unwrap().is_some(), "key kept");
        });
    }

    /// On PostgreSQL a status and the lock of its ATS write-back (with the lock's reads) are one
    /// round trip on the lock's connection, not a write of the group commit and then the lock.
    #[tokio::test(flavor = "multi_thread")]
    async fn on_postgres_a_status_and_the_opportunitys_lock_are_one_round_trip() {
        let s = crate::store::testing::postgres();
        // The connection's statements prepared first, by a status of the same shape.
        let o0 = Order {
            order_ref: "o0".into(),
            ..pending()
        };
        let first = Some((status(o0, Some("Down"), 1, Some("hi")), Vec::new()));
        drop(s.lock_opportunity("i", "opp", first, || ()).await.unwrap());
        let trips = s.writer_stats().round_trips;
        let update = status(pending(), Some("Up"), 2, Some("hello"));
        let (held, orders, notes) = s
            .lock_opportunity("i", "opp", Some((update, Vec::new())), || ())
            .await
            .unwrap();
        assert_eq!(s.writer_stats().round_trips - trips, 1);
        assert_eq!((orders.len(), notes.len()), (2, 2));
        held.still_held().await.unwrap();
    }

    /// On PostgreSQL, with the lock held by another host, the status is committed all the same
    /// (it needs no lock) and the reads made once the lock is taken see it; a status that fails
    /// leaves nothing written and the lock free.
    #[tokio::test(flavor = "multi_thread")]
    async fn on_postgres_a_status_with_the_lock_is_recorded_when_another_host_holds_it() {
        let url = crate::store::testing::postgres_url();
        let [a, b] = [(); 2].map(|_| Store::open_postgres(&url, None).unwrap());
        let (held, _, _) = b.lock_opportunity("i", "opp", None, || ()).await.unwrap();
        let waiter = tokio::spawn({
            let a = a.clone();
            async move {
                let rec = Some((started("o1", "k1"), Vec::new()));
                let (_held, orders, _) = a.lock_opportunity("i", "opp", rec, || ()).await?;
                Ok::<_, StoreError>(orders.len())
            }
        });
        for _ in 0..1_000 {
            if a.order("i", "o1").unwrap().is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            a.order("i", "o1").unwrap().is_some(),
            "committed while waiting"
        );
        assert!(!waiter.is_finished(), "a waits for b's lock");
        drop(held);
        assert_eq!(waiter.await.unwrap().unwrap(), 1);

        refuse_notes_on_postgres(&a);
        let failing = status(
            Order {
                order_ref: "o2".into(),
                ..pending()
            },
            None,
            3,
            Some("hello"),
        );
        let failed = a.lock_opportunity("i", "opp", Some((failing, Vec::new())), || ());
        assert!(failed.await.is_err());
        assert_eq!(a.order("i", "o2").unwrap(), None, "nothing half-recorded");
        let free = b.lock_opportunity("i", "opp", None, || ());
        let taken = tokio::time::timeout(std::time::Duration::from_secs(10), free).await;
        assert!(taken.is_ok_and(|r| r.is_ok()), "the lock is free");
    }

    /// Makes every insert of a note fail on `store`'s PostgreSQL database ("disk says no"),
    /// until trigger `no_notes` is dropped.
    fn refuse_notes_on_postgres(store: &Store) {
        store
            .db(|db| {
                db.execute(
                    "CREATE FUNCTION no_notes() RETURNS trigger LANGUAGE plpgsql AS
                         $$ BEGIN RAISE EXCEPTION 'disk says no'; END; $$",
                    &[],
                )?;
                db.execute(
                    "CREATE TRIGGER no_notes BEFORE INSERT ON notes
                         FOR EACH ROW EXECUTE FUNCTION no_notes()",
                    &[],
                )
            })
            .unwrap();
    }

    /// On PostgreSQL a started order's statements go out together: one that fails (the note's
    /// insert) leaves nothing of the status written, its `state` writes included.
    #[tokio::test]
    async fn on_postgres_a_status_sent_together_that_fails_part_way_leaves_nothing_written() {
        use crate::store::kv::KvWrite;
        let s = crate::store::testing::postgres();
        refuse_notes_on_postgres(&s);
        let rec = StatusRecord {
            note: Some(NewNote {
                text: "hello".into(),
                secret: false,
            }),
            ..started("o1", "k1")
        };
        let cursor = || {
            vec![KvWrite::Set {
                key: "cursor".into(),
                value: "7".into(),
            }]
        };
        let failed = s.record_status_with_state(rec.clone(), cursor()).await;
        assert!(
            failed
                .as_ref()
                .is_err_and(|e| e.to_string().contains("disk says no")),
            "{failed:?}"
        );
        assert_eq!(s.order("i", "o1").unwrap(), None, "no order half-recorded");
        assert_eq!(s.kv_get("i", "certn", "cursor").unwrap(), None);
        s.db(|db| db.execute("DROP TRIGGER no_notes ON notes", &[]))
            .unwrap();
        s.record_status_with_state(rec, cursor()).await.unwrap();
        assert!(s.order_for_key("i", "k1").unwrap().is_some());
        assert_eq!(
            s.kv_get("i", "certn", "cursor").unwrap().as_deref(),
            Some("7")
        );
        assert_eq!(s.unwritten_notes("i", "opp").unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_status_that_fails_part_way_leaves_nothing_written() {
        let s = crate::store::testing::sqlite();
        // The note's insert fails after the order's insert and the verdict succeeded.
        s.conn()
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER no_notes BEFORE INSERT ON notes
                 BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
            )
            .unwrap();
        let rec = status(pending(), Some("Up"), 1, Some("hello"));
        assert!(s.record_status(rec.clone()).await.is_err());
        assert_eq!(s.order("i", "o1").unwrap(), None, "no order half-recorded");
        s.conn()
            .unwrap()
            .execute_batch("DROP TRIGGER no_notes")
            .unwrap();
        // The retry records all of it.
        s.record_status(rec).await.unwrap();
        let o = s.order("i", "o1").unwrap().unwrap();
        assert_eq!(o.verdict.as_deref(), Some("Up"));
        assert_eq!(s.unwritten_notes("i", "opp").unwrap().len(), 1);
    }

    /// A status whose advance finds no order because another transaction is inserting it
    /// (PostgreSQL: two runs racing on one start) still moves the order forward when its own
    /// insert then meets that row: it is not dropped for the other's older state.
    #[test]
    fn on_postgres_a_status_racing_the_insert_of_its_order_still_moves_it_forward() {
        let store = crate::store::testing::postgres();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (inserted, holding) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn({
            let store = store.clone();
            move || {
                store.transaction(|db| {
                    insert_order_on(db, &pending(), None, OnConflict::KeepIt)?;
                    let _ = inserted.send(());
                    let _ = held.recv();
                    Ok(())
                })
            }
        });
        holding.recv().unwrap();
        let complete = status(
            Order {
                state: "complete".into(),
                label: "C".into(),
                report_url: Some("https://r".into()),
                ..pending()
            },
            None,
            2,
            None,
        );
        let racer = std::thread::spawn({
            let store = store.clone();
            move || store.transaction(|db| record_status_on(db, &complete, Vec::new()))
        });
        // The racer's advance found nothing; its insert waits on the holder's key.
        crate::store::testing::wait_for_lock_waiters(&store, 1);
        release.send(()).unwrap();
        holder.join().unwrap().unwrap();
        racer.join().unwrap().unwrap();
        let o = store.order("i", "o1").unwrap().expect("recorded");
        assert_eq!(
            (o.state.as_str(), o.label.as_str(), o.report_url.as_deref()),
            ("complete", "C", Some("https://r"))
        );
    }

    fn started(order_ref: &str, key: &str) -> StatusRecord {
        StatusRecord {
            idempotency_key: Some(key.into()),
            ..status(
                Order {
                    order_ref: order_ref.into(),
                    ..pending()
                },
                None,
                1,
                None,
            )
        }
    }

    #[tokio::test]
    async fn recording_a_started_order_drops_that_screenings_state_and_only_it() {
        on_both_async!(|s: Store| async move {
            s.kv_set_for_screening("i", "certn", "lever:t1", "intent:lever:t1", "17")
                .unwrap();
            s.kv_set_for_screening("i", "certn", "lever:t1", "order:lever:t1", "o1")
                .unwrap();
            s.kv_set_for_screening("i", "certn", "lever:t2", "intent:lever:t2", "18")
                .unwrap();
            s.kv_set_for_screening("other", "certn", "lever:t1", "intent:lever:t1", "1")
                .unwrap();
            s.kv_set("i", "certn", "cursor", "7").unwrap();
            let before = s.kv_usage("i", "certn", "none").unwrap();

            s.record_status(started("o1", "lever:t1")).await.unwrap();

            let kv = |i: &str, k: &str| s.kv_get(i, "certn", k).unwrap();
            assert_eq!(kv("i", "intent:lever:t1"), None);
            assert_eq!(kv("i", "order:lever:t1"), None);
            assert_eq!(
                kv("i", "intent:lever:t2").as_deref(),
                Some("18"),
                "another screening"
            );
            assert_eq!(kv("i", "cursor").as_deref(), Some("7"), "a plain entry");
            assert_eq!(
                kv("other", "intent:lever:t1").as_deref(),
                Some("1"),
                "another integration"
            );
            let dropped = (15 + 2 + 8) + (14 + 2 + 8);
            assert_eq!(s.kv_usage("i", "certn", "none").unwrap(), before - dropped);
            assert_eq!(
                s.order_for_key("i", "lever:t1")
                    .unwrap()
                    .map(|o| o.order_ref),
                Some("o1".into())
            );
            assert_eq!(s.order_for_key("other", "lever:t1").unwrap(), None);
            // After the record, a screening entry for that key is not kept: nothing would drop it.
            assert!(!s
                .kv_set_for_screening("i", "certn", "lever:t1", "late", "x")
                .unwrap());
            assert_eq!(kv("i", "late"), None);
        });
    }

    /// A started order recorded with the `state` writes its call made after its last request:
    /// the screening's own entries go (the one written now is not even kept), the rest stay,
    /// and the totals count what stays.
    #[tokio::test]
    async fn a_started_order_with_its_calls_state_writes_keeps_what_outlives_the_screening() {
        use crate::store::kv::KvWrite;
        on_both_async!(|s: Store| async move {
            s.kv_set_for_screening("i", "certn", "k1", "intent:k1", "1")
                .unwrap();
            let writes = vec![
                KvWrite::SetForScreening {
                    screening: "k1".into(),
                    key: "order:k1".into(),
                    value: "o1".into(),
                },
                KvWrite::Delete {
                    key: "intent:k1".into(),
                },
                KvWrite::Set {
                    key: "cursor".into(),
                    value: "7".into(),
                },
                KvWrite::SetForScreening {
                    screening: "k2".into(),
                    key: "intent:k2".into(),
                    value: "2".into(),
                },
            ];
            s.record_status_with_state(started("o1", "k1"), writes)
                .await
                .unwrap();
            let kv = |k: &str| s.kv_get("i", "certn", k).unwrap();
            assert_eq!(kv("order:k1"), None);
            assert_eq!(kv("intent:k1"), None);
            assert_eq!(kv("cursor").as_deref(), Some("7"));
            assert_eq!(kv("intent:k2").as_deref(), Some("2"));
            assert_eq!(s.kv_usage("i", "certn", "none").unwrap(), 7 + (9 + 1 + 2));
            assert_eq!(
                s.order_for_key("i", "k1").unwrap().map(|o| o.order_ref),
                Some("o1".into())
            );
        });
    }

    #[tokio::test]
    async fn an_order_named_twice_keeps_its_first_key_and_the_second_screenings_state() {
        on_both_async!(|s: Store| async move {
            s.record_status(started("o1", "k1")).await.unwrap();
            // The vendor named the same order for another request: recorded, not an error; the key
            // stays unrecorded, so its entries stay (the connector still knows what it did).
            s.kv_set_for_screening("i", "certn", "k2", "order:k2", "o1")
                .unwrap();
            s.record_status(started("o1", "k2")).await.unwrap();
            assert_eq!(s.order_for_key("i", "k2").unwrap(), None);
            assert_eq!(
                s.kv_get("i", "certn", "order:k2").unwrap().as_deref(),
                Some("o1")
            );
            // A new order for a key another order holds: recorded without it.
            s.record_status(started("o2", "k1")).await.unwrap();
            assert!(s.order("i", "o2").unwrap().is_some());
            assert_eq!(
                s.order_for_key("i", "k1").unwrap().map(|o| o.order_ref),
                Some("o1".into())
            );
        });
    }

    #[tokio::test]
    async fn a_known_order_without_a_key_gets_the_key_of_its_started_screening() {
        on_both_async!(|s: Store| async move {
            // Recorded first without a key, then by the start that names it, at the same state
            // (the status advances in place): the key goes on all the same.
            s.record_status(status(pending(), None, 1, None))
                .await
                .unwrap();
            s.kv_set_for_screening("i", "certn", "k1", "intent:k1", "1")
                .unwrap();
            s.record_status(started("o1", "k1")).await.unwrap();
            let o = s.order_for_key("i", "k1").unwrap().expect("keyed");
            assert_eq!((o.order_ref.as_str(), o.state.as_str()), ("o1", "pending"));
            assert_eq!(s.kv_get("i", "certn", "intent:k1").unwrap(), None);
        });
    }

    #[tokio::test]
    async fn a_database_from_before_the_key_column_gets_it_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE orders (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    integration TEXT NOT NULL, order_ref TEXT NOT NULL, connector TEXT NOT NULL,
                    opportunity_id TEXT NOT NULL, state TEXT NOT NULL, label TEXT NOT NULL,
                    report_url TEXT, score REAL, verdict TEXT, updated_at INTEGER NOT NULL,
                    UNIQUE (integration, order_ref));
                 INSERT INTO orders (integration, order_ref, connector, opportunity_id, state,
                    label, updated_at) VALUES ('i', 'o1', 'certn', 'opp', 'pending', 'P', 0);",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert!(s.order("i", "o1").unwrap().is_some());
        assert_eq!(s.order_for_key("i", "k1").unwrap(), None);
        // A retry that records the old order's first status again gives it its key.
        s.record_status(started("o1", "k1")).await.unwrap();
        assert_eq!(
            s.order_for_key("i", "k1").unwrap().map(|o| o.order_ref),
            Some("o1".into())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
