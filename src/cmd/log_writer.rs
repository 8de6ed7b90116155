//! The thread that writes log lines to stderr, so that a reader that stops reading (a stuck
//! journald, a full pipe) never holds up a request.
//!
//! A line is appended to one shared buffer under a short lock. The thread wakes for the first
//! line, lets others join it for [`GATHER`], and writes them all in one `write`: a line waits at
//! most about [`GATHER`], and under load the thread wakes and writes about a hundred times a
//! second instead of once a line (`tracing_appender`'s worker, used before, woke and wrote once
//! a line: 1.6-2.1 µs of CPU per webhook at 64 connections in `cargo bench --bench ingest`, and
//! 3.6-3.8 µs paced at half the maximum; gathering 1 ms, 0.8-0.9 and 1.3-1.5; 10 ms, 0.2-0.3
//! both). Up to [`BUFFERED_LINES`] lines wait; past that, new lines are dropped and counted
//! ([`dropped_lines`]).

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Lines waiting for stderr before new ones are dropped (about 25 MiB of 200-byte lines).
pub const BUFFERED_LINES: usize = 128_000;

/// How long the thread lets lines gather after the first before it writes them.
pub const GATHER: Duration = Duration::from_millis(10);

/// How long dropping the [`WriterGuard`] waits for the lines still waiting to be written.
const LAST_WRITE: Duration = Duration::from_secs(1);

/// A buffer this large is let go after its write (one that grew while the reader was stuck).
const KEPT_CAPACITY: usize = 1024 * 1024;

/// Lines dropped so far because [`BUFFERED_LINES`] were waiting.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines dropped so far because the log's reader fell behind.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Lines in `bytes`, and in the write in progress (taken out of `bytes`, still held).
    lines: usize,
    /// Of `lines`, those the write in progress holds.
    writing: usize,
    /// The thread waits for a line: the next one wakes it.
    idle: bool,
    /// The guard was dropped: the thread writes what waits and ends.
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where the subscriber writes its lines: each `write` is one formatted line.
#[derive(Clone)]
pub struct LineWriter {
    shared: Arc<Shared>,
}

impl LineWriter {
    /// Waits until every line written so far has been written out, or `within` has passed (a
    /// reader that stopped reading): for a line that must reach the log before the process
    /// may end (a panic's, which an abort can follow).
    pub fn wait_written(&self, within: std::time::Duration) {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            let pending = self.shared.lock();
            if pending.lines == 0 {
                return;
            }
            drop(pending);
            thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// One event's writer (the subscriber formats a line, then writes it in one call).
pub struct Line<'a> {
    shared: &'a Shared,
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            shared: &self.shared,
        }
    }
}

impl Write for Line<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.lock();
        if pending.lines >= BUFFERED_LINES || pending.closed {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        pending.bytes.extend_from_slice(line);
        pending.lines += 1;
        let wake = std::mem::take(&mut pending.idle);
        drop(pending);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps the writing thread; dropping it writes out the lines that wait (for up to 1 s).
#[must_use = "dropping the guard stops the log writer"]
pub struct WriterGuard {
    shared: Arc<Shared>,
    /// Disconnected when the thread ends.
    ended: mpsc::Receiver<()>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        // A reader that stopped reading keeps the thread in its `write`: give up after a while.
        let _ = self.ended.recv_timeout(LAST_WRITE);
    }
}

/// Starts the thread writing to `out`.
pub fn start(out: impl Write + Send + 'static) -> io::Result<(LineWriter, WriterGuard)> {
    let shared = Arc::new(Shared::default());
    let (ended_tx, ended) = mpsc::channel();
    let thread_shared = shared.clone();
    thread::Builder::new()
        .name("hookgate-log".into())
        .spawn(move || {
            write_lines(&thread_shared, out);
            drop(ended_tx);
        })?;
    let writer = LineWriter {
        shared: shared.clone(),
    };
    Ok((writer, WriterGuard { shared, ended }))
}

/// The thread: waits for a line, lets others gather for [`GATHER`], writes them in one call;
/// until the guard is dropped and nothing waits.
fn write_lines(shared: &Shared, mut out: impl Write) {
    let mut writing = Vec::new();
    loop {
        let closed = {
            let mut pending = shared.lock();
            while pending.bytes.is_empty() && !pending.closed {
                pending.idle = true;
                pending = shared
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if pending.bytes.is_empty() {
                return;
            }
            pending.closed
        };
        if !closed {
            thread::sleep(GATHER);
        }
        {
            let mut pending = shared.lock();
            std::mem::swap(&mut pending.bytes, &mut writing);
            pending.writing = pending.lines;
        }
        // Nowhere to report a failed write to: the lines are lost, as they would be unread.
        let _ = out.write_all(&writing).and_then(|()| out.flush());
        writing.clear();
        {
            // Counted until written: a write stuck with the bound's worth of lines left room
            // for as many again.
            let mut pending = shared.lock();
            pending.lines -= pending.writing;
            pending.writing = 0;
        }
        if writing.capacity() > KEPT_CAPACITY {
            writing = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A `Write` that keeps what it is given, and counts the calls.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut kept = self.0.lock().unwrap();
            kept.0.extend_from_slice(bytes);
            kept.1 += 1;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_written_together_arrive_in_order_in_few_writes() {
        let out = Kept::default();
        let (writer, guard) = start(out.clone()).unwrap();
        for n in 0..1000 {
            writer
                .make_writer()
                .write_all(format!("line {n}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        let (bytes, writes) = out.0.lock().unwrap().clone();
        let expected: String = (0..1000).map(|n| format!("line {n}\n")).collect();
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
        assert!(writes < 100, "{writes} writes for 1,000 lines");
    }

    #[test]
    fn a_lone_line_is_written_without_waiting_for_another() {
        let out = Kept::default();
        let (writer, _guard) = start(out.clone()).unwrap();
        writer.make_writer().write_all(b"alone\n").unwrap();
        let started = Instant::now();
        while out.0.lock().unwrap().0.is_empty() {
            assert!(started.elapsed() < Duration::from_secs(5), "never written");
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(out.0.lock().unwrap().0, b"alone\n");
    }

    /// A `Write` that never returns, as a pipe nobody reads.
    struct Stuck;

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            loop {
                thread::park();
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_reader_drops_lines_past_the_bound_and_holds_no_writer() {
        let (writer, guard) = start(Stuck).unwrap();
        let dropped = dropped_lines();
        for _ in 0..BUFFERED_LINES {
            writer.make_writer().write_all(b"x\n").unwrap();
        }
        // The thread takes them into its stuck write: they still count towards the bound (a
        // stuck write of the bound's worth of lines left room for as many again).
        thread::sleep(GATHER + Duration::from_millis(50));
        for _ in 0..10 {
            writer.make_writer().write_all(b"x\n").unwrap();
        }
        assert!(dropped_lines() >= dropped + 10);
        let started = Instant::now();
        drop(guard);
        assert!(started.elapsed() < LAST_WRITE * 3);
    }
}
