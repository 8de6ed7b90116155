//! Work only one gateway may do at a time, when several share a store (cluster mode).
//!
//! A destination's deliveries, a provider's poller and the sweeper each run under a lease named
//! after them ([`run_leased`]). On sled one gateway owns the store, so the work starts at once
//! and runs for good. On JetStream, every gateway runs the same task: it waits for the lease,
//! does the work while it renews the lease every third of the lease time, and stops the work
//! when the lease is taken by another or cannot be renewed for two thirds of the lease time:
//! before the lease lapses, so before any other gateway can take it. When a gateway dies, its
//! leases lapse after the lease time and the others take its work over from the durable state
//! (a destination's cursor and marks, a poller's sync cursor). Stopping gives the leases up once
//! the work has ended (or leaves them to lapse, if it did not end in time).

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How long a stopped piece of work may take to end before it is dropped, at most.
const STOP_WITHIN: Duration = Duration::from_secs(1);

/// The same without a lease (sled): under the 5 s a reload gives the old workers before it
/// starts their replacements (`reload.rs`).
const UNLEASED_STOP_WITHIN: Duration = Duration::from_secs(4);

/// How long the work may take to end once the lease is given up (at three quarters of the
/// entry's life `lease_time` at the latest: two thirds, and the wait after a failed renewal): a
/// sixth of that life at most, so that it has ended before the entry can lapse. A whole second
/// let the work of a lease under 4.5 s (`lease_time` of the config) run on after another
/// gateway could hold it.
fn stop_within(lease_time: Duration) -> Duration {
    STOP_WITHIN.min(lease_time / 6)
}

/// This process's name in leases: the host, the process id and a random part (a restarted
/// gateway is a new holder).
pub fn holder() -> &'static str {
    static HOLDER: OnceLock<String> = OnceLock::new();
    HOLDER.get_or_init(|| {
        // uname(2), not /proc/sys/kernel/hostname: the unit's `ProcSubset=pid` hides that.
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|host| host.into_string().ok())
            .unwrap_or_else(|| "hookgate".to_string());
        format!(
            "{host}/{}/{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )
    })
}

/// One term of holding a lease, as the work sees it.
#[derive(Clone)]
pub struct Term {
    /// Cancelled when the term ends (the lease lost, a reload, shutdown): the work must stop.
    pub stop: CancellationToken,
    /// Cancelled, before `stop`, when the term ended because the lease was lost (not renewed
    /// in time, or another holds it), and after it when a reload's or shutdown's work did not
    /// end in time (the lease is then left to lapse): another gateway may do the work now, so
    /// nothing of this term may be written any more. Until then a reload or shutdown still
    /// holds the lease, and what the work finished is still written.
    pub lost: CancellationToken,
}

