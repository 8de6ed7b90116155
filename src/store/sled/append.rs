//! Appending a batch's events: each claims its dedup key and joins the open pack (or is stored
//! as a large record) under the next seq; the batch's claims, the open pack, the count of stored
//! bytes and, last, the next seq follow.
//!
//! The same code writes through a sled transaction (a batch that also holds other writes) or
//! straight to the trees (a batch of events only, most of them). A transaction costs sled two
//! writes of its io buffer of its own, each waking its io threads; plain inserts leave the
//! buffer to the batch's flush (`cargo bench --bench ingest`: ~3 µs less CPU per ack in sled's
//! io threads, docs/performance.md). Without a transaction a crash may keep part of a batch: the
//! next seq, written last, says where the last whole batch ends, and the open cuts whatever lies
//! past it (`torn_batch.rs`). No such part was acknowledged, nor seen by a reader (readers see
//! only seqs below the synced next seq).

use std::collections::HashMap;

use sled::transaction::{TransactionError, TransactionalTree, UnabortableTransactionError};
use sled::Transactional;

use super::claims;
use super::committer::{Committer, Outcome, Step};
use super::journal::Encoded;
use super::live::change;
use super::pack::{self, Pack};
use super::{torn_batch, TreeId, Write, LIVE_KEY, NEXT_SEQ_KEY};
use crate::event::Seq;
use crate::store::{Committed, StoreError};

/// A tree a batch writes to (and reads, for its conditional writes): within a transaction, or
/// directly.
pub trait Put {
    type Error;
    /// Inserts; returns the change in stored bytes.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<i64, Self::Error>;
    /// Removes; returns the change in stored bytes.
    fn delete(&self, key: &[u8]) -> Result<i64, Self::Error>;
    /// Reads.
    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, Self::Error>;
}

impl Put for TransactionalTree {
    type Error = UnabortableTransactionError;

    fn put(&self, key: &[u8], value: &[u8]) -> Result<i64, Self::Error> {
        Ok(change(key, self.insert(key, value)?, Some(value)))
    }

    fn delete(&self, key: &[u8]) -> Result<i64, Self::Error> {
        Ok(change(key, self.remove(key)?, None))
    }

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, Self::Error> {
        self.get(key)
    }
}

impl Put for sled::Tree {
    type Error = sled::Error;

    fn put(&self, key: &[u8], value: &[u8]) -> Result<i64, Self::Error> {
        Ok(change(key, self.insert(key, value)?, Some(value)))
    }

    fn delete(&self, key: &[u8]) -> Result<i64, Self::Error> {
        Ok(change(key, self.remove(key)?, None))
    }

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, Self::Error> {
        self.get(key)
    }
}

/// A batch's events being appended, from the seq `next` on.
pub struct Appender<'a> {
    pub next: Seq,
    /// The change in stored bytes so far.
    pub delta: i64,
    /// The pack appended to, written to `meta` at the end if `pack_dirty`.
    pub pack: Option<Pack>,
    pack_dirty: bool,
    pack_bytes: usize,
    /// Keys claimed before the batch (looked up before it began).
    known: &'a HashMap<&'a [u8], Seq>,
    /// Keys claimed by the batch so far.
    claimed: HashMap<&'a [u8], Seq>,
    /// The batch's new claims, in log values of up to `MAX_VALUE` bytes (`claims.rs`).
    log: Vec<(Seq, Vec<u8>)>,
}

