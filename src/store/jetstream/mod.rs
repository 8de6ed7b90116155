//! The JetStream backend: the store in a NATS JetStream stream and a KV bucket, so that several
//! gateways can share it (issue 13, "Cluster mode"; this is its store interface only).
//!
//! - **Events**: one stream (`[store] stream`, default `HOOKGATE`) taking `hookgate.events.>`.
//!   An event is one message on `hookgate.events.<provider>.<dedup hash>` (`layout.rs`); the
//!   stream keeps one message per subject and refuses a second (`max_msgs_per_subject = 1`,
//!   `discard = new`, `discard_new_per_subject`), so a duplicate's publish fails with error
//!   10077 on whichever gateway sends it, and is answered with the first copy's seq (the last
//!   message of the subject). `Nats-Msg-Id` (the same hash) answers retries of a publish within
//!   JetStream's duplicate window without that lookup. A seq is the stream sequence.
//! - **Durable** means acknowledged by the stream (by a quorum of its replicas): `last_seq` is
//!   the highest acknowledged seq, and readers see nothing above it.
//! - **Outputs' state** is in the KV bucket `<stream>_state`: per output, a small value for the
//!   cursor, pause flag, replay and settled marks, and the dead records in shards of
//!   [`outputs::SHARD_SEQS`] seqs, each changed by compare-and-set on its revision, in an order
//!   that is safe across a crash (`outputs.rs`); sync cursors are values there too.
//! - **Retention** (`retention.rs`): the stream has no `max_age`; the sweeper deletes events by
//!   the same policy as sled's ([`crate::store::retention::verdict`]). An event is its own dedup
//!   key, so it goes with the event; when the dedup window passes while the event stays, a
//!   `forgotten` mark in the bucket sends the next copy of the id to a subject of its own
//!   (see docs/store.md).
//! - **Several gateways** share the stream: each follows the stream's last sequence (so events
//!   other nodes stored reach its readers within [`FOLLOW_INTERVAL`]), and the work only one of
//!   them may do (a destination's deliveries, a poller, the sweeper) is leased in the bucket
//!   `<stream>_leases` (`leases.rs`). A poller's sync cursor is written by compare-and-set
//!   against the value this node last read, so a node that lost its lease cannot move it back.

