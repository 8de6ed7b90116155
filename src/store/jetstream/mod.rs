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

mod layout;
mod leases;
mod outputs;
mod retention;

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DirectGetErrorKind, DiscardPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::ServerAddr;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use futures_util::TryStreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use self::outputs::{shard_of, DeadShard, Plan, Position};
use super::{
    Backend, Change, Committed, Cutoffs, DeadRecord, Mark, Marks, NewEvent, Output, OutputState,
    StoreError, StoredEvent, Swept,
};
use crate::config::{JetStreamConfig, NatsAuth};
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::store::slow_commit::{ms, SlowCommits};

/// "maximum messages per subject exceeded": the subject (the dedup key) holds an event.
const MAX_MSGS_PER_SUBJECT_EXCEEDED: ErrorCode = ErrorCode(10077);
/// "duplicate message id is in process": a publish with the same `Nats-Msg-Id` (a copy of this
/// event, through another gateway) is being stored right now; its outcome is not known yet.
const DUPLICATE_IN_PROCESS: ErrorCode = ErrorCode(10158);
/// How long a publish refused with [`DUPLICATE_IN_PROCESS`] waits before it is sent again.
const IN_PROCESS_PAUSE: Duration = Duration::from_millis(2);
/// JetStream's own duplicate window for `Nats-Msg-Id` (its default).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Subjects one commit tries, at most (a chain longer than this is an id whose dedup key
/// expired this many times while its copies stayed).
const PUBLISH_ROUNDS: usize = 16;
/// Compare-and-set rounds of one `change` before it gives up.
const CAS_ROUNDS: usize = 64;
/// Direct gets of one read in flight at once.
const READ_AHEAD: usize = 64;
/// How long a start waits for a JetStream that is not ready (a cluster electing leaders).
const OPEN_PATIENCE: Duration = Duration::from_secs(120);
/// How often a gateway asks the stream for its last sequence, to see other gateways' events.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

/// The store on a NATS JetStream stream and KV bucket.
pub struct JetStreamStore {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    kv: kv::Store,
    /// Leases: an entry lapses `lease_time` after it was last written.
    leases: kv::Store,
    /// See [`lapse_time`].
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
}

/// How long a publish's parts took, over its rounds (for the slow-publish log line).
#[derive(Debug, Default)]
struct PublishTimes {
    /// Handing the message to the NATS client.
    send: Duration,
    /// Waiting for the stream's acknowledgement (a quorum of replicas holds the message).
    ack: Duration,
    /// Looking up the first copy of a duplicate, and whether its dedup key expired.
    lookup: Duration,
    rounds: u32,
}

/// How to reach the servers: the name, the connect timeout, the credentials and TLS.
async fn connect_options(config: &JetStreamConfig) -> std::io::Result<async_nats::ConnectOptions> {
    let text =
        |secret: &crate::config::Secret| String::from_utf8_lossy(secret.expose()).into_owned();
    let options = async_nats::ConnectOptions::new()
        .name("hookgate")
        .connection_timeout(Duration::from_secs(5));
    let mut options = match &config.auth {
        NatsAuth::None => options,
        NatsAuth::Token(token) => options.token(text(token)),
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), text(password))
        }
        NatsAuth::NKey(seed) => options.nkey(text(seed)),
        NatsAuth::Credentials(path) => options.credentials_file(path).await?,
    };
    if let Some(tls) = &config.tls {
        options = options.require_tls(true);
        if let Some(ca) = &tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &tls.client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    Ok(options)
}

