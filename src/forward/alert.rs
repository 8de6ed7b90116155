//! Alerts: logged as errors, and posted as Slack-compatible JSON (`{"text": ...}`) to the
//! destination's `alert_url` when it has one.

use std::time::Duration;

use url::Url;

/// How long one post of an alert may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Posts of one alert at most, a second apart, then doubling.
const ATTEMPTS: u32 = 3;

pub struct Alerter {
    url: Option<Url>,
    client: reqwest::Client,
}

impl Alerter {
    pub fn new(url: Option<Url>, client: reqwest::Client) -> Alerter {
        Alerter { url, client }
    }

    pub fn send(&self, destination: &str, text: &str) {
        let Some(url) = self.url.clone() else { return };
        let body =
            serde_json::json!({ "text": format!("hookgate: destination {destination}: {text}") });
        let client = self.client.clone();
        let destination = destination.to_string();
        actix_web::rt::spawn(async move {
            for attempt in 1..=ATTEMPTS {
                let sent = client
                    .post(url.clone())
                    .timeout(POST_TIMEOUT)
                    .json(&body)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status());
                let Err(err) = sent else { return };
                // Without the URL: a chat service's webhook URL is its credential.
                let err = err.without_url();
                tracing::error!(destination, attempt, error = %crate::error_chain::error_chain(&err), "Cannot post the alert.");
                if attempt < ATTEMPTS {
                    tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
                }
            }
        });
    }
}
