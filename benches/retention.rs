//! The retention benchmark (issue 10): after a retention run removes most of a large store, does
//! the data directory come back below 1.5 x what is still kept, and when? In one run, through
//! hookgate's library (no HTTP, no gateway process):
//!
//! 1. a store in a temporary directory (one provider, no destinations or consumers) filled with
//!    EVENTS 1 KiB events with random ids (see `common::store::fill`), the oldest 90 % received
//!    two days ago and the rest now; closed, checkpointed (`hookgate::store::checkpoint`) and
//!    opened again, each timed; its data directory against the payload (events x body bytes);
//! 2. `Store::sweep` with cutoffs one day back (events and dedup keys), called until it sweeps
//!    nothing: those 90 % go, and the store compacts itself after the pass (`[store]
//!    compact_ratio`, default). Timed, the compaction apart; then the data directory against
//!    the payload still kept;
//! 3. 200,000 new events committed (received now, so sweeping removes nothing new), the data
//!    directory measured after every 50,000, to see whether sled gives space back as it writes;
//!    then closed and checkpointed, and measured once more.
//!
//! Run: `cargo bench --bench retention` (args: `-- [EVENTS]`, default `10000000`).
//! The data directory's size is the sum of its files' sizes (`du -sb`); sled's own
//! `size_on_disk` is shown beside it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::load::{IdMode, BODY_BYTES};
use common::store;
use hookgate::store::{now_ms, Cutoffs, Store, Swept};

/// Events committed after the retention run, and how often the data directory is measured then.
const NEW_EVENTS: u64 = 200_000;
const MEASURE_EVERY: u64 = 50_000;
/// Commits in flight while filling.
const CONCURRENCY: usize = 4096;
const DAY_MS: u64 = 24 * 3600 * 1000;
/// The bound on the data directory, over the payload it holds.
const TARGET_RATIO: f64 = 1.5;

/// One measurement of the data directory.
struct Point {
    label: String,
    /// Events the store holds.
    kept: u64,
    dir_bytes: u64,
    /// What sled reports (`Store::size_on_disk`); `None` while the store is closed.
    sled_bytes: Option<u64>,
}

impl Point {
    fn ratio(&self) -> f64 {
        self.dir_bytes as f64 / (self.kept * BODY_BYTES as u64).max(1) as f64
    }
}

fn main() {
    let events: u64 = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    // The store's own log lines (checkpoints, the compaction's copy and pause) go to stderr.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .init();
    let runtime = common::runtime();
    let temp = tempfile::tempdir().expect("temp dir");
    let config_path = common::write_config(temp.path(), "");
    let data = temp.path().join("data");
    let old = events * 9 / 10;
    println!(
        "{} CPUs; load average at start {}; {events} events, {old} of them received two days ago.",
        common::cpus(),
        common::load_average()
    );
    let mut points = Vec::new();

    // 1. Fill, close, checkpoint, reopen.
    let started = Instant::now();
    runtime.block_on(async {
        let (config, store) = store::open(&config_path);
        let two_days_ago = now_ms() - 2 * DAY_MS;
        store::fill(
            &config,
            &store,
            0,
            old,
            CONCURRENCY,
            IdMode::Random,
            Some(two_days_ago),
        )
        .await;
        store::fill(
            &config,
            &store,
            old,
            events - old,
            CONCURRENCY,
            IdMode::Random,
            None,
        )
        .await;
        store.close().await;
    });
    let filled = started.elapsed();
    println!(
        "Filled in {:.1} s ({:.0}/s).",
        filled.as_secs_f64(),
        events as f64 / filled.as_secs_f64()
    );
    let checkpoint = store::checkpoint(&config_path);
    let opening = Instant::now();
    let (config, store) = store::open(&config_path);
    let reopen = opening.elapsed();
    println!(
        "Checkpoint {:.2} s; open after it {:.2} s.",
        checkpoint.as_secs_f64(),
        reopen.as_secs_f64()
    );
    points.push(measure(&runtime, &store, &data, "filled", events));

    // 2. Retention: the old 90 % go.
    let cutoff = now_ms() - DAY_MS;
    let cutoffs = Cutoffs {
        events_ms: cutoff,
        dedup_ms: cutoff,
    };
    let started = Instant::now();
    let (swept, compaction) = sweep_all(&runtime, &store, cutoffs);
    let sweep_took = started.elapsed();
    println!(
        "Swept {} events and {} dedup keys in {:.1} s ({:.0} events/s), of which the \
         compaction took {:.1} s and gave back {:.0} MiB.",
        swept.events,
        swept.dedup_keys,
        sweep_took.as_secs_f64(),
        swept.events as f64 / sweep_took.as_secs_f64(),
        compaction.as_secs_f64(),
        common::mib(swept.disk_freed)
    );
    if swept.events != old || swept.dedup_keys != old {
        println!("Note: {old} events and dedup keys were old enough to go.");
    }
    let mut kept = events - swept.events;
    points.push(measure(
        &runtime,
        &store,
        &data,
        "right after retention and compaction",
        kept,
    ));

    // 3. New events, and whether sled gives the space back.
    let mut next = events;
    while next < events + NEW_EVENTS {
        let count = MEASURE_EVERY.min(events + NEW_EVENTS - next);
        runtime.block_on(store::fill(
            &config,
            &store,
            next,
            count,
            CONCURRENCY,
            IdMode::Random,
            None,
        ));
        next += count;
        kept += count;
        let (again, _) = sweep_all(&runtime, &store, cutoffs);
        kept -= again.events;
        let label = format!("{} new events", next - events);
        points.push(measure(&runtime, &store, &data, &label, kept));
    }
    runtime.block_on(store.close());
    drop(store);
    store::checkpoint(&config_path);
    points.push(Point {
        label: "closed and checkpointed".into(),
        kept,
        dir_bytes: common::dir_bytes(&data),
        sled_bytes: None,
    });

    print_points(&points);
    print_targets(&points, sweep_took);
    println!("Load average at the end: {}.", common::load_average());
}

