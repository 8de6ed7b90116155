//! The two HTTP listeners: the public one that senders post webhooks to, and the admin one
//! (metrics and the events API), which needs the admin token.

mod admin;
mod body;
mod error;
mod oauth_token;
mod public;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

pub use error::ApiError;

/// What every handler shares.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Set at shutdown: readyz answers 503 and new webhooks are refused with 503.
    pub draining: AtomicBool,
    /// The forwarders' shared state, for the admin API.
    pub destinations: Vec<Arc<crate::forward::Destination>>,
    /// The pollers' shared state, for the admin API.
    pub pollers: Vec<Arc<crate::poll::Poller>>,
}

impl AppState {
    pub fn destination(&self, name: &str) -> Option<&Arc<crate::forward::Destination>> {
        self.destinations.iter().find(|d| d.config.name == name)
    }
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Builds the public server on an already bound listener.
pub fn public_server(state: web::Data<AppState>, listener: TcpListener) -> std::io::Result<Server> {
    let server_config = &state.config.server;
    let workers = server_config.workers;
    let request_timeout = server_config.body_timeout;
    let shutdown_s = (server_config.body_timeout + server_config.ack_deadline).as_secs() + 1;
    let server =
        HttpServer::new(move || App::new().app_data(state.clone()).configure(public::routes))
            .workers(workers)
            .disable_signals()
            .shutdown_timeout(shutdown_s)
            .client_request_timeout(request_timeout)
            .listen(listener)?
            .run();
    Ok(server)
}

/// Builds the admin server on an already bound listener.
pub fn admin_server(state: web::Data<AppState>, listener: TcpListener) -> std::io::Result<Server> {
    let server =
        HttpServer::new(move || App::new().app_data(state.clone()).configure(admin::routes))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(5)
            .listen(listener)?
            .run();
    Ok(server)
}

/// Stops a server gracefully: no new connections, requests in flight are answered.
pub async fn stop(handle: ServerHandle) {
    handle.stop(true).await;
}
