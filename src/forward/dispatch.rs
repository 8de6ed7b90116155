//! A destination's dispatcher: reads the queue in seq order from the destination's cursor,
//! skips what is not for it, and hands each event to a delivery task, at most `max_in_flight` at
//! once (`ordered`: one, so a failing event holds the queue). Replays come first. A delivery task
//! retries on the schedule until the event is delivered or dead, then reports it durably.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::alert::Alerter;
use super::progress::{Done, Progress};
use super::request::{attempt, webhook_id, Attempt, Failure};
use super::schedule::{next_delay, probe_interval};
use super::status::Status;
use crate::config::{wants, DestinationConfig};
use crate::event::{Seq, Source};
use crate::store::{Change, DeadRecord, Mark, Store, StoreError, StoredEvent};

/// Events read from the store at a time.
const SCAN_BATCH: usize = 256;
/// How far past the oldest event in flight an unordered destination may deliver: each event
/// delivered past it is a `settled` mark kept until the cursor passes it, so an event retried
/// for hours would otherwise let them grow without end (in memory, in the store, and on
/// JetStream in one value that must stay under the servers' `max_payload`).
const MAX_AHEAD: u64 = 50_000;
/// The environment variable that lowers [`MAX_AHEAD`], for tests.
pub const AHEAD_ENV: &str = "HOOKGATE_TEST_MAX_AHEAD";
/// How often a forwarder reads its destination's pause flag from the store.
const PAUSE_RECHECK: Duration = Duration::from_secs(1);
/// The environment variable that makes each read of the replay queue take this many more
/// milliseconds, for tests: a replay that ends during the read is then certain.
pub const SLOW_REPLAY_READ_ENV: &str = "HOOKGATE_TEST_SLOW_REPLAY_READ_MS";

/// Everything one destination's tasks share.
pub struct Destination {
    pub config: DestinationConfig,
    pub status: Status,
    /// Woken by new events, resume and replay.
    pub wake: Notify,
    pub store: Store,
    /// Providers whose test events are forwarded.
    pub forward_tests: HashMap<String, bool>,
    pub client: reqwest::Client,
    pub alerter: Alerter,
    /// When the next attempt may start, under `rate_limit_per_min`.
    pub next_slot: std::sync::Mutex<std::time::Instant>,
    /// Held by a replay from counting the queue to marking what it queues: two at once (a form
    /// sent twice, the CLI and the console) each saw the room, and together went past the bound.
    pub replay_lock: tokio::sync::Mutex<()>,
    /// Tripped by a delivery or progress task that panics (they run outside the group).
    pub died: crate::supervise::Died,
    /// The first deliveries in flight, each cancelled once a replay of its event is delivered
    /// (it went on retrying for up to the whole schedule, and could deliver a second time).
    /// Each entry is its delivery's own (`Arc::ptr_eq`): a delivery of an earlier lease term
    /// still ending removes only its own.
    pub superseded: std::sync::Mutex<HashMap<Seq, Arc<CancellationToken>>>,
}

impl Destination {
    /// The providers whose test events this destination takes.
    pub fn tests_taken(&self) -> std::collections::BTreeSet<&str> {
        let taken = self.forward_tests.iter().filter(|(_, taken)| **taken);
        taken.map(|(provider, _)| provider.as_str()).collect()
    }

    /// Whether this destination takes the event at all.
    pub fn takes(&self, event: &StoredEvent) -> bool {
        wants(&self.config.providers, &event.provider)
            && (event.source != Source::Test
                || self
                    .forward_tests
                    .get(&event.provider)
                    .copied()
                    .unwrap_or(false))
    }
}

