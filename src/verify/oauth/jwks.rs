//! A JWKS fetched from a URL and kept in memory, refreshed without ever making a request wait.
//!
//! - A token whose `kid` is in the key set is checked at once, whatever a refresh is doing.
//! - A token whose `kid` is not gets 401 at once; it may start a refresh in the background, so
//!   that a key the authorization server has just added works moments later.
//! - At most one fetch runs at a time. After a success, the set is fetched again once it is
//!   `jwks_refresh_s` old (the request that notices still uses the old set), and an unknown `kid`
//!   fetches it again no sooner than 30 s after the last success (`jwks_refresh_s` if shorter).
//!   After a failure, no fetch starts for a backoff doubling from 2 s to 5 min; the last set
//!   stays in use meanwhile.
//! - A fetched set replaces the old one whole: a key removed from the JWKS is refused from then on.
//! - Only before the first set has loaded does a request wait, at most 2 s, for the fetch in
//!   flight; without a set by then it gets 503 (`Rejection::Unavailable`), and the sender retries.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use tokio::sync::watch;

use crate::error_chain::error_chain;
use crate::response_body::read_at_most;
use crate::verify::Rejection;

/// An unknown `kid` fetches the set again no sooner than this after a success.
const MIN_INTERVAL: Duration = Duration::from_secs(30);
const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// How long a request waits for the very first key set.
const FIRST_LOAD_WAIT: Duration = Duration::from_secs(2);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct RemoteKeys {
    url: String,
    http: reqwest::Client,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Locked only to read or swap the set and the schedule, never across an `.await`.
    state: Mutex<State>,
    /// Counts finished fetches, for the requests that wait on the first key set.
    fetches: watch::Sender<u64>,
}

#[derive(Debug)]
struct State {
    set: Option<Arc<JwkSet>>,
    schedule: Schedule,
}

impl RemoteKeys {
    /// The key set at `url`, refetched every `ttl`. Nothing is fetched before a token needs a key.
    pub fn new(url: &str, ttl: Duration) -> Result<RemoteKeys, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|err| format!("cannot build the HTTP client: {err}"))?;
        Ok(RemoteKeys {
            url: url.to_string(),
            http,
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    set: None,
                    schedule: Schedule::new(ttl),
                }),
                fetches: watch::Sender::new(0),
            }),
        })
    }

    /// The key a token names (or the only key, when it names none).
    pub async fn key(&self, kid: Option<&str>) -> Result<Jwk, Rejection> {
        // Subscribed before looking, so that a fetch ending in between still wakes us.
        let mut finished = self.shared.fetches.subscribe();
        let (set, in_flight) = self.current(kid);
        if let Some(set) = set {
            return find(&set, kid).ok_or(Rejection::InvalidToken);
        }
        if !in_flight {
            return Err(Rejection::Unavailable); // backing off after a failed first fetch
        }
        let _ = tokio::time::timeout(FIRST_LOAD_WAIT, finished.changed()).await;
        let set = self.shared.state().set.clone();
        let set = set.ok_or(Rejection::Unavailable)?;
        find(&set, kid).ok_or(Rejection::InvalidToken)
    }

    /// The set as it stands, and whether a fetch is in flight; starts one when it is due.
    fn current(&self, kid: Option<&str>) -> (Option<Arc<JwkSet>>, bool) {
        let now = Instant::now();
        let mut state = self.shared.state();
        let set = state.set.clone();
        let found = set.as_deref().and_then(|set| find(set, kid)).is_some();
        let start = state.schedule.due(now, found);
        if start {
            state.schedule.in_flight = true;
        }
        let in_flight = state.schedule.in_flight;
        drop(state);
        if start {
            self.spawn_fetch();
        }
        (set, in_flight)
    }

    fn spawn_fetch(&self) {
        let fetch = Fetch(Some(self.shared.clone()));
        let (http, url) = (self.http.clone(), self.url.clone());
        tokio::spawn(async move {
            let fetched = fetch_set(&http, &url).await;
            match &fetched {
                Ok(set) => {
                    tracing::info!(url, keys = set.keys.len(), "Fetched the JWKS.");
                }
                Err(err) => {
                    tracing::error!(url, error = %err, "Fetching the JWKS failed; the last key set stays in use.");
                }
            }
            fetch.finish(fetched.ok());
        });
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the fetch in flight: a fetched set replaces the old one whole; `None` is a failure.
    fn finished(&self, fetched: Option<JwkSet>) {
        let now = Instant::now();
        let mut state = self.state();
        match fetched {
            Some(set) => {
                state.set = Some(Arc::new(set));
                state.schedule.succeeded(now);
            }
            None => state.schedule.failed(now),
        }
        drop(state);
        self.fetches.send_modify(|n| *n += 1);
    }
}

/// A fetch in flight. Dropped without `finish` (its task was cancelled), it counts as failed,
/// so the schedule never waits on a fetch that no longer runs.
struct Fetch(Option<Arc<Shared>>);

