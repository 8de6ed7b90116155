//! Checkpoints while running: bounding the replay of a start after a crash, without holding
//! the senders.
//!
//! sled 0.34 writes a snapshot of its page table only when it opens a store, and a start
//! replays its log from the last snapshot on: after a crash, everything written since the
//! gateway started (at 10 M events, up to the whole 16 GB log: ~45 s without a snapshot). So
//! each time `[store] checkpoint_mb` of events and writes have been committed since sled was
//! opened (a removal counting the value it removes: `Write::logged_len`), the committer has it
//! reopened, between two batches:
//!
//! 1. every batch it answered is already synced (`committer.rs`), so nothing acknowledged
//!    depends on what follows;
//! 2. it takes the readers' handles away, waiting for the reads in progress (new reads wait
//!    until step 4: they never see a closed store), drops the runs' trees, and hands sled (its
//!    trees, the durability layer) to the thread that opens sled (`opener.rs`). That thread
//!    drops them, so sled closes; opens sled again: sled replays what was written since the
//!    last open (what a crash start would have replayed) and writes a new snapshot, and the
//!    durability layer fsyncs sled's files and the directory as at a start; then wakes the
//!    committer;
//! 3. meanwhile (0.1-0.6 s), the committer goes on taking batches: a new event whose dedup key
//!    neither the recent claims' index nor a sealed run holds (told from memory, and from the
//!    files of the runs whose filter may hold it: `run_file.rs`), and that is not a copy of one
//!    accepted meanwhile, gets the next seq and goes into a frame of the journal
//!    (`journal.rs`), fdatasynced before it is answered, and `last_seq` moves past it. A copy
//!    of an event accepted meanwhile, or of one a run's file holds, is answered `duplicate`
//!    with its seq. Everything else (events whose dedup needs sled: the recent claims' index
//!    may hold them, or a run without a usable file; cursor moves and other writes, dedup
//!    expiries) is held;
//! 4. once woken, it takes sled back and applies the journal's frames to it as ordinary batches
//!    (the same seqs: nothing else was written), [`APPLY_STEP`] events at a time. Between two
//!    steps it goes on journaling what arrived, now with dedup told by sled and by the events
//!    journaled but not applied yet ([`APPLY_STEP`] a step at most, for [`JOURNALING_STEPS`]
//!    at most; later arrivals wait, so that the apply ends whatever the load); events held in
//!    step 3 are told that way first. An ack thus waits for one step of the apply, not for all
//!    of it. Once every frame is applied it syncs, empties the journal and gives the readers
//!    their handles; then commits what it held (writes, expiries), as ordinary batches. What
//!    was journaled counts towards the next checkpoint: sled's log holds it after the snapshot.
//!
//! So a reader never reads sled while it lacks an acknowledged event: one that reads right after
//! an ack given meanwhile waits for the checkpoint's end and finds its event. If
//! hookgate stops or crashes before the journal is emptied, the next open applies it first
//! (`SledStore::open`). If sled cannot be reopened, the committer stops as after a failed
//! fsync (nothing later is acknowledged; hookgate exits and its supervisor restarts it, and
//! the start applies the journal).

mod bridge;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::batch::{Signals, MAX_BATCH};
use super::committer::{Committer, Message, Outcome, Pending, Step, Work};
use super::durable::{Durability, Reopened};
use super::journal::Frame;
use super::opener::{Opener, Running};
use super::reader::ReadsSinceOpen;
use super::{free_segments, open_db, TreeId, Trees};
use crate::config::StoreConfig;
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::store::{Committed, StoreError};
use bridge::{chunks, Bridge, Dedup, Journaled};

/// The environment variable that makes each checkpoint keep sled closed this many ms longer,
/// for the tests that kill the gateway while events are journaled.
pub const SLOW_ENV: &str = "HOOKGATE_TEST_SLOW_CHECKPOINT_MS";

/// The environment variable that makes each step of applying the journal this many ms longer,
/// for the tests of what happens meanwhile.
pub const SLOW_APPLY_ENV: &str = "HOOKGATE_TEST_SLOW_APPLY_MS";

