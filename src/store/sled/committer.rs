//! The single committer: a dedicated thread that takes every commit request waiting in its queue,
//! applies them to sled as one batch (`append.rs`), makes them durable with one flush + fdatasync
//! (group commit), and only then answers each request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sled::transaction::TransactionError;
use sled::Transactional;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::append::{Appender, Put};
use super::checkpoint::Reopen;
use super::compact::Pause;
use super::durable::Durability;
use super::journal::{Encoded, Journal};
use super::live::Live;
use super::pack::Pack;
use super::reader::MarkMoves;
use super::record::{dedup_key, RecordRef};
use super::runs::Runs;
use super::slow_commit::{self, Parts};
use super::torn_batch::{self, TearHook};
use super::watermark::Watermark;
use super::{Handles, TreeId, Trees, Write};
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::store::slow_commit::SlowCommits;
use crate::store::{Committed, NewEvent, StoreError};

/// Most requests in one batch, and most body bytes (at least one request is always taken).
pub const MAX_BATCH: usize = 1024;
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// What the committer's queue carries.
pub enum Message {
    Commit(Pending),
    /// Commit what is queued, sync, and stop.
    Close,
    /// A reader found the store corrupt: stop at once (see `SledStore::read`).
    Fail(String),
    /// A compaction's copy is nearly done: wait for it between two batches (`compact/`).
    Pause(Pause),
    /// sled is open again after a checkpoint (`checkpoint.rs`).
    Reopened,
    /// Readers read `[store] checkpoint_read_mb` since sled was opened: reopen it, which empties
    /// its cache (`reader.rs`, `ReadsSinceOpen`).
    Checkpoint,
}

/// What a request asks the committer to do.
pub enum Work {
    /// Claim the event's dedup key and append it under the next seq.
    Event(NewEvent),
    /// Apply these writes together (cursor moves, delivery records, sweeps).
    Writes(Vec<Write>),
    /// Drop the dedup keys (recent claims, sealed runs) that arrived before this time (ms).
    ExpireDedup(u64),
}

impl Work {
    pub fn bytes(&self) -> usize {
        match self {
            Work::Event(event) => event.body.len(),
            Work::Writes(writes) => writes.iter().map(Write::len).sum(),
            Work::ExpireDedup(_) => 0,
        }
    }

    /// What it counts towards `checkpoint_mb` ([`Write::logged_len`]).
    pub fn logged_bytes(&self) -> usize {
        match self {
            Work::Writes(writes) => writes.iter().map(Write::logged_len).sum(),
            other => other.bytes(),
        }
    }
}

/// What one request asks of the transaction.
pub enum Step<'a> {
    /// An event, encoded: claim its dedup key and append it under the next seq.
    Event(Encoded),
    Writes(&'a [Write]),
}

/// An event as the transaction and the journal take it.
pub fn encode(event: &NewEvent) -> Encoded {
    let record = RecordRef {
        provider: event.provider.as_str(),
        event_id: event.event_id.as_str(),
        received_at_ms: event.received_at_ms,
        source: event.source,
        content_type: event.content_type.as_deref(),
        body: &event.body,
        topic: event.topic.as_deref(),
    };
    (
        dedup_key(event.provider.as_str(), event.dedup_id.as_str()),
        record.encode(),
        event.received_at_ms,
    )
}

/// What the committer did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Event(Committed),
    Written,
    /// How many dedup keys expired.
    Expired(u64),
}

/// What a batch's apply gives: the outcomes, the next seq, the open pack, the change in stored
/// bytes.
type Applied = (Vec<Outcome>, Seq, Option<Pack>, i64);

