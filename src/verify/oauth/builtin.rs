//! The builtin authorization server: the client-credentials grant (RFC 6749 §4.4) at
//! `POST /oauth/token`, issuing self-contained tokens
//! `hgat1.<base64url(claims)>.<base64url(HMAC-SHA256(key, "hgat1." + claims))>`. The claims name
//! the provider, so a token issued for one provider is refused by every other. The key lives in
//! `<data_dir>/oauth-token.key` (created once, mode 0600), so tokens survive a restart.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{split_scopes, Grant};
use crate::secret::Secret;
use crate::verify::mac::{self, constant_time_eq, Algorithm};
use crate::verify::Rejection;

const PREFIX: &str = "hgat1.";
const KEY_FILE: &str = "oauth-token.key";
const KEY_LEN: usize = 32;
const DEFAULT_TTL_S: u64 = 3600;

#[derive(Debug)]
pub struct Builtin {
    provider: String,
    clients: Vec<Client>,
    ttl: Duration,
    /// Set once at start-up by `prepare`.
    key: OnceLock<Secret>,
}

/// A client allowed to fetch tokens, with its secret resolved.
#[derive(Debug)]
pub struct Client {
    pub id: String,
    pub secret: Secret,
    /// Scopes this client may be granted.
    pub scopes: Vec<String>,
}

/// The token's claims.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct TokenClaims {
    /// Provider the token is for.
    prv: String,
    /// Client it was issued to.
    cid: String,
    /// Expiry, Unix seconds.
    exp: u64,
    /// Granted scopes, space-separated.
    scp: String,
}

/// A token issued by `POST /oauth/token`.
#[derive(Debug, Serialize)]
pub struct TokenGrant {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

/// RFC 6749 §5.2 errors of the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid_request")]
    InvalidRequest,
    #[error("invalid_client")]
    InvalidClient,
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("invalid_scope")]
    InvalidScope,
    #[error("server_error")]
    ServerError,
}

impl Builtin {
    /// The issuer for `provider`'s `clients`; tokens live `token_ttl_s` (default 3600).
    pub fn new(
        provider: &str,
        listed: Vec<Client>,
        token_ttl_s: Option<u64>,
    ) -> Result<Builtin, Vec<String>> {
        let mut errors = Vec::new();
        let mut clients = Vec::new();
        if listed.is_empty() {
            errors.push("oauth mode \"builtin\" needs at least one client in `clients`".into());
        }
        for (index, client) in listed.into_iter().enumerate() {
            if client.id.is_empty() || clients.iter().any(|c: &Client| c.id == client.id) {
                errors.push(format!(
                    "oauth client #{} has an empty or repeated id",
                    index + 1
                ));
                continue;
            }
            clients.push(client);
        }
        let ttl_s = token_ttl_s.unwrap_or(DEFAULT_TTL_S);
        if !(1..=86_400).contains(&ttl_s) {
            errors.push("oauth token_ttl_s must be between 1 and 86400".into());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Builtin {
            provider: provider.to_string(),
            clients,
            ttl: Duration::from_secs(ttl_s),
            key: OnceLock::new(),
        })
    }

    /// Loads the token key from the data directory, creating it on first start.
    pub fn prepare(&self, data_dir: &Path) -> std::io::Result<()> {
        let key = load_or_create_key(data_dir)?;
        let _ = self.key.set(key);
        Ok(())
    }

    pub fn has_client(&self, id: &str) -> bool {
        self.clients.iter().any(|c| c.id == id)
    }

    /// The first client's id and secret: what `hookgate send-test` fetches a token with.
    pub fn sender_credentials(&self) -> (&str, &[u8]) {
        let client = &self.clients[0];
        (&client.id, client.secret.expose())
    }

    pub fn client_ids(&self) -> impl Iterator<Item = &str> {
        self.clients.iter().map(|c| c.id.as_str())
    }

