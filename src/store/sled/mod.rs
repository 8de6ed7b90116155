//! The embedded backend: sled under `data_dir`, written only by the committer thread.
//!
//! Trees: `events` (big-endian seq -> record), `dedup` ((provider, dedup id) -> first seq),
//! `meta` (the next seq, outputs' cursors and pause flags, sync cursors) and, per (output, seq),
//! `dead`, `replay` and `settled`. Every write goes through the committer ([`committer`]), which
//! applies a batch (events without a transaction, the next seq last; other writes in one) and
//! makes it durable ([`durable`]) before answering; the open cuts a batch a crash tore
//! ([`torn_batch`]).
//! Reads ([`reader`]) run on tokio's blocking pool, and never look past the durable `last_seq`.

mod append;
mod bloom;
mod checkpoint;
mod claims;
mod committer;
mod compact;
mod durable;
mod free_segments;
mod journal;
mod keys;
mod live;
mod mount;
mod old_copies;
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Backend, Change, Checkpointed, Committed, Cutoffs, DeadRecord, Mark, Marks, NewEvent, Output,
    OutputState, StoreError, StoredEvent, Swept,
};
use crate::config::StoreConfig;
use crate::event::Seq;
use crate::metrics::Metrics;

use committer::{Committer, Message, Outcome, Pending, Work};
use durable::Durability;
use live::Live;
use old_copies::OldCopies;
use pack::Pack;
use reader::{MarkMoves, Reader, ReadsSinceOpen, Stored};

const NEXT_SEQ_KEY: &[u8] = b"next_seq";
/// `meta` key of the layout version: 7, events in packs (`pack.rs`) of up to 24 KiB in a store
/// of 2 MiB segments, full ones sealed (compressed) in `events` and the open one in `meta`, and
/// the recent dedup claims in a log (`claims.rs`). Layout 6 kept the open pack in `events`,
/// layout 5 had packs of 6 KiB at most, and layout 4 no sealed packs: each is marked 7 at its
/// first open (its packs stay where they are, and are read as they are), so that an older
/// hookgate refuses the store rather than miss the open pack or fail on a pack it cannot read.
/// Layout 3 had one `dedup` entry per key; stores without the key are older still (one event
/// per value, read as they are).
const LAYOUT_KEY: &[u8] = b"layout";
const LAYOUT: &[u8] = &[8];
const LAYOUT_7: &[u8] = &[7];
const LAYOUT_6: &[u8] = &[6];
const LAYOUT_5: &[u8] = &[5];
const LAYOUT_4: &[u8] = &[4];
const LAYOUT_3: &[u8] = &[3];
/// What a compaction's copy is expected to take over the bytes it holds, until one was measured
/// (`compact.rs`: 1.45-1.5 in sled's own measurements).
const FIRST_COPY_RATIO: f64 = 1.5;
/// `meta` key of the bytes of keys and values stored (`live.rs`).
const LIVE_KEY: &[u8] = b"live_bytes";
/// Requests waiting for the committer beyond this wait for room (bounded by their deadline).
const QUEUE_CAPACITY: usize = 8192;
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
/// (`checkpoint.rs`): a read holds the lock for as long as it runs, so none holds sled open.
type Handles = Arc<RwLock<Option<(Trees, ::sled::Db)>>>;

/// The sled backend.
pub struct SledStore {
    /// `data_dir`: sled's files are in it, or in the `sled.<n>` it names (`place.rs`).
    dir: std::path::PathBuf,
    config: StoreConfig,
    metrics: Arc<Metrics>,
    /// The bytes of keys and values stored, as the committer counts them.
    live: Live,
    /// Set while a compaction runs; see `compact.rs`.
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
    committer: Mutex<Option<JoinHandle<()>>>,
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
}

/// Sends its notice when dropped: at the end of the committer thread, even by a panic.
struct EndNotice(Option<oneshot::Sender<()>>);

impl Drop for EndNotice {
    fn drop(&mut self) {
        if let Some(notice) = self.0.take() {
            let _ = notice.send(());
        }
    }
}

/// The size of sled's log segments in a store hookgate creates. sled's first write after an open
/// deactivates every segment in one pass that counts all of them for each one (quadratic in
/// their number: 3.5-3.8 s at 10 M events in 34,000 segments of sled's default 512 KiB), holding
/// the lock that a write rolling into a new segment needs (`benches/sled_layouts/FINDINGS.md`,
/// section 7); an open also reads every segment's header. Four times larger segments make that
/// pass 16 times shorter.
const SEGMENT_BYTES: usize = 2 << 20;

