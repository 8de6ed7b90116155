//! Sealing the log's claims into a run: reading them a step at a time, each step's claims
//! sorted by key, then merging the sorted chunks into the run's values, its filter and summary.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::spent::Spent;
use super::{filters, key, Run, Runs, DATA, DATA_KEY, FILTER, NEXT_RUN_KEY, SUMMARY};
use crate::event::Seq;
use crate::store::sled::bloom::{Bloom, KeyHash};
use crate::store::sled::claims::{entries, entry_len, push_entry};
use crate::store::sled::live::change;
use crate::store::sled::pack::MAX_VALUE;
use crate::store::sled::run_file::Writer;
use crate::store::StoreError;

/// The run being built.
pub(super) struct Building {
    run: Run,
    /// Its filter, filled as its keys are written.
    filter: Bloom,
    phase: Phase,
    /// Its file, written as its values are; `None` once a write failed.
    file: Option<Writer>,
    spent: Spent,
}

impl Building {
    pub(super) fn id(&self) -> u32 {
        self.run.id
    }
}

#[cfg(test)]
impl Building {
    /// Whether its claims are all read and it is being written.
    pub(super) fn writes(&self) -> bool {
        matches!(self.phase, Phase::Write(_))
    }
}

enum Phase {
    /// Reading the log values after `after`, up to the run's `through`.
    Collect { after: Seq, gathered: Gathered },
    /// Writing the gathered claims into the run, in key order.
    Write(Merge),
}

/// Claims read from the log, a chunk per step.
#[derive(Default)]
struct Gathered {
    chunks: Vec<Chunk>,
}

/// One step's claims: their entries as read, and the offsets of the entries in key order
/// (kept exactly as large as they are: a run's chunks hold ~16 MiB at 262,144 claims).
struct Chunk {
    bytes: Vec<u8>,
    order: Vec<u32>,
}

impl Chunk {
    fn entry(&self, offset: u32) -> (&[u8], Seq, u64) {
        entries(&self.bytes[offset as usize..])
            .next()
            .expect("a gathered entry")
    }
}

/// A k-way merge of the gathered chunks: the next key of each chunk, smallest first.
struct Merge {
    gathered: Gathered,
    next: Vec<usize>,
    heap: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
}

impl Merge {
    fn new(gathered: Gathered) -> Merge {
        let mut merge = Merge {
            next: vec![0; gathered.chunks.len()],
            heap: BinaryHeap::with_capacity(gathered.chunks.len()),
            gathered,
        };
        for chunk in 0..merge.gathered.chunks.len() {
            merge.advance(chunk);
        }
        merge
    }

    /// Puts chunk's next key on the heap.
    fn advance(&mut self, chunk: usize) {
        let part = &self.gathered.chunks[chunk];
        if let Some(&offset) = part.order.get(self.next[chunk]) {
            let key = part.entry(offset).0.to_vec();
            self.heap.push(Reverse((key, chunk)));
        }
    }

    /// The next claim in key order.
    fn pop(&mut self) -> Option<(Vec<u8>, Seq, u64)> {
        let Reverse((key, chunk)) = self.heap.pop()?;
        let part = &self.gathered.chunks[chunk];
        let (_, seq, received) = part.entry(part.order[self.next[chunk]]);
        self.next[chunk] += 1;
        self.advance(chunk);
        Some((key, seq, received))
    }
}

