//! RFC 7662 token introspection against an external authorization server, through the `oauth2`
//! crate with hookgate's own client credentials. An active answer counts only if it is unexpired
//! and, when configured, names our `audience` in its `aud` and one of `allowed_client_ids` as its
//! `client_id`. Answers are cached ([`TokenCache`]): active ones until their `exp` but no longer
//! than `cache_ttl_s`, refused ones for `negative_cache_ttl_s`; an unreachable server is never
//! cached (503, the sender retries). Concurrent requests with one unknown token share one
//! introspection and its outcome, a failure too, so a sender posting thousands of webhooks with
//! one token costs one call (and, the server down, each waits for one call, not for every call
//! before it).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oauth2::basic::BasicClient;
use oauth2::{
    AccessToken, ClientId, ClientSecret, EndpointNotSet, EndpointSet, IntrospectionUrl,
    TokenIntrospectionResponse,
};
use sha2::{Digest, Sha256};

use super::cache::{TokenCache, TokenKey};
use super::Grant;
use crate::error_chain::error_chain;
use crate::response_body::OAuthHttp;
use crate::secret::Secret;
use crate::verify::Rejection;

const DEFAULT_CACHE_SIZE: usize = 10_000;
const DEFAULT_CACHE_TTL_S: u64 = 300;
const DEFAULT_NEGATIVE_CACHE_TTL_S: u64 = 30;
/// An active token without `exp` is trusted this long (at most `cache_ttl_s`) before asking again.
const NO_EXP_TTL: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(5);
/// Calls to the introspection endpoint a provider makes at most: a second, and at once. Every
/// token not in the cache costs a call, so random bearer tokens sent from anywhere made one each
/// (hookgate's own client hammering the authorization server, which then throttled it, genuine
/// senders' new tokens with the rest). Past these a request whose token is not in the cache is
/// answered 503 (the sender retries); tokens in the cache are not touched.
const CALLS_PER_S: u32 = 100;
const CALLS_BURST: u32 = 200;
const CALLS_AT_ONCE: usize = 32;
/// The calls for tokens found active before, whose answer's time in the cache ended, have a
/// bound of their own: random tokens sent from anywhere took the whole of the other, and every
/// genuine sender was answered 503 once its token's `cache_ttl_s` had passed.
const RENEWALS_PER_S: u32 = 50;
const RENEWALS_BURST: u32 = 100;
const RENEWALS_AT_ONCE: usize = 16;

type IntrospectionClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointSet, EndpointNotSet, EndpointNotSet>;

pub struct Introspection {
    client: IntrospectionClient,
    http: OAuthHttp,
    /// What an active answer must name, when configured.
    audience: Option<String>,
    allowed_client_ids: Option<Vec<String>>,
    cache: TokenCache,
    /// The tokens being introspected right now: each call's number, and its outcome once known.
    in_flight: Arc<Mutex<HashMap<TokenKey, (u64, Outcome)>>>,
    calls_made: std::sync::atomic::AtomicU64,
    /// The bounds on calls for new tokens ([`CALLS_PER_S`], [`CALLS_AT_ONCE`]), and on those for
    /// tokens found active before ([`RENEWALS_PER_S`], [`RENEWALS_AT_ONCE`]).
    calls: Budget,
    renewals: Budget,
}

/// A call's outcome, shared by every request waiting for it (`None` until it is known).
type Outcome = tokio::sync::watch::Receiver<Option<Result<Grant, Rejection>>>;
type OutcomeSender = tokio::sync::watch::Sender<Option<Result<Grant, Rejection>>>;

/// A request's part in the introspection of its token.
enum Turn {
    /// Another request's call is in flight: its outcome.
    Wait(Outcome),
    /// This request makes the call, and sends its outcome.
    Call(OutcomeSender, InFlightEntry),
}

/// How many calls may be made, a second and at once.
struct Budget {
    per_s: governor::DefaultDirectRateLimiter,
    at_once: tokio::sync::Semaphore,
}

