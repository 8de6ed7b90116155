//! hookgate: a receiver-side webhook ingestion gateway.
//!
//! A webhook flows through these modules, in order:
//!
//! 1. [`http`]: `POST /hooks/{provider}` on the public listener. The body is read as raw bytes,
//!    bounded by `max_body_bytes` and `body_timeout_ms`.
//! 2. [`config`]: the provider named in the route, with its scheme and secrets (resolved at load,
//!    each through [`secret`], which neither [`config`] nor [`verify`] owns: both use it).
//!    `config` builds each provider's verifier; [`verify`] knows nothing of the config file.
//! 3. [`verify`]: the provider's scheme checks the raw bytes in constant time and turns the
//!    request into a `Verified` one, or refuses it (401). Nothing unverified goes further. A
//!    verified vendor handshake (Slack's `url_verification`) carries the answer it expects, which
//!    [`http`] returns with a 200 instead of storing anything.
//! 4. [`event_id`]: the id the event is deduplicated by (configured rule, scheme's own, or the
//!    body's SHA-256).
//! 5. [`store`]: the committer thread claims (provider, event id) and appends the event under the
//!    next seq, batching every request that waits (written last, the next seq commits the batch),
//!    then flushes sled and fdatasyncs its files once per batch. Only then is each request answered 200 (`accepted`, or
//!    `duplicate` with the first copy's seq); past `ack_deadline_ms`, or on any storage error, 503.
//!    The store is one trait ([`store::Backend`]); sled (`store/sled/`) is its embedded backend,
//!    and nothing outside `store/` knows a tree or a key. Readers only ever see durable events.
//!
//! From the store, events leave in two ways:
//!
//! - [`forward`]: per `[[destination]]`, a dispatcher reads the queue in seq order from a durable
//!   cursor and pushes each event (signed with the Standard Webhooks scheme), retrying on a
//!   schedule; an event whose schedule is spent is dead until replayed. Progress is written
//!   through the same group commit as the events.
//!
//! The admin listener ([`http`]) serves [`metrics`], reads the store back (`/v1/events`), and
//! operates the destinations (pause, resume, errors, dead events, replay); its console
//! (`/console`) shows and does the same in a browser, behind a session opened with the admin
//! token.
//! [`consume`] serves pull consumers: the events after a consumer's durable cursor, and its acks.
//! In the background, [`forward`] pushes stored events downstream, and the store's sweeper
//! ([`store::retention`]) removes what every output has once `retention` has passed, and dedup keys
//! after `dedup_window`.
//! [`poll`]: per provider with a `[provider.sync]` section, a worker fills the gaps the webhooks
//! left from the vendor's sync API through the same commit (an event is stored once), moving its
//! durable cursor only once a page's items are durable.
//! When several gateways share a JetStream store, the work only one may do at a time (a
//! destination's deliveries, a poller, the sweeper) runs under a [`lease`] in the store, and
//! [`peers`] reports the gateways whose config differs from this one's.
//! [`cmd`] holds the command-line entry points (the gateway's, and the operator subcommands over
//! the admin API); `main.rs` only parses arguments.
//! [`notify`] tells systemd when hookgate is ready, reloading or stopping, and pings its watchdog
//! while the committer and the background tasks are alive ([`supervise`]).

#![forbid(unsafe_code)]

pub mod body_budget;
pub mod cmd;
pub mod config;
pub mod consume;
pub mod error_chain;
pub mod event;
pub mod event_id;
pub mod forward;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod notify;
pub mod peers;
pub mod poll;
mod reload;
pub mod response_body;
pub mod retry_after;
pub mod secret;
pub mod shown_url;
pub mod store;
pub mod supervise;
pub mod verify;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::web;

use crate::config::Config;
use crate::forward::Forwarders;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::poll::Pollers;
use crate::store::retention::{Output, Sweeper};
use crate::store::{Store, StoreError};
use crate::supervise::Died;

