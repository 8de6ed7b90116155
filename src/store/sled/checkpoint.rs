//! Checkpoints while running: bounding the replay of a start after a crash, without holding
//! the senders.
//!
//! sled 0.34 writes a snapshot of its page table only when it opens a store, and a start
//! replays its log from the last snapshot on: after a crash, everything written since the
//! gateway started (at 10 M events, up to the whole 16 GB log: ~45 s without a snapshot). So
//! each time `[store] checkpoint_mb` of events and writes have been committed since sled was
//! opened, the committer has it reopened, between two batches:
//!
//! 1. every batch it answered is already synced (`committer.rs`), so nothing acknowledged
//!    depends on what follows;
//! 2. it takes the readers' handles away, waiting for the reads in progress (new reads wait
//!    until step 4: they never see a closed store), drops the runs' trees, and hands sled (its
//!    trees, the durability layer) to a thread of its own. That thread drops them, so sled
//!    closes; opens sled again: sled replays what was written since the last open (what a
//!    crash start would have replayed) and writes a new snapshot, and the durability layer
//!    fsyncs sled's files and the directory as at a start; then wakes the committer;
//! 3. meanwhile (0.1-0.6 s), the committer goes on taking batches: a new event whose dedup key
//!    neither the recent claims' index nor a sealed run holds (told from memory, and from the
//!    files of the runs whose filter may hold it: `run_file.rs`), and that is not a copy of one
//!    accepted meanwhile, gets the next seq and goes into a frame of the journal
//!    (`journal.rs`), fdatasynced before it is answered, and `last_seq` moves past it. A copy
//!    of an event accepted meanwhile, or of one a run's file holds, is answered `duplicate`
//!    with its seq. Everything else (events whose dedup needs sled: the recent claims' index
//!    may hold them, or a run without a usable file; cursor moves and other writes, dedup
//!    expiries) is held;
//! 4. once woken, it takes sled back, applies the journal's frames to it as ordinary batches
//!    (the same seqs: nothing else was written), syncs, empties the journal and gives the
//!    readers their handles; then commits what it held, as one batch.
//!
//! So a reader never reads sled while it lacks an acknowledged event: one that reads right after
//! an ack given meanwhile waits for the checkpoint's end and finds its event. If
//! hookgate stops or crashes before the journal is emptied, the next open applies it first
//! (`SledStore::open`). If sled cannot be reopened, the committer stops as after a failed
//! fsync (nothing later is acknowledged; hookgate exits and its supervisor restarts it, and
//! the start applies the journal).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::committer::{
    answer, answer_late, encode, take_batch, Committer, Message, Outcome, Pending, Signals, Step,
    Work, MAX_BATCH,
};
use super::durable::{self, Durability, Reopened};
use super::journal::{Frame, Journal};
use super::runs::{Closed, Detached};
use super::{open_db, TreeId, Trees};
use crate::config::StoreConfig;
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::store::{Committed, StoreError};

/// The environment variable that makes each checkpoint keep sled closed this many ms longer,
/// for the tests that kill the gateway while events are journaled.
pub const SLOW_ENV: &str = "HOOKGATE_TEST_SLOW_CHECKPOINT_MS";

/// What the committer needs to reopen sled, and when it should.
pub struct Reopen {
    /// sled's directory (`place.rs`), under `data_dir`.
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub config: StoreConfig,
    /// Set while a compaction follows the trees (`compact.rs`): no checkpoint may replace them.
    pub compacting: Arc<AtomicBool>,
    /// The committer's own queue, to wake it once sled is open again.
    pub wake: mpsc::WeakSender<Message>,
    /// Added to each checkpoint (tests only; see [`SLOW_ENV`]).
    pub slow: Option<Duration>,
}

impl Reopen {
    /// Whether `committed` bytes since the last open call for a checkpoint.
    pub fn due(&self, committed: u64) -> bool {
        self.config.checkpoint_bytes > 0
            && committed >= self.config.checkpoint_bytes
            && !self.compacting.load(Ordering::Acquire)
    }
}

