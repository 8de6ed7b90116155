//! Prometheus metrics, served as text on the admin listener's `/metrics`, and the last hour of
//! webhook answers minute by minute ([`recent`]) that the console draws.

pub mod recent;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

/// Labels of `hookgate_requests_total`. Unknown providers share one label value, so an attacker
/// cannot grow the label set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub provider: String,
    pub status: u16,
}

/// Labels of the poller's per-provider series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

/// Labels of a destination's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub destination: String,
}

/// The counters one destination's forwarder moves (shared with the registry: they outlive a
/// reload that makes the forwarder again).
#[derive(Clone, Debug, Default)]
pub struct DestinationCounters {
    pub delivered: Counter,
    pub failed: Counter,
    pub dead: Counter,
}

/// A destination's gauges, as read for one scrape.
#[derive(Clone, Debug)]
pub struct DestinationGauges {
    pub destination: String,
    pub paused: bool,
    pub probing: bool,
    /// `None` when the store could not be read: the series is left out of this scrape.
    pub cursor: Option<u64>,
}

/// Labels of a consumer's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub consumer: String,
}

/// A consumer's cursor as read for one scrape (`None`: the store could not be read; left out).
#[derive(Clone, Debug)]
pub struct ConsumerGauges {
    pub consumer: String,
    pub cursor: Option<u64>,
}

/// Labels of `hookgate_poll_errors_total`: `kind` is `transport`, `status`, `rate_limited`,
/// `malformed`, `auth` or `store`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PollErrorLabels {
    pub provider: String,
    pub kind: String,
}

/// Labels of `hookgate_rejections_total`: why a request or connection was refused (a fixed set
/// of names, see `Rejection::cause` and `http/limits.rs`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    pub cause: &'static str,
}

/// What a 200 that stored an event did (see [`Metrics::request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Accepted,
    Duplicate,
}

/// The label value for requests to providers that do not exist.
pub const UNKNOWN_PROVIDER: &str = "_unknown";