/// Sweeps until a sweep removes nothing and gives no disk back; returns the total, and how long
/// the sweeps that compacted took.
fn sweep_all(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    cutoffs: Cutoffs,
) -> (Swept, Duration) {
    let outputs = Arc::new(Vec::new());
    let mut total = Swept::default();
    let mut compacting = Duration::ZERO;
    let mut report = Instant::now() + Duration::from_secs(10);
    loop {
        let started = Instant::now();
        let swept = runtime
            .block_on(store.sweep(cutoffs, outputs.clone()))
            .expect("sweep");
        if swept == Swept::default() {
            return (total, compacting);
        }
        if swept.disk_freed > 0 {
            compacting += started.elapsed();
        }
        total.events += swept.events;
        total.dedup_keys += swept.dedup_keys;
        total.disk_freed += swept.disk_freed;
        if Instant::now() >= report {
            println!(
                "  ... swept {} events, {} dedup keys so far",
                total.events, total.dedup_keys
            );
            report += Duration::from_secs(10);
        }
    }
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    data: &std::path::Path,
    label: &str,
    kept: u64,
) -> Point {
    let sled_bytes = runtime
        .block_on(store.size_on_disk())
        .expect("size on disk");
    let point = Point {
        label: label.to_string(),
        kept,
        dir_bytes: common::dir_bytes(data),
        sled_bytes: Some(sled_bytes),
    };
    println!(
        "Data dir {}: {:.0} MiB for {kept} events, {:.2} x their payload.",
        point.label,
        common::mib(point.dir_bytes),
        point.ratio()
    );
    point
}

fn print_points(points: &[Point]) {
    println!("\n### Data directory, in the order measured\n");
    println!("| when | events kept | payload MiB | data dir MiB | sled size_on_disk MiB | data dir / payload |");
    println!("|---|---|---|---|---|---|");
    for point in points {
        println!(
            "| {} | {} | {:.0} | {:.0} | {} | {:.2} |",
            point.label,
            point.kept,
            common::mib(point.kept * BODY_BYTES as u64),
            common::mib(point.dir_bytes),
            point
                .sled_bytes
                .map_or_else(String::new, |b| format!("{:.0}", common::mib(b))),
            point.ratio()
        );
    }
}

fn print_targets(points: &[Point], sweep_took: Duration) {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let after_fill = &points[0];
    let after_sweep = &points[1];
    let first_met = points[1..].iter().find(|p| p.ratio() <= TARGET_RATIO);
    println!("\n### Targets (issue 10)\n");
    println!("| figure | target | measured | |");
    println!("|---|---|---|---|");
    println!(
        "| data dir over payload, {} events stored | ≤ {TARGET_RATIO} | {:.2} | {} |",
        after_fill.kept,
        after_fill.ratio(),
        verdict(after_fill.ratio() <= TARGET_RATIO)
    );
    println!(
        "| data dir over payload kept, right after retention and compaction ({:.1} s) | ≤ {TARGET_RATIO} | {:.2} | {} |",
        sweep_took.as_secs_f64(),
        after_sweep.ratio(),
        verdict(after_sweep.ratio() <= TARGET_RATIO)
    );
    println!(
        "| data dir over payload kept, first time below the target | ≤ {TARGET_RATIO} | {} | {} |",
        first_met.map_or_else(
            || format!("not within {NEW_EVENTS} new events"),
            |p| format!("{:.2}, {}", p.ratio(), p.label)
        ),
        verdict(first_met.is_some())
    );
}
