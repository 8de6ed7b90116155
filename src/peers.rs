//! Gateways sharing a store (cluster mode) must run the same providers, destinations, consumers
//! and retention: a destination one gateway lacks is still delivered by the lease holder, but a
//! gateway without a provider refuses its webhooks, and two retention settings sweep by the
//! stricter. Nothing forces configs to match, so each gateway tells the others what it runs.
//!
//! Every third of the lease time, a gateway records a fingerprint of those settings
//! ([`Config::shared_fingerprint`], no secrets) in the store, where it lapses like a lease
//! ([`crate::store::Backend::announce`]), and reads every live gateway's. Those whose fingerprint
//! differs are counted in `hookgate_gateways_disagreeing` and named in a warning when the set
//! changes. On sled one gateway owns the store: there is nothing to compare.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::lease;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::supervise::Died;

/// The announcing task, and the fingerprint it announces.
pub struct Peers {
    fingerprint: watch::Sender<String>,
    stop: CancellationToken,
}

impl Peers {
    /// Starts announcing `config`'s fingerprint, when the store is shared (it has leases).
    /// Watched like every background task: a panic stops the gateway (unwatched, the count
    /// froze and this gateway lapsed from the others' in silence).
    pub fn start(
        store: &Store,
        config: &Config,
        metrics: &Arc<Metrics>,
        died: &Died,
    ) -> Option<Peers> {
        let every = store.lease_time()? / 3;
        let (fingerprint, current) = watch::channel(config.shared_fingerprint());
        let stop = CancellationToken::new();
        let announcing = announce(store.clone(), current, metrics.clone(), every);
        let stopped = stop.clone();
        died.spawn_watched("peers".into(), async move {
            tokio::select! {
                () = announcing => {}
                () = stopped.cancelled() => {}
            }
        });
        Some(Peers { fingerprint, stop })
    }

    /// Announces `config`'s fingerprint from now on.
    pub fn reloaded(&self, config: &Config) {
        self.fingerprint.send_replace(config.shared_fingerprint());
    }

    pub fn stop(self) {
        self.stop.cancel();
    }
}

async fn announce(
    store: Store,
    fingerprint: watch::Receiver<String>,
    metrics: Arc<Metrics>,
    every: Duration,
) {
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        let ours = fingerprint.borrow().clone();
        // A round that hangs (the servers stalled) gives way to the next.
        let announced = tokio::time::timeout(every, store.announce(lease::holder(), &ours)).await;
        match announced {
            Ok(Ok(gateways)) => {
                let others: BTreeSet<String> = gateways
                    .into_iter()
                    .filter(|(holder, theirs)| holder != lease::holder() && *theirs != ours)
                    .map(|(holder, _)| holder)
                    .collect();
                metrics.gateways_disagreeing.set(others.len() as i64);
                if others != reported {
                    if others.is_empty() {
                        tracing::info!("Every gateway on the store runs the same providers, destinations, consumers and retention again.");
                    } else {
                        tracing::warn!(
                            gateways = ?others,
                            "These gateways on the same store run other providers, destinations, consumers or retention than this one: give every gateway the same config."
                        );
                    }
                    reported = others;
                }
            }
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "Cannot announce this gateway's config to the others.")
            }
            Err(_) => {
                tracing::debug!("Announcing this gateway's config to the others took too long.")
            }
        }
        tokio::time::sleep(every).await;
    }
}
