//! SQLite's WAL written in a few system calls per commit instead of two per page.
//!
//! SQLite appends each frame of a commit to the WAL with two `pwrite`s, its 24-byte header and
//! its page: about 190 system calls for an intake batch of ~95 frames, on the writer thread
//! every webhook waits for. This VFS is the default one with the WAL files' writes gathered in
//! memory while they are contiguous, and written in a few calls (64 KiB each) when anything
//! else touches the file: a write elsewhere, a read, its size, a truncation, a file control, its close, and
//! above all the `xSync` that a flushed commit (`synchronous=FULL`) makes before it publishes
//! its frames in the WAL index. Nothing else changes: the database file, the WAL index and
//! every other file go straight to the default VFS, and so do the WAL writes of any commit
//! that is not flushed.
//!
//! Writes are gathered only inside [`flushed_commit`], which the group commit wraps around its
//! flushed batches: there every commit ends in `xSync`, so no frame is published (nor read by
//! another connection, nor checkpointed) before it is in the file. A commit that is not flushed
//! (`synchronous=NORMAL`: a batch of processing bookkeeping) writes its frames directly, as
//! SQLite would, since it publishes them with no call on the WAL file between. A write gathered
//! and then abandoned (a rollback after a cache spill: frames past the last commit, never
//! read) is written before the next call on the file, where SQLite would have written it, so
//! the file sees the same writes in the same order. A crash loses only what was not yet
//! written, which no commit had published.
//!
//! [`install`] registers it as the default VFS, before the first connection (the binary's
//! start, [`super::sqlite_global`]); without it (the library's tests, an embedding) SQLite
//! writes its WAL itself.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

/// Bytes gathered at most before they are written.
const GATHER: usize = 1 << 20;

thread_local! {
    /// Whether this thread's WAL writes may be gathered (inside [`flushed_commit`]).
    static GATHERING: Cell<bool> = const { Cell::new(false) };
}

/// Writes that went to the file gathered with others: SQLite's writes, and the calls they took.
static GATHERED_WRITES: AtomicU64 = AtomicU64::new(0);
static WRITE_CALLS: AtomicU64 = AtomicU64::new(0);

/// Runs `commit`, a transaction whose commit is flushed (`synchronous=FULL`), with its WAL
/// writes gathered (see the module docs).
pub(in crate::store) fn flushed_commit<R>(commit: impl FnOnce() -> R) -> R {
    /// Ends the gathering even if `commit` panics: a later commit that is not flushed must
    /// write its frames before it publishes them.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GATHERING.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GATHERING.with(|g| g.replace(true)));
    commit()
}

/// SQLite's WAL writes gathered into fewer calls so far, and the calls they took (process-wide).
#[cfg(test)]
pub(in crate::store) fn gathered() -> (u64, u64) {
    (
        GATHERED_WRITES.load(Ordering::Relaxed),
        WRITE_CALLS.load(Ordering::Relaxed),
    )
}

/// The default VFS under this one (which is leaked: SQLite keeps it, and writes its `pNext`).
struct Vfs {
    inner: *mut ffi::sqlite3_vfs,
    /// Where a file's [`Gather`] starts: after the default VFS's file, aligned.
    offset: usize,
}

/// The default VFS's WAL methods, and the same with the gathering ones in place.
struct Methods {
    inner: *const ffi::sqlite3_io_methods,
    outer: ffi::sqlite3_io_methods,
}

// SAFETY: set once before SQLite uses them, then only read, from any thread, as SQLite does.
unsafe impl Send for Vfs {}
unsafe impl Sync for Vfs {}
unsafe impl Send for Methods {}
unsafe impl Sync for Methods {}

static VFS: OnceLock<Vfs> = OnceLock::new();
static METHODS: OnceLock<Methods> = OnceLock::new();

/// A WAL file's gathered writes: `bytes` to be written at `at`.
struct Gather {
    at: i64,
    bytes: Vec<u8>,
}

fn vfs() -> &'static Vfs {
    // Only reachable through the VFS `install` registered after setting it.
    VFS.get().expect("VFS installed")
}

fn inner() -> &'static ffi::sqlite3_io_methods {
    // Only reachable through files whose methods were set after it.
    unsafe { &*METHODS.get().expect("WAL methods set").inner }
}

/// The gathered writes of `file`, one of this VFS's WAL files.
unsafe fn gather<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Gather {
    unsafe { &mut *((file as *mut u8).add(vfs().offset) as *mut Gather) }
}

/// Bytes per write of what was gathered: SQLite's unix VFS writes at most 128 KiB - 1 per call
/// (it masks the length to 17 bits, and takes a write of none for a full disk).
const WRITE: usize = 1 << 16;

