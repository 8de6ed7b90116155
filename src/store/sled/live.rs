//! How many bytes of keys and values the store holds: what a compaction would copy
//! (`compact/`), against which sled's file is judged.
//!
//! The committer counts each write's change (sled returns the value a write replaced) and
//! stores the count in `meta` with every batch, so it survives restarts. The sealing of dedup
//! keys into runs and the runs' expiry are counted as they happen and stored with the next batch:
//! a crash between the two loses only that part, and the next compaction counts again exactly.
//! A store written before the count existed has none until its first compaction.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a shared count holds while nothing is known.
const UNKNOWN: u64 = u64::MAX;

/// The count, shared by the committer (which writes it) and the sweeper (which reads it).
#[derive(Clone, Debug)]
pub struct Live(Arc<AtomicU64>);

impl Live {
    pub fn new(bytes: Option<u64>) -> Live {
        Live(Arc::new(AtomicU64::new(bytes.unwrap_or(UNKNOWN))))
    }

    pub fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&bytes| bytes != UNKNOWN)
    }

    pub fn set(&self, bytes: u64) {
        self.0.store(bytes.min(UNKNOWN - 1), Ordering::Relaxed);
    }

    /// Adds a change, if the count is known.
    pub fn add(&self, delta: i64) {
        if let Some(bytes) = self.get() {
            self.set(bytes.saturating_add_signed(delta));
        }
    }
}

/// The change in stored bytes of a write to `key` that replaced `old` by `new` (`None`: removed
/// or absent).
pub fn change(key: &[u8], old: Option<sled::IVec>, new: Option<&[u8]>) -> i64 {
    let size = |value: Option<usize>| value.map_or(0, |len| (key.len() + len) as i64);
    size(new.map(<[u8]>::len)) - size(old.as_deref().map(<[u8]>::len))
}

/// The count as `meta` stores it.
pub fn decode(value: &[u8]) -> Option<u64> {
    value.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_count_keys_and_values() {
        assert_eq!(change(b"k", None, Some(b"abc")), 4);
        assert_eq!(change(b"k", Some(b"abc".into()), Some(b"a")), -2);
        assert_eq!(change(b"k", Some(b"abc".into()), None), -4);
        assert_eq!(change(b"k", None, None), 0);
        let live = Live::new(None);
        live.add(5);
        assert_eq!(live.get(), None);
        live.set(10);
        live.add(-20);
        assert_eq!(live.get(), Some(0));
    }
}
