//! The checkpoint journal: `<data_dir>/journal`, where the committer makes new events durable
//! while sled is closed for a checkpoint (`checkpoint/`), so that senders are answered
//! meanwhile instead of waiting for sled to reopen.
//!
//! The file starts with `[magic: 8 bytes][salt: 16 random bytes]`. Each batch the committer
//! accepts while sled is closed is one frame after it, appended and fdatasynced before any of
//! its requests is answered: `[payload len: u32 LE][crc32 of salt and payload: u32 LE][payload]`,
//! the payload being
//! `[first seq: u64 BE][events: u32 LE]` then per event
//! `[key len: u16 LE][dedup key][received_at ms: u64 LE][record len: u32 LE][record]`, under the
//! consecutive seqs from the first one. Once sled is open again, the committer applies the
//! frames to it as ordinary batches, syncs it, and empties the journal.
//!
//! At open, frames that sled already holds (applied before a crash that came before the
//! journal was emptied) are skipped, and the others applied before anything else. The last
//! frame may be torn: a power loss during its write, before its fdatasync, so none of its
//! events was answered; it is cut off. A frame that does not check out with a frame that does
//! after it (looked for at every later offset: the damage may be in a length), or frames that
//! do not follow sled's seqs, mean the file was damaged: hookgate refuses to start and names
//! it.
//!
//! The salt is why a sender cannot make a body that passes for a frame: a torn frame's events
//! are bodies from the public internet, and a whole frame inside one, checking out, would make
//! that torn end look like damage and stop the gateway from starting. Without the salt (a random
//! value no sender sees, new each time the journal is emptied) no checksum can be computed. A
//! journal written before the salt (no magic) is read as it was written, and gets a salt when
//! it is emptied.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::watermark::open_or_create;
use crate::event::Seq;
use crate::store::StoreError;

/// An event as the committer stores it: dedup key, record, arrival time (ms).
pub type Encoded = (Vec<u8>, Vec<u8>, u64);

/// One batch of events accepted while sled was closed, under consecutive seqs from `first`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub first: Seq,
    pub events: Vec<Encoded>,
}

impl Frame {
    /// The seq after the frame's last event.
    pub fn end(&self) -> Seq {
        Seq(self.first.0 + self.events.len() as u64)
    }
}

const HEADER: usize = 8;
/// Read by a hookgate from before salts, the magic is a frame's header of length 16 (the salt)
/// that does not check out: a journal with frames after it is refused there as damaged, not
/// cut off as a torn end (the events in it were acknowledged); one without is cut off, harmless.
const MAGIC: &[u8; 8] = b"\x10\0\0\0hgj2";
/// The file's own header: the magic, then the salt.
pub(super) const FILE_HEADER: usize = 24;

type Salt = [u8; 16];

pub struct Journal {
    path: PathBuf,
    file: File,
    /// The salt of every frame's checksum; `None`: a journal written before salts.
    salt: Option<Salt>,
    /// Where the next frame goes.
    len: u64,
    /// Appends left before an injected fdatasync failure (tests only; see [`FAULT_ENV`]).
    fault_after: Option<u64>,
}

/// The environment variable that injects a failure of the journal's fdatasync, for the
/// fail-stop test: the append after this many successful ones fails as an fdatasync would.
pub const FAULT_ENV: &str = "HOOKGATE_TEST_FAIL_JOURNAL_FSYNC_AFTER";

