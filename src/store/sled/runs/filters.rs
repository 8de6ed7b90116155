//! The sealed runs' Bloom filters, side by side: a lookup costs one row of memory, not one
//! cache miss per run.
//!
//! Filters of the same size (most runs': [`capacity`]) share a bank, in which block `b` of
//! every run lies next to block `b` of the others, so the blocks a key probes in all of them are
//! one contiguous row that the CPU reads ahead; the key's bits are made into one mask once
//! (`bloom::Probe`) and checked against each run's block with eight ANDs. With 42 runs (a
//! 10 M-event store) a probe took 300 ns against 820 with one filter after another, in a
//! stand-alone copy ([performance.md](../../../../docs/performance.md), "Changes tried"). A
//! full bank grows by an eighth (at least one slot), every row copied; the slot of an expired
//! run is freed (never asked) and written over whole by the next run sealed.

use super::super::bloom::{Bloom, Probe, BLOCK_BYTES};

/// The filter size of a run begun with `claimed` claims in the log, for runs sealed every
/// `seal_at`: runs of about that many keys share one size (and so one bank), a filter holding
/// up to an eighth more keys than it was sized for answering "maybe" a little more often
/// (0.09 % of absent keys at 16 bits a key, 0.18 % at 14: `bloom.rs`).
pub fn capacity(claimed: u64, seal_at: u64) -> usize {
    if claimed <= seal_at + seal_at / 8 {
        seal_at as usize
    } else {
        claimed as usize
    }
}

#[derive(Default)]
pub struct Filters {
    banks: Vec<Bank>,
}

/// The filters of one size: `slots` runs' blocks per row, one row per block.
struct Bank {
    blocks: usize,
    /// The run in each slot; `None`: free (its blocks stale, never asked).
    ids: Vec<Option<u32>>,
    bytes: Vec<u8>,
}

impl Bank {
    fn new(blocks: usize) -> Bank {
        Bank {
            blocks,
            ids: Vec::new(),
            bytes: Vec::new(),
        }
    }

    /// The byte offset of `slot`'s block `block`.
    fn at(&self, block: usize, slot: usize) -> usize {
        (block * self.ids.len() + slot) * BLOCK_BYTES
    }

    /// A free slot, the bank grown by an eighth (every row copied) if none is.
    fn free_slot(&mut self) -> usize {
        if let Some(slot) = self.ids.iter().position(Option::is_none) {
            return slot;
        }
        let old = self.ids.len();
        let slots = old + (old / 8).max(1);
        let mut bytes = vec![0u8; self.blocks * slots * BLOCK_BYTES];
        let row = old * BLOCK_BYTES;
        for block in 0..self.blocks {
            let to = block * slots * BLOCK_BYTES;
            bytes[to..to + row].copy_from_slice(&self.bytes[block * row..(block + 1) * row]);
        }
        self.bytes = bytes;
        self.ids.resize(slots, None);
        old
    }

    fn put(&mut self, slot: usize, filter: &[u8]) {
        for block in 0..self.blocks {
            let at = self.at(block, slot);
            let from = block * BLOCK_BYTES;
            self.bytes[at..at + BLOCK_BYTES].copy_from_slice(&filter[from..from + BLOCK_BYTES]);
        }
    }
}

impl Filters {
    /// Keeps run `id`'s filter (which its run no longer holds).
    pub fn add(&mut self, id: u32, filter: Bloom) {
        let blocks = filter.blocks();
        let at = match self.banks.iter().position(|bank| bank.blocks == blocks) {
            Some(at) => at,
            None => {
                self.banks.push(Bank::new(blocks));
                self.banks.len() - 1
            }
        };
        let bank = &mut self.banks[at];
        let slot = bank.free_slot();
        bank.put(slot, filter.as_bytes());
        bank.ids[slot] = Some(id);
    }

    /// Forgets run `id`'s filter; a bank left empty is given back.
    pub fn remove(&mut self, id: u32) {
        for bank in &mut self.banks {
            if let Some(slot) = bank.ids.iter_mut().find(|slot| **slot == Some(id)) {
                *slot = None;
            }
        }
        self.banks
            .retain(|bank| bank.ids.iter().any(Option::is_some));
    }

