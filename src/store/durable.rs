//! Making sled's writes durable. sled 0.34.7's `flush()` writes its buffers with
//! `sync_file_range`, which neither flushes the disk cache nor metadata, and it never fsyncs the
//! blob files that hold large values. `Durability::sync` therefore follows `flush()` with an
//! fsync of every new blob file and the blob directory, then an `fdatasync` of the log (`db`).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

pub struct Durability {
    db: sled::Db,
    /// sled's log file, `<data_dir>/db`, opened once.
    log: File,
    blobs_dir: PathBuf,
    /// Blob files already fsynced (they are written once and never changed).
    synced_blobs: HashSet<OsString>,
}

impl Durability {
    pub fn new(db: sled::Db, dir: &Path) -> io::Result<Durability> {
        let log = File::open(dir.join("db"))?;
        // The directory entries of sled's files must survive a power loss too.
        File::open(dir)?.sync_all()?;
        Ok(Durability {
            db,
            log,
            blobs_dir: dir.join("blobs"),
            synced_blobs: HashSet::new(),
        })
    }

    /// Flushes sled and syncs everything it wrote. When this returns `Ok`, every write applied
    /// before the call survives a crash or a power loss. Returns the number of fsyncs issued.
    pub fn sync(&mut self) -> io::Result<u64> {
        self.db.flush().map_err(io::Error::other)?;
        let mut fsyncs = self.sync_new_blobs()?;
        self.log.sync_data()?;
        fsyncs += 1;
        Ok(fsyncs)
    }

    /// Blobs first: the log entries that point at them are synced after.
    fn sync_new_blobs(&mut self) -> io::Result<u64> {
        let entries = match std::fs::read_dir(&self.blobs_dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err),
        };
        let mut present = HashSet::new();
        let mut fsyncs = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(entry.path()) {
                    Ok(file) => file.sync_data()?,
                    // sled removed it meanwhile (a rewritten or deleted value).
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                }
                fsyncs += 1;
            }
            present.insert(name);
        }
        if fsyncs > 0 {
            File::open(&self.blobs_dir)?.sync_all()?;
            fsyncs += 1;
        }
        self.synced_blobs = present;
        Ok(fsyncs)
    }
}
