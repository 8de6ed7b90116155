//! One thread opens sled, every time: at a start, at each checkpoint and for a compaction.
//!
//! An open builds sled's page table, one small allocation or two per page (~45 MiB at 10 M
//! events). glibc serves a thread from an arena of its own and keeps in that arena what the
//! thread's allocations freed, unless something new is allocated from it again. When each open
//! ran on a different thread (a start's, then a checkpoint's), a checkpoint freed the old page
//! table into one arena and built the new one in another: a 10 M-event gateway's RSS grew by
//! ~100 MiB at its first checkpoint and kept it. Opened from one thread, each page table is
//! built in the room the last one left (docs/performance.md, "Memory").

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock, PoisonError};

type Job = Box<dyn FnOnce() + Send>;

static JOBS: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

/// Runs `open` on the opening thread and returns what it returned. Opens queue behind each
/// other (several stores in one process, as in the tests, share the thread).
pub fn run<T: Send + 'static>(open: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = done.send(open());
    });
    let sent = JOBS
        .get_or_init(start)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(job);
    if let Err(mpsc::SendError(job)) = sent {
        // The thread could not be started, or a panic ended it: open here.
        job();
    }
    result
        .recv()
        .expect("an open that ends without a result panicked")
}

fn start() -> Mutex<mpsc::Sender<Job>> {
    let (jobs, receiver) = mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("hookgate-sled-open".into())
        .spawn(move || {
            for job in receiver {
                job();
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "Could not start sled's opening thread; each open runs where it is asked for");
    }
    Mutex::new(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_open_runs_on_the_same_thread() {
        let here = std::thread::current().id();
        let first = run(|| std::thread::current().id());
        let second = std::thread::spawn(|| run(|| std::thread::current().id()))
            .join()
            .unwrap();
        assert_ne!(first, here);
        assert_eq!(first, second);
        assert_eq!(run(|| 7), 7);
    }
}
