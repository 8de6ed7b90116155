//! Where sled's files live under `data_dir`, so that a compaction (`compact/`) can write a
//! fresh copy beside them and switch to it at once.
//!
//! - Without a `current` file, sled's files (`db`, `conf`, `snap.*`, `blobs/`) are in
//!   `data_dir` itself: every store until its first compaction.
//! - `data_dir/current` names the subdirectory that holds them, `sled.<n>`. It is replaced by a
//!   rename, after its new version and `sled.<n>`'s files were fsynced, so a power loss leaves
//!   either the old name or the new one, each naming a complete store.
//! - Whatever `current` does not name (an older copy, or a copy a crash interrupted) is removed
//!   at open and after each switch. Without `current` and without sled's files in `data_dir`,
//!   a copy is no interrupted one but the store whose pointer was lost: the open refuses.
//!
//! The watermark (`acked`) stays in `data_dir`: it names seqs, which a copy keeps.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

const CURRENT: &str = "current";
/// What the old `db` in `data_dir` is renamed to before its gradual removal (`old_copies.rs`):
/// a `db` there means the store never switched to a copy, whatever else is missing.
pub const OLD_ROOT_DB: &str = "db.old";
const PREFIX: &str = "sled.";
/// sled 0.34's files and directories in the directory it is given.
const SLED_FILES: [&str; 3] = ["db", "conf", "blobs"];

/// The directory that holds the store's sled files.
pub fn live_dir(data_dir: &Path) -> io::Result<PathBuf> {
    match std::fs::read_to_string(data_dir.join(CURRENT)) {
        Ok(name) => {
            let name = name.trim();
            if !is_copy(name) {
                return Err(io::Error::other(format!(
                    "{} names {name:?}, not a sled.<n> directory",
                    data_dir.join(CURRENT).display()
                )));
            }
            let dir = data_dir.join(name);
            // Never a new, empty store in place of a lost one.
            if !dir.join("db").is_file() {
                return Err(io::Error::other(format!(
                    "{} names {name}, which holds no store: restore the data dir from a backup",
                    data_dir.join(CURRENT).display()
                )));
            }
            Ok(dir)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            // Without a pointer, the copies are taken for interrupted ones and removed: never
            // the only store, when the pointer to it was lost (a switch makes the pointer
            // durable before sled's files in `data_dir` go).
            let copies = stores_in_copies(data_dir);
            if !data_dir.join("db").is_file() && !copies.is_empty() {
                return Err(io::Error::other(format!(
                    "{} is missing, and sled's files are only in {}: write the name of the \
                     copy that was live into it, a line of its own, or restore the data dir \
                     from a backup",
                    data_dir.join(CURRENT).display(),
                    copies.join(", ")
                )));
            }
            Ok(data_dir.to_path_buf())
        }
        Err(err) => Err(io::Error::new(
            err.kind(),
            format!("{}: {err}", data_dir.join(CURRENT).display()),
        )),
    }
}

/// The `sled.<n>` directories under `data_dir` that hold a `db`, by name.
fn stores_in_copies(data_dir: &Path) -> Vec<String> {
    let Ok(listing) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    let mut copies: Vec<String> = listing
        .flatten()
        .filter(|entry| entry.path().join("db").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| is_copy(name))
        .collect();
    copies.sort();
    copies
}

/// Where the next copy goes: the first `sled.<n>` after the live one.
pub fn next_dir(data_dir: &Path, live: &Path) -> PathBuf {
    let n = live
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix(PREFIX))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    data_dir.join(format!("{PREFIX}{}", n + 1))
}

/// Makes `dir` (a `sled.<n>` under `data_dir`, whose files are synced) the live store, durably.
pub fn point_to(data_dir: &Path, dir: &Path) -> io::Result<()> {
    let name = dir
        .file_name()
        .and_then(|name| name.to_str())
        .filter(|name| is_copy(name))
        .ok_or_else(|| io::Error::other(format!("{} is not a sled.<n>", dir.display())))?;
    let temporary = data_dir.join(format!("{CURRENT}.new"));
    let mut file = File::create(&temporary)?;
    file.write_all(format!("{name}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, data_dir.join(CURRENT))?;
    File::open(data_dir)?.sync_all()
}

/// What earlier copies of the store left under `data_dir` beside `live`: every copy but `live`
/// (an older one, or one a crash interrupted), a half-written pointer, and sled's files in
/// `data_dir` once a copy is live. `old_copies.rs` removes them.
pub fn old_paths(data_dir: &Path, live: &Path) -> Vec<PathBuf> {
    let Ok(listing) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    let root_is_old = live != data_dir;
    let mut old = Vec::new();
    for entry in listing.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let old_copy = (is_copy(name) && path != live)
            || name == format!("{CURRENT}.new")
            || name == OLD_ROOT_DB
            || (root_is_old && (SLED_FILES.contains(&name) || name.starts_with("snap.")));
        if old_copy {
            old.push(path);
        }
    }
    old.sort();
    old
}

fn is_copy(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pointer_moves_and_what_it_left_goes() {
        let data = tempfile::tempdir().unwrap();
        let root = data.path();
        assert_eq!(live_dir(root).unwrap(), root);
        for file in ["db", "conf", "snap.0000001", "acked"] {
            std::fs::write(root.join(file), b"x").unwrap();
        }
        let first = next_dir(root, root);
        assert_eq!(first, root.join("sled.1"));
        std::fs::create_dir(&first).unwrap();
        std::fs::write(first.join("db"), b"x").unwrap();
        point_to(root, &first).unwrap();
        assert_eq!(live_dir(root).unwrap(), first);
        let old = old_paths(root, &first);
        assert_eq!(
            old,
            ["conf", "db", "snap.0000001"].map(|name| root.join(name))
        );

        let second = next_dir(root, &first);
        assert_eq!(second, root.join("sled.2"));
        std::fs::create_dir(&second).unwrap();
        // A copy interrupted before the switch goes at the next open.
        assert!(old_paths(root, &first).contains(&second));
        assert!(!old_paths(root, &second).contains(&second));
    }

    #[test]
    fn a_lost_pointer_to_the_only_store_is_refused_not_taken_for_an_empty_store() {
        let data = tempfile::tempdir().unwrap();
        let root = data.path();
        let copy = root.join("sled.3");
        std::fs::create_dir(&copy).unwrap();
        std::fs::write(copy.join("db"), b"x").unwrap();
        let err = live_dir(root).unwrap_err().to_string();
        assert!(
            err.contains("current is missing") && err.contains("sled.3"),
            "{err}"
        );
        // With sled's files in `data_dir` too, the copy is one a crash interrupted.
        std::fs::write(root.join("db"), b"x").unwrap();
        assert_eq!(live_dir(root).unwrap(), root);
    }

    #[test]
    fn a_pointer_to_elsewhere_or_to_nothing_is_refused() {
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("current"), "../etc\n").unwrap();
        assert!(live_dir(data.path()).is_err());
        std::fs::write(data.path().join("current"), "sled.3\n").unwrap();
        let err = live_dir(data.path()).unwrap_err().to_string();
        assert!(err.contains("sled.3, which holds no store"), "{err}");
    }
}