    /// The client-credentials grant: checks the client, grants the requested scopes (all of the
    /// client's when none are asked for) and issues a token. `secret_forms` are the forms the
    /// presented secret may be meant in (HTTP Basic: url-decoded and raw); one matching is enough.
    pub fn issue(
        &self,
        client_id: &str,
        secret_forms: &[&str],
        scope: Option<&str>,
        now: SystemTime,
    ) -> Result<TokenGrant, TokenError> {
        let client = self.clients.iter().find(|c| c.id == client_id);
        // Compare against something even for an unknown client, and every form, to keep timing
        // alike.
        let expected = client.map_or(&b"\0no such client\0"[..], |c| c.secret.expose());
        let secret_ok = secret_forms.iter().fold(false, |ok, form| {
            constant_time_eq(form.as_bytes(), expected) | ok
        });
        let client = client
            .filter(|_| secret_ok)
            .ok_or(TokenError::InvalidClient)?;
        let scopes = match scope {
            Some(requested) => {
                let requested = split_scopes(requested);
                if !requested.iter().all(|s| client.scopes.contains(s)) {
                    return Err(TokenError::InvalidScope);
                }
                requested
            }
            None => client.scopes.clone(),
        };
        let key = self.key.get().ok_or(TokenError::ServerError)?;
        let claims = TokenClaims {
            prv: self.provider.clone(),
            cid: client.id.clone(),
            exp: unix(now) + self.ttl.as_secs(),
            scp: scopes.join(" "),
        };
        Ok(TokenGrant {
            access_token: encode(key, &claims),
            token_type: "Bearer",
            expires_in: self.ttl.as_secs(),
            scope: claims.scp,
        })
    }

