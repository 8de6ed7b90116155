//! A destination's live state, shared by its tasks and the admin API: paused or probing,
//! consecutive failures, the most recent failed attempts, and the failure ratio over the last
//! hour that raises an alert (once per episode).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::request::Failure;
use crate::metrics::DestinationCounters;

/// Failed attempts kept for `/v1/errors`.
const ERRORS_KEPT: usize = 1000;
/// The window of the failure ratio.
const WINDOW: Duration = Duration::from_secs(3600);
/// The window counts attempts per this much time (61 counts at most, whatever the rate).
const BUCKET: Duration = Duration::from_secs(60);
/// Fewer attempts than this in the window never raise a ratio alert.
const MIN_ATTEMPTS_FOR_RATIO: u64 = 10;
/// An alert episode of the failure ratio ends once the ratio is back at this share of
/// `alert_ratio`: ended as soon as it was back at `alert_ratio`, a ratio hovering there (one
/// backend of two behind a balancer down) posted an alert every other attempt.
const ALERT_ENDS_AT: f64 = 0.8;
/// A probing alert's episode ends after this many deliveries in a row: ended at the first, a
/// destination failing ~95 % of attempts (one backend of twenty up) posted "probing" and
/// "probing ends" every few successes.
const PROBING_ENDS_AFTER: u32 = 5;

/// One failed attempt, as `/v1/errors` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorEntry {
    pub at_ms: u64,
    pub seq: u64,
    pub event_id: String,
    pub status: Option<u16>,
    pub kind: &'static str,
    pub body: String,
}

#[derive(Debug, Default)]
pub struct Status {
    inner: Mutex<Inner>,
    /// `hookgate_destination_*_total`.
    counters: DestinationCounters,
}

#[derive(Debug, Default)]
struct Inner {
    paused: bool,
    /// How many times `paused` was set: a pause flag read from the store before a change made
    /// here is not applied over it.
    pause_changes: u64,
    delivering: bool,
    consecutive_failures: u32,
    errors: VecDeque<ErrorEntry>,
    /// The attempts of the last hour: per [`BUCKET`], its start, successes and failures.
    window: VecDeque<(Instant, u64, u64)>,
    alerting: bool,
    /// The destination's `alert_ratio`, as of the last failure.
    alert_ratio: f64,
    probing: bool,
    /// A probing alert was posted, and its episode has not ended.
    probing_alerted: bool,
    deliveries_in_a_row: u32,
    delivered: u64,
    dead: u64,
}

/// What the admin API shows of a destination's live state.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub paused: bool,
    /// This gateway delivers to the destination now (it holds its lease; always, on sled).
    pub delivering_here: bool,
    pub probing: bool,
    pub consecutive_failures: u32,
    pub failure_ratio_1h: f64,
    pub delivered: u64,
    /// Events given up on since this forwarder started (`dead`, beside it in the admin API,
    /// is the durable count of dead events).
    pub dead_since_start: u64,
    pub last_error: Option<ErrorEntry>,
}

impl Status {
    pub fn new(paused: bool, counters: DestinationCounters) -> Status {
        Status {
            inner: Mutex::new(Inner {
                paused,
                ..Inner::default()
            }),
            counters,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut inner)
    }

    pub fn is_paused(&self) -> bool {
        self.with(|s| s.paused)
    }

    pub fn set_paused(&self, paused: bool) {
        self.with(|s| {
            s.paused = paused;
            s.pause_changes += 1;
        });
    }

    /// Paused, and the count of changes so far (for [`Self::set_paused_since`]).
    pub fn paused_and_changes(&self) -> (bool, u64) {
        self.with(|s| (s.paused, s.pause_changes))
    }

    /// Sets the flag unless it was set since `changes` was read; returns whether it changed.
    pub fn set_paused_since(&self, changes: u64, paused: bool) -> bool {
        self.with(|s| {
            let applies = s.pause_changes == changes && s.paused != paused;
            if applies {
                s.paused = paused;
                s.pause_changes += 1;
            }
            applies
        })
    }

