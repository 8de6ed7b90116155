//! The ingest benchmark (issues 6 and 10), in one run:
//!
//! 1. closed-loop runs at 1, 16, 64 and 256 keep-alive connections, each against a no-storage
//!    baseline (an actix-web server in this process, as many workers as hookgate's, that reads
//!    the body and answers 200) and then against the release `hookgate` on an empty temporary
//!    data directory: acks/s, p50/p99/p99.9 ack latency, fsyncs per ack, mean commit batch, the
//!    committer's apply and sync times, peak RSS (`VmHWM`), CPU per ack, and that CPU and the
//!    context switches per ack by thread (HTTP workers, committer, sled's io threads, log
//!    writer, the rest; from `/proc/<pid>/task`), and the commits slower than the paced p99
//!    target with the median of each part of those logged (`[store] slow_commit`);
//! 2. the 64-connection pair twice more, alternating, so the throughput ratio and the CPU per ack
//!    are the medians of three runs made side by side;
//! 3. three open-loop runs at half the highest acks/s (64 connections), each after a baseline run
//!    at the same rate, for the p99 (the median of the three is reported);
//! 4. two 64-connection runs, each on a fresh empty store, one with sequential event ids and one
//!    with random ones (see `load::IdMode`): the ratio of hookgate's CPU per ack;
//! 5. a second store filled in-process with 10,000,000 events with random ids (see
//!    `common::store::preload`), closed, then checkpointed (`hookgate::store::checkpoint`, timed);
//!    its data directory's size against the payload (events x body bytes); gateways started on
//!    it and stopped cleanly (SIGTERM), each start timed from spawn to the `hookgate listening`
//!    line: the first after the pre-load, a restart (the page cache as the last one left it)
//!    and, when the bench runs as root, a start after dropping the page cache (as after a
//!    reboot); then three 64-connection runs on it, each next to one against a gateway on a
//!    fresh, empty store (the ratio is the median of the three); peak RSS at that store size;
//! 6. every gateway killed (SIGKILL); the full store's gateway started again and timed the same
//!    way (start-up after a crash), then killed; every store read back: every acked (and
//!    pre-loaded) event must be there, else the bench fails.
//!
//! Run: `cargo bench --bench ingest` (args: `-- [SECONDS_PER_RUN] [STORED_EVENTS]`, default
//! `10 10000000`; `HOOKGATE_BENCH_DATA=DIR` keeps the first gateway's config and store in DIR,
//! and the pre-loaded one's in DIR/pre-loaded;
//! `HOOKGATE_BENCH_IDS=random` scatters the event ids of every run except step 4's, which sets its
//! own; the pre-loaded store always has random ids).
//! The load generator is async (tokio, 2 threads) and shares the machine's cores with the server
//! under test, as the baseline does.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::load::{self, IdMode, Pace, Run};
use common::{servers, store, Figures, Gateway};

const CONNECTIONS: [usize; 4] = [1, 16, 64, 256];
/// Runs behind each target read from a pair of runs: the median of this many is reported.
const ROUNDS: usize = 3;
/// Issue 10's bound on the p99 ack latency at half the maximum throughput.
const PACED_P99_TARGET_MS: f64 = 5.0;

/// One run's figures. `gateway` is `None` for the baseline.
struct Row {
    label: String,
    figures: Figures,
    gateway: Option<GatewayFigures>,
    /// This process's CPU per request: the load generator's, plus the baseline server's in a
    /// baseline run.
    bench_cpu_us: f64,
}

