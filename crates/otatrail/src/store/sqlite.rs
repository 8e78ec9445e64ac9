//! The embedded backend: one SQLite database file in WAL mode, driven synchronously
//! (`rusqlite`).
//!
//! All writes go through one writer thread that owns the only read-write connection and
//! commits several units of work in one transaction (group commit). A failing unit rolls back
//! alone: units run without a savepoint each (its journal copied every page a unit touched, a
//! tenth of the writer's time), and should one fail after writing, the transaction is undone
//! and redone with a savepoint per unit (see [`redo`]); records appended on their own
//! ([`Store::append`], most of them: every read-only call has one) go in together, in one
//! savepoint per batch. No unit's caller hears of its commit before it is durable: a sync
//! thread flushes the log to disk after each commit and only then answers, while the writer
//! goes on with the next batch (see [`durability`]). The writer runs a batch's statements one
//! after another on its own thread: no statement waits for another thread, so a batch costs
//! one handoff in and one answer out per unit, not a round trip per statement.
//!
//! Reads run on the task that asks for them, on a read-only connection taken from a small
//! pool, inside a read transaction (a snapshot that WAL lets run beside the writer). They are
//! short indexed lookups, cheaper to run in place than to hand to another thread.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use super::{DeliveredFile, EventQuery, StateTx, Store, StoreError, StoreResult, StoredEvent, TxWork};
use crate::domain::audit::AuditEvent;
use crate::domain::buckets::{BlobRef, Bucket, ObjectMeta, Part, Upload};
use crate::domain::signing::SigningKey;
use crate::domain::sns::{Delivery as SnsDelivery, SigningCert as SnsSigningCert, Subscription as SnsSubscription, Topic as SnsTopic};
use crate::domain::trails::Trail;
use crate::domain::Scope;
use crate::domain::identity::{AccessKeyRecord, Account, IamTag, KeyStatus, Role, SessionRecord, User};
use crate::domain::streams::{Stream, StreamFile, Tag};
use crate::domain::things::{Thing, ThingFilter, ThingGroup};
use crate::domain::jobs::{ExecStatus, Job as IotJob, JobExecution, JobFilter};
use crate::domain::ota::{OtaStatus, OtaUpdate};
use crate::domain::time::Millis;
use durability::{Committed, Durability, SyncFn};
use history::{INDEX_BATCH, INDEX_EVERY, INDEX_SLICE, index_backlog};
use sql::{Row, query};

mod durability;
mod history;
mod jobs;
mod migrations;
mod ota;
mod sql;
mod things;
mod wal_writes;

/// Units of work committed together at most: a bound on one commit's size (a few MB of log)
/// and on how long its first unit waits, reached only with hundreds of concurrent calls.
const MAX_BATCH: usize = 512;
/// Read connections kept open between reads; more are opened when more reads run at once.
const MAX_IDLE_READERS: usize = 8;
/// How long a statement waits for a lock another process holds before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements kept per connection (the fixed statements number about 200).
const STATEMENT_CACHE: usize = 256;

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// What the writer thread is asked to commit.
enum Job {
    /// A general unit of work.
    Unit { work: TxWork, done: oneshot::Sender<StoreResult<()>> },
    /// A record on its own ([`Store::append`]): all of a batch's appends go in together, in
    /// one savepoint rather than one each.
    Append { event: AuditEvent, done: oneshot::Sender<StoreResult<()>> },
    /// From the sync thread: the previous commit is durable, the next may go.
    Synced,
}

pub struct SqliteStore {
    writer: mpsc::Sender<Job>,
    readers: Arc<Readers>,
    durability: Arc<Durability>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let owned = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || open_writer(&owned))
            .await
            .map_err(|e| StoreError::Database(format!("opening the database failed: {e}")))??;
        Self::with_writer(conn, path)
    }

    /// Starts the writer thread on `conn` (already migrated) and the read pool on `path`.
    fn with_writer(conn: Connection, path: &Path) -> StoreResult<Self> {
        Self::with_writer_syncing(conn, path, durability::wal_sync(path)?)
    }

    /// [`Self::with_writer`], with `sync` as the flush each commit waits for.
    fn with_writer_syncing(conn: Connection, path: &Path, sync: SyncFn) -> StoreResult<Self> {
        let readers = Arc::new(Readers { path: path.to_path_buf(), idle: Mutex::new(Vec::new()) });
        // Open one reader now, so a database that cannot be read fails at start.
        let first = readers.open()?;
        readers.give_back(first);
        let mut conn = conn;
        spawn_checkpointer(&mut conn, path)?;
        let (writer, durability) = spawn_writer(conn, sync)?;
        Ok(Self { writer, readers, durability })
    }
}

/// Process-wide SQLite settings, which take effect only before the first connection opens.
/// Memory statistics off: with them on, every allocation and free of every connection takes
/// one global mutex, which the writer, the readers and the checkpointer contended for (futex
/// calls in profiles of the busiest calls). The store never reads those statistics.
fn configure_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: in the server this runs before SQLite is first used (`use_server_allocator`
        // in `main` is the only use before it); once SQLite is initialized, `sqlite3_config`
        // returns SQLITE_MISUSE. (Tests open stores from several threads: the setting then
        // only decides whether allocations are counted, never how memory is managed.)
        let rc = unsafe { rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int) };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(rc, "SQLite was already initialized; its memory statistics stay on");
        }
    });
}

/// Gives SQLite the server's allocator (mimalloc) instead of the C library's: the writer's
/// savepoint journals alone allocate and free a kilobyte chunk for every kilobyte of every page
/// a unit changes, and glibc's malloc and free were a sixteenth of the writer's time. Returns
/// whether SQLite took it.
///
/// # Safety
/// Must run before anything in the process uses SQLite, on one thread: SQLite's allocator
/// cannot change under memory it already handed out (`main` calls it first thing; tests,
/// which share a process across threads, leave SQLite on its default).
pub unsafe fn use_server_allocator() -> bool {
    use std::ffi::{c_int, c_void};
    unsafe extern "C" {
        // In the mimalloc library that `libmimalloc_sys` links; declared here because that
        // crate exposes it only with a feature that needs one more crate.
        fn mi_usable_size(p: *const c_void) -> usize;
    }
    unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
        unsafe { libmimalloc_sys::mi_malloc(n.max(0) as usize) }
    }
    unsafe extern "C" fn x_free(p: *mut c_void) {
        unsafe { libmimalloc_sys::mi_free(p) }
    }
    unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        unsafe { libmimalloc_sys::mi_realloc(p, n.max(0) as usize) }
    }
    unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
        unsafe { mi_usable_size(p).min(c_int::MAX as usize) as c_int }
    }
    unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
        n.saturating_add(7) & !7
    }
    unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
        rusqlite::ffi::SQLITE_OK
    }
    unsafe extern "C" fn x_shutdown(_: *mut c_void) {}
    let methods = rusqlite::ffi::sqlite3_mem_methods {
        xMalloc: Some(x_malloc),
        xFree: Some(x_free),
        xRealloc: Some(x_realloc),
        xSize: Some(x_size),
        xRoundup: Some(x_roundup),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: SQLite copies the methods; the caller guarantees SQLite is not in use yet.
    let rc = unsafe { rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MALLOC, &methods as *const rusqlite::ffi::sqlite3_mem_methods) };
    rc == rusqlite::ffi::SQLITE_OK
}

/// Page cache of the writer, in KiB: index pages it would otherwise read again with a system
/// call for nearly every insert once the database outgrows SQLite's default 2 MiB.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
/// Page cache of each read connection, in KiB.
const READER_CACHE_KIB: i64 = 1024;

fn configure(conn: &Connection, cache_kib: i64) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Negative: a size in KiB rather than in pages.
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Savepoint journals (one per unit of a batch) and sort buffers stay in memory instead of
    // a temporary file written for every unit.
    conn.pragma_update(None, "temp_store", "memory")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// Opens the read-write connection: WAL, the schema up to date. Commits are made durable by
/// the sync thread rather than inside `COMMIT` (`synchronous=NORMAL`; a checkpoint still
/// syncs the log before it copies it and the database file after).
fn open_writer(path: &Path) -> StoreResult<Connection> {
    configure_library();
    // The writer's log is written a commit at a time (see `wal_writes`).
    let opened = if wal_writes::register() == rusqlite::ffi::SQLITE_OK {
        Connection::open_with_flags_and_vfs(path, OpenFlags::default(), wal_writes::NAME)
    } else {
        tracing::warn!("cannot register the log-writing VFS; the writer uses SQLite's default");
        Connection::open(path)
    };
    let mut conn = opened.map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
    configure(&conn, WRITER_CACHE_KIB).map_err(db_err)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(db_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Database(format!("the database cannot use WAL (journal mode is {mode})")));
    }
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(db_err)?;
    // After a burst the log restarts from its beginning but keeps its size: cut it back.
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT).map_err(db_err)?;
    migrations::run(&mut conn).map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
    Ok(conn)
}

/// Read-only connections, reused.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn open(&self) -> StoreResult<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        configure(&conn, READER_CACHE_KIB).map_err(db_err)?;
        Ok(conn)
    }

    fn take(&self) -> StoreResult<Connection> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.open(),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }
}

/// A read connection on loan; back to the pool when dropped, with its transaction ended, even
/// when the read's task is cancelled half-way.
struct ReadConn<'r> {
    conn: Option<Connection>,
    readers: &'r Readers,
}

impl Drop for ReadConn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A connection whose transaction cannot be ended is closed, not reused.
            if conn.is_autocommit() || control(&conn, "ROLLBACK").is_ok() {
                self.readers.give_back(conn);
            }
        }
    }
}

/// WAL pages (4 KiB each) after which the checkpointer copies the log into the database file.
/// SQLite's own default, 1000, would do it in the writer, in the middle of a commit.
const CHECKPOINT_PAGES: i32 = 1000;

/// Least time between two background checkpoints. Above the threshold every commit asks for
/// one, and a checkpoint per commit (each sorting the log's index first) cost a sixth of the
/// server's CPU and a thread switch per call; the requests made meanwhile fold into one.
const CHECKPOINT_SPACING: std::time::Duration = std::time::Duration::from_millis(25);

/// WAL pages past which the writer finishes the copy itself, between two of its commits. The
/// log restarts from its beginning only once every page of it was copied, and a background
/// checkpoint that a commit overtakes never gets there: without this the log grew by gigabytes
/// (and every frame written past its end costs the kernel a zeroed page). The writer does it
/// just after a background checkpoint caught up with the log, so that only the commits since
/// are left to copy (run at any moment, the commits it ran in took 10 to 30 ms, several times
/// a second under load).
const RESTART_PAGES: i32 = 4096;

/// WAL pages past which the writer finishes the copy even if no background checkpoint caught
/// up (readers holding old snapshots all along, say): the log's size bound.
const MAX_LOG_PAGES: i32 = 4 * RESTART_PAGES;

/// Bytes of WAL file kept once the log restarts.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Whether SQLite refused for a lock another connection holds (`SQLITE_BUSY`).
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy)
}