    pub fn set_delivering(&self, delivering: bool) {
        self.with(|s| s.delivering = delivering);
    }

    /// Failing so often that attempts only probe at the schedule's last interval.
    pub fn is_probing(&self) -> bool {
        self.with(|s| s.probing)
    }

    /// Records a delivery; returns an alert text when a probing alert's episode ends. Probing
    /// itself ends at once (the next failure is retried on the schedule from its start).
    pub fn delivered(&self) -> Option<String> {
        self.counters.delivered.inc();
        self.with(|s| {
            s.delivered += 1;
            s.consecutive_failures = 0;
            s.deliveries_in_a_row = s.deliveries_in_a_row.saturating_add(1);
            s.record(true);
            if s.alerting && s.ratio() <= s.alert_ratio * ALERT_ENDS_AT {
                s.alerting = false;
            }
            s.probing = false;
            let ends = s.probing_alerted && s.deliveries_in_a_row >= PROBING_ENDS_AFTER;
            if ends {
                s.probing_alerted = false;
            }
            ends.then(|| {
                format!("{PROBING_ENDS_AFTER} deliveries in a row: deliveries succeed again")
            })
        })
    }

    pub fn dead(&self) {
        self.counters.dead.inc();
        self.with(|s| s.dead += 1);
    }

    /// Records a failed attempt; returns an alert text when this failure starts an episode
    /// (the ratio passes `alert_ratio`, or the destination starts probing).
    pub fn failed(
        &self,
        seq: u64,
        event_id: &str,
        failure: &Failure,
        alert_ratio: f64,
        pause_after: u32,
    ) -> Option<String> {
        self.counters.failed.inc();
        self.with(|s| {
            s.consecutive_failures += 1;
            s.deliveries_in_a_row = 0;
            s.record(false);
            s.push_error(seq, event_id, failure);
            s.alert_ratio = alert_ratio;
            if !s.probing && s.consecutive_failures >= pause_after {
                s.probing = true;
            }
            if s.probing && !s.probing_alerted {
                s.probing_alerted = true;
                return Some(format!(
                    "{} consecutive failures: paused, probing at the schedule's last interval",
                    s.consecutive_failures
                ));
            }
            let ratio = s.ratio();
            if !s.alerting && s.attempts() >= MIN_ATTEMPTS_FOR_RATIO && ratio > alert_ratio {
                s.alerting = true;
                return Some(format!(
                    "failure ratio {:.0}% over the last hour",
                    ratio * 100.0
                ));
            }
            None
        })
    }

    /// Records an event that cannot be sent at all (a local error): shown like a failed attempt,
    /// but not counted against the destination, which did nothing wrong.
    pub fn unsendable(&self, seq: u64, event_id: &str, failure: &Failure) {
        self.with(|s| s.push_error(seq, event_id, failure));
    }

    /// The most recent failed attempts, newest first.
    pub fn errors(&self, limit: usize) -> Vec<ErrorEntry> {
        self.with(|s| s.errors.iter().rev().take(limit).cloned().collect())
    }

    pub fn snapshot(&self) -> Snapshot {
        self.with(|s| Snapshot {
            paused: s.paused,
            delivering_here: s.delivering,
            probing: s.probing,
            consecutive_failures: s.consecutive_failures,
            failure_ratio_1h: s.ratio(),
            delivered: s.delivered,
            dead_since_start: s.dead,
            last_error: s.errors.back().cloned(),
        })
    }
}

