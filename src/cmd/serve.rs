//! `hookgate serve`: load the config, run until SIGTERM or SIGINT, drain, exit.

use std::path::Path;

use tokio::signal::unix::{signal, SignalKind};

use crate::config;

pub fn serve(path: &Path) -> u8 {
    let config = match config::load_file(path) {
        Ok((config, warnings)) => {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            config
        }
        Err(errors) => {
            for error in &errors {
                tracing::error!("{}: {error}", path.display());
            }
            tracing::error!("Not starting: {} problem(s) in the config.", errors.len());
            return 1;
        }
    };
    let result = actix_web::rt::System::new().block_on(async {
        // Installed before anything listens, so no signal finds the default handler.
        let shutdown = termination();
        crate::run(config, shutdown).await
    });
    match result {
        Ok(()) => 0,
        Err(err) => {
            tracing::error!("hookgate failed: {err}.");
            1
        }
    }
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
