//! Making sled's writes durable, and why that holds for every file sled writes.
//!
//! sled 0.34.7 writes these files under `data_dir`, and this is how each becomes durable:
//!
//! - `db`, the log: every page write, by whichever thread makes it (the committer, or a reader
//!   thread splitting, merging or consolidating a node), lands in sled's in-memory io buffers,
//!   which `flush()` writes to `db` (with `sync_file_range`, which neither flushes the disk's
//!   cache nor metadata: sled issue #1452). [`Durability::sync`] follows `flush()` with an
//!   `fdatasync` of `db`. So when `sync` returns `Ok`, every write applied before the call is on
//!   disk, whoever wrote the pages around it; anything written after rides the next sync. A
//!   checkpoint's reopen (`checkpoint/`) `fdatasync`s `db` too: sled's open writes every free
//!   segment with zeros, which would otherwise make the next batch's sync long.
//! - `blobs/*`: sled writes a node to its own blob file when the node serializes to more than a
//!   quarter of a segment, from whatever thread writes the node, and never fsyncs it. Listing
//!   and fsyncing blob files after a flush cannot be made safe: a reader thread may create a blob
//!   during the listing, and sled's io threads may write the log entry pointing at it to `db`
//!   before we sync the blob. So hookgate never lets sled write one: no value is over
//!   `pack::max_value` of the store's segments (6 KiB at 512 KiB, 24 KiB at 2 MiB; a sealed
//!   pack is only kept when shorter than its raw bytes; the open pack in `meta`, 8 bytes more,
//!   is the one value of its tree that size) and no key
//!   over `pack::MAX_KEY` (event bodies are cut into parts; a sealed dedup run's value keys
//!   hold a dedup key of up to ~400 bytes, and keep key and value within `MAX_VALUE` + 10,
//!   as an `events` entry), and a
//!   leaf holds at most 20 entries, so no node reaches the threshold (see `pack.rs` for the
//!   arithmetic). A store written by an earlier hookgate may hold blob files: they are never
//!   written again, so [`Durability::new`] fsyncs them, and their directory, once at open.
//! - `conf`: written once, when the store is created, and never synced by sled: synced here at
//!   every open, with the directory entries of `data_dir`.
//! - `snap.*`: a snapshot of the page table, written to a temporary file, `sync_all`ed and
//!   renamed by sled, old ones removed. It is only a shortcut for recovery: without it, sled
//!   replays the whole log, which holds everything. Losing a rename to a power loss costs
//!   start-up time, never data.
//!
//! What a crash keeps of the writes after the last sync: sled replays its log in order at open
//! and stops at the first torn message or missing segment, so it recovers a prefix of the
//! writes made since, in the order they were made (its own transactions rest on this). A batch
//! of events only is written without a transaction, its next seq last (`append.rs`): the store
//! after a crash holds every batch up to the next seq it holds, and perhaps part of the next
//! batch, whose requests were not answered (answers wait for this sync); the open removes that
//! part (`torn_batch.rs`). Every other batch is one sled transaction, recovered whole or not at
//! all.
//!
//! Beside sled, `<data_dir>/dedup-runs/*.run` (`run_file.rs`) hold copies of the sealed dedup
//! runs, read only while a checkpoint has sled closed. They are never synced and need not be:
//! sled holds each run, and a copy that does not check out (a CRC per value and on the index) is
//! not used, so losing or damaging one costs waiting for sled, never a wrong answer.
//!
//! One assumption this does not close: sled reuses a segment of `db` once the pages moved out of
//! it were written with `sync_file_range` (its "stable" LSN: `pagecache/segment.rs`, header
//! note 1; `pagecache/iobuf.rs`), not after an `fdatasync`. Every batch's `fdatasync` makes
//! those moved pages durable; but if, within one `flush()`, sled moved an acknowledged page and
//! reused its old segment, and power fails before the batch's `fdatasync`, a disk whose volatile
//! cache reorders writes could keep the overwrite and lose the moved page. Closing it needs sled
//! to fsync before reusing a segment. Checkpoints (`checkpoint/`) add no such case: sled is
//! reopened only after a synced batch. Nor do compactions (`compact/`): the copy's files and
//! directory are fsynced whole, while the committer is paused after a synced batch, before
//! `current` names it (itself fsynced and renamed, and its directory fsynced).
//!
//! A failed `fdatasync` is fatal: the kernel may have dropped the dirty pages it could not
//! write and a retry may then "succeed" (PostgreSQL's fsync errors, 2018). A failed sled write
//! is fatal too: sled 0.34 then sets a global error and refuses every later read and write. The
//! committer stops at once, nothing after it is acknowledged, and hookgate exits for its
//! supervisor to restart it on what the disk holds. So that a full disk does not come to that,
//! [`Durability::room_for`] refuses a batch (503) while the file system has less free space
//! than the batch needs plus a reserve; batches without events (cursors, and the sweeper's
//! deletes, which free space) get a smaller reserve.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// The environment variable that injects an fsync failure, for the fail-stop tests: the sync
/// after this many successful ones fails as an fdatasync error would.
pub const FAULT_ENV: &str = "HOOKGATE_TEST_FAIL_FSYNC_AFTER";
/// The environment variable that wedges the committer, for the watchdog test: the sync after
/// this many successful ones never returns, as an fsync on a dead disk may not.
pub const HANG_ENV: &str = "HOOKGATE_TEST_HANG_FSYNC_AFTER";
/// The environment variable that slows every fdatasync by this many milliseconds, for the
/// slow-commit log's test (`slow_commit.rs`), as a failing disk would.
pub const SLOW_FSYNC_ENV: &str = "HOOKGATE_TEST_SLOW_FSYNC_MS";

