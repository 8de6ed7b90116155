//! Event search: which stored events match the operator's filter (provider, event id, seq range,
//! time range). The store reads events in seq order and indexes nothing but the seq, so a search
//! scans: from `from_seq` when given, else the last [`SCAN_LIMIT`] events, at most
//! [`SCAN_LIMIT`] events in all, keeping the newest [`MAX_RESULTS`] matches.

use std::collections::VecDeque;

use crate::event::Seq;
use crate::store::{Store, StoreError, StoredEvent};

/// Events one search reads at most.
pub const SCAN_LIMIT: u64 = 20_000;
/// Matches one search shows at most.
pub const MAX_RESULTS: usize = 50;
/// Events read from the store at a time (with their bodies: up to 64 times `max_body_bytes` in
/// memory, besides the matches kept).
const PAGE: usize = 64;

/// What the operator searches for; every part is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub provider: Option<String>,
    /// Matches an event id that contains it.
    pub event_id: Option<String>,
    pub from_seq: Option<u64>,
    pub to_seq: Option<u64>,
    /// Received at or after (milliseconds since the Unix epoch).
    pub since_ms: Option<u64>,
    /// Received before.
    pub until_ms: Option<u64>,
}

impl Filter {
    /// Whether `event` matches every part that is set.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        self.provider.as_ref().is_none_or(|p| *p == event.provider)
            && self
                .event_id
                .as_ref()
                .is_none_or(|id| event.event_id.contains(id.as_str()))
            && self.from_seq.is_none_or(|from| event.seq >= from)
            && self.to_seq.is_none_or(|to| event.seq <= to)
            && self
                .since_ms
                .is_none_or(|since| event.received_at_ms >= since)
            && self
                .until_ms
                .is_none_or(|until| event.received_at_ms < until)
    }

    /// The seq the scan starts after.
    fn start(&self, last_seq: u64) -> u64 {
        match self.from_seq {
            Some(from) => from.saturating_sub(1),
            None => self
                .to_seq
                .unwrap_or(last_seq)
                .min(last_seq)
                .saturating_sub(SCAN_LIMIT),
        }
    }
}

/// A search's answer.
#[derive(Debug, Default)]
pub struct Found {
    /// The newest matches, newest first, without their bodies.
    pub events: Vec<StoredEvent>,
    /// The seqs the scan covered (first, last), if it read any event.
    pub scanned: Option<(u64, u64)>,
    /// More matches were found than are shown.
    pub truncated: bool,
}

/// Scans the store for events that match `filter`.
pub async fn search(store: &Store, filter: &Filter) -> Result<Found, StoreError> {
    let last_seq = store.last_seq().borrow().0;
    let mut after = Seq(filter.start(last_seq));
    let mut kept = VecDeque::with_capacity(MAX_RESULTS);
    let (mut read, mut first, mut last, mut truncated) = (0, None, None, false);
    'scan: while read < SCAN_LIMIT {
        // Every provider's events, the filter applied here: a provider filter in the store
        // would read past any number of other events, uncounted.
        let events = store.events_after(after, PAGE, None).await?;
        let Some(end) = events.last().map(|e| e.seq) else {
            break;
        };
        let full = !crate::store::read_to_end(&events, PAGE);
        for event in events {
            if filter.to_seq.is_some_and(|to| event.seq > to) || read >= SCAN_LIMIT {
                break 'scan;
            }
            read += 1;
            first.get_or_insert(event.seq);
            last = Some(event.seq);
            if filter.matches(&event) {
                // The results list no body: up to 50 of them kept were 50 × `max_body_bytes`.
                let event = StoredEvent {
                    body: Vec::new(),
                    ..event
                };
                if kept.len() == MAX_RESULTS {
                    kept.pop_front();
                    truncated = true;
                }
                kept.push_back(event);
            }
        }
        if !full {
            break;
        }
        after = Seq(end);
    }
    Ok(Found {
        events: kept.into_iter().rev().collect(),
        scanned: first.zip(last),
        truncated,
    })
}

/// Parses a time the operator typed (an HTML `datetime-local` value, read as UTC:
/// `2026-12-02T21:06` or with seconds) into milliseconds since the Unix epoch.
pub fn parse_time(value: &str) -> Option<u64> {
    let format = if value.len() > "2026-12-02T21:06".len() {
        "[year]-[month]-[day]T[hour]:[minute]:[second]"
    } else {
        "[year]-[month]-[day]T[hour]:[minute]"
    };
    let format = time::format_description::parse_borrowed::<1>(format).ok()?;
    let at = time::PrimitiveDateTime::parse(value, &format)
        .ok()?
        .assume_utc();
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;

    fn event(seq: u64, provider: &str, id: &str, at_ms: u64) -> StoredEvent {
        StoredEvent {
            seq,
            provider: provider.into(),
            event_id: id.into(),
            received_at_ms: at_ms,
            source: Source::Webhook,
            content_type: None,
            body: Vec::new(),
            topic: None,
        }
    }

    #[test]
    fn every_part_of_the_filter_must_match() {
        let e = event(42, "github", "delivery-abc-123", 1_000);
        assert!(Filter::default().matches(&e));
        let only = |f: Filter| f.matches(&e);
        assert!(only(Filter {
            provider: Some("github".into()),
            ..Filter::default()
        }));
        assert!(!only(Filter {
            provider: Some("stripe".into()),
            ..Filter::default()
        }));
        assert!(only(Filter {
            event_id: Some("abc".into()),
            ..Filter::default()
        }));
        assert!(!only(Filter {
            event_id: Some("xyz".into()),
            ..Filter::default()
        }));
        assert!(only(Filter {
            from_seq: Some(42),
            to_seq: Some(42),
            ..Filter::default()
        }));
        assert!(!only(Filter {
            from_seq: Some(43),
            ..Filter::default()
        }));
        assert!(!only(Filter {
            to_seq: Some(41),
            ..Filter::default()
        }));
        assert!(only(Filter {
            since_ms: Some(1_000),
            until_ms: Some(1_001),
            ..Filter::default()
        }));
        assert!(!only(Filter {
            since_ms: Some(1_001),
            ..Filter::default()
        }));
        assert!(!only(Filter {
            until_ms: Some(1_000),
            ..Filter::default()
        }));
        let both = Filter {
            provider: Some("github".into()),
            event_id: Some("nope".into()),
            ..Filter::default()
        };
        assert!(!both.matches(&e));
    }

    #[test]
    fn a_scan_starts_at_from_seq_or_covers_the_latest_events() {
        let filter = Filter::default();
        assert_eq!(filter.start(100), 0);
        assert_eq!(filter.start(SCAN_LIMIT + 500), 500);
        let from = Filter {
            from_seq: Some(10),
            ..Filter::default()
        };
        assert_eq!(from.start(SCAN_LIMIT * 5), 9);
        let to = Filter {
            to_seq: Some(SCAN_LIMIT + 7),
            ..Filter::default()
        };
        assert_eq!(to.start(SCAN_LIMIT * 5), 7);
    }

    #[test]
    fn typed_times_are_utc() {
        assert_eq!(parse_time("1970-01-01T00:01"), Some(60_000));
        assert_eq!(parse_time("1970-01-01T00:01:02"), Some(62_000));
        assert_eq!(parse_time("2026-12-02T21:06"), Some(1_796_245_560_000));
        assert_eq!(parse_time("yesterday"), None);
    }
}
