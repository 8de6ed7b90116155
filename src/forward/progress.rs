//! A destination's durable progress, kept by one writer task. The dispatcher reports what it
//! scanned and dispatched; delivery tasks report what they finished and wait until that is
//! durable. The writer batches reports into one store write (one group commit), keeping:
//!
//! - the cursor: every seq at or below it is delivered, dead, or not for this destination;
//! - `settled` entries for events delivered out of order above the cursor (unordered mode);
//! - `dead` records, and the removal of `replay` entries once replayed.

use std::collections::BTreeSet;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::event::Seq;
use crate::store::{Change, DeadRecord, Mark, Store};

/// How a dispatched event ended.
#[derive(Debug, Clone)]
pub enum Done {
    Delivered,
    Dead(DeadRecord),
}

pub enum Report {
    /// Every event at or below this seq was dispatched or skipped.
    Scanned(Seq),
    /// This event was handed to a delivery task.
    Dispatched(Seq),
    /// This event was found already delivered (a `settled` entry from before a restart).
    AlreadySettled(Seq),
    /// A delivery ended; `durable` is answered once that is on disk, with whether the event
    /// ended dead.
    Finished {
        seq: Seq,
        done: Done,
        replay: bool,
        durable: oneshot::Sender<bool>,
    },
}

/// The writer's handle.
#[derive(Clone)]
pub struct Progress {
    reports: mpsc::UnboundedSender<Report>,
    /// The oldest event in flight, as the writer last counted (`None`: none).
    oldest: watch::Receiver<Option<Seq>>,
}

impl Progress {
    /// Starts the writer for `destination`, whose durable cursor is `cursor`, watched by `died`,
    /// for the delivery term that `stop` ends. The receiver answers once the writer has ended
    /// (every handle dropped, its last write done or given up): a term waits for it before it
    /// gives the lease up, or another gateway could take it while a write of this one's was
    /// still on its way.
    pub fn spawn(
        store: Store,
        destination: String,
        cursor: Seq,
        died: &crate::supervise::Died,
        (stop, lost): (CancellationToken, CancellationToken),
    ) -> (Progress, oneshot::Receiver<()>) {
        let (ended, writer_ended) = oneshot::channel();
        let name = format!("progress {destination}");
        let (reports, receiver) = mpsc::unbounded_channel();
        let (oldest_sender, oldest) = watch::channel(None);
        let writer = Writer {
            store,
            destination,
            cursor,
            oldest: oldest_sender,
            scanned: cursor,
            in_flight: BTreeSet::new(),
            settled_above: BTreeSet::new(),
            replayed: BTreeSet::new(),
            replay_died: BTreeSet::new(),
            stop,
            lost,
            _ended: ended,
        };
        died.spawn_watched(name, writer.run(receiver));
        (Progress { reports, oldest }, writer_ended)
    }

    /// The oldest event in flight (dispatched, not finished), which changes as deliveries end.
    pub fn oldest_in_flight(&self) -> watch::Receiver<Option<Seq>> {
        self.oldest.clone()
    }

    pub fn scanned(&self, seq: Seq) {
        let _ = self.reports.send(Report::Scanned(seq));
    }

    pub fn dispatched(&self, seq: Seq) {
        let _ = self.reports.send(Report::Dispatched(seq));
    }

    pub fn already_settled(&self, seq: Seq) {
        let _ = self.reports.send(Report::AlreadySettled(seq));
    }

    /// Reports a finished delivery and waits until it is durable: whether the event ended dead
    /// (a first delivery that died after a replay delivered the event ends delivered). `None`:
    /// the writer is gone (shutting down); the event will be delivered again after a restart.
    pub async fn finished(&self, seq: Seq, done: Done, replay: bool) -> Option<bool> {
        let (durable, wait) = oneshot::channel();
        let report = Report::Finished {
            seq,
            done,
            replay,
            durable,
        };
        self.reports.send(report).ok()?;
        wait.await.ok()
    }
}

struct Writer {
    store: Store,
    destination: String,
    cursor: Seq,
    /// `in_flight`'s first, for the dispatcher.
    oldest: watch::Sender<Option<Seq>>,
    scanned: Seq,
    in_flight: BTreeSet<Seq>,
    /// Delivered above the cursor, recorded in `settled`.
    settled_above: BTreeSet<Seq>,
    /// In flight, and delivered meanwhile by a replay.
    replayed: BTreeSet<Seq>,
    /// In flight, and recorded dead meanwhile by a replay that failed.
    replay_died: BTreeSet<Seq>,
    /// The end of the delivery term (the lease lost, a reload, shutdown).
    stop: CancellationToken,
    /// The term ended because the lease was lost ([`crate::lease::Term::lost`]).
    lost: CancellationToken,
    /// Dropped when the writer ends (see [`Progress::spawn`]).
    _ended: oneshot::Sender<()>,
}

