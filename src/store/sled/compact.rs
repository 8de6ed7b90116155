//! Compaction: giving disk back after retention, while the gateway runs.
//!
//! sled 0.34 never shrinks its `db` file: space freed by retention is reused for new writes but
//! kept (a store that once held 10 M events keeps their size). So, after a retention pass,
//! when the file is over `[store] compact_ratio` times the bytes the store holds (`live.rs`) and
//! over them by at least `compact_min_mb`, the store is copied into a fresh sled directory
//! beside it (`place.rs`) and the gateway switches to the copy:
//!
//! 1. Checkpoints are held off (the copy follows the trees it watches, which a reopen would
//!    replace), and a first empty batch makes sure no write the watch may miss is in flight.
//! 2. A thread drains sled's change feed of every tree (`Tree::watch_prefix`), which sees every
//!    insert and remove, transactional or not, once it is visible: the keys changed are noted.
//! 3. The copier reads every tree in key order, up to its last key when the scan began, and
//!    inserts each entry into the copy; every few MB it copies the keys noted since again, with
//!    their values of now (removing those gone). An entry is only ever copied after it is read,
//!    by the same thread, so an entry read before a change is copied again after it: no change
//!    is lost, however the two interleave. A key past the scan's end was written after the
//!    watch began, so it is noted; without the bound, a scan of the `events` tree would chase
//!    the events arriving at its end for as long as they come faster than it reads.
//! 4. The copy is closed and reopened (its snapshot written, so a start after a crash does not
//!    replay the whole copy), and the noted keys copied again until few are left.
//! 5. The committer pauses between two batches (`Message::Pause`): every change it made is in
//!    the feed. The drains end once the feed is empty, the last keys are copied, the copy is
//!    flushed and fsynced with its directory, and handed to the committer, which points
//!    `current` at it (a fsynced rename) and gives the readers its trees. Had the pointer not
//!    reached the disk, the store would fail-stop: at that moment both copies are identical.
//! 6. Checkpoints are allowed again, and the old files are removed gradually, in the background
//!    (`old_copies.rs`): the sweeper goes on meanwhile; the next compaction waits for it.
//!
//! Requests wait in the queue only during step 5 (a few ms plus the last keys and fsyncs): it
//! starts only once a round of step 4 copied at most [`FEW_KEYS`] keys. Under a load that
//! changes the store faster than the copier catches up, the compaction gives up: in step 3 once
//! it has copied more bytes of changes again than it has scanned ([`Pace`]), in step 4 after
//! [`MAX_ROUNDS`] rounds that did not shrink. A failure before step 5 leaves the store as it
//! was and removes the copy; the next try waits ([`Backoff`]: 10 minutes, doubling after each
//! failure up to 6 hours). The copy needs free space for what the store holds: without it, the
//! compaction is not tried (a warning says so).

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::committer::{Committer, Message, Pending, Work};
use super::durable::Durability;
use super::live::change;
use super::{open_db, pack, place, Handles, TreeId, Trees, TREE_NAMES};
use crate::config::StoreConfig;
use crate::store::StoreError;

/// The changed keys are copied again after this many bytes of the scan.
const CATCH_UP_EVERY: u64 = 8 * 1024 * 1024;
/// The last round before the pause copies at most about this many keys.
const FEW_KEYS: usize = 2_000;
const MAX_ROUNDS: usize = 20;
/// Entries written to the copy per transaction (see [`write`]).
const BATCH: usize = 170;

/// The wait before the next try after a compaction failed, doubling after each failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(600);
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);

/// When a compaction may be tried again after failures (see the module's doc).
#[derive(Debug, Default)]
pub struct Backoff(Mutex<Option<(Instant, u32)>>);

impl Backoff {
    /// Whether the last failure is too recent for another try.
    pub fn waiting(&self) -> bool {
        lock(&self.0).is_some_and(|(until, _)| Instant::now() < until)
    }

    /// Notes a failure; returns the wait before the next try.
    pub fn failed(&self) -> Duration {
        let mut state = lock(&self.0);
        let failures = state.map_or(0, |(_, failures)| failures) + 1;
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << (failures - 1).min(16))
            .min(MAX_BACKOFF);
        *state = Some((Instant::now() + wait, failures));
        wait
    }

    pub fn succeeded(&self) {
        *lock(&self.0) = None;
    }
}