/// One request waiting for the committer.
pub struct Pending {
    pub work: Work,
    /// Past this, the request is not applied: its sender has been (or will be) answered 503.
    pub deadline: Instant,
    /// When it was handed to the committer's queue (for the slow-commit log).
    pub submitted: Instant,
    pub reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

pub struct Committer {
    pub trees: Trees,
    pub durability: Durability,
    pub next_seq: Seq,
    pub metrics: Arc<Metrics>,
    /// The highest seq durably stored, announced after each sync.
    pub last_seq: tokio::sync::watch::Sender<Seq>,
    /// The newest pack, as stored, while it has room: the next events are appended to it.
    pub open: Option<Pack>,
    /// The most bytes of a pack in this store (`pack::max_value` of its segments).
    pub pack_bytes: usize,
    /// The acknowledged seq, kept beside the log to tell a damaged log at open.
    pub watermark: Watermark,
    /// The recent dedup claims and the sealed runs (`claims.rs`, `runs/`).
    pub runs: Runs,
    /// The readers' handles of sled, and what reopens it (see `checkpoint.rs`).
    pub handles: Handles,
    pub reopen: Reopen,
    /// Bytes committed since sled was last opened.
    pub since_checkpoint: u64,
    /// The bytes of keys and values stored (`live.rs`).
    pub live: Live,
    /// Where events go while sled is closed for a checkpoint (`journal.rs`).
    pub journal: Journal,
    /// Which batches were slow, and their log line (`slow_commit.rs`).
    pub slow: SlowCommits,
    /// What the committer did since the last batch (for the slow-commit log).
    pub between: Between,
    /// Counts the transactions that may move marks, for readers of them (`reader.rs`).
    pub mark_moves: Arc<MarkMoves>,
    /// Tears a batch (tests only: `torn_batch::TEAR_ENV`).
    pub tear: TearHook,
}

/// What the committer did since its last batch, for the slow-commit log (`slow_commit.rs`).
#[derive(Debug, Default)]
pub struct Between {
    /// When it last turned to its queue, free of earlier work.
    pub free_at: Option<Instant>,
    /// Time in the runs' steps.
    pub runs: Duration,
    /// Taking the batch, and gathering.
    pub gather: Duration,
}

/// The committer's end on a corrupt store.
fn stop(reason: &str) {
    tracing::error!("{reason}; hookgate stops rather than serve a damaged store.");
}

/// The committer's end after a failed write or sync. Fail-stop: after a failed sync, what the
/// disk holds is unknown (a retried fsync may report success for pages the kernel already
/// dropped). No later batch may be acknowledged on top of it; the queued requests get 503
/// (Closed) and hookgate exits, so that its supervisor restarts it on what the disk holds.
fn stop_unsure(err: &StoreError) {
    tracing::error!(error = %err, "The store cannot tell what reached the disk; it stops accepting events.");
}

/// The committer's end when a compaction's switch failed half-way.
fn unsure(err: &StoreError) {
    tracing::error!(error = %err, "The store cannot tell which copy of it is current; it stops accepting events.");
}

/// What the queue held besides requests, kept until the committer acts on it.
#[derive(Default)]
pub struct Signals {
    pub closing: bool,
    /// A reader found the store corrupt: stop at once.
    pub fail: Option<String>,
    /// A compaction waits for the committer, between two batches.
    pub pause: Option<Pause>,
    /// sled was reopened for a checkpoint (`checkpoint.rs`).
    pub reopened: bool,
    /// Readers asked for a checkpoint.
    pub checkpoint: bool,
}

impl Signals {
    /// Keeps a message that is not a request; gives a request back.
    pub fn take(&mut self, message: Message) -> Option<Pending> {
        match message {
            Message::Commit(pending) => return Some(pending),
            Message::Close => self.closing = true,
            Message::Fail(reason) => self.fail = Some(reason),
            Message::Pause(pause) => self.pause = Some(pause),
            Message::Reopened => self.reopened = true,
            Message::Checkpoint => self.checkpoint = true,
        }
        None
    }
}

/// Takes `first` and the requests queued behind it, up to `most` (at least `first`; at most a
/// batch). Stops at a failure or a pause, which the caller takes first or right after the
/// batch.
pub fn take_batch(
    first: Pending,
    queue: &mut mpsc::Receiver<Message>,
    signals: &mut Signals,
    most: usize,
) -> Vec<Pending> {
    let mut batch = Batch::of(first, queue);
    batch.take_queued(queue, signals, most);
    batch.requests
}

/// Requests taken together, and their bytes.
struct Batch {
    requests: Vec<Pending>,
    bytes: usize,
}

impl Batch {
    /// `first`, with room for what waits behind it: grown push by push, the vector's copies and
    /// reallocations took ~2.7 % of the committer's CPU at 64 connections (`benches/profile.sh`
    /// on ab0f56a).
    fn of(first: Pending, queue: &mpsc::Receiver<Message>) -> Self {
        let mut requests = Vec::with_capacity(1 + queue.len().min(MAX_BATCH));
        let bytes = first.work.bytes();
        requests.push(first);
        Batch { requests, bytes }
    }

