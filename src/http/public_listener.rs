//! The public listener, built from actix's parts rather than `HttpServer`, so that every
//! accepted stream passes through hookgate before actix reads a byte of it: the connection caps
//! (`connections.rs`, also before a TLS handshake), then the deadline between requests
//! (`guarded.rs`), then TLS if configured, then HTTP/1.1.

use std::net::TcpListener;
use std::time::Duration;

use actix_http::body::BoxBody;
use actix_http::{HttpServiceBuilder, KeepAlive, Protocol, Request, Response};
use actix_service::{fn_service, map_config, Service, ServiceFactory, ServiceFactoryExt};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::{AppConfig, Server};
use actix_web::middleware::from_fn;
use actix_web::rt::net::{ActixStream, TcpStream};
use actix_web::{web, App};

use super::guarded::{self, Guarded};
use super::{open_files, public, AppState};

/// How long a connection may wait, idle, for its next request before actix closes it.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long a connection closed by the server may take to shut down cleanly.
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Builds the public server on an already bound listener.
pub fn public_server(state: web::Data<AppState>, listener: TcpListener) -> std::io::Result<Server> {
    let live = state.live();
    let server_config = &live.config.server;
    let workers = server_config.workers;
    let request_timeout = server_config.body_timeout;
    // From an accept or an answer, the next request's head: the idle wait, then its own time.
    let gap = KEEP_ALIVE + request_timeout;
    let verify = super::public::VERIFY_WITHIN;
    let shutdown_s =
        (server_config.body_timeout + verify + server_config.ack_deadline).as_secs() + 1;
    let builder = actix_server::Server::build()
        .workers(workers)
        // Past the room the open files limit leaves, stop accepting: a connection over
        // `max_connections` is accepted and shut (and counted), which takes a file for a
        // moment, and a flood of them must not take the store's (`open_files.rs`).
        .max_concurrent_connections(open_files::connection_room().div_ceil(workers.max(1)))
        .disable_signals()
        .shutdown_timeout(shutdown_s);
    let shutdown = builder.graceful_shutdown_signal();
    let local = listener.local_addr()?;
    let http = Http {
        request_timeout,
        local,
        shutdown,
    };
    let admit = move |state: web::Data<AppState>| {
        fn_service(move |stream: TcpStream| {
            let place = state.connections.admit(&stream);
            async move {
                place
                    .map(|place| Guarded::new(stream, place, gap))
                    .ok_or(())
            }
        })
    };
    let builder = match state.certificate.clone() {
        None => builder.listen("hookgate-public", listener, move || {
            admit(state.clone()).and_then(http.serve::<Guarded<TcpStream>>(state.clone()))
        })?,
        Some(certificate) => {
            // actix-tls holds at most 256 handshakes a worker, and while that many are under
            // way the worker took no connection at all: 256 sockets that never said hello held
            // every sender's connection unread until they timed out. The connection caps above
            // bound handshakes instead (read by each worker thread as it starts).
            actix_tls::accept::max_concurrent_tls_connect(open_files::connection_room());
            let tls = super::tls::server_config(certificate);
            builder.listen("hookgate-public", listener, move || {
                let mut acceptor = Acceptor::new(tls.clone());
                acceptor.set_handshake_timeout(HANDSHAKE_TIMEOUT);
                admit(state.clone())
                    .and_then(acceptor.map_init_err(|_| ()).map_err(|_| ()))
                    .and_then(http.serve::<TlsStream<Guarded<TcpStream>>>(state.clone()))
            })?
        }
    };
    Ok(builder.run())
}

/// What each worker's HTTP service is built with.
#[derive(Clone)]
struct Http {
    request_timeout: Duration,
    local: std::net::SocketAddr,
    shutdown: actix_server::GracefulShutdownSignal,
}

/// An accepted stream as the HTTP service gets it: the guarded TCP stream, or TLS over it.
trait Accepted: ActixStream + 'static {
    fn guarded(&self) -> &Guarded<TcpStream>;
}

impl Accepted for Guarded<TcpStream> {
    fn guarded(&self) -> &Guarded<TcpStream> {
        self
    }
}

impl Accepted for TlsStream<Guarded<TcpStream>> {
    fn guarded(&self) -> &Guarded<TcpStream> {
        self.get_ref().0
    }
}

impl Http {
    /// HTTP/1.1 over streams of type `T`, each connection's guard in its extensions (for the
    /// middleware that marks it busy).
    fn serve<T: Accepted>(
        &self,
        state: web::Data<AppState>,
    ) -> impl ServiceFactory<T, Config = (), Response = (), Error = (), InitError = ()> {
        let app = App::new()
            .app_data(state)
            .wrap(from_fn(guarded::busy))
            .configure(public::routes);
        fn_service(|stream: T| async move {
            let peer = stream.guarded().get_ref().peer_addr().ok();
            Ok::<_, ()>((stream, Protocol::Http1, peer))
        })
        .and_then(
            self.builder()
                .on_connect_ext(|stream: &T, extensions| {
                    extensions.insert(stream.guarded().guard().clone());
                })
                .finish(map_config(app, |_| AppConfig::default()))
                .map_err(|_| ()),
        )
    }

    fn builder<T, S>(&self) -> HttpServiceBuilder<T, S>
    where
        S: ServiceFactory<Request, Config = ()>,
        S::Error: Into<Response<BoxBody>> + 'static,
        S::InitError: std::fmt::Debug,
        <S::Service as Service<Request>>::Future: 'static,
    {
        let shutdown = self.shutdown.clone();
        HttpServiceBuilder::default()
            .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
            .client_request_timeout(self.request_timeout)
            // As `HttpServer` does: an answer given before its body was read (413, 429) is
            // followed by a second of reading and dropping the rest, and a close, rather than a
            // reset in the middle of the sender's upload.
            .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
            .local_addr(self.local)
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
    }
}