/// Events applied from the journal between two looks at the queue: what an ack given meanwhile
/// waits for (~5 ms of sled's transaction). At open, nothing waits, and frames are applied a
/// batch at a time.
const APPLY_STEP: usize = 256;

/// The steps of the apply after which new events are journaled (~1 s at ~5 ms a step). Applying
/// is 2-3 times as fast as hookgate takes events, so the journal empties well before; if it has
/// not, later arrivals wait in the queue until it has, so that the apply ends whatever the load.
const JOURNALING_STEPS: usize = 200;

/// What the committer needs to reopen sled, and when it should.
pub struct Reopen {
    /// sled's directory (`place.rs`), under `data_dir`.
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub config: StoreConfig,
    /// Set while a compaction follows the trees (`compact/`): no checkpoint may replace them.
    pub compacting: Arc<AtomicBool>,
    /// The committer's own queue, to wake it once sled is open again.
    pub wake: mpsc::WeakSender<Message>,
    /// What readers read since sled was opened (`[store] checkpoint_read_mb`).
    pub reads: Arc<ReadsSinceOpen>,
    /// The thread that reopens sled (`opener.rs`).
    pub opener: Opener,
    /// Added to each checkpoint, and to each step of applying its journal (tests only; see
    /// [`SLOW_ENV`] and [`SLOW_APPLY_ENV`]).
    pub slow: Option<Duration>,
    pub slow_apply: Option<Duration>,
    /// When the last checkpoint ended, and how long it took: readers' checkpoints keep to
    /// [`READS_SHARE`] of the time.
    pub last: Option<(Instant, Duration)>,
}

/// The most of the time that checkpoints asked for by readers may take: a reader's checkpoint
/// comes no sooner after the last checkpoint than 19 times that one's length. At 10 M events one
/// took ~50 ms after reads alone, but up to ~1 s in a retention run (its deletes), which read a
/// checkpoint's worth every ~0.3 s.
pub const READS_SHARE: u32 = 20;

impl Reopen {
    /// Whether `committed` bytes since the last open call for a checkpoint.
    pub fn due(&self, committed: u64) -> bool {
        self.config.checkpoint_bytes > 0
            && committed >= self.config.checkpoint_bytes
            && self.may_checkpoint()
    }

    /// Whether a checkpoint may replace sled's handles now (not while a compaction follows them).
    pub fn may_checkpoint(&self) -> bool {
        !self.compacting.load(Ordering::Acquire)
    }

    /// Whether readers may have a checkpoint now: one may, and the last one is far enough behind
    /// ([`READS_SHARE`]).
    pub fn may_checkpoint_for_reads(&self) -> bool {
        self.may_checkpoint()
            && self
                .last
                .is_none_or(|(ended, took)| ended.elapsed() >= took * (READS_SHARE - 1))
    }
}

/// A test hook's delay, if its variable ([`SLOW_ENV`], [`SLOW_APPLY_ENV`]) is set.
pub fn slow_from_env(name: &str) -> Option<Duration> {
    let ms: u64 = std::env::var(name).ok()?.parse().ok()?;
    tracing::warn!(ms, "{name} is set: each checkpoint takes longer.");
    Some(Duration::from_millis(ms))
}

/// sled as the reopening thread gives it back, and its free segments (`free_segments.rs`).
type Reopening = Running<Result<(Durability, Trees, Reopened, u64), StoreError>>;

