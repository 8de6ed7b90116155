//! What several schemes read from a request the same way: timestamps within a tolerance, fields
//! of a JSON body (event id, topic), and the secret a scheme signs with.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

use crate::event::EventId;
use crate::secret::Secret;

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
/// that is not JSON has no fields. Fields are read from their raw text, so a number keeps the
/// digits it was sent with (`100000000000000000000001` and `100000000000000000000002` stay two
/// ids; `1.0` and `1e0` too). Duplicate keys: the last wins, as everywhere in hookgate.
pub(crate) struct JsonBody<'a>(Option<&'a RawValue>);

impl<'a> JsonBody<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> JsonBody<'a> {
        JsonBody::try_parse(body).unwrap_or(JsonBody(None))
    }

    /// Whether the body was JSON.
    pub(crate) fn is_json(&self) -> bool {
        self.0.is_some()
    }

    /// As [`JsonBody::parse`], telling why a body is not JSON.
    pub(crate) fn try_parse(body: &'a [u8]) -> Result<JsonBody<'a>, serde_json::Error> {
        serde_json::from_slice(body).map(|document| JsonBody(Some(document)))
    }

    /// The text at the first of `pointers` that holds a string (unescaped) or a number (as
    /// written).
    pub(crate) fn text(&self, pointers: &[&str]) -> Option<String> {
        let document = self.0?;
        pointers
            .iter()
            .find_map(|pointer| scalar_text(lookup(document, pointer)?))
    }

    /// [`JsonBody::text`] as an event id (see [`EventId::new`]).
    pub(crate) fn event_id(&self, pointers: &[&str]) -> Option<EventId> {
        self.text(pointers).and_then(EventId::new)
    }
}

/// The value at a JSON pointer (RFC 6901), walked through the raw text: each level is read as a
/// map or a list of raw values, never as numbers.
fn lookup<'a>(document: &'a RawValue, pointer: &str) -> Option<&'a RawValue> {
    if pointer.is_empty() {
        return Some(document);
    }
    let mut at = document;
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        at = match at.get().as_bytes().first()? {
            b'{' => {
                let mut members: HashMap<String, &RawValue> =
                    serde_json::from_str(at.get()).ok()?;
                members.remove(&token)?
            }
            b'[' => {
                let elements: Vec<&RawValue> = serde_json::from_str(at.get()).ok()?;
                *elements.get(array_index(&token)?)?
            }
            _ => return None,
        };
    }
    Some(at)
}

/// An array index token: digits, without leading zeros (as `serde_json::Value::pointer`).
fn array_index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = token.len() > 1 && token.starts_with('0');
    if digits && !leading_zero {
        token.parse().ok()
    } else {
        None
    }
}

/// A string's unescaped text, or a number's text as written; nothing for other values.
fn scalar_text(value: &RawValue) -> Option<String> {
    let raw = value.get();
    match raw.as_bytes().first()? {
        b'"' => serde_json::from_str(raw).ok(),
        b'-' | b'0'..=b'9' => Some(raw.to_string()),
        _ => None,
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
    fn numbers_keep_their_text() {
        let text = |body: &str| JsonBody::parse(body.as_bytes()).text(&["/id"]);
        for number in [
            "100000000000000000000001",
            "100000000000000000000002",
            "1.0",
            "1e0",
            "-0",
            "18446744073709551617",
        ] {
            assert_eq!(
                text(&format!(r#"{{"id": {number} }}"#)).as_deref(),
                Some(number)
            );
        }
        assert_eq!(text(r#"{"id":"a\u0041\n"}"#).as_deref(), Some("aA\n"));
        assert_eq!(text(r#"{"id":true}"#), None);
    }

    #[test]
    fn pointers_walk_objects_and_arrays() {
        let body = JsonBody::parse(br#" {"a/b":{"~k":[10, {"id": 2.50}]}, "d":1, "d":2} "#);
        assert_eq!(body.text(&["/a~1b/~0k/1/id"]).as_deref(), Some("2.50"));
        assert_eq!(body.text(&["/a~1b/~0k/0"]).as_deref(), Some("10"));
        assert_eq!(
            body.text(&["/d"]).as_deref(),
            Some("2"),
            "the last duplicate"
        );
        for missing in [
            "/a~1b/~0k/01",
            "/a~1b/~0k/2",
            "/a~1b/~0k/-",
            "/a~1b/~0k/+1",
            "d",
        ] {
            assert_eq!(body.text(&[missing]), None, "{missing}");
        }
        assert_eq!(JsonBody::parse(b"7").text(&[""]).as_deref(), Some("7"));
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