/// What one catch-up copied again.
#[derive(Debug, Clone, Copy, Default)]
struct Copied {
    keys: usize,
    /// The bytes of the keys and values read (a key gone counts its own bytes).
    bytes: u64,
    /// The change in the copy's bytes.
    delta: i64,
}

/// The scan's progress against the store's changes: once it has scanned [`PACE_AFTER`], a scan
/// that has copied fewer bytes than the changes it had to copy again is losing ground.
#[derive(Debug, Default)]
struct Pace {
    scanned: u64,
    changed: u64,
}

const PACE_AFTER: u64 = 64 * 1024 * 1024;

impl Pace {
    fn check(&mut self, scanned: u64, changed: u64) -> Result<(), StoreError> {
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

/// The copy, ready: handed to the paused committer.
pub struct Copy {
    pub db: sled::Db,
    pub dir: PathBuf,
    /// The bytes of keys and values it holds, counted as it was written.
    pub live: u64,
}

/// The committer's pause, for step 5.
pub struct Pause {
    /// Sent once the committer is between batches, waiting.
    pub paused: oneshot::Sender<()>,
    /// The copy to switch to, or `None` to go on as before.
    pub resume: std::sync::mpsc::Receiver<Option<Copy>>,
    /// Whether the switch happened.
    pub switched: oneshot::Sender<bool>,
}

/// What a compaction did.
#[derive(Debug, Clone)]
pub struct Compacted {
    pub before: u64,
    pub after: u64,
    pub live: u64,
    pub took: Duration,
    /// How long the committer waited for the switch.
    pub paused: Duration,
    /// The copy, now the store: whatever else is under `data_dir` is old (`old_copies.rs`).
    pub dir: PathBuf,
}

/// What the compaction needs of the store.
pub struct Compaction<'a> {
    pub data_dir: &'a Path,
    pub config: &'a StoreConfig,
    pub handles: &'a Handles,
    pub queue: &'a mpsc::Sender<Message>,
    /// Set when the compaction should give up (the sweeper was stopped).
    pub abort: &'a AtomicBool,
}

impl Compaction<'_> {
    /// Copies the store and switches to the copy (see the module's doc). Blocking; the caller
    /// holds the committer's checkpoints off meanwhile (`Reopen::compacting`).
    pub fn run(self, before: u64) -> Result<Compacted, StoreError> {
        let started = Instant::now();
        let live_dir = place::live_dir(self.data_dir)?;
        let dir = place::next_dir(self.data_dir, &live_dir);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        // A checkpoint under way is over once a batch submitted now is answered.
        self.barrier()?;
        let trees = lock_read(self.handles)
            .as_ref()
            .map(|(trees, _)| trees.clone())
            .ok_or(StoreError::Closed)?;
        let watch = Watch::start(&trees);
        let copied = self
            .barrier()
            .and_then(|()| self.copy(&trees, &watch, &dir));
        // Once the copy is handed to the committer, `current` may name it, whatever comes back.
        let mut handed_over = false;
        let result = match copied {
            Ok((db, live)) => self.switch(&trees, watch, db, &dir, live, &mut handed_over),
            Err(err) => {
                drop(watch.stop());
                Err(err)
            }
        };
        // The old store's last handles outside the committer.
        drop(trees);
        match result {
            Ok((live, paused)) => Ok(Compacted {
                before,
                after: sled_size(&dir),
                live,
                took: started.elapsed(),
                paused,
                dir,
            }),
            Err(err) if handed_over => {
                tracing::error!(dir = %dir.display(), "The store's switch to its copy failed half-way; the next start keeps whichever copy `current` names (both hold the same).");
                Err(err)
            }
            Err(err) => {
                if let Err(remove) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %remove, "Cannot remove an unfinished copy of the store.");
                }
                Err(err)
            }
        }
    }

    /// Waits until the committer has answered a batch submitted now: any write in flight when
    /// the watch began is then done, and so is any checkpoint.
    fn barrier(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            work: Work::Writes(Vec::new()),
            deadline: Instant::now() + Duration::from_secs(60),
            submitted: Instant::now(),
            reply,
        };
        self.queue
            .blocking_send(Message::Commit(pending))
            .map_err(|_| StoreError::Closed)?;
        answer.blocking_recv().map_err(|_| StoreError::Closed)??;
        Ok(())
    }

    fn aborted(&self) -> Result<(), StoreError> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    /// Steps 3 and 4: the copy, and its count of bytes.
    fn copy(
        &self,
        trees: &Trees,
        watch: &Watch,
        dir: &Path,
    ) -> Result<(sled::Db, i64), StoreError> {
        std::fs::create_dir_all(dir)?;
        let db = open_db(dir, self.config)?;
        let copy = Trees::open(&db)?;
        let copy_log = File::open(dir.join("db"))?;
        let mut live = 0i64;
        let mut pace = Pace::default();
        for (old, new) in trees.all.iter().zip(&copy.all) {
            live += scan(old, new, &db, |scanned| {
                let copied = watch.catch_up(trees, &copy, &db)?;
                pace.check(scanned, copied.bytes)?;
                // Written back a few MB at a time: one fsync of the whole copy at its close
                // would fill the disk's queue, and the committer's fdatasync would wait behind
                // it (a stall of ~1 s for a 400 MB copy under 1,000 commits/s).
                copy_log.sync_data()?;
                self.aborted()?;
                Ok(copied.delta)
            })?;
        }
        live += watch.catch_up(trees, &copy, &db)?.delta;
        // Reopened, the copy has a snapshot: a start right after the switch replays only the
        // last rounds.
        let reopening = Instant::now();
        drop(copy);
        db.flush()?;
        drop(db);
        let db = open_db(dir, self.config)?;
        let copy = Trees::open(&db)?;
        tracing::info!(
            scanned_mb = pace.scanned >> 20,
            changes_mb = pace.changed >> 20,
            reopen_ms = reopening.elapsed().as_millis() as u64,
            "Compaction: every tree copied; the copy reopened."
        );
        live += converge(|| {
            self.aborted()?;
            let copied = watch.catch_up(trees, &copy, &db)?;
            Ok((copied.keys, copied.delta))
        })?;
        Ok((db, live))
    }

    /// Step 5: with the committer paused, the last keys, the sync, and the switch. Returns the
    /// copy's count of bytes and how long the committer waited.
    fn switch(
        &self,
        trees: &Trees,
        watch: Watch,
        db: sled::Db,
        dir: &Path,
        mut live: i64,
        handed_over: &mut bool,
    ) -> Result<(u64, Duration), StoreError> {
        let (paused, is_paused) = oneshot::channel();
        let (resume, resumed) = std::sync::mpsc::channel();
        let (switched, has_switched) = oneshot::channel();
        let pause = Pause {
            paused,
            resume: resumed,
            switched,
        };
        let give_up = |watch: Watch, resume: &std::sync::mpsc::Sender<Option<Copy>>| {
            let _ = resume.send(None);
            drop(watch.stop());
        };
        if self.queue.blocking_send(Message::Pause(pause)).is_err()
            || is_paused.blocking_recv().is_err()
        {
            give_up(watch, &resume);
            return Err(StoreError::Closed);
        }
        let waited = Instant::now();
        let last = watch
            .stop()
            .and_then(|dirty| {
                let copy = Trees::open(&db)?;
                live += copy_keys(trees, &copy, &db, dirty)?.delta;
                Ok(())
            })
            .and_then(|()| {
                db.flush()?;
                sync_dir_files(dir)?;
                File::open(self.data_dir)?.sync_all()?;
                Ok(())
            });
        if let Err(err) = last {
            let _ = resume.send(None);
            return Err(err);
        }
        let live = u64::try_from(live).unwrap_or(0);
        let copy = Copy {
            db,
            dir: dir.to_path_buf(),
            live,
        };
        *handed_over = true;
        resume.send(Some(copy)).map_err(|_| StoreError::Closed)?;
        match has_switched.blocking_recv() {
            Ok(true) => Ok((live, waited.elapsed())),
            _ => Err(StoreError::Closed),
        }
    }
}

