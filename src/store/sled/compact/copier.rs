//! Steps 2 to 4 of a compaction: the thread that notes the keys changed while the copy is made,
//! the scan of each tree into the copy, and the rounds that copy the changed keys again.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::super::bounded_scan::BoundedScan;
use super::super::live::change;
use super::super::{pack, Handles, TreeId, Trees, TREE_NAMES};
use crate::store::StoreError;

/// The changed keys are copied again after this many bytes of the scan.
const CATCH_UP_EVERY: u64 = 8 * 1024 * 1024;
/// The last round before the pause copies at most about this many keys.
const FEW_KEYS: usize = 2_000;
const MAX_ROUNDS: usize = 20;
/// Entries written to the copy per transaction (see [`write`]).
const BATCH: usize = 170;

/// What one catch-up copied again.
#[derive(Debug, Clone, Copy, Default)]
pub struct Copied {
    pub keys: usize,
    /// The bytes of the keys and values read (a key gone counts its own bytes).
    pub bytes: u64,
    /// The change in the copy's bytes.
    pub delta: i64,
}

/// The scan's progress against the store's changes: once it has scanned [`PACE_AFTER`], a scan
/// that has copied fewer bytes than the changes it had to copy again is losing ground.
#[derive(Debug, Default)]
pub struct Pace {
    pub scanned: u64,
    pub changed: u64,
}

const PACE_AFTER: u64 = 64 * 1024 * 1024;

impl Pace {
    pub fn check(&mut self, scanned: u64, changed: u64) -> Result<(), StoreError> {
        self.scanned += scanned;
        self.changed += changed;
        if self.scanned >= PACE_AFTER && self.changed > self.scanned {
            return Err(behind(format!(
                "{} MB of changes copied again while scanning {} MB",
                self.changed >> 20,
                self.scanned >> 20
            )));
        }
        Ok(())
    }
}

/// The error of a compaction that gives up because the store changes faster than it copies.
fn behind(detail: String) -> StoreError {
    StoreError::Storage(Arc::new(std::io::Error::other(format!(
        "the store changes faster than its copy catches up: {detail}"
    ))))
}

/// Step 2: the thread noting changed keys.
pub struct Watch {
    dirty: Arc<Mutex<HashSet<(usize, sled::IVec)>>>,
    stop: Arc<AtomicBool>,
    /// Set by a drain whose tree was dropped: the copy cannot be trusted.
    lost: Arc<AtomicBool>,
    drain: JoinHandle<()>,
}

impl Watch {
    pub fn start(trees: &Trees) -> Watch {
        let dirty = Arc::new(Mutex::new(HashSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let feeds: Vec<_> = trees
            .all
            .iter()
            .map(|tree| tree.watch_prefix(Vec::new()))
            .collect();
        let drain = {
            let (dirty, stop, lost) = (dirty.clone(), stop.clone(), lost.clone());
            std::thread::Builder::new()
                .name("hookgate-compaction-watch".into())
                .spawn(move || {
                    if drain(feeds, &dirty, &stop).is_err() {
                        lost.store(true, Ordering::Release);
                    }
                })
                .expect("a thread can be started")
        };
        Watch {
            dirty,
            stop,
            lost,
            drain,
        }
    }

    /// Copies the keys changed since the last call again.
    pub fn catch_up(&self, old: &Trees, copy: &Trees, db: &sled::Db) -> Result<Copied, StoreError> {
        if self.lost.load(Ordering::Acquire) {
            return Err(lost());
        }
        let dirty = std::mem::take(&mut *lock(&self.dirty));
        copy_keys(old, copy, db, dirty)
    }

    /// Ends the drains once the feeds are empty (the committer is paused: nothing more comes),
    /// and returns the keys noted last.
    pub fn stop(self) -> Result<HashSet<(usize, sled::IVec)>, StoreError> {
        self.stop.store(true, Ordering::Release);
        let _ = self.drain.join();
        if self.lost.load(Ordering::Acquire) {
            return Err(lost());
        }
        Ok(std::mem::take(&mut *lock(&self.dirty)))
    }
}

/// Notes the key of every change in `feeds` (one per tree, in `TreeId` order) until `stop` is
/// set and every feed is empty. `Err`: a feed ended (its tree was dropped).
///
/// The feeds are polled as futures: sled 0.34's `Subscriber::next_timeout` reports a timeout
/// as a disconnection, and after a write that changed nothing (its event is dropped unfilled)
/// it reports that same error forever; the future skips such events.
fn drain(
    mut feeds: Vec<sled::Subscriber>,
    dirty: &Mutex<HashSet<(usize, sled::IVec)>>,
    stop: &AtomicBool,
) -> Result<(), ()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|_| ())?;
    runtime.block_on(async {
        loop {
            let stopping = stop.load(Ordering::Acquire);
            // Once stopped, only what is already there (a future looks at its channel first,
            // so a missed wake-up cannot hide an event).
            let wait = if stopping {
                Duration::ZERO
            } else {
                Duration::from_millis(20)
            };
            let next = futures_util::future::select_all(feeds.iter_mut());
            match tokio::time::timeout(wait, next).await {
                Ok((Some(event), tree, _)) => {
                    lock(dirty).insert((tree, event.key().clone()));
                }
                Ok((None, _, _)) => return Err(()),
                Err(_) if stopping => return Ok(()),
                Err(_) => {}
            }
        }
    })
}

