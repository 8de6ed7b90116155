//! How events are laid out in the `events` tree: many events per sled value, and no value over
//! [`max_value`] of the store's segments.
//!
//! - A **pack** holds the records of nearby seqs, under the big-endian first seq (8-byte key):
//!   `[3][count: u16 LE]` then, per record, `[seq - first: u16 LE][len: u32 LE][record]`, in seq
//!   order. The committer appends consecutive seqs; retention rewrites a pack without the
//!   records it removes when others in it must stay. The committer appends
//!   to the newest pack until it is full, so a store holds about one sled value per few KiB of
//!   events whatever the commit batches were; sled's memory and start-up cost follow the number
//!   of values, not of events.
//! - The **open** pack, the one the committer appends to, is not in the `events` tree but in
//!   `meta`, under [`OPEN_KEY`]: `[first seq: 8 bytes BE]` then the pack's bytes, raw (so an
//!   append costs no compression). Once full, it goes into `events` sealed, and the next open
//!   pack takes its place in `meta`, in the same transaction. So `events` takes each pack once,
//!   and the leaf sled rewrites after every 10 changes to it is a leaf of `meta` holding one
//!   pack, not the newest leaf of `events` holding up to 16: `cargo bench --bench store_size`
//!   measured half the bytes reaching the disk (docs/performance.md). Readers read it before
//!   the tree (`reader.rs`). Stores of layout 6 and before kept it raw in `events`, where it
//!   stays.
//! - A **sealed** pack is a full one, compressed: `[5]` then a zstd frame (level 1) of the pack's
//!   bytes. Retention's rewrites are sealed too. A pack that would not shrink stays raw. Readers
//!   unseal a value before they parse it ([`unseal`]).
//! - A value whose first byte is 1 or 2 is one record, as stores before packs kept them: they
//!   are read as a pack of one.
//! - A **large** record (over what a pack can hold) is cut into parts: part 0 under its seq's
//!   8-byte key, `[4][parts: u16 LE][bytes]`, parts 1.. under the 10-byte key seq ++ part (u16
//!   BE), raw bytes. A 10-byte key sorts after its seq's 8-byte key and before the next seq's.
//!
//! Why the bounds: sled writes a node bigger than a quarter of its segment (less 52 bytes of
//! headers: 131,020 bytes at sled's default 512 KiB, the segments of stores made before
//! hookgate chose its own; 524,236 at hookgate's 2 MiB) to a separate blob file, which it never
//! fsyncs and which a reader thread may write at any time (see `durable.rs`). A leaf holds at
//! most 20 entries (it splits past 16, and a merge adds at most 3 to one of 17), so with every
//! value at most [`max_value`] of the store's segments, every node stays under the blob
//! threshold and sled writes no blob files at all.
//!
//! Why packs are as large as that bound lets them be: sled keeps a few hundred bytes of memory
//! for every node, loaded or not, and a leaf holds at most 16 entries whatever their size, so the
//! number of packs sets sled's memory and start-up time. At 2 MiB segments a pack holds up to
//! 24 KiB (~23 events of 1 KiB): a gateway with 10 M events stored opened with ~50 MiB less RSS
//! than with packs of 6 KiB (docs/performance.md).

use std::borrow::Cow;
use std::cell::RefCell;

use crate::event::Seq;

/// The most bytes of one value in a store of sled's default 512 KiB segments, and of any value
/// but a pack in every store (dedup claims, runs, a large record's parts).
pub const MAX_VALUE: usize = 6 * 1024;
/// The most bytes of one pack in a store of 2 MiB segments or more.
pub const MAX_PACK: usize = 24 * 1024;
/// The most bytes of one key in any tree (index nodes hold up to 257 keys).
pub const MAX_KEY: usize = 384;

/// sled's blob threshold for a store of `segment_bytes` segments: a log message (a node's whole
/// image) longer than this goes to a blob file (`benches/sled_layouts/FINDINGS.md`, 1a).
const fn blob_threshold(segment_bytes: usize) -> usize {
    segment_bytes / 4 - 20 - 32
}

/// The most bytes of one value in a store of `segment_bytes` segments: 20 entries of it, with
/// their keys and framing, stay under [`blob_threshold`] (asserted below: at 2 MiB with keys of
/// [`MAX_KEY`] bytes; at 512 KiB with the 10-byte keys of the `events` tree, whose values are the
/// ones that reach the bound).
pub const fn max_value(segment_bytes: usize) -> usize {
    if segment_bytes >= 2 << 20 {
        MAX_PACK
    } else {
        MAX_VALUE
    }
}

