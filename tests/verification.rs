//! Verification schemes end to end: published vectors, our fixtures, each rejection cause,
//! rotation, the svix- spellings, the generic hmac variants and `none` with `allow_ips`.
#![allow(clippy::unwrap_used)]

mod common;

use common::sign::{self, Alg};
use common::{provider, Fixture, Gateway, Reply};

fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "unauthorized"}),
        "{what}"
    );
}

/// Providers `std` (Standard Webhooks, `whsec`), `gh` (GitHub, `gh-secret`) and `mac`
/// (hmac-sha256 hex in `X-Signature`, `mac-secret`).
fn three_schemes(whsec: &str) -> String {
    provider("std", "standard-webhooks", &[whsec], "")
        + &provider("gh", "github", &["gh-secret"], "")
        + &provider("mac", "hmac", &["mac-secret"], "header = \"X-Signature\"")
}

/// Posts a fixture to a gateway configured from it; checks it is stored with its exact bytes.
fn post_fixture_and_check(relative: &str, expected_event_id: &str) {
    let fixture = Fixture::load(relative);
    let gw = Gateway::start(&fixture.provider_toml("p"));
    let reply = gw.post("p", &fixture.headers, fixture.body.as_bytes());
    assert_eq!(reply.ack().0, "accepted", "{relative}");
    let events = gw.all_events(Some("p"));
    assert_eq!(events.len(), 1, "{relative}");
    assert_eq!(common::event_body(&events[0]), fixture.body.as_bytes());
    assert_eq!(events[0]["event_id"], expected_event_id, "{relative}");
    assert_eq!(events[0]["provider"], "p");
    assert_eq!(events[0]["source"], "webhook");
}

#[test]
fn published_standard_webhooks_vector_verifies() {
    post_fixture_and_check(
        "standard-webhooks/published.json",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
    );
}

#[test]
fn published_github_vector_verifies() {
    post_fixture_and_check(
        "github/published.json",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    );
}

#[test]
fn every_fixture_verifies_and_a_tampered_copy_does_not() {
    let all = Fixture::all();
    assert!(all.len() >= 5, "fixtures missing: {all:?}");
    let fixtures: Vec<Fixture> = all.iter().map(|f| Fixture::load(f)).collect();
    let config: String = fixtures
        .iter()
        .enumerate()
        .map(|(i, f)| f.provider_toml(&format!("f{i}")))
        .collect();
    let gw = Gateway::start(&config);
    for (i, (name, fixture)) in all.iter().zip(&fixtures).enumerate() {
        let provider = format!("f{i}");
        let mut tampered = fixture.body.clone().into_bytes();
        tampered.push(b' ');
        assert_unauthorized(
            &gw.post(&provider, &fixture.headers, &tampered),
            &format!("{name} with one byte appended"),
        );
        let reply = gw.post(&provider, &fixture.headers, fixture.body.as_bytes());
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
    }
}

