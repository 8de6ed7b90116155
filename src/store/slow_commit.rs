//! Which commits were slow (`[store] slow_commit`), and when to log one: a commit whose oldest
//! request waited at least the bound is slow; at most one line a second is logged, and the slow
//! commits not logged are counted in the next line's `unlogged` (every one is counted in
//! `hookgate_commits_slow_total`). Each backend logs its own parts: sled's in
//! `sled/slow_commit.rs`, JetStream's in `jetstream/mod.rs`.

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

/// The fewest seconds between two slow-commit lines.
const INTERVAL: Duration = Duration::from_secs(1);

/// Whether a commit was slow, and whether to log it now.
#[derive(Debug)]
pub struct SlowCommits {
    /// `[store] slow_commit`; zero: never slow.
    bound: Duration,
    last_line: Option<Instant>,
    unlogged: u64,
    /// Every slow commit (`hookgate_commits_slow_total`).
    counted: Counter,
}

/// What [`SlowCommits::judge`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Fast,
    /// Slow, and counted in the next line.
    Unlogged,
    /// Slow: log it, with this many slow commits not logged since the last line.
    Log {
        unlogged: u64,
    },
}

impl SlowCommits {
    pub fn new(bound: Duration, counted: Counter) -> Self {
        SlowCommits {
            bound,
            last_line: None,
            unlogged: 0,
            counted,
        }
    }

    /// Judges a commit whose oldest request waited `total`, and counts it if it was slow.
    /// `Some(unlogged)`: log it now, with the slow commits not logged since the last line.
    pub fn to_log(&mut self, total: Duration) -> Option<u64> {
        match self.judge(total, Instant::now()) {
            Verdict::Fast => None,
            Verdict::Unlogged => {
                self.counted.inc();
                None
            }
            Verdict::Log { unlogged } => {
                self.counted.inc();
                Some(unlogged)
            }
        }
    }

    /// Judges a commit whose oldest request waited `total`, at `now`.
    pub fn judge(&mut self, total: Duration, now: Instant) -> Verdict {
        if self.bound.is_zero() || total < self.bound {
            return Verdict::Fast;
        }
        if self.last_line.is_some_and(|at| now < at + INTERVAL) {
            self.unlogged += 1;
            return Verdict::Unlogged;
        }
        self.last_line = Some(now);
        Verdict::Log {
            unlogged: std::mem::take(&mut self.unlogged),
        }
    }
}

/// Milliseconds, to the hundredth, for a log line.
pub fn ms(part: Duration) -> f64 {
    (part.as_secs_f64() * 100_000.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_batch_under_the_bound_is_fast_and_zero_means_never_slow() {
        let now = Instant::now();
        let mut slow = SlowCommits::new(5 * MS, Counter::default());
        assert_eq!(slow.judge(4 * MS, now), Verdict::Fast);
        assert_eq!(slow.judge(5 * MS, now), Verdict::Log { unlogged: 0 });
        let mut never = SlowCommits::new(Duration::ZERO, Counter::default());
        assert_eq!(never.judge(Duration::from_secs(60), now), Verdict::Fast);
    }

    #[test]
    fn at_most_one_line_a_second_and_the_next_counts_those_not_logged() {
        let start = Instant::now();
        let mut slow = SlowCommits::new(MS, Counter::default());
        assert_eq!(slow.judge(2 * MS, start), Verdict::Log { unlogged: 0 });
        assert_eq!(slow.judge(2 * MS, start + 10 * MS), Verdict::Unlogged);
        assert_eq!(slow.judge(MS / 2, start + 20 * MS), Verdict::Fast);
        assert_eq!(slow.judge(3 * MS, start + 999 * MS), Verdict::Unlogged);
        let second = start + INTERVAL;
        assert_eq!(slow.judge(2 * MS, second), Verdict::Log { unlogged: 2 });
        assert_eq!(slow.judge(2 * MS, second + MS), Verdict::Unlogged);
        assert_eq!(
            slow.judge(2 * MS, second + INTERVAL),
            Verdict::Log { unlogged: 1 }
        );
    }

    #[test]
    fn every_slow_commit_is_counted_and_one_a_second_logged() {
        let counted = Counter::default();
        let mut slow = SlowCommits::new(MS, counted.clone());
        assert_eq!(slow.to_log(MS / 2), None);
        assert_eq!(slow.to_log(2 * MS), Some(0));
        assert_eq!(slow.to_log(2 * MS), None);
        assert_eq!(counted.get(), 2);
    }

    #[test]
    fn milliseconds_to_the_hundredth() {
        assert_eq!(ms(Duration::from_micros(1234)), 1.23);
        assert_eq!(ms(Duration::from_micros(1236)), 1.24);
    }
}
