//! Retention: the policy (what may go), and the sweeper task that asks the backend to apply it
//! every `sweep_interval`.
//!
//! [`verdict`] is the policy: an event goes only once it is older than the cutoff and each
//! output that takes it is past it, a destination not keeping it dead or queued for replay. The
//! outputs come in as [`Output`]s (a name and a "takes this event" predicate), so the store
//! knows nothing of the forwarders. Dedup keys go once `dedup_window` has passed.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{now_ms, Store, StoredEvent};
use crate::config::{wants, ConsumerConfig, StoreConfig};
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::supervise::{Died, Tasks};

/// Whatever reads the queue and holds events back until it has them: a destination or a
/// consumer, known by the name its cursor is stored under.
pub struct Output {
    pub name: String,
    takes: Box<dyn Fn(&StoredEvent) -> bool + Send + Sync>,
    /// Destinations keep dead events and queued replays; consumers do not.
    pub keeps_marks: bool,
}

impl Output {
    /// A destination, with the forwarder's own rule for which events it takes.
    pub fn destination(
        name: String,
        takes: impl Fn(&StoredEvent) -> bool + Send + Sync + 'static,
    ) -> Output {
        Output {
            name,
            takes: Box::new(takes),
            keeps_marks: true,
        }
    }

    /// A pull consumer: it takes every event of the providers it wants.
    pub fn consumer(config: &ConsumerConfig) -> Output {
        let providers = config.providers.clone();
        Output {
            name: config.name.clone(),
            takes: Box::new(move |event| wants(&providers, &event.provider)),
            keeps_marks: false,
        }
    }

    pub fn takes(&self, event: &StoredEvent) -> bool {
        (self.takes)(event)
    }
}

/// Where one output stands with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// The output takes this event at all.
    pub takes: bool,
    /// Every seq at or below it is done for the output (delivered, acked, dead or not taken).
    pub cursor: Seq,
    /// A dead or replay mark keeps the event for the output, whether it takes the event now
    /// or not (a reload that narrowed its providers left the event listed dead, replayable).
    pub kept: bool,
}

/// What the sweeper does with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not past retention yet. Events arrive in seq order, so the scan stops here.
    Young,
    /// Past retention, but an output still needs it, or keeps it dead or queued for replay.
    Held,
    /// Past retention and done for every output that takes it: it goes.
    Expired,
}

/// The policy: an event received before `cutoff_ms` goes once every output that takes it has
/// moved its cursor past it, and no output keeps a mark for it. An event no output takes, nor
/// marks, goes too.
pub fn verdict(seq: Seq, received_at_ms: u64, cutoff_ms: u64, standings: &[Standing]) -> Verdict {
    if received_at_ms >= cutoff_ms {
        return Verdict::Young;
    }
    let held = standings
        .iter()
        .any(|s| s.kept || (s.takes && seq > s.cursor));
    if held {
        Verdict::Held
    } else {
        Verdict::Expired
    }
}

/// The arrival times before which events, and dedup keys, may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub events_ms: u64,
    pub dedup_ms: u64,
}

impl Cutoffs {
    /// The cutoffs for `retention` and `dedup_window`, from now by [`steady_now_ms`].
    pub fn now(retention: Duration, dedup_window: Duration) -> Cutoffs {
        let now = steady_now_ms();
        Cutoffs {
            events_ms: now.saturating_sub(millis(retention)),
            dedup_ms: now.saturating_sub(millis(dedup_window)),
        }
    }
}

/// The wall clock, never ahead of where it stood at the first call plus the time elapsed since
/// (the monotonic clock): the sweeper's now. Events and dedup keys carry that monotonic time of
/// arrival ([`arrival_ms`]); if the wall clock jumps forward while the gateway runs (a clock set right days
/// after a boot with a wrong one, a bad NTP step), the plain wall clock would expire at once
/// every dedup key of the days it skipped, and a sender's retry of an event still in its
/// retry schedule would be stored and delivered twice. With this clock, keys expire after the
/// `dedup_window` that really passed; a jump back keeps events and keys longer (the wall
/// clock is the smaller). A restart takes the wall clock as it is then.
fn steady_now_ms() -> u64 {
    let (wall_at_start, start) = clock_start();
    steady(now_ms(), wall_at_start, start.elapsed())
}

/// The wall clock and the monotonic clock at the first reading of either clock here (the
/// gateway's start: [`start_clocks`]).
fn clock_start() -> (u64, std::time::Instant) {
    static START: std::sync::OnceLock<(u64, std::time::Instant)> = std::sync::OnceLock::new();
    *START.get_or_init(|| (now_ms(), std::time::Instant::now()))
}

