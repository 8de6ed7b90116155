//! The retention sweeper, end to end with short horizons: events every output has go after
//! `retention`, unacked and dead ones stay, dedup keys expire after `dedup_window`, and the data
//! directory stops growing under steady traffic.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::stub::Stub;
use common::{provider, wait_until, Gateway};
use serde_json::json;

const WHSEC: &str = "whsec_ZG93bnN0cmVhbS1zaWduaW5nLWtleS0x";

/// `[store]` with the given dedup window (at least 1m), a 1 s retention and 200 ms sweeps.
fn store(dedup_window: &str) -> String {
    format!(
        "\n[store]\nretention = \"1s\"\ndedup_window = \"{dedup_window}\"\nsweep_interval = \"200ms\"\n"
    )
}

fn destination(url: &str) -> String {
    format!(
        "\n[[destination]]\nname = \"crm\"\nurl = \"{url}/ingest\"\nsigning_secret = \"{WHSEC}\"\n\
         timeout = \"2s\"\nretry_delays = [\"100ms\"]\n"
    )
}

fn ids_provider(name: &str) -> String {
    provider(name, "none", &[], "event_id = \"json:/id\"")
}

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}"}}"#).into_bytes()
}

fn post(gw: &Gateway, provider: &str, id: &str) -> (String, u64) {
    gw.post(provider, &[], &body(id)).ack()
}

fn stored_seqs(gw: &Gateway) -> BTreeSet<u64> {
    gw.all_events(None)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

fn metric(gw: &Gateway, name: &str) -> f64 {
    gw.metric(name, &[]).unwrap_or(0.0)
}

#[test]
fn events_go_once_every_output_has_them_and_retention_passed() {
    // The destination refuses "poison" for good (400: dead at once) until `fixed`.
    let fixed = Arc::new(AtomicBool::new(false));
    let fixed_in_stub = fixed.clone();
    let stub = Stub::start(move |request| {
        let poison = String::from_utf8_lossy(&request.body).contains("poison");
        if poison && !fixed_in_stub.load(Ordering::SeqCst) {
            (400, "text/plain", b"no".to_vec())
        } else {
            (200, "text/plain", Vec::new())
        }
    });
    let config = ids_provider("p")
        + &ids_provider("pulled")
        + &destination(&stub.url)
        + "\n[[consumer]]\nname = \"puller\"\nproviders = [\"pulled\"]\n"
        + &store("1m");
    let gw = Gateway::builder().config(&config).start();

    let first_post = Instant::now();
    let delivered: Vec<u64> = (0..5).map(|i| post(&gw, "p", &format!("d{i}")).1).collect();
    let (_, poison) = post(&gw, "p", "poison");
    let pulled: Vec<u64> = (0..4)
        .map(|i| post(&gw, "pulled", &format!("u{i}")).1)
        .collect();
    let total = 10;
    // The consumer acks the first two of its four events.
    let ack = gw.admin_post("/v1/consumers/puller/ack", &json!({ "seq": pulled[1] }));
    assert!(ack.status < 300, "ack: {} {}", ack.status, ack.text());

    wait_until(Duration::from_secs(10), "every delivery attempted", || {
        stub.calls() >= total
    });
    // Nothing goes before retention (1 s) has passed since it arrived, even what every output
    // has: the first to go is seen gone no sooner.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored_seqs(&gw).len() == total {
        assert!(Instant::now() < deadline, "nothing swept");
        std::thread::sleep(Duration::from_millis(20));
    }
    let first_gone = first_post.elapsed();
    assert!(
        first_gone >= Duration::from_secs(1),
        "swept after {first_gone:?}"
    );

    // Delivered and (for the consumer's provider) acked: 5 + 2 go; the dead one and the two
    // unacked ones stay.
    wait_until(Duration::from_secs(10), "the sweep of 7 events", || {
        metric(&gw, "hookgate_events_swept_total") >= 7.0
    });
    std::thread::sleep(Duration::from_millis(600)); // three more sweeps: nothing else goes
    let expected: BTreeSet<u64> = [poison, pulled[2], pulled[3]].into();
    assert_eq!(stored_seqs(&gw), expected);
    assert_eq!(metric(&gw, "hookgate_events_swept_total"), 7.0);
    for seq in &delivered {
        assert!(gw.event(*seq).is_none(), "event {seq} should be swept");
    }
    let dead = gw.event(poison).unwrap();
    assert_eq!(dead["deliveries"]["crm"], "dead", "{dead}");

    // Sweeping the events left their dedup keys alone (dedup_window is 1m): still duplicates.
    assert_eq!(
        post(&gw, "p", "d0"),
        ("duplicate".to_string(), delivered[0])
    );

    // Once the consumer acks the rest, they go too.
    let ack = gw.admin_post("/v1/consumers/puller/ack", &json!({ "seq": pulled[3] }));
    assert!(ack.status < 300, "ack: {} {}", ack.status, ack.text());
    wait_until(Duration::from_secs(10), "the unacked events swept", || {
        stored_seqs(&gw) == [poison].into()
    });

    // The dead event stays until it is replayed and delivered, then goes.
    fixed.store(true, Ordering::SeqCst);
    let replay = gw.admin_post("/v1/dead/replay", &json!({ "destination": "crm" }));
    assert!(replay.status < 300, "replay: {}", replay.text());
    wait_until(Duration::from_secs(10), "the replayed event swept", || {
        stored_seqs(&gw).is_empty()
    });
    // The counter moves just after the deletes are durable: wait for it, then check it exactly.
    wait_until(Duration::from_secs(5), "the swept counter", || {
        metric(&gw, "hookgate_events_swept_total") >= total as f64
    });
    assert_eq!(metric(&gw, "hookgate_events_swept_total"), total as f64);
}

