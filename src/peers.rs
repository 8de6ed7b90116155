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
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::lease;
use crate::metrics::Metrics;
use crate::store::Store;

/// The announcing task, and the fingerprint it announces.
pub struct Peers {
    fingerprint: watch::Sender<String>,
    task: JoinHandle<()>,
}

impl Peers {
    /// Starts announcing `config`'s fingerprint, when the store is shared (it has leases).
    pub fn start(store: &Store, config: &Config, metrics: &Arc<Metrics>) -> Option<Peers> {
        let every = store.lease_time()? / 3;
        let (fingerprint, current) = watch::channel(config.shared_fingerprint());
        let task = tokio::spawn(announce(store.clone(), current, metrics.clone(), every));
        Some(Peers { fingerprint, task })
    }

    /// Announces `config`'s fingerprint from now on.
    pub fn reloaded(&self, config: &Config) {
        self.fingerprint.send_replace(config.shared_fingerprint());
    }

    pub fn stop(self) {
        self.task.abort();
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
        match store.announce(lease::holder(), &ours).await {
            Ok(gateways) => {
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
            Err(err) => {
                tracing::debug!(error = %err, "Cannot announce this gateway's config to the others.")
            }
        }
        tokio::time::sleep(every).await;
    }
}