    /// The runs whose filter may hold the key, newest (highest id) first; usually none.
    pub fn may_hold(&self, probe: &Probe) -> Vec<u32> {
        let mut ids = Vec::new();
        for bank in &self.banks {
            let row = bank.at(probe.block(bank.blocks), 0);
            let row = &bank.bytes[row..row + bank.ids.len() * BLOCK_BYTES];
            for (block, id) in row.chunks_exact(BLOCK_BYTES).zip(&bank.ids) {
                if let Some(id) = id.filter(|_| probe.found_in(block)) {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }

    /// The bytes the filters take, free slots included.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.banks.iter().map(|bank| bank.bytes.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::bloom::KeyHash;
    use super::*;

    fn filter(run: u32, keys: usize, capacity: usize) -> Bloom {
        let mut bloom = Bloom::with_capacity(capacity);
        for n in 0..keys {
            bloom.insert(KeyHash::of(format!("run{run}-{n}").as_bytes()));
        }
        bloom
    }

    /// What one filter after another answers, newest first, for `key`.
    fn one_by_one(filters: &[(u32, Bloom)], key: KeyHash) -> Vec<u32> {
        let mut ids: Vec<u32> = filters
            .iter()
            .filter(|(_, bloom)| bloom.may_contain(key))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }

    #[test]
    fn answers_as_each_filter_does_through_growth_removal_and_reuse() {
        // Three sizes of filter, more runs of the usual one than a bank's first slots.
        let sizes = [
            2_000, 2_000, 2_300, 2_000, 5_000, 2_000, 2_000, 2_000, 2_000, 2_000, 2_000,
        ];
        let mut reference: Vec<(u32, Bloom)> = Vec::new();
        let mut filters = Filters::default();
        let mut next = 0u32;
        let mut add = |reference: &mut Vec<(u32, Bloom)>, filters: &mut Filters, size: usize| {
            let id = next;
            next += 1;
            let bloom = filter(id, size, size);
            filters.add(id, bloom.clone());
            reference.push((id, bloom));
        };
        for size in sizes {
            add(&mut reference, &mut filters, size);
        }
        let check = |reference: &[(u32, Bloom)], filters: &Filters| {
            let mut found = 0;
            for run in 0..14 {
                for n in (0..5_000).step_by(7) {
                    let key = KeyHash::of(format!("run{run}-{n}").as_bytes());
                    let expected = one_by_one(reference, key);
                    assert_eq!(filters.may_hold(&Probe::of(key)), expected, "run{run}-{n}");
                    found += expected.len();
                }
            }
            // Each run's own keys are found (and a few others answer "maybe").
            assert!(found >= reference.len() * 280, "{found}");
        };
        check(&reference, &filters);
        // The oldest and two others of the usual size expire: the next ones take their slots.
        for id in [0, 6, 8] {
            filters.remove(id);
            reference.retain(|(kept, _)| *kept != id);
        }
        check(&reference, &filters);
        let before = filters.bytes();
        add(&mut reference, &mut filters, 2_000);
        add(&mut reference, &mut filters, 2_000);
        check(&reference, &filters);
        assert_eq!(filters.bytes(), before, "the freed slots were taken again");
        // The 5,000-key run's bank goes with it.
        filters.remove(4);
        reference.retain(|(kept, _)| *kept != 4);
        check(&reference, &filters);
        assert!(filters.bytes() < before);
        for (id, _) in std::mem::take(&mut reference) {
            filters.remove(id);
        }
        assert_eq!(filters.bytes(), 0);
        assert!(filters
            .may_hold(&Probe::of(KeyHash::of(b"run1-1")))
            .is_empty());
    }

    #[test]
    fn runs_of_about_the_usual_size_share_one() {
        assert_eq!(capacity(0, 262_144), 262_144);
        assert_eq!(capacity(290_000, 262_144), 262_144);
        assert_eq!(capacity(300_000, 262_144), 300_000);
    }
}
