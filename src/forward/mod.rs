//! Forwarding: every stored event is pushed to each `[[destination]]` that wants it, at least
//! once, in seq order unless the destination says `ordered = false`.
//!
//! Per destination, a dispatcher ([`dispatch`]) reads the queue from the destination's durable
//! cursor and hands events to delivery tasks; each attempt ([`request`]) is a signed POST; the
//! schedule ([`schedule`]) says when to retry; a writer ([`progress`]) records what is done
//! (cursor, out-of-order deliveries, dead events) through the store's group commit before a
//! delivery counts. [`status`] keeps live state for the admin API and raises alerts ([`alert`]).
//! When several gateways share the store, one of them delivers to a destination at a time: the
//! one holding its lease ([`crate::lease`]), from the durable cursor and marks.

mod alert;
mod dispatch;
mod progress;
pub mod request;
mod schedule;
mod status;

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{wants, Config};
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::store::{Change, DeadRecord, Mark, Store, StoreError, StoredEvent};
use crate::supervise::{Died, Tasks};

pub use dispatch::Destination;

/// Replays one destination may have queued at once. Each is a mark the store keeps until it is
/// delivered, and on JetStream all of them are in one value that every delivery rewrites and
/// that must stay under the servers' `max_payload` (a replay of ~100,000 dead events made it
/// larger: the server closed the gateway's connection, every publish in flight with it, and the
/// replay failed every time). The rest stay dead, listed, to be replayed once these are done.
pub const MAX_QUEUED_REPLAYS: u64 = 20_000;
/// The environment variable that lowers [`MAX_QUEUED_REPLAYS`], for tests.
pub const QUEUED_REPLAYS_ENV: &str = "HOOKGATE_TEST_MAX_QUEUED_REPLAYS";

pub fn max_queued_replays() -> u64 {
    std::env::var(QUEUED_REPLAYS_ENV)
        .ok()
        .and_then(|max| max.parse().ok())
        .unwrap_or(MAX_QUEUED_REPLAYS)
}

/// What a replay queued, and what it left for lack of room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    pub queued: usize,
    pub left: usize,
}

impl std::ops::AddAssign for Replayed {
    fn add_assign(&mut self, other: Replayed) {
        self.queued += other.queued;
        self.left += other.left;
    }
}
pub use status::{ErrorEntry, Snapshot};

/// Every destination's forwarder.
pub struct Forwarders {
    destinations: Vec<Arc<Destination>>,
    /// Each destination's tasks (index for index), once started.
    tasks: Vec<Option<Tasks>>,
    died: Died,
}

/// One destination's state for `GET /v1/destinations`.
#[derive(Debug, Serialize)]
pub struct DestinationView {
    pub name: String,
    pub url: String,
    pub ordered: bool,
    pub cursor: u64,
    pub queue_depth: u64,
    pub oldest_pending_age_s: Option<f64>,
    pub replay_queued: u64,
    pub dead: u64,
    #[serde(flatten)]
    pub live: Snapshot,
}

