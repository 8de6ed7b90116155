//! Dedup keys beyond the recent ones, packed into sealed runs, so that sled holds a few values
//! per hundred keys instead of one each (sled keeps ~400 bytes of memory per node whatever it
//! holds, and a leaf holds at most 16 entries: per-key dedup alone cost ~45 MiB per million).
//!
//! New claims go to the `dedup` tree, one entry each (fast, atomic with their event). Once
//! `dedup_run_keys` (262,144) have arrived, the committer moves the `dedup` tree's entries, in key order and a
//! few thousand per step between batches, into the next run: values of up to `MAX_VALUE` bytes
//! in the `dedup_runs` tree, each step one transaction that removes the entries it packs, so a
//! key is always in exactly one place. A run then gets a blocked Bloom filter (stored with it,
//! kept in memory: 10 bits a key), its key count and its newest arrival time. A lookup checks
//! the `dedup` tree, then each run whose filter may hold the key (about 1 % of the others).
//! Retention drops a whole run once its newest key is past `dedup_window`: the run leaves the
//! lookups at once, and its values are removed [`DROP_STEP`] at a time between batches (all
//! of them at once held the committer ~0.23 s for six runs, and every sender with it).
//!
//! `dedup_runs` keys, all under the run's big-endian u32 id:
//! - `[id][0][first key]`: entries `[key len: u16 LE][key][seq: 8 BE][received_at ms: 8 BE]`;
//! - `[id][1]`: the run's summary `[keys: u64 LE][newest: u64 LE][filter parts: u16 LE]`,
//!   written last: a run without it was being built when hookgate stopped, and is finished at
//!   the next open;
//! - `[id][2][part: u16 BE]`: its filter, cut into values;
//! - `[id][3]`: written when the run expires, before its summary is removed, and removed with
//!   its last value: a run that has it is being dropped (an open goes on dropping it).

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::bloom::{Bloom, KeyHash};
use super::live::change;
use super::pack::MAX_VALUE;
use super::record::{dedup_seq, dedup_value};
use crate::event::Seq;
use crate::store::StoreError;

/// Entries moved per step, one step after each batch, at least: about a millisecond of the
/// committer's time, and ten times the keys a batch claims at 64 connections, so sealing keeps
/// up without stalling ingest (2,048 per step cut the throughput of a 10 M store by three
/// quarters while a run was sealed). A bigger batch moves twice the keys it claimed.
const STEP: usize = 256;
const DATA: u8 = 0;
const SUMMARY: u8 = 1;
const FILTER: u8 = 2;
const DROPPING: u8 = 3;
/// Values of an expired run removed per step.
const DROP_STEP: usize = 64;
/// `meta` key of the next run id.
const NEXT_RUN_KEY: &[u8] = b"dedup_runs/next";

/// A sealed run, as kept in memory.
struct Run {
    id: u32,
    bloom: Bloom,
    keys: u64,
    newest_ms: u64,
}

/// The run being filled: where the next step resumes in the `dedup` tree.
struct Building {
    run: Run,
    after: Option<Vec<u8>>,
}

/// The runs, owned by the committer (the only writer).
pub struct Runs {
    /// The `dedup` tree (recent claims) and the `dedup_runs` tree.
    recent: sled::Tree,
    tree: sled::Tree,
    meta: sled::Tree,
    kept: Detached,
}

/// What [`Runs`] holds beside its trees, kept while the committer reopens sled (see
/// `checkpoint.rs`).
pub struct Detached {
    sealed: Vec<Run>,
    building: Option<Building>,
    /// Claims since the last run began, and how many begin one.
    claimed: u64,
    /// Claims of the last batch: a step moves at least twice as many.
    last_claims: usize,
    seal_at: u64,
    next_id: u32,
    /// Expired runs whose values are still being removed, oldest first.
    dropping: std::collections::VecDeque<u32>,
    /// The change in stored bytes since the committer last took it (`live.rs`).
    delta: i64,
}

impl Detached {
    /// The runs again, on the reopened trees.
    pub fn attach(self, recent: sled::Tree, tree: sled::Tree, meta: sled::Tree) -> Runs {
        Runs {
            recent,
            tree,
            meta,
            kept: self,
        }
    }
}

/// Threads reading the sealed runs' filters at open.
const LOADERS: usize = 8;

