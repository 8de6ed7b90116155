//! Opening the store: sled under its directory (`place.rs`), the layout checked, a batch a crash
//! tore cut (`torn_batch.rs`), the watermark and the journal checked against sled's log, and the
//! committer started.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::committer::{self, Committer};
use super::compact::FIRST_COPY_RATIO;
use super::dir_lock::DirLock;
use super::durable::Durability;
use super::live::{self, Live};
use super::old_copies::OldCopies;
use super::opener::Opener;
use super::pack::{self, Pack};
use super::reader::{MarkMoves, ReadsSinceOpen};
use super::{
    checkpoint, compact, free_segments, journal, mount, place, retention, run_file, runs,
    torn_batch, unreadable, watermark, Handles, SledStore, TreeId, Trees, LAYOUT, LAYOUT_3,
    LAYOUT_4, LAYOUT_5, LAYOUT_6, LAYOUT_7, LAYOUT_KEY, LIVE_KEY, NEXT_SEQ_KEY, QUEUE_CAPACITY,
};
use crate::config::StoreConfig;
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::store::{Checkpointed, StoreError};

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
pub const SEGMENT_BYTES: usize = 2 << 20;

/// The segment size of the sled store in `dir`: the one its `conf` file records (sled refuses to
/// open a store with another), or [`SEGMENT_BYTES`] for a new store. A compaction's copy is a
/// new store, so an older store moves to the current size at its next compaction.
pub fn segment_bytes(dir: &Path) -> usize {
    std::fs::read(dir.join("conf"))
        .ok()
        .and_then(|conf| recorded_segment_bytes(&conf))
        .unwrap_or(SEGMENT_BYTES)
}

/// The `segment_size: N` line of sled's `conf` (text lines, then a 4-byte checksum).
pub fn recorded_segment_bytes(conf: &[u8]) -> Option<usize> {
    conf.split(|&byte| byte == b'\n').find_map(|line| {
        let value = line.strip_prefix(b"segment_size: ")?;
        std::str::from_utf8(value).ok()?.trim().parse().ok()
    })
}

/// How long a checkpoint waits for the data dir's lock (as `open_db` for sled's on `db`).
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens sled under `dir`. The previous handle of this process (a closed store, or the
/// checkpoint's) may take a while to let go of `db`'s lock after its last drop, while sled's
/// io threads finish the pass that the first write after an open starts (see
/// [`SEGMENT_BYTES`]), and a stop right after a start waits for it. A lock held elsewhere is
/// retried for ten seconds.
pub fn open_db(dir: &Path, config: &StoreConfig) -> Result<::sled::Db, ::sled::Error> {
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

/// sled's own error at an open, with the directory of its files: its messages name neither
/// ("Read corrupted data at file offset None", "No space left on device").
fn unreadable_files(dir: &Path, err: ::sled::Error) -> StoreError {
    match err {
        ::sled::Error::Corruption { .. } | ::sled::Error::Unsupported(_) => {
            StoreError::Corrupt(format!(
                "sled's files under {} (db, conf, snap.*) cannot be read: {err}. Restore the \
                 data dir from a backup",
                dir.display()
            ))
        }
        ::sled::Error::Io(err) => StoreError::Io(Arc::new(std::io::Error::new(
            err.kind(),
            format!("sled's files under {}: {err}", dir.display()),
        ))),
        err => err.into(),
    }
}

/// `err`, naming the store's directory: sled's own errors and hookgate's refusals of what it
/// read (a `meta` value that does not parse, a failed sync) named no file, which the docs
/// promise every refusal at a start does.
fn naming_sled_s_files(dir: &Path, err: StoreError) -> StoreError {
    let named = dir.display().to_string();
    match err {
        StoreError::Storage(inner) => match inner.downcast_ref::<::sled::Error>() {
            Some(sled) => unreadable_files(dir, sled.clone()),
            None => StoreError::Storage(Arc::new(std::io::Error::other(format!(
                "the store under {named}: {inner}"
            )))),
        },
        StoreError::Corrupt(what) if !what.contains(&named) => {
            StoreError::Corrupt(format!("{what} (the store under {named})"))
        }
        err => err,
    }
}

impl SledStore {
    /// sled writes a snapshot of its page table only when it opens a store, and replays its log
    /// since the last one at every open: opening and closing a closed store once moves that
    /// replay from the next start to now.
    pub fn checkpoint(dir: &Path, config: &StoreConfig) -> Result<Checkpointed, StoreError> {
        let started = Instant::now();
        // The store that just closed (this process's) lets go of it as its committer ends.
        let _lock = DirLock::take_waiting(dir, LOCK_WAIT)?;
        let dir_lock_wait = started.elapsed();
        let sled_dir = place::live_dir(dir)?;
        let (db, sled_lock_wait) =
            open_db_waiting(&sled_dir, config).map_err(|err| unreadable_files(&sled_dir, err))?;
        db.flush()?;
        drop(db);
        Ok(Checkpointed {
            took: started.elapsed(),
            lock_wait: dir_lock_wait + sled_lock_wait,
        })
    }

    /// Opens (or creates) the store under `dir` and starts its committer. sled reads most of
    /// its pages lazily, after it opened: a damaged page shows in the checks that follow, and
    /// its error is named with the directory too.
    pub fn open(
        dir: &Path,
        config: &StoreConfig,
        metrics: Arc<Metrics>,
    ) -> Result<SledStore, StoreError> {
        Self::open_unnamed(dir, config, metrics).map_err(|err| naming_sled_s_files(dir, err))
    }

    fn open_unnamed(
        dir: &Path,
        config: &StoreConfig,
        metrics: Arc<Metrics>,
    ) -> Result<SledStore, StoreError> {
        create_data_dir(dir).map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("cannot create the data dir {}: {err}", dir.display()),
            )
        })?;
        let lock = DirLock::take(dir)?;
        mount::warn_if_online_discard(dir);
        let started = Instant::now();
        let sled_dir = place::live_dir(dir)?;
        let old_copies = Arc::new(OldCopies::default());
        old_copies.remove(dir, &sled_dir, |_| ())?;
        // sled's page table is built on the thread that opens it, as at every checkpoint.
        let opener = Opener::start()?;
        let db = {
            let (dir, config) = (sled_dir.clone(), config.clone());
            opener
                .run(move || open_db(&dir, &config))
                .join()
                .map_err(|_| StoreError::Corrupt("opening sled panicked".into()))?
                .map_err(|err| unreadable_files(&sled_dir, err))?
        };
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
        let disk_full = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let busy_since = Arc::new(std::sync::atomic::AtomicU64::new(0));
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
                opener,
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
            disk_full: disk_full.clone(),
            busy_since: busy_since.clone(),
        };
        // Events acknowledged from the journal while sled was closed, before a crash or a stop.
        let journal_events = committer.apply_journal(journaled)?;
        let (ended, committer_ended) = oneshot::channel();
        let handle = std::thread::Builder::new()
            .name("hookgate-committer".into())
            .spawn(move || {
                let _notice = EndNotice(Some(ended));
                let _lock = lock;
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
            disk_full,
            busy_since,
        })
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

