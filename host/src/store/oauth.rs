//! Store tables of ATS connections: Lever OAuth grants and the pending `state`s of connect links
//! (`crate::ats::lever::oauth`), the connection's status (disconnected when and why; last Verify
//! Connection ping). Events of an integration that is not connected wait for a connect
//! ([`super::waiting`], [`WaitFor::Connect`]).
//!
//! Tokens are stored **in clear**, like the integrations' other secrets (the database is the
//! host's private state, see [`crate::store::admin`]); a `state` is stored only as its SHA-256.
//! An integration is *connected* while it has a `oauth_tokens` row: disconnecting deletes it.

use sha2::{Digest, Sha256};

use super::sql::{args, Db, Row, Statement, Value};

use crate::config::Secret;
use crate::store::{now_ms, HeldLock, LockName, Result, Store, WaitFor};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS oauth_states (
    state_hash TEXT PRIMARY KEY,
    integration TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE TABLE IF NOT EXISTS oauth_tokens (
    integration TEXT PRIMARY KEY,
    access_token TEXT NOT NULL,
    refresh_token TEXT,
    expires_at INTEGER,
    scope TEXT,
    connected_at INTEGER NOT NULL,
    refreshed_at INTEGER
);
CREATE TABLE IF NOT EXISTS ats_connections (
    integration TEXT PRIMARY KEY,
    connected_at INTEGER,
    disconnected_at INTEGER,
    disconnect_reason TEXT,
    verified_at INTEGER
);
"#;

/// How long used and expired `state` rows are kept (to tell "reused" from "unknown").
const STATE_KEEP_MS: i64 = 24 * 3600 * 1000;

/// An integration's OAuth tokens. No `Debug`: the values are secrets.
#[derive(Clone)]
pub struct OAuthTokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// Unix ms; `None`: Lever gave no lifetime.
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
    pub connected_at: i64,
    pub refreshed_at: Option<i64>,
}

/// What a callback's `state` turned out to be. Checking a valid state uses it up.
#[derive(Debug)]
pub enum StateCheck {
    /// Issued, unused, unexpired: now used. The integration and the PKCE verifier.
    Valid {
        integration: String,
        pkce_verifier: Secret,
    },
    /// Never issued (or long forgotten).
    Unknown,
    /// Issued for `integration` and already used once.
    Used { integration: String },
    /// Issued for `integration` and expired unused.
    Expired { integration: String },
}

/// The status of an integration's ATS connection, for operators.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConnectionRow {
    pub connected_at: Option<i64>,
    pub disconnected_at: Option<i64>,
    pub disconnect_reason: Option<String>,
    pub verified_at: Option<i64>,
}

/// The stored form of a `state` (its SHA-256, hex).
pub fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// The read of an integration's stored tokens (a row for [`tokens_row`], or none).
fn tokens_statement(integration: &str) -> Statement {
    Statement::new(
        "SELECT access_token, refresh_token, expires_at, scope, connected_at, refreshed_at
         FROM oauth_tokens WHERE integration = ?1",
        vec![integration.into()],
    )
}

fn tokens_row(r: &Row) -> Result<OAuthTokens> {
    Ok(OAuthTokens {
        access_token: Secret::new(r.text(0)?),
        refresh_token: r.opt_text(1)?.map(Secret::new),
        expires_at: r.opt_int(2)?,
        scope: r.opt_text(3)?,
        connected_at: r.int(4)?,
        refreshed_at: r.opt_int(5)?,
    })
}

/// `(integration, access, refresh, expires, scope, time)`: `?1`…`?6` of a token write.
fn token_args(integration: &str, tokens: &OAuthTokens, at: i64) -> [Value; 6] {
    [
        integration.into(),
        tokens.access_token.expose().into(),
        tokens.refresh_token.as_ref().map(Secret::expose).into(),
        tokens.expires_at.into(),
        tokens.scope.as_deref().into(),
        at.into(),
    ]
}

/// Deletes `integration`'s grant, connect states and connection record on `db`.
pub(super) fn forget_on(db: &dyn Db, integration: &str) -> Result<()> {
    for table in ["oauth_tokens", "oauth_states", "ats_connections"] {
        db.execute(
            &format!("DELETE FROM {table} WHERE integration = ?1"),
            args![integration],
        )?;
    }
    Ok(())
}

