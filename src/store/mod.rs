//! The durable queue: sled under `data_dir`, written only by the committer thread.
//!
//! Trees: `events` (big-endian seq -> record), `dedup` ((provider, event id) -> first seq) and
//! `meta` (the next seq). `Store::commit` hands an event to the committer and resolves once it
//! is durable (or refused); reads go straight to sled and are cheap enough for the admin API.

mod committer;
mod durable;
pub mod keys;
mod record;
pub mod sweep;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::config::StoreConfig;
use crate::event::{EventId, ProviderName, Seq, Source};
use crate::metrics::Metrics;
use crate::verify::Verified;

pub use record::StoredEvent;

use committer::{Committer, Message, Outcome, Pending, Work};
use durable::Durability;

const NEXT_SEQ_KEY: &[u8] = b"next_seq";
/// Requests waiting for the committer beyond this wait for room (bounded by their deadline).
const QUEUE_CAPACITY: usize = 8192;

/// What the store did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Stored, durably, under this seq.
    Accepted(Seq),
    /// This provider + event id was stored before, under this seq.
    Duplicate(Seq),
}

/// How long a batch of writes may wait for the committer before failing.
const WRITE_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(Arc<sled::Error>),
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),
    #[error("not durable before the deadline")]
    DeadlineExceeded,
    #[error("the store is closed")]
    Closed,
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl From<sled::Error> for StoreError {
    fn from(err: sled::Error) -> Self {
        StoreError::Sled(Arc::new(err))
    }
}

/// An event ready to be stored. Built only from a `Verified` request (or, later, a poll).
#[derive(Debug)]
pub struct NewEvent {
    provider: ProviderName,
    event_id: EventId,
    received_at_ms: u64,
    source: Source,
    content_type: Option<String>,
    body: Bytes,
    topic: Option<String>,
}

impl NewEvent {
    /// A verified webhook: `source` is `test` when the sender marked it so, else `webhook`.
    pub fn webhook(
        provider: ProviderName,
        event_id: EventId,
        content_type: Option<String>,
        verified: Verified,
    ) -> NewEvent {
        NewEvent {
            provider,
            event_id,
            received_at_ms: now_ms(),
            source: verified.source(),
            content_type,
            topic: verified.topic().map(str::to_string),
            body: verified.into_body(),
        }
    }
}

impl NewEvent {
    /// An item read from the provider's sync API: `source` is `poll`.
    pub fn poll(
        provider: ProviderName,
        event_id: EventId,
        content_type: Option<String>,
        body: Bytes,
    ) -> NewEvent {
        NewEvent {
            provider,
            event_id,
            received_at_ms: now_ms(),
            source: Source::Poll,
            content_type,
            body,
            topic: None,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The store's trees. Only the committer writes to them; anyone may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeId {
    /// seq -> event record.
    Events = 0,
    /// (provider, event id) -> first seq and arrival time.
    Dedup = 1,
    /// Named values: the next seq, cursors, flags.
    Meta = 2,
    /// (destination, seq) -> why the event is dead there.
    Dead = 3,
    /// (destination, seq) -> (): events queued to be delivered again.
    Replay = 4,
    /// (destination, seq) -> (): delivered out of order, past the destination's cursor.
    Settled = 5,
}

const TREE_NAMES: [&str; 6] = ["events", "dedup", "meta", "dead", "replay", "settled"];

/// One write applied by the committer, in the same transaction and sync as the events around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(TreeId, Vec<u8>, Vec<u8>),
    Delete(TreeId, Vec<u8>),
}

impl Write {
    fn len(&self) -> usize {
        match self {
            Write::Put(_, key, value) => key.len() + value.len(),
            Write::Delete(_, key) => key.len(),
        }
    }
}

/// sled's trees, opened once, indexed by `TreeId`.
#[derive(Clone)]
pub struct Trees {
    all: Vec<sled::Tree>,
    events: sled::Tree,
    meta: sled::Tree,
}

impl Trees {
    fn open(db: &sled::Db) -> Result<Trees, StoreError> {
        let all = TREE_NAMES
            .iter()
            .map(|name| db.open_tree(name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Trees {
            events: all[TreeId::Events as usize].clone(),
            meta: all[TreeId::Meta as usize].clone(),
            all,
        })
    }

    fn all(&self) -> Vec<&sled::Tree> {
        self.all.iter().collect()
    }
}

/// The handle the rest of hookgate holds. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    trees: Trees,
    /// sled itself, for what no tree answers (the size on disk). Cheap to clone.
    db: sled::Db,
    queue: mpsc::Sender<Message>,
    committer: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Fires when the committer thread ends, whether closed, failed or panicked.
    committer_ended: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
    /// The highest seq durably stored.
    last_seq: tokio::sync::watch::Receiver<Seq>,
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

impl Store {
    /// Opens (or creates) the store under `dir` and starts its committer.
    pub fn open(
        dir: &Path,
        config: &StoreConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(Arc::new(e)))?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(config.cache_bytes)
            // The committer flushes (and fsyncs) itself; a background flush would only compete.
            .flush_every_ms(None)
            .open()?;
        let trees = Trees::open(&db)?;
        let next_seq = next_seq(&trees)?;
        let mut durability =
            Durability::new(db.clone(), dir).map_err(|e| StoreError::Io(Arc::new(e)))?;
        durability.sync().map_err(|e| StoreError::Io(Arc::new(e)))?;

        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let (last_seq_sender, last_seq) = tokio::sync::watch::channel(Seq(next_seq.0 - 1));
        let committer = Committer {
            trees: trees.clone(),
            durability,
            next_seq,
            metrics,
            last_seq: last_seq_sender,
        };
        let (ended, committer_ended) = oneshot::channel();
        let handle = std::thread::Builder::new()
            .name("hookgate-committer".into())
            .spawn(move || {
                let _notice = EndNotice(Some(ended));
                committer.run(receiver)
            })
            .map_err(|e| StoreError::Io(Arc::new(e)))?;
        tracing::info!(dir = %dir.display(), next_seq = %next_seq, "Store opened.");
        Ok(Store {
            trees,
            db,
            queue,
            committer: Arc::new(Mutex::new(Some(handle))),
            committer_ended: Arc::new(Mutex::new(Some(committer_ended))),
            last_seq,
        })
    }

