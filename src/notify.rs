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

/// Calls `ping` every quarter of `timeout` while `alive` succeeds within its budget: three
/// eighths of it (11.25 s under `WatchdogSec=30`: a round through the committer, behind a batch
/// and its fdatasync, on a slow disk), but never past the deadline less a sixteenth. A quarter,
/// so that after a check that fails the next comes at once, before the deadline: pinging every
/// half, the check after a failed one came at the deadline, and a stall of 11 s had systemd
/// kill hookgate. The budget's cap on the deadline: a check that failed at its budget and one
/// that succeeded at its own pinged exactly at the deadline.
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
    let margin = timeout / 16;
    let mut ticks = tokio::time::interval(interval);
    // A tick missed during a long check comes at once after it.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    // systemd's timer runs from READY=1, sent just before.
    let mut pinged = tokio::time::Instant::now();
    loop {
        ticks.tick().await;
        let left =
            (pinged + timeout - margin).saturating_duration_since(tokio::time::Instant::now());
        let budget = (timeout * 3 / 8).min(left);
        // The check's own budget is under the bound, so that a committer that does not answer
        // is reported as such (its own deadline passes first), not as a check that did not end.
        let bound = budget + margin / 2;
        let checked = tokio::time::timeout(bound, alive(budget))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {bound:?}")));
        match checked {
            Ok(()) => {
                ping();
                pinged = tokio::time::Instant::now();
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

    /// The pings of two minutes under `WatchdogSec=30`, with `check` as the committer's
    /// round: each gap between two is under the timeout.
    async fn pings_lapse_not<F, Fut>(check: F) -> usize
    where
        F: Fn(Instant, Duration) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let timeout = Duration::from_secs(30);
        let start = Instant::now();
        let pings = Arc::new(Mutex::new(vec![start]));
        let seen = pings.clone();
        let alive = move |within: Duration| check(start, within);
        let ping = move || seen.lock().unwrap().push(Instant::now());
        let watched = ping_while_alive(timeout, alive, ping);
        let _ = tokio::time::timeout(Duration::from_secs(120), watched).await;
        let mut pings = pings.lock().unwrap();
        // Up to the end too: pings that stopped late count.
        pings.push(start + Duration::from_secs(120));
        for pair in pings.windows(2) {
            assert!(
                pair[1] - pair[0] < timeout,
                "no ping for {:?} (at {:?})",
                pair[1] - pair[0],
                pair[0] - start
            );
        }
        pings.len()
    }

    /// A committer stalled for 12 s, once, from just after a ping: the check under way fails,
    /// and the pings go on before the deadline (pinging every half, they did not).
    #[tokio::test(start_paused = true)]
    async fn one_failed_check_does_not_let_the_watchdog_lapse() {
        let stall = |start: Instant| {
            (
                start + Duration::from_millis(7_600),
                Duration::from_secs(12),
            )
        };
        let check = move |start: Instant, within: Duration| async move {
            let (from, length) = stall(start);
            let now = Instant::now();
            if now >= from && now < from + length {
                // No answer within its time.
                tokio::time::sleep(within).await;
                return Err("stalled".to_string());
            }
            Ok(())
        };
        assert!(pings_lapse_not(check).await > 10);
    }

    /// A check that fails at its budget, then one that succeeds only at its own: the ping still
    /// comes before the deadline (it came exactly at it, and systemd killed hookgate).
    #[tokio::test(start_paused = true)]
    async fn a_failed_check_then_a_slow_one_ping_before_the_deadline() {
        let calls = Arc::new(Mutex::new(0));
        let check = move |_: Instant, within: Duration| {
            let calls = calls.clone();
            async move {
                let call = {
                    let mut calls = calls.lock().unwrap();
                    *calls += 1;
                    *calls
                };
                match call {
                    1 => Ok(()),
                    2 => {
                        tokio::time::sleep(within).await;
                        Err("stalled".to_string())
                    }
                    3 => {
                        tokio::time::sleep(within).await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        };
        assert!(pings_lapse_not(check).await > 5);
    }

    /// A slow disk: every round through the committer takes 7 s (the batch ahead's fdatasync and
    /// its own), and is answered; the pings go on (a budget of 5.6 s failed them all).
    #[tokio::test(start_paused = true)]
    async fn a_slow_disk_keeps_the_watchdog_pinged() {
        let check = |_: Instant, within: Duration| async move {
            if within < Duration::from_secs(7) {
                tokio::time::sleep(within).await;
                return Err("slow".to_string());
            }
            tokio::time::sleep(Duration::from_secs(7)).await;
            Ok(())
        };
        assert!(pings_lapse_not(check).await > 8);
    }
}
