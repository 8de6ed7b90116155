//! Reads: what one read of the sled store sees, and how it walks the `events` tree. Every read
//! stops at the durable `last_seq`, so a seq a reader sees names the same event after any crash.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::bounded_scan::BoundedScan;
use super::{keys, pack, TreeId, Trees};
use crate::event::Seq;
use crate::store::{DeadRecord, Marks, StoreError, StoredEvent};

/// One value of the `events` tree: the keys it takes, and its durable events (each decoded, or
/// why it cannot be).
pub struct Stored {
    pub first: Seq,
    /// The value under `first`'s key, as stored.
    pub value: ::sled::IVec,
    pub keys: Vec<Vec<u8>>,
    pub events: Vec<(Seq, Result<StoredEvent, String>)>,
    /// The value also holds records past the durable `last_seq` (the open pack, appended to
    /// by a batch not synced yet), which `events` leaves out: a write of the whole value, as
    /// it is, would take them with it.
    pub holds_more: bool,
}

/// What one read sees: the trees and the durable `last_seq`.
pub struct Reader {
    pub trees: Trees,
    pub db: ::sled::Db,
    pub last_seq: watch::Receiver<Seq>,
    pub reads: Arc<ReadsSinceOpen>,
    pub mark_moves: Arc<MarkMoves>,
}

/// The committer's transactions that may move an event's marks between `dead`, `replay` and
/// `settled`, counted twice each: once before it applies one (the count is then odd) and once
/// after. A reader reads the three marks with plain reads and keeps them if the count was even
/// and the same before and after (a seqlock): no move came in between, so an event moving from
/// `dead` to `replay` is never seen in neither. A read-only sled transaction would tell the same,
/// but sled 0.34 takes its global write lock for one and writes an io buffer to its log for it
/// (`pin_log`): a disk write, and a wake-up of its io threads, per read.
#[derive(Default)]
pub struct MarkMoves(AtomicU64);