impl Writer {
    async fn run(mut self, mut reports: mpsc::UnboundedReceiver<Report>) {
        while let Some(first) = reports.recv().await {
            let mut batch = vec![first];
            while let Ok(report) = reports.try_recv() {
                batch.push(report);
            }
            let mut waiting = Vec::new();
            let mut changes = Vec::new();
            for report in batch {
                match report {
                    Report::Scanned(seq) => self.scanned = self.scanned.max(seq),
                    Report::Dispatched(seq) => {
                        self.in_flight.insert(seq);
                        self.scanned = self.scanned.max(seq);
                    }
                    Report::AlreadySettled(seq) => {
                        self.settled_above.insert(seq);
                        self.scanned = self.scanned.max(seq);
                    }
                    Report::Finished {
                        seq,
                        done,
                        replay,
                        durable,
                    } => {
                        let (finished, dead) = self.finish(seq, done, replay);
                        changes.extend(finished);
                        waiting.push((durable, dead));
                    }
                }
            }
            changes.extend(self.advance());
            if !changes.is_empty() {
                loop {
                    // Once the lease is lost, another gateway may deliver the destination: a
                    // write then, or one retried until the store came back, landed on top of
                    // its progress (a dead record for an event it had delivered since). What
                    // was not written is sent again by whoever delivers next. A term ended by a
                    // reload or a stop still holds the lease until this writer has ended.
                    if self.lost.is_cancelled() {
                        tracing::warn!(destination = %self.destination, "The lease was lost before this progress was recorded: whoever delivers next sends those events again.");
                        return;
                    }
                    // A change is several writes on JetStream: one under way when the lease is lost
                    // stops between two, as a crash would (their order is safe across one).
                    let changed = tokio::select! {
                        changed = self.store.change(&self.destination, changes.clone()) => changed,
                        () = self.lost.cancelled() => continue,
                    };
                    let Err(err) = changed else {
                        break;
                    };
                    if !self.store.is_open() || self.stop.is_cancelled() {
                        tracing::warn!(destination = %self.destination, error = %err, "Cannot record delivery progress, and the delivery term has ended: whoever delivers next sends those events again.");
                        return;
                    }
                    tracing::error!(destination = %self.destination, error = %err, "Cannot record delivery progress; retrying.");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        () = self.stop.cancelled() => {}
                    }
                }
            }
            let first = self.in_flight.first().copied();
            self.oldest
                .send_if_modified(|oldest| std::mem::replace(oldest, first) != first);
            for (durable, dead) in waiting {
                let _ = durable.send(dead);
            }
        }
    }

    /// The changes a finished delivery makes, and whether the event ended dead.
    fn finish(&mut self, seq: Seq, mut done: Done, replay: bool) -> (Vec<Change>, bool) {
        let mut changes = Vec::new();
        if replay {
            changes.push(Change::Unmark(Mark::Replay, seq));
            if matches!(done, Done::Delivered) {
                // Queued while its first delivery was still being retried, which then died:
                // delivered now, it is not dead.
                changes.push(Change::Unmark(Mark::Dead, seq));
                if self.in_flight.contains(&seq) {
                    self.replayed.insert(seq);
                }
                if seq > self.cursor {
                    // Ahead of the cursor (replayed before the scan reached it, or while its
                    // first delivery is still in flight, which a stop may cut short): the scan
                    // passes it over, as it does what it delivered itself.
                    changes.push(Change::Mark(Mark::Settled, seq));
                    self.settled_above.insert(seq);
                }
            } else if self.in_flight.contains(&seq) {
                self.replay_died.insert(seq);
            }
        } else {
            self.in_flight.remove(&seq);
            // Delivered by a replay while this first delivery was still being retried: however
            // this one ended, the event is delivered, not dead.
            if self.replayed.remove(&seq) {
                done = Done::Delivered;
            }
            // Recorded dead by a replay that failed meanwhile: delivered now, it is not dead.
            if self.replay_died.remove(&seq) && matches!(done, Done::Delivered) {
                changes.push(Change::Unmark(Mark::Dead, seq));
            }
        }
        // A replay that died while the first delivery is still being retried is not given up
        // on yet (counted, it stayed counted when that delivery then succeeded): the first's
        // own end says.
        let dead = matches!(done, Done::Dead(_)) && !(replay && self.in_flight.contains(&seq));
        match done {
            Done::Dead(record) => changes.push(Change::Dead(seq, record)),
            Done::Delivered if !replay && seq > self.cursor => {
                changes.push(Change::Mark(Mark::Settled, seq));
                self.settled_above.insert(seq);
            }
            Done::Delivered => {}
        }
        (changes, dead)
    }

    /// Moves the cursor to just below the oldest event in flight (or to what was scanned), and
    /// drops the `settled` marks it now covers.
    fn advance(&mut self) -> Vec<Change> {
        let target = match self.in_flight.first() {
            Some(oldest) => Seq(oldest.0 - 1),
            None => self.scanned,
        };
        if target <= self.cursor {
            return Vec::new();
        }
        self.cursor = target;
        let covered: Vec<Seq> = self.settled_above.range(..=target).copied().collect();
        let mut changes: Vec<Change> = covered
            .iter()
            .map(|seq| {
                self.settled_above.remove(seq);
                Change::Unmark(Mark::Settled, *seq)
            })
            .collect();
        changes.push(Change::Cursor(target));
        changes
    }
}