#[test]
fn dedup_keys_expire_after_the_window() {
    // The shortest window the config accepts is a minute, so this test takes one.
    let gw = Gateway::builder()
        .config(&(ids_provider("p") + &store("1m")))
        .start();
    let sent_old = Instant::now();
    let (status, old_seq) = post(&gw, "p", "old");
    assert_eq!(status, "accepted");
    // With no output, the event itself goes after retention; its dedup key stays.
    wait_until(Duration::from_secs(10), "the event swept", || {
        gw.event(old_seq).is_none()
    });
    assert_eq!(post(&gw, "p", "old"), ("duplicate".to_string(), old_seq));

    std::thread::sleep(Duration::from_secs(20).saturating_sub(sent_old.elapsed()));
    let (status, recent_seq) = post(&gw, "p", "recent");
    assert_eq!(status, "accepted");

    wait_until(Duration::from_secs(60), "the old dedup key swept", || {
        metric(&gw, "hookgate_dedup_keys_swept_total") >= 1.0
    });
    assert!(sent_old.elapsed() >= Duration::from_secs(60));
    let (status, again) = post(&gw, "p", "old");
    assert_eq!(status, "accepted", "an expired key is accepted again");
    assert!(again > recent_seq);
    assert_eq!(
        post(&gw, "p", "recent"),
        ("duplicate".to_string(), recent_seq),
        "a key younger than the window is still a duplicate"
    );
    assert_eq!(metric(&gw, "hookgate_dedup_keys_swept_total"), 1.0);
}

