//! Prometheus metrics, served as text on the admin listener's `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `hookgate_requests_total`. Unknown providers share one label value, so an attacker
/// cannot grow the label set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub provider: String,
    pub status: u16,
}

/// The label value for requests to providers that do not exist.
pub const UNKNOWN_PROVIDER: &str = "_unknown";

pub struct Metrics {
    registry: Registry,
    /// Webhook requests answered, by provider and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds from the body being read to the 200 (durable) answer.
    pub ack_latency: Histogram,
    /// Batches committed by the committer.
    pub commits: Counter,
    /// Requests per committed batch.
    pub commit_batch_size: Histogram,
    /// fsync/fdatasync calls that succeeded.
    pub fsyncs: Counter,
    /// Events stored for the first time.
    pub events_stored: Counter,
    /// Requests answered `duplicate`.
    pub duplicates: Counter,
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
        let ack_latency = Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        registry.register(
            "ack_latency_seconds",
            "Time from body read to durable 200",
            ack_latency.clone(),
        );
        let commits = Counter::default();
        registry.register("commits", "Batches committed", commits.clone());
        let commit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "commit_batch_size",
            "Requests per committed batch",
            commit_batch_size.clone(),
        );
        let fsyncs = Counter::default();
        registry.register(
            "fsyncs",
            "fsync and fdatasync calls that succeeded",
            fsyncs.clone(),
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
        Metrics {
            registry,
            requests,
            ack_latency,
            commits,
            commit_batch_size,
            fsyncs,
            events_stored,
            duplicates,
        }
    }

    pub fn request(&self, provider: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                provider: provider.to_string(),
                status,
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
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
    fn renders_names_from_the_contract() {
        let metrics = Metrics::new();
        metrics.request("github", 200);
        metrics.fsyncs.inc();
        let text = metrics.render();
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
}
