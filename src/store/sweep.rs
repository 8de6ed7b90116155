//! The retention sweeper: a background task that, every `sweep_interval`, removes the events past
//! `retention` that every output has, and the dedup keys past `dedup_window`.
//!
//! Both trees are scanned from the oldest entry in small steps (at most [`BATCH`] deletes per
//! store write, a blocking read between async yields), and every delete goes through the
//! committer's group commit, so a sweep never holds ingest up. [`verdict`] is the policy:
//! an event goes only once it is older than the cutoff and each output that takes it is past it,
//! a destination not keeping it dead or queued for replay. The outputs come in as [`Output`]s
//! (a name and a "takes this event" predicate), so the store knows nothing of the forwarders.

use std::sync::Arc;
use std::time::Duration;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use tokio_util::sync::CancellationToken;

use super::keys::output_seq_key;
use super::{now_ms, Store, StoreError, StoredEvent, TreeId, Write};
use crate::config::{wants, ConsumerConfig, StoreConfig};
use crate::event::Seq;
use crate::metrics::Metrics;

/// Most deletes in one store write: one small group commit that events wait little behind.
const BATCH: usize = 500;
/// Most dedup keys looked at in one blocking step (each is a few dozen bytes).
const DEDUP_STEP: usize = 4 * BATCH;
/// Most entries of a tree one sweep looks at; the next sweep resumes where this one stopped.
const MAX_EXAMINED: usize = 50_000;

/// Whatever reads the queue and holds events back until it has them: a destination or a
/// consumer, known by the name its cursor is stored under.
pub struct Output {
    name: String,
    takes: Box<dyn Fn(&StoredEvent) -> bool + Send + Sync>,
    /// Destinations keep dead events and queued replays (`dead`, `replay`); consumers do not.
    keeps_entries: bool,
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
            keeps_entries: true,
        }
    }

    /// A pull consumer: it takes every event of the providers it wants.
    pub fn consumer(config: &ConsumerConfig) -> Output {
        let providers = config.providers.clone();
        Output {
            name: config.name.clone(),
            takes: Box::new(move |event| wants(&providers, &event.provider)),
            keeps_entries: false,
        }
    }
}

/// Where one output stands with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// The output takes this event at all.
    pub takes: bool,
    /// Every seq at or below it is done for the output (delivered, acked, dead or not taken).
    pub cursor: Seq,
    /// A `dead` or `replay` entry keeps the event for the output.
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
/// moved its cursor past it and keeps no entry for it. An event no output takes goes too.
pub fn verdict(seq: Seq, received_at_ms: u64, cutoff_ms: u64, standings: &[Standing]) -> Verdict {
    if received_at_ms >= cutoff_ms {
        return Verdict::Young;
    }
    let held = standings
        .iter()
        .any(|s| s.takes && (seq > s.cursor || s.kept));
    if held {
        Verdict::Held
    } else {
        Verdict::Expired
    }
}

/// Whether a dedup value (see `record::dedup_value`: 8-byte seq, 8-byte big-endian arrival time)
/// was received before `cutoff_ms`. A value of another shape is kept.
fn dedup_expired(value: &[u8], cutoff_ms: u64) -> bool {
    value
        .get(8..16)
        .and_then(|bytes| bytes.try_into().ok())
        .map(u64::from_be_bytes)
        .is_some_and(|received_at_ms| received_at_ms < cutoff_ms)
}

/// The running sweeper.
pub struct Sweeper {
    task: actix_web::rt::task::JoinHandle<()>,
    cancel: CancellationToken,
}

impl Sweeper {
    /// Starts sweeping every `config.sweep_interval` (the first sweep at once). Must run inside
    /// the actix system.
    pub fn start(
        store: Store,
        config: &StoreConfig,
        outputs: Vec<Output>,
        metrics: Arc<Metrics>,
    ) -> Sweeper {
        let cancel = CancellationToken::new();
        let task = Task {
            store,
            outputs: Arc::new(outputs),
            metrics,
            retention: config.retention,
            dedup_window: config.dedup_window,
            events_resume: Seq(0),
            dedup_resume: None,
        };
        let task = actix_web::rt::spawn(task.run(config.sweep_interval, cancel.clone()));
        Sweeper { task, cancel }
    }

    /// Stops the sweeper; a sweep in progress stops between two writes (each is atomic).
    pub async fn stop(self, within: Duration) {
        self.cancel.cancel();
        if tokio::time::timeout(within, self.task).await.is_err() {
            tracing::warn!("The sweeper did not stop in time.");
        }
    }
}

struct Task {
    store: Store,
    outputs: Arc<Vec<Output>>,
    metrics: Arc<Metrics>,
    retention: Duration,
    dedup_window: Duration,
    /// Where the next sweep of events starts (after this seq; 0: from the oldest).
    events_resume: Seq,
    /// Where the next sweep of dedup keys starts (after this key; `None`: from the first).
    dedup_resume: Option<Vec<u8>>,
}

