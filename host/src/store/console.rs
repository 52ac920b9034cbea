//! The console's tables (`http::console`): sessions with their CSRF token, failed sign-ins per
//! client address, and the audit log of operator actions. In the store, not in memory, so that
//! several hosts behind a load balancer share them once they share a database.
//!
//! Portable SQL only (`?N` parameters, `ON CONFLICT … DO UPDATE`, `CASE`): the PostgreSQL backend
//! runs the same statements; only the `SCHEMA`'s key types differ there.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::Cached;
use crate::store::{Result, Store};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS console_sessions (
    id_hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    client TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_expiry ON console_sessions (expires_at);
CREATE TABLE IF NOT EXISTS console_sign_ins (
    client TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    failures INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS console_audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    before_value TEXT,
    after_value TEXT
);
"#;

/// Who a console session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Not signed in yet: the session only carries the sign-in form's CSRF token.
    Anonymous,
    /// Reads everything, changes nothing.
    Viewer,
    /// Reads and acts.
    Operator,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Anonymous => "anonymous",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    fn parse(s: &str) -> Role {
        match s {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            _ => Role::Anonymous,
        }
    }
}

/// A live console session. The cookie carries a random id; the store keeps only its SHA-256.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: String,
    pub role: Role,
    /// The token every form of this session must carry.
    pub csrf: String,
    /// The client address that signed in.
    pub client: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// One line of the audit log, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    #[serde(flatten)]
    pub line: NewAudit,
}

/// A line to add to the audit log (its id and time are given by the store).
#[derive(Debug, Clone, Serialize)]
pub struct NewAudit {
    /// `operator` or `viewer`, with the session's client address and short id.
    pub actor: String,
    /// What was asked, e.g. `event.retry`, `connector.activate`.
    pub action: String,
    /// What it was asked of, e.g. `event 42`, `certn`.
    pub target: String,
    /// `ok`, or `refused: <why>` (a viewer, a rejected upload).
    pub outcome: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Store {
    /// Stores a new session, and drops the expired ones (so anonymous sessions of sign-in pages
    /// opened and left cannot pile up).
    pub fn console_session_create(&self, s: &Session) -> Result<()> {
        let conn = self.conn();
        conn.exec(
            "DELETE FROM console_sessions WHERE expires_at < ?1",
            params![s.created_at_ms],
        )?;
        conn.exec(
            "INSERT INTO console_sessions (id_hash, role, csrf, client, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                s.id_hash,
                s.role.as_str(),
                s.csrf,
                s.client,
                s.created_at_ms,
                s.expires_at_ms
            ],
        )?;
        Ok(())
    }

    /// The session with this id hash, unless it expired by `now_ms`.
    pub fn console_session(&self, id_hash: &str, now_ms: i64) -> Result<Option<Session>> {
        let session = self
            .conn()
            .row(
                "SELECT id_hash, role, csrf, client, created_at, expires_at
                 FROM console_sessions WHERE id_hash = ?1 AND expires_at >= ?2",
                params![id_hash, now_ms],
                |r| {
                    Ok(Session {
                        id_hash: r.get(0)?,
                        role: Role::parse(&r.get::<_, String>(1)?),
                        csrf: r.get(2)?,
                        client: r.get(3)?,
                        created_at_ms: r.get(4)?,
                        expires_at_ms: r.get(5)?,
                    })
                },
            )
            .optional()?;
        Ok(session)
    }

    /// Ends a session (sign-out, or the anonymous session replaced at sign-in).
    pub fn console_session_delete(&self, id_hash: &str) -> Result<()> {
        self.conn().exec(
            "DELETE FROM console_sessions WHERE id_hash = ?1",
            params![id_hash],
        )?;
        Ok(())
    }

    /// Failed sign-ins of `client` in the window that started after `window_from_ms`.
    pub fn console_sign_in_failures(&self, client: &str, window_from_ms: i64) -> Result<u32> {
        let n = self
            .conn()
            .row(
                "SELECT failures FROM console_sign_ins WHERE client = ?1 AND window_start >= ?2",
                params![client, window_from_ms],
                |r| r.get(0),
            )
            .optional()?;
        Ok(n.unwrap_or(0))
    }

