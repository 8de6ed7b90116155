//! The public listener's abuse limits (`[limits]`): token buckets per client address, per
//! provider and for `/oauth/token` (429 + `Retry-After`). The budget for the body bytes all
//! requests hold at once (503 + `Retry-After`) is `body_budget.rs`; connection caps are in
//! `connections.rs`.
//!
//! The per-address bucket is taken before anything else is read, so a flood costs a lookup per
//! request. The per-provider bucket counts verified webhooks only: unsigned requests must not
//! spend a provider's allowance, or an attacker could shut a vendor out.

use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{LimitsConfig, Rate};

pub struct Limits {
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_provider: Option<DefaultKeyedRateLimiter<String>>,
    oauth_token: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

/// Over a rate: try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u32);

impl Limits {
    pub fn new(config: &LimitsConfig) -> Limits {
        Limits {
            per_address: config.per_address.map(keyed),
            per_provider: config.per_provider.map(keyed),
            oauth_token: config.oauth_token_per_address.map(keyed),
        }
    }

    /// One request from `client` (any public route but the health checks).
    pub fn address(&self, client: IpAddr) -> Result<(), RetryAfter> {
        check(self.per_address.as_ref(), &bucket_of(client))
    }

    /// One verified webhook into `provider`.
    pub fn provider(&self, provider: &str) -> Result<(), RetryAfter> {
        check(self.per_provider.as_ref(), &provider.to_string())
    }

    /// One `POST /oauth/token` from `client`.
    pub fn oauth_token(&self, client: IpAddr) -> Result<(), RetryAfter> {
        check(self.oauth_token.as_ref(), &bucket_of(client))
    }

    /// Limits for `config`, with their housekeeping task ([`Limits::forget_idle`]) started.
    pub fn start(config: &LimitsConfig) -> Arc<Limits> {
        let limits = Arc::new(Limits::new(config));
        actix_web::rt::spawn(Limits::forget_idle(Arc::downgrade(&limits)));
        limits
    }

    /// Forgets the buckets that are full again, so that the memory they take follows the
    /// addresses seen lately, not every address ever seen. Runs until `limits` is dropped.
    async fn forget_idle(limits: Weak<Limits>) {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let Some(limits) = limits.upgrade() else {
                return;
            };
            for limiter in [&limits.per_address, &limits.oauth_token]
                .into_iter()
                .flatten()
            {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
            if let Some(limiter) = &limits.per_provider {
                limiter.retain_recent();
            }
        }
    }
}

fn keyed<K: std::hash::Hash + Eq + Clone>(rate: Rate) -> DefaultKeyedRateLimiter<K> {
    let quota = Quota::with_period(rate.interval.max(Duration::from_nanos(1)))
        .expect("a non-zero period")
        .allow_burst(rate.burst);
    RateLimiter::keyed(quota)
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), RetryAfter> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        RetryAfter(u32::try_from(seconds).unwrap_or(u32::MAX).max(1))
    })
}

/// The bucket an address draws from: an IPv4 address, or an IPv6 /64 (one host usually holds
/// a whole /64, and could otherwise rotate through it).
pub fn bucket_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_address: Option<Rate>) -> Limits {
        Limits::new(&LimitsConfig {
            per_address,
            per_provider: None,
            oauth_token_per_address: None,
            max_connections: 10,
            max_connections_per_address: 10,
            max_body_bytes_in_flight: 100,
            rejection_logs_per_s: 1,
        })
    }

    #[test]
    fn an_address_gets_its_burst_then_waits() {
        let rate = Rate::new(1, Duration::from_secs(60), Some(3));
        let limits = limits(rate);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limits.address(a), Ok(()));
        }
        let Err(RetryAfter(wait)) = limits.address(a) else {
            panic!("the fourth request is over the burst");
        };
        assert!((50..=60).contains(&wait), "{wait}");
        assert_eq!(
            limits.address(b),
            Ok(()),
            "another address has its own bucket"
        );
        assert_eq!(
            limits.provider("any"),
            Ok(()),
            "no provider limit configured"
        );
    }

    #[test]
    fn ipv6_hosts_share_their_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(bucket_of(one), bucket_of(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(bucket_of(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
