//! Readers see only durable events: a seq, once read, names the same event for good.
//!
//! In process, readers race the committer: every seq a read returns is at most `last_seq` as
//! read right after the call (`last_seq` only moves once events are durable), names the same
//! event every time, and every acked event is there. End to end, a reader polls the admin API
//! under load while the gateway is SIGKILLed, also while sled is checkpointed under it: after
//! the restart, every seq it saw and every ack still name the same event.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::load::{assert_kept, read_events, Load};
use common::{provider, Gateway};
use hookgate::config::StoreConfig;
use hookgate::event::{EventId, ProviderName, Seq};
use hookgate::metrics::Metrics;
use hookgate::store::{Committed, NewEvent, Store, StoredEvent};
use proptest::prelude::*;
use rand::Rng as _;

const DEADLINE: Duration = Duration::from_secs(30);

fn open_sled(dir: &Path) -> Store {
    Store::open(dir, &StoreConfig::default(), Arc::new(Metrics::new())).unwrap()
}

fn last_seq(store: &Store) -> u64 {
    store.last_seq().borrow().0
}

/// What the reader tasks saw: each seq's event id, and every violation.
#[derive(Default)]
struct Seen {
    ids: Mutex<HashMap<u64, String>>,
    violations: Mutex<Vec<String>>,
    reads: std::sync::atomic::AtomicU64,
}

impl Seen {
    fn violation(&self, text: String) {
        let mut violations = self.violations.lock().unwrap();
        if violations.len() < 20 {
            violations.push(text);
        }
    }

    /// Checks one event a read returned, with `last` read right after the call.
    fn check(&self, event: &StoredEvent, last: u64, what: &str) {
        if event.seq > last {
            self.violation(format!(
                "{what}: seq {} returned while last_seq was {last} after the call",
                event.seq
            ));
        }
        let mut ids = self.ids.lock().unwrap();
        let known = ids
            .entry(event.seq)
            .or_insert_with(|| event.event_id.clone());
        if *known != event.event_id {
            self.violation(format!(
                "{what}: seq {} named {known}, now {}",
                event.seq, event.event_id
            ));
        }
    }
}