impl Journal {
    /// Opens (or creates) the journal under `dir` and reads the frames it holds, the torn end
    /// cut off.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<Frame>), StoreError> {
        let path = dir.join("journal");
        let created = !path.exists();
        let mut file = open_or_create(&path)?;
        if created {
            File::open(dir)?.sync_all()?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (salt, start) = match bytes.strip_prefix(MAGIC.as_slice()) {
            Some(rest) if rest.len() >= 16 => {
                (Some(rest[..16].try_into().expect("16 bytes")), FILE_HEADER)
            }
            // A header cut short: written when the journal was, before any frame.
            _ if bytes.len() < FILE_HEADER && MAGIC.starts_with(&bytes[..bytes.len().min(8)]) => {
                (None, bytes.len())
            }
            _ => (None, 0),
        };
        // A header whose magic was damaged would read as a journal from before salts, its
        // frames as one torn end, and be emptied in silence.
        let salted_under = bytes
            .get(8..FILE_HEADER)
            .map(|salt| salt.try_into().expect("16 bytes"));
        if salt.is_none()
            && salted_under.is_some_and(|salt| frame_at(&bytes, FILE_HEADER, Some(&salt)).is_some())
        {
            return Err(StoreError::Corrupt(format!(
                "{} is damaged at byte 0 (its header does not read as one, and a frame after it \
                 checks out under its salt): the events it holds were acknowledged. Restore the \
                 data dir from a backup",
                path.display()
            )));
        }
        let (frames, good) = read_frames(&bytes, start, salt.as_ref()).map_err(|at| {
            StoreError::Corrupt(format!(
                "{} is damaged at byte {at} (a frame that does not check out, with whole frames \
                 after it): the events it holds were acknowledged. Restore the data dir from a \
                 backup",
                path.display()
            ))
        })?;
        if good < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                torn = bytes.len() - good,
                "The journal ends with a frame cut short by a crash (never acknowledged); dropping it."
            );
            file.set_len(good as u64)?;
            file.sync_data()?;
        }
        let fault_after = std::env::var(FAULT_ENV).ok().and_then(|n| n.parse().ok());
        if let Some(appends) = fault_after {
            tracing::warn!(
                appends,
                "{FAULT_ENV} is set: a journal fdatasync fault will be injected."
            );
        }
        let mut journal = Journal {
            path,
            file,
            salt,
            len: good as u64,
            fault_after,
        };
        if frames.is_empty() {
            // Nothing to keep: a new journal, an emptied one, a torn first frame or header.
            journal.restart()?;
        }
        Ok((journal, frames))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a frame and fdatasyncs it. `Err` is fatal, as a failed sync of sled's log is
    /// (`durable.rs`).
    pub fn append(&mut self, frame: &Frame) -> io::Result<()> {
        let bytes = encode(frame, self.salt.as_ref());
        self.file.write_all_at(&bytes, self.len)?;
        match &mut self.fault_after {
            Some(0) => {
                return Err(io::Error::other(format!(
                    "fdatasync of the journal failed (injected by {FAULT_ENV})"
                )))
            }
            Some(left) => *left -= 1,
            None => {}
        }
        self.file.sync_data()?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Empties the journal, once sled holds every frame and is synced.
    pub fn clear(&mut self) -> io::Result<()> {
        if self.len > FILE_HEADER as u64 || self.salt.is_none() {
            self.restart()?;
        }
        Ok(())
    }

    /// Empties the file and starts it again under a new salt. It is emptied, and that made
    /// durable, before the new header is written: a crash in between leaves an empty file or a
    /// header alone, never the old frames under the new salt (which would not check out).
    fn restart(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()?;
        let mut salt = Salt::default();
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&salt);
        self.file.write_all_at(&header, 0)?;
        self.file.sync_data()?;
        self.salt = Some(salt);
        self.len = FILE_HEADER as u64;
        Ok(())
    }
}

/// The checksum of a frame's payload, under the journal's salt.
fn checksum(salt: Option<&Salt>, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    if let Some(salt) = salt {
        hasher.update(salt);
    }
    hasher.update(payload);
    hasher.finalize()
}