impl Runs {
    /// Loads the sealed runs' filters, and finishes a run left half built.
    pub fn open(
        recent: sled::Tree,
        tree: sled::Tree,
        meta: sled::Tree,
        seal_at: u64,
    ) -> Result<Runs, StoreError> {
        let next_id = match meta.get(NEXT_RUN_KEY)? {
            Some(value) => u32::from_be_bytes(
                value
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("next dedup run id".into()))?,
            ),
            None => 0,
        };
        let mut runs = Runs {
            recent,
            tree,
            meta,
            kept: Detached {
                sealed: Vec::new(),
                building: None,
                claimed: 0,
                last_claims: 0,
                seal_at: seal_at.max(1),
                next_id,
                dropping: std::collections::VecDeque::new(),
                delta: 0,
            },
        };
        let summaries = (0..next_id)
            .map(|id| Ok((id, runs.tree.get(key(id, SUMMARY, &[]))?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let loaded = runs.load_all(&summaries)?;
        for ((id, _), run) in summaries.iter().zip(loaded) {
            match run {
                Some(run) => runs.kept.sealed.push(run),
                None if runs.tree.contains_key(key(*id, DROPPING, &[]))? => {
                    runs.kept.dropping.push_back(*id);
                }
                None if runs.tree.scan_prefix(key(*id, DATA, &[])).next().is_some() => {
                    let run = runs.rebuild(*id)?;
                    runs.finish(run)?;
                }
                // Expired and dropped.
                None => {}
            }
        }
        Ok(runs)
    }

    /// The sealed runs of `summaries` (None where a run has no summary), in their order. Their
    /// filters are most of what a start-up reads, scattered over the log: with a cold page cache
    /// one reader took 0.33-0.43 s for 38 runs at 10 M events, so [`LOADERS`] read at once.
    fn load_all(
        &self,
        summaries: &[(u32, Option<sled::IVec>)],
    ) -> Result<Vec<Option<Run>>, StoreError> {
        let per_loader = summaries.len().div_ceil(LOADERS).max(1);
        std::thread::scope(|scope| {
            let loaders: Vec<_> = summaries
                .chunks(per_loader)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(id, summary)| {
                                summary.as_ref().map(|s| self.load(*id, s)).transpose()
                            })
                            .collect::<Result<Vec<_>, StoreError>>()
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(summaries.len());
            for loader in loaders {
                let part = loader.join().map_err(|_| {
                    StoreError::Corrupt("reading the dedup runs' filters panicked".into())
                })?;
                all.extend(part?);
            }
            Ok(all)
        })
    }

    /// Drops the trees and keeps the rest (the filters, the run being built, the count).
    pub fn detach(self) -> Detached {
        self.kept
    }

    /// The seq stored under `key` in a run, if any run holds it.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Seq>, StoreError> {
        let hash = KeyHash::of(key);
        let building = self.kept.building.iter().map(|b| &b.run);
        for run in building.chain(self.kept.sealed.iter().rev()) {
            if run.bloom.may_contain(hash) {
                if let Some(seq) = self.find(run.id, key)? {
                    return Ok(Some(seq));
                }
            }
        }
        Ok(None)
    }

    /// The change in stored bytes since the last call.
    pub fn take_delta(&mut self) -> i64 {
        std::mem::take(&mut self.kept.delta)
    }

    /// Counts `n` new claims in the `dedup` tree.
    pub fn claimed(&mut self, n: u64) {
        self.kept.claimed += n;
        self.kept.last_claims = usize::try_from(n).unwrap_or(usize::MAX);
    }

    /// Whether a step is due: of sealing, or of dropping an expired run.
    pub fn wants_step(&self) -> bool {
        self.kept.building.is_some()
            || self.kept.claimed >= self.kept.seal_at
            || !self.kept.dropping.is_empty()
    }

    /// A step of dropping the oldest expired run if there is one, else of sealing.
    pub fn step(&mut self) -> Result<(), StoreError> {
        match self.kept.dropping.front() {
            Some(&id) => self.drop_step(id),
            None => self.seal_step(),
        }
    }

