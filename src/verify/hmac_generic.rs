//! The generic HMAC scheme: a tag of the body in a configured header (`header`), under a
//! configured hash (`algorithm`: sha1, sha256, sha512), encoded as `hex` or `base64`
//! (`encoding`), after an optional literal `prefix` such as `sha256=`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::mac::{self, Algorithm};
use super::{Rejection, SignInput, SignedHeaders, Unverified};
use crate::event::EventId;
use crate::secret::Secret;

/// How the tag is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

impl Encoding {
    pub fn parse(name: &str) -> Result<Encoding, String> {
        match name {
            "hex" => Ok(Encoding::Hex),
            "base64" => Ok(Encoding::Base64),
            other => Err(format!(
                "encoding {other:?} is not one of \"hex\", \"base64\""
            )),
        }
    }

    pub fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex::decode(text).ok(),
            Encoding::Base64 => BASE64.decode(text).ok(),
        }
    }
}

#[derive(Debug)]
pub struct GenericHmac {
    secrets: Vec<Secret>,
    header: String,
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: String,
}

impl GenericHmac {
    /// The keys as written: `header` (required), `algorithm` (default `sha256`), `encoding`
    /// (default `hex`) and `prefix` (default none). Every problem is reported at once.
    pub fn new(
        secrets: Vec<Secret>,
        header: Option<&str>,
        algorithm: Option<&str>,
        encoding: Option<&str>,
        prefix: Option<&str>,
    ) -> Result<GenericHmac, Vec<String>> {
        let mut errors = Vec::new();
        let header = match header {
            Some(name)
                if actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).is_ok() =>
            {
                Some(name)
            }
            Some(name) => {
                errors.push(format!("header {name:?} is not a valid header name"));
                None
            }
            None => {
                errors.push("verify = \"hmac\" needs `header`".to_string());
                None
            }
        };
        let algorithm = Algorithm::parse(algorithm.unwrap_or("sha256"))
            .map_err(|e| errors.push(e))
            .ok();
        let encoding = Encoding::parse(encoding.unwrap_or("hex"))
            .map_err(|e| errors.push(e))
            .ok();
        match (header, algorithm, encoding) {
            (Some(header), Some(algorithm), Some(encoding)) if errors.is_empty() => {
                Ok(GenericHmac {
                    secrets,
                    header: header.to_string(),
                    algorithm,
                    encoding,
                    prefix: prefix.unwrap_or_default().to_string(),
                })
            }
            _ => Err(errors),
        }
    }

    pub fn sign(&self, input: &SignInput<'_>) -> SignedHeaders {
        let tag = mac::sign(self.algorithm, self.secrets[0].expose(), &[input.body]);
        let text = match self.encoding {
            Encoding::Hex => hex::encode(tag),
            Encoding::Base64 => BASE64.encode(tag),
        };
        vec![(self.header.clone(), format!("{}{text}", self.prefix))]
    }

    pub fn verify(&self, request: &Unverified<'_>) -> Result<Option<EventId>, Rejection> {
        let value = request
            .headers
            .get(&self.header)
            .ok_or(Rejection::MissingHeader("(configured signature header)"))?;
        let tag = value
            .strip_prefix(self.prefix.as_str())
            .and_then(|text| self.encoding.decode(text.trim()))
            .ok_or(Rejection::MalformedHeader("(configured signature header)"))?;
        if mac::matches_any(self.algorithm, &self.secrets, &[&request.body], &[tag]) {
            Ok(None)
        } else {
            Err(Rejection::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::TestHeaders;
    use std::time::SystemTime;

    fn scheme(algorithm: &str, encoding: &str, prefix: Option<&str>) -> GenericHmac {
        let secrets = vec![Secret::from_literal("key")];
        GenericHmac::new(
            secrets,
            Some("X-Sig"),
            Some(algorithm),
            Some(encoding),
            prefix,
        )
        .unwrap()
    }

    fn check(scheme: &GenericHmac, value: &str) -> Result<Option<EventId>, Rejection> {
        let headers = TestHeaders(vec![("x-sig", value.to_string())]);
        scheme.verify(&Unverified {
            headers: &headers,
            path: "/hooks/p",
            query: "",
            body: "payload".into(),
            peer: None,
            now: SystemTime::now(),
        })
    }

    #[test]
    fn every_algorithm_and_encoding() {
        for (name, algorithm) in [
            ("sha1", Algorithm::Sha1),
            ("sha256", Algorithm::Sha256),
            ("sha512", Algorithm::Sha512),
        ] {
            let tag = mac::sign(algorithm, b"key", &[b"payload"]);
            assert_eq!(
                check(&scheme(name, "hex", None), &hex::encode(&tag)),
                Ok(None)
            );
            let b64 = format!("sha={}", BASE64.encode(&tag));
            assert_eq!(check(&scheme(name, "base64", Some("sha=")), &b64), Ok(None));
            assert_eq!(
                check(&scheme(name, "base64", Some("other=")), &b64),
                Err(Rejection::MalformedHeader("(configured signature header)"))
            );
        }
    }

    #[test]
    fn wrong_tag_is_rejected() {
        let tag = mac::sign(Algorithm::Sha256, b"other", &[b"payload"]);
        assert_eq!(
            check(&scheme("sha256", "hex", None), &hex::encode(tag)),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn config_errors_are_collected() {
        let errors = GenericHmac::new(vec![], None, Some("md5"), Some("base32"), None).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
    }
}
