//! `switchyard serve --watch`: polls the connectors directory every second and sends every new or
//! changed `*.wasm` through the same validation and activation as an upload
//! ([`deploy::upload`](crate::wasm::deploy::upload)). A file is identified by its modification time and,
//! when that changes, its hash, so touching a file without changing it does nothing. A rejected
//! file is logged with the reason, leaves the serving version untouched, and is renamed to
//! `*.wasm.rejected` (start-up loads the directory as trusted, so it must not stay there).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::app::App;

const POLL: Duration = Duration::from_secs(1);

/// Starts watching `runtime.connectors_dir`. Files present now were loaded at start-up.
pub fn spawn(app: Arc<App>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let dir = app.config.runtime.connectors_dir.clone();
        let mut seen: HashMap<PathBuf, (SystemTime, String)> = HashMap::new();
        scan(&app, &dir, &mut seen, false).await;
        tracing::info!(dir = %dir.display(), "watching for new connector versions");
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            scan(&app, &dir, &mut seen, true).await;
        }
    })
}

async fn scan(
    app: &Arc<App>,
    dir: &std::path::Path,
    seen: &mut HashMap<PathBuf, (SystemTime, String)>,
    deploy: bool,
) {
    let Ok(files) = crate::wasm::registry::wasm_files(dir) else {
        return;
    };
    for path in files {
        let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
            continue;
        };
        if seen.get(&path).is_some_and(|(m, _)| *m == modified) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let hash = hex::encode(Sha256::digest(&bytes));
        let changed = seen.get(&path).is_none_or(|(_, h)| *h != hash);
        seen.insert(path.clone(), (modified, hash));
        if !deploy || !changed {
            continue;
        }
        let source = format!("watch:{}", path.display());
        match crate::wasm::deploy::upload(
            &app.registry,
            &app.store,
            &app.config,
            None,
            bytes,
            &source,
            true,
        )
        .await
        {
            Ok(up) => {
                tracing::info!(file = %path.display(), connector = %up.version.version_tag(), "watched file activated")
            }
            Err(e) => {
                // Renamed so the next start-up, which trusts the directory, does not load it.
                let parked = path.with_extension("wasm.rejected");
                let renamed = std::fs::rename(&path, &parked).is_ok();
                tracing::warn!(file = %path.display(), error = %e, renamed_to = %parked.display(), renamed,
                    "watched file rejected; serving version unchanged");
            }
        }
    }
}
