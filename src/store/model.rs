//! What goes in and out of the store, whatever the backend: events, outputs' state, errors.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::body_budget::BodyLease;
use crate::event::{DedupId, EventId, EventKey, ProviderName, Seq, Source};
use crate::verify::Verified;

/// What the store did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Stored, durably, under this seq.
    Accepted(Seq),
    /// This provider + dedup id was stored before, under this seq.
    Duplicate(Seq),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend's own storage failed (sled, a file, a server).
    #[error("storage error: {0}")]
    Storage(Arc<dyn std::error::Error + Send + Sync>),
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),
    #[error("not durable before the deadline")]
    DeadlineExceeded,
    #[error("the disk is full ({free} bytes free)")]
    DiskFull { free: u64 },
    #[error("the store is closed")]
    Closed,
    /// The event is larger than the store takes (on JetStream, the servers' `max_payload`).
    #[error("the event's {bytes} bytes are more than the store takes ({max})")]
    TooLarge { bytes: usize, max: usize },
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

impl From<std::io::Error> for StoreError {
    fn from(err: std::io::Error) -> Self {
        StoreError::Io(Arc::new(err))
    }
}

/// An event ready to be stored. Built only from a `Verified` request, or a poll.
#[derive(Debug)]
pub struct NewEvent {
    pub(crate) provider: ProviderName,
    pub(crate) event_id: EventId,
    /// What the event is deduplicated by (with the provider).
    pub(crate) dedup_id: DedupId,
    pub(crate) received_at_ms: u64,
    pub(crate) source: Source,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Bytes,
    pub(crate) topic: Option<String>,
    /// The body's bytes in the public listener's budget, given back when the store drops the
    /// event (see `body_budget.rs`); none for a polled item.
    pub(crate) lease: Option<BodyLease>,
}

impl NewEvent {
    /// A verified webhook: `source` is `test` when the sender marked it so, else `webhook`.
    pub fn webhook(
        provider: ProviderName,
        key: EventKey,
        content_type: Option<String>,
        verified: Verified,
    ) -> NewEvent {
        NewEvent {
            provider,
            event_id: key.id,
            dedup_id: key.dedup,
            received_at_ms: super::retention::arrival_ms(),
            source: verified.source(),
            content_type,
            topic: verified.topic().map(str::to_string),
            body: verified.into_body(),
            lease: None,
        }
    }

    /// An item read from the provider's sync API: `source` is `poll`. Its id is trusted (the
    /// API is called over the configured URL with hookgate's credentials) and deduplicated
    /// alone, so that an event that came both ways is stored once.
    pub fn poll(
        provider: ProviderName,
        event_id: EventId,
        content_type: Option<String>,
        body: Bytes,
    ) -> NewEvent {
        NewEvent {
            provider,
            dedup_id: DedupId::of(&event_id),
            event_id,
            received_at_ms: super::retention::arrival_ms(),
            source: Source::Poll,
            content_type,
            body,
            topic: None,
            lease: None,
        }
    }

    /// The same event, its body's bytes counted in `lease` until the store drops it.
    pub fn counted_in(mut self, lease: BodyLease) -> NewEvent {
        self.lease = Some(lease);
        self
    }

    /// The same event, received at `received_at_ms` (tests and benches of retention).
    pub fn received_at(mut self, received_at_ms: u64) -> NewEvent {
        self.received_at_ms = received_at_ms;
        self
    }
}

/// An event read back from the store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredEvent {
    #[serde(skip)]
    pub seq: u64,
    pub provider: String,
    pub event_id: String,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    pub source: Source,
    pub content_type: Option<String>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// The topic the sender's envelope names, where the scheme knows one.
    pub topic: Option<String>,
}

/// An output's durable state beside its marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputState {
    /// Every seq at or below it is done for the output (0 before its first event).
    pub cursor: Seq,
    /// Paused by an operator (destinations only).
    pub paused: bool,
}

/// What an output keeps per event above (or regardless of) its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    /// Its retry schedule is spent: kept until replayed.
    Dead,
    /// Queued by an operator to be delivered again.
    Replay,
    /// Delivered out of order, above the cursor.
    Settled,
}

/// Every mark of one event for one output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Marks {
    pub dead: Option<DeadRecord>,
    pub replay: bool,
    pub settled: bool,
}

/// One change to an output's durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Moves the cursor forward to this seq (a cursor never moves back).
    Cursor(Seq),
    Paused(bool),
    /// The event is dead, for this reason.
    Dead(Seq, DeadRecord),
    /// Sets a `Replay` or `Settled` mark (a `Dead` mark comes with its record, above).
    Mark(Mark, Seq),
    /// Clears a mark.
    Unmark(Mark, Seq),
}

/// Why an event is dead for a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadRecord {
    pub at_ms: u64,
    pub attempts: u32,
    /// The last failure, as `/v1/errors` shows it.
    pub error: String,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
