//! glibc's allocator, told to give large buffers back to the system.
//!
//! glibc serves an allocation of at least its *mmap threshold* (128 KiB at first) with an `mmap`
//! of its own, unmapped when freed. But each time such a buffer is freed, it raises the threshold
//! to that buffer's size (up to 32 MiB). sled writes its log through buffers of a segment each
//! (512 KiB or 2 MiB), allocated and freed by whichever thread fills or writes them: once the
//! first is freed, the next ones come from the allocating thread's arena, and glibc keeps one
//! arena per thread (up to 16 on 2 cores). Those arenas keep what they once held, so a gateway's
//! RSS grew with every burst of sled's writes and every seal of a dedup run and never fell back.
//! A fixed threshold (a tunable read when the process starts) keeps every allocation of
//! [`MMAP_THRESHOLD`] or more out of the arenas. Measured on a 10 M-event store under load
//! through a seal of a dedup run: 220-222 MiB of peak RSS, against 250-271 without it
//! (docs/performance.md, "Memory").
//!
//! glibc reads its tunables only from the environment it starts with, and setting them from
//! inside the process takes `mallopt`, an `unsafe` call. So `serve` starts itself again, once,
//! with `GLIBC_TUNABLES` naming the threshold, before it reads any config or opens any file:
//! the same process (`exec` keeps its pid, its descriptors and systemd's notify socket) and
//! arguments. An operator who sets `glibc.malloc.mmap_threshold` in `GLIBC_TUNABLES` keeps
//! theirs.

use std::ffi::OsString;

/// Allocations of this many bytes or more are mapped on their own and unmapped when freed.
pub const MMAP_THRESHOLD: usize = 512 * 1024;

const TUNABLES: &str = "GLIBC_TUNABLES";
const THRESHOLD_TUNABLE: &str = "glibc.malloc.mmap_threshold";

/// What [`fix_mmap_threshold`] found, to log once logging is set up.
#[derive(Debug, PartialEq, Eq)]
pub enum Threshold {
    /// `GLIBC_TUNABLES` names a threshold (this process's own, after its restart, or the
    /// operator's).
    Set(String),
    /// Not glibc: nothing to tune.
    NotGlibc,
    /// Starting again failed; the process goes on with glibc's dynamic threshold.
    Failed(String),
}

/// Starts this process again with a fixed mmap threshold unless its environment has one; only
/// returns when it has (or cannot restart). Call before anything else: the restart loses every
/// thread, file and allocation.
pub fn fix_mmap_threshold() -> Threshold {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return Threshold::NotGlibc;
    }
    let current = std::env::var_os(TUNABLES).unwrap_or_default();
    if let Some(threshold) = named_threshold(&current) {
        return Threshold::Set(threshold);
    }
    restart_with(with_threshold(current))
}

/// The threshold `tunables` (`name=value` pairs separated by `:`) names, if it names one.
fn named_threshold(tunables: &OsString) -> Option<String> {
    tunables
        .to_string_lossy()
        .split(':')
        .find_map(|tunable| tunable.strip_prefix(THRESHOLD_TUNABLE)?.strip_prefix('='))
        .map(str::to_string)
}

/// `tunables` with [`MMAP_THRESHOLD`] added.
fn with_threshold(mut tunables: OsString) -> OsString {
    if !tunables.is_empty() {
        tunables.push(":");
    }
    tunables.push(format!("{THRESHOLD_TUNABLE}={MMAP_THRESHOLD}"));
    tunables
}

#[cfg(unix)]
fn restart_with(tunables: OsString) -> Threshold {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "hookgate".into());
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(TUNABLES, tunables)
        .exec();
    Threshold::Failed(error.to_string())
}

#[cfg(not(unix))]
fn restart_with(_tunables: OsString) -> Threshold {
    Threshold::NotGlibc
}

/// Logs what [`fix_mmap_threshold`] found.
pub fn log(threshold: &Threshold) {
    match threshold {
        Threshold::Set(bytes) => tracing::debug!(bytes = %bytes, "glibc's mmap threshold is fixed"),
        Threshold::NotGlibc => {}
        Threshold::Failed(error) => tracing::warn!(
            error = %error,
            "Could not start again with glibc's mmap threshold fixed ({TUNABLES}); going on \
             without: the gateway's memory may grow with bursts of writes"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_already_named_is_kept() {
        let named = |s: &str| named_threshold(&OsString::from(s));
        assert_eq!(
            named("glibc.malloc.mmap_threshold=4096"),
            Some("4096".into())
        );
        assert_eq!(
            named("glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536"),
            Some("65536".into())
        );
        assert_eq!(named(""), None);
        assert_eq!(named("glibc.malloc.arena_max=2"), None);
        assert_eq!(named("glibc.malloc.mmap_threshold_x=1"), None);
    }

    #[test]
    fn the_threshold_is_added_to_the_other_tunables() {
        assert_eq!(
            with_threshold(OsString::new()),
            OsString::from("glibc.malloc.mmap_threshold=524288")
        );
        assert_eq!(
            with_threshold(OsString::from("glibc.malloc.arena_max=2")),
            OsString::from("glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=524288")
        );
    }
}
