//! `oauth`: the sender presents `Authorization: Bearer <token>`, validated one of three ways
//! (`[provider.oauth] mode`):
//!
//! - `builtin`: hookgate is the authorization server; `POST /oauth/token` issues self-contained
//!   tokens (client-credentials grant) signed with a key kept in the data directory ([`builtin`]).
//! - `introspection`: RFC 7662 against an external server, checked against the configured
//!   audience and clients, answers cached briefly ([`introspection`], [`cache`]).
//! - `jwt`: JWT access tokens checked against a JWKS with `iss`, `aud`, `exp`/`nbf` and an
//!   algorithm allow-list ([`jwt`]); a URL JWKS is refreshed in the background ([`jwks`]).
//!
//! Answers follow RFC 6750: no token, 401 with a bare `WWW-Authenticate: Bearer`; an invalid or
//! expired token, 401 `invalid_token`; a token without `required_scope`, 403 `insufficient_scope`.

pub mod builtin;
mod cache;
mod introspection;
mod jwks;
mod jwt;

use std::path::Path;

use super::{Claims, Rejection, Unverified};
use crate::config::{RawOAuth, RawProvider};

pub use builtin::{Builtin, TokenError, TokenGrant};
use introspection::Introspection;
use jwt::Jwt;

#[derive(Debug)]
pub struct OAuth {
    mode: Mode,
    required_scope: Option<String>,
}

#[derive(Debug)]
enum Mode {
    Builtin(Builtin),
    Introspection(Box<Introspection>),
    Jwt(Jwt),
}

/// What a valid token grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub scopes: Vec<String>,
}

