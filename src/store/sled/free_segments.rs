//! Counting the free segments of sled's `db` file, which decide how long sled takes to open.
//!
//! sled 0.34 writes every segment that holds no live page whole, with zeros, at every open
//! (`SegmentAccountant::initialize_from_snapshot`): ~0.9 ms a 2 MiB segment here, and the
//! first `fdatasync` after writes them back. A retention sweep frees segments that nothing
//! fills until new events reuse them or the compaction after its pass copies the store
//! afresh: 3,025 free segments of the 10 M-event store made each open ~3 s
//! (docs/performance.md, "Start-up after a crash during a sweep"). Counted right after an open,
//! the segments whose 20-byte header is zero are exactly those sled zeroed (or had never
//! used): what the next open will write again, at least.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use crate::metrics::Metrics;

/// sled 0.34's segment header (`SEG_HEADER_LEN`): zero in a free segment once sled has opened.
const HEADER: usize = 20;

/// From this many free segments on (~0.5 s of every open), an open says why it was slow.
pub const WARN_FROM: u64 = 512;

/// The free segments of sled's file under `dir`, and all its segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FreeSegments {
    pub free: u64,
    pub all: u64,
}

/// Counts them (one read of a header per segment; sled read them all during its open, so they
/// are in the page cache).
pub fn count(dir: &Path) -> io::Result<FreeSegments> {
    let segment = super::segment_bytes(dir) as u64;
    let db = File::open(dir.join("db"))?;
    let all = db.metadata()?.len() / segment;
    let mut header = [0u8; HEADER];
    let mut free = 0;
    for index in 0..all {
        db.read_exact_at(&mut header, index * segment)?;
        if header == [0; HEADER] {
            free += 1;
        }
    }
    Ok(FreeSegments { free, all })
}

/// Counts them right after an open, into `hookgate_store_free_segments`. Returns how many are
/// free (0 if they could not be counted: logged).
pub fn observe(dir: &Path, metrics: &Metrics) -> u64 {
    match count(dir) {
        Ok(segments) => {
            metrics
                .store_free_segments
                .set(i64::try_from(segments.free).unwrap_or(i64::MAX));
            segments.free
        }
        Err(err) => {
            tracing::warn!(error = %err, dir = %dir.display(), "Cannot count the free segments of sled's file.");
            0
        }
    }
}

/// Says why an open was slow, when free segments are why.
pub fn warn_if_many(free: u64, open: Duration) {
    if free >= WARN_FROM {
        tracing::warn!(
            free_segments = free,
            sled_ms = open.as_millis() as u64,
            "sled's file holds many free segments (space retention freed), and sled 0.34 writes \
             each whole with zeros at every open, ~1 ms apiece: starts and checkpoints are slow \
             until new events fill them or the compaction after the retention pass gives them back."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;

    #[test]
    fn segments_emptied_by_deletes_are_counted_free_after_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::default();
        let value = vec![7u8; 20_000];
        {
            let db = super::super::open_db(dir.path(), &config).unwrap();
            for key in 0..2_000u32 {
                db.insert(key.to_be_bytes(), value.as_slice()).unwrap();
            }
            db.flush().unwrap();
        }
        let filled = {
            let _db = super::super::open_db(dir.path(), &config).unwrap();
            count(dir.path()).unwrap()
        };
        assert!(
            filled.all >= 19,
            "40 MB of values in 2 MiB segments: {filled:?}"
        );
        assert!(
            filled.free < filled.all / 3,
            "a store just filled: {filled:?}"
        );
        {
            let db = super::super::open_db(dir.path(), &config).unwrap();
            for key in 0..2_000u32 {
                db.remove(key.to_be_bytes()).unwrap();
            }
            db.flush().unwrap();
        }
        let emptied = {
            let _db = super::super::open_db(dir.path(), &config).unwrap();
            count(dir.path()).unwrap()
        };
        // sled cuts free segments off the file's end ("truncate if possible", segment.rs:709),
        // depending on when each was freed: those count with the free ones.
        let cut = filled.all.saturating_sub(emptied.all);
        assert!(
            emptied.free + cut >= filled.free + filled.all / 2,
            "every value removed: most segments free or cut: {emptied:?} (filled: {filled:?})"
        );
    }
}