/// Reads the clocks' start now (the gateway's start), not at the first event.
pub fn start_clocks() {
    clock_start();
}

/// An event's time of arrival: the wall clock at the start plus the time that really passed
/// since (the monotonic clock), whatever the wall clock does meanwhile. A wall clock set back
/// while the gateway runs (a VM restored from a snapshot, a bad NTP step) stamped the events that
/// came meanwhile in the past: their dedup keys, once the clock was set right, looked that much
/// older and expired that much early (a sender's retry then stored and delivered twice); one set
/// forward stamped them in the future, and every sweep stopped at the first of them until the
/// time caught up. The sweeper's now ([`steady_now_ms`]) is never ahead of this. A restart takes
/// the wall clock as it is then.
pub fn arrival_ms() -> u64 {
    let (wall_at_start, start) = clock_start();
    wall_at_start.saturating_add(millis(start.elapsed()))
}

/// [`steady_now_ms`] from its readings: `wall` now, and `wall_at_start` `elapsed` ago.
fn steady(wall: u64, wall_at_start: u64, elapsed: Duration) -> u64 {
    wall.min(wall_at_start.saturating_add(millis(elapsed)))
}

/// What one sweep removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    pub events: u64,
    pub dedup_keys: u64,
    /// Bytes of disk a compaction after this sweep gave back (sled: `compact/`).
    pub disk_freed: u64,
    /// The sweep stopped at its bound before the end of what has expired (on sled, having
    /// removed events; on JetStream, also through events still held): the sweeper goes on at
    /// once instead of after `sweep_interval`, so that retention keeps up with any rate of
    /// traffic (one sweep per interval removed at most 50,000 events a minute on sled by
    /// default, 512 on JetStream).
    pub more: bool,
    /// The sweep read only events still held (a long run of them: dead ones, kept for good),
    /// and did nothing else: the sweeper follows with at most [`IDLE_SWEEPS_PER_TICK`] of these
    /// an interval.
    pub held_only: bool,
}

/// The running sweeper.
pub struct Sweeper {
    tasks: Tasks,
    task: Task,
    interval: Duration,
}

impl Sweeper {
    /// A sweeper that sweeps every `config.sweep_interval` once started.
    pub fn new(
        store: Store,
        config: &StoreConfig,
        outputs: Vec<Output>,
        metrics: Arc<Metrics>,
        died: &Died,
    ) -> Sweeper {
        Sweeper {
            tasks: Tasks::new("sweeper", died),
            task: Task {
                store,
                outputs: Arc::new(outputs),
                metrics,
                retention: config.retention,
                dedup_window: config.dedup_window,
            },
            interval: config.sweep_interval,
        }
    }

    /// Starts sweeping (the first sweep at once). Must run inside the actix system.
    pub fn start(&self) {
        let (task, interval) = (self.task.clone(), self.interval);
        self.tasks.spawn(
            "sweeper".to_string(),
            crate::lease::run_leased(
                task.store.clone(),
                "sweeper".to_string(),
                self.tasks.token(),
                move |term| task.clone().run(interval, term.stop),
            ),
        );
    }

    /// Stops the sweeper; a sweep in progress stops between two writes (each is atomic).
    pub async fn stop(self, within: Duration) {
        self.tasks.stop(within).await;
    }
}

#[derive(Clone)]
struct Task {
    store: Store,
    outputs: Arc<Vec<Output>>,
    metrics: Arc<Metrics>,
    retention: Duration,
    dedup_window: Duration,
}

