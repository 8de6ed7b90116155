//! Background work under one supervisor. Each group of tasks (a generation of forwarders, of
//! pollers, the sweeper) is started under one cancellation token and stopped the same way, at
//! shutdown or when a reload replaces it. A task that ends before it was told to (it returned,
//! or panicked) is logged by name and trips the gateway's [`Died`] signal: hookgate then drains
//! and exits non-zero, so that systemd restarts it, instead of one destination silently
//! standing still.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tests set it to a task's name (`destination crm`) to make that task panic soon after start.
const FAULT_ENV: &str = "HOOKGATE_TEST_PANIC_TASK";

/// Tripped by the first background task that stops on its own.
#[derive(Clone, Default)]
pub struct Died(CancellationToken);

impl Died {
    /// Resolves once a task has died.
    pub async fn wait(&self) {
        self.0.cancelled().await;
    }

    pub fn happened(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Runs `task` (on the current actix worker) as `name`, outside any group (a delivery, a
    /// destination's progress writer: they end on their own): a panic is logged by name and
    /// trips this signal. Unwatched, one left its event in flight for good, and the destination
    /// stalled in silence.
    pub fn spawn_watched(&self, name: String, task: impl Future<Output = ()> + 'static) {
        use futures_util::FutureExt as _;
        let fault = std::env::var(FAULT_ENV).is_ok_and(|faulty| faulty == name);
        let died = self.clone();
        actix_web::rt::spawn(async move {
            let run = async move {
                if fault {
                    panic!("{FAULT_ENV} names this task");
                }
                task.await
            };
            if std::panic::AssertUnwindSafe(run)
                .catch_unwind()
                .await
                .is_err()
            {
                tracing::error!(
                    task = name,
                    "A task panicked; shutting down so that the service is restarted."
                );
                died.0.cancel();
            }
        });
    }
}

/// One group of background tasks.
pub struct Tasks {
    what: &'static str,
    cancel: CancellationToken,
    tracker: TaskTracker,
    died: Died,
}

impl Tasks {
    /// An empty group; `what` names it in logs ("forwarders").
    pub fn new(what: &'static str, died: &Died) -> Tasks {
        Tasks {
            what,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            died: died.clone(),
        }
    }

    /// The token a task of this group watches to know it must stop.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs `task` (on the current actix worker) as `name`, watched.
    pub fn spawn(&self, name: String, task: impl Future<Output = ()> + 'static) {
        let fault = std::env::var(FAULT_ENV).is_ok_and(|faulty| faulty == name);
        let handle = actix_web::rt::spawn(async move {
            if fault {
                tokio::time::sleep(Duration::from_millis(300)).await;
                panic!("{FAULT_ENV} names this task");
            }
            task.await
        });
        let (cancel, died, what) = (self.cancel.clone(), self.died.clone(), self.what);
        self.tracker.spawn_local(async move {
            let outcome = handle.await;
            if !cancel.is_cancelled() {
                tracing::error!(
                    group = what,
                    task = name,
                    panicked = outcome.is_err(),
                    "A background task stopped on its own; shutting down so that the service is restarted."
                );
                died.0.cancel();
            }
        });
    }

    /// Tells every task to stop and waits up to `within` for them.
    pub async fn stop(self, within: Duration) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(group = self.what, "Background tasks did not stop in time.");
        }
    }
}
