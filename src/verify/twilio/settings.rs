//! Which HMAC a Twilio request is checked with.
//!
//! By default Twilio signs with the account's auth token under HMAC-SHA1 and sends no settings
//! header. A Webhook Setting (Twilio's Webhooks configuration API) signs instead with a SharedKey
//! under the algorithm it names, and says so in
//! `X-Twilio-Webhooks-Signature-Settings: key=<key>,algorithm=HMAC_SHA256`; the signed string is
//! the same, only the hash changes. The header is outside the signature, so the provider's
//! `algorithm` ([`Policy`]) decides which algorithms a request may name: an attacker cannot pick
//! one the provider refuses.

use super::super::mac::Algorithm;
use super::super::Rejection;

pub const SETTINGS: &str = "X-Twilio-Webhooks-Signature-Settings";

/// What Twilio writes in [`SETTINGS`] for HMAC-SHA256 (and what `send-test` sends).
pub const SHA256_SETTINGS: &str = "algorithm=HMAC_SHA256";

/// The provider's `algorithm`: which HMACs it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `either` (the default): the one the settings header names; HMAC-SHA1 without one.
    Either,
    /// `sha1`: HMAC-SHA1 only (the auth token's signature, Twilio's default).
    Sha1,
    /// `sha256`: HMAC-SHA256 only; a request without the settings header, or naming SHA-1, is
    /// refused.
    Sha256,
}

impl Policy {
    pub fn parse(name: Option<&str>) -> Result<Policy, String> {
        match name {
            None | Some("either") => Ok(Policy::Either),
            Some("sha1") => Ok(Policy::Sha1),
            Some("sha256") => Ok(Policy::Sha256),
            Some(other) => Err(format!(
                "algorithm {other:?} is not one of \"either\", \"sha1\", \"sha256\" for verify = \"twilio\""
            )),
        }
    }

    /// The algorithm to check a request with: the one its settings header names (HMAC-SHA1
    /// without one), if this policy accepts it.
    pub fn algorithm(self, settings: Option<&str>) -> Result<Algorithm, Rejection> {
        let named = match settings {
            None => Algorithm::Sha1,
            Some(value) => named(value).ok_or(Rejection::MalformedHeader(SETTINGS))?,
        };
        match (self, named) {
            (Policy::Either, _)
            | (Policy::Sha1, Algorithm::Sha1)
            | (Policy::Sha256, Algorithm::Sha256) => Ok(named),
            _ => Err(Rejection::AlgorithmNotAllowed),
        }
    }

    /// The algorithm `send-test` signs with, and the settings header it sends along, if any.
    pub fn signing(self) -> (Algorithm, Option<&'static str>) {
        match self {
            Policy::Sha256 => (Algorithm::Sha256, Some(SHA256_SETTINGS)),
            Policy::Either | Policy::Sha1 => (Algorithm::Sha1, None),
        }
    }
}

/// The algorithm a settings header names: the value of its `algorithm` parameter (parameters
/// separated by `,` or `;`), or the whole value when it has none. Case, punctuation and spaces
/// do not count, nor an `HMAC` prefix: `HMAC_SHA256`, `hmac-sha256`, `SHA-256` and `sha256` all
/// name HMAC-SHA256, and likewise for SHA-1. Anything else names nothing.
fn named(value: &str) -> Option<Algorithm> {
    let parameter = value.split([',', ';']).find_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("algorithm")
            .then_some(value)
    });
    let name: String = parameter
        .unwrap_or(value)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match name.strip_prefix("hmac").unwrap_or(&name) {
        "sha256" => Some(Algorithm::Sha256),
        "sha1" => Some(Algorithm::Sha1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_values_hookgate_reads() {
        for value in [
            "key=KS0123456789abcdef,algorithm=HMAC_SHA256",
            "algorithm=HMAC_SHA256,key=KS0123456789abcdef",
            "key=; Algorithm = \"hmac-sha256\"",
            "HMAC-SHA256",
            "sha256",
            "SHA-256",
        ] {
            assert_eq!(named(value), Some(Algorithm::Sha256), "{value}");
        }
        for value in ["key=KS1,algorithm=HMAC_SHA1", "HMAC-SHA1", "sha1"] {
            assert_eq!(named(value), Some(Algorithm::Sha1), "{value}");
        }
        for value in [
            "",
            "key=KS1",
            "algorithm=HMAC_SHA512",
            "algorithm=",
            // Only the algorithm parameter counts when there is one.
            "key=sha256,algorithm=md5",
            "algorithm=HMAC_SHA256_AND_MORE",
        ] {
            assert_eq!(named(value), None, "{value:?}");
        }
    }

    #[test]
    fn either_follows_the_header() {
        let either = Policy::parse(None).unwrap();
        assert_eq!(either, Policy::Either);
        assert_eq!(either.algorithm(None), Ok(Algorithm::Sha1));
        assert_eq!(
            either.algorithm(Some("key=K,algorithm=HMAC_SHA1")),
            Ok(Algorithm::Sha1)
        );
        assert_eq!(
            either.algorithm(Some(SHA256_SETTINGS)),
            Ok(Algorithm::Sha256)
        );
        assert_eq!(
            either.algorithm(Some("algorithm=HMAC_MD5")),
            Err(Rejection::MalformedHeader(SETTINGS))
        );
    }

    #[test]
    fn a_required_algorithm_cannot_be_downgraded_or_swapped() {
        let sha256 = Policy::parse(Some("sha256")).unwrap();
        assert_eq!(
            sha256.algorithm(Some(SHA256_SETTINGS)),
            Ok(Algorithm::Sha256)
        );
        assert_eq!(sha256.algorithm(None), Err(Rejection::AlgorithmNotAllowed));
        assert_eq!(
            sha256.algorithm(Some("algorithm=HMAC_SHA1")),
            Err(Rejection::AlgorithmNotAllowed)
        );
        let sha1 = Policy::parse(Some("sha1")).unwrap();
        assert_eq!(sha1.algorithm(None), Ok(Algorithm::Sha1));
        assert_eq!(
            sha1.algorithm(Some(SHA256_SETTINGS)),
            Err(Rejection::AlgorithmNotAllowed)
        );
        assert!(Policy::parse(Some("sha512")).is_err());
        assert!(Policy::parse(Some("SHA256")).is_err());
    }
}