/// Runs the work `start` makes, only while this gateway holds the lease `name`, until `cancel`.
/// Each term of holding gets a [`Term`] of its own: the work must stop on it. The work ending
/// on its own ends this too (its supervisor reports it).
pub async fn run_leased<F, Fut>(store: Store, name: String, cancel: CancellationToken, mut start: F)
where
    F: FnMut(Term) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(lease_time) = store.lease_time() else {
        // One gateway owns the store: the work runs until `cancel`. What it finishes within
        // [`UNLEASED_STOP_WITHIN`] of that is still written; past it, nothing new (`lost`): a
        // reload starts the replacement 5 s after its stop, and a writer of the old generation
        // still going (behind a slow disk) wrote beside the new one's. A write already queued
        // may still land (a reload waits for them, within a bound: `reload.rs`); at worst an
        // event delivered again, as after a crash.
        let lost = CancellationToken::new();
        let work = start(Term {
            stop: cancel.clone(),
            lost: lost.clone(),
        });
        tokio::pin!(work);
        tokio::select! {
            () = &mut work => return,
            _ = cancel.cancelled() => {}
        }
        if tokio::time::timeout(UNLEASED_STOP_WITHIN, &mut work)
            .await
            .is_err()
        {
            lost.cancel();
            tracing::warn!(work = name, "The work did not end in time after its stop; what it left running starts no write (one already queued may land).");
        }
        return;
    };
    let renew_every = lease_time / 3;
    let give_up_after = lease_time * 2 / 3;
    let wait_every = lease_time / 12;
    let stop_within = stop_within(lease_time);
    let holder = holder();
    loop {
        // Waiting for the lease.
        let took = loop {
            let asked = Instant::now();
            // A stop while asking is not left waiting for the answer: a reload starts the
            // replacement 5 s after asking, and this ask, answered after that, took the lease
            // for a stopped generation whose release then deleted the replacement's entry.
            let held = tokio::select! {
                held = hold(&store, &name, holder, renew_every, false) => held,
                _ = cancel.cancelled() => return,
            };
            match held {
                Some(true) => break asked,
                Some(false) => {}
                None => tracing::debug!(lease = name, "Cannot ask for a lease; trying again."),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait_every) => {}
            }
        };
        tracing::info!(
            lease = name,
            holder,
            "Took the lease: this gateway does the work."
        );
        let term = cancel.child_token();
        let lost = CancellationToken::new();
        let work = start(Term {
            stop: term.clone(),
            lost: lost.clone(),
        });
        tokio::pin!(work);
        let mut renewed = took;
        let why = loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    term.cancel();
                    // Given up only once the work has ended (its last writes included): given
                    // up while a write was still on its way, the lease went to another gateway
                    // with the write landing after. Work that does not end in time is dropped,
                    // and the lease left to lapse.
                    if tokio::time::timeout(stop_within, &mut work).await.is_err() {
                        // What it left running (a write on its way) may land no more.
                        lost.cancel();
                        tracing::warn!(lease = name, "The work did not end in time; the lease is left to lapse (another gateway takes it after the lease time).");
                        return;
                    }
                    if let Err(err) = release(&store, &name, holder, stop_within).await {
                        tracing::debug!(lease = name, error = %err, "Cannot give the lease up; it lapses.");
                    }
                    return;
                }
                () = &mut work => {
                    let _ = release(&store, &name, holder, stop_within).await;
                    return;
                }
                _ = tokio::time::sleep(renew_every.saturating_sub(renewed.elapsed()).max(wait_every)) => {
                    // An attempt gets at most the time left before giving up: one that hung
                    // for its whole `renew_every`, started just before, let the work go on
                    // until the entry had lapsed and another gateway held it.
                    let left = give_up_after.saturating_sub(renewed.elapsed());
                    if left.is_zero() {
                        break "it could not be renewed in time";
                    }
                    let asked = Instant::now();
                    // A stop during the renewal is not left waiting for it: a reload starts the
                    // replacement 5 s after asking, which takes this same lease (the same
                    // holder), and a release after a renewal that hung deleted its entry.
                    let renewal = tokio::select! {
                        held = hold(&store, &name, holder, renew_every.min(left), true) => held,
                        _ = cancel.cancelled() => continue,
                    };
                    match renewal {
                        Some(true) => renewed = asked,
                        Some(false) => break "another gateway holds it, or it lapsed",
                        None if renewed.elapsed() >= give_up_after => {
                            break "it could not be renewed in time"
                        }
                        None => {}
                    }
                }
            }
        };
        tracing::warn!(
            lease = name,
            holder,
            reason = why,
            "Lost the lease: this gateway stops the work."
        );
        lost.cancel();
        term.cancel();
        let _ = tokio::time::timeout(stop_within, &mut work).await;
    }
}

/// Gives the lease up, within `within` (a release that hung held up a stop, and a reload with
/// it); an error when the store did not answer in time: the entry then lapses.
async fn release(
    store: &Store,
    name: &str,
    holder: &str,
    within: Duration,
) -> Result<(), crate::store::StoreError> {
    tokio::time::timeout(within, store.release_lease(name, holder))
        .await
        .unwrap_or(Err(crate::store::StoreError::DeadlineExceeded))
}

/// Takes the lease, or renews it (`renewing`: only if it is still this holder's, not lapsed),
/// within `within`: `None` when the store did not answer.
async fn hold(
    store: &Store,
    name: &str,
    holder: &str,
    within: Duration,
    renewing: bool,
) -> Option<bool> {
    let asked = async {
        if renewing {
            store.renew_lease(name, holder).await
        } else {
            store.hold_lease(name, holder).await
        }
    };
    match tokio::time::timeout(within, asked).await {
        Ok(Ok(held)) => Some(held),
        Ok(Err(err)) => {
            tracing::debug!(lease = name, error = %err, "A lease request failed.");
            None
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    /// Given up at two thirds of the entry's life, or after the wait that follows a failed
    /// renewal just before (a twelfth more), the work has ended before the entry can lapse.
    #[test]
    fn work_given_up_ends_before_the_entry_can_lapse() {
        for ms in [667, 1_333, 3_000, 6_667, 40_000] {
            let life = std::time::Duration::from_millis(ms);
            let ended = life * 2 / 3 + life / 12 + super::stop_within(life);
            assert!(ended < life, "{life:?}: {ended:?}");
        }
    }

    /// The host part is the host's name (it was "hookgate" under the unit's `ProcSubset=pid`,
    /// which hides the file it was read from).
    #[test]
    fn a_holder_names_its_host() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert!(
            super::holder().starts_with(&format!("{}/", host.trim())),
            "{}",
            super::holder()
        );
    }
}