/// The test hook's delay, if [`SLOW_ENV`] is set.
pub fn slow_from_env() -> Option<Duration> {
    let ms: u64 = std::env::var(SLOW_ENV).ok()?.parse().ok()?;
    tracing::warn!(
        ms,
        "{SLOW_ENV} is set: each checkpoint keeps the store closed longer."
    );
    Some(Duration::from_millis(ms))
}

/// sled as the reopening thread gives it back.
type Reopening = JoinHandle<Result<(Durability, Trees, Reopened), StoreError>>;

impl Committer {
    /// Has sled closed and reopened, journaling events meanwhile (see the module's doc). `Err`:
    /// sled could not be opened again, or the journal could not be written, and the committer
    /// must stop.
    pub fn checkpoint(
        mut self,
        queue: &mut mpsc::Receiver<Message>,
        signals: &mut Signals,
    ) -> Result<Committer, StoreError> {
        let Some(wake) = Wake::reserve(&self.reopen.wake) else {
            // The queue is full: tried again after the next batch.
            return Ok(self);
        };
        let started = Instant::now();
        // Readers wait from here until sled holds what is journaled meanwhile.
        let handles = self.handles.clone();
        let mut readers = handles.write().unwrap_or_else(PoisonError::into_inner);
        *readers = None;
        let runs = self.runs.detach();
        let reopening = reopen(self.durability, self.trees, &self.reopen, wake)?;
        let mut bridge = Bridge {
            journal: &mut self.journal,
            runs: &runs,
            metrics: &self.metrics,
            last_seq: &self.last_seq,
            data_dir: &self.reopen.data_dir,
            next: self.next_seq,
            claimed: HashMap::new(),
            frames: Vec::new(),
            held: Vec::new(),
            slowest_append: Duration::ZERO,
        };
        let bridged = bridge.run(queue, signals);
        let Bridge {
            frames,
            held,
            slowest_append,
            ..
        } = bridge;
        let (durability, trees, parts) = reopening
            .join()
            .map_err(|_| StoreError::Corrupt("reopening sled panicked".into()))??;
        let closed = started.elapsed();
        self.durability = durability;
        self.trees = trees;
        self.runs = runs.attach(
            self.trees.get(TreeId::Dedup).clone(),
            self.trees.get(TreeId::Runs).clone(),
            self.trees.get(TreeId::Meta).clone(),
        );
        bridged?;
        let frame_count = frames.len();
        let journaled = self.apply_journal(frames)?;
        let applied = started.elapsed() - closed;
        *readers = Some((self.trees.clone(), self.durability.db().clone()));
        drop(readers);
        let ms = |part: Duration| part.as_millis() as u64;
        self.metrics.store_checkpoints.inc();
        self.metrics
            .store_checkpoint_seconds
            .observe(closed.as_secs_f64());
        tracing::info!(
            committed_mb = self.since_checkpoint / (1024 * 1024),
            closed_ms = ms(closed),
            close_ms = ms(parts.close),
            open_ms = ms(parts.open),
            sync_ms = ms(parts.sync),
            journaled,
            frames = frame_count,
            slowest_frame_ms = ms(slowest_append),
            apply_ms = ms(applied),
            held = held.len(),
            "Store checkpointed: a start after a crash replays from here."
        );
        self.since_checkpoint = 0;
        if signals.fail.is_none() {
            for batch in chunks(held) {
                self.commit(batch)?;
            }
        }
        Ok(self)
    }

