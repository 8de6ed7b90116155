//! The embedded backend: sled under `data_dir`, written only by the committer thread.
//!
//! Trees: `events` (big-endian seq -> record), `dedup` ((provider, dedup id) -> first seq),
//! `meta` (the next seq, outputs' cursors and pause flags, sync cursors) and, per (output, seq),
//! `dead`, `replay` and `settled`. Every write goes through the committer ([`committer`]), which
//! applies a batch (events without a transaction, the next seq last; other writes in one) and
//! makes it durable ([`durable`]) before answering. Opening ([`open`]) checks the layout, cuts a
//! batch a crash tore ([`torn_batch`]) and starts the committer; after a retention pass a
//! compaction ([`compact`]) may copy the store to give disk back.
//! Reads ([`reader`]) run on tokio's blocking pool, and never look past the durable `last_seq`.

mod append;
mod batch;
mod bloom;
mod bounded_scan;
mod checkpoint;
mod claims;
mod committer;
mod compact;
mod dir_lock;
mod durable;
mod free_segments;
mod journal;
mod keys;
mod live;
mod mount;
mod old_copies;
mod open;
mod opener;
mod pack;
mod place;
mod reader;
pub mod record;
mod retention;
mod run_file;
mod runs;
mod slow_commit;
mod torn_batch;
mod watermark;

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Backend, Change, Committed, Cutoffs, DeadRecord, Mark, Marks, NewEvent, Output, OutputState,
    StoreError, StoredEvent, Swept, READ_BODY_BYTES,
};
use crate::config::StoreConfig;
use crate::event::Seq;
use crate::metrics::Metrics;

use bounded_scan::BoundedScan;
use committer::{Message, Outcome, Pending, Work};
use live::Live;
use old_copies::OldCopies;
use open::{open_db, segment_bytes};
use reader::{MarkMoves, Reader, ReadsSinceOpen, Stored};

const NEXT_SEQ_KEY: &[u8] = b"next_seq";
/// `meta` key of the layout version: 8, events in packs (`pack.rs`) of up to 24 KiB in a store
/// of 2 MiB segments, full ones sealed (compressed) in `events` and the open one in `meta`, the
/// recent dedup claims in a log (`claims.rs`), and batches of events written without a
/// transaction, which a crash may tear past the next seq (`torn_batch.rs`). Layout 7 was written
/// in transactions only, layout 6 kept the open pack in `events`, layout 5 had packs of 6 KiB at
/// most, and layout 4 no sealed packs: each is marked 8 at its first open (its packs stay where
/// they are, and are read as they are), so that an older hookgate refuses the store rather than
/// miss the open pack, fail on a pack it cannot read, or leave a torn batch uncut.
/// Layout 3 had one `dedup` entry per key; stores without the key are older still (one event
/// per value, read as they are).
const LAYOUT_KEY: &[u8] = b"layout";
const LAYOUT: &[u8] = &[8];
const LAYOUT_7: &[u8] = &[7];
const LAYOUT_6: &[u8] = &[6];
const LAYOUT_5: &[u8] = &[5];
const LAYOUT_4: &[u8] = &[4];
const LAYOUT_3: &[u8] = &[3];
/// `meta` key of the bytes of keys and values stored (`live.rs`).
const LIVE_KEY: &[u8] = b"live_bytes";
/// Requests waiting for the committer beyond this wait for room (bounded by their deadline).
const QUEUE_CAPACITY: usize = 8192;
/// Events a read for one provider looks at before it lets sled go and reads on.
const SCAN_STEP: usize = 4096;
/// How long a batch of writes may wait for the committer before failing.
const WRITE_DEADLINE: Duration = Duration::from_secs(30);

impl From<::sled::Error> for StoreError {
    fn from(err: ::sled::Error) -> Self {
        StoreError::Storage(Arc::new(err))
    }
}

/// The store's trees. Only the committer writes to them; anyone may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TreeId {
    /// seq -> event record.
    Events = 0,
    /// first new seq of a batch -> its dedup claims: the log of recent claims (`claims.rs`).
    Dedup = 1,
    /// Named values: the next seq, cursors, flags.
    Meta = 2,
    /// (output, seq) -> why the event is dead there.
    Dead = 3,
    /// (output, seq) -> (): events queued to be delivered again.
    Replay = 4,
    /// (output, seq) -> (): delivered out of order, past the output's cursor.
    Settled = 5,
    /// Sealed runs of older dedup keys (see `runs/`).
    Runs = 6,
}

