//! `[storage]`: the database (embedded SQLite by default, or PostgreSQL by `url`) and how long
//! finished work is kept in it (the retention pass: `crate::retention`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

/// `[storage]`: the database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// SQLite database file; created with its directory if missing. Also where the data
    /// directory (runs' lock files, compiled code, uploaded connectors) lives, whatever the
    /// backend.
    pub path: PathBuf,
    /// A PostgreSQL database instead of SQLite: `postgres://user@host:port/db`. Never with a
    /// password: that goes in `password`.
    pub url: Option<String>,
    /// The PostgreSQL user's password, usually `env:NAME` (read at start-up).
    pub password: Option<Secret>,
    /// PostgreSQL only: no LISTEN/NOTIFY wake-ups, the workers find new events by polling
    /// alone (within a second), where LISTEN is not available. (A pooler must pool by session
    /// either way: the cross-host locks are session advisory locks.)
    pub poll_only: bool,
    /// Finished events, their attempts, and terminal orders with their notes and Gem screenings
    /// are pruned this many days after they finished (fractions allowed: `0.01` is 864 s).
    pub retention_days: f64,
    /// Seconds between two retention passes (the first runs one interval after start-up).
    pub retention_interval_secs: u64,
    /// Rows of each kind one retention batch (one short transaction) removes at most.
    pub retention_batch: u32,
    /// Versions of each connector kept (uploaded bytes, loaded versions, compiled-code cache
    /// entries); older ones are removed, never the active one or the rollback target.
    pub keep_connector_versions: usize,
    /// Milliseconds between two checks of what other hosts on the same database changed
    /// (connector versions, integrations): a change made on one host serves on the others
    /// within about this long. One small read per check.
    pub sync_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("data/switchyard.db"),
            url: None,
            password: None,
            poll_only: false,
            retention_days: 30.0,
            retention_interval_secs: 600,
            retention_batch: 500,
            keep_connector_versions: 5,
            sync_ms: 1000,
        }
    }
}

impl StorageConfig {
    /// The retention window.
    pub fn retention(&self) -> Duration {
        Duration::from_secs_f64(self.retention_days * 86_400.0)
    }

    /// Refuses settings a pass could not honour.
    pub fn check(&self) -> Result<(), String> {
        // At least a minute: a shorter window could prune a webhook's tombstone inside the
        // sender's own retry interval.
        if !self.retention_days.is_finite() || self.retention_days * 86_400.0 < 60.0 {
            return Err(format!(
                "storage.retention_days must be at least 60 seconds' worth (0.0007; got {})",
                self.retention_days
            ));
        }
        if self.retention_days > 36_500.0 {
            return Err(format!(
                "storage.retention_days must be at most 36500 (got {})",
                self.retention_days
            ));
        }
        if !(50..=60_000).contains(&self.sync_ms) {
            return Err(format!(
                "storage.sync_ms must be between 50 and 60000 (got {})",
                self.sync_ms
            ));
        }
        if self.retention_interval_secs == 0 {
            return Err("storage.retention_interval_secs must be at least 1".into());
        }
        if let Some(url) = &self.url {
            check_url(url)?;
        } else if self.password.is_some() {
            return Err("storage.password is for PostgreSQL: set storage.url too".into());
        }
        if !(1..=10_000).contains(&self.retention_batch) {
            return Err(format!(
                "storage.retention_batch must be between 1 and 10000 (got {})",
                self.retention_batch
            ));
        }
        Ok(())
    }
}

/// A PostgreSQL URL without a password (a password in the config file would be a secret in
/// clear, and in every message that names the URL).
fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url)
        .map_err(|e| format!("storage.url is not a URL ({e}): use postgres://user@host:port/db"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "storage.url must be a postgres:// URL (got a {}:// one); SQLite is storage.path",
            parsed.scheme()
        ));
    }
    if parsed.password().is_some() {
        return Err(
            "storage.url must not hold the password: set storage.password (e.g. \"env:PGPASSWORD\")"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> StorageConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn whole_and_fractional_days_parse_and_tiny_windows_are_refused() {
        assert_eq!(
            parse("retention_days = 30").retention().as_secs(),
            30 * 86_400
        );
        assert_eq!(parse("retention_days = 0.01").retention().as_secs(), 864);
        assert_eq!(parse("").retention_days, 30.0);
        let err = parse("retention_days = 0").check().unwrap_err();
        assert!(err.contains("storage.retention_days"), "{err}");
        assert!(parse("retention_batch = 0").check().is_err());
        assert!(parse("retention_interval_secs = 0").check().is_err());
        assert_eq!(parse("").sync_ms, 1000);
        assert!(parse("sync_ms = 0").check().is_err());
        assert!(parse("retention_days = 1").check().is_ok());
    }

    #[test]
    fn a_postgres_url_is_checked_and_never_holds_the_password() {
        let ok = parse(
            "url = \"postgres://sy@db.internal:5432/switchyard\"\npassword = \"env:PGPASSWORD\"",
        );
        assert!(ok.check().is_ok());
        let err = parse("url = \"postgres://sy:hunter2@db/switchyard\"")
            .check()
            .unwrap_err();
        assert!(
            err.contains("storage.password") && !err.contains("hunter2"),
            "{err}"
        );
        let err = parse("url = \"mysql://sy@db/switchyard\"")
            .check()
            .unwrap_err();
        assert!(err.contains("postgres://"), "{err}");
        let err = parse("password = \"x\"").check().unwrap_err();
        assert!(err.contains("storage.url"), "{err}");
    }
}