/// Commits `batches` (each a burst of concurrent commits from `writers` tasks, unique ids)
/// while two readers loop over `events_after` and `event`; returns what they saw and the acks.
async fn race(
    store: Store,
    batches: Vec<usize>,
    writers: usize,
) -> (Arc<Seen>, Vec<(Seq, String)>) {
    let seen = Arc::new(Seen::default());
    let acked: Arc<Mutex<Vec<(Seq, String)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));

    let mut readers = Vec::new();
    // A scanner: everything, from the start.
    {
        let (store, seen, acked, done) = (store.clone(), seen.clone(), acked.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let before: Vec<Seq> = acked.lock().unwrap().iter().map(|(s, _)| *s).collect();
                let events = store.events_after(Seq(0), 1_000_000, None).await.unwrap();
                let last = last_seq(&store);
                seen.reads.fetch_add(1, Ordering::Relaxed);
                let mut previous = 0;
                for event in &events {
                    seen.check(event, last, "events_after");
                    if event.seq <= previous {
                        seen.violation(format!("events_after: {} after {previous}", event.seq));
                    }
                    previous = event.seq;
                }
                let returned: std::collections::HashSet<u64> =
                    events.iter().map(|e| e.seq).collect();
                for seq in before {
                    if !returned.contains(&seq.0) {
                        seen.violation(format!("events_after: acked seq {seq} missing"));
                    }
                }
            }
        }));
    }
    // A prober: the tail, by seq and by a short page, just past what is durable.
    {
        let (store, seen, done) = (store.clone(), seen.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let durable = last_seq(&store);
                let probe = durable + rand::thread_rng().gen_range(0..4);
                let event = store.event(Seq(probe)).await.unwrap();
                let last = last_seq(&store);
                seen.reads.fetch_add(1, Ordering::Relaxed);
                match event {
                    Some(event) => {
                        if event.seq != probe {
                            seen.violation(format!("event({probe}) returned seq {}", event.seq));
                        }
                        seen.check(&event, last, "event");
                    }
                    None if probe >= 1 && probe <= durable => {
                        seen.violation(format!("event({probe}) missing, last_seq was {durable}"));
                    }
                    None => {}
                }
                let after = durable.saturating_sub(2);
                let page = store.events_after(Seq(after), 8, None).await.unwrap();
                let last = last_seq(&store);
                for event in &page {
                    seen.check(event, last, "events_after(tail)");
                }
            }
        }));
    }

    let mut n = 0usize;
    for batch in batches {
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let store = store.clone();
            let acked = acked.clone();
            let ids: Vec<String> = (0..batch)
                .filter(|i| i % writers == writer)
                .map(|i| format!("ev-{}", n + i))
                .collect();
            tasks.push(tokio::spawn(async move {
                for id in ids {
                    let event = NewEvent::poll(
                        ProviderName::parse("p").unwrap(),
                        EventId::new(id.clone()).unwrap(),
                        Some("application/json".into()),
                        Bytes::from(format!(r#"{{"id":"{id}"}}"#)),
                    );
                    match store.commit(event, DEADLINE).await.unwrap() {
                        Committed::Accepted(seq) => acked.lock().unwrap().push((seq, id)),
                        other => panic!("{id}: {other:?}"),
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        n += batch;
    }
    // Let the readers run over the final state once more.
    let reads = seen.reads.load(Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.reads.load(Ordering::Relaxed) < reads + 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the readers stopped reading"
        );
        tokio::task::yield_now().await;
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    (seen, acked)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn readers_racing_the_committer_see_only_durable_events(
        batches in proptest::collection::vec(1usize..80, 3..12),
        writers in 1usize..12,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let total: usize = batches.iter().sum();
        let (seen, acked) = runtime.block_on(async {
            let store = open_sled(dir.path());
            let outcome = race(store.clone(), batches, writers).await;
            store.close().await;
            outcome
        });
        let violations = seen.violations.lock().unwrap().clone();
        prop_assert!(violations.is_empty(), "violations: {:#?}", violations);
        prop_assert_eq!(acked.len(), total);
        // Every ack names the event the readers saw under its seq (when they saw it).
        let ids = seen.ids.lock().unwrap();
        for (seq, id) in &acked {
            if let Some(seen_id) = ids.get(&seq.0) {
                prop_assert_eq!(seen_id, id, "seq {}", seq);
            }
        }
        // The readers did read while commits went on.
        prop_assert!(seen.reads.load(Ordering::Relaxed) > 4);
    }
}

// ---- end to end ----

#[test]
fn seqs_read_through_the_admin_api_survive_sigkill() {
    // Without the per-address rate limit, which a fast run of the load passes (429s).
    let store = "\n[limits]\nper_address_rps = 0\n";
    assert_seqs_survive_sigkill(store, &[], Duration::from_millis(1500), &[]);
}

/// The same with sled checkpointed (closed and reopened under the readers) every MB committed.
#[test]
fn seqs_read_across_checkpoints_survive_sigkill() {
    // Without the per-address rate limit, so that the load commits a few MB in that time.
    let store = "\n[store]\ncheckpoint_mb = 1\n[limits]\nper_address_rps = 0\n";
    // Each checkpoint is counted, and its pause timed.
    let checkpoints = [
        ("hookgate_store_checkpoints_total", 1.0),
        ("hookgate_store_checkpoint_seconds_count", 1.0),
    ];
    assert_seqs_survive_sigkill(store, &[], Duration::from_secs(6), &checkpoints);
}

/// The same killed while a checkpoint keeps sled closed (3 s longer than it takes, by the test
/// hook), once events were acknowledged from the checkpoint journal meanwhile: the restart
/// applies the journal, and those events keep their seqs.
#[test]
fn events_journaled_during_a_checkpoint_survive_sigkill() {
    let store = "\n[store]\ncheckpoint_mb = 1\n[limits]\nper_address_rps = 0\n";
    let slow = [("HOOKGATE_TEST_SLOW_CHECKPOINT_MS", "3000")];
    let journaled = [("hookgate_store_journaled_events_total", 50.0)];
    let gw = assert_seqs_survive_sigkill(store, &slow, Duration::from_secs(1), &journaled);
    let applied = gw.logged_at_last_start("journal_events");
    assert!(applied > 0, "the restart applied no journaled event");
}

/// The same killed while the journal is applied to sled after a checkpoint (each step of it
/// 500 ms longer, by the test hook), with events acknowledged from the journal meanwhile.
#[test]
fn events_journaled_while_the_journal_is_applied_survive_sigkill() {
    let store = "\n[store]\ncheckpoint_mb = 1\n[limits]\nper_address_rps = 0\n";
    let slow = [("HOOKGATE_TEST_SLOW_APPLY_MS", "500")];
    // sled is open again (counted) and the apply goes on, a step each 500 ms.
    let applying = [
        ("hookgate_store_checkpoints_total", 1.0),
        ("hookgate_store_journaled_events_total", 200.0),
    ];
    let gw = assert_seqs_survive_sigkill(store, &slow, Duration::from_secs(1), &applying);
    assert!(gw.logged_at_last_start("journal_events") > 0);
    assert!(
        !gw.logs().contains("Store checkpointed"),
        "killed before the journal was applied"
    );
}

/// The same with sled compacted (copied afresh and switched to the copy) after every retention
/// pass, every 200 ms, and checkpointed every MB meanwhile.
#[test]
fn seqs_read_across_compactions_survive_sigkill() {
    let store = "\n[store]\ncheckpoint_mb = 1\ncompact_ratio = 1.0\ncompact_min_mb = 0\n\
                 sweep_interval = \"200ms\"\n[limits]\nper_address_rps = 0\n";
    let compactions = ("hookgate_store_compactions_total", 3.0);
    assert_seqs_survive_sigkill(store, &[], Duration::from_secs(6), &[compactions]);
}

/// Load and a reader of the admin API for `load_for`, then SIGKILL: the reader saw only seqs
/// that name the same event after the restart, every ack is stored once. The metrics
/// `at_least` names had reached their values by then. Returns the restarted gateway.
fn assert_seqs_survive_sigkill(
    store: &str,
    env: &[(&str, &str)],
    load_for: Duration,
    at_least: &[(&str, f64)],
) -> Gateway {
    let config = format!(
        "{}{store}",
        provider("p", "none", &[], "event_id = \"header:X-Id\"")
    );
    let mut gw = env
        .iter()
        .fold(
            Gateway::builder().config(&config),
            |builder, (name, value)| builder.env(name, value),
        )
        .start();
    let load = Load::default();
    let seen: Mutex<BTreeMap<u64, String>> = Mutex::default();
    let stop_reader = AtomicBool::new(false);
    let mut pages = 0;
    std::thread::scope(|s| {
        let _stop = common::SetOnDrop(vec![&load.stop, &stop_reader]);
        for thread in 0..12 {
            let (api, load) = (gw.api(), &load);
            s.spawn(move || load.run(&api, thread, load_for + Duration::from_secs(75)));
        }
        let (admin_url, seen, stop_reader) = (gw.admin_url.clone(), &seen, &stop_reader);
        let reader = s.spawn(move || read_events(&admin_url, 0, seen, stop_reader));
        std::thread::sleep(load_for);
        // On a slow machine, the load may need longer to commit enough for the checkpoints.
        for &(metric, least) in at_least {
            common::wait_until(Duration::from_secs(60), metric, || {
                gw.metric(metric, &[]).unwrap_or(0.0) >= least
            });
        }
        gw.kill();
        load.stop.store(true, Ordering::Relaxed);
        stop_reader.store(true, Ordering::Relaxed);
        pages = reader.join().unwrap();
    });
    let unexpected = load.unexpected.lock().unwrap().clone();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
    let acked = load.acked.lock().unwrap().clone();
    let seen = seen.into_inner().unwrap();
    eprintln!(
        "{} acked, {} seqs seen in {pages} pages before SIGKILL",
        acked.len(),
        seen.len()
    );
    assert!(
        acked.len() >= 50,
        "only {} acks before the kill",
        acked.len()
    );
    assert!(seen.len() >= 50, "the reader saw only {} seqs", seen.len());

    gw.restart();
    assert_kept(
        &gw.ids_by_seq(),
        acked.iter().map(|(id, seq)| (id.as_str(), *seq)),
        &seen,
        "after SIGKILL",
    );
    gw
}
