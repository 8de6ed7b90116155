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

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::batch::{answer_late, take_batch, take_gathered, Signals, MAX_BATCH};
use super::committer::{answer, encode, Committer, Message, Outcome, Pending, Step, Work};
use super::durable::{self, Durability, Reopened};
use super::journal::{Frame, Journal};
use super::reader::ReadsSinceOpen;
use super::runs::{Closed, Detached, Runs};
use super::{free_segments, open_db, TreeId, Trees};
use crate::config::StoreConfig;
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::store::{Committed, StoreError};

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
type Reopening = JoinHandle<Result<(Durability, Trees, Reopened, u64), StoreError>>;

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
        )?;
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
            self.record_watermark();
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

/// Starts the thread that closes and reopens sled.
fn reopen(
    durability: Durability,
    trees: Trees,
    reopen: &Reopen,
    wake: Wake,
    metrics: Arc<Metrics>,
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
            let free_segments = free_segments::observe(&dir, &metrics);
            let trees = Trees::open(durability.db())?;
            Ok((durability, trees, parts, free_segments))
        })?;
    Ok(thread)
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

/// What the committer journaled during a checkpoint, and what it held.
struct Journaled {
    /// The seq the next accepted event gets.
    next: Seq,
    /// The dedup keys journaled.
    claimed: HashMap<Vec<u8>, Seq>,
    /// What the journal holds that sled does not yet, oldest first.
    frames: VecDeque<Frame>,
    /// Requests that wait for sled.
    held: Vec<Pending>,
    /// How many events and frames were journaled, and the events' bytes.
    events: u64,
    bytes: u64,
    frames_written: u64,
    /// The longest a frame's write and fdatasync took.
    slowest_append: Duration,
}

impl Journaled {
    fn new(next: Seq) -> Journaled {
        Journaled {
            next,
            claimed: HashMap::new(),
            frames: VecDeque::new(),
            held: Vec::new(),
            events: 0,
            bytes: 0,
            frames_written: 0,
            slowest_append: Duration::ZERO,
        }
    }
}

/// What tells a new event's dedup besides what was journaled.
enum Dedup<'a> {
    /// sled is closed: the runs as they were, from memory and the runs' files.
    Closed(&'a Detached),
    /// sled is open again, and holds every claim but those journaled and not applied yet.
    Open(&'a Runs),
}

impl Dedup<'_> {
    fn lookup(&self, key: &[u8]) -> Result<Closed, StoreError> {
        Ok(match self {
            Dedup::Closed(runs) => runs.lookup(key),
            Dedup::Open(runs) => match runs.lookup(key)? {
                Some(seq) => Closed::Found(seq),
                None => Closed::Absent,
            },
        })
    }
}

/// The committer's side during a checkpoint: new events go to the journal.
struct Bridge<'a> {
    journal: &'a mut Journal,
    dedup: Dedup<'a>,
    metrics: &'a Metrics,
    /// Announces each journaled batch (readers wait for sled meanwhile).
    last_seq: &'a watch::Sender<Seq>,
    data_dir: &'a Path,
    state: &'a mut Journaled,
}