impl Budget {
    fn new(per_s: u32, burst: u32, at_once: usize) -> Budget {
        let nonzero = |n: u32| NonZeroU32::new(n).expect("not 0");
        Budget {
            per_s: governor::RateLimiter::direct(
                governor::Quota::per_second(nonzero(per_s)).allow_burst(nonzero(burst)),
            ),
            at_once: tokio::sync::Semaphore::new(at_once),
        }
    }
}

/// Removes its call's entry from the tokens in flight when the call ends, or when the request
/// making it is dropped (a client that reset its connection: the entry stayed for good).
struct InFlightEntry {
    in_flight: Arc<Mutex<HashMap<TokenKey, (u64, Outcome)>>>,
    key: TokenKey,
    call: u64,
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if in_flight
            .get(&self.key)
            .is_some_and(|(call, _)| *call == self.call)
        {
            in_flight.remove(&self.key);
        }
    }
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("url", self.client.introspection_url())
            .field("audience", &self.audience)
            .field("allowed_client_ids", &self.allowed_client_ids)
            .finish_non_exhaustive()
    }
}

/// `mode = "introspection"`'s keys, with `client_secret` resolved.
#[derive(Debug, Default)]
pub struct IntrospectionSettings {
    /// The RFC 7662 endpoint.
    pub introspection_url: Option<String>,
    /// hookgate's own credentials at that endpoint. `client_secret` is `None` when it is
    /// missing or could not be resolved: the caller reports which.
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// An `aud` an active answer must contain.
    pub audience: Option<String>,
    /// The `client_id`s an active answer may name (default: any).
    pub allowed_client_ids: Option<Vec<String>>,
    /// Most tokens kept in the cache (default 10000).
    pub cache_size: Option<usize>,
    /// Longest an active answer is trusted (default 300).
    pub cache_ttl_s: Option<u64>,
    /// How long a refused token is remembered (default 30).
    pub negative_cache_ttl_s: Option<u64>,
}

