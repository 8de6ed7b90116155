//! Validation of `[provider.sync]`: the vendor sync API a provider's poller reads, with a
//! preset's defaults filled in (`alcmeon`), every problem reported at the `sync` key's line.

use std::time::Duration;

use toml::Spanned;

use super::load::Loader;
use super::outputs::parse_duration;
use super::raw::{RawSync, RawSyncAuth};
use super::Secret;

/// Reads an auth secret: its key (`password`...) and its reference.
type Resolve<'a> = dyn FnMut(&str, &str) -> Result<Secret, String> + 'a;

/// How a provider's sync API is polled.
#[derive(Clone, PartialEq)]
pub struct SyncConfig {
    pub url: url::Url,
    pub interval: Duration,
    /// Per request.
    pub timeout: Duration,
    /// The query parameter the cursor goes in.
    pub cursor_param: String,
    /// The query parameter the page size goes in, and the size.
    pub limit: Option<(String, u32)>,
    /// JSON pointer to the items array in a page (`""`: the page itself).
    pub items: String,
    /// JSON pointer to an item's id (equal to the webhooks' event id).
    pub item_id: String,
    pub next: NextCursor,
    /// The first round's cursor; `None`: after the highest event id received so far.
    pub start_cursor: Option<String>,
    pub max_pages_per_round: u32,
    /// The largest page read: an API with no page size answers a whole backlog in one.
    pub max_page_bytes: usize,
    pub auth: SyncAuth,
}

/// Its URL as hookgate shows URLs (a key may sit in its query).
impl std::fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncConfig")
            .field("url", &crate::shown_url::Shown(&self.url))
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("cursor_param", &self.cursor_param)
            .field("limit", &self.limit)
            .field("items", &self.items)
            .field("item_id", &self.item_id)
            .field("next", &self.next)
            .field("start_cursor", &self.start_cursor)
            .field("max_pages_per_round", &self.max_pages_per_round)
            .field("max_page_bytes", &self.max_page_bytes)
            .field("auth", &self.auth)
            .finish()
    }
}

/// Where the cursor after a page comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextCursor {
    /// The highest item id in the page, + 1 when the API's cursor is inclusive.
    HighestId { inclusive: bool },
    /// A token or a whole URL at this JSON pointer of the page; absent or null: no more pages.
    Pointer(String),
}

/// How hookgate authenticates to the sync API.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncAuth {
    None,
    Basic {
        user: String,
        password: Secret,
    },
    Header {
        name: String,
        value: Secret,
    },
    /// OAuth 2 client credentials; the token is cached until `refresh_before` its expiry.
    OAuth {
        token_url: url::Url,
        client_id: String,
        client_secret: Secret,
        scope: Option<String>,
        refresh_before: Duration,
    },
}

/// The defaults a preset fills in.
struct Preset {
    cursor_param: &'static str,
    items: &'static str,
    item_id: &'static str,
    cursor_inclusive: bool,
    auth: &'static str,
}

/// Alcméon's Action Synchronization API: `GET ...?min_action_id=N`, N "the id of the last
/// successfully received notification" (their guide), which does not say whether the action N
/// comes back. Taken as exclusive (the next cursor is the highest id, not + 1): if the API
/// answers from N on, the action N comes back once per page and is not committed again (the
/// ids seen from a cursor are kept); taken as inclusive while the API answered after N, the
/// action N + 1 of every page boundary would be skipped. Ids are the notification ids the
/// webhooks carry in `/id`; Basic auth with the instance id and the application secret. The page
/// layout (`/data`) is our assumption, hence overridable.
const ALCMEON: Preset = Preset {
    cursor_param: "min_action_id",
    items: "/data",
    item_id: "/id",
    cursor_inclusive: false,
    auth: "basic",
};