    /// Applies the journal's frames that sled does not hold yet, syncs sled, announces them to
    /// the readers and empties the journal (after a checkpoint, and at open). Returns how many
    /// events it applied. `Err`: the journal does not follow sled's seqs or claims, or a write
    /// or sync failed.
    pub fn apply_journal(&mut self, frames: Vec<Frame>) -> Result<u64, StoreError> {
        let mut applied = 0;
        // Frames are applied together, up to a batch (a transaction per frame cost ~20 µs an
        // event), and cut where the committer would have begun sealing a dedup run after one:
        // runs begin where they would have.
        let mut chunk: Vec<Step> = Vec::new();
        for frame in frames {
            if frame.end() <= self.next_seq {
                // Applied before a crash that left the journal full.
                continue;
            }
            let next = Seq(self.next_seq.0 + chunk.len() as u64);
            if frame.first != next {
                return Err(self.journal_disagrees(format!(
                    "it holds events from seq {}, the store's next seq is {next}",
                    frame.first
                )));
            }
            chunk.extend(frame.events.into_iter().map(Step::Event));
            if chunk.len() >= MAX_BATCH || self.runs.seals_after(chunk.len()) {
                applied += self.apply_journaled(std::mem::take(&mut chunk))?;
            }
        }
        applied += self.apply_journaled(chunk)?;
        if applied > 0 {
            let fsyncs = self
                .durability
                .sync()
                .map_err(|err| StoreError::Storage(Arc::new(err)))?;
            self.metrics.fsyncs.inc_by(fsyncs);
            self.announce_durable();
        }
        self.journal.clear()?;
        Ok(applied)
    }

    /// Applies journaled events, which must all be new, under the next seqs; then a step of
    /// the runs' work, as after any batch. Returns how many it applied.
    fn apply_journaled(&mut self, steps: Vec<Step>) -> Result<u64, StoreError> {
        if steps.is_empty() {
            return Ok(0);
        }
        let first = self.next_seq;
        let outcomes = self.apply(&steps)?;
        let expected = (first.0..).map(|seq| Outcome::Event(Committed::Accepted(Seq(seq))));
        if !outcomes.iter().copied().eq(expected.take(outcomes.len())) {
            return Err(self.journal_disagrees(format!(
                "the store does not take its events from seq {first} as new"
            )));
        }
        if self.runs.wants_step() {
            self.runs.step()?;
        }
        Ok(outcomes.len() as u64)
    }

    fn journal_disagrees(&self, why: String) -> StoreError {
        StoreError::Corrupt(format!(
            "{} does not follow the store ({why}): one of them was damaged. Restore the data dir \
             from a backup",
            self.journal.path().display()
        ))
    }
}

/// Starts the thread that closes and reopens sled.
fn reopen(
    durability: Durability,
    trees: Trees,
    reopen: &Reopen,
    wake: Wake,
) -> Result<Reopening, StoreError> {
    let (dir, config, slow) = (reopen.dir.clone(), reopen.config.clone(), reopen.slow);
    let thread = std::thread::Builder::new()
        .name("hookgate-checkpoint".into())
        .spawn(move || {
            let _wake = wake;
            drop(trees);
            if let Some(slow) = slow {
                std::thread::sleep(slow);
            }
            let (durability, parts) = durability.reopen(|| open_db(&dir, &config))?;
            let trees = Trees::open(durability.db())?;
            Ok((durability, trees, parts))
        })?;
    Ok(thread)
}

/// Wakes the committer when the reopening thread ends, however it ends, through a place in its
/// queue reserved beforehand (so the thread never waits for the committer, which may be
/// joining it).
struct Wake(Option<mpsc::OwnedPermit<Message>>);

impl Wake {
    /// `None` when the queue is full. No sender left (the store is being dropped): nothing to
    /// reserve, as the queue's end wakes the committer.
    fn reserve(queue: &mpsc::WeakSender<Message>) -> Option<Wake> {
        let Some(queue) = queue.upgrade() else {
            return Some(Wake(None));
        };
        queue
            .try_reserve_owned()
            .ok()
            .map(|permit| Wake(Some(permit)))
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        if let Some(permit) = self.0.take() {
            permit.send(Message::Reopened);
        }
    }
}

