//! How the file system under the store is mounted: one check at open.
//!
//! A file system mounted with online discard (`-o discard`) sends the device a discard for the
//! blocks a journal commit frees, within that commit; an `fdatasync` that needs the commit waits
//! for them. hookgate frees many blocks at once when a compaction cuts the old copy away (and
//! sled when it gives segments back), so every commit's sync then stalls: in `cargo bench
//! --bench retention -- 2000000 1000`, commits beside the retention run had a p99 of 85 ms and
//! a maximum of 148-177 ms on this project's machine (ext4, `discard`), 27.85 and 45.92 ms on
//! an ext4 mounted without it (docs/performance.md). Periodic trimming (`fstrim.timer`) gives
//! the device the same information without stalling anyone, so the open warns.

use std::path::{Path, PathBuf};

/// Logs a warning when the file system holding `dir` is mounted with online discard.
pub fn warn_if_online_discard(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let Ok(dir) = dir.canonicalize() else { return };
    if let Some(mount) = mount_of(&mountinfo, &dir).filter(|m| m.online_discard) {
        tracing::warn!(
            dir = %dir.display(),
            mount_point = %mount.point.display(),
            "The store's file system is mounted with online discard (`discard`): freeing space \
             (retention, compaction) makes every fdatasync wait for the device, and commits \
             stall. Mount it without `discard` and trim it periodically (fstrim.timer)."
        );
    }
}

/// A mount, as `/proc/self/mountinfo` describes it.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    online_discard: bool,
}

/// The mount holding `path` (absolute, symlinks resolved): the last mounted of those with the
/// longest mount point that contains it.
fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    mountinfo
        .lines()
        .filter_map(parse_line)
        .filter(|mount| path.starts_with(&mount.point))
        .fold(None, |best: Option<Mount>, mount| match best {
            Some(best) if best.point.components().count() > mount.point.components().count() => {
                Some(best)
            }
            _ => Some(mount),
        })
}

/// One line: `id parent major:minor root mount_point mount_options [optional...] - fstype
/// source super_options`. Online discard shows in either list of options.
fn parse_line(line: &str) -> Option<Mount> {
    let (mine, theirs) = line.split_once(" - ")?;
    let fields: Vec<&str> = mine.split(' ').collect();
    let point = unescape(fields.get(4)?);
    let options = fields
        .get(5)?
        .split(',')
        .chain(theirs.split(' ').nth(2).unwrap_or("").split(','));
    let online_discard = options.into_iter().any(|option| option == "discard");
    Some(Mount {
        point: PathBuf::from(point),
        online_discard,
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space, and tab, newline, backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard,resv_strict
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw
40 22 252:16 / /var/lib/hookgate rw,noatime shared:20 - ext4 /dev/vdb rw,nodiscard
41 22 252:32 / /srv/web\\040hooks rw,discard shared:21 - xfs /dev/vdc rw
42 40 252:48 / /var/lib/hookgate/data rw,noatime - ext4 /dev/vdd rw
43 42 252:48 / /var/lib/hookgate/data rw,noatime - ext4 /dev/vdd rw,discard
";

    fn discard(path: &str) -> Option<bool> {
        mount_of(MOUNTINFO, Path::new(path)).map(|mount| mount.online_discard)
    }

    #[test]
    fn the_longest_mount_point_holding_the_path_decides() {
        assert_eq!(discard("/tmp/hookgate/data"), Some(true), "the root's");
        assert_eq!(discard("/var/lib/hookgate/other"), Some(false), "nodiscard");
        assert_eq!(
            discard("/var/lib/hookgatex"),
            Some(true),
            "not under /var/lib/hookgate"
        );
        assert_eq!(
            discard("/srv/web hooks/data"),
            Some(true),
            "per-mount option, escaped"
        );
    }

    #[test]
    fn the_last_mount_over_a_point_is_the_one_seen() {
        assert_eq!(discard("/var/lib/hookgate/data/current"), Some(true));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(mount_of("garbage\n1 2\n", Path::new("/")), None);
        assert_eq!(unescape("a\\040b\\134c\\9"), "a b\\c\\9");
    }
}