const TREE_NAMES: [&str; 7] = [
    "events",
    "dedup",
    "meta",
    "dead",
    "replay",
    "settled",
    "dedup_runs",
];

impl TreeId {
    fn of(mark: Mark) -> TreeId {
        match mark {
            Mark::Dead => TreeId::Dead,
            Mark::Replay => TreeId::Replay,
            Mark::Settled => TreeId::Settled,
        }
    }
}

/// One write applied by the committer, in the same transaction and sync as the events around it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    Put(TreeId, Vec<u8>, Vec<u8>),
    Delete(TreeId, Vec<u8>),
    /// Puts a seq under a key unless the seq stored there is higher (cursors never move back).
    Raise(TreeId, Vec<u8>, Seq),
    /// Replaces (`Some`) or removes (`None`) a value, only if it is still `expected`: the
    /// sweeper's change of a pack the committer may have appended to since it was read.
    Swap(TreeId, Vec<u8>, Vec<u8>, Option<Vec<u8>>),
}

impl Write {
    fn len(&self) -> usize {
        match self {
            Write::Put(_, key, value) => key.len() + value.len(),
            Write::Delete(_, key) | Write::Raise(_, key, _) => key.len() + 8,
            Write::Swap(_, key, _, new) => key.len() + new.as_ref().map_or(8, Vec::len),
        }
    }

    /// What it counts towards `checkpoint_mb` (how much a start after a crash replays): its
    /// bytes, and for the removal of a value it was read with, that value's, as sled rewrites
    /// the nodes around it (a retention sweep removes gigabytes; counted as 8 bytes each, 3.5 GB
    /// of removed packs went without a checkpoint and took 3.6 s to replay).
    fn logged_len(&self) -> usize {
        match self {
            Write::Swap(_, key, expected, None) => key.len() + expected.len(),
            other => other.len(),
        }
    }

    /// Whether the write changes the `events` entry of the pack whose first seq is `first`.
    fn touches_pack(&self, first: Seq) -> bool {
        let (tree, key) = match self {
            Write::Put(tree, key, _)
            | Write::Delete(tree, key)
            | Write::Raise(tree, key, _)
            | Write::Swap(tree, key, ..) => (tree, key),
        };
        *tree == TreeId::Events && key[..] == pack::key(first)
    }
}

/// sled's trees, opened once, indexed by `TreeId`.
#[derive(Clone)]
struct Trees {
    all: Vec<::sled::Tree>,
}

