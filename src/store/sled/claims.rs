//! The recent dedup claims: a log in the `dedup` tree, one value per batch of events, and an
//! index of it in memory.
//!
//! A batch's new claims go into one value keyed by the batch's first new seq (big-endian), so
//! the log only grows at its end, wherever the ids fall: one sled write per batch. (One entry per
//! key, in key order, made a batch of random ids touch a leaf per event, and cost 1.4 x the CPU
//! per ack of sequential ids.) A value is a list of entries
//! `[key len: u16 LE][key][seq: 8 BE][received_at ms: 8 BE]`, the same entries sealed runs hold.
//!
//! The index maps a 32-bit hash of each key (SipHash with this process's random keys, so a
//! sender cannot choose colliding ids) to its seq, and a lookup checks the key in the log value
//! holding that seq: a hash that collides costs a read, never a wrong answer. It is rebuilt from
//! the log at open, and holds the claims not yet sealed into a run and trimmed from the log (up
//! to about twice `dedup_run_keys`: ~9 bytes each, see [`Index`]).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::live::change;
use super::pack::MAX_VALUE;
use crate::event::Seq;
use crate::store::StoreError;

/// The claims' index: a 32-bit hash of each key -> the low 32 bits of its seq, 8 bytes a claim
/// (plus the map's own byte). A seq is told from its low bits as the newest seq indexed with
/// them: the log holds claims within a few million seqs of each other (it is sealed every
/// `dedup_run_keys`), never 2^32 apart. Hashes shared by several claims (about one lookup in
/// 8,000 at 524,288 claims) keep the other seqs in `more`.
pub struct Index {
    hasher: RandomState,
    one: HashMap<u32, u32>,
    more: HashMap<u32, Vec<u32>>,
    newest: Seq,
}

impl Index {
    pub fn new() -> Index {
        Index {
            hasher: RandomState::new(),
            one: HashMap::new(),
            more: HashMap::new(),
            newest: Seq(0),
        }
    }

    pub fn hash(&self, key: &[u8]) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    pub fn insert(&mut self, hash: u32, seq: Seq) {
        self.newest = self.newest.max(seq);
        let low = seq.0 as u32;
        if let Some(first) = self.one.insert(hash, low) {
            self.one.insert(hash, first);
            self.more.entry(hash).or_default().push(low);
        }
    }

    /// Removes `seq` under `hash`, if it is there.
    pub fn remove(&mut self, hash: u32, seq: Seq) {
        let low = seq.0 as u32;
        if let Some(others) = self.more.get_mut(&hash) {
            others.retain(|other| *other != low);
            let promoted = (self.one.get(&hash) == Some(&low)).then(|| others.pop());
            if others.is_empty() {
                self.more.remove(&hash);
            }
            if let Some(next) = promoted.flatten() {
                self.one.insert(hash, next);
            }
            return;
        }
        if self.one.get(&hash) == Some(&low) {
            self.one.remove(&hash);
        }
    }

    /// The seqs whose keys may have this hash.
    pub fn candidates(&self, hash: u32) -> impl Iterator<Item = Seq> + '_ {
        let others = self.more.get(&hash).map_or(&[][..], Vec::as_slice);
        let newest = self.newest.0;
        self.one
            .get(&hash)
            .into_iter()
            .chain(others.iter())
            .map(move |low| Seq(newest - u64::from((newest as u32).wrapping_sub(*low))))
    }

    pub fn len(&self) -> usize {
        self.one.len() + self.more.values().map(Vec::len).sum::<usize>()
    }

    /// Indexes every entry of a log value.
    pub fn add_value(&mut self, value: &[u8]) {
        for (key, seq, _) in entries(value) {
            self.insert(self.hash(key), seq);
        }
    }

    /// Takes every entry of a log value out of the index.
    pub fn remove_value(&mut self, value: &[u8]) {
        for (key, seq, _) in entries(value) {
            self.remove(self.hash(key), seq);
        }
    }
}

/// What a step of [`Claims::trim`] did.
pub struct Trimmed {
    /// The change in stored bytes.
    pub delta: i64,
    /// Log values removed.
    pub values: usize,
    /// Whether no value is left to remove.
    pub done: bool,
}

/// The recent claims: the log (the `dedup` tree), and what is kept of it in memory.
pub struct Claims {
    pub log: sled::Tree,
    kept: Kept,
}

/// What [`Claims`] holds beside the log, kept while the committer reopens sled.
pub struct Kept {
    index: Index,
    /// The log values up to this key have expired (their claims are no longer found), and go
    /// in steps, as a sealed run's do (`Runs::step`).
    expired: Seq,
    /// The newest seq among them.
    expired_seq: Seq,
    /// The last log key removed (none is left before it), since the log was opened.
    trimmed_to: Option<Seq>,
}

