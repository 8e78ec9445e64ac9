//! Making commits durable off the writer's thread.
//!
//! The writer commits with `synchronous=NORMAL`: SQLite writes the transaction's pages to the
//! WAL file and publishes the commit to readers, without waiting for the disk. The syncer
//! thread then calls `fdatasync` on the WAL file (a sync covers every byte written to the file
//! before it, whichever descriptor wrote them) and only then answers the commit's units. While
//! it waits for the disk the writer runs the units that arrive meanwhile in its next
//! transaction, which it commits as soon as the syncer is free: at most one commit is with the
//! syncer at a time, so batches are as large as with a sync inside the commit, but the writer
//! no longer sits idle during every sync (under steady load it did for about half its time).
//!
//! A commit is therefore visible (to readers) shortly before it is durable. Every API call
//! writes its own audit record, which commits after anything the call read and is answered
//! only once durable, so no caller is ever told of something that a crash could take back.
//! Work that acts outside the store on what it read, without writing first (an object served
//! to S3 clients, an SNS message posted), calls [`Durability::settle`] in between.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, mpsc as std_mpsc};

use tokio::sync::{mpsc, oneshot, watch};

use super::Job;
use crate::store::{StoreError, StoreResult};

/// The disk flush a commit waits for: `fdatasync` of the WAL file in production, a test's own
/// function in tests.
pub(super) type SyncFn = Box<dyn FnMut() -> io::Result<()> + Send>;

/// Opens the WAL file of the database at `db` for syncing. The writer's connection keeps the
/// file in place (SQLite removes it only when its last connection closes) for as long as the
/// syncer runs.
pub(super) fn wal_sync(db: &std::path::Path) -> StoreResult<SyncFn> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let file = std::fs::File::open(&wal)
        .map_err(|e| StoreError::Database(format!("cannot open the write-ahead log {}: {e}", std::path::Path::new(&wal).display())))?;
    Ok(Box::new(move || file.sync_data()))
}

/// A commit waiting for the disk: the answer for each of its units.
pub(super) struct Committed {
    pub generation: u64,
    pub answers: Vec<(oneshot::Sender<StoreResult<()>>, StoreResult<()>)>,
}

/// How far the disk has caught up with the writer.
#[derive(Clone, Copy, Debug, Default)]
struct Synced {
    /// Every commit numbered up to this is durable.
    through: u64,
    /// A sync failed: what the log holds on disk is unknown from then on.
    failed: bool,
}

/// What the writer, the syncer and [`settle`](Durability::settle) share.
pub(super) struct Durability {
    /// The number of the latest commit the writer started. Set before its `COMMIT`, which is
    /// when readers may start to see it: a read that saw a commit finds at least its number.
    started: AtomicU64,
    synced: watch::Sender<Synced>,
    /// Whether a commit is with the syncer.
    busy: Mutex<bool>,
    idle: Condvar,
}

impl Durability {
    /// Starts the syncer thread. It syncs once at start (for what a killed predecessor left in
    /// the page cache), then once per commit the writer hands it; it wakes the writer, through
    /// `wake`, each time it is free again. It ends when the writer drops its sender.
    pub(super) fn start(
        mut sync: SyncFn,
        wake: mpsc::WeakSender<Job>,
    ) -> StoreResult<(std::sync::Arc<Self>, std_mpsc::Sender<Committed>)> {
        let this = std::sync::Arc::new(Self {
            started: AtomicU64::new(0),
            synced: watch::Sender::new(Synced::default()),
            busy: Mutex::new(false),
            idle: Condvar::new(),
        });
        sync().map_err(|e| StoreError::Unavailable(format!("cannot sync the write-ahead log: {e}")))?;
        let (hand, commits) = std_mpsc::channel::<Committed>();
        let shared = this.clone();
        std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || shared.run(sync, commits, wake))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the sync thread: {e}")))?;
        Ok((this, hand))
    }

    fn run(&self, mut sync: SyncFn, commits: std_mpsc::Receiver<Committed>, wake: mpsc::WeakSender<Job>) {
        while let Ok(first) = commits.recv() {
            let batch: Vec<Committed> = std::iter::once(first).chain(commits.try_iter()).collect();
            let through = batch.iter().map(|c| c.generation).max().unwrap_or(0);
            let outcome = if self.failed() { Err(io::Error::other("an earlier sync failed")) } else { sync() };
            match outcome {
                Ok(()) => {
                    for (done, answer) in batch.into_iter().flat_map(|c| c.answers) {
                        let _ = done.send(answer);
                    }
                    self.synced.send_modify(|s| s.through = s.through.max(through));
                }
                Err(e) => {
                    // Whether the pages reached the disk is unknown, and a later sync that
                    // succeeds would not say either: no unit is answered as durable from now on.
                    tracing::error!(error = %e, "syncing the write-ahead log failed; every write fails until the server restarts");
                    let msg = format!("the database log could not be synced to disk ({e}); restart the server");
                    // Marked before anyone hears of it: a caller that writes again once told must
                    // find the writer refusing (else its unit could still commit, visible to
                    // readers, and be answered as failed only afterwards).
                    self.synced.send_modify(|s| s.failed = true);
                    for (done, _) in batch.into_iter().flat_map(|c| c.answers) {
                        let _ = done.send(Err(StoreError::Unavailable(msg.clone())));
                    }
                }
            }
            *self.busy.lock().unwrap_or_else(|p| p.into_inner()) = false;
            self.idle.notify_all();
            if let Some(writer) = wake.upgrade() {
                // A full queue wakes the writer anyway.
                let _ = writer.try_send(Job::Synced);
            }
        }
    }

    /// Whether a sync failed (every write fails from then on).
    pub(super) fn failed(&self) -> bool {
        self.synced.borrow().failed
    }

    /// Whether a commit is with the syncer now.
    pub(super) fn busy(&self) -> bool {
        *self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until the syncer is free.
    pub(super) fn wait_idle(&self) {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            busy = self.idle.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Numbers the commit the writer is about to make.
    pub(super) fn next_generation(&self) -> u64 {
        self.started.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Hands a commit to the syncer.
    pub(super) fn hand_over(&self, hand: &std_mpsc::Sender<Committed>, commit: Committed) {
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) = true;
        if let Err(std_mpsc::SendError(commit)) = hand.send(commit) {
            // The syncer is gone (it never stops before the writer): nothing can be durable.
            *self.busy.lock().unwrap_or_else(|p| p.into_inner()) = false;
            for (done, _) in commit.answers {
                let _ = done.send(Err(StoreError::Unavailable("the sync thread has stopped".into())));
            }
        }
    }

    /// Returns once every commit a read could have seen before this call is durable.
    pub(super) async fn settle(&self) -> StoreResult<()> {
        let target = self.started.load(Ordering::SeqCst);
        let mut synced = self.synced.subscribe();
        let s = *synced
            .wait_for(|s| s.failed || s.through >= target)
            .await
            .map_err(|_| StoreError::Unavailable("the sync thread has stopped".into()))?;
        if s.failed {
            return Err(StoreError::Unavailable("the database log could not be synced to disk; restart the server".into()));
        }
        Ok(())
    }
}