/// A fault injected into [`Durability::sync`] (tests only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Fail,
    Hang,
}

/// Why a sync failed. Either is fatal.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// sled could not write its buffers.
    #[error("cannot write the store's log: {0}")]
    Flush(#[source] sled::Error),
    /// The fsync failed: what the disk holds is unknown.
    #[error("fdatasync of the store's log failed: {0}")]
    Fsync(#[source] io::Error),
}

/// Free space kept back from batches with events, and from those without.
const RESERVE_EVENTS: u64 = 1024 * 1024;
const RESERVE_WRITES: u64 = 256 * 1024;

/// How long each part of a [`Durability::reopen`] took: sled closing (its last flush, its
/// threads), opening (its snapshot read, its log replayed since, a new snapshot written), and the
/// fsyncs of its files after.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reopened {
    pub close: Duration,
    pub open: Duration,
    pub sync: Duration,
}

pub struct Durability {
    db: sled::Db,
    dir: PathBuf,
    /// sled's log file, `<data_dir>/db`, opened once.
    log: File,
    /// Syncs left before an injected fault (tests only; see [`FAULT_ENV`] and [`HANG_ENV`]).
    fault_after: Option<(u64, Fault)>,
    /// Added to every fdatasync (tests only; see [`SLOW_FSYNC_ENV`]).
    slow_fsync: Option<Duration>,
}

/// What one [`Durability::sync`] did, and how long each part took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Synced {
    pub fsyncs: u64,
    /// sled's flush: its buffer written to the log file by an io thread, which waits for the
    /// device.
    pub flush: Duration,
    /// The fdatasync of the log file.
    pub fdatasync: Duration,
}

impl Durability {
    pub fn new(db: sled::Db, dir: &Path) -> io::Result<Durability> {
        sync_old_blobs(&dir.join("blobs"))?;
        let log = File::open(dir.join("db"))?;
        sync_sled_files(dir)?;
        let fault_after = [(FAULT_ENV, Fault::Fail), (HANG_ENV, Fault::Hang)]
            .into_iter()
            .find_map(|(var, fault)| {
                let syncs = std::env::var(var).ok()?.parse().ok()?;
                tracing::warn!(syncs, "{var} is set: an fsync fault will be injected.");
                Some((syncs, fault))
            });
        let slow_fsync = std::env::var(SLOW_FSYNC_ENV).ok().and_then(|ms| {
            let ms = ms.parse().ok()?;
            tracing::warn!(ms, "{SLOW_FSYNC_ENV} is set: every fdatasync takes longer.");
            Some(Duration::from_millis(ms))
        });
        Ok(Durability {
            db,
            dir: dir.to_path_buf(),
            log,
            fault_after,
            slow_fsync,
        })
    }

