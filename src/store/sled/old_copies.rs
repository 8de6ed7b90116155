//! Removing what earlier copies of the store left (`place::old_paths`), gradually and in a thread
//! of its own: after each compaction's switch, and at open (a crash may have left a copy, or the
//! rest of an old file). Nothing waits for it: not the open (removing ~12 GB at once held a start
//! 1.5 s), not the sweeper (a compaction of the bench's 10 M events left ~12 GB, ~110 s of
//! removal), not a stop (it gives up between two cuts; the next open removes the rest). No
//! compaction begins until it is done, as a copy may take the name of one being removed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::place;

// An old copy's big files are cut [`STEP`] bytes at a time from their end before they are
// unlinked, resting [`REST`] or four times what the cut took, whichever is longer: the file
// system frees a 3 GB file's blocks in one journal transaction otherwise, and the committer's
// fdatasync waits behind it (the retention bench's commits stalled ~1.5 s at 1,000/s). Cuts of
// 64 MB with 10 ms rests still stalled them up to 460 ms; these, about 150 ms every 2 s while a
// 3 GB file goes (24 s). RocksDB deletes its files the same way. Those waits are the file
// system's online discard: without it, none was over 46 ms (`mount.rs`).
const STEP: u64 = 8 * 1024 * 1024;
const REST: Duration = Duration::from_millis(50);

/// Test hook: the rest between two cuts, in milliseconds, instead of [`REST`] (a test stops the
/// gateway while a removal is under way).
pub const REST_ENV: &str = "HOOKGATE_TEST_REMOVAL_REST_MS";

/// The removal of old copies under way, if any.
#[derive(Default)]
pub struct OldCopies {
    /// Set once the last removal started is over (or none was started).
    gone: Arc<AtomicBool>,
    /// Set to make the removal give up at its next cut.
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl OldCopies {
    /// Starts removing, in a thread of its own, whatever is under `data_dir` beside `live`;
    /// `done` runs once it is removed (with how long that took), unless the removal was stopped.
    /// Failures are logged: what is left only takes disk until the next open.
    pub fn remove(
        &self,
        data_dir: &Path,
        live: &Path,
        done: impl FnOnce(Duration) + Send + 'static,
    ) -> io::Result<()> {
        // The one before is over: compactions wait for it, and the open's comes first.
        self.join();
        self.gone.store(false, Ordering::Release);
        let old = out_of_the_way(data_dir, place::old_paths(data_dir, live))
            .inspect_err(|_| self.gone.store(true, Ordering::Release))?;
        if !old.is_empty() {
            let bytes: u64 = old.iter().map(|path| size(path)).sum();
            tracing::info!(
                paths = old.len(),
                mb = bytes >> 20,
                "Removing old copies of the store, gradually, in the background."
            );
        }
        let (gone, stop) = (self.gone.clone(), self.stop.clone());
        let spawned = std::thread::Builder::new()
            .name("hookgate-remove-old".into())
            .spawn(move || {
                let started = Instant::now();
                let rest = std::env::var(REST_ENV)
                    .ok()
                    .and_then(|ms| ms.parse().ok())
                    .map_or(REST, Duration::from_millis);
                let all = old.iter().all(|path| match remove_path(path, rest, &stop) {
                    Ok(()) => true,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => false,
                    Err(err) => {
                        tracing::warn!(path = %path.display(), error = %err, "Cannot remove an old copy of the store.");
                        true
                    }
                });
                gone.store(true, Ordering::Release);
                if all {
                    done(started.elapsed());
                }
            });
        // Nothing removes them then: nothing holds compactions off either.
        let thread = spawned.inspect_err(|_| self.gone.store(true, Ordering::Release))?;
        *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(())
    }

    /// Whether the last removal started is over.
    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Makes the removal under way give up at its next cut, and waits for it (at a close, so that
    /// a store opened again in this process is the only one removing).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.join();
        self.stop.store(false, Ordering::Release);
    }

    fn join(&self) {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// `old`, with `data_dir`'s own `db` (the log of the store before its first copy) renamed, and
/// that made durable, before anything of it is cut: a `db` in `data_dir` is what tells the
/// open that no copy is live when `current` is missing. Left there while it was cut (tens of
/// seconds for a large store), a lost `current` had the open take the half-cut old log for the
/// store, and remove the live copy.
fn out_of_the_way(data_dir: &Path, old: Vec<PathBuf>) -> io::Result<Vec<PathBuf>> {
    let root_db = data_dir.join("db");
    if !old.contains(&root_db) {
        return Ok(old);
    }
    let renamed = data_dir.join(place::OLD_ROOT_DB);
    std::fs::rename(&root_db, &renamed)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    let mut old: Vec<PathBuf> = old.into_iter().filter(|path| *path != root_db).collect();
    if !old.contains(&renamed) {
        old.push(renamed);
    }
    Ok(old)
}

/// The bytes of the files under `path` (0 for what cannot be read).
fn size(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::read_dir(path)
            .map(|entries| entries.flatten().map(|entry| size(&entry.path())).sum())
            .unwrap_or(0),
        Ok(meta) => meta.len(),
        Err(_) => 0,
    }
}

/// Removes `path`, a file or a directory, cutting big files [`STEP`] bytes at a time; fails with
/// `Interrupted` once `stop` is set.
fn remove_path(path: &PathBuf, rest: Duration, stop: &AtomicBool) -> io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            remove_path(&entry?.path(), rest, stop)?;
        }
        return std::fs::remove_dir_all(path);
    }
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let mut len = file.metadata()?.len();
    while len > STEP {
        if stop.load(Ordering::Acquire) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        len -= STEP;
        let cut = Instant::now();
        file.set_len(len)?;
        sleep_unless_stopped(rest.max(cut.elapsed() * 4), stop);
    }
    std::fs::remove_file(path)
}

