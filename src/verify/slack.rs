//! Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 of `v0:{timestamp}:{body}` keyed with the
//! app's signing secret, where the timestamp is `X-Slack-Request-Timestamp` (Unix seconds) and
//! must lie within `tolerance_s` (default 300) of now, either way. Slash commands and
//! interactions are form posts with no id of their own (the body hash is used); Events API
//! callbacks are JSON with a top-level `event_id`, which becomes the event id.
//!
//! Two signed requests are handshakes, not events, answered and never stored: the Events API's
//! `url_verification` (`{"type":"url_verification","challenge":"..."}`), answered with
//! `{"challenge":"..."}`, and the `ssl_check=1` form post Slack sends to slash command URLs,
//! answered with an empty 200.

use std::time::Duration;

use super::fields::{first_secret, fresh, unix_seconds, JsonBody};
use super::mac::{self, Algorithm};
use super::{required, Claims, Handshake, Rejection, SignInput, SignedHeaders, Unverified};
use crate::secret::Secret;

const SIGNATURE: &str = "X-Slack-Signature";
const TIMESTAMP: &str = "X-Slack-Request-Timestamp";
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Slack {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Slack {
    /// `tolerance` defaults to 5 minutes.
    pub fn new(secrets: Vec<Secret>, tolerance: Option<Duration>) -> Slack {
        Slack {
            secrets,
            tolerance: tolerance.unwrap_or(DEFAULT_TOLERANCE),
        }
    }

    pub fn sign(&self, input: &SignInput<'_>) -> Result<SignedHeaders, String> {
        let secret = first_secret(&self.secrets)?;
        let ts = unix_seconds(input.now).to_string();
        let tag = mac::sign(
            Algorithm::Sha256,
            secret.expose(),
            &[b"v0:", ts.as_bytes(), b":", input.body],
        );
        Ok(vec![
            (TIMESTAMP.to_string(), ts),
            (SIGNATURE.to_string(), format!("v0={}", hex::encode(tag))),
        ])
    }

    pub fn verify(&self, request: &Unverified<'_>) -> Result<Claims, Rejection> {
        let ts = required(request, TIMESTAMP)?;
        let tag = required(request, SIGNATURE)?
            .strip_prefix("v0=")
            .and_then(|text| hex::decode(text).ok())
            .ok_or(Rejection::MalformedHeader(SIGNATURE))?;
        let seconds: u64 = ts
            .parse()
            .map_err(|_| Rejection::MalformedHeader(TIMESTAMP))?;
        if !fresh(request.now, seconds, self.tolerance) {
            return Err(Rejection::StaleTimestamp);
        }
        let parts: [&[u8]; 4] = [b"v0:", ts.as_bytes(), b":", &request.body];
        if !mac::matches_any(Algorithm::Sha256, &self.secrets, &parts, &[tag]) {
            return Err(Rejection::BadSignature);
        }
        let json = JsonBody::parse(&request.body);
        Ok(Claims {
            handshake: handshake(&json, &request.body),
            ..Claims::signed_id(json.event_id(&["/event_id"]))
        })
    }
}

/// The answer a handshake expects: the challenge of a `url_verification`, nothing for an
/// `ssl_check`; `None` for an event.
fn handshake(json: &JsonBody<'_>, body: &[u8]) -> Option<Handshake> {
    if json.text(&["/type"]).as_deref() == Some("url_verification") {
        let challenge = json.text(&["/challenge"])?;
        return Some(Handshake {
            content_type: "application/json",
            body: serde_json::json!({ "challenge": challenge }).to_string(),
        });
    }
    // Only a form post: an event's JSON may hold a link such as `...?a=1&ssl_check=1`, whose
    // raw bytes split at `&` give that pair, and the event was answered and dropped. And only
    // one that is no command or interaction either.
    if json.is_json() {
        return None;
    }
    let pairs: Vec<_> = form_urlencoded::parse(body).collect();
    let ssl_check = pairs
        .iter()
        .any(|(key, value)| key == "ssl_check" && value == "1")
        && !pairs
            .iter()
            .any(|(key, _)| key == "command" || key == "payload");
    ssl_check.then(|| Handshake {
        content_type: "text/plain",
        body: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventId;
    use crate::verify::sign::tests::round_trip;
    use crate::verify::test_support::{request, TestHeaders};
    use crate::verify::Verifier;
    use std::time::UNIX_EPOCH;

    // Published in Slack's "Verifying requests from Slack" guide.
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: u64 = 1531420618;
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn scheme(secrets: &[&str]) -> Slack {
        let secrets = secrets.iter().map(|s| Secret::from_literal(s)).collect();
        Slack::new(secrets, None)
    }

    fn check(
        scheme: &Slack,
        headers: Vec<(&'static str, String)>,
        body: &'static str,
        now: u64,
    ) -> Result<Claims, Rejection> {
        let headers = TestHeaders(headers);
        let now = UNIX_EPOCH + Duration::from_secs(now);
        scheme.verify(&request(&headers, body, now))
    }

    fn published() -> Vec<(&'static str, String)> {
        vec![(TIMESTAMP, TS.to_string()), (SIGNATURE, SIG.into())]
    }

    #[test]
    fn published_vector_has_no_event_id() {
        let claims = check(&scheme(&[SECRET]), published(), BODY, TS + 300);
        assert_eq!(claims, Ok(Claims::default()));
    }

    #[test]
    fn events_api_event_id() {
        let body =
            r#"{"type":"event_callback","event_id":"Ev0PV52K21","event":{"type":"app_mention"}}"#;
        let claims = check(&scheme(&[SECRET]), signed(body), body, TS).unwrap();
        assert_eq!(claims.event_id, EventId::new("Ev0PV52K21"));
    }

    /// Headers signing `body` at `TS` with `SECRET`.
    fn signed(body: &str) -> Vec<(&'static str, String)> {
        let tag = mac::sign(
            Algorithm::Sha256,
            SECRET.as_bytes(),
            &[format!("v0:{TS}:{body}").as_bytes()],
        );
        vec![
            (TIMESTAMP, TS.to_string()),
            (SIGNATURE, format!("v0={}", hex::encode(tag))),
        ]
    }

    #[test]
    fn url_verification_is_answered_with_its_challenge() {
        // Slack's documented example.
        let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let claims = check(&scheme(&[SECRET]), signed(body), body, TS).unwrap();
        let answer = claims.handshake.unwrap();
        assert_eq!(answer.content_type, "application/json");
        assert_eq!(
            answer.body,
            r#"{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#
        );
        // Only after the signature: unsigned, or signed with another secret, it is refused.
        assert_eq!(
            check(&scheme(&["other"]), signed(body), body, TS),
            Err(Rejection::BadSignature)
        );
        // Without a challenge there is nothing to answer: an ordinary request.
        let body = r#"{"type":"url_verification"}"#;
        let claims = check(&scheme(&[SECRET]), signed(body), body, TS).unwrap();
        assert_eq!(claims.handshake, None);
    }

    #[test]
    fn ssl_check_is_answered_empty() {
        let body = "token=gIkuvaNzQIHg97ATvDxqgjtO&ssl_check=1";
        let claims = check(&scheme(&[SECRET]), signed(body), body, TS).unwrap();
        let answer = claims.handshake.unwrap();
        assert_eq!(
            (answer.content_type, answer.body.as_str()),
            ("text/plain", "")
        );
        // A slash command is an event, even one whose text mentions ssl_check.
        let body = "command=%2Fcheck&text=ssl_check%3D1";
        let claims = check(&scheme(&[SECRET]), signed(body), body, TS).unwrap();
        assert_eq!(claims.handshake, None);
        let claims = check(&scheme(&[SECRET]), published(), BODY, TS).unwrap();
        assert_eq!(claims.handshake, None);
        // An event whose JSON holds a link with `&ssl_check=1&` in it is an event.
        let body = r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"link_shared","links":[{"url":"https://x.example/?a=1&ssl_check=1&b=2"}]}}"#;
        let claims = check(&scheme(&[SECRET]), signed(body), body, TS).unwrap();
        assert_eq!(claims.handshake, None);
        // A form that is a command or an interaction is an event too.
        let body = "ssl_check=1&command=%2Fcheck";
        let claims = check(&scheme(&[SECRET]), signed(body), body, TS).unwrap();
        assert_eq!(claims.handshake, None);
    }

    #[test]
    fn rotation_accepts_any_secret() {
        assert!(check(&scheme(&["old", SECRET]), published(), BODY, TS).is_ok());
    }

    #[test]
    fn rejections() {
        let slack = scheme(&[SECRET]);
        assert_eq!(
            check(&slack, published(), "token=forged", TS),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            check(&scheme(&["other"]), published(), BODY, TS),
            Err(Rejection::BadSignature)
        );
        for missing in [TIMESTAMP, SIGNATURE] {
            let headers = published().into_iter().filter(|(k, _)| *k != missing);
            assert_eq!(
                check(&slack, headers.collect(), BODY, TS),
                Err(Rejection::MissingHeader(missing))
            );
        }
        let mut headers = published();
        headers[1].1 = SIG.replace("v0=", "v1=");
        assert_eq!(
            check(&slack, headers, BODY, TS),
            Err(Rejection::MalformedHeader(SIGNATURE))
        );
        let mut headers = published();
        headers[0].1 = "yesterday".into();
        assert_eq!(
            check(&slack, headers, BODY, TS),
            Err(Rejection::MalformedHeader(TIMESTAMP))
        );
        // A replay: the right signature, too late (or too early).
        assert_eq!(
            check(&slack, published(), BODY, TS + 301),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            check(&slack, published(), BODY, TS - 301),
            Err(Rejection::StaleTimestamp)
        );
    }

    #[test]
    fn signing_round_trips() {
        round_trip(&Verifier::Slack(scheme(&[SECRET])));
    }
}
