//! AccuLynx: HMAC-SHA256 of the raw body, keyed with the secret AccuLynx returns when the
//! subscription is created. AccuLynx does not publish the header nor the encoding, so both are
//! configurable: `header` (default `X-AccuLynx-Signature`) and `encoding` (`hex`, the default,
//! or `base64`). There is no timestamp. The envelope is JSON; its `EventId` (a GUID, also
//! spelled `eventId`) is the event id and its `Type` (as the schema's table names it; `TopicName`,
//! `topicName` or the example's `topicNamee` otherwise: `job-milestone-changed`) the topic.
//! AccuLynx retries, so duplicates are expected and deduplicated on that id.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::fields::{first_secret, JsonBody};
use super::hmac_generic::Encoding;
use super::mac::{self, Algorithm};
use super::{Claims, Rejection, SignInput, SignedHeaders, Unverified};
use crate::secret::Secret;

const DEFAULT_HEADER: &str = "X-AccuLynx-Signature";
/// How rejections name the header, which may be configured.
const HEADER_LABEL: &str = "(acculynx signature header)";

#[derive(Debug)]
pub struct AccuLynx {
    secrets: Vec<Secret>,
    header: String,
    encoding: Encoding,
}

impl AccuLynx {
    /// The keys as written: `header` and `encoding`, both optional. Every problem is reported
    /// at once.
    pub fn new(
        secrets: Vec<Secret>,
        header: Option<&str>,
        encoding: Option<&str>,
    ) -> Result<AccuLynx, Vec<String>> {
        let mut errors = Vec::new();
        let header = header.unwrap_or(DEFAULT_HEADER);
        if actix_web::http::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
            errors.push(format!("header {header:?} is not a valid header name"));
        }
        let encoding = Encoding::parse(encoding.unwrap_or("hex"))
            .map_err(|e| errors.push(e))
            .ok();
        match encoding {
            Some(encoding) if errors.is_empty() => Ok(AccuLynx {
                secrets,
                header: header.to_string(),
                encoding,
            }),
            _ => Err(errors),
        }
    }

    pub fn sign(&self, input: &SignInput<'_>) -> Result<SignedHeaders, String> {
        let secret = first_secret(&self.secrets)?;
        let tag = mac::sign(Algorithm::Sha256, secret.expose(), &[input.body]);
        Ok(vec![(self.header.clone(), encode(self.encoding, &tag))])
    }

    pub fn verify(&self, request: &Unverified<'_>) -> Result<Claims, Rejection> {
        let tag = request
            .headers
            .get(&self.header)
            .ok_or(Rejection::MissingHeader(HEADER_LABEL))?;
        let tag = self
            .encoding
            .decode(tag.trim())
            .ok_or(Rejection::MalformedHeader(HEADER_LABEL))?;
        if !mac::matches_any(Algorithm::Sha256, &self.secrets, &[&request.body], &[tag]) {
            return Err(Rejection::BadSignature);
        }
        let envelope = JsonBody::parse(&request.body);
        Ok(Claims {
            // The schema's table names the field `Type`; its example spells `topicNamee`.
            topic: envelope.text(&["/Type", "/type", "/TopicName", "/topicName", "/topicNamee"]),
            ..Claims::signed_id(envelope.event_id(&["/EventId", "/eventId"]))
        })
    }
}