/// Moves WAL checkpoints out of the writer's commit path: the writer's WAL hook (which
/// replaces SQLite's automatic checkpoint) wakes a thread that runs a passive checkpoint on a
/// connection of its own. A passive checkpoint never blocks the writer or the readers; the
/// log restarts from its beginning at a later commit once all of it was copied.
fn spawn_checkpointer(writer: &mut Connection, path: &Path) -> StoreResult<()> {
    let conn = Connection::open(path).map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
    // A connection opens the file lazily; until it has read it, it does not know the database
    // is in WAL mode and a checkpoint silently does nothing.
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(db_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Database(format!("the checkpointer sees journal mode {mode}, not WAL")));
    }
    // One pending request is enough: a checkpoint copies whatever the log holds by then.
    let (wake, wakes) = std::sync::mpsc::sync_channel::<()>(1);
    // Set when a background checkpoint copied all of the log it found.
    let caught_up = Arc::new(AtomicBool::new(false));
    let seen = caught_up.clone();
    writer
        .wal_hook(Some(
            move |wal: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                if pages >= MAX_LOG_PAGES || (pages >= RESTART_PAGES && seen.swap(false, Ordering::Relaxed)) {
                    // Busy (the background one is at it, or a reader still needs old pages): the
                    // next commit tries again.
                    let _ = wal.checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE);
                } else if pages >= CHECKPOINT_PAGES {
                    let _ = wake.try_send(());
                }
                Ok(())
            },
        ))
        .map_err(db_err)?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        // Ends when the writer connection (and with it the hook's sender) is gone.
        .spawn(move || {
            while wakes.recv().is_ok() {
                match conn.wal_checkpoint_v2(Some("main"), rusqlite::wal::CheckpointMode::PASSIVE) {
                    Ok((log, copied)) => caught_up.store(log > 0 && copied == log, Ordering::Relaxed),
                    // Another checkpoint holds the log (the writer's own, letting it restart):
                    // expected under load, a dozen times in a few seconds; nothing is wrong.
                    Err(e) if is_busy(&e) => tracing::debug!(error = %e, "WAL checkpoint skipped: another one is running"),
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries"),
                }
                std::thread::sleep(CHECKPOINT_SPACING);
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(())
}

/// Starts the writer thread on `conn`, and the sync thread that makes its commits durable.
fn spawn_writer(mut conn: Connection, sync: SyncFn) -> StoreResult<(mpsc::Sender<Job>, Arc<Durability>)> {
    // When a statement fails with SQLITE_FULL (a full disk), SQLITE_IOERR or SQLITE_NOMEM,
    // SQLite may roll the whole transaction back by itself, savepoints included. A later
    // `SAVEPOINT` would then open a transaction of its own that its `RELEASE` commits at once:
    // units answered "failed" would be durable (a call recorded as a success in its unit, then
    // again as a failure), and units that ran before would be answered as if they were not
    // lost. The rollback hook (not called for `ROLLBACK TO`) tells the writer it happened.
    let rolled_back = Arc::new(AtomicBool::new(false));
    let flag = rolled_back.clone();
    conn.rollback_hook(Some(move || flag.store(true, Ordering::SeqCst))).map_err(db_err)?;
    // Units are async closures (their `StateTx` calls complete at once); one that awaits
    // something else (a timer, say) needs the runtime that created the store.
    let runtime = tokio::runtime::Handle::try_current().ok();
    let (tx, rx) = mpsc::channel(4096);
    // Weak: the writer (and then the syncer) stops once the store's senders are gone.
    let (durability, syncer) = Durability::start(sync, tx.downgrade())?;
    let shared = durability.clone();
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || {
            let _context = runtime.as_ref().map(|r| r.enter());
            writer_loop(conn, rx, rolled_back, &shared, syncer)
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
    Ok((tx, durability))
}

fn rolled_back_error() -> StoreError {
    StoreError::Unavailable("SQLite rolled the transaction back after a failed statement".into())
}

/// Runs a unit on `conn`, to completion.
async fn run_unit(conn: &mut Connection, work: &mut TxWork) -> StoreResult<()> {
    let mut tx = SqliteTx { conn };
    match AssertUnwindSafe(work(&mut tx)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Database("unit of work panicked".into())),
    }
}

/// Runs a transaction-control statement, kept prepared: the writer runs several per batch,
/// every read two.
fn control(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ()).map_err(db_err)
}

/// Runs `f` inside a savepoint: kept when it succeeds, undone when it fails.
fn in_savepoint<T>(conn: &mut Connection, f: impl FnOnce(&mut Connection) -> StoreResult<T>) -> StoreResult<T> {
    control(conn, "SAVEPOINT unit")?;
    let r = f(conn);
    if r.is_err() {
        control(conn, "ROLLBACK TO SAVEPOINT unit")?;
    }
    control(conn, "RELEASE SAVEPOINT unit")?;
    r
}

/// What a transaction's units will be told, in the order they ran, and what ran, should the
/// transaction have to be redone.
#[derive(Default)]
struct Outcomes {
    dones: Vec<oneshot::Sender<StoreResult<()>>>,
    results: Vec<StoreResult<()>>,
    /// What ran, in order, each with the index of its first outcome.
    ran: Vec<(usize, Ran)>,
    /// The transaction was redone: from now on each unit runs in a savepoint of its own.
    guarded: bool,
}

/// Work that ran in the open transaction.
enum Ran {
    Appends(Vec<AuditEvent>),
    Unit(TxWork),
}

impl Outcomes {
    fn fail_all(self, error: impl Fn() -> StoreError) -> Vec<(oneshot::Sender<StoreResult<()>>, StoreResult<()>)> {
        self.dones.into_iter().map(|d| (d, Err(error()))).collect()
    }
}

/// Moves queued jobs into `jobs` until it holds `max` or the queue is empty.
fn take_queued(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, max: usize) {
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
}

fn answer(answers: Vec<(oneshot::Sender<StoreResult<()>>, StoreResult<()>)>) {
    for (done, r) in answers {
        let _ = done.send(r);
    }
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    rolled_back: Arc<AtomicBool>,
    durability: &Durability,
    syncer: std::sync::mpsc::Sender<Committed>,
) {
    let mut keys = KeyCopier::new();
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        take_queued(&mut rx, &mut jobs, MAX_BATCH);
        if jobs.iter().all(|j| matches!(j, Job::Synced)) {
            continue;
        }
        if durability.failed() {
            let mut refused = Outcomes::default();
            collect_dones(jobs, &mut refused);
            answer(refused.fail_all(|| StoreError::Unavailable("the database log could not be synced to disk; restart the server".into())));
            continue;
        }
        rolled_back.store(false, Ordering::SeqCst);
        if let Err(e) = control(&conn, "BEGIN IMMEDIATE") {
            let mut refused = Outcomes::default();
            collect_dones(jobs, &mut refused);
            answer(refused.fail_all(|| StoreError::Unavailable(e.to_string())));
            continue;
        }
        if keys.backlog_due() {
            keys.copy_backlog(&mut conn);
        }
        let mut out = Outcomes::default();
        run_jobs(&mut conn, jobs, &rolled_back, &mut out);
        keys.records_added();
        // While the previous commit is still being synced, units that arrive join this
        // transaction (the syncer's `Job::Synced` ends the wait). When none is waiting, the
        // writer copies a slice of lookup keys instead of sitting idle: done in small pieces
        // here, the copy no longer holds up a batch for ten milliseconds and more a few times
        // a second.
        while durability.busy() && out.dones.len() < MAX_BATCH && !rolled_back.load(Ordering::SeqCst) {
            let job = match rx.try_recv() {
                Ok(job) => job,
                Err(mpsc::error::TryRecvError::Empty) if keys.slice_due() => {
                    keys.copy_slice(&mut conn);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) => match rx.blocking_recv() {
                    Some(job) => job,
                    None => break,
                },
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            let mut jobs = vec![job];
            take_queued(&mut rx, &mut jobs, MAX_BATCH - out.dones.len());
            run_jobs(&mut conn, jobs, &rolled_back, &mut out);
            keys.records_added();
        }
        if rolled_back.load(Ordering::SeqCst) {
            // Nothing of this batch is left, whatever its units returned.
            let cause = out.results.iter().find_map(|r| r.as_ref().err()).map(|e| e.to_string()).unwrap_or_default();
            tracing::error!(error = %cause, units = out.dones.len(), "SQLite rolled the batch back after a failed statement; all its units fail");
            if !conn.is_autocommit() {
                // Only when redoing the transaction failed half-way (see `redo`).
                let _ = conn.execute_batch("ROLLBACK");
            }
            answer(out.fail_all(|| StoreError::Unavailable(format!("the transaction was rolled back: {cause}"))));
            continue;
        }
        durability.wait_idle();
        let generation = durability.next_generation();
        let answers = match control(&conn, "COMMIT") {
            Ok(()) => out.dones.into_iter().zip(out.results).collect(),
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "commit failed; the batch is rolled back");
                let _ = conn.execute_batch("ROLLBACK");
                out.fail_all(|| StoreError::Unavailable(msg.clone()))
            }
        };
        durability.hand_over(&syncer, Committed { generation, answers });
    }
}

/// The writer's bookkeeping for copying records' lookup keys (see [`history::INDEX_SLICE`]).
struct KeyCopier {
    /// Whether records may be waiting for their keys.
    behind: bool,
    /// Fewer than a slice's worth were waiting, and no unit ran since.
    short: bool,
    /// When the keys last caught up with the records, or a backlog copy or a failed copy ran.
    since: std::time::Instant,
    failed: bool,
}

impl KeyCopier {
    fn new() -> Self {
        // Records may have been left uncopied by the previous run of the server.
        KeyCopier { behind: true, short: false, since: std::time::Instant::now(), failed: false }
    }

    fn records_added(&mut self) {
        self.behind = true;
        self.short = false;
    }

    /// Whether to try a slice now (the writer has nothing else to do). After a failure, not
    /// before the backlog copy is due: a failing copy is retried a few times a second, not
    /// once per commit.
    fn slice_due(&self) -> bool {
        self.behind && !self.short && !self.failed
    }

    /// Copies a slice if a whole one is waiting.
    fn copy_slice(&mut self, conn: &mut Connection) {
        self.copy(conn, INDEX_SLICE, INDEX_SLICE);
    }

    /// Whether the backlog has waited too long.
    fn backlog_due(&self) -> bool {
        self.behind && self.since.elapsed() >= INDEX_EVERY
    }

    /// The slices fell behind, or the writer had no sync to wait for: up to [`INDEX_BATCH`]
    /// records at once, before a batch's units, at most once per [`INDEX_EVERY`] (a backlog of
    /// millions, left by an older version, is worked off a batch at a time).
    fn copy_backlog(&mut self, conn: &mut Connection) {
        self.since = std::time::Instant::now();
        self.copy(conn, 0, INDEX_BATCH);
    }

