//! The small types an event is made of: who sent it, its id, its place in the queue, its origin.

use std::fmt;

use sha2::{Digest, Sha256};

/// A provider's name, as in its route `POST /hooks/{name}`: `[A-Za-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderName(String);

impl ProviderName {
    pub fn parse(name: &str) -> Result<ProviderName, String> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(ProviderName(name.to_string()))
        } else {
            Err(format!(
                "provider name {name:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '-' or '_'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The sender's id for an event, in a form that fits an HTTP header: with the provider, what
/// events are told apart by (the admin API's `event_id`, the `webhook-id` downstream).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(String);

/// Longest id kept as sent; a longer one is replaced by [`ENCODED_ID_PREFIX`] and its hash.
pub const MAX_EVENT_ID_LEN: usize = 256;

/// How an id that is not kept as sent begins: `id-sha256:` and the lowercase hex SHA-256 of its
/// raw text. Distinct from the body-hash id (`sha256:`), so the two never collide.
pub const ENCODED_ID_PREFIX: &str = "id-sha256:";

impl EventId {
    /// An id taken from the request. Empty ids are none. An id of 1 to [`MAX_EVENT_ID_LEN`]
    /// visible ASCII characters (`!` to `~`: no space, no control character, nothing outside
    /// ASCII) is kept as sent; any other is replaced by `id-sha256:<hex>` of its raw text, so
    /// that it still fits a header downstream and a sender's retry still maps to the same id.
    pub fn new(id: impl Into<String>) -> Option<EventId> {
        let id = id.into();
        if id.is_empty() {
            None
        } else if is_header_safe(&id) {
            Some(EventId(id))
        } else {
            let hash = Sha256::digest(id.as_bytes());
            Some(EventId(format!("{ENCODED_ID_PREFIX}{}", hex::encode(hash))))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether hookgate made this event id rather than the sender: a body's hash (`sha256:<hex>`,
/// [`crate::event_id::body_hash`]) or an unfit id's (`id-sha256:<hex>`).
pub fn is_generated_id(id: &str) -> bool {
    let hex = id
        .strip_prefix(ENCODED_ID_PREFIX)
        .or_else(|| id.strip_prefix("sha256:"));
    hex.is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Whether an id is kept as sent: at most [`MAX_EVENT_ID_LEN`] visible ASCII characters.
fn is_header_safe(id: &str) -> bool {
    id.len() <= MAX_EVENT_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the store deduplicates an event by, within its provider: the event id alone when it can
/// be trusted (a signature covers it, it is the body's own hash, or a sync API gave it), else the
/// id bound to the body's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupId(String);

impl DedupId {
    /// The id alone: a copy with another body is still a duplicate.
    pub fn of(id: &EventId) -> DedupId {
        DedupId(id.0.clone())
    }

    /// `{id} sha256:{hex of the body}` (a space never occurs in an id, so this never equals an
    /// id alone). A sender's retry carries the same body and is still a duplicate; a captured
    /// request replayed under another id claims that id only together with its own body, and
    /// cannot make the genuine event of that id a duplicate.
    pub fn bound_to_body(id: &EventId, body: &[u8]) -> DedupId {
        DedupId(format!("{id} sha256:{}", hex::encode(Sha256::digest(body))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An event's id, shown to operators and consumers, and what the store deduplicates it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    pub id: EventId,
    pub dedup: DedupId,
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.id.fmt(f)
    }
}

/// An event's position in the store: assigned by the committer, strictly increasing, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u64);

impl Seq {
    /// The key form: big-endian, so sled's byte order is seq order.
    pub fn to_key(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    pub fn from_key(key: &[u8]) -> Option<Seq> {
        Some(Seq(u64::from_be_bytes(key.try_into().ok()?)))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How an event reached hookgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Webhook,
    Poll,
    Test,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Poll => "poll",
            Source::Test => "test",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names() {
        assert!(ProviderName::parse("github").is_ok());
        assert!(ProviderName::parse("acme_2-x").is_ok());
        assert!(ProviderName::parse("").is_err());
        assert!(ProviderName::parse("a/b").is_err());
        assert!(ProviderName::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn seq_keys_sort_like_numbers() {
        let (a, b) = (Seq(255).to_key(), Seq(256).to_key());
        assert!(a < b);
        assert_eq!(Seq::from_key(&b), Some(Seq(256)));
        assert_eq!(Seq::from_key(b"short"), None);
    }

    #[test]
    fn event_ids_fit_a_header() {
        assert!(EventId::new("").is_none());
        let longest = "x".repeat(MAX_EVENT_ID_LEN);
        assert_eq!(EventId::new(longest.clone()).unwrap().as_str(), longest);
        assert_eq!(EventId::new("evt_1:A~z").unwrap().as_str(), "evt_1:A~z");
        // Not kept as sent: a control character, a space, non-ASCII, overlong.
        for raw in [
            "x\ny",
            "a b",
            "x\u{7f}",
            "événement",
            &"x".repeat(MAX_EVENT_ID_LEN + 1),
        ] {
            let id = EventId::new(raw).unwrap();
            let expected = format!("id-sha256:{}", hex::encode(Sha256::digest(raw.as_bytes())));
            assert_eq!(id.as_str(), expected, "{raw:?}");
            assert_eq!(EventId::new(raw), Some(id), "deterministic");
            assert!(reqwest::header::HeaderValue::from_str(&format!("p:{expected}")).is_ok());
        }
    }

    #[test]
    fn generated_ids_are_told_apart() {
        let hashed = crate::event_id::body_hash(b"{}");
        assert!(is_generated_id(hashed.as_str()));
        let unfit = EventId::new("an id with spaces").unwrap();
        assert!(is_generated_id(unfit.as_str()));
        for sent in ["42", "evt_1", "sha256:abc", "id-sha256:", "sha256:xyz"] {
            assert!(!is_generated_id(sent), "{sent}");
        }
    }

    #[test]
    fn dedup_ids_bound_to_the_body() {
        let id = EventId::new("d-1").unwrap();
        assert_eq!(DedupId::of(&id).as_str(), "d-1");
        let bound = DedupId::bound_to_body(&id, b"");
        assert_eq!(
            bound.as_str(),
            "d-1 sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(bound, DedupId::bound_to_body(&id, b""), "a retry");
        assert_ne!(bound, DedupId::bound_to_body(&id, b"other"), "a replay");
    }
}
