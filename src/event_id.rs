//! Which id an event is known and deduplicated by: a configured rule (`header:NAME` or
//! `json:/pointer`), else the scheme's own id, else `sha256:` and the hex SHA-256 of the body.
//!
//! An id no signature covers (a header outside the signature, such as `X-GitHub-Delivery`, or
//! anything under `verify = "none"`) is deduplicated together with the body's hash: anyone who
//! captured one signed request could otherwise replay it under the id of a future genuine
//! event, which would then be answered `duplicate` and dropped.

use sha2::{Digest, Sha256};

use crate::event::{DedupId, EventId, EventKey};
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

    /// The id this rule finds in the request, if any, and whether the check vouches for it.
    fn apply(&self, headers: &dyn Headers, verified: &Verified) -> Option<(EventId, bool)> {
        match self {
            EventIdRule::Header(name) => {
                let id = headers.get(name).and_then(EventId::new)?;
                let signed = verified.vouches_for_header_id(&id);
                Some((id, signed))
            }
            EventIdRule::JsonPointer(pointer) => {
                let id = json_id(verified.body(), pointer)?;
                Some((id, verified.vouches_for_body()))
            }
        }
    }
}

/// The event id of a verified request, and what it is deduplicated by.
pub fn event_id(
    rule: Option<&EventIdRule>,
    headers: &dyn Headers,
    verified: &Verified,
) -> EventKey {
    let found = rule
        .and_then(|rule| rule.apply(headers, verified))
        .or_else(|| {
            let (id, signed) = verified.scheme_event_id()?;
            Some((id.clone(), signed))
        });
    let Some((id, signed)) = found else {
        // The body's own hash: equal ids mean equal bodies.
        let id = body_hash(verified.body());
        let dedup = DedupId::of(&id);
        return EventKey { id, dedup };
    };
    let dedup = if signed {
        DedupId::of(&id)
    } else {
        DedupId::bound_to_body(&id, verified.body())
    };
    EventKey { id, dedup }
}

/// `sha256:<hex>` of the body: the id of last resort, equal for identical bodies.
pub fn body_hash(body: &[u8]) -> EventId {
    let text = format!("sha256:{}", hex::encode(Sha256::digest(body)));
    EventId::new(text).expect("a hash id is never empty")
}

/// A string or number at `pointer` in a JSON body; numbers as written.
fn json_id(body: &[u8], pointer: &str) -> Option<EventId> {
    JsonBody::parse(body).event_id(&[pointer])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::verify::{self, SignInput, Unverified, Verifier};
    use std::time::SystemTime;

    struct OwnedHeaders(Vec<(String, String)>);

    impl Headers for OwnedHeaders {
        fn get(&self, name: &str) -> Option<&str> {
            let found = self
                .0
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name));
            found.map(|(_, value)| value.as_str())
        }
    }

    fn verifier(verify: &str) -> Verifier {
        let secrets = |secret| vec![Secret::from_literal(secret)];
        match verify {
            "standard-webhooks" => Verifier::StandardWebhooks(
                verify::StandardWebhooks::new(
                    &secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                    None,
                )
                .unwrap(),
            ),
            "none" => Verifier::None(verify::AllowIps::new(None)),
            "github" => Verifier::Github(verify::Github::new(secrets("key"))),
            "stripe" => Verifier::Stripe(verify::Stripe::new(secrets("key"), None)),
            "hmac" => Verifier::Hmac(
                verify::GenericHmac::new(secrets("key"), Some("X-Sig"), None, None, None).unwrap(),
            ),
            other => panic!("no test verifier for {other}"),
        }
    }

    /// The key of a request signed by `verify`'s own `sign` (scheme id `sid`), with an
    /// unsigned `X-Other: sid` header beside, under `rule`.
    async fn key(verify: &str, rule: Option<&str>, body: &'static str) -> EventKey {
        let verifier = verifier(verify);
        let url = url::Url::parse("https://hooks.example.com/hooks/p").unwrap();
        let now = SystemTime::now();
        let input = SignInput {
            body: body.as_bytes(),
            url: &url,
            now,
            event_id: "sid",
        };
        let mut headers = verifier.sign(&input).unwrap();
        headers.push(("X-Other".into(), "sid".into()));
        let headers = OwnedHeaders(headers);
        let request = Unverified {
            headers: &headers,
            path: "/hooks/p",
            query: "",
            body: bytes::Bytes::from_static(body.as_bytes()),
            peer: None,
            now,
        };
        let verified = verifier.verify(request).await.unwrap();
        let rule = rule.map(|text| EventIdRule::parse(text).unwrap());
        event_id(rule.as_ref(), &headers, &verified)
    }

    /// Whether the key deduplicates by the id alone (else by the id and the body's hash).
    fn by_id_alone(key: &EventKey) -> bool {
        key.dedup.as_str() == key.id.as_str()
    }

    #[tokio::test]
    async fn only_ids_a_signature_covers_are_deduplicated_alone() {
        let body = r#"{"id":"evt_1"}"#;
        let cases = [
            // Standard Webhooks signs `webhook-id`; GitHub signs the body only.
            ("standard-webhooks", None, true),
            ("standard-webhooks", Some("header:webhook-id"), true),
            ("standard-webhooks", Some("json:/id"), true),
            ("github", None, false),
            ("github", Some("json:/id"), true),
            ("hmac", Some("json:/id"), true),
            ("hmac", Some("header:X-Other"), false),
            ("none", Some("json:/id"), false),
            ("none", Some("header:X-Other"), false),
        ];
        for (verify, rule, alone) in cases {
            let found = key(verify, rule, body).await;
            assert_eq!(by_id_alone(&found), alone, "{verify} {rule:?}: {found:?}");
            if !alone {
                let hash = hex::encode(Sha256::digest(body));
                assert_eq!(found.dedup.as_str(), format!("{} sha256:{hash}", found.id));
            }
        }
        // An unsigned header equal to the signed id is that id: vouched for.
        let found = key("standard-webhooks", Some("header:X-Other"), body).await;
        assert!(by_id_alone(&found), "{found:?}");
        // The body's own hash needs no binding.
        let found = key("none", None, body).await;
        assert!(found.id.as_str().starts_with("sha256:") && by_id_alone(&found));
    }

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