    /// A token this provider issued, unexpired and correctly signed, to a client it still has
    /// that may still be granted every scope in it.
    pub fn validate(&self, token: &str, now: SystemTime) -> Result<Grant, Rejection> {
        let key = self.key.get().ok_or(Rejection::Unavailable)?;
        let claims = decode(key, token).ok_or(Rejection::InvalidToken)?;
        let scopes = split_scopes(&claims.scp);
        let still_granted = self
            .clients
            .iter()
            .find(|client| client.id == claims.cid)
            .is_some_and(|client| scopes.iter().all(|scope| client.scopes.contains(scope)));
        if claims.prv != self.provider || claims.exp <= unix(now) || !still_granted {
            return Err(Rejection::InvalidToken);
        }
        Ok(Grant { scopes })
    }
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn encode(key: &Secret, claims: &TokenClaims) -> String {
    let payload = BASE64URL.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let tag = mac::sign(
        Algorithm::Sha256,
        key.expose(),
        &[PREFIX.as_bytes(), payload.as_bytes()],
    );
    format!("{PREFIX}{payload}.{}", BASE64URL.encode(tag))
}

fn decode(key: &Secret, token: &str) -> Option<TokenClaims> {
    let (payload, tag) = token.strip_prefix(PREFIX)?.split_once('.')?;
    let tag = BASE64URL.decode(tag).ok()?;
    let expected = mac::sign(
        Algorithm::Sha256,
        key.expose(),
        &[PREFIX.as_bytes(), payload.as_bytes()],
    );
    if !constant_time_eq(&expected, &tag) {
        return None;
    }
    serde_json::from_slice(&BASE64URL.decode(payload).ok()?).ok()
}

/// Reads `<dir>/oauth-token.key`, or writes a new random one (0600, fsynced with its directory).
fn load_or_create_key(dir: &Path) -> std::io::Result<Secret> {
    let path = dir.join(KEY_FILE);
    match File::open(&path) {
        Ok(mut file) => {
            let mut key = Vec::new();
            file.read_to_end(&mut key)?;
            if key.len() != KEY_LEN {
                return Err(std::io::Error::other(format!(
                    "{} is not a {KEY_LEN}-byte key",
                    path.display()
                )));
            }
            Ok(Secret::from_bytes(key))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut key = vec![0u8; KEY_LEN];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
            let temporary = dir.join(format!("{KEY_FILE}.tmp"));
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(&key)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            File::open(dir)?.sync_all()?;
            tracing::info!(path = %path.display(), "Created the OAuth token key.");
            Ok(Secret::from_bytes(key))
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin(provider: &str, dir: &Path) -> Builtin {
        let client = Client {
            id: "sender".into(),
            secret: Secret::from_literal("s3cret"),
            scopes: vec!["events:write".into()],
        };
        let builtin = Builtin::new(provider, vec![client], Some(60)).unwrap();
        builtin.prepare(dir).unwrap();
        builtin
    }

    #[test]
    fn issue_validate_expire() {
        let dir = tempfile::tempdir().unwrap();
        let a = builtin("a", dir.path());
        let now = SystemTime::now();
        let grant = a.issue("sender", &["s3cret"], None, now).unwrap();
        assert_eq!(
            (grant.token_type, grant.expires_in, grant.scope.as_str()),
            ("Bearer", 60, "events:write")
        );
        assert_eq!(
            a.validate(&grant.access_token, now).unwrap().scopes,
            vec!["events:write"]
        );
        assert_eq!(
            a.validate(&grant.access_token, now + Duration::from_secs(61)),
            Err(Rejection::InvalidToken)
        );
        // Another provider with the same key refuses it.
        let b = builtin("b", dir.path());
        assert_eq!(
            b.validate(&grant.access_token, now),
            Err(Rejection::InvalidToken)
        );
        // A tampered token is refused.
        let mut tampered = grant.access_token.clone();
        tampered.insert(8, 'x');
        assert_eq!(a.validate(&tampered, now), Err(Rejection::InvalidToken));
    }

    #[test]
    fn client_errors() {
        let dir = tempfile::tempdir().unwrap();
        let a = builtin("a", dir.path());
        let now = SystemTime::now();
        assert_eq!(
            a.issue("sender", &["wrong"], None, now).unwrap_err(),
            TokenError::InvalidClient
        );
        assert!(
            a.issue("sender", &["s3cret decoded", "s3cret"], None, now)
                .is_ok(),
            "any form of the secret may match"
        );
        assert_eq!(
            a.issue("sender", &[], None, now).unwrap_err(),
            TokenError::InvalidClient
        );
        assert_eq!(
            a.issue("nobody", &["s3cret"], None, now).unwrap_err(),
            TokenError::InvalidClient
        );
        assert_eq!(
            a.issue("sender", &["s3cret"], Some("admin"), now)
                .unwrap_err(),
            TokenError::InvalidScope
        );
        assert!(a
            .issue("sender", &["s3cret"], Some("events:write"), now)
            .is_ok());
    }

    #[test]
    fn a_token_dies_with_its_client_or_a_scope_taken_away() {
        let dir = tempfile::tempdir().unwrap();
        let a = builtin("a", dir.path());
        let now = SystemTime::now();
        let token = a
            .issue("sender", &["s3cret"], None, now)
            .unwrap()
            .access_token;
        let reloaded = |id: &str, scopes: &[&str]| {
            let client = Client {
                id: id.into(),
                secret: Secret::from_literal("rotated"),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
            };
            let builtin = Builtin::new("a", vec![client], Some(60)).unwrap();
            builtin.prepare(dir.path()).unwrap();
            builtin.validate(&token, now)
        };
        assert!(
            reloaded("sender", &["events:write", "more"]).is_ok(),
            "a rotated secret leaves tokens to their expiry"
        );
        assert_eq!(reloaded("sender", &["other"]), Err(Rejection::InvalidToken));
        assert_eq!(
            reloaded("someone", &["events:write"]),
            Err(Rejection::InvalidToken)
        );
    }

    #[test]
    fn the_key_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let token = builtin("a", dir.path())
            .issue("sender", &["s3cret"], None, SystemTime::now())
            .unwrap();
        let again = builtin("a", dir.path());
        assert!(again
            .validate(&token.access_token, SystemTime::now())
            .is_ok());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }
}
