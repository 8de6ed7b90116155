//! The forwarding benchmark (issue 4's throughput line): the release `hookgate` with one
//! provider and one destination, a fast downstream inside this process (actix-web, answers 200
//! at once, records each delivery's `hookgate-seq` and arrival `Instant`). Twice: `ordered`
//! (the default, one delivery in flight) and `ordered = false, max_in_flight = 32`.
//!
//! 1. Backlog drain: the destination is paused, a backlog is ingested over 64 connections, the
//!    destination is resumed, and the time until every event has arrived gives events/s.
//! 2. Live latency: with the destination running, events are sent at a steady rate; for each,
//!    ack -> delivery latency (the ack time is when the sender got its 200, the delivery time
//!    when the downstream got the POST; same process, same clock): p50, p99, p99.99.
//!
//! Both phases check that every acked event was delivered (at least once) and count duplicates.
//! Run: `cargo bench --bench forward` (args: `-- [BACKLOG] [RATE_PER_S] [LIVE_SECONDS]`, default
//! `100000 500 20`).

mod common;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::load::{self, Ack, IdMode, Pace, Run};
use common::servers::{self, Deliveries};
use common::{Gateway, SECRET_B64};

/// How long to wait for deliveries before declaring events lost.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(900);

struct Mode {
    label: &'static str,
    toml: &'static str,
}

const MODES: [Mode; 2] = [
    Mode {
        label: "ordered (default)",
        toml: "",
    },
    Mode {
        label: "ordered = false, max_in_flight = 32",
        toml: "ordered = false\nmax_in_flight = 32\n",
    },
];

/// One mode's figures.
struct Report {
    label: &'static str,
    backlog: usize,
    ingest_per_s: f64,
    drain: Duration,
    drain_duplicates: usize,
    live_events: usize,
    live_rate: f64,
    latency_ms: [f64; 3],
    /// Deliveries that reached the downstream before the sender had its 200.
    before_ack: usize,
    live_duplicates: usize,
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let backlog = args.first().copied().unwrap_or(100_000);
    let rate = args.get(1).copied().unwrap_or(500) as f64;
    let live = Duration::from_secs(args.get(2).copied().unwrap_or(20));
    let runtime = common::runtime();
    println!(
        "{} CPUs; load average at start {}",
        common::cpus(),
        common::load_average()
    );
    let reports: Vec<Report> = MODES
        .iter()
        .map(|mode| run_mode(&runtime, mode, backlog, rate, live))
        .collect();

    println!("\n### Backlog drain to a local downstream\n");
    println!("| mode | backlog | ingest acks/s | drain s | events/s | duplicates |");
    println!("|---|---|---|---|---|---|");
    for r in &reports {
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.0} | {} |",
            r.label,
            r.backlog,
            r.ingest_per_s,
            r.drain.as_secs_f64(),
            r.backlog as f64 / r.drain.as_secs_f64(),
            r.drain_duplicates
        );
    }
    println!("\n### Live ack -> delivery latency\n");
    println!("| mode | events | rate/s | p50 ms | p99 ms | p99.99 ms | delivered before the ack | duplicates |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &reports {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
            r.label,
            r.live_events,
            r.live_rate,
            r.latency_ms[0],
            r.latency_ms[1],
            r.latency_ms[2],
            r.before_ack,
            r.live_duplicates
        );
    }
    println!(
        "\nEvery acked event was delivered. Load average at the end: {}.",
        common::load_average()
    );
}

