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

    /// Logs the alert as an error and posts it (in the background) when there is an
    /// `alert_url`. Any answer but a 2xx is a failure: a redirect (an http URL whose host moved
    /// to https) is not followed, and the alert would be lost in silence.
    pub fn send(&self, destination: &str, text: &str) {
        tracing::error!(destination, "Destination alert: {text}.");
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
                    .await;
                let error = match sent {
                    Ok(answer) if answer.status().is_success() => return,
                    Ok(answer) => format!("answered {}", answer.status()),
                    // Without the URL: a chat service's webhook URL is its credential.
                    Err(err) => crate::error_chain::error_chain(&err.without_url()),
                };
                tracing::error!(destination, attempt, error, "Cannot post the alert.");
                if attempt < ATTEMPTS {
                    tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
                }
            }
        });
    }
}
