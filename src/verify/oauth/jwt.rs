//! JWT access tokens checked against a JWKS (a file read at start-up, or a URL fetched on first
//! use and again when a token names an unknown `kid`, at most every 30 s). `iss`, `aud` and `exp`
//! are required, `nbf` is honoured, and only the configured algorithms are accepted: HMAC
//! algorithms are refused at start-up (a public key must never be usable as an HMAC secret) and
//! `none` is not an algorithm at all.

use std::str::FromStr;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{split_scopes, Grant};
use crate::config::RawOAuth;
use crate::verify::Rejection;

const REFRESH_EVERY: Duration = Duration::from_secs(30);
const LEEWAY_S: u64 = 30;

#[derive(Debug)]
pub struct Jwt {
    keys: Keys,
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
}

#[derive(Debug)]
enum Keys {
    File(JwkSet),
    Url {
        url: String,
        http: reqwest::Client,
        /// The last key set fetched and when.
        current: tokio::sync::RwLock<Option<(JwkSet, Instant)>>,
    },
}

/// The claims hookgate reads besides the registered ones `jsonwebtoken` validates.
#[derive(Deserialize)]
struct AccessClaims {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Vec<String>>,
}

impl Jwt {
    pub fn build(raw: &RawOAuth) -> Result<Jwt, Vec<String>> {
        let mut errors = Vec::new();
        let issuer = raw.issuer.clone().unwrap_or_else(|| {
            errors.push("oauth mode \"jwt\" needs `issuer`".into());
            String::new()
        });
        let audience = raw.audience.clone().unwrap_or_else(|| {
            errors.push("oauth mode \"jwt\" needs `audience`".into());
            String::new()
        });
        let names = raw
            .algorithms
            .clone()
            .unwrap_or_else(|| vec!["RS256".into()]);
        let mut algorithms = Vec::new();
        for name in &names {
            match Algorithm::from_str(name) {
                Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
                    errors.push(format!("oauth algorithm {name} is refused: HMAC tokens cannot be checked against a JWKS of public keys"))
                }
                Ok(algorithm) => algorithms.push(algorithm),
                Err(_) => errors.push(format!("oauth algorithm {name:?} is not a supported JWS algorithm")),
            }
        }
        if names.is_empty() {
            errors.push("oauth `algorithms` must not be empty".into());
        }
        let keys = match raw.jwks.as_deref() {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                match reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(Duration::from_secs(5))
                    .build()
                {
                    Ok(http) => Some(Keys::Url {
                        url: url.to_string(),
                        http,
                        current: tokio::sync::RwLock::new(None),
                    }),
                    Err(err) => {
                        errors.push(format!("cannot build the HTTP client: {err}"));
                        None
                    }
                }
            }
            Some(reference) => match reference.strip_prefix("file:").map(std::fs::read) {
                Some(Ok(bytes)) => match serde_json::from_slice::<JwkSet>(&bytes) {
                    Ok(set) => Some(Keys::File(set)),
                    Err(err) => {
                        errors.push(format!("oauth jwks {reference}: not a JWK set: {err}"));
                        None
                    }
                },
                Some(Err(err)) => {
                    errors.push(format!("oauth jwks {reference}: {err}"));
                    None
                }
                None => {
                    errors.push(format!(
                        "oauth jwks {reference:?} must be \"file:/path\" or an http(s) URL"
                    ));
                    None
                }
            },
            None => {
                errors.push("oauth mode \"jwt\" needs `jwks`".into());
                None
            }
        };
        match keys {
            Some(keys) if errors.is_empty() => Ok(Jwt {
                keys,
                issuer,
                audience,
                algorithms,
            }),
            _ => Err(errors),
        }
    }

    pub async fn validate(&self, token: &str) -> Result<Grant, Rejection> {
        let header = decode_header(token).map_err(|_| Rejection::InvalidToken)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(Rejection::InvalidToken);
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        if jwk
            .common
            .key_algorithm
            .is_some_and(|alg| alg.to_string() != format!("{:?}", header.alg))
        {
            return Err(Rejection::InvalidToken);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| Rejection::InvalidToken)?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = LEEWAY_S;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<AccessClaims>(token, &key, &validation)
            .map_err(|_| Rejection::InvalidToken)?;
        let mut scopes = data
            .claims
            .scope
            .as_deref()
            .map(split_scopes)
            .unwrap_or_default();
        scopes.extend(data.claims.scp.unwrap_or_default());
        Ok(Grant { scopes })
    }

    /// The key a token names (or the only key, when it names none).
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, Rejection> {
        match &self.keys {
            Keys::File(set) => find(set, kid).ok_or(Rejection::InvalidToken),
            Keys::Url { url, http, current } => {
                if let Some((set, _)) = &*current.read().await {
                    if let Some(jwk) = find(set, kid) {
                        return Ok(jwk);
                    }
                }
                let mut current = current.write().await;
                let stale = current
                    .as_ref()
                    .is_none_or(|(_, at)| at.elapsed() >= REFRESH_EVERY);
                if stale {
                    let set = fetch(http, url).await?;
                    *current = Some((set, Instant::now()));
                }
                current
                    .as_ref()
                    .and_then(|(set, _)| find(set, kid))
                    .ok_or(Rejection::InvalidToken)
            }
        }
    }
}

fn find(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => set.find(kid).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<JwkSet, Rejection> {
    let response = http
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status());
    let set = match response {
        Ok(response) => response.json::<JwkSet>().await,
        Err(err) => Err(err),
    };
    set.map_err(|err| {
        tracing::error!(url, error = %err, "Fetching the JWKS failed.");
        Rejection::Unavailable
    })
}
