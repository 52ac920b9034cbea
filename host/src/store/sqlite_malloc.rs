//! SQLite's allocations through mimalloc, the binary's global allocator (`host/src/main.rs`).
//!
//! SQLite allocates and frees on every statement (its VDBE's memory cells, the parser, the
//! page cache's headers), the group commit's writer most of all; left on glibc's `malloc`,
//! those calls were the largest share of the writer's allocator samples while the host's own
//! went through mimalloc. [`install`] hands SQLite mimalloc's functions
//! (`SQLITE_CONFIG_MALLOC`), with its contract kept: `xSize` is the block's usable size
//! (`mi_usable_size`, at least what was asked, which SQLite may use whole) and `xRoundup` the
//! size `xMalloc` would give (`mi_good_size`). SQLite never asks for 0 bytes or for more than
//! `i32::MAX` (`sqlite3Malloc` refuses both before calling).
//!
//! Like the rest of [`super::sqlite_global`], it must be set before SQLite is initialized.

use std::ffi::{c_int, c_void};

use libmimalloc_sys as mi;
use rusqlite::ffi;

/// An `int` size from SQLite as mimalloc's `usize` (SQLite never passes a negative one).
fn size(n: c_int) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// A size for SQLite's `int`, capped (a block over 2 GiB is never asked for).
fn int(n: usize) -> c_int {
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    // SAFETY: mimalloc's malloc, any size.
    unsafe { mi::mi_malloc(size(n)) }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    // SAFETY: `p` came from `x_malloc` / `x_realloc` (or is null), as SQLite guarantees.
    unsafe { mi::mi_free(p) }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: as `x_free`.
    unsafe { mi::mi_realloc(p, size(n)) }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    // SAFETY: as `x_free`; 0 for null.
    int(unsafe { mi::mi_usable_size(p) })
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    // SAFETY: a pure function of the size.
    int(unsafe { mi::mi_good_size(size(n)) })
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// SQLite's allocation methods: mimalloc's.
fn methods() -> ffi::sqlite3_mem_methods {
    ffi::sqlite3_mem_methods {
        xMalloc: Some(x_malloc),
        xFree: Some(x_free),
        xRealloc: Some(x_realloc),
        xSize: Some(x_size),
        xRoundup: Some(x_roundup),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        pAppData: std::ptr::null_mut(),
    }
}

/// Routes SQLite's allocations to mimalloc; false if SQLite refused (already initialized).
///
/// # Safety
/// As [`super::sqlite_global::configure`]: before SQLite's first use, no other thread in it.
pub(in crate::store) unsafe fn install() -> bool {
    // SQLite copies the methods.
    let methods = methods();
    unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods) == ffi::SQLITE_OK }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract SQLite relies on: a block holds at least what was asked, `xSize` says how
    /// much (SQLite may use it all), `xRoundup` is what `xMalloc` gives, and `xRealloc` keeps
    /// the content.
    #[test]
    fn the_methods_keep_sqlites_allocator_contract() {
        let m = methods();
        let (malloc, free, realloc) = (m.xMalloc.unwrap(), m.xFree.unwrap(), m.xRealloc.unwrap());
        let (msize, roundup) = (m.xSize.unwrap(), m.xRoundup.unwrap());
        for n in [1, 7, 8, 100, 4_096, 65_537, 1 << 20] {
            // SAFETY: the methods as SQLite calls them: positive sizes, blocks they returned.
            unsafe {
                let p = malloc(n);
                assert!(!p.is_null());
                assert_eq!(p as usize % 8, 0, "8-byte aligned");
                let usable = msize(p);
                assert!(usable >= n, "{n}: {usable}");
                assert_eq!(usable, roundup(n), "{n}: xRoundup is what xMalloc gives");
                std::ptr::write_bytes(p.cast::<u8>(), 0xa5, usable as usize);
                let q = realloc(p, n * 3);
                assert!(msize(q) >= n * 3);
                let kept = std::slice::from_raw_parts(q.cast::<u8>(), n as usize);
                assert!(kept.iter().all(|&b| b == 0xa5), "{n}: content kept");
                free(q);
            }
        }
        // SAFETY: SQLite's `sqlite3_msize(NULL)` asks nothing of the method; null has size 0.
        assert_eq!(unsafe { msize(std::ptr::null_mut()) }, 0);
    }
}
