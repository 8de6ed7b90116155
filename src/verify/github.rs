//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the body with the raw secret;
//! the event id is `X-GitHub-Delivery`.
//!
//! The `ping` GitHub sends when a webhook is created (or pinged from its settings page) is a
//! signed delivery like any other, and GitHub only needs a 2xx back: it is stored as a test
//! event, which destinations do not receive (they would get a body with no event in it, and
//! without the `X-GitHub-Event` header that names it).

use super::fields::JsonBody;
use super::mac::{self, Algorithm};
use super::{required, Claims, Rejection, SignInput, SignedHeaders, Unverified};
use crate::event::EventId;
use crate::secret::Secret;

const SIGNATURE: &str = "X-Hub-Signature-256";
const DELIVERY: &str = "X-GitHub-Delivery";
const EVENT: &str = "X-GitHub-Event";

#[derive(Debug)]
pub struct Github {
    secrets: Vec<Secret>,
}

impl Github {
    pub fn new(secrets: Vec<Secret>) -> Github {
        Github { secrets }
    }

    pub fn sign(&self, input: &SignInput<'_>) -> SignedHeaders {
        let tag = mac::sign(Algorithm::Sha256, self.secrets[0].expose(), &[input.body]);
        vec![
            (
                SIGNATURE.to_string(),
                format!("sha256={}", hex::encode(tag)),
            ),
            (DELIVERY.to_string(), input.event_id.to_string()),
        ]
    }

    pub fn verify(&self, request: &Unverified<'_>) -> Result<Claims, Rejection> {
        let header = required(request, SIGNATURE)?;
        let tag = header
            .strip_prefix("sha256=")
            .and_then(|hex_tag| hex::decode(hex_tag).ok())
            .ok_or(Rejection::MalformedHeader(SIGNATURE))?;
        if !mac::matches_any(Algorithm::Sha256, &self.secrets, &[&request.body], &[tag]) {
            return Err(Rejection::BadSignature);
        }
        Ok(Claims {
            test: is_ping(request),
            ..Claims::unsigned_id(request.headers.get(DELIVERY).and_then(EventId::new))
        })
    }
}

/// A `ping`: named so by `X-GitHub-Event`, which the signature does not cover, and shaped so in
/// the signed body (its `zen` and `hook_id`), so that rewriting the header of a captured event
/// cannot turn it into a test.
fn is_ping(request: &Unverified<'_>) -> bool {
    let body = JsonBody::parse(&request.body);
    request.headers.get(EVENT) == Some("ping")
        && body.text(&["/zen"]).is_some()
        && body.text(&["/hook_id"]).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, TestHeaders};
    use std::time::SystemTime;

    fn check(
        headers: Vec<(&'static str, String)>,
        body: &'static str,
    ) -> Result<Claims, Rejection> {
        let github = Github::new(vec![Secret::from_literal("It's a Secret to Everybody")]);
        let headers = TestHeaders(headers);
        github.verify(&request(&headers, body, SystemTime::now()))
    }

    const PUBLISHED: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn published_vector() {
        let claims = check(
            vec![(SIGNATURE, PUBLISHED.into()), (DELIVERY, "d-1".into())],
            "Hello, World!",
        );
        assert_eq!(claims, Ok(Claims::unsigned_id(EventId::new("d-1"))));
    }

    #[test]
    fn a_ping_is_a_test_when_its_body_is_one() {
        const PING: &str =
            r#"{"zen":"Design for failure.","hook_id":42,"hook":{"type":"Repository"}}"#;
        let signed = |event: &str, body: &str| {
            let tag = mac::sign(
                Algorithm::Sha256,
                b"It's a Secret to Everybody",
                &[body.as_bytes()],
            );
            vec![
                (SIGNATURE, format!("sha256={}", hex::encode(tag))),
                (DELIVERY, "d-2".to_string()),
                (EVENT, event.to_string()),
            ]
        };
        let ping = check(signed("ping", PING), PING).unwrap();
        assert!(ping.test);
        assert_eq!(ping.event_id, EventId::new("d-2"));
        // Any other event, or a ping header on a body that is no ping: an ordinary event.
        assert!(!check(signed("push", PING), PING).unwrap().test);
        let push = r#"{"ref":"refs/heads/main","hook_id":42}"#;
        assert!(!check(signed("ping", push), push).unwrap().test);
    }

    #[test]
    fn rejections() {
        assert_eq!(
            check(vec![], "Hello, World!"),
            Err(Rejection::MissingHeader(SIGNATURE))
        );
        assert_eq!(
            check(vec![(SIGNATURE, "sha1=00".into())], "Hello, World!"),
            Err(Rejection::MalformedHeader(SIGNATURE))
        );
        assert_eq!(
            check(vec![(SIGNATURE, PUBLISHED.into())], "Hello, World?"),
            Err(Rejection::BadSignature)
        );
    }
}
