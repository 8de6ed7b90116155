//! What several schemes read from a request the same way: timestamps within a tolerance, fields
//! of a JSON body (event id, topic), and the secret a scheme signs with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Secret;
use crate::event::EventId;

/// Whether a Unix timestamp lies within `tolerance` of `now`, in the past or the future.
pub(crate) fn fresh(now: SystemTime, seconds: u64, tolerance: Duration) -> bool {
    // A timestamp past what SystemTime holds is not fresh (and must not panic: it is the
    // sender's input, found by fuzzing).
    let Some(sent) = UNIX_EPOCH.checked_add(Duration::from_secs(seconds)) else {
        return false;
    };
    let skew = match now.duration_since(sent) {
        Ok(age) => age,
        Err(ahead) => ahead.duration(),
    };
    skew <= tolerance
}

/// Whole seconds since the Unix epoch (0 before it).
pub(crate) fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The secret `sign` uses: the first configured one.
pub(crate) fn first_secret(secrets: &[Secret]) -> Result<&Secret, String> {
    secrets
        .first()
        .ok_or_else(|| "no secret is configured to sign with".to_string())
}

/// A body read as JSON once, for the fields a scheme takes from it (event id, topic). A body
/// that is not JSON has no fields. Duplicate keys: the last wins, as everywhere in hookgate.
pub(crate) struct JsonBody(Option<serde_json::Value>);

impl JsonBody {
    pub(crate) fn parse(body: &[u8]) -> JsonBody {
        JsonBody(serde_json::from_slice(body).ok())
    }

    /// The string at the first of `pointers` that holds a string or a number (numbers as their
    /// decimal text).
    pub(crate) fn text(&self, pointers: &[&str]) -> Option<String> {
        let document = self.0.as_ref()?;
        pointers
            .iter()
            .find_map(|pointer| match document.pointer(pointer)? {
                serde_json::Value::String(text) => Some(text.clone()),
                serde_json::Value::Number(number) => Some(number.to_string()),
                _ => None,
            })
    }

    /// [`JsonBody::text`] as an event id (see [`EventId::new`]).
    pub(crate) fn event_id(&self, pointers: &[&str]) -> Option<EventId> {
        self.text(pointers).and_then(EventId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields() {
        let body = JsonBody::parse(br#"{"id":7,"b":{"c":"x"},"n":null,"e":""}"#);
        assert_eq!(body.text(&["/missing", "/id"]).as_deref(), Some("7"));
        assert_eq!(body.text(&["/b/c"]).as_deref(), Some("x"));
        assert_eq!(body.text(&["/n", "/b"]), None);
        assert_eq!(body.event_id(&["/e"]), None);
        assert_eq!(JsonBody::parse(b"id=1").text(&["/id"]), None);
    }

    #[test]
    fn freshness_both_ways() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let tolerance = Duration::from_secs(300);
        assert!(fresh(now, 700, tolerance) && fresh(now, 1300, tolerance));
        assert!(!fresh(now, 699, tolerance) && !fresh(now, 1301, tolerance));
        assert!(!fresh(now, u64::MAX, tolerance), "no overflow panic");
    }
}
