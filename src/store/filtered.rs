//! Reading the events a reader wants (a consumer's providers) at a bounded cost: a filter of
//! several providers is a scan of every event, and a read looks at [`MAX_LOOKED_AT`] events at
//! most, however many unwanted ones follow.

use super::{Store, StoreError, StoredEvent};
use crate::event::Seq;

/// Events read from the store per step, at most.
const STEP: usize = 256;
/// Events one filtered read looks at, at most.
pub const MAX_LOOKED_AT: usize = 10_240;
/// A page stops once its bodies reach this (the event that reaches it included, whatever its
/// size): 1,000 events of 1 MiB held 1 GiB of bodies, and their answer (base64 and parsed JSON)
/// several times that.
pub const PAGE_BODY_BYTES: usize = 16 << 20;

/// The next read's size: `most` events, or fewer when the `last` read's bodies were large, so
/// that a read holds about [`PAGE_BODY_BYTES`]; a first read takes 16. Sized from the read
/// before, a read that meets large bodies after many small ones still holds up to `most` of
/// them once.
pub fn next_step(last: Option<&[StoredEvent]>, most: usize) -> usize {
    let Some(last) = last.filter(|last| !last.is_empty()) else {
        return most.min(16);
    };
    let bytes: usize = last.iter().map(|event| event.body.len()).sum();
    let average = (bytes / last.len()).max(1);
    (PAGE_BODY_BYTES / average).clamp(1, most.max(1))
}

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
        let (mut looked, mut body_bytes, mut step) = (0, 0, next_step(None, STEP));
        while found.events.len() < limit {
            if looked >= MAX_LOOKED_AT {
                found.more = true;
                break;
            }
            let batch = self.events_after(found.scanned, step, None).await?;
            let end = batch.len() < step;
            looked += batch.len();
            step = next_step(Some(&batch), STEP);
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
        let (mut events, mut body_bytes, mut step) = (Vec::new(), 0, next_step(None, STEP));
        let mut from = after;
        loop {
            let step_now = step.min(limit - events.len());
            let batch = self.events_after(from, step_now, provider.clone()).await?;
            let end = batch.len() < step_now;
            step = next_step(Some(&batch), STEP);
            for event in batch {
                from = Seq(event.seq);
                body_bytes += event.body.len();
                events.push(event);
                if events.len() == limit || body_bytes >= PAGE_BODY_BYTES {
                    return Ok((events, true));
                }
            }
            if end {
                return Ok((events, false));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;

    fn of_size(bytes: usize) -> StoredEvent {
        StoredEvent {
            seq: 1,
            provider: "p".into(),
            event_id: "e".into(),
            received_at_ms: 0,
            source: Source::Poll,
            content_type: None,
            body: vec![0; bytes],
            topic: None,
        }
    }

    #[test]
    fn a_read_is_sized_to_the_bodies_of_the_last() {
        assert_eq!(next_step(None, STEP), 16);
        assert_eq!(next_step(None, 4), 4);
        assert_eq!(next_step(Some(&[]), STEP), 16);
        assert_eq!(next_step(Some(&[of_size(10)]), STEP), STEP);
        assert_eq!(next_step(Some(&[of_size(1 << 20)]), STEP), 16);
        assert_eq!(next_step(Some(&[of_size(64 << 20)]), STEP), 1);
        assert_eq!(next_step(Some(&[of_size(0)]), 1000), 1000);
    }
}
