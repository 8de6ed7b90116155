//! Writing a sealed run's file from sled, a step at a time: for a run sealed by an earlier
//! hookgate, or whose file was lost or found damaged.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use super::{key, Runs, DATA, DATA_KEY, DROP_STEP};
use crate::store::sled::run_file::Writer;
use crate::store::StoreError;

/// A sealed run's copy being written from sled (for a run sealed by an earlier hookgate, or
/// whose copy was lost), a step at a time.
pub(super) struct Copying {
    id: u32,
    writer: Writer,
    /// The last `dedup_runs` key copied.
    after: Option<Vec<u8>>,
}

impl Runs {
    /// A step of copying a sealed run without a file into one: [`DROP_STEP`] values.
    pub(super) fn copy_step(&mut self) -> Result<(), StoreError> {
        let mut copying = match self.kept.copying.take() {
            Some(copying) => copying,
            None => {
                let Some(run) = self.kept.sealed.iter_mut().find(|run| run.wants_copy()) else {
                    return Ok(());
                };
                run.file = None;
                run.damaged.store(false, Ordering::Relaxed);
                match Writer::create(&self.kept.files, run.id) {
                    Ok(writer) => Copying {
                        id: run.id,
                        writer,
                        after: None,
                    },
                    Err(err) => {
                        run.copy_failed(&err);
                        return Ok(());
                    }
                }
            }
        };
        let Some(at) = self.kept.sealed.iter().position(|run| run.id == copying.id) else {
            // Expired meanwhile: the writer goes, and its partial file with it.
            return Ok(());
        };
        let from = match &copying.after {
            Some(after) => Bound::Excluded(after.clone()),
            None => Bound::Included(key(copying.id, DATA, &[])),
        };
        let to = Bound::Excluded(key(copying.id, DATA + 1, &[]));
        let mut copied = 0;
        for item in self.tree.range::<Vec<u8>, _>((from, to)) {
            let (key, value) = item?;
            if let Err(err) = copying.writer.append(&key[DATA_KEY..], &value) {
                self.kept.sealed[at].copy_failed(&err);
                return Ok(());
            }
            copying.after = Some(key.to_vec());
            copied += 1;
            if copied == DROP_STEP {
                self.kept.copying = Some(copying);
                return Ok(());
            }
        }
        let run = &mut self.kept.sealed[at];
        match copying.writer.finish(run.keys, run.through) {
            Ok(file) => run.file = Some(file),
            Err(err) => run.copy_failed(&err),
        }
        Ok(())
    }
}