impl Bridge<'_> {
    /// Takes batches until sled is open again, or a failure or the queue's end; they gather for
    /// `delay` under load, as the committer's do (each frame is synced). `Err`: the journal could
    /// not be written.
    fn run(
        &mut self,
        queue: &mut mpsc::Receiver<Message>,
        signals: &mut Signals,
        reopened: &ReopenFlags,
        delay: Duration,
    ) -> Result<(), StoreError> {
        let mut before = 0;
        while !signals.reopened && !reopened.done.load(Ordering::Acquire) && signals.fail.is_none()
        {
            let Some(message) = queue.blocking_recv() else {
                break;
            };
            let Some(first) = signals.take(message) else {
                continue;
            };
            let batch = take_gathered(first, queue, signals, delay, before);
            before = batch.len();
            if signals.fail.is_none() {
                self.commit(batch)?;
            }
        }
        signals.reopened = false;
        Ok(())
    }

    /// Takes up to `most` requests waiting in the queue, without waiting for more; stops at a
    /// failure or a compaction's pause, which the committer takes once the checkpoint is over.
    /// The bound is what lets the apply end under a load that never lets the queue empty: one
    /// step without it took everything that came, as long as it came (1.7 M events, in the
    /// ingest bench's pre-load, with readers waiting the whole time).
    fn take_waiting(
        &mut self,
        queue: &mut mpsc::Receiver<Message>,
        signals: &mut Signals,
        most: usize,
    ) -> Result<(), StoreError> {
        let mut taken = 0;
        while taken < most && signals.fail.is_none() && signals.pause.is_none() {
            let Ok(message) = queue.try_recv() else {
                break;
            };
            taken += self.take(message, queue, signals, most - taken)?;
        }
        Ok(())
    }

    /// Commits `message` and the requests queued behind it, up to `most`. Returns how many
    /// requests it took.
    fn take(
        &mut self,
        message: Message,
        queue: &mut mpsc::Receiver<Message>,
        signals: &mut Signals,
        most: usize,
    ) -> Result<usize, StoreError> {
        let Some(first) = signals.take(message) else {
            return Ok(0);
        };
        let batch = take_batch(first, queue, signals, most);
        let taken = batch.len();
        if signals.fail.is_none() {
            self.commit(batch)?;
        }
        Ok(taken)
    }

    /// Journals and answers a batch's new events, answers copies of events stored or journaled
    /// before, and holds the rest. `Err`: the journal could not be written, or sled read.
    fn commit(&mut self, batch: Vec<Pending>) -> Result<(), StoreError> {
        let bytes: usize = batch.iter().map(|p| p.work.bytes()).sum();
        if durable::room_for(self.data_dir, bytes as u64, true).is_err() {
            // Told and answered once sled holds the journal.
            self.state.held.extend(batch);
            return Ok(());
        }
        let mut frame = Frame {
            first: self.state.next,
            events: Vec::new(),
        };
        let mut answers = Vec::new();
        let mut failed = None;
        let mut journaled_bytes = 0;
        for pending in answer_late(batch) {
            let Work::Event(event) = &pending.work else {
                self.state.held.push(pending);
                continue;
            };
            let encoded = encode(event);
            if let Some(seq) = self.state.claimed.get(&encoded.0) {
                answers.push((pending, Committed::Duplicate(*seq)));
                continue;
            }
            match self.dedup.lookup(&encoded.0) {
                Ok(Closed::Absent) => {}
                Ok(Closed::Found(seq)) => {
                    answers.push((pending, Committed::Duplicate(seq)));
                    continue;
                }
                Ok(Closed::NeedsSled) => {
                    self.state.held.push(pending);
                    continue;
                }
                Err(err) => {
                    let _ = pending.reply.send(Err(err.clone()));
                    failed = Some(err);
                    continue;
                }
            }
            let seq = frame.end();
            journaled_bytes += event.body.len() as u64;
            self.state.claimed.insert(encoded.0.clone(), seq);
            frame.events.push(encoded);
            answers.push((pending, Committed::Accepted(seq)));
        }
        if failed.is_none() && !frame.events.is_empty() {
            failed = self.append(frame).err();
            self.state.bytes += journaled_bytes;
        }
        if let Some(err) = failed {
            for (pending, _) in answers {
                let _ = pending.reply.send(Err(err.clone()));
            }
            return Err(err);
        }
        for (pending, committed) in answers {
            answer(self.metrics, pending, Outcome::Event(committed));
        }
        Ok(())
    }

    /// Writes and fdatasyncs `frame` to the journal, and announces its events to `last_seq`.
    fn append(&mut self, frame: Frame) -> Result<(), StoreError> {
        let appending = Instant::now();
        let appended = self.journal.append(&frame);
        let state = &mut *self.state;
        state.slowest_append = state.slowest_append.max(appending.elapsed());
        if let Err(err) = appended {
            let err = StoreError::Storage(Arc::new(err));
            tracing::error!(error = %err, path = %self.journal.path().display(), "Cannot write the checkpoint journal; answering 503.");
            return Err(err);
        }
        self.metrics.fsyncs.inc();
        let events = frame.events.len() as u64;
        state.next = frame.end();
        state.events += events;
        state.frames_written += 1;
        self.last_seq.send_replace(Seq(state.next.0 - 1));
        self.metrics.store_journaled_events.inc_by(events);
        state.frames.push_back(frame);
        Ok(())
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