impl Default for Kept {
    fn default() -> Kept {
        Kept {
            index: Index::new(),
            expired: Seq(0),
            expired_seq: Seq(0),
            trimmed_to: None,
        }
    }
}

impl Kept {
    /// Whether the log may hold `key`: false only when no unexpired claim has its hash, told
    /// without reading the log (while sled is closed for a checkpoint).
    pub fn may_hold(&self, key: &[u8]) -> bool {
        self.index
            .candidates(self.index.hash(key))
            .any(|seq| seq > self.expired_seq)
    }

    /// The claims again, on the reopened log.
    pub fn attach(self, log: sled::Tree) -> Claims {
        Claims { log, kept: self }
    }
}

impl Claims {
    /// Indexes the log. Returns it and how many claims it holds after `sealed` (the newest log
    /// key a sealed run holds). `expired`: the log's expiry as last recorded ([`Claims::expiry`]):
    /// the values it covers may still be in the log, not yet trimmed, but are not found.
    pub fn open(
        log: sled::Tree,
        sealed: Seq,
        expired: Option<(Seq, Seq)>,
    ) -> Result<(Claims, u64), StoreError> {
        let mut index = Index::new();
        let mut unsealed = 0u64;
        for item in log.iter() {
            let (key, value) = item?;
            let first = log_seq(&key)?;
            index.add_value(&value);
            if first > sealed {
                unsealed += entries(&value).count() as u64;
            }
        }
        let (expired, expired_seq) = expired.unwrap_or_default();
        let kept = Kept {
            index,
            expired,
            expired_seq,
            ..Kept::default()
        };
        Ok((kept.attach(log), unsealed))
    }

    /// Drops the log and keeps the rest.
    pub fn detach(self) -> Kept {
        self.kept
    }

    /// How many claims the index holds.
    pub fn len(&self) -> usize {
        self.kept.index.len()
    }

    /// The newest log key whose values have expired.
    pub fn expired(&self) -> Seq {
        self.kept.expired
    }

    /// The log's expiry, to be recorded and given back to [`Claims::open`]: the newest log key
    /// whose values expired, and the newest seq they claimed.
    pub fn expiry(&self) -> (Seq, Seq) {
        (self.kept.expired, self.kept.expired_seq)
    }

