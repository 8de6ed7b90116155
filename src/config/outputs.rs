//! Validation of where events go: `[[destination]]` (push), `[[consumer]]` (pull), and the
//! store's retention settings.

use std::time::Duration;

use super::load::{Loader, Section};
use super::raw::{RawConsumer, RawDestination, RawStore};
use super::{ConsumerConfig, DestinationConfig, ProviderConfig, StoreBackend, StoreConfig};
use crate::event::ProviderName;

const DEFAULT_RETRY_DELAYS: [&str; 10] = [
    "5s", "30s", "2m", "10m", "30m", "1h", "2h", "4h", "8h", "8h",
];

/// The shortest `[store] dedup_window` accepted.
const MIN_DEDUP_WINDOW: Duration = Duration::from_secs(60);

/// The longest duration any setting takes: longer ones overflowed the arithmetic of times (a
/// retry delay of `"500000000000y"` made the forwarder panic, and the gateway restart in a loop).
/// (humantime's year is 365.25 days: `"100y"` is taken.)
const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses a duration such as `"5s"`, `"2m"`, `"7d"`, of at most 100 years.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|err| format!("{text:?} is not a duration like \"30s\", \"2m\", \"7d\": {err}"))?;
    if duration > MAX_DURATION {
        return Err(format!("{text:?} is longer than 100 years"));
    }
    Ok(duration)
}

