//! Dedup keys beyond the recent ones, packed into sealed runs, so that sled holds a few values
//! per hundred keys instead of one each (sled keeps ~400 bytes of memory per node whatever it
//! holds, and a leaf holds at most 16 entries: per-key dedup alone cost ~45 MiB per million).
//!
//! New claims go to the log of recent claims (`claims.rs`: one value per batch, indexed in
//! memory). Once `dedup_run_keys` (262,144) have arrived, the committer seals the log's values
//! up to the newest one into the next run, in steps between batches (and while it is idle):
//! it reads them [`STEP`] claims at a time, sorting each step's claims by key; it then merges
//! those sorted chunks into values of up to `MAX_VALUE` bytes in the `dedup_runs` tree, in key
//! order; a run then gets a blocked Bloom filter (stored with it, kept in memory beside the
//! other runs' so that a lookup reads one row of them: 16 bits a key), its key count, its
//! newest arrival time and the newest log key it holds. Only then are those log values removed
//! (and taken out of the index), as many claims a step as a step of sealing reads: until they
//! are, a key is in both places, never in neither. (256 values a
//! step, ~15 claims each, held the committer 3-5 ms a step, up to 15 ms, in `cargo bench
//! --bench ingest`, and every ack waiting behind it.) Once they are gone, an info line says how
//! long the run's steps took. A lookup checks the recent claims, then each sealed run whose
//! filter may hold the key (about 0.09 % of the others).
//! Each sealed run also has a copy in a file of its own (`run_file.rs`), written as the run is,
//! which lookups read while a checkpoint has sled closed; a run without one (sealed by an
//! earlier hookgate, or whose copy was lost) is copied from sled in steps, once nothing else is
//! due.
//! Retention drops a whole run once its newest key is past `dedup_window`: the run leaves the
//! lookups at once, and its values are removed [`DROP_STEP`] at a time between batches (all
//! of them at once held the committer ~0.23 s for six runs, and every sender with it).
//!
//! `dedup_runs` keys, all under the run's big-endian u32 id:
//! - `[id][0][first key]`: entries as in the log (`claims::entries`);
//! - `[id][1]`: the run's summary `[keys: u64 LE][newest: u64 LE][filter parts: u16 LE]
//!   [newest log key: u64 LE]` (stores of layout 3 have no log key), written last: a run
//!   without it was being built when hookgate stopped; its claims are still in the log, so an
//!   open drops what it had written (a store of layout 3 moved its keys out as it went, so an
//!   open finishes such a run instead);
//! - `[id][2][part: u16 BE]`: its filter, cut into values;
//! - `[id][3]`: written when the run expires (or is dropped half built), before its summary is
//!   removed, and removed with its last value: a run that has it is being dropped (an open goes
//!   on dropping it).

//!
//! Here: the runs, their lookups, opening, expiry and dropping; `sealing.rs` builds a run from
//! the log, `spent.rs` times its steps, `copy.rs` writes a sealed run's file from sled,
//! `filters.rs` keeps the runs' filters side by side.

mod copy;
mod filters;
mod sealing;
mod spent;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::bloom::{Bloom, KeyHash, Probe};
use super::claims::{self, entries, Claims};
use super::live::change;
use super::run_file::{self, RunFile};
use crate::event::Seq;
use crate::store::StoreError;
use copy::Copying;
use filters::Filters;
use sealing::Building;
use spent::Spent;

/// Claims read (or written into the run, or trimmed from the log) per step, at least: a fraction
/// of a millisecond of the committer's time (2,048 doubled the p99 of commits at 1,000 a second,
/// each waiting behind a step).
const STEP: usize = 256;
/// A step after a batch reads (or writes) at least this many times the claims it made.
const PACE: usize = 4;
const DATA: u8 = 0;
const SUMMARY: u8 = 1;
const FILTER: u8 = 2;
const DROPPING: u8 = 3;
/// The length of a value's key before its first entry's key: the run id and [`DATA`].
const DATA_KEY: usize = 5;
/// Values of an expired run removed per step.
const DROP_STEP: usize = 64;
/// The environment variable that lowers `dedup_run_keys`, for the tests that kill the real
/// binary while runs are sealed (it is not a config key).
pub const RUN_KEYS_ENV: &str = "HOOKGATE_TEST_DEDUP_RUN_KEYS";