impl Fetch {
    fn finish(mut self, fetched: Option<JwkSet>) {
        if let Some(shared) = self.0.take() {
            shared.finished(fetched);
        }
    }
}

impl Drop for Fetch {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.finished(None);
        }
    }
}

/// When the key set may be fetched: the policy, apart from the I/O and the clock.
#[derive(Debug, Clone)]
struct Schedule {
    ttl: Duration,
    in_flight: bool,
    /// The last successful fetch.
    fetched_at: Option<Instant>,
    /// Failed fetches since the last success.
    failures: u32,
    /// After a failure, no fetch starts before this.
    retry_at: Option<Instant>,
}

impl Schedule {
    fn new(ttl: Duration) -> Schedule {
        Schedule {
            ttl,
            in_flight: false,
            fetched_at: None,
            failures: 0,
            retry_at: None,
        }
    }

    /// Whether a request (which found its key in the set, or not) should start a fetch now.
    fn due(&self, now: Instant, key_found: bool) -> bool {
        if self.in_flight || self.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        let Some(fetched_at) = self.fetched_at else {
            return true;
        };
        let age = now.saturating_duration_since(fetched_at);
        age >= self.ttl || (!key_found && age >= MIN_INTERVAL.min(self.ttl))
    }

    fn succeeded(&mut self, now: Instant) {
        self.in_flight = false;
        self.fetched_at = Some(now);
        self.failures = 0;
        self.retry_at = None;
    }

    fn failed(&mut self, now: Instant) {
        self.in_flight = false;
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + backoff(self.failures));
    }
}

/// The wait after `failures` failed fetches in a row: 2 s, 4 s, 8 s, ... up to 5 min.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_FIRST
        .saturating_mul(1 << doublings)
        .min(BACKOFF_CAP)
}

/// The signing key named `kid` (or the only signing key, when the token names none).
pub fn find(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    let mut keys = set.keys.iter().filter(|key| for_signatures(key));
    match kid {
        Some(kid) => keys
            .find(|key| key.common.key_id.as_deref() == Some(kid))
            .cloned(),
        None => match (keys.next(), keys.next()) {
            (Some(only), None) => Some(only.clone()),
            _ => None,
        },
    }
}

/// Whether a key may check signatures (RFC 7517 sections 4.2-4.3): not one published for
/// encryption (`use: "enc"`), nor one whose `key_ops` leave out `verify`.
fn for_signatures(key: &Jwk) -> bool {
    use jsonwebtoken::jwk::{KeyOperations, PublicKeyUse};
    let usable = matches!(
        key.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    let operations = key.common.key_operations.as_ref();
    usable && operations.is_none_or(|ops| ops.contains(&KeyOperations::Verify))
}

/// A key set larger than this is refused (they hold a few keys of a few hundred bytes each).
const MAX_SET_BYTES: usize = 1024 * 1024;

async fn fetch_set(http: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    let response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|err| error_chain(&err))?;
    let body = read_at_most(response, MAX_SET_BYTES)
        .await
        .map_err(|err| error_chain(&err))?;
    if !body.whole {
        return Err(format!("the key set is larger than {MAX_SET_BYTES} bytes"));
    }
    let (set, skipped) = parse_set(&body.bytes)?;
    for skipped in skipped {
        tracing::info!(url, key = %skipped, "A key of the JWKS is passed over.");
    }
    Ok(set)
}

