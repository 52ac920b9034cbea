//! SQLite's page cache, wrapped so a commit does not scan the whole cache.
//!
//! At the end of every write transaction SQLite drops the cached pages past the database's end
//! (`pager_end_transaction` → `sqlite3PcacheTruncate(dbSize)`). Its default cache (`pcache1`)
//! walks only the hash slots between the limit and the largest page number it has seen since
//! the last truncation, unless those are more than its hash table holds: then it walks every
//! slot and every page of the cache. When a B-tree page splits and the new pages are out of
//! order, `balance_nonroot` swaps their numbers through a temporary one, the page of the
//! pending-byte lock (`PENDING_BYTE / page_size + 1`: page 262,145 at 4 KiB), far past the end
//! of any database under 1 GiB. The page is moved away again at once, but `pcache1` remembers
//! the number, so the next commit walks the whole cache: the writer's 32 MiB, at every commit
//! with such a split (most intake batches: the random `(integration, dedupe_key)` index).
//!
//! The wrapper keeps the default cache and forwards every call to it, and remembers the
//! largest page number held apart from that temporary one (`Keys`). A truncation with no page
//! at or past its limit is a no-op, and is not forwarded; any other is.
//!
//! A truncation of every page (a read connection's reset) drops the pages the cache was asked
//! for one by one (`Held`), not by `pcache1`'s walk of its hash table nor by `xShrink`: this
//! SQLite is built with `SQLITE_ENABLE_MEMORY_MANAGEMENT`, so every connection's cache is one
//! group with one recently-used list, and `xShrink` of any cache drops the unpinned pages of
//! all of them (the writer's 32 MiB at each reader's reset).
//!
//! [`install`] must run before SQLite is initialized (its first connection), with no other
//! thread using SQLite: the binary calls it first thing. Without it (the library's tests, an
//! embedding) SQLite keeps its default cache, which is correct, only slower.

use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The default cache's methods, which the wrapper forwards to.
static INNER: OnceLock<Methods> = OnceLock::new();

/// SQLite's method table: function pointers and the default cache's argument (null), set once
/// and only read afterwards, from any thread as SQLite does.
struct Methods(ffi::sqlite3_pcache_methods2);

// SAFETY: written once before SQLite starts, then only read; the pointer is SQLite's own.
unsafe impl Send for Methods {}
unsafe impl Sync for Methods {}

/// Truncations skipped where the default cache would have scanned its hash table.
static WALKS_AVOIDED: AtomicU64 = AtomicU64::new(0);

/// Truncations of every page done without the default cache's walk ([`Cache::emptied`]).
static EMPTIED: AtomicU64 = AtomicU64::new(0);

/// Tests: each truncation the wrapper would skip is forwarded anyway, and counted in
/// [`WRONG_SKIPS`] if the default cache then held fewer pages (the skip would have kept a page
/// it must drop).
#[cfg(test)]
static VERIFY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
#[cfg(test)]
static WRONG_SKIPS: AtomicU64 = AtomicU64::new(0);

/// SQLite's default `PENDING_BYTE`: the temporary page number of a swap is the page holding it.
const PENDING_BYTE: u32 = 0x4000_0000;

/// Which page numbers one cache may hold, as far as a truncation needs to know.
#[derive(Debug, Clone, Copy)]
struct Keys {
    /// Largest page number fetched or moved to, the swap's temporary one aside (an upper bound:
    /// pages evicted since are not subtracted).
    max: u32,
    /// Pages now at the temporary number (moved there and not yet away).
    parked: u32,
    /// The temporary number of this cache's page size.
    temporary: u32,
    /// The largest number the default cache has seen since its last truncation, the temporary
    /// one included: a truncation below it walks its hash table.
    seen: u32,
}

impl Keys {
    fn new(page_size: u32) -> Keys {
        Keys {
            max: 0,
            parked: 0,
            temporary: PENDING_BYTE / page_size.max(1) + 1,
            seen: 0,
        }
    }

    /// A page was found or created at `key`.
    fn fetched(&mut self, key: u32) {
        self.max = self.max.max(key);
        self.seen = self.seen.max(key);
    }

