//! Reloading the config (SIGHUP, `systemctl reload`) without dropping a request.
//!
//! The new config was loaded and checked by the caller (an invalid one never gets here: the
//! old one keeps serving). Requests take the config once when they arrive (`AppState::live`) and
//! finish under it; the swap only changes what the next requests see. Providers, secrets, keys,
//! `event_id` rules, limits, trusted proxies and the admin token change at the swap. Destinations,
//! consumers, sync settings and retention restart the background workers they drive, and only
//! when they changed: a forwarder's progress is durable, so it resumes where it stopped (an
//! attempt cut short is made again: at least once, as after a restart). What the process was
//! started with (listen addresses, data_dir, workers, the store's cache) needs a restart: a change
//! there is logged and the running value kept.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, SyncConfig};
use crate::forward::Forwarders;
use crate::http::{Limits, Live};
use crate::poll::Pollers;
use crate::{sweeper, Gateway};

/// How long a reload waits for an operator's change under way (see `apply`).
const GUARD_WITHIN: Duration = Duration::from_secs(10);
/// How long the old workers get to finish what they are doing.
const STOP_WITHIN: Duration = Duration::from_secs(5);
/// The environment variable that makes every reload take this many milliseconds more, for
/// tests.
const RELOAD_DELAY_ENV: &str = "HOOKGATE_TEST_RELOAD_DELAY_MS";

impl Gateway {
    /// Replaces the running config with `config`; on any failure the old one keeps serving.
    pub async fn reload(&mut self, config: Config) {
        crate::notify::reloading();
        let status = if self.apply(config).await {
            "Config reloaded (see the log for what changed)"
        } else {
            "Reload refused (see the log); the running config keeps serving"
        };
        crate::notify::reloaded(status);
    }

    /// Applies `config`; false when it was refused, before anything changed.
    async fn apply(&mut self, mut config: Config) -> bool {
        let old = self.state.live();
        for setting in keep_started_settings(&mut config, &old.config) {
            tracing::warn!(
                setting,
                "Changed in the config, but applied only at the next restart; the running value is kept."
            );
        }
        for provider in &config.providers {
            if let Err(err) = provider.verifier.prepare(&config.server.data_dir) {
                tracing::error!(provider = %provider.name, error = %err, "Reload refused: cannot prepare the provider; the running config keeps serving.");
                return false;
            }
        }

        let store = self.state.store.clone();
        let metrics = self.state.metrics.clone();
        // The counters of destinations only one of the two configs has go with it: those of
        // the new one when the reload is refused (making its forwarders made them), else the
        // old one's.
        let only_in = |config: &Config, other: &Config| -> Vec<String> {
            let names = |config: &Config| -> Vec<String> {
                config.destinations.iter().map(|d| d.name.clone()).collect()
            };
            let other = names(other);
            names(config)
                .into_iter()
                .filter(|n| !other.contains(n))
                .collect()
        };
        let forget = |names: Vec<String>| names.iter().for_each(|n| metrics.forget_destination(n));
        // An operator's change (a pause, a replay, a sync cursor) waits for the swap below, and
        // reaches the new workers (`AppState::settled`). One under way is waited for, within a
        // bound (a sync cursor waits up to 30 s for its poller's round): a stop asked for
        // meanwhile waits for the reload.
        let state = self.state.clone();
        let Ok(_swapping) = tokio::time::timeout(GUARD_WITHIN, state.reload_guard()).await else {
            tracing::error!("Reload refused: an operator's change (a pause, a replay, a sync cursor) did not end within 10 s; the running config keeps serving. Reload again.");
            return false;
        };
        let forwarding = forwarding(&config) != forwarding(&old.config);
        let polling = syncs(&config) != syncs(&old.config);
        let sweeping = forwarding
            || config.consumers != old.config.consumers
            || config.store != old.config.store;
        // The new forwarders and pollers are all made first (what can fail: a reload that
        // cannot make one is refused whole, nothing running stopped), then the running ones
        // stopped, then the new ones started: never two of one destination or provider at once.
        let forwarders = if forwarding {
            match Forwarders::new(&config, &store, &metrics, &self.died).await {
                Ok(forwarders) => Some(forwarders),
                Err(err) => {
                    tracing::error!(error = %err, "Reload refused: cannot start the destinations; the running config keeps serving.");
                    forget(only_in(&config, &old.config));
                    return false;
                }
            }
        } else {
            None
        };
        let pollers = if polling {
            match Pollers::new(&config, &store, &metrics, &self.died) {
                Ok(pollers) => Some(pollers),
                Err(err) => {
                    tracing::error!(error = %err, "Reload refused: cannot start the sync pollers; the running config keeps serving.");
                    forget(only_in(&config, &old.config));
                    return false;
                }
            }
        } else {
            None
        };
        let mut destinations_kept = 0;
        if let Some(mut forwarders) = forwarders {
            destinations_kept = self.forwarders.hand_over_unchanged(&mut forwarders);
            let previous = std::mem::replace(&mut self.forwarders, forwarders);
            previous.stop(STOP_WITHIN).await;
            barrier(&store).await;
            forget(only_in(&old.config, &config));
            self.forwarders.start();
        }
        if let Some(pollers) = pollers {
            let previous = std::mem::replace(&mut self.pollers, pollers);
            previous.stop(STOP_WITHIN).await;
            barrier(&store).await;
            self.pollers.start();
        }
        if sweeping {
            let sweeper = sweeper(&config, &store, &self.forwarders, &metrics, &self.died);
            std::mem::replace(&mut self.sweeper, sweeper)
                .stop(STOP_WITHIN)
                .await;
            self.sweeper.start();
        }
        if let Some(peers) = &self.peers {
            peers.reloaded(&config);
        }
        // For tests: a reload that takes this long (as one waiting for old workers to stop),
        // its new workers running, the old generation still the one requests see.
        if let Some(ms) = std::env::var(RELOAD_DELAY_ENV)
            .ok()
            .and_then(|ms| ms.parse().ok())
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        // The buckets go on unless a rate changed (any `[limits]` change emptied them: a
        // client at its rate, guessing client secrets, got a fresh burst at each reload).
        let rates = |limits: &crate::config::LimitsConfig| {
            (
                limits.per_address,
                limits.per_provider,
                limits.oauth_token_per_address,
            )
        };
        let limits = if rates(&config.limits) == rates(&old.config.limits) {
            old.limits.clone()
        } else {
            Limits::start(&config.limits)
        };
        let providers = config.providers.len();
        self.state.swap(Live {
            config: Arc::new(config),
            limits,
            destinations: self.forwarders.destinations().to_vec(),
            pollers: self.pollers.pollers().to_vec(),
        });
        tracing::info!(
            providers,
            destinations_restarted = forwarding,
            destinations_kept,
            pollers_restarted = polling,
            sweeper_restarted = sweeping,
            "Config reloaded."
        );
        true
    }
}