#[test]
fn the_data_dir_stops_growing_under_steady_traffic() {
    // sled 0.34 gives a log segment back only once every page in it is dead, and a live dedup
    // key keeps its page (and with it the segment, full of swept events) alive: measured, the
    // data dir grows with everything received until the dedup window passes, then levels off.
    // So the steady-state size is about the traffic of max(retention, dedup_window), and this
    // test sends rounds for longer than the shortest window (1m), then checks that the size
    // stops growing: the last rounds may add at most a quarter (plus 4 MB of slack for the
    // segment being written and sled's metadata) to the size reached when the window passed,
    // while a store that reclaimed nothing would grow by the rounds' full 2 MB each.
    const PER_ROUND: usize = 1000;
    const THREADS: usize = 8;
    const ROUNDS_AFTER: usize = 6;
    let stub = Stub::start(|_| (200, "text/plain", Vec::new()));
    let config = ids_provider("p")
        + &destination(&stub.url)
        + "\n[[consumer]]\nname = \"puller\"\n"
        + &store("1m");
    let gw = Gateway::builder().config(&config).start();
    let pad = "x".repeat(2000);
    let start = Instant::now();
    let mut sizes = Vec::new();
    let mut at_window = None;
    for round in 0.. {
        let mut last_seq = 0;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let (api, pad) = (gw.api(), &pad);
                    s.spawn(move || {
                        let mut last = 0;
                        for n in (thread..PER_ROUND).step_by(THREADS) {
                            let body = format!(r#"{{"id":"r{round}-{n}","pad":"{pad}"}}"#);
                            let (status, seq) = api.post("p", &[], body.as_bytes()).ack();
                            assert_eq!(status, "accepted");
                            last = last.max(seq);
                        }
                        last
                    })
                })
                .collect();
            last_seq = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .max()
                .unwrap();
        });
        let ack = gw.admin_post("/v1/consumers/puller/ack", &json!({ "seq": last_seq }));
        assert!(ack.status < 300, "ack: {}", ack.text());
        let sent = ((round + 1) * PER_ROUND) as f64;
        wait_until(Duration::from_secs(60), "the round swept", || {
            metric(&gw, "hookgate_events_swept_total") >= sent
        });
        std::thread::sleep(Duration::from_millis(500)); // the gauge is set after each sweep
        sizes.push(metric(&gw, "hookgate_disk_bytes"));
        if at_window.is_none() && start.elapsed() > Duration::from_secs(65) {
            at_window = Some(round);
        }
        if at_window.is_some_and(|at| round >= at + ROUNDS_AFTER) {
            break;
        }
    }
    let at_window = at_window.unwrap();
    eprintln!("hookgate_disk_bytes after each round: {sizes:?}; the dedup window passed at round {at_window}");
    assert!(metric(&gw, "hookgate_dedup_keys_swept_total") > 0.0);
    let reached = sizes[at_window];
    let last = *sizes.last().unwrap();
    assert!(
        last <= reached * 1.25 + 4.0 * 1024.0 * 1024.0,
        "the data dir keeps growing: {sizes:?} bytes after each round (window at {at_window})"
    );
}

/// Stores `count` events of provider `p`, event `i` with `body(i)`, in the sled store under
/// `data_dir` (the gateway stopped), received now, with 256 commits in flight.
fn store_events(data_dir: &std::path::Path, count: u64, body: impl Fn(u64) -> Vec<u8>) {
    use hookgate::event::{EventId, ProviderName};
    use hookgate::store::{Committed, NewEvent, Store};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = hookgate::config::StoreConfig::default();
        let metrics = Arc::new(hookgate::metrics::Metrics::new());
        let store = Store::open(data_dir, &config, metrics).unwrap();
        let next = std::sync::atomic::AtomicU64::new(0);
        let worker = || async {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let event = NewEvent::poll(
                    ProviderName::parse("p").unwrap(),
                    EventId::new(format!("backlog-{i}")).unwrap(),
                    Some("application/json".into()),
                    body(i).into(),
                );
                let committed = store.commit(event, Duration::from_secs(30)).await.unwrap();
                assert!(matches!(committed, Committed::Accepted(_)), "{committed:?}");
            }
        };
        futures_util::future::join_all((0..256).map(|_| worker())).await;
        store.close().await;
    });
}

#[test]
fn a_backlog_larger_than_one_sweep_goes_without_waiting_for_the_next_interval() {
    // One sweep looks at 50,000 events at most; the next one is an hour away.
    const BACKLOG: u64 = 60_000;
    let config = ids_provider("p") + "\n[store]\nretention = \"1s\"\nsweep_interval = \"1h\"\n";
    let mut gw = Gateway::builder().config(&config).start();
    gw.kill();
    store_events(gw.data_dir(), BACKLOG, |i| body(&format!("backlog-{i}")));
    std::thread::sleep(Duration::from_millis(1100));
    // The first sweep runs at the start: it and the ones it calls for at once take everything.
    gw.restart();
    wait_until(Duration::from_secs(60), "the whole backlog swept", || {
        metric(&gw, "hookgate_events_swept_total") >= BACKLOG as f64
    });
    assert_eq!(metric(&gw, "hookgate_events_swept_total"), BACKLOG as f64);
    assert!(
        gw.all_events(None).is_empty(),
        "events left after the sweep"
    );
}