/// The segment size of the sled store in `dir`: the one its `conf` file records (sled refuses to
/// open a store with another), or [`SEGMENT_BYTES`] for a new store. A compaction's copy is a
/// new store, so an older store moves to the current size at its next compaction.
fn segment_bytes(dir: &Path) -> usize {
    std::fs::read(dir.join("conf"))
        .ok()
        .and_then(|conf| recorded_segment_bytes(&conf))
        .unwrap_or(SEGMENT_BYTES)
}

/// The `segment_size: N` line of sled's `conf` (text lines, then a 4-byte checksum).
fn recorded_segment_bytes(conf: &[u8]) -> Option<usize> {
    conf.split(|&byte| byte == b'\n').find_map(|line| {
        let value = line.strip_prefix(b"segment_size: ")?;
        std::str::from_utf8(value).ok()?.trim().parse().ok()
    })
}

/// Opens sled under `dir`. The previous handle of this process (a closed store, or the
/// checkpoint's) may take a while to let go of `db`'s lock after its last drop, while sled's
/// io threads finish the pass that the first write after an open starts (see
/// [`SEGMENT_BYTES`]), and a stop right after a start waits for it. A lock held elsewhere is
/// retried for ten seconds.
fn open_db(dir: &Path, config: &StoreConfig) -> Result<::sled::Db, ::sled::Error> {
    open_db_waiting(dir, config).map(|(db, _)| db)
}

/// [`open_db`], and how long it waited for the lock.
fn open_db_waiting(
    dir: &Path,
    config: &StoreConfig,
) -> Result<(::sled::Db, Duration), ::sled::Error> {
    let sled = ::sled::Config::new()
        .path(dir)
        .segment_size(segment_bytes(dir))
        .cache_capacity(config.cache_bytes)
        // The committer flushes (and fsyncs) itself; a background flush would only compete.
        .flush_every_ms(None);
    let mut tries = 0;
    let started = Instant::now();
    loop {
        match sled.open() {
            // sled reports it as an `Other` error with this text (config.rs:599).
            Err(::sled::Error::Io(err))
                if err.to_string().contains("could not acquire lock") && tries < 200 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            opened => {
                let waited = if tries > 0 {
                    started.elapsed()
                } else {
                    Duration::ZERO
                };
                return opened.map(|db| (db, waited));
            }
        }
    }
}

impl SledStore {
    /// sled writes a snapshot of its page table only when it opens a store, and replays its log
    /// since the last one at every open: opening and closing a closed store once moves that
    /// replay from the next start to now.
    pub fn checkpoint(dir: &Path, config: &StoreConfig) -> Result<Checkpointed, StoreError> {
        let started = Instant::now();
        let (db, lock_wait) = open_db_waiting(&place::live_dir(dir)?, config)?;
        db.flush()?;
        drop(db);
        Ok(Checkpointed {
            took: started.elapsed(),
            lock_wait,
        })
    }