/// What hookgate's counters and `/proc` say about one run.
struct GatewayFigures {
    fsyncs_per_ack: f64,
    mean_batch: f64,
    /// Mean time of the committer's stages: one sled transaction, one group sync.
    apply_ms: f64,
    sync_ms: f64,
    /// The bucket bound of the 99th percentile group sync (the histogram's buckets double).
    sync_p99_ms: f64,
    /// Mean wait from handing the event to the store to its durable answer, inside hookgate,
    /// and the bucket bound of its 99th percentile.
    commit_wait_ms: f64,
    commit_wait_p99_ms: f64,
    /// sled checkpoints during the run, and the mean time one kept sled closed: new events are
    /// acknowledged from the checkpoint journal meanwhile (`[store] checkpoint_mb`).
    checkpoints: f64,
    checkpoint_ms: f64,
    peak_rss_mib: f64,
    cpu_us_per_ack: f64,
    /// `cpu_us_per_ack` by [`common::THREAD_GROUPS`], then the rest of the process.
    cpu_us_by_thread: [f64; common::THREAD_GROUPS.len() + 1],
    /// Context switches per ack by [`common::THREAD_GROUPS`]: mostly wake-ups.
    switches_by_thread: [f64; common::THREAD_GROUPS.len()],
    /// Commits over the paced p99 target ([`config_extra`]), and the lines logged of them
    /// (one a second at most).
    slow_commits: f64,
    commits: f64,
    slow_logged: Vec<common::SlowCommit>,
}

/// A hookgate under test, and the ids it acked.
struct Target {
    gateway: Gateway,
    config: std::path::PathBuf,
    acked: Vec<u64>,
}

struct Bench {
    runtime: tokio::runtime::Runtime,
    duration: Duration,
    ids: Arc<AtomicU64>,
    /// How the next run's ids become event ids.
    id_mode: IdMode,
    rows: Vec<Row>,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let target_stored: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let runtime = common::runtime();
    println!(
        "{} CPUs; load average at start {}; {seconds} s per run; {} event ids (random in the \
         pre-loaded store)",
        common::cpus(),
        common::load_average(),
        IdMode::from_env().name(),
    );
    let mut bench = Bench {
        runtime,
        duration: Duration::from_secs(seconds),
        ids: Arc::new(AtomicU64::new(0)),
        id_mode: IdMode::from_env(),
        rows: Vec::new(),
    };

    let baseline = servers::baseline(common::cpus());
    // HOOKGATE_BENCH_DATA=DIR keeps the configs and stores there after the run, to inspect them:
    // the first gateway's in DIR, the pre-loaded one's in DIR/pre-loaded.
    let temp = tempfile::tempdir().expect("temp dir");
    let kept = std::env::var_os("HOOKGATE_BENCH_DATA").map(std::path::PathBuf::from);
    if let Some(kept) = &kept {
        std::fs::create_dir_all(kept).expect("create HOOKGATE_BENCH_DATA");
    }
    let mut empty = Target::start(kept.as_deref().unwrap_or(temp.path()));
    let empty_startup = empty.gateway.startup;

    // 1. Closed loop, each connection count against the baseline, then hookgate.
    let mut ratios_64 = Vec::new();
    let mut cpus_64 = Vec::new();
    let mut fsyncs_64 = f64::NAN;
    let mut best: f64 = 0.0;
    for &connections in &CONNECTIONS {
        let (base, ours) = bench.pair(&baseline.url, &mut empty, connections, Pace::Closed, "");
        best = best.max(ours);
        if connections == 64 {
            ratios_64.push(ours / base);
            let gateway = bench.rows.last().and_then(|r| r.gateway.as_ref());
            fsyncs_64 = gateway.map_or(f64::NAN, |g| g.fsyncs_per_ack);
            cpus_64.push(gateway.map_or(f64::NAN, |g| g.cpu_us_per_ack));
        }
    }
    // 2. The 64-connection pair again.
    for round in 2..=ROUNDS {
        let note = format!(" (round {round})");
        let (base, ours) = bench.pair(&baseline.url, &mut empty, 64, Pace::Closed, &note);
        ratios_64.push(ours / base);
        cpus_64.push(bench.last_cpu_us_per_ack());
    }