mod bucket;
mod layout;
mod leader;
mod leases;
mod open;
mod outputs;
mod publish;
mod retention;
mod went_back;

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{self, DirectGetErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::outputs::{shard_of, DeadShard, Plan, Position};
use super::{
    Backend, Change, Committed, Cutoffs, DeadRecord, Mark, Marks, NewEvent, Output, OutputState,
    StoreError, StoredEvent, Swept, READ_BODY_BYTES,
};
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::store::slow_commit::SlowCommits;
pub use open::FOLLOW_INTERVAL;

/// Direct gets of one read in flight at once.
const READ_AHEAD: usize = 64;
/// The most bytes of bodies one read may have in flight, were each as large as the servers
/// allow (a window is judged from the bodies seen so far, which larger ones may follow).
const IN_FLIGHT_BYTES: usize = 4 * READ_BODY_BYTES;

/// The store on a NATS JetStream stream and KV bucket.
pub struct JetStreamStore {
    client: async_nats::Client,
    js: jetstream::Context,
    /// The connected server's `max_payload`, read again after each (re)connection (`connected`):
    /// read once at the start, a raise on the servers answered bodies under it 413 until the
    /// gateway restarted, and a server with a lower one closed the connection on a larger
    /// message.
    max_payload: AtomicUsize,
    connected: Arc<AtomicBool>,
    /// `js` for publishes: its acks wait as long as the caller's deadline says (the client's 5 s
    /// answered a webhook 503 at 5 s under an `ack_deadline_ms` of 10 s, its event stored).
    publisher: jetstream::Context,
    stream: stream::Stream,
    kv: kv::Store,
    /// Leases: an entry lapses `lease_time` after it was last written.
    leases: kv::Store,
    /// See `open::lapse_time`.
    lease_time: Duration,
    /// Also moved by the follower task, which holds it weakly.
    last_seq: Arc<watch::Sender<Seq>>,
    /// The revision of each provider's sync cursor as this node last read or wrote it.
    sync_revisions: Mutex<HashMap<String, u64>>,
    open: AtomicBool,
    /// `events_stored` and `duplicates` count here as on sled (there is no group commit).
    metrics: Arc<Metrics>,
    /// Where the next sweep of events resumes (0: from the stream's first message).
    sweep_from: AtomicU64,
    /// Where the next sweep of dedup keys resumes: every event before it has none.
    dedup_from: AtomicU64,
    /// Which publishes were slow, and when to log one (`[store] slow_commit`).
    slow: Mutex<SlowCommits>,
    /// Cancelled when the stream went back (`went_back.rs`): commits fail from then on.
    went_back: CancellationToken,
    /// The stream's leader answered the follower's last look (`open::follow`): readiness.
    stream_answers: Arc<AtomicBool>,
    /// The seqs of messages said to be unreadable (see [`Self::unreadable`]).
    unreadable: Mutex<std::collections::HashSet<u64>>,
}

/// Room for an event's subject and headers in `max_payload`, as the largest body is told at
/// start (a commit checks its own: [`layout::envelope_len`]).
const HEADERS_ROOM: usize = 4096;

impl JetStreamStore {
    fn check_open(&self) -> Result<(), StoreError> {
        if self.open.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::Closed)
        }
    }

    fn check_not_went_back(&self) -> Result<(), StoreError> {
        if self.went_back.is_cancelled() {
            return Err(went_back::went_back_error(
                &self.stream.cached_info().config.name,
            ));
        }
        Ok(())
    }

    fn acknowledged(&self, seq: u64) {
        advance(&self.last_seq, seq);
    }

    async fn message(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        let message = match self.stream.direct_get(seq).await {
            Ok(message) => Some(message),
            // A replica behind the leader does not have it yet; the leader does, if acknowledged.
            Err(err) if err.kind() == DirectGetErrorKind::NotFound => {
                leader::message(&self.stream, seq).await?
            }
            Err(err) => return Err(storage(err)),
        };
        Ok(message.and_then(|m| match self.readable(&m) {
            Ok((event, _)) => Some(event),
            Err(err) => {
                self.unreadable(seq, &err);
                None
            }
        }))
    }

    /// The `max_payload` of the server this gateway is connected to (its info is copied whole,
    /// so only after a (re)connection, not per commit).
    fn max_payload(&self) -> usize {
        if self.connected.swap(false, Ordering::AcqRel) {
            let max_payload = self.client.server_info().max_payload;
            self.max_payload.store(max_payload, Ordering::Release);
        }
        self.max_payload.load(Ordering::Acquire)
    }

    /// The event a message holds, and its dedup hash; an error for a message that is none.
    fn readable(&self, message: &StreamMessage) -> Result<(StoredEvent, String), StoreError> {
        let hash = layout::hash_of(&message.subject).ok_or_else(|| {
            StoreError::Corrupt(format!("subject {} is no event's", message.subject))
        })?;
        let event = layout::stored_event(message.sequence, &message.headers, &message.payload)?;
        Ok((event, hash.to_string()))
    }

    /// Says once that the message at `seq` is no event hookgate can read (one published to the
    /// stream's subjects by another client): readers and the sweeper pass over it, as over a
    /// removed event (it stopped every one of them, for good).
    fn unreadable(&self, seq: u64, err: &StoreError) {
        const REMEMBERED: usize = 10_000;
        let mut said = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
        if said.len() < REMEMBERED && said.insert(seq) {
            tracing::error!(seq, error = %err, "A message on the stream's subjects is no event hookgate can read; passed over (only hookgate should publish there).");
        }
    }

    /// The events at `from..=end` up to the first seq not found (removed, or not yet on the
    /// replica that answered: the caller goes on from there with [`Self::next`], which tells
    /// them apart) or until their bodies reach `bytes`: up to [`READ_AHEAD`] requests at once,
    /// fewer when the bodies seen so far (`largest`, the largest) say they would pass `bytes`,
    /// and never more than bodies of `max_payload` would fill [`IN_FLIGHT_BYTES`] (64 reads in
    /// flight of 8 MiB bodies held 512 MiB for a read bound to 16).
    async fn run_after(
        &self,
        from: u64,
        end: u64,
        bytes: usize,
        mut largest: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (mut events, mut read_bytes, mut seq) = (Vec::new(), 0, from);
        let most = (IN_FLIGHT_BYTES / self.max_payload().max(1)).clamp(1, READ_AHEAD);
        while read_bytes < bytes && seq <= end {
            let room = (bytes - read_bytes) / largest.max(1);
            let window = room.clamp(1, most) as u64;
            let last = end.min(seq.saturating_add(window - 1));
            let reads = (seq..=last).map(|seq| self.message(seq));
            for read in futures_util::future::join_all(reads).await {
                // Stops at the first gap: what came after it is read again by the caller.
                let Some(event) = read? else {
                    return Ok(events);
                };
                if read_bytes >= bytes {
                    return Ok(events);
                }
                read_bytes += event.body.len();
                largest = largest.max(event.body.len());
                events.push(event);
            }
            seq = last + 1;
        }
        Ok(events)
    }

    /// The first event at or after `from` on `filter`, if any, with its dedup hash (messages
    /// that are no event are passed over: [`Self::unreadable`]).
    async fn next(
        &self,
        filter: &str,
        mut from: u64,
    ) -> Result<Option<(StoredEvent, String)>, StoreError> {
        loop {
            let Some(message) = self.next_message(filter, from).await? else {
                return Ok(None);
            };
            match self.readable(&message) {
                Ok(read) => return Ok(Some(read)),
                Err(err) => self.unreadable(message.sequence, &err),
            }
            from = message.sequence + 1;
        }
    }

    /// The first message at or after `from` on `filter`, if any.
    async fn next_message(
        &self,
        filter: &str,
        from: u64,
    ) -> Result<Option<StreamMessage>, StoreError> {
        match self
            .stream
            .direct_get_next_for_subject(filter, Some(from))
            .await
        {
            Ok(message) => Ok(Some(message)),
            // A replica behind the leader may lack the newest: the leader answers for them.
            Err(err) if err.kind() == DirectGetErrorKind::NotFound => {
                if from <= self.last_seq.borrow().0 {
                    leader::next(&self.stream, filter, from).await
                } else {
                    Ok(None)
                }
            }
            Err(err) => Err(storage(err)),
        }
    }
}