impl JetStreamStore {
    /// Connects, and creates the stream and the bucket if they are missing (an existing
    /// stream's settings are updated to these).
    pub async fn open(
        config: &JetStreamConfig,
        metrics: Arc<Metrics>,
    ) -> Result<JetStreamStore, StoreError> {
        let servers = config
            .servers
            .iter()
            .map(|server| server.parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(storage)?;
        let unreachable = |err: &dyn std::fmt::Display| {
            StoreError::Storage(Arc::new(std::io::Error::other(format!(
                "cannot connect to the NATS servers {}: {err}",
                config.servers.join(", ")
            ))))
        };
        let options = connect_options(config)
            .await
            .map_err(|err| unreachable(&err))?;
        let client = options
            .connect(servers)
            .await
            .map_err(|err| unreachable(&err))?;
        let version = client.server_info().version;
        if !supported(&version) {
            return Err(StoreError::Storage(Arc::new(std::io::Error::other(
                format!(
                "nats-server {version} is too old for the JetStream store: it needs 2.10 or later"
            ),
            ))));
        }
        let js = jetstream::new(client.clone());
        // A cluster that is electing leaders or catching up after a restart times its requests
        // out: wait for it rather than fail the start.
        let started = Instant::now();
        let (stream, kv, leases) = loop {
            match set_up(&js, config).await {
                Ok(handles) => break handles,
                Err(err) if is_not_ready(&*err) && started.elapsed() < OPEN_PATIENCE => {
                    tracing::warn!(error = %crate::error_chain::error_chain(&*err), "JetStream is not ready for the store yet; asking again in 1 s.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(err) => return Err(StoreError::Storage(Arc::from(err))),
            }
        };
        let last = stream.cached_info().state.last_sequence;
        let last_seq = Arc::new(watch::Sender::new(Seq(last)));
        tokio::spawn(follow(stream.clone(), Arc::downgrade(&last_seq)));
        let slow_counted = metrics.commits_slow.clone();
        Ok(JetStreamStore {
            client,
            js,
            stream,
            kv,
            leases,
            lease_time: lapse_time(config.lease_time),
            last_seq,
            sync_revisions: Mutex::default(),
            open: AtomicBool::new(true),
            metrics,
            sweep_from: AtomicU64::new(0),
            dedup_from: AtomicU64::new(0),
            slow: Mutex::new(SlowCommits::new(
                crate::config::DEFAULT_SLOW_COMMIT,
                slow_counted,
            )),
        })
    }

    /// Logs the publishes slower than `bound` (`[store] slow_commit`; zero: never).
    pub fn with_slow_commit(self, bound: Duration) -> Self {
        let counted = self.metrics.commits_slow.clone();
        JetStreamStore {
            slow: Mutex::new(SlowCommits::new(bound, counted)),
            ..self
        }
    }

    /// Counts a publish that took `total`, and logs it when it was slow and no line was logged
    /// in the last second.
    fn note_publish(&self, total: Duration, times: &PublishTimes, outcome: &str) {
        let to_log = self
            .slow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .to_log(total);
        let Some(unlogged) = to_log else {
            return;
        };
        tracing::warn!(
            total_ms = ms(total),
            send_ms = ms(times.send),
            ack_ms = ms(times.ack),
            lookup_ms = ms(times.lookup),
            rounds = times.rounds,
            outcome,
            unlogged,
            "A publish was slow: its answer came over [store] slow_commit after it was sent."
        );
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.open.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::Closed)
        }
    }

    fn acknowledged(&self, seq: u64) {
        advance(&self.last_seq, seq);
    }

    /// Publishes and waits for the stream's ack. A refusal of the subject is a duplicate of
    /// the copy there, unless that copy's dedup key has expired: then the next subject of the
    /// chain is tried. While a copy is in process elsewhere, the publish is sent again until
    /// that copy's outcome decides (bounded by the caller's deadline).
    async fn publish(
        &self,
        event: NewEvent,
        times: &mut PublishTimes,
    ) -> Result<Committed, StoreError> {
        let hash = layout::dedup_hash(event.provider.as_str(), event.dedup_id.as_str());
        let base = layout::event_subject(event.provider.as_str(), &hash);
        let mut subject = base.clone();
        let mut msg_id = hash.clone();
        let mut round = 0;
        while round < PUBLISH_ROUNDS {
            // Built for each publish rather than cloned: building, cloning and dropping the
            // headers took 7 % of a gateway's CPU in `cargo bench --bench cluster`.
            let headers = layout::headers(&event, &msg_id);
            times.rounds += 1;
            let sending = Instant::now();
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers, event.body.clone())
                .await
                .map_err(storage)?;
            let acking = Instant::now();
            times.send += acking - sending;
            let acked = ack.await;
            let looking = Instant::now();
            times.ack += looking - acking;
            let first = match acked {
                Ok(ack) if ack.duplicate => ack.sequence,
                Ok(ack) => {
                    self.acknowledged(ack.sequence);
                    return Ok(Committed::Accepted(Seq(ack.sequence)));
                }
                Err(err) if is_code(&err, DUPLICATE_IN_PROCESS) => {
                    tokio::time::sleep(IN_PROCESS_PAUSE).await;
                    continue;
                }
                Err(err) if is_code(&err, MAX_MSGS_PER_SUBJECT_EXCEEDED) => {
                    match self.stream.direct_get_last_for_subject(&subject).await {
                        Ok(first) => first.sequence,
                        // Swept since the refusal: the subject is free again.
                        Err(err) if err.kind() == DirectGetErrorKind::NotFound => continue,
                        Err(err) => return Err(storage(err)),
                    }
                }
                Err(err) => return Err(storage(err)),
            };
            let forgotten = self.is_forgotten(&hash, first).await;
            times.lookup += looking.elapsed();
            if !forgotten? {
                return Ok(Committed::Duplicate(Seq(first)));
            }
            subject = layout::next_subject(&base, first);
            msg_id = layout::next_subject(&hash, first);
            round += 1;
        }
        Err(StoreError::Corrupt(format!(
            "no free subject after {PUBLISH_ROUNDS} tries from {base}"
        )))
    }

