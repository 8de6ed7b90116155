//! Retention on JetStream: deleting the events every output is done with, and expiring the
//! dedup keys of events that stay (a `forgotten` mark in the bucket; see `layout`).

use std::collections::hash_map::{Entry, HashMap};
use std::sync::atomic::Ordering;

use async_nats::jetstream::{kv, stream};
use bytes::Bytes;

use super::outputs::{shard_of, DeadShard, Position};
use super::{layout, leader, storage, JetStreamStore};
use crate::event::Seq;
use crate::store::retention::{verdict, Standing, Verdict};
use crate::store::{Cutoffs, Output, StoreError, Swept};

/// Events one sweep looks at, at most (each scan).
const SWEEP_STEP: usize = 512;

impl JetStreamStore {
    /// One bounded step of deleting the events every output is done with (the same policy as
    /// sled's). A deleted event takes its dedup key with it, counted when it was due.
    ///
    /// An event's marks live in two values, written one after the other: a replay writes the
    /// position's mark before it removes the dead record, and an event dead again has its record
    /// written before the position drops its replay mark. So the positions are read before the
    /// dead records and again after them, and the dead records of what would go once more after
    /// that; an event any read shows marked is kept: reads that fell on both sides of one
    /// change, or of a replay and its death again, saw neither mark.
    pub(super) async fn sweep_events(
        &self,
        cutoffs: Cutoffs,
        outputs: &[Output],
    ) -> Result<Swept, StoreError> {
        let positions = self.positions(outputs).await?;
        // The dead-record shards read so far, per output (a step spans one or two).
        let mut dead: Vec<HashMap<u64, DeadShard>> = vec![HashMap::new(); outputs.len()];
        let last = self.last_seq.borrow().0;
        let mut from = self.sweep_from.load(Ordering::SeqCst).max(1);
        // Expired: the seq, whether its dedup key was due, its dedup hash and provider.
        let mut expired = Vec::new();
        let mut next_from = None;
        for _ in 0..SWEEP_STEP {
            let (event, hash) = match self.next(layout::EVENTS, from).await? {
                Some((event, hash)) if event.seq <= last => (event, hash),
                _ => {
                    next_from = Some(0);
                    break;
                }
            };
            let seq = Seq(event.seq);
            let mut standings = Vec::with_capacity(outputs.len());
            for (i, (output, position)) in outputs.iter().zip(&positions).enumerate() {
                // A dead or replay mark keeps the event (for a destination).
                let kept = output.keeps_marks
                    && (position.replay.contains(&seq.0)
                        || self.dead_in(&mut dead[i], &output.name, seq.0).await?);
                standings.push(Standing {
                    takes: output.takes(&event),
                    cursor: Seq(position.cursor),
                    kept,
                });
            }
            match verdict(seq, event.received_at_ms, cutoffs.events_ms, &standings) {
                Verdict::Young => {
                    // Held events before it may go later: the next sweep starts over.
                    next_from = Some(0);
                    break;
                }
                Verdict::Held => {}
                Verdict::Expired => {
                    let due = event.received_at_ms < cutoffs.dedup_ms;
                    expired.push((event.seq, due, hash, event.provider));
                }
            }
            from = event.seq + 1;
        }
        let again = self.positions(outputs).await?;
        let replayed = |seq: u64| {
            outputs
                .iter()
                .zip(&again)
                .any(|(output, position)| output.keeps_marks && position.replay.contains(&seq))
        };
        // And the dead records once more, after the positions: a replay that died again during
        // the step (its record removed before the dead records were read, written again before
        // its replay mark went) showed neither mark to the reads before.
        let mut dead_again: Vec<HashMap<u64, DeadShard>> = vec![HashMap::new(); outputs.len()];
        let mut swept = Swept::default();
        for (seq, due, hash, provider) in expired {
            if replayed(seq) {
                continue;
            }
            let mut dead_now = false;
            for (i, output) in outputs.iter().enumerate() {
                if output.keeps_marks && self.dead_in(&mut dead_again[i], &output.name, seq).await?
                {
                    dead_now = true;
                    break;
                }
            }
            if dead_now {
                continue;
            }
            // Counted once: a key forgotten before was counted then.
            let counted = due && self.is_forgotten(&hash, seq).await?;
            // A copy stored after its key expired leaves it its subject while that copy's key
            // lives (without it, a retry of that copy would be stored again).
            if counted && self.chain_holds_the_key(&provider, &hash, seq).await? {
                continue;
            }
            // Another gateway sweeping the same stream may have deleted it already.
            if delete(&self.stream, seq).await? {
                swept.events += 1;
                if due && !counted {
                    swept.dedup_keys += 1;
                }
            }
        }
        self.sweep_from
            .store(next_from.unwrap_or(from), Ordering::SeqCst);
        // Stopped at its bound: the pass goes on now, through a long run of held events too
        // (dead ones, kept for good: with 365,000 of them, a step of 512 a `sweep_interval`
        // took twelve hours to reach what was behind them). The sweeper bounds the steps that
        // only read held events per interval (`Swept::held_only`).
        swept.more = next_from.is_none();
        Ok(swept)
    }