    /// Lets go of sled (the caller has dropped every other handle of it), then takes the handle
    /// `open` returns (a checkpoint: see `checkpoint/`). The log file and the fault hook's
    /// count stay.
    pub fn reopen(
        self,
        open: impl FnOnce() -> Result<sled::Db, sled::Error>,
    ) -> Result<(Durability, Reopened), StoreError> {
        let Durability {
            db,
            dir,
            log,
            fault_after,
            slow_fsync,
        } = self;
        let started = Instant::now();
        // sled's drop flushes what it holds (a dedup run's step written after the last commit)
        // but only logs a failure, and the reopened sled has a clean error state: a failed
        // write here went unnoticed while the committer went on acknowledging. Flushed and
        // synced first, a failure stops the committer (fail-stop).
        db.flush()?;
        log.sync_data()?;
        drop(db);
        let closed = Instant::now();
        let db = open()?;
        let opened = Instant::now();
        // The open wrote a snapshot and renamed it into place. And it wrote every free segment
        // of `db` whole with zeros (sled 0.34's `SegmentAccountant::initialize_from_snapshot`):
        // gigabytes once a retention sweep has freed many. Written back here, by the reopening
        // thread while the committer journals, rather than by its next batch's `fdatasync`,
        // which held a commit up to 2.1 s after checkpoints during a sweep of 10 M events.
        log.sync_data()?;
        sync_sled_files(&dir)?;
        let reopened = Reopened {
            close: closed - started,
            open: opened - closed,
            sync: opened.elapsed(),
        };
        let durability = Durability {
            db,
            dir,
            log,
            fault_after,
            slow_fsync,
        };
        Ok((durability, reopened))
    }

    /// Lets go of sled, and takes `db`, a copy of the store under `dir` whose files are synced
    /// (a compaction: see `compact/`). The fault hook's count stays.
    pub fn replace(self, db: sled::Db, dir: &Path) -> Result<Durability, StoreError> {
        let (fault_after, slow_fsync) = (self.fault_after, self.slow_fsync);
        drop(self);
        Ok(Durability {
            db,
            dir: dir.to_path_buf(),
            log: File::open(dir.join("db"))?,
            fault_after,
            slow_fsync,
        })
    }

    /// sled's handle, for the trees.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// `Err(free bytes)` when the file system has too little room for a batch (see [`room_for`]).
    pub fn room_for(&self, bytes: u64, events: bool) -> Result<(), u64> {
        room_for(&self.dir, bytes, events)
    }

    /// Flushes sled and fdatasyncs its log. When this returns `Ok`, every write applied before
    /// the call survives a crash or a power loss.
    pub fn sync(&mut self) -> Result<Synced, SyncError> {
        let started = Instant::now();
        self.db.flush().map_err(SyncError::Flush)?;
        let flushed = Instant::now();
        match self.fault_after.as_mut() {
            Some((0, Fault::Fail)) => {
                return Err(SyncError::Fsync(io::Error::other(format!(
                    "injected by {FAULT_ENV}"
                ))));
            }
            Some((0, Fault::Hang)) => loop {
                std::thread::park();
            },
            Some((left, _)) => *left -= 1,
            None => {}
        }
        if let Some(slow) = self.slow_fsync {
            std::thread::sleep(slow);
        }
        self.log.sync_data().map_err(SyncError::Fsync)?;
        Ok(Synced {
            fsyncs: 1,
            flush: flushed - started,
            fdatasync: flushed.elapsed(),
        })
    }
}

/// `Err(free bytes)` when the file system holding `dir` has too little room for a batch of
/// `bytes` (twice that, as sled writes a node's new version before dropping the old), with or
/// without events.
pub fn room_for(dir: &Path, bytes: u64, events: bool) -> Result<(), u64> {
    let Ok(stat) = nix::sys::statvfs::statvfs(dir) else {
        return Ok(());
    };
    let free = stat.blocks_available().saturating_mul(stat.fragment_size());
    let reserve = if events {
        RESERVE_EVENTS
    } else {
        RESERVE_WRITES
    };
    if free < reserve.saturating_add(bytes.saturating_mul(2)) {
        Err(free)
    } else {
        Ok(())
    }
}

/// Fsyncs sled's `conf` file and the store's directory, whose entries (`db`, `conf`, the
/// snapshots) must survive a power loss too.
fn sync_sled_files(dir: &Path) -> io::Result<()> {
    File::open(dir.join("conf"))?.sync_all()?;
    File::open(dir)?.sync_all()
}

/// Fsyncs the blob files an earlier hookgate let sled write (never written again), and their
/// directory.
fn sync_old_blobs(blobs: &Path) -> io::Result<()> {
    let listing = match std::fs::read_dir(blobs) {
        Ok(listing) => listing,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let mut any = false;
    for entry in listing {
        File::open(entry?.path())?.sync_all()?;
        any = true;
    }
    if any {
        File::open(blobs)?.sync_all()?;
    }
    Ok(())
}
