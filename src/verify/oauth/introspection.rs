//! RFC 7662 token introspection against an external authorization server, through the `oauth2`
//! crate with hookgate's own client credentials. An active result is cached until its `exp`
//! (bounded), and concurrent requests with one unknown token share one introspection, so a sender
//! posting thousands of webhooks with one token costs one call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oauth2::basic::BasicClient;
use oauth2::{
    AccessToken, ClientId, ClientSecret, EndpointNotSet, EndpointSet, IntrospectionUrl,
    TokenIntrospectionResponse,
};
use sha2::{Digest, Sha256};

use super::Grant;
use crate::config::{resolve_secret, RawOAuth};
use crate::verify::Rejection;

const DEFAULT_CACHE_SIZE: usize = 10_000;
/// An active token without `exp` is trusted this long before asking again.
const NO_EXP_TTL: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(5);

type IntrospectionClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointSet, EndpointNotSet, EndpointNotSet>;

pub struct Introspection {
    client: IntrospectionClient,
    http: reqwest::Client,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    cache_size: usize,
    /// One lock per token being introspected right now.
    in_flight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Clone)]
struct Cached {
    until: SystemTime,
    grant: Grant,
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("url", self.client.introspection_url())
            .finish_non_exhaustive()
    }
}

impl Introspection {
    pub fn build(raw: &RawOAuth) -> Result<Introspection, Vec<String>> {
        let mut errors = Vec::new();
        let url = match raw
            .introspection_url
            .as_deref()
            .map(|u| IntrospectionUrl::new(u.to_string()))
        {
            Some(Ok(url)) => Some(url),
            Some(Err(err)) => {
                errors.push(format!("oauth introspection_url is not a URL: {err}"));
                None
            }
            None => {
                errors.push("oauth mode \"introspection\" needs `introspection_url`".into());
                None
            }
        };
        if raw.client_id.is_none() {
            errors.push("oauth mode \"introspection\" needs `client_id`".into());
        }
        let secret = match raw.client_secret.as_deref().map(resolve_secret) {
            Some(Ok((secret, _))) => Some(secret),
            Some(Err(message)) => {
                errors.push(format!("oauth client_secret: {message}"));
                None
            }
            None => {
                errors.push("oauth mode \"introspection\" needs `client_secret`".into());
                None
            }
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .map_err(|err| vec![format!("cannot build the HTTP client: {err}")])?;
        let (Some(url), Some(client_id), Some(secret)) = (url, raw.client_id.clone(), secret)
        else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let secret = String::from_utf8(secret.expose().to_vec())
            .map_err(|_| vec!["oauth client_secret must be UTF-8".to_string()])?;
        let client = BasicClient::new(ClientId::new(client_id))
            .set_client_secret(ClientSecret::new(secret))
            .set_introspection_url(url);
        Ok(Introspection {
            client,
            http,
            cache: Mutex::new(HashMap::new()),
            cache_size: raw.cache_size.unwrap_or(DEFAULT_CACHE_SIZE).max(1),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    pub async fn validate(&self, token: &str, now: SystemTime) -> Result<Grant, Rejection> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(grant) = self.cached(&key, now) {
            return Ok(grant);
        }
        let lock = {
            let mut in_flight = self.in_flight.lock().map_err(|_| Rejection::Unavailable)?;
            in_flight.entry(key).or_default().clone()
        };
        let _turn = lock.lock().await;
        // Whoever held the lock before may have filled the cache.
        let result = match self.cached(&key, now) {
            Some(grant) => Ok(grant),
            None => self.introspect(token, key, now).await,
        };
        if let Ok(mut in_flight) = self.in_flight.lock() {
            in_flight.remove(&key);
        }
        result
    }

    fn cached(&self, key: &[u8; 32], now: SystemTime) -> Option<Grant> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|entry| entry.until > now)
            .map(|entry| entry.grant.clone())
    }

    async fn introspect(
        &self,
        token: &str,
        key: [u8; 32],
        now: SystemTime,
    ) -> Result<Grant, Rejection> {
        let response = self
            .client
            .introspect(&AccessToken::new(token.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "Token introspection failed.");
                Rejection::Unavailable
            })?;
        let exp = response
            .exp()
            .and_then(|exp| u64::try_from(exp.timestamp()).ok())
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)));
        if !response.active() || exp.is_some_and(|exp| exp <= now) {
            return Err(Rejection::InvalidToken);
        }
        let grant = Grant {
            scopes: response
                .scopes()
                .map(|scopes| scopes.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
        };
        let until = exp.unwrap_or(now + NO_EXP_TTL);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= self.cache_size {
                cache.retain(|_, entry| entry.until > now);
            }
            if cache.len() >= self.cache_size {
                // Still full of live entries: start over rather than grow without bound.
                cache.clear();
            }
            cache.insert(
                key,
                Cached {
                    until,
                    grant: grant.clone(),
                },
            );
        }
        Ok(grant)
    }
}
