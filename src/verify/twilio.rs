//! Twilio: `X-Twilio-Signature` holds the base64 HMAC-SHA1, keyed with the account's auth token,
//! of the full URL Twilio called followed, for form posts, by every POST parameter as key then
//! value, sorted by key (and by value for a repeated key, as twilio-python does). For JSON
//! bodies Twilio adds `bodySHA256=<hex sha256 of the body>` to the URL's query and signs the URL
//! alone; the body must then hash to that value. There is no timestamp.
//!
//! The URL Twilio calls is the provider's `public_url` (the gateway may sit behind a proxy or
//! TLS terminator); when it has no query of its own, the query we received is appended. Like
//! Twilio's validators, both the URL with the scheme's default port (`:443`, `:80`) and without
//! any port are tried. The event id is `I-Twilio-Idempotency-Token` when Twilio sends one.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::fields::first_secret;
use super::mac::{self, Algorithm};
use super::{required, Claims, Rejection, SignInput, SignedHeaders, Unverified};
use crate::config::{RawProvider, Secret};
use crate::event::EventId;

const SIGNATURE: &str = "X-Twilio-Signature";
const IDEMPOTENCY: &str = "I-Twilio-Idempotency-Token";
const CONTENT_TYPE: &str = "Content-Type";
const FORM: &str = "application/x-www-form-urlencoded";
const BODY_HASH: &str = "bodySHA256";

#[derive(Debug)]
pub struct Twilio {
    /// Auth tokens.
    secrets: Vec<Secret>,
    /// `public_url` as written (Twilio signs the text it was configured with).
    public_url: String,
    /// Whether `public_url` carries a query of its own (then the received one is not appended).
    has_query: bool,
}

impl Twilio {
    pub fn build(raw: &RawProvider, secrets: Vec<Secret>) -> Result<Twilio, Vec<String>> {
        let Some(text) = raw.public_url.as_deref() else {
            return Err(vec![
                "verify = \"twilio\" needs `public_url`, the URL Twilio calls".to_string(),
            ]);
        };
        match url::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(Twilio {
                secrets,
                public_url: text.to_string(),
                has_query: url.query().is_some(),
            }),
            _ => Err(vec![format!("public_url {text:?} is not an http(s) URL")]),
        }
    }

    pub fn sign(&self, input: &SignInput<'_>) -> Result<SignedHeaders, String> {
        let secret = first_secret(&self.secrets)?;
        let url = input.url.as_str();
        let (content_type, params) = match body_hash_in(url) {
            Some(hash) if hash == hex::encode(Sha256::digest(input.body)) => {
                ("application/json", Vec::new())
            }
            Some(_) => return Err(format!("{BODY_HASH} in the URL does not match the body")),
            None => (
                FORM,
                sorted_params(input.body).ok_or("the form has too many parameters")?,
            ),
        };
        let tag = mac::sign(
            Algorithm::Sha1,
            secret.expose(),
            &signed_parts(url, &params),
        );
        Ok(vec![
            (SIGNATURE.to_string(), BASE64.encode(tag)),
            (CONTENT_TYPE.to_string(), content_type.to_string()),
            (IDEMPOTENCY.to_string(), input.event_id.to_string()),
        ])
    }

    pub fn verify(&self, request: &Unverified<'_>) -> Result<Claims, Rejection> {
        let tag = BASE64
            .decode(required(request, SIGNATURE)?.trim())
            .map_err(|_| Rejection::MalformedHeader(SIGNATURE))?;
        let url = if self.has_query || request.query.is_empty() {
            self.public_url.clone()
        } else {
            format!("{}?{}", self.public_url, request.query)
        };
        let params = if let Some(hash) = body_hash_in(&url) {
            // Not a secret: a plain comparison is fine. The URL carrying it is signed below.
            if hash != hex::encode(Sha256::digest(&request.body)) {
                return Err(Rejection::BadSignature);
            }
            Vec::new()
        } else if is_form(request.headers.get(CONTENT_TYPE)) {
            sorted_params(&request.body).ok_or(Rejection::TooManyParameters)?
        } else if request.body.is_empty() {
            Vec::new()
        } else {
            // A body the signature would not cover.
            return Err(Rejection::MalformedHeader(CONTENT_TYPE));
        };
        let mut matched = false;
        for variant in port_variants(&url) {
            let parts = signed_parts(&variant, &params);
            matched |= mac::matches_any(
                Algorithm::Sha1,
                &self.secrets,
                &parts,
                std::slice::from_ref(&tag),
            );
        }
        if !matched {
            return Err(Rejection::BadSignature);
        }
        Ok(Claims::unsigned_id(
            request.headers.get(IDEMPOTENCY).and_then(EventId::new),
        ))
    }
}

/// The URL followed by each parameter's key and value.
fn signed_parts<'a>(url: &'a str, params: &'a [(String, String)]) -> Vec<&'a [u8]> {
    let mut parts = vec![url.as_bytes()];
    for (key, value) in params {
        parts.push(key.as_bytes());
        parts.push(value.as_bytes());
    }
    parts
}