    /// Whether the dedup key of the event at `seq` (of this hash) has expired.
    async fn is_forgotten(&self, hash: &str, seq: u64) -> Result<bool, StoreError> {
        let key = layout::forgotten_key(hash, seq);
        Ok(self.kv.get(key).await.map_err(storage)?.is_some())
    }

    async fn message(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        match self.stream.direct_get(seq).await {
            Ok(message) => {
                layout::stored_event(message.sequence, &message.headers, &message.payload).map(Some)
            }
            Err(err) if err.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(err) => Err(storage(err)),
        }
    }

    /// The events at `from..=end` up to the first seq not found (removed, or not yet on the
    /// replica that answered: the caller goes on from there with [`Self::next`], which tells
    /// them apart), [`READ_AHEAD`] requests at once.
    async fn run_after(&self, from: u64, end: u64) -> Result<Vec<StoredEvent>, StoreError> {
        use futures_util::{StreamExt as _, TryStreamExt as _};
        let read: Vec<Option<StoredEvent>> = futures_util::stream::iter(from..=end)
            .map(|seq| self.message(seq))
            .buffered(READ_AHEAD)
            .try_collect()
            .await?;
        Ok(read.into_iter().map_while(|event| event).collect())
    }

    /// The first event at or after `from` on `filter`, if any, with its dedup hash.
    async fn next(
        &self,
        filter: &str,
        from: u64,
    ) -> Result<Option<(StoredEvent, String)>, StoreError> {
        match self
            .stream
            .direct_get_next_for_subject(filter, Some(from))
            .await
        {
            Ok(message) => {
                let hash = layout::hash_of(&message.subject)
                    .unwrap_or_default()
                    .to_string();
                let event =
                    layout::stored_event(message.sequence, &message.headers, &message.payload)?;
                Ok(Some((event, hash)))
            }
            Err(err) if err.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(err) => Err(storage(err)),
        }
    }

    fn sync_revision(&self, provider: &str) -> Option<u64> {
        let revisions = self
            .sync_revisions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        revisions.get(provider).copied()
    }

