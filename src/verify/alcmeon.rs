//! Alcméon: `X-Alcmeon-Webhook-Signature` holds the hex HMAC-SHA256, keyed with the application
//! secret's bytes as written (not decoded), of the request path (no query string), a space, and
//! the raw body: Python's `hmac.new(secret, path + b" " + body, sha256).hexdigest()` in their
//! published sample. Their prose omits the space, hence `signature_base = "path+body"`; the
//! default is `"path+space+body"`. Behind a proxy that rewrites the path, `public_url` gives the
//! URL Alcméon calls, and its path is the one signed. There is no timestamp. The event id is the
//! body's `/id`, the notification id (a number, increasing; stored as written).

use super::fields::{first_secret, JsonBody};
use super::mac::{self, Algorithm};
use super::{required, Claims, Rejection, SignInput, SignedHeaders, Unverified};
use crate::secret::Secret;

const SIGNATURE: &str = "X-Alcmeon-Webhook-Signature";

#[derive(Debug)]
pub struct Alcmeon {
    secrets: Vec<Secret>,
    /// `" "` (their sample) or `""` (their prose) between the path and the body.
    separator: &'static str,
    /// The path Alcméon signs when it differs from the one we receive (`public_url`).
    public_path: Option<String>,
}

impl Alcmeon {
    /// The keys as written: `signature_base` and `public_url`, both optional. Every problem is
    /// reported at once.
    pub fn new(
        secrets: Vec<Secret>,
        signature_base: Option<&str>,
        public_url: Option<&str>,
    ) -> Result<Alcmeon, Vec<String>> {
        let mut errors = Vec::new();
        let separator = match signature_base {
            None | Some("path+space+body") => " ",
            Some("path+body") => "",
            Some(other) => {
                errors.push(format!(
                    "signature_base {other:?} is not one of \"path+space+body\", \"path+body\""
                ));
                " "
            }
        };
        let public_path = match public_url.map(url::Url::parse) {
            None => None,
            Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => {
                Some(url.path().to_string())
            }
            Some(_) => {
                errors.push("public_url must be an http(s) URL".to_string());
                None
            }
        };
        if errors.is_empty() {
            Ok(Alcmeon {
                secrets,
                separator,
                public_path,
            })
        } else {
            Err(errors)
        }
    }

    pub fn sign(&self, input: &SignInput<'_>) -> Result<SignedHeaders, String> {
        let secret = first_secret(&self.secrets)?;
        // Alcméon signs the path it calls: `public_url`'s when one is configured.
        let path = self.public_path.as_deref().unwrap_or(input.url.path());
        let parts: [&[u8]; 3] = [path.as_bytes(), self.separator.as_bytes(), input.body];
        let tag = mac::sign(Algorithm::Sha256, secret.expose(), &parts);
        Ok(vec![(SIGNATURE.to_string(), hex::encode(tag))])
    }

    pub fn verify(&self, request: &Unverified<'_>) -> Result<Claims, Rejection> {
        let tag = hex::decode(required(request, SIGNATURE)?.trim())
            .map_err(|_| Rejection::MalformedHeader(SIGNATURE))?;
        let path = self.public_path.as_deref().unwrap_or(request.path);
        let parts: [&[u8]; 3] = [path.as_bytes(), self.separator.as_bytes(), &request.body];
        if !mac::matches_any(Algorithm::Sha256, &self.secrets, &parts, &[tag]) {
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
    use crate::verify::{Unverified, Verifier};
    use std::time::SystemTime;

    // Self-computed per Alcméon's Python sample: ../shared/vectors/signatures.json.
    const SECRET: &str = "88c29fe9d5477643";
    const PATH: &str = "/demo/subbot/start";
    const BODY: &str = r#"{"id":1}"#;
    const SIG: &str = "23b8881b0bcd2a1587bf084245adda8dc6cfef291730ae02f92d2ee2e524a8a7";

    fn scheme(secrets: &[&str], base: Option<&str>) -> Alcmeon {
        let secrets = secrets.iter().map(|s| Secret::from_literal(s)).collect();
        Alcmeon::new(secrets, base, None).unwrap()
    }

    fn check(
        scheme: &Alcmeon,
        signature: Option<&str>,
        path: &str,
        body: &str,
    ) -> Result<Claims, Rejection> {
        let headers = TestHeaders(
            signature
                .map(|s| (SIGNATURE, s.to_string()))
                .into_iter()
                .collect(),
        );
        scheme.verify(&Unverified {
            headers: &headers,
            path,
            query: "ignored=1",
            body: body.to_string().into(),
            peer: None,
            now: SystemTime::now(),
        })
    }

    #[test]
    fn computed_vector_with_numeric_id() {
        let claims = check(&scheme(&[SECRET], None), Some(SIG), PATH, BODY).unwrap();
        assert_eq!(claims.event_id, EventId::new("1"));
        let explicit = scheme(&[SECRET], Some("path+space+body"));
        assert!(check(&explicit, Some(SIG), PATH, BODY).is_ok());
    }

    #[test]
    fn path_and_body_without_space() {
        let tag = mac::sign(
            Algorithm::Sha256,
            SECRET.as_bytes(),
            &[b"/demo/subbot/start{\"id\":1}"],
        );
        let no_space = scheme(&[SECRET], Some("path+body"));
        assert!(check(&no_space, Some(&hex::encode(&tag)), PATH, BODY).is_ok());
        assert_eq!(
            check(&no_space, Some(SIG), PATH, BODY),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(
                &scheme(&[SECRET], None),
                Some(&hex::encode(tag)),
                PATH,
                BODY
            ),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn public_url_path_is_signed_instead() {
        let public_url = format!("https://crm.example.com{PATH}?x=1");
        let secrets = vec![Secret::from_literal(SECRET)];
        let behind_proxy = Alcmeon::new(secrets, None, Some(&public_url)).unwrap();
        assert!(check(&behind_proxy, Some(SIG), "/hooks/alcmeon", BODY).is_ok());
        assert_eq!(
            check(&scheme(&[SECRET], None), Some(SIG), "/hooks/alcmeon", BODY),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn rotation_accepts_any_secret() {
        assert!(check(&scheme(&["old", SECRET], None), Some(SIG), PATH, BODY).is_ok());
    }

    #[test]
    fn rejections() {
        let alcmeon = scheme(&[SECRET], None);
        assert_eq!(
            check(&alcmeon, Some(SIG), PATH, r#"{"id":2}"#),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&alcmeon, Some(SIG), "/demo/subbot/stop", BODY),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&scheme(&["other"], None), Some(SIG), PATH, BODY),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&alcmeon, None, PATH, BODY),
            Err(Rejection::MissingHeader(SIGNATURE))
        );
        assert_eq!(
            check(&alcmeon, Some("sha256=00"), PATH, BODY),
            Err(Rejection::MalformedHeader(SIGNATURE))
        );
    }

    #[test]
    fn config_errors_are_collected() {
        let errors = Alcmeon::new(vec![], Some("body"), Some("ftp://example.com/x")).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn signing_round_trips() {
        round_trip(&Verifier::Alcmeon(scheme(&[SECRET], None)));
        round_trip(&Verifier::Alcmeon(scheme(&[SECRET], Some("path+body"))));
    }
}