#[test]
fn bad_signatures_are_401_and_not_stored() {
    let whsec = sign::whsec("bad-signatures");
    let gw = Gateway::start(&three_schemes(&whsec));
    let body = br#"{"id":"evt_1","type":"ping"}"#;

    let wrong_key = sign::standard_headers(&sign::whsec("someone else"), "msg_1", body);
    assert_unauthorized(&gw.post("std", &wrong_key, body), "std: wrong key");
    let signed = sign::standard_headers(&whsec, "msg_1", body);
    assert_unauthorized(
        &gw.post("std", &signed, br#"{"id":"evt_1","type":"pong"}"#),
        "std: body changed after signing",
    );
    let mut other_id = signed.clone();
    other_id[0].1 = "msg_2".into();
    assert_unauthorized(&gw.post("std", &other_id, body), "std: id not signed");
    let mut garbage = signed.clone();
    garbage[2].1 = "v1,not base64 at all!".into();
    assert_unauthorized(&gw.post("std", &garbage, body), "std: garbage signature");
    let mut wrong_version = signed.clone();
    wrong_version[2].1 = wrong_version[2].1.replacen("v1,", "v2,", 1);
    assert_unauthorized(
        &gw.post("std", &wrong_version, body),
        "std: unknown version",
    );

    let gh = sign::github_headers("not-the-secret", "d-1", body);
    assert_unauthorized(&gw.post("gh", &gh, body), "github: wrong key");
    let mut gh_sha1 = sign::github_headers("gh-secret", "d-1", body);
    gh_sha1[0].1 = gh_sha1[0].1.replacen("sha256=", "sha1=", 1);
    assert_unauthorized(&gw.post("gh", &gh_sha1, body), "github: wrong prefix");

    let forged = hex::encode(sign::mac(Alg::Sha256, b"not-the-secret", body));
    let mac_headers = sign::headers(&[("X-Signature", &forged)]);
    assert_unauthorized(&gw.post("mac", &mac_headers, body), "hmac: wrong key");

    assert!(
        gw.all_events(None).is_empty(),
        "a rejected request was stored"
    );
}

#[test]
fn missing_headers_are_401() {
    let whsec = sign::whsec("missing-headers");
    let gw = Gateway::start(&three_schemes(&whsec));
    let body = br#"{"id":"evt_1"}"#;
    let signed = sign::standard_headers(&whsec, "msg_1", body);
    for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let headers: Vec<_> = signed
            .iter()
            .filter(|(k, _)| k != missing)
            .cloned()
            .collect();
        assert_unauthorized(&gw.post("std", &headers, body), missing);
    }
    let gh: Vec<_> = sign::github_headers("gh-secret", "d-1", body)
        .into_iter()
        .filter(|(k, _)| k != "X-Hub-Signature-256")
        .collect();
    assert_unauthorized(&gw.post("gh", &gh, body), "github without signature");
    assert_unauthorized(&gw.post("mac", &[], body), "hmac without signature");
    assert!(gw.all_events(None).is_empty());
    // Counted by cause.
    let missing = [("cause", "missing_header")];
    assert_eq!(gw.metric("hookgate_rejections_total", &missing), Some(5.0));
}

#[test]
fn timestamps_outside_tolerance_are_401() {
    let whsec = sign::whsec("tolerance");
    let gw = Gateway::start(&provider(
        "std",
        "standard-webhooks",
        &[&whsec],
        "tolerance_s = 300",
    ));
    let body = br#"{"id":"evt_ts"}"#;
    let now = sign::now_ts();
    let stale = sign::standard_headers_at(&whsec, "msg_stale", now - 400, body);
    assert_unauthorized(&gw.post("std", &stale, body), "stale timestamp");
    let future = sign::standard_headers_at(&whsec, "msg_future", now + 400, body);
    assert_unauthorized(&gw.post("std", &future, body), "future timestamp");
    let not_a_number = vec![
        ("webhook-id".to_string(), "msg_nan".to_string()),
        ("webhook-timestamp".to_string(), "yesterday".to_string()),
        (
            "webhook-signature".to_string(),
            sign::standard_signature(&whsec, "msg_nan", now, body),
        ),
    ];
    assert_unauthorized(
        &gw.post("std", &not_a_number, body),
        "timestamp not a number",
    );
    let cause = |cause| gw.metric("hookgate_rejections_total", &[("cause", cause)]);
    assert_eq!(cause("stale_timestamp"), Some(2.0));
    assert_eq!(cause("malformed_header"), Some(1.0));
    let recent = sign::standard_headers_at(&whsec, "msg_recent", now - 200, body);
    assert_eq!(gw.post("std", &recent, body).ack().0, "accepted");
    let soon = sign::standard_headers_at(&whsec, "msg_soon", now + 200, body);
    assert_eq!(gw.post("std", &soon, body).ack().0, "accepted");
}

