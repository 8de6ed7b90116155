//! Alerts: logged as errors, and posted as Slack-compatible JSON (`{"text": ...}`) to the
//! destination's `alert_url` when it has one.

use url::Url;

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
            let sent = client
                .post(url)
                .json(&body)
                .send()
                .await
                .and_then(|r| r.error_for_status());
            if let Err(err) = sent {
                tracing::error!(destination, error = %err, "Cannot post the alert.");
            }
        });
    }
}