/// The tag as the header carries it.
fn encode(encoding: Encoding, tag: &[u8]) -> String {
    match encoding {
        Encoding::Hex => hex::encode(tag),
        Encoding::Base64 => BASE64.encode(tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventId;
    use crate::verify::sign::tests::round_trip;
    use crate::verify::test_support::{request, TestHeaders};
    use crate::verify::Verifier;
    use std::time::SystemTime;

    const SECRET: &str = "acculynx-demo-secret";
    const BODY: &str = r#"{"topicName":"job-milestone-changed","eventId":"a653de1a-84a6-488c-90bc-f6c8e990bf51","Event":{"milestoneId":3}}"#;

    fn scheme(secrets: &[&str], header: Option<&str>, encoding: Option<&str>) -> AccuLynx {
        let secrets = secrets.iter().map(|s| Secret::from_literal(s)).collect();
        AccuLynx::new(secrets, header, encoding).unwrap()
    }

    fn tag(secret: &str, body: &str) -> Vec<u8> {
        mac::sign(Algorithm::Sha256, secret.as_bytes(), &[body.as_bytes()])
    }

    fn check(
        scheme: &AccuLynx,
        headers: Vec<(&'static str, String)>,
        body: &'static str,
    ) -> Result<Claims, Rejection> {
        let headers = TestHeaders(headers);
        scheme.verify(&request(&headers, body, SystemTime::now()))
    }

    #[test]
    fn default_header_hex_with_id_and_topic() {
        let headers = vec![(DEFAULT_HEADER, hex::encode(tag(SECRET, BODY)))];
        let claims = check(&scheme(&[SECRET], None, None), headers, BODY).unwrap();
        assert_eq!(
            claims.event_id,
            EventId::new("a653de1a-84a6-488c-90bc-f6c8e990bf51")
        );
        assert_eq!(claims.topic.as_deref(), Some("job-milestone-changed"));
        assert!(claims.id_signed, "the id is in the signed body");
    }

    #[test]
    fn pascal_case_envelope() {
        let body = r#"{"TopicName":"job-created","EventId":"E-1","eventId":"ignored"}"#;
        let headers = vec![(DEFAULT_HEADER, hex::encode(tag(SECRET, body)))];
        let claims = check(&scheme(&[SECRET], None, None), headers, body).unwrap();
        assert_eq!(claims.event_id, EventId::new("E-1"));
        assert_eq!(claims.topic.as_deref(), Some("job-created"));
    }

    /// The schema's table names the topic's field `Type`, its example `topicNamee`.
    #[test]
    fn the_topic_as_the_schema_and_its_example_name_it() {
        for (body, topic) in [
            (r#"{"Type":"job-created","EventId":"E-1"}"#, "job-created"),
            (
                r#"{"topicNamee":"job-milestone-changed","eventId":"E-2"}"#,
                "job-milestone-changed",
            ),
        ] {
            let headers = vec![(DEFAULT_HEADER, hex::encode(tag(SECRET, body)))];
            let claims = check(&scheme(&[SECRET], None, None), headers, body).unwrap();
            assert_eq!(claims.topic.as_deref(), Some(topic), "{body}");
        }
    }

    #[test]
    fn configured_header_and_base64() {
        let acculynx = scheme(&[SECRET], Some("X-Signature"), Some("base64"));
        let b64 = encode(Encoding::Base64, &tag(SECRET, BODY));
        assert!(check(&acculynx, vec![("x-signature", b64.clone())], BODY).is_ok());
        assert_eq!(
            check(&acculynx, vec![(DEFAULT_HEADER, b64)], BODY),
            Err(Rejection::MissingHeader(HEADER_LABEL))
        );
        let hex_tag = hex::encode(tag(SECRET, BODY));
        assert!(check(&acculynx, vec![("X-Signature", hex_tag)], BODY).is_err());
    }

    #[test]
    fn rotation_accepts_any_secret() {
        let headers = vec![(DEFAULT_HEADER, hex::encode(tag(SECRET, BODY)))];
        assert!(check(&scheme(&["old", SECRET], None, None), headers, BODY).is_ok());
    }

    #[test]
    fn rejections() {
        let acculynx = scheme(&[SECRET], None, None);
        let good = vec![(DEFAULT_HEADER, hex::encode(tag(SECRET, BODY)))];
        assert_eq!(
            check(&acculynx, good.clone(), r#"{"eventId":"forged"}"#),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&scheme(&["other"], None, None), good, BODY),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&acculynx, vec![], BODY),
            Err(Rejection::MissingHeader(HEADER_LABEL))
        );
        assert_eq!(
            check(&acculynx, vec![(DEFAULT_HEADER, "zz".into())], BODY),
            Err(Rejection::MalformedHeader(HEADER_LABEL))
        );
    }

    #[test]
    fn config_errors_are_collected() {
        let errors = AccuLynx::new(vec![], Some("bad header"), Some("base32")).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn signing_round_trips() {
        round_trip(&Verifier::AccuLynx(scheme(&[SECRET], None, None)));
        let b64 = scheme(&[SECRET], Some("X-Sig"), Some("base64"));
        round_trip(&Verifier::AccuLynx(b64));
    }
}
