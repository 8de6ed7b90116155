//! When a compaction runs: after a retention pass, if the copy would give back enough, and not
//! for a while after one failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::{free_segments, SledStore};
use super::copier::lock;
use super::Compaction;
use crate::store::Backend;
use crate::store::StoreError;

/// What a compaction's copy is expected to take over the bytes it holds, until one was measured
/// (`copier.rs`, `write`: 1.45-1.5 in sled's own measurements).
pub const FIRST_COPY_RATIO: f64 = 1.5;
/// The wait before the next try after a compaction failed, doubling after each failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(600);
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);

/// When a compaction may be tried again after failures (see the module's doc).
#[derive(Debug, Default)]
pub struct Backoff(Mutex<Option<(Instant, u32)>>);

impl Backoff {
    /// Whether the last failure is too recent for another try.
    pub fn waiting(&self) -> bool {
        lock(&self.0).is_some_and(|(until, _)| Instant::now() < until)
    }

    /// Notes a failure; returns the wait before the next try.
    pub fn failed(&self) -> Duration {
        let mut state = lock(&self.0);
        let failures = state.map_or(0, |(_, failures)| failures) + 1;
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << (failures - 1).min(16))
            .min(MAX_BACKOFF);
        *state = Some((Instant::now() + wait, failures));
        wait
    }

    pub fn succeeded(&self) {
        *lock(&self.0) = None;
    }
}

impl SledStore {
    /// Compacts the store (`mod.rs`) when sled's file is over `compact_ratio` times the
    /// bytes it holds and over them by `compact_min_bytes`. Returns the bytes given back.
    /// Failures are logged: the store goes on as it was, and the next pass tries again.
    pub async fn compact_if_worth_it(&self) -> Result<u64, StoreError> {
        let (ratio, least) = (self.config.compact_ratio, self.config.compact_min_bytes);
        if ratio == 0.0 {
            return Ok(0);
        }
        // One at a time (also claimed below, where it starts).
        if self.compact_backoff.waiting()
            || !self.old_copies.gone()
            || self.compacting.load(Ordering::Acquire)
        {
            return Ok(0);
        }
        let size = self.size_on_disk().await?;
        let live = self.live.get();
        // Worth it: over the ratio, and a copy would give back at least `least` (what sled makes
        // of a copy is learnt from the last one), so that compactions do not follow each other
        // for nothing. `least = 0` (tests) compacts whenever the ratio is passed.
        let copy_ratio = f64::from_bits(self.copy_ratio.load(Ordering::Relaxed));
        let worth_it = match live {
            Some(live) => {
                let (size, live) = (size as f64, live as f64);
                size > ratio * live && (least == 0 || size - copy_ratio * live >= least as f64)
            }
            // A store from before the count: its first compaction counts.
            None => size >= least,
        };
        if !worth_it {
            return Ok(0);
        }
        let needed = live.unwrap_or(size).saturating_mul(3) / 2;
        let free = nix::sys::statvfs::statvfs(&self.dir)
            .map(|stat| stat.blocks_available().saturating_mul(stat.fragment_size()))
            .unwrap_or(u64::MAX);
        if free < needed {
            tracing::warn!(
                size_mb = size >> 20,
                live_mb = live.map(|live| live >> 20),
                free_mb = free >> 20,
                "The store would be worth compacting, but the disk has no room for its copy."
            );
            return Ok(0);
        }
        tracing::info!(
            size_mb = size >> 20,
            live_mb = live.map(|live| live >> 20),
            "Compacting the store."
        );
        // Stopping the sweeper drops this future: the copy then gives up at its next step.
        struct Abort(Arc<AtomicBool>);
        impl Drop for Abort {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let abort = Abort(Arc::new(AtomicBool::new(false)));
        let (dir, config, handles, queue, compacting, stop, metrics, old_copies) = (
            self.dir.clone(),
            self.config.clone(),
            self.handles.clone(),
            self.queue.clone(),
            self.compacting.clone(),
            abort.0.clone(),
            self.metrics.clone(),
            self.old_copies.clone(),
        );
        // One compaction at a time: a reload stops the sweeper, whose copy goes on in its
        // thread until its next step, and the new sweeper's pass found the store worth
        // compacting again; both copies went to the same `sled.<n+1>`, and a checkpoint found
        // sled's lock held by the first one's trees, stopping the gateway.
        if compacting
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            tracing::info!("A compaction is still under way; not starting another.");
            return Ok(0);
        }
        // Cleared however the copy ends: a panic too, or a task that never ran.
        struct Compacting(Arc<AtomicBool>);
        impl Drop for Compacting {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let compacting = Compacting(compacting);
        let compacted = tokio::task::spawn_blocking(move || {
            let compacting = compacting;
            let result = Compaction {
                data_dir: &dir,
                config: &config,
                handles: &handles,
                queue: &queue,
                abort: &stop,
            }
            .run(size);
            // Only once the copy has let go of the old trees may a checkpoint reopen them.
            drop(compacting);
            if let Ok(done) = &result {
                // In the background: the sweeper goes on meanwhile, and a stop need not wait.
                let removed = |took: Duration| {
                    let took_ms = took.as_millis() as u64;
                    tracing::info!(took_ms, "Compaction: the old files removed.");
                };
                if let Err(err) = old_copies.remove(&dir, &done.dir, removed) {
                    tracing::warn!(error = %err, "Cannot start removing the old files; the next open will.");
                }
                // The copy was reopened once written (`mod.rs`): few of its segments are free.
                free_segments::observe(&done.dir, &metrics);
            }
            result
        })
        .await;
        drop(abort);
        match compacted {
            Ok(Ok(done)) => {
                self.compact_backoff.succeeded();
                self.metrics.store_compactions.inc();
                if done.live > 0 {
                    let learnt = done.after as f64 / done.live as f64;
                    self.copy_ratio.store(learnt.to_bits(), Ordering::Relaxed);
                }
                tracing::info!(
                    before_mb = done.before >> 20,
                    after_mb = done.after >> 20,
                    live_mb = done.live >> 20,
                    took_ms = done.took.as_millis() as u64,
                    paused_ms = done.paused.as_millis() as u64,
                    "Store compacted."
                );
                Ok(done.before.saturating_sub(done.after))
            }
            Ok(Err(err)) => {
                let retry = self.compaction_failed();
                tracing::warn!(error = %err, retry_in_s = retry.as_secs(), "Compacting the store failed; it stays as it was.");
                Ok(0)
            }
            Err(err) => {
                // It panicked (or never ran): nothing follows the trees any more.
                let retry = self.compaction_failed();
                tracing::error!(error = %err, retry_in_s = retry.as_secs(), "Compacting the store panicked; it stays as it was.");
                Ok(0)
            }
        }
    }

    /// Counts a compaction that failed; returns how long the next try waits.
    fn compaction_failed(&self) -> Duration {
        self.metrics.store_compactions_failed.inc();
        self.compact_backoff.failed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_compaction_waits_longer_each_time() {
        let backoff = Backoff::default();
        assert!(!backoff.waiting());
        assert_eq!(backoff.failed(), Duration::from_secs(600));
        assert!(backoff.waiting());
        assert_eq!(backoff.failed(), Duration::from_secs(1200));
        for _ in 0..20 {
            backoff.failed();
        }
        assert_eq!(backoff.failed(), MAX_BACKOFF);
        backoff.succeeded();
        assert!(!backoff.waiting());
        assert_eq!(backoff.failed(), Duration::from_secs(600));
    }
}
