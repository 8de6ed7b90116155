//! The last hour of webhook answers, minute by minute, for the console's overview: per provider
//! the requests, accepted, duplicates and 401s, and the ack latencies of all providers. A ring of
//! [`MINUTES`] slots per series; a slot is reused (zeroed) when its minute comes round again, so
//! memory stays fixed and nothing has to sweep. Prometheus keeps the totals; this keeps only what
//! the console draws.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// How many minutes are kept.
pub const MINUTES: usize = 60;

/// Upper bounds, in seconds, of the ack-latency buckets: 0.1 ms doubling up to about 13 s; one
/// more bucket counts what is slower.
const LATENCY_BOUNDS: [f64; 18] = {
    let mut bounds = [0.000_1; 18];
    let mut i = 1;
    while i < bounds.len() {
        bounds[i] = bounds[i - 1] * 2.0;
        i += 1;
    }
    bounds
};

/// One minute of one provider's answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Every answer, whatever its status.
    pub requests: u64,
    /// 200 `accepted`: stored for the first time.
    pub accepted: u64,
    /// 200 `duplicate`.
    pub duplicates: u64,
    /// 401: verification failed.
    pub unauthorized: u64,
}

/// How one webhook was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    Duplicate,
    /// Any other status (handshakes' 200 included).
    Status(u16),
}

/// A value per minute, in a ring indexed by the minute.
#[derive(Debug, Clone)]
struct Ring<T> {
    slots: Vec<(u64, T)>,
}

impl<T: Default + Clone> Ring<T> {
    fn new() -> Ring<T> {
        Ring {
            slots: vec![(u64::MAX, T::default()); MINUTES],
        }
    }

    /// The slot of `minute`, zeroed first if it last held an older minute.
    fn at(&mut self, minute: u64) -> &mut T {
        let slot = &mut self.slots[(minute % MINUTES as u64) as usize];
        if slot.0 != minute {
            *slot = (minute, T::default());
        }
        &mut slot.1
    }

    /// The [`MINUTES`] minutes ending with `minute`, oldest first (zero where nothing was kept).
    fn last_hour(&self, minute: u64) -> Vec<T> {
        (0..MINUTES as u64)
            .rev()
            .map(|back| {
                let wanted = minute.wrapping_sub(back);
                let slot = &self.slots[(wanted % MINUTES as u64) as usize];
                if slot.0 == wanted {
                    slot.1.clone()
                } else {
                    T::default()
                }
            })
            .collect()
    }
}

#[derive(Debug)]
struct Inner {
    providers: BTreeMap<String, Ring<Minute>>,
    latency: Ring<[u64; LATENCY_BOUNDS.len() + 1]>,
}

/// The last hour, shared by the public listener (which records) and the console (which reads).
#[derive(Debug)]
pub struct Recent {
    inner: Mutex<Inner>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            inner: Mutex::new(Inner {
                providers: BTreeMap::new(),
                latency: Ring::new(),
            }),
        }
    }
}

/// The current minute since the Unix epoch.
pub fn minute_now() -> u64 {
    crate::store::now_ms() / 60_000
}