    /// The seq `key` was claimed under, if it is in the log.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Seq>, StoreError> {
        for seq in self.kept.index.candidates(self.kept.index.hash(key)) {
            if seq > self.kept.expired_seq && self.holds(key, seq)? {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// Whether the log value holding `seq` holds it under `key`.
    fn holds(&self, key: &[u8], seq: Seq) -> Result<bool, StoreError> {
        let Some((_, value)) = self.log.range(..=seq.to_key()).next_back().transpose()? else {
            return Ok(false);
        };
        let found = entries(&value).any(|(k, s, _)| s == seq && k == key);
        Ok(found)
    }

    /// Indexes a batch's claims once its transaction has committed.
    pub fn committed(&mut self, claims: &[(&[u8], Seq)]) {
        for (key, seq) in claims {
            self.kept.index.insert(self.kept.index.hash(key), *seq);
        }
    }

    /// Removes log values from the front whose first seq is at or below `through` (their claims
    /// are in a sealed run, or expired), until at least `claims` claims went, and takes them out
    /// of the index. Each step reads on from the last value removed: sled keeps the leaves it
    /// emptied for a while, and short steps that each walked them again from the front cost a
    /// quarter more in all (`benches/sled_layouts/FINDINGS.md`, section 8).
    pub fn trim(&mut self, through: Seq, claims: usize) -> Result<Trimmed, StoreError> {
        let from = match self.kept.trimmed_to {
            Some(last) => Bound::Excluded(last.to_key()),
            None => Bound::Unbounded,
        };
        let mut values: Vec<(sled::IVec, sled::IVec)> = Vec::new();
        let mut taken = 0;
        let mut done = true;
        for item in self.log.range((from, Bound::Included(through.to_key()))) {
            if taken >= claims {
                done = false;
                break;
            }
            let (key, value) = item?;
            taken += entries(&value).count();
            values.push((key, value));
        }
        let mut delta = 0;
        let mut batch = sled::Batch::default();
        for (key, value) in &values {
            self.kept.index.remove_value(value);
            delta += change(key, Some(value.clone()), None);
            batch.remove(key);
        }
        // Only the committer writes the log: what was read is what goes, and nothing goes
        // before it but what earlier steps removed.
        self.log.apply_batch(batch)?;
        if let Some((last, _)) = values.last() {
            self.kept.trimmed_to = Some(log_seq(last)?);
        }
        Ok(Trimmed {
            delta,
            values: values.len(),
            done,
        })
    }

    /// Expires the log values after `sealed` (the values up to it are a sealed run's, and
    /// expire with it), oldest first, whose claims all arrived before `cutoff_ms`, up to the
    /// first that holds a younger one: their claims are no longer found, and the values go in
    /// steps, as a sealed run's do. Returns how many claims expired.
    pub fn expire(&mut self, cutoff_ms: u64, sealed: Seq) -> Result<u64, StoreError> {
        let mut claims = 0u64;
        let after = sealed.max(self.kept.expired);
        for item in self.log.range(Seq(after.0 + 1).to_key()..) {
            let (key, value) = item?;
            if entries(&value).any(|(_, _, received)| received >= cutoff_ms) {
                break;
            }
            claims += entries(&value).count() as u64;
            self.kept.expired = log_seq(&key)?;
            if let Some((_, newest, _)) = entries(&value).last() {
                self.kept.expired_seq = self.kept.expired_seq.max(newest);
            }
        }
        Ok(claims)
    }
}

/// Turns a `dedup` tree of layout 3 (one entry per key: `key -> [seq: 8 BE][received_at ms:
/// 8 BE]`) into a log, and writes `layout` under `layout_key` in `meta`, in one transaction.
/// Returns the change in stored bytes.
pub fn convert_layout3(
    log: &sled::Tree,
    meta: &sled::Tree,
    layout_key: &[u8],
    layout: &[u8],
) -> Result<i64, StoreError> {
    let corrupt = || StoreError::Corrupt("a dedup value of layout 3".into());
    let mut claims: Vec<(sled::IVec, Seq, u64)> = Vec::new();
    let mut delta = 0i64;
    for item in log.iter() {
        let (key, value) = item?;
        delta -= (key.len() + value.len()) as i64;
        let seq = value.get(..8).and_then(Seq::from_key).ok_or_else(corrupt)?;
        let received = value
            .get(8..16)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(corrupt)?;
        claims.push((key, seq, received));
    }
    claims.sort_by_key(|(_, seq, _)| *seq);
    let mut values: Vec<(Seq, Vec<u8>)> = Vec::new();
    for (key, seq, received) in &claims {
        append(&mut values, key, *seq, *received);
    }
    delta += values
        .iter()
        .map(|(_, value)| (8 + value.len()) as i64)
        .sum::<i64>();
    let result = (log, meta).transaction(|(log, meta)| {
        // Every old key goes before any new one is written (an old key may have 8 bytes).
        for (key, _, _) in &claims {
            log.remove(key)?;
        }
        for (first, value) in &values {
            log.insert(&log_key(*first), value.as_slice())?;
        }
        meta.insert(layout_key, layout)?;
        Ok::<_, ConflictableTransactionError<StoreError>>(())
    });
    match result {
        Ok(()) => Ok(delta),
        Err(TransactionError::Abort(err)) => Err(err),
        Err(TransactionError::Storage(err)) => Err(StoreError::from(err)),
    }
}

/// A log value's key: its first seq.
pub fn log_key(first: Seq) -> [u8; 8] {
    first.to_key()
}

fn log_seq(key: &[u8]) -> Result<Seq, StoreError> {
    Seq::from_key(key).ok_or_else(|| StoreError::Corrupt("a dedup log key".into()))
}

/// Appends a claim to the last of `values` (log values, each with its first seq), or to a new
/// one if it would pass `MAX_VALUE` bytes.
pub fn append(values: &mut Vec<(Seq, Vec<u8>)>, key: &[u8], seq: Seq, received_at_ms: u64) {
    match values.last_mut() {
        Some((_, value)) if value.len() + entry_len(key) <= MAX_VALUE => {
            push_entry(value, key, seq, received_at_ms);
        }
        _ => {
            let mut value = Vec::new();
            push_entry(&mut value, key, seq, received_at_ms);
            values.push((seq, value));
        }
    }
}

/// Appends one entry to a log (or run) value.
pub fn push_entry(value: &mut Vec<u8>, key: &[u8], seq: Seq, received_at_ms: u64) {
    value.extend_from_slice(&(key.len() as u16).to_le_bytes());
    value.extend_from_slice(key);
    value.extend_from_slice(&seq.to_key());
    value.extend_from_slice(&received_at_ms.to_be_bytes());
}

/// The bytes `push_entry` adds for `key`.
pub fn entry_len(key: &[u8]) -> usize {
    2 + key.len() + 16
}

/// The entries of a log (or run) value; stops at the first malformed one.
pub fn entries(value: &[u8]) -> impl Iterator<Item = (&[u8], Seq, u64)> {
    let mut rest = value;
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
        let key = rest.get(2..2 + len)?;
        let seq = Seq::from_key(rest.get(2 + len..10 + len)?)?;
        let received = u64::from_be_bytes(rest.get(10 + len..18 + len)?.try_into().ok()?);
        rest = &rest[18 + len..];
        Some((key, seq, received))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_hashes_keep_every_seq() {
        let mut index = Index::new();
        index.insert(7, Seq(1));
        index.insert(7, Seq(2));
        index.insert(7, Seq(3));
        index.insert(8, Seq(4));
        assert_eq!(
            index.candidates(7).collect::<Vec<_>>(),
            [Seq(1), Seq(2), Seq(3)]
        );
        index.remove(7, Seq(1));
        let mut left: Vec<_> = index.candidates(7).collect();
        left.sort();
        assert_eq!(left, [Seq(2), Seq(3)]);
        index.remove(7, Seq(3));
        index.remove(7, Seq(9));
        assert_eq!(index.candidates(7).collect::<Vec<_>>(), [Seq(2)]);
        index.remove(7, Seq(2));
        assert_eq!(index.candidates(7).count(), 0);
        assert_eq!(index.len(), 1);

        // Seqs come back whole from their low bits, up to 2^32 below the newest.
        let mut index = Index::new();
        let (old, new) = (Seq((5 << 32) + u64::from(u32::MAX)), Seq((6 << 32) + 3));
        index.insert(9, old);
        index.insert(10, new);
        assert_eq!(index.candidates(9).collect::<Vec<_>>(), [old]);
        assert_eq!(index.candidates(10).collect::<Vec<_>>(), [new]);
    }

    #[test]
    fn trimming_goes_on_from_the_last_value_removed() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (mut claims, _) = Claims::open(db.open_tree("dedup").unwrap(), Seq(0), None).unwrap();
        let key = |n: u64| format!("p\0{n}").into_bytes();
        for n in 1..=10 {
            let mut value = Vec::new();
            push_entry(&mut value, &key(n), Seq(n), 1);
            claims.log.insert(log_key(Seq(n)), value).unwrap();
            claims.committed(&[(&key(n)[..], Seq(n))]);
        }
        let mut steps = Vec::new();
        loop {
            let trimmed = claims.trim(Seq(6), 2).unwrap();
            steps.push(trimmed.values);
            if trimmed.done {
                break;
            }
        }
        // The third step reads to the end of what is at or below 6.
        assert_eq!(steps, [2, 2, 2]);
        for n in 1..=10 {
            let expected = (n > 6).then_some(Seq(n));
            assert_eq!(claims.lookup(&key(n)).unwrap(), expected, "{n}");
        }
        assert_eq!(claims.trim(Seq(10), 100).unwrap().values, 4);
        assert!(claims.log.is_empty());
    }

    #[test]
    fn a_lookup_checks_the_key_behind_its_hash() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (mut claims, unsealed) =
            Claims::open(db.open_tree("dedup").unwrap(), Seq(0), None).unwrap();
        assert_eq!(unsealed, 0);
        let mut value = Vec::new();
        push_entry(&mut value, b"p\0a", Seq(5), 1);
        push_entry(&mut value, b"p\0b", Seq(6), 2);
        claims.log.insert(log_key(Seq(5)), value).unwrap();
        claims.committed(&[(&b"p\0a"[..], Seq(5)), (&b"p\0b"[..], Seq(6))]);
        assert_eq!(claims.lookup(b"p\0b").unwrap(), Some(Seq(6)));
        assert_eq!(claims.lookup(b"p\0c").unwrap(), None);
        // Another key under b's hash: the log tells them apart.
        let hash = claims.kept.index.hash(b"p\0c");
        claims.kept.index.insert(hash, Seq(6));
        assert_eq!(claims.lookup(b"p\0c").unwrap(), None);
        assert_eq!(claims.lookup(b"p\0b").unwrap(), Some(Seq(6)));

        // Rebuilt at open; claims at or below a sealed seq are not counted as unsealed.
        let (reopened, unsealed) = Claims::open(claims.log.clone(), Seq(4), None).unwrap();
        assert_eq!(
            (reopened.lookup(b"p\0a").unwrap(), unsealed),
            (Some(Seq(5)), 2)
        );
        assert_eq!(Claims::open(claims.log.clone(), Seq(5), None).unwrap().1, 0);

        // Expiry takes whole values, oldest first; they are no longer found, then trimmed.
        assert_eq!(claims.expire(2, Seq(0)).unwrap(), 0);
        assert_eq!(claims.expire(3, Seq(0)).unwrap(), 2);
        assert_eq!(claims.lookup(b"p\0a").unwrap(), None);
        assert_eq!(claims.expire(3, Seq(0)).unwrap(), 0);
        let trimmed = claims.trim(claims.expired(), 1).unwrap();
        assert_eq!((trimmed.values, trimmed.done), (1, true));
        assert!(claims.log.is_empty());
    }
}