    /// Adds the requests queued, up to `most` in all (at most a batch).
    fn take_queued(
        &mut self,
        queue: &mut mpsc::Receiver<Message>,
        signals: &mut Signals,
        most: usize,
    ) {
        while self.requests.len() < most.min(MAX_BATCH)
            && self.bytes < MAX_BATCH_BYTES
            && signals.fail.is_none()
            && signals.pause.is_none()
        {
            let Ok(message) = queue.try_recv() else {
                break;
            };
            if let Some(pending) = signals.take(message) {
                self.bytes += pending.work.bytes();
                self.requests.push(pending);
            }
        }
    }
}

/// A batch of at least this many requests is committed at once, without gathering.
const GATHER_ENOUGH: usize = 32;

/// Whether a batch of `taken` requests waits `[store] commit_delay` for more before its commit:
/// only when the batch before held more than one request (a lone sender, whose next request
/// cannot come before this one is answered, never waits), fewer than [`GATHER_ENOUGH`] wait, and
/// nothing else asks for the committer (nor is sled back from a checkpoint, which the committer
/// takes up at once). Each commit costs about the same whatever it holds
/// (sled's flush and the io threads it wakes, the fdatasync, the wake-ups), so under a paced
/// load a batch that gathers 0.5 ms shares that cost among about twice the requests
/// (docs/performance.md, "Letting batches gather").
fn should_gather(delay: Duration, before: usize, taken: usize, signals: &Signals) -> bool {
    !delay.is_zero()
        && before > 1
        && taken < GATHER_ENOUGH
        && !signals.closing
        && !signals.reopened
        && signals.fail.is_none()
        && signals.pause.is_none()
}

/// Takes `first` and the requests queued behind it, and when [`should_gather`] says so, those
/// that come within `delay` (`[store] commit_delay`) more; `before`: the batch before's size.
pub fn take_gathered(
    first: Pending,
    queue: &mut mpsc::Receiver<Message>,
    signals: &mut Signals,
    delay: Duration,
    before: usize,
) -> Vec<Pending> {
    let mut batch = Batch::of(first, queue);
    batch.take_queued(queue, signals, MAX_BATCH);
    if should_gather(delay, before, batch.requests.len(), signals) {
        std::thread::sleep(delay);
        batch.take_queued(queue, signals, MAX_BATCH);
    }
    batch.requests
}

/// Answers `DeadlineExceeded` to the requests past their deadline or whose sender is gone, and
/// returns the others.
pub fn answer_late(batch: Vec<Pending>) -> Vec<Pending> {
    let now = Instant::now();
    let is_live = |p: &Pending| p.deadline > now && !p.reply.is_closed();
    // Most batches hold none late: none is moved then.
    if batch.iter().all(is_live) {
        return batch;
    }
    let (live, late): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(is_live);
    for pending in late {
        let _ = pending.reply.send(Err(StoreError::DeadlineExceeded));
    }
    live
}

/// Answers a request whose work is durable, and counts what it stored.
pub fn answer(metrics: &Metrics, pending: Pending, outcome: Outcome) {
    match outcome {
        Outcome::Event(Committed::Accepted(_)) => metrics.events_stored.inc(),
        Outcome::Event(Committed::Duplicate(_)) => metrics.duplicates.inc(),
        Outcome::Written | Outcome::Expired(_) => 0,
    };
    let _ = pending.reply.send(Ok(outcome));
}

impl Committer {
    /// Runs until told to close (or every sender is gone), commits what is still queued, and
    /// syncs once more.
    pub fn run(mut self, mut queue: mpsc::Receiver<Message>) {
        let mut signals = Signals::default();
        // Requests in the batch before (see `should_gather`).
        let mut before = 0;
        loop {
            if let Some(reason) = signals.fail.take() {
                // The batch taken with it, if any, was dropped: its requests are answered 503.
                return stop(&reason);
            }
            if let Some(pause) = signals.pause.take() {
                self = match self.pause(pause) {
                    Ok(switched) => switched,
                    Err(err) => return unsure(&err),
                };
            }
            // Still over the bound: a checkpoint since the ask (one due to commits) emptied it.
            let read_bound = self.reopen.config.checkpoint_read_bytes;
            if std::mem::take(&mut signals.checkpoint)
                && !signals.closing
                && self.reopen.reads.over(read_bound)
            {
                if self.reopen.may_checkpoint_for_reads() {
                    let Some(reopened) = self.checkpointed(&mut queue, &mut signals) else {
                        return;
                    };
                    self = reopened;
                } else {
                    // Too soon after the last one, or a compaction follows sled's handles (its
                    // copy replaces them itself): the next read over the bound asks again.
                    self.reopen.reads.unask();
                }
                continue;
            }
            self.between.free_at = Some(Instant::now());
            let next = if signals.closing {
                queue.try_recv().ok()
            } else if self.runs.wants_step() {
                // The runs' own work goes on while no request waits (`runs/`).
                match queue.try_recv() {
                    Ok(message) => Some(message),
                    Err(TryRecvError::Empty) => {
                        // No request waits: the steps before this one delayed nobody.
                        self.between.runs = Duration::ZERO;
                        if let Err(err) = self.runs_step() {
                            return stop_unsure(&err);
                        }
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => None,
                }
            } else {
                self.between.runs = Duration::ZERO;
                queue.blocking_recv()
            };
            let Some(message) = next else { break };
            let Some(first) = signals.take(message) else {
                continue;
            };
            // A `Reopened` taken here is one the last checkpoint sent after it had seen sled
            // back: left set, it would keep every batch from gathering until the next one.
            signals.reopened = false;
            let delay = self.reopen.config.commit_delay;
            let taking = Instant::now();
            let batch = take_gathered(first, &mut queue, &mut signals, delay, before);
            self.between.gather = taking.elapsed();
            let logged: usize = batch
                .iter()
                .map(|pending| pending.work.logged_bytes())
                .sum();
            before = batch.len();
            if signals.fail.is_some() {
                continue;
            }
            let committed = self.commit(batch).and_then(|()| {
                // Between batches, a step of sealing recent dedup keys into a run.
                if self.runs.wants_step() {
                    self.runs_step()?;
                }
                Ok(())
            });
            if let Err(err) = committed {
                return stop_unsure(&err);
            }
            self.since_checkpoint += logged as u64;
            if signals.pause.is_none() && self.reopen.due(self.since_checkpoint) {
                let Some(reopened) = self.checkpointed(&mut queue, &mut signals) else {
                    return;
                };
                self = reopened;
            }
        }
        match self.durability.sync() {
            Ok(_) => {
                if let Err(err) = self.watermark.advance(Seq(self.next_seq.0 - 1), true) {
                    tracing::error!(error = %err, "Cannot record the acknowledged watermark.");
                }
            }
            Err(err) => tracing::error!(error = %err, "Final sync of the store failed."),
        }
    }

    /// [`Committer::checkpoint`], or `None` when sled could not be reopened (logged): the
    /// committer then stops.
    fn checkpointed(
        self,
        queue: &mut mpsc::Receiver<Message>,
        signals: &mut Signals,
    ) -> Option<Committer> {
        self.checkpoint(queue, signals)
            .inspect_err(|err| {
                tracing::error!(error = %err, "The store cannot be reopened after its checkpoint; it stops accepting events.");
            })
            .ok()
    }

    /// Applies and syncs one batch and answers it. `Err`: an fsync failed, and the committer
    /// must stop (see `durable.rs`).
    pub fn commit(&mut self, batch: Vec<Pending>) -> Result<(), StoreError> {
        // Most batches hold no expiry: moving every request into new vectors took ~1.6 % of
        // hookgate's CPU at 64 connections (`benches/profile.sh` on efabcc0).
        let expires = |p: &Pending| matches!(p.work, Work::ExpireDedup(_));
        let (expiries, batch): (Vec<Pending>, Vec<Pending>) = if batch.iter().any(expires) {
            batch.into_iter().partition(expires)
        } else {
            (Vec::new(), batch)
        };
        for pending in expiries {
            if let Work::ExpireDedup(cutoff_ms) = pending.work {
                let expired = self.runs.expire(cutoff_ms);
                let failed = expired.as_ref().err().cloned();
                let _ = pending.reply.send(expired.map(Outcome::Expired));
                if let Some(err) = failed {
                    return Err(err);
                }
            }
        }
        let live = answer_late(batch);
        if live.is_empty() {
            return Ok(());
        }

        let bytes: usize = live.iter().map(|p| p.work.bytes()).sum();
        let events = live.iter().any(|p| matches!(p.work, Work::Event(_)));
        if let Err(free) = self.durability.room_for(bytes as u64, events) {
            tracing::error!(free, batch = live.len(), "The disk is full; answering 503.");
            for pending in live {
                let _ = pending.reply.send(Err(StoreError::DiskFull { free }));
            }
            return Ok(());
        }
        let started = Instant::now();
        let oldest = live.iter().map(|p| p.submitted).min().unwrap_or(started);
        let between = std::mem::take(&mut self.between);
        let behind = between.free_at.map_or(Duration::ZERO, |free| {
            free.saturating_duration_since(oldest)
        });
        let mut parts = Parts {
            waited: started.saturating_duration_since(oldest),
            behind,
            // The step in progress when the oldest request came counts only from then on.
            runs: between.runs.min(behind),
            gather: between.gather,
            ..Parts::default()
        };
        let mut fatal = false;
        let steps: Vec<Step> = live
            .iter()
            .map(|pending| match &pending.work {
                Work::Event(event) => Step::Event(encode(event)),
                Work::Writes(writes) => Step::Writes(writes),
                Work::ExpireDedup(_) => Step::Writes(&[]),
            })
            .collect();
        let result = self.apply(&steps).and_then(|outcomes| {
            let applied = Instant::now();
            parts.apply = applied - started;
            self.metrics
                .commit_apply_seconds
                .observe(parts.apply.as_secs_f64());
            let synced = self.durability.sync();
            self.metrics
                .commit_sync_seconds
                .observe(applied.elapsed().as_secs_f64());
            match synced {
                Ok(synced) => {
                    self.metrics.fsyncs.inc_by(synced.fsyncs);
                    (parts.flush, parts.fdatasync) = (synced.flush, synced.fdatasync);
                    Ok(outcomes)
                }
                Err(err) => {
                    fatal = true;
                    Err(StoreError::Storage(Arc::new(err)))
                }
            }
        });
        self.metrics.commits.inc();
        self.metrics.commit_batch_size.observe(live.len() as f64);

        match result {
            Ok(outcomes) => {
                let answering = Instant::now();
                let (requests, bytes) = (live.len(), bytes);
                // Readers see the batch before anyone is answered: a client that reads right
                // after its 200 finds its event.
                self.announce_durable();
                for (pending, outcome) in live.into_iter().zip(outcomes) {
                    answer(&self.metrics, pending, outcome);
                }
                parts.answer = answering.elapsed();
                // After the answers: once a second this fdatasyncs the watermark's file, which
                // no ack needs to wait for (`watermark.rs`).
                self.record_watermark();
                slow_commit::note(&mut self.slow, &parts, requests, bytes);
            }
            Err(err) => {
                tracing::error!(error = %err, batch = live.len(), "Commit failed; answering 503.");
                for pending in live {
                    let _ = pending.reply.send(Err(err.clone()));
                }
                // sled's own failures poison it (see `durable.rs`); a record that cannot be read
                // aborts the transaction, which applied nothing.
                if fatal || matches!(err, StoreError::Storage(_)) {
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// A step of the runs' own work (`runs/`), timed for the slow-commit log.
    pub fn runs_step(&mut self) -> Result<(), StoreError> {
        let started = Instant::now();
        let stepped = self.runs.step();
        self.between.runs += started.elapsed();
        stepped
    }

    /// Tells the readers that every seq sled holds is durable.
    pub fn announce_durable(&self) {
        self.last_seq.send_replace(Seq(self.next_seq.0 - 1));
    }

    /// Moves the acknowledged watermark to every seq sled holds (synced).
    pub fn record_watermark(&mut self) {
        let durable = Seq(self.next_seq.0 - 1);
        if let Err(err) = self.watermark.advance(durable, false) {
            // Only the detection of a damaged log suffers; the events are durable.
            tracing::warn!(error = %err, "Cannot record the acknowledged watermark.");
        }
    }

    /// Claims each event's dedup key and appends it, and applies every write: a batch of events
    /// only straight to the trees, the next seq last (`append.rs`); any other in one transaction.
    pub fn apply(&mut self, steps: &[Step]) -> Result<Vec<Outcome>, StoreError> {
        let start = self.next_seq;
        let any_writes = steps.iter().any(|step| matches!(step, Step::Writes(_)));
        // With the sealing's changes since the last batch (`runs/`).
        self.live.add(self.runs.take_delta());
        let live = self.live.get();
        // Keys already claimed, looked up before the batch: a read inside a transaction may make
        // sled split a node, which waits for the lock the transaction holds.
        let mut known: HashMap<&[u8], Seq> = HashMap::new();
        for step in steps {
            let Step::Event((key, _, _)) = step else {
                continue;
            };
            if let Some(seq) = self.runs.lookup(key)? {
                known.insert(key.as_slice(), seq);
            }
        }
        let (outcomes, next, pack, delta) = if any_writes {
            self.apply_in_transaction(steps, &known, live)?
        } else {
            let tree = |id: TreeId| &self.trees.all[id as usize];
            let mut appender = Appender::new(start, self.open.take(), self.pack_bytes, &known);
            let mut outcomes = Vec::with_capacity(steps.len());
            for step in steps {
                if let Step::Event(encoded) = step {
                    outcomes.push(Outcome::Event(
                        appender.event(tree(TreeId::Events), encoded)?,
                    ));
                }
            }
            appender.write_rest(tree(TreeId::Dedup), tree(TreeId::Meta), live)?;
            if self.tear.tears(outcomes.len()) {
                torn_batch::tear(tree(TreeId::Meta));
            }
            appender.commit(tree(TreeId::Meta))?;
            (outcomes, appender.next, appender.pack, appender.delta)
        };
        self.live.add(delta);
        let accepted: Vec<(&[u8], Seq)> = steps
            .iter()
            .zip(&outcomes)
            .filter_map(|(step, outcome)| match (step, outcome) {
                (Step::Event((key, _, _)), Outcome::Event(Committed::Accepted(seq))) => {
                    Some((key.as_slice(), *seq))
                }
                _ => None,
            })
            .collect();
        self.runs.claimed(&accepted);
        self.next_seq = next;
        self.open = pack;
        Ok(outcomes)
    }

    /// [`Committer::apply`] of a batch that holds writes beside its events, in one transaction:
    /// the outcomes, the next seq, the open pack and the change in stored bytes.
    fn apply_in_transaction<'a>(
        &self,
        steps: &'a [Step],
        known: &'a HashMap<&'a [u8], Seq>,
        live: Option<u64>,
    ) -> Result<Applied, StoreError> {
        let trees: Vec<&::sled::Tree> = self.trees.all.iter().collect();
        // Writes may move marks: readers of marks check that none came in between.
        self.mark_moves.begin();
        let result = trees[..].transaction(|trees| {
            let tree = |id: TreeId| &trees[id as usize];
            let (events, meta) = (tree(TreeId::Events), tree(TreeId::Meta));
            let mut appender =
                Appender::new(self.next_seq, self.open.clone(), self.pack_bytes, known);
            let mut outcomes = Vec::with_capacity(steps.len());
            for step in steps {
                let writes = match step {
                    Step::Event(encoded) => {
                        outcomes.push(Outcome::Event(appender.event(events, encoded)?));
                        continue;
                    }
                    Step::Writes(writes) => *writes,
                };
                for write in writes {
                    if appender
                        .pack
                        .as_ref()
                        .is_some_and(|open| write.touches_pack(open.first))
                    {
                        // The sweeper changes the open pack, read as if it were in `events`.
                        appender.settle_open_pack(events, meta)?;
                    }
                    appender.delta += match write {
                        Write::Put(id, key, value) => tree(*id).put(key, value)?,
                        Write::Delete(id, key) => tree(*id).delete(key)?,
                        Write::Raise(id, key, seq) => {
                            let current = tree(*id)
                                .get(key.as_slice())?
                                .and_then(|value| Seq::from_key(value.as_ref()));
                            if current.is_none_or(|current| current < *seq) {
                                tree(*id).put(key, &seq.to_key())?
                            } else {
                                0
                            }
                        }
                        Write::Swap(id, key, expected, new) => {
                            let current = tree(*id).get(key.as_slice())?;
                            match new {
                                _ if current.as_deref() != Some(expected.as_slice()) => 0,
                                Some(new) => tree(*id).put(key, new)?,
                                None => tree(*id).delete(key)?,
                            }
                        }
                    };
                }
                outcomes.push(Outcome::Written);
            }
            appender.write_rest(tree(TreeId::Dedup), meta, live)?;
            appender.commit(meta)?;
            Ok((outcomes, appender.next, appender.pack, appender.delta))
        });
        self.mark_moves.end();
        match result {
            Ok(applied) => Ok(applied),
            Err(TransactionError::Abort(err)) => Err(err),
            Err(TransactionError::Storage(err)) => Err(StoreError::from(err)),
        }
    }
}