    /// Removes up to [`DROP_STEP`] values of the expired run `id`, and its mark with the last.
    fn drop_step(&mut self, id: u32) -> Result<(), StoreError> {
        let mark = key(id, DROPPING, &[]);
        let keys: Vec<sled::IVec> = self
            .tree
            .scan_prefix(id.to_be_bytes())
            .keys()
            .filter(|key| key.as_ref().map_or(true, |key| key.as_ref() != mark))
            .take(DROP_STEP)
            .collect::<Result<_, _>>()?;
        for key in &keys {
            let old = self.tree.remove(key)?;
            self.kept.delta += change(key, old, None);
        }
        if keys.len() < DROP_STEP {
            let old = self.tree.remove(&mark)?;
            self.kept.delta += change(&mark, old, None);
            self.kept.dropping.pop_front();
        }
        Ok(())
    }

    /// Moves up to `STEP` (or twice the last batch's claims) entries of the `dedup` tree into the run being built (beginning one if
    /// none is), in one transaction; seals the run when the tree has been gone through.
    fn seal_step(&mut self) -> Result<(), StoreError> {
        let mut building = match self.kept.building.take() {
            Some(building) => building,
            None => self.begin()?,
        };
        let iter = match &building.after {
            Some(after) => self.recent.range([after.as_slice(), &[0]].concat()..),
            None => self.recent.iter(),
        };
        let step = STEP.max(self.kept.last_claims.saturating_mul(2));
        let mut entries = Vec::with_capacity(step);
        for item in iter.take(step) {
            let (key, value) = item?;
            entries.push((key, value));
        }
        let done = entries.len() < step;
        let values = pack_entries(building.run.id, &entries);
        let result = (&self.recent, &self.tree).transaction(|(recent, tree)| {
            for (key, _) in &entries {
                recent.remove(key)?;
            }
            for (key, value) in &values {
                tree.insert(key.as_slice(), value.as_slice())?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        });
        transacted(result)?;
        let size = |key: &[u8], value: &[u8]| (key.len() + value.len()) as i64;
        self.kept.delta += values.iter().map(|(k, v)| size(k, v)).sum::<i64>()
            - entries.iter().map(|(k, v)| size(k, v)).sum::<i64>();
        for (key, value) in &entries {
            building.run.bloom.insert(KeyHash::of(key));
            building.run.keys += 1;
            building.run.newest_ms = building.run.newest_ms.max(received_ms(value));
        }
        building.after = entries
            .last()
            .map(|(key, _)| key.to_vec())
            .or(building.after);
        if done {
            self.finish(building.run)?;
        } else {
            self.kept.building = Some(building);
        }
        Ok(())
    }

    /// Drops the sealed runs whose newest key arrived before `cutoff_ms` from the lookups, and
    /// marks them for their values' removal (see [`Runs::step`]). Returns how many keys went
    /// with them.
    pub fn expire(&mut self, cutoff_ms: u64) -> Result<u64, StoreError> {
        let mut dropped = 0;
        let (expired, kept): (Vec<Run>, Vec<Run>) = std::mem::take(&mut self.kept.sealed)
            .into_iter()
            .partition(|run| run.newest_ms < cutoff_ms);
        self.kept.sealed = kept;
        for run in expired {
            // The mark goes before the summary: a run without either is finished again at the
            // next open, one with the mark goes on being dropped.
            let mark = key(run.id, DROPPING, &[]);
            let none: &[u8] = &[];
            let old = self.tree.insert(&mark, none)?;
            self.kept.delta += change(&mark, old, Some(none));
            let summary = key(run.id, SUMMARY, &[]);
            let old = self.tree.remove(&summary)?;
            self.kept.delta += change(&summary, old, None);
            self.kept.dropping.push_back(run.id);
            dropped += run.keys;
        }
        Ok(dropped)
    }

    /// How many keys the sealed runs hold.
    #[cfg(test)]
    fn sealed_keys(&self) -> u64 {
        self.kept.sealed.iter().map(|run| run.keys).sum()
    }

    fn begin(&mut self) -> Result<Building, StoreError> {
        let id = self.kept.next_id;
        self.kept.next_id += 1;
        self.meta
            .insert(NEXT_RUN_KEY, &self.kept.next_id.to_be_bytes())?;
        self.kept.claimed = 0;
        Ok(Building {
            run: Run {
                id,
                bloom: Bloom::with_capacity(2 * self.kept.seal_at as usize),
                keys: 0,
                newest_ms: 0,
            },
            after: None,
        })
    }

    /// Writes a run's filter and summary (the summary last), and keeps it as sealed.
    fn finish(&mut self, run: Run) -> Result<(), StoreError> {
        let parts: Vec<&[u8]> = run.bloom.as_bytes().chunks(MAX_VALUE).collect();
        for (part, bytes) in parts.iter().enumerate() {
            let part = u16::try_from(part).expect("a filter under 384 MiB");
            let key = key(run.id, FILTER, &part.to_be_bytes());
            let old = self.tree.insert(&key, *bytes)?;
            self.kept.delta += change(&key, old, Some(bytes));
        }
        let mut summary = Vec::with_capacity(18);
        summary.extend_from_slice(&run.keys.to_le_bytes());
        summary.extend_from_slice(&run.newest_ms.to_le_bytes());
        summary.extend_from_slice(&(parts.len() as u16).to_le_bytes());
        let key = key(run.id, SUMMARY, &[]);
        let old = self.tree.insert(&key, summary.as_slice())?;
        self.kept.delta += change(&key, old, Some(&summary));
        self.kept.sealed.push(run);
        Ok(())
    }

    fn load(&self, id: u32, summary: &[u8]) -> Result<Run, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("dedup run {id}: summary"));
        let field = |at: usize| -> Result<u64, StoreError> {
            let bytes = summary.get(at..at + 8).ok_or_else(corrupt)?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| corrupt())?))
        };
        let mut filter = Vec::new();
        for part in self.tree.scan_prefix(key(id, FILTER, &[])).values() {
            filter.extend_from_slice(&part?);
        }
        Ok(Run {
            id,
            bloom: Bloom::from_bytes(filter)
                .ok_or_else(|| StoreError::Corrupt(format!("dedup run {id}: filter")))?,
            keys: field(0)?,
            newest_ms: field(8)?,
        })
    }

    /// A run left half built: its filter and summary, from its entries.
    fn rebuild(&self, id: u32) -> Result<Run, StoreError> {
        let mut run = Run {
            id,
            bloom: Bloom::with_capacity(2 * self.kept.seal_at as usize),
            keys: 0,
            newest_ms: 0,
        };
        for value in self.tree.scan_prefix(key(id, DATA, &[])).values() {
            for (key, value) in entries(&value?) {
                run.bloom.insert(KeyHash::of(key));
                run.keys += 1;
                run.newest_ms = run.newest_ms.max(received_ms(value));
            }
        }
        Ok(run)
    }

    fn find(&self, id: u32, wanted: &[u8]) -> Result<Option<Seq>, StoreError> {
        let from = key(id, DATA, &[]);
        let to = key(id, DATA, wanted);
        let Some((_, value)) = self.tree.range(from..=to).next_back().transpose()? else {
            return Ok(None);
        };
        let found = entries(&value)
            .find(|(key, _)| *key == wanted)
            .and_then(|(_, value)| dedup_seq(value));
        Ok(found)
    }
}