    /// Copies the keys of up to `at_most` records in the open transaction, if at least
    /// `at_least` are waiting. A failure leaves the records where LookupEvents still reads them.
    fn copy(&mut self, conn: &mut Connection, at_least: i64, at_most: i64) {
        match in_savepoint(conn, |conn| index_backlog(conn, at_least, at_most)) {
            Ok(copied) => {
                self.failed = false;
                if copied == 0 && at_least > 0 {
                    self.short = true;
                } else if (copied as i64) < at_most {
                    self.behind = false;
                    self.since = std::time::Instant::now();
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: StoreError) {
        tracing::warn!(error = %e, "copying lookup keys failed");
        self.failed = true;
        self.since = std::time::Instant::now();
    }
}

/// The answer channels of `jobs`, for jobs refused unrun.
fn collect_dones(jobs: Vec<Job>, out: &mut Outcomes) {
    for job in jobs {
        match job {
            Job::Append { done, .. } | Job::Unit { done, .. } => out.dones.push(done),
            Job::Synced => {}
        }
    }
}

/// Runs `jobs` in the open transaction: their records together in one savepoint, then the
/// units one after another. A job found after SQLite rolled the transaction back fails unrun:
/// outside the transaction a savepoint would commit on its own (see `spawn_writer`).
///
/// Units run without a savepoint of their own: nearly all check before they write, so a
/// failing unit has nothing to undo, and a savepoint per unit cost its journal a copy of every
/// page the unit touched (CreateThing at full load: the writer ~10% faster without). A unit
/// that fails after writing (SQLite counted changes during its run) is found at once, before
/// any other unit runs, and [`redo`] undoes the transaction and runs everything again, each
/// unit in a savepoint of its own: the outcome each caller hears is what per-unit savepoints
/// would have given.
fn run_jobs(conn: &mut Connection, jobs: Vec<Job>, rolled_back: &AtomicBool, out: &mut Outcomes) {
    let mut appends = Vec::new();
    let mut units = Vec::new();
    for job in jobs {
        match job {
            Job::Append { event, done } => appends.push((event, done)),
            Job::Unit { work, done } => units.push((work, done)),
            Job::Synced => {}
        }
    }
    if !appends.is_empty() {
        let (events, append_dones): (Vec<AuditEvent>, Vec<_>) = appends.into_iter().unzip();
        let first = out.results.len();
        out.results.extend(append_batch(conn, &events, rolled_back));
        out.dones.extend(append_dones);
        out.ran.push((first, Ran::Appends(events)));
    }
    for (mut work, done) in units {
        let mut wrote_then_failed = false;
        let r = if out.guarded || rolled_back.load(Ordering::SeqCst) {
            unit_in_savepoint(conn, &mut work, rolled_back)
        } else {
            let before = conn.total_changes();
            let r = futures::executor::block_on(run_unit(conn, &mut work));
            wrote_then_failed = r.is_err() && conn.total_changes() != before;
            r
        };
        out.ran.push((out.results.len(), Ran::Unit(work)));
        out.results.push(r);
        out.dones.push(done);
        if wrote_then_failed && !rolled_back.load(Ordering::SeqCst) {
            redo(conn, rolled_back, out);
        }
    }
}

/// A unit failed after writing, with no savepoint of its own to undo its writes alone: rolls
/// the transaction back and runs everything that ran in it again, in order, each unit in a
/// savepoint of its own (as does every unit after it in this transaction). Each unit starts
/// again from the state it first saw, but for the failed units before it, whose writes are now
/// gone as they should have been; the failing unit fails again, alone. The lookup-key copies
/// made in the transaction are undone too and made again later (the writer marks the keys
/// behind after every run of jobs). If the transaction cannot be begun again, every job of it
/// fails, as when SQLite rolls a transaction back by itself.
fn redo(conn: &mut Connection, rolled_back: &AtomicBool, out: &mut Outcomes) {
    tracing::debug!(units = out.ran.len(), "a unit failed after writing; its transaction is redone with a savepoint per unit");
    out.guarded = true;
    if let Err(e) = control(conn, "ROLLBACK").and_then(|_| control(conn, "BEGIN IMMEDIATE")) {
        tracing::error!(error = %e, "the transaction could not be redone; all its units fail");
        rolled_back.store(true, Ordering::SeqCst);
        return;
    }
    // Set by the rollback hook for the ROLLBACK above.
    rolled_back.store(false, Ordering::SeqCst);
    for (first, ran) in out.ran.iter_mut() {
        let first = *first;
        match ran {
            Ran::Appends(events) => {
                for (i, r) in append_batch(conn, events, rolled_back).into_iter().enumerate() {
                    out.results[first + i] = r;
                }
            }
            Ran::Unit(work) => out.results[first] = unit_in_savepoint(conn, work, rolled_back),
        }
    }
}

/// Runs a unit in a savepoint of its own; fails it unrun once SQLite rolled the transaction
/// back (outside the transaction the savepoint would commit on its own).
fn unit_in_savepoint(conn: &mut Connection, work: &mut TxWork, rolled_back: &AtomicBool) -> StoreResult<()> {
    if rolled_back.load(Ordering::SeqCst) {
        return Err(rolled_back_error());
    }
    in_savepoint(conn, |conn| futures::executor::block_on(run_unit(conn, work)))
}

/// Inserts a batch's appended records, inside one savepoint. If that fails (a duplicate event ID, say),
/// the savepoint is undone and each record is inserted on its own, so only the offending
/// record fails. Returns one outcome per event, in order; all failed, unrun, once SQLite rolled
/// the transaction back.
fn append_batch(conn: &mut Connection, events: &[AuditEvent], rolled_back: &AtomicBool) -> Vec<StoreResult<()>> {
    if rolled_back.load(Ordering::SeqCst) {
        return events.iter().map(|_| Err(rolled_back_error())).collect();
    }
    if in_savepoint(conn, |conn| insert_events(conn, events)).is_ok() {
        return events.iter().map(|_| Ok(())).collect();
    }
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        // The transaction is gone (see `spawn_writer`): no savepoint of its own.
        let one = if rolled_back.load(Ordering::SeqCst) {
            Err(rolled_back_error())
        } else {
            in_savepoint(conn, |conn| futures::executor::block_on(SqliteTx { conn }.append_event(event)).map(|_| ()))
        };
        out.push(one);
    }
    out
}

/// The columns of `events` that [`stored_event`] reads, in its order, each after `$alias`
/// (`""` or `"e."`): delivery's read and LookupEvents' select the same list.
macro_rules! event_columns {
    ($alias:literal) => {
        concat!(
            $alias, "seq, ", $alias, "event_id, ", $alias, "event_time, ", $alias, "event_name, ", $alias, "event_source, ",
            $alias, "read_only, ", $alias, "username, ", $alias, "access_key_id, ", $alias, "record"
        )
    };
}
pub(super) use event_columns;

/// A lane's records after its cursor (delivery); the plan is checked by a test.
const EVENTS_SINCE: &str =
    concat!("SELECT ", event_columns!(""), " FROM events WHERE account_id = ? AND region = ? AND seq > ? ORDER BY seq LIMIT ?");

/// Appends one record and its resources; its sequence number. Kept-prepared statements with
/// borrowed parameters: a generated multi-row insert had to be parsed again for every batch
/// (a twentieth of the writer's time), and binding through owned values copied each record.
fn insert_event(conn: &Connection, e: &AuditEvent) -> StoreResult<i64> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO events (event_id, account_id, region, event_time, event_name, event_source, read_only, username, access_key_id, record) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .map_err(db_err)?;
    insert
        .execute(rusqlite::params![
            e.event_id,
            e.recipient_account_id,
            e.region,
            e.event_time.0,
            e.event_name,
            e.event_source,
            e.read_only,
            e.username,
            e.access_key_id,
            e.record,
        ])
        .map_err(unique_violation)?;
    let seq = conn.last_insert_rowid();
    if !e.resources.is_empty() {
        let mut resource = conn
            .prepare_cached(
                "INSERT INTO event_resources (seq, account_id, region, event_time, resource_type, resource_name) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .map_err(db_err)?;
        for r in &e.resources {
            resource
                .execute(rusqlite::params![
                    seq,
                    e.recipient_account_id,
                    e.region,
                    e.event_time.0,
                    r.resource_type,
                    r.arn
                ])
                .map_err(db_err)?;
        }
    }
    Ok(seq)
}

fn insert_events(conn: &Connection, events: &[AuditEvent]) -> StoreResult<()> {
    for e in events {
        insert_event(conn, e)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn write(&self, work: TxWork) -> StoreResult<()> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(Job::Unit { work, done })
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        wait.await.map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    async fn append(&self, event: AuditEvent) -> StoreResult<()> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(Job::Append { event, done })
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        wait.await.map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    async fn settle(&self) -> StoreResult<()> {
        self.durability.settle().await
    }

    async fn read(&self, work: TxWork) -> StoreResult<()> {
        let mut loan = ReadConn { conn: Some(self.readers.take()?), readers: &self.readers };
        let conn = loan.conn.as_mut().expect("a loan holds its connection until dropped");
        control(conn, "BEGIN")?;
        // Ended (rolled back: nothing was written) when the loan goes back.
        let mut work = work;
        run_unit(conn, &mut work).await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

struct SqliteTx<'c> {
    conn: &'c mut Connection,
}

fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A failed read: a value of the wrong kind is a corrupt store, as in [`get`].
pub(super) fn read_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::Error::{FromSqlConversionFailure, IntegralValueOutOfRange, InvalidColumnType};
    match e {
        e @ (FromSqlConversionFailure(..) | IntegralValueOutOfRange(..) | InvalidColumnType(..)) => StoreError::Corrupt(e.to_string()),
        e => db_err(e),
    }
}

fn get<T: rusqlite::types::FromSql>(row: &Row, col: &str) -> StoreResult<T> {
    row.try_get(col).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn stream_from_row(row: &Row) -> StoreResult<(i64, Stream)> {
    let files: Vec<StreamFile> = from_json(&get::<String>(row, "files")?)?;
    let tags: Vec<Tag> = from_json(&get::<String>(row, "tags")?)?;
    Ok((
        get(row, "seq")?,
        Stream {
            scope: Scope::new(get::<String>(row, "account_id")?, get::<String>(row, "region")?),
            stream_id: get(row, "stream_id")?,
            description: get(row, "description")?,
            version: get(row, "version")?,
            files,
            role_arn: get(row, "role_arn")?,
            tags,
            created_at: Millis(get(row, "created_at")?),
            updated_at: Millis(get(row, "updated_at")?),
        },
    ))
}

fn key_from_row(row: &Row) -> StoreResult<AccessKeyRecord> {
    let status: String = get(row, "status")?;
    Ok(AccessKeyRecord {
        access_key_id: get(row, "access_key_id")?,
        account_id: get(row, "account_id")?,
        user_name: get(row, "user_name")?,
        status: KeyStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("key status {status}")))?,
        sealed_secret: get(row, "sealed_secret")?,
        created_at: Millis(get(row, "created_at")?),
    })
}

fn user_from_row(r: &Row) -> StoreResult<User> {
    Ok(User {
        account_id: get(r, "account_id")?,
        name: get(r, "name")?,
        user_id: get(r, "user_id")?,
        path: get(r, "path")?,
        tags: from_json(&get::<String>(r, "tags")?)?,
        created_at: Millis(get(r, "created_at")?),
    })
}

fn role_from_row(r: &Row) -> StoreResult<Role> {
    Ok(Role {
        account_id: get(r, "account_id")?,
        name: get(r, "name")?,
        role_id: get(r, "role_id")?,
        path: get(r, "path")?,
        description: get(r, "description")?,
        assume_role_policy: get(r, "assume_role_policy")?,
        max_session_duration: get(r, "max_session_duration")?,
        tags: from_json(&get::<String>(r, "tags")?)?,
        created_at: Millis(get(r, "created_at")?),
    })
}

fn bucket_from_row(r: &Row) -> StoreResult<Bucket> {
    Ok(Bucket {
        name: get(r, "name")?,
        account_id: get(r, "account_id")?,
        region: get(r, "region")?,
        created_at: Millis(get(r, "created_at")?),
        policy: get(r, "policy")?,
        lifecycle: get(r, "lifecycle")?,
    })
}

fn object_from_row(r: &Row) -> StoreResult<ObjectMeta> {
    let blobs: Vec<BlobRef> = from_json(&get::<String>(r, "blobs")?)?;
    Ok(ObjectMeta {
        bucket: get(r, "bucket")?,
        key: get(r, "key")?,
        size: get::<i64>(r, "size")? as u64,
        etag: get(r, "etag")?,
        content_type: get(r, "content_type")?,
        metadata: from_json(&get::<String>(r, "metadata")?)?,
        last_modified: Millis(get(r, "last_modified")?),
        storage_class: get(r, "storage_class")?,
        blobs,
    })
}

/// A record selected with [`event_columns`], by column index (without its resources).
pub(super) fn stored_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        seq: r.get(0)?,
        event_id: r.get(1)?,
        event_time: Millis(r.get(2)?),
        event_name: r.get(3)?,
        event_source: r.get(4)?,
        read_only: r.get(5)?,
        username: r.get(6)?,
        access_key_id: r.get(7)?,
        resources: vec![],
        record: r.get(8)?,
    })
}

fn part_from_row(r: &Row) -> StoreResult<Part> {
    Ok(Part {
        upload_id: get(r, "upload_id")?,
        part_number: get(r, "part_number")?,
        size: get::<i64>(r, "size")? as u64,
        etag: get(r, "etag")?,
        blob: get(r, "blob")?,
    })
}

/// The extended result code of a failed statement, if SQLite reported one.
fn extended_code(e: &rusqlite::Error) -> Option<std::ffi::c_int> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.extended_code),
        _ => None,
    }
}

fn unique_violation(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
    match (&e, extended_code(&e)) {
        (rusqlite::Error::SqliteFailure(_, message), Some(SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY)) => {
            StoreError::Conflict(message.clone().unwrap_or_else(|| "unique constraint failed".into()))
        }
        _ => db_err(e),
    }
}

