//! A provider's `Verifier`, built from its scheme's keys: secrets resolved here (through
//! `Loader::secret`), settings handed to the scheme's constructor, every problem reported at once.
//! `verify/` knows nothing of this file or of the config: the dependency runs one way.

use std::time::Duration;

use super::load::{Loader, Section};
use super::scheme::{RawOAuth, RawProvider, RawScheme, COMMON_KEYS};
use super::{parse_network, Secret};
use crate::verify::oauth::{self, Builtin, Introspection, Jwt, JwtSettings, OAuth};
use crate::verify::{
    AccuLynx, Alcmeon, AllowIps, DialogInsight, GenericHmac, Github, Shopify, Slack,
    StandardWebhooks, Stripe, Twilio, Verifier, SCHEMES,
};

impl Loader<'_> {
    /// The verifier `raw.verify` names, with the scheme's keys read from `section`. Problems of
    /// a key serde reads are reported at the key, a secret's at `secrets`, the rest at `verify`.
    pub(super) fn verifier(&mut self, raw: &RawProvider, section: &Section) -> Option<Verifier> {
        let label = format!("provider {:?}", raw.name);
        let verify_at = self.key_position(section, "verify");
        if !SCHEMES.contains(&raw.verify.as_str()) {
            let known = SCHEMES.join(", ");
            let message = format!(
                "{label}: verify = {:?} is not a known scheme (known: {known})",
                raw.verify
            );
            self.error(verify_at, message);
            return None;
        }
        let within = format!("{label} (verify = {:?})", raw.verify);
        let scheme: RawScheme = self.section_without(section, &within, COMMON_KEYS)?;
        self.audit_scheme(&label, &scheme);
        let (secrets, complete) = match scheme.secrets() {
            Some(references) => self.shared_secrets(references, raw, section),
            None => (Vec::new(), true),
        };
        match self.build(scheme, secrets, raw, section) {
            Ok(verifier) => complete.then_some(verifier),
            Err(messages) => {
                for message in messages {
                    self.error(verify_at, format!("{label}: {message}"));
                }
                None
            }
        }
    }

    /// `secrets = [...]` resolved, and whether every one was (and there is at least one).
    fn shared_secrets(
        &mut self,
        references: &[String],
        raw: &RawProvider,
        section: &Section,
    ) -> (Vec<Secret>, bool) {
        let label = format!("provider {:?}", raw.name);
        if references.is_empty() {
            self.error(
                self.key_position(section, "verify"),
                format!(
                    "{label}: verify = {:?} needs at least one secret",
                    raw.verify
                ),
            );
        }
        let at = self.key_position(section, "secrets");
        let secrets: Vec<Secret> = references
            .iter()
            .enumerate()
            .filter_map(|(index, reference)| {
                self.secret(reference, &format!("{label} secret #{}", index + 1), at)
            })
            .collect();
        let complete = !references.is_empty() && secrets.len() == references.len();
        (secrets, complete)
    }

    /// The scheme's constructor, called with its settings; the errors it gives are reported by
    /// the caller. An empty error list means the problem was reported already (a secret).
    fn build(
        &mut self,
        scheme: RawScheme,
        secrets: Vec<Secret>,
        raw: &RawProvider,
        section: &Section,
    ) -> Result<Verifier, Vec<String>> {
        // 0 refused every request from a clock a second off. (A wide one is warned about by
        // `audit_scheme`: the fixtures' old timestamps need one.)
        let tolerance = |seconds: Option<u64>| match seconds {
            Some(0) => Err(vec!["tolerance_s must be at least 1 (seconds)".to_string()]),
            seconds => Ok(seconds.map(Duration::from_secs)),
        };
        match scheme {
            RawScheme::StandardWebhooks { tolerance_s, .. } => {
                StandardWebhooks::new(&secrets, tolerance(tolerance_s)?)
                    .map(Verifier::StandardWebhooks)
            }
            RawScheme::Github { .. } => Ok(Verifier::Github(Github::new(secrets))),
            RawScheme::Hmac {
                header,
                algorithm,
                encoding,
                prefix,
                ..
            } => GenericHmac::new(
                secrets,
                header.as_deref(),
                algorithm.as_deref(),
                encoding.as_deref(),
                prefix.as_deref(),
            )
            .map(Verifier::Hmac),
            RawScheme::None { allow_ips } => {
                networks(allow_ips).map(|networks| Verifier::None(AllowIps::new(networks)))
            }
            RawScheme::Stripe { tolerance_s, .. } => Ok(Verifier::Stripe(Stripe::new(
                secrets,
                tolerance(tolerance_s)?,
            ))),
            RawScheme::Shopify { .. } => Ok(Verifier::Shopify(Shopify::new(secrets))),
            RawScheme::Slack { tolerance_s, .. } => Ok(Verifier::Slack(Slack::new(
                secrets,
                tolerance(tolerance_s)?,
            ))),
            RawScheme::Twilio {
                public_url,
                algorithm,
                ..
            } => Twilio::new(secrets, public_url.as_deref(), algorithm.as_deref())
                .map(Verifier::Twilio),
            RawScheme::Alcmeon {
                public_url,
                signature_base,
                ..
            } => Alcmeon::new(secrets, signature_base.as_deref(), public_url.as_deref())
                .map(Verifier::Alcmeon),
            RawScheme::AccuLynx {
                header, encoding, ..
            } => AccuLynx::new(secrets, header.as_deref(), encoding.as_deref())
                .map(Verifier::AccuLynx),
            RawScheme::DialogInsight {
                public_keys,
                hash,
                signature_encoding,
                forward_tests,
            } => {
                let (keys, errors) = self.public_keys(&public_keys);
                let built = DialogInsight::new(
                    &keys,
                    hash.as_deref(),
                    signature_encoding.as_deref(),
                    forward_tests.unwrap_or(false),
                );
                merged(errors, built).map(Verifier::DialogInsight)
            }
            RawScheme::OAuth { oauth } => match oauth {
                Some(oauth) => self.oauth(oauth, raw, section).map(Verifier::OAuth),
                None => Err(vec![
                    "verify = \"oauth\" needs a [provider.oauth] table".into()
                ]),
            },
        }
    }

    /// Dialog Insight's public keys, each read (but not warned about: they are not secret) with
    /// the label its errors start with.
    fn public_keys(&mut self, references: &[String]) -> (Vec<(String, Secret)>, Vec<String>) {
        let mut errors = Vec::new();
        if references.is_empty() {
            errors.push("verify = \"dialog-insight\" needs at least one of `public_keys`".into());
        }
        let mut keys = Vec::new();
        for (i, reference) in references.iter().enumerate() {
            let label = format!("public_keys[{i}] {}", describe(reference));
            match self.resolve(reference, None) {
                Ok(text) => keys.push((label, text)),
                Err(message) => errors.push(format!("{label}: {message}")),
            }
        }
        (keys, errors)
    }

    /// `[provider.oauth]`: the mode's validator, its secrets resolved.
    fn oauth(
        &mut self,
        oauth: RawOAuth,
        raw: &RawProvider,
        section: &Section,
    ) -> Result<OAuth, Vec<String>> {
        let label = format!("provider {:?}", raw.name);
        let at = self.key_position(section, "oauth");
        let (mode, required_scope) = match oauth {
            RawOAuth::Builtin {
                required_scope,
                clients: listed,
                token_ttl_s,
            } => {
                let count = listed.len();
                let mut clients = Vec::new();
                for client in listed {
                    let what = format!("{label} oauth client {:?} secret", client.id);
                    if let Some(secret) = self.secret(&client.secret, &what, at) {
                        self.audit_own_secret(&secret, &what, at);
                        clients.push(oauth::Client {
                            id: client.id,
                            secret,
                            scopes: client.scopes,
                        });
                    }
                }
                let resolved = clients.len();
                if resolved == 0 && count > 0 {
                    return Err(Vec::new());
                }
                let builtin = Builtin::new(&raw.name, clients, token_ttl_s)?;
                if resolved < count {
                    return Err(Vec::new());
                }
                (oauth::Mode::Builtin(builtin), required_scope)
            }
            RawOAuth::Introspection(mut introspection) => {
                let mut errors = Vec::new();
                let client_secret = match introspection.client_secret.take() {
                    Some(reference) => {
                        self.secret(&reference, &format!("{label} oauth client_secret"), at)
                    }
                    None => {
                        errors.push("oauth mode \"introspection\" needs `client_secret`".into());
                        None
                    }
                };
                let required_scope = introspection.required_scope.take();
                let built = Introspection::new(introspection.settings(client_secret));
                let mode = oauth::Mode::Introspection(Box::new(merged(errors, built)?));
                (mode, required_scope)
            }
            RawOAuth::Jwt {
                required_scope,
                jwks,
                jwks_refresh_s,
                issuer,
                audience,
                algorithms,
            } => {
                let jwt = Jwt::new(JwtSettings {
                    jwks,
                    jwks_refresh_s,
                    issuer,
                    audience,
                    algorithms,
                })?;
                (oauth::Mode::Jwt(jwt), required_scope)
            }
        };
        Ok(OAuth::new(mode, required_scope))
    }
}