/// Reads the destination's durable state, then delivers until `stop`. Called for each term of
/// this gateway's lease on the destination: a term starts where the last one, on any gateway,
/// left the cursor.
pub async fn start(destination: Arc<Destination>, term: crate::lease::Term) {
    let stop = term.stop;
    let name = &destination.config.name;
    let state = loop {
        match destination.store.output(name).await {
            Ok(state) => break state,
            Err(err) => {
                tracing::error!(destination = %name, error = %err, "Cannot read the destination's cursor.");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    destination.status.set_paused(state.paused);
    destination.status.set_delivering(true);
    let (progress, writer_ended) = Progress::spawn(
        destination.store.clone(),
        destination.config.name.clone(),
        state.cursor,
        &destination.died,
        (stop.clone(), term.lost),
    );
    tokio::select! {
        () = run(destination.clone(), state.cursor, progress, stop.clone()) => {}
        () = follow_pause(&destination, &stop) => {}
    }
    destination.status.set_delivering(false);
    // The term's last progress written (or given up) before the lease can go: the deliveries
    // stop with the term, and the writer ends once the last of them has reported.
    let _ = writer_ended.await;
}

/// Reads the durable pause flag every [`PAUSE_RECHECK`] and applies it, until `stop`: a pause
/// or resume made through another gateway, or through the admin API while a reload replaced
/// this forwarder, reaches the deliveries within a second, backlog or not.
async fn follow_pause(destination: &Destination, stop: &CancellationToken) {
    let name = &destination.config.name;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PAUSE_RECHECK) => {}
        }
        let (_, changes) = destination.status.paused_and_changes();
        match destination.store.output(name).await {
            Ok(state) => {
                failing = false;
                if destination.status.set_paused_since(changes, state.paused) {
                    tracing::info!(destination = %name, paused = state.paused, "The destination's pause flag changed in the store.");
                    destination.wake_all();
                }
            }
            Err(err) if !failing => {
                failing = true;
                tracing::warn!(destination = %name, error = %err, "Cannot read the destination's pause flag.");
            }
            Err(_) => {}
        }
    }
}

