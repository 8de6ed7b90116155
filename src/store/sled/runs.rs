//! Dedup keys beyond the recent ones, packed into sealed runs, so that sled holds a few values
//! per hundred keys instead of one each (sled keeps ~400 bytes of memory per node whatever it
//! holds, and a leaf holds at most 16 entries: per-key dedup alone cost ~45 MiB per million).
//!
//! New claims go to the log of recent claims (`claims.rs`: one value per batch, indexed in
//! memory). Once `dedup_run_keys` (262,144) have arrived, the committer seals the log's values
//! up to the newest one into the next run, in steps between batches (and while it is idle):
//! it reads them [`STEP`] claims at a time, sorting each step's claims by key; it then merges
//! those sorted chunks into values of up to `MAX_VALUE` bytes in the `dedup_runs` tree, in key
//! order; a run then gets a blocked Bloom filter (stored with it, kept in memory: 16 bits a
//! key), its key count, its newest arrival time and the newest log key it holds. Only then are
//! those log values removed (and taken out of the index), as many claims a step as a step of
//! sealing reads: until they are, a key is in both places, never in neither. (256 values a
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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::bloom::{Bloom, KeyHash};
use super::claims::{self, entries, entry_len, push_entry, Claims};
use super::live::change;
use super::pack::MAX_VALUE;
use super::run_file::{self, RunFile, Writer};
use crate::event::Seq;
use crate::store::StoreError;

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

