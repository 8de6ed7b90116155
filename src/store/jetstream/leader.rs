//! Reads answered by a stream's leader, for what must see every acknowledged write.
//!
//! The stream and the buckets allow direct gets, which any replica answers: at 3 replicas a
//! follower a little behind answers too (measured on a 3-node cluster of nats-server 2.15.1:
//! 19 of 5,000 reads of a bucket's value right after it was written returned the revision
//! before, and 160 of 5,000 reads of a just-acknowledged event found nothing). A value read to
//! be changed by compare-and-set, a lease, a sync cursor, a dead record the sweep decides by,
//! and an event a reader knows is stored are read through the leader instead (the
//! `STREAM.MSG.GET` API), which answers only once it has applied what it acknowledged.

use async_nats::jetstream::kv;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, RawMessageError, Stream};
use bytes::Bytes;

use super::storage;
use crate::store::StoreError;

/// A bucket's latest entry for a key.
pub struct Latest {
    pub value: Bytes,
    pub revision: u64,
    /// A value, not a deletion or a purge.
    pub put: bool,
}

/// The latest entry of `key` in `bucket`, as its leader has it.
pub async fn entry(bucket: &kv::Store, key: &str) -> Result<Option<Latest>, StoreError> {
    let subject = format!("{}{key}", bucket.prefix);
    Ok(last(&bucket.stream, &subject).await?.map(|message| {
        let operation = message.headers.get("KV-Operation").map(|op| op.as_str());
        let marker = message.headers.get("Nats-Marker-Reason").is_some();
        Latest {
            put: !marker && !matches!(operation, Some("DEL" | "PURGE")),
            revision: message.sequence,
            value: message.payload,
        }
    }))
}

/// The last message on `subject`, as the leader has it (`None`: none).
pub async fn last(stream: &Stream, subject: &str) -> Result<Option<StreamMessage>, StoreError> {
    found(stream.get_last_raw_message_by_subject(subject).await)
}

/// Message `seq` of `stream`, as its leader has it (`None`: not stored, or removed).
pub async fn message(stream: &Stream, seq: u64) -> Result<Option<StreamMessage>, StoreError> {
    found(stream.get_raw_message(seq).await)
}

/// The first message at or after `from` on `subject`, as the leader has it.
pub async fn next(
    stream: &Stream,
    subject: &str,
    from: u64,
) -> Result<Option<StreamMessage>, StoreError> {
    let request = stream.raw_message_builder().sequence(from);
    found(request.next_by_subject(subject).send().await)
}

/// A leader's answer: the message, `None` when it has none, or the failure.
fn found(
    answer: Result<StreamMessage, RawMessageError>,
) -> Result<Option<StreamMessage>, StoreError> {
    match answer {
        Ok(message) => Ok(Some(message)),
        Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(err) => Err(storage(err)),
    }
}