pub struct Metrics {
    registry: Registry,
    /// Webhook requests answered, by provider and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Vendors' handshakes (Slack's `url_verification`) answered without storing anything.
    pub handshakes: Family<ProviderLabels, Counter>,
    /// Requests and connections refused, by cause; every one is counted, even when its log line
    /// is sampled away.
    pub rejections: Family<RejectionLabels, Counter>,
    /// Connections open on the public listener.
    pub connections_open: Gauge,
    /// Other gateways on the same store that run another config (see `peers.rs`).
    pub gateways_disagreeing: Gauge,
    /// Seconds from handing a verified event to the store to its durable answer.
    pub ack_latency: Histogram,
    /// Group commits: batches applied together and made durable by one sync.
    pub commits: Counter,
    /// Requests per group commit.
    pub commit_batch_size: Histogram,
    /// Seconds the committer spends applying one batch in sled (the transaction).
    pub commit_apply_seconds: Histogram,
    /// Seconds one group sync takes (sled flush, fdatasync of the log).
    pub commit_sync_seconds: Histogram,
    /// fsync/fdatasync calls that succeeded.
    pub fsyncs: Counter,
    /// Commits whose oldest request waited over `[store] slow_commit` for its answer (sled's
    /// group commits, JetStream's publishes).
    pub commits_slow: Counter,
    /// sled reopened by the committer to bound the replay of a start after a crash.
    pub store_checkpoints: Counter,
    /// Seconds each of those checkpoints kept sled closed (acks go on through the journal).
    pub store_checkpoint_seconds: Histogram,
    /// Events accepted into the checkpoint journal while sled was closed.
    pub store_journaled_events: Counter,
    /// Requests held while sled was closed (writes, and events whose dedup needs sled).
    pub store_checkpoint_held: Counter,
    /// sled stores copied afresh to give disk back after retention.
    pub store_compactions: Counter,
    /// Compactions given up (the copy could not catch up, or an error): the next try waits.
    pub store_compactions_failed: Counter,
    /// Events stored for the first time.
    pub events_stored: Counter,
    /// Requests answered `duplicate`.
    pub duplicates: Counter,
    /// Bytes the store's files take on disk, measured after each sweep.
    pub disk_bytes: Gauge,
    /// Free segments of sled's file, counted at its last open (each written over at every open).
    pub store_free_segments: Gauge,
    /// Events removed by the retention sweeper.
    pub events_swept: Counter,
    /// Dedup keys removed by the retention sweeper.
    pub dedup_keys_swept: Counter,
    /// Poller: pages fetched, items in them, and items that were new (gaps filled).
    pub poll_pages: Family<ProviderLabels, Counter>,
    pub poll_items: Family<ProviderLabels, Counter>,
    pub poll_items_new: Family<ProviderLabels, Counter>,
    pub poll_errors: Family<PollErrorLabels, Counter>,
    /// Seconds since the last successful poll round, computed when rendered.
    pub poll_since_success: Family<ProviderLabels, Gauge<f64, AtomicU64>>,
    /// The sync cursor, when it is a number.
    pub poll_cursor: Family<ProviderLabels, Gauge<f64, AtomicU64>>,
    poll_ages: Mutex<PollAges>,
    /// Per destination: events delivered, attempts failed, events given up (dead letters).
    destination_delivered: Family<DestinationLabels, Counter>,
    destination_failed: Family<DestinationLabels, Counter>,
    destination_dead: Family<DestinationLabels, Counter>,
    /// Per destination, set when rendered from the live destinations: paused, probing, cursor.
    destination_paused: Family<DestinationLabels, Gauge>,
    destination_probing: Family<DestinationLabels, Gauge>,
    destination_cursor: Family<DestinationLabels, Gauge>,
    /// Per consumer, set when rendered: the seq through which it acknowledged.
    consumer_cursor: Family<ConsumerLabels, Gauge>,
    /// The newest durable seq, set when rendered (a destination's lag is this less its cursor).
    store_last_seq: Gauge,
    /// Held while one scrape sets the gauges above and renders: two at once (a pair of
    /// Prometheus servers) would render each other's half-set gauges.
    scrape: Mutex<()>,
    /// Log lines dropped because the log's reader fell behind (see `cmd::logging`), brought up
    /// to date when rendered; the lock keeps two renders from counting the same lines.
    log_lines_dropped: Mutex<Counter>,
    /// The last hour of answers and ack latencies, minute by minute, for the console.
    pub recent: recent::Recent,
}