fn encode(frame: &Frame, salt: Option<&Salt>) -> Vec<u8> {
    let size: usize = frame
        .events
        .iter()
        .map(|(key, record, _)| 2 + key.len() + 8 + 4 + record.len())
        .sum();
    let mut payload = Vec::with_capacity(12 + size);
    payload.extend_from_slice(&frame.first.0.to_be_bytes());
    payload.extend_from_slice(&(frame.events.len() as u32).to_le_bytes());
    for (key, record, received_at_ms) in &frame.events {
        payload.extend_from_slice(&(key.len() as u16).to_le_bytes());
        payload.extend_from_slice(key);
        payload.extend_from_slice(&received_at_ms.to_le_bytes());
        payload.extend_from_slice(&(record.len() as u32).to_le_bytes());
        payload.extend_from_slice(record);
    }
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(salt, &payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The frames in `bytes` from `start`, and where they end (the rest is a torn last frame).
/// `Err(offset)`: a frame there does not check out, and is not a torn end.
///
/// The only write a power loss can tear is the last, never acknowledged; it tears at sector
/// boundaries (each sector written or not, a lost one reading as zeros). So a frame that does
/// not check out is the torn end only if it reaches the end of the file (its length does) or its
/// header reads as zeros, whole or on one side of a sector boundary it straddles (a torn header;
/// the checksum of nothing is 0, so no frame may be empty), and no whole frame follows it at any
/// offset (its length is not to be trusted: a flipped bit in a length made the frames after it
/// look torn). Anything else is damage.
fn read_frames(
    bytes: &[u8],
    start: usize,
    salt: Option<&Salt>,
) -> Result<(Vec<Frame>, usize), usize> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut at = start;
    while at < bytes.len() {
        if let Some((frame, end)) = frame_at(bytes, at, salt) {
            frames.push(frame);
            at = end;
            continue;
        }
        let after = frames.last().map_or(Seq(0), Frame::end);
        let header = &bytes[at..bytes.len().min(at + HEADER)];
        let len = header.get(..4).map_or(0, |len| {
            u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize
        });
        let reaches_the_end = at + HEADER + len >= bytes.len();
        let zeroed = torn_header(at, header);
        let followed = (at + 1..bytes.len()).any(|later| frame_after(bytes, later, after, salt));
        return if (reaches_the_end || zeroed) && !followed {
            Ok((frames, at))
        } else {
            Err(at)
        };
    }
    Ok((frames, at))
}

/// Sectors a power loss writes whole or not at all (4 KiB pages are whole sectors too).
const SECTOR: usize = 512;

/// Whether the header at `at` reads as zeros, whole or on one side of a sector boundary in it
/// (a header across pages, one of them lost: its length read as 0, or cut, and the start
/// refused a torn frame that was never acknowledged).
fn torn_header(at: usize, header: &[u8]) -> bool {
    let zeros = |part: &[u8]| part.iter().all(|b| *b == 0);
    let boundary = (at / SECTOR + 1) * SECTOR - at;
    zeros(header)
        || (boundary < header.len() && (zeros(&header[..boundary]) || zeros(&header[boundary..])))
}

/// Whether a frame that checks out, and whose first seq is at or after `after` (and not far
/// past it), starts at `at`; the seq is looked at before the checksum, so a scan of a torn end
/// costs a checksum only where a frame could plausibly be.
fn frame_after(bytes: &[u8], at: usize, after: Seq, salt: Option<&Salt>) -> bool {
    let first = bytes
        .get(at + HEADER..at + HEADER + 8)
        .map(|first| u64::from_be_bytes(first.try_into().expect("8 bytes")));
    let plausible = first.is_some_and(|first| (after.0..after.0 + (1 << 32)).contains(&first));
    plausible && frame_at(bytes, at, salt).is_some()
}

/// The frame that starts at `at` and checks out, and where it ends.
fn frame_at(bytes: &[u8], at: usize, salt: Option<&Salt>) -> Option<(Frame, usize)> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    // The first seq and the count of events: no frame is shorter.
    if len < 12 {
        return None;
    }
    let end = at.checked_add(HEADER)?.checked_add(len)?;
    let payload = bytes.get(at + HEADER..end)?;
    if checksum(salt, payload) != crc {
        return None;
    }
    Some((decode(payload)?, end))
}