impl Trees {
    fn open(db: &::sled::Db) -> Result<Trees, StoreError> {
        let all = TREE_NAMES
            .iter()
            .map(|name| db.open_tree(name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Trees { all })
    }

    fn get(&self, id: TreeId) -> &::sled::Tree {
        &self.all[id as usize]
    }
}

/// sled's handles as readers share them. The committer takes them away while it reopens sled
/// (`checkpoint/`): a read holds the lock for as long as it runs, so none holds sled open.
type Handles = Arc<RwLock<Option<(Trees, ::sled::Db)>>>;

/// The sled backend.
pub struct SledStore {
    /// `data_dir`: sled's files are in it, or in the `sled.<n>` it names (`place.rs`).
    dir: std::path::PathBuf,
    config: StoreConfig,
    metrics: Arc<Metrics>,
    /// The bytes of keys and values stored, as the committer counts them.
    live: Live,
    /// Set while a compaction runs; see `compact/`.
    compacting: Arc<AtomicBool>,
    /// The size of the last copy over the bytes it held (`f64` bits): a copy of the store now
    /// would take about this times what it holds.
    copy_ratio: std::sync::atomic::AtomicU64,
    /// Holds compactions off for a while after one failed.
    compact_backoff: compact::Backoff,
    /// Removes what compactions, or interrupted ones, left; no compaction begins until that is
    /// done, as its copy may take the name of one being removed.
    old_copies: Arc<OldCopies>,
    handles: Handles,
    last_seq: watch::Receiver<Seq>,
    queue: mpsc::Sender<Message>,
    committer: Mutex<Option<JoinHandle<bool>>>,
    /// Fires when the committer thread ends, whether closed, failed or panicked.
    committer_ended: Mutex<Option<oneshot::Receiver<()>>>,
    /// Where the sweeper resumes.
    sweep: tokio::sync::Mutex<retention::Resume>,
    /// The most bytes of one value (`pack::max_value` of sled's segments at open).
    max_value: usize,
    /// What readers read since sled was opened (`[store] checkpoint_read_mb`).
    reads: Arc<ReadsSinceOpen>,
    /// The committer's transactions that may move marks, for readers of marks.
    mark_moves: Arc<MarkMoves>,
    /// The bytes of the largest event of the last batch, if a full disk refused it (0: it did
    /// not).
    disk_full: Arc<std::sync::atomic::AtomicU64>,
    /// When the committer's batch under way began (`committer::busy_clock_ms`; 0: none is).
    busy_since: Arc<std::sync::atomic::AtomicU64>,
}

impl SledStore {
    async fn submit(&self, work: Work, deadline: Duration) -> Result<Outcome, StoreError> {
        let submitted = Instant::now();
        let deadline_at = submitted + deadline;
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            work,
            deadline: deadline_at,
            submitted,
            reply,
        };
        let wait = async {
            self.queue
                .send(Message::Commit(pending))
                .await
                .map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        };
        match tokio::time::timeout_at(deadline_at.into(), wait).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::DeadlineExceeded),
        }
    }

    /// Applies `writes` atomically and durably (in the committer's next group commit).
    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        check_sizes(&writes, self.max_value)?;
        self.submit(Work::Writes(writes), WRITE_DEADLINE)
            .await
            .map(|_| ())
    }

    /// Drops the dedup keys (recent claims and sealed runs) older than `cutoff_ms`; returns how
    /// many went.
    async fn expire_dedup(&self, cutoff_ms: u64) -> Result<u64, StoreError> {
        match self
            .submit(Work::ExpireDedup(cutoff_ms), WRITE_DEADLINE)
            .await?
        {
            Outcome::Expired(keys) => Ok(keys),
            _ => Err(StoreError::Corrupt(
                "a run expiry answered otherwise".into(),
            )),
        }
    }

    /// Runs a read on tokio's blocking pool. A read that finds the store corrupt (a record or
    /// a sled page that does not check out) stops the committer: hookgate then exits, loudly,
    /// rather than go on serving a store that lost acknowledged events.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Reader) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (handles, last_seq) = (self.handles.clone(), self.last_seq.clone());
        let (reads, mark_moves) = (self.reads.clone(), self.mark_moves.clone());
        let result = tokio::task::spawn_blocking(move || {
            let held = handles.read().unwrap_or_else(PoisonError::into_inner);
            let (trees, db) = held.as_ref().ok_or(StoreError::Closed)?;
            read(&Reader {
                trees: trees.clone(),
                db: db.clone(),
                last_seq,
                reads,
                mark_moves,
            })
        })
        .await
        .map_err(|err| StoreError::Corrupt(format!("a store read panicked: {err}")))?;
        let corrupt = match &result {
            Err(StoreError::Corrupt(_)) => true,
            Err(StoreError::Storage(err)) => matches!(
                err.downcast_ref::<::sled::Error>(),
                Some(::sled::Error::Corruption { .. })
            ),
            _ => false,
        };
        if let (true, Err(err)) = (corrupt, &result) {
            let reason = format!("the store at {} is corrupt: {err}", self.dir.display());
            let _ = self.queue.send(Message::Fail(reason)).await;
        }
        // Without waiting for room in the queue: a full one asks again at the next read.
        if self.reads.should_ask(self.config.checkpoint_read_bytes)
            && self.queue.try_send(Message::Checkpoint).is_err()
        {
            self.reads.unask();
        }
        result
    }
}

#[async_trait]
impl Backend for SledStore {
    async fn commit(&self, event: NewEvent, deadline: Duration) -> Result<Committed, StoreError> {
        // Only a polled item can be this large (`max_page_bytes` goes to 1 GiB): it panicked
        // the committer, and the poller fetched the same page after every restart.
        let over = committer::record_bound(&event).saturating_sub(pack::LARGEST_RECORD);
        if over > 0 {
            return Err(StoreError::TooLarge {
                bytes: event.body.len(),
                max: event.body.len() - over,
            });
        }
        match self.submit(Work::Event(event), deadline).await? {
            Outcome::Event(committed) => Ok(committed),
            Outcome::Written | Outcome::Expired(_) => Err(StoreError::Corrupt(
                "an event commit answered as writes".into(),
            )),
        }
    }

