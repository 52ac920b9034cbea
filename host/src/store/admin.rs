//! Store tables for state operators change through the admin API, so it survives restarts and
//! reaches every host on the database: integrations (`integrations`) and which connector version
//! serves (`deployments`). Each write bumps its shared revision ([`crate::store::revision`]).
//!
//! An integration row carries an edit `revision`: an admin edit reads it with the row and writes
//! only if it is unchanged ([`Store::put_integration_at`]), so two hosts editing one integration
//! at once never silently drop one edit (the loser reads again and re-applies its change).
//!
//! Integration rows hold the whole configuration **including secrets in clear**: the database is
//! the host's private durable state, like the config file. A row with `config` NULL is a tombstone:
//! the integration was deleted through the API and must not come back from the config file.

use super::locks::{lock_in_transaction, LockName};
use super::revision::{bump, Topic};
use super::sql::{args, Db, Row};
use crate::store::{now_ms, Result, Store};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS integrations (
    id TEXT PRIMARY KEY,
    config TEXT,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    connector TEXT PRIMARY KEY,
    active_hash TEXT NOT NULL,
    previous_hash TEXT,
    updated_at INTEGER NOT NULL
);
"#;

/// A stored integration row: its storage JSON, or None for a tombstone.
pub type StoredIntegration = (String, Option<String>);

/// One integration's row as an edit reads it: its storage JSON (None: a tombstone) and its edit
/// revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationRow {
    pub config: Option<String>,
    pub revision: i64,
}

/// Which version of a connector serves, as last chosen by an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub connector: String,
    pub active_hash: String,
    pub previous_hash: Option<String>,
}

pub(super) fn deployment_row(r: &Row) -> Result<Deployment> {
    Ok(Deployment {
        connector: r.text(0)?,
        active_hash: r.text(1)?,
        previous_hash: r.opt_text(2)?,
    })
}

/// Writes integration `id`'s row (None: a tombstone) over edit revision `read` (None: no row
/// yet) and bumps the shared revision; false when the row is not at `read`.
fn write_at(db: &dyn Db, id: &str, config: Option<&str>, read: Option<i64>) -> Result<bool> {
    let written = match read {
        None => db.execute(
            "INSERT INTO integrations (id, config, updated_at, revision)
             VALUES (?1, ?2, ?3, 1) ON CONFLICT (id) DO NOTHING",
            args![id, config, now_ms()],
        )?,
        Some(revision) => db.execute(
            "UPDATE integrations SET config = ?2, updated_at = ?3, revision = revision + 1
             WHERE id = ?1 AND revision = ?4",
            args![id, config, now_ms(), revision],
        )?,
    };
    if written > 0 {
        bump(db, Topic::Integrations)?;
    }
    Ok(written > 0)
}

impl Store {
    /// Every stored integration row (tombstones included), by id.
    pub fn stored_integrations(&self) -> Result<Vec<StoredIntegration>> {
        self.db(|db| {
            db.query("SELECT id, config FROM integrations ORDER BY id", &[])?
                .iter()
                .map(|r| Ok((r.text(0)?, r.opt_text(1)?)))
                .collect()
        })
    }

    /// Stores an integration's storage JSON (None: a tombstone), whatever the row holds now.
    pub fn put_integration(&self, id: &str, config: Option<&str>) -> Result<()> {
        self.transaction(|db| {
            db.execute(
                "INSERT INTO integrations (id, config, updated_at, revision) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT (id) DO UPDATE SET config = excluded.config,
                    updated_at = excluded.updated_at,
                    revision = integrations.revision + 1",
                args![id, config, now_ms()],
            )?;
            bump(db, Topic::Integrations)
        })
    }

    /// Integration `id`'s row, if one is stored.
    pub fn integration_row(&self, id: &str) -> Result<Option<IntegrationRow>> {
        self.db(|db| {
            db.query_opt(
                "SELECT config, revision FROM integrations WHERE id = ?1",
                args![id],
            )?
            .map(|r| {
                Ok(IntegrationRow {
                    config: r.opt_text(0)?,
                    revision: r.int(1)?,
                })
            })
            .transpose()
        })
    }

    /// Stores an integration's storage JSON (None: a tombstone) only if its row is still as the
    /// edit read it: at edit revision `read` (None: no row yet). False when another edit came
    /// first: nothing is written, and the caller reads again.
    pub fn put_integration_at(
        &self,
        id: &str,
        config: Option<&str>,
        read: Option<i64>,
    ) -> Result<bool> {
        self.transaction(|db| write_at(db, id, config, read))
    }

    /// Deletes integration `id` if its row is still at edit revision `read` (None: no row yet,
    /// the config file's entry): its tombstone, its Gem keys revoked, its Lever grant, connect
    /// states and connection record deleted, the revision bumped, all in one transaction, so a
    /// crash or an error midway leaves it whole. False when another edit came first: nothing
    /// is written, and the caller reads again.
    pub fn delete_integration_at(&self, id: &str, read: Option<i64>) -> Result<bool> {
        self.transaction(|db| {
            if !write_at(db, id, None, read)? {
                return Ok(false);
            }
            super::gem::revoke_keys_on(db, id)?;
            // A later integration with the same id must not inherit the grant.
            super::oauth::forget_on(db, id)?;
            Ok(true)
        })
    }