/// The committer's side while sled is closed: events go to the journal.
struct Bridge<'a> {
    journal: &'a mut Journal,
    runs: &'a Detached,
    metrics: &'a Metrics,
    /// Announces each journaled batch (readers wait for sled meanwhile).
    last_seq: &'a watch::Sender<Seq>,
    data_dir: &'a Path,
    /// The seq the next accepted event gets.
    next: Seq,
    /// The dedup keys accepted meanwhile.
    claimed: HashMap<Vec<u8>, Seq>,
    /// What the journal holds, for sled once it is back.
    frames: Vec<Frame>,
    /// Requests that wait for sled.
    held: Vec<Pending>,
    /// The longest a frame's write and fdatasync took.
    slowest_append: Duration,
}

impl Bridge<'_> {
    /// Takes batches until sled is open again, or a failure or the queue's end. `Err`: the
    /// journal could not be written.
    fn run(
        &mut self,
        queue: &mut mpsc::Receiver<Message>,
        signals: &mut Signals,
    ) -> Result<(), StoreError> {
        while !signals.reopened && signals.fail.is_none() {
            let Some(message) = queue.blocking_recv() else {
                break;
            };
            let Some(first) = signals.take(message) else {
                continue;
            };
            let (batch, _) = take_batch(first, queue, signals);
            if signals.fail.is_none() {
                self.commit(batch)?;
            }
        }
        signals.reopened = false;
        Ok(())
    }

    /// Journals and answers a batch's new events, answers copies of events journaled
    /// meanwhile, and holds the rest.
    fn commit(&mut self, batch: Vec<Pending>) -> Result<(), StoreError> {
        let bytes: usize = batch.iter().map(|p| p.work.bytes()).sum();
        if durable::room_for(self.data_dir, bytes as u64, true).is_err() {
            // Told and answered once sled is back.
            self.hold(batch);
            return Ok(());
        }
        let mut frame = Frame {
            first: self.next,
            events: Vec::new(),
        };
        let mut answers = Vec::new();
        for pending in answer_late(batch) {
            let Work::Event(event) = &pending.work else {
                self.hold(vec![pending]);
                continue;
            };
            let encoded = encode(event);
            if let Some(seq) = self.claimed.get(&encoded.0) {
                answers.push((pending, Committed::Duplicate(*seq)));
                continue;
            }
            match self.runs.lookup(&encoded.0) {
                Closed::Absent => {}
                Closed::Found(seq) => {
                    answers.push((pending, Committed::Duplicate(seq)));
                    continue;
                }
                Closed::NeedsSled => {
                    self.hold(vec![pending]);
                    continue;
                }
            }
            let seq = frame.end();
            self.claimed.insert(encoded.0.clone(), seq);
            frame.events.push(encoded);
            answers.push((pending, Committed::Accepted(seq)));
        }
        if !frame.events.is_empty() {
            let appending = Instant::now();
            let appended = self.journal.append(&frame);
            self.slowest_append = self.slowest_append.max(appending.elapsed());
            if let Err(err) = appended {
                let err = StoreError::Storage(Arc::new(err));
                tracing::error!(error = %err, path = %self.journal.path().display(), "Cannot write the checkpoint journal; answering 503.");
                for (pending, _) in answers {
                    let _ = pending.reply.send(Err(err.clone()));
                }
                return Err(err);
            }
            self.metrics.fsyncs.inc();
            self.next = frame.end();
            self.last_seq.send_replace(Seq(self.next.0 - 1));
            self.metrics
                .store_journaled_events
                .inc_by(frame.events.len() as u64);
            self.frames.push(frame);
        }
        for (pending, committed) in answers {
            answer(self.metrics, pending, Outcome::Event(committed));
        }
        Ok(())
    }

    fn hold(&mut self, requests: Vec<Pending>) {
        self.metrics
            .store_checkpoint_held
            .inc_by(requests.len() as u64);
        self.held.extend(requests);
    }
}

/// Held requests in batches of at most [`MAX_BATCH`].
fn chunks(mut held: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut batches = Vec::new();
    while held.len() > MAX_BATCH {
        let rest = held.split_off(MAX_BATCH);
        batches.push(std::mem::replace(&mut held, rest));
    }
    if !held.is_empty() {
        batches.push(held);
    }
    batches
}