    /// Counts a failed sign-in of `client` at `now_ms`: a window older than `window_from_ms`
    /// starts over. Returns the failures in the current window.
    pub fn console_sign_in_failed(
        &self,
        client: &str,
        now_ms: i64,
        window_from_ms: i64,
    ) -> Result<u32> {
        let conn = self.conn();
        conn.exec(
            "INSERT INTO console_sign_ins (client, window_start, failures) VALUES (?1, ?2, 1)
             ON CONFLICT (client) DO UPDATE SET
               failures = CASE WHEN console_sign_ins.window_start < ?3 THEN 1
                               ELSE console_sign_ins.failures + 1 END,
               window_start = CASE WHEN console_sign_ins.window_start < ?3 THEN ?2
                                   ELSE console_sign_ins.window_start END",
            params![client, now_ms, window_from_ms],
        )?;
        let n = conn.row(
            "SELECT failures FROM console_sign_ins WHERE client = ?1",
            params![client],
            |r| r.get(0),
        )?;
        Ok(n)
    }

    /// Forgets `client`'s failed sign-ins (it signed in).
    pub fn console_sign_in_cleared(&self, client: &str) -> Result<()> {
        self.conn().exec(
            "DELETE FROM console_sign_ins WHERE client = ?1",
            params![client],
        )?;
        Ok(())
    }

    /// Appends a line to the audit log; returns its id.
    pub fn audit_record(&self, entry: &NewAudit, at_ms: i64) -> Result<i64> {
        let id = self.conn().row(
            "INSERT INTO console_audit (at, actor, action, target, outcome, before_value, after_value)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
            params![
                at_ms,
                entry.actor,
                entry.action,
                entry.target,
                entry.outcome,
                entry.before,
                entry.after
            ],
            |r| r.get(0),
        )?;
        Ok(id)
    }

    /// The audit log, newest first: at most `limit` lines with an id below `before` (paging).
    pub fn audit_list(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at, actor, action, target, outcome, before_value, after_value
             FROM console_audit WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![before, limit], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                line: NewAudit {
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    outcome: r.get(5)?,
                    before: r.get(6)?,
                    after: r.get(7)?,
                },
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let dir = std::env::temp_dir().join(format!("sy-console-{}", uuid::Uuid::new_v4()));
        Store::open(&dir.join("db.sqlite")).expect("open")
    }

    fn session(id: &str, created: i64, expires: i64) -> Session {
        Session {
            id_hash: id.into(),
            role: Role::Operator,
            csrf: "c".into(),
            client: "127.0.0.1".into(),
            created_at_ms: created,
            expires_at_ms: expires,
        }
    }

    #[test]
    fn an_expired_session_is_gone_and_pruned_by_the_next_one() {
        let store = store();
        store.console_session_create(&session("a", 0, 100)).unwrap();
        assert!(store.console_session("a", 50).unwrap().is_some());
        assert!(store.console_session("a", 101).unwrap().is_none());
        store
            .console_session_create(&session("b", 200, 300))
            .unwrap();
        let left: i64 = store
            .conn()
            .row("SELECT COUNT(*) FROM console_sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1, "the expired session was pruned");
    }

    #[test]
    fn failed_sign_ins_count_in_a_window_that_starts_over() {
        let store = store();
        assert_eq!(store.console_sign_in_failed("x", 1_000, 0).unwrap(), 1);
        assert_eq!(store.console_sign_in_failed("x", 2_000, 0).unwrap(), 2);
        assert_eq!(store.console_sign_in_failures("x", 0).unwrap(), 2);
        assert_eq!(store.console_sign_in_failures("y", 0).unwrap(), 0);
        // The window began at 1 000; one that must begin after 5 000 starts over.
        assert_eq!(store.console_sign_in_failed("x", 9_000, 5_000).unwrap(), 1);
        store.console_sign_in_cleared("x").unwrap();
        assert_eq!(store.console_sign_in_failures("x", 0).unwrap(), 0);
    }

    #[test]
    fn the_audit_log_pages_newest_first() {
        let store = store();
        for i in 0..3 {
            let entry = NewAudit {
                actor: "operator".into(),
                action: "event.retry".into(),
                target: format!("event {i}"),
                outcome: "ok".into(),
                before: Some("dead".into()),
                after: Some("queued".into()),
            };
            store.audit_record(&entry, i).unwrap();
        }
        let page = store.audit_list(None, 2).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(page[0].line.target, "event 2");
        let next = store.audit_list(Some(page[1].id), 2).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].line.target, "event 0");
    }
}
