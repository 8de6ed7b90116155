//! Forwarding: every stored event is pushed to each `[[destination]]` that wants it, at least
//! once, in seq order unless the destination says `ordered = false`.
//!
//! Per destination, a dispatcher ([`dispatch`]) reads the queue from the destination's durable
//! cursor and hands events to delivery tasks; each attempt ([`request`]) is a signed POST; the
//! schedule ([`schedule`]) says when to retry; a writer ([`progress`]) records what is done
//! (cursor, out-of-order deliveries, dead events) through the store's group commit before a
//! delivery counts. [`status`] keeps live state for the admin API and raises alerts ([`alert`]).

mod alert;
mod dispatch;
mod progress;
pub mod request;
mod schedule;
mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{wants, Config};
use crate::event::Seq;
use crate::store::keys::{output_prefix, output_seq_key, paused_key, seq_of, DeadRecord};
use crate::store::{Store, StoreError, StoredEvent, TreeId, Write};

pub use dispatch::Destination;
pub use status::{ErrorEntry, Snapshot};

/// Every destination's forwarder.
pub struct Forwarders {
    destinations: Vec<Arc<Destination>>,
    tasks: Vec<actix_web::rt::task::JoinHandle<()>>,
    cancel: CancellationToken,
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
    pub replay_queued: usize,
    pub dead: usize,
    #[serde(flatten)]
    pub live: Snapshot,
}

impl Forwarders {
    /// Starts a forwarder per destination. Must run inside the actix system.
    pub fn start(config: &Config, store: &Store) -> Result<Forwarders, StoreError> {
        let cancel = CancellationToken::new();
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
        let mut tasks = Vec::new();
        for destination in &config.destinations {
            let cursor = store.cursor(&destination.name)?;
            let paused = store
                .tree(TreeId::Meta)
                .contains_key(paused_key(&destination.name))?;
            let shared = Arc::new(Destination {
                config: destination.clone(),
                status: status::Status::new(paused),
                wake: tokio::sync::Notify::new(),
                store: store.clone(),
                forward_tests: forward_tests.clone(),
                client: client.clone(),
                alerter: alert::Alerter::new(destination.alert_url.clone(), client.clone()),
                cancel: cancel.child_token(),
                next_slot: std::sync::Mutex::new(Instant::now()),
            });
            tasks.push(actix_web::rt::spawn(dispatch::run(shared.clone(), cursor)));
            destinations.push(shared);
        }
        Ok(Forwarders {
            destinations,
            tasks,
            cancel,
        })
    }

    pub fn destination(&self, name: &str) -> Option<&Arc<Destination>> {
        self.destinations.iter().find(|d| d.config.name == name)
    }

    pub fn destinations(&self) -> &[Arc<Destination>] {
        &self.destinations
    }

    /// Stops every forwarder; deliveries in flight are abandoned (sent again after a restart).
    pub async fn stop(self, within: Duration) {
        self.cancel.cancel();
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!("Forwarders did not stop in time.");
        }
    }
}

impl Destination {
    /// Pauses or resumes, durably (a paused destination stays paused across restarts).
    pub async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        let key = paused_key(&self.config.name);
        let write = if paused {
            Write::Put(TreeId::Meta, key, Vec::new())
        } else {
            Write::Delete(TreeId::Meta, key)
        };
        self.store.write(vec![write]).await?;
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

    /// Queues events for delivery again: each `seq` leaves the dead list (if it was there).
    pub async fn replay(&self, seqs: &[Seq]) -> Result<usize, StoreError> {
        let mut writes = Vec::new();
        for seq in seqs {
            let key = output_seq_key(&self.config.name, *seq);
            writes.push(Write::Delete(TreeId::Dead, key.clone()));
            writes.push(Write::Put(TreeId::Replay, key, Vec::new()));
        }
        self.store.write(writes).await?;
        self.wake_all();
        Ok(seqs.len())
    }

    /// Dead events, oldest first.
    pub fn dead(&self, limit: usize) -> Vec<(Seq, DeadRecord)> {
        self.store
            .tree(TreeId::Dead)
            .scan_prefix(output_prefix(&self.config.name))
            .filter_map(Result::ok)
            .filter_map(|(key, value)| Some((seq_of(&key)?, DeadRecord::decode(&value)?)))
            .take(limit)
            .collect()
    }

    /// Where one event stands for this destination, or `None` if it does not take it.
    pub fn delivery_state(&self, event: &StoredEvent) -> Option<&'static str> {
        if !wants(&self.config.providers, &event.provider) {
            return None;
        }
        if !self.takes(event) {
            return Some("skipped");
        }
        let key = output_seq_key(&self.config.name, Seq(event.seq));
        let has = |tree| self.store.tree(tree).contains_key(&key).unwrap_or(false);
        let cursor = self.store.cursor(&self.config.name).unwrap_or(Seq(0));
        Some(if has(TreeId::Dead) {
            "dead"
        } else if has(TreeId::Replay) {
            "pending"
        } else if Seq(event.seq) <= cursor || has(TreeId::Settled) {
            "delivered"
        } else {
            "pending"
        })
    }

    /// Queue depth, oldest pending age and counts, for `GET /v1/destinations`.
    pub fn view(&self) -> DestinationView {
        let cursor = self.store.cursor(&self.config.name).unwrap_or(Seq(0));
        let (depth, oldest) = self.pending(cursor);
        let prefix = output_prefix(&self.config.name);
        DestinationView {
            name: self.config.name.clone(),
            url: self.config.url.to_string(),
            ordered: self.config.ordered,
            cursor: cursor.0,
            queue_depth: depth,
            oldest_pending_age_s: oldest,
            replay_queued: self.store.tree(TreeId::Replay).scan_prefix(&prefix).count(),
            dead: self.store.tree(TreeId::Dead).scan_prefix(&prefix).count(),
            live: self.status.snapshot(),
        }
    }

    /// Events after the cursor this destination takes (counted up to a bound), and the age of
    /// the oldest.
    fn pending(&self, cursor: Seq) -> (u64, Option<f64>) {
        const COUNT_UP_TO: usize = 100_000;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut depth = 0;
        let mut oldest = None;
        let start = Seq(cursor.0 + 1).to_key();
        for (key, value) in self
            .store
            .tree(TreeId::Events)
            .range(start..)
            .filter_map(Result::ok)
            .take(COUNT_UP_TO)
        {
            let Some(seq) = Seq::from_key(&key) else {
                continue;
            };
            let Ok(event) = StoredEvent::decode(seq, &value) else {
                continue;
            };
            let done = [TreeId::Settled, TreeId::Dead].iter().any(|tree| {
                self.store
                    .tree(*tree)
                    .contains_key(output_seq_key(&self.config.name, seq))
                    .unwrap_or(false)
            });
            if self.takes(&event) && !done {
                depth += 1;
                oldest.get_or_insert(now_ms.saturating_sub(event.received_at_ms) as f64 / 1000.0);
            }
        }
        (depth, oldest)
    }
}