    /// A page moved from `old` to `new`.
    fn rekeyed(&mut self, old: u32, new: u32) {
        if old == self.temporary {
            self.parked = self.parked.saturating_sub(1);
        }
        if new == self.temporary {
            self.parked += 1;
        } else {
            self.max = self.max.max(new);
        }
        self.seen = self.seen.max(new);
    }

    /// What a truncation at `limit` (drop pages `>= limit`) does: forwarded when a page may be
    /// at or past `limit` (none remains after it), else skipped.
    fn truncate(&mut self, limit: u32) -> Truncation {
        let parked = self.parked > 0 && self.temporary >= limit;
        if self.max < limit && !parked {
            return match self.seen >= limit {
                true => Truncation::WalkAvoided,
                false => Truncation::Skipped,
            };
        }
        self.max = self.max.min(limit.saturating_sub(1));
        self.seen = self.seen.min(limit.saturating_sub(1));
        if self.temporary >= limit {
            self.parked = 0;
        }
        Truncation::Forwarded
    }
}

/// What became of a truncation.
#[derive(Debug, PartialEq, Eq)]
enum Truncation {
    /// Passed to the default cache: a page may be at or past the limit.
    Forwarded,
    /// Nothing to drop, and the default cache would have found so at once.
    Skipped,
    /// Nothing to drop, where the default cache would have walked its hash table.
    WalkAvoided,
}

/// One cache: the default one's handle and what it may hold.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    keys: Keys,
    held: Held,
}

/// Most page numbers a cache tracks between resets: a read connection's reads under steady
/// writes (a reset at each) ask for a few dozen; past this (a large read, the writer) the next
/// reset walks the hash table as `pcache1` does.
const TRACKED: usize = 128;

/// The page numbers a cache was asked for since it was last emptied, `None` once more than
/// [`TRACKED`]: every page the cache holds is among them while it is `Some`.
struct Held(Option<Vec<u32>>);

impl Held {
    fn new() -> Held {
        Held(Some(Vec::new()))
    }

    fn add(&mut self, key: u32) {
        if let Some(keys) = &mut self.0 {
            if keys.contains(&key) {
                return;
            }
            if keys.len() == TRACKED {
                self.0 = None;
                return;
            }
            keys.push(key);
        }
    }
}

impl Cache {
    /// Whether the default cache holds no page once the pages it was asked for are dropped,
    /// each looked up and discarded (`xFetch` without creating, `xUnpin` discarding). A
    /// truncation of every page (`limit` 1) comes with none pinned (SQLite keeps page 1 then).
    ///
    /// The default cache's own truncation walks every slot of its hash table, which keeps the
    /// size it grew to for the connection's largest read, however few pages it holds now: most
    /// of the CPU of a read of a few pages, for a read connection reset at nearly every read.
    ///
    /// # Safety
    /// `self.inner` is a live handle of the default cache, used from its connection's thread,
    /// with no page pinned.
    unsafe fn emptied(&mut self) -> bool {
        let i = inner();
        let (Some(fetch), Some(unpin), Some(count)) = (i.xFetch, i.xUnpin, i.xPagecount) else {
            return false;
        };
        let Some(keys) = self.held.0.as_mut() else {
            return false;
        };
        for key in keys.drain(..) {
            // A page another cache of the group recycled is gone already.
            let page = unsafe { fetch(self.inner, key, 0) };
            if !page.is_null() {
                unsafe { unpin(self.inner, page, 1) };
            }
        }
        unsafe { count(self.inner) == 0 }
    }
}

fn inner() -> &'static ffi::sqlite3_pcache_methods2 {
    // Only reachable through the methods `install` gave SQLite after setting it.
    &INNER.get().expect("page cache installed").0
}