/// What a constructor built, unless `errors` were found before it ran; every error either way.
fn merged<T>(mut errors: Vec<String>, built: Result<T, Vec<String>>) -> Result<T, Vec<String>> {
    match built {
        Ok(value) if errors.is_empty() => Ok(value),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

/// `allow_ips`, parsed; every entry that is not an address or CIDR is reported.
fn networks(list: Option<Vec<String>>) -> Result<Option<Vec<ipnet::IpNet>>, Vec<String>> {
    let Some(list) = list else {
        return Ok(None);
    };
    let mut networks = Vec::new();
    let mut errors = Vec::new();
    for text in list {
        match parse_network(&text) {
            Some(network) => networks.push(network),
            None => errors.push(format!(
                "allow_ips entry {text:?} is not an address or CIDR"
            )),
        }
    }
    if errors.is_empty() {
        Ok(Some(networks))
    } else {
        Err(errors)
    }
}

/// A key reference for an error message: a reference (`file:`, `env:`) as written, never an
/// inline value.
fn describe(reference: &str) -> String {
    if !crate::secret::is_literal(reference) {
        format!("({reference})")
    } else {
        "(inline)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{load_str, Config, ConfigError};

    const ADMIN: &str = "[admin]\ntoken = \"0123456789abcdef\"\n";

    fn load(providers: &str) -> Result<(Config, Vec<String>), Vec<ConfigError>> {
        load_str(&format!("{ADMIN}{providers}"), Path::new("."))
    }

    fn errors(providers: &str) -> Vec<String> {
        load(providers)
            .map(|_| Vec::new())
            .unwrap_or_else(|errors| errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn unknown_scheme_and_misplaced_keys_are_reported_together() {
        let errors = errors(
            "[[provider]]\nname = \"a\"\nverify = \"nope\"\nsecrets = [\"x\"]\n\n\
             [[provider]]\nname = \"b\"\nverify = \"github\"\nheader = \"X\"\nallow_ips = []\n",
        );
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(
            errors[0].starts_with("line 5, column 1: provider \"a\": verify = \"nope\" is not a known scheme (known: standard-webhooks, github,"),
            "{errors:#?}"
        );
        assert_eq!(
            errors[1],
            "line 12, column 1: in provider \"b\" (verify = \"github\"): unknown field `allow_ips`, expected `secrets`"
        );
        assert_eq!(
            errors[2],
            "line 11, column 1: in provider \"b\" (verify = \"github\"): unknown field `header`, expected `secrets`"
        );
        assert_eq!(
            errors[3],
            "line 10, column 1: provider \"b\": verify = \"github\" needs at least one secret"
        );
    }

    #[test]
    fn keys_of_another_oauth_mode_are_reported_at_once() {
        let errors = errors(
            "[[provider]]\nname = \"o\"\nverify = \"oauth\"\n[provider.oauth]\nmode = \"builtin\"\n\
             clients = [{ id = \"c\", secret = \"0123456789abcdef\" }]\n\
             jwks_refresh_s = 60\naudience = \"hookgate\"\nallowed_client_ids = [\"sender\"]\n",
        );
        assert_eq!(errors.len(), 3, "{errors:#?}");
        for (error, key) in errors
            .iter()
            .zip(["allowed_client_ids", "audience", "jwks_refresh_s"])
        {
            assert!(
                error.starts_with(&format!(
                    "line 6, column 11: in provider \"o\" (verify = \"oauth\") [oauth]: unknown field `{key}`, expected one of `required_scope`, `clients`, `token_ttl_s`"
                )),
                "{errors:#?}"
            );
        }
    }

    #[test]
    fn dialog_insight_keys_are_read_and_checked() {
        let provider = |keys: &str| {
            format!("[[provider]]\nname = \"di\"\nverify = \"dialog-insight\"\n{keys}\n")
        };
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/dialog-insight");
        let good = format!("public_keys = [\"file:{fixtures}/test-public-key.pem\"]");
        let (config, warnings) = load(&provider(&good)).unwrap();
        assert!(config.provider("di").is_some());
        assert!(
            warnings.iter().all(|w| w.starts_with("[admin] token")),
            "a public key is no secret: {warnings:?}"
        );
        for (keys, expected) in [
            ("", "needs at least one of `public_keys`"),
            ("public_keys = []", "needs at least one of `public_keys`"),
            (
                "public_keys = [\"file:/nonexistent/key.pem\"]",
                "public_keys[0] (file:/nonexistent/key.pem): cannot read",
            ),
            ("public_keys = [\"not a key\"]", "public_keys[0] (inline): "),
            (
                &format!("{good}\nsecrets = [\"x\"]"),
                "unknown field `secrets`",
            ),
        ] {
            let errors = errors(&provider(keys));
            assert!(
                errors.len() == 1 && errors[0].contains(expected),
                "{keys}: {errors:#?}"
            );
        }
    }

    #[test]
    fn every_bad_allow_ips_entry_is_reported() {
        let errors = errors(
            "[[provider]]\nname = \"n\"\nverify = \"none\"\nallow_ips = [\"10.0.0.0/33\", \"nope\"]\n",
        );
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[1].contains("\"nope\" is not an address or CIDR"));
    }

    #[test]
    fn every_literal_secret_warns_once() {
        let (_, warnings) = load(
            "[[provider]]\nname = \"gh\"\nverify = \"github\"\nsecrets = [\"gh-secret\"]\n\
             [provider.sync]\nurl = \"http://127.0.0.1:1/\"\npreset = \"alcmeon\"\n\
             auth = { user = \"u\", password = \"sync-password\" }\n\n\
             [[provider]]\nname = \"oa\"\nverify = \"oauth\"\n[provider.oauth]\nmode = \"builtin\"\n\
             clients = [{ id = \"c\", secret = \"0123456789abcdef\" }]\n\n\
             [[provider]]\nname = \"in\"\nverify = \"oauth\"\n[provider.oauth]\n\
             mode = \"introspection\"\nintrospection_url = \"http://127.0.0.1:1/\"\n\
             client_id = \"hookgate\"\nclient_secret = \"intro-secret\"\naudience = \"hookgate\"\n\n\
             [[destination]]\nname = \"crm\"\nurl = \"http://127.0.0.1:1/\"\n\
             signing_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
        )
        .unwrap();
        let literal: Vec<&str> = warnings
            .iter()
            .filter_map(|w| w.strip_suffix(" is written literally in the config file; use \"credential:NAME\", \"env:NAME\" or \"file:/path\" outside local demos"))
            .collect();
        assert_eq!(
            literal,
            [
                "[admin] token",
                "provider \"gh\" sync auth password",
                "provider \"gh\" secret #1",
                "provider \"oa\" oauth client \"c\" secret",
                "provider \"in\" oauth client_secret",
                "destination \"crm\" signing_secret",
            ],
            "{warnings:#?}"
        );
    }
}
