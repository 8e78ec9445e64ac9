//! The writer's write-ahead log, written a commit at a time.
//!
//! SQLite writes a commit's frames to the log with two `pwrite` calls each (a 24-byte header,
//! then the page), and as a frame is 24 bytes longer than a page, every page write straddles
//! two of the kernel's pages: a commit of 50 frames cost 100 system calls and about 150 page
//! updates in the page cache, 7% of the server's CPU under load. This VFS is the default one
//! (`unix`) except for log files, whose writes gather in memory while they follow one another
//! and go to the file in a few large writes: at the end of each commit, and before anything
//! else is done with the file.
//!
//! When the log's bytes reach the file does not change what a commit means. SQLite publishes a
//! commit to readers (the log index in shared memory) only after the commit frame's write
//! returns, and that write is the one that sends the gathered frames; a read, a size, a sync or
//! a truncation of the file first sends whatever is gathered; and the commit is durable only
//! once the syncer's `fdatasync`, after `COMMIT` returned, covered those bytes. A commit whose
//! frames fail to reach the file fails as it would have with its own writes failing.
//!
//! Only the writer's connection uses this VFS; every connection shares the same files, locks and
//! log index, which the `unix` VFS keeps per file, whichever VFS object opened it.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use rusqlite::ffi;

/// The VFS's name, for `Connection::open_with_flags_and_vfs`.
pub(super) const NAME: &CStr = c"otatrail-wal";

/// Length of a log frame's header. A write of this length is a frame header (pages are at
/// least 512 bytes, the log's own header 32).
const FRAME_HEADER: usize = 24;

/// Bytes gathered past which they are sent before the commit ends (a very large commit).
const MAX_GATHERED: usize = 4 << 20;

/// Bytes handed to the `unix` VFS in one write: it cuts a write's length to its low 17 bits
/// (`seekAndWriteFd`), so a longer write is cut short, and one whose length is a multiple of
/// 128 KiB fails as if the disk were full.
const MAX_WRITE: usize = 64 << 10;

/// A log file: the `unix` file it wraps follows this struct in SQLite's allocation.
#[repr(C)]
struct LogFile {
    /// Must come first: SQLite sees a `sqlite3_file`.
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// Bytes written but not yet sent, for the file from `at` on.
    gathered: Vec<u8>,
    at: i64,
    /// A commit frame's header was written since the last other frame header: what follows
    /// (its page, and padding frames if SQLite writes any) is sent as it comes.
    through: bool,
}

/// Offset of the wrapped file in the allocation (pointer-aligned).
const INNER_OFFSET: usize = std::mem::size_of::<LogFile>().next_multiple_of(16);

/// The VFS this one wraps, set before it is registered; and the registration's result.
static DEFAULT: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());
static REGISTERED: OnceLock<c_int> = OnceLock::new();

/// Registers the VFS (once; not as the default). Returns SQLite's result code.
pub(super) fn register() -> c_int {
    *REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS, which lives as long as the
        // process; the copy is leaked, as a registered VFS must outlive every connection.
        unsafe {
            let default = ffi::sqlite3_vfs_find(std::ptr::null());
            if default.is_null() {
                return ffi::SQLITE_ERROR;
            }
            let mut vfs = *default;
            vfs.zName = NAME.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.szOsFile = (INNER_OFFSET + (*default).szOsFile as usize) as c_int;
            vfs.xOpen = Some(open);
            DEFAULT.store(default, Ordering::Release);
            ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0)
        }
    })
}

