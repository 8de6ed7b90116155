//! The durable queue, sealed behind one trait.
//!
//! Everything outside this module talks to the store through [`Backend`]'s typed operations:
//! commit an event (dedup + append, durable before it answers), read the events after a seq,
//! an output's cursor and its per-event marks (dead, queued for replay, settled), the pollers'
//! sync cursors, and retention. No caller sees a tree, a key layout or a transaction.
//!
//! Two promises hold for every backend, and the conformance suite (`tests/store_conformance.rs`)
//! checks them:
//! - **Readers see only durable events.** `events_after` and `event` never return a seq above
//!   [`Backend::last_seq`], which only moves once the events up to it are durable. So a seq, once
//!   seen anywhere (admin API, consumer, forwarder, sweeper), never names another event, even
//!   after a crash.
//! - **Fail-stop.** When the backend cannot tell whether a write reached the disk (a failed
//!   fsync), it stops accepting: [`Backend::failed`] resolves and hookgate exits, so that no later
//!   acknowledgement is given on top of a state that did not reach the disk.
//!
//! The backends: [`sled`] (the default, embedded; `store/sled/`) and [`jetstream`] (a NATS
//! JetStream stream several gateways can share; `store/jetstream/`). Every call that may block
//! runs off the async workers inside the backend.

mod filtered;
pub mod jetstream;
mod model;
pub mod retention;
pub mod sled;
pub mod slow_commit;

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{StoreBackend, StoreConfig};
use crate::event::Seq;
use crate::metrics::Metrics;

pub use filtered::{Filtered, MAX_LOOKED_AT, PAGE_BODY_BYTES};
pub use model::{
    now_ms, Change, Committed, DeadRecord, Mark, Marks, NewEvent, OutputState, StoreError,
    StoredEvent,
};
pub use retention::{start_clocks, Cutoffs, Output, Swept};

/// A read of events stops once their bodies reach this, the event that reaches it included
/// (256 events of the largest bodies allowed would be 16 GiB).
pub const READ_BODY_BYTES: usize = 16 << 20;

/// Whether a read of up to `limit` events ([`Backend::events_after`]) returned every durable
/// event after its start: fewer than `limit`, and not because their bodies reached
/// [`READ_BODY_BYTES`].
pub fn read_to_end(events: &[StoredEvent], limit: usize) -> bool {
    events.len() < limit && body_bytes(events) < READ_BODY_BYTES
}

/// The sum of `events`' body sizes.
pub fn body_bytes(events: &[StoredEvent]) -> usize {
    events.iter().map(|event| event.body.len()).sum()
}