const _: () = assert!(20 * (MAX_VALUE + 10 + 24) < blob_threshold(512 * 1024));
const _: () = assert!(20 * (MAX_PACK + MAX_KEY + 24) < blob_threshold(2 << 20));

const PACK: u8 = 3;
const LARGE: u8 = 4;
const SEALED: u8 = 5;
/// zstd's fastest level that entropy-codes literals by default, which is where text shrinks most:
/// a 6 KiB pack of the benches' random base64 bodies in ~28 µs here (`zstd -b1 -B6144`).
const ZSTD_LEVEL: i32 = 1;
const PACK_HEADER: usize = 3;
const FRAME_HEADER: usize = 6;

/// The key of a seq's pack, or of a large record's first part.
pub fn key(seq: Seq) -> [u8; 8] {
    seq.to_key()
}

/// The key of part `part` (≥ 1) of a large record.
pub fn part_key(seq: Seq, part: u16) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[..8].copy_from_slice(&seq.to_key());
    key[8..].copy_from_slice(&part.to_be_bytes());
    key
}

/// A pack being filled by the committer, or rewritten by retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    pub first: Seq,
    /// The most bytes it may hold ([`max_value`] of the store's segments).
    max: usize,
    count: u16,
    /// The offset from `first` of the last record.
    last: Option<u16>,
    bytes: Vec<u8>,
}

impl Pack {
    /// An empty pack of at most `max` bytes.
    pub fn new(first: Seq, max: usize) -> Pack {
        let mut bytes = Vec::with_capacity(max);
        bytes.push(PACK);
        bytes.extend_from_slice(&0u16.to_le_bytes());
        Pack {
            first,
            max,
            count: 0,
            last: None,
            bytes,
        }
    }

    /// The open pack stored as `value` ([`open_value`]), to append to again, holding at most
    /// `max` bytes.
    pub fn reopen(value: &[u8], max: usize) -> Result<Pack, String> {
        let (first, bytes) = parse_open(value)?;
        let Value::Pack(records) = parse(bytes)? else {
            return Err("an open pack that is not a pack".into());
        };
        Pack::of_records(first, records, max.max(bytes.len()))
    }

    /// A pack of `records` (each with its seq's offset from `first`, in order), holding at most
    /// `max` bytes.
    pub fn of_records<'a>(
        first: Seq,
        records: impl IntoIterator<Item = (u16, &'a [u8])>,
        max: usize,
    ) -> Result<Pack, String> {
        let mut pack = Pack::new(first, max);
        for (offset, record) in records {
            if !pack.push_at(Seq(first.0 + u64::from(offset)), record) {
                return Err("a pack that does not fit".into());
            }
        }
        Ok(pack)
    }

    /// Whether `record` fits in a pack at all (else it is stored as a large record).
    pub fn holds(record: &[u8]) -> bool {
        PACK_HEADER + FRAME_HEADER + record.len() <= MAX_VALUE
    }

    /// The seq the next record appended gets.
    pub fn next(&self) -> Seq {
        Seq(self.first.0 + self.last.map_or(0, |last| u64::from(last) + 1))
    }

    /// Appends the next seq's record, or returns `false` when the pack has no room for it.
    pub fn push(&mut self, record: &[u8]) -> bool {
        self.push_at(self.next(), record)
    }

    /// Appends the record of `seq` (after every seq in the pack), or returns `false` when the pack
    /// has no room for it.
    pub fn push_at(&mut self, seq: Seq, record: &[u8]) -> bool {
        let Some(offset) = seq
            .0
            .checked_sub(self.first.0)
            .and_then(|o| u16::try_from(o).ok())
        else {
            return false;
        };
        let in_order = self.last.is_none_or(|last| offset > last);
        if !in_order || self.bytes.len() + FRAME_HEADER + record.len() > self.max {
            return false;
        }
        let len = u32::try_from(record.len()).expect("a record under MAX_VALUE");
        self.bytes.extend_from_slice(&offset.to_le_bytes());
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(record);
        self.count += 1;
        self.last = Some(offset);
        self.bytes[1..3].copy_from_slice(&self.count.to_le_bytes());
        true
    }

    pub fn value(&self) -> &[u8] {
        &self.bytes
    }

    /// The pack's value once nothing more is appended to it: compressed, unless that would not
    /// make it smaller.
    pub fn sealed(&self) -> Vec<u8> {
        seal(&self.bytes).unwrap_or_else(|| self.bytes.clone())
    }
}