    /// Every remembered deployment.
    pub fn deployments(&self) -> Result<Vec<Deployment>> {
        self.db(|db| {
            db.query(
                "SELECT connector, active_hash, previous_hash FROM deployments",
                &[],
            )?
            .iter()
            .map(deployment_row)
            .collect()
        })
    }

    /// Remembers which version of `connector` serves and which one preceded it.
    pub fn put_deployment(&self, d: &Deployment) -> Result<()> {
        self.transaction(|db| {
            lock_in_transaction(db, LockName::Deployments)?;
            db.execute(
                "INSERT INTO deployments (connector, active_hash, previous_hash, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (connector) DO UPDATE SET active_hash = excluded.active_hash,
                    previous_hash = excluded.previous_hash, updated_at = excluded.updated_at",
                args![
                    &d.connector,
                    &d.active_hash,
                    d.previous_hash.as_deref(),
                    now_ms()
                ],
            )?;
            bump(db, Topic::Connectors)
        })
    }

    /// The deployment of `connector`, if an operator chose one.
    pub fn deployment(&self, connector: &str) -> Result<Option<Deployment>> {
        self.db(|db| {
            db.query_opt(
                "SELECT connector, active_hash, previous_hash FROM deployments WHERE connector = ?1",
                args![connector],
            )?
            .as_ref()
            .map(deployment_row)
            .transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_edit_writes_only_over_the_revision_it_read() {
        crate::store::testing::on_both(|s| {
            let before = s.revisions().unwrap().integrations;
            assert!(s.put_integration_at("i", Some("{\"a\":1}"), None).unwrap());
            assert!(
                !s.put_integration_at("i", Some("{\"a\":2}"), None).unwrap(),
                "a second create over an existing row"
            );
            let row = s.integration_row("i").unwrap().expect("stored");
            assert_eq!(row.config.as_deref(), Some("{\"a\":1}"));
            // Two edits read the same revision: the first lands, the second must read again.
            assert!(s
                .put_integration_at("i", Some("{\"b\":1}"), Some(row.revision))
                .unwrap());
            assert!(!s
                .put_integration_at("i", Some("{\"c\":1}"), Some(row.revision))
                .unwrap());
            let now = s.integration_row("i").unwrap().expect("stored");
            assert_eq!(now.config.as_deref(), Some("{\"b\":1}"));
            assert!(s.put_integration_at("i", None, Some(now.revision)).unwrap());
            assert_eq!(s.integration_row("i").unwrap().and_then(|r| r.config), None);
            assert_eq!(s.revisions().unwrap().integrations, before + 3);
        });
    }

    /// Integration `i` with a Gem key and a Lever grant; its row's edit revision.
    fn with_key_and_grant(s: &crate::store::Store) -> i64 {
        assert!(s.put_integration_at("i", Some("{}"), None).unwrap());
        s.insert_gem_key("i", "k1", "hash").unwrap();
        s.db(|db| {
            db.execute(
                "INSERT INTO ats_connections (integration, verified_at) VALUES ('i', 1)",
                &[],
            )
        })
        .unwrap();
        s.integration_row("i").unwrap().expect("stored").revision
    }

    fn active_keys(s: &crate::store::Store) -> usize {
        let keys = s.gem_keys("i").unwrap();
        keys.iter().filter(|k| k.revoked_at_ms.is_none()).count()
    }

    #[test]
    fn deleting_an_integration_removes_its_row_keys_and_grant_together_or_not_at_all() {
        crate::store::testing::on_both(|s| {
            let read = with_key_and_grant(&s);
            let before = s.revisions().unwrap().integrations;
            assert!(
                !s.delete_integration_at("i", Some(read + 1)).unwrap(),
                "stale read"
            );
            assert_eq!(active_keys(&s), 1, "a refused delete changes nothing");

            // One of its later writes fails: the whole delete is rolled back.
            s.db(|db| db.execute("DROP TABLE oauth_states", &[]))
                .unwrap();
            assert!(s.delete_integration_at("i", Some(read)).is_err());
            let row = s.integration_row("i").unwrap().expect("still stored");
            assert_eq!((row.config.as_deref(), row.revision), (Some("{}"), read));
            assert_eq!(active_keys(&s), 1, "its key still works");
            assert_eq!(s.revisions().unwrap().integrations, before);
            s.db(|db| {
                db.execute(
                    "CREATE TABLE oauth_states (integration TEXT NOT NULL, state TEXT)",
                    &[],
                )
            })
            .unwrap();

            assert!(s.delete_integration_at("i", Some(read)).unwrap());
            assert_eq!(s.integration_row("i").unwrap().and_then(|r| r.config), None);
            assert_eq!(active_keys(&s), 0, "its keys are revoked");
            let connections = s
                .db(|db| {
                    db.query_one("SELECT COUNT(*) FROM ats_connections", &[])?
                        .int(0)
                })
                .unwrap();
            assert_eq!(connections, 0, "its connection record is gone");
            assert_eq!(s.revisions().unwrap().integrations, before + 1);
        });
    }
}
