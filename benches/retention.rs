//! The retention benchmark (issue 10): after a retention run removes most of a large store, does
//! the data directory come back below 1.5 x what is still kept, and when? In one run, through
//! hookgate's library (no HTTP, no gateway process):
//!
//! 1. a store in a temporary directory (one provider, no destinations or consumers) filled with
//!    EVENTS 1 KiB events with random ids (see `common::store::fill`), the oldest 90 % received
//!    two days ago and the rest now; closed, checkpointed (`hookgate::store::checkpoint`) and
//!    opened again, each timed; its data directory against the payload (events x body bytes);
//! 2. with RATE > 0 only, a paced load of RATE new events a second (open loop, each commit timed
//!    from when it was due), first alone for 20 s, then beside step 3: the latency of its
//!    commits and the process's peak RSS alone, during the retention passes and during the
//!    compaction, to see what a compaction costs the gateway's acks (the disk figures are then
//!    those of a store that also takes the load);
//! 3. `Store::sweep` with cutoffs one day back (events and dedup keys), called until it sweeps
//!    nothing: those 90 % go, and the store compacts itself after the pass (`[store]
//!    compact_ratio`, default). Timed, the compaction apart; then, once the compaction's old
//!    files are gone (removed gradually in the background) and that is timed, the data
//!    directory against the payload still kept;
//! 4. 200,000 new events committed (received now, so sweeping removes nothing new), the data
//!    directory measured after every 50,000, to see whether sled gives space back as it writes;
//!    then closed and checkpointed, and measured once more.
//!
//! Run: `cargo bench --bench retention` (args: `-- [EVENTS] [RATE] [DESTINATIONS]`, default
//! `10000000 0 0`: no paced load; `-- 2000000 5000` and `-- 2000000 1000` gave the figures under
//! load in docs/performance.md). With DESTINATIONS > 0, the sweeps hold that many destinations
//! taking every event, each with its cursor past the filled events, so that the sweep reads each
//! expired event's marks for each of them, as a gateway's does.
//! The data directory's size is the sum of its files' sizes (`du -sb`); sled's own
//! `size_on_disk` is shown beside it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::load::{IdMode, BODY_BYTES};
use common::store;
use common::Figures;
use hookgate::event::Seq;
use hookgate::store::{now_ms, Change, Cutoffs, Output, Store, Swept};

/// Events committed after the retention run, and how often the data directory is measured then.
const NEW_EVENTS: u64 = 200_000;
const MEASURE_EVERY: u64 = 50_000;
/// Commits in flight while filling.
const CONCURRENCY: usize = 4096;
const DAY_MS: u64 = 24 * 3600 * 1000;
/// How long the paced load runs alone, before the retention run.
const PACED_ALONE: Duration = Duration::from_secs(20);
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
    let args = common::number_args();
    let events = args.first().copied().unwrap_or(10_000_000);
    let rate = args.get(1).copied().unwrap_or(0);
    let destinations = args.get(2).copied().unwrap_or(0);
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
        "{} CPUs; load average at start {}; {events} events, {old} of them received two days \
         ago; {destinations} destinations.",
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
        "Checkpoint {:.2} s ({:.2} s of it waiting for the filled store's lock); open after it \
         {:.2} s.",
        checkpoint.took.as_secs_f64(),
        checkpoint.lock_wait.as_secs_f64(),
        reopen.as_secs_f64()
    );
    points.push(measure(&runtime, &store, &data, "filled", events));

    // 2. A paced load, alone.
    let config = Arc::new(config);
    let mut next = events;
    let alone = (rate > 0).then(|| {
        let alone = Paced::start(&config, &store, next, rate);
        std::thread::sleep(PACED_ALONE);
        alone.stop()
    });
    next += alone.as_ref().map_or(0, Seen::sent);

    // 3. Retention: the old 90 % go, beside the same load.
    let cutoff = now_ms() - DAY_MS;
    let cutoffs = Cutoffs {
        events_ms: cutoff,
        dedup_ms: cutoff,
    };
    let beside = (rate > 0).then(|| Paced::start(&config, &store, next, rate));
    let outputs: Arc<Vec<Output>> = Arc::new(
        (0..destinations)
            .map(|n| Output::destination(format!("bench-{n}"), |_| true))
            .collect(),
    );
    for output in outputs.iter() {
        let cursor = vec![Change::Cursor(Seq(events))];
        runtime
            .block_on(store.change(&output.name, cursor))
            .expect("move a destination's cursor");
    }
    let started = Instant::now();
    let (swept, compaction, mut compacting) = sweep_all(&runtime, &store, cutoffs, &outputs);
    let sweep_took = started.elapsed();
    // The compaction's old files go in the background: the load runs on until they are gone.
    let removal = old_copies_removed(&data);
    if let Some((_, end)) = compacting.as_mut() {
        *end = Instant::now();
    }
    let beside = beside.map(Paced::stop);
    next += beside.as_ref().map_or(0, Seen::sent);
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
    println!(
        "The old files were gone {:.1} s after the pass.",
        removal.as_secs_f64()
    );
    if swept.events != old || swept.dedup_keys != old {
        println!("Note: {old} events and dedup keys were old enough to go.");
    }
    let accepted = |seen: &Option<Seen>| seen.as_ref().map_or(0, |seen| seen.samples.len() as u64);
    let mut kept = events - swept.events + accepted(&alone) + accepted(&beside);
    points.push(measure(
        &runtime,
        &store,
        &data,
        "right after retention and compaction",
        kept,
    ));

    // 4. New events, and whether sled gives the space back.
    let new_from = next;
    while next < new_from + NEW_EVENTS {
        let count = MEASURE_EVERY.min(new_from + NEW_EVENTS - next);
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
        let (again, _, _) = sweep_all(&runtime, &store, cutoffs, &outputs);
        kept -= again.events;
        let label = format!("{} new events", next - new_from);
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
    if let (Some(alone), Some(beside)) = (&alone, &beside) {
        print_load(rate, alone, beside, compacting);
    }
    println!("Load average at the end: {}.", common::load_average());
}

