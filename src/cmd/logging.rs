//! Log lines on stderr, as `--log-format` asks: `text` (the default) or `json` (one object a
//! line, the event's fields at the top level, for a log shipper). The level comes from
//! `RUST_LOG` (default `info`).
//!
//! Lines are written by a thread of their own (`log_writer.rs`), so a reader that stops reading
//! (a stuck journald, a full pipe) never holds up a request: up to
//! [`BUFFERED_LINES`](super::log_writer::BUFFERED_LINES) lines wait in memory, and past that new
//! lines are dropped and counted (`hookgate_log_lines_dropped_total`). That thread writes the
//! lines of about 10 ms in one `write`. Dropping the [`Logging`] guard writes out what
//! waits.
//!
//! A panic is logged the same way (its message and where), not written by Rust's own hook.
//!
//! Text is journald-friendly: no colours unless stderr is a terminal, and when stderr is the
//! journal (systemd's `JOURNAL_STREAM` names it) no timestamp (journald stamps each line) but a
//! `<N>` syslog priority prefix, so `journalctl -p warning` finds warnings and errors.

use std::fmt;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

pub use super::log_writer::dropped_lines;
use super::log_writer::{self, WriterGuard};

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (journald-friendly).
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Keeps the log writer's thread; dropping it writes out the lines that wait (for up to 1 s).
#[must_use = "dropping the guard stops the log writer"]
pub struct Logging {
    _writer: WriterGuard,
}

/// Installs the global subscriber, writing to stderr from a thread of its own.
pub fn init(format: LogFormat) -> std::io::Result<Logging> {
    let (writer, guard) = log_writer::start(std::io::stderr())?;
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A panic's line whatever `RUST_LOG` says (`hookgate::forward=debug` dropped it).
    if let Ok(directive) = format!("{PANIC_TARGET}=error").parse() {
        filter = filter.add_directive(directive);
    }
    let flush = writer.clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text if stderr_is_journal() => {
            let text = tracing_subscriber::fmt::format()
                .with_ansi(false)
                .without_time();
            builder.event_format(Priority(text)).init();
        }
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    std::panic::set_hook(Box::new(move |info| {
        log_panic(info);
        // An abort may follow (a panic while unwinding): the line first.
        flush.wait_written(PANIC_WRITTEN_WITHIN);
    }));
    Ok(Logging { _writer: guard })
}

/// The target of a panic's line, which `RUST_LOG` cannot turn off.
const PANIC_TARGET: &str = "hookgate::panic";
/// How long a panicking thread waits for its line to be written.
const PANIC_WRITTEN_WITHIN: std::time::Duration = std::time::Duration::from_millis(200);

/// A panic, logged as every other line: Rust's own hook writes to stderr itself, and blocks
/// while nobody reads it (a stuck journald): the panicking task then never ended, and nothing
/// noticed it. With a backtrace when `RUST_BACKTRACE` asks for one.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let backtrace = std::backtrace::Backtrace::capture();
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("unnamed");
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        tracing::error!(target: PANIC_TARGET, thread, panic = %info, %backtrace, "A thread panicked.");
    } else {
        tracing::error!(target: PANIC_TARGET, thread, panic = %info, "A thread panicked.");
    }
}

/// Whether stderr is the stream systemd connected to the journal: `JOURNAL_STREAM` is its
/// `device:inode` (a child whose stderr was redirected inherits the variable, not the stream).
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|meta| names_stream(&stream, meta.dev(), meta.ino()))
}

/// Whether `JOURNAL_STREAM`'s `device:inode` is this device and inode.
fn names_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    journal_stream.split_once(':').is_some_and(|(d, i)| {
        d.parse::<u64>().is_ok_and(|d| d == dev) && i.parse::<u64>().is_ok_and(|i| i == ino)
    })
}

/// The syslog priority journald reads from a `<N>` line prefix.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// A text format behind the `<N>` priority prefix.
struct Priority<F>(F);

impl<S, N, F> FormatEvent<S, N> for Priority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        self.0.format_event(context, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert!(names_stream("8:1234", 8, 1234));
        assert!(!names_stream("8:1234", 8, 1235));
        assert!(!names_stream("9:1234", 8, 1234));
        assert!(!names_stream("garbage", 8, 1234));
        assert!(!names_stream("", 0, 0));
    }

    #[test]
    fn priorities_are_syslog_levels() {
        assert_eq!(syslog_priority(Level::ERROR), 3);
        assert_eq!(syslog_priority(Level::WARN), 4);
        assert_eq!(syslog_priority(Level::INFO), 6);
        assert_eq!(syslog_priority(Level::DEBUG), 7);
        assert_eq!(syslog_priority(Level::TRACE), 7);
    }
}
