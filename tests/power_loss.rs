//! Power losses, simulated: the data dir on crashfs (`common/crashfs.rs`), a file system in
//! memory that forgets at each power loss whatever was not synced (a random part of the writes
//! since each file's last fsync; directories as of their own last fsync, or of the last fsync of
//! anything, as a journaling file system keeps them, or whole).
//!
//! Each round: load from 8 threads (unique ids) and a reader paging through `/v1/events`, SIGKILL
//! at a random moment, unmount, power loss, mount, restart. After every restart: every event
//! ever acknowledged is stored once, at the seq it was acknowledged with; every seq a reader saw
//! names the same event; and acknowledged ids sent again are duplicates of their first seq.
//! A destination receives the events meanwhile, and a consumer pulls them and acknowledges
//! each page: no power loss moves the consumer's cursor back from a cursor an ack answered, and
//! at the end every event acknowledged has been delivered and pulled (at least once) under its
//! seq.
//! Dedup runs are sealed every 300 keys and sled is checkpointed every MB; every third round
//! goes on until both happened and ends within 300 ms of them. A second test compacts sled
//! (copies it afresh and switches to the copy) after every retention pass, every 200 ms. A
//! third, fourth and fifth have the file system fail an fsync with EIO under load: of sled's
//! log, of the checkpoint journal, and of the pointer a compaction writes to switch copies. A
//! sixth fills a small disk (crashfs with a capacity) under load before each power loss. A
//! seventh starts on a data dir made just before, never synced into its directory.
//!
//! `HOOKGATE_POWER_LOSSES` sets the number of rounds (default 12; the full disk test runs a
//! quarter as many, default 3); `HOOKGATE_POWER_LOSS_SEED`
//! replays a run's choices (how long each round runs, what each power loss keeps; the moment
//! of each kill still depends on timing). The seed is printed. Needs root and `/dev/fuse`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::crashfs::CrashFs;
use common::load::{assert_kept, missing, read_events, Load};
use common::stub::Stub;
use common::{provider, sign, wait_until, Gateway};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WHSEC: &str = "whsec_ZG93bnN0cmVhbS1zaWduaW5nLWtleS0x";

