//! The bodies `send-test` posts when no `--file` is given, and the `Content-Type` a body goes with.
//!
//! Where a scheme has a fixture in `fixtures/`, its `body` is embedded in the binary and sent as
//! is (so a scheme that reads its event id from the body sees the same id on every run, and the
//! second run is answered `duplicate`). The others get a small JSON body carrying the test's id.

pub const JSON: &str = "application/json";
pub const FORM: &str = "application/x-www-form-urlencoded";
const OCTET_STREAM: &str = "application/octet-stream";

/// One fixture per scheme that has one (their `body` is what is sent).
const FIXTURES: &[(&str, &str)] = &[
    (
        "standard-webhooks",
        include_str!("../../../fixtures/standard-webhooks/conversation-message.json"),
    ),
    ("github", include_str!("../../../fixtures/github/ping.json")),
    (
        "stripe",
        include_str!("../../../fixtures/stripe/payment-intent-succeeded.json"),
    ),
    (
        "shopify",
        include_str!("../../../fixtures/shopify/orders-create.json"),
    ),
    (
        "slack",
        include_str!("../../../fixtures/slack/event-callback.json"),
    ),
    (
        "twilio",
        include_str!("../../../fixtures/twilio/incoming-sms.json"),
    ),
    (
        "alcmeon",
        include_str!("../../../fixtures/alcmeon/action-notification.json"),
    ),
    (
        "acculynx",
        include_str!("../../../fixtures/acculynx/milestone-changed.json"),
    ),
    // Dialog Insight's "Test" button sends `"isTest": true`.
    (
        "dialog-insight",
        include_str!("../../../fixtures/dialog-insight/contact-modified-test.json"),
    ),
];

/// The sample body for `scheme`: its fixture's, else a small JSON body carrying `event_id`
/// (`none`, `hmac`, `oauth`).
pub fn body(scheme: &str, event_id: &str) -> Vec<u8> {
    FIXTURES
        .iter()
        .find(|(name, _)| *name == scheme)
        .map(|(_, fixture)| fixture_body(fixture))
        .unwrap_or_else(|| {
            format!(
                r#"{{"id":"{event_id}","type":"hookgate.test","message":"hookgate send-test"}}"#
            )
        })
        .into_bytes()
}

/// The `body` field of a fixture file (format in `fixtures/README.md`).
fn fixture_body(fixture: &str) -> String {
    serde_json::from_str::<serde_json::Value>(fixture)
        .ok()
        .and_then(|json| json["body"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// JSON when the body parses as JSON; a form when it reads like `key=value&...`; else raw bytes.
pub fn content_type(body: &[u8]) -> &'static str {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        JSON
    } else if looks_like_form(body) {
        FORM
    } else {
        OCTET_STREAM
    }
}

fn looks_like_form(body: &[u8]) -> bool {
    body.contains(&b'=')
        && body
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"%+=&-._*~".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::SCHEMES;

    #[test]
    fn every_scheme_has_a_sample_of_the_right_kind() {
        for scheme in SCHEMES {
            let body = body(scheme, "test_1");
            let expected = if *scheme == "twilio" { FORM } else { JSON };
            assert_eq!(content_type(&body), expected, "{scheme}");
        }
    }

    #[test]
    fn every_fixture_has_a_body() {
        for (scheme, fixture) in FIXTURES {
            assert!(!fixture_body(fixture).is_empty(), "{scheme}");
        }
    }

    #[test]
    fn fixtures_are_sent_as_signed() {
        let github = String::from_utf8(body("github", "x")).unwrap();
        assert!(github.starts_with(r#"{"zen":"#), "{github}");
        let di = String::from_utf8(body("dialog-insight", "x")).unwrap();
        assert!(di.contains(r#""isTest":true"#), "{di}");
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(b"a=1&b=%2B2"), FORM);
        assert_eq!(content_type(b" [1, 2] "), JSON);
        assert_eq!(content_type(b"hello world"), OCTET_STREAM);
        assert_eq!(content_type(b""), OCTET_STREAM);
    }
}
