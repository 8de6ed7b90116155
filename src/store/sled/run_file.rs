//! A copy of each sealed dedup run in a file of its own, read while sled is closed for a
//! checkpoint (`checkpoint/`): a new event whose key a run's filter "may" hold is then told
//! from the file, duplicate or new, instead of waiting for sled. At 10 M keys the ~38 runs'
//! filters answer "maybe" for ~3.4 % of new events, which were all held while sled reopened, and
//! at 64 connections all 64 were held at some checkpoints.
//!
//! The copy is a cache, never the record: sled holds the run. The file is written as the run is
//! (the same values, in key order), renamed into place once complete, and never fsynced. Each
//! value and the index carry a CRC-32, and a file that does not check out is not used: the
//! event waits for sled, as it would without a file. A run without a usable file (sealed by an
//! earlier hookgate, or whose file was lost or found damaged) is copied from sled again, in
//! steps (`runs/`); until then its "maybe" keys wait for sled.
//!
//! Layout of `<data_dir>/dedup-runs/<id>.run`: the run's values, one after another; then the
//! index, per value: its first key (u16 LE length, bytes), offset (u64 LE), length (u32 LE) and
//! CRC-32 (u32 LE); then the index's length (u64 LE), its CRC-32 (u32 LE), the run's count of
//! keys and the seq it goes through (u64 LE each, as sled's summary of the run says) and
//! [`MAGIC`]. A file is used only for the run sled holds under its id: a run sealed, lost to a
//! power loss before sled kept it, and sealed again under the same id with other keys must not
//! be answered from the first one's file, were a power loss to bring that back. (Files of
//! `HGRUN001`, without the two numbers, are copied again from sled.)

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::claims::entries;
use crate::event::Seq;

const MAGIC: &[u8; 8] = b"HGRUN002";
const FOOTER: usize = 8 + 4 + 8 + 8 + 8;
const SUFFIX: &str = "run";

/// The directory of the runs' files, in the data dir.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("dedup-runs")
}

fn path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.{SUFFIX}"))
}

/// Removes run `id`'s file, if it has one.
pub fn remove(dir: &Path, id: u32) {
    match std::fs::remove_file(path(dir, id)) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => tracing::warn!(error = %err, run = id, "Cannot remove a dedup run's file."),
    }
}

/// Removes every file in `dir` but those of the runs in `kept` (runs dropped, or half written
/// when hookgate stopped).
pub fn remove_others(dir: &Path, kept: &[u32]) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in listing.flatten() {
        let path = entry.path();
        let id = Some(&path)
            .filter(|path| path.extension().is_some_and(|ext| ext == SUFFIX))
            .and_then(|path| path.file_stem()?.to_str()?.parse::<u32>().ok());
        if id.is_none_or(|id| !kept.contains(&id)) {
            if let Err(err) = std::fs::remove_file(&path) {
                tracing::warn!(error = %err, path = %path.display(), "Cannot remove a stale dedup run file.");
            }
        }
    }
}

/// A run's file being written, value by value, in key order.
pub struct Writer {
    out: BufWriter<File>,
    partial: PathBuf,
    path: PathBuf,
    index: Vec<u8>,
    offset: u64,
}

impl Writer {
    pub fn create(dir: &Path, id: u32) -> io::Result<Writer> {
        std::fs::create_dir_all(dir)?;
        let path = path(dir, id);
        let partial = path.with_extension("partial");
        Ok(Writer {
            out: BufWriter::new(File::create(&partial)?),
            partial,
            path,
            index: Vec::new(),
            offset: 0,
        })
    }

    /// Appends a value whose first entry's key is `first_key`.
    pub fn append(&mut self, first_key: &[u8], value: &[u8]) -> io::Result<()> {
        let key_len = u16::try_from(first_key.len()).map_err(io::Error::other)?;
        let len = u32::try_from(value.len()).map_err(io::Error::other)?;
        self.out.write_all(value)?;
        self.index.extend_from_slice(&key_len.to_le_bytes());
        self.index.extend_from_slice(first_key);
        self.index.extend_from_slice(&self.offset.to_le_bytes());
        self.index.extend_from_slice(&len.to_le_bytes());
        self.index
            .extend_from_slice(&crc32fast::hash(value).to_le_bytes());
        self.offset += u64::from(len);
        Ok(())
    }