impl Forwarders {
    /// A forwarder per destination, from its durable state; none runs before [`Self::start`],
    /// so that a reload can stop the running ones first (two forwarders of one destination would
    /// deliver the same events at once, and on a shared store share one lease).
    pub async fn new(
        config: &Config,
        store: &Store,
        metrics: &Metrics,
        died: &Died,
    ) -> Result<Forwarders, StoreError> {
        let forward_tests: HashMap<String, bool> = config
            .providers
            .iter()
            .map(|p| (p.name.to_string(), p.verifier.forwards_tests()))
            .collect();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|err| StoreError::Corrupt(format!("cannot build the HTTP client: {err}")))?;
        let mut destinations = Vec::new();
        for destination in &config.destinations {
            let state = store.output(&destination.name).await?;
            let shared = Arc::new(Destination {
                config: destination.clone(),
                status: status::Status::new(
                    state.paused,
                    metrics.destination_counters(&destination.name),
                ),
                wake: tokio::sync::Notify::new(),
                store: store.clone(),
                forward_tests: forward_tests.clone(),
                client: client.clone(),
                alerter: alert::Alerter::new(destination.alert_url.clone(), client.clone()),
                next_slot: std::sync::Mutex::new(Instant::now()),
                replay_lock: tokio::sync::Mutex::new(()),
                died: died.clone(),
                superseded: std::sync::Mutex::default(),
            });
            destinations.push(shared);
        }
        Ok(Forwarders {
            tasks: destinations.iter().map(|_| None).collect(),
            destinations,
            died: died.clone(),
        })
    }

    /// Starts every forwarder not running yet. Must run inside the actix system.
    pub fn start(&mut self) {
        for (destination, tasks) in self.destinations.iter().zip(&mut self.tasks) {
            if tasks.is_some() {
                continue;
            }
            let name = &destination.config.name;
            let group = Tasks::new("forwarders", &self.died);
            let dispatcher = destination.clone();
            group.spawn(
                format!("destination {name}"),
                crate::lease::run_leased(
                    destination.store.clone(),
                    format!("destination/{name}"),
                    group.token(),
                    move |term| dispatch::start(dispatcher.clone(), term),
                ),
            );
            *tasks = Some(group);
        }
    }

    /// Hands each running forwarder whose destination `next` has unchanged (its settings, and
    /// which providers' test events it takes) over to `next`, running, with its deliveries in
    /// flight and its failures, probing and alerts (a reload that added a destination started
    /// every other one's retry schedule over, and sent its alert again). What stays here is
    /// what changed or went: stop it before starting `next`. Returns how many were handed over.
    pub fn hand_over_unchanged(&mut self, next: &mut Forwarders) -> usize {
        let mut kept = 0;
        for (destination, tasks) in next.destinations.iter_mut().zip(&mut next.tasks) {
            let unchanged = self.destinations.iter().position(|running| {
                running.config == destination.config
                    && running.tests_taken() == destination.tests_taken()
            });
            let Some(at) = unchanged else { continue };
            if let Some(running) = self.tasks[at].take() {
                *destination = self.destinations[at].clone();
                *tasks = Some(running);
                kept += 1;
            }
        }
        kept
    }

    pub fn destination(&self, name: &str) -> Option<&Arc<Destination>> {
        self.destinations.iter().find(|d| d.config.name == name)
    }

    pub fn destinations(&self) -> &[Arc<Destination>] {
        &self.destinations
    }

    /// Stops every forwarder, at once; deliveries in flight are abandoned (sent again after a
    /// restart).
    pub async fn stop(self, within: Duration) {
        let stops = self
            .tasks
            .into_iter()
            .flatten()
            .map(|tasks| tasks.stop(within));
        futures_util::future::join_all(stops).await;
    }
}