/// What one blocking step over a tree found.
struct Step<K> {
    /// Keys to delete.
    expired: Vec<K>,
    examined: usize,
    /// The last key looked at.
    last: Option<K>,
    /// The scan reached a young entry or the end of the tree.
    done: bool,
}

impl<K> Default for Step<K> {
    fn default() -> Self {
        Step {
            expired: Vec::new(),
            examined: 0,
            last: None,
            done: false,
        }
    }
}

impl Task {
    async fn run(mut self, interval: Duration, cancel: CancellationToken) {
        tracing::info!(
            retention = ?self.retention,
            dedup_window = ?self.dedup_window,
            "Sweeper started."
        );
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.sweep() => {}
            }
        }
        tracing::info!("Sweeper stopped.");
    }

    /// One sweep: events, then dedup keys, then the disk gauge. Failures are logged; the next
    /// sweep tries again.
    async fn sweep(&mut self) {
        let events = self.sweep_events().await.unwrap_or_else(|err| {
            tracing::error!(error = %err, "Sweeping expired events failed; retrying next sweep.");
            0
        });
        let keys = self.sweep_dedup().await.unwrap_or_else(|err| {
            tracing::error!(error = %err, "Sweeping expired dedup keys failed; retrying next sweep.");
            0
        });
        if events + keys > 0 {
            tracing::info!(
                events,
                dedup_keys = keys,
                "Swept expired events and dedup keys."
            );
        }
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.size_on_disk()).await {
            Ok(Ok(bytes)) => {
                self.metrics
                    .disk_bytes
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "Cannot measure the store's size."),
            Err(err) => tracing::warn!(error = %err, "Cannot measure the store's size."),
        }
    }

    /// Deletes `keys` from `tree` in one store write, and counts them. Returns how many.
    async fn delete(&self, tree: TreeId, keys: Vec<Vec<u8>>) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let count = keys.len() as u64;
        let deletes = keys.into_iter().map(|key| Write::Delete(tree, key));
        self.store.write(deletes.collect()).await?;
        let counter = match tree {
            TreeId::Events => &self.metrics.events_swept,
            _ => &self.metrics.dedup_keys_swept,
        };
        counter.inc_by(count);
        Ok(count)
    }

    /// Removes expired events, oldest first, up to `MAX_EXAMINED` looked at. Returns how many.
    async fn sweep_events(&mut self) -> Result<u64, StoreError> {
        let cutoff_ms = now_ms().saturating_sub(millis(self.retention));
        let mut examined = 0;
        let mut swept = 0;
        while examined < MAX_EXAMINED {
            let (store, outputs, after) =
                (self.store.clone(), self.outputs.clone(), self.events_resume);
            let step = blocking(move || scan_events(&store, &outputs, after, cutoff_ms)).await?;
            examined += step.examined;
            let keys = step.expired.iter().map(|seq| seq.to_key().to_vec());
            swept += self.delete(TreeId::Events, keys.collect()).await?;
            if step.done {
                self.events_resume = Seq(0);
                break;
            }
            self.events_resume = step.last.unwrap_or(after);
            tokio::task::yield_now().await;
        }
        Ok(swept)
    }

    /// Removes dedup keys older than `dedup_window`, up to `MAX_EXAMINED` looked at.
    async fn sweep_dedup(&mut self) -> Result<u64, StoreError> {
        let cutoff_ms = now_ms().saturating_sub(millis(self.dedup_window));
        let mut examined = 0;
        let mut swept = 0;
        while examined < MAX_EXAMINED {
            let (store, after) = (self.store.clone(), self.dedup_resume.clone());
            let step = blocking(move || scan_dedup(&store, after.as_deref(), cutoff_ms)).await?;
            examined += step.examined;
            swept += self.delete(TreeId::Dedup, step.expired).await?;
            if step.done {
                self.dedup_resume = None;
                break;
            }
            self.dedup_resume = step.last.or(self.dedup_resume.take());
            tokio::task::yield_now().await;
        }
        Ok(swept)
    }
}