impl Committer {
    /// Has sled closed and reopened, journaling events meanwhile (see the module's doc). `Err`:
    /// sled could not be opened again, or the journal could not be written, and the committer
    /// must stop.
    pub fn checkpoint(
        mut self,
        queue: &mut mpsc::Receiver<Message>,
        signals: &mut Signals,
    ) -> Result<Committer, StoreError> {
        let wake = Wake::new(&self.reopen.wake);
        let reopened = wake.reopened.clone();
        // A `Reopened` left from the last checkpoint (sent just as the committer saw its flag).
        signals.reopened = false;
        let started = Instant::now();
        // Readers wait from here until sled holds what is journaled meanwhile.
        let handles = self.handles.clone();
        let mut readers = handles.write().unwrap_or_else(PoisonError::into_inner);
        *readers = None;
        let runs = self.runs.detach();
        let reopening = reopen(
            self.durability,
            self.trees,
            &self.reopen,
            wake,
            self.metrics.clone(),
        );
        let mut journaled = Journaled::new(self.next_seq);
        let bridged = Bridge {
            journal: &mut self.journal,
            dedup: Dedup::Closed(&runs),
            metrics: &self.metrics,
            last_seq: &self.last_seq,
            data_dir: &self.reopen.data_dir,
            state: &mut journaled,
        }
        .run(queue, signals, &reopened, self.reopen.config.commit_delay);
        reopened.seen.store(true, Ordering::Release);
        let (durability, trees, parts, free_segments) = reopening
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
        let held = journaled.held.len();
        self.metrics.store_checkpoint_held.inc_by(held as u64);
        self.metrics.store_checkpoints.inc();
        self.metrics
            .store_checkpoint_seconds
            .observe(closed.as_secs_f64());
        let journaled_closed = journaled.events;
        let applied = self.catch_up(&mut journaled, queue, signals)?;
        let applying = started.elapsed() - closed;
        // Readers waited for the write lock: nothing was read from the old handles since.
        let read = self.reopen.reads.reset();
        *readers = Some((self.trees.clone(), self.durability.db().clone()));
        drop(readers);
        let ms = |part: Duration| part.as_millis() as u64;
        tracing::info!(
            committed_mb = self.since_checkpoint / (1024 * 1024),
            read_mb = read / (1024 * 1024),
            closed_ms = ms(closed),
            close_ms = ms(parts.close),
            open_ms = ms(parts.open),
            free_segments,
            sync_ms = ms(parts.sync),
            journaled = journaled_closed,
            journaled_applying = journaled.events - journaled_closed,
            frames = journaled.frames_written,
            slowest_frame_ms = ms(journaled.slowest_append),
            applied,
            apply_ms = ms(applying),
            held,
            "Store checkpointed: a start after a crash replays from here."
        );
        // What was journaled reached sled after its new snapshot: a start after a crash replays
        // it, so it counts towards the next checkpoint.
        self.since_checkpoint = journaled.bytes;
        self.reopen.last = Some((Instant::now(), started.elapsed()));
        if signals.fail.is_none() {
            for batch in chunks(std::mem::take(&mut journaled.held)) {
                // They waited behind the checkpoint (the slow-commit log's `behind_ms`).
                self.between.free_at = Some(Instant::now());
                self.commit(batch)?;
            }
        }
        Ok(self)
    }