#[test]
fn the_sweeper_and_a_stop_do_not_wait_for_a_compactions_old_files() {
    // Every event has expired at the start: the first pass removes them all, and the compaction
    // after it leaves the old log (tens of MB of incompressible bodies), cut 8 MiB at a time
    // with 3 s between cuts here (a test hook; 50 ms by default).
    const STEP: u64 = 8 << 20;
    let config = ids_provider("p")
        + "\n[store]\nretention = \"1s\"\nsweep_interval = \"200ms\"\ncompact_ratio = 1.0\n\
           compact_min_mb = 0\n";
    let mut gw = Gateway::builder()
        .config(&config)
        .env("HOOKGATE_TEST_REMOVAL_REST_MS", "3000")
        .start();
    gw.kill();
    store_events(gw.data_dir(), 30_000, |i| {
        common::pseudo_random_bytes(1024, i)
    });
    let old_log = gw.data_dir().join("db");
    let old_size = std::fs::metadata(&old_log).unwrap().len();
    assert!(old_size > 4 * STEP, "an old log of {old_size} bytes");
    std::thread::sleep(Duration::from_millis(1100));
    gw.restart();
    wait_until(Duration::from_secs(60), "the store compacted", || {
        metric(&gw, "hookgate_store_compactions_total") >= 1.0
    });
    assert_eq!(metric(&gw, "hookgate_events_swept_total"), 30_000.0);
    // Out of the way before its removal began: `db` in the data dir means no copy is live.
    assert!(!old_log.exists());
    let old_log = gw.data_dir().join("db.old");

    // The sweeper goes on while the old log goes: a new event expires and is swept.
    let (_, seq) = post(&gw, "p", "after-the-compaction");
    wait_until(Duration::from_secs(20), "the new event swept", || {
        gw.event(seq).is_none()
    });
    assert!(
        old_log.exists(),
        "the sweeper waited for the old log to go:\n{}",
        gw.logs()
    );
    assert!(
        gw.logs()
            .contains("Removing old copies of the store, gradually, in the background."),
        "{}",
        gw.logs()
    );
    // Nor does a stop wait for it: the rest goes at the next open.
    let stopping = Instant::now();
    assert!(gw.terminate().success());
    let stopped_in = stopping.elapsed();
    let left = std::fs::metadata(&old_log).unwrap().len();
    assert!(
        stopped_in < Duration::from_secs(5),
        "the stop took {stopped_in:?}"
    );
    assert!(
        left < old_size && left > STEP,
        "{left} of {old_size} bytes left"
    );
    gw.restart();
    wait_until(Duration::from_secs(120), "the old log removed", || {
        !old_log.exists()
    });
    assert!(
        !gw.logs().contains("Cannot remove an old copy"),
        "{}",
        gw.logs()
    );
}

/// libfaketime (Debian's `faketime`, which `.ci/install-tools` installs), preloaded into the
/// gateway: its wall clock is the real one shifted by what `file` holds ("+0", "+2d"), read
/// again every second; its monotonic clock is left alone.
fn faked_wall_clock(file: &std::path::Path) -> Vec<(&'static str, String)> {
    const LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        std::path::Path::new(LIBRARY).exists(),
        "{LIBRARY} is missing: run .ci/install-tools (Debian's faketime)"
    );
    vec![
        ("LD_PRELOAD", LIBRARY.to_string()),
        ("FAKETIME_TIMESTAMP_FILE", file.display().to_string()),
        ("FAKETIME_CACHE_DURATION", "1".to_string()),
        ("DONT_FAKE_MONOTONIC", "1".to_string()),
    ]
}