impl Inner {
    /// Keeps a failed attempt for `/v1/errors`, dropping the oldest beyond [`ERRORS_KEPT`].
    fn push_error(&mut self, seq: u64, event_id: &str, failure: &Failure) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if self.errors.len() == ERRORS_KEPT {
            self.errors.pop_front();
        }
        self.errors.push_back(ErrorEntry {
            at_ms,
            seq,
            event_id: event_id.to_string(),
            status: failure.status,
            kind: failure.kind,
            body: failure.detail.clone(),
        });
    }

    fn record(&mut self, success: bool) {
        let now = Instant::now();
        while self
            .window
            .front()
            .is_some_and(|(start, _, _)| now.duration_since(*start) > WINDOW)
        {
            self.window.pop_front();
        }
        let (ok, failed) = (u64::from(success), u64::from(!success));
        match self.window.back_mut() {
            Some((start, oks, fails)) if now.duration_since(*start) < BUCKET => {
                *oks += ok;
                *fails += failed;
            }
            _ => self.window.push_back((now, ok, failed)),
        }
    }

    fn attempts(&self) -> u64 {
        self.window.iter().map(|(_, ok, failed)| ok + failed).sum()
    }

    fn ratio(&self) -> f64 {
        let attempts = self.attempts();
        if attempts == 0 {
            return 0.0;
        }
        let failures: u64 = self.window.iter().map(|(_, _, failed)| failed).sum();
        failures as f64 / attempts as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_ratio_counts_per_minute_whatever_the_rate() {
        let status = Status::new(false, DestinationCounters::default());
        let failure = Failure {
            status: Some(503),
            kind: "http",
            detail: String::new(),
        };
        for i in 0..200_000u64 {
            if i % 4 == 0 {
                status.failed(i, "id", &failure, 1.0, u32::MAX);
            } else {
                status.delivered();
            }
        }
        assert!(status.with(|s| s.window.len()) <= 2, "one count a minute");
        assert_eq!(status.with(|s| s.attempts()), 200_000);
        assert!((status.snapshot().failure_ratio_1h - 0.25).abs() < 1e-9);
    }

    #[test]
    fn a_failure_ratio_hovering_at_the_threshold_alerts_once() {
        let status = Status::new(false, DestinationCounters::default());
        let failure = Failure {
            status: Some(503),
            kind: "http",
            detail: String::new(),
        };
        let mut alerts = 0;
        for i in 0..100u64 {
            alerts += usize::from(status.failed(i, "id", &failure, 0.5, u32::MAX).is_some());
            status.delivered();
        }
        assert_eq!(alerts, 1);
        // Back well under it, the episode ends; the next crossing is a new one.
        for _ in 0..100 {
            status.delivered();
        }
        for i in 0..300u64 {
            alerts += usize::from(status.failed(i, "id", &failure, 0.5, u32::MAX).is_some());
        }
        assert_eq!(alerts, 2);
    }

    /// One backend of twenty up: runs of failures long enough to probe, each ended by a
    /// delivery. One episode, not an alert at each end and start.
    #[test]
    fn probing_that_a_delivery_interrupts_is_one_alert_episode() {
        let status = Status::new(false, DestinationCounters::default());
        let failure = Failure {
            status: Some(503),
            kind: "http",
            detail: String::new(),
        };
        let mut alerts = Vec::new();
        for round in 0..50u64 {
            for i in 0..20 {
                alerts.extend(status.failed(round * 21 + i, "id", &failure, 1.0, 20));
            }
            assert!(status.is_probing());
            alerts.extend(status.delivered());
            assert!(!status.is_probing(), "probing ends at a delivery");
        }
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert!(alerts[0].contains("probing"), "{alerts:?}");
        // Deliveries in a row end the episode, once; the next probing is a new one.
        let ends: Vec<String> = (0..10).filter_map(|_| status.delivered()).collect();
        assert_eq!(ends.len(), 1, "{ends:?}");
        let again: Vec<String> = (0..20)
            .filter_map(|i| status.failed(i, "id", &failure, 1.0, 20))
            .collect();
        assert_eq!(again.len(), 1, "{again:?}");
    }

    #[test]
    fn a_pause_flag_read_before_a_change_here_is_not_applied() {
        let status = Status::new(false, DestinationCounters::default());
        let (paused, changes) = status.paused_and_changes();
        assert!(!paused);
        status.set_paused(true);
        assert!(!status.set_paused_since(changes, false), "stale");
        assert!(status.is_paused());
        let (_, changes) = status.paused_and_changes();
        assert!(status.set_paused_since(changes, false));
        assert!(!status.is_paused());
    }
}
