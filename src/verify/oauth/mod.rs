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

pub use builtin::{Builtin, Client, TokenError, TokenGrant};
pub use introspection::{Introspection, IntrospectionSettings};
pub use jwt::{Jwt, JwtSettings};

#[derive(Debug)]
pub struct OAuth {
    mode: Mode,
    required_scope: Option<String>,
}

/// How tokens are validated: `[provider.oauth] mode`.
#[derive(Debug)]
pub enum Mode {
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
    /// Tokens validated by `mode`; each must carry `required_scope` when one is set.
    pub fn new(mode: Mode, required_scope: Option<String>) -> OAuth {
        OAuth {
            mode,
            required_scope,
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
    fn scopes_split_on_spaces() {
        assert_eq!(
            split_scopes(" a  b "),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}