/// The wrapper's `Cache` behind SQLite's opaque handle.
///
/// # Safety
/// `p` is a handle `create` returned and `destroy` has not freed; SQLite calls one cache's
/// methods from one thread at a time (under its connection).
unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    unsafe { &mut *(p as *mut Cache) }
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    let i = inner();
    match i.xInit {
        Some(f) => unsafe { f(i.pArg) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn shutdown(_: *mut c_void) {
    let i = inner();
    if let Some(f) = i.xShutdown {
        unsafe { f(i.pArg) }
    }
}

unsafe extern "C" fn create(
    page: c_int,
    extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(f) = inner().xCreate else {
        return std::ptr::null_mut();
    };
    let handle = unsafe { f(page, extra, purgeable) };
    if handle.is_null() {
        return handle;
    }
    let keys = Keys::new(u32::try_from(page).unwrap_or(1));
    Box::into_raw(Box::new(Cache {
        inner: handle,
        keys,
        held: Held::new(),
    })) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn cachesize(p: *mut ffi::sqlite3_pcache, n: c_int) {
    if let Some(f) = inner().xCachesize {
        unsafe { f(cache(p).inner, n) }
    }
}

unsafe extern "C" fn pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    match inner().xPagecount {
        Some(f) => unsafe { f(cache(p).inner) },
        None => 0,
    }
}

unsafe extern "C" fn fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let Some(f) = inner().xFetch else {
        return std::ptr::null_mut();
    };
    let c = unsafe { cache(p) };
    let page = unsafe { f(c.inner, key, create) };
    // A lookup that found nothing (a swap checks its target first) adds no page.
    if !page.is_null() {
        c.keys.fetched(key);
        c.held.add(key);
    }
    page
}

unsafe extern "C" fn unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    if let Some(f) = inner().xUnpin {
        unsafe { f(cache(p).inner, page, discard) }
    }
}

unsafe extern "C" fn rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    let c = unsafe { cache(p) };
    if let Some(f) = inner().xRekey {
        unsafe { f(c.inner, page, old, new) }
    }
    c.keys.rekeyed(old, new);
    c.held.add(new);
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let c = unsafe { cache(p) };
    let decided = c.keys.truncate(limit);
    #[cfg(test)]
    if decided != Truncation::Forwarded && VERIFY.load(Ordering::Relaxed) {
        let i = inner();
        if let (Some(count), Some(f)) = (i.xPagecount, i.xTruncate) {
            let before = unsafe { count(c.inner) };
            unsafe { f(c.inner, limit) };
            if unsafe { count(c.inner) } < before {
                WRONG_SKIPS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    match decided {
        Truncation::Skipped => {}
        Truncation::WalkAvoided => {
            WALKS_AVOIDED.fetch_add(1, Ordering::Relaxed);
        }
        Truncation::Forwarded => {
            if limit <= 1 && unsafe { c.emptied() } {
                EMPTIED.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if let Some(f) = inner().xTruncate {
                unsafe { f(c.inner, limit) }
            }
            if limit <= 1 {
                // Empty now: tracked again from here.
                c.held = Held::new();
            }
        }
    }
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    let c = unsafe { Box::from_raw(p as *mut Cache) };
    if let Some(f) = inner().xDestroy {
        unsafe { f(c.inner) }
    }
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    if let Some(f) = inner().xShrink {
        unsafe { f(cache(p).inner) }
    }
}

/// Puts the wrapper in front of SQLite's default page cache; false if SQLite refused (it was
/// already initialized: the default cache stays).
///
/// # Safety
/// No other thread may call SQLite while this runs (`sqlite3_config` is not thread-safe); call
/// it before the first connection, as the binary does first thing.
pub unsafe fn install() -> bool {
    if INNER.get().is_some() {
        return true;
    }
    let mut default = std::mem::MaybeUninit::<ffi::sqlite3_pcache_methods2>::zeroed();
    let got = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, default.as_mut_ptr()) };
    if got != ffi::SQLITE_OK {
        return false;
    }
    let default = unsafe { default.assume_init() };
    if INNER.set(Methods(default)).is_err() {
        return true;
    }
    let wrapper = ffi::sqlite3_pcache_methods2 {
        iVersion: 1,
        pArg: std::ptr::null_mut(),
        xInit: Some(init),
        xShutdown: Some(shutdown),
        xCreate: Some(create),
        xCachesize: Some(cachesize),
        xPagecount: Some(pagecount),
        xFetch: Some(fetch),
        xUnpin: Some(unpin),
        xRekey: Some(rekey),
        xTruncate: Some(truncate),
        xDestroy: Some(destroy),
        xShrink: Some(shrink),
    };
    // SQLite copies the struct.
    unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_PCACHE2,
            &wrapper as *const ffi::sqlite3_pcache_methods2,
        ) == ffi::SQLITE_OK
    }
}

