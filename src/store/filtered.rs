//! Reading the events a reader wants (a consumer's providers) at a bounded cost: a filter of
//! several providers is a scan of every event, and a read looks at [`MAX_LOOKED_AT`] events at
//! most, however many unwanted ones follow.

use super::{Store, StoreError, StoredEvent};
use crate::event::Seq;

/// Events read from the store per step.
const STEP: usize = 256;
/// Events one filtered read looks at, at most.
pub const MAX_LOOKED_AT: usize = 10_240;

/// What a filtered read found.
#[derive(Debug)]
pub struct Filtered {
    /// Up to the limit of wanted events, in seq order.
    pub events: Vec<StoredEvent>,
    /// The last seq looked at (wanted or not; `after` when none was): every wanted event up
    /// to it is in `events`.
    pub scanned: Seq,
    /// The read stopped at [`MAX_LOOKED_AT`] events, before the last stored one.
    pub more: bool,
}

impl Store {
    /// Up to `limit` of the events after `after` that `wanted` keeps, among the next
    /// [`MAX_LOOKED_AT`] at most.
    pub async fn events_where(
        &self,
        after: Seq,
        limit: usize,
        wanted: impl Fn(&StoredEvent) -> bool,
    ) -> Result<Filtered, StoreError> {
        let mut found = Filtered {
            events: Vec::new(),
            scanned: after,
            more: false,
        };
        let mut looked = 0;
        while found.events.len() < limit {
            if looked >= MAX_LOOKED_AT {
                found.more = true;
                break;
            }
            let batch = self.events_after(found.scanned, STEP, None).await?;
            let end = batch.len() < STEP;
            looked += batch.len();
            for event in batch {
                found.scanned = Seq(event.seq);
                if wanted(&event) {
                    found.events.push(event);
                    if found.events.len() == limit {
                        break;
                    }
                }
            }
            if end {
                break;
            }
        }
        Ok(found)
    }
}