/// Form parameters a request may carry: Twilio's own requests carry a few dozen. Decoding and
/// sorting half a million cost 193 ms of CPU before this cap.
pub const MAX_FORM_PARAMS: usize = 1000;

/// The decoded form parameters, sorted by key then value, a repeated pair kept once
/// (twilio-python's `sorted(set(...))`); `None` past [`MAX_FORM_PARAMS`], decoding no further.
fn sorted_params(body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body)
        .take(MAX_FORM_PARAMS + 1)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    if params.len() > MAX_FORM_PARAMS {
        return None;
    }
    params.sort();
    params.dedup();
    Some(params)
}

/// `application/x-www-form-urlencoded`, with or without parameters such as `charset`.
fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM))
}

/// The `bodySHA256` value in the URL's query, if there is one.
fn body_hash_in(url: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == BODY_HASH)
        .map(|(_, value)| value.into_owned())
}

/// The URL without its port and with the scheme's default port, as Twilio's validators try
/// (`remove_port` and `add_port` in twilio-python). Written on the text, since a URL parser would
/// normalize the default port away.
fn port_variants(url: &str) -> [String; 2] {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return [url.to_string(), url.to_string()];
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let host_start = url[scheme_end..authority_end]
        .rfind('@')
        .map_or(scheme_end, |i| scheme_end + i + 1);
    let host = &url[host_start..authority_end];
    // The port's colon: after the closing bracket of an IPv6 literal, else the last one.
    let after_brackets = host.rfind(']').map_or(0, |i| i + 1);
    let port_colon = host[after_brackets..]
        .rfind(':')
        .map(|i| host_start + after_brackets + i);
    match port_colon {
        Some(colon) => {
            let without = format!("{}{}", &url[..colon], &url[authority_end..]);
            [without, url.to_string()]
        }
        None => {
            let port = if url.starts_with("https:") { 443 } else { 80 };
            let with = format!("{}:{port}{}", &url[..authority_end], &url[authority_end..]);
            [url.to_string(), with]
        }
    }
}

impl Twilio {
    /// The URL Twilio calls, as configured: what `hookgate send-test` signs over.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::sign::tests::round_trip;
    use crate::verify::test_support::{raw, TestHeaders};
    use crate::verify::{Unverified, Verifier};
    use std::time::SystemTime;

    // Published in twilio-python's tests/unit/test_request_validator.py.
    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php";
    const QUERY: &str = "foo=1&bar=2";
    const FORM_BODY: &str =
        "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
    const FORM_SIG: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    const PORT_443_SIG: &str = "kvajT1Ptam85bY51eRf/AJRuM3w=";
    const DUP_BODY: &str = "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234";
    const DUP_SIG: &str = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";
    const JSON_BODY: &str = r#"{"property": "value", "boolean": true}"#;
    const JSON_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    const JSON_SIG: &str = "a9nBmqA0ju/hNViExpshrM61xv4=";

    fn scheme(secrets: &[&str], public_url: &str) -> Twilio {
        let mut provider = raw("twilio");
        provider.public_url = Some(public_url.into());
        let secrets = secrets.iter().map(|s| Secret::from_literal(s)).collect();
        Twilio::build(&provider, secrets).unwrap()
    }

    fn form(signature: &str) -> Vec<(&'static str, String)> {
        vec![
            (SIGNATURE, signature.into()),
            (CONTENT_TYPE, format!("{FORM}; charset=utf-8")),
            (IDEMPOTENCY, "AC1-key".into()),
        ]
    }

