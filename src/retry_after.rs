//! `Retry-After` (RFC 9110 §10.2.3), as downstreams and vendor APIs send it: delay-seconds or an
//! HTTP date, in any of the three forms RFC 9110 §5.6.7 has a recipient accept (IMF-fixdate,
//! RFC 850's and asctime's), read by `httpdate`. Used by the forwarder and the poller.

use std::time::{Duration, SystemTime};

/// `Retry-After` as seconds or as an HTTP date, capped at a day.
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    let wait = if digits {
        // Too many digits for a u64 is still a long wait (it was no wait at all).
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    };
    Some(wait.min(Duration::from_secs(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let two_minutes = Some(Duration::from_secs(120));
        assert_eq!(parse("120", now), two_minutes);
        assert_eq!(parse(" 120 ", now), two_minutes);
        assert_eq!(parse("Wed, 21 Oct 2015 07:30:00 GMT", now), two_minutes);
        assert_eq!(parse("Wednesday, 21-Oct-15 07:30:00 GMT", now), two_minutes);
        assert_eq!(parse("Wed Oct 21 07:30:00 2015", now), two_minutes);
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse("999999999", now), Some(Duration::from_secs(86_400)));
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(parse("99999999999999999999", now), day);
        assert_eq!(parse("+5", now), None);
        assert_eq!(parse("soon", now), None);
        assert_eq!(parse("-5", now), None);
        assert_eq!(parse("Wed, 21 Oct 2015 07:30:00 +0000", now), None);
    }
}