impl Store {
    /// Remembers a connect link's `state` for `integration` until `expires_at` (unix ms).
    pub fn oauth_put_state(
        &self,
        state: &str,
        integration: &str,
        pkce_verifier: &str,
        expires_at: i64,
    ) -> Result<()> {
        let now = now_ms();
        self.db(|db| {
            db.execute(
                "DELETE FROM oauth_states WHERE created_at < ?1",
                args![now - STATE_KEEP_MS],
            )?;
            db.execute(
                "INSERT INTO oauth_states
                    (state_hash, integration, pkce_verifier, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                args![
                    state_hash(state),
                    integration,
                    pkce_verifier,
                    now,
                    expires_at
                ],
            )
        })?;
        Ok(())
    }

    /// Checks a callback's `state` and, when valid, marks it used (atomically: two callbacks
    /// with the same state cannot both pass, whichever hosts they reach).
    pub fn oauth_take_state(&self, state: &str) -> Result<StateCheck> {
        let now = now_ms();
        let hash = state_hash(state);
        self.db(|db| {
            // Used up even when expired: a state never works twice.
            let taken = db.query_opt(
                "UPDATE oauth_states SET used_at = ?2 WHERE state_hash = ?1 AND used_at IS NULL
                 RETURNING integration, pkce_verifier, expires_at",
                args![&hash, now],
            )?;
            if let Some(row) = taken {
                let integration = row.text(0)?;
                if now >= row.int(2)? {
                    return Ok(StateCheck::Expired { integration });
                }
                return Ok(StateCheck::Valid {
                    integration,
                    pkce_verifier: Secret::new(row.text(1)?),
                });
            }
            let known = db.query_opt(
                "SELECT integration FROM oauth_states WHERE state_hash = ?1",
                args![&hash],
            )?;
            Ok(match known {
                Some(row) => StateCheck::Used {
                    integration: row.text(0)?,
                },
                None => StateCheck::Unknown,
            })
        })
    }

    /// The integration's OAuth tokens, if it is connected.
    pub fn oauth_tokens(&self, integration: &str) -> Result<Option<OAuthTokens>> {
        let read = tokens_statement(integration);
        self.read_db(|db| {
            db.query_opt(&read.sql, &read.values)?
                .as_ref()
                .map(tokens_row)
                .transpose()
        })
    }

    /// Takes the lock of `integration`'s token refreshes ([`LockName::OAuthRefresh`]: one at a
    /// time across hosts) and reads its stored tokens under it, as [`Store::oauth_tokens`]:
    /// one round trip on PostgreSQL when no other host holds the lock, on a connection the
    /// caller's thread drives ([`Store::lock_with`]); else the lock is waited for, then read.
    pub async fn lock_oauth_refresh(
        &self,
        integration: &str,
    ) -> Result<(HeldLock, Option<OAuthTokens>)> {
        let name = LockName::OAuthRefresh { integration };
        let (held, answers) = self
            .lock_with(name, &[], &[tokens_statement(integration)], || ())
            .await?;
        let tokens = answers
            .into_iter()
            .next()
            .and_then(|rows| rows.into_iter().next())
            .map(|row| tokens_row(&row))
            .transpose()?;
        Ok((held, tokens))
    }

    /// A new grant: stores its tokens, clears any disconnection and resumes the integration's
    /// events that wait for a connect or a permission (a new grant may carry it), in one
    /// transaction. Returns how many events were resumed.
    pub fn oauth_connect(&self, integration: &str, tokens: &OAuthTokens) -> Result<usize> {
        let now = now_ms();
        self.transaction(|db| {
            db.execute(
                "INSERT INTO oauth_tokens
                    (integration, access_token, refresh_token, expires_at, scope, connected_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (integration) DO UPDATE SET access_token = excluded.access_token,
                    refresh_token = excluded.refresh_token, expires_at = excluded.expires_at,
                    scope = excluded.scope, connected_at = excluded.connected_at,
                    refreshed_at = NULL",
                &token_args(integration, tokens, now),
            )?;
            db.execute(
                "INSERT INTO ats_connections (integration, connected_at) VALUES (?1, ?2)
                 ON CONFLICT (integration) DO UPDATE SET connected_at = ?2, disconnected_at = NULL,
                    disconnect_reason = NULL",
                args![integration, now],
            )?;
            Ok(
                super::waiting::resume_on(db, Some(integration), Some(WaitFor::Connect))?
                    + super::waiting::resume_on(db, Some(integration), Some(WaitFor::Permission))?,
            )
        })
    }

    /// Replaces the tokens after a refresh (a rotated refresh token included). Does nothing if
    /// the integration was disconnected meanwhile; returns whether tokens were stored.
    pub fn oauth_refreshed(&self, integration: &str, tokens: &OAuthTokens) -> Result<bool> {
        let n = self.db(|db| {
            db.execute(
                "UPDATE oauth_tokens SET access_token = ?2, refresh_token = ?3, expires_at = ?4,
                    scope = COALESCE(?5, scope), refreshed_at = ?6
                 WHERE integration = ?1",
                &token_args(integration, tokens, now_ms()),
            )
        })?;
        Ok(n > 0)
    }

    /// Deletes the tokens and records the disconnection (when, why). Returns whether the
    /// integration was connected.
    pub fn oauth_disconnect(&self, integration: &str, reason: &str) -> Result<bool> {
        self.transaction(|db| {
            let had = db.execute(
                "DELETE FROM oauth_tokens WHERE integration = ?1",
                args![integration],
            )?;
            db.execute(
                "INSERT INTO ats_connections (integration, disconnected_at, disconnect_reason)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (integration) DO UPDATE SET disconnected_at = ?2,
                    disconnect_reason = ?3",
                args![integration, now_ms(), reason],
            )?;
            Ok(had > 0)
        })
    }

    /// Records a Verify Connection ping (Lever's test webhook) for `integration`.
    pub fn record_verified(&self, integration: &str) -> Result<()> {
        self.db(|db| {
            db.execute(
                "INSERT INTO ats_connections (integration, verified_at) VALUES (?1, ?2)
                 ON CONFLICT (integration) DO UPDATE SET verified_at = ?2",
                args![integration, now_ms()],
            )
        })?;
        Ok(())
    }

    /// The connection's status row (all `None` when nothing was recorded).
    pub fn connection(&self, integration: &str) -> Result<ConnectionRow> {
        self.db(|db| {
            db.query_opt(
                "SELECT connected_at, disconnected_at, disconnect_reason, verified_at
                 FROM ats_connections WHERE integration = ?1",
                args![integration],
            )?
            .map_or(Ok(ConnectionRow::default()), |r| {
                Ok(ConnectionRow {
                    connected_at: r.opt_int(0)?,
                    disconnected_at: r.opt_int(1)?,
                    disconnect_reason: r.opt_text(2)?,
                    verified_at: r.opt_int(3)?,
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::testing::{on_both, on_both_async};

    fn tokens(access: &str) -> OAuthTokens {
        OAuthTokens {
            access_token: Secret::new(access),
            refresh_token: Some(Secret::new(format!("r-{access}"))),
            expires_at: Some(now_ms() + 3_600_000),
            scope: None,
            connected_at: 0,
            refreshed_at: None,
        }
    }

    #[test]
    fn a_state_works_once_and_only_before_it_expires() {
        on_both(|s| {
            s.oauth_put_state("good", "acme", "v", now_ms() + 60_000)
                .unwrap();
            s.oauth_put_state("old", "acme", "v", now_ms() - 1).unwrap();
            assert!(matches!(
                s.oauth_take_state("good").unwrap(),
                StateCheck::Valid { integration, .. } if integration == "acme"
            ));
            assert!(matches!(
                s.oauth_take_state("good").unwrap(),
                StateCheck::Used { .. }
            ));
            assert!(matches!(
                s.oauth_take_state("old").unwrap(),
                StateCheck::Expired { .. }
            ));
            assert!(matches!(
                s.oauth_take_state("never").unwrap(),
                StateCheck::Unknown
            ));
        });
    }

    #[tokio::test]
    async fn events_waiting_for_a_connect_resume_on_a_new_grant_without_losing_an_attempt() {
        on_both_async!(|s: Store| async move {
            s.enqueue("acme", "lever.stage_change", "k1", "{}").unwrap();
            let claim = || {
                s.claim(&crate::store::Claim::any("test-run", 60_000))
                    .unwrap()
            };
            let ev = claim().expect("claimable");
            assert_eq!(ev.attempts, 1);
            s.oauth_disconnect("acme", "revoked").unwrap();
            let wait = |e: &crate::store::Event, reason: &str| crate::store::waiting::Wait {
                run: "test-run".into(),
                claim_seq: e.claim_seq,
                reason: reason.into(),
                waiting_for: WaitFor::Connect,
                recheck_at: None,
                connector_version: None,
                started_at_ms: now_ms(),
                took_ms: 1,
                drop_screening: None,
            };
            assert!(s.wait_event(ev.id, wait(&ev, "revoked")).await.unwrap());
            assert!(claim().is_none(), "a waiting event is not due");
            assert_eq!(s.waiting_for("acme", WaitFor::Connect).unwrap(), 1);
            let row = s.connection("acme").unwrap();
            assert_eq!(row.disconnect_reason.as_deref(), Some("revoked"));
            assert_eq!(s.oauth_connect("acme", &tokens("a1")).unwrap(), 1);
            let again = claim().expect("resumed");
            assert_eq!((again.id, again.attempts), (ev.id, 1));
            assert!(s.connection("acme").unwrap().disconnected_at.is_none());
            // A wait for a connect that raced a connect: due at once.
            assert!(s.wait_event(again.id, wait(&again, "raced")).await.unwrap());
            assert!(claim().is_some());
        });
    }

    /// The access token the refresh lock read, if any.
    fn access(read: Option<OAuthTokens>) -> Option<String> {
        read.map(|t| t.access_token.expose().to_owned())
    }

    /// A refresh of `acme` started on `s`, checked to wait for the lock held meanwhile; it
    /// answers the access token it read under the lock.
    async fn waiting_refresh(s: &Store) -> tokio::task::JoinHandle<Result<Option<String>>> {
        let next = tokio::spawn({
            let s = s.clone();
            async move { s.lock_oauth_refresh("acme").await.map(|(_, t)| access(t)) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!next.is_finished(), "the next refresh waits for the lock");
        next
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_refresh_lock_reads_the_grant_under_it_and_holds_off_the_next_refresh() {
        on_both_async!(|s: Store| async move {
            let (held, read) = s.lock_oauth_refresh("acme").await.unwrap();
            assert_eq!(access(read), None, "not connected");
            drop(held);
            s.oauth_connect("acme", &tokens("a1")).unwrap();
            let (held, read) = s.lock_oauth_refresh("acme").await.unwrap();
            assert_eq!(access(read).as_deref(), Some("a1"));
            let next = waiting_refresh(&s).await;
            held.still_held().await.unwrap();
            assert!(s.oauth_refreshed("acme", &tokens("a2")).unwrap());
            drop(held);
            let read = next.await.unwrap().unwrap();
            assert_eq!(read.as_deref(), Some("a2"), "it reads the refreshed grant");
        });
    }

    /// Across hosts: free, the lock and the grant's read are one round trip; held by another
    /// host, it is waited for and the grant read after that host's refresh.
    #[tokio::test(flavor = "multi_thread")]
    async fn on_postgres_the_refresh_lock_is_one_round_trip_and_holds_off_another_host() {
        let url = crate::store::testing::postgres_url();
        let a = Store::open_postgres(&url, None).unwrap();
        let b = Store::open_postgres(&url, None).unwrap();
        a.oauth_connect("acme", &tokens("a1")).unwrap();
        // The connection's statements prepared first.
        drop(a.lock_oauth_refresh("acme").await.unwrap());
        let before = a.writer_stats().round_trips;
        let (held, read) = a.lock_oauth_refresh("acme").await.unwrap();
        assert_eq!(a.writer_stats().round_trips - before, 1);
        assert_eq!(access(read).as_deref(), Some("a1"));
        let other = waiting_refresh(&b).await;
        assert!(a.oauth_refreshed("acme", &tokens("a2")).unwrap());
        drop(held);
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), other)
            .await
            .expect("host b gets the lock once host a released it")
            .unwrap()
            .unwrap();
        assert_eq!(read.as_deref(), Some("a2"));
    }

    #[test]
    fn refreshed_tokens_replace_the_old_ones_only_while_connected() {
        on_both(|s| {
            s.oauth_connect("acme", &tokens("a1")).unwrap();
            assert!(s.oauth_refreshed("acme", &tokens("a2")).unwrap());
            let t = s.oauth_tokens("acme").unwrap().expect("connected");
            assert_eq!(t.access_token.expose(), "a2");
            assert_eq!(t.refresh_token.as_ref().map(Secret::expose), Some("r-a2"));
            assert!(s.oauth_disconnect("acme", "operator").unwrap());
            assert!(!s.oauth_refreshed("acme", &tokens("a3")).unwrap());
            assert!(s.oauth_tokens("acme").unwrap().is_none());
        });
    }
}
