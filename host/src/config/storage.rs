//! `[storage]`: the embedded SQLite database and how long finished work is kept in it (the
//! retention pass: `crate::retention`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[storage]`: the embedded SQLite database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Database file; created with its directory if missing.
    pub path: PathBuf,
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
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("data/switchyard.db"),
            retention_days: 30.0,
            retention_interval_secs: 600,
            retention_batch: 500,
            keep_connector_versions: 5,
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
        if self.retention_interval_secs == 0 {
            return Err("storage.retention_interval_secs must be at least 1".into());
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
        assert!(parse("retention_days = 1").check().is_ok());
    }
}
