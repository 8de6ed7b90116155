//! Telling the service manager how hookgate stands: systemd's `Type=notify` protocol, through the
//! `sd-notify` crate.
//!
//! - [`ready`]: `READY=1` once the store is open and both listeners are bound.
//! - [`stopping`]: `STOPPING=1` when draining starts.
//! - [`reloading`] then [`reloaded`]: `RELOADING=1` when a reload (SIGHUP, from `systemctl
//!   reload`) starts, `READY=1` when it is over, whether the new config was applied or refused.
//! - [`watchdog`]: `WATCHDOG=1` every quarter of `WatchdogSec=`, only while the store's committer
//!   answers and every forwarder's dispatcher runs ([`alive`]); past `WatchdogSec=` without a
//!   ping, systemd kills hookgate and `Restart=` starts it again.
//!
//! Every function does nothing when `$NOTIFY_SOCKET` is unset (hookgate not started by systemd,
//! or by a unit of another type), so hookgate runs the same anywhere. A message that cannot be
//! sent is logged and otherwise ignored.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::store::Store;
use crate::supervise::Died;

/// `READY=1`: start-up is over. `status` is what `systemctl status` shows.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STOPPING=1`: draining has started.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("Draining: no new webhooks accepted."),
    ]);
}

/// `RELOADING=1`, with the `MONOTONIC_USEC=` systemd 253 and later require: a reload has started.
/// Follow it with [`reloaded`], whether the reload succeeds or not.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(err) => {
            tracing::warn!(error = %err, "Cannot read the monotonic clock for RELOADING=1.");
            send(&[NotifyState::Reloading]);
        }
    }
}

/// `READY=1` again: the reload is over. `status` says whether the new config was applied.
pub fn reloaded(status: &str) {
    ready(status);
}

/// Pings the watchdog (see [`ping_while_alive`]); never returns. Without a watchdog
/// (`$WATCHDOG_USEC` unset, or `$WATCHDOG_PID` naming another process) it only waits. `alive`
/// gets the time it has and says why it failed, for the log.
pub async fn watchdog<F, Fut>(alive: F) -> Infallible
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return std::future::pending().await;
    };
    tracing::info!(
        seconds = (timeout / 4).as_secs_f64(),
        "systemd watchdog enabled: pinging while the committer and the forwarders are alive."
    );
    ping_while_alive(timeout, alive, || send(&[NotifyState::Watchdog])).await
}

/// Calls `ping` every quarter of `timeout` while `alive` succeeds within that time. A quarter,
/// so that one failed check (a committer stalled a few seconds) leaves two more before the
/// deadline: pinging every half, the check after a failed one came at the deadline, and a stall
/// of 11 s had systemd kill hookgate under `WatchdogSec=30`.
async fn ping_while_alive<F, Fut>(
    timeout: Duration,
    mut alive: F,
    mut ping: impl FnMut(),
) -> Infallible
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let interval = timeout / 4;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        // The checks get three quarters of the interval, so that a committer that does not
        // answer is reported as such (its own deadline passes first), not as a check that
        // did not end.
        let checked = tokio::time::timeout(interval, alive(interval * 3 / 4))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {interval:?}")));
        match checked {
            Ok(()) => {
                ping();
                if std::mem::take(&mut failing) {
                    tracing::info!("Alive again: the systemd watchdog is pinged again.");
                }
            }
            Err(reason) if !failing => {
                failing = true;
                tracing::error!(
                    reason = %reason,
                    "Not pinging the systemd watchdog; systemd restarts hookgate if this lasts."
                );
            }
            Err(_) => {}
        }
    }
}

/// The watchdog's check: the store's committer answers within `within`, and no background task
/// (a forwarder's dispatcher, a poller, the sweeper) has ended on its own.
pub async fn alive(store: &Store, died: &Died, within: Duration) -> Result<(), String> {
    if died.happened() {
        return Err("a background task ended (see the log)".to_string());
    }
    store
        .ping(within)
        .await
        .map_err(|err| format!("the store's committer does not answer: {err}"))
}

fn send(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "Cannot notify systemd.");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;

    /// A committer stalled for two fifths of the timeout, once, from just after a ping: the
    /// pings go on within the timeout.
    #[tokio::test(start_paused = true)]
    async fn one_failed_check_does_not_let_the_watchdog_lapse() {
        let timeout = Duration::from_secs(30);
        let start = Instant::now();
        let stall = (start + Duration::from_millis(7_600), timeout * 2 / 5);
        let pings = Arc::new(Mutex::new(vec![start]));
        let seen = pings.clone();
        let alive = move |within: Duration| async move {
            let now = Instant::now();
            if now >= stall.0 && now < stall.0 + stall.1 {
                // No answer within its time.
                tokio::time::sleep(within).await;
                return Err("stalled".to_string());
            }
            Ok(())
        };
        let ping = move || seen.lock().unwrap().push(Instant::now());
        let watched = ping_while_alive(timeout, alive, ping);
        let _ = tokio::time::timeout(Duration::from_secs(120), watched).await;
        let pings = pings.lock().unwrap();
        assert!(pings.len() > 10, "{}", pings.len());
        for pair in pings.windows(2) {
            assert!(
                pair[1] - pair[0] < timeout,
                "no ping for {:?} (at {:?})",
                pair[1] - pair[0],
                pair[0] - start
            );
        }
    }
}