impl Runs {
    /// A step of the run being built (beginning one if none is): reads, or writes, up to
    /// [`STEP`](super::STEP) claims (or [`PACE`](super::PACE) times the last batch's); seals the run when they are all
    /// written.
    pub(super) fn seal_step(&mut self) -> Result<(), StoreError> {
        let mut building = match self.kept.building.take() {
            Some(building) => building,
            None => match self.begin()? {
                Some(building) => building,
                None => return Ok(()),
            },
        };
        let step = self.step_claims();
        let started = Instant::now();
        building.phase = match building.phase {
            Phase::Collect {
                after,
                mut gathered,
            } => {
                let from = Seq(after.0 + 1).to_key();
                let mut chunk = Chunk {
                    bytes: Vec::new(),
                    order: Vec::new(),
                };
                let mut last = after;
                let mut done = true;
                for item in self.claims.log.range(from..=building.run.through.to_key()) {
                    let (key, value) = item?;
                    last = Seq::from_key(&key)
                        .ok_or_else(|| StoreError::Corrupt("a dedup log key".into()))?;
                    let mut at = chunk.bytes.len();
                    chunk.bytes.extend_from_slice(&value);
                    for (entry_key, _, _) in entries(&value) {
                        chunk
                            .order
                            .push(u32::try_from(at).expect("a step under 4 GiB"));
                        at += entry_len(entry_key);
                    }
                    if chunk.order.len() >= step {
                        done = false;
                        break;
                    }
                }
                let mut order = std::mem::take(&mut chunk.order);
                order.sort_unstable_by(|a, b| chunk.entry(*a).0.cmp(chunk.entry(*b).0));
                order.shrink_to_fit();
                chunk.order = order;
                chunk.bytes.shrink_to_fit();
                gathered.chunks.push(chunk);
                building.spent.collect.took(started);
                if done {
                    Phase::Write(Merge::new(gathered))
                } else {
                    Phase::Collect {
                        after: last,
                        gathered,
                    }
                }
            }
            Phase::Write(mut merge) => {
                // The step's values go to sled in one batch: one write to its log, which holds
                // less garbage than a write per value (`compact/` measured the same).
                let mut values: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                let mut written = 0;
                while written < step {
                    let Some((entry_key, seq, received)) = merge.pop() else {
                        break;
                    };
                    let entry_key = entry_key.as_slice();
                    // A value and its key (which holds its first dedup key: up to ~400 bytes)
                    // within MAX_VALUE and 10 bytes, as an `events` entry is (`pack.rs`), so
                    // no leaf reaches sled's blob threshold, even in 512 KiB segments.
                    let full = values.last().is_none_or(|(key, value)| {
                        key.len() + value.len() + entry_len(entry_key) > MAX_VALUE + 10
                    });
                    if full {
                        values.push((key(building.run.id, DATA, entry_key), Vec::new()));
                    }
                    let (_, value) = values.last_mut().expect("a value");
                    push_entry(value, entry_key, seq, received);
                    building.filter.insert(KeyHash::of(entry_key));
                    let run = &mut building.run;
                    run.keys += 1;
                    run.newest_ms = run.newest_ms.max(received);
                    written += 1;
                }
                if let Some(file) = &mut building.file {
                    let appended = values
                        .iter()
                        .try_for_each(|(key, value)| file.append(&key[DATA_KEY..], value));
                    if let Err(err) = appended {
                        building.run.copy_failed(&err);
                        building.file = None;
                    }
                }
                let mut batch = sled::Batch::default();
                for (key, value) in values {
                    // A new run's keys are new: nothing is replaced.
                    self.kept.delta += change(&key, None, Some(&value));
                    batch.insert(key, value);
                }
                self.tree.apply_batch(batch)?;
                if merge.heap.is_empty() {
                    // The step goes on with the run's filter and summary.
                    let Building {
                        run,
                        filter,
                        file,
                        spent,
                        ..
                    } = building;
                    return self.finish(run, filter, file, spent, started);
                }
                building.spent.write.took(started);
                Phase::Write(merge)
            }
        };
        self.kept.building = Some(building);
        Ok(())
    }

    /// A new run of the log's values after the last sealed one, up to its newest; `None` if the
    /// log holds none.
    fn begin(&mut self) -> Result<Option<Building>, StoreError> {
        let Some((newest, _)) = self.claims.log.last()? else {
            self.kept.claimed = 0;
            return Ok(None);
        };
        let through =
            Seq::from_key(&newest).ok_or_else(|| StoreError::Corrupt("a dedup log key".into()))?;
        let after = self.kept.sealed_through.max(self.claims.expired());
        if through <= after {
            self.kept.claimed = 0;
            return Ok(None);
        }
        let id = self.kept.next_id;
        self.kept.next_id += 1;
        self.meta
            .insert(NEXT_RUN_KEY, &self.kept.next_id.to_be_bytes())?;
        let filter = Bloom::with_capacity(filters::capacity(self.kept.claimed, self.kept.seal_at));
        self.kept.claimed = 0;
        let mut run = Run::empty(id, through);
        let file = Writer::create(&self.kept.files, id)
            .inspect_err(|err| run.copy_failed(err))
            .ok();
        Ok(Some(Building {
            run,
            filter,
            phase: Phase::Collect {
                after,
                gathered: Gathered::default(),
            },
            file,
            spent: Spent::default(),
        }))
    }

    /// Writes a run's filter and summary (the summary last), keeps it as sealed (with its
    /// `file`, put in place), and has the log values it holds removed. `spent`: the time of the
    /// run's steps so far, the last of them begun at `started`.
    pub(super) fn finish(
        &mut self,
        mut run: Run,
        filter: Bloom,
        file: Option<Writer>,
        mut spent: Spent,
        started: Instant,
    ) -> Result<(), StoreError> {
        let parts: Vec<&[u8]> = filter.as_bytes().chunks(MAX_VALUE).collect();
        for (part, bytes) in parts.iter().enumerate() {
            let part = u16::try_from(part).expect("a filter under 384 MiB");
            let key = key(run.id, FILTER, &part.to_be_bytes());
            let old = self.tree.insert(&key, *bytes)?;
            self.kept.delta += change(&key, old, Some(bytes));
        }
        let mut summary = Vec::with_capacity(26);
        summary.extend_from_slice(&run.keys.to_le_bytes());
        summary.extend_from_slice(&run.newest_ms.to_le_bytes());
        summary.extend_from_slice(&(parts.len() as u16).to_le_bytes());
        summary.extend_from_slice(&run.through.0.to_le_bytes());
        let key = key(run.id, SUMMARY, &[]);
        let old = self.tree.insert(&key, summary.as_slice())?;
        self.kept.delta += change(&key, old, Some(&summary));
        spent.write.took(started);
        // An expiry while it was built dropped it ([`Runs::expire`]): none of its claims expired.
        if run.through > self.kept.sealed_through {
            self.kept.sealed_through = run.through;
            self.kept.trimmed = false;
            (spent.run, spent.keys) = (run.id, run.keys);
            self.kept.trimming = Some(spent);
        }
        match file.map(|file| file.finish(run.keys, run.through)) {
            Some(Ok(file)) => run.file = Some(file),
            Some(Err(err)) => run.copy_failed(&err),
            // Copied from sled in later steps.
            None => {}
        }
        self.kept.keep(run, filter);
        Ok(())
    }
}
