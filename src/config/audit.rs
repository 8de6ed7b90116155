//! Start-up checks that a config is safe to face the internet with: secrets written literally
//! or in files every user may read (in every place a secret can be written: `Loader::resolve`
//! warns for each), a `none` provider
//! open to every address, and secrets hookgate checks or signs with itself that are too short to
//! resist guessing.

use super::load::Loader;
use super::raw::RawDestination;
use super::scheme::{RawIntrospection, RawOAuth, RawScheme};
use crate::secret::{self, Secret};

/// A `tolerance_s` over this is warned about.
const WIDE_TOLERANCE_S: u64 = 3600;
/// An introspection `cache_size` over this is warned about: each map drops its expired entries
/// only once full, and under a stream of junk tokens one of millions held ~100 bytes each.
const LARGE_CACHE_SIZE: usize = 1_000_000;

/// Bytes a secret hookgate checks or signs with must have at least (128 bits).
pub const MIN_OWN_SECRET_BYTES: usize = 16;

impl Loader<'_> {
    /// Warnings about one `[[provider]]`'s scheme beyond what the scheme checks.
    pub(super) fn audit_scheme(&mut self, label: &str, scheme: &RawScheme) {
        match scheme {
            RawScheme::None { allow_ips: None } => self.warn(format!(
                "{label} uses verify = \"none\" without allow_ips: anyone who can reach the listener can store events"
            )),
            RawScheme::OAuth {
                oauth:
                    Some(RawOAuth::Introspection(RawIntrospection {
                        audience: None,
                        allowed_client_ids: None,
                        ..
                    })),
            } => self.warn(format!(
                "{label} accepts any active token the authorization server knows: set `audience` or `allowed_client_ids`"
            )),
            _ => {}
        }
        if let RawScheme::OAuth {
            oauth:
                Some(RawOAuth::Introspection(RawIntrospection {
                    cache_size: Some(size),
                    ..
                })),
        } = scheme
        {
            if *size > LARGE_CACHE_SIZE {
                self.warn(format!(
                    "{label}: an introspection cache_size of {size} may hold ~{} MB of refused tokens before it drops any; keep it under {LARGE_CACHE_SIZE}",
                    size / 10_000
                ));
            }
        }
        if let RawScheme::StandardWebhooks { tolerance_s, .. }
        | RawScheme::Stripe { tolerance_s, .. }
        | RawScheme::Slack { tolerance_s, .. } = scheme
        {
            if let Some(seconds) = tolerance_s.filter(|s| *s > WIDE_TOLERANCE_S) {
                self.warn(format!(
                    "{label} accepts timestamps {seconds} s off: a captured request can be replayed for that long, and past [store] dedup_window it is stored again; keep tolerance_s to minutes"
                ));
            }
        }
        if let RawScheme::OAuth { oauth: Some(oauth) } = scheme {
            let url = match oauth {
                RawOAuth::Jwt { jwks, .. } => jwks.as_deref(),
                RawOAuth::Introspection(raw) => raw.introspection_url.as_deref(),
                RawOAuth::Builtin { .. } => None,
            };
            if let Some(url) = url.filter(|url| plain_http_to_another_host(url)) {
                self.warn(format!(
                    "{label} asks {url} over plain http: whoever is on the path can answer for the authorization server, and accept any token (or read hookgate's client secret); use https"
                ));
            }
        }
    }

    /// A provider that polls: an event arriving both as a webhook and from the sync API is
    /// stored once only when the webhook's event id is vouched for by the scheme (an id it does
    /// not vouch for is bound to the body's hash, which the sync API's representation does not
    /// share). Said where that is known from the config alone: `verify = "none"` vouches for
    /// nothing; without `event_id`, only the schemes that sign an id of their own give one
    /// (GitHub's, Shopify's and Twilio's delivery headers are not signed; `hmac`, `oauth` and
    /// Dialog Insight give none); a `header:` id is vouched for only by a sender that
    /// authenticated itself (`oauth`) or as Standard Webhooks' own signed `webhook-id`.
    pub(super) fn audit_both_ways(&mut self, provider: &super::ProviderConfig, verify: &str) {
        use crate::event_id::EventIdRule;
        let vouched = match &provider.event_id {
            None => matches!(
                verify,
                "standard-webhooks" | "stripe" | "slack" | "alcmeon" | "acculynx"
            ),
            Some(EventIdRule::Header(name)) => {
                verify == "oauth"
                    || (verify == "standard-webhooks"
                        && ["webhook-id", "svix-id"]
                            .iter()
                            .any(|own| name.eq_ignore_ascii_case(own)))
            }
            Some(EventIdRule::JsonPointer(_)) => true,
        };
        if provider.sync.is_some() && (verify == "none" || !vouched) {
            self.warn(format!(
                "provider {:?} polls a sync API, but its webhooks' event id is not signed, so an event that arrives both ways is stored, and delivered, twice: read the id from the signed body (event_id = \"json:<pointer>\", equal to the sync item's id) under a scheme that signs it",
                provider.name.as_str()
            ));
        }
    }

    /// A secret hookgate checks itself (a builtin OAuth client's): long enough.
    pub(super) fn audit_own_secret(
        &mut self,
        secret: &Secret,
        what: &str,
        at: Option<(usize, usize)>,
    ) {
        if secret.expose().len() < MIN_OWN_SECRET_BYTES {
            self.error(
                at,
                format!("{what} must be at least {MIN_OWN_SECRET_BYTES} bytes"),
            );
        }
    }

    /// A destination's signing secret: long enough once decoded.
    pub(super) fn audit_destination(&mut self, raw: &RawDestination, key: Option<&[u8]>) {
        if key.is_some_and(|key| key.len() < MIN_OWN_SECRET_BYTES) {
            self.error(
                None,
                format!(
                    "destination {:?} signing_secret must decode to at least {MIN_OWN_SECRET_BYTES} bytes",
                    raw.name
                ),
            );
        }
    }

    pub(super) fn warn_if_literal(&mut self, reference: &str, what: &str) {
        if secret::is_literal(reference) {
            self.warn(format!(
                "{what} is written literally in the config file; use \"credential:NAME\", \"env:NAME\" or \"file:/path\" outside local demos"
            ));
        }
        if let Some(path) = reference.strip_prefix("file:") {
            self.warn_if_world_readable(std::path::Path::new(path), what);
        }
    }

    /// A file holding a secret (a `file:` secret, a TLS key, a NATS `.creds` file) that every
    /// user of the machine may read.
    pub(super) fn warn_if_world_readable(&mut self, path: &std::path::Path, what: &str) {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map(|m| m.permissions().mode());
        if let Some(mode) = mode.ok().filter(|mode| mode & 0o007 != 0) {
            self.warn(format!(
                "{what}: {} can be read by every user of this machine (mode {:o}); chmod o-rwx it",
                path.display(),
                mode & 0o777
            ));
        }
    }
}

/// An `http://` URL to a host other than this machine's loopback (as the CLI judges the admin
/// URL it sends the token to).
fn plain_http_to_another_host(url: &str) -> bool {
    url::Url::parse(url)
        .is_ok_and(|url| url.scheme() == "http" && !crate::cmd::loopback::is_loopback(&url))
}
