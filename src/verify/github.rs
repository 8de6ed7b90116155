//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the body with the raw secret;
//! the event id is `X-GitHub-Delivery`.

use super::mac::{self, Algorithm};
use super::{required, Rejection, SignInput, SignedHeaders, Unverified};
use crate::config::Secret;
use crate::event::EventId;

const SIGNATURE: &str = "X-Hub-Signature-256";
const DELIVERY: &str = "X-GitHub-Delivery";

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

    pub fn verify(&self, request: &Unverified<'_>) -> Result<Option<EventId>, Rejection> {
        let header = required(request, SIGNATURE)?;
        let tag = header
            .strip_prefix("sha256=")
            .and_then(|hex_tag| hex::decode(hex_tag).ok())
            .ok_or(Rejection::MalformedHeader(SIGNATURE))?;
        if !mac::matches_any(Algorithm::Sha256, &self.secrets, &[&request.body], &[tag]) {
            return Err(Rejection::BadSignature);
        }
        Ok(request.headers.get(DELIVERY).and_then(EventId::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, TestHeaders};
    use std::time::SystemTime;

    fn check(
        headers: Vec<(&'static str, String)>,
        body: &'static str,
    ) -> Result<Option<EventId>, Rejection> {
        let github = Github::new(vec![Secret::from_literal("It's a Secret to Everybody")]);
        let headers = TestHeaders(headers);
        github.verify(&request(&headers, body, SystemTime::now()))
    }

    const PUBLISHED: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn published_vector() {
        let id = check(
            vec![(SIGNATURE, PUBLISHED.into()), (DELIVERY, "d-1".into())],
            "Hello, World!",
        );
        assert_eq!(id, Ok(EventId::new("d-1")));
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