/// The `meta` key of the **open pack**: the newest pack, the one the committer appends to, kept
/// out of the `events` tree (see the module's doc). Its value is 8 bytes over a pack's bound,
/// and the only such value of `meta`: a leaf holding it and 19 values of [`MAX_VALUE`] under
/// keys of [`MAX_KEY`] stays under the blob threshold (asserted below).
pub const OPEN_KEY: &[u8] = b"open_pack";

const _: () =
    assert!((MAX_PACK + 8 + 9 + 24) + 19 * (MAX_VALUE + MAX_KEY + 24) < blob_threshold(2 << 20));
const _: () = assert!(
    (MAX_VALUE + 8 + 9 + 24) + 19 * (MAX_VALUE + MAX_KEY + 24) < blob_threshold(512 * 1024)
);

/// The open pack's `meta` value: its first seq (8 bytes, big-endian), then the pack's bytes.
pub fn open_value(pack: &Pack) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + pack.bytes.len());
    value.extend_from_slice(&key(pack.first));
    value.extend_from_slice(&pack.bytes);
    value
}

/// The first seq and the pack's bytes of an open pack's `meta` value.
pub fn parse_open(value: &[u8]) -> Result<(Seq, &[u8]), String> {
    let (first, bytes) = value
        .split_first_chunk::<8>()
        .ok_or("a truncated open pack")?;
    Ok((Seq(u64::from_be_bytes(*first)), bytes))
}

/// An `events` entry's value sealed, if it is a raw pack that compression makes smaller (a
/// compaction's copy seals what the committer left raw: packs of a store from before sealing, the
/// pack open at a stop of a store of layout 6, a pack the sweeper cut short). A large record's
/// parts (10-byte keys) are raw bytes, whatever their first byte, and stay as they are.
pub fn resealed(key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    (key.len() == 8 && value.first() == Some(&PACK))
        .then(|| seal(value))
        .flatten()
}

/// A raw pack's bytes compressed into a sealed value, or `None` when that is not smaller.
fn seal(raw: &[u8]) -> Option<Vec<u8>> {
    thread_local! {
        static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { RefCell::new(None) };
    }
    let mut sealed = vec![0; 1 + zstd::zstd_safe::compress_bound(raw.len())];
    sealed[0] = SEALED;
    let len = COMPRESSOR.with_borrow_mut(|compressor| {
        let compressor = match compressor {
            Some(compressor) => compressor,
            None => compressor.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?),
        };
        compressor.compress_to_buffer(raw, &mut sealed[1..]).ok()
    })?;
    (1 + len < raw.len()).then(|| {
        sealed.truncate(1 + len);
        sealed
    })
}

/// The bytes [`parse`] reads from a stored value: a sealed pack's, decompressed (at most
/// [`MAX_PACK`] bytes, or it is corrupt), any other value's as they are.
pub fn unseal(value: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    thread_local! {
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }
    let Some((&SEALED, frame)) = value.split_first() else {
        return Ok(Cow::Borrowed(value));
    };
    let bytes = DECOMPRESSOR.with_borrow_mut(|decompressor| {
        let decompressor = match decompressor {
            Some(decompressor) => decompressor,
            None => decompressor
                .insert(zstd::bulk::Decompressor::new().map_err(|err| format!("zstd: {err}"))?),
        };
        decompressor
            .decompress(frame, MAX_PACK)
            .map_err(|err| format!("a sealed pack that does not decompress: {err}"))
    })?;
    if bytes.first() != Some(&PACK) {
        return Err("a sealed value that is not a pack".into());
    }
    Ok(Cow::Owned(bytes))
}

/// The largest record [`large`] stores: its parts are counted in a u16 (~384 MiB). A commit of
/// a larger one is refused before it reaches the committer (`SledStore::commit`).
pub const LARGEST_RECORD: usize = (MAX_VALUE - PACK_HEADER) + (u16::MAX as usize - 1) * MAX_VALUE;

