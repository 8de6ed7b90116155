//! Compaction: giving disk back after retention, while the gateway runs.
//!
//! sled 0.34 does not shrink its `db` file but for free segments at its very end: space freed by
//! retention is reused for new writes but kept (a store that once held 10 M events keeps their
//! size). So, after a retention pass,
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

mod copier;
mod when;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::committer::{Committer, Message, Pending, Work};
use super::durable::Durability;
use super::{open_db, place, Handles, TreeId, Trees};
use crate::config::StoreConfig;
use crate::store::StoreError;
use copier::{converge, copy_keys, lock_read, scan, sled_size, sync_dir_files, Pace, Watch};
pub use when::{Backoff, FIRST_COPY_RATIO};

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
