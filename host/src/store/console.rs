//! The console's tables (`http::console`): sessions with their CSRF token, failed sign-ins per
//! client address, and the audit log of operator actions. In the store, not in memory, so that
//! several hosts behind a load balancer share them once they share a database.
//!
//! Written once over [`super::sql::Db`], on SQLite and PostgreSQL alike: `?N` parameters,
//! `ON CONFLICT … DO UPDATE … RETURNING`, `CASE`, and `CAST(?N AS BIGINT)` where PostgreSQL could
//! not infer an optional parameter's type. The tables are created by migration 2
//! (`migrations/0002_console.*.sql`); their integers are `BIGINT` there, read with `Row::int`.

use serde::Serialize;

use super::sql::{args, Row};
use crate::store::{Result, Store, StoreError};

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

/// A stored failure count (an `INTEGER`/`BIGINT` column) as the `u32` callers get.
fn failures(r: &Row) -> Result<u32> {
    let n = r.int(0)?;
    u32::try_from(n).map_err(|_| StoreError::Row(format!("sign-in failures out of range: {n}")))
}

impl Store {
    /// Stores a new session, and drops the expired ones (so anonymous sessions of sign-in pages
    /// opened and left cannot pile up).
    pub fn console_session_create(&self, s: &Session) -> Result<()> {
        self.transaction(|db| {
            db.execute(
                "DELETE FROM console_sessions WHERE expires_at < ?1",
                args![s.created_at_ms],
            )?;
            db.execute(
                "INSERT INTO console_sessions (id_hash, role, csrf, client, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                args![
                    &s.id_hash,
                    s.role.as_str(),
                    &s.csrf,
                    &s.client,
                    s.created_at_ms,
                    s.expires_at_ms
                ],
            )?;
            Ok(())
        })
    }

    /// The session with this id hash, unless it expired by `now_ms`.
    pub fn console_session(&self, id_hash: &str, now_ms: i64) -> Result<Option<Session>> {
        let row = self.db(|db| {
            db.query_opt(
                "SELECT id_hash, role, csrf, client, created_at, expires_at
                 FROM console_sessions WHERE id_hash = ?1 AND expires_at >= ?2",
                args![id_hash, now_ms],
            )
        })?;
        row.map(|r| {
            Ok(Session {
                id_hash: r.text(0)?,
                role: Role::parse(&r.text(1)?),
                csrf: r.text(2)?,
                client: r.text(3)?,
                created_at_ms: r.int(4)?,
                expires_at_ms: r.int(5)?,
            })
        })
        .transpose()
    }

    /// Ends a session (sign-out, or the anonymous session replaced at sign-in).
    pub fn console_session_delete(&self, id_hash: &str) -> Result<()> {
        self.db(|db| {
            db.execute(
                "DELETE FROM console_sessions WHERE id_hash = ?1",
                args![id_hash],
            )
        })?;
        Ok(())
    }

    /// Failed sign-ins of `client` in the window that started after `window_from_ms`.
    pub fn console_sign_in_failures(&self, client: &str, window_from_ms: i64) -> Result<u32> {
        let row = self.db(|db| {
            db.query_opt(
                "SELECT failures FROM console_sign_ins WHERE client = ?1 AND window_start >= ?2",
                args![client, window_from_ms],
            )
        })?;
        row.map_or(Ok(0), |r| failures(&r))
    }

    /// Counts a failed sign-in of `client` at `now_ms`: a window older than `window_from_ms`
    /// starts over. Returns the failures in the current window (read back by the same statement,
    /// so that a concurrent failure of the same client cannot slip in between).
    pub fn console_sign_in_failed(
        &self,
        client: &str,
        now_ms: i64,
        window_from_ms: i64,
    ) -> Result<u32> {
        let row = self.db(|db| {
            db.query_one(
                "INSERT INTO console_sign_ins (client, window_start, failures) VALUES (?1, ?2, 1)
                 ON CONFLICT (client) DO UPDATE SET
                   failures = CASE WHEN console_sign_ins.window_start < ?3 THEN 1
                                   ELSE console_sign_ins.failures + 1 END,
                   window_start = CASE WHEN console_sign_ins.window_start < ?3 THEN ?2
                                       ELSE console_sign_ins.window_start END
                 RETURNING failures",
                args![client, now_ms, window_from_ms],
            )
        })?;
        failures(&row)
    }

    /// Forgets `client`'s failed sign-ins (it signed in).
    pub fn console_sign_in_cleared(&self, client: &str) -> Result<()> {
        self.db(|db| {
            db.execute(
                "DELETE FROM console_sign_ins WHERE client = ?1",
                args![client],
            )
        })?;
        Ok(())
    }

    /// Appends a line to the audit log; returns its id.
    pub fn audit_record(&self, entry: &NewAudit, at_ms: i64) -> Result<i64> {
        let row = self.db(|db| {
            db.query_one(
                "INSERT INTO console_audit
                   (at, actor, action, target, outcome, before_value, after_value)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                args![
                    at_ms,
                    &entry.actor,
                    &entry.action,
                    &entry.target,
                    &entry.outcome,
                    entry.before.as_deref(),
                    entry.after.as_deref()
                ],
            )
        })?;
        row.int(0)
    }

    /// The audit log, newest first: at most `limit` lines with an id below `before` (paging).
    pub fn audit_list(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = self.db(|db| {
            db.query(
                "SELECT id, at, actor, action, target, outcome, before_value, after_value
                 FROM console_audit WHERE (CAST(?1 AS BIGINT) IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
                args![before, limit],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.int(0)?,
                    at_ms: r.int(1)?,
                    line: NewAudit {
                        actor: r.text(2)?,
                        action: r.text(3)?,
                        target: r.text(4)?,
                        outcome: r.text(5)?,
                        before: r.opt_text(6)?,
                        after: r.opt_text(7)?,
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::on_both;

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
        on_both(|store| {
            store.console_session_create(&session("a", 0, 100)).unwrap();
            let a = store.console_session("a", 50).unwrap().expect("live");
            assert_eq!(
                (
                    a.id_hash.as_str(),
                    a.role,
                    a.csrf.as_str(),
                    a.client.as_str()
                ),
                ("a", Role::Operator, "c", "127.0.0.1")
            );
            assert_eq!((a.created_at_ms, a.expires_at_ms), (0, 100));
            assert!(store.console_session("a", 101).unwrap().is_none());
            store
                .console_session_create(&session("b", 200, 300))
                .unwrap();
            let left = store
                .db(|db| db.query_one("SELECT COUNT(*) FROM console_sessions", args![]))
                .unwrap()
                .int(0)
                .unwrap();
            assert_eq!(left, 1, "the expired session was pruned");
            store.console_session_delete("b").unwrap();
            assert!(store.console_session("b", 250).unwrap().is_none());
        });
    }

    #[test]
    fn failed_sign_ins_count_in_a_window_that_starts_over() {
        on_both(|store| {
            assert_eq!(store.console_sign_in_failed("x", 1_000, 0).unwrap(), 1);
            assert_eq!(store.console_sign_in_failed("x", 2_000, 0).unwrap(), 2);
            assert_eq!(store.console_sign_in_failures("x", 0).unwrap(), 2);
            assert_eq!(store.console_sign_in_failures("y", 0).unwrap(), 0);
            // The window began at 1 000; one that must begin after 5 000 starts over.
            assert_eq!(store.console_sign_in_failed("x", 9_000, 5_000).unwrap(), 1);
            assert_eq!(store.console_sign_in_failures("x", 5_000).unwrap(), 1);
            assert_eq!(
                store.console_sign_in_failures("x", 9_001).unwrap(),
                0,
                "a window that began before the one asked for counts nothing"
            );
            store.console_sign_in_cleared("x").unwrap();
            assert_eq!(store.console_sign_in_failures("x", 0).unwrap(), 0);
        });
    }

    #[test]
    fn the_audit_log_pages_newest_first() {
        on_both(|store| {
            let mut ids = Vec::new();
            for i in 0..3 {
                let entry = NewAudit {
                    actor: "operator".into(),
                    action: "event.retry".into(),
                    target: format!("event {i}"),
                    outcome: "ok".into(),
                    before: (i != 1).then(|| "dead".into()),
                    after: Some("queued".into()),
                };
                ids.push(store.audit_record(&entry, i).unwrap());
            }
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
            let page = store.audit_list(None, 2).unwrap();
            assert_eq!(page.len(), 2);
            assert_eq!(page[0].line.target, "event 2");
            assert_eq!((page[0].id, page[0].at_ms), (ids[2], 2));
            assert_eq!(page[0].line.before.as_deref(), Some("dead"));
            assert_eq!(page[1].line.before, None);
            assert_eq!(page[1].line.after.as_deref(), Some("queued"));
            let next = store.audit_list(Some(page[1].id), 2).unwrap();
            assert_eq!(next.len(), 1);
            assert_eq!(next[0].line.target, "event 0");
        });
    }
}
