//! The id of a request to `POST /hooks/{provider}`: the sender's `X-Request-Id` when it is sane
//! (1 to 128 visible ASCII characters), else a random one. It is echoed in the answer's
//! `X-Request-Id` and logged with the ingest, so a sender's support and an operator can name the
//! same request.

use std::fmt;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The longest id taken from a sender.
const MAX_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The request's own `X-Request-Id` if sane, else 16 random hex digits.
    pub fn of(headers: &HeaderMap) -> RequestId {
        headers
            .get(X_REQUEST_ID)
            .and_then(|value| RequestId::sane(value.as_bytes()))
            .unwrap_or_else(|| RequestId(format!("{:016x}", rand::random::<u64>())))
    }

    fn sane(bytes: &[u8]) -> Option<RequestId> {
        let visible =
            (1..=MAX_LEN).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic);
        visible.then(|| RequestId(String::from_utf8_lossy(bytes).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a header value (always valid: visible ASCII).
    pub fn header_value(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.0).ok()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(value: &[u8]) -> String {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
        RequestId::of(&headers).to_string()
    }

    fn generated(id: &str) -> bool {
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
    }

    #[test]
    fn a_sane_sender_id_is_kept() {
        assert_eq!(id_of(b"req-42/abc:DEF"), "req-42/abc:DEF");
        let longest = "a".repeat(MAX_LEN);
        assert_eq!(id_of(longest.as_bytes()), longest);
    }

    #[test]
    fn other_ids_are_replaced_by_random_ones() {
        for value in [
            "a".repeat(MAX_LEN + 1).as_bytes(),
            b"with space",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
            b"",
        ] {
            assert!(generated(&id_of(value)), "{value:?}");
        }
        let (a, b) = (
            RequestId::of(&HeaderMap::new()),
            RequestId::of(&HeaderMap::new()),
        );
        assert!(generated(&a.to_string()));
        assert_ne!(a, b);
        assert!(a.header_value().is_some());
    }
}