    // 3. Half the highest throughput, paced.
    let half = best / 2.0;
    let mut p99s_half = Vec::new();
    for round in 1..=ROUNDS {
        let note = format!(", paced at {half:.0}/s (round {round})");
        bench.pair(&baseline.url, &mut empty, 64, Pace::Rate(half), &note);
        let row = bench.rows.last().expect("a paced row");
        p99s_half.push(row.figures.ms(0.99));
    }
    bench.runtime.block_on(baseline.stop());
    let Target {
        gateway,
        config,
        acked,
    } = empty;
    gateway.kill();
    let mut checked = vec![("first".to_string(), config, acked)];

    // 4. Sequential against random ids, each on a fresh empty store.
    let mut id_dirs = Vec::new();
    let mut cpu_by_mode = Vec::new();
    for mode in [IdMode::Sequential, IdMode::Random] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut target = Target::start(dir.path());
        bench.id_mode = mode;
        let label = format!("64, fresh empty store, {} ids", mode.name());
        bench.measure(&mut target, 64, Pace::Closed, label);
        cpu_by_mode.push(bench.last_cpu_us_per_ack());
        target.gateway.kill();
        checked.push((format!("{} ids", mode.name()), target.config, target.acked));
        id_dirs.push(dir);
    }
    bench.id_mode = IdMode::from_env();

    // 5. A store with `target_stored` events, next to a fresh empty one.
    let full_temp = tempfile::tempdir().expect("temp dir");
    let full_dir = match &kept {
        Some(kept) => kept.join("pre-loaded"),
        None => full_temp.path().to_path_buf(),
    };
    std::fs::create_dir_all(&full_dir).expect("create the pre-loaded store's dir");
    let full_config = common::write_config(&full_dir, &config_extra());
    let full_data = full_dir.join("data");
    let first = bench.ids.fetch_add(target_stored, Ordering::SeqCst);
    let preloaded = bench.runtime.block_on(store::preload(
        &full_config,
        first,
        target_stored,
        4096,
        IdMode::Random,
    ));
    let took = preloaded.took;
    println!(
        "Pre-loaded {target_stored} events (random ids) in-process in {:.1} s ({:.0}/s), \
         checkpointed {} times while filling.",
        took.as_secs_f64(),
        target_stored as f64 / took.as_secs_f64(),
        preloaded.checkpoints
    );
    let checkpoint = store::checkpoint(&full_config);
    let payload = target_stored * load::BODY_BYTES as u64;
    let data_bytes = common::dir_bytes(&full_data);
    let data_ratio = data_bytes as f64 / payload.max(1) as f64;
    println!(
        "Checkpoint: {:.2} s ({:.2} s of it waiting for the pre-load's store to let go of its \
         lock). Data dir: {data_bytes} bytes ({:.0} MiB), {data_ratio:.2} x the payload \
         ({payload} bytes).",
        checkpoint.took.as_secs_f64(),
        checkpoint.lock_wait.as_secs_f64(),
        common::mib(data_bytes),
    );
    // Starts after clean stops (SIGTERM, which checkpoints): the first after the pre-load, whose
    // page cache is whatever the pre-load and the checkpoint left; a restart, with the pages the
    // last gateway read still cached (a restart of the service); and, when this process may drop
    // the page cache (root), a start after dropping it (a reboot).
    let start_and_stop = || {
        let gateway = Gateway::start(&full_config);
        let startup = gateway.startup;
        gateway.stop();
        startup
    };
    let first_startup = start_and_stop();
    let warm_startup = start_and_stop();
    let cold_startup = common::drop_page_cache().then(start_and_stop);
    let mut full = Target {
        gateway: Gateway::start(&full_config),
        config: full_config,
        acked: (first..first + target_stored).collect(),
    };
    let fresh_dir = tempfile::tempdir().expect("temp dir");
    let mut fresh = Target::start(fresh_dir.path());
    let mut full_ratios = Vec::new();
    let peak_rss = |rows: &[Row]| {
        rows.iter()
            .filter_map(|r| r.gateway.as_ref().map(|g| g.peak_rss_mib))
            .fold(0.0, f64::max)
    };
    // Peak RSS at the store size: every run up to the big store's first round (which
    // ends with `target_stored` plus that round's acks); later rounds hold more events.
    let mut rss_at_target = (0.0, 0);
    for round in 1..=ROUNDS {
        let label = format!("64, {target_stored} stored (round {round})");
        let ours = bench.measure(&mut full, 64, Pace::Closed, label);
        if round == 1 {
            let stored = target_stored + full.gateway.metrics().stored as u64;
            rss_at_target = (peak_rss(&bench.rows), stored);
        }
        let label = format!("64, fresh empty store (round {round})");
        let empty = bench.measure(&mut fresh, 64, Pace::Closed, label);
        full_ratios.push(ours / empty);
    }
    let peak_rss_mib = peak_rss(&bench.rows);
    let stored_at_end = target_stored + full.gateway.metrics().stored as u64;

    // 6. A restart after a crash, then every acked (and pre-loaded) event is in its store.
    full.gateway.kill();
    let restarted = Gateway::start(&full.config);
    let crash_startup = restarted.startup;
    restarted.kill();
    fresh.gateway.kill();
    checked.push(("pre-loaded".to_string(), full.config, full.acked));
    checked.push(("fresh".to_string(), fresh.config, fresh.acked));
    let checks: Vec<(store::Check, usize)> = checked
        .iter()
        .map(|(_, config, acked)| {
            let check = bench.runtime.block_on(store::check(config, acked));
            (check, acked.len())
        })
        .collect();

    print_rows(&bench.rows);
    print_targets(&Targets {
        ratios_64,
        cpus_64,
        p99s_half,
        half,
        fsyncs_64,
        cpu_by_mode,
        rss_at_target,
        peak_rss_mib,
        stored_at_end,
        target_stored,
        data_ratio,
        full_ratios,
        warm_startup,
        cold_startup,
        crash_startup,
    });
    let ms = |took: Duration| format!("{:.0} ms", took.as_secs_f64() * 1000.0);
    println!(
        "\nStart-up: {} on an empty store; with {target_stored} events stored, after a clean \
         shutdown: {} the first time after the pre-load and its checkpoint, {} restarted, {} \
         with the page cache dropped; {} after SIGKILL.",
        ms(empty_startup),
        ms(first_startup),
        ms(warm_startup),
        cold_startup.map_or("not measured (not root)".to_string(), ms),
        ms(crash_startup),
    );
    let mut lost = false;
    for ((check, acked), (name, _, _)) in checks.iter().zip(&checked) {
        println!(
            "Store check, {name} store ({:.1} s): {acked} acked, {} stored, {} missing, {} stored twice.",
            check.took.as_secs_f64(),
            check.stored,
            check.missing.len(),
            check.duplicates
        );
        if !check.missing.is_empty() {
            eprintln!(
                "FAILED: acked events missing from the {name} store, e.g. {:?}",
                &check.missing[..check.missing.len().min(10)]
            );
            lost = true;
        }
    }
    println!("Load average at the end: {}.", common::load_average());
    if lost {
        std::process::exit(1);
    }
}

