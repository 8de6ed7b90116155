//! The committer's time spent on a run's steps, logged once per run.

use std::time::{Duration, Instant};

/// The committer's time spent on one run, in steps between batches: logged once the log values
/// it holds are removed.
#[derive(Default)]
pub(super) struct Spent {
    /// The run's id and key count, once sealed.
    pub(super) run: u32,
    pub(super) keys: u64,
    pub(super) collect: Steps,
    pub(super) write: Steps,
    pub(super) trim: Steps,
    /// Log values removed.
    pub(super) trimmed: usize,
}

/// Steps of one kind: how many, their time, the longest.
#[derive(Default)]
pub(super) struct Steps {
    count: u32,
    total: Duration,
    slowest: Duration,
}

impl Steps {
    /// Counts a step begun at `started`.
    pub(super) fn took(&mut self, started: Instant) {
        let took = started.elapsed();
        self.count += 1;
        self.total += took;
        self.slowest = self.slowest.max(took);
    }
}

impl Spent {
    pub(super) fn log(&self) {
        let ms = |spent: Duration| (spent.as_secs_f64() * 1e6).round() / 1e3;
        tracing::info!(
            run = self.run,
            keys = self.keys,
            collect_steps = self.collect.count,
            collect_ms = ms(self.collect.total),
            slowest_collect_ms = ms(self.collect.slowest),
            write_steps = self.write.count,
            write_ms = ms(self.write.total),
            slowest_write_ms = ms(self.write.slowest),
            trim_steps = self.trim.count,
            trim_ms = ms(self.trim.total),
            slowest_trim_ms = ms(self.trim.slowest),
            log_values = self.trimmed,
            "Dedup run sealed; the recent claims it holds have left the log."
        );
    }
}