/// The test's random choices, from `HOOKGATE_POWER_LOSS_SEED` or a fresh seed, printed so that
/// a run can be replayed.
fn seeded_rng(what: &str, rounds: u64) -> StdRng {
    let seed = env_number("HOOKGATE_POWER_LOSS_SEED").unwrap_or_else(rand::random);
    eprintln!("{what}: {rounds}, seed {seed} (HOOKGATE_POWER_LOSS_SEED replays it)");
    StdRng::seed_from_u64(seed)
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

#[test]
fn no_acknowledged_event_is_lost_to_a_power_loss() {
    lose_power_under_load(
        "checkpoint_mb = 1",
        &["Store checkpointed", "Dedup run sealed"],
    );
}

#[test]
fn no_acknowledged_event_is_lost_to_a_power_loss_during_compactions() {
    lose_power_under_load(
        "checkpoint_mb = 1\ncompact_ratio = 1.0\ncompact_min_mb = 0\nsweep_interval = \"200ms\"",
        &["Store compacted"],
    );
}

/// The file system fails an fdatasync of sled's log under load (EIO, the unwritten pages
/// dropped as Linux drops them, while reads still see them): the gateway exits non-zero, naming
/// the failed fsync, and after a power loss and a restart every event it acknowledged is there.
/// An ack given on top of the failed sync would be lost by then.
#[test]
fn an_fsync_of_the_log_failed_by_the_file_system_stops_the_gateway_and_costs_no_ack() {
    let logged = fail_an_fsync_under_load("db", "", &[], |_, load| load.acked_count() >= 200);
    assert!(
        logged.contains("fdatasync of the store's log failed"),
        "no word of the failed fsync"
    );
}

/// The same with the checkpoint journal's fdatasync failing while sled is closed for a
/// checkpoint (held 3 s longer by the test hook) and events are acknowledged from the journal.
#[test]
fn an_fsync_of_the_checkpoint_journal_failed_by_the_file_system_stops_the_gateway() {
    let slow = [("HOOKGATE_TEST_SLOW_CHECKPOINT_MS", "3000")];
    let logged = fail_an_fsync_under_load("journal", "checkpoint_mb = 1", &slow, |gw, _| {
        gw.metric("hookgate_store_journaled_events_total", &[])
            .is_some_and(|journaled| journaled >= 50.0)
    });
    assert!(logged.contains("journal"), "no word of the journal");
}

/// The same with the fsync of `current.new` failing as a compaction makes its copy the live
/// store (sled compacted after every sweep, every 200 ms).
/// The acknowledged watermark's fsync failing (EIO) stops the gateway too: it warned and went
/// on, and a retried fsync may report success over pages the kernel dropped.
#[test]
fn an_fsync_of_the_watermark_failed_by_the_file_system_stops_the_gateway() {
    let logged = fail_an_fsync_under_load("acked", "", &[], |_, load| load.acked_count() >= 200);
    assert!(
        logged.contains("acknowledged watermark"),
        "no word of the watermark"
    );
}

#[test]
fn an_fsync_of_the_pointer_to_a_compacted_copy_failed_by_the_file_system_stops_the_gateway() {
    let store = "compact_ratio = 1.0\ncompact_min_mb = 0\nsweep_interval = \"200ms\"";
    let logged = fail_an_fsync_under_load("current.new", store, &[], |gw, _| {
        gw.metric("hookgate_store_compactions_total", &[])
            .is_some_and(|compactions| compactions >= 1.0)
    });
    assert!(
        logged.contains("cannot tell which copy of it is current"),
        "no word of the store's pointer"
    );
}

/// The last fdatasync of a stop failing (EIO): the stop exits non-zero and no checkpoint
/// reopens sled over what the disk may not hold (it was logged, the stop exited 0, and sled was
/// reopened and snapshotted on pages the kernel may have dropped). The next start has every ack.
#[test]
fn a_failed_last_sync_of_a_stop_exits_non_zero_without_a_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let fs = CrashFs::new();
    let mounted = fs.mount(&data_dir);
    let config = provider("p", "none", &[], "event_id = \"json:/id\"");
    let mut gw = Gateway::builder()
        .config(&config)
        .data_dir(&data_dir)
        .start();
    let mut acked = Vec::new();
    for n in 0..20 {
        let body = format!(r#"{{"id":"stop-{n}"}}"#);
        acked.push((body.clone(), gw.post("p", &[], body.as_bytes()).ack().1));
    }
    fs.fail_next_fsync_of("db");
    gw.signal(nix::sys::signal::Signal::SIGTERM);
    let status = gw.wait_exit(Duration::from_secs(20));
    let logs = gw.logs();
    assert!(!status.success(), "{status:?}: {logs}");
    assert!(logs.contains("cannot tell what reached the disk"), "{logs}");
    assert!(
        !logs.contains("Store checkpointed for the next start"),
        "{logs}"
    );
    gw.restart();
    for (body, seq) in &acked {
        let again = gw.post("p", &[], body.as_bytes()).ack();
        assert_eq!(again, ("duplicate".to_string(), *seq), "{body}");
    }
    gw.kill();
    mounted.unmount();
}

/// A small disk filled under load (crashfs with a capacity), sled checkpointed every MB and a
/// compaction tried after every sweep: while it is full, answers are 503 with Retry-After (or
/// the gateway stops, if a write fails anyway). Then SIGKILL, a power loss, a start on the disk
/// still full (which may refuse, saying why), and one after the operator made room: every ack
/// is there at its seq, acked ids sent again are duplicates, and the destination gets them all.
/// Each round fills the room the last one made.
#[test]
fn a_full_disk_then_a_power_loss_costs_no_ack() {
    const DISK: u64 = 8 << 20;
    const ROOM: u64 = 4 << 20;
    let rounds = env_number("HOOKGATE_POWER_LOSSES").map_or(3, |n| n.div_ceil(4));
    let mut rng = seeded_rng("full disks", rounds);

    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let fs = CrashFs::new();
    fs.set_capacity(Some(DISK));
    let mut mounted = Some(fs.mount(&data_dir));
    let downstream = Stub::start(|_| (200, "text/plain", Vec::new()));
    let store =
        "checkpoint_mb = 1\ncompact_ratio = 1.0\ncompact_min_mb = 0\nsweep_interval = \"200ms\"";
    let mut gw = start_delivering(&data_dir, &downstream, "", store);
    let mut acked: HashMap<String, u64> = HashMap::new();
    for round in 0..rounds {
        let load = Load {
            prefix: format!("r{round}-"),
            ..Load::default()
        };
        std::thread::scope(|s| {
            for thread in 0..8 {
                let (api, load) = (gw.api(), &load);
                s.spawn(move || load.run(&api, thread, Duration::from_secs(120)));
            }
            wait_until(Duration::from_secs(90), "a full disk", || {
                let logs = gw.logs();
                let last = logs.rsplit("---- harness: restart ----").next();
                last.unwrap_or_default().contains("The disk is full") || !gw.is_running()
            });
            // A while full: checkpoints, seals, sweeps and compactions meet it too.
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..3000)));
            gw.kill();
            load.stop.store(true, Ordering::Relaxed);
        });
        let unexpected = load.unexpected.lock().unwrap();
        assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
        let new_acks = load.acked.lock().unwrap().clone();
        acked.extend(new_acks.iter().cloned());

        mounted.take().unwrap().unmount();
        let loss = fs.lose_power(&mut rng);
        eprintln!(
            "round {round}: {} acked, the disk {} of {} bytes used; power lost: {loss:?}",
            new_acks.len(),
            fs.used(),
            DISK + round * ROOM
        );
        mounted = Some(fs.mount(&data_dir));
        let context = format!("round {round}, after a power loss");
        match gw.try_restart() {
            Ok(()) => {
                let stored = gw.ids_by_seq();
                let acks = acked.iter().map(|(id, seq)| (id.as_str(), *seq));
                assert_kept(&stored, acks, &BTreeMap::new(), &context);
                eprintln!("round {round}: started on the full disk");
            }
            Err(err) => {
                let logs = gw.logs();
                let last = logs.rsplit("---- harness: restart ----").next();
                eprintln!(
                    "round {round}: no start on the full disk ({err}): {}",
                    last.unwrap_or_default().lines().last().unwrap_or_default()
                );
            }
        }
        // The operator makes room.
        gw.kill();
        fs.set_capacity(Some(DISK + (round + 1) * ROOM));
        gw.restart();
        let acks = acked.iter().map(|(id, seq)| (id.as_str(), *seq));
        assert_kept(&gw.ids_by_seq(), acks, &BTreeMap::new(), &context);
        assert_resent_are_duplicates(&gw, &new_acks, round);
    }
    assert!(
        acked.len() as u64 >= 100 * rounds,
        "only {} acks in {rounds} rounds",
        acked.len()
    );
    assert_everything_delivered(&downstream, &acked);
}

