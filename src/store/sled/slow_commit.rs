//! The slow-commit log line. When the oldest request of a batch waited longer than
//! `[store] slow_commit` from its submission to its answer, one warning says how long each part
//! of that wait took, so that an operator (or a bench) can tell a slow disk (`flush_ms`, in which
//! sled's io thread writes the buffer and waits for the device, and `fdatasync_ms`) from sled's
//! transaction (`apply_ms`) and from a committer that does not keep up
//! (`waited_ms`, before the commit began: `behind_ms` of it while the committer was still busy
//! with earlier batches or its own work, `gather_ms` taking the batch and gathering for
//! `[store] commit_delay`, and the rest waking the committer up). At most one line a second; the
//! slow batches not logged are counted in the next line's `unlogged`, and every one in
//! `hookgate_commits_slow_total`.

use std::time::{Duration, Instant};

/// The fewest seconds between two slow-commit lines.
const INTERVAL: Duration = Duration::from_secs(1);

/// How long each part of a batch's oldest request's wait took, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Parts {
    /// From its submission to the start of the batch's commit.
    pub waited: Duration,
    /// Of `waited`: while the committer was busy with earlier batches or its own work (a
    /// checkpoint, steps of sealing dedup keys into runs).
    pub behind: Duration,
    /// Of `behind`: the committer's steps of sealing dedup keys into runs.
    pub runs: Duration,
    /// Of `waited`: taking the batch from the queue, and gathering (`[store] commit_delay`).
    pub gather: Duration,
    /// The sled transaction.
    pub apply: Duration,
    /// sled's flush: an io thread of its own writes the buffer to the log file and waits for the
    /// device (`sync_file_range`).
    pub flush: Duration,
    /// The fdatasync of the log file.
    pub fdatasync: Duration,
    /// Answering the batch's requests.
    pub answer: Duration,
}

impl Parts {
    /// The oldest request's whole wait.
    pub fn total(&self) -> Duration {
        self.waited + self.apply + self.flush + self.fdatasync + self.answer
    }
}

/// Whether a batch was slow, and whether to log it now.
#[derive(Debug)]
pub struct SlowCommits {
    /// `[store] slow_commit`; zero: never slow.
    bound: Duration,
    last_line: Option<Instant>,
    unlogged: u64,
}

/// What [`SlowCommits::judge`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Fast,
    /// Slow, and counted in the next line.
    Unlogged,
    /// Slow: log it, with this many slow batches not logged since the last line.
    Log {
        unlogged: u64,
    },
}

impl SlowCommits {
    pub fn new(bound: Duration) -> Self {
        SlowCommits {
            bound,
            last_line: None,
            unlogged: 0,
        }
    }

    /// Judges a batch whose oldest request waited `total`, at `now`.
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

    /// Judges a batch of `requests` and `bytes`; logs it when it was slow and no line was
    /// logged in the last second. Returns whether it was slow.
    pub fn note(&mut self, parts: &Parts, requests: usize, bytes: usize) -> bool {
        let total = parts.total();
        let unlogged = match self.judge(total, Instant::now()) {
            Verdict::Fast => return false,
            Verdict::Unlogged => return true,
            Verdict::Log { unlogged } => unlogged,
        };
        tracing::warn!(
            total_ms = ms(total),
            requests,
            bytes,
            waited_ms = ms(parts.waited),
            behind_ms = ms(parts.behind),
            runs_ms = ms(parts.runs),
            gather_ms = ms(parts.gather),
            apply_ms = ms(parts.apply),
            flush_ms = ms(parts.flush),
            fdatasync_ms = ms(parts.fdatasync),
            answer_ms = ms(parts.answer),
            unlogged,
            "A commit was slow: its oldest request waited over [store] slow_commit for its answer."
        );
        true
    }
}

/// Milliseconds, to the hundredth.
fn ms(part: Duration) -> f64 {
    (part.as_secs_f64() * 100_000.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_batch_under_the_bound_is_fast_and_zero_means_never_slow() {
        let now = Instant::now();
        let mut slow = SlowCommits::new(5 * MS);
        assert_eq!(slow.judge(4 * MS, now), Verdict::Fast);
        assert_eq!(slow.judge(5 * MS, now), Verdict::Log { unlogged: 0 });
        let mut never = SlowCommits::new(Duration::ZERO);
        assert_eq!(never.judge(Duration::from_secs(60), now), Verdict::Fast);
    }

    #[test]
    fn at_most_one_line_a_second_and_the_next_counts_those_not_logged() {
        let start = Instant::now();
        let mut slow = SlowCommits::new(MS);
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
    fn the_total_is_every_part_but_those_of_the_wait() {
        let parts = Parts {
            waited: 3 * MS,
            behind: 2 * MS,
            runs: 2 * MS,
            gather: MS,
            apply: MS,
            flush: 4 * MS,
            fdatasync: 5 * MS,
            answer: MS,
        };
        assert_eq!(parts.total(), 14 * MS);
        assert_eq!(ms(Duration::from_micros(1234)), 1.23);
        assert_eq!(ms(Duration::from_micros(1236)), 1.24);
    }
}