    /// Stores `event` durably, or fails. Resolves only after the fdatasync covering it; an event
    /// not durable within `deadline` is not applied (if it has not been already) and fails.
    pub async fn commit(
        &self,
        event: NewEvent,
        deadline: Duration,
    ) -> Result<Committed, StoreError> {
        match self.submit(Work::Event(event), deadline).await? {
            Outcome::Event(committed) => Ok(committed),
            Outcome::Written => Err(StoreError::Corrupt(
                "an event commit answered as writes".into(),
            )),
        }
    }

    /// Applies `writes` atomically and durably (in the committer's next group commit).
    pub async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.submit(Work::Writes(writes), WRITE_DEADLINE)
            .await
            .map(|_| ())
    }

    /// A receiver of the highest seq durably stored; it changes after every commit with events.
    pub fn last_seq(&self) -> tokio::sync::watch::Receiver<Seq> {
        self.last_seq.clone()
    }

    /// An output's durable cursor (0 before its first event).
    pub fn cursor(&self, output: &str) -> Result<Seq, StoreError> {
        Ok(self
            .tree(TreeId::Meta)
            .get(keys::cursor_key(output))?
            .and_then(|value| Seq::from_key(&value))
            .unwrap_or(Seq(0)))
    }

    /// The bytes sled's files take on disk (log and blobs). Blocking: it lists the blob files.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Read access to one tree. Writes go through `write`, never here.
    pub fn tree(&self, id: TreeId) -> &sled::Tree {
        &self.trees.all[id as usize]
    }

    async fn submit(&self, work: Work, deadline: Duration) -> Result<Outcome, StoreError> {
        let deadline_at = Instant::now() + deadline;
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            work,
            deadline: deadline_at,
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

    /// Resolves when the committer thread has ended (for one caller: the process supervisor).
    /// Before `close`, that means it failed: nothing can be stored any more.
    pub async fn committer_ended(&self) {
        let receiver = self.committer_ended.lock().ok().and_then(|mut r| r.take());
        match receiver {
            Some(receiver) => {
                let _ = receiver.await;
            }
            None => std::future::pending().await,
        }
    }

    /// True while the committer runs.
    pub fn is_open(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Up to `limit` events with seq > `after`, in seq order, optionally of one provider only.
    /// Blocking: call from a blocking context.
    pub fn events_after(
        &self,
        after: Seq,
        limit: usize,
        provider: Option<&str>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let start = Seq(after.0.saturating_add(1)).to_key();
        let mut events = Vec::new();
        for item in self.trees.events.range(start..) {
            if events.len() >= limit {
                break;
            }
            let (key, value) = item?;
            let seq = Seq::from_key(&key).ok_or_else(|| StoreError::Corrupt("event key".into()))?;
            let event = StoredEvent::decode(seq, &value).map_err(StoreError::Corrupt)?;
            if provider.is_none_or(|p| p == event.provider) {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// One event by seq. Blocking.
    pub fn event(&self, seq: Seq) -> Result<Option<StoredEvent>, StoreError> {
        match self.trees.events.get(seq.to_key())? {
            Some(value) => Ok(Some(
                StoredEvent::decode(seq, &value).map_err(StoreError::Corrupt)?,
            )),
            None => Ok(None),
        }
    }

    /// Commits what is queued, syncs, and stops the committer; later commits fail with
    /// `Closed` (503). Waits for the committer thread to end.
    pub async fn close(&self) {
        let handle = self.committer.lock().ok().and_then(|mut h| h.take());
        let Some(handle) = handle else { return };
        let _ = self.queue.send(Message::Close).await;
        match tokio::task::spawn_blocking(move || handle.join()).await {
            Ok(Ok(())) => tracing::info!("Store closed and synced."),
            _ => tracing::error!("The committer thread panicked."),
        }
    }
}

/// The seq the next event gets: from `meta`, else one past the last event, else 1.
fn next_seq(trees: &Trees) -> Result<Seq, StoreError> {
    if let Some(value) = trees.meta.get(NEXT_SEQ_KEY)? {
        return Seq::from_key(&value).ok_or_else(|| StoreError::Corrupt("next_seq".into()));
    }
    match trees.events.last()? {
        Some((key, _)) => Ok(Seq(Seq::from_key(&key).map_or(0, |s| s.0) + 1)),
        None => Ok(Seq(1)),
    }
}