    /// Applies what was journaled while sled was closed, a step at a time, and between two
    /// steps journals what arrived (see the module's doc). Returns how many events it applied.
    fn catch_up(
        &mut self,
        journaled: &mut Journaled,
        queue: &mut mpsc::Receiver<Message>,
        signals: &mut Signals,
    ) -> Result<u64, StoreError> {
        // Events held for sled are told now; writes and expiries wait for the end.
        let (events, others): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut journaled.held)
            .into_iter()
            .partition(|pending| matches!(pending.work, Work::Event(_)));
        journaled.held = others;
        if !events.is_empty() {
            self.bridge(journaled).commit(events)?;
        }
        let (mut applied, mut steps) = (0, 0);
        while !journaled.frames.is_empty() {
            applied += self.apply_frames(&mut journaled.frames, APPLY_STEP)?;
            if let Some(slow) = self.reopen.slow_apply {
                std::thread::sleep(slow);
            }
            steps += 1;
            if steps <= JOURNALING_STEPS {
                self.bridge(journaled)
                    .take_waiting(queue, signals, APPLY_STEP)?;
            }
        }
        self.journal_applied(applied)
    }

    /// The bridge once sled is open again, while the journal is applied.
    fn bridge<'a>(&'a mut self, state: &'a mut Journaled) -> Bridge<'a> {
        Bridge {
            journal: &mut self.journal,
            dedup: Dedup::Open(&self.runs),
            metrics: &self.metrics,
            last_seq: &self.last_seq,
            data_dir: &self.reopen.data_dir,
            state,
        }
    }

    /// Applies the journal's frames that sled does not hold yet, syncs sled, announces them to
    /// the readers and empties the journal (at open). Returns how many events it applied.
    /// `Err`: the journal does not follow sled's seqs or claims, or a write or sync failed.
    pub fn apply_journal(&mut self, frames: Vec<Frame>) -> Result<u64, StoreError> {
        let mut frames = VecDeque::from(frames);
        let mut applied = 0;
        while !frames.is_empty() {
            applied += self.apply_frames(&mut frames, MAX_BATCH)?;
        }
        self.journal_applied(applied)
    }

    /// Applies whole frames from the front of `frames`, together (a transaction per frame cost
    /// ~20 µs an event), until they hold `most` events or the committer would have begun
    /// sealing a dedup run after them (runs begin where they would have). Frames sled holds
    /// already (applied before a crash that left the journal full) are skipped. Returns how
    /// many events it applied.
    fn apply_frames(
        &mut self,
        frames: &mut VecDeque<Frame>,
        most: usize,
    ) -> Result<u64, StoreError> {
        let mut chunk: Vec<Step> = Vec::new();
        while let Some(frame) = frames.pop_front() {
            if frame.end() <= self.next_seq {
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
            if chunk.len() >= most || self.runs.seals_after(chunk.len()) {
                break;
            }
        }
        self.apply_journaled(chunk)
    }

    /// Once every frame is applied: syncs sled, announces the events to the readers and empties
    /// the journal. Returns `applied`.
    fn journal_applied(&mut self, applied: u64) -> Result<u64, StoreError> {
        if applied > 0 {
            let synced = self
                .durability
                .sync()
                .map_err(|err| StoreError::Storage(Arc::new(err)))?;
            self.metrics.fsyncs.inc_by(synced.fsyncs);
            self.announce_durable();
            self.record_watermark()?;
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
            self.runs_step()?;
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

/// Has the opener's thread close and reopen sled.
fn reopen(
    durability: Durability,
    trees: Trees,
    reopen: &Reopen,
    wake: Wake,
    metrics: Arc<Metrics>,
) -> Reopening {
    let (dir, config, slow) = (reopen.dir.clone(), reopen.config.clone(), reopen.slow);
    reopen.opener.run(move || {
        let _wake = wake;
        drop(trees);
        if let Some(slow) = slow {
            std::thread::sleep(slow);
        }
        let (durability, parts) = durability.reopen(|| open_db(&dir, &config))?;
        let free_segments = free_segments::observe(&dir, &metrics);
        let trees = Trees::open(durability.db())?;
        Ok((durability, trees, parts, free_segments))
    })
}

/// Whether the reopening thread has ended, and whether the committer has seen it.
#[derive(Default)]
struct ReopenFlags {
    done: AtomicBool,
    seen: AtomicBool,
}

/// Tells the committer that the reopening thread ended, however it ends. The committer looks at
/// `done` after each message it takes while sled is closed; when its queue is empty it waits
/// for a message, so the thread also sends it `Reopened`, which goes in whenever the queue has
/// room, that is whenever the committer could be waiting. A full queue, whose senders wait for
/// room, keeps the committer taking messages, and it sees `done`: the thread tries again each
/// millisecond until then, and never waits for the committer, which may be joining it. (It used
/// to reserve a place in the queue at the checkpoint's start, which a full queue never gave: no
/// checkpoint began under such a load.)
struct Wake {
    queue: mpsc::WeakSender<Message>,
    reopened: Arc<ReopenFlags>,
}

impl Wake {
    fn new(queue: &mpsc::WeakSender<Message>) -> Wake {
        Wake {
            queue: queue.clone(),
            reopened: Arc::default(),
        }
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        self.reopened.done.store(true, Ordering::Release);
        // No sender left (the store is being dropped): the queue's end wakes the committer.
        let Some(queue) = self.queue.upgrade() else {
            return;
        };
        while !self.reopened.seen.load(Ordering::Acquire) {
            match queue.try_send(Message::Reopened) {
                Err(mpsc::error::TrySendError::Full(_)) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}