    /// An output's record and its revision (None: never written).
    /// A value of the bucket and its revision; the default when it is missing.
    async fn entry<T: DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> Result<(T, Option<u64>), StoreError> {
        match self.kv.entry(key).await.map_err(storage)? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                Ok((outputs::decode(&entry.value)?, Some(entry.revision)))
            }
            _ => Ok((T::default(), None)),
        }
    }

    /// Applies `apply` to a value of the bucket by compare-and-set on its revision, read again
    /// and applied again when another writer got there first.
    async fn update<T>(&self, key: &str, apply: impl Fn(&mut T)) -> Result<(), StoreError>
    where
        T: Serialize + DeserializeOwned + Default + PartialEq + Clone,
    {
        for _ in 0..CAS_ROUNDS {
            let (mut value, revision) = self.entry::<T>(key).await?;
            let before = value.clone();
            apply(&mut value);
            if revision.is_some() && value == before {
                return Ok(());
            }
            let bytes = Bytes::from(outputs::encode(&value));
            let written = match revision {
                Some(revision) => self.kv.update(key, bytes, revision).await.map_err(|err| {
                    (
                        err.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        storage(err),
                    )
                }),
                None => self.kv.create(key, bytes).await.map_err(|err| {
                    (
                        err.kind() == kv::CreateErrorKind::AlreadyExists,
                        storage(err),
                    )
                }),
            };
            match written {
                Ok(_) => return Ok(()),
                Err((true, _)) => continue,
                Err((false, err)) => return Err(err),
            }
        }
        Err(StoreError::Storage(Arc::new(std::io::Error::other(
            format!("{key}: {CAS_ROUNDS} compare-and-set rounds lost to other writers"),
        ))))
    }

    async fn position(&self, output: &str) -> Result<Position, StoreError> {
        Ok(self.entry(&layout::output_key(output)).await?.0)
    }

    async fn dead_shard(&self, output: &str, shard: u64) -> Result<DeadShard, StoreError> {
        Ok(self.entry(&layout::dead_key(output, shard)).await?.0)
    }

    /// The shards of an output's dead records that exist, in order.
    async fn dead_shards(&self, output: &str) -> Result<Vec<u64>, StoreError> {
        let prefix = format!("{}{}", self.kv.prefix, layout::dead_prefix(output));
        let mut subjects = self
            .kv
            .stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .map_err(storage)?;
        let mut shards = Vec::new();
        while let Some((subject, _)) = subjects.try_next().await.map_err(storage)? {
            if let Some(shard) = subject.strip_prefix(&prefix).and_then(|s| s.parse().ok()) {
                shards.push(shard);
            }
        }
        shards.sort_unstable();
        Ok(shards)
    }

    /// Every shard of an output's dead records, read in one pass over the bucket's stream (a
    /// watch from the last value of each key) rather than one request per shard.
    async fn every_dead_shard(&self, output: &str) -> Result<Vec<DeadShard>, StoreError> {
        if self.dead_shards(output).await?.is_empty() {
            // A watch of keys that have no value would wait for one.
            return Ok(Vec::new());
        }
        let mut watch = self
            .kv
            .watch_with_history(format!("{}>", layout::dead_prefix(output)))
            .await
            .map_err(storage)?;
        let mut shards = Vec::new();
        while let Some(entry) = watch.try_next().await.map_err(storage)? {
            if entry.operation == kv::Operation::Put {
                shards.push(outputs::decode(&entry.value)?);
            }
            if entry.delta == 0 {
                break;
            }
        }
        Ok(shards)
    }
}

#[async_trait]
impl Backend for JetStreamStore {
    async fn commit(&self, event: NewEvent, deadline: Duration) -> Result<Committed, StoreError> {
        self.check_open()?;
        // A publish that times out may still be stored: the sender's retry is then a duplicate.
        let started = Instant::now();
        let mut times = PublishTimes::default();
        let published = tokio::time::timeout(deadline, self.publish(event, &mut times))
            .await
            .map_err(|_| StoreError::DeadlineExceeded)
            .and_then(|published| published);
        let outcome = match &published {
            Ok(Committed::Accepted(_)) => "accepted",
            Ok(Committed::Duplicate(_)) => "duplicate",
            Err(_) => "failed",
        };
        self.note_publish(started.elapsed(), &times, outcome);
        let committed = published?;
        match committed {
            Committed::Accepted(_) => self.metrics.events_stored.inc(),
            Committed::Duplicate(_) => self.metrics.duplicates.inc(),
        };
        Ok(committed)
    }

