//! The recent dedup claims: two logs, the `dedup` and `dedup_b` trees, one value per batch of
//! events, and an index of each in memory.
//!
//! New claims go to the current log. When a run is to be sealed (`runs/`), the other log (empty)
//! becomes the current one, and the run is sealed from the log new claims just left; once its
//! summary is written, that log is dropped from sled whole (`Db::drop_tree`) and opened again
//! empty, with its index. Removing its values one by one instead took 0.9-2.6 µs of the
//! committer's time per claim. A lookup asks both.
//!
//! A batch's new claims go into one value keyed by the batch's first new seq (big-endian), so
//! the log only grows at its end, wherever the ids fall: one sled write per batch. (One entry per
//! key, in key order, made a batch of random ids touch a leaf per event, and cost 1.4 x the CPU
//! per ack of sequential ids.) A value is a list of entries
//! `[key len: u16 LE][key][seq: 8 BE][received_at ms: 8 BE]`, the same entries sealed runs hold.
//!
//! The index maps a 32-bit hash of each key (SipHash with this process's random keys, so a
//! sender cannot choose colliding ids) to its seq, and a lookup checks the key in the log value
//! holding that seq: a hash that collides costs a read, never a wrong answer. They are rebuilt
//! from the logs at open, and hold the claims not yet sealed into a run and dropped (up to about
//! twice `dedup_run_keys`: ~9 bytes each, see [`Index`]).

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
    /// Whether no value is left to remove.
    pub done: bool,
}

/// The recent claims: the two logs, and what is kept of them in memory.
pub struct Claims {
    /// `dedup` and `dedup_b`, in that order.
    logs: [sled::Tree; 2],
    kept: Kept,
}

/// What [`Claims`] holds beside the logs, kept while the committer reopens sled.
pub struct Kept {
    /// Each log's index.
    index: [Index; 2],
    /// The log new claims go to; the other holds the claims of the run being sealed (or of the
    /// run sealed last, until the log is dropped), or nothing.
    current: usize,
    /// Whether the other log holds claims.
    other_held: bool,
    /// Each log's stored bytes (keys and values), given back when it is dropped.
    bytes: [i64; 2],
    /// The log values up to this key have expired (their claims are no longer found); those of
    /// the current log go in steps, as a sealed run's do (`Runs::step`), the other's with it.
    expired: Seq,
    /// The newest seq among them.
    expired_seq: Seq,
    /// The last key removed from the current log (none is left before it), since it was opened.
    trimmed_to: Option<Seq>,
}

impl Default for Kept {
    fn default() -> Kept {
        Kept {
            index: [Index::new(), Index::new()],
            current: 0,
            other_held: false,
            bytes: [0, 0],
            expired: Seq(0),
            expired_seq: Seq(0),
            trimmed_to: None,
        }
    }
}

impl Kept {
    /// Whether a log may hold `key`: false only when no unexpired claim has its hash, told
    /// without reading the logs (while sled is closed for a checkpoint).
    pub fn may_hold(&self, key: &[u8]) -> bool {
        self.index.iter().any(|index| {
            index
                .candidates(index.hash(key))
                .any(|seq| seq > self.expired_seq)
        })
    }

    /// The claims again, on the reopened logs.
    pub fn attach(self, logs: [sled::Tree; 2]) -> Claims {
        Claims { logs, kept: self }
    }

    fn other(&self) -> usize {
        1 - self.current
    }
}

/// What [`Claims::open`] found.
pub struct Opened {
    /// The claims of the current log after the newest sealed seq.
    pub unsealed: u64,
    /// The other log holds only claims a sealed run holds: it is to be dropped.
    pub other_sealed: bool,
}

