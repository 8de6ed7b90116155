//! The two HTTP listeners: the public one that senders post webhooks to, and the admin one
//! (metrics and the events API, which need the admin token, and the operator's console, which
//! needs a session opened with it).

mod admin;
mod body;
mod client;
mod connections;
mod console;
mod error;
mod guarded;
pub mod limits;
mod oauth_token;
pub mod open_files;
mod public;
mod public_listener;
mod rejections;
mod request_id;
pub mod tls;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use arc_swap::ArcSwap;
pub use public_listener::public_server;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

pub use crate::body_budget::BodyBudget;
pub use connections::Connections;
pub use error::ApiError;
pub use limits::Limits;
pub use rejections::{Refused, Rejections};

/// Connections the kernel queues before hookgate accepts them. std's `TcpListener::bind` uses
/// 128: under 2,000 idle connections, new SYNs overflowed it and waited a 1 s retransmit.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Connections the admin listener holds at once; more wait in the listen backlog. It is meant
/// for operators on a private address, but should it be reachable, its connections must leave
/// the open files reserved beside the public ones (`open_files.rs`) to the store.
pub const ADMIN_MAX_CONNECTIONS: usize = 256;

/// What every handler shares.
pub struct AppState {
    /// The config and what is built from it, swapped whole by a reload; a request takes it once
    /// ([`AppState::live`]) and finishes under it.
    live: ArcSwap<Live>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Set at shutdown: readyz answers 503 and new webhooks are refused with 503.
    pub draining: AtomicBool,
    /// The body bytes all requests hold at once, under `max_body_bytes_in_flight`.
    pub bodies: Arc<BodyBudget>,
    /// Counts and (sampled) logs every refusal.
    pub rejections: Arc<Rejections>,
    /// Open connections on the public listener, capped.
    pub connections: Arc<Connections>,
    /// Verifications running off the I/O threads at once (RSA, large bodies): one per worker.
    pub heavy_verifications: Arc<tokio::sync::Semaphore>,
    /// The certificate the public listener presents, when it speaks TLS.
    certificate: Option<Arc<tls::Certificate>>,
    /// The console's signed-in sessions (admin listener only).
    sessions: console::Sessions,
    /// Held (written) by a reload while it swaps the workers; see [`AppState::settled`].
    reloading: tokio::sync::RwLock<()>,
}

/// One generation of the config, with what the handlers need that is built from it.
pub struct Live {
    pub config: Arc<Config>,
    /// Rate limits of the public listener.
    pub limits: Arc<Limits>,
    /// The forwarders' shared state, for the admin API.
    pub destinations: Vec<Arc<crate::forward::Destination>>,
    /// The pollers' shared state, for the admin API.
    pub pollers: Vec<Arc<crate::poll::Poller>>,
}

impl Live {
    pub fn destination(&self, name: &str) -> Option<&Arc<crate::forward::Destination>> {
        self.destinations.iter().find(|d| d.config.name == name)
    }
}

impl AppState {
    pub fn new(
        live: Live,
        store: Store,
        metrics: Arc<Metrics>,
        rejections: Arc<Rejections>,
        connections: Arc<Connections>,
    ) -> AppState {
        let limits = &live.config.limits;
        let bodies = Arc::new(BodyBudget::new(limits.max_body_bytes_in_flight));
        let heavy_verifications = Arc::new(tokio::sync::Semaphore::new(live.config.server.workers));
        let certificate = live
            .config
            .server
            .tls
            .as_ref()
            .map(|tls| tls::Certificate::new(tls.certified.clone()));
        AppState {
            live: ArcSwap::from_pointee(live),
            store,
            metrics,
            draining: AtomicBool::new(false),
            bodies,
            rejections,
            connections,
            heavy_verifications,
            certificate,
            sessions: console::Sessions::default(),
            reloading: tokio::sync::RwLock::new(()),
        }
    }

    /// The current generation: hold it for the whole request.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// The current generation once no reload is swapping the workers, and a guard that holds
    /// the next reload off while an operator's change is made: a pause, a replay or a sync
    /// cursor must reach the workers that will run. Made during a reload, it reached the
    /// stopping generation's, and the new poller's round wrote its cursor over the operator's
    /// (after a 200), the new forwarder delivered to a destination just paused.
    pub async fn settled(&self) -> (tokio::sync::RwLockReadGuard<'_, ()>, Arc<Live>) {
        let guard = self.reloading.read().await;
        (guard, self.live())
    }

    /// Held by a reload from before it makes the new workers to after it swaps them in.
    pub async fn reload_guard(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.reloading.write().await
    }

    /// Makes `live` the generation new requests see, and applies its limits to the listener's
    /// shared counters (connections, body bytes, log sampling).
    pub fn swap(&self, live: Live) {
        let config = &live.config;
        self.bodies.set_max(config.limits.max_body_bytes_in_flight);
        self.rejections
            .set_logs_per_s(config.limits.rejection_logs_per_s);
        self.connections.configure(
            config.limits.max_connections,
            config.limits.max_connections_per_address,
            config.server.trusted_proxies.clone(),
        );
        if let (Some(certificate), Some(tls)) = (&self.certificate, &config.server.tls) {
            certificate.replace(tls.certified.clone());
        }
        self.live.store(Arc::new(live));
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Builds the admin server on an already bound listener: the admin API and the console.
pub fn admin_server(state: web::Data<AppState>, listener: TcpListener) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(admin::bound_body_time))
            .configure(admin::routes)
            .configure(console::routes)
    })
    .workers(1)
    .max_connections(ADMIN_MAX_CONNECTIONS)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok(server)
}

/// Binds a listener with a backlog of [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as std does).
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Stops a server gracefully: no new connections, requests in flight are answered.
pub async fn stop(handle: ServerHandle) {
    handle.stop(true).await;
}
