//! Refused requests and connections: each one counted by cause in `/metrics`
//! (`hookgate_rejections_total{cause}`), and logged at most `rejection_logs_per_s` times a second
//! per cause. A flood of bad requests (542k 401s in 12 s once wrote 86 MB of log) costs a few
//! lines a second; the next line logged for a cause says how many were left out before it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::metrics::{Metrics, RejectionLabels};

pub struct Rejections {
    metrics: Arc<Metrics>,
    logs_per_s: AtomicU32,
    started: Instant,
    windows: Mutex<HashMap<&'static str, Window>>,
}

/// One cause's log lines in the current second, and those left out since the last line.
#[derive(Default)]
struct Window {
    second: u64,
    logged: u32,
    suppressed: u64,
}

/// What a log line says about a refusal, beside its cause.
pub struct Refused<'a> {
    pub cause: &'static str,
    /// The provider named in the route, if any (unknown ones included: they are the point).
    pub provider: Option<&'a str>,
    pub client: Option<IpAddr>,
    /// How its (sampled) line is logged.
    pub level: Level,
    /// The webhook's `X-Request-Id` (echoed in the answer), so that a sender's support and an
    /// operator can name the same refusal.
    pub request_id: Option<&'a str>,
}

/// The level of a refusal's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A limit or a malformed request: the sender's doing.
    Info,
    /// A verification failure.
    Warn,
    /// The gateway could not do its part (the store failed).
    Error,
}

impl Rejections {
    pub fn new(metrics: Arc<Metrics>, logs_per_s: u32) -> Rejections {
        Rejections {
            metrics,
            logs_per_s: AtomicU32::new(logs_per_s),
            started: Instant::now(),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// A new sampling rate (a reload).
    pub fn set_logs_per_s(&self, logs_per_s: u32) {
        self.logs_per_s.store(logs_per_s, Ordering::Relaxed);
    }

    /// Counts a refusal and logs it unless this cause has had its lines this second.
    pub fn record(&self, refused: Refused<'_>, detail: &dyn std::fmt::Display) {
        let Refused {
            cause,
            provider,
            client,
            level,
            request_id,
        } = refused;
        self.metrics
            .rejections
            .get_or_create(&RejectionLabels { cause })
            .inc();
        let Some(suppressed) = self.take_log_slot(cause) else {
            return;
        };
        let provider = provider.map_or("-", shown_provider);
        let client = client.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        let request_id = request_id.unwrap_or("-");
        match level {
            Level::Info => {
                tracing::info!(cause, provider, client, request_id, suppressed, reason = %detail, "Request refused.")
            }
            Level::Warn => {
                tracing::warn!(cause, provider, client, request_id, suppressed, reason = %detail, "Request refused.")
            }
            Level::Error => {
                tracing::error!(cause, provider, client, request_id, suppressed, reason = %detail, "Request refused.")
            }
        }
    }

    /// `Some(lines left out since the last one)` if a line may be logged now.
    fn take_log_slot(&self, cause: &'static str) -> Option<u64> {
        let second = self.started.elapsed().as_secs();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(cause).or_default();
        if window.second != second {
            window.second = second;
            window.logged = 0;
        }
        if window.logged >= self.logs_per_s.load(Ordering::Relaxed) {
            window.suppressed += 1;
            return None;
        }
        window.logged += 1;
        Some(std::mem::take(&mut window.suppressed))
    }
}

/// Characters of a refused request's provider logged at most: a provider name is at most 64,
/// and the path segment of an unknown one is the sender's (up to actix's 64 KiB URI).
const LOGGED_PROVIDER_CHARS: usize = 64;

/// The provider as logged: its first [`LOGGED_PROVIDER_CHARS`] characters.
fn shown_provider(provider: &str) -> &str {
    match provider.char_indices().nth(LOGGED_PROVIDER_CHARS) {
        Some((end, _)) => &provider[..end],
        None => provider,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_provider_names_are_logged_cut() {
        assert_eq!(shown_provider("github"), "github");
        let long = "é".repeat(10_000);
        assert_eq!(shown_provider(&long).chars().count(), LOGGED_PROVIDER_CHARS);
    }

    #[test]
    fn every_refusal_counts_but_only_a_few_are_logged() {
        let metrics = Arc::new(Metrics::new());
        let rejections = Rejections::new(metrics.clone(), 3);
        let slots: Vec<Option<u64>> = (0..10).map(|_| rejections.take_log_slot("x")).collect();
        assert_eq!(slots.iter().filter(|s| s.is_some()).count(), 3, "{slots:?}");
        assert!(rejections.take_log_slot("y").is_some(), "causes are apart");
        // The next second's first line reports the seven left out.
        rejections
            .windows
            .lock()
            .unwrap()
            .get_mut("x")
            .unwrap()
            .second = u64::MAX;
        assert_eq!(rejections.take_log_slot("x"), Some(7));
        assert_eq!(rejections.take_log_slot("x"), Some(0));

        for _ in 0..4 {
            let refused = Refused {
                cause: "bad_signature",
                provider: Some("p"),
                client: None,
                level: Level::Warn,
                request_id: None,
            };
            rejections.record(refused, &"no signature matches");
        }
        let text = metrics.render();
        assert!(
            text.contains(r#"hookgate_rejections_total{cause="bad_signature"} 4"#),
            "{text}"
        );
    }
}
