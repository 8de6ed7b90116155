//! The vendor schemes end to end (stripe, shopify, slack, twilio, alcmeon, acculynx): each
//! fixture posted to the real binary is stored with its exact bytes, the scheme's event id and
//! topic, and one typical forgery per scheme is refused with 401 and not stored. Vendors'
//! handshakes (Slack's url_verification and ssl_check, GitHub's ping) and Twilio's HMAC-SHA256
//! signatures from a Webhook Setting.
#![allow(clippy::unwrap_used)]

mod common;

use common::sign::{self, Alg};
use common::{assert_unauthorized, provider, Fixture, Gateway};

/// Every vendor fixture, with the event id and topic it must be stored under.
const FIXTURES: &[(&str, &str, Option<&str>)] = &[
    (
        "stripe/payment-intent-succeeded.json",
        "evt_3PqDemoFixture0001",
        None,
    ),
    (
        "shopify/orders-create.json",
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        Some("orders/create"),
    ),
    ("slack/event-callback.json", "Ev123ABC456", None),
    (
        "twilio/incoming-sms.json",
        "2d4b8e3c-6f0a-4b1e-9c7d-5e8f1a2b3c4d",
        None,
    ),
    ("alcmeon/action-notification.json", "4817204", None),
    (
        "acculynx/milestone-changed.json",
        "a653de1a-84a6-488c-90bc-f6c8e990bf51",
        Some("job-milestone-changed"),
    ),
];

/// The fixture's provider name: its directory (`stripe/...` -> `stripe`).
fn name_of(relative: &str) -> &str {
    relative.split('/').next().unwrap()
}

/// The headers of `fixture` with `name`'s value replaced (or removed when `value` is None).
fn with_header(fixture: &Fixture, name: &str, value: Option<&str>) -> Vec<(String, String)> {
    let mut headers: Vec<_> = fixture
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    if let Some(value) = value {
        headers.push((name.to_string(), value.to_string()));
    }
    headers
}

#[test]
fn every_vendor_fixture_is_stored_with_its_event_id_and_topic() {
    let fixtures: Vec<Fixture> = FIXTURES.iter().map(|(f, _, _)| Fixture::load(f)).collect();
    let config: String = FIXTURES
        .iter()
        .zip(&fixtures)
        .map(|((relative, _, _), fixture)| fixture.provider_toml(name_of(relative)))
        .collect();
    let gw = Gateway::start(&config);
    for ((relative, event_id, topic), fixture) in FIXTURES.iter().zip(&fixtures) {
        let name = name_of(relative);
        let reply = gw.post(name, &fixture.headers, fixture.body.as_bytes());
        assert_eq!(reply.ack().0, "accepted", "{relative}");
        let events = gw.all_events(Some(name));
        assert_eq!(events.len(), 1, "{relative}");
        assert_eq!(common::event_body(&events[0]), fixture.body.as_bytes());
        assert_eq!(events[0]["event_id"], *event_id, "{relative}");
        assert_eq!(events[0]["source"], "webhook", "{relative}");
        assert_eq!(events[0]["topic"].as_str(), *topic, "{relative}");
        // A retry of the same delivery is recognised by its id.
        let again = gw.post(name, &fixture.headers, fixture.body.as_bytes());
        assert_eq!(again.ack().0, "duplicate", "{relative}");
    }
}

#[test]
fn stale_stripe_and_slack_timestamps_are_401() {
    // The fixtures carry old timestamps; with the default tolerance (300 s) they are replays.
    let stripe = Fixture::load("stripe/payment-intent-succeeded.json");
    let slack = Fixture::load("slack/event-callback.json");
    let config = provider("stripe", "stripe", &[&stripe.secret], "")
        + &provider("slack", "slack", &[&slack.secret], "");
    let gw = Gateway::start(&config);
    for (name, fixture) in [("stripe", &stripe), ("slack", &slack)] {
        let reply = gw.post(name, &fixture.headers, fixture.body.as_bytes());
        assert_unauthorized(&reply, &format!("{name}: stale timestamp"));
    }
    // Signed now, the same bodies pass.
    let now = sign::now_ts();
    let body = stripe.body.as_bytes();
    let mut signed = format!("{now}.").into_bytes();
    signed.extend_from_slice(body);
    let v1 = hex::encode(sign::mac(Alg::Sha256, stripe.secret.as_bytes(), &signed));
    let fresh = with_header(
        &stripe,
        "Stripe-Signature",
        Some(&format!("t={now},v1={v1}")),
    );
    assert_eq!(gw.post("stripe", &fresh, body).ack().0, "accepted");
    assert_eq!(gw.all_events(Some("slack")).len(), 0);
}