impl OAuth {
    pub fn build(raw: &RawProvider) -> Result<OAuth, Vec<String>> {
        let Some(oauth) = &raw.oauth else {
            return Err(vec![
                "verify = \"oauth\" needs a [provider.oauth] table".into()
            ]);
        };
        let mut errors = misplaced_keys(oauth);
        let mode = match oauth.mode.as_str() {
            "builtin" => Builtin::build(&raw.name, oauth).map(Mode::Builtin),
            "introspection" => {
                Introspection::build(oauth).map(|i| Mode::Introspection(Box::new(i)))
            }
            "jwt" => Jwt::build(oauth).map(Mode::Jwt),
            other => Err(vec![format!(
                "oauth mode {other:?} is not one of \"builtin\", \"introspection\", \"jwt\""
            )]),
        };
        match mode {
            Ok(mode) if errors.is_empty() => Ok(OAuth {
                mode,
                required_scope: oauth.required_scope.clone(),
            }),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }

    /// Loads (or creates) what the mode keeps in the data directory: the builtin token key.
    pub fn prepare(&self, data_dir: &Path) -> std::io::Result<()> {
        match &self.mode {
            Mode::Builtin(builtin) => builtin.prepare(data_dir),
            _ => Ok(()),
        }
    }

    /// The builtin token issuer, when this provider is its own authorization server.
    pub fn builtin(&self) -> Option<&Builtin> {
        match &self.mode {
            Mode::Builtin(builtin) => Some(builtin),
            _ => None,
        }
    }

    pub async fn verify(&self, request: &Unverified<'_>) -> Result<Claims, Rejection> {
        let token = bearer_token(request)?;
        let grant = match &self.mode {
            Mode::Builtin(builtin) => builtin.validate(token, request.now)?,
            Mode::Introspection(introspection) => {
                introspection.validate(token, request.now).await?
            }
            Mode::Jwt(jwt) => jwt.validate(token).await?,
        };
        if let Some(required) = &self.required_scope {
            if !grant.scopes.iter().any(|scope| scope == required) {
                return Err(Rejection::InsufficientScope);
            }
        }
        Ok(Claims::default())
    }
}

/// The token in `Authorization: Bearer <token>` (the scheme name is case-insensitive).
fn bearer_token<'a>(request: &'a Unverified<'_>) -> Result<&'a str, Rejection> {
    let value = request
        .headers
        .get("authorization")
        .ok_or(Rejection::MissingToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(Rejection::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() || token.len() > 8192 {
        return Err(Rejection::InvalidToken);
    }
    Ok(token)
}

/// Keys of one mode given to another: a config mistake, not a no-op.
fn misplaced_keys(oauth: &RawOAuth) -> Vec<String> {
    const BUILTIN: &[&str] = &["builtin"];
    const INTROSPECTION: &[&str] = &["introspection"];
    const JWT: &[&str] = &["jwt"];
    let mode = oauth.mode.as_str();
    let given: [(&str, bool, &[&str]); 14] = [
        ("clients", oauth.clients.is_some(), BUILTIN),
        ("token_ttl_s", oauth.token_ttl_s.is_some(), BUILTIN),
        (
            "introspection_url",
            oauth.introspection_url.is_some(),
            INTROSPECTION,
        ),
        ("client_id", oauth.client_id.is_some(), INTROSPECTION),
        (
            "client_secret",
            oauth.client_secret.is_some(),
            INTROSPECTION,
        ),
        ("cache_size", oauth.cache_size.is_some(), INTROSPECTION),
        ("cache_ttl_s", oauth.cache_ttl_s.is_some(), INTROSPECTION),
        (
            "negative_cache_ttl_s",
            oauth.negative_cache_ttl_s.is_some(),
            INTROSPECTION,
        ),
        (
            "allowed_client_ids",
            oauth.allowed_client_ids.is_some(),
            INTROSPECTION,
        ),
        ("jwks", oauth.jwks.is_some(), JWT),
        ("jwks_refresh_s", oauth.jwks_refresh_s.is_some(), JWT),
        ("issuer", oauth.issuer.is_some(), JWT),
        (
            "audience",
            oauth.audience.is_some(),
            &["jwt", "introspection"],
        ),
        ("algorithms", oauth.algorithms.is_some(), JWT),
    ];
    let known = ["builtin", "introspection", "jwt"].contains(&mode);
    given
        .iter()
        .filter(|(_, present, owners)| *present && known && !owners.contains(&mode))
        .map(|(key, _, owners)| {
            let owners: Vec<String> = owners.iter().map(|o| format!("{o:?}")).collect();
            format!(
                "oauth `{key}` applies to mode = {}, not {mode:?}",
                owners.join(" or ")
            )
        })
        .collect()
}

/// Scopes written as one space-separated string.
fn split_scopes(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, TestHeaders};
    use std::time::SystemTime;

    fn token_of(value: &str) -> Result<String, Rejection> {
        let headers = TestHeaders(vec![("Authorization", value.to_string())]);
        bearer_token(&request(&headers, "", SystemTime::now())).map(str::to_string)
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(token_of("Bearer abc"), Ok("abc".into()));
        assert_eq!(token_of("bearer  abc "), Ok("abc".into()));
        assert_eq!(token_of("Basic abc"), Err(Rejection::MissingToken));
        assert_eq!(token_of("Bearer"), Err(Rejection::InvalidToken));
        assert_eq!(token_of("Bearer "), Err(Rejection::InvalidToken));
        let headers = TestHeaders(vec![]);
        assert_eq!(
            bearer_token(&request(&headers, "", SystemTime::now())),
            Err(Rejection::MissingToken)
        );
    }

    #[test]
    fn keys_of_another_mode_are_errors() {
        let raw = RawOAuth {
            mode: "builtin".into(),
            jwks_refresh_s: Some(60),
            audience: Some("hookgate".into()),
            allowed_client_ids: Some(vec!["sender".into()]),
            ..RawOAuth::default()
        };
        assert_eq!(
            misplaced_keys(&raw),
            vec![
                "oauth `allowed_client_ids` applies to mode = \"introspection\", not \"builtin\"",
                "oauth `jwks_refresh_s` applies to mode = \"jwt\", not \"builtin\"",
                "oauth `audience` applies to mode = \"jwt\" or \"introspection\", not \"builtin\"",
            ]
        );
        let introspection = RawOAuth {
            mode: "introspection".into(),
            audience: Some("hookgate".into()),
            ..RawOAuth::default()
        };
        assert!(misplaced_keys(&introspection).is_empty());
    }

    #[test]
    fn scopes_split_on_spaces() {
        assert_eq!(
            split_scopes(" a  b "),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}
