//! Shopify: `X-Shopify-Hmac-Sha256` holds the base64 HMAC-SHA256 of the raw body, keyed with the
//! app's client secret (or the webhook signing secret shown in the admin). There is no
//! timestamp. The event id is `X-Shopify-Webhook-Id` (the same on every retry of a delivery) and
//! the topic is `X-Shopify-Topic` (`orders/create`...).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::fields::first_secret;
use super::mac::{self, Algorithm};
use super::{required, Claims, Rejection, SignInput, SignedHeaders, Unverified};
use crate::event::EventId;
use crate::secret::Secret;

const SIGNATURE: &str = "X-Shopify-Hmac-Sha256";
const WEBHOOK_ID: &str = "X-Shopify-Webhook-Id";
const TOPIC: &str = "X-Shopify-Topic";

#[derive(Debug)]
pub struct Shopify {
    secrets: Vec<Secret>,
}

impl Shopify {
    pub fn new(secrets: Vec<Secret>) -> Shopify {
        Shopify { secrets }
    }

    pub fn sign(&self, input: &SignInput<'_>) -> Result<SignedHeaders, String> {
        let secret = first_secret(&self.secrets)?;
        let tag = mac::sign(Algorithm::Sha256, secret.expose(), &[input.body]);
        Ok(vec![
            (SIGNATURE.to_string(), BASE64.encode(tag)),
            (WEBHOOK_ID.to_string(), input.event_id.to_string()),
        ])
    }

    pub fn verify(&self, request: &Unverified<'_>) -> Result<Claims, Rejection> {
        let tag = BASE64
            .decode(required(request, SIGNATURE)?.trim())
            .map_err(|_| Rejection::MalformedHeader(SIGNATURE))?;
        if !mac::matches_any(Algorithm::Sha256, &self.secrets, &[&request.body], &[tag]) {
            return Err(Rejection::BadSignature);
        }
        // The HMAC covers the body only: the id and the topic headers are not signed.
        Ok(Claims {
            topic: request.headers.get(TOPIC).map(str::to_string),
            ..Claims::unsigned_id(request.headers.get(WEBHOOK_ID).and_then(EventId::new))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::sign::tests::round_trip;
    use crate::verify::test_support::{request, TestHeaders};
    use crate::verify::Verifier;
    use std::time::SystemTime;

    // Self-computed (Shopify publishes no vector): ../shared/vectors/signatures.json.
    const SECRET: &str = "shop-secret";
    const BODY: &str = r#"{"id":1}"#;
    const TAG: &str = "plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwtAZ0=";

    fn scheme(secrets: &[&str]) -> Shopify {
        let secrets = secrets.iter().map(|s| Secret::from_literal(s)).collect();
        Shopify::new(secrets)
    }

    fn check(
        scheme: &Shopify,
        headers: Vec<(&'static str, String)>,
        body: &'static str,
    ) -> Result<Claims, Rejection> {
        let headers = TestHeaders(headers);
        scheme.verify(&request(&headers, body, SystemTime::now()))
    }

    fn delivery(tag: &str) -> Vec<(&'static str, String)> {
        vec![
            (SIGNATURE, tag.into()),
            (WEBHOOK_ID, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".into()),
            (TOPIC, "orders/create".into()),
        ]
    }

    #[test]
    fn computed_vector_with_id_and_topic() {
        let claims = check(&scheme(&[SECRET]), delivery(TAG), BODY).unwrap();
        assert_eq!(
            claims.event_id,
            EventId::new("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
        );
        assert_eq!(claims.topic.as_deref(), Some("orders/create"));
        assert!(
            !claims.id_signed,
            "X-Shopify-Webhook-Id is outside the HMAC"
        );
        let bare = check(&scheme(&[SECRET]), vec![(SIGNATURE, TAG.into())], BODY).unwrap();
        assert_eq!(bare, Claims::default());
    }

    #[test]
    fn rotation_accepts_any_secret() {
        assert!(check(&scheme(&["old", SECRET]), delivery(TAG), BODY).is_ok());
    }

    #[test]
    fn rejections() {
        let shopify = scheme(&[SECRET]);
        assert_eq!(
            check(&shopify, delivery(TAG), r#"{"id":2}"#),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&scheme(&["other"]), delivery(TAG), BODY),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&shopify, vec![], BODY),
            Err(Rejection::MissingHeader(SIGNATURE))
        );
        assert_eq!(
            check(&shopify, delivery("not base64!"), BODY),
            Err(Rejection::MalformedHeader(SIGNATURE))
        );
        // The right MAC in hex, as a hex-only verifier would want it, is refused.
        let hex_tag = hex::encode(BASE64.decode(TAG).unwrap());
        assert!(check(&shopify, delivery(&hex_tag), BODY).is_err());
    }

    #[test]
    fn signing_round_trips() {
        round_trip(&Verifier::Shopify(scheme(&[SECRET])));
    }
}