impl Loader<'_> {
    /// Validates the `sync` value taken out of a `[[provider]]` section; `at` is the position of
    /// its key, where every error is reported.
    pub(super) fn sync(
        &mut self,
        at: Option<(usize, usize)>,
        value: Spanned<toml::Value>,
        provider: &str,
    ) -> Option<SyncConfig> {
        let label = format!("provider {provider:?} sync");
        let raw = match RawSync::deserialize_value(value.into_inner()) {
            Ok(raw) => raw,
            Err(message) => {
                self.error(at, format!("in [provider.sync] of {provider:?}: {message}"));
                return None;
            }
        };
        let mut errors = Vec::new();
        let config = build(raw, &mut errors, &mut |key, reference| {
            self.resolve(reference, Some(&format!("{label} auth {key}")))
        });
        for message in &errors {
            self.error(at, format!("{label}: {message}"));
        }
        config.filter(|_| errors.is_empty())
    }
}

impl RawSync {
    fn deserialize_value(value: toml::Value) -> Result<RawSync, String> {
        serde::Deserialize::deserialize(value)
            .map_err(|err: toml::de::Error| super::load::without_values(err.message().trim()))
    }
}

/// The checked config, or `None` with `errors` filled; `resolve` reads the auth secrets.
fn build(raw: RawSync, errors: &mut Vec<String>, resolve: &mut Resolve<'_>) -> Option<SyncConfig> {
    let preset = match raw.preset.as_deref() {
        None => None,
        Some("alcmeon") => Some(&ALCMEON),
        Some(other) => {
            errors.push(format!(
                "preset {other:?} is not known (known: \"alcmeon\")"
            ));
            None
        }
    };
    let url = http_url(raw.url.as_deref(), "url", "`url` is required", errors);
    let mut duration = |key: &str, value: Option<&str>, default: &str| match parse_duration(
        value.unwrap_or(default),
    ) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            errors.push(format!("{key} must be more than zero"));
            Duration::from_secs(1)
        }
        Err(message) => {
            errors.push(format!("{key}: {message}"));
            Duration::from_secs(1)
        }
    };
    let interval = duration("interval", raw.interval.as_deref(), "60s");
    let timeout = duration("timeout", raw.timeout.as_deref(), "10s");
    let cursor_param = raw
        .cursor_param
        .or_else(|| preset.map(|p| p.cursor_param.to_string()));
    if cursor_param.is_none() {
        errors.push("`cursor_param` is required (the query parameter the cursor goes in)".into());
    }
    let limit = match (raw.limit_param, raw.page_size) {
        (Some(param), Some(size)) if size > 0 => Some((param, size)),
        (None, None) => None,
        _ => {
            errors.push("`limit_param` and `page_size` (at least 1) go together".into());
            None
        }
    };
    let pointer = |key: &str, value: Option<String>, default: Option<&str>, errors: &mut Vec<_>| {
        let value = value.or_else(|| default.map(str::to_string));
        match value {
            Some(p) if p.is_empty() || p.starts_with('/') => Some(p),
            Some(p) => {
                errors.push(format!(
                    "{key} {p:?} is not a JSON pointer (\"\" or starting with '/')"
                ));
                None
            }
            None => {
                errors.push(format!("`{key}` is required (a JSON pointer)"));
                None
            }
        }
    };
    let items = pointer("items", raw.items, preset.map(|p| p.items), errors);
    let item_id = pointer("item_id", raw.item_id, preset.map(|p| p.item_id), errors);
    let next = match raw.next_pointer {
        Some(p) if raw.cursor_inclusive.is_some() => {
            errors.push(format!(
                "cursor_inclusive applies to the highest-id cursor, not to next_pointer {p:?}"
            ));
            None
        }
        Some(p) => pointer("next_pointer", Some(p), None, errors).map(NextCursor::Pointer),
        None => Some(NextCursor::HighestId {
            inclusive: raw
                .cursor_inclusive
                .unwrap_or(preset.is_some_and(|p| p.cursor_inclusive)),
        }),
    };
    let start_cursor = match raw.start_cursor {
        None => None,
        Some(toml::Value::String(text)) if !text.is_empty() => Some(text),
        Some(toml::Value::Integer(n)) => Some(n.to_string()),
        Some(_) => {
            errors.push("start_cursor must be a non-empty string or an integer".into());
            None
        }
    };
    let max_pages_per_round = raw.max_pages_per_round.unwrap_or(10);
    if max_pages_per_round == 0 {
        errors.push("max_pages_per_round must be at least 1".into());
    }
    const MAX_PAGE_BYTES: u64 = 1 << 30;
    let max_page_bytes = raw.max_page_bytes.unwrap_or(32 << 20);
    if !(1..=MAX_PAGE_BYTES).contains(&max_page_bytes) {
        errors.push(format!(
            "max_page_bytes must be between 1 and {MAX_PAGE_BYTES} (1 GiB)"
        ));
    }
    let auth = auth(raw.auth, preset.map(|p| p.auth), errors, resolve);
    Some(SyncConfig {
        url: url?,
        interval,
        timeout,
        cursor_param: cursor_param?,
        limit,
        items: items?,
        item_id: item_id?,
        next: next?,
        start_cursor,
        max_pages_per_round,
        max_page_bytes: usize::try_from(max_page_bytes.min(MAX_PAGE_BYTES)).unwrap_or(usize::MAX),
        auth: auth?,
    })
}

