//! Reading the events a reader wants (a consumer's providers) at a bounded cost: a filter of
//! several providers is a scan of every event, and a read looks at [`MAX_LOOKED_AT`] events at
//! most, however many unwanted ones follow.

use super::{read_to_end, Store, StoreError, StoredEvent, READ_BODY_BYTES};
use crate::event::Seq;

/// Events read from the store per step, at most.
const STEP: usize = 256;
/// Events one filtered read looks at, at most.
pub const MAX_LOOKED_AT: usize = 10_240;
/// A page stops once its bodies reach this (the event that reaches it included, whatever its
/// size): 1,000 events of 1 MiB held 1 GiB of bodies, and their answer (base64 and the JSON)
/// several times that.
pub const PAGE_BODY_BYTES: usize = READ_BODY_BYTES;

/// What a filtered read found.
#[derive(Debug)]
pub struct Filtered {
    /// Up to the limit of wanted events, in seq order.
    pub events: Vec<StoredEvent>,
    /// The last seq looked at (wanted or not; `after` when none was): every wanted event up
    /// to it is in `events`.
    pub scanned: Seq,
    /// The read stopped before the last stored event: at [`MAX_LOOKED_AT`] events, or at
    /// [`PAGE_BODY_BYTES`] of bodies.
    pub more: bool,
}

impl Store {
    /// Up to `limit` of the events after `after` that `wanted` keeps, among the next
    /// [`MAX_LOOKED_AT`] at most, and no more than [`PAGE_BODY_BYTES`] of bodies past the first.
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
        let (mut looked, mut body_bytes) = (0, 0);
        while found.events.len() < limit {
            if looked >= MAX_LOOKED_AT {
                found.more = true;
                break;
            }
            let batch = self.events_after(found.scanned, STEP, None).await?;
            let end = read_to_end(&batch, STEP);
            looked += batch.len();
            for event in batch {
                found.scanned = Seq(event.seq);
                if wanted(&event) {
                    body_bytes += event.body.len();
                    found.events.push(event);
                    if found.events.len() == limit {
                        break;
                    }
                    if body_bytes >= PAGE_BODY_BYTES {
                        found.more = true;
                        return Ok(found);
                    }
                }
            }
            if end {
                break;
            }
        }
        Ok(found)
    }

    /// Up to `limit` events after `after` (of `provider` only, when given), and no more than
    /// [`PAGE_BODY_BYTES`] of bodies past the first; `true` with them when a limit cut the page
    /// before the last stored event.
    pub async fn events_page(
        &self,
        after: Seq,
        limit: usize,
        provider: Option<String>,
    ) -> Result<(Vec<StoredEvent>, bool), StoreError> {
        let events = self.events_after(after, limit, provider).await?;
        let cut = !read_to_end(&events, limit);
        Ok((events, cut))
    }
}
