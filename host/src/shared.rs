//! What several hosts on one database share, kept in step: every `storage.sync_ms` each host
//! reads the shared revisions ([`crate::store::revision`], one small query) and, when one moved,
//! reloads that part: connector versions ([`crate::wasm::deploy::catch_up`]: compile what is new
//! into this host's code cache, swap the serving slot) or integrations
//! ([`App::reload_integrations`]). A host's own changes come back through the same poll, which
//! finds nothing to do. On SQLite (one process) the poll finds only this host's changes.
//!
//! Gem keys, Lever OAuth grants and connect `state`s need no reload: every host reads them from
//! the store on each use. Started by `crate::run` only.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::store::revision::Revisions;

/// Polls every `storage.sync_ms` until `stop`. `seen`: the revisions this host loaded at start.
pub fn spawn(
    app: Arc<App>,
    seen: Revisions,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_millis(app.config.storage.sync_ms.max(1));
    tokio::spawn(async move {
        let mut seen = seen;
        while !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => break,
            }
            seen = sync(&app, seen).await;
        }
    })
}

/// One check: reloads what moved since `seen`; returns the revisions now held. A part that
/// could not be read keeps its old revision, so the next check tries it again.
pub async fn sync(app: &App, seen: Revisions) -> Revisions {
    let store = app.store.clone();
    let now = match tokio::task::spawn_blocking(move || store.revisions()).await {
        Ok(Ok(now)) => now,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the shared revisions; trying again");
            return seen;
        }
        Err(e) => {
            tracing::warn!(error = %e, "the shared revisions read was lost; trying again");
            return seen;
        }
    };
    let mut held = seen;
    if now.connectors != seen.connectors {
        match crate::wasm::deploy::catch_up(&app.registry, &app.store).await {
            Ok(true) => held.connectors = now.connectors,
            // A version to try again (after its wait): the next check catches up again.
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot catch up with the stored connector versions; trying again")
            }
        }
    }
    if now.integrations != seen.integrations {
        match app.reload_integrations().await {
            Ok(Some(_)) => held.integrations = now.integrations,
            Ok(None) => tracing::debug!("integrations edited here during the reload; trying again"),
            Err(e) => tracing::warn!(error = %e, "cannot reload the integrations; trying again"),
        }
    }
    held
}
