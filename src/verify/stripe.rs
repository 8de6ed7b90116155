//! Stripe: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`. Each `v1` is hex
//! HMAC-SHA256 of `{t}.{body}`, keyed with the whole endpoint secret (`whsec_...`) as raw bytes,
//! not base64-decoded (unlike Standard Webhooks). Stripe lists several `v1` entries while an
//! endpoint's secret is being rolled; other schemes (`v0`, test-mode signatures) are ignored.
//! The timestamp must lie within `tolerance_s` (default 300) of now, either way. The event id
//! is the body's `/id` (`evt_...`).

use std::time::Duration;

use super::fields::{first_secret, fresh, unix_seconds, JsonBody};
use super::mac::{self, Algorithm};
use super::{required, Claims, Rejection, SignInput, SignedHeaders, Unverified};
use crate::secret::Secret;

const SIGNATURE: &str = "Stripe-Signature";
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Stripe {
    /// The `whsec_...` strings themselves: Stripe keys the MAC with their bytes.
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Stripe {
    /// `tolerance` defaults to 5 minutes.
    pub fn new(secrets: Vec<Secret>, tolerance: Option<Duration>) -> Stripe {
        Stripe {
            secrets,
            tolerance: tolerance.unwrap_or(DEFAULT_TOLERANCE),
        }
    }

    pub fn sign(&self, input: &SignInput<'_>) -> Result<SignedHeaders, String> {
        let secret = first_secret(&self.secrets)?;
        let t = unix_seconds(input.now).to_string();
        let tag = mac::sign(
            Algorithm::Sha256,
            secret.expose(),
            &[t.as_bytes(), b".", input.body],
        );
        Ok(vec![(
            SIGNATURE.to_string(),
            format!("t={t},v1={}", hex::encode(tag)),
        )])
    }

    pub fn verify(&self, request: &Unverified<'_>) -> Result<Claims, Rejection> {
        let header = required(request, SIGNATURE)?;
        let mut timestamp = None;
        let mut candidates = Vec::new();
        for (key, value) in header.split(',').filter_map(|item| item.split_once('=')) {
            match key.trim() {
                "t" => timestamp = Some(value.trim()),
                "v1" => candidates.extend(hex::decode(value.trim()).ok()),
                _ => {}
            }
        }
        let t = timestamp.ok_or(Rejection::MalformedHeader(SIGNATURE))?;
        let seconds: u64 = t
            .parse()
            .map_err(|_| Rejection::MalformedHeader(SIGNATURE))?;
        if candidates.is_empty() {
            return Err(Rejection::MalformedHeader(SIGNATURE));
        }
        if !fresh(request.now, seconds, self.tolerance) {
            return Err(Rejection::StaleTimestamp);
        }
        let parts: [&[u8]; 3] = [t.as_bytes(), b".", &request.body];
        if !mac::matches_any(Algorithm::Sha256, &self.secrets, &parts, &candidates) {
            return Err(Rejection::BadSignature);
        }
        Ok(Claims::signed_id(
            JsonBody::parse(&request.body).event_id(&["/id"]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventId;
    use crate::verify::sign::tests::round_trip;
    use crate::verify::test_support::TestHeaders;
    use crate::verify::Verifier;
    use std::time::UNIX_EPOCH;

    // Computed per stripe-ruby's compute_signature (../shared/vectors/signatures.json).
    const SECRET: &str = "whsec_test_secret";
    const TS: u64 = 1614265330;
    const BODY: &str = r#"{"id":"evt_test_webhook","object":"event"}"#;
    const V1: &str = "3c5817089d739023dd6190f70a3757e04f7a2fd8b5dab12c2e000f51970dccff";

    fn scheme(secrets: &[&str]) -> Stripe {
        let secrets = secrets.iter().map(|s| Secret::from_literal(s)).collect();
        Stripe::new(secrets, None)
    }

    fn check(
        scheme: &Stripe,
        header: Option<String>,
        body: &str,
        now: u64,
    ) -> Result<Claims, Rejection> {
        let headers = TestHeaders(header.map(|v| (SIGNATURE, v)).into_iter().collect());
        scheme.verify(&Unverified {
            headers: &headers,
            path: "/hooks/p",
            query: "",
            body: body.to_string().into(),
            peer: None,
            now: UNIX_EPOCH + Duration::from_secs(now),
        })
    }

    fn published() -> Option<String> {
        Some(format!("t={TS},v1={V1}"))
    }

    #[test]
    fn computed_vector_and_its_event_id() {
        let claims = check(&scheme(&[SECRET]), published(), BODY, TS + 299).unwrap();
        assert_eq!(claims.event_id, EventId::new("evt_test_webhook"));
        assert!(claims.id_signed, "the id is in the signed body");
        // Several v1 entries (a secret being rolled) and a v0 entry: one match is enough.
        let listed = format!("t={TS}, v0=abcd, v1={}, v1={V1}", "00".repeat(32));
        assert!(check(&scheme(&[SECRET]), Some(listed), BODY, TS).is_ok());
    }

    #[test]
    fn rotation_accepts_any_secret() {
        assert!(check(&scheme(&["whsec_old", SECRET]), published(), BODY, TS).is_ok());
    }

    #[test]
    fn rejections() {
        let stripe = scheme(&[SECRET]);
        let tampered = BODY.replace("evt_test", "evt_fake");
        assert_eq!(
            check(&stripe, published(), &tampered, TS),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&scheme(&["whsec_other"]), published(), BODY, TS),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&stripe, None, BODY, TS),
            Err(Rejection::MissingHeader(SIGNATURE))
        );
        for malformed in [
            format!("v1={V1}"),
            format!("t=soon,v1={V1}"),
            format!("t={TS},v0={V1}"),
            "garbage".into(),
        ] {
            assert_eq!(
                check(&stripe, Some(malformed), BODY, TS),
                Err(Rejection::MalformedHeader(SIGNATURE))
            );
        }
        assert_eq!(
            check(&stripe, published(), BODY, TS + 301),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            check(&stripe, published(), BODY, TS - 301),
            Err(Rejection::StaleTimestamp)
        );
        let lenient = Stripe::new(
            vec![Secret::from_literal(SECRET)],
            Some(Duration::from_secs(1000)),
        );
        assert!(check(&lenient, published(), BODY, TS + 999).is_ok());
    }

    #[test]
    fn signing_round_trips() {
        round_trip(&Verifier::Stripe(scheme(&[SECRET])));
    }
}