/// Every gateway's settings beyond the defaults: no rate limit, and the slow-commit log line
/// (`[store] slow_commit`) for every commit whose oldest request waited longer than the paced
/// p99 target, so that the output tells which part of such commits was slow.
fn config_extra() -> String {
    format!(
        "{}[store]\nslow_commit = \"{}us\"\n",
        common::NO_ADDRESS_LIMIT,
        PACED_P99_TARGET_MS * 1000.0
    )
}

impl Target {
    /// A gateway on a new config and empty store under `dir`.
    fn start(dir: &std::path::Path) -> Target {
        let config = common::write_config(dir, &config_extra());
        Target {
            gateway: Gateway::start(&config),
            config,
            acked: Vec::new(),
        }
    }
}

impl Bench {
    fn run(&self, url: &str, connections: usize, pace: Pace) -> Run {
        Run {
            url: url.to_string(),
            connections,
            duration: self.duration,
            pace,
            ids: self.ids.clone(),
            last_id: u64::MAX,
            id_mode: self.id_mode,
        }
    }

    /// Hookgate's CPU per ack in the last run (NaN after a baseline run).
    fn last_cpu_us_per_ack(&self) -> f64 {
        self.rows
            .last()
            .and_then(|r| r.gateway.as_ref())
            .map_or(f64::NAN, |g| g.cpu_us_per_ack)
    }