    fn last_seq(&self) -> watch::Receiver<Seq> {
        self.last_seq.subscribe()
    }

    async fn events_after(
        &self,
        after: Seq,
        limit: usize,
        provider: Option<String>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let last = self.last_seq.borrow().0;
        let filter = layout::events_filter(provider.as_deref());
        let mut events = Vec::new();
        let mut from = after.0.saturating_add(1);
        while events.len() < limit && from <= last && after.0 < u64::MAX {
            // The first event at or after `from`, whatever was removed before it.
            match self.next(&filter, from).await? {
                Some((event, _)) if event.seq <= last => {
                    from = event.seq + 1;
                    events.push(event);
                }
                _ => break,
            }
            // Then, of all providers' events, the seqs right after it, several at once (a
            // stream's seqs are dense but for removed events).
            if provider.is_none() && events.len() < limit && from <= last {
                let end = last.min(from.saturating_add((limit - events.len()) as u64 - 1));
                let read = self.run_after(from, end).await?;
                from += read.len() as u64;
                events.extend(read);
            }
        }
        Ok(events)
    }

    async fn event(&self, seq: Seq) -> Result<Option<StoredEvent>, StoreError> {
        if seq.0 == 0 || seq > *self.last_seq.borrow() {
            return Ok(None);
        }
        self.message(seq.0).await
    }

    async fn output(&self, output: &str) -> Result<OutputState, StoreError> {
        Ok(self.position(output).await?.state())
    }

    async fn change(&self, output: &str, changes: Vec<Change>) -> Result<(), StoreError> {
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
        let mut found = Vec::new();
        for shard in self.dead_shards(output).await? {
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
            Mark::Dead => self
                .every_dead_shard(output)
                .await?
                .iter()
                .map(|dead| dead.0.len())
                .sum(),
        };
        Ok(u64::try_from(count).unwrap_or(u64::MAX))
    }

    async fn marks(&self, output: &str, seq: Seq) -> Result<Marks, StoreError> {
        let position = self.position(output).await?;
        let dead = self.dead_shard(output, shard_of(seq.0)).await?;
        Ok(Marks {
            dead: dead.0.get(&seq.0).cloned(),
            replay: position.replay.contains(&seq.0),
            settled: position.settled.contains(&seq.0),
        })
    }

    async fn sync_cursor(&self, provider: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let entry = self
            .kv
            .entry(layout::sync_key(provider))
            .await
            .map_err(storage)?;
        let mut revisions = self
            .sync_revisions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match entry {
            Some(entry) => {
                revisions.insert(provider.to_string(), entry.revision);
                Ok((entry.operation == kv::Operation::Put).then(|| entry.value.to_vec()))
            }
            None => {
                revisions.remove(provider);
                Ok(None)
            }
        }
    }

    /// Compare-and-set against the revision this node last read or wrote: fails when another
    /// node moved the cursor since (this one then reads it again before its next write).
    async fn set_sync_cursor(&self, provider: &str, value: Vec<u8>) -> Result<(), StoreError> {
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
        let forgotten = self.forget_dedup_keys(cutoffs.dedup_ms).await?;
        Ok(Swept {
            events: events.events,
            dedup_keys: events.dedup_keys + forgotten,
            disk_freed: 0,
            more: events.more,
        })
    }

    async fn hold_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        self.check_open()?;
        leases::hold(&self.leases, name, holder).await
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

    async fn ping(&self, within: Duration) -> Result<(), StoreError> {
        self.check_open()?;
        tokio::time::timeout(within, self.js.query_account())
            .await
            .map_err(|_| StoreError::DeadlineExceeded)?
            .map_err(storage)?;
        Ok(())
    }

    /// A NATS connection that drops is not a failure: commits answer 503 until the client
    /// reconnects on its own. So this never resolves.
    async fn failed(&self) {
        std::future::pending::<()>().await;
    }

