//! Which id an event is deduplicated by: a configured rule (`header:NAME` or `json:/pointer`),
//! else the scheme's own id, else `sha256:` and the hex SHA-256 of the body.

use sha2::{Digest, Sha256};

use crate::event::EventId;
use crate::verify::fields::JsonBody;
use crate::verify::{Headers, Verified};

/// A provider's `event_id = "..."` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventIdRule {
    Header(String),
    JsonPointer(String),
}

impl EventIdRule {
    pub fn parse(text: &str) -> Result<EventIdRule, String> {
        if let Some(name) = text.strip_prefix("header:").filter(|name| !name.is_empty()) {
            Ok(EventIdRule::Header(name.to_string()))
        } else if let Some(pointer) = text.strip_prefix("json:").filter(|p| p.starts_with('/')) {
            Ok(EventIdRule::JsonPointer(pointer.to_string()))
        } else {
            Err(format!(
                "event_id {text:?} must be \"header:NAME\" or \"json:/pointer\" (a JSON pointer starts with '/')"
            ))
        }
    }

    /// The id this rule finds in the request, if any.
    fn apply(&self, headers: &dyn Headers, body: &[u8]) -> Option<EventId> {
        match self {
            EventIdRule::Header(name) => headers.get(name).and_then(EventId::new),
            EventIdRule::JsonPointer(pointer) => json_id(body, pointer),
        }
    }
}

/// The event id of a verified request.
pub fn event_id(rule: Option<&EventIdRule>, headers: &dyn Headers, verified: &Verified) -> EventId {
    rule.and_then(|rule| rule.apply(headers, verified.body()))
        .or_else(|| verified.scheme_event_id().cloned())
        .unwrap_or_else(|| body_hash(verified.body()))
}

/// `sha256:<hex>` of the body: the id of last resort, equal for identical bodies.
pub fn body_hash(body: &[u8]) -> EventId {
    let text = format!("sha256:{}", hex::encode(Sha256::digest(body)));
    EventId::new(text).expect("a hash id is never empty")
}

/// A string or number at `pointer` in a JSON body; numbers as their decimal text.
fn json_id(body: &[u8], pointer: &str) -> Option<EventId> {
    JsonBody::parse(body).event_id(&[pointer])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rules() {
        assert_eq!(
            EventIdRule::parse("header:X-Id"),
            Ok(EventIdRule::Header("X-Id".into()))
        );
        assert_eq!(
            EventIdRule::parse("json:/data/id"),
            Ok(EventIdRule::JsonPointer("/data/id".into()))
        );
        assert!(EventIdRule::parse("json:id").is_err());
        assert!(EventIdRule::parse("header:").is_err());
        assert!(EventIdRule::parse("id").is_err());
    }

    #[test]
    fn json_ids() {
        assert_eq!(json_id(br#"{"id":"evt_1"}"#, "/id"), EventId::new("evt_1"));
        assert_eq!(json_id(br#"{"a":{"id":42}}"#, "/a/id"), EventId::new("42"));
        assert_eq!(json_id(br#"{"id":{"x":1}}"#, "/id"), None);
        assert_eq!(json_id(br#"{"id":""}"#, "/id"), None);
        assert_eq!(json_id(b"not json", "/id"), None);
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(
            body_hash(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