impl Task {
    async fn run(self, interval: Duration, cancel: CancellationToken) {
        tracing::info!(
            retention = ?self.retention,
            dedup_window = ?self.dedup_window,
            "Sweeper started."
        );
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'ticks: loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => {}
            }
            // Sweeps follow each other while each stops at its bound with more to look at; those
            // that remove nothing (a run of held events) only so many times an interval.
            let mut idle = 0;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break 'ticks,
                    (more, held_only) = self.sweep() => {
                        idle = if held_only { idle + 1 } else { 0 };
                        if !more || idle >= IDLE_SWEEPS_PER_TICK {
                            break;
                        }
                    }
                }
            }
        }
        tracing::info!("Sweeper stopped.");
    }

    /// One sweep, then the disk gauge. Failures are logged; the next sweep tries again. Returns
    /// whether the next sweep should follow at once ([`Swept::more`]), and whether this one
    /// only read held events ([`Swept::held_only`]).
    async fn sweep(&self) -> (bool, bool) {
        let cutoffs = Cutoffs::now(self.retention, self.dedup_window);
        let (mut more, mut held_only) = (false, false);
        match self.store.sweep(cutoffs, self.outputs.clone()).await {
            Ok(swept) => {
                more = swept.more;
                held_only = swept.held_only;
                self.metrics.events_swept.inc_by(swept.events);
                self.metrics.dedup_keys_swept.inc_by(swept.dedup_keys);
                if swept != Swept::default() {
                    tracing::info!(
                        events = swept.events,
                        dedup_keys = swept.dedup_keys,
                        disk_freed_mb = swept.disk_freed / (1024 * 1024),
                        "Swept expired events and dedup keys."
                    );
                }
            }
            Err(err) => tracing::error!(error = %err, "Sweeping failed; retrying next sweep."),
        }
        match self.store.size_on_disk().await {
            Ok(bytes) => {
                self.metrics
                    .disk_bytes
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            Err(err) => tracing::warn!(error = %err, "Cannot measure the store's size."),
        }
        (more, held_only)
    }
}

/// Sweeps in a row that only read held events, at most, each `sweep_interval` (a pass through a
/// long run of them goes on at the next; on JetStream, 16 steps of 512 events).
const IDLE_SWEEPS_PER_TICK: u32 = 16;

pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweepers_clock_does_not_follow_the_wall_clock_forward() {
        const DAY: u64 = 86_400_000;
        let start = 1_000 * DAY;
        let hour = Duration::from_secs(3_600);
        // In step: the wall clock.
        assert_eq!(steady(start + 3_600_000, start, hour), start + 3_600_000);
        // Set forward by a week an hour in: an hour on, not a week.
        assert_eq!(
            steady(start + 7 * DAY + 3_600_000, start, hour),
            start + 3_600_000
        );
        // Set back a day: the wall clock, which keeps more.
        assert_eq!(steady(start - DAY, start, hour), start - DAY);
    }

    const CUTOFF: u64 = 10_000;
    const OLD: u64 = CUTOFF - 1;

    fn standing(takes: bool, cursor: u64, kept: bool) -> Standing {
        Standing {
            takes,
            cursor: Seq(cursor),
            kept,
        }
    }

    #[test]
    fn young_events_stay_whatever_the_outputs() {
        assert_eq!(verdict(Seq(1), CUTOFF, CUTOFF, &[]), Verdict::Young);
        let done = [standing(true, 5, false)];
        assert_eq!(verdict(Seq(1), CUTOFF + 1, CUTOFF, &done), Verdict::Young);
    }

    #[test]
    fn old_events_go_once_every_output_that_takes_them_is_past_them() {
        let seq = Seq(5);
        // No outputs at all, or none that takes it.
        assert_eq!(verdict(seq, OLD, CUTOFF, &[]), Verdict::Expired);
        let others = [standing(false, 0, false), standing(false, 3, false)];
        assert_eq!(verdict(seq, OLD, CUTOFF, &others), Verdict::Expired);
        // But a mark holds it, taken or not (dead for a destination that no longer takes it).
        let marked = [standing(false, 0, false), standing(false, 0, true)];
        assert_eq!(verdict(seq, OLD, CUTOFF, &marked), Verdict::Held);
        // At or below every cursor.
        let past = [standing(true, 5, false), standing(true, 9, false)];
        assert_eq!(verdict(seq, OLD, CUTOFF, &past), Verdict::Expired);
        // One destination (or consumer) not there yet.
        let behind = [standing(true, 9, false), standing(true, 4, false)];
        assert_eq!(verdict(seq, OLD, CUTOFF, &behind), Verdict::Held);
    }

    #[test]
    fn dead_and_replayed_events_stay() {
        let dead = [standing(true, 9, false), standing(true, 9, true)];
        assert_eq!(verdict(Seq(5), OLD, CUTOFF, &dead), Verdict::Held);
    }

    #[test]
    fn consumers_take_what_they_want() {
        let consumer = Output::consumer(&ConsumerConfig {
            name: "pull".into(),
            providers: Some(vec![crate::event::ProviderName::parse("a").expect("a name")]),
        });
        let event = |provider: &str| StoredEvent {
            seq: 1,
            provider: provider.into(),
            event_id: "e".into(),
            received_at_ms: OLD,
            source: crate::event::Source::Webhook,
            content_type: None,
            body: Vec::new(),
            topic: None,
        };
        assert!(consumer.takes(&event("a")));
        assert!(!consumer.takes(&event("b")));
        assert!(!consumer.keeps_marks);
    }
}