fn auth(
    raw: Option<RawSyncAuth>,
    preset: Option<&str>,
    errors: &mut Vec<String>,
    resolve: &mut Resolve<'_>,
) -> Option<SyncAuth> {
    let Some(raw) = raw else {
        if let Some(kind) = preset.filter(|k| *k != "none") {
            errors.push(format!(
                "the preset authenticates with {kind:?}: add [provider.sync.auth] with its keys"
            ));
            return None;
        }
        return Some(SyncAuth::None);
    };
    let kind = raw.kind.as_deref().or(preset).unwrap_or("none");
    let mut secret = |key: &str, reference: Option<&str>| match reference.map(|r| resolve(key, r)) {
        Some(Ok(secret)) => Some(secret),
        Some(Err(message)) => {
            errors.push(format!("auth {key}: {message}"));
            None
        }
        None => {
            errors.push(format!("auth type {kind:?} needs `{key}`"));
            None
        }
    };
    let auth = match kind {
        "none" => Some(SyncAuth::None),
        "basic" => {
            let password = secret("password", raw.password.as_deref());
            Some(SyncAuth::Basic {
                user: required(&raw.user, "user", kind, errors)?,
                password: password?,
            })
        }
        "header" => {
            let value = secret("value", raw.value.as_deref());
            let value = value.filter(|value| {
                let valid = reqwest::header::HeaderValue::from_bytes(value.expose()).is_ok();
                if !valid {
                    errors.push("auth value is not a header value (a line break, a NUL?)".into());
                }
                valid
            });
            let name = required(&raw.name, "name", kind, errors)?;
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(format!("auth name {name:?} is not a header name"));
                return None;
            }
            Some(SyncAuth::Header {
                name,
                value: value?,
            })
        }
        "oauth" => {
            let client_secret = secret("client_secret", raw.client_secret.as_deref());
            // The OAuth client sends it as text.
            let client_secret = client_secret.filter(|secret| {
                let text = std::str::from_utf8(secret.expose()).is_ok();
                if !text {
                    errors.push("auth client_secret is not UTF-8 text".into());
                }
                text
            });
            let refresh_before =
                match parse_duration(raw.refresh_before.as_deref().unwrap_or("30m")) {
                    Ok(d) => Some(d),
                    Err(message) => {
                        errors.push(format!("auth refresh_before: {message}"));
                        None
                    }
                };
            let token_url = http_url(
                raw.token_url.as_deref(),
                "auth token_url",
                "auth type \"oauth\" needs `token_url`",
                errors,
            );
            let client_id = required(&raw.client_id, "client_id", kind, errors);
            Some(SyncAuth::OAuth {
                token_url: token_url?,
                client_id: client_id?,
                client_secret: client_secret?,
                scope: raw.scope.clone(),
                refresh_before: refresh_before?,
            })
        }
        other => {
            errors.push(format!(
                "auth type {other:?} is not one of \"none\", \"basic\", \"header\", \"oauth\""
            ));
            None
        }
    };
    let stray: Vec<&str> = [
        ("user", raw.user.is_some(), "basic"),
        ("password", raw.password.is_some(), "basic"),
        ("name", raw.name.is_some(), "header"),
        ("value", raw.value.is_some(), "header"),
        ("token_url", raw.token_url.is_some(), "oauth"),
        ("client_id", raw.client_id.is_some(), "oauth"),
        ("client_secret", raw.client_secret.is_some(), "oauth"),
        ("scope", raw.scope.is_some(), "oauth"),
        ("refresh_before", raw.refresh_before.is_some(), "oauth"),
    ]
    .into_iter()
    .filter(|(_, set, owner)| *set && *owner != kind)
    .map(|(key, _, _)| key)
    .collect();
    if !stray.is_empty() {
        errors.push(format!("auth type {kind:?} takes no {}", stray.join(", ")));
        return None;
    }
    auth
}

