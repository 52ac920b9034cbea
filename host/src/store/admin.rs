//! Store tables for state operators change through the admin API, so it survives restarts:
//! integrations (`integrations`) and which connector version serves (`deployments`).
//!
//! Integration rows hold the whole configuration **including secrets in clear**: the database is
//! the host's private durable state, like the config file. A row with `config` NULL is a tombstone:
//! the integration was deleted through the API and must not come back from the config file.

use super::sql::{args, Row};
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

/// Which version of a connector serves, as last chosen by an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub connector: String,
    pub active_hash: String,
    pub previous_hash: Option<String>,
}

fn deployment_row(r: &Row) -> Result<Deployment> {
    Ok(Deployment {
        connector: r.text(0)?,
        active_hash: r.text(1)?,
        previous_hash: r.opt_text(2)?,
    })
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

    /// Stores an integration's storage JSON (None: a tombstone).
    pub fn put_integration(&self, id: &str, config: Option<&str>) -> Result<()> {
        self.db(|db| {
            db.execute(
                "INSERT INTO integrations (id, config, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET config = excluded.config,
                    updated_at = excluded.updated_at",
                args![id, config, now_ms()],
            )
        })?;
        Ok(())
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
        self.db(|db| {
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
            )
        })?;
        Ok(())
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
