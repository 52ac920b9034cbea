//! The retention pass: every `storage.retention_interval_secs`, prunes what finished more than
//! `storage.retention_days` ago (what is pruned and what is kept: [`crate::store::retention`]),
//! returns free pages to the file system, and removes connector versions beyond the newest
//! `storage.keep_connector_versions` with their compiled code and their bytes stored in the
//! database (never the active version or the rollback target: the store refuses to delete a
//! component a deployment names).
//!
//! A pass is a series of small batches, each one write of the store's group commit, so webhooks
//! keep being committed between them; a crash or a stop mid-pass loses nothing (a batch is done
//! or not). Only the host that leads housekeeping runs passes ([`App::leader`],
//! `store::leader`); with one SQLite process that is always this one. Started by `crate::run`
//! only.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::store::retention::Pruned;
use crate::store::StoreError;

/// Batches one pass runs at most, so a pass always ends (the next one continues).
const MAX_BATCHES: u32 = 10_000;

/// Free pages returned to the file system per `incremental_vacuum` step (2 or 4 MiB, as the
/// database's pages are 2 or 4 KiB):
/// each step holds the connection, so intake waits at most one step.
const VACUUM_STEP: u32 = 1024;

/// What one pass did.
#[derive(Debug, Default, Clone)]
pub struct PassReport {
    pub pruned: Pruned,
    /// Pages returned to the file system.
    pub vacuumed_pages: i64,
    /// Connector versions removed (`id@version#hash12`).
    pub versions_removed: Vec<String>,
}

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("retention pass: {0}")]
    Store(#[from] StoreError),
    #[error("retention pass: pruning connector versions: {0}")]
    Versions(#[from] crate::wasm::deploy::DeployError),
    #[error("retention pass: a blocking step did not finish: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Runs a pass every `storage.retention_interval_secs` until `stop`; a stop mid-pass drops the
/// batch in flight (committed whole or not at all).
pub fn spawn(app: Arc<App>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_secs(app.config.storage.retention_interval_secs.max(1));
    tokio::spawn(async move {
        while !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => break,
            }
            if !app.leader.load(std::sync::atomic::Ordering::SeqCst) {
                tracing::debug!("retention pass skipped: another host leads housekeeping");
                continue;
            }
            tokio::select! {
                result = pass(&app, crate::clock::now_ms()) => log(&result),
                _ = stop.changed() => break,
            }
        }
    })
}

fn log(result: &Result<PassReport, RetentionError>) {
    match result {
        Ok(r) if r.pruned.total() > 0 || !r.versions_removed.is_empty() => {
            tracing::info!(pruned = ?r.pruned, vacuumed_pages = r.vacuumed_pages,
                versions_removed = ?r.versions_removed, "retention pass done")
        }
        Ok(_) => tracing::debug!("retention pass: nothing to prune"),
        Err(e) => tracing::error!(error = %e, "retention pass failed; the next one retries"),
    }
}

/// One pass as of `now_ms` (tests pass a later instant to age what they stored).
pub async fn pass(app: &App, now_ms: i64) -> Result<PassReport, RetentionError> {
    let storage = &app.config.storage;
    let cutoff = now_ms - storage.retention().as_millis() as i64;
    let mut report = PassReport::default();
    for _ in 0..MAX_BATCHES {
        let batch = app
            .store
            .prune_batch(cutoff, now_ms, storage.retention_batch)
            .await?;
        for (table, rows) in batch.by_table() {
            if rows > 0 {
                app.metrics.pruned(table, rows);
            }
        }
        report.pruned.add(batch);
        if batch.total() == 0 {
            break;
        }
    }
    if report.pruned.total() > 0 {
        report.vacuumed_pages = vacuum(app).await?;
    }
    report.versions_removed =
        crate::wasm::deploy::prune(&app.registry, &app.store, storage.keep_connector_versions)
            .await?;
    Ok(report)
}

/// Returns free pages to the file system once they are over a quarter of the file: below that,
/// new rows reuse them, and shrinking a file that grows back costs I/O for nothing.
async fn vacuum(app: &App) -> Result<i64, RetentionError> {
    let mut vacuumed = 0;
    loop {
        let store = app.store.clone();
        let pages = tokio::task::spawn_blocking(move || store.pages()).await??;
        if pages.free * 4 <= pages.total || pages.free == 0 {
            return Ok(vacuumed);
        }
        let store = app.store.clone();
        tokio::task::spawn_blocking(move || store.incremental_vacuum(VACUUM_STEP)).await??;
        let after = {
            let store = app.store.clone();
            tokio::task::spawn_blocking(move || store.pages()).await??
        };
        if after.free >= pages.free {
            // Not an incremental database (auto_vacuum off): its free pages are reused instead.
            return Ok(vacuumed);
        }
        vacuumed += pages.free - after.free;
    }
}