/// Delivers from `cursor` until `stop` (the end of this gateway's lease on the destination, or
/// shutdown): deliveries in flight then stop too, and are sent again by whoever delivers next.
async fn run(
    destination: Arc<Destination>,
    cursor: Seq,
    progress: Progress,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(if destination.config.ordered {
        1
    } else {
        destination.config.max_in_flight
    }));
    let mut last_seq = destination.store.last_seq();
    let mut scan = cursor;
    let mut oldest_in_flight = progress.oldest_in_flight();
    let ahead = std::env::var(AHEAD_ENV)
        .ok()
        .and_then(|ahead| ahead.parse().ok())
        .unwrap_or(MAX_AHEAD);
    // Replays being delivered; each delivery task removes its own once it is durably done.
    let replaying: Replaying = Arc::default();
    let slow_replay_read = std::env::var(SLOW_REPLAY_READ_ENV)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);
    let name = destination.config.name.clone();
    tracing::info!(destination = %name, cursor = %cursor, "Forwarder started.");

    while !stop.is_cancelled() {
        if destination.status.is_paused() {
            wait(&destination, &mut last_seq, false, &stop).await;
            continue;
        }
        // Replays first, each once at a time.
        match next_replay(&destination, &replaying, slow_replay_read).await {
            Ok(Some(seq)) => {
                match destination.store.event(seq).await {
                    Ok(Some(event)) => {
                        let Some(permit) = acquire(&permits, &stop).await else {
                            break;
                        };
                        lock(&replaying).seqs.insert(seq);
                        let replay = Some(replaying.clone());
                        spawn_delivery(
                            destination.clone(),
                            progress.clone(),
                            event,
                            replay,
                            (permit, stop.clone()),
                        );
                    }
                    // The event itself is gone: nothing to replay.
                    Ok(None) => {
                        let drop = vec![Change::Unmark(Mark::Replay, seq)];
                        if let Err(err) = destination.store.change(&name, drop).await {
                            tracing::error!(destination = %name, error = %err, "Cannot drop a replay entry.");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    Err(err) => {
                        tracing::error!(destination = %name, error = %err, "Cannot read an event to replay.");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::error!(destination = %name, error = %err, "Cannot read the replay queue.");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let events = match read_batch(&destination, scan).await {
            Ok(events) => events,
            Err(err) => {
                tracing::error!(destination = %name, error = %err, "Cannot read the queue.");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if events.is_empty() {
            progress.scanned(scan);
            wait(&destination, &mut last_seq, true, &stop).await;
            continue;
        }
        let mut out_of_reach = false;
        for (event, marks) in events {
            let seq = Seq(event.seq);
            // Settled first: its mark goes once the cursor passes it, whatever else holds.
            if marks.settled {
                progress.already_settled(seq);
            } else if !destination.takes(&event) || marks.dead || marks.replay {
                // Dead, or queued for a replay: its mark keeps it, and the replay path sends it.
                progress.scanned(seq);
            } else {
                if !within_reach(seq, ahead, &oldest_in_flight) {
                    // Not now: replays, a pause and this event's turn are looked at again once
                    // a delivery ends (or in a second).
                    out_of_reach = true;
                    break;
                }
                let Some(permit) = acquire(&permits, &stop).await else {
                    break;
                };
                progress.dispatched(seq);
                spawn_delivery(
                    destination.clone(),
                    progress.clone(),
                    event,
                    None,
                    (permit, stop.clone()),
                );
            }
            scan = seq;
            if stop.is_cancelled() || destination.status.is_paused() {
                break;
            }
        }
        if out_of_reach {
            tokio::select! {
                _ = oldest_in_flight.changed() => {}
                _ = destination.wake.notified() => {}
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
    tracing::info!(destination = %name, "Forwarder stopped.");
}

/// Whether `seq` is at most `ahead` past the oldest event in flight (always, with none).
fn within_reach(seq: Seq, ahead: u64, oldest: &tokio::sync::watch::Receiver<Option<Seq>>) -> bool {
    oldest
        .borrow()
        .is_none_or(|oldest| seq.0 <= oldest.0.saturating_add(ahead))
}

/// The replays being delivered, and those ended since the queue of replays was last read.
type Replaying = Arc<std::sync::Mutex<ReplaysInFlight>>;

#[derive(Default)]
struct ReplaysInFlight {
    seqs: HashSet<Seq>,
    /// The replays ended since the dispatcher last began to read the queue: each is removed
    /// from `seqs` only once its replay mark is durably gone, so a read that began before one
    /// ended may still list it.
    ended: Vec<Seq>,
}

fn lock(replaying: &Replaying) -> std::sync::MutexGuard<'_, ReplaysInFlight> {
    replaying.lock().unwrap_or_else(|p| p.into_inner())
}

/// The first replay entry not already being delivered, nor ended while the queue was read (its
/// mark read before it went: it was sent again).
async fn next_replay(
    destination: &Destination,
    replaying: &Replaying,
    slow_read: Option<Duration>,
) -> Result<Option<Seq>, StoreError> {
    loop {
        let in_flight = {
            let mut replaying = lock(replaying);
            replaying.ended.clear();
            replaying.seqs.len()
        };
        let queued = destination
            .store
            .marked(
                &destination.config.name,
                Mark::Replay,
                Seq(0)..=Seq(u64::MAX),
                in_flight + 1,
            )
            .await?;
        if let Some(slow) = slow_read {
            tokio::time::sleep(slow).await;
        }
        let replaying = lock(replaying);
        let next = queued
            .into_iter()
            .map(|(seq, _)| seq)
            .find(|seq| !replaying.seqs.contains(seq) && !replaying.ended.contains(seq));
        // With none left but ended ones, more may be queued past what this read asked for.
        if next.is_some() || replaying.ended.is_empty() {
            return Ok(next);
        }
    }
}

/// Whether the destination already has an event read from the queue.
#[derive(Debug, Clone, Copy, Default)]
struct Known {
    dead: bool,
    settled: bool,
    /// Queued for a replay, which delivers it (an operator's replay of an event ahead of the
    /// scan: the scan sent it again).
    replay: bool,
}

/// The next events after `scan`, each with what the destination already knows of it.
async fn read_batch(
    destination: &Destination,
    scan: Seq,
) -> Result<Vec<(StoredEvent, Known)>, StoreError> {
    let events = destination
        .store
        .events_after(scan, SCAN_BATCH, None)
        .await?;
    let Some(last) = events.last().map(|e| Seq(e.seq)) else {
        return Ok(Vec::new());
    };
    let range = Seq(scan.0 + 1)..=last;
    // Marks move between kinds in changes a read may fall between: a replayed dead event gains
    // its replay mark before it loses its dead record, a replay that dies gains its dead record
    // before it loses its replay mark, and a delivered one trades its replay mark for a settled
    // one in one change. Read replay, dead, replay again, settled: each move is seen from one
    // side or the other, never from neither.
    let replay_before = destination.marked_in(Mark::Replay, range.clone()).await?;
    let dead = destination.marked_in(Mark::Dead, range.clone()).await?;
    let mut replay = destination.marked_in(Mark::Replay, range.clone()).await?;
    replay.extend(replay_before);
    let settled = destination.marked_in(Mark::Settled, range).await?;
    Ok(events
        .into_iter()
        .map(|event| {
            let seq = Seq(event.seq);
            let known = Known {
                dead: dead.contains(&seq),
                settled: settled.contains(&seq),
                replay: replay.contains(&seq),
            };
            (event, known)
        })
        .collect())
}

async fn acquire(
    permits: &Arc<Semaphore>,
    stop: &CancellationToken,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::select! {
        permit = permits.clone().acquire_owned() => permit.ok(),
        _ = stop.cancelled() => None,
    }
}

/// Sleeps until new events are stored (when `for_events`), the destination is woken, or
/// stopped. On a store other gateways share, it also wakes every second: an operator may have
/// queued replays through another gateway.
async fn wait(
    destination: &Destination,
    last_seq: &mut tokio::sync::watch::Receiver<Seq>,
    for_events: bool,
    stop: &CancellationToken,
) {
    let shared = destination.store.lease_time().is_some();
    // A safety net: re-check now and then whatever happened.
    let recheck = Duration::from_secs(if shared { 1 } else { 5 });
    tokio::select! {
        changed = last_seq.changed(), if for_events => {
            if changed.is_err() {
                stop.cancelled().await;
            }
        }
        _ = destination.wake.notified() => {}
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(recheck) => {}
    }
}

fn spawn_delivery(
    destination: Arc<Destination>,
    progress: Progress,
    event: StoredEvent,
    replay: Option<Replaying>,
    (permit, stop): (tokio::sync::OwnedSemaphorePermit, CancellationToken),
) {
    let name = format!("delivery {}", destination.config.name);
    let died = destination.died.clone();
    let seq = Seq(event.seq);
    let superseded = Arc::new(CancellationToken::new());
    let first = replay.is_none();
    if first {
        superseded_list(&destination).insert(seq, superseded.clone());
    }
    died.spawn_watched(name, async move {
        if let Some(done) = deliver(&destination, &event, &stop, &superseded).await {
            let delivered = matches!(done, Done::Delivered);
            let ended = progress.finished(seq, done, replay.is_some()).await;
            // As recorded: a replay may have delivered it meanwhile.
            if ended == Some(true) {
                destination.status.dead();
                tracing::warn!(destination = %destination.config.name, seq = event.seq, event_id = %event.event_id, "Event is dead for this destination.");
            }
            let durable = ended.is_some();
            if let Some(replaying) = replay {
                let mut in_flight = lock(&replaying);
                in_flight.seqs.remove(&seq);
                in_flight.ended.push(seq);
                drop(in_flight);
                // Delivered again: the first delivery, if still retrying, ends (delivered).
                if delivered && durable {
                    if let Some(first) = superseded_list(&destination).get(&seq) {
                        first.cancel();
                    }
                }
            }
        }
        if first {
            let mut list = superseded_list(&destination);
            if list.get(&seq).is_some_and(|own| Arc::ptr_eq(own, &superseded)) {
                list.remove(&seq);
            }
        }
        drop(permit);
        destination.wake.notify_one();
    });
}

fn superseded_list(
    destination: &Destination,
) -> std::sync::MutexGuard<'_, HashMap<Seq, Arc<CancellationToken>>> {
    destination
        .superseded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Attempts until delivered or dead; `None` when cancelled (the event stays in flight and is
/// sent again after a restart). `superseded`: a replay delivered the event meanwhile, so it is
/// delivered (checked between attempts, not during one).
async fn deliver(
    destination: &Destination,
    event: &StoredEvent,
    stop: &CancellationToken,
    superseded: &CancellationToken,
) -> Option<Done> {
    let config = &destination.config;
    let mut failures: u32 = 0;
    loop {
        while destination.status.is_paused() {
            tokio::select! {
                _ = destination.wake.notified() => {}
                _ = stop.cancelled() => return None,
                _ = superseded.cancelled() => return Some(Done::Delivered),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        tokio::select! {
            () = rate_limit(destination) => {}
            _ = stop.cancelled() => return None,
            _ = superseded.cancelled() => return Some(Done::Delivered),
        }
        if destination.status.is_paused() {
            continue; // paused while it waited for its turn
        }
        let result = tokio::select! {
            result = attempt(&destination.client, config, event) => result,
            _ = stop.cancelled() => return None,
        };
        let (failure, retry_after, permanent) = match result {
            Attempt::Delivered => {
                if let Some(text) = destination.status.delivered() {
                    destination.alerter.send(&config.name, &text);
                }
                return Some(Done::Delivered);
            }
            Attempt::Retry(failure, after) => (failure, after, false),
            Attempt::Permanent(failure) => (failure, None, true),
            Attempt::Unsendable(failure) => {
                tracing::error!(destination = %config.name, seq = event.seq, event_id = %event.event_id, error = %failure.detail, "Event cannot be sent; it is dead at once.");
                destination
                    .status
                    .unsendable(event.seq, &webhook_id(event), &failure);
                return Some(Done::Dead(dead_record(failures + 1, &failure)));
            }
        };
        failures += 1;
        tracing::info!(destination = %config.name, seq = event.seq, event_id = %event.event_id, status = ?failure.status, kind = failure.kind, "Delivery attempt failed.");
        if let Some(text) = destination.status.failed(
            event.seq,
            &webhook_id(event),
            &failure,
            config.alert_ratio,
            config.pause_after_failures,
        ) {
            destination.alerter.send(&config.name, &text);
        }
        let delay = if permanent {
            None
        } else {
            next_delay(
                &config.retry_delays,
                failures as usize,
                retry_after,
                jitter(),
            )
        };
        let Some(mut delay) = delay else {
            return Some(Done::Dead(dead_record(failures, &failure)));
        };
        if destination.status.is_probing() {
            delay = delay.max(probe_interval(&config.retry_delays));
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return None,
            _ = superseded.cancelled() => return Some(Done::Delivered),
        }
    }
}

fn dead_record(attempts: u32, failure: &Failure) -> DeadRecord {
    let error = match failure.status {
        Some(status) => format!("HTTP {status}: {}", failure.detail),
        None => format!("{}: {}", failure.kind, failure.detail),
    };
    // A dead record is kept for as long as the event is dead: a bounded size.
    const MAX_ERROR_CHARS: usize = 1000;
    let error = match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => format!("{}…", &error[..end]),
        None => error,
    };
    DeadRecord {
        at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        attempts,
        error,
    }
}

/// At most `rate_limit_per_min` attempts a minute: each waits its turn.
async fn rate_limit(destination: &Destination) {
    let Some(per_min) = destination.config.rate_limit_per_min else {
        return;
    };
    let interval = Duration::from_secs(60) / per_min;
    let wait = {
        let mut next = destination
            .next_slot
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let slot = (*next).max(now);
        *next = slot + interval;
        slot - now
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

fn jitter() -> f64 {
    rand::random::<f64>()
}
