//! The `dialog-insight` scheme end to end: the signed fixtures are stored (the `isTest` one with
//! `source = "test"`), every rejection is a 401 that stores nothing, XML keys and rotation work
//! in the real binary, and a bad key makes `check-config` fail.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use base64::Engine as _;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest, Sha256};

use common::{assert_unauthorized, fixture_path, provider, toml_str, Fixture, Gateway};

const HEADER: &str = "X-DI-Signature";

/// A `file:` reference to a key in `fixtures/dialog-insight/`.
fn key(name: &str) -> String {
    format!(
        "file:{}",
        fixture_path(&format!("dialog-insight/{name}")).display()
    )
}

/// A `dialog-insight` provider table with these keys and extra lines.
fn di_provider(name: &str, keys: &[&str], extra: &str) -> String {
    let keys: Vec<String> = keys.iter().map(|k| toml_str(&key(k))).collect();
    provider(
        name,
        "dialog-insight",
        &[],
        &format!("public_keys = [{}]\n{extra}", keys.join(", ")),
    )
}

/// Base64 RSA PKCS#1 v1.5 SHA-256 signature of `body` with a fixture private key.
fn sign(private_key: &str, body: &[u8]) -> String {
    let pem =
        std::fs::read_to_string(fixture_path(&format!("dialog-insight/{private_key}"))).unwrap();
    let key = RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
    let signature = key
        .sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(body))
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(signature)
}

fn signed(signature: &str) -> Vec<(String, String)> {
    vec![
        (HEADER.to_string(), signature.to_string()),
        ("Content-Type".to_string(), "application/json".to_string()),
    ]
}

#[test]
fn both_fixtures_are_stored_and_the_test_one_as_a_test() {
    let real = Fixture::load("dialog-insight/contact-modified.json");
    let test = Fixture::load("dialog-insight/contact-modified-test.json");
    assert!(test.body.contains(r#""isTest":true"#));
    let gw = Gateway::start(&real.provider_toml("di"));
    for fixture in [&real, &test] {
        assert_eq!(
            gw.post("di", &fixture.headers, fixture.body.as_bytes())
                .ack()
                .0,
            "accepted"
        );
    }
    // A retry of the same notification is a duplicate: the body hash is the event id.
    assert_eq!(
        gw.post("di", &real.headers, real.body.as_bytes()).ack(),
        ("duplicate".to_string(), 1)
    );
    let events = gw.all_events(Some("di"));
    assert_eq!(events.len(), 2);
    for (event, (fixture, source)) in events.iter().zip([(&real, "webhook"), (&test, "test")]) {
        assert_eq!(common::event_body(event), fixture.body.as_bytes());
        assert_eq!(event["source"], source);
        let hash = hex::encode(Sha256::digest(fixture.body.as_bytes()));
        assert_eq!(event["event_id"], format!("sha256:{hash}"));
        assert_eq!(event["json"]["contact"]["f_LastName"], "Tremblay");
    }
}

#[test]
fn rejections_are_401_and_store_nothing() {
    let fixture = Fixture::load("dialog-insight/contact-modified.json");
    let body = fixture.body.as_bytes();
    let good = fixture.header(HEADER).unwrap().to_string();
    let gw = Gateway::start(&di_provider("di", &["test-public-key.pem"], ""));

    let tampered = fixture.body.replace("1984-06-12", "1984-06-13");
    assert_unauthorized(
        &gw.post("di", &signed(&good), tampered.as_bytes()),
        "tampered body",
    );
    let wrong_key = sign("test-rotation-private-key.pem", body);
    assert_unauthorized(&gw.post("di", &signed(&wrong_key), body), "wrong key");
    let no_header = vec![("Content-Type".to_string(), "application/json".to_string())];
    assert_unauthorized(&gw.post("di", &no_header, body), "missing header");
    assert_unauthorized(
        &gw.post("di", &signed("not base64 at all!"), body),
        "malformed header",
    );
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&good)
        .unwrap();
    assert_unauthorized(
        &gw.post("di", &signed(&hex::encode(raw)), body),
        "hex signature where base64 is configured",
    );
    assert!(
        gw.all_events(None).is_empty(),
        "a rejected request was stored"
    );
    assert_eq!(gw.post("di", &signed(&good), body).ack().0, "accepted");
}

#[test]
fn xml_keys_and_rotation_in_the_real_binary() {
    let config = di_provider(
        "di",
        &["test-rotation-public-key.pem", "test-public-key.xml"],
        "",
    ) + &di_provider(
        "di-hex",
        &["test-public-key.xml"],
        "signature_encoding = \"hex\"\nforward_tests = true",
    );
    let gw = Gateway::start(&config);
    for (i, private_key) in ["test-private-key.pem", "test-rotation-private-key.pem"]
        .iter()
        .enumerate()
    {
        let body = format!(r#"{{"event":"ContactModified","contact":{{"idContact":{i}}}}}"#);
        let signature = sign(private_key, body.as_bytes());
        let reply = gw.post("di", &signed(&signature), body.as_bytes());
        assert_eq!(reply.ack().0, "accepted", "{private_key}");
    }
    let body = br#"{"isTest":true}"#;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sign("test-private-key.pem", body))
        .unwrap();
    assert_eq!(
        gw.post("di-hex", &signed(&hex::encode(raw)), body).ack().0,
        "accepted"
    );
    assert_eq!(gw.all_events(Some("di-hex"))[0]["source"], "test");
}

#[test]
fn a_bad_key_makes_check_config_fail() {
    let dir = tempfile::tempdir().unwrap();
    let providers = format!(
        "{}{}",
        di_provider("weak", &["test-weak-1024-public-key.pem"], "hash = \"md5\""),
        di_provider("private", &["test-private-key.pem"], ""),
    );
    let config = common::config_toml(&dir.path().join("data"), "", &providers);
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(common::hookgate_bin())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .env_remove("HOOKGATE_CONFIG")
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{printed}");
    for needle in ["1024-bit", "\"md5\"", "private key"] {
        assert!(printed.contains(needle), "{needle} not reported: {printed}");
    }
    assert!(!printed.contains("BEGIN"), "a key was printed: {printed}");
}