/// Sleeps `rest`, in steps of at most 50 ms so that a stop is heard soon.
fn sleep_unless_stopped(rest: Duration, stop: &AtomicBool) {
    let until = Instant::now() + rest;
    while !stop.load(Ordering::Acquire) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(REST));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The old log in `data_dir` is out of the way before its removal begins: left there while
    /// it was cut, a lost `current` had the open take it for the store (and remove the copy).
    #[test]
    fn the_old_root_log_is_renamed_before_it_is_cut() {
        let data = tempfile::tempdir().unwrap();
        let root = data.path();
        let live = root.join("sled.1");
        std::fs::create_dir(&live).unwrap();
        std::fs::write(live.join("db"), b"x").unwrap();
        std::fs::write(root.join("current"), b"sled.1\n").unwrap();
        std::fs::write(root.join("conf"), b"segment_size: 2097152\n").unwrap();
        std::fs::File::create(root.join("db"))
            .unwrap()
            .set_len(3 * STEP + 1)
            .unwrap();
        let copies = OldCopies::default();
        let (sender, removed) = std::sync::mpsc::channel();
        copies
            .remove(root, &live, move |_| sender.send(()).unwrap())
            .unwrap();
        assert!(!root.join("db").exists(), "renamed before the first cut");
        std::fs::remove_file(root.join("current")).unwrap();
        let refused = place::live_dir(root).expect_err("no store in data_dir itself");
        assert!(refused.to_string().contains("sled.1"), "{refused}");
        removed.recv_timeout(Duration::from_secs(30)).unwrap();
        copies.join();
        assert!(!root.join(place::OLD_ROOT_DB).exists());
        assert!(live.join("db").exists());
    }

    #[test]
    fn old_copies_go_in_the_background_and_a_stop_leaves_the_rest() {
        let data = tempfile::tempdir().unwrap();
        let root = data.path();
        let live = root.join("sled.2");
        std::fs::create_dir(&live).unwrap();
        std::fs::write(live.join("db"), b"x").unwrap();
        std::fs::write(root.join("current"), b"sled.2\n").unwrap();
        let old = root.join("sled.1");
        std::fs::create_dir(&old).unwrap();
        // Three cuts of 8 MiB (sparse: no disk needed).
        std::fs::File::create(old.join("db"))
            .unwrap()
            .set_len(3 * STEP + 1)
            .unwrap();

        let copies = OldCopies::default();
        let (sender, removed) = std::sync::mpsc::channel();
        copies
            .remove(root, &live, move |_| sender.send(()).unwrap())
            .unwrap();
        removed.recv_timeout(Duration::from_secs(30)).unwrap();
        copies.join();
        assert!(copies.gone());
        assert!(!old.exists() && live.join("db").exists());

        // A stop gives up between two cuts: the file is shorter, `done` never runs.
        std::fs::create_dir(&old).unwrap();
        std::fs::File::create(old.join("db"))
            .unwrap()
            .set_len(3 * STEP + 1)
            .unwrap();
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        let cut = std::thread::scope(|scope| {
            let removing = scope.spawn(|| remove_path(&old, Duration::from_secs(60), &stop));
            while std::fs::metadata(old.join("db")).unwrap().len() > 2 * STEP + 1 {
                std::thread::sleep(Duration::from_millis(5));
            }
            stop.store(true, Ordering::Release);
            removing.join().unwrap()
        });
        assert_eq!(cut.unwrap_err().kind(), io::ErrorKind::Interrupted);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(
            std::fs::metadata(old.join("db")).unwrap().len(),
            2 * STEP + 1
        );
    }
}
