//! Pull consumers (`[[consumer]]`): a consumer reads the events it wants after its durable
//! cursor, and acknowledges a seq to move the cursor forward. The cursor is an output's cursor
//! in the store, beside the destinations' (one namespace), so the retention sweeper honours it.
//!
//! The admin routes (`/v1/consumers/{name}/...`) do the waiting and the HTTP; this module owns
//! what a page holds and which acknowledgements move the cursor.

use crate::config::{wants, ConsumerConfig};
use crate::event::Seq;
use crate::store::{Change, Filtered, Store, StoreError};

/// One read for a consumer.
#[derive(Debug)]
pub struct Page {
    /// The consumer's durable cursor when read: events at or below it are done.
    pub cursor: Seq,
    /// What the read found after the cursor (`scanned`: how far it looked; acknowledging that,
    /// once the events are done, also moves the cursor past those the consumer does not want).
    pub found: Filtered,
}

/// Up to `limit` events after the consumer's cursor, and after `scanned` (a previous page's, to
/// skip what it looked at, or `Seq(0)`), whose provider the consumer wants, in seq order, of
/// the next [`crate::store::MAX_LOOKED_AT`] events at most. When none of those is wanted, the
/// cursor moves past them (they are done for this consumer), so that a consumer that
/// acknowledges only what it receives is not handed the same empty page again and again.
pub async fn read_page(
    store: &Store,
    consumer: &ConsumerConfig,
    scanned: Seq,
    limit: usize,
) -> Result<Page, StoreError> {
    let mut cursor = store.output(&consumer.name).await?.cursor;
    let found = store
        .events_where(cursor.max(scanned), limit, |event| {
            wants(&consumer.providers, &event.provider)
        })
        .await?;
    if found.events.is_empty() && found.more && found.scanned > cursor {
        store
            .change(&consumer.name, vec![Change::Cursor(found.scanned)])
            .await?;
        cursor = store.output(&consumer.name).await?.cursor;
    }
    Ok(Page { cursor, found })
}

/// Why an acknowledgement did not move the cursor.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AckError {
    /// The consumer acknowledged a seq not stored yet (a client error).
    #[error("seq {requested} is beyond the last stored seq {last}")]
    BeyondEnd { requested: Seq, last: Seq },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where an acknowledgement of `requested` leaves a cursor at `current`, when `last` is the
/// highest stored seq: `Some(requested)` moves it, `None` leaves it (a cursor never moves back).
pub fn ack_target(current: Seq, requested: Seq, last: Seq) -> Result<Option<Seq>, AckError> {
    if requested > last {
        return Err(AckError::BeyondEnd { requested, last });
    }
    Ok((requested > current).then_some(requested))
}

/// Moves `consumer`'s cursor to `requested` durably, or leaves it where it is when it is already
/// there or past it, and returns the cursor. The store never moves a cursor back, so racing
/// acknowledgements leave the highest.
pub async fn ack(store: &Store, consumer: &str, requested: Seq) -> Result<Seq, AckError> {
    let mut last = *store.last_seq().borrow();
    if requested > last {
        // Served by another gateway sharing the store, perhaps: asked of the store itself.
        last = store.last_seq_now().await?;
    }
    let current = store.output(consumer).await?.cursor;
    match ack_target(current, requested, last)? {
        None => Ok(current),
        Some(target) => {
            store.change(consumer, vec![Change::Cursor(target)]).await?;
            tracing::info!(consumer, seq = %target, "Consumer cursor moved.");
            Ok(store.output(consumer).await?.cursor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_moves_the_cursor_forward_only() {
        let target = |current, requested, last| {
            ack_target(Seq(current), Seq(requested), Seq(last)).expect("accepted")
        };
        assert_eq!(target(3, 5, 9), Some(Seq(5)));
        assert_eq!(target(3, 9, 9), Some(Seq(9)));
        assert_eq!(target(3, 3, 9), None);
        assert_eq!(target(3, 1, 9), None);
        assert_eq!(target(0, 0, 0), None);
    }

    #[test]
    fn an_ack_beyond_the_last_stored_seq_is_refused() {
        assert!(matches!(
            ack_target(Seq(3), Seq(10), Seq(9)),
            Err(AckError::BeyondEnd {
                requested: Seq(10),
                last: Seq(9)
            })
        ));
        assert!(ack_target(Seq(0), Seq(1), Seq(0)).is_err());
    }
}
