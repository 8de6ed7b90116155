//! Step 3 of a checkpoint, and the journaling between the steps of step 4: the committer's side
//! while sled is closed (see the module's doc of `checkpoint/`).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::super::batch::{answer_late, take_batch, take_gathered, Signals, MAX_BATCH};
use super::super::committer::{answer, encode, Message, Outcome, Pending, Work};
use super::super::durable;
use super::super::journal::{Frame, Journal};
use super::super::runs::{Closed, Detached, Runs};
use super::ReopenFlags;
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::store::{Committed, StoreError};

/// What the committer journaled during a checkpoint, and what it held.
pub struct Journaled {
    /// The seq the next accepted event gets.
    pub next: Seq,
    /// The dedup keys journaled.
    pub claimed: HashMap<Vec<u8>, Seq>,
    /// What the journal holds that sled does not yet, oldest first.
    pub frames: VecDeque<Frame>,
    /// Requests that wait for sled.
    pub held: Vec<Pending>,
    /// How many events and frames were journaled, and the events' bytes.
    pub events: u64,
    pub bytes: u64,
    pub frames_written: u64,
    /// The longest a frame's write and fdatasync took.
    pub slowest_append: Duration,
}

impl Journaled {
    pub fn new(next: Seq) -> Journaled {
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
pub enum Dedup<'a> {
    /// sled is closed: the runs as they were, from memory and the runs' files.
    Closed(&'a Detached),
    /// sled is open again, and holds every claim but those journaled and not applied yet.
    Open(&'a Runs),
}

impl Dedup<'_> {
    pub fn lookup(&self, key: &[u8]) -> Result<Closed, StoreError> {
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
pub struct Bridge<'a> {
    pub journal: &'a mut Journal,
    pub dedup: Dedup<'a>,
    pub metrics: &'a Metrics,
    /// Announces each journaled batch (readers wait for sled meanwhile).
    pub last_seq: &'a watch::Sender<Seq>,
    pub data_dir: &'a Path,
    pub state: &'a mut Journaled,
}

impl Bridge<'_> {
    /// Takes batches until sled is open again, or a failure or the queue's end; they gather for
    /// `delay` under load, as the committer's do (each frame is synced). `Err`: the journal could
    /// not be written.
    pub fn run(
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
    pub fn take_waiting(
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
    pub fn take(
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
    pub fn commit(&mut self, batch: Vec<Pending>) -> Result<(), StoreError> {
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
    pub fn append(&mut self, frame: Frame) -> Result<(), StoreError> {
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
pub fn chunks(mut held: Vec<Pending>) -> Vec<Vec<Pending>> {
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