/// Writes what `file` gathered, if anything.
unsafe fn write_out(file: *mut ffi::sqlite3_file) -> c_int {
    let g = unsafe { gather(file) };
    let Some(write) = inner().xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut rc = ffi::SQLITE_OK;
    let mut at = g.at;
    for chunk in g.bytes.chunks(WRITE) {
        WRITE_CALLS.fetch_add(1, Ordering::Relaxed);
        // At most `WRITE` bytes: the length fits.
        let len = chunk.len() as c_int;
        rc = unsafe { write(file, chunk.as_ptr() as *const c_void, len, at) };
        if rc != ffi::SQLITE_OK {
            break;
        }
        at += chunk.len() as i64;
    }
    // Written or failed, it is not written again: a failure fails the transaction.
    g.bytes.clear();
    rc
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let v = vfs();
    let Some(open) = (unsafe { (*v.inner).xOpen }) else {
        return ffi::SQLITE_CANTOPEN;
    };
    let rc = unsafe { open(v.inner, name, file, flags, out_flags) };
    if rc != ffi::SQLITE_OK || flags & ffi::SQLITE_OPEN_WAL == 0 {
        return rc;
    }
    let methods = unsafe { (*file).pMethods };
    if methods.is_null() {
        return rc;
    }
    let ours = METHODS.get_or_init(|| {
        let mut outer = unsafe { *methods };
        outer.xClose = Some(close);
        outer.xRead = Some(read);
        outer.xWrite = Some(write);
        outer.xTruncate = Some(truncate);
        outer.xSync = Some(sync);
        outer.xFileSize = Some(file_size);
        outer.xFileControl = Some(file_control);
        Methods {
            inner: methods,
            outer,
        }
    });
    // Another kind of file than the first WAL's (SQLite has several locking styles): left as
    // the default VFS opened it.
    if ours.inner != methods {
        return rc;
    }
    unsafe {
        std::ptr::write(
            (file as *mut u8).add(v.offset) as *mut Gather,
            Gather {
                at: 0,
                bytes: Vec::new(),
            },
        );
        (*file).pMethods = &ours.outer;
    }
    rc
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let written = unsafe { write_out(file) };
    unsafe { std::ptr::drop_in_place(gather(file)) };
    let closed = match inner().xClose {
        Some(close) => unsafe { close(file) },
        None => ffi::SQLITE_OK,
    };
    if written != ffi::SQLITE_OK {
        written
    } else {
        closed
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let len = usize::try_from(amount).unwrap_or(0);
    if GATHERING.with(Cell::get) && len > 0 && len <= GATHER {
        let g = unsafe { gather(file) };
        let end = g.at + g.bytes.len() as i64;
        if !g.bytes.is_empty() && (offset != end || g.bytes.len() + len > GATHER) {
            let rc = unsafe { write_out(file) };
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let g = unsafe { gather(file) };
        if g.bytes.is_empty() {
            g.at = offset;
        }
        g.bytes
            .extend_from_slice(unsafe { std::slice::from_raw_parts(data as *const u8, len) });
        GATHERED_WRITES.fetch_add(1, Ordering::Relaxed);
        return ffi::SQLITE_OK;
    }
    let write = inner().xWrite;
    unsafe {
        written_then(file, || {
            write.map_or(ffi::SQLITE_IOERR_WRITE, |f| f(file, data, amount, offset))
        })
    }
}

/// Runs `call` (the default VFS's method) once what `file` gathered is written, else fails.
unsafe fn written_then(file: *mut ffi::sqlite3_file, call: impl FnOnce() -> c_int) -> c_int {
    match unsafe { write_out(file) } {
        ffi::SQLITE_OK => call(),
        failed => failed,
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let read = inner().xRead;
    unsafe {
        written_then(file, || {
            read.map_or(ffi::SQLITE_IOERR_READ, |f| f(file, data, amount, offset))
        })
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    let truncate = inner().xTruncate;
    unsafe {
        written_then(file, || {
            truncate.map_or(ffi::SQLITE_IOERR_TRUNCATE, |f| f(file, size))
        })
    }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let sync = inner().xSync;
    unsafe {
        written_then(file, || {
            sync.map_or(ffi::SQLITE_IOERR_FSYNC, |f| f(file, flags))
        })
    }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    let file_size = inner().xFileSize;
    unsafe {
        written_then(file, || {
            file_size.map_or(ffi::SQLITE_IOERR_FSTAT, |f| f(file, size))
        })
    }
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    let control = inner().xFileControl;
    unsafe {
        written_then(file, || {
            control.map_or(ffi::SQLITE_NOTFOUND, |f| f(file, op, arg))
        })
    }
}

/// Registers this VFS as SQLite's default; false if there is no default VFS to wrap.
///
/// # Safety
/// Before the first connection, with no other thread using SQLite (as [`super::sqlite_global`]
/// is called): connections opened before keep the default VFS, which is correct too.
pub(in crate::store) unsafe fn install() -> bool {
    if VFS.get().is_some() {
        return true;
    }
    let inner = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    if inner.is_null() {
        return false;
    }
    let mut outer = unsafe { *inner };
    let align = std::mem::align_of::<Gather>();
    let inner_size = usize::try_from(outer.szOsFile).unwrap_or(0);
    let offset = inner_size.div_ceil(align) * align;
    let Ok(size) = c_int::try_from(offset + std::mem::size_of::<Gather>()) else {
        return false;
    };
    outer.szOsFile = size;
    outer.zName = c"switchyard".as_ptr();
    outer.pNext = std::ptr::null_mut();
    outer.xOpen = Some(open);
    // The other methods are the default VFS's, which read only fields copied with them.
    let outer = Box::into_raw(Box::new(outer));
    if VFS.set(Vfs { inner, offset }).is_err() {
        return true;
    }
    unsafe { ffi::sqlite3_vfs_register(outer, 1) == ffi::SQLITE_OK }
}