    fn last_seq(&self) -> watch::Receiver<Seq> {
        self.last_seq.clone()
    }

    async fn events_after(
        &self,
        after: Seq,
        limit: usize,
        provider: Option<String>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        // A step at a time, each a read of its own: a scan for a provider past many events of
        // others never holds sled long (a checkpoint waits for the reads in progress, and
        // every commit for the checkpoint).
        let (mut events, mut bytes) = (Vec::new(), 0);
        let mut after = after;
        loop {
            let provider = provider.clone();
            let want = limit - events.len();
            let room = READ_BODY_BYTES - bytes;
            let (found, stopped) = self
                .read(move |r| r.events_after(after, want, room, provider.as_deref(), SCAN_STEP))
                .await?;
            bytes += crate::store::body_bytes(&found);
            events.extend(found);
            match stopped {
                Some(seq) if events.len() < limit && bytes < READ_BODY_BYTES => after = seq,
                _ => return Ok(events),
            }
        }
    }

    async fn event(&self, seq: Seq) -> Result<Option<StoredEvent>, StoreError> {
        self.read(move |r| r.event(seq)).await
    }

    async fn output(&self, output: &str) -> Result<OutputState, StoreError> {
        let output = output.to_string();
        self.read(move |r| {
            Ok(OutputState {
                cursor: r.cursor(&output)?,
                paused: r
                    .tree(TreeId::Meta)
                    .contains_key(keys::paused_key(&output))?,
            })
        })
        .await
    }

    async fn change(&self, output: &str, changes: Vec<Change>) -> Result<(), StoreError> {
        let writes = changes
            .into_iter()
            .map(|change| keys::write_of(output, change))
            .collect();
        self.write(writes).await
    }

    async fn marked(
        &self,
        output: &str,
        mark: Mark,
        range: RangeInclusive<Seq>,
        limit: usize,
    ) -> Result<Vec<(Seq, Option<DeadRecord>)>, StoreError> {
        let (from, to) = (
            keys::output_seq_key(output, *range.start()),
            keys::output_seq_key(output, *range.end()),
        );
        self.read(move |r| {
            let mut marked = Vec::new();
            for item in r.tree(TreeId::of(mark)).range(from..=to) {
                if marked.len() >= limit {
                    break;
                }
                let (key, value) = item?;
                let seq =
                    keys::seq_of(&key).ok_or_else(|| StoreError::Corrupt("mark key".into()))?;
                let dead = (mark == Mark::Dead)
                    .then(|| DeadRecord::decode(&value).unwrap_or_else(DeadRecord::unreadable));
                marked.push((seq, dead));
            }
            Ok(marked)
        })
        .await
    }

    /// Counted in reads of 10,000 marks each, through [`BoundedScan`]: in one read,
    /// hundreds of thousands of dead marks held sled's handles (a checkpoint due meanwhile held
    /// every commit behind it) and pulled the whole tree into sled's cache.
    async fn count_marked(&self, output: &str, mark: Mark) -> Result<u64, StoreError> {
        const COUNT_STEP: usize = 10_000;
        let mut from = keys::output_seq_key(output, Seq(0));
        let end = keys::output_seq_key(output, Seq(u64::MAX));
        let mut count = 0;
        loop {
            let (start, end) = (from.clone(), end.clone());
            let (counted, last) = self
                .read(move |r| {
                    let tree = r.tree(TreeId::of(mark));
                    let (mut counted, mut last) = (0, None);
                    for item in BoundedScan::new(tree, start..=end).take(COUNT_STEP) {
                        last = Some(item?.0);
                        counted += 1;
                    }
                    Ok((counted, last))
                })
                .await?;
            count += counted as u64;
            match last {
                Some(last) if counted == COUNT_STEP => from = [last.as_ref(), &[0]].concat(),
                _ => return Ok(count),
            }
        }
    }

    async fn marks(&self, output: &str, seq: Seq) -> Result<Marks, StoreError> {
        let output = output.to_string();
        self.read(move |r| r.marks(&output, seq)).await
    }

    async fn sync_cursor(&self, provider: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = keys::sync_cursor_key(provider);
        self.read(move |r| Ok(r.tree(TreeId::Meta).get(key)?.map(|v| v.to_vec())))
            .await
    }

    fn largest_sync_cursor(&self) -> usize {
        self.max_value
    }

