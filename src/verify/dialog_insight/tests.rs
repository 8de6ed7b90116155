use std::time::SystemTime;

use rsa::pkcs1::EncodeRsaPublicKey;

use super::*;
use crate::secret::resolve;
use crate::verify::test_support::{request, TestHeaders};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/dialog-insight");
const PRIVATE: &str = include_str!("../../../fixtures/dialog-insight/test-private-key.pem");
const ROTATION_PRIVATE: &str =
    include_str!("../../../fixtures/dialog-insight/test-rotation-private-key.pem");
const BODY: &str = r#"{"event":"ContactModified","contact":{"idContact":7734102}}"#;

fn file(name: &str) -> String {
    format!("file:{FIXTURES}/{name}")
}

/// The scheme with the keys at `keys` (`file:` references, labelled with their index).
fn build(
    keys: &[String],
    hash: Option<&str>,
    encoding: Option<&str>,
) -> Result<DialogInsight, Vec<String>> {
    let texts: Vec<(String, Secret)> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| (format!("public_keys[{i}]"), resolve(key).unwrap().0))
        .collect();
    DialogInsight::new(&texts, hash, encoding, false)
}

fn scheme(keys: &[String]) -> DialogInsight {
    build(keys, None, None).unwrap()
}

fn check(
    scheme: &DialogInsight,
    header: Option<String>,
    body: &'static str,
) -> Result<Claims, Rejection> {
    let headers = TestHeaders(header.map(|h| vec![(SIGNATURE, h)]).unwrap_or_default());
    scheme.verify(&request(&headers, body, SystemTime::now()))
}

fn signed(pem: &str, hash: Hash, encoding: Encoding, body: &str) -> Option<String> {
    Some(DialogInsight::sign_with_private_key(pem, hash, encoding, body.as_bytes()).unwrap())
}

fn sha256_base64(pem: &str, body: &str) -> Option<String> {
    signed(pem, Hash::Sha256, Encoding::Base64, body)
}

