//! OAuth 2 client credentials for a sync API, through the `oauth2` crate. The token is cached
//! and replaced `refresh_before` its expiry (at the latest halfway through its life), so a poll
//! every few seconds costs one token request per token lifetime; a 401 drops it for the next try.

use std::time::{Duration, Instant};

use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, EndpointNotSet, EndpointSet, Scope, TokenResponse, TokenUrl};

use crate::error_chain::error_chain;
use crate::response_body::OAuthHttp;
use crate::secret::Secret;

type TokenClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// A token without `expires_in` is kept this long (or until a 401).
const NO_EXPIRY_TTL: Duration = Duration::from_secs(3600);
/// A token is replaced after a day at the latest, whatever `expires_in` says.
const MAX_REUSE: Duration = Duration::from_secs(86_400);

pub struct TokenSource {
    client: TokenClient,
    scope: Option<String>,
    refresh_before: Duration,
    http: OAuthHttp,
    /// Only the provider's worker asks, one request at a time; the lock is never contended.
    cached: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    token: String,
    renew_at: Instant,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", self.client.token_uri())
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(
        token_url: &url::Url,
        client_id: &str,
        client_secret: &Secret,
        scope: Option<String>,
        refresh_before: Duration,
        http: reqwest::Client,
    ) -> Result<TokenSource, String> {
        let secret = String::from_utf8(client_secret.expose().to_vec())
            .map_err(|_| "client_secret must be UTF-8".to_string())?;
        let token_url = TokenUrl::from_url(token_url.clone());
        let client = BasicClient::new(ClientId::new(client_id.to_string()))
            .set_client_secret(ClientSecret::new(secret))
            .set_token_uri(token_url);
        Ok(TokenSource {
            client,
            scope,
            refresh_before,
            http: OAuthHttp(http),
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    pub async fn bearer(&self) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        if let Some(entry) = cached.as_ref().filter(|c| Instant::now() < c.renew_at) {
            return Ok(entry.token.clone());
        }
        let mut request = self.client.exchange_client_credentials();
        if let Some(scope) = &self.scope {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let response = request
            .request_async(&self.http)
            .await
            .map_err(|err| format!("token request failed: {}", error_chain(&err)))?;
        let token = response.access_token().secret().clone();
        let lifetime = response.expires_in().unwrap_or(NO_EXPIRY_TTL);
        let renew_in = renew_after(lifetime, self.refresh_before);
        tracing::info!(
            renew_in_s = renew_in.as_secs(),
            "Fetched a sync API access token."
        );
        *cached = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + renew_in,
        });
        Ok(token)
    }

    /// Forgets the cached token (the API answered 401 with it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

/// When a token that lives `lifetime` is replaced: `refresh_before` its end, but never before
/// half its life, so a short-lived token is not fetched for every poll; and after a day at the
/// latest (an `expires_in` of 2^64 - 1 seconds is a valid answer).
pub fn renew_after(lifetime: Duration, refresh_before: Duration) -> Duration {
    lifetime
        .saturating_sub(refresh_before)
        .max(lifetime / 2)
        .min(MAX_REUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_time() {
        let min = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(renew_after(min(120), min(30)), min(90));
        assert_eq!(renew_after(min(60), min(30)), min(30));
        assert_eq!(renew_after(min(10), min(30)), min(5));
        assert_eq!(renew_after(Duration::ZERO, min(30)), Duration::ZERO);
        assert_eq!(renew_after(min(60 * 48), min(30)), min(60 * 24));
        let forever = Duration::from_secs(u64::MAX);
        assert_eq!(renew_after(forever, min(30)), MAX_REUSE);
        assert!(Instant::now()
            .checked_add(renew_after(forever, min(30)))
            .is_some());
    }
}
