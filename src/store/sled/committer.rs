//! The single committer: a dedicated thread that takes every commit request waiting in its queue
//! (`batch.rs`), applies them to sled as one batch (`append.rs`), makes them durable with one flush + fdatasync
//! (group commit), and only then answers each request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::batch::{answer_late, take_gathered, Signals};
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
use super::torn_batch::TearHook;
use super::watermark::Watermark;
use super::{Handles, Trees, Write};
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::store::slow_commit::SlowCommits;
use crate::store::{Committed, NewEvent, StoreError};

/// What the committer's queue carries.
pub enum Message {
    Commit(Pending),
    /// Commit what is queued, sync, and stop.
    Close,
    /// A reader found the store corrupt: stop at once (see `SledStore::read`).
    Fail(String),
    /// A compaction's copy is nearly done: wait for it between two batches (`compact/`).
    Pause(Pause),
    /// sled is open again after a checkpoint (`checkpoint/`).
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
    let record = record(event);
    (
        dedup_key(event.provider.as_str(), event.dedup_id.as_str()),
        record.encode(),
        event.received_at_ms,
    )
}

/// At least the bytes of `event`'s record.
pub fn record_bound(event: &NewEvent) -> usize {
    record(event).encoded_bound()
}

fn record(event: &NewEvent) -> RecordRef<'_> {
    RecordRef {
        provider: event.provider.as_str(),
        event_id: event.event_id.as_str(),
        received_at_ms: event.received_at_ms,
        source: event.source,
        content_type: event.content_type.as_deref(),
        body: &event.body,
        topic: event.topic.as_deref(),
    }
}

/// What the committer did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Event(Committed),
    Written,
    /// How many dedup keys expired.
    Expired(u64),
}

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
    /// The readers' handles of sled, and what reopens it (see `checkpoint/`).
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
    /// The bytes of the largest event of the last batch, if a full disk refused it (0: it did
    /// not; readiness: `SledStore::ready`).
    pub disk_full: Arc<std::sync::atomic::AtomicU64>,
    /// When the batch under way began ([`busy_clock_ms`]; 0: none is; readiness).
    pub busy_since: Arc<std::sync::atomic::AtomicU64>,
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
    /// syncs once more. Returns whether it ended so, synced: a failed final sync, as any failed
    /// sync, must stop the process non-zero, with no checkpoint reopening sled over it.
    pub fn run(mut self, mut queue: mpsc::Receiver<Message>) -> bool {
        let mut signals = Signals::default();
        // Requests in the batch before (see `should_gather`).
        let mut before = 0;
        loop {
            if let Some(reason) = signals.fail.take() {
                // The batch taken with it, if any, was dropped: its requests are answered 503.
                stop(&reason);
                return false;
            }
            if let Some(pause) = signals.pause.take() {
                self = match self.pause(pause) {
                    Ok(switched) => switched,
                    Err(err) => {
                        unsure(&err);
                        return false;
                    }
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
                        return false;
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
                            stop_unsure(&err);
                            return false;
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
            before = batch.len();
            if signals.fail.is_some() {
                continue;
            }
            let busy = std::sync::atomic::Ordering::Relaxed;
            self.busy_since.store(busy_clock_ms().max(1), busy);
            let committed = self.commit(batch).and_then(|logged| {
                // Between batches, a step of sealing recent dedup keys into a run.
                if self.runs.wants_step() {
                    self.runs_step()?;
                }
                Ok(logged)
            });
            self.busy_since.store(0, busy);
            let logged = match committed {
                Ok(logged) => logged,
                Err(err) => {
                    stop_unsure(&err);
                    return false;
                }
            };
            self.since_checkpoint += logged as u64;
            if signals.pause.is_none() && self.reopen.due(self.since_checkpoint) {
                let Some(reopened) = self.checkpointed(&mut queue, &mut signals) else {
                    return false;
                };
                self = reopened;
            }
        }
        match self.durability.sync() {
            Ok(_) => match self.watermark.advance(Seq(self.next_seq.0 - 1), true) {
                Ok(()) => true,
                Err(err) => {
                    let what = format!("the acknowledged watermark: {err}");
                    stop_unsure(&StoreError::Storage(Arc::new(std::io::Error::other(what))));
                    false
                }
            },
            Err(err) => {
                stop_unsure(&StoreError::Storage(Arc::new(err)));
                false
            }
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
    /// Applies a batch (answering each request), and returns the bytes it wrote towards
    /// `checkpoint_mb`: none for requests answered late or refused for a full disk (counted,
    /// senders retrying into a full disk made checkpoints come due, whose reopening of sled
    /// could fail there and stop the gateway).
    pub fn commit(&mut self, batch: Vec<Pending>) -> Result<usize, StoreError> {
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
                // Synced before it is answered and before anything after it: a key found
                // expired may be claimed again at once, and acknowledged from the journal
                // while a checkpoint has sled closed; an expiry lost to a crash would then
                // find the old claim again beside the new one.
                let expired = self.runs.expire(cutoff_ms).and_then(|dropped| {
                    if dropped > 0 {
                        let synced = self.durability.sync();
                        synced.map_err(|err| StoreError::Storage(Arc::new(err)))?;
                    }
                    Ok(dropped)
                });
                let failed = expired.as_ref().err().cloned();
                let _ = pending.reply.send(expired.map(Outcome::Expired));
                if let Some(err) = failed {
                    return Err(err);
                }
            }
        }
        let live = answer_late(batch);
        if live.is_empty() {
            return Ok(0);
        }

        let bytes: usize = live.iter().map(|p| p.work.bytes()).sum();
        let events = live.iter().any(|p| matches!(p.work, Work::Event(_)));
        if let Err(free) = self.durability.room_for(bytes as u64, events) {
            tracing::error!(free, batch = live.len(), "The disk is full; answering 503.");
            if events {
                let largest = live.iter().map(|p| p.work.bytes()).max().unwrap_or(0);
                self.disk_full.store(
                    (largest as u64).max(1),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            for pending in live {
                let _ = pending.reply.send(Err(StoreError::DiskFull { free }));
            }
            return Ok(0);
        }
        if events {
            self.disk_full
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
        let logged: usize = live.iter().map(|p| p.work.logged_bytes()).sum();
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
                self.record_watermark()?;
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
        Ok(logged)
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

    /// Moves the acknowledged watermark to every seq sled holds (synced). A failure is the
    /// store's, as any failed write or sync on its disk is: the events are durable, but a
    /// retried fsync may report success over pages the kernel dropped (a stale or zeroed
    /// watermark), so the committer stops rather than go on with it (it warned and went on).
    pub fn record_watermark(&mut self) -> Result<(), StoreError> {
        let durable = Seq(self.next_seq.0 - 1);
        self.watermark.advance(durable, false).map_err(|err| {
            let path = self.watermark.path().display().to_string();
            StoreError::Storage(Arc::new(std::io::Error::new(
                err.kind(),
                format!("the acknowledged watermark {path}: {err}"),
            )))
        })
    }
}

/// Milliseconds since the first call, on the monotonic clock (for [`Committer::busy_since`]).
pub fn busy_clock_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}