impl Loader<'_> {
    pub(super) fn store(&mut self, raw: RawStore, section: Option<&Section>) -> StoreConfig {
        let backend = self.store_backend(&raw, section);
        let mut duration = |key: &str, value: Option<&str>, default: &str| {
            let at = section.and_then(|s| self.key_position(s, key));
            match parse_duration(value.unwrap_or(default)) {
                Ok(duration) => duration,
                Err(message) => {
                    self.error(at, format!("[store] {key}: {message}"));
                    Duration::ZERO
                }
            }
        };
        let retention = duration("retention", raw.retention.as_deref(), "7d");
        let dedup_window = duration("dedup_window", raw.dedup_window.as_deref(), "7d");
        let sweep_interval = duration("sweep_interval", raw.sweep_interval.as_deref(), "60s");
        let commit_delay = duration("commit_delay", raw.commit_delay.as_deref(), "500us");
        let slow_commit = duration("slow_commit", raw.slow_commit.as_deref(), "100ms");
        if commit_delay > super::MAX_COMMIT_DELAY {
            let at = section.and_then(|s| self.key_position(s, "commit_delay"));
            self.error(
                at,
                "[store] commit_delay: at most 100ms (every ack may wait this long under load)"
                    .to_string(),
            );
        }
        // A dedup window must cover the longest retry window of any sender (Alcméon retries for
        // 24 h; the default 7d covers it); below a minute it is surely a typo ("7s" for "7d").
        let dedup_parsed = parse_duration(raw.dedup_window.as_deref().unwrap_or("7d")).is_ok();
        if dedup_parsed && dedup_window < MIN_DEDUP_WINDOW {
            let at = section.and_then(|s| self.key_position(s, "dedup_window"));
            self.error(
                at,
                "[store] dedup_window must be at least 1m; it should cover the longest retry \
                 window of any sender (Alcméon retries for 24 h)"
                    .to_string(),
            );
        }
        let ratio = raw.compact_ratio;
        if !(ratio == 0.0 || (ratio.is_finite() && ratio >= 1.0)) {
            let at = section.and_then(|s| self.key_position(s, "compact_ratio"));
            self.error(
                at,
                format!(
                    "[store] compact_ratio: {ratio} is neither 0 (never compact) nor a ratio of \
                     at least 1 (a store always takes at least what it holds)"
                ),
            );
        }
        // On JetStream an event is its own dedup key: removing it frees its id. So events stay
        // at least as long as the dedup window (docs/store.md).
        if matches!(backend, StoreBackend::JetStream(_)) && retention < dedup_window {
            let at = section.and_then(|s| self.key_position(s, "retention"));
            self.error(
                at,
                "[store] retention: with backend = \"jetstream\" it must be at least \
                 dedup_window (an event is its own dedup key there)"
                    .to_string(),
            );
        }
        StoreConfig {
            cache_bytes: raw.cache_mb.saturating_mul(1024 * 1024),
            retention,
            dedup_window,
            sweep_interval: sweep_interval.max(Duration::from_millis(100)),
            dedup_run_keys: super::DEFAULT_DEDUP_RUN_KEYS,
            checkpoint_bytes: raw.checkpoint_mb.saturating_mul(1024 * 1024),
            checkpoint_read_bytes: raw.checkpoint_read_mb.saturating_mul(1024 * 1024),
            recent_read_seqs: super::DEFAULT_RECENT_READ_SEQS,
            commit_delay: commit_delay.min(super::MAX_COMMIT_DELAY),
            slow_commit,
            compact_ratio: raw.compact_ratio,
            compact_min_bytes: raw.compact_min_mb.saturating_mul(1024 * 1024),
            backend,
        }
    }

    /// `[store] backend` and the JetStream keys, which only that backend takes.
    fn store_backend(&mut self, raw: &RawStore, section: Option<&Section>) -> StoreBackend {
        let at = |loader: &Self, key: &str| section.and_then(|s| loader.key_position(s, key));
        match raw.backend.as_deref().unwrap_or("sled") {
            "sled" => {
                for key in super::jetstream::keys_given(raw) {
                    self.error(
                        at(self, key),
                        format!("[store] {key}: only for backend = \"jetstream\""),
                    );
                }
                StoreBackend::Sled
            }
            "jetstream" => StoreBackend::JetStream(self.jetstream(raw, section)),
            other => {
                self.error(
                    at(self, "backend"),
                    format!("[store] backend: {other:?} is neither \"sled\" nor \"jetstream\""),
                );
                StoreBackend::Sled
            }
        }
    }

    pub(super) fn destination(
        &mut self,
        raw: RawDestination,
        section: &Section,
        providers: &[ProviderConfig],
    ) -> Option<DestinationConfig> {
        let label = format!("destination {:?}", raw.name);
        let before = self.error_count();
        let name = self.output_name(&raw.name, section);
        let url = match url::Url::parse(&raw.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            _ => {
                self.error(
                    self.key_position(section, "url"),
                    // Not quoted: a URL may carry a credential (`?api_key=`, `user:pass@`).
                    format!("{label}: url is not an http(s) URL"),
                );
                None
            }
        };
        let wanted = self.provider_list(raw.providers.as_deref(), providers, section, &label);
        let what = format!("{label} signing_secret");
        let signing_key = match self.resolve(&raw.signing_secret, Some(&what)) {
            Ok(secret) => match crate::verify::decode_whsec(secret.expose()) {
                Some(key) => Some(key),
                None => {
                    self.error(
                        self.key_position(section, "signing_secret"),
                        format!("{label}: signing_secret must be \"whsec_\" followed by base64"),
                    );
                    None
                }
            },
            Err(message) => {
                self.error(
                    self.key_position(section, "signing_secret"),
                    format!("{label}: signing_secret: {message}"),
                );
                None
            }
        };
        self.audit_destination(&raw, signing_key.as_ref().map(|key| key.expose()));
        let timeout = self
            .duration_key(
                section,
                "timeout",
                raw.timeout.as_deref().unwrap_or("10s"),
                &label,
            )
            .filter(|timeout| {
                // Every attempt would time out at once, and every event go dead.
                let positive = !timeout.is_zero();
                if !positive {
                    self.error(
                        self.key_position(section, "timeout"),
                        format!("{label}: timeout must be more than 0"),
                    );
                }
                positive
            });
        let delays: Vec<String> = raw
            .retry_delays
            .unwrap_or_else(|| DEFAULT_RETRY_DELAYS.iter().map(|d| d.to_string()).collect());
        let retry_delays: Vec<Duration> = delays
            .iter()
            .filter_map(|d| self.duration_key(section, "retry_delays", d, &label))
            .collect();
        if delays.is_empty() {
            self.error(
                self.key_position(section, "retry_delays"),
                format!("{label}: retry_delays must not be empty"),
            );
        }
        let max_in_flight = raw.max_in_flight.unwrap_or(10);
        if !(1..=1000).contains(&max_in_flight) {
            self.error(
                self.key_position(section, "max_in_flight"),
                format!("{label}: max_in_flight must be between 1 and 1000"),
            );
        }
        let alert_ratio = raw.alert_ratio.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&alert_ratio) {
            self.error(
                self.key_position(section, "alert_ratio"),
                format!("{label}: alert_ratio must be between 0 and 1"),
            );
        }
        // A chat service's webhook URL is its credential: it may be a secret reference too.
        let alert_url = raw.alert_url.as_deref().and_then(|text| {
            let at = self.key_position(section, "alert_url");
            if crate::secret::is_literal(text) {
                // `Env:NAME`, a misspelled reference, is a URL of scheme `env`: refused too.
                return match url::Url::parse(text) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                    _ => {
                        // Not quoted: a chat service's webhook URL is its credential.
                        self.error(at, format!("{label}: alert_url is not an http(s) URL"));
                        None
                    }
                };
            }
            let resolved = self.resolve(text, None).and_then(|secret| {
                let url = std::str::from_utf8(secret.expose()).ok();
                url.and_then(|url| url::Url::parse(url.trim()).ok())
                    .filter(|url| matches!(url.scheme(), "http" | "https"))
                    .ok_or_else(|| format!("{text} does not hold an http(s) URL"))
            });
            resolved
                .map_err(|message| self.error(at, format!("{label}: alert_url: {message}")))
                .ok()
        });
        if raw.rate_limit_per_min == Some(0) {
            self.error(
                self.key_position(section, "rate_limit_per_min"),
                format!("{label}: rate_limit_per_min must be at least 1"),
            );
        }
        if self.error_count() > before {
            return None;
        }
        Some(DestinationConfig {
            name: name?,
            url: url?,
            providers: wanted?,
            signing_key: signing_key?,
            timeout: timeout?,
            retry_delays,
            max_in_flight,
            rate_limit_per_min: raw.rate_limit_per_min,
            ordered: raw.ordered.unwrap_or(true),
            pause_after_failures: raw.pause_after_failures.unwrap_or(20).max(1),
            alert_ratio,
            alert_url,
        })
    }

    pub(super) fn consumer(
        &mut self,
        raw: RawConsumer,
        section: &Section,
        providers: &[ProviderConfig],
    ) -> Option<ConsumerConfig> {
        let label = format!("consumer {:?}", raw.name);
        let name = self.output_name(&raw.name, section);
        let wanted = self.provider_list(raw.providers.as_deref(), providers, section, &label);
        Some(ConsumerConfig {
            name: name?,
            providers: wanted?,
        })
    }

    fn output_name(&mut self, name: &str, section: &Section) -> Option<String> {
        match ProviderName::parse(name) {
            Ok(_) => Some(name.to_string()),
            Err(message) => {
                self.error(
                    self.key_position(section, "name"),
                    message.replace("provider name", "name"),
                );
                None
            }
        }
    }

    /// `providers = [...]`: each must be configured. `None` means all.
    #[allow(clippy::option_option)]
    fn provider_list(
        &mut self,
        names: Option<&[String]>,
        providers: &[ProviderConfig],
        section: &Section,
        label: &str,
    ) -> Option<Option<Vec<ProviderName>>> {
        let Some(names) = names else {
            return Some(None);
        };
        let mut wanted = Vec::new();
        for name in names {
            match providers.iter().find(|p| p.name.as_str() == name) {
                Some(provider) => wanted.push(provider.name.clone()),
                None => {
                    self.error(
                        self.key_position(section, "providers"),
                        format!("{label}: provider {name:?} is not configured"),
                    );
                    return None;
                }
            }
        }
        Some(Some(wanted))
    }

    fn duration_key(
        &mut self,
        section: &Section,
        key: &str,
        text: &str,
        label: &str,
    ) -> Option<Duration> {
        match parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.error(
                    self.key_position(section, key),
                    format!("{label}: {key}: {message}"),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(
            parse_duration("36500d"),
            Ok(Duration::from_secs(36_500 * 86_400))
        );
        assert!(parse_duration("100y").is_ok());
        assert!(parse_duration("500000000000y").is_err(), "overflows times");
    }

    #[test]
    fn dedup_window_is_at_least_a_minute() {
        let config = |window: &str| {
            format!(
                "[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\ntoken = \"t0123456789abcdef\"\n\
                 [[provider]]\nname = \"p\"\nverify = \"none\"\n\
                 [store]\ndedup_window = \"{window}\"\n"
            )
        };
        let load =
            |window: &str| super::super::load_str(&config(window), std::path::Path::new("."));
        let errors = load("7s").expect_err("7s is too short");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0]
            .message
            .contains("dedup_window must be at least 1m"));
        assert_eq!(errors[0].position.map(|p| p.0), Some(9));
        let (config, _) = load("1m").expect("1m is enough");
        assert_eq!(config.store.dedup_window, Duration::from_secs(60));
    }

    /// A config whose `[store]` section holds `store`.
    fn load_store(
        store: &str,
    ) -> Result<(crate::config::Config, Vec<String>), Vec<crate::config::ConfigError>> {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\ntoken = \"t0123456789abcdef\"\n\
             [[provider]]\nname = \"p\"\nverify = \"none\"\n[store]\n{store}\n"
        );
        super::super::load_str(&text, std::path::Path::new("."))
    }

    #[test]
    fn compact_ratio_is_zero_or_at_least_one() {
        for wrong in ["0.5", "-1.0", "nan"] {
            let errors = load_store(&format!("compact_ratio = {wrong}")).expect_err(wrong);
            assert!(errors[0].message.contains("compact_ratio"), "{errors:?}");
        }
        let (config, _) =
            load_store("compact_ratio = 0.0\ncompact_min_mb = 10").expect("0 is never");
        assert_eq!(config.store.compact_ratio, 0.0);
        assert_eq!(config.store.compact_min_bytes, 10 * 1024 * 1024);
        let (config, _) = load_store("").expect("the defaults");
        assert_eq!(config.store.compact_ratio, 2.5);
        assert_eq!(config.store.compact_min_bytes, 256 * 1024 * 1024);
    }

    #[test]
    fn commit_delay_is_a_duration_of_at_most_100ms() {
        let (config, _) = load_store("").expect("the default");
        assert_eq!(config.store.commit_delay, Duration::from_micros(500));
        let (config, _) = load_store("commit_delay = \"0s\"").expect("0s: never");
        assert_eq!(config.store.commit_delay, Duration::ZERO);
        let (config, _) = load_store("commit_delay = \"2ms\"").expect("2ms");
        assert_eq!(config.store.commit_delay, Duration::from_millis(2));
        for wrong in ["\"101ms\"", "\"1s\"", "\"soon\""] {
            let errors = load_store(&format!("commit_delay = {wrong}")).expect_err(wrong);
            assert!(errors[0].message.contains("commit_delay"), "{errors:?}");
        }
        let errors = load_store("commit_delay = 500").expect_err("a number without a unit");
        assert_eq!(errors[0].position.map(|p| p.0), Some(8), "{errors:?}");
    }

    #[test]
    fn slow_commit_is_a_duration_and_0s_turns_the_log_off() {
        let (config, _) = load_store("").expect("the default");
        assert_eq!(config.store.slow_commit, Duration::from_millis(100));
        let (config, _) = load_store("slow_commit = \"0s\"").expect("0s: never");
        assert_eq!(config.store.slow_commit, Duration::ZERO);
        let (config, _) = load_store("slow_commit = \"5ms\"").expect("5ms");
        assert_eq!(config.store.slow_commit, Duration::from_millis(5));
        let errors = load_store("slow_commit = \"soon\"").expect_err("not a duration");
        assert!(errors[0].message.contains("slow_commit"), "{errors:?}");
    }
}