    /// The baseline, then hookgate, under the same load; returns both throughputs.
    fn pair(
        &mut self,
        baseline: &str,
        target: &mut Target,
        connections: usize,
        pace: Pace,
        note: &str,
    ) -> (f64, f64) {
        let base = self.baseline(baseline, connections, pace, format!("{connections}{note}"));
        let ours = self.measure(target, connections, pace, format!("{connections}{note}"));
        (base, ours)
    }

    /// A run against the baseline; returns its requests per second.
    fn baseline(&mut self, url: &str, connections: usize, pace: Pace, label: String) -> f64 {
        let run = self.run(url, connections, pace);
        let cpu_before = own_cpu_seconds();
        let figures = self.runtime.block_on(load::run(&run)).figures();
        let bench_cpu_us = (own_cpu_seconds() - cpu_before) * 1e6 / figures.count().max(1) as f64;
        let per_second = figures.per_second();
        self.rows.push(Row {
            label,
            figures,
            gateway: None,
            bench_cpu_us,
        });
        per_second
    }

    /// A run against `target`, reading its counters around it; returns its acks per second.
    fn measure(
        &mut self,
        target: &mut Target,
        connections: usize,
        pace: Pace,
        label: String,
    ) -> f64 {
        // Progress, and a mark a profiler can wait for (`benches/profile.sh`).
        eprintln!("Measuring hookgate: {label}.");
        let gateway = &target.gateway;
        let run = self.run(&gateway.url, connections, pace);
        let before = gateway.metrics();
        let (cpu_before, client_before) = (gateway.cpu_seconds(), own_cpu_seconds());
        let threads_before = gateway.threads_use();
        gateway.take_slow_commits();
        let outcome = self.runtime.block_on(load::run(&run));
        let (cpu, client) = (
            gateway.cpu_seconds() - cpu_before,
            own_cpu_seconds() - client_before,
        );
        let threads_after = gateway.threads_use();
        let after = gateway.metrics();
        target.acked.extend(outcome.acks.iter().map(|a| a.id));
        let acks = outcome.acks.len().max(1) as f64;
        let mean_ms = |sum: f64, count: f64| sum * 1e3 / count.max(1.0);
        let figures = outcome.figures();
        let per_second = figures.per_second();
        self.rows.push(Row {
            label,
            figures,
            gateway: Some(GatewayFigures {
                fsyncs_per_ack: (after.fsyncs - before.fsyncs) / acks,
                mean_batch: acks / (after.commits - before.commits).max(1.0),
                apply_ms: mean_ms(
                    after.apply_seconds - before.apply_seconds,
                    after.applies - before.applies,
                ),
                sync_ms: mean_ms(
                    after.sync_seconds - before.sync_seconds,
                    after.syncs - before.syncs,
                ),
                sync_p99_ms: after.quantile_ms(&before, "hookgate_commit_sync_seconds", 0.99),
                commit_wait_p99_ms: after.quantile_ms(
                    &before,
                    "hookgate_ack_latency_seconds",
                    0.99,
                ),
                commit_wait_ms: mean_ms(
                    after.ack_seconds - before.ack_seconds,
                    after.acks - before.acks,
                ),
                checkpoints: after.checkpoints - before.checkpoints,
                checkpoint_ms: mean_ms(
                    after.checkpoint_seconds - before.checkpoint_seconds,
                    after.checkpoints - before.checkpoints,
                ),
                peak_rss_mib: gateway.peak_rss_mib(),
                cpu_us_per_ack: cpu * 1e6 / acks,
                cpu_us_by_thread: per_thread_us(cpu, &threads_before, &threads_after, acks),
                switches_by_thread: std::array::from_fn(|group| {
                    (threads_after.switches[group] - threads_before.switches[group]) / acks
                }),
                slow_commits: after.commits_slow - before.commits_slow,
                commits: after.commits - before.commits,
                slow_logged: gateway.take_slow_commits(),
            }),
            bench_cpu_us: client * 1e6 / acks,
        });
        per_second
    }
}