impl<'a> Appender<'a> {
    pub fn new(
        next: Seq,
        open: Option<Pack>,
        pack_bytes: usize,
        known: &'a HashMap<&'a [u8], Seq>,
    ) -> Appender<'a> {
        Appender {
            next,
            delta: 0,
            pack: open,
            pack_dirty: false,
            pack_bytes,
            known,
            claimed: HashMap::new(),
            log: Vec::new(),
        }
    }

    /// Claims the event's key and appends it under the next seq, or finds it claimed.
    pub fn event<T: Put>(
        &mut self,
        events: &T,
        (key, record, received_at_ms): &'a Encoded,
    ) -> Result<Committed, T::Error> {
        let key = key.as_slice();
        if let Some(seq) = self.claimed.get(key).or_else(|| self.known.get(key)) {
            return Ok(Committed::Duplicate(*seq));
        }
        let seq = self.next;
        if Pack::holds(record) {
            let appended = self
                .pack
                .as_mut()
                .is_some_and(|open| open.next() == seq && open.push(record));
            if !appended {
                // Nothing more is appended to the pack it leaves: it is sealed.
                if let Some(full) = &self.pack {
                    self.delta += events.put(&pack::key(full.first), &full.sealed())?;
                }
                let mut fresh = Pack::new(seq, self.pack_bytes);
                fresh.push(record);
                self.pack = Some(fresh);
            }
            self.pack_dirty = true;
        } else {
            for (key, value) in pack::large(seq, record) {
                self.delta += events.put(&key, &value)?;
            }
        }
        claims::append(&mut self.log, key, seq, *received_at_ms);
        self.claimed.insert(key, seq);
        self.next = Seq(seq.0 + 1);
        Ok(Committed::Accepted(seq))
    }

    /// Appends the events of `steps` and applies their writes, in order; returns one outcome a
    /// step.
    pub fn steps<'t, T: Put + 't>(
        &mut self,
        steps: &'a [Step<'a>],
        tree: impl Fn(TreeId) -> &'t T,
    ) -> Result<Vec<Outcome>, T::Error> {
        let (events, meta) = (tree(TreeId::Events), tree(TreeId::Meta));
        let mut outcomes = Vec::with_capacity(steps.len());
        for step in steps {
            let writes = match step {
                Step::Event(encoded) => {
                    outcomes.push(Outcome::Event(self.event(events, encoded)?));
                    continue;
                }
                Step::Writes(writes) => *writes,
            };
            for write in writes {
                if self
                    .pack
                    .as_ref()
                    .is_some_and(|open| write.touches_pack(open.first))
                {
                    // The sweeper changes the open pack, read as if it were in `events`.
                    self.settle_open_pack(events, meta)?;
                }
                self.delta += match write {
                    Write::Put(id, key, value) => tree(*id).put(key, value)?,
                    Write::Delete(id, key) => tree(*id).delete(key)?,
                    Write::Raise(id, key, seq) => {
                        let current = tree(*id)
                            .get(key)?
                            .and_then(|value| Seq::from_key(value.as_ref()));
                        if current.is_none_or(|current| current < *seq) {
                            tree(*id).put(key, &seq.to_key())?
                        } else {
                            0
                        }
                    }
                    Write::Swap(id, key, expected, new) => {
                        let current = tree(*id).get(key)?;
                        match new {
                            _ if current.as_deref() != Some(expected.as_slice()) => 0,
                            Some(new) => tree(*id).put(key, new)?,
                            None => tree(*id).delete(key)?,
                        }
                    }
                };
            }
            outcomes.push(Outcome::Written);
        }
        Ok(outcomes)
    }

    /// Moves the open pack into `events` as it is, before a write of the sweeper changes it:
    /// its compare-and-swap then sees what the sweeper judged (unless events came since), and
    /// later events start a new pack rather than rewrite one it changed.
    pub fn settle_open_pack<T: Put>(&mut self, events: &T, meta: &T) -> Result<(), T::Error> {
        if let Some(open) = self.pack.take() {
            self.delta += events.put(&pack::key(open.first), open.value())?;
            self.delta += meta.delete(pack::OPEN_KEY)?;
        }
        self.pack_dirty = false;
        Ok(())
    }

    /// Writes the batch's claims, its open pack and the count of stored bytes (`live` before the
    /// batch, if known): all but the next seq ([`Appender::commit`]).
    pub fn write_rest<T: Put>(
        &mut self,
        dedup: &T,
        meta: &T,
        live: Option<u64>,
    ) -> Result<(), T::Error> {
        for (first, value) in &self.log {
            self.delta += dedup.put(&claims::log_key(*first), value)?;
        }
        if let Some(open) = self.pack.as_ref().filter(|_| self.pack_dirty) {
            self.delta += meta.put(pack::OPEN_KEY, &pack::open_value(open))?;
        }
        if let Some(live) = live.map(|live| live.saturating_add_signed(self.delta)) {
            meta.put(LIVE_KEY, &live.to_be_bytes())?;
        }
        Ok(())
    }

    /// Writes the next seq, the batch's last write, which commits it (`torn_batch.rs`).
    pub fn commit<T: Put>(&self, meta: &T) -> Result<(), T::Error> {
        meta.put(NEXT_SEQ_KEY, &self.next.to_key())?;
        Ok(())
    }
}

