//! The durable queue: sled under `data_dir`, written only by the committer thread.
//!
//! Trees: `events` (big-endian seq -> record), `dedup` ((provider, event id) -> first seq) and
//! `meta` (the next seq). `Store::commit` hands an event to the committer and resolves once it
//! is durable (or refused); reads go straight to sled and are cheap enough for the admin API.

mod committer;
mod durable;
mod record;

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

use committer::{Committer, Message, Pending};
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// sled's trees, opened once.
#[derive(Clone)]
pub struct Trees {
    events: sled::Tree,
    dedup: sled::Tree,
    meta: sled::Tree,
}

/// The handle the rest of hookgate holds. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    trees: Trees,
    queue: mpsc::Sender<Message>,
    committer: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Fires when the committer thread ends, whether closed, failed or panicked.
    committer_ended: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
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
        let trees = Trees {
            events: db.open_tree("events")?,
            dedup: db.open_tree("dedup")?,
            meta: db.open_tree("meta")?,
        };
        let next_seq = next_seq(&trees)?;
        let mut durability = Durability::new(db, dir).map_err(|e| StoreError::Io(Arc::new(e)))?;
        durability.sync().map_err(|e| StoreError::Io(Arc::new(e)))?;

        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let committer = Committer {
            trees: trees.clone(),
            durability,
            next_seq,
            metrics,
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
            queue,
            committer: Arc::new(Mutex::new(Some(handle))),
            committer_ended: Arc::new(Mutex::new(Some(committer_ended))),
        })
    }

    /// Stores `event` durably, or fails. Resolves only after the fdatasync covering it; an event
    /// not durable within `deadline` is not applied (if it has not been already) and fails.
    pub async fn commit(
        &self,
        event: NewEvent,
        deadline: Duration,
    ) -> Result<Committed, StoreError> {
        let deadline_at = Instant::now() + deadline;
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            event,
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