#[test]
fn svix_header_spellings_are_accepted() {
    let whsec = sign::whsec("svix");
    let gw = Gateway::start(&provider("std", "standard-webhooks", &[&whsec], ""));
    let body = br#"{"type":"invoice.paid"}"#;
    let ts = sign::now_ts();
    let headers = sign::headers(&[
        ("svix-id", "msg_svix_1"),
        ("svix-timestamp", &ts.to_string()),
        (
            "svix-signature",
            &sign::standard_signature(&whsec, "msg_svix_1", ts, body),
        ),
    ]);
    assert_eq!(gw.post("std", &headers, body).ack().0, "accepted");
    let events = gw.all_events(Some("std"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event_id"], "msg_svix_1");
}

#[test]
fn any_secret_during_rotation_and_any_signature_in_the_list() {
    let old = sign::whsec("rotation-old");
    let new = sign::whsec("rotation-new");
    let config = provider("std", "standard-webhooks", &[&old, &new], "")
        + &provider("gh", "github", &["gh-old", "gh-new"], "")
        + &provider(
            "mac",
            "hmac",
            &["mac-old", "mac-new"],
            "header = \"X-Signature\"",
        );
    let gw = Gateway::start(&config);
    let body = br#"{"id":"evt_rot"}"#;

    for (id, secret) in [("msg_old", &old), ("msg_new", &new)] {
        let headers = sign::standard_headers(secret, id, body);
        assert_eq!(gw.post("std", &headers, body).ack().0, "accepted", "{id}");
    }
    // A sender mid-rotation sends several signatures, space-separated; one good one is enough.
    let ts = sign::now_ts();
    let list = format!(
        "{} {}",
        sign::standard_signature(&sign::whsec("retired"), "msg_list", ts, body),
        sign::standard_signature(&new, "msg_list", ts, body)
    );
    let headers = sign::headers(&[
        ("webhook-id", "msg_list"),
        ("webhook-timestamp", &ts.to_string()),
        ("webhook-signature", &list),
    ]);
    assert_eq!(gw.post("std", &headers, body).ack().0, "accepted");

    let gh = sign::github_headers("gh-new", "delivery-rot", body);
    assert_eq!(gw.post("gh", &gh, body).ack().0, "accepted");
    let mac = hex::encode(sign::mac(Alg::Sha256, b"mac-new", body));
    let mac_headers = sign::headers(&[("X-Signature", &mac)]);
    assert_eq!(gw.post("mac", &mac_headers, body).ack().0, "accepted");
}

#[test]
fn generic_hmac_variants() {
    struct Variant {
        name: &'static str,
        config: &'static str,
        alg: Alg,
        base64: bool,
        prefix: &'static str,
        header: &'static str,
    }
    let variants = [
        Variant {
            name: "hex256",
            config: "header = \"X-Signature\"",
            alg: Alg::Sha256,
            base64: false,
            prefix: "",
            header: "X-Signature",
        },
        Variant {
            name: "prefixed",
            config: "header = \"X-Hub-Signature\"\nprefix = \"sha256=\"",
            alg: Alg::Sha256,
            base64: false,
            prefix: "sha256=",
            header: "X-Hub-Signature",
        },
        Variant {
            name: "b64",
            config: "header = \"X-Shopify-Hmac-Sha256\"\nencoding = \"base64\"",
            alg: Alg::Sha256,
            base64: true,
            prefix: "",
            header: "X-Shopify-Hmac-Sha256",
        },
        Variant {
            name: "sha1",
            config: "header = \"X-Sig\"\nalgorithm = \"sha1\"\nencoding = \"base64\"",
            alg: Alg::Sha1,
            base64: true,
            prefix: "",
            header: "X-Sig",
        },
        Variant {
            name: "sha512",
            config: "header = \"X-Sig\"\nalgorithm = \"sha512\"\nprefix = \"v1=\"",
            alg: Alg::Sha512,
            base64: false,
            prefix: "v1=",
            header: "X-Sig",
        },
    ];
    let secret = "hmac-variant-secret";
    let config: String = variants
        .iter()
        .map(|v| provider(v.name, "hmac", &[secret], v.config))
        .collect();
    let gw = Gateway::start(&config);
    let encode = |bytes: &[u8], base64: bool| {
        if base64 {
            sign::b64(bytes)
        } else {
            hex::encode(bytes)
        }
    };
    for (i, v) in variants.iter().enumerate() {
        let body = format!(r#"{{"variant":"{}","n":{i}}}"#, v.name).into_bytes();
        let good = format!(
            "{}{}",
            v.prefix,
            encode(&sign::mac(v.alg, secret.as_bytes(), &body), v.base64)
        );
        // The right MAC in the wrong encoding, or without the configured prefix, is rejected.
        let wrong_encoding = format!(
            "{}{}",
            v.prefix,
            encode(&sign::mac(v.alg, secret.as_bytes(), &body), !v.base64)
        );
        let wrong_alg = match v.alg {
            Alg::Sha1 => Alg::Sha256,
            _ => Alg::Sha1,
        };
        let wrong_alg = format!(
            "{}{}",
            v.prefix,
            encode(&sign::mac(wrong_alg, secret.as_bytes(), &body), v.base64)
        );
        for bad in [wrong_encoding, wrong_alg] {
            let headers = sign::headers(&[(v.header, &bad)]);
            assert_unauthorized(&gw.post(v.name, &headers, &body), v.name);
        }
        if !v.prefix.is_empty() {
            let unprefixed = good[v.prefix.len()..].to_string();
            let headers = sign::headers(&[(v.header, &unprefixed)]);
            assert_unauthorized(&gw.post(v.name, &headers, &body), "missing prefix");
        }
        let headers = sign::headers(&[(v.header, &good)]);
        let reply = gw.post(v.name, &headers, &body);
        assert_eq!(reply.status, 200, "{}: {}", v.name, reply.text());
    }
}

#[test]
fn none_scheme_with_allow_ips() {
    let config = provider("open", "none", &[], "")
        + &provider("local", "none", &[], "allow_ips = [\"127.0.0.0/8\"]")
        + &provider(
            "lan",
            "none",
            &[],
            "allow_ips = [\"10.0.0.0/8\", \"192.168.0.0/16\"]",
        );
    let gw = Gateway::start(&config);
    assert_eq!(gw.post("open", &[], b"a").ack().0, "accepted");
    assert_eq!(gw.post("local", &[], b"b").ack().0, "accepted");
    assert_unauthorized(&gw.post("lan", &[], b"c"), "none: 127.0.0.1 not allowed");
    // A spoofed forwarding header does not get a loopback client in.
    let spoofed = sign::headers(&[("X-Forwarded-For", "10.1.2.3"), ("X-Real-IP", "10.1.2.3")]);
    assert_unauthorized(&gw.post("lan", &spoofed, b"d"), "none: X-Forwarded-For");
    assert_eq!(gw.all_events(Some("lan")).len(), 0);
}

#[test]
fn unauthorized_body_is_identical_for_every_cause() {
    let whsec = sign::whsec("identical");
    let config = provider("std", "standard-webhooks", &[&whsec], "")
        + &provider("lan", "none", &[], "allow_ips = [\"10.0.0.0/8\"]");
    let gw = Gateway::start(&config);
    let body = br#"{"id":"x"}"#;
    let now = sign::now_ts();
    let good = sign::standard_headers(&whsec, "msg_x", body);
    let mut bad_sig = good.clone();
    bad_sig[2].1 = sign::standard_signature(&sign::whsec("other"), "msg_x", now, body);
    let missing: Vec<_> = good[..2].to_vec();
    let stale = sign::standard_headers_at(&whsec, "msg_x", now - 10_000, body);
    let replies = [
        gw.post("std", &bad_sig, body),
        gw.post("std", &missing, body),
        gw.post("std", &stale, body),
        gw.post("lan", &[], body),
    ];
    for reply in &replies {
        assert_eq!(reply.status, 401);
        assert_eq!(
            reply.body, replies[0].body,
            "401 bodies differ between causes"
        );
        assert_eq!(
            reply.header("content-type"),
            replies[0].header("content-type")
        );
    }
    assert_unauthorized(&replies[0], "bad signature");
}
