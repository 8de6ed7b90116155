//! One gateway at a time on a data dir. The open removes the copies of the store that `current`
//! does not name, taking them for ones a crash interrupted (`place.rs`): a second gateway started
//! by mistake on a running one's data dir would remove the copy the first is writing, or the one
//! it just switched to. So before anything under `data_dir` is read or removed, the open takes an
//! exclusive lock (`flock`) on `data_dir/lock`, and the committer thread holds it until it ends;
//! the kernel lets go of it when the process dies, whatever kills it. sled's own lock on `db`
//! comes too late for this: it is taken on the copy `current` names, after the removal.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

const LOCK_FILE: &str = "lock";

/// The lock on a data dir, held while this value lives.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock on `data_dir`, or fails at once if another process holds it.
    pub fn take(data_dir: &Path) -> io::Result<DirLock> {
        Self::take_waiting(data_dir, Duration::ZERO)
    }

    /// Takes the lock on `data_dir`, waiting up to `wait` for its holder to let go of it (this
    /// process's own store, closing, at a stop's checkpoint).
    pub fn take_waiting(data_dir: &Path, wait: Duration) -> io::Result<DirLock> {
        let path = data_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(DirLock { _file: file }),
                Err(TryLockError::WouldBlock) if started.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!(
                            "another hookgate is using {} (it holds {}): stop it before \
                             starting this one",
                            data_dir.display(),
                            path.display()
                        ),
                    ))
                }
                Err(TryLockError::Error(err)) => {
                    return Err(io::Error::new(
                        err.kind(),
                        format!("cannot lock {}: {err}", path.display()),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_data_dir_is_refused_until_the_first_goes() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::take(dir.path()).unwrap();
        let err = DirLock::take(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("another hookgate is using"), "{err}");
        let waited = Instant::now();
        let waiter = std::thread::spawn({
            let dir = dir.path().to_path_buf();
            move || DirLock::take_waiting(&dir, Duration::from_secs(10))
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(first);
        waiter.join().unwrap().unwrap();
        assert!(waited.elapsed() < Duration::from_secs(5));
    }
}