/// A run's CPU per ack by thread group, and what the groups leave of the process's `cpu`.
fn per_thread_us(
    cpu: f64,
    before: &common::ThreadsUse,
    after: &common::ThreadsUse,
    acks: f64,
) -> [f64; common::THREAD_GROUPS.len() + 1] {
    let mut us = [0.0; common::THREAD_GROUPS.len() + 1];
    for (group, (a, b)) in after
        .cpu_seconds
        .iter()
        .zip(&before.cpu_seconds)
        .enumerate()
    {
        us[group] = (a - b) * 1e6 / acks;
    }
    let named: f64 = us.iter().sum();
    us[common::THREAD_GROUPS.len()] = cpu * 1e6 / acks - named;
    us
}

/// This process's CPU time: the load generator's (and, in the baseline runs, the baseline
/// server's).
fn own_cpu_seconds() -> f64 {
    common::process_cpu_seconds(std::process::id())
}

fn print_rows(rows: &[Row]) {
    println!("\n### Runs, in the order they were made\n");
    println!(
        "| server | connections | req/s | p50 ms | p99 ms | p99.9 ms | fsyncs/ack | mean batch | apply ms | sync ms | sync p99 ≤ ms | commit wait ms | commit wait p99 ≤ ms | checkpoints (mean closed) | peak RSS MiB | hookgate CPU µs/ack | bench CPU µs/req | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let gateway = row.gateway.as_ref().map_or_else(
            || "| | | | | | | | | | ".to_string(),
            |g| {
                let checkpoints = if g.checkpoints > 0.0 {
                    format!("{:.0} ({:.0} ms)", g.checkpoints, g.checkpoint_ms)
                } else {
                    "0".to_string()
                };
                format!(
                    "| {:.3} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {checkpoints} | {:.0} | {:.0} ",
                    g.fsyncs_per_ack,
                    g.mean_batch,
                    g.apply_ms,
                    g.sync_ms,
                    g.sync_p99_ms,
                    g.commit_wait_ms,
                    g.commit_wait_p99_ms,
                    g.peak_rss_mib,
                    g.cpu_us_per_ack
                )
            },
        );
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} {gateway}| {:.0} | {} |",
            if row.gateway.is_some() {
                "hookgate"
            } else {
                "baseline"
            },
            row.label,
            row.figures.per_second(),
            row.figures.ms(0.50),
            row.figures.ms(0.99),
            row.figures.ms(0.999),
            row.bench_cpu_us,
            row.figures.errors
        );
    }
    print_by_thread(rows, "CPU µs per ack", Some("other"), |g| {
        g.cpu_us_by_thread
            .iter()
            .map(|us| format!("{us:.1}"))
            .collect()
    });
    print_by_thread(rows, "context switches per ack", None, |g| {
        g.switches_by_thread
            .iter()
            .map(|switches| format!("{switches:.2}"))
            .collect()
    });
    print_slow_commits(rows);
}

