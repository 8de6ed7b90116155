//! The ingest benchmark (issue 6), in one run:
//!
//! 1. a no-storage baseline (an actix-web server in this process, as many workers as hookgate's,
//!    that reads the body and answers 200) under 1, 16, 64 and 256 keep-alive connections;
//! 2. the release `hookgate` on an empty temporary data directory under the same loads: acks/s,
//!    p50/p99/p99.9 ack latency, fsyncs per ack, mean commit batch, peak RSS (`VmHWM`);
//! 3. a rate-limited run at half the highest acks/s (64 connections), for its p99;
//! 4. the store topped up to 1,000,000 events in-process (see `common::store::preload`), the
//!    gateway restarted on it (start-up timed from spawn to the `hookgate listening` line) and
//!    the 64-connection run repeated;
//! 5. the gateway killed (SIGKILL) and its store read back: every acked event must be there,
//!    else the bench fails.
//!
//! Run: `cargo bench --bench ingest` (args: `-- [SECONDS_PER_RUN] [STORED_EVENTS]`, default
//! `10 1000000`). The load generator is async (tokio, 2 threads) and shares the machine's cores
//! with the server under test, as the baseline does.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::load::{self, Pace, Run};
use common::{servers, store, Figures, Gateway};

const CONNECTIONS: [usize; 4] = [1, 16, 64, 256];

/// One hookgate run's figures.
struct Row {
    label: String,
    figures: Figures,
    fsyncs_per_ack: f64,
    mean_batch: f64,
    peak_rss_mib: f64,
    /// hookgate's CPU time per ack, and the load generator's (this process) per request.
    cpu_us_per_ack: f64,
    client_cpu_us: f64,
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
        .unwrap_or(1_000_000);
    let duration = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "{} CPUs; load average at start {}; {seconds} s per run",
        common::cpus(),
        common::load_average()
    );

    // 1. The baseline.
    let baseline = servers::baseline(common::cpus());
    let baseline_ids = Arc::new(AtomicU64::new(0));
    let baselines: Vec<(Figures, f64)> = CONNECTIONS
        .iter()
        .map(|&connections| {
            let run = closed(&baseline.url, connections, duration, &baseline_ids);
            let cpu_before = own_cpu_seconds();
            let figures = runtime.block_on(load::run(&run)).figures();
            let cpu_us = (own_cpu_seconds() - cpu_before) * 1e6 / figures.count().max(1) as f64;
            (figures, cpu_us)
        })
        .collect();
    runtime.block_on(baseline.stop());

    // 2. hookgate on an empty store.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::write_config(dir.path(), "");
    let ids = Arc::new(AtomicU64::new(0));
    let mut acked: Vec<u64> = Vec::new();
    let gateway = Gateway::start(&config);
    let empty_startup = gateway.startup;
    let mut rows: Vec<Row> = Vec::new();
    for &connections in &CONNECTIONS {
        let run = closed(&gateway.url, connections, duration, &ids);
        rows.push(measure(
            &runtime,
            &gateway,
            &run,
            connections.to_string(),
            &mut acked,
        ));
    }

    // 3. Half the highest throughput, paced.
    let max = rows
        .iter()
        .map(|r| r.figures.per_second())
        .fold(0.0, f64::max);
    let half = Run {
        pace: Pace::Rate(max / 2.0),
        ..closed(&gateway.url, 64, duration, &ids)
    };
    let label = format!("64, paced at {:.0}/s (half the max)", max / 2.0);
    let paced = measure(&runtime, &gateway, &half, label, &mut acked);
    let stored_so_far = gateway.metrics().stored as u64;
    gateway.kill();

    // 4. A store with `target_stored` events, and the 64-connection run again.
    let preload = target_stored.saturating_sub(stored_so_far);
    let first = ids.fetch_add(preload, Ordering::SeqCst);
    let took = runtime.block_on(store::preload(&config, first, preload, 4096));
    println!(
        "Pre-loaded {preload} events in-process in {:.1} s ({:.0}/s).",
        took.as_secs_f64(),
        preload as f64 / took.as_secs_f64()
    );
    let gateway = Gateway::start(&config);
    let full_startup = gateway.startup;
    let run = closed(&gateway.url, 64, duration, &ids);
    let label = format!("64, {target_stored} stored");
    let full = measure(&runtime, &gateway, &run, label, &mut acked);
    gateway.kill();

    // 5. Every acked event is in the store.
    let check = runtime.block_on(store::check(&config, &acked));

    print_runs(&baselines, &rows, &paced, &full);
    let at_64 = CONNECTIONS
        .iter()
        .position(|&n| n == 64)
        .expect("a 64-connection run");
    let (hookgate_64, baseline_64) = (&rows[at_64], &baselines[at_64].0);
    print_targets(&Targets {
        ratio_64: hookgate_64.figures.per_second() / baseline_64.per_second(),
        p99_half: paced.figures.ms(0.99),
        fsyncs_64: hookgate_64.fsyncs_per_ack,
        peak_rss_mib: rows
            .iter()
            .chain([&paced, &full])
            .map(|r| r.peak_rss_mib)
            .fold(0.0, f64::max),
        full_ratio: full.figures.per_second() / hookgate_64.figures.per_second(),
        full_startup,
    });
    println!(
        "\nStart-up: {:.0} ms on an empty store, {:.0} ms with {} events stored.",
        empty_startup.as_secs_f64() * 1000.0,
        full_startup.as_secs_f64() * 1000.0,
        check.stored
    );
    println!(
        "Store check ({:.1} s): {} acked, {} stored, {} missing, {} stored twice.",
        check.took.as_secs_f64(),
        acked.len(),
        check.stored,
        check.missing.len(),
        check.duplicates
    );
    println!("Load average at the end: {}.", common::load_average());
    if !check.missing.is_empty() {
        eprintln!(
            "FAILED: acked events missing from the store, e.g. {:?}",
            &check.missing[..check.missing.len().min(10)]
        );
        std::process::exit(1);
    }
}