unsafe extern "C" fn open(_vfs: *mut ffi::sqlite3_vfs, name: *const c_char, file: *mut ffi::sqlite3_file, flags: c_int, out_flags: *mut c_int) -> c_int {
    // SAFETY (the whole function): SQLite hands `file` with `szOsFile` bytes of room; `DEFAULT`
    // is set before registration.
    unsafe {
        let default = DEFAULT.load(Ordering::Acquire);
        let default_open = (*default).xOpen.expect("the default VFS opens files");
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Any other file is the default VFS's own, methods and all.
            return default_open(default, name, file, flags, out_flags);
        }
        let inner = file.cast::<u8>().add(INNER_OFFSET).cast::<ffi::sqlite3_file>();
        std::ptr::write(
            file.cast::<LogFile>(),
            LogFile { base: ffi::sqlite3_file { pMethods: std::ptr::null() }, inner, gathered: Vec::new(), at: 0, through: false },
        );
        let rc = default_open(default, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // A null `pMethods`: SQLite does not call `xClose`. The wrapped file, if the default
            // VFS left it half-open, is its to close.
            if !(*inner).pMethods.is_null() {
                inner_methods(inner).xClose.map(|close| close(inner));
            }
            std::ptr::drop_in_place(file.cast::<LogFile>());
            return rc;
        }
        (*file).pMethods = &LOG_METHODS;
        ffi::SQLITE_OK
    }
}

/// The wrapped file's methods.
unsafe fn inner_methods<'a>(inner: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    // SAFETY: an open file's methods live as long as the VFS.
    unsafe { &*(*inner).pMethods }
}

/// The log file behind `file`.
unsafe fn log<'a>(file: *mut ffi::sqlite3_file) -> &'a mut LogFile {
    // SAFETY: every file with `LOG_METHODS` was made a `LogFile` by `open`, and SQLite uses a
    // file from one thread at a time.
    unsafe { &mut *file.cast::<LogFile>() }
}

impl LogFile {
    /// Sends what is gathered. Whatever happens, nothing stays gathered: on failure the
    /// commit fails, and SQLite writes its frames again if it tries again.
    unsafe fn send(&mut self) -> c_int {
        if self.gathered.is_empty() {
            return ffi::SQLITE_OK;
        }
        let mut rc = ffi::SQLITE_OK;
        let mut at = self.at;
        for chunk in self.gathered.chunks(MAX_WRITE) {
            // SAFETY: `inner` is open while `self` is.
            rc = unsafe {
                let write = inner_methods(self.inner).xWrite.expect("files are writable");
                write(self.inner, chunk.as_ptr().cast(), chunk.len() as c_int, at)
            };
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += chunk.len() as i64;
        }
        self.gathered.clear();
        if self.gathered.capacity() > MAX_GATHERED {
            self.gathered.shrink_to(MAX_GATHERED);
        }
        rc
    }
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite passes `amount` readable bytes at `data`.
    unsafe {
        let f = log(file);
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amount as usize);
        if !f.gathered.is_empty() && offset != f.at + f.gathered.len() as i64 {
            // Not where the last write ended (a frame rewritten, the log restarting): what is
            // gathered goes first.
            let rc = f.send();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if f.gathered.is_empty() {
            f.at = offset;
        }
        f.gathered.extend_from_slice(bytes);
        let header = bytes.len() == FRAME_HEADER;
        if header {
            // Bytes 4..8 of a frame header: the database's size in pages after a commit frame,
            // 0 in any other frame.
            f.through = bytes[4..8] != [0; 4];
        }
        // The commit frame's header waits for its page; the page goes with it and everything
        // gathered before, so the whole commit is in the file before SQLite publishes it.
        if (f.through && !header) || f.gathered.len() >= MAX_GATHERED { f.send() } else { ffi::SQLITE_OK }
    }
}

/// The wrapped file's method, once what is gathered was sent.
macro_rules! after_send {
    ($name:ident, $method:ident ( $($arg:ident : $ty:ty),* )) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: `file` is an open log file.
            unsafe {
                let f = log(file);
                let rc = f.send();
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                inner_methods(f.inner).$method.expect("the default VFS's files have every method")(f.inner $(, $arg)*)
            }
        }
    };
}

/// The wrapped file's method, as is (nothing it does depends on the file's bytes).
macro_rules! pass {
    ($name:ident, $method:ident ( $($arg:ident : $ty:ty),* )) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: `file` is an open log file.
            unsafe {
                let f = log(file);
                inner_methods(f.inner).$method.expect("the default VFS's files have every method")(f.inner $(, $arg)*)
            }
        }
    };
}