/// Waits for the writes the stopped workers left in the store's queue (one cut off by their
/// stop bound may be in a batch under way): an empty write through it, first in first out, so
/// that their replacements read what those writes left. Bounded (a store that does not answer
/// is the watchdog's to tell): a write still queued behind a slower disk may land after the
/// replacements started, and an event be delivered again (as after a crash).
async fn barrier(store: &crate::store::Store) {
    if let Err(err) = store.ping(STOP_WITHIN).await {
        tracing::warn!(error = %err, "The store did not answer after the old workers stopped; the new ones start anyway.");
    }
}

/// Puts back in `new` what only a restart applies, naming each setting that differed.
fn keep_started_settings(new: &mut Config, running: &Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    // Where `new` differs from `running` in the field, the running value is put back and named.
    macro_rules! keep {
        ($name:literal, $($field:ident).+) => {
            if new.$($field).+ != running.$($field).+ {
                kept.push($name);
                new.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    keep!("[server] listen", server.listen);
    keep!("[server] data_dir", server.data_dir);
    keep!("[server] workers", server.workers);
    if new.server.body_timeout != running.server.body_timeout {
        // Bodies use the new value at once; the HTTP layer's wait for a request's headers keeps
        // the one it started with, and so does its wait for requests in flight at a stop.
        kept.push("[server] body_timeout_ms (for request headers and the drain at a stop only)");
    }
    if new.server.ack_deadline != running.server.ack_deadline {
        // Requests use the new deadline at once; the drain at a stop, sized from it, does not.
        kept.push("[server] ack_deadline_ms (for the drain at a stop only)");
    }
    if new.server.tls.is_some() != running.server.tls.is_some() {
        // A new certificate and key apply at once; turning TLS on or off needs a restart.
        kept.push("[server] tls_cert and tls_key (on or off)");
        new.server.tls = running.server.tls.clone();
    }
    keep!("[admin] listen", admin.listen);
    keep!("[store] cache_mb", store.cache_bytes);
    // The store's committer took these at open.
    keep!("[store] checkpoint_mb", store.checkpoint_bytes);
    keep!("[store] checkpoint_read_mb", store.checkpoint_read_bytes);
    keep!("[store] commit_delay", store.commit_delay);
    keep!("[store] slow_commit", store.slow_commit);
    let store = &running.store;
    if new.store.compact_ratio != store.compact_ratio
        || new.store.compact_min_bytes != store.compact_min_bytes
    {
        kept.push("[store] compact_ratio and compact_min_mb");
        new.store.compact_ratio = store.compact_ratio;
        new.store.compact_min_bytes = store.compact_min_bytes;
    }
    keep!(
        "[store] backend (and servers, stream, replicas, token)",
        store.backend
    );
    kept
}

/// What the forwarders are built from: the destinations, and which providers forward tests
/// (only those: a provider added or removed otherwise leaves the forwarders, and the retry
/// schedules under way in them, running).
fn forwarding(config: &Config) -> (&[crate::config::DestinationConfig], BTreeSet<&str>) {
    let tests = config
        .providers
        .iter()
        .filter(|p| p.verifier.forwards_tests())
        .map(|p| p.name.as_str())
        .collect();
    (&config.destinations, tests)
}

/// What the pollers are built from: each provider's sync settings.
fn syncs(config: &Config) -> BTreeMap<&str, &SyncConfig> {
    config
        .providers
        .iter()
        .filter_map(|p| Some((p.name.as_str(), p.sync.as_ref()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::keep_started_settings;
    use crate::config::{load_str, Config};

    const PROVIDER: &str = "[[provider]]\nname = \"demo\"\nverify = \"standard-webhooks\"\n\
                            secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n";

    fn config(server: &str, admin: &str, store: &str) -> Config {
        let text = format!(
            "[server]\n{server}\n[admin]\ntoken = \"an-admin-token-of-enough-length\"\n{admin}\n\
             [store]\n{store}\n{PROVIDER}"
        );
        load_str(&text, Path::new(".")).expect("test config").0
    }

    #[test]
    fn every_setting_taken_at_start_is_kept_and_named() {
        let running = config(
            "listen = \"127.0.0.1:8080\"\ndata_dir = \"data\"\nworkers = 2",
            "listen = \"127.0.0.1:9090\"",
            "cache_mb = 32\ncheckpoint_mb = 256\ncheckpoint_read_mb = 64\n\
             commit_delay = \"500us\"\nslow_commit = \"100ms\"\ncompact_ratio = 2.0",
        );
        let mut new = config(
            "listen = \"127.0.0.1:8081\"\ndata_dir = \"other\"\nworkers = 3",
            "listen = \"127.0.0.1:9091\"",
            "cache_mb = 64\ncheckpoint_mb = 512\ncheckpoint_read_mb = 128\n\
             commit_delay = \"1ms\"\nslow_commit = \"200ms\"\ncompact_ratio = 3.0",
        );
        let kept = keep_started_settings(&mut new, &running);
        assert_eq!(
            kept,
            [
                "[server] listen",
                "[server] data_dir",
                "[server] workers",
                "[admin] listen",
                "[store] cache_mb",
                "[store] checkpoint_mb",
                "[store] checkpoint_read_mb",
                "[store] commit_delay",
                "[store] slow_commit",
                "[store] compact_ratio and compact_min_mb",
            ]
        );
        assert_eq!(new.server.listen, running.server.listen);
        assert_eq!(new.server.data_dir, running.server.data_dir);
        assert_eq!(new.server.workers, running.server.workers);
        assert_eq!(new.admin.listen, running.admin.listen);
        assert_eq!(new.store.cache_bytes, running.store.cache_bytes);
        assert_eq!(new.store.checkpoint_bytes, running.store.checkpoint_bytes);
        assert_eq!(
            new.store.checkpoint_read_bytes,
            running.store.checkpoint_read_bytes
        );
        assert_eq!(new.store.commit_delay, running.store.commit_delay);
        assert_eq!(new.store.slow_commit, running.store.slow_commit);
        assert_eq!(new.store.compact_ratio, running.store.compact_ratio);
    }

    /// The drain at a stop is sized from `body_timeout_ms` and `ack_deadline_ms` as they were
    /// at start: a change of either is named (a longer deadline was silently not waited for).
    #[test]
    fn the_drain_s_timeouts_are_named_as_kept() {
        let running = config("ack_deadline_ms = 4000\nbody_timeout_ms = 10000", "", "");
        for (server, named) in [
            (
                "ack_deadline_ms = 20000\nbody_timeout_ms = 10000",
                "[server] ack_deadline_ms (for the drain at a stop only)",
            ),
            (
                "ack_deadline_ms = 4000\nbody_timeout_ms = 20000",
                "[server] body_timeout_ms (for request headers and the drain at a stop only)",
            ),
        ] {
            let mut new = config(server, "", "");
            assert_eq!(keep_started_settings(&mut new, &running), [named]);
        }
        // Both changed: both named (only the first was).
        let mut new = config("ack_deadline_ms = 20000\nbody_timeout_ms = 20000", "", "");
        assert_eq!(keep_started_settings(&mut new, &running).len(), 2);
    }

    #[test]
    fn the_same_settings_keep_nothing() {
        let running = config("workers = 2", "", "cache_mb = 32");
        let mut new = config("workers = 2", "", "cache_mb = 32");
        assert!(keep_started_settings(&mut new, &running).is_empty());
    }
}