/// A JWK set, without the keys hookgate cannot read (an algorithm or curve it does not know: an
/// encryption key, ES512), which RFC 7517 §5 has a reader ignore: with one of them, the whole
/// set was refused, and with it the signing keys beside it. With a description of each key
/// passed over; an error when a set that has keys has none hookgate can read.
pub fn parse_set(bytes: &[u8]) -> Result<(JwkSet, Vec<String>), String> {
    #[derive(serde::Deserialize)]
    struct AnySet {
        keys: Vec<serde_json::Value>,
    }
    let any: AnySet =
        serde_json::from_slice(bytes).map_err(|err| format!("not a JWK set: {err}"))?;
    let (mut keys, mut skipped) = (Vec::new(), Vec::new());
    for key in any.keys {
        let kid = key["kid"].as_str().map(str::to_string);
        match serde_json::from_value::<Jwk>(key) {
            Ok(key) => keys.push(key),
            Err(err) => skipped.push(format!("kid {kid:?}: {err}")),
        }
    }
    if keys.is_empty() && !skipped.is_empty() {
        return Err(format!(
            "no key of the JWK set can be read: {}",
            skipped.join("; ")
        ));
    }
    Ok((JwkSet { keys }, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(300);

    /// A key published for encryption, or whose `key_ops` leave out `verify`, checks no
    /// signature, named or the only one; the set's signing key is found beside it.
    #[test]
    fn only_signing_keys_check_signatures() {
        let key = |kid: &str, extra: &str| {
            format!(
                r#"{{"kty":"RSA","kid":"{kid}",{extra}"n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}}"#
            )
        };
        let set = |keys: &[&String]| {
            let keys: Vec<&str> = keys.iter().map(|key| key.as_str()).collect();
            let text = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
            parse_set(text.as_bytes()).unwrap().0
        };
        let enc = key("enc", r#""use":"enc","#);
        let wrap = key("wrap", r#""key_ops":["wrapKey"],"#);
        let sig = key("sig", r#""use":"sig","key_ops":["verify"],"#);
        let plain = key("plain", "");
        assert!(find(&set(&[&enc]), Some("enc")).is_none());
        assert!(find(&set(&[&enc]), None).is_none());
        assert!(find(&set(&[&wrap]), Some("wrap")).is_none());
        let kid = |key: Option<Jwk>| key.and_then(|key| key.common.key_id);
        assert_eq!(kid(find(&set(&[&enc, &sig]), None)), Some("sig".into()));
        assert_eq!(
            kid(find(&set(&[&enc, &wrap, &sig]), Some("sig"))),
            Some("sig".into())
        );
        assert_eq!(kid(find(&set(&[&plain]), None)), Some("plain".into()));
        assert!(
            find(&set(&[&plain, &sig]), None).is_none(),
            "two signing keys, no kid"
        );
    }

    #[test]
    fn keys_hookgate_cannot_read_are_passed_over_not_the_set() {
        let rsa = r#"{"kty":"RSA","kid":"sig","alg":"RS256","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#;
        let es512 = r#"{"kty":"EC","crv":"P-521","alg":"ES512","kid":"ec1","x":"AQ","y":"AQ"}"#;
        let both = format!(r#"{{"keys":[{rsa},{es512}]}}"#);
        let whole = serde_json::from_slice::<JwkSet>(both.as_bytes());
        assert!(whole.is_err(), "read as one, the set is refused");
        let (set, skipped) = parse_set(both.as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(set.find("sig").is_some());
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("ec1"), "{skipped:?}");
        let only = format!(r#"{{"keys":[{es512}]}}"#);
        assert!(parse_set(only.as_bytes()).unwrap_err().contains("ec1"));
        assert!(parse_set(br#"{"keys":[]}"#).unwrap().0.keys.is_empty());
        assert!(parse_set(b"[]").is_err());
    }

    fn after(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn the_first_fetch_is_due_once_at_a_time() {
        let start = Instant::now();
        let mut schedule = Schedule::new(TTL);
        assert!(schedule.due(start, false));
        schedule.in_flight = true;
        assert!(!schedule.due(start, false), "one fetch in flight at most");
        assert!(!schedule.due(after(start, 600), false));
    }

    #[test]
    fn after_a_success_unknown_kids_wait_the_minimum_interval_and_known_ones_the_ttl() {
        let start = Instant::now();
        let mut schedule = Schedule::new(TTL);
        schedule.in_flight = true;
        schedule.succeeded(start);
        assert!(!schedule.due(after(start, 29), false));
        assert!(schedule.due(after(start, 30), false));
        assert!(!schedule.due(after(start, 299), true));
        assert!(schedule.due(after(start, 300), true), "the set expires");
        // A TTL shorter than the minimum interval wins.
        let mut short = Schedule::new(Duration::from_secs(5));
        short.succeeded(start);
        assert!(short.due(after(start, 5), false));
    }

    #[test]
    fn failures_back_off_up_to_the_cap_and_a_success_resets() {
        let start = Instant::now();
        let mut schedule = Schedule::new(TTL);
        schedule.failed(start);
        assert!(!schedule.due(after(start, 1), false));
        assert!(schedule.due(after(start, 2), false));
        schedule.failed(after(start, 2));
        assert!(!schedule.due(after(start, 5), false));
        assert!(schedule.due(after(start, 6), false));
        for _ in 0..40 {
            schedule.failed(start);
        }
        assert!(!schedule.due(after(start, 299), false));
        assert!(schedule.due(after(start, 300), false));
        schedule.succeeded(start);
        assert_eq!((schedule.failures, schedule.retry_at), (0, None));
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let seconds: Vec<u64> = [1, 2, 3, 4, 8, 9, 1000]
            .iter()
            .map(|&n| backoff(n).as_secs())
            .collect();
        assert_eq!(seconds, vec![2, 4, 8, 16, 256, 300, 300]);
    }

    #[tokio::test]
    async fn a_dropped_fetch_counts_as_failed() {
        let keys = RemoteKeys::new("http://127.0.0.1:9/jwks.json", TTL).unwrap();
        keys.shared.state().schedule.in_flight = true;
        drop(Fetch(Some(keys.shared.clone())));
        let state = keys.shared.state();
        assert!(!state.schedule.in_flight);
        assert_eq!(state.schedule.failures, 1);
        assert_eq!(*keys.shared.fetches.borrow(), 1);
    }
}
