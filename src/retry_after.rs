//! `Retry-After` (RFC 9110 §10.2.3), as downstreams and vendor APIs send it: delay-seconds or an
//! HTTP date. Used by the forwarder and the poller.

use std::time::{Duration, SystemTime};

/// `Retry-After` as seconds or as an HTTP date, capped at a day.
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate(value)?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(Duration::from_secs(86_400)))
}

fn httpdate(value: &str) -> Option<SystemTime> {
    let format = time::format_description::well_known::Rfc2822;
    let parsed = time::OffsetDateTime::parse(&value.replace("GMT", "+0000"), &format).ok()?;
    let seconds = u64::try_from(parsed.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse("999999999", now), Some(Duration::from_secs(86_400)));
        assert_eq!(parse("soon", now), None);
    }
}