#[test]
fn shopify_signed_with_another_secret_is_401() {
    let fixture = Fixture::load("shopify/orders-create.json");
    let gw = Gateway::start(&fixture.provider_toml("shopify"));
    let body = fixture.body.as_bytes();
    let forged = sign::b64(&sign::mac(Alg::Sha256, b"not-the-app-secret", body));
    let headers = with_header(&fixture, "X-Shopify-Hmac-Sha256", Some(&forged));
    assert_unauthorized(&gw.post("shopify", &headers, body), "shopify: wrong secret");
    assert!(gw.all_events(None).is_empty());
}

#[test]
fn twilio_refuses_a_url_it_did_not_sign() {
    let fixture = Fixture::load("twilio/incoming-sms.json");
    let gw = Gateway::start(&fixture.provider_toml("twilio"));
    let body = fixture.body.as_bytes();
    // The received query string is part of the signed URL.
    let reply = gw.post("twilio?forwarded=1", &fixture.headers, body);
    assert_unauthorized(&reply, "twilio: query not signed");
    // A form body sent as something else is not covered by the signature.
    let headers = with_header(&fixture, "Content-Type", Some("text/plain"));
    assert_unauthorized(&gw.post("twilio", &headers, body), "twilio: not a form");
    assert!(gw.all_events(None).is_empty());
}

#[test]
fn alcmeon_signs_the_request_path() {
    // Without public_url, the path received is the one signed: the fixture was signed for
    // /hooks/alcmeon, so it passes there and nowhere else, and not without the space.
    let fixture = Fixture::load("alcmeon/action-notification.json");
    let config = provider("alcmeon", "alcmeon", &[&fixture.secret], "")
        + &provider("alcmeon-other", "alcmeon", &[&fixture.secret], "")
        + &provider(
            "alcmeon-nospace",
            "alcmeon",
            &[&fixture.secret],
            "signature_base = \"path+body\"",
        );
    let gw = Gateway::start(&config);
    let body = fixture.body.as_bytes();
    for name in ["alcmeon-other", "alcmeon-nospace"] {
        assert_unauthorized(&gw.post(name, &fixture.headers, body), name);
    }
    let reply = gw.post("alcmeon", &fixture.headers, body);
    assert_eq!(reply.ack().0, "accepted");
    assert_eq!(gw.all_events(None).len(), 1);
}

#[test]
fn acculynx_without_its_header_or_in_another_encoding_is_401() {
    let fixture = Fixture::load("acculynx/milestone-changed.json");
    let config = fixture.provider_toml("acculynx")
        + &provider(
            "acculynx-b64",
            "acculynx",
            &[&fixture.secret],
            "header = \"X-Signature\"\nencoding = \"base64\"",
        );
    let gw = Gateway::start(&config);
    let body = fixture.body.as_bytes();
    let unsigned = with_header(&fixture, "X-AccuLynx-Signature", None);
    assert_unauthorized(&gw.post("acculynx", &unsigned, body), "acculynx: no header");
    let hex_tag = fixture.header("X-AccuLynx-Signature").unwrap();
    let hex_in_b64_header = with_header(&fixture, "X-Signature", Some(hex_tag));
    assert_unauthorized(
        &gw.post("acculynx-b64", &hex_in_b64_header, body),
        "acculynx: hex where base64 is configured",
    );
    assert!(gw.all_events(None).is_empty());
    let b64 = sign::b64(&hex::decode(hex_tag).unwrap());
    let configured = with_header(&fixture, "X-Signature", Some(&b64));
    assert_eq!(
        gw.post("acculynx-b64", &configured, body).ack().0,
        "accepted"
    );
}

#[test]
fn slack_url_verification_is_answered_after_the_signature_and_not_stored() {
    let fixture = Fixture::load("slack/url-verification.json");
    let gw = Gateway::start(&fixture.provider_toml("slack"));
    let body = fixture.body.as_bytes();
    // Unsigned, or signed with another secret: 401 like any request.
    let unsigned = with_header(&fixture, "X-Slack-Signature", None);
    assert_unauthorized(&gw.post("slack", &unsigned, body), "slack: unsigned");
    let forged = format!(
        "v0={}",
        hex::encode(sign::mac(
            Alg::Sha256,
            b"not-the-signing-secret",
            &[b"v0:1718000010:", body].concat()
        ))
    );
    let forged = with_header(&fixture, "X-Slack-Signature", Some(&forged));
    assert_unauthorized(&gw.post("slack", &forged, body), "slack: wrong secret");

    for _ in 0..2 {
        let reply = gw.post("slack", &fixture.headers, body);
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(
            reply.json(),
            serde_json::json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
        );
    }
    assert!(gw.all_events(None).is_empty(), "a handshake was stored");
    let handshakes = gw.metric("hookgate_handshakes_total", &[("provider", "slack")]);
    assert_eq!(handshakes, Some(2.0));
    let answered = gw.metric(
        "hookgate_requests_total",
        &[("provider", "slack"), ("status", "200")],
    );
    assert_eq!(answered, Some(2.0));

    // Events still go to the store, on the same provider.
    let event = Fixture::load("slack/event-callback.json");
    let reply = gw.post("slack", &event.headers, event.body.as_bytes());
    assert_eq!(reply.ack().0, "accepted");
    assert_eq!(gw.all_events(None).len(), 1);
}

