//! Start-up checks that a config is safe to face the internet with: secrets written literally
//! (in every place a secret can be written), a `none` provider open to every address, and secrets
//! hookgate checks or signs with itself that are too short to resist guessing.

use super::load::{Loader, Section};
use super::raw::{RawDestination, RawProvider, RawSyncAuth};
use crate::secret;

/// Bytes a secret hookgate checks or signs with must have at least (128 bits).
pub const MIN_OWN_SECRET_BYTES: usize = 16;

impl Loader<'_> {
    /// Warnings and errors about one `[[provider]]` beyond what its scheme checks.
    pub(super) fn audit_provider(&mut self, raw: &RawProvider, section: &Section) {
        let label = format!("provider {:?}", raw.name);
        if raw.verify == "none" && raw.allow_ips.is_none() {
            self.warn(format!(
                "{label} uses verify = \"none\" without allow_ips: anyone who can reach the listener can store events"
            ));
        }
        let Some(oauth) = &raw.oauth else {
            return;
        };
        for client in oauth.clients.iter().flatten() {
            let what = format!("{label} oauth client {:?} secret", client.id);
            self.warn_if_literal(&client.secret, &what);
            let short = secret::resolve(&client.secret)
                .is_ok_and(|(value, _)| value.expose().len() < MIN_OWN_SECRET_BYTES);
            if short {
                let at = self.key_position(section, "oauth");
                self.error(
                    at,
                    format!("{what} must be at least {MIN_OWN_SECRET_BYTES} bytes"),
                );
            }
        }
        if oauth.mode == "introspection"
            && oauth.audience.is_none()
            && oauth.allowed_client_ids.is_none()
        {
            self.warn(format!(
                "{label} accepts any active token the authorization server knows: set `audience` or `allowed_client_ids`"
            ));
        }
        if let Some(reference) = &oauth.client_secret {
            self.warn_if_literal(reference, &format!("{label} oauth client_secret"));
        }
    }

    /// `[provider.sync.auth]`'s secrets.
    pub(super) fn audit_sync_auth(&mut self, auth: Option<&RawSyncAuth>, label: &str) {
        let Some(auth) = auth else {
            return;
        };
        for (key, reference) in [
            ("password", &auth.password),
            ("value", &auth.value),
            ("client_secret", &auth.client_secret),
        ] {
            if let Some(reference) = reference {
                self.warn_if_literal(reference, &format!("{label} auth {key}"));
            }
        }
    }

    /// A destination's signing secret: not literal, and long enough once decoded.
    pub(super) fn audit_destination(&mut self, raw: &RawDestination, key: Option<&[u8]>) {
        let what = format!("destination {:?} signing_secret", raw.name);
        self.warn_if_literal(&raw.signing_secret, &what);
        if key.is_some_and(|key| key.len() < MIN_OWN_SECRET_BYTES) {
            self.error(
                None,
                format!("{what} must decode to at least {MIN_OWN_SECRET_BYTES} bytes"),
            );
        }
    }

    pub(super) fn warn_if_literal(&mut self, reference: &str, what: &str) {
        if secret::is_literal(reference) {
            self.warn(format!(
                "{what} is written literally in the config file; use \"env:NAME\" or \"file:/path\" outside local demos"
            ));
        }
    }
}
