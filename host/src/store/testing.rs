//! Test support: a store on each backend, and [`on_both`], which runs one test body against
//! SQLite and then against PostgreSQL (the conformance suite: one body, two backends).
//!
//! PostgreSQL tests need the test cluster (`scripts/pg.sh start`, which `scripts/test.sh`
//! runs): without it they fail, naming the script; they never skip.

use super::Store;

/// A SQLite store and the temporary directory of its file, removed when this drops (after the
/// store: fields drop in order).
pub(crate) struct TempStore {
    pub(crate) store: Store,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TempStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

/// A store on a new SQLite file in a temporary directory.
pub(crate) fn sqlite() -> TempStore {
    let dir = tempfile::tempdir().expect("a temporary directory");
    TempStore {
        store: Store::open(&dir.path().join("t.db")).expect("open a SQLite store"),
        _dir: dir,
    }
}

/// The URL of a new, empty database on the test cluster.
pub(crate) fn postgres_url() -> String {
    super::pg::test_database().unwrap_or_else(|e| panic!("{e}"))
}

/// A store on a new, empty PostgreSQL database.
pub(crate) fn postgres() -> Store {
    Store::open_postgres(&postgres_url(), None).expect("open a PostgreSQL store")
}

/// Waits (bounded) until at least `n` sessions of `store`'s PostgreSQL database wait for a
/// lock: a staged conflict has reached the point the test needs.
pub(crate) fn wait_for_lock_waiters(store: &Store, n: i64) {
    for _ in 0..1_000 {
        let now = store
            .db(|db| {
                db.query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )?
                .int(0)
            })
            .unwrap();
        if now >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("fewer than {n} sessions waiting for a lock");
}

/// Keeps `store`'s writer busy inside a job of its own until the returned sender is dropped (or
/// sent to): the writes sent meanwhile wait, and then commit together in the next batch.
pub(crate) fn hold_writer(store: &Store) -> std::sync::mpsc::Sender<()> {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (running, started) = std::sync::mpsc::channel::<()>();
    let store = store.clone();
    std::thread::spawn(move || {
        store.write_db_blocking(move |_| {
            let _ = running.send(());
            let _ = held.recv();
            Ok(())
        })
    });
    started
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the writer runs the holding job");
    release
}

/// Runs `body` on a fresh SQLite store, then on a fresh PostgreSQL one.
pub(crate) fn on_both(body: impl Fn(Store)) {
    let sqlite = sqlite();
    body(sqlite.store);
    body(postgres());
}

/// [`on_both`] for an async body: `on_both_async!(|s| async move { … })`.
macro_rules! on_both_async {
    ($body:expr) => {{
        let body = $body;
        let sqlite = $crate::store::testing::sqlite();
        body(sqlite.store).await;
        body($crate::store::testing::postgres()).await;
    }};
}
pub(crate) use on_both_async;

/// Ends every session of `store`'s PostgreSQL database that waits for a lock (as when the
/// network drops a host's connection mid-wait); how many.
pub(crate) fn end_lock_waiters(store: &Store) -> i64 {
    store
        .db(|db| {
            db.query_one(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )?
            .int(0)
        })
        .unwrap()
}
