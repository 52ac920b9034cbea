//! Durable state in embedded SQLite (WAL): the event queue, vendor orders, notes to write, and the
//! connectors' key-value state.
//!
//! Invariants:
//! - an event row is committed before the webhook that carried it is acknowledged;
//! - `(integration, dedupe_key)` is unique, so a redelivered webhook or callback never queues twice;
//! - an order's state only moves forward (see [`rank`]), so a late or replayed callback cannot undo
//!   a newer status;
//! - a note is recorded once per `(integration, order, text)` and marked written after the ATS
//!   confirmed it.
//!
//! One connection behind a mutex: SQLite serializes writers anyway, and every statement here is
//! short. Calls block briefly; they are made from async code on purpose (sub-millisecond in WAL).
//!
//! Modules: this one (schema, intake, orders, notes, kv), [`queue`] (claims, outcomes, attempt
//! history), [`runs`] (process runs, lease renewal, taking back a dead run's events), [`admin`]
//! (operator tables).
//!
//! **Backend seam.** All SQL of the host lives in `store/` and nothing outside sees a connection
//! except the few `pub(crate)` helpers Gem's tables use; callers see only `Store`'s methods and
//! plain types. A PostgreSQL backend implements the same methods: the queue's claim becomes
//! `SELECT … FOR UPDATE SKIP LOCKED` + `UPDATE` (see [`queue`]), runs and leases are already
//! designed for several hosts on one database (see [`runs`]), and multi-statement steps are
//! already single transactions.

pub mod admin;
pub mod queue;
pub mod runs;

pub use queue::{Attempt, Claim, EventDetail, Finish};
pub use runs::{Resumed, RunInfo};
pub mod oauth;
pub mod verdicts;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the database directory: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

/// Lifecycle of an event. Transitions: queued → running → (done | skipped | queued again with a
/// later `next_attempt_at` | dead). A running event whose lease expired (its worker crashed) is
/// claimable again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    Queued,
    Running,
    Done,
    Skipped,
    Dead,
}

impl EventState {
    fn as_str(self) -> &'static str {
        match self {
            EventState::Queued => "queued",
            EventState::Running => "running",
            EventState::Done => "done",
            EventState::Skipped => "skipped",
            EventState::Dead => "dead",
        }
    }
    fn parse(s: &str) -> EventState {
        match s {
            "running" => EventState::Running,
            "done" => EventState::Done,
            "skipped" => EventState::Skipped,
            "dead" => EventState::Dead,
            _ => EventState::Queued,
        }
    }
}

/// A stored event, as claimed by a worker or listed for operators.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: i64,
    pub integration: String,
    pub kind: String,
    pub payload: String,
    pub state: EventState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub connector_version: Option<String>,
}