    /// Opens (or creates) the store under `dir` and starts its committer.
    pub fn open(
        dir: &Path,
        config: &StoreConfig,
        metrics: Arc<Metrics>,
    ) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir)?;
        mount::warn_if_online_discard(dir);
        let started = Instant::now();
        let sled_dir = place::live_dir(dir)?;
        let old_copies = Arc::new(OldCopies::default());
        old_copies.remove(dir, &sled_dir, |_| ())?;
        let db = open_db(&sled_dir, config)?;
        let sled_opened = started.elapsed();
        let free_segments = free_segments::observe(&sled_dir, &metrics);
        // Fixed for this process: a compaction's copy may have larger segments, never smaller.
        let max_value = pack::max_value(segment_bytes(&sled_dir));
        let trees = Trees::open(&db)?;
        let legacy = check_layout(&trees, &sled_dir)?;
        if !legacy {
            // A store of layout 3 or older was written in transactions only.
            let next = stored_next_seq(&trees)?.unwrap_or(Seq(1));
            torn_batch::cut(&trees, next, max_value, &sled_dir)?;
        }
        let next_seq = next_seq(&trees)?;
        let live = Live::new(live_bytes(&trees, next_seq)?);
        let watermark = watermark::Watermark::open(dir)?;
        if watermark.acked() >= next_seq {
            return Err(StoreError::Corrupt(format!(
                "{} holds events up to seq {}, but seq {} was acknowledged (says {}): the log \
                 was damaged (truncated or corrupted). Restore the data dir from a backup, or \
                 move it aside to start empty",
                sled_dir.join("db").display(),
                next_seq.0 - 1,
                watermark.acked(),
                watermark.path().display()
            )));
        }
        let mut durability = Durability::new(db.clone(), &sled_dir)?;
        durability
            .sync()
            .map_err(|err| StoreError::Storage(Arc::new(err)))?;

        let (journal, journaled) = journal::Journal::open(dir)?;
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let (last_seq_sender, last_seq) = watch::channel(Seq(next_seq.0 - 1));
        let checked = started.elapsed();
        let runs = runs::Runs::open(
            trees.get(TreeId::Dedup).clone(),
            trees.get(TreeId::Runs).clone(),
            trees.get(TreeId::Meta).clone(),
            runs::run_keys(config.dedup_run_keys),
            legacy.then_some((LAYOUT_KEY, LAYOUT)),
            run_file::dir(dir),
        )?;
        let recent_claims = runs.recent_claims();
        let handles: Handles = Arc::new(RwLock::new(Some((trees.clone(), db))));
        let compacting = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(ReadsSinceOpen::new(config.recent_read_seqs));
        let mark_moves = Arc::new(MarkMoves::default());
        let open = open_pack(&trees, max_value, &sled_dir)?;
        let mut committer = Committer {
            trees,
            durability,
            next_seq,
            metrics: metrics.clone(),
            last_seq: last_seq_sender,
            open,
            pack_bytes: max_value,
            watermark,
            runs,
            handles: handles.clone(),
            reopen: checkpoint::Reopen {
                dir: sled_dir.clone(),
                data_dir: dir.to_path_buf(),
                config: config.clone(),
                compacting: compacting.clone(),
                wake: queue.downgrade(),
                reads: reads.clone(),
                slow: checkpoint::slow_from_env(checkpoint::SLOW_ENV),
                slow_apply: checkpoint::slow_from_env(checkpoint::SLOW_APPLY_ENV),
                last: None,
            },
            since_checkpoint: 0,
            live: live.clone(),
            journal,
            slow: crate::store::slow_commit::SlowCommits::new(
                config.slow_commit,
                metrics.commits_slow.clone(),
            ),
            between: committer::Between::default(),
            mark_moves: mark_moves.clone(),
            tear: torn_batch::TearHook::from_env(),
        };
        // Events acknowledged from the journal while sled was closed, before a crash or a stop.
        let journal_events = committer.apply_journal(journaled)?;
        let (ended, committer_ended) = oneshot::channel();
        let handle = std::thread::Builder::new()
            .name("hookgate-committer".into())
            .spawn(move || {
                let _notice = EndNotice(Some(ended));
                committer.run(receiver)
            })?;
        let ms = |took: Duration| took.as_millis() as u64;
        tracing::info!(
            dir = %sled_dir.display(),
            next_seq = %next_seq,
            sled_ms = ms(sled_opened),
            free_segments,
            checks_ms = ms(checked - sled_opened),
            dedup_runs_ms = ms(started.elapsed() - checked),
            recent_claims,
            journal_events,
            "Store opened."
        );
        free_segments::warn_if_many(free_segments, sled_opened);
        Ok(SledStore {
            dir: dir.to_path_buf(),
            config: config.clone(),
            metrics,
            live,
            compacting,
            copy_ratio: std::sync::atomic::AtomicU64::new(FIRST_COPY_RATIO.to_bits()),
            compact_backoff: compact::Backoff::default(),
            old_copies,
            handles,
            last_seq,
            queue,
            committer: Mutex::new(Some(handle)),
            committer_ended: Mutex::new(Some(committer_ended)),
            sweep: tokio::sync::Mutex::new(retention::Resume::default()),
            max_value,
            reads,
            mark_moves,
        })
    }

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

    /// Compacts the store (`compact.rs`) when sled's file is over `compact_ratio` times the
    /// bytes it holds and over them by `compact_min_bytes`. Returns the bytes given back.
    /// Failures are logged: the store goes on as it was, and the next pass tries again.
    async fn compact_if_worth_it(&self) -> Result<u64, StoreError> {
        let (ratio, least) = (self.config.compact_ratio, self.config.compact_min_bytes);
        if ratio == 0.0 {
            return Ok(0);
        }
        if self.compact_backoff.waiting() || !self.old_copies.gone() {
            return Ok(0);
        }
        let size = self.size_on_disk().await?;
        let live = self.live.get();
        // Worth it: over the ratio, and a copy would give back at least `least` (what sled makes
        // of a copy is learnt from the last one), so that compactions do not follow each other
        // for nothing. `least = 0` (tests) compacts whenever the ratio is passed.
        let copy_ratio = f64::from_bits(self.copy_ratio.load(Ordering::Relaxed));
        let worth_it = match live {
            Some(live) => {
                let (size, live) = (size as f64, live as f64);
                size > ratio * live && (least == 0 || size - copy_ratio * live >= least as f64)
            }
            // A store from before the count: its first compaction counts.
            None => size >= least,
        };
        if !worth_it {
            return Ok(0);
        }
        let needed = live.unwrap_or(size).saturating_mul(3) / 2;
        let free = nix::sys::statvfs::statvfs(&self.dir)
            .map(|stat| stat.blocks_available().saturating_mul(stat.fragment_size()))
            .unwrap_or(u64::MAX);
        if free < needed {
            tracing::warn!(
                size_mb = size >> 20,
                live_mb = live.map(|live| live >> 20),
                free_mb = free >> 20,
                "The store would be worth compacting, but the disk has no room for its copy."
            );
            return Ok(0);
        }
        tracing::info!(
            size_mb = size >> 20,
            live_mb = live.map(|live| live >> 20),
            "Compacting the store."
        );
        // Stopping the sweeper drops this future: the copy then gives up at its next step.
        struct Abort(Arc<AtomicBool>);
        impl Drop for Abort {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let abort = Abort(Arc::new(AtomicBool::new(false)));
        let (dir, config, handles, queue, compacting, stop, metrics, old_copies) = (
            self.dir.clone(),
            self.config.clone(),
            self.handles.clone(),
            self.queue.clone(),
            self.compacting.clone(),
            abort.0.clone(),
            self.metrics.clone(),
            self.old_copies.clone(),
        );
        compacting.store(true, Ordering::Release);
        let compacted = tokio::task::spawn_blocking(move || {
            let result = compact::Compaction {
                data_dir: &dir,
                config: &config,
                handles: &handles,
                queue: &queue,
                abort: &stop,
            }
            .run(size);
            // Only once the copy has let go of the old trees may a checkpoint reopen them.
            compacting.store(false, Ordering::Release);
            if let Ok(done) = &result {
                // In the background: the sweeper goes on meanwhile, and a stop need not wait.
                let removed = |took: Duration| {
                    let took_ms = took.as_millis() as u64;
                    tracing::info!(took_ms, "Compaction: the old files removed.");
                };
                if let Err(err) = old_copies.remove(&dir, &done.dir, removed) {
                    tracing::warn!(error = %err, "Cannot start removing the old files; the next open will.");
                }
                // The copy was reopened once written (`compact.rs`): few of its segments are free.
                free_segments::observe(&done.dir, &metrics);
            }
            result
        })
        .await;
        drop(abort);
        match compacted {
            Ok(Ok(done)) => {
                self.compact_backoff.succeeded();
                self.metrics.store_compactions.inc();
                if done.live > 0 {
                    let learnt = done.after as f64 / done.live as f64;
                    self.copy_ratio.store(learnt.to_bits(), Ordering::Relaxed);
                }
                tracing::info!(
                    before_mb = done.before >> 20,
                    after_mb = done.after >> 20,
                    live_mb = done.live >> 20,
                    took_ms = done.took.as_millis() as u64,
                    paused_ms = done.paused.as_millis() as u64,
                    "Store compacted."
                );
                Ok(done.before.saturating_sub(done.after))
            }
            Ok(Err(err)) => {
                let retry = self.compaction_failed();
                tracing::warn!(error = %err, retry_in_s = retry.as_secs(), "Compacting the store failed; it stays as it was.");
                Ok(0)
            }
            Err(err) => {
                // It panicked (or never ran): nothing follows the trees any more.
                self.compacting.store(false, Ordering::Release);
                let retry = self.compaction_failed();
                tracing::error!(error = %err, retry_in_s = retry.as_secs(), "Compacting the store panicked; it stays as it was.");
                Ok(0)
            }
        }
    }

    /// Counts a compaction that failed; returns how long the next try waits.
    fn compaction_failed(&self) -> Duration {
        self.metrics.store_compactions_failed.inc();
        self.compact_backoff.failed()
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
        self.read(move |r| r.events_after(after, limit, provider.as_deref()))
            .await
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

    async fn count_marked(&self, output: &str, mark: Mark) -> Result<u64, StoreError> {
        let prefix = keys::output_prefix(output);
        self.read(move |r| Ok(r.tree(TreeId::of(mark)).scan_prefix(prefix).count() as u64))
            .await
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

    async fn failed(&self) {
        let receiver = self.committer_ended.lock().ok().and_then(|mut r| r.take());
        match receiver {
            Some(receiver) => {
                let _ = receiver.await;
            }
            None => std::future::pending().await,
        }
    }

    async fn close(&self) {
        // What is left of old copies goes at the next open.
        let old_copies = self.old_copies.clone();
        let _ = tokio::task::spawn_blocking(move || old_copies.stop()).await;
        let handle = self.committer.lock().ok().and_then(|mut h| h.take());
        let Some(handle) = handle else { return };
        let _ = self.queue.send(Message::Close).await;
        match tokio::task::spawn_blocking(move || handle.join()).await {
            Ok(Ok(())) => tracing::info!("Store closed and synced."),
            _ => tracing::error!("The committer thread panicked."),
        }
    }
}

/// Whether the store is of an older layout, whose `dedup` tree the open turns into a log (and
/// then marks the store with this layout); marks a store of layout 4 to 7 with this one (its
/// values are read as they are); refuses a store of a layout this hookgate does not know.
/// Layout 8: batches of events may be torn by a crash past the next seq (`torn_batch.rs`),
/// which an older hookgate would not cut.
fn check_layout(trees: &Trees, dir: &Path) -> Result<bool, StoreError> {
    let meta = trees.get(TreeId::Meta);
    match meta.get(LAYOUT_KEY)? {
        Some(layout) if layout == LAYOUT => Ok(false),
        Some(layout) if [LAYOUT_7, LAYOUT_6, LAYOUT_5, LAYOUT_4].contains(&layout.as_ref()) => {
            // Before any batch of the new layout in sled's log, which a crash keeps a prefix of.
            meta.insert(LAYOUT_KEY, LAYOUT)?;
            Ok(false)
        }
        Some(layout) if layout == LAYOUT_3 => Ok(true),
        None => Ok(true),
        Some(other) => Err(StoreError::Corrupt(format!(
            "{} holds a store of layout {other:?}, not {LAYOUT:?}: it was written by a newer \
             hookgate",
            dir.display()
        ))),
    }
}

/// The open pack stored in `meta` (`pack::OPEN_KEY`), which the committer goes on appending to.
fn open_pack(trees: &Trees, max_value: usize, dir: &Path) -> Result<Option<Pack>, StoreError> {
    let Some(value) = trees.get(TreeId::Meta).get(pack::OPEN_KEY)? else {
        return Ok(None);
    };
    Pack::reopen(&value, max_value)
        .map(Some)
        .map_err(|err| unreadable(dir, "an open pack", &err))
}

/// The error of a value of sled's log under `dir` that does not parse: `what` it is, and why.
fn unreadable(dir: &Path, what: &str, err: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "{} holds {what} that cannot be read ({err}): restore the data dir from a backup",
        dir.join("db").display()
    ))
}

/// The bytes of keys and values stored, from `meta`; 0 in a new store, `None` in one written
/// before the count.
fn live_bytes(trees: &Trees, next_seq: Seq) -> Result<Option<u64>, StoreError> {
    match trees.get(TreeId::Meta).get(LIVE_KEY)? {
        Some(value) => live::decode(&value)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt("live_bytes".into())),
        None if next_seq == Seq(1) => Ok(Some(0)),
        None => Ok(None),
    }
}

/// The next seq `meta` holds (written last by every batch of events), if any.
fn stored_next_seq(trees: &Trees) -> Result<Option<Seq>, StoreError> {
    trees
        .get(TreeId::Meta)
        .get(NEXT_SEQ_KEY)?
        .map(|value| Seq::from_key(&value).ok_or_else(|| StoreError::Corrupt("next_seq".into())))
        .transpose()
}

/// The seq the next event gets: from `meta`, else 1.
fn next_seq(trees: &Trees) -> Result<Seq, StoreError> {
    match stored_next_seq(trees)? {
        Some(seq) => Ok(seq),
        None if trees.get(TreeId::Events).is_empty() => Ok(Seq(1)),
        None => Err(StoreError::Corrupt(
            "events are stored but the next seq is not".into(),
        )),
    }
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