/// Sweeps until a sweep removes nothing and gives no disk back; returns the total, how long the
/// sweeps that compacted took, and when the last of them ran.
fn sweep_all(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    cutoffs: Cutoffs,
    outputs: &Arc<Vec<Output>>,
) -> (Swept, Duration, Option<(Instant, Instant)>) {
    let mut total = Swept::default();
    let mut compacting = Duration::ZERO;
    let mut window = None;
    let mut report = Instant::now() + Duration::from_secs(10);
    loop {
        let started = Instant::now();
        let swept = runtime
            .block_on(store.sweep(cutoffs, outputs.clone()))
            .expect("sweep");
        if swept == Swept::default() {
            return (total, compacting, window);
        }
        if swept.disk_freed > 0 {
            compacting += started.elapsed();
            window = Some((started, Instant::now()));
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

/// Waits until what a compaction left under `data` is removed (gradually, in the background:
/// `src/store/sled/old_copies.rs`); returns how long that took.
fn old_copies_removed(data: &std::path::Path) -> Duration {
    let started = Instant::now();
    let old_copies_left = || {
        let Ok(live) = std::fs::read_to_string(data.join("current")) else {
            return false;
        };
        std::fs::read_dir(data)
            .expect("the data dir")
            .flatten()
            .any(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name == "db"
                    || name == "db.old"
                    || (name.starts_with("sled.") && name != live.trim())
            })
    };
    while old_copies_left() {
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

/// A paced load (`common::store::paced`) on a thread of its own, and the peak RSS of this
/// process while it ran.
struct Paced {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<(Instant, u32)>, usize)>,
}

/// What a paced load saw.
struct Seen {
    samples: Vec<(Instant, u32)>,
    errors: usize,
    peak_rss_mib: f64,
}

impl Seen {
    /// The commits sent, answered or not (each used an id).
    fn sent(&self) -> u64 {
        (self.samples.len() + self.errors) as u64
    }
}

impl Paced {
    fn start(
        config: &Arc<hookgate::config::Config>,
        store: &Store,
        first: u64,
        rate: u64,
    ) -> Paced {
        reset_peak_rss();
        let stop = Arc::new(AtomicBool::new(false));
        let (config, store, stopped) = (config.clone(), store.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, store::paced(config, store, first, rate, stopped))
        });
        Paced { stop, thread }
    }

    fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let (samples, errors) = self.thread.join().expect("paced load");
        Seen {
            samples,
            errors,
            peak_rss_mib: peak_rss_mib(),
        }
    }
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS (Linux's `clear_refs`, value 5).
fn reset_peak_rss() {
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        println!("Note: cannot reset the peak RSS; the figures below include the fill's.");
    }
}

/// This process's peak RSS since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn print_load(rate: u64, alone: &Seen, beside: &Seen, compacting: Option<(Instant, Instant)>) {
    println!("\n### Commit latency under a paced load of {rate} events/s\n");
    println!("| while | commits | failed | p50 ms | p99 ms | p99.9 ms | max ms | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|");
    let row = |label: &str, samples: Vec<u32>, errors: usize, rss: Option<f64>| {
        let figures = Figures::new(samples, Duration::ZERO, errors);
        println!(
            "| {label} | {} | {errors} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            figures.count(),
            figures.ms(0.5),
            figures.ms(0.99),
            figures.ms(0.999),
            figures.ms(1.0),
            rss.map_or_else(|| "".to_string(), |mib| format!("{mib:.0}"))
        );
    };
    let all = |seen: &Seen| seen.samples.iter().map(|(_, us)| *us).collect::<Vec<_>>();
    row(
        "alone (20 s)",
        all(alone),
        alone.errors,
        Some(alone.peak_rss_mib),
    );
    row(
        "beside the retention run, all of it",
        all(beside),
        beside.errors,
        Some(beside.peak_rss_mib),
    );
    if let Some((from, to)) = compacting {
        let during = beside
            .samples
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, us)| *us)
            .collect();
        row(
            &format!(
                "beside the pass that compacted and the removal of the old files ({:.1} s)",
                (to - from).as_secs_f64()
            ),
            during,
            0,
            None,
        );
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
