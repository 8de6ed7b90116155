//! Taking a batch: the first request and those queued behind it, and under a paced load those
//! that come within `[store] commit_delay` more; the ones already late are answered at once.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::committer::{Message, Pending};
use super::compact::Pause;
use crate::store::StoreError;

/// Most requests in one batch, and most body bytes (at least one request is always taken).
pub const MAX_BATCH: usize = 1024;
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// What the queue held besides requests, kept until the committer acts on it.
#[derive(Default)]
pub struct Signals {
    pub closing: bool,
    /// A reader found the store corrupt: stop at once.
    pub fail: Option<String>,
    /// A compaction waits for the committer, between two batches.
    pub pause: Option<Pause>,
    /// sled was reopened for a checkpoint (`checkpoint/`).
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
    /// `first`, with room for what waits behind it: grown push by push, taking a batch spent 61
    /// of the committer's 2,256 samples in malloc and memcpy at 64 connections, 33 of 2,371 sized
    /// at once (`benches/profile.sh` on ab0f56a and 75a147a).
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