/// A data dir made just before the first start (by a script, systemd's `StateDirectory=`, here
/// the test's harness), whose entry was never synced: a power loss that keeps directories as of
/// their own last fsync took it, with every event acknowledged in it, and the next start began
/// empty in silence. The gateway syncs the directory that holds the data dir at open.
#[test]
fn a_data_dir_made_just_before_the_first_start_survives_a_power_loss() {
    let root = tempfile::tempdir().unwrap();
    let mount = root.path().join("mnt");
    std::fs::create_dir(&mount).unwrap();
    let fs = CrashFs::new();
    let mounted = fs.mount(&mount);
    let data_dir = mount.join("data");
    let config = format!(
        "{}\n[limits]\nper_address_rps = 0\n",
        provider("p", "none", &[], "event_id = \"header:X-Id\"")
    );
    let mut gw = Gateway::builder()
        .config(&config)
        .data_dir(&data_dir)
        .start();
    let load = Load::default();
    std::thread::scope(|s| {
        for thread in 0..4 {
            let (api, load) = (gw.api(), &load);
            s.spawn(move || load.run(&api, thread, Duration::from_secs(60)));
        }
        wait_until(Duration::from_secs(20), "acks", || {
            load.acked_count() >= 200
        });
        load.stop.store(true, Ordering::Relaxed);
    });
    gw.kill();
    mounted.unmount();
    let loss = fs.lose_power_with(
        &mut rand::thread_rng(),
        &[common::crashfs::Metadata::Synced],
    );
    eprintln!("{} acked; power lost: {loss:?}", load.acked_count());
    let mounted = fs.mount(&mount);
    gw.restart();
    load.assert_all_stored(&gw);
    gw.kill();
    mounted.unmount();
}

