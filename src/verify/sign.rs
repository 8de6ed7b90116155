//! Signing: the inverse of verification, for `hookgate send-test` and for tests. Each scheme
//! signs a body as its vendor would, with its first configured secret.

use std::time::SystemTime;

use super::Verifier;

/// What a request is signed over.
pub struct SignInput<'a> {
    pub body: &'a [u8],
    /// The full URL the request is posted to (the vendor's view: Twilio's `public_url`).
    pub url: &'a url::Url,
    pub now: SystemTime,
    /// The event id to put in the scheme's own id header, where it has one.
    pub event_id: &'a str,
}

/// Headers to send, in order.
pub type SignedHeaders = Vec<(String, String)>;

impl Verifier {
    /// Signs as the provider's vendor would. Schemes that cannot sign with what the gateway holds
    /// (an RSA public key, a bearer token) say what is needed instead.
    pub fn sign(&self, input: &SignInput<'_>) -> Result<SignedHeaders, String> {
        match self {
            Verifier::StandardWebhooks(scheme) => Ok(scheme.sign(input)),
            Verifier::Github(scheme) => Ok(scheme.sign(input)),
            Verifier::Hmac(scheme) => Ok(scheme.sign(input)),
            Verifier::None(_) => Ok(Vec::new()),
            Verifier::Stripe(scheme) => scheme.sign(input),
            Verifier::Shopify(scheme) => scheme.sign(input),
            Verifier::Slack(scheme) => scheme.sign(input),
            Verifier::Twilio(scheme) => scheme.sign(input),
            Verifier::Alcmeon(scheme) => scheme.sign(input),
            Verifier::AccuLynx(scheme) => scheme.sign(input),
            Verifier::DialogInsight(_) => {
                Err("dialog-insight is signed with an RSA private key: pass --private-key".into())
            }
            Verifier::OAuth(_) => {
                Err("oauth senders present a bearer token, not a signature".into())
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::verify::test_support::TestHeaders;
    use crate::verify::{GenericHmac, Github, StandardWebhooks, Unverified, Verifier};
    use bytes::Bytes;

    /// Signs with `sign` and checks that `verify` accepts the result, and refuses it for a
    /// tampered body.
    pub(crate) fn round_trip(verifier: &Verifier) {
        let url: url::Url = "https://hooks.example.com/hooks/p".parse().unwrap();
        let body = br#"{"id":"evt_1"}"#;
        let input = SignInput {
            body,
            url: &url,
            now: SystemTime::now(),
            event_id: "evt_1",
        };
        let signed = verifier.sign(&input).expect("sign");
        let headers = TestHeaders(
            signed
                .into_iter()
                .map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v))
                .collect(),
        );
        for (body, expected_ok) in [(&body[..], true), (&b"{\"id\":\"evt_2\"}"[..], false)] {
            let request = Unverified {
                headers: &headers,
                path: url.path(),
                query: url.query().unwrap_or(""),
                body: Bytes::copy_from_slice(body),
                peer: None,
                now: SystemTime::now(),
            };
            let result =
                futures_util::FutureExt::now_or_never(verifier.verify(request)).expect("no await");
            assert_eq!(result.is_ok(), expected_ok, "{verifier:?}");
        }
    }

    #[test]
    fn signing_round_trips() {
        let secrets = || vec![Secret::from_literal("whsec_c2VjcmV0LWtleQ==")];
        let hmac = GenericHmac::new(secrets(), Some("X-Sig"), None, None, Some("sha256="));
        for verifier in [
            Verifier::StandardWebhooks(StandardWebhooks::new(&secrets(), None).unwrap()),
            Verifier::Github(Github::new(secrets())),
            Verifier::Hmac(hmac.unwrap()),
        ] {
            round_trip(&verifier);
        }
    }
}
