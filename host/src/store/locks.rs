//! Named locks held across awaits (an HTTP call to the ATS, a token refresh), by every host
//! that shares the database: [`Store::lock`] returns a [`HeldLock`], released when dropped, on
//! every path (an error, a panic unwinding the task, a cancelled future).
//!
//! Two layers. In-process: one `tokio` mutex per name, kept only while someone holds or awaits
//! it, so one host never spends two connections on one name. On PostgreSQL, then, a
//! session-level `pgadvisory_lock` keyed by a stable 64-bit hash of the name, on a connection
//! held for as long as the lock ([`super::pg::AdvisoryLock`]): another host waits for it, and a
//! host that dies releases it with its connections. No transaction is open meanwhile.
//! [`Store::lock_with`] takes it on a connection the holder's thread drives, with the holder's
//! first reads in the same round trip, when no other host holds it (else it waits as above).
//! SQLite is one process per file: the in-process layer is the whole lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::sql::{args, Db, Dialect, Row, Statement};
use super::{Backend, Result, Store, StoreError};

/// What a [`Store::lock`] serializes.
#[derive(Debug, Clone, Copy)]
pub enum LockName<'a> {
    /// Writes to one opportunity (or candidate) of an integration's ATS: two hosts never
    /// interleave one candidate's tags and notes.
    Opportunity {
        integration: &'a str,
        opportunity: &'a str,
    },
    /// An OAuth token refresh of one integration: a rotated refresh token works once, so two
    /// hosts refreshing at once would lock the customer out.
    OAuthRefresh { integration: &'a str },
    /// A rotation of one integration's Gem API keys (taken in its transaction,
    /// [`lock_in_transaction`]): two at once would each keep their own new key.
    GemKeys { integration: &'a str },
    /// A change of which connector versions are deployed or stored (taken in its transaction):
    /// a version is never deleted while another host makes it serve.
    Deployments,
}

impl LockName<'_> {
    /// The name as one string (NUL-separated: no part can fake another's boundary).
    fn key(&self) -> String {
        match self {
            LockName::Opportunity {
                integration,
                opportunity,
            } => format!("opportunity\0{integration}\0{opportunity}"),
            LockName::OAuthRefresh { integration } => format!("oauth-refresh\0{integration}"),
            LockName::GemKeys { integration } => format!("gem-keys\0{integration}"),
            LockName::Deployments => "deployments".into(),
        }
    }
}