    async fn positions(&self, outputs: &[Output]) -> Result<Vec<Position>, StoreError> {
        let mut positions = Vec::with_capacity(outputs.len());
        for output in outputs {
            positions.push(self.position(&output.name).await?);
        }
        Ok(positions)
    }

    /// Whether `seq` has a dead record for `output`, reading its shard into `shards` once.
    async fn dead_in(
        &self,
        shards: &mut HashMap<u64, DeadShard>,
        output: &str,
        seq: u64,
    ) -> Result<bool, StoreError> {
        let shard = shard_of(seq);
        let dead = match shards.entry(shard) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(self.dead_shard(output, shard).await?),
        };
        Ok(dead.0.contains_key(&seq))
    }

    /// One bounded step of expiring the dedup keys of events received before `cutoff_ms` that
    /// stay: each gets a `forgotten` mark, so that the next copy of its id is a new event. With
    /// whether it stopped at its bound (more may be due now).
    pub(super) async fn forget_dedup_keys(
        &self,
        cutoff_ms: u64,
    ) -> Result<(u64, bool), StoreError> {
        let last = self.last_seq.borrow().0;
        let mut forgotten = 0;
        let mut from = self.dedup_from.load(Ordering::SeqCst).max(1);
        let mut more = true;
        for _ in 0..SWEEP_STEP {
            let (event, hash) = match self.next(layout::EVENTS, from).await? {
                Some((event, hash)) if event.seq <= last => (event, hash),
                _ => {
                    more = false;
                    break;
                }
            };
            if event.received_at_ms >= cutoff_ms {
                // Arrival follows seqs: everything before this one is done.
                more = false;
                break;
            }
            let key = layout::forgotten_key(&hash, event.seq);
            match self.kv.create(key, Bytes::new()).await {
                Ok(_) => forgotten += 1,
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(err) => return Err(storage(err)),
            }
            from = event.seq + 1;
        }
        self.dedup_from.store(from, Ordering::SeqCst);
        Ok((forgotten, more))
    }
}

/// Deletes the message at `seq`; `false` when there is none (the server answers a second delete
/// with error 10057, "no message found": it stopped the whole sweep step). The same code also
/// says a delete was refused (`deny_delete`) or failed: an error, when the message is there.
async fn delete(stream: &stream::Stream, seq: u64) -> Result<bool, StoreError> {
    use async_nats::jetstream::stream::DeleteMessageErrorKind;
    use async_nats::jetstream::ErrorCode;
    match stream.delete_message(seq).await {
        Ok(deleted) => Ok(deleted),
        Err(err)
            if matches!(err.kind(), DeleteMessageErrorKind::JetStream(ref source)
                if source.error_code() == ErrorCode::STREAM_MESSAGE_DELETE_FAILED) =>
        {
            match leader::message(stream, seq).await? {
                None => Ok(false),
                Some(_) => Err(storage(err)),
            }
        }
        Err(err) => Err(storage(err)),
    }
}