fn key(id: u32, kind: u8, rest: &[u8]) -> Vec<u8> {
    [&id.to_be_bytes()[..], &[kind], rest].concat()
}

/// The arrival time in a dedup value (see `record::dedup_value`).
fn received_ms(value: &[u8]) -> u64 {
    value
        .get(8..16)
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// `entries` (in key order) packed into run values of at most `MAX_VALUE` bytes.
fn pack_entries(id: u32, entries: &[(sled::IVec, sled::IVec)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut values: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (entry_key, value) in entries {
        let Some(seq) = dedup_seq(value) else {
            continue;
        };
        let mut entry = Vec::with_capacity(2 + entry_key.len() + 16);
        entry.extend_from_slice(&(entry_key.len() as u16).to_le_bytes());
        entry.extend_from_slice(entry_key);
        entry.extend_from_slice(&dedup_value(seq, received_ms(value)));
        match values.last_mut() {
            Some((_, packed)) if packed.len() + entry.len() <= MAX_VALUE => {
                packed.extend_from_slice(&entry)
            }
            _ => values.push((key(id, DATA, entry_key), entry)),
        }
    }
    values
}

/// The (key, dedup value) entries of a run value; stops at the first malformed one.
fn entries(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = value;
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
        let key = rest.get(2..2 + len)?;
        let value = rest.get(2 + len..2 + len + 16)?;
        rest = &rest[2 + len + 16..];
        Some((key, value))
    })
}

