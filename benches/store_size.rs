//! What filling a store costs the disk, by the size of its commit batches, through hookgate's
//! library (no HTTP, no gateway process). For each CONCURRENCY, a store in a fresh temporary
//! directory is filled with EVENTS 1 KiB events with random ids, that many commits in flight (so
//! the committer's batches are about that large), then closed and checkpointed. Reported:
//!
//! - the committer's mean batch (`hookgate_commit_batch_size`);
//! - the data directory against the payload (events x body bytes);
//! - the bytes this process handed to `write` calls (`/proc/self/io` `wchar`: sled's log writes,
//!   as nothing else in this process writes much) and the bytes that reached the block device
//!   (`write_bytes`), both against the payload: the write amplification.
//!
//! 64 in flight gives batches like a gateway's at 64 connections; 4,096 is what the ingest
//! bench's pre-load uses, so its data-dir figure is that of the largest batches.
//!
//! Run: `cargo bench --bench store_size` (args: `-- [EVENTS] [CONCURRENCY...]`, default
//! `2000000 64 4096`; `HOOKGATE_BENCH_DATA=DIR` keeps each store in DIR/<concurrency>).

mod common;

use common::load::{self, IdMode};
use common::store;

/// A counter of `/proc/self/io`.
fn io(field: &str) -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(": "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args = common::number_args();
    let events = args.first().copied().unwrap_or(2_000_000);
    let concurrencies = match args.get(1..) {
        Some(list) if !list.is_empty() => list.to_vec(),
        _ => vec![64, 4096],
    };
    let kept = std::env::var_os("HOOKGATE_BENCH_DATA").map(std::path::PathBuf::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let payload = events * load::BODY_BYTES as u64;
    println!(
        "| in flight | mean batch | events/s | data dir / payload | written (write calls) / \
         payload | written (block device) / payload |\n|---|---|---|---|---|---|"
    );
    for concurrency in concurrencies {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = match &kept {
            Some(kept) => kept.join(concurrency.to_string()),
            None => temp.path().to_path_buf(),
        };
        std::fs::create_dir_all(&dir).expect("create the store's dir");
        let config = common::write_config(&dir, "");
        let (wchar, block) = (io("wchar"), io("write_bytes"));
        let preloaded = runtime.block_on(store::preload(
            &config,
            0,
            events,
            concurrency as usize,
            IdMode::Random,
        ));
        store::checkpoint(&config);
        let (wchar, block) = (io("wchar") - wchar, io("write_bytes") - block);
        let data = common::dir_bytes(&dir.join("data"));
        let ratio = |bytes: u64| bytes as f64 / payload as f64;
        println!(
            "| {concurrency} | {:.1} | {:.0} | {:.2} | {:.2} | {:.2} |",
            preloaded.mean_batch,
            events as f64 / preloaded.took.as_secs_f64(),
            ratio(data),
            ratio(wchar),
            ratio(block),
        );
    }
}