/// An `http(s)://` URL, required.
fn http_url(
    text: Option<&str>,
    key: &str,
    missing: &str,
    errors: &mut Vec<String>,
) -> Option<url::Url> {
    match text.map(url::Url::parse) {
        Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => Some(url),
        Some(_) => {
            errors.push(format!("{key} must be an http(s) URL"));
            None
        }
        None => {
            errors.push(missing.to_string());
            None
        }
    }
}

fn required(
    value: &Option<String>,
    key: &str,
    kind: &str,
    errors: &mut Vec<String>,
) -> Option<String> {
    match value {
        Some(v) if !v.is_empty() => Some(v.clone()),
        _ => {
            errors.push(format!("auth type {kind:?} needs `{key}`"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SyncConfig, Vec<String>> {
        let raw = RawSync::deserialize_value(toml::from_str(text).unwrap()).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let config = build(raw, &mut errors, &mut |_, reference| {
            crate::secret::resolve(reference).map(|(secret, _)| secret)
        });
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(errors),
        }
    }

    /// Credentials the requests cannot carry are refused with the config (`check-config` said
    /// "config OK" and `serve` failed building the poller, a unit restarting in a loop).
    #[test]
    fn credentials_a_request_cannot_carry_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("secret");
        std::fs::write(&binary, b"\xff\xfe").unwrap();
        let oauth = format!(
            "url = \"https://vendor.example/a\"\ncursor_param = \"c\"\n[auth]\ntype = \"oauth\"\n\
             token_url = \"https://vendor.example/token\"\nclient_id = \"id\"\n\
             client_secret = \"file:{}\"\n",
            binary.display()
        );
        let errors = parse(&oauth).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("client_secret is not UTF-8")),
            "{errors:?}"
        );
        let header = "url = \"https://vendor.example/a\"\ncursor_param = \"c\"\n[auth]\n\
                      type = \"header\"\nname = \"X-Key\"\nvalue = \"a\\nb\"\n";
        let errors = parse(header).unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains("not a header value")),
            "{errors:?}"
        );
    }

    #[test]
    fn alcmeon_preset_fills_the_defaults() {
        let config = parse(
            r#"
preset = "alcmeon"
url = "https://alcmeon.example/api/actions"
[auth]
user = "instance-42"
password = "app-secret"
"#,
        )
        .unwrap();
        assert_eq!(config.cursor_param, "min_action_id");
        assert_eq!(
            (config.items.as_str(), config.item_id.as_str()),
            ("/data", "/id")
        );
        assert_eq!(config.next, NextCursor::HighestId { inclusive: false });
        assert_eq!(config.interval, Duration::from_secs(60));
        assert_eq!(config.max_pages_per_round, 10);
        assert!(matches!(config.auth, SyncAuth::Basic { ref user, .. } if user == "instance-42"));
    }

    #[test]
    fn oauth_with_a_start_cursor_and_next_pointer() {
        let config = parse(
            r#"
url = "http://127.0.0.1:1/events"
cursor_param = "page_token"
items = ""
item_id = "/uuid"
next_pointer = "/next"
start_cursor = 17
interval = "200ms"
[auth]
type = "oauth"
token_url = "http://127.0.0.1:1/token"
client_id = "hookgate"
client_secret = "s3cret"
"#,
        )
        .unwrap();
        assert_eq!(config.next, NextCursor::Pointer("/next".into()));
        assert_eq!(config.start_cursor.as_deref(), Some("17"));
        assert!(matches!(
            config.auth,
            SyncAuth::OAuth { refresh_before, .. } if refresh_before == Duration::from_secs(1800)
        ));
    }

    #[test]
    fn every_problem_is_reported() {
        let errors = parse(
            r#"
preset = "nope"
url = "ftp://x"
limit_param = "limit"
items = "data"
interval = "soon"
next_pointer = "/next"
cursor_inclusive = true
[auth]
type = "basic"
user = "u"
token_url = "http://x"
"#,
        )
        .unwrap_err();
        let text = errors.join("\n");
        for expected in [
            "preset \"nope\"",
            "url must be",
            "interval:",
            "cursor_param` is required",
            "limit_param` and `page_size`",
            "items \"data\" is not a JSON pointer",
            "item_id` is required",
            "cursor_inclusive applies",
            "needs `password`",
        ] {
            assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
        }
    }

    #[test]
    fn stray_auth_keys_are_refused() {
        let errors = parse(
            r#"
url = "http://x/"
cursor_param = "c"
items = "/d"
item_id = "/id"
[auth]
type = "header"
name = "X-Api-Key"
value = "k"
user = "u"
"#,
        )
        .unwrap_err();
        assert!(errors[0].contains("takes no user"), "{errors:?}");
    }

    #[test]
    fn loaded_with_its_provider_and_errors_point_at_the_sync_key() {
        let provider = "[admin]\ntoken = \"0123456789abcdef\"\n\n[[provider]]\nname = \"a\"\nverify = \"github\"\nsecrets = [\"s\"]\n";
        let good = format!("{provider}\n[provider.sync]\nurl = \"http://x/\"\npreset = \"alcmeon\"\nauth = {{ user = \"u\", password = \"p\" }}\n");
        let (config, _) = super::super::load_str(&good, std::path::Path::new(".")).unwrap();
        assert!(config.providers[0].sync.is_some());
        let bad = format!("{provider}\n[provider.sync]\nurl = \"http://x/\"\n");
        let errors = super::super::load_str(&bad, std::path::Path::new(".")).unwrap_err();
        assert_eq!(errors[0].position.map(|p| p.0), Some(9), "{errors:?}");
        assert!(
            errors[0]
                .message
                .contains("provider \"a\" sync: `cursor_param`"),
            "{errors:?}"
        );
    }

    /// A webhook id the scheme does not sign (GitHub's and Shopify's delivery headers) makes
    /// every event that arrives both ways stored twice: said at load.
    #[test]
    fn a_webhook_id_that_is_not_the_sync_item_s_is_warned_about() {
        let warned = |verify: &str, rule: &str| {
            let config = format!(
                "[admin]\ntoken = \"0123456789abcdef\"\n\n[[provider]]\nname = \"a\"\nverify = \"{verify}\"\nsecrets = [\"0123456789abcdef\"]\n{rule}\n[provider.sync]\nurl = \"http://x/\"\npreset = \"alcmeon\"\nauth = {{ user = \"u\", password = \"p\" }}\n"
            );
            let (_, warnings) = super::super::load_str(&config, std::path::Path::new(".")).unwrap();
            warnings
                .iter()
                .any(|w| w.contains("stored, and delivered, twice"))
        };
        assert!(warned("github", ""));
        assert!(warned("shopify", ""));
        // No id of its own: each webhook's is its body's hash.
        let hmac = "header = \"X-Signature\"\n";
        assert!(warned("hmac", hmac));
        let header_id = "event_id = \"header:X-Event-Id\"\n";
        assert!(warned("hmac", &format!("{hmac}{header_id}")));
        assert!(warned("alcmeon", header_id));
        assert!(!warned(
            "standard-webhooks",
            "event_id = \"header:svix-id\"\n"
        ));
        assert!(!warned("hmac", &format!("{hmac}event_id = \"json:/id\"")));
        assert!(!warned("github", "event_id = \"json:/id\""));
        assert!(!warned("alcmeon", ""));
        assert!(!warned("stripe", ""));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let errors = parse("url = \"http://x/\"\ncursor = \"c\"\n").unwrap_err();
        assert!(errors[0].contains("unknown field `cursor`"), "{errors:?}");
    }
}