/// Creates `dir` if it is not there, and makes its entry durable: fsyncs its parent, and the
/// parent of every directory created here. A new directory entry survives a power loss only
/// once its directory is synced (strict POSIX; ext4 keeps it with its next journal commit), and
/// the data dir may be new: made here, or just before by a script or systemd's
/// `StateDirectory=`, without a sync. Lost, it took every event acknowledged in it, and the next
/// start began empty, saying nothing. A parent that cannot be opened (no read permission) is
/// warned about, not fatal.
fn create_data_dir(dir: &Path) -> std::io::Result<()> {
    let created: Vec<&Path> = dir.ancestors().take_while(|path| !path.exists()).collect();
    std::fs::create_dir_all(dir)?;
    let parent_of = |path: &Path| match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut parents: Vec<std::path::PathBuf> = created.into_iter().map(parent_of).collect();
    parents.push(parent_of(dir));
    parents.dedup();
    for parent in parents {
        match std::fs::File::open(&parent).and_then(|dir| dir.sync_all()) {
            Ok(()) => {}
            // A directory this user may not open: said, and the start goes on.
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::warn!(dir = %parent.display(), error = %err, "Cannot sync the directory that holds the data dir: a power loss soon after it was made may take the data dir away.");
            }
            // A failed fsync (EIO): the disk may not hold the data dir's entry.
            Err(err) => {
                return Err(std::io::Error::new(
                    err.kind(),
                    format!(
                        "syncing {}, which holds the data dir: {err}",
                        parent.display()
                    ),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CI run once found a damaged page in the checks after sled opened, and its error named
    /// no file: every error of sled's at an open names the directory.
    #[test]
    fn sled_s_errors_at_an_open_name_the_directory() {
        let dir = Path::new("/srv/hookgate/data");
        let corrupt = ::sled::Error::Corruption { at: None, bt: () };
        for err in [
            StoreError::from(corrupt),
            StoreError::from(::sled::Error::Io(std::io::Error::other("bad sector"))),
        ] {
            let named = naming_sled_s_files(dir, err).to_string();
            assert!(named.contains("/srv/hookgate/data"), "{named}");
        }
        // hookgate's own refusals too, once.
        let ours = naming_sled_s_files(dir, StoreError::Corrupt("next_seq".into()));
        assert_eq!(
            ours.to_string(),
            "corrupt store: next_seq (the store under /srv/hookgate/data)"
        );
        let named = naming_sled_s_files(dir, ours).to_string();
        assert_eq!(named.matches("/srv/hookgate/data").count(), 1, "{named}");
    }
}