/// Load until `ready`, then the next fsync of `file` (in the data dir) fails: the gateway exits
/// non-zero; after a power loss and a restart every ack is stored. Returns what the gateway
/// logged.
fn fail_an_fsync_under_load(
    file: &str,
    store: &str,
    env: &[(&str, &str)],
    ready: impl Fn(&Gateway, &Load) -> bool,
) -> String {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let fs = CrashFs::new();
    let mounted = fs.mount(&data_dir);
    let config = format!(
        "{}\n[store]\n{store}\n[limits]\nper_address_rps = 0\n",
        provider("p", "none", &[], "event_id = \"header:X-Id\"")
    );
    let builder = Gateway::builder().config(&config).data_dir(&data_dir);
    let mut gw = env
        .iter()
        .fold(builder, |builder, (name, value)| builder.env(name, value))
        .start();
    let load = Load::default();
    let mut status = None;
    std::thread::scope(|s| {
        for thread in 0..8 {
            let (api, load) = (gw.api(), &load);
            s.spawn(move || load.run(&api, thread, Duration::from_secs(60)));
        }
        wait_until(Duration::from_secs(40), "the moment to fail", || {
            ready(&gw, &load)
        });
        fs.fail_next_fsync_of(file);
        status = Some(gw.wait_exit(Duration::from_secs(20)));
        load.stop.store(true, Ordering::Relaxed);
    });
    let status = status.unwrap();
    assert!(!status.success(), "the gateway exited {status:?} after EIO");
    let logged = gw.logs();
    let unexpected = load.unexpected.lock().unwrap().clone();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");

    mounted.unmount();
    let loss = fs.lose_power(&mut rand::thread_rng());
    eprintln!("{} acked; power lost: {loss:?}", load.acked_count());
    let mounted = fs.mount(&data_dir);
    gw.restart();
    load.assert_all_stored(&gw);
    gw.kill();
    mounted.unmount();
    logged
}

