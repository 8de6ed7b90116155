//! A stopped gateway's store, opened in-process through hookgate's own library: filled fast
//! (verification + `Store::commit`, the ingest path without HTTP), and read back to check that
//! every acked event is there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hookgate::config::{load_file, Config};
use hookgate::event::Seq;
use hookgate::event_id::event_id;
use hookgate::metrics::Metrics;
use hookgate::store::{Committed, NewEvent, Store};
use hookgate::verify::{Headers, Unverified};

use super::load::{body, headers, id_number, IdMode};

/// Opens the store of the (stopped) gateway configured in `config`.
pub fn open(config: &std::path::Path) -> (Config, Store) {
    open_counted(config, Arc::new(Metrics::new()))
}

/// [`open`], counting into `metrics`.
fn open_counted(config: &std::path::Path, metrics: Arc<Metrics>) -> (Config, Store) {
    let (config, _warnings) = load_file(config).unwrap_or_else(|errors| {
        panic!("bench config: {errors:?}");
    });
    let store =
        Store::open(&config.server.data_dir, &config.store, metrics).expect("open the store");
    (config, store)
}

struct RequestHeaders<'a>(&'a [(&'static str, String)]);

impl Headers for RequestHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        if name.eq_ignore_ascii_case("content-type") {
            return Some("application/json");
        }
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Checkpoints the closed store of the (stopped) gateway configured in `config`
/// (`hookgate::store::checkpoint`: the next open reads a snapshot instead of the whole log).
/// Returns how long it took, and how much of it went waiting for the lock of the store this
/// process had just closed.
pub fn checkpoint(config: &std::path::Path) -> hookgate::store::Checkpointed {
    let (config, _warnings) = load_file(config).unwrap_or_else(|errors| {
        panic!("bench config: {errors:?}");
    });
    hookgate::store::checkpoint(&config.server.data_dir, &config.store).expect("checkpoint")
}

/// Stores the events `event_id(first, mode)` .. `event_id(first + count - 1, mode)` with
/// `concurrency` commits in flight, as [`fill`] does, in the (stopped) gateway's store, and closes
/// it. Returns how long it took.
pub async fn preload(
    config: &std::path::Path,
    first: u64,
    count: u64,
    concurrency: usize,
    mode: IdMode,
) -> Preloaded {
    let started = Instant::now();
    let metrics = Arc::new(Metrics::new());
    let (config, store) = open_counted(config, metrics.clone());
    fill(&config, &store, first, count, concurrency, mode, None).await;
    store.close().await;
    let counters = super::Counters::from_text(&metrics.render());
    Preloaded {
        took: started.elapsed(),
        mean_batch: counters.batch_events / counters.batches.max(1.0),
        checkpoints: counters.checkpoints as u64,
    }
}

/// What [`preload`] took.
pub struct Preloaded {
    pub took: Duration,
    /// The committer's mean batch, in events.
    pub mean_batch: f64,
    /// How many times the committer checkpointed sled (`[store] checkpoint_mb`) while filling.
    pub checkpoints: u64,
}

/// Stores the events `event_id(first, mode)` .. `event_id(first + count - 1, mode)` in `store`
/// with `concurrency` commits in flight, each signed, verified and committed as hookgate does for
/// a webhook (so the committer groups them as it would), received at `received_at_ms` if given
/// (else now).
pub async fn fill(
    config: &Config,
    store: &Store,
    first: u64,
    count: u64,
    concurrency: usize,
    mode: IdMode,
    received_at_ms: Option<u64>,
) {
    let key = super::key();
    let next = AtomicU64::new(first);
    let end = first + count;
    let worker = || async {
        loop {
            let id = next.fetch_add(1, Ordering::Relaxed);
            if id >= end {
                break;
            }
            let committed = commit_one(config, store, &key, id, mode, received_at_ms)
                .await
                .expect("preload commit");
            assert!(matches!(committed, Committed::Accepted(_)), "{committed:?}");
        }
    };
    futures_util::future::join_all((0..concurrency).map(|_| worker())).await;
}

/// Signs, verifies and commits the event `event_id(id, mode)` as hookgate does for a webhook,
/// received at `received_at_ms` if given (else now).
async fn commit_one(
    config: &Config,
    store: &Store,
    key: &[u8],
    id: u64,
    mode: IdMode,
    received_at_ms: Option<u64>,
) -> Result<Committed, hookgate::store::StoreError> {
    let provider = &config.providers[0];
    let body = body(id, mode);
    let signed = headers(key, id, mode, &body);
    let headers = RequestHeaders(&signed);
    let path = format!("/hooks/{}", provider.name.as_str());
    let unverified = Unverified {
        headers: &headers,
        path: &path,
        query: "",
        body: Bytes::from(body),
        peer: None,
        now: SystemTime::now(),
    };
    let verified = provider
        .verifier
        .verify(unverified)
        .await
        .expect("bench event verifies");
    let event_id = event_id(provider.event_id.as_ref(), &headers, &verified);
    let mut event = NewEvent::webhook(
        provider.name.clone(),
        event_id,
        Some("application/json".into()),
        verified,
    );
    if let Some(at) = received_at_ms {
        event = event.received_at(at);
    }
    store.commit(event, Duration::from_secs(60)).await
}

/// An open-loop load on `store`: `rate` commits a second, each started on time whether or not
/// the ones before were answered, with ids from `first` on (random), until `stop` is set.
/// Returns when each was due and how long its commit took from then, in µs, and how many failed.
/// Runs in a `LocalSet` (a verification borrows the request's headers, which are not `Sync`).
pub async fn paced(
    config: Arc<Config>,
    store: Store,
    first: u64,
    rate: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<(Instant, u32)>, usize) {
    let key: Arc<[u8]> = super::key().into();
    let started = tokio::time::Instant::now();
    // Each commit sends its figures here: a finished task holds no memory in the bench process,
    // whose RSS is the store's.
    let (sender, mut results) = tokio::sync::mpsc::unbounded_channel();
    for n in 0.. {
        let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (config, store, key, sender) =
            (config.clone(), store.clone(), key.clone(), sender.clone());
        tokio::task::spawn_local(async move {
            let result = commit_one(&config, &store, &key, first + n, IdMode::Random, None).await;
            let took = u32::try_from(due.elapsed().as_micros()).unwrap_or(u32::MAX);
            let _ = sender.send((due.into_std(), took, result.is_ok()));
        });
    }
    drop(sender);
    let mut samples = Vec::new();
    let mut errors = 0;
    while let Some((at, took, ok)) = results.recv().await {
        if ok {
            samples.push((at, took));
        } else {
            errors += 1;
        }
    }
    (samples, errors)
}

/// What the store holds, against what was acked.
pub struct Check {
    pub stored: u64,
    /// Acked ids not found in the store.
    pub missing: Vec<u64>,
    /// Ids stored more than once.
    pub duplicates: u64,
    pub took: Duration,
}

/// Reads every event of the (stopped) gateway's store and checks that each id in `acked` is
/// there.
pub async fn check(config: &std::path::Path, acked: &[u64]) -> Check {
    let started = Instant::now();
    let (_config, store) = open(config);
    let mut seen: Vec<bool> = Vec::new();
    let (mut stored, mut duplicates) = (0, 0);
    let mut after = Seq(0);
    loop {
        let events = store
            .events_after(after, 10_000, None)
            .await
            .expect("read the store");
        let Some(last) = events.last() else { break };
        after = Seq(last.seq);
        for event in &events {
            stored += 1;
            let Some(id) = id_number(&event.event_id) else {
                continue;
            };
            let index = usize::try_from(id).expect("id fits");
            if seen.len() <= index {
                seen.resize(index + 1, false);
            }
            duplicates += u64::from(std::mem::replace(&mut seen[index], true));
        }
    }
    store.close().await;
    let missing = acked
        .iter()
        .copied()
        .filter(|&id| !seen.get(id as usize).copied().unwrap_or(false))
        .collect();
    Check {
        stored,
        missing,
        duplicates,
        took: started.elapsed(),
    }
}