/// The claims that begin a run: `configured`, unless a test lowered it.
pub fn run_keys(configured: u64) -> u64 {
    std::env::var(RUN_KEYS_ENV)
        .ok()
        .and_then(|keys| keys.parse().ok())
        .unwrap_or(configured)
}

/// `meta` key of the next run id.
const NEXT_RUN_KEY: &[u8] = b"dedup_runs/next";
/// `meta` key of the log's expiry ([`claims::Claims::expiry`]): two seqs, 8 bytes big-endian
/// each. Expired values leave the log in steps, after the expiry; without this, a start
/// before they had all gone found their claims again (and refused a journal that had
/// acknowledged a new copy of one of them while sled was closed).
const LOG_EXPIRED_KEY: &[u8] = b"dedup_runs/log_expired";

/// A sealed run, as kept in memory (its filter in [`Filters`]; the one of a run being built in
/// `sealing::Building`).
struct Run {
    id: u32,
    keys: u64,
    newest_ms: u64,
    /// The newest log key (a seq) whose claims it holds.
    through: Seq,
    /// Its copy in a file of its own, read while sled is closed (`run_file.rs`).
    file: Option<RunFile>,
    /// Writing the copy failed: not tried again until the next open.
    copy_failed: bool,
    /// A lookup found its copy damaged: it is written again once sled is back.
    damaged: AtomicBool,
}

impl Run {
    /// A run to be filled, with no copy yet.
    fn empty(id: u32, through: Seq) -> Run {
        Run {
            id,
            keys: 0,
            newest_ms: 0,
            through,
            file: None,
            copy_failed: false,
            damaged: AtomicBool::new(false),
        }
    }

    fn wants_copy(&self) -> bool {
        (self.file.is_none() || self.damaged.load(Ordering::Relaxed)) && !self.copy_failed
    }

    fn copy_failed(&mut self, err: &std::io::Error) {
        tracing::warn!(error = %err, run = self.id, "Cannot write a dedup run's file; while sled is closed, events this run may hold wait for it.");
        self.copy_failed = true;
    }
}

/// The runs and the recent claims, owned by the committer (the only writer).
pub struct Runs {
    /// The log of recent claims (the `dedup` tree), the `dedup_runs` tree, `meta`.
    claims: Claims,
    tree: sled::Tree,
    meta: sled::Tree,
    kept: Detached,
}

/// What [`Runs`] holds beside its trees, kept while the committer reopens sled (see
/// `checkpoint/`).
pub struct Detached {
    /// The log's index, and how far it has expired.
    claims: claims::Kept,
    /// The sealed runs, oldest first, and their filters.
    sealed: Vec<Run>,
    filters: Filters,
    building: Option<Building>,
    /// Claims since the last run began, and how many begin one.
    claimed: u64,
    /// Claims of the last batch: a step moves at least [`PACE`] times as many.
    last_claims: usize,
    seal_at: u64,
    next_id: u32,
    /// The newest log key a sealed run holds, and whether the log values up to it are gone.
    sealed_through: Seq,
    trimmed: bool,
    /// The run sealed last, and the time spent on it, until its log values are gone.
    trimming: Option<Spent>,
    /// Expired runs whose values are still being removed, oldest first.
    dropping: VecDeque<u32>,
    /// The change in stored bytes since the committer last took it (`live.rs`).
    delta: i64,
    /// The directory of the runs' files.
    files: PathBuf,
    copying: Option<Copying>,
}

/// What the runs tell of a key while sled is closed.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Neither the recent claims nor any sealed run holds it.
    Absent,
    /// A sealed run's file holds it, first stored under this seq.
    Found(Seq),
    /// Only sled can tell: the recent claims' index may hold it, or a run that may hold it has
    /// no file that checks out.
    NeedsSled,
}

impl Detached {
    /// Keeps a sealed run, and its filter for the lookups.
    fn keep(&mut self, run: Run, filter: Bloom) {
        self.filters.add(run.id, filter);
        self.sealed.push(run);
    }