/// Rounds of load, SIGKILL and power loss with `store` as the `[store]` table; every third
/// round lasts until the gateway logged each of `logged`.
fn lose_power_under_load(store: &str, logged: &[&str]) {
    let rounds = env_number("HOOKGATE_POWER_LOSSES").unwrap_or(12);
    let mut rng = seeded_rng("power losses", rounds);

    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let fs = CrashFs::new();
    let mut mounted = Some(fs.mount(&data_dir));
    let downstream = Stub::start(|_| (200, "text/plain", Vec::new()));
    let consumer = "[[consumer]]\nname = \"pull\"\n";
    let mut gw = start_delivering(&data_dir, &downstream, consumer, store);

    // Every ack (id -> seq) and every seq a reader saw (seq -> id), over all rounds.
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    // What the consumer pulled (seq -> id), and the highest cursor an ack of it answered.
    let pulled: Mutex<BTreeMap<u64, String>> = Mutex::default();
    let cursor = AtomicU64::new(0);
    // Rounds in which the reader saw seqs newer than every ack of the rounds before.
    let mut rounds_read_at_the_tail = 0;
    for round in 0..rounds {
        // The reader starts a little behind the tail, where seqs are still being made durable.
        let tail = acked.values().copied().max().unwrap_or(0);
        let load = Load {
            prefix: format!("r{round}-"),
            ..Load::default()
        };
        let read: Mutex<BTreeMap<u64, String>> = Mutex::default();
        let stop_reader = AtomicBool::new(false);
        let load_for = Duration::from_millis(rng.gen_range(200..1500));
        std::thread::scope(|s| {
            let _stop = common::SetOnDrop(vec![&load.stop, &stop_reader]);
            for thread in 0..8 {
                let (api, load) = (gw.api(), &load);
                s.spawn(move || load.run(&api, thread, Duration::from_secs(60)));
            }
            let (admin_url, read, stop_reader) = (gw.admin_url.clone(), &read, &stop_reader);
            s.spawn(move || read_events(&admin_url, tail.saturating_sub(50), read, stop_reader));
            let (admin_url, pulled, cursor) = (gw.admin_url.clone(), &pulled, &cursor);
            s.spawn(move || pull(&admin_url, pulled, cursor, stop_reader));
            std::thread::sleep(load_for);
            // Every third round goes on until each of `logged` happened, and a little more.
            if round % 3 == 2 {
                let logged_since_start = |message: &str| {
                    let logs = gw.logs();
                    let last = logs.rsplit("---- harness: restart ----").next();
                    last.unwrap_or_default().contains(message)
                };
                for message in logged {
                    wait_until(Duration::from_secs(60), message, || {
                        logged_since_start(message)
                    });
                }
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
            }
            gw.kill();
            load.stop.store(true, Ordering::Relaxed);
            stop_reader.store(true, Ordering::Relaxed);
        });
        let unexpected = load.unexpected.lock().unwrap();
        assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
        let new_acks = load.acked.lock().unwrap().clone();
        let new_seen = read.into_inner().unwrap();
        let read_at_the_tail = new_seen.range(tail + 1..).count();
        rounds_read_at_the_tail += usize::from(read_at_the_tail > 0);

        mounted.take().unwrap().unmount();
        let loss = fs.lose_power(&mut rng);
        eprintln!(
            "round {round}: {} acked, {} seqs read ({read_at_the_tail} new) in {load_for:?}; \
             power lost: {loss:?}",
            new_acks.len(),
            new_seen.len()
        );
        mounted = Some(fs.mount(&data_dir));
        gw.restart();
        let kept = consumer_cursor(&gw);
        let answered = cursor.load(Ordering::Relaxed);
        assert!(
            kept >= answered,
            "round {round}: the consumer's cursor went back from {answered} to {kept}"
        );

        for (seq, id) in new_seen {
            if let Some(known) = seen.insert(seq, id.clone()) {
                assert_eq!(
                    known, id,
                    "round {round}: seq {seq} was read naming two events"
                );
            }
        }
        acked.extend(new_acks.iter().cloned());
        assert_kept(
            &gw.ids_by_seq(),
            acked.iter().map(|(id, seq)| (id.as_str(), *seq)),
            &seen,
            &format!("round {round}, after a power loss"),
        );
        assert_resent_are_duplicates(&gw, &new_acks, round);
    }
    assert!(
        acked.len() as u64 >= 50 * rounds,
        "only {} acks in {rounds} rounds",
        acked.len()
    );
    assert!(
        rounds_read_at_the_tail as u64 * 2 >= rounds,
        "the reader read new seqs in only {rounds_read_at_the_tail} of {rounds} rounds"
    );
    assert_everything_delivered(&downstream, &acked);
    // The consumer pulls the rest, then has every ack.
    while (1..usize::MAX).contains(&pull_page(&gw.admin_url, &pulled, &cursor)) {}
    let pulled = pulled.into_inner().unwrap();
    let never = missing(acked.iter().map(|(id, seq)| (id.as_str(), *seq)), &pulled);
    assert!(
        never.is_empty(),
        "never pulled: {:?}",
        &never[..never.len().min(10)]
    );
    let sizes = fs.sizes();
    eprintln!(
        "at the end: {} files, {} bytes",
        sizes.len(),
        sizes.values().sum::<u64>()
    );
}

