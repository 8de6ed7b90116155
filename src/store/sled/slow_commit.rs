//! The slow-commit log line. When the oldest request of a batch waited longer than
//! `[store] slow_commit` from its submission to its answer, one warning says how long each part
//! of that wait took, so that an operator (or a bench) can tell a slow disk (`flush_ms`, in which
//! sled's io thread writes the buffer and waits for the device, and `fdatasync_ms`) from sled's
//! transaction (`apply_ms`) and from a committer that does not keep up
//! (`waited_ms`, before the commit began: `behind_ms` of it while the committer was still busy
//! with earlier batches or its own work, `gather_ms` taking the batch and gathering for
//! `[store] commit_delay`, and the rest waking the committer up). When to log one:
//! `store/slow_commit.rs`.

use std::time::Duration;

use crate::store::slow_commit::{ms, SlowCommits};

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

/// Judges a batch of `requests` and `bytes`, counts it if it was slow, and logs it when no line
/// was logged in the last second.
pub fn note(slow: &mut SlowCommits, parts: &Parts, requests: usize, bytes: usize) {
    let total = parts.total();
    let Some(unlogged) = slow.to_log(total) else {
        return;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

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
    }
}