/// The parts of a slow commit, as its log line names them (`store/sled/slow_commit.rs`).
const SLOW_PARTS: [&str; 9] = [
    "total",
    "waited",
    "behind",
    "gather",
    "apply",
    "flush",
    "fdatasync",
    "answer",
    "requests",
];

/// The commits slower than the paced p99 target in each run, and the median of each part of
/// those logged.
fn print_slow_commits(rows: &[Row]) {
    println!(
        "\n### Commits over {PACED_P99_TARGET_MS} ms (the paced p99 target), in the same runs\n\n\
         Each gateway logs at most one a second, with the time of each part (`[store] \
         slow_commit`, docs/store.md); the medians of those logged, in ms (`requests`: the \
         batch's).\n"
    );
    println!(
        "| connections | slow commits | of all commits | logged | {} |",
        SLOW_PARTS.join(" | ")
    );
    println!("|---|---|---|---|{}", "---|".repeat(SLOW_PARTS.len()));
    for row in rows {
        let Some(g) = &row.gateway else { continue };
        let medians = SLOW_PARTS.map(|part| {
            let key = if part == "requests" {
                part.to_string()
            } else {
                format!("{part}_ms")
            };
            let values: Vec<f64> = g
                .slow_logged
                .iter()
                .filter_map(|l| l.get(&key))
                .copied()
                .collect();
            if values.is_empty() {
                String::new()
            } else {
                format!("{:.2}", median(&values, 2).0)
            }
        });
        println!(
            "| {} | {:.0} | {:.2} % | {} | {} |",
            row.label,
            g.slow_commits,
            g.slow_commits * 100.0 / g.commits.max(1.0),
            g.slow_logged.len(),
            medians.join(" | ")
        );
    }
}

/// One table of the gateway's runs by [`common::THREAD_GROUPS`] (and a last column, if named).
fn print_by_thread(
    rows: &[Row],
    what: &str,
    last: Option<&str>,
    cells: impl Fn(&GatewayFigures) -> Vec<String>,
) {
    println!("\n### hookgate's {what}, by thread, in the same runs\n");
    let mut columns: Vec<&str> = common::THREAD_GROUPS
        .iter()
        .map(|(_, name)| *name)
        .collect();
    columns.extend(last);
    println!("| connections | {} |", columns.join(" | "));
    println!("|---|{}", "---|".repeat(columns.len()));
    for row in rows {
        if let Some(g) = &row.gateway {
            println!("| {} | {} |", row.label, cells(g).join(" | "));
        }
    }
}

/// The issues' figures, measured.
struct Targets {
    ratios_64: Vec<f64>,
    /// Hookgate's CPU per ack in each 64-connection closed-loop run of steps 1 and 2.
    cpus_64: Vec<f64>,
    p99s_half: Vec<f64>,
    half: f64,
    fsyncs_64: f64,
    /// Hookgate's CPU per ack with sequential, then random ids.
    cpu_by_mode: Vec<f64>,
    /// The highest peak RSS up to the big store's first round, and the events it then held.
    rss_at_target: (f64, u64),
    /// The highest of every run, and the events the big store held at the end.
    peak_rss_mib: f64,
    stored_at_end: u64,
    target_stored: u64,
    /// The pre-loaded store's data directory over its payload bytes.
    data_ratio: f64,
    full_ratios: Vec<f64>,
    /// Start-up on the pre-loaded store after a clean shutdown, with the page cache as the last
    /// gateway left it and (when measured) dropped; and after SIGKILL.
    warm_startup: Duration,
    cold_startup: Option<Duration>,
    crash_startup: Duration,
}

/// The median, and every value in the order measured.
fn median(values: &[f64], digits: usize) -> (f64, String) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let all: Vec<String> = values.iter().map(|v| format!("{v:.digits$}")).collect();
    (
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN),
        all.join(", "),
    )
}

