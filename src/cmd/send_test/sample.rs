//! The bodies `send-test` posts when no `--file` is given, and the `Content-Type` a body goes with.
//!
//! Where a scheme has a fixture in `fixtures/`, its `body` is embedded in the binary and sent as
//! is. The other schemes get a small body shaped like their vendor's payloads, carrying the
//! test's event id where the scheme reads its id from the body, so each run is a new event.

pub const JSON: &str = "application/json";
pub const FORM: &str = "application/x-www-form-urlencoded";
const OCTET_STREAM: &str = "application/octet-stream";

const STANDARD_WEBHOOKS: &str =
    include_str!("../../../fixtures/standard-webhooks/conversation-message.json");
const GITHUB: &str = include_str!("../../../fixtures/github/ping.json");
const DIALOG_INSIGHT: &str =
    include_str!("../../../fixtures/dialog-insight/contact-modified-test.json");

/// The sample body for `scheme`, with `event_id` (`test_<unix millis>`) and `millis` filled in
/// where the body carries the event id.
pub fn body(scheme: &str, event_id: &str, millis: u128) -> Vec<u8> {
    let text = match scheme {
        "standard-webhooks" => fixture_body(STANDARD_WEBHOOKS),
        "github" => fixture_body(GITHUB),
        "dialog-insight" => fixture_body(DIALOG_INSIGHT),
        "stripe" => format!(
            r#"{{"id":"evt_{event_id}","object":"event","api_version":"2024-06-20","type":"customer.created","livemode":false,"data":{{"object":{{"id":"cus_test","object":"customer","email":"test@example.com"}}}}}}"#
        ),
        "shopify" => r##"{"id":820982911946154508,"email":"jon@example.com","name":"#9999","financial_status":"paid","test":true}"##.to_string(),
        "slack" => format!(
            r#"{{"token":"test","team_id":"T0TEST","api_app_id":"A0TEST","type":"event_callback","event_id":"Ev{event_id}","event_time":{},"event":{{"type":"app_mention","user":"U0TEST","text":"hookgate send-test","channel":"C0TEST"}}}}"#,
            millis / 1000
        ),
        "twilio" => format!(
            "AccountSid=AC00000000000000000000000000000000&MessageSid=SM{event_id}&From=%2B15005550006&To=%2B15005550001&Body=hookgate+send-test&NumMedia=0"
        ),
        "alcmeon" => format!(
            r#"{{"id":{millis},"type":"action","action":{{"type":"conversation.message","text":"hookgate send-test"}}}}"#
        ),
        "acculynx" => format!(
            r#"{{"EventId":"{event_id}","TopicName":"job-milestone-changed","CompanyId":"00000000-0000-0000-0000-000000000000","Data":{{"JobId":"00000000-0000-0000-0000-000000000001","Milestone":"Prospect"}}}}"#
        ),
        _ => format!(r#"{{"id":"{event_id}","type":"hookgate.test","message":"hookgate send-test"}}"#),
    };
    text.into_bytes()
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
            let body = body(scheme, "test_1", 1);
            let expected = if *scheme == "twilio" { FORM } else { JSON };
            assert_eq!(content_type(&body), expected, "{scheme}");
        }
    }

    #[test]
    fn fixtures_are_sent_as_signed() {
        let github = String::from_utf8(body("github", "x", 1)).unwrap();
        assert!(github.starts_with(r#"{"zen":"#), "{github}");
        let di = String::from_utf8(body("dialog-insight", "x", 1)).unwrap();
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
