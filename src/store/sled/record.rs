//! How one event is encoded (a record, which `pack.rs` groups into sled values), and the key and
//! value of its (provider, event id) in the dedup tree. A leading version byte leaves room to
//! evolve.

use serde::{Deserialize, Serialize};

use crate::event::{Seq, Source};
use crate::store::StoredEvent;

/// Version 2 added `topic`; version 1 records are still read.
const RECORD_VERSION: u8 = 2;

/// An event as stored, borrowed for encoding.
#[derive(Serialize)]
pub struct RecordRef<'a> {
    pub provider: &'a str,
    pub event_id: &'a str,
    pub received_at_ms: u64,
    pub source: Source,
    pub content_type: Option<&'a str>,
    #[serde(with = "serde_bytes")]
    pub body: &'a [u8],
    pub topic: Option<&'a str>,
}

/// Version 1 records: as `StoredEvent`, without `topic`.
#[derive(Deserialize)]
struct StoredEventV1 {
    provider: String,
    event_id: String,
    received_at_ms: u64,
    source: Source,
    content_type: Option<String>,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

impl RecordRef<'_> {
    /// The version byte, then the fields in postcard, in one allocation of
    /// [`RecordRef::encoded_bound`] bytes (grown by doubling, a 1 KiB body took ~8).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_bound());
        out.push(RECORD_VERSION);
        postcard::to_io(self, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// At least the encoded length: the version byte, the strings' and body's bytes, and for
    /// each of the 7 fields at most 10 bytes of varint length, integer, tag or variant.
    pub fn encoded_bound(&self) -> usize {
        let strings = [
            Some(self.provider),
            Some(self.event_id),
            self.content_type,
            self.topic,
        ];
        1 + self.body.len() + strings.iter().flatten().map(|s| s.len()).sum::<usize>() + 7 * 10
    }
}

impl StoredEvent {
    pub fn decode(seq: Seq, bytes: &[u8]) -> Result<StoredEvent, String> {
        let corrupt = |err: postcard::Error| format!("event {seq}: {err}");
        match bytes.split_first() {
            Some((&RECORD_VERSION, rest)) => {
                let mut event: StoredEvent = postcard::from_bytes(rest).map_err(corrupt)?;
                event.seq = seq.0;
                Ok(event)
            }
            Some((1, rest)) => {
                let v1: StoredEventV1 = postcard::from_bytes(rest).map_err(corrupt)?;
                Ok(StoredEvent {
                    seq: seq.0,
                    provider: v1.provider,
                    event_id: v1.event_id,
                    received_at_ms: v1.received_at_ms,
                    source: v1.source,
                    content_type: v1.content_type,
                    body: v1.body,
                    topic: None,
                })
            }
            Some((version, _)) => Err(format!("event {seq}: unknown record version {version}")),
            None => Err(format!("event {seq}: empty record")),
        }
    }
}

/// An event's dedup key: provider, a NUL (never in a provider name), dedup id (the event id,
/// maybe bound to the body's hash): at most 64 + 1 + 256 + 72 bytes. Kept whole in the log of
/// recent claims (`claims.rs`) and in the sealed runs (`runs/`), in key order there.
pub fn dedup_key(provider: &str, dedup_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(provider.len() + 1 + dedup_id.len());
    key.extend_from_slice(provider.as_bytes());
    key.push(0);
    key.extend_from_slice(dedup_id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_round_trip(provider in "[a-z]{1,10}", id in ".{1,40}", at: u64, ct in proptest::option::of(".{0,20}"), body: Vec<u8>) {
            let record = RecordRef { provider: &provider, event_id: &id, received_at_ms: at, source: Source::Webhook, content_type: ct.as_deref(), body: &body, topic: ct.as_deref() };
            let encoded = record.encode();
            prop_assert!(encoded.len() <= record.encoded_bound());
            let event = StoredEvent::decode(Seq(7), &encoded).unwrap();
            prop_assert_eq!(event, StoredEvent { seq: 7, provider, event_id: id, received_at_ms: at, source: Source::Webhook, topic: ct.clone(), content_type: ct, body });
        }

        #[test]
        fn garbage_never_panics(bytes: Vec<u8>) {
            let _ = StoredEvent::decode(Seq(1), &bytes);
        }
    }

    #[test]
    fn version_1_records_are_still_read() {
        #[derive(Serialize)]
        struct V1<'a> {
            provider: &'a str,
            event_id: &'a str,
            received_at_ms: u64,
            source: Source,
            content_type: Option<&'a str>,
            #[serde(with = "serde_bytes")]
            body: &'a [u8],
        }
        let mut bytes = vec![1];
        let v1 = V1 {
            provider: "p",
            event_id: "e",
            received_at_ms: 5,
            source: Source::Test,
            content_type: None,
            body: b"{}",
        };
        postcard::to_io(&v1, &mut bytes).unwrap();
        let event = StoredEvent::decode(Seq(3), &bytes).unwrap();
        assert_eq!(
            (event.seq, event.event_id.as_str(), event.topic, event.body),
            (3, "e", None, b"{}".to_vec())
        );
    }

    #[test]
    fn dedup_keys() {
        assert_eq!(dedup_key("gh", "x"), b"gh\0x".to_vec());
        // The NUL keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(dedup_key("ab", "c"), dedup_key("a", "bc"));
    }
}