#[async_trait]
impl StateTx for SqliteTx<'_> {
    async fn insert_account(&mut self, a: &Account) -> StoreResult<()> {
        query("INSERT INTO accounts (id, created_at) VALUES (?, ?)")
            .bind(&a.id)
            .bind(a.created_at.0)
            .execute(&mut *self.conn)
            .await
            .map_err(unique_violation)?;
        Ok(())
    }

    async fn get_account(&mut self, id: &str) -> StoreResult<Option<Account>> {
        let row = query("SELECT id, created_at FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.map(|r| Ok(Account { id: get(&r, "id")?, created_at: Millis(get(&r, "created_at")?) })).transpose()
    }

    async fn list_accounts(&mut self) -> StoreResult<Vec<Account>> {
        let rows = query("SELECT id, created_at FROM accounts ORDER BY created_at, id")
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| Ok(Account { id: get(r, "id")?, created_at: Millis(get(r, "created_at")?) })).collect()
    }

    async fn insert_user(&mut self, u: &User) -> StoreResult<()> {
        query("INSERT INTO users (account_id, name, user_id, path, tags, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&u.account_id)
            .bind(&u.name)
            .bind(&u.user_id)
            .bind(&u.path)
            .bind(json(&u.tags)?)
            .bind(u.created_at.0)
            .execute(&mut *self.conn)
            .await
            .map_err(unique_violation)?;
        Ok(())
    }

    async fn get_user(&mut self, account_id: &str, name: &str) -> StoreResult<Option<User>> {
        let row = query("SELECT * FROM users WHERE account_id = ? AND name = ?")
            .bind(account_id)
            .bind(name)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&mut self, account_id: &str, after_name: Option<&str>, limit: i64) -> StoreResult<Vec<User>> {
        let rows = query("SELECT * FROM users WHERE account_id = ? AND name > ? ORDER BY name LIMIT ?")
            .bind(account_id)
            .bind(after_name.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn delete_user(&mut self, account_id: &str, name: &str) -> StoreResult<bool> {
        let r = query("DELETE FROM users WHERE account_id = ? AND name = ?")
            .bind(account_id)
            .bind(name)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn set_user_tags(&mut self, account_id: &str, name: &str, tags: &[IamTag]) -> StoreResult<bool> {
        let r = query("UPDATE users SET tags = ? WHERE account_id = ? AND name = ?")
            .bind(json(&tags)?)
            .bind(account_id)
            .bind(name)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn insert_access_key(&mut self, k: &AccessKeyRecord) -> StoreResult<()> {
        query(
            "INSERT INTO access_keys (access_key_id, account_id, user_name, status, sealed_secret, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.access_key_id)
        .bind(&k.account_id)
        .bind(&k.user_name)
        .bind(k.status.as_str())
        .bind(&k.sealed_secret)
        .bind(k.created_at.0)
        .execute(&mut *self.conn)
        .await
        .map_err(unique_violation)?;
        Ok(())
    }

    async fn get_access_key(&mut self, access_key_id: &str) -> StoreResult<Option<AccessKeyRecord>> {
        let row = query("SELECT * FROM access_keys WHERE access_key_id = ?")
            .bind(access_key_id)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_access_keys(&mut self, account_id: &str, user_name: Option<&str>) -> StoreResult<Vec<AccessKeyRecord>> {
        let rows = query(
            "SELECT * FROM access_keys WHERE account_id = ? AND user_name IS ? ORDER BY created_at, access_key_id",
        )
        .bind(account_id)
        .bind(user_name)
        .fetch_all(&mut *self.conn)
        .await
        .map_err(db_err)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn set_access_key_status(&mut self, access_key_id: &str, status: KeyStatus) -> StoreResult<bool> {
        let r = query("UPDATE access_keys SET status = ? WHERE access_key_id = ?")
            .bind(status.as_str())
            .bind(access_key_id)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_access_key(&mut self, access_key_id: &str) -> StoreResult<bool> {
        let r = query("DELETE FROM access_keys WHERE access_key_id = ?")
            .bind(access_key_id)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn insert_role(&mut self, r: &Role) -> StoreResult<()> {
        query(
            "INSERT INTO roles (account_id, name, role_id, path, description, assume_role_policy, max_session_duration, tags, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.account_id)
        .bind(&r.name)
        .bind(&r.role_id)
        .bind(&r.path)
        .bind(&r.description)
        .bind(&r.assume_role_policy)
        .bind(r.max_session_duration)
        .bind(json(&r.tags)?)
        .bind(r.created_at.0)
        .execute(&mut *self.conn)
        .await
        .map_err(unique_violation)?;
        Ok(())
    }

    async fn get_role(&mut self, account_id: &str, name: &str) -> StoreResult<Option<Role>> {
        let row = query("SELECT * FROM roles WHERE account_id = ? AND name = ?")
            .bind(account_id)
            .bind(name)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.as_ref().map(role_from_row).transpose()
    }

    async fn list_roles(&mut self, account_id: &str, after_name: Option<&str>, limit: i64) -> StoreResult<Vec<Role>> {
        let rows = query("SELECT * FROM roles WHERE account_id = ? AND name > ? ORDER BY name LIMIT ?")
            .bind(account_id)
            .bind(after_name.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter().map(role_from_row).collect()
    }

    async fn update_role(&mut self, r: &Role) -> StoreResult<bool> {
        let res = query(
            "UPDATE roles SET description = ?, assume_role_policy = ?, max_session_duration = ?, tags = ? WHERE account_id = ? AND name = ?",
        )
        .bind(&r.description)
        .bind(&r.assume_role_policy)
        .bind(r.max_session_duration)
        .bind(json(&r.tags)?)
        .bind(&r.account_id)
        .bind(&r.name)
        .execute(&mut *self.conn)
        .await
        .map_err(db_err)?;
        Ok(res.rows_affected() > 0)
    }

    async fn delete_role(&mut self, account_id: &str, name: &str) -> StoreResult<bool> {
        let r = query("DELETE FROM roles WHERE account_id = ? AND name = ?")
            .bind(account_id)
            .bind(name)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn insert_session(&mut self, s: &SessionRecord) -> StoreResult<()> {
        query(
            "INSERT INTO sessions (access_key_id, account_id, sealed_secret, token_sha256, principal, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.access_key_id)
        .bind(&s.account_id)
        .bind(&s.sealed_secret)
        .bind(&s.token_sha256)
        .bind(json(&s.principal)?)
        .bind(s.expires_at.0)
        .bind(s.created_at.0)
        .execute(&mut *self.conn)
        .await
        .map_err(unique_violation)?;
        Ok(())
    }

    async fn get_session(&mut self, access_key_id: &str) -> StoreResult<Option<SessionRecord>> {
        let row = query("SELECT * FROM sessions WHERE access_key_id = ?")
            .bind(access_key_id)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            Ok(SessionRecord {
                access_key_id: get(&r, "access_key_id")?,
                account_id: get(&r, "account_id")?,
                sealed_secret: get(&r, "sealed_secret")?,
                token_sha256: get(&r, "token_sha256")?,
                principal: from_json(&get::<String>(&r, "principal")?)?,
                expires_at: Millis(get(&r, "expires_at")?),
                created_at: Millis(get(&r, "created_at")?),
            })
        })
        .transpose()
    }

    async fn delete_expired_sessions(&mut self, before: Millis) -> StoreResult<u64> {
        let r = query("DELETE FROM sessions WHERE expires_at < ?")
            .bind(before.0)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected())
    }

    async fn get_stream(&mut self, scope: &Scope, stream_id: &str) -> StoreResult<Option<Stream>> {
        let row = query("SELECT * FROM streams WHERE account_id = ? AND region = ? AND stream_id = ?")
            .bind(&scope.account_id)
            .bind(&scope.region)
            .bind(stream_id)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.as_ref().map(stream_from_row).transpose().map(|o| o.map(|(_, s)| s))
    }

    async fn insert_stream(&mut self, s: &Stream) -> StoreResult<()> {
        query(
            "INSERT INTO streams (account_id, region, stream_id, description, version, files, role_arn, tags, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.scope.account_id)
        .bind(&s.scope.region)
        .bind(&s.stream_id)
        .bind(&s.description)
        .bind(s.version)
        .bind(json(&s.files)?)
        .bind(&s.role_arn)
        .bind(json(&s.tags)?)
        .bind(s.created_at.0)
        .bind(s.updated_at.0)
        .execute(&mut *self.conn)
        .await
        .map_err(unique_violation)?;
        Ok(())
    }

    async fn update_stream(&mut self, s: &Stream) -> StoreResult<()> {
        let r = query(
            "UPDATE streams SET description = ?, version = ?, files = ?, role_arn = ?, tags = ?, updated_at = ? \
             WHERE account_id = ? AND region = ? AND stream_id = ?",
        )
        .bind(&s.description)
        .bind(s.version)
        .bind(json(&s.files)?)
        .bind(&s.role_arn)
        .bind(json(&s.tags)?)
        .bind(s.updated_at.0)
        .bind(&s.scope.account_id)
        .bind(&s.scope.region)
        .bind(&s.stream_id)
        .execute(&mut *self.conn)
        .await
        .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("stream {} vanished during update", s.stream_id)));
        }
        Ok(())
    }

    async fn delete_stream(&mut self, scope: &Scope, stream_id: &str) -> StoreResult<bool> {
        let r = query("DELETE FROM streams WHERE account_id = ? AND region = ? AND stream_id = ?")
            .bind(&scope.account_id)
            .bind(&scope.region)
            .bind(stream_id)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn list_streams(
        &mut self,
        scope: &Scope,
        after_seq: Option<i64>,
        ascending: bool,
        limit: i64,
    ) -> StoreResult<Vec<(i64, Stream)>> {
        let sql = if ascending {
            "SELECT * FROM streams WHERE account_id = ? AND region = ? AND seq > ? ORDER BY seq ASC LIMIT ?"
        } else {
            "SELECT * FROM streams WHERE account_id = ? AND region = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
        };
        let bound = after_seq.unwrap_or(if ascending { i64::MIN } else { i64::MAX });
        let rows = query(sql)
            .bind(&scope.account_id)
            .bind(&scope.region)
            .bind(bound)
            .bind(limit)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter().map(stream_from_row).collect()
    }

    async fn get_thing(&mut self, scope: &Scope, name: &str) -> StoreResult<Option<Thing>> {
        things::get_thing(self.conn, scope, name).await
    }

    async fn insert_thing(&mut self, thing: &Thing) -> StoreResult<()> {
        things::insert_thing(self.conn, thing).await
    }

    async fn update_thing(&mut self, thing: &Thing) -> StoreResult<()> {
        things::update_thing(self.conn, thing).await
    }

    async fn delete_thing(&mut self, scope: &Scope, name: &str) -> StoreResult<bool> {
        things::delete_thing(self.conn, scope, name).await
    }

    async fn list_things(&mut self, scope: &Scope, filter: &ThingFilter, after_name: Option<&str>, limit: i64) -> StoreResult<Vec<Thing>> {
        things::list_things(self.conn, scope, filter, after_name, limit).await
    }

    async fn get_thing_group(&mut self, scope: &Scope, name: &str) -> StoreResult<Option<ThingGroup>> {
        things::get_thing_group(self.conn, scope, name).await
    }

    async fn insert_thing_group(&mut self, group: &ThingGroup) -> StoreResult<()> {
        things::insert_thing_group(self.conn, group).await
    }

    async fn update_thing_group(&mut self, group: &ThingGroup) -> StoreResult<()> {
        things::update_thing_group(self.conn, group).await
    }

    async fn delete_thing_group(&mut self, scope: &Scope, name: &str) -> StoreResult<bool> {
        things::delete_thing_group(self.conn, scope, name).await
    }

    async fn list_thing_groups(&mut self, scope: &Scope) -> StoreResult<Vec<ThingGroup>> {
        things::list_thing_groups(self.conn, scope).await
    }

    async fn child_thing_groups(&mut self, scope: &Scope, parent: Option<&str>) -> StoreResult<Vec<ThingGroup>> {
        things::child_thing_groups(self.conn, scope, parent).await
    }

    async fn add_thing_to_group(&mut self, scope: &Scope, group: &str, thing: &str, at: Millis) -> StoreResult<bool> {
        things::add_thing_to_group(self.conn, scope, group, thing, at).await
    }

    async fn remove_thing_from_group(&mut self, scope: &Scope, group: &str, thing: &str) -> StoreResult<bool> {
        things::remove_thing_from_group(self.conn, scope, group, thing).await
    }

    async fn things_in_group(
        &mut self,
        scope: &Scope,
        group: &str,
        recursive: bool,
        after_name: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        things::things_in_group(self.conn, scope, group, recursive, after_name, limit).await
    }

    async fn groups_of_thing(&mut self, scope: &Scope, thing: &str) -> StoreResult<Vec<String>> {
        things::groups_of_thing(self.conn, scope, thing).await
    }

    async fn insert_job(&mut self, job: &IotJob) -> StoreResult<()> {
        jobs::insert_job(self.conn, job).await
    }

    async fn get_job(&mut self, scope: &Scope, job_id: &str) -> StoreResult<Option<IotJob>> {
        jobs::get_job(self.conn, scope, job_id).await
    }

    async fn update_job(&mut self, job: &IotJob) -> StoreResult<()> {
        jobs::update_job(self.conn, job).await
    }

    async fn delete_job(&mut self, scope: &Scope, job_id: &str) -> StoreResult<bool> {
        jobs::delete_job(self.conn, scope, job_id).await
    }

    async fn list_jobs(&mut self, scope: &Scope, filter: &JobFilter, before_seq: Option<i64>, limit: i64) -> StoreResult<Vec<(i64, IotJob)>> {
        jobs::list_jobs(self.conn, scope, filter, before_seq, limit).await
    }

    async fn due_jobs(&mut self, now: Millis, limit: i64) -> StoreResult<Vec<IotJob>> {
        jobs::due_jobs(self.conn, now, limit).await
    }

    async fn set_job_due(
        &mut self,
        scope: &Scope,
        job_id: &str,
        due: Option<Millis>,
    ) -> StoreResult<()> {
        jobs::set_job_due(self.conn, scope, job_id, due).await
    }

    async fn insert_job_execution(&mut self, e: &JobExecution) -> StoreResult<()> {
        jobs::insert_execution(self.conn, e).await
    }

    async fn update_job_execution(&mut self, e: &JobExecution) -> StoreResult<()> {
        jobs::update_execution(self.conn, e).await
    }

    async fn delete_job_execution(&mut self, scope: &Scope, job_id: &str, thing: &str, execution_number: i64) -> StoreResult<bool> {
        jobs::delete_execution(self.conn, scope, job_id, thing, execution_number).await
    }

    async fn get_job_execution(&mut self, scope: &Scope, job_id: &str, thing: &str, execution_number: Option<i64>) -> StoreResult<Option<JobExecution>> {
        jobs::get_execution(self.conn, scope, job_id, thing, execution_number).await
    }

    async fn list_job_executions(&mut self, scope: &Scope, job_id: &str, statuses: &[ExecStatus], after_thing: Option<&str>, limit: i64) -> StoreResult<Vec<JobExecution>> {
        jobs::list_executions(self.conn, scope, job_id, statuses, after_thing, limit).await
    }

    async fn list_thing_job_executions(
        &mut self,
        scope: &Scope,
        thing: &str,
        statuses: &[ExecStatus],
        job_id: Option<&str>,
        before_number: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<JobExecution>> {
        jobs::list_thing_executions(self.conn, scope, thing, statuses, job_id, before_number, limit).await
    }

    async fn count_job_executions(&mut self, scope: &Scope, job_id: &str) -> StoreResult<Vec<(ExecStatus, i64)>> {
        jobs::count_executions(self.conn, scope, job_id).await
    }

    async fn next_execution_number(&mut self, scope: &Scope, thing: &str) -> StoreResult<i64> {
        jobs::next_execution_number(self.conn, scope, thing).await
    }

    async fn insert_bucket(&mut self, b: &Bucket) -> StoreResult<()> {
        query("INSERT INTO buckets (name, account_id, region, created_at, policy, lifecycle) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&b.name)
            .bind(&b.account_id)
            .bind(&b.region)
            .bind(b.created_at.0)
            .bind(&b.policy)
            .bind(&b.lifecycle)
            .execute(&mut *self.conn)
            .await
            .map_err(unique_violation)?;
        Ok(())
    }

    async fn get_bucket(&mut self, name: &str) -> StoreResult<Option<Bucket>> {
        let row = query("SELECT * FROM buckets WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.as_ref().map(bucket_from_row).transpose()
    }

    async fn list_buckets(&mut self, account_id: &str) -> StoreResult<Vec<Bucket>> {
        let rows = query("SELECT * FROM buckets WHERE account_id = ? ORDER BY name")
            .bind(account_id)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter().map(bucket_from_row).collect()
    }

    async fn buckets_with_lifecycle(&mut self) -> StoreResult<Vec<Bucket>> {
        let rows = query("SELECT * FROM buckets WHERE lifecycle IS NOT NULL ORDER BY name")
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter().map(bucket_from_row).collect()
    }

    async fn delete_bucket(&mut self, name: &str) -> StoreResult<bool> {
        let r = query("DELETE FROM buckets WHERE name = ?").bind(name).execute(&mut *self.conn).await.map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn set_bucket_config(&mut self, name: &str, policy: Option<&str>, lifecycle: Option<&str>) -> StoreResult<bool> {
        let r = query("UPDATE buckets SET policy = ?, lifecycle = ? WHERE name = ?")
            .bind(policy)
            .bind(lifecycle)
            .bind(name)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn put_object(&mut self, m: &ObjectMeta) -> StoreResult<Option<ObjectMeta>> {
        let old = self.get_object(&m.bucket, &m.key).await?;
        query(
            "INSERT OR REPLACE INTO objects (bucket, key, size, etag, content_type, metadata, last_modified, storage_class, blobs) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.bucket)
        .bind(&m.key)
        .bind(m.size as i64)
        .bind(&m.etag)
        .bind(&m.content_type)
        .bind(json(&m.metadata)?)
        .bind(m.last_modified.0)
        .bind(&m.storage_class)
        .bind(json(&m.blobs)?)
        .execute(&mut *self.conn)
        .await
        .map_err(db_err)?;
        Ok(old)
    }

    async fn get_object(&mut self, bucket: &str, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let row = query("SELECT * FROM objects WHERE bucket = ? AND key = ?")
            .bind(bucket)
            .bind(key)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.as_ref().map(object_from_row).transpose()
    }

    async fn delete_object(&mut self, bucket: &str, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let old = self.get_object(bucket, key).await?;
        if old.is_some() {
            query("DELETE FROM objects WHERE bucket = ? AND key = ?")
                .bind(bucket)
                .bind(key)
                .execute(&mut *self.conn)
                .await
                .map_err(db_err)?;
        }
        Ok(old)
    }

    async fn list_objects(&mut self, bucket: &str, prefix: &str, after: Option<&str>, limit: i64) -> StoreResult<Vec<ObjectMeta>> {
        // `key >= prefix` uses the primary key; the prefix test itself is on bytes (substr).
        let rows = query(
            "SELECT * FROM objects WHERE bucket = ? AND key >= ? AND key > ? AND substr(key, 1, length(?)) = ? ORDER BY key LIMIT ?",
        )
        .bind(bucket)
        .bind(prefix)
        .bind(after.unwrap_or(""))
        .bind(prefix)
        .bind(prefix)
        .bind(limit)
        .fetch_all(&mut *self.conn)
        .await
        .map_err(db_err)?;
        rows.iter().map(object_from_row).collect()
    }

    async fn insert_upload(&mut self, u: &Upload) -> StoreResult<()> {
        query("INSERT INTO uploads (upload_id, bucket, key, content_type, metadata, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&u.upload_id)
            .bind(&u.bucket)
            .bind(&u.key)
            .bind(&u.content_type)
            .bind(json(&u.metadata)?)
            .bind(u.created_at.0)
            .execute(&mut *self.conn)
            .await
            .map_err(unique_violation)?;
        Ok(())
    }

    async fn get_upload(&mut self, upload_id: &str) -> StoreResult<Option<Upload>> {
        let row = query("SELECT * FROM uploads WHERE upload_id = ?")
            .bind(upload_id)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            Ok(Upload {
                upload_id: get(&r, "upload_id")?,
                bucket: get(&r, "bucket")?,
                key: get(&r, "key")?,
                content_type: get(&r, "content_type")?,
                metadata: from_json(&get::<String>(&r, "metadata")?)?,
                created_at: Millis(get(&r, "created_at")?),
            })
        })
        .transpose()
    }

    async fn put_part(&mut self, p: &Part) -> StoreResult<Option<Part>> {
        let old = query("SELECT * FROM upload_parts WHERE upload_id = ? AND part_number = ?")
            .bind(&p.upload_id)
            .bind(p.part_number)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        let old = old.as_ref().map(part_from_row).transpose()?;
        query("INSERT OR REPLACE INTO upload_parts (upload_id, part_number, size, etag, blob) VALUES (?, ?, ?, ?, ?)")
            .bind(&p.upload_id)
            .bind(p.part_number)
            .bind(p.size as i64)
            .bind(&p.etag)
            .bind(&p.blob)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(old)
    }

    async fn list_parts(&mut self, upload_id: &str) -> StoreResult<Vec<Part>> {
        let rows = query("SELECT * FROM upload_parts WHERE upload_id = ? ORDER BY part_number")
            .bind(upload_id)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter().map(part_from_row).collect()
    }

    async fn delete_upload(&mut self, upload_id: &str) -> StoreResult<Vec<Part>> {
        let parts = self.list_parts(upload_id).await?;
        query("DELETE FROM upload_parts WHERE upload_id = ?").bind(upload_id).execute(&mut *self.conn).await.map_err(db_err)?;
        query("DELETE FROM uploads WHERE upload_id = ?").bind(upload_id).execute(&mut *self.conn).await.map_err(db_err)?;
        Ok(parts)
    }

    async fn append_event(&mut self, e: &AuditEvent) -> StoreResult<i64> {
        insert_event(self.conn, e)
    }

    async fn events_since(
        &mut self,
        account_id: &str,
        region: &str,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<StoredEvent>> {
        // Every record is read back once to be delivered: mapped straight from the columns.
        query(EVENTS_SINCE)
            .bind(account_id)
            .bind(region)
            .bind(after_seq)
            .bind(limit)
            .fetch_map(&mut *self.conn, stored_event)
            .await
            .map_err(read_err)
    }

    async fn event_regions(&mut self, account_id: &str) -> StoreResult<Vec<String>> {
        // Hops from one region to the next through an index that starts (account_id, region):
        // a few lookups, where `SELECT DISTINCT region` read every index entry of the account
        // (each delivery pass of a multi-region trail asks).
        let rows = query(
            "WITH RECURSIVE r(region) AS ( \
               SELECT (SELECT MIN(region) FROM events WHERE account_id = ?1) \
               UNION ALL \
               SELECT (SELECT MIN(region) FROM events WHERE account_id = ?1 AND region > r.region) FROM r WHERE r.region IS NOT NULL \
             ) SELECT region FROM r WHERE region IS NOT NULL ORDER BY region",
        )
        .bind(account_id)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| get(r, "region")).collect()
    }

    async fn last_event_seq(&mut self) -> StoreResult<i64> {
        let row = query("SELECT COALESCE(MAX(seq), 0) AS s FROM events").fetch_one(&mut *self.conn).await.map_err(db_err)?;
        get(&row, "s")
    }

    async fn insert_trail(&mut self, t: &Trail) -> StoreResult<()> {
        query("INSERT INTO trails (account_id, home_region, name, trail) VALUES (?, ?, ?, ?)")
            .bind(&t.account_id)
            .bind(&t.home_region)
            .bind(&t.name)
            .bind(json(t)?)
            .execute(&mut *self.conn)
            .await
            .map_err(unique_violation)?;
        Ok(())
    }

    async fn get_trail(&mut self, account_id: &str, home_region: &str, name: &str) -> StoreResult<Option<Trail>> {
        let row = query("SELECT trail FROM trails WHERE account_id = ? AND home_region = ? AND name = ?")
            .bind(account_id)
            .bind(home_region)
            .bind(name)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.map(|r| from_json(&get::<String>(&r, "trail")?)).transpose()
    }

    async fn update_trail(&mut self, t: &Trail) -> StoreResult<()> {
        query("UPDATE trails SET trail = ? WHERE account_id = ? AND home_region = ? AND name = ?")
            .bind(json(t)?)
            .bind(&t.account_id)
            .bind(&t.home_region)
            .bind(&t.name)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn delete_trail(&mut self, account_id: &str, home_region: &str, name: &str) -> StoreResult<bool> {
        query("DELETE FROM trail_cursors WHERE account_id = ? AND home_region = ? AND name = ?")
            .bind(account_id)
            .bind(home_region)
            .bind(name)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        let r = query("DELETE FROM trails WHERE account_id = ? AND home_region = ? AND name = ?")
            .bind(account_id)
            .bind(home_region)
            .bind(name)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn list_trails(&mut self, account_id: &str) -> StoreResult<Vec<Trail>> {
        let rows = query("SELECT trail FROM trails WHERE account_id = ? ORDER BY home_region, name")
            .bind(account_id)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| from_json(&get::<String>(r, "trail")?)).collect()
    }

    async fn logging_trails(&mut self) -> StoreResult<Vec<Trail>> {
        let rows = query("SELECT trail FROM trails ORDER BY account_id, home_region, name")
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        let all: Vec<Trail> = rows.iter().map(|r| from_json(&get::<String>(r, "trail")?)).collect::<StoreResult<_>>()?;
        // Stopped trails may still owe records made before the stop.
        Ok(all.into_iter().filter(|t| t.is_logging || t.stopped_at_seq.is_some()).collect())
    }

    async fn get_cursor(&mut self, t: &Trail, region: &str) -> StoreResult<Option<(i64, Option<String>)>> {
        let row = query(
            "SELECT last_seq, pending FROM trail_cursors WHERE account_id = ? AND home_region = ? AND name = ? AND region = ?",
        )
        .bind(&t.account_id)
        .bind(&t.home_region)
        .bind(&t.name)
        .bind(region)
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db_err)?;
        row.map(|r| Ok((get(&r, "last_seq")?, get(&r, "pending")?))).transpose()
    }

    async fn set_cursor(&mut self, t: &Trail, region: &str, last_seq: i64, pending: Option<&str>) -> StoreResult<()> {
        query(
            "INSERT OR REPLACE INTO trail_cursors (account_id, home_region, name, region, last_seq, pending) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.account_id)
        .bind(&t.home_region)
        .bind(&t.name)
        .bind(region)
        .bind(last_seq)
        .bind(pending)
        .execute(&mut *self.conn)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn lookup_events(&mut self, q: &EventQuery) -> StoreResult<Vec<StoredEvent>> {
        history::lookup_events(self.conn, q).await
    }

    async fn insert_delivered_file(&mut self, t: &Trail, region: &str, f: &DeliveredFile) -> StoreResult<()> {
        query(
            "INSERT INTO delivered_files (account_id, home_region, name, region, bucket, key, sha256, oldest_event, newest_event, delivered_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.account_id)
        .bind(&t.home_region)
        .bind(&t.name)
        .bind(region)
        .bind(&f.bucket)
        .bind(&f.key)
        .bind(&f.sha256)
        .bind(f.oldest_event.0)
        .bind(f.newest_event.0)
        .bind(f.delivered_at.0)
        .execute(&mut *self.conn)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn delivered_files(&mut self, t: &Trail, region: &str, after: i64) -> StoreResult<Vec<DeliveredFile>> {
        let rows = query(
            "SELECT * FROM delivered_files WHERE account_id = ? AND home_region = ? AND name = ? AND region = ? AND seq > ? ORDER BY seq",
        )
        .bind(&t.account_id)
        .bind(&t.home_region)
        .bind(&t.name)
        .bind(region)
        .bind(after)
        .fetch_all(&mut *self.conn)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(DeliveredFile {
                    seq: get(r, "seq")?,
                    bucket: get(r, "bucket")?,
                    key: get(r, "key")?,
                    sha256: get(r, "sha256")?,
                    oldest_event: Millis(get(r, "oldest_event")?),
                    newest_event: Millis(get(r, "newest_event")?),
                    delivered_at: Millis(get(r, "delivered_at")?),
                })
            })
            .collect()
    }

    async fn get_digest_state(&mut self, t: &Trail, region: &str) -> StoreResult<Option<String>> {
        let row = query("SELECT state FROM digest_state WHERE account_id = ? AND home_region = ? AND name = ? AND region = ?")
            .bind(&t.account_id)
            .bind(&t.home_region)
            .bind(&t.name)
            .bind(region)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.map(|r| get(&r, "state")).transpose()
    }

    async fn set_digest_state(&mut self, t: &Trail, region: &str, state: &str) -> StoreResult<()> {
        query("INSERT OR REPLACE INTO digest_state (account_id, home_region, name, region, state) VALUES (?, ?, ?, ?, ?)")
            .bind(&t.account_id)
            .bind(&t.home_region)
            .bind(&t.name)
            .bind(region)
            .bind(state)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_signing_key(&mut self, k: &SigningKey) -> StoreResult<()> {
        query(
            "INSERT INTO signing_keys (region, fingerprint, public_der, sealed_private, valid_from, valid_to) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.region)
        .bind(&k.fingerprint)
        .bind(&k.public_der)
        .bind(&k.sealed_private)
        .bind(k.valid_from.0)
        .bind(k.valid_to.0)
        .execute(&mut *self.conn)
        .await
        .map_err(unique_violation)?;
        Ok(())
    }

    async fn signing_keys(&mut self, region: &str) -> StoreResult<Vec<SigningKey>> {
        let rows = query("SELECT * FROM signing_keys WHERE region = ? ORDER BY valid_from, fingerprint")
            .bind(region)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(SigningKey {
                    region: get(r, "region")?,
                    fingerprint: get(r, "fingerprint")?,
                    public_der: get(r, "public_der")?,
                    sealed_private: get(r, "sealed_private")?,
                    valid_from: Millis(get(r, "valid_from")?),
                    valid_to: Millis(get(r, "valid_to")?),
                })
            })
            .collect()
    }

    async fn ota_updates_using_stream(&mut self, scope: &Scope, stream_id: &str) -> StoreResult<Vec<String>> {
        let rows = query(
            "SELECT ota_update_id FROM ota_stream_uses WHERE account_id = ? AND region = ? AND stream_id = ? ORDER BY ota_update_id",
        )
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(stream_id)
        .fetch_all(&mut *self.conn)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| get(r, "ota_update_id")).collect()
    }

    async fn add_ota_stream_use(&mut self, scope: &Scope, ota_update_id: &str, stream_id: &str) -> StoreResult<()> {
        query(
            "INSERT OR IGNORE INTO ota_stream_uses (account_id, region, ota_update_id, stream_id) VALUES (?, ?, ?, ?)",
        )
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(ota_update_id)
        .bind(stream_id)
        .execute(&mut *self.conn)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn insert_ota_update(&mut self, u: &OtaUpdate) -> StoreResult<()> {
        ota::insert(self.conn, u).await
    }

    async fn get_ota_update(&mut self, scope: &Scope, id: &str) -> StoreResult<Option<OtaUpdate>> {
        ota::get_one(self.conn, scope, id).await
    }

    async fn update_ota_update(&mut self, u: &OtaUpdate) -> StoreResult<()> {
        ota::update(self.conn, u).await
    }

    async fn delete_ota_update(&mut self, scope: &Scope, id: &str) -> StoreResult<bool> {
        ota::delete(self.conn, scope, id).await
    }

    async fn list_ota_updates(&mut self, scope: &Scope, status: Option<OtaStatus>, before_seq: Option<i64>, limit: i64) -> StoreResult<Vec<(i64, OtaUpdate)>> {
        ota::list(self.conn, scope, status, before_seq, limit).await
    }

    async fn newest_ota_update_seq(&mut self) -> StoreResult<i64> {
        ota::newest_seq(self.conn).await
    }

    async fn unfinished_ota_updates(&mut self, after_seq: i64, through_seq: i64, limit: i64) -> StoreResult<Vec<(i64, OtaUpdate)>> {
        ota::unfinished(self.conn, after_seq, through_seq, limit).await
    }

    async fn insert_sns_topic(&mut self, t: &SnsTopic) -> StoreResult<()> {
        query("INSERT INTO sns_topics (account_id, region, name, topic) VALUES (?, ?, ?, ?)")
            .bind(&t.account_id)
            .bind(&t.region)
            .bind(&t.name)
            .bind(json(t)?)
            .execute(&mut *self.conn)
            .await
            .map_err(unique_violation)?;
        Ok(())
    }

    async fn get_sns_topic(&mut self, account_id: &str, region: &str, name: &str) -> StoreResult<Option<SnsTopic>> {
        let row = query("SELECT topic FROM sns_topics WHERE account_id = ? AND region = ? AND name = ?")
            .bind(account_id)
            .bind(region)
            .bind(name)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.map(|r| from_json(&get::<String>(&r, "topic")?)).transpose()
    }

    async fn update_sns_topic(&mut self, t: &SnsTopic) -> StoreResult<bool> {
        let r = query("UPDATE sns_topics SET topic = ? WHERE account_id = ? AND region = ? AND name = ?")
            .bind(json(t)?)
            .bind(&t.account_id)
            .bind(&t.region)
            .bind(&t.name)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_sns_topic(&mut self, account_id: &str, region: &str, name: &str) -> StoreResult<bool> {
        let arn = crate::domain::sns::topic_arn(region, account_id, name);
        query("DELETE FROM sns_deliveries WHERE topic_arn = ?").bind(&arn).execute(&mut *self.conn).await.map_err(db_err)?;
        query("DELETE FROM sns_subscriptions WHERE topic_arn = ?").bind(&arn).execute(&mut *self.conn).await.map_err(db_err)?;
        let r = query("DELETE FROM sns_topics WHERE account_id = ? AND region = ? AND name = ?")
            .bind(account_id)
            .bind(region)
            .bind(name)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn list_sns_topics(&mut self, account_id: &str, region: &str, after_name: Option<&str>, limit: i64) -> StoreResult<Vec<SnsTopic>> {
        let rows = query("SELECT topic FROM sns_topics WHERE account_id = ? AND region = ? AND name > ? ORDER BY name LIMIT ?")
            .bind(account_id)
            .bind(region)
            .bind(after_name.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| from_json(&get::<String>(r, "topic")?)).collect()
    }

    async fn insert_sns_subscription(&mut self, s: &SnsSubscription) -> StoreResult<()> {
        query(
            "INSERT INTO sns_subscriptions (arn, topic_arn, owner, region, protocol, endpoint, token_sha256, token_expires_at, confirmed, \
             authenticate_on_unsubscribe, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.arn)
        .bind(&s.topic_arn)
        .bind(&s.owner)
        .bind(&s.region)
        .bind(&s.protocol)
        .bind(&s.endpoint)
        .bind(&s.token_sha256)
        .bind(s.token_expires_at.0)
        .bind(s.confirmed)
        .bind(s.authenticate_on_unsubscribe)
        .bind(s.created_at.0)
        .execute(&mut *self.conn)
        .await
        .map_err(unique_violation)?;
        Ok(())
    }

    async fn get_sns_subscription(&mut self, arn: &str) -> StoreResult<Option<SnsSubscription>> {
        let row = query("SELECT * FROM sns_subscriptions WHERE arn = ?")
            .bind(arn)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.as_ref().map(sns_subscription_from_row).transpose()
    }

    async fn find_sns_subscription(&mut self, topic_arn: &str, protocol: &str, endpoint: &str) -> StoreResult<Option<SnsSubscription>> {
        let row = query("SELECT * FROM sns_subscriptions WHERE topic_arn = ? AND protocol = ? AND endpoint = ? ORDER BY arn LIMIT 1")
            .bind(topic_arn)
            .bind(protocol)
            .bind(endpoint)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.as_ref().map(sns_subscription_from_row).transpose()
    }

    async fn find_sns_subscription_by_token(&mut self, topic_arn: &str, token_sha256: &str) -> StoreResult<Option<SnsSubscription>> {
        let row = query("SELECT * FROM sns_subscriptions WHERE topic_arn = ? AND token_sha256 = ? ORDER BY arn LIMIT 1")
            .bind(topic_arn)
            .bind(token_sha256)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.as_ref().map(sns_subscription_from_row).transpose()
    }

    async fn update_sns_subscription(&mut self, s: &SnsSubscription) -> StoreResult<bool> {
        let r = query(
            "UPDATE sns_subscriptions SET token_sha256 = ?, token_expires_at = ?, confirmed = ?, authenticate_on_unsubscribe = ? WHERE arn = ?",
        )
        .bind(&s.token_sha256)
        .bind(s.token_expires_at.0)
        .bind(s.confirmed)
        .bind(s.authenticate_on_unsubscribe)
        .bind(&s.arn)
        .execute(&mut *self.conn)
        .await
        .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_sns_subscription(&mut self, arn: &str) -> StoreResult<bool> {
        query("DELETE FROM sns_deliveries WHERE subscription_arn = ?").bind(arn).execute(&mut *self.conn).await.map_err(db_err)?;
        let r = query("DELETE FROM sns_subscriptions WHERE arn = ?").bind(arn).execute(&mut *self.conn).await.map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn list_sns_subscriptions_by_topic(&mut self, topic_arn: &str, after_arn: Option<&str>, limit: i64) -> StoreResult<Vec<SnsSubscription>> {
        let rows = query("SELECT * FROM sns_subscriptions WHERE topic_arn = ? AND arn > ? ORDER BY arn LIMIT ?")
            .bind(topic_arn)
            .bind(after_arn.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter().map(sns_subscription_from_row).collect()
    }

    async fn list_sns_subscriptions_by_owner(&mut self, owner: &str, region: &str, after_arn: Option<&str>, limit: i64) -> StoreResult<Vec<SnsSubscription>> {
        let rows = query("SELECT * FROM sns_subscriptions WHERE owner = ? AND region = ? AND arn > ? ORDER BY arn LIMIT ?")
            .bind(owner)
            .bind(region)
            .bind(after_arn.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter().map(sns_subscription_from_row).collect()
    }

    async fn count_sns_subscriptions(&mut self, topic_arn: &str) -> StoreResult<(i64, i64)> {
        let row = query(
            "SELECT COALESCE(SUM(confirmed), 0) AS c, COALESCE(SUM(1 - confirmed), 0) AS p FROM sns_subscriptions WHERE topic_arn = ?",
        )
        .bind(topic_arn)
        .fetch_one(&mut *self.conn)
        .await
        .map_err(db_err)?;
        Ok((get(&row, "c")?, get(&row, "p")?))
    }

    async fn delete_expired_sns_subscriptions(&mut self, before: Millis) -> StoreResult<Vec<SnsSubscription>> {
        let rows = query("SELECT * FROM sns_subscriptions WHERE confirmed = 0 AND token_expires_at < ? ORDER BY arn")
            .bind(before.0)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        let subs: Vec<SnsSubscription> = rows.iter().map(sns_subscription_from_row).collect::<StoreResult<_>>()?;
        for s in &subs {
            self.delete_sns_subscription(&s.arn).await?;
        }
        Ok(subs)
    }

    async fn insert_sns_delivery(&mut self, d: &SnsDelivery) -> StoreResult<i64> {
        let r = query(
            "INSERT INTO sns_deliveries (region, account_id, topic_arn, subscription_arn, endpoint, message_type, message_id, body, \
             attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.region)
        .bind(&d.account_id)
        .bind(&d.topic_arn)
        .bind(&d.subscription_arn)
        .bind(&d.endpoint)
        .bind(&d.message_type)
        .bind(&d.message_id)
        .bind(&d.sealed_body)
        .bind(d.attempts)
        .bind(d.next_attempt_at.0)
        .bind(d.created_at.0)
        .execute(&mut *self.conn)
        .await
        .map_err(db_err)?;
        Ok(r.last_insert_rowid())
    }

    async fn due_sns_deliveries(&mut self, now: Millis, limit: i64) -> StoreResult<Vec<SnsDelivery>> {
        let rows = query("SELECT * FROM sns_deliveries WHERE next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?")
            .bind(now.0)
            .bind(limit)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(SnsDelivery {
                    id: get(r, "id")?,
                    region: get(r, "region")?,
                    account_id: get(r, "account_id")?,
                    topic_arn: get(r, "topic_arn")?,
                    subscription_arn: get(r, "subscription_arn")?,
                    endpoint: get(r, "endpoint")?,
                    message_type: get(r, "message_type")?,
                    message_id: get(r, "message_id")?,
                    sealed_body: get(r, "body")?,
                    attempts: get(r, "attempts")?,
                    next_attempt_at: Millis(get(r, "next_attempt_at")?),
                    created_at: Millis(get(r, "created_at")?),
                })
            })
            .collect()
    }

    async fn reschedule_sns_delivery(&mut self, id: i64, attempts: i64, next_attempt_at: Millis) -> StoreResult<bool> {
        let r = query("UPDATE sns_deliveries SET attempts = ?, next_attempt_at = ? WHERE id = ?")
            .bind(attempts)
            .bind(next_attempt_at.0)
            .bind(id)
            .execute(&mut *self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_sns_delivery(&mut self, id: i64) -> StoreResult<bool> {
        let r = query("DELETE FROM sns_deliveries WHERE id = ?").bind(id).execute(&mut *self.conn).await.map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn next_sns_delivery_at(&mut self) -> StoreResult<Option<Millis>> {
        let row = query("SELECT MIN(next_attempt_at) AS t FROM sns_deliveries").fetch_one(&mut *self.conn).await.map_err(db_err)?;
        Ok(get::<Option<i64>>(&row, "t")?.map(Millis))
    }

    async fn insert_sns_signing_cert(&mut self, c: &SnsSigningCert) -> StoreResult<()> {
        query("INSERT INTO sns_signing_certs (region, fingerprint, cert_der, sealed_private, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&c.region)
            .bind(&c.fingerprint)
            .bind(&c.cert_der)
            .bind(&c.sealed_private)
            .bind(c.created_at.0)
            .execute(&mut *self.conn)
            .await
            .map_err(unique_violation)?;
        Ok(())
    }

    async fn sns_signing_cert(&mut self, region: &str) -> StoreResult<Option<SnsSigningCert>> {
        let row = query("SELECT * FROM sns_signing_certs WHERE region = ?")
            .bind(region)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.as_ref().map(sns_cert_from_row).transpose()
    }

    async fn sns_signing_cert_by_fingerprint(&mut self, fingerprint: &str) -> StoreResult<Option<SnsSigningCert>> {
        let row = query("SELECT * FROM sns_signing_certs WHERE fingerprint = ?")
            .bind(fingerprint)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_err)?;
        row.as_ref().map(sns_cert_from_row).transpose()
    }
}

fn sns_subscription_from_row(r: &Row) -> StoreResult<SnsSubscription> {
    Ok(SnsSubscription {
        arn: get(r, "arn")?,
        topic_arn: get(r, "topic_arn")?,
        owner: get(r, "owner")?,
        region: get(r, "region")?,
        protocol: get(r, "protocol")?,
        endpoint: get(r, "endpoint")?,
        token_sha256: get(r, "token_sha256")?,
        token_expires_at: Millis(get(r, "token_expires_at")?),
        confirmed: get(r, "confirmed")?,
        authenticate_on_unsubscribe: get(r, "authenticate_on_unsubscribe")?,
        created_at: Millis(get(r, "created_at")?),
    })
}

fn sns_cert_from_row(r: &Row) -> StoreResult<SnsSigningCert> {
    Ok(SnsSigningCert {
        region: get(r, "region")?,
        fingerprint: get(r, "fingerprint")?,
        cert_der: get(r, "cert_der")?,
        sealed_private: get(r, "sealed_private")?,
        created_at: Millis(get(r, "created_at")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store;

    const ACCOUNT: &str = "111122223333";

    /// A store whose writer may use only `extra_pages` more pages than the new database has:
    /// a statement that needs more fails with SQLITE_FULL, as on a full disk.
    async fn store_with_page_limit(path: &Path, extra_pages: i64) -> SqliteStore {
        let conn = open_writer(path).unwrap();
        conn.execute("INSERT INTO accounts (id, created_at) VALUES ('111122223333', 0)", []).unwrap();
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        conn.pragma_update(None, "max_page_count", pages + extra_pages).unwrap();
        SqliteStore::with_writer(conn, path).unwrap()
    }

    fn user(name: &str, tag_bytes: usize) -> User {
        let tags = if tag_bytes == 0 { vec![] } else { vec![IamTag { key: "k".into(), value: "x".repeat(tag_bytes) }] };
        User { account_id: ACCOUNT.into(), name: name.into(), user_id: format!("AIDA{name}"), path: "/".into(), tags, created_at: Millis(0) }
    }

    async fn put(s: &SqliteStore, u: User) -> StoreResult<()> {
        store::write::<_, StoreError, _>(s, move |tx| Box::pin(async move { tx.insert_user(&u).await })).await
    }

    async fn stored(s: &SqliteStore, name: &'static str) -> bool {
        store::read::<_, StoreError, _>(s, move |tx| Box::pin(async move { tx.get_user(ACCOUNT, name).await })).await.unwrap().is_some()
    }

    #[tokio::test]
    async fn a_unit_is_acknowledged_exactly_when_durable_even_when_sqlite_rolls_the_batch_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_with_page_limit(&dir.path().join("t.db"), 3).await;
        // One batch (the current-thread runtime queues all three before the writer runs): a
        // unit failing in the usual way (a duplicate) rolls back alone.
        put(&s, user("dup", 0)).await.unwrap();
        let (a, b, c) = futures::join!(put(&s, user("one", 0)), put(&s, user("dup", 0)), put(&s, user("two", 0)));
        assert!(a.is_ok() && b.is_err() && c.is_ok(), "{a:?} {b:?} {c:?}");
        assert!(stored(&s, "one").await && stored(&s, "two").await);
        // One batch whose middle unit needs more pages than there are: SQLite rolls the whole
        // transaction back. Whatever each unit is told must match what is stored.
        let (a, b, c) = futures::join!(put(&s, user("before", 0)), put(&s, user("too-big", 200_000)), put(&s, user("after", 0)));
        assert!(b.is_err(), "{b:?}");
        for (name, r) in [("before", &a), ("too-big", &b), ("after", &c)] {
            let there = stored(&s, name).await;
            assert_eq!(r.is_ok(), there, "{name}: answered {r:?} but stored: {there}");
        }
        // The writer goes on.
        put(&s, user("later", 0)).await.unwrap();
        assert!(stored(&s, "later").await);
    }

    /// A store whose every log sync waits for the test's verdict on `verdicts` (the first, at
    /// start, included).
    fn store_with_gated_sync(path: &Path) -> (Arc<SqliteStore>, std::sync::mpsc::Sender<std::io::Result<()>>) {
        let conn = open_writer(path).unwrap();
        conn.execute("INSERT INTO accounts (id, created_at) VALUES ('111122223333', 0)", []).unwrap();
        let (verdict, verdicts) = std::sync::mpsc::channel::<std::io::Result<()>>();
        verdict.send(Ok(())).unwrap();
        let sync: SyncFn = Box::new(move || verdicts.recv().unwrap_or_else(|_| Err(std::io::Error::other("test over"))));
        (Arc::new(SqliteStore::with_writer_syncing(conn, path, sync).unwrap()), verdict)
    }

    /// Puts user `name` and returns once its commit is visible (its sync may still be pending),
    /// with the put's task.
    async fn put_until_visible(s: &Arc<SqliteStore>, name: &'static str) -> tokio::task::JoinHandle<StoreResult<()>> {
        let task = tokio::spawn({
            let s = s.clone();
            async move { put(&s, user(name, 0)).await }
        });
        while !stored(s, name).await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task
    }

    /// Readers may see a commit before its sync; its units' callers, and `settle`, hear of it
    /// only after. Units that arrive meanwhile join the next commit, which waits for the sync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_is_answered_only_once_its_commit_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let (s, verdict) = store_with_gated_sync(&dir.path().join("t.db"));
        let first = put_until_visible(&s, "first").await;
        let wait = Duration::from_millis(200);
        assert!(tokio::time::timeout(wait, s.settle()).await.is_err(), "settled before the sync");
        let second = tokio::spawn({
            let s = s.clone();
            async move { put(&s, user("second", 0)).await }
        });
        tokio::time::sleep(wait).await;
        assert!(!first.is_finished(), "answered before its commit was synced");
        assert!(!stored(&s, "second").await, "committed while the previous commit was being synced");
        verdict.send(Ok(())).unwrap();
        first.await.unwrap().unwrap();
        // The second commit goes as soon as the first is synced, and waits for its own sync.
        while !stored(&s, "second").await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(wait).await;
        assert!(!second.is_finished(), "answered before its commit was synced");
        verdict.send(Ok(())).unwrap();
        second.await.unwrap().unwrap();
        s.settle().await.unwrap();
    }

    /// Units run without a savepoint each; one that fails after writing has the transaction
    /// undone and redone with a savepoint per unit. Every caller hears what a savepoint per
    /// unit would have given: the units before it ran again (their callers hear of that run),
    /// the failing unit's writes and record are gone, the units and records after it are kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_unit_failing_after_writing_rolls_back_alone_and_its_transaction_is_redone() {
        use crate::store::conformance::record;
        use std::sync::atomic::AtomicUsize;
        let dir = tempfile::tempdir().unwrap();
        let (s, verdict) = store_with_gated_sync(&dir.path().join("t.db"));
        // The first commit waits for its sync: everything after it goes into one transaction.
        let first = put_until_visible(&s, "first").await;
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = |name: &'static str, fail: bool| {
            let (s, runs, u) = (s.clone(), runs.clone(), user(name, 0));
            tokio::spawn(async move {
                store::write::<usize, StoreError, _>(&*s, move |tx| {
                    Box::pin(async move {
                        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                        tx.insert_user(&u).await?;
                        tx.append_event(&record(&format!("ev-{}", u.name), 5, "Put", &[])).await?;
                        if fail { Err(StoreError::Conflict("said no".into())) } else { Ok(run) }
                    })
                })
                .await
            })
        };
        let appended = |id: &'static str| {
            let s = s.clone();
            tokio::spawn(async move { s.append(record(id, 6, "Alone", &[])).await })
        };
        // Each unit is sent once the one before has run (the runs counted so far say so): the
        // transaction's order is fixed whatever the machine's speed.
        let ran = |n: usize| {
            let runs = runs.clone();
            async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while runs.load(Ordering::SeqCst) < n {
                    assert!(std::time::Instant::now() < deadline, "{} runs after 10 s, expected {n}", runs.load(Ordering::SeqCst));
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        };
        let before = appended("ev-before");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let one = counted("one", false);
        ran(1).await;
        let bad = counted("bad", true);
        ran(4).await;
        let two = counted("two", false);
        ran(5).await;
        let after = appended("ev-after");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!stored(&s, "one").await, "the second transaction waits for the first one's sync");
        verdict.send(Ok(())).unwrap();
        first.await.unwrap().unwrap();
        verdict.send(Ok(())).unwrap();
        // "one" ran (1), "bad" ran and failed (2), the transaction was redone ("one" 3, "bad" 4),
        // then "two" ran (5).
        assert_eq!(one.await.unwrap().unwrap(), 3, "the caller hears of the last run");
        let e = bad.await.unwrap();
        assert!(matches!(&e, Err(StoreError::Conflict(m)) if m == "said no"), "{e:?}");
        assert_eq!(two.await.unwrap().unwrap(), 5);
        before.await.unwrap().unwrap();
        after.await.unwrap().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 5);
        for (name, there) in [("first", true), ("one", true), ("bad", false), ("two", true)] {
            assert_eq!(stored(&s, name).await, there, "{name}");
        }
        let raw = Connection::open(dir.path().join("t.db")).unwrap();
        let ids: Vec<String> =
            raw.prepare("SELECT event_id FROM events ORDER BY seq").unwrap().query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(ids, ["ev-before", "ev-one", "ev-two", "ev-after"], "each kept record once, the failed unit's not at all");
        // The writer goes on with a unit of its own, without a savepoint once more.
        let later = put_until_visible(&s, "later").await;
        verdict.send(Ok(())).unwrap();
        later.await.unwrap().unwrap();
    }

    /// While a sync is slow the writer copies lookup keys in whole slices, inside the commit it
    /// is gathering; fewer than a slice's worth wait for the backlog copy, which comes before
    /// a batch's units once records have waited long enough.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookup_keys_are_copied_in_slices_while_a_sync_is_slow() {
        use crate::store::conformance::record;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (s, verdict) = store_with_gated_sync(&path);
        let raw = Connection::open(&path).unwrap();
        raw.busy_timeout(BUSY_TIMEOUT).unwrap();
        let count = |table: &str| -> i64 { raw.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap() };
        let append = |id: String| {
            let s = s.clone();
            tokio::spawn(async move { s.append(record(&id, 1_000, "A", &[("T", "arn:x")])).await })
        };
        // The first record's commit waits for its sync. Once it has waited for the backlog copy
        // to be due, the next batch starts by copying its keys (one record); the slice and 36
        // records appended meanwhile join that batch, and so does the one whole slice of keys
        // the writer copies while the sync is still pending (a slice and 36 waiting: 36 left).
        let first = append("ev-000".into());
        while count("events") < 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(INDEX_EVERY + Duration::from_millis(50)).await;
        let more = INDEX_SLICE + 36;
        assert!(more < MAX_BATCH as i64, "the test needs a slice and 36 more records in one batch");
        let rest: Vec<_> = (1..=more).map(|i| append(format!("ev-{i:03}"))).collect();
        // Time for all of them to reach the writer (a few milliseconds).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(count("events"), 1, "the next commit waits for the first one's sync");
        verdict.send(Ok(())).unwrap();
        first.await.unwrap().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count("events") < 1 + more {
            assert!(std::time::Instant::now() < deadline, "the records did not commit together ({} did)", count("events") - 1);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(count("event_keys"), 1 + INDEX_SLICE, "the backlog's one record and one whole slice, in the commit with the records");
        assert_eq!(count("event_resource_keys"), 1 + INDEX_SLICE, "with their records' resources");
        verdict.send(Ok(())).unwrap();
        for r in rest {
            r.await.unwrap().unwrap();
        }
        // The rest once the backlog copy is due again: before the next batch's units, so not
        // the new record itself.
        tokio::time::sleep(INDEX_EVERY + Duration::from_millis(50)).await;
        let last = append("ev-last".into());
        verdict.send(Ok(())).unwrap();
        last.await.unwrap().unwrap();
        assert_eq!(count("events"), 2 + more);
        assert_eq!(count("event_keys"), 1 + more);
        assert_eq!(count("event_resource_keys"), 1 + more);
    }

    /// A record whose column holds a value of the wrong kind reads as a corrupt store, not as
    /// a database failure (delivery reports it as such and stops the lane).
    #[tokio::test]
    async fn a_record_of_the_wrong_kind_reads_as_corrupt() {
        use crate::store::conformance::record;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(&path).await.unwrap();
        s.append(record("ev-1", 1_000, "A", &[])).await.unwrap();
        let raw = Connection::open(&path).unwrap();
        raw.busy_timeout(BUSY_TIMEOUT).unwrap();
        raw.execute("UPDATE events SET event_time = 'soon'", []).unwrap();
        let e = store::read::<_, StoreError, _>(&s, |tx| Box::pin(async move { tx.events_since("555555555555", "eu-west-1", 0, 10).await }))
            .await
            .unwrap_err();
        assert!(matches!(&e, StoreError::Corrupt(m) if m.contains("event_time") || m.contains("column")), "{e:?}");
    }

    /// After a failed sync nothing is answered as durable: the commit's units, later writes and
    /// `settle` all fail, and say to restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_sync_fails_its_units_and_every_later_write() {
        let dir = tempfile::tempdir().unwrap();
        let (s, verdict) = store_with_gated_sync(&dir.path().join("t.db"));
        verdict.send(Err(std::io::Error::other("EIO"))).unwrap();
        let e = put(&s, user("lost", 0)).await.unwrap_err();
        assert!(matches!(&e, StoreError::Unavailable(m) if m.contains("restart")), "{e:?}");
        let e = put(&s, user("later", 0)).await.unwrap_err();
        assert!(matches!(&e, StoreError::Unavailable(m) if m.contains("restart")), "{e:?}");
        assert!(s.settle().await.is_err());
        assert!(!stored(&s, "later").await);
    }
}

#[cfg(test)]
mod on_disk_tests {
    use super::history::lookup_query;
    use super::*;
    use crate::store::{self, LookupKey};

    /// The plan SQLite picks for `sql` on a freshly migrated database, one line per step.
    async fn plan(sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(SqliteStore::open(&path).await.unwrap());
        let conn = Connection::open(&path).unwrap();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        stmt.query_map(params, |r| r.get::<_, String>(3)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    /// Delivery's read of a lane's new records seeks through an index to the cursor. (Through
    /// any other index it walked and sorted every record of the account on each pass: 60 ms
    /// at 750,000 records.)
    #[tokio::test]
    async fn events_since_seeks_to_the_cursor() {
        let plan = plan(EVENTS_SINCE, rusqlite::params!["1", "us-east-1", 0, 10]).await;
        assert_eq!(plan, ["SEARCH events USING INDEX events_by_account_seq (account_id=? AND region=? AND seq>?)"]);
    }

    /// ListThings with a type filter reads the typed things of that type in name order
    /// (migration 0010's partial index), without it the scope's things in name order.
    #[tokio::test]
    async fn list_things_seeks_by_type_when_filtered_by_one() {
        let p = plan(things::LIST_THINGS_SQL[1], rusqlite::params!["1", "r", "", "bulb", None::<String>, None::<String>, None::<String>, false, None::<String>, None::<String>, None::<String>, 10]).await;
        assert!(p[0].starts_with("SEARCH t USING INDEX things_by_type (account_id=? AND region=? AND thing_type_name=? AND thing_name>?)"), "{p:?}");
        assert!(!p.iter().any(|l| l.contains("TEMP B-TREE")), "sorted, not read in index order: {p:?}");
        let p = plan(things::LIST_THINGS_SQL[0], rusqlite::params!["1", "r", "", None::<String>, None::<String>, None::<String>, false, None::<String>, None::<String>, None::<String>, 10]).await;
        assert!(p[0].starts_with("SEARCH t USING INDEX sqlite_autoindex_things_"), "{p:?}");
        assert!(p[0].ends_with("(account_id=? AND region=? AND thing_name>?)"), "{p:?}");
        assert!(!p.iter().any(|l| l.contains("TEMP B-TREE")), "sorted, not read in index order: {p:?}");
    }

    /// LookupEvents' reads of the side tables go through their indexes, and its read of the
    /// records not yet copied seeks past the copied ones (migration 0009).
    #[tokio::test]
    async fn lookups_seek_through_the_key_indexes() {
        let q = EventQuery { account_id: "1".into(), region: "r".into(), attribute: None, start: None, end: None, before: None, limit: 50 };
        let sql = |from: &str, scope: &str, after: Option<i64>, filter: &str| lookup_query(from, scope, after, filter, &q, None).sql().to_string();
        let p = plan(&sql("event_keys k JOIN events e ON e.seq = k.seq", "k", None, " AND k.event_name = ?"), rusqlite::params!["1", "r", 0, 9, 9, 9, 9, "A", 50]).await;
        assert!(p[0].starts_with("SEARCH k USING COVERING INDEX event_keys_by_name (account_id=? AND region=? AND event_name=?"), "{p:?}");
        assert!(!p.iter().any(|l| l.contains("TEMP B-TREE")), "sorted, not read in index order: {p:?}");
        let p = plan(&sql("event_resource_keys k JOIN events e ON e.seq = k.seq", "k", None, " AND k.resource_name = ?"), rusqlite::params!["1", "r", 0, 9, 9, 9, 9, "A", 50]).await;
        assert!(p[0].starts_with("SEARCH k USING COVERING INDEX event_resource_keys_by_name (account_id=? AND region=? AND resource_name=?"), "{p:?}");
        assert!(!p.iter().any(|l| l.contains("TEMP B-TREE")), "sorted, not read in index order: {p:?}");
        let p = plan(&sql("events e JOIN event_resources r ON r.seq = e.seq", "e", Some(5), " AND r.resource_name = ?"), rusqlite::params!["1", "r", 0, 9, 9, 9, 9, 5, "A", 50]).await;
        assert!(p[0].starts_with("SEARCH e USING INDEX events_by_account_seq (account_id=? AND region=? AND seq>?)"), "{p:?}");
        let p = plan(&sql("events e", "e", Some(5), " AND e.username = ?"), rusqlite::params!["1", "r", 0, 9, 9, 9, 9, 5, "A", 50]).await;
        assert!(p[0].starts_with("SEARCH e USING INDEX events_by_account_seq (account_id=? AND region=? AND seq>?)"), "{p:?}");
    }

    /// LookupEvents answers the same whether the records' keys were copied to the side tables
    /// or not: every attribute, newest first, page by page, with none, some or all copied.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_are_the_same_before_and_after_the_keys_are_copied() {
        use crate::store::conformance::record;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(&path).await.unwrap();
        for i in 0..60i64 {
            // Whole-second times repeat; names and resources vary.
            let arn = format!("arn:{}", i % 4);
            s.append(record(&format!("ev-{i:02}"), 1_000 + i / 3, ["A", "B", "C"][i as usize % 3], &[("T1", &arn), ("T2", "arn:x")])).await.unwrap();
        }
        let raw = Connection::open(&path).unwrap();
        raw.busy_timeout(BUSY_TIMEOUT).unwrap();
        raw.execute_batch("DELETE FROM event_keys; DELETE FROM event_resource_keys;").unwrap();
        let lookups: Vec<Option<(LookupKey, &str)>> = vec![
            None,
            Some((LookupKey::EventName, "A")),
            Some((LookupKey::ResourceName, "arn:1")),
            Some((LookupKey::ResourceType, "T2")),
            Some((LookupKey::ReadOnly, "true")),
            Some((LookupKey::Username, "root")),
            Some((LookupKey::EventSource, "iot.amazonaws.com")),
            Some((LookupKey::AccessKeyId, "AKIAEXAMPLE")),
            Some((LookupKey::EventId, "ev-07")),
            Some((LookupKey::EventName, "none")),
        ];
        // Every lookup, in pages of 7: the event IDs in the order served.
        let all_pages = || async {
            let mut out = Vec::new();
            for attribute in &lookups {
                let mut ids = Vec::new();
                let mut before = None;
                loop {
                    let q = EventQuery {
                        account_id: "555555555555".into(),
                        region: "eu-west-1".into(),
                        attribute: attribute.map(|(k, v)| (k, v.to_string())),
                        start: None,
                        end: None,
                        before,
                        limit: 7,
                    };
                    let page = store::read::<_, StoreError, _>(&s, move |tx| Box::pin(async move { tx.lookup_events(&q).await })).await.unwrap();
                    ids.extend(page.iter().map(|e| e.event_id.clone()));
                    match page.last() {
                        Some(last) if page.len() == 7 => before = Some((last.event_time, last.seq)),
                        _ => break,
                    }
                }
                out.push(ids);
            }
            out
        };
        let none_copied = all_pages().await;
        let expected_all: Vec<String> = (0..60).rev().map(|i| format!("ev-{i:02}")).collect();
        assert_eq!(none_copied[0], expected_all, "newest first, each once");
        assert_eq!(none_copied[1].len(), 20);
        assert_eq!(none_copied[2].len(), 15);
        assert_eq!(none_copied[3].len(), 60);
        assert_eq!(none_copied[8], ["ev-07"]);
        assert!(none_copied[9].is_empty());
        raw.execute_batch("BEGIN").unwrap();
        assert_eq!(index_backlog(&raw, 0, 25).unwrap(), 25);
        raw.execute_batch("COMMIT").unwrap();
        assert_eq!(all_pages().await, none_copied, "with 25 of 60 copied");
        raw.execute_batch("BEGIN").unwrap();
        assert_eq!(index_backlog(&raw, 0, 1000).unwrap(), 35);
        assert_eq!(index_backlog(&raw, 1, 1000).unwrap(), 0, "none waiting");
        raw.execute_batch("COMMIT").unwrap();
        let resources: i64 = raw.query_row("SELECT COUNT(*) FROM event_resource_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(resources, 120, "every resource's keys copied once");
        assert_eq!(all_pages().await, none_copied, "with all copied");
    }

    /// The job engine's pass seeks to the due jobs; it does not read every IN_PROGRESS job (an
    /// index on due_at alone lost to `jobs_by_status` and its scan).
    #[tokio::test]
    async fn due_jobs_seek_to_the_due_ones() {
        let plan = plan(jobs::DUE_JOBS, rusqlite::params![0, 10]).await;
        assert_eq!(plan, ["SEARCH jobs USING INDEX jobs_due (status=? AND due_at<?)"]);
    }

    /// Checkpoints happen off the writer: the database file receives what the log held. (A
    /// checkpointer that never ran, or ran on a connection that had not noticed WAL mode and
    /// so did nothing, left the file empty and the log growing without end.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_checkpointer_copies_the_log_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(&path).await.unwrap();
        let account = Account { id: "1".into(), created_at: Millis(0) };
        store::write::<_, StoreError, _>(&s, move |tx| Box::pin(async move { tx.insert_account(&account).await })).await.unwrap();
        // About 4 pages per commit: the log passes the checkpoint threshold several times.
        for i in 0..1500 {
            let user = User {
                account_id: "1".into(),
                name: format!("u{i}"),
                user_id: format!("{i}{}", "x".repeat(2000)),
                path: "/".into(),
                tags: vec![],
                created_at: Millis(0),
            };
            store::write::<_, StoreError, _>(&s, move |tx| Box::pin(async move { tx.insert_user(&user).await })).await.unwrap();
        }
        let mut db = 0;
        for _ in 0..50 {
            db = std::fs::metadata(&path).unwrap().len();
            if db > 2_000_000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(db > 2_000_000, "the database file has {db} bytes: nothing was checkpointed");
    }

    /// A checkpoint refused for another connection's lock is told apart from a failure (the
    /// checkpointer logs the first at debug level: under load it happens several times a second).
    #[test]
    fn a_checkpoint_refused_for_a_lock_is_busy_and_a_failure_is_not() {
        // What the checkpointer met under load, as its log showed it: "database is locked".
        let refused = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), Some("database is locked".into()));
        assert!(is_busy(&refused), "{refused:?}");
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).unwrap();
        let failed = conn.wal_checkpoint_v2(Some("no_such_schema"), rusqlite::wal::CheckpointMode::PASSIVE).unwrap_err();
        assert!(!is_busy(&failed), "{failed:?}");
    }

    /// The log restarts from its beginning rather than growing: background checkpoints that
    /// commits keep overtaking never copy all of it, so past `RESTART_PAGES` the writer
    /// finishes the copy itself once one caught up, and past `MAX_LOG_PAGES` in any case.
    /// (Without that the log reached gigabytes in a benchmark.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_restarts_under_steady_writes_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = Arc::new(SqliteStore::open(&path).await.unwrap());
        let account = Account {
            id: "1".into(),
            created_at: Millis(0),
        };
        store::write::<_, StoreError, _>(&*s, move |tx| {
            Box::pin(async move { tx.insert_account(&account).await })
        })
        .await
        .unwrap();
        // Readers keep read transactions coming all along.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (s, stop) = (s.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        store::read::<_, StoreError, _>(&*s, |tx| {
                            Box::pin(async move { tx.get_user("1", "u1").await })
                        })
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        // About 3 pages per commit, 8 units in flight: twice the log's bound in all.
        let pages_per_commit = 3;
        let commits = 2 * MAX_LOG_PAGES as usize / pages_per_commit;
        let mut max_wal = 0;
        let wal = dir.path().join("t.db-wal");
        let units = futures::stream::iter(0..commits).map(|i| {
            let s = s.clone();
            async move {
                let user = User {
                    account_id: "1".into(),
                    name: format!("u{i}"),
                    user_id: format!("{i}{}", "x".repeat(8000)),
                    path: "/".into(),
                    tags: vec![],
                    created_at: Millis(0),
                };
                store::write::<_, StoreError, _>(&*s, move |tx| {
                    Box::pin(async move { tx.insert_user(&user).await })
                })
                .await
                .unwrap();
            }
        });
        use futures::StreamExt as _;
        let mut units = units.buffer_unordered(8);
        while units.next().await.is_some() {
            max_wal = max_wal.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.await.unwrap();
        }
        let bound = (MAX_LOG_PAGES + RESTART_PAGES) as u64 * 4096;
        assert!(
            max_wal < bound,
            "the log reached {max_wal} bytes (bound {bound}): it never restarted"
        );
    }
}
