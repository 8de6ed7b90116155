//! An output's durable state on JetStream, in the KV bucket, in values whose size does not grow
//! with the dead events it keeps:
//!
//! - `output.<name>` ([`Position`]): the cursor, the pause flag, and the replay and settled
//!   marks (a few at a time: queued replays, and events delivered out of order above the
//!   cursor). Every delivery changes it, so it stays small.
//! - `dead.<name>.<shard>` ([`DeadShard`]): the dead records of the seqs
//!   `shard * SHARD_SEQS ..` `(shard + 1) * SHARD_SEQS`, so no value holds more than
//!   [`SHARD_SEQS`] records (each error is at most 1,000 characters) and a delivery never
//!   rewrites them.
//!
//! Each value is changed by compare-and-set on its revision. One `change` may touch several
//! values, which are not written atomically together; they are written in the order that keeps
//! every guarantee across a crash between two writes ([`Plan`]): dead records added first, then
//! the position, then dead records removed. A crash between the first two leaves a dead
//! record for an event the cursor has not passed: the next term passes over it as over any
//! dead event (it stays dead, recorded once); a crash between the
//! last two (a replay) leaves the event both queued for replay and listed dead until the
//! operator discards the dead record.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::event::Seq;
use crate::store::{Change, DeadRecord, Mark, OutputState, StoreError};

/// Seqs per dead-record shard.
pub const SHARD_SEQS: u64 = 128;

/// `output.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    pub cursor: u64,
    pub paused: bool,
    pub replay: BTreeSet<u64>,
    pub settled: BTreeSet<u64>,
}

/// `dead.<name>.<shard>`: seq -> why it is dead.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeadShard(pub BTreeMap<u64, DeadRecord>);

/// The shard holding `seq`'s dead record.
pub fn shard_of(seq: u64) -> u64 {
    seq / SHARD_SEQS
}

/// Both values are JSON.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|err| StoreError::Corrupt(format!("an output's state: {err}")))
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Structs of numbers, strings and maps with integer keys always serialize.
    serde_json::to_vec(value).unwrap_or_default()
}

impl Position {
    pub fn state(&self) -> OutputState {
        OutputState {
            cursor: Seq(self.cursor),
            paused: self.paused,
        }
    }

    /// Applies the changes of the position, in order; a cursor never moves back.
    pub fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::Cursor(seq) => self.cursor = self.cursor.max(seq.0),
                Change::Paused(paused) => self.paused = *paused,
                Change::Mark(Mark::Replay, seq) => {
                    self.replay.insert(seq.0);
                }
                Change::Mark(Mark::Settled, seq) => {
                    self.settled.insert(seq.0);
                }
                Change::Unmark(Mark::Replay, seq) => {
                    self.replay.remove(&seq.0);
                }
                Change::Unmark(Mark::Settled, seq) => {
                    self.settled.remove(&seq.0);
                }
                // Dead records are in their shards; a dead mark comes with its record.
                Change::Dead(..) | Change::Mark(Mark::Dead, _) | Change::Unmark(Mark::Dead, _) => {}
            }
        }
    }

    /// Up to `limit` seqs in `range` carrying a replay or settled mark, in order.
    pub fn marked(&self, mark: Mark, range: RangeInclusive<Seq>, limit: usize) -> Vec<Seq> {
        let set = match mark {
            Mark::Replay => &self.replay,
            Mark::Settled => &self.settled,
            Mark::Dead => return Vec::new(),
        };
        set.range(range.start().0..=range.end().0)
            .take(limit)
            .map(|seq| Seq(*seq))
            .collect()
    }
}

impl DeadShard {
    /// Applies the dead-record changes of this shard's seqs, in order.
    pub fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::Dead(seq, record) => {
                    self.0.insert(seq.0, record.clone());
                }
                Change::Unmark(Mark::Dead, seq) => {
                    self.0.remove(&seq.0);
                }
                _ => {}
            }
        }
    }
}

/// The writes one `change` makes, in the order they are made.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Shards gaining a dead record (with every change of theirs), written first.
    pub adding: BTreeMap<u64, Vec<Change>>,
    /// The position's changes, written next (skipped when empty).
    pub position: Vec<Change>,
    /// Shards only losing dead records, written last.
    pub removing: BTreeMap<u64, Vec<Change>>,
}

impl Plan {
    pub fn new(changes: Vec<Change>) -> Plan {
        let mut shards: BTreeMap<u64, Vec<Change>> = BTreeMap::new();
        let mut plan = Plan::default();
        for change in changes {
            match &change {
                Change::Dead(seq, _) | Change::Unmark(Mark::Dead, seq) => {
                    shards.entry(shard_of(seq.0)).or_default().push(change);
                }
                Change::Mark(Mark::Dead, _) => {}
                _ => plan.position.push(change),
            }
        }
        for (shard, changes) in shards {
            let adds = changes.iter().any(|c| matches!(c, Change::Dead(..)));
            if adds {
                plan.adding.insert(shard, changes);
            } else {
                plan.removing.insert(shard, changes);
            }
        }
        plan
    }
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
    fn the_cursor_never_moves_back_and_marks_toggle() {
        let mut position = Position::default();
        position.apply(&[Change::Cursor(Seq(5)), Change::Cursor(Seq(3))]);
        assert_eq!(position.cursor, 5);
        position.apply(&[
            Change::Mark(Mark::Replay, Seq(8)),
            Change::Mark(Mark::Settled, Seq(9)),
            Change::Mark(Mark::Replay, Seq(7)),
        ]);
        assert_eq!(
            position.marked(Mark::Replay, Seq(0)..=Seq(100), 10),
            vec![Seq(7), Seq(8)]
        );
        position.apply(&[Change::Unmark(Mark::Settled, Seq(9))]);
        assert!(position.settled.is_empty());
        assert_eq!(decode::<Position>(&encode(&position)).ok(), Some(position));
    }

    #[test]
    fn a_plan_adds_dead_records_before_the_position_and_removes_them_after() {
        let far = SHARD_SEQS * 3 + 1;
        let plan = Plan::new(vec![
            Change::Dead(Seq(7), dead()),
            Change::Cursor(Seq(7)),
            Change::Unmark(Mark::Dead, Seq(far)),
            Change::Mark(Mark::Replay, Seq(far)),
        ]);
        assert_eq!(
            plan.adding.keys().copied().collect::<Vec<_>>(),
            vec![shard_of(7)]
        );
        assert_eq!(
            plan.position,
            vec![Change::Cursor(Seq(7)), Change::Mark(Mark::Replay, Seq(far))]
        );
        assert_eq!(
            plan.removing.keys().copied().collect::<Vec<_>>(),
            vec![shard_of(far)]
        );
        let mut shard = DeadShard::default();
        shard.apply(&plan.adding[&shard_of(7)]);
        assert_eq!(shard.0.get(&7), Some(&dead()));
        shard.apply(&[Change::Unmark(Mark::Dead, Seq(7))]);
        assert!(shard.0.is_empty());
    }
}
