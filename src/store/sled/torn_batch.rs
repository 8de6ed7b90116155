//! The open cuts off what a crash kept of a batch that never committed.
//!
//! A batch of events only is written to sled without a transaction (`append.rs`), its next seq
//! last: that write commits it. sled recovers a prefix of its log after a crash: it replays the
//! log in order and stops at the first torn message or missing segment (sled 0.34.7's
//! `doc/testing_strategies` and `pagecache/iterator.rs`; its transactions rest on the same
//! rule). So the store holds every batch up to the next seq it holds, `n`, and perhaps part of
//! the batch after it: a batch nobody was answered for (answers wait for the sync after the
//! next seq's write) and no reader saw (readers see seqs below the synced next seq only). All
//! of that part lies at or past `n`:
//!
//! - in `events`, packs and large records keyed `n` or more, and the pack that was open before
//!   the batch, sealed with the batch's first events (keyed below `n`, holding seqs past it);
//! - in `meta`, the open pack, appended to (seqs past `n`) or a new one (its first seq `n` or
//!   more); the count of stored bytes (left as it is: a crash may leave it off by a batch, as
//!   `live.rs` allows);
//! - in `dedup`, the batch's log values of claims, keyed by its first seq: `n` or more.
//!
//! [`cut`] removes that part, and cuts a pack holding seqs on both sides of `n` back to the seqs
//! below it, before anything reads the store. It writes nothing to a store without such a part,
//! and a crash during it leaves a store it cuts again at the next open.

use std::path::Path;

use super::pack::{self, Pack};
use super::{unreadable, TreeId, Trees};
use crate::event::Seq;
use crate::store::StoreError;

/// What [`cut`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cut {
    /// Values of `events` and `dedup` removed (keyed `n` or more).
    pub removed: usize,
    /// Packs cut back to their seqs below `n` (the open pack, the pack sealed before it).
    pub packs: usize,
}

/// Removes whatever the store holds at or past `next` (the next seq it holds), the part of a
/// batch that a crash cut short. `dir`: sled's directory, named when a value does not parse.
pub fn cut(trees: &Trees, next: Seq, max_value: usize, dir: &Path) -> Result<Cut, StoreError> {
    let corrupt = |what: &str, err: String| unreadable(dir, what, &err);
    let (events, dedup, meta) = (
        trees.get(TreeId::Events),
        trees.get(TreeId::Dedup),
        trees.get(TreeId::Meta),
    );
    let mut done = Cut::default();

    // The open pack: a new one of the torn batch goes; one appended to is cut back.
    let mut open_first = None;
    if let Some(value) = meta.get(pack::OPEN_KEY)? {
        let (first, raw) = pack::parse_open(&value).map_err(|err| corrupt("an open pack", err))?;
        if first >= next {
            meta.remove(pack::OPEN_KEY)?;
            done.packs += 1;
        } else {
            open_first = Some(first);
            match cut_pack(first, raw, next, max_value)
                .map_err(|err| corrupt("an open pack", err))?
            {
                None => {}
                Some(Some(kept)) => {
                    meta.insert(pack::OPEN_KEY, pack::open_value(&kept))?;
                    done.packs += 1;
                }
                Some(None) => {
                    meta.remove(pack::OPEN_KEY)?;
                    done.packs += 1;
                }
            }
        }
    }

    // The pack before `n` in `events`: the open pack sealed by the torn batch, which `meta`'s
    // copy (if the batch did not replace it) holds as it was, or cut back.
    if let Some((key, value)) = events.range(..next.to_key()).next_back().transpose()? {
        if let Some((first, 0)) = pack::parse_key(&key) {
            if open_first == Some(first) {
                // Never both at once but for a torn batch: the sweeper moves the open pack into
                // `events` and removes it from `meta` in one transaction.
                events.remove(&key)?;
                done.packs += 1;
            } else {
                let raw = pack::unseal(&value).map_err(|err| corrupt("an events value", err))?;
                match cut_pack(first, &raw, next, max_value)
                    .map_err(|err| corrupt("an events value", err))?
                {
                    None => {}
                    Some(Some(kept)) => {
                        events.insert(&key, kept.sealed())?;
                        done.packs += 1;
                    }
                    Some(None) => {
                        events.remove(&key)?;
                        done.packs += 1;
                    }
                }
            }
        }
    }

    // Whatever is keyed at or past `n`: the torn batch's packs, large records and claims.
    for tree in [events, dedup] {
        for key in tree.range(next.to_key()..).keys() {
            tree.remove(key?)?;
            done.removed += 1;
        }
    }
    if done != Cut::default() {
        tracing::warn!(
            next_seq = next.0,
            removed = done.removed,
            packs_cut = done.packs,
            "The store held part of a batch past its last commit (a crash during the batch, \
             which nobody was answered for): it was removed."
        );
    }
    Ok(done)
}

/// The pack of `raw` (its records from `first` on) cut back to its seqs below `next`: `None`
/// when it holds none at or past `next` (or is a large record's first part), `Some(None)` when
/// it holds none below.
fn cut_pack(
    first: Seq,
    raw: &[u8],
    next: Seq,
    max_value: usize,
) -> Result<Option<Option<Pack>>, String> {
    let pack::Value::Pack(records) = pack::parse(raw)? else {
        return Ok(None);
    };
    let seq = |offset: u16| Seq(first.0 + u64::from(offset));
    if records.last().is_none_or(|(offset, _)| seq(*offset) < next) {
        return Ok(None);
    }
    if seq(records[0].0) >= next {
        return Ok(Some(None));
    }
    let below = records.into_iter().take_while(|(o, _)| seq(*o) < next);
    Pack::of_records(first, below, max_value.max(raw.len())).map(|kept| Some(Some(kept)))
}

/// The environment variable that tears a batch, for the test that a restart cuts it: after this
/// many batches of two events or more, the next is written but for its next seq, sled writes
/// what it holds to its file, and the process aborts, as a crash during the batch would leave
/// it (it is not a config key).
pub const TEAR_ENV: &str = "HOOKGATE_TEST_TEAR_BATCH_AFTER";

/// [`TEAR_ENV`]'s count of batches left before the torn one (tests only).
#[derive(Debug, Default)]
pub struct TearHook(Option<u64>);

impl TearHook {
    pub fn from_env() -> TearHook {
        let batches = std::env::var(TEAR_ENV).ok().and_then(|n| n.parse().ok());
        if let Some(batches) = batches {
            tracing::warn!(
                batches,
                "{TEAR_ENV} is set: a batch will be torn by an abort."
            );
        }
        TearHook(batches)
    }

    /// Whether to tear this batch of `events` events.
    pub fn tears(&mut self, events: usize) -> bool {
        match self.0.as_mut() {
            Some(0) if events >= 2 => true,
            Some(left) if events >= 2 => {
                *left -= 1;
                false
            }
            _ => false,
        }
    }
}

/// Has sled write what it holds to its file (without an fsync, as its io threads would), then
/// aborts the process (tests only: [`TEAR_ENV`]).
pub fn tear(tree: &sled::Tree) -> ! {
    if let Err(err) = tree.flush() {
        tracing::error!(error = %err, "{TEAR_ENV}: sled's flush failed.");
    }
    std::process::abort()
}