fn lost() -> StoreError {
    StoreError::Corrupt("a compaction lost sight of the store's changes".into())
}

pub fn lock_read(handles: &Handles) -> std::sync::RwLockReadGuard<'_, Option<(Trees, sled::Db)>> {
    handles.read().unwrap_or_else(PoisonError::into_inner)
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Step 4's rounds: `catch_up` (which returns the keys it copied and the change in the copy's
/// bytes) until a round copies at most [`FEW_KEYS`] keys. Returns the change in the copy's bytes;
/// `Err` after [`MAX_ROUNDS`] without: the store changes faster than the copy catches up, and a
/// pause now would hold the commits for a whole round.
pub fn converge(
    mut catch_up: impl FnMut() -> Result<(usize, i64), StoreError>,
) -> Result<i64, StoreError> {
    let mut live = 0;
    for round in 1..=MAX_ROUNDS {
        let started = Instant::now();
        let (keys, delta) = catch_up()?;
        live += delta;
        tracing::info!(
            round,
            keys,
            took_ms = started.elapsed().as_millis() as u64,
            "Compaction: keys changed meanwhile copied again."
        );
        if keys <= FEW_KEYS {
            return Ok(live);
        }
    }
    Err(behind(format!(
        "{MAX_ROUNDS} rounds, each over {FEW_KEYS} keys"
    )))
}

/// Step 3 for one tree: copies `old` into `new`, up to its last key now, calling `catch_up` with
/// the bytes scanned since the last call every [`CATCH_UP_EVERY`] of them. Returns the change
/// in the copy's bytes. Read with [`BoundedScan`], so that the old store's cache stays within its
/// bound: read with a plain iterator, it kept all it read, and a gateway that compacted a
/// 10 M-event store after a retention run stayed at 515 MiB of RSS (196 since).
pub fn scan(
    old: &sled::Tree,
    new: &sled::Tree,
    db: &sled::Db,
    mut catch_up: impl FnMut(u64) -> Result<i64, StoreError>,
) -> Result<i64, StoreError> {
    let Some((end, _)) = old.last()? else {
        return Ok(0);
    };
    let (mut live, mut since) = (0, 0);
    let mut batch = Vec::with_capacity(BATCH);
    for item in BoundedScan::new(old, ..=end) {
        let (key, value) = item?;
        since += (key.len() + value.len()) as u64;
        batch.push((key, Some(value)));
        if batch.len() >= BATCH {
            live += write(new, db, &mut batch)?;
        }
        if since >= CATCH_UP_EVERY {
            live += write(new, db, &mut batch)?;
            live += catch_up(std::mem::take(&mut since))?;
        }
    }
    Ok(live + write(new, db, &mut batch)?)
}

/// Copies `keys` from `old` to `copy` as they are now.
pub fn copy_keys(
    old: &Trees,
    copy: &Trees,
    db: &sled::Db,
    keys: HashSet<(usize, sled::IVec)>,
) -> Result<Copied, StoreError> {
    let mut copied = Copied {
        keys: keys.len(),
        ..Copied::default()
    };
    let mut by_tree: Vec<Vec<sled::IVec>> = vec![Vec::new(); old.all.len()];
    for (tree, key) in keys {
        by_tree[tree].push(key);
    }
    for ((from, to), keys) in old.all.iter().zip(&copy.all).zip(by_tree) {
        let mut batch = Vec::with_capacity(BATCH);
        for key in keys {
            let value = from.get(&key)?;
            copied.bytes += (key.len() + value.as_ref().map_or(0, |v| v.len())) as u64;
            batch.push((key, value));
            if batch.len() >= BATCH {
                copied.delta += write(to, db, &mut batch)?;
            }
        }
        copied.delta += write(to, db, &mut batch)?;
    }
    Ok(copied)
}

