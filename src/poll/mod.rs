//! Polling: for each provider with a `[provider.sync]` section, a background worker fills the
//! gaps the webhooks left from the vendor's sync API (Alcméon's Action Synchronization API and
//! the like).
//!
//! The cursor is set once, on the first round: `start_cursor`, else just after the highest event
//! id received for the provider so far, else the beginning. It lives in the store's `meta` tree
//! under `sync/{provider}`; polling moves it, and an operator may set it (each round reads it). Each round ([`worker`]) fetches pages from
//! the cursor (at most `max_pages_per_round`), reads them ([`page`]: the items' exact bytes and
//! ids, the next cursor), commits every item through the same `Store::commit` as webhooks (so an
//! action that came both ways is stored once, as `source = "poll"` only when the poll was
//! first), and moves the cursor only once the whole page is durable. A next-page URL is followed
//! only on the sync URL's origin: the requests carry the provider's credentials. Failures back
//! off without moving the cursor. OAuth tokens come from [`token`], cached until shortly before
//! they expire. [`Poller`] holds the live state the admin API shows and its "poll now" trigger.
//! When several gateways share the store, one polls a provider at a time: the one holding its
//! lease ([`crate::lease`]); the cursor is written by compare-and-set, so a gateway that lost the
//! lease mid-round cannot move it back.

pub mod page;
mod token;
mod worker;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{Config, SyncAuth, SyncConfig};
use crate::event::ProviderName;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::supervise::{Died, Tasks};

use token::TokenSource;

/// Every provider's poller.
pub struct Pollers {
    pollers: Vec<Arc<Poller>>,
    tasks: Tasks,
}

/// One provider's poller: its config and the live state the admin API reads.
pub struct Poller {
    pub provider: ProviderName,
    pub config: SyncConfig,
    store: Store,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    token: Option<TokenSource>,
    status: Mutex<Status>,
    /// Wakes the worker for a round now (`POST /v1/providers/{name}/sync`).
    wake: tokio::sync::Notify,
    /// Rounds (started, finished), successful or not: one value, so a request tells at once
    /// whether a round it did not wake is under way.
    rounds: tokio::sync::watch::Sender<(u64, u64)>,
    /// Held through a round, and by an operator's change of the cursor: one waits for the other.
    round_lock: tokio::sync::Mutex<()>,
}

/// What the admin API shows of a poller.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// `None` until the first round has set it; then `cursor` is the next request's cursor
    /// (`null`: from the beginning).
    pub cursor_set: bool,
    pub cursor: Option<String>,
    pub last_success_ms: Option<u64>,
    pub last_error_ms: Option<u64>,
    pub last_error: Option<String>,
    /// A round is running now.
    pub running: bool,
    /// This gateway polls the provider now (it holds its lease; always, on sled).
    pub polling_here: bool,
    pub rounds: u64,
    /// The ids of the items stored from `cursor`'s pages already (the worker's, not shown).
    #[serde(skip)]
    pub seen: Arc<Vec<String>>,
}

/// Why the pollers could not start.
#[derive(Debug, thiserror::Error)]
#[error("provider {provider}: {message}")]
pub struct StartError {
    pub provider: String,
    pub message: String,
}

impl Pollers {
    /// A worker per provider with a sync API; none runs before [`Self::start`] (as
    /// [`crate::forward::Forwarders::new`]).
    pub fn new(
        config: &Config,
        store: &Store,
        metrics: &Arc<Metrics>,
        died: &Died,
    ) -> Result<Pollers, StartError> {
        let tasks = Tasks::new("pollers", died);
        let mut pollers = Vec::new();
        for provider in &config.providers {
            let Some(sync) = &provider.sync else { continue };
            let failed = |message: String| StartError {
                provider: provider.name.to_string(),
                message,
            };
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(sync.timeout)
                .build()
                .map_err(|err| failed(format!("cannot build the HTTP client: {err}")))?;
            let token = match &sync.auth {
                SyncAuth::OAuth {
                    token_url,
                    client_id,
                    client_secret,
                    scope,
                    refresh_before,
                } => Some(
                    TokenSource::new(
                        token_url,
                        client_id,
                        client_secret,
                        scope.clone(),
                        *refresh_before,
                        http.clone(),
                    )
                    .map_err(failed)?,
                ),
                _ => None,
            };
            let poller = Arc::new(Poller {
                provider: provider.name.clone(),
                config: sync.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
                http,
                token,
                status: Mutex::new(Status::default()),
                wake: tokio::sync::Notify::new(),
                rounds: tokio::sync::watch::Sender::new((0, 0)),
                round_lock: tokio::sync::Mutex::new(()),
            });
            pollers.push(poller);
        }
        Ok(Pollers { pollers, tasks })
    }

    /// Starts every worker. Must run inside the actix system.
    pub fn start(&self) {
        for poller in &self.pollers {
            let worker = poller.clone();
            self.tasks.spawn(
                format!("poller {}", poller.provider),
                crate::lease::run_leased(
                    poller.store.clone(),
                    format!("poller/{}", poller.provider),
                    self.tasks.token(),
                    move |term| worker::run(worker.clone(), term.stop),
                ),
            );
        }
    }

    pub fn pollers(&self) -> &[Arc<Poller>] {
        &self.pollers
    }

    /// Stops every worker. A page being committed is abandoned before its cursor moves: its
    /// items are fetched again after a restart and stored once.
    pub async fn stop(self, within: Duration) {
        self.tasks.stop(within).await;
    }
}

impl Poller {
    pub fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The cursor as hookgate shows it (the admin API, the console): a next page's URL, made
    /// whole from the sync URL, carries its user and password, and a vendor's next link may
    /// repeat a key in its query, so it is shown as every URL is ([`crate::shown_url`]).
    pub fn shown_cursor(&self, cursor: &str) -> String {
        match page::cursor_url(&self.config, Some(cursor)) {
            Some(url) => crate::shown_url::shown(&url),
            None => cursor.to_string(),
        }
    }

    /// Runs a round now (or right after the one running) and waits up to `within` for it to end.
    /// Returns whether it ended in time.
    pub async fn poll_now(&self, within: Duration) -> bool {
        let mut rounds = self.rounds.subscribe();
        // A round started before this request may have missed what it asks for: wait for the
        // next one to start, and end.
        let (started, _) = *rounds.borrow_and_update();
        self.wake.notify_one();
        let reached = async {
            rounds
                .wait_for(|(_, finished)| *finished > started)
                .await
                .is_ok()
        };
        tokio::time::timeout(within, reached).await.unwrap_or(false)
    }

    /// Sets the durable cursor (`None`: from the beginning), as an operator asks: after the
    /// round under way, if any; the next round reads it. Fails when another gateway moved the
    /// cursor meanwhile (on JetStream), or the store fails.
    pub async fn set_cursor(&self, cursor: Option<String>) -> Result<(), crate::store::StoreError> {
        let _round = self.round_lock.lock().await;
        worker::set_cursor(self, cursor).await
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        if let Ok(mut status) = self.status.lock() {
            change(&mut status);
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
