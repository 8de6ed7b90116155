//! Storing an event: a publish to its dedup subject, a duplicate told by the stream's refusal of
//! a second message on that subject, and the slow publishes logged.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, ErrorCode};

use super::{layout, leader, storage, went_back, JetStreamStore};
use crate::event::Seq;
use crate::store::slow_commit::ms;
use crate::store::{Committed, NewEvent, StoreError};

/// "store failed": the stream refused to store the message, why in the error's text; only
/// [`SUBJECT_HOLDS_A_MESSAGE`] is a duplicate (a stream full under an operator's `max_bytes` or
/// `max_msgs` is the same code).
const STREAM_STORE_FAILED: ErrorCode = ErrorCode(10077);
/// The text of a [`STREAM_STORE_FAILED`] refusal because the subject (the dedup key) holds an
/// event.
const SUBJECT_HOLDS_A_MESSAGE: &str = "maximum messages per subject exceeded";
/// "duplicate message id is in process": a publish with the same `Nats-Msg-Id` (a copy of this
/// event, through another gateway) is being stored right now; its outcome is not known yet.
const DUPLICATE_IN_PROCESS: ErrorCode = ErrorCode(10158);
/// How long a publish refused with [`DUPLICATE_IN_PROCESS`] first waits before it looks for the
/// other copy (then twice as long each time, up to 64 ms).
const IN_PROCESS_PAUSE: Duration = Duration::from_millis(2);
/// How long it looks for the other copy before it sends its own again.
const COPY_PATIENCE: Duration = Duration::from_millis(500);
/// Subjects one commit tries, at most (a chain longer than this is an id whose dedup key
/// expired this many times while its copies stayed).
const PUBLISH_ROUNDS: usize = 16;
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

impl JetStreamStore {
    /// Publishes `event` within `deadline`, counts it, and logs it when it was slow.
    pub async fn publish_within(
        &self,
        event: NewEvent,
        deadline: Duration,
    ) -> Result<Committed, StoreError> {
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
            // The stream gives this message a seq above every one acknowledged before it is
            // sent, unless it went back (`went_back.rs`).
            let seen = self.last_seq.borrow().0;
            let sending = Instant::now();
            let ack = self
                .publisher
                .publish_with_headers(subject.clone(), headers, event.body.clone())
                .await
                .map_err(storage)?;
            let acking = Instant::now();
            times.send += acking - sending;
            let acked = ack.await;
            let looking = Instant::now();
            times.ack += looking - acking;
            let first = match acked {
                Ok(ack) if ack.duplicate => {
                    // The copy that `Nats-Msg-Id` names may have been removed since (after the
                    // stream went back): then the subject is free, under another message id.
                    let there = leader::last(&self.stream, &subject).await?;
                    if there.is_none_or(|copy| copy.sequence != ack.sequence) {
                        msg_id = format!("{msg_id}/{}", ack.sequence);
                        round += 1;
                        continue;
                    }
                    ack.sequence
                }
                Ok(ack) if ack.sequence <= seen => {
                    let stream = &self.stream.cached_info().config.name;
                    went_back::declare(&self.went_back, stream, seen, ack.sequence);
                    // Not answered 200, so not left where an output's cursor passed: the
                    // sender's retry, after the restart, stores it above the cursors.
                    if let Err(err) = self.stream.delete_message(ack.sequence).await {
                        tracing::error!(seq = ack.sequence, error = %err, "Cannot remove the event stored at a seq the stream had given before; if an output had passed it, that output never receives it.");
                    }
                    return Err(went_back::went_back_error(stream));
                }
                Ok(ack) => {
                    self.acknowledged(ack.sequence);
                    return Ok(Committed::Accepted(Seq(ack.sequence)));
                }
                // The other copy's outcome is looked for, not asked again with this body (sent
                // every 2 ms, a large body went out hundreds of times while a slow quorum
                // decided); if it never shows, the publish is sent again.
                Err(err) if is_code(&err, DUPLICATE_IN_PROCESS) => {
                    match self.copy_stored(&subject).await? {
                        Some(first) => first,
                        None => continue,
                    }
                }
                // Any other refusal to store (a stream full under an operator's `max_bytes`) is
                // an error at once: taken for a duplicate whose copy was swept, the body was
                // sent again every few ms until the deadline.
                Err(err)
                    if is_code(&err, STREAM_STORE_FAILED)
                        && err.to_string().contains(SUBJECT_HOLDS_A_MESSAGE) =>
                {
                    // The leader's answer: a replica behind it may not have the copy yet.
                    match leader::last(&self.stream, &subject).await? {
                        Some(first) => first.sequence,
                        // Swept since the refusal: the subject is free again.
                        None => {
                            tokio::time::sleep(IN_PROCESS_PAUSE).await;
                            continue;
                        }
                    }
                }
                Err(err) => return Err(storage(err)),
            };
            let forgotten = self.is_forgotten(&hash, first).await;
            times.lookup += looking.elapsed();
            if !forgotten? {
                // Stored, maybe through another gateway, so committed (with every seq below
                // it): readable here as soon as it is answered, as on sled.
                self.acknowledged(first);
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

    /// The seq of the copy another publish is storing on `subject`, once its leader holds it;
    /// `None` if it does not show within half a second (that publish failed: send this one).
    async fn copy_stored(&self, subject: &str) -> Result<Option<u64>, StoreError> {
        let mut pause = IN_PROCESS_PAUSE;
        let mut waited = Duration::ZERO;
        while waited < COPY_PATIENCE {
            tokio::time::sleep(pause).await;
            waited += pause;
            if let Some(copy) = leader::last(&self.stream, subject).await? {
                return Ok(Some(copy.sequence));
            }
            pause = (pause * 2).min(Duration::from_millis(64));
        }
        Ok(None)
    }

    /// Whether the dedup key of the event at `seq` (of this hash) has expired.
    /// Whether a copy of the id stored after the one at `seq` (whose dedup key expired: see
    /// [`Self::publish`]) still holds the id's dedup key: then the copy at `seq` must stay,
    /// since a new copy is told from it by trying its subject first, then the chain's.
    pub async fn chain_holds_the_key(
        &self,
        provider: &str,
        hash: &str,
        seq: u64,
    ) -> Result<bool, StoreError> {
        let base = layout::event_subject(provider, hash);
        let mut at = seq;
        for _ in 0..PUBLISH_ROUNDS {
            let Some(next) = leader::last(&self.stream, &layout::next_subject(&base, at)).await?
            else {
                return Ok(false);
            };
            if !self.is_forgotten(hash, next.sequence).await? {
                return Ok(true);
            }
            at = next.sequence;
        }
        Ok(true)
    }

    pub async fn is_forgotten(&self, hash: &str, seq: u64) -> Result<bool, StoreError> {
        let key = layout::forgotten_key(hash, seq);
        Ok(leader::entry(&self.kv, &key)
            .await?
            .is_some_and(|entry| entry.put))
    }
}

/// Whether a publish failed with this JetStream error code.
fn is_code(err: &jetstream::context::PublishError, code: ErrorCode) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .is_some_and(|source| source.error_code() == code)
}