fn print_targets(t: &Targets) {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let (ratio_64, ratios_64) = median(&t.ratios_64, 2);
    let (cpu_64, cpus_64) = median(&t.cpus_64, 1);
    let (p99_half, p99s_half) = median(&t.p99s_half, 2);
    let (full_ratio, full_ratios) = median(&t.full_ratios, 2);
    let (sequential, random) = (t.cpu_by_mode[0], t.cpu_by_mode[1]);
    let stored = t.target_stored;
    let second = Duration::from_secs(1);
    println!("\n### Targets (issue 10)\n");
    println!("| figure | target | measured (median) | each run | |");
    println!("|---|---|---|---|---|");
    let mut rows = vec![
        (
            "acks/s at 64 connections, as a ratio of the no-storage baseline".to_string(),
            "≥ 0.5",
            format!("{ratio_64:.2}"),
            ratios_64,
            ratio_64 >= 0.5,
        ),
        (
            "hookgate CPU per ack at 64 connections".to_string(),
            "≤ 30 µs",
            format!("{cpu_64:.1} µs"),
            cpus_64,
            cpu_64 <= 30.0,
        ),
        (
            format!(
                "p99 ack latency at half the maximum throughput ({:.0}/s)",
                t.half
            ),
            "≤ 5 ms",
            format!("{p99_half:.2} ms"),
            p99s_half,
            p99_half <= PACED_P99_TARGET_MS,
        ),
        (
            "fsyncs per ack at 64 connections (issue 6)".to_string(),
            "≤ 0.1",
            format!("{:.3}", t.fsyncs_64),
            String::new(),
            t.fsyncs_64 <= 0.1,
        ),
        (
            "hookgate CPU per ack, random over sequential ids (64 connections, empty store)"
                .to_string(),
            "≤ 1.2",
            format!("{:.2}", random / sequential),
            format!("{sequential:.1} µs sequential, {random:.1} µs random"),
            random / sequential <= 1.2,
        ),
        (
            format!(
                "peak RSS under load, up to {stored} stored ({} at the end of that run)",
                t.rss_at_target.1
            ),
            "≤ 200 MiB",
            format!("{:.0} MiB", t.rss_at_target.0),
            format!(
                "{:.0} MiB after every run ({} stored)",
                t.peak_rss_mib, t.stored_at_end
            ),
            t.rss_at_target.0 <= 200.0,
        ),
        (
            format!("acks/s with {stored} stored events, against an empty store"),
            "≥ 0.9",
            format!("{full_ratio:.2}"),
            full_ratios,
            full_ratio >= 0.9,
        ),
        (
            format!("start-up with {stored} stored events, after a clean shutdown (a restart)"),
            "≤ 1 s",
            format!("{:.2} s", t.warm_startup.as_secs_f64()),
            String::new(),
            t.warm_startup <= second,
        ),
        (
            format!(
                "start-up with {stored} stored events, after a clean shutdown and with the page \
                 cache dropped (a reboot)"
            ),
            "≤ 1 s",
            t.cold_startup
                .map_or("not measured (not root)".to_string(), |took| {
                    format!("{:.2} s", took.as_secs_f64())
                }),
            String::new(),
            t.cold_startup.is_some_and(|took| took <= second),
        ),
        (
            format!("start-up with {stored} stored events, after SIGKILL"),
            "≤ 1 s",
            format!("{:.2} s", t.crash_startup.as_secs_f64()),
            String::new(),
            t.crash_startup <= second,
        ),
    ];
    // With nothing pre-loaded (a short run), there is no payload to set the data dir against.
    if stored > 0 {
        rows.push((
            format!("data dir with {stored} stored events, over their payload bytes"),
            "≤ 1.5",
            format!("{:.2}", t.data_ratio),
            String::new(),
            t.data_ratio <= 1.5,
        ));
    }
    for (figure, target, measured, each, ok) in rows {
        println!(
            "| {figure} | {target} | {measured} | {each} | {} |",
            verdict(ok)
        );
    }
}
