//! An output's durable state on JetStream: one JSON value per output in the KV bucket, so that
//! one `change` (a cursor, a pause flag and marks together) is one compare-and-set of one value.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::event::Seq;
use crate::store::{Change, DeadRecord, Mark, Marks, OutputState, StoreError};

/// Everything one output keeps: `output.<name>` in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutputRecord {
    pub cursor: u64,
    pub paused: bool,
    pub dead: BTreeMap<u64, DeadRecord>,
    pub replay: BTreeSet<u64>,
    pub settled: BTreeSet<u64>,
}

impl OutputRecord {
    pub fn decode(bytes: &[u8]) -> Result<OutputRecord, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|err| StoreError::Corrupt(format!("an output's state: {err}")))
    }

    pub fn encode(&self) -> Vec<u8> {
        // A struct of numbers, strings and maps with integer keys always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn state(&self) -> OutputState {
        OutputState {
            cursor: Seq(self.cursor),
            paused: self.paused,
        }
    }

    /// Applies `changes` in order; a cursor never moves back.
    pub fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::Cursor(seq) => self.cursor = self.cursor.max(seq.0),
                Change::Paused(paused) => self.paused = *paused,
                Change::Dead(seq, record) => {
                    self.dead.insert(seq.0, record.clone());
                }
                Change::Mark(Mark::Dead, _) => {
                    // A dead mark comes with its record, as `Change::Dead`.
                }
                Change::Mark(Mark::Replay, seq) => {
                    self.replay.insert(seq.0);
                }
                Change::Mark(Mark::Settled, seq) => {
                    self.settled.insert(seq.0);
                }
                Change::Unmark(Mark::Dead, seq) => {
                    self.dead.remove(&seq.0);
                }
                Change::Unmark(Mark::Replay, seq) => {
                    self.replay.remove(&seq.0);
                }
                Change::Unmark(Mark::Settled, seq) => {
                    self.settled.remove(&seq.0);
                }
            }
        }
    }

    /// Up to `limit` seqs in `range` carrying `mark`, in order.
    pub fn marked(
        &self,
        mark: Mark,
        range: RangeInclusive<Seq>,
        limit: usize,
    ) -> Vec<(Seq, Option<DeadRecord>)> {
        let range = range.start().0..=range.end().0;
        match mark {
            Mark::Dead => self
                .dead
                .range(range)
                .take(limit)
                .map(|(seq, record)| (Seq(*seq), Some(record.clone())))
                .collect(),
            Mark::Replay => set_range(&self.replay, range, limit),
            Mark::Settled => set_range(&self.settled, range, limit),
        }
    }

    pub fn count(&self, mark: Mark) -> u64 {
        let count = match mark {
            Mark::Dead => self.dead.len(),
            Mark::Replay => self.replay.len(),
            Mark::Settled => self.settled.len(),
        };
        u64::try_from(count).unwrap_or(u64::MAX)
    }

    pub fn marks(&self, seq: Seq) -> Marks {
        Marks {
            dead: self.dead.get(&seq.0).cloned(),
            replay: self.replay.contains(&seq.0),
            settled: self.settled.contains(&seq.0),
        }
    }

    /// A dead or replay mark keeps the event (for a destination).
    pub fn keeps(&self, seq: Seq) -> bool {
        self.dead.contains_key(&seq.0) || self.replay.contains(&seq.0)
    }
}

fn set_range(
    set: &BTreeSet<u64>,
    range: RangeInclusive<u64>,
    limit: usize,
) -> Vec<(Seq, Option<DeadRecord>)> {
    set.range(range)
        .take(limit)
        .map(|seq| (Seq(*seq), None))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead() -> DeadRecord {
        DeadRecord {
            at_ms: 1,
            attempts: 3,
            error: "HTTP 500".into(),
        }
    }

    #[test]
    fn cursor_never_moves_back_and_marks_toggle() {
        let mut record = OutputRecord::default();
        record.apply(&[Change::Cursor(Seq(5)), Change::Cursor(Seq(3))]);
        assert_eq!(record.cursor, 5);
        record.apply(&[
            Change::Dead(Seq(7), dead()),
            Change::Mark(Mark::Replay, Seq(8)),
            Change::Mark(Mark::Settled, Seq(9)),
        ]);
        assert!(record.keeps(Seq(7)) && record.keeps(Seq(8)) && !record.keeps(Seq(9)));
        record.apply(&[
            Change::Unmark(Mark::Dead, Seq(7)),
            Change::Mark(Mark::Replay, Seq(7)),
        ]);
        assert_eq!(
            record.marked(Mark::Replay, Seq(0)..=Seq(100), 10),
            vec![(Seq(7), None), (Seq(8), None)]
        );
        assert_eq!(record.count(Mark::Dead), 0);
        assert_eq!(OutputRecord::decode(&record.encode()).ok(), Some(record));
    }
}