impl Recent {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut inner)
    }

    /// Counts one answer of `provider` (a configured name, or the shared unknown label, so the
    /// set of providers stays bounded) in `minute`.
    pub fn record(&self, provider: &str, answer: Answer, minute: u64) {
        self.with(|inner| {
            if !inner.providers.contains_key(provider) {
                inner.providers.insert(provider.to_string(), Ring::new());
            }
            let Some(ring) = inner.providers.get_mut(provider) else {
                return;
            };
            let counts = ring.at(minute);
            counts.requests += 1;
            match answer {
                Answer::Accepted => counts.accepted += 1,
                Answer::Duplicate => counts.duplicates += 1,
                Answer::Status(401) => counts.unauthorized += 1,
                Answer::Status(_) => {}
            }
        });
    }

    /// Counts one ack latency in `minute`.
    pub fn ack(&self, seconds: f64, minute: u64) {
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.with(|inner| inner.latency.at(minute)[bucket] += 1);
    }

    /// Each provider seen in the last hour, with its [`MINUTES`] minutes ending with `minute`,
    /// oldest first.
    pub fn providers(&self, minute: u64) -> Vec<(String, Vec<Minute>)> {
        self.with(|inner| {
            inner
                .providers
                .iter()
                .map(|(name, ring)| (name.clone(), ring.last_hour(minute)))
                .filter(|(_, minutes)| minutes.iter().any(|m| m.requests > 0))
                .collect()
        })
    }

    /// The `q` quantile (0 to 1) of the ack latencies of the hour ending with `minute`, in
    /// seconds, as the upper bound of the bucket it falls in (so "at most"); `None` without acks
    /// or when it falls past the last bound.
    pub fn latency_quantile(&self, q: f64, minute: u64) -> Option<f64> {
        let mut buckets = [0u64; LATENCY_BOUNDS.len() + 1];
        self.with(|inner| {
            for counts in inner.latency.last_hour(minute) {
                for (sum, count) in buckets.iter_mut().zip(counts) {
                    *sum += count;
                }
            }
        });
        quantile(&buckets, q)
    }
}

/// The upper bound of the bucket that holds the `q` quantile of `buckets`' counts.
fn quantile(buckets: &[u64; LATENCY_BOUNDS.len() + 1], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return LATENCY_BOUNDS.get(i).copied();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_answer_in_its_minute() {
        let recent = Recent::default();
        recent.record("github", Answer::Accepted, 1000);
        recent.record("github", Answer::Duplicate, 1000);
        recent.record("github", Answer::Status(401), 1001);
        recent.record("github", Answer::Status(413), 1001);
        let providers = recent.providers(1001);
        assert_eq!(providers.len(), 1);
        let (name, minutes) = &providers[0];
        assert_eq!(name, "github");
        assert_eq!(minutes.len(), MINUTES);
        let expected_before = Minute {
            requests: 2,
            accepted: 1,
            duplicates: 1,
            unauthorized: 0,
        };
        let expected_last = Minute {
            requests: 2,
            accepted: 0,
            duplicates: 0,
            unauthorized: 1,
        };
        assert_eq!(minutes[MINUTES - 2], expected_before);
        assert_eq!(minutes[MINUTES - 1], expected_last);
    }

    #[test]
    fn a_minute_older_than_an_hour_is_forgotten() {
        let recent = Recent::default();
        recent.record("p", Answer::Accepted, 5);
        // The same slot, an hour later: the old count must not leak into the new minute.
        recent.record("p", Answer::Duplicate, 5 + MINUTES as u64);
        let minutes = &recent.providers(5 + MINUTES as u64)[0].1;
        assert_eq!(minutes.iter().map(|m| m.accepted).sum::<u64>(), 0);
        assert_eq!(minutes[MINUTES - 1].duplicates, 1);
        // And a provider with nothing in the hour is not shown.
        assert!(recent.providers(5 + 2 * MINUTES as u64).is_empty());
    }

    #[test]
    fn latency_quantiles_are_bucket_upper_bounds() {
        let recent = Recent::default();
        assert_eq!(recent.latency_quantile(0.5, 10), None);
        for _ in 0..98 {
            recent.ack(0.000_05, 10); // under 0.1 ms
        }
        recent.ack(0.003, 10); // in the bucket (1.6 ms, 3.2 ms]
        recent.ack(0.003, 10);
        assert_eq!(recent.latency_quantile(0.5, 10), Some(0.000_1));
        let p99 = recent.latency_quantile(0.99, 10).unwrap();
        assert!((p99 - 0.0032).abs() < 1e-9, "{p99}");
        // Past the hour, nothing.
        assert_eq!(recent.latency_quantile(0.5, 10 + MINUTES as u64), None);
    }
}
