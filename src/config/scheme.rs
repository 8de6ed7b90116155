//! A `[[provider]]` as serde reads it: the keys every provider has ([`RawProvider`]), then its
//! scheme's own ([`RawScheme`]), one variant per scheme. `verify = "..."` picks the variant and
//! the variant takes exactly its scheme's keys, so a key given to another scheme is an unknown
//! field, reported at its line like any unknown key. `sync` is taken out before either is read
//! (see `RawSync`); `name` and `event_id` are read apart and left out of the scheme's keys.

use serde::Deserialize;

use crate::secret::Secret;
use crate::verify::oauth::IntrospectionSettings;

/// The keys every `[[provider]]` has. The scheme's keys are left to [`RawScheme`].
#[derive(Debug, Deserialize)]
pub struct RawProvider {
    pub name: String,
    /// The scheme: one of `verify::SCHEMES`.
    pub verify: String,
    pub event_id: Option<String>,
}

/// Keys that [`RawProvider`] reads, left out of the scheme's.
pub const COMMON_KEYS: &[&str] = &["name", "event_id"];

/// A provider's scheme and its keys, as written: secrets are references (`env:`, `file:`) the
/// loader resolves, settings are checked by the scheme's constructor (see `config/verifier.rs`).
#[derive(Debug, Deserialize)]
#[serde(tag = "verify", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RawScheme {
    StandardWebhooks {
        #[serde(default)]
        secrets: Vec<String>,
        tolerance_s: Option<u64>,
    },
    Github {
        #[serde(default)]
        secrets: Vec<String>,
    },
    Hmac {
        #[serde(default)]
        secrets: Vec<String>,
        header: Option<String>,
        algorithm: Option<String>,
        encoding: Option<String>,
        prefix: Option<String>,
    },
    None {
        /// Addresses or CIDRs requests are taken from (default: any).
        allow_ips: Option<Vec<String>>,
    },
    Stripe {
        #[serde(default)]
        secrets: Vec<String>,
        tolerance_s: Option<u64>,
    },
    Shopify {
        #[serde(default)]
        secrets: Vec<String>,
    },
    Slack {
        #[serde(default)]
        secrets: Vec<String>,
        tolerance_s: Option<u64>,
    },
    Twilio {
        #[serde(default)]
        secrets: Vec<String>,
        /// The URL the sender calls, as it sees it (behind a proxy it differs from ours).
        public_url: Option<String>,
        /// `either` (default), `sha1` or `sha256`.
        algorithm: Option<String>,
    },
    Alcmeon {
        #[serde(default)]
        secrets: Vec<String>,
        public_url: Option<String>,
        /// `"path+space+body"` (default, their published sample) or `"path+body"`.
        signature_base: Option<String>,
    },
    #[serde(rename = "acculynx")]
    AccuLynx {
        #[serde(default)]
        secrets: Vec<String>,
        header: Option<String>,
        encoding: Option<String>,
    },
    DialogInsight {
        /// RSA public keys (`file:` PEM or Dialog Insight's XML), several for rotation.
        #[serde(default)]
        public_keys: Vec<String>,
        /// `sha256` (default) or `sha1`.
        hash: Option<String>,
        /// `base64` (default) or `hex`.
        signature_encoding: Option<String>,
        /// Whether events the sender marks as tests are forwarded downstream (default false).
        forward_tests: Option<bool>,
    },
    #[serde(rename = "oauth")]
    OAuth {
        /// `[provider.oauth]`.
        oauth: Option<RawOAuth>,
    },
}

impl RawScheme {
    /// The shared secrets, for the schemes keyed with them.
    pub fn secrets(&self) -> Option<&[String]> {
        match self {
            RawScheme::StandardWebhooks { secrets, .. }
            | RawScheme::Github { secrets }
            | RawScheme::Hmac { secrets, .. }
            | RawScheme::Stripe { secrets, .. }
            | RawScheme::Shopify { secrets }
            | RawScheme::Slack { secrets, .. }
            | RawScheme::Twilio { secrets, .. }
            | RawScheme::Alcmeon { secrets, .. }
            | RawScheme::AccuLynx { secrets, .. } => Some(secrets),
            RawScheme::None { .. } | RawScheme::DialogInsight { .. } | RawScheme::OAuth { .. } => {
                None
            }
        }
    }
}

