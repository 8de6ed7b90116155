//! The acknowledged watermark: a small file beside sled's, `<data_dir>/acked`, that holds a seq
//! every event up to which was acknowledged. It is written after the sync that made those events
//! durable (and after their answers, which need not wait for it), and fdatasynced at most once a
//! second (and at close), so it never runs ahead of the log and costs no fsync per batch.
//!
//! At open, a log that holds fewer events than the watermark names was damaged (truncated,
//! or cut short by a corrupt record that sled's recovery stops at): hookgate refuses to start
//! and names the file, instead of serving a store that silently lost acknowledged events. A
//! loss of only the acknowledgements of the last second before the damage goes unseen.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::event::Seq;

/// Opens `path` to read and write, creating it empty if it is not there.
pub fn open_or_create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// How often the watermark reaches the disk.
const SYNC_EVERY: Duration = Duration::from_secs(1);
const MAGIC: &[u8; 4] = b"hgw1";

pub struct Watermark {
    path: PathBuf,
    file: File,
    /// What the file says, and whether that is on disk yet.
    written: Seq,
    dirty: bool,
    synced_at: Instant,
}

impl Watermark {
    /// Opens (or creates) the watermark of the store under `dir`, and reads it.
    pub fn open(dir: &Path) -> io::Result<Watermark> {
        let path = dir.join("acked");
        let file = open_or_create(&path)?;
        let mut bytes = [0u8; 16];
        let read = file.read_at(&mut bytes, 0)?;
        let written = match read {
            0 => Seq(0),
            16 => decode(&bytes)
                .ok_or_else(|| io::Error::other(format!("{} is corrupt", path.display())))?,
            _ => return Err(io::Error::other(format!("{} is truncated", path.display()))),
        };
        Ok(Watermark {
            path,
            file,
            written,
            dirty: false,
            synced_at: Instant::now(),
        })
    }

    /// The seq the file says every event up to was acknowledged.
    pub fn acked(&self) -> Seq {
        self.written
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that every event up to `seq` is durable; fdatasyncs the file when the last
    /// sync is a second old, or when `now` is asked (at close).
    pub fn advance(&mut self, seq: Seq, now: bool) -> io::Result<()> {
        if seq > self.written {
            self.file.write_at(&encode(seq), 0)?;
            self.written = seq;
            self.dirty = true;
        }
        if self.dirty && (now || self.synced_at.elapsed() >= SYNC_EVERY) {
            self.file.sync_data()?;
            self.dirty = false;
            self.synced_at = Instant::now();
        }
        Ok(())
    }
}

fn encode(seq: Seq) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(MAGIC);
    bytes[4..12].copy_from_slice(&seq.to_key());
    let check = checksum(&bytes[..12]);
    bytes[12..].copy_from_slice(&check.to_be_bytes());
    bytes
}

fn decode(bytes: &[u8; 16]) -> Option<Seq> {
    let check = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    (&bytes[..4] == MAGIC && check == checksum(&bytes[..12]))
        .then(|| Seq::from_key(&bytes[4..12]))?
}

/// FNV-1a: enough to tell a torn or flipped 16-byte file from a written one.
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_round_trip_and_only_rise() {
        let dir = tempfile::tempdir().unwrap();
        let mut mark = Watermark::open(dir.path()).unwrap();
        assert_eq!(mark.acked(), Seq(0));
        mark.advance(Seq(42), true).unwrap();
        mark.advance(Seq(7), true).unwrap();
        assert_eq!(Watermark::open(dir.path()).unwrap().acked(), Seq(42));
    }

    #[test]
    fn a_damaged_watermark_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut mark = Watermark::open(dir.path()).unwrap();
        mark.advance(Seq(42), true).unwrap();
        let mut bytes = std::fs::read(dir.path().join("acked")).unwrap();
        bytes[6] ^= 1;
        std::fs::write(dir.path().join("acked"), &bytes).unwrap();
        assert!(Watermark::open(dir.path()).is_err());
        std::fs::write(dir.path().join("acked"), &bytes[..9]).unwrap();
        assert!(Watermark::open(dir.path()).is_err());
    }
}