after_send!(read, xRead(buf: *mut c_void, amount: c_int, offset: i64));
after_send!(truncate, xTruncate(size: i64));
after_send!(sync, xSync(flags: c_int));
after_send!(file_size, xFileSize(size: *mut i64));
after_send!(file_control, xFileControl(op: c_int, arg: *mut c_void));
pass!(lock, xLock(level: c_int));
pass!(unlock, xUnlock(level: c_int));
pass!(check_reserved_lock, xCheckReservedLock(out: *mut c_int));
pass!(sector_size, xSectorSize());
pass!(device_characteristics, xDeviceCharacteristics());

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file once, and frees it after.
    unsafe {
        let f = log(file);
        let sent = f.send();
        let inner = f.inner;
        std::ptr::drop_in_place(file.cast::<LogFile>());
        let closed = inner_methods(inner).xClose.expect("files close")(inner);
        if sent != ffi::SQLITE_OK { sent } else { closed }
    }
}

/// Version 1: a log file is never memory-mapped and has no shared memory of its own.
static LOG_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    use super::*;

    fn writer(path: &std::path::Path) -> Connection {
        assert_eq!(register(), ffi::SQLITE_OK);
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn
    }

    /// A new database with table `t`, and the writer's connection to it (through this VFS).
    fn table_t() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let w = writer(&path);
        w.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL); CREATE INDEX t_body ON t (body)").unwrap();
        (dir, path, w)
    }

    /// What another connection (its own descriptor, the default VFS) finds: rows, their
    /// bytes, and whether the database is sound.
    fn seen(path: &std::path::Path) -> (i64, i64, String) {
        let r = Connection::open(path).unwrap();
        let (n, len) = r.query_row("SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM t", [], |row| Ok((row.get(0)?, row.get(1)?))).unwrap();
        let check: String = r.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
        (n, len, check)
    }

    /// Each commit is in the file when `COMMIT` returns: another connection reading the log
    /// through its own descriptor sees all of it, commit after commit.
    #[test]
    fn each_commit_is_in_the_file_when_it_returns() {
        let (_dir, path, w) = table_t();
        let mut bytes = 0;
        for i in 0..200i64 {
            let body = format!("{i}-{}", "x".repeat(100 + i as usize * 37));
            w.execute_batch("BEGIN").unwrap();
            for _ in 0..2 {
                w.execute("INSERT INTO t (body) VALUES (?)", [&body]).unwrap();
            }
            w.execute_batch("COMMIT").unwrap();
            bytes += 2 * body.len() as i64;
            assert_eq!(seen(&path), (2 * (i + 1), bytes, "ok".into()), "after commit {i}");
        }
    }

    /// Commits larger than one write of the `unix` VFS (128 KiB) and than what is gathered
    /// before it is sent (4 MiB), and a transaction whose pages spill from a tiny cache: SQLite
    /// then writes frames before the commit and rewrites some of them in place (writes that do
    /// not follow the last one).
    #[test]
    fn large_commits_and_rewritten_frames() {
        let (_dir, path, w) = table_t();
        let mut rows = 0;
        let mut bytes = 0;
        for (n, size) in [(40, 1000), (3000, 1000), (6000, 1000)] {
            w.execute_batch("BEGIN").unwrap();
            for i in 0..n {
                let body = format!("{i:0>size$}");
                w.execute("INSERT INTO t (body) VALUES (?)", [&body]).unwrap();
                bytes += body.len() as i64;
            }
            w.execute_batch("COMMIT").unwrap();
            rows += n as i64;
            assert_eq!(seen(&path), (rows, bytes, "ok".into()), "after {n} rows of {size} bytes");
        }
        w.pragma_update(None, "cache_size", 8).unwrap();
        w.execute_batch("BEGIN").unwrap();
        for round in 0..3 {
            w.execute("UPDATE t SET body = body || ? WHERE id % 3 = ?", rusqlite::params!["y", round]).unwrap();
        }
        w.execute_batch("COMMIT").unwrap();
        bytes += rows;
        assert_eq!(seen(&path), (rows, bytes, "ok".into()), "after the spilled transaction");
        // And once the log is copied into the database and starts over.
        w.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        w.execute("INSERT INTO t (body) VALUES ('after')", []).unwrap();
        assert_eq!(seen(&path), (rows + 1, bytes + 5, "ok".into()), "after the log restarted");
    }
}
