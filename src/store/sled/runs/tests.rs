use super::*;
use crate::store::sled::claims::push_entry;
use crate::store::sled::pack::MAX_VALUE;

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
    claim_as(runs, ns, at, id);
}

/// [`claim`] with the keys `key` makes.
fn claim_as(runs: &mut Runs, ns: std::ops::Range<u64>, at: u64, id: fn(u64) -> String) {
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
    while !runs.kept.building.as_ref().is_some_and(Building::writes) {
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

/// The log's expiry is recorded: a start before its values had all been trimmed found their
/// claims again, and answered a retry of an event acknowledged since under its old seq.
#[test]
fn the_logs_expiry_outlives_a_reopen() {
    let (_db, mut runs, _files) = open();
    // 600 claims, all in the log (under seal_at 1000), received at 5.
    claim(&mut runs, 0..600, 5);
    assert_eq!(runs.expire(6).unwrap(), 600);
    assert_eq!(runs.lookup(id(500).as_bytes()).unwrap(), None, "expired");
    // One step after the expiry (as the committer does), then a stop.
    runs.step().unwrap();
    // The key is sent again and accepted as new, under seq 10,000.
    claim_one(&mut runs, 500, 10_000, 7);
    assert_eq!(runs.lookup(id(500).as_bytes()).unwrap(), Some(Seq(10_000)));
    let reopened = reopen(&runs);
    assert_eq!(
        reopened.lookup(id(500).as_bytes()).unwrap(),
        Some(Seq(10_000)),
        "after the reopen"
    );
    assert_eq!(reopened.lookup(id(499).as_bytes()).unwrap(), None);
}

fn claim_one(runs: &mut Runs, n: u64, seq: u64, at: u64) {
    let mut value = Vec::new();
    push_entry(&mut value, id(n).as_bytes(), Seq(seq), at);
    runs.claims
        .log
        .insert(claims::log_key(Seq(seq)), value)
        .unwrap();
    let key = id(n);
    runs.claimed(&[(key.as_bytes(), Seq(seq))]);
}

/// Long dedup keys (a 64-character provider, an unsigned id of 229 characters bound to its
/// body's hash: 366 bytes, 16 entries to a full value) keep each run value and its key within an
/// `events` entry's bound, under which no leaf reaches sled's blob threshold (a value's key holds
/// its first dedup key: 6,515 bytes each before).
#[test]
fn run_values_with_the_longest_keys_stay_within_the_bound() {
    fn longest(n: u64) -> String {
        format!(
            "{}\0{}{n:05} sha256:{}",
            "p".repeat(64),
            "i".repeat(224),
            "a".repeat(64)
        )
    }
    let (_db, mut runs, _files) = open();
    claim_as(&mut runs, 0..3000, 1000, longest);
    settle(&mut runs);
    assert_eq!(runs.sealed_keys(), 3000);
    let mut values = 0;
    for item in runs.tree.iter() {
        let (key, value) = item.unwrap();
        assert!(
            key.len() + value.len() <= MAX_VALUE + 10,
            "a run entry of {} + {} bytes",
            key.len(),
            value.len()
        );
        values += 1;
    }
    assert!(values > 100, "{values}");
    assert!(runs.lookup(longest(1234).as_bytes()).unwrap().is_some());
}

/// Claims that expire from the log while their run is built, the run holding younger ones too:
/// the run is dropped, not sealed (sealed, it found the expired ones again, found after a
/// reopen too: a journaled copy of a new event with such a key was then refused at every start).
/// Its young claims are still found in the log, and sealed into a later run.
#[test]
fn claims_expired_while_their_run_is_built_stay_expired() {
    let (_db, mut runs, _files) = open();
    claim(&mut runs, 0..500, 5);
    claim(&mut runs, 500..1000, 7);
    runs.step().unwrap();
    assert!(runs.kept.building.is_some());
    assert_eq!(runs.expire(6).unwrap(), 500);
    assert!(runs.kept.building.is_none(), "dropped");
    settle(&mut runs);
    assert_eq!(runs.lookup(id(100).as_bytes()).unwrap(), None);
    assert_eq!(reopen(&runs).lookup(id(100).as_bytes()).unwrap(), None);
    assert_eq!(runs.lookup(id(700).as_bytes()).unwrap(), Some(Seq(701)));
    claim(&mut runs, 1000..2000, 8);
    settle(&mut runs);
    assert!(runs.sealed_keys() >= 500, "{}", runs.sealed_keys());
    for (n, seq) in [(100, None), (700, Some(Seq(701))), (1500, Some(Seq(1501)))] {
        assert_eq!(runs.lookup(id(n).as_bytes()).unwrap(), seq, "id {n}");
        assert_eq!(
            reopen(&runs).lookup(id(n).as_bytes()).unwrap(),
            seq,
            "id {n}"
        );
    }
    assert_eq!(runs.expire(9).unwrap(), 1500, "each claim counted once");
}

/// A run marked for dropping whose summary is still there (a power loss kept the mark, written
/// first, and lost the summary's removal) is dropped at open, not kept as sealed (which found
/// its expired keys again).
#[test]
fn a_run_with_both_its_dropping_mark_and_its_summary_is_dropped_at_open() {
    let (_db, mut runs, _files) = open();
    claim(&mut runs, 0..1000, 5);
    settle(&mut runs);
    assert_eq!(runs.sealed_keys(), 1000);
    let run = runs.kept.sealed[0].id;
    let summary = runs.tree.get(key(run, SUMMARY, &[])).unwrap().unwrap();
    assert_eq!(runs.expire(6).unwrap(), 1000);
    runs.tree.insert(key(run, SUMMARY, &[]), summary).unwrap();
    let mut reopened = reopen(&runs);
    assert_eq!(reopened.sealed_keys(), 0);
    assert_eq!(reopened.lookup(id(500).as_bytes()).unwrap(), None);
    settle(&mut reopened);
    assert!(reopened.tree.is_empty(), "its values go");
}
