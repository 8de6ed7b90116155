//! When to try again: the destination's retry schedule with jitter, at least what the
//! destination asked for with `Retry-After` (read by [`crate::retry_after`]), and a slow probe
//! once it has failed too often.

use std::time::Duration;

/// The wait before attempt `failures + 1`, or `None` when the schedule is spent (the event is
/// dead). `jitter` in [0, 1) spreads retries by up to ±20 %.
pub fn next_delay(
    delays: &[Duration],
    failures: usize,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let base = *delays.get(failures.checked_sub(1)?)?;
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    let jittered = base.mul_f64(factor);
    Some(retry_after.map_or(jittered, |after| after.max(jittered)))
}

/// The probe interval of a paused destination: the schedule's last delay.
pub fn probe_interval(delays: &[Duration]) -> Duration {
    delays.last().copied().unwrap_or(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(list: &[u64]) -> Vec<Duration> {
        list.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn schedule_with_jitter_and_end() {
        let delays = secs(&[5, 30]);
        assert_eq!(
            next_delay(&delays, 0, None, 0.5),
            None,
            "no failure, no wait"
        );
        assert_eq!(
            next_delay(&delays, 1, None, 0.5),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            next_delay(&delays, 1, None, 0.0),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            next_delay(&delays, 2, None, 1.0),
            Some(Duration::from_secs(36))
        );
        assert_eq!(next_delay(&delays, 3, None, 0.5), None, "schedule spent");
    }

    #[test]
    fn retry_after_wins_when_longer() {
        let delays = secs(&[5]);
        assert_eq!(
            next_delay(&delays, 1, Some(Duration::from_secs(60)), 0.5),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            next_delay(&delays, 1, Some(Duration::from_secs(1)), 0.5),
            Some(Duration::from_secs(5))
        );
    }
}