/// The advisory lock key of `name`: the first 8 bytes of its SHA-256, the same on every host
/// and every build (unlike `std`'s hasher).
fn advisory_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("switchyard\0{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Takes lock `name` for the rest of the transaction `db` is in, on every host: a
/// transaction-scoped advisory lock on PostgreSQL, released by the commit or rollback. SQLite
/// runs one write transaction at a time: nothing to take.
pub(in crate::store) fn lock_in_transaction(db: &dyn Db, name: LockName<'_>) -> Result<()> {
    if db.dialect() == Dialect::Postgres {
        db.execute(
            "SELECT pg_advisory_xact_lock(?1)",
            args![advisory_key(&name.key())],
        )?;
    }
    Ok(())
}

type Entry = Arc<tokio::sync::Mutex<()>>;

/// This process's lock per name, each dropped from the map once nobody holds or awaits it.
#[derive(Default)]
pub(in crate::store) struct Local {
    held: Mutex<HashMap<String, Entry>>,
}

impl Local {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The database's side of a [`HeldLock`] (PostgreSQL).
enum Advisory {
    /// Taken by waiting, on the lock pool ([`super::pg::Pg::advisory_lock`]).
    Waited(Box<super::pg::AdvisoryLock>),
    /// Taken at once, on a connection of its own ([`super::pg::Pg::try_lock_with`]).
    Direct(Box<super::pg::DirectLock>),
}

/// A lock taken by [`Store::lock`]; released when dropped. Fields drop in order: the
/// database's lock first, then this host's.
pub struct HeldLock {
    advisory: Option<Advisory>,
    local: Option<tokio::sync::OwnedMutexGuard<()>>,
    key: String,
    locks: Arc<Local>,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        drop(self.advisory.take());
        drop(self.local.take());
        let mut entries = self.locks.entries();
        // Clones are made under this map's lock: a count of one is the map's own.
        if entries
            .get(&self.key)
            .is_some_and(|e| Arc::strong_count(e) == 1)
        {
            entries.remove(&self.key);
        }
    }
}

impl HeldLock {
    /// Checks that the lock is still held, before each effect made under it: on PostgreSQL the
    /// lock lives as long as its connection, and a connection that died (the network cut, the
    /// server restarted) took it along, so another host may hold it now.
    /// [`StoreError::LockLost`] then: the caller stops and its step is retried under a new
    /// lock. SQLite's in-process lock cannot be lost.
    pub async fn still_held(&self) -> Result<()> {
        let alive = match &self.advisory {
            Some(Advisory::Waited(lock)) => lock.alive().await,
            Some(Advisory::Direct(lock)) => lock.alive(),
            None => true,
        };
        if alive {
            Ok(())
        } else {
            Err(StoreError::LockLost)
        }
    }
}

impl Store {
    /// Waits for the lock `name` and holds it until the returned guard is dropped: across every
    /// host on this database (PostgreSQL), or within this process (SQLite, one process per
    /// file). An error (the database unreachable) means the lock was not taken.
    pub async fn lock(&self, name: LockName<'_>) -> Result<HeldLock> {
        let mut held = self.lock_here(name).await;
        if let Backend::Postgres { pg, .. } = &self.backend {
            let lock = pg.advisory_lock(advisory_key(&held.key)).await?;
            held.advisory = Some(Advisory::Waited(Box::new(lock)));
        }
        Ok(held)
    }

    /// [`Store::lock`], then `reads` under it, in one round trip on PostgreSQL when no other
    /// host holds the lock: it is taken without waiting, on a connection this thread drives (no
    /// hop to the store's runtime for the lock, its checks and its release), with `reads`
    /// pipelined after it. Another host holding it: waits like [`Store::lock`], then reads.
    ///
    /// `writes` (PostgreSQL only: statements that need no lock, committed before the reads,
    /// which see them) ride in that round trip too ([`super::pg::Pg::try_lock_with`]), and are
    /// committed whether or not the lock was free. `committed` runs as soon as they are, before
    /// the wait for a lock another host holds: an error after it (that wait failed) leaves them
    /// committed, and the caller must not write them again; an error without it means they may
    /// not be.
    pub(in crate::store) async fn lock_with(
        &self,
        name: LockName<'_>,
        writes: &[Statement],
        reads: &[Statement],
        committed: impl FnOnce() + Send,
    ) -> Result<(HeldLock, Vec<Vec<Row>>)> {
        let mut held = self.lock_here(name).await;
        let Backend::Postgres { pg, .. } = &self.backend else {
            debug_assert!(writes.is_empty(), "writes with a lock on PostgreSQL only");
            let answers = self.read_db(|db| db.query_all(reads))?;
            return Ok((held, answers));
        };
        let key = advisory_key(&held.key);
        let mut written = false;
        let tried = pg.try_lock_with(key, writes, reads, &mut written);
        if written {
            committed();
        }
        if let Some((lock, answers)) = tried? {
            held.advisory = Some(Advisory::Direct(Box::new(lock)));
            return Ok((held, answers));
        }
        held.advisory = Some(Advisory::Waited(Box::new(pg.advisory_lock(key).await?)));
        let answers = self.read_db(|db| db.query_all(reads))?;
        Ok((held, answers))
    }

    /// This process's lock of `name`, waited for.
    async fn lock_here(&self, name: LockName<'_>) -> HeldLock {
        let key = name.key();
        let entry = self.locks.entries().entry(key.clone()).or_default().clone();
        let mut held = HeldLock {
            advisory: None,
            local: None,
            key,
            locks: self.locks.clone(),
        };
        held.local = Some(entry.lock_owned().await);
        held
    }

    /// How many names this process holds or awaits (tests: nothing stays behind).
    #[cfg(test)]
    fn locks_in_use(&self) -> usize {
        self.locks.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::sql::args;
    use super::super::testing::{self, on_both_async};
    use super::*;

    const OPP: LockName<'static> = LockName::Opportunity {
        integration: "certn",
        opportunity: "opp-1",
    };

    /// Whether `store` can take `name` within a short bound (a wait that is expected to end,
    /// or to time out because the lock is held).
    async fn can_take(store: &Store, name: LockName<'_>) -> bool {
        tokio::time::timeout(Duration::from_millis(300), store.lock(name))
            .await
            .is_ok_and(|held| held.is_ok())
    }

    #[test]
    fn keys_are_stable_and_tell_names_apart() {
        // A fixed value: every host and every build must agree on it.
        assert_eq!(advisory_key(&OPP.key()), -492393866058553772);
        let other = LockName::Opportunity {
            integration: "certn\0opp",
            opportunity: "1",
        };
        assert_ne!(advisory_key(&OPP.key()), advisory_key(&other.key()));
        let refresh = LockName::OAuthRefresh {
            integration: "certn",
        };
        assert_ne!(advisory_key(&OPP.key()), advisory_key(&refresh.key()));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_held_lock_makes_the_next_holder_wait_until_it_is_dropped() {
        on_both_async!(|store: Store| async move {
            let held = store.lock(OPP).await.unwrap();
            assert!(!can_take(&store, OPP).await, "the second holder waits");
            let refresh = LockName::OAuthRefresh {
                integration: "certn",
            };
            assert!(can_take(&store, refresh).await, "another name is free");
            drop(held);
            assert!(can_take(&store, OPP).await, "free once dropped");
            assert_eq!(store.locks_in_use(), 0, "nothing kept once released");
        });
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lock_dropped_by_a_panicking_task_is_released() {
        on_both_async!(|store: Store| async move {
            let s = store.clone();
            let task = tokio::spawn(async move {
                let _held = s.lock(OPP).await.unwrap();
                panic!("the holder fails mid-write");
            });
            assert!(task.await.is_err());
            assert!(can_take(&store, OPP).await);
        });
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn two_hosts_on_one_postgres_database_wait_for_each_other() {
        let url = testing::postgres_url();
        let a = Store::open_postgres(&url, None).unwrap();
        let b = Store::open_postgres(&url, None).unwrap();
        let held = a.lock(OPP).await.unwrap();
        assert!(!can_take(&b, OPP).await, "host b waits for host a");
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.lock(OPP).await.map(|_| ()) }
        });
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("host b gets the lock once host a released it")
            .unwrap()
            .unwrap();
    }

    fn seven() -> Vec<Statement> {
        vec![Statement::new("SELECT CAST(7 AS BIGINT)", Vec::new())]
    }

    /// What `lock_with` read under the lock.
    fn answered(answers: &[Vec<Row>]) -> i64 {
        answers[0][0].int(0).unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lock_taken_with_reads_answers_them_and_holds_until_dropped() {
        on_both_async!(|store: Store| async move {
            let (held, answers) = store.lock_with(OPP, &[], &seven(), || ()).await.unwrap();
            assert_eq!(answered(&answers), 7);
            assert!(!can_take(&store, OPP).await, "the second holder waits");
            held.still_held().await.unwrap();
            drop(held);
            assert!(can_take(&store, OPP).await, "free once dropped");
            assert_eq!(store.locks_in_use(), 0, "nothing kept once released");
        });
    }

    /// Free on every host: the lock and the reads are one round trip, its check none within a
    /// second of it (the socket read, `pg::LOCK_FRESH`) and one past that, and its release none
    /// (sent, not waited for), all on the caller's thread.
    #[tokio::test(flavor = "multi_thread")]
    async fn on_postgres_a_free_lock_is_taken_with_its_reads_in_one_round_trip() {
        let url = testing::postgres_url();
        let a = Store::open_postgres(&url, None).unwrap();
        let b = Store::open_postgres(&url, None).unwrap();
        // The connection's statements prepared first.
        drop(a.lock_with(OPP, &[], &seven(), || ()).await.unwrap());
        let trips = || a.writer_stats().round_trips;
        let before = trips();
        let (held, answers) = a.lock_with(OPP, &[], &seven(), || ()).await.unwrap();
        assert_eq!((trips() - before, answered(&answers)), (1, 7));
        assert!(!can_take(&b, OPP).await, "host b waits for host a");
        let before = trips();
        last_answer(&held, true);
        held.still_held().await.unwrap();
        assert_eq!(trips() - before, 0, "its socket read, no round trip");
        last_answer(&held, false);
        held.still_held().await.unwrap();
        drop(held);
        assert_eq!(
            trips() - before,
            1,
            "a check; the release is sent, its answer not waited for"
        );
        assert!(can_take(&b, OPP).await, "host b takes it once released");
        // The connection's next use reads the release's answer first, then its own.
        let (held, answers) = a.lock_with(OPP, &[], &seven(), || ()).await.unwrap();
        assert_eq!(answered(&answers), 7);
        held.still_held().await.unwrap();
    }

    /// Held by another host: the lock is waited for, then the reads are made under it.
    #[tokio::test(flavor = "multi_thread")]
    async fn on_postgres_a_lock_held_elsewhere_is_waited_for_then_read_under() {
        let url = testing::postgres_url();
        let a = Store::open_postgres(&url, None).unwrap();
        let b = Store::open_postgres(&url, None).unwrap();
        let (held, _) = a.lock_with(OPP, &[], &seven(), || ()).await.unwrap();
        let waiter = tokio::spawn({
            let b = b.clone();
            async move {
                let (held, answers) = b.lock_with(OPP, &[], &seven(), || ()).await?;
                held.still_held().await?;
                Ok::<_, StoreError>(answered(&answers))
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "host b waits for host a");
        drop(held);
        let read = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("host b gets the lock once host a released it")
            .unwrap()
            .unwrap();
        assert_eq!(read, 7);
    }

    /// The last answer of a lock taken with reads `fresh` (its check reads the socket) or past
    /// the second its socket answers for (its check is a round trip on its connection).
    fn last_answer(held: &HeldLock, fresh: bool) {
        match &held.advisory {
            Some(Advisory::Direct(lock)) => lock.answered(fresh),
            _ => panic!("taken with its reads"),
        }
    }

    /// A lock taken with reads lives as long as its connection: killed, the holder's check
    /// (its round trip) says so, and another host takes the lock.
    #[tokio::test(flavor = "multi_thread")]
    async fn on_postgres_a_lock_taken_with_reads_is_lost_with_its_connection() {
        let url = testing::postgres_url();
        let a = Store::open_postgres(&url, None).unwrap();
        let b = Store::open_postgres(&url, None).unwrap();
        let (held, _) = a.lock_with(OPP, &[], &seven(), || ()).await.unwrap();
        last_answer(&held, false);
        assert_eq!(
            terminate_lock_holders(&b),
            1,
            "one connection held the lock"
        );
        assert!(matches!(held.still_held().await, Err(StoreError::LockLost)));
        assert!(
            can_take(&b, OPP).await,
            "host b takes the lock of the dead connection"
        );
        drop(held);
    }

    /// Within a second of its session's last answer the check reads the lock's socket instead
    /// of a round trip: once another host can take the lock (its session ended), the holder's
    /// check says it is lost, before any effect. A session the server ends sends its error
    /// and closes its socket before its locks go.
    #[tokio::test(flavor = "multi_thread")]
    async fn on_postgres_a_lock_lost_is_seen_by_the_check_without_a_round_trip() {
        let url = testing::postgres_url();
        let [a, b] = [(); 2].map(|_| Store::open_postgres(&url, None).unwrap());
        let (held, _) = a.lock_with(OPP, &[], &seven(), || ()).await.unwrap();
        held.still_held().await.unwrap();
        assert_eq!(terminate_lock_holders(&b), 1);
        let taken = tokio::time::timeout(Duration::from_secs(10), b.lock(OPP)).await;
        assert!(
            taken.is_ok_and(|r| r.is_ok()),
            "b takes the dead one's lock"
        );
        let trips = a.writer_stats().round_trips;
        last_answer(&held, true);
        assert!(matches!(held.still_held().await, Err(StoreError::LockLost)));
        assert_eq!(a.writer_stats().round_trips, trips, "no round trip");
    }

    /// Ends every other session of `store`'s database that holds an advisory lock (as when a
    /// host's process is killed); how many.
    fn terminate_lock_holders(store: &Store) -> i64 {
        store
            .db(|db| {
                db.query_one(
                    "SELECT CAST(COUNT(pg_terminate_backend(pid)) AS BIGINT) FROM pg_locks
                     WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
                       AND database = (SELECT oid FROM pg_database
                                       WHERE datname = current_database())",
                    args![],
                )?
                .int(0)
            })
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_dead_hosts_lock_is_released_with_its_connection() {
        let url = testing::postgres_url();
        let a = Store::open_postgres(&url, None).unwrap();
        let b = Store::open_postgres(&url, None).unwrap();
        let _held = a.lock(OPP).await.unwrap();
        assert!(!can_take(&b, OPP).await);
        // Host a's lock connection dies (as when its process is killed): PostgreSQL drops it.
        assert_eq!(
            terminate_lock_holders(&b),
            1,
            "one connection held the lock"
        );
        assert!(
            tokio::time::timeout(Duration::from_secs(10), b.lock(OPP))
                .await
                .is_ok_and(|r| r.is_ok()),
            "host b takes the lock of the dead connection"
        );
    }
}
