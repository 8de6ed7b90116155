//! The introspection answers kept in memory, keyed by the token's SHA-256. An active token is kept
//! until its `exp` or for `cache_ttl_s`, whichever comes first (so a revoked token is refused
//! within `cache_ttl_s`); a refused one for `negative_cache_ttl_s`, so a junk token sent again and
//! again costs one call to the authorization server. Active and refused tokens are kept in two
//! maps of at most `cache_size` entries each, so a flood of junk tokens never pushes out the good
//! ones; a full map drops its expired entries, and if it is still full, starts over.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::Grant;
use crate::verify::Rejection;

/// A token's SHA-256.
pub type TokenKey = [u8; 32];

#[derive(Debug)]
pub struct TokenCache {
    active: Mutex<Expiring<Grant>>,
    refused: Mutex<Expiring<()>>,
    /// Longest an active answer is trusted.
    ttl: Duration,
    /// How long a refusal is remembered.
    negative_ttl: Duration,
}

/// What the cache knows of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    Active(Grant),
    Refused,
}

impl Known {
    pub fn into_result(self) -> Result<Grant, Rejection> {
        match self {
            Known::Active(grant) => Ok(grant),
            Known::Refused => Err(Rejection::InvalidToken),
        }
    }
}

impl TokenCache {
    pub fn new(size: usize, ttl: Duration, negative_ttl: Duration) -> TokenCache {
        TokenCache {
            active: Mutex::new(Expiring::new(size)),
            refused: Mutex::new(Expiring::new(size)),
            ttl,
            negative_ttl,
        }
    }

    pub fn get(&self, key: &TokenKey, now: SystemTime) -> Option<Known> {
        if let Some(grant) = lock(&self.active).get(key, now) {
            return Some(Known::Active(grant));
        }
        lock(&self.refused).get(key, now).map(|()| Known::Refused)
    }

    /// Whether the token was found active, its answer's time in the cache over or not (kept
    /// until the map of active ones is full: junk tokens never enter it).
    pub fn was_active(&self, key: &TokenKey) -> bool {
        lock(&self.active).entries.contains_key(key)
    }

    /// An active answer, kept until `exp` or `ttl` from now, whichever comes first.
    pub fn remember_active(&self, key: TokenKey, grant: Grant, exp: SystemTime, now: SystemTime) {
        let until = exp.min(now + self.ttl);
        lock(&self.active).insert(key, grant, until, now);
    }

    pub fn remember_refused(&self, key: TokenKey, now: SystemTime) {
        lock(&self.refused).insert(key, (), now + self.negative_ttl, now);
    }
}

/// A cache of no more than what it may hold is still usable after a panic elsewhere.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A map of entries that expire, bounded in size.
#[derive(Debug)]
struct Expiring<V> {
    entries: HashMap<TokenKey, (SystemTime, V)>,
    size: usize,
}

impl<V: Clone> Expiring<V> {
    fn new(size: usize) -> Expiring<V> {
        Expiring {
            entries: HashMap::new(),
            size: size.max(1),
        }
    }

    fn get(&self, key: &TokenKey, now: SystemTime) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(until, _)| *until > now)
            .map(|(_, value)| value.clone())
    }

    fn insert(&mut self, key: TokenKey, value: V, until: SystemTime, now: SystemTime) {
        if until <= now {
            return;
        }
        if self.entries.len() >= self.size && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (until, _)| *until > now);
            if self.entries.len() >= self.size {
                // Still full of live entries: start over rather than grow without bound.
                self.entries.clear();
            }
        }
        self.entries.insert(key, (until, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            scopes: vec!["events:write".into()],
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn active_answers_last_until_exp_or_the_ttl_whichever_is_first() {
        let now = SystemTime::now();
        let cache = TokenCache::new(10, secs(300), secs(30));
        cache.remember_active([1; 32], grant(), now + secs(3600), now);
        cache.remember_active([2; 32], grant(), now + secs(60), now);
        let known = |key: u8, at: u64| cache.get(&[key; 32], now + secs(at));
        assert_eq!(known(1, 299), Some(Known::Active(grant())));
        assert_eq!(
            known(1, 300),
            None,
            "capped at the ttl although exp is later"
        );
        assert_eq!(known(2, 59), Some(Known::Active(grant())));
        assert_eq!(known(2, 60), None, "exp comes first");
    }

    #[test]
    fn refusals_are_remembered_briefly() {
        let now = SystemTime::now();
        let cache = TokenCache::new(10, secs(300), secs(30));
        cache.remember_refused([1; 32], now);
        assert_eq!(cache.get(&[1; 32], now + secs(29)), Some(Known::Refused));
        assert_eq!(cache.get(&[1; 32], now + secs(30)), None);
        assert_eq!(cache.get(&[2; 32], now), None);
    }

    #[test]
    fn entries_are_bounded_and_junk_never_evicts_active_tokens() {
        let now = SystemTime::now();
        let cache = TokenCache::new(3, secs(300), secs(30));
        cache.remember_active([0; 32], grant(), now + secs(9), now);
        for junk in 1..=100u8 {
            cache.remember_refused([junk; 32], now);
        }
        assert!(lock(&cache.refused).entries.len() <= 3);
        assert_eq!(cache.get(&[0; 32], now), Some(Known::Active(grant())));
        assert_eq!(cache.get(&[100; 32], now), Some(Known::Refused));

        for token in 1..=100u8 {
            cache.remember_active([token; 32], grant(), now + secs(9), now);
        }
        assert!(lock(&cache.active).entries.len() <= 3);
        // Expired entries go first when the map is full.
        let cache = TokenCache::new(2, secs(300), secs(30));
        cache.remember_active([1; 32], grant(), now + secs(1), now);
        cache.remember_active([2; 32], grant(), now + secs(9), now);
        cache.remember_active([3; 32], grant(), now + secs(9), now + secs(2));
        assert_eq!(
            cache.get(&[2; 32], now + secs(2)),
            Some(Known::Active(grant()))
        );
        assert_eq!(
            cache.get(&[3; 32], now + secs(2)),
            Some(Known::Active(grant()))
        );
    }
}
