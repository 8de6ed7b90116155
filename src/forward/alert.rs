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
                // Without the URL: a chat service's webhook URL is its credential.
                let err = err.without_url();
                tracing::error!(destination, error = %crate::error_chain::error_chain(&err), "Cannot post the alert.");
            }
        });
    }
}
