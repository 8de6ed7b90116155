//! A stream that went back: one that lost acknowledged messages (a power loss of its servers
//! without `sync_interval: always`, or a stream deleted and made again) gives their seqs to the
//! events stored next. An output whose cursor had passed those seqs would never receive the new
//! events there, and a dead record or a mark past the stream's end would name another event.
//! So:
//!
//! - a gateway that sees the stream end below a seq it saw acknowledged stops storing: its
//!   commits fail (503) and `failed()` resolves, so that it exits and is restarted. It sees it
//!   at a publish whose ack names a seq at or below one acknowledged before the publish was sent
//!   (the stream gives a message a seq above every one it holds), or when the stream's last
//!   sequence, asked twice in a row, is below the highest this gateway saw;
//! - at open, before this gateway stores anything, every output whose cursor, marks or dead
//!   records are past the stream's end is moved back to it, with an error line naming the seqs
//!   lost. Each value is read before the stream's end is, so whatever it names at or below that
//!   end was stored when it was written; it is changed by compare-and-set on its revision.

use std::sync::Arc;

use async_nats::jetstream::{kv, stream};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::outputs::{self, shard_of, DeadShard, Position};
use super::{layout, leader, storage, JetStreamStore};
use crate::store::StoreError;

/// Compare-and-set rounds for one value before the open gives up.
const CAS_ROUNDS: usize = 64;

/// Why commits fail once the stream went back.
pub fn went_back_error(stream: &str) -> StoreError {
    StoreError::Storage(Arc::new(std::io::Error::other(format!(
        "the stream {stream} lost acknowledged messages; this gateway stores nothing more until it is restarted"
    ))))
}

/// Tells every part of this gateway that `stream` went back from `seen` to `end`, once: its
/// commits fail from then on, and `failed()` resolves.
pub fn declare(went_back: &CancellationToken, stream: &str, seen: u64, end: u64) {
    if went_back.is_cancelled() {
        return;
    }
    tracing::error!(
        stream,
        seen,
        end,
        "The stream went back: a seq this gateway saw acknowledged is past its end now, so it lost acknowledged messages (a power loss of its servers without sync_interval: always, or the stream was deleted and made again). Nothing more is stored here; restarting, which moves the outputs' cursors back to the stream's end (docs/cluster.md)."
    );
    went_back.cancel();
}

/// Whether a stream's info came from its leader: without one (no quorum, an election), each
/// member answers with its own state, which may lag what was acknowledged.
pub fn from_a_leader(info: &stream::Info) -> bool {
    info.cluster
        .as_ref()
        .is_none_or(|cluster| cluster.leader.as_deref().is_some_and(|l| !l.is_empty()))
}

/// A value that can name seqs past the stream's end.
trait PastTheEnd {
    /// Drops what is past `end`; returns the highest seq it named there, if any.
    fn cut_at(&mut self, end: u64) -> Option<u64>;
}

impl PastTheEnd for Position {
    fn cut_at(&mut self, end: u64) -> Option<u64> {
        let past = [
            (self.cursor > end).then_some(self.cursor),
            self.replay.last().copied().filter(|seq| *seq > end),
            self.settled.last().copied().filter(|seq| *seq > end),
        ]
        .into_iter()
        .flatten()
        .max();
        self.cursor = self.cursor.min(end);
        self.replay.retain(|seq| *seq <= end);
        self.settled.retain(|seq| *seq <= end);
        past
    }
}

impl PastTheEnd for DeadShard {
    fn cut_at(&mut self, end: u64) -> Option<u64> {
        let past = self.0.last_key_value().map(|(seq, _)| *seq)?;
        self.0.retain(|seq, _| *seq <= end);
        (past > end).then_some(past)
    }
}

impl JetStreamStore {
    /// The stream's last sequence, as its leader answers (a leaderless stream's members answer
    /// with their own, maybe behind: an error then).
    pub(super) async fn stream_end(&self) -> Result<u64, StoreError> {
        let info = self.stream.get_info().await.map_err(storage)?;
        if !from_a_leader(&info) {
            return Err(StoreError::Storage(Arc::new(std::io::Error::other(
                "the stream has no leader: its last sequence is not known",
            ))));
        }
        Ok(info.state.last_sequence)
    }

    /// Moves every output's state that is past the stream's end back to it (see the module).
    pub(super) async fn move_outputs_back_to_the_end(&self) -> Result<(), StoreError> {
        let end = self.stream_end().await?;
        for key in self.keys_under("output.").await? {
            let Some(token) = key.strip_prefix("output.") else {
                continue;
            };
            let dead_prefix = format!("dead.{token}.");
            let mut past = None;
            for shard in self.keys_under(&dead_prefix).await? {
                let in_reach = shard[dead_prefix.len()..]
                    .parse::<u64>()
                    .is_ok_and(|shard| shard >= shard_of(end.saturating_add(1)));
                if in_reach {
                    past = past.max(self.cut_past_the_end::<DeadShard>(&shard).await?);
                }
            }
            past = past.max(self.cut_past_the_end::<Position>(&key).await?);
            if let Some(past) = past {
                tracing::error!(
                    stream = %self.stream.cached_info().config.name,
                    output = %layout::name_of_token(token),
                    lost = format!("{}..={past}", end + 1),
                    "The stream ends below seqs this output had reached: the events there were lost with the stream's messages (a power loss of its servers without sync_interval: always, or the stream was deleted and made again). Its cursor, marks and dead records move back to the stream's end, so that the events stored next, which take those seqs, are delivered."
                );
            }
        }
        Ok(())
    }

    /// Cuts one value of the bucket at the stream's end, read after the value; returns the
    /// highest seq it named past that end.
    async fn cut_past_the_end<T>(&self, key: &str) -> Result<Option<u64>, StoreError>
    where
        T: PastTheEnd + Serialize + DeserializeOwned,
    {
        for _ in 0..CAS_ROUNDS {
            let Some(entry) = leader::entry(&self.kv, key).await? else {
                return Ok(None);
            };
            if !entry.put {
                return Ok(None);
            }
            let mut value: T = outputs::decode(&entry.value)?;
            let end = self.stream_end().await?;
            let Some(past) = value.cut_at(end) else {
                return Ok(None);
            };
            let bytes = Bytes::from(outputs::encode(&value));
            match self.kv.update(key, bytes, entry.revision).await {
                Ok(_) => return Ok(Some(past)),
                Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(err) => return Err(storage(err)),
            }
        }
        Err(StoreError::Storage(Arc::new(std::io::Error::other(
            format!("{key}: {CAS_ROUNDS} compare-and-set rounds lost to other writers"),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DeadRecord;

    #[test]
    fn a_position_is_cut_at_the_end() {
        let mut position = Position {
            cursor: 12,
            paused: true,
            replay: [3, 11].into(),
            settled: [14].into(),
        };
        assert_eq!(position.cut_at(10), Some(14));
        assert_eq!(
            position,
            Position {
                cursor: 10,
                paused: true,
                replay: [3].into(),
                settled: [].into(),
            }
        );
        assert_eq!(position.cut_at(10), None);
    }

    #[test]
    fn a_dead_shard_is_cut_at_the_end() {
        let record = DeadRecord {
            at_ms: 1,
            attempts: 2,
            error: "500".into(),
        };
        let mut dead = DeadShard([(5, record.clone()), (9, record.clone())].into());
        assert_eq!(dead.cut_at(9), None);
        assert_eq!(dead.cut_at(6), Some(9));
        assert_eq!(dead, DeadShard([(5, record)].into()));
        assert_eq!(DeadShard::default().cut_at(0), None);
    }
}
