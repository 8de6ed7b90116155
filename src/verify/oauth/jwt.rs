//! JWT access tokens checked against a JWKS: a file read at start-up, or a URL kept fresh by
//! [`RemoteKeys`] (refetched every `jwks_refresh_s`; an unknown `kid` is refused at once and may
//! start a refetch, which no request waits on). `iss`, `aud` and `exp` are required, `nbf` is
//! honoured, and only the configured algorithms are accepted: HMAC algorithms are refused at
//! start-up (a public key must never be usable as an HMAC secret) and `none` is not an algorithm
//! at all.

use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::jwks::{find, RemoteKeys};
use super::{split_scopes, Grant};
use crate::verify::Rejection;

const LEEWAY_S: u64 = 30;
const DEFAULT_JWKS_REFRESH_S: u64 = 300;

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
    Url(RemoteKeys),
}

/// The claims hookgate reads besides the registered ones `jsonwebtoken` validates. Issuers
/// disagree on their shape (RFC 9068 has `scope` a space-separated string; Azure AD sends `scp`
/// as one, Okta as an array): either shape is read in either claim.
#[derive(Deserialize)]
struct AccessClaims {
    #[serde(default)]
    scope: Option<Scopes>,
    #[serde(default)]
    scp: Option<Scopes>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scopes {
    Spaced(String),
    Listed(Vec<String>),
}

impl Scopes {
    fn into_vec(self) -> Vec<String> {
        match self {
            Scopes::Spaced(text) => split_scopes(&text),
            Scopes::Listed(list) => list,
        }
    }
}

/// `mode = "jwt"`'s keys.
#[derive(Debug, Default)]
pub struct JwtSettings {
    /// The key set: `file:/path` or an `http(s)://` URL.
    pub jwks: Option<String>,
    /// How often a URL key set is fetched again (default 300).
    pub jwks_refresh_s: Option<u64>,
    /// Required `iss` and `aud`.
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Accepted `alg` values (default `["RS256"]`).
    pub algorithms: Option<Vec<String>>,
}

impl Jwt {
    /// Checks every setting and reads a `file:` key set, reporting every problem at once.
    pub fn new(raw: JwtSettings) -> Result<Jwt, Vec<String>> {
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
        let refresh_s = raw.jwks_refresh_s.unwrap_or(DEFAULT_JWKS_REFRESH_S);
        if !(1..=86_400).contains(&refresh_s) {
            errors.push("oauth jwks_refresh_s must be between 1 and 86400".into());
        }
        let keys = match raw.jwks.as_deref() {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                match RemoteKeys::new(url, Duration::from_secs(refresh_s)) {
                    Ok(keys) => Some(Keys::Url(keys)),
                    Err(message) => {
                        errors.push(message);
                        None
                    }
                }
            }
            Some(reference) if raw.jwks_refresh_s.is_some() => {
                errors.push(format!("oauth jwks_refresh_s applies to a URL jwks, not {reference:?} (a file is read once, at start-up)"));
                None
            }
            Some(reference) => match reference.strip_prefix("file:").map(std::fs::read) {
                Some(Ok(bytes)) => match super::jwks::parse_set(&bytes) {
                    Ok((set, skipped)) => {
                        for skipped in skipped {
                            tracing::info!(jwks = %reference, key = %skipped, "A key of the JWKS is passed over.");
                        }
                        Some(Keys::File(set))
                    }
                    Err(err) => {
                        errors.push(format!("oauth jwks {reference}: {err}"));
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
        if names_critical_extensions(token) {
            return Err(Rejection::InvalidToken);
        }
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
        let claims = data.claims;
        let scopes = [claims.scope, claims.scp]
            .into_iter()
            .flatten()
            .flat_map(Scopes::into_vec)
            .collect();
        Ok(Grant { scopes })
    }

    /// The key a token names (or the only key, when it names none).
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, Rejection> {
        match &self.keys {
            Keys::File(set) => find(set, kid).ok_or(Rejection::InvalidToken),
            Keys::Url(keys) => keys.key(kid).await,
        }
    }
}

/// Whether the token's header lists `crit` extensions: hookgate understands none, and a token
/// that requires one must be refused (RFC 7515 4.1.11); the JWT library reads no `crit`.
fn names_critical_extensions(token: &str) -> bool {
    use base64::Engine as _;
    let Some(header) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .is_ok_and(|header| header.get("crit").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(jwks: &str, refresh_s: Option<u64>) -> JwtSettings {
        JwtSettings {
            jwks: Some(jwks.into()),
            jwks_refresh_s: refresh_s,
            issuer: Some("https://idp.example.com".into()),
            audience: Some("hookgate".into()),
            algorithms: None,
        }
    }

    #[test]
    fn jwks_refresh_s_is_validated() {
        let url = "https://idp.example.com/jwks.json";
        assert!(Jwt::new(raw(url, None)).is_ok());
        assert!(Jwt::new(raw(url, Some(1))).is_ok());
        assert_eq!(
            Jwt::new(raw(url, Some(0))).unwrap_err(),
            vec!["oauth jwks_refresh_s must be between 1 and 86400"]
        );
        let errors = Jwt::new(raw("file:/etc/jwks.json", Some(60))).unwrap_err();
        assert_eq!(
            errors,
            vec!["oauth jwks_refresh_s applies to a URL jwks, not \"file:/etc/jwks.json\" (a file is read once, at start-up)"]
        );
    }
}