/// A gateway on `data_dir` taking provider `p`'s webhooks (ids in `X-Id`), delivering them to
/// `downstream` as destination `down` (unordered), with `outputs` beside it and `store` as its
/// `[store]` table; dedup runs sealed every 300 keys.
fn start_delivering(data_dir: &Path, downstream: &Stub, outputs: &str, store: &str) -> Gateway {
    let config = format!(
        "{}\n[[destination]]\nname = \"down\"\nurl = \"{}/in\"\nsigning_secret = \"{WHSEC}\"\n\
         ordered = false\nmax_in_flight = 32\n{outputs}[store]\n{store}\n[limits]\n\
         per_address_rps = 0\n",
        provider("p", "none", &[], "event_id = \"header:X-Id\""),
        downstream.url,
    );
    Gateway::builder()
        .config(&config)
        .data_dir(data_dir)
        .env("HOOKGATE_TEST_DEDUP_RUN_KEYS", "300")
        .start()
}

/// A sample of a round's acks, sent again: duplicates of their first seq.
fn assert_resent_are_duplicates(gw: &Gateway, acks: &[(String, u64)], round: u64) {
    for (id, seq) in acks.iter().step_by(97) {
        let headers = sign::headers(&[("X-Id", id)]);
        let reply = gw.post("p", &headers, Load::body(id).as_bytes());
        assert_eq!(
            reply.ack(),
            ("duplicate".to_string(), *seq),
            "round {round}: {id} sent again"
        );
    }
}

/// Every ack reaches the destination under its seq, within two minutes.
fn assert_everything_delivered(downstream: &Stub, acked: &HashMap<String, u64>) {
    let delivered = || -> BTreeMap<u64, String> {
        downstream
            .requests()
            .iter()
            .map(|request| {
                let seq = request.header("hookgate-seq").unwrap().parse().unwrap();
                let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
                (seq, body["id"].as_str().unwrap().to_string())
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let missing = loop {
        let missing = missing(
            acked.iter().map(|(id, seq)| (id.as_str(), *seq)),
            &delivered(),
        );
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        missing.is_empty(),
        "{} of {} acks never delivered: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    eprintln!(
        "{} acks delivered in {} requests",
        acked.len(),
        downstream.calls()
    );
}

/// The consumer's cursor, as the gateway lists it.
fn consumer_cursor(gw: &Gateway) -> u64 {
    let listed = gw.admin_json("/v1/consumers");
    listed["consumers"][0]["cursor"].as_u64().unwrap()
}

/// Pulls and acknowledges pages until stopped or the gateway goes away.
fn pull(
    admin_url: &str,
    pulled: &Mutex<BTreeMap<u64, String>>,
    cursor: &AtomicU64,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        if pull_page(admin_url, pulled, cursor) == usize::MAX {
            break;
        }
    }
}

/// Reads one page of the consumer's events (waiting up to 100 ms for one), records them and
/// acknowledges the last; returns how many it read (0 also when the gateway answered 503), or
/// `usize::MAX` when the gateway is gone.
fn pull_page(admin_url: &str, pulled: &Mutex<BTreeMap<u64, String>>, cursor: &AtomicU64) -> usize {
    let client = reqwest::blocking::Client::new();
    let json = |request: reqwest::blocking::RequestBuilder| {
        let response = request.bearer_auth(common::ADMIN_TOKEN).send().ok()?;
        let status = response.status().as_u16();
        let body = response.json::<serde_json::Value>().ok()?;
        Some((status == 200).then_some(body))
    };
    let url = format!("{admin_url}/v1/consumers/pull/events?limit=500&wait_ms=100");
    let Some(page) = json(client.get(&url)) else {
        return usize::MAX;
    };
    let events = page.as_ref().and_then(|page| page["events"].as_array());
    let Some(last) = events.and_then(|events| events.last()) else {
        return 0;
    };
    let events = events.unwrap();
    let mut pulled = pulled.lock().unwrap();
    for event in events {
        let seq = event["seq"].as_u64().unwrap();
        pulled.insert(seq, event["event_id"].as_str().unwrap().to_string());
    }
    drop(pulled);
    let url = format!("{admin_url}/v1/consumers/pull/ack");
    let ack = serde_json::json!({ "seq": last["seq"] });
    match json(client.post(&url).json(&ack)) {
        None => return usize::MAX,
        Some(Some(answer)) => {
            cursor.fetch_max(answer["cursor"].as_u64().unwrap(), Ordering::Relaxed);
        }
        Some(None) => {}
    }
    events.len()
}
