//! SQLite's process-wide configuration, set by the binary before SQLite starts.
//!
//! - Memory statistics off (`SQLITE_CONFIG_MEMSTATUS`): the bundled SQLite otherwise counts
//!   every allocation and free under one global mutex, for `sqlite3_memory_used` and the soft
//!   heap limit, neither of which the host reads or sets. Every connection's allocations (the
//!   writer's most of all) paid for that lock.
//! - Its allocations through mimalloc, the binary's global allocator ([`sqlite_malloc`]).
//! - The page cache wrapper ([`page_cache`]).
//! - The WAL's writes of a flushed commit gathered into few system calls ([`wal_writes`]): the
//!   default VFS, wrapped.
//!
//! Each must be set before SQLite is initialized (its first connection), with no other thread
//! using SQLite: the binary calls [`configure`] first thing. Without it (the library's tests,
//! an embedding) SQLite keeps its defaults, which are correct, only slower.

use rusqlite::ffi;

use super::{page_cache, sqlite_malloc, wal_writes};

/// What [`configure`] could set (SQLite refuses either once it is initialized).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Configured {
    pub memstatus_off: bool,
    pub mimalloc: bool,
    pub page_cache: bool,
    pub wal_writes: bool,
}

/// Sets SQLite's process-wide configuration (see the module docs).
///
/// # Safety
/// No other thread may call SQLite while this runs (`sqlite3_config` is not thread-safe); call
/// it before the first connection, as the binary does first thing.
pub unsafe fn configure() -> Configured {
    let off: std::ffi::c_int = 0;
    let memstatus_off =
        unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, off) } == ffi::SQLITE_OK;
    let mimalloc = unsafe { sqlite_malloc::install() };
    let page_cache = unsafe { page_cache::install() };
    // Last: finding the default VFS initializes SQLite, after which the three above are refused.
    let wal_writes = unsafe { wal_writes::install() };
    Configured {
        memstatus_off,
        mimalloc,
        page_cache,
        wal_writes,
    }
}