/// A gateway whose wall clock is faked (libfaketime, read from the file returned), with an
/// hour's retention and dedup window, sweeping every 200 ms, no output.
fn gateway_on_a_faked_clock(dir: &std::path::Path) -> (Gateway, std::path::PathBuf) {
    let clock = dir.join("faketime");
    std::fs::write(&clock, "+0\n").unwrap();
    let store =
        "\n[store]\nretention = \"1h\"\ndedup_window = \"1h\"\nsweep_interval = \"200ms\"\n";
    let gw = faked_wall_clock(&clock)
        .into_iter()
        .fold(
            Gateway::builder().config(&(ids_provider("p") + store)),
            |builder, (name, value)| builder.env(name, value),
        )
        .start();
    (gw, clock)
}

/// Event `seq`'s time of arrival is the real time (within a minute), whatever the gateway's wall
/// clock says.
fn assert_received_now(gw: &Gateway, seq: u64) {
    let event = gw.event(seq).expect("the event");
    let received = event["received_at"].as_str().expect("received_at");
    let received = httpdate::parse_http_date(received)
        .ok()
        .or_else(|| humantime::parse_rfc3339(received).ok())
        .unwrap_or_else(|| panic!("received_at {received}"));
    let now = std::time::SystemTime::now();
    let off = now
        .duration_since(received)
        .unwrap_or_else(|err| err.duration());
    assert!(
        off < Duration::from_secs(60),
        "received_at {event} is {off:?} off"
    );
}

/// Sets the gateway's wall clock (faked through libfaketime, read from `clock`) `offset_s`
/// seconds off, and waits until its answers' Date header says so.
fn set_clock(gw: &Gateway, clock: &std::path::Path, offset_s: i64) {
    std::fs::write(clock, format!("{offset_s:+}\n")).unwrap();
    let unix = |time: std::time::SystemTime| {
        time.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    wait_until(Duration::from_secs(10), "the gateway's clock moved", || {
        let reply = gw.request("GET", "/healthz", b"");
        let date = reply
            .header("date")
            .and_then(|date| httpdate::parse_http_date(date).ok());
        date.is_some_and(|date| {
            (unix(date) - unix(std::time::SystemTime::now()) - offset_s).abs() < 60
        })
    });
}

/// The wall clock set back two hours while the gateway runs, then set right, with a one-hour
/// dedup window: an event received meanwhile is still a duplicate when sent again after several
/// sweeps (stamped two hours in the past, its key looked two hours old once the clock was set
/// right, and expired at once: the retry was stored and delivered again).
#[test]
fn a_clock_set_back_then_right_expires_no_dedup_key_early() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, clock) = gateway_on_a_faked_clock(dir.path());
    set_clock(&gw, &clock, -2 * 3600);
    let (status, seq) = post(&gw, "p", "while-set-back");
    assert_eq!(status, "accepted");
    assert_received_now(&gw, seq);
    set_clock(&gw, &clock, 0);
    // Sweeps every 200 ms meanwhile: fifteen of them.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        post(&gw, "p", "while-set-back"),
        ("duplicate".to_string(), seq),
        "a key seconds old, stamped two hours back"
    );
    assert!(gw.event(seq).is_some(), "the event was swept");
}

/// The wall clock set two days forward while the gateway runs, with a one-hour dedup window:
/// an event received a moment before is still a duplicate when sent again after several
/// sweeps (its key expires an hour after it arrived, by the time that really passed), and
/// still stored (retention of an hour too, and no output).
#[test]
fn a_clock_set_forward_expires_no_dedup_key_early() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, clock) = gateway_on_a_faked_clock(dir.path());
    let (status, seq) = post(&gw, "p", "before-the-jump");
    assert_eq!(status, "accepted");
    set_clock(&gw, &clock, 2 * 86_400);
    // An event arriving now is stamped now, not two days ahead (every sweep stopped at it).
    let (status, after) = post(&gw, "p", "after-the-jump");
    assert_eq!(status, "accepted");
    assert_received_now(&gw, after);
    // Sweeps every 200 ms meanwhile: fifteen of them.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(metric(&gw, "hookgate_dedup_keys_swept_total"), 0.0);
    assert_eq!(
        post(&gw, "p", "before-the-jump"),
        ("duplicate".to_string(), seq),
        "a key an hour's window old by the wall clock, seconds old in fact"
    );
    assert!(gw.event(seq).is_some(), "the event was swept");
}