/// Puts (`Some`) or removes (`None`) `batch`'s entries in `tree` of the copy (sealing the raw
/// packs of `events` that compress: `pack::resealed`), in one sled `Batch` followed by a flush
/// (no fsync: the scan writes the copy back every few MB, and it is synced whole before the
/// switch), and empties it. Returns the change in the copy's bytes.
///
/// Written this way, sled's log held 1.48 times the bytes copied (40,000 values of 6,000 bytes),
/// against 1.58 with the same entries in a transaction and 1.92 with one `insert` per entry;
/// earlier measurements: batches of 20 entries 1.71, of 1,000 1.52, of 5,000 2.21, without the
/// flush 1.64. A `Batch`, like a transaction, holds sled's process-wide write lock while it is
/// applied (the committer's transactions wait meanwhile), so batches stay small.
fn write(
    tree: &sled::Tree,
    db: &sled::Db,
    batch: &mut Vec<(sled::IVec, Option<sled::IVec>)>,
) -> Result<i64, StoreError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut writes = sled::Batch::default();
    let mut delta = 0;
    let events = *tree.name() == *TREE_NAMES[TreeId::Events as usize].as_bytes();
    // The copier is the copy's only writer: what it holds now is what the batch replaces.
    for (key, value) in batch.drain(..) {
        let value = match value {
            Some(value) if events => Some(pack::resealed(&key, &value).map_or(value, Into::into)),
            other => other,
        };
        delta += change(&key, tree.get(&key)?, value.as_deref());
        match value {
            Some(value) => writes.insert(key, value),
            None => writes.remove(key),
        }
    }
    tree.apply_batch(writes)?;
    db.flush()?;
    Ok(delta)
}

/// Fsyncs the copy's files and its directory (it writes no blob file: see `durable.rs`).
pub fn sync_dir_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            File::open(&path)?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()
}

/// The bytes of sled's files under `dir`.
pub fn sled_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|listing| {
            listing
                .flatten()
                .filter_map(|entry| entry.metadata().ok())
                .filter(|meta| meta.is_file())
                .map(|meta| meta.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_end_once_few_keys_changed_or_give_up() {
        let mut keys = vec![50_000, 9_000, 2_500, FEW_KEYS, 10].into_iter();
        let mut rounds = 0;
        let converged = converge(|| {
            rounds += 1;
            Ok((keys.next().unwrap(), 10))
        });
        assert_eq!(converged.unwrap(), 40);
        assert_eq!(rounds, 4);

        let mut rounds = 0;
        let behind = converge(|| {
            rounds += 1;
            Ok((FEW_KEYS + 1, 1))
        });
        assert!(behind
            .unwrap_err()
            .to_string()
            .contains("faster than its copy"));
        assert_eq!(rounds, MAX_ROUNDS);
    }

    #[test]
    fn a_scan_that_copies_less_than_the_changes_gives_up() {
        let mb = 1024 * 1024;
        let mut pace = Pace::default();
        // Early on, the changes may outweigh the scan.
        pace.check(8 * mb, 20 * mb).unwrap();
        for _ in 0..6 {
            pace.check(8 * mb, 6 * mb).unwrap();
        }
        // 64 MB scanned, 62 MB of changes: still ahead.
        pace.check(8 * mb, 6 * mb).unwrap();
        let behind = pace.check(8 * mb, 20 * mb).unwrap_err();
        assert!(
            behind.to_string().contains("faster than its copy"),
            "{behind}"
        );
    }

    /// Events keep arriving at the end of the `events` tree faster than a scan copies them (here
    /// 10 MB at each catch-up, which comes every 8 MB copied): the scan still ends, at the last key
    /// it saw when it began (the later ones are the watch's to copy).
    #[test]
    fn a_scan_ends_while_writes_go_on_past_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            sled::Config::new()
                .temporary(true)
                .path(dir.path().join(name))
                .open()
                .unwrap()
        };
        let (db, copy) = (open("old"), open("copy"));
        let (old, new) = (
            db.open_tree("events").unwrap(),
            copy.open_tree("events").unwrap(),
        );
        let value = vec![7u8; 1024];
        let mut next = 0u64;
        let mut append = |count: u64| -> Result<(), StoreError> {
            for _ in 0..count {
                old.insert(next.to_be_bytes(), value.as_slice())?;
                next += 1;
            }
            Ok(())
        };
        append(20_000).unwrap();
        let mut catch_ups = 0;
        let copied = scan(&old, &new, &copy, |_| {
            catch_ups += 1;
            if catch_ups > 50 {
                return Err(StoreError::Closed);
            }
            append(10_000)?;
            Ok(0)
        });
        assert!(
            copied.is_ok(),
            "the scan chased the writes: {catch_ups} catch-ups"
        );
        assert_eq!(new.len(), 20_000);
        assert_eq!(copied.unwrap(), 20_000 * (8 + 1024));
    }
}