/// Up to `BATCH` events after `after`, each judged by [`verdict`]. Blocking.
fn scan_events(
    store: &Store,
    outputs: &[Output],
    after: Seq,
    cutoff_ms: u64,
) -> Result<Step<Seq>, StoreError> {
    // Cursors only move forward, so reading them before the events is safe: an event at or
    // below one is done for that output for good (bar an operator's replay, see `kept`).
    let cursors = outputs
        .iter()
        .map(|output| store.cursor(&output.name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut step = Step::default();
    let start = Seq(after.0.saturating_add(1)).to_key();
    for item in store.tree(TreeId::Events).range(start..) {
        if step.examined >= BATCH {
            return Ok(step);
        }
        let (key, value) = item?;
        let seq = Seq::from_key(&key).ok_or_else(|| StoreError::Corrupt("event key".into()))?;
        step.examined += 1;
        step.last = Some(seq);
        let event = match StoredEvent::decode(seq, &value) {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(seq = %seq, error = %err, "Keeping an event that cannot be read.");
                continue;
            }
        };
        match judge(store, outputs, &cursors, &event, cutoff_ms)? {
            Verdict::Young => {
                step.done = true;
                return Ok(step);
            }
            Verdict::Held => {}
            Verdict::Expired => step.expired.push(seq),
        }
    }
    step.done = true;
    Ok(step)
}

/// The verdict on one event; the `dead` and `replay` trees are read only when the cursors alone
/// would let it go.
fn judge(
    store: &Store,
    outputs: &[Output],
    cursors: &[Seq],
    event: &StoredEvent,
    cutoff_ms: u64,
) -> Result<Verdict, StoreError> {
    let seq = Seq(event.seq);
    let mut standings: Vec<Standing> = outputs
        .iter()
        .zip(cursors)
        .map(|(output, cursor)| Standing {
            takes: (output.takes)(event),
            cursor: *cursor,
            kept: false,
        })
        .collect();
    let first = verdict(seq, event.received_at_ms, cutoff_ms, &standings);
    if first != Verdict::Expired {
        return Ok(first);
    }
    let kept = kept(store, outputs, &standings, seq)?;
    for (standing, kept) in standings.iter_mut().zip(kept) {
        standing.kept = kept;
    }
    Ok(verdict(seq, event.received_at_ms, cutoff_ms, &standings))
}

/// For each output, whether a `dead` or `replay` entry keeps `seq`. Read in one (read-only)
/// transaction: an event moving between `dead` and `replay` (replayed, then dead again) is never
/// seen in neither. The remaining race, an operator replaying an event already delivered while it
/// is being swept, loses nothing that was not delivered.
fn kept(
    store: &Store,
    outputs: &[Output],
    standings: &[Standing],
    seq: Seq,
) -> Result<Vec<bool>, StoreError> {
    let keys: Vec<Option<Vec<u8>>> = outputs
        .iter()
        .zip(standings)
        .map(|(output, standing)| {
            (output.keeps_entries && standing.takes).then(|| output_seq_key(&output.name, seq))
        })
        .collect();
    let trees = [store.tree(TreeId::Dead), store.tree(TreeId::Replay)];
    let result = trees[..].transaction(|trees| {
        let mut kept = Vec::with_capacity(keys.len());
        for key in &keys {
            kept.push(match key {
                Some(key) => trees[0].get(key)?.is_some() || trees[1].get(key)?.is_some(),
                None => false,
            });
        }
        Ok::<_, ConflictableTransactionError<StoreError>>(kept)
    });
    match result {
        Ok(kept) => Ok(kept),
        Err(TransactionError::Abort(err)) => Err(err),
        Err(TransactionError::Storage(err)) => Err(StoreError::from(err)),
    }
}

/// Up to `DEDUP_STEP` dedup keys after `after` (at most `BATCH` of them expired). Blocking.
fn scan_dedup(
    store: &Store,
    after: Option<&[u8]>,
    cutoff_ms: u64,
) -> Result<Step<Vec<u8>>, StoreError> {
    let tree = store.tree(TreeId::Dedup);
    // The smallest key after `after` is `after` followed by a zero byte.
    let iter = match after {
        Some(after) => tree.range([after, &[0]].concat()..),
        None => tree.iter(),
    };
    let mut step = Step::default();
    for item in iter {
        if step.examined >= DEDUP_STEP || step.expired.len() >= BATCH {
            return Ok(step);
        }
        let (key, value) = item?;
        step.examined += 1;
        if dedup_expired(&value, cutoff_ms) {
            step.expired.push(key.to_vec());
        }
        step.last = Some(key.to_vec());
    }
    step.done = true;
    Ok(step)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|err| StoreError::Corrupt(format!("a sweep step panicked: {err}")))?
}

#[cfg(test)]
mod tests {
    use super::super::record::dedup_value;
    use super::*;

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
        let others = [standing(false, 0, false), standing(false, 0, true)];
        assert_eq!(verdict(seq, OLD, CUTOFF, &others), Verdict::Expired);
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
    fn dedup_keys_expire_by_their_arrival_time() {
        assert!(dedup_expired(&dedup_value(Seq(3), OLD), CUTOFF));
        assert!(!dedup_expired(&dedup_value(Seq(3), CUTOFF), CUTOFF));
        assert!(!dedup_expired(&dedup_value(Seq(3), CUTOFF + 1), CUTOFF));
        // A value of another shape is kept.
        assert!(!dedup_expired(&Seq(3).to_key(), CUTOFF));
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
        assert!((consumer.takes)(&event("a")));
        assert!(!(consumer.takes)(&event("b")));
        assert!(!consumer.keeps_entries);
    }
}
