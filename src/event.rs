//! The small types an event is made of: who sent it, its id, its place in the queue, its origin.

use std::fmt;

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

/// The sender's id for an event; with the provider, the deduplication key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(String);

/// Longest event id kept; a longer one (from a header or a JSON field) is replaced by its hash.
pub const MAX_EVENT_ID_LEN: usize = 256;

impl EventId {
    /// An id taken from the request. Empty or overlong ids are refused.
    pub fn new(id: impl Into<String>) -> Option<EventId> {
        let id = id.into();
        (!id.is_empty() && id.len() <= MAX_EVENT_ID_LEN).then_some(EventId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
    fn event_ids_are_bounded() {
        assert!(EventId::new("").is_none());
        assert!(EventId::new("x".repeat(MAX_EVENT_ID_LEN)).is_some());
        assert!(EventId::new("x".repeat(MAX_EVENT_ID_LEN + 1)).is_none());
    }
}