impl Claims {
    /// Indexes both logs, given `sealed`, the newest log key a sealed run holds. The current log
    /// is the one of the newer keys, unless every claim it holds is sealed: a log is left with
    /// only sealed claims when a run was sealed from it and hookgate stopped before dropping
    /// it, never while new claims go to it.
    pub fn open(logs: [sled::Tree; 2], sealed: Seq) -> Result<(Claims, Opened), StoreError> {
        let mut kept = Kept::default();
        let mut last = [None, None];
        let mut unsealed = [0u64; 2];
        for (n, log) in logs.iter().enumerate() {
            for item in log.iter() {
                let (key, value) = item?;
                let first = log_seq(&key)?;
                kept.index[n].add_value(&value);
                kept.bytes[n] += (key.len() + value.len()) as i64;
                if first > sealed {
                    unsealed[n] += entries(&value).count() as u64;
                }
                last[n] = Some(first);
            }
        }
        let all_sealed = |n: usize| last[n].is_some_and(|last| last <= sealed);
        kept.current = if all_sealed(0) {
            1
        } else if all_sealed(1) {
            0
        } else {
            usize::from(last[1] > last[0])
        };
        kept.other_held = last[kept.other()].is_some();
        let opened = Opened {
            unsealed: unsealed[kept.current],
            other_sealed: all_sealed(kept.other()),
        };
        Ok((kept.attach(logs), opened))
    }

    /// Drops the logs and keeps the rest.
    pub fn detach(self) -> Kept {
        self.kept
    }

    /// How many claims the indexes hold.
    pub fn len(&self) -> usize {
        self.kept.index.iter().map(Index::len).sum()
    }

    /// The newest log key whose values have expired.
    pub fn expired(&self) -> Seq {
        self.kept.expired
    }

    /// Which log new claims go to (0: `dedup`, 1: `dedup_b`).
    pub fn current(&self) -> usize {
        self.kept.current
    }

    /// The log new claims go to.
    pub fn current_log(&self) -> &sled::Tree {
        &self.logs[self.kept.current]
    }

    /// The other log, if it holds claims.
    pub fn other_log(&self) -> Option<&sled::Tree> {
        self.kept.other_held.then(|| &self.logs[self.kept.other()])
    }

    /// How many claims the other log's index holds.
    pub fn other_len(&self) -> usize {
        self.kept.index[self.kept.other()].len()
    }

    /// Which log is which (for the committer's handles).
    pub fn log(&self, n: usize) -> &sled::Tree {
        &self.logs[n]
    }

    /// New claims go to the other log from now on; the current one's are to be sealed. Only
    /// while the other holds none.
    pub fn switch(&mut self) {
        debug_assert!(!self.kept.other_held);
        self.kept.current = self.kept.other();
        self.kept.other_held = true;
        self.kept.trimmed_to = None;
    }

    /// Puts `fresh` (empty) in place of the other log, dropped from sled whole, and forgets
    /// its claims. Returns the change in stored bytes.
    pub fn dropped(&mut self, fresh: sled::Tree) -> i64 {
        let other = self.kept.other();
        self.logs[other] = fresh;
        self.kept.index[other] = Index::new();
        self.kept.other_held = false;
        -std::mem::take(&mut self.kept.bytes[other])
    }