/// Buckets for a latency from `start` seconds up to ~2^17.5 times it, two to a doubling: a
/// quantile read from them (as the benches do) is within a factor of 1.41 rather than 2.
fn latency_buckets(start: f64) -> impl Iterator<Item = f64> {
    exponential_buckets(start, std::f64::consts::SQRT_2, 36)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hookgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Webhook requests answered, by provider and status",
            requests.clone(),
        );
        let handshakes = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "handshakes",
            "Vendor handshakes answered without storing anything, by provider",
            handshakes.clone(),
        );
        let rejections = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "rejections",
            "Requests and connections refused, by cause",
            rejections.clone(),
        );
        let gateways_disagreeing = Gauge::default();
        registry.register(
            "gateways_disagreeing",
            "Other live gateways on the same store whose providers, destinations, consumers or retention differ from this one's",
            gateways_disagreeing.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Connections open on the public listener",
            connections_open.clone(),
        );
        let ack_latency = Histogram::new(latency_buckets(0.000_1));
        registry.register(
            "ack_latency_seconds",
            "Time from handing the event to the store to its durable answer",
            ack_latency.clone(),
        );
        let commits = Counter::default();
        registry.register("commits", "Group commits (one sync each)", commits.clone());
        let commit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "commit_batch_size",
            "Requests per group commit",
            commit_batch_size.clone(),
        );
        let commit_apply_seconds = Histogram::new(latency_buckets(0.000_01));
        registry.register(
            "commit_apply_seconds",
            "Time to apply one batch in sled",
            commit_apply_seconds.clone(),
        );
        let commit_sync_seconds = Histogram::new(latency_buckets(0.000_01));
        registry.register(
            "commit_sync_seconds",
            "Time of one group sync: sled flush and fdatasync",
            commit_sync_seconds.clone(),
        );
        let fsyncs = Counter::default();
        registry.register(
            "fsyncs",
            "fsync and fdatasync calls that succeeded",
            fsyncs.clone(),
        );
        let commits_slow = Counter::default();
        registry.register(
            "commits_slow",
            "Commits (sled batches, JetStream publishes) whose oldest request waited over [store] slow_commit",
            commits_slow.clone(),
        );
        let store_checkpoints = Counter::default();
        registry.register(
            "store_checkpoints",
            "Checkpoints of the sled store while running ([store] checkpoint_mb)",
            store_checkpoints.clone(),
        );
        let store_journaled_events = Counter::default();
        registry.register(
            "store_journaled_events",
            "Events accepted into the checkpoint journal while the sled store was closed",
            store_journaled_events.clone(),
        );
        let store_checkpoint_held = Counter::default();
        registry.register(
            "store_checkpoint_held",
            "Requests held until the sled store reopened (writes, and events whose dedup needs it)",
            store_checkpoint_held.clone(),
        );
        let store_checkpoint_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "store_checkpoint_seconds",
            "Time each checkpoint kept the sled store closed (events are journaled meanwhile)",
            store_checkpoint_seconds.clone(),
        );
        let store_compactions = Counter::default();
        registry.register(
            "store_compactions",
            "Compactions of the sled store after retention ([store] compact_ratio)",
            store_compactions.clone(),
        );
        let store_compactions_failed = Counter::default();
        registry.register(
            "store_compactions_failed",
            "Compactions of the sled store given up or failed; the next try waits 10 min, doubling up to 6 h",
            store_compactions_failed.clone(),
        );
        let events_stored = Counter::default();
        registry.register(
            "events_stored",
            "Events stored for the first time",
            events_stored.clone(),
        );
        let duplicates = Counter::default();
        registry.register(
            "duplicates",
            "Requests answered as duplicates",
            duplicates.clone(),
        );
        let poll_pages = Family::<ProviderLabels, Counter>::default();
        registry.register("poll_pages", "Sync API pages fetched", poll_pages.clone());
        let poll_items = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "poll_items",
            "Items in the sync API pages fetched",
            poll_items.clone(),
        );
        let poll_items_new = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "poll_items_new",
            "Polled items not stored before: gaps the webhooks left",
            poll_items_new.clone(),
        );
        let poll_errors = Family::<PollErrorLabels, Counter>::default();
        registry.register(
            "poll_errors",
            "Failed sync API polls, by kind",
            poll_errors.clone(),
        );
        let poll_since_success = Family::<ProviderLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "poll_seconds_since_success",
            "Seconds since the last successful poll round",
            poll_since_success.clone(),
        );
        let poll_cursor = Family::<ProviderLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "poll_cursor",
            "The sync cursor, when it is a number",
            poll_cursor.clone(),
        );
        let disk_bytes = Gauge::default();
        registry.register(
            "disk_bytes",
            "Bytes the store's files take on disk",
            disk_bytes.clone(),
        );
        let store_free_segments = Gauge::default();
        registry.register(
            "store_free_segments",
            "Free segments of the sled store's file at its last open, which sled 0.34 writes over with zeros at every open",
            store_free_segments.clone(),
        );
        let events_swept = Counter::default();
        registry.register(
            "events_swept",
            "Events removed by the retention sweeper",
            events_swept.clone(),
        );
        let dedup_keys_swept = Counter::default();
        registry.register(
            "dedup_keys_swept",
            "Dedup keys removed by the retention sweeper",
            dedup_keys_swept.clone(),
        );
        let destination_delivered = Family::<DestinationLabels, Counter>::default();
        registry.register(
            "destination_deliveries",
            "Events delivered, by destination",
            destination_delivered.clone(),
        );
        let destination_failed = Family::<DestinationLabels, Counter>::default();
        registry.register(
            "destination_failed_attempts",
            "Delivery attempts that failed, by destination",
            destination_failed.clone(),
        );
        let destination_dead = Family::<DestinationLabels, Counter>::default();
        registry.register(
            "destination_dead_letters",
            "Events given up on (dead letters), by destination",
            destination_dead.clone(),
        );
        let destination_paused = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "destination_paused",
            "1 while a destination is paused by an operator",
            destination_paused.clone(),
        );
        let destination_probing = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "destination_probing",
            "1 while a destination fails so often that attempts only probe",
            destination_probing.clone(),
        );
        let destination_cursor = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "destination_cursor",
            "The seq through which a destination is done (its lag: store_last_seq less this)",
            destination_cursor.clone(),
        );
        let consumer_cursor = Family::<ConsumerLabels, Gauge>::default();
        registry.register(
            "consumer_cursor",
            "The seq through which a consumer acknowledged (its lag: store_last_seq less this)",
            consumer_cursor.clone(),
        );
        let store_last_seq = Gauge::default();
        registry.register(
            "store_last_seq",
            "The newest durable seq",
            store_last_seq.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log's reader fell behind",
            log_lines_dropped.clone(),
        );
        Metrics {
            registry,
            log_lines_dropped: Mutex::new(log_lines_dropped),
            poll_pages,
            poll_items,
            poll_items_new,
            poll_errors,
            poll_since_success,
            poll_cursor,
            poll_ages: Mutex::default(),
            recent: recent::Recent::default(),
            requests,
            handshakes,
            rejections,
            connections_open,
            gateways_disagreeing,
            ack_latency,
            commits,
            commit_batch_size,
            commit_apply_seconds,
            commit_sync_seconds,
            fsyncs,
            commits_slow,
            store_checkpoints,
            store_journaled_events,
            store_checkpoint_held,
            store_checkpoint_seconds,
            store_compactions,
            store_compactions_failed,
            events_stored,
            duplicates,
            disk_bytes,
            store_free_segments,
            events_swept,
            dedup_keys_swept,
            destination_delivered,
            destination_failed,
            destination_dead,
            destination_paused,
            destination_probing,
            destination_cursor,
            consumer_cursor,
            store_last_seq,
            scrape: Mutex::new(()),
        }
    }

    /// The text exposition, with the destinations' gauges as `destinations` says (those of a
    /// destination no longer configured go) and the newest seq.
    pub fn render_with(
        &self,
        last_seq: u64,
        destinations: &[DestinationGauges],
        consumers: &[ConsumerGauges],
    ) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.store_last_seq
            .set(i64::try_from(last_seq).unwrap_or(i64::MAX));
        self.destination_paused.clear();
        self.destination_probing.clear();
        self.destination_cursor.clear();
        for gauges in destinations {
            let labels = DestinationLabels {
                destination: gauges.destination.clone(),
            };
            let set = |family: &Family<DestinationLabels, Gauge>, value: i64| {
                family.get_or_create(&labels).set(value);
            };
            set(&self.destination_paused, i64::from(gauges.paused));
            set(&self.destination_probing, i64::from(gauges.probing));
            if let Some(cursor) = gauges.cursor {
                set(
                    &self.destination_cursor,
                    i64::try_from(cursor).unwrap_or(i64::MAX),
                );
            }
        }
        self.consumer_cursor.clear();
        for gauges in consumers {
            if let Some(cursor) = gauges.cursor {
                let labels = ConsumerLabels {
                    consumer: gauges.consumer.clone(),
                };
                self.consumer_cursor
                    .get_or_create(&labels)
                    .set(i64::try_from(cursor).unwrap_or(i64::MAX));
            }
        }
        self.render()
    }

    /// The counters of destination `name` (the same ones each time it is asked).
    pub fn destination_counters(&self, name: &str) -> DestinationCounters {
        let labels = DestinationLabels {
            destination: name.to_string(),
        };
        DestinationCounters {
            delivered: self.destination_delivered.get_or_create(&labels).clone(),
            failed: self.destination_failed.get_or_create(&labels).clone(),
            dead: self.destination_dead.get_or_create(&labels).clone(),
        }
    }

    /// Drops the counters of destination `name` (no longer configured): their series went on
    /// being exported, zero or frozen, until a restart.
    pub fn forget_destination(&self, name: &str) {
        let labels = DestinationLabels {
            destination: name.to_string(),
        };
        for family in [
            &self.destination_delivered,
            &self.destination_failed,
            &self.destination_dead,
        ] {
            family.remove(&labels);
        }
    }

    /// Counts one answered webhook: `status`, and for a 200 that stored an event, whether it was
    /// a duplicate.
    pub fn request(&self, provider: &str, status: u16, stored: Option<Stored>) {
        self.requests
            .get_or_create(&RequestLabels {
                provider: provider.to_string(),
                status,
            })
            .inc();
        let answer = match stored {
            Some(Stored::Accepted) => recent::Answer::Accepted,
            Some(Stored::Duplicate) => recent::Answer::Duplicate,
            None => recent::Answer::Status(status),
        };
        self.recent.record(provider, answer, recent::minute_now());
    }

    /// Counts the time from handing a verified event to the store to its durable answer.
    pub fn acked(&self, seconds: f64) {
        self.ack_latency.observe(seconds);
        self.recent.ack(seconds, recent::minute_now());
    }

    pub fn handshake(&self, provider: &str) {
        self.handshakes
            .get_or_create(&ProviderLabels {
                provider: provider.to_string(),
            })
            .inc();
    }

    /// Starts `hookgate_poll_seconds_since_success` for `provider`, whose poller starts here:
    /// from its last success here if it stopped here just before (a reload stops it and starts
    /// it again), else from now (a success older than a stop of longer may be another
    /// gateway's to tell, which held its lease meanwhile). A poller that never succeeds is
    /// exported too (a vendor down since the start, or across a reload, left no series, and the
    /// alert on it went quiet).
    pub fn poll_started(&self, provider: &str) {
        if let Ok(mut ages) = self.poll_ages.lock() {
            let ages = &mut *ages;
            ages.polling.insert(provider.to_string());
            let restarted = ages
                .stopped
                .remove(provider)
                .is_some_and(|stopped| stopped.elapsed() < POLL_RESTART_GAP);
            if !restarted || !ages.last_success.contains_key(provider) {
                ages.last_success
                    .insert(provider.to_string(), Instant::now());
            }
        }
    }

    /// Records a successful poll round of `provider`.
    pub fn poll_succeeded(&self, provider: &str) {
        if let Ok(mut ages) = self.poll_ages.lock() {
            ages.last_success
                .insert(provider.to_string(), Instant::now());
        }
    }

    /// Stops exporting `provider`'s age when its poller stops here (removed by a reload, or
    /// its lease taken by another gateway, which reports it from then on): a gauge left behind
    /// would grow for ever and set off the alert on it. So does its cursor, left stale.
    pub fn poll_stopped(&self, provider: &str) {
        if let Ok(mut ages) = self.poll_ages.lock() {
            ages.polling.remove(provider);
            ages.stopped.insert(provider.to_string(), Instant::now());
        }
        let labels = ProviderLabels {
            provider: provider.to_string(),
        };
        self.poll_since_success.remove(&labels);
        self.poll_cursor.remove(&labels);
    }

    /// Sets the seconds-since-success gauges of the pollers running here.
    fn refresh_poll_ages(&self) {
        let Ok(ages) = self.poll_ages.lock() else {
            return;
        };
        for provider in &ages.polling {
            let Some(at) = ages.last_success.get(provider) else {
                continue;
            };
            let labels = ProviderLabels {
                provider: provider.clone(),
            };
            self.poll_since_success
                .get_or_create(&labels)
                .set(at.elapsed().as_secs_f64());
        }
    }

    /// Brings `hookgate_log_lines_dropped_total` up to the log writer's count.
    fn refresh_log_lines_dropped(&self) {
        let Ok(counter) = self.log_lines_dropped.lock() else {
            return;
        };
        let dropped = crate::cmd::logging::dropped_lines();
        counter.inc_by(dropped.saturating_sub(counter.get()));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.refresh_poll_ages();
        self.refresh_log_lines_dropped();
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// A poller started again within this of its stop here (a reload: up to 15 s stopping the old
/// workers) keeps its last success.
const POLL_RESTART_GAP: std::time::Duration = std::time::Duration::from_secs(30);

/// What `hookgate_poll_seconds_since_success` is computed from.
#[derive(Default)]
struct PollAges {
    /// Per provider polled here: its last success, or when its poller started.
    last_success: HashMap<String, Instant>,
    /// The providers whose poller runs here: only theirs are exported.
    polling: HashSet<String>,
    /// When each provider's poller last stopped here, until it starts again.
    stopped: HashMap<String, Instant>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_poller_leaves_no_age_behind() {
        let metrics = Metrics::new();
        metrics.poll_started("gh");
        metrics.poll_succeeded("gh");
        let gauge = r#"hookgate_poll_seconds_since_success{provider="gh"}"#;
        assert!(metrics.render().contains(gauge));
        metrics.poll_stopped("gh");
        assert!(!metrics.render().contains(gauge));
    }

    /// A vendor down since the start, or across a reload, keeps its age growing (the series
    /// was missing until a first success, and a reload reset it).
    #[test]
    fn a_poller_that_never_succeeded_has_an_age_kept_across_a_restart_of_it() {
        let metrics = Metrics::new();
        let age = |metrics: &Metrics| {
            metrics.render().lines().find_map(|line| {
                line.strip_prefix(r#"hookgate_poll_seconds_since_success{provider="gh"} "#)
                    .map(|value| value.parse::<f64>().unwrap())
            })
        };
        metrics.poll_started("gh");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let first = age(&metrics).expect("exported before any success");
        assert!(first >= 0.05, "{first}");
        metrics.poll_stopped("gh");
        metrics.poll_started("gh");
        let again = age(&metrics).expect("exported after the reload");
        assert!(again >= first, "{again} < {first}: reset by the reload");
        // Stopped for longer (its lease held by another gateway meanwhile, which polled): its
        // old success is not this gateway's to tell any more.
        metrics.poll_stopped("gh");
        if let Ok(mut ages) = metrics.poll_ages.lock() {
            let long_ago = Instant::now() - POLL_RESTART_GAP;
            ages.stopped.insert("gh".into(), long_ago);
        }
        metrics.poll_started("gh");
        let regained = age(&metrics).expect("exported");
        assert!(
            regained < first,
            "{regained}: the success of before the lease moved"
        );
    }

    #[test]
    fn renders_names_from_the_contract() {
        let metrics = Metrics::new();
        metrics.request("github", 200, Some(Stored::Accepted));
        metrics.handshake("slack");
        metrics.fsyncs.inc();
        let text = metrics.render();
        assert!(
            text.contains(r#"hookgate_handshakes_total{provider="slack"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"hookgate_requests_total{provider="github",status="200"} 1"#),
            "{text}"
        );
        assert!(text.contains("hookgate_fsyncs_total 1"), "{text}");
        assert!(
            text.contains("hookgate_ack_latency_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains("hookgate_commit_batch_size_count 0"),
            "{text}"
        );
    }

    #[test]
    fn renders_the_poller_metrics() {
        let metrics = Metrics::new();
        let labels = ProviderLabels {
            provider: "alcmeon".into(),
        };
        metrics.poll_items_new.get_or_create(&labels).inc_by(3);
        metrics.poll_cursor.get_or_create(&labels).set(42.0);
        metrics.poll_started("alcmeon");
        metrics.poll_succeeded("alcmeon");
        let text = metrics.render();
        assert!(
            text.contains(r#"hookgate_poll_items_new_total{provider="alcmeon"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"hookgate_poll_cursor{provider="alcmeon"} 42"#),
            "{text}"
        );
        // A fraction of a microsecond renders as `7.41e-7`: read the number.
        let since: f64 = text
            .lines()
            .find_map(|line| {
                line.strip_prefix(r#"hookgate_poll_seconds_since_success{provider="alcmeon"} "#)
            })
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no seconds since success: {text}"));
        assert!((0.0..1.0).contains(&since), "{text}");
    }

    #[test]
    fn renders_the_sweeper_metrics() {
        let metrics = Metrics::new();
        metrics.disk_bytes.set(4096);
        metrics.events_swept.inc_by(3);
        let text = metrics.render();
        assert!(text.contains("hookgate_disk_bytes 4096"), "{text}");
        assert!(text.contains("hookgate_events_swept_total 3"), "{text}");
        assert!(text.contains("hookgate_dedup_keys_swept_total 0"), "{text}");
    }
}