/// Why hookgate could not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot prepare provider {provider}: {source}")]
    Prepare {
        provider: String,
        source: std::io::Error,
    },
    #[error("cannot start the poller of {0}")]
    Poll(#[from] poll::StartError),
    #[error("the store stopped storing (see the log above)")]
    StoreFailed,
    #[error("a background task stopped unexpectedly (see the log above)")]
    TaskDied,
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A running gateway: both listeners bound, the committer running.
pub struct Gateway {
    pub public_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    state: web::Data<AppState>,
    public: ServerHandle,
    admin: ServerHandle,
    forwarders: Forwarders,
    pollers: Pollers,
    sweeper: Sweeper,
    /// Telling the other gateways on a shared store what this one runs.
    peers: Option<peers::Peers>,
    /// Tripped when a background task stops on its own.
    died: Died,
}

/// Opens the store, binds both listeners and starts serving. Must run inside an actix system.
pub async fn start(config: Config) -> Result<Gateway, GatewayError> {
    // Events' times of arrival never go below the wall clock now ([`store::start_clocks`]).
    store::start_clocks();
    let metrics = Arc::new(Metrics::new());
    let (dir, store_config, store_metrics) = (
        config.server.data_dir.clone(),
        config.store.clone(),
        metrics.clone(),
    );
    let store = Store::open_async(&dir, &store_config, store_metrics).await?;
    if let Some(largest) = store
        .largest_body()
        .filter(|largest| *largest < config.server.max_body_bytes)
    {
        tracing::warn!(
            max_body_bytes = config.server.max_body_bytes,
            largest,
            "The store takes bodies of at most {largest} bytes (the NATS servers' max_payload less room for headers): larger ones are answered 413. Raise max_payload on the servers, or lower [server] max_body_bytes."
        );
    }
    for provider in &config.providers {
        provider
            .verifier
            .prepare(&config.server.data_dir)
            .map_err(|source| GatewayError::Prepare {
                provider: provider.name.to_string(),
                source,
            })?;
    }
    let bind = |address: SocketAddr| {
        http::bind(address).map_err(|source| GatewayError::Listen { address, source })
    };
    let public_listener = bind(config.server.listen)?;
    let admin_listener = bind(config.admin.listen)?;
    let local = |listener: &TcpListener, address| {
        listener
            .local_addr()
            .map_err(|source| GatewayError::Listen { address, source })
    };
    let public_addr = local(&public_listener, config.server.listen)?;
    let admin_addr = local(&admin_listener, config.admin.listen)?;

    let died = Died::default();
    let mut forwarders = Forwarders::new(&config, &store, &metrics, &died).await?;
    forwarders.start();
    let pollers = Pollers::new(&config, &store, &metrics, &died)?;
    pollers.start();
    let sweeper = sweeper(&config, &store, &forwarders, &metrics, &died);
    sweeper.start();
    let peers = peers::Peers::start(&store, &config, &metrics, &died);
    let limits = http::Limits::start(&config.limits);
    let rejections = Arc::new(http::Rejections::new(
        metrics.clone(),
        config.limits.rejection_logs_per_s,
    ));
    let connections = Arc::new(http::Connections::new(
        config.limits.max_connections,
        config.limits.max_connections_per_address,
        config.server.trusted_proxies.clone(),
        metrics.clone(),
        rejections.clone(),
    ));
    let live = http::Live {
        config: Arc::new(config),
        limits,
        destinations: forwarders.destinations().to_vec(),
        pollers: pollers.pollers().to_vec(),
    };
    let state = web::Data::new(AppState::new(live, store, metrics, rejections, connections));
    let listen_error = |address| move |source| GatewayError::Listen { address, source };
    let public =
        http::public_server(state.clone(), public_listener).map_err(listen_error(public_addr))?;
    let admin =
        http::admin_server(state.clone(), admin_listener).map_err(listen_error(admin_addr))?;
    let gateway = Gateway {
        public_addr,
        admin_addr,
        state,
        public: public.handle(),
        admin: admin.handle(),
        forwarders,
        pollers,
        sweeper,
        peers,
        died,
    };
    actix_web::rt::spawn(public);
    actix_web::rt::spawn(admin);
    Ok(gateway)
}

/// The sweeper, over every destination and consumer of `config`.
fn sweeper(
    config: &Config,
    store: &Store,
    forwarders: &Forwarders,
    metrics: &Arc<Metrics>,
    died: &Died,
) -> Sweeper {
    let outputs = forwarders
        .destinations()
        .iter()
        .map(|d| {
            let destination = d.clone();
            Output::destination(d.config.name.clone(), move |e| destination.takes(e))
        })
        .chain(config.consumers.iter().map(Output::consumer))
        .collect();
    Sweeper::new(store.clone(), &config.store, outputs, metrics.clone(), died)
}

impl Gateway {
    /// Drains: readyz turns 503, new webhooks are refused, the listeners stop, requests already
    /// read are committed and answered, and the store is synced and closed.
    /// False when the store's last sync failed (see [`store::Backend::close`]).
    pub async fn shutdown(self) -> bool {
        self.state.draining.store(true, Ordering::Relaxed);
        tracing::info!("Draining: no new webhooks accepted.");
        // Side by side, not one after the other: the listeners' drains and three groups of
        // background tasks (5 s each at most) added up past systemd's TimeoutStopSec.
        futures_util::join!(
            http::stop(self.public),
            http::stop(self.admin),
            self.forwarders.stop(Duration::from_secs(5)),
            self.pollers.stop(Duration::from_secs(5)),
            self.sweeper.stop(Duration::from_secs(5)),
        );
        if let Some(peers) = self.peers {
            peers.stop();
        }
        self.state.store.close().await
    }
}

/// Reloads `config`; true if a stop was asked for meanwhile. A reload may take ~35 s (an
/// operator's change waited for, old workers stopping, their queued writes waited for): a stop asked for during one drains at once (readyz 503, new webhooks
/// refused) and is reported to systemd, while the reload ends (it did neither, and the drain
/// after the reload could take the stop past systemd's `TimeoutStopSec`).
async fn reload_unless_stopped(
    gateway: &mut Gateway,
    config: Config,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> bool {
    let state = gateway.state.clone();
    let reload = gateway.reload(config);
    tokio::pin!(reload);
    tokio::select! {
        () = &mut reload => false,
        () = shutdown.as_mut() => {
            state.draining.store(true, Ordering::Relaxed);
            notify::stopping();
            tracing::info!("Stop asked for during a reload: draining now; the reload ends first.");
            reload.await;
            notify::stopping();
            true
        }
    }
}

/// Runs the gateway until `shutdown` resolves, then drains it; each config received on
/// `reloads` replaces the running one ([`Gateway::reload`]). If the committer dies first,
/// hookgate drains and returns an error, so that its supervisor restarts it.
pub async fn run(
    config: Config,
    mut reloads: tokio::sync::mpsc::Receiver<Config>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    let (dir, store_config) = (config.server.data_dir.clone(), config.store.clone());
    tokio::pin!(shutdown);
    // A stop asked for while starting (a JetStream store waits up to two minutes for its
    // servers) is not left for after the start: nothing was acknowledged yet.
    let mut gateway = tokio::select! {
        started = start(config) => started?,
        _ = &mut shutdown => {
            tracing::info!("Stopped while starting.");
            return Ok(());
        }
    };
    tracing::info!(
        "hookgate listening public={} admin={}",
        gateway.public_addr,
        gateway.admin_addr
    );
    let store = gateway.state.store.clone();
    let died = gateway.died.clone();
    notify::ready(&format!(
        "Listening public={} admin={}",
        gateway.public_addr, gateway.admin_addr
    ));
    // A task of its own: pinged from the loop below, the watchdog went silent for as long as a
    // reload took (up to ~35 s), and systemd may kill a reloading gateway.
    let watchdog = {
        let (store, died) = (store.clone(), died.clone());
        actix_web::rt::spawn(async move {
            notify::watchdog(|within| {
                let (store, died) = (store.clone(), died.clone());
                async move { notify::alive(&store, &died, within).await }
            })
            .await
        })
    };
    let outcome = {
        // Made once, outside the loop: a reload ends an iteration, and a future made again
        // would start over (sled's `failed()` hands its one notice to the first one made).
        let failed = store.failed();
        let task_died = died.wait();
        tokio::pin!(failed, task_died);
        loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                Some(config) = reloads.recv() => {
                    if reload_unless_stopped(&mut gateway, config, &mut shutdown).await {
                        break Ok(());
                    }
                }
                _ = &mut failed => {
                    tracing::error!("The store stopped storing (see the line before); shutting down so that the service is restarted.");
                    break Err(GatewayError::StoreFailed);
                }
                _ = &mut task_died => break Err(GatewayError::TaskDied),
            }
        }
    };
    notify::stopping();
    watchdog.abort();
    drop(store);
    // A failed last sync is a store failure like any other: no checkpoint reopens sled over
    // what the disk may not hold, and the exit is non-zero.
    let outcome = match gateway.shutdown().await {
        false if outcome.is_ok() => Err(GatewayError::StoreFailed),
        _ => outcome,
    };
    if outcome.is_ok() {
        // Every handle is gone: leave the store ready for a fast start.
        let checkpoint =
            tokio::task::spawn_blocking(move || store::checkpoint(&dir, &store_config));
        match checkpoint.await {
            Ok(Ok(done)) => tracing::info!(
                seconds = done.took.as_secs_f64(),
                lock_wait_seconds = done.lock_wait.as_secs_f64(),
                "Store checkpointed for the next start."
            ),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "Cannot checkpoint the store; the next start replays its log.")
            }
            Err(err) => tracing::warn!(error = %err, "The store checkpoint panicked."),
        }
    }
    tracing::info!("hookgate stopped.");
    outcome
}