    /// The seq `key` was claimed under, if a log holds it.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Seq>, StoreError> {
        for n in [self.kept.current, self.kept.other()] {
            let index = &self.kept.index[n];
            for seq in index.candidates(index.hash(key)) {
                if seq > self.kept.expired_seq && self.holds(n, key, seq)? {
                    return Ok(Some(seq));
                }
            }
        }
        Ok(None)
    }

    /// Whether the value of log `n` holding `seq` holds it under `key`.
    fn holds(&self, n: usize, key: &[u8], seq: Seq) -> Result<bool, StoreError> {
        let log = &self.logs[n];
        let Some((_, value)) = log.range(..=seq.to_key()).next_back().transpose()? else {
            return Ok(false);
        };
        let found = entries(&value).any(|(k, s, _)| s == seq && k == key);
        Ok(found)
    }

    /// Indexes a batch's claims once it has committed; `bytes`: what its values added to the
    /// current log.
    pub fn committed(&mut self, claims: &[(&[u8], Seq)], bytes: i64) {
        let current = self.kept.current;
        let index = &mut self.kept.index[current];
        for (key, seq) in claims {
            index.insert(index.hash(key), *seq);
        }
        self.kept.bytes[current] += bytes;
    }

    /// Removes values from the current log's front whose first seq is at or below `through`
    /// (their claims expired, or are in a sealed run: a log of layout 8), until at least
    /// `claims` claims went, and takes them out of the index. Each step reads on from the last
    /// value removed: sled keeps the leaves it emptied for a while, and short steps that each
    /// walked them again from the front cost a quarter more in all
    /// (`benches/sled_layouts/FINDINGS.md`, section 8).
    pub fn trim(&mut self, through: Seq, claims: usize) -> Result<Trimmed, StoreError> {
        let current = self.kept.current;
        let log = &self.logs[current];
        let from = match self.kept.trimmed_to {
            Some(last) => Bound::Excluded(last.to_key()),
            None => Bound::Unbounded,
        };
        let mut values: Vec<(sled::IVec, sled::IVec)> = Vec::new();
        let mut taken = 0;
        let mut done = true;
        for item in log.range((from, Bound::Included(through.to_key()))) {
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
            self.kept.index[current].remove_value(value);
            delta += change(key, Some(value.clone()), None);
            batch.remove(key);
        }
        // Only the committer writes the logs: what was read is what goes, and nothing goes
        // before it but what earlier steps removed.
        log.apply_batch(batch)?;
        self.kept.bytes[current] += delta;
        if let Some((last, _)) = values.last() {
            self.kept.trimmed_to = Some(log_seq(last)?);
        }
        Ok(Trimmed { delta, done })
    }

    /// Expires the log values after `sealed` (the values up to it are a sealed run's, and
    /// expire with it), oldest first (the other log's, then the current one's), whose claims
    /// all arrived before `cutoff_ms`, up to the first that holds a younger one: their claims
    /// are no longer found, and the values go in steps, as a sealed run's do, or with their
    /// log. Returns how many claims expired.
    pub fn expire(&mut self, cutoff_ms: u64, sealed: Seq) -> Result<u64, StoreError> {
        let mut claims = 0u64;
        let after = Seq(sealed.max(self.kept.expired).0 + 1).to_key();
        let logs = self.other_log().into_iter().chain([self.current_log()]);
        let values = logs.flat_map(|log| log.range(after..));
        let mut expired = (self.kept.expired, self.kept.expired_seq);
        for item in values {
            let (key, value) = item?;
            if entries(&value).any(|(_, _, received)| received >= cutoff_ms) {
                break;
            }
            claims += entries(&value).count() as u64;
            expired.0 = log_seq(&key)?;
            if let Some((_, newest, _)) = entries(&value).last() {
                expired.1 = expired.1.max(newest);
            }
        }
        (self.kept.expired, self.kept.expired_seq) = expired;
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

    fn logs(db: &sled::Db) -> [sled::Tree; 2] {
        ["dedup", "dedup_b"].map(|name| db.open_tree(name).unwrap())
    }

    /// Writes a value of claims to the current log, as a committed batch does.
    fn commit(claims: &mut Claims, batch: &[(&[u8], Seq, u64)]) {
        let mut value = Vec::new();
        for (key, seq, at) in batch {
            push_entry(&mut value, key, *seq, *at);
        }
        let bytes = (8 + value.len()) as i64;
        claims
            .current_log()
            .insert(log_key(batch[0].1), value)
            .unwrap();
        let keys: Vec<(&[u8], Seq)> = batch.iter().map(|(key, seq, _)| (*key, *seq)).collect();
        claims.committed(&keys, bytes);
    }

    #[test]
    fn trimming_goes_on_from_the_last_value_removed() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (mut claims, _) = Claims::open(logs(&db), Seq(0)).unwrap();
        let key = |n: u64| format!("p\0{n}").into_bytes();
        for n in 1..=10 {
            commit(&mut claims, &[(&key(n), Seq(n), 1)]);
        }
        let mut steps = Vec::new();
        loop {
            let before = claims.len();
            let trimmed = claims.trim(Seq(6), 2).unwrap();
            steps.push(before - claims.len());
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
        claims.trim(Seq(10), 100).unwrap();
        assert_eq!(claims.len(), 0);
        assert!(claims.current_log().is_empty());
        assert_eq!(claims.kept.bytes, [0, 0]);
    }

    #[test]
    fn a_lookup_checks_the_key_behind_its_hash() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (mut claims, opened) = Claims::open(logs(&db), Seq(0)).unwrap();
        assert_eq!(opened.unsealed, 0);
        commit(&mut claims, &[(b"p\0a", Seq(5), 1), (b"p\0b", Seq(6), 2)]);
        assert_eq!(claims.lookup(b"p\0b").unwrap(), Some(Seq(6)));
        assert_eq!(claims.lookup(b"p\0c").unwrap(), None);
        // Another key under b's hash: the log tells them apart.
        let index = &mut claims.kept.index[0];
        index.insert(index.hash(b"p\0c"), Seq(6));
        assert_eq!(claims.lookup(b"p\0c").unwrap(), None);
        assert_eq!(claims.lookup(b"p\0b").unwrap(), Some(Seq(6)));

        // Rebuilt at open; claims at or below a sealed seq are not counted as unsealed.
        let (reopened, opened) = Claims::open(logs(&db), Seq(4)).unwrap();
        assert_eq!(
            (reopened.lookup(b"p\0a").unwrap(), opened.unsealed),
            (Some(Seq(5)), 2)
        );
        assert_eq!(Claims::open(logs(&db), Seq(5)).unwrap().1.unsealed, 0);

        // Expiry takes whole values, oldest first; they are no longer found, then trimmed.
        assert_eq!(claims.expire(2, Seq(0)).unwrap(), 0);
        assert_eq!(claims.expire(3, Seq(0)).unwrap(), 2);
        assert_eq!(claims.lookup(b"p\0a").unwrap(), None);
        assert_eq!(claims.expire(3, Seq(0)).unwrap(), 0);
        let trimmed = claims.trim(claims.expired(), 1).unwrap();
        assert!(trimmed.done);
        assert!(claims.current_log().is_empty());
    }

    #[test]
    fn a_switch_sends_new_claims_to_the_other_log_and_a_drop_forgets_the_old() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (mut claims, _) = Claims::open(logs(&db), Seq(0)).unwrap();
        commit(&mut claims, &[(b"p\0a", Seq(1), 1), (b"p\0b", Seq(2), 1)]);
        claims.switch();
        assert_eq!(claims.current(), 1);
        commit(&mut claims, &[(b"p\0c", Seq(3), 1)]);
        // Both logs answer; the old one is the one to seal.
        for (key, seq) in [(&b"p\0a"[..], 1), (b"p\0b", 2), (b"p\0c", 3)] {
            assert_eq!(claims.lookup(key).unwrap(), Some(Seq(seq)));
        }
        assert_eq!(claims.other_log().unwrap().len(), 1);
        assert_eq!(claims.len(), 3);

        // Reopened: the log of the newer keys is the current one, the other holds claims; once
        // a run holds the other's claims, it is the one to drop, whichever holds newer keys.
        let (reopened, opened) = Claims::open(logs(&db), Seq(0)).unwrap();
        assert_eq!((reopened.current(), opened.unsealed), (1, 1));
        assert!(reopened.other_log().is_some() && !opened.other_sealed);
        let (_, opened) = Claims::open(logs(&db), Seq(1)).unwrap();
        assert!(opened.other_sealed);
        let lone = sled::Config::new().temporary(true).open().unwrap();
        let (mut one, _) = Claims::open(logs(&lone), Seq(0)).unwrap();
        commit(&mut one, &[(b"p\0a", Seq(1), 1)]);
        let (reopened, opened) = Claims::open(logs(&lone), Seq(1)).unwrap();
        assert_eq!((reopened.current(), opened.other_sealed), (1, true));
        commit(&mut claims, &[(b"p\0d", Seq(4), 1)]);

        // The drop: the old log's claims are gone, with their bytes.
        let before = claims.kept.bytes;
        db.drop_tree("dedup").unwrap();
        let delta = claims.dropped(db.open_tree("dedup").unwrap());
        assert_eq!(delta, -before[0]);
        assert!(claims.other_log().is_none());
        assert_eq!(claims.lookup(b"p\0a").unwrap(), None);
        assert_eq!(claims.lookup(b"p\0c").unwrap(), Some(Seq(3)));
        assert_eq!(claims.len(), 2);
        // The next switch goes back to it.
        claims.switch();
        commit(&mut claims, &[(b"p\0e", Seq(5), 1)]);
        assert_eq!(claims.current(), 0);
        assert_eq!(claims.lookup(b"p\0e").unwrap(), Some(Seq(5)));
    }
}