/// The values a large record is stored as: (key, value), part 0 first.
pub fn large(seq: Seq, record: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let first_room = MAX_VALUE - PACK_HEADER;
    let (head, rest) = record.split_at(first_room.min(record.len()));
    let rest: Vec<&[u8]> = rest.chunks(MAX_VALUE).collect();
    let parts = u16::try_from(1 + rest.len()).expect("a record within LARGEST_RECORD");
    let mut first = Vec::with_capacity(PACK_HEADER + head.len());
    first.push(LARGE);
    first.extend_from_slice(&parts.to_le_bytes());
    first.extend_from_slice(head);
    let mut values = vec![(key(seq).to_vec(), first)];
    for (index, part) in rest.into_iter().enumerate() {
        let part_no = u16::try_from(index + 1).expect("counted above");
        values.push((part_key(seq, part_no).to_vec(), part.to_vec()));
    }
    values
}

/// What one 8-byte-keyed value of the `events` tree holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// Records, each with its seq's offset from the key's, in seq order.
    Pack(Vec<(u16, &'a [u8])>),
    /// The first bytes of a large record, and how many parts it has (this one included).
    Large { parts: u16, head: &'a [u8] },
}

/// Reads a value stored under an 8-byte key.
pub fn parse(value: &[u8]) -> Result<Value<'_>, String> {
    let (&kind, rest) = value.split_first().ok_or("an empty events value")?;
    if kind == 1 || kind == 2 {
        // A record of the layout before packs (record versions 1 and 2): one event per value.
        return Ok(Value::Pack(vec![(0, value)]));
    }
    let count = rest
        .get(..2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or("a truncated events value")?;
    let mut rest = &rest[2..];
    match kind {
        PACK => {
            let mut records = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let (offset, len) = rest
                    .get(..FRAME_HEADER)
                    .map(|b| {
                        let offset = u16::from_le_bytes([b[0], b[1]]);
                        (
                            offset,
                            u32::from_le_bytes([b[2], b[3], b[4], b[5]]) as usize,
                        )
                    })
                    .ok_or("a truncated pack")?;
                let record = rest
                    .get(FRAME_HEADER..FRAME_HEADER + len)
                    .ok_or("a truncated pack record")?;
                if records.last().is_some_and(|(last, _)| *last >= offset) {
                    return Err("pack records out of order".into());
                }
                records.push((offset, record));
                rest = &rest[FRAME_HEADER + len..];
            }
            if !rest.is_empty() {
                return Err("trailing bytes after a pack".into());
            }
            Ok(Value::Pack(records))
        }
        LARGE if count >= 1 => Ok(Value::Large {
            parts: count,
            head: rest,
        }),
        other => Err(format!("unknown events value kind {other}")),
    }
}

/// The seq (and, for a part, the part number) of an `events` key.
pub fn parse_key(key: &[u8]) -> Option<(Seq, u16)> {
    match key.len() {
        8 => Some((Seq::from_key(key)?, 0)),
        10 => Some((
            Seq::from_key(&key[..8])?,
            u16::from_be_bytes([key[8], key[9]]),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn packs_round_trip(records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 1..20)) {
            let mut pack = Pack::new(Seq(5), MAX_VALUE);
            let mut pushed = Vec::new();
            for (index, record) in records.iter().enumerate() {
                if !pack.push(record) {
                    break;
                }
                pushed.push((index as u16, record.as_slice()));
            }
            prop_assert!(pack.value().len() <= MAX_VALUE);
            prop_assert_eq!(pack.next(), Seq(5 + pushed.len() as u64));
            prop_assert_eq!(parse(pack.value()).unwrap(), Value::Pack(pushed));
        }

        #[test]
        fn large_records_round_trip(record in proptest::collection::vec(any::<u8>(), 0..40_000)) {
            let values = large(Seq(9), &record);
            prop_assert!(values.iter().all(|(_, v)| v.len() <= MAX_VALUE));
            let Value::Large { parts, head } = parse(&values[0].1).unwrap() else { panic!("large") };
            prop_assert_eq!(usize::from(parts), values.len());
            let mut joined = head.to_vec();
            for (index, (key, value)) in values.iter().enumerate().skip(1) {
                prop_assert_eq!(parse_key(key), Some((Seq(9), index as u16)));
                joined.extend_from_slice(value);
            }
            prop_assert_eq!(joined, record);
        }

        #[test]
        fn sealed_packs_read_as_they_were_written(records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1500), 1..8), text: bool) {
            let mut pack = Pack::new(Seq(3), MAX_VALUE);
            for record in &records {
                // Text compresses, random bytes do not: a pack that would not shrink stays raw.
                let record: Vec<u8> = if text { record.iter().map(|b| b'a' + b % 4).collect() } else { record.clone() };
                if !pack.push(&record) {
                    break;
                }
            }
            let sealed = pack.sealed();
            prop_assert!(sealed.len() <= pack.value().len());
            prop_assert_eq!(sealed[0] == SEALED, sealed.len() < pack.value().len());
            let unsealed = unseal(&sealed).unwrap();
            prop_assert_eq!(unsealed.as_ref(), pack.value());
        }

        #[test]
        fn garbage_never_panics(bytes: Vec<u8>) {
            let _ = parse(&bytes);
            if let Ok(unsealed) = unseal(&bytes) {
                let _ = parse(&unsealed);
            }
        }
    }

    #[test]
    fn a_sealed_pack_of_json_is_smaller_and_a_damaged_one_is_refused() {
        let mut pack = Pack::new(Seq(1), MAX_PACK);
        let mut n = 0;
        while pack.push(format!(r#"{{"id":"evt_{n}","type":"message.created"}}"#).as_bytes()) {
            n += 1;
        }
        let sealed = pack.sealed();
        assert_eq!(sealed[0], SEALED);
        assert!(
            sealed.len() < pack.value().len() / 4,
            "{} bytes",
            sealed.len()
        );
        let mut damaged = sealed.clone();
        damaged.truncate(sealed.len() - 3);
        assert!(unseal(&damaged).is_err());
        // A frame that would decompress to more than any pack holds is refused, not allocated.
        let big = zstd::bulk::compress(&vec![PACK; MAX_PACK + 1], 1).unwrap();
        assert!(unseal(&[&[SEALED], big.as_slice()].concat()).is_err());
    }

    #[test]
    fn only_raw_packs_that_shrink_are_resealed() {
        let text = br#"{"id":"evt_1","type":"message.created","text":"hello hello hello"}"#;
        let mut pack = Pack::new(Seq(7), MAX_VALUE);
        pack.push(text);
        pack.push(text);
        let key = key(Seq(7));
        let sealed = resealed(&key, pack.value()).expect("JSON shrinks");
        assert_eq!(sealed, pack.sealed());
        assert_eq!(unseal(&sealed).unwrap().as_ref(), pack.value());
        assert_eq!(resealed(&key, &sealed), None, "sealed stays as it is");
        let mut state = 1u64;
        let noise: Vec<u8> = (0..4000)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect();
        let mut random = Pack::new(Seq(9), MAX_VALUE);
        random.push(&noise);
        assert_eq!(resealed(&key, random.value()), None, "noise stays raw");
        // A large record's part that happens to start like a pack is raw bytes all the same.
        let mut record = vec![b'a'; MAX_VALUE * 2];
        record[MAX_VALUE - PACK_HEADER] = PACK;
        let parts = large(Seq(3), &record);
        assert_eq!(parts[1].1[0], PACK);
        for (key, value) in parts {
            assert_eq!(resealed(&key, &value), None);
        }
    }

    #[test]
    fn part_keys_sort_between_seqs() {
        assert!(key(Seq(7)).as_slice() < part_key(Seq(7), 1).as_slice());
        assert!(part_key(Seq(7), 1).as_slice() < part_key(Seq(7), 2).as_slice());
        assert!(part_key(Seq(7), u16::MAX).as_slice() < key(Seq(8)).as_slice());
    }

    #[test]
    fn sparse_packs_keep_their_seqs() {
        let mut pack = Pack::new(Seq(10), MAX_VALUE);
        assert!(pack.push_at(Seq(12), b"a"));
        assert!(pack.push_at(Seq(15), b"b"));
        assert!(!pack.push_at(Seq(15), b"c"), "seqs only grow");
        assert!(!pack.push_at(Seq(9), b"c"), "not before the first");
        assert_eq!(pack.next(), Seq(16));
        assert_eq!(
            parse(pack.value()).unwrap(),
            Value::Pack(vec![(2, b"a".as_slice()), (5, b"b".as_slice())])
        );
    }

    #[test]
    fn a_full_pack_refuses_more() {
        for max in [max_value(512 * 1024), max_value(2 << 20)] {
            let mut pack = Pack::new(Seq(1), max);
            let record = vec![0u8; 1000];
            let mut n = 0;
            while pack.push(&record) {
                n += 1;
            }
            assert_eq!(n, (max - PACK_HEADER) / (FRAME_HEADER + 1000));
            assert!(pack.value().len() <= max);
        }
        assert_eq!(max_value(512 * 1024), MAX_VALUE);
        assert_eq!(max_value(2 << 20), MAX_PACK);
        assert!(!Pack::holds(&vec![0u8; MAX_VALUE]));
    }
}