impl Introspection {
    /// Checks every setting, reporting every problem at once.
    pub fn new(raw: IntrospectionSettings) -> Result<Introspection, Vec<String>> {
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
        let ttl_s = raw.cache_ttl_s.unwrap_or(DEFAULT_CACHE_TTL_S);
        if !(1..=86_400).contains(&ttl_s) {
            errors.push("oauth cache_ttl_s must be between 1 and 86400".into());
        }
        let negative_ttl_s = raw
            .negative_cache_ttl_s
            .unwrap_or(DEFAULT_NEGATIVE_CACHE_TTL_S);
        if !(1..=3600).contains(&negative_ttl_s) {
            errors.push("oauth negative_cache_ttl_s must be between 1 and 3600".into());
        }
        // (A huge one is warned about: `audit_scheme`.)
        let cache_size = raw.cache_size.unwrap_or(DEFAULT_CACHE_SIZE);
        if cache_size == 0 {
            errors.push("oauth cache_size must be at least 1".into());
        }
        if raw.audience.as_deref() == Some("") {
            errors.push("oauth audience must not be empty".into());
        }
        match raw.allowed_client_ids.as_deref() {
            Some([]) => errors.push(
                "oauth allowed_client_ids must not be empty (leave it out to allow any client)"
                    .into(),
            ),
            Some(ids) if ids.iter().any(String::is_empty) => {
                errors.push("oauth allowed_client_ids must not hold an empty id".into())
            }
            _ => {}
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .map_err(|err| vec![format!("cannot build the HTTP client: {err}")])?;
        let (Some(url), Some(client_id), Some(secret)) = (url, raw.client_id, raw.client_secret)
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
            http: OAuthHttp(http),
            audience: raw.audience,
            allowed_client_ids: raw.allowed_client_ids,
            cache: TokenCache::new(
                cache_size,
                Duration::from_secs(ttl_s),
                Duration::from_secs(negative_ttl_s),
            ),
            in_flight: Arc::default(),
            calls_made: std::sync::atomic::AtomicU64::new(0),
            calls: Budget::new(CALLS_PER_S, CALLS_BURST, CALLS_AT_ONCE),
            renewals: Budget::new(RENEWALS_PER_S, RENEWALS_BURST, RENEWALS_AT_ONCE),
        })
    }

    pub async fn validate(&self, token: &str, now: SystemTime) -> Result<Grant, Rejection> {
        let key: TokenKey = Sha256::digest(token.as_bytes()).into();
        loop {
            if let Some(known) = self.cache.get(&key, now) {
                return known.into_result();
            }
            let (sender, entry) = match self.turn(key) {
                Turn::Wait(mut outcome) => {
                    let known = outcome
                        .wait_for(Option::is_some)
                        .await
                        .map(|known| known.clone());
                    match known {
                        Ok(Some(known)) => return known,
                        // Its request was dropped before the call ended: make one.
                        _ => continue,
                    }
                }
                Turn::Call(sender, entry) => (sender, entry),
            };
            let result = self.introspect(token, key, now).await;
            sender.send_replace(Some(result.clone()));
            drop(entry);
            return result;
        }
    }

    /// The call in flight for `key` to wait for, or, with none, a new one to make.
    fn turn(&self, key: TokenKey) -> Turn {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        // One whose request was dropped (its sender with it) is replaced.
        if let Some((_, outcome)) = in_flight.get(&key) {
            if outcome.has_changed().is_ok() {
                return Turn::Wait(outcome.clone());
            }
        }
        let call = self
            .calls_made
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, outcome) = tokio::sync::watch::channel(None);
        in_flight.insert(key, (call, outcome));
        let entry = InFlightEntry {
            in_flight: self.in_flight.clone(),
            key,
            call,
        };
        Turn::Call(sender, entry)
    }

    /// Asks the server, and caches its verdict (not a failure to reach it).
    async fn introspect(
        &self,
        token: &str,
        key: TokenKey,
        now: SystemTime,
    ) -> Result<Grant, Rejection> {
        let budget = if self.cache.was_active(&key) {
            &self.renewals
        } else {
            &self.calls
        };
        // Refused as `token_check_unavailable` (counted, its log sampled as every refusal).
        let Ok(_call) = budget.at_once.try_acquire() else {
            return Err(Rejection::Unavailable);
        };
        if budget.per_s.check().is_err() {
            return Err(Rejection::Unavailable);
        }
        let response = self
            .client
            .introspect(&AccessToken::new(token.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|err| {
                tracing::error!(error = %error_chain(&err), "Token introspection failed.");
                Rejection::Unavailable
            })?;
        match self.judge(&response, now) {
            Ok((grant, exp)) => {
                self.cache.remember_active(key, grant.clone(), exp, now);
                Ok(grant)
            }
            Err(reason) => {
                tracing::debug!(reason, "The introspected token is refused.");
                self.cache.remember_refused(key, now);
                Err(Rejection::InvalidToken)
            }
        }
    }

    /// What an answer grants and until when, or why it grants nothing.
    fn judge(
        &self,
        answer: &impl TokenIntrospectionResponse,
        now: SystemTime,
    ) -> Result<(Grant, SystemTime), &'static str> {
        if !answer.active() {
            return Err("inactive");
        }
        let exp = match answer.exp() {
            Some(exp) => u64::try_from(exp.timestamp())
                .ok()
                .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
                .ok_or("exp out of range")?,
            None => now + NO_EXP_TTL,
        };
        if exp <= now {
            return Err("expired");
        }
        if let Some(audience) = &self.audience {
            if !answer.aud().is_some_and(|aud| aud.contains(audience)) {
                return Err("another audience");
            }
        }
        if let Some(allowed) = &self.allowed_client_ids {
            if !answer.client_id().is_some_and(|id| allowed.contains(id)) {
                return Err("another client");
            }
        }
        let scopes = answer
            .scopes()
            .map(|scopes| scopes.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        Ok((Grant { scopes }, exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth2::basic::BasicTokenIntrospectionResponse;
    use serde_json::json;

    fn raw() -> IntrospectionSettings {
        IntrospectionSettings {
            introspection_url: Some("http://127.0.0.1:9/introspect".into()),
            client_id: Some("hookgate".into()),
            client_secret: Some(Secret::from_literal("introspection-secret")),
            ..IntrospectionSettings::default()
        }
    }

    fn answer(fields: serde_json::Value) -> BasicTokenIntrospectionResponse {
        serde_json::from_value(fields).unwrap()
    }

    fn unix(time: SystemTime) -> u64 {
        time.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn answers_for_another_audience_or_client_are_refused() {
        let checked = Introspection::new(IntrospectionSettings {
            audience: Some("hookgate".into()),
            allowed_client_ids: Some(vec!["sender".into()]),
            ..raw()
        })
        .unwrap();
        let now = SystemTime::now();
        let exp = unix(now) + 600;
        let verdict = |fields| checked.judge(&answer(fields), now).map(|(g, _)| g.scopes);
        assert_eq!(
            verdict(
                json!({"active": true, "exp": exp, "aud": "hookgate", "client_id": "sender", "scope": "a b"})
            ),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        assert!(
            verdict(json!({"active": true, "aud": ["x", "hookgate"], "client_id": "sender"}))
                .is_ok()
        );
        let refused = [
            (
                json!({"active": true, "aud": "other", "client_id": "sender"}),
                "another audience",
            ),
            (
                json!({"active": true, "aud": ["x", "y"], "client_id": "sender"}),
                "another audience",
            ),
            (
                json!({"active": true, "client_id": "sender"}),
                "another audience",
            ),
            (
                json!({"active": true, "aud": "hookgate", "client_id": "intruder"}),
                "another client",
            ),
            (json!({"active": true, "aud": "hookgate"}), "another client"),
            (
                json!({"active": false, "aud": "hookgate", "client_id": "sender"}),
                "inactive",
            ),
            (
                json!({"active": true, "exp": unix(now), "aud": "hookgate", "client_id": "sender"}),
                "expired",
            ),
        ];
        for (fields, reason) in refused {
            assert_eq!(verdict(fields.clone()), Err(reason), "{fields}");
        }
        // Without audience or clients configured, any active answer counts.
        let open = Introspection::new(raw()).unwrap();
        let (_, until) = open
            .judge(&answer(json!({"active": true, "aud": "other"})), now)
            .unwrap();
        assert_eq!(until, now + NO_EXP_TTL);
    }

    /// A request dropped during its token's introspection (its client reset the connection)
    /// leaves no entry behind (one stayed per such token, for good), and the next request with
    /// that token makes a call of its own.
    #[tokio::test]
    async fn a_request_dropped_during_its_introspection_leaves_nothing_behind() {
        // Takes connections into its backlog, never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let checked = Introspection::new(IntrospectionSettings {
            introspection_url: Some(format!(
                "http://{}/introspect",
                silent.local_addr().unwrap()
            )),
            ..raw()
        })
        .unwrap();
        let now = SystemTime::now();
        for n in 0..20 {
            let token = format!("token-{n}");
            let check = checked.validate(&token, now);
            assert!(tokio::time::timeout(Duration::from_millis(20), check)
                .await
                .is_err());
        }
        assert_eq!(checked.in_flight.lock().unwrap().len(), 0);
        let check = checked.validate("token-1", now);
        assert!(tokio::time::timeout(Duration::from_millis(20), check)
            .await
            .is_err());
        assert_eq!(checked.in_flight.lock().unwrap().len(), 0);
    }

    #[test]
    fn new_keys_are_validated() {
        let errors = Introspection::new(IntrospectionSettings {
            cache_ttl_s: Some(0),
            negative_cache_ttl_s: Some(7200),
            cache_size: Some(0),
            audience: Some(String::new()),
            allowed_client_ids: Some(vec![]),
            ..raw()
        })
        .unwrap_err();
        assert_eq!(
            errors,
            vec![
                "oauth cache_ttl_s must be between 1 and 86400",
                "oauth negative_cache_ttl_s must be between 1 and 3600",
                "oauth cache_size must be at least 1",
                "oauth audience must not be empty",
                "oauth allowed_client_ids must not be empty (leave it out to allow any client)",
            ]
        );
        let errors = Introspection::new(IntrospectionSettings {
            allowed_client_ids: Some(vec!["a".into(), String::new()]),
            ..raw()
        })
        .unwrap_err();
        assert_eq!(
            errors,
            vec!["oauth allowed_client_ids must not hold an empty id"]
        );
    }
}