/// This process's CPU time: the load generator's (and, in the baseline runs, the baseline
/// server's).
fn own_cpu_seconds() -> f64 {
    common::process_cpu_seconds(std::process::id())
}

/// A closed-loop run (each connection sends again as soon as it is answered).
fn closed(url: &str, connections: usize, duration: Duration, ids: &Arc<AtomicU64>) -> Run {
    Run {
        url: url.to_string(),
        connections,
        duration,
        pace: Pace::Closed,
        ids: ids.clone(),
        last_id: u64::MAX,
    }
}

/// Runs `run` against the gateway and reads its counters around it.
fn measure(
    runtime: &tokio::runtime::Runtime,
    gateway: &Gateway,
    run: &Run,
    label: String,
    acked: &mut Vec<u64>,
) -> Row {
    let before = gateway.metrics();
    let (cpu_before, client_before) = (gateway.cpu_seconds(), own_cpu_seconds());
    let outcome = runtime.block_on(load::run(run));
    let (cpu, client) = (
        gateway.cpu_seconds() - cpu_before,
        own_cpu_seconds() - client_before,
    );
    let after = gateway.metrics();
    acked.extend(outcome.acks.iter().map(|a| a.id));
    let acks = outcome.acks.len().max(1) as f64;
    let commits = (after.commits - before.commits).max(1.0);
    Row {
        label,
        fsyncs_per_ack: (after.fsyncs - before.fsyncs) / acks,
        mean_batch: acks / commits,
        peak_rss_mib: gateway.peak_rss_mib(),
        cpu_us_per_ack: cpu * 1e6 / acks,
        client_cpu_us: client * 1e6 / acks,
        figures: outcome.figures(),
    }
}

fn print_runs(baselines: &[(Figures, f64)], rows: &[Row], paced: &Row, full: &Row) {
    println!("\n### No-storage baseline (actix-web, same worker count)\n");
    println!(
        "| connections | req/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req (client + server) | errors |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (connections, (figures, cpu_us)) in CONNECTIONS.iter().zip(baselines) {
        println!(
            "| {connections} | {:.0} | {:.2} | {:.2} | {:.2} | {cpu_us:.0} | {} |",
            figures.per_second(),
            figures.ms(0.50),
            figures.ms(0.99),
            figures.ms(0.999),
            figures.errors
        );
    }
    println!("\n### hookgate\n");
    println!(
        "| connections | acks/s | vs baseline | p50 ms | p99 ms | p99.9 ms | fsyncs/ack | mean batch | peak RSS MiB | hookgate CPU µs/ack | client CPU µs/req | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, row) in rows.iter().chain([paced, full]).enumerate() {
        // Against the baseline at the same connection count (the paced and full-store runs
        // are compared in the targets table instead).
        let ratio = baselines
            .get(i)
            .filter(|_| i < rows.len())
            .map_or(String::new(), |(b, _)| {
                format!("{:.2}", row.figures.per_second() / b.per_second())
            });
        println!(
            "| {} | {:.0} | {ratio} | {:.2} | {:.2} | {:.2} | {:.3} | {:.1} | {:.0} | {:.0} | {:.0} | {} |",
            row.label,
            row.figures.per_second(),
            row.figures.ms(0.50),
            row.figures.ms(0.99),
            row.figures.ms(0.999),
            row.fsyncs_per_ack,
            row.mean_batch,
            row.peak_rss_mib,
            row.cpu_us_per_ack,
            row.client_cpu_us,
            row.figures.errors
        );
    }
}

/// The figures, measured.
struct Targets {
    ratio_64: f64,
    p99_half: f64,
    fsyncs_64: f64,
    peak_rss_mib: f64,
    full_ratio: f64,
    full_startup: Duration,
}

fn print_targets(t: &Targets) {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("\n### Targets (issue 6)\n");
    println!("| figure | target | measured | |");
    println!("|---|---|---|---|");
    let rows = [
        (
            "acks/s at 64 connections, as a ratio of the no-storage baseline",
            "≥ 0.35",
            format!("{:.2}", t.ratio_64),
            t.ratio_64 >= 0.35,
        ),
        (
            "p99 ack latency at half the maximum throughput",
            "≤ 5 ms",
            format!("{:.2} ms", t.p99_half),
            t.p99_half <= 5.0,
        ),
        (
            "fsyncs per ack at 64 connections",
            "≤ 0.1",
            format!("{:.3}", t.fsyncs_64),
            t.fsyncs_64 <= 0.1,
        ),
        (
            "peak RSS under load",
            "≤ 150 MiB",
            format!("{:.0} MiB", t.peak_rss_mib),
            t.peak_rss_mib <= 150.0,
        ),
        (
            "acks/s with 1,000,000 stored events, against an empty store",
            "≥ 0.9",
            format!("{:.2}", t.full_ratio),
            t.full_ratio >= 0.9,
        ),
        (
            "start-up with 1,000,000 stored events",
            "≤ 2 s",
            format!("{:.2} s", t.full_startup.as_secs_f64()),
            t.full_startup <= Duration::from_secs(2),
        ),
    ];
    for (figure, target, measured, ok) in rows {
        println!("| {figure} | {target} | {measured} | {} |", verdict(ok));
    }
}