/// Truncations skipped so far (process-wide) where the default cache would have scanned its
/// hash table (all of it, or the slots between the limit and the largest key it saw).
pub fn walks_avoided() -> u64 {
    WALKS_AVOIDED.load(Ordering::Relaxed)
}

/// Truncations of every page done so far (process-wide) by dropping the cache's pages alone,
/// where the default cache would have walked its whole hash table ([`Cache::emptied`]).
pub fn resets_emptied() -> u64 {
    EMPTIED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Enqueued, Store};

    #[test]
    fn a_truncation_is_forwarded_only_when_a_page_may_be_at_or_past_its_limit() {
        use Truncation::*;
        let mut k = Keys::new(4096);
        assert_eq!(k.temporary, 262_145);
        for key in 1..=100 {
            k.fetched(key);
        }
        assert_eq!(k.truncate(101), Skipped);
        // A split swapping pages 40 and 90 through the temporary number.
        k.rekeyed(40, k.temporary);
        k.rekeyed(90, 40);
        k.rekeyed(k.temporary, 90);
        assert_eq!(k.truncate(101), WalkAvoided, "nothing past the end");
        assert_eq!(k.truncate(51), Forwarded, "a shrink drops pages 51..=100");
        assert_eq!(k.truncate(51), Skipped, "and then nothing is left past 50");
        // A page left at the temporary number (SQLite never leaves one): forwarded.
        k.rekeyed(7, k.temporary);
        assert_eq!(k.truncate(60), Forwarded);
        assert_eq!(k.truncate(60), Skipped);
        k.fetched(70);
        assert_eq!(k.truncate(1), Forwarded, "clearing the cache");
    }

    /// Set in the child process of [`a_store_with_the_wrapper_commits_without_walking_its_cache`].
    const CHILD: &str = "SWITCHYARD_PAGE_CACHE_CHILD";

    /// With the wrapper installed (in a child process of this test binary, where SQLite is not
    /// initialized yet and no other test runs), webhooks with random keys split the unique
    /// index's pages out of order, and their commits skip the default cache's walk; what they
    /// stored reads back whole, after a batch that grew the file was rolled back too. (With the
    /// binary's whole configuration, [`sqlite_global`](crate::store::sqlite_global): SQLite's
    /// memory statistics are off too, and count nothing; the group commit's WAL writes are
    /// gathered, and what they wrote reads back, whole, through other connections.)
    #[test]
    fn a_store_with_the_wrapper_commits_without_walking_its_cache() {
        let name =
            "store::page_cache::tests::a_store_with_the_wrapper_commits_without_walking_its_cache";
        if std::env::var_os(CHILD).is_none() {
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new(exe)
                .args(["--exact", name, "--test-threads=1", "--nocapture"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "child: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("1 passed"), "the child ran the test: {text}");
            return;
        }
        // SAFETY: this process runs only this test, on this thread, and has not used SQLite.
        // The binary's whole configuration, as `main` sets it.
        let configured = unsafe { crate::store::sqlite_global::configure() };
        assert!(configured.page_cache, "installed before SQLite's first use");
        assert!(configured.memstatus_off);
        assert!(configured.mimalloc, "SQLite allocates through mimalloc");
        assert!(configured.wal_writes);
        VERIFY.store(true, Ordering::Relaxed);
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let keys: Vec<String> = (0..3000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                format!("lever:{state:016x}")
            })
            .collect();
        runtime.block_on(async {
            for chunk in keys.chunks(50) {
                let writes = chunk
                    .iter()
                    .map(|key| store.enqueue_batched("acme", "lever.stage_change", key, "{}"));
                for done in futures::future::join_all(writes).await {
                    assert!(matches!(done.unwrap(), Enqueued::New(_)));
                }
            }
        });
        assert!(walks_avoided() > 0, "no commit skipped a walk");
        // Pruned and returned to the file system, then grown again: pages move and the file
        // shrinks under the cache (pointer-map pages read back), read connections between.
        for key in keys.iter().step_by(2) {
            store
                .conn()
                .unwrap()
                .execute("DELETE FROM events WHERE dedupe_key = ?1", [key])
                .unwrap();
        }
        store.incremental_vacuum(u32::MAX).unwrap();
        let half: i64 = store
            .read_db(|db| db.query_one("SELECT COUNT(*) FROM events", &[])?.int(0))
            .unwrap();
        assert_eq!(half, 1500);
        runtime.block_on(async {
            for key in keys.iter().step_by(2) {
                let again = store.enqueue_batched("acme", "lever.stage_change", key, "{}");
                assert!(matches!(again.await.unwrap(), Enqueued::New(_)));
            }
        });
        assert_eq!(
            WRONG_SKIPS.load(Ordering::Relaxed),
            0,
            "a skipped truncation would have kept pages past the end"
        );
        // A batch that grows the file, rolled back: its pages past the end are dropped.
        let conn = store.conn().unwrap();
        conn.execute_batch(
            "BEGIN IMMEDIATE; CREATE TABLE filler (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
             INSERT INTO filler SELECT zeroblob(4000) FROM n;
             ROLLBACK;
             CREATE TABLE later (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
             INSERT INTO later SELECT randomblob(3000) FROM n;",
        )
        .unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let stored: i64 = conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 3000);
        // A read connection that read many pages, then reads again after a write: its cache
        // is emptied without the walk of its hash table, and the read sees the write.
        let reads = || {
            store
                .read_db(|db| {
                    let all = db.query_one("SELECT COUNT(*) FROM events WHERE kind > ''", &[])?;
                    let later = db.query_one("SELECT COUNT(*) FROM later", &[])?;
                    Ok((all.int(0)?, later.int(0)?))
                })
                .unwrap()
        };
        assert_eq!(reads(), (3000, 200));
        conn.execute("DELETE FROM later WHERE rowid <= 50", [])
            .unwrap();
        // Many pages read since the last reset: this one walks, as the default cache does.
        assert_eq!(reads(), (3000, 150));
        // A read of a few pages, reset at each read after a write: its pages are dropped one
        // by one, without the walk.
        let few = || {
            store
                .read_db(|db| {
                    db.query_one("SELECT length(b) FROM later WHERE rowid = 100", &[])?
                        .int(0)
                })
                .unwrap()
        };
        assert_eq!(few(), 3000);
        conn.execute("DELETE FROM later WHERE rowid = 51", [])
            .unwrap();
        assert_eq!(few(), 3000);
        let before = resets_emptied();
        conn.execute("DELETE FROM later WHERE rowid = 52", [])
            .unwrap();
        assert_eq!(few(), 3000);
        assert!(
            resets_emptied() > before,
            "the reader's reset walked its cache"
        );
        // Every connection's cache is one group (SQLITE_ENABLE_MEMORY_MANAGEMENT): a reader's
        // reset leaves the writer's pages cached (`xShrink` there dropped them all).
        let misses = || {
            let (mut now, mut high) = (0, 0);
            // SAFETY: the connection is open and used by this thread only.
            let rc = unsafe {
                ffi::sqlite3_db_status(
                    conn.handle(),
                    ffi::SQLITE_DBSTATUS_CACHE_MISS,
                    &mut now,
                    &mut high,
                    0,
                )
            };
            assert_eq!(rc, ffi::SQLITE_OK);
            now
        };
        let count = || -> i64 {
            conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
                .unwrap()
        };
        conn.execute("DELETE FROM later WHERE rowid = 53", [])
            .unwrap();
        assert_eq!(count(), 3000);
        let cached = misses();
        assert_eq!(few(), 3000);
        assert_eq!(count(), 3000);
        assert_eq!(
            misses(),
            cached,
            "the writer read pages again after a reader's reset"
        );
        // Memory statistics off: SQLite counted none of the allocations above.
        assert_eq!(unsafe { ffi::sqlite3_memory_used() }, 0);
        // The group commit's WAL writes were gathered, several into each call.
        let (gathered, calls) = crate::store::wal_writes::gathered();
        assert!(
            calls > 0 && gathered > 4 * calls,
            "{gathered} writes in {calls} calls"
        );
    }
}