    async fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        if let Err(err) = self.client.drain().await {
            tracing::warn!(error = %err, "Draining the NATS connection failed.");
        }
    }
}

/// How long a lease entry lives without renewal: two thirds of `lease_time`, so that with the
/// waits of [`crate::lease`] (a twelfth of it) and the server's expiry (measured at up to a few
/// hundred milliseconds), another gateway takes a dead one's work over within `lease_time`.
type SetUpError = Box<dyn std::error::Error + Send + Sync>;

/// Creates (or updates to these settings) the stream and the two buckets, and returns them.
async fn set_up(
    js: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<(stream::Stream, kv::Store, kv::Store), SetUpError> {
    js.create_or_update_stream(stream::Config {
        name: config.stream.clone(),
        subjects: vec![layout::EVENTS.to_string()],
        max_messages_per_subject: 1,
        discard: DiscardPolicy::New,
        discard_new_per_subject: true,
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: config.replicas,
        storage: StorageType::File,
        allow_direct: true,
        ..Default::default()
    })
    .await?;
    let stream = js.get_stream(&config.stream).await?;
    let kv = js
        .create_or_update_key_value(kv::Config {
            bucket: layout::bucket(&config.stream),
            history: 1,
            storage: StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await?;
    let leases = js
        .create_or_update_key_value(kv::Config {
            bucket: layout::lease_bucket(&config.stream),
            history: 1,
            max_age: lapse_time(config.lease_time),
            storage: StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await?;
    Ok((stream, kv, leases))
}

/// Whether a set-up error says JetStream could not answer yet (a request timed out, or it is
/// unavailable), as while a cluster elects leaders, rather than that the settings are refused.
fn is_not_ready(err: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::context::{
        CreateKeyValueError, CreateKeyValueErrorKind, CreateStreamError, CreateStreamErrorKind,
        GetStreamError, GetStreamErrorKind,
    };
    let mut next = Some(err);
    while let Some(err) = next {
        let not_ready = if let Some(err) = err.downcast_ref::<CreateStreamError>() {
            matches!(
                err.kind(),
                CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable
            )
        } else if let Some(err) = err.downcast_ref::<GetStreamError>() {
            matches!(err.kind(), GetStreamErrorKind::Request)
        } else if let Some(err) = err.downcast_ref::<CreateKeyValueError>() {
            matches!(err.kind(), CreateKeyValueErrorKind::TimedOut)
        } else {
            false
        };
        if not_ready {
            return true;
        }
        next = err.source();
    }
    false
}

fn lapse_time(lease_time: Duration) -> Duration {
    lease_time * 2 / 3
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

/// Follows the stream's last sequence, so that events other gateways stored reach this one's
/// readers (dispatchers wait on `last_seq`). The stream's state counts only stored messages: in
/// a cluster, those its replicas' quorum has, as a publish ack does. Ends with the store.
async fn follow(stream: stream::Stream, last_seq: Weak<watch::Sender<Seq>>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let Some(sender) = last_seq.upgrade() else {
            return;
        };
        match stream.get_info().await {
            Ok(info) => {
                failing = false;
                advance(&sender, info.state.last_sequence);
            }
            Err(err) if !failing => {
                failing = true;
                tracing::warn!(error = %err, "Cannot read the stream's last sequence; other gateways' events wait.");
            }
            Err(_) => {}
        }
    }
}

/// nats-server 2.10 or later: tested with 2.10.26 and 2.15.1; against Debian's 2.9.10 the
/// client cannot read the answer to the stream's creation.
fn supported(version: &str) -> bool {
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 10)
}

/// Whether a publish failed with this JetStream error code.
fn is_code(err: &jetstream::context::PublishError, code: ErrorCode) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .is_some_and(|source| source.error_code() == code)
}

fn storage(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Storage(Arc::new(err))
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_versions() {
        assert!(super::supported("2.10.26"));
        assert!(super::supported("2.15.1"));
        assert!(super::supported("3.0.0"));
        assert!(!super::supported("2.9.10"));
        assert!(!super::supported("garbage"));
    }
}