/// Step 2: the thread noting changed keys.
struct Watch {
    dirty: Arc<Mutex<HashSet<(usize, sled::IVec)>>>,
    stop: Arc<AtomicBool>,
    /// Set by a drain whose tree was dropped: the copy cannot be trusted.
    lost: Arc<AtomicBool>,
    drain: JoinHandle<()>,
}

impl Watch {
    fn start(trees: &Trees) -> Watch {
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
    fn catch_up(&self, old: &Trees, copy: &Trees, db: &sled::Db) -> Result<Copied, StoreError> {
        if self.lost.load(Ordering::Acquire) {
            return Err(lost());
        }
        let dirty = std::mem::take(&mut *lock(&self.dirty));
        copy_keys(old, copy, db, dirty)
    }

    /// Ends the drains once the feeds are empty (the committer is paused: nothing more comes),
    /// and returns the keys noted last.
    fn stop(self) -> Result<HashSet<(usize, sled::IVec)>, StoreError> {
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

fn lock_read(handles: &Handles) -> std::sync::RwLockReadGuard<'_, Option<(Trees, sled::Db)>> {
    handles.read().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Step 4's rounds: `catch_up` (which returns the keys it copied and the change in the copy's
/// bytes) until a round copies at most [`FEW_KEYS`] keys. Returns the change in the copy's bytes;
/// `Err` after [`MAX_ROUNDS`] without: the store changes faster than the copy catches up, and a
/// pause now would hold the commits for a whole round.
fn converge(
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
/// in the copy's bytes.
fn scan(
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
    for item in old.range(..=end) {
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
fn copy_keys(
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
fn sync_dir_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            File::open(&path)?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()
}

/// The bytes of sled's files under `dir`.
fn sled_size(dir: &Path) -> u64 {
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

impl Committer {
    /// Step 5 on the committer's side: waits, between two batches, for the copy; points
    /// `current` at it and switches to it. `Err`: the pointer may or may not have reached the
    /// disk, and the committer must stop.
    pub fn pause(mut self, pause: Pause) -> Result<Committer, StoreError> {
        let _ = pause.paused.send(());
        let Ok(Some(copy)) = pause.resume.recv() else {
            let _ = pause.switched.send(false);
            return Ok(self);
        };
        if let Err(err) = place::point_to(&self.reopen.data_dir, &copy.dir) {
            let _ = pause.switched.send(false);
            return Err(err.into());
        }
        let (db, dir) = (copy.db, copy.dir.clone());
        self = self.with_new_sled(|durability| durability.replace(db, &dir))?;
        self.reopen.dir = copy.dir;
        self.since_checkpoint = 0;
        self.live.set(copy.live);
        let _ = pause.switched.send(true);
        Ok(self)
    }

    /// Takes sled's handles away from the readers (waiting for the reads in progress), lets
    /// `replace` swap the durability layer's sled (reopened, or a compaction's copy), and gives
    /// the readers the new trees. `Err`: the committer must stop.
    pub fn with_new_sled(
        mut self,
        replace: impl FnOnce(Durability) -> Result<Durability, StoreError>,
    ) -> Result<Committer, StoreError> {
        let handles = self.handles.clone();
        let mut readers = handles.write().unwrap_or_else(PoisonError::into_inner);
        *readers = None;
        drop(self.trees);
        let runs = self.runs.detach();
        self.durability = replace(self.durability)?;
        self.trees = Trees::open(self.durability.db())?;
        self.runs = runs.attach(
            self.trees.get(TreeId::Dedup).clone(),
            self.trees.get(TreeId::Runs).clone(),
            self.trees.get(TreeId::Meta).clone(),
        );
        *readers = Some((self.trees.clone(), self.durability.db().clone()));
        Ok(self)
    }
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

    #[test]
    fn a_failed_compaction_waits_longer_each_time() {
        let backoff = Backoff::default();
        assert!(!backoff.waiting());
        assert_eq!(backoff.failed(), Duration::from_secs(600));
        assert!(backoff.waiting());
        assert_eq!(backoff.failed(), Duration::from_secs(1200));
        for _ in 0..20 {
            backoff.failed();
        }
        assert_eq!(backoff.failed(), MAX_BACKOFF);
        backoff.succeeded();
        assert!(!backoff.waiting());
        assert_eq!(backoff.failed(), Duration::from_secs(600));
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