    async fn set_sync_cursor(&self, provider: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let key = keys::sync_cursor_key(provider);
        self.write(vec![Write::Put(TreeId::Meta, key, value)]).await
    }

    async fn sweep(
        &self,
        cutoffs: Cutoffs,
        outputs: Arc<Vec<Output>>,
    ) -> Result<Swept, StoreError> {
        let mut resume = self.sweep.lock().await;
        let mut swept = retention::sweep(self, &mut resume, cutoffs, outputs).await?;
        // Once a pass is through the events (the next starts from the oldest again).
        if resume.events_done() {
            swept.disk_freed = self.compact_if_worth_it().await?;
        }
        Ok(swept)
    }

    async fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.read(|r| Ok(r.db.size_on_disk()?)).await
    }

    fn is_open(&self) -> bool {
        !self.queue.is_closed()
    }

    /// One gateway owns a sled store (sled locks its directory): every lease is its own.
    async fn hold_lease(&self, _name: &str, _holder: &str) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn renew_lease(&self, _name: &str, _holder: &str) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn release_lease(&self, _name: &str, _holder: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn lease_time(&self) -> Option<Duration> {
        None
    }

    async fn ping(&self, within: Duration) -> Result<(), StoreError> {
        match self.submit(Work::Writes(Vec::new()), within).await {
            Ok(_) | Err(StoreError::DiskFull { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Not while a full disk refuses events (until there is room for the largest one refused:
    /// waiting for one to be taken, a balancer sending none never saw it ready again), nor while
    /// a batch has been under way for longer than `within` plus the default ack deadline (a
    /// committer stuck in an fsync). Asks nothing of the committer: a probe that went through
    /// it cost an fsync, and said "not ready" whenever a commit took a second.
    async fn ready(&self, within: Duration) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let refused = self.disk_full.load(Relaxed);
        if refused > 0 {
            if durable::room_for(&self.dir, refused, true).is_err() {
                return false;
            }
            let _ = self
                .disk_full
                .compare_exchange(refused, 0, Relaxed, Relaxed);
        }
        let stuck_after = within + Duration::from_secs(4);
        let busy_since = self.busy_since.load(Relaxed);
        busy_since == 0
            || committer::busy_clock_ms().saturating_sub(busy_since)
                < u64::try_from(stuck_after.as_millis()).unwrap_or(u64::MAX)
    }

    async fn failed(&self) {
        let receiver = self.committer_ended.lock().ok().and_then(|mut r| r.take());
        match receiver {
            Some(receiver) => {
                let _ = receiver.await;
            }
            None => std::future::pending().await,
        }
    }

    async fn close(&self) -> bool {
        // What is left of old copies goes at the next open.
        let old_copies = self.old_copies.clone();
        let _ = tokio::task::spawn_blocking(move || old_copies.stop()).await;
        let handle = self.committer.lock().ok().and_then(|mut h| h.take());
        // Closed before: that close said how it ended.
        let Some(handle) = handle else { return true };
        let _ = self.queue.send(Message::Close).await;
        match tokio::task::spawn_blocking(move || handle.join()).await {
            Ok(Ok(true)) => {
                tracing::info!("Store closed and synced.");
                true
            }
            // Logged by the committer.
            Ok(Ok(false)) => false,
            _ => {
                tracing::error!("The committer thread panicked.");
                false
            }
        }
    }
}

/// The error of a value of sled's log under `dir` that does not parse: `what` it is, and why.
fn unreadable(dir: &Path, what: &str, err: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "{} holds {what} that cannot be read ({err}): restore the data dir from a backup",
        dir.join("db").display()
    ))
}

/// Refuses writes whose keys or values could make sled write a blob file: values over
/// `max_value` bytes (see `pack.rs`).
fn check_sizes(writes: &[Write], max_value: usize) -> Result<(), StoreError> {
    for write in writes {
        let (key, value) = match write {
            Write::Put(_, key, value) | Write::Swap(_, key, _, Some(value)) => {
                (key.len(), value.len())
            }
            Write::Delete(_, key) | Write::Raise(_, key, _) | Write::Swap(_, key, _, None) => {
                (key.len(), 8)
            }
        };
        if key > pack::MAX_KEY || value > max_value {
            return Err(StoreError::Corrupt(format!(
                "a write of a {key}-byte key and a {value}-byte value is over the store's bounds"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