#[test]
fn slack_ssl_check_is_answered_empty_and_not_stored() {
    let secret = "ssl-check-signing-secret";
    let gw = Gateway::start(&provider("slack", "slack", &[secret], ""));
    let body = b"token=gIkuvaNzQIHg97ATvDxqgjtO&ssl_check=1";
    let ts = sign::now_ts().to_string();
    let tag = sign::mac(
        Alg::Sha256,
        secret.as_bytes(),
        &[format!("v0:{ts}:").as_bytes(), body].concat(),
    );
    let headers = sign::headers(&[
        ("X-Slack-Request-Timestamp", &ts),
        ("X-Slack-Signature", &format!("v0={}", hex::encode(tag))),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ]);
    let reply = gw.post("slack", &headers, body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.body.is_empty(), "{}", reply.text());
    assert!(gw.all_events(None).is_empty());
}

#[test]
fn github_ping_is_stored_as_a_test_and_not_forwarded() {
    let ping = Fixture::load("github/ping.json");
    // A destination that takes every provider; nothing listens there, and nothing should be sent.
    let destination = "\n[[destination]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/ingest\"\n\
        signing_secret = \"whsec_c2VjcmV0LWtleS1mb3ItY3Jt\"\n";
    let gw = Gateway::start(&(ping.provider_toml("github") + destination));
    let (status, seq) = gw.post("github", &ping.headers, ping.body.as_bytes()).ack();
    assert_eq!(status, "accepted");
    let event = gw.event(seq).unwrap();
    assert_eq!(event["source"], "test");
    assert_eq!(event["event_id"], "d4b9a8f0-1c2e-11ef-8a3b-0242ac120002");
    assert_eq!(event["deliveries"]["crm"], "skipped");
    // GitHub's "Redeliver" sends the same delivery again.
    let again = gw.post("github", &ping.headers, ping.body.as_bytes());
    assert_eq!(again.ack(), ("duplicate".to_string(), seq));
}

#[test]
fn twilio_sha256_from_a_webhook_setting() {
    let sha256 = Fixture::load("twilio/incoming-sms-sha256.json");
    let sha1 = Fixture::load("twilio/incoming-sms.json");
    // `twilio` accepts either (both keys listed); `twilio-256` requires SHA-256.
    let public_url = "public_url = \"https://hooks.example.com/hooks/twilio\"";
    let config = provider(
        "twilio",
        "twilio",
        &[&sha1.secret, &sha256.secret],
        public_url,
    ) + &sha256.provider_toml("twilio-256");
    let gw = Gateway::start(&config);
    let body = sha256.body.as_bytes();
    for name in ["twilio", "twilio-256"] {
        let reply = gw.post(name, &sha256.headers, body);
        assert_eq!(reply.ack().0, "accepted", "{name}");
        let events = gw.all_events(Some(name));
        assert_eq!(
            events[0]["event_id"],
            "7c1e0b9a-3d5f-4e2a-8b6c-9d0e1f2a3b4c"
        );
    }
    // The auth token's SHA-1 signature still passes where either is accepted...
    let reply = gw.post("twilio", &sha1.headers, body);
    assert_eq!(reply.ack().0, "accepted");
    // ...but not where SHA-256 is required, whatever the settings header claims.
    assert_unauthorized(
        &gw.post("twilio-256", &sha1.headers, body),
        "twilio: SHA-1 to a sha256 provider",
    );
    let claims_sha1 = with_header(
        &sha256,
        "X-Twilio-Webhooks-Signature-Settings",
        Some("key=KS0,algorithm=HMAC_SHA1"),
    );
    assert_unauthorized(
        &gw.post("twilio-256", &claims_sha1, body),
        "twilio: settings header naming SHA-1",
    );
    let refused = gw.metric(
        "hookgate_rejections_total",
        &[("cause", "algorithm_not_allowed")],
    );
    assert_eq!(refused, Some(2.0));
    // The SHA-256 tag without the settings header is checked as SHA-1, and fails.
    let no_settings = with_header(&sha256, "X-Twilio-Webhooks-Signature-Settings", None);
    assert_unauthorized(
        &gw.post("twilio", &no_settings, body),
        "twilio: SHA-256 tag checked as SHA-1",
    );
    assert_eq!(gw.all_events(None).len(), 3);
}
