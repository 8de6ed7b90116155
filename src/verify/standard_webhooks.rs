//! Standard Webhooks (and Svix): `webhook-id`, `webhook-timestamp`, `webhook-signature` (or the
//! `svix-` spellings). The tag is base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed with the
//! base64-decoded part of a `whsec_...` secret; the signature header lists `v1,<tag>` entries
//! separated by spaces. The timestamp must lie within `tolerance_s` of now, either way.

use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::fields::fresh;
use super::mac::{self, Algorithm};
use super::{Rejection, SignInput, SignedHeaders, Unverified};
use crate::event::EventId;
use crate::secret::Secret;

const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct StandardWebhooks {
    /// The decoded keys (not the `whsec_` text).
    keys: Vec<Secret>,
    tolerance: Duration,
}

/// The three headers, under either spelling.
const ID: [&str; 2] = ["webhook-id", "svix-id"];
const TIMESTAMP: [&str; 2] = ["webhook-timestamp", "svix-timestamp"];
const SIGNATURE: [&str; 2] = ["webhook-signature", "svix-signature"];

impl StandardWebhooks {
    /// `secrets` as written (`whsec_...`); `tolerance` defaults to 5 minutes.
    pub fn new(
        secrets: &[Secret],
        tolerance: Option<Duration>,
    ) -> Result<StandardWebhooks, Vec<String>> {
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        for (index, secret) in secrets.iter().enumerate() {
            match decode_whsec(secret.expose()) {
                Some(key) => keys.push(key),
                None => errors.push(format!(
                    "secret #{} is not a Standard Webhooks secret (\"whsec_\" followed by base64)",
                    index + 1
                )),
            }
        }
        if errors.is_empty() {
            Ok(StandardWebhooks {
                keys,
                tolerance: tolerance.unwrap_or(DEFAULT_TOLERANCE),
            })
        } else {
            Err(errors)
        }
    }

    pub fn sign(&self, input: &SignInput<'_>) -> SignedHeaders {
        let timestamp = input
            .now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let signature = signature(&self.keys[0], input.event_id, &timestamp, input.body);
        vec![
            (ID[0].to_string(), input.event_id.to_string()),
            (TIMESTAMP[0].to_string(), timestamp),
            (SIGNATURE[0].to_string(), signature),
        ]
    }

    pub fn verify(&self, request: &Unverified<'_>) -> Result<Option<EventId>, Rejection> {
        let id = either(request, ID)?;
        let timestamp = either(request, TIMESTAMP)?;
        let signatures = either(request, SIGNATURE)?;

        let seconds: u64 = timestamp
            .parse()
            .map_err(|_| Rejection::MalformedHeader(TIMESTAMP[0]))?;
        if !fresh(request.now, seconds, self.tolerance) {
            return Err(Rejection::StaleTimestamp);
        }

        let candidates: Vec<Vec<u8>> = signatures
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|tag| BASE64.decode(tag).ok())
            .collect();
        if candidates.is_empty() {
            return Err(Rejection::MalformedHeader(SIGNATURE[0]));
        }
        let parts: [&[u8]; 5] = [
            id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            &request.body,
        ];
        if !mac::matches_any(Algorithm::Sha256, &self.keys, &parts, &candidates) {
            return Err(Rejection::BadSignature);
        }
        Ok(EventId::new(id))
    }
}

/// The `webhook-` header, else its `svix-` spelling.
fn either<'a>(request: &'a Unverified<'_>, names: [&'static str; 2]) -> Result<&'a str, Rejection> {
    names
        .iter()
        .find_map(|name| request.headers.get(name))
        .ok_or(Rejection::MissingHeader(names[0]))
}

/// `whsec_<base64>` (or bare base64, as the reference libraries accept) to key bytes.
/// The `webhook-signature` value `v1,<base64 tag>` for one message, as a sender computes it.
pub fn signature(key: &Secret, id: &str, timestamp: &str, body: &[u8]) -> String {
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
    format!(
        "v1,{}",
        BASE64.encode(mac::sign(Algorithm::Sha256, key.expose(), &parts))
    )
}

/// The key in a `whsec_<base64>` secret (bare base64 is accepted too, as the reference
/// libraries do).
pub fn decode_whsec(text: &[u8]) -> Option<Secret> {
    let encoded = text.strip_prefix(b"whsec_").unwrap_or(text);
    let key = BASE64.decode(encoded).ok().filter(|key| !key.is_empty())?;
    Some(Secret::from_bytes(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::TestHeaders;
    use std::time::SystemTime;

    // The published vector from standard-webhooks' JavaScript library tests.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID_VALUE: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1614265330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn scheme(secrets: &[&str]) -> StandardWebhooks {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::from_literal(s)).collect();
        StandardWebhooks::new(&secrets, None).unwrap()
    }

    fn check(
        scheme: &StandardWebhooks,
        headers: Vec<(&'static str, String)>,
        now: u64,
    ) -> Result<Option<EventId>, Rejection> {
        let headers = TestHeaders(headers);
        scheme.verify(&Unverified {
            headers: &headers,
            path: "/hooks/p",
            query: "",
            body: BODY.into(),
            peer: None,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(now),
        })
    }

    fn published(prefix: &'static str) -> Vec<(&'static str, String)> {
        let name = |suffix: &str| -> &'static str {
            match (prefix, suffix) {
                ("svix", "id") => "svix-id",
                ("svix", "timestamp") => "svix-timestamp",
                ("svix", _) => "svix-signature",
                (_, "id") => "webhook-id",
                (_, "timestamp") => "webhook-timestamp",
                _ => "webhook-signature",
            }
        };
        vec![
            (name("id"), ID_VALUE.into()),
            (name("timestamp"), TS.to_string()),
            (name("signature"), format!("v1,bm90IGl0 {SIG}")),
        ]
    }

    #[test]
    fn published_vector_under_both_spellings() {
        let scheme = scheme(&[SECRET]);
        assert_eq!(
            check(&scheme, published("webhook"), TS),
            Ok(EventId::new(ID_VALUE))
        );
        assert_eq!(
            check(&scheme, published("svix"), TS + 299),
            Ok(EventId::new(ID_VALUE))
        );
    }

    #[test]
    fn rotation_accepts_any_secret() {
        let scheme = scheme(&["whsec_c2Vjb25k", SECRET]);
        assert!(check(&scheme, published("webhook"), TS).is_ok());
    }

    #[test]
    fn rejections() {
        let scheme = scheme(&[SECRET]);
        assert_eq!(
            check(&scheme, published("webhook"), TS + 301),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            check(&scheme, published("webhook"), TS - 301),
            Err(Rejection::StaleTimestamp)
        );
        let mut headers = published("webhook");
        headers.remove(0);
        assert_eq!(
            check(&scheme, headers, TS),
            Err(Rejection::MissingHeader("webhook-id"))
        );
        let mut headers = published("webhook");
        headers[0].1 = "msg_other".into();
        assert_eq!(check(&scheme, headers, TS), Err(Rejection::BadSignature));
        let mut headers = published("webhook");
        headers[2].1 = "v2,abc".into();
        assert_eq!(
            check(&scheme, headers, TS),
            Err(Rejection::MalformedHeader("webhook-signature"))
        );
        let other = self::scheme(&["whsec_c2Vjb25k"]);
        assert_eq!(
            check(&other, published("webhook"), TS),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn secrets_must_be_base64() {
        let bad = [Secret::from_literal("whsec_not base64!")];
        assert!(StandardWebhooks::new(&bad, None).is_err());
    }
}