impl Destination {
    /// Pauses or resumes, durably (a paused destination stays paused across restarts).
    pub async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.store
            .change(&self.config.name, vec![Change::Paused(paused)])
            .await?;
        self.status.set_paused(paused);
        self.wake_all();
        Ok(())
    }

    /// Wakes every task waiting on this destination, and leaves a wake-up for the dispatcher if
    /// it is busy right now (so a replay or resume is never missed until the next timeout).
    fn wake_all(&self) {
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// Queues events for delivery again, the first of `seqs` first, as many as the queue of
    /// replays has room for ([`MAX_QUEUED_REPLAYS`]): each leaves the dead list (if it was
    /// there); the others stay as they were.
    pub async fn replay(&self, seqs: &[Seq]) -> Result<Replayed, StoreError> {
        // Gateways sharing a JetStream store each hold their own: across them the bound is
        // soft (two at once may each take the room; see docs/delivery.md).
        let _one = self.replay_lock.lock().await;
        let queued = self
            .store
            .count_marked(&self.config.name, Mark::Replay)
            .await?;
        let room = usize::try_from(max_queued_replays().saturating_sub(queued)).unwrap_or(0);
        let taken = &seqs[..seqs.len().min(room)];
        if !taken.is_empty() {
            let changes = taken.iter().flat_map(|seq| {
                [
                    Change::Unmark(Mark::Dead, *seq),
                    Change::Mark(Mark::Replay, *seq),
                ]
            });
            self.store
                .change(&self.config.name, changes.collect())
                .await?;
            self.wake_all();
        }
        Ok(Replayed {
            queued: taken.len(),
            left: seqs.len() - taken.len(),
        })
    }

    /// Dead events, oldest first.
    pub async fn dead(&self, limit: usize) -> Result<Vec<(Seq, DeadRecord)>, StoreError> {
        self.dead_in(Seq(0)..=Seq(u64::MAX), limit).await
    }

    /// How many events are dead for this destination.
    pub async fn dead_count(&self) -> Result<u64, StoreError> {
        self.store.count_marked(&self.config.name, Mark::Dead).await
    }

    /// Dead events of `range`, oldest first.
    pub async fn dead_in(
        &self,
        range: RangeInclusive<Seq>,
        limit: usize,
    ) -> Result<Vec<(Seq, DeadRecord)>, StoreError> {
        let dead = self
            .store
            .marked(&self.config.name, Mark::Dead, range, limit)
            .await?;
        Ok(dead
            .into_iter()
            .filter_map(|(seq, record)| Some((seq, record?)))
            .collect())
    }

    /// Where one event stands for this destination, or `None` if it does not take it.
    pub async fn delivery_state(
        &self,
        event: &StoredEvent,
    ) -> Result<Option<&'static str>, StoreError> {
        if !wants(&self.config.providers, &event.provider) {
            return Ok(None);
        }
        if !self.takes(event) {
            return Ok(Some("skipped"));
        }
        let seq = Seq(event.seq);
        let marks = self.store.marks(&self.config.name, seq).await?;
        let cursor = self.store.output(&self.config.name).await?.cursor;
        Ok(Some(if marks.dead.is_some() {
            "dead"
        } else if marks.replay {
            "pending"
        } else if seq <= cursor || marks.settled {
            "delivered"
        } else {
            "pending"
        }))
    }

    /// Queue depth, oldest pending age and counts, for `GET /v1/destinations`.
    pub async fn view(&self) -> Result<DestinationView, StoreError> {
        let name = &self.config.name;
        let output = self.store.output(name).await?;
        let cursor = output.cursor;
        let (depth, oldest) = self.pending(cursor).await?;
        let mut live = self.status.snapshot();
        // The store's flag, and probing only where it is delivered from: a gateway that does not
        // hold the destination's lease (JetStream) is told of neither.
        live.paused = output.paused;
        live.probing &= live.delivering_here;
        Ok(DestinationView {
            name: name.clone(),
            url: crate::shown_url::shown(&self.config.url),
            ordered: self.config.ordered,
            cursor: cursor.0,
            queue_depth: depth,
            oldest_pending_age_s: oldest,
            replay_queued: self.store.count_marked(name, Mark::Replay).await?,
            dead: self.dead_count().await?,
            live,
        })
    }

    /// Events after the cursor this destination takes (counted up to a bound), and the age of
    /// the oldest.
    async fn pending(&self, cursor: Seq) -> Result<(u64, Option<f64>), StoreError> {
        const COUNT_UP_TO: usize = 100_000;
        const PAGE: usize = 1024;
        let now_ms = crate::store::now_ms();
        let (mut depth, mut oldest, mut scanned, mut after) = (0, None, 0, cursor);
        while scanned < COUNT_UP_TO {
            let events = self.store.events_after(after, PAGE, None).await?;
            let Some(last) = events.last().map(|e| Seq(e.seq)) else {
                break;
            };
            let done = self.done_in(Seq(after.0 + 1)..=last).await?;
            for event in &events {
                if self.takes(event) && !done.contains(&Seq(event.seq)) {
                    depth += 1;
                    oldest
                        .get_or_insert(now_ms.saturating_sub(event.received_at_ms) as f64 / 1000.0);
                }
            }
            scanned += events.len();
            after = last;
            if crate::store::read_to_end(&events, PAGE) {
                break;
            }
        }
        Ok((depth, oldest))
    }

    /// The seqs in `range` that are settled or dead for this destination.
    async fn done_in(&self, range: RangeInclusive<Seq>) -> Result<HashSet<Seq>, StoreError> {
        let mut done = self.marked_in(Mark::Settled, range.clone()).await?;
        done.extend(self.marked_in(Mark::Dead, range).await?);
        Ok(done)
    }

    /// The seqs in `range` that carry `mark` for this destination.
    pub(crate) async fn marked_in(
        &self,
        mark: Mark,
        range: RangeInclusive<Seq>,
    ) -> Result<HashSet<Seq>, StoreError> {
        let marked = self
            .store
            .marked(&self.config.name, mark, range, usize::MAX)
            .await?;
        Ok(marked.into_iter().map(|(seq, _)| seq).collect())
    }
}