    /// Whether `key` was claimed, told without sled (while it is closed for a checkpoint): from
    /// the recent claims' index and the sealed runs' filters, which answer "maybe" for about
    /// 0.09 % of absent keys each, and for those, from the runs' files. Runs are asked newest
    /// first, as [`Runs::lookup`] asks them.
    pub fn lookup(&self, key: &[u8]) -> Closed {
        if self.claims.may_hold(key) {
            return Closed::NeedsSled;
        }
        let probe = Probe::of(KeyHash::of(key));
        for id in self.filters.may_hold(&probe) {
            let Some(run) = self.sealed.iter().find(|run| run.id == id) else {
                continue;
            };
            let Some(file) = run
                .file
                .as_ref()
                .filter(|_| !run.damaged.load(Ordering::Relaxed))
            else {
                return Closed::NeedsSled;
            };
            match file.find(key) {
                Ok(Some(seq)) => return Closed::Found(seq),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, run = run.id, "Cannot read a dedup run's file; the event waits for sled, and the file is written again.");
                    run.damaged.store(true, Ordering::Relaxed);
                    return Closed::NeedsSled;
                }
            }
        }
        Closed::Absent
    }

    /// The runs again, on the reopened trees.
    pub fn attach(mut self, log: sled::Tree, tree: sled::Tree, meta: sled::Tree) -> Runs {
        Runs {
            claims: std::mem::take(&mut self.claims).attach(log),
            tree,
            meta,
            kept: self,
        }
    }
}

/// Threads reading the sealed runs' filters at open.
const LOADERS: usize = 8;

