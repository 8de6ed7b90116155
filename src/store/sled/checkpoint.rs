//! Checkpoints while running: bounding the replay of a start after a crash.
//!
//! sled 0.34 writes a snapshot of its page table only when it opens a store, and a start
//! replays its log from the last snapshot on: after a crash, everything written since the
//! gateway started (at 10 M events, up to the whole 16 GB log: ~45 s without a snapshot). So
//! each time `[store] checkpoint_mb` of events and writes have been committed since sled was
//! opened, the committer reopens it between two batches:
//!
//! 1. every batch it answered is already synced (`committer.rs`), so nothing acknowledged
//!    depends on what follows;
//! 2. it takes the readers' handles away, waiting for the reads in progress (new reads wait
//!    for the reopened handles, they never see a closed store);
//! 3. it drops its own trees and the runs' trees, then the last handle, so sled closes;
//! 4. it opens sled again: sled replays what was written since the last open (what a crash
//!    start would have replayed) and writes a new snapshot; the durability layer fsyncs
//!    sled's files and the directory as at a start;
//! 5. it gives the new handles to the readers and takes the next batch.
//!
//! Requests wait in the queue meanwhile: a checkpoint is a pause of about what a start after a
//! crash at that moment would take (0.6 s for 256 MB in the ingest bench's 10 M store), within
//! `ack_deadline_ms`. If sled cannot be reopened, the committer stops as after a failed
//! fsync (nothing later is acknowledged; hookgate exits and its supervisor restarts it).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::committer::Committer;
use super::durable::{Durability, Reopened};
use super::{open_db, TreeId, Trees};
use crate::config::StoreConfig;
use crate::store::StoreError;

/// What the committer needs to reopen sled, and when it should.
pub struct Reopen {
    /// sled's directory (`place.rs`), under `data_dir`.
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub config: StoreConfig,
    /// Set while a compaction follows the trees (`compact.rs`): no checkpoint may replace them.
    pub compacting: Arc<AtomicBool>,
}

impl Reopen {
    /// Whether `committed` bytes since the last open call for a checkpoint.
    pub fn due(&self, committed: u64) -> bool {
        self.config.checkpoint_bytes > 0
            && committed >= self.config.checkpoint_bytes
            && !self.compacting.load(Ordering::Acquire)
    }
}

impl Committer {
    /// Closes and reopens sled (see the module's doc); `Err`: the store could not be opened
    /// again, and the committer must stop.
    pub fn checkpoint(self) -> Result<Committer, StoreError> {
        let started = Instant::now();
        let (dir, config) = (self.reopen.dir.clone(), self.reopen.config.clone());
        let mut parts = Reopened::default();
        let mut this = self.with_new_sled(|durability| {
            let (durability, reopened) = durability.reopen(|| open_db(&dir, &config))?;
            parts = reopened;
            Ok(durability)
        })?;
        let took = started.elapsed();
        let ms = |part: Duration| part.as_millis() as u64;
        this.metrics.store_checkpoints.inc();
        this.metrics
            .store_checkpoint_seconds
            .observe(took.as_secs_f64());
        tracing::info!(
            committed_mb = this.since_checkpoint / (1024 * 1024),
            took_ms = ms(took),
            close_ms = ms(parts.close),
            open_ms = ms(parts.open),
            sync_ms = ms(parts.sync),
            "Store checkpointed: a start after a crash replays from here."
        );
        this.since_checkpoint = 0;
        Ok(this)
    }

    /// Takes sled's handles away from the readers (waiting for the reads in progress), lets
    /// `replace` swap the durability layer's sled (reopened, or a compaction's copy), and gives
    /// the readers the new trees. `Err`: the committer must stop.
    pub fn with_new_sled(
        mut self,
        replace: impl FnOnce(Durability) -> Result<Durability, StoreError>,
    ) -> Result<Committer, StoreError> {
        let handles = self.handles.clone();
        let mut readers = handles.write().unwrap_or_else(PoisonError::into_inner);
        *readers = None;
        drop(self.trees);
        let runs = self.runs.detach();
        self.durability = replace(self.durability)?;
        self.trees = Trees::open(self.durability.db())?;
        self.runs = runs.attach(
            self.trees.get(TreeId::Dedup).clone(),
            self.trees.get(TreeId::Runs).clone(),
            self.trees.get(TreeId::Meta).clone(),
        );
        *readers = Some((self.trees.clone(), self.durability.db().clone()));
        Ok(self)
    }
}