fn transacted(result: Result<(), TransactionError<StoreError>>) -> Result<(), StoreError> {
    match result {
        Ok(()) => Ok(()),
        Err(TransactionError::Abort(err)) => Err(err),
        Err(TransactionError::Storage(err)) => Err(StoreError::from(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (sled::Db, Runs) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = |name: &str| db.open_tree(name).unwrap();
        let runs = Runs::open(tree("dedup"), tree("dedup_runs"), tree("meta"), 1000).unwrap();
        (db, runs)
    }

    fn claim(runs: &Runs, key: &str, seq: u64, at: u64) {
        runs.recent
            .insert(key.as_bytes(), &dedup_value(Seq(seq), at))
            .unwrap();
    }

    #[test]
    fn sealed_keys_are_found_and_leave_the_recent_tree() {
        let (_db, mut runs) = open();
        for n in 0..5000u64 {
            claim(&runs, &format!("p\0id-{n:05}"), n + 1, 1000 + n);
        }
        runs.claimed(1000);
        while runs.wants_step() {
            runs.step().unwrap();
        }
        assert!(runs.recent.is_empty());
        assert_eq!(runs.sealed_keys(), 5000);
        for n in [0u64, 1, 2500, 4999] {
            let key = format!("p\0id-{n:05}");
            assert_eq!(runs.lookup(key.as_bytes()).unwrap(), Some(Seq(n + 1)));
        }
        assert_eq!(runs.lookup(b"p\0id-99999").unwrap(), None);
        // Reopened: the filter comes back from disk.
        let reopened = Runs::open(
            runs.recent.clone(),
            runs.tree.clone(),
            runs.meta.clone(),
            1000,
        )
        .unwrap();
        assert_eq!(reopened.lookup(b"p\0id-01234").unwrap(), Some(Seq(1235)));
        // Expired once its newest key is past the cutoff.
        assert_eq!(runs.expire(1000 + 4999).unwrap(), 0);
        assert_eq!(runs.expire(1000 + 5000).unwrap(), 5000);
        assert_eq!(runs.lookup(b"p\0id-01234").unwrap(), None);
        while runs.wants_step() {
            runs.step().unwrap();
        }
        assert!(runs.tree.is_empty());
    }

    #[test]
    fn an_expired_run_goes_in_steps_and_an_open_goes_on_dropping_it() {
        let (_db, mut runs) = open();
        for n in 0..20_000u64 {
            claim(&runs, &format!("p\0id-{n:05}"), n + 1, 7);
        }
        runs.claimed(1000);
        while runs.wants_step() {
            runs.step().unwrap();
        }
        let values = runs.tree.len();
        assert!(values > DROP_STEP, "{values} values: too few to take steps");
        assert_eq!(runs.expire(8).unwrap(), 20_000);
        assert_eq!(runs.lookup(b"p\0id-00042").unwrap(), None);
        runs.step().unwrap();
        // One step removed DROP_STEP values, and the mark stays.
        assert_eq!(runs.tree.len(), values - DROP_STEP);
        // A stop here: the next open neither rebuilds the run nor keeps it, and goes on.
        let mut reopened = Runs::open(
            runs.recent.clone(),
            runs.tree.clone(),
            runs.meta.clone(),
            1000,
        )
        .unwrap();
        assert_eq!(reopened.sealed_keys(), 0);
        assert_eq!(reopened.lookup(b"p\0id-00042").unwrap(), None);
        assert!(reopened.wants_step());
        let mut steps = 0;
        while reopened.wants_step() {
            reopened.step().unwrap();
            steps += 1;
        }
        assert!(reopened.tree.is_empty());
        assert_eq!(steps, (values - DROP_STEP) / DROP_STEP + 1);
    }

    #[test]
    fn a_half_built_run_is_finished_at_open() {
        let (_db, mut runs) = open();
        for n in 0..(STEP as u64 * 2) {
            claim(&runs, &format!("p\0k{n:06}"), n + 1, 5);
        }
        runs.claimed(1000);
        runs.claimed(0); // a last batch that claimed nothing: a step of STEP
        runs.step().unwrap();
        assert!(runs.kept.building.is_some());
        let reopened = Runs::open(
            runs.recent.clone(),
            runs.tree.clone(),
            runs.meta.clone(),
            1000,
        )
        .unwrap();
        assert_eq!(reopened.sealed_keys(), STEP as u64);
        assert_eq!(reopened.lookup(b"p\0k000007").unwrap(), Some(Seq(8)));
        // The rest is still in the recent tree.
        assert_eq!(reopened.recent.len(), STEP);
    }
}