/// `[provider.oauth]`: how bearer tokens are validated, one variant per `mode`, each taking
/// exactly its mode's keys.
#[derive(Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RawOAuth {
    /// hookgate is the authorization server.
    Builtin {
        /// A scope every token must carry (403 `insufficient_scope` otherwise).
        required_scope: Option<String>,
        /// The clients allowed to fetch tokens from `POST /oauth/token`.
        #[serde(default)]
        clients: Vec<RawOAuthClient>,
        /// Token lifetime, default 3600.
        token_ttl_s: Option<u64>,
    },
    /// RFC 7662 against an external server.
    Introspection(RawIntrospection),
    /// JWT access tokens checked against a JWKS.
    Jwt {
        required_scope: Option<String>,
        /// `file:/path` or an `http(s)://` URL.
        jwks: Option<String>,
        /// How often a URL key set is fetched again (default 300).
        jwks_refresh_s: Option<u64>,
        /// Required `iss` and `aud`.
        issuer: Option<String>,
        audience: Option<String>,
        /// Accepted `alg` values (default `["RS256"]`); never `none`.
        algorithms: Option<Vec<String>>,
    },
}

/// `mode = "introspection"`'s keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    pub required_scope: Option<String>,
    pub introspection_url: Option<String>,
    /// hookgate's own credentials at that endpoint.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// An `aud` an active answer must contain (optional).
    pub audience: Option<String>,
    /// The `client_id`s an active answer may name (default: any).
    pub allowed_client_ids: Option<Vec<String>>,
    /// Most tokens kept in the cache (default 10000), active and refused apart.
    pub cache_size: Option<usize>,
    /// Longest an active answer is trusted before asking again (default 300).
    pub cache_ttl_s: Option<u64>,
    /// How long a refused token is remembered as refused (default 30).
    pub negative_cache_ttl_s: Option<u64>,
}

impl RawIntrospection {
    /// The settings `verify` takes, with the secret `client_secret` names (`None`: missing or
    /// not resolved).
    pub fn settings(self, client_secret: Option<Secret>) -> IntrospectionSettings {
        IntrospectionSettings {
            introspection_url: self.introspection_url,
            client_id: self.client_id,
            client_secret,
            audience: self.audience,
            allowed_client_ids: self.allowed_client_ids,
            cache_size: self.cache_size,
            cache_ttl_s: self.cache_ttl_s,
            negative_cache_ttl_s: self.negative_cache_ttl_s,
        }
    }
}

/// One client of the builtin token endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuthClient {
    pub id: String,
    pub secret: String,
    /// Scopes this client may be granted (default: none).
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::SCHEMES;

    fn scheme(text: &str) -> Result<RawScheme, String> {
        let table: toml::Table = toml::from_str(text).unwrap();
        RawScheme::deserialize(toml::Value::Table(table)).map_err(|e| e.message().to_string())
    }

    #[test]
    fn every_scheme_has_its_variant() {
        for name in SCHEMES {
            let parsed = scheme(&format!("verify = {name:?}"));
            assert!(parsed.is_ok(), "{name}: {parsed:?}");
        }
        assert!(scheme("verify = \"rot13\"").is_err());
    }

    #[test]
    fn a_key_of_another_scheme_is_an_unknown_field() {
        assert_eq!(
            scheme("verify = \"github\"\nheader = \"X\"").unwrap_err(),
            "unknown field `header`, expected `secrets`"
        );
        assert_eq!(
            scheme("verify = \"none\"\nsecrets = [\"x\"]").unwrap_err(),
            "unknown field `secrets`, expected `allow_ips`"
        );
        let twilio = scheme("verify = \"twilio\"\nalgorithm = \"sha256\"\nsecrets = [\"x\"]");
        assert!(matches!(twilio, Ok(RawScheme::Twilio { .. })), "{twilio:?}");
    }

    #[test]
    fn a_key_of_another_oauth_mode_is_an_unknown_field() {
        let text = "verify = \"oauth\"\n[oauth]\nmode = \"builtin\"\njwks_refresh_s = 60\n";
        assert_eq!(
            scheme(text).unwrap_err(),
            "unknown field `jwks_refresh_s`, expected one of `required_scope`, `clients`, `token_ttl_s`"
        );
        let text = "verify = \"oauth\"\n[oauth]\nmode = \"introspection\"\naudience = \"h\"\n";
        assert!(scheme(text).is_ok());
    }
}
