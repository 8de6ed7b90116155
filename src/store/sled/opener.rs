//! The one thread that opens sled, at the start and at every checkpoint.
//!
//! sled builds its page table on the thread that opens it (one or two small allocations a page:
//! ~48 MB at 10 M events), and glibc serves each thread from an arena of its own, giving a freed
//! chunk back to the arena it came from. A checkpoint that reopened sled on a new thread built
//! each new table in whichever arena that thread got, while the old table's room stayed free in
//! another. Opened always by this thread, each table is freed into the arena the next one is
//! built from.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// Runs jobs, one at a time, on its thread; the thread ends once this is dropped.
pub struct Opener {
    jobs: mpsc::Sender<Job>,
}

/// A job's result, once it has run.
pub struct Running<T>(mpsc::Receiver<std::thread::Result<T>>);

impl Opener {
    pub fn start() -> std::io::Result<Opener> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("hookgate-sled-open".into())
            .spawn(move || {
                for job in queue {
                    job();
                }
            })?;
        Ok(Opener { jobs })
    }

    /// Runs `job` on the opener's thread.
    pub fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Running<T> {
        let (result, running) = mpsc::channel();
        let job = move || {
            let _ = result.send(catch_unwind(AssertUnwindSafe(job)));
        };
        // A thread that is gone drops the job, and `join` reports it as a panic.
        let _ = self.jobs.send(Box::new(job));
        Running(running)
    }
}

impl<T> Running<T> {
    /// Waits for the job's result; `Err` if it panicked.
    pub fn join(self) -> std::thread::Result<T> {
        self.0
            .recv()
            .unwrap_or_else(|_| Err(Box::new("the thread that opens sled is gone")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_one_thread_and_a_panic_is_reported() {
        let opener = Opener::start().unwrap();
        let first = opener.run(|| std::thread::current().id()).join().unwrap();
        let second = opener.run(|| std::thread::current().id()).join().unwrap();
        assert_eq!(first, second);
        assert_ne!(first, std::thread::current().id());
        assert!(opener.run(|| panic!("no")).join().is_err());
        assert_eq!(opener.run(|| 7).join().unwrap(), 7);
    }
}