#[async_trait]
impl Backend for JetStreamStore {
    async fn commit(&self, event: NewEvent, deadline: Duration) -> Result<Committed, StoreError> {
        self.check_open()?;
        self.check_not_went_back()?;
        let room = self
            .max_payload()
            .saturating_sub(layout::envelope_len(&event));
        if event.body.len() > room {
            return Err(StoreError::TooLarge {
                bytes: event.body.len(),
                max: room,
            });
        }
        self.publish_within(event, deadline).await
    }

    fn largest_body(&self) -> Option<usize> {
        Some(self.max_payload().saturating_sub(HEADERS_ROOM))
    }

    fn last_seq(&self) -> watch::Receiver<Seq> {
        self.last_seq.subscribe()
    }

    async fn last_seq_now(&self) -> Result<Seq, StoreError> {
        let info = self.stream.clone().get_info().await.map_err(storage)?;
        // A leaderless stream's members answer with their own state, which may lag: the end is
        // not known (this gateway's own view answered a consumer's ack of a seq another gateway
        // served 400 "beyond the last stored seq", for good, and its event 404).
        if !went_back::from_a_leader(&info) {
            return Err(storage(std::io::Error::other(
                "the stream has no leader: its last seq cannot be told now",
            )));
        }
        advance(&self.last_seq, info.state.last_sequence);
        Ok(*self.last_seq.borrow())
    }

    async fn events_after(
        &self,
        after: Seq,
        limit: usize,
        provider: Option<String>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        // A name that is no provider's holds no event; as a subject token it could be a
        // wildcard (`*`: every provider's events) or no valid subject at all.
        if provider
            .as_deref()
            .is_some_and(|name| crate::event::ProviderName::parse(name).is_err())
        {
            return Ok(Vec::new());
        }
        let last = self.last_seq.borrow().0;
        let filter = layout::events_filter(provider.as_deref());
        let (mut events, mut bytes) = (Vec::new(), 0);
        let mut from = after.0.saturating_add(1);
        while events.len() < limit && bytes < READ_BODY_BYTES && from <= last && after.0 < u64::MAX
        {
            // The first event at or after `from`, whatever was removed before it.
            match self.next(&filter, from).await? {
                Some((event, _)) if event.seq <= last => {
                    from = event.seq + 1;
                    bytes += event.body.len();
                    events.push(event);
                }
                _ => break,
            }
            // Then, of all providers' events, the seqs right after it, several at once (a
            // stream's seqs are dense but for removed events).
            if provider.is_none() && events.len() < limit && bytes < READ_BODY_BYTES && from <= last
            {
                let end = last.min(from.saturating_add((limit - events.len()) as u64 - 1));
                let largest = events.iter().map(|e| e.body.len()).max().unwrap_or(0);
                let read = self
                    .run_after(from, end, READ_BODY_BYTES - bytes, largest)
                    .await?;
                from += read.len() as u64;
                bytes += crate::store::body_bytes(&read);
                events.extend(read);
            }
        }
        Ok(events)
    }

