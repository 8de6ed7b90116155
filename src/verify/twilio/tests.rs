use super::*;
use crate::verify::sign::tests::round_trip;
use crate::verify::test_support::TestHeaders;
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

// The same strings under HMAC-SHA256 (a Webhook Setting's signature), computed with Python's
// `hmac` and checked with `openssl dgst -sha256 -hmac 12345 -binary | base64`.
const FORM_SIG_256: &str = "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s=";
const PORT_443_SIG_256: &str = "grxRoa/VNtXxd524NGLxIdev83nh23xhrRUVm50Umq4=";
const JSON_SIG_256: &str = "+UOCWf84gdgo/5Hpg4m5/EgKnJA2/TbOw5sPNVr3bPk=";
const SETTINGS_256: &str = "key=KS0123456789abcdef0123456789abcdef,algorithm=HMAC_SHA256";

fn scheme(secrets: &[&str], public_url: &str) -> Twilio {
    scheme_accepting(secrets, public_url, None)
}

/// A scheme whose `algorithm` is `algorithm`.
fn scheme_accepting(secrets: &[&str], public_url: &str, algorithm: Option<&str>) -> Twilio {
    let secrets = secrets.iter().map(|s| Secret::from_literal(s)).collect();
    Twilio::new(secrets, Some(public_url), algorithm).unwrap()
}

/// `form(signature)` with the settings header naming HMAC-SHA256.
fn form_256(signature: &str) -> Vec<(&'static str, String)> {
    let mut headers = form(signature);
    headers.push((SETTINGS, SETTINGS_256.into()));
    headers
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
    // The parameters are signed, not the bytes: a `json:` id read from them is not vouched for.
    assert!(claims.body_bytes_unsigned);
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
    assert!(!claims.body_bytes_unsigned, "bodySHA256 signs the bytes");
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
fn a_json_body_when_the_public_url_has_a_query_of_its_own() {
    // Twilio appends `bodySHA256` to the query of the URL it calls.
    let twilio = scheme(&[TOKEN], &format!("{URL}?{QUERY}"));
    let headers = vec![
        (SIGNATURE, JSON_SIG.to_string()),
        (CONTENT_TYPE, "application/json".to_string()),
    ];
    let query = format!("{QUERY}&{BODY_HASH}={JSON_HASH}");
    assert!(check(&twilio, headers.clone(), &query, JSON_BODY).is_ok());
    // The form vector still verifies against the configured query alone.
    assert!(check(&twilio, form(FORM_SIG), QUERY, FORM_BODY).is_ok());
    // A query that is not the configured one: the configured URL is what must be signed.
    assert_eq!(
        check(
            &twilio,
            headers,
            &format!("x=1&{BODY_HASH}={JSON_HASH}"),
            JSON_BODY
        ),
        Err(Rejection::MalformedHeader(CONTENT_TYPE))
    );
}

#[test]
fn sha256_when_the_settings_header_names_it() {
    let twilio = scheme(&[TOKEN], URL);
    let claims = check(&twilio, form_256(FORM_SIG_256), QUERY, FORM_BODY).unwrap();
    assert_eq!(claims.event_id, EventId::new("AC1-key"));
    assert!(check(&twilio, form_256(PORT_443_SIG_256), QUERY, FORM_BODY).is_ok());
    let json = |signature: &str| {
        vec![
            (SIGNATURE, signature.to_string()),
            (CONTENT_TYPE, "application/json".to_string()),
            (SETTINGS, "algorithm=hmac-sha256".to_string()),
        ]
    };
    let query = format!("{QUERY}&{BODY_HASH}={JSON_HASH}");
    assert!(check(&twilio, json(JSON_SIG_256), &query, JSON_BODY).is_ok());
    // The header decides the hash: a SHA-1 tag under it, or a SHA-256 tag without it, fails.
    assert_eq!(
        check(&twilio, json(JSON_SIG), &query, JSON_BODY),
        Err(Rejection::BadSignature)
    );
    assert_eq!(
        check(&twilio, form_256(FORM_SIG), QUERY, FORM_BODY),
        Err(Rejection::BadSignature)
    );
    assert_eq!(
        check(&twilio, form(FORM_SIG_256), QUERY, FORM_BODY),
        Err(Rejection::BadSignature)
    );
    // A tampered body, another key, an algorithm hookgate does not know.
    let tampered = FORM_BODY.replace("Digits=1234", "Digits=9999");
    assert_eq!(
        check(&twilio, form_256(FORM_SIG_256), QUERY, &tampered),
        Err(Rejection::BadSignature)
    );
    assert_eq!(
        check(
            &scheme(&["54321"], URL),
            form_256(FORM_SIG_256),
            QUERY,
            FORM_BODY
        ),
        Err(Rejection::BadSignature)
    );
    let mut md5 = form(FORM_SIG_256);
    md5.push((SETTINGS, "key=K,algorithm=HMAC_MD5".into()));
    assert_eq!(
        check(&twilio, md5, QUERY, FORM_BODY),
        Err(Rejection::MalformedHeader(SETTINGS))
    );
}

#[test]
fn a_sha256_provider_refuses_sha1() {
    let twilio = scheme_accepting(&["auth-token", TOKEN], URL, Some("sha256"));
    assert!(check(&twilio, form_256(FORM_SIG_256), QUERY, FORM_BODY).is_ok());
    // A valid SHA-1 signature, with no settings header or with one naming SHA-1: refused
    // before any HMAC is computed.
    assert_eq!(
        check(&twilio, form(FORM_SIG), QUERY, FORM_BODY),
        Err(Rejection::AlgorithmNotAllowed)
    );
    let mut sha1 = form(FORM_SIG);
    sha1.push((SETTINGS, "key=K,algorithm=HMAC_SHA1".into()));
    assert_eq!(
        check(&twilio, sha1, QUERY, FORM_BODY),
        Err(Rejection::AlgorithmNotAllowed)
    );
    // And the other way round.
    let sha1_only = scheme_accepting(&[TOKEN], URL, Some("sha1"));
    assert!(check(&sha1_only, form(FORM_SIG), QUERY, FORM_BODY).is_ok());
    assert_eq!(
        check(&sha1_only, form_256(FORM_SIG_256), QUERY, FORM_BODY),
        Err(Rejection::AlgorithmNotAllowed)
    );
}

#[test]
fn an_unknown_algorithm_is_a_config_error_reported_with_the_others() {
    let errors = Twilio::new(vec![], None, Some("sha512")).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("public_url"), "{errors:?}");
    assert!(errors[1].contains("sha512"), "{errors:?}");
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
    let errors = Twilio::new(vec![], None, None).unwrap_err();
    assert!(errors[0].contains("public_url"), "{errors:?}");
    for bad in ["mycompany.com/sms", "ftp://mycompany.com/sms", "https://"] {
        assert!(Twilio::new(vec![], Some(bad), None).is_err(), "{bad}");
    }
}

