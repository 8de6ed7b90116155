//! One delivery attempt: the downstream request (the exact bytes, the original content type,
//! Standard Webhooks headers signed with the destination's secret, the `hookgate-*` headers)
//! and what its answer means.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::DestinationConfig;
use crate::response_body::read_at_most;
use crate::store::StoredEvent;
use crate::verify::standard_signature;

/// How much of a failed answer's body is kept for `/v1/errors`.
pub const ERROR_BODY_BYTES: usize = 512;

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth retrying: connection error, timeout, 5xx, 408, 429.
    Retry(Failure, Option<Duration>),
    /// Not worth retrying: any other answer.
    Permanent(Failure),
    /// The request could not even be built (a local error, the same on every attempt): the
    /// event is dead at once, and the destination's health is not in question.
    Unsendable(Failure),
}

/// A failed attempt, as `/v1/errors` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// `http`, `timeout`, `connect`, `io`, or `request` (the request could not be built).
    pub kind: &'static str,
    /// The first bytes of the answer's body, or the error's text.
    pub detail: String,
}

/// The `webhook-id` downstream: `{provider}:{event id}`, stable across retries and replays.
pub fn webhook_id(event: &StoredEvent) -> String {
    format!("{}:{}", event.provider, event.event_id)
}

pub async fn attempt(
    client: &reqwest::Client,
    destination: &DestinationConfig,
    event: &StoredEvent,
) -> Attempt {
    let request = match build(client, destination, event, SystemTime::now()) {
        Ok(request) => request,
        Err(failure) => return Attempt::Unsendable(failure),
    };
    match client.execute(request).await {
        Ok(response) => classify(response).await,
        Err(err) => Attempt::Retry(transport_failure(err), None),
    }
}

/// The downstream request for `event`, signed at `now`. An error here (a header value that
/// cannot be sent) is local and would recur on every attempt.
fn build(
    client: &reqwest::Client,
    destination: &DestinationConfig,
    event: &StoredEvent,
    now: SystemTime,
) -> Result<reqwest::Request, Failure> {
    let id = webhook_id(event);
    let timestamp = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let signature = standard_signature(&destination.signing_key, &id, &timestamp, &event.body);
    let mut request = client
        .post(destination.url.clone())
        .timeout(destination.timeout)
        .header("webhook-id", &id)
        .header("webhook-timestamp", &timestamp)
        .header("webhook-signature", signature)
        .header("hookgate-provider", &event.provider)
        .header("hookgate-seq", event.seq.to_string())
        .header("hookgate-source", event.source.as_str())
        .body(event.body.clone());
    if let Some(content_type) = &event.content_type {
        request = request.header("content-type", content_type);
    }
    request.build().map_err(|err| {
        let mut detail = format!(
            "cannot build the request: {}",
            crate::error_chain::error_chain(&err.without_url())
        );
        cut_at(&mut detail, ERROR_BODY_BYTES);
        Failure {
            status: None,
            kind: "request",
            detail,
        }
    })
}

async fn classify(response: reqwest::Response) -> Attempt {
    let status = response.status();
    if status.is_success() {
        return Attempt::Delivered;
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::retry_after::parse(v, SystemTime::now()));
    let body = read_at_most(response, ERROR_BODY_BYTES)
        .await
        .map(|body| body.bytes)
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&body).into_owned();
    let failure = Failure {
        status: Some(status.as_u16()),
        kind: "http",
        detail,
    };
    if is_retryable(status.as_u16()) {
        Attempt::Retry(failure, retry_after)
    } else {
        Attempt::Permanent(failure)
    }
}

/// Cuts `text` to at most `max` bytes, at a character's start (`String::truncate` panics inside
/// one, and an error chain may quote a peer's non-ASCII names).
fn cut_at(text: &mut String, max: usize) {
    if text.len() > max {
        let end = (0..=max)
            .rev()
            .find(|at| text.is_char_boundary(*at))
            .unwrap_or(0);
        text.truncate(end);
    }
}

/// 5xx, 408 and 429 are retried; other answers are final.
pub fn is_retryable(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// Why an attempt failed, without its URL (it may carry a credential: `?api_key=`, `user:pass@`;
/// the text goes to the log, the admin API and dead records).
fn transport_failure(err: reqwest::Error) -> Failure {
    let err = err.without_url();
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else {
        "io"
    };
    let mut detail = crate::error_chain::error_chain(&err);
    cut_at(&mut detail, ERROR_BODY_BYTES);
    Failure {
        status: None,
        kind,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;
    use crate::secret::Secret;
    use std::time::Duration;

    #[test]
    fn an_error_is_cut_at_a_character_not_inside_one() {
        let mut text = format!("{}é tail", "a".repeat(ERROR_BODY_BYTES - 1));
        cut_at(&mut text, ERROR_BODY_BYTES);
        assert_eq!(text, "a".repeat(ERROR_BODY_BYTES - 1));
        let mut short = "é".to_string();
        cut_at(&mut short, ERROR_BODY_BYTES);
        assert_eq!(short, "é");
    }

    fn destination() -> DestinationConfig {
        DestinationConfig {
            name: "crm".into(),
            // Nothing listens there: a test that reached the network would fail, not hang.
            url: url::Url::parse("http://127.0.0.1:9/ingest").unwrap(),
            providers: None,
            signing_key: Secret::from_bytes(b"key".to_vec()),
            timeout: Duration::from_secs(1),
            retry_delays: vec![Duration::from_secs(3600)],
            max_in_flight: 1,
            rate_limit_per_min: None,
            ordered: true,
            pause_after_failures: 20,
            alert_ratio: 0.5,
            alert_url: None,
        }
    }

    fn event(event_id: &str) -> StoredEvent {
        StoredEvent {
            seq: 7,
            provider: "p".into(),
            event_id: event_id.into(),
            received_at_ms: 0,
            source: Source::Webhook,
            content_type: Some("application/json".into()),
            body: b"{}".to_vec(),
            topic: None,
        }
    }

    #[test]
    fn requests_carry_the_standard_webhooks_headers() {
        let client = reqwest::Client::new();
        let request = build(&client, &destination(), &event("evt-1"), UNIX_EPOCH).unwrap();
        let header = |name| request.headers()[name].to_str().unwrap();
        assert_eq!(header("webhook-id"), "p:evt-1");
        assert_eq!(header("webhook-timestamp"), "0");
        assert_eq!(header("hookgate-seq"), "7");
        assert_eq!(request.timeout(), Some(&Duration::from_secs(1)));
    }

    /// Events stored before ids were made header-safe may hold a control character: such an
    /// event cannot be sent, now or ever, so it is not retried.
    #[tokio::test]
    async fn a_request_that_cannot_be_built_is_unsendable_not_retried() {
        let client = reqwest::Client::new();
        let attempt = attempt(&client, &destination(), &event("x\ny")).await;
        let Attempt::Unsendable(failure) = attempt else {
            panic!("expected Unsendable, got {attempt:?}");
        };
        assert_eq!((failure.status, failure.kind), (None, "request"));
        assert!(
            failure.detail.starts_with("cannot build the request"),
            "{}",
            failure.detail
        );
    }

    #[test]
    fn retryable_statuses() {
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(is_retryable(status), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 410, 422, 301] {
            assert!(!is_retryable(status), "{status}");
        }
    }
}
