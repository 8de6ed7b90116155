//! In-process HTTP servers, each an actix-web system on its own thread: the no-storage
//! baseline hookgate is compared with, and the downstream that records every delivery.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// A running in-process server.
pub struct Server {
    pub url: String,
    handle: ServerHandle,
    thread: std::thread::JoinHandle<()>,
}

impl Server {
    /// Stops it (call inside any async runtime) and waits for its thread.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

/// A server that reads the body and answers 200 with hookgate's answer shape, storing nothing.
/// `workers`: as many as hookgate's (its default: one per CPU).
pub fn baseline(workers: usize) -> Server {
    serve(workers, "/hooks/bench", |config| {
        config.route("/hooks/bench", web::post().to(accept));
    })
}

async fn accept(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"accepted","seq":0}"#)
}

/// Deliveries received downstream: each one's `hookgate-seq` and arrival time.
#[derive(Default)]
pub struct Deliveries {
    pub arrivals: Mutex<Vec<(u64, Instant)>>,
    pub count: AtomicUsize,
}

impl Deliveries {
    /// Everything received so far, emptying the record.
    pub fn take(&self) -> Vec<(u64, Instant)> {
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        self.count.store(0, Ordering::SeqCst);
        std::mem::take(&mut *arrivals)
    }
}

/// A downstream that answers 200 at once and records each delivery in `deliveries`.
pub fn downstream(workers: usize, deliveries: Arc<Deliveries>) -> Server {
    serve(workers, "/ingest", move |config| {
        config
            .app_data(web::Data::from(deliveries.clone()))
            .route("/ingest", web::post().to(deliver));
    })
}

async fn deliver(
    request: HttpRequest,
    _body: web::Bytes,
    deliveries: web::Data<Deliveries>,
) -> HttpResponse {
    let at = Instant::now();
    let seq = request
        .headers()
        .get("hookgate-seq")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    deliveries
        .arrivals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((seq, at));
    deliveries.count.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok().finish()
}

fn serve<F>(workers: usize, path: &str, configure: F) -> Server
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("local address");
    let (handle_sender, handle) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || App::new().configure(configure.clone()))
                .workers(workers)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run();
            handle_sender.send(server.handle()).expect("send handle");
            server.await.expect("server");
        });
    });
    Server {
        url: format!("http://{address}{path}"),
        handle: handle.recv().expect("server handle"),
        thread,
    }
}