/// A sealed run, as kept in memory.
struct Run {
    id: u32,
    bloom: Bloom,
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

/// A sealed run's copy being written from sled (for a run sealed by an earlier hookgate, or
/// whose copy was lost), a step at a time.
struct Copying {
    id: u32,
    writer: Writer,
    /// The last `dedup_runs` key copied.
    after: Option<Vec<u8>>,
}

impl Run {
    /// A run to be filled, with a filter sized for `capacity` keys and no copy yet.
    fn empty(id: u32, capacity: usize, through: Seq) -> Run {
        Run {
            id,
            bloom: Bloom::with_capacity(capacity),
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

/// The run being built.
struct Building {
    run: Run,
    phase: Phase,
    /// Its file, written as its values are; `None` once a write failed.
    file: Option<Writer>,
    spent: Spent,
}

/// The committer's time spent on one run, in steps between batches: logged once the log values
/// it holds are removed.
#[derive(Default)]
struct Spent {
    /// The run's id and key count, once sealed.
    run: u32,
    keys: u64,
    collect: Steps,
    write: Steps,
    trim: Steps,
    /// Log values removed.
    trimmed: usize,
}

/// Steps of one kind: how many, their time, the longest.
#[derive(Default)]
struct Steps {
    count: u32,
    total: Duration,
    slowest: Duration,
}

impl Steps {
    /// Counts a step begun at `started`.
    fn took(&mut self, started: Instant) {
        let took = started.elapsed();
        self.count += 1;
        self.total += took;
        self.slowest = self.slowest.max(took);
    }
}

impl Spent {
    fn log(&self) {
        let ms = |spent: Duration| (spent.as_secs_f64() * 1e6).round() / 1e3;
        tracing::info!(
            run = self.run,
            keys = self.keys,
            collect_steps = self.collect.count,
            collect_ms = ms(self.collect.total),
            slowest_collect_ms = ms(self.collect.slowest),
            write_steps = self.write.count,
            write_ms = ms(self.write.total),
            slowest_write_ms = ms(self.write.slowest),
            trim_steps = self.trim.count,
            trim_ms = ms(self.trim.total),
            slowest_trim_ms = ms(self.trim.slowest),
            log_values = self.trimmed,
            "Dedup run sealed; the recent claims it holds have left the log."
        );
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

/// The runs and the recent claims, owned by the committer (the only writer).
pub struct Runs {
    /// The log of recent claims (the `dedup` tree), the `dedup_runs` tree, `meta`.
    claims: Claims,
    tree: sled::Tree,
    meta: sled::Tree,
    kept: Detached,
}

/// What [`Runs`] holds beside its trees, kept while the committer reopens sled (see
/// `checkpoint.rs`).
pub struct Detached {
    /// The log's index, and how far it has expired.
    claims: claims::Kept,
    sealed: Vec<Run>,
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
    /// Whether `key` was claimed, told without sled (while it is closed for a checkpoint): from
    /// the recent claims' index and the sealed runs' filters, which answer "maybe" for about
    /// 0.09 % of absent keys each, and for those, from the runs' files. Runs are asked newest
    /// first, as [`Runs::lookup`] asks them.
    pub fn lookup(&self, key: &[u8]) -> Closed {
        if self.claims.may_hold(key) {
            return Closed::NeedsSled;
        }
        let hash = KeyHash::of(key);
        for run in self.sealed.iter().rev() {
            if !run.bloom.may_contain(hash) {
                continue;
            }
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
                    if legacy.is_some() {
                        let run = runs.rebuild(*id)?;
                        runs.finish(run, None, Spent::default(), Instant::now())?;
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
        let through = runs.kept.sealed_through.to_key();
        runs.kept.trimmed = log.range(..=through).next().is_none();
        let (claims, unsealed) = Claims::open(log, runs.kept.sealed_through)?;
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
        let hash = KeyHash::of(key);
        for run in self.kept.sealed.iter().rev() {
            if run.bloom.may_contain(hash) {
                if let Some(seq) = self.find(run.id, key)? {
                    return Ok(Some(seq));
                }
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

    /// A step of copying a sealed run without a file into one: [`DROP_STEP`] values.
    fn copy_step(&mut self) -> Result<(), StoreError> {
        let mut copying = match self.kept.copying.take() {
            Some(copying) => copying,
            None => {
                let Some(run) = self.kept.sealed.iter_mut().find(|run| run.wants_copy()) else {
                    return Ok(());
                };
                run.file = None;
                run.damaged.store(false, Ordering::Relaxed);
                match Writer::create(&self.kept.files, run.id) {
                    Ok(writer) => Copying {
                        id: run.id,
                        writer,
                        after: None,
                    },
                    Err(err) => {
                        run.copy_failed(&err);
                        return Ok(());
                    }
                }
            }
        };
        let Some(at) = self.kept.sealed.iter().position(|run| run.id == copying.id) else {
            // Expired meanwhile: the writer goes, and its partial file with it.
            return Ok(());
        };
        let from = match &copying.after {
            Some(after) => Bound::Excluded(after.clone()),
            None => Bound::Included(key(copying.id, DATA, &[])),
        };
        let to = Bound::Excluded(key(copying.id, DATA + 1, &[]));
        let mut copied = 0;
        for item in self.tree.range::<Vec<u8>, _>((from, to)) {
            let (key, value) = item?;
            if let Err(err) = copying.writer.append(&key[DATA_KEY..], &value) {
                self.kept.sealed[at].copy_failed(&err);
                return Ok(());
            }
            copying.after = Some(key.to_vec());
            copied += 1;
            if copied == DROP_STEP {
                self.kept.copying = Some(copying);
                return Ok(());
            }
        }
        let run = &mut self.kept.sealed[at];
        match copying.writer.finish() {
            Ok(file) => run.file = Some(file),
            Err(err) => run.copy_failed(&err),
        }
        Ok(())
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

    /// A step of the run being built (beginning one if none is): reads, or writes, up to
    /// [`STEP`] claims (or [`PACE`] times the last batch's); seals the run when they are all
    /// written.
    fn seal_step(&mut self) -> Result<(), StoreError> {
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
                // less garbage than a write per value (`compact.rs` measured the same).
                let mut values: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                let mut written = 0;
                while written < step {
                    let Some((entry_key, seq, received)) = merge.pop() else {
                        break;
                    };
                    let entry_key = entry_key.as_slice();
                    let full = values
                        .last()
                        .is_none_or(|(_, value)| value.len() + entry_len(entry_key) > MAX_VALUE);
                    if full {
                        values.push((key(building.run.id, DATA, entry_key), Vec::new()));
                    }
                    let (_, value) = values.last_mut().expect("a value");
                    push_entry(value, entry_key, seq, received);
                    let run = &mut building.run;
                    run.bloom.insert(KeyHash::of(entry_key));
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
                    let (run, file, spent) = (building.run, building.file, building.spent);
                    return self.finish(run, file, spent, started);
                }
                building.spent.write.took(started);
                Phase::Write(merge)
            }
        };
        self.kept.building = Some(building);
        Ok(())
    }

    /// Drops the sealed runs whose newest key arrived before `cutoff_ms` from the lookups, and
    /// marks them for their values' removal (see [`Runs::step`]); removes the log's values
    /// whose claims all arrived before it. Returns how many keys went.
    pub fn expire(&mut self, cutoff_ms: u64) -> Result<u64, StoreError> {
        let mut dropped = self.claims.expire(cutoff_ms, self.kept.sealed_through)?;
        if dropped > 0 {
            self.kept.trimmed = false;
        }
        let (expired, kept): (Vec<Run>, Vec<Run>) = std::mem::take(&mut self.kept.sealed)
            .into_iter()
            .partition(|run| run.newest_ms < cutoff_ms);
        self.kept.sealed = kept;
        for run in expired {
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
        let capacity = self.kept.claimed.max(self.kept.seal_at) as usize;
        self.kept.claimed = 0;
        let mut run = Run::empty(id, capacity, through);
        let file = Writer::create(&self.kept.files, id)
            .inspect_err(|err| run.copy_failed(err))
            .ok();
        Ok(Some(Building {
            run,
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
    fn finish(
        &mut self,
        mut run: Run,
        file: Option<Writer>,
        mut spent: Spent,
        started: Instant,
    ) -> Result<(), StoreError> {
        let parts: Vec<&[u8]> = run.bloom.as_bytes().chunks(MAX_VALUE).collect();
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
        if run.through <= self.claims.expired() {
            // Every claim it holds expired from the log while it was built (and was counted
            // then): it goes as an expired run does, never looked up (which would find them
            // again).
            return self.mark_dropping(run.id);
        }
        if run.through > self.kept.sealed_through {
            self.kept.sealed_through = run.through;
            self.kept.trimmed = false;
            (spent.run, spent.keys) = (run.id, run.keys);
            self.kept.trimming = Some(spent);
        }
        match file.map(Writer::finish) {
            Some(Ok(file)) => run.file = Some(file),
            Some(Err(err)) => run.copy_failed(&err),
            // Copied from sled in later steps.
            None => {}
        }
        self.kept.sealed.push(run);
        Ok(())
    }

    fn load(&self, id: u32, summary: &[u8]) -> Result<Run, StoreError> {
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
        let filter = parts.concat();
        Ok(Run {
            id,
            bloom: Bloom::from_bytes(filter)
                .ok_or_else(|| StoreError::Corrupt(format!("dedup run {id}: filter")))?,
            keys: field(0)?,
            newest_ms: field(8)?,
            // A run of layout 3 holds no log value.
            through: Seq(if summary.len() > 18 { field(18)? } else { 0 }),
            file: RunFile::open(&self.kept.files, id),
            copy_failed: false,
            damaged: AtomicBool::new(false),
        })
    }

    /// A run of layout 3 left half built: its filter and summary, from its entries.
    fn rebuild(&self, id: u32) -> Result<Run, StoreError> {
        let mut run = Run::empty(id, 2 * self.kept.seal_at as usize, Seq(0));
        for value in self.tree.scan_prefix(key(id, DATA, &[])).values() {
            for (key, _, received) in entries(&value?) {
                run.bloom.insert(KeyHash::of(key));
                run.keys += 1;
                run.newest_ms = run.newest_ms.max(received);
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
            .find(|(key, _, _)| *key == wanted)
            .map(|(_, seq, _)| seq);
        Ok(found)
    }
}

fn key(id: u32, kind: u8, rest: &[u8]) -> Vec<u8> {
    [&id.to_be_bytes()[..], &[kind], rest].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (sled::Db, Runs, tempfile::TempDir) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = |name: &str| db.open_tree(name).unwrap();
        let files = tempfile::tempdir().unwrap();
        let runs = Runs::open(
            tree("dedup"),
            tree("dedup_runs"),
            tree("meta"),
            1000,
            None,
            files.path().to_path_buf(),
        )
        .unwrap();
        (db, runs, files)
    }

    fn reopen(runs: &Runs) -> Runs {
        Runs::open(
            runs.claims.log.clone(),
            runs.tree.clone(),
            runs.meta.clone(),
            1000,
            None,
            runs.kept.files.clone(),
        )
        .unwrap()
    }

    fn id(n: u64) -> String {
        format!("p\0id-{n:05}")
    }

    /// Claims `id(n)` under seq n + 1 for every n in `ns`, received at `at`, as committed
    /// batches of 25 do: one log value each.
    fn claim(runs: &mut Runs, ns: std::ops::Range<u64>, at: u64) {
        let ns: Vec<u64> = ns.collect();
        for batch in ns.chunks(25) {
            let mut value = Vec::new();
            for n in batch {
                push_entry(&mut value, id(*n).as_bytes(), Seq(n + 1), at);
            }
            let first = Seq(batch[0] + 1);
            runs.claims
                .log
                .insert(claims::log_key(first), value)
                .unwrap();
            let keys: Vec<String> = batch.iter().map(|n| id(*n)).collect();
            let claimed: Vec<(&[u8], Seq)> = keys
                .iter()
                .zip(batch)
                .map(|(key, n)| (key.as_bytes(), Seq(n + 1)))
                .collect();
            runs.claimed(&claimed);
        }
    }

    fn settle(runs: &mut Runs) -> usize {
        let mut steps = 0;
        while runs.wants_step() {
            runs.step().unwrap();
            steps += 1;
        }
        steps
    }

    #[test]
    fn sealed_keys_are_found_and_leave_the_log() {
        let (_db, mut runs, _files) = open();
        // Random ids: the log is in seq order, the run in key order.
        let mut ns: Vec<u64> = (0..5000).map(|n| (n * 7919) % 5000).collect();
        ns.dedup();
        claim(&mut runs, 0..5000, 1000);
        settle(&mut runs);
        assert!(runs.claims.log.is_empty());
        assert_eq!(runs.recent_claims(), 0);
        assert_eq!(runs.sealed_keys(), 5000);
        for n in [0u64, 1, 2500, 4999] {
            assert_eq!(runs.lookup(id(n).as_bytes()).unwrap(), Some(Seq(n + 1)));
        }
        assert_eq!(runs.lookup(b"p\0id-99999").unwrap(), None);
        // The run's values are in key order, each under its first key.
        let mut last = Vec::new();
        for value in runs.tree.scan_prefix(key(0, DATA, &[])).values() {
            for (key, _, _) in entries(&value.unwrap()) {
                assert!(key > last.as_slice());
                last = key.to_vec();
            }
        }
        // Reopened: the filter comes back from disk.
        let reopened = reopen(&runs);
        assert_eq!(
            reopened.lookup(id(1234).as_bytes()).unwrap(),
            Some(Seq(1235))
        );
        assert!(!reopened.wants_step());
        // Expired once its newest key is past the cutoff.
        assert_eq!(runs.expire(1000).unwrap(), 0);
        assert_eq!(runs.expire(1001).unwrap(), 5000);
        assert_eq!(runs.lookup(id(1234).as_bytes()).unwrap(), None);
        settle(&mut runs);
        assert!(runs.tree.is_empty());
    }

    #[test]
    fn while_sled_is_closed_the_runs_files_tell_every_sealed_key() {
        let (_db, mut runs, files) = open();
        claim(&mut runs, 0..2000, 1000);
        settle(&mut runs);
        // More than DROP_STEP values: copied in two steps below.
        claim(&mut runs, 2000..16_000, 1000);
        settle(&mut runs);
        // Too few to begin a run: they stay in the log.
        claim(&mut runs, 16_000..16_100, 1000);
        settle(&mut runs);
        let names = |dir: &std::path::Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(files.path()), ["00000000.run", "00000001.run"]);

        let trees = (
            runs.claims.log.clone(),
            runs.tree.clone(),
            runs.meta.clone(),
        );
        let detached = runs.detach();
        for n in 0..16_000 {
            assert_eq!(
                detached.lookup(id(n).as_bytes()),
                Closed::Found(Seq(n + 1)),
                "sealed key {n}"
            );
        }
        for n in 16_000..16_100 {
            assert_eq!(detached.lookup(id(n).as_bytes()), Closed::NeedsSled);
        }
        for n in 20_000..30_000 {
            assert_eq!(detached.lookup(id(n).as_bytes()), Closed::Absent);
        }

        // A file that does not check out: its run's keys wait for sled, the other's are told.
        std::fs::File::create(files.path().join("00000001.run")).unwrap();
        assert_eq!(detached.lookup(id(3000).as_bytes()), Closed::NeedsSled);
        assert_eq!(
            detached.lookup(id(1000).as_bytes()),
            Closed::Found(Seq(1001))
        );

        // Reopened, the damaged file is not used, sled still finds every key, and the run is
        // copied again in steps.
        let runs = detached.attach(trees.0, trees.1, trees.2);
        let mut runs = reopen(&runs);
        assert!(runs.kept.sealed[0].file.is_some());
        assert!(runs.kept.sealed[1].file.is_none());
        assert_eq!(runs.lookup(id(3000).as_bytes()).unwrap(), Some(Seq(3001)));
        assert!(runs.wants_step());
        assert!(settle(&mut runs) > 1, "copied in more than one step");
        let trees = (
            runs.claims.log.clone(),
            runs.tree.clone(),
            runs.meta.clone(),
        );
        let detached = runs.detach();
        for n in (0..16_000).step_by(7) {
            assert_eq!(detached.lookup(id(n).as_bytes()), Closed::Found(Seq(n + 1)));
        }
        assert_eq!(detached.lookup(id(40_000).as_bytes()), Closed::Absent);

        // A value damaged in place (the footer and index still check out): found at a lookup,
        // the run then waits for sled, and its copy is written again once sled is back.
        let path = files.path().join("00000001.run");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(detached.lookup(id(2000).as_bytes()), Closed::NeedsSled);
        assert_eq!(detached.lookup(id(9000).as_bytes()), Closed::NeedsSled);
        assert_eq!(detached.lookup(id(10).as_bytes()), Closed::Found(Seq(11)));
        let mut runs = detached.attach(trees.0, trees.1, trees.2);
        assert!(runs.wants_step());
        settle(&mut runs);
        let trees = (
            runs.claims.log.clone(),
            runs.tree.clone(),
            runs.meta.clone(),
        );
        let detached = runs.detach();
        assert_eq!(
            detached.lookup(id(2000).as_bytes()),
            Closed::Found(Seq(2001))
        );
        assert_eq!(
            detached.lookup(id(9000).as_bytes()),
            Closed::Found(Seq(9001))
        );
        let mut runs = detached.attach(trees.0, trees.1, trees.2);
        // Expired runs take their files with them.
        assert_eq!(runs.expire(1001).unwrap(), 16_100);
        settle(&mut runs);
        assert!(names(files.path()).is_empty());
    }

    #[test]
    fn a_run_dropped_half_built_leaves_no_file() {
        let (_db, mut runs, files) = open();
        claim(&mut runs, 0..1000, 5);
        runs.step().unwrap();
        runs.step().unwrap();
        assert!(runs.kept.building.is_some());
        // hookgate stops here: the next open drops the half-built run, and its file.
        let reopened = reopen(&runs);
        drop(runs);
        assert!(std::fs::read_dir(files.path()).unwrap().next().is_none());
        assert_eq!(reopened.kept.sealed.len(), 0);
    }

    #[test]
    fn claims_made_while_a_run_is_built_go_to_the_next() {
        let (_db, mut runs, _files) = open();
        claim(&mut runs, 0..1000, 5);
        assert!(runs.wants_step());
        runs.step().unwrap();
        assert!(runs.kept.building.is_some());
        claim(&mut runs, 1000..1500, 6);
        settle(&mut runs);
        assert_eq!(runs.sealed_keys(), 1000);
        // The later claims are still in the log, and found there.
        assert_eq!(runs.kept.claimed, 500);
        assert_eq!(runs.recent_claims(), 500);
        for n in [0u64, 999, 1000, 1499] {
            assert_eq!(runs.lookup(id(n).as_bytes()).unwrap(), Some(Seq(n + 1)));
        }
        claim(&mut runs, 1500..2000, 7);
        settle(&mut runs);
        assert_eq!(runs.sealed_keys(), 2000);
        assert!(runs.claims.log.is_empty());
        // The claims of the log that arrived before a cutoff expire with it, whole values.
        claim(&mut runs, 2000..2100, 8);
        assert_eq!(runs.expire(8).unwrap(), 2000);
        assert_eq!(runs.lookup(id(2050).as_bytes()).unwrap(), Some(Seq(2051)));
        assert_eq!(runs.expire(9).unwrap(), 100);
        // No longer found at once; the values go in steps.
        assert_eq!(runs.lookup(id(2050).as_bytes()).unwrap(), None);
        assert!(!runs.claims.log.is_empty());
        settle(&mut runs);
        assert!(runs.claims.log.is_empty());
        assert_eq!(runs.recent_claims(), 0);
        // Claims after them are still found, and sealed later.
        claim(&mut runs, 2100..2110, 10);
        assert_eq!(runs.lookup(id(2105).as_bytes()).unwrap(), Some(Seq(2106)));
        assert_eq!(runs.expire(9).unwrap(), 0);
    }

    /// Claims that expire from the log while their run is built are counted once, and the run
    /// born of them is dropped rather than sealed (a sealed run would find them again).
    #[test]
    fn a_run_whose_claims_expired_while_it_was_built_is_dropped() {
        let (_db, mut runs, _files) = open();
        claim(&mut runs, 0..1000, 5);
        runs.step().unwrap();
        assert!(runs.kept.building.is_some());
        assert_eq!(runs.expire(6).unwrap(), 1000);
        settle(&mut runs);
        assert_eq!(runs.sealed_keys(), 0);
        assert!(runs.kept.building.is_none());
        assert_eq!(runs.lookup(id(500).as_bytes()).unwrap(), None);
        assert_eq!(runs.expire(6).unwrap(), 0, "counted once");
        assert!(runs.tree.iter().next().is_none(), "its values are gone too");
        assert!(runs.claims.log.is_empty());
    }

    #[test]
    fn an_expired_run_goes_in_steps_and_an_open_goes_on_dropping_it() {
        let (_db, mut runs, _files) = open();
        claim(&mut runs, 0..20_000, 7);
        settle(&mut runs);
        let values = runs.tree.len();
        assert!(values > DROP_STEP, "{values} values: too few to take steps");
        assert_eq!(runs.expire(8).unwrap(), 20_000);
        assert_eq!(runs.lookup(id(42).as_bytes()).unwrap(), None);
        runs.step().unwrap();
        // One step removed DROP_STEP values, and the mark stays.
        assert_eq!(runs.tree.len(), values - DROP_STEP);
        // A stop here: the next open neither rebuilds the run nor keeps it, and goes on.
        let mut reopened = reopen(&runs);
        assert_eq!(reopened.sealed_keys(), 0);
        assert_eq!(reopened.lookup(id(42).as_bytes()).unwrap(), None);
        assert!(reopened.wants_step());
        let steps = settle(&mut reopened);
        assert!(reopened.tree.is_empty());
        assert_eq!(steps, (values - DROP_STEP) / DROP_STEP + 1);
    }

    #[test]
    fn a_half_built_run_is_dropped_at_open_and_its_claims_sealed_again() {
        let (_db, mut runs, _files) = open();
        claim(&mut runs, 0..10_000, 5);
        // Gathered, then one step of writing.
        while matches!(
            runs.kept.building.as_ref().map(|b| &b.phase),
            None | Some(Phase::Collect { .. })
        ) {
            runs.step().unwrap();
        }
        runs.step().unwrap();
        assert!(runs.tree.scan_prefix(key(0, DATA, &[])).next().is_some());
        let mut reopened = reopen(&runs);
        assert_eq!(reopened.sealed_keys(), 0);
        // Every claim is still found, in the log.
        assert_eq!(reopened.kept.claimed, 10_000);
        assert_eq!(
            reopened.lookup(id(9_999).as_bytes()).unwrap(),
            Some(Seq(10_000))
        );
        settle(&mut reopened);
        assert_eq!(reopened.sealed_keys(), 10_000);
        assert!(reopened
            .tree
            .scan_prefix(key(0, DATA, &[]))
            .next()
            .is_none());
        assert!(reopened.claims.log.is_empty());
        for n in [0u64, 4_321, 9_999] {
            assert_eq!(reopened.lookup(id(n).as_bytes()).unwrap(), Some(Seq(n + 1)));
        }
    }

    #[test]
    fn a_dedup_tree_of_layout_3_becomes_a_log() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = |name: &str| db.open_tree(name).unwrap();
        let (dedup, meta) = (tree("dedup"), tree("meta"));
        let files = tempfile::tempdir().unwrap();
        meta.insert(b"layout", &[3]).unwrap();
        // Layout 3: one entry per key, in key order, seqs in any order; one key of 8 bytes.
        for n in 0..3000u64 {
            let seq = Seq((n * 7919) % 3000 + 1);
            let value = [seq.to_key(), 77u64.to_be_bytes()].concat();
            dedup.insert(id(n).as_bytes(), value).unwrap();
        }
        dedup
            .insert(
                b"p\0short",
                [Seq(3001).to_key(), 78u64.to_be_bytes()].concat(),
            )
            .unwrap();
        let mut runs = Runs::open(
            dedup.clone(),
            tree("dedup_runs"),
            meta.clone(),
            1000,
            Some((b"layout", &[4])),
            files.path().to_path_buf(),
        )
        .unwrap();
        assert_eq!(meta.get(b"layout").unwrap().unwrap().as_ref(), &[4]);
        assert_eq!(runs.kept.claimed, 3001);
        for n in [0u64, 1500, 2999] {
            let seq = Seq((n * 7919) % 3000 + 1);
            assert_eq!(runs.lookup(id(n).as_bytes()).unwrap(), Some(seq));
        }
        assert_eq!(runs.lookup(b"p\0short").unwrap(), Some(Seq(3001)));
        settle(&mut runs);
        assert_eq!(runs.sealed_keys(), 3001);
        assert_eq!(runs.lookup(b"p\0short").unwrap(), Some(Seq(3001)));
        assert_eq!(runs.expire(78).unwrap(), 0);
        assert_eq!(runs.expire(79).unwrap(), 3001);
    }
}