    async fn event(&self, seq: Seq) -> Result<Option<StoredEvent>, StoreError> {
        // A seq past this gateway's `last_seq` may be another gateway's event of a moment ago.
        if seq.0 == 0 || (seq > *self.last_seq.borrow() && seq > self.last_seq_now().await?) {
            return Ok(None);
        }
        self.message(seq.0).await
    }

    async fn output(&self, output: &str) -> Result<OutputState, StoreError> {
        Ok(self.position(output).await?.state())
    }

    async fn change(&self, output: &str, changes: Vec<Change>) -> Result<(), StoreError> {
        // A restart, maybe another gateway's already, moves the outputs back to the stream's
        // end: a late write from before it would carry a cursor past that end again.
        self.check_not_went_back()?;
        let plan = Plan::new(changes);
        for (shard, changes) in &plan.adding {
            let key = layout::dead_key(output, *shard);
            self.update(&key, |dead: &mut DeadShard| dead.apply(changes))
                .await?;
        }
        if !plan.position.is_empty() {
            let key = layout::output_key(output);
            self.update(&key, |position: &mut Position| {
                position.apply(&plan.position)
            })
            .await?;
        }
        for (shard, changes) in &plan.removing {
            let key = layout::dead_key(output, *shard);
            self.update(&key, |dead: &mut DeadShard| dead.apply(changes))
                .await?;
        }
        Ok(())
    }

    async fn marked(
        &self,
        output: &str,
        mark: Mark,
        range: RangeInclusive<Seq>,
        limit: usize,
    ) -> Result<Vec<(Seq, Option<DeadRecord>)>, StoreError> {
        if mark != Mark::Dead {
            let position = self.position(output).await?;
            let marked = position.marked(mark, range, limit);
            return Ok(marked.into_iter().map(|seq| (seq, None)).collect());
        }
        let (first, last) = (shard_of(range.start().0), shard_of(range.end().0));
        // A narrow range (a dispatcher's batch spans two or three shards) reads its shards
        // directly: listing every shard of the output (a STREAM.INFO of its subjects) for each
        // batch grew with every shard ever made.
        const READ_DIRECTLY: u64 = 16;
        let shards = if last - first < READ_DIRECTLY {
            (first..=last).collect()
        } else {
            self.dead_shards(output).await?
        };
        let mut found = Vec::new();
        for shard in shards {
            if shard < first || shard > last || found.len() >= limit {
                continue;
            }
            let dead = self.dead_shard(output, shard).await?;
            let wanted = dead.0.range(range.start().0..=range.end().0);
            for (seq, record) in wanted.take(limit - found.len()) {
                found.push((Seq(*seq), Some(record.clone())));
            }
        }
        Ok(found)
    }

    async fn count_marked(&self, output: &str, mark: Mark) -> Result<u64, StoreError> {
        let count = match mark {
            Mark::Replay => self.position(output).await?.replay.len(),
            Mark::Settled => self.position(output).await?.settled.len(),
            Mark::Dead => self.count_dead(output).await?,
        };
        Ok(u64::try_from(count).unwrap_or(u64::MAX))
    }

    /// The position (replay marks) read before and after the dead record, which live in two
    /// values: a replay marks before it removes the dead record, a replay that died again
    /// records dead before it unmarks, so one of the reads sees either move (read once, an
    /// event between the two showed as delivered).
    async fn marks(&self, output: &str, seq: Seq) -> Result<Marks, StoreError> {
        let before = self.position(output).await?;
        let dead = self.dead_shard(output, shard_of(seq.0)).await?;
        let position = self.position(output).await?;
        Ok(Marks {
            dead: dead.0.get(&seq.0).cloned(),
            replay: before.replay.contains(&seq.0) || position.replay.contains(&seq.0),
            settled: position.settled.contains(&seq.0),
        })
    }

    async fn sync_cursor(&self, provider: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let entry = leader::entry(&self.kv, &layout::sync_key(provider)).await?;
        let mut revisions = self
            .sync_revisions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match entry {
            Some(entry) => {
                revisions.insert(provider.to_string(), entry.revision);
                Ok(entry.put.then(|| entry.value.to_vec()))
            }
            None => {
                revisions.remove(provider);
                Ok(None)
            }
        }
    }

    fn largest_sync_cursor(&self) -> usize {
        self.max_payload().saturating_sub(HEADERS_ROOM)
    }