/// What a batch's apply gives: the outcomes, the next seq, the open pack, the change in stored
/// bytes.
type Applied = (Vec<Outcome>, Seq, Option<Pack>, i64);

impl Committer {
    /// Claims each event's dedup key and appends it, and applies every write: a batch of events
    /// only straight to the trees, the next seq last (see the module's doc); any other in one
    /// transaction.
    pub fn apply(&mut self, steps: &[Step]) -> Result<Vec<Outcome>, StoreError> {
        let start = self.next_seq;
        let any_writes = steps.iter().any(|step| matches!(step, Step::Writes(_)));
        // With the sealing's changes since the last batch (`runs/`).
        self.live.add(self.runs.take_delta());
        let live = self.live.get();
        // Keys already claimed, looked up before the batch: a read inside a transaction may make
        // sled split a node, which waits for the lock the transaction holds.
        let mut known: HashMap<&[u8], Seq> = HashMap::new();
        for step in steps {
            let Step::Event((key, _, _)) = step else {
                continue;
            };
            if let Some(seq) = self.runs.lookup(key)? {
                known.insert(key.as_slice(), seq);
            }
        }
        let (outcomes, next, pack, delta) = if any_writes {
            self.apply_in_transaction(steps, &known, live)?
        } else {
            let tree = |id: TreeId| &self.trees.all[id as usize];
            let mut appender = Appender::new(start, self.open.take(), self.pack_bytes, &known);
            let outcomes = appender.steps(steps, tree)?;
            appender.write_rest(tree(TreeId::Dedup), tree(TreeId::Meta), live)?;
            if self.tear.tears(outcomes.len()) {
                torn_batch::tear(tree(TreeId::Meta));
            }
            appender.commit(tree(TreeId::Meta))?;
            (outcomes, appender.next, appender.pack, appender.delta)
        };
        self.live.add(delta);
        let accepted: Vec<(&[u8], Seq)> = steps
            .iter()
            .zip(&outcomes)
            .filter_map(|(step, outcome)| match (step, outcome) {
                (Step::Event((key, _, _)), Outcome::Event(Committed::Accepted(seq))) => {
                    Some((key.as_slice(), *seq))
                }
                _ => None,
            })
            .collect();
        self.runs.claimed(&accepted);
        self.next_seq = next;
        self.open = pack;
        Ok(outcomes)
    }

    /// [`Committer::apply`] of a batch that holds writes beside its events, in one transaction:
    /// the outcomes, the next seq, the open pack and the change in stored bytes.
    fn apply_in_transaction<'a>(
        &self,
        steps: &'a [Step],
        known: &'a HashMap<&'a [u8], Seq>,
        live: Option<u64>,
    ) -> Result<Applied, StoreError> {
        let trees: Vec<&::sled::Tree> = self.trees.all.iter().collect();
        // Writes may move marks: readers of marks check that none came in between.
        self.mark_moves.begin();
        let result = trees[..].transaction(|trees| {
            let tree = |id: TreeId| &trees[id as usize];
            let mut appender =
                Appender::new(self.next_seq, self.open.clone(), self.pack_bytes, known);
            let outcomes = appender.steps(steps, tree)?;
            appender.write_rest(tree(TreeId::Dedup), tree(TreeId::Meta), live)?;
            appender.commit(tree(TreeId::Meta))?;
            Ok((outcomes, appender.next, appender.pack, appender.delta))
        });
        self.mark_moves.end();
        match result {
            Ok(applied) => Ok(applied),
            Err(TransactionError::Abort(err)) => Err(err),
            Err(TransactionError::Storage(err)) => Err(StoreError::from(err)),
        }
    }
}
