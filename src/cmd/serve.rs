//! `hookgate serve`: load the config, run until SIGTERM or SIGINT, drain, exit. SIGHUP reloads
//! the config file: a valid one replaces the running config, an invalid one is refused with the
//! errors `check-config` prints, and the running config keeps serving.

use std::path::{Path, PathBuf};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::{self, Config};

pub fn serve(path: &Path) -> u8 {
    let Some(config) = load(path, "Not starting") else {
        return 1;
    };
    crate::http::open_files::raise();
    let result = actix_web::rt::System::new().block_on(async {
        // Installed before anything listens, so no signal finds the default handler.
        let shutdown = termination();
        let reloads = reloads(path.to_path_buf());
        crate::run(config, reloads, shutdown).await
    });
    match result {
        Ok(()) => 0,
        Err(err) => {
            tracing::error!("hookgate failed: {err}.");
            1
        }
    }
}

/// Loads and checks the config file, logging its warnings, or its errors and `refusal`.
fn load(path: &Path, refusal: &str) -> Option<Config> {
    match config::load_file(path) {
        Ok((config, warnings)) => {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            Some(config)
        }
        Err(errors) => {
            for error in &errors {
                tracing::error!("{}: {error}", path.display());
            }
            tracing::error!("{refusal}: {} problem(s) in the config.", errors.len());
            None
        }
    }
}

/// Installs the SIGHUP handler now; each SIGHUP reads `path` again and sends the config if it
/// is valid.
fn reloads(path: PathBuf) -> mpsc::Receiver<Config> {
    let (sender, receiver) = mpsc::channel(1);
    let hangups = signal(SignalKind::hangup());
    actix_web::rt::spawn(async move {
        let Ok(mut hangups) = hangups else {
            tracing::error!("Cannot install the SIGHUP handler; reloads need a restart.");
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!(config = %path.display(), "SIGHUP received: reloading the config.");
            let read = path.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                load(&read, "Reload refused; the running config keeps serving")
            })
            .await;
            if let Ok(Some(config)) = loaded {
                if sender.send(config).await.is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

/// Installs the handlers now; the future resolves at the first SIGTERM or SIGINT.
fn termination() -> impl std::future::Future<Output = ()> {
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("Cannot install signal handlers; stop hookgate with SIGKILL.");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received."),
            _ = int.recv() => tracing::info!("SIGINT received."),
        }
    }
}