    fn check(
        scheme: &Twilio,
        headers: Vec<(&'static str, String)>,
        query: &str,
        body: &str,
    ) -> Result<Claims, Rejection> {
        let headers = TestHeaders(headers);
        scheme.verify(&Unverified {
            headers: &headers,
            path: "/hooks/twilio",
            query,
            body: body.to_string().into(),
            peer: None,
            now: SystemTime::now(),
        })
    }

    #[test]
    fn published_form_vector() {
        let twilio = scheme(&[TOKEN], URL);
        let claims = check(&twilio, form(FORM_SIG), QUERY, FORM_BODY).unwrap();
        assert_eq!(claims.event_id, EventId::new("AC1-key"));
        // The query written in public_url is used as is.
        let with_query = scheme(&[TOKEN], &format!("{URL}?{QUERY}"));
        assert!(check(&with_query, form(FORM_SIG), "other=3", FORM_BODY).is_ok());
        // Parameter order in the body does not matter.
        let reordered = "To=%2B18005551212&From=%2B14158675309&Digits=1234&Caller=%2B14158675309&CallSid=CA1234567890ABCDE";
        assert!(check(&twilio, form(FORM_SIG), QUERY, reordered).is_ok());
    }

    #[test]
    fn with_and_without_the_default_port() {
        // Twilio signed with :443; our public_url has none, and the other way round.
        let twilio = scheme(&[TOKEN], URL);
        assert!(check(&twilio, form(PORT_443_SIG), QUERY, FORM_BODY).is_ok());
        let with_port = scheme(&[TOKEN], "https://mycompany.com:443/myapp.php");
        assert!(check(&with_port, form(FORM_SIG), QUERY, FORM_BODY).is_ok());
        assert!(check(&with_port, form(PORT_443_SIG), QUERY, FORM_BODY).is_ok());
        assert_eq!(
            port_variants("http://u:p@[::1]/x?a=b"),
            [
                "http://u:p@[::1]/x?a=b".to_string(),
                "http://u:p@[::1]:80/x?a=b".to_string()
            ]
        );
        assert_eq!(
            port_variants("https://h:8443"),
            ["https://h".to_string(), "https://h:8443".to_string()]
        );
    }

    #[test]
    fn published_duplicate_parameters() {
        let twilio = scheme(&[TOKEN], URL);
        assert!(check(&twilio, form(DUP_SIG), QUERY, DUP_BODY).is_ok());
    }

    #[test]
    fn published_json_vector() {
        let twilio = scheme(&[TOKEN], URL);
        let headers = vec![
            (SIGNATURE, JSON_SIG.to_string()),
            (CONTENT_TYPE, "application/json".to_string()),
        ];
        let query = format!("{QUERY}&{BODY_HASH}={JSON_HASH}");
        let claims = check(&twilio, headers.clone(), &query, JSON_BODY).unwrap();
        assert_eq!(claims.event_id, None);
        // A changed body no longer hashes to bodySHA256.
        assert_eq!(
            check(&twilio, headers.clone(), &query, r#"{"property": "other"}"#),
            Err(Rejection::BadSignature)
        );
        // Without bodySHA256, a JSON body is not covered by the signature: refused.
        assert_eq!(
            check(&twilio, headers, QUERY, JSON_BODY),
            Err(Rejection::MalformedHeader(CONTENT_TYPE))
        );
    }

    #[test]
    fn rotation_accepts_any_token() {
        let twilio = scheme(&["old-token", TOKEN], URL);
        assert!(check(&twilio, form(FORM_SIG), QUERY, FORM_BODY).is_ok());
    }

    #[test]
    fn rejections() {
        let twilio = scheme(&[TOKEN], URL);
        let tampered = FORM_BODY.replace("Digits=1234", "Digits=9999");
        assert_eq!(
            check(&twilio, form(FORM_SIG), QUERY, &tampered),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&scheme(&["54321"], URL), form(FORM_SIG), QUERY, FORM_BODY),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&twilio, form(FORM_SIG), "foo=1", FORM_BODY),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(
                &scheme(&[TOKEN], "https://mycompany.com/other.php"),
                form(FORM_SIG),
                QUERY,
                FORM_BODY
            ),
            Err(Rejection::BadSignature)
        );
        let unsigned = form(FORM_SIG).into_iter().skip(1).collect();
        assert_eq!(
            check(&twilio, unsigned, QUERY, FORM_BODY),
            Err(Rejection::MissingHeader(SIGNATURE))
        );
        assert_eq!(
            check(&twilio, form("not base64!"), QUERY, FORM_BODY),
            Err(Rejection::MalformedHeader(SIGNATURE))
        );
    }

    #[test]
    fn forms_over_the_parameter_cap_are_refused_before_decoding_them_all() {
        let twilio = scheme(&[TOKEN], URL);
        let form_of = |n: usize| {
            (0..n)
                .map(|i| format!("p{i}=v"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert_eq!(
            check(&twilio, form(FORM_SIG), QUERY, &form_of(MAX_FORM_PARAMS)),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(
                &twilio,
                form(FORM_SIG),
                QUERY,
                &form_of(MAX_FORM_PARAMS + 1)
            ),
            Err(Rejection::TooManyParameters)
        );
        assert_eq!(sorted_params(form_of(500_000).as_bytes()), None);
    }

    #[test]
    fn public_url_is_required_and_checked() {
        let errors = Twilio::build(&raw("twilio"), vec![]).unwrap_err();
        assert!(errors[0].contains("public_url"), "{errors:?}");
        for bad in ["mycompany.com/sms", "ftp://mycompany.com/sms", "https://"] {
            let mut provider = raw("twilio");
            provider.public_url = Some(bad.into());
            assert!(Twilio::build(&provider, vec![]).is_err(), "{bad}");
        }
    }

    #[test]
    fn signing_round_trips() {
        // round_trip posts to https://hooks.example.com/hooks/p without a query.
        let twilio = scheme(&[TOKEN], "https://hooks.example.com/hooks/p");
        round_trip(&Verifier::Twilio(twilio));
    }

    #[test]
    fn signs_json_over_a_url_with_its_body_hash() {
        let twilio = scheme(&[TOKEN], URL);
        let url: url::Url = format!("{URL}?{QUERY}&{BODY_HASH}={JSON_HASH}")
            .parse()
            .unwrap();
        let input = SignInput {
            body: JSON_BODY.as_bytes(),
            url: &url,
            now: SystemTime::now(),
            event_id: "e",
        };
        let headers = twilio.sign(&input).unwrap();
        assert_eq!(headers[0], (SIGNATURE.to_string(), JSON_SIG.to_string()));
        let wrong = SignInput {
            body: b"{}",
            ..input
        };
        assert!(twilio.sign(&wrong).is_err());
    }
}