/// One backend of the durable queue. Each operation is atomic; "durable" means it survives
/// `kill -9` and power loss.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Stores `event` durably, or fails: claims (provider, dedup id) and appends the event under
    /// the next seq, atomically. Resolves only once that is durable; an event not durable within
    /// `deadline` is not applied (if it has not been already) and fails with `DeadlineExceeded`.
    async fn commit(&self, event: NewEvent, deadline: Duration) -> Result<Committed, StoreError>;

    /// The highest seq durably stored; it changes after every durable commit with events.
    fn last_seq(&self) -> tokio::sync::watch::Receiver<Seq>;

    /// The highest seq durably stored, asked of the store now: on a store several gateways
    /// share, `last_seq` sees the others' events only at its next look (JetStream: every
    /// 100 ms), and a seq a reader got from another gateway may be past it.
    async fn last_seq_now(&self) -> Result<Seq, StoreError> {
        Ok(*self.last_seq().borrow())
    }

    /// Up to `limit` durable events with seq > `after`, in seq order, of one provider if given;
    /// fewer only at the last durable event, or once their bodies reach [`READ_BODY_BYTES`]
    /// (the event that reaches it included): [`read_to_end`] tells which.
    async fn events_after(
        &self,
        after: Seq,
        limit: usize,
        provider: Option<String>,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// One durable event by seq.
    async fn event(&self, seq: Seq) -> Result<Option<StoredEvent>, StoreError>;

    /// An output's (destination's or consumer's) durable cursor and pause flag.
    async fn output(&self, output: &str) -> Result<OutputState, StoreError>;

    /// Applies `changes` to one output atomically and durably. A `Cursor` change never moves the
    /// cursor back.
    async fn change(&self, output: &str, changes: Vec<Change>) -> Result<(), StoreError>;

    /// Up to `limit` seqs in `range` that carry `mark` for `output`, in seq order, with the dead
    /// record for `Mark::Dead`.
    async fn marked(
        &self,
        output: &str,
        mark: Mark,
        range: RangeInclusive<Seq>,
        limit: usize,
    ) -> Result<Vec<(Seq, Option<DeadRecord>)>, StoreError>;

    /// How many seqs carry `mark` for `output`.
    async fn count_marked(&self, output: &str, mark: Mark) -> Result<u64, StoreError>;

    /// Every mark one event carries for `output`, read atomically.
    async fn marks(&self, output: &str, seq: Seq) -> Result<Marks, StoreError>;

    /// A poller's durable sync cursor (opaque bytes), if one was saved.
    async fn sync_cursor(&self, provider: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Saves a poller's sync cursor durably, unless another gateway sharing the store wrote it
    /// since this one last read or wrote it (then it fails, and the caller reads it again).
    async fn set_sync_cursor(&self, provider: &str, value: Vec<u8>) -> Result<(), StoreError>;

    /// One bounded step of retention: removes events received before `cutoffs.events_ms` that
    /// every output in `outputs` is done with (see [`retention::verdict`]), and dedup keys
    /// received before `cutoffs.dedup_ms`. Called again later, it resumes.
    async fn sweep(&self, cutoffs: Cutoffs, outputs: Arc<Vec<Output>>)
        -> Result<Swept, StoreError>;

    /// Takes the lease `name` for `holder`, or renews it if `holder` holds it, and answers
    /// whether `holder` holds it now. A lease lapses [`Backend::lease_time`] after it was last
    /// taken or renewed; only then may another holder take it. Leases decide which of several
    /// gateways sharing a store does the work only one may do ([`crate::lease`]).
    async fn hold_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError>;

    /// Renews the lease `name` that `holder` took: false when it is not `holder`'s any more,
    /// lapsed included (a renewal that took a lapsed lease again went on with the term's
    /// in-memory state, while another gateway may have held it meanwhile).
    async fn renew_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError>;

    /// Gives the lease `name` up if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Records `fingerprint` for `holder` (it lapses as a lease does) and returns every live
    /// gateway's `(holder, fingerprint)`, this one's included (see `peers.rs`). One gateway owns
    /// a sled store: there, only its own.
    async fn announce(
        &self,
        holder: &str,
        fingerprint: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(vec![(holder.to_string(), fingerprint.to_string())])
    }

    /// How long a lease lasts without renewal (for JetStream, two thirds of the configured
    /// `lease_time`, so that a dead gateway's work is taken over within `lease_time`); `None`
    /// when one gateway owns the store (sled): then every lease is always held.
    fn lease_time(&self) -> Option<Duration>;

    /// The bytes the store takes on disk.
    async fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// True while the store accepts commits.
    fn is_open(&self) -> bool;

    /// The largest sync cursor the store takes (a larger `set_sync_cursor` fails).
    fn largest_sync_cursor(&self) -> usize;

    /// The largest body the store takes, if it has a bound of its own (a commit of a larger
    /// one fails with `TooLarge`).
    fn largest_body(&self) -> Option<usize> {
        None
    }

    /// Answers once the backend has worked through what was queued before the call, or fails
    /// with `DeadlineExceeded` after `within`: the liveness check of the systemd watchdog. For
    /// sled, a round through the committer's group commit (one flush and fdatasync when nothing
    /// else is committing), so a committer wedged in a write or an fsync does not answer. A full
    /// disk still answers: it is not a reason to restart.
    async fn ping(&self, within: Duration) -> Result<(), StoreError>;

    /// Whether the backend can store events now, answered within `within`: the readiness a
    /// load balancer asks for (`/readyz`). Not [`Backend::ping`]: a full disk, or JetStream out
    /// of reach, is no reason to restart, but one to send the traffic elsewhere.
    async fn ready(&self, within: Duration) -> bool;

    /// Resolves when the store stopped accepting without being closed (for one caller: the
    /// process supervisor). Nothing can be stored any more.
    async fn failed(&self);

    /// Commits what is queued, syncs, and stops; later commits fail with `Closed`. False when
    /// that last sync failed (or the store had already stopped on a failure): what the disk
    /// holds is then unknown, and the process must exit non-zero.
    async fn close(&self) -> bool;
}

/// The handle the rest of hookgate holds: one backend, chosen by the config. Cheap to clone.
#[derive(Clone)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    /// Opens (or creates) the configured backend's store: sled's under `dir`, or JetStream's
    /// stream and bucket on its servers. Blocking: call it off the async workers (from
    /// `spawn_blocking`, or inside `block_in_place`), within a tokio runtime for JetStream.
    pub fn open(
        dir: &Path,
        config: &StoreConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        match &config.backend {
            StoreBackend::Sled => Ok(Store(Arc::new(sled::SledStore::open(
                dir, config, metrics,
            )?))),
            StoreBackend::JetStream(js) => {
                let runtime = tokio::runtime::Handle::try_current().map_err(|err| {
                    StoreError::Storage(Arc::new(std::io::Error::other(format!(
                        "the JetStream store opens within a tokio runtime: {err}"
                    ))))
                })?;
                let store = runtime
                    .block_on(jetstream::JetStreamStore::open(
                        js,
                        config.dedup_window,
                        metrics,
                    ))?
                    .with_slow_commit(config.slow_commit);
                Ok(Store(Arc::new(store)))
            }
        }
    }

    /// [`Store::open`] for async callers: sled's open (which replays its log) on the blocking
    /// pool, JetStream's (which may wait minutes for its servers) on this task, so that dropping
    /// the future (a stop asked for meanwhile) ends it: a JetStream open blocked on inside the
    /// blocking pool outlived the runtime and panicked as it shut down.
    pub async fn open_async(
        dir: &Path,
        config: &StoreConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        match &config.backend {
            StoreBackend::Sled => {
                let (dir, config) = (dir.to_path_buf(), config.clone());
                tokio::task::spawn_blocking(move || Store::open(&dir, &config, metrics))
                    .await
                    .map_err(|err| {
                        StoreError::Corrupt(format!("opening the store panicked: {err}"))
                    })?
            }
            StoreBackend::JetStream(js) => {
                let store = jetstream::JetStreamStore::open(js, config.dedup_window, metrics)
                    .await?
                    .with_slow_commit(config.slow_commit);
                Ok(Store(Arc::new(store)))
            }
        }
    }

    /// A store around any backend (the conformance suite uses it).
    pub fn from_backend(backend: impl Backend) -> Store {
        Store(Arc::new(backend))
    }
}

/// What [`checkpoint`] took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checkpointed {
    /// All of it.
    pub took: Duration,
    /// Of that, waiting for the lock of a store this process had just closed (sled's threads
    /// let go of it a while after its last handle).
    pub lock_wait: Duration,
}

/// Leaves a closed store ready for a fast next start; every handle to it must be gone. For
/// sled: opening it replays its log since the previous open and writes a snapshot of its page
/// table, so the next open reads the snapshot instead of the log. JetStream keeps no local
/// state: nothing to do.
pub fn checkpoint(dir: &Path, config: &StoreConfig) -> Result<Checkpointed, StoreError> {
    match config.backend {
        StoreBackend::Sled => sled::SledStore::checkpoint(dir, config),
        StoreBackend::JetStream(_) => Ok(Checkpointed::default()),
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