#[test]
fn signing_round_trips() {
    // round_trip posts to https://hooks.example.com/hooks/p without a query.
    for algorithm in [None, Some("sha1"), Some("sha256")] {
        let twilio = scheme_accepting(&[TOKEN], "https://hooks.example.com/hooks/p", algorithm);
        round_trip(&Verifier::Twilio(twilio));
    }
}

/// What `twilio` signs for `body` posted to `url`.
fn sign_for(twilio: &Twilio, url: &str, body: &str) -> Result<SignedHeaders, String> {
    let url: url::Url = url.parse().unwrap();
    twilio.sign(&SignInput {
        body: body.as_bytes(),
        url: &url,
        now: SystemTime::now(),
        event_id: "e",
    })
}

#[test]
fn a_sha256_provider_signs_with_sha256_and_says_so() {
    let twilio = scheme_accepting(&[TOKEN], URL, Some("sha256"));
    let headers = sign_for(&twilio, &format!("{URL}?{QUERY}"), FORM_BODY).unwrap();
    assert_eq!(
        headers[0],
        (SIGNATURE.to_string(), FORM_SIG_256.to_string())
    );
    assert!(headers.contains(&(SETTINGS.to_string(), "algorithm=HMAC_SHA256".to_string())));
}

#[test]
fn signs_json_over_a_url_with_its_body_hash() {
    let twilio = scheme(&[TOKEN], URL);
    let url = format!("{URL}?{QUERY}&{BODY_HASH}={JSON_HASH}");
    let headers = sign_for(&twilio, &url, JSON_BODY).unwrap();
    assert_eq!(headers[0], (SIGNATURE.to_string(), JSON_SIG.to_string()));
    assert!(sign_for(&twilio, &url, "{}").is_err());
}
