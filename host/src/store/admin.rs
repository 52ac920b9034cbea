//! Store tables for state operators change through the admin API, so it survives restarts:
//! integrations (`integrations`) and which connector version serves (`deployments`).
//!
//! Integration rows hold the whole configuration **including secrets in clear**: the database is
//! the host's private durable state, like the config file. A row with `config` NULL is a tombstone:
//! the integration was deleted through the API and must not come back from the config file.

use super::Cached;
use rusqlite::{params, OptionalExtension};

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

impl Store {
    /// Every stored integration row (tombstones included), by id.
    pub fn stored_integrations(&self) -> Result<Vec<StoredIntegration>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT id, config FROM integrations ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Into::into)
    }

    /// Stores an integration's storage JSON (None: a tombstone).
    pub fn put_integration(&self, id: &str, config: Option<&str>) -> Result<()> {
        self.conn()?.exec(
            "INSERT INTO integrations (id, config, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
            params![id, config, now_ms()],
        )?;
        Ok(())
    }

    /// Every remembered deployment.
    pub fn deployments(&self) -> Result<Vec<Deployment>> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT connector, active_hash, previous_hash FROM deployments")?;
        let rows = stmt.query_map([], |r| {
            Ok(Deployment {
                connector: r.get(0)?,
                active_hash: r.get(1)?,
                previous_hash: r.get(2)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Into::into)
    }

    /// Remembers which version of `connector` serves and which one preceded it.
    pub fn put_deployment(&self, d: &Deployment) -> Result<()> {
        self.conn()?.exec(
            "INSERT INTO deployments (connector, active_hash, previous_hash, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (connector) DO UPDATE SET active_hash = excluded.active_hash,
                previous_hash = excluded.previous_hash, updated_at = excluded.updated_at",
            params![d.connector, d.active_hash, d.previous_hash, now_ms()],
        )?;
        Ok(())
    }

    /// The deployment of `connector`, if an operator chose one.
    pub fn deployment(&self, connector: &str) -> Result<Option<Deployment>> {
        self.conn()?
            .row(
                "SELECT connector, active_hash, previous_hash FROM deployments WHERE connector = ?1",
                params![connector],
                |r| {
                    Ok(Deployment {
                        connector: r.get(0)?,
                        active_hash: r.get(1)?,
                        previous_hash: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(Into::into)
    }
}