#[test]
fn valid_with_spki_pkcs1_and_xml_keys() {
    let spki = keys::parse_public_key(include_bytes!(
        "../../../fixtures/dialog-insight/test-public-key.pem"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pkcs1 = dir.path().join("pkcs1.pem");
    std::fs::write(
        &pkcs1,
        spki.to_pkcs1_pem(rsa::pkcs8::LineEnding::CRLF).unwrap(),
    )
    .unwrap();
    let pkcs1 = format!("file:{}", pkcs1.display());
    assert!(std::fs::read_to_string(&pkcs1[5..])
        .unwrap()
        .starts_with("-----BEGIN RSA PUBLIC KEY"));
    for key in [
        file("test-public-key.pem"),
        pkcs1,
        file("test-public-key.xml"),
    ] {
        let scheme = scheme(std::slice::from_ref(&key));
        let claims = check(&scheme, sha256_base64(PRIVATE, BODY), BODY);
        assert_eq!(claims, Ok(Claims::default()), "{key}");
    }
}

#[test]
fn the_fixture_signature_made_by_openssl_verifies() {
    let fixture: serde_json::Value = serde_json::from_str(include_str!(
        "../../../fixtures/dialog-insight/contact-modified.json"
    ))
    .unwrap();
    let body: &'static str = fixture["body"].as_str().unwrap().to_string().leak();
    let header = fixture["headers"][SIGNATURE].as_str().unwrap().to_string();
    // PKCS#1 v1.5 is deterministic: our signer gives openssl's bytes.
    assert_eq!(
        sha256_base64(PRIVATE, body).as_deref(),
        Some(header.as_str())
    );
    let scheme = scheme(&[file("test-public-key.xml")]);
    assert_eq!(check(&scheme, Some(header), body), Ok(Claims::default()));
}

#[test]
fn sha1_and_hex_options() {
    let keys = [file("test-public-key.pem")];
    for (hash_name, hash) in [("sha256", Hash::Sha256), ("sha1", Hash::Sha1)] {
        for (encoding_name, encoding) in [("base64", Encoding::Base64), ("hex", Encoding::Hex)] {
            let what = format!("{hash_name}/{encoding_name}");
            let scheme = build(&keys, Some(hash_name), Some(encoding_name)).unwrap();
            assert_eq!(
                (scheme.hash(), scheme.signature_encoding()),
                (hash, encoding)
            );
            let good = signed(PRIVATE, hash, encoding, BODY);
            assert!(check(&scheme, good, BODY).is_ok(), "{what}");
            let other_hash = if hash == Hash::Sha1 {
                Hash::Sha256
            } else {
                Hash::Sha1
            };
            let wrong = signed(PRIVATE, other_hash, encoding, BODY);
            assert_eq!(
                check(&scheme, wrong, BODY),
                Err(Rejection::BadSignature),
                "{what}"
            );
        }
    }
    // Hex in either case.
    let scheme = build(&keys, None, Some("hex")).unwrap();
    let upper = signed(PRIVATE, Hash::Sha256, Encoding::Hex, BODY).map(|s| s.to_uppercase());
    assert!(check(&scheme, upper, BODY).is_ok());
}

#[test]
fn rejections() {
    let scheme = scheme(&[file("test-public-key.pem")]);
    let good = sha256_base64(PRIVATE, BODY);
    assert_eq!(
        check(
            &scheme,
            good.clone(),
            r#"{"event":"ContactModified","contact":{"idContact":7734103}}"#
        ),
        Err(Rejection::BadSignature),
        "tampered body"
    );
    assert_eq!(
        check(&scheme, sha256_base64(ROTATION_PRIVATE, BODY), BODY),
        Err(Rejection::BadSignature),
        "wrong key"
    );
    assert_eq!(
        check(&scheme, None, BODY),
        Err(Rejection::MissingHeader(SIGNATURE))
    );
    for malformed in ["not base64!", "", "   "] {
        assert_eq!(
            check(&scheme, Some(malformed.into()), BODY),
            Err(Rejection::MalformedHeader(SIGNATURE)),
            "{malformed:?}"
        );
    }
    // Hex digits are base64 too: a hex signature decodes, to the wrong bytes.
    let hex = signed(PRIVATE, Hash::Sha256, Encoding::Hex, BODY);
    assert_eq!(check(&scheme, hex, BODY), Err(Rejection::BadSignature));
    // Valid base64 of the wrong length, and a truncated signature.
    assert_eq!(
        check(&scheme, Some("AAAA".into()), BODY),
        Err(Rejection::BadSignature)
    );
    let truncated = good.map(|s| s[..s.len() - 8].to_string() + "====");
    assert!(check(&scheme, truncated, BODY).is_err());
}

#[test]
fn any_key_during_rotation() {
    let scheme = scheme(&[
        file("test-rotation-public-key.pem"),
        file("test-public-key.xml"),
    ]);
    for pem in [PRIVATE, ROTATION_PRIVATE] {
        assert!(check(&scheme, sha256_base64(pem, BODY), BODY).is_ok());
    }
}

#[test]
fn is_test_marks_the_claims() {
    let scheme = scheme(&[file("test-public-key.pem")]);
    let cases: [(&'static str, bool); 6] = [
        (r#"{"isTest":true,"event":"ContactModified"}"#, true),
        (r#"{ "event": "x", "isTest" : true }"#, true),
        (r#"{"isTest":false}"#, false),
        (r#"{"isTest":"true"}"#, false),
        (r#"{"contact":{"isTest":true}}"#, false),
        (r#"isTest: true (not JSON)"#, false),
    ];
    for (body, test) in cases {
        let claims = check(&scheme, sha256_base64(PRIVATE, body), body).unwrap();
        assert_eq!(claims.test, test, "{body}");
        assert_eq!(claims.event_id, None);
    }
}

#[test]
fn forward_tests_defaults_to_false() {
    let keys = [file("test-public-key.pem")];
    assert!(!scheme(&keys).forward_tests());
    let text = resolve(&keys[0]).unwrap().0;
    let forwarding = DialogInsight::new(&[("key".into(), text)], None, None, true);
    assert!(forwarding.unwrap().forward_tests());
}

#[test]
fn every_config_error_is_reported_at_once() {
    let keys = [
        file("test-weak-1024-public-key.pem"),
        file("test-private-key.pem"),
        file("test-public-key.pem"),
    ];
    let errors = build(&keys, Some("md5"), Some("base32")).unwrap_err();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].starts_with("public_keys[0]: ") && errors[0].contains("1024-bit"));
    assert!(errors[1].contains("private key"), "{errors:?}");
    assert!(errors[2].contains("hash \"md5\""), "{errors:?}");
    assert!(
        errors[3].contains("signature_encoding \"base32\""),
        "{errors:?}"
    );
}

#[test]
fn signing_needs_a_private_key() {
    let public = include_str!("../../../fixtures/dialog-insight/test-public-key.pem");
    assert!(
        DialogInsight::sign_with_private_key(public, Hash::Sha256, Encoding::Base64, b"x").is_err()
    );
    let scheme = scheme(&[file("test-public-key.pem")]);
    let headers = scheme.sign(PRIVATE, BODY.as_bytes()).unwrap();
    assert_eq!(headers[0].0, SIGNATURE);
    assert!(check(&scheme, Some(headers[0].1.clone()), BODY).is_ok());
}

#[test]
fn debug_shows_key_sizes_not_keys() {
    let text = format!("{:?}", scheme(&[file("test-public-key.pem")]));
    assert!(text.contains("key_bits: [2048]"), "{text}");
}