    /// Compare-and-set against the revision this node last read or wrote: fails when another
    /// node moved the cursor since (this one then reads it again before its next write).
    async fn set_sync_cursor(&self, provider: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.check_not_went_back()?;
        let key = layout::sync_key(provider);
        let known = self.sync_revision(provider);
        let written = match known {
            Some(revision) => self
                .kv
                .update(&key, Bytes::from(value), revision)
                .await
                .map_err(|err| {
                    (
                        err.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        storage(err),
                    )
                }),
            None => self
                .kv
                .create(&key, Bytes::from(value))
                .await
                .map_err(|err| {
                    (
                        err.kind() == kv::CreateErrorKind::AlreadyExists,
                        storage(err),
                    )
                }),
        };
        let mut revisions = self
            .sync_revisions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match written {
            Ok(revision) => {
                revisions.insert(provider.to_string(), revision);
                Ok(())
            }
            Err((true, _)) => {
                revisions.remove(provider);
                Err(StoreError::Storage(Arc::new(std::io::Error::other(format!(
                    "the sync cursor of {provider} was moved by another gateway since this one read it"
                )))))
            }
            Err((false, err)) => Err(err),
        }
    }

    async fn sweep(
        &self,
        cutoffs: Cutoffs,
        outputs: Arc<Vec<Output>>,
    ) -> Result<Swept, StoreError> {
        let events = self.sweep_events(cutoffs, &outputs).await?;
        let (forgotten, more_due) = self.forget_dedup_keys(cutoffs.dedup_ms).await?;
        Ok(Swept {
            events: events.events,
            dedup_keys: events.dedup_keys + forgotten,
            disk_freed: 0,
            more: events.more || more_due,
            // The dedup keys' walk, when at its bound, is not held up by the events' (after a
            // restart it walks again over keys it had marked, none counted).
            held_only: events.more && events.events == 0 && !more_due,
        })
    }

    async fn hold_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        self.check_open()?;
        leases::hold(&self.leases, name, holder).await
    }

    async fn renew_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        self.check_open()?;
        leases::renew(&self.leases, name, holder).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        leases::release(&self.leases, name, holder).await
    }

    fn lease_time(&self) -> Option<Duration> {
        Some(self.lease_time)
    }

    async fn announce(
        &self,
        holder: &str,
        fingerprint: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.check_open()?;
        leases::announce(&self.leases, holder, fingerprint).await
    }

    async fn size_on_disk(&self) -> Result<u64, StoreError> {
        let events = self.stream.get_info().await.map_err(storage)?.state.bytes;
        let state = self.kv.stream_name.clone();
        let state = self
            .js
            .get_stream(state)
            .await
            .map_err(storage)?
            .cached_info()
            .state
            .bytes;
        Ok(events + state)
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Whether this gateway's NATS client still works: with a connection, its task writes out
    /// what it is given within `within`. Servers out of reach are not this process's failure
    /// (commits answer 503 until the client reconnects, which a restart would not hasten; under
    /// systemd's watchdog it only turned an outage of the servers into restart loops, every
    /// gateway's at once, refusing connections meanwhile), nor is a JetStream without quorum.
    async fn ping(&self, within: Duration) -> Result<(), StoreError> {
        self.check_open()?;
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Ok(());
        }
        tokio::time::timeout(within, self.client.flush())
            .await
            .map_err(|_| StoreError::DeadlineExceeded)?
            .map_err(storage)?;
        Ok(())
    }

    /// Connected, and the stream's leader answered the follower's last look (every 100 ms): a
    /// flush of the connection alone said ready while a JetStream without quorum, or a stream
    /// without a leader, refused every commit.
    async fn ready(&self, _within: Duration) -> bool {
        self.check_open().is_ok()
            && self.check_not_went_back().is_ok()
            && self.client.connection_state() == async_nats::connection::State::Connected
            && self.stream_answers.load(Ordering::SeqCst)
    }

    /// A NATS connection that drops is not a failure: commits answer 503 until the client
    /// reconnects on its own. A stream that went back is (`went_back.rs`).
    async fn failed(&self) {
        self.went_back.cancelled().await;
    }

    async fn close(&self) -> bool {
        self.open.store(false, Ordering::SeqCst);
        if let Err(err) = self.client.drain().await {
            tracing::warn!(error = %err, "Draining the NATS connection failed.");
        }
        // Every 200 was a quorum's ack: nothing is left to make durable here.
        true
    }
}

/// Moves `last_seq` forward to `seq` (never back).
fn advance(last_seq: &watch::Sender<Seq>, seq: u64) {
    last_seq.send_if_modified(|last| {
        let moved = seq > last.0;
        if moved {
            *last = Seq(seq);
        }
        moved
    });
}

fn storage(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Storage(Arc::new(err))
}