fn run_mode(
    runtime: &tokio::runtime::Runtime,
    mode: &Mode,
    backlog: u64,
    rate: f64,
    live: Duration,
) -> Report {
    let deliveries = Arc::new(Deliveries::default());
    let downstream = servers::downstream(common::cpus(), deliveries.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let destination = format!(
        "[[destination]]\nname = \"downstream\"\nurl = \"{}\"\nsigning_secret = \"whsec_{SECRET_B64}\"\n{}",
        downstream.url, mode.toml
    );
    let config = common::write_config(
        dir.path(),
        &format!("{}{destination}", common::NO_ADDRESS_LIMIT),
    );
    let gateway = Gateway::start(&config);
    let ids = Arc::new(AtomicU64::new(0));

    // 1. The backlog, then the drain.
    gateway.admin("POST", "/v1/destinations/downstream/pause");
    let ingest = runtime.block_on(load::run(&Run {
        url: gateway.url.clone(),
        connections: 64,
        duration: Duration::from_secs(3600),
        pace: Pace::Closed,
        ids: ids.clone(),
        last_id: backlog,
        id_mode: IdMode::from_env(),
    }));
    assert_eq!(ingest.errors, 0, "backlog ingest errors");
    let resumed = Instant::now();
    gateway.admin("POST", "/v1/destinations/downstream/resume");
    let arrivals = wait_for(&deliveries, &ingest.acks);
    let drain = arrivals
        .first
        .iter()
        .flatten()
        .max()
        .map_or(Duration::ZERO, |last| last.duration_since(resumed));

    // 2. Live: a steady rate with the destination running.
    let sent = runtime.block_on(load::run(&Run {
        url: gateway.url.clone(),
        connections: 8,
        duration: live,
        pace: Pace::Rate(rate),
        ids,
        last_id: u64::MAX,
        id_mode: IdMode::from_env(),
    }));
    let live_arrivals = wait_for(&deliveries, &sent.acks);
    let mut before_ack = 0;
    let mut latencies: Vec<u32> = sent
        .acks
        .iter()
        .map(|ack| {
            let delivered = live_arrivals.first[ack.seq as usize].expect("delivered");
            if delivered < ack.at {
                before_ack += 1;
            }
            u32::try_from(delivered.saturating_duration_since(ack.at).as_micros())
                .unwrap_or(u32::MAX)
        })
        .collect();
    latencies.sort_unstable();
    gateway.kill();
    runtime.block_on(downstream.stop());
    Report {
        label: mode.label,
        backlog: ingest.acks.len(),
        ingest_per_s: ingest.acks.len() as f64 / ingest.elapsed.as_secs_f64(),
        drain,
        drain_duplicates: arrivals.duplicates,
        live_events: sent.acks.len(),
        live_rate: sent.acks.len() as f64 / sent.elapsed.as_secs_f64(),
        latency_ms: [0.50, 0.99, 0.9999].map(|p| common::percentile_ms(&latencies, p)),
        before_ack,
        live_duplicates: live_arrivals.duplicates,
    }
}

/// Deliveries of one phase: the first arrival per seq, and how many arrived again.
struct Arrivals {
    first: Vec<Option<Instant>>,
    /// Second (or later) arrivals of an event, including late ones of an earlier phase.
    duplicates: usize,
}

/// Waits until every acked event has reached the downstream (panics after
/// `DELIVERY_TIMEOUT`), then takes the phase's deliveries out of `deliveries`.
fn wait_for(deliveries: &Deliveries, acks: &[Ack]) -> Arrivals {
    let started = Instant::now();
    let max_seq = acks.iter().map(|a| a.seq).max().unwrap_or(0) as usize;
    let mut acked = vec![false; max_seq + 1];
    for ack in acks {
        acked[ack.seq as usize] = true;
    }
    let mut first: Vec<Option<Instant>> = vec![None; max_seq + 1];
    let mut duplicates = 0;
    let mut missing = acks.len();
    let mut record = |seq: u64, at: Instant, missing: &mut usize| {
        let index = seq as usize;
        match first.get_mut(index) {
            Some(slot @ None) if acked[index] => {
                *slot = Some(at);
                *missing -= 1;
            }
            Some(Some(_)) => duplicates += 1,
            // An earlier phase's event delivered again, or an event this phase never got an
            // ack for: either way not a first delivery of this phase's events.
            _ => duplicates += 1,
        }
    };
    while missing > 0 {
        assert!(
            started.elapsed() < DELIVERY_TIMEOUT,
            "{missing} acked events not delivered within {DELIVERY_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
        for (seq, at) in deliveries.take() {
            record(seq, at, &mut missing);
        }
    }
    // Late duplicates of this phase (a retry in flight) would show up here.
    std::thread::sleep(Duration::from_millis(300));
    for (seq, at) in deliveries.take() {
        record(seq, at, &mut missing);
    }
    Arrivals { first, duplicates }
}