fn decode(payload: &[u8]) -> Option<Frame> {
    let mut rest = payload;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let first = Seq(u64::from_be_bytes(take(8)?.try_into().ok()?));
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?);
    let mut events = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let key_len = u16::from_le_bytes(take(2)?.try_into().ok()?);
        let key = take(key_len.into())?.to_vec();
        let received_at_ms = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let record_len = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let record = take(record_len as usize)?.to_vec();
        events.push((key, record, received_at_ms));
    }
    rest.is_empty().then_some(Frame { first, events })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(first: u64, n: usize) -> Frame {
        let events = (0..n)
            .map(|i| {
                let key = format!("p\0id-{first}-{i}").into_bytes();
                (key, vec![i as u8; 100 + i], 1_700_000_000_000 + i as u64)
            })
            .collect();
        Frame {
            first: Seq(first),
            events,
        }
    }

    fn journal_with(dir: &Path, frames: &[Frame]) -> Vec<u8> {
        let (mut journal, read) = Journal::open(dir).unwrap();
        assert!(read.is_empty());
        for frame in frames {
            journal.append(frame).unwrap();
        }
        std::fs::read(journal.path()).unwrap()
    }

    #[test]
    fn frames_read_back_as_written_and_clear_empties() {
        let dir = tempfile::tempdir().unwrap();
        let frames = [frame(1, 3), frame(4, 1), frame(5, 20)];
        journal_with(dir.path(), &frames);
        let (mut journal, read) = Journal::open(dir.path()).unwrap();
        assert_eq!(read, frames);
        assert_eq!(read[2].end(), Seq(25));
        journal.clear().unwrap();
        journal.append(&frame(25, 2)).unwrap();
        let (_, read) = Journal::open(dir.path()).unwrap();
        assert_eq!(read, [frame(25, 2)]);
    }

    #[test]
    fn a_torn_last_frame_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let frames = [frame(1, 3), frame(4, 2)];
        let bytes = journal_with(dir.path(), &frames);
        let whole = bytes.len();
        // Cut anywhere in the last frame, or its bytes garbled (the file grew, the data did not
        // reach the disk): only the first frame is read, and the file is cut back to it.
        let second = whole - encode(&frames[1], None).len();
        for cut in [second + 3, second + HEADER + 5, whole - 1] {
            std::fs::write(dir.path().join("journal"), &bytes[..cut]).unwrap();
            let (_, read) = Journal::open(dir.path()).unwrap();
            assert_eq!(read, frames[..1], "cut at {cut}");
            assert_eq!(
                std::fs::metadata(dir.path().join("journal")).unwrap().len(),
                second as u64
            );
        }
        let mut garbled = bytes.clone();
        garbled[whole - 10] ^= 0xff;
        std::fs::write(dir.path().join("journal"), &garbled).unwrap();
        let (_, read) = Journal::open(dir.path()).unwrap();
        assert_eq!(read, frames[..1]);
    }

    /// A flipped bit in a frame's length made it run past the end of the file, and the open
    /// took it for a torn end: the frames after it, acknowledged, were cut away in silence.
    #[test]
    fn a_damaged_length_with_frames_after_it_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let frames = [frame(1, 3), frame(4, 2), frame(6, 1)];
        let bytes = journal_with(dir.path(), &frames);
        let second = FILE_HEADER + encode(&frames[0], None).len();
        for bit in [3, 30] {
            let mut damaged = bytes.clone();
            let len = u32::from_le_bytes(damaged[second..second + 4].try_into().unwrap());
            damaged[second..second + 4].copy_from_slice(&(len ^ (1 << bit)).to_le_bytes());
            std::fs::write(dir.path().join("journal"), &damaged).unwrap();
            let err = Journal::open(dir.path()).err().expect("a damaged journal");
            assert!(err.to_string().contains(&format!("byte {second}")), "{err}");
            assert_eq!(std::fs::read(dir.path().join("journal")).unwrap(), damaged);
        }
    }

    /// A damaged frame followed by a torn one is damage, not a torn end: its length says it
    /// ends before the file does.
    #[test]
    fn a_damaged_frame_before_a_torn_one_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let frames = [frame(1, 3), frame(4, 2), frame(6, 5)];
        let mut bytes = journal_with(dir.path(), &frames);
        let second = FILE_HEADER + encode(&frames[0], None).len();
        bytes[second + HEADER + 20] ^= 0x01;
        bytes.truncate(bytes.len() - 7);
        std::fs::write(dir.path().join("journal"), &bytes).unwrap();
        let err = Journal::open(dir.path()).err().expect("a damaged journal");
        assert!(err.to_string().contains(&format!("byte {second}")), "{err}");
    }

    /// A frame larger than a page, torn so that its header reads as zeros while a later page of
    /// it reached the disk: a length of 0 with the checksum of nothing (0) checked out, the
    /// decoding failed with bytes after it, and the open refused a journal whose torn frame was
    /// never acknowledged.
    #[test]
    fn a_torn_frame_whose_header_reads_as_zeros_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let frames = [frame(1, 3), frame(4, 60)];
        let mut bytes = journal_with(dir.path(), &frames);
        let second = FILE_HEADER + encode(&frames[0], None).len();
        assert!(bytes.len() - second > 4096);
        bytes[second..second + 4096].fill(0);
        std::fs::write(dir.path().join("journal"), &bytes).unwrap();
        let (_, read) = Journal::open(dir.path()).unwrap();
        assert_eq!(read, frames[..1]);
    }

    /// A torn last frame whose header straddles a sector boundary, the sector before it or
    /// after it lost (zeros): the length reads as 0 or cut short, the checksum not, and the
    /// start refused a frame that was never acknowledged.
    #[test]
    fn a_torn_frame_whose_header_straddles_a_lost_sector_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        // The first frame's size puts the second's header 2 bytes before byte 4096.
        let mut first = frame(1, 1);
        let overhead = FILE_HEADER + encode(&first, None).len() - first.events[0].1.len();
        first.events[0].1 = vec![7; 4094 - overhead];
        let frames = [first, frame(2, 40)];
        let bytes = journal_with(dir.path(), &frames);
        assert_eq!(FILE_HEADER + encode(&frames[0], None).len(), 4094);
        for lost in [4094..4096, 4096..bytes.len().min(8192)] {
            let mut torn = bytes.clone();
            torn[lost.clone()].fill(0);
            std::fs::write(dir.path().join("journal"), &torn).unwrap();
            let (_, read) = Journal::open(dir.path()).unwrap_or_else(|e| panic!("{lost:?}: {e}"));
            assert_eq!(read, frames[..1], "{lost:?}");
        }
    }

    /// A journal whose magic was damaged, with acknowledged frames: it read as one from before
    /// salts, its frames as a torn end, and was emptied in silence.
    #[test]
    fn a_damaged_magic_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = journal_with(dir.path(), &[frame(1, 3), frame(4, 2)]);
        bytes[0] ^= 0x01;
        std::fs::write(dir.path().join("journal"), &bytes).unwrap();
        let err = Journal::open(dir.path()).err().expect("a damaged journal");
        assert!(err.to_string().contains("byte 0"), "{err}");
        assert_eq!(std::fs::read(dir.path().join("journal")).unwrap(), bytes);
    }

    /// What a hookgate from before salts makes of a salted journal (`read_frames` from byte 0,
    /// no salt): with frames, damage (refused); the header alone, a torn end (harmless).
    #[test]
    fn a_hookgate_from_before_salts_refuses_a_salted_journal_with_frames() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = journal_with(dir.path(), &[frame(1, 3), frame(4, 2)]);
        assert_eq!(read_frames(&bytes, 0, None), Err(0));
        assert_eq!(
            read_frames(&bytes[..FILE_HEADER], 0, None),
            Ok((Vec::new(), 0))
        );
    }

    #[test]
    fn a_damaged_frame_with_frames_after_it_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = journal_with(dir.path(), &[frame(1, 3), frame(4, 2)]);
        bytes[FILE_HEADER + HEADER + 20] ^= 0x01;
        std::fs::write(dir.path().join("journal"), &bytes).unwrap();
        let err = Journal::open(dir.path()).err().expect("a damaged journal");
        let text = err.to_string();
        assert!(
            text.contains("journal") && text.contains(&format!("byte {FILE_HEADER}")),
            "{text}"
        );
    }

    /// A sender's body holding a whole frame, checksum and all (no salt, as before salts): the
    /// frame of that body torn by a power loss was taken for damage, and the gateway refused to
    /// start until someone cut the journal by hand.
    #[test]
    fn a_torn_frame_whose_body_holds_a_frame_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let crafted = encode(&frame(5, 2), None);
        let mut second = frame(4, 1);
        second.events[0].1 = [b"{\"a\":\"".as_slice(), &crafted, b"\"}"].concat();
        let frames = [frame(1, 3), second];
        let mut bytes = journal_with(dir.path(), &frames);
        bytes.truncate(bytes.len() - 1);
        std::fs::write(dir.path().join("journal"), &bytes).unwrap();
        let (_, read) = Journal::open(dir.path()).unwrap();
        assert_eq!(read, frames[..1]);
    }

    /// A journal written before salts (frames from byte 0, unsalted checksums) is read as it
    /// was written, appended to the same way, and salted once emptied.
    #[test]
    fn a_journal_from_before_salts_is_read_and_salted_when_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let frames = [frame(1, 3), frame(4, 2)];
        let old: Vec<u8> = frames.iter().flat_map(|f| encode(f, None)).collect();
        std::fs::write(dir.path().join("journal"), &old).unwrap();
        let (mut journal, read) = Journal::open(dir.path()).unwrap();
        assert_eq!(read, frames);
        journal.append(&frame(6, 1)).unwrap();
        let (mut journal, read) = Journal::open(dir.path()).unwrap();
        assert_eq!(read.len(), 3);
        journal.clear().unwrap();
        let bytes = std::fs::read(journal.path()).unwrap();
        assert_eq!((bytes.len(), &bytes[..8]), (FILE_HEADER, MAGIC.as_slice()));
        journal.append(&frame(7, 2)).unwrap();
        let (_, read) = Journal::open(dir.path()).unwrap();
        assert_eq!(read, [frame(7, 2)]);
    }

    /// A header cut short by a crash as the journal was made (before any frame) starts a new one.
    #[test]
    fn a_header_cut_short_starts_a_new_journal() {
        let dir = tempfile::tempdir().unwrap();
        for cut in [&MAGIC[..3], &MAGIC[..], &[0u8; FILE_HEADER][..]] {
            std::fs::write(dir.path().join("journal"), cut).unwrap();
            let (mut journal, read) = Journal::open(dir.path()).unwrap();
            assert!(read.is_empty());
            journal.append(&frame(1, 1)).unwrap();
            let (_, read) = Journal::open(dir.path()).unwrap();
            assert_eq!(read, [frame(1, 1)]);
        }
    }
}