/// Result of offering a new event to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored under this id.
    New(i64),
    /// The same dedupe key was stored before; `same_payload` tells a redelivery from a replay.
    Duplicate { id: i64, same_payload: bool },
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

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    integration TEXT NOT NULL,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    last_error TEXT,
    connector_version TEXT,
    received_at INTEGER NOT NULL,
    finished_at INTEGER,
    UNIQUE (integration, dedupe_key)
);
CREATE INDEX IF NOT EXISTS events_due ON events (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    integration TEXT NOT NULL,
    order_ref TEXT NOT NULL,
    connector TEXT NOT NULL,
    opportunity_id TEXT NOT NULL,
    state TEXT NOT NULL,
    label TEXT NOT NULL,
    report_url TEXT,
    score REAL,
    verdict TEXT,
    updated_at INTEGER NOT NULL,
    UNIQUE (integration, order_ref)
);
CREATE INDEX IF NOT EXISTS orders_by_opportunity ON orders (integration, opportunity_id);
CREATE TABLE IF NOT EXISTS notes (
    integration TEXT NOT NULL,
    order_ref TEXT NOT NULL,
    text TEXT NOT NULL,
    secret INTEGER NOT NULL,
    written_at INTEGER,
    PRIMARY KEY (integration, order_ref, text)
);
-- API keys Gem uses to call switchyard (gem::keys): only the SHA-256 of a key is stored.
CREATE TABLE IF NOT EXISTS api_keys (
    integration TEXT NOT NULL,
    key_id TEXT NOT NULL PRIMARY KEY,
    hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
-- A screening Gem asked for (gem::screening): its id, the event that starts it, and, once the
-- connector placed it, the vendor order.
CREATE TABLE IF NOT EXISTS gem_screenings (
    integration TEXT NOT NULL,
    id TEXT NOT NULL,
    application_id TEXT NOT NULL,
    package TEXT,
    event_id INTEGER NOT NULL,
    order_ref TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (integration, id)
);
CREATE INDEX IF NOT EXISTS gem_screenings_by_order ON gem_screenings (integration, order_ref);
CREATE TABLE IF NOT EXISTS kv (
    integration TEXT NOT NULL,
    connector TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (integration, connector, key)
);
"#;

impl Store {
    /// Opens (creating if needed) the database at `path` in WAL mode.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        // WAL + synchronous=FULL: a committed event survives a crash or power loss.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::store::admin::SCHEMA)?;
        queue::migrate(&conn)?;
        conn.execute_batch(runs::SCHEMA)?;
        conn.execute_batch(crate::store::oauth::SCHEMA)?;
        verdicts::migrate(&conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The connection, for modules that own their tables (`gem::keys`, `gem::screening`).
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (statements are atomic).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an event unless its dedupe key was seen before. Committed when this returns.
    pub fn enqueue(
        &self,
        integration: &str,
        kind: &str,
        dedupe_key: &str,
        payload: &str,
    ) -> Result<Enqueued> {
        enqueue_on(&self.conn(), integration, kind, dedupe_key, payload)
    }

    /// Queues several events of one kind in one transaction: all or none are committed (a
    /// vendor callback's status updates).
    pub fn enqueue_all(
        &self,
        integration: &str,
        kind: &str,
        events: &[(String, String)],
    ) -> Result<Vec<Enqueued>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut done = Vec::with_capacity(events.len());
        for (dedupe_key, payload) in events {
            done.push(enqueue_on(&tx, integration, kind, dedupe_key, payload)?);
        }
        tx.commit()?;
        Ok(done)
    }

    /// Records a request that failed before it could be queued (e.g. a connector trapped while
    /// handling a vendor callback, which the vendor will retry): a dead event, for operators.
    pub fn record_failure(
        &self,
        integration: &str,
        kind: &str,
        payload: &str,
        error: &str,
        connector_version: &str,
    ) -> Result<i64> {
        let conn = self.conn();
        let now = now_ms();
        conn.execute(
            "INSERT INTO events (integration, kind, dedupe_key, payload_hash, payload, state,
                attempts, next_attempt_at, received_at, finished_at, last_error, connector_version)
             VALUES (?1, ?2, ?3, '', ?4, 'dead', 1, ?5, ?5, ?5, ?6, ?7)",
            params![
                integration,
                kind,
                format!("failure:{}", uuid::Uuid::new_v4()),
                payload,
                now,
                error,
                connector_version
            ],
        )?;
        let id = conn.last_insert_rowid();
        queue::record_attempt(
            &conn,
            id,
            None,
            now,
            0,
            queue::AttemptOutcome::Dead,
            Some(error),
            Some(connector_version),
        )?;
        Ok(id)
    }

    /// Records a new order, or returns the existing one (a retried start-screening).
    pub fn upsert_order(&self, order: &Order) -> Result<Order> {
        let conn = self.conn();
        conn.execute(
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
        drop(conn);
        self.order(&order.integration, &order.order_ref)
            .map(|o| o.unwrap_or_else(|| order.clone()))
    }

    /// An order by reference.
    pub fn order(&self, integration: &str, order_ref: &str) -> Result<Option<Order>> {
        self.conn()
            .query_row(
                "SELECT integration, order_ref, connector, opportunity_id, seq, state, label,
                        report_url, score, verdict
                 FROM orders WHERE integration = ?1 AND order_ref = ?2",
                params![integration, order_ref],
                Self::order_row,
            )
            .optional()
            .map_err(Into::into)
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

    /// Every order of one opportunity, oldest first.
    pub fn orders_of(&self, integration: &str, opportunity_id: &str) -> Result<Vec<Order>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT integration, order_ref, connector, opportunity_id, seq, state, label,
                    report_url, score, verdict
             FROM orders WHERE integration = ?1 AND opportunity_id = ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![integration, opportunity_id], Self::order_row)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Into::into)
    }

    /// Applies `update`'s status (state, label, report URL, score, verdict) to the stored order
    /// with the same reference, unless that would move it backwards. Returns whether it changed.
    /// Fields absent from the update keep their value.
    pub fn advance_order(&self, update: &Order) -> Result<bool> {
        let conn = self.conn();
        let current: Option<String> = conn
            .query_row(
                "SELECT state FROM orders WHERE integration = ?1 AND order_ref = ?2",
                params![update.integration, update.order_ref],
                |r| r.get(0),
            )
            .optional()?;
        match current {
            Some(cur) if rank(&update.state) >= rank(&cur) => {
                let n = conn.execute(
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

    /// Records a note to write for an order (idempotent).
    pub fn add_note(
        &self,
        integration: &str,
        order_ref: &str,
        text: &str,
        secret: bool,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO notes (integration, order_ref, text, secret) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            params![integration, order_ref, text, secret],
        )?;
        Ok(())
    }

    /// Notes of an opportunity's orders not yet confirmed written.
    pub fn unwritten_notes(
        &self,
        integration: &str,
        opportunity_id: &str,
    ) -> Result<Vec<PendingNote>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
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
        self.conn().execute(
            "UPDATE notes SET written_at = ?4 WHERE integration = ?1 AND order_ref = ?2 AND text = ?3",
            params![integration, order_ref, text, now_ms()],
        )?;
        Ok(())
    }

    /// A connector's state value.
    pub fn kv_get(&self, integration: &str, connector: &str, key: &str) -> Result<Option<String>> {
        self.conn()
            .query_row(
                "SELECT value FROM kv WHERE integration = ?1 AND connector = ?2 AND key = ?3",
                params![integration, connector, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(Into::into)
    }

    /// Sets a connector's state value.
    pub fn kv_set(&self, integration: &str, connector: &str, key: &str, value: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO kv (integration, connector, key, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (integration, connector, key) DO UPDATE SET value = excluded.value",
            params![integration, connector, key, value],
        )?;
        Ok(())
    }

    /// Bytes (keys + values) a connector keeps for an integration, not counting `except_key`.
    pub fn kv_usage(&self, integration: &str, connector: &str, except_key: &str) -> Result<u64> {
        let used: i64 = self.conn().query_row(
            "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB))), 0)
             FROM kv WHERE integration = ?1 AND connector = ?2 AND key <> ?3",
            params![integration, connector, except_key],
            |r| r.get(0),
        )?;
        Ok(used.max(0) as u64)
    }

    /// Deletes a connector's state value.
    pub fn kv_delete(&self, integration: &str, connector: &str, key: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM kv WHERE integration = ?1 AND connector = ?2 AND key = ?3",
            params![integration, connector, key],
        )?;
        Ok(())
    }
}

/// [`Store::enqueue`] on a connection (or transaction) the caller holds, so that an event can be
/// committed together with rows that describe it.
pub(crate) fn enqueue_on(
    conn: &Connection,
    integration: &str,
    kind: &str,
    dedupe_key: &str,
    payload: &str,
) -> Result<Enqueued> {
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(payload.as_bytes()));
    let now = now_ms();

    let inserted = conn.execute(
        "INSERT INTO events (integration, kind, dedupe_key, payload_hash, payload, state,
                next_attempt_at, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6)
             ON CONFLICT (integration, dedupe_key) DO NOTHING",
        params![integration, kind, dedupe_key, hash, payload, now],
    )?;
    if inserted == 1 {
        return Ok(Enqueued::New(conn.last_insert_rowid()));
    }
    let (id, old_hash): (i64, String) = conn.query_row(
        "SELECT id, payload_hash FROM events WHERE integration = ?1 AND dedupe_key = ?2",
        params![integration, dedupe_key],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(Enqueued::Duplicate {
        id,
        same_payload: old_hash == hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("sy-store-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("t.db")).expect("open");
        (store, dir)
    }

    #[test]
    fn duplicate_keys_are_not_queued_twice_and_replays_are_told_apart() {
        let (s, _dir) = temp_store();
        assert!(matches!(
            s.enqueue("i", "k", "tok", "{}").unwrap(),
            Enqueued::New(_)
        ));
        assert!(matches!(
            s.enqueue("i", "k", "tok", "{}").unwrap(),
            Enqueued::Duplicate {
                same_payload: true,
                ..
            }
        ));
        assert!(matches!(
            s.enqueue("i", "k", "tok", "{\"x\":1}").unwrap(),
            Enqueued::Duplicate {
                same_payload: false,
                ..
            }
        ));
        assert_eq!(s.queue_depth().unwrap(), 1);
    }

    #[test]
    fn orders_never_move_backwards() {
        let (s, _dir) = temp_store();
        let order = Order {
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
        };
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
}