impl Runs {
    /// Loads the sealed runs' filters, deals with a run left half built, and indexes the log.
    /// `legacy`: the store is of layout 3, whose `dedup` tree held one entry per key; it is
    /// turned into a log, and `layout` written to `meta`, in one transaction. `files`: the
    /// directory of the runs' files (`run_file.rs`).
    pub fn open(
        log: sled::Tree,
        tree: sled::Tree,
        meta: sled::Tree,
        seal_at: u64,
        legacy: Option<(&[u8], &[u8])>,
        files: PathBuf,
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
            claims: claims::Kept::default().attach(log.clone()),
            tree,
            meta,
            kept: Detached {
                claims: claims::Kept::default(),
                sealed: Vec::new(),
                filters: Filters::default(),
                building: None,
                claimed: 0,
                last_claims: 0,
                seal_at: seal_at.max(1),
                next_id,
                sealed_through: Seq(0),
                trimmed: false,
                trimming: None,
                dropping: VecDeque::new(),
                delta: 0,
                files,
                copying: None,
            },
        };
        // A run marked for dropping keeps no summary: the mark is written before the summary
        // goes, and a power loss may keep the one without the other (it was kept as sealed,
        // and found its expired keys again).
        let summaries = (0..next_id)
            .map(|id| {
                if runs.tree.contains_key(key(id, DROPPING, &[]))? {
                    return Ok((id, None));
                }
                Ok((id, runs.tree.get(key(id, SUMMARY, &[]))?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let loaded = runs.load_all(&summaries)?;
        for ((id, _), run) in summaries.iter().zip(loaded) {
            match run {
                Some((run, filter)) => runs.kept.keep(run, filter),
                None if runs.tree.contains_key(key(*id, DROPPING, &[]))? => {
                    runs.kept.dropping.push_back(*id);
                }
                None if runs.tree.scan_prefix(key(*id, DATA, &[])).next().is_some() => {
                    if legacy.is_some() {
                        let (run, filter) = runs.rebuild(*id)?;
                        runs.finish(run, filter, None, Spent::default(), Instant::now())?;
                    } else {
                        runs.mark_dropping(*id)?;
                    }
                }
                // Expired and dropped.
                None => {}
            }
        }
        let sealed: Vec<u32> = runs.kept.sealed.iter().map(|run| run.id).collect();
        run_file::remove_others(&runs.kept.files, &sealed);
        if let Some((layout_key, layout)) = legacy {
            runs.kept.delta += claims::convert_layout3(&log, &runs.meta, layout_key, layout)?;
        }
        runs.kept.sealed_through = runs
            .kept
            .sealed
            .iter()
            .map(|run| run.through)
            .max()
            .unwrap_or(Seq(0));
        let expired = match runs.meta.get(LOG_EXPIRED_KEY)? {
            Some(value) if value.len() == 16 => {
                let seq = |at: usize| Seq::from_key(&value[at..at + 8]);
                seq(0).zip(seq(8))
            }
            Some(_) => return Err(StoreError::Corrupt("the dedup log's expiry".into())),
            None => None,
        };
        let through = runs
            .kept
            .sealed_through
            .max(expired.map_or(Seq(0), |(log, _)| log))
            .to_key();
        runs.kept.trimmed = log.range(..=through).next().is_none();
        let (claims, unsealed) = Claims::open(log, runs.kept.sealed_through, expired)?;
        runs.claims = claims;
        runs.kept.claimed = unsealed;
        Ok(runs)
    }

    /// The sealed runs of `summaries` (None where a run has no summary), in their order. Their
    /// filters are most of what a start-up reads, scattered over the log: with a cold page cache
    /// one reader took 0.33-0.43 s for 38 runs at 10 M events, so [`LOADERS`] read at once.
    fn load_all(
        &self,
        summaries: &[(u32, Option<sled::IVec>)],
    ) -> Result<Vec<Option<(Run, Bloom)>>, StoreError> {
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

    /// Drops the trees and keeps the rest (the index, the filters, the run being built).
    pub fn detach(mut self) -> Detached {
        self.kept.claims = self.claims.detach();
        self.kept
    }

    /// The seq `key` was first stored under, if the recent claims or a sealed run hold it.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Seq>, StoreError> {
        if let Some(seq) = self.claims.lookup(key)? {
            return Ok(Some(seq));
        }
        let probe = Probe::of(KeyHash::of(key));
        for id in self.kept.filters.may_hold(&probe) {
            if let Some(seq) = self.find(id, key)? {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// How many claims the log's index holds.
    pub fn recent_claims(&self) -> usize {
        self.claims.len()
    }

    /// The change in stored bytes since the last call.
    pub fn take_delta(&mut self) -> i64 {
        std::mem::take(&mut self.kept.delta)
    }

    /// Indexes a committed batch's new claims (already in the log).
    pub fn claimed(&mut self, claims: &[(&[u8], Seq)]) {
        let n = claims.len();
        self.claims.committed(claims);
        self.kept.claimed += n as u64;
        self.kept.last_claims = n;
    }

    /// Whether `claims` more would make the next run begin (see [`Runs::wants_step`]).
    pub fn seals_after(&self, claims: usize) -> bool {
        self.kept.building.is_none() && self.kept.claimed + claims as u64 >= self.kept.seal_at
    }

    /// Whether a step is due: of dropping an expired run, of trimming the log, of sealing, or
    /// of copying a sealed run into its file.
    pub fn wants_step(&self) -> bool {
        !self.kept.dropping.is_empty()
            || !self.kept.trimmed
            || self.kept.building.is_some()
            || self.kept.claimed >= self.kept.seal_at
            || self.kept.copying.is_some()
            || self.kept.sealed.iter().any(Run::wants_copy)
    }

    /// A step of dropping the oldest expired run if there is one; else of trimming the log of
    /// what a sealed run holds, and of sealing. Each step trims and seals [`PACE`] times the
    /// last batch's claims, so that a run is read and written while half as many new claims
    /// arrive: the log stays under about twice `dedup_run_keys` whatever the load.
    pub fn step(&mut self) -> Result<(), StoreError> {
        if let Some(&id) = self.kept.dropping.front() {
            return self.drop_step(id);
        }
        if !self.kept.trimmed {
            let through = self.kept.sealed_through.max(self.claims.expired());
            let started = Instant::now();
            let trimmed = self.claims.trim(through, self.step_claims())?;
            self.kept.delta += trimmed.delta;
            self.kept.trimmed = trimmed.done;
            if let Some(spent) = &mut self.kept.trimming {
                spent.trim.took(started);
                spent.trimmed += trimmed.values;
                if self.kept.trimmed {
                    spent.log();
                    self.kept.trimming = None;
                }
            }
        }
        if self.kept.building.is_some() || self.kept.claimed >= self.kept.seal_at {
            self.seal_step()?;
        } else if self.kept.trimmed {
            self.copy_step()?;
        }
        Ok(())
    }

    /// The claims a step reads, writes or trims: [`PACE`] times the last batch's, at least
    /// [`STEP`].
    fn step_claims(&self) -> usize {
        STEP.max(self.kept.last_claims.saturating_mul(PACE))
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

    /// Drops the sealed runs whose newest key arrived before `cutoff_ms` from the lookups, and
    /// marks them for their values' removal (see [`Runs::step`]); removes the log's values
    /// whose claims all arrived before it. Returns how many keys went.
    pub fn expire(&mut self, cutoff_ms: u64) -> Result<u64, StoreError> {
        let mut dropped = self.claims.expire(cutoff_ms, self.kept.sealed_through)?;
        if dropped > 0 {
            self.kept.trimmed = false;
            let (log, seq) = self.claims.expiry();
            let value = [log.to_key(), seq.to_key()].concat();
            let old = self.meta.insert(LOG_EXPIRED_KEY, value.as_slice())?;
            self.kept.delta += change(LOG_EXPIRED_KEY, old, Some(value.as_slice()));
            // The expiry began after the sealed runs, where the run being built begins: it
            // holds claims that just expired (read before, or still to be read until they are
            // trimmed). Sealed, it would find them again (an acknowledged event with such a key
            // then disagreed with its journaled copy, and every start was refused): it is
            // dropped, and the next begins after them.
            if let Some(building) = self.kept.building.take() {
                let id = building.id();
                drop(building);
                self.mark_dropping(id)?;
            }
        }
        let (expired, kept): (Vec<Run>, Vec<Run>) = std::mem::take(&mut self.kept.sealed)
            .into_iter()
            .partition(|run| run.newest_ms < cutoff_ms);
        self.kept.sealed = kept;
        for run in expired {
            self.kept.filters.remove(run.id);
            self.mark_dropping(run.id)?;
            dropped += run.keys;
        }
        Ok(dropped)
    }

    /// Marks run `id` for its values' removal. The mark goes before the summary is removed: a
    /// run with neither is dealt with again at the next open, one with the mark goes on being
    /// dropped.
    fn mark_dropping(&mut self, id: u32) -> Result<(), StoreError> {
        run_file::remove(&self.kept.files, id);
        let mark = key(id, DROPPING, &[]);
        let none: &[u8] = &[];
        let old = self.tree.insert(&mark, none)?;
        self.kept.delta += change(&mark, old, Some(none));
        let summary = key(id, SUMMARY, &[]);
        let old = self.tree.remove(&summary)?;
        self.kept.delta += change(&summary, old, None);
        self.kept.dropping.push_back(id);
        Ok(())
    }

    /// How many keys the sealed runs hold.
    #[cfg(test)]
    fn sealed_keys(&self) -> u64 {
        self.kept.sealed.iter().map(|run| run.keys).sum()
    }

    fn load(&self, id: u32, summary: &[u8]) -> Result<(Run, Bloom), StoreError> {
        let corrupt = || StoreError::Corrupt(format!("dedup run {id}: summary"));
        let field = |at: usize| -> Result<u64, StoreError> {
            let bytes = summary.get(at..at + 8).ok_or_else(corrupt)?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| corrupt())?))
        };
        // Gathered first and joined once: a filter grown part by part keeps spare capacity
        // (up to its own size again; 8.5 MB over 10 M keys' filters) for as long as the run
        // lives.
        let parts = self
            .tree
            .scan_prefix(key(id, FILTER, &[]))
            .values()
            .collect::<Result<Vec<_>, _>>()?;
        let filter = Bloom::from_bytes(parts.concat())
            .ok_or_else(|| StoreError::Corrupt(format!("dedup run {id}: filter")))?;
        let keys = field(0)?;
        // A run of layout 3 holds no log value.
        let through = Seq(if summary.len() > 18 { field(18)? } else { 0 });
        let run = Run {
            id,
            keys,
            newest_ms: field(8)?,
            through,
            file: RunFile::open(&self.kept.files, id, keys, through),
            copy_failed: false,
            damaged: AtomicBool::new(false),
        };
        Ok((run, filter))
    }

    /// A run of layout 3 left half built: its filter and summary, from its entries.
    fn rebuild(&self, id: u32) -> Result<(Run, Bloom), StoreError> {
        let mut run = Run::empty(id, Seq(0));
        let mut filter = Bloom::with_capacity(2 * self.kept.seal_at as usize);
        for value in self.tree.scan_prefix(key(id, DATA, &[])).values() {
            for (key, _, received) in entries(&value?) {
                filter.insert(KeyHash::of(key));
                run.keys += 1;
                run.newest_ms = run.newest_ms.max(received);
            }
        }
        Ok((run, filter))
    }

    fn find(&self, id: u32, wanted: &[u8]) -> Result<Option<Seq>, StoreError> {
        let from = key(id, DATA, &[]);
        let to = key(id, DATA, wanted);
        let Some((_, value)) = self.tree.range(from..=to).next_back().transpose()? else {
            return Ok(None);
        };
        let found = entries(&value)
            .find(|(key, _, _)| *key == wanted)
            .map(|(_, seq, _)| seq);
        Ok(found)
    }
}

fn key(id: u32, kind: u8, rest: &[u8]) -> Vec<u8> {
    [&id.to_be_bytes()[..], &[kind], rest].concat()
}