    /// Writes the index and the run's identity (its `keys` and `through`), and puts the file
    /// in place.
    pub fn finish(mut self, keys: u64, through: Seq) -> io::Result<RunFile> {
        let index_crc = crc32fast::hash(&self.index);
        self.out.write_all(&self.index)?;
        self.out
            .write_all(&(self.index.len() as u64).to_le_bytes())?;
        self.out.write_all(&index_crc.to_le_bytes())?;
        self.out.write_all(&keys.to_le_bytes())?;
        self.out.write_all(&through.0.to_le_bytes())?;
        self.out.write_all(MAGIC)?;
        self.out.flush()?;
        std::fs::rename(&self.partial, &self.path)?;
        Ok(RunFile {
            file: File::open(&self.path)?,
            index_at: self.offset,
            index_len: self.index.len(),
            index_crc,
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A writer given up (or finished: then the partial file has been renamed already).
        let _ = std::fs::remove_file(&self.partial);
    }
}

/// A run's complete file.
pub struct RunFile {
    file: File,
    index_at: u64,
    index_len: usize,
    index_crc: u32,
}

impl RunFile {
    /// Run `id`'s file, if it has one whose footer and index check out, written for the run of
    /// `keys` keys through `through`.
    pub fn open(dir: &Path, id: u32, keys: u64, through: Seq) -> Option<RunFile> {
        let file = File::open(path(dir, id)).ok()?;
        let size = file.metadata().ok()?.len();
        let mut footer = [0u8; FOOTER];
        file.read_exact_at(&mut footer, size.checked_sub(FOOTER as u64)?)
            .ok()?;
        let number = |at: usize| u64::from_le_bytes(footer[at..at + 8].try_into().expect("8"));
        if &footer[28..] != MAGIC || number(12) != keys || number(20) != through.0 {
            return None;
        }
        let index_len = u64::from_le_bytes(footer[..8].try_into().ok()?);
        let run = RunFile {
            index_at: size.checked_sub(FOOTER as u64)?.checked_sub(index_len)?,
            index_len: usize::try_from(index_len).ok()?,
            index_crc: u32::from_le_bytes(footer[8..12].try_into().ok()?),
            file,
        };
        run.index().ok()?;
        Some(run)
    }

    fn index(&self) -> io::Result<Vec<u8>> {
        let mut index = vec![0u8; self.index_len];
        self.file.read_exact_at(&mut index, self.index_at)?;
        if crc32fast::hash(&index) != self.index_crc {
            return Err(corrupt("index"));
        }
        Ok(index)
    }

    /// The seq `wanted` was first stored under, if the run holds it. `Err`: the file could not
    /// be read, or does not check out.
    pub fn find(&self, wanted: &[u8]) -> io::Result<Option<Seq>> {
        let index = self.index()?;
        // The last value whose first key is at most `wanted`.
        let mut found = None;
        for item in IndexItems(&index) {
            let (first_key, place) = item?;
            if first_key > wanted {
                break;
            }
            found = Some(place);
        }
        let Some((offset, len, crc)) = found else {
            return Ok(None);
        };
        let mut value = vec![0u8; len as usize];
        self.file.read_exact_at(&mut value, offset)?;
        if len == 0 || crc32fast::hash(&value) != crc {
            return Err(corrupt("value"));
        }
        let seq = entries(&value)
            .find(|(key, _, _)| *key == wanted)
            .map(|(_, seq, _)| seq);
        Ok(seq)
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("a dedup run file's {what} does not match its CRC"),
    )
}

/// The index's values: first key, and (offset, length, CRC-32).
struct IndexItems<'a>(&'a [u8]);

impl<'a> Iterator for IndexItems<'a> {
    type Item = io::Result<(&'a [u8], (u64, u32, u32))>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let item = (|| {
            let len = usize::from(u16::from_le_bytes(self.0.get(..2)?.try_into().ok()?));
            let key = self.0.get(2..2 + len)?;
            let rest = self.0.get(2 + len..18 + len)?;
            let offset = u64::from_le_bytes(rest[..8].try_into().ok()?);
            let value_len = u32::from_le_bytes(rest[8..12].try_into().ok()?);
            let crc = u32::from_le_bytes(rest[12..16].try_into().ok()?);
            self.0 = &self.0[18 + len..];
            Some((key, (offset, value_len, crc)))
        })();
        match item {
            Some(item) => Some(Ok(item)),
            None => {
                self.0 = &[];
                Some(Err(corrupt("index")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::claims::push_entry;

    fn key(n: u32) -> Vec<u8> {
        format!("p\0id-{n:06}").into_bytes()
    }

    /// A run of keys 0, 2, 4, ... < 2 * `keys` (seq n + 1), in values of 100 entries.
    fn write(dir: &Path, id: u32, keys: u32) -> RunFile {
        let mut writer = Writer::create(dir, id).unwrap();
        let all: Vec<u32> = (0..keys).map(|n| 2 * n).collect();
        for chunk in all.chunks(100) {
            let mut value = Vec::new();
            for n in chunk {
                push_entry(&mut value, &key(*n), Seq(u64::from(*n) + 1), 7);
            }
            writer.append(&key(chunk[0]), &value).unwrap();
        }
        writer
            .finish(u64::from(keys), Seq(u64::from(keys) * 2))
            .unwrap()
    }

    /// The file of another run sealed under the same id (lost to a power loss before sled kept
    /// it) is not the file of this one.
    #[test]
    fn a_file_written_for_another_run_of_the_id_is_not_used() {
        let temp = tempfile::tempdir().unwrap();
        write(temp.path(), 2, 300);
        assert!(RunFile::open(temp.path(), 2, 300, Seq(600)).is_some());
        assert!(RunFile::open(temp.path(), 2, 301, Seq(600)).is_none());
        assert!(RunFile::open(temp.path(), 2, 300, Seq(602)).is_none());
    }

    #[test]
    fn every_key_is_found_with_its_seq_and_no_other() {
        let temp = tempfile::tempdir().unwrap();
        let run = write(temp.path(), 3, 1_000);
        for n in 0..2_000u32 {
            let expected = (n % 2 == 0).then_some(Seq(u64::from(n) + 1));
            assert_eq!(run.find(&key(n)).unwrap(), expected, "key {n}");
        }
        assert_eq!(run.find(b"a").unwrap(), None, "before the first key");
        assert_eq!(run.find(b"z").unwrap(), None, "after the last key");
        let reopened = RunFile::open(temp.path(), 3, 1_000, Seq(2_000)).expect("it checks out");
        assert_eq!(reopened.find(&key(1_998)).unwrap(), Some(Seq(1_999)));
        assert!(
            RunFile::open(temp.path(), 4, 1_000, Seq(2_000)).is_none(),
            "no such run"
        );
    }

    #[test]
    fn a_damaged_file_is_never_taken_for_an_answer() {
        let temp = tempfile::tempdir().unwrap();
        write(temp.path(), 1, 1_000);
        let file = path(temp.path(), 1);
        let bytes = std::fs::read(&file).unwrap();

        // A value flipped: its lookups fail, the file still opens (its index checks out).
        let mut flipped = bytes.clone();
        flipped[10] ^= 0x40;
        std::fs::write(&file, &flipped).unwrap();
        let run = RunFile::open(temp.path(), 1, 1_000, Seq(2_000)).expect("the index checks out");
        assert!(run.find(&key(0)).is_err(), "the first value is damaged");
        assert_eq!(run.find(&key(1_000)).unwrap(), Some(Seq(1_001)));

        // Zeros where the values were (written, renamed, never reached the disk).
        let mut zeroed = bytes.clone();
        let index_len = u64::from_le_bytes(bytes[bytes.len() - FOOTER..][..8].try_into().unwrap());
        let index_at = bytes.len() - FOOTER - index_len as usize;
        zeroed[..index_at].fill(0);
        std::fs::write(&file, &zeroed).unwrap();
        let run = RunFile::open(temp.path(), 1, 1_000, Seq(2_000)).expect("the index checks out");
        assert!(run.find(&key(500)).is_err());

        // The index or the footer damaged, or the file cut short: not used at all.
        let mut index_flipped = bytes.clone();
        index_flipped[index_at + 3] ^= 1;
        std::fs::write(&file, &index_flipped).unwrap();
        assert!(RunFile::open(temp.path(), 1, 1_000, Seq(2_000)).is_none());
        std::fs::write(&file, &bytes[..bytes.len() - 1]).unwrap();
        assert!(RunFile::open(temp.path(), 1, 1_000, Seq(2_000)).is_none());
        std::fs::write(&file, b"").unwrap();
        assert!(RunFile::open(temp.path(), 1, 1_000, Seq(2_000)).is_none());
    }

    #[test]
    fn a_writer_given_up_leaves_nothing_and_stale_files_go() {
        let temp = tempfile::tempdir().unwrap();
        let mut writer = Writer::create(temp.path(), 5).unwrap();
        writer.append(&key(0), b"x").unwrap();
        drop(writer);
        write(temp.path(), 6, 10);
        write(temp.path(), 7, 10);
        std::fs::write(temp.path().join("00000009.partial"), b"half").unwrap();
        remove_others(temp.path(), &[7]);
        let left: Vec<_> = std::fs::read_dir(temp.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec!["00000007.run".to_string()]);
        remove(temp.path(), 7);
        remove(temp.path(), 7);
        assert!(RunFile::open(temp.path(), 7, 10, Seq(20)).is_none());
    }
}
