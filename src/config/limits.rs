//! `[limits]` and `[server] trusted_proxies`: checked here, enforced by `http/limits.rs`.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::load::{Loader, Section};
use super::raw::RawLimits;
use super::{LimitsConfig, Rate};

/// An address or a CIDR network (`10.0.0.0/8`, `::1`).
pub fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

impl Loader<'_> {
    pub(super) fn limits(&mut self, raw: RawLimits, section: Option<&Section>) -> LimitsConfig {
        let at = |loader: &Self, key| section.and_then(|s| loader.key_position(s, key));
        let positive = [
            ("max_connections", u64::from(raw.max_connections)),
            (
                "max_connections_per_address",
                u64::from(raw.max_connections_per_address),
            ),
            ("max_body_bytes_in_flight", raw.max_body_bytes_in_flight),
        ];
        for (key, value) in positive {
            if value == 0 {
                let position = at(self, key);
                self.error(position, format!("[limits] {key} must be at least 1"));
            }
        }
        for (key, burst) in [
            ("per_address_burst", raw.per_address_burst),
            ("per_provider_burst", raw.per_provider_burst),
        ] {
            if burst == Some(0) {
                let position = at(self, key);
                self.error(position, format!("[limits] {key} must be at least 1"));
            }
        }
        let second = Duration::from_secs(1);
        LimitsConfig {
            per_address: Rate::new(raw.per_address_rps, second, raw.per_address_burst),
            per_provider: Rate::new(raw.per_provider_rps, second, raw.per_provider_burst),
            // Guesses at a secret: a minute's worth at once, no more.
            oauth_token_per_address: Rate::new(
                raw.oauth_token_per_address_per_min,
                Duration::from_secs(60),
                Some(raw.oauth_token_per_address_per_min),
            ),
            max_connections: raw.max_connections as usize,
            max_connections_per_address: raw.max_connections_per_address as usize,
            max_body_bytes_in_flight: usize::try_from(raw.max_body_bytes_in_flight)
                .unwrap_or(usize::MAX),
            rejection_logs_per_s: raw.rejection_logs_per_s,
        }
    }

    /// `[server] trusted_proxies`: each an address or a CIDR.
    pub(super) fn trusted_proxies(
        &mut self,
        list: &[String],
        at: Option<(usize, usize)>,
    ) -> Vec<IpNet> {
        list.iter()
            .filter_map(|text| {
                let network = parse_network(text);
                if network.is_none() {
                    self.error(
                        at,
                        format!("trusted_proxies entry {text:?} is not an address or CIDR"),
                    );
                }
                network
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        assert_eq!(parse_network("10.0.0.0/8"), "10.0.0.0/8".parse().ok());
        assert_eq!(parse_network("::1"), "::1/128".parse().ok());
        assert_eq!(parse_network("nope"), None);
    }

    #[test]
    fn rates() {
        let rate = Rate::new(1000, Duration::from_secs(1), None).unwrap();
        assert_eq!(rate.interval, Duration::from_millis(1));
        assert_eq!(rate.burst.get(), 2000);
        assert_eq!(Rate::new(0, Duration::from_secs(1), Some(5)), None);
        let rate = Rate::new(60, Duration::from_secs(60), Some(3)).unwrap();
        assert_eq!(
            (rate.interval, rate.burst.get()),
            (Duration::from_secs(1), 3)
        );
    }
}