impl MarkMoves {
    /// A transaction that may move marks begins.
    pub fn begin(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// It ended, applied or not.
    pub fn end(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// The count, unless a move is being applied.
    fn settled(&self) -> Option<u64> {
        let count = self.0.load(Ordering::SeqCst);
        count.is_multiple_of(2).then_some(count)
    }

    /// Whether no move began since `count` was read.
    fn unchanged(&self, count: u64) -> bool {
        fence(Ordering::SeqCst);
        self.0.load(Ordering::SeqCst) == count
    }
}

/// The marks of one event, from its values in the `dead`, `replay` and `settled` trees.
fn marks_of(
    dead: Option<::sled::IVec>,
    replay: Option<::sled::IVec>,
    settled: Option<::sled::IVec>,
) -> Marks {
    Marks {
        dead: dead.map(|value| DeadRecord::decode(&value).unwrap_or_else(DeadRecord::unreadable)),
        replay: replay.is_some(),
        settled: settled.is_some(),
    }
}

/// Plain reads of the marks tried before a read-only transaction.
const MARK_READ_TRIES: usize = 4;

/// The bytes of `events` values read since sled was last opened, but for the newest events'.
/// sled 0.34 applies its cache's bound to a page only once 64 reads of the page's shard (one of
/// 256) have gathered, so the nodes readers pull in stay resident until sled is reopened: past
/// `[store] checkpoint_read_mb`, the committer is asked for a checkpoint, which empties the cache.
pub struct ReadsSinceOpen {
    bytes: AtomicU64,
    /// A checkpoint was asked for and has not happened yet.
    asked: AtomicBool,
    /// Values whose first seq is within this many of the last are not counted
    /// (`StoreConfig::recent_read_seqs`).
    recent: u64,
}

impl ReadsSinceOpen {
    pub fn new(recent: u64) -> ReadsSinceOpen {
        ReadsSinceOpen {
            bytes: AtomicU64::new(0),
            asked: AtomicBool::new(false),
            recent,
        }
    }

    /// Counts a value of `bytes` whose first seq is `first`, read when `last` was the newest.
    pub fn add(&self, first: Seq, last: Seq, bytes: u64) {
        if first.0.saturating_add(self.recent) <= last.0 {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Whether reads passed `bound` since sled was opened (0: never).
    pub fn over(&self, bound: u64) -> bool {
        bound > 0 && self.bytes.load(Ordering::Relaxed) >= bound
    }

    /// Whether reads passed `bound` and nobody asked for a checkpoint yet; the first caller to
    /// see it asks.
    pub fn should_ask(&self, bound: u64) -> bool {
        self.over(bound) && !self.asked.swap(true, Ordering::AcqRel)
    }

    /// The checkpoint asked for was not taken: the next read over the bound asks again.
    pub fn unask(&self) {
        self.asked.store(false, Ordering::Release);
    }

    /// sled was reopened: count afresh.
    pub fn reset(&self) -> u64 {
        self.asked.store(false, Ordering::Release);
        self.bytes.swap(0, Ordering::Relaxed)
    }
}

impl Reader {
    pub fn last_seq(&self) -> Seq {
        *self.last_seq.borrow()
    }

    pub fn tree(&self, id: TreeId) -> &::sled::Tree {
        self.trees.get(id)
    }

    /// Visits, in seq order, the stored values that hold seqs from `from` up to the durable last
    /// seq, each with its durable events, until `visit` returns `false`: the `events` tree's, and
    /// the open pack (`pack::OPEN_KEY` in `meta`) in its place among them, as if it were there.
    pub fn scan(
        &self,
        from: Seq,
        mut visit: impl FnMut(Stored) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let last = self.last_seq();
        if from > last {
            return Ok(());
        }
        // Read before the tree: the open pack only ever moves into the tree, so what the tree
        // lacks of the durable seqs below `last` is in this copy (events appended to the pack
        // since came after `last`). It is left out if it holds nothing from `from` on. Large
        // records may come after it in the tree.
        let mut open = match self.open_pack()? {
            Some((first, value)) if first <= last => Some(self.decode(first, &value, last)?)
                .filter(|open| open.events.last().is_some_and(|(seq, _)| *seq >= from)),
            _ => None,
        };
        let tree = self.tree(TreeId::Events);
        // The value holding `from` may start before it (a pack); if that is the open pack, the
        // tree's values before it hold nothing from `from` on.
        let start = match &open {
            Some(open) if open.first <= from => pack::key(open.first).to_vec(),
            _ => match tree.range(..=pack::key(from)).next_back().transpose()? {
                Some((key, _)) if key.len() == 8 => key.to_vec(),
                _ => pack::key(from).to_vec(),
            },
        };
        for item in BoundedScan::new(tree, start..) {
            let (key, value) = item?;
            let (first, part) = pack::parse_key(&key)
                .ok_or_else(|| StoreError::Corrupt(format!("events key {key:?}")))?;
            if part > 0 {
                continue;
            }
            if first > last {
                break;
            }
            if let Some(open) = open.take_if(|open| first >= open.first) {
                let open_first = open.first;
                if !visit(open)? {
                    return Ok(());
                }
                if first == open_first {
                    // That pack, moved into the tree since this read began: visited already.
                    continue;
                }
            }
            self.reads.add(first, last, value.len() as u64);
            if !visit(self.decode(first, &value, last)?)? {
                return Ok(());
            }
        }
        if let Some(open) = open {
            visit(open)?;
        }
        Ok(())
    }

    /// The open pack: its first seq and its bytes as they would be in the `events` tree.
    fn open_pack(&self) -> Result<Option<(Seq, ::sled::IVec)>, StoreError> {
        let Some(value) = self.tree(TreeId::Meta).get(pack::OPEN_KEY)? else {
            return Ok(None);
        };
        let (first, bytes) = pack::parse_open(&value)
            .map_err(|err| StoreError::Corrupt(format!("the open pack: {err}")))?;
        Ok(Some((first, ::sled::IVec::from(bytes))))
    }

    /// The durable events of the value stored under `first`'s key, and every key it takes.
    pub(super) fn decode(
        &self,
        first: Seq,
        value: &::sled::IVec,
        last: Seq,
    ) -> Result<Stored, StoreError> {
        let corrupt = |err: String| StoreError::Corrupt(format!("events value {first}: {err}"));
        let mut keys = vec![pack::key(first).to_vec()];
        let mut events = Vec::new();
        let mut holds_more = false;
        match pack::parse(&pack::unseal(value).map_err(corrupt)?).map_err(corrupt)? {
            pack::Value::Pack(records) => {
                for (offset, record) in records {
                    let seq = Seq(first.0 + u64::from(offset));
                    if seq > last {
                        holds_more = true;
                        break;
                    }
                    events.push((seq, StoredEvent::decode(seq, record)));
                }
            }
            pack::Value::Large { parts, head } => {
                let mut record = head.to_vec();
                for part in 1..parts {
                    let key = pack::part_key(first, part);
                    let Some(value) = self.tree(TreeId::Events).get(key)? else {
                        // The sweeper removes the first value before the parts (or with them):
                        // with it gone too, the event expired since it was read, and is gone.
                        if self.tree(TreeId::Events).get(pack::key(first))?.is_none() {
                            return Ok(Stored {
                                first,
                                value: value.clone(),
                                keys,
                                events: Vec::new(),
                                holds_more: false,
                            });
                        }
                        return Err(corrupt(format!("part {part} of {parts} is missing")));
                    };
                    self.reads.add(first, last, value.len() as u64);
                    record.extend_from_slice(&value);
                    keys.push(key.to_vec());
                }
                events.push((first, StoredEvent::decode(first, &record)));
            }
        }
        Ok(Stored {
            first,
            value: value.clone(),
            keys,
            events,
            holds_more,
        })
    }

    /// Up to `limit` durable events after `after`, optionally of one provider, until their
    /// bodies reach `bytes` (the event that reaches it included), looking at no more than about
    /// `look_at` events (whole packs): with the seq it looked through when it stopped there,
    /// before `limit`, `bytes` and the last event.
    pub fn events_after(
        &self,
        after: Seq,
        limit: usize,
        bytes: usize,
        provider: Option<&str>,
        look_at: usize,
    ) -> Result<(Vec<StoredEvent>, Option<Seq>), StoreError> {
        let mut events = Vec::new();
        let (mut looked, mut stopped, mut body_bytes) = (0, None, 0);
        if limit == 0 || bytes == 0 {
            return Ok((events, stopped));
        }
        self.scan(Seq(after.0.saturating_add(1)), |stored| {
            for (seq, event) in stored.events {
                if seq <= after {
                    continue;
                }
                let event = event.map_err(StoreError::Corrupt)?;
                looked += 1;
                if provider.is_none_or(|p| p == event.provider) {
                    body_bytes += event.body.len();
                    events.push(event);
                    if events.len() >= limit || body_bytes >= bytes {
                        return Ok(false);
                    }
                }
                stopped = Some(seq);
            }
            let go_on = looked < look_at;
            if go_on {
                stopped = None;
            }
            Ok(go_on)
        })?;
        Ok((events, stopped))
    }

    pub fn event(&self, seq: Seq) -> Result<Option<StoredEvent>, StoreError> {
        let mut found = None;
        self.scan(seq, |stored| {
            found = stored.events.into_iter().find(|(s, _)| *s == seq);
            Ok(false)
        })?;
        found
            .map(|(_, event)| event.map_err(StoreError::Corrupt))
            .transpose()
    }

    pub fn cursor(&self, output: &str) -> Result<Seq, StoreError> {
        Ok(self
            .tree(TreeId::Meta)
            .get(keys::cursor_key(output))?
            .and_then(|value| Seq::from_key(&value))
            .unwrap_or(Seq(0)))
    }

    /// Every mark of `seq` for `output`, as one moment saw them: an event moving between `dead`
    /// and `replay` (replayed, then dead again) is never seen in neither. Plain reads checked
    /// against the committer's moves ([`MarkMoves`]); a read-only transaction if moves keep
    /// coming in between.
    pub fn marks(&self, output: &str, seq: Seq) -> Result<Marks, StoreError> {
        let key = keys::output_seq_key(output, seq);
        for _ in 0..MARK_READ_TRIES {
            let Some(count) = self.mark_moves.settled() else {
                std::thread::yield_now();
                continue;
            };
            let marks = marks_of(
                self.tree(TreeId::Dead).get(&key)?,
                self.tree(TreeId::Replay).get(&key)?,
                self.tree(TreeId::Settled).get(&key)?,
            );
            if self.mark_moves.unchanged(count) {
                return Ok(marks);
            }
        }
        self.marks_in_transaction(&key)
    }

    fn marks_in_transaction(&self, key: &[u8]) -> Result<Marks, StoreError> {
        use ::sled::transaction::{ConflictableTransactionError, TransactionError};
        use ::sled::Transactional;
        let trees = [
            self.tree(TreeId::Dead),
            self.tree(TreeId::Replay),
            self.tree(TreeId::Settled),
        ];
        let result = trees[..].transaction(|trees| {
            Ok::<_, ConflictableTransactionError<StoreError>>(marks_of(
                trees[0].get(key)?,
                trees[1].get(key)?,
                trees[2].get(key)?,
            ))
        });
        match result {
            Ok(marks) => Ok(marks),
            Err(TransactionError::Abort(err)) => Err(err),
            Err(TransactionError::Storage(err)) => Err(StoreError::from(err)),
        }
    }
}
